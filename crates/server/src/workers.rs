//! Background workers, each a loop of `try_execute_task` steps until shutdown: the hold
//! expiry sweeper, the reconciler (checkouts and payments left open by a crash or a hang;
//! refunds the gateway has not confirmed; anti-entropy between engine and store), the
//! outbox relay, the ticket worker (mail) and the purge of old idempotency keys and outbox rows.
//!
//! The reconciler's step functions are public so that start-up and tests drive them
//! directly: [`reconcile`] and [`anti_entropy`].

use std::collections::BTreeMap;
use std::time::Duration;

use boxoffice_core::{HoldStatus, OrderId};
use boxoffice_engine::{InventoryError, SoldSeat};
use boxoffice_store::{AttemptState, PaymentAttempt, StoreError, TOPIC_ORDER_CREATED};
use tokio::sync::watch;

use crate::AppState;
use crate::checkout::{capture, set_state};
use crate::payments::{Authorization, LedgerState};
use crate::stream::StreamMessage;

/// How often expired holds are swept (operations also expire holds lazily).
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// How often checkouts past their pin deadline are reconciled with the order store.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(5);
/// How often the engine's sold seats are compared with the store's valid tickets.
pub const ANTI_ENTROPY_INTERVAL: Duration = Duration::from_secs(60);
/// How often old idempotency keys and outbox rows are purged.
pub const KEY_PURGE_INTERVAL: Duration = Duration::from_secs(3600);
/// How long idempotency keys are kept.
pub const KEY_RETENTION_MS: u64 = 24 * 3600 * 1000;
/// How long sent outbox rows are kept (for re-driving a stream) once every consumer has them.
pub const OUTBOX_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;
/// Open payment attempts (and pending refunds) settled per reconciler pass.
pub const RECONCILE_BATCH: u32 = 500;
/// How often the outbox is polled when nothing wakes the relay.
pub const RELAY_INTERVAL: Duration = Duration::from_millis(250);
/// Outbox rows published per relay step.
pub const RELAY_BATCH: u32 = 500;
/// Stream messages the ticket worker takes at once.
pub const TICKET_BATCH: usize = 256;
/// Where the ticket worker keeps the outbox sequence number of the last message it handled.
pub const TICKET_WORKER_POSITION_KEY: &str = "stream.ticket-worker.outbox-seq";
/// The ticket worker's durable consumer on the stream, shared by every server on it.
pub const TICKET_WORKER_CONSUMER: &str = "ticket-worker";

pub fn now_ms() -> u64 {
    boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock)
}

pub fn spawn_all(state: AppState, stop: watch::Receiver<bool>) {
    spawn_loop("expiry sweeper", SWEEP_INTERVAL, stop.clone(), state.clone(), sweep_expired);
    spawn_loop("reconciler", RECONCILE_INTERVAL, stop.clone(), state.clone(), |state| async move {
        reconcile(&state, ReconcileMode::Periodic).await.map(|_| ())
    });
    spawn_loop(
        "inventory rebuild",
        crate::rebuild::REBUILD_INTERVAL,
        stop.clone(),
        state.clone(),
        crate::rebuild::step,
    );
    spawn_loop("anti-entropy", ANTI_ENTROPY_INTERVAL, stop.clone(), state.clone(), |state| async move {
        anti_entropy(&state).await.map(|_| ())
    });
    if state.config.writes_audit() {
        spawn_loop(
            "audit writer",
            crate::audit::DRAIN_INTERVAL,
            stop.clone(),
            state.clone(),
            |state| async move { state.audit.drain_all().await.map(|_| ()) },
        );
    }
    spawn_loop("key purge", KEY_PURGE_INTERVAL, stop.clone(), state.clone(), purge_keys);
    if state.config.writes_audit() {
        // One matcher per deployment (see `waitlist`): the node that writes the audit history.
        spawn_loop(
            "waitlist matcher",
            crate::waitlist::MATCH_INTERVAL,
            stop.clone(),
            state.clone(),
            crate::waitlist::step,
        );
    }
    spawn_loop(
        "queue admission",
        crate::waiting_room::TICK,
        stop.clone(),
        state.clone(),
        crate::waiting_room::drain_step,
    );
    spawn_loop(
        "rate limit purge",
        crate::http::guard::PURGE_INTERVAL,
        stop.clone(),
        state.clone(),
        crate::http::guard::purge_step,
    );
    tokio::spawn(crate::cancellation::run(state.clone(), stop.clone()));
    tokio::spawn(relay_loop(state.clone(), stop.clone()));
    tokio::spawn(crate::webhooks::run(state.clone(), stop.clone()));
    tokio::spawn(ticket_worker_loop(state, stop));
}

