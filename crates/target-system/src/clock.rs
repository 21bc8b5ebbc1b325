//! Identifiers for the records the system creates (charges, events). Timestamps and seeded
//! draws come from the evidence contract ([`evidence::time`], [`evidence::seed`]).

use std::sync::atomic::{AtomicU64, Ordering};

use evidence::time::now_us;

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

    /// Ids from one generator never repeat.
    #[test]
    fn ids_are_unique() {
        let ids = IdGen::new("x");
        let all: std::collections::HashSet<_> = (0..10_000).map(|_| ids.next()).collect();
        assert_eq!(all.len(), 10_000);
    }
}
