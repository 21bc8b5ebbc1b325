//! PaymentIntents and Refunds: each handler validates, admits (POST), claims its
//! idempotency key, changes the records in one transaction with the key's saved answer, and
//! logs.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rig_http::{DropConnection, Reply, StatusCode};
use serde_json::{Value, json};

use super::super::Provider;
use super::super::ledger::{self, Charge};
use super::cards::{self, Card};
use super::form::Params;
use super::store::{self, Change, Intent};
use super::webhooks;
use super::{Answer, Call, Failure};
use evidence::time::now_us;

/// A capacity slot of the provider's concurrency limit (`None` without a limit).
type Permit = Option<tokio::sync::OwnedSemaphorePermit>;

/// A claimed request not settled yet: [`Unsettled::give_back`] (or dropping it, when the
/// caller went away mid-request) releases its key and puts its taken intent back.
struct Unsettled {
    provider: Provider,
    key: Option<String>,
    state: std::sync::Arc<super::CallState>,
}

impl Unsettled {
    fn owed(&self) -> bool {
        !self.state.done.load(Ordering::SeqCst) && !self.state.handed_off.load(Ordering::SeqCst)
    }

    async fn give_back(&self) {
        if !self.owed() {
            return;
        }
        release(
            &self.provider.inner.db,
            self.key.as_deref(),
            self.state.take_intent(),
        )
        .await;
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if !self.owed() {
            return;
        }
        self.state.done.store(true, Ordering::SeqCst);
        let db = self.provider.inner.db.clone();
        let key = self.key.take();
        let taken = self.state.take_intent();
        tokio::spawn(async move { release(&db, key.as_deref(), taken).await });
    }
}

/// Gives a request's claim back: its idempotency key, and the intent it took (put back as
/// it was). Best effort: what a store error leaves is put right at the next open.
async fn release(db: &evidence::Db, key: Option<&str>, taken: Option<String>) {
    if let Some(key) = key {
        let _ = ledger::release_claim(db, key).await;
    }
    if let Some(intent) = taken {
        let _ = store::unprocess(db, &intent).await;
    }
}

/// Parameters the create call accepts and this face ignores (they change nothing a test
/// card does).
const IGNORED: &[&str] = &[
    "automatic_payment_methods",
    "confirmation_method",
    "customer",
    "error_on_requires_action",
    "expand",
    "mandate_data",
    "off_session",
    "payment_method_options",
    "payment_method_types",
    "receipt_email",
    "return_url",
    "setup_future_usage",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "use_stripe_sdk",
];

/// Refuses a parameter the endpoint does not take, as Stripe does.
fn only(params: &Params, known: &[&str]) -> Result<(), Failure> {
    match params
        .names()
        .find(|n| !known.contains(n) && !IGNORED.contains(n))
    {
        Some(name) => Err(Failure::invalid(
            name,
            format!("Received unknown parameter: {name}"),
        )),
        None => Ok(()),
    }
}

fn seconds(us: i64) -> i64 {
    us.div_euclid(1_000_000)
}

/// A PaymentIntent as Stripe answers it.
pub(super) fn intent_json(i: &Intent) -> Value {
    json!({
        "id": i.intent_id,
        "object": "payment_intent",
        "amount": i.amount_cents,
        "amount_capturable": if i.status == "requires_capture" { i.amount_cents } else { 0 },
        "amount_received": i.amount_received,
        "capture_method": i.capture_method,
        "client_secret": format!("{}_secret_rig", i.intent_id),
        "confirmation_method": "automatic",
        "created": seconds(i.created_at_us),
        "currency": i.currency,
        "customer": null,
        "description": i.description,
        "last_payment_error": i.last_error,
        "latest_charge": i.charge_id,
        "livemode": false,
        "metadata": i.metadata,
        "payment_method": i.payment_method,
        "payment_method_types": ["card"],
        "status": i.status,
        "canceled_at": (i.status == "canceled").then(|| seconds(i.updated_at_us)),
        "cancellation_reason": i.cancellation_reason,
    })
}

fn refund_json(refund: &store::RefundRow, currency: &str, intent: Option<&str>) -> Value {
    json!({
        "id": refund.refund_id,
        "object": "refund",
        "amount": refund.amount_cents,
        "charge": refund.charge_id,
        "created": seconds(refund.created_at_us),
        "currency": currency.to_ascii_lowercase(),
        "metadata": {},
        "payment_intent": intent,
        "reason": null,
        "status": "succeeded",
    })
}

/// A positive amount in the smallest currency unit.
fn amount(params: &Params, name: &str) -> Result<Option<i64>, Failure> {
    let Some(text) = params.text(name) else {
        return Ok(None);
    };
    match text.parse::<i64>() {
        Ok(n) if (1..=99_999_999).contains(&n) => Ok(Some(n)),
        _ => Err(Failure::invalid(
            name,
            format!(
                "Invalid integer: {text} ({name} is a positive integer in the currency's smallest unit, at most 99999999)"
            ),
        )),
    }
}

