//! One exchange on an open connection, read by the response's own framing: write the
//! encoded request, parse the head with `httparse` (interim 1xx heads skipped), then count
//! the body off the socket (`Content-Length`, chunked with extensions and trailers, or until
//! close) without keeping it.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::lane::Failure;

/// Most header lines a response head may have.
pub(crate) const MAX_HEADERS: usize = 64;
/// Longest chunk-size or trailer line accepted in a chunked body.
pub(crate) const MAX_CHUNK_LINE: usize = 4096;

/// A complete response.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body_bytes: u64,
    /// The connection may carry the next request.
    pub(crate) reusable: bool,
}

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// Bytes the head took.
    len: usize,
    status: u16,
    framing: Framing,
    /// The server lets the connection stay open after this response.
    keep_alive: bool,
}

/// One exchange on an open connection: write the request, read the head, count the body.
/// Generic over the stream so the fuzz target can feed it bytes without a socket.
pub(crate) async fn roundtrip<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
    head_request: bool,
    buf: &mut [u8],
) -> Result<Answer, Failure> {
    stream
        .write_all(request)
        .await
        .map_err(|_| Failure::Broken)?;
    let mut filled = 0;
    let head = 'head: loop {
        while let Some(head) = parse_head(&buf[..filled], head_request)? {
            if !(100..200).contains(&head.status) {
                break 'head head;
            }
            // An interim (1xx) response precedes the real one: skip it.
            buf.copy_within(head.len..filled, 0);
            filled -= head.len;
        }
        // (A head larger than the buffer is not something a load target sends.)
        filled = read_more(stream, buf, filled).await?;
    };
    let (body_bytes, clean) = match head.framing {
        Framing::Length(length) => read_length(stream, buf, head.len, filled, length).await?,
        Framing::Chunked => read_chunked(stream, buf, head.len, filled).await?,
        Framing::UntilClose => (
            read_until_close(stream, buf, head.len, filled).await?,
            false,
        ),
    };
    Ok(Answer {
        status: head.status,
        body_bytes,
        reusable: clean && head.keep_alive && head.framing != Framing::UntilClose,
    })
}

/// Parses a response head at the start of `bytes`: `None` if incomplete.
fn parse_head(bytes: &[u8], head_request: bool) -> Result<Option<Head>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Failure::Broken),
    };
    let status = response.code.ok_or(Failure::Broken)?;
    if status == 101 {
        // A protocol switch: the connection no longer speaks HTTP/1.1.
        return Err(Failure::Broken);
    }
    let mut keep_alive = response.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    for header in response.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(Failure::Broken)?;
            if length.is_some_and(|seen| seen != value) {
                return Err(Failure::Broken);
            }
            length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked must be the last coding; anything else is read until close.
            transfer_encoding = true;
            chunked = last_token(header.value).eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let framing = if head_request || status == 204 || status == 304 || status < 200 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if transfer_encoding {
        Framing::UntilClose
    } else if let Some(length) = length {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    };
    Ok(Some(Head {
        len,
        status,
        framing,
        keep_alive,
    }))
}

fn last_token(value: &[u8]) -> &[u8] {
    value
        .rsplit(|&b| b == b',')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}

/// Reads a body of `length` bytes, of which `buf[start..filled]` already arrived. Returns
/// its size and whether nothing followed it (bytes after a response nobody asked for make
/// the connection unusable).
async fn read_length<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    start: usize,
    filled: usize,
    length: u64,
) -> Result<(u64, bool), Failure> {
    let have = (filled - start) as u64;
    if have >= length {
        return Ok((length, have == length));
    }
    let mut left = length - have;
    while left > 0 {
        let n = stream.read(buf).await.map_err(|_| Failure::Broken)? as u64;
        if n == 0 {
            return Err(Failure::Broken);
        }
        if n > left {
            return Ok((length, false));
        }
        left -= n;
    }
    Ok((length, true))
}

