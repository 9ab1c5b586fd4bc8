//! The `onsale` scenario: simulated fans arriving at an open rate (`--rate` per second,
//! for `--duration`, at most `--users`), each through the whole story on a connection of
//! their own:
//!
//! 1. the waiting room, when the event's queue is on: a proof-of-work challenge solved
//!    when the event asks for one (SHA-256(challenge || nonce) with `bits` leading zero
//!    bits, decimal nonces counting up, as `web/pow.js` does), the join, then the entry
//!    polled at the interval the server advises until admitted (or expired);
//! 2. the event and its seat map (`/seats`, gzip, as a browser asks);
//! 3. the live map for `--follow-ms`: its snapshot is the bitmap the fan picks from;
//! 4. a hold of `--seats-per-user` seats, best available or adjacent seats from a random
//!    place in the bitmap (`--pick`), with the admission token; a seat taken meanwhile
//!    (409, or 422 ORPHAN_SEAT) makes the fan pick again, at most three times in all;
//! 5. payment with `tok_random` (the simulated gateway declines some), or, for
//!    `--abandon-rate` of the fans, nothing: the hold is left to expire. A declined fan
//!    releases the hold.
//!
//! Every answer is logged for the oversell [`audit`](crate::audit), which runs at the end
//! as for `holds`; holds left open are then released. Per-step latency comes from the
//! operations' histograms; conversion from the fans' outcomes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Uri};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::api::{Api, ApiConn, parse, snippet};
use crate::audit::{AuditLog, Bought, OpenHold};
use crate::client::{Body, Conn, Reply, Requests, uri};
use crate::inspect::{audit_event, release_open};
use crate::report::{Report, Timeline, thousands};
use crate::setup::{load_event, mint_tokens, user_prefix, wait_ready};
use crate::sse::{FrameKind, Open, SseStream};
use crate::stats::{Latency, MAX_LATENCY_US, OpSummary, Outcome, Shard, human_us};
use crate::target::parse_targets;
use crate::worker::{error_code, safe_id};
use crate::{Args, LoadError, Pick};

/// The operations, in report order.
const OPS: [&str; 9] =
    ["challenge", "join", "poll", "event", "seats", "stream", "hold", "checkout", "release"];
const CHALLENGE: usize = 0;
const JOIN: usize = 1;
const POLL: usize = 2;
const EVENT: usize = 3;
const SEATS: usize = 4;
const STREAM: usize = 5;
const HOLD: usize = 6;
const CHECKOUT: usize = 7;
const RELEASE: usize = 8;

/// How long fans already in flight may go on after the arrivals stopped.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Arrival rate without `--rate`.
const DEFAULT_RATE: f64 = 20.0;
/// Hold attempts per fan.
const HOLD_ATTEMPTS: usize = 3;
/// Poll interval bounds around the server's advice.
const MIN_POLL: Duration = Duration::from_millis(200);
const MAX_POLL: Duration = Duration::from_secs(5);
/// Most proof-of-work bits the generator solves (2^bits hashes per join).
const MAX_POW_BITS: u8 = 24;

/// The onsale's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct OnsaleReport {
    pub arrival_rate: f64,
    /// Fans the run could have (`--users`).
    pub users: u32,
    pub queue_enabled: bool,
    pub proof_of_work_bits: u8,
    pub seats_per_user: u32,
    pub abandon_rate: f64,
    pub pick: Pick,
    pub arrived: u64,
    /// Arrivals that waited for a free slot under `--connections`.
    pub delayed_arrivals: u64,
    pub joined: u64,
    /// Admitted by the waiting room (everyone who arrived when the queue is off).
    pub admitted: u64,
    pub queue_expired: u64,
    pub held: u64,
    pub seats_held: u64,
    pub paid: u64,
    pub seats_bought: u64,
    pub declined: u64,
    pub abandoned: u64,
    /// Fans who found no seats to hold.
    pub sold_out: u64,
    /// Fans stopped by an error answer or a lost one.
    pub failed: u64,
    /// Fans still waiting in the queue when the run ended.
    pub unfinished: u64,
    /// `paid / arrived`.
    pub conversion: f64,
    /// Hashes the fans computed for proofs of work.
    pub pow_hashes: u64,
    /// From the join to the admission.
    pub queue_wait_us: Latency,
    /// From arrival to the order.
    pub time_to_order_us: Latency,
}

