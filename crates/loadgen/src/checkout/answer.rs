//! What a customer was told, as data: each request's [`Answer`], and the one pure rule
//! ([`ClientOutcome::decide`]) that turns a customer's answers into what the customer
//! believes happened. The verifier's client-agrees invariant relies on these rules exactly,
//! so they live here, on their own, with their tests.

use std::time::Duration;

use serde::Deserialize;

use crate::Outcome;

/// Why a request was sent (the `kind` column of `history_requests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestKind {
    /// The first `POST /v1/checkout`.
    Checkout,
    /// A later `POST` with the same key, after a timeout, an error or a shed answer.
    Retry,
    /// The second, concurrent click: the same key and body.
    DoubleClick,
    /// `GET /v1/orders/{id}` after a `202`.
    Poll,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Checkout => "checkout",
            Self::Retry => "retry",
            Self::DoubleClick => "double_click",
            Self::Poll => "poll",
        }
    }

    /// The operation whose histograms the request lands in: `checkout` or `status_poll`.
    pub fn op(self) -> &'static str {
        match self {
            Self::Poll => "status_poll",
            _ => "checkout",
        }
    }
}

/// What one request got back (the `answer` column of `history_requests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Answer {
    /// `order_confirmed` (a `201`, or a poll saying so).
    Confirmed,
    /// Accepted, outcome not known yet (`202`, or a poll of a non-terminal order).
    Pending,
    /// `failed_safely`: definitely not done.
    Failed,
    /// Shed: `429` or `503`.
    Rejected,
    /// `422`: the key was used with another body.
    Conflict,
    /// Another `4xx`.
    Invalid,
    /// Any other answer (`5xx`, a body that is not the contract's), or a connection that
    /// broke after the request may have left: indeterminate.
    Error,
    /// No answer within the timeout: indeterminate.
    Timeout,
    /// No connection: the request never left.
    ConnectError,
}

impl Answer {
    /// Every answer, in column order.
    pub const ALL: [Answer; 9] = [
        Self::Confirmed,
        Self::Pending,
        Self::Failed,
        Self::Rejected,
        Self::Conflict,
        Self::Invalid,
        Self::Error,
        Self::Timeout,
        Self::ConnectError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Conflict => "conflict",
            Self::Invalid => "invalid",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::ConnectError => "connect_error",
        }
    }

    /// True when waiting and asking again (same key) may help: no answer, a broken
    /// connection, a server error, or a shed answer.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Rejected | Self::Error | Self::Timeout | Self::ConnectError
        )
    }
}

/// The fields of a checkout or order answer the client reads.
#[derive(Debug, Default, Deserialize)]
pub struct AnswerBody {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub status_url: Option<String>,
}

/// The order states a region reports that are not final.
const NON_TERMINAL: [&str; 5] = [
    "order_intent_saved",
    "inventory_reserved",
    "payment_authorizing",
    "payment_pending",
    "needs_reconciliation",
];

/// Classifies an HTTP answer from its status and (for 2xx) its JSON body's `status`. The
/// body wins over the code for 2xx (a poll is a `200` whatever the order's state); a 2xx
/// whose body is not the contract's is judged by its code (`201` confirmed, `202` pending)
/// and otherwise is an `error`.
pub fn classify(status: u16, body: Option<&AnswerBody>) -> Answer {
    match status {
        200..=299 => match body.and_then(|b| b.status.as_deref()) {
            Some("order_confirmed") => Answer::Confirmed,
            Some("failed_safely") => Answer::Failed,
            Some(state) if NON_TERMINAL.contains(&state) => Answer::Pending,
            Some(_) => Answer::Error,
            None => match status {
                201 => Answer::Confirmed,
                202 => Answer::Pending,
                _ => Answer::Error,
            },
        },
        429 | 503 => Answer::Rejected,
        422 => Answer::Conflict,
        400..=499 => Answer::Invalid,
        _ => Answer::Error,
    }
}

/// How long an answer asks the client to wait before asking again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// No `Retry-After` at all.
    Absent,
    Wait(Duration),
    /// Present but unreadable (e.g. an HTTP date): the client does not retry, since it
    /// cannot be sure it would not retry too soon.
    Unreadable,
}

impl RetryAfter {
    /// `Retry-After-Ms` when it parses (the precise wait), else `Retry-After` in whole
    /// seconds.
    pub fn parse(retry_after_ms: Option<&str>, retry_after: Option<&str>) -> Self {
        if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<u64>().ok()) {
            return Self::Wait(Duration::from_millis(ms));
        }
        match retry_after {
            None => Self::Absent,
            Some(text) => text
                .trim()
                .parse::<u64>()
                .map_or(Self::Unreadable, |s| Self::Wait(Duration::from_secs(s))),
        }
    }

    /// The wait in milliseconds, when there is a readable one (the history column).
    pub fn millis(self) -> Option<u64> {
        match self {
            Self::Wait(wait) => Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
            _ => None,
        }
    }
}

/// What a customer believes happened (the `outcome` column of `history_arrivals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientOutcome {
    Confirmed,
    Failed,
    Rejected,
    Unknown,
    Dropped,
}

