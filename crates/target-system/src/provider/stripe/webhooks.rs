//! Webhooks of the Stripe face: `payment_intent.succeeded`, `payment_intent.payment_failed`,
//! `payment_intent.amount_capturable_updated` and `payment_intent.canceled` events, written
//! with the change that caused them (`provider_webhook_deliveries`) and delivered by a worker
//! to every endpoint that wants them, signed as Stripe signs them:
//! `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the
//! endpoint's secret>`. A delivery answered other than 2xx, or not at all within
//! [`DELIVERY_TIMEOUT`], is retried with backoff (1 s, 2 s, 4 s, ... at most
//! [`MAX_BACKOFF`]) up to [`MAX_ATTEMPTS`] times.
//!
//! Endpoints come from the configuration (`provider.stripe_webhooks`: one caller's events
//! to one URL, signed with `provider.stripe_webhook_secret`) or from the API
//! (`POST /v1/webhook_endpoints` with `url` and `enabled_events[]`: every caller's events,
//! with a secret of its own in the answer). The provider's faults can delay
//! (`webhook_delay_ms`), lose (`webhook_drop_rate`) or repeat (`webhook_duplicate_rate`)
//! deliveries.

use std::time::Duration;

use bytes::Bytes;
use hmac::{KeyInit, Mac};
use rig_http::{DropConnection, Method, Reply};
use serde_json::{Value, json};
use sqlx::Row;

use super::super::Provider;
use super::form::Params;
use super::{Answer, Call, Failure};
use evidence::store::Db;
use evidence::time::now_us;

/// How long one delivery may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts before a delivery is given up (`failed`).
pub const MAX_ATTEMPTS: i64 = 8;
/// The longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Deliveries taken per pass of the worker.
const BATCH: i64 = 32;
/// How often an idle worker looks for due deliveries (retries, held events).
const IDLE: Duration = Duration::from_millis(250);

/// The event types this face sends.
pub const EVENT_TYPES: &[&str] = &[
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.amount_capturable_updated",
    "payment_intent.canceled",
];

/// `Stripe-Signature` for `payload` sent at `at_secs`.
pub fn signature(secret: &str, at_secs: i64, payload: &str) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(format!("{at_secs}.").as_bytes());
    mac.update(payload.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={at_secs},v1={hex}")
}

/// One event to send, built with the change that caused it.
#[derive(Debug, Clone)]
pub struct Event {
    pub event_id: String,
    pub event_type: &'static str,
    pub intent_id: String,
    /// Whose intent it is (endpoints from the configuration take one caller's events).
    pub caller: Option<String>,
    pub payload: String,
}

impl Event {
    /// The event `event_type` about `intent` (its JSON as Stripe sends it).
    pub(super) fn new(
        event_id: String,
        event_type: &'static str,
        intent: &Value,
        caller: Option<String>,
        call: &Call,
    ) -> Self {
        let payload = json!({
            "id": event_id,
            "object": "event",
            "api_version": "2025-01-27.acacia",
            "created": now_us().div_euclid(1_000_000),
            "data": { "object": intent },
            "livemode": false,
            "pending_webhooks": 1,
            "request": { "id": call.request_id, "idempotency_key": call.key },
            "type": event_type,
        })
        .to_string();
        Self {
            event_id,
            event_type,
            intent_id: intent["id"].as_str().unwrap_or_default().to_string(),
            caller,
            payload,
        }
    }
}

