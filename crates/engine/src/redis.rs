//! The distributed inventory: seat state lives in Redis, shared by stateless nodes.
//!
//! Every key of an event carries one hash tag, `<prefix>{ev:ID}:<name>`, so that one
//! event lives in one slot and the same code runs on Redis Cluster:
//! `meta` (hash: seat count `n`, version `v`, `held`, `sold`, `epoch`), `bits` (the
//! availability bitmap in the wire layout of `boxoffice_core::Bitmap`, changed with
//! SETBIT), `seats` (hash: seat -> `h<hold>` or `s<user>`; absent = available), `users`
//! (hash: user -> seats held plus bought), `holds` (hash: hold nonce -> msgpack record,
//! live and recently ended), `expiry` (zset of unpinned live holds by expiry ms), `pins`
//! (zset of pinned holds by pin deadline), `ended` (zset of ended holds by end ms, pruned
//! after [`RedisConfig::ended_hold_keep_ms`]) and `changes` (a capped stream of change
//! records, id `version-n`).
//!
//! Each operation is one Lua script (`redis/*.lua`, after the shared `common.lua`) that
//! first expires what is due, then changes seats, bits, counters, the version and the
//! change stream together, so they never disagree. Best available is picked on the node
//! from the event's bitmap and held with the same script as named seats, retrying with a
//! fresh pick when another node took a seat first. The seat map is node-local. The
//! orphan-seat rule needs rows and aisles, which only the seat map knows: the node sends
//! the hold script the rule's checks for the seats asked for (`SeatMap::strand_checks`:
//! each neighbour the hold leaves and the seat beyond it), and the script evaluates them
//! against the bitmap in the same step as the hold, so the rule is as atomic as the hold.
//! Nothing more is stored in Redis, and events initialized before the rule need nothing.
//!
//! Redis may lose an event (a restart without persistence, a failover to a replica that
//! lacked it). Every script first checks that the event's `meta` is there and otherwise
//! changes nothing and answers `UNKNOWN_EVENT`, which a node that had loaded the event
//! reports as [`InventoryError::EventLost`] (never an empty map, never partial state).
//! The event is then rebuilt from the order store once, under its `rebuild` lock key
//! (`SET NX PX`, in the event's hash tag), with a new epoch: see
//! [`Inventory::begin_rebuild`].
//!
//! On Redis Cluster ([`connection`], `redis+cluster://...`) every script also declares the
//! event's `guard` key, which is never written. While the event's slot migrates to another
//! master, Redis answers a script whose keys are only partly on a node `TRYAGAIN` instead
//! of running it, so with the always-missing `guard` no script of the event runs until the
//! migration is complete (the client retries, then follows the `MOVED`). Without it, a
//! script that found every key could delete an emptied zset and recreate it in one run,
//! and Redis would refuse the second write mid-script (the key would count as moved),
//! leaving half a change.

pub mod connection;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ::redis::{Script, Value};
use async_trait::async_trait;
use boxoffice_core::{Bitmap, EventId, HoldId, HoldStatus, HoldView, SeatMap, UnixMs, UserId};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

pub use self::connection::RedisConnection;
use crate::{
    Availability, ChangeKind, ChangeRecord, Clock, EventTruth, Feed, History, HoldRequest, Inventory,
    InventoryError, RebuildLock, ReleaseReason, Result, SeatChanges, SeatCounts, Selection, SoldSeat,
    StalePin,
};

/// Settings of the Redis inventory.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Put before every key (tests use a random one each, so they never meet).
    pub key_prefix: String,
    /// Change records kept per event (the stream is trimmed approximately above 1,000).
    pub change_stream_len: usize,
    /// How long an ended hold stays readable (released, expired, confirmed).
    pub ended_hold_keep_ms: u64,
    /// Fresh picks of best available after losing seats to another hold; a request
    /// still losing after them answers `SeatsUnavailable`.
    pub best_available_retries: u32,
    /// `None`: time comes from the Redis server (`TIME` inside each script), one clock for
    /// every node. Tests inject a clock whose time is passed to the scripts instead.
    pub clock: Option<Arc<dyn Clock>>,
}

impl RedisConfig {
    pub const DEFAULT_CHANGE_STREAM_LEN: usize = 131_072;
    pub const DEFAULT_ENDED_HOLD_KEEP_MS: u64 = 24 * 60 * 60 * 1000;
    pub const DEFAULT_BEST_AVAILABLE_RETRIES: u32 = 16;

    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            key_prefix: String::new(),
            change_stream_len: Self::DEFAULT_CHANGE_STREAM_LEN,
            ended_hold_keep_ms: Self::DEFAULT_ENDED_HOLD_KEEP_MS,
            best_available_retries: Self::DEFAULT_BEST_AVAILABLE_RETRIES,
            clock: None,
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url)
            .field("key_prefix", &self.key_prefix)
            .field("change_stream_len", &self.change_stream_len)
            .field("ended_hold_keep_ms", &self.ended_hold_keep_ms)
            .field("best_available_retries", &self.best_available_retries)
            .field("clock", &self.clock.as_ref().map(|_| "injected"))
            .finish()
    }
}

/// Holds longer than this are cut to it, so that times stay exact in Lua's doubles.
const MAX_TTL_MS: u64 = 10 * 365 * 24 * 60 * 60 * 1000;
/// History pages larger than this are cut to it.
const MAX_HISTORY_PAGE: usize = 1_000_000;

/// The event's keys, in the order the scripts declare them.
const KEY_NAMES: [&str; 10] =
    ["meta", "bits", "seats", "users", "holds", "expiry", "pins", "ended", "changes", "pool"];

