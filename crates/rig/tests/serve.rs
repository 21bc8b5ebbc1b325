//! `rig serve` as a user runs it: a real process, real sockets, Ctrl-C (SIGINT) to stop.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use rig_http::{HttpClient, Method};
use serde_json::{Value, json};

mod common;

use common::KillOnDrop;

fn rig() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rig"))
}

fn run(args: &[&str]) -> (i32, String) {
    let output = rig().args(args).output().expect("rig runs");
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), text)
}

/// Bad input exits 2 at once, naming the field or flag and the fix.
#[test]
fn bad_input_exits_2_with_the_fix() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["serve", "--set", "target.payment.deadline_ms=0"],
            "target.payment.deadline_ms = 0",
        ),
        (
            &["serve", "--set", "target.paymnt.deadline_ms=5"],
            "unknown field `paymnt`",
        ),
        (&["serve", "--store", "mysql://db/x"], "sqlite://DIR"),
        (&["serve", "--role", "region"], "--region a|b"),
        (
            &["serve", "--config", "/nonexistent/profile.toml"],
            "cannot read",
        ),
    ];
    for (args, needle) in cases {
        let (code, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

/// An unreachable store exits 3 with the URL, password masked.
#[test]
fn unreachable_store_exits_3_masked() {
    let (code, stderr) = run(&[
        "serve",
        "--store",
        "postgres://app:s3cret@127.0.0.1:1/rig",
        "--listen-provider",
        "127.0.0.1:0",
        "--listen-a",
        "127.0.0.1:0",
        "--listen-b",
        "127.0.0.1:0",
        "--listen-stripe",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("postgres://app:***@127.0.0.1:1/rig"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

/// --help lists every command of the design; a command given bad input exits 2.
#[test]
fn help_lists_commands() {
    let output = rig().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for command in [
        "run",
        "serve",
        "load",
        "toxiproxy",
        "chaos",
        "verify",
        "explain",
        "repair",
        "report",
        "compare",
    ] {
        assert!(
            help.contains(command),
            "{command} missing from --help:\n{help}"
        );
    }
    let (code, stderr) = run(&["compare", "runs/a", "runs/b"]);
    assert_eq!(code, 2, "compare of missing run directories is bad input");
    assert!(stderr.contains("summary.json"), "{stderr}");
}

/// `rig serve` starts all three parts, prints each endpoint, its parameters and any defect
/// switch, takes a checkout over HTTP and shuts down cleanly (exit 0) on SIGINT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_a_checkout_and_stops_on_ctrl_c() {
    let dir = target_system::testkit::TempDir::new("serve");
    let store = format!("sqlite://{}", dir.path().join("stores").display());
    let mut child = rig()
        .args(["serve", "--store", &store, "--defect", "oversell"])
        .args([
            "--listen-provider",
            "127.0.0.1:0",
            "--listen-a",
            "127.0.0.1:0",
            "--listen-b",
            "127.0.0.1:0",
            "--listen-stripe",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let mut guard = KillOnDrop(Some(child));
    let banner = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut urls = Vec::new();
        let mut all = Vec::new();
        while let Some(Ok(line)) = lines.next() {
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                urls.push((line.clone(), url.to_string()));
            }
            all.push(line.clone());
            if line.contains("Ctrl-C stops") {
                break;
            }
        }
        (urls, all)
    })
    .await
    .unwrap();
    let (banner, lines) = banner;
    assert_eq!(
        banner.len(),
        5,
        "provider, its Stripe face, a, b and the curl hint: {banner:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("DEFECT oversell IS ON") && l.contains("no-oversell")),
        "the defect is announced loudly: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("retry_budget.ratio=0.2")),
        "parameters printed: {lines:?}"
    );
    let region_a = banner
        .iter()
        .find(|(l, _)| l.contains("region a"))
        .unwrap()
        .1
        .clone();
    let client = HttpClient::new(Duration::from_secs(2), 4);
    let body =
        json!({"order_id": "order-1", "customer_id": "c-1", "items": [{"sku": "sku-1", "qty": 1}]});
    let response = client
        .send(
            Method::POST,
            &format!("{region_a}/v1/checkout"),
            &[("idempotency-key", "order-1")],
            Some(Bytes::from(body.to_string())),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 201, "{:?}", response.body);
    assert_eq!(
        response.json::<Value>().unwrap()["status"],
        "order_confirmed"
    );
    // The Stripe face pays with the banner's key, form-encoded as Stripe's SDKs send it.
    let stripe = banner
        .iter()
        .find(|(l, _)| l.trim_start().starts_with("stripe"))
        .unwrap();
    assert!(stripe.0.contains("a=sk_test_rig_a"), "{stripe:?}");
    let paid = client
        .send(
            Method::POST,
            &format!("{}/v1/payment_intents", stripe.1),
            &[
                ("authorization", "Bearer sk_test_rig_a"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some(Bytes::from_static(
                b"amount=1200&currency=usd&confirm=true&payment_method=pm_card_visa&metadata[order_id]=stripe-1",
            )),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(paid.status, 200, "{:?}", paid.body);
    let intent = paid.json::<Value>().unwrap();
    assert_eq!(
        (intent["object"].as_str(), intent["status"].as_str()),
        (Some("payment_intent"), Some("succeeded")),
        "{intent}"
    );
    // `rig repair` on the owner: a final order is refused (exit 1, with the evidence), an
    // order the owner never saw is bad input (exit 2).
    let owner = evidence::owner_of("order-1");
    let owner_url = banner
        .iter()
        .find(|(l, _)| l.contains(&format!("region {owner}")))
        .unwrap()
        .1
        .clone();
    let repair = |order: String| {
        let url = owner_url.clone();
        tokio::task::spawn_blocking(move || {
            rig()
                .args(["repair", &order, "--region", &url, "--decision", "fail"])
                .args(["--operator", "test", "--note", "the customer asked"])
                .output()
                .unwrap()
        })
    };
    let refused = repair("order-1".into()).await.unwrap();
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(
        said.contains("evidence_contradicts") && said.contains("order_confirmed"),
        "{said}"
    );
    let unknown = target_system::testkit::harness::order_owned_by(owner, "never-placed");
    let missing = repair(unknown).await.unwrap();
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");

    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let child = guard.0.take().unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        exit.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&exit.stderr)
    );
    assert!(dir.path().join("stores/region_a.db").exists());
}

/// `rig run` in external mode drives a system it did not start: a `rig serve` process. The
/// load enters its regions, the provider fault goes to its admin API, the drain and the
/// verifier read its stores, and the verdict passes; the services' metrics carry the
/// `--run-id` they were started with.
#[test]
fn run_drives_an_external_system() {
    let dir = target_system::testkit::TempDir::new("serve-external");
    let store = format!("sqlite://{}", dir.path().join("stores").display());
    let mut child = rig()
        .args(["serve", "--store", &store, "--run-id", "stack-1"])
        .args([
            "--listen-provider",
            "127.0.0.1:0",
            "--listen-a",
            "127.0.0.1:0",
            "--listen-b",
            "127.0.0.1:0",
            "--listen-stripe",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let mut guard = KillOnDrop(Some(child));
    let mut url_of = std::collections::BTreeMap::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let url = line.split_whitespace().find(|w| w.starts_with("http://"));
        for part in ["provider", "region a", "region b"] {
            if line.trim_start().starts_with(part)
                && let Some(url) = url
            {
                url_of.insert(part, url.to_string());
            }
        }
        if line.contains("Ctrl-C stops") {
            break;
        }
    }
    assert_eq!(url_of.len(), 3, "{url_of:?}");

    let out = dir.path().join("run");
    let profile =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../profiles/quickstart.toml");
    let regions = format!("{},{}", url_of["region a"], url_of["region b"]);
    let output = rig()
        .arg("run")
        .arg(&profile)
        .args(["--regions", &regions, "--provider", &url_of["provider"]])
        .args(["--store", &store, "--out", out.to_str().unwrap()])
        .args([
            "--set",
            r#"workload.phases=[{kind = "hold", rate = 40, for = "5s"}]"#,
            "--set",
            r#"chaos=[{name = "spike", at = "1s", for = "2s", kind = "provider", latency_ms = 1500}]"#,
        ])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{all}");
    // Its events do not reach the rig's sink: the event invariant has no witness, so it is
    // unknown with the reason, and nothing fails.
    assert!(
        all.contains("overall: UNKNOWN")
            && all.contains("outbox-effectively-once    UNKNOWN")
            && all.contains("no event sink log")
            && !all.contains("FAIL"),
        "{all}"
    );
    let journal = std::fs::read_to_string(out.join("chaos.jsonl")).unwrap();
    assert!(
        journal.contains("\"applied\"") && journal.contains("\"healed\""),
        "the provider fault was applied and healed: {journal}"
    );

    // The services label their series with their own run id.
    let metrics = common::http_get(url_of["region a"].trim_start_matches("http://"), "/metrics");
    assert!(
        metrics.contains("rig_region_checkouts_total{") && metrics.contains("run_id=\"stack-1\""),
        "{metrics}"
    );

    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let child = guard.0.take().unwrap();
    let exit = child.wait_with_output().unwrap();
    assert_eq!(exit.status.code(), Some(0));
}
