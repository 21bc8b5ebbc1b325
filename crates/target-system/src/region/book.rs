//! `Orders`: the region's order book as the checkout and repair paths share it: which
//! checkouts are running in this process, the transaction that moves an order with its side
//! effects, and the transition counts. The SQL is in `orders.rs` and `inventory.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::sync::watch;

use super::api::CheckoutRequest;
use super::context::Context;
use super::inventory;
use super::orders::{self, Actor, AttemptRow, NewOrder, OrderError, Reserve, Then};
use crate::clock::IdGen;
use crate::defects::Defect;
use evidence::RegionId;
use evidence::order_state::OrderState;

/// How often the `event-after-commit` and `reply-before-commit` defects write what they
/// hold (each in a transaction of its own): what they hold when the process dies is lost.
pub(super) const LATE_EVENT_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

/// A payment outcome the `reply-before-commit` defect answered and has not written yet.
#[derive(Debug)]
pub(super) struct LateFinish {
    pub order_id: String,
    pub to: OrderState,
    pub reason: String,
    pub charge: Option<(String, i64)>,
    pub attempts: Vec<AttemptRow>,
}

/// A confirmation event the `event-after-commit` defect has not written yet.
#[derive(Debug)]
struct LateEvent {
    event_id: String,
    order_id: String,
    payload: serde_json::Value,
}

#[derive(Debug)]
pub(super) struct Orders {
    ctx: Arc<Context>,
    /// `event-after-commit`: confirmation events waiting for the next flush (at most one
    /// flush interval's confirmations).
    late_events: Mutex<Vec<LateEvent>>,
    /// `reply-before-commit`: answered outcomes waiting for the next flush.
    late_finishes: Mutex<Vec<LateFinish>>,
    /// Checkouts running in this process, by order id: a concurrent duplicate waits for the
    /// first to finish and replays its outcome instead of racing it.
    inflight: Mutex<HashMap<String, watch::Receiver<()>>>,
    event_ids: IdGen,
}

/// Removes the order's in-flight entry when the checkout that created it ends, waking waiters.
pub(super) struct InflightGuard<'a> {
    orders: &'a Orders,
    order_id: String,
    _done: watch::Sender<()>,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.orders.inflight.lock() {
            map.remove(&self.order_id);
        }
    }
}

/// The first checkout of an order in this process, or a duplicate to wait for.
pub(super) enum Claimed<'a> {
    First(InflightGuard<'a>),
    Duplicate(watch::Receiver<()>),
}

impl Orders {
    pub(super) fn new(ctx: Arc<Context>) -> Self {
        let event_ids = IdGen::new(match ctx.id {
            RegionId::A => "ev_a",
            RegionId::B => "ev_b",
        });
        Self {
            ctx,
            late_events: Mutex::new(Vec::new()),
            late_finishes: Mutex::new(Vec::new()),
            inflight: Mutex::new(HashMap::new()),
            event_ids,
        }
    }

