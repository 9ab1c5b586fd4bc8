//! Checkout: a hold becomes an order.
//!
//! 1. pin the hold (HELD -> CONFIRMING, with a deadline), so that it cannot expire or be
//!    released while the payment runs, and a second checkout is refused;
//! 2. commit a payment attempt (`initiated`) before the gateway hears of it: whatever
//!    happens next, the reconciler finds the attempt and asks the gateway about it;
//! 3. authorize the payment (bounded by the gateway timeout) and record the answer;
//! 4. commit order + tickets (with their signed QR payloads) + outbox row in one store
//!    transaction, only on an `authorized` attempt before the pin's deadline (the unique
//!    index over valid tickets is the last guard against a double sale);
//! 5. mark the seats SOLD in the inventory (fenced by hold id and attempt), capture.
//!
//! A checkout that knows no order was made for its attempt voids the payment (the gateway
//! first, so that a void that fails leaves the attempt open for the reconciler) and
//! unpins the hold. When it cannot know (the gateway timed out and the void failed too,
//! or the order commit failed in an unknown way), it keeps the pin: after the deadline
//! the reconciler settles the attempt from the store and the gateway's ledger. The whole
//! flow runs in its own task: a client that disconnects never leaves it half done.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use boxoffice_core::{HoldId, HoldStatus, OrderId, TicketId};
use boxoffice_engine::{InventoryError, SoldSeat};
use boxoffice_store::{
    AttemptState, AttemptUpdate, FIRST_TICKET_REVISION, NewOrder, NewPaymentAttempt, NewTicket, StoreError,
};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::dto::{CheckoutBody, OrderDto, total_of};
use crate::payments::{Authorization, PaymentError, PaymentRequest};

/// Time after the gateway timeout during which a pinned checkout may still commit.
pub const PIN_GRACE_MS: u64 = 30_000;

fn now_ms() -> u64 {
    boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock)
}

fn already_confirmed(order: &OrderId) -> ApiError {
    ApiError::conflict("ALREADY_CONFIRMED", "this hold is already bought").with("order_id", order.to_string())
}

/// 409 for a hold another checkout bought, naming its order (committed before the
/// inventory marks a hold confirmed).
async fn confirmed_elsewhere(state: &AppState, hold: HoldId) -> ApiError {
    match state.store.order_for_hold(&hold).await {
        Ok(Some(order)) => already_confirmed(&order.id),
        Ok(None) => InventoryError::AlreadyConfirmed.into(),
        Err(e) => e.into(),
    }
}

fn payments_unavailable(message: &str) -> ApiError {
    ApiError::unavailable("PAYMENTS_UNAVAILABLE", message).retry_after(5)
}

