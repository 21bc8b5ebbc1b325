//! The simulated payment provider: an idempotent charge API with its own ledger, seeded
//! latency, capacity limits and fault controls (DESIGN §4, provider contract).
//!
//! - `POST /v1/charges` (`Idempotency-Key`, `{"order_id","amount_cents","currency"}`) →
//!   `200 {"charge_id","status":"authorized"|"declined",...}`; the same key replays the first
//!   answer; same key + different parameters → `422`; same key while the first is in flight →
//!   `409`; voided key → `410`; over capacity → `429` + `Retry-After`; outage → `503`.
//! - `GET /v1/charges?idempotency_key=K` → `{"idempotency_key","state","charge"}` or `404`.
//! - `POST /v1/charges/{id}/refund` → the charge, refunded in full (idempotent).
//! - `POST /v1/charges/void?idempotency_key=K` → tombstone: later charges with K are refused
//!   and an authorized charge behind K is voided.
//! - `GET|POST|DELETE /admin/faults` ([`faults`]), `GET /metrics`, `/healthz`, `/readyz`.
//!
//! Declines are deterministic: an amount whose cents part equals `provider.decline_cents`
//! (51 by default) is declined. A charge is processed on its own task, so a caller that gives
//! up (timeout, dropped connection) does not stop it: like a real provider, it may still commit.
//!
//! Request-log outcomes: `authorized`, `declined`, `replayed`, `in_flight`, `mismatch`,
//! `voided_key`, `rate_limited`, `over_capacity`, `outage`, `injected_error`,
//! `committed_dropped`, `invalid`, `found`, `not_found`, `refunded`, `not_refundable`,
//! `voided`, `error`.

pub mod faults;
pub mod ledger;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use prometheus::{HistogramVec, IntCounterVec, IntGauge, Registry};
use rig_http::{DropConnection, Incoming, Method, Reply, Request, StatusCode, json, problem};
use serde_json::json;
use tokio::net::TcpListener;

use crate::clock::{Draws, IdGen, now_us};
use crate::config::{ProviderConfig, TargetConfig};
use crate::metrics;
use crate::store::{Db, StoreError};
use faults::{Active, Admission, Faults};
use ledger::{ChargeRequest, Claim, LogWriter, RequestLog};

const MAX_BODY_BYTES: usize = 16 * 1024;

/// A running provider's state; clone it freely (all clones share one provider).
#[derive(Clone, Debug)]
pub struct Provider {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    config: ProviderConfig,
    active: RwLock<Arc<Active>>,
    draws: Draws,
    charge_ids: IdGen,
    refund_ids: IdGen,
    log: LogWriter,
    metrics: ProviderMetrics,
}

#[derive(Debug)]
struct ProviderMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
}

impl ProviderMetrics {
    fn new() -> Self {
        let registry = metrics::registry(&[]);
        Self {
            requests: metrics::counter_vec(
                &registry,
                "rig_provider_requests_total",
                "Requests answered by the simulated payment provider, by operation and outcome.",
                &["op", "outcome"],
            ),
            duration: metrics::histogram_vec(
                &registry,
                "rig_provider_request_duration_seconds",
                "Time from receiving a provider request to answering it.",
                &["op"],
            ),
            in_flight: metrics::int_gauge(
                &registry,
                "rig_provider_charges_in_flight",
                "Charges being processed right now.",
            ),
            registry,
        }
    }
}

impl Provider {
    /// The provider's metrics registry (for an exporter that serves several components).
    pub fn registry(&self) -> &Registry {
        &self.inner.metrics.registry
    }

