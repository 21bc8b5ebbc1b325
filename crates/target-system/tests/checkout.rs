//! Checkout through real HTTP: idempotency, payment ambiguity, declines, no oversell, forwarding.

mod common;

use std::time::Duration;

use common::{Harness, count, order_owned_by, quiet_config};
use evidence::RegionId;
use serde_json::{Value, json};
use target_system::testkit::TestStores;

/// The same checkout sent twice in a row and ten times at once makes exactly one provider
/// charge and replays the same outcome; the same key with another body gets 422.
async fn duplicate_checkouts_charge_once(stores: TestStores) {
    let h = Harness::start(stores, quiet_config()).await;
    let items = json!([{"sku": "sku-1", "qty": 2}]);
    let order = order_owned_by(RegionId::A, "dup-seq");
    let first = h.checkout(RegionId::A, &order, items.clone()).await;
    let second = h.checkout(RegionId::A, &order, items.clone()).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(second.status, 201);
    assert_eq!(first.body, second.body);
    assert_eq!(h.charges(&order).await.len(), 1);

    // Concurrent duplicates, with a slow provider so they really overlap.
    h.set_faults(json!({"latency_ms": 150})).await;
    let order = order_owned_by(RegionId::B, "dup-conc");
    let mut tasks = Vec::new();
    for i in 0..10 {
        let client = h.client.clone();
        // Half enter at the owner, half at the other region (forwarded).
        let entry = if i % 2 == 0 { RegionId::A } else { RegionId::B };
        let url = format!("{}/v1/checkout", h.url(entry));
        let order = order.clone();
        let body = json!({"order_id": order, "customer_id": "cust-1", "items": items});
        tasks.push(tokio::spawn(async move {
            client
                .send(
                    rig_http::Method::POST,
                    &url,
                    &[("idempotency-key", order.as_str())],
                    Some(bytes::Bytes::from(body.to_string())),
                    Duration::from_secs(10),
                )
                .await
                .expect("answered")
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        let response = task.await.unwrap();
        answers.push((response.status.as_u16(), response.body));
    }
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "all replay one outcome: {answers:?}"
    );
    assert_eq!(answers[0].0, 201);
    let charges = h.charges(&order).await;
    assert_eq!(charges.len(), 1, "exactly one charge: {charges:?}");
    assert_eq!(charges[0].idempotency_key, format!("pay:{order}"));

    // Same key, different body.
    let changed = h
        .checkout(RegionId::A, &order, json!([{"sku": "sku-1", "qty": 3}]))
        .await;
    assert_eq!(changed.status, 422);
    assert_eq!(h.charges(&order).await.len(), 1);
    h.shutdown().await;
}
both_stores!(duplicate_checkouts_charge_once);

/// The provider answers after the per-try timeout but commits: the client gets 202
/// payment_pending, the repair worker then confirms from the provider's record, exactly one
/// charge exists, and the confirmation event is in the outbox.
async fn timeout_after_commit_becomes_pending_then_confirmed(stores: TestStores) {
    let mut config = quiet_config();
    config.payment.per_try_timeout_ms = 150;
    let h = Harness::start(stores, config).await;
    h.set_faults(json!({"latency_ms": 600})).await;
    let order = order_owned_by(RegionId::A, "slow");
    let response = h
        .checkout(RegionId::A, &order, json!([{"sku": "sku-2", "qty": 1}]))
        .await;
    assert_eq!(response.status, 202, "{:?}", response.body);
    let body: Value = response.json().unwrap();
    assert_eq!(body["status"], "payment_pending");
    assert_eq!(body["status_url"], format!("/v1/orders/{order}"));
    assert_eq!(h.status(&order).await["status"], "payment_pending");

    // A retry while pending replays pending and makes no second charge.
    let retry = h
        .checkout(RegionId::A, &order, json!([{"sku": "sku-2", "qty": 1}]))
        .await;
    assert_eq!(retry.status, 202);

    // The provider commits late; the repair worker finds it by key.
    common::eventually(
        Duration::from_secs(5),
        "the late charge is committed",
        || async { h.charges(&order).await.len() == 1 },
    )
    .await;
    let report = h.region(RegionId::A).repair_once().await.unwrap();
    assert_eq!(report.confirmed, 1, "{report:?}");
    assert_eq!(h.status(&order).await["status"], "order_confirmed");
    let charges = h.charges(&order).await;
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].net_cents(), 2_500);
    let db = h.region(RegionId::A).db();
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM outbox WHERE order_id = $1",
            &order
        )
        .await,
        1
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM order_transitions WHERE order_id = $1 AND actor = 'repair'",
            &order
        )
        .await,
        1
    );
    let replay = h
        .checkout(RegionId::A, &order, json!([{"sku": "sku-2", "qty": 1}]))
        .await;
    assert_eq!(replay.status, 201, "the retry now replays the confirmation");
    h.shutdown().await;
}
both_stores!(timeout_after_commit_becomes_pending_then_confirmed);

