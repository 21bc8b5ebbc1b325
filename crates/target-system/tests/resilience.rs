//! The resilience mechanisms under the faults they answer, through real sockets: every hop
//! goes through a forwarder the test controls.

mod common;

use std::time::Duration;

use common::{
    Harness, Mode, attempts, count, max_concurrency, order_owned_by, quiet_config,
    retry_budget_violation,
};
use evidence::RegionId;
use serde_json::{Value, json};
use target_system::testkit::TestStores;
use tokio::time::Instant;

static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Partition a<->b (blackhole): checkouts entering a for b-owned orders answer 202 within the
/// deadline and none is decided by a; a's status says so honestly; after heal the held
/// intents are delivered and every order reaches a terminal state at b with one charge.
async fn partition_holds_intents_and_delivers_after_heal(stores: TestStores) {
    let mut config = quiet_config();
    config.payment.deadline_ms = 800;
    let (h, links) = Harness::start_linked(stores, config).await;
    links.partition(Mode::Blackhole);
    let orders: Vec<String> = (0..12)
        .map(|i| order_owned_by(RegionId::B, &format!("part-{i}")))
        .collect();
    let mut tasks = Vec::new();
    for order in &orders {
        let client = h.client.clone();
        let url = format!("{}/v1/checkout", h.url(RegionId::A));
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"order_id": order, "customer_id": "cust-1", "items": [{"sku": "sku-2", "qty": 1}]});
            let started = Instant::now();
            let response = client
                .send(rig_http::Method::POST, &url, &[("idempotency-key", order.as_str())], Some(bytes::Bytes::from(body.to_string())), Duration::from_secs(10))
                .await
                .expect("answered");
            (response, started.elapsed())
        }));
    }
    for task in tasks {
        let (response, took) = task.await.unwrap();
        assert_eq!(response.status, 202, "{:?}", response.body);
        assert_eq!(
            response.json::<Value>().unwrap()["status"],
            "payment_pending"
        );
        assert!(
            took < Duration::from_millis(1_000),
            "answered within the 800 ms deadline (+ slack): {took:?}"
        );
    }
    let a = h.region(RegionId::A).db();
    let b = h.region(RegionId::B).db();
    for order in &orders {
        assert_eq!(
            count(a, "SELECT COUNT(*) FROM orders WHERE order_id = $1", order).await,
            0,
            "a decided nothing"
        );
        assert_eq!(
            count(
                a,
                "SELECT COUNT(*) FROM forward_outbox WHERE order_id = $1 AND state = 'held'",
                order
            )
            .await,
            1
        );
    }
    // Status through a: honest local evidence, not a guess.
    let view: Value = h
        .get(&format!("{}/v1/orders/{}", h.url(RegionId::A), orders[0]))
        .await
        .json()
        .unwrap();
    assert_eq!(view["status"], "payment_pending");
    assert_eq!(view["held_by"], "a");
    assert!(
        view["evidence"]
            .as_str()
            .unwrap()
            .contains("will not decide"),
        "{view}"
    );
    // A retry during the partition replays pending and holds nothing twice.
    let retry = h
        .checkout(RegionId::A, &orders[0], json!([{"sku": "sku-2", "qty": 1}]))
        .await;
    assert_eq!(retry.status, 202);

    links.partition(Mode::Pass);
    let delivered = h.region(RegionId::A).forward_once().await.unwrap();
    assert_eq!(delivered, orders.len());
    for order in &orders {
        let status = h.status(order).await;
        assert_eq!(status["status"], "order_confirmed", "{status}");
        assert_eq!(status["owner_region"], "b");
        assert_eq!(status["entry_region"], "a");
        assert_eq!(
            h.charges(order)
                .await
                .iter()
                .filter(|c| c.net_cents() > 0)
                .count(),
            1
        );
        assert_eq!(
            count(
                b,
                "SELECT COUNT(*) FROM order_transitions WHERE order_id = $1 AND region <> 'b'",
                order
            )
            .await,
            0
        );
    }
    assert_eq!(
        count(
            a,
            "SELECT COUNT(*) FROM orders WHERE order_id LIKE $1",
            "part-%"
        )
        .await,
        0
    );
    h.shutdown().await;
}
both_stores!(partition_holds_intents_and_delivers_after_heal);

