//! **bounded-pending-age**: no order spends longer than `repair.max_pending_age_seconds`
//! (plus one repair scan, the worker's granularity) in the pending states
//! (`payment_authorizing`, `payment_pending`, `needs_reconciliation`), and none is still
//! pending when the evidence ends (after the drain); an order left before payment
//! (`order_intent_saved`, `inventory_reserved`, states the reference system passes inside
//! one transaction) is stuck there and counts as open too. Also from the client history (a witness
//! the system cannot write): no customer keeps being told `pending` longer than the bound
//! after it was first told so, whatever the stores say.
//!
//! Clocks: the customers' waits are measured on the rig's clock (send and answer times of
//! one client); an order's time in pending from its owner region's transitions, within that
//! one region's clock. When a `clock` fault shifted that region's wall clock, two of its
//! times from either side of a shift do not compare, so its orders' durations are not judged
//! from its records (the customers' polls still judge them), and the summary says so. Times
//! from two regions' clocks are never subtracted.

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

/// How long `[from, to]` overlaps the partition windows: a gateway holds an intent while
/// the owner is unreachable, and the owner's pending clock starts when it gets it.
fn partitioned_us(ctx: &Context, from: i64, to: i64) -> i64 {
    ctx.faults
        .iter()
        .filter(|w| w.kind == "partition")
        .map(|w| {
            let end = w.end_us.unwrap_or(ctx.end_at_us);
            (end.min(to) - w.start_us.max(from)).max(0)
        })
        .sum()
}

/// A customer told `pending` again more than the bound after it was first told so (the
/// later request *sent* past the bound: a lower bound of what it waited; time the regions
/// were partitioned does not count, see [`partitioned_us`]), or still told `pending` when
/// the run asked again after the drain.
/// `longest_us` grows to the longest such wait seen.
fn told_pending_too_long(
    order: &OrderEvidence,
    ctx: &Context,
    bound_us: i64,
    longest_us: &mut i64,
) -> Option<String> {
    if let Some(r) = order
        .requests
        .iter()
        .find(|r| r.kind == "final_poll" && r.answer == "pending")
    {
        return Some(format!(
            "still pending when the run asked again after the drain, at {}",
            super::at(r.finished_at_us)
        ));
    }
    let mut first: Option<(i64, i64)> = None; // (arrival, first pending answer)
    for r in order.requests.iter().filter(|r| r.answer == "pending") {
        let since = match first {
            Some((arrival, since)) if arrival == r.arrival_id => since,
            _ => {
                first = Some((r.arrival_id, r.finished_at_us));
                r.finished_at_us
            }
        };
        let waited = r.sent_at_us - since;
        *longest_us = (*longest_us).max(waited);
        if waited > bound_us && waited - partitioned_us(ctx, since, r.sent_at_us) > bound_us {
            return Some(format!(
                "the customer was still told pending at {}, {:.1} s after it was first told so (bound {:.1} s)",
                super::at(r.finished_at_us),
                waited as f64 / 1e6,
                bound_us as f64 / 1e6
            ));
        }
    }
    None
}

#[derive(Debug)]
pub struct BoundedPendingAge {
    verdict: Verdict,
    longest_us: i64,
    still_pending: u64,
    too_long: u64,
    /// Pending, within the bound, when the run was interrupted: not known how they end.
    cut_short: u64,
    /// Customers told `pending` for longer than the bound.
    told_too_long: u64,
    /// Orders whose owner's clock was shifted: durations from its records not judged.
    unmeasured: u64,
    /// The longest a customer kept being told `pending` (rig clock).
    longest_told_us: i64,
    /// Customers who gave up and got no definite answer after the drain either (not asked
    /// again, or the poll timed out or failed): whether their orders still pend is unseen.
    unsettled: u64,
}

/// How many of `order`'s customers gave up (`unknown`, after sending) and got no definite
/// answer from the run's poll after the drain either: none was made, or it got something
/// other than a status (confirmed, failed, pending) or a `404` (no such order).
fn unsettled(order: &OrderEvidence) -> u64 {
    order
        .arrivals
        .iter()
        .filter(|a| a.outcome == "unknown" && a.sent_at_us.is_some())
        .filter(|a| {
            let last = order
                .requests
                .iter()
                .rfind(|r| r.arrival_id == a.arrival_id && r.kind == "final_poll");
            last.is_none_or(|r| {
                !matches!(r.answer.as_str(), "confirmed" | "failed" | "pending")
                    && r.http_status != Some(404)
            })
        })
        .count() as u64
}

