//! The provider's ledger: idempotency keys, charges, refunds, voids and the request log.
//!
//! The key row is claimed (`processing`) before a charge is processed and completed in the
//! same transaction that writes the charge, so "a charge exists" and "the key has an answer"
//! never disagree. A `processing` row left by a crash has no charge behind it and is cleared
//! at start.

use sqlx::Row;
use tokio::sync::mpsc;

use evidence::store::Db;

/// One charge as stored (the API answers with [`super::api::ChargeAnswer`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Charge {
    pub charge_id: String,
    pub idempotency_key: String,
    pub order_id: String,
    pub amount_cents: i64,
    pub currency: String,
    /// `authorized`, `declined` or `voided`.
    pub status: String,
    pub refunded_cents: i64,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

impl Charge {
    /// Money the customer is out because of this charge.
    pub fn net_cents(&self) -> i64 {
        net_cents(&self.status, self.amount_cents, self.refunded_cents)
    }
}

/// Money a charge leaves the customer out: authorized and not refunded; zero otherwise.
pub fn net_cents(status: &str, amount_cents: i64, refunded_cents: i64) -> i64 {
    if status == "authorized" {
        amount_cents - refunded_cents
    } else {
        0
    }
}

/// The result of claiming a key for a new charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First use (or first use after retention expired): process it.
    New,
    /// Already answered: replay the stored answer.
    Replay { status: u16, body: String },
    /// The first request with this key is still being processed.
    InFlight,
    /// Same key, different parameters.
    Mismatch,
    /// The key was voided: refused forever.
    Voided,
}

/// One line of the request log.
#[derive(Debug, Clone)]
pub struct RequestLog {
    pub op: &'static str,
    pub idempotency_key: Option<String>,
    pub charge_id: Option<String>,
    pub received_at_us: i64,
    pub finished_at_us: i64,
    pub http_status: Option<i64>,
    pub outcome: &'static str,
    /// The caller the request's listener belongs to (filled in when the line is logged).
    pub caller: Option<std::sync::Arc<str>>,
    /// When the caller went away before its answer, if it did (filled in when logged).
    pub abandoned_at_us: Option<i64>,
    /// The ids the caller sent (`traceparent`, `x-request-id`; filled in when logged):
    /// correlation only, never who called.
    pub trace_id: Option<String>,
    pub request_id: Option<String>,
}

/// What the look-up by key finds (the API answers with [`super::api::KeyAnswer`]).
#[derive(Debug, Clone)]
pub struct KeyView {
    pub idempotency_key: String,
    /// `processing`, `completed` or `voided`.
    pub state: String,
    pub charge: Option<Charge>,
}

const CHARGE_COLUMNS: &str = "charge_id, idempotency_key, order_id, amount_cents, currency, \
     status, refunded_cents, created_at_us, updated_at_us";

/// Claims `key` for a new charge, or says why not.
pub async fn claim(
    db: &Db,
    key: &str,
    fingerprint: &str,
    now_us: i64,
    retention_us: i64,
) -> Result<Claim, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO provider_keys (idempotency_key, fingerprint, state, created_at_us, updated_at_us) \
         VALUES ($1, $2, 'processing', $3, $3) ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(key)
    .bind(fingerprint)
    .bind(now_us)
    .execute(&db.pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::New);
    }
    let Some(row) = sqlx::query(
        "SELECT fingerprint, state, response_status, response_body, created_at_us \
         FROM provider_keys WHERE idempotency_key = $1",
    )
    .bind(key)
    .fetch_optional(&db.pool)
    .await?
    else {
        // Deleted between the insert and the read (a void racing a retention expiry): the
        // caller may simply try again.
        return Ok(Claim::InFlight);
    };
    let state: String = row.try_get("state")?;
    let stored_fingerprint: String = row.try_get("fingerprint")?;
    let created_at_us: i64 = row.try_get("created_at_us")?;
    if state != "processing" && created_at_us < now_us - retention_us {
        // Past retention the key is forgotten: a new request (Stripe's documented behaviour).
        let mut tx = db.pool.begin().await?;
        sqlx::query("DELETE FROM provider_keys WHERE idempotency_key = $1 AND created_at_us = $2")
            .bind(key)
            .bind(created_at_us)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO provider_keys (idempotency_key, fingerprint, state, created_at_us, updated_at_us) \
             VALUES ($1, $2, 'processing', $3, $3) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(key)
        .bind(fingerprint)
        .bind(now_us)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        return Ok(if inserted == 1 {
            Claim::New
        } else {
            Claim::InFlight
        });
    }
    Ok(match state.as_str() {
        "voided" => Claim::Voided,
        _ if stored_fingerprint != fingerprint => Claim::Mismatch,
        "processing" => Claim::InFlight,
        _ => Claim::Replay {
            status: row
                .try_get::<Option<i64>, _>("response_status")?
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(200),
            body: row
                .try_get::<Option<String>, _>("response_body")?
                .unwrap_or_default(),
        },
    })
}

