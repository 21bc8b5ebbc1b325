//! Live Prometheus metrics of a run, fed by the engine's per-interval view: an
//! [`Observer`], so the numbers are exactly those of the report and the `.hlog` (latency
//! from the intended send time, dropped arrivals counted). Names follow
//! `rig_loadgen_<thing>_<unit>[_total]`; every series carries the constant labels given
//! (e.g. `run_id`, `shard`).

use std::collections::HashMap;

use hdrhistogram::Histogram;
use prometheus::{
    Gauge, Histogram as PromHistogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry,
};

use crate::observer::{IntervalView, Observer};
use crate::report::OutcomeCounts;
use crate::workload::Outcome;

/// Latency buckets from 0.5 ms to 30 s, roughly ×2 apart, the same as the reference
/// system's, so client and server histograms line up on one dashboard.
pub const LATENCY_BUCKETS_SECONDS: [f64; 18] = [
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0,
    4.0, 8.0, 16.0, 30.0,
];

/// Outcomes in [`OutcomeCounts`] order.
const OUTCOMES: [Outcome; 5] = [
    Outcome::Ok,
    Outcome::Failed,
    Outcome::Rejected,
    Outcome::Unknown,
    Outcome::Dropped,
];

/// The load generator's metrics; register [`LoadMetrics::registry`] with an exporter and
/// pass the value to the engine as (part of) its observer.
#[derive(Debug, Clone)]
pub struct LoadMetrics {
    registry: Registry,
    target_rate: Gauge,
    started: IntCounter,
    arrivals: IntCounterVec,
    latency: HistogramVec,
    lag: PromHistogram,
    in_flight: IntGauge,
    seen: OutcomeCounts,
    seen_started: u64,
}

impl LoadMetrics {
    /// Metrics whose every series carries `const_labels`.
    pub fn new(const_labels: &[(&str, &str)]) -> Self {
        let labels: HashMap<String, String> = const_labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let registry = Registry::new_custom(None, Some(labels)).expect("constant labels are valid");
        let buckets = LATENCY_BUCKETS_SECONDS.to_vec();
        let target_rate = Gauge::new(
            "rig_loadgen_target_rate_per_second",
            "Offered load: the schedule's arrival rate now, for this shard.",
        )
        .expect("valid gauge");
        let started = IntCounter::new(
            "rig_loadgen_arrivals_started_total",
            "Arrivals sent (started) so far.",
        )
        .expect("valid counter");
        let arrivals = IntCounterVec::new(
            Opts::new(
                "rig_loadgen_arrivals_total",
                "Arrivals finished, by outcome: ok, failed, rejected, unknown (no answer), dropped (never sent: the in-flight bound was reached).",
            ),
            &["outcome"],
        )
        .expect("valid counter");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "rig_loadgen_latency_seconds",
                "Latency from the intended send time to the answer, by operation and outcome.",
            )
            .buckets(buckets.clone()),
            &["op", "outcome"],
        )
        .expect("valid histogram");
        let lag = PromHistogram::with_opts(
            HistogramOpts::new(
                "rig_loadgen_generator_lag_seconds",
                "How late the generator sent each arrival after its intended time.",
            )
            .buckets(buckets),
        )
        .expect("valid histogram");
        let in_flight = IntGauge::new(
            "rig_loadgen_in_flight",
            "Arrivals sent and not yet answered.",
        )
        .expect("valid gauge");
        for metric in [
            Box::new(target_rate.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(started.clone()),
            Box::new(arrivals.clone()),
            Box::new(latency.clone()),
            Box::new(lag.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry.register(metric).expect("metric registered once");
        }
        // Every outcome is exported from the start, so a rate of zero is a zero, not a gap.
        for outcome in OUTCOMES {
            arrivals.with_label_values(&[outcome.as_str()]);
        }
        Self {
            registry,
            target_rate,
            started,
            arrivals,
            latency,
            lag,
            in_flight,
            seen: [0; 5],
            seen_started: 0,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// Adds every value of an HdrHistogram (nanoseconds) to a Prometheus histogram (seconds).
fn observe_all(target: &PromHistogram, source: &Histogram<u64>) {
    for value in source.iter_recorded() {
        let seconds = value.value_iterated_to() as f64 / 1e9;
        for _ in 0..value.count_at_value() {
            target.observe(seconds);
        }
    }
}

impl Observer for LoadMetrics {
    fn on_interval(&mut self, interval: &IntervalView<'_>) {
        let progress = &interval.progress;
        self.target_rate.set(progress.target_rate);
        self.in_flight
            .set(i64::try_from(progress.in_flight).unwrap_or(i64::MAX));
        self.started
            .inc_by(progress.started.saturating_sub(self.seen_started));
        self.seen_started = progress.started.max(self.seen_started);
        for (slot, outcome) in OUTCOMES.iter().enumerate() {
            let now = progress.counts[slot];
            self.arrivals
                .with_label_values(&[outcome.as_str()])
                .inc_by(now.saturating_sub(self.seen[slot]));
            self.seen[slot] = now.max(self.seen[slot]);
        }
        for (tag, histogram) in &interval.histograms {
            let Some(tag) = tag else { continue };
            if histogram.is_empty() {
                continue;
            }
            // Tags: `latency/<phase>/<op>/<outcome>`, `lag/<phase>` (see the recorder).
            if let Some(rest) = tag.strip_prefix("latency/") {
                let mut parts = rest.rsplitn(3, '/');
                if let (Some(outcome), Some(op)) = (parts.next(), parts.next()) {
                    observe_all(&self.latency.with_label_values(&[op, outcome]), histogram);
                }
            } else if tag.starts_with("lag/") {
                observe_all(&self.lag, histogram);
            }
        }
    }
}
