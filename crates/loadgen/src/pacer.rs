//! Waiting until an arrival's intended time with sub-millisecond precision.
//!
//! tokio's timer (and the epoll timeout beneath it) has 1 ms granularity: sleeping to each
//! intended time would release all arrivals of a millisecond together, as a burst that
//! distorts the target and inflates the generator lag. So a wait is done in three stages:
//! - far away (> [`COARSE`]): tokio sleep until [`COARSE_LEAD`] before the deadline (cheap);
//! - near (> [`FINE`]): a helper thread `std::thread::sleep`s (nanosleep, ~60 µs slack on
//!   Linux) until [`FINE_LEAD`] before the deadline and wakes the task;
//! - very near: `yield_now` until the deadline, letting connection tasks run meanwhile.
//!
//! At high rates the gap between arrivals is below [`FINE`], so the dispatcher only yields:
//! it then costs a scheduler round trip per check, which is work the runtime does anyway.
//! The resulting send jitter is the generator-lag histogram of every report.

use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// Waits longer than this use the tokio timer first.
const COARSE: Duration = Duration::from_millis(4);
/// How long before the deadline the tokio timer should fire (it can be up to ~2 ms late).
const COARSE_LEAD: Duration = Duration::from_millis(3);
/// Waits longer than this (and at most [`COARSE`]) use the helper thread.
const FINE: Duration = Duration::from_micros(150);
/// How long before the deadline the helper thread wakes (nanosleep oversleeps ~50-70 µs).
const FINE_LEAD: Duration = Duration::from_micros(80);

type WakeRequest = (std::time::Instant, oneshot::Sender<()>);

/// Precise waits for one dispatcher. Dropping it ends its helper thread.
#[derive(Debug)]
pub(crate) struct Pacer {
    requests: Option<mpsc::Sender<WakeRequest>>,
}

impl Pacer {
    /// A pacer with its helper thread (without one if the thread cannot be spawned: then
    /// near waits fall back to yielding, which is precise but busier).
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::channel::<WakeRequest>();
        let spawned = std::thread::Builder::new()
            .name("loadgen-pacer".into())
            .spawn(move || {
                while let Ok((deadline, wake)) = rx.recv() {
                    let now = std::time::Instant::now();
                    if deadline > now {
                        std::thread::sleep(deadline - now);
                    }
                    let _ = wake.send(());
                }
            });
        Self {
            requests: spawned.ok().map(|_| tx),
        }
    }

    /// Returns at (or as soon as possible after) `deadline`.
    pub(crate) async fn wait_until(&self, deadline: Instant) {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let left = deadline - now;
            if left > COARSE {
                tokio::time::sleep_until(deadline - COARSE_LEAD).await;
            } else if left > FINE
                && let Some(requests) = &self.requests
            {
                let (tx, rx) = oneshot::channel();
                let wake_at = (deadline - FINE_LEAD).into_std();
                if requests.send((wake_at, tx)).is_err() {
                    tokio::task::yield_now().await;
                } else {
                    let _ = rx.await;
                }
            } else {
                tokio::task::yield_now().await;
            }
        }
    }
}