/// Records a processed charge, the key's stored answer and the request, atomically.
pub async fn complete(
    db: &Db,
    charge: &Charge,
    response_status: u16,
    response_body: &str,
    log: &RequestLog,
) -> Result<(), sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    insert_charge(&mut tx, charge).await?;
    sqlx::query(
        "UPDATE provider_keys SET state = 'completed', charge_id = $2, response_status = $3, \
         response_body = $4, updated_at_us = $5 WHERE idempotency_key = $1",
    )
    .bind(&charge.idempotency_key)
    .bind(&charge.charge_id)
    .bind(i64::from(response_status))
    .bind(response_body)
    .bind(charge.updated_at_us)
    .execute(&mut *tx)
    .await?;
    insert_log(&mut tx, log).await?;
    tx.commit().await
}

/// Inserts one charge row (inside the caller's transaction).
pub(super) async fn insert_charge(
    conn: &mut sqlx::AnyConnection,
    charge: &Charge,
) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO provider_charges ({CHARGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )))
    .bind(&charge.charge_id)
    .bind(&charge.idempotency_key)
    .bind(&charge.order_id)
    .bind(charge.amount_cents)
    .bind(&charge.currency)
    .bind(&charge.status)
    .bind(charge.refunded_cents)
    .bind(charge.created_at_us)
    .bind(charge.updated_at_us)
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives a claimed key back after processing failed before anything was recorded.
pub async fn release_claim(db: &Db, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM provider_keys WHERE idempotency_key = $1 AND state = 'processing'")
        .bind(key)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Clears claims a crash left behind (they have no charge: claim and charge commit together).
pub async fn clear_abandoned_claims(db: &Db) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM provider_keys WHERE state = 'processing'")
            .execute(&db.pool)
            .await?
            .rows_affected(),
    )
}

/// The key's state and its charge, if the key is known and within retention.
pub async fn lookup(
    db: &Db,
    key: &str,
    not_before_us: i64,
) -> Result<Option<KeyView>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT state, charge_id, created_at_us FROM provider_keys WHERE idempotency_key = $1",
    )
    .bind(key)
    .fetch_optional(&db.pool)
    .await?
    else {
        return Ok(None);
    };
    let state: String = row.try_get("state")?;
    let created_at_us: i64 = row.try_get("created_at_us")?;
    if state != "processing" && state != "voided" && created_at_us < not_before_us {
        return Ok(None);
    }
    let charge_id: Option<String> = row.try_get("charge_id")?;
    let charge = match charge_id {
        Some(id) => charge_by_id(db, &id).await?,
        None => None,
    };
    Ok(Some(KeyView {
        idempotency_key: key.to_string(),
        state,
        charge,
    }))
}

pub async fn charge_by_id(db: &Db, charge_id: &str) -> Result<Option<Charge>, sqlx::Error> {
    sqlx::query_as::<_, Charge>(sqlx::AssertSqlSafe(format!(
        "SELECT {CHARGE_COLUMNS} FROM provider_charges WHERE charge_id = $1"
    )))
    .bind(charge_id)
    .fetch_optional(&db.pool)
    .await
}

/// All charges for an order, oldest first (for tests and operators).
pub async fn charges_for_order(db: &Db, order_id: &str) -> Result<Vec<Charge>, sqlx::Error> {
    sqlx::query_as::<_, Charge>(sqlx::AssertSqlSafe(format!(
        "SELECT {CHARGE_COLUMNS} FROM provider_charges WHERE order_id = $1 ORDER BY created_at_us, charge_id"
    )))
    .bind(order_id)
    .fetch_all(&db.pool)
    .await
}

/// The outcome of a refund request.
#[derive(Debug)]
pub enum Refund {
    Done(Charge),
    NotFound,
    NotRefundable(Charge),
}

/// Refunds what remains of an authorized charge (idempotent: a refunded charge is returned as is).
pub async fn refund(
    db: &Db,
    charge_id: &str,
    refund_id: &str,
    now_us: i64,
) -> Result<Refund, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let Some(charge) = sqlx::query_as::<_, Charge>(sqlx::AssertSqlSafe(format!(
        "SELECT {CHARGE_COLUMNS} FROM provider_charges WHERE charge_id = $1"
    )))
    .bind(charge_id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(Refund::NotFound);
    };
    if charge.status != "authorized" {
        return Ok(Refund::NotRefundable(charge));
    }
    let remaining = charge.amount_cents - charge.refunded_cents;
    if remaining > 0 {
        sqlx::query(
            "INSERT INTO provider_refunds (refund_id, charge_id, amount_cents, created_at_us) VALUES ($1, $2, $3, $4)",
        )
        .bind(refund_id)
        .bind(charge_id)
        .bind(remaining)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE provider_charges SET refunded_cents = amount_cents, updated_at_us = $2 WHERE charge_id = $1",
        )
        .bind(charge_id)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Refund::Done(Charge {
        refunded_cents: charge.amount_cents,
        updated_at_us: if remaining > 0 {
            now_us
        } else {
            charge.updated_at_us
        },
        ..charge
    }))
}

