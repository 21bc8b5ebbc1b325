//! **bounded-pending-age**: no order spends longer than `repair.max_pending_age_seconds`
//! (plus one repair scan, the worker's granularity) in the pending states
//! (`payment_authorizing`, `payment_pending`, `needs_reconciliation`), and none is still
//! pending when the evidence ends (after the drain).

use super::{Context, PerOrder};
use crate::model::{OrderEvidence, store_region};
use crate::report::Verdict;

pub const NAME: &str = "bounded-pending-age";
pub const STATEMENT: &str =
    "no order pending longer than max_pending_age; none non-terminal after the drain";

fn is_pending(state: &str) -> bool {
    matches!(
        state,
        "payment_authorizing" | "payment_pending" | "needs_reconciliation"
    )
}

#[derive(Debug)]
pub struct BoundedPendingAge {
    verdict: Verdict,
    longest_us: i64,
    still_pending: u64,
    too_long: u64,
    /// Pending, within the bound, when the run was interrupted: not known how they end.
    cut_short: u64,
}

impl Default for BoundedPendingAge {
    fn default() -> Self {
        Self {
            verdict: Verdict::new(NAME, STATEMENT),
            longest_us: 0,
            still_pending: 0,
            too_long: 0,
            cut_short: 0,
        }
    }
}

impl PerOrder for BoundedPendingAge {
    fn observe(&mut self, order: &OrderEvidence, ctx: &Context) {
        let Some(row) = order.owner_row() else {
            return;
        };
        self.verdict.checked += 1;
        let bound_us = i64::try_from(ctx.params.max_pending_age_seconds)
            .unwrap_or(i64::MAX / 2_000_000)
            * 1_000_000
            + i64::try_from(ctx.params.repair_scan_interval_ms).unwrap_or(0) * 1_000;
        let mut entered: Option<i64> = None;
        let mut worst: i64 = 0;
        for t in order.transitions.iter().filter(|t| t.store == row.store) {
            match (entered, is_pending(&t.to_state)) {
                (None, true) => entered = Some(t.at_us),
                (Some(since), false) => {
                    worst = worst.max(t.at_us - since);
                    entered = None;
                }
                _ => {}
            }
        }
        let open = entered.map(|since| ctx.end_at_us - since);
        if let Some(age) = open {
            worst = worst.max(age);
        }
        self.longest_us = self.longest_us.max(worst);
        let region = store_region(row.store).unwrap_or("?");
        let problem = if let Some(age) = open
            && ctx.interrupted_at_us.is_some()
            && age <= bound_us
        {
            // Pending when the run stopped, and not yet for too long: the interruption, not
            // the system, left it open.
            self.cut_short += 1;
            None
        } else if let Some(age) = open {
            self.still_pending += 1;
            Some(format!(
                "still {} in region {region} when the evidence ends, {:.1} s after it became pending",
                row.status,
                age as f64 / 1e6
            ))
        } else if worst > bound_us {
            self.too_long += 1;
            Some(format!(
                "pending for {:.1} s before reaching {} (bound {:.1} s)",
                worst as f64 / 1e6,
                row.status,
                bound_us as f64 / 1e6
            ))
        } else {
            None
        };
        if let Some(narrative) = problem {
            self.verdict
                .violate(ctx.max_dossiers, || ctx.dossier(order, narrative));
        }
    }

    fn finish(mut self: Box<Self>, ctx: &Context) -> Verdict {
        ctx.check_claims(
            &["repair.max_pending_age_seconds", "repair.scan_interval_ms"],
            &mut self.verdict,
        );
        self.verdict.summary = format!(
            "longest pending {:.1} s (bound {} s + one {} ms scan, {}); {} still pending at the end, {} over the bound",
            self.longest_us as f64 / 1e6,
            ctx.params.max_pending_age_seconds,
            ctx.params.repair_scan_interval_ms,
            ctx.bounds_source(),
            self.still_pending,
            self.too_long
        );
        if self.cut_short > 0
            && let Some(why) = ctx.interruption()
        {
            self.verdict.summary.push_str(&format!(
                "; {} pending when the run stopped",
                self.cut_short
            ));
            self.verdict.unknown_unless_failed(format!(
                "{why}: {} orders were still pending then, within the bound; how they end is not known",
                self.cut_short
            ));
        }
        self.verdict
    }
}
