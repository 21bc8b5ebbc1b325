//! The HTTP API of the embedded server: Toxiproxy 2.x's routes, JSON shapes and status codes,
//! so Toxiproxy clients (and `toxiproxy-cli`) drive it unchanged.
//!
//! | route | methods |
//! |---|---|
//! | `/proxies` | GET (map by name), POST (create, 201; 409 if the name exists) |
//! | `/populate` | POST (create or replace many, 201 `{"proxies": [...]}`) |
//! | `/proxies/{proxy}` | GET, POST or PATCH (update, incl. `enabled`), DELETE (204) |
//! | `/proxies/{proxy}/toxics` | GET (array), POST (create, 200; 409 on a duplicate name) |
//! | `/proxies/{proxy}/toxics/{toxic}` | GET, POST or PATCH (attributes, toxicity), DELETE (204) |
//! | `/reset` | POST (enable every proxy, remove every toxic; 204) |
//! | `/version` | GET `{"version": ...}` |
//!
//! Errors are `{"error": message, "status": code}` plus a newline, as `text/plain;
//! charset=utf-8` (Toxiproxy writes them with Go's `http.Error`). Browsers (a `Mozilla/` user
//! agent) get 403, as in Toxiproxy, so a web page cannot reconfigure the proxy behind the
//! user's back.
//!
//! The path is percent-decoded before it is split, as Go's router sees it: a proxy named
//! `my proxy` is `/proxies/my%20proxy`, and a malformed escape (`a%b`) is 400.

use std::sync::Arc;

use bytes::Bytes;
use rig_http::{Body, Incoming, Method, Reply, Request, Response, StatusCode, header};

use crate::proxy::collection::{ApiError, Collection};

/// What `/version` reports: the Toxiproxy API version this server follows, tagged as ours.
pub const VERSION: &str = "2.12.0+rig";

/// Largest request body the API reads.
const BODY_LIMIT_BYTES: usize = 1024 * 1024;

pub(crate) async fn handle(collection: Arc<Collection>, request: Request<Incoming>) -> Reply {
    let from_browser = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("Mozilla/"));
    if from_browser {
        return rig_http::text(StatusCode::FORBIDDEN, "User agent not allowed\n");
    }
    let method = request.method().clone();
    let Some(path) = percent_decode(request.uri().path()) else {
        return rig_http::text(StatusCode::BAD_REQUEST, "400 Bad Request");
    };
    let body = match rig_http::read_body(request.into_body(), BODY_LIMIT_BYTES).await {
        Ok(body) => body,
        Err(err) => {
            return error(&ApiError {
                message: format!("bad request body: {err}"),
                status: 400,
            });
        }
    };
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let c = &collection;
    match (segments.as_slice(), &method) {
        (["reset"], &Method::POST) => empty_or(c.reset().await),
        (["version"], &Method::GET) => {
            rig_http::json(StatusCode::OK, &serde_json::json!({ "version": VERSION }))
        }
        (["populate"], &Method::POST) => {
            let (proxies, err) = c.populate(&body).await;
            // Serialized directly (a toxicity of 0.3 stays 0.3); an empty list and an error
            // are `null`, as Toxiproxy answers.
            match err {
                None => rig_http::json(
                    StatusCode::CREATED,
                    &Populated {
                        error: None,
                        proxies: (!proxies.is_empty()).then_some(proxies),
                    },
                ),
                Some(err) => error_text(
                    status(err.status),
                    &Populated {
                        error: Some(err),
                        proxies: None,
                    },
                ),
            }
        }
        (["proxies"], &Method::GET) => rig_http::json(StatusCode::OK, &c.list().await),
        (["proxies"], &Method::POST) => json_or(StatusCode::CREATED, c.create(&body).await),
        (["proxies", proxy], m) => match *m {
            Method::GET => json_or(StatusCode::OK, c.get(proxy).await),
            Method::POST | Method::PATCH => json_or(StatusCode::OK, c.update(proxy, &body).await),
            Method::DELETE => empty_or(c.delete(proxy).await),
            _ => not_allowed(),
        },
        (["proxies", proxy, "toxics"], m) => match *m {
            Method::GET => json_or(StatusCode::OK, c.toxics(proxy).await),
            Method::POST => json_or(StatusCode::OK, c.add_toxic(proxy, &body).await),
            _ => not_allowed(),
        },
        (["proxies", proxy, "toxics", toxic], m) => match *m {
            Method::GET => json_or(StatusCode::OK, c.get_toxic(proxy, toxic).await),
            Method::POST | Method::PATCH => {
                json_or(StatusCode::OK, c.update_toxic(proxy, toxic, &body).await)
            }
            Method::DELETE => empty_or(c.remove_toxic(proxy, toxic).await),
            _ => not_allowed(),
        },
        (["reset" | "version" | "populate" | "proxies"], _) => not_allowed(),
        _ => rig_http::text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

/// The reply of `/populate`.
#[derive(serde::Serialize)]
struct Populated {
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    error: Option<ApiError>,
    proxies: Option<Vec<crate::proxy::collection::ProxyJson>>,
}

/// Percent-decodes a path; `None` for a malformed escape (`%` not followed by two hex digits).
pub(crate) fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn error(err: &ApiError) -> Reply {
    error_text(status(err.status), err)
}

/// An error as Go's `http.Error` writes one: the JSON text and a newline, as plain text.
fn error_text<T: serde::Serialize>(code: StatusCode, value: &T) -> Reply {
    let mut text = serde_json::to_string(value).unwrap_or_default();
    text.push('\n');
    let mut reply = rig_http::text(code, &text);
    reply.headers_mut().insert(
        header::HeaderName::from_static("x-content-type-options"),
        header::HeaderValue::from_static("nosniff"),
    );
    reply
}

fn json_or<T: serde::Serialize>(ok: StatusCode, result: Result<T, ApiError>) -> Reply {
    match result {
        Ok(value) => rig_http::json(ok, &value),
        Err(err) => error(&err),
    }
}

fn empty_or(result: Result<(), ApiError>) -> Reply {
    match result {
        Ok(()) => {
            let mut response = Response::new(Body::new(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Err(err) => error(&err),
    }
}

fn not_allowed() -> Reply {
    let mut response = Response::new(Body::new(Bytes::new()));
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}
