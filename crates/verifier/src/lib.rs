//! The verifier: business invariants over the reference system's durable records and the
//! client's history, each answered `pass | fail | unknown` with a count and dossiers of the
//! rows that prove a failure (DESIGN §6).
//!
//! It reads only durable records (the provider's ledger and request log, the region stores,
//! the event sink's log, the client history, the chaos journal), never the live HTTP API. Per-order invariants run over one
//! merge of every store's rows sorted by `order_id`, so memory stays bounded however large the
//! run; sums are i128.
//!
//! # Layout
//! - [`sources`]: the [`Sources`], opening stores read-only, the run's parameters, the sorted
//!   row streams.
//! - [`merge`]: sorted streams on background tasks and their merge by key.
//! - [`rows`]: decoding rows from PostgreSQL `COPY` lines and SQLite JSON pages.
//! - [`model`]: the rows, and [`OrderEvidence`] (one order across every store).
//! - [`invariants`]: one file per invariant.
//! - [`journal`]: fault windows from the chaos journal.
//! - [`explain`]: one order's records on one timeline, with a summary.
//! - [`orders`]: the report's orders section (pending times, the slowest and the
//!   longest-pending orders with their timelines).
//! - [`report`]: [`Verdict`], [`Dossier`], [`Report`] (`verdict.json`, schema in
//!   `schema/verdict.schema.json`).

pub mod explain;
pub mod invariants;
pub mod journal;
pub mod merge;
pub mod model;
pub mod orders;
pub mod report;
pub mod rows;
pub mod sources;

pub use evidence::HistorySource;
use invariants::{Context, PerOrder};
pub use model::OrderEvidence;
pub use report::{Dossier, FaultWindow, Report, Status, Verdict};
pub use sources::{Sources, Stores};

/// The JSON Schema of `verdict.json`.
pub const VERDICT_SCHEMA: &str = include_str!("../schema/verdict.schema.json");

/// Why the evidence could not be read (the verdict is then unknown: exit 3).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] evidence::StoreError),
    #[error(transparent)]
    RunParams(#[from] evidence::RunParamsError),
    #[error("no region store found at {store}: nothing to verify")]
    NoRegions { store: String },
    #[error("could not read the {what}: {reason}")]
    Read { what: &'static str, reason: String },
    #[error(
        "{stream} returned order id {key:?} after {after:?}: the store does not sort as the verifier merges"
    )]
    OutOfOrder {
        stream: &'static str,
        key: String,
        after: String,
    },
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// How to judge.
#[derive(Debug, Clone)]
pub struct Options {
    /// When the evidence ends (after the drain), wall-clock µs; default: now.
    pub end_at_us: Option<i64>,
    /// Dossiers kept per invariant.
    pub max_dossiers: usize,
    /// Client-side p99 bound for shed answers, in ms.
    pub shed_p99_ms: f64,
    /// Share of the best phase's goodput a heavier phase must keep.
    pub goodput_fraction: f64,
    /// The parameters the run asked for (its profile's `[target]`): the bounds every
    /// invariant judges by, and what the system's own record of them is checked against.
    /// `None`: the bounds are what the system recorded (and a store without that record
    /// cannot be judged).
    pub asked: Option<evidence::RunParams>,
    /// The run was interrupted (Ctrl-C, a signal, a kill) at this wall-clock µs: work still
    /// open then (pending orders, unpublished events) only reflects the interruption and is
    /// `unknown`, not a violation; the report is `partial`.
    pub interrupted_at_us: Option<i64>,
    /// A confirmation event must reach the event sink within this many ms of its customer
    /// being told the order is confirmed.
    pub event_age_ms: f64,
    /// Unit prices in cents per sku (the run's profile): what a confirmed customer's cart
    /// must have cost, where the system's own order rows cannot be read.
    pub prices: std::collections::BTreeMap<String, i64>,
    /// The provider-call limit and retry budget in the bounds are the system's; false for
    /// a black-box system the user gave no such limits for (admission-control then judges
    /// only shed latency and goodput, and is unknown unless those fail).
    pub admission_bounds: bool,
}

