//! After the drain, a run asks the system once more about every order whose customer does
//! not know how it ended (the customer gave up, or was shed), and keeps the answers in the
//! history as `final_poll` requests: what that customer would see if it looked again. The
//! verifier judges them like any answer (a customer still told `pending` after the drain).

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use super::HistorySink;
use crate::LoadgenError;

/// The `kind` of a final poll in `history_requests`.
pub const FINAL_POLL: &str = "final_poll";

/// An order its customer does not know the end of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOrder {
    pub arrival_id: i64,
    pub order_id: String,
    /// The region the customer entered at (`a` or `b`): the poll goes there.
    pub entry_region: String,
    /// The next free request number of the arrival.
    pub next_seq: i64,
    /// The customer's trace id (the final poll continues it).
    pub trace_id: Option<String>,
}

impl OpenOrder {
    /// The final poll's span in the customer's trace: its `traceparent` header and request
    /// id (`None` for a history without trace ids).
    pub fn span(&self) -> Option<(String, String)> {
        use evidence::trace::{TraceId, TraceParent, request_span};
        let trace_id = TraceId::parse(self.trace_id.as_deref()?).ok()?;
        let parent_id = request_span(trace_id, u32::try_from(self.next_seq).ok()?);
        let header = TraceParent {
            trace_id,
            parent_id,
            flags: 1,
        }
        .header();
        Some((header, parent_id.to_string()))
    }
}

/// One final poll's answer, for the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalPoll {
    pub order: OpenOrder,
    pub sent_at_us: i64,
    pub finished_at_us: i64,
    pub http_status: Option<i64>,
    /// As `history_requests.answer`: `confirmed`, `pending`, `failed`, `invalid`, `error`,
    /// `timeout`, ...
    pub answer: &'static str,
}

async fn connect(sink: &HistorySink) -> Result<AnyPool, LoadgenError> {
    sqlx::any::install_default_drivers();
    let failed = |problem: String| LoadgenError::History {
        location: sink.describe(),
        problem,
    };
    let (url, set_path) = match sink {
        HistorySink::Sqlite { path } => (format!("sqlite://{}?mode=rw", path.display()), None),
        HistorySink::Postgres { url, schema } => (
            url.clone(),
            schema
                .as_ref()
                .map(|s| format!("SET search_path TO \"{s}\"")),
        ),
    };
    AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(move |conn, _| {
            let set_path = set_path.clone();
            Box::pin(async move {
                if let Some(sql) = set_path {
                    sqlx::raw_sql(AssertSqlSafe(sql)).execute(conn).await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .map_err(|err| failed(err.to_string()))
}

/// The orders whose customer's outcome is `unknown` or `rejected`, oldest arrival first, at
/// most `limit`.
pub async fn open_orders(sink: &HistorySink, limit: usize) -> Result<Vec<OpenOrder>, LoadgenError> {
    let pool = connect(sink).await?;
    let rows = sqlx::query(
        "SELECT a.arrival_id, a.order_id, a.entry_region, a.trace_id, \
         CAST(COALESCE(MAX(r.seq), -1) + 1 AS BIGINT) AS next_seq \
         FROM history_arrivals a LEFT JOIN history_requests r ON r.arrival_id = a.arrival_id \
         WHERE a.outcome IN ('unknown', 'rejected') AND a.sent_at_us IS NOT NULL \
         GROUP BY a.arrival_id, a.order_id, a.entry_region, a.trace_id ORDER BY a.arrival_id LIMIT $1",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&pool)
    .await;
    pool.close().await;
    let rows = rows.map_err(|err| LoadgenError::History {
        location: sink.describe(),
        problem: err.to_string(),
    })?;
    rows.iter()
        .map(|row| {
            Ok(OpenOrder {
                arrival_id: row.try_get("arrival_id")?,
                order_id: row.try_get("order_id")?,
                entry_region: row.try_get("entry_region")?,
                next_seq: row.try_get("next_seq")?,
                trace_id: row.try_get("trace_id")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(|err| LoadgenError::History {
            location: sink.describe(),
            problem: err.to_string(),
        })
}

/// Appends the final polls' answers to the history's requests, in one transaction.
pub async fn record(sink: &HistorySink, polls: &[FinalPoll]) -> Result<(), LoadgenError> {
    if polls.is_empty() {
        return Ok(());
    }
    let pool = connect(sink).await?;
    let write = async {
        let mut tx = pool.begin().await?;
        for poll in polls {
            sqlx::query(
                "INSERT INTO history_requests (arrival_id, seq, kind, region, sent_at_us, \
                 finished_at_us, http_status, answer, retry_after_ms, order_id, request_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10)",
            )
            .bind(poll.order.arrival_id)
            .bind(poll.order.next_seq)
            .bind(FINAL_POLL)
            .bind(&poll.order.entry_region)
            .bind(poll.sent_at_us)
            .bind(poll.finished_at_us)
            .bind(poll.http_status)
            .bind(poll.answer)
            .bind(&poll.order.order_id)
            .bind(poll.order.span().map(|(_, request_id)| request_id))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    };
    let result = write.await;
    pool.close().await;
    result.map_err(|err| LoadgenError::History {
        location: sink.describe(),
        problem: format!("cannot record the final polls: {err}"),
    })
}
