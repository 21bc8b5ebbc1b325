//! Carts: `GET|PUT /v1/carts/{cart_id}`. Local to the region that serves them and available
//! whatever the payment mode (the ADR keeps cart reads up during payment trouble).

use rig_http::{Incoming, Reply, Request, StatusCode, json, problem};
use serde_json::{Value, json};
use sqlx::Row;

use super::api::parse_items;
use super::context::Context;
use crate::clock::now_us;
use evidence::time::rfc3339;

pub(super) async fn get_cart(ctx: &Context, cart_id: &str) -> Reply {
    let row = sqlx::query(
            "SELECT cart_id, customer_id, items_json, version, updated_at_us FROM carts WHERE cart_id = $1",
        )
        .bind(cart_id)
        .fetch_optional(&ctx.db.pool)
        .await;
    match row {
        Ok(Some(row)) => match cart_view(&row) {
            Ok(view) => json(StatusCode::OK, &view),
            Err(err) => store_problem(&err),
        },
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such cart",
            Some("cart_id"),
        ),
        Err(err) => store_problem(&err),
    }
}

pub(super) async fn put_cart(ctx: &Context, cart_id: &str, req: Request<Incoming>) -> Reply {
    let config = &ctx.config;
    if cart_id.is_empty() || cart_id.len() > config.checkout.max_id_len {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "cart id must be 1 to max_id_len characters",
            Some("cart_id"),
        );
    }
    let body = match rig_http::read_body(req.into_body(), config.checkout.max_body_bytes).await {
        Ok(body) => body,
        Err(err) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &err.to_string(),
                Some("body"),
            );
        }
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(err) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!(
                    "malformed JSON ({err}); send {{\"customer_id\",\"items\":[{{\"sku\",\"qty\"}}]}}"
                ),
                Some("body"),
            );
        }
    };
    let Some(customer_id) = value
        .get("customer_id")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    else {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "missing or empty",
            Some("customer_id"),
        );
    };
    let items = match parse_items(value.get("items"), config) {
        Ok(items) => items,
        Err(err) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &err.message,
                Some(&err.field),
            );
        }
    };
    let items_json = serde_json::to_string(&items).unwrap_or_default();
    let row = sqlx::query(
            "INSERT INTO carts (cart_id, customer_id, items_json, version, updated_at_us) VALUES ($1, $2, $3, 1, $4) \
             ON CONFLICT (cart_id) DO UPDATE SET customer_id = excluded.customer_id, items_json = excluded.items_json, \
             version = carts.version + 1, updated_at_us = excluded.updated_at_us \
             RETURNING cart_id, customer_id, items_json, version, updated_at_us",
        )
        .bind(cart_id)
        .bind(customer_id)
        .bind(&items_json)
        .bind(now_us())
        .fetch_one(&ctx.db.pool)
        .await;
    match row {
        Ok(row) => match cart_view(&row) {
            Ok(view) => json(StatusCode::OK, &view),
            Err(err) => store_problem(&err),
        },
        Err(err) => store_problem(&err),
    }
}

fn cart_view(row: &sqlx::any::AnyRow) -> Result<Value, sqlx::Error> {
    let items_json: String = row.try_get("items_json")?;
    let updated_at_us: i64 = row.try_get("updated_at_us")?;
    Ok(json!({
        "cart_id": row.try_get::<String, _>("cart_id")?,
        "customer_id": row.try_get::<String, _>("customer_id")?,
        "items": serde_json::from_str::<Value>(&items_json).unwrap_or(Value::Null),
        "version": row.try_get::<i64, _>("version")?,
        "updated_at": rfc3339(updated_at_us),
    }))
}

fn store_problem(err: &sqlx::Error) -> Reply {
    tracing::error!(error = %err, "cart store error");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the cart store is unavailable",
        None,
    )
}
