//! The audit history: every seat change has exactly one record, and the history replays to
//! the current state.
//!
//! Two writers share one per-event sequence in the store. Order-side records
//! (PAYMENT_INITIATED, PAYMENT_FAILED, SEAT_CONFIRMED, SEAT_REFUNDED) are written by the
//! store inside the transaction of the change they record. Hold-side records (SEAT_HELD,
//! SEAT_RELEASED) are written by [`AuditWriter`], the one consumer of the inventory's change
//! history (`Inventory::history`): a background loop drains every event a few times a
//! second, and checkout drains the hold's event before it commits its payment attempt, so
//! that a hold's SEAT_HELD always comes before its PAYMENT_INITIATED.
//!
//! After a restart the embedded inventory restores unexpired holds from its journal: a
//! restored hold whose SEAT_HELD is already in the store is not recorded again, and a hold
//! the history still shows as live but that did not come back (it expired, or ended in the
//! moment before the crash, before its record was written) gets a SEAT_RELEASED with the
//! reason `recovery` ([`AuditWriter::settle_after_restart`]).
//!
//! [`verify`] replays an event's history and compares it with the inventory and the order
//! store (`GET /v1/events/{id}/audit/verify`, `boxoffice audit verify`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use boxoffice_core::{EventId, HoldId, OrderId, UserId};
use boxoffice_engine::{ChangeKind, ChangeRecord, Inventory, InventoryError};
use boxoffice_store::{AuditType, NewAuditRecord, Store};
use serde::Serialize;

/// How often the writer drains every event's change history.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(200);
/// Change records read from the inventory per call.
const HISTORY_BATCH: usize = 4_096;
/// How often the writer re-reads the list of events.
const EVENT_LIST_REFRESH: Duration = Duration::from_secs(1);

/// The one writer of hold-side audit records.
pub struct AuditWriter {
    inventory: Arc<dyn Inventory>,
    store: Arc<dyn Store>,
    /// Per event: the inventory version up to which records are written. One drain at a
    /// time (the lock is held across the store write), so records keep the engine's order.
    cursors: tokio::sync::Mutex<HashMap<EventId, u64>>,
    events: parking_lot::Mutex<(Vec<EventId>, Option<std::time::Instant>)>,
    /// Keep the cursors in the store's metadata (`audit.cursor.<event>`): the inventory's
    /// versions outlive this process when it is shared (Redis). A crash between a write
    /// and its cursor update writes that batch again on restart.
    persist_cursors: bool,
}

impl AuditWriter {
    pub fn new(inventory: Arc<dyn Inventory>, store: Arc<dyn Store>, persist_cursors: bool) -> Self {
        AuditWriter {
            inventory,
            store,
            cursors: tokio::sync::Mutex::new(HashMap::new()),
            events: parking_lot::Mutex::new((Vec::new(), None)),
            persist_cursors,
        }
    }

    fn cursor_key(event: EventId) -> String {
        format!("audit.cursor.{event}")
    }

    async fn cursor(&self, cursors: &mut HashMap<EventId, u64>, event: EventId) -> Result<u64, String> {
        if let Some(&cursor) = cursors.get(&event) {
            return Ok(cursor);
        }
        let cursor = if self.persist_cursors {
            let stored = self.store.meta_get(&Self::cursor_key(event)).await.map_err(|e| e.to_string())?;
            stored.and_then(|s| s.parse().ok()).unwrap_or(0)
        } else {
            0
        };
        cursors.insert(event, cursor);
        Ok(cursor)
    }

    /// Writes every change of `event` the inventory has made so far; returns how many
    /// audit records were written.
    pub async fn drain(&self, event: EventId) -> Result<usize, String> {
        let mut cursors = self.cursors.lock().await;
        self.drain_locked(&mut cursors, event).await
    }