impl ClientOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Unknown => "unknown",
            Self::Dropped => "dropped",
        }
    }

    /// The engine's outcome class for the same arrival.
    pub fn engine_outcome(self) -> Outcome {
        match self {
            Self::Confirmed => Outcome::Ok,
            Self::Failed => Outcome::Failed,
            Self::Rejected => Outcome::Rejected,
            Self::Unknown => Outcome::Unknown,
            Self::Dropped => Outcome::Dropped,
        }
    }

    /// The rule, over every answer the customer got (checkouts, retries, the double-click
    /// and polls alike):
    /// - `confirmed` if any answer said `order_confirmed`;
    /// - else `failed` if any said `failed_safely` (a definite outcome);
    /// - else `rejected` only if every request was answered `429`/`503`: nothing
    ///   indeterminate, nothing accepted, so nothing can have happened;
    /// - else `unknown` (timeouts, connection errors, 5xx, a `202` never resolved, `422`).
    ///
    /// No answers at all (a customer that never sent) is `unknown`; `dropped` is decided
    /// by the engine, never here.
    pub fn decide(answers: impl IntoIterator<Item = Answer>) -> Self {
        let mut any = false;
        let mut all_rejected = true;
        let mut failed = false;
        for answer in answers {
            any = true;
            match answer {
                Answer::Confirmed => return Self::Confirmed,
                Answer::Failed => failed = true,
                Answer::Rejected => {}
                _ => all_rejected = false,
            }
        }
        if failed {
            Self::Failed
        } else if any && all_rejected {
            Self::Rejected
        } else {
            Self::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Answer::*;
    use super::*;

    fn body(status: &str) -> AnswerBody {
        AnswerBody {
            status: Some(status.into()),
            ..AnswerBody::default()
        }
    }

    /// Statuses and bodies map to answers as the region contract says: the body decides
    /// for 2xx, 429/503 are shed, 422 is a conflict, a 2xx of unknown shape is an error.
    #[test]
    fn classifies_the_contract() {
        assert_eq!(classify(201, Some(&body("order_confirmed"))), Confirmed);
        assert_eq!(classify(201, None), Confirmed);
        assert_eq!(classify(202, Some(&body("payment_pending"))), Pending);
        assert_eq!(classify(202, None), Pending);
        assert_eq!(classify(200, Some(&body("failed_safely"))), Failed);
        assert_eq!(classify(200, Some(&body("order_confirmed"))), Confirmed);
        for state in NON_TERMINAL {
            assert_eq!(classify(200, Some(&body(state))), Pending, "{state}");
        }
        assert_eq!(classify(200, Some(&body("teapot"))), Error);
        assert_eq!(classify(200, None), Error);
        assert_eq!(classify(429, None), Rejected);
        assert_eq!(classify(503, None), Rejected);
        assert_eq!(classify(422, None), Conflict);
        assert_eq!(classify(400, None), Invalid);
        assert_eq!(classify(404, None), Invalid);
        assert_eq!(classify(500, None), Error);
        assert_eq!(classify(504, None), Error);
        assert_eq!(classify(302, None), Error);
    }

    /// The outcome rule, case by case, including the orders the rule must not depend on.
    #[test]
    fn decides_by_the_rule() {
        let cases: Vec<(Vec<Answer>, ClientOutcome)> = vec![
            (vec![Confirmed], ClientOutcome::Confirmed),
            (vec![Timeout, Confirmed], ClientOutcome::Confirmed),
            (vec![Pending, Pending, Confirmed], ClientOutcome::Confirmed),
            (vec![Failed, Confirmed], ClientOutcome::Confirmed),
            (vec![Failed], ClientOutcome::Failed),
            (vec![Timeout, Failed], ClientOutcome::Failed),
            (vec![Pending, Failed], ClientOutcome::Failed),
            (vec![Rejected], ClientOutcome::Rejected),
            (vec![Rejected, Rejected, Rejected], ClientOutcome::Rejected),
            (vec![Rejected, Timeout], ClientOutcome::Unknown),
            (vec![Timeout, Rejected], ClientOutcome::Unknown),
            (vec![Rejected, ConnectError], ClientOutcome::Unknown),
            (vec![Rejected, Pending], ClientOutcome::Unknown),
            (vec![Pending, Pending], ClientOutcome::Unknown),
            (vec![Conflict], ClientOutcome::Unknown),
            (vec![Error], ClientOutcome::Unknown),
            (vec![Invalid], ClientOutcome::Unknown),
            (vec![Timeout, Timeout, Timeout], ClientOutcome::Unknown),
            (vec![], ClientOutcome::Unknown),
        ];
        for (answers, want) in cases {
            let mut reversed = answers.clone();
            reversed.reverse();
            assert_eq!(ClientOutcome::decide(answers.clone()), want, "{answers:?}");
            assert_eq!(
                ClientOutcome::decide(reversed),
                want,
                "{answers:?} reversed"
            );
        }
    }

    /// Retry-After-Ms wins when readable; Retry-After is whole seconds; an unreadable
    /// Retry-After (an HTTP date) is refused, so the client does not guess.
    #[test]
    fn reads_retry_after() {
        let wait = |ms| RetryAfter::Wait(Duration::from_millis(ms));
        assert_eq!(RetryAfter::parse(Some("250"), Some("1")), wait(250));
        assert_eq!(RetryAfter::parse(None, Some("2")), wait(2000));
        assert_eq!(RetryAfter::parse(Some("x"), Some("2")), wait(2000));
        assert_eq!(RetryAfter::parse(None, None), RetryAfter::Absent);
        assert_eq!(
            RetryAfter::parse(None, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            RetryAfter::Unreadable
        );
        assert_eq!(wait(300).millis(), Some(300));
        assert_eq!(RetryAfter::Unreadable.millis(), None);
    }

    /// Every answer has a distinct column name; the retryable ones are the indeterminate
    /// and shed ones.
    #[test]
    fn names_and_retryability() {
        let names: std::collections::BTreeSet<_> = Answer::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), Answer::ALL.len());
        let retryable: Vec<_> = Answer::ALL
            .into_iter()
            .filter(|a| a.is_retryable())
            .collect();
        assert_eq!(retryable, vec![Rejected, Error, Timeout, ConnectError]);
    }
}
