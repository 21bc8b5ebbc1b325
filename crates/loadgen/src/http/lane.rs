//! One HTTP/1.1 keep-alive connection per lane, driven inside the lane's own task.
//!
//! hyper's client connection is normally spawned as a task of its own that talks to the
//! request side over channels: extra task wake-ups on every request. Here the lane polls the
//! connection future together with the request, so the socket, the request and the
//! response all advance in one task: that is most of what makes the generator cheap enough
//! to hold high rates on one core. A connection that breaks, times out or is closed
//! by the peer is dropped, and the lane reconnects for its next arrival.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

type Conn = Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// An open connection: the request side and the connection future to poll alongside.
pub(crate) struct Open {
    sender: SendRequest<Full<Bytes>>,
    connection: Pin<Box<Conn>>,
}

/// Why an exchange got no answer.
pub(crate) enum Failure {
    Connect,
    Broken,
    Timeout,
}

/// A lane of the HTTP workload: its connection (if open) and its reusable timer.
pub struct HttpLane {
    open: Option<Open>,
    timer: Pin<Box<Sleep>>,
}

impl HttpLane {
    pub(crate) fn new(open: Option<Open>) -> Self {
        Self {
            open,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    /// A connection ready for a request: the lane's own if it is still usable, else a new
    /// one. Returns the moment the request can go out.
    pub(crate) async fn ready(
        &mut self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<Instant, Failure> {
        if let Some(open) = &mut self.open {
            // Nothing polls an idle connection, so poll it first: that is how a peer that
            // closed it meanwhile (idle timeout) is noticed before a request is lost on it.
            let usable = tokio::select! {
                biased;
                _ = open.connection.as_mut() => false,
                ready = open.sender.ready() => ready.is_ok(),
            };
            if usable {
                return Ok(Instant::now());
            }
            self.open = None;
        }
        match connect(addr, connect_timeout).await {
            Ok(open) => {
                self.open = Some(open);
                Ok(Instant::now())
            }
            Err(_) => Err(Failure::Connect),
        }
    }

    /// Sends `request` on the ready connection and reads the whole response by `deadline`;
    /// returns the status and the body size. A failed connection is dropped.
    pub(crate) async fn exchange(
        &mut self,
        request: Request<Full<Bytes>>,
        deadline: Instant,
    ) -> Result<(u16, u64), Failure> {
        let Some(open) = &mut self.open else {
            return Err(Failure::Broken);
        };
        self.timer.as_mut().reset(deadline);
        let Open { sender, connection } = open;
        let timer = &mut self.timer;
        let mut connection_done = false;
        let mut first = true;
        let result = {
            let mut response = pin!(send(sender, request));
            poll_fn(|cx| {
                // First pass: queue the request, then let the connection write it. Later passes:
                // the connection first, so a response it reads is taken in the same pass.
                if first {
                    first = false;
                    if let Poll::Ready(answer) = response.as_mut().poll(cx) {
                        return Poll::Ready(answer.map_err(|_| Failure::Broken));
                    }
                    if connection.as_mut().poll(cx).is_ready() {
                        connection_done = true;
                        return Poll::Ready(Err(Failure::Broken));
                    }
                } else {
                    if !connection_done && connection.as_mut().poll(cx).is_ready() {
                        connection_done = true;
                    }
                    if let Poll::Ready(answer) = response.as_mut().poll(cx) {
                        return Poll::Ready(answer.map_err(|_| Failure::Broken));
                    }
                    if connection_done {
                        // Closed without a complete answer.
                        return Poll::Ready(Err(Failure::Broken));
                    }
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(Failure::Timeout));
                }
                Poll::Pending
            })
            .await
        };
        if connection_done {
            // Its future has completed: it must not be polled again.
            self.open = None;
        }
        if result.is_err() {
            // Broken, or the request may still be on the wire: the connection is unusable.
            self.open = None;
        }
        result
    }
}

/// Sends the request and reads the whole body (counting, not keeping, its bytes).
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> hyper::Result<(u16, u64)> {
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            bytes += data.len() as u64;
        }
    }
    Ok((status, bytes))
}

/// Opens a connection (TCP_NODELAY: small requests must leave at once, not wait for Nagle).
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Open, String> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("no connection within {timeout:?}"))?
        .map_err(|err| err.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|err| err.to_string())?;
    Ok(Open {
        sender,
        connection: Box::pin(connection),
    })
}
