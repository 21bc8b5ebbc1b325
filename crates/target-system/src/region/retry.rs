//! The retry budget and the backoff schedule for provider calls.
//!
//! Budget (Finagle's `RetryBudget`, Linkerd's defaults): every first try deposits, every retry
//! withdraws; a retry is allowed while `retries < ratio * first_tries + min_per_sec * ttl`
//! over the last `ttl`. Counting is in 100 ms buckets and deliberately conservative: first
//! tries are counted only in buckets wholly inside the window, retries in every bucket that
//! touches it, so the bound also holds for the exact window ending at each retry.
//!
//! Backoff: full jitter (AWS): the n-th retry waits a uniform draw from
//! `[0, min(max, base * 2^(n-1))]`, and never less than the provider's Retry-After.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{PaymentConfig, RetryBudgetConfig};
use evidence::seed::Draws;

const BUCKET: Duration = Duration::from_millis(100);

/// A token-bucket retry budget shared by every payment of one region.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    reserve: f64,
    window_buckets: u64,
    origin: Instant,
    state: Mutex<VecDeque<Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    index: u64,
    first_tries: u64,
    retries: u64,
}

impl RetryBudget {
    pub fn new(config: &RetryBudgetConfig) -> Self {
        let ttl = Duration::from_secs(config.ttl_seconds);
        Self {
            ratio: config.ratio,
            reserve: config.min_per_sec * ttl.as_secs_f64(),
            window_buckets: (ttl.as_millis() / BUCKET.as_millis()) as u64,
            origin: Instant::now(),
            state: Mutex::new(VecDeque::new()),
        }
    }

    fn index(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.origin).as_millis() / BUCKET.as_millis()) as u64
    }

    fn with_bucket<R>(&self, now: Instant, f: impl FnOnce(&mut VecDeque<Bucket>, u64) -> R) -> R {
        let index = self.index(now);
        let mut buckets = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // Keep one bucket beyond the window: retries in it still count (conservative).
        while buckets
            .front()
            .is_some_and(|b| b.index + self.window_buckets < index)
        {
            buckets.pop_front();
        }
        if buckets.back().is_none_or(|b| b.index != index) {
            buckets.push_back(Bucket {
                index,
                first_tries: 0,
                retries: 0,
            });
        }
        f(&mut buckets, index)
    }

    /// A first try starts now.
    pub fn deposit(&self, now: Instant) {
        self.with_bucket(now, |buckets, _| {
            if let Some(b) = buckets.back_mut() {
                b.first_tries += 1;
            }
        });
    }

    /// Asks to start a retry now; true (and counted) if the budget allows it.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        let window = self.window_buckets;
        let (ratio, reserve) = (self.ratio, self.reserve);
        self.with_bucket(now, |buckets, index| {
            let (first_tries, retries) = totals(buckets, index, window);
            let allowed = (retries + 1) as f64 <= ratio * first_tries as f64 + reserve;
            if allowed && let Some(b) = buckets.back_mut() {
                b.retries += 1;
            }
            allowed
        })
    }

    /// Retries that could start now (for the metrics gauge).
    pub fn available(&self, now: Instant) -> f64 {
        let window = self.window_buckets;
        self.with_bucket(now, |buckets, index| {
            let (first_tries, retries) = totals(buckets, index, window);
            (self.ratio * first_tries as f64 + self.reserve - retries as f64).max(0.0)
        })
    }
}

/// (first tries in buckets wholly inside the window, retries in every bucket kept).
fn totals(buckets: &VecDeque<Bucket>, index: u64, window: u64) -> (u64, u64) {
    let mut first_tries = 0;
    let mut retries = 0;
    for b in buckets {
        retries += b.retries;
        if b.index + window > index {
            first_tries += b.first_tries;
        }
    }
    (first_tries, retries)
}

