//! The sold-out waitlist: fans of a sold-out event (or section) wait with a group size, and
//! seats freed by expiry, release or refund are offered to them in join order.
//!
//! **Freed seats never bypass the waitlist.** While an event has waiting entries its
//! engine flag is set (`Inventory::set_waitlist`), and the engine itself puts every seat
//! freed by an expiry, a release or a refund into the event's pool in the same atomic step
//! that frees it: the seat is never available, not even for a moment. The matcher
//! ([`step`], every [`MATCH_INTERVAL`]) reads the pool and offers seats with
//! `Inventory::offer`, which moves pool seats into a new hold in the fan's name, again in
//! one atomic step. Seats no waiting entry fits go back on sale (`release_pool`), and the
//! flag is cleared (which returns the whole pool in the same step) once nobody waits.
//!
//! **The rule** (docs/waitlist.md): the matcher walks the waiting entries in join order and
//! offers to the first entry for which the pool holds a fitting set; it then goes on down
//! the line with the seats left. A fitting set for an entry is `group_size` pool seats,
//! each in one of the entry's sections (any section when it named none) and priced at most
//! its `max_price` (any price when absent); with `adjacent` (the default) the seats are
//! consecutive numbers of one row with no aisle between them ([`SeatMap::row_neighbours`]),
//! the run starting at the lowest seat index that has one; without it, the lowest-indexed
//! fitting seats. An entry nothing fits keeps its place. Seats left when the walk ends fit
//! no waiting entry and go back on sale.
//!
//! An offer is a normal hold with the offer TTL (`--waitlist-offer-ttl`, default 15
//! minutes), checked out with the normal checkout. The entry becomes `offered` (with the
//! hold and its expiry); the offer is announced on the entry's SSE stream, by mail (to the
//! address of the token that joined, `<data-dir>/mail/waitlist-<entry>-<hold>.eml`) and as a
//! `waitlist.offered` outbox row for webhooks ([`emit_offered`]). A hold that ends
//! confirmed makes the entry `done`; one that expires or is released makes it `expired`,
//! and its seats, back in the pool, go to the next fitting entry.
//!
//! **Performance.** Each event's waiting entries are indexed in memory (join order, with
//! their criteria interned), so a freed block is matched without reading the store: the
//! walk looks each entry's criteria up in a per-pass cache, so entries asking the same
//! thing cost one hash lookup (`examples/waitlist_match.rs` measures 100,000 entries).
//!
//! **Distributed mode.** Entries live in the store (any node answers GET). The matcher runs
//! on the node that writes the audit history (`--audit-writer`); it re-reads the events'
//! active entries every [`REFRESH_INTERVAL`] to see joins and leaves of other nodes. Were
//! two matchers to run, the engine's `offer` fails for seats already offered (the second
//! simply loses), and the store's compare-and-set of the entry's state (waiting -> offered)
//! refuses a second offer to one entry, whose hold is then released back to the pool.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_core::{EventId, HoldId, HoldStatus, SeatMap, UnixMs, UserId};
use boxoffice_engine::{InventoryError, OfferRequest};
use boxoffice_store::{WaitlistChange, WaitlistEntry, WaitlistState};

use crate::AppState;
use crate::workers::now_ms;

/// How often the matcher looks at the pools and offers.
pub const MATCH_INTERVAL: Duration = Duration::from_millis(100);
/// How often, in distributed mode, the matcher re-reads the active entries of the store.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Group sizes a waitlist entry may ask for.
pub const MIN_GROUP_SIZE: u32 = 1;
pub const MAX_GROUP_SIZE: u32 = 8;
/// Sections one entry may name.
pub const MAX_SECTIONS_PER_ENTRY: usize = 32;
/// Passes of the matcher over one event's pool per step (an offer refused by the engine,
/// e.g. for the fan's seat limit, leaves its seats for another pass without that entry).
const MAX_PASSES: usize = 4;

/// The waitlist's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitlistConfig {
    /// How long a waitlist offer (a hold in the fan's name) lasts, in whole seconds.
    #[arg(long = "waitlist-offer-ttl", env = "BOXOFFICE_WAITLIST_OFFER_TTL", default_value_t = WaitlistConfig::DEFAULT_OFFER_TTL_S,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub offer_ttl_s: u64,
    /// Active (waiting or offered) entries one event's waitlist may have.
    #[arg(long = "waitlist-max-entries", env = "BOXOFFICE_WAITLIST_MAX_ENTRIES", default_value_t = WaitlistConfig::DEFAULT_MAX_ENTRIES,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_entries: u32,
}

