//! `--pipeline N`: HTTP/1.1 pipelining for the `bare` scenario. Each connection keeps up
//! to N `GET --path` requests in flight on a raw TCP stream: it writes as many as are
//! missing in one `write`, reads whatever arrived in one `read`, parses the complete
//! answers off the buffer ([`parse_answer`]) and records them in one lock of its shard.
//!
//! This measures how many answers a handler (and the generator) can turn over with
//! fewer system calls per request; it is not how browsers talk to a server, so a
//! pipelined figure is never compared with an unpipelined one. Closed model only: a
//! request's latency runs from the write that carried it to its parsed answer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::stats::{Outcome, Shard};
use crate::target::Target;
use crate::worker::Plan;

/// The most requests in flight on one connection.
pub const MAX_PIPELINE_DEPTH: u32 = 1024;
/// The most headers an answer may have.
const MAX_HEADERS: usize = 64;
/// The longest answer head (status line and headers) accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Read buffer reserved per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Pause after a failed connect, so that a dead server is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// What the front of a buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole answer of `len` bytes; `close` when the server said it closes after it.
    Answer { status: u16, len: usize, close: bool },
    /// Not a whole answer yet; it takes at least `at_least` bytes.
    Partial { at_least: usize },
}

/// An answer that cannot be framed: the connection is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("an answer without Content-Length or chunked encoding cannot be pipelined")]
    Unframed,
}

/// Parses the answer at the front of `buf`: its status and its length, head and body
/// (`Content-Length` or chunked; 1xx, 204 and 304 have none).
pub fn parse_answer(buf: &[u8]) -> Result<Parsed, FrameError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(FrameError::Malformed(format!("a head longer than {MAX_HEAD_BYTES} bytes")));
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial { at_least: buf.len() + 1 }),
        Err(e) => return Err(FrameError::Malformed(e.to_string())),
    };
    let status = response.code.ok_or_else(|| FrameError::Malformed("no status".into()))?;
    let mut content_length = None;
    let mut chunked = false;
    let mut close = false;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| FrameError::Malformed("Content-Length is not a number".into()))?;
            if content_length.is_some_and(|seen| seen != value) {
                return Err(FrameError::Malformed("two different Content-Length headers".into()));
            }
            content_length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = header.value.eq_ignore_ascii_case(b"chunked");
            if !chunked {
                return Err(FrameError::Malformed("a transfer encoding other than chunked".into()));
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = header.value.eq_ignore_ascii_case(b"close");
        }
    }
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Parsed::Answer { status, len: head, close });
    }
    if chunked {
        return Ok(match chunked_len(&buf[head..])? {
            Some(body) => Parsed::Answer { status, len: head + body, close },
            None => Parsed::Partial { at_least: buf.len() + 1 },
        });
    }
    match content_length {
        Some(body) => {
            let len = head + body;
            Ok(if buf.len() >= len {
                Parsed::Answer { status, len, close }
            } else {
                Parsed::Partial { at_least: len }
            })
        }
        None => Err(FrameError::Unframed),
    }
}

