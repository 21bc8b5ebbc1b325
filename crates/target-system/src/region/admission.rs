//! Admission control in front of the payment provider.
//!
//! A new checkout is admitted before anything is written, so a shed request leaves no trace
//! but a counter: the checkout rate limit (governor), the provider's pushback (its last 429
//! asked for a pause), then a provider slot (at most `provider_max_in_flight` calls at once,
//! waited for at most `queue_timeout_ms`). Shed work gets a fast `429` + `Retry-After`.
//! Repair calls take slots too (waiting longer, never shed), so the limit covers every call.
//!
//! Every decision is counted per second and the counts are flushed to `admission_stats`
//! (durable evidence for the verifier).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use prometheus::IntCounterVec;

use crate::clock::now_us;
use crate::config::AdmissionConfig;
use evidence::store::Db;

/// Why a checkout was or was not admitted (the `decision` column and metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Admitted,
    RateLimited,
    Pushback,
    QueueTimeout,
    Parked,
    Rejected,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admitted => "admitted",
            Self::RateLimited => "rate_limited",
            Self::Pushback => "pushback",
            Self::QueueTimeout => "queue_timeout",
            Self::Parked => "parked",
            Self::Rejected => "rejected_degraded",
        }
    }
}

/// A held provider slot (or none when admission control is switched off).
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

/// The outcome of admitting a checkout.
#[derive(Debug)]
pub enum Admission {
    Admitted(Slot),
    Shed {
        decision: Decision,
        retry_after: Duration,
    },
}

/// Rate limit, pushback and provider slots of one region.
#[derive(Debug)]
pub struct Limits {
    slots: Option<Arc<Semaphore>>,
    rate: Option<DefaultDirectRateLimiter>,
    queue_timeout: Duration,
    max_pushback: Duration,
    origin: Instant,
    /// Milliseconds after `origin` until which new checkouts are shed (provider pushback).
    pushback_until_ms: AtomicU64,
}

impl Limits {
    /// `enforce = false` is the `no-admission-control` defect: everything is admitted.
    pub fn new(config: &AdmissionConfig, enforce: bool) -> Self {
        let rate = config
            .checkout_rate_limit_per_sec
            .and_then(NonZeroU32::new)
            .filter(|_| enforce)
            .map(|per_sec| {
                let burst = NonZeroU32::new((per_sec.get() / 20).max(1)).expect("at least 1");
                DefaultDirectRateLimiter::direct(Quota::per_second(per_sec).allow_burst(burst))
            });
        Self {
            slots: enforce
                .then(|| Arc::new(Semaphore::new(config.provider_max_in_flight as usize))),
            rate,
            queue_timeout: Duration::from_millis(config.queue_timeout_ms),
            max_pushback: if enforce {
                Duration::from_millis(config.max_pushback_ms)
            } else {
                Duration::ZERO
            },
            origin: Instant::now(),
            pushback_until_ms: AtomicU64::new(0),
        }
    }

    /// Admits a new checkout that arrived at `arrived`, or sheds it. The queue wait ends a
    /// little before `queue_timeout_ms` after arrival (not after the call), leaving time to
    /// answer, so a shed answer is not later than that.
    pub async fn admit(&self, arrived: Instant) -> Admission {
        if let Some(rate) = &self.rate
            && let Err(not_until) = rate.check()
        {
            return Admission::Shed {
                decision: Decision::RateLimited,
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            };
        }
        let now_ms = self.origin.elapsed().as_millis() as u64;
        let until_ms = self.pushback_until_ms.load(Ordering::Relaxed);
        if now_ms < until_ms {
            return Admission::Shed {
                decision: Decision::Pushback,
                retry_after: Duration::from_millis(until_ms - now_ms),
            };
        }
        let answer_margin = (self.queue_timeout / 10).min(Duration::from_millis(5));
        let wait = (arrived + self.queue_timeout)
            .saturating_duration_since(Instant::now())
            .saturating_sub(answer_margin);
        match self.slot(wait).await {
            Some(slot) => Admission::Admitted(slot),
            None => Admission::Shed {
                decision: Decision::QueueTimeout,
                retry_after: Duration::from_millis(100),
            },
        }
    }

    /// Waits up to `wait` for a provider slot.
    pub async fn slot(&self, wait: Duration) -> Option<Slot> {
        match &self.slots {
            None => Some(Slot(None)),
            Some(slots) => match tokio::time::timeout(wait, slots.clone().acquire_owned()).await {
                Ok(Ok(permit)) => Some(Slot(Some(permit))),
                _ => None,
            },
        }
    }

    /// The provider asked for a pause (429 + Retry-After): shed new checkouts until then.
    pub fn pushback(&self, retry_after: Duration) {
        let wait = retry_after.min(self.max_pushback);
        if wait.is_zero() {
            return;
        }
        let until = (self.origin.elapsed() + wait).as_millis() as u64;
        self.pushback_until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// Provider calls in flight now (for the metrics gauge).
    pub fn in_flight(&self, limit: u32) -> i64 {
        self.slots
            .as_ref()
            .map(|s| i64::from(limit) - s.available_permits() as i64)
            .unwrap_or(0)
    }
}

/// A region's admission as its checkout and repair paths use it: the [`Limits`], and every
/// decision counted (per second for `admission_stats`, and in the decisions metric).
#[derive(Debug)]
pub struct Gate {
    limits: Limits,
    stats: Stats,
    decisions: IntCounterVec,
}

impl Gate {
    /// `enforce = false` is the `no-admission-control` defect: everything is admitted.
    pub fn new(config: &AdmissionConfig, enforce: bool, decisions: IntCounterVec) -> Self {
        Self {
            limits: Limits::new(config, enforce),
            stats: Stats::default(),
            decisions,
        }
    }

