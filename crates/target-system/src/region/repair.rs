//! The repair worker: resolves orders whose payment outcome is unknown from the provider's
//! own evidence, looked up by the stable key `pay:<order_id>`.
//!
//! | provider says                         | decision                                        |
//! |---------------------------------------|-------------------------------------------------|
//! | key still processing                  | wait for the next scan                          |
//! | authorized, amount matches            | `order_confirmed` (stock committed, event out)  |
//! | authorized, amount differs            | `needs_reconciliation`                          |
//! | declined / voided                     | `failed_safely` (stock released)                |
//! | key unknown, order parked (degraded)  | pay now, while the breaker allows and there is time before `max_pending_age - void_after` |
//! | key unknown, older than `void_after`  | void the key (tombstone), then `failed_safely`  |
//! | unreachable / unreadable              | wait for the next scan                          |
//!
//! `needs_reconciliation` is compensated on a later scan: refund the live charge, void the
//! key, `failed_safely`. Every provider call takes a provider slot (admission control covers
//! repair too) and is an attempt row. The `no-repair` defect stops the worker.
//!
//! **Ages.** How long an order has waited is never less than the monotonic time this process
//! has watched it wait: the wall-clock age from its record (what a restarted process has to
//! go on) is taken only when it is longer. A wall clock stepped back (a clock fault, an NTP
//! step) therefore cannot hold an order pending past its bound; one stepped forward only
//! makes the worker act early, which is safe (a void tombstones the key first). The
//! `wall-clock-durations` defect judges ages from the wall clock alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::watch;

use super::admission::{Gate, Slot};
use super::book::Orders;
use super::breaker::Permission;
use super::context::Context;
use super::orders::{self, Actor, AttemptRow, Order};
use super::pay::{Charge, Payments};
use super::payment::{Lookup, PaymentClient, VoidOutcome};
use crate::clock::now_us;
use crate::defects::Defect;
use crate::provider::api::KeyAnswer;
use evidence::order_state::OrderState;

/// What one scan did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairReport {
    pub scanned: usize,
    pub confirmed: usize,
    pub failed_safely: usize,
    pub to_reconciliation: usize,
    pub waiting: usize,
}

enum Decision {
    Move {
        to: OrderState,
        reason: String,
        charge: Option<(String, i64)>,
    },
    Wait,
}

/// The repair worker over the order book, the payment service and the provider slots.
#[derive(Debug)]
pub(super) struct Repair {
    ctx: Arc<Context>,
    orders: Arc<Orders>,
    payments: Arc<Payments>,
    gate: Arc<Gate>,
    /// When this process first saw each order it may act on (monotonic).
    seen: Mutex<HashMap<String, Instant>>,
}

impl Repair {
    pub(super) fn new(
        ctx: Arc<Context>,
        orders: Arc<Orders>,
        payments: Arc<Payments>,
        gate: Arc<Gate>,
    ) -> Self {
        Self {
            ctx,
            orders,
            payments,
            gate,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// How long `order` has waited since `since_us` (one of its record's times): the longer
    /// of the wall-clock age and the monotonic time since this process first saw it; the
    /// wall clock alone with the `wall-clock-durations` defect.
    fn age_us(&self, order: &Order, since_us: i64) -> i64 {
        let wall = now_us() - since_us;
        if self.ctx.has(Defect::WallClockDurations) {
            return wall;
        }
        let watched = self
            .seen
            .lock()
            .ok()
            .and_then(|seen| seen.get(&order.order_id).map(Instant::elapsed))
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        wall.max(watched)
    }

    /// Notes when this process first saw each of `orders`; forgets orders no scan returns
    /// once the map is far larger than a batch (its memory stays bounded).
    fn watch(&self, orders: &[Order]) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let now = Instant::now();
        for order in orders {
            seen.entry(order.order_id.clone()).or_insert(now);
        }
        let cap = 100 * self.ctx.config.repair.batch.max(1) as usize;
        if seen.len() > cap {
            let current: std::collections::HashSet<&str> =
                orders.iter().map(|o| o.order_id.as_str()).collect();
            seen.retain(|id, _| current.contains(id.as_str()));
        }
    }

    fn forget(&self, order_id: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(order_id);
        }
    }

