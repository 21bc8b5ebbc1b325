//! The order state machine: one enum and one pure transition function.
//!
//! ```text
//! order_intent_saved ─► inventory_reserved ─► payment_authorizing ─► order_confirmed
//!        │                     │                     ├─────────────► payment_pending
//!        │                     │                     └─────────────► failed_safely
//!        │                     └─► payment_pending (parked in payment-degraded mode)
//!        └─► failed_safely (out of stock: nothing reserved, nothing charged)
//! payment_pending ─► order_confirmed | failed_safely | needs_reconciliation
//! needs_reconciliation ─► order_confirmed | failed_safely
//! ```
//!
//! `order_confirmed` and `failed_safely` are terminal: nothing leaves them. Handlers call
//! [`transition`] before persisting a change; every change is also a row in
//! `order_transitions`, so the verifier can replay the path of every order.

use serde::{Deserialize, Serialize};

/// Where an order is. The names are the ones users and operators see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    OrderIntentSaved,
    InventoryReserved,
    PaymentAuthorizing,
    PaymentPending,
    NeedsReconciliation,
    OrderConfirmed,
    FailedSafely,
}

/// A transition the state machine forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal order transition {from:?} -> {to:?}")]
pub struct IllegalTransition {
    pub from: OrderState,
    pub to: OrderState,
}

impl OrderState {
    /// Every state, in path order.
    pub const ALL: [OrderState; 7] = [
        Self::OrderIntentSaved,
        Self::InventoryReserved,
        Self::PaymentAuthorizing,
        Self::PaymentPending,
        Self::NeedsReconciliation,
        Self::OrderConfirmed,
        Self::FailedSafely,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderIntentSaved => "order_intent_saved",
            Self::InventoryReserved => "inventory_reserved",
            Self::PaymentAuthorizing => "payment_authorizing",
            Self::PaymentPending => "payment_pending",
            Self::NeedsReconciliation => "needs_reconciliation",
            Self::OrderConfirmed => "order_confirmed",
            Self::FailedSafely => "failed_safely",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "order_intent_saved" => Self::OrderIntentSaved,
            "inventory_reserved" => Self::InventoryReserved,
            "payment_authorizing" => Self::PaymentAuthorizing,
            "payment_pending" => Self::PaymentPending,
            "needs_reconciliation" => Self::NeedsReconciliation,
            "order_confirmed" => Self::OrderConfirmed,
            "failed_safely" => Self::FailedSafely,
            _ => return None,
        })
    }

    /// No transition leaves a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::OrderConfirmed | Self::FailedSafely)
    }

    /// States in which the payment outcome is not yet final (the pending-age clock runs).
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            Self::PaymentAuthorizing | Self::PaymentPending | Self::NeedsReconciliation
        )
    }
}

impl std::fmt::Display for OrderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pure transition function: `Ok(to)` if `from -> to` is allowed.
pub fn transition(from: OrderState, to: OrderState) -> Result<OrderState, IllegalTransition> {
    use OrderState::*;
    let allowed = matches!(
        (from, to),
        (OrderIntentSaved, InventoryReserved)
            | (OrderIntentSaved, FailedSafely)
            | (InventoryReserved, PaymentAuthorizing)
            | (InventoryReserved, PaymentPending)
            | (PaymentAuthorizing, OrderConfirmed)
            | (PaymentAuthorizing, PaymentPending)
            | (PaymentAuthorizing, FailedSafely)
            | (PaymentPending, OrderConfirmed)
            | (PaymentPending, FailedSafely)
            | (PaymentPending, NeedsReconciliation)
            | (NeedsReconciliation, OrderConfirmed)
            | (NeedsReconciliation, FailedSafely)
    );
    if allowed {
        Ok(to)
    } else {
        Err(IllegalTransition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::OrderState::*;
    use super::*;

    const ALLOWED: [(OrderState, OrderState); 12] = [
        (OrderIntentSaved, InventoryReserved),
        (OrderIntentSaved, FailedSafely),
        (InventoryReserved, PaymentAuthorizing),
        (InventoryReserved, PaymentPending),
        (PaymentAuthorizing, OrderConfirmed),
        (PaymentAuthorizing, PaymentPending),
        (PaymentAuthorizing, FailedSafely),
        (PaymentPending, OrderConfirmed),
        (PaymentPending, FailedSafely),
        (PaymentPending, NeedsReconciliation),
        (NeedsReconciliation, OrderConfirmed),
        (NeedsReconciliation, FailedSafely),
    ];

    /// Exactly the twelve documented transitions are allowed; all other 37 pairs are refused.
    #[test]
    fn every_pair_is_allowed_or_forbidden_as_documented() {
        let mut allowed = 0;
        for from in OrderState::ALL {
            for to in OrderState::ALL {
                let expected = ALLOWED.contains(&(from, to));
                let got = transition(from, to);
                assert_eq!(got.is_ok(), expected, "{from} -> {to}");
                if expected {
                    allowed += 1;
                    assert_eq!(got, Ok(to));
                } else {
                    assert_eq!(got, Err(IllegalTransition { from, to }));
                }
            }
        }
        assert_eq!(allowed, 12);
    }

    /// Terminal states have no way out, and no state can move to itself.
    #[test]
    fn terminal_states_are_final() {
        for to in OrderState::ALL {
            assert!(transition(OrderConfirmed, to).is_err());
            assert!(transition(FailedSafely, to).is_err());
            assert!(transition(to, to).is_err());
        }
        assert!(OrderConfirmed.is_terminal() && FailedSafely.is_terminal());
        assert!(!PaymentPending.is_terminal());
    }

    /// Names round-trip through `as_str`/`parse` and serde.
    #[test]
    fn names_round_trip() {
        for state in OrderState::ALL {
            assert_eq!(OrderState::parse(state.as_str()), Some(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        assert_eq!(OrderState::parse("confirmed"), None);
    }
}
