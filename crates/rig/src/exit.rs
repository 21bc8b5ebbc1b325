//! Exit codes (the same for every command) and the error kinds that select them.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// Every verified invariant and threshold passed.
pub const PASS: u8 = 0;
/// A verified invariant or a profile threshold failed.
pub const FAILED: u8 = 1;
/// Bad input: profile, flag, URL. The message names the field, the value and the fix.
pub const BAD_INPUT: u8 = 2;
/// The run could not complete (component crashed, store unreachable): verdict unknown.
pub const COULD_NOT_COMPLETE: u8 = 3;

/// Bad input from the user; maps to exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// What a command reports when it ran to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
}

/// Maps a command's outcome to the process exit code, printing the error if there is one.
pub fn to_exit_code(outcome: anyhow::Result<Verdict>) -> ExitCode {
    match outcome {
        Ok(Verdict::Pass) => ExitCode::from(PASS),
        Ok(Verdict::Fail) => ExitCode::from(FAILED),
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<BadInput>().is_some() {
                ExitCode::from(BAD_INPUT)
            } else {
                ExitCode::from(COULD_NOT_COMPLETE)
            }
        }
    }
}

/// Where log lines go: stderr, until a run names its log file ([`log_to_file`]).
static LOG_FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);
/// Whether log lines also go to stderr once a log file is set (`rig run -v`).
static LOG_TO_STDERR: AtomicBool = AtomicBool::new(true);

/// Log lines go to stderr (`RIG_LOG`, e.g. `RIG_LOG=debug`, picks the level; `warn` by
/// default); a run sends them to its `rig.log` instead. Never coloured: log lines end up in
/// files and CI logs as often as on terminals.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RIG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .try_init();
}

/// How much of the components' logging a person sees on the terminal during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// Logs go to the run's `rig.log` only; the terminal shows progress and the verdict.
    #[default]
    Quiet,
    /// Logs go to `rig.log` and to stderr (`-v`).
    Verbose,
}

/// From now on, log lines go to `path` (appended), and to stderr only when `verbosity` is
/// [`Verbosity::Verbose`].
pub fn log_to_file(path: &Path, verbosity: Verbosity) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    *LOG_FILE.lock().unwrap_or_else(PoisonError::into_inner) = Some(file);
    LOG_TO_STDERR.store(verbosity == Verbosity::Verbose, Ordering::Relaxed);
    Ok(())
}

/// One formatted log line at a time, to the log file and/or stderr.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut file = LOG_FILE.lock().unwrap_or_else(PoisonError::into_inner);
        let to_stderr = match file.as_mut() {
            Some(file) => {
                file.write_all(buf)?;
                LOG_TO_STDERR.load(Ordering::Relaxed)
            }
            None => true,
        };
        if to_stderr {
            std::io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(file) = LOG_FILE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            file.flush()?;
        }
        std::io::stderr().flush()
    }
}