/// The outcome of a void request.
#[derive(Debug)]
pub enum Void {
    /// The key is now a tombstone; the charge behind it (if any) is voided.
    Voided(KeyView),
    /// The first request with this key is still being processed: try again later.
    InFlight,
}

/// Tombstones `key`: a later charge with it is refused, and an authorized charge behind it is
/// voided (net zero). Voiding twice is harmless.
pub async fn void(db: &Db, key: &str, now_us: i64) -> Result<Void, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO provider_keys (idempotency_key, fingerprint, state, created_at_us, updated_at_us) \
         VALUES ($1, '', 'voided', $2, $2) ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(key)
    .bind(now_us)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        tx.commit().await?;
        return Ok(Void::Voided(KeyView {
            idempotency_key: key.to_string(),
            state: "voided".into(),
            charge: None,
        }));
    }
    let row = sqlx::query("SELECT state, charge_id FROM provider_keys WHERE idempotency_key = $1")
        .bind(key)
        .fetch_one(&mut *tx)
        .await?;
    let state: String = row.try_get("state")?;
    if state == "processing" {
        return Ok(Void::InFlight);
    }
    let charge_id: Option<String> = row.try_get("charge_id")?;
    sqlx::query(
        "UPDATE provider_keys SET state = 'voided', updated_at_us = $2 WHERE idempotency_key = $1",
    )
    .bind(key)
    .bind(now_us)
    .execute(&mut *tx)
    .await?;
    if let Some(id) = &charge_id {
        sqlx::query(
            "UPDATE provider_charges SET status = 'voided', updated_at_us = $2 \
             WHERE charge_id = $1 AND status = 'authorized'",
        )
        .bind(id)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let charge = match charge_id {
        Some(id) => charge_by_id(db, &id).await?,
        None => None,
    };
    Ok(Void::Voided(KeyView {
        idempotency_key: key.to_string(),
        state: "voided".into(),
        charge,
    }))
}

/// Records a change of the active fault set.
pub async fn record_faults(db: &Db, at_us: i64, faults_json: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO provider_fault_changes (at_us, faults_json) VALUES ($1, $2)")
        .bind(at_us)
        .bind(faults_json)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Stores one metadata value (seed, effective parameters).
pub async fn set_meta(db: &Db, key: &str, value: &str, now_us: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO provider_meta (key, value, updated_at_us) VALUES ($1, $2, $3) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at_us = excluded.updated_at_us",
    )
    .bind(key)
    .bind(value)
    .bind(now_us)
    .execute(&db.pool)
    .await?;
    Ok(())
}

pub(super) async fn insert_log(
    conn: &mut sqlx::AnyConnection,
    log: &RequestLog,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO provider_requests (op, idempotency_key, charge_id, received_at_us, finished_at_us, http_status, outcome, caller, \
         abandoned_at_us, trace_id, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(log.op)
    .bind(log.idempotency_key.as_deref())
    .bind(log.charge_id.as_deref())
    .bind(log.received_at_us)
    .bind(log.finished_at_us)
    .bind(log.http_status)
    .bind(log.outcome)
    .bind(log.caller.as_deref())
    .bind(log.abandoned_at_us)
    .bind(log.trace_id.as_deref())
    .bind(log.request_id.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes request-log lines in batches, off the request path. Bounded: when the writer falls
/// behind, requests wait for room rather than memory growing.
#[derive(Clone, Debug)]
pub struct LogWriter {
    tx: mpsc::Sender<LogMsg>,
}

#[derive(Debug)]
enum LogMsg {
    Line(RequestLog),
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl LogWriter {
    /// Starts the writer task; it ends after every sender is dropped and the queue is drained.
    pub fn spawn(db: Db) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<LogMsg>(8_192);
        let task = tokio::spawn(async move {
            let mut msgs = Vec::with_capacity(512);
            let mut lines = Vec::with_capacity(512);
            while rx.recv_many(&mut msgs, 512).await > 0 {
                let mut waiters = Vec::new();
                for msg in msgs.drain(..) {
                    match msg {
                        LogMsg::Line(line) => lines.push(line),
                        LogMsg::Flush(done) => waiters.push(done),
                    }
                }
                if !lines.is_empty() {
                    if let Err(err) = write_batch(&db, &lines).await {
                        tracing::error!(error = %err, lines = lines.len(), "provider request log write failed");
                    }
                    lines.clear();
                }
                for done in waiters {
                    let _ = done.send(());
                }
            }
        });
        (Self { tx }, task)
    }

    pub async fn write(&self, line: RequestLog) {
        // Only fails when the writer task has ended, i.e. during shutdown.
        let _ = self.tx.send(LogMsg::Line(line)).await;
    }

    /// Returns once every line sent before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(LogMsg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_batch(db: &Db, batch: &[RequestLog]) -> Result<(), sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    for line in batch {
        insert_log(&mut tx, line).await?;
    }
    tx.commit().await
}
