//! The generic HTTP workload: every arrival is one request (method, URL, headers, body) on
//! a keep-alive connection, with a timeout per request. Statuses map to outcomes by class:
//! 2xx/3xx `ok`, 429/503 `rejected`, other 4xx/5xx `failed`; timeouts and connection
//! errors are `unknown` (the request may have been processed).
//!
//! The request never changes, so it is encoded once, at connect time, and each lane writes
//! those bytes on its connection (see `lane`).

pub(crate) mod lane;
pub(crate) mod response;

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Uri};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::{Completion, Dispatch, LoadgenError, Outcome, Workload};
use lane::Failure;
pub use lane::HttpLane;

/// What to request and how. Checked by [`HttpWorkload::connect`].
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    /// `http://host[:port][/path][?query]`.
    pub url: String,
    pub method: String,
    /// `Name: value` lines.
    pub headers: Vec<String>,
    pub body: Bytes,
    /// Per request, from the moment it is sent until the whole response is read.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Keep-alive connections, one per lane (each carries one request at a time).
    pub connections: usize,
    /// Load a host that is not a loopback address.
    pub allow_remote: bool,
}

impl HttpSpec {
    /// `GET url` with the defaults: 50 connections, 10 s timeout, loopback only.
    pub fn get(url: &str) -> Self {
        Self {
            url: url.to_string(),
            method: "GET".into(),
            headers: Vec::new(),
            body: Bytes::new(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            connections: 50,
            allow_remote: false,
        }
    }
}

/// Maps a final HTTP status to an outcome.
pub fn classify_status(status: u16) -> Outcome {
    match status {
        429 | 503 => Outcome::Rejected,
        400..=599 => Outcome::Failed,
        _ => Outcome::Ok,
    }
}

/// The generic HTTP workload, connected.
pub struct HttpWorkload {
    addr: SocketAddr,
    connect_timeout: Duration,
    connections: usize,
    /// Connections opened before the run, handed to the lanes as they start.
    opened: Mutex<Vec<TcpStream>>,
    /// The whole request as it goes on the wire.
    request: Bytes,
    /// A HEAD request: responses carry no body whatever their headers say.
    head: bool,
    timeout: Duration,
    description: serde_json::Value,
}

impl std::fmt::Debug for HttpWorkload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpWorkload")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl HttpWorkload {
    /// Checks the spec, resolves the host (refusing non-loopback addresses unless
    /// `allow_remote`), and opens every connection, all before the run starts.
    pub async fn connect(spec: &HttpSpec) -> Result<Self, LoadgenError> {
        let url_fix = "give a URL such as http://127.0.0.1:8080/path";
        let uri: Uri = spec
            .url
            .parse()
            .map_err(|err| LoadgenError::invalid("url", &spec.url, format!("{err}"), url_fix))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(LoadgenError::invalid(
                    "url",
                    &spec.url,
                    "https is not supported (plain HTTP/1.1 only)",
                    "use http://, or load a plain-HTTP port behind the TLS terminator",
                ));
            }
            _ => {
                return Err(LoadgenError::invalid(
                    "url",
                    &spec.url,
                    "the URL needs the http:// scheme",
                    url_fix,
                ));
            }
        }
        let host = uri
            .host()
            .ok_or_else(|| LoadgenError::invalid("url", &spec.url, "no host", url_fix))?;
        let port = uri.port_u16().unwrap_or(80);
        let method = Method::from_bytes(spec.method.as_bytes()).map_err(|_| {
            LoadgenError::invalid(
                "--method",
                &spec.method,
                "not an HTTP method",
                "use GET, POST, PUT, ...",
            )
        })?;
        if spec.connections == 0 || spec.connections > 100_000 {
            return Err(LoadgenError::invalid(
                "--connections",
                spec.connections,
                "must be between 1 and 100000",
                "use e.g. --connections 50",
            ));
        }
        let mut headers = HeaderMap::new();
        let authority = uri.authority().map_or(host, |a| a.as_str());
        headers.insert(
            hyper::header::HOST,
            HeaderValue::from_str(authority).map_err(|_| {
                LoadgenError::invalid("url", &spec.url, "the host is not a valid header", url_fix)
            })?,
        );
        for line in &spec.headers {
            let (name, value) = parse_header(line)?;
            if name == hyper::header::CONTENT_LENGTH || name == hyper::header::TRANSFER_ENCODING {
                return Err(LoadgenError::invalid(
                    "--header",
                    line,
                    "the body's framing is set from --body",
                    "remove this header: Content-Length is sent for the body as given",
                ));
            }
            headers.append(name, value);
        }
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse::<Uri>()
            .map_err(|err| LoadgenError::invalid("url", &spec.url, format!("{err}"), url_fix))?;

        let addr = resolve(spec, host, port).await?;
        // Every connection is opened before the run, so set-up cost is not measured as
        // latency and an unreachable target is found before the clock starts.
        let mut opened = Vec::with_capacity(spec.connections);
        for _ in 0..spec.connections {
            let open = lane::connect(addr, spec.connect_timeout)
                .await
                .map_err(|reason| LoadgenError::Unreachable {
                    url: spec.url.clone(),
                    reason,
                })?;
            opened.push(open);
        }
        let description = serde_json::json!({
            "kind": "http",
            "method": method.as_str(),
            "url": spec.url,
            "address": addr.to_string(),
            "header_names": headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            "body_bytes": spec.body.len(),
            "connections": spec.connections,
            "timeout_seconds": spec.timeout.as_secs_f64(),
        });
        Ok(Self {
            addr,
            connect_timeout: spec.connect_timeout,
            connections: spec.connections,
            opened: Mutex::new(opened),
            request: encode_request(&method, &path, &headers, &spec.body),
            head: method == Method::HEAD,
            timeout: spec.timeout,
            description,
        })
    }
}

