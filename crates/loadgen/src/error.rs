//! The one error type of the crate. Request failures are not errors: they are outcomes,
//! counted in the report. These are the things that stop a run from starting, or a file
//! from being written or read.

use std::io;

/// Why a schedule, a target or an interval log could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// A value the user gave is wrong: names the field, the value and the fix.
    #[error("{field} = {value:?}: {problem}; fix: {fix}")]
    Invalid {
        field: String,
        value: String,
        problem: String,
        fix: String,
    },
    /// The target resolves to an address off this machine and remote load was not allowed.
    #[error(
        "url = {url:?}: {host} resolves to {address}, which is not a loopback address; \
         fix: pass --allow-remote if you mean to load a remote system you own"
    )]
    NotLoopback {
        url: String,
        host: String,
        address: String,
    },
    /// No connection could be opened to the target before the run.
    #[error(
        "url = {url:?}: could not connect ({reason}); fix: start the target or correct the URL"
    )]
    Unreachable { url: String, reason: String },
    /// An interval log could not be written.
    #[error("could not write the interval log: {0}")]
    HlogWrite(#[source] io::Error),
    /// An interval log could not be parsed or decoded.
    #[error("{source_name}: not a readable HdrHistogram interval log: {problem}")]
    HlogRead {
        source_name: String,
        problem: String,
    },
    /// The dedicated engine thread could not be started or died.
    #[error("the load generator thread failed: {0}")]
    Thread(String),
    /// The client history could not be opened (its store is unreachable or refused the
    /// tables): the run cannot keep its record, so it does not start.
    #[error("history {location}: {problem}")]
    History { location: String, problem: String },
}

impl LoadgenError {
    /// True when the user can fix the problem by changing their input (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Invalid { .. }
                | Self::NotLoopback { .. }
                | Self::Unreachable { .. }
                | Self::HlogRead { .. }
        )
    }

    /// Shorthand for [`LoadgenError::Invalid`].
    pub fn invalid(
        field: impl Into<String>,
        value: impl ToString,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            field: field.into(),
            value: value.to_string(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}
