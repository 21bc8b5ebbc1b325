//! Conformance with software nobody here wrote: the Toxiproxy clients users already have,
//! driven unchanged against `rig toxiproxy`. The clients are installed at fixed versions by
//! `tests/conformance/install.sh` into `RIG_CONFORMANCE_CACHE` (`.ci/run` does it); without
//! them a test skips, printing why, and under `CI=true` it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::text;

/// The workspace's `tests/conformance` folder.
fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance")
}

/// `sub` inside the tool cache, or a printed reason to skip (a failure under CI=true).
fn cached(sub: &str, what: &str) -> Option<PathBuf> {
    let found = std::env::var_os("RIG_CONFORMANCE_CACHE")
        .map(PathBuf::from)
        .map(|cache| cache.join(sub))
        .filter(|path| path.exists());
    if found.is_none() {
        missing(&format!(
            "{what} is not installed: run `RIG_CONFORMANCE_CACHE=DIR bash tests/conformance/install.sh` and set RIG_CONFORMANCE_CACHE=DIR"
        ));
    }
    found
}

/// A tool is missing: the test skips, printing why, or fails under CI=true.
fn missing(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason}; CI must have it");
    }
    eprintln!("skipping: {reason}");
}

/// Runs a client script, failing the test if it fails or outlives `limit`.
fn run_client(command: Command, limit: Duration) -> String {
    let output = common::output_within(command, limit);
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{all}");
    all
}

/// toxiproxy-python 0.1.1 (PyPI), unchanged, drives `rig toxiproxy`: create (and a
/// duplicate refused), list, get, every toxic type with attributes read back, update,
/// remove, disable and enable (a disabled proxy refuses connections), reset, populate,
/// version, delete, and a proxy named with a space.
#[test]
fn toxiproxy_python_client_passes() {
    let Some(cache) = cached("py/toxiproxy", "toxiproxy-python (PyPI)") else {
        return;
    };
    let (_server, address) = common::standalone_toxiproxy();
    let mut command = Command::new("python3");
    command
        .arg(scripts().join("toxiproxy_python.py"))
        .arg(&address)
        .env("PYTHONPATH", cache.parent().unwrap());
    let out = run_client(command, Duration::from_secs(60));
    assert!(
        out.contains("toxiproxy-python: every check passed"),
        "{out}"
    );
}

/// toxiproxy-node-client 4.1.0 (npm), unchanged, drives `rig toxiproxy` through the same
/// operations as the Python client.
#[test]
fn toxiproxy_node_client_passes() {
    let Some(modules) = cached(
        "node/node_modules/toxiproxy-node-client",
        "toxiproxy-node-client (npm)",
    ) else {
        return;
    };
    let (_server, address) = common::standalone_toxiproxy();
    let mut command = Command::new("node");
    command
        .arg(scripts().join("toxiproxy_node.js"))
        .arg(format!("http://{address}"))
        .env("NODE_PATH", modules.parent().unwrap());
    let out = run_client(command, Duration::from_secs(60));
    assert!(
        out.contains("toxiproxy-node-client: every check passed"),
        "{out}"
    );
}

/// Debian's `libhdrhistogram-java`, or a printed reason to skip (a failure under CI=true).
fn hdrhistogram_jar() -> Option<PathBuf> {
    let jar = PathBuf::from("/usr/share/java/hdrhistogram.jar");
    let java = Command::new("java")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if jar.is_file() && java {
        return Some(jar);
    }
    missing(
        "HdrHistogram's Java library is not installed (apt-get install libhdrhistogram-java default-jre-headless)",
    );
    None
}