/// `metadata[...]` within Stripe's limits: 50 keys, keys of 40 characters, values of 500.
fn metadata(params: &Params) -> Result<std::collections::BTreeMap<String, String>, Failure> {
    let map = params.text_map("metadata")?;
    if map.len() > 50 {
        return Err(Failure::invalid(
            "metadata",
            "metadata can have at most 50 keys",
        ));
    }
    for (key, value) in &map {
        let param = format!("metadata[{key}]");
        if key.is_empty() || key.chars().count() > 40 {
            return Err(Failure::invalid(
                &param,
                "metadata keys are 1 to 40 characters",
            ));
        }
        if value.chars().count() > 500 {
            return Err(Failure::invalid(
                &param,
                "metadata values are at most 500 characters",
            ));
        }
    }
    Ok(map)
}

/// `capture_method`: `automatic` (also `automatic_async`) or `manual`, if given.
fn capture_method(params: &Params) -> Result<Option<&'static str>, Failure> {
    match params.text("capture_method") {
        None => Ok(None),
        Some("automatic") | Some("automatic_async") => Ok(Some("automatic")),
        Some("manual") => Ok(Some("manual")),
        Some(other) => Err(Failure::invalid(
            "capture_method",
            format!("Invalid capture_method: {other} (automatic, automatic_async or manual)"),
        )),
    }
}

/// `true`/`false`.
fn flag(params: &Params, name: &str) -> Result<bool, Failure> {
    match params.text(name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(Failure::invalid(
            name,
            format!("Invalid boolean: {other} (use true or false)"),
        )),
    }
}

/// The payment method a request names: `payment_method`, or a test card number given as
/// `payment_method_data[card][number]`. An unknown id is `No such PaymentMethod`.
fn payment_method(params: &Params) -> Result<Option<String>, Failure> {
    if let Some(number) = params.text_at(&["payment_method_data", "card", "number"]) {
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < 12 {
            return Err(Failure::invalid(
                "payment_method_data[card][number]",
                "Your card number is incorrect.",
            )
            .code("incorrect_number"));
        }
        return Ok(Some(format!("pm_card_{digits}")));
    }
    match params.text("payment_method") {
        None | Some("") => Ok(None),
        Some(id) if cards::by_id(id).is_some() => Ok(Some(id.to_string())),
        Some(id) => Err(Failure::missing_param("PaymentMethod", id, "payment_method").with(
            "hint",
            json!("use a test payment method: pm_card_visa, pm_card_visa_chargeDeclined, pm_card_chargeDeclinedInsufficientFunds, ..."),
        )),
    }
}

impl Provider {
    /// Runs a POST: admission, then the key claim, then `work` (with the admission's
    /// capacity slot); a refusal or a settled key answers at once. `work` commits its own
    /// changes with the key's answer.
    async fn post<F>(
        &self,
        call: &Call,
        op: &'static str,
        params: &Params,
        work: F,
    ) -> Result<Reply, DropConnection>
    where
        F: AsyncFnOnce(Permit) -> Result<Answer, DropConnection>,
    {
        let fingerprint = format!("POST {} {}", call.path, params.canonical());
        let permit = match self.admit() {
            Ok(permit) => permit,
            Err(answer) => return self.answered(call, op, answer).await,
        };
        if let Err(answer) = self.claim_key(call, &fingerprint).await {
            return self.answered(call, op, answer).await;
        }
        // From here the request holds its key (and maybe its intent): if the caller leaves
        // before it settles, dropping the guard gives them back.
        let guard = Unsettled {
            provider: self.clone(),
            key: call.ledger_key(),
            state: call.state.clone(),
        };
        // `work` holds the capacity slot while it runs (a charge hands it to its task, which
        // goes on if the caller leaves).
        let result = work(permit).await;
        if let Ok(answer) = &result
            && !call.state.done.load(Ordering::SeqCst)
            && !call.state.handed_off.load(Ordering::SeqCst)
        {
            // An answer not saved under the key (a conflict, a store failure): the key and
            // the intent are given back before the caller can retry, and the request logged.
            guard.give_back().await;
            self.log(
                call.line(op, answer.status.as_u16(), answer.outcome),
                call.started,
            )
            .await;
        }
        call.state.done.store(true, Ordering::SeqCst);
        drop(guard);
        result.map(|answer| answer.reply(call))
    }

    /// Refuses a request whose parameters are wrong, before it claims anything.
    async fn invalid(
        &self,
        call: &Call,
        op: &'static str,
        failure: Failure,
    ) -> Result<Reply, DropConnection> {
        self.answered(call, op, Answer::failed(&failure, "invalid"))
            .await
    }

