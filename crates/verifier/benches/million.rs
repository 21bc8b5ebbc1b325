//! Verifies N synthetic orders (default 1,000,000) on one store, and times a plain scan of
//! the same tables in the same run for the ratio. Not a test: it prints the figures.
//!
//! cargo bench -p verifier --bench million -- --store sqlite://DIR|postgres://... [--orders N]
//!     [--namespace NAME] [--existing] [--no-history] [--no-scan]
//!
//! `--no-scan` leaves the plain scan out (to profile the verifier alone).
//!
//! `--existing` verifies stores an earlier run generated: a SQLite directory, or on
//! PostgreSQL the schemas of the `--namespace` that run was given.
//!
//! The synthetic run: every order confirmed in its owner region with its four transitions,
//! one reservation, one published event and its consumer effect, one provider charge and
//! one provider call in the provider's request log (attributed to the owner region), one
//! delivery in the event sink's log; a client history (one arrival with its cart and one
//! answered checkout per order); and the run's asked bounds and prices, so every witness
//! check runs (`--no-history` leaves the history out, as the figures before the witnesses
//! were taken).

use std::time::Instant;

/// The allocator of the `rig` binary, so the figure is the one users get.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use evidence::store::Dialect;
use evidence::{Db, RegionId, StoreName, StoreUrl};
use futures_util::TryStreamExt;

fn args() -> (String, i64, bool, String, bool, bool) {
    let mut store = String::new();
    let mut orders = 1_000_000;
    let mut existing = false;
    let mut with_history = true;
    let mut scan = true;
    let mut namespace = format!("vbench_{}", std::process::id());
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--store" => store = it.next().expect("--store URL"),
            "--orders" => orders = it.next().and_then(|v| v.parse().ok()).expect("--orders N"),
            "--existing" => existing = true,
            "--no-history" => with_history = false,
            "--no-scan" => scan = false,
            // PostgreSQL schemas are named NAME_region_a, ...
            "--namespace" => namespace = it.next().expect("--namespace NAME"),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        !store.is_empty(),
        "give --store sqlite://DIR or postgres://..."
    );
    (store, orders, existing, namespace, with_history, scan)
}

/// Where the synthetic run's client history is: `history.db` beside the SQLite stores, or
/// the schema `<namespace>_history` on the PostgreSQL server.
fn history_source(store: &StoreUrl, namespace: &str) -> verifier::HistorySource {
    match store {
        StoreUrl::Sqlite { dir } => verifier::HistorySource::Sqlite(dir.join("history.db")),
        StoreUrl::Postgres { url, .. } => verifier::HistorySource::Postgres {
            url: url.clone(),
            schema: format!("{namespace}_history"),
        },
    }
}

/// One arrival and one answered checkout per order, every customer told confirmed.
async fn generate_history(source: &verifier::HistorySource, orders: i64, t0_us: i64) {
    sqlx::any::install_default_drivers();
    let (url, dialect, schema) = match source {
        verifier::HistorySource::Sqlite(path) => (
            format!("sqlite://{}?mode=rwc", path.display()),
            Dialect::Sqlite,
            None,
        ),
        verifier::HistorySource::Postgres { url, schema } => {
            (url.clone(), Dialect::Postgres, Some(schema.clone()))
        }
    };
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("history database");
    if let Some(schema) = &schema {
        for sql in [
            format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""),
            format!("SET search_path TO \"{schema}\""),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap();
        }
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(evidence::history::ddl(dialect)))
        .execute(&pool)
        .await
        .expect("history tables");
    let (from, id) = series(dialect, orders);
    let region = owner_sql();
    for sql in [
        format!(
            "INSERT INTO history_arrivals (arrival_id, order_id, customer_id, entry_region, phase, intended_at_us, sent_at_us, \
             finished_at_us, attempts, polls, last_status, outcome, detail, cart) \
             SELECT n, {id}, 'c', {region}, 'hold', {t0_us} + n * 1000, {t0_us} + n * 1000, {t0_us} + n * 1000 + 500, 1, 0, 201, \
             'confirmed', NULL, '[{{\"sku\":\"sku-1\",\"qty\":1}}]' FROM {from}"
        ),
        format!(
            "INSERT INTO history_requests (arrival_id, seq, kind, region, sent_at_us, finished_at_us, http_status, answer, retry_after_ms, order_id) \
             SELECT n, 0, 'checkout', {region}, {t0_us} + n * 1000, {t0_us} + n * 1000 + 500, 201, 'confirmed', NULL, {id} FROM {from}"
        ),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .expect("history rows");
    }
    pool.close().await;
}

