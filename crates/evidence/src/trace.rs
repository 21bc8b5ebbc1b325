//! Correlation ids across every hop: the W3C `traceparent` header (Trace Context, level 1)
//! and a request id.
//!
//! - The load generator starts one trace per customer and sends one span per request.
//! - A region adopts the incoming trace. Its request id is the incoming `x-request-id` when
//!   one came, else the client span's id. Each outbound hop (the peer region, the provider,
//!   the event sink) carries the same trace id with a span id of its own, plus
//!   `x-request-id`, so the owner region's and the provider's records join the customer's
//!   request directly.
//! - Work with no request in scope (the repair worker, the outbox relay, an operator's
//!   decision) uses the order's stored trace id and a request id of its own.
//!
//! Every record written while serving a request carries its [`Stamp`] (trace id and request
//! id, lowercase hex). These ids are correlation, never evidence: a system under test sends
//! them, so no invariant is judged from them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::seed::splitmix64;

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";
/// The request id header: the id of the customer's request a hop serves.
pub const REQUEST_ID: &str = "x-request-id";

/// The longest request id kept from a header (longer ones are replaced by the span id).
pub const MAX_REQUEST_ID: usize = 64;

/// A 16-byte trace id, never all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id, never all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// A trace id from two 64-bit words (a zero result is made non-zero).
    pub fn from_words(high: u64, low: u64) -> Self {
        let low = if high == 0 && low == 0 { 1 } else { low };
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&high.to_be_bytes());
        bytes[8..].copy_from_slice(&low.to_be_bytes());
        Self(bytes)
    }

    /// Parses 32 lowercase hex digits (not all zero).
    pub fn parse(text: &str) -> Result<Self, TraceError> {
        let mut bytes = [0u8; 16];
        hex_into(text, &mut bytes).ok_or(TraceError::TraceId)?;
        if bytes == [0; 16] {
            return Err(TraceError::TraceId);
        }
        Ok(Self(bytes))
    }
}

impl SpanId {
    /// A span id from a 64-bit word (zero is made non-zero).
    pub fn from_word(word: u64) -> Self {
        Self(word.max(1).to_be_bytes())
    }

    /// Parses 16 lowercase hex digits (not all zero).
    pub fn parse(text: &str) -> Result<Self, TraceError> {
        let mut bytes = [0u8; 8];
        hex_into(text, &mut bytes).ok_or(TraceError::ParentId)?;
        if bytes == [0; 8] {
            return Err(TraceError::ParentId);
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Why a `traceparent` or id was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error(
        "not a traceparent: expected 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, lowercase"
    )]
    Shape,
    #[error("the version ff is not allowed")]
    Version,
    #[error("a trace id is 32 lowercase hex digits, not all zero")]
    TraceId,
    #[error("a parent (span) id is 16 lowercase hex digits, not all zero")]
    ParentId,
}

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value as the W3C recommendation says: version `00` is exactly
    /// 55 characters; a later version may be longer (its extra fields, after a `-`, are
    /// ignored); `ff` is invalid; hex is lowercase; an all-zero id is invalid.
    pub fn parse(value: &str) -> Result<Self, TraceError> {
        let value = value.trim_matches([' ', '\t']);
        let bytes = value.as_bytes();
        if bytes.len() < 55 || !value.is_ascii() {
            return Err(TraceError::Shape);
        }
        let version = &value[0..2];
        let mut v = [0u8; 1];
        hex_into(version, &mut v).ok_or(TraceError::Shape)?;
        if v[0] == 0xff {
            return Err(TraceError::Version);
        }
        if (v[0] == 0 && bytes.len() != 55) || (bytes.len() > 55 && bytes[55] != b'-') {
            return Err(TraceError::Shape);
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(TraceError::Shape);
        }
        let trace_id = TraceId::parse(&value[3..35])?;
        let parent_id = SpanId::parse(&value[36..52])?;
        let mut flags = [0u8; 1];
        hex_into(&value[53..55], &mut flags).ok_or(TraceError::Shape)?;
        Ok(Self {
            trace_id,
            parent_id,
            flags: flags[0],
        })
    }

    /// The header value (version `00`).
    pub fn header(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.parent_id, self.flags)
    }
}

