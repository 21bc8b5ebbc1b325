//! The Stripe face's records: PaymentIntents in `provider_payment_intents`, their money in
//! the shared ledger (`provider_charges`, `provider_refunds`), their idempotency keys in
//! `provider_keys` (as `stripe:<key>`, account-wide as at Stripe). Every change a request
//! makes commits in one transaction with its key's saved answer and its request-log line,
//! so "money moved" and "the key has an answer" never disagree after a crash.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::Row;

use super::super::ledger::{self, Charge, RequestLog};
use evidence::store::Db;

/// One PaymentIntent as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    pub intent_id: String,
    pub caller: Option<String>,
    pub order_id: Option<String>,
    pub amount_cents: i64,
    pub currency: String,
    pub status: String,
    pub capture_method: String,
    pub payment_method: Option<String>,
    pub charge_id: Option<String>,
    pub amount_received: i64,
    pub metadata: BTreeMap<String, String>,
    pub description: Option<String>,
    pub last_error: Option<Value>,
    pub cancellation_reason: Option<String>,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

const INTENT_COLUMNS: &str = "intent_id, caller, order_id, amount_cents, currency, status, \
     capture_method, payment_method, charge_id, amount_received, metadata_json, description, \
     last_error_json, cancellation_reason, created_at_us, updated_at_us";

fn intent_from(row: &sqlx::any::AnyRow) -> Result<Intent, sqlx::Error> {
    let metadata: String = row.try_get("metadata_json")?;
    let last_error: Option<String> = row.try_get("last_error_json")?;
    Ok(Intent {
        intent_id: row.try_get("intent_id")?,
        caller: row.try_get("caller")?,
        order_id: row.try_get("order_id")?,
        amount_cents: row.try_get("amount_cents")?,
        currency: row.try_get("currency")?,
        status: row.try_get("status")?,
        capture_method: row.try_get("capture_method")?,
        payment_method: row.try_get("payment_method")?,
        charge_id: row.try_get("charge_id")?,
        amount_received: row.try_get("amount_received")?,
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        description: row.try_get("description")?,
        last_error: last_error.and_then(|text| serde_json::from_str(&text).ok()),
        cancellation_reason: row.try_get("cancellation_reason")?,
        created_at_us: row.try_get("created_at_us")?,
        updated_at_us: row.try_get("updated_at_us")?,
    })
}

pub async fn intent(db: &Db, intent_id: &str) -> Result<Option<Intent>, sqlx::Error> {
    intent_by(db, "intent_id", intent_id).await
}

/// The intent whose latest charge is `charge_id`.
pub async fn intent_of_charge(db: &Db, charge_id: &str) -> Result<Option<Intent>, sqlx::Error> {
    intent_by(db, "charge_id", charge_id).await
}

/// The intent whose `column` (an indexed one) is `value`.
async fn intent_by(db: &Db, column: &str, value: &str) -> Result<Option<Intent>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {INTENT_COLUMNS} FROM provider_payment_intents WHERE {column} = $1"
    )))
    .bind(value)
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(intent_from).transpose()
}

