//! The checkout workload as a user writes it: a profile's `[workload]` table
//! ([`CheckoutSpec`]), checked once by [`CheckoutSpec::validate`] into the [`Plan`] the
//! workload runs. Durations are text with a unit (`"5s"`, `"250ms"`), as in phases.
//!
//! ```toml
//! [workload]
//! phases = [{ kind = "hold", rate = 1000, for = "5s" }]
//! arrival = "poisson"
//! seed = 7
//! double_click_fraction = 0.2
//! [workload.retry]
//! max_attempts = 3
//! timeout = "5s"
//! [workload.poll]
//! max_polls = 40
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::{HumanDuration, format_duration};
use crate::{ArrivalProcess, LoadgenError, PhaseSpec, ScheduleSpec};

/// Most entry regions: targets map to regions `a`, `b` in order.
pub const REGIONS: [&str; 2] = ["a", "b"];

/// The `[workload]` table of a profile (and what `rig load --workload checkout` builds from
/// its flags). Every field but `phases` has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckoutSpec {
    /// The schedule: phases, arrival process and the run seed (which also seeds every
    /// customer: region, cart, double-click, backoff jitter).
    pub phases: Vec<PhaseSpec>,
    pub arrival: ArrivalProcess,
    pub seed: u64,
    /// Prefix of every order id (`<run_tag>-<arrival index>`); letters, digits, `-`, `_`,
    /// `.`. Default: `r` + the start time in base 36, so two runs never share an order id.
    pub run_tag: Option<String>,
    /// Customers in progress at once (the engine's lanes).
    pub lanes: usize,
    /// Keep-alive connections per target at most; a request that finds them all busy
    /// waits for one (the wait counts in its latency). Bounds the generator's own cost
    /// when the target slows down.
    pub connections: usize,
    /// Arrivals queued or in progress at most; beyond it they are counted `dropped`.
    pub max_in_flight: usize,
    /// Relative weight of each target (entry region `a`, `b`); empty = equal weights.
    pub region_weights: Vec<f64>,
    /// What customers buy, most popular first; empty = every sku `GET /admin/state` of the
    /// first target lists.
    pub skus: Vec<String>,
    /// Lines per cart, uniform in `items_min..=items_max` (at most the number of skus).
    pub items_min: u32,
    pub items_max: u32,
    /// Quantity per line, uniform in `1..=qty_max`.
    pub qty_max: u32,
    /// Sku popularity: the k-th sku is picked with weight `1 / k^s` (Zipf); 0 = uniform.
    pub sku_zipf_exponent: f64,
    /// Customer ids are `c-<n>` with `n` uniform below this.
    pub customers: u64,
    /// Share of customers who click twice: a second `POST` with the same key and body,
    /// concurrent with the first.
    pub double_click_fraction: f64,
    /// The second click follows the first after a uniform draw in `[0, double_click_gap_max]`.
    pub double_click_gap_max: HumanDuration,
    pub retry: RetrySpec,
    pub poll: PollSpec,
    /// One customer gives up after this long (from its start): no request, retry or poll
    /// runs past it. Bounds every arrival, and so the drain at the end of a run.
    pub give_up_after: HumanDuration,
    pub connect_timeout: HumanDuration,
    /// Load targets that are not loopback addresses.
    pub allow_remote: bool,
}

/// The client's retry policy for `POST /v1/checkout` (always with the same key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySpec {
    /// Checkout `POST`s per customer, the first included (the double-click is extra).
    pub max_attempts: u32,
    /// Per request (checkout or poll), from sending until the whole answer is read.
    pub timeout: HumanDuration,
    /// Full-jitter exponential backoff: the n-th retry waits a uniform draw from
    /// `[0, min(backoff_max, backoff_base * 2^(n-1))]`, and never less than `Retry-After`.
    pub backoff_base: HumanDuration,
    pub backoff_max: HumanDuration,
    /// A shed answer asking for a longer wait than this ends the customer's attempts
    /// (it is never retried sooner than asked).
    pub retry_after_max: HumanDuration,
}

/// Polling `GET /v1/orders/{id}` after a `202`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollSpec {
    /// Polls per customer at most (the poll budget).
    pub max_polls: u32,
    /// Wait before the first poll; each later wait is `multiplier` times the last, up to
    /// `max_interval` (and never shorter than a `Retry-After`).
    pub initial: HumanDuration,
    pub multiplier: f64,
    pub max_interval: HumanDuration,
}

fn d(text: &str) -> HumanDuration {
    HumanDuration(crate::parse_duration("default", text).expect("valid default duration"))
}