/// The owner of order `n` in SQL, as [`evidence::owner_of`] maps its id: `0` for region a,
/// `1` for b. FNV-1a's multiplier and offset basis are odd, so a hash's lowest bit is the
/// basis's flipped once per odd byte: the id `o` + eight digits is region a's exactly when
/// its digits hold an even number of odd digits (`o` is odd itself). [`owners_agree`]
/// checks this against `owner_of`.
fn owner_parity_sql() -> String {
    let digits: Vec<String> = (0..8)
        .map(|k| format!("((n / {}) % 10) % 2", 10_i64.pow(k)))
        .collect();
    format!("({}) % 2", digits.join(" + "))
}

/// The owner region's name of order `n` in SQL (see [`owner_parity_sql`]).
fn owner_sql() -> String {
    format!("CASE WHEN {} = 0 THEN 'a' ELSE 'b' END", owner_parity_sql())
}

/// Asserts that [`owner_parity_sql`]'s rule is `owner_of`'s on a spread of ids.
fn owners_agree() {
    for n in (0..100_000_i64).chain((0..1_000).map(|i| i * 99_991 + 7)) {
        let odd_digits = format!("{n:08}").bytes().filter(|b| b % 2 == 1).count();
        let rule = if odd_digits % 2 == 0 {
            RegionId::A
        } else {
            RegionId::B
        };
        assert_eq!(
            evidence::owner_of(&format!("o{n:08}")),
            rule,
            "the synthetic store's owner rule no longer matches owner_of (order {n})"
        );
    }
}

/// `FROM` clause yielding `n` in 0..count, and the order id expression, per dialect.
fn series(dialect: Dialect, count: i64) -> (String, &'static str) {
    match dialect {
        Dialect::Sqlite => (
            format!(
                "(WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < {}) SELECT n FROM seq) s",
                count - 1
            ),
            "printf('o%08d', n)",
        ),
        Dialect::Postgres => (
            format!("generate_series(CAST(0 AS BIGINT), {}) AS s(n)", count - 1),
            "'o' || lpad(n::text, 8, '0')",
        ),
    }
}

async fn exec(db: &Db, sql: String) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&db.pool)
        .await
        .expect("generate");
}

const T0_US: i64 = 1_800_000_000_000_000;

