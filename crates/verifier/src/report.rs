//! The verdict: one line per invariant (pass | fail | unknown), counts, and dossiers that
//! prove each failure. `verdict.json` follows `schema/verdict.schema.json`.

use serde::Serialize;

/// Three-valued, as Jepsen's checkers: unknown when the evidence to decide is missing. A
/// whole report is `partial` when the run it judges was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Unknown,
    Partial,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Unknown => "unknown",
            Self::Partial => "partial",
        }
    }
}

/// A fault window from the chaos journal that overlaps a dossier's order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultWindow {
    pub kind: String,
    pub name: Option<String>,
    /// The process a `crash`, `pause` or `clock` window acts on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub start_us: i64,
    pub end_us: Option<i64>,
}

/// The evidence for one counterexample.
#[derive(Debug, Clone, Serialize)]
pub struct Dossier {
    pub order_id: Option<String>,
    /// One line a stranger can check, e.g. "client told confirmed at 12.301 s; durable says
    /// failed_safely".
    pub narrative: String,
    /// The rows that prove it.
    pub rows: serde_json::Value,
    pub fault_windows: Vec<FaultWindow>,
    /// The order's records on one timeline (`rig explain`), when they could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<crate::explain::Explanation>,
}

/// One invariant's result.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub invariant: &'static str,
    pub statement: &'static str,
    pub status: Status,
    /// How many things were checked (orders, windows, skus...).
    pub checked: u64,
    pub violations: u64,
    /// Key figures in one line.
    pub summary: String,
    /// Why the status is unknown, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The evidence it judges from that the system under test cannot write.
    pub witnesses: Vec<&'static str>,
    /// The system's own records it cross-checks (a disagreement is a violation).
    pub claims: Vec<&'static str>,
    pub dossiers: Vec<Dossier>,
}

impl Verdict {
    pub fn new(invariant: &'static str, statement: &'static str) -> Self {
        Self {
            invariant,
            statement,
            status: Status::Pass,
            checked: 0,
            violations: 0,
            summary: String::new(),
            reason: None,
            witnesses: Vec::new(),
            claims: Vec::new(),
            dossiers: Vec::new(),
        }
    }

    pub fn unknown(
        invariant: &'static str,
        statement: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            status: Status::Unknown,
            reason: Some(reason.into()),
            ..Self::new(invariant, statement)
        }
    }

    /// Unknown, with `reason`, unless a violation was already found (a violation stands).
    pub fn unknown_unless_failed(&mut self, reason: String) {
        if self.status != Status::Fail {
            self.status = Status::Unknown;
            self.reason = Some(reason);
        }
    }

    /// Counts a violation and keeps its dossier if there is room.
    pub fn violate(&mut self, max_dossiers: usize, dossier: impl FnOnce() -> Dossier) {
        self.violations += 1;
        self.status = Status::Fail;
        if self.dossiers.len() < max_dossiers {
            self.dossiers.push(dossier());
        }
    }
}

/// Everything the verifier concluded.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: Status,
    pub orders_checked: u64,
    /// Where the evidence came from (passwords masked).
    pub sources: Vec<String>,
    /// Wall-clock microseconds the pending-age clock was stopped at.
    pub end_at_us: i64,
    /// Why the report is partial (the run was interrupted), when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial: Option<String>,
    pub verdicts: Vec<Verdict>,
}

impl Report {
    pub fn new(
        sources: Vec<String>,
        end_at_us: i64,
        orders_checked: u64,
        verdicts: Vec<Verdict>,
    ) -> Self {
        let status = if verdicts.iter().any(|v| v.status == Status::Fail) {
            Status::Fail
        } else if verdicts.iter().any(|v| v.status == Status::Unknown) {
            Status::Unknown
        } else {
            Status::Pass
        };
        Self {
            status,
            orders_checked,
            sources,
            end_at_us,
            partial: None,
            verdicts,
        }
    }

    /// The run this report judges was interrupted: the report as a whole is `partial`.
    pub fn mark_partial(&mut self, why: String) {
        self.status = Status::Partial;
        self.partial = Some(why);
    }

    pub fn failed(&self) -> Vec<&'static str> {
        self.verdicts
            .iter()
            .filter(|v| v.status == Status::Fail)
            .map(|v| v.invariant)
            .collect()
    }

    /// The verdict table, then the first dossier of each failure.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<26} {:<8} {:>10} {:>10}  {}\n",
            "invariant", "verdict", "checked", "violations", "summary"
        ));
        for v in &self.verdicts {
            let summary = match (&v.reason, v.status) {
                (Some(reason), Status::Unknown) => format!("unknown: {reason}"),
                _ => v.summary.clone(),
            };
            out.push_str(&format!(
                "{:<26} {:<8} {:>10} {:>10}  {}\n",
                v.invariant,
                v.status.as_str().to_uppercase(),
                v.checked,
                v.violations,
                summary
            ));
        }
        match &self.partial {
            Some(why) => out.push_str(&format!(
                "overall: PARTIAL: {why} ({} orders checked)\n",
                self.orders_checked
            )),
            None => out.push_str(&format!(
                "overall: {} ({} orders checked)\n",
                self.status.as_str().to_uppercase(),
                self.orders_checked
            )),
        }
        for v in self.verdicts.iter().filter(|v| v.status == Status::Fail) {
            for d in v.dossiers.iter().take(3) {
                out.push_str(&format!(
                    "  {} {}: {}\n",
                    v.invariant,
                    d.order_id.as_deref().unwrap_or("-"),
                    d.narrative
                ));
            }
        }
        out
    }
}
