//! Each defect switch, under a scenario that exposes it, changes the durable records the way
//! the verifier's invariant of the same concern will catch; the same scenario without the
//! switch leaves them clean. (SQLite; the mechanisms themselves are tested on both stores.)

mod common;

use std::time::Duration;

use common::{
    Harness, Mode, attempts, count, max_concurrency, order_owned_by, quiet_config,
    retry_budget_violation,
};
use evidence::RegionId;
use serde_json::json;
use target_system::testkit::sqlite;
use target_system::{Defect, TargetConfig};

fn with(defect: Option<Defect>, mut config: TargetConfig) -> TargetConfig {
    config.defects.extend(defect);
    config
}

/// fresh-key-per-retry + a slow provider: each retry is a new charge, so one order ends with
/// more than one live charge (no-duplicate-charge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_key_per_retry_double_charges() {
    async fn live_charges(defect: Option<Defect>) -> usize {
        let mut config = quiet_config();
        config.payment.per_try_timeout_ms = 100;
        config.payment.deadline_ms = 1_000;
        let h = Harness::start(sqlite("freshkey"), with(defect, config)).await;
        h.set_faults(json!({"latency_ms": 250})).await;
        let order = order_owned_by(RegionId::A, "fresh");
        h.checkout(RegionId::A, &order, json!([{"sku": "sku-1", "qty": 1}]))
            .await;
        let attempts_made = attempts(h.region(RegionId::A).db())
            .await
            .iter()
            .filter(|a| a.op == "charge")
            .count();
        common::eventually(Duration::from_secs(5), "every slow charge has landed", || async {
            let (provider, _) = h.system.provider.as_ref().unwrap();
            provider.flush().await;
            count(provider.db(), "SELECT COUNT(*) FROM provider_keys WHERE state = 'processing' AND idempotency_key LIKE $1", &format!("pay:{order}%")).await == 0
        })
        .await;
        assert!(attempts_made >= 2, "the scenario retries");
        let live = h
            .charges(&order)
            .await
            .iter()
            .filter(|c| c.net_cents() > 0)
            .count();
        h.shutdown().await;
        live
    }
    assert!(live_charges(Some(Defect::FreshKeyPerRetry)).await >= 2);
    assert_eq!(live_charges(None).await, 1);
}

/// confirm-on-timeout + a provider link that swallows requests: the order is confirmed with
/// no charge behind it (money-conservation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_on_timeout_confirms_unpaid_orders() {
    async fn run(defect: Option<Defect>) -> (String, usize) {
        let mut config = quiet_config();
        config.payment.per_try_timeout_ms = 100;
        config.payment.deadline_ms = 300;
        let (h, links) =
            Harness::start_linked(sqlite("confirmtimeout"), with(defect, config)).await;
        links.a_to_provider.set(Mode::Blackhole);
        let order = order_owned_by(RegionId::A, "cot");
        h.checkout(RegionId::A, &order, json!([{"sku": "sku-1", "qty": 1}]))
            .await;
        let status = h.status(&order).await["status"]
            .as_str()
            .unwrap()
            .to_string();
        let live = h
            .charges(&order)
            .await
            .iter()
            .filter(|c| c.net_cents() > 0)
            .count();
        h.shutdown().await;
        (status, live)
    }
    assert_eq!(
        run(Some(Defect::ConfirmOnTimeout)).await,
        ("order_confirmed".into(), 0)
    );
    assert_eq!(run(None).await, ("payment_pending".into(), 0));
}

/// no-retry-budget + a failing provider and a budget of zero: retries happen anyway, beyond
/// the budget in some window (admission-control, retry budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retry_budget_exceeds_the_budget() {
    async fn violation(defect: Option<Defect>) -> Option<(usize, usize)> {
        let mut config = quiet_config();
        config.retry_budget.ratio = 0.0;
        config.retry_budget.min_per_sec = 0.0;
        let budget = config.retry_budget.clone();
        let h = Harness::start(sqlite("nobudget"), with(defect, config)).await;
        h.set_faults(json!({"error_rate": 1.0})).await;
        for i in 0..5 {
            let order = order_owned_by(RegionId::A, &format!("nrb-{i}"));
            h.checkout(RegionId::A, &order, json!([{"sku": "sku-1", "qty": 1}]))
                .await;
        }
        let calls = attempts(h.region(RegionId::A).db()).await;
        h.shutdown().await;
        retry_budget_violation(&calls, budget.ratio, budget.min_per_sec, budget.ttl_seconds)
    }
    assert!(violation(Some(Defect::NoRetryBudget)).await.is_some());
    assert_eq!(violation(None).await, None);
}

