//! **single-final-outcome**: each order's transitions follow the state machine (replayed
//! from the first row), it reaches at most one terminal state and nothing follows it, its
//! row agrees with its last transition, and only its owner region writes it or decides it.
//! And, from the client history (a witness the system cannot write): the answers one
//! customer sees never move backward — a final answer is never followed by pending or by
//! the other final, and an order once seen never disappears (404).

use evidence::OrderState;
use evidence::order_state::transition;

use super::{Context, PerOrder};
use crate::model::{OrderEvidence, RequestRow, TransitionRow, store_region};
use crate::report::Verdict;

pub const NAME: &str = "single-final-outcome";
pub const STATEMENT: &str = "transitions follow the state machine; at most one terminal state; only the owner region writes and decides; a customer's answers never move backward";

#[derive(Debug)]
pub struct SingleFinalOutcome {
    verdict: Verdict,
    transitions: u64,
    /// Client answers looked at.
    answers: u64,
}

impl Default for SingleFinalOutcome {
    fn default() -> Self {
        Self {
            verdict: Verdict::new(NAME, STATEMENT),
            transitions: 0,
            answers: 0,
        }
    }
}

/// The first answer that moves a customer's order backward, judged causally: a request is
/// compared with the answers its customer had already received when it was sent (answers
/// to requests in flight together may cross, but only from pending to a final). Two
/// different finals are wrong whatever their timing: an order has one outcome.
fn answers_regress(requests: &[RequestRow]) -> Option<String> {
    let told = |r: &RequestRow| format!("{} at {}", r.answer, super::at(r.finished_at_us));
    let final_answer = |answer: &str| requests.iter().find(|r| r.answer == answer);
    if let (Some(confirmed), Some(failed)) = (final_answer("confirmed"), final_answer("failed")) {
        let (first, second) = if confirmed.finished_at_us <= failed.finished_at_us {
            (confirmed, failed)
        } else {
            (failed, confirmed)
        };
        return Some(format!(
            "the customer was told {} ({} request {}) and {} ({} request {}): an order has one outcome",
            told(first),
            first.kind,
            first.seq,
            told(second),
            second.kind,
            second.seq
        ));
    }
    let shows_order = |a: &str| matches!(a, "confirmed" | "failed" | "pending");
    for later in requests {
        for earlier in requests
            .iter()
            .filter(|e| e.arrival_id == later.arrival_id && e.finished_at_us <= later.sent_at_us)
        {
            let regress = match (earlier.answer.as_str(), later.answer.as_str()) {
                ("confirmed", "pending" | "failed") | ("failed", "pending" | "confirmed") => true,
                (e, _)
                    if shows_order(e) && matches!(later.kind.as_str(), "poll" | "final_poll") =>
                {
                    later.http_status == Some(404)
                }
                _ => false,
            };
            if regress {
                let now = if later.http_status == Some(404) {
                    format!("not found (404) at {}", super::at(later.finished_at_us))
                } else {
                    told(later)
                };
                return Some(format!(
                    "the customer was told {}, then {now} ({} request {})",
                    told(earlier),
                    later.kind,
                    later.seq
                ));
            }
        }
    }
    None
}

/// The first thing wrong with one store's transitions for an order, if any.
fn replay<'a>(
    rows: impl IntoIterator<Item = &'a TransitionRow>,
) -> Result<Option<OrderState>, String> {
    let mut current: Option<OrderState> = None;
    for (i, row) in rows.into_iter().enumerate() {
        let expected_seq = i as i64 + 1;
        if row.seq != expected_seq {
            return Err(format!(
                "transition seq {} where {expected_seq} was due (a transition is missing)",
                row.seq
            ));
        }
        let to = OrderState::parse(&row.to_state)
            .ok_or_else(|| format!("unknown state {:?}", row.to_state))?;
        let from = match &row.from_state {
            None => None,
            Some(name) => {
                Some(OrderState::parse(name).ok_or_else(|| format!("unknown state {name:?}"))?)
            }
        };
        if from != current {
            return Err(format!(
                "transition {} starts from {} but the order was {}",
                row.seq,
                from.map_or("nothing", OrderState::as_str),
                current.map_or("nothing", OrderState::as_str)
            ));
        }
        match from {
            None if to != OrderState::OrderIntentSaved => {
                return Err(format!(
                    "the first transition goes to {to}, not order_intent_saved"
                ));
            }
            None => {}
            Some(from) => {
                if from.is_terminal() {
                    return Err(format!(
                        "transition {} leaves the terminal state {from} for {to}",
                        row.seq
                    ));
                }
                transition(from, to)
                    .map_err(|e| format!("transition {} is illegal: {e}", row.seq))?;
            }
        }
        current = Some(to);
    }
    Ok(current)
}