impl WaitlistConfig {
    pub const DEFAULT_OFFER_TTL_S: u64 = 15 * 60;
    pub const DEFAULT_MAX_ENTRIES: u32 = 1_000_000;
}

impl Default for WaitlistConfig {
    fn default() -> Self {
        WaitlistConfig { offer_ttl_s: Self::DEFAULT_OFFER_TTL_S, max_entries: Self::DEFAULT_MAX_ENTRIES }
    }
}

// ---------------------------------------------------------------------------------------
// Matching (pure)
// ---------------------------------------------------------------------------------------

/// What an entry asks for, with section names resolved against the event's map.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Criteria {
    pub group_size: u32,
    /// Section indexes, ascending; empty = any.
    pub sections: Vec<u16>,
    pub max_price: Option<i64>,
    pub adjacent: bool,
}

/// One waiting entry in the index.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub id: String,
    pub user: UserId,
    pub email: Option<String>,
    /// Index into the event's interned criteria.
    pub criteria: u32,
}

/// One event's waiting entries in join order, their criteria interned.
#[derive(Debug, Default)]
pub struct Line {
    pub waiting: BTreeMap<u64, Waiting>,
    criteria: Vec<Criteria>,
    criteria_ids: HashMap<Criteria, u32>,
}

impl Line {
    pub fn push(&mut self, seq: u64, id: String, user: UserId, email: Option<String>, criteria: Criteria) {
        let next = self.criteria.len() as u32;
        let key = *self.criteria_ids.entry(criteria.clone()).or_insert_with(|| next);
        if key == next {
            self.criteria.push(criteria);
        }
        self.waiting.insert(seq, Waiting { id, user, email, criteria: key });
    }

    pub fn remove(&mut self, seq: u64) -> Option<Waiting> {
        self.waiting.remove(&seq)
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn criteria(&self, key: u32) -> &Criteria {
        &self.criteria[key as usize]
    }
}

/// A fitting set of `c.group_size` seats from `pool` (ascending), per the rule above.
pub fn find_fit(
    map: &SeatMap,
    price: &dyn Fn(u32) -> i64,
    pool: &BTreeSet<u32>,
    c: &Criteria,
) -> Option<Vec<u32>> {
    let g = c.group_size as usize;
    if g == 0 || pool.len() < g {
        return None;
    }
    let fits = |s: u32| {
        (c.sections.is_empty() || c.sections.binary_search(&map.seat(s).section).is_ok())
            && c.max_price.is_none_or(|max| price(s) <= max)
    };
    if !c.adjacent {
        let seats: Vec<u32> = pool.iter().copied().filter(|&s| fits(s)).take(g).collect();
        return (seats.len() == g).then_some(seats);
    }
    for &start in pool {
        if !fits(start) {
            continue;
        }
        let mut run = Vec::with_capacity(g);
        run.push(start);
        let mut at = start;
        while run.len() < g {
            match map.row_neighbours(at).1 {
                Some(next) if pool.contains(&next) && fits(next) => {
                    run.push(next);
                    at = next;
                }
                _ => break,
            }
        }
        if run.len() == g {
            run.sort_unstable();
            return Some(run);
        }
    }
    None
}

/// The offers the rule makes of `pool` to `line` (skipping the entries in `skip`), in
/// order, and the seats that fit no entry.
pub fn plan(
    line: &Line,
    map: &SeatMap,
    price: &dyn Fn(u32) -> i64,
    pool: &[u32],
    skip: &HashSet<u64>,
) -> (Vec<(u64, Vec<u32>)>, Vec<u32>) {
    let mut pool: BTreeSet<u32> = pool.iter().copied().collect();
    let mut offers = Vec::new();
    // Per criteria: the fit in the current pool (cleared whenever the pool shrinks; an
    // entry nothing fitted fits nothing in a smaller pool either).
    let mut cache: HashMap<u32, Option<Vec<u32>>> = HashMap::new();
    for (&seq, entry) in &line.waiting {
        if pool.is_empty() {
            break;
        }
        if skip.contains(&seq) {
            continue;
        }
        let c = line.criteria(entry.criteria);
        if c.group_size as usize > pool.len() {
            continue;
        }
        let fit = cache.entry(entry.criteria).or_insert_with(|| find_fit(map, price, &pool, c)).clone();
        if let Some(seats) = fit {
            for s in &seats {
                pool.remove(s);
            }
            cache.clear();
            offers.push((seq, seats));
        }
    }
    (offers, pool.into_iter().collect())
}

// ---------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------

/// An entry with an open offer.
#[derive(Debug, Clone)]
struct Offered {
    id: String,
    hold: HoldId,
}

#[derive(Default)]
struct EventState {
    line: Line,
    offered: Vec<Offered>,
}

/// Every event's waitlist index on this node.
#[derive(Default)]
pub struct Waitlists {
    events: parking_lot::Mutex<HashMap<EventId, Arc<tokio::sync::Mutex<EventState>>>>,
    /// The index was loaded from the store (at the matcher's first step).
    loaded: std::sync::atomic::AtomicBool,
    last_refresh: parking_lot::Mutex<Option<Instant>>,
    /// Woken at every state change of an entry made on this node (SSE followers).
    pub changed: tokio::sync::Notify,
}

impl Waitlists {
    fn event(&self, event: EventId) -> Arc<tokio::sync::Mutex<EventState>> {
        self.events.lock().entry(event).or_default().clone()
    }

