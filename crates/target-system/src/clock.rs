//! The system's clock and identifiers.
//!
//! A region writes its records' times (`*_at_us`) from [`now_us`]: the wall clock plus this
//! process's offset, which a `clock` fault sets (`rig serve --clock-offset-ms`, or
//! `POST /admin/clock` on a region served by a process of its own). Durations a region acts
//! on use the monotonic clock, which no offset touches. Seeded draws come from the evidence
//! contract ([`evidence::seed`]).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Milliseconds added to this process's wall clock.
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);
/// This process serves one region and nothing else, so its clock may be shifted.
static OWN_PROCESS: AtomicBool = AtomicBool::new(false);

/// This process's wall clock, in microseconds since the Unix epoch: the true time plus the
/// offset a clock fault set.
pub fn now_us() -> i64 {
    evidence::time::now_us().saturating_add(offset_ms().saturating_mul(1_000))
}

/// The offset in force, in milliseconds.
pub fn offset_ms() -> i64 {
    OFFSET_MS.load(Ordering::Relaxed)
}

/// Says that this process serves one region alone (`rig serve --role region`): only then
/// may its clock be shifted, since every component in a process reads the same clock.
pub fn own_process() {
    OWN_PROCESS.store(true, Ordering::Relaxed);
}

/// Shifts this process's wall clock by `offset_ms` (0: the true time). Refused in a process
/// that serves more than one region.
pub fn set_offset_ms(offset_ms: i64) -> Result<(), &'static str> {
    if !OWN_PROCESS.load(Ordering::Relaxed) {
        return Err(
            "this region shares its process with other components, which would all be shifted; a clock fault needs the region in a process of its own (rig serve --role region)",
        );
    }
    OFFSET_MS.store(offset_ms, Ordering::Relaxed);
    Ok(())
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

    /// Ids from one generator never repeat.
    #[test]
    fn ids_are_unique() {
        let ids = IdGen::new("x");
        let all: std::collections::HashSet<_> = (0..10_000).map(|_| ids.next()).collect();
        assert_eq!(all.len(), 10_000);
    }
}
