//! **no-oversell**: per region × sku, the units sold to confirmed orders never exceed the
//! initial stock.
//!
//! The witnesses: each confirmed order's cart as its customer sent it (the client history)
//! and the initial stock the run's profile asked for ([`Sales`], gathered during the merge:
//! an order counts when its customer was told confirmed or its owner's row says so; its
//! owner region is a pure function of its id). The claims: the system's reservations and
//! its `reserved` counters (aggregated in SQL, a few rows per sku), which must agree with
//! each other and with the stock; the units its reservations commit, which must be the
//! units in the confirmed carts of the orders whose rows it holds; its inventory's stock
//! and its recorded initial stock, which must be the profile's.

use std::collections::BTreeMap;

use evidence::Db;
use evidence::reads;
use serde_json::json;
use sqlx::Row;

use super::Context;
use crate::VerifyError;
use crate::model::{CartRead, OrderEvidence, StoreTag};
use crate::report::{Dossier, Verdict};

/// The region name of pooled sales (black-box mode).
const POOLED: &str = "a+b";
/// How many regions' stock a pooled sale draws on.
const POOLED_REGIONS: i64 = 2;

pub const NAME: &str = "no-oversell";
pub const STATEMENT: &str = "per region and sku: units in confirmed customers' carts <= the profile's initial stock; the system's reservations agree";

#[derive(Debug, Default)]
struct Sku {
    stock: i64,
    reserved: i64,
    held: i64,
    committed: i64,
}

/// What customers bought, from the client history: units per (owner region, sku) over the
/// confirmed orders.
#[derive(Debug, Default)]
pub struct Sales {
    /// Units per region, then per sku.
    units: BTreeMap<&'static str, BTreeMap<String, i128>>,
    /// Confirmed orders counted.
    confirmed: u64,
    /// Confirmed orders whose customer sent no cart the history kept.
    without_cart: u64,
    unreadable: u64,
    /// Confirmed orders whose cart had lines without a sku or qty (skipped).
    partial: u64,
    /// The same units per store that holds the order's row: what that store's reservations
    /// must have committed.
    by_store: BTreeMap<StoreTag, BTreeMap<String, i128>>,
}

/// Adds `order`'s cart to units per sku.
fn add(skus: &mut BTreeMap<String, i128>, order: &OrderEvidence) {
    for (sku, qty) in &order.cart {
        match skus.get_mut(sku.as_str()) {
            Some(units) => *units += i128::from(*qty),
            None => {
                skus.insert(sku.to_string(), i128::from(*qty));
            }
        }
    }
}

impl Sales {
    /// Counts `order`'s cart if it was confirmed. `single_region` names the one region of a
    /// single-region deployment (it owns every order).
    pub fn observe(
        &mut self,
        order: &OrderEvidence,
        single_region: Option<&'static str>,
        pooled: bool,
    ) {
        let told_confirmed = order.told_confirmed();
        let recorded_confirmed = order
            .owner_row()
            .is_some_and(|o| o.status == "order_confirmed");
        if !(told_confirmed || recorded_confirmed) {
            return;
        }
        self.confirmed += 1;
        match order.cart_read {
            CartRead::Missing => {
                self.without_cart += 1;
                return;
            }
            CartRead::Unreadable => {
                self.unreadable += 1;
                return;
            }
            CartRead::Partial => self.partial += 1,
            CartRead::Read => {}
        }
        let region = match single_region {
            _ if pooled => POOLED,
            Some(region) => region,
            None => evidence::owner_of(&order.order_id).as_str(),
        };
        add(self.units.entry(region).or_default(), order);
        if let Some(row) = order.owner_row() {
            add(self.by_store.entry(row.store).or_default(), order);
        }
    }