macro_rules! script {
    ($name:literal) => {
        Script::new(concat!(include_str!("redis/common.lua"), include_str!(concat!("redis/", $name, ".lua"))))
    };
}

struct Scripts {
    load: Script,
    hold: Script,
    view: Script,
    release: Script,
    pin: Script,
    unpin: Script,
    confirm: Script,
    read: Script,
    feed: Script,
    history: Script,
    expire: Script,
    stale_pins: Script,
    release_sold: Script,
    mark_sold: Script,
    sold_seats: Script,
    snapshot: Script,
    rebuild_lock: Script,
    rebuild: Script,
    set_waitlist: Script,
    pool: Script,
    offer: Script,
    release_pool: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            load: script!("load"),
            hold: script!("hold"),
            view: script!("view"),
            release: script!("release"),
            pin: script!("pin"),
            unpin: script!("unpin"),
            confirm: script!("confirm"),
            read: script!("read"),
            feed: script!("feed"),
            history: script!("history"),
            expire: script!("expire"),
            stale_pins: script!("stale_pins"),
            release_sold: script!("release_sold"),
            mark_sold: script!("mark_sold"),
            sold_seats: script!("sold_seats"),
            snapshot: script!("snapshot"),
            rebuild_lock: script!("rebuild_lock"),
            rebuild: script!("rebuild"),
            set_waitlist: script!("waitlist"),
            pool: script!("pool"),
            offer: script!("offer"),
            release_pool: script!("release_pool"),
        }
    }
}

/// The Redis [`Inventory`]. Several instances (nodes) on one Redis and prefix are one
/// inventory.
pub struct RedisInventory {
    conn: RedisConnection,
    config: RedisConfig,
    scripts: Scripts,
    /// Seat maps of the events this node has loaded (for best available and the sweep).
    maps: RwLock<HashMap<EventId, Arc<SeatMap>>>,
    /// Events loaded here whose state Redis lost, until they are rebuilt.
    lost: Mutex<HashSet<EventId>>,
}

/// What `read.lua` answers.
struct ReadState {
    version: u64,
    seats: u32,
    held: u32,
    sold: u32,
    bitmap: Vec<u8>,
    user_seats: u32,
    epoch: u64,
}

impl RedisInventory {
    /// Connects to one Redis or a Redis Cluster (`redis+cluster://`); the connection is
    /// re-established by itself after failures.
    pub async fn connect(config: RedisConfig) -> ::redis::RedisResult<Self> {
        let conn = RedisConnection::connect(&config.url).await?;
        Ok(RedisInventory {
            conn,
            config,
            scripts: Scripts::new(),
            maps: RwLock::new(HashMap::new()),
            lost: Mutex::new(HashSet::new()),
        })
    }

    /// The event's epoch in Redis: when its keys were initialized (ms).
    pub async fn epoch(&self, event: EventId) -> Result<u64> {
        let meta = &self.keys(event)[0];
        let mut conn = self.conn.clone();
        let epoch: Option<u64> =
            ::redis::cmd("HGET").arg(meta).arg("epoch").query_async(&mut conn).await.map_err(backend)?;
        epoch.ok_or(InventoryError::UnknownEvent)
    }

    /// Checks every invariant of one event in Redis; the error says which one broke.
    pub async fn check_invariants(&self, event: EventId) -> std::result::Result<(), String> {
        let reply = self.call(&self.scripts.snapshot, event, &[]).await.map_err(|e| e.to_string())?;
        let items = ok(&reply, false).map_err(|e| e.to_string())?;
        check_snapshot(items).map_err(|e| format!("event {event}: {e}"))
    }

    fn map(&self, event: EventId) -> Result<Arc<SeatMap>> {
        self.maps.read().get(&event).cloned().ok_or(InventoryError::UnknownEvent)
    }

    fn loaded_events(&self) -> Vec<EventId> {
        self.maps.read().keys().copied().collect()
    }

    fn keys(&self, event: EventId) -> [String; 10] {
        KEY_NAMES.map(|name| format!("{}{{ev:{}}}:{name}", self.config.key_prefix, event.0))
    }

    /// The event's rebuild lock (same hash tag as its other keys).
    fn lock_key(&self, event: EventId) -> String {
        format!("{}{{ev:{}}}:rebuild", self.config.key_prefix, event.0)
    }

    /// The event's `guard` key, declared last by every script and never written, so that
    /// no script runs while the event's slot migrates (see the module's documentation).
    fn guard_key(&self, event: EventId) -> String {
        format!("{}{{ev:{}}}:guard", self.config.key_prefix, event.0)
    }

    /// Runs one script on the event's keys with the common arguments, then `args`.
    async fn call(&self, script: &Script, event: EventId, args: &[String]) -> Result<Value> {
        let mut invocation = script.prepare_invoke();
        for key in self.keys(event) {
            invocation.key(key);
        }
        invocation.key(self.guard_key(event));
        let now = self.config.clock.as_ref().map(|c| c.now_ms().to_string()).unwrap_or_default();
        invocation.arg(now).arg(self.config.change_stream_len).arg(self.config.ended_hold_keep_ms);
        for arg in args {
            invocation.arg(arg.as_str());
        }
        let mut conn = self.conn.clone();
        let reply = invocation.invoke_async(&mut conn).await.map_err(backend)?;
        self.check_lost(event, &reply)?;
        Ok(reply)
    }