fn spawn_loop<F, Fut>(
    name: &'static str,
    every: Duration,
    mut stop: watch::Receiver<bool>,
    state: AppState,
    step: F,
) where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = step(state.clone()).await {
                tracing::warn!(worker = name, error = %e, "worker step failed; retrying next tick");
            }
        }
    });
}

async fn sweep_expired(state: AppState) -> Result<(), String> {
    state.inventory.expire_due().await.map(|_| ()).map_err(|e| e.to_string())
}

// --- reconciler ---

/// When the reconciler runs: at start-up every open attempt belongs to a checkout that
/// died with the previous process (pins are not journaled, so its hold came back `held`);
/// later only attempts past their pin deadline are ownerless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileMode {
    StartUp,
    Periodic,
}

/// What one pass fixed, by action (the `action` label of `boxoffice_reconciled_total`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled(pub BTreeMap<&'static str, u64>);

impl Reconciled {
    pub fn count(&self, action: &str) -> u64 {
        self.0.get(action).copied().unwrap_or(0)
    }

    fn fixed(&mut self, action: &'static str, what: &dyn std::fmt::Display) {
        tracing::warn!(action, %what, "reconciler fixed a checkout left open");
        metrics::counter!("boxoffice_reconciled_total", "action" => action).increment(1);
        *self.0.entry(action).or_default() += 1;
    }
}

/// One reconciliation pass:
/// - each pin past its deadline: an order for it -> confirm (SOLD); else settle its
///   payment at the gateway, unpin and release the hold;
/// - each open payment attempt (past its deadline, or any at start-up): an order -> make
///   sure the seats are SOLD and capture; no order -> void (or refund what was captured),
///   then release the hold;
/// - each refund the gateway has not confirmed: send it again under its key.
pub async fn reconcile(state: &AppState, mode: ReconcileMode) -> Result<Reconciled, String> {
    let mut done = Reconciled::default();
    let now = now_ms();
    for pin in state.inventory.stale_pins().await.map_err(|e| e.to_string())? {
        let attempt = match state.store.attempt(&pin.attempt).await {
            Ok(attempt) => Some(attempt),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.to_string()),
        };
        let ordered = match attempt.as_ref().and_then(|a| a.order.clone()) {
            Some(order) => Some(order),
            None => state.store.order_for_hold(&pin.hold).await.map_err(|e| e.to_string())?.map(|o| o.id),
        };
        if ordered.is_some() {
            if state.inventory.confirm(pin.hold, &pin.attempt).await.is_ok() {
                done.fixed("confirmed", &pin.hold);
            }
            continue;
        }
        if let Some(attempt) = attempt.as_ref().filter(|a| a.state.is_open()) {
            match settle_unpaid(state, attempt, &mut done).await {
                Ok(Settled::NoOrder) => {}
                Ok(Settled::OrderWon) => {
                    // The checkout committed its order just in time: the sale stands.
                    if state.inventory.confirm(pin.hold, &pin.attempt).await.is_ok() {
                        done.fixed("confirmed", &pin.hold);
                    }
                    continue;
                }
                Err(e) => {
                    // Keep the pin: the gateway must answer before the seats go back.
                    tracing::warn!(hold = %pin.hold, attempt = %pin.attempt, error = %e, "cannot settle a stale checkout yet");
                    continue;
                }
            }
        } else if attempt.is_none() {
            // A pin without an attempt on record never reached the gateway; burn the key.
            state.gateway.void(&pin.attempt).await.map_err(|e| e.to_string())?;
        }
        if state.inventory.unpin(pin.hold, &pin.attempt).await.is_ok() {
            done.fixed("unpinned", &pin.hold);
            release(state, pin.hold, &mut done).await;
        }
    }

    let deadline_before = match mode {
        ReconcileMode::StartUp => u64::MAX,
        ReconcileMode::Periodic => now,
    };
    let open =
        state.store.open_attempts(deadline_before, RECONCILE_BATCH).await.map_err(|e| e.to_string())?;
    for attempt in open {
        let result = match &attempt.order {
            Some(order) => complete_paid(state, &attempt, order, &mut done).await,
            None => match settle_unpaid(state, &attempt, &mut done).await {
                Ok(Settled::NoOrder) => {
                    release_after_settling(state, &attempt, mode, &mut done).await;
                    Ok(())
                }
                // Committed meanwhile: the next pass completes it as paid.
                Ok(Settled::OrderWon) => Ok(()),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            tracing::warn!(attempt = %attempt.id, error = %e, "cannot reconcile a payment attempt yet");
        }
    }

    for refund in state.store.pending_refunds(RECONCILE_BATCH).await.map_err(|e| e.to_string())? {
        // Only refunds the request path gave up on (or that a crash interrupted).
        if mode == ReconcileMode::Periodic
            && now.saturating_sub(refund.created_at) < crate::refunds::REFUND_TIMEOUT.as_millis() as u64
        {
            continue;
        }
        match crate::refunds::send(state, &refund).await {
            Ok(()) => done.fixed("refund_sent", &refund.id),
            Err(e) => tracing::warn!(refund = %refund.id, error = %e, "gateway refund still failing"),
        }
    }
    Ok(done)
}

