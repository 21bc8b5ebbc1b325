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

#[derive(Debug)]
pub(super) struct Orders {
    ctx: Arc<Context>,
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
        let region = self.ctx.id.as_str();
        let mut tx = self.ctx.db.pool.begin().await?;
        for attempt in attempts {
            orders::insert_attempt(&mut tx, attempt).await?;
        }
        let moved = orders::apply(&mut tx, order_id, from, to, reason, actor, region).await?;
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
                orders::insert_event(&mut tx, &event_id, order_id, "order_confirmed", &payload)
                    .await?;
            }
            OrderState::FailedSafely => inventory::release_reservations(&mut tx, order_id).await?,
            _ => {}
        }
        tx.commit().await?;
        self.count_transitions(&[to]);
        Ok(true)
    }
}
