//! Prometheus metrics: one registry per component instance (so tests can run several
//! components in one process), names `rig_<component>_<thing>_<unit>[_total]`, base units,
//! bounded labels.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use prometheus::proto::MetricFamily;
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

/// Labels every registry made after [`set_common_labels`] carries (e.g. `run_id`).
static COMMON_LABELS: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// Sets the labels every series of this process carries, such as `run_id`: a process is
/// one run (or one long-lived service). Call it before starting any component; only the
/// first call counts, and it returns false if labels were already set.
pub fn set_common_labels(labels: &[(&str, &str)]) -> bool {
    COMMON_LABELS
        .set(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        )
        .is_ok()
}

/// The labels set by [`set_common_labels`] (none if never set).
pub fn common_labels() -> &'static [(String, String)] {
    COMMON_LABELS.get().map(Vec::as_slice).unwrap_or(&[])
}

/// A registry whose every series carries the given constant labels (e.g. `region`) and
/// the process's common labels.
pub fn registry(const_labels: &[(&str, &str)]) -> Registry {
    let labels: HashMap<String, String> = common_labels()
        .iter()
        .cloned()
        .chain(
            const_labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
        )
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
    render_all(&[registry])
}

/// Several registries as one exposition: families of the same name (e.g. region a's and
/// region b's, told apart by their constant labels) become one family, so every name has
/// one `# HELP` and one `# TYPE` line.
pub fn render_all(registries: &[&Registry]) -> (String, Vec<u8>) {
    let mut families: BTreeMap<String, MetricFamily> = BTreeMap::new();
    for registry in registries {
        for family in registry.gather() {
            match families.get_mut(family.name()) {
                Some(existing) => existing
                    .mut_metric()
                    .extend(family.get_metric().iter().cloned()),
                None => {
                    families.insert(family.name().to_string(), family);
                }
            }
        }
    }
    let families: Vec<MetricFamily> = families.into_values().collect();
    let encoder = TextEncoder::new();
    let mut buffer = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metric families.
    let _ = encoder.encode(&families, &mut buffer);
    (encoder.format_type().to_string(), buffer)
}

/// `/metrics` in Prometheus text format, from one registry.
pub fn metrics_reply(registry: &Registry) -> rig_http::Reply {
    let (_content_type, body) = render(registry);
    rig_http::reply::with_type(
        rig_http::StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        bytes::Bytes::from(body),
    )
}
