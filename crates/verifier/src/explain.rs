//! One order's story after the fact, on one timeline: what its customer sent and was told
//! (the client history), what each region did (transitions, forward-outbox entries, payment
//! attempts, outbox events, operators' manual repairs), what the provider saw (requests and charges), what the event
//! sink received, and the fault windows it lived through; then a paragraph in plain words.
//!
//! Every row is found by the order id through an index (the provider's by the order's keys,
//! `pay:<order_id>` and `pay:<order_id>:<n>`), so one order is explained in milliseconds
//! however large the run.
//!
//! Times: each line keeps the time of the record it comes from. The client, the provider and
//! the sink write on the rig's machine clock; a region writes on its own, which a `clock`
//! fault may have shifted (the line then says so).

use evidence::reads;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::report::FaultWindow;
use crate::sources::Stores;
use crate::{VerifyError, model};

/// One thing that happened to the order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    /// Wall-clock µs of the record.
    pub at_us: i64,
    /// Seconds since the load started, when that is known.
    pub since_start_seconds: Option<f64>,
    /// Who acted: `client`, `region a checkout`, `region b repair worker`, `provider`,
    /// `sink`, `chaos`, ...
    pub actor: String,
    pub what: String,
    /// The record it comes from (`history_requests`, `order_transitions`, ...).
    pub record: String,
    /// The W3C trace id the record carries, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The request id the record carries (the customer's request it was written for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Line {
    fn ids(mut self, (trace_id, request_id): (Option<String>, Option<String>)) -> Self {
        self.trace_id = trace_id;
        self.request_id = request_id;
        self
    }
}

/// An order's timeline and its summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Explanation {
    pub order_id: String,
    pub arrival_id: Option<i64>,
    pub customer_id: Option<String>,
    /// The customer's trace id (from the client history, else the owner's order row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The load's start (wall-clock µs), which `since_start_seconds` counts from.
    pub load_start_us: Option<i64>,
    pub lines: Vec<Line>,
    /// One paragraph in plain words.
    pub summary: String,
}

/// Why an order could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("{0}")]
    NotFound(String),
}

impl From<sqlx::Error> for ExplainError {
    fn from(err: sqlx::Error) -> Self {
        Self::Verify(err.into())
    }
}

/// The order id of arrival `arrival` (its index in the load schedule), from the client
/// history.
pub async fn order_of_arrival(stores: &Stores, arrival: i64) -> Result<String, ExplainError> {
    let Some(history) = &stores.history else {
        return Err(ExplainError::NotFound(
            "selecting by arrival needs the client history (history.db, or --history)".into(),
        ));
    };
    let found: Option<String> = sqlx::query_scalar(reads::ARRIVAL_ORDER)
        .bind(arrival)
        .fetch_optional(&history.pool)
        .await?;
    found.ok_or_else(|| {
        ExplainError::NotFound(format!(
            "the client history has no arrival {arrival}; arrivals are numbered from 0 in schedule order"
        ))
    })
}

/// A few order ids the records hold, for an error message.
async fn some_orders(stores: &Stores) -> Vec<String> {
    let db = stores
        .history
        .as_ref()
        .or_else(|| stores.regions.first().map(|(_, db)| db));
    let Some(db) = db else {
        return Vec::new();
    };
    let table = if stores.history.is_some() {
        reads::FIRST_ARRIVAL_ORDERS
    } else {
        reads::SOME_ORDERS
    };
    sqlx::query_scalar(table)
        .fetch_all(&db.pool)
        .await
        .unwrap_or_default()
}

struct Clock {
    load_start_us: Option<i64>,
}

impl Clock {
    fn line(
        &self,
        at_us: i64,
        actor: impl Into<String>,
        what: String,
        record: &'static str,
    ) -> Line {
        Line {
            at_us,
            since_start_seconds: self.load_start_us.map(|start| (at_us - start) as f64 / 1e6),
            actor: actor.into(),
            what,
            record: record.to_string(),
            trace_id: None,
            request_id: None,
        }
    }

