//! A region's order records: orders, transitions, reservations, attempts, outbox rows.
//!
//! Every state change goes through [`apply`], which checks the pure state machine, updates
//! the order only if it is still in the expected state (compare-and-set on `status`, so two
//! actors can never both finalise an order) and writes the transition row, in the caller's
//! transaction.

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::api::{CheckoutRequest, LineItem};
use crate::clock::now_us;
use evidence::order_state::{OrderState, transition};
use evidence::store::Db;

/// One order as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub order_id: String,
    pub customer_id: String,
    pub owner_region: String,
    pub entry_region: String,
    pub fingerprint: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: OrderState,
    pub reason: Option<String>,
    pub version: i64,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    /// The trace the order was created in (work on it later continues it).
    pub trace_id: Option<String>,
}

/// Who made a transition (the `actor` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Checkout,
    Repair,
    /// A person, through `POST /admin/orders/{id}/resolve`.
    Operator,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Checkout => "checkout",
            Self::Repair => "repair",
            Self::Operator => "operator",
        }
    }
}

/// Errors of order persistence.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    #[error(transparent)]
    Illegal(#[from] evidence::order_state::IllegalTransition),
    #[error("stored order {order_id} has an unknown status {status:?}")]
    Corrupt { order_id: String, status: String },
}

/// A provider call as recorded in `payment_attempts`.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub order_id: String,
    pub idempotency_key: String,
    pub region: &'static str,
    pub op: &'static str,
    pub attempt_no: i64,
    pub is_retry: bool,
    pub started_at_us: i64,
    pub finished_at_us: i64,
    pub outcome: &'static str,
    pub http_status: Option<i64>,
    pub detail: Option<String>,
    /// The trace context the call was made in (`crate::trace`).
    pub trace_id: Option<String>,
    pub request_id: Option<String>,
}

/// What saving a new checkout intent did.
#[derive(Debug)]
pub enum Intent {
    /// Saved, stock reserved, now `payment_authorizing`: call the provider.
    Authorizing,
    /// Saved, stock reserved, parked in `payment_pending` (degraded mode): pay later.
    Parked,
    /// Saved, stock reserved, left in `inventory_reserved`: the `reply-before-commit`
    /// defect pays and answers before it writes the payment's transitions.
    Reserved,
    /// Saved and failed safely at once: this sku lacked stock. Nothing reserved.
    OutOfStock { sku: String },
    /// An order with this id exists already.
    Exists(Box<Order>),
}

/// How stock is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// A conditional update: never more than what is left.
    NoOversell,
    /// Defect `oversell`: the stock condition is gone.
    Oversell,
}

/// Where a new order goes once its stock is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then<'a> {
    Authorize,
    /// Degraded mode: `payment_pending` with this reason, no provider call now.
    Park(&'a str),
    /// The `reply-before-commit` defect: stop at `inventory_reserved`.
    ReserveOnly,
}

/// A checkout intent to save.
#[derive(Debug, Clone, Copy)]
pub struct NewOrder<'a> {
    pub req: &'a CheckoutRequest,
    pub amount_cents: i64,
    pub currency: &'a str,
    /// The order's owner region (a pure function of its id).
    pub owner_region: &'a str,
    /// Where the customer's request came in.
    pub entry_region: &'a str,
    /// The region writing the record (the owner, unless a defect says otherwise).
    pub acting_region: &'a str,
    pub reserve: Reserve,
    pub then: Then<'a>,
}

