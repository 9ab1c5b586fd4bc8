//! The embedded inventory: one shard per event, each a flat array of seat states, the
//! availability bitmap, a hold table and an expiry index behind one short critical section.
//!
//! Every change of seats happens under the shard's lock together with its bitmap bits,
//! the version bump and the journal append; the lock is released before the caller waits
//! for the journal (group commit), so waiting never blocks other holds.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use boxoffice_core::{Bitmap, EventId, HoldId, HoldStatus, HoldView, SeatMap, UnixMs, UserId};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::journal::{
    EndReason, Journal, JournaledHold, JournaledPool, POOL_RECORD_SEATS, Record, SyncMode, Ticket,
};
use crate::{
    Availability, ChangeKind, ChangeRecord, Clock, EventTruth, Feed, History, HoldRequest, Inventory,
    InventoryError, OfferRequest, Pool, RebuildLock, ReleaseReason, Result, SeatChanges, SeatCounts,
    Selection, SoldSeat, StalePin, SystemClock,
};

/// Settings of the embedded inventory.
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    /// Where the hold journal lives; `None` keeps holds in memory only.
    pub journal_dir: Option<PathBuf>,
    pub sync: SyncMode,
    /// Ended holds remembered per event, so that `GET /v1/holds/{id}` can say `released`,
    /// `expired` or `confirmed`; the oldest are forgotten first.
    pub ended_holds_kept_per_event: usize,
    /// Seat changes remembered per event for the live map's deltas and resumes; a
    /// viewer further behind gets a fresh snapshot.
    pub change_ring_seats: usize,
    /// Change records remembered per event for the audit history's writer (see
    /// [`Inventory::history`]); a writer further behind loses the oldest.
    pub history_records: usize,
}

impl MemoryConfig {
    pub const DEFAULT_ENDED_HOLDS_KEPT_PER_EVENT: usize = 100_000;
    pub const DEFAULT_CHANGE_RING_SEATS: usize = 65_536;
    pub const DEFAULT_HISTORY_RECORDS: usize = 131_072;
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            journal_dir: None,
            sync: SyncMode::Fsync,
            ended_holds_kept_per_event: Self::DEFAULT_ENDED_HOLDS_KEPT_PER_EVENT,
            change_ring_seats: Self::DEFAULT_CHANGE_RING_SEATS,
            history_records: Self::DEFAULT_HISTORY_RECORDS,
        }
    }
}

/// One seat's availability flip, at the version that made it.
#[derive(Debug, Clone, Copy)]
struct Change {
    version: u64,
    seat: u32,
    available: bool,
    at_ms: UnixMs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SeatState {
    Available,
    Held(u128),
    Sold(UserId),
    /// In the event's waitlist pool (unavailable, owned by no one).
    Pooled,
}

#[derive(Debug, Clone)]
struct Pin {
    attempt: String,
    deadline_ms: UnixMs,
}

#[derive(Debug, Clone)]
struct LiveHold {
    user: UserId,
    seats: Vec<u32>,
    created_ms: UnixMs,
    expires_ms: UnixMs,
    pin: Option<Pin>,
    /// How the hold ended; `None` while it is live. Ended holds stay in the table (the
    /// newest `ended_holds_kept_per_event`) so that their status can still be read.
    ended: Option<HoldStatus>,
}

/// A `HashMap` with a fast, seeded hasher: hold ids are random and user ids come from
/// verified tokens, and the default SipHash costs more than the rest of a hold.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

struct ShardState {
    event: EventId,
    seats: Vec<SeatState>,
    bitmap: Bitmap,
    version: u64,
    /// Live holds and the most recently ended ones (see `LiveHold::ended`).
    holds: FastMap<u128, LiveHold>,
    /// `(expires_ms, nonce)` of every unpinned live hold.
    expiry: BTreeSet<(UnixMs, u128)>,
    /// Seats per user, held plus sold.
    per_user: FastMap<UserId, u32>,
    held_seats: u32,
    sold_seats: u32,
    /// Ended holds still in `holds`, oldest first.
    ended_order: VecDeque<u128>,
    cached: Option<Availability>,
    /// Recent availability flips, oldest first, bounded by `change_ring_seats`.
    changes: VecDeque<Change>,
    /// Changes after this version are all in `changes`.
    changes_floor: u64,
    change_capacity: usize,
    /// Recent change records, oldest first, bounded by `history_capacity`.
    history: VecDeque<ChangeRecord>,
    /// Records after this version are all in `history`.
    history_floor: u64,
    history_capacity: usize,
    /// The time of the current operation (set when it starts).
    now_ms: UnixMs,
    /// The inventory's epoch (see [`MemoryInventory`]'s).
    epoch: u64,
    /// The waitlist flag: freed seats go to `pool` instead of back on sale.
    pool_on: bool,
    /// Counts the flag's sets (`Pool::generation`); not journaled: a restart starts it
    /// again, and a matcher reads it afresh before each clear.
    pool_generation: u64,
    /// Until when (ms) a clear is refused: `WAITLIST_JOIN_GUARD_MS` after the last set.
    pool_guard_until: UnixMs,
    /// Seats in the waitlist pool (state `Pooled`, bit 0).
    pool: BTreeSet<u32>,
}

struct Shard {
    event: EventId,
    map: Arc<SeatMap>,
    state: Mutex<ShardState>,
}

/// The embedded [`Inventory`].
pub struct MemoryInventory {
    shards: RwLock<HashMap<EventId, Arc<Shard>>>,
    journal: Option<Journal>,
    recovered: Mutex<HashMap<EventId, Vec<JournaledHold>>>,
    /// Waitlist pools from the journal, installed as their events are loaded.
    recovered_pools: Mutex<HashMap<EventId, JournaledPool>>,
    clock: Arc<dyn Clock>,
    config: MemoryConfig,
    /// When this inventory was opened: versions restart with the process, so this is the
    /// epoch of every event's history here.
    epoch: u64,
}

impl MemoryInventory {
    /// Opens the inventory, replaying the hold journal if there is one. Recovered holds
    /// are installed as their events are loaded; call
    /// [`commit_recovery`](Self::commit_recovery) once every event is loaded.
    pub fn open(config: MemoryConfig, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        let (journal, holds, pools) = match &config.journal_dir {
            Some(dir) => {
                let (journal, holds, pools) = Journal::open_with_pools(dir, config.sync)?;
                (Some(journal), holds, pools)
            }
            None => (None, Vec::new(), HashMap::new()),
        };
        let mut recovered: HashMap<EventId, Vec<JournaledHold>> = HashMap::new();
        for hold in holds {
            recovered.entry(hold.hold.event).or_default().push(hold);
        }
        Ok(MemoryInventory {
            shards: RwLock::new(HashMap::new()),
            journal,
            recovered: Mutex::new(recovered),
            recovered_pools: Mutex::new(pools),
            epoch: clock.now_ms(),
            clock,
            config,
        })
    }

