//! A keep-alive HTTP/1.1 client with a timeout per request and honest error kinds.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a request got no response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No connection could be made: the request never left this process.
    #[error("could not connect to {uri}: {reason}")]
    Connect { uri: String, reason: String },
    /// The request was sent (or may have been) but no full answer came within the timeout.
    #[error("no answer from {uri} within {timeout_ms} ms")]
    Timeout { uri: String, timeout_ms: u64 },
    /// The connection broke after the request may have been sent.
    #[error("request to {uri} failed: {reason}")]
    Broken { uri: String, reason: String },
    /// The request itself could not be built (bad URI or header).
    #[error("bad request for {uri}: {reason}")]
    Invalid { uri: String, reason: String },
}

impl ClientError {
    /// True when the peer may have received and acted on the request: the outcome is unknown.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Broken { .. })
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ClientResponse {
    /// The body decoded as JSON, if it is JSON of that shape.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Cheap to clone; clones share one connection pool.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    /// A pooled client; `connect_timeout` bounds TCP connection set-up.
    pub fn new(connect_timeout: Duration, max_idle_per_host: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.enforce_http(true);
        let inner = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self { inner }
    }

    /// Sends one request and reads the whole response, all within `timeout`.
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<ClientResponse, ClientError> {
        let invalid = |reason: String| ClientError::Invalid {
            uri: uri.to_string(),
            reason,
        };
        let parsed: Uri = uri.parse().map_err(|e| invalid(format!("{e}")))?;
        let mut builder = Request::builder().method(method).uri(parsed);
        let has_body = body.is_some();
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if has_body
            && !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| invalid(e.to_string()))?;
        let exchange = async {
            let response = self.inner.request(request).await.map_err(|err| {
                if err.is_connect() {
                    ClientError::Connect {
                        uri: uri.to_string(),
                        reason: root_cause(&err),
                    }
                } else {
                    ClientError::Broken {
                        uri: uri.to_string(),
                        reason: root_cause(&err),
                    }
                }
            })?;
            let (parts, incoming) = response.into_parts();
            let body = incoming
                .collect()
                .await
                .map_err(|err| ClientError::Broken {
                    uri: uri.to_string(),
                    reason: root_cause(&err),
                })?
                .to_bytes();
            Ok(ClientResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                uri: uri.to_string(),
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