/// Saves the intent, reserves every line (no oversell: a conditional update per sku, in sku
/// order so concurrent transactions lock rows in one order) and moves to
/// `payment_authorizing` (or parks it), all in one transaction.
pub async fn save_intent(db: &Db, new: NewOrder<'_>) -> Result<Intent, OrderError> {
    let NewOrder {
        req,
        amount_cents,
        currency,
        owner_region,
        entry_region,
        acting_region,
        reserve,
        then,
    } = new;
    let now = now_us();
    let mut tx = db.pool.begin().await?;
    let items_json = serde_json::to_string(&req.items).unwrap_or_default();
    let inserted = sqlx::query(
        "INSERT INTO orders (order_id, customer_id, owner_region, entry_region, fingerprint, items_json, \
         amount_cents, currency, status, reason, version, created_at_us, updated_at_us, trace_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'order_intent_saved', NULL, 1, $9, $9, $10) \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(&req.order_id)
    .bind(&req.customer_id)
    .bind(owner_region)
    .bind(entry_region)
    .bind(req.fingerprint())
    .bind(&items_json)
    .bind(amount_cents)
    .bind(currency)
    .bind(now)
    .bind(crate::trace::ids().0)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        let existing = load(db, &req.order_id).await?;
        return match existing {
            Some(order) => Ok(Intent::Exists(Box::new(order))),
            // Lost between insert and read: only possible if someone deletes orders.
            None => Err(OrderError::Store(sqlx::Error::RowNotFound)),
        };
    }
    let mut reserved: Vec<&LineItem> = Vec::with_capacity(req.items.len());
    for item in &req.items {
        let sql = match reserve {
            Reserve::Oversell => "UPDATE inventory SET reserved = reserved + $1 WHERE sku = $2",
            Reserve::NoOversell => {
                "UPDATE inventory SET reserved = reserved + $1 WHERE sku = $2 AND stock - reserved >= $1"
            }
        };
        let updated = sqlx::query(sql)
            .bind(item.qty)
            .bind(&item.sku)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            for done in &reserved {
                sqlx::query("UPDATE inventory SET reserved = reserved - $1 WHERE sku = $2")
                    .bind(done.qty)
                    .bind(&done.sku)
                    .execute(&mut *tx)
                    .await?;
            }
            let reason = format!("out_of_stock:{}", item.sku);
            let path = [(
                OrderState::OrderIntentSaved,
                OrderState::FailedSafely,
                Some(reason.as_str()),
            )];
            advance_new_order(&mut tx, &req.order_id, &path, now, acting_region).await?;
            tx.commit().await?;
            return Ok(Intent::OutOfStock {
                sku: item.sku.clone(),
            });
        }
        reserved.push(item);
    }
    let mut sql = String::from(
        "INSERT INTO reservations (order_id, sku, qty, status, updated_at_us) VALUES ",
    );
    for i in 0..req.items.len() {
        let b = i * 3;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("($1, ${}, ${}, 'held', ${})", b + 2, b + 3, b + 4));
    }
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&req.order_id);
    for item in &req.items {
        insert = insert.bind(&item.sku).bind(item.qty).bind(now);
    }
    insert.execute(&mut *tx).await?;
    let reserved = (
        OrderState::OrderIntentSaved,
        OrderState::InventoryReserved,
        None,
    );
    let (path, intent) = match then {
        Then::Authorize => (
            vec![
                reserved,
                (
                    OrderState::InventoryReserved,
                    OrderState::PaymentAuthorizing,
                    None,
                ),
            ],
            Intent::Authorizing,
        ),
        Then::Park(reason) => (
            vec![
                reserved,
                (
                    OrderState::InventoryReserved,
                    OrderState::PaymentPending,
                    Some(reason),
                ),
            ],
            Intent::Parked,
        ),
        Then::ReserveOnly => (vec![reserved], Intent::Reserved),
    };
    advance_new_order(&mut tx, &req.order_id, &path, now, acting_region).await?;
    tx.commit().await?;
    Ok(intent)
}

