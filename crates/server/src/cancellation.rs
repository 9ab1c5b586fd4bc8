//! Cancelling an event: `PATCH /v1/events/{id}` with `"status":"cancelled"` answers `202`
//! and this job refunds every order of the event that still has valid tickets, through the
//! same flow as `POST /v1/orders/{id}/refund` (tickets voided, seats released with the
//! reason `cancel`, money returned through the gateway under the order's refund key).
//!
//! The job keeps no state of its own: its work list is the store's orders with valid
//! tickets of cancelled events, so it resumes after a restart where it stopped, and a
//! refund it repeats is a no-op. It is rate-limited (`--cancel-refunds-per-second`) so that
//! cancelling a stadium does not starve checkouts of other events. No order commits for a
//! cancelled event (the order transaction checks), and holds are refused.

use std::time::Duration;

use boxoffice_engine::ReleaseReason;
use tokio::sync::watch;

use crate::AppState;
use crate::auth::Caller;

/// How often the job looks for work when nothing wakes it.
pub const IDLE_INTERVAL: Duration = Duration::from_secs(5);

/// Runs until `stop`: refunds up to the configured number of orders each second.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        let refunded = match refund_batch(&state).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cancellation refunds failed; retrying");
                0
            }
        };
        let wait = if refunded > 0 { Duration::from_secs(1) } else { IDLE_INTERVAL };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.cancellation_wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Refunds one second's worth of orders of cancelled events; returns how many.
pub async fn refund_batch(state: &AppState) -> Result<usize, String> {
    let limit = state.config.cancel_refunds_per_second;
    let due = state.store.cancellation_refunds_due(limit).await.map_err(|e| e.to_string())?;
    let caller = Caller::system();
    let mut refunded = 0;
    for (event, order) in due {
        match crate::refunds::refund(state, &caller, &order, None, ReleaseReason::Cancel).await {
            Ok(_) => {
                refunded += 1;
                metrics::counter!("boxoffice_cancellation_refunds_total").increment(1);
                tracing::info!(%event, %order, "order of a cancelled event refunded");
            }
            Err(e) => {
                tracing::warn!(%event, %order, error = ?e, "refund of a cancelled event's order failed; retrying later")
            }
        }
    }
    Ok(refunded)
}
