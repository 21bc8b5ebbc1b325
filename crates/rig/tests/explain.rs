//! `rig explain` on a finished run: one order's story on one timeline, selected by order id
//! or by arrival, as text or JSON, and a clear error for an order no record names.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{SHORT_QUICKSTART, profile, rig_within, text};
use serde_json::Value;
use target_system::testkit::TempDir;

/// Orders the customer was told `pending` and then `confirmed`, which the owner's repair
/// worker confirmed (so their payment went unknown and was looked up), oldest first.
fn repaired_orders(out: &Path) -> Vec<String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut repaired = Vec::new();
        for region in ["a", "b"] {
            let store = out.join(format!("stores/region_{region}.db"));
            let pool = common::sqlite_read_only(&out.join("history.db"), &[("r", &store)]).await;
            let ids: Vec<(String,)> = sqlx::query_as(
                "SELECT t.order_id FROM r.order_transitions t \
                 WHERE t.actor = 'repair' AND t.to_state = 'order_confirmed' \
                 AND EXISTS (SELECT 1 FROM history_requests q WHERE q.order_id = t.order_id AND q.answer = 'pending') \
                 ORDER BY t.at_us",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            repaired.extend(ids.into_iter().map(|(id,)| id));
            pool.close().await;
        }
        repaired
    })
}

