//! Black-box mode judges a checkout service the rig did not build and cannot read: the
//! example service (in memory, one order book, its own payment logic) passes with its
//! correct switch and fails no-duplicate-charge with the fresh-key-per-retry bug, judged
//! from the rig's provider, sink and client history alone.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{KillOnDrop, rig_within, text};
use target_system::testkit::TempDir;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The example binary: built by `cargo test` beside the rig's (a run of this file alone
/// builds it first).
fn example() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let rig = PathBuf::from(env!("CARGO_BIN_EXE_rig"));
    let path = rig.parent().unwrap().join("examples/checkout_service");
    BUILT.call_once(|| {
        if !path.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "rig", "--example", "checkout_service"])
                .status()
                .expect("cargo builds the example");
            assert!(status.success(), "the example service builds");
        }
    });
    path
}

/// A loopback address nobody listens on now.
fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// How the example service pays: the rig's native API, or the rig's Stripe face at an
/// address through Stripe's Node SDK (its `node_modules` folder).
#[derive(Clone, Copy)]
enum Pays<'a> {
    Native,
    Stripe(&'a str, &'a Path),
}

/// Starts the example service paying at `provider` (or as `pays` says) and delivering to
/// `sink` (a, b); its two entry URLs.
fn service(
    provider: &[String; 2],
    sink: &[String; 2],
    buggy: bool,
    pays: Pays,
) -> (KillOnDrop, String) {
    let mut command = Command::new(example());
    command
        .args([
            "--profile",
            repo("profiles/quickstart.toml").to_str().unwrap(),
        ])
        .args(["--listen-a", "127.0.0.1:0", "--listen-b", "127.0.0.1:0"])
        .args(["--provider-a", &format!("http://{}", provider[0])])
        .args(["--provider-b", &format!("http://{}", provider[1])])
        .args(["--sink-a", &format!("http://{}", sink[0])])
        .args(["--sink-b", &format!("http://{}", sink[1])])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if buggy {
        command.arg("--fresh-key-per-retry");
    }
    if let Pays::Stripe(addr, modules) = pays {
        command
            .args(["--pay-with-stripe", &format!("http://{addr}")])
            .env("NODE_PATH", modules);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts (built by cargo test): {e}", example().display()));
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut urls = Vec::new();
    while urls.len() < 2 {
        let line = lines
            .next()
            .expect("the service announces its entries")
            .unwrap();
        if let Some(rest) = line.split(" on ").nth(1) {
            urls.push(rest.split_whitespace().next().unwrap().to_string());
        }
    }
    (KillOnDrop(Some(child)), urls.join(","))
}

/// A black-box run of the quickstart profile with `sets` against the example service: the
/// run directory, the exit code and the output.
fn black_box_run(
    dir: &TempDir,
    buggy: bool,
    sets: &[&str],
    stripe: Option<&Path>,
) -> (PathBuf, Option<i32>, String) {
    let provider = [free_addr(), free_addr()];
    let sink = [free_addr(), free_addr()];
    // The Stripe face needs an address the service knows beforehand only when it pays
    // there; otherwise any free port will do (one fewer address picked ahead and released).
    let stripe_addr = match stripe {
        Some(_) => free_addr(),
        None => "127.0.0.1:0".to_string(),
    };
    let pays = match stripe {
        Some(modules) => Pays::Stripe(&stripe_addr, modules),
        None => Pays::Native,
    };
    let (_service, regions) = service(&provider, &sink, buggy, pays);
    let pair = |addrs: &[String; 2]| format!("a={},b={}", addrs[0], addrs[1]);
    let out = dir.path().join("run");
    let (profile, provider, sink) = (
        repo("profiles/quickstart.toml"),
        pair(&provider),
        pair(&sink),
    );
    let mut args = vec![
        "run",
        profile.to_str().unwrap(),
        "--regions",
        &regions,
        "--provider-listen",
        &provider,
        "--sink-listen",
        &sink,
        "--stripe-listen",
        &stripe_addr,
        "--out",
        out.to_str().unwrap(),
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let output = rig_within(&args, Duration::from_secs(180));
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    (out, output.status.code(), all)
}

/// One short black-box run with a provider latency spike and the service's stated limits;
/// its summary follows the schema, and `rig verify RUN_DIR` comes to the same exit code.
fn judge(name: &str, buggy: bool, stripe: Option<&Path>) -> (Option<i32>, String) {
    let dir = TempDir::new(name);
    let (out, code, all) = black_box_run(
        &dir,
        buggy,
        &[
            r#"workload.phases=[{kind = "hold", rate = 30, for = "6s"}]"#,
            r#"chaos=[{name = "spike", at = "1s", for = "3s", kind = "provider", latency_ms = 1500}]"#,
            "verify.provider_max_in_flight=256",
            "verify.retry_budget_ratio=3",
        ],
        stripe,
    );
    let summary = std::fs::read_to_string(out.join("summary.json"))
        .unwrap_or_else(|err| panic!("the run left no summary.json ({err}):\n{all}"));
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["system"], "black-box", "{all}");
    common::assert_summary_schema(&summary);
    let verify = rig_within(&["verify", out.to_str().unwrap()], Duration::from_secs(120));
    let again = format!("{}{}", text(&verify.stdout), text(&verify.stderr));
    assert_eq!(verify.status.code(), code, "{again}");
    (code, all)
}

#[test]
fn the_example_service_passes_and_its_fresh_key_bug_double_charges() {
    let (code, all) = judge("black-box-correct", false, None);
    assert_eq!(code, Some(0), "{all}");
    assert!(
        all.contains("overall: PASS")
            && all.contains("amounts from the customers' carts at the profile's prices")
            && all.contains("judged at the sink")
            && all.contains("region a (provider log): peak"),
        "{all}"
    );

    let (code, all) = judge("black-box-buggy", true, None);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("no-duplicate-charge        FAIL")
            && all.contains("live charges for one order"),
        "{all}"
    );
}

