//! The inventory engine: per-event seat state with atomic all-or-nothing multi-seat holds.
//!
//! [`Inventory`] is the contract every backend keeps: `hold` moves every requested seat
//! AVAILABLE -> HELD or changes nothing (under the event's orphan-seat rule it also
//! refuses, in the same atomic step, a hold that would leave a seat alone); `pin` marks a hold CONFIRMING while its checkout
//! runs (expiry never touches a pinned hold); `confirm` turns a pinned hold's seats SOLD;
//! `release` and expiry return seats to sale. The availability bitmap and the event's
//! version change in the same step as the seats.
//!
//! Backends: [`memory::MemoryInventory`] (embedded: one shard per event behind a short
//! critical section, changes journaled with group commit by [`journal`]).

pub mod journal;
pub mod memory;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use boxoffice_core::{Bitmap, EventId, HoldId, HoldView, SeatMap, UnixMs, UserId};
use bytes::Bytes;

pub use self::redis::{RedisConfig, RedisConnection, RedisInventory};
pub use memory::MemoryInventory;

/// What a hold asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These seats (indexes within the event), all or none.
    Seats(Vec<u32>),
    /// `count` seats chosen by the engine, optionally within one section.
    BestAvailable { count: u32, section: Option<u16> },
}

impl Selection {
    pub fn seat_count(&self) -> u32 {
        match self {
            Selection::Seats(seats) => seats.len() as u32,
            Selection::BestAvailable { count, .. } => *count,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub event: EventId,
    pub user: UserId,
    pub selection: Selection,
    pub ttl_ms: u64,
    /// Seats the user may have in this event, held plus bought.
    pub max_seats_per_user: u32,
    /// The orphan-seat rule (the event's setting): refuse a hold that would leave an
    /// available seat alone between taken seats, or between a taken seat and an aisle or
    /// row end (see `SeatMap::stranded_by`), and pick best available so that it never does.
    pub orphan_rule: bool,
    /// Seats this request may not take (bit set = blocked, the availability bitmap's
    /// layout): seats of allocations the caller is not entitled to. Best available never
    /// picks them; named seats among them are refused with `NotEntitled`.
    pub blocked: Option<Arc<Bitmap>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("event is not loaded in the inventory")]
    UnknownEvent,
    #[error("no such hold")]
    UnknownHold,
    #[error("seat index {0} is outside the event's seat map")]
    BadSeat(u32),
    #[error("a seat is named twice")]
    DuplicateSeat,
    #[error("seats unavailable")]
    SeatsUnavailable(Vec<u32>),
    /// These seats (ascending) are blocked for this request (`HoldRequest::blocked`).
    #[error("the caller is not entitled to these seats")]
    NotEntitled(Vec<u32>),
    #[error("not enough adjacent or nearby seats available")]
    NotEnoughSeats,
    /// The hold would leave these available seats (ascending) alone in their rows.
    #[error("the hold would leave a single seat alone in its row")]
    OrphanSeat(Vec<u32>),
    #[error("user has {current} seats in this event; {requested} more would pass the limit of {limit}")]
    UserLimit { current: u32, requested: u32, limit: u32 },
    #[error("hold has expired")]
    HoldExpired,
    #[error("hold was released")]
    HoldReleased,
    #[error("hold is already confirmed")]
    AlreadyConfirmed,
    #[error("hold is being checked out")]
    HoldConfirming,
    #[error("hold is not pinned by this checkout")]
    NotPinned,
    #[error("the hold journal failed: {0}")]
    Journal(String),
    /// The distributed inventory lost the event's state (Redis restarted empty, or failed
    /// over to a replica that lacked it): nothing is answered from what is left until the
    /// event is rebuilt from the order store (see [`Inventory::begin_rebuild`]).
    #[error("the inventory lost this event's state; it is being rebuilt")]
    EventLost,
}

pub type Result<T, E = InventoryError> = std::result::Result<T, E>;

/// The availability of an event at one version, in wire form.
#[derive(Debug, Clone)]
pub struct Availability {
    /// The generation of the event's history: versions are comparable only within one
    /// epoch (a new one starts when the event's state is rebuilt, or the embedded
    /// inventory restarts).
    pub epoch: u64,
    pub version: u64,
    pub available_count: u32,
    /// `ceil(seats/8)` bytes, bit `i` = seat `i` available (see `boxoffice_core::bitmap`).
    pub bitmap: Bytes,
}

/// The net change of availability between two versions of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatChanges {
    pub from: u64,
    pub to: u64,
    /// Seats available at `to` that were not at `from`, ascending.
    pub available: Vec<u32>,
    /// Seats unavailable at `to` that were available at `from`, ascending.
    pub unavailable: Vec<u32>,
    /// When the oldest change in this set was made (for the live map's lag metric).
    pub oldest_change_ms: Option<UnixMs>,
}