/// For an order from the quickstart that went pending during the provider latency spike,
/// `rig explain` prints a timeline naming the spike, the charge that got no answer in
/// time, the repair worker's lookup and the final confirmation, on one clock, with a
/// summary; `--arrival` selects the same order, `--json` gives the same lines, and an
/// order no record names is exit 2 with examples of the ids there are. The customer's W3C
/// trace id is on its requests, the region's transitions and the provider's requests (the
/// checkout's under the customer request's id), and `--trace` selects the order by it.
#[test]
fn explain_tells_a_repaired_order_story() {
    let dir = TempDir::new("explain");
    let out = dir.path().join("run");
    let mut args = vec![
        "run",
        profile("quickstart.toml").leak() as &str,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(SHORT_QUICKSTART);
    let output = rig_within(&args, Duration::from_secs(240));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    // The report's orders section: how long customers were told pending, and the slowest
    // and the longest-pending orders, each linked to its timeline.
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let orders = &summary["orders"];
    assert!(
        orders["pending_customers"].as_u64().unwrap() > 0,
        "{orders}"
    );
    let longest = &orders["longest_pending"][0];
    assert!(
        longest["seconds"].as_f64().unwrap() >= orders["pending_p50_seconds"].as_f64().unwrap(),
        "{orders}"
    );
    assert_eq!(
        longest["timeline"]["order_id"], longest["order_id"],
        "{orders}"
    );
    assert_eq!(orders["slowest"].as_array().unwrap().len(), 10, "{orders}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<h2>Orders</h2>"));
    assert!(
        html.contains("href=\"#longest_pending-0\"") && html.contains("id=\"longest_pending-0\"")
    );
    let repaired = repaired_orders(&out);
    let order = repaired
        .first()
        .unwrap_or_else(|| panic!("the spike left some order to the repair worker"));
    let explained = rig_within(
        &["explain", order, out.to_str().unwrap()],
        Duration::from_secs(30),
    );
    let story = text(&explained.stdout);
    assert_eq!(
        explained.status.code(),
        Some(0),
        "{story}{}",
        text(&explained.stderr)
    );
    for (named, what) in [
        ("fault on: spike (provider)", "the spike"),
        ("no answer from", "the charge that timed out"),
        ("-> 202 pending", "the customer told pending"),
        ("provider lookup -> found", "the repair worker's lookup"),
        (
            "repair worker  payment_pending -> order_confirmed",
            "the confirmation",
        ),
        ("the repair worker looked the payment up", "the summary"),
        ("provider call(s) timed out", "the summary's timeout"),
    ] {
        assert!(story.contains(named), "{what} ({named:?}) in:\n{story}");
    }
    // Every line carries the seconds since the load started, in order.
    let seconds: Vec<f64> = story
        .lines()
        .skip_while(|l| l.starts_with("order ") || l.starts_with("trace "))
        .take_while(|l| !l.is_empty())
        .map(|l| {
            l.split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('s')
                .parse()
                .unwrap()
        })
        .collect();
    assert!(seconds.len() >= 8, "{story}");
    assert!(seconds.windows(2).all(|w| w[0] <= w[1]), "{story}");
    // The same order by its arrival index, as JSON.
    let arrival: u64 = order.rsplit('-').next().unwrap().parse().unwrap();
    let json = rig_within(
        &[
            "explain",
            "--arrival",
            &arrival.to_string(),
            out.to_str().unwrap(),
            "--json",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(json.status.code(), Some(0), "{}", text(&json.stderr));
    let value: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["order_id"], order.as_str());
    assert_eq!(
        value["lines"].as_array().unwrap().len(),
        seconds.len(),
        "{value}"
    );
    assert!(
        value["summary"]
            .as_str()
            .unwrap()
            .contains("confirmed by region")
    );
    // One trace across every hop.
    let trace = value["trace_id"].as_str().unwrap_or_default().to_string();
    assert!(
        trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()),
        "a W3C trace id: {value}"
    );
    assert!(story.contains(&format!("trace {trace}")), "{story}");
    let lines = value["lines"].as_array().unwrap();
    let of =
        |record: &str| -> Vec<&Value> { lines.iter().filter(|l| l["record"] == record).collect() };
    for record in ["history_requests", "order_transitions", "provider_requests"] {
        let found = of(record);
        assert!(!found.is_empty(), "{record} lines: {value}");
        for line in found {
            assert_eq!(line["trace_id"], trace.as_str(), "{record}: {line}");
            assert!(line["request_id"].is_string(), "{record}: {line}");
        }
    }
    // The first checkout's request id is on what the owner and the provider wrote for it.
    let first_request = of("history_requests")[0]["request_id"].clone();
    for record in ["order_transitions", "provider_requests", "payment_attempts"] {
        assert!(
            of(record).iter().any(|l| l["request_id"] == first_request),
            "{record} carries the customer's request id {first_request}: {value}"
        );
    }
    // The repair worker's work is on the same trace under a request id of its own.
    let repair = lines
        .iter()
        .find(|l| {
            l["record"] == "order_transitions"
                && l["actor"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("repair worker")
        })
        .unwrap_or_else(|| panic!("a repair transition: {value}"));
    assert_ne!(repair["request_id"], first_request, "{repair}");
    assert!(
        value["summary"].as_str().unwrap().contains("carried by"),
        "{value}"
    );
    // The same order by its trace id, and by a whole traceparent as a log shows it.
    for selector in [trace.clone(), format!("00-{trace}-00f067aa0ba902b7-01")] {
        let by_trace = rig_within(
            &[
                "explain",
                "--trace",
                &selector,
                out.to_str().unwrap(),
                "--json",
            ],
            Duration::from_secs(30),
        );
        assert_eq!(
            by_trace.status.code(),
            Some(0),
            "{}",
            text(&by_trace.stderr)
        );
        let found: Value = serde_json::from_slice(&by_trace.stdout).unwrap();
        assert_eq!(found["order_id"], order.as_str());
    }
    for (bad, said) in [
        ("4BF92F35", "a trace id is 32 lowercase hex digits"),
        (
            "0123456789abcdef0123456789abcdef",
            "no record carries trace",
        ),
    ] {
        let refused = rig_within(
            &["explain", "--trace", bad, out.to_str().unwrap()],
            Duration::from_secs(30),
        );
        let err = text(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{err}");
        assert!(err.contains(said), "{said:?} in {err}");
    }
    // An order no record names: exit 2, with ids that do exist.
    let missing = rig_within(
        &["explain", "no-such-order", out.to_str().unwrap()],
        Duration::from_secs(30),
    );
    let err = text(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no record of order \"no-such-order\""),
        "{err}"
    );
    assert!(err.contains("order ids here look like"), "{err}");
}

/// Operator steps on the timeline: region a's payments are paused for a second (its new
/// orders are parked), then an operator resolves the oldest pending orders on both regions
/// (the repair worker first scans at 15 s, so the operator finds them), each on the provider's
/// record. The journal shows each call, the regions hold the audited decisions as
/// transitions with actor `operator`, the run passes, and `rig explain` shows the operator.
#[test]
fn operator_steps_resolve_pending_orders_on_the_timeline() {
    let dir = TempDir::new("operator-steps");
    let out = dir.path().join("run");
    let output = rig_within(
        &[
            "run",
            &profile("quickstart.toml"),
            "--out",
            out.to_str().unwrap(),
            "--set",
            r#"workload.phases=[{kind = "hold", rate = 40, for = "9s"}]"#,
            "--set",
            "target.repair.scan_interval_ms=15000",
            // The parked orders are failed by the operator: fewer confirmations than usual.
            "--set",
            r#"thresholds.confirmed_rate="> 0.5""#,
            "--set",
            r#"chaos=[{name = "spike", at = "2s", for = "2s", kind = "provider", latency_ms = 1500}, {name = "pause a", at = "1s", for = "1s", kind = "operator", action = "pause_payments", target = "a"}, {name = "resolve a", at = "7s", kind = "operator", action = "resolve_pending", target = "a", count = 1000, note = "after the spike"}, {name = "resolve b", at = "7s", kind = "operator", action = "resolve_pending", target = "b", count = 1000, note = "after the spike"}]"#,
        ],
        Duration::from_secs(240),
    );
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{all}");
    let journal = std::fs::read_to_string(out.join("chaos.jsonl")).unwrap();
    for call in [
        "POST /admin/payments/pause",
        "POST /admin/payments/resume",
        "POST /admin/orders/resolve-pending",
    ] {
        assert!(journal.contains(call), "{call} journaled: {journal}");
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let decided: Vec<(String, String)> = runtime.block_on(async {
        let mut decided = Vec::new();
        for region in ["a", "b"] {
            let pool = common::sqlite_read_only(
                &out.join(format!("stores/region_{region}.db")),
                &[],
            )
            .await;
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT order_id, to_state FROM order_transitions WHERE actor = 'operator' ORDER BY at_us",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            decided.extend(rows);
            pool.close().await;
        }
        decided
    });
    assert!(
        decided.iter().any(|(_, to)| to == "failed_safely"),
        "a parked order (never charged) failed by the operator: {decided:?}"
    );
    let (order, _) = &decided[0];
    let explained = rig_within(
        &["explain", order, out.to_str().unwrap()],
        Duration::from_secs(30),
    );
    let story = text(&explained.stdout);
    assert!(story.contains("operator playbook"), "{story}");
    assert!(story.contains("after the spike"), "{story}");
}
