//! Durable stores through sqlx: SQLite (embedded default, WAL) and PostgreSQL, one code path.
//!
//! A store URL names where every store lives (DESIGN §3):
//! - `sqlite://DIR`: one database file per store in `DIR` (`provider.db`, `region_a.db`,
//!   `region_b.db`, `sink.db`), created if missing;
//! - `postgres://user@host:port/db`: one schema per store (`provider`, `region_a`,
//!   `region_b`, `sink`), optionally prefixed by a namespace (`<ns>_provider`, ...) so several runs or
//!   tests can share one database.
//!
//! Queries are runtime strings written once for both dialects (`$N` placeholders, `ON
//! CONFLICT`, `RETURNING`, `CAST(... AS BIGINT)`); only the migrations differ per dialect.
//! Building never needs a database.

mod url;

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool};

pub use url::{StoreUrl, mask_password};

use crate::ids::RegionId;

/// The migrations of each store kind, per dialect. The highest version among them is the
/// schema version this build reads and writes; a store with a higher one is refused.
static SQLITE_PROVIDER: Migrator = sqlx::migrate!("migrations/sqlite/provider");
static SQLITE_REGION: Migrator = sqlx::migrate!("migrations/sqlite/region");
static POSTGRES_PROVIDER: Migrator = sqlx::migrate!("migrations/postgres/provider");
static POSTGRES_REGION: Migrator = sqlx::migrate!("migrations/postgres/region");
static SQLITE_SINK: Migrator = sqlx::migrate!("migrations/sqlite/sink");
static POSTGRES_SINK: Migrator = sqlx::migrate!("migrations/postgres/sink");

/// Why a store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "store URL {url:?} is not usable: {reason} (use sqlite://DIR or postgres://user@host:port/db)"
    )]
    BadUrl { url: String, reason: String },
    #[error("store {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("store {store} could not be migrated: {reason}")]
    Migrate { store: String, reason: String },
    #[error("store {url} has no records (nothing was ever written there)")]
    Missing { url: String },
    #[error(
        "store {store} was written by a newer version of the rig (schema version {found}; this build knows up to {known}): use the rig version that wrote it, or a newer one"
    )]
    NewerSchema {
        store: String,
        found: i64,
        known: i64,
    },
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// Which SQL dialect a store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Which store: the provider's ledger, a region's records, or the event sink's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreName {
    Provider,
    Region(RegionId),
    /// The event sink's delivery log (the rig's, like the provider's ledger).
    Sink,
}

impl StoreName {
    /// File stem (SQLite) or schema name (PostgreSQL).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Region(RegionId::A) => "region_a",
            Self::Region(RegionId::B) => "region_b",
            Self::Sink => "sink",
        }
    }
}

/// One open store: a connection pool plus its dialect. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub dialect: Dialect,
    /// Where it lives, password masked (for messages).
    pub location: Arc<str>,
    /// For a PostgreSQL store (always set for one), how to open a plain connection to it
    /// (the pool's connections are driver-neutral; bulk readers need PostgreSQL's own, for
    /// `COPY`). `None` for SQLite.
    pub postgres: Option<PgTarget>,
}

/// A PostgreSQL store's server URL and schema.
#[derive(Clone)]
pub struct PgTarget {
    pub url: Arc<str>,
    pub schema: Arc<str>,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("url", &mask_password(&self.url))
            .field("schema", &self.schema)
            .finish()
    }
}

impl PgTarget {
    /// The statement every connection to the store runs first.
    pub fn set_search_path(&self) -> String {
        format!("SET search_path TO \"{}\"", self.schema)
    }

    /// A plain PostgreSQL connection with `search_path` set to the store's schema.
    pub async fn connect(&self) -> Result<sqlx::PgConnection, sqlx::Error> {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(self.set_search_path()))
            .execute(&mut conn)
            .await?;
        Ok(conn)
    }
}

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Create if missing, migrate, one SQLite writer connection (the reference system).
    ReadWrite,
    /// Existing stores only, no migrations, several connections for concurrent cursors
    /// (the verifier, which reads records and never writes them).
    ReadOnly,
}

impl Db {
    /// Opens (creating if needed) and migrates one store.
    pub async fn open(url: &StoreUrl, name: StoreName) -> Result<Self, StoreError> {
        Self::open_with(url, name, Access::ReadWrite).await
    }

