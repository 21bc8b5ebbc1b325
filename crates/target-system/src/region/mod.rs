//! A region service: carts, checkout and order status over the region's own store, a payment
//! service calling the provider, the transactional outbox relay with its consumer, and the
//! repair worker (DESIGN §4, HTTP contract).
//!
//! Routes: `POST /v1/checkout`, `GET /v1/orders/{id}`, `GET|PUT /v1/carts/{id}`,
//! `GET /admin/state`, `POST /admin/payments/pause|resume`, `GET /metrics`, `/healthz`,
//! `/readyz`.
//!
//! Ownership: with a peer, an order's owner region is a pure function of its id
//! ([`owner_of`]); the other region forwards to it and never makes a final transition itself.
//! Without a peer (a single-region deployment) this region owns every order.

pub mod admission;
pub mod api;
pub mod breaker;
mod carts;
mod checkout;
mod forward;
pub mod orders;
pub mod outbox;
mod pay;
pub mod payment;
pub mod repair;
pub mod retry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{Gauge, HistogramVec, IntCounterVec, IntGauge, Registry};
use rig_http::{
    DropConnection, HttpClient, Incoming, Method, PeerAddr, Reply, Request, StatusCode, json,
    problem,
};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::IdGen;
use crate::config::TargetConfig;
use crate::defects::Defect;
use crate::metrics;
use crate::metrics::metrics_reply;
use evidence::order_state::OrderState;
use evidence::seed::Draws;
use evidence::store::{Db, StoreError};
use evidence::{RegionId, owner_of};
use payment::PaymentClient;

/// How a region reaches the rest of the system (in a run, these are proxy addresses).
#[derive(Debug, Clone)]
pub struct RegionWiring {
    pub id: RegionId,
    /// Base URL of the payment provider, e.g. `http://127.0.0.1:8090`.
    pub provider_url: String,
    /// Base URL of the peer region; `None` = single-region deployment owning every order.
    pub peer_url: Option<String>,
}

/// A running region's state; clones share it.
#[derive(Clone, Debug)]
pub struct Region {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    id: RegionId,
    db: Db,
    config: Arc<TargetConfig>,
    peer_url: Option<String>,
    http: HttpClient,
    payment: PaymentClient,
    /// Checkouts running in this process, by order id: a concurrent duplicate waits for the
    /// first to finish and replays its outcome instead of racing it.
    inflight: Mutex<HashMap<String, watch::Receiver<()>>>,
    event_ids: IdGen,
    paused: AtomicBool,
    gate: admission::Gate,
    admission_stats: admission::Stats,
    budget: retry::RetryBudget,
    breaker: breaker::Breaker,
    /// Backoff jitter, from the seed.
    draws: Draws,
    metrics: RegionMetrics,
}

#[derive(Debug)]
struct RegionMetrics {
    registry: Registry,
    checkouts: IntCounterVec,
    checkout_duration: HistogramVec,
    checkouts_in_flight: IntGauge,
    provider_calls: IntCounterVec,
    provider_call_duration: HistogramVec,
    transitions: IntCounterVec,
    repair_actions: IntCounterVec,
    outbox_published: IntCounterVec,
    consumer_deliveries: IntCounterVec,
    admission_decisions: IntCounterVec,
    retries: IntCounterVec,
    retry_budget_available: Gauge,
    provider_in_flight: IntGauge,
    breaker_open: IntGauge,
    forwards: IntCounterVec,
    orders_open: IntGauge,
    oldest_open_age: Gauge,
    outbox_unpublished: IntGauge,
    outbox_lag: Gauge,
}

impl RegionMetrics {
    fn new(region: RegionId) -> Self {
        let metrics = Self::register(region);
        // Label values known up front are exported as 0 from the start: a dashboard's rate
        // of something that has not happened yet is 0, not a gap.
        let known: [(&IntCounterVec, &[&str]); 5] = [
            (
                &metrics.admission_decisions,
                &[
                    "admitted",
                    "rate_limited",
                    "pushback",
                    "queue_timeout",
                    "parked",
                    "rejected_degraded",
                ],
            ),
            (&metrics.retries, &["allowed", "denied"]),
            (&metrics.repair_actions, &["wait"]),
            (&metrics.consumer_deliveries, &["applied", "duplicate"]),
            (&metrics.forwards, &["forwarded", "held", "delivered"]),
        ];
        for (counter, values) in known {
            for value in values {
                counter.with_label_values(&[value]);
            }
        }
        metrics
    }

