//! The provider's Stripe-compatible face through real sockets, on SQLite and PostgreSQL:
//! the ledger holds one charge per confirmed intent whatever the retries; an in-flight
//! duplicate is a `409` the SDKs retry; a charge committed and then dropped is replayed
//! under its key; webhooks are signed, retried until the endpoint takes them, and delayed,
//! lost or repeated by the provider's faults. (Stripe's own SDKs drive the face in the rig's
//! conformance tests.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::listener;
use rig_http::{HttpClient, Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Row;
use target_system::TargetConfig;
use target_system::provider::stripe::webhooks::signature;
use target_system::provider::{Provider, ledger};
use target_system::testkit::TestStores;
use tokio::sync::mpsc;

const KEY_A: &str = "Bearer sk_test_rig_a";

/// The provider with its native listener (faults) and its Stripe face.
struct Face {
    provider: Provider,
    stripe: String,
    admin: String,
    http: HttpClient,
}

impl Face {
    async fn start(stores: &TestStores, config: TargetConfig) -> Self {
        let (provider, admin, stripe) = common::stripe_face(stores, &config).await;
        Self {
            provider,
            stripe,
            admin,
            http: HttpClient::new(Duration::from_secs(2), 16),
        }
    }

    /// A form POST to the face.
    async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        form: &str,
        timeout: Duration,
    ) -> Result<rig_http::ClientResponse, rig_http::ClientError> {
        let mut headers = vec![
            ("authorization", KEY_A),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        if let Some(key) = key {
            headers.push(("idempotency-key", key));
        }
        self.http
            .send(
                Method::POST,
                &format!("{}{path}", self.stripe),
                &headers,
                Some(Bytes::from(form.to_string())),
                timeout,
            )
            .await
    }

    async fn faults(&self, faults: Value) {
        let answer = self
            .http
            .send(
                Method::POST,
                &format!("{}/admin/faults", self.admin),
                &[("content-type", "application/json")],
                Some(Bytes::from(faults.to_string())),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    }

    async fn charges(&self, order_id: &str) -> Vec<ledger::Charge> {
        ledger::charges_for_order(self.provider.db(), order_id)
            .await
            .unwrap()
    }
}

fn pay_form(order_id: &str) -> String {
    format!(
        "amount=1200&currency=usd&confirm=true&payment_method=pm_card_visa&metadata[order_id]={order_id}"
    )
}

/// One request's key, sent twice at once while the provider is slow: the second is a `409
/// idempotency_key_in_use` with `Stripe-Should-Retry: true`, a retry after the first
/// finished replays it (`Idempotent-Replayed`), and the ledger holds one charge, logged as
/// the key owner's.
async fn in_flight_duplicates_wait_and_replay(stores: TestStores) {
    let face = Face::start(&stores, TargetConfig::default()).await;
    face.faults(json!({"latency_ms": 1000})).await;
    let form = pay_form("o-inflight");
    let (first, second) = tokio::join!(
        face.post(
            "/v1/payment_intents",
            Some("k-1"),
            &form,
            Duration::from_secs(5)
        ),
        async {
            // Sent once the first holds the key: the ledger shows its claim.
            common::eventually(
                Duration::from_secs(5),
                "the first claims the key",
                || async {
                    sqlx::query("SELECT 1 FROM provider_keys WHERE idempotency_key = 'stripe:k-1'")
                        .fetch_optional(&face.provider.db().pool)
                        .await
                        .unwrap()
                        .is_some()
                },
            )
            .await;
            face.post(
                "/v1/payment_intents",
                Some("k-1"),
                &form,
                Duration::from_secs(5),
            )
            .await
        }
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(second.status, StatusCode::CONFLICT, "{:?}", second.body);
    assert_eq!(second.header("stripe-should-retry"), Some("true"));
    let error = second.json::<Value>().unwrap();
    assert_eq!(error["error"]["code"], "idempotency_key_in_use");
    let again = face
        .post(
            "/v1/payment_intents",
            Some("k-1"),
            &form,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body, "the first answer, replayed");
    let charges = face.charges("o-inflight").await;
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(charges[0].idempotency_key, "k-1");
    face.provider.flush().await;
    let callers: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT op, caller, outcome FROM provider_requests WHERE idempotency_key = 'k-1' ORDER BY id",
    )
    .fetch_all(&face.provider.db().pool)
    .await
    .unwrap();
    let outcomes: Vec<&str> = callers.iter().map(|(_, _, o)| o.as_str()).collect();
    assert!(
        callers
            .iter()
            .all(|(op, caller, _)| op == "charge" && caller.as_deref() == Some("a")),
        "{callers:?}"
    );
    for outcome in ["authorized", "in_flight", "replayed"] {
        assert!(outcomes.contains(&outcome), "{outcomes:?}");
    }
}
both_stores!(in_flight_duplicates_wait_and_replay);

/// With every charge committed and then dropped, the caller sees a broken connection; its
/// retry under the same key is answered with the committed intent, and the ledger holds
/// one charge. Without a key the retry is a new intent: two charges for one order, what
/// no-duplicate-charge exists to catch.
async fn a_dropped_answer_is_replayed_under_its_key(stores: TestStores) {
    let face = Face::start(&stores, TargetConfig::default()).await;
    face.faults(json!({"commit_then_drop_rate": 1.0})).await;
    let form = pay_form("o-drop");
    let lost = face
        .post(
            "/v1/payment_intents",
            Some("k-drop"),
            &form,
            Duration::from_secs(5),
        )
        .await;
    assert!(lost.is_err(), "the answer is dropped: {lost:?}");
    face.faults(json!({})).await;
    let retried = face
        .post(
            "/v1/payment_intents",
            Some("k-drop"),
            &form,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(retried.status, StatusCode::OK);
    assert_eq!(retried.json::<Value>().unwrap()["status"], "succeeded");
    assert_eq!(face.charges("o-drop").await.len(), 1);

    face.faults(json!({"commit_then_drop_rate": 1.0})).await;
    let form = pay_form("o-drop-keyless");
    assert!(
        face.post("/v1/payment_intents", None, &form, Duration::from_secs(5))
            .await
            .is_err()
    );
    face.faults(json!({})).await;
    face.post("/v1/payment_intents", None, &form, Duration::from_secs(5))
        .await
        .unwrap();
    let twice = face.charges("o-drop-keyless").await;
    assert_eq!(
        twice.iter().filter(|c| c.status == "authorized").count(),
        2,
        "{twice:?}"
    );
}
both_stores!(a_dropped_answer_is_replayed_under_its_key);

/// A webhook endpoint on `127.0.0.1:0`: each delivery's body and signature arrive on the
/// channel; the first `fail_first` deliveries are answered `500`.
async fn endpoint(fail_first: usize) -> (String, mpsc::UnboundedReceiver<(String, String)>) {
    let listener = listener().await;
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(rig_http::serve(
        listener,
        move |req| {
            let (tx, seen) = (tx.clone(), seen.clone());
            async move {
                let signature = req
                    .headers()
                    .get("stripe-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let body = rig_http::read_body(req.into_body(), 1 << 20).await.unwrap();
                let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = tx.send((String::from_utf8_lossy(&body).into_owned(), signature));
                let status = if n < fail_first {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                };
                Ok(rig_http::json(status, &json!({})))
            }
        },
        std::future::pending::<()>(),
    ));
    (url, rx)
}

/// The next delivery within 10 s.
async fn next(rx: &mut mpsc::UnboundedReceiver<(String, String)>) -> (Value, String, String) {
    let (body, signature) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a delivery within 10 s")
        .unwrap();
    (serde_json::from_str(&body).unwrap(), body, signature)
}

/// A configured endpoint gets its caller's `payment_intent.succeeded`, signed with the
/// configured secret over the exact body; an endpoint that answers `500` gets it again
/// (the delivery records two attempts); the duplicate fault sends one event twice; the drop
/// fault loses one (recorded `dropped`); the delay fault holds one back at least that long.
async fn webhooks_are_signed_retried_and_faulted(stores: TestStores) {
    let (url, mut rx) = endpoint(1).await;
    let mut config = TargetConfig::default();
    config.provider.stripe_webhooks.insert("a".into(), url);
    let face = Face::start(&stores, config).await;
    let paid = face
        .post(
            "/v1/payment_intents",
            Some("w-1"),
            &pay_form("o-w1"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let intent = paid.json::<Value>().unwrap();
    let (failed, _, _) = next(&mut rx).await;
    let (event, body, sig) = next(&mut rx).await;
    assert_eq!(failed["id"], event["id"], "the refused delivery is retried");
    assert_eq!(event["type"], "payment_intent.succeeded");
    assert_eq!(event["data"]["object"]["id"], intent["id"]);
    let at: i64 = sig
        .split(',')
        .find_map(|p| p.strip_prefix("t="))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(sig, signature("whsec_rig_test_secret", at, &body));
    let db = face.provider.db().clone();
    common::eventually(Duration::from_secs(5), "the delivery is recorded", || async {
        sqlx::query(
            "SELECT attempts FROM provider_webhook_deliveries WHERE status = 'delivered' AND event_id = $1",
        )
        .bind(event["id"].as_str().unwrap())
        .fetch_optional(&db.pool)
        .await
        .unwrap()
        .is_some_and(|row| row.get::<i64, _>(0) == 2)
    })
    .await;

    face.faults(json!({"webhook_duplicate_rate": 1.0})).await;
    face.post(
        "/v1/payment_intents",
        None,
        &pay_form("o-w2"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let (one, _, _) = next(&mut rx).await;
    let (two, _, _) = next(&mut rx).await;
    assert_eq!(one["id"], two["id"], "the same event twice");

    face.faults(json!({"webhook_drop_rate": 1.0})).await;
    face.post(
        "/v1/payment_intents",
        None,
        &pay_form("o-w3"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    common::eventually(
        Duration::from_secs(5),
        "the event is recorded lost",
        || async {
            sqlx::query("SELECT 1 FROM provider_webhook_deliveries WHERE status = 'dropped'")
                .fetch_optional(&db.pool)
                .await
                .unwrap()
                .is_some()
        },
    )
    .await;

    face.faults(json!({"webhook_delay_ms": 1500})).await;
    let sent = std::time::Instant::now();
    face.post(
        "/v1/payment_intents",
        None,
        &pay_form("o-w4"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let (late, _, _) = next(&mut rx).await;
    assert_eq!(
        late["data"]["object"]["metadata"]["order_id"], "o-w4",
        "the dropped one never came"
    );
    assert!(
        sent.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        sent.elapsed()
    );
    assert!(rx.try_recv().is_err(), "nothing else came");
}
both_stores!(webhooks_are_signed_retried_and_faulted);

/// Two confirms of one intent under different keys while the first is slow: the second is
/// `429 lock_timeout` (retryable), not saved under its key, so its retry once the first
/// settled runs and is told the intent already succeeded; the intent's capture method can
/// be chosen at confirm; an https webhook URL (no TLS here) is refused up front.
async fn conflicts_are_retryable_and_not_saved(stores: TestStores) {
    let face = Face::start(&stores, TargetConfig::default()).await;
    let created = face
        .post(
            "/v1/payment_intents",
            None,
            "amount=700&currency=usd&payment_method=pm_card_visa&metadata[order_id]=o-race",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let id = created.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    face.faults(json!({"latency_ms": 1000})).await;
    let confirm = format!("/v1/payment_intents/{id}/confirm");
    let (first, second) = tokio::join!(
        face.post(
            &confirm,
            Some("c-1"),
            "capture_method=manual",
            Duration::from_secs(5)
        ),
        async {
            common::eventually(Duration::from_secs(5), "the first takes the intent", || async {
                sqlx::query(
                    "SELECT 1 FROM provider_payment_intents WHERE intent_id = $1 AND status = 'processing'",
                )
                .bind(&id)
                .fetch_optional(&face.provider.db().pool)
                .await
                .unwrap()
                .is_some()
            })
            .await;
            face.post(&confirm, Some("c-2"), "", Duration::from_secs(5))
                .await
        }
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(
        first.json::<Value>().unwrap()["status"],
        "requires_capture",
        "capture_method=manual at confirm holds the money"
    );
    assert_eq!(
        second.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        second.body
    );
    assert_eq!(second.header("stripe-should-retry"), Some("true"));
    assert_eq!(
        second.json::<Value>().unwrap()["error"]["code"],
        "lock_timeout"
    );
    let retried = face
        .post(&confirm, Some("c-2"), "", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        retried.header("idempotent-replayed"),
        None,
        "the 429 was not saved"
    );
    assert_eq!(
        retried.json::<Value>().unwrap()["error"]["code"],
        "payment_intent_unexpected_state",
        "{:?}",
        retried.body
    );
    assert_eq!(face.charges("o-race").await.len(), 1);
    let https = face
        .post(
            "/v1/webhook_endpoints",
            None,
            "url=https://example.test/hook&enabled_events[]=*",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(https.status, StatusCode::BAD_REQUEST, "{:?}", https.body);
}
both_stores!(conflicts_are_retryable_and_not_saved);
