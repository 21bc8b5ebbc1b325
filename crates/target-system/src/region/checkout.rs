//! Checkout and order status.
//!
//! The owner region saves the intent and reserves stock in one transaction, calls the
//! provider with `pay:<order_id>` within the payment deadline, and records the outcome with
//! the transition, the attempt row and (on confirmation) the outbox event in one more
//! transaction. An unknown payment outcome becomes `payment_pending` (202), never a failure.
//! A repeated key replays the order's current outcome; a changed body gets 422.

use std::time::Duration;

use bytes::Bytes;
use rig_http::{Incoming, Method, Reply, Request, StatusCode, json, problem};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use super::api::{CheckoutRequest, parse_checkout, rfc3339};
use super::orders::{self, Actor, Intent, Order, OrderError};
use super::payment::{ChargeOutcome, payment_key};
use super::{Region, RegionId};
use crate::order_state::OrderState;
use crate::provider::with_retry_after;

/// Header a gateway adds when it forwards a request to the owner region.
pub const FORWARDED_FROM: &str = "x-rig-forwarded-from";

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

impl Region {
    pub(super) async fn checkout(&self, req: Request<Incoming>) -> Reply {
        let started = Instant::now();
        let m = &self.inner.metrics;
        m.checkouts_in_flight.inc();
        let (outcome, reply) = self.checkout_inner(req).await;
        m.checkouts_in_flight.dec();
        m.checkouts.with_label_values(&[outcome]).inc();
        m.checkout_duration
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        reply
    }

