//! The history's SQL side, one code path for SQLite and PostgreSQL through sqlx's `any`
//! driver: open (WAL and one writer connection for SQLite; a schema for PostgreSQL), create
//! the tables, and write a batch of records in one transaction with multi-row inserts.

use std::sync::Arc;
use std::time::Duration;

use evidence::Dialect;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use super::{HistorySink, Record, RowContext};
use crate::checkout::spec::REGIONS;
use crate::{LoadgenError, Shard};

const ARRIVAL_COLUMNS: &str = "arrival_id, order_id, customer_id, entry_region, phase, \
     intended_at_us, sent_at_us, finished_at_us, attempts, polls, last_status, outcome, detail, cart, trace_id";
const ARRIVAL_ARITY: usize = 15;
const REQUEST_COLUMNS: &str = "arrival_id, seq, kind, region, sent_at_us, finished_at_us, \
     http_status, answer, retry_after_ms, order_id, request_id";
const REQUEST_ARITY: usize = 11;

/// Rows per insert statement: 2^0 .. 2^MAX_CHUNK_LOG2 (a batch is split into powers of two,
/// so a handful of statements serve every batch size and stay in the statement cache;
/// 256 × 15 binds is far below either database's limit).
const MAX_CHUNK_LOG2: u32 = 8;

/// An open history.
pub(super) struct SqlSink {
    pool: AnyPool,
    /// `INSERT` statements for 2^i rows.
    arrival_inserts: Vec<Arc<str>>,
    request_inserts: Vec<Arc<str>>,
}

/// How a statement numbers its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholders {
    /// `$1, $2, ...` (PostgreSQL).
    Numbered,
    /// `?, ?, ...` (SQLite): SQLite looks a `$N` parameter's name up by a linear scan, so
    /// binding a statement of n numbered parameters costs O(n²); positional ones cost O(n).
    Positional,
}

fn inserts(table: &str, columns: &str, arity: usize, style: Placeholders) -> Vec<Arc<str>> {
    (0..=MAX_CHUNK_LOG2)
        .map(|log2| {
            let rows = 1usize << log2;
            let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
            for row in 0..rows {
                sql.push_str(if row == 0 { "(" } else { ", (" });
                for col in 0..arity {
                    if col > 0 {
                        sql.push_str(", ");
                    }
                    match style {
                        Placeholders::Numbered => {
                            sql.push_str(&format!("${}", row * arity + col + 1));
                        }
                        Placeholders::Positional => sql.push('?'),
                    }
                }
                sql.push(')');
            }
            Arc::from(sql)
        })
        .collect()
}

/// Splits `n` into chunk sizes that are powers of two, largest first.
fn chunks(mut n: usize) -> impl Iterator<Item = (usize, u32)> {
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let log2 = (usize::BITS - 1 - n.leading_zeros()).min(MAX_CHUNK_LOG2);
        let size = 1usize << log2;
        n -= size;
        Some((size, log2))
    })
}

