//! The chaos journal: append-only JSON Lines, one record per step, each fsync'd before the
//! next action so a crash cannot lose what was already done to the system.
//!
//! Every record carries `elapsed_seconds` (monotonic, since load start: the clock the load
//! generator and the verifier use) and `wall_time` (UTC, for matching logs and dashboards).
//! Events: `planned` (the expanded timeline), `requested`, `applied`, `failed`, `aborted`,
//! `healed`. Calls list each API call made with its HTTP status where the client exposes it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use evidence::time::rfc3339_ms;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ChaosError;

/// The clock of a run: zero is the instant the load started.
#[derive(Debug, Clone, Copy)]
pub struct LoadClock {
    pub start: Instant,
}

impl LoadClock {
    /// A clock whose zero is now.
    pub fn starting_now() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// Seconds since load start (negative before it).
    pub fn elapsed_seconds(&self) -> f64 {
        let now = Instant::now();
        if now >= self.start {
            (now - self.start).as_secs_f64()
        } else {
            -(self.start - now).as_secs_f64()
        }
    }
}

pub use evidence::journal::{Call, Event, Record, StepRef};

/// What a caller fills in; the journal adds sequence number and times.
#[derive(Debug, Clone, Default)]
pub struct Detail {
    pub step: Option<StepRef>,
    pub calls: Vec<Call>,
    pub message: Option<String>,
    pub plan: Option<serde_json::Value>,
}

#[derive(Debug)]
struct Sink {
    file: File,
    next_seq: u64,
}

/// An open journal. Cheap to share by reference; appends are serialised.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    clock: LoadClock,
    sink: Arc<Mutex<Sink>>,
    observer: Option<mpsc::UnboundedSender<Record>>,
}

impl Journal {
    /// Opens (or creates) `path` for appending.
    pub fn open(path: &Path, clock: LoadClock) -> Result<Self, ChaosError> {
        let journal_error = |source| ChaosError::Journal {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(journal_error)?;
        Ok(Self {
            path: path.to_path_buf(),
            clock,
            sink: Arc::new(Mutex::new(Sink { file, next_seq: 0 })),
            observer: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn clock(&self) -> LoadClock {
        self.clock
    }

    /// Every record written from now on is also sent here (for progress output and tests).
    pub fn observe(&mut self) -> mpsc::UnboundedReceiver<Record> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.observer = Some(tx);
        rx
    }

    /// Appends one record and fsyncs it before returning.
    pub async fn append(&self, event: Event, detail: Detail) -> Result<Record, ChaosError> {
        let elapsed_seconds = self.clock.elapsed_seconds();
        let wall_time = rfc3339_ms(SystemTime::now());
        let sink = self.sink.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
            let record = Record {
                seq: sink.next_seq,
                event,
                elapsed_seconds,
                wall_time,
                step: detail.step,
                calls: detail.calls,
                message: detail.message,
                plan: detail.plan,
            };
            let mut line = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
            line.push(b'\n');
            sink.file.write_all(&line)?;
            sink.file.sync_data()?;
            sink.next_seq += 1;
            Ok::<_, std::io::Error>(record)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|source| ChaosError::Journal {
            path: self.path.clone(),
            source,
        })?;
        if let Some(observer) = &self.observer {
            let _ = observer.send(written.clone());
        }
        Ok(written)
    }
}

/// The proxies a journal's run disabled and had not enabled again when it ended: what a
/// run killed inside a `refuse` partition left, which the proxy's own state cannot tell
/// apart from a proxy someone else disabled. Read from the Toxiproxy calls in order
/// (`disable X`, `enable X`, `populate X,Y` and `reset` enable), failed calls skipped.
pub fn left_disabled(records: &[Record]) -> std::collections::BTreeSet<String> {
    let mut disabled = std::collections::BTreeSet::new();
    let calls = records
        .iter()
        .flat_map(|r| &r.calls)
        .filter(|c| c.target == "toxiproxy" && c.error.is_none());
    for call in calls {
        let (op, rest) = call.op.split_once(' ').unwrap_or((call.op.as_str(), ""));
        match op {
            "disable" => {
                disabled.insert(rest.to_string());
            }
            "enable" => {
                disabled.remove(rest);
            }
            "populate" => {
                for name in rest.split(',') {
                    disabled.remove(name);
                }
            }
            "reset" => disabled.clear(),
            _ => {}
        }
    }
    disabled
}

/// Reads every record of a journal file.
pub fn read_journal(path: &Path) -> Result<Vec<Record>, ChaosError> {
    let journal_error = |source| ChaosError::Journal {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(journal_error)?;
    evidence::journal::parse_journal(&text).map_err(|e| journal_error(std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, ops: &[(&str, Option<&str>)]) -> Record {
        Record {
            seq,
            event: Event::Applied,
            elapsed_seconds: seq as f64,
            wall_time: String::new(),
            step: None,
            calls: ops
                .iter()
                .map(|(op, error)| Call {
                    target: "toxiproxy".into(),
                    op: (*op).into(),
                    via: "toxiproxy_rust".into(),
                    status: None,
                    error: error.map(str::to_string),
                })
                .collect(),
            message: None,
            plan: None,
        }
    }

    /// A proxy disabled and never enabled again is left disabled; one enabled again, one
    /// re-created by populate, or one whose disable failed is not; reset enables them all.
    #[test]
    fn left_disabled_follows_the_calls_in_order() {
        let records = [
            record(1, &[("populate a_to_b,b_to_a,my proxy", None)]),
            record(2, &[("disable a_to_b", None), ("disable my proxy", None)]),
            record(3, &[("disable b_to_a", Some("refused"))]),
            record(4, &[("enable a_to_b", None), ("add_toxic x t", None)]),
        ];
        let left: Vec<String> = left_disabled(&records).into_iter().collect();
        assert_eq!(left, ["my proxy"]);
        let mut reset = records.to_vec();
        reset.push(record(5, &[("reset", None)]));
        assert!(left_disabled(&reset).is_empty());
    }
}