/// At most `limit` intents, newest first, created before `before_us` (paging), for one
/// order when `order_id` is given.
pub async fn intents(
    db: &Db,
    order_id: Option<&str>,
    before: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<Intent>, sqlx::Error> {
    let (before_us, before_id) = before.unwrap_or((i64::MAX, ""));
    let page = |order: &str, n: usize| {
        format!(
            "SELECT {INTENT_COLUMNS} FROM provider_payment_intents WHERE {order} \
             (created_at_us < ${a} OR (created_at_us = ${a} AND intent_id < ${b})) \
             ORDER BY created_at_us DESC, intent_id DESC LIMIT ${c}",
            a = n,
            b = n + 1,
            c = n + 2
        )
    };
    let rows = match order_id {
        Some(order_id) => {
            sqlx::query(sqlx::AssertSqlSafe(page("order_id = $1 AND", 2)))
                .bind(order_id)
                .bind(before_us)
                .bind(before_id)
                .bind(limit)
                .fetch_all(&db.pool)
                .await?
        }
        None => {
            sqlx::query(sqlx::AssertSqlSafe(page("", 1)))
                .bind(before_us)
                .bind(before_id)
                .bind(limit)
                .fetch_all(&db.pool)
                .await?
        }
    };
    rows.iter().map(intent_from).collect()
}

/// Marks the intent `processing` if it is in one of `from` (a confirm or capture takes it):
/// false when another request holds it or its status does not allow the step.
pub async fn take(
    db: &Db,
    intent_id: &str,
    from: &[&str],
    now_us: i64,
) -> Result<bool, sqlx::Error> {
    let allowed = from
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let taken = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE provider_payment_intents SET status = 'processing', updated_at_us = $2 \
         WHERE intent_id = $1 AND status IN ({allowed})"
    )))
    .bind(intent_id)
    .bind(now_us)
    .execute(&db.pool)
    .await?
    .rows_affected();
    Ok(taken == 1)
}

/// Puts intents a crash left `processing` back where the step that took them can take them
/// again (that step's changes commit with the intent's new status, so none did): a
/// declined intent needs a payment method, a hold awaits capture, an unconfirmed one
/// confirmation.
pub async fn clear_abandoned(db: &Db) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE provider_payment_intents SET status = {RESUMED} WHERE status = 'processing'"
    )))
    .execute(&db.pool)
    .await?
    .rows_affected())
}

const RESUMED: &str = "CASE WHEN last_error_json IS NOT NULL THEN 'requires_payment_method' \
     WHEN charge_id IS NOT NULL THEN 'requires_capture' \
     WHEN payment_method IS NOT NULL THEN 'requires_confirmation' \
     ELSE 'requires_payment_method' END";

