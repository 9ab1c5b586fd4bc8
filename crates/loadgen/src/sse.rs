//! A lean reader of the live seat map (`GET /v1/events/{id}/availability/stream`) for
//! fleets of thousands of viewers: one plain TCP connection per viewer, the request
//! written by hand, the response head read once, then the body decoded as it arrives
//! (HTTP/1.1 chunked or until close) by small state machines that keep no more than a
//! line prefix. Of each SSE frame only what a viewer needs is kept: its `event:` name,
//! the `<epoch>.<version>` of its `id:`, and the `from` at the start of a delta's data;
//! the data itself is kept only when asked for (a snapshot's bitmap, for the `onsale`
//! users). Reads go through a buffer shared by all viewers of a thread, so an idle
//! viewer costs its socket and a few dozen bytes of state.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// Longest response head accepted.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Bytes of a field line kept (enough for `event:`, `id:` and the start of a delta).
const LINE_PREFIX_BYTES: usize = 96;
/// Longest data line kept when data is captured (a 200,000-seat snapshot is ~34 KB).
const MAX_CAPTURED_DATA: usize = 1 << 20;
/// The thread's read buffer.
const READ_BUFFER_BYTES: usize = 64 * 1024;

thread_local! {
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUFFER_BYTES]);
}

/// Why a stream could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("connection failed: {0}")]
    Io(std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with another status than 200 (e.g. 429 or 503 at its limits).
    #[error("the server answered {status}{}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Status { status: u16, code: Option<String> },
    #[error("malformed answer: {0}")]
    Protocol(String),
}

/// What kind of frame a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Snapshot,
    Delta,
    /// Any other event name (or none).
    Other,
}

/// One dispatched SSE frame, reduced to what a viewer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    /// From `id: <epoch>.<version>`.
    pub epoch: Option<u64>,
    pub version: Option<u64>,
    /// A delta's `from`, read from the start of its data.
    pub from: Option<u64>,
    /// The data line, when the stream captures data.
    pub data: Option<Vec<u8>>,
}

/// The SSE line parser: lines split on `\n` (a trailing `\r` dropped), fields kept only as
/// far as they matter, a frame dispatched at each empty line.
#[derive(Debug, Default)]
pub struct SseParser {
    capture_data: bool,
    /// The current line's first bytes (all of it for captured data lines).
    line: Vec<u8>,
    /// The current line is longer than what is kept.
    overflow: bool,
    kind: Option<FrameKind>,
    epoch: Option<u64>,
    version: Option<u64>,
    from: Option<u64>,
    data: Option<Vec<u8>>,
    /// Any field seen since the last dispatch.
    fields: bool,
    /// Comment lines seen (`: keep-alive`).
    pub comments: u64,
}

impl SseParser {
    pub fn new(capture_data: bool) -> SseParser {
        SseParser { capture_data, ..SseParser::default() }
    }

