//! `GET /v1/orders/{id}`: the owner's view of an order (a gateway asks the owner, see
//! `forward.rs`).

use rig_http::{Reply, StatusCode, json, problem};
use serde_json::json;

use super::context::Context;
use super::orders::{self, Order};
use super::replies::store_error;
use evidence::time::rfc3339;

/// The owner's answer from its store.
pub(super) async fn owner_view(ctx: &Context, order_id: &str) -> Reply {
    match orders::load(&ctx.db, order_id).await {
        Ok(Some(order)) => json(StatusCode::OK, &status_view(&order)),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such order",
            Some("order_id"),
        ),
        Err(err) => store_error(&err),
    }
}

/// The public view of an order.
pub fn status_view(order: &Order) -> serde_json::Value {
    json!({
        "order_id": order.order_id,
        "status": order.status,
        "reason": order.reason,
        "owner_region": order.owner_region,
        "entry_region": order.entry_region,
        "amount_cents": order.amount_cents,
        "currency": order.currency,
        "version": order.version,
        "updated_at": rfc3339(order.updated_at_us),
        "updated_at_us": order.updated_at_us,
    })
}
