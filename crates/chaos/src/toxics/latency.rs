//! `latency`: holds every chunk back by `latency` ± `jitter`.
//!
//! Attributes: `latency` (milliseconds, default 0), `jitter` (milliseconds, default 0; each
//! chunk's delay is drawn uniformly from `latency - jitter ..= latency + jitter`, never below 0).
//!
//! Per link, chunks keep their order and a chunk's delay counts from when the proxy read it,
//! so chunks that queue behind a slow one do not add their delays up (Toxiproxy does the same).
//! End of stream is not delayed beyond the last chunk.

use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};

use super::{Item, Timed};
use evidence::seed::SeededRng;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    pub latency: u64,
    pub jitter: u64,
}

/// One link's view of a latency toxic.
#[derive(Debug)]
pub(crate) struct LatencyLink {
    attrs: Latency,
    rng: SeededRng,
    last_out: Option<Instant>,
}

impl LatencyLink {
    pub(crate) fn new(attrs: Latency, rng: SeededRng) -> Self {
        Self {
            attrs,
            rng,
            last_out: None,
        }
    }

    /// The delay for the next chunk: seeded, so a run can be replayed.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = i64::try_from(self.attrs.latency).unwrap_or(i64::MAX);
        let jitter = i64::try_from(self.attrs.jitter).unwrap_or(i64::MAX);
        let millis = base
            .saturating_add(self.rng.between(-jitter, jitter))
            .max(0);
        Duration::from_millis(millis.unsigned_abs())
    }

    pub(crate) fn push(&mut self, input: Timed, out: &mut Vec<Timed>) {
        let at = match input.item {
            Item::Data(_) => input.at + self.next_delay(),
            Item::Eof => input.at,
        };
        let at = self.last_out.map_or(at, |last| at.max(last));
        self.last_out = Some(at);
        out.push(Timed {
            at,
            item: input.item,
        });
    }
}
