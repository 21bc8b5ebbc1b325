//! One file per invariant. Per-order invariants observe each order's merged evidence in
//! `order_id` order and keep O(1) state plus their dossiers; aggregate invariants
//! (no-oversell, admission-control) stream their own queries at the end.

pub mod admission_control;
pub mod bounded_pending_age;
pub mod client_agrees;
pub mod money_conservation;
pub mod no_duplicate_charge;
pub mod no_oversell;
pub mod outbox_effectively_once;
pub mod single_final_outcome;

use evidence::RunParams;
use serde_json::json;

use crate::model::{OrderEvidence, StoreTag};
use crate::report::{Dossier, FaultWindow, Verdict};

/// What the event sink's log holds for this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkEvidence {
    /// No sink log: the system's events did not go through the rig's sink.
    Absent,
    /// A sink log with no delivery at all.
    Silent,
    /// A sink log with deliveries: the event invariant is judged from it.
    Delivered,
}

/// What every invariant may consult.
#[derive(Debug, Clone)]
pub struct Context {
    /// The bounds: what the run asked for, or (without its profile) what the system
    /// recorded.
    pub params: RunParams,
    /// What each region recorded it ran with: a claim, checked against `params` when the
    /// bounds come from the profile.
    pub claims: Vec<(StoreTag, Option<RunParams>)>,
    /// The bounds come from the run's profile (else from the system's own record).
    pub bounds_from_profile: bool,
    /// Wall-clock microseconds the run's evidence ends at (after the drain).
    pub end_at_us: i64,
    /// When the run was interrupted, if it was: what was still open then is unknown.
    pub interrupted_at_us: Option<i64>,
    pub max_dossiers: usize,
    /// Fault windows from the chaos journal, if one was given.
    pub faults: Vec<FaultWindow>,
    pub has_history: bool,
    /// The history's requests can be merged by order (each customer's answer sequence).
    pub has_requests: bool,
    /// Client-side bound on the p99 answer time of shed requests.
    pub shed_p99_ms: f64,
    /// Goodput in any phase offered at least the best phase's load must stay above this
    /// share of the best phase's goodput.
    pub goodput_fraction: f64,
    /// What the event sink saw.
    pub sink: SinkEvidence,
    /// The system's own order records were read (false in black-box mode: a system whose
    /// stores the rig cannot read is judged from the witnesses alone).
    pub order_rows: bool,
    /// Both regions' stores were read: each order's owner is the region its id maps to
    /// ([`evidence::owner_of`]), whatever its row names.
    pub owners_by_id: bool,
    /// The provider-call limit and the retry budget in `params` are the system's (the rig
    /// configured them, the system recorded them, or the user gave them); false in
    /// black-box mode without them.
    pub admission_bounds: bool,
    /// Unit prices in cents per sku, from the run's profile (empty: not known).
    pub prices: std::collections::BTreeMap<String, i64>,
    /// A confirmation must reach the sink within this many µs of its customer being told.
    pub event_age_us: i64,
}

impl Context {
    /// Counts a violation for every region whose recorded value of a parameter named by
    /// `wanted` differs from what the run asked for: "the system ran with X; the run asked
    /// for Y". A record without initial stock (written before it was kept) is not held
    /// against the stock.
    pub fn check_claims(&self, wanted: impl Fn(&str) -> bool, verdict: &mut Verdict) {
        if !self.bounds_from_profile {
            return;
        }
        let asked = self.params.fields();
        for (store, claim) in &self.claims {
            let Some(claim) = claim else { continue };
            let recorded = claim.fields();
            let names: std::collections::BTreeSet<&String> =
                asked.keys().chain(recorded.keys()).collect();
            for name in names {
                if !wanted(name) || (name.starts_with("stock.") && claim.initial_stock.is_empty()) {
                    continue;
                }
                let (r, a) = (recorded.get(name), asked.get(name));
                // Numbers compare as numbers (a float may come back a digit longer).
                let same = match (r.map(|v| v.parse::<f64>()), a.map(|v| v.parse::<f64>())) {
                    (Some(Ok(x)), Some(Ok(y))) => {
                        (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs())
                    }
                    _ => r == a,
                };
                if !same {
                    let shown = |v: Option<&String>| v.cloned().unwrap_or_else(|| "nothing".into());
                    verdict.violate(self.max_dossiers, || Dossier {
                        order_id: None,
                        narrative: format!(
                            "{store} ran with {name} = {}; the run asked for {}",
                            shown(r),
                            shown(a)
                        ),
                        rows: json!({"store": store, "parameter": name, "recorded": r, "asked": a}),
                        fault_windows: Vec::new(),
                        timeline: None,
                    });
                }
            }
        }
    }