/// Reads a body delimited by the connection's close.
async fn read_until_close<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    start: usize,
    filled: usize,
) -> Result<u64, Failure> {
    let mut bytes = (filled - start) as u64;
    loop {
        match stream.read(buf).await.map_err(|_| Failure::Broken)? {
            0 => return Ok(bytes),
            n => bytes += n as u64,
        }
    }
}

/// Reads a chunked body, of which `buf[start..filled]` already arrived. Returns the size
/// of its data and whether nothing followed it.
async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    start: usize,
    filled: usize,
) -> Result<(u64, bool), Failure> {
    let mut decoder = Chunked::default();
    let mut filled = filled;
    let mut start = start;
    loop {
        let used = decoder.feed(&buf[start..filled])?;
        if decoder.done() {
            return Ok((decoder.data, start + used == filled));
        }
        // Keep what could not be used yet (part of a size or trailer line) and read more.
        buf.copy_within(start + used..filled, 0);
        filled = read_more(stream, buf, filled - (start + used)).await?;
        start = 0;
    }
}

/// Reads more of an answer after the `filled` bytes of `buf`; returns the new fill. A
/// full buffer (a line or head too long) or the peer's close mid-answer is `Broken`.
async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    filled: usize,
) -> Result<usize, Failure> {
    if filled == buf.len() {
        return Err(Failure::Broken);
    }
    match stream.read(&mut buf[filled..]).await {
        Ok(0) | Err(_) => Err(Failure::Broken),
        Ok(n) => Ok(filled + n),
    }
}

/// Where a chunked-body decoder is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
    Done,
}

/// An incremental decoder of `Transfer-Encoding: chunked` that counts the data.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    data: u64,
}

impl Chunked {
    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes what it can of `input`: whole lines and any data; returns how many bytes.
    fn feed(&mut self, input: &[u8]) -> Result<usize, Failure> {
        let mut at = 0;
        loop {
            match self.state {
                ChunkState::Done => return Ok(at),
                ChunkState::Data(left) => {
                    let take = left.min((input.len() - at) as u64);
                    self.data += take;
                    at += take as usize;
                    if take < left {
                        self.state = ChunkState::Data(left - take);
                        return Ok(at);
                    }
                    self.state = ChunkState::DataEnd;
                }
                ChunkState::Size | ChunkState::DataEnd | ChunkState::Trailer => {
                    let rest = &input[at..];
                    // (A line may end with CR before its LF; the CR is not counted.)
                    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                        if rest.len() > MAX_CHUNK_LINE + 1 {
                            return Err(Failure::Broken);
                        }
                        return Ok(at);
                    };
                    let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
                    if line.len() > MAX_CHUNK_LINE {
                        return Err(Failure::Broken);
                    }
                    at += end + 1;
                    self.state = match self.state {
                        ChunkState::Size => match chunk_size(line)? {
                            0 => ChunkState::Trailer,
                            size => ChunkState::Data(size),
                        },
                        ChunkState::DataEnd if line.is_empty() => ChunkState::Size,
                        ChunkState::DataEnd => return Err(Failure::Broken),
                        _ if line.is_empty() => ChunkState::Done,
                        _ => ChunkState::Trailer,
                    };
                }
            }
        }
    }
}