/// A declined payment fails safely: inventory released, no live charge, no outbox event.
async fn declined_payment_fails_safely(stores: TestStores) {
    let h = Harness::start(stores, quiet_config()).await;
    let order = order_owned_by(RegionId::B, "decl");
    // sku-declined costs $10.51: the provider's documented decline rule.
    let response = h
        .checkout(
            RegionId::B,
            &order,
            json!([{"sku": "sku-declined", "qty": 1}]),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let body: Value = response.json().unwrap();
    assert_eq!(body["status"], "failed_safely");
    assert!(
        body["reason"].as_str().unwrap().starts_with("declined"),
        "{body}"
    );
    let charges = h.charges(&order).await;
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].status, "declined");
    assert_eq!(charges[0].net_cents(), 0);
    let db = h.region(RegionId::B).db();
    assert_eq!(
        count(
            db,
            "SELECT reserved FROM inventory WHERE sku = $1",
            "sku-declined"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM reservations WHERE order_id = $1 AND status = 'released'",
            &order
        )
        .await,
        1
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM outbox WHERE order_id = $1",
            &order
        )
        .await,
        0
    );
    h.shutdown().await;
}
both_stores!(declined_payment_fails_safely);

/// Stock 10 and 50 concurrent checkouts of that sku: exactly 10 confirmed, 40 failed safely
/// out of stock, nothing oversold.
async fn no_oversell_under_concurrency(stores: TestStores) {
    let mut config = quiet_config();
    config.stock.insert("sku-3".into(), 10);
    let h = Harness::start(stores, config).await;
    let region = RegionId::A;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let client = h.client.clone();
        let url = format!("{}/v1/checkout", h.url(region));
        let order = order_owned_by(region, &format!("stock-{i}"));
        let body = json!({"order_id": order, "customer_id": format!("c{i}"), "items": [{"sku": "sku-3", "qty": 1}]});
        tasks.push(tokio::spawn(async move {
            client
                .send(
                    rig_http::Method::POST,
                    &url,
                    &[("idempotency-key", order.as_str())],
                    Some(bytes::Bytes::from(body.to_string())),
                    Duration::from_secs(20),
                )
                .await
                .expect("answered")
        }));
    }
    let (mut confirmed, mut out_of_stock) = (0, 0);
    for task in tasks {
        let response = task.await.unwrap();
        let body: Value = response.json().unwrap();
        match (response.status.as_u16(), body["status"].as_str()) {
            (201, Some("order_confirmed")) => confirmed += 1,
            (200, Some("failed_safely")) => {
                assert_eq!(body["reason"], "out_of_stock:sku-3");
                out_of_stock += 1;
            }
            other => panic!("unexpected answer {other:?}: {body}"),
        }
    }
    assert_eq!((confirmed, out_of_stock), (10, 40));
    let db = h.region(region).db();
    assert_eq!(
        count(db, "SELECT reserved FROM inventory WHERE sku = $1", "sku-3").await,
        10
    );
    assert_eq!(
        count(db, "SELECT COALESCE(CAST(SUM(qty) AS BIGINT), 0) FROM reservations WHERE sku = $1 AND status = 'committed'", "sku-3").await,
        10
    );
    h.shutdown().await;
}
both_stores!(no_oversell_under_concurrency);

/// Bad input gets 400 naming the field and writes nothing, including a body over the size
/// limit and JSON nested deeper than the parser's depth limit.
async fn bad_input_is_refused_and_writes_nothing(stores: TestStores) {
    let h = Harness::start(stores, quiet_config()).await;
    let url = format!("{}/v1/checkout", h.url(RegionId::A));
    let order = order_owned_by(RegionId::A, "bad");
    type Case<'a> = (Vec<(&'a str, &'a str)>, String, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![],
            json!({"order_id": order, "customer_id": "c", "items": [{"sku": "sku-1", "qty": 1}]})
                .to_string(),
            "Idempotency-Key",
        ),
        (
            vec![("idempotency-key", order.as_str())],
            "{not json".to_string(),
            "body",
        ),
        (
            vec![("idempotency-key", order.as_str())],
            json!({"order_id": order, "customer_id": "c", "items": [{"sku": "nope", "qty": 1}]})
                .to_string(),
            "items[0].sku",
        ),
        (
            vec![("idempotency-key", order.as_str())],
            json!({"order_id": order, "customer_id": "c", "items": [{"sku": "sku-1", "qty": 0}]})
                .to_string(),
            "items[0].qty",
        ),
        (
            vec![("idempotency-key", order.as_str())],
            format!(
                "{{\"order_id\":\"{order}\",\"pad\":\"{}\"}}",
                "x".repeat(70_000)
            ),
            "body",
        ),
        (
            // JSON nested 60,000 deep (under the size limit): refused at serde_json's depth
            // limit (128), not a stack overflow.
            vec![("idempotency-key", order.as_str())],
            "[".repeat(60_000),
            "body",
        ),
    ];
    for (headers, body, field) in cases {
        let response = h
            .client
            .send(
                rig_http::Method::POST,
                &url,
                &headers,
                Some(bytes::Bytes::from(body)),
                Duration::from_secs(5),
            )
            .await
            .expect("answered");
        assert_eq!(response.status, 400, "{field}: {:?}", response.body);
        let problem: Value = response.json().unwrap();
        assert_eq!(problem["field"], field, "{problem}");
    }
    let db = h.region(RegionId::A).db();
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM orders WHERE order_id = $1",
            &order
        )
        .await,
        0
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM order_transitions WHERE order_id = $1",
            &order
        )
        .await,
        0
    );
    assert!(h.charges(&order).await.is_empty());
    h.shutdown().await;
}
both_stores!(bad_input_is_refused_and_writes_nothing);

