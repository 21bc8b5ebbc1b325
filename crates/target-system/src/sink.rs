//! The event sink: the rig's own consumer of confirmation events (DESIGN §4). A region's
//! outbox relay delivers each event to it over HTTP (through the proxies `a_to_sink` /
//! `b_to_sink` in a run); it records every delivery durably before answering, so its log is
//! a witness the system under test cannot write.
//!
//! - `POST /v1/events` `{"event_id","order_id","type","version"}` (other fields are ignored)
//!   → `200 {"event_id","result":"accepted"|"duplicate"}`: the first delivery of an event id
//!   is accepted, a redelivery is answered the same way a deduplicating consumer would;
//!   `400` for a body without those fields; `500` injected error; `503` outage.
//! - `GET|POST|DELETE /admin/faults`: `{"latency_ms","error_rate","outage"}` (the provider's
//!   fault JSON; its other fields are refused here), so a slow or failing sink backs the
//!   relay up.
//! - `GET /metrics`, `/healthz`, `/readyz`.
//!
//! Each listener belongs to one caller ([`Sink::serve_for`]): the log's `caller` is the
//! listener's, never something the caller sends.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus::{IntCounterVec, Registry};
use rig_http::{DropConnection, Incoming, Method, Reply, Request, StatusCode, json, problem};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

use crate::metrics::{self, metrics_reply};
use crate::provider::faults::Faults;
use evidence::seed::Draws;
use evidence::store::Db;
use evidence::time::now_us;

const MAX_BODY_BYTES: usize = 16 * 1024;

/// The fields of the provider's fault JSON the sink acts on.
const SINK_FAULTS: &str = "latency_ms, error_rate, outage";

/// A running sink; clones share it.
#[derive(Clone, Debug)]
pub struct Sink {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    faults: RwLock<Faults>,
    draws: Draws,
    registry: Registry,
    deliveries: IntCounterVec,
    /// One delivery is recorded at a time, so "accepted before?" and the insert agree.
    recording: tokio::sync::Mutex<()>,
}

/// One delivery as posted (the relay may send more fields; they are ignored).
#[derive(Debug, Deserialize)]
struct Posted {
    event_id: String,
    order_id: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    version: Option<i64>,
}

/// One line of the delivery log.
struct Line<'a> {
    posted: Option<&'a Posted>,
    caller: Option<&'a str>,
    received_at_us: i64,
    status: u16,
    outcome: &'static str,
    /// The ids the relay sent (`traceparent`, `x-request-id`), if it sent a valid trace.
    stamp: Option<&'a evidence::trace::Stamp>,
}

