//! A region service: carts, checkout and order status over the region's own store, a payment
//! service calling the provider, the transactional outbox relay with its consumer, and the
//! repair worker (DESIGN §4, HTTP contract).
//!
//! Routes: `POST /v1/checkout`, `GET /v1/orders/{id}`, `GET|PUT /v1/carts/{id}`,
//! `GET /admin/state`, `POST /admin/payments/pause|resume`, `GET|POST /admin/clock`, `POST /admin/orders/{id}/resolve`, `GET /metrics`, `/healthz`,
//! `/readyz`.
//!
//! Ownership: with a peer, an order's owner region is a pure function of its id
//! ([`evidence::owner_of`]); the other region forwards to it and never makes a final transition itself.
//! Without a peer (a single-region deployment) this region owns every order.
//!
//! # Parts
//! A [`Region`] is its shared parts and the services built over them, each a type of its own
//! holding only what it needs:
//! - `Context` (`context.rs`): who the region is, its parameters, its store, its metrics;
//! - `Orders` (`book.rs`): in-flight checkouts and the transactions that move an order;
//! - `Gate` (`admission.rs`): rate limit, pushback, provider slots, decision counts;
//! - `Payments` (`pay.rs`): the provider client, retry budget, breaker and payment mode;
//! - the services: `Checkouts` (`checkout.rs`), `Forwarding` (`forward.rs`), `Repair`
//!   (`repair.rs`), `Relay` (`outbox.rs`).

mod admin;
pub mod admission;
pub mod api;
mod book;
pub mod breaker;
mod carts;
mod checkout;
mod context;
mod forward;
mod inventory;
mod metrics;
pub mod orders;
pub mod outbox;
mod pay;
pub mod payment;
pub mod repair;
mod replies;
pub mod retry;
mod status;

use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use rig_http::{
    DropConnection, HttpClient, Incoming, Method, Reply, Request, StatusCode, json, problem,
};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::TargetConfig;
use crate::defects::Defect;
use crate::metrics::metrics_reply;
use admin::is_loopback;
use admission::Gate;
use book::Orders;
use checkout::Checkouts;
use context::Context;
use evidence::RegionId;
use evidence::seed::Draws;
use evidence::store::{Db, StoreError};
use forward::Forwarding;
use metrics::RegionMetrics;
use outbox::Relay;
use pay::Payments;
use payment::PaymentClient;
use repair::{Repair, RepairReport};

/// How a region reaches the rest of the system (in a run, these are proxy addresses).
#[derive(Debug, Clone)]
pub struct RegionWiring {
    pub id: RegionId,
    /// Base URL of the payment provider, e.g. `http://127.0.0.1:8090`.
    pub provider_url: String,
    /// Base URL of the peer region; `None` = single-region deployment owning every order.
    pub peer_url: Option<String>,
    /// Base URL of the event sink the outbox relay delivers to; `None` = no sink (the
    /// relay hands events to the region's own consumer only).
    pub sink_url: Option<String>,
}

