//! The checkout customer against scripted stub regions on 127.0.0.1:0: it honours
//! Retry-After (never sooner), retries timeouts with the same key and body, stops at the
//! retry-after cap, polls a 202 until it is final or the budget is spent, and double-clicks
//! concurrently. Every request it sent is in the history, as the stub saw it.

mod checkout_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use checkout_support::{confirmed, history_file, json, read_history, run, spec, stub};
use loadgen::checkout::ClientOutcome;
use loadgen::duration::HumanDuration;
use serde_json::json as j;

fn gaps(seen: &[checkout_support::Seen]) -> Vec<Duration> {
    seen.windows(2).map(|w| w[1].at - w[0].at).collect()
}

/// Shed twice with `Retry-After-Ms: 300` (and a coarser `Retry-After: 1`): the customer
/// retries only after at least 300 ms each time, with the same key and byte-identical body,
/// and the history shows checkout, retry, retry with the answers and waits the stub gave.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn retry_after_ms_is_honoured_and_the_key_reused() {
    let region = stub(|_req, seen| async move {
        if seen.len() <= 2 {
            json(
                429,
                j!({"error": "overloaded"}),
                &[("retry-after", "1"), ("retry-after-ms", "300")],
            )
        } else {
            confirmed()
        }
    })
    .await;
    let (_dir, path) = history_file("retry-after");
    let report = run(
        spec("hold rate=1 for=1s"),
        vec![region.url.clone()],
        Some(&path),
    )
    .await;

    let seen = region.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|s| s.key.as_deref() == Some("t-0")));
    assert!(
        seen.iter()
            .all(|s| s.body == seen[0].body && s.method == "POST")
    );
    for gap in gaps(&seen) {
        assert!(gap >= Duration::from_millis(300), "retried after {gap:?}");
    }
    assert_eq!(report.history.outcome(ClientOutcome::Confirmed), 1);
    let (arrivals, requests) = read_history(&path).await;
    assert_eq!(arrivals.len(), 1);
    assert_eq!(arrivals[0].order_id, "t-0");
    assert_eq!(arrivals[0].outcome, "confirmed");
    assert_eq!(arrivals[0].attempts, 3);
    assert_eq!(arrivals[0].last_status, Some(201));
    let kinds: Vec<&str> = requests.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["checkout", "retry", "retry"]);
    let answers: Vec<&str> = requests.iter().map(|r| r.answer.as_str()).collect();
    assert_eq!(answers, ["rejected", "rejected", "confirmed"]);
    assert_eq!(requests[0].retry_after_ms, Some(300));
    assert_eq!(requests[0].http_status, Some(429));
    // The history's clock agrees with the stub's: each retry left >= 300 ms after the
    // previous answer arrived.
    for pair in requests.windows(2) {
        assert!(
            pair[1].sent_at_us - pair[0].finished_at_us >= 300_000,
            "{pair:?}"
        );
    }
}

/// With only `Retry-After: 1` (whole seconds) the customer waits at least a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn retry_after_seconds_is_honoured() {
    let region = stub(|_req, seen| async move {
        if seen.len() == 1 {
            json(
                503,
                j!({"error": "payment_unavailable"}),
                &[("retry-after", "1")],
            )
        } else {
            confirmed()
        }
    })
    .await;
    let report = run(spec("hold rate=1 for=1s"), vec![region.url.clone()], None).await;
    let seen = region.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        gaps(&seen)[0] >= Duration::from_secs(1),
        "{:?}",
        gaps(&seen)
    );
    assert_eq!(seen[0].key, seen[1].key);
    assert_eq!(report.history.outcome(ClientOutcome::Confirmed), 1);
}

/// A shed answer asking for longer than `retry_after_max` ends the customer's attempts:
/// one request, outcome `rejected` (every answer was a shed one), the reason in `detail`.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn retry_after_above_the_cap_stops_the_customer() {
    let region =
        stub(|_req, _seen| async move { json(429, j!({}), &[("retry-after", "60")]) }).await;
    let (_dir, path) = history_file("retry-cap");
    run(
        spec("hold rate=1 for=1s"),
        vec![region.url.clone()],
        Some(&path),
    )
    .await;
    assert_eq!(region.seen().len(), 1);
    let (arrivals, _) = read_history(&path).await;
    assert_eq!(arrivals[0].outcome, "rejected");
    let detail = arrivals[0].detail.as_deref().unwrap_or_default();
    assert!(detail.contains("retry_after_max"), "{detail}");
}

