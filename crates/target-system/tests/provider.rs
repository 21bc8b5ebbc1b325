//! The simulated payment provider's contract, through real HTTP.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::listener;
use rig_http::{HttpClient, Method};
use serde_json::{Value, json};
use target_system::TargetConfig;
use target_system::system::System;
use target_system::testkit::TestStores;

struct P {
    system: System,
    url: String,
    client: HttpClient,
    _stores: TestStores,
}

impl P {
    async fn start(stores: TestStores, config: TargetConfig) -> Self {
        let system = System::start(
            Arc::new(config),
            &stores.url,
            Some(listener().await.into()),
            vec![],
        )
        .await
        .expect("provider starts");
        let url = system.provider_url().unwrap();
        Self {
            system,
            url,
            client: HttpClient::new(Duration::from_secs(2), 16),
            _stores: stores,
        }
    }

    async fn charge(
        &self,
        key: &str,
        order: &str,
        amount: i64,
    ) -> Result<rig_http::ClientResponse, rig_http::ClientError> {
        self.client
            .send(
                Method::POST,
                &format!("{}/v1/charges", self.url),
                &[("idempotency-key", key)],
                Some(Bytes::from(
                    json!({"order_id": order, "amount_cents": amount, "currency": "USD"})
                        .to_string(),
                )),
                Duration::from_secs(10),
            )
            .await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> rig_http::ClientResponse {
        self.client
            .send(
                method,
                &format!("{}{path}", self.url),
                &[],
                body.map(|b| Bytes::from(b.to_string())),
                Duration::from_secs(10),
            )
            .await
            .expect("answered")
    }

    async fn faults(&self, faults: Value) {
        let response = self.call(Method::POST, "/admin/faults", Some(faults)).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
    }

    /// Returns once the provider holds `key` in processing (the first request is in flight).
    async fn wait_processing(&self, key: &str) {
        common::eventually(
            Duration::from_secs(5),
            "the first request holds the key",
            || async {
                let view = self
                    .call(
                        Method::GET,
                        &format!("/v1/charges?idempotency_key={key}"),
                        None,
                    )
                    .await;
                view.json::<Value>()
                    .is_some_and(|v| v["state"] == "processing")
            },
        )
        .await;
    }

    async fn log_count(&self, outcome: &str) -> i64 {
        let (provider, _) = self.system.provider.as_ref().unwrap();
        provider.flush().await;
        common::count(
            provider.db(),
            "SELECT COUNT(*) FROM provider_requests WHERE outcome = $1",
            outcome,
        )
        .await
    }
}

/// Replays the first answer for a key, refuses changed parameters with 422, answers 409 to a
/// concurrent duplicate, and logs every request.
async fn idempotency_contract(stores: TestStores) {
    let p = P::start(stores, TargetConfig::default()).await;
    let first = p.charge("pay:o1", "o1", 1_000).await.unwrap();
    assert_eq!(first.status, 200);
    let charge: Value = first.json().unwrap();
    assert_eq!(charge["status"], "authorized");
    let again = p.charge("pay:o1", "o1", 1_000).await.unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body, "replays the stored answer");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let changed = p.charge("pay:o1", "o1", 2_000).await.unwrap();
    assert_eq!(changed.status, 422);

    p.faults(json!({"latency_ms": 300})).await;
    let (a, b) = tokio::join!(p.charge("pay:o2", "o2", 500), async {
        p.wait_processing("pay:o2").await;
        p.charge("pay:o2", "o2", 500).await
    });
    let mut statuses = [a.unwrap().status.as_u16(), b.unwrap().status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
    assert_eq!(p.log_count("replayed").await, 1);
    assert_eq!(p.log_count("mismatch").await, 1);
    assert_eq!(p.log_count("in_flight").await, 1);
    assert_eq!(p.log_count("authorized").await, 2);
    p.system.shutdown().await.unwrap();
}
both_stores!(idempotency_contract);

/// Look-up by key, refund (idempotent) and the void tombstone.
async fn lookup_refund_void(stores: TestStores) {
    let p = P::start(stores, TargetConfig::default()).await;
    assert_eq!(
        p.call(Method::GET, "/v1/charges?idempotency_key=pay:none", None)
            .await
            .status,
        404
    );
    let charge: Value = p
        .charge("pay:o1", "o1", 1_000)
        .await
        .unwrap()
        .json()
        .unwrap();
    let view: Value = p
        .call(Method::GET, "/v1/charges?idempotency_key=pay%3Ao1", None)
        .await
        .json()
        .unwrap();
    assert_eq!(view["state"], "completed");
    assert_eq!(view["charge"]["charge_id"], charge["charge_id"]);

    let id = charge["charge_id"].as_str().unwrap();
    for _ in 0..2 {
        let refunded: Value = p
            .call(Method::POST, &format!("/v1/charges/{id}/refund"), None)
            .await
            .json()
            .unwrap();
        assert_eq!(refunded["refunded_cents"], 1_000);
    }
    let (provider, _) = p.system.provider.as_ref().unwrap();
    assert_eq!(
        common::count(
            provider.db(),
            "SELECT COUNT(*) FROM provider_refunds WHERE charge_id = $1",
            id
        )
        .await,
        1
    );

    // Voiding an authorized charge's key voids the charge; a never-used key becomes a tombstone.
    p.charge("pay:o2", "o2", 700).await.unwrap();
    let voided: Value = p
        .call(
            Method::POST,
            "/v1/charges/void?idempotency_key=pay:o2",
            None,
        )
        .await
        .json()
        .unwrap();
    assert_eq!(voided["state"], "voided");
    assert_eq!(voided["charge"]["status"], "voided");
    let tomb = p
        .call(
            Method::POST,
            "/v1/charges/void?idempotency_key=pay:o3",
            None,
        )
        .await;
    assert_eq!(tomb.status, 200);
    assert_eq!(p.charge("pay:o3", "o3", 700).await.unwrap().status, 410);
    assert_eq!(p.charge("pay:o2", "o2", 700).await.unwrap().status, 410);
    p.system.shutdown().await.unwrap();
}
both_stores!(lookup_refund_void);

/// Capacity: a concurrency limit and a rate limit answer 429 with Retry-After; an outage 503;
/// injected errors 500 without a charge; commit-then-drop commits and drops the connection.
async fn capacity_and_faults(stores: TestStores) {
    let p = P::start(stores, TargetConfig::default()).await;
    p.faults(json!({"max_concurrency": 1, "latency_ms": 300}))
        .await;
    let (a, b) = tokio::join!(p.charge("pay:c1", "c1", 100), async {
        p.wait_processing("pay:c1").await;
        p.charge("pay:c2", "c2", 100).await
    });
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.status, 200);
    assert_eq!(b.status, 429);
    assert!(b.header("retry-after").is_some() && b.header("retry-after-ms").is_some());

