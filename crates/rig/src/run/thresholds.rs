//! Thresholds on the load's own measurements, k6-style: `"checkout.p99" = "< 800ms"`,
//! `rejected_rate = "< 0.3"`, `"phase.1-hold.goodput" = "> 40"`.
//!
//! Metrics: `<op>.p50|p90|p99|p99_9|max` (latency from the intended start, every outcome but
//! dropped; ops: `checkout` — the whole customer journey); `confirmed_rate`, `failed_rate`,
//! `rejected_rate`, `unknown_rate`, `dropped_rate` (shares of scheduled arrivals);
//! `goodput` (confirmed per second) and `achieved_rate` (started per second). Prefix
//! `phase.<name>.` for one phase (names as the summary shows them, e.g. `0-ramp`).

use std::time::Duration;

use hdrhistogram::Histogram;
use loadgen::Report;
use loadgen::report::PhaseReport;
use loadgen::workload::Outcome;
use serde::Serialize;

/// `<`, `<=`, `>` or `>=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Comparison {
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
}

/// One threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    pub key: String,
    pub expression: String,
    #[serde(skip)]
    phase: Option<String>,
    #[serde(skip)]
    metric: String,
    #[serde(skip)]
    comparison: Comparison,
    /// Seconds for latencies; a plain number otherwise.
    #[serde(skip)]
    limit: f64,
}

/// A threshold judged.
#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    pub key: String,
    pub expression: String,
    /// The measured value (seconds for latencies), `None` when there was nothing to measure.
    pub value: Option<f64>,
    pub passed: bool,
    /// The value's unit as printed: `s` for latencies, `/s` for goodput and rates of
    /// arrivals, empty for shares.
    pub unit: &'static str,
}

impl Judged {
    /// The measured value with its unit, e.g. `9.118s`, `0.9166`, `41.2/s`.
    pub fn measured(&self) -> String {
        match self.value {
            None => "nothing".to_string(),
            Some(v) if self.unit == "s" => format!("{v:.3}s"),
            Some(v) => format!("{v:.4}{}", self.unit),
        }
    }
}

const RATES: [&str; 7] = [
    "confirmed_rate",
    "failed_rate",
    "rejected_rate",
    "unknown_rate",
    "dropped_rate",
    "goodput",
    "achieved_rate",
];
const PERCENTILES: [&str; 5] = ["p50", "p90", "p99", "p99_9", "max"];

impl Threshold {
    /// Parses `key = "OP VALUE"`; the error names the key and the fix.
    pub fn parse(key: &str, expression: &str) -> Result<Self, String> {
        let fix = "write e.g. \"checkout.p99\" = \"< 800ms\" or rejected_rate = \"< 0.3\"";
        let (phase, metric) = match key.strip_prefix("phase.") {
            Some(rest) => match rest.split_once('.') {
                Some((phase, metric)) => (Some(phase.to_string()), metric.to_string()),
                None => {
                    return Err(format!(
                        "thresholds.{key}: a phase threshold is phase.<name>.<metric>; {fix}"
                    ));
                }
            },
            None => (None, key.to_string()),
        };
        let is_latency = match metric.split_once('.') {
            Some((_, pct)) if PERCENTILES.contains(&pct) => true,
            _ if RATES.contains(&metric.as_str()) => false,
            _ => {
                return Err(format!(
                    "thresholds.{key}: unknown metric {metric:?}; use <op>.{} or one of {}",
                    PERCENTILES.join("|"),
                    RATES.join(", ")
                ));
            }
        };
        let text = expression.trim();
        let (comparison, rest) = if let Some(r) = text.strip_prefix("<=") {
            (Comparison::AtMost, r)
        } else if let Some(r) = text.strip_prefix(">=") {
            (Comparison::AtLeast, r)
        } else if let Some(r) = text.strip_prefix('<') {
            (Comparison::Below, r)
        } else if let Some(r) = text.strip_prefix('>') {
            (Comparison::Above, r)
        } else {
            return Err(format!(
                "thresholds.{key} = {expression:?}: start with <, <=, > or >=; {fix}"
            ));
        };
        let rest = rest.trim();
        let limit = if is_latency {
            loadgen::parse_duration(&format!("thresholds.{key}"), rest)
                .map_err(|e| format!("{e}; {fix}"))?
                .as_secs_f64()
        } else {
            rest.parse::<f64>().map_err(|_| {
                format!("thresholds.{key} = {expression:?}: {rest:?} is not a number; {fix}")
            })?
        };
        Ok(Self {
            key: key.to_string(),
            expression: expression.to_string(),
            phase,
            metric,
            comparison,
            limit,
        })
    }

