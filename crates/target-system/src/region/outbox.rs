//! The transactional outbox relay and the confirmation consumer.
//!
//! Events are written in the same transaction as the state change they report. The relay
//! polls unpublished rows in id order and delivers them, in order, to the event sink over
//! HTTP (when the region has one) and to the region's own consumer, then marks them
//! published. A delivery the sink does not accept (error, timeout, outage) ends the pass:
//! that event and the ones after it stay unpublished and go again next pass, so a slow or
//! failing sink backs the relay up. A crash between delivery and marking delivers again:
//! the sink answers a redelivery as a duplicate, and the consumer's dedup table (insert in
//! the same transaction as its effect) makes the effect happen once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rig_http::{HttpClient, Method};
use sqlx::Row;
use tokio::sync::watch;

use super::context::Context;
use crate::clock::now_us;
use evidence::store::Db;

/// The consumer's name in `consumer_dedup` and `fulfilments`.
pub const CONSUMER: &str = "fulfilment";

/// What a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Applied,
    Duplicate,
}

/// One event as the relay hands it over.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: i64,
    pub event_id: String,
    pub order_id: String,
    pub event_type: String,
    /// The event's JSON payload as the outbox stored it.
    pub payload: String,
    /// The order's version when the relay read the event.
    pub version: Option<i64>,
    /// The trace and request the event was written in (its sink delivery continues them).
    pub trace_id: Option<String>,
    pub request_id: Option<String>,
}

/// The confirmation consumer: records one fulfilment per event, exactly once. A batch is one
/// transaction: each event's dedup row and its effect commit together.
pub async fn deliver(db: &Db, events: &[Event], dedup: bool) -> Result<Vec<Delivery>, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let now = now_us();
    let mut deliveries = Vec::with_capacity(events.len());
    for event in events {
        if dedup {
            let fresh = sqlx::query(
                "INSERT INTO consumer_dedup (consumer, event_id, at_us) VALUES ($1, $2, $3) \
                 ON CONFLICT (consumer, event_id) DO NOTHING",
            )
            .bind(CONSUMER)
            .bind(&event.event_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if fresh == 0 {
                deliveries.push(Delivery::Duplicate);
                continue;
            }
        }
        sqlx::query(
            "INSERT INTO fulfilments (consumer, event_id, order_id, at_us) VALUES ($1, $2, $3, $4)",
        )
        .bind(CONSUMER)
        .bind(&event.event_id)
        .bind(&event.order_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        deliveries.push(Delivery::Applied);
    }
    tx.commit().await?;
    Ok(deliveries)
}

/// The transactional outbox's relay: delivers unpublished events to the sink and the
/// consumer.
#[derive(Debug)]
pub(super) struct Relay {
    ctx: Arc<Context>,
    /// The event sink: a client and its base URL.
    sink: Option<(HttpClient, String)>,
}

impl Relay {
    pub(super) fn new(ctx: Arc<Context>, sink: Option<(HttpClient, String)>) -> Self {
        Self { ctx, sink }
    }

    /// Delivers `events` to the sink in order; returns how many it accepted (a prefix).
    async fn to_sink(&self, events: &[Event]) -> usize {
        let Some((http, base)) = &self.sink else {
            return events.len();
        };
        let url = format!("{base}/v1/events");
        let timeout = Duration::from_millis(self.ctx.config.outbox.delivery_timeout_ms);
        for (n, event) in events.iter().enumerate() {
            let mut body: serde_json::Value =
                serde_json::from_str(&event.payload).unwrap_or_else(|_| serde_json::json!({}));
            body["event_id"] = event.event_id.clone().into();
            body["order_id"] = event.order_id.clone().into();
            body["type"] = event.event_type.clone().into();
            body["version"] = event.version.into();
            // The delivery continues the trace of the request that produced the event.
            let trace = crate::trace::stored(event.trace_id.clone(), event.request_id.clone())
                .outbound(crate::trace::span_ids())
                .to_vec();
            let sent = http
                .send(
                    Method::POST,
                    &url,
                    &crate::trace::with(&[("content-type", "application/json")], &trace),
                    Some(Bytes::from(body.to_string())),
                    timeout,
                )
                .await;
            let result = match &sent {
                Ok(answer) if answer.status.is_success() => "delivered",
                Ok(_) => "refused",
                Err(_) => "unreachable",
            };
            self.ctx
                .metrics
                .sink_deliveries
                .with_label_values(&[result])
                .inc();
            if result != "delivered" {
                let why = match sent {
                    Ok(answer) => format!("answered {}", answer.status),
                    Err(err) => err.to_string(),
                };
                tracing::warn!(region = %self.ctx.id, event_id = %event.event_id, %why, "event sink did not accept an event; the relay tries again next pass");
                return n;
            }
        }
        events.len()
    }

    /// One relay pass: delivers up to `outbox.batch` unpublished events and marks them
    /// published. Returns how many were published.
    pub(super) async fn once(&self) -> Result<usize, sqlx::Error> {
        let db = &self.ctx.db;
        let batch = i64::from(self.ctx.config.outbox.batch);
        let rows = sqlx::query(
            "SELECT e.id, e.event_id, e.order_id, e.event_type, e.payload, o.version, e.trace_id, e.request_id \
             FROM outbox e LEFT JOIN orders o ON o.order_id = e.order_id \
             WHERE e.published_at_us IS NULL ORDER BY e.id LIMIT $1",
        )
        .bind(batch)
        .fetch_all(&db.pool)
        .await?;
        let events = rows
            .iter()
            .map(|row| {
                Ok(Event {
                    id: row.try_get("id")?,
                    event_id: row.try_get("event_id")?,
                    order_id: row.try_get("order_id")?,
                    event_type: row.try_get("event_type")?,
                    payload: row.try_get("payload")?,
                    version: row.try_get("version")?,
                    trace_id: row.try_get("trace_id")?,
                    request_id: row.try_get("request_id")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        if events.is_empty() {
            return Ok(0);
        }
        let delivered = self.to_sink(&events).await;
        let events = &events[..delivered];
        if events.is_empty() {
            return Ok(0);
        }
        let dedup = !self.ctx.has(crate::defects::Defect::NoConsumerDedup);
        let deliveries = deliver(db, events, dedup).await?;
        // A crash here leaves the batch unpublished: it is delivered again and deduplicated.
        let now = now_us();
        let mut tx = db.pool.begin().await?;
        for event in events {
            sqlx::query(
                "UPDATE outbox SET published_at_us = $2, delivery_attempts = delivery_attempts + 1 WHERE id = $1",
            )
            .bind(event.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let m = &self.ctx.metrics;
        for (event, delivery) in events.iter().zip(&deliveries) {
            let result = match delivery {
                Delivery::Applied => "applied",
                Delivery::Duplicate => "duplicate",
            };
            m.consumer_deliveries.with_label_values(&[result]).inc();
            m.outbox_published
                .with_label_values(&[event.event_type.as_str()])
                .inc();
        }
        let published = events.len();
        Ok(published)
    }
}

/// Runs the relay every `outbox.poll_interval_ms` (immediately again while batches are full)
/// until `stop` turns true.
pub(super) async fn run_relay(relay: Arc<Relay>, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_millis(relay.ctx.config.outbox.poll_interval_ms);
    let batch = relay.ctx.config.outbox.batch as usize;
    loop {
        let full = match relay.once().await {
            Ok(n) => n >= batch,
            Err(err) => {
                tracing::warn!(error = %err, region = %relay.ctx.id, "outbox relay pass failed");
                false
            }
        };
        if *stop.borrow() {
            return;
        }
        if !full {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
        }
    }
}
