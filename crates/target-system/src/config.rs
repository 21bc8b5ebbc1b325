//! One configuration struct for every parameter of the reference system.
//!
//! A profile's `[target]` table deserialises into [`TargetConfig`]; unknown keys are refused
//! so a typo never silently falls back to a default. Units are in the names (`_ms`,
//! `_seconds`, `_cents`). [`TargetConfig::validate`] checks ranges once, at start.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A parameter outside its allowed range: names the field, the value and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target.{field} = {value}: {fix}")]
pub struct ConfigError {
    pub field: String,
    pub value: String,
    pub fix: String,
}

fn invalid(field: &str, value: impl std::fmt::Display, fix: &str) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        value: value.to_string(),
        fix: fix.to_string(),
    }
}

/// Every parameter of the reference checkout system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    /// Seed for every random choice the system makes (provider latency, fault draws).
    pub seed: u64,
    /// What can be bought, and at what price.
    pub catalog: Vec<CatalogItem>,
    /// Initial stock of every sku in each region.
    pub stock_per_sku: i64,
    /// Per-sku initial stock that overrides `stock_per_sku` (same in both regions).
    pub stock: BTreeMap<String, i64>,
    pub checkout: CheckoutConfig,
    pub payment: PaymentConfig,
    pub retry_budget: RetryBudgetConfig,
    pub admission: AdmissionConfig,
    pub breaker: BreakerConfig,
    pub forward: ForwardConfig,
    pub repair: RepairConfig,
    pub outbox: OutboxConfig,
    pub provider: ProviderConfig,
    pub admin: AdminConfig,
    /// Deliberate defects (for proving the verifier); empty unless asked for with `--defect`.
    pub defects: std::collections::BTreeSet<crate::defects::Defect>,
}

/// Operator endpoints (`/admin/...`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Answer admin requests from non-loopback clients too (e.g. inside a container network).
    pub allow_remote: bool,
}

/// One sellable sku.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogItem {
    pub sku: String,
    pub price_cents: i64,
}

/// Limits on checkout requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckoutConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Most lines in one order.
    pub max_items: usize,
    /// Largest quantity on one line.
    pub max_qty: i64,
    /// Longest accepted order id / customer id / cart id.
    pub max_id_len: usize,
}

/// Calling the payment provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentConfig {
    /// One end-to-end deadline for a checkout, including every retry. A forwarded request
    /// carries what remains of it in the `x-rig-deadline-ms` header.
    pub deadline_ms: u64,
    /// Timeout of one provider call (never longer than what remains of the deadline).
    pub per_try_timeout_ms: u64,
    /// Most provider calls (first try + retries) for one charge.
    pub max_attempts: u32,
    /// Exponential backoff with full jitter: the n-th retry waits a uniform draw from
    /// `[0, min(backoff_max_ms, backoff_base_ms * 2^(n-1))]`, and never less than the
    /// provider's `Retry-After`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Currency of every charge.
    pub currency: String,
}

/// Retry budget (token bucket, as Finagle and Linkerd): retries may add at most `ratio` of
/// the original calls, plus `min_per_sec` free retries per second, over a `ttl_seconds` window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    pub ratio: f64,
    pub min_per_sec: f64,
    pub ttl_seconds: u64,
}

/// Admission control in front of the provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// Most provider calls in flight from this region at once (checkout and repair alike).
    pub provider_max_in_flight: u32,
    /// Longest a new checkout waits for a provider slot before it is shed (429).
    pub queue_timeout_ms: u64,
    /// New checkouts admitted per second (token bucket); `None` = no rate limit.
    pub checkout_rate_limit_per_sec: Option<u32>,
    /// When the provider answers 429 with a Retry-After, shed new checkouts until then
    /// (bounded by this many milliseconds); 0 disables pushback.
    pub max_pushback_ms: u64,
}

/// What a region does with new payments when the breaker is open or an operator paused them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DegradedMode {
    /// Save the intent, reserve stock, answer 202; the repair worker pays later, within
    /// `repair.max_pending_age_seconds`, or voids and fails safely.
    Park,
    /// Answer `503 payment_unavailable` with Retry-After; nothing is written.
    Reject,
}

/// The circuit breaker on provider calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Opens when this share of charge calls failed (timeouts, 5xx, broken connections;
    /// not 429, which is pushback) ...
    pub failure_ratio: f64,
    /// ... over this window ...
    pub window_seconds: u64,
    /// ... with at least this many calls in it.
    pub min_requests: u32,
    /// An open breaker lets one probe call through after this long.
    pub probe_after_ms: u64,
    /// What new payments get while the breaker is open (and while paused).
    pub degraded_mode: DegradedMode,
}

/// The forward outbox of a gateway that cannot reach an order's owner region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// How often held intents are re-sent to their owner.
    pub retry_interval_ms: u64,
    pub batch: u32,
    /// How long a status look-up waits for the owner region before answering from local
    /// evidence (a read should not wait as long as a checkout).
    pub status_timeout_ms: u64,
}