/// no-admission-control + a slow provider and 30 concurrent checkouts: concurrent provider
/// calls exceed the configured limit (admission-control, concurrency).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_admission_control_exceeds_the_limit() {
    async fn peak(defect: Option<Defect>) -> usize {
        let mut config = quiet_config();
        config.admission.provider_max_in_flight = 4;
        let h = Harness::start(sqlite("noadmission"), with(defect, config)).await;
        h.set_faults(json!({"latency_ms": 200})).await;
        let mut tasks = Vec::new();
        for i in 0..30 {
            let client = h.client.clone();
            let url = format!("{}/v1/checkout", h.url(RegionId::A));
            let order = order_owned_by(RegionId::A, &format!("nac-{i}"));
            tasks.push(tokio::spawn(async move {
                let body = json!({"order_id": order, "customer_id": "c", "items": [{"sku": "sku-1", "qty": 1}]});
                client
                    .send(rig_http::Method::POST, &url, &[("idempotency-key", order.as_str())], Some(bytes::Bytes::from(body.to_string())), Duration::from_secs(10))
                    .await
                    .unwrap()
                    .status
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let calls = attempts(h.region(RegionId::A).db()).await;
        h.shutdown().await;
        max_concurrency(&calls)
    }
    assert!(peak(Some(Defect::NoAdmissionControl)).await > 4);
    assert!(peak(None).await <= 4);
}

/// local-confirm-in-partition + a partition: the gateway decides an order it does not own
/// (single-final-outcome: a final transition by a non-owner region).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_confirm_in_partition_decides_in_the_wrong_region() {
    async fn non_owner_finals(defect: Option<Defect>) -> i64 {
        let mut config = quiet_config();
        config.payment.deadline_ms = 500;
        let (h, links) = Harness::start_linked(sqlite("localconfirm"), with(defect, config)).await;
        links.partition(Mode::Blackhole);
        let order = order_owned_by(RegionId::B, "lcp");
        h.checkout(RegionId::A, &order, json!([{"sku": "sku-1", "qty": 1}]))
            .await;
        let a = h.region(RegionId::A).db();
        let finals = count(
            a,
            "SELECT COUNT(*) FROM order_transitions t JOIN orders o ON o.order_id = t.order_id \
             WHERE t.order_id = $1 AND t.to_state IN ('order_confirmed', 'failed_safely') AND t.region <> o.owner_region",
            &order,
        )
        .await;
        h.shutdown().await;
        finals
    }
    assert_eq!(
        non_owner_finals(Some(Defect::LocalConfirmInPartition)).await,
        1
    );
    assert_eq!(non_owner_finals(None).await, 0);
}

/// no-consumer-dedup + a relay interrupted between delivery and marking: the consumer's
/// effect happens twice for one event (outbox-effectively-once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_consumer_dedup_applies_redeliveries() {
    async fn effects(defect: Option<Defect>) -> i64 {
        let h = Harness::start(sqlite("nodedup"), with(defect, quiet_config())).await;
        let region = h.region(RegionId::A);
        let order = order_owned_by(RegionId::A, "ncd");
        h.checkout(RegionId::A, &order, json!([{"sku": "sku-1", "qty": 1}]))
            .await;
        region.relay_once().await.unwrap();
        sqlx::query("UPDATE outbox SET published_at_us = NULL WHERE order_id = $1")
            .bind(&order)
            .execute(&region.db().pool)
            .await
            .unwrap();
        region.relay_once().await.unwrap();
        let n = count(
            region.db(),
            "SELECT COUNT(*) FROM fulfilments WHERE order_id = $1",
            &order,
        )
        .await;
        h.shutdown().await;
        n
    }
    assert_eq!(effects(Some(Defect::NoConsumerDedup)).await, 2);
    assert_eq!(effects(None).await, 1);
}

/// oversell + stock 5 and 20 concurrent checkouts: more is sold than there was (no-oversell).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversell_sells_more_than_stock() {
    async fn sold(defect: Option<Defect>) -> i64 {
        let mut config = quiet_config();
        config.stock.insert("sku-3".into(), 5);
        let h = Harness::start(sqlite("oversell"), with(defect, config)).await;
        for i in 0..20 {
            let order = order_owned_by(RegionId::A, &format!("os-{i}"));
            h.checkout(RegionId::A, &order, json!([{"sku": "sku-3", "qty": 1}]))
                .await;
        }
        let n = count(
            h.region(RegionId::A).db(),
            "SELECT COALESCE(CAST(SUM(qty) AS BIGINT), 0) FROM reservations WHERE sku = $1 AND status = 'committed'",
            "sku-3",
        )
        .await;
        h.shutdown().await;
        n
    }
    assert_eq!(sold(Some(Defect::Oversell)).await, 20);
    assert_eq!(sold(None).await, 5);
}

/// no-repair + a payment that never reached the provider: the order stays pending past
/// max_pending_age (bounded-pending-age); with the worker running it resolves in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_repair_leaves_orders_pending() {
    async fn status_after_max_age(defect: Option<Defect>) -> String {
        let mut config = TargetConfig::default();
        config.repair.scan_interval_ms = 100;
        config.repair.max_pending_age_seconds = 2;
        config.repair.void_after_seconds = 1;
        let h = Harness::start(sqlite("norepair"), with(defect, config)).await;
        h.set_faults(json!({"outage": true})).await;
        let order = order_owned_by(RegionId::A, "nr");
        assert_eq!(
            h.checkout(RegionId::A, &order, json!([{"sku": "sku-1", "qty": 1}]))
                .await
                .status,
            202
        );
        h.set_faults(json!({})).await;
        // The claim is about the passage of time itself: where is the order once
        // max_pending_age (+ one scan) has gone by?
        tokio::time::sleep(Duration::from_millis(2_300)).await;
        let status = h.status(&order).await["status"]
            .as_str()
            .unwrap()
            .to_string();
        h.shutdown().await;
        status
    }
    assert_eq!(
        status_after_max_age(Some(Defect::NoRepair)).await,
        "payment_pending"
    );
    assert_eq!(status_after_max_age(None).await, "failed_safely");
}