    fn event_ids(&self) -> Vec<EventId> {
        self.events.lock().keys().copied().collect()
    }
}

/// Resolves an entry's stored criteria against the event's map (unknown names were
/// refused at the join, and a map never changes).
pub fn criteria_of(map: &SeatMap, entry: &WaitlistEntry) -> Criteria {
    let mut sections: Vec<u16> = entry.sections.iter().filter_map(|name| map.section_index(name)).collect();
    sections.sort_unstable();
    sections.dedup();
    Criteria { group_size: entry.group_size, sections, max_price: entry.max_price, adjacent: entry.adjacent }
}

/// Whether the event (or, when `sections` are named, each of them) has no available seat.
pub async fn sold_out(
    state: &AppState,
    event: EventId,
    map: &SeatMap,
    sections: &[u16],
) -> Result<bool, InventoryError> {
    let availability = state.inventory.availability(event).await?;
    // The public's view: seats of allocations in force are not on general sale.
    let blocked = match state.catalog.event(state.store.as_ref(), event).await {
        Ok(entry) => entry.allocations.blocked(now_ms(), |_| false),
        Err(_) => None,
    };
    if sections.is_empty() && blocked.is_none() {
        return Ok(availability.available_count == 0);
    }
    let mut bitmap = boxoffice_core::Bitmap::from_bytes(&availability.bitmap, map.len())
        .ok_or_else(|| InventoryError::Journal("the bitmap does not fit the seat map".into()))?;
    if let Some(mask) = blocked {
        bitmap = bitmap.without(&mask);
    }
    Ok(!(0..map.len() as u32)
        .any(|s| bitmap.is_available(s) && (sections.is_empty() || sections.contains(&map.seat(s).section))))
}

/// Why a join was refused.
pub enum JoinRefused {
    NotSoldOut,
    Full(u32),
    Inventory(InventoryError),
    Store(boxoffice_store::StoreError),
}

/// Joins the waitlist (the caller validated the body and the event). Returns the entry and
/// whether it is new.
pub async fn join(
    state: &AppState,
    new: boxoffice_store::NewWaitlistEntry,
    map: &SeatMap,
    criteria: Criteria,
) -> Result<(WaitlistEntry, bool), JoinRefused> {
    let event = new.event;
    // Joining again returns the active entry, sold out or not.
    if let Some(existing) = active_entry_of(state, event, &new.user).await.map_err(JoinRefused::Store)? {
        return Ok((existing, false));
    }
    let slot = state.waitlists.event(event);
    let mut ev = slot.lock().await;
    // The flag first: a seat freed from here on goes to the pool, so it cannot be sold
    // around the entry about to be added.
    state.inventory.set_waitlist(event, true).await.map_err(JoinRefused::Inventory)?;
    let refuse = |ev: &EventState| ev.line.is_empty();
    match sold_out(state, event, map, &criteria.sections).await {
        Ok(true) => {}
        Ok(false) => {
            if state.config.distributed() {
                clear_later_if_nobody_waits(state, event);
            } else if refuse(&ev) {
                state.inventory.set_waitlist(event, false).await.map_err(JoinRefused::Inventory)?;
            }
            return Err(JoinRefused::NotSoldOut);
        }
        Err(e) => return Err(JoinRefused::Inventory(e)),
    }
    match state.store.waitlist_join(new, state.config.waitlist.max_entries).await {
        Ok(boxoffice_store::WaitlistJoin::Joined(entry)) => {
            // Again after the insert: a matcher on another node that cleared the flag
            // between the first set and the insert (its index did not show this entry
            // yet) must not leave it cleared (see `match_event`).
            if state.config.distributed() {
                state.inventory.set_waitlist(event, true).await.map_err(JoinRefused::Inventory)?;
            }
            ev.line.push(entry.seq, entry.id.clone(), entry.user.clone(), entry.email.clone(), criteria);
            metrics::counter!("boxoffice_waitlist_joins_total").increment(1);
            Ok((entry, true))
        }
        Ok(boxoffice_store::WaitlistJoin::Existing(entry)) => Ok((entry, false)),
        Ok(boxoffice_store::WaitlistJoin::Full(limit)) => {
            if state.config.distributed() {
                clear_later_if_nobody_waits(state, event);
            } else if refuse(&ev) {
                state.inventory.set_waitlist(event, false).await.map_err(JoinRefused::Inventory)?;
            }
            Err(JoinRefused::Full(limit))
        }
        Err(e) => Err(JoinRefused::Store(e)),
    }
}

async fn active_entry_of(
    state: &AppState,
    event: EventId,
    user: &UserId,
) -> Result<Option<WaitlistEntry>, boxoffice_store::StoreError> {
    state.store.waitlist_active_of(event, user).await
}

/// Leaves the waitlist: a waiting entry is removed; an offered one is removed and its
/// hold released (the seats go to the next entry). Returns false when it was not active.
pub async fn leave(state: &AppState, entry: &WaitlistEntry) -> Result<bool, crate::error::ApiError> {
    let slot = state.waitlists.event(entry.event);
    let mut ev = slot.lock().await;
    let change =
        WaitlistChange { state: WaitlistState::Left, hold: None, offer_expires_at: None, now: now_ms() };
    let left = match entry.state {
        WaitlistState::Waiting | WaitlistState::Offered => {
            state.store.waitlist_update(&entry.id, entry.state, change).await?
        }
        _ => false,
    };
    if left {
        ev.line.remove(entry.seq);
        ev.offered.retain(|o| o.id != entry.id);
        if entry.state == WaitlistState::Offered
            && let Some(hold) = entry.hold
        {
            match state.inventory.release(hold).await {
                Ok(_) | Err(InventoryError::HoldExpired | InventoryError::HoldReleased) => {}
                Err(InventoryError::HoldConfirming | InventoryError::AlreadyConfirmed) => {}
                Err(e) => return Err(e.into()),
            }
        }
        state.waitlists.changed.notify_waiters();
        if state.config.distributed() {
            clear_later_if_nobody_waits(state, entry.event);
        }
    }
    Ok(left)
}

/// Loads the index from the store: every active entry, waiting or offered.
async fn load(state: &AppState) -> Result<(), String> {
    let entries = state.store.waitlist_active(None).await.map_err(|e| e.to_string())?;
    let mut by_event: HashMap<EventId, Vec<WaitlistEntry>> = HashMap::new();
    for entry in entries {
        by_event.entry(entry.event).or_default().push(entry);
    }
    for (event, entries) in by_event {
        replace_event(state, event, entries).await?;
    }
    *state.waitlists.last_refresh.lock() = Some(Instant::now());
    state.waitlists.loaded.store(true, std::sync::atomic::Ordering::Release);
    Ok(())
}

/// Replaces one event's index with these active entries (in join order).
async fn replace_event(state: &AppState, event: EventId, entries: Vec<WaitlistEntry>) -> Result<(), String> {
    let Ok(entry) = state.catalog.event(state.store.as_ref(), event).await else { return Ok(()) };
    let slot = state.waitlists.event(event);
    let mut ev = slot.lock().await;
    let mut fresh = EventState::default();
    for e in entries {
        match e.state {
            WaitlistState::Waiting => {
                let criteria = criteria_of(&entry.map, &e);
                fresh.line.push(e.seq, e.id, e.user, e.email, criteria);
            }
            WaitlistState::Offered => {
                if let Some(hold) = e.hold {
                    fresh.offered.push(Offered { id: e.id, hold });
                }
            }
            _ => {}
        }
    }
    *ev = fresh;
    Ok(())
}

/// The matcher's step: loads the index once, then settles offers and matches each event's
/// pool (see the module's documentation).
pub async fn step(state: AppState) -> Result<(), String> {
    if !state.waitlists.loaded.load(std::sync::atomic::Ordering::Acquire) {
        load(&state).await?;
    } else if state.config.distributed() {
        let due = state.waitlists.last_refresh.lock().is_none_or(|at| at.elapsed() >= REFRESH_INTERVAL);
        if due {
            let entries = state.store.waitlist_active(None).await.map_err(|e| e.to_string())?;
            let mut by_event: HashMap<EventId, Vec<WaitlistEntry>> = HashMap::new();
            for entry in entries {
                by_event.entry(entry.event).or_default().push(entry);
            }
            for event in state.waitlists.event_ids() {
                by_event.entry(event).or_default();
            }
            for (event, entries) in by_event {
                replace_event(&state, event, entries).await?;
            }
            *state.waitlists.last_refresh.lock() = Some(Instant::now());
        }
    }
    for event in state.waitlists.event_ids() {
        if let Err(e) = match_event(&state, event).await {
            tracing::warn!(%event, error = %e, "waitlist matching failed; the next step retries");
        }
    }
    Ok(())
}

/// Distributed: clears the event's flag if nobody waits in the store, with the generation
/// read before looking (see `match_event`); false when it stays set.
async fn clear_if_nobody_waits(state: &AppState, event: EventId) -> Result<bool, String> {
    let generation = match state.inventory.pool(event).await {
        Ok(pool) => pool.generation,
        Err(InventoryError::UnknownEvent) => return Ok(true),
        Err(e) => return Err(e.to_string()),
    };
    if waiting_in_store(state, event).await? {
        return Ok(false);
    }
    match state.inventory.clear_waitlist_if(event, generation).await {
        Ok(done) => Ok(done.is_some()),
        Err(InventoryError::UnknownEvent) => Ok(true),
        Err(e) => Err(e.to_string()),
    }
}

/// Distributed: after a refused join or a leave, whose event the matcher node may never
/// index (its index holds events with active entries), clears the flag once the join guard
/// is over if nobody waits then, so that freed seats do not collect in a pool nobody
/// offers. A node that stops before this runs leaves the flag to the next join or leave.
fn clear_later_if_nobody_waits(state: &AppState, event: EventId) {
    let state = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(boxoffice_engine::WAITLIST_JOIN_GUARD_MS + 200)).await;
        if let Err(e) = clear_if_nobody_waits(&state, event).await {
            tracing::warn!(%event, error = %e, "cannot clear the waitlist flag of an event nobody waits for");
        }
    });
}

