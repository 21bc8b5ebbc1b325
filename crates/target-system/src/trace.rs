//! The trace context of the work in progress (`evidence::trace`): a request handler runs
//! inside [`scope`] with the caller's ids (or new ones when none came), and every record
//! written and every hop sent inside it carries them ([`ids`], [`outbound`]). Background
//! work (the repair worker, the outbox relay) scopes each order's work with the order's
//! stored trace and a request id of its own ([`continuing`]).

use std::future::Future;
use std::sync::LazyLock;

use evidence::trace::{REQUEST_ID, SpanIds, Stamp, TRACEPARENT};
use hyper::HeaderMap;

tokio::task_local! {
    static STAMP: Stamp;
}

/// This process's source of span ids for the hops it makes.
static IDS: LazyLock<SpanIds> = LazyLock::new(SpanIds::new);

/// This process's span id source.
pub fn span_ids() -> &'static SpanIds {
    &IDS
}

/// The stamp of a request: the caller's trace and request id, or a new trace if the
/// caller sent no valid `traceparent`.
pub fn of_request(headers: &HeaderMap) -> Stamp {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    Stamp::from_headers(header(TRACEPARENT), header(REQUEST_ID))
        .unwrap_or_else(|| Stamp::fresh(&IDS))
}

/// Work of the system's own on a stored trace (a new trace if none is stored).
pub fn continuing(trace_id: Option<&str>) -> Stamp {
    Stamp::continuing(trace_id, &IDS)
}

/// The ids a record stored (a held intent, an outbox event): both kept when both are there,
/// else the trace continued with a request id of its own.
pub fn stored(trace_id: Option<String>, request_id: Option<String>) -> Stamp {
    match (trace_id, request_id) {
        (Some(trace_id), Some(request_id)) => Stamp {
            trace_id,
            request_id,
        },
        (trace_id, _) => continuing(trace_id.as_deref()),
    }
}

/// An operator's work on an order: the order's trace (when it has one) with the operator
/// request's request id.
pub fn on_order(trace_id: Option<&str>) -> Stamp {
    let stored = trace_id.filter(|t| evidence::trace::TraceId::parse(t).is_ok());
    match (stored, current()) {
        (Some(trace_id), Some(now)) => Stamp {
            trace_id: trace_id.to_string(),
            request_id: now.request_id,
        },
        (Some(trace_id), None) => continuing(Some(trace_id)),
        (None, Some(now)) => now,
        (None, None) => continuing(None),
    }
}

/// Runs `work` with `stamp` as the trace context.
pub async fn scope<F: Future>(stamp: Stamp, work: F) -> F::Output {
    STAMP.scope(stamp, work).await
}

/// The trace context in force, if any.
pub fn current() -> Option<Stamp> {
    STAMP.try_with(Clone::clone).ok()
}

/// The (trace id, request id) a record written now carries.
pub fn ids() -> (Option<String>, Option<String>) {
    match current() {
        Some(stamp) => (Some(stamp.trace_id), Some(stamp.request_id)),
        None => (None, None),
    }
}

/// The headers an outbound hop made now carries (none outside a trace context).
pub fn outbound() -> Vec<(&'static str, String)> {
    current()
        .map(|stamp| stamp.outbound(&IDS).to_vec())
        .unwrap_or_default()
}

/// `base` with the trace headers `extra` (from [`outbound`]) appended, as a client takes them.
pub fn with<'a>(
    base: &[(&'a str, &'a str)],
    extra: &'a [(&'static str, String)],
) -> Vec<(&'a str, &'a str)> {
    base.iter()
        .copied()
        .chain(extra.iter().map(|(name, value)| (*name, value.as_str())))
        .collect()
}
