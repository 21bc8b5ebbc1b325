//! The client history: one row per arrival and one per request, written in batches by a
//! writer on a thread of its own ([`writer`]), fed through a bounded channel.
//!
//! Memory stays bounded however long the run: a lane that finishes a customer waits for
//! room in the channel (the customer's latency is already measured), and arrivals that
//! never reached a lane (dropped at the cap, or still queued when the drain ended) go to a
//! capped side buffer the writer empties on every pass. Without a sink the same writer
//! only counts, so the per-request statistics are the same with or without a history.
//!
//! The schema is the evidence contract's (`evidence::history`): the verifier reads what
//! this writes.

pub mod final_poll;
mod sql;
mod stats;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

pub use stats::{HistoryStats, RequestStats};
pub use writer::{HistoryTx, HistoryWriter, OpenHistory};

use crate::LoadgenError;
use crate::checkout::answer::{Answer, ClientOutcome, RequestKind};
use crate::checkout::customer::CustomerModel;

/// Where the history goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistorySink {
    /// One SQLite file (WAL, one writer connection); created with its directory.
    Sqlite { path: PathBuf },
    /// Two tables in a PostgreSQL database, in `schema` (created if missing) or the
    /// connection's default schema.
    Postgres { url: String, schema: Option<String> },
}

impl HistorySink {
    /// `sqlite://FILE`, a plain file path, or `postgres://...[?schema=NAME]`.
    pub fn parse(text: &str) -> Result<Self, LoadgenError> {
        let fix = "give a file (history.db, sqlite://history.db) or \
                   postgres://user@host:5432/db?schema=history";
        if let Some(path) = text.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(LoadgenError::invalid(
                    "--history",
                    text,
                    "no file after sqlite://",
                    fix,
                ));
            }
            return Ok(Self::Sqlite { path: path.into() });
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            let (base, query) = text.split_once('?').unwrap_or((text, ""));
            let mut schema = None;
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .filter(|p| match p.strip_prefix("schema=") {
                    Some(name) => {
                        schema = Some(name.to_string());
                        false
                    }
                    None => true,
                })
                .collect();
            if let Some(name) = &schema
                && (name.is_empty()
                    || name.len() > 63
                    || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            {
                return Err(LoadgenError::invalid(
                    "--history",
                    evidence::store::mask_password(text),
                    "a schema name is 1 to 63 letters, digits or '_'",
                    fix,
                ));
            }
            let url = if kept.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", kept.join("&"))
            };
            return Ok(Self::Postgres { url, schema });
        }
        if text.is_empty() || text.contains("://") {
            return Err(LoadgenError::invalid(
                "--history",
                text,
                "not a file path, sqlite:// or postgres:// URL",
                fix,
            ));
        }
        Ok(Self::Sqlite { path: text.into() })
    }

    /// Where it is, password masked.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite { path } => format!("sqlite://{}", path.display()),
            Self::Postgres { url, schema } => format!(
                "{} (schema {})",
                evidence::store::mask_password(url),
                schema.as_deref().unwrap_or("default")
            ),
        }
    }
}

/// Converts the runtime's monotonic instants to wall-clock microseconds, from one reading
/// of both clocks, so every row of a run is on one consistent wall-clock timeline.
#[derive(Debug, Clone, Copy)]
pub struct Anchor {
    at: Instant,
    wall_us: i64,
}

impl Anchor {
    pub fn now() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            at: Instant::now(),
            wall_us: i64::try_from(wall.as_micros()).unwrap_or(i64::MAX),
        }
    }

    pub fn wall_us(&self, at: Instant) -> i64 {
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        if at >= self.at {
            self.wall_us.saturating_add(micros(at - self.at))
        } else {
            self.wall_us.saturating_sub(micros(self.at - at))
        }
    }
}

/// One request of a customer.
#[derive(Debug, Clone)]
pub struct RequestRow {
    pub seq: u32,
    pub kind: RequestKind,
    /// Index of the target (entry region) it went to.
    pub region: usize,
    pub sent_at: Instant,
    pub finished_at: Instant,
    pub http_status: Option<u16>,
    pub answer: Answer,
    pub retry_after_ms: Option<u64>,
}

/// One customer's summary row.
#[derive(Debug, Clone)]
pub struct ArrivalRow {
    pub index: u64,
    pub phase: usize,
    pub intended_at: Instant,
    pub region: usize,
    pub customer: u64,
    pub sent_at: Option<Instant>,
    pub finished_at: Option<Instant>,
    pub attempts: u32,
    pub polls: u32,
    pub last_status: Option<u16>,
    pub outcome: ClientOutcome,
    pub detail: Option<String>,
    /// The items the customer sent, as JSON (`[{"sku","qty"}]`); `None` if it sent nothing.
    pub cart: Option<String>,
}

/// A customer and its requests: one message to the writer.
#[derive(Debug, Clone)]
pub struct Record {
    pub arrival: ArrivalRow,
    pub requests: Vec<RequestRow>,
}

/// What the writer needs to turn records into rows.
#[derive(Debug, Clone)]
pub struct RowContext {
    pub run_tag: String,
    pub phases: Vec<String>,
    pub model: Arc<CustomerModel>,
    pub anchor: Anchor,
}

impl RowContext {
    pub fn order_id(&self, index: u64) -> String {
        format!("{}-{index}", self.run_tag)
    }

    /// Customer `index`'s W3C trace id (one trace per customer).
    pub fn trace_id(&self, index: u64) -> evidence::trace::TraceId {
        evidence::trace::customer_trace(&self.run_tag, index)
    }

    /// The request id (span id) of request `seq` of customer `index`.
    pub fn request_id(&self, index: u64, seq: u32) -> String {
        evidence::trace::request_span(self.trace_id(index), seq).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sink text: files and sqlite:// URLs are SQLite; postgres URLs keep their parameters
    /// but give up `schema=`; junk names the flag.
    #[test]
    fn parses_sinks() {
        assert_eq!(
            HistorySink::parse("run/history.db").unwrap(),
            HistorySink::Sqlite {
                path: "run/history.db".into()
            }
        );
        assert_eq!(
            HistorySink::parse("sqlite:///tmp/h.db").unwrap(),
            HistorySink::Sqlite {
                path: "/tmp/h.db".into()
            }
        );
        assert_eq!(
            HistorySink::parse("postgres://u:pw@h:5432/db?sslmode=disable&schema=run_1").unwrap(),
            HistorySink::Postgres {
                url: "postgres://u:pw@h:5432/db?sslmode=disable".into(),
                schema: Some("run_1".into())
            }
        );
        let sink = HistorySink::parse("postgresql://u:pw@h/db").unwrap();
        assert!(!sink.describe().contains("pw"), "{}", sink.describe());
        for bad in [
            "",
            "mysql://h/db",
            "sqlite://",
            "postgres://h/db?schema=a-b",
        ] {
            let err = HistorySink::parse(bad).unwrap_err();
            assert!(err.to_string().starts_with("--history"), "{err}");
            assert!(err.is_bad_input());
        }
    }

    /// The anchor maps instants before and after it onto the wall clock, microsecond exact.
    #[test]
    fn anchor_converts_both_ways() {
        let anchor = Anchor::now();
        let later = anchor.at + Duration::from_micros(1_500);
        assert_eq!(anchor.wall_us(later) - anchor.wall_us, 1_500);
        if let Some(earlier) = anchor.at.checked_sub(Duration::from_micros(700)) {
            assert_eq!(anchor.wall_us - anchor.wall_us(earlier), 700);
        }
    }
}