    /// An inventory without a journal, on the wall clock.
    pub fn in_memory() -> Self {
        Self::open(MemoryConfig::default(), Arc::new(SystemClock))
            .expect("an inventory without a journal opens no files")
    }

    /// Ends recovery: recovered holds of events that no longer exist are dropped, and the
    /// fresh journal replaces the old one.
    pub async fn commit_recovery(&self) -> Result<()> {
        let orphans: usize = self.recovered.lock().drain().map(|(_, h)| h.len()).sum();
        self.recovered_pools.lock().clear();
        if orphans > 0 {
            tracing::warn!(holds = orphans, "journaled holds of unknown events were dropped");
        }
        match &self.journal {
            Some(journal) => journal.commit_recovery().await.map_err(InventoryError::Journal),
            None => Ok(()),
        }
    }

    /// Stops the journal writer after writing everything queued.
    pub fn close(&self) {
        if let Some(journal) = &self.journal {
            journal.close();
        }
    }

    /// Checks every invariant of one event's shard; the error says which one broke.
    pub fn check_invariants(&self, event: EventId) -> std::result::Result<(), String> {
        let shard = self.shard(event).map_err(|e| e.to_string())?;
        let st = shard.state.lock();
        st.check(&shard.map)
    }

    fn shard(&self, event: EventId) -> Result<Arc<Shard>> {
        self.shards.read().get(&event).cloned().ok_or(InventoryError::UnknownEvent)
    }

    fn all_shards(&self) -> Vec<Arc<Shard>> {
        self.shards.read().values().cloned().collect()
    }

    async fn durable(&self, ticket: Option<Ticket>) -> Result<()> {
        match ticket {
            Some(ticket) => ticket.wait().await.map_err(InventoryError::Journal),
            None => Ok(()),
        }
    }
}

/// What one locked step did: the journal sequence to wait for, if it wrote anything.
struct Step<'a> {
    shard: &'a Shard,
    journal: Option<&'a Journal>,
    config: &'a MemoryConfig,
    /// Records of this step, appended to the journal as one batch by `submit`.
    records: Vec<u8>,
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        // A step that returned early (an error after expiring holds) still journals what
        // it changed. Order across holds does not matter on replay: records name holds.
        drop(self.submit());
    }
}

impl Step<'_> {
    fn append(&mut self, record: Record) {
        if self.journal.is_some() {
            Journal::encode(&record, &mut self.records);
        }
    }

    /// Hands this step's records to the journal; call it before leaving the critical
    /// section, so that the journal's order is the order of the changes.
    fn submit(&mut self) -> Option<Ticket> {
        match self.journal {
            Some(journal) if !self.records.is_empty() => {
                let ticket = journal.append_bytes(&self.records);
                self.records.clear();
                Some(ticket)
            }
            _ => None,
        }
    }

    /// Ends a live hold: its seats become available (or sold, when confirmed).
    fn end(&mut self, st: &mut ShardState, nonce: u128, status: HoldStatus) {
        let reason = match status {
            HoldStatus::Expired => ReleaseReason::Expiry,
            _ => ReleaseReason::User,
        };
        self.end_because(st, nonce, status, reason);
    }

    /// [`end`](Self::end) with the reason recorded for released seats.
    fn end_because(&mut self, st: &mut ShardState, nonce: u128, status: HoldStatus, why: ReleaseReason) {
        let hold =
            st.holds.get_mut(&nonce).filter(|h| h.ended.is_none()).expect("ending a hold that is live");
        hold.ended = Some(status);
        let seats = std::mem::take(&mut hold.seats);
        let (user, expires_ms) = (hold.user.clone(), hold.expires_ms);
        st.expiry.remove(&(expires_ms, nonce));
        let confirmed = status == HoldStatus::Confirmed;
        let pooled = !confirmed && st.pools(why);
        for &seat in &seats {
            debug_assert_eq!(st.seats[seat as usize], SeatState::Held(nonce));
            if confirmed {
                st.seats[seat as usize] = SeatState::Sold(user.clone());
            } else if pooled {
                st.seats[seat as usize] = SeatState::Pooled;
                st.pool.insert(seat);
            } else {
                st.seats[seat as usize] = SeatState::Available;
                st.bitmap.set_available(seat, true);
                st.record_change(seat, true);
            }
        }
        let n = seats.len() as u32;
        st.held_seats -= n;
        if confirmed {
            st.sold_seats += n;
        } else if let Some(count) = st.per_user.get_mut(&user) {
            *count -= n;
            if *count == 0 {
                st.per_user.remove(&user);
            }
        }
        st.version += 1;
        let kind = if confirmed {
            ChangeKind::Sold
        } else if pooled {
            ChangeKind::Pooled(why)
        } else {
            ChangeKind::Released(why)
        };
        st.record(kind, seats.clone(), Some(nonce), Some(user.clone()), false);
        let reason = match status {
            HoldStatus::Released => EndReason::Released,
            HoldStatus::Expired => EndReason::Expired,
            HoldStatus::Confirmed => EndReason::Confirmed,
            HoldStatus::Held | HoldStatus::Confirming => unreachable!("a live status ends nothing"),
        };
        self.append(Record::End { hold: HoldId { event: self.shard.event, nonce }, reason });
        if pooled {
            self.pool_record(st, &seats, &[]);
        }
        if let Some(hold) = st.holds.get_mut(&nonce) {
            hold.seats = seats;
        }
        // The hold just ended is always kept: the caller reads its view next.
        while st.ended_order.len() >= self.config.ended_holds_kept_per_event.max(1) {
            if let Some(old) = st.ended_order.pop_front() {
                st.holds.remove(&old);
            }
        }
        st.ended_order.push_back(nonce);
    }

    /// Journals the pool's flag and a change of its seats (in records of bounded size).
    fn pool_record(&mut self, st: &ShardState, add: &[u32], remove: &[u32]) {
        let event = self.shard.event;
        let on = st.pool_on;
        if add.is_empty() && remove.is_empty() {
            self.append(Record::Pool { event, on, add: Vec::new(), remove: Vec::new() });
        }
        for chunk in add.chunks(POOL_RECORD_SEATS) {
            self.append(Record::Pool { event, on, add: chunk.to_vec(), remove: Vec::new() });
        }
        for chunk in remove.chunks(POOL_RECORD_SEATS) {
            self.append(Record::Pool { event, on, add: Vec::new(), remove: chunk.to_vec() });
        }
    }

    /// Pool -> AVAILABLE for the seats in the pool among `seats`, as one change.
    fn unpool(&mut self, st: &mut ShardState, seats: &[u32]) -> Vec<u32> {
        let released: Vec<u32> = seats.iter().copied().filter(|s| st.pool.contains(s)).collect();
        let mut released = released;
        released.sort_unstable();
        released.dedup();
        if released.is_empty() {
            return released;
        }
        for &seat in &released {
            st.pool.remove(&seat);
            st.seats[seat as usize] = SeatState::Available;
            st.bitmap.set_available(seat, true);
            st.record_change(seat, true);
        }
        st.version += 1;
        st.record(ChangeKind::Unpooled, released.clone(), None, None, false);
        self.pool_record(st, &[], &released);
        released
    }

    /// Expires every unpinned hold whose time is up.
    fn expire_due(&mut self, st: &mut ShardState, now: UnixMs) -> u32 {
        st.now_ms = now;
        let mut expired = 0;
        while let Some(&(expires_ms, nonce)) = st.expiry.first() {
            if expires_ms > now {
                break;
            }
            self.end(st, nonce, HoldStatus::Expired);
            expired += 1;
        }
        if expired > 0 {
            metrics_expired(expired);
        }
        expired
    }
}

