//! Where the evidence lives and how it is read: the stores (read-only), the client history,
//! the chaos journal, and the run's parameters as the regions recorded them.

use std::path::PathBuf;

use evidence::reads;
use evidence::{
    Access, Db, HistorySource, RegionId, RunParams, RunParamsError, StoreError, StoreName, StoreUrl,
};

use crate::VerifyError;
use crate::merge::{Keyed, Sorted};
use crate::model::{
    ArrivalRow, ChargeRow, DeliveryRow, EffectRow, EventRow, OrderRow, RequestRow, StoreTag,
    TransitionRow,
};
use crate::rows::{Columns, FromColumns, decode_json_page};

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
    /// The history's requests carry order ids (so answer sequences can be judged).
    pub requests: bool,
    /// The bounds to judge by: what the run asked for when given, else what the first
    /// region recorded.
    pub params: RunParams,
    /// What each region recorded it ran with (`None`: it recorded nothing).
    pub claims: Vec<(StoreTag, Option<RunParams>)>,
    /// The event sink's delivery log (`None`: the run had no sink, e.g. an external
    /// system whose events do not reach the rig).
    pub sink: Option<Db>,
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
    pub async fn open(sources: &Sources, asked: Option<&RunParams>) -> Result<Self, VerifyError> {
        let provider = Db::open_with(&sources.store, StoreName::Provider, Access::ReadOnly).await?;
        let mut regions = Vec::new();
        for region in RegionId::ALL {
            match Db::open_with(&sources.store, StoreName::Region(region), Access::ReadOnly).await {
                Ok(db) => regions.push((tag(region), db)),
                Err(StoreError::Missing { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        // Without region stores only a run's own profile gives bounds: that is black-box
        // mode (the witnesses alone); without a profile there is nothing to judge by.
        if regions.is_empty() && asked.is_none() {
            return Err(VerifyError::NoRegions {
                store: sources.store.to_string(),
            });
        }
        let mut claims = Vec::new();
        for (tag, db) in &regions {
            match RunParams::read(db).await {
                Ok(params) => claims.push((*tag, Some(params))),
                // With the run's own parameters, a system that recorded none is still
                // judged; without them there are no bounds to judge by.
                Err(RunParamsError::Missing { .. }) if asked.is_some() => claims.push((*tag, None)),
                Err(err) => return Err(err.into()),
            }
        }
        let params = match (asked, claims.first()) {
            (Some(asked), _) => asked.clone(),
            (None, Some((_, Some(claimed)))) => claimed.clone(),
            (None, _) => {
                return Err(VerifyError::Read {
                    what: "run parameters",
                    reason: "no region recorded them".into(),
                });
            }
        };
        let history = match &sources.history {
            None => None,
            Some(source) => {
                Some(
                    source
                        .open_read_only()
                        .await
                        .map_err(|reason| VerifyError::Read {
                            what: "client history",
                            reason,
                        })?,
                )
            }
        };
        if let Some(db) = &history
            && !has_column(db, reads::ARRIVALS_HAVE_CARTS).await?
        {
            return Err(VerifyError::Read {
                what: "client history",
                reason: format!(
                    "{}: it was written by an older version of the rig (no customer carts); verify it with that version",
                    db.location
                ),
            });
        }
        let requests = match &history {
            Some(db) => has_column(db, reads::REQUESTS_HAVE_ORDER_IDS).await?,
            None => false,
        };
        let sink = match Db::open_with(&sources.store, StoreName::Sink, Access::ReadOnly).await {
            Ok(db) => Some(db),
            Err(StoreError::Missing { .. }) => None,
            Err(err) => return Err(err.into()),
        };
        Ok(Self {
            sink,
            provider,
            regions,
            history,
            requests,
            params,
            claims,
        })
    }
}

impl Stores {
    /// What the event sink's log holds.
    pub async fn sink_evidence(&self) -> Result<crate::invariants::SinkEvidence, VerifyError> {
        use crate::invariants::SinkEvidence;
        let Some(db) = &self.sink else {
            return Ok(SinkEvidence::Absent);
        };
        let any = sqlx::query(reads::SINK_ANY_DELIVERY)
            .fetch_optional(&db.pool)
            .await?;
        Ok(match any {
            Some(_) => SinkEvidence::Delivered,
            None => SinkEvidence::Silent,
        })
    }
}

/// Whether the column a probe selects exists: a missing column is `false`, any other error
/// (a wrong schema, the network) is an error.
pub(crate) async fn has_column(db: &Db, probe: &str) -> Result<bool, VerifyError> {
    match sqlx::query(sqlx::AssertSqlSafe(probe.to_string()))
        .fetch_optional(&db.pool)
        .await
    {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(err))
            if err.message().contains("no such column")
                || (err.message().contains("column")
                    && err.message().contains("does not exist")) =>
        {
            Ok(false)
        }
        Err(err) => Err(err.into()),
    }
}

macro_rules! keyed {
    ($($row:ty),*) => {$(
        impl Keyed for $row {
            fn key(&self) -> &[u8] {
                self.order_id.as_bytes()
            }
        }
    )*};
}
keyed!(
    OrderRow,
    TransitionRow,
    EventRow,
    EffectRow,
    ChargeRow,
    ArrivalRow,
    RequestRow,
    DeliveryRow
);

impl FromColumns for OrderRow {
    const COLUMNS: &'static str =
        "order_id, owner_region, amount_cents, status, reason, version, created_at_us";
    fn from_columns(c: &mut impl Columns, store: StoreTag) -> Result<Self, String> {
        Ok(Self {
            store,
            order_id: c.key()?,
            owner_region: c.word()?,
            amount_cents: c.int()?,
            status: c.word()?,
            reason: c.opt_text()?,
            version: c.int()?,
            created_at_us: c.int()?,
        })
    }
}

impl FromColumns for TransitionRow {
    const COLUMNS: &'static str =
        "order_id, seq, from_state, to_state, at_us, reason, actor, region";
    fn from_columns(c: &mut impl Columns, store: StoreTag) -> Result<Self, String> {
        Ok(Self {
            store,
            order_id: c.key()?,
            seq: c.int()?,
            from_state: c.opt_word()?,
            to_state: c.word()?,
            at_us: c.int()?,
            reason: c.opt_text()?,
            actor: c.word()?,
            region: c.word()?,
        })
    }
}

impl FromColumns for EventRow {
    const COLUMNS: &'static str = "order_id, event_id, event_type, created_at_us, published_at_us";
    fn from_columns(c: &mut impl Columns, store: StoreTag) -> Result<Self, String> {
        Ok(Self {
            store,
            order_id: c.key()?,
            event_id: c.key()?,
            event_type: c.word()?,
            created_at_us: c.int()?,
            published_at_us: c.opt_int()?,
        })
    }
}

impl FromColumns for EffectRow {
    const COLUMNS: &'static str = "order_id, event_id, at_us";
    fn from_columns(c: &mut impl Columns, store: StoreTag) -> Result<Self, String> {
        Ok(Self {
            store,
            order_id: c.key()?,
            event_id: c.key()?,
            at_us: c.int()?,
        })
    }
}

impl FromColumns for ChargeRow {
    const COLUMNS: &'static str =
        "charge_id, idempotency_key, order_id, amount_cents, status, refunded_cents, created_at_us";
    fn from_columns(c: &mut impl Columns, _store: StoreTag) -> Result<Self, String> {
        Ok(Self {
            charge_id: c.key()?,
            idempotency_key: c.key()?,
            order_id: c.key()?,
            amount_cents: c.int()?,
            status: c.word()?,
            refunded_cents: c.int()?,
            created_at_us: c.int()?,
        })
    }
}

impl FromColumns for ArrivalRow {
    const COLUMNS: &'static str = "arrival_id, order_id, phase, intended_at_us, sent_at_us, \
                                   finished_at_us, outcome, cart";
    fn from_columns(c: &mut impl Columns, _store: StoreTag) -> Result<Self, String> {
        Ok(Self {
            arrival_id: c.int()?,
            order_id: c.key()?,
            phase: c.word()?,
            intended_at_us: c.int()?,
            sent_at_us: c.opt_int()?,
            finished_at_us: c.opt_int()?,
            outcome: c.word()?,
            cart: c.opt_text()?,
        })
    }
}

impl FromColumns for RequestRow {
    const COLUMNS: &'static str =
        "order_id, arrival_id, seq, kind, sent_at_us, finished_at_us, http_status, answer";
    fn from_columns(c: &mut impl Columns, _store: StoreTag) -> Result<Self, String> {
        Ok(Self {
            order_id: c.key()?,
            arrival_id: c.int()?,
            seq: c.int()?,
            kind: c.word()?,
            sent_at_us: c.int()?,
            finished_at_us: c.int()?,
            http_status: c.opt_int()?,
            answer: c.word()?,
        })
    }
}

impl FromColumns for DeliveryRow {
    const COLUMNS: &'static str = "order_id, event_id, event_type, caller, received_at_us, outcome";
    fn from_columns(c: &mut impl Columns, _store: StoreTag) -> Result<Self, String> {
        Ok(Self {
            order_id: c.key()?,
            event_id: c.opt_key()?.unwrap_or_default(),
            event_type: c.opt_word()?.unwrap_or_default(),
            caller: c.opt_word()?,
            received_at_us: c.int()?,
            outcome: c.word()?,
        })
    }
}

/// Rows per SQLite page: enough to amortise a query, small enough to keep memory flat
/// (SQLite builds a page in-process, where large strings cost allocator time).
const PAGE_ROWS: usize = 4_000;

/// `table`'s rows in (order id, `then`) order as a sorted stream: streamed with `COPY`
/// from PostgreSQL (every PostgreSQL store has its [`Db::postgres`] target), paged as JSON
/// from SQLite. (order id, `then`) is the key of an index of the table, and PostgreSQL
/// reads it under [`reads::SORTED_PLAN`]: the index gives the order, so nothing is sorted
/// (a sort of a ten-million-row table spills to disk) whatever the planner's statistics.
/// Rows of one order the index leaves in no particular order are put in order in
/// [`crate::merge_orders`].
fn stream<T: FromColumns + Keyed + Send + 'static>(
    db: &Db,
    name: &'static str,
    store: StoreTag,
    table: &str,
    then: &str,
) -> Sorted<T> {
    match &db.postgres {
        Some(target) => {
            let sql = reads::sorted(db, T::COLUMNS, table, then);
            Sorted::spawn_copy(name, target.clone(), reads::SORTED_PLAN, sql, store)
        }
        None => Sorted::spawn_pages(
            name,
            db.pool.clone(),
            reads::pages(T::COLUMNS, table, then, PAGE_ROWS),
            PAGE_ROWS,
            move |text: &str| {
                decode_json_page(text, store).map_err(|e| format!("{name} page: {e}"))
            },
        ),
    }
}

/// The sorted streams of one region store.
pub struct RegionStreams {
    pub orders: Sorted<OrderRow>,
    pub transitions: Sorted<TransitionRow>,
    pub events: Sorted<EventRow>,
    pub effects: Sorted<EffectRow>,
}

impl RegionStreams {
    pub fn spawn(store: StoreTag, db: &Db) -> Self {
        Self {
            orders: stream(db, "orders", store, "orders", ""),
            transitions: stream(db, "order_transitions", store, "order_transitions", "seq"),
            events: stream(db, "outbox", store, "outbox", ""),
            effects: stream(db, "fulfilments", store, "fulfilments", ""),
        }
    }
}

/// The provider's charges, by order.
pub fn charges(db: &Db) -> Sorted<ChargeRow> {
    stream(
        db,
        "provider_charges",
        "provider",
        "provider_charges",
        "created_at_us",
    )
}

/// The client's requests and answers, by order, arrival and sending order.
pub fn requests(db: &Db) -> Sorted<RequestRow> {
    stream(
        db,
        "history_requests",
        "history",
        "history_requests",
        "arrival_id, seq",
    )
}

/// The client's arrivals, by order.
pub fn arrivals(db: &Db) -> Sorted<ArrivalRow> {
    stream(db, "history_arrivals", "history", "history_arrivals", "")
}

/// The event sink's deliveries, by order and arrival.
pub fn deliveries(db: &Db) -> Sorted<DeliveryRow> {
    stream(
        db,
        "sink_deliveries",
        "sink",
        reads::SINK_DELIVERED,
        "received_at_us",
    )
}
