//! A small harness that reads like the topology: spawn provider; spawn region a and b on
//! 127.0.0.1:0; talk to them over real HTTP.
#![allow(dead_code)]

pub mod forwarder;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rig_http::{ClientResponse, HttpClient, Method};
use serde_json::{Value, json};
use target_system::provider::ledger::{self, Charge};
use target_system::system::{RegionPlan, System};
use target_system::testkit::TestStores;
use target_system::{Region, RegionId, TargetConfig};
use tokio::net::TcpListener;

pub use forwarder::{Forwarder, Mode};

/// Runs `$scenario(stores)` against SQLite, and against PostgreSQL when configured.
#[macro_export]
macro_rules! both_stores {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(target_system::testkit::sqlite(stringify!($scenario))).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(stores) = target_system::testkit::postgres(stringify!($scenario)) {
                    super::$scenario(stores).await;
                }
            }
        }
    };
}

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
}

pub async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

impl Harness {
    /// Provider + regions a and b, wired directly.
    pub async fn start(stores: TestStores, config: TargetConfig) -> Self {
        let system = System::start_all(
            Arc::new(config),
            &stores.url,
            listener().await,
            listener().await,
            listener().await,
        )
        .await
        .expect("system starts");
        Self {
            system,
            client: HttpClient::new(Duration::from_secs(2), 64),
            stores,
        }
    }

    /// Provider and regions with every hop through a forwarder the test controls (as a run
    /// puts a proxy on each hop): `a_to_b`, `b_to_a`, `a_to_provider`, `b_to_provider`.
    pub async fn start_linked(stores: TestStores, config: TargetConfig) -> (Self, Links) {
        let (provider, a, b) = (listener().await, listener().await, listener().await);
        let links = Links {
            a_to_b: Forwarder::start(b.local_addr().unwrap()).await,
            b_to_a: Forwarder::start(a.local_addr().unwrap()).await,
            a_to_provider: Forwarder::start(provider.local_addr().unwrap()).await,
            b_to_provider: Forwarder::start(provider.local_addr().unwrap()).await,
        };
        let plans = vec![
            RegionPlan {
                id: RegionId::A,
                listener: a,
                provider_url: links.a_to_provider.url(),
                peer_url: Some(links.a_to_b.url()),
            },
            RegionPlan {
                id: RegionId::B,
                listener: b,
                provider_url: links.b_to_provider.url(),
                peer_url: Some(links.b_to_a.url()),
            },
        ];
        let system = System::start(Arc::new(config), &stores.url, Some(provider), plans)
            .await
            .expect("system starts");
        let harness = Self {
            system,
            client: HttpClient::new(Duration::from_secs(2), 64),
            stores,
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
        let owner = target_system::region::owner_of(order_id);
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
        .find(|id| target_system::region::owner_of(id) == region)
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
pub async fn count(db: &target_system::Db, sql: &'static str, bind: &str) -> i64 {
    use sqlx::Row;
    sqlx::query(sql)
        .bind(bind)
        .fetch_one(&db.pool)
        .await
        .expect("count query")
        .try_get::<i64, _>(0)
        .expect("count column")
}

/// One provider call as recorded in a region's `payment_attempts`.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub order_id: String,
    pub op: String,
    pub is_retry: bool,
    pub started_at_us: i64,
    pub finished_at_us: i64,
    pub outcome: String,
}

pub async fn attempts(db: &target_system::Db) -> Vec<Attempt> {
    use sqlx::Row;
    sqlx::query(
        "SELECT order_id, op, is_retry, started_at_us, finished_at_us, outcome FROM payment_attempts ORDER BY started_at_us",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| Attempt {
        order_id: r.try_get("order_id").unwrap(),
        op: r.try_get("op").unwrap(),
        is_retry: r.try_get::<i64, _>("is_retry").unwrap() == 1,
        started_at_us: r.try_get("started_at_us").unwrap(),
        finished_at_us: r.try_get("finished_at_us").unwrap(),
        outcome: r.try_get("outcome").unwrap(),
    })
    .collect()
}

/// Most calls in flight at once (sweep line; an end before a start at the same instant).
pub fn max_concurrency(attempts: &[Attempt]) -> usize {
    let mut events: Vec<(i64, i32)> = attempts
        .iter()
        .flat_map(|a| [(a.started_at_us, 1), (a.finished_at_us, -1)])
        .collect();
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        max = max.max(now);
    }
    max as usize
}

/// The first window (ending at a retry) where charge retries exceed
/// `ratio * first tries + min_per_sec * ttl`, as (retries, first tries).
pub fn retry_budget_violation(
    attempts: &[Attempt],
    ratio: f64,
    min_per_sec: f64,
    ttl_seconds: u64,
) -> Option<(usize, usize)> {
    let charges: Vec<&Attempt> = attempts.iter().filter(|a| a.op == "charge").collect();
    let ttl_us = i64::try_from(ttl_seconds).unwrap() * 1_000_000;
    for end in charges.iter().filter(|a| a.is_retry) {
        let inside = charges.iter().filter(|a| {
            a.started_at_us > end.started_at_us - ttl_us && a.started_at_us <= end.started_at_us
        });
        let (retries, first): (Vec<&&Attempt>, Vec<&&Attempt>) = inside.partition(|a| a.is_retry);
        if retries.len() as f64 > ratio * first.len() as f64 + min_per_sec * ttl_seconds as f64 {
            return Some((retries.len(), first.len()));
        }
    }
    None
}
