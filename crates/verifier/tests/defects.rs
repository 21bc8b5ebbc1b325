//! Every defect switch, run under a scenario that exposes it, is reported `fail` by the
//! invariant of its concern with a dossier naming a real order; the same scenario on the
//! correct system passes every invariant.

mod common;

use std::time::Duration;

use common::{Finished, Told, checkout, drain, finish};
use evidence::RegionId;
use serde_json::json;
use sqlx::Row;
use target_system::testkit::harness::{Harness, Mode, eventually, order_owned_by, quiet_config};
use target_system::testkit::sqlite;
use target_system::{Defect, TargetConfig};
use verifier::{Report, Status};

fn with(defect: Option<Defect>, mut config: TargetConfig) -> TargetConfig {
    config.defects.extend(defect);
    config
}

/// The defect's invariant fails with a dossier naming an order the evidence holds.
fn assert_caught(report: &Report, defect: Defect, orders: &[String]) {
    let invariant = defect.caught_by();
    let verdict = report
        .verdicts
        .iter()
        .find(|v| v.invariant == invariant)
        .unwrap();
    assert_eq!(
        verdict.status,
        Status::Fail,
        "{defect} must fail {invariant}:\n{}",
        report.table()
    );
    let named: Vec<_> = verdict
        .dossiers
        .iter()
        .filter_map(|d| d.order_id.clone())
        .collect();
    assert!(
        named.iter().any(|o| orders.contains(o)),
        "{defect}: a dossier names one of the scenario's orders; dossiers name {named:?}"
    );
}

fn assert_clean(report: &Report, defect: Defect) {
    assert!(
        report.failed().is_empty(),
        "without {defect} the same scenario passes:\n{}",
        report.table()
    );
    assert_eq!(report.status, Status::Pass, "{}", report.table());
}

async fn no_processing_keys(h: &Harness) {
    eventually(
        Duration::from_secs(10),
        "every slow charge landed",
        || async {
            let (provider, _) = h.system.provider.as_ref().unwrap();
            sqlx::query("SELECT COUNT(*) FROM provider_keys WHERE state = 'processing'")
                .fetch_one(&provider.db().pool)
                .await
                .unwrap()
                .try_get::<i64, _>(0)
                .unwrap()
                == 0
        },
    )
    .await;
}

async fn fresh_key_per_retry(defect: Option<Defect>) -> (Finished, Vec<String>) {
    let mut config = quiet_config();
    config.payment.per_try_timeout_ms = 100;
    config.payment.deadline_ms = 1_000;
    let h = Harness::start(sqlite("d-freshkey"), with(defect, config)).await;
    h.set_faults(json!({"latency_ms": 250})).await;
    let orders: Vec<String> = (0..3)
        .map(|i| order_owned_by(RegionId::A, &format!("fk-{i}")))
        .collect();
    let mut told = Vec::new();
    for order in &orders {
        told.push(checkout(&h, RegionId::A, order, json!([{"sku": "sku-1", "qty": 1}])).await);
    }
    h.set_faults(json!({})).await;
    no_processing_keys(&h).await;
    drain(&h).await;
    (finish(h, &told).await, orders)
}

async fn confirm_on_timeout(defect: Option<Defect>) -> (Finished, Vec<String>) {
    let mut config = quiet_config();
    config.payment.per_try_timeout_ms = 100;
    config.payment.deadline_ms = 300;
    config.repair.void_after_seconds = 0;
    let (h, links) = Harness::start_linked(sqlite("d-confirm"), with(defect, config)).await;
    links.a_to_provider.set(Mode::Blackhole);
    let orders: Vec<String> = (0..3)
        .map(|i| order_owned_by(RegionId::A, &format!("cot-{i}")))
        .collect();
    let mut told = Vec::new();
    for order in &orders {
        told.push(checkout(&h, RegionId::A, order, json!([{"sku": "sku-2", "qty": 1}])).await);
    }
    links.a_to_provider.set(Mode::Pass);
    drain(&h).await;
    (finish(h, &told).await, orders)
}

async fn no_retry_budget(defect: Option<Defect>) -> (Finished, Vec<String>) {
    let mut config = quiet_config();
    config.retry_budget.ratio = 0.0;
    config.retry_budget.min_per_sec = 0.0;
    config.repair.void_after_seconds = 0;
    let h = Harness::start(sqlite("d-budget"), with(defect, config)).await;
    h.set_faults(json!({"error_rate": 1.0})).await;
    let orders: Vec<String> = (0..4)
        .map(|i| order_owned_by(RegionId::B, &format!("nrb-{i}")))
        .collect();
    let mut told = Vec::new();
    for order in &orders {
        told.push(checkout(&h, RegionId::B, order, json!([{"sku": "sku-1", "qty": 1}])).await);
    }
    h.set_faults(json!({})).await;
    drain(&h).await;
    (finish(h, &told).await, orders)
}