    /// Admits a new checkout or sheds it, counting the decision.
    pub async fn admit(&self, arrived: Instant) -> Admission {
        let admission = self.limits.admit(arrived).await;
        self.count(match &admission {
            Admission::Admitted(_) => Decision::Admitted,
            Admission::Shed { decision, .. } => *decision,
        });
        admission
    }

    /// Counts a decision made outside [`Gate::admit`] (parked, rejected in degraded mode).
    pub fn count(&self, decision: Decision) {
        self.decisions.with_label_values(&[decision.as_str()]).inc();
        self.stats.count(decision);
    }

    /// A provider slot for a call that is never shed (a retry, a repair call).
    pub async fn slot(&self, wait: Duration) -> Option<Slot> {
        self.limits.slot(wait).await
    }

    /// The provider asked for a pause (its 429): new checkouts are shed until it passes.
    pub fn pushback(&self, retry_after: Duration) {
        self.limits.pushback(retry_after);
    }

    /// Adds the decision counts gathered since the last flush to the store.
    pub async fn flush(&self, db: &Db) -> Result<(), sqlx::Error> {
        self.stats.flush(db).await
    }
}

/// Per-second admission counts, flushed to `admission_stats`.
#[derive(Debug, Default)]
pub struct Stats {
    counts: Mutex<HashMap<(i64, Decision), u64>>,
}

impl Stats {
    pub fn count(&self, decision: Decision) {
        let second_us = now_us() / 1_000_000 * 1_000_000;
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry((second_us, decision)).or_insert(0) += 1;
    }

    /// Adds the counts gathered since the last flush to the store.
    pub async fn flush(&self, db: &Db) -> Result<(), sqlx::Error> {
        let drained: Vec<_> = {
            let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            counts.drain().collect()
        };
        if drained.is_empty() {
            return Ok(());
        }
        let mut tx = db.pool.begin().await?;
        for ((second_us, decision), n) in &drained {
            sqlx::query(
                "INSERT INTO admission_stats (second_us, decision, count) VALUES ($1, $2, $3) \
                 ON CONFLICT (second_us, decision) DO UPDATE SET count = admission_stats.count + excluded.count",
            )
            .bind(second_us)
            .bind(decision.as_str())
            .bind(i64::try_from(*n).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots bound concurrency and a full gate sheds after the queue timeout.
    #[tokio::test(start_paused = true)]
    async fn sheds_after_queue_timeout() {
        let config = AdmissionConfig {
            provider_max_in_flight: 2,
            queue_timeout_ms: 50,
            ..AdmissionConfig::default()
        };
        let gate = Limits::new(&config, true);
        let a = gate.admit(Instant::now()).await;
        let b = gate.admit(Instant::now()).await;
        assert!(matches!(a, Admission::Admitted(_)) && matches!(b, Admission::Admitted(_)));
        assert_eq!(gate.in_flight(2), 2);
        let started = Instant::now();
        let shed = gate.admit(started).await;
        assert!(matches!(
            shed,
            Admission::Shed {
                decision: Decision::QueueTimeout,
                ..
            }
        ));
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(45),
            "answered within the queue timeout"
        );
        drop(a);
        assert!(matches!(
            gate.admit(Instant::now()).await,
            Admission::Admitted(_)
        ));
    }

    /// Provider pushback sheds new checkouts until it passes; the defect switch admits all.
    #[tokio::test(start_paused = true)]
    async fn pushback_then_recovery_and_the_defect() {
        let gate = Limits::new(&AdmissionConfig::default(), true);
        gate.pushback(Duration::from_millis(300));
        match gate.admit(Instant::now()).await {
            Admission::Shed {
                decision,
                retry_after,
            } => {
                assert_eq!(decision, Decision::Pushback);
                assert!(retry_after <= Duration::from_millis(300));
            }
            other => panic!("expected pushback, got {other:?}"),
        }
        tokio::time::advance(Duration::from_millis(301)).await;
        assert!(matches!(
            gate.admit(Instant::now()).await,
            Admission::Admitted(_)
        ));

        let open = Limits::new(
            &AdmissionConfig {
                provider_max_in_flight: 1,
                checkout_rate_limit_per_sec: Some(1),
                ..AdmissionConfig::default()
            },
            false,
        );
        open.pushback(Duration::from_secs(1));
        for _ in 0..10 {
            assert!(matches!(
                open.admit(Instant::now()).await,
                Admission::Admitted(_)
            ));
        }
    }

    /// The checkout rate limit sheds beyond its burst with a Retry-After.
    #[tokio::test]
    async fn rate_limit_sheds() {
        let gate = Limits::new(
            &AdmissionConfig {
                checkout_rate_limit_per_sec: Some(10),
                ..AdmissionConfig::default()
            },
            true,
        );
        assert!(matches!(
            gate.admit(Instant::now()).await,
            Admission::Admitted(_)
        ));
        assert!(matches!(
            gate.admit(Instant::now()).await,
            Admission::Shed {
                decision: Decision::RateLimited,
                ..
            }
        ));
    }
}