    fn seconds(&self, at_us: i64) -> String {
        match self.load_start_us {
            Some(start) => format!("{:.1} s", (at_us - start) as f64 / 1e6),
            None => evidence::time::rfc3339(at_us),
        }
    }
}

fn int(row: &AnyRow, column: &str) -> Result<i64, sqlx::Error> {
    row.try_get::<i64, _>(column)
}

fn opt_int(row: &AnyRow, column: &str) -> Result<Option<i64>, sqlx::Error> {
    row.try_get::<Option<i64>, _>(column)
}

fn text(row: &AnyRow, column: &str) -> Result<String, sqlx::Error> {
    row.try_get::<String, _>(column)
}

fn opt_text(row: &AnyRow, column: &str) -> Result<Option<String>, sqlx::Error> {
    row.try_get::<Option<String>, _>(column)
}

/// The correlation ids of a row (`SELECT *`): none where the record predates them.
fn ids(row: &AnyRow) -> (Option<String>, Option<String>) {
    let get = |column: &str| row.try_get::<Option<String>, _>(column).ok().flatten();
    (get("trace_id"), get("request_id"))
}

/// Whether `table` of `db` has a `trace_id` column.
async fn traced(db: &evidence::Db, table: &str) -> Result<bool, VerifyError> {
    crate::sources::has_column(db, &evidence::reads::trace_probe(table)).await
}

/// The order id of the trace `text` (a 32-hex trace id or a whole `traceparent`): from the
/// client history, else a region's orders, else the sink's deliveries.
pub async fn order_of_trace(stores: &Stores, text: &str) -> Result<String, ExplainError> {
    let trace = evidence::trace::trace_id_of(text)
        .map_err(|err| ExplainError::NotFound(format!("--trace {text:?}: {err}")))?
        .to_string();
    let mut places: Vec<(&evidence::Db, &str)> = Vec::new();
    if let Some(history) = &stores.history {
        places.push((history, "history_arrivals"));
    }
    places.extend(stores.regions.iter().map(|(_, db)| (db, "orders")));
    if let Some(sink) = &stores.sink {
        places.push((sink, "sink_deliveries"));
    }
    let mut searched = false;
    for (db, table) in places {
        if !traced(db, table).await? {
            continue;
        }
        searched = true;
        let found: Option<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(evidence::reads::order_of_trace(table)))
                .bind(&trace)
                .fetch_optional(&db.pool)
                .await?;
        if let Some(order_id) = found {
            return Ok(order_id);
        }
    }
    Err(ExplainError::NotFound(if searched {
        format!("no record carries trace {trace}")
    } else {
        "these records carry no trace ids (written by a version without them)".to_string()
    }))
}

fn status_of(status: Option<i64>) -> String {
    status.map_or_else(|| "no answer".to_string(), |s| s.to_string())
}

/// What the summary is built from, gathered while reading.
#[derive(Default)]
struct Facts {
    placed_at: Option<i64>,
    entry: Option<String>,
    owner: Option<String>,
    first_pending: Option<i64>,
    last_pending: Option<i64>,
    told_final: Option<(String, i64)>,
    client_outcome: Option<String>,
    charges: Vec<(String, String, i64)>,
    timeouts: usize,
    lookups: usize,
    final_state: Option<(String, String, i64)>,
    sink_confirmations: usize,
    held_by_gateway: Option<String>,
    shifted_clock: bool,
}

/// Which records carry the order's trace id, and which do not.
#[derive(Default)]
struct Carried {
    with: std::collections::BTreeSet<String>,
    without: std::collections::BTreeSet<String>,
}

impl Carried {
    fn note(&mut self, trace: Option<&str>, line: &Line) {
        let Some(trace) = trace else { return };
        if line.trace_id.as_deref() == Some(trace) {
            self.with.insert(line.record.clone());
        } else if line.trace_id.is_none() {
            self.without.insert(line.record.clone());
        }
    }
}

