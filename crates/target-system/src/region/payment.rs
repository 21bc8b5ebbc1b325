//! The region's payment service: calls the provider with the stable key `pay:<order_id>` and
//! classifies every answer honestly. A timeout or a broken connection is `Unknown`, never a
//! failure: the provider may have charged.

use std::time::Duration;

use bytes::Bytes;
use rig_http::{ClientError, ClientResponse, HttpClient, Method, StatusCode};
use serde_json::json;

use super::orders::AttemptRow;
use crate::clock::now_us;
use crate::provider::api::{ChargeAnswer, KeyAnswer};

/// The provider idempotency key of an order's payment.
pub fn payment_key(order_id: &str) -> String {
    format!("pay:{order_id}")
}

/// What one charge call established.
#[derive(Debug, Clone)]
pub enum ChargeOutcome {
    Authorized(ChargeAnswer),
    Declined(ChargeAnswer),
    /// The provider refused before processing (429, 503, 500): this attempt charged nothing,
    /// but an earlier attempt with the same key might have.
    Refused {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Another request with this key is being processed (409).
    InFlight,
    /// The key was voided (410): no charge with it will ever exist.
    KeyVoided,
    /// Same key, different parameters (422): the evidence conflicts.
    Mismatch,
    /// No answer: the charge may or may not exist.
    Unknown(String),
}

impl ChargeOutcome {
    fn label(&self) -> &'static str {
        match self {
            Self::Authorized(_) => "authorized",
            Self::Declined(_) => "declined",
            Self::Refused { .. } => "refused",
            Self::InFlight => "in_flight",
            Self::KeyVoided => "key_voided",
            Self::Mismatch => "mismatch",
            Self::Unknown(_) => "unknown",
        }
    }
}

/// What a look-up by key established.
#[derive(Debug, Clone)]
pub enum Lookup {
    Found(KeyAnswer),
    NotFound,
    Unknown(String),
}

/// What a void established.
#[derive(Debug, Clone)]
pub enum VoidOutcome {
    Voided(KeyAnswer),
    InFlight,
    Unknown(String),
}

/// The provider client of one region.
#[derive(Debug, Clone)]
pub struct PaymentClient {
    http: HttpClient,
    base_url: String,
    region: &'static str,
}

