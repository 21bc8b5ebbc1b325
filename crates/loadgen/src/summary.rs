//! The end-of-run summary: a JSON document (its schema is `schema/summary.schema.json`,
//! checked against real output by a test) and the text a person reads on stdout.
//! Times in JSON are seconds (f64), as the workspace's output conventions ask.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::duration::{format_duration, ms};
use crate::report::{Report, RunMeta, SelfCheck, TimelinePoint};
use crate::schedule::PhaseInfo;
use crate::{Outcome, Schedule};

/// Identifies the JSON format; bump on incompatible changes.
pub const SUMMARY_SCHEMA: &str = "rig-loadgen-summary/1";

/// Percentiles of a nanosecond histogram, in seconds (`null` when it is empty).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: Option<f64>,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p99_9: Option<f64>,
    pub p99_99: Option<f64>,
    pub max: Option<f64>,
}

impl Percentiles {
    /// Reads the percentiles of `h` (values in nanoseconds).
    pub fn of(h: &Histogram<u64>) -> Self {
        let empty = h.is_empty();
        let s = |v: u64| (!empty).then_some(v as f64 / 1e9);
        Self {
            count: h.len(),
            min: s(h.min()),
            mean: (!empty).then(|| h.mean() / 1e9),
            p50: s(h.value_at_quantile(0.5)),
            p90: s(h.value_at_quantile(0.9)),
            p99: s(h.value_at_quantile(0.99)),
            p99_9: s(h.value_at_quantile(0.999)),
            p99_99: s(h.value_at_quantile(0.9999)),
            max: s(h.max()),
        }
    }
}

/// The latency of every started arrival of a phase (all operations, all outcomes but dropped).
fn started_latency(phase: &crate::report::PhaseReport) -> Histogram<u64> {
    let mut all = crate::report::new_histogram();
    for op in &phase.ops {
        for (outcome, h) in &op.outcomes {
            if *outcome != Outcome::Dropped {
                let _ = all.add(h);
            }
        }
    }
    all
}

/// Counts by outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Counts {
    pub ok: u64,
    pub failed: u64,
    pub rejected: u64,
    pub unknown: u64,
    pub dropped: u64,
}

impl Counts {
    fn of(c: [u64; 5]) -> Self {
        Self {
            ok: c[0],
            failed: c[1],
            rejected: c[2],
            unknown: c[3],
            dropped: c[4],
        }
    }
}

/// Whole-run totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    /// This shard's arrivals (started + dropped).
    pub scheduled: u64,
    pub started: u64,
    #[serde(flatten)]
    pub counts: Counts,
    /// Arrivals started per second over the send window (the schedule, stretched if late).
    pub achieved_rate: f64,
    /// `ok` per second over the same window.
    pub goodput: f64,
    pub send_window_seconds: f64,
    pub elapsed_seconds: f64,
    pub bytes_received: u64,
}

/// One phase of the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseSummary {
    #[serde(flatten)]
    pub info: PhaseInfo,
    pub scheduled: u64,
    pub started: u64,
    pub counts: Counts,
    /// Arrivals started per second of the phase.
    pub achieved_rate: f64,
    /// Latency (completion − intended) of every started arrival of the phase.
    pub latency_all_seconds: Percentiles,
    /// Latency by operation and outcome; for `dropped`, the lag at the moment of the drop.
    pub latency_seconds: BTreeMap<String, BTreeMap<String, Percentiles>>,
    pub service_seconds: Percentiles,
    pub generator_lag_seconds: Percentiles,
    pub connection_wait_seconds: Percentiles,
}

/// The schedule as run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleSummary {
    pub duration_seconds: f64,
    pub expected_arrivals: f64,
}

/// The JSON summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub schema: &'static str,
    pub started_at_unix_seconds: f64,
    pub run: RunMeta,
    pub schedule: ScheduleSummary,
    pub totals: Totals,
    /// Latency of every started arrival (all outcomes but dropped), all phases.
    pub latency_seconds: Percentiles,
    pub service_seconds: Percentiles,
    pub generator_lag_seconds: Percentiles,
    pub connection_wait_seconds: Percentiles,
    pub phases: Vec<PhaseSummary>,
    pub status_codes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub self_check: SelfCheck,
    pub timeline: Vec<TimelinePoint>,
}