async fn generate(store: &StoreUrl, orders: i64) {
    let t0_us = T0_US;
    for (i, region) in RegionId::ALL.into_iter().enumerate() {
        let db = Db::open(store, StoreName::Region(region))
            .await
            .expect("region store");
        // The system's own record of its bounds (a claim), the same as the run asked for.
        asked(orders).write(&db).await.expect("run parameters");
        let (from, id) = series(db.dialect, orders);
        let mine = format!("({}) = {i}", owner_parity_sql());
        let r = region.as_str();
        exec(&db, format!(
            "INSERT INTO orders (order_id, customer_id, owner_region, entry_region, fingerprint, items_json, amount_cents, currency, status, reason, version, created_at_us, updated_at_us) \
             SELECT {id}, 'c', '{r}', '{r}', 'f', '[]', 1200, 'USD', 'order_confirmed', 'ch', 4, {t0_us} + n * 1000, {t0_us} + n * 1000 + 500 FROM {from} WHERE {mine}"
        )).await;
        // Rows go in in the order of their times, as a run writes them: an order's four
        // transitions next to each other, not each step of every order in turn.
        exec(&db, format!(
            "INSERT INTO order_transitions (order_id, seq, from_state, to_state, at_us, reason, actor, region) \
             SELECT {id}, t.seq, t.from_state, t.to_state, {t0_us} + n * 1000 + t.seq * 100, NULL, 'checkout', '{r}' \
             FROM {from} CROSS JOIN (SELECT 1 AS seq, NULL AS from_state, 'order_intent_saved' AS to_state \
             UNION ALL SELECT 2, 'order_intent_saved', 'inventory_reserved' UNION ALL SELECT 3, 'inventory_reserved', 'payment_authorizing' \
             UNION ALL SELECT 4, 'payment_authorizing', 'order_confirmed') t \
             WHERE {mine} ORDER BY n, t.seq"
        )).await;
        exec(&db, format!(
            "INSERT INTO reservations (order_id, sku, qty, status, updated_at_us) SELECT {id}, 'sku-1', 1, 'committed', {t0_us} + n * 1000 FROM {from} WHERE {mine}"
        )).await;
        exec(&db, format!(
            "INSERT INTO outbox (event_id, order_id, event_type, payload, created_at_us, published_at_us, delivery_attempts) \
             SELECT 'ev' || {id}, {id}, 'order_confirmed', '{{}}', {t0_us} + n * 1000 + 400, {t0_us} + n * 1000 + 900, 1 FROM {from} WHERE {mine}"
        )).await;
        exec(&db, format!(
            "INSERT INTO consumer_dedup (consumer, event_id, at_us) SELECT 'fulfilment', 'ev' || {id}, {t0_us} + n * 1000 + 900 FROM {from} WHERE {mine}"
        )).await;
        exec(&db, format!(
            "INSERT INTO fulfilments (consumer, event_id, order_id, at_us) SELECT 'fulfilment', 'ev' || {id}, {id}, {t0_us} + n * 1000 + 900 FROM {from} WHERE {mine}"
        )).await;
        exec(&db, format!(
            "INSERT INTO payment_attempts (order_id, idempotency_key, region, op, attempt_no, is_retry, started_at_us, finished_at_us, outcome, http_status, detail) \
             SELECT {id}, 'pay:' || {id}, '{r}', 'charge', 1, 0, {t0_us} + n * 1000 + 300, {t0_us} + n * 1000 + 350, 'authorized', 200, NULL FROM {from} WHERE {mine}"
        )).await;
        exec(&db, format!(
            "INSERT INTO inventory (sku, price_cents, stock, reserved) SELECT 'sku-1', 1200, {orders}, COUNT(*) FROM reservations"
        )).await;
        db.close().await;
    }
    let db = Db::open(store, StoreName::Provider)
        .await
        .expect("provider store");
    let (from, id) = series(db.dialect, orders);
    exec(&db, format!(
        "INSERT INTO provider_charges (charge_id, idempotency_key, order_id, amount_cents, currency, status, refunded_cents, created_at_us, updated_at_us) \
         SELECT 'ch' || {id}, 'pay:' || {id}, {id}, 1200, 'USD', 'authorized', 0, {t0_us} + n * 1000 + 340, {t0_us} + n * 1000 + 340 FROM {from}"
    )).await;
    // The provider's request log, each charge attributed to the calling region by listener.
    exec(&db, format!(
        "INSERT INTO provider_requests (op, idempotency_key, charge_id, received_at_us, finished_at_us, http_status, outcome, caller, abandoned_at_us) \
         SELECT 'charge', 'pay:' || {id}, 'ch' || {id}, {t0_us} + n * 1000 + 310, {t0_us} + n * 1000 + 340, 200, 'authorized', \
         {}, NULL FROM {from}", owner_sql()
    )).await;
    db.close().await;
    // The event sink's log: each confirmation delivered once, by the owner region.
    let db = Db::open(store, StoreName::Sink).await.expect("sink store");
    exec(&db, format!(
        "INSERT INTO sink_deliveries (event_id, order_id, event_type, version, caller, received_at_us, http_status, outcome) \
         SELECT 'ev' || {id}, {id}, 'order_confirmed', 4, {}, \
         {t0_us} + n * 1000 + 900, 200, 'accepted' FROM {from}",
        owner_sql()
    )).await;
    db.close().await;
}

