//! The result of a run as data: total histograms and counts, the per-second timeline, and
//! the self-check that says whether the generator itself was the bottleneck.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::duration::ms;
use crate::schedule::PhaseInfo;
use crate::{ArrivalProcess, Outcome, Shard};

/// A histogram for nanosecond values with 3 significant digits that grows as needed.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid precision")
}

/// Counts by outcome, indexed by [`Outcome::slot`].
pub type OutcomeCounts = [u64; 5];

/// Facts about the run itself (not its measurements).
#[derive(Debug, Clone, Serialize)]
pub struct RunMeta {
    /// Wall-clock time of the run start (the zero of every intended offset).
    #[serde(skip)]
    pub started_at: SystemTime,
    #[serde(skip)]
    pub schedule_duration: Duration,
    /// Run start to the end of the drain.
    #[serde(skip)]
    pub elapsed: Duration,
    /// Offset of the last arrival that actually started.
    #[serde(skip)]
    pub last_start: Duration,
    pub seed: u64,
    pub arrival: ArrivalProcess,
    pub shard: Shard,
    pub max_in_flight: usize,
    pub peak_in_flight: usize,
    /// The run was stopped before the schedule ended (e.g. Ctrl-C).
    pub stopped_early: bool,
    /// Offset at which it was stopped.
    #[serde(skip)]
    pub stopped_at: Option<Duration>,
    /// Arrivals still in flight when the drain timed out: counted `unknown`.
    pub aborted_at_drain: u64,
    /// The workload's own description.
    pub workload: serde_json::Value,
}

/// Latency histograms of one operation by outcome.
#[derive(Debug, Clone)]
pub struct OpReport {
    pub op: String,
    /// Latency (completion − intended) per outcome; for `dropped`, the lag when it was dropped.
    pub outcomes: BTreeMap<Outcome, Histogram<u64>>,
}

/// One phase's measurements (nanosecond histograms).
#[derive(Debug, Clone)]
pub struct PhaseReport {
    pub info: PhaseInfo,
    /// Arrivals of this shard in the phase (started + dropped).
    pub scheduled: u64,
    pub started: u64,
    /// Generator lag: actual start − intended time.
    pub lag: Histogram<u64>,
    /// Waiting for a free connection: actual send − start.
    pub wait: Histogram<u64>,
    /// Service time: completion − actual send (what a closed-loop tool reports).
    pub service: Histogram<u64>,
    pub ops: Vec<OpReport>,
}

impl PhaseReport {
    /// Counts by outcome over all operations.
    pub fn counts(&self) -> OutcomeCounts {
        let mut counts = [0; 5];
        for op in &self.ops {
            for (outcome, h) in &op.outcomes {
                counts[outcome.slot()] += h.len();
            }
        }
        counts
    }
}

/// One interval (normally one second) of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelinePoint {
    pub start_seconds: f64,
    pub length_seconds: f64,
    /// Arrivals started in the interval.
    pub started: u64,
    /// Arrivals finished in the interval, by outcome (dropped: dropped in the interval).
    pub ok: u64,
    pub failed: u64,
    pub rejected: u64,
    pub unknown: u64,
    pub dropped: u64,
    pub latency_p50_seconds: Option<f64>,
    pub latency_p99_seconds: Option<f64>,
    pub latency_max_seconds: Option<f64>,
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub run: RunMeta,
    pub phases: Vec<PhaseReport>,
    /// Latency of every started arrival, all outcomes.
    pub all: Histogram<u64>,
    pub status_codes: BTreeMap<u16, u64>,
    pub errors: BTreeMap<String, u64>,
    pub bytes: u64,
    pub timeline: Vec<TimelinePoint>,
}

/// Generator lag under this share of the latency p99 cannot be what made the latency: the
/// generator is blamed only at or above it.
pub const MATERIAL_LAG_SHARE: f64 = 0.1;

/// The generator's verdict on its own measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelfCheck {
    #[serde(rename = "lag_bound_seconds", serialize_with = "secs")]
    pub lag_bound: Duration,
    #[serde(rename = "lag_p99_seconds", serialize_with = "nanos_as_secs")]
    pub lag_p99_nanos: u64,
    /// Generator lag p99 exceeded the bound: the generator, not the target, was the bottleneck.
    pub generator_bottleneck: bool,
    /// Sentences for the reader, the bottleneck verdict first.
    pub notes: Vec<String>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn nanos_as_secs<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(*n as f64 / 1e9)
}

impl Report {
    /// Counts by outcome over the whole run.
    pub fn counts(&self) -> OutcomeCounts {
        self.phases.iter().fold([0; 5], |mut acc, p| {
            for (a, c) in acc.iter_mut().zip(p.counts()) {
                *a += c;
            }
            acc
        })
    }

