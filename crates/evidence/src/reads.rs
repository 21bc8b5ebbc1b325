//! The verifier's reads, by name: every statement it runs over a run's records, next to the
//! schema they read. The verifier executes these and decodes the rows; it writes no SQL of
//! its own.
//!
//! Text keys sort byte-wise in both dialects (SQLite's default, PostgreSQL `COLLATE "C"`),
//! so every store streams in the one `order_id` order the verifier merges by.

use crate::store::{Db, Dialect};

/// `ORDER BY` columns with text keys compared byte-wise in either dialect.
pub fn order_by(db: &Db, columns: &str) -> String {
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

/// `json_array(o.a, o.b, ...)`: one row of `columns` as a JSON array (SQLite pages).
pub fn json_row(columns: &str) -> String {
    let columns: Vec<String> = columns
        .split(',')
        .map(|c| format!("o.{}", c.trim()))
        .collect();
    format!("json_array({})", columns.join(", "))
}

/// The JSON array of the page's row arrays `o.j`, in the order the subquery feeds them:
/// `group_concat` of the rows' texts, cheaper than `json_group_array` (which treats each
/// element as a JSON value to embed). NULL for an empty page. The merge checks the order.
const PAGE_ARRAY: &str = "'[' || group_concat(o.j, ',') || ']'";

/// A table's rows sorted by order id (then `then`), for PostgreSQL's `COPY (...) TO STDOUT`.
pub fn sorted(db: &Db, columns: &str, table: &str, then: &str) -> String {
    let order = if then.is_empty() {
        order_by(db, "order_id")
    } else {
        order_by(db, &format!("order_id, {then}"))
    };
    format!("SELECT {columns} FROM {table} ORDER BY {order}")
}

/// The planner settings [`sorted`] runs under (PostgreSQL): its order is an index's, so the
/// index is read in order instead of the table being sorted, statistics or not (a store
/// fresh from a run has none until it is analysed, and a sort of a ten-million-row table
/// spills to disk).
pub const SORTED_PLAN: &str = "SET enable_sort = off";

/// The three keyset page queries over one table (SQLite).
#[derive(Debug, Clone)]
pub struct PageSql {
    /// The page of keys `>= $1`.
    pub from: String,
    /// The page of keys `> $1`.
    pub after: String,
    /// Every row of key `$1` (no limit): for a key with more rows than a page.
    pub one_key: String,
}

/// SQLite pages of `table`: a JSON array of row arrays (`columns`) over at most `rows` rows
/// from an order id on, sorted by order id then `then`, with the first and last order id and
/// the row count. Plain keyset paging on the `order_id` index: no sort, no scan of what was
/// already read.
pub fn pages(columns: &str, table: &str, then: &str, rows: usize) -> PageSql {
    let order = if then.is_empty() {
        String::new()
    } else {
        format!(", {then}")
    };
    // Each row becomes its JSON text inside the subquery: only that text and the key are
    // copied out of it (copying the columns out and building the text outside costs a
    // quarter more on a million-order store).
    let sql = |op: &str, limit: &str| {
        format!(
            "SELECT {PAGE_ARRAY}, min(o.order_id), max(o.order_id), count(*) FROM \
             (SELECT json_array({columns}) AS j, order_id FROM {table} WHERE order_id {op} $1 \
             ORDER BY order_id{order}{limit}) o"
        )
    };
    let limit = format!(" LIMIT {rows}");
    PageSql {
        from: sql(">=", &limit),
        after: sql(">", &limit),
        one_key: sql("=", ""),
    }
}

/// Every provider call of a region in (start, id) order, for `COPY` (PostgreSQL), planned
/// under [`SORTED_PLAN`]: the (start, id) index in order (a sort of ten million calls
/// spilled to disk: 4.0 s against 2.7 s; a store from before the index had id in it reads
/// the start-time index and puts each instant's calls in id order).
pub fn attempts_sorted(columns: &str) -> String {
    format!("SELECT {columns} FROM payment_attempts ORDER BY started_at_us, id")
}

/// A page of provider calls after `($1, $2)` = (started_at_us, id), as one JSON array
/// (SQLite). `started_at_us >= $1` is the index range; the rest skips what the last page
/// took.
pub fn attempt_pages(columns: &str, rows: usize) -> String {
    format!(
        "SELECT {PAGE_ARRAY} FROM (SELECT json_array({columns}) AS j FROM payment_attempts \
         WHERE started_at_us >= $1 AND (started_at_us > $1 OR id > $2) ORDER BY started_at_us, id LIMIT {rows}) o"
    )
}

/// The provider calls of a region in flight at `$1` (at most 20, oldest first).
pub const ATTEMPTS_IN_FLIGHT_AT: &str = "SELECT order_id, op, attempt_no, started_at_us, finished_at_us, outcome \
     FROM payment_attempts WHERE started_at_us <= $1 AND finished_at_us > $1 ORDER BY started_at_us LIMIT 20";

/// The provider's requests as calls seen from the caller's side, with the columns of a
/// `payment_attempts` sweep: a call starts when the provider received it and ends when it
/// was answered or, if earlier, when the caller went away; a charge is a retry when the
/// same caller sent its key before.
///
/// The retry probe must look the key up (`provider_requests_by_key`): on the caller's index
/// it would scan every earlier call of the caller, quadratic in the log. `|| ''` and `+ 0`
/// keep SQLite's planner off the other columns' indexes (both are no-ops in either dialect).
const PROVIDER_CALLS: &str = "SELECT r.id, r.received_at_us AS started_at_us, \
     CASE WHEN r.abandoned_at_us IS NOT NULL AND r.abandoned_at_us < r.finished_at_us \
          THEN r.abandoned_at_us ELSE r.finished_at_us END AS finished_at_us, \
     CASE WHEN r.op = 'charge' AND EXISTS (SELECT 1 FROM provider_requests p \
          WHERE p.idempotency_key = r.idempotency_key AND p.op = 'charge' AND p.caller || '' = r.caller \
          AND (p.received_at_us + 0 < r.received_at_us \
               OR (p.received_at_us + 0 = r.received_at_us AND p.id + 0 < r.id))) \
          THEN 1 ELSE 0 END AS is_retry, \
     COALESCE(r.idempotency_key, '') AS order_id, r.op, r.caller, r.outcome \
     FROM provider_requests r";

/// A caller's name as an SQL literal (the in-flight query is built as text around the
/// shared `PROVIDER_CALLS`).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Every attributed provider call (every caller's, told apart by the `caller` column), in
/// (started_at_us, id) order (PostgreSQL `COPY`, planned under [`PROVIDER_WALK_PLAN`]): one
/// pass over the log for all callers, on the receipt-time index. Its `is_retry` is always
/// 0: the verifier sets it from [`PROVIDER_RETRIES`], merged in by (received_at_us, id).
///
/// The retry rule of `PROVIDER_CALLS` as a join in this query (the retries numbered on the
/// key index, merged into the walk) cost 12.5 s of a ten-million-call log: numbering every
/// charge sorted each key's rows and windowed them, and the join's output was sorted
/// again. As two streams the walk is an index scan and the retries a grouping on the key
/// index.
pub fn provider_calls_sorted(columns: &str) -> String {
    format!(
        "SELECT {columns} FROM (SELECT r.id, r.received_at_us AS started_at_us, \
         CASE WHEN r.abandoned_at_us IS NOT NULL AND r.abandoned_at_us < r.finished_at_us \
              THEN r.abandoned_at_us ELSE r.finished_at_us END AS finished_at_us, \
         0 AS is_retry, COALESCE(r.idempotency_key, '') AS order_id, r.op, r.caller, r.outcome \
         FROM provider_requests r WHERE r.caller IS NOT NULL) c ORDER BY started_at_us, id"
    )
}

/// The planner settings [`provider_calls_sorted`] runs under (PostgreSQL): the
/// (received_at_us, id) index in order, no sort of the whole log (at ten million calls it
/// spills to disk). Without them the planner, lacking statistics on a fresh store, sorts
/// it.
pub const PROVIDER_WALK_PLAN: &str = "SET enable_sort = off";

/// The charges that repeat an earlier charge of their key by the same caller, as
/// (received_at_us, id) in that order (PostgreSQL, planned under
/// [`PROVIDER_RETRIES_PLAN`]): every charge of a (key, caller) after its first, by
/// (received_at_us, id), the rule of `PROVIDER_CALLS`.
///
/// The keys charged more than once are found by grouping the charges on the key index (in
/// its order: no sort, no hash table of every key); only their charges are fetched, by key,
/// numbered and sorted. Nearly every key has one charge, so the sorts are small; a retry
/// storm makes them as large as the retries, never larger.
pub const PROVIDER_RETRIES: &str = "SELECT received_at_us, id FROM (SELECT p.id, p.received_at_us, \
     row_number() OVER (PARTITION BY p.idempotency_key, p.caller ORDER BY p.received_at_us, p.id) AS n \
     FROM (SELECT idempotency_key FROM provider_requests \
           WHERE op = 'charge' AND idempotency_key IS NOT NULL AND caller IS NOT NULL \
           GROUP BY idempotency_key HAVING COUNT(*) > 1) m \
     CROSS JOIN LATERAL (SELECT q.id, q.received_at_us, q.idempotency_key, q.caller FROM provider_requests q \
           WHERE q.idempotency_key = m.idempotency_key AND q.op = 'charge' AND q.caller IS NOT NULL) p) w \
     WHERE n > 1 ORDER BY received_at_us, id";

/// The planner settings [`PROVIDER_RETRIES`] runs under (PostgreSQL): the grouping on the
/// key index in its order, not a hash table of every key or a sort of the whole log.
pub const PROVIDER_RETRIES_PLAN: &str =
    "SET enable_sort = off; SET enable_hashagg = off; SET enable_hashjoin = off";

/// A page of attributed provider calls after `($1, $2)` = (started_at_us, id), as one JSON
/// array (SQLite); the range is on the `received_at_us` index, whose entries are in
/// (received_at_us, id) order, so the page needs no sort (`|| ''` keeps the planner off
/// the caller index).
pub fn provider_call_pages(columns: &str, rows: usize) -> String {
    format!(
        "SELECT {PAGE_ARRAY} FROM (SELECT {} AS j FROM ({PROVIDER_CALLS} WHERE r.caller || '' IS NOT NULL \
         AND r.received_at_us >= $1 AND (r.received_at_us > $1 OR r.id > $2) \
         ORDER BY r.received_at_us, r.id LIMIT {rows}) o) o",
        json_row(columns)
    )
}

/// `caller`'s provider calls in flight at `$1` (at most 20, oldest first), in the columns
/// of [`ATTEMPTS_IN_FLIGHT_AT`].
pub fn provider_calls_in_flight_at(caller: &str) -> String {
    format!(
        "SELECT order_id, op, 0 AS attempt_no, started_at_us, finished_at_us, outcome \
         FROM ({PROVIDER_CALLS} WHERE r.caller = {}) c \
         WHERE started_at_us <= $1 AND finished_at_us > $1 ORDER BY started_at_us LIMIT 20",
        literal(caller)
    )
}

/// The sink's deliveries that reached a consumer (accepted or answered as a duplicate), as
/// a table expression for [`sorted`] and [`pages`]: refused and malformed deliveries are
/// not deliveries.
pub const SINK_DELIVERED: &str = "(SELECT * FROM sink_deliveries \
     WHERE order_id IS NOT NULL AND outcome IN ('accepted', 'duplicate')) d";

/// How many distinct orders the sink accepted a confirmation for.
pub const SINK_CONFIRMED_ORDERS: &str = "SELECT COUNT(DISTINCT order_id) FROM sink_deliveries \
     WHERE outcome = 'accepted' AND event_type = 'order_confirmed'";

/// How many orders' customers were told they are confirmed (the client history).
pub const CUSTOMERS_TOLD_CONFIRMED: &str =
    "SELECT COUNT(DISTINCT order_id) FROM history_requests WHERE answer = 'confirmed'";

/// Whether the provider's request log holds any call at all.
pub const PROVIDER_ANY_CALL: &str = "SELECT 1 FROM provider_requests LIMIT 1";

/// Whether the sink saw any delivery at all.
pub const SINK_ANY_DELIVERY: &str =
    "SELECT 1 FROM sink_deliveries WHERE outcome IN ('accepted', 'duplicate') LIMIT 1";

/// Whether a client history keeps each customer's cart (histories written before it did are
/// refused by name: their arrivals cannot be read).
pub const ARRIVALS_HAVE_CARTS: &str = "SELECT cart FROM history_arrivals LIMIT 1";

/// Whether a client history's requests carry their order id (histories written before
/// they did cannot be merged by order: their answer sequences are not judged).
pub const REQUESTS_HAVE_ORDER_IDS: &str = "SELECT order_id FROM history_requests LIMIT 1";

/// A region's inventory lines: `sku`, `stock`, `reserved` (the system's own counters).
pub const INVENTORY_LINES: &str = "SELECT sku, stock, reserved FROM inventory";

/// A region's reservations summed per sku and status (`held`, `committed`, `released`).
pub const RESERVATION_TOTALS: &str =
    "SELECT sku, status, CAST(SUM(qty) AS BIGINT) AS qty FROM reservations GROUP BY sku, status";

/// The committed sales of sku `$1` that took the running total past `$2` units (at most 5,
/// in sale order): the orders that oversold.
pub fn sales_past_stock(db: &Db) -> String {
    format!(
        "SELECT order_id, running FROM (SELECT order_id, CAST(SUM(qty) OVER (ORDER BY updated_at_us, {}) \
         AS BIGINT) AS running FROM reservations WHERE sku = $1 AND status = 'committed') t \
         WHERE running > $2 ORDER BY running LIMIT 5",
        order_by(db, "order_id")
    )
}

/// The report's orders section: per order, while any answer was `pending`: the first pending answer, the first final
/// answer, and the last answer (µs).
pub const PENDING_SPANS: &str = "SELECT order_id, \
     MIN(CASE WHEN answer = 'pending' THEN finished_at_us END) AS first_pending, \
     MIN(CASE WHEN answer IN ('confirmed', 'failed') THEN finished_at_us END) AS told_final, \
     MAX(finished_at_us) AS last_answer \
     FROM history_requests GROUP BY order_id \
     HAVING MIN(CASE WHEN answer = 'pending' THEN finished_at_us END) IS NOT NULL";

/// The customers who waited longest, from the intended send time to their last answer.
pub const SLOWEST_CUSTOMERS: &str = "SELECT order_id, arrival_id, intended_at_us, finished_at_us, outcome \
     FROM history_arrivals WHERE finished_at_us IS NOT NULL \
     ORDER BY finished_at_us - intended_at_us DESC, arrival_id LIMIT $1";

/// A probe that fails with "no such column" on `table` without trace ids (records from
/// before them).
pub fn trace_probe(table: &str) -> String {
    format!("SELECT trace_id FROM {table} LIMIT 0")
}

/// The order id of the record in `table` that carries trace `$1` (`rig explain --trace`).
pub fn order_of_trace(table: &str) -> String {
    format!("SELECT order_id FROM {table} WHERE trace_id = $1 AND order_id IS NOT NULL LIMIT 1")
}

// `rig explain`: one order's records in every store, by its id (and its trace where the
// caller's keys do not follow the rig's scheme).

/// The order an arrival of the client history placed.
pub const ARRIVAL_ORDER: &str = "SELECT order_id FROM history_arrivals WHERE arrival_id = $1";
/// A few orders of the client history, for an error message.
pub const FIRST_ARRIVAL_ORDERS: &str =
    "SELECT order_id FROM history_arrivals ORDER BY arrival_id LIMIT 3";
/// A few orders of a region, for an error message.
pub const SOME_ORDERS: &str = "SELECT order_id FROM orders LIMIT 3";
/// An order's arrivals in the client history.
pub const ORDER_ARRIVALS: &str =
    "SELECT * FROM history_arrivals WHERE order_id = $1 ORDER BY arrival_id";
/// An order's requests and answers in the client history.
pub const ORDER_REQUESTS: &str =
    "SELECT * FROM history_requests WHERE order_id = $1 ORDER BY arrival_id, seq";
/// An order's transitions in a region.
pub const ORDER_TRANSITIONS: &str =
    "SELECT * FROM order_transitions WHERE order_id = $1 ORDER BY seq";
/// An order's row in a region.
pub const ORDER_ROW: &str = "SELECT * FROM orders WHERE order_id = $1";
/// An order's payment attempts in a region.
pub const ORDER_ATTEMPTS: &str =
    "SELECT * FROM payment_attempts WHERE order_id = $1 ORDER BY started_at_us, id";
/// An order's entries in a region's forward outbox.
pub const ORDER_FORWARDS: &str = "SELECT * FROM forward_outbox WHERE order_id = $1";
/// Operators' decisions on an order in a region.
pub const ORDER_DECISIONS: &str =
    "SELECT * FROM operator_decisions WHERE order_id = $1 ORDER BY id";
/// An order's outbox events in a region.
pub const ORDER_EVENTS: &str = "SELECT * FROM outbox WHERE order_id = $1 ORDER BY id";
/// An order's charges in the provider's ledger.
pub const ORDER_CHARGES: &str = "SELECT charge_id, idempotency_key, amount_cents, currency, \
     status, refunded_cents, created_at_us FROM provider_charges WHERE order_id = $1 \
     ORDER BY created_at_us";

/// The provider's requests under an order's keys (`$1` the key, `$2`..`$3` the range of
/// its derived keys) and, `by_trace`, carrying its trace (`$4`).
pub fn order_provider_requests(by_trace: bool) -> String {
    let trace = if by_trace { " OR trace_id = $4" } else { "" };
    format!(
        "SELECT * FROM provider_requests \
         WHERE idempotency_key = $1 OR (idempotency_key > $2 AND idempotency_key < $3){trace} \
         ORDER BY received_at_us, id"
    )
}

/// The sink's deliveries of an order (`$1`) and, `by_trace`, carrying its trace (`$2`).
pub fn order_deliveries(by_trace: bool) -> String {
    let trace = if by_trace { " OR trace_id = $2" } else { "" };
    format!("SELECT * FROM sink_deliveries WHERE order_id = $1{trace} ORDER BY received_at_us, id")
}