pub async fn checkout(
    state: AppState,
    caller: Arc<Caller>,
    hold: HoldId,
    body: CheckoutBody,
) -> Result<(StatusCode, Vec<u8>), ApiError> {
    if body.payment.method != "card" {
        return Err(ApiError::invalid("payment.method must be \"card\""));
    }
    let email = body.email.or_else(|| caller.email.clone());
    if let Some(email) = &email {
        crate::http::validate_email(email)?;
    }
    // First the order store: a bought hold may be long gone from the inventory (a
    // restart forgets ended holds), and its buyer must still learn of the order.
    if let Some(order) = state.store.order_for_hold(&hold).await? {
        if !caller.may_see(&order.user) {
            return Err(ApiError::not_found("hold"));
        }
        return Err(already_confirmed(&order.id));
    }
    let (view, entry) = match crate::http::holds::owned_hold(&state, &caller, &hold.to_string()).await {
        Ok(found) => found,
        Err(e) => return Err(lost_hold(&state, hold).await.unwrap_or(e)),
    };
    match view.status {
        HoldStatus::Held => {}
        HoldStatus::Confirming => {
            return Err(ApiError::conflict("CHECKOUT_IN_PROGRESS", "this hold is being checked out"));
        }
        HoldStatus::Expired => return Err(InventoryError::HoldExpired.into()),
        HoldStatus::Released => return Err(InventoryError::HoldReleased.into()),
        // Bought by a concurrent checkout since the order look-up above: name its order.
        HoldStatus::Confirmed => return Err(confirmed_elsewhere(&state, hold).await),
    }

    let attempt = format!("pa_{:032x}", rand::random::<u128>());
    let timeout_ms = state.config.payment_timeout * 1000;
    let deadline_ms = now_ms() + timeout_ms + PIN_GRACE_MS;
    if let Err(e) = state.inventory.pin(hold, &attempt, deadline_ms).await {
        return Err(match e {
            InventoryError::HoldConfirming => {
                ApiError::conflict("CHECKOUT_IN_PROGRESS", "this hold is being checked out")
            }
            // Another checkout bought it since the look-up above: name its order.
            InventoryError::AlreadyConfirmed => confirmed_elsewhere(&state, hold).await,
            other => other.into(),
        });
    }
    crate::fault::hit("checkout.after_pin");

    // The hold's SEAT_HELD records come before its PAYMENT_INITIATED in the history.
    // (The audit-writing node writes them now; another node of a distributed deployment
    // waits until the writer has.)
    if let Err(e) = crate::audit::ensure_held_recorded(&state, hold).await {
        unpin(&state, hold, &attempt).await;
        tracing::error!(%hold, error = %e, "audit history not written; checkout refused");
        return Err(ApiError::unavailable(
            "AUDIT_UNAVAILABLE",
            "the audit history cannot be written; retry shortly",
        )
        .retry_after(1));
    }

    // The attempt is durable before the gateway hears of it.
    let total = total_of(view.seats.iter().map(|&i| entry.price_of(i)), &entry);
    let recorded = state
        .store
        .create_attempt(NewPaymentAttempt {
            id: attempt.clone(),
            hold,
            user: view.user.clone(),
            seats: view.seats.clone(),
            amount: total,
            gateway: state.gateway.name().to_owned(),
            gateway_key: attempt.clone(),
            pin_deadline: deadline_ms,
            created_at: now_ms(),
        })
        .await;
    if let Err(e) = recorded {
        unpin(&state, hold, &attempt).await;
        return Err(e.into());
    }
    metrics::counter!("boxoffice_payment_attempts_total").increment(1);
    crate::fault::hit("checkout.after_attempt");

    let request =
        PaymentRequest { idempotency_key: attempt.clone(), amount: total, token: body.payment.token.clone() };
    let authorized =
        tokio::time::timeout(Duration::from_millis(timeout_ms), state.gateway.authorize(&request)).await;
    let authorization = match authorized {
        Ok(Ok(authorization)) => authorization,
        Ok(Err(PaymentError::Declined(reason))) => {
            set_state(&state, &attempt, &[AttemptState::Initiated], AttemptState::Declined, None).await;
            unpin(&state, hold, &attempt).await;
            metrics::counter!("boxoffice_checkouts_total", "result" => "declined").increment(1);
            return Err(ApiError::new(StatusCode::PAYMENT_REQUIRED, "PAYMENT_DECLINED", reason));
        }
        Ok(Err(PaymentError::Pending(payment))) => {
            // The gateway decides later; its webhook completes (or fails) this checkout.
            return crate::http::webhook::hand_over(&state, hold, &attempt, &payment, email.as_deref()).await;
        }
        Ok(Err(PaymentError::Unavailable(reason))) => {
            set_state(&state, &attempt, &[AttemptState::Initiated], AttemptState::Unknown, None).await;
            metrics::counter!("boxoffice_checkouts_total", "result" => "unavailable").increment(1);
            return Err(if abandon(&state, hold, &attempt).await {
                payments_unavailable(&reason)
            } else {
                payments_unavailable(&unsettled(deadline_ms))
            });
        }
        Err(_elapsed) => {
            set_state(&state, &attempt, &[AttemptState::Initiated], AttemptState::Unknown, None).await;
            metrics::counter!("boxoffice_checkouts_total", "result" => "timeout").increment(1);
            return Err(if abandon(&state, hold, &attempt).await {
                payments_unavailable("the payment gateway did not answer in time; nothing was charged")
            } else {
                payments_unavailable(&unsettled(deadline_ms))
            });
        }
    };
    crate::fault::hit("checkout.after_authorize");
    let recorded = set_state(
        &state,
        &attempt,
        &[AttemptState::Initiated],
        AttemptState::Authorized,
        Some(&authorization.id),
    )
    .await;
    if !recorded {
        // Without the authorization on record the order cannot commit (it needs an
        // authorized attempt): give the payment back.
        abandon(&state, hold, &attempt).await;
        return Err(payments_unavailable("the payment could not be recorded; nothing was charged"));
    }
    crate::fault::hit("checkout.after_authorized_recorded");

    let sale = Sale {
        hold,
        event: view.event,
        user: view.user.clone(),
        seats: view.seats.clone(),
        total,
        email,
        attempt,
        deadline_ms,
    };
    let order = commit_order(&state, sale, &entry, &authorization).await?;
    let body = serde_json::to_vec(&OrderDto::from(&order)).expect("orders serialize");
    Ok((StatusCode::CREATED, body))
}

