//! Checkout and order status.
//!
//! The owner region admits a new checkout (or sheds it before writing anything), saves the
//! intent and reserves stock in one transaction, pays within the end-to-end deadline, and
//! records the outcome with the transition, the attempt rows and (on confirmation) the outbox
//! event in one more transaction. An unknown payment outcome becomes `payment_pending` (202),
//! never a failure. A repeated key replays the order's current outcome; a changed body gets
//! 422. In payment-degraded mode (breaker open, or paused by an operator) new payments are
//! parked (202) or rejected (503), per `breaker.degraded_mode`.

use std::sync::Arc;
use std::time::Duration;

use rig_http::{Incoming, Reply, Request, StatusCode, problem};
use tokio::time::Instant;

use super::admission::{Admission, Decision, Gate, Slot};
use super::api::{CheckoutRequest, parse_checkout};
use super::book::{Claimed, LateFinish, Orders};
use super::breaker::Permission;
use super::context::Context;
use super::orders::{self, Actor, Intent, Order, Then};
use super::pay::{Charge, Payments};
use super::replies::{
    confirmed_reply, failed_reply, invalid, key_reused, overloaded, payment_unavailable,
    pending_reply, store_error,
};
use crate::config::DegradedMode;
use crate::defects::Defect;
use evidence::RegionId;
use evidence::order_state::OrderState;
use rig_http::with_retry_after;

/// Header a gateway adds when it forwards a request to the owner region.
pub const FORWARDED_FROM: &str = "x-rig-forwarded-from";
/// What remains of the end-to-end deadline, in milliseconds, when a request is sent on.
pub const DEADLINE_HEADER: &str = "x-rig-deadline-ms";

/// A checkout request, validated, with its deadline.
pub(super) struct CheckoutCall {
    pub(super) request: CheckoutRequest,
    pub(super) body: bytes::Bytes,
    pub(super) forwarded_from: Option<String>,
    pub(super) deadline: Instant,
    pub(super) arrived: Instant,
}

/// The owner's checkout path: admit (or shed, or park in degraded mode), save the intent
/// and reserve stock, pay, record the outcome.
#[derive(Debug)]
pub(super) struct Checkouts {
    ctx: Arc<Context>,
    orders: Arc<Orders>,
    payments: Arc<Payments>,
    gate: Arc<Gate>,
}

impl Checkouts {
    pub(super) fn new(
        ctx: Arc<Context>,
        orders: Arc<Orders>,
        payments: Arc<Payments>,
        gate: Arc<Gate>,
    ) -> Self {
        Self {
            ctx,
            orders,
            payments,
            gate,
        }
    }

    /// Reads and validates a checkout request; the error is the answer to send.
    pub(super) async fn read(
        &self,
        req: Request<Incoming>,
        started: Instant,
    ) -> Result<CheckoutCall, Reply> {
        let config = &self.ctx.config;
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let key = header("idempotency-key");
        let forwarded_from = header(FORWARDED_FROM);
        // One end-to-end deadline: ours, or less if the caller has less left.
        let budget = header(DEADLINE_HEADER)
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(Duration::from_millis)
            .map_or(config.payment.deadline(), |left| {
                left.min(config.payment.deadline())
            });
        let body = rig_http::read_body(req.into_body(), config.checkout.max_body_bytes)
            .await
            .map_err(|err| invalid("body", &err.to_string()))?;
        let request = parse_checkout(key.as_deref(), &body, config)
            .map_err(|err| invalid(&err.field, &err.message))?;
        Ok(CheckoutCall {
            request,
            body,
            forwarded_from,
            deadline: started + budget,
            arrived: started,
        })
    }