/// What the live map needs at once: the current availability, and the changes since a
/// version when they are still remembered (`None`: too old, send a snapshot).
#[derive(Debug, Clone)]
pub struct Feed {
    pub availability: Availability,
    pub changes: Option<SeatChanges>,
}

/// Counts of seats by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeatCounts {
    pub available: u32,
    pub held: u32,
    pub sold: u32,
}

/// A seat sold by a valid ticket, as the order store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoldSeat {
    pub seat_index: u32,
    pub user: UserId,
}

/// Why seats went back on sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseReason {
    /// The buyer released the hold.
    User,
    /// The hold's time ran out.
    Expiry,
    /// The ticket was refunded.
    Refund,
    /// The event was cancelled.
    Cancel,
    /// A hold lost to an order that sold its seat (repair after a crash).
    Superseded,
}

impl ReleaseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::User => "user",
            ReleaseReason::Expiry => "expiry",
            ReleaseReason::Refund => "refund",
            ReleaseReason::Cancel => "cancel",
            ReleaseReason::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::User, Self::Expiry, Self::Refund, Self::Cancel, Self::Superseded]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// What one change did to its seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// AVAILABLE -> HELD by the record's hold.
    Held,
    /// HELD or SOLD -> AVAILABLE.
    Released(ReleaseReason),
    /// HELD -> SOLD by `confirm`, or -> SOLD by `mark_sold`.
    Sold,
    /// HELD or SOLD -> the event's waitlist pool (freed while the event's waitlist flag is
    /// set): still unavailable, waiting to be offered. `hold`/`user` are the seats' last.
    Pooled(ReleaseReason),
    /// Pool -> HELD by the record's hold (an offer to a waitlisted fan).
    Offered,
    /// Pool -> AVAILABLE (no waiting entry fits, or the waitlist emptied). No user.
    Unpooled,
}

/// How long after a set of the waitlist flag `clear_waitlist_if` refuses to clear it: the
/// time a joining node has to insert its entry after setting the flag (the matcher, which
/// looks for entries in the store before clearing, sees it after that).
pub const WAITLIST_JOIN_GUARD_MS: u64 = 5_000;

/// The user that pool seats are attributed to in the audit history.
pub const WAITLIST_POOL_USER: &str = "@waitlist";

/// The pseudo hold that "holds" an event's pool seats in the audit history (nonce 0,
/// which no random hold id takes in practice).
pub fn waitlist_pool_hold(event: EventId) -> HoldId {
    HoldId { event, nonce: 0 }
}

/// An event's waitlist pool: seats freed while the flag was set, unavailable to anyone
/// until offered or released to general sale.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pool {
    /// Freed seats go to the pool (not back on sale) while this is set.
    pub on: bool,
    /// The pool's seats, ascending.
    pub seats: Vec<u32>,
    /// Grows with every `set_waitlist(.., true)`: what `clear_waitlist_if` compares.
    pub generation: u64,
}

/// An offer: pool seats moved atomically into a new hold in the fan's name.
#[derive(Debug, Clone)]
pub struct OfferRequest {
    pub event: EventId,
    pub user: UserId,
    pub seats: Vec<u32>,
    pub ttl_ms: u64,
    pub max_seats_per_user: u32,
}

/// One change of seat states, as the engine made it: the raw material of the audit
/// history (hold, release and expiry records are written from these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    /// The event version this change produced (several records may share one).
    pub version: u64,
    pub at_ms: UnixMs,
    pub kind: ChangeKind,
    pub seats: Vec<u32>,
    /// The hold, for changes of a hold; `None` for `release_sold` and `mark_sold`.
    pub hold: Option<HoldId>,
    /// The hold's user, or the seats' owner.
    pub user: Option<UserId>,
    /// A hold restored from the embedded journal at start-up (its original record was
    /// made before the restart).
    pub recovered: bool,
}