    /// One repair scan over pending orders (and ones stuck mid-call after a crash).
    pub(super) async fn once(&self) -> Result<RepairReport, orders::OrderError> {
        let config = &self.ctx.config.repair;
        let wall_clock = self.ctx.has(Defect::WallClockDurations);
        // Every order in `payment_authorizing` is read (the running checkouts' too, so the
        // limit makes room for them) and its age judged below, unless the defect lets the
        // wall clock pick the stuck ones.
        let (stuck_before, limit) = if wall_clock {
            (
                now_us() - secs_us(config.stuck_after_seconds),
                config.batch as usize,
            )
        } else {
            (
                i64::MAX,
                config.batch as usize + self.orders.inflight_count(),
            )
        };
        let candidates = orders::repair_candidates(
            &self.ctx.db,
            stuck_before,
            i64::try_from(limit).unwrap_or(i64::MAX),
        )
        .await?;
        let candidates: Vec<Order> = candidates
            .into_iter()
            .filter(|order| !self.orders.is_inflight(&order.order_id))
            .collect();
        self.watch(&candidates);
        let mut report = RepairReport::default();
        for order in candidates {
            if report.scanned >= config.batch as usize {
                break;
            }
            if order.status == OrderState::PaymentAuthorizing
                && self.age_us(&order, order.updated_at_us) < secs_us(config.stuck_after_seconds)
            {
                // Its checkout may still be writing; stuck only once it has waited this long.
                continue;
            }
            report.scanned += 1;
            // The repair continues the order's trace, as a request of its own.
            let stamp = crate::trace::continuing(order.trace_id.as_deref());
            crate::trace::scope(stamp, self.repair_one(&order, &mut report)).await?;
        }
        Ok(report)
    }

    /// Decides and applies one order's repair.
    async fn repair_one(
        &self,
        order: &Order,
        report: &mut RepairReport,
    ) -> Result<(), orders::OrderError> {
        let (decision, calls) = self.decide(order).await;
        match decision {
            Decision::Wait => {
                report.waiting += 1;
                self.orders.save_calls(&calls).await?;
                self.count_action("wait");
            }
            Decision::Move { to, reason, charge } => {
                let charge_ref = charge.as_ref().map(|(id, amount)| (id.as_str(), *amount));
                let moved = self
                    .orders
                    .finish(
                        &order.order_id,
                        order.status,
                        to,
                        Some(&reason),
                        charge_ref,
                        &calls,
                        Actor::Repair,
                    )
                    .await?;
                if moved {
                    self.forget(&order.order_id);
                    match to {
                        OrderState::OrderConfirmed => report.confirmed += 1,
                        OrderState::FailedSafely => report.failed_safely += 1,
                        _ => report.to_reconciliation += 1,
                    }
                    self.count_action(to.as_str());
                }
            }
        }
        Ok(())
    }

    fn count_action(&self, action: &str) {
        self.ctx
            .metrics
            .repair_actions
            .with_label_values(&[action])
            .inc();
    }

    /// A provider slot for a repair call (repair waits; it is never shed).
    async fn repair_slot(&self) -> Option<Slot> {
        self.gate
            .slot(self.ctx.config.payment.per_try_timeout())
            .await
    }

    /// One provider call holding a provider slot, counted and kept in `calls`; `None` when
    /// no slot was free within the per-try timeout.
    async fn provider_call<'a, T, Fut>(
        &'a self,
        calls: &mut Vec<AttemptRow>,
        call: impl FnOnce(&'a PaymentClient, Duration) -> Fut,
    ) -> Option<T>
    where
        Fut: std::future::Future<Output = (T, AttemptRow)>,
    {
        let slot = self.repair_slot().await?;
        let timeout = self.ctx.config.payment.per_try_timeout();
        let (answer, row) = call(self.payments.client(), timeout).await;
        drop(slot);
        self.payments.count_call(&row);
        calls.push(row);
        Some(answer)
    }

