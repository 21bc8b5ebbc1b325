//! **client-agrees**: what each customer was told matches the durable records. Told
//! confirmed ⇒ durably confirmed with the amount charged; told failed ⇒ nothing charged and
//! durably failed_safely; told rejected (every request shed) or dropped ⇒ no order, no charge.
//! Customers who got no definite answer (`unknown`, Jepsen's `:info`) may see any outcome,
//! unless the run's poll after the drain told them one: then that answer is what they were
//! told.

use super::{Context, PerOrder, at, money};
use crate::model::OrderEvidence;
use crate::report::Verdict;

pub const NAME: &str = "client-agrees";
pub const STATEMENT: &str = "client saw confirmed => durably confirmed and charged; failed => no net charge; rejected => no order side effects";

#[derive(Debug)]
pub struct ClientAgrees {
    verdict: Verdict,
    by_outcome: [u64; 5],
    /// Customers who gave up and learned the outcome from the run's poll after the drain.
    settled_by_final_poll: u64,
}

impl Default for ClientAgrees {
    fn default() -> Self {
        Self {
            verdict: Verdict::new(NAME, STATEMENT),
            by_outcome: [0; 5],
            settled_by_final_poll: 0,
        }
    }
}

const OUTCOMES: [&str; 5] = ["confirmed", "failed", "rejected", "unknown", "dropped"];

impl PerOrder for ClientAgrees {
    fn observe(&mut self, order: &OrderEvidence, ctx: &Context) {
        for arrival in &order.arrivals {
            self.verdict.checked += 1;
            // What the customer was told in the end: a customer that gave up is told by
            // the run's poll after the drain.
            let (outcome, told) = order.told(arrival);
            if arrival.outcome != outcome {
                self.settled_by_final_poll += 1;
            }
            if let Some(i) = OUTCOMES.iter().position(|o| outcome == *o) {
                self.by_outcome[i] += 1;
            }
            let durable = order.owner_row().map_or("no order", |o| o.status.as_str());
            let net = order.net_cents();
            if !ctx.order_rows {
                // Black-box: the customer's word against the provider's ledger alone.
                let problem = match outcome {
                    "confirmed" => match ctx.cart_amount(order) {
                        Some(amount) if net != amount => Some(format!(
                            "client told confirmed at {}; net charged {} for a cart of {}",
                            at(told),
                            money(net),
                            money(amount)
                        )),
                        None if net <= 0 => Some(format!(
                            "client told confirmed at {}; nothing is charged",
                            at(told)
                        )),
                        _ => None,
                    },
                    "failed" | "rejected" | "dropped" if net != 0 => Some(format!(
                        "client told {} at {}; {} is charged",
                        outcome,
                        at(told),
                        money(net)
                    )),
                    _ => None,
                };
                if let Some(narrative) = problem {
                    self.verdict
                        .violate(ctx.max_dossiers, || ctx.dossier(order, narrative));
                }
                continue;
            }
            let problem = match outcome {
                "confirmed" => {
                    let amount = ctx.profile_price(order).unwrap_or_else(|| {
                        order.owner_row().map_or(0, |o| i128::from(o.amount_cents))
                    });
                    if durable != "order_confirmed" {
                        Some(format!(
                            "client told confirmed at {}; durable says {durable}",
                            at(told)
                        ))
                    } else if net != amount {
                        Some(format!(
                            "client told confirmed at {}; net charged {} of {}",
                            at(told),
                            money(net),
                            money(amount)
                        ))
                    } else {
                        None
                    }
                }
                "failed" => {
                    if net != 0 {
                        Some(format!(
                            "client told failed at {}; {} is charged",
                            at(told),
                            money(net)
                        ))
                    } else if durable != "failed_safely" {
                        Some(format!(
                            "client told failed at {}; durable says {durable}",
                            at(told)
                        ))
                    } else {
                        None
                    }
                }
                "rejected" | "dropped" => {
                    if !order.orders.is_empty() || !order.charges.is_empty() {
                        Some(format!(
                            "client was {} at {} yet there is {durable} and {} charged",
                            if outcome == "rejected" {
                                "rejected"
                            } else {
                                "never sent"
                            },
                            at(told),
                            money(net)
                        ))
                    } else {
                        None
                    }
                }
                _ => None,
            };
            if let Some(narrative) = problem {
                self.verdict
                    .violate(ctx.max_dossiers, || ctx.dossier(order, narrative));
            }
        }
    }

    fn finish(mut self: Box<Self>, ctx: &Context) -> Verdict {
        if !ctx.has_history {
            return Verdict::unknown(NAME, STATEMENT, "no client history given (--history)");
        }
        let counts = OUTCOMES
            .iter()
            .zip(self.by_outcome)
            .map(|(o, n)| format!("{o} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.verdict.summary = format!(
            "client-seen outcomes: {counts} ({} settled by the poll after the drain)",
            self.settled_by_final_poll
        );
        self.verdict
    }
}
