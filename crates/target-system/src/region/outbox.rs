//! The transactional outbox relay and the confirmation consumer.
//!
//! Events are written in the same transaction as the state change they report. The relay
//! polls unpublished rows in id order, delivers each to the consumer, then marks it
//! published. A crash between delivery and marking delivers again: the consumer's dedup
//! table (insert in the same transaction as its effect) makes the effect happen once.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::watch;

use super::context::Context;
use evidence::store::Db;
use evidence::time::now_us;

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

/// The transactional outbox's relay: delivers unpublished events to the consumer.
#[derive(Debug)]
pub(super) struct Relay {
    ctx: Arc<Context>,
}

impl Relay {
    pub(super) fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    /// One relay pass: delivers up to `outbox.batch` unpublished events and marks them
    /// published. Returns how many were published.
    pub(super) async fn once(&self) -> Result<usize, sqlx::Error> {
        let db = &self.ctx.db;
        let batch = i64::from(self.ctx.config.outbox.batch);
        let rows = sqlx::query(
            "SELECT id, event_id, order_id, event_type FROM outbox WHERE published_at_us IS NULL ORDER BY id LIMIT $1",
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
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        if events.is_empty() {
            return Ok(0);
        }
        let dedup = !self.ctx.has(crate::defects::Defect::NoConsumerDedup);
        let deliveries = deliver(db, &events, dedup).await?;
        // A crash here leaves the batch unpublished: it is delivered again and deduplicated.
        let now = now_us();
        let mut tx = db.pool.begin().await?;
        for event in &events {
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