    async fn drain_locked(
        &self,
        cursors: &mut HashMap<EventId, u64>,
        event: EventId,
    ) -> Result<usize, String> {
        let mut written = 0;
        loop {
            let cursor = self.cursor(cursors, event).await?;
            let history = match self.inventory.history(event, cursor, HISTORY_BATCH).await {
                Ok(history) => history,
                // A lost event is written on once it is rebuilt.
                Err(InventoryError::UnknownEvent | InventoryError::EventLost) => return Ok(written),
                Err(e) => return Err(e.to_string()),
            };
            let Some(last) = history.records.last().map(|r| r.version) else { return Ok(written) };
            if !history.complete {
                tracing::error!(%event, after = cursor, "audit writer fell behind the inventory's history; records lost");
                metrics::counter!("boxoffice_audit_records_lost_total").increment(1);
            }
            let recorded = self.recorded_restored_holds(event, &history.records).await?;
            let records: Vec<NewAuditRecord> = history
                .records
                .iter()
                .filter(|r| !(r.recovered && r.hold.is_some_and(|h| recorded.contains(&h))))
                .flat_map(|r| to_audit(event, r))
                .collect();
            self.store.append_audit(&records).await.map_err(|e| e.to_string())?;
            metrics::counter!("boxoffice_audit_records_total").increment(records.len() as u64);
            written += records.len();
            if self.persist_cursors {
                self.store
                    .meta_set(&Self::cursor_key(event), &last.to_string())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            cursors.insert(event, last);
        }
    }

    /// Restored holds (after a restart) whose SEAT_HELD is already in the store.
    async fn recorded_restored_holds(
        &self,
        event: EventId,
        records: &[ChangeRecord],
    ) -> Result<Vec<HoldId>, String> {
        let restored: Vec<HoldId> = records.iter().filter(|r| r.recovered).filter_map(|r| r.hold).collect();
        if restored.is_empty() {
            return Ok(Vec::new());
        }
        self.store.audit_holds_recorded(event, &restored).await.map_err(|e| e.to_string())
    }

    /// Drains every event (the background loop's step).
    pub async fn drain_all(&self) -> Result<usize, String> {
        let events = self.events().await?;
        let mut cursors = self.cursors.lock().await;
        let mut written = 0;
        for event in events {
            written += self.drain_locked(&mut cursors, event).await?;
        }
        Ok(written)
    }

    async fn events(&self) -> Result<Vec<EventId>, String> {
        {
            let guard = self.events.lock();
            if guard.1.is_some_and(|at| at.elapsed() < EVENT_LIST_REFRESH) {
                return Ok(guard.0.clone());
            }
        }
        let events = self.store.all_event_ids().await.map_err(|e| e.to_string())?;
        *self.events.lock() = (events.clone(), Some(std::time::Instant::now()));
        Ok(events)
    }

    /// At start-up, once the inventory is recovered and drained: closes the history of
    /// holds it shows live that the inventory no longer has. Returns how many seats.
    pub async fn settle_after_restart(&self, event: EventId, now_ms: u64) -> Result<usize, String> {
        let cursors = self.cursors.lock().await;
        let open = self.store.audit_open_holds(event).await.map_err(|e| e.to_string())?;
        let mut live: HashMap<HoldId, bool> = HashMap::new();
        let mut records = Vec::new();
        for held in open {
            let Some(hold) = held.record.hold else { continue };
            // The waitlist pool's seats come back with the journal (its pseudo hold is no hold).
            if hold == boxoffice_engine::waitlist_pool_hold(event) {
                continue;
            }
            let is_live = match live.get(&hold) {
                Some(&is_live) => is_live,
                None => {
                    let is_live = match self.inventory.hold_view(hold).await {
                        // Known, live or ended: the history records its end itself.
                        Ok(_) => true,
                        Err(InventoryError::UnknownHold | InventoryError::UnknownEvent) => false,
                        Err(e) => return Err(e.to_string()),
                    };
                    live.insert(hold, is_live);
                    is_live
                }
            };
            if !is_live {
                records.push(NewAuditRecord {
                    kind: AuditType::SeatReleased,
                    at: now_ms,
                    reason: Some("recovery".to_owned()),
                    ..held.record
                });
            }
        }
        self.store.append_audit(&records).await.map_err(|e| e.to_string())?;
        drop(cursors);
        Ok(records.len())
    }
}

/// How long a checkout on a node that does not write the audit history waits for the
/// writer to record its hold.
pub const HELD_RECORD_WAIT: Duration = Duration::from_secs(5);

/// Makes sure the hold's SEAT_HELD records are in the store, so that the checkout's
/// records come after them: the writing node drains the event; another node waits for
/// the writer (which drains every [`DRAIN_INTERVAL`]).
pub async fn ensure_held_recorded(state: &crate::AppState, hold: HoldId) -> Result<(), String> {
    if state.config.writes_audit() {
        return state.audit.drain(hold.event).await.map(|_| ());
    }
    let started = std::time::Instant::now();
    loop {
        let recorded =
            state.store.audit_holds_recorded(hold.event, &[hold]).await.map_err(|e| e.to_string())?;
        if !recorded.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= HELD_RECORD_WAIT {
            return Err(format!("the audit writer has not recorded hold {hold} after {HELD_RECORD_WAIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The audit records of one engine change: one per seat. Sales are recorded by the order
/// transaction (SEAT_CONFIRMED), so the engine's SOLD changes add nothing.
fn to_audit(event: EventId, record: &ChangeRecord) -> Vec<NewAuditRecord> {
    let (kind, reason) = match record.kind {
        ChangeKind::Held => (AuditType::SeatHeld, None),
        ChangeKind::Released(reason) => (AuditType::SeatReleased, Some(reason.as_str().to_owned())),
        ChangeKind::Sold => return Vec::new(),
        ChangeKind::Pooled(_) | ChangeKind::Offered | ChangeKind::Unpooled => {
            return pool_audit(event, record);
        }
    };
    let Some(user) = &record.user else {
        tracing::error!(%event, version = record.version, "change record without a user; not audited");
        return Vec::new();
    };
    record
        .seats
        .iter()
        .map(|&seat| NewAuditRecord {
            event,
            kind,
            at: record.at_ms,
            seat,
            hold: record.hold,
            order: None,
            user: user.clone(),
            reason: reason.clone(),
        })
        .collect()
}

/// The audit records of a waitlist pool move, with the existing record types: the pool is
/// a pseudo hold (`waitlist_pool_hold`, user `@waitlist`), so a seat entering it is
/// released by its hold (or ticket) and held by the pool, and leaving it is released by the
/// pool (reason `waitlist_offer`, then held by the offer's hold; or `waitlist`, back on
/// sale). `verify` replays these like any other hold.
fn pool_audit(event: EventId, record: &ChangeRecord) -> Vec<NewAuditRecord> {
    let pool = Some(boxoffice_engine::waitlist_pool_hold(event));
    let pool_user = UserId::parse(boxoffice_engine::WAITLIST_POOL_USER).expect("a valid user id");
    let one = |seat: u32, kind, hold, user: &UserId, reason: Option<&str>| NewAuditRecord {
        event,
        kind,
        at: record.at_ms,
        seat,
        hold,
        order: None,
        user: user.clone(),
        reason: reason.map(str::to_owned),
    };
    let mut out = Vec::with_capacity(2 * record.seats.len());
    for &seat in &record.seats {
        match (record.kind, &record.user) {
            (ChangeKind::Pooled(reason), Some(user)) => {
                out.push(one(seat, AuditType::SeatReleased, record.hold, user, Some(reason.as_str())));
                out.push(one(seat, AuditType::SeatHeld, pool, &pool_user, None));
            }
            (ChangeKind::Offered, Some(user)) => {
                out.push(one(seat, AuditType::SeatReleased, pool, &pool_user, Some("waitlist_offer")));
                out.push(one(seat, AuditType::SeatHeld, record.hold, user, None));
            }
            (ChangeKind::Unpooled, _) => {
                out.push(one(seat, AuditType::SeatReleased, pool, &pool_user, Some("waitlist")));
            }
            _ => {
                tracing::error!(%event, version = record.version, "pool change record without a user; not audited");
                return Vec::new();
            }
        }
    }
    out
}

/// A seat's state as the history tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Replayed {
    Available,
    Held(HoldId),
    /// Sold by the order, the ticket held by the user (the buyer, or the last recipient of
    /// a transfer).
    Sold(OrderId, UserId),
    /// The ticket was refunded; the seat is SOLD until its release is recorded.
    Refunded,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Verification {
    pub event_id: String,
    /// Records replayed.
    pub records: u64,
    /// Seats by state after the replay.
    pub available: u32,
    pub held: u32,
    pub sold: u32,
    /// Every disagreement: between a record and the state before it, or between the
    /// replayed state and the inventory or the order store. Empty when the history is true.
    pub mismatches: Vec<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// How many mismatches a verification lists before it only counts.
const MISMATCHES_LISTED: usize = 100;

/// Replays the event's whole history and compares the result with the inventory's seat
/// states and the store's valid tickets. Drain the writer first, at a quiet moment: a change
/// made during the check may show as a mismatch.
pub async fn verify(
    store: &dyn Store,
    inventory: &dyn Inventory,
    event: EventId,
    seats: usize,
) -> Result<Verification, String> {
    let mut state = vec![Replayed::Available; seats];
    let mut report = Verification { event_id: event.to_string(), ..Verification::default() };
    let mut problems: Vec<String> = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_after(event, after, 10_000).await.map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in &page {
            report.records += 1;
            let r = &entry.record;
            let Some(seat) = state.get_mut(r.seat as usize) else {
                problems.push(format!(
                    "#{} {}: seat {} is outside the event",
                    entry.seq,
                    r.kind.as_str(),
                    r.seat
                ));
                continue;
            };
            let before = seat.clone();
            let next = match (r.kind, &before) {
                (AuditType::SeatHeld, Replayed::Available) => r.hold.map(Replayed::Held),
                (AuditType::SeatReleased, Replayed::Held(h)) if r.hold == Some(*h) => {
                    Some(Replayed::Available)
                }
                (AuditType::SeatReleased, Replayed::Refunded | Replayed::Sold(..)) if r.hold.is_none() => {
                    Some(Replayed::Available)
                }
                (AuditType::PaymentInitiated | AuditType::PaymentFailed, _) => Some(before.clone()),
                (AuditType::SeatConfirmed, Replayed::Held(h)) if r.hold == Some(*h) => {
                    r.order.clone().map(|o| Replayed::Sold(o, r.user.clone()))
                }
                // A sale repaired after a crash: the order commit is the truth.
                (AuditType::SeatConfirmed, Replayed::Available | Replayed::Held(_)) => {
                    r.order.clone().map(|o| Replayed::Sold(o, r.user.clone()))
                }
                (AuditType::SeatRefunded, Replayed::Sold(o, _)) if r.order.as_ref() == Some(o) => {
                    Some(Replayed::Refunded)
                }
                // The seat stays sold under its order; the ticket changes hands.
                (AuditType::TicketTransferred, Replayed::Sold(o, _)) if r.order.as_ref() == Some(o) => {
                    Some(Replayed::Sold(o.clone(), r.user.clone()))
                }
                _ => None,
            };
            match next {
                Some(next) => *seat = next,
                None => problems.push(format!(
                    "#{} {} of seat {} (hold {:?}, order {:?}) when the seat was {:?}",
                    entry.seq,
                    r.kind.as_str(),
                    r.seat,
                    r.hold.map(|h| h.to_string()),
                    r.order.as_ref().map(|o| o.to_string()),
                    before
                )),
            }
        }
    }
    let availability = inventory.availability(event).await.map_err(|e| e.to_string())?;
    let bitmap = boxoffice_core::Bitmap::from_bytes(&availability.bitmap, seats)
        .ok_or_else(|| "the inventory's bitmap has the wrong length".to_owned())?;
    let engine_sold: std::collections::HashSet<u32> =
        inventory.sold_seats(event).await.map_err(|e| e.to_string())?.into_iter().collect();
    let tickets: HashMap<u32, UserId> = store
        .sold_seats(event)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|s| (s.seat_index, s.user))
        .collect();
    for (i, replayed) in state.iter().enumerate() {
        let seat = i as u32;
        let available = bitmap.is_available(seat);
        let sold = engine_sold.contains(&seat);
        let ticket = tickets.contains_key(&seat);
        let agrees = match replayed {
            Replayed::Available => {
                report.available += 1;
                available && !sold && !ticket
            }
            Replayed::Held(_) => {
                report.held += 1;
                !available && !sold && !ticket
            }
            Replayed::Sold(_, holder) => {
                report.sold += 1;
                sold && tickets.get(&seat) == Some(holder)
            }
            Replayed::Refunded => {
                report.sold += 1;
                sold && !ticket
            }
        };
        if !agrees {
            problems.push(format!(
                "seat {seat}: history says {replayed:?}; inventory says {}, order store {}",
                if sold {
                    "sold"
                } else if available {
                    "available"
                } else {
                    "held"
                },
                tickets
                    .get(&seat)
                    .map_or("has no valid ticket".to_owned(), |u| format!("has a valid ticket of {u}"))
            ));
        }
    }
    if problems.len() > MISMATCHES_LISTED {
        let more = problems.len() - MISMATCHES_LISTED;
        problems.truncate(MISMATCHES_LISTED);
        problems.push(format!("... and {more} more"));
    }
    report.mismatches = problems;
    Ok(report)
}
