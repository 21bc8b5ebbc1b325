//! Where the evidence lives and how it is read: the stores (read-only), the client history,
//! the chaos journal, and the run's parameters as the regions recorded them.

use std::path::PathBuf;

use sqlx::Row;
use target_system::store::Dialect;
use target_system::{Access, Db, RegionId, StoreError, StoreName, StoreUrl, TargetConfig};

use crate::VerifyError;
use crate::merge::{Keyed, Sorted};
use crate::model::{ArrivalRow, ChargeRow, EffectRow, EventRow, OrderRow, StoreTag, TransitionRow};

/// Where the client history is.
#[derive(Debug, Clone)]
pub enum HistorySource {
    /// A SQLite file written by the checkout workload.
    Sqlite(PathBuf),
    /// A PostgreSQL database; the tables live in `schema`.
    Postgres { url: String, schema: String },
}

/// The evidence to verify.
#[derive(Debug, Clone)]
pub struct Sources {
    pub store: StoreUrl,
    pub history: Option<HistorySource>,
    pub journal: Option<PathBuf>,
}

/// The opened stores.
#[derive(Debug)]
pub struct Stores {
    pub provider: Db,
    /// The regions that have records (a single-region deployment has one).
    pub regions: Vec<(StoreTag, Db)>,
    pub history: Option<Db>,
    /// The parameters the regions ran with (from `run_meta`).
    pub config: TargetConfig,
}

fn tag(region: RegionId) -> StoreTag {
    match region {
        RegionId::A => "region_a",
        RegionId::B => "region_b",
    }
}

