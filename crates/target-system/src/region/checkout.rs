//! Checkout and order status.
//!
//! The owner region admits a new checkout (or sheds it before writing anything), saves the
//! intent and reserves stock in one transaction, pays within the end-to-end deadline, and
//! records the outcome with the transition, the attempt rows and (on confirmation) the outbox
//! event in one more transaction. An unknown payment outcome becomes `payment_pending` (202),
//! never a failure. A repeated key replays the order's current outcome; a changed body gets
//! 422. In payment-degraded mode (breaker open, or paused by an operator) new payments are
//! parked (202) or rejected (503), per `breaker.degraded_mode`.

use std::time::Duration;

use rig_http::{Incoming, Reply, Request, StatusCode, json, problem};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Region;
use super::admission::{Admission, Decision, Slot};
use super::api::{CheckoutRequest, parse_checkout};
use super::breaker::Permission;
use super::orders::{self, Actor, AttemptRow, Intent, NewOrder, Order, OrderError, Reserve, Then};
use super::pay::{Charge, Paid};
use super::payment::ChargeOutcome;
use crate::config::DegradedMode;
use crate::defects::Defect;
use evidence::RegionId;
use evidence::order_state::OrderState;
use evidence::time::rfc3339;
use rig_http::with_retry_after;

/// Header a gateway adds when it forwards a request to the owner region.
pub const FORWARDED_FROM: &str = "x-rig-forwarded-from";
/// What remains of the end-to-end deadline, in milliseconds, when a request is sent on.
pub const DEADLINE_HEADER: &str = "x-rig-deadline-ms";

/// Removes the order's in-flight entry when the checkout that created it ends, waking waiters.
struct InflightGuard<'a> {
    region: &'a Region,
    order_id: String,
    _done: watch::Sender<()>,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.region.inner.inflight.lock() {
            map.remove(&self.order_id);
        }
    }
}

enum Claimed<'a> {
    First(InflightGuard<'a>),
    Duplicate(watch::Receiver<()>),
}

/// What the request asked, after validation.
pub(super) struct Checkout {
    pub(super) request: CheckoutRequest,
    pub(super) body: bytes::Bytes,
    pub(super) forwarded_from: Option<String>,
    pub(super) deadline: Instant,
    pub(super) arrived: Instant,
}

impl Region {
    pub(super) async fn checkout(&self, req: Request<Incoming>) -> Reply {
        let started = Instant::now();
        let m = &self.inner.metrics;
        m.checkouts_in_flight.inc();
        let (outcome, reply) = self.checkout_inner(req, started).await;
        m.checkouts_in_flight.dec();
        m.checkouts.with_label_values(&[outcome]).inc();
        m.checkout_duration
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        reply
    }

    async fn checkout_inner(
        &self,
        req: Request<Incoming>,
        started: Instant,
    ) -> (&'static str, Reply) {
        let checkout = match self.read_checkout(req, started).await {
            Ok(checkout) => checkout,
            Err(reply) => return ("invalid", reply),
        };
        if self.owner(&checkout.request.order_id) != self.inner.id {
            return self.forward_checkout(&checkout).await;
        }
        self.checkout_as_owner(&checkout).await
    }

    async fn read_checkout(
        &self,
        req: Request<Incoming>,
        started: Instant,
    ) -> Result<Checkout, Reply> {
        let config = &self.inner.config;
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
        Ok(Checkout {
            request,
            body,
            forwarded_from,
            deadline: started + budget,
            arrived: started,
        })
    }