/// The event-age bound that follows from the outbox relay's settings: fifty polls and one
/// delivery timeout (12 s at the defaults of 200 ms and 2 s).
pub fn default_event_age_ms(poll_interval_ms: u64, delivery_timeout_ms: u64) -> f64 {
    (50 * poll_interval_ms + delivery_timeout_ms) as f64
}

impl Default for Options {
    fn default() -> Self {
        Self {
            end_at_us: None,
            max_dossiers: 5,
            shed_p99_ms: 100.0,
            goodput_fraction: 0.8,
            asked: None,
            interrupted_at_us: None,
            event_age_ms: default_event_age_ms(200, 2_000),
            prices: std::collections::BTreeMap::new(),
            admission_bounds: true,
        }
    }
}

/// Verifies every invariant over the evidence in `sources`.
pub async fn verify(sources: &Sources, options: &Options) -> Result<Report, VerifyError> {
    let stores = Stores::open(sources, options.asked.as_ref()).await?;
    let faults = match &sources.journal {
        Some(path) => journal::fault_windows(path)?,
        None => Vec::new(),
    };
    let ctx = Context {
        params: stores.params.clone(),
        claims: stores.claims.clone(),
        bounds_from_profile: options.asked.is_some(),
        end_at_us: options
            .end_at_us
            .or(options.interrupted_at_us)
            .unwrap_or_else(evidence::time::now_us),
        interrupted_at_us: options.interrupted_at_us,
        max_dossiers: options.max_dossiers,
        faults,
        has_history: stores.history.is_some(),
        has_requests: stores.requests,
        shed_p99_ms: options.shed_p99_ms,
        goodput_fraction: options.goodput_fraction,
        sink: stores.sink_evidence().await?,
        order_rows: !stores.regions.is_empty(),
        owners_by_id: stores.regions.len() == 2,
        admission_bounds: options.admission_bounds,
        prices: options.prices.clone(),
        event_age_us: (options.event_age_ms * 1_000.0) as i64,
    };
    let mut per_order: Vec<Box<dyn PerOrder>> = vec![
        Box::new(invariants::no_duplicate_charge::NoDuplicateCharge::default()),
        Box::new(invariants::money_conservation::MoneyConservation::default()),
        Box::new(invariants::client_agrees::ClientAgrees::default()),
        Box::new(invariants::single_final_outcome::SingleFinalOutcome::default()),
        Box::new(invariants::bounded_pending_age::BoundedPendingAge::default()),
        Box::new(invariants::outbox_effectively_once::OutboxEffectivelyOnce::default()),
    ];
    // The whole-store checks read their own tables on their own connections: they run
    // beside the merge rather than after it.
    let mut sales = invariants::no_oversell::Sales::default();
    let single_region = match stores.regions.as_slice() {
        [(tag, _)] => model::store_region(tag),
        _ => None,
    };
    // The client's half of admission control (shed speed, goodput) rides the merge, so the
    // history is read once.
    let mut client = ctx
        .has_history
        .then(|| invariants::admission_control::ClientLoad::new(&ctx));
    let (orders_checked, no_oversell, admission_control) = tokio::join!(
        merge_orders(&stores, |order| {
            for invariant in per_order.iter_mut() {
                invariant.observe(order, &ctx);
            }
            sales.observe(order, single_region, !ctx.order_rows);
            if let Some(client) = client.as_mut() {
                client.observe(order);
            }
        }),
        invariants::no_oversell::check(&stores.regions, &ctx),
        invariants::admission_control::check(&stores.provider, &stores.regions, &ctx),
    );
    let orders_checked = orders_checked?;
    let mut verdicts: Vec<Verdict> = per_order.into_iter().map(|i| i.finish(&ctx)).collect();
    let (mut no_oversell, reservations) = no_oversell?;
    sales.judge(&ctx, &reservations, &mut no_oversell);
    verdicts.insert(4, no_oversell);
    verdicts.push(invariants::admission_control::conclude(
        admission_control?,
        client,
        &ctx,
    ));
    let mut sources_seen: Vec<String> = vec![stores.provider.location.to_string()];
    sources_seen.extend(stores.regions.iter().map(|(_, db)| db.location.to_string()));
    if let Some(history) = &stores.history {
        sources_seen.push(format!("history {}", history.location));
    }
    if let Some(sink) = &stores.sink {
        sources_seen.push(format!("sink {}", sink.location));
    }
    if let Some(path) = &sources.journal {
        sources_seen.push(format!("journal {}", path.display()));
    }
    // Each counterexample with its order's story on one timeline (`rig explain`): a few
    // indexed lookups per dossier.
    let load_start_us = sources.journal.as_deref().and_then(journal::load_start_us);
    for dossier in verdicts.iter_mut().flat_map(|v| v.dossiers.iter_mut()) {
        if let Some(order_id) = &dossier.order_id {
            dossier.timeline = explain::explain(&stores, order_id, &ctx.faults, load_start_us)
                .await
                .ok();
        }
    }
    for verdict in &mut verdicts {
        let (witnesses, claims) = invariants::sources(verdict.invariant);
        verdict.witnesses = witnesses.to_vec();
        verdict.claims = claims.to_vec();
    }
    let mut report = Report::new(sources_seen, ctx.end_at_us, orders_checked, verdicts);
    if let Some(at) = options.interrupted_at_us {
        report.mark_partial(format!(
            "the run was interrupted at {}",
            evidence::time::rfc3339(at)
        ));
    }
    Ok(report)
}

