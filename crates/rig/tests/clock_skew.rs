//! Clock faults in `rig run`: region b's wall clock is shifted ahead and then behind while
//! some of its payments go unknown across the step back. The correct system and the
//! verifier both pass it, a verifier that measured durations across two clocks would have
//! failed it, and the `wall-clock-durations` defect (a repair worker that trusts the wall
//! clock) fails bounded-pending-age.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{profile, rig_within, text};
use serde_json::Value;
use target_system::testkit::TempDir;

/// The clock-skew profile cut to seconds: b 30 s ahead from 3 s, 30 s behind from 10 s (a
/// step back of a minute), and b's link to the provider losing every request from 7 s to
/// 9.5 s, so orders are pending across the step.
const SHORT_SKEW: [&str; 4] = [
    "--set",
    r#"workload.phases=[{kind = "hold", rate = 30, for = "24s"}]"#,
    "--set",
    r#"chaos=[{name = "b ahead", at = "3s", for = "7s", kind = "clock", target = "b", offset = "+30s"}, {name = "b behind", at = "10s", for = "8s", kind = "clock", target = "b", offset = "-30s"}, {name = "b loses requests", at = "7s", for = "2500ms", kind = "link", proxy = "b_to_provider", toxic = "timeout", stream = "upstream", timeout_ms = 0}]"#,
];

fn run_skewed(out: &Path, defect: Option<&str>) -> (Option<i32>, String, Value) {
    let mut args = vec![
        "run",
        profile("clock-skew.toml").leak() as &str,
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(defect) = defect {
        args.extend(["--defect", defect]);
    }
    args.extend(SHORT_SKEW);
    let output = rig_within(&args, Duration::from_secs(300));
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    let verdict = std::fs::read_to_string(out.join("verdict.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    (output.status.code(), all, verdict)
}

fn verdict_of<'a>(verdict: &'a Value, invariant: &str) -> &'a Value {
    verdict["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["invariant"] == invariant)
        .unwrap_or_else(|| panic!("no {invariant} in {verdict}"))
}

/// Each region's confirmation events: (count, how many a verifier measuring "sink receipt
/// minus the region's own event time" would put over `bound_us` or below zero). The sink
/// stamps receipts with the rig's clock, region a's clock is the rig's, region b's was
/// shifted: so this is a duration across the two regions' wall clocks.
fn cross_clock_event_ages(out: &Path, region: &str, bound_us: i64) -> (i64, i64) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let region_db = out.join(format!("stores/region_{region}.db"));
        let pool =
            common::sqlite_read_only(&out.join("stores/sink.db"), &[("r", &region_db)]).await;
        let (n, wrong): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(age > $1 OR age < 0), 0) FROM \
             (SELECT s.received_at_us - o.created_at_us AS age FROM sink_deliveries s \
              JOIN r.outbox o ON o.event_id = s.event_id WHERE s.event_type = 'order_confirmed')",
        )
        .bind(bound_us)
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        (n, wrong)
    })
}

/// The correct system under a shifted clock passes every invariant; the journal shows
/// region b told +30 s, -30 s and the true time again; bounded-pending-age and
/// admission-control say they did not judge durations between region b's own record
/// times; and the same evidence measured across two clocks (event age = the sink's
/// receipt, on the rig's clock, minus region b's event time) puts confirmations over the
/// event-age bound or below zero, while region a's measured the same way are all within.
#[test]
fn clock_skew_passes_and_a_cross_clock_verifier_would_not() {
    let dir = TempDir::new("clock-skew");
    let out = dir.path().join("run");
    let (code, all, verdict) = run_skewed(&out, None);
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("overall: PASS"), "{all}");
    let journal = std::fs::read_to_string(out.join("chaos.jsonl")).unwrap();
    for told in [
        "clock offset +30000 ms",
        "clock offset -30000 ms",
        "clock offset +0 ms",
    ] {
        assert!(journal.contains(told), "journal tells b {told}: {journal}");
    }
    let pending = verdict_of(&verdict, "bounded-pending-age");
    assert!(
        pending["summary"]
            .as_str()
            .unwrap()
            .contains("region b's wall clock was shifted"),
        "{pending}"
    );
    let admission = verdict_of(&verdict, "admission-control");
    assert!(
        admission["summary"]
            .as_str()
            .unwrap()
            .contains("region_b (its own payment_attempts): not swept"),
        "{admission}"
    );
    // The bound the verifier used for event age (the profile's, 12 s by default).
    let bound_us = 12_000_000;
    let (a_events, a_wrong) = cross_clock_event_ages(&out, "a", bound_us);
    let (b_events, b_wrong) = cross_clock_event_ages(&out, "b", bound_us);
    assert!(a_events > 100 && b_events > 100, "{a_events} {b_events}");
    assert_eq!(
        a_wrong, 0,
        "region a's clock is the rig's: every age is sane"
    );
    assert!(
        b_wrong * 5 > b_events,
        "across b's shifted clock, many confirmations would have failed the event age ({b_wrong} of {b_events})"
    );
    assert_eq!(
        verdict_of(&verdict, "outbox-effectively-once")["status"],
        "pass"
    );
}

/// With `--defect wall-clock-durations` the repair worker measures how long an order has
/// waited from the wall clock alone: the orders b left pending just before the minute-long
/// step back look a minute younger, stay pending past the bound, and bounded-pending-age
/// fails on the customers' polls (the rig's clock), naming them.
#[test]
fn wall_clock_durations_fail_bounded_pending_age() {
    let dir = TempDir::new("clock-skew-defect");
    let out = dir.path().join("run");
    let (code, all, verdict) = run_skewed(&out, Some("wall-clock-durations"));
    assert_eq!(code, Some(1), "{all}");
    let pending = verdict_of(&verdict, "bounded-pending-age");
    assert_eq!(pending["status"], "fail", "{pending}");
    let dossiers = pending["dossiers"].as_array().unwrap();
    assert!(!dossiers.is_empty(), "{pending}");
    assert!(
        dossiers.iter().all(|d| d["narrative"]
            .as_str()
            .unwrap()
            .contains("still told pending")
            && d["order_id"].is_string()),
        "{pending}"
    );
    common::assert_verdict_schema(&verdict);
    // Each counterexample carries its order's story, in verdict.json and report.html.
    let timeline = &dossiers[0]["timeline"];
    assert!(
        timeline["lines"].as_array().is_some_and(|l| l.len() > 3),
        "{timeline}"
    );
    assert!(
        timeline["summary"]
            .as_str()
            .unwrap()
            .contains("the customer saw pending"),
        "{timeline}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("the customer saw pending"),
        "the report shows the story"
    );
    for other in ["no-duplicate-charge", "money-conservation", "client-agrees"] {
        assert_eq!(verdict_of(&verdict, other)["status"], "pass", "{other}");
    }
}