/// Records a new order's first transitions in two statements: the order row jumps to the
/// last state of `path`, and one multi-row insert writes the transition rows (the intent
/// itself, then each step). Every step is checked by the state machine first.
async fn advance_new_order(
    conn: &mut AnyConnection,
    order_id: &str,
    path: &[(OrderState, OrderState, Option<&str>)],
    now: i64,
    region: &str,
) -> Result<(), OrderError> {
    for (from, to, _) in path {
        transition(*from, *to)?;
    }
    let (_, last, last_reason) = path.last().copied().expect("a non-empty path");
    let (trace_id, request_id) = crate::trace::ids();
    let version = 1 + path.len() as i64;
    sqlx::query(
        "UPDATE orders SET status = $1, reason = $2, version = $3, updated_at_us = $4 WHERE order_id = $5",
    )
    .bind(last.as_str())
    .bind(last_reason)
    .bind(version)
    .bind(now)
    .bind(order_id)
    .execute(&mut *conn)
    .await?;
    let mut sql = String::from(
        "INSERT INTO order_transitions (order_id, seq, from_state, to_state, at_us, reason, actor, region, \
         trace_id, request_id) VALUES ($1, 1, NULL, 'order_intent_saved', $2, NULL, 'checkout', $3, $4, $5)",
    );
    for i in 0..path.len() {
        let b = 6 + i * 4;
        sql.push_str(&format!(
            ", ($1, ${}, ${}, ${}, $2, ${}, 'checkout', $3, $4, $5)",
            b,
            b + 1,
            b + 2,
            b + 3
        ));
    }
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(order_id)
        .bind(now)
        .bind(region)
        .bind(trace_id)
        .bind(request_id);
    for (i, (from, to, reason)) in path.iter().enumerate() {
        insert = insert
            .bind(2 + i as i64)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(*reason);
    }
    insert.execute(conn).await?;
    Ok(())
}

/// One operator decision for the audit trail (`operator_decisions`).
#[derive(Debug, Clone)]
pub struct Audit {
    pub order_id: String,
    pub operator: String,
    pub decision: String,
    pub note: String,
    pub from_state: Option<String>,
    /// The provider's record the decision relied on.
    pub provider_ref: Option<String>,
    /// What was done first (a refund, a void) or why it was refused.
    pub detail: Option<String>,
}