/// A running region; clones share it.
#[derive(Clone, Debug)]
pub struct Region {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ctx: Arc<Context>,
    gate: Arc<Gate>,
    payments: Arc<Payments>,
    checkouts: Arc<Checkouts>,
    forwarding: Arc<Forwarding>,
    repair: Arc<Repair>,
    relay: Arc<Relay>,
    orders: Arc<Orders>,
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
        inventory::seed_inventory(&db, &lines).await?;
        let defects: Vec<&str> = config.defects.iter().map(|d| d.as_str()).collect();
        evidence::run_params::set_meta(&db, "region", wiring.id.as_str()).await?;
        evidence::run_params::set_meta(&db, "defects", &defects.join(",")).await?;
        config.run_params().write(&db).await?;
        let http = HttpClient::new(
            Duration::from_millis(config.payment.per_try_timeout_ms.min(1_000)),
            256,
        );
        let metrics = RegionMetrics::new(wiring.id);
        let gate = Arc::new(Gate::new(
            &config.admission,
            !config.defects.contains(&Defect::NoAdmissionControl),
            metrics.admission_decisions.clone(),
        ));
        let ctx = Arc::new(Context {
            id: wiring.id,
            config: config.clone(),
            peer_url: wiring.peer_url.map(|u| u.trim_end_matches('/').to_string()),
            db,
            metrics,
        });
        let client = PaymentClient::new(http.clone(), &wiring.provider_url, wiring.id.as_str());
        let draws = Draws::new(
            config.seed
                ^ match wiring.id {
                    RegionId::A => 0x0a,
                    RegionId::B => 0x0b,
                },
        );
        let orders = Arc::new(Orders::new(ctx.clone()));
        let payments = Arc::new(Payments::new(ctx.clone(), client, gate.clone(), draws));
        let checkouts = Arc::new(Checkouts::new(
            ctx.clone(),
            orders.clone(),
            payments.clone(),
            gate.clone(),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                forwarding: Arc::new(Forwarding::new(
                    ctx.clone(),
                    http.clone(),
                    checkouts.clone(),
                )),
                repair: Arc::new(Repair::new(
                    ctx.clone(),
                    orders.clone(),
                    payments.clone(),
                    gate.clone(),
                )),
                relay: Arc::new(Relay::new(
                    ctx.clone(),
                    wiring
                        .sink_url
                        .map(|url| (http.clone(), url.trim_end_matches('/').to_string())),
                )),
                ctx,
                gate,
                payments,
                checkouts,
                orders,
            }),
        })
    }

    pub fn id(&self) -> RegionId {
        self.inner.ctx.id
    }

    /// The region's store (tests and the verifier read records from it).
    pub fn db(&self) -> &Db {
        &self.inner.ctx.db
    }

    /// The region that owns `order_id` in this deployment.
    pub fn owner(&self, order_id: &str) -> RegionId {
        self.inner.ctx.owner(order_id)
    }

    /// The region's metrics registry (for an exporter that serves several components).
    pub fn registry(&self) -> &Registry {
        &self.inner.ctx.metrics.registry
    }

    /// One outbox relay pass; how many events were published.
    pub async fn relay_once(&self) -> Result<usize, sqlx::Error> {
        self.inner.relay.once().await
    }

    /// One repair scan over pending orders.
    pub async fn repair_once(&self) -> Result<RepairReport, orders::OrderError> {
        self.inner.repair.once().await
    }

    /// One forward-outbox pass; how many held intents the owner took.
    pub async fn forward_once(&self) -> Result<usize, sqlx::Error> {
        self.inner.forwarding.once().await
    }

    /// Serves the region API and runs its workers (outbox relay, repair, forward outbox,
    /// admission counts and backlog gauges) until `shutdown`.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let workers = [
            tokio::spawn(outbox::run_relay(self.inner.relay.clone(), stop_rx.clone())),
            tokio::spawn(repair::run(self.inner.repair.clone(), stop_rx.clone())),
            tokio::spawn(forward::run(self.inner.forwarding.clone(), stop_rx.clone())),
            tokio::spawn(book::flush_late_writes(
                self.inner.orders.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(flush_admission_stats(self.clone(), stop_rx)),
        ];
        let region = self.clone();
        let result = rig_http::serve(
            listener,
            move |req| {
                let region = region.clone();
                async move {
                    // Every record and hop made while serving this request carries its ids.
                    let stamp = crate::trace::of_request(req.headers());
                    crate::trace::scope(stamp, region.handle(req)).await
                }
            },
            shutdown,
        )
        .await;
        let _ = stop_tx.send(true);
        for worker in workers {
            let _ = worker.await;
        }
        // A graceful stop delivers what the defects' write-behind still held (only a kill
        // loses it): its last flush ran as the workers stopped; one more relay pass.
        if self.inner.ctx.has(crate::defects::Defect::EventAfterCommit)
            || self
                .inner
                .ctx
                .has(crate::defects::Defect::ReplyBeforeCommit)
        {
            while let Ok(n) = self.inner.relay.once().await {
                if n == 0 {
                    break;
                }
            }
        }
        result
    }

    async fn handle(&self, req: Request<Incoming>) -> Result<Reply, DropConnection> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let ctx = &self.inner.ctx;
        let reply = match (&method, segments.as_slice()) {
            (&Method::POST, ["v1", "checkout"]) => self.checkout(req).await,
            (&Method::GET, ["v1", "orders", id]) => self.order_status(id, &req).await,
            (&Method::GET, ["v1", "carts", id]) => carts::get_cart(ctx, id).await,
            (&Method::PUT, ["v1", "carts", id]) => carts::put_cart(ctx, id, req).await,
            (&Method::GET, ["metrics"]) => metrics_reply(&ctx.metrics.registry),
            (&Method::GET, ["healthz"]) => json(StatusCode::OK, &json!({"status": "ok"})),
            (&Method::GET, ["readyz"]) => admin::ready(ctx).await,
            (_, ["admin", ..]) if !is_loopback(&req) && !ctx.config.admin.allow_remote => problem(
                StatusCode::FORBIDDEN,
                "admin_loopback_only",
                "admin endpoints answer loopback clients only; set target.admin.allow_remote = true to open them",
                None,
            ),
            (&Method::GET, ["admin", "state"]) => admin::state(ctx, &self.inner.payments).await,
            (&Method::POST, ["admin", "payments", "pause"]) => {
                admin::set_paused(&self.inner.payments, true).await
            }
            (&Method::POST, ["admin", "payments", "resume"]) => {
                admin::set_paused(&self.inner.payments, false).await
            }
            (&Method::POST, ["admin", "orders", "resolve-pending"]) => {
                admin::resolve_pending(ctx, &self.inner.repair, req).await
            }
            (&Method::POST, ["admin", "orders", id, "resolve"]) => {
                if self.owner(id) != self.id() {
                    problem(
                        StatusCode::CONFLICT,
                        "not_owner",
                        &format!(
                            "region {} is not the owner of {id}; resolve it on region {}",
                            self.id(),
                            self.owner(id)
                        ),
                        None,
                    )
                } else {
                    admin::resolve(ctx, &self.inner.repair, id, req).await
                }
            }
            (&Method::GET, ["admin", "clock"]) => admin::clock(ctx),
            (&Method::POST, ["admin", "clock"]) => admin::set_clock(ctx, req).await,
            _ => problem(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no route for {method} {path}"),
                None,
            ),
        };
        Ok(reply)
    }

    /// `POST /v1/checkout`: the owner decides; a gateway forwards to the owner.
    async fn checkout(&self, req: Request<Incoming>) -> Reply {
        let started = tokio::time::Instant::now();
        let checkouts = &self.inner.checkouts;
        let m = &self.inner.ctx.metrics;
        m.checkouts_in_flight.inc();
        let (outcome, reply) = match checkouts.read(req, started).await {
            Err(reply) => ("invalid", reply),
            Ok(call) if self.owner(&call.request.order_id) != self.id() => {
                self.inner.forwarding.forward(&call).await
            }
            Ok(call) => checkouts.as_owner(&call).await,
        };
        m.checkouts_in_flight.dec();
        m.checkouts.with_label_values(&[outcome]).inc();
        m.checkout_duration
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        reply
    }

    /// `GET /v1/orders/{id}`: the owner answers from its store; a gateway asks the owner.
    async fn order_status(&self, order_id: &str, req: &Request<Incoming>) -> Reply {
        if self.owner(order_id) != self.id() {
            return self.inner.forwarding.status(order_id, req).await;
        }
        status::owner_view(&self.inner.ctx, order_id).await
    }

    /// Sets the backlog gauges (open orders, oldest open age, outbox lag) from the store;
    /// the index on (status, updated_at_us) and the partial outbox index keep it cheap.
    async fn sample_backlog(&self) -> Result<(), sqlx::Error> {
        let now = crate::clock::now_us();
        let ctx = &self.inner.ctx;
        let m = &ctx.metrics;
        let backlog = evidence::queries::backlog(&ctx.db).await?;
        let age = |oldest: Option<i64>| oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1e6);
        m.orders_open.set(backlog.open_orders);
        m.oldest_open_age.set(age(backlog.oldest_open_at_us));
        m.outbox_unpublished.set(backlog.unpublished_events);
        m.outbox_lag.set(age(backlog.oldest_unpublished_at_us));
        Ok(())
    }
}

/// Flushes the per-second admission counts and samples the backlog every second until
/// `stop` (and once more then).
async fn flush_admission_stats(region: Region, mut stop: watch::Receiver<bool>) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            _ = stop.changed() => true,
        };
        if let Err(err) = region.inner.gate.flush(region.db()).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use evidence::owner_of;

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