/// Whether the store has a waiting entry of the event (other nodes' joins included).
async fn waiting_in_store(state: &AppState, event: EventId) -> Result<bool, String> {
    let active = state.store.waitlist_active(Some(event)).await.map_err(|e| e.to_string())?;
    Ok(active.iter().any(|e| e.state == WaitlistState::Waiting))
}

/// Settles the event's offers, then offers its pool to the line.
pub async fn match_event(state: &AppState, event: EventId) -> Result<usize, String> {
    let slot = state.waitlists.event(event);
    let mut ev = slot.lock().await;
    settle_offers(state, &mut ev).await?;
    if !ev.line.is_empty()
        && let Ok(entry) = state.catalog.event(state.store.as_ref(), event).await
        && entry.event.status == boxoffice_store::EventStatus::Cancelled
    {
        // A cancelled event offers nothing more: its waiting entries end `expired` (its
        // offers end with their holds, which the cancellation releases).
        let change = || WaitlistChange {
            state: WaitlistState::Expired,
            hold: None,
            offer_expires_at: None,
            now: now_ms(),
        };
        for waiting in std::mem::take(&mut ev.line).waiting.into_values() {
            if let Err(e) = state.store.waitlist_update(&waiting.id, WaitlistState::Waiting, change()).await {
                tracing::warn!(%event, entry = %waiting.id, error = %e, "cannot end a waitlist entry of a cancelled event");
            }
        }
        state.waitlists.changed.notify_waiters();
    }
    if ev.line.is_empty() {
        // Nobody waits in this node's index: freed seats go back on sale, the pool with
        // them. Distributed: a join on another node may have added an entry that this
        // index does not show yet (it is refreshed every REFRESH_INTERVAL). So the flag's
        // generation is read first, the store asked, and the clear made only if no join
        // set the flag since the read (`clear_waitlist_if`, atomic in the engine); the
        // joining node sets the flag before and again after its insert. Either the join's
        // last set comes after the read and the clear is refused, or its insert came
        // before the read and the store shows the entry.
        let cleared = if state.config.distributed() {
            clear_if_nobody_waits(state, event).await?
        } else {
            match state.inventory.set_waitlist(event, false).await {
                Ok(_) | Err(InventoryError::UnknownEvent) => true,
                Err(e) => return Err(e.to_string()),
            }
        };
        if cleared && ev.offered.is_empty() {
            drop(ev);
            // Forgotten unless a join holds it meanwhile (clones are made under this lock).
            let mut events = state.waitlists.events.lock();
            if Arc::strong_count(&slot) == 2 {
                events.remove(&event);
            }
        }
        return Ok(0);
    }
    let pool = state.inventory.pool(event).await.map_err(|e| e.to_string())?;
    if !pool.on {
        // Set again (e.g. after an inventory rebuild lost it).
        state.inventory.set_waitlist(event, true).await.map_err(|e| e.to_string())?;
    }
    if pool.seats.is_empty() {
        return Ok(0);
    }
    let entry = state.catalog.event(state.store.as_ref(), event).await.map_err(|e| e.message)?;
    let price = |s: u32| entry.price_of(s).amount;
    let mut pool_seats = pool.seats;
    // Seats of an allocation in force are not the waitlist's to offer: they go back to
    // sale, where only callers entitled to the allocation may hold them.
    let now = crate::workers::now_ms();
    if let Some(blocked) = entry.allocations.blocked(now, |_| false) {
        let (reserved, open): (Vec<u32>, Vec<u32>) =
            pool_seats.iter().partition(|&&s| blocked.is_available(s));
        if !reserved.is_empty() {
            state.inventory.release_pool(event, &reserved).await.map_err(|e| e.to_string())?;
            pool_seats = open;
        }
    }
    let mut skip: HashSet<u64> = HashSet::new();
    let mut made = 0;
    for _ in 0..MAX_PASSES {
        let started = Instant::now();
        let (offers, leftover) = plan(&ev.line, &entry.map, &price, &pool_seats, &skip);
        metrics::histogram!("boxoffice_waitlist_match_seconds").record(started.elapsed().as_secs_f64());
        let mut refused = false;
        let mut still: BTreeSet<u32> = leftover.iter().copied().collect();
        for (seq, seats) in offers {
            match offer(state, event, &mut ev, seq, &seats).await? {
                true => made += 1,
                false => {
                    skip.insert(seq);
                    refused = true;
                    still.extend(seats);
                }
            }
        }
        if !refused {
            if !leftover.is_empty() {
                state.inventory.release_pool(event, &leftover).await.map_err(|e| e.to_string())?;
                metrics::counter!("boxoffice_waitlist_seats_returned_total").increment(leftover.len() as u64);
            }
            break;
        }
        pool_seats = still.into_iter().collect();
    }
    Ok(made)
}