    fn register(region: RegionId) -> Self {
        let registry = metrics::registry(&[("region", region.as_str())]);
        Self {
            checkouts: metrics::counter_vec(
                &registry,
                "rig_region_checkouts_total",
                "Checkout requests answered, by outcome.",
                &["outcome"],
            ),
            checkout_duration: metrics::histogram_vec(
                &registry,
                "rig_region_checkout_duration_seconds",
                "Time to answer a checkout request, by outcome.",
                &["outcome"],
            ),
            checkouts_in_flight: metrics::int_gauge(
                &registry,
                "rig_region_checkouts_in_flight",
                "Checkouts being processed by this region right now.",
            ),
            provider_calls: metrics::counter_vec(
                &registry,
                "rig_region_provider_calls_total",
                "Calls to the payment provider, by operation and outcome.",
                &["op", "outcome"],
            ),
            provider_call_duration: metrics::histogram_vec(
                &registry,
                "rig_region_provider_call_duration_seconds",
                "Duration of calls to the payment provider, by operation.",
                &["op"],
            ),
            transitions: metrics::counter_vec(
                &registry,
                "rig_region_order_transitions_total",
                "Order state transitions made by this region, by target state.",
                &["to"],
            ),
            repair_actions: metrics::counter_vec(
                &registry,
                "rig_region_repair_actions_total",
                "Decisions of the repair worker, by action.",
                &["action"],
            ),
            outbox_published: metrics::counter_vec(
                &registry,
                "rig_region_outbox_events_published_total",
                "Outbox events delivered and marked published, by event type.",
                &["event_type"],
            ),
            consumer_deliveries: metrics::counter_vec(
                &registry,
                "rig_region_consumer_deliveries_total",
                "Deliveries seen by the confirmation consumer: applied or duplicate.",
                &["result"],
            ),
            admission_decisions: metrics::counter_vec(
                &registry,
                "rig_region_admission_decisions_total",
                "Admission decisions for new checkouts: admitted, shed (by reason), parked, rejected.",
                &["decision"],
            ),
            retries: metrics::counter_vec(
                &registry,
                "rig_region_payment_retries_total",
                "Provider charge retries asked of the retry budget: allowed or denied.",
                &["result"],
            ),
            retry_budget_available: metrics::gauge(
                &registry,
                "rig_region_retry_budget_available",
                "Retries the retry budget would allow right now.",
            ),
            provider_in_flight: metrics::int_gauge(
                &registry,
                "rig_region_provider_calls_in_flight",
                "Charge calls to the provider in flight from this region.",
            ),
            breaker_open: metrics::int_gauge(
                &registry,
                "rig_region_breaker_open",
                "1 while the provider breaker is open or half-open (payment-degraded mode), else 0.",
            ),
            forwards: metrics::counter_vec(
                &registry,
                "rig_region_forwards_total",
                "Checkouts for orders owned by the peer region: forwarded, held (owner unreachable), delivered later.",
                &["result"],
            ),
            orders_open: metrics::int_gauge(
                &registry,
                "rig_region_orders_pending",
                "Orders owned by this region not yet in a final state (confirmed or failed safely).",
            ),
            oldest_open_age: metrics::gauge(
                &registry,
                "rig_region_oldest_pending_age_seconds",
                "Age of the oldest order not yet in a final state (0 when none).",
            ),
            outbox_unpublished: metrics::int_gauge(
                &registry,
                "rig_region_outbox_unpublished",
                "Outbox events written but not yet delivered.",
            ),
            outbox_lag: metrics::gauge(
                &registry,
                "rig_region_outbox_lag_seconds",
                "Age of the oldest undelivered outbox event (0 when none).",
            ),
            registry,
        }
    }
}