    /// Gathers the provider's evidence for one order and decides. Returns the calls made.
    async fn decide(&self, order: &Order) -> (Decision, Vec<AttemptRow>) {
        let mut calls = Vec::new();
        let id = order.order_id.as_str();
        let Some(lookup) = self
            .provider_call(&mut calls, |p, timeout| p.lookup(id, timeout))
            .await
        else {
            return (Decision::Wait, calls);
        };
        if order.status == OrderState::NeedsReconciliation {
            return (self.compensate(order, lookup, &mut calls).await, calls);
        }
        let decision = match lookup {
            Lookup::Unknown(_) => Decision::Wait,
            Lookup::Found(view) => judge(order, &view),
            Lookup::NotFound if is_parked(order) && self.may_still_pay(order) => {
                self.pay_parked(order, &mut calls).await
            }
            Lookup::NotFound => {
                let config = &self.ctx.config.repair;
                let pending_for = self.age_us(order, order.updated_at_us);
                // A parked order is voided once its time to be paid is over; any other
                // unknown payment after `void_after` (a request still in transit lands first).
                let wait_for = if is_parked(order) {
                    0
                } else {
                    secs_us(config.void_after_seconds)
                };
                if pending_for < wait_for {
                    Decision::Wait
                } else {
                    self.void_and_fail(order, &mut calls).await
                }
            }
        };
        (decision, calls)
    }

    /// A parked order may still be paid while there is time left to void it before
    /// `max_pending_age` if paying fails.
    fn may_still_pay(&self, order: &Order) -> bool {
        let config = &self.ctx.config.repair;
        self.age_us(order, order.created_at_us)
            < secs_us(config.max_pending_age_seconds) - secs_us(config.void_after_seconds)
    }

    /// Pays a parked order now if the breaker and the operator allow it.
    async fn pay_parked(&self, order: &Order, calls: &mut Vec<AttemptRow>) -> Decision {
        let permission = self.payments.permission();
        if permission == Permission::Refuse {
            return Decision::Wait;
        }
        let earlier = match orders::count_charge_attempts(&self.ctx.db, &order.order_id).await {
            Ok(n) => n,
            Err(_) => return Decision::Wait,
        };
        let Some(slot) = self.repair_slot().await else {
            return Decision::Wait;
        };
        let charge = Charge {
            order_id: &order.order_id,
            amount_cents: order.amount_cents,
            first_attempt: earlier + 1,
            probe: permission == Permission::Probe,
            deadline: tokio::time::Instant::now() + self.ctx.config.payment.deadline(),
        };
        let paid = self.payments.pay(charge, slot).await;
        let (to, reason, charge) = self.payments.judge(&paid, order.amount_cents);
        calls.extend(paid.attempts);
        if to == OrderState::PaymentPending {
            Decision::Wait
        } else {
            Decision::Move {
                to,
                reason: format!("paid after parking: {reason}"),
                charge,
            }
        }
    }

    /// Voids the order's key (tombstone) and fails the order safely.
    async fn void_and_fail(&self, order: &Order, calls: &mut Vec<AttemptRow>) -> Decision {
        let id = order.order_id.as_str();
        let Some(void) = self
            .provider_call(calls, |p, timeout| p.void(id, timeout))
            .await
        else {
            return Decision::Wait;
        };
        match void {
            VoidOutcome::Voided(view) => Decision::Move {
                to: OrderState::FailedSafely,
                reason: match view.charge {
                    None if is_parked(order) => "parked too long to pay in time; key voided".into(),
                    None => "payment never reached the provider; key voided".into(),
                    Some(charge) => format!("late charge {} voided", charge.charge_id),
                },
                charge: None,
            },
            VoidOutcome::InFlight | VoidOutcome::Unknown(_) => Decision::Wait,
        }
    }