/// Writes `audit` with its outcome (`applied` or `refused`).
pub async fn insert_audit(
    conn: &mut AnyConnection,
    audit: &Audit,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    let (trace_id, request_id) = crate::trace::ids();
    sqlx::query(
        "INSERT INTO operator_decisions (order_id, operator, decision, note, outcome, from_state, \
         provider_ref, detail, at_us, trace_id, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&audit.order_id)
    .bind(&audit.operator)
    .bind(&audit.decision)
    .bind(&audit.note)
    .bind(outcome)
    .bind(&audit.from_state)
    .bind(&audit.provider_ref)
    .bind(&audit.detail)
    .bind(now_us())
    .bind(trace_id)
    .bind(request_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves `order_id` from `from` to `to` if it is still in `from`. Returns false (and writes
/// nothing) when another actor moved it first.
pub async fn apply(
    conn: &mut AnyConnection,
    order_id: &str,
    from: OrderState,
    to: OrderState,
    reason: Option<&str>,
    actor: Actor,
    region: &str,
) -> Result<bool, OrderError> {
    transition(from, to)?;
    let now = now_us();
    let row = sqlx::query(
        "UPDATE orders SET status = $1, reason = $2, version = version + 1, updated_at_us = $3 \
         WHERE order_id = $4 AND status = $5 RETURNING version",
    )
    .bind(to.as_str())
    .bind(reason)
    .bind(now)
    .bind(order_id)
    .bind(from.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let version: i64 = row.try_get("version")?;
    insert_transition(
        conn,
        order_id,
        version,
        Some(from),
        to,
        now,
        reason,
        actor,
        region,
    )
    .await?;
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
async fn insert_transition(
    conn: &mut AnyConnection,
    order_id: &str,
    seq: i64,
    from: Option<OrderState>,
    to: OrderState,
    at_us: i64,
    reason: Option<&str>,
    actor: Actor,
    region: &str,
) -> Result<(), sqlx::Error> {
    let (trace_id, request_id) = crate::trace::ids();
    sqlx::query(
        "INSERT INTO order_transitions (order_id, seq, from_state, to_state, at_us, reason, actor, region, \
         trace_id, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(order_id)
    .bind(seq)
    .bind(from.map(OrderState::as_str))
    .bind(to.as_str())
    .bind(at_us)
    .bind(reason)
    .bind(actor.as_str())
    .bind(region)
    .bind(trace_id)
    .bind(request_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends a provider call to `payment_attempts`.
pub async fn insert_attempt(conn: &mut AnyConnection, row: &AttemptRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payment_attempts (order_id, idempotency_key, region, op, attempt_no, is_retry, \
         started_at_us, finished_at_us, outcome, http_status, detail, trace_id, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&row.order_id)
    .bind(&row.idempotency_key)
    .bind(row.region)
    .bind(row.op)
    .bind(row.attempt_no)
    .bind(i64::from(row.is_retry))
    .bind(row.started_at_us)
    .bind(row.finished_at_us)
    .bind(row.outcome)
    .bind(row.http_status)
    .bind(row.detail.as_deref())
    .bind(row.trace_id.as_deref())
    .bind(row.request_id.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

/// How many charge calls this region has made for an order.
pub async fn count_charge_attempts(db: &Db, order_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) FROM payment_attempts WHERE order_id = $1 AND op = 'charge'")
        .bind(order_id)
        .fetch_one(&db.pool)
        .await?
        .try_get(0)
}

/// Appends an event to the transactional outbox (same transaction as the state change).
pub async fn insert_event(
    conn: &mut AnyConnection,
    event_id: &str,
    order_id: &str,
    event_type: &str,
    payload: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    let (trace_id, request_id) = crate::trace::ids();
    sqlx::query(
        "INSERT INTO outbox (event_id, order_id, event_type, payload, created_at_us, trace_id, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(event_id)
    .bind(order_id)
    .bind(event_type)
    .bind(payload.to_string())
    .bind(now_us())
    .bind(trace_id)
    .bind(request_id)
    .execute(conn)
    .await?;
    Ok(())
}

const ORDER_COLUMNS: &str = "order_id, customer_id, owner_region, entry_region, fingerprint, amount_cents, \
     currency, status, reason, version, created_at_us, updated_at_us, trace_id";

/// One order, if it exists here.
pub async fn load(db: &Db, order_id: &str) -> Result<Option<Order>, OrderError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = $1"
    )))
    .bind(order_id)
    .fetch_optional(&db.pool)
    .await?;
    row.map(|row| from_row(&row)).transpose()
}

/// Orders the repair worker should look at: pending ones, and ones stuck mid-call.
pub async fn repair_candidates(
    db: &Db,
    stuck_before_us: i64,
    limit: i64,
) -> Result<Vec<Order>, OrderError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM orders \
         WHERE status IN ('payment_pending', 'needs_reconciliation') \
            OR (status = 'payment_authorizing' AND updated_at_us < $1) \
         ORDER BY updated_at_us LIMIT $2"
    )))
    .bind(stuck_before_us)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Order, OrderError> {
    let order_id: String = row.try_get("order_id")?;
    let status_text: String = row.try_get("status")?;
    let status = OrderState::parse(&status_text).ok_or_else(|| OrderError::Corrupt {
        order_id: order_id.clone(),
        status: status_text.clone(),
    })?;
    Ok(Order {
        customer_id: row.try_get("customer_id")?,
        owner_region: row.try_get("owner_region")?,
        entry_region: row.try_get("entry_region")?,
        fingerprint: row.try_get("fingerprint")?,
        amount_cents: row.try_get("amount_cents")?,
        currency: row.try_get("currency")?,
        status,
        reason: row.try_get("reason")?,
        version: row.try_get("version")?,
        created_at_us: row.try_get("created_at_us")?,
        updated_at_us: row.try_get("updated_at_us")?,
        trace_id: row.try_get("trace_id")?,
        order_id,
    })
}

/// Records a payment-mode change.
pub async fn record_mode(
    db: &Db,
    mode: &str,
    reason: &str,
    actor: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO mode_changes (at_us, mode, reason, actor) VALUES ($1, $2, $3, $4)")
        .bind(now_us())
        .bind(mode)
        .bind(reason)
        .bind(actor)
        .execute(&db.pool)
        .await?;
    Ok(())
}