/// Provider capacity 50/s, 500 checkouts/s offered for 5 s: shed checkouts are answered fast
/// (429, p99 <= 50 ms), concurrent provider calls never exceed the limit, and confirmed
/// throughput stays >= 80 % of the provider's capacity (no congestion collapse).
async fn overload_is_shed_fast_without_collapse(stores: TestStores) {
    // One overload at a time in this process: the two store variants would otherwise share
    // the machine's cores and measure each other.
    let _one_at_a_time = HEAVY.lock().await;
    let mut config = quiet_config();
    config.provider.rate_limit_per_sec = Some(50);
    // The default 64 provider slots; sheds come from the provider's pushback and from the
    // slot queue. A queued checkout is shed when its wait runs out, so its answer takes the
    // wait plus scheduling: a 25 ms wait leaves room under the 50 ms bound on a busy
    // machine (with the default 50 ms wait every queue-timeout shed would sit on the bound).
    // The slot limit itself is proven by the no-admission-control defect test.
    config.admission.queue_timeout_ms = 25;
    let limit = config.admission.provider_max_in_flight as usize;
    let h = Harness::start(stores, config).await;
    let url = format!("{}/v1/checkout", h.url(RegionId::A));
    let owned: Vec<String> = (0..)
        .map(|i| format!("ovl-{i}"))
        .filter(|id| evidence::owner_of(id) == RegionId::A)
        .take(2_500)
        .collect();
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(2));
    let mut tasks = Vec::with_capacity(owned.len());
    for order in owned {
        ticks.tick().await;
        let client = h.client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"order_id": order, "customer_id": "c", "items": [{"sku": "sku-1", "qty": 1}]});
            let sent = Instant::now();
            let response = client
                .send(rig_http::Method::POST, &url, &[("idempotency-key", order.as_str())], Some(bytes::Bytes::from(body.to_string())), Duration::from_secs(10))
                .await;
            (response.map(|r| r.status.as_u16()).unwrap_or(0), sent.elapsed())
        }));
    }
    let (mut confirmed, mut shed, mut other) = (0usize, 0usize, 0usize);
    for task in tasks {
        let (status, _took) = task.await.unwrap();
        match status {
            201 => confirmed += 1,
            429 => shed += 1,
            _ => other += 1,
        }
    }
    let offered_for = started.elapsed().as_secs_f64();
    assert!(
        shed > 1_000,
        "most of the overload is shed: {shed} shed, {confirmed} confirmed, {other} other"
    );
    // Server-side shed latency, from the region's own histogram: >= 99 % within 50 ms.
    let metrics = String::from_utf8(
        h.get(&format!("{}/metrics", h.url(RegionId::A)))
            .await
            .body
            .to_vec(),
    )
    .unwrap();
    let series = |needle: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{needle} missing in\n{}",
                    metrics
                        .lines()
                        .filter(|l| l.contains("duration_seconds_bucket"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
    };
    let within = series(
        "rig_region_checkout_duration_seconds_bucket{outcome=\"rejected\",region=\"a\",le=\"0.05\"}",
    );
    let all =
        series("rig_region_checkout_duration_seconds_count{outcome=\"rejected\",region=\"a\"}");
    assert!(all >= shed as f64);
    let buckets: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("outcome=\"rejected\""))
        .collect();
    assert!(
        within / all >= 0.99,
        "only {within} of {all} sheds answered within 50 ms:\n{}",
        buckets.join("\n")
    );
    let goodput = confirmed as f64 / offered_for;
    assert!(
        goodput >= 40.0,
        "confirmed {confirmed} in {offered_for:.1} s = {goodput:.1}/s < 80 % of 50/s"
    );
    let calls = attempts(h.region(RegionId::A).db()).await;
    assert!(
        max_concurrency(&calls) <= limit,
        "concurrent provider calls {}",
        max_concurrency(&calls)
    );
    let db = h.region(RegionId::A).db();
    h.region(RegionId::A).repair_once().await.unwrap();
    assert!(count(db, "SELECT COALESCE(CAST(SUM(count) AS BIGINT), 0) FROM admission_stats WHERE decision <> $1", "admitted").await > 0);
    h.shutdown().await;
}
both_stores!(overload_is_shed_fast_without_collapse);