impl Region {
    /// Opens a region on its store: seeds inventory from the catalog (existing stock is kept,
    /// so a restart resumes) and records the region and its parameters.
    pub async fn open(
        config: Arc<TargetConfig>,
        wiring: RegionWiring,
        db: Db,
    ) -> Result<Self, StoreError> {
        let lines: Vec<(String, i64, i64)> = config
            .catalog
            .iter()
            .map(|item| {
                (
                    item.sku.clone(),
                    item.price_cents,
                    config.initial_stock(&item.sku),
                )
            })
            .collect();
        orders::seed_inventory(&db, &lines).await?;
        let defects: Vec<&str> = config.defects.iter().map(|d| d.as_str()).collect();
        evidence::run_params::set_meta(&db, "region", wiring.id.as_str()).await?;
        evidence::run_params::set_meta(&db, "defects", &defects.join(",")).await?;
        config.run_params().write(&db).await?;
        let http = HttpClient::new(
            Duration::from_millis(config.payment.per_try_timeout_ms.min(1_000)),
            256,
        );
        let payment = PaymentClient::new(http.clone(), &wiring.provider_url, wiring.id.as_str());
        Ok(Self {
            inner: Arc::new(Inner {
                id: wiring.id,
                db,
                config: config.clone(),
                peer_url: wiring.peer_url.map(|u| u.trim_end_matches('/').to_string()),
                http,
                payment,
                inflight: Mutex::new(HashMap::new()),
                event_ids: IdGen::new(match wiring.id {
                    RegionId::A => "ev_a",
                    RegionId::B => "ev_b",
                }),
                paused: AtomicBool::new(false),
                gate: admission::Gate::new(
                    &config.admission,
                    !config.defects.contains(&Defect::NoAdmissionControl),
                ),
                admission_stats: admission::Stats::default(),
                budget: retry::RetryBudget::new(&config.retry_budget),
                breaker: breaker::Breaker::new(&config.breaker),
                draws: Draws::new(
                    config.seed
                        ^ match wiring.id {
                            RegionId::A => 0x0a,
                            RegionId::B => 0x0b,
                        },
                ),
                metrics: RegionMetrics::new(wiring.id),
            }),
        })
    }

    pub fn id(&self) -> RegionId {
        self.inner.id
    }

    /// The region's store (tests and the verifier read records from it).
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The region that owns `order_id` in this deployment.
    pub fn owner(&self, order_id: &str) -> RegionId {
        if self.inner.peer_url.is_some() {
            owner_of(order_id)
        } else {
            self.inner.id
        }
    }

    /// Serves the region API and runs its workers (outbox relay, repair) until `shutdown`.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let workers = [
            tokio::spawn(outbox::run_relay(self.clone(), stop_rx.clone())),
            tokio::spawn(repair::run(self.clone(), stop_rx.clone())),
            tokio::spawn(forward::run(self.clone(), stop_rx.clone())),
            tokio::spawn(flush_admission_stats(self.clone(), stop_rx)),
        ];
        let region = self.clone();
        let result = rig_http::serve(
            listener,
            move |req| {
                let region = region.clone();
                async move { region.handle(req).await }
            },
            shutdown,
        )
        .await;
        let _ = stop_tx.send(true);
        for worker in workers {
            let _ = worker.await;
        }
        result
    }

    async fn handle(&self, req: Request<Incoming>) -> Result<Reply, DropConnection> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let reply = match (&method, segments.as_slice()) {
            (&Method::POST, ["v1", "checkout"]) => self.checkout(req).await,
            (&Method::GET, ["v1", "orders", id]) => self.order_status(id, &req).await,
            (&Method::GET, ["v1", "carts", id]) => self.get_cart(id).await,
            (&Method::PUT, ["v1", "carts", id]) => self.put_cart(id, req).await,
            (&Method::GET, ["metrics"]) => metrics_reply(&self.inner.metrics.registry),
            (&Method::GET, ["healthz"]) => json(StatusCode::OK, &json!({"status": "ok"})),
            (&Method::GET, ["readyz"]) => self.ready().await,
            (_, ["admin", ..]) if !is_loopback(&req) && !self.inner.config.admin.allow_remote => {
                problem(
                    StatusCode::FORBIDDEN,
                    "admin_loopback_only",
                    "admin endpoints answer loopback clients only; set target.admin.allow_remote = true to open them",
                    None,
                )
            }
            (&Method::GET, ["admin", "state"]) => self.admin_state().await,
            (&Method::POST, ["admin", "payments", "pause"]) => self.set_paused(true).await,
            (&Method::POST, ["admin", "payments", "resume"]) => self.set_paused(false).await,
            _ => problem(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no route for {method} {path}"),
                None,
            ),
        };
        Ok(reply)
    }

    async fn ready(&self) -> Reply {
        match sqlx::query("SELECT 1").execute(&self.inner.db.pool).await {
            Ok(_) => json(
                StatusCode::OK,
                &json!({"status": "ready", "region": self.inner.id}),
            ),
            Err(err) => problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                &err.to_string(),
                None,
            ),
        }
    }

    /// `paused` (operator) before `degraded` (breaker) before `normal`.
    fn mode(&self) -> &'static str {
        if self.inner.paused.load(Ordering::Relaxed) {
            "paused"
        } else if self.inner.breaker.is_open() {
            "degraded"
        } else {
            "normal"
        }
    }

    /// Records a breaker-driven mode change with its time and cause.
    async fn mode_changed(&self, reason: &str) {
        let mode = self.mode();
        self.inner
            .metrics
            .breaker_open
            .set(i64::from(self.inner.breaker.is_open()));
        tracing::warn!(region = %self.inner.id, mode, reason, "payment mode changed");
        if let Err(err) = orders::record_mode(&self.inner.db, mode, reason, "breaker").await {
            tracing::error!(error = %err, "could not record a mode change");
        }
    }

    fn count_admission(&self, decision: admission::Decision) {
        self.inner
            .metrics
            .admission_decisions
            .with_label_values(&[decision.as_str()])
            .inc();
        self.inner.admission_stats.count(decision);
    }

    async fn admin_state(&self) -> Reply {
        match orders::inventory(&self.inner.db).await {
            Ok(inventory) => json(
                StatusCode::OK,
                &json!({
                    "region": self.inner.id,
                    "mode": self.mode(),
                    "breaker_open": self.inner.breaker.is_open(),
                    "defects": &self.inner.config.defects,
                    "parameters": &*self.inner.config,
                    "inventory": inventory,
                }),
            ),
            Err(err) => problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                &err.to_string(),
                None,
            ),
        }
    }

    async fn set_paused(&self, paused: bool) -> Reply {
        self.inner.paused.store(paused, Ordering::Relaxed);
        let mode = self.mode();
        let reason = if paused {
            "operator paused payments"
        } else {
            "operator resumed payments"
        };
        if let Err(err) = orders::record_mode(&self.inner.db, mode, reason, "operator").await {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                &err.to_string(),
                None,
            );
        }
        json(
            StatusCode::OK,
            &json!({"region": self.inner.id, "mode": mode}),
        )
    }

    fn record_call(&self, row: &orders::AttemptRow) {
        let m = &self.inner.metrics;
        m.provider_calls
            .with_label_values(&[row.op, row.outcome])
            .inc();
        let seconds = (row.finished_at_us - row.started_at_us).max(0) as f64 / 1e6;
        m.provider_call_duration
            .with_label_values(&[row.op])
            .observe(seconds);
    }

    fn record_transitions(&self, states: &[OrderState]) {
        for to in states {
            self.inner
                .metrics
                .transitions
                .with_label_values(&[to.as_str()])
                .inc();
        }
    }
}