/// `key=value` pairs of a line.
fn pairs(line: &str) -> std::collections::BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A `rig load` run's `.hlog`, read by HdrHistogram's own Java code: for the untagged
/// histogram and two tags (the generator's lag and one operation's latency), the count,
/// the mean, the max and p50 to p99.99 equal the run's JSON summary to the nanosecond
/// (`HistogramLogReader`), and Java's `HistogramLogProcessor` prints the same count, mean,
/// max, p50 and p90.
#[test]
fn hdrhistogram_java_reads_our_hlog() {
    let Some(jar) = hdrhistogram_jar() else {
        return;
    };
    let dir = target_system::testkit::TempDir::new("conformance-hlog");
    let (_server, address) = common::standalone_toxiproxy();
    let hlog = dir.path().join("load.hlog");
    let json = dir.path().join("load.json");
    let load = common::rig_within(
        &[
            "load",
            &format!("http://{address}/version"),
            "--rate",
            "200",
            "--duration",
            "3s",
            "--hlog",
            hlog.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(load.status.code(), Some(0), "{}", text(&load.stderr));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let phase = &summary["phases"][0];
    let phase_name = phase["name"].as_str().unwrap();
    for (tag, figures) in [
        (String::new(), &summary["latency_seconds"]),
        (format!("lag/{phase_name}"), &phase["generator_lag_seconds"]),
        (
            format!("latency/{phase_name}/http/ok"),
            &phase["latency_seconds"]["http"]["ok"],
        ),
    ] {
        let mut java = Command::new("java");
        java.arg("-cp")
            .arg(&jar)
            .arg(scripts().join("HlogCheck.java"))
            .arg(&hlog)
            .arg(&tag);
        let read = pairs(run_client(java, Duration::from_secs(60)).trim());
        let ns = |key: &str| (figures[key].as_f64().unwrap() * 1e9).round() as i64;
        assert_eq!(
            read["count"],
            figures["count"].to_string(),
            "count, tag {tag:?}: {read:?}"
        );
        for key in ["max", "p50", "p90", "p99", "p99_9", "p99_99"] {
            assert_eq!(
                read[key].parse::<i64>().unwrap(),
                ns(key),
                "{key}, tag {tag:?}: {read:?} vs {figures}"
            );
        }
        let mean: f64 = read["mean"].parse().unwrap();
        assert!(
            (mean - figures["mean"].as_f64().unwrap() * 1e9).abs() < 1.0,
            "mean, tag {tag:?}: {read:?} vs {figures}"
        );
    }
    // The stock log processor, on the untagged histogram (values printed in ms).
    let out = dir.path().join("processed");
    let mut processor = Command::new("java");
    processor
        .arg("-cp")
        .arg(&jar)
        .arg("org.HdrHistogram.HistogramLogProcessor")
        .arg("-i")
        .arg(&hlog)
        .arg("-o")
        .arg(&out);
    run_client(processor, Duration::from_secs(60));
    let hgrm = std::fs::read_to_string(out.with_extension("hgrm")).unwrap();
    let latency = &summary["latency_seconds"];
    let ms = |key: &str| format!("{:.3}", latency[key].as_f64().unwrap() * 1e3);
    let row = |percentile: &str| {
        hgrm.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(percentile))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {percentile} row in {hgrm}"))
            .to_string()
    };
    assert_eq!(row("0.500000000000"), ms("p50"), "{hgrm}");
    assert_eq!(row("0.900000000000"), ms("p90"), "{hgrm}");
    assert!(
        hgrm.contains(&format!(
            "Total count    = {:>12}",
            latency["count"].as_u64().unwrap()
        )),
        "{hgrm}"
    );
    assert!(
        hgrm.contains(&format!("Max     = {:>12}", ms("max"))),
        "{hgrm}"
    );
    assert!(
        hgrm.contains(&format!("Mean    = {:>12}", ms("mean"))),
        "{hgrm}"
    );
}

/// Debian's Chromium, or a printed reason to skip (a failure under CI=true).
fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        missing("Chromium is not installed (apt-get install chromium)");
    }
    found
}

/// A real browser (headless Chromium) opens a passing and a failing run's `report.html`:
/// no console error, every chart has data drawn inside its plot area, both fault windows
/// are shaded on every chart, and only the failing run shows counterexamples. A screenshot
/// of each is kept under `target/conformance/`.
#[test]
fn report_renders_in_a_real_browser() {
    let (Some(modules), Some(browser)) = (
        cached("node/node_modules/playwright-core", "playwright-core (npm)"),
        chromium(),
    ) else {
        return;
    };
    let dir = target_system::testkit::TempDir::new("conformance-browser");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance");
    std::fs::create_dir_all(&shots).unwrap();
    for (name, defect) in [("passing", None), ("failing", Some("fresh-key-per-retry"))] {
        let out = dir.path().join(name);
        let mut args = vec![
            "run",
            common::profile("quickstart.toml").leak() as &str,
            "--out",
            out.to_str().unwrap().to_string().leak(),
        ];
        args.extend(common::SHORT_QUICKSTART);
        if let Some(defect) = defect {
            args.extend(["--defect", defect]);
        }
        let run = common::rig_within(&args, Duration::from_secs(240));
        let expected = if defect.is_some() { 1 } else { 0 };
        assert_eq!(run.status.code(), Some(expected), "{}", text(&run.stdout));
        let shot = shots.join(format!("report-{name}.png"));
        let mut node = Command::new("node");
        node.arg(scripts().join("report_browser.js"))
            .arg(out.join("report.html"))
            .arg(&shot)
            .args(["--windows", "2"])
            .env("NODE_PATH", modules.parent().unwrap())
            .env("CHROMIUM", &browser);
        if defect.is_some() {
            node.arg("--failing");
        }
        let seen = run_client(node, Duration::from_secs(120));
        assert!(
            seen.contains("report in a browser: every check passed"),
            "{seen}"
        );
        assert!(
            std::fs::metadata(&shot).unwrap().len() > 10_000,
            "a screenshot"
        );
        eprintln!(
            "{name}: {} (screenshot {})",
            seen.lines().next().unwrap_or(""),
            shot.display()
        );
    }
}