    p.faults(json!({"rate_limit_per_sec": 2})).await;
    let first = p.charge("pay:r1", "r1", 100).await.unwrap();
    let second = p.charge("pay:r2", "r2", 100).await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 429);
    let wait_ms: u64 = second.header("retry-after-ms").unwrap().parse().unwrap();
    assert!(wait_ms > 0 && wait_ms <= 1_000, "{wait_ms}");

    p.faults(json!({"outage": true})).await;
    assert_eq!(p.charge("pay:x", "x", 100).await.unwrap().status, 503);
    p.faults(json!({"error_rate": 1.0})).await;
    assert_eq!(p.charge("pay:e", "e", 100).await.unwrap().status, 500);
    p.faults(json!({"commit_then_drop_rate": 1.0})).await;
    let dropped = p.charge("pay:d", "d", 100).await.unwrap_err();
    assert!(dropped.is_ambiguous(), "{dropped}");
    let view: Value = p
        .call(Method::GET, "/v1/charges?idempotency_key=pay:d", None)
        .await
        .json()
        .unwrap();
    assert_eq!(
        view["charge"]["status"], "authorized",
        "committed before the drop"
    );
    assert_eq!(
        p.call(Method::GET, "/v1/charges?idempotency_key=pay:e", None)
            .await
            .status,
        404
    );

    let cleared = p.call(Method::DELETE, "/admin/faults", None).await;
    assert_eq!(cleared.status, 200);
    let now: Value = p
        .call(Method::GET, "/admin/faults", None)
        .await
        .json()
        .unwrap();
    assert!(
        now.as_object().unwrap().values().all(Value::is_null),
        "{now}"
    );
    let bad = p
        .call(
            Method::POST,
            "/admin/faults",
            Some(json!({"error_rate": 2})),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json::<Value>().unwrap()["field"], "error_rate");
    let unknown = p
        .call(
            Method::POST,
            "/admin/faults",
            Some(json!({"eror_rate": 0.1})),
        )
        .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(p.log_count("over_capacity").await, 1);
    assert_eq!(p.log_count("rate_limited").await, 1);
    assert_eq!(p.log_count("committed_dropped").await, 1);
    p.system.shutdown().await.unwrap();
}
both_stores!(capacity_and_faults);

/// Injected errors follow the seed: the same seed gives the same sequence of answers, a
/// different seed a different one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_decides_injected_errors() {
    async fn run(seed: u64) -> Vec<u16> {
        let config = TargetConfig {
            seed,
            ..TargetConfig::default()
        };
        let p = P::start(target_system::testkit::sqlite("seed"), config).await;
        p.faults(json!({"error_rate": 0.5})).await;
        let mut statuses = Vec::new();
        for i in 0..40 {
            let key = format!("pay:s{i}");
            statuses.push(
                p.charge(&key, &format!("s{i}"), 100)
                    .await
                    .unwrap()
                    .status
                    .as_u16(),
            );
        }
        p.system.shutdown().await.unwrap();
        statuses
    }
    let a = run(1).await;
    assert_eq!(a, run(1).await);
    assert_ne!(a, run(2).await);
    assert!(a.contains(&500) && a.contains(&200));
}

/// Bad charge requests are refused with the field named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_charge_requests_name_the_field() {
    let p = P::start(
        target_system::testkit::sqlite("badcharge"),
        TargetConfig::default(),
    )
    .await;
    let no_key = p
        .client
        .send(
            Method::POST,
            &format!("{}/v1/charges", p.url),
            &[],
            Some(Bytes::from("{}")),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(no_key.json::<Value>().unwrap()["field"], "Idempotency-Key");
    let negative = p.charge("pay:n", "n", -5).await.unwrap();
    assert_eq!(negative.status, 400);
    assert_eq!(negative.json::<Value>().unwrap()["field"], "amount_cents");
    p.system.shutdown().await.unwrap();
}