/// The bounds the run asked for (its profile): the reference defaults, with the stock the
/// synthetic inventory has.
fn asked(orders: i64) -> evidence::RunParams {
    let mut params = target_system::TargetConfig::default().run_params();
    params.initial_stock.insert("sku-1".into(), orders);
    params
}

/// Reads every row of the tables the verifier reads, one table after another.
async fn plain_scan(store: &StoreUrl, history: Option<&verifier::HistorySource>) -> u64 {
    let mut rows = 0u64;
    if let Some(source) = history {
        let db = source.open_read_only().await.expect("history");
        for table in ["history_arrivals", "history_requests"] {
            let mut stream =
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}"))).fetch(&db.pool);
            while stream.try_next().await.unwrap().is_some() {
                rows += 1;
            }
        }
    }
    for region in RegionId::ALL {
        let db = Db::open_with(store, StoreName::Region(region), evidence::Access::ReadOnly)
            .await
            .unwrap();
        for table in [
            "orders",
            "order_transitions",
            "outbox",
            "fulfilments",
            "payment_attempts",
        ] {
            let mut stream =
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}"))).fetch(&db.pool);
            while stream.try_next().await.unwrap().is_some() {
                rows += 1;
            }
        }
    }
    for (name, table) in [
        (StoreName::Provider, "provider_charges"),
        (StoreName::Provider, "provider_requests"),
        (StoreName::Sink, "sink_deliveries"),
    ] {
        let db = Db::open_with(store, name, evidence::Access::ReadOnly)
            .await
            .unwrap();
        let mut stream =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}"))).fetch(&db.pool);
        while stream.try_next().await.unwrap().is_some() {
            rows += 1;
        }
    }
    rows
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let (store, orders, existing, namespace, with_history, scan) = args();
    owners_agree();
    let store = StoreUrl::parse(&store)
        .expect("store URL")
        .with_namespace(&namespace);
    let history = with_history.then(|| history_source(&store, &namespace));
    if !existing {
        let started = Instant::now();
        generate(&store, orders).await;
        if let Some(source) = &history {
            generate_history(source, orders, T0_US).await;
        }
        eprintln!(
            "generated {orders} orders in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let scan_started = Instant::now();
    let rows = if scan {
        plain_scan(&store, history.as_ref()).await
    } else {
        0
    };
    let scan = scan_started.elapsed().as_secs_f64();
    let verify_started = Instant::now();
    let sources = verifier::Sources {
        store: store.clone(),
        history: history.clone(),
        journal: None,
    };
    let options = verifier::Options {
        asked: Some(asked(orders)),
        prices: [("sku-1".to_string(), 1200)].into(),
        ..verifier::Options::default()
    };
    let report = verifier::verify(&sources, &options).await.expect("verify");
    let verify = verify_started.elapsed().as_secs_f64();
    assert_eq!(report.orders_checked as i64, orders);
    assert!(report.failed().is_empty(), "{}", report.table());
    for verdict in &report.verdicts {
        eprintln!(
            "  {:<28} {:<8} judged from: {}",
            verdict.invariant,
            format!("{:?}", verdict.status),
            verdict.witnesses.join(", ")
        );
    }
    println!(
        "orders={orders} history={} verify_seconds={verify:.2} plain_scan_seconds={scan:.2} ratio={:.2} rows_scanned={rows} peak_rss_mb={:.0} store={}",
        if with_history { "yes" } else { "no" },
        verify / scan,
        peak_rss_mb(),
        store.to_string().split(' ').next().unwrap_or_default()
    );
}
