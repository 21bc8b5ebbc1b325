//! One order's evidence gathered from every store (the rows are the evidence contract's).

use serde::Serialize;

pub use evidence::rows::{
    ArrivalRow, ChargeRow, DeliveryRow, EffectRow, EventRow, OrderRow, RequestRow, StoreTag,
    TransitionRow,
};

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
    /// Every request its customer sent and the answer to it, by arrival then sending order.
    pub requests: Vec<RequestRow>,
    /// The event sink's deliveries for it, in arrival order.
    pub deliveries: Vec<DeliveryRow>,
}

impl OrderEvidence {
    /// Empties it for the next order, keeping its vectors' memory.
    pub fn clear(&mut self) {
        self.order_id.clear();
        self.orders.clear();
        self.transitions.clear();
        self.events.clear();
        self.effects.clear();
        self.charges.clear();
        self.arrivals.clear();
        self.requests.clear();
        self.deliveries.clear();
    }

    /// Orders the rows the streams leave in index order only: events and consumer effects
    /// by store, then time, then event id; arrivals by arrival id. Nearly always one row or
    /// none.
    pub fn put_in_order(&mut self) {
        if self.events.len() > 1 {
            self.events.sort_by(|a, b| {
                (a.store, a.created_at_us, &a.event_id).cmp(&(
                    b.store,
                    b.created_at_us,
                    &b.event_id,
                ))
            });
        }
        if self.effects.len() > 1 {
            self.effects.sort_by(|a, b| {
                (a.store, a.at_us, &a.event_id).cmp(&(b.store, b.at_us, &b.event_id))
            });
        }
        if self.arrivals.len() > 1 {
            self.arrivals.sort_by_key(|a| a.arrival_id);
        }
    }

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
            .chain(self.arrivals.iter().filter_map(|a| a.finished_at_us))
            .chain(self.deliveries.iter().map(|d| d.received_at_us));
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
