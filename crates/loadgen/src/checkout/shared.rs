//! What every lane of the checkout workload shares.

use std::sync::Arc;

use super::client::Pool;
use super::customer::CustomerModel;
use super::history::{HistoryTx, RowContext};
use super::spec::Plan;

/// What every lane shares (read-only but for the pools' idle lists and the history).
pub(super) struct Shared {
    pub(super) plan: Plan,
    /// One per target, in entry-region order.
    pub(super) pools: Vec<Pool>,
    pub(super) model: Arc<CustomerModel>,
    pub(super) context: RowContext,
    pub(super) history: HistoryTx,
}
