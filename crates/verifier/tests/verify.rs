//! The verifier against real runs of the reference system: a correct system passes; each
//! tampering with its records is caught by the invariant of its concern, with a dossier.

mod common;

use common::{Finished, clean_run};
use evidence::{RegionId, StoreName};
use serde_json::Value;
use target_system::testkit::sqlite;
use verifier::{Report, Status};

fn status_of(report: &Report, invariant: &str) -> Status {
    report
        .verdicts
        .iter()
        .find(|v| v.invariant == invariant)
        .unwrap_or_else(|| panic!("{invariant} missing"))
        .status
}

/// Asserts `invariant` failed with a dossier naming `order` (when given) and no other
/// invariant outside `also` failed.
fn assert_caught(report: &Report, invariant: &str, order: Option<&str>, also: &[&str]) {
    let verdict = report
        .verdicts
        .iter()
        .find(|v| v.invariant == invariant)
        .unwrap();
    assert_eq!(
        verdict.status,
        Status::Fail,
        "{invariant} should fail:\n{}",
        report.table()
    );
    assert!(!verdict.dossiers.is_empty(), "a dossier");
    if let Some(order) = order {
        assert!(
            verdict
                .dossiers
                .iter()
                .any(|d| d.order_id.as_deref() == Some(order)),
            "a dossier names {order}: {:?}",
            verdict
                .dossiers
                .iter()
                .map(|d| (&d.order_id, &d.narrative))
                .collect::<Vec<_>>()
        );
    }
    for other in report.verdicts.iter().filter(|v| v.status == Status::Fail) {
        assert!(
            other.invariant == invariant || also.contains(&other.invariant),
            "unexpected failure of {}:\n{}",
            other.invariant,
            report.table()
        );
    }
}

async fn one_order(finished: &Finished, status: &str, region: RegionId) -> String {
    let db = finished.db(StoreName::Region(region)).await;
    sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
        "SELECT order_id FROM orders WHERE status = '{status}' ORDER BY order_id LIMIT 1"
    )))
    .fetch_one(&db.pool)
    .await
    .unwrap_or_else(|_| panic!("an order {status} in region {region}"))
}

/// A correct system passes every invariant, over five seeds (no false positives), with the
/// client history; the report's JSON matches its schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_system_passes_over_five_seeds() {
    for seed in 1..=5 {
        let finished = clean_run(sqlite("verify-clean"), seed).await;
        let report = finished.verify().await;
        assert_eq!(
            report.status,
            Status::Pass,
            "seed {seed}:\n{}",
            report.table()
        );
        assert!(report.orders_checked >= 30);
        let json = serde_json::to_value(&report).unwrap();
        let schema: Value = serde_json::from_str(verifier::VERDICT_SCHEMA).unwrap();
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler
            .add_resource("verdict.schema.json", schema)
            .unwrap();
        let index = compiler
            .compile("verdict.schema.json", &mut schemas)
            .unwrap();
        schemas
            .validate(&json, index)
            .unwrap_or_else(|e| panic!("schema: {e}"));
        // The seed matters: the scenario (and so the evidence) differs.
        if seed == 1 {
            let other = clean_run(sqlite("verify-clean-2"), 2).await.verify().await;
            assert_ne!(
                report.verdicts[0].summary, other.verdicts[0].summary,
                "different seeds, different runs"
            );
        }
    }
}

/// Without a client history, every invariant whose witness it is (client-agrees, and
/// no-oversell, single-final-outcome and bounded-pending-age, which would rest on the
/// system's own rows alone) is unknown with the reason, and nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_history_means_unknown_not_fail() {
    let mut finished = clean_run(sqlite("verify-nohist"), 3).await;
    finished.history = None;
    let report = finished.verify().await;
    for invariant in [
        "client-agrees",
        "no-oversell",
        "single-final-outcome",
        "bounded-pending-age",
    ] {
        assert_eq!(
            status_of(&report, invariant),
            Status::Unknown,
            "{invariant}: {}",
            report.table()
        );
    }
    assert!(report.failed().is_empty(), "{}", report.table());
    assert!(report.table().contains("no client history"));
}

/// A second live charge for a confirmed order is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tamper_second_live_charge() {
    let finished = clean_run(sqlite("tamper-charge"), 1).await;
    let order = one_order(&finished, "order_confirmed", RegionId::A).await;
    let provider = finished.db(StoreName::Provider).await;
    sqlx::query(
        "INSERT INTO provider_charges (charge_id, idempotency_key, order_id, amount_cents, currency, status, refunded_cents, created_at_us, updated_at_us) \
         SELECT 'ch_forged', idempotency_key || ':2', order_id, amount_cents, currency, 'authorized', 0, created_at_us + 1, updated_at_us \
         FROM provider_charges WHERE order_id = $1 AND status = 'authorized'",
    )
    .bind(&order)
    .execute(&provider.pool)
    .await
    .unwrap();
    let report = finished.verify().await;
    assert_caught(
        &report,
        "no-duplicate-charge",
        Some(&order),
        &["money-conservation", "client-agrees"],
    );
}