    /// Where the bounds come from, for summaries.
    pub fn bounds_source(&self) -> &'static str {
        if self.bounds_from_profile {
            "bounds from the run's profile"
        } else {
            "bounds from the system's own record (no profile given)"
        }
    }

    /// Fault windows overlapping `[from, to]`.
    pub fn windows(&self, span: Option<(i64, i64)>) -> Vec<FaultWindow> {
        let Some((from, to)) = span else {
            return Vec::new();
        };
        self.faults
            .iter()
            .filter(|w| w.start_us <= to && w.end_us.is_none_or(|end| end >= from))
            .cloned()
            .collect()
    }

    /// A dossier with the order's rows and the faults around it.
    pub fn dossier(&self, order: &OrderEvidence, narrative: String) -> Dossier {
        Dossier {
            order_id: Some(order.order_id.clone()),
            narrative,
            rows: json!({
                "orders": order.orders,
                "transitions": order.transitions,
                "charges": order.charges,
                "outbox": order.events,
                "effects": order.effects,
                "sink_deliveries": order.deliveries,
                "client": order.arrivals,
                "client_requests": order.requests,
            }),
            fault_windows: self.windows(order.span_us()),
            timeline: None,
        }
    }
}

/// What each invariant judges from: the witnesses (written by the rig: the run's profile,
/// the client history, the provider's ledger and request log, the event sink's log, the
/// chaos journal) and the system's own
/// records it treats as claims.
pub fn sources(invariant: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match invariant {
        no_duplicate_charge::NAME => (&["provider ledger"], &[]),
        money_conservation::NAME => (
            &["provider ledger", "client carts", "run profile (prices)"],
            &["order rows"],
        ),
        client_agrees::NAME => (
            &[
                "client history",
                "provider ledger",
                "client carts",
                "run profile (prices)",
            ],
            &["order rows"],
        ),
        single_final_outcome::NAME => (
            &["client answer sequences"],
            &["order rows", "order transitions"],
        ),
        no_oversell::NAME => (
            &["client carts", "run profile (initial stock)"],
            &[
                "reservations",
                "inventory counters",
                "recorded initial stock",
            ],
        ),
        bounded_pending_age::NAME => (
            &["client polls and final polls", "run profile (bound)"],
            &["order transitions", "recorded parameters"],
        ),
        outbox_effectively_once::NAME => (
            &["event sink log", "client answer sequences"],
            &["outbox", "consumer effects", "order rows"],
        ),
        admission_control::NAME => (
            &[
                "provider request log per calling region",
                "client history (shed answers, goodput)",
                "run profile (limits)",
            ],
            &["provider calls (payment_attempts)", "recorded parameters"],
        ),
        _ => (&[], &[]),
    }
}

impl Context {
    /// The region that owns `order`, when that is known from its id (both regions' stores
    /// read); else the owner its row names, if any.
    pub fn owner<'a>(&self, order: &'a OrderEvidence) -> Option<&'a str> {
        if self.owners_by_id {
            return Some(evidence::owner_of(&order.order_id).as_str());
        }
        order.owner_row().map(|o| o.owner_region.as_str())
    }

    /// What `order` should cost when its system sells at the run's profile prices (the rig
    /// configured it: the bounds come from the profile), if its cart and prices are known.
    pub fn profile_price(&self, order: &OrderEvidence) -> Option<i128> {
        self.bounds_from_profile
            .then(|| self.cart_amount(order))
            .flatten()
    }

    /// What `order`'s cart costs at the profile's prices, if its customer's whole cart and
    /// every price are known.
    pub fn cart_amount(&self, order: &OrderEvidence) -> Option<i128> {
        if order.cart_read != crate::model::CartRead::Read || self.prices.is_empty() {
            return None;
        }
        let mut total: i128 = 0;
        for (sku, qty) in &order.cart {
            total += i128::from(*self.prices.get(sku.as_str())?) * i128::from(*qty);
        }
        Some(total)
    }
}

/// A per-order invariant.
pub trait PerOrder {
    fn observe(&mut self, order: &OrderEvidence, ctx: &Context);
    fn finish(self: Box<Self>, ctx: &Context) -> Verdict;
}

impl Context {
    /// Why region `region`'s record times do not measure durations, if they do not: a
    /// `clock` fault shifted its wall clock during the run, so two of its times from either
    /// side of a shift do not compare.
    pub fn clock_shifted(&self, region: &str) -> Option<String> {
        let shifts = self
            .faults
            .iter()
            .filter(|w| w.kind == "clock" && w.target.as_deref() == Some(region))
            .count();
        (shifts > 0).then(|| {
            format!(
                "region {region}'s wall clock was shifted ({shifts} clock fault window{}), so durations between its own record times are not judged",
                if shifts == 1 { "" } else { "s" }
            )
        })
    }

    /// Why open work is not judged: "the run was interrupted at <time>".
    pub fn interruption(&self) -> Option<String> {
        self.interrupted_at_us
            .map(|t| format!("the run was interrupted at {}", at(t)))
    }
}

/// Formats wall-clock microseconds for narratives.
pub fn at(us: i64) -> String {
    evidence::time::rfc3339(us)
}

/// Cents as dollars for narratives.
pub fn money(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}${}.{:02}", abs / 100, abs % 100)
}
