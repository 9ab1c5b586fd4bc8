//! Checkout: a hold becomes an order.
//!
//! 1. pin the hold (HELD -> CONFIRMING, with a deadline), so that it cannot expire or be
//!    released while the payment runs, and a second checkout is refused;
//! 2. authorize the payment (bounded by the gateway timeout);
//! 3. commit order + tickets in one store transaction, before the pin's deadline (the
//!    unique index over valid tickets is the last guard against a double sale);
//! 4. mark the seats SOLD in the inventory (fenced by hold id and attempt), capture.
//!
//! Any failure before the commit voids the authorization and unpins the hold. The whole
//! flow runs in its own task: a client that disconnects never leaves it half done.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use boxoffice_core::{HoldId, HoldStatus, OrderId, TicketId};
use boxoffice_engine::InventoryError;
use boxoffice_store::{NewOrder, NewTicket, StoreError};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::dto::{CheckoutBody, OrderDto, total_of};
use crate::payments::{PaymentError, PaymentRequest};

/// Time after the gateway timeout during which a pinned checkout may still commit.
pub const PIN_GRACE_MS: u64 = 30_000;

fn now_ms() -> u64 {
    boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock)
}

fn already_confirmed(order: &OrderId) -> ApiError {
    ApiError::conflict("ALREADY_CONFIRMED", "this hold is already bought").with("order_id", order.to_string())
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
    let (view, entry) = crate::http::holds::owned_hold(&state, &caller, &hold.to_string()).await?;
    if let Some(order) = state.store.order_for_hold(&hold).await? {
        return Err(already_confirmed(&order.id));
    }
    match view.status {
        HoldStatus::Held => {}
        HoldStatus::Confirming => {
            return Err(ApiError::conflict("CHECKOUT_IN_PROGRESS", "this hold is being checked out"));
        }
        HoldStatus::Expired => return Err(InventoryError::HoldExpired.into()),
        HoldStatus::Released => return Err(InventoryError::HoldReleased.into()),
        HoldStatus::Confirmed => return Err(InventoryError::AlreadyConfirmed.into()),
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
            InventoryError::AlreadyConfirmed => match state.store.order_for_hold(&hold).await? {
                Some(order) => already_confirmed(&order.id),
                None => InventoryError::AlreadyConfirmed.into(),
            },
            other => other.into(),
        });
    }

    let total = total_of(view.seats.iter().map(|&i| entry.price_of(i)), &entry);
    let request =
        PaymentRequest { idempotency_key: attempt.clone(), amount: total, token: body.payment.token.clone() };
    let authorized =
        tokio::time::timeout(Duration::from_millis(timeout_ms), state.gateway.authorize(&request)).await;
    let authorization = match authorized {
        Ok(Ok(authorization)) => authorization,
        Ok(Err(PaymentError::Declined(reason))) => {
            unpin(&state, hold, &attempt).await;
            metrics::counter!("boxoffice_checkouts_total", "result" => "declined").increment(1);
            return Err(ApiError::new(StatusCode::PAYMENT_REQUIRED, "PAYMENT_DECLINED", reason));
        }
        Ok(Err(PaymentError::Unavailable(reason))) => {
            abandon(&state, hold, &attempt).await;
            return Err(ApiError::unavailable("PAYMENTS_UNAVAILABLE", reason).retry_after(5));
        }
        Err(_elapsed) => {
            abandon(&state, hold, &attempt).await;
            metrics::counter!("boxoffice_checkouts_total", "result" => "timeout").increment(1);
            return Err(ApiError::unavailable(
                "PAYMENTS_UNAVAILABLE",
                "the payment gateway did not answer in time; nothing was charged",
            )
            .retry_after(5));
        }
    };

    if now_ms() >= deadline_ms {
        // Past the deadline the reconciler may act on the pin: never commit then.
        abandon(&state, hold, &attempt).await;
        return Err(ApiError::unavailable(
            "PAYMENTS_UNAVAILABLE",
            "the checkout took too long; nothing was charged",
        ));
    }
    let tickets = view
        .seats
        .iter()
        .map(|&i| NewTicket {
            id: TicketId::random(),
            seat_index: i,
            seat_label: entry.map.label(i),
            price: entry.price_of(i),
        })
        .collect();
    let order = NewOrder {
        id: OrderId::random(),
        event: view.event,
        user: view.user.clone(),
        hold,
        email,
        total,
        tickets,
        created_at: now_ms(),
    };
    let order = match state.store.create_order(order).await {
        Ok(order) => order,
        Err(StoreError::HoldAlreadyOrdered(existing)) => {
            // Another completion of this hold won; its order stands.
            abandon(&state, hold, &attempt).await;
            return Err(already_confirmed(&existing));
        }
        Err(StoreError::SeatAlreadySold { seat_index, .. }) => {
            tracing::error!(%hold, seat_index, "order store refused a seat the inventory held: double sale prevented");
            abandon(&state, hold, &attempt).await;
            return Err(ApiError::conflict("SEATS_UNAVAILABLE", "a seat of this hold is already sold")
                .with("seats", vec![entry.map.label(seat_index)]));
        }
        Err(other) => {
            abandon(&state, hold, &attempt).await;
            return Err(other.into());
        }
    };
    if let Err(e) = state.inventory.confirm(hold, &attempt).await {
        // The order is the truth; the reconciler marks the seats sold from it.
        tracing::error!(%hold, error = %e, "order committed but the inventory did not confirm it");
    }
    if let Err(e) = state.gateway.capture(&authorization).await {
        tracing::error!(%hold, error = %e, "capture failed after the order was committed");
    }
    metrics::counter!("boxoffice_confirms_total").increment(1);
    metrics::counter!("boxoffice_checkouts_total", "result" => "confirmed").increment(1);
    let body = serde_json::to_vec(&OrderDto::from(&order)).expect("orders serialize");
    Ok((StatusCode::CREATED, body))
}

async fn unpin(state: &AppState, hold: HoldId, attempt: &str) {
    if let Err(e) = state.inventory.unpin(hold, attempt).await {
        tracing::warn!(%hold, error = %e, "unpin failed");
    }
}

/// Voids whatever the gateway may have authorized and returns the hold to its buyer.
async fn abandon(state: &AppState, hold: HoldId, attempt: &str) {
    if let Err(e) = state.gateway.void(attempt).await {
        tracing::warn!(%hold, error = %e, "void failed; the reconciler will retry");
    }
    unpin(state, hold, attempt).await;
}