    /// Commits `change` with the answer saved under the request's key and the log line;
    /// a store error gives the key back and answers `500`.
    async fn settle(
        &self,
        call: &Call,
        op: &'static str,
        change: Change<'_>,
        answer: Answer,
        charge_id: Option<&str>,
    ) -> Answer {
        let ledger_key = call.ledger_key();
        let body = answer.body.to_string();
        let change = Change {
            answer: ledger_key
                .as_deref()
                .map(|key| (key, answer.status.as_u16(), body.as_str())),
            ..change
        };
        let mut line =
            super::super::attributed(call.line(op, answer.status.as_u16(), answer.outcome));
        line.charge_id = charge_id.map(str::to_string);
        let committed = store::commit(&self.inner.db, &change, &line).await;
        call.state.done.store(true, Ordering::SeqCst);
        match committed {
            Ok(()) => {
                if change.event.is_some() {
                    self.inner.webhooks.notify_one();
                }
                self.count(op, answer.outcome, call.started);
                answer
            }
            Err(err) => {
                let taken = call
                    .state
                    .taken
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                release(&self.inner.db, ledger_key.as_deref(), taken).await;
                // A row another request changed meanwhile is a conflict to retry, not an
                // outage.
                let failed = match err {
                    sqlx::Error::RowNotFound => {
                        busy(change.intent.map_or("the charge", |i| i.intent_id.as_str()))
                    }
                    err => self.store_failure(&err),
                };
                self.log(
                    call.line(op, failed.status.as_u16(), failed.outcome),
                    call.started,
                )
                .await;
                failed
            }
        }
    }

    /// Answers a request that changes nothing (a refusal after the key was claimed is saved
    /// under the key, as Stripe saves it).
    async fn refuse(
        &self,
        call: &Call,
        op: &'static str,
        failure: Failure,
        outcome: &'static str,
    ) -> Answer {
        self.settle(
            call,
            op,
            Change::default(),
            Answer::failed(&failure, outcome),
            None,
        )
        .await
    }

