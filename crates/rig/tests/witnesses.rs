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

/// A short passing run (SQLite) in `out`.
fn short_run(out: &Path) {
    let output = rig_within(
        &[
            "run",
            &quickstart(),
            "--out",
            out.to_str().unwrap(),
            "--set",
            r#"workload.phases=[{kind = "hold", rate = 30, for = "6s"}]"#,
            "--set",
            r#"chaos=[{name = "spike", at = "1s", for = "2s", kind = "provider", latency_ms = 1500}]"#,
        ],
        Duration::from_secs(180),
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
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
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", out.join("history.db").display()))
        .await
        .unwrap()
}

/// The customer's answer sequence is a witness: an answer that moves backward (pending
/// after confirmed, the other final, a 404 after the order was seen) fails
/// single-final-outcome, and a customer still told pending past the bound fails
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

/// After the drain the run asks again about every order whose customer gave up, and keeps
/// the answers in the history: a customer who would still be told pending then fails
/// bounded-pending-age.
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
    sqlx::query(
        "UPDATE history_requests SET answer = 'pending', http_status = 200 WHERE rowid = \
         (SELECT rowid FROM history_requests WHERE kind = 'final_poll' LIMIT 1)",
    )
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
}