/// A checkout entering the non-owner region is forwarded: only the owner writes the order,
/// the entry region is recorded, and status reads route to the owner from either region.
async fn non_owner_forwards_to_owner(stores: TestStores) {
    let h = Harness::start(stores, quiet_config()).await;
    let order = order_owned_by(RegionId::B, "fwd");
    let response = h
        .checkout(RegionId::A, &order, json!([{"sku": "sku-4", "qty": 1}]))
        .await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    let a = h.region(RegionId::A).db();
    let b = h.region(RegionId::B).db();
    assert_eq!(
        count(a, "SELECT COUNT(*) FROM orders WHERE order_id = $1", &order).await,
        0
    );
    assert_eq!(
        count(b, "SELECT COUNT(*) FROM orders WHERE order_id = $1", &order).await,
        1
    );
    for entry in [RegionId::A, RegionId::B] {
        let view: Value = h
            .get(&format!("{}/v1/orders/{order}", h.url(entry)))
            .await
            .json()
            .unwrap();
        assert_eq!(view["status"], "order_confirmed");
        assert_eq!(view["owner_region"], "b");
        assert_eq!(view["entry_region"], "a");
        assert_eq!(view["version"], 4);
    }
    h.shutdown().await;
}
both_stores!(non_owner_forwards_to_owner);

/// Carts are stored and versioned; admin state lists inventory; pause (with the `reject`
/// degraded mode) refuses new checkouts with 503 + Retry-After while carts and status stay
/// available, and resume restores them.
async fn carts_admin_and_pause(stores: TestStores) {
    let mut config = quiet_config();
    config.breaker.degraded_mode = target_system::config::DegradedMode::Reject;
    let h = Harness::start(stores, config).await;
    let url = h.url(RegionId::A);
    let cart = h
        .client
        .send(
            rig_http::Method::PUT,
            &format!("{url}/v1/carts/cart-1"),
            &[],
            Some(bytes::Bytes::from(
                json!({"customer_id": "c1", "items": [{"sku": "sku-1", "qty": 1}]}).to_string(),
            )),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(cart.status, 200, "{:?}", cart.body);
    let cart: Value = h
        .get(&format!("{url}/v1/carts/cart-1"))
        .await
        .json()
        .unwrap();
    assert_eq!(cart["version"], 1);
    assert_eq!(cart["items"][0]["sku"], "sku-1");

    let state: Value = h.get(&format!("{url}/admin/state")).await.json().unwrap();
    assert_eq!(state["mode"], "normal");
    let skus: Vec<&str> = state["inventory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["sku"].as_str().unwrap())
        .collect();
    assert!(skus.contains(&"sku-1") && state["inventory"][0]["stock"].as_i64().unwrap() > 0);

    let paused = h
        .post(&format!("{url}/admin/payments/pause"), &[], json!({}))
        .await;
    assert_eq!(paused.status, 200);
    let order = order_owned_by(RegionId::A, "paused");
    let refused = h
        .checkout(RegionId::A, &order, json!([{"sku": "sku-1", "qty": 1}]))
        .await;
    assert_eq!(refused.status, 503);
    assert!(refused.header("retry-after").is_some());
    assert!(h.charges(&order).await.is_empty());
    assert_eq!(h.get(&format!("{url}/v1/carts/cart-1")).await.status, 200);
    h.post(&format!("{url}/admin/payments/resume"), &[], json!({}))
        .await;
    let accepted = h
        .checkout(RegionId::A, &order, json!([{"sku": "sku-1", "qty": 1}]))
        .await;
    assert_eq!(accepted.status, 201);
    let db = h.region(RegionId::A).db();
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM mode_changes WHERE actor = $1",
            "operator"
        )
        .await,
        2
    );
    h.shutdown().await;
}
both_stores!(carts_admin_and_pause);
