//! A lean HTTP/1.1 client for customers: one keep-alive pool per target, shared by every
//! lane, so the connections in use follow the requests really in flight (a double-click
//! needs two at once) rather than the number of lanes, up to a cap per target.
//!
//! A pooled connection carries its hyper connection future, and whoever borrows it polls
//! that future alongside its own request (as the generic lane does): no connection task,
//! no hand-off between tasks per request, and a request that times out simply drops its
//! connection, closing the socket. Errors keep the distinction the history needs: a
//! request that never left ([`Failure::Connect`]) versus one that may have reached the
//! peer ([`Failure::Broken`], [`Failure::Timeout`]).

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::checkout::answer::{AnswerBody, RetryAfter};
use crate::{HttpSpec, LoadgenError};

/// Largest answer body read; a bigger one is an error (the contract's bodies are tiny).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection (or one that closed before the request was written): never sent.
    Connect,
    /// The connection broke after the request may have been written.
    Broken,
    /// No whole answer by the deadline.
    Timeout,
}

/// A whole answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// From `Retry-After-Ms` / `Retry-After`.
    pub retry_after: RetryAfter,
    /// The JSON fields the client reads (`None` when the body is not JSON of that shape).
    pub body: Option<AnswerBody>,
    /// The body as received.
    pub raw: Bytes,
}

/// An open connection: its request side and the connection future to poll with it.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    connection: Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
}

/// One target (an entry region): where it is and its idle connections.
pub struct Pool {
    /// The URL as given, for messages and the summary.
    pub url: String,
    addr: SocketAddr,
    host: HeaderValue,
    connect_timeout: Duration,
    /// Idle connections, most recently used last (reused first, so the pool stays as
    /// small as the concurrency really needs).
    idle: Mutex<Vec<Conn>>,
    /// One permit per connection allowed: requests beyond it wait, in order.
    slots: Semaphore,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("url", &self.url)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Checks `url` (plain `http://host:port`, loopback unless `allow_remote`), resolves it
    /// and opens one connection, so an unreachable target is found before the run.
    pub async fn open(
        url: &str,
        connections: usize,
        connect_timeout: Duration,
        allow_remote: bool,
    ) -> Result<Self, LoadgenError> {
        let fix = "give a base URL such as http://127.0.0.1:8081";
        let bad = |problem: &str| LoadgenError::invalid("--target", url, problem, fix);
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad(
                "the URL needs the http:// scheme (plain HTTP/1.1 only)",
            ));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad(
                "give the region's base URL only: the workload adds /v1/checkout and /v1/orders",
            ));
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let authority = uri.authority().map_or(host, |a| a.as_str());
        let host_header =
            HeaderValue::from_str(authority).map_err(|_| bad("the host is not a valid header"))?;
        let mut spec = HttpSpec::get(url);
        spec.connect_timeout = connect_timeout;
        spec.allow_remote = allow_remote;
        let addr = crate::http::resolve(&spec, host, port).await?;
        let first =
            connect(addr, connect_timeout)
                .await
                .map_err(|_| LoadgenError::Unreachable {
                    url: url.to_string(),
                    reason: format!("no connection to {addr} within {connect_timeout:?}"),
                })?;
        Ok(Self {
            url: url.to_string(),
            addr,
            host: host_header,
            connect_timeout,
            idle: Mutex::new(vec![first]),
            slots: Semaphore::new(connections),
        })
    }

    /// `method path` with the optional `Idempotency-Key` and JSON body, and the request's
    /// W3C `traceparent`; the whole answer by
    /// `deadline`, connecting first if no idle connection is usable.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Bytes>,
        traceparent: Option<&str>,
        deadline: Instant,
    ) -> Result<Reply, Failure> {
        let build = || -> Result<Request<Full<Bytes>>, Failure> {
            let mut request = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(HOST, self.host.clone());
            if let Some(traceparent) = traceparent {
                request = request.header(evidence::trace::TRACEPARENT, traceparent);
            }
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            if body.is_some() {
                request = request.header(CONTENT_TYPE, "application/json");
            }
            request
                .body(Full::new(body.cloned().unwrap_or_default()))
                .map_err(|_| Failure::Connect)
        };
        match tokio::time::timeout_at(deadline, self.exchange(build)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout),
        }
    }

    async fn exchange(
        &self,
        build: impl Fn() -> Result<Request<Full<Bytes>>, Failure>,
    ) -> Result<Reply, Failure> {
        // Held until the connection is back in the pool (or dropped): at most `connections`
        // requests, and so connections, at once. The semaphore is never closed.
        let Ok(_slot) = self.slots.acquire().await else {
            return Err(Failure::Connect);
        };
        let mut pooled = self.take().await;
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(conn) => conn,
                None => connect(self.addr, self.connect_timeout).await?,
            };
            match drive(&mut conn, build()?).await {
                Ok(reply) => {
                    self.idle
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(conn);
                    return Ok(reply);
                }
                // The peer closed an idle connection before the request was written: it
                // never left, so sending it on a fresh connection is not a retry.
                Err(Drive::NotSent) if reused => continue,
                Err(Drive::NotSent) => return Err(Failure::Connect),
                Err(Drive::Broken) => return Err(Failure::Broken),
            }
        }
    }

    /// The most recently used idle connection that is still open and ready.
    async fn take(&self) -> Option<Conn> {
        loop {
            let mut conn = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
            // Nothing polls an idle connection, so poll it first: that is how a peer that
            // closed it meanwhile is noticed before a request is lost on it.
            let usable = tokio::select! {
                biased;
                _ = conn.connection.as_mut() => false,
                ready = conn.sender.ready() => ready.is_ok(),
            };
            if usable {
                return Some(conn);
            }
        }
    }
}

/// Why driving a request on a connection failed.
enum Drive {
    /// The connection closed before the request was written.
    NotSent,
    /// It broke (or closed) after the request may have been written.
    Broken,
}

/// Sends `request` on `conn` and reads the whole answer, polling the connection future in
/// the same task. On error the connection must be dropped.
async fn drive(conn: &mut Conn, request: Request<Full<Bytes>>) -> Result<Reply, Drive> {
    let Conn { sender, connection } = conn;
    let mut answer = pin!(read(sender, request));
    let mut connection_done = false;
    poll_fn(|cx| {
        // The answer first (it may complete from what the connection read last time), then
        // the connection (writing the request, reading the answer), then the answer again.
        if let Poll::Ready(result) = answer.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        if !connection_done && connection.as_mut().poll(cx).is_ready() {
            connection_done = true;
        }
        if let Poll::Ready(result) = answer.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        if connection_done {
            return Poll::Ready(Err(Drive::Broken));
        }
        Poll::Pending
    })
    .await
}

/// The request side of [`drive`]: send, then read status, headers and the bounded body.
async fn read(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<Reply, Drive> {
    let response = sender.send_request(request).await.map_err(|err| {
        if err.is_canceled() {
            Drive::NotSent
        } else {
            Drive::Broken
        }
    })?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let retry_after = RetryAfter::parse(
        header("retry-after-ms").as_deref(),
        header("retry-after").as_deref(),
    );
    let bytes = Limited::new(response.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|_| Drive::Broken)?
        .to_bytes();
    Ok(Reply {
        status,
        retry_after,
        body: serde_json::from_slice(&bytes).ok(),
        raw: bytes,
    })
}

/// Opens a connection (TCP_NODELAY: small requests must leave at once, not wait for Nagle).
async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, Failure> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Failure::Connect)?
        .map_err(|_| Failure::Connect)?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Failure::Connect)?;
    Ok(Conn {
        sender,
        connection: Box::pin(connection),
    })
}