    async fn checkout_inner(&self, req: Request<Incoming>) -> (&'static str, Reply) {
        let config = &self.inner.config;
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let key = header("idempotency-key");
        let forwarded_from = header(FORWARDED_FROM);
        let body = match rig_http::read_body(req.into_body(), config.checkout.max_body_bytes).await
        {
            Ok(body) => body,
            Err(err) => return ("invalid", invalid("body", &err.to_string())),
        };
        let request = match parse_checkout(key.as_deref(), &body, config) {
            Ok(request) => request,
            Err(err) => return ("invalid", invalid(&err.field, &err.message)),
        };
        if self.owner(&request.order_id) != self.inner.id {
            return self
                .forward_checkout(&request.order_id, body, forwarded_from)
                .await;
        }
        let amount_cents = match request.amount_cents(config) {
            Ok(amount) => amount,
            Err(err) => return ("invalid", invalid(&err.field, &err.message)),
        };
        let guard = match self.claim_inflight(&request.order_id) {
            Claimed::First(guard) => guard,
            Claimed::Duplicate(mut done) => {
                // A concurrent duplicate: wait (bounded) for the first to finish, then replay.
                let wait = config.payment.deadline() + Duration::from_secs(1);
                let _ = tokio::time::timeout(wait, done.changed()).await;
                return self.replay_existing(&request).await;
            }
        };
        if self.is_paused() {
            drop(guard);
            return match orders::load(&self.inner.db, &request.order_id).await {
                Ok(Some(order)) => replay(&order, &request),
                Ok(None) => (
                    "rejected",
                    payment_unavailable("payments are paused by an operator"),
                ),
                Err(err) => ("error", store_error(&err)),
            };
        }
        let entry = forwarded_from
            .as_deref()
            .and_then(RegionId::parse)
            .unwrap_or(self.inner.id);
        let intent = orders::save_intent(
            &self.inner.db,
            &request,
            amount_cents,
            &config.payment.currency,
            self.inner.id.as_str(),
            entry.as_str(),
            false,
        )
        .await;
        let reply = match intent {
            Err(err) => ("error", store_error(&err)),
            Ok(Intent::Exists(order)) => replay(&order, &request),
            Ok(Intent::OutOfStock { sku }) => {
                self.record_transition(OrderState::OrderIntentSaved);
                self.record_transition(OrderState::FailedSafely);
                (
                    "failed_safely",
                    failed_reply(&request.order_id, &format!("out_of_stock:{sku}")),
                )
            }
            Ok(Intent::Authorizing) => {
                self.record_transition(OrderState::OrderIntentSaved);
                self.record_transition(OrderState::InventoryReserved);
                self.record_transition(OrderState::PaymentAuthorizing);
                self.pay(&request, amount_cents).await
            }
        };
        drop(guard);
        reply
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

    fn is_paused(&self) -> bool {
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

    /// Calls the provider once within the deadline and records the outcome.
    async fn pay(&self, request: &CheckoutRequest, amount_cents: i64) -> (&'static str, Reply) {
        let config = &self.inner.config.payment;
        let timeout = config.per_try_timeout().min(config.deadline());
        let key = payment_key(&request.order_id);
        let (outcome, attempt) = self
            .inner
            .payment
            .charge(
                &request.order_id,
                &key,
                amount_cents,
                &config.currency,
                1,
                timeout,
            )
            .await;
        self.record_call(&attempt);
        let (to, reason, charge) = match &outcome {
            ChargeOutcome::Authorized(charge) if charge.amount_cents == amount_cents => (
                OrderState::OrderConfirmed,
                Some(charge.charge_id.clone()),
                Some(charge),
            ),
            ChargeOutcome::Authorized(charge) => (
                OrderState::PaymentPending,
                Some(format!("charge {} amount differs", charge.charge_id)),
                None,
            ),
            ChargeOutcome::Declined(charge) => (
                OrderState::FailedSafely,
                Some(format!("declined:{}", charge.charge_id)),
                None,
            ),
            other => (
                OrderState::PaymentPending,
                Some(pending_reason(other)),
                None,
            ),
        };
        let result = self
            .finish(
                &request.order_id,
                OrderState::PaymentAuthorizing,
                to,
                reason.as_deref(),
                charge.map(|c| (c.charge_id.as_str(), c.amount_cents)),
                Some(&attempt),
                Actor::Checkout,
            )
            .await;
        match result {
            Ok(true) => match to {
                OrderState::OrderConfirmed => ("confirmed", confirmed_reply(&request.order_id)),
                OrderState::FailedSafely => (
                    "failed_safely",
                    failed_reply(&request.order_id, reason.as_deref().unwrap_or("declined")),
                ),
                _ => ("pending", pending_reply(&request.order_id)),
            },
            // Someone else (the repair worker) moved the order first: say what it is now.
            Ok(false) => self.replay_existing(request).await,
            Err(err) => ("error", store_error(&err)),
        }
    }

    /// Moves an order `from -> to` with its side effects, in one transaction: reservations
    /// committed (confirmed) or released (failed), the confirmation event in the outbox, the
    /// provider attempt row. Returns false if the order was no longer in `from`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish(
        &self,
        order_id: &str,
        from: OrderState,
        to: OrderState,
        reason: Option<&str>,
        charge: Option<(&str, i64)>,
        attempt: Option<&orders::AttemptRow>,
        actor: Actor,
    ) -> Result<bool, OrderError> {
        let region = self.inner.id.as_str();
        let mut tx = self.inner.db.pool.begin().await?;
        if let Some(attempt) = attempt {
            orders::insert_attempt(&mut tx, attempt).await?;
        }
        let moved = orders::apply(&mut tx, order_id, from, to, reason, actor, region).await?;
        if !moved {
            // Keep the attempt row: the call happened even though the state had moved on.
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
        self.record_transition(to);
        Ok(true)
    }

    /// Sends a checkout for an order owned by the peer region to the peer.
    async fn forward_checkout(
        &self,
        order_id: &str,
        body: Bytes,
        forwarded_from: Option<String>,
    ) -> (&'static str, Reply) {
        let Some(peer) = self.inner.peer_url.as_deref() else {
            return (
                "error",
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no_owner",
                    "no peer region is configured",
                    None,
                ),
            );
        };
        if forwarded_from.is_some() {
            // The peer thinks we own it and we think it does: refuse rather than loop.
            return (
                "invalid",
                problem(
                    StatusCode::MISDIRECTED_REQUEST,
                    "not_owner",
                    "this region does not own the order and will not forward a forwarded request",
                    None,
                ),
            );
        }
        let timeout = self.inner.config.payment.deadline() + Duration::from_millis(500);
        let result = self
            .inner
            .http
            .send(
                Method::POST,
                &format!("{peer}/v1/checkout"),
                &[
                    ("idempotency-key", order_id),
                    (FORWARDED_FROM, self.inner.id.as_str()),
                ],
                Some(body),
                timeout,
            )
            .await;
        match result {
            Ok(response) => ("forwarded", relay_response(response)),
            Err(err) => (
                "owner_unreachable",
                with_retry_after(
                    problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "owner_unreachable",
                        &format!(
                            "the owner region of this order is unreachable ({err}); retry with the same key"
                        ),
                        None,
                    ),
                    Duration::from_secs(1),
                ),
            ),
        }
    }

