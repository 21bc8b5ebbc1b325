//! The provider's native wire contract (DESIGN §4): what `POST /v1/charges` accepts and what
//! the charge and key answers look like. These are not the ledger's rows: the ledger may
//! change how it stores a charge without changing what callers read, and a caller (the
//! region's payment client) decodes these types, never the provider's storage.

use serde::{Deserialize, Serialize};

use super::ledger;

/// What a caller asked to charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    pub order_id: String,
    pub amount_cents: i64,
    pub currency: String,
}

impl ChargeRequest {
    /// What must be equal for a repeated key to be "the same request".
    pub fn fingerprint(&self) -> String {
        format!("{}|{}|{}", self.order_id, self.amount_cents, self.currency)
    }
}

/// A charge as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeAnswer {
    pub charge_id: String,
    pub idempotency_key: String,
    pub order_id: String,
    pub amount_cents: i64,
    pub currency: String,
    /// `authorized`, `declined` or `voided`.
    pub status: String,
    pub refunded_cents: i64,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

impl ChargeAnswer {
    /// Money the customer is out: authorized and not refunded; zero otherwise.
    pub fn net_cents(&self) -> i64 {
        ledger::net_cents(&self.status, self.amount_cents, self.refunded_cents)
    }
}

impl From<&ledger::Charge> for ChargeAnswer {
    fn from(c: &ledger::Charge) -> Self {
        Self {
            charge_id: c.charge_id.clone(),
            idempotency_key: c.idempotency_key.clone(),
            order_id: c.order_id.clone(),
            amount_cents: c.amount_cents,
            currency: c.currency.clone(),
            status: c.status.clone(),
            refunded_cents: c.refunded_cents,
            created_at_us: c.created_at_us,
            updated_at_us: c.updated_at_us,
        }
    }
}

/// What `GET /v1/charges?idempotency_key=K` and the void answer: the key's state and the
/// charge behind it, if any.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyAnswer {
    pub idempotency_key: String,
    /// `processing`, `completed` or `voided`.
    pub state: String,
    pub charge: Option<ChargeAnswer>,
}

impl From<&ledger::KeyView> for KeyAnswer {
    fn from(view: &ledger::KeyView) -> Self {
        Self {
            idempotency_key: view.idempotency_key.clone(),
            state: view.state.clone(),
            charge: view.charge.as_ref().map(ChargeAnswer::from),
        }
    }
}
