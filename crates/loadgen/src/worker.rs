//! The measured part: one [`Worker`] per connection sends the scenario's requests,
//! paced by the open model's [`Pacer`](crate::schedule::Pacer) or back to back (closed
//! model), records every answer in its thread's [`Shard`], and logs what the answers
//! mean for the oversell audit.
//!
//! Scenario requests:
//! - `holds`: `POST /v1/events/{ev}/holds {"seats":[label]}` on a uniform (or `--zipf`)
//!   seat, as user `seat mod users`; a 201 is followed, on the same connection, by
//!   `DELETE /v1/holds/{id}` (`hold-release`) or `POST /v1/holds/{id}/checkout` with
//!   `tok_visa` and an `Idempotency-Key` (`hold-checkout`).
//! - `hot-seats`: the same on the event's first `--seats` seats, as a random user.
//! - `browse`: `GET /v1/events/{ev}`, `GET .../seats` (gzip accepted, with
//!   `If-None-Match` once the connection has its ETag), `GET .../availability` (with
//!   `If-None-Match` of the last bitmap it saw), in turn.
//! - `bare`: `GET --path`.
//!
//! A worker stops issuing requests at the deadline (or when the `--requests` budget is
//! spent) and finishes the one in flight, which `--timeout` bounds. A hold still waiting
//! for its release or checkout then is logged as left open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Uri};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::audit::{AuditLog, Bought, OpenHold};
use crate::client::{Body, Conn, Reply, Requests, TransportError, uri};
use crate::stats::{Outcome, Shard};
use crate::target::Target;
use crate::zipf::SeatDist;
use crate::{Mix, Scenario};

/// Pause after a failed connect, so that a dead server is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// Everything the workers share, fixed before the clock starts.
pub struct Plan {
    pub scenario: Scenario,
    pub mix: Mix,
    /// The servers under test (one or several nodes of one deployment); connection `i`
    /// goes to `targets[i % len]`.
    pub targets: Vec<Target>,
    /// The requests of each target, by the same index.
    pub requests: Vec<Requests>,
    pub timeout: Duration,
    pub connections: u32,
    pub threads: u32,
    pub rate: Option<f64>,
    /// Bare: requests in flight per connection (1: no pipelining).
    pub pipeline: u32,
    pub duration: Duration,
    pub cap: Option<u64>,
    pub(crate) issued: AtomicU64,
    pub event: String,
    /// Seat labels by index (holds and hot-seats).
    pub labels: Vec<String>,
    /// Hold bodies of the seats in play, by seat index.
    pub(crate) hold_bodies: Vec<Bytes>,
    pub dist: SeatDist,
    /// `Bearer` headers by user index.
    pub users: Vec<HeaderValue>,
    /// User `i` of the run is named `{user_prefix}{i}`.
    pub user_prefix: String,
    /// Holds: seat i belongs to user i mod users; hot-seats: a random user each time.
    pub(crate) user_by_seat: bool,
    pub(crate) uris: Uris,
    pub ops: Vec<&'static str>,
    pub seed: u64,
    pub(crate) checkout_body: Bytes,
    pub audited: bool,
}

pub(crate) struct Uris {
    pub(crate) hold: Uri,
    pub(crate) event: Uri,
    pub(crate) seats: Uri,
    pub(crate) availability: Uri,
    pub(crate) bare: Uri,
}

impl Plan {
    /// The target of connection `index`, and its requests.
    pub(crate) fn node(&self, index: u32) -> (&Target, &Requests) {
        let i = index as usize % self.targets.len();
        (&self.targets[i], &self.requests[i])
    }

    fn addr(&self, index: u32) -> SocketAddr {
        self.node(index).0.addr
    }

    /// Takes one request from the `--requests` budget.
    pub(crate) fn take_budget(&self) -> bool {
        match self.cap {
            None => true,
            Some(cap) => self.issued.fetch_add(1, Ordering::Relaxed) < cap,
        }
    }

    /// Seconds in the run's timeline: the duration, rounded up.
    pub fn seconds(&self) -> usize {
        (self.duration.as_secs_f64().ceil() as usize).max(1)
    }

    /// The bare scenario's path (and query).
    pub(crate) fn bare_path(&self) -> &str {
        self.uris.bare.path_and_query().map_or("/", |p| p.as_str())
    }

    pub fn seat_count(&self) -> u32 {
        self.labels.len() as u32
    }
}

/// A 201 hold waiting for its release or checkout.
#[derive(Debug, Clone)]
struct Pending {
    hold_id: String,
    seat: u32,
    user: u32,
}

