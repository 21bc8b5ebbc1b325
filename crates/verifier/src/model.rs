//! The rows the verifier reads, and one order's evidence gathered from every store.

use serde::Serialize;

/// Which store a row came from.
pub type StoreTag = &'static str;

/// A row of a region's `orders`.
#[derive(Debug, Clone, Serialize)]
pub struct OrderRow {
    pub store: StoreTag,
    pub order_id: String,
    pub owner_region: String,
    pub entry_region: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: String,
    pub reason: Option<String>,
    pub version: i64,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

/// A row of a region's `order_transitions`.
#[derive(Debug, Clone, Serialize)]
pub struct TransitionRow {
    pub store: StoreTag,
    pub order_id: String,
    pub seq: i64,
    pub from_state: Option<String>,
    pub to_state: String,
    pub at_us: i64,
    pub reason: Option<String>,
    pub actor: String,
    /// The region that made the transition.
    pub region: String,
}

/// A row of a region's `outbox`.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub store: StoreTag,
    pub order_id: String,
    pub event_id: String,
    pub event_type: String,
    pub created_at_us: i64,
    pub published_at_us: Option<i64>,
}

/// A row of a region's `fulfilments` (the consumer's effect).
#[derive(Debug, Clone, Serialize)]
pub struct EffectRow {
    pub store: StoreTag,
    pub order_id: String,
    pub event_id: String,
    pub at_us: i64,
}

/// A row of the provider's `provider_charges`.
#[derive(Debug, Clone, Serialize)]
pub struct ChargeRow {
    pub charge_id: String,
    pub idempotency_key: String,
    pub order_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: String,
    pub refunded_cents: i64,
    pub created_at_us: i64,
}

impl ChargeRow {
    /// Money the customer is out because of this charge.
    pub fn net_cents(&self) -> i64 {
        if self.status == "authorized" {
            self.amount_cents - self.refunded_cents
        } else {
            0
        }
    }

    pub fn is_live(&self) -> bool {
        self.net_cents() > 0
    }
}

/// A row of the client history's `history_arrivals`: what one customer was told.
#[derive(Debug, Clone, Serialize)]
pub struct ArrivalRow {
    pub arrival_id: i64,
    pub order_id: String,
    pub entry_region: String,
    pub phase: String,
    pub intended_at_us: i64,
    pub sent_at_us: Option<i64>,
    pub finished_at_us: Option<i64>,
    pub attempts: i64,
    pub last_status: Option<i64>,
    /// `confirmed`, `failed`, `rejected`, `unknown` or `dropped`.
    pub outcome: String,
}

/// Everything every store says about one order id.
#[derive(Debug, Default, Clone, Serialize)]
pub struct OrderEvidence {
    pub order_id: String,
    pub orders: Vec<OrderRow>,
    pub transitions: Vec<TransitionRow>,
    pub events: Vec<EventRow>,
    pub effects: Vec<EffectRow>,
    pub charges: Vec<ChargeRow>,
    pub arrivals: Vec<ArrivalRow>,
}

impl OrderEvidence {
    /// The order row written by its owner region, if any.
    pub fn owner_row(&self) -> Option<&OrderRow> {
        self.orders
            .iter()
            .find(|o| store_region(o.store) == Some(o.owner_region.as_str()))
            .or_else(|| self.orders.first())
    }

    /// Net money charged for this order across all its charges, in i128.
    pub fn net_cents(&self) -> i128 {
        self.charges.iter().map(|c| i128::from(c.net_cents())).sum()
    }

    /// The earliest and latest timestamps in the evidence (for matching fault windows).
    pub fn span_us(&self) -> Option<(i64, i64)> {
        let times = self
            .transitions
            .iter()
            .map(|t| t.at_us)
            .chain(self.charges.iter().map(|c| c.created_at_us))
            .chain(self.arrivals.iter().map(|a| a.intended_at_us))
            .chain(self.arrivals.iter().filter_map(|a| a.finished_at_us));
        times.fold(None, |span, t| match span {
            None => Some((t, t)),
            Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
        })
    }
}

/// `region_a` → `a`.
pub fn store_region(store: StoreTag) -> Option<&'static str> {
    match store {
        "region_a" => Some("a"),
        "region_b" => Some("b"),
        _ => None,
    }
}