/// Reads every record of `order_id` and puts them on one timeline. `faults` are the chaos
/// journal's windows; `load_start_us` the load's start, if known.
pub async fn explain(
    stores: &Stores,
    order_id: &str,
    faults: &[FaultWindow],
    load_start_us: Option<i64>,
) -> Result<Explanation, ExplainError> {
    let clock = Clock { load_start_us };
    let mut lines = Vec::new();
    let mut facts = Facts::default();
    let mut arrival_id = None;
    let mut customer_id = None;
    let mut trace_id: Option<String> = None;
    if let Some(history) = &stores.history {
        let arrivals = sqlx::query(reads::ORDER_ARRIVALS)
            .bind(order_id)
            .fetch_all(&history.pool)
            .await?;
        for row in &arrivals {
            let id = int(row, "arrival_id")?;
            arrival_id.get_or_insert(id);
            if trace_id.is_none() {
                trace_id = ids(row).0;
            }
            customer_id.get_or_insert(text(row, "customer_id")?);
            let intended = int(row, "intended_at_us")?;
            let entry = text(row, "entry_region")?;
            facts.placed_at.get_or_insert(intended);
            facts.entry.get_or_insert(entry.clone());
            lines.push(clock.line(
                intended,
                "client",
                format!(
                    "arrival {id} ({}) due: customer {} checks out at region {entry}",
                    text(row, "phase")?,
                    text(row, "customer_id")?
                ),
                "history_arrivals",
            ));
            let outcome = text(row, "outcome")?;
            if let Some(done) = opt_int(row, "finished_at_us")? {
                let detail = opt_text(row, "detail")?
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                lines.push(clock.line(
                    done,
                    "client",
                    format!("customer done: {outcome}{detail}"),
                    "history_arrivals",
                ));
            }
            facts.client_outcome = Some(outcome);
        }
        if stores.requests {
            let requests = sqlx::query(reads::ORDER_REQUESTS)
                .bind(order_id)
                .fetch_all(&history.pool)
                .await?;
            for row in &requests {
                let kind = text(row, "kind")?;
                let region = text(row, "region")?;
                let sent = int(row, "sent_at_us")?;
                let finished = int(row, "finished_at_us")?;
                let answer = text(row, "answer")?;
                let status = status_of(opt_int(row, "http_status")?);
                let retry_after = opt_int(row, "retry_after_ms")?
                    .map(|ms| format!(", Retry-After {ms} ms"))
                    .unwrap_or_default();
                let verb = if kind == "poll" || kind == "final_poll" {
                    "GET /v1/orders"
                } else {
                    "POST /v1/checkout"
                };
                lines.push(clock.line(
                    sent,
                    "client",
                    format!(
                        "{kind} {verb} to region {region} -> {status} {answer} after {:.0} ms{retry_after}",
                        (finished - sent) as f64 / 1e3
                    ),
                    "history_requests",
                ).ids((trace_id.clone(), ids(row).1)));
                match answer.as_str() {
                    "pending" => {
                        facts.first_pending.get_or_insert(finished);
                        facts.last_pending = Some(finished);
                    }
                    "confirmed" | "failed" if facts.told_final.is_none() => {
                        facts.told_final = Some((answer.clone(), finished));
                    }
                    _ => {}
                }
            }
        }
    }
    for (tag, db) in &stores.regions {
        let region = model::store_region(tag).unwrap_or("?");
        let shifted = faults
            .iter()
            .any(|w| w.kind == "clock" && w.target.as_deref() == Some(region));
        let clock_note = if shifted {
            " [region clock, shifted during the run]"
        } else {
            ""
        };
        let rows = sqlx::query(reads::ORDER_TRANSITIONS)
            .bind(order_id)
            .fetch_all(&db.pool)
            .await?;
        if !rows.is_empty() {
            facts.owner.get_or_insert(region.to_string());
            facts.shifted_clock |= shifted;
            if trace_id.is_none() {
                let order = sqlx::query(reads::ORDER_ROW)
                    .bind(order_id)
                    .fetch_optional(&db.pool)
                    .await?;
                trace_id = order.as_ref().and_then(|row| ids(row).0);
            }
        }
        for row in &rows {
            let actor = text(row, "actor")?;
            let writer = text(row, "region")?;
            let to = text(row, "to_state")?;
            let at = int(row, "at_us")?;
            let reason = opt_text(row, "reason")?
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            let from = opt_text(row, "from_state")?.unwrap_or_else(|| "new".into());
            let who = match actor.as_str() {
                "repair" => format!("region {writer} repair worker"),
                other => format!("region {writer} {other}"),
            };
            if matches!(to.as_str(), "order_confirmed" | "failed_safely") {
                facts.final_state = Some((to.clone(), who.clone(), at));
            }
            lines.push(
                clock
                    .line(
                        at,
                        who,
                        format!("{from} -> {to}{reason}{clock_note}"),
                        "order_transitions",
                    )
                    .ids(ids(row)),
            );
        }
        let attempts = sqlx::query(reads::ORDER_ATTEMPTS)
            .bind(order_id)
            .fetch_all(&db.pool)
            .await?;
        for row in &attempts {
            let op = text(row, "op")?;
            let outcome = text(row, "outcome")?;
            let started = int(row, "started_at_us")?;
            let took = int(row, "finished_at_us")? - started;
            let detail = opt_text(row, "detail")?
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            // No answer within its per-try timeout (the outcome is then unknown).
            if outcome == "unknown" || outcome.contains("timeout") {
                facts.timeouts += 1;
            }
            if op == "lookup" {
                facts.lookups += 1;
            }
            let what = match op.as_str() {
                "charge" => format!(
                    "charge try {}{} -> {outcome} ({}) after {:.0} ms{detail}",
                    int(row, "attempt_no")?,
                    if int(row, "is_retry")? == 1 {
                        " (a retry)"
                    } else {
                        ""
                    },
                    status_of(opt_int(row, "http_status")?),
                    took as f64 / 1e3
                ),
                other => format!(
                    "provider {other} -> {outcome} ({}) after {:.0} ms{detail}",
                    status_of(opt_int(row, "http_status")?),
                    took as f64 / 1e3
                ),
            };
            lines.push(
                clock
                    .line(
                        started,
                        format!("region {region} payments"),
                        format!("{what}{clock_note}"),
                        "payment_attempts",
                    )
                    .ids(ids(row)),
            );
        }
        let forwards = sqlx::query(reads::ORDER_FORWARDS)
            .bind(order_id)
            .fetch_all(&db.pool)
            .await?;
        for row in &forwards {
            let owner = text(row, "owner_region")?;
            facts.held_by_gateway = Some(region.to_string());
            lines.push(clock.line(
                int(row, "created_at_us")?,
                format!("region {region} gateway"),
                format!(
                    "owner region {owner} unreachable: intent held in the forward outbox{clock_note}"
                ),
                "forward_outbox",
            ).ids(ids(row)));
            if let Some(delivered) = opt_int(row, "delivered_at_us")? {
                lines.push(clock.line(
                    delivered,
                    format!("region {region} gateway"),
                    format!(
                        "held intent delivered to region {owner} after {} sends -> {}{clock_note}",
                        int(row, "attempts")?,
                        status_of(opt_int(row, "answer_status")?)
                    ),
                    "forward_outbox",
                ).ids(ids(row)));
            } else {
                lines.push(clock.line(
                    int(row, "created_at_us")?,
                    format!("region {region} gateway"),
                    format!(
                        "still held ({}) after {} sends",
                        text(row, "state")?,
                        int(row, "attempts")?
                    ),
                    "forward_outbox",
                ));
            }
        }
        // Manual repairs (stores from before the audit trail have no such table).
        let decisions = sqlx::query(reads::ORDER_DECISIONS)
            .bind(order_id)
            .fetch_all(&db.pool)
            .await
            .unwrap_or_default();
        for row in &decisions {
            let extra = [opt_text(row, "provider_ref")?, opt_text(row, "detail")?]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
            lines.push(
                clock
                    .line(
                        int(row, "at_us")?,
                        format!("operator {}", text(row, "operator")?),
                        format!(
                            "{} {} at region {region}: {}{}{clock_note}",
                            text(row, "decision")?,
                            text(row, "outcome")?,
                            text(row, "note")?,
                            if extra.is_empty() {
                                String::new()
                            } else {
                                format!(" [{extra}]")
                            }
                        ),
                        "operator_decisions",
                    )
                    .ids(ids(row)),
            );
        }
        let events = sqlx::query(reads::ORDER_EVENTS)
            .bind(order_id)
            .fetch_all(&db.pool)
            .await?;
        for row in &events {
            let event = text(row, "event_id")?;
            let kind = text(row, "event_type")?;
            lines.push(
                clock
                    .line(
                        int(row, "created_at_us")?,
                        format!("region {region} outbox"),
                        format!("event {event} ({kind}) written{clock_note}"),
                        "outbox",
                    )
                    .ids(ids(row)),
            );
            if let Some(published) = opt_int(row, "published_at_us")? {
                lines.push(
                    clock
                        .line(
                            published,
                            format!("region {region} outbox relay"),
                            format!("event {event} published{clock_note}"),
                            "outbox",
                        )
                        .ids(ids(row)),
                );
            }
        }
    }
    let keys = (
        format!("pay:{order_id}"),
        format!("pay:{order_id}:"),
        format!("pay:{order_id};"),
    );
    // By the order's keys, and by its trace: a caller whose keys do not follow the rig's
    // scheme (a system the rig did not build) is found by the trace it passed on.
    let by_trace = trace_id.is_some() && traced(&stores.provider, "provider_requests").await?;
    let mut query = sqlx::query(sqlx::AssertSqlSafe(reads::order_provider_requests(
        by_trace,
    )))
    .bind(&keys.0)
    .bind(&keys.1)
    .bind(&keys.2);
    if by_trace {
        query = query.bind(trace_id.clone().unwrap_or_default());
    }
    let requests = query.fetch_all(&stores.provider.pool).await?;
    for row in &requests {
        let caller = opt_text(row, "caller")?
            .map(|c| format!("from region {c}"))
            .unwrap_or_else(|| "from an unattributed caller".into());
        let key = opt_text(row, "idempotency_key")?.unwrap_or_else(|| "(no key)".into());
        let received = int(row, "received_at_us")?;
        let took = int(row, "finished_at_us")? - received;
        let gone = match opt_int(row, "abandoned_at_us")? {
            Some(at) => format!(
                "; the caller had gone {:.0} ms in",
                (at - received) as f64 / 1e3
            ),
            None => String::new(),
        };
        lines.push(
            clock
                .line(
                    received,
                    "provider",
                    format!(
                        "{} {key} {caller} -> {} {} after {:.0} ms{gone}",
                        text(row, "op")?,
                        status_of(opt_int(row, "http_status")?),
                        text(row, "outcome")?,
                        took as f64 / 1e3
                    ),
                    "provider_requests",
                )
                .ids(ids(row)),
        );
    }
    let charges = sqlx::query(reads::ORDER_CHARGES)
        .bind(order_id)
        .fetch_all(&stores.provider.pool)
        .await?;
    for row in &charges {
        let id = text(row, "charge_id")?;
        let status = text(row, "status")?;
        let amount = int(row, "amount_cents")?;
        let at = int(row, "created_at_us")?;
        facts.charges.push((id.clone(), status.clone(), at));
        lines.push(clock.line(
            at,
            "provider",
            format!(
                "charge {id} under {}: {} {} {status}{}",
                text(row, "idempotency_key")?,
                crate::invariants::money(i128::from(amount)),
                text(row, "currency")?,
                match int(row, "refunded_cents")? {
                    0 => String::new(),
                    r => format!(", refunded {}", crate::invariants::money(i128::from(r))),
                }
            ),
            "provider_charges",
        ));
    }
    if let Some(sink) = &stores.sink {
        let by_trace = trace_id.is_some() && traced(sink, "sink_deliveries").await?;
        let mut query =
            sqlx::query(sqlx::AssertSqlSafe(reads::order_deliveries(by_trace))).bind(order_id);
        if by_trace {
            query = query.bind(trace_id.clone().unwrap_or_default());
        }
        let deliveries = query.fetch_all(&sink.pool).await?;
        for row in &deliveries {
            let kind = opt_text(row, "event_type")?.unwrap_or_default();
            let outcome = text(row, "outcome")?;
            if kind == "order_confirmed" && outcome != "duplicate" {
                facts.sink_confirmations += 1;
            }
            lines.push(
                clock
                    .line(
                        int(row, "received_at_us")?,
                        "sink",
                        format!(
                            "received event {} ({kind}) from region {} -> {} {outcome}",
                            opt_text(row, "event_id")?.unwrap_or_default(),
                            opt_text(row, "caller")?.unwrap_or_else(|| "?".into()),
                            int(row, "http_status")?
                        ),
                        "sink_deliveries",
                    )
                    .ids(ids(row)),
            );
        }
    }
    if lines.is_empty() {
        let examples = some_orders(stores).await;
        return Err(ExplainError::NotFound(format!(
            "no record of order {order_id:?} in the client history, the regions, the provider or the sink{}",
            if examples.is_empty() {
                String::new()
            } else {
                format!("; order ids here look like {}", examples.join(", "))
            }
        )));
    }
    lines.sort_by_key(|l| l.at_us);
    let span = (
        lines.first().map_or(0, |l| l.at_us),
        lines.last().map_or(0, |l| l.at_us),
    );
    let lived_through: Vec<&FaultWindow> = faults
        .iter()
        .filter(|w| w.start_us <= span.1 && w.end_us.is_none_or(|end| end >= span.0))
        .collect();
    for window in &lived_through {
        let name = fault_name(window);
        lines.push(clock.line(
            window.start_us,
            "chaos",
            format!("fault on: {name}"),
            "chaos journal",
        ));
        if let Some(end) = window.end_us {
            lines.push(clock.line(
                end,
                "chaos",
                format!("fault healed: {name}"),
                "chaos journal",
            ));
        }
    }
    lines.sort_by_key(|l| l.at_us);
    let mut carried = Carried::default();
    for line in lines.iter().filter(|l| {
        l.record != "chaos journal"
            && l.record != "provider_charges"
            && l.record != "history_arrivals"
    }) {
        carried.note(trace_id.as_deref(), line);
    }
    let mut summary = summarize(&facts, &clock, &lived_through);
    if let Some(trace) = &trace_id {
        summary.push_str(&format!(
            " Trace {trace}: carried by {}",
            if carried.with.is_empty() {
                "no record".to_string()
            } else {
                carried.with.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        ));
        if !carried.without.is_empty() {
            summary.push_str(&format!(
                "; missing from {} (a hop that did not pass it on, or records from before trace ids)",
                carried.without.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        summary.push('.');
    }
    Ok(Explanation {
        order_id: order_id.to_string(),
        arrival_id,
        customer_id,
        trace_id,
        load_start_us,
        lines,
        summary,
    })
}

fn fault_name(window: &FaultWindow) -> String {
    let target = window
        .target
        .as_deref()
        .map(|t| format!(" on {t}"))
        .unwrap_or_default();
    match &window.name {
        Some(name) => format!("{name} ({}{target})", window.kind),
        None => format!("{}{target}", window.kind),
    }
}

fn summarize(facts: &Facts, clock: &Clock, faults: &[&FaultWindow]) -> String {
    let mut parts = Vec::new();
    if let Some(at) = facts.placed_at {
        parts.push(format!(
            "placed at {} at region {}{}",
            clock.seconds(at),
            facts.entry.as_deref().unwrap_or("?"),
            match (&facts.owner, &facts.entry) {
                (Some(owner), Some(entry)) if owner != entry => format!(" (owner region {owner})"),
                _ => String::new(),
            }
        ));
    }
    if let Some(gateway) = &facts.held_by_gateway {
        parts.push(format!(
            "region {gateway} held the intent while the owner was unreachable"
        ));
    }
    let authorized: Vec<_> = facts
        .charges
        .iter()
        .filter(|(_, status, _)| status == "authorized")
        .collect();
    parts.push(match (facts.charges.len(), authorized.as_slice()) {
        (0, _) => "never charged".to_string(),
        (1, [(_, _, at)]) => format!("paid once at {}", clock.seconds(*at)),
        (n, []) => format!("{n} charge(s), none left authorized"),
        (n, live) => format!(
            "charged {n} times, {} left authorized (a duplicate charge)",
            live.len()
        ),
    });
    if facts.timeouts > 0 {
        parts.push(format!(
            "{} provider call(s) timed out (no answer within the per-try timeout)",
            facts.timeouts
        ));
    }
    if facts.lookups > 0 {
        parts.push(format!(
            "the repair worker looked the payment up {} time(s)",
            facts.lookups
        ));
    }
    match &facts.final_state {
        Some((state, who, at)) => {
            // The faults it lived through before it was decided: over, or still on.
            let names = |over: bool| {
                faults
                    .iter()
                    .filter(|w| w.start_us <= *at)
                    .filter(|w| w.end_us.is_some_and(|end| end <= *at) == over)
                    .map(|w| fault_name(w))
                    .collect::<Vec<_>>()
            };
            let (after, during) = (names(true), names(false));
            let mut context = String::new();
            if !after.is_empty() {
                context.push_str(&format!(", after {}", after.join(" and ")));
            }
            if !during.is_empty() {
                context.push_str(&format!(", during {}", during.join(" and ")));
            }
            parts.push(format!(
                "{} by {who} at {}{context}",
                if state == "order_confirmed" {
                    "confirmed"
                } else {
                    "failed safely"
                },
                clock.seconds(*at),
            ));
        }
        None if facts.owner.is_some() => parts.push("never reached a final state".to_string()),
        None => {}
    }
    match (facts.first_pending, facts.last_pending, &facts.told_final) {
        (Some(first), Some(last), Some((answer, at))) => parts.push(format!(
            "the customer saw pending for {:.1} s and was told {answer} at {}",
            (at.max(&last) - first) as f64 / 1e6,
            clock.seconds(*at)
        )),
        (Some(first), Some(last), None) => parts.push(format!(
            "the customer saw pending from {} to {} and was never told a final outcome",
            clock.seconds(first),
            clock.seconds(last)
        )),
        (None, _, Some((answer, at))) => parts.push(format!(
            "the customer was told {answer} at {}",
            clock.seconds(*at)
        )),
        _ => {
            if let Some(outcome) = &facts.client_outcome {
                parts.push(format!("the customer's outcome: {outcome}"));
            }
        }
    }
    if facts.sink_confirmations > 0 {
        parts.push(format!(
            "{} confirmation event(s) reached the sink",
            facts.sink_confirmations
        ));
    }
    if facts.shifted_clock {
        parts.push(
            "(the owner region's clock was shifted during the run: its times are its own)"
                .to_string(),
        );
    }
    let mut text = parts.join("; ");
    if let Some(first) = text.get(..1) {
        text = format!("{}{}.", first.to_uppercase(), &text[1..]);
    }
    text
}
