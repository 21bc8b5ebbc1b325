//! The client history: what every customer was told, written by the load generator (never by
//! the system under test), read by the verifier. One SQLite file, or tables in one
//! PostgreSQL schema.
//!
//! The schema (`migrations/history.sql`):
//! ```sql
#![doc = include_str!("../migrations/history.sql")]
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use sqlx::any::AnyPoolOptions;

use crate::store::{Db, Dialect, PgTarget, mask_password};

/// The history's tables as written (`BIGINT` for 64-bit integers).
const SCHEMA: &str = include_str!("../migrations/history.sql");

/// The statements that create the history's tables, for `dialect`: SQLite gets `INTEGER`
/// keys; PostgreSQL compares text byte-wise (`COLLATE "C"`), as the stores do, so the
/// verifier merges by order id without re-sorting.
pub fn ddl(dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => SCHEMA.replace("BIGINT", "INTEGER"),
        Dialect::Postgres => SCHEMA.replace(" TEXT", " TEXT COLLATE \"C\""),
    }
}

/// Where a client history is.
#[derive(Debug, Clone)]
pub enum HistorySource {
    /// A SQLite file written by the checkout workload.
    Sqlite(PathBuf),
    /// A PostgreSQL database; the tables live in `schema`.
    Postgres { url: String, schema: String },
}

impl HistorySource {
    /// Opens the history for reading; the error says where and why.
    pub async fn open_read_only(&self) -> Result<Db, String> {
        sqlx::any::install_default_drivers();
        let postgres = match self {
            Self::Sqlite(_) => None,
            Self::Postgres { url, schema } => Some(PgTarget {
                url: url.as_str().into(),
                schema: schema.as_str().into(),
            }),
        };
        let init: Option<Arc<str>> = postgres.as_ref().map(|t| t.set_search_path().into());
        let (url, dialect, location) = match self {
            Self::Sqlite(path) => {
                if !path.exists() {
                    return Err(format!("{} does not exist", path.display()));
                }
                (
                    format!("sqlite://{}?mode=ro", path.display()),
                    Dialect::Sqlite,
                    path.display().to_string(),
                )
            }
            Self::Postgres { url, schema } => (
                url.clone(),
                Dialect::Postgres,
                format!("{} (schema {schema})", mask_password(url)),
            ),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .after_connect(move |conn, _| {
                let init = init.clone();
                Box::pin(async move {
                    if let Some(sql) = init {
                        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                            .execute(conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|err| format!("{location}: {err}"))?;
        Ok(Db {
            pool,
            dialect,
            location: location.into(),
            postgres,
        })
    }
}