    /// `needs_reconciliation`: refund whatever is live, void the key, fail safely.
    async fn compensate(
        &self,
        order: &Order,
        lookup: Lookup,
        calls: &mut Vec<AttemptRow>,
    ) -> Decision {
        let live = match lookup {
            Lookup::Unknown(_) => return Decision::Wait,
            Lookup::NotFound => None,
            Lookup::Found(view) if view.state == "processing" => return Decision::Wait,
            Lookup::Found(view) => view.charge.filter(|c| c.net_cents() > 0),
        };
        let mut refunded = None;
        if let Some(charge) = live {
            let (id, charge_id) = (order.order_id.as_str(), charge.charge_id.as_str());
            let refund = self
                .provider_call(calls, |p, timeout| p.refund(id, charge_id, timeout))
                .await;
            match refund {
                Some(Ok(_)) => refunded = Some(charge.charge_id),
                _ => return Decision::Wait,
            }
        }
        match self.void_and_fail(order, calls).await {
            Decision::Move { to, .. } => Decision::Move {
                to,
                reason: match refunded {
                    Some(id) => format!("reconciled: refunded {id}, key voided"),
                    None => "reconciled: no live charge, key voided".into(),
                },
                charge: None,
            },
            Decision::Wait => Decision::Wait,
        }
    }
}

/// How long an operator's sweep over pending orders may take before it stops and reports.
const SWEEP_WITHIN: Duration = Duration::from_secs(10);

/// What an operator decided about one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OperatorDecision {
    Confirm,
    Fail,
}

impl OperatorDecision {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Confirm => "confirm",
            Self::Fail => "fail",
        }
    }
}

/// What became of an operator's decision.
#[derive(Debug)]
pub(super) enum Resolved {
    /// The order moved; `did` lists what was done first (a refund, a void).
    Applied {
        status: OrderState,
        provider: String,
        did: Vec<String>,
    },
    /// Refused: the evidence contradicts it (`conflict`), or could not be gathered.
    Refused {
        why: String,
        provider: Option<String>,
        conflict: bool,
    },
    NotFound,
}

/// The provider's record of a key, in words.
fn describe_key(lookup: &Lookup) -> String {
    match lookup {
        Lookup::NotFound => "the provider has never seen the key".to_string(),
        Lookup::Unknown(err) => format!("the provider could not be asked: {err}"),
        Lookup::Found(view) => match &view.charge {
            Some(c) => format!(
                "key {} {}: charge {} {} {} {}{}",
                view.idempotency_key,
                view.state,
                c.charge_id,
                c.status,
                c.amount_cents,
                c.currency,
                if c.refunded_cents > 0 {
                    format!(" (refunded {})", c.refunded_cents)
                } else {
                    String::new()
                }
            ),
            None => format!("key {} {}, no charge", view.idempotency_key, view.state),
        },
    }
}

impl Repair {
    /// An operator's decision on one order (`POST /admin/orders/{id}/resolve`): the
    /// provider's record is looked up first, and a decision it contradicts is refused
    /// (confirming without an authorized charge of the order's amount); failing refunds a
    /// live charge and voids the key first, and says so. An applied decision is a transition
    /// with actor `operator`; every decision, applied or refused, is an audit row.
    pub(super) async fn resolve(
        &self,
        order_id: &str,
        decision: OperatorDecision,
        operator: &str,
        note: &str,
    ) -> Result<Resolved, orders::OrderError> {
        self.resolve_on(order_id, decision, operator, note, None)
            .await
    }

    /// [`Repair::resolve`], on a provider record just looked up (`prior`: the lookup and
    /// its call) or on a fresh one.
    async fn resolve_on(
        &self,
        order_id: &str,
        decision: OperatorDecision,
        operator: &str,
        note: &str,
        prior: Option<(Lookup, Vec<AttemptRow>)>,
    ) -> Result<Resolved, orders::OrderError> {
        let Some(order) = orders::load(&self.ctx.db, order_id).await? else {
            return Ok(Resolved::NotFound);
        };
        // The decision is recorded in the order's trace, under the operator's request id.
        let stamp = crate::trace::on_order(order.trace_id.as_deref());
        crate::trace::scope(
            stamp,
            self.resolve_loaded(order, decision, operator, note, prior),
        )
        .await
    }

