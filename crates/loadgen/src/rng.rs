//! A small seeded random number generator (SplitMix64).
//!
//! Hand-written rather than taken from `rand` on purpose: a schedule must be the same for a
//! seed forever (reports are compared across versions, shards on different machines must
//! agree), and `rand` does not promise a stable stream across releases.

/// Deterministic 64-bit generator; equal seeds give equal streams.
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent generator for one named consumer of the run seed (so adding a
    /// consumer does not shift the stream another one sees).
    pub fn for_stream(seed: u64, stream: &str) -> Self {
        // FNV-1a of the name, mixed into the seed.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in stream.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut mixer = Self::new(seed ^ hash);
        Self::new(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in the open interval (0, 1): never exactly 0, so `ln` is always finite.
    pub fn next_open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// An exponentially distributed value with mean 1 (the gap of a unit-rate Poisson process).
    pub fn next_exp1(&mut self) -> f64 {
        -self.next_open01().ln()
    }
}

#[cfg(test)]
mod tests {
    use super::SeededRng;

    /// Equal seeds give equal streams, different seeds and streams give different ones.
    #[test]
    fn seed_and_stream_matter() {
        let take = |mut rng: SeededRng| (0..4).map(|_| rng.next_u64()).collect::<Vec<_>>();
        assert_eq!(take(SeededRng::new(7)), take(SeededRng::new(7)));
        assert_ne!(take(SeededRng::new(7)), take(SeededRng::new(8)));
        assert_ne!(
            take(SeededRng::for_stream(7, "a")),
            take(SeededRng::for_stream(7, "b"))
        );
    }

    /// The exponential draws have mean 1 (within 1 % over 200k draws).
    #[test]
    fn exp1_has_unit_mean() {
        let mut rng = SeededRng::new(42);
        let n = 200_000;
        let mean = (0..n).map(|_| rng.next_exp1()).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
    }
}
