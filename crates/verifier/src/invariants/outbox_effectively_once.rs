//! **outbox-effectively-once**, judged from the rig's event sink (a witness the system
//! cannot write) against what each customer was told:
//! 1. an order its customer was told is confirmed reaches the sink with exactly one
//!    distinct confirmation event id (redelivering that id is fine: the sink answers it as
//!    a duplicate, like a deduplicating consumer);
//! 2. an order its customer was told failed, or was only ever shed, gets no confirmation;
//! 3. each confirmation reaches the sink within the event-age bound of the customer being
//!    told confirmed, so a backed-up relay shows;
//! 4. an event id belongs to one order: a confirmation whose id the sink had accepted for
//!    another order is one a deduplicating consumer drops;
//! 5. with both regions' stores read, a confirmation comes through the owner region's
//!    proxy (the sink attributes each delivery by its listener): only the owner decides.
//!
//! Where no client answer is final, the owner region's order row decides what is expected.
//! The system's own outbox and consumer tables are claims, cross-checked: a confirmed order
//! has exactly one outbox confirmation, every event is published by the end, and the
//! consumer applied each event exactly once.
//!
//! Without a sink log (a system whose events do not reach the rig), or with one that saw no
//! delivery at all while orders were confirmed, the witness part is not judged and the
//! invariant is `unknown` unless a claim already fails it.

use std::collections::{BTreeMap, BTreeSet};

use super::{Context, PerOrder, SinkEvidence};
use crate::model::OrderEvidence;
use crate::report::Verdict;

pub const NAME: &str = "outbox-effectively-once";
pub const STATEMENT: &str = "confirmed <=> exactly one confirmation event at the sink, within the age bound; every event published; one consumer effect per event";

/// The confirmation event type.
const CONFIRMED: &str = "order_confirmed";

#[derive(Debug)]
pub struct OutboxEffectivelyOnce {
    verdict: Verdict,
    events: u64,
    effects: u64,
    deliveries: u64,
    /// Orders whose confirmation was judged at the sink.
    confirmations: u64,
    /// The oldest confirmation seen: (age µs, order id).
    oldest: Option<(i64, String)>,
    /// Events not yet published (or not yet at the sink) when the run was interrupted.
    cut_short: u64,
    /// Orders a confirmation was expected for, when the sink saw nothing at all.
    expected_unseen: u64,
}

impl Default for OutboxEffectivelyOnce {
    fn default() -> Self {
        Self {
            verdict: Verdict::new(NAME, STATEMENT),
            events: 0,
            effects: 0,
            deliveries: 0,
            confirmations: 0,
            oldest: None,
            cut_short: 0,
            expected_unseen: 0,
        }
    }
}

/// What an order's customer was told, as far as it is final.
#[derive(Clone, Copy)]
enum Told {
    /// Told `order_confirmed`; first answered at this time (µs).
    Confirmed(i64),
    /// Told `failed_safely`.
    Failed,
    /// Only ever shed (429/503): no order was created.
    Shed,
    /// Nothing final (or no client evidence).
    Unclear,
}

fn told(order: &OrderEvidence) -> Told {
    if !order.requests.is_empty() {
        let first_confirmed = order
            .requests
            .iter()
            .filter(|r| r.answer == "confirmed")
            .map(|r| r.finished_at_us)
            .min();
        return match first_confirmed {
            Some(at) => Told::Confirmed(at),
            None if order.requests.iter().any(|r| r.answer == "failed") => Told::Failed,
            None if order.requests.iter().all(|r| r.answer == "rejected") => Told::Shed,
            None => Told::Unclear,
        };
    }
    // A history without per-request answers: each arrival's final outcome.
    let confirmed = order
        .arrivals
        .iter()
        .filter(|a| a.outcome == "confirmed")
        .filter_map(|a| a.finished_at_us)
        .min();
    match confirmed {
        Some(at) => Told::Confirmed(at),
        None if order.arrivals.iter().any(|a| a.outcome == "failed") => Told::Failed,
        None if !order.arrivals.is_empty()
            && order.arrivals.iter().all(|a| a.outcome == "rejected") =>
        {
            Told::Shed
        }
        None => Told::Unclear,
    }
}