/// The provider with its Stripe face, in this process: its native listener (the fault API)
/// and the face, each on `127.0.0.1:0`, over SQLite stores of its own.
struct StripeFace {
    provider: target_system::provider::Provider,
    stripe_url: String,
    admin_url: String,
    _stores: target_system::testkit::TestStores,
}

impl StripeFace {
    async fn start(label: &str) -> Self {
        let stores = target_system::testkit::sqlite(label);
        let (provider, admin_url, stripe_url) = target_system::testkit::harness::stripe_face(
            &stores,
            &target_system::TargetConfig::default(),
        )
        .await;
        Self {
            provider,
            stripe_url,
            admin_url,
            _stores: stores,
        }
    }

    /// Runs an SDK script against the face, with the order-id prefix `prefix`.
    async fn drive(&self, mut command: Command, prefix: &str) -> String {
        command
            .arg(&self.stripe_url)
            .arg(&self.admin_url)
            .arg(prefix);
        tokio::task::spawn_blocking(move || run_client(command, Duration::from_secs(120)))
            .await
            .unwrap()
    }

    /// The ledger holds what the SDK was told, as the native face's charges are held: one
    /// authorized charge for the paid order, refunded in full, its call logged as the key
    /// owner's; a declined charge for each declined order.
    async fn assert_ledger(&self, prefix: &str, caller: &str) {
        self.provider.flush().await;
        let db = self.provider.db();
        let paid = target_system::provider::ledger::charges_for_order(db, &format!("{prefix}-1"))
            .await
            .unwrap();
        assert_eq!(
            paid.len(),
            1,
            "one charge however often the key was sent: {paid:?}"
        );
        assert_eq!(
            (
                paid[0].status.as_str(),
                paid[0].amount_cents,
                paid[0].refunded_cents
            ),
            ("authorized", 1200, 1200),
            "{paid:?}"
        );
        let declined = target_system::provider::ledger::charges_for_order(
            db,
            &format!("{prefix}-1pm_card_visa_chargeDeclined"),
        )
        .await
        .unwrap();
        assert_eq!(declined.len(), 1, "{declined:?}");
        assert_eq!(declined[0].status, "declined");
        let callers: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT op, caller FROM provider_requests WHERE charge_id = $1 ORDER BY id",
        )
        .bind(&paid[0].charge_id)
        .fetch_all(&db.pool)
        .await
        .unwrap();
        assert!(
            callers.contains(&("charge".to_string(), Some(caller.to_string()))),
            "the charge is logged as {caller}'s: {callers:?}"
        );
    }
}

/// stripe 16.1.0 (PyPI), Stripe's official Python SDK, unchanged but for its API host, pays
/// through the provider's Stripe face: create and confirm, the same key replayed as the same
/// object, the key with another amount an `IdempotencyError`, declines (test payment
/// methods and a test card number) as `CardError` with their decline codes, create then
/// confirm, a second confirm refused, manual capture, cancel, retrieve, search by order,
/// list, refunds in part and in full and a third refused, a rate-limit fault as
/// `RateLimitError`, an unknown key as `AuthenticationError`. The ledger then holds one
/// charge for the paid order, logged as the key owner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_python_sdk_pays_through_the_stripe_face() {
    let Some(cache) = cached("py/stripe", "stripe (PyPI)") else {
        return;
    };
    let face = StripeFace::start("stripe-python").await;
    let mut command = Command::new("python3");
    command
        .arg(scripts().join("stripe_python.py"))
        .env("PYTHONPATH", cache.parent().unwrap());
    let out = face.drive(command, "py").await;
    assert!(out.contains("stripe-python: every check passed"), "{out}");
    face.assert_ledger("py", "a").await;
}

/// stripe 23.2.0 (npm), Stripe's official Node SDK, unchanged but for its host, through the
/// same checks as the Python SDK, with the other caller's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_node_sdk_pays_through_the_stripe_face() {
    let Some(modules) = cached("node/node_modules/stripe", "stripe (npm)") else {
        return;
    };
    let face = StripeFace::start("stripe-node").await;
    let mut command = Command::new("node");
    command
        .arg(scripts().join("stripe_node.js"))
        .env("NODE_PATH", modules.parent().unwrap());
    let out = face.drive(command, "js").await;
    assert!(out.contains("stripe-node: every check passed"), "{out}");
    face.assert_ledger("js", "b").await;
}