impl SqlSink {
    pub(super) async fn open(sink: &HistorySink, shard: Shard) -> Result<Self, LoadgenError> {
        sqlx::any::install_default_drivers();
        let location = sink.describe();
        let failed = |problem: String| LoadgenError::History {
            location: location.clone(),
            problem,
        };
        let (pool, ddl, style) = match sink {
            HistorySink::Sqlite { path } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|err| {
                        LoadgenError::invalid(
                            "--history",
                            path.display(),
                            format!("cannot create its directory: {err}"),
                            "give a writable path",
                        )
                    })?;
                }
                // sqlx percent-decodes the file name, so encode what would end it early.
                let file = path
                    .display()
                    .to_string()
                    .replace('%', "%25")
                    .replace('?', "%3F")
                    .replace('#', "%23");
                let pool = AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            sqlx::raw_sql(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 5000;",
                            )
                            .execute(conn)
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&format!("sqlite://{file}?mode=rwc"))
                    .await
                    .map_err(|err| {
                        LoadgenError::invalid(
                            "--history",
                            path.display(),
                            format!("cannot open it as SQLite: {err}"),
                            "give a writable path for a new file",
                        )
                    })?;
                (
                    pool,
                    evidence::history::ddl(Dialect::Sqlite),
                    Placeholders::Positional,
                )
            }
            HistorySink::Postgres { url, schema } => {
                let set_path: Option<Arc<str>> = schema
                    .as_ref()
                    .map(|s| format!("SET search_path TO \"{s}\"").into());
                if let Some(schema) = schema {
                    let mut admin = tokio::time::timeout(
                        Duration::from_secs(10),
                        <sqlx::AnyConnection as sqlx::Connection>::connect(url),
                    )
                    .await
                    .map_err(|_| failed("no connection within 10 s".into()))?
                    .map_err(|err| failed(err.to_string()))?;
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
                    )))
                    .execute(&mut admin)
                    .await
                    .map_err(|err| failed(err.to_string()))?;
                    let _ = sqlx::Connection::close(admin).await;
                }
                let pool = AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(move |conn, _meta| {
                        let set_path = set_path.clone();
                        Box::pin(async move {
                            if let Some(set_path) = set_path {
                                sqlx::raw_sql(AssertSqlSafe(set_path.to_string()))
                                    .execute(conn)
                                    .await?;
                            }
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await
                    .map_err(|err| failed(err.to_string()))?;
                // Text in byte order, as the stores and the verifier's merge by order id expect
                // (and so the order-id index serves keyset paging).
                (
                    pool,
                    evidence::history::ddl(Dialect::Postgres),
                    Placeholders::Numbered,
                )
            }
        };
        sqlx::raw_sql(AssertSqlSafe(ddl))
            .execute(&pool)
            .await
            .map_err(|err| failed(format!("cannot create the history tables: {err}")))?;
        // A history holds one run: rows of this shard already there are an earlier run's.
        let existing: i64 = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM history_arrivals WHERE arrival_id % $1 = $2",
        )
        .bind(i64::from(shard.count))
        .bind(i64::from(shard.index))
        .fetch_one(&pool)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|err| failed(err.to_string()))?;
        if existing > 0 {
            pool.close().await;
            return Err(LoadgenError::invalid(
                "--history",
                location,
                format!("it already holds {existing} arrivals of this shard from an earlier run"),
                "give a new file (or schema) for each run",
            ));
        }
        Ok(Self {
            pool,
            arrival_inserts: inserts("history_arrivals", ARRIVAL_COLUMNS, ARRIVAL_ARITY, style),
            request_inserts: inserts("history_requests", REQUEST_COLUMNS, REQUEST_ARITY, style),
        })
    }

    /// Writes `records` (arrivals and their requests) in one transaction; returns the row
    /// counts written.
    pub(super) async fn write(
        &self,
        context: &RowContext,
        records: &[Record],
    ) -> Result<(u64, u64), sqlx::Error> {
        let region = |i: usize| REGIONS.get(i).copied().unwrap_or("?");
        let wall = |at| context.anchor.wall_us(at);
        let mut tx = self.pool.begin().await?;
        let mut start = 0;
        for (size, log2) in chunks(records.len()) {
            let mut query = sqlx::query(AssertSqlSafe(Arc::clone(
                &self.arrival_inserts[log2 as usize],
            )));
            for record in &records[start..start + size] {
                let a = &record.arrival;
                query = query
                    .bind(a.index as i64)
                    .bind(context.order_id(a.index))
                    .bind(crate::checkout::customer::customer_id(a.customer))
                    .bind(region(a.region))
                    .bind(context.phases.get(a.phase).cloned().unwrap_or_default())
                    .bind(wall(a.intended_at))
                    .bind(a.sent_at.map(wall))
                    .bind(a.finished_at.map(wall))
                    .bind(i64::from(a.attempts))
                    .bind(i64::from(a.polls))
                    .bind(a.last_status.map(i64::from))
                    .bind(a.outcome.as_str())
                    .bind(a.detail.clone())
                    .bind(a.cart.clone())
                    .bind(context.trace_id(a.index).to_string());
            }
            query.execute(&mut *tx).await?;
            start += size;
        }
        let requests: Vec<(u64, &super::RequestRow)> = records
            .iter()
            .flat_map(|r| r.requests.iter().map(move |q| (r.arrival.index, q)))
            .collect();
        let mut start = 0;
        for (size, log2) in chunks(requests.len()) {
            let mut query = sqlx::query(AssertSqlSafe(Arc::clone(
                &self.request_inserts[log2 as usize],
            )));
            for (arrival, q) in &requests[start..start + size] {
                query = query
                    .bind(*arrival as i64)
                    .bind(i64::from(q.seq))
                    .bind(q.kind.as_str())
                    .bind(region(q.region))
                    .bind(wall(q.sent_at))
                    .bind(wall(q.finished_at))
                    .bind(q.http_status.map(i64::from))
                    .bind(q.answer.as_str())
                    .bind(
                        q.retry_after_ms
                            .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
                    )
                    .bind(context.order_id(*arrival))
                    .bind(context.request_id(*arrival, q.seq));
            }
            query.execute(&mut *tx).await?;
            start += size;
        }
        tx.commit().await?;
        Ok((records.len() as u64, requests.len() as u64))
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any batch size splits into power-of-two chunks that add up to it, none too large.
    #[test]
    fn chunks_cover_every_size() {
        for n in [0usize, 1, 2, 3, 255, 256, 257, 1000, 1024, 5000] {
            let parts: Vec<(usize, u32)> = chunks(n).collect();
            assert_eq!(parts.iter().map(|(s, _)| s).sum::<usize>(), n);
            assert!(
                parts
                    .iter()
                    .all(|(s, l)| *s == 1 << l && *l <= MAX_CHUNK_LOG2)
            );
        }
        let sql = &inserts("t", "a, b", 2, Placeholders::Numbered)[1];
        assert_eq!(&**sql, "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
        let sql = &inserts("t", "a, b", 2, Placeholders::Positional)[1];
        assert_eq!(&**sql, "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)");
    }
}