    /// Runs a rebuild script: the event's keys, then its rebuild lock, the common
    /// arguments and `args` (binary safe).
    async fn call_locked<A: ::redis::ToRedisArgs>(
        &self,
        script: &Script,
        event: EventId,
        args: &[A],
    ) -> Result<Value> {
        let mut invocation = script.prepare_invoke();
        for key in self.keys(event) {
            invocation.key(key);
        }
        invocation.key(self.lock_key(event));
        invocation.key(self.guard_key(event));
        let now = self.config.clock.as_ref().map(|c| c.now_ms().to_string()).unwrap_or_default();
        invocation.arg(now).arg(self.config.change_stream_len).arg(self.config.ended_hold_keep_ms);
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        invocation.invoke_async(&mut conn).await.map_err(backend)
    }

    /// An event this node loaded that Redis no longer has was lost, not never made.
    fn check_lost(&self, event: EventId, reply: &Value) -> Result<()> {
        let Value::Array(items) = reply else { return Ok(()) };
        let unknown = items.len() >= 2
            && text(&items[0]).is_ok_and(|t| t == "e")
            && text(&items[1]).is_ok_and(|t| t == "UNKNOWN_EVENT");
        if unknown && self.maps.read().contains_key(&event) {
            if self.lost.lock().insert(event) {
                tracing::error!(%event, "redis lost the event's state; it must be rebuilt from the order store");
                metrics::counter!("boxoffice_inventory_events_lost_total").increment(1);
            }
            return Err(InventoryError::EventLost);
        }
        Ok(())
    }

    async fn hold_op(&self, script: &Script, id: HoldId, args: &[String]) -> Result<HoldView> {
        let mut all = vec![nonce_hex(id.nonce)];
        all.extend_from_slice(args);
        let reply = self.call(script, id.event, &all).await?;
        hold_view(id, ok(&reply, true)?)
    }

    async fn read(&self, event: EventId, bitmap: bool, user: Option<&UserId>) -> Result<ReadState> {
        let args =
            [if bitmap { "1" } else { "0" }.to_owned(), user.map(|u| u.to_string()).unwrap_or_default()];
        let reply = self.call(&self.scripts.read, event, &args).await?;
        let items = ok(&reply, false)?;
        Ok(ReadState {
            version: int_at(items, 1)?,
            seats: int_at(items, 2)? as u32,
            held: int_at(items, 3)? as u32,
            sold: int_at(items, 4)? as u32,
            bitmap: bytes_at(items, 5)?,
            user_seats: int_at(items, 6)? as u32,
            epoch: int_at(items, 7)?,
        })
    }

    async fn hold_seats(&self, request: &HoldRequest, seats: &[u32]) -> Result<HoldView> {
        let id = HoldId::random(request.event);
        let mut args = Vec::with_capacity(5 + seats.len());
        args.push(nonce_hex(id.nonce));
        args.push(request.user.to_string());
        args.push(request.ttl_ms.min(MAX_TTL_MS).to_string());
        args.push(request.max_seats_per_user.to_string());
        args.push(seats.len().to_string());
        args.extend(seats.iter().map(u32::to_string));
        // The orphan-seat rule's checks come from the node's copy of the seat map (rows
        // and aisles); the script evaluates them against the bitmap in the same step as
        // the hold. A seat outside the map is refused by the script (BAD_SEAT) first.
        let map = self.map(request.event)?;
        if request.orphan_rule && seats.iter().all(|&s| (s as usize) < map.len()) {
            for check in map.strand_checks(seats) {
                args.push(check.seat.to_string());
                args.push(check.beyond.map_or_else(|| "-1".to_owned(), |b| b.to_string()));
            }
        }
        let reply = self.call(&self.scripts.hold, request.event, &args).await?;
        hold_view(id, ok(&reply, false)?)
    }