/// Puts one `processing` intent back (its step failed before committing).
pub async fn unprocess(db: &Db, intent_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE provider_payment_intents SET status = {RESUMED} WHERE intent_id = $1 AND status = 'processing'"
    )))
    .bind(intent_id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Writes `intent` as it is (outside a request's commit).
pub async fn put(db: &Db, intent: &Intent) -> Result<(), sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    write_intent(&mut tx, intent).await?;
    tx.commit().await
}

async fn write_intent(conn: &mut sqlx::AnyConnection, i: &Intent) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM provider_payment_intents WHERE intent_id = $1")
        .bind(&i.intent_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO provider_payment_intents ({INTENT_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    )))
    .bind(&i.intent_id)
    .bind(&i.caller)
    .bind(&i.order_id)
    .bind(i.amount_cents)
    .bind(&i.currency)
    .bind(&i.status)
    .bind(&i.capture_method)
    .bind(&i.payment_method)
    .bind(&i.charge_id)
    .bind(i.amount_received)
    .bind(serde_json::to_string(&i.metadata).unwrap_or_default())
    .bind(&i.description)
    .bind(i.last_error.as_ref().map(Value::to_string))
    .bind(&i.cancellation_reason)
    .bind(i.created_at_us)
    .bind(i.updated_at_us)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What one request changes, committed together.
#[derive(Debug, Default)]
pub struct Change<'a> {
    /// The intent as it now is (inserted or replaced).
    pub intent: Option<&'a Intent>,
    /// A new charge.
    pub charge: Option<&'a Charge>,
    /// A charge's new status and refunded amount.
    pub charge_update: Option<(&'a str, &'a str, i64)>,
    /// A new refund: (refund id, charge id, amount).
    pub refund: Option<(&'a str, &'a str, i64)>,
    /// The idempotency key's saved answer: (ledger key, HTTP status, body).
    pub answer: Option<(&'a str, u16, &'a str)>,
    /// The webhook event the change causes.
    pub event: Option<&'a super::webhooks::Event>,
    /// Write `intent` only if the row is still as it was read: (status, updated_at_us). A
    /// row changed meanwhile (a confirm took it) fails the commit with `RowNotFound`.
    pub expect: Option<(&'a str, i64)>,
}

/// Commits `change` with its request-log line.
pub async fn commit(db: &Db, change: &Change<'_>, log: &RequestLog) -> Result<(), sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    if let Some(intent) = change.intent {
        if let Some((status, updated_at_us)) = change.expect {
            // A no-op update: it locks the row as read (PostgreSQL; SQLite's writer holds
            // the whole store), so no take can slip in before the write.
            let still = sqlx::query(
                "UPDATE provider_payment_intents SET updated_at_us = updated_at_us \
                 WHERE intent_id = $1 AND status = $2 AND updated_at_us = $3",
            )
            .bind(&intent.intent_id)
            .bind(status)
            .bind(updated_at_us)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if still != 1 {
                return Err(sqlx::Error::RowNotFound);
            }
        }
        write_intent(&mut tx, intent).await?;
    }
    if let Some(charge) = change.charge {
        ledger::insert_charge(&mut tx, charge).await?;
    }
    if let Some((charge_id, status, refunded)) = change.charge_update {
        sqlx::query(
            "UPDATE provider_charges SET status = $2, refunded_cents = $3, updated_at_us = $4 \
             WHERE charge_id = $1",
        )
        .bind(charge_id)
        .bind(status)
        .bind(refunded)
        .bind(log.finished_at_us)
        .execute(&mut *tx)
        .await?;
    }
    if let Some((refund_id, charge_id, amount)) = change.refund {
        // Guarded: two refunds racing never refund more than was charged.
        let applied = sqlx::query(
            "UPDATE provider_charges SET refunded_cents = refunded_cents + $2, updated_at_us = $3 \
             WHERE charge_id = $1 AND status = 'authorized' AND refunded_cents + $2 <= amount_cents",
        )
        .bind(charge_id)
        .bind(amount)
        .bind(log.finished_at_us)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if applied != 1 {
            return Err(sqlx::Error::RowNotFound);
        }
        sqlx::query(
            "INSERT INTO provider_refunds (refund_id, charge_id, amount_cents, created_at_us) VALUES ($1, $2, $3, $4)",
        )
        .bind(refund_id)
        .bind(charge_id)
        .bind(amount)
        .bind(log.finished_at_us)
        .execute(&mut *tx)
        .await?;
    }
    if let Some((key, status, body)) = change.answer {
        sqlx::query(
            "UPDATE provider_keys SET state = 'completed', charge_id = $2, response_status = $3, \
             response_body = $4, updated_at_us = $5 WHERE idempotency_key = $1",
        )
        .bind(key)
        .bind(change.charge.map(|c| c.charge_id.as_str()))
        .bind(i64::from(status))
        .bind(body)
        .bind(log.finished_at_us)
        .execute(&mut *tx)
        .await?;
    }
    if let Some(event) = change.event {
        super::webhooks::enqueue(&mut tx, event).await?;
    }
    ledger::insert_log(&mut tx, log).await?;
    tx.commit().await
}

/// A refund as stored, with the intent its charge belongs to.
#[derive(Debug, Clone)]
pub struct RefundRow {
    pub refund_id: String,
    pub charge_id: String,
    pub amount_cents: i64,
    pub created_at_us: i64,
}

pub async fn refund(db: &Db, refund_id: &str) -> Result<Option<RefundRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT refund_id, charge_id, amount_cents, created_at_us FROM provider_refunds WHERE refund_id = $1",
    )
    .bind(refund_id)
    .fetch_optional(&db.pool)
    .await?;
    row.map(|row| {
        Ok(RefundRow {
            refund_id: row.try_get("refund_id")?,
            charge_id: row.try_get("charge_id")?,
            amount_cents: row.try_get("amount_cents")?,
            created_at_us: row.try_get("created_at_us")?,
        })
    })
    .transpose()
}