impl Default for CheckoutSpec {
    fn default() -> Self {
        Self {
            phases: Vec::new(),
            arrival: ArrivalProcess::Constant,
            seed: 1,
            run_tag: None,
            lanes: 1_000,
            connections: 512,
            max_in_flight: 10_000,
            region_weights: Vec::new(),
            skus: Vec::new(),
            items_min: 1,
            items_max: 3,
            qty_max: 2,
            sku_zipf_exponent: 1.0,
            customers: 100_000,
            double_click_fraction: 0.0,
            double_click_gap_max: d("10ms"),
            retry: RetrySpec::default(),
            poll: PollSpec::default(),
            give_up_after: d("60s"),
            connect_timeout: d("3s"),
            allow_remote: false,
        }
    }
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            timeout: d("5s"),
            backoff_base: d("100ms"),
            backoff_max: d("2s"),
            retry_after_max: d("30s"),
        }
    }
}

impl Default for PollSpec {
    fn default() -> Self {
        Self {
            // Up to ~75 s of polling, cut at give_up_after (60 s): longer than the
            // reference system's 30 s bound on pending orders.
            max_polls: 40,
            initial: d("100ms"),
            multiplier: 2.0,
            max_interval: d("2s"),
        }
    }
}

/// A checked spec, with the targets' count resolved. Cheap to clone.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub schedule: ScheduleSpec,
    pub run_tag: String,
    pub lanes: usize,
    pub connections: usize,
    pub max_in_flight: usize,
    /// One weight per target, summing to 1.
    pub region_weights: Vec<f64>,
    pub items_min: u32,
    pub items_max: u32,
    pub qty_max: u32,
    pub sku_zipf_exponent: f64,
    pub customers: u64,
    pub double_click_fraction: f64,
    pub double_click_gap_max: Duration,
    pub max_attempts: u32,
    pub request_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub retry_after_max: Duration,
    pub max_polls: u32,
    pub poll_initial: Duration,
    pub poll_multiplier: f64,
    pub poll_max_interval: Duration,
    pub give_up_after: Duration,
    pub connect_timeout: Duration,
}

fn bad(field: &str, value: impl ToString, problem: &str, fix: &str) -> LoadgenError {
    LoadgenError::invalid(format!("workload.{field}"), value, problem, fix)
}

/// A run tag from the wall clock: `r` + milliseconds since the epoch in base 36.
pub fn default_run_tag() -> String {
    let mut ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut digits = Vec::new();
    while ms > 0 {
        let digit = (ms % 36) as u32;
        digits.push(char::from_digit(digit, 36).unwrap_or('0'));
        ms /= 36;
    }
    digits.push('r');
    digits.iter().rev().collect()
}