/// Refunding a confirmed order's only charge is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tamper_refund_of_a_confirmed_order() {
    let finished = clean_run(sqlite("tamper-refund"), 2).await;
    let order = one_order(&finished, "order_confirmed", RegionId::B).await;
    let provider = finished.db(StoreName::Provider).await;
    sqlx::query("UPDATE provider_charges SET refunded_cents = amount_cents WHERE order_id = $1")
        .bind(&order)
        .execute(&provider.pool)
        .await
        .unwrap();
    let report = finished.verify().await;
    assert_caught(
        &report,
        "money-conservation",
        Some(&order),
        &["client-agrees"],
    );
}

/// Deleting a transition is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tamper_deleted_transition() {
    let finished = clean_run(sqlite("tamper-transition"), 3).await;
    let order = one_order(&finished, "order_confirmed", RegionId::A).await;
    let db = finished.db(StoreName::Region(RegionId::A)).await;
    sqlx::query("DELETE FROM order_transitions WHERE order_id = $1 AND seq = 2")
        .bind(&order)
        .execute(&db.pool)
        .await
        .unwrap();
    let report = finished.verify().await;
    assert_caught(&report, "single-final-outcome", Some(&order), &[]);
}

/// An order made final in the region that does not own it is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tamper_final_in_non_owner_region() {
    let finished = clean_run(sqlite("tamper-owner"), 4).await;
    let order = one_order(&finished, "order_confirmed", RegionId::A).await;
    let a = finished.db(StoreName::Region(RegionId::A)).await;
    let b = finished.db(StoreName::Region(RegionId::B)).await;
    let row = sqlx::query("SELECT customer_id, owner_region, entry_region, fingerprint, items_json, amount_cents, currency, created_at_us FROM orders WHERE order_id = $1")
        .bind(&order)
        .fetch_one(&a.pool)
        .await
        .unwrap();
    use sqlx::Row;
    sqlx::query(
        "INSERT INTO orders (order_id, customer_id, owner_region, entry_region, fingerprint, items_json, amount_cents, currency, status, reason, version, created_at_us, updated_at_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'failed_safely', 'forged', 2, $9, $9)",
    )
    .bind(&order)
    .bind(row.try_get::<String, _>("customer_id").unwrap())
    .bind(row.try_get::<String, _>("owner_region").unwrap())
    .bind(row.try_get::<String, _>("entry_region").unwrap())
    .bind(row.try_get::<String, _>("fingerprint").unwrap())
    .bind(row.try_get::<String, _>("items_json").unwrap())
    .bind(row.try_get::<i64, _>("amount_cents").unwrap())
    .bind(row.try_get::<String, _>("currency").unwrap())
    .bind(row.try_get::<i64, _>("created_at_us").unwrap())
    .execute(&b.pool)
    .await
    .unwrap();
    for (seq, from, to) in [
        (1, None, "order_intent_saved"),
        (2, Some("order_intent_saved"), "failed_safely"),
    ] {
        sqlx::query("INSERT INTO order_transitions (order_id, seq, from_state, to_state, at_us, reason, actor, region) VALUES ($1, $2, $3, $4, 0, 'forged', 'checkout', 'b')")
            .bind(&order)
            .bind(seq)
            .bind(from)
            .bind(to)
            .execute(&b.pool)
            .await
            .unwrap();
    }
    let report = finished.verify().await;
    assert_caught(&report, "single-final-outcome", Some(&order), &[]);
}

/// A pending stay aged past max_pending_age (plus the scan interval: an hour in these quiet
/// runs) is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tamper_aged_pending_order() {
    let finished = clean_run(sqlite("tamper-age"), 5).await;
    let order = one_order(&finished, "order_confirmed", RegionId::B).await;
    let db = finished.db(StoreName::Region(RegionId::B)).await;
    sqlx::query("UPDATE order_transitions SET at_us = at_us - 36000000000 WHERE order_id = $1 AND to_state = 'payment_authorizing'")
        .bind(&order)
        .execute(&db.pool)
        .await
        .unwrap();
    let report = finished.verify().await;
    assert_caught(&report, "bounded-pending-age", Some(&order), &[]);
}

