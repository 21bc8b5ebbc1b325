//! Replies: JSON bodies, plain text, and problem bodies that name the field and the fix.

use bytes::Bytes;
use hyper::{Response, StatusCode, header};
use serde::Serialize;

use crate::Body;

/// A handler's answer before it becomes a hyper response.
pub type Reply = Response<Body>;

/// A JSON reply with `status`.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Reply {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_type(status, "application/json", Bytes::from(bytes)),
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("could not encode the reply: {err}"),
        ),
    }
}

/// A plain-text reply with `status`.
pub fn text(status: StatusCode, body: &str) -> Reply {
    with_type(
        status,
        "text/plain; charset=utf-8",
        Bytes::copy_from_slice(body.as_bytes()),
    )
}

/// A reply with an explicit content type.
pub fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// Adds `Retry-After` (whole seconds, at least 1) and `retry-after-ms` (the exact wait) to a
/// reply that sheds or refuses for now.
pub fn with_retry_after(mut reply: Reply, wait: std::time::Duration) -> Reply {
    let millis = wait.as_millis().max(1);
    let seconds = millis.div_ceil(1000).max(1);
    let headers = reply.headers_mut();
    if let Ok(value) = seconds.to_string().parse() {
        headers.insert(header::RETRY_AFTER, value);
    }
    if let Ok(value) = millis.to_string().parse() {
        headers.insert("retry-after-ms", value);
    }
    reply
}

/// The body of every error reply: a stable machine-readable `error` code, a sentence for a
/// human, and the request field at fault when there is one.
#[derive(Debug, Serialize)]
pub struct Problem<'a> {
    pub error: &'a str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

/// An error reply: `{"error": code, "message": message, "field": field}`.
pub fn problem(status: StatusCode, error: &str, message: &str, field: Option<&str>) -> Reply {
    json(
        status,
        &Problem {
            error,
            message,
            field,
        },
    )
}