impl Stores {
    /// Opens every store read-only. A missing provider store, or no region store at all,
    /// means there is nothing to verify.
    pub async fn open(sources: &Sources) -> Result<Self, VerifyError> {
        let provider = Db::open_with(&sources.store, StoreName::Provider, Access::ReadOnly).await?;
        let mut regions = Vec::new();
        for region in RegionId::ALL {
            match Db::open_with(&sources.store, StoreName::Region(region), Access::ReadOnly).await {
                Ok(db) => regions.push((tag(region), db)),
                Err(StoreError::Missing { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        if regions.is_empty() {
            return Err(VerifyError::NoRegions {
                store: sources.store.to_string(),
            });
        }
        let config = read_config(&regions[0].1).await?;
        let history = match &sources.history {
            None => None,
            Some(source) => Some(open_history(source).await?),
        };
        Ok(Self {
            provider,
            regions,
            history,
            config,
        })
    }
}

async fn read_config(db: &Db) -> Result<TargetConfig, VerifyError> {
    let row = sqlx::query("SELECT value FROM run_meta WHERE key = 'target_config'")
        .fetch_optional(&db.pool)
        .await?;
    let Some(row) = row else {
        return Ok(TargetConfig::default());
    };
    let text: String = row.try_get("value")?;
    serde_json::from_str(&text).map_err(|err| VerifyError::Read {
        what: "run_meta.target_config",
        reason: err.to_string(),
    })
}

async fn open_history(source: &HistorySource) -> Result<Db, VerifyError> {
    sqlx::any::install_default_drivers();
    let (url, dialect, location, init) = match source {
        HistorySource::Sqlite(path) => {
            if !path.exists() {
                return Err(VerifyError::Read {
                    what: "client history",
                    reason: format!("{} does not exist", path.display()),
                });
            }
            (
                format!("sqlite://{}?mode=ro", path.display()),
                Dialect::Sqlite,
                path.display().to_string(),
                None,
            )
        }
        HistorySource::Postgres { url, schema } => (
            url.clone(),
            Dialect::Postgres,
            format!(
                "{} (schema {schema})",
                target_system::store::mask_password(url)
            ),
            Some(format!("SET search_path TO \"{schema}\"")),
        ),
    };
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .after_connect(move |conn, _| {
            let init = init.clone();
            Box::pin(async move {
                if let Some(sql) = init {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .map_err(|err| VerifyError::Read {
            what: "client history",
            reason: format!("{location}: {err}"),
        })?;
    Ok(Db {
        pool,
        dialect,
        location: location.into(),
    })
}

/// `ORDER BY` a text column byte-wise in either dialect.
pub fn by(db: &Db, columns: &str) -> String {
    match db.dialect {
        Dialect::Sqlite => columns.to_string(),
        Dialect::Postgres => columns
            .split(',')
            .map(|c| {
                let c = c.trim();
                if c == "order_id" || c == "event_id" || c.ends_with(".order_id") {
                    format!("{c} COLLATE \"C\"")
                } else {
                    c.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

impl Keyed for OrderRow {
    fn key(&self) -> &str {
        &self.order_id
    }
}
impl Keyed for TransitionRow {
    fn key(&self) -> &str {
        &self.order_id
    }
}
impl Keyed for EventRow {
    fn key(&self) -> &str {
        &self.order_id
    }
}
impl Keyed for EffectRow {
    fn key(&self) -> &str {
        &self.order_id
    }
}
impl Keyed for ChargeRow {
    fn key(&self) -> &str {
        &self.order_id
    }
}
impl Keyed for ArrivalRow {
    fn key(&self) -> &str {
        &self.order_id
    }
}

/// Rows per page: enough to amortise a query, small enough to keep memory flat. SQLite
/// builds a page in-process, where large strings cost allocator time; PostgreSQL pays a
/// round trip and a sort per page, so it gets larger ones.
fn page_rows(db: &Db) -> usize {
    match db.dialect {
        Dialect::Sqlite => 4_000,
        Dialect::Postgres => 8_000,
    }
}

/// One page query: a JSON array of `item` over at most [`page_rows`] rows of `table` (aliased
/// `o`) whose order id is greater than `$1`, sorted by order id then `then`. Plain keyset
/// paging on the `order_id` index: no sort, no scan of what was already read.
fn page(db: &Db, item: &str, table: &str, then: &str) -> String {
    let order = if then.is_empty() {
        String::new()
    } else {
        format!(", {then}")
    };
    let rows = page_rows(db);
    // Only the columns the item uses: copying whole rows (order bodies, event payloads)
    // into the subquery costs more than reading them.
    let mut columns: Vec<&str> = item
        .split("o.")
        .skip(1)
        .filter_map(|rest| {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (end > 0).then(|| &rest[..end])
        })
        .chain(std::iter::once("order_id"))
        .chain((!then.is_empty()).then_some(then))
        .collect();
    columns.sort_unstable();
    columns.dedup();
    let columns = columns.join(", ");
    match db.dialect {
        Dialect::Sqlite => format!(
            "SELECT json_group_array({item}) FROM \
             (SELECT {columns} FROM {table} WHERE order_id > $1 ORDER BY order_id{order} LIMIT {rows}) o"
        ),
        Dialect::Postgres => format!(
            "SELECT json_agg({item} ORDER BY o.order_id COLLATE \"C\"{})::text FROM \
             (SELECT {columns} FROM {table} WHERE order_id COLLATE \"C\" > $1 ORDER BY order_id COLLATE \"C\"{order} LIMIT {rows}) o",
            if then.is_empty() {
                String::new()
            } else {
                format!(", o.{then}")
            }
        ),
    }
}

fn array(db: &Db, columns: &str) -> String {
    match db.dialect {
        Dialect::Sqlite => format!("json_array({columns})"),
        Dialect::Postgres => format!("json_build_array({columns})"),
    }
}

/// The sorted streams of one region store.
pub struct RegionStreams {
    pub orders: Sorted<OrderRow>,
    pub transitions: Sorted<TransitionRow>,
    pub events: Sorted<EventRow>,
    pub effects: Sorted<EffectRow>,
}

fn decode<R: serde::de::DeserializeOwned, T>(
    what: &'static str,
    map: impl Fn(R) -> T,
) -> impl Fn(&str) -> Result<Vec<T>, String> {
    move |text: &str| {
        let rows: Vec<R> = serde_json::from_str(text).map_err(|e| format!("{what} page: {e}"))?;
        Ok(rows.into_iter().map(&map).collect())
    }
}

impl RegionStreams {
    pub fn spawn(store: StoreTag, db: &Db) -> Self {
        type Order = (
            String,
            String,
            String,
            i64,
            String,
            String,
            Option<String>,
            i64,
            i64,
            i64,
        );
        type Transition = (
            String,
            i64,
            Option<String>,
            String,
            i64,
            Option<String>,
            String,
            String,
        );
        type Event = (String, String, String, i64, Option<i64>);
        type Effect = (String, String, i64);
        let orders = page(
            db,
            &array(
                db,
                "o.order_id, o.owner_region, o.entry_region, o.amount_cents, o.currency, o.status, o.reason, o.version, \
                 o.created_at_us, o.updated_at_us",
            ),
            "orders",
            "",
        );
        let transitions = page(
            db,
            &array(
                db,
                "o.order_id, o.seq, o.from_state, o.to_state, o.at_us, o.reason, o.actor, o.region",
            ),
            "order_transitions",
            "seq",
        );
        let events = page(
            db,
            &array(
                db,
                "o.order_id, o.event_id, o.event_type, o.created_at_us, o.published_at_us",
            ),
            "outbox",
            "id",
        );
        let effects = page(
            db,
            &array(db, "o.order_id, o.event_id, o.at_us"),
            "fulfilments",
            "id",
        );
        Self {
            orders: Sorted::spawn_pages(
                "orders",
                db.pool.clone(),
                orders,
                page_rows(db),
                decode("orders", move |r: Order| OrderRow {
                    store,
                    order_id: r.0,
                    owner_region: r.1,
                    entry_region: r.2,
                    amount_cents: r.3,
                    currency: r.4,
                    status: r.5,
                    reason: r.6,
                    version: r.7,
                    created_at_us: r.8,
                    updated_at_us: r.9,
                }),
            ),
            transitions: Sorted::spawn_pages(
                "order_transitions",
                db.pool.clone(),
                transitions,
                page_rows(db),
                decode("transitions", move |r: Transition| TransitionRow {
                    store,
                    order_id: r.0,
                    seq: r.1,
                    from_state: r.2,
                    to_state: r.3,
                    at_us: r.4,
                    reason: r.5,
                    actor: r.6,
                    region: r.7,
                }),
            ),
            events: Sorted::spawn_pages(
                "outbox",
                db.pool.clone(),
                events,
                page_rows(db),
                decode("outbox", move |r: Event| EventRow {
                    store,
                    order_id: r.0,
                    event_id: r.1,
                    event_type: r.2,
                    created_at_us: r.3,
                    published_at_us: r.4,
                }),
            ),
            effects: Sorted::spawn_pages(
                "fulfilments",
                db.pool.clone(),
                effects,
                page_rows(db),
                decode("fulfilments", move |r: Effect| EffectRow {
                    store,
                    order_id: r.0,
                    event_id: r.1,
                    at_us: r.2,
                }),
            ),
        }
    }
}

/// The provider's charges, by order.
pub fn charges(db: &Db) -> Sorted<ChargeRow> {
    let item = array(
        db,
        "o.charge_id, o.idempotency_key, o.order_id, o.amount_cents, o.currency, o.status, o.refunded_cents, o.created_at_us",
    );
    let sql = page(db, &item, "provider_charges", "created_at_us");
    Sorted::spawn_pages(
        "provider_charges",
        db.pool.clone(),
        sql,
        page_rows(db),
        |text: &str| {
            type Row = (String, String, String, i64, String, String, i64, i64);
            let rows: Vec<Row> =
                serde_json::from_str(text).map_err(|e| format!("charges page: {e}"))?;
            Ok(rows
                .into_iter()
                .map(
                    |(
                        charge_id,
                        idempotency_key,
                        order_id,
                        amount_cents,
                        currency,
                        status,
                        refunded_cents,
                        created_at_us,
                    )| ChargeRow {
                        charge_id,
                        idempotency_key,
                        order_id,
                        amount_cents,
                        currency,
                        status,
                        refunded_cents,
                        created_at_us,
                    },
                )
                .collect())
        },
    )
}

/// The client's arrivals, by order.
pub fn arrivals(db: &Db) -> Sorted<ArrivalRow> {
    let item = array(
        db,
        "o.arrival_id, o.order_id, o.entry_region, o.phase, o.intended_at_us, o.sent_at_us, o.finished_at_us, o.attempts, \
         o.last_status, o.outcome",
    );
    let sql = page(db, &item, "history_arrivals", "arrival_id");
    Sorted::spawn_pages(
        "history_arrivals",
        db.pool.clone(),
        sql,
        page_rows(db),
        |text: &str| {
            type Row = (
                i64,
                String,
                String,
                String,
                i64,
                Option<i64>,
                Option<i64>,
                i64,
                Option<i64>,
                String,
            );
            let rows: Vec<Row> =
                serde_json::from_str(text).map_err(|e| format!("history page: {e}"))?;
            Ok(rows
                .into_iter()
                .map(
                    |(
                        arrival_id,
                        order_id,
                        entry_region,
                        phase,
                        intended_at_us,
                        sent_at_us,
                        finished_at_us,
                        attempts,
                        last_status,
                        outcome,
                    )| {
                        ArrivalRow {
                            arrival_id,
                            order_id,
                            entry_region,
                            phase,
                            intended_at_us,
                            sent_at_us,
                            finished_at_us,
                            attempts,
                            last_status,
                            outcome,
                        }
                    },
                )
                .collect())
        },
    )
}
