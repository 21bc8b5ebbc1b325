//! [`TargetConfig::validate`]: every range checked once, at start; the error names the
//! field, the value and the fix.

use super::{ConfigError, TargetConfig};

fn invalid(field: &str, value: impl std::fmt::Display, fix: &str) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        value: value.to_string(),
        fix: fix.to_string(),
    }
}

impl TargetConfig {
    /// Checks every range once; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.catalog.is_empty() {
            return Err(invalid(
                "catalog",
                "[]",
                "list at least one {sku, price_cents}",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, item) in self.catalog.iter().enumerate() {
            if item.sku.is_empty() || item.sku.len() > self.checkout.max_id_len {
                return Err(invalid(
                    &format!("catalog[{i}].sku"),
                    format!("{:?}", item.sku),
                    "use a non-empty sku no longer than checkout.max_id_len",
                ));
            }
            if !seen.insert(item.sku.as_str()) {
                return Err(invalid(
                    &format!("catalog[{i}].sku"),
                    format!("{:?}", item.sku),
                    "each sku may appear once",
                ));
            }
            if item.price_cents <= 0 {
                return Err(invalid(
                    &format!("catalog[{i}].price_cents"),
                    item.price_cents,
                    "prices are positive integers of cents",
                ));
            }
        }
        if self.stock_per_sku < 0 {
            return Err(invalid(
                "stock_per_sku",
                self.stock_per_sku,
                "use 0 or more",
            ));
        }
        for (sku, stock) in &self.stock {
            if !self.catalog.iter().any(|item| &item.sku == sku) {
                return Err(invalid(
                    &format!("stock.{sku}"),
                    stock,
                    "name a sku from the catalog",
                ));
            }
            if *stock < 0 {
                return Err(invalid(&format!("stock.{sku}"), stock, "use 0 or more"));
            }
        }
        let c = &self.checkout;
        positive("checkout.max_body_bytes", c.max_body_bytes as u64)?;
        positive("checkout.max_items", c.max_items as u64)?;
        positive("checkout.max_qty", c.max_qty.max(0) as u64)?;
        positive("checkout.max_id_len", c.max_id_len as u64)?;
        let p = &self.payment;
        positive("payment.deadline_ms", p.deadline_ms)?;
        positive("payment.per_try_timeout_ms", p.per_try_timeout_ms)?;
        if p.currency.len() != 3 || !p.currency.chars().all(|ch| ch.is_ascii_uppercase()) {
            return Err(invalid(
                "payment.currency",
                format!("{:?}", p.currency),
                "use a three-letter ISO 4217 code such as \"USD\"",
            ));
        }
        positive("payment.max_attempts", u64::from(p.max_attempts))?;
        if p.max_attempts > 10 {
            return Err(invalid(
                "payment.max_attempts",
                p.max_attempts,
                "use 1 to 10",
            ));
        }
        positive("payment.backoff_base_ms", p.backoff_base_ms)?;
        if p.backoff_max_ms < p.backoff_base_ms {
            return Err(invalid(
                "payment.backoff_max_ms",
                p.backoff_max_ms,
                "must be at least payment.backoff_base_ms",
            ));
        }
        let b = &self.retry_budget;
        if !(0.0..=10.0).contains(&b.ratio) {
            return Err(invalid(
                "retry_budget.ratio",
                b.ratio,
                "use a share between 0 and 10 (0.2 = retries may add 20 %)",
            ));
        }
        if !(b.min_per_sec >= 0.0 && b.min_per_sec.is_finite()) {
            return Err(invalid(
                "retry_budget.min_per_sec",
                b.min_per_sec,
                "use 0 or more",
            ));
        }
        if !(1..=60).contains(&b.ttl_seconds) {
            return Err(invalid(
                "retry_budget.ttl_seconds",
                b.ttl_seconds,
                "use 1 to 60 seconds",
            ));
        }
        let a = &self.admission;
        positive(
            "admission.provider_max_in_flight",
            u64::from(a.provider_max_in_flight),
        )?;
        if let Some(rate) = a.checkout_rate_limit_per_sec {
            positive("admission.checkout_rate_limit_per_sec", u64::from(rate))?;
        }
        let br = &self.breaker;
        if !(br.failure_ratio > 0.0 && br.failure_ratio <= 1.0) {
            return Err(invalid(
                "breaker.failure_ratio",
                br.failure_ratio,
                "use a share in (0, 1]",
            ));
        }
        positive("breaker.window_seconds", br.window_seconds)?;
        positive("breaker.min_requests", u64::from(br.min_requests))?;
        positive("breaker.probe_after_ms", br.probe_after_ms)?;
        positive("forward.retry_interval_ms", self.forward.retry_interval_ms)?;
        positive("forward.batch", u64::from(self.forward.batch))?;
        positive("forward.status_timeout_ms", self.forward.status_timeout_ms)?;
        let r = &self.repair;
        positive("repair.scan_interval_ms", r.scan_interval_ms)?;
        positive("repair.max_pending_age_seconds", r.max_pending_age_seconds)?;
        positive("repair.batch", u64::from(r.batch))?;
        if r.void_after_seconds >= r.max_pending_age_seconds {
            return Err(invalid(
                "repair.void_after_seconds",
                r.void_after_seconds,
                "must be below repair.max_pending_age_seconds so unknown payments resolve in time",
            ));
        }
        positive("outbox.poll_interval_ms", self.outbox.poll_interval_ms)?;
        positive("outbox.batch", u64::from(self.outbox.batch))?;
        positive(
            "outbox.delivery_timeout_ms",
            self.outbox.delivery_timeout_ms,
        )?;
        let pr = &self.provider;
        if let Some(rate) = pr.rate_limit_per_sec {
            positive("provider.rate_limit_per_sec", u64::from(rate))?;
        }
        if let Some(max) = pr.max_concurrency {
            positive("provider.max_concurrency", u64::from(max))?;
        }
        if pr.key_retention_seconds <= r.max_pending_age_seconds {
            return Err(invalid(
                "provider.key_retention_seconds",
                pr.key_retention_seconds,
                "must exceed repair.max_pending_age_seconds, or a late retry could charge twice",
            ));
        }
        if let Some(cents) = pr.decline_cents
            && !(0..100).contains(&cents)
        {
            return Err(invalid(
                "provider.decline_cents",
                cents,
                "use a cents value 0..=99, or leave it out to decline nothing",
            ));
        }
        for (caller, url) in &pr.stripe_webhooks {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    &format!("provider.stripe_webhooks.{caller}"),
                    url,
                    "use the endpoint's URL, e.g. http://127.0.0.1:19081/webhooks/stripe",
                ));
            }
        }
        if !pr.stripe_webhook_secret.starts_with("whsec_") {
            return Err(invalid(
                "provider.stripe_webhook_secret",
                &pr.stripe_webhook_secret,
                "use a signing secret of the form whsec_...",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (caller, key) in &pr.stripe_keys {
            let field = format!("provider.stripe_keys.{caller}");
            if !key.starts_with("sk_") || key.len() < 8 || key.contains(char::is_whitespace) {
                return Err(invalid(
                    &field,
                    key,
                    "use a secret key of the form sk_test_... (8 characters or more, no spaces)",
                ));
            }
            if !seen.insert(key) {
                return Err(invalid(
                    &field,
                    key,
                    "each caller needs a key of its own: the key tells the request log who called",
                ));
            }
        }
        Ok(())
    }
}

fn positive(field: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        Err(invalid(field, value, "must be greater than 0"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are valid and match the documented values.
    #[test]
    fn defaults_are_valid() {
        let config = TargetConfig::default();
        config.validate().unwrap();
        assert_eq!(config.payment.deadline_ms, 2_000);
        assert_eq!(config.repair.max_pending_age_seconds, 30);
        assert_eq!(config.outbox.poll_interval_ms, 200);
        assert_eq!(config.outbox.batch, 50);
        assert_eq!(config.provider.key_retention_seconds, 86_400);
    }

    /// A partial table keeps the defaults for what it leaves out; unknown keys are refused.
    #[test]
    fn partial_tables_and_unknown_keys() {
        let config =
            TargetConfig::from_toml("seed = 9\n[repair]\nmax_pending_age_seconds = 60\n").unwrap();
        assert_eq!(config.seed, 9);
        assert_eq!(config.repair.max_pending_age_seconds, 60);
        assert_eq!(config.repair.scan_interval_ms, 1_000);
        let err = TargetConfig::from_toml("[repair]\nmax_pending_age = 60\n").unwrap_err();
        assert!(err.to_string().contains("max_pending_age"), "{err}");
    }

    /// Out-of-range values name the field, the value and the fix.
    #[test]
    fn validation_names_field_and_fix() {
        let mut config = TargetConfig::default();
        config.payment.deadline_ms = 0;
        let err = config.validate().unwrap_err();
        assert_eq!(err.field, "payment.deadline_ms");
        assert!(err.to_string().contains("greater than 0"));

        let mut config = TargetConfig::default();
        config.stock.insert("nope".into(), 3);
        assert_eq!(config.validate().unwrap_err().field, "stock.nope");

        let mut config = TargetConfig::default();
        config.provider.key_retention_seconds = 10;
        assert_eq!(
            config.validate().unwrap_err().field,
            "provider.key_retention_seconds"
        );

        // The Stripe face's keys: secret-key shaped, one per caller.
        let mut config = TargetConfig::default();
        config
            .provider
            .stripe_keys
            .insert("a".into(), "pk_test_x".into());
        assert_eq!(
            config.validate().unwrap_err().field,
            "provider.stripe_keys.a"
        );
        let mut config = TargetConfig::default();
        config
            .provider
            .stripe_keys
            .insert("c".into(), "sk_test_rig_a".into());
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("a key of its own"), "{err}");
    }
}
