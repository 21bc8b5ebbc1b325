//! The provider's Stripe-compatible face (DESIGN §4): the subset of Stripe's API that
//! checkout code uses, over the same ledger, request log and faults as the native API, on a
//! listener of its own. Point an official Stripe SDK at it by changing its API host.
//!
//! - `POST /v1/payment_intents` (`confirm=true` charges at once), `GET /v1/payment_intents`
//!   (`limit`, `starting_after`, and `metadata[order_id]` to find one order's intents),
//!   `GET /v1/payment_intents/search?query=metadata['order_id']:'o-1'`,
//!   `GET /v1/payment_intents/{id}`, `POST /v1/payment_intents/{id}` (metadata, description,
//!   payment method, amount before confirmation), `POST .../{id}/confirm`, `.../capture`,
//!   `.../cancel`.
//! - `POST /v1/refunds` (`payment_intent` or `charge`, optional `amount`),
//!   `GET /v1/refunds/{id}`.
//! - `POST /v1/webhook_endpoints` (`url`, `enabled_events[]`; the answer has its signing
//!   `secret`), `DELETE /v1/webhook_endpoints/{id}`; events are signed and retried
//!   ([`webhooks`]).
//!
//! Stripe's semantics: form-encoded bodies with bracketed keys ([`form`]); amounts in the
//! currency's smallest unit; `Authorization: Bearer sk_...` (or Basic) with one secret key
//! per caller (`provider.stripe_keys`), and the request log records whose key it was; an
//! `Idempotency-Key` on a POST saves the first answer (replayed with `Idempotent-Replayed:
//! true`), the same key with other parameters is a `400 idempotency_error`, and while the
//! first is in flight a `409`; errors are `{"error":{"type","code","message","param",...}}`
//! with Stripe's status codes (`402` for a card error, with the intent inside). Test
//! payment methods decide outcomes ([`cards`]).
//!
//! Faults are the provider's: outage (`503`), rate limit and capacity (`429`), injected
//! errors (`500`), latency before a charge commits, and commit-then-drop. A confirmed
//! intent's money is a row of `provider_charges` (its order is `metadata[order_id]`), so the
//! verifier judges both faces from the same ledger.
//!
//! Request-log operations: `intent_create`, `charge` (a confirmation, alone or in the
//! create), `capture`, `void` (a cancel), `refund`, `update`, `lookup`, `auth` (a request
//! with no valid key: no caller).

pub mod cards;
pub mod form;
mod intents;
pub mod store;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rig_http::{DropConnection, Incoming, Method, Reply, Request, StatusCode};
use serde_json::{Value, json};

use super::Provider;
use super::faults::Admission;
use super::ledger::{self, Claim, RequestLog};
use evidence::time::now_us;
use form::{FormError, Params};

/// The longest request body the face reads.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// One request as the handlers see it: who sent it (by key), when, and its key.
#[derive(Debug)]
pub(super) struct Call {
    caller: Arc<str>,
    received_at_us: i64,
    started: tokio::time::Instant,
    /// The `Idempotency-Key` header, if any.
    key: Option<String>,
    request_id: String,
    /// The request's path (with the parameters, what an idempotency key's first request
    /// is compared by).
    path: String,
    /// What the request has claimed and settled (shared with a charge's task).
    state: Arc<CallState>,
}

/// What a request holds: once it claimed its key (and took its intent), either it settles
/// (commits with the key's answer, or cleans up itself) or whoever drops it gives both back,
/// so a caller that went away never leaves a key answering `409` or an intent `processing`.
#[derive(Debug, Default)]
pub(super) struct CallState {
    /// Settled: committed, or cleaned up and logged by the settling code.
    done: std::sync::atomic::AtomicBool,
    /// A charge's task owns the claim now.
    handed_off: std::sync::atomic::AtomicBool,
    /// The intent this request marked `processing`.
    taken: std::sync::Mutex<Option<String>>,
}

impl CallState {
    /// The intent this request marked `processing`, taken to be put back.
    fn take_intent(&self) -> Option<String> {
        self.taken.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Call {
    /// The request-log line for this request.
    fn line(&self, op: &'static str, status: u16, outcome: &'static str) -> RequestLog {
        RequestLog {
            op,
            idempotency_key: self.key.clone(),
            charge_id: None,
            received_at_us: self.received_at_us,
            finished_at_us: now_us(),
            http_status: Some(i64::from(status)),
            outcome,
            caller: Some(self.caller.clone()),
            abandoned_at_us: None,
            trace_id: None,
            request_id: None,
        }
    }

    /// Records that this request marked `intent` processing (given back if it does not
    /// settle).
    fn took(&self, intent: &str) {
        *self.state.taken.lock().unwrap_or_else(|p| p.into_inner()) = Some(intent.to_string());
    }

    /// The provider's ledger key for this request's idempotency key (account-wide).
    fn ledger_key(&self) -> Option<String> {
        self.key.as_ref().map(|k| format!("stripe:{k}"))
    }
}

/// A Stripe error object's fields.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    message: String,
    param: Option<String>,
    /// More fields of the error object (`payment_intent`, `decline_code`, ...).
    extra: Vec<(&'static str, Value)>,
}

impl Failure {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            code: None,
            message: message.into(),
            param: None,
            extra: Vec::new(),
        }
    }

