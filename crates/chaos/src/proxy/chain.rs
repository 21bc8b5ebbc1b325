//! The toxics of one link, in order, with their per-link state.
//!
//! Rebuilt whenever the proxy's toxic set changes; a toxic that is still there with the same
//! version keeps its state (timers, counters, its toxicity roll), so adding one toxic does not
//! disturb the others. Toxicity is rolled once per link and toxic version from the seeded RNG.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::ToxicEntry;
use crate::toxics::CloseMode;
use crate::toxics::{
    BandwidthLink, Effects, LatencyLink, LimitDataLink, ResetPeerLink, SlicerLink, SlowCloseLink,
    Timed, TimeoutLink, Toxic,
};
use evidence::seed::{SeededRng, label};

#[derive(Debug)]
enum LinkToxic {
    Latency(LatencyLink),
    Bandwidth(BandwidthLink),
    SlowClose(SlowCloseLink),
    Timeout(TimeoutLink),
    ResetPeer(ResetPeerLink),
    Slicer(SlicerLink),
    LimitData(LimitDataLink),
}

#[derive(Debug)]
struct Stage {
    name: String,
    version: u64,
    /// False when the toxicity roll said this link escapes the toxic.
    active: bool,
    state: LinkToxic,
}

/// The toxic chain of one link.
#[derive(Debug, Default)]
pub(crate) struct Chain {
    stages: Vec<Stage>,
    scratch_in: Vec<Timed>,
    scratch_out: Vec<Timed>,
}

impl Chain {
    /// Replaces the chain with `entries` (this link's direction only, in order).
    ///
    /// Removing a timeout toxic that was swallowing data on this link closes the connection.
    pub(crate) fn rebuild<'a>(
        &mut self,
        entries: impl Iterator<Item = &'a ToxicEntry>,
        link_seed: u64,
        now: Instant,
        effects: &mut Effects,
    ) {
        let mut old: Vec<Stage> = std::mem::take(&mut self.stages);
        for entry in entries {
            let position = old.iter().position(|s| s.name == entry.spec.name);
            let previous = position.map(|i| old.swap_remove(i));
            match previous {
                Some(stage) if stage.version == entry.version => self.stages.push(stage),
                previous => {
                    let carried_bytes = match previous.as_ref().map(|s| &s.state) {
                        Some(LinkToxic::LimitData(link)) => link.sent_bytes(),
                        _ => 0,
                    };
                    self.stages
                        .push(new_stage(entry, link_seed, now, carried_bytes));
                }
            }
        }
        for removed in old {
            if removed.active && matches!(removed.state, LinkToxic::Timeout(_)) {
                effects.close_now(CloseMode::Close);
            }
        }
    }

    /// No toxic acts on this link: bytes can be copied straight through.
    pub(crate) fn is_passthrough(&self) -> bool {
        self.stages.iter().all(|s| !s.active)
    }

    /// Sends one item through every active toxic; what comes out is appended to `queue`.
    pub(crate) fn push(
        &mut self,
        input: Timed,
        queue: &mut VecDeque<Timed>,
        effects: &mut Effects,
    ) {
        self.scratch_in.clear();
        self.scratch_in.push(input);
        for stage in self.stages.iter_mut().filter(|s| s.active) {
            self.scratch_out.clear();
            for item in self.scratch_in.drain(..) {
                match &mut stage.state {
                    LinkToxic::Latency(link) => link.push(item, &mut self.scratch_out),
                    LinkToxic::Bandwidth(link) => link.push(item, &mut self.scratch_out),
                    LinkToxic::SlowClose(link) => link.push(item, &mut self.scratch_out),
                    LinkToxic::Timeout(link) => link.push(item, &mut self.scratch_out),
                    LinkToxic::ResetPeer(link) => link.push(item),
                    LinkToxic::Slicer(link) => link.push(item, &mut self.scratch_out),
                    LinkToxic::LimitData(link) => link.push(item, &mut self.scratch_out, effects),
                }
            }
            std::mem::swap(&mut self.scratch_in, &mut self.scratch_out);
        }
        queue.extend(self.scratch_in.drain(..));
    }

    /// The next instant a toxic wants to act on its own (a timeout or a reset).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.stages
            .iter()
            .filter(|s| s.active)
            .filter_map(|s| match &s.state {
                LinkToxic::Timeout(link) => link.deadline(),
                LinkToxic::ResetPeer(link) => link.deadline(),
                _ => None,
            })
            .min()
    }

    /// Lets toxics whose deadline has passed act.
    pub(crate) fn fire(&mut self, now: Instant, effects: &mut Effects) {
        for stage in self.stages.iter_mut().filter(|s| s.active) {
            match &mut stage.state {
                LinkToxic::Timeout(link) => link.fire(now, effects),
                LinkToxic::ResetPeer(link) => link.fire(now, effects),
                _ => {}
            }
        }
    }
}