/// Offers `seats` to the entry at `seq`; false when the engine or the store refused.
async fn offer(
    state: &AppState,
    event: EventId,
    ev: &mut EventState,
    seq: u64,
    seats: &[u32],
) -> Result<bool, String> {
    let Some(waiting) = ev.line.waiting.get(&seq).cloned() else { return Ok(false) };
    let request = OfferRequest {
        event,
        user: waiting.user.clone(),
        seats: seats.to_vec(),
        ttl_ms: state.config.waitlist.offer_ttl_s * 1000,
        max_seats_per_user: state.limits.max_seats_per_user_per_event,
    };
    let view = match state.inventory.offer(request).await {
        Ok(view) => view,
        // Offered meanwhile by another matcher, or the fan has too many seats now.
        Err(InventoryError::SeatsUnavailable(_) | InventoryError::UserLimit { .. }) => return Ok(false),
        Err(e) => return Err(e.to_string()),
    };
    let change = WaitlistChange {
        state: WaitlistState::Offered,
        hold: Some(view.id),
        offer_expires_at: Some(view.expires_ms),
        now: now_ms(),
    };
    let taken = state.store.waitlist_update(&waiting.id, WaitlistState::Waiting, change).await;
    if !matches!(taken, Ok(true)) {
        // The entry left, or another matcher offered to it first: the seats go back to the
        // pool (the flag is on) for the next pass. On a store error the entry is still
        // waiting as far as anyone knows: it stays in line for the next pass.
        if matches!(taken, Ok(false)) {
            ev.line.remove(seq);
        }
        if let Err(e) = state.inventory.release(view.id).await {
            tracing::warn!(hold = %view.id, error = %e, "cannot release a refused waitlist offer");
        }
        return match taken {
            Err(e) => Err(e.to_string()),
            _ => Ok(false),
        };
    }
    ev.line.remove(seq);
    ev.offered.push(Offered { id: waiting.id.clone(), hold: view.id });
    metrics::counter!("boxoffice_waitlist_offers_total").increment(1);
    state.waitlists.changed.notify_waiters();
    emit_offered(state, &waiting.id, &view, seats).await;
    mail_offer(state, &waiting, &view, seats).await;
    Ok(true)
}

