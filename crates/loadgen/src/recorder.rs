//! Where every arrival lands: HdrHistograms per phase × operation × outcome, plus per phase
//! the generator lag, the connection wait and the service time. Values are nanoseconds.
//! Each series records into an interval histogram that is folded into the run total once
//! per interval, after the interval has been handed to the observers (`.hlog`, progress).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::report::{
    OpReport, OutcomeCounts, PhaseReport, Report, RunMeta, TimelinePoint, new_histogram,
};
use crate::schedule::PhaseInfo;
use crate::{Completion, Dispatch, Outcome};

/// One tagged series: the current interval and the run total.
#[derive(Debug)]
pub(crate) struct Series {
    pub tag: Option<String>,
    pub interval: Histogram<u64>,
    pub total: Histogram<u64>,
}

impl Series {
    fn new(tag: Option<String>) -> Self {
        Self {
            tag,
            interval: new_histogram(),
            total: new_histogram(),
        }
    }

    fn record(&mut self, nanos: u64) {
        // `record` grows the histogram; `saturating_record` would clamp to its current top.
        if self.interval.record(nanos).is_err() {
            self.interval.saturating_record(nanos);
        }
    }

    fn roll(&mut self) {
        // Both histograms auto-resize, so adding cannot run out of range.
        let _ = self.total.add(&self.interval);
        self.interval.reset();
    }
}

#[derive(Debug)]
pub(crate) struct OpRec {
    op: &'static str,
    /// Indexed by [`Outcome::slot`]; the dropped slot holds the lag at the moment of the drop.
    outcomes: [Option<Series>; 5],
}

#[derive(Debug)]
pub(crate) struct PhaseRec {
    info: PhaseInfo,
    lag: Series,
    wait: Series,
    service: Series,
    ops: Vec<OpRec>,
    scheduled: u64,
    started: u64,
}

impl PhaseRec {
    fn series(&mut self, op: &'static str, outcome: Outcome) -> &mut Series {
        let at = match self.ops.iter().position(|o| o.op == op) {
            Some(at) => at,
            None => {
                self.ops.push(OpRec {
                    op,
                    outcomes: Default::default(),
                });
                self.ops.len() - 1
            }
        };
        let phase = &self.info.name;
        let slot = &mut self.ops[at].outcomes[outcome.slot()];
        slot.get_or_insert_with(|| {
            let tag = match outcome {
                Outcome::Dropped => format!("dropped/{phase}/{op}"),
                other => format!("latency/{phase}/{op}/{}", other.as_str()),
            };
            Series::new(Some(tag))
        })
    }
}

/// All measurements of one run.
#[derive(Debug)]
pub(crate) struct Recorder {
    run_start: Instant,
    phases: Vec<PhaseRec>,
    /// Latency of every arrival that started (all outcomes but `dropped`): the untagged line.
    all: Series,
    counts: OutcomeCounts,
    interval_counts: OutcomeCounts,
    started: u64,
    interval_started: u64,
    status_codes: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    bytes: u64,
    last_start: Duration,
    peak_in_flight: usize,
    timeline: Vec<TimelinePoint>,
}

fn nanos(later: Instant, earlier: Instant) -> u64 {
    u64::try_from(later.saturating_duration_since(earlier).as_nanos()).unwrap_or(u64::MAX)
}

impl Recorder {
    pub(crate) fn new(run_start: Instant, phases: &[PhaseInfo]) -> Self {
        let phases = phases
            .iter()
            .map(|info| PhaseRec {
                lag: Series::new(Some(format!("lag/{}", info.name))),
                wait: Series::new(Some(format!("wait/{}", info.name))),
                service: Series::new(Some(format!("service/{}", info.name))),
                info: info.clone(),
                ops: Vec::new(),
                scheduled: 0,
                started: 0,
            })
            .collect();
        Self {
            run_start,
            phases,
            all: Series::new(None),
            counts: [0; 5],
            interval_counts: [0; 5],
            started: 0,
            interval_started: 0,
            status_codes: BTreeMap::new(),
            errors: BTreeMap::new(),
            bytes: 0,
            last_start: Duration::ZERO,
            peak_in_flight: 0,
            timeline: Vec::new(),
        }
    }

    /// An arrival started at `dispatch.started_at`; `in_flight` includes it.
    pub(crate) fn started(&mut self, dispatch: &Dispatch, in_flight: usize) {
        let phase = &mut self.phases[dispatch.arrival.phase];
        phase.scheduled += 1;
        phase.started += 1;
        phase
            .lag
            .record(nanos(dispatch.started_at, dispatch.intended_at));
        self.started += 1;
        self.interval_started += 1;
        self.last_start = self.last_start.max(
            dispatch
                .started_at
                .saturating_duration_since(self.run_start),
        );
        self.peak_in_flight = self.peak_in_flight.max(in_flight);
    }