    /// A `400 invalid_request_error` naming `param`.
    fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message).param(param)
    }

    /// A `404 resource_missing`.
    fn missing(what: &str, id: &str, param: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("No such {what}: '{id}'"),
        )
        .code("resource_missing")
        .param(param)
    }

    /// A parameter naming an object that does not exist: `400 resource_missing` (a path
    /// naming one is [`Failure::missing`]'s `404`).
    fn missing_param(what: &str, id: &str, param: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            ..Self::missing(what, id, param)
        }
    }

    /// A `400 payment_intent_unexpected_state`.
    fn unexpected_state(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
            .code("payment_intent_unexpected_state")
    }

    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    fn param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    fn with(mut self, name: &'static str, value: Value) -> Self {
        self.extra.push((name, value));
        self
    }

    fn body(&self) -> Value {
        let mut error = json!({
            "type": self.kind,
            "message": self.message,
        });
        if let Some(code) = self.code {
            error["code"] = json!(code);
            error["doc_url"] = json!(format!(
                "https://stripe.com/docs/error-codes/{}",
                code.replace('_', "-")
            ));
        }
        if let Some(param) = &self.param {
            error["param"] = json!(param);
        }
        for (name, value) in &self.extra {
            error[*name] = value.clone();
        }
        json!({ "error": error })
    }
}

impl From<FormError> for Failure {
    fn from(err: FormError) -> Self {
        let failure = Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("Invalid request: {}", err.message),
        );
        match err.param {
            Some(param) => failure.param(&param),
            None => failure,
        }
    }
}

/// An answer: its status and body, the log's outcome, and the headers Stripe adds.
#[derive(Debug)]
pub(super) struct Answer {
    status: StatusCode,
    body: Value,
    outcome: &'static str,
    /// `Stripe-Should-Retry`, where Stripe sends it.
    should_retry: Option<bool>,
    /// `Retry-After`.
    retry_after: Option<Duration>,
    replayed: bool,
}

impl Answer {
    fn ok(body: Value, outcome: &'static str) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            outcome,
            should_retry: None,
            retry_after: None,
            replayed: false,
        }
    }

    fn failed(failure: &Failure, outcome: &'static str) -> Self {
        Self {
            status: failure.status,
            body: failure.body(),
            outcome,
            should_retry: None,
            retry_after: None,
            replayed: false,
        }
    }

    fn reply(&self, call: &Call) -> Reply {
        let body = Bytes::from(self.body.to_string());
        let mut reply = rig_http::reply::with_type(self.status, "application/json", body);
        if let Some(wait) = self.retry_after {
            reply = rig_http::with_retry_after(reply, wait);
        }
        let headers = reply.headers_mut();
        let mut set = |name: &'static str, value: &str| {
            if let Ok(value) = rig_http::header::HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        };
        set("request-id", &call.request_id);
        if let Some(key) = &call.key {
            set("idempotency-key", key);
        }
        if self.replayed {
            set("idempotent-replayed", "true");
        }
        if let Some(retry) = self.should_retry {
            set("stripe-should-retry", if retry { "true" } else { "false" });
        }
        reply
    }
}

impl Provider {
    /// Serves the Stripe-compatible face on `listener` until `shutdown` completes. Each
    /// request's caller is the owner of its secret key.
    pub async fn serve_stripe(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        self.start_webhooks()
            .await
            .map_err(|err| std::io::Error::other(format!("the webhook endpoints: {err}")))?;
        self.serve_face(listener, None, super::Face::Stripe, shutdown)
            .await
    }