/// Moves entries whose offer ended: confirmed -> done; expired or released -> expired.
async fn settle_offers(state: &AppState, ev: &mut EventState) -> Result<(), String> {
    let mut still = Vec::with_capacity(ev.offered.len());
    for offered in std::mem::take(&mut ev.offered) {
        let next = match state.inventory.hold_view(offered.hold).await {
            Ok(view) => match view.status {
                HoldStatus::Held | HoldStatus::Confirming => None,
                HoldStatus::Confirmed => Some(WaitlistState::Done),
                HoldStatus::Expired | HoldStatus::Released => Some(WaitlistState::Expired),
            },
            Err(InventoryError::UnknownHold) => Some(WaitlistState::Expired),
            Err(e) => {
                still.push(offered);
                ev.offered.extend(still);
                return Err(e.to_string());
            }
        };
        match next {
            None => still.push(offered),
            Some(to) => {
                let change = WaitlistChange { state: to, hold: None, offer_expires_at: None, now: now_ms() };
                // False: it left meanwhile (or another node settled it). An error: tried again
                // at the next step, the offer stays on the list.
                if let Err(e) = state.store.waitlist_update(&offered.id, WaitlistState::Offered, change).await
                {
                    tracing::warn!(entry = %offered.id, error = %e, "cannot settle a waitlist offer; retrying");
                    still.push(offered);
                    continue;
                }
                metrics::counter!("boxoffice_waitlist_offers_ended_total", "result" => to.as_str())
                    .increment(1);
                state.waitlists.changed.notify_waiters();
            }
        }
    }
    ev.offered = still;
    Ok(())
}

