//! The shared waiting room: every event's queue in Redis, so that every node of a
//! distributed deployment serves the same queue.
//!
//! Every key of one event carries one hash tag, `<prefix>{q:ID}:<name>`, so the event's
//! queue lives in one slot (and the same code runs on Redis Cluster):
//! - `line`: a sorted set, member the user, score the place in the line. A pre-queue
//!   join gets a random score below 2^52, drawn at the join; at the onsale those scores
//!   are the order (a uniformly random one, fixed from then on) and later joins get
//!   2^52 + an arrival counter, so they line up FIFO behind. A position is `ZRANK + 1`.
//! - `u:<bucket>`: small hashes user -> record (phase, 8-byte entry id, deadline and the
//!   previous entry's id while it is still readable), spread over [`BUCKETS`] buckets so
//!   that each stays in Redis's compact encoding. An entry id carries its bucket in its
//!   top bits, so an entry is found by id without an id -> user index.
//! - `state`: whether the line is open, the arrival counter, the admission token
//!   bucket, the expiry sweep's cursor and the lease's fencing counter.
//! - `lease`: the drainer's lease, `node:fence` with a TTL of [`LEASE_MS`].
//! - `gone`: entries that left the line, to forget them when their time comes.
//! - `ch`, `chx`: proof-of-work challenges and their expiry.
//! - `guard`: never written; declared last by every script so that on Redis Cluster no
//!   script of the event runs while its slot migrates (Redis answers `TRYAGAIN`, the
//!   client retries; see `boxoffice_engine::redis`). The `u:` buckets are reached by name
//!   inside the scripts, in the same slot, so a script must never run half-migrated.
//!
//! Each operation is one Lua script (`redis/*.lua` after `redis/common.lua`). Expiry is
//! applied lazily by every read of an entry (an entry past its deadline reads expired at
//! once) and by the drainer, which sweeps a slice of the line each step and checks each
//! entry it is about to admit, so an entry that stopped polling is never admitted and
//! positions behind it close up within one pass of the sweep.
//!
//! Admission: each node's admission task asks for the event's lease every step; the
//! holder renews it, and when its node dies the lease runs out and another node takes it
//! with the next fencing token. The admission script runs only if the lease in Redis is
//! still the one its caller holds (fence included), so a node that lost its lease while
//! paused cannot admit. Admission tokens are signed with the admission key every node
//! shares, so a token issued on one node is accepted by every other.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use ::redis::{Script, ScriptInvocation, Value};
use async_trait::async_trait;
use boxoffice_core::{EventId, UnixMs, UserId};
use boxoffice_engine::redis::connection::{ConnectOptions, RedisConnection};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::memory::{MAX_POLL_SECONDS, MIN_POLL_SECONDS, PREQUEUE_MIN_POLL_SECONDS};
use super::{
    CHALLENGE_TTL_MS, Challenge, EXPIRED_RETENTION_MS, EntryView, HEARTBEAT_MISSES, MAX_CHALLENGES, Phase,
    Policy, QueueError, QueueId, TickReport, WaitingRoom,
};

/// User buckets per event (a prime; `common.lua` has the same number).
pub const BUCKETS: u64 = 16_381;
/// How long the drainer's lease lasts unless renewed (every admission step renews it).
pub const LEASE_MS: u64 = 3_000;
/// Entries of the line the drainer checks for expiry per step.
const SWEEP_PER_TICK: u32 = 5_000;
/// Admissions per step at most (the rest of the credit waits for the next step).
const ADMIT_PER_TICK: u32 = 10_000;
/// Ended entries forgotten per step at most.
const FORGET_PER_TICK: u32 = 5_000;
/// Pre-queue scores are below this (2^52), so that they stay exact in Lua's doubles.
const PREQUEUE_SCORES: u64 = 1 << 52;
/// Bits of an entry id below its bucket.
const ID_RANDOM_BITS: u32 = 50;

