//! `limit_data`: lets `bytes` bytes through on a link, then closes the connection.
//!
//! Attributes: `bytes` (bytes per connection and direction, default 0 = close as soon as data
//! arrives). The count survives updates of the toxic, so raising the limit lets more through.
//! Use it on `downstream` for "the server did the work but the answer was cut off".

use serde::{Deserialize, Serialize};

use super::{Effects, Item, Timed};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitData {
    pub bytes: u64,
}

#[derive(Debug)]
pub(crate) struct LimitDataLink {
    limit_bytes: u64,
    sent_bytes: u64,
}

impl LimitDataLink {
    pub(crate) fn new(attrs: &LimitData, sent_bytes: u64) -> Self {
        Self {
            limit_bytes: attrs.bytes,
            sent_bytes,
        }
    }

    pub(crate) fn sent_bytes(&self) -> u64 {
        self.sent_bytes
    }

    pub(crate) fn push(&mut self, input: Timed, out: &mut Vec<Timed>, effects: &mut Effects) {
        let Item::Data(data) = input.item else {
            out.push(input);
            return;
        };
        let remaining = self.limit_bytes.saturating_sub(self.sent_bytes);
        let take = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(data.len());
        if take > 0 {
            out.push(Timed {
                at: input.at,
                item: Item::Data(data.slice(..take)),
            });
            self.sent_bytes += take as u64;
        }
        if self.sent_bytes >= self.limit_bytes {
            effects.close_after_flush = true;
        }
    }
}
