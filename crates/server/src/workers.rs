//! Background workers, each a loop of `try_execute_task` steps until shutdown: the hold
//! expiry sweeper, the stale-pin reconciler and the idempotency-key purge.

use std::time::Duration;

use tokio::sync::watch;

use crate::AppState;

/// How often expired holds are swept (operations also expire holds lazily).
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// How often pins past their deadline are reconciled with the order store.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(5);
/// How often old idempotency keys are purged.
pub const KEY_PURGE_INTERVAL: Duration = Duration::from_secs(3600);
/// How long idempotency keys are kept.
pub const KEY_RETENTION_MS: u64 = 24 * 3600 * 1000;

pub fn spawn_all(state: AppState, stop: watch::Receiver<bool>) {
    spawn_loop("expiry sweeper", SWEEP_INTERVAL, stop.clone(), state.clone(), sweep_expired);
    spawn_loop("pin reconciler", RECONCILE_INTERVAL, stop.clone(), state.clone(), reconcile_pins);
    spawn_loop("key purge", KEY_PURGE_INTERVAL, stop, state, purge_keys);
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

/// A pin past its deadline belongs to a checkout that died or hung. The order store
/// decides: an order for the hold means sold, otherwise the authorization is voided and
/// the hold returned to its buyer (it expires if its time is up).
async fn reconcile_pins(state: AppState) -> Result<(), String> {
    for pin in state.inventory.stale_pins().await.map_err(|e| e.to_string())? {
        let order = state.store.order_for_hold(&pin.hold).await.map_err(|e| e.to_string())?;
        let fixed = if order.is_some() {
            state.inventory.confirm(pin.hold, &pin.attempt).await.map(|_| "confirmed")
        } else {
            state.gateway.void(&pin.attempt).await.map_err(|e| e.to_string())?;
            state.inventory.unpin(pin.hold, &pin.attempt).await.map(|_| "unpinned")
        };
        match fixed {
            Ok(action) => {
                tracing::warn!(hold = %pin.hold, action, "reconciled a stale checkout pin");
                metrics::counter!("boxoffice_reconciled_total", "action" => action).increment(1);
            }
            Err(e) => tracing::warn!(hold = %pin.hold, error = %e, "could not reconcile a pin"),
        }
    }
    Ok(())
}

async fn purge_keys(state: AppState) -> Result<(), String> {
    let now = boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock);
    let purged =
        state.store.purge_keys(now.saturating_sub(KEY_RETENTION_MS)).await.map_err(|e| e.to_string())?;
    if purged > 0 {
        tracing::info!(purged, "old idempotency keys purged");
    }
    Ok(())
}
