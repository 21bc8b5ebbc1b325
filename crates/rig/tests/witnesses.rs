//! The verdict trusts what the rig wrote, not what the system says of itself: a finished
//! run's records altered the way a buggy system would write them are caught, witness by
//! witness, by `rig verify RUN_DIR`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{rig_within, text};
use evidence::{RegionId, StoreName, StoreUrl};
use target_system::testkit::TempDir;

fn quickstart() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../profiles/quickstart.toml")
        .display()
        .to_string()
}

/// A 6 s quickstart run (SQLite) in `out` with this chaos timeline and more `--set`s: its
/// exit code and output.
fn six_seconds(out: &Path, chaos: &str, sets: &[&str]) -> (Option<i32>, String) {
    let quickstart = quickstart();
    let chaos = format!("chaos=[{chaos}]");
    let mut args = vec![
        "run",
        &quickstart,
        "--out",
        out.to_str().unwrap(),
        "--set",
        r#"workload.phases=[{kind = "hold", rate = 30, for = "6s"}]"#,
        "--set",
        &chaos,
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let output = rig_within(&args, Duration::from_secs(180));
    (
        output.status.code(),
        format!("{}{}", text(&output.stdout), text(&output.stderr)),
    )
}

/// A short passing run (SQLite) in `out`.
fn short_run(out: &Path) {
    let spike = r#"{name = "spike", at = "1s", for = "2s", kind = "provider", latency_ms = 1500}"#;
    let (code, all) = six_seconds(out, spike, &[]);
    assert_eq!(code, Some(0), "{all}");
}

/// A short passing run in a new directory, verified untouched (exit 0): the directory, the
/// run directory, and what the verify printed.
fn passing_run(name: &str) -> (TempDir, PathBuf, String) {
    let dir = TempDir::new(name);
    let out = dir.path().join("run");
    short_run(&out);
    let (code, all) = verify(&[out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "the untouched run passes: {all}");
    (dir, out, all)
}

fn verify(args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["verify"];
    all.extend(args);
    let output = rig_within(&all, Duration::from_secs(120));
    (
        output.status.code(),
        format!("{}{}", text(&output.stdout), text(&output.stderr)),
    )
}

/// The profile's bounds are the run's: a region store that records other parameters than
/// the run asked for (a misreported limit) fails the invariants those bounds belong to,
/// naming both values; the untouched run passes. Without a profile (`--store` alone) the
/// system's record is the bound, and the summary says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_parameters_are_a_claim_checked_against_the_profile() {
    let (_dir, out, all) = passing_run("witness-profile");
    let run_dir = out.to_str().unwrap().to_string();
    assert!(all.contains("bounds from the run's profile"), "{all}");

    let stores = StoreUrl::Sqlite {
        dir: PathBuf::from(&out).join("stores"),
    };
    let db = evidence::Db::open(&stores, StoreName::Region(RegionId::A))
        .await
        .unwrap();
    let mut claim = evidence::RunParams::read(&db).await.unwrap();
    claim.max_pending_age_seconds = 999;
    claim.provider_max_in_flight = 1000;
    claim.write(&db).await.unwrap();
    db.close().await;

    let (code, all) = verify(&[&run_dir]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("bounded-pending-age        FAIL")
            && all.contains(
                "region_a ran with repair.max_pending_age_seconds = 999; the run asked for 30"
            ),
        "{all}"
    );
    assert!(
        all.contains("admission-control          FAIL")
            && all.contains(
                "region_a ran with admission.provider_max_in_flight = 1000; the run asked for 64"
            ),
        "{all}"
    );

    let store = format!("sqlite://{}", out.join("stores").display());
    let (code, all) = verify(&["--store", &store]);
    assert_eq!(code, Some(0), "{all}");
    assert!(
        all.contains("bounds from the system's own record (no profile given)"),
        "{all}"
    );
}

/// Opens a finished run's client history for writing (as a tampering system would).
async fn history(out: &Path) -> sqlx::SqlitePool {
    sqlite(out, "history.db").await
}

/// The customer's answer sequence is a witness: an answer that moves backward (pending
/// after confirmed, the other final, a 404 after the order was seen) fails
/// single-final-outcome, and so do two different finals answered at once, and a customer still told pending past the bound fails
/// bounded-pending-age, whatever the stores say; the untouched run passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answers_a_customer_saw_are_judged() {
    let (_dir, out, all) = passing_run("witness-answers");
    let run_dir = out.to_str().unwrap().to_string();
    assert!(all.contains("client answers in order"), "{all}");

    let pool = history(&out).await;
    // A confirmed customer, and the time its confirmation was received.
    let (order_id, arrival_id, confirmed_at): (String, i64, i64) = sqlx::query_as(
        "SELECT r.order_id, r.arrival_id, r.finished_at_us FROM history_requests r \
         WHERE r.answer = 'confirmed' ORDER BY r.arrival_id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let insert = |seq: i64, sent: i64, status: i64, answer: &'static str| {
        let (pool, order_id) = (pool.clone(), order_id.clone());
        async move {
            sqlx::query(
                "INSERT INTO history_requests (arrival_id, seq, kind, region, sent_at_us, \
                 finished_at_us, http_status, answer, retry_after_ms, order_id) \
                 VALUES ($1, $2, 'poll', 'a', $3, $4, $5, $6, NULL, $7)",
            )
            .bind(arrival_id)
            .bind(seq)
            .bind(sent)
            .bind(sent + 1_000)
            .bind(status)
            .bind(answer)
            .bind(order_id)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    insert(100, confirmed_at + 1_000, 200, "pending").await;
    let (code, all) = verify(&[&run_dir]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("single-final-outcome       FAIL")
            && all.contains(&format!(
                "single-final-outcome {order_id}: the customer was told confirmed at"
            ))
            && all.contains(", then pending at"),
        "{all}"
    );
    sqlx::query("DELETE FROM history_requests WHERE seq = 100")
        .execute(&pool)
        .await
        .unwrap();

    insert(101, confirmed_at + 1_000, 404, "invalid").await;
    let (code, all) = verify(&[&run_dir]);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("then not found (404) at"), "{all}");
    sqlx::query("DELETE FROM history_requests WHERE seq = 101")
        .execute(&pool)
        .await
        .unwrap();

    // The other final, answered to a request in flight beside the confirmed one (no
    // causal order between them): an order has one outcome.
    insert(103, confirmed_at - 2_000, 200, "failed").await;
    let (code, all) = verify(&[&run_dir]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("single-final-outcome       FAIL") && all.contains("an order has one outcome"),
        "{all}"
    );
    sqlx::query("DELETE FROM history_requests WHERE seq = 103")
        .execute(&pool)
        .await
        .unwrap();

    // A customer told pending, and still told so 40 s later (the bound is 30 s + 1 s).
    sqlx::query(
        "UPDATE history_requests SET answer = 'pending', http_status = 202 \
         WHERE arrival_id = $1 AND answer = 'confirmed'",
    )
    .bind(arrival_id)
    .execute(&pool)
    .await
    .unwrap();
    insert(102, confirmed_at + 40_000_000, 200, "pending").await;
    let (code, all) = verify(&[&run_dir]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("bounded-pending-age        FAIL")
            && all.contains("the customer was still told pending at")
            && all.contains("(bound 31.0 s)"),
        "{all}"
    );
    pool.close().await;
}

/// The customers' carts and the profile's stock are the witnesses of no-oversell: a
/// confirmed customer's cart that takes more than the initial stock fails it whatever the
/// reservations say, and so does a system that records another initial stock than the run
/// asked for; the untouched run passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carts_and_the_profile_judge_no_oversell() {
    let (_dir, out, all) = passing_run("witness-carts");
    let run_dir = out.to_str().unwrap().to_string();
    assert!(all.contains("customers' carts:"), "{all}");

    let pool = history(&out).await;
    let (order_id, cart): (String, String) = sqlx::query_as(
        "SELECT order_id, cart FROM history_arrivals WHERE outcome = 'confirmed' ORDER BY arrival_id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let lines: Vec<serde_json::Value> = serde_json::from_str(&cart).unwrap();
    let sku = lines[0]["sku"].as_str().unwrap().to_string();
    let region = evidence::owner_of(&order_id).as_str().to_string();
    sqlx::query("UPDATE history_arrivals SET cart = $1 WHERE order_id = $2")
        .bind(serde_json::json!([{"sku": sku, "qty": 1_000_000}]).to_string())
        .bind(&order_id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (code, all) = verify(&[&run_dir]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("no-oversell                FAIL")
            && all.contains(&format!("customers of region {region} were sold"))
            && all.contains(&format!("of sku {sku}")),
        "{all}"
    );

    // Put the cart back; then the system's record of its stock disagrees with the profile.
    let pool = history(&out).await;
    sqlx::query("UPDATE history_arrivals SET cart = $1 WHERE order_id = $2")
        .bind(&cart)
        .bind(&order_id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let stores = StoreUrl::Sqlite {
        dir: out.join("stores"),
    };
    let db = evidence::Db::open(&stores, StoreName::Region(RegionId::B))
        .await
        .unwrap();
    let mut claim = evidence::RunParams::read(&db).await.unwrap();
    let asked = claim.initial_stock[&sku];
    claim.initial_stock.insert(sku.clone(), asked + 500);
    claim.write(&db).await.unwrap();
    db.close().await;
    let (code, all) = verify(&[&run_dir]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains(&format!(
            "region_b ran with stock.{sku} = {}; the run asked for {asked}",
            asked + 500
        )),
        "{all}"
    );
}

/// The system's own rows are claims checked against the customer's cart and the profile:
/// a pricing bug that charges the wrong amount consistently (order row and charge agree)
/// fails money-conservation; a region whose inventory holds another stock than the run
/// asked for, or whose reservations lost a confirmed sale with the counter kept consistent,
/// fails no-oversell; an order row that names a region other than its id's as its owner
/// fails single-final-outcome. The untouched run passes, and so do the pricing and stock
/// steps put back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systems_rows_are_checked_against_carts_and_profile() {
    let (_dir, out, _) = passing_run("witness-claims");
    let run_dir = out.to_str().unwrap().to_string();
    let history = history(&out).await;
    let (order_id, cart): (String, String) = sqlx::query_as(
        "SELECT order_id, cart FROM history_arrivals WHERE outcome = 'confirmed' ORDER BY arrival_id LIMIT 1",
    )
    .fetch_one(&history)
    .await
    .unwrap();
    history.close().await;
    let owner = evidence::owner_of(&order_id).as_str();
    let other = if owner == "a" { "b" } else { "a" };
    let region = sqlite(&out, &format!("stores/region_{owner}.db")).await;
    let provider = sqlite(&out, "stores/provider.db").await;
    let run = |sql: &'static str, pool: &sqlx::SqlitePool| {
        let (pool, order_id) = (pool.clone(), order_id.clone());
        async move {
            let n = sqlx::query(sql)
                .bind(&order_id)
                .execute(&pool)
                .await
                .unwrap()
                .rows_affected();
            assert!(n > 0, "{sql} changed nothing");
        }
    };
    let fails = |invariant: &'static str, expect: String| {
        let run_dir = run_dir.clone();
        async move {
            let (code, all) = verify(&[&run_dir]);
            assert_eq!(code, Some(1), "{all}");
            assert!(
                all.contains(&format!("{invariant:<26} FAIL")) && all.contains(&expect),
                "expected {invariant} to fail with {expect:?}: {all}"
            );
        }
    };
    let passes = || {
        let run_dir = run_dir.clone();
        async move {
            let (code, all) = verify(&[&run_dir]);
            assert_eq!(code, Some(0), "put back: {all}");
        }
    };

    // A pricing bug: the row and the charge both say a dollar more than the cart costs.
    let up = "UPDATE orders SET amount_cents = amount_cents + 100 WHERE order_id = $1";
    run(up, &region).await;
    let up = "UPDATE provider_charges SET amount_cents = amount_cents + 100 WHERE order_id = $1";
    run(up, &provider).await;
    fails("money-conservation", "at the profile's prices".to_string()).await;
    let down = "UPDATE orders SET amount_cents = amount_cents - 100 WHERE order_id = $1";
    run(down, &region).await;
    let down = "UPDATE provider_charges SET amount_cents = amount_cents - 100 WHERE order_id = $1";
    run(down, &provider).await;
    passes().await;

    // The owner named in the row is not the one the order id maps to.
    let row = sqlx::query("UPDATE orders SET owner_region = $1 WHERE order_id = $2")
        .bind(other)
        .bind(&order_id);
    row.execute(&region).await.unwrap();
    fails(
        "single-final-outcome",
        format!("names region {other} its owner, but the order id belongs to region {owner}"),
    )
    .await;
    let row = sqlx::query("UPDATE orders SET owner_region = $1 WHERE order_id = $2")
        .bind(owner)
        .bind(&order_id);
    row.execute(&region).await.unwrap();

    // The inventory holds another stock than the run asked for.
    let lines: Vec<serde_json::Value> = serde_json::from_str(&cart).unwrap();
    let sku = lines[0]["sku"].as_str().unwrap().to_string();
    let stock = |delta: i64| {
        let (region, sku) = (region.clone(), sku.clone());
        async move {
            sqlx::query("UPDATE inventory SET stock = stock + $1 WHERE sku = $2")
                .bind(delta)
                .bind(sku)
                .execute(&region)
                .await
                .unwrap();
        }
    };
    stock(5).await;
    fails(
        "no-oversell",
        format!("region_{owner}'s inventory holds a stock of"),
    )
    .await;
    stock(-5).await;
    passes().await;

    // A confirmed sale lost from the reservations, the counter kept consistent with them.
    let (qty,): (i64,) = sqlx::query_as(
        "SELECT qty FROM reservations WHERE order_id = $1 AND sku = $2 AND status = 'committed'",
    )
    .bind(&order_id)
    .bind(&sku)
    .fetch_one(&region)
    .await
    .unwrap();
    sqlx::query("DELETE FROM reservations WHERE order_id = $1 AND sku = $2")
        .bind(&order_id)
        .bind(&sku)
        .execute(&region)
        .await
        .unwrap();
    sqlx::query("UPDATE inventory SET reserved = reserved - $1 WHERE sku = $2")
        .bind(qty)
        .bind(&sku)
        .execute(&region)
        .await
        .unwrap();
    fails(
        "no-oversell",
        format!("region_{owner}'s reservations commit"),
    )
    .await;
    region.close().await;
    provider.close().await;
}