/// What a request was, to settle its answer.
enum Sent {
    Hold { seat: u32, user: u32 },
    Release(Pending),
    Checkout(Pending),
    Event,
    Seats,
    Availability,
    Bare,
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

/// Ids the API hands out are URL-safe; anything else is not used in a path.
pub(crate) fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The API error code of an error body (`{"error":{"code":"..."}}`), without parsing
/// the whole body.
pub fn error_code(body: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"code\":\"";
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = body[start..].iter().take(64).position(|&b| b == b'"')?;
    std::str::from_utf8(&body[start..start + len]).ok()
}

/// One connection's loop.
pub(crate) struct Worker {
    plan: Arc<Plan>,
    shard: Arc<Mutex<Shard>>,
    index: u32,
    conn: Option<Conn>,
    rng: SmallRng,
    pending: Option<Pending>,
    browse_step: usize,
    seats_etag: Option<HeaderValue>,
    availability_etag: Option<HeaderValue>,
}

impl Worker {
    pub(crate) fn new(plan: Arc<Plan>, shard: Arc<Mutex<Shard>>, index: u32) -> Worker {
        let rng = SmallRng::seed_from_u64(plan.seed ^ u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Worker {
            plan,
            shard,
            index,
            conn: None,
            rng,
            pending: None,
            browse_step: 0,
            seats_etag: None,
            availability_etag: None,
        }
    }

    pub(crate) async fn run(
        mut self,
        connected: Arc<AtomicU32>,
        mut start: watch::Receiver<Option<Instant>>,
    ) {
        if let Ok(conn) = Conn::connect(self.plan.addr(self.index), self.plan.timeout).await {
            self.conn = Some(conn);
        }
        connected.fetch_add(1, Ordering::Release);
        let start = loop {
            if let Some(start) = *start.borrow_and_update() {
                break start;
            }
            if start.changed().await.is_err() {
                return;
            }
        };
        let deadline = start + self.plan.duration;
        let mut pacer = self
            .plan
            .rate
            .map(|rate| crate::schedule::Pacer::new(start, rate, self.plan.connections, self.index));
        loop {
            let intended = match pacer.as_mut() {
                Some(pacer) => {
                    if pacer.peek() >= deadline {
                        break;
                    }
                    pacer.next_slot().await
                }
                None => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    now
                }
            };
            if !self.plan.take_budget() {
                break;
            }
            self.step(start, intended, deadline).await;
        }
        if let Some(p) = self.pending.take() {
            self.shard.lock().audit.left_open(OpenHold {
                hold_id: p.hold_id,
                seat: p.seat,
                user: p.user,
                release_tried: false,
                checkout_tried: false,
            });
        }
    }

    /// Sends the next request of the scenario and records its answer.
    async fn step(&mut self, start: Instant, intended: Instant, deadline: Instant) {
        if self.conn.is_none() {
            match Conn::connect(self.plan.addr(self.index), self.plan.timeout).await {
                Ok(conn) => self.conn = Some(conn),
                Err(_) => {
                    let second = ((Instant::now() - start).as_secs() as usize).min(self.plan.seconds() - 1);
                    self.shard.lock().record_connect_error(second);
                    let pause = RECONNECT_PAUSE.min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                    return;
                }
            }
        }
        let (op, sent, request, body) = self.next_request();
        let Some(conn) = self.conn.as_mut() else { return };
        let result = conn.send(request, body, self.plan.timeout).await;
        let done = Instant::now();
        let latency_us = (done - intended).as_micros() as u64;
        // Answers that arrive after the deadline belong to the last second of the run.
        let second = ((done - start).as_secs() as usize).min(self.plan.seconds() - 1);
        match result {
            Ok(reply) => {
                let code = if reply.status >= 400 { error_code(&reply.body) } else { None };
                if let Sent::Seats | Sent::Availability = sent
                    && reply.status == 200
                    && let Some(etag) = reply.headers.get(hyper::header::ETAG)
                {
                    match sent {
                        Sent::Seats => self.seats_etag = Some(etag.clone()),
                        _ => self.availability_etag = Some(etag.clone()),
                    }
                }
                let mut shard = self.shard.lock();
                shard.record(op, Outcome::Status { status: reply.status, code }, latency_us, second);
                settle(&mut self.pending, sent, Ok(&reply), &mut shard.audit);
            }
            Err(e) => {
                self.conn = None;
                let mut shard = self.shard.lock();
                shard.record(op, Outcome::Transport { timeout: e.is_timeout() }, latency_us, second);
                settle(&mut self.pending, sent, Err(&e), &mut shard.audit);
            }
        }
    }

