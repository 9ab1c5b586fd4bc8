//! The `viewers` scenario: a fleet of live-map viewers and one writer, measuring how
//! stale the viewers' maps are.
//!
//! The fleet: `--viewers` SSE connections to `GET /v1/events/{ev}/availability/stream`,
//! spread over `--threads` single-threaded runtimes, one small task per viewer reading
//! through [`crate::sse`] (only each frame's name, version and `from` are parsed). On a
//! loopback IPv4 target the viewers bind 127.0.0.x source addresses, at most
//! [`VIEWERS_PER_SOURCE`] per address, so the server's per-address stream limit does not
//! cap a fleet that in production comes from many clients. A stream that ends or fails
//! is reopened after a second with `Last-Event-ID`, as a browser's `EventSource` does.
//!
//! The writer: once every viewer has its snapshot, `--changes-per-second` seat changes on
//! the same event through the API (open model, one connection per 50 changes/s, 4 to
//! 256): holds of random seats, and releases of the oldest of them once a pool of live
//! holds is full (a tenth of a second's changes), as a round robin of users that stays
//! under the per-user limits.
//!
//! Staleness. A change answered (201 or 204) at time `a` is in every version at or past
//! `v0 + s`, where `v0` is the event's version before the writer started and `s` the
//! number of successful changes sent before `a` (the API does not say which version a
//! change made; with changes in flight its version is at most that). Its staleness for a
//! viewer is the time from `a` to the first frame that viewer received with a version at
//! or past that bound, zero when the frame came first. Because of the bound, the figure
//! may include the service time of changes in flight beside it: it errs on the stale side.
//! The bounds are final once every change sent before `a` has its answer; each thread
//! scores its viewers against them every 100 ms. With many viewers and changes, viewer
//! `i` scores one change in `stride` (those whose number is `i mod stride`), so that
//! every change is still scored by `viewers / stride` viewers.
//!
//! At the end the writer stops, the viewers are given up to [`CATCH_UP_LIMIT`] to reach the
//! last change, and whatever a connected viewer has not seen by then counts as missed.
//! With `--server-pid`, the server's resident memory is read before the fleet connects,
//! once it is connected and idle, and at the end.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Method;
use hyper::header::HeaderValue;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::api::{Api, ApiConn, parse, snippet};
use crate::audit::AuditLog;
use crate::client::{Body, Conn, Requests, uri};
use crate::report::{Report, Timeline, thousands};
use crate::setup::{load_event, mint_tokens, user_prefix, wait_ready};
use crate::sse::{FrameKind, Open, SseError, SseStream};
use crate::stats::{Latency, MAX_LATENCY_US, OpSummary, Outcome, Shard, human_us};
use crate::target::parse_targets;
use crate::worker::safe_id;
use crate::{Args, LoadError};

/// Viewers per loopback source address (the server allows 1,000 streams per address by
/// default).
pub const VIEWERS_PER_SOURCE: u32 = 500;
/// Longest wait for the fleet's first snapshots before the writer starts anyway.
const FLEET_GATE: Duration = Duration::from_secs(120);
/// Streams opening at once per thread.
const OPENING_PER_THREAD: usize = 256;
/// Pause before a viewer reopens a stream (an `EventSource`'s default retry is ~3 s; a
/// shorter one keeps the measurement's outage short).
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// How long the viewers may take to reach the last change after the writer stopped.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(10);
/// Quiet time after the fleet connected, before the idle memory is read.
const IDLE_SETTLE: Duration = Duration::from_secs(1);
/// How often each thread scores its viewers.
const SCORE_EVERY: Duration = Duration::from_millis(100);
/// Staleness samples per second the fleet records at most (beyond it, viewers sample).
const SAMPLE_BUDGET_PER_SECOND: f64 = 2_000_000.0;
/// Frames a viewer remembers while waiting for the writer's answers to settle.
const MAX_FRAMES_REMEMBERED: usize = 4096;
/// Open files kept for the writer, the coordinator and the runtime.
const FILE_RESERVE: u64 = 128;

/// What the viewers measured, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ViewersReport {
    /// `--viewers`.
    pub asked: u32,
    /// The fleet actually started (less than asked when the open-file limit caps it).
    pub fleet: u32,
    /// The client's limit of open files (after raising it).
    pub file_limit: u64,
    /// Loopback source addresses the fleet was spread over (0: the system's choice).
    pub source_addresses: u32,
    /// Viewers that received their first frame.
    pub connected: u64,
    /// Viewers that never did.
    pub never_connected: u64,
    /// Stream opens refused or failed, by status and code or by kind.
    pub open_failures: BTreeMap<String, u64>,
    /// Streams that ended or failed while the run went on.
    pub dropped: u64,
    /// Streams reopened (with `Last-Event-ID`) after a drop.
    pub reconnects: u64,
    /// Snapshots after a viewer's first one.
    pub resnapshots: u64,
    /// Deltas whose `from` was not the viewer's version (the server promises none).
    pub gaps: u64,
    pub frames: u64,
    pub snapshots: u64,
    pub deltas: u64,
    pub keep_alives: u64,
    pub bytes: u64,
    /// Connected viewers that never received a delta.
    pub viewers_without_deltas: u64,
    /// Connected viewers whose first frame was not a snapshot.
    pub viewers_without_snapshot: u64,
    /// `--changes-per-second`.
    pub changes_per_second: f64,
    /// Changes the writer made (holds answered 201, releases 204).
    pub changes: u64,
    /// Changes that failed (any other answer).
    pub changes_failed: u64,
    /// Changes whose answer was lost (their effect is unknown; the bounds may be off).
    pub changes_unknown: u64,
    /// The event's version before the writer started, and the bound of its last change.
    pub first_version: u64,
    pub last_version: u64,
    /// Viewer `i` scored the changes numbered `i mod stride`.
    pub sample_stride: u64,
    /// (viewer, change) pairs measured.
    pub samples: u64,
    /// Of those, the frame arrived before the writer's answer (staleness 0).
    pub before_answer: u64,
    /// Scored changes a connected viewer had not received at the end.
    pub missed: u64,
    /// Whether every connected viewer reached the last change before the end.
    pub caught_up: bool,
    pub staleness_us: Latency,
    /// `[percentile, µs]` points for the staleness chart.
    pub staleness_curve: Vec<(f64, u64)>,
    /// `[upper bound µs, samples]` in doubling buckets, for the distribution chart.
    pub staleness_buckets: Vec<(u64, u64)>,
    pub server_memory: Option<ServerMemory>,
}

