//! A small harness that reads like the topology: spawn the event sink and the provider;
//! spawn region a and b on 127.0.0.1:0 (directly wired, or with a forwarder the test
//! controls on every hop), each delivering its events to the sink; talk to them over real
//! HTTP.

use std::sync::Arc;
use std::time::Duration;

use super::TestStores;
use crate::provider::ledger::{self, Charge};
use crate::sink::Sink;
use crate::system::{ProviderPlan, RegionPlan, System};
use crate::{Region, TargetConfig};
use bytes::Bytes;
use evidence::RegionId;
use rig_http::{ClientResponse, HttpClient, Method};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use super::forwarder::{Forwarder, Mode};

/// A test configuration: workers that never run on their own (tests call them), so every
/// repair or relay step happens exactly when the test says.
pub fn quiet_config() -> TargetConfig {
    let mut config = TargetConfig::default();
    config.repair.scan_interval_ms = 3_600_000;
    config.outbox.poll_interval_ms = 3_600_000;
    config
}

/// The forwarders on each hop of a linked topology.
pub struct Links {
    pub a_to_b: Forwarder,
    pub b_to_a: Forwarder,
    pub a_to_provider: Forwarder,
    pub b_to_provider: Forwarder,
}

impl Links {
    /// Partitions (or heals) regions a and b in both directions.
    pub fn partition(&self, mode: Mode) {
        self.a_to_b.set(mode);
        self.b_to_a.set(mode);
    }
}

pub struct Harness {
    pub system: System,
    pub client: HttpClient,
    pub stores: TestStores,
    /// The event sink the regions deliver to; it stops when the harness is dropped.
    pub sink: Sink,
    _sink_stop: watch::Sender<bool>,
}

/// Opens the sink's store and serves it on a fresh listener until the sender is dropped.
async fn start_sink(stores: &TestStores, seed: u64) -> (Sink, String, watch::Sender<bool>) {
    let db = evidence::Db::open(&stores.url, evidence::StoreName::Sink)
        .await
        .expect("the sink's store opens");
    let sink = Sink::open(db, seed);
    let listener = listener().await;
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    let (stop, mut stopped) = watch::channel(false);
    let serving = sink.clone();
    tokio::spawn(async move {
        let until = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        serving.serve_for(listener, None, until).await
    });
    (sink, url, stop)
}

/// The provider's listeners as a run wires them: its own (unattributed, for the tests'
/// direct calls) and one per region, so its request log attributes each region's calls to
/// it. Returns the plan and regions a's and b's addresses.
async fn provider_plan() -> (ProviderPlan, [std::net::SocketAddr; 2]) {
    let (own, a, b) = (listener().await, listener().await, listener().await);
    let addrs = [a.local_addr().unwrap(), b.local_addr().unwrap()];
    let plan = ProviderPlan {
        listener: own,
        callers: vec![("a".to_string(), a), ("b".to_string(), b)],
        stripe: None,
    };
    (plan, addrs)
}

pub async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

/// The provider alone with its Stripe-compatible face, in this process, each of its native
/// listener (the fault API) and the face on `127.0.0.1:0`: the provider, the native URL and
/// the face's URL.
pub async fn stripe_face(
    stores: &TestStores,
    config: &TargetConfig,
) -> (crate::provider::Provider, String, String) {
    let db = evidence::Db::open(&stores.url, evidence::StoreName::Provider)
        .await
        .expect("the provider's store");
    let provider = crate::provider::Provider::open(config, db)
        .await
        .expect("the provider opens");
    let (native, face) = (listener().await, listener().await);
    let native_url = format!("http://{}", native.local_addr().expect("bound"));
    let face_url = format!("http://{}", face.local_addr().expect("bound"));
    let serving = provider.clone();
    tokio::spawn(async move { serving.serve(native, std::future::pending()).await });
    let serving = provider.clone();
    tokio::spawn(async move { serving.serve_stripe(face, std::future::pending()).await });
    (provider, native_url, face_url)
}

impl Harness {
    /// Sink, provider and regions a and b, wired directly.
    pub async fn start(stores: TestStores, config: TargetConfig) -> Self {
        let (sink, sink_url, sink_stop) = start_sink(&stores, config.seed).await;
        let (a, b) = (listener().await, listener().await);
        let (provider, [pay_a, pay_b]) = provider_plan().await;
        let url = |l: &TcpListener| format!("http://{}", l.local_addr().unwrap());
        let (url_a, url_b) = (url(&a), url(&b));
        let plans = vec![
            RegionPlan {
                id: RegionId::A,
                listener: a,
                provider_url: format!("http://{pay_a}"),
                peer_url: Some(url_b),
                sink_url: Some(sink_url.clone()),
            },
            RegionPlan {
                id: RegionId::B,
                listener: b,
                provider_url: format!("http://{pay_b}"),
                peer_url: Some(url_a),
                sink_url: Some(sink_url),
            },
        ];
        let system = System::start(Arc::new(config), &stores.url, Some(provider), plans)
            .await
            .expect("system starts");
        Self {
            system,
            client: HttpClient::new(Duration::from_secs(2), 64),
            stores,
            sink,
            _sink_stop: sink_stop,
        }
    }