/// A user's bucket; `common.lua` computes the same.
pub fn bucket_of(user: &UserId) -> u64 {
    user.as_str().bytes().fold(0, |h, b| (h * 257 + u64::from(b)) % BUCKETS)
}

macro_rules! script {
    ($name:literal) => {
        Script::new(concat!(include_str!("redis/common.lua"), include_str!(concat!("redis/", $name, ".lua"))))
    };
}

struct Scripts {
    join: Script,
    entry_of: Script,
    view: Script,
    tick: Script,
    check: Script,
    lease: Script,
    challenge: Script,
    take_challenge: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            join: script!("join"),
            entry_of: script!("entry_of"),
            view: script!("view"),
            tick: script!("tick"),
            check: script!("check"),
            lease: Script::new(include_str!("redis/lease.lua")),
            challenge: Script::new(include_str!("redis/challenge.lua")),
            take_challenge: Script::new(include_str!("redis/take_challenge.lua")),
        }
    }
}

/// The Redis [`WaitingRoom`]. Several instances (nodes) on one Redis and prefix are one
/// waiting room.
pub struct RedisWaitingRoom {
    conn: RedisConnection,
    prefix: String,
    /// This node in lease values: `pid-<pid>-<random>` (no `:`).
    node: String,
    scripts: Scripts,
    seed: Option<u64>,
    max_challenges: usize,
    lease_ms: u64,
    /// Events this node has added to the set of queued events.
    registered: Mutex<HashSet<EventId>>,
    /// Admission steps refused because the lease had moved on (fenced).
    fenced: AtomicU64,
}

/// A connection to Redis or a Redis Cluster (`redis+cluster://`) that reconnects by
/// itself and never waits long for an answer.
pub async fn connect(url: &str) -> ::redis::RedisResult<RedisConnection> {
    let options = ConnectOptions {
        connection_timeout: Some(std::time::Duration::from_secs(2)),
        response_timeout: Some(std::time::Duration::from_secs(2)),
        reconnect_retries: Some(2),
        reconnect_max_delay_ms: Some(1_000),
    };
    RedisConnection::connect_with(url, &options).await
}

fn unavailable(e: ::redis::RedisError) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

fn malformed(what: &str) -> QueueError {
    QueueError::Unavailable(format!("unexpected reply from Redis: {what}"))
}