    /// Answers one request to the Stripe face.
    pub(super) async fn stripe(&self, req: Request<Incoming>) -> Result<Reply, DropConnection> {
        let started = tokio::time::Instant::now();
        let received_at_us = now_us();
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let authorization = header("authorization");
        let key = header("idempotency-key");
        let request_id = format!("req_{}", self.inner.request_ids.next());
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let caller = match self.stripe_caller(authorization.as_deref()) {
            Ok(caller) => caller,
            Err(failure) => {
                let call = Call {
                    caller: Arc::from(""),
                    received_at_us,
                    started,
                    key,
                    request_id,
                    path: path.clone(),
                    state: Arc::default(),
                };
                let answer = Answer::failed(&failure, "unauthorized");
                let mut line = call.line("auth", failure.status.as_u16(), "unauthorized");
                line.caller = None;
                self.log(line, started).await;
                return Ok(answer.reply(&call));
            }
        };
        let call = Call {
            caller,
            received_at_us,
            started,
            key: key.filter(|_| method == Method::POST),
            request_id,
            path: path.clone(),
            state: Arc::default(),
        };
        if call.key.as_ref().is_some_and(|k| k.len() > 255) {
            let failure = Failure::invalid(
                "Idempotency-Key",
                "Idempotency-Key must be at most 255 characters",
            );
            return self
                .answered(&call, "invalid", Answer::failed(&failure, "invalid"))
                .await;
        }
        let text = if method == Method::POST {
            match rig_http::read_body(req.into_body(), MAX_BODY_BYTES).await {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(err) => {
                    let failure = Failure::invalid("body", format!("Invalid request body: {err}"));
                    return self
                        .answered(&call, "invalid", Answer::failed(&failure, "invalid"))
                        .await;
                }
            }
        } else {
            query
        };
        let params = match Params::parse(&text) {
            Ok(params) => params,
            Err(err) => {
                let answer = Answer::failed(&Failure::from(err), "invalid");
                return self.answered(&call, "invalid", answer).await;
            }
        };
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (&method, segments.as_slice()) {
            (&Method::POST, ["v1", "payment_intents"]) => self.create_intent(call, params).await,
            (&Method::GET, ["v1", "payment_intents"]) => self.list_intents(call, params).await,
            (&Method::GET, ["v1", "payment_intents", "search"]) => {
                self.search_intents(call, params).await
            }
            (&Method::GET, ["v1", "payment_intents", id]) => self.retrieve_intent(call, id).await,
            (&Method::POST, ["v1", "payment_intents", id]) => {
                self.update_intent(call, id, params).await
            }
            (&Method::POST, ["v1", "payment_intents", id, "confirm"]) => {
                self.confirm_intent(call, id, params).await
            }
            (&Method::POST, ["v1", "payment_intents", id, "capture"]) => {
                self.capture_intent(call, id, params).await
            }
            (&Method::POST, ["v1", "payment_intents", id, "cancel"]) => {
                self.cancel_intent(call, id, params).await
            }
            (&Method::POST, ["v1", "refunds"]) => self.create_refund(call, params).await,
            (&Method::POST, ["v1", "webhook_endpoints"]) => {
                self.create_endpoint(call, params).await
            }
            (&Method::DELETE, ["v1", "webhook_endpoints", id]) => {
                self.delete_endpoint(call, id).await
            }
            (&Method::GET, ["v1", "refunds", id]) => self.retrieve_refund(call, id).await,
            _ => {
                let failure = Failure::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    format!(
                        "Unrecognized request URL ({method}: {path}). This Stripe-compatible face serves /v1/payment_intents and /v1/refunds."
                    ),
                );
                self.answered(&call, "lookup", Answer::failed(&failure, "not_found"))
                    .await
            }
        }
    }

    /// The caller whose secret key `authorization` carries, or the `401`.
    fn stripe_caller(&self, authorization: Option<&str>) -> Result<Arc<str>, Failure> {
        let unauthorized = |message: String| {
            Failure::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
        };
        let Some(authorization) = authorization else {
            return Err(unauthorized(
                "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').".into(),
            ));
        };
        let secret = match authorization.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                token.trim().to_string()
            }
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("basic") => {
                let decoded = base64_decode(token.trim()).unwrap_or_default();
                let text = String::from_utf8_lossy(&decoded).into_owned();
                text.split(':').next().unwrap_or_default().to_string()
            }
            _ => String::new(),
        };
        self.inner
            .config
            .stripe_keys
            .iter()
            .find(|(_, key)| **key == secret)
            .map(|(caller, _)| Arc::from(caller.as_str()))
            .ok_or_else(|| {
                let chars: Vec<char> = secret.chars().collect();
                let shown = if chars.len() > 4 {
                    let head: String = chars.iter().take(8.min(chars.len() - 4)).collect();
                    let tail: String = chars[chars.len() - 4..].iter().collect();
                    format!("{head}****{tail}")
                } else {
                    secret.clone()
                };
                unauthorized(format!(
                    "Invalid API Key provided: {shown} (this provider's keys are set by provider.stripe_keys)"
                ))
            })
    }

    /// Logs the request and replies.
    async fn answered(
        &self,
        call: &Call,
        op: &'static str,
        answer: Answer,
    ) -> Result<Reply, DropConnection> {
        let line = call.line(op, answer.status.as_u16(), answer.outcome);
        self.log(line, call.started).await;
        Ok(answer.reply(call))
    }

    /// Outage, rate limit and capacity before a POST does anything: the answer to refuse
    /// with, or the permit to hold while the request runs. Refusals are not saved under the
    /// request's idempotency key (Stripe saves only requests that ran).
    fn admit(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Answer> {
        let active = self.active();
        let refused = |status: StatusCode, code: &'static str, message: &str, outcome| {
            let kind = if status == StatusCode::TOO_MANY_REQUESTS {
                "invalid_request_error"
            } else {
                "api_error"
            };
            let failure = Failure::new(status, kind, message).code(code);
            Answer::failed(&failure, outcome)
        };
        let answer = match active.admit() {
            Admission::Admitted(permit) => {
                if self.inner.draws.chance(active.error_rate) {
                    let mut answer = refused(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "api_error",
                        "An unknown error occurred (injected by the rig's provider faults); nothing was done.",
                        "injected_error",
                    );
                    answer.should_retry = Some(true);
                    answer
                } else {
                    return Ok(permit);
                }
            }
            Admission::Outage => {
                let mut answer = refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "api_error",
                    "The provider is down (the rig's outage fault).",
                    "outage",
                );
                answer.should_retry = Some(true);
                answer.retry_after = Some(Duration::from_secs(1));
                answer
            }
            Admission::RateLimited { retry_after } => {
                let mut answer = refused(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit",
                    "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
                    "rate_limited",
                );
                answer.retry_after = Some(retry_after);
                answer
            }
            Admission::OverCapacity => {
                let mut answer = refused(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit",
                    "Too many requests are being processed at once. We recommend an exponential backoff of your requests.",
                    "over_capacity",
                );
                answer.retry_after = Some(Duration::from_millis(100));
                answer
            }
        };
        Err(answer)
    }

    /// Claims the request's idempotency key (if it has one) for `fingerprint`: `Ok(())` to
    /// run the request, or the answer that settles it (the saved answer replayed, `409`
    /// while the first is in flight, `400 idempotency_error` for other parameters).
    async fn claim_key(&self, call: &Call, fingerprint: &str) -> Result<(), Answer> {
        let Some(ledger_key) = call.ledger_key() else {
            return Ok(());
        };
        let retention_us = i64::try_from(self.inner.config.key_retention_seconds)
            .unwrap_or(i64::MAX / 2_000_000)
            * 1_000_000;
        let claim = ledger::claim(
            &self.inner.db,
            &ledger_key,
            fingerprint,
            now_us(),
            retention_us,
        )
        .await;
        let key = call.key.as_deref().unwrap_or_default();
        match claim {
            Ok(Claim::New) => Ok(()),
            Ok(Claim::Replay { status, body }) => Err(Answer {
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                body: serde_json::from_str(&body).unwrap_or(Value::Null),
                outcome: "replayed",
                should_retry: None,
                retry_after: None,
                replayed: true,
            }),
            Ok(Claim::InFlight) => {
                let failure = Failure::new(
                    StatusCode::CONFLICT,
                    "invalid_request_error",
                    format!(
                        "There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): {key}. Please try again later."
                    ),
                )
                .code("idempotency_key_in_use");
                let mut answer = Answer::failed(&failure, "in_flight");
                answer.should_retry = Some(true);
                Err(answer)
            }
            Ok(Claim::Mismatch | Claim::Voided) => {
                let failure = Failure::new(
                    StatusCode::BAD_REQUEST,
                    "idempotency_error",
                    format!(
                        "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                    ),
                );
                Err(Answer::failed(&failure, "mismatch"))
            }
            Err(err) => Err(self.store_failure(&err)),
        }
    }

    fn store_failure(&self, err: &sqlx::Error) -> Answer {
        tracing::error!(error = %err, "provider store error (Stripe face)");
        let failure = Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "The provider's ledger is unavailable.",
        );
        let mut answer = Answer::failed(&failure, "error");
        answer.should_retry = Some(true);
        answer
    }
}

/// Standard base64 (with or without padding), for `Authorization: Basic`.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        })
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let take = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + take]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `curl -u sk_test_x:` sends Basic credentials: the key is the user name.
    #[test]
    fn basic_credentials_decode() {
        assert_eq!(
            base64_decode("c2tfdGVzdF94Og==").as_deref(),
            Some(&b"sk_test_x:"[..])
        );
        assert_eq!(
            base64_decode("c2tfdGVzdF94Og").as_deref(),
            Some(&b"sk_test_x:"[..])
        );
        assert_eq!(base64_decode("a"), None);
        assert_eq!(base64_decode("!!!!"), None);
    }
}
