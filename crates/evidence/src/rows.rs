//! The rows the verifier reads, one struct per table, with the columns it uses (every
//! column costs the store and the verifier work on each of tens of millions of rows; the
//! others are in `rig explain`'s timelines, which read whole rows). Each row
//! says which store it was read from (`store`), so a dossier can show claims and witnesses
//! side by side.

use serde::Serialize;

use crate::{Key, Word};

/// Which store a row came from.
pub type StoreTag = &'static str;

/// A row of a region's `orders`.
#[derive(Debug, Clone, Serialize)]
pub struct OrderRow {
    pub store: StoreTag,
    pub order_id: Key,
    pub owner_region: Word,
    pub amount_cents: i64,
    pub status: Word,
    pub reason: Option<String>,
    pub version: i64,
    pub created_at_us: i64,
}

/// A row of a region's `order_transitions`.
#[derive(Debug, Clone, Serialize)]
pub struct TransitionRow {
    pub store: StoreTag,
    pub order_id: Key,
    pub seq: i64,
    pub from_state: Option<Word>,
    pub to_state: Word,
    pub at_us: i64,
    pub reason: Option<String>,
    pub actor: Word,
    /// The region that made the transition.
    pub region: Word,
}

/// A row of a region's `outbox`.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub store: StoreTag,
    pub order_id: Key,
    pub event_id: Key,
    pub event_type: Word,
    pub created_at_us: i64,
    pub published_at_us: Option<i64>,
}

/// A row of a region's `fulfilments` (the consumer's effect).
#[derive(Debug, Clone, Serialize)]
pub struct EffectRow {
    pub store: StoreTag,
    pub order_id: Key,
    pub event_id: Key,
    pub at_us: i64,
}

/// A row of the provider's `provider_charges`.
#[derive(Debug, Clone, Serialize)]
pub struct ChargeRow {
    pub charge_id: Key,
    pub idempotency_key: Key,
    pub order_id: Key,
    pub amount_cents: i64,
    pub status: Word,
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
    pub order_id: Key,
    pub phase: Word,
    pub intended_at_us: i64,
    pub sent_at_us: Option<i64>,
    pub finished_at_us: Option<i64>,
    /// `confirmed`, `failed`, `rejected`, `unknown` or `dropped`.
    pub outcome: Word,
    /// The items the customer sent, as JSON (`[{"sku","qty"}]`); `None` if it sent nothing.
    pub cart: Option<String>,
}

/// A row of the client history's `history_requests`: one request a customer sent and the
/// answer it got, in sending order within its arrival.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRow {
    pub order_id: Key,
    pub arrival_id: i64,
    pub seq: i64,
    /// `checkout`, `retry`, `double_click` or `poll`.
    pub kind: Word,
    pub sent_at_us: i64,
    pub finished_at_us: i64,
    pub http_status: Option<i64>,
    /// `confirmed`, `pending`, `failed`, `rejected`, `conflict`, `invalid`, `error`,
    /// `timeout` or `connect_error`.
    pub answer: Word,
}

/// A row of the event sink's `sink_deliveries`: one delivery the sink accepted (the first
/// of its event id) or answered as a duplicate, with the sink's own clock reading and the
/// region its listener belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    pub order_id: Key,
    pub event_id: Key,
    pub event_type: Word,
    /// The region whose proxy the delivery came through (`None`: unattributed).
    pub caller: Option<Word>,
    pub received_at_us: i64,
    /// `accepted` or `duplicate`.
    pub outcome: Word,
}
