//! Test helpers: the harness lives in `target_system::testkit`; these are the checks that
//! read provider calls back from a region's records.
#![allow(dead_code)]

pub use target_system::testkit::harness::*;

/// Runs `$scenario(stores)` against SQLite, and against PostgreSQL when configured.
#[macro_export]
macro_rules! both_stores {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(target_system::testkit::sqlite(stringify!($scenario))).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(stores) = target_system::testkit::postgres(stringify!($scenario)) {
                    super::$scenario(stores).await;
                }
            }
        }
    };
}

/// One provider call as recorded in a region's `payment_attempts`.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub order_id: String,
    pub op: String,
    pub is_retry: bool,
    pub started_at_us: i64,
    pub finished_at_us: i64,
    pub outcome: String,
}

pub async fn attempts(db: &evidence::Db) -> Vec<Attempt> {
    use sqlx::Row;
    sqlx::query(
        "SELECT order_id, op, is_retry, started_at_us, finished_at_us, outcome FROM payment_attempts ORDER BY started_at_us",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| Attempt {
        order_id: r.try_get("order_id").unwrap(),
        op: r.try_get("op").unwrap(),
        is_retry: r.try_get::<i64, _>("is_retry").unwrap() == 1,
        started_at_us: r.try_get("started_at_us").unwrap(),
        finished_at_us: r.try_get("finished_at_us").unwrap(),
        outcome: r.try_get("outcome").unwrap(),
    })
    .collect()
}

/// Most calls in flight at once (sweep line; an end before a start at the same instant).
pub fn max_concurrency(attempts: &[Attempt]) -> usize {
    let mut events: Vec<(i64, i32)> = attempts
        .iter()
        .flat_map(|a| [(a.started_at_us, 1), (a.finished_at_us, -1)])
        .collect();
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        max = max.max(now);
    }
    max as usize
}

/// The first window (ending at a retry) where charge retries exceed
/// `ratio * first tries + min_per_sec * ttl`, as (retries, first tries).
pub fn retry_budget_violation(
    attempts: &[Attempt],
    ratio: f64,
    min_per_sec: f64,
    ttl_seconds: u64,
) -> Option<(usize, usize)> {
    let charges: Vec<&Attempt> = attempts.iter().filter(|a| a.op == "charge").collect();
    let ttl_us = i64::try_from(ttl_seconds).unwrap() * 1_000_000;
    for end in charges.iter().filter(|a| a.is_retry) {
        let inside = charges.iter().filter(|a| {
            a.started_at_us > end.started_at_us - ttl_us && a.started_at_us <= end.started_at_us
        });
        let (retries, first): (Vec<&&Attempt>, Vec<&&Attempt>) = inside.partition(|a| a.is_retry);
        if retries.len() as f64 > ratio * first.len() as f64 + min_per_sec * ttl_seconds as f64 {
            return Some((retries.len(), first.len()));
        }
    }
    None
}