    /// Feeds body bytes; calls `on_frame` for each completed frame.
    pub fn feed(&mut self, mut bytes: &[u8], on_frame: &mut impl FnMut(Frame)) {
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.keep(&bytes[..end]);
                    bytes = &bytes[end + 1..];
                    self.end_line(on_frame);
                }
                None => {
                    self.keep(bytes);
                    return;
                }
            }
        }
    }

    fn limit(&self) -> usize {
        if self.capture_data && self.line.starts_with(b"data") {
            MAX_CAPTURED_DATA
        } else {
            LINE_PREFIX_BYTES
        }
    }

    fn keep(&mut self, mut part: &[u8]) {
        // The prefix first: only then is it known whether this is a data line to capture.
        if self.line.len() < LINE_PREFIX_BYTES {
            let n = part.len().min(LINE_PREFIX_BYTES - self.line.len());
            self.line.extend_from_slice(&part[..n]);
            part = &part[n..];
        }
        if part.is_empty() {
            return;
        }
        let room = self.limit().saturating_sub(self.line.len());
        if part.len() > room {
            self.overflow = true;
        }
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn end_line(&mut self, on_frame: &mut impl FnMut(Frame)) {
        let mut line = std::mem::take(&mut self.line);
        let overflow = std::mem::take(&mut self.overflow);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.is_empty() {
            if self.fields {
                on_frame(Frame {
                    kind: self.kind.take().unwrap_or(FrameKind::Other),
                    epoch: self.epoch.take(),
                    version: self.version.take(),
                    from: self.from.take(),
                    data: self.data.take(),
                });
                self.fields = false;
            }
        } else if line[0] == b':' {
            self.comments += 1;
        } else {
            self.fields = true;
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let value = &line[i + 1..];
                    (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (&line[..], &[][..]),
            };
            match name {
                b"event" => {
                    self.kind = Some(match value {
                        b"snapshot" => FrameKind::Snapshot,
                        b"delta" => FrameKind::Delta,
                        _ => FrameKind::Other,
                    })
                }
                b"id" => {
                    let (epoch, version) = parse_id(value);
                    self.epoch = epoch;
                    self.version = version;
                }
                b"data" => {
                    self.from = number_after(value, b"\"from\":");
                    if self.capture_data && !overflow {
                        self.data = Some(value.to_vec());
                    }
                }
                _ => {}
            }
        }
        // Give the line's allocation back for the next one, unless a big data line grew it.
        if line.capacity() <= 4 * LINE_PREFIX_BYTES {
            line.clear();
            self.line = line;
        }
    }
}

/// `<epoch>.<version>` (a bare number is read as the version).
fn parse_id(value: &[u8]) -> (Option<u64>, Option<u64>) {
    let text = std::str::from_utf8(value).unwrap_or("");
    match text.split_once('.') {
        Some((epoch, version)) => (epoch.parse().ok(), version.parse().ok()),
        None => (None, text.parse().ok()),
    }
}

/// The decimal number right after `key` in `text`.
fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
    let start = text.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = text[start..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[start..start + digits]).ok()?.parse().ok()
}

/// How the body is framed.
#[derive(Debug)]
enum Body {
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunked),
    /// No framing: the body lasts until the connection closes.
    UntilClose,
}

/// The chunked transfer coding as a state machine over arbitrary splits.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    size: u64,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size.
    #[default]
    Size,
    /// Skipping a chunk extension up to the line end.
    Extension,
    /// In the chunk's data, `size` bytes left.
    Data,
    /// The CRLF after the data.
    DataEnd,
    /// After the last chunk: trailers, ignored.
    Done,
}

impl Chunked {
    /// Decodes `bytes`, handing each piece of data to `out`; `Err` on a malformed size.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut impl FnMut(&[u8])) -> Result<(), String> {
        while !bytes.is_empty() {
            match self.state {
                ChunkState::Size => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    match b {
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                            self.size = self
                                .size
                                .checked_mul(16)
                                .and_then(|s| s.checked_add(digit))
                                .ok_or("chunk size overflows")?;
                        }
                        b';' | b' ' | b'\t' | b'\r' => self.state = ChunkState::Extension,
                        b'\n' => self.end_size(),
                        other => return Err(format!("unexpected byte {other:#04x} in a chunk size")),
                    }
                }
                ChunkState::Extension => match bytes.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        bytes = &bytes[i + 1..];
                        self.end_size();
                    }
                    None => return Ok(()),
                },
                ChunkState::Data => {
                    let n = (self.size.min(bytes.len() as u64)) as usize;
                    out(&bytes[..n]);
                    bytes = &bytes[n..];
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    if b == b'\n' {
                        self.state = ChunkState::Size;
                    } else if b != b'\r' {
                        return Err("chunk data does not end with CRLF".into());
                    }
                }
                ChunkState::Done => return Ok(()),
            }
        }
        Ok(())
    }

    fn end_size(&mut self) {
        self.state = if self.size == 0 { ChunkState::Done } else { ChunkState::Data };
    }

    /// The last chunk has been read.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// One open live-map stream.