impl OnsaleReport {
    /// The terminal summary's part.
    pub fn text(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "\nonsale: {} fans arrived ({} delayed by --connections); queue {}{}",
            thousands(self.arrived),
            thousands(self.delayed_arrivals),
            if self.queue_enabled { "on" } else { "off" },
            if self.proof_of_work_bits > 0 {
                format!(
                    ", proof of work {} bits ({} hashes)",
                    self.proof_of_work_bits,
                    thousands(self.pow_hashes)
                )
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "  admitted {}  held {} ({} seats)  paid {} ({} seats)  declined {}  abandoned {}  sold out {}  \
             failed {}  queue expired {}  unfinished {}: conversion {:.1}%",
            thousands(self.admitted),
            thousands(self.held),
            thousands(self.seats_held),
            thousands(self.paid),
            thousands(self.seats_bought),
            thousands(self.declined),
            thousands(self.abandoned),
            thousands(self.sold_out),
            thousands(self.failed),
            thousands(self.queue_expired),
            thousands(self.unfinished),
            self.conversion * 100.0
        );
        let q = &self.queue_wait_us;
        let t = &self.time_to_order_us;
        let _ = writeln!(
            out,
            "  queue wait p50 {} p99 {} max {}; arrival to order p50 {} p99 {} max {}",
            human_us(q.p50),
            human_us(q.p99),
            human_us(q.max),
            human_us(t.p50),
            human_us(t.p99),
            human_us(t.max)
        );
    }
}

/// What every fan shares.
struct Plan {
    /// Every target with its `Host`; fan `u` talks to `nodes[u % len]` (the first target
    /// also serves the run's set-up and audit).
    nodes: Vec<(Arc<Api>, String)>,
    event: String,
    labels: Vec<String>,
    /// Row number (dense) and seat number of each seat, for adjacent picks.
    rows: Vec<(u32, u32)>,
    users: Vec<HeaderValue>,
    queue: bool,
    pow_bits: u8,
    seats_per_user: u32,
    abandon_rate: f64,
    pick: Pick,
    follow: Duration,
    timeout: Duration,
    /// Fans waiting in the queue give up at this time.
    hard_deadline: Instant,
    start: Instant,
    /// Arrivals stop at this time, or after `user_count` fans.
    deadline: Instant,
    user_count: u32,
    rate: f64,
    threads: u32,
    /// Fans in flight at once per thread.
    slots_per_thread: usize,
    seed: u64,
    uris: Uris,
}

struct Uris {
    challenge: Uri,
    join: Uri,
    event: Uri,
    seats: Uri,
    hold: Uri,
    stream: String,
}

/// The fans' outcomes on one thread.
#[derive(Default)]
struct Tally {
    arrived: u64,
    delayed: u64,
    joined: u64,
    admitted: u64,
    queue_expired: u64,
    held: u64,
    seats_held: u64,
    paid: u64,
    seats_bought: u64,
    declined: u64,
    abandoned: u64,
    sold_out: u64,
    failed: u64,
    unfinished: u64,
    pow_hashes: u64,
    queue_wait: Option<Histogram<u64>>,
    to_order: Option<Histogram<u64>>,
}