    fn next_request(&mut self) -> (usize, Sent, Request<Full<Bytes>>, Body) {
        let plan = self.plan.clone();
        let r = plan.node(self.index).1;
        match plan.scenario {
            Scenario::Holds | Scenario::HotSeats => {
                if let Some(p) = self.pending.take() {
                    let auth = plan.users.get(p.user as usize);
                    return match plan.mix {
                        Mix::HoldRelease => {
                            let request = r.build(Method::DELETE, hold_uri(&p.hold_id, ""), auth, &[], None);
                            (1, Sent::Release(p), request, Body::Keep)
                        }
                        Mix::HoldCheckout => {
                            let key = HeaderValue::from_str(&format!("loadgen-{}", p.hold_id))
                                .unwrap_or(HeaderValue::from_static("loadgen"));
                            let request = r.build(
                                Method::POST,
                                hold_uri(&p.hold_id, "/checkout"),
                                auth,
                                &[("idempotency-key", key)],
                                Some(plan.checkout_body.clone()),
                            );
                            (1, Sent::Checkout(p), request, Body::Keep)
                        }
                    };
                }
                let seat = plan.dist.sample(&mut self.rng);
                let users = plan.users.len().max(1) as u32;
                let user = if plan.user_by_seat { seat % users } else { self.rng.random_range(0..users) };
                let body = plan.hold_bodies.get(seat as usize).cloned();
                let request =
                    r.build(Method::POST, plan.uris.hold.clone(), plan.users.get(user as usize), &[], body);
                (0, Sent::Hold { seat, user }, request, Body::Keep)
            }
            Scenario::Browse => {
                let step = self.browse_step % 3;
                self.browse_step += 1;
                match step {
                    0 => (0, Sent::Event, r.get(plan.uris.event.clone(), None), Body::Drain),
                    1 => {
                        // As a browser asks for it: compressed when the server can.
                        let mut extra = vec![("accept-encoding", HeaderValue::from_static("gzip"))];
                        extra.extend(self.seats_etag.iter().map(|e| ("if-none-match", e.clone())));
                        let request = r.build(Method::GET, plan.uris.seats.clone(), None, &extra, None);
                        (1, Sent::Seats, request, Body::Drain)
                    }
                    _ => {
                        let extra: Vec<_> =
                            self.availability_etag.iter().map(|e| ("if-none-match", e.clone())).collect();
                        let request =
                            r.build(Method::GET, plan.uris.availability.clone(), None, &extra, None);
                        (2, Sent::Availability, request, Body::Drain)
                    }
                }
            }
            Scenario::Bare | Scenario::Onsale | Scenario::Viewers => {
                (0, Sent::Bare, r.get(plan.uris.bare.clone(), None), Body::Drain)
            }
        }
    }
}

/// Logs what an answer (or its absence) means for the audit, and queues the follow-up
/// of a successful hold.
fn settle(
    pending: &mut Option<Pending>,
    sent: Sent,
    result: Result<&Reply, &TransportError>,
    log: &mut AuditLog,
) {
    let open = |p: Pending, release_tried: bool, checkout_tried: bool| OpenHold {
        hold_id: p.hold_id,
        seat: p.seat,
        user: p.user,
        release_tried,
        checkout_tried,
    };
    match sent {
        Sent::Hold { seat, user } => match result {
            Ok(reply) if reply.status == 201 => match serde_json::from_slice::<HoldAnswer>(&reply.body) {
                Ok(hold)
                    if safe_id(&hold.hold_id) && hold.seats.len() == 1 && hold.seats[0].index == seat =>
                {
                    log.held(seat);
                    *pending = Some(Pending { hold_id: hold.hold_id, seat, user });
                }
                Ok(hold) => {
                    log.uncertain(seat);
                    let got: Vec<u32> = hold.seats.iter().map(|s| s.index).collect();
                    log.contradiction(format!(
                        "hold {:?} answered 201 for seats {got:?}; the request asked for seat {seat}",
                        hold.hold_id
                    ));
                }
                Err(e) => {
                    log.uncertain(seat);
                    log.contradiction(format!(
                        "a hold of seat {seat} answered 201 with an unreadable body ({e})"
                    ));
                }
            },
            Ok(_) => {}
            Err(_) => log.uncertain(seat),
        },
        Sent::Release(p) => match result {
            Ok(reply) if reply.status == 204 => log.released(p.seat),
            Ok(reply) if reply.status == 410 => log.expired(p.seat),
            _ => log.left_open(open(p, true, false)),
        },
        Sent::Checkout(p) => match result {
            Ok(reply) if reply.status == 201 => match serde_json::from_slice::<OrderAnswer>(&reply.body) {
                Ok(order) => log.bought(Bought {
                    order_id: order.order_id,
                    hold_id: p.hold_id,
                    seat: p.seat,
                    user: p.user,
                }),
                Err(e) => {
                    log.contradiction(format!(
                        "checkout of hold {} answered 201 with an unreadable body ({e})",
                        p.hold_id
                    ));
                    log.left_open(open(p, false, true));
                }
            },
            Ok(reply) if reply.status == 410 => log.expired(p.seat),
            _ => log.left_open(open(p, false, true)),
        },
        Sent::Event | Sent::Seats | Sent::Availability | Sent::Bare => {}
    }
}

/// `/v1/holds/{id}{suffix}`; ids were checked to be URL-safe when the hold answered.
fn hold_uri(hold_id: &str, suffix: &str) -> Uri {
    uri(&format!("/v1/holds/{hold_id}{suffix}")).unwrap_or_else(|_| Uri::from_static("/v1/holds/invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_found_without_parsing() {
        let body = br#"{"error":{"code":"SEATS_UNAVAILABLE","message":"x","seats":["A-1-1"]}}"#;
        assert_eq!(error_code(body), Some("SEATS_UNAVAILABLE"));
        assert_eq!(error_code(b"{}"), None);
        assert_eq!(error_code(b"\"code\":\"unterminated"), None);
    }

    #[test]
    fn ids_are_url_safe() {
        assert!(safe_id("ho_3f2a-9"));
        assert!(!safe_id("ho/../x"));
        assert!(!safe_id(""));
    }
}
