//! The handful of run parameters the verifier needs, as the system under test recorded them
//! in its region store (`run_meta`, key `run_params`).
//!
//! These are the system's **claim** about how it ran; the run's own profile is what the run
//! asked for. The record is small on purpose: it holds the bounds the invariants judge with,
//! not the whole configuration. A store without it cannot be judged: reading it is an error
//! that names what is missing, never a default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::store::{Db, StoreError};
use crate::time::now_us;

/// The `run_meta` key the parameters are stored under.
pub const RUN_PARAMS_KEY: &str = "run_params";

/// The parameters the verifier's bounds come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    /// A pending order must be resolved within this age (bounded-pending-age).
    pub max_pending_age_seconds: u64,
    /// How often the repair worker scans (the bound's grace).
    pub repair_scan_interval_ms: u64,
    /// Concurrent provider calls a region may hold (admission-control).
    pub provider_max_in_flight: u32,
    /// Retries allowed per first try (admission-control's retry budget).
    pub retry_budget_ratio: f64,
    /// Free retries per second on top of the ratio.
    pub retry_budget_min_per_sec: f64,
    /// The budget's window.
    pub retry_budget_ttl_seconds: u64,
    /// Units of each sku a region starts with (no-oversell). Empty in records written
    /// before it was kept.
    #[serde(default)]
    pub initial_stock: BTreeMap<String, i64>,
}

/// Why the run parameters could not be read from a store.
#[derive(Debug, thiserror::Error)]
pub enum RunParamsError {
    #[error(
        "store {store} has no run parameters (run_meta key {RUN_PARAMS_KEY:?} is missing): the bounds to judge by are unknown; verify stores written by a reference region (`rig serve`, `rig run`) of this version"
    )]
    Missing { store: String },
    #[error(
        "store {store} has unreadable run parameters (run_meta key {RUN_PARAMS_KEY:?}): {reason}"
    )]
    Unreadable { store: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RunParams {
    /// Every parameter by name, as a profile spells it (`[target]` keys; `stock.<sku>` for
    /// the initial stock), with its value.
    pub fn fields(&self) -> BTreeMap<String, String> {
        let mut fields: BTreeMap<String, String> = [
            (
                "repair.max_pending_age_seconds",
                self.max_pending_age_seconds.to_string(),
            ),
            (
                "repair.scan_interval_ms",
                self.repair_scan_interval_ms.to_string(),
            ),
            (
                "admission.provider_max_in_flight",
                self.provider_max_in_flight.to_string(),
            ),
            ("retry_budget.ratio", self.retry_budget_ratio.to_string()),
            (
                "retry_budget.min_per_sec",
                self.retry_budget_min_per_sec.to_string(),
            ),
            (
                "retry_budget.ttl_seconds",
                self.retry_budget_ttl_seconds.to_string(),
            ),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
        for (sku, units) in &self.initial_stock {
            fields.insert(format!("stock.{sku}"), units.to_string());
        }
        fields
    }

    /// Records the parameters in a region store (replacing an earlier record of the same run).
    pub async fn write(&self, db: &Db) -> Result<(), StoreError> {
        let json = serde_json::to_string(self).map_err(|err| StoreError::Migrate {
            store: db.location.to_string(),
            reason: err.to_string(),
        })?;
        set_meta(db, RUN_PARAMS_KEY, &json).await?;
        Ok(())
    }

    /// Reads the parameters a region store recorded.
    pub async fn read(db: &Db) -> Result<Self, RunParamsError> {
        let row = sqlx::query("SELECT value FROM run_meta WHERE key = $1")
            .bind(RUN_PARAMS_KEY)
            .fetch_optional(&db.pool)
            .await
            .map_err(|err| match err {
                sqlx::Error::Database(e) if e.message().contains("run_meta") => {
                    RunParamsError::Missing {
                        store: db.location.to_string(),
                    }
                }
                other => RunParamsError::Store(other.into()),
            })?;
        let Some(row) = row else {
            return Err(RunParamsError::Missing {
                store: db.location.to_string(),
            });
        };
        let text: String = row.try_get("value").map_err(StoreError::from)?;
        serde_json::from_str(&text).map_err(|err| RunParamsError::Unreadable {
            store: db.location.to_string(),
            reason: err.to_string(),
        })
    }
}

/// Stores one `run_meta` value of a region store (region, parameters, defects).
pub async fn set_meta(db: &Db, key: &str, value: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO run_meta (key, value, updated_at_us) VALUES ($1, $2, $3) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at_us = excluded.updated_at_us",
    )
    .bind(key)
    .bind(value)
    .bind(now_us())
    .execute(&db.pool)
    .await?;
    Ok(())
}
