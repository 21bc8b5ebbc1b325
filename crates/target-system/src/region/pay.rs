//! `Payments`: the region's payment service. One payment is provider calls with the stable
//! key, retried within the retry budget, the backoff schedule, the breaker and one
//! end-to-end deadline; the breaker and the operator's pause decide the payment mode.
//!
//! The first call uses the slot the checkout was admitted with; each retry waits for a new
//! slot. A retry happens only after a failure that proves nothing or nothing yet (refused,
//! in flight elsewhere, no answer) and only while the budget, the attempt limit, the breaker
//! and the deadline all allow it. Whatever is still unknown at the end is `payment_pending`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use evidence::order_state::OrderState;
use evidence::seed::Draws;
use tokio::time::Instant;

use super::admission::{Gate, Slot};
use super::breaker::{Breaker, Permission};
use super::context::Context;
use super::orders::{self, AttemptRow};
use super::payment::{ChargeOutcome, PaymentClient, payment_key};
use super::retry::{RetryBudget, backoff};
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

/// The provider client with its retry budget, breaker, backoff jitter and pause switch.
#[derive(Debug)]
pub(super) struct Payments {
    ctx: Arc<Context>,
    client: PaymentClient,
    gate: Arc<Gate>,
    budget: RetryBudget,
    breaker: Breaker,
    /// Backoff jitter, from the seed.
    draws: Draws,
    /// An operator paused new payments.
    paused: AtomicBool,
}

impl Payments {
    pub(super) fn new(
        ctx: Arc<Context>,
        client: PaymentClient,
        gate: Arc<Gate>,
        draws: Draws,
    ) -> Self {
        Self {
            budget: RetryBudget::new(&ctx.config.retry_budget),
            breaker: Breaker::new(&ctx.config.breaker),
            ctx,
            client,
            gate,
            draws,
            paused: AtomicBool::new(false),
        }
    }

    pub(super) fn region(&self) -> evidence::RegionId {
        self.ctx.id
    }

    /// The provider client, for the repair worker's look-ups, voids and refunds.
    pub(super) fn client(&self) -> &PaymentClient {
        &self.client
    }

    /// May a new payment start now: refused while paused or while the breaker is open, a
    /// probe while it is half-open.
    pub(super) fn permission(&self) -> Permission {
        if self.is_paused() {
            Permission::Refuse
        } else {
            self.breaker.permission(Instant::now())
        }
    }