    pub(super) async fn create_intent(
        &self,
        call: Call,
        params: Params,
    ) -> Result<Reply, DropConnection> {
        let checked = (|| {
            only(
                &params,
                &[
                    "amount",
                    "currency",
                    "metadata",
                    "payment_method",
                    "payment_method_data",
                    "confirm",
                    "capture_method",
                    "description",
                ],
            )?;
            let amount = amount(&params, "amount")?
                .ok_or_else(|| Failure::invalid("amount", "Missing required param: amount."))?;
            let currency = params
                .text("currency")
                .ok_or_else(|| Failure::invalid("currency", "Missing required param: currency."))?
                .to_ascii_lowercase();
            if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_lowercase()) {
                return Err(Failure::invalid(
                    "currency",
                    format!("Invalid currency: {currency} (a three-letter ISO code such as usd)"),
                ));
            }
            let capture_method = capture_method(&params)?.unwrap_or("automatic");
            let metadata = metadata(&params)?;
            let confirm = flag(&params, "confirm")?;
            let method = payment_method(&params)?;
            if confirm && method.is_none() {
                return Err(Failure::unexpected_state(
                    "You cannot confirm this PaymentIntent because it's missing a payment method. Pass payment_method (e.g. pm_card_visa).",
                )
                .param("payment_method"));
            }
            Ok((amount, currency, capture_method, metadata, confirm, method))
        })();
        let (amount, currency, capture_method, metadata, confirm, method) = match checked {
            Ok(checked) => checked,
            Err(failure) => return self.invalid(&call, "intent_create", failure).await,
        };
        let op = if confirm { "charge" } else { "intent_create" };
        let now = now_us();
        let intent = Intent {
            intent_id: self.inner.intent_ids.next(),
            caller: Some(call.caller.to_string()),
            order_id: metadata.get("order_id").cloned(),
            amount_cents: amount,
            currency,
            status: if method.is_some() {
                "requires_confirmation"
            } else {
                "requires_payment_method"
            }
            .to_string(),
            capture_method: capture_method.to_string(),
            payment_method: method,
            charge_id: None,
            amount_received: 0,
            metadata,
            description: params.text("description").map(str::to_string),
            last_error: None,
            cancellation_reason: None,
            created_at_us: now,
            updated_at_us: now,
        };
        self.post(&call, op, &params, async |permit| {
            if confirm {
                let mut processing = intent.clone();
                processing.status = "processing".into();
                return self.charge_intent(&call, processing, permit).await;
            }
            let answer = Answer::ok(intent_json(&intent), "created");
            let change = Change {
                intent: Some(&intent),
                ..Change::default()
            };
            Ok(self.settle(&call, op, change, answer, None).await)
        })
        .await
    }

    pub(super) async fn confirm_intent(
        &self,
        call: Call,
        id: &str,
        params: Params,
    ) -> Result<Reply, DropConnection> {
        let checked = only(
            &params,
            &["payment_method", "payment_method_data", "capture_method"],
        )
        .and_then(|()| Ok((payment_method(&params)?, capture_method(&params)?)));
        let (method, capture) = match checked {
            Ok(checked) => checked,
            Err(failure) => return self.invalid(&call, "charge", failure).await,
        };
        self.post(&call, "charge", &params, async |permit| {
            let from = ["requires_payment_method", "requires_confirmation"];
            let intent = match self.held(&call, "charge", id, &from, "confirm").await {
                Ok(intent) => intent,
                Err(answer) => return Ok(answer),
            };
            let method = method.or(intent.payment_method.clone());
            if method.is_none() {
                self.release(&intent).await;
                let failure = Failure::unexpected_state(
                    "You cannot confirm this PaymentIntent because it's missing a payment method.",
                )
                .param("payment_method")
                .with("payment_intent", intent_json(&intent));
                return Ok(self
                    .refuse(&call, "charge", failure, "unexpected_state")
                    .await);
            }
            let processing = Intent {
                status: "processing".into(),
                payment_method: method,
                capture_method: capture.map_or(intent.capture_method, str::to_string),
                ..intent
            };
            self.charge_intent(&call, processing, permit).await
        })
        .await
    }

    /// Charges a `processing` intent: waits the provider's latency, decides by its test
    /// payment method, and commits the charge, the intent and the key's answer together.
    /// Processing goes on if the caller leaves, as at a real provider; with the
    /// commit-then-drop fault the connection is dropped after the commit.
    async fn charge_intent(
        &self,
        call: &Call,
        intent: Intent,
        permit: Permit,
    ) -> Result<Answer, DropConnection> {
        let provider = self.clone();
        let call_key = call.key.clone();
        let call = Call {
            caller: call.caller.clone(),
            received_at_us: call.received_at_us,
            started: call.started,
            key: call_key,
            request_id: call.request_id.clone(),
            path: call.path.clone(),
            state: call.state.clone(),
        };
        // The task settles the claim (commits, or gives the key and intent back) even if
        // the caller leaves.
        call.state.handed_off.store(true, Ordering::SeqCst);
        let cleanup = (self.clone(), call.ledger_key(), intent.intent_id.clone());
        let task = tokio::spawn(
            super::super::SERVED.scope(super::super::served(), async move {
                let _permit = permit;
                let active = provider.active();
                provider.inner.metrics.in_flight.inc();
                let jitter = provider.inner.draws.up_to(active.latency_jitter_ms);
                tokio::time::sleep(Duration::from_millis(active.latency_ms + jitter)).await;
                let card = intent
                    .payment_method
                    .as_deref()
                    .and_then(cards::by_id)
                    .unwrap_or(Card::Approve);
                let now = now_us();
                let charge_id = provider.inner.charge_ids.next();
                let charge = Charge {
                    // The request's key, as the native API's charges keep theirs; without
                    // one the charge is its own key (a charge per key holds either way).
                    idempotency_key: call.key.clone().unwrap_or_else(|| charge_id.clone()),
                    charge_id,
                    order_id: intent
                        .order_id
                        .clone()
                        .unwrap_or_else(|| intent.intent_id.clone()),
                    amount_cents: intent.amount_cents,
                    currency: intent.currency.to_ascii_uppercase(),
                    status: match card {
                        Card::Approve => "authorized",
                        Card::Decline { .. } => "declined",
                    }
                    .to_string(),
                    refunded_cents: 0,
                    created_at_us: now,
                    updated_at_us: now,
                };
                let drop_after = provider.inner.draws.chance(active.commit_then_drop_rate);
                let (updated, mut answer) = match card {
                    Card::Approve => {
                        let manual = intent.capture_method == "manual";
                        let updated = Intent {
                            status: if manual {
                                "requires_capture"
                            } else {
                                "succeeded"
                            }
                            .into(),
                            amount_received: if manual { 0 } else { intent.amount_cents },
                            charge_id: Some(charge.charge_id.clone()),
                            last_error: None,
                            updated_at_us: now,
                            ..intent
                        };
                        let answer = Answer::ok(intent_json(&updated), "authorized");
                        (updated, answer)
                    }
                    Card::Decline {
                        code,
                        decline_code,
                        message,
                    } => {
                        let mut error = json!({
                            "type": "card_error",
                            "code": code,
                            "message": message,
                            "charge": charge.charge_id,
                            "payment_method": {
                                "id": intent.payment_method,
                                "object": "payment_method",
                                "type": "card",
                            },
                        });
                        if let Some(decline) = decline_code {
                            error["decline_code"] = json!(decline);
                        }
                        let updated = Intent {
                            status: "requires_payment_method".into(),
                            charge_id: Some(charge.charge_id.clone()),
                            last_error: Some(error.clone()),
                            updated_at_us: now,
                            ..intent
                        };
                        let mut failure =
                            Failure::new(StatusCode::PAYMENT_REQUIRED, "card_error", message)
                                .code(code)
                                .with("charge", json!(charge.charge_id))
                                .with("payment_intent", intent_json(&updated))
                                .with("payment_method", error["payment_method"].clone());
                        if let Some(decline) = decline_code {
                            failure = failure.with("decline_code", json!(decline));
                        }
                        (updated, Answer::failed(&failure, "declined"))
                    }
                };
                if drop_after {
                    answer.outcome = "committed_dropped";
                }
                let kind = match updated.status.as_str() {
                    "succeeded" => "payment_intent.succeeded",
                    "requires_capture" => "payment_intent.amount_capturable_updated",
                    _ => "payment_intent.payment_failed",
                };
                let event = provider.event(kind, &updated, &call);
                let change = Change {
                    intent: Some(&updated),
                    charge: Some(&charge),
                    event: Some(&event),
                    ..Change::default()
                };
                let answer = provider
                    .settle(&call, "charge", change, answer, Some(&charge.charge_id))
                    .await;
                provider.inner.metrics.in_flight.dec();
                if answer.status == StatusCode::INTERNAL_SERVER_ERROR {
                    // Nothing committed: the intent may be confirmed again.
                    let _ = store::unprocess(&provider.inner.db, &updated.intent_id).await;
                }
                if drop_after && answer.outcome == "committed_dropped" {
                    return Err(DropConnection);
                }
                Ok(answer)
            }),
        );
        match task.await {
            Ok(result) => result,
            Err(_) => {
                // The task died before settling: give the key and the intent back.
                let (provider, key, intent) = cleanup;
                if let Some(key) = key {
                    let _ = ledger::release_claim(&provider.inner.db, &key).await;
                }
                let _ = store::unprocess(&provider.inner.db, &intent).await;
                let failure = Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    "charge processing failed",
                );
                Ok(Answer::failed(&failure, "error"))
            }
        }
    }

    pub(super) async fn capture_intent(
        &self,
        call: Call,
        id: &str,
        params: Params,
    ) -> Result<Reply, DropConnection> {
        let to_capture = match only(&params, &["amount_to_capture"])
            .and_then(|()| amount(&params, "amount_to_capture"))
        {
            Ok(n) => n,
            Err(failure) => return self.invalid(&call, "capture", failure).await,
        };
        self.post(&call, "capture", &params, async |_permit| {
            let intent = match self
                .held(&call, "capture", id, &["requires_capture"], "capture")
                .await
            {
                Ok(intent) => intent,
                Err(answer) => return Ok(answer),
            };
            let captured = to_capture.unwrap_or(intent.amount_cents);
            if captured > intent.amount_cents {
                self.release(&intent).await;
                let failure = Failure::invalid(
                    "amount_to_capture",
                    format!(
                        "amount_to_capture ({captured}) is greater than the amount capturable ({})",
                        intent.amount_cents
                    ),
                )
                .code("amount_too_large");
                return Ok(self.refuse(&call, "capture", failure, "invalid").await);
            }
            let charge_id = intent.charge_id.clone().unwrap_or_default();
            let updated = Intent {
                status: "succeeded".into(),
                amount_received: captured,
                updated_at_us: now_us(),
                ..intent
            };
            let answer = Answer::ok(intent_json(&updated), "captured");
            let event = self.event("payment_intent.succeeded", &updated, &call);
            let change = Change {
                event: Some(&event),
                intent: Some(&updated),
                // The part not captured is released: the customer is out only what was.
                charge_update: Some((&charge_id, "authorized", updated.amount_cents - captured)),
                ..Change::default()
            };
            Ok(self
                .settle(&call, "capture", change, answer, Some(&charge_id))
                .await)
        })
        .await
    }

    pub(super) async fn cancel_intent(
        &self,
        call: Call,
        id: &str,
        params: Params,
    ) -> Result<Reply, DropConnection> {
        let reason = match only(&params, &["cancellation_reason"]).and_then(|()| {
            match params.text("cancellation_reason") {
                None => Ok(None),
                Some(r @ ("duplicate" | "fraudulent" | "requested_by_customer" | "abandoned")) => {
                    Ok(Some(r.to_string()))
                }
                Some(other) => Err(Failure::invalid(
                    "cancellation_reason",
                    format!("Invalid cancellation_reason: {other} (duplicate, fraudulent, requested_by_customer or abandoned)"),
                )),
            }
        }) {
            Ok(reason) => reason,
            Err(failure) => return self.invalid(&call, "void", failure).await,
        };
        self.post(&call, "void", &params, async |_permit| {
            let from = [
                "requires_payment_method",
                "requires_confirmation",
                "requires_capture",
            ];
            let intent = match self.held(&call, "void", id, &from, "cancel").await {
                Ok(intent) => intent,
                Err(answer) => return Ok(answer),
            };
            // A hold (requires_capture, remembered in the charge) is voided; nothing else
            // moved money.
            let held_charge = intent
                .charge_id
                .clone()
                .filter(|_| intent.amount_received == 0 && intent.last_error.is_none());
            let updated = Intent {
                status: "canceled".into(),
                cancellation_reason: reason,
                updated_at_us: now_us(),
                ..intent
            };
            let answer = Answer::ok(intent_json(&updated), "voided");
            let event = self.event("payment_intent.canceled", &updated, &call);
            let change = Change {
                event: Some(&event),
                intent: Some(&updated),
                charge_update: held_charge.as_deref().map(|c| (c, "voided", 0)),
                ..Change::default()
            };
            Ok(self
                .settle(&call, "void", change, answer, held_charge.as_deref())
                .await)
        })
        .await
    }

    /// Takes the intent for a step allowed from `from` (marking it `processing`), or the
    /// answer that refuses the step.
    async fn held(
        &self,
        call: &Call,
        op: &'static str,
        id: &str,
        from: &[&str],
        step: &str,
    ) -> Result<Intent, Answer> {
        let intent = match store::intent(&self.inner.db, id).await {
            Ok(Some(intent)) => intent,
            Ok(None) => {
                let failure = Failure::missing("payment_intent", id, "intent");
                return Err(self.refuse(call, op, failure, "not_found").await);
            }
            Err(err) => return Err(self.store_failure(&err)),
        };
        if intent.status == "processing" {
            return Err(busy(id));
        }
        if !from.contains(&intent.status.as_str()) {
            let failure = unexpected(&intent, step);
            return Err(self.refuse(call, op, failure, "unexpected_state").await);
        }
        match store::take(&self.inner.db, id, from, now_us()).await {
            Ok(true) => {
                call.took(id);
                Ok(intent)
            }
            Ok(false) => Err(busy(id)),
            Err(err) => Err(self.store_failure(&err)),
        }
    }

    /// The webhook event `kind` about `intent`.
    fn event(&self, kind: &'static str, intent: &Intent, call: &Call) -> webhooks::Event {
        webhooks::Event::new(
            self.inner.event_ids.next(),
            kind,
            &intent_json(intent),
            intent.caller.clone(),
            call,
        )
    }

    /// Puts a taken intent back as it was (a step refused after taking it).
    async fn release(&self, intent: &Intent) {
        if let Err(err) = store::put(&self.inner.db, intent).await {
            tracing::error!(error = %err, intent = %intent.intent_id, "could not release a PaymentIntent");
        }
    }

    pub(super) async fn update_intent(
        &self,
        call: Call,
        id: &str,
        params: Params,
    ) -> Result<Reply, DropConnection> {
        let checked = only(
            &params,
            &[
                "metadata",
                "description",
                "payment_method",
                "payment_method_data",
                "amount",
            ],
        )
        .and_then(|()| {
            Ok((
                metadata(&params)?,
                payment_method(&params)?,
                amount(&params, "amount")?,
            ))
        });
        let (metadata, method, new_amount) = match checked {
            Ok(checked) => checked,
            Err(failure) => return self.invalid(&call, "update", failure).await,
        };
        self.post(&call, "update", &params, async |_permit| {
            let intent = match store::intent(&self.inner.db, id).await {
                Ok(Some(intent)) if intent.status != "processing" => intent,
                Ok(Some(_)) => {
                    return Ok(busy(id));
                }
                Ok(None) => {
                    let failure = Failure::missing("payment_intent", id, "intent");
                    return Ok(self.refuse(&call, "update", failure, "not_found").await);
                }
                Err(err) => return Ok(self.store_failure(&err)),
            };
            let unconfirmed = matches!(
                intent.status.as_str(),
                "requires_payment_method" | "requires_confirmation"
            );
            if (method.is_some() || new_amount.is_some()) && !unconfirmed {
                let failure = unexpected(&intent, "update the amount or payment method of");
                return Ok(self
                    .refuse(&call, "update", failure, "unexpected_state")
                    .await);
            }
            let mut updated = intent.clone();
            for (k, v) in metadata {
                if v.is_empty() {
                    updated.metadata.remove(&k);
                } else {
                    updated.metadata.insert(k, v);
                }
            }
            if updated.charge_id.is_none() {
                updated.order_id = updated.metadata.get("order_id").cloned();
            }
            if let Some(description) = params.text("description") {
                updated.description = Some(description.to_string()).filter(|d| !d.is_empty());
            }
            if let Some(method) = method {
                updated.payment_method = Some(method);
                updated.status = "requires_confirmation".into();
            }
            if let Some(n) = new_amount {
                updated.amount_cents = n;
            }
            updated.updated_at_us = now_us();
            let answer = Answer::ok(intent_json(&updated), "updated");
            let change = Change {
                intent: Some(&updated),
                // Only over the row as read: a confirm that took it meanwhile wins.
                expect: Some((&intent.status, intent.updated_at_us)),
                ..Change::default()
            };
            Ok(self.settle(&call, "update", change, answer, None).await)
        })
        .await
    }

    pub(super) async fn retrieve_intent(
        &self,
        call: Call,
        id: &str,
    ) -> Result<Reply, DropConnection> {
        let answer = match store::intent(&self.inner.db, id).await {
            Ok(Some(intent)) => Answer::ok(intent_json(&intent), "found"),
            Ok(None) => Answer::failed(
                &Failure::missing("payment_intent", id, "intent"),
                "not_found",
            ),
            Err(err) => self.store_failure(&err),
        };
        self.answered(&call, "lookup", answer).await
    }

    pub(super) async fn list_intents(
        &self,
        call: Call,
        params: Params,
    ) -> Result<Reply, DropConnection> {
        let answer = match self.page(&params).await {
            Ok((intents, has_more)) => Answer::ok(
                json!({
                    "object": "list",
                    "data": intents.iter().map(intent_json).collect::<Vec<_>>(),
                    "has_more": has_more,
                    "url": "/v1/payment_intents",
                }),
                "found",
            ),
            Err(failure) => Answer::failed(&failure, "invalid"),
        };
        self.answered(&call, "lookup", answer).await
    }

    /// One page of intents: `limit` (1-100, default 10), newest first, after
    /// `starting_after`, for `metadata[order_id]` when given.
    async fn page(&self, params: &Params) -> Result<(Vec<Intent>, bool), Failure> {
        only(
            params,
            &[
                "limit",
                "starting_after",
                "metadata",
                "created",
                "customer",
                "query",
                "page",
            ],
        )?;
        let limit = match params.text("limit") {
            None => 10,
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    Failure::invalid("limit", format!("Invalid limit: {text} (1 to 100)"))
                })?,
        };
        let after = match params.text("starting_after") {
            None => None,
            Some(id) => match store::intent(&self.inner.db, id).await {
                Ok(Some(intent)) => Some((intent.created_at_us, intent.intent_id)),
                Ok(None) => {
                    return Err(Failure::missing_param(
                        "payment_intent",
                        id,
                        "starting_after",
                    ));
                }
                Err(err) => {
                    return Err(Failure::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "api_error",
                        err.to_string(),
                    ));
                }
            },
        };
        let order = params.text_at(&["metadata", "order_id"]);
        self.intents_page(
            order,
            after.as_ref().map(|(t, id)| (*t, id.as_str())),
            limit,
        )
        .await
    }

    async fn intents_page(
        &self,
        order: Option<&str>,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<(Vec<Intent>, bool), Failure> {
        let mut intents = store::intents(&self.inner.db, order, after, limit + 1)
            .await
            .map_err(|err| {
                Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    err.to_string(),
                )
            })?;
        let has_more = intents.len() as i64 > limit;
        intents.truncate(limit as usize);
        Ok((intents, has_more))
    }

    /// `query=metadata['order_id']:'o-1'` (single or double quotes), the search checkout
    /// code uses to reconcile an order.
    pub(super) async fn search_intents(
        &self,
        call: Call,
        params: Params,
    ) -> Result<Reply, DropConnection> {
        let answer = match search_order(params.text("query")) {
            Err(failure) => Answer::failed(&failure, "invalid"),
            Ok(order) => {
                let limit = params
                    .text("limit")
                    .and_then(|t| t.parse::<i64>().ok())
                    .unwrap_or(10)
                    .clamp(1, 100);
                match self.intents_page(Some(&order), None, limit).await {
                    Ok((intents, has_more)) => Answer::ok(
                        json!({
                            "object": "search_result",
                            "data": intents.iter().map(intent_json).collect::<Vec<_>>(),
                            "has_more": has_more,
                            "next_page": null,
                            "url": "/v1/payment_intents/search",
                        }),
                        "found",
                    ),
                    Err(failure) => Answer::failed(&failure, "error"),
                }
            }
        };
        self.answered(&call, "lookup", answer).await
    }

    pub(super) async fn create_refund(
        &self,
        call: Call,
        params: Params,
    ) -> Result<Reply, DropConnection> {
        let checked = only(
            &params,
            &["payment_intent", "charge", "amount", "reason", "metadata"],
        )
        .and_then(|()| amount(&params, "amount"))
        .and_then(
            |n| match (params.text("payment_intent"), params.text("charge")) {
                (Some(pi), None) => Ok((n, Err(pi.to_string()))),
                (None, Some(ch)) => Ok((n, Ok(ch.to_string()))),
                _ => Err(Failure::invalid(
                    "payment_intent",
                    "Pass one of payment_intent or charge.",
                )),
            },
        );
        let (wanted, target) = match checked {
            Ok(checked) => checked,
            Err(failure) => return self.invalid(&call, "refund", failure).await,
        };
        self.post(&call, "refund", &params, async |_permit| {
            // The charge to refund: the intent's latest, or the one named.
            let (charge_id, intent_id) = match &target {
                Err(pi) => match store::intent(&self.inner.db, pi).await {
                    Ok(Some(intent)) if intent.status == "succeeded" => {
                        (intent.charge_id.clone().unwrap_or_default(), Some(intent.intent_id))
                    }
                    Ok(Some(intent)) => {
                        let failure = Failure::invalid(
                            "payment_intent",
                            format!(
                                "This PaymentIntent ({pi}) does not have a successful charge to refund (its status is {}).",
                                intent.status
                            ),
                        )
                        .code("charge_not_refundable");
                        return Ok(self.refuse(&call, "refund", failure, "not_refundable").await);
                    }
                    Ok(None) => {
                        let failure = Failure::missing_param("payment_intent", pi, "payment_intent");
                        return Ok(self.refuse(&call, "refund", failure, "not_found").await);
                    }
                    Err(err) => return Ok(self.store_failure(&err)),
                },
                Ok(ch) => match store::intent_of_charge(&self.inner.db, ch).await {
                    // A hold not captured is released by a cancel, not refunded.
                    Ok(Some(intent)) if intent.status != "succeeded" => {
                        let failure = Failure::invalid(
                            "charge",
                            format!(
                                "Charge {ch} belongs to PaymentIntent {} whose status is {}; cancel the PaymentIntent to release an uncaptured charge.",
                                intent.intent_id, intent.status
                            ),
                        )
                        .code("charge_not_refundable");
                        return Ok(self.refuse(&call, "refund", failure, "not_refundable").await);
                    }
                    Ok(intent) => (ch.clone(), intent.map(|i| i.intent_id)),
                    Err(err) => return Ok(self.store_failure(&err)),
                },
            };
            let charge = match ledger::charge_by_id(&self.inner.db, &charge_id).await {
                Ok(Some(charge)) => charge,
                Ok(None) => {
                    let failure = Failure::missing_param("charge", &charge_id, "charge");
                    return Ok(self.refuse(&call, "refund", failure, "not_found").await);
                }
                Err(err) => return Ok(self.store_failure(&err)),
            };
            let remaining = charge.amount_cents - charge.refunded_cents;
            if charge.status != "authorized" || remaining <= 0 {
                let failure = Failure::invalid(
                    "charge",
                    format!("Charge {charge_id} has already been refunded or was not successful."),
                )
                .code("charge_already_refunded");
                return Ok(self.refuse(&call, "refund", failure, "not_refundable").await);
            }
            let refunded = wanted.unwrap_or(remaining);
            if refunded > remaining {
                let failure = Failure::invalid(
                    "amount",
                    format!(
                        "Refund amount ({refunded}) is greater than unrefunded amount on charge ({remaining})"
                    ),
                )
                .code("amount_too_large");
                return Ok(self.refuse(&call, "refund", failure, "not_refundable").await);
            }
            let row = store::RefundRow {
                refund_id: self.inner.refund_ids.next(),
                charge_id: charge_id.clone(),
                amount_cents: refunded,
                created_at_us: now_us(),
            };
            let answer = Answer::ok(
                refund_json(&row, &charge.currency, intent_id.as_deref()),
                "refunded",
            );
            let change = Change {
                refund: Some((&row.refund_id, &charge_id, refunded)),
                ..Change::default()
            };
            Ok(self.settle(&call, "refund", change, answer, Some(&charge_id)).await)
        })
        .await
    }

    pub(super) async fn retrieve_refund(
        &self,
        call: Call,
        id: &str,
    ) -> Result<Reply, DropConnection> {
        let answer = match store::refund(&self.inner.db, id).await {
            Ok(Some(row)) => {
                let charge = ledger::charge_by_id(&self.inner.db, &row.charge_id)
                    .await
                    .ok()
                    .flatten();
                let intent = store::intent_of_charge(&self.inner.db, &row.charge_id)
                    .await
                    .ok()
                    .flatten();
                let currency = charge.map(|c| c.currency).unwrap_or_default();
                Answer::ok(
                    refund_json(
                        &row,
                        &currency,
                        intent.as_ref().map(|i| i.intent_id.as_str()),
                    ),
                    "found",
                )
            }
            Ok(None) => Answer::failed(&Failure::missing("refund", id, "id"), "not_found"),
            Err(err) => self.store_failure(&err),
        };
        self.answered(&call, "lookup", answer).await
    }
}

