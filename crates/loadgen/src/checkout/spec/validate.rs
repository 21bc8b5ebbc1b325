//! [`CheckoutSpec::validate`]: the `[workload]` table checked once, against the number of
//! targets, into the [`Plan`] the workload runs; errors name the field, the value and the fix.

use super::*;

fn bad(field: &str, value: impl ToString, problem: &str, fix: &str) -> LoadgenError {
    LoadgenError::invalid(format!("workload.{field}"), value, problem, fix)
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