/// A duplicated consumer effect is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tamper_duplicate_consumer_effect() {
    let finished = clean_run(sqlite("tamper-effect"), 1).await;
    let order = one_order(&finished, "order_confirmed", RegionId::B).await;
    let db = finished.db(StoreName::Region(RegionId::B)).await;
    sqlx::query("INSERT INTO fulfilments (consumer, event_id, order_id, at_us) SELECT consumer, event_id, order_id, at_us + 1 FROM fulfilments WHERE order_id = $1")
        .bind(&order)
        .execute(&db.pool)
        .await
        .unwrap();
    let report = finished.verify().await;
    assert_caught(&report, "outbox-effectively-once", Some(&order), &[]);
}

/// A client told confirmed for an order the stores say failed is caught by client-agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tamper_client_history_disagrees() {
    let finished = clean_run(sqlite("tamper-client"), 2).await;
    let order = one_order(&finished, "failed_safely", RegionId::A).await;
    let history = finished.history.clone().unwrap();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", history.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE history_arrivals SET outcome = 'confirmed' WHERE order_id = $1")
        .bind(&order)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let report = finished.verify().await;
    // A customer told confirmed bought its cart: when the order failed for want of stock,
    // the carts of confirmed customers now oversell too.
    assert_caught(&report, "client-agrees", Some(&order), &["no-oversell"]);
    let dossier = &report
        .verdicts
        .iter()
        .find(|v| v.invariant == "client-agrees")
        .unwrap()
        .dossiers[0];
    assert!(
        dossier.narrative.starts_with("client told confirmed at"),
        "{}",
        dossier.narrative
    );
    assert!(
        dossier.narrative.contains("durable says failed_safely"),
        "{}",
        dossier.narrative
    );
}

/// Missing stores are an error (exit 3 in the CLI), not a pass.
#[tokio::test]
async fn missing_stores_are_an_error() {
    let dir = target_system::testkit::TempDir::new("verify-missing");
    let sources = verifier::Sources {
        store: evidence::StoreUrl::Sqlite {
            dir: dir.path().join("nothing"),
        },
        history: None,
        journal: None,
    };
    let err = verifier::verify(&sources, &verifier::Options::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no records"), "{err}");
}

/// The same on PostgreSQL stores: a correct run passes (the merge with the SQLite client
/// history agrees on key order), and a forged second charge is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_run_passes_then_a_forged_charge_is_caught() {
    let Some(stores) = target_system::testkit::postgres("verify-pg") else {
        return;
    };
    let finished = clean_run(stores, 7).await;
    let report = finished.verify().await;
    assert_eq!(report.status, Status::Pass, "{}", report.table());
    let order = one_order(&finished, "order_confirmed", RegionId::A).await;
    let provider = finished.db(StoreName::Provider).await;
    sqlx::query(
        "INSERT INTO provider_charges (charge_id, idempotency_key, order_id, amount_cents, currency, status, refunded_cents, created_at_us, updated_at_us) \
         SELECT 'ch_forged', 'forged', order_id, amount_cents, currency, 'authorized', 0, created_at_us + 1, updated_at_us \
         FROM provider_charges WHERE order_id = $1",
    )
    .bind(&order)
    .execute(&provider.pool)
    .await
    .unwrap();
    let report = finished.verify().await;
    assert_caught(
        &report,
        "no-duplicate-charge",
        Some(&order),
        &["money-conservation", "client-agrees"],
    );
}

/// The provider-log sweep's retry probe looks each call's key up on the key index: on the
/// caller's index it scans every earlier call of that caller, and a million-call log took
/// longer than any run (found by the verifier bench). The pages walk the log once, for
/// every caller, on the receipt-time index with no sort.
#[tokio::test]
async fn provider_log_retry_probe_looks_the_key_up() {
    let stores = sqlite("retry-probe");
    let db = evidence::Db::open(&stores.url, StoreName::Provider)
        .await
        .unwrap();
    let page = evidence::reads::provider_call_pages("id, started_at_us, is_retry", 1000);
    // EXPLAIN QUERY PLAN rows: id, parent, notused, detail.
    let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {page}")))
        .bind(0i64)
        .bind(0i64)
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| sqlx::Row::get::<String, _>(r, 3))
        .collect();
    let after_subquery: Vec<&String> = plan
        .iter()
        .skip_while(|line| !line.contains("SUBQUERY"))
        .collect();
    assert!(
        after_subquery
            .iter()
            .any(|line| line.contains("provider_requests_by_key")),
        "the retry probe should use the key index: {plan:#?}"
    );
    assert!(
        plan.iter()
            .any(|line| line.contains("provider_requests_by_received"))
            && !plan.iter().any(|line| line.contains("TEMP B-TREE")),
        "the pages should walk the receipt-time index without sorting: {plan:#?}"
    );
    db.close().await;
}

