//! Exit codes (the same for every command) and the error kinds that select them.

use std::process::ExitCode;

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

/// Log lines go to stderr; `RIG_LOG` (e.g. `RIG_LOG=debug`) picks the level.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RIG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