/// Writes one delivery of `event` per endpoint that wants it (inside the transaction of
/// the change that caused it).
pub async fn enqueue(conn: &mut sqlx::AnyConnection, event: &Event) -> Result<(), sqlx::Error> {
    let endpoints = sqlx::query(
        "SELECT endpoint_id, caller, enabled_events_json FROM provider_webhook_endpoints",
    )
    .fetch_all(&mut *conn)
    .await?;
    let now = now_us();
    for row in endpoints {
        let endpoint_id: String = row.try_get("endpoint_id")?;
        let caller: Option<String> = row.try_get("caller")?;
        let events: String = row.try_get("enabled_events_json")?;
        let events: Vec<String> = serde_json::from_str(&events).unwrap_or_default();
        let wanted = events.iter().any(|e| e == "*" || e == event.event_type);
        let theirs = caller.is_none() || caller == event.caller;
        if !(wanted && theirs) {
            continue;
        }
        sqlx::query(
            "INSERT INTO provider_webhook_deliveries (event_id, endpoint_id, event_type, intent_id, payload, \
             status, attempts, created_at_us, next_attempt_at_us) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)",
        )
        .bind(&event.event_id)
        .bind(&endpoint_id)
        .bind(event.event_type)
        .bind(&event.intent_id)
        .bind(&event.payload)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Replaces the endpoints the configuration defines (`we_config_<caller>`).
pub async fn configure(
    db: &Db,
    webhooks: &std::collections::BTreeMap<String, String>,
    secret: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    sqlx::query("DELETE FROM provider_webhook_endpoints WHERE endpoint_id LIKE 'we_config_%'")
        .execute(&mut *tx)
        .await?;
    for (caller, url) in webhooks {
        sqlx::query(
            "INSERT INTO provider_webhook_endpoints (endpoint_id, url, secret, caller, enabled_events_json, created_at_us) \
             VALUES ($1, $2, $3, $4, '[\"*\"]', $5)",
        )
        .bind(format!("we_config_{caller}"))
        .bind(url)
        .bind(secret)
        .bind(caller)
        .bind(now_us())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// One due delivery.
struct Due {
    event_id: String,
    endpoint_id: String,
    payload: String,
    attempts: i64,
    created_at_us: i64,
    url: String,
    secret: String,
}

impl Provider {
    /// Starts the webhook worker (once): it delivers due webhooks until the process ends,
    /// woken by each new event and at least every second (for retries and held events).
    pub(super) async fn start_webhooks(&self) -> Result<(), sqlx::Error> {
        use std::sync::atomic::Ordering;
        if self.inner.webhooks_started.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let config = &self.inner.config;
        configure(
            &self.inner.db,
            &config.stripe_webhooks,
            &config.stripe_webhook_secret,
        )
        .await?;
        let provider = self.clone();
        tokio::spawn(async move {
            let http = rig_http::HttpClient::new(Duration::from_secs(2), 8);
            loop {
                match provider.deliver_due(&http).await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "webhook worker: the store failed"),
                }
                tokio::select! {
                    _ = provider.inner.webhooks.notified() => {}
                    _ = tokio::time::sleep(IDLE) => {}
                }
            }
        });
        Ok(())
    }

    /// One pass: every due delivery (at most [`BATCH`]), at once; returns how many.
    async fn deliver_due(&self, http: &rig_http::HttpClient) -> Result<usize, sqlx::Error> {
        let db = &self.inner.db;
        let rows = sqlx::query(
            "SELECT d.event_id, d.endpoint_id, d.payload, d.attempts, d.created_at_us, e.url, e.secret \
             FROM provider_webhook_deliveries d JOIN provider_webhook_endpoints e ON e.endpoint_id = d.endpoint_id \
             WHERE d.status = 'pending' AND d.next_attempt_at_us <= $1 ORDER BY d.next_attempt_at_us LIMIT $2",
        )
        .bind(now_us())
        .bind(BATCH)
        .fetch_all(&db.pool)
        .await?;
        let active = self.active();
        let mut due = Vec::new();
        for row in &rows {
            let d = Due {
                event_id: row.try_get("event_id")?,
                endpoint_id: row.try_get("endpoint_id")?,
                payload: row.try_get("payload")?,
                attempts: row.try_get("attempts")?,
                created_at_us: row.try_get("created_at_us")?,
                url: row.try_get("url")?,
                secret: row.try_get("secret")?,
            };
            // A delay fault holds a new event back; a drop fault loses it.
            let held_until = d.created_at_us + (active.webhook_delay_ms as i64) * 1_000;
            if d.attempts == 0 && held_until > now_us() {
                self.reschedule(&d, held_until).await?;
                continue;
            }
            if d.attempts == 0 && self.inner.draws.chance(active.webhook_drop_rate) {
                self.finish(
                    &d,
                    "dropped",
                    None,
                    Some("lost by the webhook_drop_rate fault"),
                )
                .await?;
                continue;
            }
            due.push(d);
        }
        let taken = rows.len();
        let sends = due.into_iter().map(|d| {
            let duplicate = self.inner.draws.chance(active.webhook_duplicate_rate);
            async move {
                let result = send(http, &d).await;
                if duplicate && result.is_ok() {
                    let _ = send(http, &d).await;
                }
                (d, result)
            }
        });
        for (d, result) in futures_util::future::join_all(sends).await {
            match result {
                Ok(status) => self.finish(&d, "delivered", Some(status), None).await?,
                Err((status, error)) => {
                    let attempts = d.attempts + 1;
                    if attempts >= MAX_ATTEMPTS {
                        self.finish(&d, "failed", status, Some(&error)).await?;
                    } else {
                        let backoff =
                            Duration::from_secs(1 << (attempts - 1).min(10)).min(MAX_BACKOFF);
                        sqlx::query(
                            "UPDATE provider_webhook_deliveries SET attempts = $3, next_attempt_at_us = $4, \
                             last_http_status = $5, last_error = $6 WHERE event_id = $1 AND endpoint_id = $2",
                        )
                        .bind(&d.event_id)
                        .bind(&d.endpoint_id)
                        .bind(attempts)
                        .bind(now_us() + backoff.as_micros() as i64)
                        .bind(status)
                        .bind(&error)
                        .execute(&db.pool)
                        .await?;
                    }
                }
            }
        }
        Ok(taken)
    }

    async fn reschedule(&self, d: &Due, at_us: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE provider_webhook_deliveries SET next_attempt_at_us = $3 WHERE event_id = $1 AND endpoint_id = $2",
        )
        .bind(&d.event_id)
        .bind(&d.endpoint_id)
        .bind(at_us)
        .execute(&self.inner.db.pool)
        .await?;
        Ok(())
    }

    async fn finish(
        &self,
        d: &Due,
        status: &str,
        http_status: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let now = now_us();
        sqlx::query(
            "UPDATE provider_webhook_deliveries SET status = $3, attempts = attempts + $4, \
             delivered_at_us = $5, last_http_status = $6, last_error = $7 WHERE event_id = $1 AND endpoint_id = $2",
        )
        .bind(&d.event_id)
        .bind(&d.endpoint_id)
        .bind(status)
        .bind(i64::from(status != "dropped"))
        .bind((status == "delivered").then_some(now))
        .bind(http_status)
        .bind(error)
        .execute(&self.inner.db.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn create_endpoint(
        &self,
        call: Call,
        params: Params,
    ) -> Result<Reply, DropConnection> {
        let checked = (|| {
            let url = params
                .text("url")
                .filter(|u| u.starts_with("http://"))
                .ok_or_else(|| {
                    Failure::invalid(
                        "url",
                        "Missing or invalid url: give the endpoint's http:// URL (this provider delivers without TLS, so https:// is refused).",
                    )
                })?;
            let events: Vec<String> = match params.text_map("enabled_events") {
                Ok(map) if !map.is_empty() => map.into_values().collect(),
                _ => {
                    return Err(Failure::invalid(
                        "enabled_events",
                        format!(
                            "Missing required param: enabled_events (e.g. enabled_events[]=payment_intent.succeeded; \"*\" for all; sent here: {})",
                            EVENT_TYPES.join(", ")
                        ),
                    ));
                }
            };
            if let Some(bad) = events.iter().find(|e| *e != "*" && !e.contains('.')) {
                return Err(Failure::invalid(
                    "enabled_events",
                    format!("Invalid event type: {bad}"),
                ));
            }
            Ok((url.to_string(), events))
        })();
        let (url, events) = match checked {
            Ok(checked) => checked,
            Err(failure) => {
                return self
                    .answered(
                        &call,
                        "webhook_endpoint",
                        Answer::failed(&failure, "invalid"),
                    )
                    .await;
            }
        };
        let id = self.inner.endpoint_ids.next();
        // Not derivable from the endpoint's id: drawn (from the run's seed).
        let word = || self.inner.draws.up_to(u64::from(u32::MAX));
        let secret = format!(
            "whsec_{:08x}{:08x}{:08x}{:08x}",
            word(),
            word(),
            word(),
            word()
        );
        let now = now_us();
        let stored = sqlx::query(
            "INSERT INTO provider_webhook_endpoints (endpoint_id, url, secret, caller, enabled_events_json, created_at_us) \
             VALUES ($1, $2, $3, NULL, $4, $5)",
        )
        .bind(&id)
        .bind(&url)
        .bind(&secret)
        .bind(serde_json::to_string(&events).unwrap_or_default())
        .bind(now)
        .execute(&self.inner.db.pool)
        .await;
        let answer = match stored {
            Ok(_) => Answer::ok(
                json!({
                    "id": id,
                    "object": "webhook_endpoint",
                    "url": url,
                    "enabled_events": events,
                    "secret": secret,
                    "status": "enabled",
                    "livemode": false,
                    "created": now.div_euclid(1_000_000),
                    "metadata": {},
                }),
                "created",
            ),
            Err(err) => self.store_failure(&err),
        };
        self.answered(&call, "webhook_endpoint", answer).await
    }

    pub(super) async fn delete_endpoint(
        &self,
        call: Call,
        id: &str,
    ) -> Result<Reply, DropConnection> {
        let deleted = sqlx::query("DELETE FROM provider_webhook_endpoints WHERE endpoint_id = $1")
            .bind(id)
            .execute(&self.inner.db.pool)
            .await;
        let answer = match deleted {
            Ok(done) if done.rows_affected() == 1 => Answer::ok(
                json!({"id": id, "object": "webhook_endpoint", "deleted": true}),
                "deleted",
            ),
            Ok(_) => Answer::failed(&Failure::missing("webhook_endpoint", id, "id"), "not_found"),
            Err(err) => self.store_failure(&err),
        };
        self.answered(&call, "webhook_endpoint", answer).await
    }
}

/// One signed POST of `d`: the status on 2xx, else the status (if any) and why.
async fn send(http: &rig_http::HttpClient, d: &Due) -> Result<i64, (Option<i64>, String)> {
    let signed = signature(&d.secret, now_us().div_euclid(1_000_000), &d.payload);
    let answer = http
        .send(
            Method::POST,
            &d.url,
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("stripe-signature", &signed),
                (
                    "user-agent",
                    "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                ),
            ],
            Some(Bytes::from(d.payload.clone())),
            DELIVERY_TIMEOUT,
        )
        .await;
    match answer {
        Ok(reply) if reply.status.is_success() => Ok(i64::from(reply.status.as_u16())),
        Ok(reply) => Err((
            Some(i64::from(reply.status.as_u16())),
            format!("answered {}", reply.status),
        )),
        Err(err) => Err((None, err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature is Stripe's shape (`t=<seconds>,v1=<64 hex>`) over HMAC-SHA256, whose
    /// digest matches RFC 4231's test case 2; it changes with the secret and the time.
    #[test]
    fn signatures_are_hmac_sha256_of_the_timestamped_payload() {
        let sig = signature("Jefe", 0, "x");
        assert!(sig.starts_with("t=0,v1="), "{sig}");
        assert_eq!(sig.len(), "t=0,v1=".len() + 64);
        // "what do ya want for nothing?" signed at t = "what do ya want for nothing" is not
        // a number, so check the HMAC itself against the RFC's vector.
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let digest: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            digest,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(signature("whsec_a", 1, "{}"), signature("whsec_b", 1, "{}"));
        assert_ne!(signature("whsec_a", 1, "{}"), signature("whsec_a", 2, "{}"));
    }
}