/// The changes of an event after a version, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub records: Vec<ChangeRecord>,
    /// `false` when records after the asked version were already trimmed from the
    /// engine's bounded history (a reader that fell that far behind lost them).
    pub complete: bool,
}

/// A pin whose deadline has passed: the checkout that set it has died or hung, and only
/// the order store can say whether it sold the seats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StalePin {
    pub hold: HoldId,
    pub attempt: String,
}

/// A checkout in flight when the inventory lost its event: its hold comes back pinned
/// (CONFIRMING) so that the checkout, or the reconciler after the deadline, settles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredPin {
    pub hold: HoldId,
    pub user: UserId,
    pub seats: Vec<u32>,
    pub attempt: String,
    pub deadline_ms: UnixMs,
}

/// What the order store knows of an event: the state it is rebuilt with.
#[derive(Debug, Clone, Default)]
pub struct EventTruth {
    /// The new epoch (kept in the order store, larger than every earlier one).
    pub epoch: u64,
    /// The rebuilt history continues after this version (what its readers have seen).
    pub version: u64,
    /// SOLD: the seats of valid tickets.
    pub sold: Vec<SoldSeat>,
    /// CONFIRMING: the holds of open payment attempts without an order.
    pub pins: Vec<RestoredPin>,
}

/// The answer of [`Inventory::begin_rebuild`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuildLock {
    /// The event's state is there (nothing to rebuild); this node now serves it.
    Present { epoch: u64 },
    /// The state is absent and this caller holds the event's rebuild lock until
    /// [`Inventory::finish_rebuild`] or the lease ends.
    Acquired(String),
    /// Another node holds the lock: retry shortly.
    Busy,
}