/// An attempt whose order committed: the seats must be SOLD and the payment captured.
async fn complete_paid(
    state: &AppState,
    attempt: &PaymentAttempt,
    order: &OrderId,
    done: &mut Reconciled,
) -> Result<(), String> {
    // Otherwise already sold, or (after a restart) the seats came back SOLD from the store
    // and the hold is gone: nothing to do in the engine.
    if state.inventory.confirm(attempt.hold, &attempt.id).await.is_ok() {
        done.fixed("confirmed", order);
    }
    if attempt.state == AttemptState::Authorized {
        let authorization =
            Authorization { id: attempt.authorization_id.clone().unwrap_or(attempt.gateway_key.clone()) };
        if capture(state, &attempt.id, &authorization).await {
            done.fixed("captured", order);
        } else {
            return Err("capture failed".into());
        }
    }
    Ok(())
}

/// How [`settle_unpaid`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// No order can commit for the attempt any more; its payment is given back.
    NoOrder,
    /// The attempt's order committed first: it is paid, not to be undone.
    OrderWon,
}

/// An attempt without an order: whatever the gateway holds is given back, by its key.
///
/// The attempt is closed in the store *before* the gateway hears of it: the order
/// transaction commits only on an `authorized` attempt, and the close refuses an attempt
/// with an order, both under the attempt's lock. So either the close wins and no order can
/// follow, or the order won and this pass must not void its payment nor free its seats.
async fn settle_unpaid(
    state: &AppState,
    attempt: &PaymentAttempt,
    done: &mut Reconciled,
) -> Result<Settled, String> {
    let key = &attempt.gateway_key;
    let ledger = state.gateway.retrieve(key).await.map_err(|e| e.to_string())?;
    let (to, action) = match ledger {
        Some(LedgerState::Declined) => (AttemptState::Declined, "declined"),
        Some(LedgerState::Captured | LedgerState::Refunded) => (AttemptState::Refunded, "refunded"),
        // Authorized, pending, voided, or never seen (then the void burns the key, so that
        // an authorization still on its way is refused).
        Some(LedgerState::Authorized | LedgerState::Pending | LedgerState::Voided) | None => {
            (AttemptState::Voided, "voided")
        }
    };
    if !set_state(state, &attempt.id, &AttemptState::OPEN, to, None).await {
        let current = state.store.attempt(&attempt.id).await.map_err(|e| e.to_string())?;
        if current.order.is_some() {
            return Ok(Settled::OrderWon);
        }
        if current.state.is_open() {
            return Err("the attempt could not be closed; retrying".into());
        }
        // Closed by another pass or node: give back the payment again (idempotent by key).
    }
    match ledger {
        Some(LedgerState::Captured) => {
            state
                .gateway
                .refund(&format!("refund:{}", attempt.id), key, attempt.amount)
                .await
                .map_err(|e| e.to_string())?;
        }
        Some(LedgerState::Authorized | LedgerState::Pending | LedgerState::Voided) | None => {
            if let Err(e) = state.gateway.void(key).await {
                // The attempt is closed, so no order will use the authorization; it lapses
                // at the gateway if this void never gets through.
                metrics::counter!("boxoffice_reconciled_total", "action" => "void_failed").increment(1);
                tracing::error!(attempt = %attempt.id, error = %e, "void after closing the attempt failed");
            }
        }
        Some(LedgerState::Declined | LedgerState::Refunded) => {}
    }
    done.fixed(action, &attempt.id);
    Ok(Settled::NoOrder)
}

