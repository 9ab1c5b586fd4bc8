//! Holds: `POST /v1/events/{id}/holds` (by labels or best available), `GET` and `DELETE
//! /v1/holds/{id}`. The hot path: verify the token (cached), parse the body, resolve
//! labels against the event's map, one atomic inventory step, answer.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use boxoffice_core::{HoldId, HoldStatus};
use boxoffice_engine::{HoldRequest, InventoryError, Selection};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::catalog::EventEntry;
use crate::error::ApiError;
use crate::extract::JsonWithBytes;
use crate::http::dto::{ErrorBody, HoldBody, HoldDto};
use crate::http::events::parse_event_id;
use crate::http::idempotency;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_hold)).routes(routes!(get_hold, delete_hold))
}

fn now_ms() -> u64 {
    boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock)
}

/// Holds seats for 10 minutes (all or nothing).
///
/// The orphan-seat rule (per event, `orphan_rule`, on by default): a hold is refused with
/// `422 ORPHAN_SEAT` when it would leave an available seat alone in its row, that is with
/// both row neighbours taken (held or sold) once the hold is made. A seat's neighbours
/// are the seats numbered one less and one more in its row; a row end, or a number the
/// row lacks (an aisle or gap), counts as taken. A seat that was already alone before the
/// hold is not the hold's doing and never refuses it; a hold that takes such a seat, or
/// fills a gap exactly, is fine. The answer names the seats that would be left alone:
/// `seat` (the first) and `seats` (all, in seat order). Best available never picks such
/// seats (a run of adjacent seats in one row leaving none or at least two seats of its
/// stretch; failing that, the nearest seats of a section taken whole stretch by stretch),
/// and answers `409 NOT_ENOUGH_SEATS` when it cannot. The check is made atomically with
/// the hold, after `409 SEATS_UNAVAILABLE`.
#[utoipa::path(post, path = "/v1/events/{event_id}/holds", tag = "holds", request_body = HoldBody,
    params(("event_id" = String, Path), ("Idempotency-Key" = Option<String>, Header),
        ("Admission-Token" = Option<String>, Header, description = "required when the event's queue is on")),
    security(("bearer" = [])),
    responses((status = 201, body = HoldDto),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "NOT_ADMITTED: the queue is on and no valid admission token came; NOT_ENTITLED: seats of an allocation without its role or a valid `presale_code` (wrong, expired and used-up codes alike)", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "SEATS_UNAVAILABLE (with `seats`), NOT_ON_SALE, NOT_ENOUGH_SEATS", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "HOLD_LIMIT; ORPHAN_SEAT (with `seat` and `seats`: the seats the hold would leave alone)", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED (Retry-After); also after too many wrong presale codes", body = ErrorBody),
        (status = 503, description = "OVERLOADED (Retry-After)", body = ErrorBody)))]
async fn create_hold(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path(event_id): Path<String>,
    headers: HeaderMap,
    body: JsonWithBytes<HoldBody>,
) -> Response {
    let key = match idempotency::key_from(&headers) {
        Ok(key) => key,
        Err(e) => return e.into_response(),
    };
    let admission = headers.get("admission-token").and_then(|v| v.to_str().ok());
    let route = format!("POST /v1/events/{event_id}/holds");
    idempotency::run_keyed(&state, &caller.user, route, key, &body.raw, async {
        let dto = hold(&state, &caller, &event_id, admission, body.value).await?;
        Ok((StatusCode::CREATED, serde_json::to_vec(&dto).expect("holds serialize")))
    })
    .await
}

/// The selection a body asks for, checked for shape (400) before anything else.
enum Asked {
    Labels(Vec<String>),
    Best { count: u32, section: Option<String> },
}