    /// Judges the carts against the initial stock the bounds hold, and the system's
    /// reservations (`claims`) against the carts, into `verdict`.
    pub fn judge(self, ctx: &Context, claims: &Reservations, verdict: &mut Verdict) {
        claims.check_stock(ctx, verdict);
        if !ctx.has_history {
            verdict
                .summary
                .push_str("; customers' carts not judged (no client history)");
            verdict.unknown_unless_failed(
                "no client history: what customers bought was not witnessed, and the system's reservations and counters are only claims".to_string(),
            );
            return;
        }
        let mut sold: i128 = 0;
        for (region, sku, units) in self
            .units
            .iter()
            .flat_map(|(region, skus)| skus.iter().map(move |(sku, units)| (*region, sku, units)))
        {
            sold += units;
            verdict.checked += 1;
            let Some(stock) = ctx.params.initial_stock.get(sku) else {
                continue;
            };
            // Pooled (black-box: who owns an order is the system's business): every region's
            // stock together.
            let stock = if region == POOLED {
                stock * POOLED_REGIONS
            } else {
                *stock
            };
            if *units > i128::from(stock) {
                verdict.violate(ctx.max_dossiers, || Dossier {
                    order_id: None,
                    narrative: format!(
                        "customers of region {region} were sold {units} of sku {sku} (orders confirmed to them or in the records), but the initial stock is {stock}"
                    ),
                    rows: json!({"region": region, "sku": sku, "sold_to_customers": units.to_string(), "initial_stock": stock}),
                    fault_windows: Vec::new(),
                    timeline: None,
                });
            }
        }
        if self.without_cart + self.unreadable + self.partial == 0 {
            self.cross_check(ctx, claims, verdict);
        }
        verdict.summary.push_str(&format!(
            "; customers' carts: {sold} units in {} confirmed orders ({})",
            self.confirmed,
            ctx.bounds_source()
        ));
        if self.without_cart + self.unreadable > 0 {
            let unseen = format!(
                "{} confirmed orders without a readable cart in the client history",
                self.without_cart + self.unreadable
            );
            verdict.summary.push_str(&format!("; {unseen}"));
            verdict.unknown_unless_failed(format!(
                "{unseen}: their units were not counted against the stock"
            ));
        }
    }
}

impl Sales {
    /// The claims against the witnesses, per store x sku: the units a region's reservations
    /// commit must be the units in the carts of the confirmed orders whose row it holds. A
    /// lost or invented sale with the counters kept consistent shows here.
    fn cross_check(&self, ctx: &Context, claims: &Reservations, verdict: &mut Verdict) {
        let none = BTreeMap::new();
        for (store, skus) in &claims.committed {
            let bought = self.by_store.get(store).unwrap_or(&none);
            let names: std::collections::BTreeSet<&String> =
                skus.keys().chain(bought.keys()).collect();
            for sku in names {
                let committed = skus.get(sku).map_or(0, |s| s.committed);
                let carts = bought.get(sku).copied().unwrap_or(0);
                if i128::from(committed) != carts {
                    verdict.violate(ctx.max_dossiers, || Dossier {
                        order_id: None,
                        narrative: format!(
                            "{store}'s reservations commit {committed} units of sku {sku}, but the confirmed customers' carts of its orders hold {carts}"
                        ),
                        rows: json!({"store": store, "sku": sku, "committed_reservations": committed, "units_in_confirmed_carts": carts.to_string()}),
                        fault_windows: Vec::new(),
                        timeline: None,
                    });
                }
            }
        }
    }
}

impl Reservations {
    /// Each region's inventory holds the stock the run's profile asked for (when the bounds
    /// are the profile's).
    fn check_stock(&self, ctx: &Context, verdict: &mut Verdict) {
        if !ctx.bounds_from_profile {
            return;
        }
        for (store, skus) in &self.committed {
            for (sku, claim) in skus {
                let Some(asked) = ctx.params.initial_stock.get(sku) else {
                    continue;
                };
                if claim.stock != *asked {
                    verdict.violate(ctx.max_dossiers, || Dossier {
                        order_id: None,
                        narrative: format!(
                            "{store}'s inventory holds a stock of {} for sku {sku}; the run asked for {asked}",
                            claim.stock
                        ),
                        rows: json!({"store": store, "sku": sku, "inventory_stock": claim.stock, "asked": asked}),
                        fault_windows: Vec::new(),
                        timeline: None,
                    });
                }
            }
        }
    }
}

/// What each region's inventory and reservations claim, per sku, for the cross-check
/// against the carts ([`Sales::judge`]).
#[derive(Debug, Default)]
pub struct Reservations {
    committed: BTreeMap<StoreTag, BTreeMap<String, Sku>>,
}

pub async fn check(
    regions: &[(StoreTag, Db)],
    ctx: &Context,
) -> Result<(Verdict, Reservations), VerifyError> {
    let mut verdict = Verdict::new(NAME, STATEMENT);
    let mut claims = Reservations::default();
    ctx.check_claims(|name| name.starts_with("stock."), &mut verdict);
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
                    timeline: None,
                });
            }
        }
        claims.committed.insert(*store, skus);
    }
    verdict.summary = format!("{} region x sku lines; {sold} units sold", verdict.checked);
    Ok((verdict, claims))
}
