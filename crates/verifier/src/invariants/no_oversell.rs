//! **no-oversell**: per region × sku, stock sold to confirmed orders never exceeds the initial
//! stock, and the inventory's `reserved` counter equals what reservations hold and sold.
//! Aggregated in SQL (a few rows per sku), then checked here.

use std::collections::BTreeMap;

use evidence::Db;
use evidence::reads;
use serde_json::json;
use sqlx::Row;

use super::Context;
use crate::VerifyError;
use crate::model::StoreTag;
use crate::report::{Dossier, Verdict};

pub const NAME: &str = "no-oversell";
pub const STATEMENT: &str =
    "per region and sku: stock sold to confirmed orders <= initial stock; reserved = held + sold";

#[derive(Debug, Default)]
struct Sku {
    stock: i64,
    reserved: i64,
    held: i64,
    committed: i64,
}

pub async fn check(regions: &[(StoreTag, Db)], ctx: &Context) -> Result<Verdict, VerifyError> {
    let mut verdict = Verdict::new(NAME, STATEMENT);
    let mut sold: i128 = 0;
    for (store, db) in regions {
        let mut skus: BTreeMap<String, Sku> = BTreeMap::new();
        for row in sqlx::query(reads::INVENTORY_LINES)
            .fetch_all(&db.pool)
            .await?
        {
            let sku = skus.entry(row.try_get("sku")?).or_default();
            sku.stock = row.try_get("stock")?;
            sku.reserved = row.try_get("reserved")?;
        }
        let totals = sqlx::query(reads::RESERVATION_TOTALS)
            .fetch_all(&db.pool)
            .await?;
        for row in totals {
            let sku = skus.entry(row.try_get("sku")?).or_default();
            let qty: i64 = row.try_get("qty")?;
            match row.try_get::<String, _>("status")?.as_str() {
                "held" => sku.held += qty,
                "committed" => sku.committed += qty,
                _ => {}
            }
        }
        for (name, sku) in &skus {
            verdict.checked += 1;
            sold += i128::from(sku.committed);
            let problem = if sku.committed > sku.stock {
                Some(format!(
                    "region {store} sold {} of sku {name} but had {}",
                    sku.committed, sku.stock
                ))
            } else if sku.reserved != sku.held + sku.committed {
                Some(format!(
                    "region {store} sku {name}: reserved counter {} but reservations hold {} and sold {}",
                    sku.reserved, sku.held, sku.committed
                ))
            } else if sku.reserved > sku.stock || sku.reserved < 0 {
                Some(format!(
                    "region {store} sku {name}: reserved {} of stock {}",
                    sku.reserved, sku.stock
                ))
            } else {
                None
            };
            if let Some(narrative) = problem {
                // The orders that pushed it over: those sold after the stock ran out.
                let over = sqlx::query(sqlx::AssertSqlSafe(reads::sales_past_stock(db)))
                    .bind(name)
                    .bind(sku.stock)
                    .fetch_all(&db.pool)
                    .await?;
                let pushed_over = over
                    .iter()
                    .map(|row| row.try_get::<String, _>("order_id"))
                    .collect::<Result<Vec<_>, _>>()?;
                let order_id = pushed_over.first().cloned();
                verdict.violate(ctx.max_dossiers, || Dossier {
                    order_id,
                    narrative,
                    rows: json!({
                        "region": store,
                        "sku": name,
                        "stock": sku.stock,
                        "reserved": sku.reserved,
                        "held": sku.held,
                        "sold": sku.committed,
                        "orders_past_the_stock": pushed_over,
                    }),
                    fault_windows: Vec::new(),
                });
            }
        }
    }
    verdict.summary = format!("{} region x sku lines; {sold} units sold", verdict.checked);
    Ok(verdict)
}
