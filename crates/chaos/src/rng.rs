//! A small seeded random number generator (SplitMix64) for every random choice in the chaos
//! layer: toxicity rolls, latency jitter, slice sizes and timeline jitter.
//!
//! Why not the global RNG: Toxiproxy's `-seed` flag seeds a generator nobody uses, so its
//! randomness cannot be replayed. Here every stream of random numbers is derived from the run
//! seed plus stable labels (proxy name, connection number, direction, toxic name), so the same
//! seed and the same order of connections give the same rolls.

/// SplitMix64: tiny, fast, and good enough for fault injection (not for cryptography).
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator whose stream depends on `seed` and every label, in order.
    pub fn derive(seed: u64, labels: &[u64]) -> Self {
        let mut rng = Self::new(seed);
        for label in labels {
            let mixed = rng.next_u64() ^ label.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            rng = Self::new(mixed);
        }
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        // 53 random bits make every representable value in [0, 1) equally likely.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
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

/// A stable 64-bit label for a string (FNV-1a): the same on every machine and every build,
/// unlike `std`'s hasher, whose output may change between Rust releases.
pub fn label(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same seed replays the same stream; another seed gives another stream.
    #[test]
    fn seed_decides_the_stream() {
        let a: Vec<u64> = (0..8)
            .scan(SeededRng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..8)
            .scan(SeededRng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..8)
            .scan(SeededRng::new(8), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let d = SeededRng::derive(7, &[label("a_to_b"), 1]).next_u64();
        let e = SeededRng::derive(7, &[label("a_to_b"), 2]).next_u64();
        assert_ne!(d, e);
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
}
