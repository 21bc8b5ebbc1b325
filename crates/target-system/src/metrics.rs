//! Prometheus metrics: one registry per component instance (so tests can run several
//! components in one process), names `rig_<component>_<thing>_<unit>[_total]`, base units,
//! bounded labels.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Latency buckets from 0.5 ms to 30 s, roughly ×2 apart: fine enough at the low end for
/// loopback services, wide enough for timeouts.
pub const LATENCY_BUCKETS_SECONDS: [f64; 18] = [
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0,
    4.0, 8.0, 16.0, 30.0,
];

/// A registry whose every series carries the given constant labels (e.g. `region`).
pub fn registry(const_labels: &[(&str, &str)]) -> Registry {
    let labels = const_labels
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    Registry::new_custom(None, Some(labels)).expect("constant labels are valid")
}

pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

pub fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS_SECONDS.to_vec());
    let metric = HistogramVec::new(opts, labels).expect("valid histogram");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

pub fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid gauge");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

pub fn gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    let metric = Gauge::new(name, help).expect("valid gauge");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

/// The registry in Prometheus text exposition format.
pub fn render(registry: &Registry) -> (String, Vec<u8>) {
    let encoder = TextEncoder::new();
    let mut buffer = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metric families.
    let _ = encoder.encode(&registry.gather(), &mut buffer);
    (encoder.format_type().to_string(), buffer)
}