/// The repair worker that resolves pending orders from provider evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepairConfig {
    /// How often pending orders are scanned.
    pub scan_interval_ms: u64,
    /// Bound on time spent in pending states (the verifier's bounded-pending-age invariant).
    pub max_pending_age_seconds: u64,
    /// A pending order whose key the provider has never seen is voided (tombstoned, then
    /// failed safely) only after this long, so a request still in transit can land first.
    pub void_after_seconds: u64,
    /// An order stuck in `payment_authorizing` this long after its last change (a crash
    /// mid-call) is treated as pending.
    pub stuck_after_seconds: u64,
    /// Most orders resolved per scan.
    pub batch: u32,
}

/// The transactional outbox relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    pub poll_interval_ms: u64,
    pub batch: u32,
}

/// The simulated payment provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// Base latency of a charge.
    pub latency_ms: u64,
    /// Uniform extra latency in `[0, latency_jitter_ms]`, drawn from the seed.
    pub latency_jitter_ms: u64,
    /// Charges per second the provider accepts (token bucket); `None` = unlimited.
    pub rate_limit_per_sec: Option<u32>,
    /// Charges processed at once; more get `429`. `None` = unlimited.
    pub max_concurrency: Option<u32>,
    /// How long an idempotency key is remembered; a reused key after that is a new request.
    pub key_retention_seconds: u64,
    /// Deterministic decline rule: an amount whose cents part equals this is declined
    /// (default 51: `$10.51` is declined, `$10.50` is not). `None` declines nothing.
    pub decline_cents: Option<i64>,
}

impl Default for TargetConfig {
    fn default() -> Self {
        let catalog = [
            ("sku-1", 1_200),
            ("sku-2", 2_500),
            ("sku-3", 800),
            ("sku-4", 4_900),
            ("sku-5", 15_000),
            ("sku-declined", 1_051),
        ]
        .into_iter()
        .map(|(sku, price_cents)| CatalogItem {
            sku: sku.to_string(),
            price_cents,
        })
        .collect();
        Self {
            seed: 1,
            catalog,
            stock_per_sku: 1_000_000,
            stock: BTreeMap::new(),
            checkout: CheckoutConfig::default(),
            payment: PaymentConfig::default(),
            retry_budget: RetryBudgetConfig::default(),
            admission: AdmissionConfig::default(),
            breaker: BreakerConfig::default(),
            forward: ForwardConfig::default(),
            repair: RepairConfig::default(),
            outbox: OutboxConfig::default(),
            provider: ProviderConfig::default(),
            admin: AdminConfig::default(),
            defects: std::collections::BTreeSet::new(),
        }
    }
}

impl Default for CheckoutConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_items: 50,
            max_qty: 1_000,
            max_id_len: 128,
        }
    }
}

impl Default for PaymentConfig {
    fn default() -> Self {
        Self {
            deadline_ms: 2_000,
            per_try_timeout_ms: 1_000,
            max_attempts: 3,
            backoff_base_ms: 50,
            backoff_max_ms: 1_000,
            currency: "USD".to_string(),
        }
    }
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_sec: 10.0,
            ttl_seconds: 10,
        }
    }
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            provider_max_in_flight: 64,
            queue_timeout_ms: 50,
            checkout_rate_limit_per_sec: None,
            max_pushback_ms: 1_000,
        }
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_ratio: 0.5,
            window_seconds: 5,
            min_requests: 20,
            probe_after_ms: 2_000,
            degraded_mode: DegradedMode::Park,
        }
    }
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            retry_interval_ms: 500,
            batch: 50,
            status_timeout_ms: 500,
        }
    }
}

impl Default for RepairConfig {
    fn default() -> Self {
        Self {
            scan_interval_ms: 1_000,
            max_pending_age_seconds: 30,
            void_after_seconds: 5,
            stuck_after_seconds: 10,
            batch: 200,
        }
    }
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 200,
            batch: 50,
        }
    }
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            latency_ms: 2,
            latency_jitter_ms: 3,
            rate_limit_per_sec: None,
            max_concurrency: None,
            key_retention_seconds: 24 * 3600,
            decline_cents: Some(51),
        }
    }
}

impl TargetConfig {
    /// The bounds the verifier judges by, as this system records them in its region store.
    pub fn run_params(&self) -> evidence::RunParams {
        evidence::RunParams {
            max_pending_age_seconds: self.repair.max_pending_age_seconds,
            repair_scan_interval_ms: self.repair.scan_interval_ms,
            provider_max_in_flight: self.admission.provider_max_in_flight,
            retry_budget_ratio: self.retry_budget.ratio,
            retry_budget_min_per_sec: self.retry_budget.min_per_sec,
            retry_budget_ttl_seconds: self.retry_budget.ttl_seconds,
        }
    }

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
        Ok(())
    }

    /// The price of `sku`, if it is in the catalog.
    pub fn price_cents(&self, sku: &str) -> Option<i64> {
        self.catalog
            .iter()
            .find(|item| item.sku == sku)
            .map(|item| item.price_cents)
    }

    /// Initial stock of `sku` in each region.
    pub fn initial_stock(&self, sku: &str) -> i64 {
        self.stock.get(sku).copied().unwrap_or(self.stock_per_sku)
    }

    /// Parses a `[target]` table (TOML text without the header).
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

impl PaymentConfig {
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
    pub fn per_try_timeout(&self) -> Duration {
        Duration::from_millis(self.per_try_timeout_ms)
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
    }
}