/// Frees the seats of a settled attempt's hold. At start-up the hold came back `held`
/// from the journal (pins are not journaled) and nobody else can have touched it yet;
/// later only a hold still pinned by this attempt is its to free.
async fn release_after_settling(
    state: &AppState,
    attempt: &PaymentAttempt,
    mode: ReconcileMode,
    done: &mut Reconciled,
) {
    match mode {
        ReconcileMode::StartUp => {
            if let Ok(view) = state.inventory.hold_view(attempt.hold).await
                && view.status == HoldStatus::Held
            {
                release(state, attempt.hold, done).await;
            }
        }
        ReconcileMode::Periodic => {
            if state.inventory.unpin(attempt.hold, &attempt.id).await.is_ok() {
                done.fixed("unpinned", &attempt.hold);
                release(state, attempt.hold, done).await;
            }
        }
    }
}

async fn release(state: &AppState, hold: boxoffice_core::HoldId, done: &mut Reconciled) {
    match state.inventory.release(hold).await {
        Ok(_) => done.fixed("released", &hold),
        // It expired when unpinned, or its buyer released it: its seats are free.
        Err(InventoryError::HoldExpired | InventoryError::HoldReleased) => {}
        Err(e) => tracing::warn!(%hold, error = %e, "cannot release a reconciled hold"),
    }
}

/// What anti-entropy repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AntiEntropy {
    /// Seats with a valid ticket that were AVAILABLE in the engine, now SOLD again.
    pub resold: u64,
    /// Seats SOLD in the engine without a valid ticket (a refund cut short), now released.
    pub released: u64,
}

