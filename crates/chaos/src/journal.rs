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
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Planned,
    Requested,
    Applied,
    Failed,
    Aborted,
    Healed,
}

/// One API call made for a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// `toxiproxy` or `provider:<name>`.
    pub target: String,
    /// What was asked, e.g. `add_toxic a_to_b timeout_upstream`.
    pub op: String,
    /// `toxiproxy_rust` or `http`.
    pub via: String,
    /// The HTTP status, when the client exposes it (toxiproxy_rust does not; its changes are
    /// confirmed by reading the state back instead).
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which step a record is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRef {
    /// Position in the expanded plan.
    pub step: usize,
    /// Index of the `[[chaos]]` entry.
    pub entry: usize,
    /// `start` or `stop`.
    pub action: String,
    /// `partition`, `provider` or `link`.
    pub kind: String,
    /// Planned offset from load start.
    pub at_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub event: Event,
    pub elapsed_seconds: f64,
    pub wall_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<Call>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<serde_json::Value>,
}

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
        let wall_time = rfc3339_utc(SystemTime::now());
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
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).map_err(|e| journal_error(std::io::Error::other(e))))
        .collect()
}

/// `2026-05-01T12:34:56.789Z`.
pub fn rfc3339_utc(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (the well-known era-based method).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Wall times format as RFC 3339 UTC, including leap days and the millisecond part.
    #[test]
    fn formats_wall_time() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // 2000-02-29
        assert_eq!(rfc3339_utc(leap), "2000-02-29T00:00:00.123Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_767_225_599); // 2025-12-31T23:59:59
        assert_eq!(rfc3339_utc(later), "2025-12-31T23:59:59.000Z");
    }
}