/// The ids a record carries: the trace it belongs to and the request it was written for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The customer's request id (16 hex digits when the rig made it; a caller's own
    /// `x-request-id` is kept as sent, up to [`MAX_REQUEST_ID`] characters).
    pub request_id: String,
}

impl Stamp {
    /// The stamp of a request from its headers: the incoming trace, and the incoming
    /// `x-request-id` if it is a usable id, else the caller's span id. `None` without a
    /// valid `traceparent` (the caller is then the start of a new trace: [`Stamp::fresh`]).
    pub fn from_headers(traceparent: Option<&str>, request_id: Option<&str>) -> Option<Self> {
        let parent = TraceParent::parse(traceparent?).ok()?;
        let request_id = match request_id.map(str::trim) {
            Some(id) if usable_request_id(id) => id.to_string(),
            _ => parent.parent_id.to_string(),
        };
        Some(Self {
            trace_id: parent.trace_id.to_string(),
            request_id,
        })
    }

    /// A new trace, for a request that came without one.
    pub fn fresh(ids: &SpanIds) -> Self {
        Self {
            trace_id: ids.trace().to_string(),
            request_id: ids.span().to_string(),
        }
    }

    /// Work of its own (a repair, a relay delivery) on a stored trace: the trace kept, a new
    /// request id. A missing or malformed stored trace starts a new one.
    pub fn continuing(trace_id: Option<&str>, ids: &SpanIds) -> Self {
        match trace_id.and_then(|t| TraceId::parse(t).ok()) {
            Some(trace) => Self {
                trace_id: trace.to_string(),
                request_id: ids.span().to_string(),
            },
            None => Self::fresh(ids),
        }
    }

    /// The headers of an outbound hop made for this stamp: the same trace with a span of
    /// the hop's own, and the request id.
    pub fn outbound(&self, ids: &SpanIds) -> [(&'static str, String); 2] {
        let trace_id = TraceId::parse(&self.trace_id).unwrap_or_else(|_| ids.trace());
        let parent = TraceParent {
            trace_id,
            parent_id: ids.span(),
            flags: 1,
        };
        [
            (TRACEPARENT, parent.header()),
            (REQUEST_ID, self.request_id.clone()),
        ]
    }
}

/// Whether a caller's `x-request-id` is kept: 1 to [`MAX_REQUEST_ID`] visible ASCII
/// characters from a conservative set (letters, digits, `-_.:`).
pub fn usable_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A source of span and trace ids for one process: SplitMix64 over a counter, started from
/// the process id and the time, so two processes do not collide. Ids of work the rig drives
/// (customers' traces) come from the run seed instead; these are for the hops a system
/// makes on its own.
#[derive(Debug)]
pub struct SpanIds {
    next: AtomicU64,
}

impl SpanIds {
    /// A source started from this process's id and the current time.
    pub fn new() -> Self {
        let now = crate::time::now_us() as u64;
        Self::seeded(now ^ (u64::from(std::process::id()) << 40))
    }

    /// A source with a fixed start (tests).
    pub fn seeded(start: u64) -> Self {
        Self {
            next: AtomicU64::new(splitmix64(start)),
        }
    }

