//! One payment: provider calls with the stable key, retried within the retry budget, the
//! backoff schedule, the breaker and one end-to-end deadline.
//!
//! The first call uses the slot the checkout was admitted with; each retry waits for a new
//! slot. A retry happens only after a failure that proves nothing or nothing yet (refused,
//! in flight elsewhere, no answer) and only while the budget, the attempt limit, the breaker
//! and the deadline all allow it. Whatever is still unknown at the end is `payment_pending`.

use std::time::Duration;

use tokio::time::Instant;

use super::Region;
use super::admission::Slot;
use super::breaker::Permission;
use super::orders::AttemptRow;
use super::payment::{ChargeOutcome, payment_key};
use super::retry::backoff;
use crate::defects::Defect;

/// Shortest call worth starting before the deadline.
const MIN_TRY: Duration = Duration::from_millis(20);

/// What one payment established, with every provider call it made.
#[derive(Debug)]
pub struct Paid {
    pub outcome: ChargeOutcome,
    pub attempts: Vec<AttemptRow>,
    /// Why retrying stopped when the outcome is still not final.
    pub stopped: Option<&'static str>,
}

/// A charge to make.
#[derive(Debug, Clone, Copy)]
pub struct Charge<'a> {
    pub order_id: &'a str,
    pub amount_cents: i64,
    /// The attempt number of the first call (later than 1 when the repair worker pays).
    pub first_attempt: i64,
    pub probe: bool,
    pub deadline: Instant,
}

impl Region {
    /// Pays with `slot` held for the first call.
    pub(super) async fn pay_with_retries(&self, charge: Charge<'_>, slot: Slot) -> Paid {
        let inner = &self.inner;
        let config = &inner.config.payment;
        let defects = &inner.config.defects;
        let mut slot = Some(slot);
        let mut attempts = Vec::new();
        let mut attempt_no = charge.first_attempt;
        let mut probe = charge.probe;
        loop {
            let now = Instant::now();
            let remaining = charge.deadline.saturating_duration_since(now);
            if remaining < MIN_TRY {
                return Paid::last(attempts, "deadline");
            }
            let held = match slot.take() {
                Some(held) => held,
                None => match inner.gate.slot(remaining).await {
                    Some(held) => held,
                    None => return Paid::last(attempts, "no_provider_slot"),
                },
            };
            let now = Instant::now();
            let is_retry = attempt_no > 1;
            if !is_retry {
                inner.budget.deposit(now);
            } else if defects.contains(&Defect::NoRetryBudget) || inner.budget.try_withdraw(now) {
                inner.metrics.retries.with_label_values(&["allowed"]).inc();
            } else {
                inner.metrics.retries.with_label_values(&["denied"]).inc();
                return Paid::last(attempts, "retry_budget");
            }
            inner
                .metrics
                .retry_budget_available
                .set(inner.budget.available(now));
            let key = if is_retry && defects.contains(&Defect::FreshKeyPerRetry) {
                // Defect: a retry that is a new payment as far as the provider can tell.
                format!("{}:{attempt_no}", payment_key(charge.order_id))
            } else {
                payment_key(charge.order_id)
            };
            let timeout = config
                .per_try_timeout()
                .min(charge.deadline.saturating_duration_since(now));
            self.track_in_flight(1);
            let (outcome, mut row) = inner
                .payment
                .charge(
                    charge.order_id,
                    &key,
                    charge.amount_cents,
                    &config.currency,
                    attempt_no,
                    timeout,
                )
                .await;
            self.track_in_flight(-1);
            drop(held);
            row.is_retry = is_retry;
            self.record_call(&row);
            attempts.push(row);
            self.observe_outcome(&outcome, probe).await;
            probe = false;
            let retry_after = match &outcome {
                ChargeOutcome::Refused { retry_after, .. } => *retry_after,
                ChargeOutcome::InFlight => Some(Duration::from_millis(100)),
                ChargeOutcome::Unknown(_) => None,
                _ => return Paid::done(outcome, attempts),
            };
            if attempt_no >= i64::from(config.max_attempts) {
                return Paid::stopped(outcome, attempts, "max_attempts");
            }
            let retry = u32::try_from(attempt_no).unwrap_or(u32::MAX);
            let wait = backoff(config, retry, &inner.draws, retry_after);
            if Instant::now() + wait + MIN_TRY > charge.deadline {
                return Paid::stopped(outcome, attempts, "deadline");
            }
            tokio::time::sleep(wait).await;
            if inner.breaker.permission(Instant::now()) == Permission::Refuse {
                return Paid::stopped(outcome, attempts, "breaker_open");
            }
            attempt_no += 1;
        }
    }

    /// Feeds the breaker and the pushback from one charge outcome.
    async fn observe_outcome(&self, outcome: &ChargeOutcome, probe: bool) {
        let inner = &self.inner;
        let failed = match outcome {
            ChargeOutcome::Refused {
                status: 429,
                retry_after,
            } => {
                inner
                    .gate
                    .pushback(retry_after.unwrap_or(Duration::from_secs(1)));
                // Pushback is not failure; for a probe, an answer shows the provider is back.
                if !probe {
                    return;
                }
                false
            }
            // Another call with the key is being processed: says nothing about health, but a
            // probe that got an answer has shown the provider answers.
            ChargeOutcome::InFlight if !probe => return,
            ChargeOutcome::InFlight => false,
            ChargeOutcome::Refused { .. } | ChargeOutcome::Unknown(_) => true,
            ChargeOutcome::Authorized(_)
            | ChargeOutcome::Declined(_)
            | ChargeOutcome::KeyVoided
            | ChargeOutcome::Mismatch => false,
        };
        if let Some(change) = inner.breaker.record(Instant::now(), failed, probe) {
            self.mode_changed(&change.reason).await;
        }
    }

    fn track_in_flight(&self, delta: i64) {
        self.inner.metrics.provider_in_flight.add(delta);
    }
}

impl Paid {
    fn done(outcome: ChargeOutcome, attempts: Vec<AttemptRow>) -> Self {
        Self {
            outcome,
            attempts,
            stopped: None,
        }
    }

    fn stopped(outcome: ChargeOutcome, attempts: Vec<AttemptRow>, why: &'static str) -> Self {
        Self {
            outcome,
            attempts,
            stopped: Some(why),
        }
    }

    /// Stopped before a call could be made: the last call's outcome stands (or nothing was
    /// called at all, which is as unknown as it gets for the caller).
    fn last(attempts: Vec<AttemptRow>, why: &'static str) -> Self {
        let outcome = ChargeOutcome::Unknown(format!("stopped before calling: {why}"));
        Self {
            outcome: if attempts.is_empty() {
                outcome
            } else {
                ChargeOutcome::Unknown(format!("stopped after {} calls: {why}", attempts.len()))
            },
            attempts,
            stopped: Some(why),
        }
    }
}
