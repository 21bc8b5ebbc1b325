//! `timeout`: a black hole. Drops all data; closes the connection after `timeout` without data.
//!
//! Attributes: `timeout` (milliseconds, default 0). With `timeout = 0` the connection is never
//! closed: data silently disappears until the toxic is removed. The timer restarts with every
//! chunk it swallows (as in Toxiproxy).
//!
//! Removing a timeout toxic closes the connections it was swallowing data on: bytes were lost
//! in the middle of the stream, so continuing would hand the peer a corrupt stream.

use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};

use super::CloseMode;
use super::{Effects, Item, Timed};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timeout {
    pub timeout: u64,
}

#[derive(Debug)]
pub(crate) struct TimeoutLink {
    timeout: Option<Duration>,
    deadline: Option<Instant>,
}

impl TimeoutLink {
    pub(crate) fn new(attrs: &Timeout, now: Instant) -> Self {
        let timeout = (attrs.timeout > 0).then(|| Duration::from_millis(attrs.timeout));
        Self {
            timeout,
            deadline: timeout.map(|t| now + t),
        }
    }

    pub(crate) fn push(&mut self, input: Timed, out: &mut Vec<Timed>) {
        match input.item {
            Item::Data(_) => self.deadline = self.timeout.map(|t| input.at + t),
            // The sender's close still gets through: only data is swallowed.
            Item::Eof => out.push(input),
        }
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub(crate) fn fire(&mut self, now: Instant, effects: &mut Effects) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.deadline = None;
            effects.close_now(CloseMode::Close);
        }
    }
}