pub struct SseStream {
    stream: TcpStream,
    body: Body,
    parser: SseParser,
    /// Body bytes that came with the head, decoded by the first `read`.
    pending: Vec<u8>,
    /// Bytes received after the head (framing included).
    pub bytes: u64,
}

/// How a stream is opened.
pub struct Open<'a> {
    pub addr: SocketAddr,
    /// Local address to bind (spreads a fleet over several loopback addresses).
    pub source: Option<IpAddr>,
    pub host: &'a str,
    pub path: &'a str,
    pub last_event_id: Option<&'a str>,
    pub capture_data: bool,
    pub timeout: Duration,
}

impl SseStream {
    /// Connects, sends the request and reads the response head; anything but a 200
    /// `text/event-stream` answer is an error.
    pub async fn open(open: Open<'_>) -> Result<SseStream, SseError> {
        match tokio::time::timeout(open.timeout, SseStream::open_inner(&open)).await {
            Ok(result) => result,
            Err(_) => Err(SseError::Timeout(open.timeout)),
        }
    }

    async fn open_inner(open: &Open<'_>) -> Result<SseStream, SseError> {
        let socket = if open.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
            .map_err(SseError::Connect)?;
        if let Some(source) = open.source {
            socket.bind(SocketAddr::new(source, 0)).map_err(SseError::Connect)?;
        }
        let mut stream = socket.connect(open.addr).await.map_err(SseError::Connect)?;
        stream.set_nodelay(true).map_err(SseError::Connect)?;
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
            open.path, open.host
        );
        if let Some(id) = open.last_event_id {
            request.push_str("Last-Event-ID: ");
            request.push_str(id);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.map_err(SseError::Io)?;

        let mut head = Vec::with_capacity(512);
        let end = loop {
            stream.readable().await.map_err(SseError::Io)?;
            let mut chunk = [0u8; 1024];
            match stream.try_read(&mut chunk) {
                Ok(0) => return Err(SseError::Protocol("the connection closed before the answer".into())),
                Ok(n) => head.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(SseError::Io(e)),
            }
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if head.len() > MAX_HEAD_BYTES {
                return Err(SseError::Protocol("the response head is too long".into()));
            }
        };
        let text = std::str::from_utf8(&head[..end])
            .map_err(|_| SseError::Protocol("the response head is not UTF-8".into()))?;
        let mut lines = text.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| SseError::Protocol("no status line".into()))?;
        let mut chunked = false;
        let mut length: Option<usize> = None;
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                } else if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().ok();
                }
            }
        }
        if status != 200 {
            // Read a short error body for its code, without waiting long for it.
            let mut body = head[end..].to_vec();
            if let Some(length) = length {
                let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
                while body.len() < length.min(4096) {
                    let mut chunk = [0u8; 1024];
                    match tokio::time::timeout_at(
                        deadline,
                        tokio::io::AsyncReadExt::read(&mut stream, &mut chunk),
                    )
                    .await
                    {
                        Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
                        _ => break,
                    }
                }
            }
            let code = crate::worker::error_code(&body).map(str::to_owned);
            return Err(SseError::Status { status, code });
        }
        Ok(SseStream {
            stream,
            body: if chunked { Body::Chunked(Chunked::default()) } else { Body::UntilClose },
            parser: SseParser::new(open.capture_data),
            pending: head[end..].to_vec(),
            bytes: 0,
        })
    }

    /// Waits for bytes and decodes them, calling `on_frame` for each completed frame;
    /// `Ok(false)` once the server has ended the stream. Cancel-safe: dropping the future
    /// while it waits loses nothing.
    pub async fn read(&mut self, on_frame: &mut impl FnMut(Frame)) -> Result<bool, SseError> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.decode(&pending, on_frame)?;
            return Ok(!self.ended());
        }
        loop {
            self.stream.readable().await.map_err(SseError::Io)?;
            let read = READ_BUFFER.with(|buffer| {
                let mut buffer = buffer.borrow_mut();
                match self.stream.try_read(&mut buffer) {
                    Ok(0) => Ok(Some(false)),
                    Ok(n) => self.decode(&buffer[..n], on_frame).map(|()| Some(true)),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
                    Err(e) => Err(SseError::Io(e)),
                }
            })?;
            if let Some(open) = read {
                return Ok(open && !self.ended());
            }
        }
    }

    fn decode(&mut self, bytes: &[u8], on_frame: &mut impl FnMut(Frame)) -> Result<(), SseError> {
        self.bytes += bytes.len() as u64;
        let parser = &mut self.parser;
        match &mut self.body {
            Body::Chunked(chunked) => {
                chunked.feed(bytes, &mut |data| parser.feed(data, on_frame)).map_err(SseError::Protocol)
            }
            Body::UntilClose => {
                parser.feed(bytes, on_frame);
                Ok(())
            }
        }
    }

    fn ended(&self) -> bool {
        matches!(&self.body, Body::Chunked(chunked) if chunked.done())
    }

    /// Comment lines (`: keep-alive`) received so far.
    pub fn comments(&self) -> u64 {
        self.parser.comments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parser: &mut SseParser, pieces: &[&[u8]]) -> Vec<Frame> {
        let mut out = Vec::new();
        for piece in pieces {
            parser.feed(piece, &mut |f| out.push(f));
        }
        out
    }

    const SNAPSHOT: &[u8] =
        b"event: snapshot\nid: 77.5\ndata: {\"version\":5,\"bitmap_base64\":\"/w==\"}\n\n";
    const DELTA: &[u8] = b"event: delta\nid: 77.9\ndata: {\"from\":5,\"version\":9,\"available\":[1],\"unavailable\":[2,3]}\n\n";

    #[test]
    fn frames_are_read_whatever_the_split() {
        let whole: Vec<u8> = [SNAPSHOT, b": keep-alive\n\n", DELTA].concat();
        for split in 0..whole.len() {
            let mut parser = SseParser::new(false);
            let got = frames(&mut parser, &[&whole[..split], &whole[split..]]);
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(got[0].kind, FrameKind::Snapshot);
            assert_eq!((got[0].epoch, got[0].version, got[0].from), (Some(77), Some(5), None));
            assert_eq!(got[1].kind, FrameKind::Delta);
            assert_eq!((got[1].epoch, got[1].version, got[1].from), (Some(77), Some(9), Some(5)));
            assert!(got.iter().all(|f| f.data.is_none()), "data is not kept unless asked");
            assert_eq!(parser.comments, 1);
        }
    }

    #[test]
    fn captured_data_is_kept_whole() {
        let mut parser = SseParser::new(true);
        let mut long = b"event: snapshot\r\nid: 1.2\r\ndata: ".to_vec();
        long.extend(std::iter::repeat_n(b'A', 5000));
        long.extend_from_slice(b"\r\n\r\n");
        for split in [0, 20, 40, 100, long.len() - 3] {
            let got = frames(&mut parser, &[&long[..split], &long[split..]]);
            assert_eq!(got.len(), 1, "split at {split}");
            assert_eq!(got[0].version, Some(2));
            assert_eq!(got[0].data.as_ref().map(Vec::len), Some(5000), "split at {split}");
        }
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        for split in 0..body.len() {
            let mut chunked = Chunked::default();
            let mut out = Vec::new();
            chunked.feed(&body[..split], &mut |d| out.extend_from_slice(d)).expect("valid");
            chunked.feed(&body[split..], &mut |d| out.extend_from_slice(d)).expect("valid");
            assert_eq!(out, b"hello world", "split at {split}");
            assert!(chunked.done());
        }
        assert!(Chunked::default().feed(b"zz\r\n", &mut |_| {}).is_err());
    }
}