fn metrics_expired(n: u32) {
    metrics::counter!("boxoffice_holds_expired_total").increment(u64::from(n));
}

impl ShardState {
    fn new(event: EventId, map: &SeatMap, config: &MemoryConfig) -> Self {
        ShardState {
            event,
            seats: vec![SeatState::Available; map.len()],
            bitmap: Bitmap::all_available(map.len()),
            version: 0,
            holds: FastMap::default(),
            expiry: BTreeSet::new(),
            per_user: FastMap::default(),
            held_seats: 0,
            sold_seats: 0,
            ended_order: VecDeque::new(),
            cached: None,
            changes: VecDeque::new(),
            changes_floor: 0,
            change_capacity: config.change_ring_seats,
            history: VecDeque::new(),
            history_floor: 0,
            history_capacity: config.history_records,
            now_ms: 0,
            epoch: 0,
            pool_on: false,
            pool_generation: 0,
            pool_guard_until: 0,
            pool: BTreeSet::new(),
        }
    }

    /// Whether seats freed for this reason go to the waitlist pool now.
    fn pools(&self, why: ReleaseReason) -> bool {
        self.pool_on && matches!(why, ReleaseReason::User | ReleaseReason::Expiry | ReleaseReason::Refund)
    }

    fn view(&self, event: EventId, nonce: u128) -> Result<HoldView> {
        let hold = self.holds.get(&nonce).ok_or(InventoryError::UnknownHold)?;
        let status = match (hold.ended, &hold.pin) {
            (Some(ended), _) => ended,
            (None, Some(_)) => HoldStatus::Confirming,
            (None, None) => HoldStatus::Held,
        };
        Ok(HoldView {
            id: HoldId { event, nonce },
            event,
            user: hold.user.clone(),
            seats: hold.seats.clone(),
            status,
            created_ms: hold.created_ms,
            expires_ms: hold.expires_ms,
        })
    }

    /// The error for an operation on a hold that is not live.
    fn not_live(&self, nonce: u128) -> InventoryError {
        match self.holds.get(&nonce).and_then(|h| h.ended) {
            Some(HoldStatus::Expired) => InventoryError::HoldExpired,
            Some(HoldStatus::Released) => InventoryError::HoldReleased,
            Some(HoldStatus::Confirmed) => InventoryError::AlreadyConfirmed,
            _ => InventoryError::UnknownHold,
        }
    }

    fn live(&self, nonce: u128) -> Option<&LiveHold> {
        self.holds.get(&nonce).filter(|h| h.ended.is_none())
    }

    fn live_mut(&mut self, nonce: u128) -> Option<&mut LiveHold> {
        self.holds.get_mut(&nonce).filter(|h| h.ended.is_none())
    }

    /// Remembers a flip made by the operation in progress (at version `version + 1`).
    fn record_change(&mut self, seat: u32, available: bool) {
        if self.change_capacity == 0 {
            self.changes_floor = self.version + 1;
            return;
        }
        if self.changes.len() >= self.change_capacity
            && let Some(oldest) = self.changes.pop_front()
        {
            self.changes_floor = oldest.version;
        }
        self.changes.push_back(Change { version: self.version + 1, seat, available, at_ms: self.now_ms });
    }

    /// Remembers a change record at the current version (call after the bump).
    fn record(
        &mut self,
        kind: ChangeKind,
        seats: Vec<u32>,
        hold: Option<u128>,
        user: Option<UserId>,
        recovered: bool,
    ) {
        if self.history_capacity == 0 {
            self.history_floor = self.version;
            return;
        }
        if self.history.len() >= self.history_capacity
            && let Some(oldest) = self.history.pop_front()
        {
            self.history_floor = oldest.version;
        }
        let hold = hold.map(|nonce| HoldId { event: self.event, nonce });
        self.history.push_back(ChangeRecord {
            version: self.version,
            at_ms: self.now_ms,
            kind,
            seats,
            hold,
            user,
            recovered,
        });
    }

    /// Records after `after`, at least `limit` unless fewer exist, never ending in the
    /// middle of a version.
    fn history_after(&self, after: u64, limit: usize) -> History {
        let start = self.history.partition_point(|r| r.version <= after);
        let mut records: Vec<ChangeRecord> = Vec::new();
        for record in self.history.range(start..) {
            if records.len() >= limit && records.last().is_some_and(|last| last.version != record.version) {
                break;
            }
            records.push(record.clone());
        }
        History { records, complete: after >= self.history_floor }
    }

    /// The net change since `since`, if the ring still covers it.
    fn changes_since(&self, since: u64) -> Option<SeatChanges> {
        if since < self.changes_floor || since > self.version {
            return None;
        }
        let start = self.changes.partition_point(|c| c.version <= since);
        // First and last flip of each seat: a seat whose last flip restores its state at
        // `since` did not change on balance.
        let mut flips: FastMap<u32, (bool, bool)> = FastMap::default();
        let mut oldest_change_ms = None;
        for change in self.changes.range(start..) {
            oldest_change_ms.get_or_insert(change.at_ms);
            flips
                .entry(change.seat)
                .and_modify(|(_, last)| *last = change.available)
                .or_insert((change.available, change.available));
        }
        let (mut available, mut unavailable) = (Vec::new(), Vec::new());
        for (seat, (first, last)) in flips {
            if first == last {
                if last { available.push(seat) } else { unavailable.push(seat) }
            }
        }
        available.sort_unstable();
        unavailable.sort_unstable();
        Some(SeatChanges { from: since, to: self.version, available, unavailable, oldest_change_ms })
    }

    fn availability(&mut self) -> Availability {
        match &self.cached {
            Some(cached) if cached.version == self.version => cached.clone(),
            _ => {
                let fresh = Availability {
                    epoch: self.epoch,
                    version: self.version,
                    available_count: self.bitmap.count_available() as u32,
                    bitmap: Bytes::from(self.bitmap.to_bytes()),
                };
                self.cached = Some(fresh.clone());
                fresh
            }
        }
    }

    fn live_holds(&self) -> impl Iterator<Item = (&u128, &LiveHold)> {
        self.holds.iter().filter(|(_, h)| h.ended.is_none())
    }