    /// Opens one store for reading or for writing.
    pub async fn open_with(
        url: &StoreUrl,
        name: StoreName,
        access: Access,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let location: Arc<str> = url.describe(name).into();
        let unreachable = |err: sqlx::Error| StoreError::Unreachable {
            url: location.to_string(),
            reason: err.to_string(),
        };
        let read_only = access == Access::ReadOnly;
        let (pool, dialect, postgres) = match url {
            StoreUrl::Sqlite { dir } => {
                let file = dir.join(format!("{}.db", name.as_str()));
                if read_only && !file.exists() {
                    return Err(StoreError::Missing {
                        url: location.to_string(),
                    });
                }
                std::fs::create_dir_all(dir).map_err(|err| StoreError::Unreachable {
                    url: location.to_string(),
                    reason: format!("cannot create directory {}: {err}", dir.display()),
                })?;
                let (mode, connections, pragmas) = if read_only {
                    ("ro", 8, "PRAGMA busy_timeout = 5000;")
                } else {
                    // One connection: SQLite has one writer, and queueing writers in the pool
                    // is far faster than letting them spin on SQLITE_BUSY.
                    (
                        "rwc",
                        1,
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                    )
                };
                let conn_url = format!("sqlite://{}?mode={mode}", file.display());
                let pool = AnyPoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(move |conn, _meta| {
                        Box::pin(async move {
                            sqlx::raw_sql(pragmas).execute(conn).await?;
                            Ok(())
                        })
                    })
                    .connect(&conn_url)
                    .await
                    .map_err(unreachable)?;
                (pool, Dialect::Sqlite, None)
            }
            StoreUrl::Postgres { url: pg_url, .. } => {
                let schema = url
                    .schema(name)
                    .unwrap_or_else(|| name.as_str().to_string());
                // One plain connection first: its error names the real cause (refused,
                // auth, unknown database) where a pool would only report a timeout.
                let mut admin = tokio::time::timeout(
                    Duration::from_secs(10),
                    <AnyConnection as sqlx::Connection>::connect(pg_url),
                )
                .await
                .map_err(|_| StoreError::Unreachable {
                    url: location.to_string(),
                    reason: "no connection within 10 s".into(),
                })?
                .map_err(unreachable)?;
                if read_only {
                    let exists = sqlx::query(
                        "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
                    )
                    .bind(&schema)
                    .fetch_optional(&mut admin)
                    .await
                    .map_err(unreachable)?;
                    if exists.is_none() {
                        let _ = sqlx::Connection::close(admin).await;
                        return Err(StoreError::Missing {
                            url: location.to_string(),
                        });
                    }
                } else {
                    let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
                    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
                        .execute(&mut admin)
                        .await
                        .map_err(unreachable)?;
                }
                let _ = sqlx::Connection::close(admin).await;
                let target = PgTarget {
                    url: pg_url.as_str().into(),
                    schema: schema.as_str().into(),
                };
                let set_path: Arc<str> = target.set_search_path().into();
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .min_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(move |conn, _meta| {
                        let set_path = set_path.clone();
                        Box::pin(async move {
                            sqlx::raw_sql(sqlx::AssertSqlSafe(set_path.to_string()))
                                .execute(conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect(pg_url)
                    .await
                    .map_err(unreachable)?;
                (pool, Dialect::Postgres, Some(target))
            }
        };
        let migrator = match (dialect, name) {
            (Dialect::Sqlite, StoreName::Provider) => &SQLITE_PROVIDER,
            (Dialect::Sqlite, StoreName::Region(_)) => &SQLITE_REGION,
            (Dialect::Postgres, StoreName::Provider) => &POSTGRES_PROVIDER,
            (Dialect::Postgres, StoreName::Region(_)) => &POSTGRES_REGION,
            (Dialect::Sqlite, StoreName::Sink) => &SQLITE_SINK,
            (Dialect::Postgres, StoreName::Sink) => &POSTGRES_SINK,
        };
        // A store written by a newer build may hold columns and records this one would
        // misread: refuse it by name before reading or migrating anything.
        let known = known_version(migrator);
        if let Some(found) = applied_version(&pool).await?
            && found > known
        {
            pool.close().await;
            return Err(StoreError::NewerSchema {
                store: location.to_string(),
                found,
                known,
            });
        }
        if !read_only {
            migrator
                .run(&pool)
                .await
                .map_err(|err| StoreError::Migrate {
                    store: location.to_string(),
                    reason: err.to_string(),
                })?;
        }
        Ok(Self {
            pool,
            dialect,
            location,
            postgres,
        })
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn known_version(migrator: &Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The highest migration applied to a store, `None` when it has no migration table.
/// A connection of its own for one long read (a stream of pages or a walk), taken out of
/// the pool and closed when dropped, so its SQLite page cache holds that read's pages from
/// one page query to the next. Measured on a million-order store: with each page query on
/// whichever pooled connection came free, 4.45 M page reads (pread) for the files' 0.4 M
/// pages; holding a pooled connection, still 2.9 M (the provider log's retry probe re-read
/// its index root for every call); on detached connections, 0.40 M, and the verify went
/// from 14-16 s to 9.4-9.9 s.
pub async fn reader(pool: &AnyPool) -> Result<AnyConnection, sqlx::Error> {
    Ok(pool.acquire().await?.detach())
}

async fn applied_version(pool: &AnyPool) -> Result<Option<i64>, StoreError> {
    // Reading the table directly (not the migrator's own check) so that a newer store is
    // refused with a clear error rather than sqlx's "previously applied but missing".
    match sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(pool)
        .await
    {
        Ok(version) => Ok(version),
        Err(sqlx::Error::Database(err)) if is_missing_table(err.message()) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn is_missing_table(message: &str) -> bool {
    message.contains("no such table") || message.contains("does not exist")
}