/// The provider walk's retry flag is the same rule on both stores: a charge is a retry when
/// its caller sent its key before (by receipt time, then id), whatever other callers,
/// operations, unkeyed calls or unattributed calls did. From PostgreSQL the walk is the
/// receipt-time index and the retries, grouped on the key index, are merged into it by the
/// verifier, with no sort or hash of the whole log; SQLite probes the key index per call.
#[tokio::test]
async fn provider_walk_flags_the_same_retries_on_both_stores() {
    // (op, key, caller, received_at_us, retry?) in insertion (id) order.
    type Call = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        i64,
        bool,
    );
    let log: &[Call] = &[
        ("charge", Some("k1"), Some("a"), 100, true), // the charge at 50 came first
        ("charge", Some("k1"), Some("a"), 200, true),
        ("charge", Some("k1"), Some("b"), 150, false), // another caller's first
        ("refund", Some("k1"), Some("a"), 300, false), // not a charge
        ("charge", Some("k2"), Some("a"), 100, false),
        ("charge", Some("k2"), Some("a"), 100, true), // same time, later id
        ("charge", None, Some("a"), 400, false),      // unkeyed calls never repeat
        ("charge", None, Some("a"), 401, false),
        ("charge", Some("k3"), None, 500, false), // unattributed: not walked
        ("charge", Some("k3"), Some("a"), 600, false),
        ("charge", Some("k1"), Some("a"), 50, false), // inserted last, received first
    ];
    let mut stores = vec![sqlite("retry-rule")];
    stores.extend(target_system::testkit::postgres("retry-rule"));
    for stores in stores {
        let db = evidence::Db::open(&stores.url, StoreName::Provider)
            .await
            .unwrap();
        for (op, key, caller, at, _) in log {
            sqlx::query(
                "INSERT INTO provider_requests (op, idempotency_key, received_at_us, finished_at_us, outcome, caller) \
                 VALUES ($1, $2, $3, $4, 'authorized', $5)",
            )
            .bind(*op)
            .bind(*key)
            .bind(*at)
            .bind(*at + 10)
            .bind(*caller)
            .execute(&db.pool)
            .await
            .unwrap();
        }
        let mut want: Vec<(i64, i64, i64)> = log
            .iter()
            .zip(1i64..)
            .filter(|((_, _, caller, _, _), _)| caller.is_some())
            .map(|((_, _, _, at, retry), id)| (*at, id, i64::from(*retry)))
            .collect();
        want.sort();
        if stores.backend == "postgres" {
            // The plans: the walk on the receipt-time index, the retries grouped on the key
            // index; neither sorts nor hashes the whole log.
            let mut conn = db.pool.acquire().await.unwrap();
            for (settings, sql, wanted) in [
                (
                    evidence::reads::PROVIDER_WALK_PLAN,
                    evidence::reads::provider_calls_sorted("id"),
                    ["provider_requests_by_received", "Index Scan"],
                ),
                (
                    evidence::reads::PROVIDER_RETRIES_PLAN,
                    evidence::reads::PROVIDER_RETRIES.to_string(),
                    ["provider_requests_by_key", "GroupAggregate"],
                ),
            ] {
                sqlx::raw_sql(settings).execute(&mut *conn).await.unwrap();
                let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")))
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| sqlx::Row::get::<String, _>(r, 0))
                    .collect();
                let plan = plan.join("\n");
                // The walk sorts only calls of one instant by id; the retries are sorted
                // only after the grouping, which reads the key index in order.
                let whole_log_sort = match plan.split_once("GroupAggregate") {
                    Some((_, below)) => below.contains("Sort  ("),
                    None => plan.lines().any(|l| {
                        l.trim_start()
                            .trim_start_matches("->")
                            .trim_start()
                            .starts_with("Sort  (")
                    }),
                };
                assert!(
                    wanted.iter().all(|w| plan.contains(w))
                        && !plan.contains("Hash")
                        && !plan.contains("Seq Scan")
                        && !whole_log_sort,
                    "{plan}"
                );
            }
        }
        let mut got: Vec<(i64, i64, i64)> = Vec::new();
        verifier::invariants::admission_control::each_provider_call(&db, |call| {
            let a = &call.attempt;
            got.push((a.started_at_us, a.id, a.is_retry));
        })
        .await
        .unwrap();
        assert_eq!(got, want, "{}", stores.backend);
        db.close().await;
    }
}