/// The error for a step the intent's status does not allow.
fn unexpected(intent: &Intent, step: &str) -> Failure {
    let message = match intent.status.as_str() {
        "succeeded" if step == "confirm" => "You cannot confirm this PaymentIntent because it has already succeeded after being previously confirmed.".to_string(),
        status => {
            format!("You cannot {step} this PaymentIntent because it has a status of {status}.")
        }
    };
    Failure::unexpected_state(message).with("payment_intent", intent_json(intent))
}

/// Another request holds the intent: `429 lock_timeout`, as Stripe answers it, retryable
/// and not saved under the request's key (the request did not run).
fn busy(id: &str) -> Answer {
    let failure = Failure::new(
        StatusCode::TOO_MANY_REQUESTS,
        "invalid_request_error",
        format!("This object cannot be accessed right now because another API request or Stripe process is currently accessing it ({id}). Please retry."),
    )
    .code("lock_timeout");
    let mut answer = Answer::failed(&failure, "in_flight");
    answer.should_retry = Some(true);
    answer
}

/// The order id a search query asks for.
fn search_order(query: Option<&str>) -> Result<String, Failure> {
    let usage = "Supported: query=metadata['order_id']:'ORDER_ID'";
    let query = query.ok_or_else(|| {
        Failure::invalid("query", format!("Missing required param: query. {usage}"))
    })?;
    let rest = query
        .trim()
        .strip_prefix("metadata[")
        .and_then(|r| {
            let quote = r.chars().next()?;
            (quote == '\'' || quote == '"').then_some(())?;
            r[1..].strip_prefix("order_id")?.strip_prefix(quote)
        })
        .and_then(|r| r.strip_prefix("]:"))
        .ok_or_else(|| {
            Failure::invalid(
                "query",
                format!("Unsupported search query: {query}. {usage}"),
            )
        })?;
    let quote = rest.chars().next().filter(|q| *q == '\'' || *q == '"');
    match quote.and_then(|q| rest[1..].strip_suffix(q)) {
        Some(value) if !value.contains(['\'', '"']) => Ok(value.to_string()),
        _ => Err(Failure::invalid(
            "query",
            format!("Unsupported search query: {query}. {usage}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reconciliation search reads its order id in either quoting; other queries are
    /// refused with what is supported.
    #[test]
    fn search_queries_name_one_order() {
        assert_eq!(
            search_order(Some("metadata['order_id']:'o-1'")).unwrap(),
            "o-1"
        );
        assert_eq!(
            search_order(Some("metadata[\"order_id\"]:\"o 2\"")).unwrap(),
            "o 2"
        );
        for bad in [
            "status:'succeeded'",
            "metadata['order_id']:o-1",
            "metadata['x']:'1'",
            "",
        ] {
            assert!(search_order(Some(bad)).is_err(), "{bad}");
        }
        assert!(search_order(None).is_err());
    }
}
