//! The client history and the summary tell the same story: one arrival row per scheduled
//! arrival (dropped and never-started ones too), outcome counts equal to the engine's (and a
//! summary that matches its schema), the customers fixed by the seed, and a history file
//! that refuses a second run.

mod checkout_support;

use std::collections::BTreeMap;
use std::time::Duration;

use checkout_support::{Seen, confirmed, history_file, json, read_history, run, spec, stub};
use loadgen::checkout::ClientOutcome;
use loadgen::duration::HumanDuration;
use loadgen::{CheckoutRun, HistorySink, Outcome, on_dedicated_thread};
use serde_json::json as j;

/// Answers by arrival index (`t-<i>`): confirmed, failed_safely, shed, key conflict. With
/// one attempt each, outcomes split exactly by i mod 4, and the history's counts, the
/// engine's counts and the summary's status codes agree; the JSON summary validates.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn outcomes_agree_between_history_and_engine() {
    let region = stub(|req, _seen| async move {
        let i: u64 = req.key.unwrap()[2..].parse().unwrap();
        match i % 4 {
            0 => confirmed(),
            1 => json(
                200,
                j!({"status": "failed_safely", "reason": "declined:x"}),
                &[],
            ),
            2 => json(429, j!({}), &[("retry-after-ms", "5")]),
            _ => json(422, j!({"error": "idempotency_key_reused"}), &[]),
        }
    })
    .await;
    let mut spec = spec("hold rate=200 for=1s");
    spec.retry.max_attempts = 1;
    let (_dir, path) = history_file("outcomes");
    let report = run(spec, vec![region.url.clone()], Some(&path)).await;
    let engine = &report.report;
    assert_eq!(engine.scheduled(), 200);
    for (outcome, engine_outcome) in [
        (ClientOutcome::Confirmed, Outcome::Ok),
        (ClientOutcome::Failed, Outcome::Failed),
        (ClientOutcome::Rejected, Outcome::Rejected),
        (ClientOutcome::Unknown, Outcome::Unknown),
    ] {
        assert_eq!(report.history.outcome(outcome), 50, "{outcome:?}");
        assert_eq!(engine.count(engine_outcome), 50, "{engine_outcome:?}");
    }
    assert_eq!(engine.status_codes.get(&422), Some(&50));
    let (arrivals, requests) = read_history(&path).await;
    assert_eq!(arrivals.len(), 200);
    assert_eq!(requests.len(), 200);
    for a in &arrivals {
        let want = ["confirmed", "failed", "rejected", "unknown"][(a.arrival_id % 4) as usize];
        assert_eq!(a.outcome, want, "{a:?}");
        assert_eq!(a.order_id, format!("t-{}", a.arrival_id));
        assert_eq!(a.entry_region, "a");
        assert_eq!(a.phase, "0-hold");
        assert!(a.sent_at_us.unwrap() >= a.intended_at_us - 1_000, "{a:?}");
        assert!(a.finished_at_us.unwrap() >= a.sent_at_us.unwrap());
    }
    assert_eq!(arrivals[1].detail.as_deref(), Some("declined:x"));
    // The summary carries the request statistics and the history's counts.
    let workload = &engine.run.workload;
    assert_eq!(workload["kind"], "checkout");
    assert_eq!(workload["history"]["arrivals_written"], 200);
    assert_eq!(workload["requests"]["checkout"]["requests"], 200);
    assert!(
        report.to_text().contains("confirmed 50"),
        "{}",
        report.to_text()
    );
    // And the JSON summary of a checkout run is still the documented summary.
    let summary = loadgen::Summary::new(engine, &report.schedule, Duration::from_millis(1));
    let json = serde_json::to_value(&summary).unwrap();
    let schema: serde_json::Value = serde_json::from_str(loadgen::SUMMARY_JSON_SCHEMA).unwrap();
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource("summary.schema.json", schema)
        .unwrap();
    let index = compiler
        .compile("summary.schema.json", &mut schemas)
        .unwrap();
    if let Err(err) = schemas.validate(&json, index) {
        panic!("a checkout summary does not match the schema: {err:#}");
    }
}

/// What each arrival index sent, and to which region: the customer as the wire saw it
/// (its order id stripped, so runs with different tags compare).
fn customers(a: &[Seen], b: &[Seen]) -> BTreeMap<u64, (char, String)> {
    let mut out = BTreeMap::new();
    for (region, seen) in [('a', a), ('b', b)] {
        for s in seen {
            let key = s.key.clone().unwrap();
            let (tag, index) = key.rsplit_once('-').unwrap();
            let body = String::from_utf8_lossy(&s.body).replace(&key, "ID");
            let _ = tag;
            out.insert(index.parse().unwrap(), (region, body));
        }
    }
    out
}