    /// The owner's path: admit, save, pay, record.
    pub(super) async fn as_owner(&self, checkout: &CheckoutCall) -> (&'static str, Reply) {
        let request = &checkout.request;
        let config = &self.ctx.config;
        let amount_cents = match request.amount_cents(config) {
            Ok(amount) => amount,
            Err(err) => return ("invalid", invalid(&err.field, &err.message)),
        };
        let _guard = match self.orders.claim(&request.order_id) {
            Claimed::First(guard) => guard,
            Claimed::Duplicate(mut done) => {
                // A concurrent duplicate: wait (bounded) for the first to finish, then replay.
                let wait = checkout.deadline.saturating_duration_since(Instant::now())
                    + Duration::from_secs(1);
                let _ = tokio::time::timeout(wait, done.changed()).await;
                return self.replay_existing(request).await;
            }
        };
        let entry = checkout
            .forwarded_from
            .as_deref()
            .and_then(RegionId::parse)
            .unwrap_or(self.ctx.id);
        let permission = self.payments.permission();
        if permission == Permission::Refuse {
            return self.degraded_checkout(request, amount_cents, entry).await;
        }
        let slot = match self.gate.admit(checkout.arrived).await {
            Admission::Admitted(slot) => slot,
            Admission::Shed {
                decision,
                retry_after,
            } => {
                // Shedding must stay cheap: no store read. A shed answer says nothing about an
                // earlier attempt with this key; a retry later gets the order's outcome.
                return ("rejected", overloaded(decision, retry_after));
            }
        };
        let then = if self.ctx.has(Defect::ReplyBeforeCommit) {
            Then::ReserveOnly
        } else {
            Then::Authorize
        };
        let new = self.orders.new_order(request, amount_cents, entry, then);
        match orders::save_intent(&self.ctx.db, new).await {
            Err(err) => ("error", store_error(&err)),
            Ok(Intent::Exists(order)) => replay(&order, request),
            Ok(Intent::OutOfStock { sku }) => {
                self.orders
                    .count_transitions(&[OrderState::OrderIntentSaved, OrderState::FailedSafely]);
                (
                    "failed_safely",
                    failed_reply(&request.order_id, &format!("out_of_stock:{sku}")),
                )
            }
            Ok(Intent::Parked) => ("pending", pending_reply(&request.order_id)),
            Ok(intent @ (Intent::Authorizing | Intent::Reserved)) => {
                let charge = Charge {
                    order_id: &request.order_id,
                    amount_cents,
                    first_attempt: 1,
                    probe: permission == Permission::Probe,
                    deadline: checkout.deadline,
                };
                if matches!(intent, Intent::Reserved) {
                    self.orders.count_transitions(&[
                        OrderState::OrderIntentSaved,
                        OrderState::InventoryReserved,
                    ]);
                    return self.pay_then_answer(request, charge, slot).await;
                }
                self.orders.count_transitions(&[
                    OrderState::OrderIntentSaved,
                    OrderState::InventoryReserved,
                    OrderState::PaymentAuthorizing,
                ]);
                self.pay_and_record(request, charge, slot).await
            }
        }
    }

    /// The `reply-before-commit` defect: pays, answers a final outcome at once and leaves
    /// writing it (with the payment's transitions) to the next write-behind flush; an
    /// outcome still unknown is written now.
    async fn pay_then_answer(
        &self,
        request: &CheckoutRequest,
        charge: Charge<'_>,
        slot: Slot,
    ) -> (&'static str, Reply) {
        let paid = self.payments.pay(charge, slot).await;
        let (to, reason, confirmed_charge) = self.payments.judge(&paid, charge.amount_cents);
        let reply = match to {
            OrderState::OrderConfirmed => ("confirmed", confirmed_reply(&request.order_id)),
            OrderState::FailedSafely => ("failed_safely", failed_reply(&request.order_id, &reason)),
            _ => {
                let written = self
                    .orders
                    .finish_pending_now(&request.order_id, to, &reason, &paid.attempts)
                    .await;
                return match written {
                    Ok(_) => ("pending", pending_reply(&request.order_id)),
                    Err(err) => ("error", store_error(&err)),
                };
            }
        };
        self.orders.hold_finish(LateFinish {
            order_id: request.order_id.clone(),
            to,
            reason,
            charge: confirmed_charge,
            attempts: paid.attempts,
        });
        reply
    }

