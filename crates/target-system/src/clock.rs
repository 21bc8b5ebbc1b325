//! Wall-clock timestamps for durable records, and the seeded randomness of the system.
//!
//! Durable rows carry wall-clock microseconds since the Unix epoch (`*_at_us`), so records
//! from different stores and processes join on one time axis. Durations inside a process use
//! `tokio::time::Instant`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// SplitMix64: a tiny, well-mixed step function (Steele, Lea, Flood 2014).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over bytes: stable across processes and versions (unlike `DefaultHasher`),
/// so an order's owner region never changes between runs.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

/// A seeded stream of random draws that many tasks can share without a lock.
///
/// Draw `n` is `splitmix64(seed + n)`: the same seed gives the same sequence of draws; the
/// order in which concurrent tasks take them is whatever the scheduler makes it.
#[derive(Debug)]
pub struct Draws {
    seed: u64,
    counter: AtomicU64,
}

impl Draws {
    pub fn new(seed: u64) -> Self {
        Self {
            seed: splitmix64(seed),
            counter: AtomicU64::new(0),
        }
    }

    /// A uniform draw in `[0, 1)`.
    pub fn unit(&self) -> f64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let bits = splitmix64(self.seed.wrapping_add(n)) >> 11;
        // 53 random bits scaled into [0, 1).
        bits as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p` (clamped to `[0, 1]`).
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.unit() < p.min(1.0)
    }

    /// A uniform integer in `[0, bound]`.
    pub fn up_to(&self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        let scaled = self.unit() * (bound as f64 + 1.0);
        (scaled as u64).min(bound)
    }
}

/// Unique, roughly time-ordered identifiers such as `ch_18c3f2a1b0c4d5e6_0001a`.
#[derive(Debug)]
pub struct IdGen {
    prefix: &'static str,
    counter: AtomicU64,
    started_us: i64,
}

impl IdGen {
    pub fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            counter: AtomicU64::new(0),
            started_us: now_us(),
        }
    }

    pub fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}_{:x}_{:05x}", self.prefix, self.started_us, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same seed gives the same draws; a different seed gives different draws.
    #[test]
    fn seed_decides_the_draws() {
        let take = |seed| {
            let draws = Draws::new(seed);
            (0..32).map(|_| draws.unit()).collect::<Vec<_>>()
        };
        assert_eq!(take(7), take(7));
        assert_ne!(take(7), take(8));
        assert!(take(7).iter().all(|u| (0.0..1.0).contains(u)));
    }

    /// `chance` hits close to its probability over many draws.
    #[test]
    fn chance_matches_probability() {
        let draws = Draws::new(1);
        let hits = (0..100_000).filter(|_| draws.chance(0.3)).count();
        assert!((29_000..31_000).contains(&hits), "hits = {hits}");
        assert!(!Draws::new(1).chance(0.0));
    }

    /// Ids from one generator never repeat.
    #[test]
    fn ids_are_unique() {
        let ids = IdGen::new("x");
        let all: std::collections::HashSet<_> = (0..10_000).map(|_| ids.next()).collect();
        assert_eq!(all.len(), 10_000);
    }
}
