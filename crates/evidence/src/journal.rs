//! The chaos journal's record: one JSON line per step, append-only, written (and fsynced)
//! by the chaos layer, read by the verifier, the report and the Grafana annotations.
//!
//! Every record carries `elapsed_seconds` (monotonic, since load start: the clock the load
//! generator and the verifier use) and `wall_time` (UTC, for matching logs and dashboards).
//! Events: `planned` (the expanded timeline), `requested`, `applied`, `failed`, `aborted`,
//! `healed`. Calls list each API call made with its HTTP status where the client exposes it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Planned,
    Requested,
    Applied,
    Failed,
    Aborted,
    Healed,
}

/// One API call made for a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// `toxiproxy` or `provider:<name>`.
    pub target: String,
    /// What was asked, e.g. `add_toxic a_to_b timeout_upstream`.
    pub op: String,
    /// `toxiproxy_rust` or `http`.
    pub via: String,
    /// The HTTP status, when the client exposes it (toxiproxy_rust does not; its changes are
    /// confirmed by reading the state back instead).
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which step a record is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRef {
    /// Position in the expanded plan.
    pub step: usize,
    /// Index of the `[[chaos]]` entry.
    pub entry: usize,
    /// `start` or `stop`.
    pub action: String,
    /// `partition`, `provider` or `link`.
    pub kind: String,
    /// Planned offset from load start.
    pub at_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub event: Event,
    pub elapsed_seconds: f64,
    /// RFC 3339 UTC with milliseconds ([`crate::time::rfc3339_ms`]).
    pub wall_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<Call>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<serde_json::Value>,
}

impl Record {
    /// The record's wall time in microseconds since the epoch, if it parses.
    pub fn wall_time_us(&self) -> Option<i64> {
        crate::time::parse_rfc3339_us(&self.wall_time)
    }
}

/// Reads every record of a journal's text; the error names the line.
pub fn parse_journal(text: &str) -> Result<Vec<Record>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| serde_json::from_str(line).map_err(|err| format!("line {}: {err}", n + 1)))
        .collect()
}