    fn install(&mut self, nonce: u128, hold: LiveHold, recovered: bool) {
        debug_assert!(hold.ended.is_none());
        for &seat in &hold.seats {
            debug_assert_eq!(self.seats[seat as usize], SeatState::Available);
            self.seats[seat as usize] = SeatState::Held(nonce);
            self.bitmap.set_available(seat, false);
            self.record_change(seat, false);
        }
        let n = hold.seats.len() as u32;
        self.held_seats += n;
        *self.per_user.entry(hold.user.clone()).or_insert(0) += n;
        self.version += 1;
        self.record(ChangeKind::Held, hold.seats.clone(), Some(nonce), Some(hold.user.clone()), recovered);
        if let Some(record) = self.history.back_mut() {
            // A restored hold keeps the time it was made.
            record.at_ms = hold.created_ms;
        }
        self.expiry.insert((hold.expires_ms, nonce));
        self.holds.insert(nonce, hold);
    }

    fn check(&self, map: &SeatMap) -> std::result::Result<(), String> {
        if self.seats.len() != map.len() || self.bitmap.len() != map.len() {
            return Err("seat array or bitmap has the wrong length".into());
        }
        let mut per_user: HashMap<&UserId, u32> = HashMap::new();
        let (mut held, mut sold) = (0u32, 0u32);
        for (i, state) in self.seats.iter().enumerate() {
            let available = self.bitmap.is_available(i as u32);
            match state {
                SeatState::Available if !available => return Err(format!("seat {i} bit is 0")),
                SeatState::Held(_) | SeatState::Sold(_) | SeatState::Pooled if available => {
                    return Err(format!("seat {i} is taken but its bit is 1"));
                }
                SeatState::Held(nonce) => {
                    let hold = self.live(*nonce).ok_or(format!("seat {i} held by a dead hold"))?;
                    if !hold.seats.contains(&(i as u32)) {
                        return Err(format!("seat {i} is not in the hold that holds it"));
                    }
                    held += 1;
                }
                SeatState::Sold(user) => {
                    *per_user.entry(user).or_default() += 1;
                    sold += 1;
                }
                SeatState::Pooled => {
                    if !self.pool.contains(&(i as u32)) {
                        return Err(format!("seat {i} is pooled but not in the pool"));
                    }
                }
                SeatState::Available => {}
            }
        }
        if self.pool.iter().any(|&s| self.seats.get(s as usize) != Some(&SeatState::Pooled)) {
            return Err("the pool lists a seat that is not pooled".into());
        }
        for (nonce, hold) in self.live_holds() {
            for &seat in &hold.seats {
                if self.seats[seat as usize] != SeatState::Held(*nonce) {
                    return Err(format!("hold {nonce:x} lists seat {seat} it does not hold"));
                }
            }
            *per_user.entry(&hold.user).or_default() += hold.seats.len() as u32;
            let indexed = self.expiry.contains(&(hold.expires_ms, *nonce));
            if indexed == hold.pin.is_some() {
                return Err(format!("hold {nonce:x}: pinned holds, and only they, skip expiry"));
            }
        }
        if self.expiry.len() != self.live_holds().filter(|(_, h)| h.pin.is_none()).count() {
            return Err("expiry index lists dead holds".into());
        }
        if held != self.held_seats || sold != self.sold_seats {
            return Err(format!(
                "counters held={} sold={} but seats say held={held} sold={sold}",
                self.held_seats, self.sold_seats
            ));
        }
        let expected: HashMap<&UserId, u32> = self.per_user.iter().map(|(u, n)| (u, *n)).collect();
        if expected != per_user {
            return Err("per-user seat counts differ from the seats".into());
        }
        if self.bitmap.count_available() as u32 + held + sold + self.pool.len() as u32
            != self.seats.len() as u32
        {
            return Err("available + held + sold + pooled != seats".into());
        }
        Ok(())
    }
}

impl MemoryInventory {
    fn step<'a>(&'a self, shard: &'a Shard) -> Step<'a> {
        Step { shard, journal: self.journal.as_ref(), config: &self.config, records: Vec::new() }
    }

    /// Runs `f` on a live hold under its shard's lock, after expiring what is due.
    async fn with_live_hold<T>(
        &self,
        id: HoldId,
        f: impl FnOnce(&mut Step<'_>, &mut ShardState, UnixMs) -> Result<T>,
    ) -> Result<T> {
        let shard = self.shard(id.event).map_err(|_| InventoryError::UnknownHold)?;
        let now = self.clock.now_ms();
        let (result, seq) = {
            let mut step = self.step(&shard);
            let mut st = shard.state.lock();
            step.expire_due(&mut st, now);
            let result = if st.live(id.nonce).is_some() {
                f(&mut step, &mut st, now)
            } else {
                Err(st.not_live(id.nonce))
            };
            (result, step.submit())
        };
        self.durable(seq).await?;
        result
    }
}

#[async_trait]
impl Inventory for MemoryInventory {
    async fn load_event(&self, event: EventId, map: Arc<SeatMap>, sold: Vec<SoldSeat>) -> Result<()> {
        // Loads are serialized by the recovery table's lock: two loads of one event must
        // not both build a shard, or the recovered holds taken by the one whose shard is
        // not kept would be lost (though journaled again).
        let seq = {
            let mut recovered_by_event = self.recovered.lock();
            if self.shards.read().contains_key(&event) {
                return Ok(());
            }
            let mut fresh = ShardState::new(event, &map, &self.config);
            fresh.epoch = self.epoch;
            let shard = Arc::new(Shard { event, state: Mutex::new(fresh), map });
            let now = self.clock.now_ms();
            let recovered = recovered_by_event.remove(&event).unwrap_or_default();
            let recovered_pool = self.recovered_pools.lock().remove(&event);
            let last_seq = {
                let mut step = self.step(&shard);
                let mut st = shard.state.lock();
                for seat in sold {
                    let i = seat.seat_index as usize;
                    if i >= st.seats.len() || st.seats[i] != SeatState::Available {
                        tracing::error!(%event, seat = i, "order store lists a seat twice or out of range");
                        continue;
                    }
                    st.seats[i] = SeatState::Sold(seat.user.clone());
                    st.bitmap.set_available(seat.seat_index, false);
                    *st.per_user.entry(seat.user).or_insert(0) += 1;
                    st.sold_seats += 1;
                }
                let (mut restored, mut dropped) = (0, 0);
                for hold in recovered {
                    let free = hold.seats.iter().all(|&s| {
                        st.seats.get(s as usize).is_some_and(|state| *state == SeatState::Available)
                    });
                    if hold.expires_ms <= now || !free || hold.seats.is_empty() {
                        // Expired, or its seats were sold by the order it became.
                        dropped += 1;
                        continue;
                    }
                    step.append(Record::Hold {
                        hold: hold.hold,
                        user: hold.user.clone(),
                        seats: hold.seats.clone(),
                        created_ms: hold.created_ms,
                        expires_ms: hold.expires_ms,
                    });
                    st.install(
                        hold.hold.nonce,
                        LiveHold {
                            user: hold.user,
                            seats: hold.seats,
                            created_ms: hold.created_ms,
                            expires_ms: hold.expires_ms,
                            pin: None,
                            ended: None,
                        },
                        true,
                    );
                    restored += 1;
                }
                if restored + dropped > 0 {
                    tracing::info!(%event, restored, dropped, "holds recovered from the journal");
                }
                if let Some(pool) = recovered_pool {
                    // The pool comes back as it was: its seats were freed while the
                    // waitlist was on and must not be sold around it after a restart.
                    st.pool_on = pool.on;
                    let mut seats = Vec::with_capacity(pool.seats.len());
                    for seat in pool.seats {
                        if st.seats.get(seat as usize) == Some(&SeatState::Available) {
                            st.seats[seat as usize] = SeatState::Pooled;
                            st.bitmap.set_available(seat, false);
                            st.pool.insert(seat);
                            seats.push(seat);
                        }
                    }
                    step.pool_record(&st, &seats, &[]);
                    tracing::info!(%event, on = st.pool_on, seats = seats.len(), "waitlist pool recovered from the journal");
                }
                debug_assert_eq!(st.check(&shard.map), Ok(()));
                step.submit()
            };
            self.shards.write().insert(event, shard);
            last_seq
        };
        self.durable(seq).await
    }