/// After the drain the run asks again about every order whose customer gave up, and keeps
/// the answers in the history: a customer who would still be told pending then fails
/// bounded-pending-age, and a final answer there is what that customer was told, judged by
/// client-agrees against the provider's ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_polls_are_witnesses() {
    let dir = TempDir::new("witness-final-polls");
    let out = dir.path().join("run");
    // Customers give up after 1 s while the provider takes 1.5 s: their outcome is unknown
    // to them, and the run asks again after the drain.
    let output = rig_within(
        &[
            "run",
            &quickstart(),
            "--out",
            out.to_str().unwrap(),
            "--set",
            r#"workload.phases=[{kind = "hold", rate = 20, for = "5s"}]"#,
            "--set",
            r#"workload.give_up_after="1s""#,
            "--set",
            r#"chaos=[{name = "slow", at = "1s", for = "3s", kind = "provider", latency_ms = 1500}]"#,
            "--set",
            "thresholds={}",
        ],
        Duration::from_secs(180),
    );
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{stderr}",
        text(&output.stdout)
    );
    assert!(
        stderr.contains("rig run: asked the system again about"),
        "{stderr}"
    );
    let pool = history(&out).await;
    let (final_polls, pending): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN answer = 'pending' THEN 1 ELSE 0 END), 0) \
         FROM history_requests WHERE kind = 'final_poll'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        final_polls > 0,
        "customers gave up and were asked about again"
    );
    assert_eq!(pending, 0, "nothing is pending after the drain");
    let (rowid, answer, status): (i64, String, Option<i64>) = sqlx::query_as(
        "SELECT rowid, answer, http_status FROM history_requests WHERE kind = 'final_poll' LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE history_requests SET answer = 'pending', http_status = 200 WHERE rowid = $1",
    )
    .bind(rowid)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let (code, all) = verify(&[out.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("bounded-pending-age        FAIL")
            && all.contains("still pending when the run asked again after the drain"),
        "{all}"
    );

    // The final poll is what a customer that gave up was told: one told failed there whose
    // order is charged fails client-agrees.
    let pool = history(&out).await;
    sqlx::query("UPDATE history_requests SET answer = $1, http_status = $2 WHERE rowid = $3")
        .bind(&answer)
        .bind(status)
        .bind(rowid)
        .execute(&pool)
        .await
        .unwrap();
    let (code, all) = verify(&[out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "put back: {all}");
    let settled: u64 = all
        .split(" settled by the poll after the drain")
        .next()
        .and_then(|before| before.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("a count of customers settled by the final poll: {all}"));
    assert!(
        settled > 0,
        "customers that gave up learned the outcome: {all}"
    );
    let changed = sqlx::query(
        "UPDATE history_requests SET answer = 'failed' WHERE rowid = \
         (SELECT r.rowid FROM history_requests r JOIN history_arrivals a ON a.arrival_id = r.arrival_id \
          WHERE r.kind = 'final_poll' AND r.answer = 'confirmed' AND a.outcome = 'unknown' LIMIT 1)",
    )
    .execute(&pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(
        changed, 1,
        "a customer that gave up was told confirmed after the drain"
    );
    pool.close().await;
    let (code, all) = verify(&[out.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("client-agrees              FAIL")
            && all.contains("client told failed at")
            && all.contains("is charged"),
        "{all}"
    );
}

/// Opens one of a finished run's SQLite files for writing (as a tampering system would).
async fn sqlite(out: &Path, file: &str) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", out.join(file).display()))
        .await
        .unwrap()
}

/// The provider's request log, attributed per region by the listener each region's proxy
/// leads to, judges admission control: more calls from one region in flight at once than
/// the limit, or more retries than the budget, fail admission-control however the region's
/// own payment_attempts read; the untouched run passes on both accounts, which agree. The
/// client history judges shed speed on refusals of new work, not on a duplicate's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_log_judges_admission_per_region() {
    let (_dir, out, all) = passing_run("witness-provider-log");
    let run_dir = out.to_str().unwrap().to_string();
    assert!(
        all.contains("region a (provider log): peak")
            && all.contains("region b (provider log): peak")
            && all.contains("region_a (its own payment_attempts): peak"),
        "{all}"
    );
    let pool = sqlite(&out, "stores/provider.db").await;
    let mid: i64 = sqlx::query_scalar(
        "SELECT received_at_us FROM provider_requests WHERE caller = 'a' ORDER BY id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let log = |caller: &'static str, key: String, op: &'static str, at: i64, took: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO provider_requests (op, idempotency_key, received_at_us, \
                 finished_at_us, http_status, outcome, caller) VALUES ($1, $2, $3, $4, 200, 'found', $5)",
            )
            .bind(op)
            .bind(key)
            .bind(at)
            .bind(at + took)
            .bind(caller)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    // Region a held 80 calls at once (the limit is 64).
    for n in 0..80 {
        log("a", format!("pay:extra-{n}"), "lookup", mid + n, 5_000_000).await;
    }
    let (code, all) = verify(&[&run_dir]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("admission-control          FAIL")
            && all.contains("region a (provider log): ")
            && all.contains("provider calls in flight at")
            && all.contains("(limit 64)"),
        "{all}"
    );
    assert!(
        !all.contains("region_a (its own payment_attempts): 8"),
        "the claims did not change: {all}"
    );
    sqlx::query("DELETE FROM provider_requests WHERE idempotency_key LIKE 'pay:extra-%'")
        .execute(&pool)
        .await
        .unwrap();
    // Region b retried one key 400 times within a second (budget: 0.2 x first tries + 100
    // per 10 s).
    for n in 0..401 {
        log(
            "b",
            "pay:storm".to_string(),
            "charge",
            mid + n * 2_000,
            1_000,
        )
        .await;
    }
    let (code, all) = verify(&[&run_dir]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("region b (provider log): ") && all.contains("retries on"),
        "{all}"
    );
    assert!(all.contains("budget allows"), "{all}");
    sqlx::query("DELETE FROM provider_requests WHERE idempotency_key = 'pay:storm'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    // The client history judges shed speed, on refusals of work not yet started: a customer
    // shed with 429 whose double click, sent while the first waited, got a 503 after 600 ms
    // (an in-progress answer of the idempotency path) passes; the same 503 to a retry sent
    // after the 429 (new work again) is a slow shed and fails (bound 100 ms).
    let history = history(&out).await;
    let arrival: i64 = sqlx::query_scalar("SELECT MAX(arrival_id) + 1 FROM history_arrivals")
        .fetch_one(&history)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO history_arrivals (arrival_id, order_id, customer_id, entry_region, phase, \
         intended_at_us, sent_at_us, finished_at_us, attempts, polls, last_status, outcome) \
         SELECT $1, 'witness-shed', 'witness-customer', 'a', phase, $2, $2, $2 + 600000, 2, 0, \
         503, 'rejected' FROM history_arrivals LIMIT 1",
    )
    .bind(arrival)
    .bind(mid)
    .execute(&history)
    .await
    .unwrap();
    let shed = |seq: i64, kind: &'static str, sent: i64, took: i64, status: i64| {
        let history = history.clone();
        async move {
            sqlx::query(
                "INSERT INTO history_requests (arrival_id, seq, kind, region, sent_at_us, \
                 finished_at_us, http_status, answer, retry_after_ms, order_id) \
                 VALUES ($1, $2, $3, 'a', $4, $5, $6, 'rejected', 1000, 'witness-shed')",
            )
            .bind(arrival)
            .bind(seq)
            .bind(kind)
            .bind(sent)
            .bind(sent + took)
            .bind(status)
            .execute(&history)
            .await
            .unwrap();
        }
    };
    // How many shed answers to duplicates a verify's summary counted (0 when none).
    let duplicates = |all: &str| -> u64 {
        all.split("; ")
            .find_map(|note| {
                let (count, rest) = note.split_once(' ')?;
                rest.starts_with("shed answers went to a duplicate")
                    .then(|| count.parse().ok())
                    .flatten()
            })
            .unwrap_or(0)
    };
    let (_, untouched) = verify(&[&run_dir]);
    shed(0, "checkout", mid, 40_000, 429).await;
    shed(1, "double_click", mid + 10_000, 600_000, 503).await;
    let (code, all) = verify(&[&run_dir]);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(duplicates(&all), duplicates(&untouched) + 1, "{all}");
    sqlx::query("UPDATE history_requests SET kind = 'retry', sent_at_us = $1, finished_at_us = $2 WHERE arrival_id = $3 AND seq = 1")
        .bind(mid + 50_000)
        .bind(mid + 650_000)
        .bind(arrival)
        .execute(&history)
        .await
        .unwrap();
    let (code, all) = verify(&[&run_dir]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("admission-control          FAIL")
            && all.contains("shed requests took ")
            && all.contains(" ms at p99, over the 100 ms bound"),
        "{all}"
    );
    history.close().await;
}