impl RedisWaitingRoom {
    /// Connects to `url`; every key starts with `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> ::redis::RedisResult<Self> {
        Ok(Self::with_connection(connect(url).await?, prefix))
    }

    pub fn with_connection(conn: RedisConnection, prefix: &str) -> Self {
        RedisWaitingRoom {
            conn,
            prefix: prefix.to_owned(),
            node: format!("pid-{}-{:08x}", std::process::id(), rand::random::<u32>()),
            scripts: Scripts::new(),
            seed: None,
            max_challenges: MAX_CHALLENGES,
            lease_ms: LEASE_MS,
            registered: Mutex::new(HashSet::new()),
            fenced: AtomicU64::new(0),
        }
    }

    /// Draws pre-queue scores from `seed` (tests): the same users get the same order.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// At most `max` unanswered challenges per event (tests).
    pub fn with_max_challenges(mut self, max: usize) -> Self {
        self.max_challenges = max;
        self
    }

    /// This node's name in the lease.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Admission steps this node ran with a lease that had moved on, refused by Redis.
    pub fn fenced_steps(&self) -> u64 {
        self.fenced.load(Ordering::Relaxed)
    }

    fn key(&self, event: EventId, name: &str) -> String {
        format!("{}{{q:{}}}:{name}", self.prefix, event.0)
    }

    fn events_key(&self) -> String {
        format!("{}queues", self.prefix)
    }

    /// An event script with its keys and common arguments; the script's own follow.
    fn invocation<'a>(
        &self,
        script: &'a Script,
        event: EventId,
        policy: &Policy,
        now: UnixMs,
    ) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for name in ["line", "state", "lease", "gone", "guard"] {
            inv.key(self.key(event, name));
        }
        inv.arg(self.key(event, "u:"))
            .arg(now)
            .arg(policy.admit_rate_per_second.max(1))
            .arg(policy.token_ttl_ms)
            .arg(policy.max_length)
            .arg(policy.onsale_at)
            .arg(EXPIRED_RETENTION_MS)
            .arg(HEARTBEAT_MISSES)
            .arg(MIN_POLL_SECONDS)
            .arg(MAX_POLL_SECONDS)
            .arg(PREQUEUE_MIN_POLL_SECONDS);
        inv
    }

    async fn run(&self, inv: &ScriptInvocation<'_>) -> Result<Value, QueueError> {
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn).await.map_err(unavailable)
    }

    /// Adds the event to the set the admission tasks of every node walk (once per node).
    async fn register(&self, event: EventId) -> Result<(), QueueError> {
        if self.registered.lock().contains(&event) {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let _: i64 = ::redis::cmd("SADD")
            .arg(self.events_key())
            .arg(event.0)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.registered.lock().insert(event);
        Ok(())
    }

    fn prequeue_score(&self, event: EventId, user: &UserId) -> u64 {
        match self.seed {
            // Per (seed, event, user), whatever order the joins arrive in.
            Some(seed) => {
                let mixed =
                    user.as_str().bytes().fold(seed ^ event.0.wrapping_mul(0x9e37_79b9_7f4a_7c15), |h, b| {
                        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                    });
                StdRng::seed_from_u64(mixed).random_range(0..PREQUEUE_SCORES)
            }
            None => rand::rng().random_range(0..PREQUEUE_SCORES),
        }
    }

    /// Takes or renews the event's lease: `Some("node:fence")` while this node holds it.
    pub async fn acquire_lease(&self, event: EventId) -> Result<Option<String>, QueueError> {
        let mut inv = self.scripts.lease.prepare_invoke();
        inv.key(self.key(event, "lease")).key(self.key(event, "state")).key(self.key(event, "guard"));
        inv.arg(&self.node).arg(self.lease_ms);
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn).await.map_err(unavailable)
    }

    /// One admission step under `lease` (as [`RedisWaitingRoom::acquire_lease`] gave it):
    /// `None`, changing nothing, when the lease in Redis is no longer that one.
    pub async fn tick_with_lease(
        &self,
        event: EventId,
        policy: &Policy,
        now: UnixMs,
        lease: &str,
    ) -> Result<Option<TickReport>, QueueError> {
        let mut inv = self.invocation(&self.scripts.tick, event, policy, now);
        inv.arg(lease).arg(SWEEP_PER_TICK).arg(ADMIT_PER_TICK).arg(FORGET_PER_TICK);
        let reply = self.run(&inv).await?;
        let items = array(&reply)?;
        match text(first(items)?)?.as_str() {
            "ok" => Ok(Some(TickReport {
                admitted: int_at(items, 1)? as u64,
                expired: int_at(items, 2)? as u64,
                length: int_at(items, 3)? as u64,
            })),
            "fenced" => {
                self.fenced.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            other => Err(malformed(other)),
        }
    }

    /// Checks the event's queue invariants; for tests.
    pub async fn check_invariants(&self, event: EventId, policy: &Policy, now: UnixMs) -> Result<(), String> {
        let inv = self.invocation(&self.scripts.check, event, policy, now);
        let reply = self.run(&inv).await.map_err(|e| e.to_string())?;
        match text(&reply).map_err(|e| e.to_string())?.as_str() {
            "ok" => Ok(()),
            broken => Err(format!("event {event}: {broken}")),
        }
    }

    async fn length_of(&self, event: EventId) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        ::redis::cmd("ZCARD").arg(self.key(event, "line")).query_async(&mut conn).await.map_err(unavailable)
    }
}

