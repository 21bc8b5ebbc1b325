//! **outbox-effectively-once**: an order is confirmed if and only if exactly one
//! `order_confirmed` event exists for it; every event is published by the end; the consumer
//! applied each published event exactly once (deliveries may repeat, effects may not).

use std::collections::BTreeMap;

use super::{Context, PerOrder};
use crate::model::OrderEvidence;
use crate::report::Verdict;

pub const NAME: &str = "outbox-effectively-once";
pub const STATEMENT: &str = "confirmed <=> exactly one confirmation event; every event published; one consumer effect per event";

#[derive(Debug)]
pub struct OutboxEffectivelyOnce {
    verdict: Verdict,
    events: u64,
    effects: u64,
    /// Events not yet published when the run was interrupted.
    cut_short: u64,
}

impl Default for OutboxEffectivelyOnce {
    fn default() -> Self {
        Self {
            verdict: Verdict::new(NAME, STATEMENT),
            events: 0,
            effects: 0,
            cut_short: 0,
        }
    }
}

impl PerOrder for OutboxEffectivelyOnce {
    fn observe(&mut self, order: &OrderEvidence, ctx: &Context) {
        if order.orders.is_empty() && order.events.is_empty() && order.effects.is_empty() {
            return;
        }
        self.verdict.checked += 1;
        self.events += order.events.len() as u64;
        self.effects += order.effects.len() as u64;
        let confirmed = order
            .owner_row()
            .is_some_and(|o| o.status == "order_confirmed");
        let confirmations = order
            .events
            .iter()
            .filter(|e| e.event_type == "order_confirmed")
            .count();
        let mut effects_per_event: BTreeMap<&str, usize> = BTreeMap::new();
        for effect in &order.effects {
            *effects_per_event.entry(&effect.event_id).or_default() += 1;
        }
        let problem = if confirmed && confirmations != 1 {
            Some(format!(
                "the order is confirmed but has {confirmations} confirmation events"
            ))
        } else if !confirmed && confirmations > 0 {
            Some(format!(
                "{confirmations} confirmation events for an order that is {}",
                order.owner_row().map_or("missing", |o| o.status.as_str())
            ))
        } else if let Some(e) = order.events.iter().find(|e| e.published_at_us.is_none()) {
            if ctx.interrupted_at_us.is_some() {
                // The relay may simply not have reached it before the run stopped.
                self.cut_short += 1;
                None
            } else {
                Some(format!("event {} was never published", e.event_id))
            }
        } else if let Some((event, n)) = effects_per_event.iter().find(|(_, n)| **n > 1) {
            Some(format!("the consumer applied event {event} {n} times"))
        } else if let Some(e) = order
            .events
            .iter()
            .find(|e| !effects_per_event.contains_key(e.event_id.as_str()))
        {
            Some(format!(
                "event {} was published but the consumer has no effect for it",
                e.event_id
            ))
        } else {
            order
                .effects
                .iter()
                .find(|f| !order.events.iter().any(|e| e.event_id == f.event_id))
                .map(|f| {
                    format!(
                        "an effect for event {} that is not in the outbox",
                        f.event_id
                    )
                })
        };
        if let Some(narrative) = problem {
            self.verdict
                .violate(ctx.max_dossiers, || ctx.dossier(order, narrative));
        }
    }

    fn finish(mut self: Box<Self>, ctx: &Context) -> Verdict {
        self.verdict.summary = format!(
            "{} events, {} consumer effects (no witness yet: judged from the system's own outbox and consumer tables)",
            self.events, self.effects
        );
        if self.cut_short > 0
            && let Some(why) = ctx.interruption()
        {
            self.verdict.unknown_unless_failed(format!(
                "{why}: {} events were not yet published then",
                self.cut_short
            ));
        }
        self.verdict
    }
}