impl ViewersReport {
    /// The terminal summary's part.
    pub fn text(&self, out: &mut String) {
        use std::fmt::Write;
        let l = &self.staleness_us;
        let _ = writeln!(
            out,
            "\nlive map: {} of {} viewers connected ({} never; {} source addresses; open-file limit {})",
            thousands(self.connected),
            thousands(u64::from(self.fleet)),
            thousands(self.never_connected),
            self.source_addresses,
            thousands(self.file_limit)
        );
        let _ = writeln!(
            out,
            "  staleness over {} samples (1 in {} changes per viewer): p50 {}  p99 {}  p99.9 {}  max {}",
            thousands(self.samples),
            self.sample_stride,
            human_us(l.p50),
            human_us(l.p99),
            human_us(l.p999),
            human_us(l.max)
        );
        let _ = writeln!(
            out,
            "  writer: {} changes made at {}/s asked ({} failed, {} unknown), versions {} -> {}",
            thousands(self.changes),
            thousands(self.changes_per_second.round() as u64),
            thousands(self.changes_failed),
            thousands(self.changes_unknown),
            self.first_version,
            self.last_version
        );
        let _ = writeln!(
            out,
            "  frames {} ({} snapshots, {} deltas, {} keep-alives), {} bytes; dropped {}, reconnects {}, \
             resnapshots {}, gaps {}, missed {}{}",
            thousands(self.frames),
            thousands(self.snapshots),
            thousands(self.deltas),
            thousands(self.keep_alives),
            thousands(self.bytes),
            thousands(self.dropped),
            thousands(self.reconnects),
            thousands(self.resnapshots),
            thousands(self.gaps),
            thousands(self.missed),
            if self.caught_up { "" } else { " (not every viewer reached the last change)" }
        );
        if !self.open_failures.is_empty() {
            let failures: Vec<String> =
                self.open_failures.iter().map(|(k, v)| format!("{k}: {}", thousands(*v))).collect();
            let _ = writeln!(out, "  stream opens that failed: {}", failures.join(", "));
        }
        if let Some(m) = &self.server_memory {
            let _ = writeln!(
                out,
                "  server pid {} RSS: {} MiB before, {} MiB with the fleet idle, {} MiB at the end: {} bytes per idle \
                 viewer",
                m.pid,
                m.before_bytes / (1 << 20),
                m.idle_bytes / (1 << 20),
                m.after_bytes / (1 << 20),
                thousands(m.per_idle_viewer_bytes)
            );
        }
    }
}

/// The server's resident memory around the fleet.
#[derive(Debug, Clone, Serialize)]
pub struct ServerMemory {
    pub pid: u32,
    pub before_bytes: u64,
    pub idle_bytes: u64,
    pub after_bytes: u64,
    /// `(idle - before) / connected`.
    pub per_idle_viewer_bytes: u64,
    /// The server's own limit of open files.
    pub server_file_limit: Option<u64>,
}

/// One change whose version bound is final.
#[derive(Debug, Clone, Copy)]
struct Settled {
    target: u64,
    answered: Instant,
}

/// The settled changes, shared by the writer (appending) and the viewer threads (copying).
struct SettledLog {
    /// Absolute number of `items[0]`.
    base: u64,
    items: Vec<Settled>,
    /// How far each thread has copied.
    taken: Vec<u64>,
}

impl SettledLog {
    fn take(&mut self, thread: usize, into: &mut Vec<Settled>) {
        let from = (self.taken[thread] - self.base) as usize;
        into.extend_from_slice(&self.items[from..]);
        self.taken[thread] = self.base + self.items.len() as u64;
        let all = self.taken.iter().copied().min().unwrap_or(0);
        if all > self.base + 65_536 {
            self.items.drain(..(all - self.base) as usize);
            self.base = all;
        }
    }
}

/// How a change ended, for its neighbours' bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    Pending,
    Made,
    Failed,
    Unknown,
}

/// The writer's changes in send order, turning answers into settled version bounds.
struct ChangeBook {
    v0: u64,
    /// Absolute number of `sent[0]`.
    offset: usize,
    sent: Vec<Instant>,
    resolution: Vec<Resolution>,
    /// First change (absolute) without an answer.
    first_pending: usize,
    /// `made_before[i - offset]`: successful changes among the first `i` (absolute), for
    /// `i` up to `first_pending`.
    made_before: Vec<u64>,
    /// Successful changes by answer time: (answered, absolute number).
    answered: VecDeque<(Instant, usize)>,
    last_target: u64,
}

impl ChangeBook {
    fn new(v0: u64) -> ChangeBook {
        ChangeBook {
            v0,
            offset: 0,
            sent: Vec::new(),
            resolution: Vec::new(),
            first_pending: 0,
            made_before: vec![0],
            answered: VecDeque::new(),
            last_target: v0,
        }
    }

    fn send(&mut self, at: Instant) -> usize {
        self.sent.push(at);
        self.resolution.push(Resolution::Pending);
        self.offset + self.sent.len() - 1
    }

    fn resolve(&mut self, change: usize, resolution: Resolution, at: Instant, out: &mut Vec<Settled>) {
        self.resolution[change - self.offset] = resolution;
        if resolution == Resolution::Made {
            self.answered.push_back((at, change));
        }
        while self.first_pending < self.offset + self.sent.len()
            && self.resolution[self.first_pending - self.offset] != Resolution::Pending
        {
            let made = self.resolution[self.first_pending - self.offset] == Resolution::Made;
            let last = *self.made_before.last().expect("never empty");
            self.made_before.push(last + u64::from(made));
            self.first_pending += 1;
        }
        self.settle(out);
        self.trim();
    }