/// SOLD seats in the engine must equal valid tickets in the store. The engine is read
/// first: a sale commits in the store before the engine hears of it, so a seat SOLD in
/// the engine and then missing from the store was refunded in between (release it), and
/// a seat the store sells that the engine has AVAILABLE lost its confirm (sell it). Seats
/// the engine has HELD are checkouts in flight: the pin reconciler owns them.
pub async fn anti_entropy(state: &AppState) -> Result<AntiEntropy, String> {
    let mut report = AntiEntropy::default();
    for event in state.store.all_event_ids().await.map_err(|e| e.to_string())? {
        let engine_sold = match state.inventory.sold_seats(event).await {
            Ok(seats) => seats,
            // A lost event is rebuilt from the store: nothing to compare until then.
            Err(InventoryError::UnknownEvent | InventoryError::EventLost) => continue,
            Err(e) => return Err(e.to_string()),
        };
        let store_sold = state.store.sold_seats(event).await.map_err(|e| e.to_string())?;
        let valid: std::collections::HashSet<u32> = store_sold.iter().map(|s| s.seat_index).collect();
        let extra: Vec<u32> = engine_sold.iter().copied().filter(|s| !valid.contains(s)).collect();
        if !extra.is_empty() {
            let released = state
                .inventory
                .release_sold(event, &extra, boxoffice_engine::ReleaseReason::Refund)
                .await
                .map_err(|e| e.to_string())?;
            for seat in &released {
                tracing::warn!(%event, seat, "seat SOLD without a valid ticket; released");
            }
            metrics::counter!("boxoffice_reconciled_total", "action" => "released_sold")
                .increment(released.len() as u64);
            report.released += released.len() as u64;
        }
        let engine_set: std::collections::HashSet<u32> = engine_sold.into_iter().collect();
        let missing: Vec<_> =
            store_sold.into_iter().filter(|s| !engine_set.contains(&s.seat_index)).collect();
        if !missing.is_empty() {
            let bitmap = state.inventory.availability(event).await.map_err(|e| e.to_string())?.bitmap;
            let available =
                |seat: u32| bitmap.get((seat / 8) as usize).is_some_and(|b| b & (1 << (seat % 8)) != 0);
            let missing: Vec<SoldSeat> = missing
                .into_iter()
                .filter(|s| available(s.seat_index))
                .map(|s| SoldSeat { seat_index: s.seat_index, user: s.user })
                .collect();
            if !missing.is_empty() {
                let resold = state.inventory.mark_sold(event, missing).await.map_err(|e| e.to_string())?;
                for seat in &resold {
                    tracing::warn!(%event, seat, "seat with a valid ticket was available in the engine; sold again");
                }
                metrics::counter!("boxoffice_reconciled_total", "action" => "resold")
                    .increment(resold.len() as u64);
                report.resold += resold.len() as u64;
            }
        }
    }
    Ok(report)
}

// --- outbox relay and ticket worker ---

/// At start-up, with a stream that forgets on restart: the rows published after the
/// ticket worker's last handled one are published again.
pub async fn redrive_stream(state: &AppState) -> Result<u64, String> {
    if state.stream.durable() {
        return Ok(0);
    }
    let position = ticket_worker_position(state).await?;
    let requeued = state.store.outbox_requeue_after(position).await.map_err(|e| e.to_string())?;
    if requeued > 0 {
        tracing::info!(
            requeued,
            after = position,
            "outbox rows published again to the in-process ticket stream"
        );
    }
    Ok(requeued)
}