/// An authorized checkout, ready to become an order.
pub(crate) struct Sale {
    pub hold: HoldId,
    pub event: boxoffice_core::EventId,
    pub user: boxoffice_core::UserId,
    pub seats: Vec<u32>,
    pub total: boxoffice_core::Money,
    pub email: Option<String>,
    pub attempt: String,
    pub deadline_ms: u64,
}

/// Commits the order of an authorized attempt (only before its pin's deadline), marks the
/// seats SOLD and captures: the one completion of a checkout, for the response path and
/// the payments webhook alike. When it knows no order was made it gives the payment back;
/// when it cannot know it keeps the pin for the reconciler.
pub(crate) async fn commit_order(
    state: &AppState,
    sale: Sale,
    entry: &crate::catalog::EventEntry,
    authorization: &Authorization,
) -> Result<boxoffice_store::Order, ApiError> {
    let Sale { hold, event, user, seats, total, email, attempt, deadline_ms } = sale;
    if now_ms() >= deadline_ms {
        // Past the deadline the reconciler may act on the pin: never commit then.
        abandon(state, hold, &attempt).await;
        return Err(payments_unavailable("the checkout took too long; nothing was charged"));
    }
    let tickets = seats
        .iter()
        .map(|&i| {
            let id = TicketId::random();
            let qr_payload = state.signer.payload(&id, event, i, FIRST_TICKET_REVISION);
            NewTicket {
                id,
                seat_index: i,
                seat_label: entry.map.label(i),
                price: entry.price_of(i),
                qr_payload: Some(qr_payload),
            }
        })
        .collect();
    let order = NewOrder {
        id: OrderId::random(),
        event,
        user,
        hold,
        payment_attempt: Some(attempt.clone()),
        email,
        total,
        tickets,
        created_at: now_ms(),
    };
    if state.memory.is_none() {
        // The shared inventory may have lost the event: wait out a rebuild (it restores
        // this pin from the attempt on record), but never commit while the event is lost.
        let mut view = state.inventory.hold_view(hold).await;
        let waited = std::time::Instant::now();
        while view == Err(InventoryError::EventLost) && waited.elapsed() < LOST_EVENT_WAIT {
            tokio::time::sleep(Duration::from_millis(100)).await;
            view = state.inventory.hold_view(hold).await;
        }
        match view {
            Ok(_) => {}
            // Lost with the inventory (rebuilt before this attempt was on record): nothing
            // may be sold from it; the payment goes back.
            Err(InventoryError::UnknownHold) => {
                abandon(state, hold, &attempt).await;
                return Err(hold_lost());
            }
            Err(e) => {
                tracing::warn!(%hold, error = %e, "inventory unavailable at the order commit; the reconciler settles");
                return Err(payments_unavailable(&unsettled(deadline_ms)));
            }
        }
    }
    let order = match state.store.create_order(order).await {
        Ok(order) => order,
        Err(StoreError::HoldAlreadyOrdered(existing)) => {
            // Another completion of this hold won; its order stands.
            abandon(state, hold, &attempt).await;
            return Err(already_confirmed(&existing));
        }
        Err(StoreError::SeatAlreadySold { seat_index, .. }) => {
            tracing::error!(%hold, seat_index, "order store refused a seat the inventory held: double sale prevented");
            abandon(state, hold, &attempt).await;
            return Err(ApiError::conflict("SEATS_UNAVAILABLE", "a seat of this hold is already sold")
                .with("seats", vec![entry.map.label(seat_index)]));
        }
        Err(StoreError::EventCancelled(_)) => {
            // Cancelled while the payment ran: nothing is sold, the payment goes back.
            abandon(state, hold, &attempt).await;
            return Err(ApiError::conflict("NOT_ON_SALE", "the event was cancelled; nothing was charged"));
        }
        Err(StoreError::AttemptClosed(_)) => {
            // The deadline passed during the commit, or the reconciler settled the attempt:
            // the payment is (being) voided there.
            unpin(state, hold, &attempt).await;
            return Err(payments_unavailable("the checkout took too long; nothing was charged"));
        }
        Err(other) => {
            // The commit may or may not have happened: keep the pin, and let the
            // reconciler decide from the store after the deadline.
            tracing::error!(%hold, %attempt, error = %other, "order commit failed; the reconciler settles this checkout");
            return Err(payments_unavailable(&unsettled(deadline_ms)));
        }
    };
    crate::fault::hit("checkout.after_commit");
    state.outbox_wake.notify_one();
    if let Err(e) = state.inventory.confirm(hold, &attempt).await {
        // The order is the truth; the reconciler marks the seats sold from it.
        tracing::error!(%hold, error = %e, "order committed but the inventory did not confirm it");
        if matches!(e, InventoryError::UnknownHold | InventoryError::EventLost) {
            // The inventory lost the hold after the check above: the seats are sold now,
            // not at the next anti-entropy pass.
            let sold = seats.iter().map(|&i| SoldSeat { seat_index: i, user: order.user.clone() }).collect();
            if let Err(e) = state.inventory.mark_sold(event, sold).await {
                tracing::warn!(%hold, error = %e, "cannot mark the seats of a lost hold sold; anti-entropy will");
            }
        }
    }
    crate::fault::hit("checkout.after_confirm");
    capture(state, &attempt, authorization).await;
    metrics::counter!("boxoffice_confirms_total").increment(1);
    metrics::counter!("boxoffice_checkouts_total", "result" => "confirmed").increment(1);
    Ok(order)
}