    /// Claims `order_id` for the checkout running now, or says which one to wait for.
    pub(super) fn claim(&self, order_id: &str) -> Claimed<'_> {
        let mut map = self
            .inflight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(done) = map.get(order_id) {
            return Claimed::Duplicate(done.clone());
        }
        let (tx, rx) = watch::channel(());
        map.insert(order_id.to_string(), rx);
        Claimed::First(InflightGuard {
            orders: self,
            order_id: order_id.to_string(),
            _done: tx,
        })
    }

    /// How many checkouts are running in this process.
    pub(super) fn inflight_count(&self) -> usize {
        self.inflight.lock().map(|map| map.len()).unwrap_or(0)
    }

    /// A checkout of `order_id` is running in this process (the repair worker leaves it be).
    pub(super) fn is_inflight(&self, order_id: &str) -> bool {
        self.inflight
            .lock()
            .map(|map| map.contains_key(order_id))
            .unwrap_or(false)
    }

    /// The new order a checkout request describes, entered at `entry`.
    pub(super) fn new_order<'a>(
        &'a self,
        request: &'a CheckoutRequest,
        amount_cents: i64,
        entry: RegionId,
        then: Then<'a>,
    ) -> NewOrder<'a> {
        let ctx = &self.ctx;
        NewOrder {
            req: request,
            amount_cents,
            currency: &ctx.config.payment.currency,
            owner_region: ctx.owner(&request.order_id).as_str(),
            entry_region: entry.as_str(),
            acting_region: ctx.id.as_str(),
            reserve: if ctx.has(Defect::Oversell) {
                Reserve::Oversell
            } else {
                Reserve::NoOversell
            },
            then,
        }
    }

    /// Counts transitions made (the transitions metric).
    pub(super) fn count_transitions(&self, states: &[OrderState]) {
        for to in states {
            self.ctx
                .metrics
                .transitions
                .with_label_values(&[to.as_str()])
                .inc();
        }
    }

    /// Records provider calls that moved no order (the calls happened).
    pub(super) async fn save_calls(&self, calls: &[AttemptRow]) -> Result<(), sqlx::Error> {
        if calls.is_empty() {
            return Ok(());
        }
        let mut tx = self.ctx.db.pool.begin().await?;
        for call in calls {
            orders::insert_attempt(&mut tx, call).await?;
        }
        tx.commit().await
    }

    /// Moves an order `from -> to` with its side effects, in one transaction: reservations
    /// committed (confirmed) or released (failed), the confirmation event in the outbox, the
    /// provider attempt rows. Returns false if the order was no longer in `from` (the
    /// attempt rows are kept: the calls happened).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish(
        &self,
        order_id: &str,
        from: OrderState,
        to: OrderState,
        reason: Option<&str>,
        charge: Option<(&str, i64)>,
        attempts: &[AttemptRow],
        actor: Actor,
    ) -> Result<bool, OrderError> {
        self.finish_via(
            None, order_id, from, to, reason, charge, attempts, actor, None,
        )
        .await
    }

    /// [`Orders::finish`] by an operator: the audit row is written in the same transaction,
    /// `applied` when the order moved, `refused` when another actor moved it first.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish_by_operator(
        &self,
        order_id: &str,
        from: OrderState,
        to: OrderState,
        reason: &str,
        charge: Option<(&str, i64)>,
        attempts: &[AttemptRow],
        audit: &orders::Audit,
    ) -> Result<bool, OrderError> {
        self.finish_via(
            None,
            order_id,
            from,
            to,
            Some(reason),
            charge,
            attempts,
            Actor::Operator,
            Some(audit),
        )
        .await
    }

    /// [`Orders::finish`], passing from `before` to `from` first in the same transaction
    /// (the `reply-before-commit` defect writes `inventory_reserved -> payment_authorizing`
    /// only with the outcome).
    #[allow(clippy::too_many_arguments)]
    async fn finish_via(
        &self,
        before: Option<OrderState>,
        order_id: &str,
        from: OrderState,
        to: OrderState,
        reason: Option<&str>,
        charge: Option<(&str, i64)>,
        attempts: &[AttemptRow],
        actor: Actor,
        audit: Option<&orders::Audit>,
    ) -> Result<bool, OrderError> {
        let region = self.ctx.id.as_str();
        let mut tx = self.ctx.db.pool.begin().await?;
        for attempt in attempts {
            orders::insert_attempt(&mut tx, attempt).await?;
        }
        if let Some(before) = before
            && !orders::apply(&mut tx, order_id, before, from, None, actor, region).await?
        {
            tx.commit().await?;
            return Ok(false);
        }
        let moved = orders::apply(&mut tx, order_id, from, to, reason, actor, region).await?;
        if let Some(audit) = audit {
            let outcome = if moved { "applied" } else { "refused" };
            orders::insert_audit(&mut tx, audit, outcome).await?;
        }
        let mut late_event = None;
        if !moved {
            tx.commit().await?;
            return Ok(false);
        }
        match to {
            OrderState::OrderConfirmed => {
                inventory::commit_reservations(&mut tx, order_id).await?;
                let event_id = self.event_ids.next();
                let (charge_id, amount_cents) = charge.unwrap_or(("", 0));
                let payload = json!({
                    "event_id": event_id,
                    "type": "order_confirmed",
                    "order_id": order_id,
                    "charge_id": charge_id,
                    "amount_cents": amount_cents,
                    "region": region,
                });
                if self.ctx.has(Defect::EventAfterCommit) {
                    // The defect: the event leaves the state change's transaction (queued
                    // once that commits, below).
                    late_event = Some(LateEvent {
                        event_id,
                        order_id: order_id.to_string(),
                        payload,
                    });
                } else {
                    orders::insert_event(&mut tx, &event_id, order_id, "order_confirmed", &payload)
                        .await?;
                }
            }
            OrderState::FailedSafely => inventory::release_reservations(&mut tx, order_id).await?,
            _ => {}
        }
        tx.commit().await?;
        if let Some(event) = late_event {
            self.late_events
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(event);
        }
        self.count_transitions(&[to]);
        Ok(true)
    }

    /// `reply-before-commit`: an outcome still unknown (pending) is written at once, with
    /// the payment's transitions.
    pub(super) async fn finish_pending_now(
        &self,
        order_id: &str,
        to: OrderState,
        reason: &str,
        attempts: &[AttemptRow],
    ) -> Result<bool, OrderError> {
        self.finish_via(
            Some(OrderState::InventoryReserved),
            order_id,
            OrderState::PaymentAuthorizing,
            to,
            Some(reason),
            None,
            attempts,
            Actor::Checkout,
            None,
        )
        .await
    }

    /// `reply-before-commit`: holds an answered outcome for the next flush.
    pub(super) fn hold_finish(&self, finish: LateFinish) {
        self.late_finishes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(finish);
    }

    /// `reply-before-commit`: writes the outcomes held since the last flush, each with its
    /// payment transitions, in a transaction of its own.
    pub(super) async fn flush_late_finishes(&self) {
        let held = take_all(&self.late_finishes);
        for late in held {
            let written = self
                .finish_via(
                    Some(OrderState::InventoryReserved),
                    &late.order_id,
                    OrderState::PaymentAuthorizing,
                    late.to,
                    Some(&late.reason),
                    late.charge
                        .as_ref()
                        .map(|(id, amount)| (id.as_str(), *amount)),
                    &late.attempts,
                    Actor::Checkout,
                    None,
                )
                .await;
            match written {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(order_id = %late.order_id, "reply-before-commit: outcome lost (the order moved meanwhile)")
                }
                Err(err) => {
                    tracing::error!(error = %err, order_id = %late.order_id, "reply-before-commit: outcome lost")
                }
            }
        }
    }

    /// `event-after-commit`: writes the events held since the last flush, each in a
    /// transaction of its own (an event that cannot be written is lost, as the defect's
    /// publisher would lose it).
    pub(super) async fn flush_late_events(&self) {
        let held = take_all(&self.late_events);
        for event in held {
            let written = async {
                let mut tx = self.ctx.db.pool.begin().await?;
                orders::insert_event(
                    &mut tx,
                    &event.event_id,
                    &event.order_id,
                    "order_confirmed",
                    &event.payload,
                )
                .await?;
                tx.commit().await
            };
            if let Err(err) = written.await {
                tracing::error!(error = %err, order_id = %event.order_id, "event-after-commit: event lost");
            }
        }
    }
}

/// Everything a write-behind holds, leaving it empty.
fn take_all<T>(held: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *held.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// The write-behind of the `reply-before-commit` and `event-after-commit` defects: flushes
/// what they hold every [`LATE_EVENT_FLUSH`] and once more when the region stops (a kill
/// loses what it holds).
pub(super) async fn flush_late_writes(orders: Arc<Orders>, mut stop: watch::Receiver<bool>) {
    if !orders.ctx.has(Defect::EventAfterCommit) && !orders.ctx.has(Defect::ReplyBeforeCommit) {
        return;
    }
    loop {
        let stopping = tokio::select! {
            () = tokio::time::sleep(LATE_EVENT_FLUSH) => false,
            _ = stop.changed() => true,
        };
        orders.flush_late_finishes().await;
        orders.flush_late_events().await;
        if stopping {
            return;
        }
    }
}