async fn no_admission_control(defect: Option<Defect>) -> (Finished, Vec<String>) {
    let mut config = quiet_config();
    config.admission.provider_max_in_flight = 4;
    let h = Harness::start(sqlite("d-admission"), with(defect, config)).await;
    h.set_faults(json!({"latency_ms": 200})).await;
    let orders: Vec<String> = (0..30)
        .map(|i| order_owned_by(RegionId::A, &format!("nac-{i}")))
        .collect();
    let told: Vec<Told> = {
        let h = &h;
        let runs = orders.iter().map(|order| async move {
            checkout(h, RegionId::A, order, json!([{"sku": "sku-1", "qty": 1}])).await
        });
        futures_join_all(runs).await
    };
    h.set_faults(json!({})).await;
    drain(&h).await;
    (finish(h, &told).await, orders)
}

async fn local_confirm_in_partition(defect: Option<Defect>) -> (Finished, Vec<String>) {
    let mut config = quiet_config();
    config.payment.deadline_ms = 500;
    let (h, links) = Harness::start_linked(sqlite("d-partition"), with(defect, config)).await;
    links.partition(Mode::Blackhole);
    let orders: Vec<String> = (0..2)
        .map(|i| order_owned_by(RegionId::B, &format!("lcp-{i}")))
        .collect();
    let mut told = Vec::new();
    for order in &orders {
        told.push(checkout(&h, RegionId::A, order, json!([{"sku": "sku-1", "qty": 1}])).await);
    }
    links.partition(Mode::Pass);
    h.region(RegionId::A).forward_once().await.unwrap();
    drain(&h).await;
    (finish(h, &told).await, orders)
}

async fn no_consumer_dedup(defect: Option<Defect>) -> (Finished, Vec<String>) {
    let h = Harness::start(sqlite("d-dedup"), with(defect, quiet_config())).await;
    let order = order_owned_by(RegionId::A, "ncd");
    let told = vec![checkout(&h, RegionId::A, &order, json!([{"sku": "sku-1", "qty": 1}])).await];
    let region = h.region(RegionId::A);
    region.relay_once().await.unwrap();
    // The relay's crash between delivering and marking: the batch is delivered again.
    sqlx::query("UPDATE outbox SET published_at_us = NULL WHERE order_id = $1")
        .bind(&order)
        .execute(&region.db().pool)
        .await
        .unwrap();
    drain(&h).await;
    (finish(h, &told).await, vec![order])
}

async fn oversell(defect: Option<Defect>) -> (Finished, Vec<String>) {
    let mut config = quiet_config();
    config.stock.insert("sku-3".into(), 5);
    let h = Harness::start(sqlite("d-oversell"), with(defect, config)).await;
    let orders: Vec<String> = (0..12)
        .map(|i| order_owned_by(RegionId::B, &format!("os-{i}")))
        .collect();
    let mut told = Vec::new();
    for order in &orders {
        told.push(checkout(&h, RegionId::B, order, json!([{"sku": "sku-3", "qty": 1}])).await);
    }
    drain(&h).await;
    (finish(h, &told).await, orders)
}

async fn no_repair(defect: Option<Defect>) -> (Finished, Vec<String>) {
    let mut config = TargetConfig::default();
    config.repair.scan_interval_ms = 100;
    config.repair.max_pending_age_seconds = 3;
    config.repair.void_after_seconds = 1;
    let h = Harness::start(sqlite("d-repair"), with(defect, config)).await;
    h.set_faults(json!({"outage": true})).await;
    let order = order_owned_by(RegionId::A, "nr");
    let told = vec![checkout(&h, RegionId::A, &order, json!([{"sku": "sku-1", "qty": 1}])).await];
    h.set_faults(json!({})).await;
    if defect.is_none() {
        // The worker resolves it by itself.
        eventually(
            Duration::from_secs(10),
            "the repair worker resolved the order",
            || async { h.status(&order).await["status"] == "failed_safely" },
        )
        .await;
        while h.region(RegionId::A).relay_once().await.unwrap() > 0 {}
    }
    (finish(h, &told).await, vec![order])
}

/// Runs the checkouts concurrently on this task.
async fn futures_join_all<F: std::future::Future<Output = Told>>(
    runs: impl Iterator<Item = F>,
) -> Vec<Told> {
    futures_util::future::join_all(runs).await
}

macro_rules! defect_case {
    ($name:ident, $defect:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (finished, orders) = super::$name(Some($defect)).await;
            super::assert_caught(&finished.verify().await, $defect, &orders);
            let (finished, _) = super::$name(None).await;
            super::assert_clean(&finished.verify().await, $defect);
        }
    };
}

mod caught {
    use target_system::Defect;
    defect_case!(fresh_key_per_retry, Defect::FreshKeyPerRetry);
    defect_case!(confirm_on_timeout, Defect::ConfirmOnTimeout);
    defect_case!(no_retry_budget, Defect::NoRetryBudget);
    defect_case!(no_admission_control, Defect::NoAdmissionControl);
    defect_case!(local_confirm_in_partition, Defect::LocalConfirmInPartition);
    defect_case!(no_consumer_dedup, Defect::NoConsumerDedup);
    defect_case!(oversell, Defect::Oversell);
    defect_case!(no_repair, Defect::NoRepair);
}
