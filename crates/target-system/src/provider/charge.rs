//! `POST /v1/charges`: claim the key, wait the seeded latency, decide, and commit the charge
//! with the key's answer in one transaction; replays, in-flight duplicates, mismatches and
//! voided keys answer from the key's row.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rig_http::{DropConnection, Incoming, Reply, Request, StatusCode, problem, with_retry_after};

use super::api::{ChargeAnswer, ChargeRequest};
use super::faults::{Active, Admission};
use super::ledger::{self, Claim, RequestLog};
use super::{MAX_BODY_BYTES, Provider};
use evidence::time::now_us;

impl Provider {
    pub(super) async fn charge(&self, req: Request<Incoming>) -> Result<Reply, DropConnection> {
        let started = tokio::time::Instant::now();
        let received_at_us = now_us();
        let key = req
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = rig_http::read_body(req.into_body(), MAX_BODY_BYTES).await;
        let line = |key: Option<String>, status: u16, outcome: &'static str| RequestLog {
            op: "charge",
            idempotency_key: key,
            charge_id: None,
            received_at_us,
            finished_at_us: now_us(),
            http_status: Some(i64::from(status)),
            outcome,
            caller: None,
            abandoned_at_us: None,
            trace_id: None,
            request_id: None,
        };
        let invalid = |message: &str, field: &str| {
            problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                message,
                Some(field),
            )
        };
        let Some(key) = key.filter(|k| !k.is_empty() && k.len() <= 255) else {
            self.log(line(None, 400, "invalid"), started).await;
            return Ok(invalid(
                "send an Idempotency-Key header of 1 to 255 characters",
                "Idempotency-Key",
            ));
        };
        let request = match body
            .map_err(|e| (e.to_string(), "body".to_string()))
            .and_then(|bytes| parse_charge(&bytes))
        {
            Ok(request) => request,
            Err((message, field)) => {
                self.log(line(Some(key), 400, "invalid"), started).await;
                return Ok(invalid(&message, &field));
            }
        };
        let active = self.active();
        let permit = match active.admit() {
            Admission::Admitted(permit) => permit,
            Admission::Outage => {
                self.log(line(Some(key), 503, "outage"), started).await;
                return Ok(with_retry_after(
                    problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "outage",
                        "the provider is down",
                        None,
                    ),
                    Duration::from_secs(1),
                ));
            }
            Admission::RateLimited { retry_after } => {
                self.log(line(Some(key), 429, "rate_limited"), started)
                    .await;
                return Ok(with_retry_after(
                    problem(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        "over the charge rate limit",
                        None,
                    ),
                    retry_after,
                ));
            }
            Admission::OverCapacity => {
                self.log(line(Some(key), 429, "over_capacity"), started)
                    .await;
                return Ok(with_retry_after(
                    problem(
                        StatusCode::TOO_MANY_REQUESTS,
                        "over_capacity",
                        "too many charges in flight",
                        None,
                    ),
                    Duration::from_millis(100),
                ));
            }
        };
        if self.inner.draws.chance(active.error_rate) {
            self.log(line(Some(key), 500, "injected_error"), started)
                .await;
            return Ok(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "provider_error",
                "injected provider error; nothing was charged",
                None,
            ));
        }
        // Processing continues even if the caller goes away, as at a real provider.
        let provider = self.clone();
        let task = tokio::spawn(super::SERVED.scope(super::served(), async move {
            let _permit = permit;
            provider.inner.metrics.in_flight.inc();
            let result = provider
                .process(key, request, active, received_at_us, started)
                .await;
            provider.inner.metrics.in_flight.dec();
            result
        }));
        task.await.unwrap_or_else(|_| {
            Ok(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "provider_error",
                "charge processing failed",
                None,
            ))
        })
    }

    async fn process(
        &self,
        key: String,
        request: ChargeRequest,
        active: Arc<Active>,
        received_at_us: i64,
        started: tokio::time::Instant,
    ) -> Result<Reply, DropConnection> {
        let inner = &self.inner;
        let retention_us = i64::try_from(inner.config.key_retention_seconds)
            .unwrap_or(i64::MAX / 2_000_000)
            * 1_000_000;
        let line = |status: u16, outcome: &'static str, charge_id: Option<String>| RequestLog {
            op: "charge",
            idempotency_key: Some(key.clone()),
            charge_id,
            received_at_us,
            finished_at_us: now_us(),
            http_status: Some(i64::from(status)),
            outcome,
            caller: None,
            abandoned_at_us: None,
            trace_id: None,
            request_id: None,
        };
        let claim = match ledger::claim(
            &inner.db,
            &key,
            &request.fingerprint(),
            now_us(),
            retention_us,
        )
        .await
        {
            Ok(claim) => claim,
            Err(err) => {
                return Ok(self
                    .store_error(line(500, "error", None), &err, started)
                    .await);
            }
        };
        match claim {
            Claim::New => {}
            Claim::Replay { status, body } => {
                self.log(line(status, "replayed", None), started).await;
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                let mut reply =
                    rig_http::reply::with_type(status, "application/json", Bytes::from(body));
                reply.headers_mut().insert(
                    "idempotent-replayed",
                    rig_http::header::HeaderValue::from_static("true"),
                );
                return Ok(reply);
            }
            Claim::InFlight => {
                self.log(line(409, "in_flight", None), started).await;
                return Ok(with_retry_after(
                    problem(
                        StatusCode::CONFLICT,
                        "idempotency_key_in_use",
                        "a request with this key is still being processed; retry later with the same key",
                        Some("Idempotency-Key"),
                    ),
                    Duration::from_millis(100),
                ));
            }
            Claim::Mismatch => {
                self.log(line(422, "mismatch", None), started).await;
                return Ok(problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with different parameters",
                    Some("Idempotency-Key"),
                ));
            }
            Claim::Voided => {
                self.log(line(410, "voided_key", None), started).await;
                return Ok(problem(
                    StatusCode::GONE,
                    "idempotency_key_voided",
                    "this Idempotency-Key was voided; no charge will ever be made with it",
                    Some("Idempotency-Key"),
                ));
            }
        }
        let jitter = inner.draws.up_to(active.latency_jitter_ms);
        tokio::time::sleep(Duration::from_millis(active.latency_ms + jitter)).await;
        let declined = inner
            .config
            .decline_cents
            .is_some_and(|cents| request.amount_cents.rem_euclid(100) == cents);
        let now = now_us();
        let charge = ledger::Charge {
            charge_id: inner.charge_ids.next(),
            idempotency_key: key.clone(),
            order_id: request.order_id.clone(),
            amount_cents: request.amount_cents,
            currency: request.currency.clone(),
            status: if declined { "declined" } else { "authorized" }.to_string(),
            refunded_cents: 0,
            created_at_us: now,
            updated_at_us: now,
        };
        let body = serde_json::to_string(&ChargeAnswer::from(&charge)).unwrap_or_default();
        let drop_after_commit = inner.draws.chance(active.commit_then_drop_rate);
        let outcome = match (drop_after_commit, declined) {
            (true, _) => "committed_dropped",
            (false, true) => "declined",
            (false, false) => "authorized",
        };
        let log = super::attributed(line(200, outcome, Some(charge.charge_id.clone())));
        if let Err(err) = ledger::complete(&inner.db, &charge, 200, &body, &log).await {
            let _ = ledger::release_claim(&inner.db, &key).await;
            return Ok(self
                .store_error(line(500, "error", None), &err, started)
                .await);
        }
        self.count("charge", outcome, started);
        if drop_after_commit {
            return Err(DropConnection);
        }
        Ok(rig_http::reply::with_type(
            StatusCode::OK,
            "application/json",
            Bytes::from(body),
        ))
    }
}

fn parse_charge(bytes: &[u8]) -> Result<ChargeRequest, (String, String)> {
    let request: ChargeRequest = serde_json::from_slice(bytes).map_err(|err| {
        (
            format!("body is not a charge request ({err}); send {{\"order_id\",\"amount_cents\",\"currency\"}}"),
            "body".to_string(),
        )
    })?;
    if request.order_id.is_empty() {
        return Err(("order_id must not be empty".into(), "order_id".into()));
    }
    if request.amount_cents <= 0 {
        return Err((
            format!("amount_cents = {}: must be positive", request.amount_cents),
            "amount_cents".into(),
        ));
    }
    if request.currency.len() != 3 {
        return Err((
            format!("currency = {:?}: use a three-letter code", request.currency),
            "currency".into(),
        ));
    }
    Ok(request)
}