fn asked(body: HoldBody) -> Result<Asked, ApiError> {
    match (body.seats, body.best_available) {
        (Some(seats), None) => {
            if seats.is_empty() {
                return Err(ApiError::invalid("seats must name at least one seat"));
            }
            for (i, label) in seats.iter().enumerate() {
                if seats[..i].contains(label) {
                    return Err(ApiError::invalid(format!("seat {label} is named twice")));
                }
            }
            Ok(Asked::Labels(seats))
        }
        (None, Some(best)) => {
            if best.count == 0 {
                return Err(ApiError::invalid("best_available.count must be at least 1"));
            }
            Ok(Asked::Best { count: best.count, section: best.section })
        }
        _ => Err(ApiError::invalid("give exactly one of seats or best_available")),
    }
}

/// Checks that the event sells now: published, past its onsale, not started.
pub fn check_on_sale(entry: &EventEntry, now: u64) -> Result<(), ApiError> {
    let event = &entry.event;
    if event.status == boxoffice_store::EventStatus::Cancelled {
        return Err(ApiError::conflict("NOT_ON_SALE", "the event is cancelled"));
    }
    if now < event.onsale_at {
        return Err(ApiError::conflict("NOT_ON_SALE", "the onsale has not started")
            .with("onsale_at", crate::http::dto::rfc3339(event.onsale_at)));
    }
    if now >= event.starts_at {
        return Err(ApiError::conflict("NOT_ON_SALE", "the event has started"));
    }
    Ok(())
}

async fn hold(
    state: &AppState,
    caller: &Caller,
    event_id: &str,
    admission: Option<&str>,
    mut body: HoldBody,
) -> Result<HoldDto, ApiError> {
    let user = &caller.user;
    let presale_code = body.presale_code.take();
    let asked = asked(body)?;
    let event = parse_event_id(event_id)?;
    let entry = state.catalog.event(state.store.as_ref(), event).await?;
    check_on_sale(&entry, now_ms())?;
    crate::waiting_room::check_admission(state, &entry, user, admission)?;
    let count = match &asked {
        Asked::Labels(labels) => labels.len() as u32,
        Asked::Best { count, .. } => *count,
    };
    if count > state.limits.max_seats_per_hold {
        return Err(ApiError::unprocessable(
            "HOLD_LIMIT",
            format!("a hold may contain at most {} seats", state.limits.max_seats_per_hold),
        )
        .with("limit", state.limits.max_seats_per_hold));
    }
    let selection = match asked {
        Asked::Labels(labels) => {
            let mut seats = Vec::with_capacity(labels.len());
            let mut unknown = Vec::new();
            for label in &labels {
                match entry.map.resolve(label) {
                    Some(i) => seats.push(i),
                    None => unknown.push(label.clone()),
                }
            }
            if !unknown.is_empty() {
                // The per-user limit outranks an unknown label.
                let current = state.inventory.user_seat_count(event, user).await?;
                let limit = state.limits.max_seats_per_user_per_event;
                if current + count > limit {
                    return Err(InventoryError::UserLimit { current, requested: count, limit }.into());
                }
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "SEAT_NOT_FOUND",
                    "no such seat in this event",
                )
                .with("seats", unknown));
            }
            Selection::Seats(seats)
        }
        Asked::Best { count, section } => {
            let section = match section {
                None => None,
                Some(name) => Some(entry.map.section_index(&name).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        "SECTION_NOT_FOUND",
                        format!("no section {name:?} in this event"),
                    )
                })?),
            };
            Selection::BestAvailable { count, section }
        }
    };
    // Allocations: after the seat labels, before the seats' availability.
    let entitlement = crate::http::allocations::entitle_hold(
        state,
        &entry,
        caller,
        presale_code.as_deref(),
        &selection,
        now_ms(),
    )
    .await?;
    let request = HoldRequest {
        event,
        user: user.clone(),
        selection,
        ttl_ms: state.limits.hold_ttl_ms,
        max_seats_per_user: state.limits.max_seats_per_user_per_event,
        orphan_rule: entry.event.orphan_rule,
        blocked: entitlement.blocked,
    };
    // Distributed mode: the event may have been made on another node, and this node's
    // catalog follower may not have loaded it yet.
    let retry = state.memory.is_none().then(|| request.clone());
    let held = match (state.inventory.hold(request).await, retry) {
        (Err(InventoryError::UnknownEvent), Some(request)) => {
            crate::load_event(state, request.event).await.map_err(|e| match e {
                crate::StartError::Inventory(e) => ApiError::from(e),
                other => ApiError::internal(other.to_string()),
            })?;
            state.inventory.hold(request).await
        }
        (other, _) => other,
    };
    let held_seats = held.as_ref().ok().map(|view| view.seats.as_slice());
    crate::http::allocations::settle_code_use(state, &entry, entitlement.code_use, held_seats).await;
    match held {
        Ok(view) => {
            metrics::counter!("boxoffice_holds_total", "result" => "held").increment(1);
            entry.holds_made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(HoldDto::new(&view, &entry))
        }
        Err(InventoryError::SeatsUnavailable(seats)) => {
            metrics::counter!("boxoffice_hold_conflicts_total").increment(1);
            metrics::counter!("boxoffice_holds_total", "result" => "conflict").increment(1);
            let labels: Vec<String> = seats.iter().map(|&i| entry.map.label(i)).collect();
            Err(ApiError::conflict("SEATS_UNAVAILABLE", "some seats are not available").with("seats", labels))
        }
        Err(InventoryError::OrphanSeat(seats)) => {
            metrics::counter!("boxoffice_holds_total", "result" => "orphan_seat").increment(1);
            let labels: Vec<String> = seats.iter().map(|&i| entry.map.label(i)).collect();
            let first = labels.first().cloned().unwrap_or_default();
            Err(ApiError::from(InventoryError::OrphanSeat(seats)).with("seat", first).with("seats", labels))
        }
        Err(e) => {
            metrics::counter!("boxoffice_holds_total", "result" => "refused").increment(1);
            Err(e.into())
        }
    }
}

