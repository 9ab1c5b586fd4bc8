//! Making an event known to the distributed inventory from the order store's truth: its
//! first initialization in Redis, and its rebuild after Redis lost it (a restart without
//! persistence, a failover to a replica that lacked it).
//!
//! One node does it, under the event's rebuild lock in Redis; the others wait (start-up,
//! a node learning of an event) or answer `503 INVENTORY_REBUILDING` meanwhile (holds and
//! reads of a lost event). The rebuilt state is SOLD from valid tickets, CONFIRMING from
//! open payment attempts without an order (so that their checkouts, or the reconciler
//! after their deadline, settle them) and everything else AVAILABLE: holds that were not
//! being paid are lost. Each initialization takes a new epoch, kept in the store's
//! metadata (`inventory.epoch.<event>`) and in Redis, larger than every earlier one: the
//! availability ETags and live-map ids carry it, so no version of the lost history is
//! mistaken for one of the new. A rebuild after a loss is also recorded
//! (`inventory.lost.<event>`), so that a checkout of a lost hold answers 410 rather than 404.

use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_core::{EventId, SeatMap};
use boxoffice_engine::{EventTruth, InventoryError, RebuildLock, RestoredPin, SoldSeat};

use crate::{AppState, StartError};

/// How long a rebuild lock is held at most (another node takes over after it).
pub const REBUILD_LEASE_MS: u64 = 30_000;
/// How often the lost events a node found are rebuilt (and found rebuilt by others).
pub const REBUILD_INTERVAL: Duration = Duration::from_millis(500);
/// How long loading an event waits for another node's rebuild of it.
pub const LOAD_WAIT: Duration = Duration::from_millis(REBUILD_LEASE_MS + 5_000);
/// Open payment attempts read (of every event) to find the pins to restore; an attempt
/// beyond it loses its pin and its checkout fails cleanly (410, payment voided).
pub const OPEN_ATTEMPTS_SCANNED: u32 = 10_000;

/// The store's metadata key of the event's epoch.
pub fn epoch_key(event: EventId) -> String {
    format!("inventory.epoch.{event}")
}

/// The store's metadata key set when the event was rebuilt after a loss (its epoch).
pub fn lost_key(event: EventId) -> String {
    format!("inventory.lost.{event}")
}

/// Makes the event known to the inventory: serves its state when present, else builds
/// it from the order store under the lock, waiting up to `patience` for another node
/// that holds the lock (then `InventoryError::EventLost`).
pub async fn ensure_event(state: &AppState, event: EventId, patience: Duration) -> Result<(), StartError> {
    let map = state.store.event_seat_map(event).await?;
    let started = Instant::now();
    loop {
        match state.inventory.begin_rebuild(event, map.clone(), REBUILD_LEASE_MS).await? {
            RebuildLock::Present { .. } => return Ok(()),
            RebuildLock::Acquired(lock) => return rebuild(state, event, map, &lock).await,
            RebuildLock::Busy if started.elapsed() < patience => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            RebuildLock::Busy => return Err(InventoryError::EventLost.into()),
        }
    }
}

async fn rebuild(state: &AppState, event: EventId, map: Arc<SeatMap>, lock: &str) -> Result<(), StartError> {
    // Attempts before tickets: an order committing in between is then seen as sold (its
    // pin skipped), never as neither.
    let pins: Vec<RestoredPin> = state
        .store
        .open_attempts(u64::MAX, OPEN_ATTEMPTS_SCANNED)
        .await?
        .into_iter()
        .filter(|a| a.event == event && a.order.is_none())
        .map(|a| RestoredPin {
            hold: a.hold,
            user: a.user,
            seats: a.seats,
            attempt: a.id,
            deadline_ms: a.pin_deadline,
        })
        .collect();
    let sold: Vec<SoldSeat> = state
        .store
        .sold_seats(event)
        .await?
        .into_iter()
        .map(|s| SoldSeat { seat_index: s.seat_index, user: s.user })
        .collect();
    let previous = state.store.meta_get(&epoch_key(event)).await?.and_then(|e| e.trim().parse::<u64>().ok());
    let epoch = crate::workers::now_ms().max(previous.map_or(0, |e| e + 1));
    state.store.meta_set(&epoch_key(event), &epoch.to_string()).await?;
    if previous.is_some() {
        state.store.meta_set(&lost_key(event), &epoch.to_string()).await?;
    }
    // The audit writer reads the history by version: the new one continues after what it
    // has written.
    let version = state
        .store
        .meta_get(&format!("audit.cursor.{event}"))
        .await?
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let (sold_seats, pinned) = (sold.len(), pins.len());
    let truth = EventTruth { epoch, version, sold, pins };
    let initialized = state.inventory.finish_rebuild(event, map, lock, truth).await?;
    if initialized {
        // Orders that committed after the tickets were read above: their seats are SOLD
        // now rather than at the next anti-entropy pass.
        let late: Vec<SoldSeat> = state
            .store
            .sold_seats(event)
            .await?
            .into_iter()
            .map(|s| SoldSeat { seat_index: s.seat_index, user: s.user })
            .collect();
        let marked = state.inventory.mark_sold(event, late).await?;
        if !marked.is_empty() {
            tracing::warn!(%event, seats = marked.len(), "seats sold during the rebuild marked sold");
        }
    }
    if initialized && previous.is_some() {
        metrics::counter!("boxoffice_inventory_rebuilds_total").increment(1);
        tracing::warn!(%event, epoch, sold_seats, pinned, "event rebuilt from the order store after the inventory lost it");
        if state.config.writes_audit() {
            // Holds the history shows live that were lost get their SEAT_RELEASED.
            let now = crate::workers::now_ms();
            if let Err(e) = state.audit.settle_after_restart(event, now).await {
                tracing::warn!(%event, error = %e, "cannot close the audit history of lost holds");
            }
        }
    }
    Ok(())
}

/// The worker step: rebuilds the events this node found lost (or finds them rebuilt).
pub async fn step(state: AppState) -> Result<(), String> {
    for event in state.inventory.lost_events() {
        match ensure_event(&state, event, Duration::ZERO).await {
            Ok(()) | Err(StartError::Inventory(InventoryError::EventLost)) => {}
            Err(e) => return Err(format!("rebuild of {event}: {e}")),
        }
    }
    Ok(())
}
