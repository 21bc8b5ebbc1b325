//! **money-conservation**: confirmed ⇒ net charged = the order's amount; failed_safely ⇒ net
//! 0; still pending ⇒ 0 or the amount; no money taken without an order. Sums are i128.
//!
//! The amount is the customer's cart at the profile's prices wherever both are known (the
//! witnesses); the amount in the order row is a claim, and one that differs from the cart's
//! price is a violation showing both (a pricing bug charges the wrong amount consistently,
//! so the ledger alone would agree with the row).
//!
//! Every operator decision (a transition with actor `operator`, from a manual repair) is
//! checked against the provider's ledger by itself: confirming needs an authorized charge of
//! the order's amount, failing needs nothing left charged. A contradicted decision is the
//! order's violation, naming the operator's transition.

use super::{Context, PerOrder, money};
use crate::model::OrderEvidence;
use crate::report::Verdict;

pub const NAME: &str = "money-conservation";
pub const STATEMENT: &str = "confirmed => net charged = amount; failed_safely => net 0; pending => 0 or amount; no charge without an order";

#[derive(Debug)]
pub struct MoneyConservation {
    verdict: Verdict,
    charged: i128,
    confirmed_amounts: i128,
    /// Operator decisions checked against the provider's ledger.
    operator_decisions: u64,
}

impl Default for MoneyConservation {
    fn default() -> Self {
        Self {
            verdict: Verdict::new(NAME, STATEMENT),
            charged: 0,
            confirmed_amounts: 0,
            operator_decisions: 0,
        }
    }
}

impl MoneyConservation {
    /// Black-box: what the customer was told, at the price of the cart it sent.
    fn judge_by_the_customer(&mut self, order: &OrderEvidence, net: i128, ctx: &Context) {
        self.verdict.checked += 1;
        // What each customer was told in the end, the poll after the drain included.
        let told = |outcome: &str| order.arrivals.iter().any(|a| order.told(a).0 == outcome);
        let amount = ctx.cart_amount(order);
        let problem = if told("confirmed") {
            self.confirmed_amounts += amount.unwrap_or(net);
            match amount {
                Some(amount) if net != amount => Some(format!(
                    "customer told confirmed for a cart of {} but net charged is {}",
                    money(amount),
                    money(net)
                )),
                None if net <= 0 => {
                    Some("customer told confirmed but nothing is charged".to_string())
                }
                _ => None,
            }
        } else if told("failed") || told("rejected") {
            (net != 0)
                .then(|| format!("customer told failed or shed but {} is charged", money(net)))
        } else {
            // Nothing final: nothing or the whole cart.
            match amount {
                Some(amount) if net != 0 && net != amount => Some(format!(
                    "the outcome is unknown to the customer, and net charged is {} for a cart of {}",
                    money(net),
                    money(amount)
                )),
                _ => None,
            }
        };
        if let Some(narrative) = problem {
            self.verdict
                .violate(ctx.max_dossiers, || ctx.dossier(order, narrative));
        }
    }
}

impl MoneyConservation {
    /// The first operator decision on `order` that the provider's ledger contradicts.
    fn operator_contradicted(
        &mut self,
        order: &OrderEvidence,
        amount: i128,
        net: i128,
    ) -> Option<String> {
        let mut problem = None;
        for t in order.transitions.iter().filter(|t| t.actor == "operator") {
            self.operator_decisions += 1;
            let wrong = match t.to_state.as_str() {
                "order_confirmed" => net != amount,
                "failed_safely" => net != 0,
                _ => false,
            };
            if wrong && problem.is_none() {
                problem = Some(format!(
                    "an operator's decision contradicts the provider's ledger: {} moved it to {} ({}) while the provider holds {} net for an order of {}",
                    t.store,
                    t.to_state,
                    t.reason.as_deref().unwrap_or("no reason given"),
                    money(net),
                    money(amount)
                ));
            }
        }
        problem
    }
}

impl PerOrder for MoneyConservation {
    fn observe(&mut self, order: &OrderEvidence, ctx: &Context) {
        let net = order.net_cents();
        self.charged += net;
        let Some(row) = order.owner_row() else {
            if !order.charges.is_empty() {
                self.verdict.checked += 1;
            }
            if !ctx.order_rows && !order.arrivals.is_empty() {
                self.judge_by_the_customer(order, net, ctx);
                return;
            }
            if net != 0 {
                let narrative = format!(
                    "{} charged but no region has an order {}",
                    money(net),
                    order.order_id
                );
                self.verdict
                    .violate(ctx.max_dossiers, || ctx.dossier(order, narrative));
            }
            return;
        };
        self.verdict.checked += 1;
        // The amount is the customer's cart at the profile's prices where both are known
        // (the witnesses); the order row's amount is a claim checked against it. A system
        // the rig did not configure (no profile bounds) may sell at prices of its own.
        let recorded = i128::from(row.amount_cents);
        let priced = ctx.profile_price(order);
        let amount = priced.unwrap_or(recorded);
        let mispriced = priced.filter(|p| *p != recorded).map(|priced| {
            format!(
                "the order row says {} but the customer's cart costs {} at the profile's prices (net charged {})",
                money(recorded),
                money(priced),
                money(net)
            )
        });
        let operator = self.operator_contradicted(order, amount, net);
        let problem = match row.status.as_str() {
            "order_confirmed" => {
                self.confirmed_amounts += amount;
                (net != amount).then(|| {
                    format!(
                        "order confirmed for {} but net charged is {}",
                        money(amount),
                        money(net)
                    )
                })
            }
            "failed_safely" => (net != 0)
                .then(|| format!("order failed safely but {} is still charged", money(net))),
            status => (net != 0 && net != amount).then(|| {
                format!(
                    "order is {status} for {} but net charged is {}",
                    money(amount),
                    money(net)
                )
            }),
        };
        let problem = operator.or(mispriced).or(problem);
        if let Some(narrative) = problem {
            self.verdict
                .violate(ctx.max_dossiers, || ctx.dossier(order, narrative));
        }
    }

    fn finish(mut self: Box<Self>, ctx: &Context) -> Verdict {
        self.verdict.summary = format!(
            "net charged {} vs confirmed orders {} (difference {}){}",
            money(self.charged),
            money(self.confirmed_amounts),
            money(self.charged - self.confirmed_amounts),
            if ctx.order_rows {
                ""
            } else {
                "; amounts from the customers' carts at the profile's prices (no order rows)"
            }
        );
        if self.operator_decisions > 0 {
            self.verdict.summary.push_str(&format!(
                "; {} operator decisions checked against the provider's ledger",
                self.operator_decisions
            ));
        }
        self.verdict
    }
}
