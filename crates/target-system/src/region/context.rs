//! What every part of a region reads: who it is, its parameters, its store, its metrics.

use std::sync::Arc;

use super::metrics::RegionMetrics;
use crate::config::TargetConfig;
use crate::defects::Defect;
use evidence::store::Db;
use evidence::{RegionId, owner_of};

/// What every part of a region reads: who it is, its parameters, its store, its metrics.
#[derive(Debug)]
pub(super) struct Context {
    pub(super) id: RegionId,
    pub(super) config: Arc<TargetConfig>,
    /// Base URL of the peer region, without a trailing slash; `None`: single region.
    pub(super) peer_url: Option<String>,
    pub(super) db: Db,
    pub(super) metrics: RegionMetrics,
}

impl Context {
    /// The region that owns `order_id` in this deployment.
    pub(super) fn owner(&self, order_id: &str) -> RegionId {
        if self.peer_url.is_some() {
            owner_of(order_id)
        } else {
            self.id
        }
    }

    /// Whether a defect switch is on.
    pub(super) fn has(&self, defect: Defect) -> bool {
        self.config.defects.contains(&defect)
    }
}