    async fn resolve_loaded(
        &self,
        order: Order,
        decision: OperatorDecision,
        operator: &str,
        note: &str,
        prior: Option<(Lookup, Vec<AttemptRow>)>,
    ) -> Result<Resolved, orders::OrderError> {
        let order_id = order.order_id.as_str();
        let mut audit = orders::Audit {
            order_id: order_id.to_string(),
            operator: operator.to_string(),
            decision: decision.as_str().to_string(),
            note: note.to_string(),
            from_state: Some(order.status.as_str().to_string()),
            provider_ref: None,
            detail: None,
        };
        let (prior, mut calls) = match prior {
            Some((lookup, calls)) => (Some(lookup), calls),
            None => (None, Vec::new()),
        };
        let refused = self
            .resolve_checked(&order, decision, &mut audit, &mut calls, prior)
            .await;
        let why = match refused {
            Ok(resolved) => return Ok(resolved),
            Err(why) => why,
        };
        audit.detail = Some(why.0.clone());
        let mut tx = self.ctx.db.pool.begin().await?;
        for call in &calls {
            orders::insert_attempt(&mut tx, call).await?;
        }
        orders::insert_audit(&mut tx, &audit, "refused").await?;
        tx.commit().await?;
        Ok(Resolved::Refused {
            why: why.0,
            provider: audit.provider_ref,
            conflict: why.1,
        })
    }

    /// An operator's sweep (`POST /admin/orders/resolve-pending`): the `count` oldest
    /// orders in `payment_pending` or `needs_reconciliation` (none a checkout is running
    /// for), each confirmed when the provider holds its authorized charge and failed
    /// otherwise (refund and void first), through [`Repair::resolve`]: audited, checked.
    /// An order whose payment the provider cannot tell yet (in flight, unreachable) is left,
    /// and so is one another actor settled meanwhile. The sweep stops after
    /// [`SWEEP_WITHIN`], saying how many it got to.
    pub(super) async fn resolve_oldest(
        &self,
        count: usize,
        operator: &str,
        note: &str,
    ) -> Result<Vec<(String, OperatorDecision, Resolved)>, orders::OrderError> {
        let limit = i64::try_from(count + self.orders.inflight_count()).unwrap_or(i64::MAX);
        // No `payment_authorizing` order: a checkout may still be writing it.
        let candidates = orders::repair_candidates(&self.ctx.db, i64::MIN, limit).await?;
        let started = Instant::now();
        let mut out = Vec::new();
        for order in candidates {
            if out.len() >= count || started.elapsed() > SWEEP_WITHIN {
                break;
            }
            if self.orders.is_inflight(&order.order_id) {
                continue;
            }
            let mut calls = Vec::new();
            let id = order.order_id.as_str();
            let stamp = crate::trace::on_order(order.trace_id.as_deref());
            let lookup = crate::trace::scope(
                stamp,
                self.provider_call(&mut calls, |p, timeout| p.lookup(id, timeout)),
            )
            .await;
            let settled = orders::load(&self.ctx.db, id)
                .await?
                .is_none_or(|now| now.status != order.status);
            if settled {
                // Another actor moved it while the provider was asked: nothing to decide.
                self.orders.save_calls(&calls).await?;
                continue;
            }
            let decision = match &lookup {
                Some(Lookup::Found(view)) if view.state == "processing" => {
                    self.orders.save_calls(&calls).await?;
                    continue;
                }
                Some(Lookup::Found(view))
                    if view.charge.as_ref().is_some_and(|c| {
                        c.status == "authorized"
                            && c.amount_cents == order.amount_cents
                            && c.refunded_cents == 0
                    }) =>
                {
                    OperatorDecision::Confirm
                }
                Some(Lookup::Found(_) | Lookup::NotFound) => OperatorDecision::Fail,
                Some(Lookup::Unknown(_)) | None => {
                    self.orders.save_calls(&calls).await?;
                    continue;
                }
            };
            let prior = lookup.map(|lookup| (lookup, calls));
            let resolved = self.resolve_on(id, decision, operator, note, prior).await?;
            out.push((order.order_id, decision, resolved));
        }
        Ok(out)
    }