/// The wait before retry number `retry` (1 = the first retry): full jitter, at least the
/// provider's requested wait.
pub fn backoff(
    config: &PaymentConfig,
    retry: u32,
    draws: &Draws,
    retry_after: Option<Duration>,
) -> Duration {
    let exponent = retry.saturating_sub(1).min(20);
    let ceiling = config
        .backoff_base_ms
        .saturating_mul(1u64 << exponent)
        .min(config.backoff_max_ms);
    let jittered = Duration::from_millis(draws.up_to(ceiling));
    jittered.max(retry_after.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f64, min_per_sec: f64, ttl_seconds: u64) -> RetryBudget {
        RetryBudget::new(&RetryBudgetConfig {
            ratio,
            min_per_sec,
            ttl_seconds,
        })
    }

    /// With no first tries only the reserve (min_per_sec * ttl) is available; each first try
    /// adds `ratio` of a retry.
    #[test]
    fn reserve_then_ratio() {
        let b = budget(0.2, 1.0, 10);
        let t = b.origin + Duration::from_secs(1);
        let allowed = (0..100).filter(|_| b.try_withdraw(t)).count();
        assert_eq!(allowed, 10, "reserve = 1/s * 10 s");
        for _ in 0..50 {
            b.deposit(t);
        }
        // The current bucket lies inside the window: 0.2 * 50 = 10 more retries.
        let more = (0..100).filter(|_| b.try_withdraw(t)).count();
        assert_eq!(more, 10);
    }

    /// The budget refills as old retries leave the window.
    #[test]
    fn window_slides() {
        let b = budget(0.0, 1.0, 2);
        let t0 = b.origin;
        assert_eq!((0..10).filter(|_| b.try_withdraw(t0)).count(), 2);
        assert!(!b.try_withdraw(t0 + Duration::from_millis(1_500)));
        // Retries are kept one bucket longer than the window (conservative).
        assert!(!b.try_withdraw(t0 + Duration::from_millis(2_050)));
        assert!(b.try_withdraw(t0 + Duration::from_millis(2_250)));
    }

    /// In every window ending at a retry, retries <= ratio * first tries + reserve, whatever
    /// the mix of arrivals (a sweep over a long seeded sequence).
    #[test]
    fn bound_holds_in_every_window() {
        let (ratio, min, ttl) = (0.2, 2.0, 3);
        let b = budget(ratio, min, ttl);
        let draws = Draws::new(5);
        let mut events: Vec<(Duration, bool)> = Vec::new();
        let mut t = Duration::ZERO;
        for _ in 0..20_000 {
            t += Duration::from_micros(draws.up_to(2_000));
            let now = b.origin + t;
            if draws.chance(0.3) {
                b.deposit(now);
                events.push((t, false));
            } else if b.try_withdraw(now) {
                events.push((t, true));
            }
        }
        let window = Duration::from_secs(ttl);
        for (i, (end, is_retry)) in events.iter().enumerate() {
            if !is_retry {
                continue;
            }
            let inside = events[..=i].iter().filter(|(at, _)| *at + window > *end);
            let (mut first, mut retries) = (0.0, 0.0);
            for (_, r) in inside {
                if *r { retries += 1.0 } else { first += 1.0 }
            }
            assert!(
                retries <= ratio * first + min * ttl as f64 + 1e-9,
                "window ending {end:?}: {retries} > {ratio}*{first}+{}",
                min * ttl as f64
            );
        }
    }

    /// Backoff grows exponentially up to the cap, is jittered from the seed, and honours the
    /// provider's Retry-After.
    #[test]
    fn backoff_is_capped_jittered_and_honours_retry_after() {
        let config = PaymentConfig::default();
        let draws = Draws::new(3);
        for retry in 1..8 {
            let ceiling = (50u64 << (retry - 1)).min(1_000);
            let wait = backoff(&config, retry, &draws, None);
            assert!(wait <= Duration::from_millis(ceiling), "{retry}: {wait:?}");
        }
        let waits: Vec<_> = (0..20).map(|_| backoff(&config, 5, &draws, None)).collect();
        assert!(waits.iter().any(|w| *w != waits[0]), "jittered");
        let pushed = backoff(&config, 1, &draws, Some(Duration::from_millis(700)));
        assert!(pushed >= Duration::from_millis(700));
    }
}