    /// Moves every answered change whose bound is final into `out`.
    fn settle(&mut self, out: &mut Vec<Settled>) {
        while let Some(&(answered, _)) = self.answered.front() {
            let pending = self.first_pending < self.offset + self.sent.len();
            if pending && self.sent[self.first_pending - self.offset] <= answered {
                return;
            }
            // Changes sent before the answer; all of them are resolved.
            let before = self.sent[..self.first_pending - self.offset].partition_point(|&s| s < answered);
            let target = self.v0 + self.made_before[before];
            self.last_target = self.last_target.max(target);
            out.push(Settled { target, answered });
            self.answered.pop_front();
        }
    }

    /// Forgets changes no bound can need any more.
    fn trim(&mut self) {
        let keep_from = self.answered.iter().map(|&(_, c)| c).min().unwrap_or(self.first_pending);
        let drop = keep_from.min(self.first_pending) - self.offset;
        if drop >= 65_536 {
            self.sent.drain(..drop);
            self.resolution.drain(..drop);
            self.made_before.drain(..drop);
            self.offset += drop;
        }
    }
}

/// What every viewer thread shares with the coordinator.
struct Fleet {
    /// Every target's address and `Host`: viewer `i` of a thread watches through
    /// `nodes[i % len]` (the writer uses the first).
    nodes: Vec<(SocketAddr, String)>,
    path: String,
    timeout: Duration,
    stride: u64,
    /// Viewers that got their first frame or failed their first open.
    first_tries: AtomicU32,
    connected_now: AtomicU64,
    frames: AtomicU64,
    settled: Mutex<SettledLog>,
    /// Set when the writer is done: the bound of its last change.
    final_target: AtomicU64,
    writer_done: AtomicBool,
    /// Threads whose connected viewers all reached the final target.
    caught_up: AtomicU32,
}

/// One viewer's state, owned by its thread.
struct ViewerState {
    /// The viewer's number in the fleet.
    number: u64,
    epoch: Option<u64>,
    version: Option<u64>,
    /// When the first frame came; changes answered before it are not this viewer's.
    since: Option<Instant>,
    /// Frames not yet matched to every settled change they satisfy: (version, received).
    frames: VecDeque<(u64, Instant)>,
    /// The next settled change (absolute number) this viewer scores.
    cursor: u64,
    streaming: bool,
    first_frame: Option<FrameKind>,
    deltas: u64,
    /// Its first frame came, or its first try failed.
    tried: bool,
}

/// A thread's counts.
#[derive(Default)]
struct Counts {
    open_failures: BTreeMap<String, u64>,
    dropped: u64,
    reconnects: u64,
    resnapshots: u64,
    gaps: u64,
    frames: u64,
    snapshots: u64,
    deltas: u64,
    keep_alives: u64,
    bytes: u64,
    samples: u64,
    before_answer: u64,
    missed: u64,
    frames_forgotten: u64,
}

/// What one thread hands back.
struct ThreadResult {
    counts: Counts,
    staleness: Histogram<u64>,
    connected: u64,
    never_connected: u64,
    without_deltas: u64,
    without_snapshot: u64,
}

struct ThreadCtx {
    fleet: Arc<Fleet>,
    thread: usize,
    viewers: RefCell<Vec<ViewerState>>,
    counts: RefCell<Counts>,
    opening: Semaphore,
    stop: watch::Receiver<bool>,
    staleness: RefCell<Histogram<u64>>,
    /// Settled changes copied from the shared log; `settled[0]` is number `base`.
    settled: RefCell<Vec<Settled>>,
    base: Cell<u64>,
}

fn staleness_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// The first number at or after `at` that is `residue` modulo `stride`.
fn align(at: u64, residue: u64, stride: u64) -> u64 {
    at + (residue + stride - at % stride) % stride
}

impl ThreadCtx {
    fn on_frame(&self, index: usize, frame: crate::sse::Frame, now: Instant) {
        let mut viewers = self.viewers.borrow_mut();
        let mut counts = self.counts.borrow_mut();
        let v = &mut viewers[index];
        counts.frames += 1;
        self.fleet.frames.fetch_add(1, Ordering::Relaxed);
        if v.first_frame.is_none() {
            v.first_frame = Some(frame.kind);
        }
        if !v.tried {
            v.tried = true;
            self.fleet.first_tries.fetch_add(1, Ordering::Release);
        }
        if v.since.is_none() {
            v.since = Some(now);
        }
        match frame.kind {
            FrameKind::Snapshot => {
                counts.snapshots += 1;
                if v.version.is_some() {
                    counts.resnapshots += 1;
                }
            }
            FrameKind::Delta => {
                counts.deltas += 1;
                v.deltas += 1;
                if frame.from.is_none() || frame.from != v.version {
                    counts.gaps += 1;
                }
            }
            FrameKind::Other => {}
        }
        if frame.epoch.is_some() {
            v.epoch = frame.epoch;
        }
        if let Some(version) = frame.version
            && v.version.is_none_or(|current| version > current)
        {
            v.version = Some(version);
            if v.frames.len() >= MAX_FRAMES_REMEMBERED {
                v.frames.pop_front();
                counts.frames_forgotten += 1;
            }
            v.frames.push_back((version, now));
        }
    }

    /// Copies the newly settled changes and scores every viewer against them; `true` once
    /// the writer is done and every viewer has reached its last change. The last call
    /// counts what the viewers missed.
    fn score(&self, last: bool) -> bool {
        let mut settled = self.settled.borrow_mut();
        self.fleet.settled.lock().take(self.thread, &mut settled);
        let stride = self.fleet.stride;
        let base = self.base.get();
        let end = base + settled.len() as u64;
        let mut viewers = self.viewers.borrow_mut();
        let mut counts = self.counts.borrow_mut();
        let mut histogram = self.staleness.borrow_mut();
        let residue = |v: &ViewerState| v.number % stride;
        for v in viewers.iter_mut() {
            let Some(since) = v.since else {
                // Not connected yet: changes until now are not this viewer's.
                v.cursor = align(end, residue(v), stride);
                continue;
            };
            while v.cursor < end {
                let change = settled[(v.cursor - base) as usize];
                if change.answered < since {
                    v.cursor += stride;
                    continue;
                }
                while v.frames.front().is_some_and(|&(version, _)| version < change.target) {
                    v.frames.pop_front();
                }
                let Some(&(_, received)) = v.frames.front() else { break };
                if received <= change.answered {
                    counts.before_answer += 1;
                }
                let us = (received.saturating_duration_since(change.answered).as_micros() as u64).max(1);
                histogram.saturating_record(us.min(MAX_LATENCY_US));
                counts.samples += 1;
                v.cursor += stride;
            }
            if last && v.cursor < end {
                counts.missed += (end - v.cursor).div_ceil(stride);
                v.cursor = align(end, residue(v), stride);
            }
        }
        // Forget the changes every viewer has passed.
        let passed = viewers.iter().map(|v| v.cursor).min().unwrap_or(end).min(end);
        if passed > base + 4096 {
            settled.drain(..(passed - base) as usize);
            self.base.set(passed);
        }
        // Caught up: the writer is done and every viewer that streamed has its last change.
        self.fleet.writer_done.load(Ordering::Acquire) && {
            let target = self.fleet.final_target.load(Ordering::Acquire);
            !viewers.iter().any(|v| v.since.is_some() && v.version.is_none_or(|x| x < target))
        }
    }