/// The first request times out (the stub holds it past the 300 ms client timeout): the
/// retry carries the same key and body; the history says timeout, then confirmed. When
/// every attempt times out the customer ends `unknown`, never `rejected` or `failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn timeouts_are_retried_with_the_same_key() {
    let region = stub(|req, seen| async move {
        let first_for_key = seen.iter().filter(|s| s.key == req.key).count() == 1;
        let always_slow = req.key.as_deref() == Some("t-1");
        if first_for_key || always_slow {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        confirmed()
    })
    .await;
    let mut spec = spec("hold rate=2 for=1s");
    spec.retry.timeout = HumanDuration(Duration::from_millis(300));
    spec.retry.max_attempts = 2;
    let (_dir, path) = history_file("timeouts");
    let report = run(spec, vec![region.url.clone()], Some(&path)).await;

    let for_key = |key: &str| -> Vec<checkout_support::Seen> {
        region
            .seen()
            .into_iter()
            .filter(|s| s.key.as_deref() == Some(key))
            .collect()
    };
    let first = for_key("t-0");
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].body, first[1].body);
    let (arrivals, requests) = read_history(&path).await;
    assert_eq!(arrivals[0].outcome, "confirmed");
    assert_eq!(arrivals[1].outcome, "unknown");
    let answers = |id: i64| -> Vec<(String, String)> {
        requests
            .iter()
            .filter(|r| r.arrival_id == id)
            .map(|r| (r.kind.clone(), r.answer.clone()))
            .collect()
    };
    let pair = |k: &str, a: &str| (k.to_string(), a.to_string());
    assert_eq!(
        answers(0),
        [pair("checkout", "timeout"), pair("retry", "confirmed")]
    );
    assert_eq!(
        answers(1),
        [pair("checkout", "timeout"), pair("retry", "timeout")]
    );
    assert!(
        requests
            .iter()
            .all(|r| r.answer != "timeout" || r.http_status.is_none())
    );
    assert_eq!(report.history.outcome(ClientOutcome::Unknown), 1);
    assert_eq!(report.requests.count("checkout", "timeout"), 3);
}

/// A 202 is polled at the status_url it names until the order is final: two pending
/// polls, then confirmed; intervals never shorter than the configured first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn pending_is_polled_until_final() {
    let region = stub(|req, seen| async move {
        if req.method == "POST" {
            return json(
                202,
                j!({"status": "payment_pending", "status_url": format!("/v1/orders/{}", req.key.unwrap())}),
                &[],
            );
        }
        let polls = seen.iter().filter(|s| s.method == "GET").count();
        let status = if polls < 3 { "payment_pending" } else { "order_confirmed" };
        json(200, j!({"order_id": "t-0", "status": status}), &[])
    })
    .await;
    let mut spec = spec("hold rate=1 for=1s");
    spec.poll.initial = HumanDuration(Duration::from_millis(50));
    let (_dir, path) = history_file("polls");
    let report = run(spec, vec![region.url.clone()], Some(&path)).await;
    let seen = region.seen();
    let polls: Vec<_> = seen.iter().filter(|s| s.method == "GET").collect();
    assert_eq!(polls.len(), 3);
    assert!(polls.iter().all(|p| p.path == "/v1/orders/t-0"));
    assert!(gaps(&seen).iter().all(|g| *g >= Duration::from_millis(50)));
    let (arrivals, requests) = read_history(&path).await;
    assert_eq!(arrivals[0].outcome, "confirmed");
    assert_eq!((arrivals[0].attempts, arrivals[0].polls), (1, 3));
    assert_eq!(requests.last().unwrap().kind, "poll");
    assert_eq!(report.requests.count("status_poll", "pending"), 2);
    assert_eq!(report.requests.count("status_poll", "confirmed"), 1);
}

/// A 202 that never resolves within the poll budget is `unknown` after exactly
/// `max_polls` polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn unresolved_pending_is_unknown() {
    let region = stub(|req, _seen| async move {
        let status = if req.method == "POST" { 202 } else { 200 };
        json(status, j!({"status": "payment_pending"}), &[])
    })
    .await;
    let mut spec = spec("hold rate=1 for=1s");
    spec.poll.initial = HumanDuration(Duration::from_millis(20));
    spec.poll.max_interval = HumanDuration(Duration::from_millis(40));
    spec.poll.max_polls = 4;
    let (_dir, path) = history_file("poll-budget");
    run(spec, vec![region.url.clone()], Some(&path)).await;
    let (arrivals, _) = read_history(&path).await;
    assert_eq!(arrivals[0].outcome, "unknown");
    assert_eq!(arrivals[0].polls, 4);
    let detail = arrivals[0].detail.as_deref().unwrap_or_default();
    assert!(detail.contains("poll budget"), "{detail}");
}

/// Every customer clicks twice: two POSTs per key with identical bodies, on the wire at
/// the same time (the stub holds each for 200 ms and sees two in flight), recorded as
/// checkout + double_click.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn double_clicks_are_concurrent_duplicates() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (now, top) = (Arc::clone(&in_flight), Arc::clone(&peak));
    let region = stub(move |_req, _seen| {
        let (now, top) = (Arc::clone(&now), Arc::clone(&top));
        async move {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            top.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            confirmed()
        }
    })
    .await;
    let mut spec = spec("hold rate=1 for=1s");
    spec.double_click_fraction = 1.0;
    let (_dir, path) = history_file("double-click");
    run(spec, vec![region.url.clone()], Some(&path)).await;
    let seen = region.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].key, seen[1].key);
    assert_eq!(seen[0].body, seen[1].body);
    assert_eq!(peak.load(Ordering::SeqCst), 2, "the clicks overlapped");
    let (arrivals, requests) = read_history(&path).await;
    assert_eq!(arrivals[0].attempts, 2);
    let mut kinds: Vec<&str> = requests.iter().map(|r| r.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["checkout", "double_click"]);
}
