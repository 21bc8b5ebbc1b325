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

mod validate;

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

impl Plan {
    /// How long the end of a run waits for customers still in progress: the longest one
    /// customer can take, plus a margin for the last answer to be read.
    pub fn drain_timeout(&self) -> Duration {
        self.give_up_after + Duration::from_secs(1)
    }
}