    /// The decision applied, or why not (and whether the evidence contradicts it).
    async fn resolve_checked(
        &self,
        order: &Order,
        decision: OperatorDecision,
        audit: &mut orders::Audit,
        calls: &mut Vec<AttemptRow>,
        prior: Option<Lookup>,
    ) -> Result<Resolved, (String, bool)> {
        let conflict = |why: String| (why, true);
        if !matches!(
            order.status,
            OrderState::PaymentAuthorizing
                | OrderState::PaymentPending
                | OrderState::NeedsReconciliation
        ) {
            return Err(conflict(format!(
                "the order is {}: only an order waiting on its payment (payment_authorizing, payment_pending, needs_reconciliation) is resolved by hand",
                order.status.as_str()
            )));
        }
        if self.orders.is_inflight(&order.order_id) {
            return Err(conflict(
                "a checkout of this order is running in this region now; ask again when it has answered".into(),
            ));
        }
        let unavailable = |why: String| (why, false);
        let id = order.order_id.as_str();
        let lookup = match prior {
            Some(lookup) => lookup,
            None => self
                .provider_call(calls, |p, timeout| p.lookup(id, timeout))
                .await
                .ok_or_else(|| {
                    unavailable(
                        "no provider slot was free within the per-try timeout; nothing was decided"
                            .into(),
                    )
                })?,
        };
        audit.provider_ref = Some(describe_key(&lookup));
        let view = match &lookup {
            Lookup::Unknown(err) => {
                return Err(unavailable(format!(
                    "the provider could not be asked ({err}); nothing was decided"
                )));
            }
            Lookup::Found(view) if view.state == "processing" => {
                return Err(conflict(
                    "a charge under this order's key is in flight at the provider; ask again when it has landed".into(),
                ));
            }
            Lookup::Found(view) => Some(view),
            Lookup::NotFound => None,
        };
        let live = view
            .and_then(|v| v.charge.as_ref())
            .filter(|c| c.status == "authorized" && c.net_cents() > 0);
        let reason_of = |did: &[String]| {
            format!(
                "{} by operator {}: {}{}",
                if decision == OperatorDecision::Confirm {
                    "confirmed"
                } else {
                    "failed"
                },
                audit.operator,
                audit.note,
                if did.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", did.join("; "))
                }
            )
        };
        let (to, charge, did) = match decision {
            OperatorDecision::Confirm => {
                let paid = live.filter(|c| {
                    c.amount_cents == order.amount_cents
                        && c.currency == order.currency
                        && c.refunded_cents == 0
                });
                let Some(charge) = paid else {
                    return Err(conflict(format!(
                        "the provider holds no authorized charge of {} {} for this order ({}); confirming would confirm an unpaid order",
                        order.amount_cents,
                        order.currency,
                        describe_key(&lookup)
                    )));
                };
                (
                    OrderState::OrderConfirmed,
                    Some((charge.charge_id.clone(), charge.amount_cents)),
                    Vec::new(),
                )
            }
            OperatorDecision::Fail => {
                let mut did = Vec::new();
                if let Some(charge) = live {
                    let charge_id = charge.charge_id.as_str();
                    let refund = self
                        .provider_call(calls, |p, timeout| p.refund(id, charge_id, timeout))
                        .await;
                    match refund {
                        None => {
                            return Err(unavailable(
                                "no provider slot was free to refund the live charge; nothing was decided".into(),
                            ));
                        }
                        Some(Ok(_)) => did.push(format!("refunded {} first", charge.charge_id)),
                        Some(Err(err)) => {
                            return Err(unavailable(format!(
                                "charge {} is live and its refund failed ({err}); the order was not failed",
                                charge.charge_id
                            )));
                        }
                    }
                }
                let Some(void) = self
                    .provider_call(calls, |p, timeout| p.void(id, timeout))
                    .await
                else {
                    return Err(unavailable(format!(
                        "{}no provider slot was free to void the key; the order was not failed",
                        did.iter().map(|d| format!("{d}; ")).collect::<String>()
                    )));
                };
                match void {
                    VoidOutcome::Voided(_) => {
                        did.push("key voided (no later charge can land)".into())
                    }
                    VoidOutcome::InFlight => {
                        return Err(conflict(
                            "a charge under this order's key arrived at the provider meanwhile; ask again".into(),
                        ));
                    }
                    VoidOutcome::Unknown(err) => {
                        return Err(unavailable(format!(
                            "{}the key could not be voided ({err}); the order was not failed",
                            did.iter().map(|d| format!("{d}; ")).collect::<String>()
                        )));
                    }
                }
                (OrderState::FailedSafely, None, did)
            }
        };
        audit.detail = (!did.is_empty()).then(|| did.join("; "));
        let reason = reason_of(&did);
        let charge_ref = charge.as_ref().map(|(id, amount)| (id.as_str(), *amount));
        let moved = self
            .orders
            .finish_by_operator(
                &order.order_id,
                order.status,
                to,
                &reason,
                charge_ref,
                calls,
                audit,
            )
            .await
            .map_err(|err| unavailable(format!("the store refused the transition: {err}")))?;
        if !moved {
            // The audit row (refused) went with the transaction.
            return Ok(Resolved::Refused {
                why: "another actor moved the order first; look at it again".into(),
                provider: audit.provider_ref.clone(),
                conflict: true,
            });
        }
        self.forget(&order.order_id);
        self.count_action(&format!("operator_{}", decision.as_str()));
        Ok(Resolved::Applied {
            status: to,
            provider: audit.provider_ref.clone().unwrap_or_default(),
            did,
        })
    }
}