impl CheckoutSpec {
    /// Checks every field once, for `targets` entry regions. Errors name the field
    /// (`workload.<name>`), the value and the fix.
    pub fn validate(&self, targets: usize) -> Result<Plan, LoadgenError> {
        if targets == 0 || targets > REGIONS.len() {
            return Err(LoadgenError::invalid(
                "--target",
                targets,
                "the checkout workload takes one or two targets (entry regions a and b)",
                "give --target http://127.0.0.1:8081,http://127.0.0.1:8082",
            ));
        }
        if self.phases.is_empty() {
            return Err(bad(
                "phases",
                "[]",
                "no phases: nothing would be sent",
                "give --rate and --duration, --phases, or phases = [{ kind = \"hold\", rate = 100, for = \"30s\" }]",
            ));
        }
        let run_tag = match &self.run_tag {
            Some(tag) => {
                let ok = !tag.is_empty()
                    && tag.len() <= 64
                    && tag
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !ok {
                    return Err(bad(
                        "run_tag",
                        tag,
                        "a run tag is 1 to 64 letters, digits, '-', '_' or '.' (it starts every order id)",
                        "use e.g. run_tag = \"nightly-42\"",
                    ));
                }
                tag.clone()
            }
            None => default_run_tag(),
        };
        if self.lanes == 0 || self.lanes > 100_000 {
            return Err(bad(
                "lanes",
                self.lanes,
                "customers in progress at once must be between 1 and 100000",
                "use e.g. lanes = 1000 (--lanes)",
            ));
        }
        if self.connections < 2 || self.connections > 100_000 {
            return Err(bad(
                "connections",
                self.connections,
                "connections per target must be between 2 (a double-click needs two) and 100000",
                "use e.g. connections = 512 (--connections)",
            ));
        }
        if self.max_in_flight == 0 {
            return Err(bad(
                "max_in_flight",
                0,
                "no arrival could ever start",
                "set it to at least 1 (the default is 10000)",
            ));
        }
        let region_weights = self.weights(targets)?;
        if self.items_min == 0 || self.items_max < self.items_min || self.items_max > 50 {
            return Err(bad(
                "items_min",
                format!("{}..={}", self.items_min, self.items_max),
                "lines per cart must satisfy 1 <= items_min <= items_max <= 50",
                "use e.g. items_min = 1, items_max = 3",
            ));
        }
        if self.qty_max == 0 || self.qty_max > 1_000 {
            return Err(bad(
                "qty_max",
                self.qty_max,
                "the quantity per line must be between 1 and 1000",
                "use e.g. qty_max = 2",
            ));
        }
        if !(self.sku_zipf_exponent.is_finite() && (0.0..=10.0).contains(&self.sku_zipf_exponent)) {
            return Err(bad(
                "sku_zipf_exponent",
                self.sku_zipf_exponent,
                "must be between 0 (uniform) and 10",
                "use 1.0 for a classic Zipf popularity, 0 for uniform",
            ));
        }
        if self.customers == 0 {
            return Err(bad(
                "customers",
                0,
                "there must be at least one customer",
                "use e.g. customers = 100000",
            ));
        }
        if !(0.0..=1.0).contains(&self.double_click_fraction) {
            return Err(bad(
                "double_click_fraction",
                self.double_click_fraction,
                "a fraction of customers must be between 0 and 1",
                "use e.g. 0.2 (--double-click 0.2) for 20 % double-clicks",
            ));
        }
        for (i, sku) in self.skus.iter().enumerate() {
            if sku.is_empty() || sku.len() > 128 {
                return Err(bad(
                    &format!("skus[{i}]"),
                    sku,
                    "a sku is 1 to 128 characters",
                    "list skus the target sells (GET /admin/state shows them)",
                ));
            }
        }
        let r = &self.retry;
        if r.max_attempts == 0 || r.max_attempts > 100 {
            return Err(bad(
                "retry.max_attempts",
                r.max_attempts,
                "attempts per customer must be between 1 and 100 (the first one counts)",
                "use e.g. max_attempts = 3",
            ));
        }
        if r.backoff_max.0 < r.backoff_base.0 {
            return Err(bad(
                "retry.backoff_max",
                format_duration(r.backoff_max.0),
                "the backoff cap is below the base",
                "make backoff_max >= backoff_base",
            ));
        }
        let p = &self.poll;
        if p.max_polls > 10_000 {
            return Err(bad(
                "poll.max_polls",
                p.max_polls,
                "at most 10000 polls per customer",
                "use e.g. max_polls = 30 (0 never polls)",
            ));
        }
        if !(p.multiplier.is_finite() && (1.0..=10.0).contains(&p.multiplier)) {
            return Err(bad(
                "poll.multiplier",
                p.multiplier,
                "must be between 1 (constant interval) and 10",
                "use e.g. multiplier = 2.0",
            ));
        }
        if p.max_interval.0 < p.initial.0 {
            return Err(bad(
                "poll.max_interval",
                format_duration(p.max_interval.0),
                "the poll interval cap is below the first interval",
                "make max_interval >= initial",
            ));
        }
        Ok(Plan {
            schedule: ScheduleSpec {
                phases: self.phases.clone(),
                arrival: self.arrival,
                seed: self.seed,
            },
            run_tag,
            lanes: self.lanes,
            connections: self.connections,
            max_in_flight: self.max_in_flight,
            region_weights,
            items_min: self.items_min,
            items_max: self.items_max,
            qty_max: self.qty_max,
            sku_zipf_exponent: self.sku_zipf_exponent,
            customers: self.customers,
            double_click_fraction: self.double_click_fraction,
            double_click_gap_max: self.double_click_gap_max.0,
            max_attempts: r.max_attempts,
            request_timeout: r.timeout.0,
            backoff_base: r.backoff_base.0,
            backoff_max: r.backoff_max.0,
            retry_after_max: r.retry_after_max.0,
            max_polls: p.max_polls,
            poll_initial: p.initial.0,
            poll_multiplier: p.multiplier,
            poll_max_interval: p.max_interval.0,
            give_up_after: self.give_up_after.0,
            connect_timeout: self.connect_timeout.0,
        })
    }

