//! `slow_close`: delays the end of stream.
//!
//! Attributes: `delay` (milliseconds, default 0). Data passes untouched; when the sender
//! closes its side, the close reaches the receiver `delay` later.

use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};

use super::{Item, Timed};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlowClose {
    pub delay: u64,
}

#[derive(Debug)]
pub(crate) struct SlowCloseLink {
    delay: Duration,
    last_out: Option<Instant>,
}

impl SlowCloseLink {
    pub(crate) fn new(attrs: &SlowClose) -> Self {
        Self {
            delay: Duration::from_millis(attrs.delay),
            last_out: None,
        }
    }

    pub(crate) fn push(&mut self, input: Timed, out: &mut Vec<Timed>) {
        let mut at = self.last_out.map_or(input.at, |last| input.at.max(last));
        if matches!(input.item, Item::Eof) {
            at += self.delay;
        }
        self.last_out = Some(at);
        out.push(Timed {
            at,
            item: input.item,
        });
    }
}