fn is_parked(order: &Order) -> bool {
    order
        .reason
        .as_deref()
        .is_some_and(|r| r.starts_with("parked"))
}

/// The decision for a pending order given the provider's record of its key.
fn judge(order: &Order, view: &KeyAnswer) -> Decision {
    match (view.state.as_str(), &view.charge) {
        ("processing", _) => Decision::Wait,
        (_, Some(charge)) if charge.status == "authorized" => {
            if charge.amount_cents == order.amount_cents
                && charge.currency == order.currency
                && charge.refunded_cents == 0
            {
                Decision::Move {
                    to: OrderState::OrderConfirmed,
                    reason: format!(
                        "charge {} authorized (found by the repair worker)",
                        charge.charge_id
                    ),
                    charge: Some((charge.charge_id.clone(), charge.amount_cents)),
                }
            } else {
                Decision::Move {
                    to: reconcile_from(order.status),
                    reason: format!(
                        "charge {} is {} {} (refunded {}) but the order is {} {}",
                        charge.charge_id,
                        charge.amount_cents,
                        charge.currency,
                        charge.refunded_cents,
                        order.amount_cents,
                        order.currency
                    ),
                    charge: None,
                }
            }
        }
        (_, Some(charge)) => Decision::Move {
            to: OrderState::FailedSafely,
            reason: format!("{}:{}", charge.status, charge.charge_id),
            charge: None,
        },
        ("voided", None) => Decision::Move {
            to: OrderState::FailedSafely,
            reason: "key voided; nothing was charged".into(),
            charge: None,
        },
        _ => Decision::Wait,
    }
}

/// Only `payment_pending` may go to `needs_reconciliation`; a stuck `payment_authorizing`
/// order first becomes pending (the next scan reconciles it).
fn reconcile_from(from: OrderState) -> OrderState {
    if from == OrderState::PaymentPending {
        OrderState::NeedsReconciliation
    } else {
        OrderState::PaymentPending
    }
}

fn secs_us(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX / 1_000_000) * 1_000_000
}

/// Runs a repair scan every `repair.scan_interval_ms` until `stop` turns true.
pub(super) async fn run(repair: Arc<Repair>, mut stop: watch::Receiver<bool>) {
    if repair.ctx.has(Defect::NoRepair) {
        // Defect: pending orders are never resolved.
        let _ = stop.changed().await;
        return;
    }
    let interval = Duration::from_millis(repair.ctx.config.repair.scan_interval_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if let Err(err) = repair.once().await {
            tracing::warn!(error = %err, region = %repair.ctx.id, "repair scan failed");
        }
    }
}
