//! One order's evidence gathered from every store (the rows are the evidence contract's).

use evidence::Key;
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
    /// Its customer's cart as (sku, qty) lines, read once from the first arrival that kept
    /// one ([`Self::put_in_order`]); see `cart_read`.
    pub cart: Vec<(Key, i64)>,
    pub cart_read: CartRead,
}

/// Whether an order's cart was read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CartRead {
    /// No arrival kept a cart.
    #[default]
    Missing,
    Read,
    /// Read loosely: some of its lines lack a string sku or an integer qty and were
    /// skipped (counted for stock, never priced).
    Partial,
    /// A cart that is not a JSON array of lines.
    Unreadable,
}

/// One line of a customer's cart as the rig writes it.
#[derive(serde::Deserialize)]
struct CartLine<'a> {
    #[serde(borrow)]
    sku: std::borrow::Cow<'a, str>,
    qty: i64,
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
        self.cart.clear();
        self.cart_read = CartRead::Missing;
    }

    /// Reads the customer's cart into `cart`. The rig writes every cart as lines of a string
    /// sku and an integer qty: read as such, borrowing the text. Anything else is read
    /// loosely, a line without both skipped.
    fn read_cart(&mut self) {
        let Some(text) = self.arrivals.iter().find_map(|a| a.cart.as_deref()) else {
            return;
        };
        self.cart_read = CartRead::Read;
        if let Ok(lines) = serde_json::from_str::<Vec<CartLine<'_>>>(text) {
            self.cart
                .extend(lines.iter().map(|l| (Key::new(&l.sku), l.qty)));
            return;
        }
        let Ok(lines) = serde_json::from_str::<Vec<serde_json::Value>>(text) else {
            self.cart_read = CartRead::Unreadable;
            return;
        };
        for line in lines {
            match (line["sku"].as_str(), line["qty"].as_i64()) {
                (Some(sku), Some(qty)) => self.cart.push((Key::new(sku), qty)),
                _ => self.cart_read = CartRead::Partial,
            }
        }
    }

    /// Orders the rows the streams leave in index order only: events and consumer effects
    /// by store, then time, then event id; arrivals by arrival id (nearly always one row or
    /// none). Then reads the customer's cart.
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
        self.read_cart();
    }

    /// The order row written by its owner region, if any.
    pub fn owner_row(&self) -> Option<&OrderRow> {
        self.orders
            .iter()
            .find(|o| store_region(o.store) == Some(o.owner_region.as_str()))
            .or_else(|| self.orders.first())
    }

    /// What `arrival`'s customer was finally told, and when: its own outcome, or, when that
    /// is not final (the customer gave up), the first final answer any request of the same
    /// arrival got: in practice the run's poll after the drain, since an answer the customer
    /// itself got would have made its outcome final. `confirmed` wins over `failed` as in the
    /// client's own summary; two different finals are single-final-outcome's to judge.
    pub fn told<'a>(&'a self, arrival: &'a ArrivalRow) -> (&'a str, i64) {
        let own = (
            arrival.outcome.as_str(),
            arrival
                .finished_at_us
                .or(arrival.sent_at_us)
                .unwrap_or(arrival.intended_at_us),
        );
        if arrival.outcome != "unknown" {
            return own;
        }
        let first = |answer: &str| {
            self.requests
                .iter()
                .filter(|r| r.arrival_id == arrival.arrival_id && r.answer == answer)
                .map(|r| r.finished_at_us)
                .min()
        };
        match (first("confirmed"), first("failed")) {
            (Some(at), _) => ("confirmed", at),
            (None, Some(at)) => ("failed", at),
            (None, None) => own,
        }
    }

    /// Whether any of its customers was told it is confirmed (see [`Self::told`]).
    pub fn told_confirmed(&self) -> bool {
        self.arrivals.iter().any(|a| self.told(a).0 == "confirmed")
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