/// The size on a chunk-size line (hex digits, then optional `;extensions`).
fn chunk_size(line: &[u8]) -> Result<u64, Failure> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(Failure::Broken);
    }
    digits.iter().try_fold(0u64, |size, &b| {
        let digit = char::from(b).to_digit(16).ok_or(Failure::Broken)?;
        Ok(size * 16 + u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8]) -> Head {
        parse_head(bytes, false).unwrap().unwrap()
    }

    #[test]
    fn heads_are_framed_like_http_1_1() {
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(
            (h.status, h.framing, h.keep_alive),
            (200, Framing::Length(5), true)
        );
        assert_eq!(h.len, 38);
        let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert_eq!(h.framing, Framing::UntilClose);
        let h = head(b"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\n");
        assert_eq!(
            (h.status, h.framing, h.keep_alive),
            (500, Framing::UntilClose, false)
        );
        let h = head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n");
        assert!(h.keep_alive);
        let h = head(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(0));
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(0), "a HEAD response has no body");
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Le", false),
            Ok(None)
        );
        assert_eq!(
            parse_head(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            ),
            Err(Failure::Broken)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 101 Switching\r\n\r\n", false),
            Err(Failure::Broken)
        );
        assert_eq!(
            parse_head(b"SSH-2.0-OpenSSH\r\n\r\n", false),
            Err(Failure::Broken)
        );
    }

    #[test]
    fn chunked_bodies_decode_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n";
        for split in 0..=body.len() {
            let mut decoder = Chunked::default();
            let used = decoder.feed(&body[..split]).unwrap();
            let mut rest = body[used..split].to_vec();
            rest.extend_from_slice(&body[split..]);
            let used = decoder.feed(&rest).unwrap();
            assert!(decoder.done(), "split at {split}");
            assert_eq!(used, rest.len(), "split at {split}");
            assert_eq!(decoder.data, 15, "split at {split}");
        }
        assert_eq!(Chunked::default().feed(b"zz\r\n"), Err(Failure::Broken));
        assert_eq!(
            Chunked::default().feed(b"2\r\nabX\r\n"),
            Err(Failure::Broken)
        );
    }

    /// Reads one response the way a lane does, 4 KiB per read, into a lane-sized buffer.
    fn read(response: &[u8]) -> Result<Answer, Failure> {
        let mut stream = crate::fuzzing::Scripted::new(response, 4096);
        let mut buf = vec![0u8; crate::http::lane::READ_BUFFER];
        crate::fuzzing::complete(roundtrip(
            &mut stream,
            b"GET / HTTP/1.1\r\n\r\n",
            false,
            &mut buf,
        ))
        .expect("in-memory reads never wait")
    }

    fn with_headers(count: usize) -> Vec<u8> {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..count - 1 {
            head.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
        head
    }

    fn chunked(size_line: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size_line}\r\nx\r\n0\r\n\r\n"
        )
        .into_bytes()
    }

    /// Each bound of the reader holds at its edge: at most 64 header lines, a head that
    /// fits the lane's 16 KiB buffer, chunk-size lines of at most 4096 bytes with at most
    /// 15 hex digits; past each it is `Broken`, nothing buffered beyond it. A body of any
    /// size is counted through the fixed buffer, not kept: 64 MiB here.
    #[test]
    fn bounds_hold_at_their_edges() {
        assert_eq!(
            read(&with_headers(MAX_HEADERS)).map(|a| a.body_bytes),
            Ok(2)
        );
        assert_eq!(
            read(&with_headers(MAX_HEADERS + 1)).err(),
            Some(Failure::Broken)
        );
        let big = |len: usize| {
            let mut r = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
            r.resize(r.len() + len, b'a');
            r.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
            r
        };
        assert!(
            read(&big(16 * 1024 - 100)).is_ok(),
            "a head that fits the buffer"
        );
        assert_eq!(read(&big(16 * 1024)).err(), Some(Failure::Broken));
        let extension = |len: usize| format!("1;{}", "e".repeat(len - 2));
        assert_eq!(
            read(&chunked(&extension(MAX_CHUNK_LINE))).map(|a| a.body_bytes),
            Ok(1)
        );
        assert_eq!(
            read(&chunked(&extension(MAX_CHUNK_LINE + 2))).err(),
            Some(Failure::Broken)
        );
        assert_eq!(
            read(&chunked("000000000000001")).map(|a| a.body_bytes),
            Ok(1)
        );
        assert_eq!(
            read(&chunked("0000000000000001")).err(),
            Some(Failure::Broken)
        );
        let mut huge = b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n".to_vec();
        huge.resize(huge.len() + (64 << 20), b'b');
        assert_eq!(read(&huge).map(|a| a.body_bytes), Ok(64 << 20));
    }
}