impl Summary {
    /// Summarises `report`; `lag_bound` is the self-check's generator-lag bound.
    pub fn new(report: &Report, schedule: &Schedule, lag_bound: Duration) -> Self {
        let window = report.send_window().as_secs_f64();
        let phases = report
            .phases
            .iter()
            .map(|p| PhaseSummary {
                info: p.info.clone(),
                scheduled: p.scheduled,
                started: p.started,
                counts: Counts::of(p.counts()),
                achieved_rate: p.started as f64 / p.info.duration.as_secs_f64(),
                latency_all_seconds: Percentiles::of(&started_latency(p)),
                latency_seconds: p
                    .ops
                    .iter()
                    .map(|op| {
                        let by_outcome = op
                            .outcomes
                            .iter()
                            .map(|(o, h)| (o.as_str().to_string(), Percentiles::of(h)))
                            .collect();
                        (op.op.clone(), by_outcome)
                    })
                    .collect(),
                service_seconds: Percentiles::of(&p.service),
                generator_lag_seconds: Percentiles::of(&p.lag),
                connection_wait_seconds: Percentiles::of(&p.wait),
            })
            .collect();
        Self {
            schema: SUMMARY_SCHEMA,
            started_at_unix_seconds: report
                .run
                .started_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
            run: report.run.clone(),
            schedule: ScheduleSummary {
                duration_seconds: schedule.duration().as_secs_f64(),
                expected_arrivals: schedule.expected_arrivals(),
            },
            totals: Totals {
                scheduled: report.scheduled(),
                started: report.started(),
                counts: Counts::of(report.counts()),
                achieved_rate: report.achieved_rate(),
                goodput: report.goodput(),
                send_window_seconds: window,
                elapsed_seconds: report.run.elapsed.as_secs_f64(),
                bytes_received: report.bytes,
            },
            latency_seconds: Percentiles::of(&report.all),
            service_seconds: Percentiles::of(&report.merged(|p| &p.service)),
            generator_lag_seconds: Percentiles::of(&report.merged(|p| &p.lag)),
            connection_wait_seconds: Percentiles::of(&report.merged(|p| &p.wait)),
            phases,
            status_codes: report
                .status_codes
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors: report.errors.clone(),
            self_check: report.self_check(lag_bound),
            timeline: report.timeline.clone(),
        }
    }

    /// The summary for a person (stdout).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let workload = &self.run.workload;
        let what = match (workload["method"].as_str(), workload["url"].as_str()) {
            (Some(m), Some(u)) => format!("{m} {u}"),
            _ => workload["kind"].as_str().unwrap_or("workload").to_string(),
        };
        let _ = writeln!(
            w,
            "rig load: {what}\n  {} phase(s) over {}, {} arrivals, seed {}, shard {}, max in flight {} (peak {})",
            self.phases.len(),
            format_duration(Duration::from_secs_f64(self.schedule.duration_seconds)),
            self.run.arrival.as_str(),
            self.run.seed,
            self.run.shard,
            self.run.max_in_flight,
            self.run.peak_in_flight,
        );
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "{:<10} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9}",
            "phase",
            "scheduled",
            "started",
            "ok",
            "failed",
            "rejected",
            "unknown",
            "dropped",
            "achieved/s",
            "p50",
            "p99",
            "p99.9",
            "max"
        );
        for p in &self.phases {
            let lat = Some(&p.latency_all_seconds);
            let row = |v: Option<f64>| v.map_or("-".to_string(), |s| ms((s * 1e9) as u64));
            let _ = writeln!(
                w,
                "{:<10} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>11.1} {:>9} {:>9} {:>9} {:>9}",
                p.info.name,
                p.scheduled,
                p.started,
                p.counts.ok,
                p.counts.failed,
                p.counts.rejected,
                p.counts.unknown,
                p.counts.dropped,
                p.achieved_rate,
                row(lat.and_then(|l| l.p50)),
                row(lat.and_then(|l| l.p99)),
                row(lat.and_then(|l| l.p99_9)),
                row(lat.and_then(|l| l.max)),
            );
        }
        let t = &self.totals;
        let _ = writeln!(
            w,
            "{:<10} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>11.1}",
            "total",
            t.scheduled,
            t.started,
            t.counts.ok,
            t.counts.failed,
            t.counts.rejected,
            t.counts.unknown,
            t.counts.dropped,
            t.achieved_rate
        );
        let _ = writeln!(
            w,
            "  (phase latency columns: the phase's most common outcome)"
        );
        let _ = writeln!(w);
        let line = |w: &mut String, label: &str, p: &Percentiles| {
            let f = |v: Option<f64>| v.map_or("-".to_string(), |s| ms((s * 1e9).round() as u64));
            let _ = writeln!(
                w,
                "{label:<44} p50 {:>9}  p90 {:>9}  p99 {:>9}  p99.9 {:>9}  p99.99 {:>9}  max {:>9}",
                f(p.p50),
                f(p.p90),
                f(p.p99),
                f(p.p99_9),
                f(p.p99_99),
                f(p.max)
            );
        };
        line(
            w,
            "latency (completion - intended, all)",
            &self.latency_seconds,
        );
        line(
            w,
            "service time (completion - actual send)",
            &self.service_seconds,
        );
        line(
            w,
            "generator lag (actual start - intended)",
            &self.generator_lag_seconds,
        );
        line(
            w,
            "connection wait (actual send - start)",
            &self.connection_wait_seconds,
        );
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "achieved {:.1}/s, goodput {:.1}/s over {:.3}s; elapsed {:.3}s; {} bytes received",
            t.achieved_rate, t.goodput, t.send_window_seconds, t.elapsed_seconds, t.bytes_received
        );
        if !self.status_codes.is_empty() {
            let codes: Vec<String> = self
                .status_codes
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(w, "status codes: {}", codes.join(", "));
        }
        if !self.errors.is_empty() {
            let errors: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(w, "errors: {}", errors.join(", "));
        }
        let verdict = if self.self_check.generator_bottleneck {
            "WARNING"
        } else {
            "ok"
        };
        for (i, note) in self.self_check.notes.iter().enumerate() {
            let label = if i == 0 { verdict } else { "note" };
            let _ = writeln!(w, "self-check {label}: {note}");
        }
        out
    }
}