/// Merges every store's rows by order id and calls `each` once per order. Returns the
/// number of orders.
pub async fn merge_orders(
    stores: &Stores,
    mut each: impl FnMut(&OrderEvidence),
) -> Result<u64, VerifyError> {
    let mut regions: Vec<_> = stores
        .regions
        .iter()
        .map(|(tag, db)| sources::RegionStreams::spawn(tag, db))
        .collect();
    let mut charges = sources::charges(&stores.provider);
    let mut arrivals = match &stores.history {
        Some(db) => sources::arrivals(db),
        None => merge::Sorted::empty("history_arrivals"),
    };
    let mut requests = match &stores.history {
        Some(db) if stores.requests => sources::requests(db),
        _ => merge::Sorted::empty("history_requests"),
    };
    let mut deliveries = match &stores.sink {
        Some(db) => sources::deliveries(db),
        None => merge::Sorted::empty("sink_deliveries"),
    };
    let mut count = 0u64;
    // One order's evidence at a time, its vectors reused from order to order.
    let mut order = OrderEvidence::default();
    loop {
        for r in regions.iter_mut() {
            r.orders.ready().await?;
            r.transitions.ready().await?;
            r.events.ready().await?;
            r.effects.ready().await?;
        }
        charges.ready().await?;
        arrivals.ready().await?;
        requests.ready().await?;
        deliveries.ready().await?;
        let keys = regions
            .iter()
            .flat_map(|r| {
                [
                    r.orders.front_key(),
                    r.transitions.front_key(),
                    r.events.front_key(),
                    r.effects.front_key(),
                ]
            })
            .chain([
                charges.front_key(),
                arrivals.front_key(),
                requests.front_key(),
                deliveries.front_key(),
            ]);
        let Some(key) = merge::min_key(keys) else {
            break;
        };
        order.clear();
        // Every key was read as text, so it is text.
        order.order_id.push_str(&String::from_utf8_lossy(key));
        let key = order.order_id.as_bytes();
        for r in regions.iter_mut() {
            r.orders.take(key, &mut order.orders).await?;
            r.transitions.take(key, &mut order.transitions).await?;
            r.events.take(key, &mut order.events).await?;
            r.effects.take(key, &mut order.effects).await?;
        }
        charges.take(key, &mut order.charges).await?;
        arrivals.take(key, &mut order.arrivals).await?;
        requests.take(key, &mut order.requests).await?;
        deliveries.take(key, &mut order.deliveries).await?;
        order.put_in_order();
        each(&order);
        count += 1;
    }
    Ok(count)
}