    /// Counts a viewer's first frame or first failure, once.
    fn first_try_done(&self, index: usize) {
        let mut viewers = self.viewers.borrow_mut();
        if !viewers[index].tried {
            viewers[index].tried = true;
            self.fleet.first_tries.fetch_add(1, Ordering::Release);
        }
    }
}

/// One viewer: open, read, reopen with `Last-Event-ID` after a drop, until stopped.
async fn viewer(ctx: Rc<ThreadCtx>, index: usize, source: Option<IpAddr>) {
    let fleet = ctx.fleet.clone();
    let mut stop = ctx.stop.clone();
    loop {
        if *stop.borrow() {
            return;
        }
        let last_event_id = {
            let viewers = ctx.viewers.borrow();
            let v = &viewers[index];
            v.version.map(|version| format!("{}.{version}", v.epoch.unwrap_or(0)))
        };
        let permit = ctx.opening.acquire().await;
        let opened = tokio::select! {
            biased;
            _ = stop.changed() => return,
            opened = SseStream::open(Open {
                addr: fleet.nodes[index % fleet.nodes.len()].0,
                source,
                host: &fleet.nodes[index % fleet.nodes.len()].1,
                path: &fleet.path,
                last_event_id: last_event_id.as_deref(),
                capture_data: false,
                timeout: fleet.timeout,
            }) => opened,
        };
        drop(permit);
        match opened {
            Err(e) => {
                let key = match &e {
                    SseError::Status { status, code } => match code {
                        Some(code) => format!("{status} {code}"),
                        None => status.to_string(),
                    },
                    SseError::Connect(io) => format!("connect: {}", io.kind()),
                    SseError::Timeout(_) => "timeout".into(),
                    SseError::Io(io) => format!("io: {}", io.kind()),
                    SseError::Protocol(_) => "protocol".into(),
                };
                *ctx.counts.borrow_mut().open_failures.entry(key).or_default() += 1;
                ctx.first_try_done(index);
            }
            Ok(mut stream) => {
                if ctx.viewers.borrow()[index].first_frame.is_some() {
                    ctx.counts.borrow_mut().reconnects += 1;
                }
                ctx.viewers.borrow_mut()[index].streaming = true;
                fleet.connected_now.fetch_add(1, Ordering::Relaxed);
                let mut on_frame = |frame| ctx.on_frame(index, frame, Instant::now());
                let stopped = loop {
                    let read = tokio::select! {
                        biased;
                        _ = stop.changed() => break true,
                        read = stream.read(&mut on_frame) => read,
                    };
                    match read {
                        Ok(true) => {}
                        Ok(false) | Err(_) => break false,
                    }
                };
                fleet.connected_now.fetch_sub(1, Ordering::Relaxed);
                ctx.viewers.borrow_mut()[index].streaming = false;
                {
                    let mut counts = ctx.counts.borrow_mut();
                    counts.bytes += stream.bytes;
                    counts.keep_alives += stream.comments();
                    if stopped {
                        return;
                    }
                    counts.dropped += 1;
                }
                ctx.first_try_done(index);
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(RETRY_PAUSE) => {}
        }
    }
}

/// The source address of viewer `number`: 127.0.0.1 for the first 500, then .2, ...
fn source_of(number: u32, spread: bool) -> Option<IpAddr> {
    if !spread {
        return None;
    }
    let slot = number / VIEWERS_PER_SOURCE;
    let (third, fourth) = ((slot / 254) as u8, (slot % 254 + 1) as u8);
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, third, fourth)))
}

/// Runs one thread's viewers until stopped.
fn run_thread(
    fleet: Arc<Fleet>,
    thread: usize,
    numbers: Vec<u32>,
    spread: bool,
    stop: watch::Receiver<bool>,
) -> Result<ThreadResult, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a viewer runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    let stride = fleet.stride;
    let ctx = Rc::new(ThreadCtx {
        fleet,
        thread,
        viewers: RefCell::new(
            numbers
                .iter()
                .map(|&n| ViewerState {
                    number: u64::from(n),
                    epoch: None,
                    version: None,
                    since: None,
                    frames: VecDeque::new(),
                    cursor: u64::from(n) % stride,
                    streaming: false,
                    first_frame: None,
                    deltas: 0,
                    tried: false,
                })
                .collect(),
        ),
        counts: RefCell::new(Counts::default()),
        opening: Semaphore::new(OPENING_PER_THREAD),
        stop: stop.clone(),
        staleness: RefCell::new(staleness_histogram()),
        settled: RefCell::new(Vec::new()),
        base: Cell::new(0),
    });
    local.block_on(&runtime, async {
        let mut tasks = Vec::with_capacity(numbers.len());
        for (index, &number) in numbers.iter().enumerate() {
            tasks.push(tokio::task::spawn_local(viewer(ctx.clone(), index, source_of(number, spread))));
        }
        let mut stop = stop.clone();
        let mut ticker = tokio::time::interval(SCORE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut caught_up = false;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = ticker.tick() => {
                    if ctx.score(false) && !caught_up {
                        caught_up = true;
                        ctx.fleet.caught_up.fetch_add(1, Ordering::Release);
                    }
                }
            }
        }
        for task in tasks {
            let _ = task.await;
        }
        ctx.score(true);
    });
    let viewers = ctx.viewers.borrow();
    let connected = viewers.iter().filter(|v| v.first_frame.is_some()).count() as u64;
    let result = ThreadResult {
        counts: std::mem::take(&mut *ctx.counts.borrow_mut()),
        staleness: ctx.staleness.borrow().clone(),
        connected,
        never_connected: viewers.len() as u64 - connected,
        without_deltas: viewers.iter().filter(|v| v.first_frame.is_some() && v.deltas == 0).count() as u64,
        without_snapshot: viewers
            .iter()
            .filter(|v| v.first_frame.is_some_and(|k| k != FrameKind::Snapshot))
            .count() as u64,
    };
    Ok(result)
}

