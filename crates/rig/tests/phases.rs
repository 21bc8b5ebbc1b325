//! The run's phases called as a library, without the binary: what `prepare` checks before
//! anything starts, and what it leaves behind when it accepts a profile.

use std::path::PathBuf;

use rig::exit::BadInput;
use rig::run::{RunOptions, prepare};

fn quickstart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../profiles/quickstart.toml")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rig-phases-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Bad input of every kind prepare owns (a chaos entry, a proxy the topology lacks, a
/// window past the load, the workload, the store URL) is refused as `BadInput` (exit 2)
/// and creates no run directory.
#[tokio::test]
async fn prepare_refuses_bad_input_before_anything_exists() {
    let out = scratch("bad");
    let link = "chaos=[{at=\"1s\", for=\"2s\", kind=\"link\", proxy=\"a_to_c\", toxic=\"latency\", latency_ms=5}]";
    let late = "chaos=[{at=\"30s\", for=\"20s\", kind=\"provider\", outage=true}]";
    let cases: [(&[&str], Option<&str>, &str); 5] = [
        (
            &["chaos=[{at=\"1s\", for=\"2s\", kind=\"earthquake\"}]"],
            None,
            "earthquake",
        ),
        (
            &[link],
            None,
            "proxy = \"a_to_c\" is not part of the run's topology; use one of a_to_b, b_to_a",
        ),
        (
            &[late],
            None,
            "the window 30s..50s ends after the load, which lasts 40s",
        ),
        (
            &["workload.double_click_fraction=2.0"],
            None,
            "double_click_fraction",
        ),
        (&[], Some("mysql://nowhere"), "--store"),
    ];
    for (sets, store, named) in cases {
        let options = RunOptions {
            profile: quickstart(),
            sets: sets.iter().map(|s| s.to_string()).collect(),
            store: store.map(str::to_string),
            out: Some(out.clone()),
            ..RunOptions::default()
        };
        let err = prepare(&options).await.expect_err("refused");
        assert!(err.downcast_ref::<BadInput>().is_some(), "{err:#}");
        assert!(format!("{err:#}").contains(named), "{named}: {err:#}");
        assert!(!out.exists(), "{named}: nothing is created for bad input");
    }
}

/// An accepted profile gets its run directory with the resolved profile, the seed from
/// the options, the chaos plan expanded, its stores inside the run directory, and the
/// INCOMPLETE marker; a second prepare on the same directory is refused and changes nothing.
#[tokio::test]
async fn prepare_writes_the_resolved_profile() {
    let out = scratch("good");
    let options = RunOptions {
        profile: quickstart(),
        seed: Some(7),
        out: Some(out.clone()),
        ..RunOptions::default()
    };
    let prepared = prepare(&options).await.expect("quickstart is valid");
    assert_eq!(prepared.profile().run.seed, 7);
    assert_eq!(prepared.plan.windows.len(), 2, "two [[chaos]] entries");
    assert_eq!(
        prepared.store.to_string(),
        format!("sqlite://{}", out.join("stores").display())
    );
    let written = std::fs::read_to_string(out.join("profile.toml")).unwrap();
    assert!(written.contains("seed = 7"), "{written}");
    assert!(out.join(rig::run::INCOMPLETE).exists());
    let again = RunOptions {
        seed: Some(8),
        ..options
    };
    let err = prepare(&again).await.expect_err("a used directory");
    assert!(err.downcast_ref::<BadInput>().is_some(), "{err:#}");
    assert!(format!("{err}").contains("already holds files"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("profile.toml")).unwrap(),
        written
    );
    std::fs::remove_dir_all(&out).unwrap();
}