impl PaymentClient {
    pub fn new(http: HttpClient, base_url: &str, region: &'static str) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            region,
        }
    }

    fn attempt(
        &self,
        order_id: &str,
        op: &'static str,
        attempt_no: i64,
        started_at_us: i64,
    ) -> AttemptRow {
        let (trace_id, request_id) = crate::trace::ids();
        AttemptRow {
            order_id: order_id.to_string(),
            idempotency_key: payment_key(order_id),
            region: self.region,
            op,
            attempt_no,
            is_retry: attempt_no > 1,
            started_at_us,
            finished_at_us: started_at_us,
            outcome: "unknown",
            http_status: None,
            detail: None,
            trace_id,
            request_id,
        }
    }

    /// One charge attempt with key `key` (normally [`payment_key`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn charge(
        &self,
        order_id: &str,
        key: &str,
        amount_cents: i64,
        currency: &str,
        attempt_no: i64,
        timeout: Duration,
    ) -> (ChargeOutcome, AttemptRow) {
        let mut row = self.attempt(order_id, "charge", attempt_no, now_us());
        row.idempotency_key = key.to_string();
        let body =
            json!({"order_id": order_id, "amount_cents": amount_cents, "currency": currency});
        let trace = crate::trace::outbound();
        let result = self
            .http
            .send(
                Method::POST,
                &format!("{}/v1/charges", self.base_url),
                &crate::trace::with(&[("idempotency-key", key)], &trace),
                Some(Bytes::from(body.to_string())),
                timeout,
            )
            .await;
        row.finished_at_us = now_us();
        let outcome = match result {
            Ok(response) => {
                row.http_status = Some(i64::from(response.status.as_u16()));
                classify_charge(&response)
            }
            Err(err) => {
                row.detail = Some(err.to_string());
                unknown_or_refused(&err)
            }
        };
        row.outcome = outcome.label();
        (outcome, row)
    }

    /// Reconciliation look-up by key.
    pub async fn lookup(&self, order_id: &str, timeout: Duration) -> (Lookup, AttemptRow) {
        let key = payment_key(order_id);
        let path = format!("/v1/charges?idempotency_key={}", encode(&key));
        let (result, mut row) = self
            .call(Method::GET, &path, order_id, "lookup", timeout)
            .await;
        let outcome = match result {
            Ok(response) => match response.status {
                StatusCode::OK => match response.json::<KeyAnswer>() {
                    Some(view) => Lookup::Found(view),
                    None => Lookup::Unknown("unreadable look-up answer".into()),
                },
                StatusCode::NOT_FOUND => Lookup::NotFound,
                other => Lookup::Unknown(format!("look-up answered {other}")),
            },
            Err(err) => Lookup::Unknown(err.to_string()),
        };
        row.outcome = match &outcome {
            Lookup::Found(_) => "found",
            Lookup::NotFound => "not_found",
            Lookup::Unknown(detail) => {
                row.detail = Some(detail.clone());
                "unknown"
            }
        };
        (outcome, row)
    }

    /// Voids the order's key (tombstone), voiding any authorized charge behind it.
    pub async fn void(&self, order_id: &str, timeout: Duration) -> (VoidOutcome, AttemptRow) {
        let key = payment_key(order_id);
        let path = format!("/v1/charges/void?idempotency_key={}", encode(&key));
        let (result, mut row) = self
            .call(Method::POST, &path, order_id, "void", timeout)
            .await;
        let outcome = match result {
            Ok(response) => match response.status {
                StatusCode::OK => match response.json::<KeyAnswer>() {
                    Some(view) => VoidOutcome::Voided(view),
                    None => VoidOutcome::Unknown("unreadable void answer".into()),
                },
                StatusCode::CONFLICT => VoidOutcome::InFlight,
                other => VoidOutcome::Unknown(format!("void answered {other}")),
            },
            Err(err) => VoidOutcome::Unknown(err.to_string()),
        };
        row.outcome = match &outcome {
            VoidOutcome::Voided(_) => "voided",
            VoidOutcome::InFlight => "in_flight",
            VoidOutcome::Unknown(detail) => {
                row.detail = Some(detail.clone());
                "unknown"
            }
        };
        (outcome, row)
    }

    /// One bodiless call to the provider (`path` under its base URL) in the trace in force,
    /// with its attempt row (times and status filled in).
    async fn call(
        &self,
        method: Method,
        path: &str,
        order_id: &str,
        op: &'static str,
        timeout: Duration,
    ) -> (Result<ClientResponse, ClientError>, AttemptRow) {
        let mut row = self.attempt(order_id, op, 0, now_us());
        let trace = crate::trace::outbound();
        let url = format!("{}{path}", self.base_url);
        let result = self
            .http
            .send(
                method,
                &url,
                &crate::trace::with(&[], &trace),
                None,
                timeout,
            )
            .await;
        row.finished_at_us = now_us();
        if let Ok(response) = &result {
            row.http_status = Some(i64::from(response.status.as_u16()));
        }
        (result, row)
    }

    /// Refunds a charge in full. `Ok(charge)` once the provider confirms.
    pub async fn refund(
        &self,
        order_id: &str,
        charge_id: &str,
        timeout: Duration,
    ) -> (Result<ChargeAnswer, String>, AttemptRow) {
        let path = format!("/v1/charges/{}/refund", encode(charge_id));
        let (result, mut row) = self
            .call(Method::POST, &path, order_id, "refund", timeout)
            .await;
        let outcome = match result {
            Ok(response) => match (response.status, response.json::<ChargeAnswer>()) {
                (StatusCode::OK, Some(charge)) => Ok(charge),
                (status, _) => Err(format!("refund answered {status}")),
            },
            Err(err) => Err(err.to_string()),
        };
        row.outcome = if outcome.is_ok() {
            "refunded"
        } else {
            "unknown"
        };
        if let Err(detail) = &outcome {
            row.detail = Some(detail.clone());
        }
        (outcome, row)
    }
}

fn classify_charge(response: &ClientResponse) -> ChargeOutcome {
    match response.status {
        StatusCode::OK => match response.json::<ChargeAnswer>() {
            Some(charge) if charge.status == "authorized" => ChargeOutcome::Authorized(charge),
            Some(charge) if charge.status == "declined" => ChargeOutcome::Declined(charge),
            Some(charge) => ChargeOutcome::Unknown(format!("charge status {:?}", charge.status)),
            None => ChargeOutcome::Unknown("unreadable charge answer".into()),
        },
        StatusCode::CONFLICT => ChargeOutcome::InFlight,
        StatusCode::GONE => ChargeOutcome::KeyVoided,
        StatusCode::UNPROCESSABLE_ENTITY => ChargeOutcome::Mismatch,
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::INTERNAL_SERVER_ERROR => ChargeOutcome::Refused {
            status: response.status.as_u16(),
            retry_after: retry_after(response),
        },
        other => ChargeOutcome::Unknown(format!("charge answered {other}")),
    }
}

fn unknown_or_refused(err: &ClientError) -> ChargeOutcome {
    if err.is_ambiguous() {
        ChargeOutcome::Unknown(err.to_string())
    } else {
        // Never connected: this attempt certainly charged nothing.
        ChargeOutcome::Refused {
            status: 0,
            retry_after: None,
        }
    }
}

/// The provider's requested wait: `Retry-After-Ms` if present, else `Retry-After` seconds.
pub fn retry_after(response: &ClientResponse) -> Option<Duration> {
    if let Some(ms) = response
        .header("retry-after-ms")
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Some(Duration::from_millis(ms));
    }
    response
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