impl Default for BoundedPendingAge {
    fn default() -> Self {
        Self {
            verdict: Verdict::new(NAME, STATEMENT),
            longest_us: 0,
            still_pending: 0,
            too_long: 0,
            cut_short: 0,
            told_too_long: 0,
            unmeasured: 0,
            longest_told_us: 0,
            unsettled: 0,
        }
    }
}

impl PerOrder for BoundedPendingAge {
    fn observe(&mut self, order: &OrderEvidence, ctx: &Context) {
        let bound_us = i64::try_from(ctx.params.max_pending_age_seconds)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000)
            .saturating_add(
                i64::try_from(ctx.params.repair_scan_interval_ms)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1_000),
            );
        if ctx.has_requests {
            self.unsettled += unsettled(order);
        }
        if let Some(narrative) =
            told_pending_too_long(order, ctx, bound_us, &mut self.longest_told_us)
        {
            self.told_too_long += 1;
            self.verdict
                .violate(ctx.max_dossiers, || ctx.dossier(order, narrative));
        }
        let Some(row) = order.owner_row() else {
            if !order.requests.is_empty() {
                self.verdict.checked += 1;
            }
            return;
        };
        self.verdict.checked += 1;
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
        // An order left before payment (`order_intent_saved`, `inventory_reserved`: the
        // reference system passes both inside one transaction, and no repair looks at them)
        // is stuck there: open since its last transition.
        let stuck = !matches!(row.status.as_str(), "order_confirmed" | "failed_safely");
        let entered = entered.or_else(|| {
            stuck
                .then(|| order.transitions.iter().filter(|t| t.store == row.store))
                .and_then(|mut ts| ts.next_back())
                .map(|t| t.at_us)
        });
        let region = store_region(row.store).unwrap_or("?");
        if ctx.clock_shifted(region).is_some() {
            // Its record times straddle clock shifts: only whether it ended is judged.
            self.unmeasured += 1;
            let problem = match entered {
                Some(_) if ctx.interrupted_at_us.is_some() => {
                    self.cut_short += 1;
                    None
                }
                Some(_) => {
                    self.still_pending += 1;
                    Some(format!(
                        "still {} in region {region} when the evidence ends (how long is not measured: the region's wall clock was shifted during the run)",
                        row.status
                    ))
                }
                None => None,
            };
            if let Some(narrative) = problem {
                self.verdict
                    .violate(ctx.max_dossiers, || ctx.dossier(order, narrative));
            }
            return;
        }
        let open = entered.map(|since| ctx.end_at_us - since);
        if let Some(age) = open {
            worst = worst.max(age);
        }
        self.longest_us = self.longest_us.max(worst);
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
                "still {} in region {region} when the evidence ends, {:.1} s after it {}",
                row.status,
                age as f64 / 1e6,
                if is_pending(&row.status) {
                    "became pending"
                } else {
                    "got there (before payment: nothing moves it on)"
                }
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
            |name| {
                matches!(
                    name,
                    "repair.max_pending_age_seconds" | "repair.scan_interval_ms"
                )
            },
            &mut self.verdict,
        );
        self.verdict.summary = format!(
            "longest pending {:.1} s in the stores, {:.1} s told to a customer (bound {} s + one {} ms scan, {}); {} still pending at the end, {} over the bound; {} customers told pending past the bound",
            self.longest_us as f64 / 1e6,
            self.longest_told_us as f64 / 1e6,
            ctx.params.max_pending_age_seconds,
            ctx.params.repair_scan_interval_ms,
            ctx.bounds_source(),
            self.still_pending,
            self.too_long,
            self.told_too_long
        );
        if self.unsettled > 0 && ctx.interrupted_at_us.is_none() {
            let unseen = format!(
                "{} customers who gave up got no definite answer after the drain either (not asked again, or the poll timed out or failed)",
                self.unsettled
            );
            self.verdict.summary.push_str(&format!("; {unseen}"));
            if !ctx.order_rows {
                // Black-box: the polls are the only account of those orders.
                self.verdict.unknown_unless_failed(format!(
                    "{unseen}, and the system's records cannot be read: whether those orders still pend is not known"
                ));
            }
        }
        if !ctx.has_requests {
            self.verdict.unknown_unless_failed(
                "no client history with each customer's polls: only the system's own transitions were measured, and they are claims".to_string(),
            );
        }
        if self.unmeasured > 0 {
            let shifted: Vec<String> = ["a", "b"]
                .iter()
                .filter_map(|region| ctx.clock_shifted(region))
                .collect();
            self.verdict.summary.push_str(&format!(
                "; {} ({} orders; their customers' polls, on the rig's clock, judge how long they waited)",
                shifted.join("; "),
                self.unmeasured
            ));
        }
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
