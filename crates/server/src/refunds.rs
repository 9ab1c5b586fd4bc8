//! Refunds: `POST /v1/orders/{id}/refund`.
//!
//! The store first: one transaction voids the chosen tickets, sets the order's status and
//! records a pending refund with its gateway key (`refund:{attempt_id}` for an attempt's
//! first refund, `refund:{attempt_id}:{n}` after). Then the gateway refund is sent under
//! that key and the refund marked succeeded; if the gateway fails, the reconciler resends
//! it with the same key, so money is returned exactly once. A repeated request voids
//! nothing more and sends nothing.
//!
//! Seats: once the tickets are voided, their seats go back on sale at once
//! (`Inventory::release_sold`: SOLD -> AVAILABLE, the live map sees them). If the process
//! dies in between, anti-entropy (and the next start-up, which rebuilds the engine from
//! the valid tickets) releases them.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use boxoffice_core::{OrderId, TicketId};
use boxoffice_engine::ReleaseReason;
use boxoffice_store::{Refund, RefundOutcome, RefundRequest, StoreError};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// How long one gateway refund call may take before it is left to the reconciler.
pub const REFUND_TIMEOUT: Duration = Duration::from_secs(10);

fn now_ms() -> u64 {
    boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock)
}

/// Refunds the chosen tickets of an order (all when `tickets` is `None`); owner or admin.
pub async fn refund(
    state: &AppState,
    caller: &Arc<Caller>,
    order: &OrderId,
    tickets: Option<Vec<TicketId>>,
    reason: ReleaseReason,
) -> Result<RefundOutcome, ApiError> {
    let existing = match state.store.order(order).await {
        Err(StoreError::NotFound) => return Err(ApiError::not_found("order")),
        other => other?,
    };
    if !caller.may_see(&existing.user) {
        return Err(ApiError::not_found("order"));
    }
    let request = RefundRequest {
        order: order.clone(),
        tickets,
        allow_scanned: caller.is_admin(),
        refund_id: format!("rf_{:032x}", rand::random::<u128>()),
        now: now_ms(),
    };
    let mut outcome = match state.store.refund_tickets(request).await {
        Ok(outcome) => outcome,
        Err(StoreError::TicketScanned(ticket)) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "TICKET_SCANNED",
                "a scanned ticket can only be refunded by an admin",
            )
            .with("ticket_id", ticket.to_string()));
        }
        Err(StoreError::TicketTransferred(ticket)) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "TICKET_TRANSFERRED",
                "a ticket transferred to another user can only be refunded by an admin",
            )
            .with("ticket_id", ticket.to_string()));
        }
        Err(StoreError::TicketNotInOrder(ticket)) => {
            return Err(ApiError::invalid(format!("ticket {ticket} is not part of this order"))
                .with("ticket_id", ticket.to_string()));
        }
        Err(StoreError::NotFound) => return Err(ApiError::not_found("order")),
        Err(other) => return Err(other.into()),
    };
    if let Some(refund) = &mut outcome.refund {
        let seats = refund.tickets.len() as u64;
        metrics::counter!("boxoffice_refunds_total").increment(1);
        metrics::counter!("boxoffice_refunded_seats_total").increment(seats);
        state.outbox_wake.notify_one();
        let seat_indexes: Vec<u32> = outcome
            .order
            .tickets
            .iter()
            .filter(|t| refund.tickets.contains(&t.id))
            .map(|t| t.seat_index)
            .collect();
        if let Err(e) = state.inventory.release_sold(outcome.order.event, &seat_indexes, reason).await {
            // The tickets are voided: anti-entropy frees the seats on its next pass.
            tracing::warn!(order = %order, error = %e, "refunded seats not released yet");
        }
        match send(state, refund).await {
            Ok(()) => refund.state = boxoffice_store::RefundState::Succeeded,
            Err(e) => {
                tracing::warn!(refund = %refund.id, error = %e, "gateway refund failed; the reconciler retries it")
            }
        }
        tracing::info!(order = %order, refund = %refund.id, seats, "tickets voided and their seats back on sale");
    }
    Ok(outcome)
}

/// Sends a pending refund to the gateway and marks it succeeded.
pub async fn send(state: &AppState, refund: &Refund) -> Result<(), String> {
    if let Some(payment_key) = &refund.payment_key {
        let sent = tokio::time::timeout(
            REFUND_TIMEOUT,
            state.gateway.refund(&refund.gateway_key, payment_key, refund.amount),
        )
        .await
        .map_err(|_| "the gateway did not answer in time".to_owned())?;
        sent.map_err(|e| e.to_string())?;
    }
    // Without a payment attempt (an order from before payments were recorded) there is
    // nothing to return at the gateway.
    state.store.finish_refund(&refund.id, now_ms()).await.map_err(|e| e.to_string())
}
