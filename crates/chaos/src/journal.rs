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

/// Reads every record of a journal file.
pub fn read_journal(path: &Path) -> Result<Vec<Record>, ChaosError> {
    let journal_error = |source| ChaosError::Journal {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(journal_error)?;
    evidence::journal::parse_journal(&text).map_err(|e| journal_error(std::io::Error::other(e)))
}
