//! `GET /v1/events/{id}/stats` (admin): the numbers of the box office's live dashboard.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{Path, State};
use boxoffice_core::{EventId, Money};
use parking_lot::Mutex;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::http::dto::{ErrorBody, MoneyDto};
use crate::http::events::parse_event_id;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(event_stats))
}

#[derive(Serialize, ToSchema)]
pub struct SeatCountsDto {
    pub available: u32,
    pub held: u32,
    pub sold: u32,
}

#[derive(Serialize, ToSchema)]
pub struct StatsDto {
    pub seats: SeatCountsDto,
    /// Holds made per second on this server, over the time since the previous stats read
    /// (at least one second back).
    pub holds_per_second: f64,
    pub queue_length: u64,
    pub revenue: MoneyDto,
}

/// The previous reading of each event's hold counter: `(when, holds made)`.
static SAMPLES: Mutex<Option<HashMap<EventId, (Instant, u64)>>> = Mutex::new(None);
/// A stats read less than this after the previous one reuses the previous window.
const MIN_WINDOW_SECONDS: f64 = 1.0;

fn holds_per_second(event: EventId, holds_made: u64) -> f64 {
    let now = Instant::now();
    let mut samples = SAMPLES.lock();
    let samples = samples.get_or_insert_with(HashMap::new);
    match samples.get(&event).copied() {
        Some((at, count)) => {
            let seconds = now.duration_since(at).as_secs_f64();
            // The counter restarts when the event's cache entry is reloaded.
            let made = holds_made.saturating_sub(count);
            if seconds >= MIN_WINDOW_SECONDS || holds_made < count {
                samples.insert(event, (now, holds_made));
            }
            if seconds > 0.0 { made as f64 / seconds } else { 0.0 }
        }
        None => {
            samples.insert(event, (now, holds_made));
            0.0
        }
    }
}

/// Seats by state, holds per second, waiting-room length and revenue of one event.
#[utoipa::path(get, path = "/v1/events/{event_id}/stats", tag = "admin", params(("event_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = StatsDto), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn event_stats(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(event_id): Path<String>,
) -> Result<axum::Json<StatsDto>, ApiError> {
    let event = parse_event_id(&event_id)?;
    let entry = state.catalog.event(state.store.as_ref(), event).await?;
    let counts = state.inventory.seat_counts(event).await?;
    let revenue = state.store.revenue_minor_units(event).await?;
    let currency = entry.tier_prices[0].currency;
    Ok(axum::Json(StatsDto {
        seats: SeatCountsDto { available: counts.available, held: counts.held, sold: counts.sold },
        holds_per_second: holds_per_second(event, entry.holds_made.load(Ordering::Relaxed)),
        queue_length: state.waiting_room.length(event).await,
        revenue: Money::new(revenue, currency).into(),
    }))
}