    fn word(&self) -> u64 {
        splitmix64(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// A new span id.
    pub fn span(&self) -> SpanId {
        SpanId::from_word(self.word())
    }

    /// A new trace id.
    pub fn trace(&self) -> TraceId {
        TraceId::from_words(self.word(), self.word())
    }
}

impl Default for SpanIds {
    fn default() -> Self {
        Self::new()
    }
}

/// The trace of customer `index` of the run tagged `run_tag`: the same on every shard and
/// every rerun of the run's records, different across runs (the tag is per run).
pub fn customer_trace(run_tag: &str, index: u64) -> TraceId {
    let base = crate::seed::label(run_tag) ^ index.wrapping_mul(0xA24B_AED4_963E_E407);
    TraceId::from_words(splitmix64(base), splitmix64(base ^ 0x5851_F42D_4C95_7F2D))
}

/// The span id of request `seq` (from 0) of a customer's trace.
pub fn request_span(trace: TraceId, seq: u32) -> SpanId {
    let low = u64::from_be_bytes(trace.0[8..].try_into().unwrap_or([0; 8]));
    SpanId::from_word(splitmix64(
        low ^ u64::from(seq).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    ))
}

/// Accepts a trace id as 32 hex digits or a whole `traceparent` (as a user pastes one).
pub fn trace_id_of(text: &str) -> Result<TraceId, TraceError> {
    let text = text.trim();
    if !text.contains('-') {
        TraceId::parse(text)
    } else {
        TraceParent::parse(text).map(|p| p.trace_id)
    }
}

/// Decodes lowercase hex of exactly `out.len() * 2` digits.
fn hex_into(text: &str, out: &mut [u8]) -> Option<()> {
    let bytes = text.as_bytes();
    if bytes.len() != out.len() * 2 {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = digit(bytes[2 * i])? << 4 | digit(bytes[2 * i + 1])?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_parses_as_the_recommendation_says() {
        // Proves: the W3C rules (length, version ff, lowercase, all-zero ids) are applied.
        let parent = TraceParent::parse(GOOD).unwrap();
        assert_eq!(
            parent.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.parent_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(parent.flags, 1);
        assert_eq!(parent.header(), GOOD);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert!(TraceParent::parse(bad).is_err(), "{bad:?} accepted");
        }
        // A later version may carry more fields after a dash.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future";
        assert!(TraceParent::parse(later).is_ok());
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x").is_err()
        );
    }

    #[test]
    fn a_stamp_keeps_the_trace_and_the_customer_request() {
        // Proves: the request id is the caller's x-request-id when usable, else its span id,
        // and an outbound hop keeps trace and request id with a span of its own.
        let ids = SpanIds::seeded(7);
        let own = Stamp::from_headers(Some(GOOD), None).unwrap();
        assert_eq!(own.request_id, "00f067aa0ba902b7");
        let kept = Stamp::from_headers(Some(GOOD), Some("req-42")).unwrap();
        assert_eq!(kept.request_id, "req-42");
        let replaced = Stamp::from_headers(Some(GOOD), Some("bad id with spaces")).unwrap();
        assert_eq!(replaced.request_id, "00f067aa0ba902b7");
        assert!(Stamp::from_headers(Some("garbage"), Some("req-42")).is_none());
        assert!(Stamp::from_headers(None, None).is_none());
        let [(name, header), (rid_name, rid)] = kept.outbound(&ids);
        assert_eq!(
            (name, rid_name, rid.as_str()),
            (TRACEPARENT, REQUEST_ID, "req-42")
        );
        let next = TraceParent::parse(&header).unwrap();
        assert_eq!(next.trace_id.to_string(), kept.trace_id);
        assert_ne!(next.parent_id.to_string(), "00f067aa0ba902b7");
        let again = Stamp::from_headers(Some(&header), Some(&rid)).unwrap();
        assert_eq!(again, kept, "the next hop records the same ids");
    }

    #[test]
    fn ids_differ_by_seed_and_never_zero() {
        // Proves: the id source is seeded (same start, same ids; other start, other ids).
        let a = SpanIds::seeded(1);
        let b = SpanIds::seeded(1);
        let c = SpanIds::seeded(2);
        let (x, y, z) = (a.trace(), b.trace(), c.trace());
        assert_eq!(x, y);
        assert_ne!(x, z);
        assert_ne!(a.span(), a.span(), "each call is new");
        assert_eq!(TraceId::from_words(0, 0).to_string().len(), 32);
        assert_ne!(TraceId::from_words(0, 0).0, [0; 16]);
        assert_ne!(SpanId::from_word(0).0, [0; 8]);
        assert_eq!(
            trace_id_of(GOOD).unwrap(),
            trace_id_of("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert!(trace_id_of("xyz").is_err());
        let t = customer_trace("run-1", 5);
        assert_eq!(t, customer_trace("run-1", 5));
        assert_ne!(t, customer_trace("run-2", 5), "the run tag matters");
        assert_ne!(t, customer_trace("run-1", 6));
        assert_ne!(request_span(t, 0), request_span(t, 1));
        let continued = Stamp::continuing(Some("4bf92f3577b34da6a3ce929d0e0e4736"), &a);
        assert_eq!(continued.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(Stamp::continuing(Some("nope"), &a).trace_id.len(), 32);
    }
}
