//! A gateway's path for orders owned by the peer region, and the forward outbox.
//!
//! The gateway forwards the checkout to the owner with what remains of the deadline. If the
//! owner cannot be reached in time (partition, owner down, no answer), the gateway must not
//! decide the order itself: it durably holds the intent in `forward_outbox`, answers
//! `202 payment_pending`, and the forwarder re-sends it with the same key until the owner
//! answers (the owner's idempotency makes redelivery harmless). Status look-ups go to the
//! owner and fall back to the gateway's honest local evidence.

use std::time::Duration;

use rig_http::{ClientResponse, Incoming, Method, Reply, Request, StatusCode, json, problem};
use serde_json::json;
use sqlx::Row;
use tokio::sync::watch;
use tokio::time::Instant;

use std::sync::Arc;

use rig_http::HttpClient;

use super::checkout::{CheckoutCall, Checkouts, DEADLINE_HEADER, FORWARDED_FROM};
use super::context::Context;
use super::replies::{key_reused, pending_reply, store_error};
use crate::clock::now_us;
use crate::defects::Defect;
use evidence::time::rfc3339;
use rig_http::with_retry_after;

/// Time kept back from the deadline for the answer's way back.
const RETURN_MARGIN: Duration = Duration::from_millis(100);

/// The gateway path: checkouts and status look-ups for orders the peer owns, and the
/// forward outbox of intents held while the owner was unreachable.
#[derive(Debug)]
pub(super) struct Forwarding {
    ctx: Arc<Context>,
    http: HttpClient,
    /// The owner path, for the `local-confirm-in-partition` defect only.
    checkouts: Arc<Checkouts>,
}

impl Forwarding {
    pub(super) fn new(ctx: Arc<Context>, http: HttpClient, checkouts: Arc<Checkouts>) -> Self {
        Self {
            ctx,
            http,
            checkouts,
        }
    }