    /// How many arrivals of `outcome` the run counted.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.counts()[outcome.slot()]
    }

    /// Arrivals of this shard (started + dropped).
    pub fn scheduled(&self) -> u64 {
        self.phases.iter().map(|p| p.scheduled).sum()
    }

    /// Arrivals that started.
    pub fn started(&self) -> u64 {
        self.phases.iter().map(|p| p.started).sum()
    }

    /// The window the sends took: the schedule length (or the time until the run was
    /// stopped), stretched if the last arrival started late.
    pub fn send_window(&self) -> Duration {
        let planned = self.run.stopped_at.unwrap_or(self.run.schedule_duration);
        planned
            .max(self.run.last_start)
            .max(Duration::from_nanos(1))
    }

    /// Arrivals started per second over [`Report::send_window`]: the rate actually offered.
    /// Drops and a generator that falls behind both pull it below the target.
    pub fn achieved_rate(&self) -> f64 {
        self.started() as f64 / self.send_window().as_secs_f64()
    }

    /// `ok` completions per second over the send window.
    pub fn goodput(&self) -> f64 {
        self.count(Outcome::Ok) as f64 / self.send_window().as_secs_f64()
    }

    /// A per-phase histogram merged over all phases.
    pub fn merged(&self, pick: impl Fn(&PhaseReport) -> &Histogram<u64>) -> Histogram<u64> {
        let mut out = new_histogram();
        for phase in &self.phases {
            let _ = out.add(pick(phase));
        }
        out
    }

    /// Latency (completion − intended) of every started arrival, whatever its outcome.
    fn started_latency(&self) -> Histogram<u64> {
        let mut out = new_histogram();
        for op in self.phases.iter().flat_map(|p| &p.ops) {
            for (outcome, h) in &op.outcomes {
                if *outcome != Outcome::Dropped {
                    let _ = out.add(h);
                }
            }
        }
        out
    }

    /// Judges the measurement: the generator was the bottleneck when its lag p99 exceeds
    /// `lag_bound` *and* is a material share ([`MATERIAL_LAG_SHARE`]) of the latency p99
    /// (latency counts from the intended time, so it includes the lag). Lag over the bound
    /// that is a small share of a latency the target caused (a partition's 30 s answers)
    /// is a busy machine's stalls, reported as such. Drops, connection waits and an aborted
    /// drain are noted too.
    pub fn self_check(&self, lag_bound: Duration) -> SelfCheck {
        let lag = self.merged(|p| &p.lag);
        let lag_p99 = if !lag.is_empty() {
            lag.value_at_quantile(0.99)
        } else {
            0
        };
        let latency = self.started_latency();
        let latency_p99 = if latency.is_empty() {
            0
        } else {
            latency.value_at_quantile(0.99)
        };
        let bound_ns = u64::try_from(lag_bound.as_nanos()).unwrap_or(u64::MAX);
        let share = if latency_p99 == 0 {
            1.0
        } else {
            lag_p99 as f64 / latency_p99 as f64
        };
        let over_bound = lag_p99 > bound_ns;
        let generator_bottleneck = over_bound && share >= MATERIAL_LAG_SHARE;
        let mut notes = Vec::new();
        if over_bound && !generator_bottleneck {
            notes.push(format!(
                "generator lag p99 {} > {}, but that is {:.1} % of the latency p99 {}: the \
                 target set the latency; the lag is the machine stalling (a busy core delays \
                 every lane at once), and those moments' latencies include it",
                ms(lag_p99),
                ms(bound_ns),
                share * 100.0,
                ms(latency_p99)
            ));
        } else if generator_bottleneck {
            notes.push(format!(
                "the generator, not the target, was the bottleneck: generator lag p99 {} > {} \
                 (arrivals left late, and the latencies include that delay); lower the rate, \
                 give the generator its own core, or split the load with --shard",
                ms(lag_p99),
                ms(bound_ns)
            ));
        } else if !lag.is_empty() {
            notes.push(format!(
                "generator lag p99 {} <= {}: arrivals left on time",
                ms(lag_p99),
                ms(bound_ns)
            ));
        }
        let dropped = self.count(Outcome::Dropped);
        if dropped > 0 {
            notes.push(format!(
                "{dropped} arrivals were dropped at the in-flight cap ({}): they are counted \
                 with their intended times, never sent late",
                self.run.max_in_flight
            ));
        }
        let wait = self.merged(|p| &p.wait);
        if !wait.is_empty() && wait.value_at_quantile(0.99) > bound_ns {
            notes.push(format!(
                "connection wait p99 {}: every keep-alive connection was busy for some arrivals \
                 (the wait counts in latency); more --connections keep the load open",
                ms(wait.value_at_quantile(0.99))
            ));
        }
        if self.run.aborted_at_drain > 0 {
            notes.push(format!(
                "{} arrivals were still in flight when the drain timed out: counted unknown",
                self.run.aborted_at_drain
            ));
        }
        if self.run.stopped_early {
            notes.push("the run was stopped before the schedule ended".to_string());
        }
        SelfCheck {
            lag_bound,
            lag_p99_nanos: lag_p99,
            generator_bottleneck,
            notes,
        }
    }
}
