//! Defect switches: each deliberately breaks one mechanism so the verifier can be shown to
//! catch it. None is ever on by default; each is announced when the system starts and
//! recorded in the stores' run metadata.
//!
//! | defect | what it breaks | the invariant that catches it |
//! |---|---|---|
//! | `fresh-key-per-retry` | retries use a new provider key (`pay:<id>:<n>`) | no-duplicate-charge |
//! | `confirm-on-timeout` | an unknown payment outcome is confirmed | money-conservation, client-agrees |
//! | `no-retry-budget` | retries ignore the retry budget | admission-control (retry budget) |
//! | `no-admission-control` | no provider concurrency limit, rate limit or pushback | admission-control (concurrency) |
//! | `local-confirm-in-partition` | a gateway that cannot reach the owner decides the order itself | single-final-outcome |
//! | `no-consumer-dedup` | the outbox consumer applies redeliveries again | outbox-effectively-once |
//! | `oversell` | stock is reserved without checking what is left | no-oversell |
//! | `no-repair` | the repair worker never runs | bounded-pending-age |
//! | `reply-before-commit` | the owner pays and answers `201`/`200` before it writes the payment's transitions (a write-behind flushed once a second; the order sits in `inventory_reserved` meanwhile, which nothing repairs), so a crash loses the outcome the customer was told | client-agrees |
//! | `wall-clock-durations` | the repair worker measures how long an order has waited from the wall clock alone, so a clock stepped back holds orders pending past their bound | bounded-pending-age |
//! | `event-after-commit` | the confirmation event is written in a transaction of its own after the state change commits (a publisher flushing once a second), so a crash between the two loses it | outbox-effectively-once |

use serde::{Deserialize, Serialize};

/// One deliberate defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Defect {
    FreshKeyPerRetry,
    ConfirmOnTimeout,
    NoRetryBudget,
    NoAdmissionControl,
    LocalConfirmInPartition,
    NoConsumerDedup,
    Oversell,
    NoRepair,
    EventAfterCommit,
    ReplyBeforeCommit,
    WallClockDurations,
}

impl Defect {
    pub const ALL: [Defect; 11] = [
        Self::FreshKeyPerRetry,
        Self::ConfirmOnTimeout,
        Self::NoRetryBudget,
        Self::NoAdmissionControl,
        Self::LocalConfirmInPartition,
        Self::NoConsumerDedup,
        Self::Oversell,
        Self::NoRepair,
        Self::EventAfterCommit,
        Self::ReplyBeforeCommit,
        Self::WallClockDurations,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::FreshKeyPerRetry => "fresh-key-per-retry",
            Self::ConfirmOnTimeout => "confirm-on-timeout",
            Self::NoRetryBudget => "no-retry-budget",
            Self::NoAdmissionControl => "no-admission-control",
            Self::LocalConfirmInPartition => "local-confirm-in-partition",
            Self::NoConsumerDedup => "no-consumer-dedup",
            Self::Oversell => "oversell",
            Self::NoRepair => "no-repair",
            Self::EventAfterCommit => "event-after-commit",
            Self::ReplyBeforeCommit => "reply-before-commit",
            Self::WallClockDurations => "wall-clock-durations",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// The invariant of the same concern (DESIGN §6 names).
    pub fn caught_by(self) -> &'static str {
        match self {
            Self::FreshKeyPerRetry => "no-duplicate-charge",
            Self::ConfirmOnTimeout => "money-conservation",
            Self::NoRetryBudget | Self::NoAdmissionControl => "admission-control",
            Self::LocalConfirmInPartition => "single-final-outcome",
            Self::ReplyBeforeCommit => "client-agrees",
            Self::NoConsumerDedup | Self::EventAfterCommit => "outbox-effectively-once",
            Self::Oversell => "no-oversell",
            Self::NoRepair | Self::WallClockDurations => "bounded-pending-age",
        }
    }

    /// All names, for error messages.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

impl std::fmt::Display for Defect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names round-trip and unknown names are refused.
    #[test]
    fn names_round_trip() {
        for defect in Defect::ALL {
            assert_eq!(Defect::parse(defect.as_str()), Some(defect));
            let json = serde_json::to_string(&defect).unwrap();
            assert_eq!(json, format!("\"{}\"", defect.as_str()));
        }
        assert_eq!(Defect::parse("nope"), None);
        assert!(Defect::names().contains("no-repair"));
    }
}