impl Sink {
    /// A sink over its store; `seed` drives its injected errors.
    pub fn open(db: Db, seed: u64) -> Self {
        let registry = metrics::registry(&[]);
        let deliveries = metrics::counter_vec(
            &registry,
            "rig_sink_deliveries_total",
            "Event deliveries the rig's event sink answered, by outcome.",
            &["outcome"],
        );
        Self {
            inner: Arc::new(Inner {
                db,
                faults: RwLock::new(Faults::default()),
                draws: Draws::new(seed ^ 0x5349_4e4b),
                registry,
                deliveries,
                recording: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The sink's metrics registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The store behind the sink.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Serves the sink on a listener that belongs to `caller` (None: unattributed) until
    /// `shutdown` completes.
    pub async fn serve_for(
        &self,
        listener: TcpListener,
        caller: Option<String>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let sink = self.clone();
        let caller: Option<Arc<str>> = caller.map(Into::into);
        rig_http::serve(
            listener,
            move |req| {
                let sink = sink.clone();
                let caller = caller.clone();
                async move { sink.handle(req, caller.as_deref()).await }
            },
            shutdown,
        )
        .await
    }

    /// The active fault set.
    pub fn faults(&self) -> Faults {
        self.inner
            .faults
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the active fault set (recorded in `sink_fault_changes`). Only latency,
    /// errors and outage apply to a sink; other fields are refused naming the field.
    pub async fn set_faults(&self, faults: Faults) -> Result<(), (StatusCode, String, String)> {
        if let Err((field, message)) = faults.validate() {
            return Err((StatusCode::BAD_REQUEST, field, message));
        }
        let unsupported = [
            ("rate_limit_per_sec", faults.rate_limit_per_sec.is_some()),
            ("max_concurrency", faults.max_concurrency.is_some()),
            (
                "commit_then_drop_rate",
                faults.commit_then_drop_rate.is_some(),
            ),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err((
                StatusCode::BAD_REQUEST,
                field.to_string(),
                format!("{field} is not a sink fault; the sink takes {SINK_FAULTS}"),
            ));
        }
        let text = serde_json::to_string(&faults).unwrap_or_default();
        sqlx::query("INSERT INTO sink_fault_changes (at_us, faults_json) VALUES ($1, $2)")
            .bind(now_us())
            .bind(text)
            .execute(&self.inner.db.pool)
            .await
            .map_err(|err| {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store".to_string(),
                    err.to_string(),
                )
            })?;
        *self.inner.faults.write().unwrap_or_else(|p| p.into_inner()) = faults;
        Ok(())
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        caller: Option<&str>,
    ) -> Result<Reply, DropConnection> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        Ok(match (&method, segments.as_slice()) {
            (&Method::POST, ["v1", "events"]) => self.deliver(req, caller).await,
            (&Method::GET, ["admin", "faults"]) => json(StatusCode::OK, &self.faults()),
            (&Method::POST, ["admin", "faults"]) => self.post_faults(req).await,
            (&Method::DELETE, ["admin", "faults"]) => {
                self.reply_faults(self.set_faults(Faults::default()).await)
            }
            (&Method::GET, ["metrics"]) => metrics_reply(&self.inner.registry),
            (&Method::GET, ["healthz"]) => json(StatusCode::OK, &json!({"status": "ok"})),
            (&Method::GET, ["readyz"]) => {
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
            _ => problem(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no route for {method} {path}"),
                None,
            ),
        })
    }

    async fn post_faults(&self, req: Request<Incoming>) -> Reply {
        let parsed = match rig_http::read_body(req.into_body(), MAX_BODY_BYTES).await {
            Ok(bytes) => serde_json::from_slice::<Faults>(&bytes).map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        match parsed {
            Ok(faults) => self.reply_faults(self.set_faults(faults).await),
            Err(message) => problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("{message}; the sink takes {SINK_FAULTS}"),
                Some("body"),
            ),
        }
    }

    fn reply_faults(&self, result: Result<(), (StatusCode, String, String)>) -> Reply {
        match result {
            Ok(()) => json(StatusCode::OK, &self.faults()),
            Err((status, field, message)) => {
                problem(status, "invalid_request", &message, Some(&field))
            }
        }
    }

    async fn deliver(&self, req: Request<Incoming>, caller: Option<&str>) -> Reply {
        let received_at_us = now_us();
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let stamp = evidence::trace::Stamp::from_headers(
            header(evidence::trace::TRACEPARENT),
            header(evidence::trace::REQUEST_ID),
        );
        let line = |posted, status, outcome| Line {
            posted,
            caller,
            received_at_us,
            status,
            outcome,
            stamp: stamp.as_ref(),
        };
        let faults = self.faults();
        if let Some(ms) = faults.latency_ms.filter(|ms| *ms > 0) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let body = rig_http::read_body(req.into_body(), MAX_BODY_BYTES).await;
        let posted = body
            .map_err(|err| err.to_string())
            .and_then(|bytes| serde_json::from_slice::<Posted>(&bytes).map_err(|e| e.to_string()));
        let posted = match posted {
            Ok(posted) if !posted.event_id.is_empty() && !posted.order_id.is_empty() => posted,
            Ok(_) => {
                return self
                    .answer(
                        line(None, 400, "invalid"),
                        "event_id and order_id must not be empty",
                    )
                    .await;
            }
            Err(message) => {
                let message =
                    format!("{message}; send {{\"event_id\",\"order_id\",\"type\",\"version\"}}");
                return self.answer(line(None, 400, "invalid"), &message).await;
            }
        };
        if faults.outage == Some(true) {
            return self
                .answer(line(Some(&posted), 503, "outage"), "the sink is down")
                .await;
        }
        if self.inner.draws.chance(faults.error_rate.unwrap_or(0.0)) {
            return self
                .answer(
                    line(Some(&posted), 500, "injected_error"),
                    "injected sink error; nothing was recorded as delivered",
                )
                .await;
        }
        self.answer(line(Some(&posted), 200, "accepted"), "").await
    }

    /// Records the delivery, then answers it. An accepted line whose event id was
    /// accepted before is recorded (and answered) as a duplicate.
    async fn answer(&self, mut line: Line<'_>, message: &str) -> Reply {
        let recorded = self.record(&mut line).await;
        if let Err(err) = recorded {
            tracing::error!(error = %err, "event sink store error");
            self.inner
                .deliveries
                .with_label_values(&["store_error"])
                .inc();
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                "the sink could not record the delivery",
                None,
            );
        }
        self.inner
            .deliveries
            .with_label_values(&[line.outcome])
            .inc();
        let status = StatusCode::from_u16(line.status).unwrap_or(StatusCode::OK);
        match (line.status, line.posted) {
            (200, Some(posted)) => json(
                status,
                &json!({"event_id": posted.event_id, "result": line.outcome}),
            ),
            (_, _) => problem(status, line.outcome, message, None),
        }
    }

    async fn record(&self, line: &mut Line<'_>) -> Result<(), sqlx::Error> {
        const INSERT: &str = "INSERT INTO sink_deliveries (event_id, order_id, event_type, version, \
             caller, received_at_us, http_status, outcome, trace_id, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        let db = &self.inner.db;
        let _one_at_a_time = self.inner.recording.lock().await;
        let mut tx = db.pool.begin().await?;
        if line.outcome == "accepted"
            && let Some(posted) = line.posted
        {
            let seen: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM sink_deliveries WHERE event_id = $1 AND outcome = 'accepted' LIMIT 1",
            )
            .bind(&posted.event_id)
            .fetch_optional(&mut *tx)
            .await?;
            if seen.is_some() {
                line.outcome = "duplicate";
            }
        }
        let posted = line.posted;
        sqlx::query(INSERT)
            .bind(posted.map(|p| p.event_id.as_str()))
            .bind(posted.map(|p| p.order_id.as_str()))
            .bind(posted.map(|p| p.event_type.as_str()))
            .bind(posted.and_then(|p| p.version))
            .bind(line.caller)
            .bind(line.received_at_us)
            .bind(i64::from(line.status))
            .bind(line.outcome)
            .bind(line.stamp.map(|s| s.trace_id.as_str()))
            .bind(line.stamp.map(|s| s.request_id.as_str()))
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
}
