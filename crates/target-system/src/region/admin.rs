//! The region's operator surface: `GET /admin/state`, `POST /admin/payments/pause|resume`,
//! `GET|POST /admin/clock` (the chaos layer's clock fault), `POST /admin/orders/{id}/resolve`
//! (audited manual repair), readiness, and the loopback rule for admin routes.

use rig_http::{Incoming, PeerAddr, Reply, Request, StatusCode, json, problem};
use serde_json::json;

use super::context::Context;
use super::inventory;
use super::pay::Payments;
use super::repair::{OperatorDecision, Repair, Resolved};

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

/// The largest body `POST /admin/clock` reads.
const CLOCK_BODY_BYTES: usize = 1024;

/// `GET /admin/clock`: the offset this process adds to its wall clock and the time it reads.
pub(super) fn clock(ctx: &Context) -> Reply {
    let now = crate::clock::now_us();
    json(
        StatusCode::OK,
        &json!({
            "region": ctx.id,
            "offset_ms": crate::clock::offset_ms(),
            "now": evidence::time::rfc3339(now),
            "now_us": now,
        }),
    )
}

/// `POST /admin/clock {"offset_ms": N}`: shifts this process's wall clock by N ms (0: the
/// true time); the records it writes from now on carry the shifted time. Monotonic time,
/// which its timeouts and durations use, is untouched.
pub(super) async fn set_clock(ctx: &Context, req: Request<Incoming>) -> Reply {
    let bad = |message: String| {
        problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &message,
            Some("offset_ms"),
        )
    };
    let body = match rig_http::read_body(req.into_body(), CLOCK_BODY_BYTES).await {
        Ok(body) => body,
        Err(err) => return bad(err.to_string()),
    };
    let offset = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("offset_ms").and_then(serde_json::Value::as_i64));
    let Some(offset_ms) = offset.filter(|ms| ms.unsigned_abs() <= MAX_OFFSET_MS) else {
        return bad(format!(
            "send {{\"offset_ms\": N}} with N a whole number of milliseconds within ±{MAX_OFFSET_MS} (0: the true time); got {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    };
    match crate::clock::set_offset_ms(offset_ms) {
        Ok(()) => {
            tracing::warn!(region = %ctx.id, offset_ms, "wall clock shifted");
            clock(ctx)
        }
        Err(message) => problem(StatusCode::CONFLICT, "clock_shared", message, None),
    }
}

/// A day: the largest shift the clock endpoint takes.
const MAX_OFFSET_MS: u64 = 24 * 3600 * 1000;

/// The largest body `POST /admin/orders/...` reads.
const RESOLVE_BODY_BYTES: usize = 8 * 1024;

fn invalid(message: &str, field: &str) -> Reply {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        message,
        Some(field),
    )
}

/// An operator's request body: JSON with the `operator` and the `note` every decision is
/// audited with (both required), and the rest for the route to read.
struct OperatorRequest {
    value: serde_json::Value,
    operator: String,
    note: String,
}

impl OperatorRequest {
    async fn read(req: Request<Incoming>) -> Result<Self, Reply> {
        let body = rig_http::read_body(req.into_body(), RESOLVE_BODY_BYTES)
            .await
            .map_err(|err| invalid(&err.to_string(), "body"))?;
        let value = serde_json::from_slice::<serde_json::Value>(&body).map_err(|_| {
            invalid(
                "malformed JSON; send {\"operator\":\"NAME\",\"note\":\"WHY\", ...}",
                "body",
            )
        })?;
        let text = |field: &str| {
            value
                .get(field)
                .and_then(serde_json::Value::as_str)
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
        };
        let operator = text("operator").ok_or_else(|| {
            invalid(
                "required: who decides (it goes in the audit trail)",
                "operator",
            )
        })?;
        let note = text("note").ok_or_else(|| {
            invalid(
                "required: why (the evidence you looked at; it goes in the audit trail)",
                "note",
            )
        })?;
        Ok(Self {
            value,
            operator,
            note,
        })
    }
}

/// `POST /admin/orders/{id}/resolve {"decision":"confirm"|"fail","operator","note"}` on the
/// owner region: 200 with what was done, 409 with the evidence when the provider's record
/// contradicts the decision (or the order is not waiting on its payment), 503 when the
/// provider could not be asked, 404 for an unknown order. Every decision is audited.
pub(super) async fn resolve(
    ctx: &Context,
    repair: &Repair,
    order_id: &str,
    req: Request<Incoming>,
) -> Reply {
    let request = match OperatorRequest::read(req).await {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let decision = match request
        .value
        .get("decision")
        .and_then(serde_json::Value::as_str)
    {
        Some("confirm") => OperatorDecision::Confirm,
        Some("fail") => OperatorDecision::Fail,
        other => {
            return invalid(
                &format!("{other:?}: use \"confirm\" or \"fail\""),
                "decision",
            );
        }
    };
    let (operator, note) = (request.operator, request.note);
    match repair.resolve(order_id, decision, &operator, &note).await {
        Ok(Resolved::Applied {
            status,
            provider,
            did,
        }) => json(
            StatusCode::OK,
            &json!({
                "order_id": order_id,
                "region": ctx.id,
                "decision": decision.as_str(),
                "status": status.as_str(),
                "provider": provider,
                "did": did,
                "operator": operator,
            }),
        ),
        Ok(Resolved::Refused {
            why,
            provider,
            conflict,
        }) => json(
            if conflict {
                StatusCode::CONFLICT
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            &json!({
                "error": if conflict { "evidence_contradicts" } else { "evidence_unavailable" },
                "message": why,
                "order_id": order_id,
                "region": ctx.id,
                "decision": decision.as_str(),
                "provider": provider,
            }),
        ),
        Ok(Resolved::NotFound) => problem(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!(
                "region {} has no order {order_id:?}; resolve it on its owner region",
                ctx.id
            ),
            None,
        ),
        Err(err) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            &err.to_string(),
            None,
        ),
    }
}

/// `POST /admin/orders/resolve-pending {"count","operator","note"}`: an operator resolves
/// the region's oldest pending orders, each on the provider's record (confirmed when its
/// charge is authorized, failed otherwise), each audited.
pub(super) async fn resolve_pending(
    ctx: &Context,
    repair: &Repair,
    req: Request<Incoming>,
) -> Reply {
    let request = match OperatorRequest::read(req).await {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let count = match request
        .value
        .get("count")
        .and_then(serde_json::Value::as_u64)
    {
        Some(n @ 1..=10_000) => n as usize,
        _ => {
            return invalid(
                "send a count from 1 to 10000 of the oldest pending orders",
                "count",
            );
        }
    };
    let (operator, note) = (request.operator, request.note);
    match repair.resolve_oldest(count, &operator, &note).await {
        Ok(done) => {
            let orders: Vec<serde_json::Value> = done
                .iter()
                .map(|(order_id, decision, resolved)| {
                    let (outcome, status) = match resolved {
                        Resolved::Applied { status, .. } => ("applied", status.as_str().to_string()),
                        Resolved::Refused { why, .. } => ("refused", why.clone()),
                        Resolved::NotFound => ("refused", "not found".to_string()),
                    };
                    json!({"order_id": order_id, "decision": decision.as_str(), "outcome": outcome, "status": status})
                })
                .collect();
            let applied = orders.iter().filter(|o| o["outcome"] == "applied").count();
            json(
                StatusCode::OK,
                &json!({"region": ctx.id, "resolved": applied, "orders": orders}),
            )
        }
        Err(err) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            &err.to_string(),
            None,
        ),
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
