//! `rig verify` as a user runs it: records from a real run of the reference system, then the
//! verifier process over them.

use std::process::Command;

use evidence::{RegionId, StoreName};
use serde_json::{Value, json};
use target_system::testkit::harness::{Harness, order_owned_by, quiet_config};

fn rig(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args(args)
        .output()
        .expect("rig runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A clean run verifies with exit 0 and a verdict table and JSON; a forged second charge
/// makes it exit 1 naming no-duplicate-charge; missing stores exit 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_exit_codes_follow_the_verdict() {
    let h = Harness::start(target_system::testkit::sqlite("cli-verify"), quiet_config()).await;
    let mut orders = Vec::new();
    for i in 0..6 {
        let order = order_owned_by(
            if i % 2 == 0 { RegionId::A } else { RegionId::B },
            &format!("cv-{i}"),
        );
        assert_eq!(
            h.checkout(RegionId::A, &order, json!([{"sku": "sku-1", "qty": 1}]))
                .await
                .status,
            201
        );
        orders.push(order);
    }
    for region in RegionId::ALL {
        h.region(region).relay_once().await.unwrap();
    }
    let Harness { system, stores, .. } = h;
    system.shutdown().await.unwrap();
    let store = stores.url.to_string();
    let dir = target_system::testkit::TempDir::new("cli-verify-out");
    let json_path = dir.path().join("verdict.json");

    let (code, stdout, stderr) = rig(&[
        "verify",
        "--store",
        &store,
        "--json",
        json_path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("no-duplicate-charge") && stdout.contains("PASS"),
        "{stdout}"
    );
    assert!(
        stdout.contains("client-agrees") && stdout.contains("unknown: no client history"),
        "{stdout}"
    );
    let verdict: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(verdict["verdicts"].as_array().unwrap().len(), 8);

    let provider = evidence::Db::open(&stores.url, StoreName::Provider)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO provider_charges (charge_id, idempotency_key, order_id, amount_cents, currency, status, refunded_cents, created_at_us, updated_at_us) \
         SELECT 'ch_forged', 'forged', order_id, amount_cents, currency, 'authorized', 0, created_at_us, updated_at_us FROM provider_charges WHERE order_id = $1",
    )
    .bind(&orders[0])
    .execute(&provider.pool)
    .await
    .unwrap();
    provider.close().await;
    let (code, stdout, _) = rig(&["verify", "--store", &store]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("no-duplicate-charge        FAIL"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&orders[0]),
        "the dossier names the order: {stdout}"
    );

    let missing = format!("sqlite://{}", dir.path().join("none").display());
    let (code, _, stderr) = rig(&["verify", "--store", &missing]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("no records"), "{stderr}");
}

/// The verifier never guesses what it cannot read: a store from a newer schema version is
/// refused by name, and a region store without the run's parameters is exit 3 naming the
/// store and the missing record (never judged against default bounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_newer_stores_and_missing_parameters() {
    let h = Harness::start(
        target_system::testkit::sqlite("cli-verify-params"),
        quiet_config(),
    )
    .await;
    let order = order_owned_by(RegionId::A, "cp-0");
    let answer = h
        .checkout(RegionId::A, &order, json!([{"sku": "sku-1", "qty": 1}]))
        .await;
    assert_eq!(answer.status, 201);
    for region in RegionId::ALL {
        h.region(region).relay_once().await.unwrap();
    }
    let Harness { system, stores, .. } = h;
    system.shutdown().await.unwrap();
    let store = stores.url.to_string();
    let (code, stdout, stderr) = rig(&["verify", "--store", &store]);
    assert_eq!(code, 0, "the untouched store verifies: {stdout}{stderr}");

    // A store written by a build whose schema is newer than this one's.
    let provider = evidence::Db::open(&stores.url, StoreName::Provider)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99999, 'from a newer rig', TRUE, x'00', 0)",
    )
    .execute(&provider.pool)
    .await
    .unwrap();
    let (code, _, stderr) = rig(&["verify", "--store", &store]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("provider.db")
            && stderr.contains("written by a newer version of the rig (schema version 99999"),
        "{stderr}"
    );
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 99999")
        .execute(&provider.pool)
        .await
        .unwrap();
    provider.close().await;

    // A region store that does not say which bounds it ran with.
    for region in RegionId::ALL {
        let db = evidence::Db::open(&stores.url, StoreName::Region(region))
            .await
            .unwrap();
        sqlx::query("DELETE FROM run_meta WHERE key = 'run_params'")
            .execute(&db.pool)
            .await
            .unwrap();
        db.close().await;
    }
    let (code, stdout, stderr) = rig(&["verify", "--store", &store]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stderr.contains("region_a.db has no run parameters")
            && stderr.contains("\"run_params\" is missing"),
        "{stderr}"
    );
    assert!(!stdout.contains("PASS"), "nothing is judged: {stdout}");
}
