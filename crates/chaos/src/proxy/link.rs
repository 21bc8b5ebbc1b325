//! One direction of one proxied connection: read from one socket, write to the other.
//!
//! Two modes. With no toxic acting on the link, it is a plain copy through one reusable
//! buffer: no allocation, no lock, one atomic load per chunk. With toxics, each chunk is
//! copied once into a queue with the instant it is due (see [`super::chain`]) and written when
//! due, while reading goes on up to a bound.
//!
//! A toxic change or a close request bumps the connection's control word and wakes both
//! directions through a lock-free waker slot, so changes reach idle keep-alive connections at
//! once, without the data path ever polling a lock.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::Poll;

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

use super::Shared;
use super::chain::Chain;
use crate::toxics::CloseMode;
use crate::toxics::{Effects, Item, Stream, Timed};

/// Bytes read per system call; one buffer per direction, allocated once.
const BUFFER_BYTES: usize = 16 * 1024;
/// How much a toxic link may hold back before it stops reading (then TCP pushes back).
const QUEUE_MAX_ITEMS: usize = 1024;
const QUEUE_MAX_BYTES: usize = 4 * 1024 * 1024;

/// The shared control block of one proxied connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: u64,
    /// Bumped on every toxic change and close request.
    control: AtomicU64,
    /// 0 = open, else a [`CloseMode`] as u8.
    close: AtomicU8,
    wakers: [AtomicWaker; 2],
}

impl Conn {
    pub(crate) fn new(id: u64) -> Self {
        Self {
            id,
            control: AtomicU64::new(0),
            close: AtomicU8::new(0),
            wakers: [AtomicWaker::new(), AtomicWaker::new()],
        }
    }

    /// Tells both directions to look at the toxic set again.
    pub(crate) fn poke(&self) {
        self.control.fetch_add(1, Ordering::AcqRel);
        for waker in &self.wakers {
            waker.wake();
        }
    }

    pub(crate) fn request_close(&self, mode: CloseMode) {
        self.close.fetch_max(mode as u8, Ordering::AcqRel);
        self.poke();
    }

    pub(crate) fn close_mode(&self) -> Option<CloseMode> {
        match self.close.load(Ordering::Acquire) {
            0 => None,
            1 => Some(CloseMode::Close),
            _ => Some(CloseMode::Reset),
        }
    }

    pub(crate) fn control(&self) -> u64 {
        self.control.load(Ordering::Acquire)
    }

    /// Resolves with the new control word once it differs from `seen`.
    pub(crate) fn changed(&self, stream: Stream, seen: u64) -> impl Future<Output = u64> + '_ {
        let slot = &self.wakers[stream.index()];
        std::future::poll_fn(move |cx| {
            let now = self.control.load(Ordering::Acquire);
            if now != seen {
                return Poll::Ready(now);
            }
            slot.register(cx.waker());
            // Re-check: a poke between the load and the registration would otherwise be lost.
            let now = self.control.load(Ordering::Acquire);
            if now != seen {
                Poll::Ready(now)
            } else {
                Poll::Pending
            }
        })
    }
}

/// How a direction ended.
enum End {
    /// The sender closed its side and the close was passed on.
    Eof,
    /// The connection is being closed (by a toxic, the API, or an I/O error).
    Closed,
}

/// Runs one direction until it ends; resets both sockets if the connection is reset.
pub(crate) async fn pump(
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    stream: Stream,
    mut src: OwnedReadHalf,
    mut dst: OwnedWriteHalf,
    link_seed: u64,
) {
    let mut link = Link {
        conn: &conn,
        shared: &shared,
        stream,
        link_seed,
        seen: conn.control(),
        chain: Chain::default(),
        effects: Effects::default(),
        queue: VecDeque::new(),
        queued_bytes: 0,
        front_written: 0,
        src_done: false,
    };
    link.reload();
    let _ = link.run(&mut src, &mut dst).await;
    if conn.close_mode() == Some(CloseMode::Reset) {
        // A zero linger makes the final close send RST instead of FIN, on both sockets; the
        // write half must not send its usual FIN on drop, or the peer would see a clean end.
        let _ = src.as_ref().set_zero_linger();
        let _ = dst.as_ref().set_zero_linger();
        dst.forget();
    }
}

struct Link<'a> {
    conn: &'a Conn,
    shared: &'a Shared,
    stream: Stream,
    link_seed: u64,
    seen: u64,
    chain: Chain,
    effects: Effects,
    queue: VecDeque<Timed>,
    queued_bytes: usize,
    front_written: usize,
    src_done: bool,
}