    /// Payment-degraded mode: park (save, reserve, 202) or reject (503, nothing written).
    async fn degraded_checkout(
        &self,
        request: &CheckoutRequest,
        amount_cents: i64,
        entry: RegionId,
    ) -> (&'static str, Reply) {
        let why = if self.payments.is_paused() {
            "payments paused by an operator"
        } else {
            "payment provider breaker open"
        };
        match self.ctx.config.breaker.degraded_mode {
            DegradedMode::Reject => match orders::load(&self.ctx.db, &request.order_id).await {
                Ok(Some(order)) => replay(&order, request),
                Ok(None) => {
                    self.gate.count(Decision::Rejected);
                    ("rejected", payment_unavailable(why))
                }
                Err(err) => ("error", store_error(&err)),
            },
            DegradedMode::Park => {
                let reason = format!("parked: {why}");
                let new = self
                    .orders
                    .new_order(request, amount_cents, entry, Then::Park(&reason));
                match orders::save_intent(&self.ctx.db, new).await {
                    Err(err) => ("error", store_error(&err)),
                    Ok(Intent::Exists(order)) => replay(&order, request),
                    Ok(Intent::OutOfStock { sku }) => {
                        self.orders.count_transitions(&[
                            OrderState::OrderIntentSaved,
                            OrderState::FailedSafely,
                        ]);
                        (
                            "failed_safely",
                            failed_reply(&request.order_id, &format!("out_of_stock:{sku}")),
                        )
                    }
                    Ok(_) => {
                        self.gate.count(Decision::Parked);
                        self.orders.count_transitions(&[
                            OrderState::OrderIntentSaved,
                            OrderState::InventoryReserved,
                            OrderState::PaymentPending,
                        ]);
                        ("pending", pending_reply(&request.order_id))
                    }
                }
            }
        }
    }

    async fn replay_existing(&self, request: &CheckoutRequest) -> (&'static str, Reply) {
        match orders::load(&self.ctx.db, &request.order_id).await {
            Ok(Some(order)) => replay(&order, request),
            Ok(None) => (
                "error",
                with_retry_after(
                    problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "checkout_in_progress",
                        "a checkout with this key is still being set up; retry with the same key",
                        None,
                    ),
                    Duration::from_secs(1),
                ),
            ),
            Err(err) => ("error", store_error(&err)),
        }
    }

    /// Pays and records the outcome in one transaction.
    async fn pay_and_record(
        &self,
        request: &CheckoutRequest,
        charge: Charge<'_>,
        slot: Slot,
    ) -> (&'static str, Reply) {
        let paid = self.payments.pay(charge, slot).await;
        let (to, reason, confirmed_charge) = self.payments.judge(&paid, charge.amount_cents);
        let result = self
            .orders
            .finish(
                &request.order_id,
                OrderState::PaymentAuthorizing,
                to,
                Some(&reason),
                confirmed_charge
                    .as_ref()
                    .map(|(id, amount)| (id.as_str(), *amount)),
                &paid.attempts,
                Actor::Checkout,
            )
            .await;
        match result {
            Ok(true) => match to {
                OrderState::OrderConfirmed => ("confirmed", confirmed_reply(&request.order_id)),
                OrderState::FailedSafely => {
                    ("failed_safely", failed_reply(&request.order_id, &reason))
                }
                _ => ("pending", pending_reply(&request.order_id)),
            },
            // Someone else (the repair worker) moved the order first: say what it is now.
            Ok(false) => self.replay_existing(request).await,
            Err(err) => ("error", store_error(&err)),
        }
    }
}

/// The answer for an existing order: 422 if the body changed, else its current outcome.
pub(super) fn replay(order: &Order, request: &CheckoutRequest) -> (&'static str, Reply) {
    if order.fingerprint != request.fingerprint() {
        return ("conflict", key_reused());
    }
    match order.status {
        OrderState::OrderConfirmed => ("confirmed", confirmed_reply(&order.order_id)),
        OrderState::FailedSafely => (
            "failed_safely",
            failed_reply(&order.order_id, order.reason.as_deref().unwrap_or("failed")),
        ),
        _ => ("pending", pending_reply(&order.order_id)),
    }
}
