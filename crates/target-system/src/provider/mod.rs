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

mod admin;
pub mod api;
mod charge;
pub mod faults;
pub mod ledger;
mod reconcile;
pub mod stripe;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use prometheus::{HistogramVec, IntCounterVec, IntGauge, Registry};
use rig_http::{DropConnection, Incoming, Method, Reply, Request, StatusCode, json, problem};
use serde_json::json;
use tokio::net::TcpListener;

use crate::clock::IdGen;
use crate::config::{ProviderConfig, TargetConfig};
use crate::metrics::{self, metrics_reply};
use evidence::seed::Draws;
use evidence::store::{Db, StoreError};
use evidence::time::now_us;
use faults::{Active, Faults};
use ledger::{LogWriter, RequestLog};

const MAX_BODY_BYTES: usize = 16 * 1024;

tokio::task_local! {
    /// The request being served: who sent it and whether they are still waiting.
    static SERVED: Served;
}

/// One request as its connection sees it.
#[derive(Clone, Debug, Default)]
struct Served {
    /// The caller its listener belongs to (None: the provider's own listener). Told by the
    /// socket, never by the request.
    caller: Option<Arc<str>>,
    /// When the caller went away before the answer (µs; 0: it has not).
    gone_at_us: Arc<AtomicI64>,
    /// The ids the caller sent, if it sent a valid `traceparent`.
    stamp: Option<Arc<evidence::trace::Stamp>>,
}

/// Marks the request abandoned if its handler is dropped before it completes (the
/// connection closed: the caller timed out or broke it).
struct Departure {
    gone_at_us: Arc<AtomicI64>,
    answered: bool,
}

impl Drop for Departure {
    fn drop(&mut self) {
        if !self.answered {
            self.gone_at_us.store(now_us(), Ordering::Relaxed);
        }
    }
}

/// `line` with its request's caller and departure time filled in. The listener's caller,
/// when it has one, is who called; on a shared listener (the Stripe face) the line keeps the
/// caller the request's secret key named.
pub(super) fn attributed(mut line: RequestLog) -> RequestLog {
    let served = served();
    if served.caller.is_some() {
        line.caller = served.caller;
    }
    line.abandoned_at_us = Some(served.gone_at_us.load(Ordering::Relaxed)).filter(|t| *t > 0);
    if let Some(stamp) = served.stamp {
        line.trace_id = Some(stamp.trace_id.clone());
        line.request_id = Some(stamp.request_id.clone());
    }
    line
}

/// The request this task serves (a default one outside a request).
fn served() -> Served {
    SERVED.try_with(Clone::clone).unwrap_or_default()
}

/// Which API a listener speaks.
#[derive(Clone, Copy, Debug)]
enum Face {
    /// The rig's own charge API (DESIGN §4).
    Native,
    /// The Stripe-compatible face ([`stripe`]).
    Stripe,
}

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
    intent_ids: IdGen,
    request_ids: IdGen,
    event_ids: IdGen,
    endpoint_ids: IdGen,
    /// Wakes the Stripe face's webhook worker (started with the face).
    webhooks: tokio::sync::Notify,
    webhooks_started: std::sync::atomic::AtomicBool,
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
        let cleared = ledger::clear_abandoned_claims(&db).await?
            + stripe::store::clear_abandoned(&db).await?;
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
                intent_ids: IdGen::new("pi"),
                request_ids: IdGen::new("req"),
                event_ids: IdGen::new("evt"),
                endpoint_ids: IdGen::new("we"),
                webhooks: tokio::sync::Notify::new(),
                webhooks_started: std::sync::atomic::AtomicBool::new(false),
                log,
                metrics: ProviderMetrics::new(),
            }),
        })
    }

    /// Serves the provider API on `listener` until `shutdown` completes; its requests are
    /// logged without a caller.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        self.serve_for(listener, None, shutdown).await
    }

    /// Serves the provider API on a listener that belongs to one caller (reached only
    /// through that caller's proxy): every request arriving on it is logged as `caller`'s,
    /// whatever the request says. This is how the request log attributes calls to regions.
    pub async fn serve_for(
        &self,
        listener: TcpListener,
        caller: Option<String>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        self.serve_face(listener, caller, Face::Native, shutdown)
            .await
    }

    /// Serves one face of the provider on `listener`.
    async fn serve_face(
        &self,
        listener: TcpListener,
        caller: Option<String>,
        face: Face,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let provider = self.clone();
        let caller: Option<Arc<str>> = caller.map(Into::into);
        let result = rig_http::serve(
            listener,
            move |req| {
                let provider = provider.clone();
                let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
                let stamp = evidence::trace::Stamp::from_headers(
                    header(evidence::trace::TRACEPARENT),
                    header(evidence::trace::REQUEST_ID),
                );
                let served = Served {
                    caller: caller.clone(),
                    gone_at_us: Arc::default(),
                    stamp: stamp.map(Arc::new),
                };
                let departure = Departure {
                    gone_at_us: served.gone_at_us.clone(),
                    answered: false,
                };
                SERVED.scope(served, async move {
                    // Owned by the handler's future: dropped with it if the caller leaves.
                    let mut departure = departure;
                    let reply = match face {
                        Face::Native => provider.handle(req).await,
                        Face::Stripe => provider.stripe(req).await,
                    };
                    departure.answered = true;
                    reply
                })
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

    pub(super) fn active(&self) -> Arc<Active> {
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

    pub(super) fn count(&self, op: &str, outcome: &str, received: tokio::time::Instant) {
        let m = &self.inner.metrics;
        m.requests.with_label_values(&[op, outcome]).inc();
        m.duration
            .with_label_values(&[op])
            .observe(received.elapsed().as_secs_f64());
    }

    pub(super) async fn log(&self, line: RequestLog, started: tokio::time::Instant) {
        let line = attributed(line);
        self.count(line.op, line.outcome, started);
        self.inner.log.write(line).await;
    }

    pub(super) async fn store_error(
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

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish_log(
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
            caller: None,
            abandoned_at_us: None,
            trace_id: None,
            request_id: None,
        };
        self.log(line, started).await;
    }
}