#[async_trait]
pub trait Inventory: Send + Sync + 'static {
    /// Makes an event known, with its sold seats from the order store. Idempotent: an
    /// event already loaded is left as it is.
    async fn load_event(&self, event: EventId, map: Arc<SeatMap>, sold: Vec<SoldSeat>) -> Result<()>;

    /// Atomic, all-or-nothing hold of the selected seats.
    async fn hold(&self, request: HoldRequest) -> Result<HoldView>;

    /// The hold's current view; an unpinned hold past its expiry is expired first.
    async fn hold_view(&self, hold: HoldId) -> Result<HoldView>;

    /// Releases a held (not pinned) hold at once.
    async fn release(&self, hold: HoldId) -> Result<HoldView>;

    /// HELD -> CONFIRMING for checkout `attempt`, only while unexpired and unpinned.
    async fn pin(&self, hold: HoldId, attempt: &str, deadline_ms: UnixMs) -> Result<HoldView>;

    /// CONFIRMING -> HELD (payment failed); the hold expires at once if its time is up.
    async fn unpin(&self, hold: HoldId, attempt: &str) -> Result<HoldView>;

    /// CONFIRMING -> SOLD, fenced by the hold id and the attempt.
    async fn confirm(&self, hold: HoldId, attempt: &str) -> Result<HoldView>;

    async fn availability(&self, event: EventId) -> Result<Availability>;

    /// The current availability and, when still remembered, the net change since `since`
    /// up to it, read in one step so that the two agree.
    async fn feed(&self, event: EventId, since: u64) -> Result<Feed>;

    async fn seat_counts(&self, event: EventId) -> Result<SeatCounts>;

    /// Seats the user has in the event, held plus bought.
    async fn user_seat_count(&self, event: EventId, user: &UserId) -> Result<u32>;

    /// Expires every unpinned hold whose time is up; returns how many.
    async fn expire_due(&self) -> Result<u32>;

    /// Pins whose deadline has passed.
    async fn stale_pins(&self) -> Result<Vec<StalePin>>;

    /// SOLD -> AVAILABLE for seats whose tickets were voided (refund, cancellation), at
    /// once and in one step. Seats that are not SOLD are left alone; returns the seats
    /// that were released.
    async fn release_sold(&self, event: EventId, seats: &[u32], reason: ReleaseReason) -> Result<Vec<u32>>;

    /// Marks seats SOLD that the order store says are sold but the engine does not
    /// (repair after a crash between the order commit and `confirm`). A live hold on such
    /// a seat loses to the order: it is released whole. Returns the seats changed.
    async fn mark_sold(&self, event: EventId, seats: Vec<SoldSeat>) -> Result<Vec<u32>>;

    /// The seats the engine has SOLD, ascending (for anti-entropy with the order store).
    async fn sold_seats(&self, event: EventId) -> Result<Vec<u32>>;

    /// Up to `limit` changes of the event after `after_version`, oldest first. A record is
    /// never split: the last version returned may have more records only if `limit` cut it.
    async fn history(&self, event: EventId, after_version: u64, limit: usize) -> Result<History>;

    /// Makes everything accepted so far durable.
    async fn flush(&self) -> Result<()>;

    /// Sets or clears the event's waitlist flag. While set, seats freed by expiry, a
    /// release or a refund (`release_sold` with [`ReleaseReason::Refund`]) go to the
    /// event's pool in the same atomic step instead of back on sale. Clearing it returns
    /// the whole pool to sale in the same step; returns the seats so returned.
    async fn set_waitlist(&self, event: EventId, on: bool) -> Result<Vec<u32>>;

    /// Clears the flag as `set_waitlist(event, false)` does, only if no `set_waitlist(..,
    /// true)` came since [`Pool::generation`] was `generation`, nor within the last
    /// [`WAITLIST_JOIN_GUARD_MS`]; `None` when one did (the flag stays set). A matcher that
    /// found nobody waiting clears with the generation it read before looking, so a join
    /// that set the flag meanwhile, or is still inserting its entry, is never undone.
    async fn clear_waitlist_if(&self, event: EventId, generation: u64) -> Result<Option<Vec<u32>>>;

    /// The event's waitlist flag and pool (after expiring what is due).
    async fn pool(&self, event: EventId) -> Result<Pool>;

    /// Moves pool seats into a new hold for the fan, all or nothing: seats not in the
    /// pool (offered meanwhile, e.g. by another node) answer `SeatsUnavailable` naming
    /// them, and nothing changes.
    async fn offer(&self, request: OfferRequest) -> Result<HoldView>;

    /// Pool -> AVAILABLE for these seats (those not in the pool are left alone); returns
    /// the seats released.
    async fn release_pool(&self, event: EventId, seats: &[u32]) -> Result<Vec<u32>>;

    /// Checks that the inventory's backend answers (`/readyz`). An in-process inventory
    /// always does.
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    /// The first step of making an event known from the order store's truth (its first
    /// initialization, or its rebuild after a loss): an event whose state is present is
    /// served as it is; an absent one is locked for this caller for `lease_ms`, so that
    /// one caller rebuilds it while the others wait.
    async fn begin_rebuild(&self, event: EventId, map: Arc<SeatMap>, lease_ms: u64) -> Result<RebuildLock>;

    /// Initializes the event locked by `begin_rebuild` from `truth`, unless its state
    /// appeared meanwhile, and releases the lock. Returns whether it initialized it.
    async fn finish_rebuild(
        &self,
        event: EventId,
        map: Arc<SeatMap>,
        lock: &str,
        truth: EventTruth,
    ) -> Result<bool>;

    /// Events this node found lost (their operations answered [`InventoryError::EventLost`])
    /// and not yet rebuilt. The embedded inventory never loses an event.
    fn lost_events(&self) -> Vec<EventId> {
        Vec::new()
    }
}

/// The engine's clock, injectable so that tests control time.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> UnixMs;
}

/// Wall-clock time. On Linux it reads the coarse real-time clock (a few ms of
/// resolution, a fraction of the cost): holds live for seconds to minutes, and every
/// operation reads the clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[cfg(target_os = "linux")]
    fn now_ms(&self) -> UnixMs {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME_COARSE always exists
        // on Linux, and clock_gettime writes nothing else.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
        if rc != 0 {
            return precise_now_ms();
        }
        (ts.tv_sec as UnixMs) * 1000 + (ts.tv_nsec as UnixMs) / 1_000_000
    }

    #[cfg(not(target_os = "linux"))]
    fn now_ms(&self) -> UnixMs {
        precise_now_ms()
    }
}

fn precise_now_ms() -> UnixMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as UnixMs)
        .unwrap_or(0)
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicU64);

impl ManualClock {
    pub fn new(start_ms: UnixMs) -> Self {
        ManualClock(std::sync::atomic::AtomicU64::new(start_ms))
    }

    pub fn advance_ms(&self, ms: u64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> UnixMs {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl<C: Clock> Clock for Arc<C> {
    fn now_ms(&self) -> UnixMs {
        (**self).now_ms()
    }
}
