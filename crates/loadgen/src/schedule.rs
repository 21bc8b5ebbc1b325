//! A schedule is data: phases compile to a piecewise-linear rate curve, and arrivals are the
//! times where the cumulative rate Λ(t) crosses the next target: k for constant arrivals,
//! a sum of seeded exponential gaps for Poisson arrivals (the time-change construction of a
//! non-homogeneous Poisson process). Arrivals are produced lazily, so a day-long schedule
//! at 100k/s costs no memory; the same seed always gives the same arrivals.

use std::time::Duration;

use serde::Serialize;

use crate::phase::{ArrivalProcess, MAX_RATE, PhaseSpec, ScheduleSpec};
use crate::{LoadgenError, Shard};
use evidence::seed::SeededRng;

/// One arrival of the schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// Position in the whole (unsharded) schedule, from 0: stable across shards.
    pub index: u64,
    /// Index of the phase it belongs to.
    pub phase: usize,
    /// Intended send time, as an offset from the start of the run.
    pub intended: Duration,
}

/// A compiled phase, as reports describe it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseInfo {
    /// `<index>-<kind>`, e.g. `0-ramp`: unique, and usable as an `.hlog` tag part.
    pub name: String,
    pub kind: &'static str,
    /// Offset of the phase start from the run start.
    #[serde(rename = "start_seconds", serialize_with = "as_seconds")]
    pub start: Duration,
    #[serde(rename = "duration_seconds", serialize_with = "as_seconds")]
    pub duration: Duration,
    /// Rate at the start and end of the phase, and its highest rate (arrivals per second).
    pub rate_start: f64,
    pub rate_end: f64,
    pub rate_peak: f64,
    /// Λ(end) − Λ(start): the expected number of arrivals in the whole schedule.
    pub expected_arrivals: f64,
    /// The text form of the phase spec.
    pub spec: String,
}

fn as_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A stretch of linear rate `rate0 + slope * x` for `x` in `[0, len_s)`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    phase: usize,
    start_s: f64,
    len_s: f64,
    rate0: f64,
    slope: f64,
    /// Cumulative rate at the segment start and end.
    lambda0: f64,
    lambda1: f64,
}

/// A validated, compiled schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: ScheduleSpec,
    phases: Vec<PhaseInfo>,
    segments: Vec<Segment>,
    duration: Duration,
}

impl Schedule {
    /// Validates `spec` (every error names the phase field and the fix) and compiles it.
    pub fn compile(spec: &ScheduleSpec) -> Result<Self, LoadgenError> {
        if spec.phases.is_empty() {
            return Err(LoadgenError::invalid(
                "phases",
                "[]",
                "a schedule needs at least one phase",
                "give --rate and --duration, or --phases",
            ));
        }
        let mut phases = Vec::new();
        let mut segments = Vec::new();
        let mut start = Duration::ZERO;
        let mut lambda = 0.0;
        for (i, phase) in spec.phases.iter().enumerate() {
            validate(i, phase)?;
            let shape = shape(phase);
            let first = segments.len();
            let mut offset = start.as_secs_f64();
            for (len_s, rate0, rate1) in shape {
                let slope = (rate1 - rate0) / len_s;
                let area = (rate0 + rate1) / 2.0 * len_s;
                segments.push(Segment {
                    phase: i,
                    start_s: offset,
                    len_s,
                    rate0,
                    slope,
                    lambda0: lambda,
                    lambda1: lambda + area,
                });
                lambda += area;
                offset += len_s;
            }
            let own = &segments[first..];
            let rate_peak = own
                .iter()
                .map(|s| s.rate0.max(s.rate0 + s.slope * s.len_s))
                .fold(0.0, f64::max);
            let last = own[own.len() - 1];
            phases.push(PhaseInfo {
                name: format!("{i}-{}", phase.kind()),
                kind: phase.kind(),
                start,
                duration: phase.duration(),
                rate_start: own[0].rate0,
                rate_end: last.rate0 + last.slope * last.len_s,
                rate_peak,
                expected_arrivals: last.lambda1 - own[0].lambda0,
                spec: phase.to_text(),
            });
            start += phase.duration();
        }
        if start > crate::duration::MAX_DURATION {
            return Err(LoadgenError::invalid(
                "phases",
                crate::duration::format_duration(start),
                "the phases add up to more than the 7-day limit",
                "split the run into shorter runs",
            ));
        }
        Ok(Self {
            spec: spec.clone(),
            phases,
            segments,
            duration: start,
        })
    }

    /// The spec this schedule was compiled from.
    pub fn spec(&self) -> &ScheduleSpec {
        &self.spec
    }

    /// The compiled phases, in order.
    pub fn phases(&self) -> &[PhaseInfo] {
        &self.phases
    }

    /// Total length of all phases.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Expected number of arrivals of the whole schedule (Λ at the end).
    pub fn expected_arrivals(&self) -> f64 {
        self.segments.last().map_or(0.0, |s| s.lambda1)
    }

    /// The arrivals of `shard`, in intended-time order.
    pub fn arrivals(&self, shard: Shard) -> Arrivals<'_> {
        Arrivals {
            segments: &self.segments,
            process: self.spec.arrival,
            rng: SeededRng::for_stream(self.spec.seed, "schedule"),
            shard,
            next_index: 0,
            lambda: 0.0,
            segment: 0,
        }
    }

    /// The phase index and target rate at `offset` (None after the end).
    pub fn rate_at(&self, offset: Duration) -> Option<(usize, f64)> {
        let t = offset.as_secs_f64();
        self.segments
            .iter()
            .find(|s| t < s.start_s + s.len_s)
            .map(|s| (s.phase, s.rate0 + s.slope * (t - s.start_s).max(0.0)))
    }
}

