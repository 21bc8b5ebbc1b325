//! One configuration struct for every parameter of the reference system.
//!
//! A profile's `[target]` table deserialises into [`TargetConfig`]; unknown keys are refused
//! so a typo never silently falls back to a default. Units are in the names (`_ms`,
//! `_seconds`, `_cents`). [`TargetConfig::validate`] checks ranges once, at start.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod validate;

/// A parameter outside its allowed range: names the field, the value and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target.{field} = {value}: {fix}")]
pub struct ConfigError {
    pub field: String,
    pub value: String,
    pub fix: String,
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
    /// How long one delivery to the event sink may take before the relay gives up on the
    /// pass (the event stays unpublished and is delivered again).
    pub delivery_timeout_ms: u64,
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
    /// The Stripe-compatible face's secret keys, one per caller (`a = "sk_test_..."`): a
    /// request's key says whose it is, and the request log records that caller.
    pub stripe_keys: BTreeMap<String, String>,
    /// Where the Stripe face sends each caller's webhook events (`a = "http://..."`),
    /// signed with `stripe_webhook_secret`. More endpoints can be made through its API
    /// (`POST /v1/webhook_endpoints`).
    pub stripe_webhooks: BTreeMap<String, String>,
    /// The signing secret of the configured webhook endpoints (`whsec_...`).
    pub stripe_webhook_secret: String,
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
            delivery_timeout_ms: 2_000,
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
            stripe_keys: [("a", "sk_test_rig_a"), ("b", "sk_test_rig_b")]
                .into_iter()
                .map(|(caller, key)| (caller.to_string(), key.to_string()))
                .collect(),
            stripe_webhooks: BTreeMap::new(),
            stripe_webhook_secret: "whsec_rig_test_secret".to_string(),
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
            initial_stock: self
                .catalog
                .iter()
                .map(|item| (item.sku.clone(), self.initial_stock(&item.sku)))
                .collect(),
        }
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
