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
    let dir = TempDir::new("witness-profile");
    let out = dir.path().join("run");
    short_run(&out);
    let run_dir = out.to_str().unwrap().to_string();
    let (code, all) = verify(&[&run_dir]);
    assert_eq!(code, Some(0), "the untouched run passes: {all}");
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
