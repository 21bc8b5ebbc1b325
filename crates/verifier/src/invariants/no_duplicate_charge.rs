//! **no-duplicate-charge**: per order at most one live (authorized, not refunded or voided)
//! provider charge, and per idempotency key at most one charge.

use std::collections::BTreeMap;

use super::{Context, PerOrder, money};
use crate::model::OrderEvidence;
use crate::report::Verdict;

pub const NAME: &str = "no-duplicate-charge";
pub const STATEMENT: &str =
    "per order at most one live provider charge; per key at most one charge";

#[derive(Debug)]
pub struct NoDuplicateCharge {
    verdict: Verdict,
    most_live: usize,
    foreign_keys: u64,
}

impl Default for NoDuplicateCharge {
    fn default() -> Self {
        Self {
            verdict: Verdict::new(NAME, STATEMENT),
            most_live: 0,
            foreign_keys: 0,
        }
    }
}

impl PerOrder for NoDuplicateCharge {
    fn observe(&mut self, order: &OrderEvidence, ctx: &Context) {
        if order.charges.is_empty() {
            return;
        }
        self.verdict.checked += 1;
        // The reference system's key is `pay:<order id>`: compared in place, per charge.
        let expected = |key: &[u8]| key.strip_prefix(b"pay:") == Some(order.order_id.as_bytes());
        self.foreign_keys += order
            .charges
            .iter()
            .filter(|c| !expected(c.idempotency_key.as_bytes()))
            .count() as u64;
        let live_count = order.charges.iter().filter(|c| c.is_live()).count();
        self.most_live = self.most_live.max(live_count);
        if live_count > 1 {
            let live: Vec<_> = order.charges.iter().filter(|c| c.is_live()).collect();
            let list = live
                .iter()
                .map(|c| {
                    format!(
                        "{} ({} under key {})",
                        c.charge_id,
                        money(i128::from(c.net_cents())),
                        c.idempotency_key
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let narrative = format!("{} live charges for one order: {list}", live.len());
            self.verdict
                .violate(ctx.max_dossiers, || ctx.dossier(order, narrative));
            return;
        }
        // One charge has one key: the count per key matters only from two charges on.
        if order.charges.len() < 2 {
            return;
        }
        let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
        for charge in &order.charges {
            *per_key.entry(charge.idempotency_key.as_str()).or_default() += 1;
        }
        if let Some((key, n)) = per_key.into_iter().find(|(_, n)| *n > 1) {
            let narrative =
                format!("key {key} has {n} charges; the provider must replay, not charge again");
            self.verdict
                .violate(ctx.max_dossiers, || ctx.dossier(order, narrative));
        }
    }

    fn finish(mut self: Box<Self>, _ctx: &Context) -> Verdict {
        self.verdict.summary = format!(
            "{} orders with charges; most live charges on one order: {}; charges under another key than pay:<order>: {}",
            self.verdict.checked, self.most_live, self.foreign_keys
        );
        self.verdict
    }
}