    async fn hold(&self, request: HoldRequest) -> Result<HoldView> {
        let shard = self.shard(request.event)?;
        let now = self.clock.now_ms();
        let n = request.selection.seat_count();
        let (view, seq) = {
            let mut step = self.step(&shard);
            let mut st = shard.state.lock();
            step.expire_due(&mut st, now);
            let current = st.per_user.get(&request.user).copied().unwrap_or(0);
            if current.saturating_add(n) > request.max_seats_per_user {
                return Err(InventoryError::UserLimit {
                    current,
                    requested: n,
                    limit: request.max_seats_per_user,
                });
            }
            let seats = match request.selection {
                Selection::Seats(seats) => {
                    let mut unavailable = Vec::new();
                    for (k, &seat) in seats.iter().enumerate() {
                        if seat as usize >= st.seats.len() {
                            return Err(InventoryError::BadSeat(seat));
                        }
                        if seats[..k].contains(&seat) {
                            return Err(InventoryError::DuplicateSeat);
                        }
                        if !st.bitmap.is_available(seat) {
                            unavailable.push(seat);
                        }
                    }
                    if let Some(blocked) = &request.blocked {
                        let mut refused: Vec<u32> =
                            seats.iter().copied().filter(|&s| blocked.is_available(s)).collect();
                        if !refused.is_empty() {
                            refused.sort_unstable();
                            return Err(InventoryError::NotEntitled(refused));
                        }
                    }
                    if !unavailable.is_empty() {
                        return Err(InventoryError::SeatsUnavailable(unavailable));
                    }
                    seats
                }
                Selection::BestAvailable { count, section } => {
                    // Blocked seats look taken to the picker; the rule's final check below
                    // still sees the real bitmap.
                    let masked = request.blocked.as_ref().map(|blocked| st.bitmap.without(blocked));
                    let free = masked.as_ref().unwrap_or(&st.bitmap);
                    let picked = if request.orphan_rule {
                        shard.map.best_available_strict(free, count, section)
                    } else {
                        shard.map.best_available(free, count, section)
                    };
                    picked.ok_or(InventoryError::NotEnoughSeats)?
                }
            };
            if seats.is_empty() {
                return Err(InventoryError::NotEnoughSeats);
            }
            if request.orphan_rule && shard.map.strands_any(&st.bitmap, &seats) {
                return Err(InventoryError::OrphanSeat(shard.map.stranded_by(&st.bitmap, &seats)));
            }
            let id = HoldId::random(request.event);
            let hold = LiveHold {
                user: request.user,
                seats,
                created_ms: now,
                expires_ms: now.saturating_add(request.ttl_ms),
                pin: None,
                ended: None,
            };
            step.append(Record::Hold {
                hold: id,
                user: hold.user.clone(),
                seats: hold.seats.clone(),
                created_ms: hold.created_ms,
                expires_ms: hold.expires_ms,
            });
            st.install(id.nonce, hold, false);
            (st.view(request.event, id.nonce)?, step.submit())
        };
        self.durable(seq).await?;
        Ok(view)
    }

    async fn hold_view(&self, id: HoldId) -> Result<HoldView> {
        let shard = self.shard(id.event).map_err(|_| InventoryError::UnknownHold)?;
        let now = self.clock.now_ms();
        let (view, seq) = {
            let mut step = self.step(&shard);
            let mut st = shard.state.lock();
            step.expire_due(&mut st, now);
            (st.view(id.event, id.nonce), step.submit())
        };
        self.durable(seq).await?;
        view
    }

    async fn release(&self, id: HoldId) -> Result<HoldView> {
        self.with_live_hold(id, |step, st, _| {
            if st.live(id.nonce).expect("checked live").pin.is_some() {
                return Err(InventoryError::HoldConfirming);
            }
            step.end(st, id.nonce, HoldStatus::Released);
            st.view(id.event, id.nonce)
        })
        .await
    }

    async fn pin(&self, id: HoldId, attempt: &str, deadline_ms: UnixMs) -> Result<HoldView> {
        self.with_live_hold(id, |_, st, _| {
            let hold = st.live_mut(id.nonce).expect("checked live");
            if hold.pin.is_some() {
                return Err(InventoryError::HoldConfirming);
            }
            hold.pin = Some(Pin { attempt: attempt.to_owned(), deadline_ms });
            let key = (hold.expires_ms, id.nonce);
            st.expiry.remove(&key);
            st.view(id.event, id.nonce)
        })
        .await
    }

    async fn unpin(&self, id: HoldId, attempt: &str) -> Result<HoldView> {
        self.with_live_hold(id, |step, st, now| {
            let hold = st.live_mut(id.nonce).expect("checked live");
            if hold.pin.as_ref().is_none_or(|p| p.attempt != attempt) {
                return Err(InventoryError::NotPinned);
            }
            hold.pin = None;
            let expires_ms = hold.expires_ms;
            st.expiry.insert((expires_ms, id.nonce));
            if expires_ms <= now {
                step.end(st, id.nonce, HoldStatus::Expired);
            }
            st.view(id.event, id.nonce)
        })
        .await
    }

    async fn confirm(&self, id: HoldId, attempt: &str) -> Result<HoldView> {
        self.with_live_hold(id, |step, st, _| {
            let hold = st.live(id.nonce).expect("checked live");
            if hold.pin.as_ref().is_none_or(|p| p.attempt != attempt) {
                return Err(InventoryError::NotPinned);
            }
            step.end(st, id.nonce, HoldStatus::Confirmed);
            st.view(id.event, id.nonce)
        })
        .await
    }