    async fn hold_best_available(
        &self,
        request: &HoldRequest,
        count: u32,
        section: Option<u16>,
    ) -> Result<HoldView> {
        let map = self.map(request.event)?;
        let mut attempt = 0;
        loop {
            let state = self.read(request.event, true, Some(&request.user)).await?;
            if state.user_seats.saturating_add(count) > request.max_seats_per_user {
                return Err(InventoryError::UserLimit {
                    current: state.user_seats,
                    requested: count,
                    limit: request.max_seats_per_user,
                });
            }
            let bitmap = Bitmap::from_bytes(&state.bitmap, map.len()).ok_or_else(|| {
                InventoryError::Journal("redis: the event's bitmap does not fit its seat map".into())
            })?;
            // Blocked seats look taken to the picker (the script's checks see the real bits).
            let bitmap = match &request.blocked {
                Some(blocked) => bitmap.without(blocked),
                None => bitmap,
            };
            let picked = if request.orphan_rule {
                map.best_available_strict(&bitmap, count, section)
            } else {
                map.best_available(&bitmap, count, section)
            };
            let seats = picked.ok_or(InventoryError::NotEnoughSeats)?;
            if seats.is_empty() {
                return Err(InventoryError::NotEnoughSeats);
            }
            match self.hold_seats(request, &seats).await {
                // Another node changed the seats, or their neighbours, since the read.
                Err(InventoryError::SeatsUnavailable(_) | InventoryError::OrphanSeat(_))
                    if attempt < self.config.best_available_retries =>
                {
                    metrics::counter!("boxoffice_best_available_retries_total").increment(1);
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

#[async_trait]
impl Inventory for RedisInventory {
    async fn load_event(&self, event: EventId, map: Arc<SeatMap>, sold: Vec<SoldSeat>) -> Result<()> {
        if self.maps.read().contains_key(&event) {
            return Ok(());
        }
        let mut bitmap = Bitmap::all_available(map.len());
        let mut args = vec![map.len().to_string(), String::new()];
        for seat in sold {
            if seat.seat_index as usize >= map.len() || !bitmap.is_available(seat.seat_index) {
                tracing::error!(%event, seat = seat.seat_index, "order store lists a seat twice or out of range");
                continue;
            }
            bitmap.set_available(seat.seat_index, false);
            args.push(seat.seat_index.to_string());
            args.push(seat.user.to_string());
        }
        // The bitmap travels as bytes; everything else as text.
        let mut invocation = self.scripts.load.prepare_invoke();
        for key in self.keys(event) {
            invocation.key(key);
        }
        invocation.key(self.guard_key(event));
        let now = self.config.clock.as_ref().map(|c| c.now_ms().to_string()).unwrap_or_default();
        invocation.arg(now).arg(self.config.change_stream_len).arg(self.config.ended_hold_keep_ms);
        invocation.arg(&args[0]).arg(bitmap.to_bytes());
        for arg in &args[2..] {
            invocation.arg(arg.as_str());
        }
        let mut conn = self.conn.clone();
        let reply: Value = invocation.invoke_async(&mut conn).await.map_err(backend)?;
        let items = ok(&reply, false)?;
        let seats = int_at(items, 2)?;
        if int_at(items, 1)? == 1 {
            tracing::info!(%event, seats, "event initialized in redis");
        } else if seats != map.len() as u64 {
            tracing::error!(%event, redis = seats, node = map.len(), "the event in redis has another seat count");
            return Err(InventoryError::Journal(format!(
                "redis: event {event} has {seats} seats there, {} here",
                map.len()
            )));
        }
        self.maps.write().entry(event).or_insert(map);
        Ok(())
    }

    async fn hold(&self, request: HoldRequest) -> Result<HoldView> {
        self.map(request.event)?;
        match &request.selection {
            Selection::Seats(seats) => {
                // The blocked seats are the caller's decision, not Redis state: checked
                // here, before the script, like the memory backend does in its step.
                if let Some(blocked) = &request.blocked {
                    let mut refused: Vec<u32> =
                        seats.iter().copied().filter(|&s| blocked.is_available(s)).collect();
                    if !refused.is_empty() {
                        refused.sort_unstable();
                        refused.dedup();
                        return Err(InventoryError::NotEntitled(refused));
                    }
                }
                self.hold_seats(&request, seats).await
            }
            Selection::BestAvailable { count, section } => {
                self.hold_best_available(&request, *count, *section).await
            }
        }
    }

    async fn hold_view(&self, hold: HoldId) -> Result<HoldView> {
        self.hold_op(&self.scripts.view, hold, &[]).await
    }

    async fn release(&self, hold: HoldId) -> Result<HoldView> {
        self.hold_op(&self.scripts.release, hold, &[]).await
    }

    async fn pin(&self, hold: HoldId, attempt: &str, deadline_ms: UnixMs) -> Result<HoldView> {
        self.hold_op(&self.scripts.pin, hold, &[attempt.to_owned(), deadline_ms.to_string()]).await
    }

    async fn unpin(&self, hold: HoldId, attempt: &str) -> Result<HoldView> {
        self.hold_op(&self.scripts.unpin, hold, &[attempt.to_owned()]).await
    }

    async fn confirm(&self, hold: HoldId, attempt: &str) -> Result<HoldView> {
        self.hold_op(&self.scripts.confirm, hold, &[attempt.to_owned()]).await
    }

    async fn availability(&self, event: EventId) -> Result<Availability> {
        let state = self.read(event, true, None).await?;
        Ok(Availability {
            epoch: state.epoch,
            version: state.version,
            available_count: state.seats - state.held - state.sold,
            bitmap: Bytes::from(state.bitmap),
        })
    }

    async fn feed(&self, event: EventId, since: u64) -> Result<Feed> {
        let reply = self.call(&self.scripts.feed, event, &[since.to_string()]).await?;
        let items = ok(&reply, false)?;
        let version = int_at(items, 1)?;
        let (seats, held, sold) =
            (int_at(items, 2)? as u32, int_at(items, 3)? as u32, int_at(items, 4)? as u32);
        let availability = Availability {
            epoch: int_at(items, 8)?,
            version,
            available_count: seats - held - sold,
            bitmap: Bytes::from(bytes_at(items, 5)?),
        };
        let changes = if int_at(items, 6)? == 1 {
            let records = parse_records(event, at(items, 7)?)?;
            Some(net_changes(since, version, &records))
        } else {
            None
        };
        Ok(Feed { availability, changes })
    }

    async fn seat_counts(&self, event: EventId) -> Result<SeatCounts> {
        let state = self.read(event, false, None).await?;
        Ok(SeatCounts {
            available: state.seats - state.held - state.sold,
            held: state.held,
            sold: state.sold,
        })
    }

    async fn user_seat_count(&self, event: EventId, user: &UserId) -> Result<u32> {
        Ok(self.read(event, false, Some(user)).await?.user_seats)
    }

    async fn expire_due(&self) -> Result<u32> {
        let mut total = 0;
        for event in self.loaded_events() {
            match self.call(&self.scripts.expire, event, &[]).await.and_then(|reply| {
                let items = ok(&reply, false)?;
                int_at(items, 1)
            }) {
                Ok(n) => total += n as u32,
                // Reported once when found; rebuilt by the server.
                Err(InventoryError::EventLost) => {}
                Err(e) => return Err(e),
            }
        }
        if total > 0 {
            metrics::counter!("boxoffice_holds_expired_total").increment(u64::from(total));
        }
        Ok(total)
    }

    async fn stale_pins(&self) -> Result<Vec<StalePin>> {
        let mut stale = Vec::new();
        for event in self.loaded_events() {
            let reply = match self.call(&self.scripts.stale_pins, event, &[]).await {
                Err(InventoryError::EventLost) => continue,
                other => other?,
            };
            let items = match ok(&reply, false) {
                Ok(items) => items,
                Err(InventoryError::UnknownEvent | InventoryError::EventLost) => continue,
                Err(e) => return Err(e),
            };
            for pair in items[1..].chunks(2) {
                let nonce = parse_nonce(&text(&pair[0])?)?;
                let attempt = text(pair.get(1).ok_or_else(|| malformed("stale pin without attempt"))?)?;
                stale.push(StalePin { hold: HoldId { event, nonce }, attempt });
            }
        }
        Ok(stale)
    }

    async fn release_sold(&self, event: EventId, seats: &[u32], reason: ReleaseReason) -> Result<Vec<u32>> {
        let mut args = Vec::with_capacity(1 + seats.len());
        args.push(reason.as_str().to_owned());
        args.extend(seats.iter().map(u32::to_string));
        let reply = self.call(&self.scripts.release_sold, event, &args).await?;
        seat_list(at(ok(&reply, false)?, 1)?)
    }

    async fn mark_sold(&self, event: EventId, seats: Vec<SoldSeat>) -> Result<Vec<u32>> {
        let mut args = Vec::with_capacity(2 * seats.len());
        for seat in seats {
            args.push(seat.seat_index.to_string());
            args.push(seat.user.to_string());
        }
        let reply = self.call(&self.scripts.mark_sold, event, &args).await?;
        seat_list(at(ok(&reply, false)?, 1)?)
    }

    async fn sold_seats(&self, event: EventId) -> Result<Vec<u32>> {
        let reply = self.call(&self.scripts.sold_seats, event, &[]).await?;
        let mut seats = seat_list(at(ok(&reply, false)?, 1)?)?;
        seats.sort_unstable();
        Ok(seats)
    }

    async fn history(&self, event: EventId, after_version: u64, limit: usize) -> Result<History> {
        let limit = limit.clamp(1, MAX_HISTORY_PAGE);
        let reply =
            self.call(&self.scripts.history, event, &[after_version.to_string(), limit.to_string()]).await?;
        let items = ok(&reply, false)?;
        Ok(History { complete: int_at(items, 1)? == 1, records: parse_records(event, at(items, 2)?)? })
    }

    /// Redis answers a script after applying it: nothing is pending on the node.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    async fn set_waitlist(&self, event: EventId, on: bool) -> Result<Vec<u32>> {
        let args =
            [if on { "1" } else { "0" }.to_owned(), String::new(), crate::WAITLIST_JOIN_GUARD_MS.to_string()];
        let reply = self.call(&self.scripts.set_waitlist, event, &args).await?;
        seat_list(at(ok(&reply, false)?, 1)?)
    }

    async fn clear_waitlist_if(&self, event: EventId, generation: u64) -> Result<Option<Vec<u32>>> {
        let args = ["0".to_owned(), generation.to_string(), crate::WAITLIST_JOIN_GUARD_MS.to_string()];
        let reply = self.call(&self.scripts.set_waitlist, event, &args).await?;
        let items = ok(&reply, false)?;
        if int_at(items, 2)? == 1 {
            return Ok(None);
        }
        seat_list(at(items, 1)?).map(Some)
    }

    async fn pool(&self, event: EventId) -> Result<crate::Pool> {
        let reply = self.call(&self.scripts.pool, event, &[]).await?;
        let items = ok(&reply, false)?;
        let mut seats = seat_list(at(items, 2)?)?;
        seats.sort_unstable();
        Ok(crate::Pool { on: int_at(items, 1)? == 1, seats, generation: int_at(items, 3)? })
    }

    async fn offer(&self, request: crate::OfferRequest) -> Result<HoldView> {
        let id = HoldId::random(request.event);
        let mut args = Vec::with_capacity(4 + request.seats.len());
        args.push(nonce_hex(id.nonce));
        args.push(request.user.to_string());
        args.push(request.ttl_ms.min(MAX_TTL_MS).to_string());
        args.push(request.max_seats_per_user.to_string());
        args.extend(request.seats.iter().map(u32::to_string));
        let reply = self.call(&self.scripts.offer, request.event, &args).await?;
        hold_view(id, ok(&reply, false)?)
    }

    async fn release_pool(&self, event: EventId, seats: &[u32]) -> Result<Vec<u32>> {
        let args: Vec<String> = seats.iter().map(u32::to_string).collect();
        let reply = self.call(&self.scripts.release_pool, event, &args).await?;
        seat_list(at(ok(&reply, false)?, 1)?)
    }

    async fn begin_rebuild(&self, event: EventId, map: Arc<SeatMap>, lease_ms: u64) -> Result<RebuildLock> {
        let token = format!("{:032x}", rand::random::<u128>());
        let reply = self
            .call_locked(&self.scripts.rebuild_lock, event, &[token.clone(), lease_ms.to_string()])
            .await?;
        let items = ok(&reply, false)?;
        match text(at(items, 1)?)?.as_str() {
            "present" => {
                let seats = int_at(items, 2)?;
                if seats != map.len() as u64 {
                    tracing::error!(%event, redis = seats, node = map.len(), "the event in redis has another seat count");
                    return Err(InventoryError::Journal(format!(
                        "redis: event {event} has {seats} seats there, {} here",
                        map.len()
                    )));
                }
                self.maps.write().entry(event).or_insert(map);
                self.lost.lock().remove(&event);
                Ok(RebuildLock::Present { epoch: int_at(items, 3)? })
            }
            "locked" => Ok(RebuildLock::Acquired(token)),
            _ => Ok(RebuildLock::Busy),
        }
    }

    async fn finish_rebuild(
        &self,
        event: EventId,
        map: Arc<SeatMap>,
        lock: &str,
        truth: EventTruth,
    ) -> Result<bool> {
        let mut bitmap = Bitmap::all_available(map.len());
        let mut sold = Vec::with_capacity(2 * truth.sold.len());
        for seat in truth.sold {
            if seat.seat_index as usize >= map.len() || !bitmap.is_available(seat.seat_index) {
                tracing::error!(%event, seat = seat.seat_index, "order store lists a seat twice or out of range");
                continue;
            }
            bitmap.set_available(seat.seat_index, false);
            sold.push(seat.seat_index.to_string());
            sold.push(seat.user.to_string());
        }
        let mut args: Vec<Vec<u8>> = vec![
            lock.as_bytes().to_vec(),
            map.len().to_string().into_bytes(),
            bitmap.to_bytes(),
            truth.epoch.to_string().into_bytes(),
            truth.version.to_string().into_bytes(),
            (sold.len() / 2).to_string().into_bytes(),
        ];
        args.extend(sold.into_iter().map(String::into_bytes));
        let pins = truth.pins.len();
        for pin in truth.pins.into_iter().filter(|p| p.hold.event == event) {
            let seats: Vec<String> = pin.seats.iter().map(u32::to_string).collect();
            args.push(nonce_hex(pin.hold.nonce).into_bytes());
            args.push(pin.user.to_string().into_bytes());
            args.push(pin.attempt.into_bytes());
            args.push(pin.deadline_ms.to_string().into_bytes());
            args.push(seats.join(",").into_bytes());
        }
        let reply = self.call_locked(&self.scripts.rebuild, event, &args).await?;
        let items = ok(&reply, false).map_err(|e| match e {
            InventoryError::Journal(m) if m.contains("REBUILD_LOCK_LOST") => InventoryError::Journal(
                format!("redis: the rebuild lock of {event} expired before the rebuild"),
            ),
            other => other,
        })?;
        let initialized = int_at(items, 1)? == 1;
        if initialized {
            let (restored, skipped) = (int_at(items, 2)?, int_at(items, 3)?);
            tracing::warn!(%event, epoch = truth.epoch, pins, restored, skipped, "event rebuilt in redis from the order store");
        }
        self.maps.write().insert(event, map);
        self.lost.lock().remove(&event);
        Ok(initialized)
    }

    fn lost_events(&self) -> Vec<EventId> {
        self.lost.lock().iter().copied().collect()
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: String = ::redis::cmd("PING").query_async(&mut conn).await.map_err(backend)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------

fn backend(e: ::redis::RedisError) -> InventoryError {
    InventoryError::Journal(format!("redis: {e}"))
}

fn malformed(what: &str) -> InventoryError {
    InventoryError::Journal(format!("redis: malformed script reply: {what}"))
}

fn nonce_hex(nonce: u128) -> String {
    format!("{nonce:032x}")
}

fn parse_nonce(hex: &str) -> Result<u128> {
    u128::from_str_radix(hex, 16).map_err(|_| malformed("hold nonce"))
}

fn array(value: &Value) -> Result<&[Value]> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(&[]),
        _ => Err(malformed("expected an array")),
    }
}

fn at(items: &[Value], i: usize) -> Result<&Value> {
    items.get(i).ok_or_else(|| malformed("reply too short"))
}

fn int(value: &Value) -> Result<u64> {
    match value {
        Value::Int(n) if *n >= 0 => Ok(*n as u64),
        Value::BulkString(b) => {
            std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).ok_or_else(|| malformed("number"))
        }
        _ => Err(malformed("expected a number")),
    }
}

fn int_at(items: &[Value], i: usize) -> Result<u64> {
    int(at(items, i)?)
}

fn bytes_at(items: &[Value], i: usize) -> Result<Vec<u8>> {
    match at(items, i)? {
        Value::BulkString(b) => Ok(b.clone()),
        Value::Nil => Ok(Vec::new()),
        _ => Err(malformed("expected a string")),
    }
}

fn text(value: &Value) -> Result<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| malformed("text is not UTF-8")),
        Value::SimpleString(s) => Ok(s.clone()),
        _ => Err(malformed("expected text")),
    }
}