/// Flushes the per-second admission counts every second until `stop` (and once more then).
impl Region {
    /// Sets the backlog gauges (open orders, oldest open age, outbox lag) from the store;
    /// the index on (status, updated_at_us) and the partial outbox index keep it cheap.
    async fn sample_backlog(&self) -> Result<(), sqlx::Error> {
        let now = evidence::time::now_us();
        let m = &self.inner.metrics;
        let backlog = evidence::queries::backlog(&self.inner.db).await?;
        let age = |oldest: Option<i64>| oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1e6);
        m.orders_open.set(backlog.open_orders);
        m.oldest_open_age.set(age(backlog.oldest_open_at_us));
        m.outbox_unpublished.set(backlog.unpublished_events);
        m.outbox_lag.set(age(backlog.oldest_unpublished_at_us));
        Ok(())
    }

    /// The region's metrics registry (for an exporter that serves several components).
    pub fn registry(&self) -> &Registry {
        &self.inner.metrics.registry
    }
}

async fn flush_admission_stats(region: Region, mut stop: watch::Receiver<bool>) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            _ = stop.changed() => true,
        };
        if let Err(err) = region.inner.admission_stats.flush(&region.inner.db).await {
            tracing::warn!(error = %err, region = %region.id(), "admission stats flush failed");
        }
        if let Err(err) = region.sample_backlog().await {
            tracing::warn!(error = %err, region = %region.id(), "backlog sampling failed");
        }
        if stopping {
            return;
        }
    }
}

fn is_loopback(req: &Request<Incoming>) -> bool {
    req.extensions()
        .get::<PeerAddr>()
        .is_none_or(|peer| peer.0.ip().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ownership is stable and splits ids between both regions.
    #[test]
    fn owner_is_a_stable_split() {
        assert_eq!(owner_of("order-42"), owner_of("order-42"));
        let a = (0..1_000)
            .filter(|i| owner_of(&format!("o-{i}")) == RegionId::A)
            .count();
        assert!((400..600).contains(&a), "a owns {a} of 1000");
        assert_eq!(RegionId::A.peer(), RegionId::B);
        assert_eq!(RegionId::parse("b"), Some(RegionId::B));
        assert_eq!(RegionId::parse("c"), None);
    }
}
