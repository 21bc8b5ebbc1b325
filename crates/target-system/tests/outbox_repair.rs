//! The outbox relay and consumer, and the repair worker's decisions, on real stores.

mod common;

use std::time::Duration;

use common::{Harness, count, order_owned_by, quiet_config};
use evidence::RegionId;
use serde_json::json;
use target_system::testkit::TestStores;

/// The relay is interrupted between delivering an event and marking it published (its
/// durable effect: the row is still unpublished after delivery): the next pass delivers again
/// and the consumer's dedup table keeps the effect to exactly one.
async fn relay_crash_between_delivery_and_mark(stores: TestStores) {
    let h = Harness::start(stores, quiet_config()).await;
    let region = h.region(RegionId::A);
    let order = order_owned_by(RegionId::A, "relay");
    assert_eq!(
        h.checkout(RegionId::A, &order, json!([{"sku": "sku-1", "qty": 1}]))
            .await
            .status,
        201
    );
    let db = region.db();
    assert_eq!(region.relay_once().await.unwrap(), 1);
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM fulfilments WHERE order_id = $1",
            &order
        )
        .await,
        1
    );

    // The crash: the delivery happened, the mark was lost.
    sqlx::query("UPDATE outbox SET published_at_us = NULL WHERE order_id = $1")
        .bind(&order)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(region.relay_once().await.unwrap(), 1, "redelivered");
    assert_eq!(region.relay_once().await.unwrap(), 0, "nothing left");
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM fulfilments WHERE order_id = $1",
            &order
        )
        .await,
        1
    );
    assert_eq!(
        count(
            db,
            "SELECT delivery_attempts FROM outbox WHERE order_id = $1",
            &order
        )
        .await,
        2
    );
    assert_eq!(count(db, "SELECT COUNT(*) FROM consumer_dedup WHERE event_id IN (SELECT event_id FROM outbox WHERE order_id = $1)", &order).await, 1);
    h.shutdown().await;
}
both_stores!(relay_crash_between_delivery_and_mark);

/// A pending order whose payment never reached the provider (outage) is voided after
/// `void_after_seconds` and fails safely; the tombstone then refuses a late charge with the key.
async fn unknown_payment_is_voided_and_fails_safely(stores: TestStores) {
    let mut config = quiet_config();
    config.repair.void_after_seconds = 0;
    let h = Harness::start(stores, config).await;
    h.set_faults(json!({"outage": true})).await;
    let order = order_owned_by(RegionId::A, "void");
    let response = h
        .checkout(RegionId::A, &order, json!([{"sku": "sku-1", "qty": 3}]))
        .await;
    assert_eq!(
        response.status, 202,
        "an outage is not a failure: {:?}",
        response.body
    );
    h.set_faults(json!({})).await;
    let region = h.region(RegionId::A);
    let report = region.repair_once().await.unwrap();
    assert_eq!(report.failed_safely, 1, "{report:?}");
    assert_eq!(h.status(&order).await["status"], "failed_safely");
    let db = region.db();
    assert_eq!(
        count(db, "SELECT reserved FROM inventory WHERE sku = $1", "sku-1").await,
        0
    );
    // The tombstone: a charge with the voided key is refused and creates nothing.
    let late = h
        .post(
            &format!("{}/v1/charges", h.provider_url()),
            &[("idempotency-key", &format!("pay:{order}"))],
            json!({"order_id": order, "amount_cents": 3600, "currency": "USD"}),
        )
        .await;
    assert_eq!(late.status, 410);
    assert!(h.charges(&order).await.is_empty());
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM payment_attempts WHERE order_id = $1 AND op = 'void'",
            &order
        )
        .await,
        1
    );
    h.shutdown().await;
}
both_stores!(unknown_payment_is_voided_and_fails_safely);

/// Conflicting evidence (the provider charged a different amount under the order's key)
/// moves the order to needs_reconciliation; the next scan refunds, voids and fails safely.
async fn conflicting_evidence_is_reconciled(stores: TestStores) {
    let mut config = quiet_config();
    config.payment.per_try_timeout_ms = 100;
    let h = Harness::start(stores, config).await;
    let order = order_owned_by(RegionId::B, "recon");
    // The provider is slow, so the region records payment_pending; the charge lands later,
    // and the ledger is then altered to carry another amount under the order's key: a
    // provider-side discrepancy the region cannot explain.
    h.set_faults(json!({"latency_ms": 400})).await;
    let response = h
        .checkout(RegionId::B, &order, json!([{"sku": "sku-1", "qty": 1}]))
        .await;
    assert_eq!(response.status, 202);
    common::eventually(
        Duration::from_secs(5),
        "the slow charge commits",
        || async { h.charges(&order).await.len() == 1 },
    )
    .await;
    let (provider, _) = h.system.provider.as_ref().unwrap();
    sqlx::query("UPDATE provider_charges SET amount_cents = 999 WHERE order_id = $1")
        .bind(&order)
        .execute(&provider.db().pool)
        .await
        .unwrap();
    let region = h.region(RegionId::B);
    let first = region.repair_once().await.unwrap();
    assert_eq!(first.to_reconciliation, 1, "{first:?}");
    assert_eq!(h.status(&order).await["status"], "needs_reconciliation");
    let second = region.repair_once().await.unwrap();
    assert_eq!(second.failed_safely, 1, "{second:?}");
    assert_eq!(h.status(&order).await["status"], "failed_safely");
    let charges = h.charges(&order).await;
    assert_eq!(charges[0].net_cents(), 0, "refunded: {charges:?}");
    h.shutdown().await;
}
both_stores!(conflicting_evidence_is_reconciled);

/// With its background loops on, the system resolves a pending order by itself and
/// publishes its confirmation.
async fn workers_run_by_themselves(stores: TestStores) {
    let mut config = target_system::TargetConfig::default();
    config.payment.per_try_timeout_ms = 100;
    config.repair.scan_interval_ms = 100;
    config.outbox.poll_interval_ms = 50;
    let h = Harness::start(stores, config).await;
    h.set_faults(json!({"latency_ms": 300})).await;
    let order = order_owned_by(RegionId::A, "bg");
    assert_eq!(
        h.checkout(RegionId::A, &order, json!([{"sku": "sku-5", "qty": 1}]))
            .await
            .status,
        202
    );
    h.set_faults(json!({})).await;
    common::eventually(
        Duration::from_secs(10),
        "repair confirms and the relay publishes",
        || async {
            let db = h.region(RegionId::A).db();
            h.status(&order).await["status"] == "order_confirmed"
                && count(
                    db,
                    "SELECT COUNT(*) FROM fulfilments WHERE order_id = $1",
                    &order,
                )
                .await
                    == 1
        },
    )
    .await;
    h.shutdown().await;
}
both_stores!(workers_run_by_themselves);