/// The lazy arrival sequence of one shard of a schedule.
#[derive(Debug, Clone)]
pub struct Arrivals<'a> {
    segments: &'a [Segment],
    process: ArrivalProcess,
    rng: SeededRng,
    shard: Shard,
    next_index: u64,
    lambda: f64,
    segment: usize,
}

impl Iterator for Arrivals<'_> {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        loop {
            // Every shard draws the whole sequence and keeps its slice, so shards agree.
            let target = match self.process {
                ArrivalProcess::Constant => self.next_index as f64,
                ArrivalProcess::Poisson => {
                    self.lambda += self.rng.next_exp1();
                    self.lambda
                }
            };
            while self.segment < self.segments.len()
                && target >= self.segments[self.segment].lambda1
            {
                self.segment += 1;
            }
            let seg = self.segments.get(self.segment)?;
            let delta = target - seg.lambda0;
            // Solve rate0*x + slope*x^2/2 = delta; this form has no cancellation for slope ~ 0.
            let root = (seg.rate0 * seg.rate0 + 2.0 * seg.slope * delta)
                .max(0.0)
                .sqrt();
            let denominator = seg.rate0 + root;
            let x = if delta <= 0.0 || denominator <= 0.0 {
                0.0
            } else {
                (2.0 * delta / denominator).min(seg.len_s)
            };
            let index = self.next_index;
            self.next_index += 1;
            if self.shard.contains(index) {
                let seconds = seg.start_s + x;
                return Some(Arrival {
                    index,
                    phase: seg.phase,
                    intended: Duration::from_nanos((seconds * 1e9).round() as u64),
                });
            }
        }
    }
}

/// The phase as `(length_s, rate_at_start, rate_at_end)` linear pieces.
fn shape(phase: &PhaseSpec) -> Vec<(f64, f64, f64)> {
    let d = phase.duration().as_secs_f64();
    match *phase {
        PhaseSpec::Hold { rate, .. } => vec![(d, rate, rate)],
        PhaseSpec::Ramp { from, to, .. } => vec![(d, from, to)],
        PhaseSpec::Step {
            from, to, steps, ..
        } => (0..steps)
            .map(|i| {
                let rate = from + (to - from) * f64::from(i) / f64::from(steps - 1);
                (d / f64::from(steps), rate, rate)
            })
            .collect(),
        PhaseSpec::Spike {
            rate, peak, spike, ..
        } => {
            let w = spike.0.as_secs_f64();
            let before = (d - w) / 2.0;
            vec![
                (before, rate, rate),
                (w, peak, peak),
                (d - w - before, rate, rate),
            ]
        }
    }
}

fn validate(i: usize, phase: &PhaseSpec) -> Result<(), LoadgenError> {
    let field = |name: &str| format!("phases[{i}].{name}");
    let positive = |name: &str, rate: f64| {
        if rate.is_finite() && rate > 0.0 && rate <= MAX_RATE {
            Ok(())
        } else {
            Err(LoadgenError::invalid(
                field(name),
                rate,
                format!("a rate must be above 0 and at most {MAX_RATE} arrivals per second"),
                format!("set {name} to a positive number of arrivals per second, e.g. 100"),
            ))
        }
    };
    let non_negative = |name: &str, rate: f64| {
        if rate.is_finite() && (0.0..=MAX_RATE).contains(&rate) {
            Ok(())
        } else {
            Err(LoadgenError::invalid(
                field(name),
                rate,
                "a ramp end must be between 0 and the rate limit",
                format!("set {name} to 0 or a positive number of arrivals per second"),
            ))
        }
    };
    if phase.duration().is_zero() {
        return Err(LoadgenError::invalid(
            field("for"),
            "0s",
            "a phase must last longer than zero",
            "give a positive duration, e.g. for=30s",
        ));
    }
    match *phase {
        PhaseSpec::Hold { rate, .. } => positive("rate", rate),
        PhaseSpec::Ramp { from, to, .. } => {
            non_negative("from", from)?;
            non_negative("to", to)?;
            if from == 0.0 && to == 0.0 {
                return Err(LoadgenError::invalid(
                    field("to"),
                    to,
                    "a ramp from 0 to 0 sends nothing",
                    "set `to` above 0",
                ));
            }
            Ok(())
        }
        PhaseSpec::Step {
            from, to, steps, ..
        } => {
            positive("from", from)?;
            positive("to", to)?;
            if steps < 2 {
                return Err(LoadgenError::invalid(
                    field("steps"),
                    steps,
                    "a staircase needs at least 2 steps",
                    "set steps=2 or more, or use a `hold` phase",
                ));
            }
            Ok(())
        }
        PhaseSpec::Spike {
            rate,
            peak,
            spike,
            duration,
        } => {
            positive("rate", rate)?;
            positive("peak", peak)?;
            if spike.0 >= duration.0 {
                return Err(LoadgenError::invalid(
                    field("spike"),
                    crate::duration::format_duration(spike.0),
                    "the spike must be shorter than the phase",
                    "make `spike` shorter than `for`",
                ));
            }
            Ok(())
        }
    }
}
