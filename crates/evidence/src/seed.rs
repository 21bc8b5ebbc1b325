//! The one seeded random number generator of the workspace (SplitMix64), and the stable
//! string hash every seeded stream and the order-owner function are derived with.
//!
//! Hand-written rather than taken from `rand` on purpose: a schedule, a chaos timeline and a
//! provider's fault rolls must be the same for a seed forever (reports are compared across
//! versions, shards on different machines must agree), and `rand` does not promise a stable
//! stream across releases. Every stream is derived from the run seed plus stable labels
//! (a consumer's name, a proxy name, a connection number), so adding a consumer never shifts
//! the stream another one sees. Toxiproxy's `-seed` flag, which seeds a generator nobody
//! uses, is the counter-example.

use std::sync::atomic::{AtomicU64, Ordering};

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// One SplitMix64 step applied to `x` (Steele, Lea, Flood 2014): a tiny, well-mixed
/// function. [`SeededRng`] and [`Draws`] both step through it.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable 64-bit label for a string (FNV-1a): the same on every machine and every build,
/// unlike `std`'s hasher, whose output may change between Rust releases.
pub fn label(text: &str) -> u64 {
    fnv1a64(text.as_bytes())
}

/// FNV-1a over bytes (see [`label`]).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// 53 random bits scaled into `[0, 1)`: every representable value equally likely.
fn unit_from(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Deterministic 64-bit generator owned by one consumer; equal seeds give equal streams.
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent generator for one named consumer of the run seed.
    pub fn for_stream(seed: u64, stream: &str) -> Self {
        let mut mixer = Self::new(seed ^ label(stream));
        Self::new(mixer.next_u64())
    }

    /// A generator whose stream depends on `seed` and every label, in order (e.g. a proxy's
    /// name, then a connection number, then a direction).
    pub fn derive(seed: u64, labels: &[u64]) -> Self {
        let mut rng = Self::new(seed);
        for label in labels {
            let mixed = rng.next_u64() ^ label.wrapping_mul(GOLDEN_GAMMA);
            rng = Self::new(mixed);
        }
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let out = splitmix64(self.state);
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        out
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        unit_from(self.next_u64())
    }

    /// Uniform in the open interval (0, 1): never exactly 0, so `ln` is always finite.
    pub fn next_open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// An exponentially distributed value with mean 1 (the gap of a unit-rate Poisson process).
    pub fn next_exp1(&mut self) -> f64 {
        -self.next_open01().ln()
    }

    /// Uniform in `[low, high]` (inclusive); `low` when the range is empty.
    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        if high <= low {
            return low;
        }
        let span = high.abs_diff(low).saturating_add(1);
        low.saturating_add_unsigned(self.next_u64() % span)
    }
}

/// A seeded stream of random draws that many tasks share without a lock.
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
        unit_from(splitmix64(self.seed.wrapping_add(n)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn take(mut rng: SeededRng) -> Vec<u64> {
        (0..8).map(|_| rng.next_u64()).collect()
    }

    /// The same seed replays the same stream; another seed, stream name or label gives another.
    #[test]
    fn seed_decides_the_stream() {
        assert_eq!(take(SeededRng::new(7)), take(SeededRng::new(7)));
        assert_ne!(take(SeededRng::new(7)), take(SeededRng::new(8)));
        assert_ne!(
            take(SeededRng::for_stream(7, "a")),
            take(SeededRng::for_stream(7, "b"))
        );
        let d = SeededRng::derive(7, &[label("a_to_b"), 1]).next_u64();
        let e = SeededRng::derive(7, &[label("a_to_b"), 2]).next_u64();
        assert_ne!(d, e);
    }

    /// The stream is pinned: a change here would change every recorded schedule and timeline.
    #[test]
    fn stream_is_stable_across_versions() {
        // SplitMix64's published first outputs for seed 0.
        assert_eq!(
            take(SeededRng::new(0))[..3],
            [
                0xE220_A839_7B1D_CDAF,
                0x6E78_9E6A_A1B9_65F4,
                0x06C4_5D18_8009_454F
            ]
        );
        assert_eq!(label("a_to_b"), fnv1a64(b"a_to_b"));
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    }

    /// `unit` stays in [0, 1) and `between` stays inside its inclusive bounds.
    #[test]
    fn ranges_hold() {
        let mut rng = SeededRng::new(1);
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            let x = rng.between(-3, 3);
            assert!((-3..=3).contains(&x));
        }
        assert_eq!(rng.between(5, 5), 5);
        assert_eq!(rng.between(5, 2), 5);
    }

    /// The exponential draws have mean 1 (within 1 % over 200k draws).
    #[test]
    fn exp1_has_unit_mean() {
        let mut rng = SeededRng::new(42);
        let n = 200_000;
        let mean = (0..n).map(|_| rng.next_exp1()).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
    }

    /// Shared draws: the seed decides them, and `chance` hits close to its probability.
    #[test]
    fn shared_draws_follow_the_seed() {
        let draws = |seed| {
            let d = Draws::new(seed);
            (0..32).map(|_| d.unit()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        let d = Draws::new(1);
        let hits = (0..100_000).filter(|_| d.chance(0.3)).count();
        assert!((29_000..31_000).contains(&hits), "hits = {hits}");
        assert!(!Draws::new(1).chance(0.0));
    }
}