    /// The owner's path: admit, save, pay, record.
    pub(super) async fn checkout_as_owner(&self, checkout: &Checkout) -> (&'static str, Reply) {
        let request = &checkout.request;
        let config = &self.inner.config;
        let amount_cents = match request.amount_cents(config) {
            Ok(amount) => amount,
            Err(err) => return ("invalid", invalid(&err.field, &err.message)),
        };
        let _guard = match self.claim_inflight(&request.order_id) {
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
            .unwrap_or(self.inner.id);
        let permission = if self.is_paused() {
            Permission::Refuse
        } else {
            self.inner.breaker.permission(Instant::now())
        };
        if permission == Permission::Refuse {
            return self.degraded_checkout(request, amount_cents, entry).await;
        }
        let slot = match self.inner.gate.admit(checkout.arrived).await {
            Admission::Admitted(slot) => {
                self.count_admission(Decision::Admitted);
                slot
            }
            Admission::Shed {
                decision,
                retry_after,
            } => {
                // Shedding must stay cheap: no store read. A shed answer says nothing about an
                // earlier attempt with this key; a retry later gets the order's outcome.
                self.count_admission(decision);
                return ("rejected", overloaded(decision, retry_after));
            }
        };
        let new = self.new_order(request, amount_cents, entry, Then::Authorize);
        match orders::save_intent(&self.inner.db, new).await {
            Err(err) => ("error", store_error(&err)),
            Ok(Intent::Exists(order)) => replay(&order, request),
            Ok(Intent::OutOfStock { sku }) => {
                self.record_transitions(&[OrderState::OrderIntentSaved, OrderState::FailedSafely]);
                (
                    "failed_safely",
                    failed_reply(&request.order_id, &format!("out_of_stock:{sku}")),
                )
            }
            Ok(Intent::Parked) => ("pending", pending_reply(&request.order_id)),
            Ok(Intent::Authorizing) => {
                self.record_transitions(&[
                    OrderState::OrderIntentSaved,
                    OrderState::InventoryReserved,
                    OrderState::PaymentAuthorizing,
                ]);
                let charge = Charge {
                    order_id: &request.order_id,
                    amount_cents,
                    first_attempt: 1,
                    probe: permission == Permission::Probe,
                    deadline: checkout.deadline,
                };
                self.pay_and_record(request, charge, slot).await
            }
        }
    }

    pub(super) fn new_order<'a>(
        &'a self,
        request: &'a CheckoutRequest,
        amount_cents: i64,
        entry: RegionId,
        then: Then<'a>,
    ) -> NewOrder<'a> {
        let config = &self.inner.config;
        NewOrder {
            req: request,
            amount_cents,
            currency: &config.payment.currency,
            owner_region: self.owner(&request.order_id).as_str(),
            entry_region: entry.as_str(),
            acting_region: self.inner.id.as_str(),
            reserve: if config.defects.contains(&Defect::Oversell) {
                Reserve::Oversell
            } else {
                Reserve::NoOversell
            },
            then,
        }
    }

    /// Payment-degraded mode: park (save, reserve, 202) or reject (503, nothing written).
    async fn degraded_checkout(
        &self,
        request: &CheckoutRequest,
        amount_cents: i64,
        entry: RegionId,
    ) -> (&'static str, Reply) {
        let why = if self.is_paused() {
            "payments paused by an operator"
        } else {
            "payment provider breaker open"
        };
        match self.inner.config.breaker.degraded_mode {
            DegradedMode::Reject => match orders::load(&self.inner.db, &request.order_id).await {
                Ok(Some(order)) => replay(&order, request),
                Ok(None) => {
                    self.count_admission(Decision::Rejected);
                    ("rejected", payment_unavailable(why))
                }
                Err(err) => ("error", store_error(&err)),
            },
            DegradedMode::Park => {
                let reason = format!("parked: {why}");
                let new = self.new_order(request, amount_cents, entry, Then::Park(&reason));
                match orders::save_intent(&self.inner.db, new).await {
                    Err(err) => ("error", store_error(&err)),
                    Ok(Intent::Exists(order)) => replay(&order, request),
                    Ok(Intent::OutOfStock { sku }) => {
                        self.record_transitions(&[
                            OrderState::OrderIntentSaved,
                            OrderState::FailedSafely,
                        ]);
                        (
                            "failed_safely",
                            failed_reply(&request.order_id, &format!("out_of_stock:{sku}")),
                        )
                    }
                    Ok(_) => {
                        self.count_admission(Decision::Parked);
                        self.record_transitions(&[
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

    fn claim_inflight(&self, order_id: &str) -> Claimed<'_> {
        let mut map = self
            .inner
            .inflight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(done) = map.get(order_id) {
            return Claimed::Duplicate(done.clone());
        }
        let (tx, rx) = watch::channel(());
        map.insert(order_id.to_string(), rx);
        Claimed::First(InflightGuard {
            region: self,
            order_id: order_id.to_string(),
            _done: tx,
        })
    }

    pub(super) fn is_paused(&self) -> bool {
        self.inner.paused.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn replay_existing(&self, request: &CheckoutRequest) -> (&'static str, Reply) {
        match orders::load(&self.inner.db, &request.order_id).await {
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
        let paid = self.pay_with_retries(charge, slot).await;
        let (to, reason, confirmed_charge) = self.judge_payment(&paid, charge.amount_cents);
        let result = self
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

    /// The state a payment leads to, its reason, and the confirmed charge (id, amount).
    pub(super) fn judge_payment(
        &self,
        paid: &Paid,
        amount_cents: i64,
    ) -> (OrderState, String, Option<(String, i64)>) {
        match &paid.outcome {
            ChargeOutcome::Authorized(charge) if charge.amount_cents == amount_cents => (
                OrderState::OrderConfirmed,
                charge.charge_id.clone(),
                Some((charge.charge_id.clone(), charge.amount_cents)),
            ),
            ChargeOutcome::Authorized(charge) => (
                OrderState::PaymentPending,
                format!("charge {} amount differs", charge.charge_id),
                None,
            ),
            ChargeOutcome::Declined(charge) => (
                OrderState::FailedSafely,
                format!("declined:{}", charge.charge_id),
                None,
            ),
            ChargeOutcome::Unknown(detail)
                if self
                    .inner
                    .config
                    .defects
                    .contains(&Defect::ConfirmOnTimeout) =>
            {
                (
                    // Defect: an unknown outcome is treated as paid.
                    OrderState::OrderConfirmed,
                    format!("assumed paid after: {detail}"),
                    None,
                )
            }
            other => {
                let why = match other {
                    ChargeOutcome::Refused { status, .. } => format!("provider_refused:{status}"),
                    ChargeOutcome::InFlight => "provider_in_flight".into(),
                    ChargeOutcome::KeyVoided => "key_voided".into(),
                    ChargeOutcome::Mismatch => "provider_mismatch".into(),
                    ChargeOutcome::Unknown(detail) => format!("unknown:{detail}"),
                    ChargeOutcome::Authorized(_) | ChargeOutcome::Declined(_) => "payment".into(),
                };
                let reason = match paid.stopped {
                    Some(stop) => format!("{why} (stopped: {stop})"),
                    None => why,
                };
                (OrderState::PaymentPending, reason, None)
            }
        }
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
        let region = self.inner.id.as_str();
        let mut tx = self.inner.db.pool.begin().await?;
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
                orders::commit_reservations(&mut tx, order_id).await?;
                let event_id = self.inner.event_ids.next();
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
            OrderState::FailedSafely => orders::release_reservations(&mut tx, order_id).await?,
            _ => {}
        }
        tx.commit().await?;
        self.record_transitions(&[to]);
        Ok(true)
    }

    /// `GET /v1/orders/{id}`: the owner's view of the order (see `forward.rs` for the path
    /// through a gateway).
    pub(super) async fn order_status(&self, order_id: &str, req: &Request<Incoming>) -> Reply {
        if self.owner(order_id) != self.inner.id {
            return self.forward_status(order_id, req).await;
        }
        match orders::load(&self.inner.db, order_id).await {
            Ok(Some(order)) => json(StatusCode::OK, &status_view(&order)),
            Ok(None) => problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such order",
                Some("order_id"),
            ),
            Err(err) => store_error(&err),
        }
    }
}

/// The public view of an order.
pub fn status_view(order: &Order) -> serde_json::Value {
    json!({
        "order_id": order.order_id,
        "status": order.status,
        "reason": order.reason,
        "owner_region": order.owner_region,
        "entry_region": order.entry_region,
        "amount_cents": order.amount_cents,
        "currency": order.currency,
        "version": order.version,
        "updated_at": rfc3339(order.updated_at_us),
        "updated_at_us": order.updated_at_us,
    })
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

pub(super) fn key_reused() -> Reply {
    problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different body; use a new order id for a new order",
        Some("Idempotency-Key"),
    )
}

pub(super) fn confirmed_reply(order_id: &str) -> Reply {
    json(
        StatusCode::CREATED,
        &json!({"order_id": order_id, "status": "order_confirmed"}),
    )
}

pub(super) fn pending_reply(order_id: &str) -> Reply {
    json(
        StatusCode::ACCEPTED,
        &json!({
            "order_id": order_id,
            "status": "payment_pending",
            "status_url": format!("/v1/orders/{order_id}"),
        }),
    )
}

pub(super) fn failed_reply(order_id: &str, reason: &str) -> Reply {
    json(
        StatusCode::OK,
        &json!({"order_id": order_id, "status": "failed_safely", "reason": reason}),
    )
}

fn payment_unavailable(why: &str) -> Reply {
    with_retry_after(
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "payment_unavailable",
            &format!(
                "new payments are not taken right now ({why}); carts and order status stay available"
            ),
            None,
        ),
        Duration::from_secs(1),
    )
}

fn overloaded(decision: Decision, retry_after: Duration) -> Reply {
    with_retry_after(
        problem(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            &format!(
                "checkout shed by admission control ({}); retry later with the same key",
                decision.as_str()
            ),
            None,
        ),
        retry_after,
    )
}

pub(super) fn invalid(field: &str, message: &str) -> Reply {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        message,
        Some(field),
    )
}

pub(super) fn store_error(err: &OrderError) -> Reply {
    tracing::error!(error = %err, "region store error");
    with_retry_after(
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the order store is unavailable; retry with the same key",
            None,
        ),
        Duration::from_secs(1),
    )
}