    async fn availability(&self, event: EventId) -> Result<Availability> {
        let shard = self.shard(event)?;
        let now = self.clock.now_ms();
        let (availability, seq) = {
            let mut step = self.step(&shard);
            let mut st = shard.state.lock();
            step.expire_due(&mut st, now);
            let availability = st.availability();
            (availability, step.submit())
        };
        self.durable(seq).await?;
        Ok(availability)
    }

    async fn feed(&self, event: EventId, since: u64) -> Result<Feed> {
        let shard = self.shard(event)?;
        let now = self.clock.now_ms();
        let (feed, ticket) = {
            let mut step = self.step(&shard);
            let mut st = shard.state.lock();
            step.expire_due(&mut st, now);
            let feed = Feed { availability: st.availability(), changes: st.changes_since(since) };
            (feed, step.submit())
        };
        self.durable(ticket).await?;
        Ok(feed)
    }

    async fn seat_counts(&self, event: EventId) -> Result<SeatCounts> {
        let shard = self.shard(event)?;
        let now = self.clock.now_ms();
        let (counts, seq) = {
            let mut step = self.step(&shard);
            let mut st = shard.state.lock();
            step.expire_due(&mut st, now);
            let counts = SeatCounts {
                available: st.bitmap.count_available() as u32,
                // Pool seats count as held: unavailable, kept for the waitlist.
                held: st.held_seats + st.pool.len() as u32,
                sold: st.sold_seats,
            };
            (counts, step.submit())
        };
        self.durable(seq).await?;
        Ok(counts)
    }

    async fn user_seat_count(&self, event: EventId, user: &UserId) -> Result<u32> {
        let shard = self.shard(event)?;
        let now = self.clock.now_ms();
        let (count, seq) = {
            let mut step = self.step(&shard);
            let mut st = shard.state.lock();
            step.expire_due(&mut st, now);
            (st.per_user.get(user).copied().unwrap_or(0), step.submit())
        };
        self.durable(seq).await?;
        Ok(count)
    }

    async fn expire_due(&self) -> Result<u32> {
        let now = self.clock.now_ms();
        let mut total = 0;
        let mut tickets = Vec::new();
        for shard in self.all_shards() {
            let mut step = self.step(&shard);
            let mut st = shard.state.lock();
            total += step.expire_due(&mut st, now);
            tickets.extend(step.submit());
        }
        for ticket in tickets {
            self.durable(Some(ticket)).await?;
        }
        Ok(total)
    }

    async fn release_sold(&self, event: EventId, seats: &[u32], reason: ReleaseReason) -> Result<Vec<u32>> {
        let shard = self.shard(event)?;
        let now = self.clock.now_ms();
        let (released, ticket) = {
            let mut step = self.step(&shard);
            let mut st = shard.state.lock();
            step.expire_due(&mut st, now);
            let mut released = Vec::new();
            let mut by_owner: Vec<(UserId, Vec<u32>)> = Vec::new();
            let pooled = st.pools(reason);
            for &seat in seats {
                let Some(SeatState::Sold(owner)) = st.seats.get(seat as usize).cloned() else { continue };
                if pooled {
                    st.seats[seat as usize] = SeatState::Pooled;
                    st.pool.insert(seat);
                } else {
                    st.seats[seat as usize] = SeatState::Available;
                    st.bitmap.set_available(seat, true);
                    st.record_change(seat, true);
                }
                st.sold_seats -= 1;
                if let Some(count) = st.per_user.get_mut(&owner) {
                    *count -= 1;
                    if *count == 0 {
                        st.per_user.remove(&owner);
                    }
                }
                released.push(seat);
                match by_owner.iter_mut().find(|(user, _)| *user == owner) {
                    Some((_, seats)) => seats.push(seat),
                    None => by_owner.push((owner, vec![seat])),
                }
            }
            if !released.is_empty() {
                st.version += 1;
                let kind = if pooled { ChangeKind::Pooled(reason) } else { ChangeKind::Released(reason) };
                for (owner, seats) in by_owner {
                    st.record(kind, seats, None, Some(owner), false);
                }
                if pooled {
                    step.pool_record(&st, &released, &[]);
                }
            }
            debug_assert_eq!(st.check(&shard.map), Ok(()));
            (released, step.submit())
        };
        self.durable(ticket).await?;
        Ok(released)
    }

    async fn mark_sold(&self, event: EventId, seats: Vec<SoldSeat>) -> Result<Vec<u32>> {
        let shard = self.shard(event)?;
        let now = self.clock.now_ms();
        let (changed, ticket) = {
            let mut step = self.step(&shard);
            let mut st = shard.state.lock();
            step.expire_due(&mut st, now);
            let mut changed = Vec::new();
            let mut by_owner: Vec<(UserId, Vec<u32>)> = Vec::new();
            for sold in seats {
                let i = sold.seat_index as usize;
                match st.seats.get(i).cloned() {
                    None | Some(SeatState::Sold(_)) => continue,
                    Some(SeatState::Held(nonce)) => {
                        step.end_because(&mut st, nonce, HoldStatus::Released, ReleaseReason::Superseded)
                    }
                    // The order is the truth: the seat leaves the pool (made available for
                    // the record, and at once sold below).
                    Some(SeatState::Pooled) => {
                        step.unpool(&mut st, &[sold.seat_index]);
                    }
                    Some(SeatState::Available) => {}
                }
                st.seats[i] = SeatState::Sold(sold.user.clone());
                st.bitmap.set_available(sold.seat_index, false);
                st.record_change(sold.seat_index, false);
                st.sold_seats += 1;
                *st.per_user.entry(sold.user.clone()).or_insert(0) += 1;
                changed.push(sold.seat_index);
                match by_owner.iter_mut().find(|(user, _)| *user == sold.user) {
                    Some((_, seats)) => seats.push(sold.seat_index),
                    None => by_owner.push((sold.user, vec![sold.seat_index])),
                }
            }
            if !changed.is_empty() {
                st.version += 1;
                for (owner, seats) in by_owner {
                    st.record(ChangeKind::Sold, seats, None, Some(owner), false);
                }
            }
            debug_assert_eq!(st.check(&shard.map), Ok(()));
            (changed, step.submit())
        };
        self.durable(ticket).await?;
        Ok(changed)
    }