/// The event sink's log is the witness of outbox-effectively-once: a confirmed customer's
/// event missing at the sink, a second distinct confirmation event, an event id the sink
/// had accepted for another order, a confirmation announced by the region that does not
/// own the order, one that arrives long after the customer was told, or an event for a
/// failed order each fail it;
/// a sink that saw nothing at all leaves it unknown, never pass; the untouched run passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_log_judges_the_events() {
    let (_dir, out, all) = passing_run("witness-sink");
    let run_dir = out.to_str().unwrap().to_string();
    assert!(
        all.contains("outbox-effectively-once    PASS") && all.contains("judged at the sink"),
        "{all}"
    );
    let sink = sqlite(&out, "stores/sink.db").await;
    let history = history(&out).await;
    let confirmed: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT order_id FROM history_requests WHERE answer = 'confirmed' ORDER BY order_id LIMIT 3",
    )
    .fetch_all(&history)
    .await
    .unwrap();
    let failed: String = sqlx::query_scalar(
        "SELECT order_id FROM history_requests WHERE answer = 'failed' ORDER BY order_id LIMIT 1",
    )
    .fetch_one(&history)
    .await
    .unwrap();
    let judged = |expect: &str| {
        let (run_dir, expect) = (run_dir.clone(), expect.to_string());
        async move {
            let (code, all) = verify(&[&run_dir]);
            assert_eq!(code, Some(1), "{all}");
            assert!(
                all.contains("outbox-effectively-once    FAIL") && all.contains(&expect),
                "expected {expect:?}: {all}"
            );
        }
    };

    // A lost confirmation: the sink never received it.
    sqlx::query("UPDATE sink_deliveries SET order_id = 'moved-away' WHERE order_id = $1")
        .bind(&confirmed[0])
        .execute(&sink)
        .await
        .unwrap();
    judged("no confirmation event reached the sink").await;
    sqlx::query("UPDATE sink_deliveries SET order_id = $1 WHERE order_id = 'moved-away'")
        .bind(&confirmed[0])
        .execute(&sink)
        .await
        .unwrap();

    // A second, distinct confirmation for one order.
    let copy = "INSERT INTO sink_deliveries (event_id, order_id, event_type, version, caller, \
         received_at_us, http_status, outcome) SELECT event_id || '-again', order_id, event_type, \
         version, caller, received_at_us + 1000, 200, 'accepted' FROM sink_deliveries WHERE order_id = $1";
    sqlx::query(copy)
        .bind(&confirmed[1])
        .execute(&sink)
        .await
        .unwrap();
    judged("2 distinct confirmation events reached the sink for one order").await;
    sqlx::query("DELETE FROM sink_deliveries WHERE event_id LIKE '%-again'")
        .execute(&sink)
        .await
        .unwrap();

    // An event id reused for a second order (a counter that restarts): the sink answers it
    // as a duplicate, so a deduplicating consumer never confirms that order.
    let id_of = |order: String| {
        let sink = sink.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT event_id FROM sink_deliveries WHERE order_id = $1 AND outcome = 'accepted' LIMIT 1",
            )
            .bind(order)
            .fetch_one(&sink)
            .await
            .unwrap()
        }
    };
    let (first, second) = (
        id_of(confirmed[0].clone()).await,
        id_of(confirmed[1].clone()).await,
    );
    let kept: Vec<(i64, String)> =
        sqlx::query_as("SELECT rowid, outcome FROM sink_deliveries WHERE order_id = $1")
            .bind(&confirmed[1])
            .fetch_all(&sink)
            .await
            .unwrap();
    sqlx::query(
        "UPDATE sink_deliveries SET event_id = $1, outcome = 'duplicate' WHERE order_id = $2",
    )
    .bind(&first)
    .bind(&confirmed[1])
    .execute(&sink)
    .await
    .unwrap();
    judged("as a duplicate of an event id first delivered for another order").await;
    for (rowid, outcome) in &kept {
        sqlx::query("UPDATE sink_deliveries SET event_id = $1, outcome = $2 WHERE rowid = $3")
            .bind(&second)
            .bind(outcome)
            .bind(rowid)
            .execute(&sink)
            .await
            .unwrap();
    }

    // A confirmation announced by the region that does not own the order.
    let owner = evidence::owner_of(&confirmed[2]).as_str();
    let other = if owner == "a" { "b" } else { "a" };
    sqlx::query("UPDATE sink_deliveries SET caller = $1 WHERE order_id = $2")
        .bind(other)
        .bind(&confirmed[2])
        .execute(&sink)
        .await
        .unwrap();
    judged(&format!(
        "from region {other}'s relay, but the order belongs to region {owner}"
    ))
    .await;
    sqlx::query("UPDATE sink_deliveries SET caller = $1 WHERE order_id = $2")
        .bind(owner)
        .bind(&confirmed[2])
        .execute(&sink)
        .await
        .unwrap();

    // A confirmation a minute late (the bound is 12 s at the default outbox settings).
    sqlx::query(
        "UPDATE sink_deliveries SET received_at_us = received_at_us + 60000000 WHERE order_id = $1",
    )
    .bind(&confirmed[2])
    .execute(&sink)
    .await
    .unwrap();
    judged("after the customer was told confirmed (bound 12.0 s)").await;
    sqlx::query(
        "UPDATE sink_deliveries SET received_at_us = received_at_us - 60000000 WHERE order_id = $1",
    )
    .bind(&confirmed[2])
    .execute(&sink)
    .await
    .unwrap();

    // A confirmation for an order its customer was told failed.
    sqlx::query(
        "INSERT INTO sink_deliveries (event_id, order_id, event_type, version, caller, \
         received_at_us, http_status, outcome) VALUES ('ev-forged', $1, 'order_confirmed', 3, $2, 1, 200, 'accepted')",
    )
    .bind(&failed)
    .bind(evidence::owner_of(&failed).as_str())
    .execute(&sink)
    .await
    .unwrap();
    judged("for an order that is not confirmed (customer told failed").await;

    // A sink that saw nothing: no witness, so unknown, never pass.
    sqlx::query("DELETE FROM sink_deliveries")
        .execute(&sink)
        .await
        .unwrap();
    let (code, all) = verify(&[&run_dir]);
    assert_eq!(code, Some(0), "unknown is not a failure: {all}");
    assert!(
        all.contains("outbox-effectively-once    UNKNOWN")
            && all.contains("the event sink saw no delivery at all"),
        "{all}"
    );
    sink.close().await;
    history.close().await;
}