fn seat_list(value: &Value) -> Result<Vec<u32>> {
    array(value)?.iter().map(|v| int(v).map(|n| n as u32)).collect()
}

/// The items of an `{'ok', ...}` reply, or the error an `{'e', CODE, ...}` reply names.
fn ok(reply: &Value, hold_op: bool) -> Result<&[Value]> {
    let items = array(reply)?;
    match text(at(items, 0)?)?.as_str() {
        "ok" => Ok(items),
        "e" => Err(script_error(&items[1..], hold_op)),
        _ => Err(malformed("reply tag")),
    }
}

fn script_error(items: &[Value], hold_op: bool) -> InventoryError {
    let code = items.first().and_then(|v| text(v).ok()).unwrap_or_default();
    let num = |i: usize| items.get(i).and_then(|v| int(v).ok()).unwrap_or(0) as u32;
    match code.as_str() {
        "UNKNOWN_EVENT" if hold_op => InventoryError::UnknownHold,
        "UNKNOWN_EVENT" => InventoryError::UnknownEvent,
        "UNKNOWN_HOLD" => InventoryError::UnknownHold,
        "BAD_SEAT" => InventoryError::BadSeat(num(1)),
        "DUPLICATE_SEAT" => InventoryError::DuplicateSeat,
        "SEATS_UNAVAILABLE" => match items.get(1).map(seat_list) {
            Some(Ok(seats)) => InventoryError::SeatsUnavailable(seats),
            _ => malformed("unavailable seats"),
        },
        "NOT_ENOUGH_SEATS" => InventoryError::NotEnoughSeats,
        "ORPHAN_SEAT" => match items.get(1).map(seat_list) {
            Some(Ok(seats)) => InventoryError::OrphanSeat(seats),
            _ => malformed("stranded seats"),
        },
        "USER_LIMIT" => InventoryError::UserLimit { current: num(1), requested: num(2), limit: num(3) },
        "HOLD_EXPIRED" => InventoryError::HoldExpired,
        "HOLD_RELEASED" => InventoryError::HoldReleased,
        "ALREADY_CONFIRMED" => InventoryError::AlreadyConfirmed,
        "HOLD_CONFIRMING" => InventoryError::HoldConfirming,
        "NOT_PINNED" => InventoryError::NotPinned,
        other => InventoryError::Journal(format!("redis: script refused: {other}")),
    }
}