    async fn sold_seats(&self, event: EventId) -> Result<Vec<u32>> {
        let shard = self.shard(event)?;
        let st = shard.state.lock();
        Ok(st
            .seats
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, SeatState::Sold(_)))
            .map(|(i, _)| i as u32)
            .collect())
    }

    async fn stale_pins(&self) -> Result<Vec<StalePin>> {
        let now = self.clock.now_ms();
        let mut stale = Vec::new();
        for shard in self.all_shards() {
            let st = shard.state.lock();
            for (nonce, hold) in st.live_holds() {
                if let Some(pin) = hold.pin.as_ref().filter(|p| p.deadline_ms < now) {
                    stale.push(StalePin {
                        hold: HoldId { event: shard.event, nonce: *nonce },
                        attempt: pin.attempt.clone(),
                    });
                }
            }
        }
        Ok(stale)
    }

    async fn history(&self, event: EventId, after_version: u64, limit: usize) -> Result<History> {
        let shard = self.shard(event)?;
        let now = self.clock.now_ms();
        let (history, ticket) = {
            let mut step = self.step(&shard);
            let mut st = shard.state.lock();
            step.expire_due(&mut st, now);
            (st.history_after(after_version, limit), step.submit())
        };
        self.durable(ticket).await?;
        Ok(history)
    }

    /// The process owns its events: one is absent only until it is first loaded.
    async fn begin_rebuild(&self, event: EventId, _map: Arc<SeatMap>, _lease_ms: u64) -> Result<RebuildLock> {
        Ok(match self.shard(event) {
            Ok(_) => RebuildLock::Present { epoch: self.epoch },
            Err(_) => RebuildLock::Acquired(String::new()),
        })
    }

    /// Loads the event with its sold seats and restores the pins (not journaled: pins
    /// never are; the order store settles their attempts after a restart). The epoch
    /// stays the process's.
    async fn finish_rebuild(
        &self,
        event: EventId,
        map: Arc<SeatMap>,
        _lock: &str,
        truth: EventTruth,
    ) -> Result<bool> {
        if self.shard(event).is_ok() {
            return Ok(false);
        }
        self.load_event(event, map, truth.sold).await?;
        let shard = self.shard(event)?;
        let mut st = shard.state.lock();
        for pin in truth.pins {
            let free = !pin.seats.is_empty()
                && pin.seats.iter().all(|&s| st.seats.get(s as usize) == Some(&SeatState::Available));
            if !free || pin.hold.event != event || st.holds.contains_key(&pin.hold.nonce) {
                tracing::warn!(%event, hold = %pin.hold, "a pin to restore conflicts with the order store; skipped");
                continue;
            }
            let created_ms = self.clock.now_ms();
            let hold = LiveHold {
                user: pin.user,
                seats: pin.seats,
                created_ms,
                expires_ms: pin.deadline_ms,
                pin: None,
                ended: None,
            };
            st.install(pin.hold.nonce, hold, true);
            st.expiry.remove(&(pin.deadline_ms, pin.hold.nonce));
            if let Some(hold) = st.live_mut(pin.hold.nonce) {
                hold.pin = Some(Pin { attempt: pin.attempt, deadline_ms: pin.deadline_ms });
            }
        }
        debug_assert_eq!(st.check(&shard.map), Ok(()));
        Ok(true)
    }

    async fn set_waitlist(&self, event: EventId, on: bool) -> Result<Vec<u32>> {
        Ok(self.set_waitlist_if(event, on, None).await?.unwrap_or_default())
    }

    async fn clear_waitlist_if(&self, event: EventId, generation: u64) -> Result<Option<Vec<u32>>> {
        self.set_waitlist_if(event, false, Some(generation)).await
    }

    async fn pool(&self, event: EventId) -> Result<Pool> {
        let shard = self.shard(event)?;
        let now = self.clock.now_ms();
        let (pool, ticket) = {
            let mut step = self.step(&shard);
            let mut st = shard.state.lock();
            step.expire_due(&mut st, now);
            let pool = Pool {
                on: st.pool_on,
                seats: st.pool.iter().copied().collect(),
                generation: st.pool_generation,
            };
            (pool, step.submit())
        };
        self.durable(ticket).await?;
        Ok(pool)
    }

    async fn offer(&self, request: OfferRequest) -> Result<HoldView> {
        self.offer_seats(request).await
    }

    async fn release_pool(&self, event: EventId, seats: &[u32]) -> Result<Vec<u32>> {
        self.release_pool_seats(event, seats).await
    }

    async fn flush(&self) -> Result<()> {
        match &self.journal {
            Some(journal) => journal.flush().await.map_err(InventoryError::Journal),
            None => Ok(()),
        }
    }
}

impl MemoryInventory {
    /// `set_waitlist`, refused (`None`) when `expected` is given and a set came since.
    async fn set_waitlist_if(
        &self,
        event: EventId,
        on: bool,
        expected: Option<u64>,
    ) -> Result<Option<Vec<u32>>> {
        let shard = self.shard(event)?;
        let now = self.clock.now_ms();
        let (released, ticket) = {
            let mut step = self.step(&shard);
            let mut st = shard.state.lock();
            step.expire_due(&mut st, now);
            if expected.is_some_and(|g| g != st.pool_generation || now < st.pool_guard_until) {
                return Ok(None);
            }
            if on {
                st.pool_generation += 1;
                st.pool_guard_until = now + crate::WAITLIST_JOIN_GUARD_MS;
            }
            let changed = st.pool_on != on;
            st.pool_on = on;
            let released = if on {
                Vec::new()
            } else {
                let all: Vec<u32> = st.pool.iter().copied().collect();
                step.unpool(&mut st, &all)
            };
            if changed && released.is_empty() {
                step.pool_record(&st, &[], &[]);
            }
            debug_assert_eq!(st.check(&shard.map), Ok(()));
            (released, step.submit())
        };
        self.durable(ticket).await?;
        Ok(Some(released))
    }

    async fn offer_seats(&self, request: OfferRequest) -> Result<HoldView> {
        let shard = self.shard(request.event)?;
        let now = self.clock.now_ms();
        let (view, ticket) = {
            let mut step = self.step(&shard);
            let mut st = shard.state.lock();
            step.expire_due(&mut st, now);
            let n = request.seats.len() as u32;
            if n == 0 {
                return Err(InventoryError::NotEnoughSeats);
            }
            let mut missing = Vec::new();
            for (k, &seat) in request.seats.iter().enumerate() {
                if seat as usize >= st.seats.len() {
                    return Err(InventoryError::BadSeat(seat));
                }
                if request.seats[..k].contains(&seat) {
                    return Err(InventoryError::DuplicateSeat);
                }
                if !st.pool.contains(&seat) {
                    missing.push(seat);
                }
            }
            if !missing.is_empty() {
                return Err(InventoryError::SeatsUnavailable(missing));
            }
            let current = st.per_user.get(&request.user).copied().unwrap_or(0);
            if current.saturating_add(n) > request.max_seats_per_user {
                return Err(InventoryError::UserLimit {
                    current,
                    requested: n,
                    limit: request.max_seats_per_user,
                });
            }
            let id = HoldId::random(request.event);
            let hold = LiveHold {
                user: request.user.clone(),
                seats: request.seats.clone(),
                created_ms: now,
                expires_ms: now.saturating_add(request.ttl_ms),
                pin: None,
                ended: None,
            };
            // Pool -> HELD: the bits stay 0, so no availability flip is recorded.
            for &seat in &request.seats {
                st.pool.remove(&seat);
                st.seats[seat as usize] = SeatState::Held(id.nonce);
            }
            st.held_seats += n;
            *st.per_user.entry(request.user.clone()).or_insert(0) += n;
            st.version += 1;
            st.record(ChangeKind::Offered, request.seats.clone(), Some(id.nonce), Some(request.user), false);
            st.expiry.insert((hold.expires_ms, id.nonce));
            step.pool_record(&st, &[], &hold.seats);
            step.append(Record::Hold {
                hold: id,
                user: hold.user.clone(),
                seats: hold.seats.clone(),
                created_ms: hold.created_ms,
                expires_ms: hold.expires_ms,
            });
            st.holds.insert(id.nonce, hold);
            debug_assert_eq!(st.check(&shard.map), Ok(()));
            (st.view(request.event, id.nonce)?, step.submit())
        };
        self.durable(ticket).await?;
        Ok(view)
    }

