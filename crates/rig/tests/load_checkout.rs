//! `rig load --workload checkout` as a user runs it: a real process against stub regions on
//! loopback; bad input exits 2 at once with the field and the fix.

use std::process::Output;
use std::time::Duration;

mod common;

use common::text;

/// Runs `rig ARGS` within `limit`.
fn rig(args: &[&str], limit: Duration) -> Output {
    common::rig_within(args, limit)
}

/// A stub region on 127.0.0.1:0: lists two skus at /admin/state, confirms every checkout.
fn stub_region(runtime: &tokio::runtime::Runtime) -> String {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(rig_http::serve(
        listener,
        |req: rig_http::Request<rig_http::Incoming>| async move {
            let body = if req.uri().path() == "/admin/state" {
                serde_json::json!({"inventory": [{"sku": "sku-1"}, {"sku": "sku-2"}]})
            } else {
                serde_json::json!({"status": "order_confirmed"})
            };
            let status = if req.method() == rig_http::Method::POST {
                rig_http::StatusCode::CREATED
            } else {
                rig_http::StatusCode::OK
            };
            Ok(rig_http::json(status, &body))
        },
        std::future::pending::<()>(),
    ));
    url
}

/// Every kind of bad input exits 2 within seconds naming the field and the fix: missing
/// targets, generic flags in checkout mode and checkout flags in generic mode, out-of-range
/// mix values, unknown [workload] keys, bad history URLs, three targets, an unreachable
/// target.
#[test]
fn bad_checkout_input_exits_2_with_the_field_and_the_fix() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port())
    };
    let dir = std::env::temp_dir().join(format!("rig-load-checkout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let typo_profile = dir.join("profile.toml");
    std::fs::write(&typo_profile, "[workload]\ndouble_clik_fraction = 0.2\n").unwrap();
    let typo = typo_profile.display().to_string();
    let t = "http://127.0.0.1:9";
    let base = [
        "load",
        "--workload",
        "checkout",
        "--rate",
        "10",
        "--duration",
        "1s",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (with(&[]), "--target"),
        (with(&["http://127.0.0.1:9/", "--target", t]), "URL"),
        (
            with(&["--target", t, "--connections", "1"]),
            "workload.connections",
        ),
        (with(&["--target", t, "--method", "PUT"]), "--method"),
        (
            with(&["--target", t, "--double-click", "1.5"]),
            "workload.double_click_fraction",
        ),
        (with(&["--target", t, "--lanes", "0"]), "workload.lanes"),
        (
            with(&["--target", t, "--run-tag", "no spaces"]),
            "workload.run_tag",
        ),
        (
            with(&["--target", t, "--set", "workload.retry.max_attempt=2"]),
            "max_attempt",
        ),
        (
            with(&["--target", t, "--set", "target.seed=2"]),
            "workload.*",
        ),
        (
            with(&["--target", t, "--config", &typo]),
            "double_clik_fraction",
        ),
        (
            with(&["--target", t, "--history", "mysql://h/db"]),
            "--history",
        ),
        (with(&["--target", &format!("{t},{t},{t}")]), "--target"),
        (with(&["--target", "https://127.0.0.1:9"]), "--target"),
        (with(&["--target", &closed]), "could not connect"),
        (
            vec![
                "load",
                "http://127.0.0.1:9/",
                "--rate",
                "1",
                "--duration",
                "1s",
                "--target",
                t,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            "--workload checkout",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = rig(&args, Duration::from_secs(15));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(stderr.contains("fix"), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A real run against two stub regions: exit 0, the customers' outcomes and request
/// counts on stdout, the JSON summary with the checkout description, and the history
/// written with one row per arrival (skus learnt from /admin/state).
#[test]
fn checkout_run_prints_outcomes_and_writes_the_history() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (stub_region(&runtime), stub_region(&runtime));
    let dir = std::env::temp_dir().join(format!("rig-load-checkout-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let history = dir.join("history.db").display().to_string();
    let json = dir.join("summary.json").display().to_string();
    let targets = format!("{a},{b}");
    let out = rig(
        &[
            "load",
            "--workload",
            "checkout",
            "--target",
            &targets,
            "--rate",
            "200",
            "--duration",
            "1s",
            "--double-click",
            "0.5",
            "--seed",
            "3",
            "--history",
            &history,
            "--json",
            &json,
            "--progress",
            "plain",
            "--set",
            "workload.retry.max_attempts=2",
        ],
        Duration::from_secs(60),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains("customers: 200 (confirmed 200)"),
        "{stdout}"
    );
    assert!(stdout.contains("checkout requests:"), "{stdout}");
    assert!(stdout.contains("200 arrival rows"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(summary["totals"]["ok"], 200);
    let workload = &summary["run"]["workload"];
    assert_eq!(workload["kind"], "checkout");
    assert_eq!(workload["spec"]["retry"]["max_attempts"], 2);
    assert_eq!(
        workload["spec"]["skus"],
        serde_json::json!(["sku-1", "sku-2"])
    );
    assert_eq!(workload["history"]["arrivals_written"], 200);
    let double_clicks = workload["requests"]["checkout"]["kinds"]["double_click"]
        .as_u64()
        .unwrap();
    assert!((60..=140).contains(&double_clicks), "{double_clicks}");
    assert!(std::path::Path::new(&history).exists());
    // The same file again: refused, since it holds this run.
    let again = rig(
        &[
            "load",
            "--workload",
            "checkout",
            "--target",
            &a,
            "--rate",
            "10",
            "--duration",
            "1s",
            "--history",
            &history,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("earlier run"));
    let _ = std::fs::remove_dir_all(&dir);
}
