//! A region's stock: inventory lines seeded from the catalog, and the reservations an order
//! holds until it is sold (committed) or given back (released). Taking stock is part of
//! saving the intent (`orders::save_intent`), in one conditional update.

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::clock::now_us;
use evidence::store::Db;

/// Marks the order's held reservations committed (the stock is sold).
pub async fn commit_reservations(
    conn: &mut AnyConnection,
    order_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE reservations SET status = 'committed', updated_at_us = $2 WHERE order_id = $1 AND status = 'held'",
    )
    .bind(order_id)
    .bind(now_us())
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives the order's held stock back and marks its reservations released.
pub async fn release_reservations(
    conn: &mut AnyConnection,
    order_id: &str,
) -> Result<(), sqlx::Error> {
    let held = sqlx::query(
        "SELECT sku, qty FROM reservations WHERE order_id = $1 AND status = 'held' ORDER BY sku",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?;
    for row in held {
        let sku: String = row.try_get("sku")?;
        let qty: i64 = row.try_get("qty")?;
        sqlx::query("UPDATE inventory SET reserved = reserved - $1 WHERE sku = $2")
            .bind(qty)
            .bind(&sku)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(
        "UPDATE reservations SET status = 'released', updated_at_us = $2 WHERE order_id = $1 AND status = 'held'",
    )
    .bind(order_id)
    .bind(now_us())
    .execute(conn)
    .await?;
    Ok(())
}

/// One inventory line for `/admin/state`.
#[derive(Debug, Clone, Serialize)]
pub struct StockLine {
    pub sku: String,
    pub price_cents: i64,
    pub stock: i64,
    pub reserved: i64,
}

/// Seeds inventory from the catalog; existing rows keep their state (a restart resumes).
pub async fn seed_inventory(db: &Db, lines: &[(String, i64, i64)]) -> Result<(), sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    for (sku, price_cents, stock) in lines {
        sqlx::query(
            "INSERT INTO inventory (sku, price_cents, stock, reserved) VALUES ($1, $2, $3, 0) \
             ON CONFLICT (sku) DO NOTHING",
        )
        .bind(sku)
        .bind(price_cents)
        .bind(stock)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

pub async fn inventory(db: &Db) -> Result<Vec<StockLine>, sqlx::Error> {
    let rows = sqlx::query("SELECT sku, price_cents, stock, reserved FROM inventory ORDER BY sku")
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(StockLine {
                sku: row.try_get("sku")?,
                price_cents: row.try_get("price_cents")?,
                stock: row.try_get("stock")?,
                reserved: row.try_get("reserved")?,
            })
        })
        .collect()
}
