//! One HTTP/1.1 keep-alive connection per lane, spoken directly on the socket.
//!
//! The generic workload sends the same request over and over, so the request is encoded
//! once (see [`super::HttpWorkload`]) and each exchange is: write those bytes, read the
//! response head into the lane's buffer, parse it with `httparse` (the parser under hyper),
//! then count the body off the socket by its framing (`Content-Length`, chunked, or until
//! close) without keeping it. No per-request allocation, channel or extra task: at 100k
//! requests a second on one core, that is what leaves room for the kernel's share of the
//! work. A connection that breaks, times out, is closed by the peer or says
//! `Connection: close` is dropped, and the lane reconnects for its next arrival.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::response::roundtrip;

/// The lane's read buffer: a response head must fit in it (bodies stream through).
pub(crate) const READ_BUFFER: usize = 16 * 1024;

/// Why an exchange got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Connect,
    Broken,
    Timeout,
}

/// A lane of the HTTP workload: its connection (if open), its reusable timer and buffer.
pub struct HttpLane {
    open: Option<TcpStream>,
    timer: Pin<Box<Sleep>>,
    buf: Box<[u8]>,
}

impl HttpLane {
    pub(crate) fn new(open: Option<TcpStream>) -> Self {
        Self {
            open,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
        }
    }

    /// A connection ready for a request: the lane's own if it is still usable, else a new
    /// one. Returns the moment the request can go out.
    pub(crate) async fn ready(
        &mut self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<Instant, Failure> {
        if let Some(stream) = &self.open {
            if still_open(stream, &mut self.buf) {
                return Ok(Instant::now());
            }
            self.open = None;
        }
        match connect(addr, connect_timeout).await {
            Ok(stream) => {
                self.open = Some(stream);
                Ok(Instant::now())
            }
            Err(_) => Err(Failure::Connect),
        }
    }

    /// Sends `request` on the ready connection and reads the whole response by `deadline`;
    /// returns the status and the body size. A connection that cannot carry another
    /// request afterwards is dropped.
    pub(crate) async fn exchange(
        &mut self,
        request: &[u8],
        head: bool,
        deadline: Instant,
    ) -> Result<(u16, u64), Failure> {
        let Self { open, timer, buf } = self;
        let Some(stream) = open else {
            return Err(Failure::Broken);
        };
        // The timer is moved lazily: it may still hold an earlier exchange's (earlier)
        // deadline, and when it fires before this one's it is moved on, not obeyed. So a
        // lane re-arms its timer about once per timeout, not once per request.
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        let result = {
            let mut answer = pin!(roundtrip(stream, request, head, buf));
            loop {
                tokio::select! {
                    biased;
                    answer = answer.as_mut() => break answer,
                    () = timer.as_mut() => {
                        if Instant::now() >= deadline {
                            break Err(Failure::Timeout);
                        }
                        timer.as_mut().reset(deadline);
                    }
                }
            }
        };
        match result {
            Ok(answer) => {
                if !answer.reusable {
                    *open = None;
                }
                Ok((answer.status, answer.body_bytes))
            }
            Err(failure) => {
                // Broken, or the request may still be on the wire: the connection is unusable.
                *open = None;
                Err(failure)
            }
        }
    }
}

/// Whether an idle connection can carry a request: nothing has arrived on it since the
/// last response (the usual case costs no system call: the socket is simply not readable);
/// if something has, it is the peer's close (or bytes nobody asked for) and it cannot.
fn still_open(stream: &TcpStream, scratch: &mut [u8]) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            matches!(stream.try_read(scratch), Err(err) if err.kind() == ErrorKind::WouldBlock)
        }
    }
}

/// Opens a connection (TCP_NODELAY: small requests must leave at once, not wait for Nagle).
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("no connection within {timeout:?}"))?
        .map_err(|err| err.to_string())?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