    /// Opens the provider on its store: clears claims a crash left behind and records the
    /// effective parameters. The request-log writer runs until [`Provider::flush`]'s last caller.
    pub async fn open(config: &TargetConfig, db: Db) -> Result<Self, StoreError> {
        let cleared = ledger::clear_abandoned_claims(&db).await?;
        if cleared > 0 {
            tracing::warn!(
                cleared,
                "provider cleared idempotency claims left by a crash"
            );
        }
        let now = now_us();
        let params = serde_json::to_string(&config.provider).unwrap_or_default();
        ledger::set_meta(&db, "provider_config", &params, now).await?;
        ledger::set_meta(&db, "seed", &config.seed.to_string(), now).await?;
        let (log, _task) = LogWriter::spawn(db.clone());
        let provider_config = config.provider.clone();
        let active = Active::new(&provider_config, Faults::default());
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                active: RwLock::new(Arc::new(active)),
                config: provider_config,
                // Its own stream, so region and provider draws never correlate.
                draws: Draws::new(config.seed ^ 0x5052_4f56_4944_4552),
                charge_ids: IdGen::new("ch"),
                refund_ids: IdGen::new("re"),
                log,
                metrics: ProviderMetrics::new(),
            }),
        })
    }

    /// Serves the provider API on `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let provider = self.clone();
        let result = rig_http::serve(
            listener,
            move |req| {
                let provider = provider.clone();
                async move { provider.handle(req).await }
            },
            shutdown,
        )
        .await;
        self.flush().await;
        result
    }

    /// Waits until every request-log line written so far is durable.
    pub async fn flush(&self) {
        self.inner.log.flush().await;
    }

    /// The store behind this provider (the ledger is the ground truth for tests).
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Replaces the active fault set.
    pub async fn set_faults(&self, faults: Faults) -> Result<(), sqlx::Error> {
        let json = serde_json::to_string(&faults).unwrap_or_default();
        ledger::record_faults(&self.inner.db, now_us(), &json).await?;
        let active = Arc::new(Active::new(&self.inner.config, faults));
        *self.inner.active.write().unwrap_or_else(|p| p.into_inner()) = active;
        Ok(())
    }

    /// The active fault set.
    pub fn faults(&self) -> Faults {
        self.active().faults.clone()
    }

    fn active(&self) -> Arc<Active> {
        self.inner
            .active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn handle(&self, req: Request<Incoming>) -> Result<Reply, DropConnection> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(str::to_string);
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let key_param = || rig_http::query_param(query.as_deref(), "idempotency_key");
        match (&method, segments.as_slice()) {
            (&Method::POST, ["v1", "charges"]) => self.charge(req).await,
            (&Method::GET, ["v1", "charges"]) => Ok(self.lookup(key_param()).await),
            (&Method::POST, ["v1", "charges", "void"]) => Ok(self.void(key_param()).await),
            (&Method::POST, ["v1", "charges", id, "refund"]) => Ok(self.refund(id).await),
            (&Method::GET, ["admin", "faults"]) => Ok(json(StatusCode::OK, &self.faults())),
            (&Method::POST, ["admin", "faults"]) => Ok(self.post_faults(req).await),
            (&Method::DELETE, ["admin", "faults"]) => Ok(self.delete_faults().await),
            (&Method::GET, ["metrics"]) => Ok(metrics_reply(&self.inner.metrics.registry)),
            (&Method::GET, ["healthz"]) => Ok(json(StatusCode::OK, &json!({"status": "ok"}))),
            (&Method::GET, ["readyz"]) => Ok(self.ready().await),
            _ => Ok(problem(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no route for {method} {path}"),
                None,
            )),
        }
    }

    async fn ready(&self) -> Reply {
        match sqlx::query("SELECT 1").execute(&self.inner.db.pool).await {
            Ok(_) => json(StatusCode::OK, &json!({"status": "ready"})),
            Err(err) => problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                &err.to_string(),
                None,
            ),
        }
    }

    fn count(&self, op: &str, outcome: &str, received: tokio::time::Instant) {
        let m = &self.inner.metrics;
        m.requests.with_label_values(&[op, outcome]).inc();
        m.duration
            .with_label_values(&[op])
            .observe(received.elapsed().as_secs_f64());
    }

    async fn log(&self, line: RequestLog, started: tokio::time::Instant) {
        self.count(line.op, line.outcome, started);
        self.inner.log.write(line).await;
    }

    async fn charge(&self, req: Request<Incoming>) -> Result<Reply, DropConnection> {
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
        let task = tokio::spawn(async move {
            let _permit = permit;
            provider.inner.metrics.in_flight.inc();
            let result = provider
                .process(key, request, active, received_at_us, started)
                .await;
            provider.inner.metrics.in_flight.dec();
            result
        });
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
        let body = serde_json::to_string(&charge).unwrap_or_default();
        let drop_after_commit = inner.draws.chance(active.commit_then_drop_rate);
        let outcome = match (drop_after_commit, declined) {
            (true, _) => "committed_dropped",
            (false, true) => "declined",
            (false, false) => "authorized",
        };
        let log = line(200, outcome, Some(charge.charge_id.clone()));
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

    async fn store_error(
        &self,
        line: RequestLog,
        err: &sqlx::Error,
        started: tokio::time::Instant,
    ) -> Reply {
        tracing::error!(error = %err, "provider store error");
        self.log(line, started).await;
        problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            "the provider's ledger is unavailable",
            None,
        )
    }

    async fn lookup(&self, key: Option<String>) -> Reply {
        let started = tokio::time::Instant::now();
        let received_at_us = now_us();
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "give ?idempotency_key=K",
                Some("idempotency_key"),
            );
        };
        let retention_us = i64::try_from(self.inner.config.key_retention_seconds)
            .unwrap_or(i64::MAX / 2_000_000)
            * 1_000_000;
        let result = ledger::lookup(&self.inner.db, &key, received_at_us - retention_us).await;
        let (reply, outcome) = match result {
            Ok(Some(view)) => (json(StatusCode::OK, &view), "found"),
            Ok(None) => (
                problem(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no request with this idempotency key",
                    Some("idempotency_key"),
                ),
                "not_found",
            ),
            Err(err) => {
                tracing::error!(error = %err, "provider lookup failed");
                (
                    problem(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "store_error",
                        "the provider's ledger is unavailable",
                        None,
                    ),
                    "error",
                )
            }
        };
        self.finish_log(
            "lookup",
            Some(key),
            None,
            received_at_us,
            &reply,
            outcome,
            started,
        )
        .await;
        reply
    }

    async fn void(&self, key: Option<String>) -> Reply {
        let started = tokio::time::Instant::now();
        let received_at_us = now_us();
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "give ?idempotency_key=K",
                Some("idempotency_key"),
            );
        };
        let (reply, outcome) = match ledger::void(&self.inner.db, &key, received_at_us).await {
            Ok(ledger::Void::Voided(view)) => (json(StatusCode::OK, &view), "voided"),
            Ok(ledger::Void::InFlight) => (
                with_retry_after(
                    problem(
                        StatusCode::CONFLICT,
                        "idempotency_key_in_use",
                        "a charge with this key is being processed; void it after it finishes",
                        Some("idempotency_key"),
                    ),
                    Duration::from_millis(100),
                ),
                "in_flight",
            ),
            Err(err) => {
                tracing::error!(error = %err, "provider void failed");
                (
                    problem(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "store_error",
                        "the provider's ledger is unavailable",
                        None,
                    ),
                    "error",
                )
            }
        };
        self.finish_log(
            "void",
            Some(key),
            None,
            received_at_us,
            &reply,
            outcome,
            started,
        )
        .await;
        reply
    }

    async fn refund(&self, charge_id: &str) -> Reply {
        let started = tokio::time::Instant::now();
        let received_at_us = now_us();
        let refund_id = self.inner.refund_ids.next();
        let (reply, outcome) =
            match ledger::refund(&self.inner.db, charge_id, &refund_id, received_at_us).await {
                Ok(ledger::Refund::Done(charge)) => (json(StatusCode::OK, &charge), "refunded"),
                Ok(ledger::Refund::NotFound) => (
                    problem(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        "no such charge",
                        Some("charge_id"),
                    ),
                    "not_found",
                ),
                Ok(ledger::Refund::NotRefundable(charge)) => (
                    problem(
                        StatusCode::CONFLICT,
                        "not_refundable",
                        &format!(
                            "charge is {}; only authorized charges can be refunded",
                            charge.status
                        ),
                        Some("charge_id"),
                    ),
                    "not_refundable",
                ),
                Err(err) => {
                    tracing::error!(error = %err, "provider refund failed");
                    (
                        problem(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "store_error",
                            "the provider's ledger is unavailable",
                            None,
                        ),
                        "error",
                    )
                }
            };
        self.finish_log(
            "refund",
            None,
            Some(charge_id.to_string()),
            received_at_us,
            &reply,
            outcome,
            started,
        )
        .await;
        reply
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_log(
        &self,
        op: &'static str,
        idempotency_key: Option<String>,
        charge_id: Option<String>,
        received_at_us: i64,
        reply: &Reply,
        outcome: &'static str,
        started: tokio::time::Instant,
    ) {
        let line = RequestLog {
            op,
            idempotency_key,
            charge_id,
            received_at_us,
            finished_at_us: now_us(),
            http_status: Some(i64::from(reply.status().as_u16())),
            outcome,
        };
        self.log(line, started).await;
    }

    async fn post_faults(&self, req: Request<Incoming>) -> Reply {
        let bytes = match rig_http::read_body(req.into_body(), MAX_BODY_BYTES).await {
            Ok(bytes) => bytes,
            Err(err) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &err.to_string(),
                    Some("body"),
                );
            }
        };
        let faults: Faults = match serde_json::from_slice(&bytes) {
            Ok(faults) => faults,
            Err(err) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &format!(
                        "{err}; fields: rate_limit_per_sec, max_concurrency, latency_ms, error_rate, commit_then_drop_rate, outage"
                    ),
                    Some("body"),
                );
            }
        };
        if let Err((field, message)) = faults.validate() {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &message,
                Some(&field),
            );
        }
        match self.set_faults(faults).await {
            Ok(()) => json(StatusCode::OK, &self.faults()),
            Err(err) => problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                &err.to_string(),
                None,
            ),
        }
    }

    async fn delete_faults(&self) -> Reply {
        match self.set_faults(Faults::default()).await {
            Ok(()) => json(StatusCode::OK, &self.faults()),
            Err(err) => problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                &err.to_string(),
                None,
            ),
        }
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

/// Adds `Retry-After` (whole seconds, at least 1, as HTTP requires) and `Retry-After-Ms`
/// (the precise wait) to a reply.
pub fn with_retry_after(mut reply: Reply, wait: Duration) -> Reply {
    let millis = wait.as_millis().max(1);
    let seconds = millis.div_ceil(1000).max(1);
    let headers = reply.headers_mut();
    if let Ok(value) = seconds.to_string().parse() {
        headers.insert(rig_http::header::RETRY_AFTER, value);
    }
    if let Ok(value) = millis.to_string().parse() {
        headers.insert("retry-after-ms", value);
    }
    reply
}

/// `/metrics` in Prometheus text format.
pub fn metrics_reply(registry: &Registry) -> Reply {
    let (_content_type, body) = metrics::render(registry);
    rig_http::reply::with_type(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        Bytes::from(body),
    )
}