fn new_stage(entry: &ToxicEntry, link_seed: u64, now: Instant, carried_bytes: u64) -> Stage {
    let mut rng = SeededRng::derive(link_seed, &[label(&entry.spec.name), entry.version]);
    let active = rng.unit() < f64::from(entry.spec.toxicity);
    let state = match &entry.spec.toxic {
        Toxic::Latency(a) => LinkToxic::Latency(LatencyLink::new(a.clone(), rng)),
        Toxic::Bandwidth(a) => LinkToxic::Bandwidth(BandwidthLink::new(a)),
        Toxic::SlowClose(a) => LinkToxic::SlowClose(SlowCloseLink::new(a)),
        Toxic::Timeout(a) => LinkToxic::Timeout(TimeoutLink::new(a, now)),
        Toxic::ResetPeer(a) => LinkToxic::ResetPeer(ResetPeerLink::new(a)),
        Toxic::Slicer(a) => LinkToxic::Slicer(SlicerLink::new(a.clone(), rng)),
        Toxic::LimitData(a) => LinkToxic::LimitData(LimitDataLink::new(a, carried_bytes)),
    };
    Stage {
        name: entry.spec.name.clone(),
        version: entry.version,
        active,
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toxics::{Bandwidth, Item, Latency, LimitData, Stream, Timeout, ToxicSpec};
    use bytes::Bytes;
    use tokio::time::Duration;

    fn entry(toxic: Toxic, version: u64, toxicity: f32) -> ToxicEntry {
        let mut spec = ToxicSpec::new(Stream::Downstream, toxic);
        spec.toxicity = toxicity;
        ToxicEntry { spec, version }
    }

    fn data(at: Instant, bytes: usize) -> Timed {
        Timed {
            at,
            item: Item::Data(Bytes::from(vec![0u8; bytes])),
        }
    }

    /// Latency delays each chunk from its own arrival; queued chunks do not add up delays.
    #[test]
    fn latency_counts_from_arrival() {
        let t0 = Instant::now();
        let mut chain = Chain::default();
        let mut fx = Effects::default();
        let latency = Toxic::Latency(Latency {
            latency: 100,
            jitter: 0,
        });
        chain.rebuild([entry(latency, 1, 1.0)].iter(), 7, t0, &mut fx);
        let mut queue = VecDeque::new();
        chain.push(data(t0, 10), &mut queue, &mut fx);
        chain.push(
            data(t0 + Duration::from_millis(10), 10),
            &mut queue,
            &mut fx,
        );
        let due: Vec<_> = queue.iter().map(|t| t.at - t0).collect();
        assert_eq!(
            due,
            vec![Duration::from_millis(100), Duration::from_millis(110)]
        );
    }

    /// Bandwidth releases 100 ms slices at the rate (1 KB = 1000 bytes).
    #[test]
    fn bandwidth_slices_at_rate() {
        let t0 = Instant::now();
        let mut chain = Chain::default();
        let mut fx = Effects::default();
        let bw = Toxic::Bandwidth(Bandwidth { rate: 10 });
        chain.rebuild([entry(bw, 1, 1.0)].iter(), 7, t0, &mut fx);
        let mut queue = VecDeque::new();
        chain.push(data(t0, 2500), &mut queue, &mut fx);
        let due: Vec<_> = queue.iter().map(|t| (t.at - t0).as_millis()).collect();
        assert_eq!(due, vec![100, 200, 250]);
    }

    /// Toxicity 0 leaves the link untouched; limit_data keeps its count across an update.
    #[test]
    fn toxicity_and_state_across_updates() {
        let t0 = Instant::now();
        let mut chain = Chain::default();
        let mut fx = Effects::default();
        let limit = |bytes| Toxic::LimitData(LimitData { bytes });
        chain.rebuild([entry(limit(10), 1, 0.0)].iter(), 7, t0, &mut fx);
        assert!(chain.is_passthrough());
        chain.rebuild([entry(limit(10), 2, 1.0)].iter(), 7, t0, &mut fx);
        let mut queue = VecDeque::new();
        chain.push(data(t0, 6), &mut queue, &mut fx);
        assert!(!fx.close_after_flush);
        chain.rebuild([entry(limit(8), 3, 1.0)].iter(), 7, t0, &mut fx);
        chain.push(data(t0, 6), &mut queue, &mut fx);
        let sizes: Vec<_> = queue
            .iter()
            .map(|t| match &t.item {
                Item::Data(b) => b.len(),
                Item::Eof => 0,
            })
            .collect();
        assert_eq!(sizes, vec![6, 2]);
        assert!(fx.close_after_flush);
    }

    /// Removing an active timeout toxic asks for the connection to close.
    #[test]
    fn removing_timeout_closes() {
        let t0 = Instant::now();
        let mut chain = Chain::default();
        let mut fx = Effects::default();
        let timeout = Toxic::Timeout(Timeout { timeout: 0 });
        chain.rebuild([entry(timeout, 1, 1.0)].iter(), 7, t0, &mut fx);
        assert!(fx.close_now.is_none());
        chain.rebuild(std::iter::empty(), 7, t0, &mut fx);
        assert_eq!(fx.close_now, Some(CloseMode::Close));
    }

    /// Latency jitter is drawn from the link's seed: same seed, same delays; other seed, other.
    #[test]
    fn jitter_follows_the_seed() {
        let delays = |seed: u64| {
            let t0 = Instant::now();
            let mut chain = Chain::default();
            let mut fx = Effects::default();
            let latency = Toxic::Latency(Latency {
                latency: 100,
                jitter: 50,
            });
            chain.rebuild([entry(latency, 1, 1.0)].iter(), seed, t0, &mut fx);
            let mut queue = VecDeque::new();
            for i in 0..20 {
                // Far apart so the order constraint never hides the jitter.
                chain.push(data(t0 + Duration::from_secs(i), 1), &mut queue, &mut fx);
            }
            queue
                .iter()
                .enumerate()
                .map(|(i, t)| (t.at - t0 - Duration::from_secs(i as u64)).as_millis())
                .collect::<Vec<_>>()
        };
        assert_eq!(delays(1), delays(1));
        assert_ne!(delays(1), delays(2));
        assert!(delays(3).iter().all(|d| (50..=150).contains(d)));
    }
}
