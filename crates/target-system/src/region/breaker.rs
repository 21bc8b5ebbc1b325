//! The circuit breaker on provider charge calls, which drives payment-degraded mode.
//!
//! Closed: calls flow; outcomes are counted in 250 ms buckets over `window_seconds`. When at
//! least `min_requests` calls ended and `failure_ratio` of them failed (timeout, 5xx, broken
//! connection; a 429 is pushback, not failure), it opens. Open: no calls (new payments are
//! parked or rejected) until `probe_after_ms`, then one probe call is let through
//! (half-open); its success closes the breaker, its failure opens it again. A probe whose
//! outcome never arrives (its caller gave up before calling) does not wedge the breaker: after
//! another `probe_after_ms` a new probe is let through.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::BreakerConfig;

const BUCKET: Duration = Duration::from_millis(250);

/// What the breaker lets a caller do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Call,
    /// The one call of the half-open state: report its outcome with `probe = true`.
    Probe,
    Refuse,
}

/// A change worth recording (the payment mode changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub open: bool,
    pub reason: String,
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { retry_at: Instant },
}

#[derive(Debug)]
struct Inner {
    state: State,
    buckets: VecDeque<(u64, u32, u32)>,
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    origin: Instant,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(config: &BreakerConfig) -> Self {
        Self {
            config: config.clone(),
            origin: Instant::now(),
            inner: Mutex::new(Inner {
                state: State::Closed,
                buckets: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a charge call may start now.
    pub fn permission(&self, now: Instant) -> Permission {
        let probe_after = Duration::from_millis(self.config.probe_after_ms);
        let mut inner = self.lock();
        match inner.state {
            State::Closed => Permission::Call,
            State::Open { until: due } | State::HalfOpen { retry_at: due } if now >= due => {
                inner.state = State::HalfOpen {
                    retry_at: now + probe_after,
                };
                Permission::Probe
            }
            State::Open { .. } | State::HalfOpen { .. } => Permission::Refuse,
        }
    }

    /// True while new payments should be degraded (open or half-open).
    pub fn is_open(&self) -> bool {
        !matches!(self.lock().state, State::Closed)
    }

    /// Records a charge call's outcome; returns the mode change it caused, if any.
    pub fn record(&self, now: Instant, failed: bool, probe: bool) -> Option<Change> {
        let probe_after = Duration::from_millis(self.config.probe_after_ms);
        let mut inner = self.lock();
        if probe {
            return if failed {
                inner.state = State::Open {
                    until: now + probe_after,
                };
                None
            } else {
                inner.state = State::Closed;
                inner.buckets.clear();
                Some(Change {
                    open: false,
                    reason: "breaker closed: the probe call succeeded".into(),
                })
            };
        }
        if !matches!(inner.state, State::Closed) {
            // Calls that started before the breaker opened: their outcome is old news.
            return None;
        }
        let index =
            (now.saturating_duration_since(self.origin).as_millis() / BUCKET.as_millis()) as u64;
        let window = (self.config.window_seconds * 1_000 / BUCKET.as_millis() as u64).max(1);
        while inner
            .buckets
            .front()
            .is_some_and(|(i, _, _)| i + window <= index)
        {
            inner.buckets.pop_front();
        }
        if inner.buckets.back().is_none_or(|(i, _, _)| *i != index) {
            inner.buckets.push_back((index, 0, 0));
        }
        if let Some(last) = inner.buckets.back_mut() {
            if failed {
                last.2 += 1;
            } else {
                last.1 += 1;
            }
        }
        let (ok, bad) = inner
            .buckets
            .iter()
            .fold((0u32, 0u32), |(o, b), (_, ok, bad)| (o + ok, b + bad));
        let total = ok + bad;
        if total >= self.config.min_requests
            && f64::from(bad) >= self.config.failure_ratio * f64::from(total)
        {
            inner.state = State::Open {
                until: now + probe_after,
            };
            inner.buckets.clear();
            return Some(Change {
                open: true,
                reason: format!(
                    "breaker opened: {bad} of {total} charge calls failed in {} s",
                    self.config.window_seconds
                ),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(&BreakerConfig {
            min_requests: 10,
            ..BreakerConfig::default()
        })
    }

    /// It opens only with enough calls and enough failures, then refuses until the probe.
    #[test]
    fn opens_on_failure_ratio_then_probes() {
        let b = breaker();
        let t = b.origin + Duration::from_secs(1);
        for _ in 0..9 {
            assert_eq!(b.record(t, true, false), None, "below min_requests");
        }
        let change = b.record(t, true, false).expect("opens at the 10th failure");
        assert!(change.open && change.reason.contains("10 of 10"));
        assert_eq!(b.permission(t), Permission::Refuse);
        let later = t + Duration::from_millis(2_000);
        assert_eq!(b.permission(later), Permission::Probe);
        assert_eq!(
            b.permission(later),
            Permission::Refuse,
            "one probe at a time"
        );
        assert_eq!(b.record(later, true, true), None, "a failed probe re-opens");
        assert_eq!(
            b.permission(later + Duration::from_millis(100)),
            Permission::Refuse
        );
        let again = later + Duration::from_millis(2_100);
        assert_eq!(b.permission(again), Permission::Probe);
        let closed = b.record(again, false, true).expect("a good probe closes");
        assert!(!closed.open);
        assert_eq!(b.permission(again), Permission::Call);
    }

    /// A probe whose outcome never comes does not wedge the breaker: another probe follows.
    #[test]
    fn a_lost_probe_is_replaced() {
        let b = breaker();
        let t = b.origin + Duration::from_secs(1);
        for _ in 0..10 {
            b.record(t, true, false);
        }
        let probe_at = t + Duration::from_millis(2_000);
        assert_eq!(b.permission(probe_at), Permission::Probe);
        assert_eq!(
            b.permission(probe_at + Duration::from_millis(1_999)),
            Permission::Refuse
        );
        assert_eq!(
            b.permission(probe_at + Duration::from_millis(2_000)),
            Permission::Probe
        );
    }

    /// Successes keep it closed; old failures leave the window.
    #[test]
    fn stays_closed_below_ratio_and_forgets_old_failures() {
        let b = breaker();
        let t = b.origin;
        for i in 0..100 {
            assert_eq!(b.record(t, i % 3 == 0, false), None);
        }
        for _ in 0..9 {
            b.record(t, true, false);
        }
        // Six seconds later those failures are outside the 5 s window.
        let later = t + Duration::from_secs(6);
        assert_eq!(b.record(later, true, false), None);
        assert_eq!(b.permission(later), Permission::Call);
    }
}