/// `kind = "sink"` faults the rig's event sink on the load clock: while it answers slowly
/// the outbox relays back up, and the confirmations that reach it later than
/// `[verify] event_age_ms` fail outbox-effectively-once, naming the bound; the same records
/// pass under the default bound; the journal shows the sink window applied and healed.
#[test]
fn a_slow_sink_backs_the_relay_up_and_the_event_age_shows_it() {
    let dir = TempDir::new("witness-sink-chaos");
    let out = dir.path().join("run");
    let slow = r#"{name = "slow sink", at = "1s", for = "3s", kind = "sink", latency_ms = 400}"#;
    let (code, all) = six_seconds(&out, slow, &["verify.event_age_ms=1000"]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("outbox-effectively-once    FAIL")
            && all.contains("after the customer was told confirmed (bound 1.0 s)"),
        "{all}"
    );
    let journal = std::fs::read_to_string(out.join("chaos.jsonl")).unwrap();
    for action in ["start", "stop"] {
        let step = format!("\"action\":\"{action}\",\"kind\":\"sink\"");
        assert!(
            journal
                .lines()
                .any(|l| l.contains("\"event\":\"applied\"") && l.contains(&step)),
            "the journal has the sink window's {action} applied: {journal}"
        );
    }
    assert!(
        journal.lines().last().unwrap().contains("\"healed\""),
        "the journal ends healed: {journal}"
    );
    let (code, all) = verify(&[out.to_str().unwrap(), "--event-age-ms", "12000"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("oldest confirmation"), "{all}");
}
