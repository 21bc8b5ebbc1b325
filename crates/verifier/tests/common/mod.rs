//! Runs the reference system through a scenario as a client would, keeps a client history
//! in the workload's schema, drains, stops the system, and hands the stores to the verifier.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use evidence::{RegionId, StoreUrl};
use serde_json::{Value, json};
use sqlx::Row;
use target_system::testkit::harness::{Harness, eventually, order_owned_by};
use target_system::testkit::{TempDir, TestStores};
use verifier::{HistorySource, Options, Report, Sources};

/// The client history tables, as the checkout workload writes them.
pub fn history_schema() -> String {
    evidence::history::ddl(evidence::Dialect::Sqlite)
}

/// What one customer was told.
#[derive(Debug, Clone)]
pub struct Told {
    pub order_id: String,
    pub entry: RegionId,
    pub sent_at_us: i64,
    pub finished_at_us: i64,
    pub status: u16,
    pub outcome: &'static str,
    /// The items sent, as the history keeps them.
    pub cart: String,
}

/// A finished scenario: stores (kept alive), the client history, the journal if any.
pub struct Finished {
    pub stores: TestStores,
    pub history: Option<PathBuf>,
    pub journal: Option<PathBuf>,
    pub dir: TempDir,
}

impl Finished {
    pub fn sources(&self) -> Sources {
        Sources {
            store: self.stores.url.clone(),
            history: self.history.clone().map(HistorySource::Sqlite),
            journal: self.journal.clone(),
        }
    }

    pub async fn verify(&self) -> Report {
        verifier::verify(&self.sources(), &Options::default())
            .await
            .expect("evidence readable")
    }

    /// A store to tamper with (read-write).
    pub async fn db(&self, name: evidence::StoreName) -> evidence::Db {
        evidence::Db::open(&self.stores.url, name).await.unwrap()
    }
}

/// One checkout as a client: what it was told.
pub async fn checkout(h: &Harness, entry: RegionId, order_id: &str, items: Value) -> Told {
    let sent_at_us = evidence::time::now_us();
    let cart = items.to_string();
    let response = h.checkout(entry, order_id, items).await;
    let finished_at_us = evidence::time::now_us();
    let body: Value = response.json().unwrap_or(Value::Null);
    let outcome = match (response.status.as_u16(), body["status"].as_str()) {
        (_, Some("order_confirmed")) => "confirmed",
        (_, Some("failed_safely")) => "failed",
        (429 | 503, _) => "rejected",
        _ => "unknown",
    };
    Told {
        order_id: order_id.to_string(),
        entry,
        sent_at_us,
        finished_at_us,
        status: response.status.as_u16(),
        outcome,
        cart,
    }
}

/// Repairs until nothing is pending in either region, then relays every outbox.
pub async fn drain(h: &Harness) {
    eventually(Duration::from_secs(20), "no order is pending", || async {
        let mut pending = 0;
        for region in RegionId::ALL {
            let r = h.region(region);
            r.repair_once().await.unwrap();
            pending += sqlx::query(
                "SELECT COUNT(*) FROM orders WHERE status NOT IN ('order_confirmed', 'failed_safely')",
            )
            .fetch_one(&r.db().pool)
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap();
        }
        pending == 0
    })
    .await;
    for region in RegionId::ALL {
        while h.region(region).relay_once().await.unwrap() > 0 {}
    }
}

/// Writes the client history file.
pub async fn write_history(path: &std::path::Path, told: &[Told]) {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(history_schema()))
        .execute(&pool)
        .await
        .unwrap();
    for (i, t) in told.iter().enumerate() {
        sqlx::query(
            "INSERT INTO history_arrivals (arrival_id, order_id, customer_id, entry_region, phase, intended_at_us, \
             sent_at_us, finished_at_us, attempts, polls, last_status, outcome, detail, cart) \
             VALUES ($1, $2, 'cust-1', $3, 'hold', $4, $4, $5, 1, 0, $6, $7, NULL, $8)",
        )
        .bind(i as i64)
        .bind(&t.order_id)
        .bind(t.entry.as_str())
        .bind(t.sent_at_us)
        .bind(t.finished_at_us)
        .bind(i64::from(t.status))
        .bind(t.outcome)
        .bind(&t.cart)
        .execute(&pool)
        .await
        .unwrap();
        let answer = match t.outcome {
            "confirmed" => "confirmed",
            "failed" => "failed",
            "rejected" => "rejected",
            _ if t.status == 202 => "pending",
            _ => "error",
        };
        sqlx::query(
            "INSERT INTO history_requests (arrival_id, seq, kind, region, sent_at_us, finished_at_us, http_status, \
             answer, retry_after_ms, order_id) VALUES ($1, 0, 'checkout', $2, $3, $4, $5, $6, NULL, $7)",
        )
        .bind(i as i64)
        .bind(t.entry.as_str())
        .bind(t.sent_at_us)
        .bind(t.finished_at_us)
        .bind(i64::from(t.status))
        .bind(answer)
        .bind(&t.order_id)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
}

/// Stops the system (flushing its logs), writes the history, keeps the stores.
pub async fn finish(h: Harness, told: &[Told]) -> Finished {
    let Harness { system, stores, .. } = h;
    system.shutdown().await.unwrap();
    let dir = TempDir::new("history");
    let history = dir.path().join("history.db");
    write_history(&history, told).await;
    Finished {
        stores,
        history: Some(history),
        journal: None,
        dir,
    }
}

/// A mixed, seeded scenario on a correct system: confirmations, declines, out-of-stock,
/// payments that time out and are repaired, forwarded orders, duplicates.
pub async fn clean_run(stores: TestStores, seed: u64) -> Finished {
    let mut config = target_system::testkit::harness::quiet_config();
    config.seed = seed;
    config.payment.per_try_timeout_ms = 100;
    config.payment.deadline_ms = 300;
    config.repair.void_after_seconds = 0;
    config.stock.insert("sku-3".into(), 4);
    let h = Harness::start(stores, config).await;
    let draws = evidence::seed::Draws::new(seed);
    let skus = ["sku-1", "sku-2", "sku-3", "sku-4", "sku-declined"];
    let mut told = Vec::new();
    for i in 0..30 {
        if i == 20 {
            h.set_faults(json!({"latency_ms": 400})).await;
        }
        if i == 25 {
            h.set_faults(json!({})).await;
        }
        let owner = if draws.chance(0.5) {
            RegionId::A
        } else {
            RegionId::B
        };
        let entry = if draws.chance(0.5) {
            RegionId::A
        } else {
            RegionId::B
        };
        let order = order_owned_by(owner, &format!("s{seed}-{i}"));
        let sku = skus[draws.up_to(skus.len() as u64 - 1) as usize];
        let items = json!([{"sku": sku, "qty": 1 + draws.up_to(2)}]);
        told.push(checkout(&h, entry, &order, items.clone()).await);
        if draws.chance(0.2) {
            told.push(checkout(&h, entry.peer(), &order, items).await);
        }
    }
    drain(&h).await;
    finish(h, &told).await
}

pub fn store_url(finished: &Finished) -> &StoreUrl {
    &finished.stores.url
}
