//! The checkout answers of the HTTP contract (DESIGN §4): `201 order_confirmed`, `202
//! payment_pending`, `200 failed_safely`, `422` for a reused key, `429`/`503` with
//! `Retry-After` when shed, `400` naming the field.

use std::time::Duration;

use rig_http::{Reply, StatusCode, json, problem, with_retry_after};
use serde_json::json;

use super::admission::Decision;
use super::orders::OrderError;

pub(super) fn key_reused() -> Reply {
    problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different body; use a new order id for a new order",
        Some("Idempotency-Key"),
    )
}

pub(super) fn confirmed_reply(order_id: &str) -> Reply {
    json(
        StatusCode::CREATED,
        &json!({"order_id": order_id, "status": "order_confirmed"}),
    )
}

pub(super) fn pending_reply(order_id: &str) -> Reply {
    json(
        StatusCode::ACCEPTED,
        &json!({
            "order_id": order_id,
            "status": "payment_pending",
            "status_url": format!("/v1/orders/{order_id}"),
        }),
    )
}

pub(super) fn failed_reply(order_id: &str, reason: &str) -> Reply {
    json(
        StatusCode::OK,
        &json!({"order_id": order_id, "status": "failed_safely", "reason": reason}),
    )
}

pub(super) fn payment_unavailable(why: &str) -> Reply {
    with_retry_after(
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "payment_unavailable",
            &format!(
                "new payments are not taken right now ({why}); carts and order status stay available"
            ),
            None,
        ),
        Duration::from_secs(1),
    )
}

pub(super) fn overloaded(decision: Decision, retry_after: Duration) -> Reply {
    with_retry_after(
        problem(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            &format!(
                "checkout shed by admission control ({}); retry later with the same key",
                decision.as_str()
            ),
            None,
        ),
        retry_after,
    )
}

pub(super) fn invalid(field: &str, message: &str) -> Reply {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        message,
        Some(field),
    )
}

pub(super) fn store_error(err: &OrderError) -> Reply {
    tracing::error!(error = %err, "region store error");
    with_retry_after(
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the order store is unavailable; retry with the same key",
            None,
        ),
        Duration::from_secs(1),
    )
}