fn array(value: &Value) -> Result<&[Value], QueueError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(malformed(&format!("{other:?}"))),
    }
}

fn first(items: &[Value]) -> Result<&Value, QueueError> {
    items.first().ok_or_else(|| malformed("an empty reply"))
}

fn text(value: &Value) -> Result<String, QueueError> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).map_err(|_| malformed("not UTF-8")),
        Value::SimpleString(s) => Ok(s.clone()),
        other => Err(malformed(&format!("{other:?}"))),
    }
}

fn int_at(items: &[Value], i: usize) -> Result<i64, QueueError> {
    match items.get(i) {
        Some(Value::Int(n)) => Ok(*n),
        other => Err(malformed(&format!("{other:?} at {i}"))),
    }
}

/// `{phase, id, user, position, eta, poll, admitted until}` (see `common.lua`), or a
/// status (`full`, `unknown`, `none`).
enum Reply {
    View(EntryView),
    Status(String),
}

fn parse_view(reply: &Value) -> Result<Reply, QueueError> {
    let items = array(reply)?;
    let phase = match text(first(items)?)?.as_str() {
        "p" => Phase::Prequeue,
        "w" => Phase::Waiting,
        "a" => Phase::Admitted,
        "x" => Phase::Expired,
        status => return Ok(Reply::Status(status.to_owned())),
    };
    let id = u64::from_str_radix(&text(&items[1])?, 16).map_err(|_| malformed("entry id"))?;
    let user = UserId::parse(&text(&items[2])?).map_err(|_| malformed("user"))?;
    let some = |n: i64, none: i64| (n > none).then_some(n as u64);
    Ok(Reply::View(EntryView {
        id,
        user,
        phase,
        position: some(int_at(items, 3)?, 0),
        eta_seconds: some(int_at(items, 4)?, -1),
        poll_after_seconds: some(int_at(items, 5)?, -1),
        admitted_until: some(int_at(items, 6)?, -1),
    }))
}

#[async_trait]
impl WaitingRoom for RedisWaitingRoom {
    async fn join(
        &self,
        event: EventId,
        user: &UserId,
        policy: &Policy,
        now: UnixMs,
    ) -> Result<EntryView, QueueError> {
        self.register(event).await?;
        let id: QueueId =
            (bucket_of(user) << ID_RANDOM_BITS) | (rand::random::<u64>() >> (64 - ID_RANDOM_BITS));
        let mut inv = self.invocation(&self.scripts.join, event, policy, now);
        inv.arg(user.as_str()).arg(format!("{id:016x}")).arg(self.prequeue_score(event, user));
        match parse_view(&self.run(&inv).await?)? {
            Reply::View(view) => Ok(view),
            Reply::Status(s) if s == "full" => Err(QueueError::Full { max_length: policy.max_length }),
            Reply::Status(s) => Err(malformed(&s)),
        }
    }

    async fn entry_of(
        &self,
        event: EventId,
        user: &UserId,
        policy: &Policy,
        now: UnixMs,
    ) -> Result<Option<EntryView>, QueueError> {
        let mut inv = self.invocation(&self.scripts.entry_of, event, policy, now);
        inv.arg(user.as_str());
        match parse_view(&self.run(&inv).await?)? {
            Reply::View(view) => Ok(Some(view)),
            Reply::Status(_) => Ok(None),
        }
    }

    async fn view(
        &self,
        event: EventId,
        id: QueueId,
        caller: &UserId,
        policy: &Policy,
        now: UnixMs,
    ) -> Result<EntryView, QueueError> {
        let mut inv = self.invocation(&self.scripts.view, event, policy, now);
        inv.arg(caller.as_str()).arg(format!("{id:016x}")).arg(id >> ID_RANDOM_BITS);
        match parse_view(&self.run(&inv).await?)? {
            Reply::View(view) => Ok(view),
            Reply::Status(_) => Err(QueueError::UnknownEntry),
        }
    }