    /// A checkout this region does not own: to the owner, or held for it.
    pub(super) async fn forward(&self, checkout: &CheckoutCall) -> (&'static str, Reply) {
        let Some(peer) = self.ctx.peer_url.clone() else {
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
        if checkout.forwarded_from.is_some() {
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
        let order_id = &checkout.request.order_id;
        let remaining = checkout.deadline.saturating_duration_since(Instant::now());
        let result = self
            .send_to_owner(&peer, order_id, checkout.body.clone(), remaining)
            .await;
        match result {
            Ok(response) => {
                if is_definitive(&response) {
                    let _ = self.mark_delivered(order_id, &response).await;
                }
                self.ctx
                    .metrics
                    .forwards
                    .with_label_values(&["forwarded"])
                    .inc();
                ("forwarded", relay_response(response))
            }
            Err(err) => {
                if self.ctx.has(Defect::LocalConfirmInPartition) {
                    // Defect: the gateway decides an order it does not own, with a fresh deadline.
                    let local = CheckoutCall {
                        request: checkout.request.clone(),
                        body: checkout.body.clone(),
                        forwarded_from: None,
                        deadline: Instant::now() + self.ctx.config.payment.deadline(),
                        arrived: Instant::now(),
                    };
                    return self.checkouts.as_owner(&local).await;
                }
                tracing::debug!(error = %err, order_id, "owner unreachable; holding the intent");
                match self.hold(checkout).await {
                    Ok(true) => {
                        self.ctx.metrics.forwards.with_label_values(&["held"]).inc();
                        ("held", pending_reply(order_id))
                    }
                    Ok(false) => ("conflict", key_reused()),
                    Err(err) => ("error", store_error(&super::orders::OrderError::from(err))),
                }
            }
        }
    }

    async fn send_to_owner(
        &self,
        peer: &str,
        order_id: &str,
        body: bytes::Bytes,
        remaining: Duration,
    ) -> Result<ClientResponse, rig_http::ClientError> {
        let left_ms = remaining
            .saturating_sub(RETURN_MARGIN)
            .as_millis()
            .to_string();
        let trace = crate::trace::outbound();
        self.http
            .send(
                Method::POST,
                &format!("{peer}/v1/checkout"),
                &crate::trace::with(
                    &[
                        ("idempotency-key", order_id),
                        (FORWARDED_FROM, self.ctx.id.as_str()),
                        (DEADLINE_HEADER, &left_ms),
                    ],
                    &trace,
                ),
                Some(body),
                remaining
                    .saturating_sub(Duration::from_millis(20))
                    .max(Duration::from_millis(1)),
            )
            .await
    }

    /// Keeps the intent for later delivery. False if a different intent with this key is held.
    async fn hold(&self, checkout: &CheckoutCall) -> Result<bool, sqlx::Error> {
        let request = &checkout.request;
        let fingerprint = request.fingerprint();
        let (trace_id, request_id) = crate::trace::ids();
        let inserted = sqlx::query(
            "INSERT INTO forward_outbox (order_id, owner_region, fingerprint, body, state, created_at_us, \
             trace_id, request_id) VALUES ($1, $2, $3, $4, 'held', $5, $6, $7) ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(&request.order_id)
        .bind(self.ctx.owner(&request.order_id).as_str())
        .bind(&fingerprint)
        .bind(String::from_utf8_lossy(&checkout.body).into_owned())
        .bind(now_us())
        .bind(trace_id)
        .bind(request_id)
        .execute(&self.ctx.db.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(true);
        }
        let held: String =
            sqlx::query("SELECT fingerprint FROM forward_outbox WHERE order_id = $1")
                .bind(&request.order_id)
                .fetch_one(&self.ctx.db.pool)
                .await?
                .try_get("fingerprint")?;
        Ok(held == fingerprint)
    }

    async fn mark_delivered(
        &self,
        order_id: &str,
        response: &ClientResponse,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE forward_outbox SET state = 'delivered', delivered_at_us = $2, answer_status = $3, \
             answer_body = $4, attempts = attempts + 1, last_attempt_at_us = $2 WHERE order_id = $1 AND state = 'held'",
        )
        .bind(order_id)
        .bind(now_us())
        .bind(i64::from(response.status.as_u16()))
        .bind(String::from_utf8_lossy(&response.body).into_owned())
        .execute(&self.ctx.db.pool)
        .await?;
        Ok(())
    }

    /// One forwarder pass: re-sends held intents, oldest first; stops at the first one the
    /// owner does not answer (it is still unreachable). Returns how many were delivered.
    pub(super) async fn once(&self) -> Result<usize, sqlx::Error> {
        let Some(peer) = self.ctx.peer_url.clone() else {
            return Ok(0);
        };
        let rows = sqlx::query(
            "SELECT order_id, body, trace_id, request_id FROM forward_outbox WHERE state = 'held' \
             ORDER BY created_at_us LIMIT $1",
        )
        .bind(i64::from(self.ctx.config.forward.batch))
        .fetch_all(&self.ctx.db.pool)
        .await?;
        let mut delivered = 0;
        for row in rows {
            let order_id: String = row.try_get("order_id")?;
            let body: String = row.try_get("body")?;
            // The held intent is sent on in the trace of the request that left it.
            let stamp = crate::trace::stored(row.try_get("trace_id")?, row.try_get("request_id")?);
            let result = crate::trace::scope(
                stamp,
                self.send_to_owner(
                    &peer,
                    &order_id,
                    bytes::Bytes::from(body),
                    self.ctx.config.payment.deadline(),
                ),
            )
            .await;
            match result {
                Ok(response) if is_definitive(&response) => {
                    self.mark_delivered(&order_id, &response).await?;
                    self.ctx
                        .metrics
                        .forwards
                        .with_label_values(&["delivered"])
                        .inc();
                    delivered += 1;
                }
                other => {
                    sqlx::query(
                        "UPDATE forward_outbox SET attempts = attempts + 1, last_attempt_at_us = $2 WHERE order_id = $1",
                    )
                    .bind(&order_id)
                    .bind(now_us())
                    .execute(&self.ctx.db.pool)
                    .await?;
                    if other.is_err() {
                        break;
                    }
                }
            }
        }
        Ok(delivered)
    }

    /// `GET /v1/orders/{id}` for an order the peer owns.
    pub(super) async fn status(&self, order_id: &str, req: &Request<Incoming>) -> Reply {
        if req.headers().contains_key(FORWARDED_FROM) {
            return problem(
                StatusCode::MISDIRECTED_REQUEST,
                "not_owner",
                "this region does not own the order",
                None,
            );
        }
        let Some(peer) = self.ctx.peer_url.as_deref() else {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no_owner",
                "no peer region is configured",
                None,
            );
        };
        let uri = format!("{peer}/v1/orders/{order_id}");
        let trace = crate::trace::outbound();
        let headers = crate::trace::with(&[(FORWARDED_FROM, self.ctx.id.as_str())], &trace);
        let timeout = std::time::Duration::from_millis(self.ctx.config.forward.status_timeout_ms);
        let ask_owner = || self.http.send(Method::GET, &uri, &headers, None, timeout);
        let result = ask_owner().await;
        let owner_has_it = match &result {
            Ok(response) => response.status != StatusCode::NOT_FOUND,
            Err(_) => false,
        };
        if owner_has_it && let Ok(response) = result {
            return relay_response(response);
        }
        match self.held_view(order_id, result.is_err()).await {
            Ok(Some(view)) => json(StatusCode::OK, &view),
            Ok(None) => match result {
                // Delivered between the owner's answer and the look-up here: the owner has
                // it now, so ask again rather than say an order the customer saw is gone.
                Ok(_) if self.delivered(order_id).await.unwrap_or(false) => {
                    match ask_owner().await {
                        Ok(response) => relay_response(response),
                        Err(err) => owner_unreachable(&err),
                    }
                }
                Ok(response) => relay_response(response),
                Err(err) => owner_unreachable(&err),
            },
            Err(err) => store_error(&super::orders::OrderError::from(err)),
        }
    }

    /// Whether this gateway delivered an intent for `order_id` to its owner.
    async fn delivered(&self, order_id: &str) -> Result<bool, sqlx::Error> {
        Ok(
            sqlx::query("SELECT 1 FROM forward_outbox WHERE order_id = $1 AND state = 'delivered'")
                .bind(order_id)
                .fetch_optional(&self.ctx.db.pool)
                .await?
                .is_some(),
        )
    }

    /// What this gateway knows of an intent it holds for the owner.
    async fn held_view(
        &self,
        order_id: &str,
        owner_unreachable: bool,
    ) -> Result<Option<serde_json::Value>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT owner_region, state, created_at_us, attempts FROM forward_outbox WHERE order_id = $1 AND state = 'held'",
        )
        .bind(order_id)
        .fetch_optional(&self.ctx.db.pool)
        .await?;
        Ok(row.map(|row| {
            let owner: String = row.try_get("owner_region").unwrap_or_default();
            let since: i64 = row.try_get("created_at_us").unwrap_or_default();
            let attempts: i64 = row.try_get("attempts").unwrap_or_default();
            let why = if owner_unreachable { "is unreachable" } else { "has not received it yet" };
            json!({
                "order_id": order_id,
                "status": "payment_pending",
                "owner_region": owner,
                "entry_region": self.ctx.id,
                "held_by": self.ctx.id,
                "held_since": rfc3339(since),
                "evidence": format!(
                    "region {} holds this intent for delivery to owner region {owner}, which {why} ({attempts} re-sends so far); it will not decide the order itself",
                    self.ctx.id
                ),
            })
        }))
    }
}

