//! `slicer`: cuts every chunk into small writes with a pause between them.
//!
//! Attributes: `average_size` (bytes per slice, default 0 = treated as 1), `size_variation`
//! (bytes, each slice is `average_size` ± up to this much), `delay` (MICROseconds between
//! slices, as in Toxiproxy). Useful to exercise parsers that assume a message arrives whole.

use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};

use super::{Item, Timed};
use evidence::seed::SeededRng;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Slicer {
    pub average_size: u64,
    pub size_variation: u64,
    pub delay: u64,
}

#[derive(Debug)]
pub(crate) struct SlicerLink {
    attrs: Slicer,
    rng: SeededRng,
    last_out: Option<Instant>,
}

impl SlicerLink {
    pub(crate) fn new(attrs: Slicer, rng: SeededRng) -> Self {
        Self {
            attrs,
            rng,
            last_out: None,
        }
    }

    fn next_size(&mut self, remaining: usize) -> usize {
        let average = i64::try_from(self.attrs.average_size.max(1)).unwrap_or(i64::MAX);
        let variation = i64::try_from(self.attrs.size_variation).unwrap_or(i64::MAX);
        let size = average
            .saturating_add(self.rng.between(-variation, variation))
            .max(1);
        usize::try_from(size).unwrap_or(usize::MAX).min(remaining)
    }

    pub(crate) fn push(&mut self, input: Timed, out: &mut Vec<Timed>) {
        let mut at = self.last_out.map_or(input.at, |last| input.at.max(last));
        let Item::Data(data) = input.item else {
            out.push(Timed {
                at,
                item: Item::Eof,
            });
            return;
        };
        let pause = Duration::from_micros(self.attrs.delay);
        let mut sent = 0;
        while sent < data.len() {
            let end = sent + self.next_size(data.len() - sent);
            out.push(Timed {
                at,
                item: Item::Data(data.slice(sent..end)),
            });
            at += pause;
            sent = end;
        }
        self.last_out = Some(at);
    }
}
