//! What the history writer counts as rows go by: outcomes per customer, and per-request
//! histograms (service time, send → whole answer) by operation (`checkout`,
//! `status_poll`) and answer. Counted off the generator's thread, with or without a sink.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{Record, RequestRow};
use crate::checkout::answer::ClientOutcome;
use crate::new_histogram;
use crate::summary::Percentiles;

/// The history as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HistoryStats {
    /// Where it went (`None`: no sink, rows only counted).
    pub location: Option<String>,
    /// Arrival rows produced (one per arrival of this shard) and request rows.
    pub arrivals: u64,
    pub requests: u64,
    /// Rows committed to the sink.
    pub arrivals_written: u64,
    pub requests_written: u64,
    /// Arrival records not written (with their requests): the sink failed, or the writer
    /// fell so far behind that the side buffer overflowed.
    pub lost: u64,
    /// The first write error, if any.
    pub error: Option<String>,
    /// Arrivals by client-seen outcome.
    pub outcomes: BTreeMap<&'static str, u64>,
}

impl HistoryStats {
    pub(super) fn new(location: Option<String>) -> Self {
        Self {
            location,
            ..Self::default()
        }
    }

    pub(super) fn count(&mut self, record: &Record) {
        self.arrivals += 1;
        self.requests += record.requests.len() as u64;
        *self
            .outcomes
            .entry(record.arrival.outcome.as_str())
            .or_default() += 1;
    }

    /// Arrivals whose client-seen outcome was `outcome`.
    pub fn outcome(&self, outcome: ClientOutcome) -> u64 {
        self.outcomes.get(outcome.as_str()).copied().unwrap_or(0)
    }

    /// True when every row reached the sink (or there is none).
    pub fn is_complete(&self) -> bool {
        self.lost == 0 && self.error.is_none()
    }
}

/// Per-operation request statistics.
#[derive(Debug, Clone, Default)]
pub struct RequestStats {
    /// `checkout` / `status_poll` → kind counts and service time by answer (ns).
    ops: BTreeMap<&'static str, OpStats>,
}

#[derive(Debug, Clone, Default)]
struct OpStats {
    kinds: BTreeMap<&'static str, u64>,
    answers: BTreeMap<&'static str, Histogram<u64>>,
}

/// One operation's requests, for the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpSummary {
    pub requests: u64,
    /// Requests by kind (`checkout`, `retry`, `double_click`, `poll`).
    pub kinds: BTreeMap<&'static str, u64>,
    /// Service time (send → whole answer, or the decision that none came) by answer.
    pub service_seconds: BTreeMap<&'static str, Percentiles>,
}

impl RequestStats {
    pub(super) fn record(&mut self, requests: &[RequestRow]) {
        for request in requests {
            let op = self.ops.entry(request.kind.op()).or_default();
            *op.kinds.entry(request.kind.as_str()).or_default() += 1;
            let nanos = request
                .finished_at
                .saturating_duration_since(request.sent_at)
                .as_nanos();
            let h = op
                .answers
                .entry(request.answer.as_str())
                .or_insert_with(new_histogram);
            let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
            if h.record(nanos).is_err() {
                h.saturating_record(nanos);
            }
        }
    }

    /// Requests of `op` (`checkout` or `status_poll`) answered `answer`.
    pub fn count(&self, op: &str, answer: &str) -> u64 {
        self.ops
            .get(op)
            .and_then(|o| o.answers.get(answer))
            .map_or(0, Histogram::len)
    }

    /// Requests of `kind` (`checkout`, `retry`, `double_click`, `poll`).
    pub fn kind(&self, kind: &str) -> u64 {
        self.ops.values().filter_map(|o| o.kinds.get(kind)).sum()
    }

    /// The summary form: per operation, counts by kind and percentiles by answer.
    pub fn summaries(&self) -> BTreeMap<&'static str, OpSummary> {
        self.ops
            .iter()
            .map(|(op, stats)| {
                (
                    *op,
                    OpSummary {
                        requests: stats.answers.values().map(Histogram::len).sum(),
                        kinds: stats.kinds.clone(),
                        service_seconds: stats
                            .answers
                            .iter()
                            .map(|(answer, h)| (*answer, Percentiles::of(h)))
                            .collect(),
                    },
                )
            })
            .collect()
    }
}
