//! `GET /v1/events/{id}/availability`: the one-bit-per-seat bitmap, binary or JSON.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::http::dto::{AvailabilityDto, ErrorBody};
use crate::http::events::{not_modified, parse_event_id};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_availability))
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AvailabilityQuery {
    /// An allocation's entitled view (needs a bearer token with a role the allocation
    /// names, or admin, or a `Presale-Code` header with a code of that allocation).
    pub allocation: Option<String>,
}

/// Availability bitmap: `ceil(n/8)` bytes, bit `i` (byte `i/8`, bit `i%8`, least
/// significant first) = 1 when seat `i` is available. `Accept: application/json` gives
/// `{"version","available_count","bitmap_base64"}`.
///
/// Seats of allocations in force (before their `release_at`) show as unavailable: the
/// public cannot buy them. `?allocation=NAME` gives an entitled caller the view of that
/// allocation (its seats and general sale, not other allocations in force): `401`
/// without a token, `403 NOT_ENTITLED` without entitlement, `404` for an unknown name.
#[utoipa::path(get, path = "/v1/events/{event_id}/availability", tag = "availability",
    params(("event_id" = String, Path), AvailabilityQuery,
        ("Presale-Code" = Option<String>, Header, description = "a presale code, for `?allocation=`")),
    responses(
        (status = 200, description = "bitmap", content(
            (Vec<u8> = "application/octet-stream"),
            (AvailabilityDto = "application/json"))),
        (status = 304, description = "not modified"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "NOT_ENTITLED", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many wrong presale codes", body = ErrorBody)))]
async fn get_availability(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    Query(query): Query<AvailabilityQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let event = parse_event_id(&event_id)?;
    // The catalog answers 404 for unknown events before the inventory is asked.
    let entry = state.catalog.event(state.store.as_ref(), event).await?;
    let now = boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock);
    if let Some(name) = &query.allocation {
        crate::http::allocations::check_view_entitlement(&state, &entry, name, &headers, now).await?;
    }
    let availability = state.inventory.availability(event).await?;
    let (availability, mask) =
        crate::allocations::visible(&entry.allocations, availability, now, query.allocation.as_deref());
    let json = wants_json(&headers);
    // Events with allocations: the mask is part of what the bitmap shows.
    let view = match (&query.allocation, mask) {
        (Some(name), _) => format!(".{mask:x}.{name}"),
        (None, 0) => String::new(),
        (None, _) => format!(".{mask:x}"),
    };
    let etag =
        format!("\"{}.{}{view}{}\"", availability.epoch, availability.version, if json { "j" } else { "b" });
    let cache = if query.allocation.is_some() { "private, max-age=1" } else { "public, max-age=1" };
    let common = [
        (header::ETAG, HeaderValue::from_str(&etag).expect("etags are ASCII")),
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        (header::VARY, HeaderValue::from_static("Accept")),
        (header::HeaderName::from_static("seat-map-version"), HeaderValue::from(availability.version)),
    ];
    if not_modified(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    if json {
        let body = AvailabilityDto {
            version: availability.version,
            available_count: availability.available_count,
            bitmap_base64: base64::engine::general_purpose::STANDARD.encode(&availability.bitmap),
        };
        return Ok((common, axum::Json(body)).into_response());
    }
    Ok((
        common,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))],
        availability.bitmap,
    )
        .into_response())
}
