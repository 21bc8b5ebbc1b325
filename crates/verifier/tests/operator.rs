//! Manual repair through the owner region's admin API (`POST /admin/orders/{id}/resolve`):
//! checked against the provider's record, audited, a transition with actor `operator`; and
//! the verifier checks every operator decision against the provider's ledger.

mod common;

use std::time::Duration;

use common::{checkout, finish};
use evidence::{RegionId, StoreName};
use serde_json::{Value, json};
use sqlx::Row;
use target_system::testkit::harness::{Harness, eventually, order_owned_by, quiet_config};
use target_system::testkit::sqlite;
use verifier::Status;

async fn resolve(h: &Harness, region: RegionId, order: &str, body: Value) -> (u16, Value) {
    let url = format!("{}/admin/orders/{order}/resolve", h.url(region));
    let response = h.post(&url, &[], body).await;
    let status = response.status.as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// The money-conservation verdict of a finished scenario.
async fn money_conservation(finished: &common::Finished) -> verifier::Verdict {
    finished
        .verify()
        .await
        .verdicts
        .into_iter()
        .find(|v| v.invariant == "money-conservation")
        .unwrap()
}

/// The answer's body, once its status is `status`.
fn expect((status, body): (u16, Value), wanted: u16) -> Value {
    assert_eq!(status, wanted, "{body}");
    body
}

fn decision(decision: &str) -> Value {
    json!({"decision": decision, "operator": "alice", "note": "looked at the provider dashboard"})
}

/// On SQLite: see [`scenario`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_decisions_are_checked_audited_and_verified() {
    scenario(sqlite("operator")).await;
}

/// The same on PostgreSQL stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_decisions_on_postgres() {
    if let Some(stores) = target_system::testkit::postgres("operator-pg") {
        scenario(stores).await;
    }
}

/// A paid pending order (its charge landed after the region gave up) is confirmed by an
/// operator; confirming an unpaid one (parked while payments were paused: the provider never
/// saw its key) is refused with 409 and the provider's record; failing it voids the key
/// first and says so. Bad input is 400, the wrong region 409 naming the owner; every
/// decision is an audit row, the applied ones transitions with actor `operator`. The
/// verifier passes the result, counting the operator decisions, and fails
/// money-conservation once the store is altered to say the operator confirmed the unpaid
/// order.
async fn scenario(stores: target_system::testkit::TestStores) {
    let mut config = quiet_config();
    config.payment.per_try_timeout_ms = 100;
    config.payment.deadline_ms = 250;
    let h = Harness::start(stores, config).await;
    let cart = json!([{"sku": "sku-1", "qty": 1}]);
    // Paid, but the region gave up before the answer: pending.
    h.set_faults(json!({"latency_ms": 400})).await;
    let paid = order_owned_by(RegionId::A, "op-paid");
    let mut told = vec![checkout(&h, RegionId::A, &paid, cart.clone()).await];
    assert_eq!(told[0].status, 202, "{told:?}");
    h.set_faults(json!({})).await;
    eventually(
        Duration::from_secs(10),
        "the slow charge landed",
        || async {
            h.charges(&paid)
                .await
                .iter()
                .any(|c| c.status == "authorized")
        },
    )
    .await;
    // Unpaid: parked while payments are paused, so never sent.
    let admin = |path: &str| format!("{}/admin/payments/{path}", h.url(RegionId::A));
    assert_eq!(h.post(&admin("pause"), &[], json!({})).await.status, 200);
    let unpaid = order_owned_by(RegionId::A, "op-unpaid");
    told.push(checkout(&h, RegionId::A, &unpaid, cart.clone()).await);
    assert_eq!(told[1].status, 202, "{told:?}");
    assert_eq!(h.post(&admin("resume"), &[], json!({})).await.status, 200);

    // (order, decision, answer, a field of the answer, what it says)
    let steps = [
        (&unpaid, "confirm", 409, "error", "evidence_contradicts"),
        (&unpaid, "confirm", 409, "provider", "never seen"),
        (&paid, "confirm", 200, "status", "order_confirmed"),
        (&unpaid, "fail", 200, "did", "key voided"),
        // Final now: nothing left to resolve.
        (&paid, "fail", 409, "message", "order_confirmed"),
    ];
    for (order, what, status, field, says) in steps {
        let body = expect(
            resolve(&h, RegionId::A, order, decision(what)).await,
            status,
        );
        assert!(
            body[field].to_string().contains(says),
            "{what} {order}: {body}"
        );
    }
    // Bad input names the field; the wrong region names the owner.
    let (status, body) = resolve(
        &h,
        RegionId::A,
        &paid,
        json!({"decision": "maybe", "operator": "a", "note": "n"}),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("decision")),
        "{body}"
    );
    let (status, body) = resolve(
        &h,
        RegionId::A,
        &paid,
        json!({"decision": "fail", "note": "x"}),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("operator")),
        "{body}"
    );
    let body = expect(
        resolve(&h, RegionId::B, &paid, decision("confirm")).await,
        409,
    );
    assert!(
        body.to_string().contains("resolve it on region a"),
        "{body}"
    );

    let finished = finish(h, &told).await;
    let region = finished.db(StoreName::Region(RegionId::A)).await;
    let audit: Vec<(String, String, String)> = sqlx::query(
        "SELECT order_id, decision, outcome FROM operator_decisions WHERE operator = 'alice' ORDER BY id",
    )
    .fetch_all(&region.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    let row = |order: &str, d: &str, o: &str| (order.to_string(), d.to_string(), o.to_string());
    assert_eq!(
        audit,
        [
            row(&unpaid, "confirm", "refused"),
            row(&unpaid, "confirm", "refused"),
            row(&paid, "confirm", "applied"),
            row(&unpaid, "fail", "applied"),
            row(&paid, "fail", "refused"),
        ]
    );
    let operator_moves: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM order_transitions WHERE actor = 'operator'")
            .fetch_one(&region.pool)
            .await
            .unwrap();
    assert_eq!(operator_moves, 2);

    let money = money_conservation(&finished).await;
    assert_eq!(money.status, Status::Pass, "{money:?}");
    assert!(
        money.summary.contains("2 operator decisions"),
        "{}",
        money.summary
    );

    // Altered as a buggy manual repair would leave it: the operator "confirmed" the order
    // the provider never charged.
    sqlx::query(
        "UPDATE order_transitions SET to_state = 'order_confirmed' WHERE order_id = $1 AND actor = 'operator'",
    )
    .bind(&unpaid)
    .execute(&region.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE orders SET status = 'order_confirmed' WHERE order_id = $1")
        .bind(&unpaid)
        .execute(&region.pool)
        .await
        .unwrap();
    let money = money_conservation(&finished).await;
    assert_eq!(money.status, Status::Fail, "{money:?}");
    let dossier = &money.dossiers[0];
    assert_eq!(dossier.order_id.as_deref(), Some(unpaid.as_str()));
    assert!(
        dossier
            .narrative
            .contains("an operator's decision contradicts"),
        "{}",
        dossier.narrative
    );
}
