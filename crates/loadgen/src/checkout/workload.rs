//! The checkout workload as the engine sees it: each lane performs one customer at a time
//! (a [`journey`](super::journey)); arrivals that never reach a lane still land in the
//! history through [`Workload::not_started`].

use super::journey;
use super::shared::Shared;
use crate::{Completion, Dispatch, Outcome, Workload};

/// The checkout workload, connected (built by [`CheckoutRun`](super::CheckoutRun)).
pub struct CheckoutWorkload {
    pub(super) shared: Shared,
    pub(super) description: serde_json::Value,
}

impl std::fmt::Debug for CheckoutWorkload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckoutWorkload")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl Workload for CheckoutWorkload {
    /// Lanes hold nothing of their own: connections are pooled per target.
    type Lane = ();

    fn op(&self) -> &'static str {
        "checkout"
    }

    fn lanes(&self) -> usize {
        self.shared.plan.lanes
    }

    fn lane(&self, _index: usize) {}

    async fn perform(&self, _lane: &mut (), dispatch: Dispatch) -> Completion {
        journey::perform(&self.shared, dispatch).await
    }

    fn describe(&self) -> serde_json::Value {
        self.description.clone()
    }

    fn not_started(&self, dispatch: &Dispatch, outcome: Outcome) {
        self.shared.history.not_started(dispatch, outcome);
    }
}
