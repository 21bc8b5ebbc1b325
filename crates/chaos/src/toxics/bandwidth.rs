//! `bandwidth`: caps the throughput of one link (one connection, one direction).
//!
//! Attributes: `rate` (kilobytes per second, 1 KB = 1000 bytes as in Toxiproxy; 0 = no limit).
//!
//! A chunk is released when the link has had time to "send" it at `rate`; chunks larger than
//! 100 ms worth of data are split into 100 ms slices so the receiver sees a steady trickle
//! rather than one late burst.

use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};

use super::{Item, Timed};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Bandwidth {
    pub rate: u64,
}

#[derive(Debug)]
pub(crate) struct BandwidthLink {
    rate_kb_per_sec: u64,
    last_out: Option<Instant>,
}

impl BandwidthLink {
    pub(crate) fn new(attrs: &Bandwidth) -> Self {
        Self {
            rate_kb_per_sec: attrs.rate,
            last_out: None,
        }
    }

    fn transmit_time(&self, bytes: usize) -> Duration {
        // bytes / (rate * 1000 B/s) seconds, in nanoseconds, without overflow.
        let nanos = (bytes as u128) * 1_000_000 / u128::from(self.rate_kb_per_sec);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    pub(crate) fn push(&mut self, input: Timed, out: &mut Vec<Timed>) {
        let start = self.last_out.map_or(input.at, |last| input.at.max(last));
        let Item::Data(data) = input.item else {
            out.push(Timed {
                at: start,
                item: Item::Eof,
            });
            return;
        };
        if self.rate_kb_per_sec == 0 {
            self.last_out = Some(start);
            out.push(Timed {
                at: start,
                item: Item::Data(data),
            });
            return;
        }
        let slice_bytes = usize::try_from(self.rate_kb_per_sec.saturating_mul(100))
            .unwrap_or(usize::MAX)
            .max(1);
        let mut sent = 0;
        while sent < data.len() {
            let end = (sent + slice_bytes).min(data.len());
            let at = start + self.transmit_time(end);
            out.push(Timed {
                at,
                item: Item::Data(data.slice(sent..end)),
            });
            self.last_out = Some(at);
            sent = end;
        }
    }
}