    /// Judges the threshold against the load report.
    pub fn judge(&self, report: &Report) -> Judged {
        let phases: Vec<&PhaseReport> = match &self.phase {
            Some(name) => report
                .phases
                .iter()
                .filter(|p| &p.info.name == name)
                .collect(),
            None => report.phases.iter().collect(),
        };
        let value = if phases.is_empty() {
            None
        } else {
            self.measure(report, &phases)
        };
        let passed = value.is_some_and(|v| match self.comparison {
            Comparison::Below => v < self.limit,
            Comparison::AtMost => v <= self.limit,
            Comparison::Above => v > self.limit,
            Comparison::AtLeast => v >= self.limit,
        });
        let unit = if self.metric.contains('.') {
            "s"
        } else if matches!(self.metric.as_str(), "goodput" | "achieved_rate") {
            "/s"
        } else {
            ""
        };
        Judged {
            key: self.key.clone(),
            expression: self.expression.clone(),
            value,
            passed,
            unit,
        }
    }

    fn measure(&self, report: &Report, phases: &[&PhaseReport]) -> Option<f64> {
        if let Some((op, pct)) = self.metric.split_once('.') {
            let mut merged: Histogram<u64> = loadgen::new_histogram();
            for phase in phases {
                for o in phase.ops.iter().filter(|o| o.op == op) {
                    for (outcome, h) in &o.outcomes {
                        if *outcome != Outcome::Dropped {
                            let _ = merged.add(h);
                        }
                    }
                }
            }
            if merged.is_empty() {
                return None;
            }
            let q = match pct {
                "p50" => 0.5,
                "p90" => 0.9,
                "p99" => 0.99,
                "p99_9" => 0.999,
                _ => 1.0,
            };
            let ns = if q >= 1.0 {
                merged.max()
            } else {
                merged.value_at_quantile(q)
            };
            return Some(ns as f64 / 1e9);
        }
        let mut counts = [0u64; 5];
        let mut scheduled = 0u64;
        let mut started = 0u64;
        for phase in phases {
            scheduled += phase.scheduled;
            started += phase.started;
            for (c, n) in counts.iter_mut().zip(phase.counts()) {
                *c += n;
            }
        }
        let seconds = if self.phase.is_some() {
            phases
                .iter()
                .map(|p| p.info.duration)
                .sum::<Duration>()
                .as_secs_f64()
        } else {
            report.send_window().as_secs_f64()
        }
        .max(1e-9);
        let share = |n: u64| {
            if scheduled == 0 {
                None
            } else {
                Some(n as f64 / scheduled as f64)
            }
        };
        match self.metric.as_str() {
            "confirmed_rate" => share(counts[0]),
            "failed_rate" => share(counts[1]),
            "rejected_rate" => share(counts[2]),
            "unknown_rate" => share(counts[3]),
            "dropped_rate" => share(counts[4]),
            "goodput" => Some(counts[0] as f64 / seconds),
            _ => Some(started as f64 / seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expressions parse with their units; bad ones name the key and the fix.
    #[test]
    fn parses_and_refuses() {
        let t = Threshold::parse("checkout.p99", "< 800ms").unwrap();
        assert_eq!((t.comparison, t.limit), (Comparison::Below, 0.8));
        let t = Threshold::parse("phase.1-hold.rejected_rate", ">= 0.5").unwrap();
        assert_eq!(t.phase.as_deref(), Some("1-hold"));
        assert_eq!(t.comparison, Comparison::AtLeast);
        for (key, expr, needle) in [
            ("checkout.p77", "< 1s", "unknown metric"),
            ("goodput", "100", "start with"),
            ("goodput", "> lots", "not a number"),
            ("phase.x", "< 1", "phase.<name>.<metric>"),
        ] {
            let err = Threshold::parse(key, expr).unwrap_err();
            assert!(err.contains(needle) && err.contains(key), "{key}: {err}");
        }
    }
}