/// The writer's shared state.
struct Writer {
    api: Arc<Api>,
    hold_bodies: Vec<Bytes>,
    users: Vec<HeaderValue>,
    hold_uri: hyper::Uri,
    book: Mutex<ChangeBook>,
    pool: Mutex<Pool>,
    shard: Mutex<Shard>,
    fleet: Arc<Fleet>,
    timeout: Duration,
    seconds: usize,
}

/// The writer's live holds.
struct Pool {
    live: VecDeque<(String, u32, u32)>,
    held: Vec<bool>,
    target: usize,
    next_user: u32,
    rng: SmallRng,
}

#[derive(Deserialize)]
struct HoldAnswer {
    hold_id: String,
}

#[derive(Deserialize)]
struct AvailabilityJson {
    version: u64,
}

enum Change {
    Hold { seat: u32, user: u32 },
    Release { hold_id: String, seat: u32, user: u32 },
}

impl Writer {
    fn next_change(&self) -> Option<Change> {
        let mut pool = self.pool.lock();
        if pool.live.len() >= pool.target
            && let Some((hold_id, seat, user)) = pool.live.pop_front()
        {
            return Some(Change::Release { hold_id, seat, user });
        }
        let seats = pool.held.len() as u32;
        for _ in 0..64 {
            let seat = pool.rng.random_range(0..seats);
            if !pool.held[seat as usize] {
                pool.held[seat as usize] = true;
                let user = pool.next_user;
                pool.next_user = (pool.next_user + 1) % self.users.len() as u32;
                return Some(Change::Hold { seat, user });
            }
        }
        None
    }

    async fn run_connection(
        self: Arc<Writer>,
        start: Instant,
        deadline: Instant,
        index: u32,
        of: u32,
        rate: f64,
    ) {
        let mut pacer = crate::schedule::Pacer::new(start, rate, of, index);
        let mut conn: Option<Conn> = None;
        let requests = self.api.requests.clone();
        while pacer.peek() < deadline {
            let intended = pacer.next_slot().await;
            if conn.is_none() {
                match Conn::connect(self.api.addr, self.timeout).await {
                    Ok(c) => conn = Some(c),
                    Err(_) => {
                        let second = self.second(start);
                        self.shard.lock().record_connect_error(second);
                        continue;
                    }
                }
            }
            let Some(change) = self.next_change() else { continue };
            let (op, request) = match &change {
                Change::Hold { seat, user } => (
                    0,
                    requests.build(
                        Method::POST,
                        self.hold_uri.clone(),
                        self.users.get(*user as usize),
                        &[],
                        self.hold_bodies.get(*seat as usize).cloned(),
                    ),
                ),
                Change::Release { hold_id, user, .. } => (
                    1,
                    requests.build(
                        Method::DELETE,
                        uri(&format!("/v1/holds/{hold_id}")).expect("hold ids are URL-safe"),
                        self.users.get(*user as usize),
                        &[],
                        None,
                    ),
                ),
            };
            let Some(c) = conn.as_mut() else { continue };
            let number = self.book.lock().send(Instant::now());
            let result = c.send(request, Body::Keep, self.timeout).await;
            let answered = Instant::now();
            let latency_us = (answered - intended).as_micros() as u64;
            let (resolution, outcome_status) = match &result {
                Ok(reply) => {
                    let made = matches!(
                        (&change, reply.status),
                        (Change::Hold { .. }, 201) | (Change::Release { .. }, 204)
                    );
                    (if made { Resolution::Made } else { Resolution::Failed }, Some(reply.status))
                }
                Err(_) => (Resolution::Unknown, None),
            };
            let mut settled = Vec::new();
            self.book.lock().resolve(number, resolution, answered, &mut settled);
            if !settled.is_empty() {
                self.fleet.settled.lock().items.extend_from_slice(&settled);
            }
            let second = self.second(start);
            match result {
                Ok(reply) => {
                    let code =
                        if reply.status >= 400 { crate::worker::error_code(&reply.body) } else { None };
                    self.shard.lock().record(
                        op,
                        Outcome::Status { status: reply.status, code },
                        latency_us,
                        second,
                    );
                    let mut pool = self.pool.lock();
                    match (change, outcome_status) {
                        (Change::Hold { seat, user }, Some(201)) => {
                            match serde_json::from_slice::<HoldAnswer>(&reply.body) {
                                Ok(answer) if safe_id(&answer.hold_id) => {
                                    pool.live.push_back((answer.hold_id, seat, user))
                                }
                                _ => {}
                            }
                        }
                        (Change::Hold { seat, .. }, _) => pool.held[seat as usize] = false,
                        (Change::Release { seat, .. }, Some(204)) => pool.held[seat as usize] = false,
                        // A release that failed: the seat stays out of play.
                        (Change::Release { .. }, _) => {}
                    }
                }
                Err(e) => {
                    conn = None;
                    self.shard.lock().record(
                        op,
                        Outcome::Transport { timeout: e.is_timeout() },
                        latency_us,
                        second,
                    );
                }
            }
        }
    }

    fn second(&self, start: Instant) -> usize {
        ((Instant::now() - start).as_secs() as usize).min(self.seconds - 1)
    }
}