impl Tally {
    fn merge(&mut self, o: &Tally) {
        self.arrived += o.arrived;
        self.delayed += o.delayed;
        self.joined += o.joined;
        self.admitted += o.admitted;
        self.queue_expired += o.queue_expired;
        self.held += o.held;
        self.seats_held += o.seats_held;
        self.paid += o.paid;
        self.seats_bought += o.seats_bought;
        self.declined += o.declined;
        self.abandoned += o.abandoned;
        self.sold_out += o.sold_out;
        self.failed += o.failed;
        self.unfinished += o.unfinished;
        self.pow_hashes += o.pow_hashes;
        for (mine, theirs) in [(&mut self.queue_wait, &o.queue_wait), (&mut self.to_order, &o.to_order)] {
            if let Some(theirs) = theirs {
                let _ = mine.get_or_insert_with(histogram).add(theirs);
            }
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

fn record(h: &mut Option<Histogram<u64>>, since: Instant) {
    let us = (since.elapsed().as_micros() as u64).clamp(1, MAX_LATENCY_US);
    h.get_or_insert_with(histogram).saturating_record(us);
}

#[derive(Deserialize)]
struct EventInfo {
    queue: Option<QueueInfo>,
}

#[derive(Deserialize)]
struct QueueInfo {
    enabled: bool,
    proof_of_work_bits: u8,
}

#[derive(Deserialize)]
struct ChallengeAnswer {
    challenge: String,
    bits: u8,
}

#[derive(Deserialize)]
struct QueueEntry {
    queue_id: String,
    state: String,
    poll_after_seconds: Option<u64>,
    admission_token: Option<String>,
}

#[derive(Deserialize)]
struct HoldAnswer {
    hold_id: String,
    seats: Vec<HeldSeat>,
}

#[derive(Deserialize)]
struct HeldSeat {
    index: u32,
}

#[derive(Deserialize)]
struct OrderAnswer {
    order_id: String,
}

#[derive(Deserialize)]
struct SnapshotData {
    bitmap_base64: String,
}

/// A nonce such that SHA-256(challenge || nonce) starts with `bits` zero bits, and the
/// hashes it took (the server's scheme, `waiting_room/pow.rs`).
pub fn solve_pow(challenge: &str, bits: u8) -> (String, u64) {
    let mut prefix = Sha256::new();
    prefix.update(challenge.as_bytes());
    let mut nonce = 0u64;
    loop {
        let text = nonce.to_string();
        let hash = prefix.clone().chain_update(text.as_bytes()).finalize();
        if leading_zero_bits(&hash) >= u32::from(bits) {
            return (text, nonce + 1);
        }
        nonce += 1;
    }
}

fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut bits = 0;
    for &byte in hash {
        if byte != 0 {
            return bits + byte.leading_zeros();
        }
        bits += 8;
    }
    bits
}

/// Row and seat number of each seat from its `SECTION-ROW-NUMBER` label.
fn rows_of(labels: &[String]) -> Vec<(u32, u32)> {
    let mut ids: HashMap<&str, u32> = HashMap::new();
    labels
        .iter()
        .map(|label| match label.rsplit_once('-') {
            Some((row, number)) => {
                let next = ids.len() as u32;
                (*ids.entry(row).or_insert(next), number.parse().unwrap_or(u32::MAX))
            }
            None => (u32::MAX, u32::MAX),
        })
        .collect()
}

fn is_available(bitmap: &[u8], seat: usize) -> bool {
    bitmap.get(seat / 8).is_some_and(|b| b & (1 << (seat % 8)) != 0)
}

fn take(bitmap: &mut [u8], seat: usize) {
    if let Some(b) = bitmap.get_mut(seat / 8) {
        *b &= !(1 << (seat % 8));
    }
}

/// `count` adjacent available seats in one row, searching from a random seat onwards.
fn pick_adjacent(bitmap: &[u8], rows: &[(u32, u32)], count: usize, rng: &mut SmallRng) -> Option<Vec<u32>> {
    let n = rows.len();
    if n < count || count == 0 {
        return None;
    }
    let from = rng.random_range(0..n);
    (0..n).map(|k| (from + k) % n).find_map(|start| {
        if start + count > n {
            return None;
        }
        let (row, number) = rows[start];
        let fits = (0..count).all(|j| {
            let seat = start + j;
            is_available(bitmap, seat)
                && rows[seat].0 == row
                && row != u32::MAX
                && rows[seat].1 == number.wrapping_add(j as u32)
        });
        fits.then(|| (start as u32..(start + count) as u32).collect())
    })
}

/// One fan's connection and the thread's measurements.
struct Fan {
    plan: Arc<Plan>,
    shard: Arc<Mutex<Shard>>,
    tally: Arc<Mutex<Tally>>,
    user: u32,
    conn: Option<Conn>,
    rng: SmallRng,
}

impl Fan {
    /// The node this fan talks to, and its `Host`.
    fn node(&self) -> &(Arc<Api>, String) {
        &self.plan.nodes[self.user as usize % self.plan.nodes.len()]
    }

    fn auth(&self) -> Option<&HeaderValue> {
        self.plan.users.get(self.user as usize)
    }

    fn second(&self) -> usize {
        (Instant::now() - self.plan.start).as_secs() as usize
    }

    /// Sends one request and records it under `op`; `None` when no answer came.
    async fn call(&mut self, op: usize, request: Request<Full<Bytes>>, body: Body) -> Option<Reply> {
        if self.conn.is_none() {
            match Conn::connect(self.node().0.addr, self.plan.timeout).await {
                Ok(conn) => self.conn = Some(conn),
                Err(_) => {
                    let second = self.second();
                    self.shard.lock().record_connect_error(second);
                    return None;
                }
            }
        }
        let conn = self.conn.as_mut()?;
        let sent = Instant::now();
        let result = conn.send(request, body, self.plan.timeout).await;
        let latency_us = sent.elapsed().as_micros() as u64;
        let second = self.second();
        match result {
            Ok(reply) => {
                let code = if reply.status >= 400 { error_code(&reply.body) } else { None };
                self.shard.lock().record(
                    op,
                    Outcome::Status { status: reply.status, code },
                    latency_us,
                    second,
                );
                Some(reply)
            }
            Err(e) => {
                self.conn = None;
                self.shard.lock().record(
                    op,
                    Outcome::Transport { timeout: e.is_timeout() },
                    latency_us,
                    second,
                );
                None
            }
        }
    }

    fn build(
        &self,
        method: Method,
        target: Uri,
        extra: &[(&'static str, HeaderValue)],
        json: Option<Bytes>,
    ) -> Request<Full<Bytes>> {
        self.node().0.requests.build(method, target, self.auth(), extra, json)
    }

    /// The whole story of one fan.
    async fn run(mut self, arrival: Instant) {
        self.tally.lock().arrived += 1;
        let admission = match self.queue().await {
            Ok(admission) => admission,
            Err(()) => return,
        };
        self.tally.lock().admitted += 1;

        let plan = self.plan.clone();
        let request = self.build(Method::GET, plan.uris.event.clone(), &[], None);
        self.call(EVENT, request, Body::Drain).await;
        let gzip = [("accept-encoding", HeaderValue::from_static("gzip"))];
        let request = self.build(Method::GET, plan.uris.seats.clone(), &gzip, None);
        self.call(SEATS, request, Body::Drain).await;
        let mut bitmap = self.follow().await;

        // Hold.
        let count = plan.seats_per_user as usize;
        let random_first = match plan.pick {
            Pick::Best => false,
            Pick::Random => true,
            Pick::Mixed => self.user % 2 == 1,
        };
        let mut extra = Vec::new();
        if let Some(token) = &admission {
            extra.push(("admission-token", token.clone()));
        }
        let mut held: Option<(String, Vec<u32>)> = None;
        for attempt in 0..HOLD_ATTEMPTS {
            let random = random_first && attempt + 1 < HOLD_ATTEMPTS;
            let asked = match (&bitmap, random) {
                (Some(bitmap), true) => pick_adjacent(bitmap, &plan.rows, count, &mut self.rng),
                _ => None,
            };
            let body = match &asked {
                Some(seats) => {
                    let labels: Vec<&str> = seats.iter().map(|&s| plan.labels[s as usize].as_str()).collect();
                    serde_json::json!({ "seats": labels })
                }
                None => serde_json::json!({ "best_available": { "count": count } }),
            };
            let request =
                self.build(Method::POST, plan.uris.hold.clone(), &extra, Some(Bytes::from(body.to_string())));
            let Some(reply) = self.call(HOLD, request, Body::Keep).await else {
                // No answer: the server may hold these seats; the audit leaves them out.
                let mut tally = self.tally.lock();
                tally.failed += 1;
                drop(tally);
                let mut shard = self.shard.lock();
                for &seat in asked.iter().flatten() {
                    shard.audit.uncertain(seat);
                }
                if asked.is_none() {
                    shard.audit.contradiction(
                        "a best-available hold got no answer: the seats it may hold are unknown".into(),
                    );
                }
                return;
            };
            match (reply.status, error_code(&reply.body)) {
                (201, _) => match serde_json::from_slice::<HoldAnswer>(&reply.body) {
                    Ok(answer) if safe_id(&answer.hold_id) => {
                        let seats: Vec<u32> = answer.seats.iter().map(|s| s.index).collect();
                        let mut shard = self.shard.lock();
                        if let Some(asked) = &asked
                            && *asked != seats
                        {
                            shard.audit.contradiction(format!(
                                "hold {} answered 201 for seats {seats:?}; the request asked for {asked:?}",
                                answer.hold_id
                            ));
                        }
                        for &seat in &seats {
                            shard.audit.held(seat);
                        }
                        held = Some((answer.hold_id, seats));
                        break;
                    }
                    _ => {
                        let mut shard = self.shard.lock();
                        shard.audit.contradiction(format!(
                            "a hold answered 201 with an unreadable body: {}",
                            snippet(&reply.body)
                        ));
                        drop(shard);
                        self.tally.lock().failed += 1;
                        return;
                    }
                },
                (409, Some("NOT_ENOUGH_SEATS")) => {
                    self.tally.lock().sold_out += 1;
                    return;
                }
                (409, Some("SEATS_UNAVAILABLE")) | (422, Some("ORPHAN_SEAT")) => {
                    if let (Some(bitmap), Some(asked)) = (bitmap.as_mut(), &asked) {
                        for &seat in asked {
                            take(bitmap, seat as usize);
                        }
                    }
                }
                _ => {
                    self.tally.lock().failed += 1;
                    return;
                }
            }
        }
        let Some((hold_id, seats)) = held else {
            self.tally.lock().failed += 1;
            return;
        };
        {
            let mut tally = self.tally.lock();
            tally.held += 1;
            tally.seats_held += seats.len() as u64;
        }
        let user = self.user;
        let open = |release_tried: bool, checkout_tried: bool| {
            seats
                .iter()
                .map(|&seat| OpenHold { hold_id: hold_id.clone(), seat, user, release_tried, checkout_tried })
                .collect::<Vec<_>>()
        };

        if self.rng.random::<f64>() < plan.abandon_rate {
            self.tally.lock().abandoned += 1;
            let mut shard = self.shard.lock();
            for hold in open(false, false) {
                shard.audit.left_open(hold);
            }
            return;
        }

        // Pay.
        let key = HeaderValue::from_str(&format!("loadgen-{hold_id}"))
            .unwrap_or(HeaderValue::from_static("loadgen"));
        let body = Bytes::from_static(br#"{"payment":{"method":"card","token":"tok_random"}}"#);
        let checkout = uri(&format!("/v1/holds/{hold_id}/checkout")).expect("hold ids are URL-safe");
        let request = self.build(Method::POST, checkout, &[("idempotency-key", key)], Some(body));
        let reply = self.call(CHECKOUT, request, Body::Keep).await;
        match reply.as_ref().map(|r| r.status) {
            Some(201) => match reply.as_ref().map(|r| serde_json::from_slice::<OrderAnswer>(&r.body)) {
                Some(Ok(order)) => {
                    {
                        let mut tally = self.tally.lock();
                        tally.paid += 1;
                        tally.seats_bought += seats.len() as u64;
                        record(&mut tally.to_order, arrival);
                    }
                    let mut shard = self.shard.lock();
                    for &seat in &seats {
                        shard.audit.bought(Bought {
                            order_id: order.order_id.clone(),
                            hold_id: hold_id.clone(),
                            seat,
                            user,
                        });
                    }
                }
                _ => {
                    self.tally.lock().failed += 1;
                    let mut shard = self.shard.lock();
                    for hold in open(false, true) {
                        shard.audit.left_open(hold);
                    }
                }
            },
            Some(402) => {
                self.tally.lock().declined += 1;
                let release = uri(&format!("/v1/holds/{hold_id}")).expect("hold ids are URL-safe");
                let request = self.build(Method::DELETE, release, &[], None);
                let reply = self.call(RELEASE, request, Body::Keep).await;
                let mut shard = self.shard.lock();
                match reply.map(|r| r.status) {
                    Some(204) => seats.iter().for_each(|&s| shard.audit.released(s)),
                    Some(410) => seats.iter().for_each(|&s| shard.audit.expired(s)),
                    _ => open(true, true).into_iter().for_each(|h| shard.audit.left_open(h)),
                }
            }
            Some(410) => {
                self.tally.lock().failed += 1;
                let mut shard = self.shard.lock();
                seats.iter().for_each(|&s| shard.audit.expired(s));
            }
            _ => {
                self.tally.lock().failed += 1;
                let mut shard = self.shard.lock();
                for hold in open(false, true) {
                    shard.audit.left_open(hold);
                }
            }
        }
    }

    /// The waiting room: the admission token, `None` when the queue is off, `Err` when
    /// the fan's story ends there.
    async fn queue(&mut self) -> Result<Option<HeaderValue>, ()> {
        let plan = self.plan.clone();
        if !plan.queue {
            return Ok(None);
        }
        let mut body = None;
        if plan.pow_bits > 0 {
            let request = self.build(Method::POST, plan.uris.challenge.clone(), &[], None);
            let reply = self.call(CHALLENGE, request, Body::Keep).await;
            let challenge = match reply
                .as_ref()
                .map(|r| (r.status, serde_json::from_slice::<ChallengeAnswer>(&r.body)))
            {
                Some((200, Ok(c))) if c.bits <= MAX_POW_BITS => c,
                _ => return self.fail(),
            };
            let (text, bits) = (challenge.challenge.clone(), challenge.bits);
            let Ok((nonce, hashes)) = tokio::task::spawn_blocking(move || solve_pow(&text, bits)).await
            else {
                return self.fail();
            };
            self.tally.lock().pow_hashes += hashes;
            body = Some(Bytes::from(
                serde_json::json!({"pow": {"challenge": challenge.challenge, "nonce": nonce}}).to_string(),
            ));
        }
        let request = self.build(Method::POST, plan.uris.join.clone(), &[], body);
        let reply = self.call(JOIN, request, Body::Keep).await;
        let mut entry =
            match reply.as_ref().map(|r| (r.status, serde_json::from_slice::<QueueEntry>(&r.body))) {
                Some((200, Ok(entry))) if safe_id(&entry.queue_id) => entry,
                _ => return self.fail(),
            };
        self.tally.lock().joined += 1;
        let joined = Instant::now();
        let poll = uri(&format!("/v1/events/{}/queue/{}", plan.event, entry.queue_id)).map_err(|_| ())?;
        loop {
            match entry.state.as_str() {
                "admitted" => {
                    let token = entry.admission_token.as_deref().and_then(|t| HeaderValue::from_str(t).ok());
                    return match token {
                        Some(token) => {
                            record(&mut self.tally.lock().queue_wait, joined);
                            Ok(Some(token))
                        }
                        None => self.fail(),
                    };
                }
                "expired" => {
                    self.tally.lock().queue_expired += 1;
                    return Err(());
                }
                _ => {}
            }
            let advice = Duration::from_secs(entry.poll_after_seconds.unwrap_or(1));
            let wake = Instant::now() + advice.clamp(MIN_POLL, MAX_POLL);
            if wake > plan.hard_deadline {
                self.tally.lock().unfinished += 1;
                return Err(());
            }
            tokio::time::sleep_until(wake).await;
            let request = self.build(Method::GET, poll.clone(), &[], None);
            let reply = self.call(POLL, request, Body::Keep).await;
            entry = match reply.as_ref().map(|r| (r.status, serde_json::from_slice::<QueueEntry>(&r.body))) {
                Some((200, Ok(entry))) => entry,
                _ => return self.fail(),
            };
        }
    }

    fn fail<T>(&self) -> Result<T, ()> {
        self.tally.lock().failed += 1;
        Err(())
    }

    /// Follows the live map for `--follow-ms`; its snapshot's bitmap, if one came.
    async fn follow(&mut self) -> Option<Vec<u8>> {
        let plan = self.plan.clone();
        let (node, host) = self.node().clone();
        let opened = Instant::now();
        let mut stream = match SseStream::open(Open {
            addr: node.addr,
            source: None,
            host: &host,
            path: &plan.uris.stream,
            last_event_id: None,
            capture_data: true,
            timeout: plan.timeout,
        })
        .await
        {
            Ok(stream) => stream,
            Err(e) => {
                let second = self.second();
                let latency_us = opened.elapsed().as_micros() as u64;
                let outcome = match &e {
                    crate::sse::SseError::Status { status, code } => {
                        Outcome::Status { status: *status, code: code.as_deref() }
                    }
                    other => {
                        Outcome::Transport { timeout: matches!(other, crate::sse::SseError::Timeout(_)) }
                    }
                };
                self.shard.lock().record(STREAM, outcome, latency_us, second);
                return None;
            }
        };
        let mut bitmap: Option<Vec<u8>> = None;
        let until = opened + plan.follow;
        let snapshot_by = opened + plan.timeout;
        loop {
            let deadline = if bitmap.is_some() { until } else { snapshot_by };
            let mut snapshot: Option<Vec<u8>> = None;
            let read = tokio::time::timeout_at(
                deadline,
                stream.read(&mut |frame| {
                    if frame.kind == FrameKind::Snapshot
                        && let Some(data) = frame.data
                    {
                        snapshot = Some(data);
                    }
                }),
            )
            .await;
            if let Some(data) = snapshot
                && bitmap.is_none()
            {
                let decoded = serde_json::from_slice::<SnapshotData>(&data)
                    .ok()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s.bitmap_base64).ok());
                if let Some(decoded) = decoded {
                    let second = self.second();
                    let latency_us = opened.elapsed().as_micros() as u64;
                    self.shard.lock().record(
                        STREAM,
                        Outcome::Status { status: 200, code: None },
                        latency_us,
                        second,
                    );
                    bitmap = Some(decoded);
                }
            }
            match read {
                Ok(Ok(true)) => {}
                // The stream ended, failed, or the time is up.
                _ => break,
            }
        }
        if bitmap.is_none() {
            let second = self.second();
            let latency_us = opened.elapsed().as_micros() as u64;
            self.shard.lock().record(STREAM, Outcome::Transport { timeout: true }, latency_us, second);
        }
        bitmap
    }
}

/// One thread's arrivals: fan `t + k * threads` at the `k`-th slot of this thread.
async fn arrivals(plan: Arc<Plan>, shard: Arc<Mutex<Shard>>, tally: Arc<Mutex<Tally>>, thread: u32) {
    let (threads, deadline, user_count) = (plan.threads, plan.deadline, plan.user_count);
    let mut pacer = crate::schedule::Pacer::new(plan.start, plan.rate, threads, thread);
    let semaphore = Arc::new(Semaphore::new(plan.slots_per_thread.max(1)));
    let mut fans = tokio::task::JoinSet::new();
    let mut user = thread;
    while pacer.peek() < deadline && user < user_count {
        let arrival = pacer.next_slot().await;
        let permit = match semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                tally.lock().delayed += 1;
                match semaphore.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => break,
                }
            }
        };
        let fan = Fan {
            plan: plan.clone(),
            shard: shard.clone(),
            tally: tally.clone(),
            user,
            conn: None,
            rng: SmallRng::seed_from_u64(plan.seed ^ u64::from(user).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        };
        fans.spawn(async move {
            fan.run(arrival).await;
            drop(permit);
        });
        user += threads;
        // Reap finished fans as we go, so the set stays the size of the fans in flight.
        while fans.try_join_next().is_some() {}
    }
    while fans.join_next().await.is_some() {}
}

/// Runs the `onsale` scenario.
pub(crate) async fn run(args: &Args) -> Result<Report, LoadError> {
    let started_at = chrono::Utc::now();
    let targets = parse_targets(&args.target, args.allow_remote)?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut nodes = Vec::with_capacity(targets.len());
    for t in &targets {
        let requests = Requests::new(&t.host).map_err(|e| LoadError::Usage(e.to_string()))?;
        nodes.push((Arc::new(Api { addr: t.addr, requests, timeout }), t.host.clone()));
    }
    let target = targets[0].clone();
    let target_list = targets.iter().map(|t| t.url.as_str()).collect::<Vec<_>>().join(",");
    let api = nodes[0].0.clone();
    let event = args.event.clone();
    if !safe_id(&event) {
        return Err(LoadError::Usage(format!("--event {event:?} is not an event id")));
    }
    let _ = crate::sys::raise_file_limit();
    let mut conn = ApiConn::new(api.clone());
    wait_ready(&mut conn, &target).await?;
    let labels = load_event(&mut conn, &target, &event, true).await?;
    for (other, (node, _)) in targets.iter().zip(&nodes).skip(1) {
        let mut conn = ApiConn::new(node.clone());
        wait_ready(&mut conn, other).await?;
        load_event(&mut conn, other, &event, false).await?;
    }
    let reply = conn.get(&format!("/v1/events/{event}"), None).await?;
    let info: EventInfo = parse(&reply, "the event detail")?;
    let (queue, pow_bits) = info.queue.map_or((false, 0), |q| (q.enabled, q.proof_of_work_bits));
    if pow_bits > MAX_POW_BITS {
        return Err(LoadError::Setup(format!(
            "event {event} asks for {pow_bits} bits of proof of work; the generator solves at most {MAX_POW_BITS}"
        )));
    }
    let rate = args.rate.unwrap_or(DEFAULT_RATE);
    let planned = (rate * args.duration).ceil().clamp(1.0, 100_000.0) as u32;
    let user_count = args.users.unwrap_or(planned);
    let seed = args.seed.unwrap_or_else(rand::random);
    let prefix = user_prefix(args, &mut SmallRng::seed_from_u64(seed))?;
    let names: Vec<String> = (0..user_count).map(|i| format!("{prefix}{i}")).collect();
    let users = mint_tokens(&api, &names).await?;

    let path = |p: String| uri(&p).map_err(|e| LoadError::Usage(e.to_string()));
    let duration = Duration::from_secs_f64(args.duration);
    let threads = args.threads.max(1);
    let start = Instant::now();
    let plan = Arc::new(Plan {
        nodes,
        event: event.clone(),
        rows: rows_of(&labels),
        labels,
        users,
        queue,
        pow_bits,
        seats_per_user: args.seats_per_user,
        abandon_rate: args.abandon_rate,
        pick: args.pick,
        follow: Duration::from_millis(args.follow_ms),
        timeout,
        hard_deadline: start + duration + DRAIN_LIMIT,
        start,
        deadline: start + duration,
        user_count,
        rate,
        threads,
        slots_per_thread: (args.connections as usize).div_ceil(threads as usize),
        seed,
        uris: Uris {
            challenge: path(format!("/v1/events/{event}/queue/challenge"))?,
            join: path(format!("/v1/events/{event}/queue"))?,
            event: path(format!("/v1/events/{event}"))?,
            seats: path(format!("/v1/events/{event}/seats"))?,
            hold: path(format!("/v1/events/{event}/holds"))?,
            stream: format!("/v1/events/{event}/availability/stream"),
        },
    });
    let seat_count = plan.labels.len() as u32;
    let finished = Arc::new(AtomicU32::new(0));
    let mut handles = Vec::new();
    let mut parts = Vec::new();
    for t in 0..threads {
        let shard = Arc::new(Mutex::new(Shard::new(OPS.len(), AuditLog::for_seats(seat_count))));
        let tally = Arc::new(Mutex::new(Tally::default()));
        parts.push((shard.clone(), tally.clone()));
        let plan = plan.clone();
        let finished = finished.clone();
        let handle = std::thread::Builder::new()
            .name(format!("onsale-{t}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(arrivals(plan, shard, tally, t));
                }
                finished.fetch_add(1, Ordering::Release);
            })
            .map_err(|e| LoadError::Internal(format!("cannot start a fan thread: {e}")))?;
        handles.push(handle);
    }
    let mut last = Instant::now();
    while finished.load(Ordering::Acquire) < threads {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if !args.quiet && last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let mut total = Tally::default();
            for (_, tally) in &parts {
                total.merge(&tally.lock());
            }
            eprintln!(
                "{:>6.1}s  arrived {}  admitted {}  held {}  paid {}  declined {}  abandoned {}  failed {}",
                start.elapsed().as_secs_f64(),
                thousands(total.arrived),
                thousands(total.admitted),
                thousands(total.held),
                thousands(total.paid),
                thousands(total.declined),
                thousands(total.abandoned),
                thousands(total.failed)
            );
        }
    }
    for handle in handles {
        if handle.join().is_err() {
            return Err(LoadError::Internal("a fan thread panicked".into()));
        }
    }
    let elapsed = start.elapsed();
    let mut shard = Shard::new(OPS.len(), AuditLog::for_seats(seat_count));
    let mut tally = Tally::default();
    for (s, t) in &parts {
        shard.merge(&s.lock());
        tally.merge(&t.lock());
    }

    let mut notes = Vec::new();
    let log = &shard.audit;
    let (audit, statuses) = if args.no_audit {
        (None, None)
    } else {
        match audit_event(&api, &event, &plan.users, &plan.labels, log).await {
            Ok((report, statuses)) => (Some(report), Some(statuses)),
            Err(e) => (Some(crate::audit::AuditReport::unreadable(e.to_string())), None),
        }
    };
    let cleanup = if log.open.is_empty() {
        None
    } else {
        match release_open(&api, &plan.users, log, statuses.as_deref()).await {
            Ok(cleanup) => Some(cleanup),
            Err(e) => {
                notes.push(format!("releasing the holds left open failed: {e}"));
                None
            }
        }
    };
    if tally.delayed > 0 {
        notes.push(format!(
            "{} arrivals waited for one of the --connections {} slots: the arrival rate was not kept",
            tally.delayed, args.connections
        ));
    }
    if tally.unfinished > 0 {
        notes.push(format!(
            "{} fans were still in the queue {} s after the arrivals stopped",
            tally.unfinished,
            DRAIN_LIMIT.as_secs()
        ));
    }
    let limited: u64 = shard.ops.iter().map(|o| o.status(429)).sum();
    if limited > 0 {
        notes.push(format!("the server rate-limited {limited} requests (429)"));
    }
    let seconds = (elapsed.as_secs_f64().ceil() as usize).max(1);
    let secs = elapsed.as_secs_f64();
    let operations: Vec<OpSummary> =
        OPS.iter().enumerate().map(|(i, name)| OpSummary::of(name, &shard.ops[i], secs)).collect();
    let timeline = Timeline {
        seconds,
        operations: OPS
            .iter()
            .enumerate()
            .map(|(i, n)| ((*n).to_owned(), shard.series(i, seconds)))
            .collect(),
        errors: shard.series(OPS.len(), seconds),
    };
    let latency =
        |h: &Option<Histogram<u64>>| h.as_ref().map_or_else(|| Latency::of(&histogram()), Latency::of);
    let onsale = OnsaleReport {
        arrival_rate: rate,
        users: user_count,
        queue_enabled: queue,
        proof_of_work_bits: pow_bits,
        seats_per_user: args.seats_per_user,
        abandon_rate: args.abandon_rate,
        pick: args.pick,
        arrived: tally.arrived,
        delayed_arrivals: tally.delayed,
        joined: tally.joined,
        admitted: tally.admitted,
        queue_expired: tally.queue_expired,
        held: tally.held,
        seats_held: tally.seats_held,
        paid: tally.paid,
        seats_bought: tally.seats_bought,
        declined: tally.declined,
        abandoned: tally.abandoned,
        sold_out: tally.sold_out,
        failed: tally.failed,
        unfinished: tally.unfinished,
        conversion: if tally.arrived > 0 { tally.paid as f64 / tally.arrived as f64 } else { 0.0 },
        pow_hashes: tally.pow_hashes,
        queue_wait_us: latency(&tally.queue_wait),
        time_to_order_us: latency(&tally.to_order),
    };
    let mut report =
        Report::of_scenario(args, &target_list, started_at, elapsed, &shard, operations, timeline, notes);
    report.rate = Some(rate);
    report.model = "open";
    report.event = Some(event);
    report.seat_count = Some(seat_count);
    report.users = Some(user_count);
    report.user_prefix = Some(prefix);
    report.seed = seed;
    report.audit = audit;
    report.cleanup = cleanup;
    report.onsale = Some(onsale);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_of_work_have_the_asked_zero_bits() {
        for bits in [0u8, 4, 8, 12] {
            let (nonce, hashes) = solve_pow("00112233445566778899aabbccddeeff", bits);
            let hash = Sha256::new()
                .chain_update(b"00112233445566778899aabbccddeeff")
                .chain_update(nonce.as_bytes())
                .finalize();
            assert!(leading_zero_bits(&hash) >= u32::from(bits), "bits {bits}");
            assert!(hashes >= 1);
        }
        assert_eq!(leading_zero_bits(&[0, 0x10, 0xff]), 11);
    }

    #[test]
    fn adjacent_picks_stay_in_one_row_on_available_seats() {
        let labels: Vec<String> =
            (0..2).flat_map(|row| (1..=5).map(move |n| format!("A-{row}-{n}"))).collect();
        let rows = rows_of(&labels);
        assert_eq!(rows[0], (0, 1));
        assert_eq!(rows[5], (1, 1));
        // Row 0: seats 0..5 with seat 2 taken; row 1: all free.
        let mut bitmap = vec![0xff, 0x03];
        take(&mut bitmap, 2);
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..50 {
            let seats = pick_adjacent(&bitmap, &rows, 3, &mut rng).expect("a run of 3 exists");
            assert_eq!(seats.len(), 3);
            assert!(seats.windows(2).all(|w| w[1] == w[0] + 1));
            assert!(seats.iter().all(|&s| is_available(&bitmap, s as usize)));
            assert!(seats.iter().all(|&s| rows[s as usize].0 == rows[seats[0] as usize].0));
            assert!(seats[0] >= 5, "row 0 has no 3 adjacent free seats: {seats:?}");
        }
        assert!(pick_adjacent(&bitmap, &rows, 6, &mut rng).is_none());
    }
}