    fn weights(&self, targets: usize) -> Result<Vec<f64>, LoadgenError> {
        let weights = if self.region_weights.is_empty() {
            vec![1.0; targets]
        } else {
            self.region_weights.clone()
        };
        let text = format!("{weights:?}");
        if weights.len() != targets {
            return Err(bad(
                "region_weights",
                &text,
                &format!("{} weight(s) for {targets} target(s)", weights.len()),
                "give one weight per target, in --target order (a, b)",
            ));
        }
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || weights.iter().sum::<f64>() <= 0.0
        {
            return Err(bad(
                "region_weights",
                &text,
                "weights must be 0 or more, and not all 0",
                "use e.g. region_weights = [1, 1]",
            ));
        }
        let total: f64 = weights.iter().sum();
        Ok(weights.iter().map(|w| w / total).collect())
    }
}

impl Plan {
    /// How long the end of a run waits for customers still in progress: the longest one
    /// customer can take, plus a margin for the last answer to be read.
    pub fn drain_timeout(&self) -> Duration {
        self.give_up_after + Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CheckoutSpec {
        CheckoutSpec {
            phases: ScheduleSpec::parse_phases("hold rate=10 for=1s").unwrap(),
            ..CheckoutSpec::default()
        }
    }

    /// A profile's `[workload]` table deserialises, nested tables included; unknown keys are
    /// refused by name, so a typo never falls back to a default.
    #[test]
    fn table_deserialises_and_refuses_unknown_keys() {
        let text = r#"
            phases = [{ kind = "hold", rate = 1000, for = "5s" }]
            arrival = "poisson"
            seed = 7
            run_tag = "t1"
            double_click_fraction = 0.2
            region_weights = [3, 1]
            [retry]
            max_attempts = 4
            timeout = "2s"
            [poll]
            max_polls = 5
        "#;
        let spec: CheckoutSpec = toml::from_str(text).unwrap();
        assert_eq!(spec.retry.max_attempts, 4);
        assert_eq!(spec.retry.timeout.0, Duration::from_secs(2));
        assert_eq!(spec.poll.max_polls, 5);
        let plan = spec.validate(2).unwrap();
        assert_eq!(plan.region_weights, vec![0.75, 0.25]);
        assert_eq!(plan.run_tag, "t1");
        let typo = toml::from_str::<CheckoutSpec>("double_clik_fraction = 0.2").unwrap_err();
        assert!(typo.message().contains("double_clik_fraction"), "{typo}");
        let nested = toml::from_str::<CheckoutSpec>("[retry]\nmax_attempt = 2").unwrap_err();
        assert!(nested.message().contains("max_attempt"), "{nested}");
    }

    /// Each out-of-range value is refused with its field and a fix.
    #[test]
    fn refuses_bad_values_by_field() {
        type Change = Box<dyn Fn(&mut CheckoutSpec)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|s| s.phases.clear()), "workload.phases"),
            (
                Box::new(|s| s.run_tag = Some("has space".into())),
                "workload.run_tag",
            ),
            (Box::new(|s| s.lanes = 0), "workload.lanes"),
            (Box::new(|s| s.connections = 1), "workload.connections"),
            (
                Box::new(|s| s.region_weights = vec![1.0]),
                "workload.region_weights",
            ),
            (
                Box::new(|s| s.region_weights = vec![0.0, 0.0]),
                "workload.region_weights",
            ),
            (Box::new(|s| s.items_max = 0), "workload.items_min"),
            (Box::new(|s| s.qty_max = 0), "workload.qty_max"),
            (
                Box::new(|s| s.double_click_fraction = 1.5),
                "workload.double_click_fraction",
            ),
            (
                Box::new(|s| s.sku_zipf_exponent = -1.0),
                "workload.sku_zipf_exponent",
            ),
            (
                Box::new(|s| s.retry.max_attempts = 0),
                "workload.retry.max_attempts",
            ),
            (
                Box::new(|s| s.poll.multiplier = 0.5),
                "workload.poll.multiplier",
            ),
        ];
        for (change, field) in cases {
            let mut s = spec();
            change(&mut s);
            let err = s.validate(2).unwrap_err();
            assert!(err.is_bad_input());
            let text = err.to_string();
            assert!(text.starts_with(field), "{text}");
            assert!(text.contains("fix:"), "{text}");
        }
        let err = spec().validate(3).unwrap_err().to_string();
        assert!(err.starts_with("--target"), "{err}");
    }

    /// The default run tag is a valid, time-based tag, so two runs differ.
    #[test]
    fn default_run_tag_is_valid() {
        let plan = spec().validate(1).unwrap();
        assert!(plan.run_tag.starts_with('r') && plan.run_tag.len() > 5);
        assert!(plan.run_tag.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