    /// Provider and regions with every hop through a forwarder the test controls (as a run
    /// puts a proxy on each hop): `a_to_b`, `b_to_a`, `a_to_provider`, `b_to_provider`.
    pub async fn start_linked(stores: TestStores, config: TargetConfig) -> (Self, Links) {
        let (sink, sink_url, sink_stop) = start_sink(&stores, config.seed).await;
        let (a, b) = (listener().await, listener().await);
        let (provider, [pay_a, pay_b]) = provider_plan().await;
        let links = Links {
            a_to_b: Forwarder::start(b.local_addr().unwrap()).await,
            b_to_a: Forwarder::start(a.local_addr().unwrap()).await,
            a_to_provider: Forwarder::start(pay_a).await,
            b_to_provider: Forwarder::start(pay_b).await,
        };
        let plans = vec![
            RegionPlan {
                id: RegionId::A,
                listener: a,
                provider_url: links.a_to_provider.url(),
                peer_url: Some(links.a_to_b.url()),
                sink_url: Some(sink_url.clone()),
            },
            RegionPlan {
                id: RegionId::B,
                listener: b,
                provider_url: links.b_to_provider.url(),
                peer_url: Some(links.b_to_a.url()),
                sink_url: Some(sink_url),
            },
        ];
        let system = System::start(Arc::new(config), &stores.url, Some(provider), plans)
            .await
            .expect("system starts");
        let harness = Self {
            system,
            client: HttpClient::new(Duration::from_secs(2), 64),
            stores,
            sink,
            _sink_stop: sink_stop,
        };
        (harness, links)
    }

    pub fn region(&self, id: RegionId) -> &Region {
        self.system.region(id).expect("region runs")
    }

    pub fn url(&self, id: RegionId) -> String {
        self.system.region_url(id).expect("region runs")
    }

    pub fn provider_url(&self) -> String {
        self.system.provider_url().expect("provider runs")
    }

    pub async fn post(&self, url: &str, headers: &[(&str, &str)], body: Value) -> ClientResponse {
        self.client
            .send(
                Method::POST,
                url,
                headers,
                Some(Bytes::from(body.to_string())),
                Duration::from_secs(10),
            )
            .await
            .expect("request answered")
    }

    pub async fn get(&self, url: &str) -> ClientResponse {
        self.client
            .send(Method::GET, url, &[], None, Duration::from_secs(10))
            .await
            .expect("request answered")
    }

    /// `POST /v1/checkout` at region `entry` for `order_id` with `items`.
    pub async fn checkout(&self, entry: RegionId, order_id: &str, items: Value) -> ClientResponse {
        let body = json!({"order_id": order_id, "customer_id": "cust-1", "items": items});
        self.post(
            &format!("{}/v1/checkout", self.url(entry)),
            &[("idempotency-key", order_id)],
            body,
        )
        .await
    }

    /// The owner region's view of an order.
    pub async fn status(&self, order_id: &str) -> Value {
        let owner = evidence::owner_of(order_id);
        self.get(&format!("{}/v1/orders/{order_id}", self.url(owner)))
            .await
            .json()
            .expect("status is JSON")
    }

    /// Every charge the provider's ledger holds for an order.
    pub async fn charges(&self, order_id: &str) -> Vec<Charge> {
        let (provider, _) = self.system.provider.as_ref().expect("provider runs");
        ledger::charges_for_order(provider.db(), order_id)
            .await
            .expect("ledger readable")
    }

    pub async fn set_faults(&self, faults: Value) {
        let response = self
            .post(
                &format!("{}/admin/faults", self.provider_url()),
                &[],
                faults,
            )
            .await;
        assert_eq!(response.status, 200, "faults accepted: {:?}", response.body);
    }

    pub async fn shutdown(self) {
        self.system.shutdown().await.expect("clean shutdown");
    }
}

/// An order id owned by `region` (ids are spread by hash).
pub fn order_owned_by(region: RegionId, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| evidence::owner_of(id) == region)
        .expect("some id hashes to each region")
}

/// Waits for `check` to hold, polling every 20 ms, failing after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A scalar count from a store.
pub async fn count(db: &evidence::Db, sql: &'static str, bind: &str) -> i64 {
    use sqlx::Row;
    sqlx::query(sql)
        .bind(bind)
        .fetch_one(&db.pool)
        .await
        .expect("count query")
        .try_get::<i64, _>(0)
        .expect("count column")
}