impl Link<'_> {
    /// Picks up the proxy's current toxics for this direction.
    fn reload(&mut self) {
        let toxics = self.shared.toxics();
        let stream = self.stream;
        self.chain.rebuild(
            toxics.iter().filter(|e| e.spec.stream == stream),
            self.link_seed,
            Instant::now(),
            &mut self.effects,
        );
    }

    async fn run(&mut self, src: &mut OwnedReadHalf, dst: &mut OwnedWriteHalf) -> End {
        let mut buffer = vec![0u8; BUFFER_BYTES];
        loop {
            if self.conn.close_mode().is_some() {
                return End::Closed;
            }
            if let Some(mode) = self.effects.close_now.take() {
                self.conn.request_close(mode);
                return End::Closed;
            }
            let step = if self.chain.is_passthrough()
                && self.queue.is_empty()
                && !self.effects.close_after_flush
            {
                self.copy(src, dst, &mut buffer).await
            } else {
                self.toxic_step(src, dst, &mut buffer).await
            };
            match step {
                Step::Continue => {}
                Step::Control(now) => {
                    self.seen = now;
                    if self.conn.close_mode().is_none() {
                        self.reload();
                    }
                }
                Step::End(end) => return end,
            }
        }
    }

    /// The plain copy: read a chunk, write it all, repeat, until the control word moves.
    async fn copy(
        &mut self,
        src: &mut OwnedReadHalf,
        dst: &mut OwnedWriteHalf,
        buffer: &mut [u8],
    ) -> Step {
        let conn = self.conn;
        loop {
            let read = tokio::select! {
                biased;
                now = conn.changed(self.stream, self.seen) => return Step::Control(now),
                read = src.read(buffer) => read,
            };
            let n = match read {
                Ok(0) => {
                    let _ = dst.shutdown().await;
                    return Step::End(End::Eof);
                }
                Ok(n) => n,
                Err(err) => return self.fail(&err),
            };
            // A toxic change waits for this chunk to be written; a close does not.
            let mut control = None;
            let mut written = 0;
            while written < n {
                tokio::select! {
                    biased;
                    now = conn.changed(self.stream, self.seen), if control.is_none() => {
                        if conn.close_mode().is_some() {
                            return Step::Control(now);
                        }
                        control = Some(now);
                        self.seen = now;
                    }
                    wrote = dst.write(&buffer[written..n]) => match wrote {
                        Ok(0) => return self.fail(&io::ErrorKind::WriteZero.into()),
                        Ok(k) => written += k,
                        Err(err) => return self.fail(&err),
                    },
                }
            }
            if let Some(now) = control {
                return Step::Control(now);
            }
        }
    }

    /// One event of the toxic path: a control change, a write of a due piece, a read, or a
    /// toxic's own deadline.
    async fn toxic_step(
        &mut self,
        src: &mut OwnedReadHalf,
        dst: &mut OwnedWriteHalf,
        buffer: &mut [u8],
    ) -> Step {
        let now = Instant::now();
        self.chain.fire(now, &mut self.effects);
        if self.effects.close_now.is_some() {
            return Step::Continue;
        }
        let front_due = self.queue.front().map(|t| t.at);
        if front_due.is_none() {
            if self.effects.close_after_flush {
                self.conn.request_close(CloseMode::Close);
                return Step::End(End::Closed);
            }
            if self.src_done && self.chain.is_passthrough() {
                // Nothing queued, nothing more to read, end of stream already passed on.
                return Step::End(End::Eof);
            }
        }
        let front_ready = front_due.is_some_and(|due| due <= now);
        if front_ready && matches!(self.queue.front().map(|t| &t.item), Some(Item::Eof)) {
            self.queue.pop_front();
            let _ = dst.shutdown().await;
            return Step::End(End::Eof);
        }
        let can_read = !self.src_done
            && !self.effects.close_after_flush
            && self.queue.len() < QUEUE_MAX_ITEMS
            && self.queued_bytes < QUEUE_MAX_BYTES;
        let wake_at = [
            front_due.filter(|_| !front_ready),
            self.chain.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        let front: Bytes = match self.queue.front().map(|t| &t.item) {
            Some(Item::Data(bytes)) if front_ready => bytes.slice(self.front_written..),
            _ => Bytes::new(),
        };
        let conn = self.conn;
        tokio::select! {
            biased;
            now = conn.changed(self.stream, self.seen) => Step::Control(now),
            wrote = dst.write(&front), if front_ready => match wrote {
                Ok(0) => self.fail(&io::ErrorKind::WriteZero.into()),
                Ok(k) if k == front.len() => {
                    // The whole piece is out.
                    if let Some(Timed { item: Item::Data(bytes), .. }) = self.queue.pop_front() {
                        self.queued_bytes -= bytes.len();
                    }
                    self.front_written = 0;
                    Step::Continue
                }
                Ok(k) => {
                    self.front_written += k;
                    Step::Continue
                }
                Err(err) => self.fail(&err),
            },
            read = src.read(buffer), if can_read => {
                let at = Instant::now();
                match read {
                    Ok(0) => {
                        self.src_done = true;
                        self.push(Timed { at, item: Item::Eof });
                        Step::Continue
                    }
                    Ok(n) => {
                        let data = Bytes::copy_from_slice(&buffer[..n]);
                        self.push(Timed { at, item: Item::Data(data) });
                        Step::Continue
                    }
                    Err(err) => self.fail(&err),
                }
            }
            () = sleep_until(wake_at), if wake_at.is_some() => Step::Continue,
        }
    }

    fn push(&mut self, input: Timed) {
        let before = self.queue.len();
        self.chain.push(input, &mut self.queue, &mut self.effects);
        for piece in self.queue.iter().skip(before) {
            if let Item::Data(bytes) = &piece.item {
                self.queued_bytes += bytes.len();
            }
        }
    }

    /// An I/O error ends the whole connection; a reset from one peer is passed on as a reset.
    fn fail(&self, err: &io::Error) -> Step {
        let mode = if err.kind() == io::ErrorKind::ConnectionReset {
            CloseMode::Reset
        } else {
            CloseMode::Close
        };
        self.conn.request_close(mode);
        Step::End(End::Closed)
    }
}

enum Step {
    Continue,
    Control(u64),
    End(End),
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}
