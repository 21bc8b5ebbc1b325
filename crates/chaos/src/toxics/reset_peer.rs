//! `reset_peer`: resets the connection (TCP RST) `timeout` after the first data arrives.
//!
//! Attributes: `timeout` (milliseconds, default 0 = reset as soon as data arrives).
//!
//! Data that arrives in the meantime is dropped. Unlike Toxiproxy, which can only send a
//! reset on connections that were opened while the toxic already existed, the reset here also
//! reaches connections that were open before the toxic was added.

use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};

use super::CloseMode;
use super::{Effects, Timed};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResetPeer {
    pub timeout: u64,
}

#[derive(Debug)]
pub(crate) struct ResetPeerLink {
    timeout: Duration,
    reset_at: Option<Instant>,
}

impl ResetPeerLink {
    pub(crate) fn new(attrs: &ResetPeer) -> Self {
        Self {
            timeout: Duration::from_millis(attrs.timeout),
            reset_at: None,
        }
    }

    pub(crate) fn push(&mut self, input: Timed) {
        if self.reset_at.is_none() {
            self.reset_at = Some(input.at + self.timeout);
        }
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.reset_at
    }

    pub(crate) fn fire(&mut self, now: Instant, effects: &mut Effects) {
        if self.reset_at.is_some_and(|d| d <= now) {
            effects.close_now(CloseMode::Reset);
        }
    }
}
