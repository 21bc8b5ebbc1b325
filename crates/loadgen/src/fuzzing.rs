//! Entry points for the fuzz targets (`fuzz/`) and their regression tests: each takes
//! untrusted bytes, and must return without panicking, hanging or allocating without bound
//! whatever the bytes are. They run the real parsers, not copies: the HTTP/1.1 response
//! reader of the generic workload over a scripted in-memory connection, and the `.hlog`
//! merge of `rig report --merge`.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::MergedLog;
use crate::http::lane::READ_BUFFER;
use crate::http::response::roundtrip;

/// Most exchanges one input drives on its connection.
const MAX_EXCHANGES: usize = 64;

/// The response reader: the first byte picks a HEAD request (bit 0) and how many bytes
/// each read returns (1 to 128, so heads and chunk lines split everywhere); the rest is
/// what the server sends. Exchanges go on while the connection stays reusable.
pub fn http_response(data: &[u8]) {
    let Some((&mode, sent)) = data.split_first() else {
        return;
    };
    let mut stream = Scripted::new(sent, 1 + usize::from(mode >> 1));
    let mut buf = vec![0u8; READ_BUFFER];
    for _ in 0..MAX_EXCHANGES {
        let before = stream.at;
        let exchange = roundtrip(
            &mut stream,
            b"GET / HTTP/1.1\r\n\r\n",
            mode & 1 == 1,
            &mut buf,
        );
        let Some(result) = complete(exchange) else {
            panic!("the response reader waited on a connection that never blocks");
        };
        let Ok(answer) = result else {
            return;
        };
        assert!(
            answer.body_bytes <= (stream.at - before) as u64,
            "counted {} body bytes out of {} read",
            answer.body_bytes,
            stream.at - before
        );
        if !answer.reusable || stream.at == sent.len() {
            return;
        }
    }
}

/// The `.hlog` merge: the bytes are one interval log.
pub fn hlog_merge(data: &[u8]) {
    let mut merged = MergedLog::new();
    if merged.add_log("fuzz", data).is_ok() {
        assert!(merged.intervals > 0, "a log merged without an interval");
    }
}

/// Polls a future that never waits (its I/O is in memory) to its end; `None` if it would
/// have waited.
pub(crate) fn complete<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// A connection that answers with `data`, `step` bytes per read, then closes; writes go
/// nowhere.
pub(crate) struct Scripted<'a> {
    data: &'a [u8],
    at: usize,
    step: usize,
}

impl<'a> Scripted<'a> {
    pub(crate) fn new(data: &'a [u8], step: usize) -> Self {
        Self { data, at: 0, step }
    }
}

impl AsyncRead for Scripted<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self
            .step
            .min(buf.remaining())
            .min(self.data.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
