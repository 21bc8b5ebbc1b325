//! The one error type of the chaos crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the chaos layer. [`ChaosError::is_bad_input`] tells the
/// CLI which ones are the user's to fix (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// A `[[chaos]]` entry is wrong; `location` is e.g. `chaos[2].mode`.
    #[error("{location}: {message}")]
    Timeline { location: String, message: String },
    #[error("could not read the profile {path}: {source}")]
    ReadProfile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the profile {path} is not valid TOML: {message}")]
    ParseProfile { path: PathBuf, message: String },
    #[error("{what} {url:?} is not usable: {reason}")]
    BadUrl {
        what: &'static str,
        url: String,
        reason: String,
    },
    /// The targets do not match the timeline (a proxy or provider it names is missing).
    #[error("{0}")]
    Preflight(String),
    #[error("could not listen on {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error("embedded toxiproxy: {message}")]
    Server { message: String },
    #[error("chaos journal {path}: {source}")]
    Journal {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A timeline step could not be applied (the state was healed afterwards).
    #[error("chaos step at {at_seconds:.3}s could not be applied: {message}")]
    StepFailed { at_seconds: f64, message: String },
    /// The final heal could not confirm that no fault is left.
    #[error("healing did not restore a clean state: {0}")]
    HealIncomplete(String),
}

impl ChaosError {
    /// True for errors in what the user gave (profile, URL, flags): exit code 2.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Timeline { .. }
                | Self::ReadProfile { .. }
                | Self::ParseProfile { .. }
                | Self::BadUrl { .. }
                | Self::Preflight(_)
                | Self::Listen { .. }
        )
    }
}