    async fn release_pool_seats(&self, event: EventId, seats: &[u32]) -> Result<Vec<u32>> {
        let shard = self.shard(event)?;
        let now = self.clock.now_ms();
        let (released, ticket) = {
            let mut step = self.step(&shard);
            let mut st = shard.state.lock();
            step.expire_due(&mut st, now);
            let released = step.unpool(&mut st, seats);
            debug_assert_eq!(st.check(&shard.map), Ok(()));
            (released, step.submit())
        };
        self.durable(ticket).await?;
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use boxoffice_core::SectionSpec;

    use super::*;
    use crate::ManualClock;

    const EVENT: EventId = EventId(3);

    fn inventory(history_records: usize) -> (MemoryInventory, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let config = MemoryConfig { history_records, ..MemoryConfig::default() };
        (MemoryInventory::open(config, clock.clone()).expect("in-memory inventory"), clock)
    }

    async fn load(inv: &MemoryInventory, sold: Vec<SoldSeat>) {
        let spec = SectionSpec { name: "A".into(), rows: 1, seats_per_row: 10, tier: None };
        let map = SeatMap::from_sections(SeatMap::default_tiers(), &[spec]).expect("layout");
        inv.load_event(EVENT, Arc::new(map), sold).await.expect("load");
    }

    fn user(name: &str) -> UserId {
        UserId::parse(name).expect("user id")
    }

    async fn hold(inv: &MemoryInventory, who: &str, seats: &[u32]) -> HoldView {
        let request = HoldRequest {
            event: EVENT,
            user: user(who),
            selection: Selection::Seats(seats.to_vec()),
            ttl_ms: 10_000,
            max_seats_per_user: 8,
            orphan_rule: false,
            blocked: None,
        };
        inv.hold(request).await.expect("hold")
    }

    fn kinds(history: &History) -> Vec<(u64, ChangeKind, Vec<u32>)> {
        history.records.iter().map(|r| (r.version, r.kind, r.seats.clone())).collect()
    }

    #[tokio::test]
    async fn every_seat_change_leaves_one_record_with_its_version_and_cause() {
        let (inv, clock) = inventory(1_000);
        load(&inv, vec![]).await;
        let a = hold(&inv, "ann", &[0, 1]).await;
        let b = hold(&inv, "bob", &[2]).await;
        hold(&inv, "cat", &[3]).await;
        inv.release(a.id).await.unwrap();
        inv.pin(b.id, "att_1", clock.now_ms() + 60_000).await.unwrap();
        inv.confirm(b.id, "att_1").await.unwrap();
        clock.advance_ms(10_001);
        assert_eq!(inv.expire_due().await.unwrap(), 1);
        assert_eq!(inv.release_sold(EVENT, &[2, 9], ReleaseReason::Refund).await.unwrap(), vec![2]);
        let d = hold(&inv, "dan", &[5]).await;
        inv.mark_sold(EVENT, vec![SoldSeat { seat_index: 5, user: user("eve") }]).await.unwrap();

        let history = inv.history(EVENT, 0, 100).await.unwrap();
        assert!(history.complete);
        assert_eq!(
            kinds(&history),
            vec![
                (1, ChangeKind::Held, vec![0, 1]),
                (2, ChangeKind::Held, vec![2]),
                (3, ChangeKind::Held, vec![3]),
                (4, ChangeKind::Released(ReleaseReason::User), vec![0, 1]),
                (5, ChangeKind::Sold, vec![2]),
                (6, ChangeKind::Released(ReleaseReason::Expiry), vec![3]),
                (7, ChangeKind::Released(ReleaseReason::Refund), vec![2]),
                (8, ChangeKind::Held, vec![5]),
                (9, ChangeKind::Released(ReleaseReason::Superseded), vec![5]),
                (10, ChangeKind::Sold, vec![5]),
            ]
        );
        let records = &history.records;
        assert_eq!(records[0].hold, Some(a.id));
        assert_eq!(records[0].user, Some(user("ann")));
        assert_eq!(records[4].hold, Some(b.id));
        assert_eq!(records[6].hold, None);
        assert_eq!(records[6].user, Some(user("bob")));
        assert_eq!(records[8].hold, Some(d.id));
        assert_eq!(records[9].user, Some(user("eve")));
        assert!(records.iter().all(|r| !r.recovered));
        // The version of the last record is the event's version.
        assert_eq!(inv.availability(EVENT).await.unwrap().version, 10);
        // Reading on from a version gives the rest.
        assert_eq!(kinds(&inv.history(EVENT, 8, 100).await.unwrap()).len(), 2);
        assert!(inv.history(EVENT, 10, 100).await.unwrap().records.is_empty());
    }

    #[tokio::test]
    async fn a_limited_read_never_ends_inside_a_version() {
        let (inv, _) = inventory(1_000);
        load(&inv, vec![]).await;
        hold(&inv, "ann", &[0]).await;
        let h = hold(&inv, "bob", &[1]).await;
        // Ends bob's hold and sells for two owners: records at versions 3 and 4 (two).
        let sold = vec![
            SoldSeat { seat_index: 1, user: user("cat") },
            SoldSeat { seat_index: 2, user: user("dan") },
        ];
        inv.mark_sold(EVENT, sold).await.unwrap();
        assert_eq!(inv.hold_view(h.id).await.unwrap().status, HoldStatus::Released);
        let page = inv.history(EVENT, 3, 1).await.unwrap();
        assert_eq!(page.records.len(), 2, "both records of version 4 come together");
        assert!(page.records.iter().all(|r| r.version == 4 && r.kind == ChangeKind::Sold));
        assert_eq!(inv.history(EVENT, 0, 1).await.unwrap().records.len(), 1);
    }

    #[tokio::test]
    async fn a_reader_behind_the_bounded_history_is_told_it_lost_records() {
        let (inv, _) = inventory(3);
        load(&inv, vec![]).await;
        for seat in 0..5 {
            hold(&inv, &format!("u{seat}"), &[seat]).await;
        }
        let behind = inv.history(EVENT, 0, 100).await.unwrap();
        assert!(!behind.complete);
        assert_eq!(behind.records.iter().map(|r| r.version).collect::<Vec<_>>(), vec![3, 4, 5]);
        let current = inv.history(EVENT, 2, 100).await.unwrap();
        assert!(current.complete);
        assert_eq!(current.records.len(), 3);
    }
}
