//! The provider's fault controls and capacity: what the chaos layer sets through
//! `POST /admin/faults`, merged over the configured baseline.
//!
//! Fields (all optional; a posted object replaces the whole active fault set):
//! - `rate_limit_per_sec`: charges accepted per second (token bucket); beyond it `429` +
//!   `Retry-After`;
//! - `max_concurrency`: charges processed at once; beyond it `429`;
//! - `latency_ms`: processing latency of a charge (replaces the configured base latency);
//! - `error_rate` (0..=1): share of charges answered `500` before anything is recorded;
//! - `commit_then_drop_rate` (0..=1): share of charges committed and then answered by
//!   dropping the connection (the caller cannot know the charge happened);
//! - `outage`: every request answered `503` at once;
//! - `webhook_delay_ms`: the Stripe face's webhooks held back this long before their first
//!   delivery;
//! - `webhook_drop_rate` (0..=1): share of webhook events never delivered;
//! - `webhook_duplicate_rate` (0..=1): share of webhook deliveries sent twice.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ProviderConfig;

/// The fault set as posted and read back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    pub rate_limit_per_sec: Option<u32>,
    pub max_concurrency: Option<u32>,
    pub latency_ms: Option<u64>,
    pub error_rate: Option<f64>,
    pub commit_then_drop_rate: Option<f64>,
    pub outage: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_drop_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_duplicate_rate: Option<f64>,
}

impl Faults {
    /// Checks ranges; the error names the field and the fix.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (field, value) in [
            ("error_rate", self.error_rate),
            ("commit_then_drop_rate", self.commit_then_drop_rate),
            ("webhook_drop_rate", self.webhook_drop_rate),
            ("webhook_duplicate_rate", self.webhook_duplicate_rate),
        ] {
            if let Some(v) = value
                && !(0.0..=1.0).contains(&v)
            {
                return Err((
                    field.to_string(),
                    format!("{field} = {v}: use a share between 0 and 1"),
                ));
            }
        }
        if self.rate_limit_per_sec == Some(0) {
            return Err((
                "rate_limit_per_sec".into(),
                "rate_limit_per_sec = 0: use a positive rate, or \"outage\": true to refuse everything".into(),
            ));
        }
        if self.max_concurrency == Some(0) {
            return Err((
                "max_concurrency".into(),
                "max_concurrency = 0: use a positive limit, or \"outage\": true to refuse everything".into(),
            ));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What a charge request must get past before it is processed.
#[derive(Debug)]
pub enum Admission {
    Admitted(Option<OwnedSemaphorePermit>),
    Outage,
    RateLimited { retry_after: Duration },
    OverCapacity,
}

/// The effective behaviour: configuration merged with the active faults.
#[derive(Debug)]
pub struct Active {
    pub faults: Faults,
    pub latency_ms: u64,
    pub latency_jitter_ms: u64,
    pub error_rate: f64,
    pub commit_then_drop_rate: f64,
    pub outage: bool,
    pub webhook_delay_ms: u64,
    pub webhook_drop_rate: f64,
    pub webhook_duplicate_rate: f64,
    limiter: Option<DefaultDirectRateLimiter>,
    slots: Option<Arc<Semaphore>>,
}

impl Active {
    pub fn new(config: &ProviderConfig, faults: Faults) -> Self {
        let rate = faults.rate_limit_per_sec.or(config.rate_limit_per_sec);
        let concurrency = faults.max_concurrency.or(config.max_concurrency);
        let limiter = rate.and_then(NonZeroU32::new).map(|per_sec| {
            // A small burst (about 50 ms worth) so the limit shapes traffic rather than
            // letting a whole second's quota through at once.
            let burst = NonZeroU32::new((per_sec.get() / 20).max(1)).expect("at least 1");
            DefaultDirectRateLimiter::direct(Quota::per_second(per_sec).allow_burst(burst))
        });
        let slots = concurrency.map(|n| Arc::new(Semaphore::new(n as usize)));
        Self {
            latency_ms: faults.latency_ms.unwrap_or(config.latency_ms),
            latency_jitter_ms: config.latency_jitter_ms,
            error_rate: faults.error_rate.unwrap_or(0.0),
            commit_then_drop_rate: faults.commit_then_drop_rate.unwrap_or(0.0),
            outage: faults.outage.unwrap_or(false),
            webhook_delay_ms: faults.webhook_delay_ms.unwrap_or(0),
            webhook_drop_rate: faults.webhook_drop_rate.unwrap_or(0.0),
            webhook_duplicate_rate: faults.webhook_duplicate_rate.unwrap_or(0.0),
            faults,
            limiter,
            slots,
        }
    }

    /// Outage, rate limit, then concurrency: the cheapest refusals first.
    pub fn admit(&self) -> Admission {
        if self.outage {
            return Admission::Outage;
        }
        if let Some(limiter) = &self.limiter
            && let Err(not_until) = limiter.check()
        {
            let retry_after = not_until.wait_time_from(DefaultClock::default().now());
            return Admission::RateLimited { retry_after };
        }
        match &self.slots {
            None => Admission::Admitted(None),
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(permit) => Admission::Admitted(Some(permit)),
                Err(_) => Admission::OverCapacity,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fault fields override the configuration; an empty set restores it.
    #[test]
    fn faults_override_config() {
        let config = ProviderConfig::default();
        let active = Active::new(&config, Faults::default());
        assert_eq!(active.latency_ms, config.latency_ms);
        assert!(matches!(active.admit(), Admission::Admitted(None)));
        let active = Active::new(
            &config,
            Faults {
                latency_ms: Some(700),
                outage: Some(true),
                ..Faults::default()
            },
        );
        assert_eq!(active.latency_ms, 700);
        assert!(matches!(active.admit(), Admission::Outage));
    }

    /// The concurrency limit refuses the (n+1)th concurrent charge and frees a slot on drop.
    #[test]
    fn concurrency_limit_counts_permits() {
        let active = Active::new(
            &ProviderConfig::default(),
            Faults {
                max_concurrency: Some(2),
                ..Faults::default()
            },
        );
        let a = active.admit();
        let _b = active.admit();
        assert!(matches!(active.admit(), Admission::OverCapacity));
        drop(a);
        assert!(matches!(active.admit(), Admission::Admitted(Some(_))));
    }

    /// The rate limit refuses beyond its burst and says when to come back.
    #[test]
    fn rate_limit_gives_retry_after() {
        let active = Active::new(
            &ProviderConfig::default(),
            Faults {
                rate_limit_per_sec: Some(20),
                ..Faults::default()
            },
        );
        assert!(matches!(active.admit(), Admission::Admitted(_)));
        match active.admit() {
            Admission::RateLimited { retry_after } => {
                assert!(retry_after <= Duration::from_millis(50), "{retry_after:?}")
            }
            other => panic!("expected rate limiting, got {other:?}"),
        }
    }

    /// Out-of-range shares and zero limits are refused with the field named.
    #[test]
    fn validation_names_the_field() {
        let bad = Faults {
            error_rate: Some(1.5),
            ..Faults::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "error_rate");
        let zero = Faults {
            max_concurrency: Some(0),
            ..Faults::default()
        };
        assert_eq!(zero.validate().unwrap_err().0, "max_concurrency");
        assert!(Faults::default().validate().is_ok());
    }
}
