//! One file per invariant. Per-order invariants observe each order's merged evidence in
//! `order_id` order and keep O(1) state plus their dossiers; aggregate invariants
//! (no-oversell, admission-control) stream their own queries at the end.

pub mod admission_control;
pub mod bounded_pending_age;
pub mod client_agrees;
pub mod money_conservation;
pub mod no_duplicate_charge;
pub mod no_oversell;
pub mod outbox_effectively_once;
pub mod single_final_outcome;

use evidence::RunParams;
use serde_json::json;

use crate::model::{OrderEvidence, StoreTag};
use crate::report::{Dossier, FaultWindow, Verdict};

/// What every invariant may consult.
#[derive(Debug, Clone)]
pub struct Context {
    /// The bounds: what the run asked for, or (without its profile) what the system
    /// recorded.
    pub params: RunParams,
    /// What each region recorded it ran with: a claim, checked against `params` when the
    /// bounds come from the profile.
    pub claims: Vec<(StoreTag, Option<RunParams>)>,
    /// The bounds come from the run's profile (else from the system's own record).
    pub bounds_from_profile: bool,
    /// Wall-clock microseconds the run's evidence ends at (after the drain).
    pub end_at_us: i64,
    /// When the run was interrupted, if it was: what was still open then is unknown.
    pub interrupted_at_us: Option<i64>,
    pub max_dossiers: usize,
    /// Fault windows from the chaos journal, if one was given.
    pub faults: Vec<FaultWindow>,
    pub has_history: bool,
    /// Client-side bound on the p99 answer time of shed requests.
    pub shed_p99_ms: f64,
    /// Goodput in any phase offered at least the best phase's load must stay above this
    /// share of the best phase's goodput.
    pub goodput_fraction: f64,
}

impl Context {
    /// Counts a violation for every region whose recorded value of one of `fields`
    /// differs from what the run asked for: "the system ran with X; the run asked for Y".
    pub fn check_claims(&self, fields: &[&str], verdict: &mut Verdict) {
        if !self.bounds_from_profile {
            return;
        }
        let asked = self.params.fields();
        for (store, claim) in &self.claims {
            let Some(claim) = claim else { continue };
            for ((name, recorded), (_, wanted)) in claim.fields().iter().zip(&asked) {
                if fields.contains(name) && recorded != wanted {
                    verdict.violate(self.max_dossiers, || Dossier {
                        order_id: None,
                        narrative: format!(
                            "{store} ran with {name} = {recorded}; the run asked for {wanted}"
                        ),
                        rows: json!({"store": store, "parameter": name, "recorded": recorded, "asked": wanted}),
                        fault_windows: Vec::new(),
                    });
                }
            }
        }
    }

    /// Where the bounds come from, for summaries.
    pub fn bounds_source(&self) -> &'static str {
        if self.bounds_from_profile {
            "bounds from the run's profile"
        } else {
            "bounds from the system's own record (no profile given)"
        }
    }

    /// Fault windows overlapping `[from, to]`.
    pub fn windows(&self, span: Option<(i64, i64)>) -> Vec<FaultWindow> {
        let Some((from, to)) = span else {
            return Vec::new();
        };
        self.faults
            .iter()
            .filter(|w| w.start_us <= to && w.end_us.is_none_or(|end| end >= from))
            .cloned()
            .collect()
    }

    /// A dossier with the order's rows and the faults around it.
    pub fn dossier(&self, order: &OrderEvidence, narrative: String) -> Dossier {
        Dossier {
            order_id: Some(order.order_id.clone()),
            narrative,
            rows: json!({
                "orders": order.orders,
                "transitions": order.transitions,
                "charges": order.charges,
                "outbox": order.events,
                "effects": order.effects,
                "client": order.arrivals,
            }),
            fault_windows: self.windows(order.span_us()),
        }
    }
}

/// A per-order invariant.
pub trait PerOrder {
    fn observe(&mut self, order: &OrderEvidence, ctx: &Context);
    fn finish(self: Box<Self>, ctx: &Context) -> Verdict;
}

impl Context {
    /// Why open work is not judged: "the run was interrupted at <time>".
    pub fn interruption(&self) -> Option<String> {
        self.interrupted_at_us
            .map(|t| format!("the run was interrupted at {}", at(t)))
    }
}

/// Formats wall-clock microseconds for narratives.
pub fn at(us: i64) -> String {
    evidence::time::rfc3339(us)
}

/// Cents as dollars for narratives.
pub fn money(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}${}.{:02}", abs / 100, abs % 100)
}