/// `503 owner_unreachable`: the owner did not answer and this region holds nothing.
fn owner_unreachable(err: &rig_http::ClientError) -> Reply {
    with_retry_after(
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "owner_unreachable",
            &format!(
                "the owner region is unreachable ({err}) and this region holds no record of the order"
            ),
            None,
        ),
        Duration::from_secs(1),
    )
}

/// The owner has decided something about the request (anything but shedding or failure).
fn is_definitive(response: &ClientResponse) -> bool {
    !(response.status == StatusCode::TOO_MANY_REQUESTS || response.status.is_server_error())
}

/// Passes a peer's answer through unchanged (status, body, Retry-After).
pub(super) fn relay_response(response: ClientResponse) -> Reply {
    let mut reply = rig_http::reply::with_type(response.status, "application/json", response.body);
    for name in ["retry-after", "retry-after-ms"] {
        if let Some(value) = response.headers.get(name) {
            reply.headers_mut().insert(name, value.clone());
        }
    }
    reply
}

/// Re-sends held intents every `forward.retry_interval_ms` until `stop`.
pub(super) async fn run(forwarding: Arc<Forwarding>, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_millis(forwarding.ctx.config.forward.retry_interval_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if let Err(err) = forwarding.once().await {
            tracing::warn!(error = %err, region = %forwarding.ctx.id, "forward outbox pass failed");
        }
    }
}
