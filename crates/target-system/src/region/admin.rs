//! The region's operator surface: `GET /admin/state`, `POST /admin/payments/pause|resume`,
//! readiness, and the loopback rule for admin routes.

use rig_http::{Incoming, PeerAddr, Reply, Request, StatusCode, json, problem};
use serde_json::json;

use super::context::Context;
use super::inventory;
use super::pay::Payments;

/// `GET /readyz`: the store answers.
pub(super) async fn ready(ctx: &Context) -> Reply {
    match sqlx::query("SELECT 1").execute(&ctx.db.pool).await {
        Ok(_) => json(
            StatusCode::OK,
            &json!({"status": "ready", "region": ctx.id}),
        ),
        Err(err) => store_unavailable(&err),
    }
}

/// `GET /admin/state`: the mode, the effective parameters and the inventory.
pub(super) async fn state(ctx: &Context, payments: &Payments) -> Reply {
    match inventory::inventory(&ctx.db).await {
        Ok(inventory) => json(
            StatusCode::OK,
            &json!({
                "region": ctx.id,
                "mode": payments.mode(),
                "breaker_open": payments.breaker_open(),
                "defects": &ctx.config.defects,
                "parameters": &*ctx.config,
                "inventory": inventory,
            }),
        ),
        Err(err) => store_unavailable(&err),
    }
}

/// `POST /admin/payments/pause|resume`.
pub(super) async fn set_paused(payments: &Payments, paused: bool) -> Reply {
    match payments.set_paused(paused).await {
        Ok(mode) => json(
            StatusCode::OK,
            &json!({"region": payments.region(), "mode": mode}),
        ),
        Err(err) => store_unavailable(&err),
    }
}

fn store_unavailable(err: &sqlx::Error) -> Reply {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        &err.to_string(),
        None,
    )
}

/// Admin routes answer loopback clients unless `target.admin.allow_remote` is set.
pub(super) fn is_loopback(req: &Request<Incoming>) -> bool {
    req.extensions()
        .get::<PeerAddr>()
        .is_none_or(|peer| peer.0.ip().is_loopback())
}
