//! The rig's own instruments, through real sockets: the provider's request log attributes
//! each request to a caller by the listener it arrived on (never by what the caller says)
//! and records when a caller gave up; the event sink records every delivery before
//! answering, answers a redelivery as a duplicate, and takes only the faults a sink has.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::listener;
use rig_http::{HttpClient, Method};
use serde_json::{Value, json};
use sqlx::Row;
use target_system::TargetConfig;
use target_system::sink::Sink;
use target_system::system::{ProviderPlan, System};
use target_system::testkit::TestStores;

async fn post(
    client: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
    body: Value,
    timeout: Duration,
) -> Result<rig_http::ClientResponse, rig_http::ClientError> {
    client
        .send(
            Method::POST,
            url,
            headers,
            Some(Bytes::from(body.to_string())),
            timeout,
        )
        .await
}

/// A request on a caller's listener is logged as that caller's whatever its headers say; a
/// request on the provider's own listener has no caller; a caller that times out is
/// recorded as gone before the provider finished.
async fn provider_log_attributes_callers(stores: TestStores) {
    let (own, for_a) = (listener().await, listener().await);
    let a_url = format!("http://{}", for_a.local_addr().unwrap());
    let plan = ProviderPlan {
        listener: own,
        callers: vec![("a".to_string(), for_a)],
        stripe: None,
    };
    let system = System::start(
        Arc::new(TargetConfig::default()),
        &stores.url,
        Some(plan),
        vec![],
    )
    .await
    .expect("provider starts");
    let own_url = system.provider_url().unwrap();
    let client = HttpClient::new(Duration::from_secs(2), 8);
    let charge = |order: &str| json!({"order_id": order, "amount_cents": 1000, "currency": "USD"});
    let long = Duration::from_secs(10);
    let spoofed = [
        ("idempotency-key", "pay:o-1"),
        ("x-caller", "b"),
        ("x-region", "b"),
    ];
    let answer = post(
        &client,
        &format!("{a_url}/v1/charges"),
        &spoofed,
        charge("o-1"),
        long,
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    let unattributed = [("idempotency-key", "pay:o-2")];
    post(
        &client,
        &format!("{own_url}/v1/charges"),
        &unattributed,
        charge("o-2"),
        long,
    )
    .await
    .unwrap();
    // A slow provider: the caller gives up after 200 ms, the provider finishes at 800 ms.
    post(
        &client,
        &format!("{own_url}/admin/faults"),
        &[],
        json!({"latency_ms": 800}),
        long,
    )
    .await
    .unwrap();
    let gave_up = post(
        &client,
        &format!("{a_url}/v1/charges"),
        &[("idempotency-key", "pay:o-3")],
        charge("o-3"),
        Duration::from_millis(200),
    )
    .await;
    assert!(gave_up.is_err(), "the caller timed out");
    let (provider, _) = system.provider.as_ref().unwrap();
    let db = provider.db().clone();
    common::eventually(
        Duration::from_secs(10),
        "the third charge is logged",
        || {
            let (provider, db) = (provider.clone(), db.clone());
            async move {
                provider.flush().await;
                common::count(
                    &db,
                    "SELECT COUNT(*) FROM provider_requests WHERE idempotency_key = $1",
                    "pay:o-3",
                )
                .await
                    == 1
            }
        },
    )
    .await;
    let rows = sqlx::query(
        "SELECT idempotency_key, caller, received_at_us, finished_at_us, abandoned_at_us \
         FROM provider_requests ORDER BY idempotency_key",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let got: Vec<(String, Option<String>, bool)> = rows
        .iter()
        .map(|r| {
            let finished: i64 = r.try_get("finished_at_us").unwrap();
            let gone: Option<i64> = r.try_get("abandoned_at_us").unwrap();
            (
                r.try_get("idempotency_key").unwrap(),
                r.try_get("caller").unwrap(),
                gone.is_some_and(|g| g < finished),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("pay:o-1".to_string(), Some("a".to_string()), false),
            ("pay:o-2".to_string(), None, false),
            ("pay:o-3".to_string(), Some("a".to_string()), true),
        ]
    );
    system.shutdown().await.unwrap();
}
both_stores!(provider_log_attributes_callers);

/// The sink records each delivery with the caller its listener belongs to, accepts the
/// first delivery of an event id and answers a redelivery as a duplicate; under an outage
/// or injected errors it refuses (and records the refusal); it refuses faults a sink does
/// not have, naming the field.
async fn sink_records_deliveries(stores: TestStores) {
    let db = evidence::Db::open(&stores.url, evidence::StoreName::Sink)
        .await
        .unwrap();
    let sink = Sink::open(db.clone(), 7);
    let (own, for_b) = (listener().await, listener().await);
    let own_url = format!("http://{}", own.local_addr().unwrap());
    let b_url = format!("http://{}", for_b.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    for (caller, listener) in [(None, own), (Some("b".to_string()), for_b)] {
        let (sink, mut stopped) = (sink.clone(), stopped.clone());
        tokio::spawn(async move {
            let until = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            sink.serve_for(listener, caller, until).await
        });
    }
    let client = HttpClient::new(Duration::from_secs(2), 8);
    let long = Duration::from_secs(10);
    let event =
        json!({"event_id": "ev-1", "order_id": "o-1", "type": "order_confirmed", "version": 4});
    let deliver = |url: String, body: Value| {
        let client = client.clone();
        async move {
            post(&client, &format!("{url}/v1/events"), &[], body, long)
                .await
                .unwrap()
        }
    };
    let first = deliver(b_url.clone(), event.clone()).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json::<Value>().unwrap()["result"], "accepted");
    let again = deliver(b_url.clone(), event.clone()).await;
    assert_eq!(again.json::<Value>().unwrap()["result"], "duplicate");
    let bad = deliver(b_url.clone(), json!({"order_id": "o-1"})).await;
    assert_eq!(bad.status, 400);

    let set = |faults: Value| {
        let client = client.clone();
        let url = format!("{own_url}/admin/faults");
        async move { post(&client, &url, &[], faults, long).await.unwrap() }
    };
    let refused = set(json!({"rate_limit_per_sec": 5})).await;
    assert_eq!(refused.status, 400);
    assert!(
        String::from_utf8_lossy(&refused.body).contains("rate_limit_per_sec is not a sink fault"),
        "{:?}",
        refused.body
    );
    assert_eq!(set(json!({"outage": true})).await.status, 200);
    let down = deliver(
        b_url.clone(),
        json!({"event_id": "ev-2", "order_id": "o-2", "type": "order_confirmed"}),
    )
    .await;
    assert_eq!(down.status, 503);
    assert_eq!(set(json!({"error_rate": 1.0})).await.status, 200);
    let failing = deliver(
        b_url.clone(),
        json!({"event_id": "ev-2", "order_id": "o-2", "type": "order_confirmed"}),
    )
    .await;
    assert_eq!(failing.status, 500);
    let cleared = client
        .send(
            Method::DELETE,
            &format!("{own_url}/admin/faults"),
            &[],
            None,
            long,
        )
        .await
        .unwrap();
    assert_eq!(cleared.status, 200);
    let later = deliver(
        own_url.clone(),
        json!({"event_id": "ev-2", "order_id": "o-2", "type": "order_confirmed"}),
    )
    .await;
    assert_eq!(later.json::<Value>().unwrap()["result"], "accepted");

    let rows = sqlx::query(
        "SELECT event_id, caller, http_status, outcome FROM sink_deliveries ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let got: Vec<(Option<String>, Option<String>, i64, String)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("event_id").unwrap(),
                r.try_get("caller").unwrap(),
                r.try_get("http_status").unwrap(),
                r.try_get("outcome").unwrap(),
            )
        })
        .collect();
    let b = || Some("b".to_string());
    let ev = |id: &str| Some(id.to_string());
    assert_eq!(
        got,
        vec![
            (ev("ev-1"), b(), 200, "accepted".to_string()),
            (ev("ev-1"), b(), 200, "duplicate".to_string()),
            (None, b(), 400, "invalid".to_string()),
            (ev("ev-2"), b(), 503, "outage".to_string()),
            (ev("ev-2"), b(), 500, "injected_error".to_string()),
            (ev("ev-2"), None, 200, "accepted".to_string()),
        ]
    );
    let _ = stop.send(true);
    db.close().await;
}
both_stores!(sink_records_deliveries);