async fn ticket_worker_position(state: &AppState) -> Result<u64, String> {
    let stored = state.store.meta_get(TICKET_WORKER_POSITION_KEY).await.map_err(|e| e.to_string())?;
    Ok(stored.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Publishes unsent outbox rows in order and marks them sent; returns how many.
pub async fn relay_outbox(state: &AppState) -> Result<usize, String> {
    let rows = state.store.outbox_pending(RELAY_BATCH).await.map_err(|e| e.to_string())?;
    let mut published = None;
    let mut failure = None;
    for row in &rows {
        match state.stream.publish(crate::stream::from_outbox(row.clone())).await {
            Ok(_) => published = Some(row.seq),
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    if let Some(seq) = published {
        state.store.outbox_mark_sent(seq, now_ms()).await.map_err(|e| e.to_string())?;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(rows.len()),
    }
}

async fn relay_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = state.outbox_wake.notified() => {}
            _ = tokio::time::sleep(RELAY_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        loop {
            match relay_outbox(&state).await {
                Ok(n) if n == RELAY_BATCH as usize => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay step failed; retrying");
                    break;
                }
            }
        }
    }
}

async fn ticket_worker_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    // One durable consumer for every server on the stream: each message goes to one of
    // them, and comes again when it is not acknowledged in time.
    let mut subscription = loop {
        match state.stream.subscribe(TICKET_WORKER_CONSUMER).await {
            Ok(subscription) => break subscription,
            Err(e) => tracing::warn!(error = %e, "cannot join the ticket stream's consumer; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    };
    loop {
        let batch = tokio::select! {
            batch = subscription.next_batch(TICKET_BATCH, Duration::from_secs(1)) => batch,
            _ = stop.changed() => return,
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "ticket stream read failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for (n, delivery) in batch.iter().enumerate() {
            let message = &delivery.message;
            // At least once: a message is retried until it is handled.
            while let Err(e) = deliver_tickets(&state, message).await {
                tracing::warn!(order = %message.key, error = %e, "ticket delivery failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
            }
            if n + 1 < batch.len() {
                crate::fault::hit("ticket_worker.mid_batch");
            }
            if let Err(e) = subscription.ack(delivery).await {
                tracing::warn!(order = %message.key, error = %e, "ticket stream ack failed; it comes again");
            }
        }
        if let Some(last) = batch.iter().map(|d| d.message.id).max()
            && let Err(e) = state.store.meta_set(TICKET_WORKER_POSITION_KEY, &last.to_string()).await
        {
            tracing::warn!(error = %e, "cannot save the ticket worker's position");
        }
    }
}

/// Handles one stream message: for `order.created`, writes the order's ticket mail once.
/// Returns whether a mail was written (false: not ticket mail, no address, or already
/// written: a redelivery).
pub async fn deliver_tickets(state: &AppState, message: &StreamMessage) -> Result<bool, String> {
    if message.topic != TOPIC_ORDER_CREATED {
        return Ok(false);
    }
    let order_id = OrderId::parse(&message.key).map_err(|_| format!("bad order id {:?}", message.key))?;
    let dir = state.config.data_dir.join(crate::mail::MAIL_DIR);
    if crate::mail::mail_path(&dir, &order_id).exists() {
        metrics::counter!("boxoffice_ticket_mails_total", "result" => "duplicate").increment(1);
        return Ok(false);
    }
    let mut order = state.store.order(&order_id).await.map_err(|e| e.to_string())?;
    // Tickets reissued to another user by a transfer are theirs, not the buyer's to mail.
    let buyer = order.user.clone();
    order.tickets.retain(|t| t.user == buyer);
    let entry = state.catalog.event(state.store.as_ref(), order.event).await.map_err(|e| e.message)?;
    let event = crate::mail::EventInfo {
        name: entry.event.name.clone(),
        starts_at: crate::http::dto::rfc3339(entry.event.starts_at),
        venue: format!("{}, {}", entry.event.venue.name, entry.event.venue.city),
    };
    let Some(message_bytes) = crate::mail::render(&order, &event, crate::tickets::qr_png)? else {
        metrics::counter!("boxoffice_ticket_mails_total", "result" => "no_address").increment(1);
        return Ok(false);
    };
    let written =
        tokio::task::spawn_blocking(move || crate::mail::write_once(&dir, &order_id, &message_bytes))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot write the mail: {e}"))?;
    if written {
        metrics::counter!("boxoffice_ticket_mails_total", "result" => "written").increment(1);
        let lag_ms = now_ms().saturating_sub(message.created_at);
        metrics::histogram!("boxoffice_ticket_delivery_seconds").record(lag_ms as f64 / 1000.0);
    }
    Ok(written)
}

async fn purge_keys(state: AppState) -> Result<(), String> {
    let now = boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock);
    let purged =
        state.store.purge_keys(now.saturating_sub(KEY_RETENTION_MS)).await.map_err(|e| e.to_string())?;
    if purged > 0 {
        tracing::info!(purged, "old idempotency keys purged");
    }
    // Handled = read by every consumer: the ticket worker and the webhook dispatcher.
    let handled = ticket_worker_position(&state).await?.min(crate::webhooks::position(&state).await?);
    let purged = state
        .store
        .outbox_purge(now.saturating_sub(OUTBOX_RETENTION_MS), handled)
        .await
        .map_err(|e| e.to_string())?;
    if purged > 0 {
        tracing::info!(purged, "old outbox rows purged");
    }
    Ok(())
}