/// The request as HTTP/1.1 bytes: request line, headers, `Content-Length` when there is a
/// body (or the method usually has one), the body.
fn encode_request(method: &Method, path: &Uri, headers: &HeaderMap, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || [Method::POST, Method::PUT, Method::PATCH].contains(method) {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Bytes::from(out)
}

impl Workload for HttpWorkload {
    type Lane = HttpLane;

    fn op(&self) -> &'static str {
        "http"
    }

    fn lanes(&self) -> usize {
        self.connections
    }

    fn lane(&self, _index: usize) -> HttpLane {
        let open = self.opened.lock().unwrap_or_else(|p| p.into_inner()).pop();
        HttpLane::new(open)
    }

    async fn perform(&self, lane: &mut HttpLane, _dispatch: Dispatch) -> Completion {
        let (sent_at, answer) = match lane.ready(self.addr, self.connect_timeout).await {
            Ok(sent_at) => {
                let answer = lane
                    .exchange(&self.request, self.head, sent_at + self.timeout)
                    .await;
                (sent_at, answer)
            }
            Err(failure) => (Instant::now(), Err(failure)),
        };
        let finished_at = Instant::now();
        match answer {
            Ok((status, bytes)) => Completion {
                op: "http",
                outcome: classify_status(status),
                sent_at,
                finished_at,
                status: Some(status),
                error: None,
                bytes,
            },
            Err(failure) => Completion {
                op: "http",
                outcome: Outcome::Unknown,
                sent_at,
                finished_at,
                status: None,
                error: Some(match failure {
                    Failure::Connect => "connect",
                    Failure::Broken => "broken",
                    Failure::Timeout => "timeout",
                }),
                bytes: 0,
            },
        }
    }

    fn describe(&self) -> serde_json::Value {
        self.description.clone()
    }
}

fn parse_header(line: &str) -> Result<(HeaderName, HeaderValue), LoadgenError> {
    let fix = "write a header as 'Name: value', e.g. --header 'Content-Type: application/json'";
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| LoadgenError::invalid("--header", line, "no ':'", fix))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| LoadgenError::invalid("--header", line, "not a valid header name", fix))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| LoadgenError::invalid("--header", line, "not a valid header value", fix))?;
    Ok((name, value))
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The address to connect to: the first the host resolves to (every one of them must be
/// loopback unless remote load is allowed, so a name cannot sneak past the check).
pub(crate) async fn resolve(
    spec: &HttpSpec,
    host: &str,
    port: u16,
) -> Result<SocketAddr, LoadgenError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let lookup = tokio::time::timeout(spec.connect_timeout, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| LoadgenError::Unreachable {
            url: spec.url.clone(),
            reason: format!(
                "resolving {host} took longer than {:?}",
                spec.connect_timeout
            ),
        })?
        .map_err(|err| LoadgenError::Unreachable {
            url: spec.url.clone(),
            reason: format!("cannot resolve {host}: {err}"),
        })?;
    let addrs: Vec<SocketAddr> = lookup.collect();
    if !spec.allow_remote
        && let Some(remote) = addrs.iter().find(|a| !is_loopback(a.ip()))
    {
        return Err(LoadgenError::NotLoopback {
            url: spec.url.clone(),
            host: host.to_string(),
            address: remote.ip().to_string(),
        });
    }
    // Prefer IPv4 loopback: servers often bind 127.0.0.1 only while `localhost` lists ::1 first.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| LoadgenError::Unreachable {
            url: spec.url.clone(),
            reason: format!("{host} has no address"),
        })
}
