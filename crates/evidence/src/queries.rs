//! Named queries over a region store for the readers outside the system (the run's drain,
//! its report series) and the region's own backlog gauges: the SQL lives here, beside the
//! schema it reads, not in the callers.

use std::sync::LazyLock;

use sqlx::Row;

use crate::ids::RegionId;
use crate::order_state::OrderState;
use crate::store::{Access, Db, StoreError, StoreName, StoreUrl};

/// Work a region still has open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Orders not in a terminal state.
    pub open_orders: i64,
    /// When the oldest open order was created (µs), if any.
    pub oldest_open_at_us: Option<i64>,
    /// Outbox events not yet published.
    pub unpublished_events: i64,
    /// When the oldest unpublished event was created (µs), if any.
    pub oldest_unpublished_at_us: Option<i64>,
}

/// Open orders and unpublished events (the index on (status, updated_at_us) and the partial
/// outbox index keep it cheap enough to sample every second).
pub async fn backlog(db: &Db) -> Result<Backlog, sqlx::Error> {
    // The state names are the enum's own constants, never input.
    static OPEN_ORDERS: LazyLock<String> = LazyLock::new(|| {
        let open = OrderState::ALL
            .iter()
            .filter(|s| !s.is_terminal())
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        format!("SELECT COUNT(*), MIN(created_at_us) FROM orders WHERE status IN ({open})")
    });
    let row = sqlx::query(sqlx::AssertSqlSafe(OPEN_ORDERS.as_str()))
        .fetch_one(&db.pool)
        .await?;
    let (open_orders, oldest_open_at_us) = (row.try_get(0)?, row.try_get(1)?);
    let row = sqlx::query(
        "SELECT COUNT(*), MIN(created_at_us) FROM outbox WHERE published_at_us IS NULL",
    )
    .fetch_one(&db.pool)
    .await?;
    Ok(Backlog {
        open_orders,
        oldest_open_at_us,
        unpublished_events: row.try_get(0)?,
        oldest_unpublished_at_us: row.try_get(1)?,
    })
}

/// Checkout intents a gateway holds for an owner it could not reach (the forward outbox).
pub async fn held_intents(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) FROM forward_outbox WHERE state = 'held'")
        .fetch_one(&db.pool)
        .await?
        .try_get(0)
}

/// One transition into or out of the payment states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentTransition {
    pub at_us: i64,
    pub from_state: Option<String>,
    pub to_state: String,
}

/// Every transition into a payment or final state, unordered (the report's pending series).
pub async fn payment_transitions(db: &Db) -> Result<Vec<PaymentTransition>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT at_us, from_state, to_state FROM order_transitions \
         WHERE to_state IN ('payment_authorizing', 'payment_pending', 'needs_reconciliation', 'order_confirmed', 'failed_safely')",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(PaymentTransition {
                at_us: row.try_get("at_us")?,
                from_state: row.try_get("from_state")?,
                to_state: row.try_get("to_state")?,
            })
        })
        .collect()
}

/// When each provider call of the region started (µs), unordered.
pub async fn attempt_starts(db: &Db) -> Result<Vec<i64>, sqlx::Error> {
    let rows = sqlx::query("SELECT started_at_us FROM payment_attempts")
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|row| row.try_get("started_at_us"))
        .collect()
}

/// The region's charge calls: (first tries, retries).
pub async fn charge_tries(db: &Db) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(CASE WHEN is_retry = 0 THEN 1 ELSE 0 END), 0) AS BIGINT) AS first, \
         CAST(COALESCE(SUM(is_retry), 0) AS BIGINT) AS retries FROM payment_attempts WHERE op = 'charge'",
    )
    .fetch_one(&db.pool)
    .await?;
    Ok((row.try_get("first")?, row.try_get("retries")?))
}

/// What the stores at `store` already hold, one line per store that holds anything (e.g.
/// `region_a: 120 orders`); empty when they are new or missing. A store that cannot be
/// opened is an error naming it.
pub async fn records_held(store: &StoreUrl) -> Result<Vec<String>, StoreError> {
    let mut held = Vec::new();
    let names = [StoreName::Provider, StoreName::Sink]
        .into_iter()
        .chain(RegionId::ALL.into_iter().map(StoreName::Region));
    for name in names {
        let db = match Db::open_with(store, name, Access::ReadOnly).await {
            Ok(db) => db,
            Err(StoreError::Missing { .. }) => continue,
            Err(err) => return Err(err),
        };
        let (table, what) = match name {
            StoreName::Provider => ("provider_requests", "provider requests"),
            StoreName::Region(_) => ("orders", "orders"),
            StoreName::Sink => ("sink_deliveries", "event deliveries"),
        };
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let count: Result<i64, sqlx::Error> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&db.pool)
            .await
            .and_then(|row| row.try_get(0));
        db.close().await;
        match count {
            Ok(0) => {}
            Ok(n) => held.push(format!("{}: {n} {what}", name.as_str())),
            // A schema without the table holds no records of ours.
            Err(sqlx::Error::Database(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(held)
}
