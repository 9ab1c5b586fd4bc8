//! `GET /v1/events/{id}/availability`: the one-bit-per-seat bitmap, binary or JSON.

use axum::extract::{Path, State};
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

/// Availability bitmap: `ceil(n/8)` bytes, bit `i` (byte `i/8`, bit `i%8`, least
/// significant first) = 1 when seat `i` is available. `Accept: application/json` gives
/// `{"version","available_count","bitmap_base64"}`.
#[utoipa::path(get, path = "/v1/events/{event_id}/availability", tag = "availability",
    params(("event_id" = String, Path)),
    responses(
        (status = 200, description = "bitmap", content(
            (Vec<u8> = "application/octet-stream"),
            (AvailabilityDto = "application/json"))),
        (status = 304, description = "not modified"),
        (status = 404, body = ErrorBody)))]
async fn get_availability(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let event = parse_event_id(&event_id)?;
    // The catalog answers 404 for unknown events before the inventory is asked.
    state.catalog.event(state.store.as_ref(), event).await?;
    let availability = state.inventory.availability(event).await?;
    let json = wants_json(&headers);
    let etag = format!("\"{}.{}{}\"", availability.epoch, availability.version, if json { "j" } else { "b" });
    let common = [
        (header::ETAG, HeaderValue::from_str(&etag).expect("etags are ASCII")),
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=1")),
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
