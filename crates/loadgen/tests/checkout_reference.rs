//! The checkout workload against the reference system (provider + regions a and b over
//! SQLite stores, all on 127.0.0.1:0) at the figures: 1,000 customers/s for 5 s,
//! 20 % of them double-clicking. The assertions are about correctness, not speed (this
//! runs in debug builds on a loaded 2-core machine): one history row per arrival; every
//! customer told `confirmed` is confirmed in its owner's store; every customer told
//! `failed` holds no live charge, every one told `rejected` left no order; no order has
//! two live charges.

mod checkout_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use checkout_support::{history_file, read_history, run};
use evidence::owner_of;
use evidence::{Db, RegionId};
use loadgen::checkout::ClientOutcome;
use loadgen::duration::HumanDuration;
use loadgen::{CheckoutSpec, ScheduleSpec};
use sqlx::Row;
use target_system::TargetConfig;
use target_system::system::System;
use tokio::net::TcpListener;

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// order_id → status, from one region's store.
async fn statuses(db: &Db) -> HashMap<String, String> {
    sqlx::query("SELECT order_id, status FROM orders")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// order_id → live charges (authorized, not fully refunded), from the provider's ledger.
async fn live_charges(db: &Db) -> HashMap<String, i64> {
    sqlx::query(
        "SELECT order_id, CAST(COUNT(*) AS BIGINT) FROM provider_charges \
         WHERE status = 'authorized' AND amount_cents - refunded_cents > 0 GROUP BY order_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// 1,000/s for 5 s with 20 % double-clicks against the correct reference system: 5,000
/// history rows; all confirmed customers confirmed durably; no failed customer charged; no
/// rejected customer left an order; no order charged twice; the double-clicks happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_system_at_1000_per_second_keeps_its_promises() {
    let stores = target_system::testkit::sqlite("checkout-workload");
    let system = System::start_all(
        Arc::new(TargetConfig::default()),
        &stores.url,
        listener().await,
        listener().await,
        listener().await,
    )
    .await
    .expect("the reference system starts");
    let targets = vec![
        system.region_url(RegionId::A).unwrap(),
        system.region_url(RegionId::B).unwrap(),
    ];
    let mut spec = CheckoutSpec {
        phases: ScheduleSpec::parse_phases("hold rate=1000 for=5s").unwrap(),
        seed: 11,
        run_tag: Some("ref".into()),
        double_click_fraction: 0.2,
        ..CheckoutSpec::default()
    };
    // Generous: a debug build on a busy machine may answer slowly; slowness must show up
    // as latency or `unknown`, never as a wrong verdict.
    spec.retry.timeout = HumanDuration(Duration::from_secs(10));
    spec.give_up_after = HumanDuration(Duration::from_secs(60));
    let (_dir, path) = history_file("reference");
    let report = run(spec, targets, Some(&path)).await;

    let (arrivals, requests) = read_history(&path).await;
    assert_eq!(report.report.scheduled(), 5_000);
    assert_eq!(arrivals.len(), 5_000, "one history row per arrival");
    assert!(report.history.is_complete(), "{:?}", report.history);
    let confirmed = report.history.outcome(ClientOutcome::Confirmed);
    eprintln!(
        "reference run: outcomes {:?}, requests {:?}",
        report.history.outcomes,
        report
            .requests
            .summaries()
            .iter()
            .map(|(op, s)| (op.to_string(), s.kinds.clone()))
            .collect::<Vec<_>>()
    );
    assert!(confirmed > 0, "{:?}", report.history.outcomes);

    let a = statuses(system.region(RegionId::A).unwrap().db()).await;
    let b = statuses(system.region(RegionId::B).unwrap().db()).await;
    let (provider, _) = system.provider.as_ref().unwrap();
    let charges = live_charges(provider.db()).await;
    let mut checked = 0;
    for arrival in &arrivals {
        let store = match owner_of(&arrival.order_id) {
            RegionId::A => &a,
            RegionId::B => &b,
        };
        let durable = store.get(&arrival.order_id).map(String::as_str);
        match arrival.outcome.as_str() {
            "confirmed" => {
                assert_eq!(durable, Some("order_confirmed"), "{arrival:?}");
                checked += 1;
            }
            "failed" => assert_eq!(charges.get(&arrival.order_id), None, "{arrival:?}"),
            "rejected" => assert_eq!(durable, None, "told rejected: {arrival:?}"),
            _ => {}
        }
    }
    assert_eq!(checked, confirmed);
    let doubles: Vec<_> = charges.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubles.is_empty(),
        "{} orders with two live charges, e.g. {:?}",
        doubles.len(),
        &doubles[..doubles.len().min(5)]
    );
    let double_clicks = requests.iter().filter(|r| r.kind == "double_click").count();
    assert!(
        (800..=1_200).contains(&double_clicks),
        "{double_clicks} double-clicks for 5,000 customers at 20 %"
    );
    system.shutdown().await.expect("clean shutdown");
}