    /// `GET /v1/orders/{id}`: the owner's view of the order.
    pub(super) async fn order_status(&self, order_id: &str, req: &Request<Incoming>) -> Reply {
        if self.owner(order_id) != self.inner.id {
            if req.headers().contains_key(FORWARDED_FROM) {
                return problem(
                    StatusCode::MISDIRECTED_REQUEST,
                    "not_owner",
                    "this region does not own the order",
                    None,
                );
            }
            let Some(peer) = self.inner.peer_url.as_deref() else {
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no_owner",
                    "no peer region is configured",
                    None,
                );
            };
            let result = self
                .inner
                .http
                .send(
                    Method::GET,
                    &format!("{peer}/v1/orders/{order_id}"),
                    &[(FORWARDED_FROM, self.inner.id.as_str())],
                    None,
                    self.inner.config.payment.deadline(),
                )
                .await;
            return match result {
                Ok(response) => relay_response(response),
                Err(err) => with_retry_after(
                    problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "owner_unreachable",
                        &format!("the owner region is unreachable ({err})"),
                        None,
                    ),
                    Duration::from_secs(1),
                ),
            };
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

fn pending_reason(outcome: &ChargeOutcome) -> String {
    match outcome {
        ChargeOutcome::Refused { status, .. } => format!("provider_refused:{status}"),
        ChargeOutcome::InFlight => "provider_in_flight".into(),
        ChargeOutcome::KeyVoided => "key_voided".into(),
        ChargeOutcome::Mismatch => "provider_mismatch".into(),
        ChargeOutcome::Unknown(detail) => format!("unknown:{detail}"),
        ChargeOutcome::Authorized(_) | ChargeOutcome::Declined(_) => "payment".into(),
    }
}

/// The answer for an existing order: 422 if the body changed, else its current outcome.
fn replay(order: &Order, request: &CheckoutRequest) -> (&'static str, Reply) {
    if order.fingerprint != request.fingerprint() {
        return (
            "conflict",
            problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different body; use a new order id for a new order",
                Some("Idempotency-Key"),
            ),
        );
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

fn confirmed_reply(order_id: &str) -> Reply {
    json(
        StatusCode::CREATED,
        &json!({"order_id": order_id, "status": "order_confirmed"}),
    )
}

fn pending_reply(order_id: &str) -> Reply {
    json(
        StatusCode::ACCEPTED,
        &json!({
            "order_id": order_id,
            "status": "payment_pending",
            "status_url": format!("/v1/orders/{order_id}"),
        }),
    )
}

fn failed_reply(order_id: &str, reason: &str) -> Reply {
    json(
        StatusCode::OK,
        &json!({"order_id": order_id, "status": "failed_safely", "reason": reason}),
    )
}

fn payment_unavailable(message: &str) -> Reply {
    with_retry_after(
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "payment_unavailable",
            message,
            None,
        ),
        Duration::from_secs(1),
    )
}

fn invalid(field: &str, message: &str) -> Reply {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        message,
        Some(field),
    )
}

fn store_error(err: &OrderError) -> Reply {
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

/// Passes a peer's answer through unchanged (status, body, Retry-After).
fn relay_response(response: rig_http::ClientResponse) -> Reply {
    let mut reply = rig_http::reply::with_type(response.status, "application/json", response.body);
    for name in ["retry-after", "retry-after-ms"] {
        if let Some(value) = response.headers.get(name) {
            reply.headers_mut().insert(name, value.clone());
        }
    }
    reply
}