impl OutboxEffectivelyOnce {
    /// The witness: the sink's deliveries against what the customer was told. Returns the
    /// problem, if any.
    fn judge_sink(&mut self, order: &OrderEvidence, ctx: &Context) -> Option<String> {
        // An event id the sink had already accepted for another order (ids reused across
        // orders, say a counter that restarts): a consumer deduplicating by id drops it, so
        // it confirms nothing for this order.
        if let Some(d) = order.deliveries.iter().find(|d| {
            d.event_type == CONFIRMED
                && d.outcome == "duplicate"
                && !order
                    .deliveries
                    .iter()
                    .any(|a| a.event_id == d.event_id && a.outcome == "accepted")
        }) {
            return Some(format!(
                "its confirmation {} reached the sink at {} as a duplicate of an event id first delivered for another order: a consumer that deduplicates by event id drops it",
                d.event_id,
                super::at(d.received_at_us)
            ));
        }
        // Only the owner decides, so only its relay may announce the decision.
        if ctx.owners_by_id
            && let Some(owner) = ctx.owner(order)
            && let Some(d) = order.deliveries.iter().find(|d| {
                d.event_type == CONFIRMED && d.caller.as_ref().is_some_and(|c| *c != owner)
            })
        {
            return Some(format!(
                "its confirmation {} reached the sink at {} from region {}'s relay, but the order belongs to region {owner} (only the owner decides)",
                d.event_id,
                super::at(d.received_at_us),
                d.caller.as_ref().map_or("?", |c| c.as_str())
            ));
        }
        // The distinct confirmation event ids, as a set only when there are several (nearly
        // always there is one or none).
        let confirmation_ids = || {
            order
                .deliveries
                .iter()
                .filter(|d| d.event_type == CONFIRMED)
                .map(|d| d.event_id.as_str())
                .collect::<BTreeSet<&str>>()
        };
        let mut confirmed = order
            .deliveries
            .iter()
            .filter(|d| d.event_type == CONFIRMED);
        let distinct = match confirmed.next() {
            None => 0,
            Some(first) if confirmed.all(|d| d.event_id == first.event_id) => 1,
            Some(_) => confirmation_ids().len(),
        };
        let first_delivery = order
            .deliveries
            .iter()
            .filter(|d| d.event_type == CONFIRMED)
            .map(|d| d.received_at_us)
            .min();
        let claimed = order.owner_row().map(|o| o.status.as_str());
        // Expected: Some(time told confirmed, if known) for a confirmation; None for none.
        let told = told(order);
        let expected: Option<Option<i64>> = match told {
            Told::Confirmed(at) => Some(Some(at)),
            Told::Failed | Told::Shed => None,
            Told::Unclear => match claimed {
                Some(CONFIRMED) => Some(None),
                Some(_) => None,
                // No customer and no order row: nothing expected, nothing allowed.
                None if ctx.has_history => None,
                None => return None,
            },
        };
        match (expected, distinct) {
            (Some(_), 0) => {
                if ctx.interrupted_at_us.is_some() {
                    self.cut_short += 1;
                    return None;
                }
                Some(match told {
                    Told::Confirmed(at) => format!(
                        "the customer was told confirmed at {} but no confirmation event reached the sink",
                        super::at(at)
                    ),
                    _ => "the order is confirmed (order row) but no confirmation event reached the sink".to_string(),
                })
            }
            (Some(told_at), 1) => {
                self.confirmations += 1;
                let (Some(told_at), Some(delivered)) = (told_at, first_delivery) else {
                    return None;
                };
                let age = (delivered - told_at).max(0);
                if self.oldest.as_ref().is_none_or(|(a, _)| age > *a) {
                    self.oldest = Some((age, order.order_id.clone()));
                }
                (age > ctx.event_age_us).then(|| {
                    format!(
                        "the confirmation reached the sink at {}, {:.1} s after the customer was told confirmed (bound {:.1} s)",
                        super::at(delivered),
                        age as f64 / 1e6,
                        ctx.event_age_us as f64 / 1e6
                    )
                })
            }
            (Some(_), n) => Some(format!(
                "{n} distinct confirmation events reached the sink for one order: {}",
                confirmation_ids()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            (None, 0) => None,
            (None, n) => Some(format!(
                "{n} confirmation event(s) reached the sink for an order that is not confirmed (customer told {}; order row {})",
                match told {
                    Told::Failed => "failed",
                    Told::Shed => "only shed answers",
                    _ => "nothing final",
                },
                claimed.unwrap_or("missing")
            )),
        }
    }

    /// The claims: the system's own outbox and consumer tables.
    fn judge_claims(&mut self, order: &OrderEvidence, ctx: &Context) -> Option<String> {
        if order.orders.is_empty() && order.events.is_empty() && order.effects.is_empty() {
            return None;
        }
        let confirmed = order.owner_row().is_some_and(|o| o.status == CONFIRMED);
        let confirmations = order
            .events
            .iter()
            .filter(|e| e.event_type == CONFIRMED)
            .count();
        // Effects counted per event only when there are several (nearly always there is
        // one or none).
        let several = order.effects.len() > 1;
        let mut effects_per_event: BTreeMap<&str, usize> = BTreeMap::new();
        if several {
            for effect in &order.effects {
                *effects_per_event
                    .entry(effect.event_id.as_str())
                    .or_default() += 1;
            }
        }
        let has_effect = |event: &crate::model::EventRow| {
            if several {
                effects_per_event.contains_key(event.event_id.as_str())
            } else {
                order.effects.iter().any(|f| f.event_id == event.event_id)
            }
        };
        if confirmed && confirmations != 1 {
            Some(format!(
                "the order is confirmed but its outbox has {confirmations} confirmation events"
            ))
        } else if !confirmed && confirmations > 0 {
            Some(format!(
                "{confirmations} outbox confirmation events for an order that is {}",
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
        } else if let Some(e) = order.events.iter().find(|e| !has_effect(e)) {
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
        }
    }
}

impl PerOrder for OutboxEffectivelyOnce {
    fn observe(&mut self, order: &OrderEvidence, ctx: &Context) {
        let relevant = !order.orders.is_empty()
            || !order.events.is_empty()
            || !order.effects.is_empty()
            || !order.deliveries.is_empty()
            || !order.requests.is_empty()
            || !order.arrivals.is_empty();
        if !relevant {
            return;
        }
        self.verdict.checked += 1;
        self.events += order.events.len() as u64;
        self.effects += order.effects.len() as u64;
        self.deliveries += order.deliveries.len() as u64;
        let witness = match ctx.sink {
            SinkEvidence::Delivered => self.judge_sink(order, ctx),
            SinkEvidence::Silent => {
                let claimed = order.owner_row().is_some_and(|o| o.status == CONFIRMED);
                if matches!(told(order), Told::Confirmed(_)) || claimed {
                    self.expected_unseen += 1;
                }
                None
            }
            SinkEvidence::Absent => None,
        };
        let problem = witness.or_else(|| self.judge_claims(order, ctx));
        if let Some(narrative) = problem {
            self.verdict
                .violate(ctx.max_dossiers, || ctx.dossier(order, narrative));
        }
    }

    fn finish(mut self: Box<Self>, ctx: &Context) -> Verdict {
        let oldest = match &self.oldest {
            Some((age, order)) => format!(
                "; oldest confirmation {:.1} s after the customer was told ({order}; bound {:.1} s)",
                *age as f64 / 1e6,
                ctx.event_age_us as f64 / 1e6
            ),
            None => String::new(),
        };
        self.verdict.summary = format!(
            "{} sink deliveries, {} confirmations judged at the sink{oldest}; claims: {} outbox events, {} consumer effects",
            self.deliveries, self.confirmations, self.events, self.effects
        );
        match ctx.sink {
            SinkEvidence::Delivered => {}
            SinkEvidence::Absent => self.verdict.unknown_unless_failed(
                "no event sink log: the system's events did not go through the rig's sink, so no witness saw them (the outbox and consumer tables are only claims)".to_string(),
            ),
            // Nothing confirmed and nothing delivered: the sink's silence is the evidence.
            SinkEvidence::Silent if self.expected_unseen == 0 => {}
            SinkEvidence::Silent => self.verdict.unknown_unless_failed(format!(
                "the event sink saw no delivery at all in this run, though {} orders were confirmed: the system delivers no events to it, or none got through",
                self.expected_unseen
            )),
        }
        if self.cut_short > 0
            && let Some(why) = ctx.interruption()
        {
            self.verdict.unknown_unless_failed(format!(
                "{why}: {} events were not yet published or delivered then",
                self.cut_short
            ));
        }
        self.verdict
    }
}
