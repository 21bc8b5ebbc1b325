//! What the engine tells the outside world while it runs: one [`IntervalView`] per interval
//! (normally a second), to an [`Observer`] the caller passes in. The `.hlog` writer and the
//! CLI's progress line are observers; the library itself never prints.

use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use crate::report::OutcomeCounts;
use crate::report::TimelinePoint;

/// Totals so far, for a progress line.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub elapsed: Duration,
    pub schedule_duration: Duration,
    /// The phase running now (None once the schedule is over).
    pub phase: Option<String>,
    /// This shard's target rate now (arrivals per second).
    pub target_rate: f64,
    pub started: u64,
    /// By outcome: ok, failed, rejected, unknown, dropped.
    pub counts: OutcomeCounts,
    pub in_flight: usize,
    /// This is the final interval of the run.
    pub last: bool,
}

/// One closed interval.
#[derive(Debug)]
pub struct IntervalView<'a> {
    pub index: u64,
    /// Wall-clock run start: the base time of an interval log.
    pub run_started_at: SystemTime,
    /// Interval start as an offset from the run start, and its length.
    pub start: Duration,
    pub length: Duration,
    /// The interval's histograms (nanoseconds) by `.hlog` tag; the untagged one is the
    /// latency of every arrival that finished in the interval.
    pub histograms: Vec<(Option<&'a str>, &'a Histogram<u64>)>,
    /// The interval's counts and latency percentiles.
    pub point: TimelinePoint,
    pub progress: Progress,
}

/// Receives every closed interval. Must be quick: it runs on the generator's thread.
pub trait Observer: Send {
    fn on_interval(&mut self, interval: &IntervalView<'_>);
}

/// No observer.
impl Observer for () {
    fn on_interval(&mut self, _interval: &IntervalView<'_>) {}
}

/// An optional observer.
impl<A: Observer> Observer for Option<A> {
    fn on_interval(&mut self, interval: &IntervalView<'_>) {
        if let Some(observer) = self {
            observer.on_interval(interval);
        }
    }
}

/// Several observers, in order.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn on_interval(&mut self, interval: &IntervalView<'_>) {
        self.0.on_interval(interval);
        self.1.on_interval(interval);
    }
}
