//! The reconciliation API a caller uses when it does not know a payment's outcome:
//! look a key up, void it (a tombstone: nothing is ever charged with it again), refund a
//! charge.

use std::time::Duration;

use rig_http::{Reply, StatusCode, json, problem, with_retry_after};

use super::Provider;
use super::api::{ChargeAnswer, KeyAnswer};
use super::ledger;
use evidence::time::now_us;

impl Provider {
    pub(super) async fn lookup(&self, key: Option<String>) -> Reply {
        let started = tokio::time::Instant::now();
        let received_at_us = now_us();
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "give ?idempotency_key=K",
                Some("idempotency_key"),
            );
        };
        let retention_us = i64::try_from(self.inner.config.key_retention_seconds)
            .unwrap_or(i64::MAX / 2_000_000)
            * 1_000_000;
        let result = ledger::lookup(&self.inner.db, &key, received_at_us - retention_us).await;
        let (reply, outcome) = match result {
            Ok(Some(view)) => (json(StatusCode::OK, &KeyAnswer::from(&view)), "found"),
            Ok(None) => (
                problem(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no request with this idempotency key",
                    Some("idempotency_key"),
                ),
                "not_found",
            ),
            Err(err) => {
                tracing::error!(error = %err, "provider lookup failed");
                (
                    problem(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "store_error",
                        "the provider's ledger is unavailable",
                        None,
                    ),
                    "error",
                )
            }
        };
        self.finish_log(
            "lookup",
            Some(key),
            None,
            received_at_us,
            &reply,
            outcome,
            started,
        )
        .await;
        reply
    }

    pub(super) async fn void(&self, key: Option<String>) -> Reply {
        let started = tokio::time::Instant::now();
        let received_at_us = now_us();
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "give ?idempotency_key=K",
                Some("idempotency_key"),
            );
        };
        let (reply, outcome) = match ledger::void(&self.inner.db, &key, received_at_us).await {
            Ok(ledger::Void::Voided(view)) => {
                (json(StatusCode::OK, &KeyAnswer::from(&view)), "voided")
            }
            Ok(ledger::Void::InFlight) => (
                with_retry_after(
                    problem(
                        StatusCode::CONFLICT,
                        "idempotency_key_in_use",
                        "a charge with this key is being processed; void it after it finishes",
                        Some("idempotency_key"),
                    ),
                    Duration::from_millis(100),
                ),
                "in_flight",
            ),
            Err(err) => {
                tracing::error!(error = %err, "provider void failed");
                (
                    problem(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "store_error",
                        "the provider's ledger is unavailable",
                        None,
                    ),
                    "error",
                )
            }
        };
        self.finish_log(
            "void",
            Some(key),
            None,
            received_at_us,
            &reply,
            outcome,
            started,
        )
        .await;
        reply
    }

    pub(super) async fn refund(&self, charge_id: &str) -> Reply {
        let started = tokio::time::Instant::now();
        let received_at_us = now_us();
        let refund_id = self.inner.refund_ids.next();
        let (reply, outcome) =
            match ledger::refund(&self.inner.db, charge_id, &refund_id, received_at_us).await {
                Ok(ledger::Refund::Done(charge)) => (
                    json(StatusCode::OK, &ChargeAnswer::from(&charge)),
                    "refunded",
                ),
                Ok(ledger::Refund::NotFound) => (
                    problem(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        "no such charge",
                        Some("charge_id"),
                    ),
                    "not_found",
                ),
                Ok(ledger::Refund::NotRefundable(charge)) => (
                    problem(
                        StatusCode::CONFLICT,
                        "not_refundable",
                        &format!(
                            "charge is {}; only authorized charges can be refunded",
                            charge.status
                        ),
                        Some("charge_id"),
                    ),
                    "not_refundable",
                ),
                Err(err) => {
                    tracing::error!(error = %err, "provider refund failed");
                    (
                        problem(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "store_error",
                            "the provider's ledger is unavailable",
                            None,
                        ),
                        "error",
                    )
                }
            };
        self.finish_log(
            "refund",
            None,
            Some(charge_id.to_string()),
            received_at_us,
            &reply,
            outcome,
            started,
        )
        .await;
        reply
    }
}
