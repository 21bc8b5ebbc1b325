//! `--shard i/N`: a deterministic 1/N slice of a schedule, so N generators (on N machines or
//! N Kubernetes Indexed Jobs) together send exactly the unsharded schedule.

use serde::Serialize;

use crate::LoadgenError;

/// Slice `index` of `count` (0-based, like a Kubernetes job completion index).
///
/// Arrival k belongs to shard `k % count`: round-robin keeps every shard's arrivals spread
/// over the whole run at 1/N of the rate, and the union of all shards is the full schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole schedule (shard 0 of 1).
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// A checked shard.
    pub fn new(index: u32, count: u32) -> Result<Self, LoadgenError> {
        Self::parse(&format!("{index}/{count}"))
    }

    /// Parses `i/N` with `0 <= i < N`.
    pub fn parse(text: &str) -> Result<Self, LoadgenError> {
        let fix = "write i/N with 0 <= i < N, e.g. --shard 0/2 and --shard 1/2 for two shards";
        let bad = |problem: &str| LoadgenError::invalid("--shard", text, problem, fix);
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| bad("not of the form i/N"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| bad("i is not a whole number"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| bad("N is not a whole number"))?;
        if count == 0 {
            return Err(bad("N must be at least 1"));
        }
        if index >= count {
            return Err(bad("the shard index is 0-based and must be below N"));
        }
        Ok(Self { index, count })
    }

    /// Whether arrival `index` of the whole schedule is this shard's.
    pub fn contains(&self, arrival_index: u64) -> bool {
        arrival_index % u64::from(self.count) == u64::from(self.index)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;

    /// Valid slices parse; out-of-range, zero and malformed ones name --shard and the fix.
    #[test]
    fn parses_and_refuses() {
        assert_eq!(Shard::parse("1/3").unwrap(), Shard { index: 1, count: 3 });
        for bad in ["3/3", "1/0", "a/2", "2", "-1/2"] {
            let err = Shard::parse(bad).unwrap_err().to_string();
            assert!(err.contains("--shard") && err.contains("fix"), "{err}");
        }
    }
}