/// The seed decides the customers, through real sockets: two runs with seed 7 (different
/// run tags) send every arrival to the same region with the same cart and customer; a run
/// with seed 8 sends different ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_seed_decides_the_customers() {
    let mut runs = Vec::new();
    for (seed, tag) in [(7, "x"), (7, "y"), (8, "z")] {
        let a = stub(|_req, _seen| async move { confirmed() }).await;
        let b = stub(|_req, _seen| async move { confirmed() }).await;
        let mut spec = spec("hold rate=200 for=1s");
        spec.seed = seed;
        spec.run_tag = Some(tag.into());
        spec.skus = (1..=6).map(|i| format!("sku-{i}")).collect();
        run(spec, vec![a.url.clone(), b.url.clone()], None).await;
        runs.push(customers(&a.seen(), &b.seen()));
    }
    assert_eq!(runs[0].len(), 200);
    assert_eq!(runs[0], runs[1], "same seed, same customers");
    let differ = runs[0]
        .iter()
        .filter(|(i, c)| runs[2].get(i) != Some(c))
        .count();
    assert!(
        differ > 150,
        "only {differ} of 200 customers differ with another seed"
    );
    let in_a = runs[0].values().filter(|(r, _)| *r == 'a').count();
    assert!(
        (60..=140).contains(&in_a),
        "equal weights put {in_a} of 200 in region a"
    );
}

/// One lane and an in-flight cap of 2 against a slow region: most arrivals are dropped,
/// and every one of them is still a history row (dropped, nothing sent), so rows equal
/// arrivals and the counts equal the engine's.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn dropped_arrivals_are_history_rows() {
    let region = stub(|_req, _seen| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        confirmed()
    })
    .await;
    let mut spec = spec("hold rate=100 for=1s");
    spec.lanes = 1;
    spec.max_in_flight = 2;
    let (_dir, path) = history_file("dropped");
    let report = run(spec, vec![region.url.clone()], Some(&path)).await;
    let dropped = report.report.count(Outcome::Dropped);
    assert!(dropped > 50, "dropped {dropped}");
    assert_eq!(report.history.outcome(ClientOutcome::Dropped), dropped);
    let (arrivals, _) = read_history(&path).await;
    assert_eq!(arrivals.len() as u64, report.report.scheduled());
    let dropped_rows: Vec<_> = arrivals.iter().filter(|a| a.outcome == "dropped").collect();
    assert_eq!(dropped_rows.len() as u64, dropped);
    assert!(
        dropped_rows
            .iter()
            .all(|a| a.sent_at_us.is_none() && a.attempts == 0)
    );
}

/// A run whose drain times out (one lane, a region that holds every request for the whole
/// give-up time): the customer cut short and those still queued are rows too, `unknown`,
/// so the history still has one row per arrival and agrees with the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn customers_cut_short_by_the_drain_are_history_rows() {
    let region = stub(|_req, _seen| async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        confirmed()
    })
    .await;
    let mut spec = spec("hold rate=20 for=0.5s");
    spec.lanes = 1;
    spec.give_up_after = HumanDuration(Duration::from_millis(400));
    let (_dir, path) = history_file("drain");
    let report = run(spec, vec![region.url.clone()], Some(&path)).await;
    assert!(
        report.report.run.aborted_at_drain > 0,
        "the drain must time out"
    );
    let (arrivals, _) = read_history(&path).await;
    assert_eq!(arrivals.len() as u64, report.report.scheduled());
    assert_eq!(
        report.history.outcome(ClientOutcome::Unknown),
        report.report.count(Outcome::Unknown)
    );
    assert!(arrivals.iter().all(|a| a.outcome == "unknown"));
    assert!(arrivals.iter().any(|a| {
        a.detail
            .as_deref()
            .unwrap_or_default()
            .contains("never started")
    }));
}

/// A history file that already holds a run is refused before anything is sent, naming
/// --history and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_used_history_file_is_refused() {
    let region = stub(|_req, _seen| async move { confirmed() }).await;
    let (_dir, path) = history_file("reuse");
    run(
        spec("hold rate=5 for=1s"),
        vec![region.url.clone()],
        Some(&path),
    )
    .await;
    let sent = region.seen().len();
    let url = region.url.clone();
    let again = path.clone();
    let err = on_dedicated_thread("test-checkout", move || async move {
        CheckoutRun::new(spec("hold rate=5 for=1s"), vec![url])
            .history(HistorySink::Sqlite { path: again })
            .run(&mut (), std::future::pending())
            .await
    })
    .await
    .unwrap()
    .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("--history") && text.contains("fix:"),
        "{text}"
    );
    assert_eq!(region.seen().len(), sent, "nothing sent by the refused run");
}

/// The PostgreSQL sink writes the same tables (skipped without TEST_DATABASE_URL; fails
/// under CI=true without it, like every PostgreSQL test).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn postgres_history_has_a_row_per_arrival() {
    if target_system::testkit::postgres("checkout_history").is_none() {
        return;
    }
    let url = std::env::var("TEST_DATABASE_URL").unwrap();
    let schema = format!(
        "h_{}_{}",
        std::process::id(),
        evidence::time::now_us() % 1_000_000
    );
    let region = stub(|_req, _seen| async move { confirmed() }).await;
    let sink = HistorySink::parse(&format!(
        "{url}{}schema={schema}",
        if url.contains('?') { "&" } else { "?" }
    ))
    .unwrap();
    let target = region.url.clone();
    let report = on_dedicated_thread("test-checkout", move || async move {
        CheckoutRun::new(spec("hold rate=50 for=1s"), vec![target])
            .history(sink)
            .run(&mut (), std::future::pending())
            .await
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(report.history.arrivals_written, 50);
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM \"{schema}\".history_arrivals WHERE outcome = 'confirmed'"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(count, 50);
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&pool)
    .await;
}