fn parse_status(s: &str) -> Result<HoldStatus> {
    Ok(match s {
        "held" => HoldStatus::Held,
        "confirming" => HoldStatus::Confirming,
        "confirmed" => HoldStatus::Confirmed,
        "released" => HoldStatus::Released,
        "expired" => HoldStatus::Expired,
        _ => return Err(malformed("hold status")),
    })
}

fn parse_user(value: &Value) -> Result<UserId> {
    UserId::parse(&text(value)?).map_err(|_| malformed("user id"))
}

/// `{'ok', status, user, created, expires, seats}`.
fn hold_view(id: HoldId, items: &[Value]) -> Result<HoldView> {
    Ok(HoldView {
        id,
        event: id.event,
        user: parse_user(at(items, 2)?)?,
        seats: seat_list(at(items, 5)?)?,
        status: parse_status(&text(at(items, 1)?)?)?,
        created_ms: int_at(items, 3)?,
        expires_ms: int_at(items, 4)?,
    })
}

/// Stream entries `[id, [field, value, ...]]` as change records.
fn parse_records(event: EventId, value: &Value) -> Result<Vec<ChangeRecord>> {
    let mut records = Vec::new();
    for entry in array(value)? {
        let entry = array(entry)?;
        let id = text(at(entry, 0)?)?;
        let version =
            id.split_once('-').and_then(|(v, _)| v.parse().ok()).ok_or_else(|| malformed("stream id"))?;
        let (mut at_ms, mut kind, mut reason, mut seats, mut hold, mut user) =
            (0, None, None, Vec::new(), None, None);
        for pair in array(at(entry, 1)?)?.chunks(2) {
            let [field, value] = pair else { return Err(malformed("stream fields")) };
            let value = text(value)?;
            match text(field)?.as_str() {
                "at" => at_ms = value.parse().map_err(|_| malformed("record time"))?,
                "k" => kind = Some(value),
                "r" => reason = ReleaseReason::parse(&value),
                "s" => {
                    seats = value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.parse().map_err(|_| malformed("record seat")))
                        .collect::<Result<_>>()?
                }
                "h" => hold = Some(HoldId { event, nonce: parse_nonce(&value)? }),
                "u" => user = Some(UserId::parse(&value).map_err(|_| malformed("record user"))?),
                _ => {}
            }
        }
        let kind = match (kind.as_deref(), reason) {
            (Some("held"), _) => ChangeKind::Held,
            (Some("sold"), _) => ChangeKind::Sold,
            (Some("released"), Some(reason)) => ChangeKind::Released(reason),
            (Some("pooled"), Some(reason)) => ChangeKind::Pooled(reason),
            (Some("offered"), _) => ChangeKind::Offered,
            (Some("unpooled"), _) => ChangeKind::Unpooled,
            _ => return Err(malformed("record kind")),
        };
        records.push(ChangeRecord { version, at_ms, kind, seats, hold, user, recovered: false });
    }
    Ok(records)
}