/// Without admission limits for a system it did not configure, the rig does not judge
/// that system's provider-call limit or retry budget by the reference system's: the
/// invariant says so and is unknown, not pass.
#[test]
fn black_box_admission_limits_must_be_given() {
    let dir = TempDir::new("black-box-no-limits");
    let (_, code, all) = black_box_run(
        &dir,
        false,
        &[
            r#"workload.phases=[{kind = "hold", rate = 20, for = "3s"}]"#,
            "chaos=[]",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{all}");
    assert!(
        all.contains("admission-control          UNKNOWN")
            && all.contains("the provider-call limit and the retry budget were not judged"),
        "{all}"
    );
}

/// The npm `stripe` package's `node_modules` folder (installed by
/// `tests/conformance/install.sh`), or a printed reason to skip (a failure under CI=true).
fn stripe_node_modules() -> Option<PathBuf> {
    let found = std::env::var_os("RIG_CONFORMANCE_CACHE")
        .map(PathBuf::from)
        .map(|cache| cache.join("node/node_modules"))
        .filter(|modules| modules.join("stripe/package.json").exists());
    if found.is_none() {
        let reason = "the npm stripe package is not installed: run `RIG_CONFORMANCE_CACHE=DIR bash tests/conformance/install.sh` and set RIG_CONFORMANCE_CACHE=DIR";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{reason}; CI must have it");
        }
        eprintln!("skipping: {reason}");
    }
    found
}

/// The example service paying through the rig's Stripe-compatible face with Stripe's
/// official Node SDK (npm stripe 23.2.0, unchanged but for its host) passes a black-box run
/// under the provider latency spike (a timed-out payment is retried under the same key);
/// with its fresh-key bug, that retry is a second PaymentIntent and no-duplicate-charge
/// fails, judged from the same ledger as the native API's charges.
#[test]
fn the_example_service_paying_with_stripes_sdk_passes_and_its_bug_double_charges() {
    let Some(modules) = stripe_node_modules() else {
        return;
    };
    let (code, all) = judge("black-box-stripe", false, Some(&modules));
    assert_eq!(code, Some(0), "{all}");
    assert!(
        all.contains("overall: PASS") && all.contains("region a (provider log): peak"),
        "{all}"
    );

    let (code, all) = judge("black-box-stripe-buggy", true, Some(&modules));
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("no-duplicate-charge        FAIL")
            && all.contains("live charges for one order"),
        "{all}"
    );
}