/// The provider times out on every call: retries stay within the budget in every window,
/// the breaker opens (recorded), new orders are parked, and after recovery every order
/// drains to a terminal state within max_pending_age with at most one live charge.
async fn provider_timeouts_open_the_breaker_and_parked_orders_drain(stores: TestStores) {
    let mut config = target_system::TargetConfig::default();
    config.payment.per_try_timeout_ms = 100;
    config.payment.deadline_ms = 400;
    config.breaker.min_requests = 8;
    config.breaker.probe_after_ms = 300;
    config.repair.scan_interval_ms = 100;
    config.repair.max_pending_age_seconds = 15;
    config.repair.void_after_seconds = 5;
    config.outbox.poll_interval_ms = 100;
    let budget = config.retry_budget.clone();
    let h = Harness::start(stores, config).await;
    h.set_faults(json!({"latency_ms": 1_500})).await;
    let orders: Vec<String> = (0..40)
        .map(|i| order_owned_by(RegionId::A, &format!("slow-{i}")))
        .collect();
    let mut statuses = Vec::new();
    for order in &orders {
        statuses.push(
            h.checkout(RegionId::A, order, json!([{"sku": "sku-1", "qty": 1}]))
                .await
                .status
                .as_u16(),
        );
    }
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    let db = h.region(RegionId::A).db();
    assert!(
        count(
            db,
            "SELECT COUNT(*) FROM mode_changes WHERE mode = $1",
            "degraded"
        )
        .await
            >= 1,
        "the breaker opened"
    );
    let parked = count(
        db,
        "SELECT COUNT(*) FROM orders WHERE reason LIKE $1",
        "parked%",
    )
    .await;
    assert!(
        parked > 0,
        "new orders were parked while the breaker was open"
    );
    h.set_faults(json!({})).await;
    let recovered = Instant::now();
    common::eventually(Duration::from_secs(15), "every order terminal", || async {
        count(db, "SELECT COUNT(*) FROM orders WHERE status NOT IN ('order_confirmed', 'failed_safely') AND order_id LIKE $1", "slow-%").await == 0
    })
    .await;
    assert!(recovered.elapsed() <= Duration::from_secs(15));
    for order in &orders {
        let live = h
            .charges(order)
            .await
            .iter()
            .filter(|c| c.net_cents() > 0)
            .count();
        let status = h.status(order).await;
        let expected = usize::from(status["status"] == "order_confirmed");
        assert_eq!(live, expected, "{order}: {status}");
    }
    assert!(
        count(
            db,
            "SELECT COUNT(*) FROM mode_changes WHERE mode = $1",
            "normal"
        )
        .await
            >= 1,
        "the breaker closed again"
    );
    let calls = attempts(db).await;
    assert_eq!(
        retry_budget_violation(&calls, budget.ratio, budget.min_per_sec, budget.ttl_seconds),
        None
    );
    h.shutdown().await;
}
both_stores!(provider_timeouts_open_the_breaker_and_parked_orders_drain);

/// Every parameter is settable from a `[target]` table, and a different retry budget needs
/// no code change: with ratio 0 and no reserve, failing calls are never retried.
async fn retry_budget_is_a_parameter(stores: TestStores) {
    let mut config = quiet_config();
    config.retry_budget =
        target_system::TargetConfig::from_toml("[retry_budget]\nratio = 0.0\nmin_per_sec = 0.0\n")
            .unwrap()
            .retry_budget;
    let h = Harness::start(stores, config).await;
    h.set_faults(json!({"error_rate": 1.0})).await;
    for i in 0..5 {
        let order = order_owned_by(RegionId::A, &format!("nobudget-{i}"));
        assert_eq!(
            h.checkout(RegionId::A, &order, json!([{"sku": "sku-1", "qty": 1}]))
                .await
                .status,
            202
        );
    }
    let calls = attempts(h.region(RegionId::A).db()).await;
    assert_eq!(calls.iter().filter(|a| a.is_retry).count(), 0);
    assert_eq!(calls.iter().filter(|a| a.op == "charge").count(), 5);
    h.shutdown().await;
}
both_stores!(retry_budget_is_a_parameter);