/// The `waitlist.offered` record for integrators' webhooks, appended to the store's outbox.
pub async fn emit_offered(state: &AppState, entry_id: &str, view: &boxoffice_core::HoldView, seats: &[u32]) {
    let payload = serde_json::json!({
        "waitlist_id": entry_id,
        "event_id": view.event.to_string(),
        "user": view.user.as_str(),
        "hold_id": view.id.to_string(),
        "seats": seats,
        "expires_at": crate::http::dto::rfc3339(view.expires_ms),
    });
    match state
        .store
        .outbox_append(boxoffice_store::TOPIC_WAITLIST_OFFERED, entry_id, &payload, now_ms())
        .await
    {
        Ok(_) => state.outbox_wake.notify_one(),
        Err(e) => tracing::warn!(entry = entry_id, error = %e, "cannot record waitlist.offered"),
    }
}

/// Mails the offer to the address the entry was joined with (once per offer).
async fn mail_offer(state: &AppState, waiting: &Waiting, view: &boxoffice_core::HoldView, seats: &[u32]) {
    let Some(to) = waiting.email.clone() else { return };
    let Ok(entry) = state.catalog.event(state.store.as_ref(), view.event).await else { return };
    let labels: Vec<String> = seats.iter().map(|&s| entry.map.label(s)).collect();
    let offer = crate::mail::WaitlistOffer {
        to,
        event_name: entry.event.name.clone(),
        hold_id: view.id.to_string(),
        seats: labels,
        expires_at: crate::http::dto::rfc3339(view.expires_ms),
    };
    let dir = state.config.data_dir.join(crate::mail::MAIL_DIR);
    let name = format!("waitlist-{}-{}.eml", waiting.id, view.id);
    let written = tokio::task::spawn_blocking(move || {
        let message = crate::mail::render_waitlist_offer(&offer)?;
        crate::mail::write_file_once(&dir, &name, &message).map_err(|e| e.to_string())
    })
    .await;
    match written {
        Ok(Ok(_)) => metrics::counter!("boxoffice_waitlist_mails_total").increment(1),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the waitlist offer mail"),
        Err(e) => tracing::warn!(error = %e, "the waitlist mail task failed"),
    }
}