    async fn tick(&self, event: EventId, policy: &Policy, now: UnixMs) -> TickReport {
        let label = event.to_string();
        let result = async {
            let Some(lease) = self.acquire_lease(event).await? else {
                metrics::gauge!("boxoffice_queue_drainer", "event" => label.clone()).set(0.0);
                return Ok::<_, QueueError>(TickReport {
                    length: self.length_of(event).await?,
                    ..TickReport::default()
                });
            };
            metrics::gauge!("boxoffice_queue_drainer", "event" => label.clone()).set(1.0);
            match self.tick_with_lease(event, policy, now, &lease).await? {
                Some(report) => Ok(report),
                None => Ok(TickReport { length: self.length_of(event).await?, ..TickReport::default() }),
            }
        };
        match result.await {
            Ok(report) => report,
            Err(e) => {
                tracing::warn!(%event, error = %e, "waiting room: admission step failed; the next one retries");
                TickReport::default()
            }
        }
    }

    async fn events(&self) -> Vec<EventId> {
        let mut conn = self.conn.clone();
        let ids: Result<Vec<u64>, _> =
            ::redis::cmd("SMEMBERS").arg(self.events_key()).query_async(&mut conn).await;
        match ids {
            Ok(ids) => ids.into_iter().map(EventId).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "waiting room: cannot list the queued events");
                Vec::new()
            }
        }
    }

    async fn length(&self, event: EventId) -> u64 {
        self.length_of(event).await.unwrap_or_else(|e| {
            tracing::warn!(%event, error = %e, "waiting room: cannot read the queue length");
            0
        })
    }

    async fn issue_challenge(
        &self,
        event: EventId,
        user: &UserId,
        now: UnixMs,
    ) -> Result<Challenge, QueueError> {
        let bytes: [u8; 16] = rand::random();
        let challenge = hex::encode(bytes);
        let expires_ms = now + CHALLENGE_TTL_MS;
        let mut inv = self.scripts.challenge.prepare_invoke();
        inv.key(self.key(event, "ch")).key(self.key(event, "chx")).key(self.key(event, "guard"));
        inv.arg(user.as_str()).arg(&challenge).arg(expires_ms).arg(now).arg(self.max_challenges);
        let issued: i64 = {
            let mut conn = self.conn.clone();
            inv.invoke_async(&mut conn).await.map_err(unavailable)?
        };
        if issued == 0 {
            return Err(QueueError::ChallengesFull);
        }
        Ok(Challenge { challenge, expires_ms })
    }

    async fn take_challenge(
        &self,
        event: EventId,
        user: &UserId,
        challenge: &str,
        now: UnixMs,
    ) -> Result<bool, QueueError> {
        let mut given = [0u8; 16];
        if hex::decode_to_slice(challenge, &mut given).is_err() {
            return Ok(false);
        }
        let mut inv = self.scripts.take_challenge.prepare_invoke();
        inv.key(self.key(event, "ch")).key(self.key(event, "chx")).key(self.key(event, "guard"));
        inv.arg(user.as_str()).arg(hex::encode(given)).arg(now);
        let mut conn = self.conn.clone();
        let fresh: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(fresh == 1)
    }

    /// Expired challenges are forgotten as new ones are issued.
    async fn purge(&self, _now: UnixMs) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_spread_users_and_fit_in_an_id() {
        let mut seen = HashSet::new();
        for i in 0..10_000 {
            let b = bucket_of(&UserId::parse(&format!("fan{i}")).unwrap());
            assert!(b < BUCKETS);
            seen.insert(b);
        }
        assert!(seen.len() > 7_000, "10,000 users over {} buckets", seen.len());
        assert_eq!((BUCKETS - 1) << ID_RANDOM_BITS >> ID_RANDOM_BITS, BUCKETS - 1, "a bucket fits in an id");
        assert_eq!(bucket_of(&UserId::parse("a").unwrap()), 97);
    }
}