/// Merges the threads' results into the report's figures.
fn summarise(results: &[ThreadResult]) -> (Counts, Histogram<u64>, [u64; 4]) {
    let mut total = Counts::default();
    let mut histogram = staleness_histogram();
    let mut tallies = [0u64; 4];
    for r in results {
        let c = &r.counts;
        for (k, v) in &c.open_failures {
            *total.open_failures.entry(k.clone()).or_default() += v;
        }
        total.dropped += c.dropped;
        total.reconnects += c.reconnects;
        total.resnapshots += c.resnapshots;
        total.gaps += c.gaps;
        total.frames += c.frames;
        total.snapshots += c.snapshots;
        total.deltas += c.deltas;
        total.keep_alives += c.keep_alives;
        total.bytes += c.bytes;
        total.samples += c.samples;
        total.before_answer += c.before_answer;
        total.missed += c.missed;
        total.frames_forgotten += c.frames_forgotten;
        let _ = histogram.add(&r.staleness);
        tallies[0] += r.connected;
        tallies[1] += r.never_connected;
        tallies[2] += r.without_deltas;
        tallies[3] += r.without_snapshot;
    }
    (total, histogram, tallies)
}

/// Runs the `viewers` scenario.
pub(crate) async fn run(args: &Args) -> Result<Report, LoadError> {
    let started_at = chrono::Utc::now();
    let targets = parse_targets(&args.target, args.allow_remote)?;
    let target = targets[0].clone();
    let requests = Requests::new(&target.host).map_err(|e| LoadError::Usage(e.to_string()))?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let api = Arc::new(Api { addr: target.addr, requests: requests.clone(), timeout });
    if !safe_id(&args.event) {
        return Err(LoadError::Usage(format!("--event {:?} is not an event id", args.event)));
    }
    let mut notes = Vec::new();
    let mut conn = ApiConn::new(api.clone());
    wait_ready(&mut conn, &target).await?;
    let labels = load_event(&mut conn, &target, &args.event, true).await?;
    for other in targets.iter().skip(1) {
        let requests = Requests::new(&other.host).map_err(|e| LoadError::Usage(e.to_string()))?;
        let mut conn = ApiConn::new(Arc::new(Api { addr: other.addr, requests, timeout }));
        wait_ready(&mut conn, other).await?;
        load_event(&mut conn, other, &args.event, false).await?;
    }
    let seat_count = labels.len() as u32;
    let cps = args.changes_per_second;
    let seed = args.seed.unwrap_or_else(rand::random);

    // The fleet's size within the open-file limit.
    let limit = crate::sys::raise_file_limit()
        .map_err(|e| LoadError::Setup(format!("cannot read the limit of open files: {e}")))?;
    let writer_connections = ((cps / 50.0).ceil() as u32).clamp(4, 256);
    let room = limit.soft.saturating_sub(FILE_RESERVE + u64::from(writer_connections));
    let fleet_size = (u64::from(args.viewers)).min(room) as u32;
    if fleet_size < args.viewers {
        notes.push(format!(
            "the OS limit of open files ({} soft, {} hard) caps the fleet at {} of the {} viewers asked; raise it \
             (ulimit -n, or the hard limit in /etc/security/limits.conf) for more",
            limit.soft,
            limit.hard,
            thousands(u64::from(fleet_size)),
            thousands(u64::from(args.viewers))
        ));
    }
    if fleet_size == 0 {
        return Err(LoadError::Setup("the limit of open files leaves no room for viewers".into()));
    }
    let spread = matches!(target.addr.ip(), IpAddr::V4(ip) if ip.is_loopback());
    let source_addresses = if spread { fleet_size.div_ceil(VIEWERS_PER_SOURCE) } else { 0 };
    if !spread && fleet_size > 1000 {
        notes.push(
            "the target is not an IPv4 loopback address: every viewer comes from one address, which the \
             server's per-address stream limit (1,000 by default) may refuse"
                .into(),
        );
    }
    let server_pid = args.server_pid;
    let server_file_limit = server_pid.and_then(crate::sys::open_file_limit);
    if let Some(server_limit) = server_file_limit
        && u64::from(fleet_size) + 64 > server_limit
    {
        notes.push(format!(
            "the server's limit of open files ({server_limit}) is below the fleet ({fleet_size}) plus its own files: \
             it will refuse connections"
        ));
    }
    if server_pid.is_none() {
        notes.push(
            "server memory not measured: give --server-pid PID of a local server to read its RSS".into(),
        );
    }

    // The writer's users: under 10 holds/s and a few live holds each.
    let pool_target = ((cps / 10.0).round() as usize).clamp(8, 1024).min((seat_count / 2).max(1) as usize);
    let needed = ((cps / 2.0 / 5.0).ceil() as u32).max(pool_target.div_ceil(4) as u32).max(4);
    let user_count = args.users.unwrap_or(needed);
    let prefix = user_prefix(args, &mut SmallRng::seed_from_u64(seed))?;
    let names: Vec<String> = (0..user_count).map(|i| format!("{prefix}{i}")).collect();
    let users = mint_tokens(&api, &names).await?;

    let rss_before = server_pid.and_then(crate::sys::rss_bytes);
    let stride = ((f64::from(fleet_size) * cps / SAMPLE_BUDGET_PER_SECOND).ceil() as u64).max(1);
    let threads = args.threads.min(fleet_size).max(1) as usize;
    let fleet = Arc::new(Fleet {
        nodes: targets.iter().map(|t| (t.addr, t.host.clone())).collect(),
        path: format!("/v1/events/{}/availability/stream", args.event),
        timeout,
        stride,
        first_tries: AtomicU32::new(0),
        connected_now: AtomicU64::new(0),
        frames: AtomicU64::new(0),
        settled: Mutex::new(SettledLog { base: 0, items: Vec::new(), taken: vec![0; threads] }),
        final_target: AtomicU64::new(0),
        writer_done: AtomicBool::new(false),
        caught_up: AtomicU32::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut handles = Vec::new();
    for t in 0..threads {
        let numbers: Vec<u32> = (t as u32..fleet_size).step_by(threads).collect();
        let fleet = fleet.clone();
        let stop = stop_rx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("viewers-{t}"))
            .spawn(move || run_thread(fleet, t, numbers, spread, stop))
            .map_err(|e| LoadError::Internal(format!("cannot start a viewer thread: {e}")))?;
        handles.push(handle);
    }
    let stop_fleet = |handles: Vec<std::thread::JoinHandle<Result<ThreadResult, String>>>| {
        let _ = stop_tx.send(true);
        let mut results = Vec::new();
        for handle in handles {
            match handle.join() {
                Ok(Ok(result)) => results.push(result),
                Ok(Err(e)) => return Err(LoadError::Internal(e)),
                Err(_) => return Err(LoadError::Internal("a viewer thread panicked".into())),
            }
        }
        Ok(results)
    };

    // Wait for every viewer's first frame (or failure), then let the server settle.
    let gate = Instant::now();
    let mut last_print = Instant::now();
    while fleet.first_tries.load(Ordering::Acquire) < fleet_size && gate.elapsed() < FLEET_GATE {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if !args.quiet && last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            eprintln!(
                "connecting: {} of {} viewers streaming",
                thousands(fleet.connected_now.load(Ordering::Relaxed)),
                thousands(u64::from(fleet_size))
            );
        }
    }
    if fleet.first_tries.load(Ordering::Acquire) < fleet_size {
        notes.push(format!(
            "{} viewers had no first frame after {} s; the writer started anyway",
            fleet_size - fleet.first_tries.load(Ordering::Acquire),
            FLEET_GATE.as_secs()
        ));
    }
    tokio::time::sleep(IDLE_SETTLE).await;
    let idle_viewers = fleet.connected_now.load(Ordering::Relaxed);
    let rss_idle = server_pid.and_then(crate::sys::rss_bytes);

    // The writer.
    let reply = conn
        .call(
            Method::GET,
            &format!("/v1/events/{}/availability", args.event),
            None,
            &[("accept", HeaderValue::from_static("application/json"))],
            None,
        )
        .await?;
    if reply.status != 200 {
        let _ = stop_fleet(handles);
        return Err(LoadError::Protocol(format!(
            "GET /v1/events/{}/availability (JSON) answered {}: {}",
            args.event,
            reply.status,
            snippet(&reply.body)
        )));
    }
    let v0 = parse::<AvailabilityJson>(&reply, "the availability JSON")?.version;
    let duration = Duration::from_secs_f64(args.duration);
    let seconds = (duration.as_secs_f64().ceil() as usize).max(1);
    let writer = Arc::new(Writer {
        api: api.clone(),
        hold_bodies: labels
            .iter()
            .map(|l| Bytes::from(serde_json::json!({"seats": [l]}).to_string()))
            .collect(),
        users,
        hold_uri: uri(&format!("/v1/events/{}/holds", args.event))
            .map_err(|e| LoadError::Usage(e.to_string()))?,
        book: Mutex::new(ChangeBook::new(v0)),
        pool: Mutex::new(Pool {
            live: VecDeque::new(),
            held: vec![false; seat_count as usize],
            target: pool_target,
            next_user: 0,
            rng: SmallRng::seed_from_u64(seed),
        }),
        shard: Mutex::new(Shard::new(2, AuditLog::default())),
        fleet: fleet.clone(),
        timeout,
        seconds,
    });
    let start = Instant::now();
    let deadline = start + duration;
    let mut writers = tokio::task::JoinSet::new();
    for index in 0..writer_connections {
        writers.spawn(writer.clone().run_connection(start, deadline, index, writer_connections, cps));
    }
    let mut progress = Vec::new();
    let mut ticker = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut last_frames = fleet.frames.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            joined = writers.join_next() => match joined {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    let _ = stop_fleet(handles);
                    return Err(LoadError::Internal(format!("a writer task failed: {e}")));
                }
                None => break,
            },
            _ = ticker.tick() => {
                let frames = fleet.frames.load(Ordering::Relaxed);
                let mut window = crate::stats::window_histogram();
                let (requests, errors, answers) = {
                    let mut shard = writer.shard.lock();
                    let answers = shard.drain_window(&mut window);
                    (shard.requests, shard.errors, answers)
                };
                let p99 = if window.is_empty() { 0 } else { window.value_at_quantile(0.99) };
                progress.push(crate::report::ProgressSample {
                    second: (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                    rate: answers as f64,
                    p99_us: p99,
                    errors,
                });
                if !args.quiet {
                    eprintln!(
                        "{:>6.1}s  changes {}  viewers streaming {}  frames/s {}  writer p99 {}",
                        start.elapsed().as_secs_f64(),
                        thousands(requests),
                        thousands(fleet.connected_now.load(Ordering::Relaxed)),
                        thousands(frames - last_frames),
                        human_us(p99)
                    );
                }
                last_frames = frames;
            }
        }
    }
    let elapsed = start.elapsed();
    let last_target = writer.book.lock().last_target;
    fleet.final_target.store(last_target, Ordering::Release);
    fleet.writer_done.store(true, Ordering::Release);
    let catch_up = Instant::now();
    while fleet.caught_up.load(Ordering::Acquire) < threads as u32 && catch_up.elapsed() < CATCH_UP_LIMIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let caught_up = fleet.caught_up.load(Ordering::Acquire) >= threads as u32;
    let rss_after = server_pid.and_then(crate::sys::rss_bytes);
    let results = stop_fleet(handles)?;

    // Release the writer's holds, so the next run starts from a clean event.
    let live: Vec<(String, u32, u32)> = writer.pool.lock().live.drain(..).collect();
    let users_for_cleanup = writer.users.clone();
    let _ = crate::api::parallel(
        &api,
        live,
        crate::api::COORDINATOR_LANES,
        move |mut conn, (hold, _, user): (String, u32, u32)| {
            let auth = users_for_cleanup.get(user as usize).cloned();
            async move {
                let _ =
                    conn.call(Method::DELETE, &format!("/v1/holds/{hold}"), auth.as_ref(), &[], None).await;
                (conn, Ok(()))
            }
        },
    )
    .await;

    let (counts, histogram, [connected, never_connected, without_deltas, without_snapshot]) =
        summarise(&results);
    let shard = std::mem::replace(&mut *writer.shard.lock(), Shard::new(2, AuditLog::default()));
    let changes = shard.ops[0].status(201) + shard.ops[1].status(204);
    let changes_unknown = shard.ops.iter().map(|o| o.transport_errors).sum::<u64>();
    let changes_failed = shard.requests - changes - changes_unknown;
    if changes_unknown > 0 {
        notes.push(format!(
            "{changes_unknown} changes got no answer: whether they were made is unknown, so version bounds after \
             them may be off by that much"
        ));
    }
    if counts.frames_forgotten > 0 {
        notes.push(format!("{} frames were forgotten before their changes settled", counts.frames_forgotten));
    }
    if stride > 1 {
        notes.push(format!(
            "each viewer scored one change in {stride} (viewer i the changes numbered i mod {stride}), so that \
             every change is still scored by about {} viewers",
            thousands(u64::from(fleet_size) / stride)
        ));
    }
    let limited = shard.ops[0].status(429);
    if limited > 0 {
        notes.push(format!("{limited} writer holds were rate limited (429): give the writer more --users"));
    }
    let server_memory = match (server_pid, rss_before, rss_idle, rss_after) {
        (Some(pid), Some(before), Some(idle), Some(after)) => Some(ServerMemory {
            pid,
            before_bytes: before,
            idle_bytes: idle,
            after_bytes: after,
            per_idle_viewer_bytes: idle.saturating_sub(before) / idle_viewers.max(1),
            server_file_limit,
        }),
        (Some(pid), ..) => {
            notes.push(format!("cannot read /proc/{pid}/status: server memory not measured"));
            None
        }
        _ => None,
    };
    let curve = if histogram.is_empty() {
        Vec::new()
    } else {
        crate::stats::CURVE_PERCENTILES.iter().map(|&p| (p, histogram.value_at_percentile(p))).collect()
    };
    let mut buckets = Vec::new();
    if !histogram.is_empty() {
        let mut upper = 1_000u64;
        let mut below = 0u64;
        loop {
            let count = histogram.count_between(0, upper) - below;
            below += count;
            buckets.push((upper, count));
            if below >= histogram.len() || upper >= MAX_LATENCY_US {
                break;
            }
            upper *= 2;
        }
    }
    let viewers = ViewersReport {
        asked: args.viewers,
        fleet: fleet_size,
        file_limit: limit.soft,
        source_addresses,
        connected,
        never_connected,
        open_failures: counts.open_failures.clone(),
        dropped: counts.dropped,
        reconnects: counts.reconnects,
        resnapshots: counts.resnapshots,
        gaps: counts.gaps,
        frames: counts.frames,
        snapshots: counts.snapshots,
        deltas: counts.deltas,
        keep_alives: counts.keep_alives,
        bytes: counts.bytes,
        viewers_without_deltas: without_deltas,
        viewers_without_snapshot: without_snapshot,
        changes_per_second: cps,
        changes,
        changes_failed,
        changes_unknown,
        first_version: v0,
        last_version: last_target,
        sample_stride: stride,
        samples: counts.samples,
        before_answer: counts.before_answer,
        missed: counts.missed,
        caught_up,
        staleness_us: Latency::of(&histogram),
        staleness_curve: curve,
        staleness_buckets: buckets,
        server_memory,
    };
    let seconds_f = elapsed.as_secs_f64();
    let operations: Vec<OpSummary> = ["hold", "release"]
        .iter()
        .enumerate()
        .map(|(i, n)| OpSummary::of(n, &shard.ops[i], seconds_f))
        .collect();
    let timeline = Timeline {
        seconds,
        operations: ["hold", "release"]
            .iter()
            .enumerate()
            .map(|(i, n)| ((*n).to_owned(), shard.series(i, seconds)))
            .collect(),
        errors: shard.series(2, seconds),
    };
    let mut report = Report::of_scenario(
        args,
        &targets.iter().map(|t| t.url.as_str()).collect::<Vec<_>>().join(","),
        started_at,
        elapsed,
        &shard,
        operations,
        timeline,
        notes,
    );
    report.rate = Some(cps);
    report.model = "open";
    report.connections = writer_connections;
    report.threads = threads as u32;
    report.event = Some(args.event.clone());
    report.seat_count = Some(seat_count);
    report.users = Some(user_count);
    report.user_prefix = Some(prefix);
    report.seed = seed;
    report.progress = progress;
    report.viewers = Some(viewers);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_wait_for_every_change_sent_before_the_answer() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut book = ChangeBook::new(100);
        let mut out = Vec::new();
        let a = book.send(at(0));
        let b = book.send(at(1));
        let c = book.send(at(5));
        // b answers first, at 3 ms: a (sent before) is still in flight.
        book.resolve(b, Resolution::Made, at(3), &mut out);
        assert!(out.is_empty(), "a's outcome decides b's bound");
        // a fails at 4 ms: b's bound counts b alone; c was sent after b's answer.
        book.resolve(a, Resolution::Failed, at(4), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].target, 101);
        assert_eq!(out[0].answered, at(3));
        book.resolve(c, Resolution::Made, at(6), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].target, 102);
        assert_eq!(book.last_target, 102);
    }

    #[test]
    fn a_change_in_flight_beside_another_raises_its_bound() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut book = ChangeBook::new(0);
        let mut out = Vec::new();
        let a = book.send(at(0));
        let b = book.send(at(1));
        book.resolve(b, Resolution::Made, at(4), &mut out);
        book.resolve(a, Resolution::Made, at(5), &mut out);
        // Both were sent before b's answer and both were made: b is within version 2.
        assert_eq!(out.iter().map(|s| s.target).collect::<Vec<_>>(), vec![2, 2]);
    }

    #[test]
    fn alignment_keeps_a_viewers_residue() {
        assert_eq!(align(0, 0, 1), 0);
        assert_eq!(align(7, 7, 1), 7);
        assert_eq!(align(10, 3, 4), 11);
        assert_eq!(align(11, 3, 4), 11);
        assert_eq!(align(12, 3, 4), 15);
    }

    #[test]
    fn sources_spread_over_loopback_addresses() {
        assert_eq!(source_of(0, true), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))));
        assert_eq!(source_of(VIEWERS_PER_SOURCE, true), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
        assert_eq!(source_of(VIEWERS_PER_SOURCE * 254, true), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1))));
        assert_eq!(source_of(5, false), None);
    }
}