impl PerOrder for SingleFinalOutcome {
    fn observe(&mut self, order: &OrderEvidence, ctx: &Context) {
        if order.orders.is_empty() && order.transitions.is_empty() && order.requests.is_empty() {
            return;
        }
        self.verdict.checked += 1;
        self.transitions += order.transitions.len() as u64;
        self.answers += order.requests.len() as u64;
        let mut problems = Vec::new();
        if let Some(problem) = answers_regress(&order.requests) {
            problems.push(problem);
        }
        let stores: Vec<_> = {
            let mut s: Vec<_> = order
                .orders
                .iter()
                .map(|o| o.store)
                .chain(order.transitions.iter().map(|t| t.store))
                .collect();
            s.sort_unstable();
            s.dedup();
            s
        };
        if order.orders.len() > 1 {
            problems.push(format!(
                "{} regions hold a row for this order",
                order.orders.len()
            ));
        }
        for store in stores {
            // This store's transitions, walked in place (no vector per order).
            let rows = || order.transitions.iter().filter(move |t| t.store == store);
            let count = rows().count();
            let row = order.orders.iter().find(|o| o.store == store);
            match (row, replay(rows())) {
                (_, Err(problem)) => problems.push(format!("{store}: {problem}")),
                (None, Ok(_)) => problems.push(format!("{store} has transitions but no order row")),
                (Some(row), Ok(last)) => {
                    if last.map(OrderState::as_str) != Some(row.status.as_str())
                        || row.version != count as i64
                    {
                        problems.push(format!(
                            "{store}: the order row says {} v{} but its transitions end at {} after {}",
                            row.status,
                            row.version,
                            last.map_or("nothing", OrderState::as_str),
                            count
                        ));
                    }
                    let owner = ctx.owner(order).unwrap_or(row.owner_region.as_str());
                    if row.owner_region != owner {
                        problems.push(format!(
                            "{store}'s order row names region {} its owner, but the order id belongs to region {owner}",
                            row.owner_region
                        ));
                    } else if store_region(store) != Some(owner) {
                        problems.push(format!(
                            "{store} wrote an order owned by region {owner} (only the owner may)"
                        ));
                    }
                }
            }
            for t in rows()
                .filter(|t| matches!(t.to_state.as_str(), "order_confirmed" | "failed_safely"))
            {
                let owner = ctx.owner(order).unwrap_or("?");
                if t.region != owner {
                    problems.push(format!(
                        "region {} decided {} at {} but the owner is region {owner}",
                        t.region,
                        t.to_state,
                        super::at(t.at_us)
                    ));
                }
            }
        }
        if let Some(first) = problems.first() {
            let narrative = if problems.len() > 1 {
                format!("{first} (and {} more)", problems.len() - 1)
            } else {
                first.clone()
            };
            self.verdict
                .violate(ctx.max_dossiers, || ctx.dossier(order, narrative));
        }
    }

    fn finish(mut self: Box<Self>, ctx: &Context) -> Verdict {
        let answers = if ctx.has_requests {
            format!("{} client answers in order", self.answers)
        } else {
            self.verdict.unknown_unless_failed(
                "no client history with each customer's answers: only the system's own rows were replayed, and they are claims".to_string(),
            );
            "client answer sequences not judged (no client history with order ids)".to_string()
        };
        self.verdict.summary = format!(
            "{} orders, {} transitions replayed; {answers}",
            self.verdict.checked, self.transitions
        );
        self.verdict
    }
}
