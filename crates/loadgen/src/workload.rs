//! The seam between the engine and what an arrival does. The engine decides *when* (the
//! schedule, the in-flight cap, the clock); a [`Workload`] decides *what*: one HTTP request
//! for the generic workload, a whole customer journey for the checkout workload.

use std::future::Future;

use serde::Serialize;
use tokio::time::Instant;

use crate::Arrival;

/// What became of one arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Definitely done as asked (2xx, 3xx for HTTP).
    Ok,
    /// Definitely not done (4xx or 5xx other than a rejection).
    Failed,
    /// Refused by admission control (429, 503): fast, safe to retry later.
    Rejected,
    /// No answer (timeout, connection error): it may or may not have happened (Jepsen `:info`).
    Unknown,
    /// Never started: the in-flight cap was reached at its intended time.
    Dropped,
}

impl Outcome {
    /// Every outcome, in report order.
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Failed,
        Outcome::Rejected,
        Outcome::Unknown,
        Outcome::Dropped,
    ];

    /// The lowercase name used in tags, JSON and text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Unknown => "unknown",
            Self::Dropped => "dropped",
        }
    }

    pub(crate) fn slot(self) -> usize {
        self as usize
    }
}

/// An arrival as the engine hands it to a workload.
#[derive(Debug, Clone, Copy)]
pub struct Dispatch {
    pub arrival: Arrival,
    /// When it should have started (run start + intended offset).
    pub intended_at: Instant,
    /// When the engine admitted it (queued it for the next free lane);
    /// `started_at - intended_at` is the generator lag.
    pub started_at: Instant,
}

/// What a workload reports for one arrival. Failures are outcomes, never errors.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    /// The operation, for per-operation histograms (e.g. `http`, `checkout`).
    pub op: &'static str,
    pub outcome: Outcome,
    /// When the work actually went out (for HTTP: the request was handed to a ready
    /// connection). `sent_at - started_at` is the wait for a free lane (and for a
    /// connection to open, if its lane had to reconnect).
    pub sent_at: Instant,
    /// When the final answer (or the decision that none will come) was in.
    pub finished_at: Instant,
    /// The final HTTP status, if there was one.
    pub status: Option<u16>,
    /// Why there was no answer: a short stable label such as `timeout` or `connect`.
    pub error: Option<&'static str>,
    /// Response bytes received.
    pub bytes: u64,
}

/// One kind of arrival.
///
/// The engine runs [`Workload::lanes`] lanes, each a task with its own [`Workload::Lane`]
/// state (for HTTP: one keep-alive connection). Admitted arrivals wait in one FIFO queue
/// and each free lane takes the next; so a lane performs one arrival at a time, and lane
/// state needs no locking. Implementations must not block the thread: the engine shares it
/// with the pacing of later arrivals, and blocking shows up as generator lag.
pub trait Workload: Send + Sync + 'static {
    /// Per-lane state, created once per lane and reused for every arrival it performs.
    type Lane: Send + 'static;

    /// The operation name that labels arrivals dropped before they started.
    fn op(&self) -> &'static str;

    /// How many arrivals may be performed at once (the engine caps it at `max_in_flight`).
    fn lanes(&self) -> usize;

    /// The state of lane `index` (e.g. a connection opened before the run).
    fn lane(&self, index: usize) -> Self::Lane;

    /// Performs one arrival to its end on `lane` and reports how it went.
    fn perform(
        &self,
        lane: &mut Self::Lane,
        dispatch: Dispatch,
    ) -> impl Future<Output = Completion> + Send;

    /// A JSON description for the summary (must include a `kind` string).
    fn describe(&self) -> serde_json::Value;

    /// An arrival that never reached a lane: `Dropped` at the in-flight cap, or `Unknown`
    /// when it was still queued as the drain timed out. A workload that keeps a record of
    /// every arrival (the checkout history) hears of these here; the engine counts them
    /// either way. Runs on the dispatcher: it must be quick and must not block.
    fn not_started(&self, _dispatch: &Dispatch, _outcome: Outcome) {}
}