    pub(super) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub(super) fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// `paused` (operator) before `degraded` (breaker) before `normal`.
    pub(super) fn mode(&self) -> &'static str {
        if self.is_paused() {
            "paused"
        } else if self.breaker.is_open() {
            "degraded"
        } else {
            "normal"
        }
    }

    /// An operator pauses or resumes new payments; the change is recorded. The new mode.
    pub(super) async fn set_paused(&self, paused: bool) -> Result<&'static str, sqlx::Error> {
        self.paused.store(paused, Ordering::Relaxed);
        let mode = self.mode();
        let reason = if paused {
            "operator paused payments"
        } else {
            "operator resumed payments"
        };
        orders::record_mode(&self.ctx.db, mode, reason, "operator").await?;
        Ok(mode)
    }

    /// Records a breaker-driven mode change with its time and cause.
    async fn mode_changed(&self, reason: &str) {
        let mode = self.mode();
        self.ctx
            .metrics
            .breaker_open
            .set(i64::from(self.breaker.is_open()));
        tracing::warn!(region = %self.ctx.id, mode, reason, "payment mode changed");
        if let Err(err) = orders::record_mode(&self.ctx.db, mode, reason, "breaker").await {
            tracing::error!(error = %err, "could not record a mode change");
        }
    }

    /// Counts one provider call (by op and outcome) and its duration.
    pub(super) fn count_call(&self, row: &AttemptRow) {
        let m = &self.ctx.metrics;
        m.provider_calls
            .with_label_values(&[row.op, row.outcome])
            .inc();
        let seconds = (row.finished_at_us - row.started_at_us).max(0) as f64 / 1e6;
        m.provider_call_duration
            .with_label_values(&[row.op])
            .observe(seconds);
    }

    /// Pays with `slot` held for the first call.
    pub(super) async fn pay(&self, charge: Charge<'_>, slot: Slot) -> Paid {
        let config = &self.ctx.config.payment;
        let defects = &self.ctx.config.defects;
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
                None => match self.gate.slot(remaining).await {
                    Some(held) => held,
                    None => return Paid::last(attempts, "no_provider_slot"),
                },
            };
            let now = Instant::now();
            let is_retry = attempt_no > 1;
            if !is_retry {
                self.budget.deposit(now);
            } else if defects.contains(&Defect::NoRetryBudget) || self.budget.try_withdraw(now) {
                self.ctx
                    .metrics
                    .retries
                    .with_label_values(&["allowed"])
                    .inc();
            } else {
                self.ctx
                    .metrics
                    .retries
                    .with_label_values(&["denied"])
                    .inc();
                return Paid::last(attempts, "retry_budget");
            }
            self.ctx
                .metrics
                .retry_budget_available
                .set(self.budget.available(now));
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
            let (outcome, mut row) = self
                .client
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
            self.count_call(&row);
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
            let wait = backoff(config, retry, &self.draws, retry_after);
            if Instant::now() + wait + MIN_TRY > charge.deadline {
                return Paid::stopped(outcome, attempts, "deadline");
            }
            tokio::time::sleep(wait).await;
            if self.breaker.permission(Instant::now()) == Permission::Refuse {
                return Paid::stopped(outcome, attempts, "breaker_open");
            }
            attempt_no += 1;
        }
    }

    /// Feeds the breaker and the pushback from one charge outcome.
    async fn observe_outcome(&self, outcome: &ChargeOutcome, probe: bool) {
        let failed = match outcome {
            ChargeOutcome::Refused {
                status: 429,
                retry_after,
            } => {
                self.gate
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
        if let Some(change) = self.breaker.record(Instant::now(), failed, probe) {
            self.mode_changed(&change.reason).await;
        }
    }

    fn track_in_flight(&self, delta: i64) {
        self.ctx.metrics.provider_in_flight.add(delta);
    }

    /// The state a payment leads to, its reason, and the confirmed charge (id, amount).
    pub(super) fn judge(
        &self,
        paid: &Paid,
        amount_cents: i64,
    ) -> (OrderState, String, Option<(String, i64)>) {
        match &paid.outcome {
            ChargeOutcome::Authorized(charge) if charge.amount_cents == amount_cents => (
                OrderState::OrderConfirmed,
                format!("charge {} authorized", charge.charge_id),
                Some((charge.charge_id.clone(), charge.amount_cents)),
            ),
            ChargeOutcome::Authorized(charge) => (
                OrderState::PaymentPending,
                format!("charge {} amount differs", charge.charge_id),
                None,
            ),
            ChargeOutcome::Declined(charge) => (
                OrderState::FailedSafely,
                format!("declined:{}", charge.charge_id),
                None,
            ),
            ChargeOutcome::Unknown(detail) if self.ctx.has(Defect::ConfirmOnTimeout) => {
                (
                    // Defect: an unknown outcome is treated as paid.
                    OrderState::OrderConfirmed,
                    format!("assumed paid after: {detail}"),
                    None,
                )
            }
            other => {
                let why = match other {
                    ChargeOutcome::Refused { status, .. } => format!("provider_refused:{status}"),
                    ChargeOutcome::InFlight => "provider_in_flight".into(),
                    ChargeOutcome::KeyVoided => "key_voided".into(),
                    ChargeOutcome::Mismatch => "provider_mismatch".into(),
                    ChargeOutcome::Unknown(detail) => format!("unknown:{detail}"),
                    ChargeOutcome::Authorized(_) | ChargeOutcome::Declined(_) => "payment".into(),
                };
                let reason = match paid.stopped {
                    Some(stop) => format!("{why} (stopped: {stop})"),
                    None => why,
                };
                (OrderState::PaymentPending, reason, None)
            }
        }
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