pub fn parse_hold_id(raw: &str) -> Result<HoldId, ApiError> {
    HoldId::parse(raw).map_err(|_| ApiError::not_found("hold"))
}

/// The hold as its owner (or an admin) sees it; 404 to anyone else.
pub async fn owned_hold(
    state: &AppState,
    caller: &Caller,
    hold_id: &str,
) -> Result<(boxoffice_core::HoldView, Arc<EventEntry>), ApiError> {
    let id = parse_hold_id(hold_id)?;
    let view = state.inventory.hold_view(id).await.map_err(|e| match e {
        InventoryError::UnknownHold => ApiError::not_found("hold"),
        other => other.into(),
    })?;
    if !caller.may_see(&view.user) {
        return Err(ApiError::not_found("hold"));
    }
    let entry = state.catalog.event(state.store.as_ref(), view.event).await?;
    Ok((view, entry))
}

/// A hold with its status: held, confirming, confirmed, released or expired.
#[utoipa::path(get, path = "/v1/holds/{hold_id}", tag = "holds", params(("hold_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = HoldDto), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_hold(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path(hold_id): Path<String>,
) -> Result<axum::Json<HoldDto>, ApiError> {
    let (view, entry) = owned_hold(&state, &caller, &hold_id).await?;
    Ok(axum::Json(HoldDto::new(&view, &entry)))
}

/// Releases a hold at once.
#[utoipa::path(delete, path = "/v1/holds/{hold_id}", tag = "holds", params(("hold_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "HOLD_CONFIRMING or ALREADY_CONFIRMED", body = ErrorBody),
        (status = 410, body = ErrorBody)))]
async fn delete_hold(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path(hold_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (view, _) = owned_hold(&state, &caller, &hold_id).await?;
    match view.status {
        HoldStatus::Released => return Err(InventoryError::HoldReleased.into()),
        HoldStatus::Expired => return Err(InventoryError::HoldExpired.into()),
        HoldStatus::Confirmed => return Err(InventoryError::AlreadyConfirmed.into()),
        HoldStatus::Held | HoldStatus::Confirming => {}
    }
    state.inventory.release(view.id).await?;
    metrics::counter!("boxoffice_holds_released_total").increment(1);
    Ok(StatusCode::NO_CONTENT)
}