/// How long an order commit waits for the rebuild of an event the inventory lost.
const LOST_EVENT_WAIT: Duration = Duration::from_secs(3);

fn hold_lost() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "HOLD_EXPIRED",
        "the hold was lost when the seat inventory failed; nothing was charged, hold the seats again",
    )
}

/// 410 for a hold the shared inventory no longer knows of on an event it rebuilt after
/// a loss (the hold may have been lost with it); `None` otherwise (404 stands).
async fn lost_hold(state: &AppState, hold: HoldId) -> Option<ApiError> {
    if state.memory.is_some() || state.inventory.hold_view(hold).await != Err(InventoryError::UnknownHold) {
        return None;
    }
    let rebuilt = state.store.meta_get(&crate::rebuild::lost_key(hold.event)).await.ok()??;
    tracing::info!(%hold, epoch = %rebuilt, "checkout of a hold lost with the inventory");
    Some(hold_lost())
}

fn unsettled(deadline_ms: u64) -> String {
    format!(
        "the payment's outcome is not known yet; the seats stay reserved until {} while it is settled, and nothing is kept if no order was made",
        crate::http::dto::rfc3339(deadline_ms)
    )
}

/// Records a state change of an attempt; returns whether it took.
pub(crate) async fn set_state(
    state: &AppState,
    attempt: &str,
    from: &[AttemptState],
    to: AttemptState,
    authorization_id: Option<&str>,
) -> bool {
    let update = AttemptUpdate { id: attempt, from, to, authorization_id, now: now_ms() };
    match state.store.update_attempt(update).await {
        Ok(changed) => changed,
        Err(e) => {
            tracing::warn!(%attempt, error = %e, to = to.as_str(), "cannot record a payment attempt's state");
            false
        }
    }
}

/// Captures an authorized payment whose order committed; a failure is left to the
/// reconciler (the attempt stays `authorized`).
pub(crate) async fn capture(state: &AppState, attempt: &str, authorization: &Authorization) -> bool {
    match state.gateway.capture(authorization).await {
        Ok(()) => set_state(state, attempt, &[AttemptState::Authorized], AttemptState::Captured, None).await,
        Err(e) => {
            tracing::warn!(%attempt, error = %e, "capture failed; the reconciler retries it");
            false
        }
    }
}

async fn unpin(state: &AppState, hold: HoldId, attempt: &str) {
    if let Err(e) = state.inventory.unpin(hold, attempt).await {
        tracing::warn!(%hold, error = %e, "unpin failed");
    }
}

/// For a checkout that made no order: voids the payment at the gateway, records it and
/// returns the hold to its buyer. Returns false (and keeps the pin) when the gateway
/// could not be reached: the reconciler settles the attempt after its deadline.
pub(crate) async fn abandon(state: &AppState, hold: HoldId, attempt: &str) -> bool {
    let timeout = Duration::from_secs(state.config.payment_timeout);
    match tokio::time::timeout(timeout, state.gateway.void(attempt)).await {
        Ok(Ok(())) => {
            set_state(state, attempt, &AttemptState::OPEN, AttemptState::Voided, None).await;
            unpin(state, hold, attempt).await;
            true
        }
        Ok(Err(e)) => {
            tracing::warn!(%hold, %attempt, error = %e, "void failed; the reconciler settles the payment");
            false
        }
        Err(_) => {
            tracing::warn!(%hold, %attempt, "void timed out; the reconciler settles the payment");
            false
        }
    }
}