/// The availability a record gives its seats, if it changes it: a confirm turns held
/// seats sold, and both are unavailable.
fn flip(record: &ChangeRecord) -> Option<bool> {
    match record.kind {
        ChangeKind::Held => Some(false),
        ChangeKind::Released(_) => Some(true),
        ChangeKind::Sold if record.hold.is_none() => Some(false),
        ChangeKind::Sold => None,
        // Held or sold seats into the pool, and pool seats into a hold, stay unavailable.
        ChangeKind::Pooled(_) | ChangeKind::Offered => None,
        ChangeKind::Unpooled => Some(true),
    }
}

/// The net change of the records after `since` (first and last flip of each seat).
fn net_changes(since: u64, to: u64, records: &[ChangeRecord]) -> SeatChanges {
    let mut flips: HashMap<u32, (bool, bool)> = HashMap::new();
    let mut oldest_change_ms = None;
    for record in records {
        let Some(available) = flip(record) else { continue };
        oldest_change_ms.get_or_insert(record.at_ms);
        for &seat in &record.seats {
            flips.entry(seat).and_modify(|(_, last)| *last = available).or_insert((available, available));
        }
    }
    let (mut available, mut unavailable) = (Vec::new(), Vec::new());
    for (seat, (first, last)) in flips {
        if first == last {
            if last { available.push(seat) } else { unavailable.push(seat) }
        }
    }
    available.sort_unstable();
    unavailable.sort_unstable();
    SeatChanges { from: since, to, available, unavailable, oldest_change_ms }
}