/// The length of a whole chunked body at the front of `buf` (chunks, the last chunk,
/// trailers and the closing empty line), or `None` when it has not all arrived.
fn chunked_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let mut at = 0;
    loop {
        let Some(eol) = find_crlf(&buf[at..]) else { return Ok(None) };
        let line = &buf[at..at + eol];
        let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size_text)
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or_else(|| FrameError::Malformed("a chunk size that is not hexadecimal".into()))?;
        at += eol + 2;
        if size == 0 {
            // Trailers, if any, then an empty line.
            loop {
                let Some(eol) = find_crlf(&buf[at..]) else { return Ok(None) };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some(at));
                }
            }
        }
        let end = at.checked_add(size).and_then(|e| e.checked_add(2));
        let Some(end) = end else { return Err(FrameError::Malformed("a chunk too large".into())) };
        if buf.len() < end {
            return Ok(None);
        }
        if &buf[end - 2..end] != b"\r\n" {
            return Err(FrameError::Malformed("a chunk not followed by CRLF".into()));
        }
        at = end;
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// `GET path` with the target's `Host`, as bytes ready to be written `depth` times over.
pub fn request_bytes(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// Why the requests in flight on a connection got no answer.
#[derive(Debug, Clone, Copy)]
enum Lost {
    Timeout,
    Transport,
}

/// One pipelined connection's loop (the `bare` scenario with `--pipeline` above 1).
pub(crate) async fn run(
    plan: Arc<Plan>,
    shard: Arc<Mutex<Shard>>,
    connected: Arc<AtomicU32>,
    mut start: watch::Receiver<Option<Instant>>,
    index: u32,
) {
    let target = plan.node(index).0.clone();
    let depth = plan.pipeline.clamp(1, MAX_PIPELINE_DEPTH) as usize;
    let request = request_bytes(&target.host, plan.bare_path());
    let batch = request.repeat(depth);
    let mut stream = connect(&plan, &target).await;
    connected.fetch_add(1, Ordering::Release);
    let start = loop {
        if let Some(start) = *start.borrow_and_update() {
            break start;
        }
        if start.changed().await.is_err() {
            return;
        }
    };
    let deadline = start + plan.duration;
    let seconds = plan.seconds();
    let second_of = |at: Instant| ((at - start).as_secs() as usize).min(seconds - 1);
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(depth);
    // Answers of one read, recorded under one lock.
    let mut answered: Vec<(u16, u64)> = Vec::with_capacity(depth);
    let mut budget_left = true;
    loop {
        let Some(conn) = stream.as_mut() else {
            if Instant::now() >= deadline || !budget_left {
                break;
            }
            stream = connect(&plan, &target).await;
            if stream.is_none() {
                shard.lock().record_connect_error(second_of(Instant::now()));
                let pause = RECONNECT_PAUSE.min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
            }
            continue;
        };
        let now = Instant::now();
        let mut more = 0;
        if now < deadline {
            while budget_left && in_flight.len() + more < depth {
                if plan.take_budget() {
                    more += 1;
                } else {
                    budget_left = false;
                }
            }
        }
        if more > 0 {
            in_flight.extend(std::iter::repeat_n(now, more));
            let written =
                tokio::time::timeout(plan.timeout, conn.write_all(&batch[..more * request.len()])).await;
            if !matches!(written, Ok(Ok(()))) {
                let lost = if written.is_err() { Lost::Timeout } else { Lost::Transport };
                fail_all(&shard, &mut in_flight, lost, now, second_of(Instant::now()));
                stream = None;
                buf.clear();
                continue;
            }
        }
        let Some(&oldest) = in_flight.front() else { break };
        buf.reserve(READ_CHUNK_BYTES);
        let read = tokio::time::timeout_at(oldest + plan.timeout, conn.read_buf(&mut buf)).await;
        let done = Instant::now();
        let lost = match read {
            Ok(Ok(n)) if n > 0 => None,
            Ok(_) => Some(Lost::Transport),
            Err(_) => Some(Lost::Timeout),
        };
        let mut close = false;
        let mut broken = lost;
        if lost.is_none() {
            loop {
                match parse_answer(&buf) {
                    Ok(Parsed::Answer { status, len, close: last }) => {
                        let Some(sent) = in_flight.pop_front() else {
                            // An answer nobody asked for: the stream is out of step.
                            broken = Some(Lost::Transport);
                            break;
                        };
                        buf.advance(len);
                        answered.push((status, (done - sent).as_micros() as u64));
                        if last {
                            close = true;
                            break;
                        }
                    }
                    Ok(Parsed::Partial { at_least }) => {
                        buf.reserve(at_least.saturating_sub(buf.len()));
                        break;
                    }
                    Err(_) => {
                        broken = Some(Lost::Transport);
                        break;
                    }
                }
            }
        }
        if !answered.is_empty() {
            let second = second_of(done);
            let mut shard = shard.lock();
            for &(status, latency_us) in &answered {
                shard.record(0, Outcome::Status { status, code: None }, latency_us, second);
            }
            answered.clear();
        }
        if broken.is_some() || close {
            fail_all(&shard, &mut in_flight, broken.unwrap_or(Lost::Transport), done, second_of(done));
            stream = None;
            buf.clear();
        }
    }
}

async fn connect(plan: &Plan, target: &Target) -> Option<TcpStream> {
    let stream = tokio::time::timeout(plan.timeout, TcpStream::connect(target.addr)).await.ok()?.ok()?;
    stream.set_nodelay(true).ok()?;
    Some(stream)
}

/// Records every request still in flight as lost.
fn fail_all(
    shard: &Mutex<Shard>,
    in_flight: &mut VecDeque<Instant>,
    lost: Lost,
    now: Instant,
    second: usize,
) {
    if in_flight.is_empty() {
        return;
    }
    let timeout = matches!(lost, Lost::Timeout);
    let mut shard = shard.lock();
    for sent in in_flight.drain(..) {
        let latency_us = now.saturating_duration_since(sent).as_micros() as u64;
        shard.record(0, Outcome::Transport { timeout }, latency_us, second);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ndate: x\r\n\r\nok";

    #[test]
    fn an_answer_with_content_length_is_framed_exactly() {
        assert_eq!(parse_answer(OK), Ok(Parsed::Answer { status: 200, len: OK.len(), close: false }));
        let mut two = OK.to_vec();
        two.extend_from_slice(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(parse_answer(&two), Ok(Parsed::Answer { status: 200, len: OK.len(), close: false }));
        assert_eq!(
            parse_answer(&two[OK.len()..]),
            Ok(Parsed::Answer { status: 404, len: two.len() - OK.len(), close: false })
        );
    }

    #[test]
    fn a_partial_answer_says_how_much_it_needs() {
        assert_eq!(parse_answer(&OK[..10]), Ok(Parsed::Partial { at_least: 11 }));
        let head_len = OK.len() - 2;
        assert_eq!(parse_answer(&OK[..head_len + 1]), Ok(Parsed::Partial { at_least: OK.len() }));
        assert_eq!(parse_answer(b""), Ok(Parsed::Partial { at_least: 1 }));
    }

    #[test]
    fn chunked_bodies_are_framed_with_their_trailers() {
        let chunked: &[u8] =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n";
        assert_eq!(
            parse_answer(chunked),
            Ok(Parsed::Answer { status: 200, len: chunked.len(), close: false })
        );
        for cut in [50, chunked.len() - 1, chunked.len() - 3] {
            assert!(matches!(parse_answer(&chunked[..cut]), Ok(Parsed::Partial { .. })), "cut at {cut}");
        }
        let bad = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(parse_answer(bad), Err(FrameError::Malformed(_))));
        let unterminated = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n";
        assert!(matches!(parse_answer(unterminated), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn bodiless_statuses_and_closing_answers() {
        let not_modified = b"HTTP/1.1 304 Not Modified\r\netag: \"1\"\r\ncontent-length: 7500\r\n\r\n";
        assert_eq!(
            parse_answer(not_modified),
            Ok(Parsed::Answer { status: 304, len: not_modified.len(), close: false })
        );
        let closing = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            parse_answer(closing),
            Ok(Parsed::Answer { status: 503, len: closing.len(), close: true })
        );
    }

    #[test]
    fn answers_that_cannot_be_framed_are_refused() {
        assert_eq!(parse_answer(b"HTTP/1.1 200 OK\r\n\r\nbody until close"), Err(FrameError::Unframed));
        assert!(matches!(parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n"), Err(FrameError::Malformed(_))));
        let conflicting = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab";
        assert!(matches!(parse_answer(conflicting), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn the_request_is_a_bare_get_with_host() {
        assert_eq!(
            request_bytes("127.0.0.1:80", "/bitmap"),
            b"GET /bitmap HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n"
        );
    }
}