/// Milliseconds of the offer TTL (for answers).
pub fn offer_ttl_ms(state: &AppState) -> UnixMs {
    state.config.waitlist.offer_ttl_s * 1000
}

#[cfg(test)]
mod tests {
    use boxoffice_core::SectionSpec;

    use super::*;

    fn map() -> SeatMap {
        // Section A: 2 rows of 6; section B: 1 row of 4.
        let a = SectionSpec { name: "A".into(), rows: 2, seats_per_row: 6, tier: None };
        let b = SectionSpec { name: "B".into(), rows: 1, seats_per_row: 4, tier: None };
        SeatMap::from_sections(SeatMap::default_tiers(), &[a, b]).unwrap()
    }

    fn c(group_size: u32, adjacent: bool) -> Criteria {
        Criteria { group_size, sections: vec![], max_price: None, adjacent }
    }

    fn line(entries: &[Criteria]) -> Line {
        let mut line = Line::default();
        for (i, criteria) in entries.iter().enumerate() {
            line.push(
                i as u64 + 1,
                format!("wl_{i}"),
                UserId::parse(&format!("u{i}")).unwrap(),
                None,
                criteria.clone(),
            );
        }
        line
    }

    #[test]
    fn freed_seats_go_to_the_first_entry_in_order_that_they_fit() {
        let map = map();
        let price = |_| 100;
        // [group 4, group 2], 2 seats freed: the group of 4 does not fit, the 2 does.
        let l = line(&[c(4, true), c(2, true)]);
        let (offers, left) = plan(&l, &map, &price, &[2, 3], &HashSet::new());
        assert_eq!(offers, vec![(2, vec![2, 3])]);
        assert!(left.is_empty());
        // Enough for both: the first in order is served first, then the next.
        let (offers, left) = plan(&l, &map, &price, &[0, 1, 2, 3, 4, 5], &HashSet::new());
        assert_eq!(offers, vec![(1, vec![0, 1, 2, 3]), (2, vec![4, 5])]);
        assert!(left.is_empty());
    }

    #[test]
    fn adjacency_means_consecutive_numbers_of_one_row() {
        let map = map();
        let price = |_| 100;
        // Seats 5 (A-1-6) and 6 (A-2-1) are consecutive indexes but two rows.
        let l = line(&[c(2, true)]);
        let (offers, left) = plan(&l, &map, &price, &[5, 6], &HashSet::new());
        assert!(offers.is_empty());
        assert_eq!(left, vec![5, 6]);
        // Without adjacency they fit.
        let l = line(&[c(2, false)]);
        assert_eq!(plan(&l, &map, &price, &[5, 6], &HashSet::new()).0, vec![(1, vec![5, 6])]);
        // A gap in the row breaks a run.
        let l = line(&[c(3, true)]);
        assert!(plan(&l, &map, &price, &[0, 1, 3], &HashSet::new()).0.is_empty());
        assert_eq!(plan(&l, &map, &price, &[0, 1, 3, 4, 5], &HashSet::new()).0, vec![(1, vec![3, 4, 5])]);
    }

    #[test]
    fn sections_and_price_ceiling_filter_the_seats() {
        let map = map();
        // Seats of row 2 of A cost 200, the rest 100.
        let price = |s: u32| if (6..12).contains(&s) { 200 } else { 100 };
        let b = map.section_index("B").unwrap();
        let in_b = Criteria { group_size: 2, sections: vec![b], max_price: None, adjacent: true };
        let cheap = Criteria { group_size: 2, sections: vec![], max_price: Some(150), adjacent: true };
        let l = line(&[in_b, cheap]);
        // Seats 6, 7 (A row 2, 200) fit neither.
        let (offers, left) = plan(&l, &map, &price, &[6, 7], &HashSet::new());
        assert!(offers.is_empty());
        assert_eq!(left, vec![6, 7]);
        // 12, 13 are B: the first entry; 0, 1 are cheap: the second.
        let (offers, _) = plan(&l, &map, &price, &[0, 1, 12, 13], &HashSet::new());
        assert_eq!(offers, vec![(1, vec![12, 13]), (2, vec![0, 1])]);
    }
}