/// The invariants of one event, from `snapshot.lua`'s reply.
fn check_snapshot(items: &[Value]) -> std::result::Result<(), String> {
    let e = |err: InventoryError| err.to_string();
    let n = int_at(items, 2).map_err(e)? as usize;
    let (held_counter, sold_counter) =
        (int_at(items, 3).map_err(e)? as u32, int_at(items, 4).map_err(e)? as u32);
    let bits = bytes_at(items, 5).map_err(e)?;
    let bitmap = Bitmap::from_bytes(&bits, n).ok_or("bitmap has the wrong length or stray bits")?;
    let mut states: HashMap<u32, String> = HashMap::new();
    for pair in array(at(items, 6).map_err(e)?).map_err(e)?.chunks(2) {
        let seat: u32 = text(&pair[0]).map_err(e)?.parse().map_err(|_| "seat field is not a number")?;
        if seat as usize >= n {
            return Err(format!("seat {seat} is outside the map"));
        }
        states.insert(seat, text(&pair[1]).map_err(e)?);
    }
    let mut users: HashMap<String, u32> = HashMap::new();
    for pair in array(at(items, 7).map_err(e)?).map_err(e)?.chunks(2) {
        users.insert(text(&pair[0]).map_err(e)?, int(&pair[1]).map_err(e)? as u32);
    }
    let mut expiry: HashMap<String, u64> = HashMap::new();
    for pair in array(at(items, 9).map_err(e)?).map_err(e)?.chunks(2) {
        let score: f64 = text(&pair[1]).map_err(e)?.parse().map_err(|_| "expiry score")?;
        expiry.insert(text(&pair[0]).map_err(e)?, score as u64);
    }
    let pins: Vec<String> =
        array(at(items, 10).map_err(e)?).map_err(e)?.iter().map(text).collect::<Result<_>>().map_err(e)?;

    let mut per_user: HashMap<String, u32> = HashMap::new();
    let (mut held, mut sold) = (0u32, 0u32);
    let mut pooled: Vec<u32> = Vec::new();
    for i in 0..n as u32 {
        let available = bitmap.is_available(i);
        match states.get(&i) {
            None if !available => return Err(format!("seat {i} bit is 0")),
            Some(_) if available => return Err(format!("seat {i} is taken but its bit is 1")),
            Some(state) if state.starts_with('s') => {
                *per_user.entry(state[1..].to_owned()).or_default() += 1;
                sold += 1;
            }
            Some(state) if state.starts_with('h') => held += 1,
            Some(state) if state == "p" => pooled.push(i),
            Some(state) => return Err(format!("seat {i} has state {state:?}")),
            None => {}
        }
    }
    let mut live_unpinned = 0;
    let mut held_by_holds = 0;
    for hold in array(at(items, 8).map_err(e)?).map_err(e)? {
        let hold = array(hold).map_err(e)?;
        let nonce = text(at(hold, 0).map_err(e)?).map_err(e)?;
        let status = text(at(hold, 1).map_err(e)?).map_err(e)?;
        let user = text(at(hold, 2).map_err(e)?).map_err(e)?;
        let expires_ms = int_at(hold, 3).map_err(e)?;
        let seats = seat_list(at(hold, 4).map_err(e)?).map_err(e)?;
        let live = status == "held" || status == "confirming";
        let indexed = expiry.get(&nonce);
        if !live {
            if indexed.is_some() || pins.contains(&nonce) {
                return Err(format!("ended hold {nonce} is still indexed"));
            }
            continue;
        }
        for seat in &seats {
            if states.get(seat) != Some(&format!("h{nonce}")) {
                return Err(format!("hold {nonce} lists seat {seat} it does not hold"));
            }
        }
        held_by_holds += seats.len() as u32;
        *per_user.entry(user).or_default() += seats.len() as u32;
        let pinned = status == "confirming";
        if pinned != pins.contains(&nonce) || pinned == indexed.is_some() {
            return Err(format!("hold {nonce}: pinned holds, and only they, skip expiry"));
        }
        if let Some(&at_ms) = indexed {
            if at_ms != expires_ms {
                return Err(format!("hold {nonce} is indexed to expire at {at_ms}, not {expires_ms}"));
            }
            live_unpinned += 1;
        }
    }
    if held_by_holds != held {
        return Err(format!("live holds list {held_by_holds} seats but {held} seats are held"));
    }
    let mut pool = seat_list(at(items, 11).map_err(e)?).map_err(e)?;
    pool.sort_unstable();
    if pool != pooled {
        return Err(format!("the pool lists {pool:?} but the seats pooled are {pooled:?}"));
    }
    // Pool seats are counted with the held ones (unavailable, kept for the waitlist).
    let held = held + pooled.len() as u32;
    if live_unpinned != expiry.len() {
        return Err("expiry index lists dead holds".into());
    }
    if held != held_counter || sold != sold_counter {
        return Err(format!(
            "counters held={held_counter} sold={sold_counter} but seats say held={held} sold={sold}"
        ));
    }
    if per_user != users {
        return Err(format!("per-user seat counts {users:?} differ from the seats {per_user:?}"));
    }
    if bitmap.count_available() as u32 + held + sold != n as u32 {
        return Err("available + held + sold != seats".into());
    }
    Ok(())
}