    /// An arrival could not start at `now` (in-flight cap): counted with its intended time.
    pub(crate) fn dropped(&mut self, dispatch: &Dispatch, op: &'static str) {
        let phase = &mut self.phases[dispatch.arrival.phase];
        phase.scheduled += 1;
        phase
            .series(op, Outcome::Dropped)
            .record(nanos(dispatch.started_at, dispatch.intended_at));
        self.counts[Outcome::Dropped.slot()] += 1;
        self.interval_counts[Outcome::Dropped.slot()] += 1;
    }

    /// A started arrival finished.
    pub(crate) fn completed(&mut self, dispatch: &Dispatch, completion: &Completion) {
        // A workload may not report `dropped` for something the engine started.
        let outcome = match completion.outcome {
            Outcome::Dropped => Outcome::Unknown,
            other => other,
        };
        let latency = nanos(completion.finished_at, dispatch.intended_at);
        let phase = &mut self.phases[dispatch.arrival.phase];
        phase.series(completion.op, outcome).record(latency);
        phase
            .service
            .record(nanos(completion.finished_at, completion.sent_at));
        phase
            .wait
            .record(nanos(completion.sent_at, dispatch.started_at));
        self.all.record(latency);
        self.counts[outcome.slot()] += 1;
        self.interval_counts[outcome.slot()] += 1;
        if let Some(status) = completion.status {
            *self.status_codes.entry(status).or_default() += 1;
        }
        if let Some(error) = completion.error {
            *self.errors.entry(error).or_default() += 1;
        }
        self.bytes += completion.bytes;
    }

    /// Totals so far by outcome, and arrivals started so far.
    pub(crate) fn counts(&self) -> (OutcomeCounts, u64) {
        (self.counts, self.started)
    }

    /// The current interval's histograms with their tags (untagged first).
    pub(crate) fn interval_histograms(&self) -> Vec<(Option<&str>, &Histogram<u64>)> {
        let mut out = vec![(None, &self.all.interval)];
        for phase in &self.phases {
            for op in &phase.ops {
                for series in op.outcomes.iter().flatten() {
                    out.push((series.tag.as_deref(), &series.interval));
                }
            }
            for series in [&phase.lag, &phase.wait, &phase.service] {
                out.push((series.tag.as_deref(), &series.interval));
            }
        }
        out
    }

    /// The current interval as a timeline point.
    pub(crate) fn interval_point(&self, start: Duration, length: Duration) -> TimelinePoint {
        let h = &self.all.interval;
        let c = &self.interval_counts;
        TimelinePoint {
            start_seconds: start.as_secs_f64(),
            length_seconds: length.as_secs_f64(),
            started: self.interval_started,
            ok: c[0],
            failed: c[1],
            rejected: c[2],
            unknown: c[3],
            dropped: c[4],
            latency_p50_seconds: (!h.is_empty()).then(|| h.value_at_quantile(0.5) as f64 / 1e9),
            latency_p99_seconds: (!h.is_empty()).then(|| h.value_at_quantile(0.99) as f64 / 1e9),
            latency_max_seconds: (!h.is_empty()).then(|| h.max() as f64 / 1e9),
        }
    }

    /// Closes the current interval: keeps its timeline point and folds it into the totals.
    pub(crate) fn roll(&mut self, start: Duration, length: Duration) {
        let point = self.interval_point(start, length);
        self.timeline.push(point);
        self.all.roll();
        for phase in &mut self.phases {
            for op in &mut phase.ops {
                for series in op.outcomes.iter_mut().flatten() {
                    series.roll();
                }
            }
            phase.lag.roll();
            phase.wait.roll();
            phase.service.roll();
        }
        self.interval_counts = [0; 5];
        self.interval_started = 0;
    }

    /// The run's report; call after the last [`Recorder::roll`].
    pub(crate) fn finish(self, mut run: RunMeta) -> Report {
        run.last_start = self.last_start;
        run.peak_in_flight = self.peak_in_flight;
        let phases = self
            .phases
            .into_iter()
            .map(|p| PhaseReport {
                info: p.info,
                scheduled: p.scheduled,
                started: p.started,
                lag: p.lag.total,
                wait: p.wait.total,
                service: p.service.total,
                ops: p
                    .ops
                    .into_iter()
                    .map(|o| OpReport {
                        op: o.op.to_string(),
                        outcomes: Outcome::ALL
                            .into_iter()
                            .zip(o.outcomes)
                            .filter_map(|(outcome, s)| s.map(|s| (outcome, s.total)))
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        Report {
            run,
            phases,
            all: self.all.total,
            status_codes: self.status_codes,
            errors: self
                .errors
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            bytes: self.bytes,
            timeline: self.timeline,
        }
    }
}
