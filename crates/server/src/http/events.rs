//! The catalog: events (list, detail, seat geometry), venues (detail) and the admin routes
//! that create venues, performers and events.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use boxoffice_core::{Currency, EventId, Money, SeatMap, SeatSpec, SectionSpec, UnixMs};
use boxoffice_store::{
    EventFilter, EventStatus, EventUpdate, NewEvent, NewVenue, QueueSettings, QueueUpdate, StoreError,
};
use bytes::Bytes;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::http::dto::{
    ErrorBody, EventBody, EventDetail, EventPatchBody, EventStatusBody, EventSummary, Page, PerformerBody,
    PerformerDto, QueuePatchBody, SeatsDocument, VenueBody, VenueDto,
};
use crate::http::page_limit;

/// Longest name, city or category accepted.
const MAX_NAME_CHARS: usize = 200;
/// Longest description accepted.
const MAX_DESCRIPTION_CHARS: usize = 10_000;
/// Highest seat price accepted, in minor units.
const MAX_PRICE_MINOR_UNITS: i64 = 100_000_000;
/// Highest queue admission rate accepted, per second.
pub const MAX_ADMIT_RATE_PER_SECOND: u64 = 1_000_000;
/// Longest admission token lifetime accepted, in seconds.
pub const MAX_TOKEN_TTL_SECONDS: u64 = 86_400;
/// Longest queue accepted.
pub const MAX_QUEUE_LENGTH: u64 = 100_000_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events, create_event))
        .routes(routes!(get_event, update_event))
        .routes(routes!(get_seats))
        .routes(routes!(create_venue))
        .routes(routes!(get_venue))
        .routes(routes!(create_performer))
}

pub fn parse_event_id(raw: &str) -> Result<EventId, ApiError> {
    EventId::parse(raw).map_err(|_| ApiError::not_found("event"))
}

/// Whether the request's `If-None-Match` names `etag`.
pub fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// A cacheable answer: 304 when the client has it, else the body with its validators.
pub fn cached(
    headers: &HeaderMap,
    body: Bytes,
    etag: &str,
    cache_control: &'static str,
    content_type: &'static str,
) -> Response {
    let etag_value = HeaderValue::from_str(etag).expect("etags are ASCII");
    if not_modified(headers, etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value), (header::CACHE_CONTROL, HeaderValue::from_static(cache_control))],
        )
            .into_response();
    }
    (
        [
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache_control)),
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        ],
        body,
    )
        .into_response()
}

pub fn parse_time(field: &str, raw: &str) -> Result<UnixMs, ApiError> {
    let time = chrono::DateTime::parse_from_rfc3339(raw).map_err(|_| {
        ApiError::invalid(format!("{field} must be an RFC 3339 time, e.g. 2026-12-01T20:00:00Z"))
    })?;
    u64::try_from(time.timestamp_millis()).map_err(|_| ApiError::invalid(format!("{field} is before 1970")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    city: Option<String>,
    category: Option<String>,
    /// Events starting at or after this time (RFC 3339).
    from: Option<String>,
    /// Events starting before this time (RFC 3339).
    to: Option<String>,
    /// 1-100, default 20.
    limit: Option<String>,
    cursor: Option<String>,
}

/// Published and cancelled events, ordered by start time.
#[utoipa::path(get, path = "/v1/events", tag = "catalog", params(EventsQuery),
    responses((status = 200, body = Page<EventSummary>), (status = 400, body = ErrorBody)))]
async fn list_events(
    State(state): State<AppState>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<axum::Json<Page<EventSummary>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let filter = EventFilter {
        city: q.city.filter(|c| !c.is_empty()),
        category: q.category.filter(|c| !c.is_empty()),
        from: q.from.as_deref().map(|t| parse_time("from", t)).transpose()?,
        to: q.to.as_deref().map(|t| parse_time("to", t)).transpose()?,
    };
    let limit = page_limit(q.limit.as_deref())?;
    let page = state.store.list_events(&filter, limit, q.cursor.as_deref()).await?;
    Ok(axum::Json(Page {
        items: page.items.iter().map(EventSummary::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One event with venue, performers and prices. Cacheable for 60 s (ETag).
#[utoipa::path(get, path = "/v1/events/{event_id}", tag = "catalog",
    params(("event_id" = String, Path)),
    responses((status = 200, body = EventDetail), (status = 304), (status = 404, body = ErrorBody)))]
async fn get_event(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let entry = state.catalog.event(state.store.as_ref(), parse_event_id(&event_id)?).await?;
    let (body, etag) = &entry.detail;
    Ok(cached(&headers, body.clone(), etag, "public, max-age=60", "application/json"))
}

/// Changes an event (admin): any subset of name, description, status, onsale, start and
/// queue settings; what is left out, inside `queue` too, keeps its value.
#[utoipa::path(patch, path = "/v1/events/{event_id}", tag = "admin", request_body = EventPatchBody,
    params(("event_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = EventDetail),
        (status = 202, body = EventDetail, description = "The event is now cancelled: a job refunds every order"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_event(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(event_id): Path<String>,
    ApiJson(body): ApiJson<EventPatchBody>,
) -> Result<(StatusCode, axum::Json<EventDetail>), ApiError> {
    let update = event_update(body)?;
    let id = parse_event_id(&event_id)?;
    let cancelling = update.status == Some(EventStatus::Cancelled);
    let was_cancelled = match state.store.event(id).await {
        Ok(event) => event.status == EventStatus::Cancelled,
        Err(StoreError::NotFound) => return Err(ApiError::not_found("event")),
        Err(other) => return Err(other.into()),
    };
    if was_cancelled && update.status == Some(EventStatus::Published) {
        return Err(ApiError::conflict("EVENT_CANCELLED", "a cancelled event cannot be published again"));
    }
    let updated = match state.store.update_event(id, update).await {
        Err(StoreError::NotFound) => return Err(ApiError::not_found("event")),
        Err(StoreError::Invalid(message)) => return Err(ApiError::invalid(message)),
        Err(StoreError::EventCancelled(_)) => {
            return Err(ApiError::conflict("EVENT_CANCELLED", "a cancelled event cannot be published again"));
        }
        other => other?,
    };
    state.catalog.invalidate(id);
    tracing::info!(event = %id, status = updated.status.as_str(), queue = ?updated.queue, "event changed");
    if cancelling && !was_cancelled {
        tracing::warn!(event = %id, "event cancelled: its orders are being refunded");
        state.cancellation_wake.notify_one();
        return Ok((StatusCode::ACCEPTED, axum::Json(EventDetail::from(&updated))));
    }
    Ok((StatusCode::OK, axum::Json(EventDetail::from(&updated))))
}

/// Parses a `PATCH` body: times RFC 3339, queue numbers in range.
fn event_update(body: EventPatchBody) -> Result<EventUpdate, ApiError> {
    let onsale_at = body.onsale_at.as_deref().map(|t| parse_time("onsale_at", t)).transpose()?;
    let starts_at = body.starts_at.as_deref().map(|t| parse_time("starts_at", t)).transpose()?;
    if let (Some(onsale), Some(starts)) = (onsale_at, starts_at)
        && onsale > starts
    {
        return Err(ApiError::invalid("onsale_at must not be after starts_at"));
    }
    let status = body.status.map(|s| match s {
        EventStatusBody::Published => EventStatus::Published,
        EventStatusBody::Cancelled => EventStatus::Cancelled,
    });
    let q = body.queue.unwrap_or_default();
    let QueuePatchBody { enabled, admit_rate_per_second, token_ttl_seconds, max_length, proof_of_work_bits } =
        q;
    let in_range = |field: &str, value: Option<u64>, max: u64| -> Result<Option<u64>, ApiError> {
        match value {
            Some(v) if !(1..=max).contains(&v) => {
                Err(ApiError::invalid(format!("queue.{field} must be a whole number from 1 to {max}")))
            }
            other => Ok(other),
        }
    };
    let rate = in_range("admit_rate_per_second", admit_rate_per_second, MAX_ADMIT_RATE_PER_SECOND)?;
    let ttl = in_range("token_ttl_seconds", token_ttl_seconds, MAX_TOKEN_TTL_SECONDS)?;
    let max_length = in_range("max_length", max_length, MAX_QUEUE_LENGTH)?;
    let max_bits = QueueSettings::MAX_PROOF_OF_WORK_BITS;
    let bits = match proof_of_work_bits {
        Some(b) if b > u64::from(max_bits) => {
            return Err(ApiError::invalid(format!("queue.proof_of_work_bits must be from 0 to {max_bits}")));
        }
        other => other,
    };
    let name = body.name.as_deref().map(|n| check_text("name", n, MAX_NAME_CHARS)).transpose()?;
    let description = body
        .description
        .as_deref()
        .map(|d| check_text("description", d, MAX_DESCRIPTION_CHARS))
        .transpose()?;
    Ok(EventUpdate {
        name,
        description,
        status,
        onsale_at,
        starts_at,
        queue: QueueUpdate {
            enabled,
            admit_rate_per_second: rate.map(|r| r as u32),
            token_ttl_seconds: ttl.map(|t| t as u32),
            max_length,
            proof_of_work_bits: bits.map(|b| b as u8),
        },
        static_tickets_allowed: body.static_tickets_allowed,
        orphan_rule: body.orphan_rule,
    })
}

/// The event's seat geometry. Immutable: cache it for good.
#[utoipa::path(get, path = "/v1/events/{event_id}/seats", tag = "catalog",
    params(("event_id" = String, Path)),
    responses((status = 200, body = SeatsDocument), (status = 304), (status = 404, body = ErrorBody)))]
async fn get_seats(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let entry = state.catalog.event(state.store.as_ref(), parse_event_id(&event_id)?).await?;
    let doc = entry.seats_document();
    let immutable = "public, max-age=31536000, immutable";
    let encoded = if accepts_encoding(&headers, "br") {
        Some((&doc.brotli, &doc.brotli_etag, "br"))
    } else if accepts_encoding(&headers, "gzip") {
        Some((&doc.gzip, &doc.gzip_etag, "gzip"))
    } else {
        None
    };
    let mut response = match encoded {
        Some((body, etag, encoding)) => {
            let mut r = cached(&headers, body.clone(), etag, immutable, "application/json");
            if r.status() == StatusCode::OK {
                r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
            }
            r
        }
        None => cached(&headers, doc.plain.clone(), &doc.etag, immutable, "application/json"),
    };
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    Ok(response)
}

/// Whether `Accept-Encoding` lists `coding` with a non-zero quality.
fn accepts_encoding(headers: &HeaderMap, coding: &str) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            name.eq_ignore_ascii_case(coding) && !refused
        })
    })
}

fn check_text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!("{field} must be 1 to {max} printable characters")));
    }
    Ok(value.to_owned())
}

fn parse_prefixed(prefix: &str, raw: &str) -> Option<u64> {
    raw.strip_prefix(prefix).filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))?.parse().ok()
}

/// Creates a venue from section shapes or explicit seats (admin).
#[utoipa::path(post, path = "/v1/venues", tag = "admin", request_body = VenueBody, security(("bearer" = [])),
    responses((status = 201, body = VenueDto), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_venue(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    ApiJson(body): ApiJson<VenueBody>,
) -> Result<(StatusCode, axum::Json<VenueDto>), ApiError> {
    let name = check_text("name", &body.name, MAX_NAME_CHARS)?;
    let city = check_text("city", &body.city, MAX_NAME_CHARS)?;
    if !(-90.0..=90.0).contains(&body.lat) || !(-180.0..=180.0).contains(&body.lon) {
        return Err(ApiError::invalid("lat must be within -90..90 and lon within -180..180"));
    }
    let address = body.address.as_deref().map(|a| check_text("address", a, MAX_NAME_CHARS)).transpose()?;
    let tiers = body.tiers.unwrap_or_else(SeatMap::default_tiers);
    let map = match (body.sections, body.seats) {
        (Some(sections), None) => {
            let specs: Vec<SectionSpec> = sections
                .into_iter()
                .map(|s| SectionSpec {
                    name: s.name,
                    rows: s.rows,
                    seats_per_row: s.seats_per_row,
                    tier: s.tier,
                })
                .collect();
            SeatMap::from_sections(tiers, &specs)
        }
        (None, Some(seats)) => {
            let specs: Vec<SeatSpec> = seats
                .into_iter()
                .map(|s| SeatSpec {
                    section: s.section,
                    row: s.row,
                    number: s.number,
                    x: s.x,
                    y: s.y,
                    tier: s.tier,
                })
                .collect();
            SeatMap::from_seats(tiers, &specs)
        }
        _ => return Err(ApiError::invalid("give exactly one of sections or seats")),
    }
    .map_err(|e| ApiError::invalid(e.to_string()))?;
    let venue = state
        .store
        .create_venue(NewVenue { name, city, lat: body.lat, lon: body.lon, address, map: Arc::new(map) })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(VenueDto::from(&venue))))
}

/// One venue: name, place, seat count and price tiers (best first), e.g. to price a new
/// event at it. Cacheable for 60 s.
#[utoipa::path(get, path = "/v1/venues/{venue_id}", tag = "catalog",
    params(("venue_id" = String, Path, example = "ve_1")),
    responses((status = 200, body = VenueDto), (status = 404, body = ErrorBody)))]
async fn get_venue(
    State(state): State<AppState>,
    Path(venue_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_prefixed("ve_", &venue_id).ok_or_else(|| ApiError::not_found("venue"))?;
    let venue = match state.store.venue(id).await {
        Err(StoreError::NotFound) => return Err(ApiError::not_found("venue")),
        other => other?,
    };
    Ok(([(header::CACHE_CONTROL, "public, max-age=60")], axum::Json(VenueDto::from(&venue))).into_response())
}

/// Creates a performer (admin).
#[utoipa::path(post, path = "/v1/performers", tag = "admin", request_body = PerformerBody, security(("bearer" = [])),
    responses((status = 201, body = PerformerDto), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_performer(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    ApiJson(body): ApiJson<PerformerBody>,
) -> Result<(StatusCode, axum::Json<PerformerDto>), ApiError> {
    let name = check_text("name", &body.name, MAX_NAME_CHARS)?;
    let genre = body.genre.as_deref().map(|g| check_text("genre", g, MAX_NAME_CHARS)).transpose()?;
    let performer = state.store.create_performer(&name, genre.as_deref()).await?;
    Ok((StatusCode::CREATED, axum::Json(PerformerDto::from(&performer))))
}

/// Creates an event at a venue; the event copies the venue's seat map (admin).
#[utoipa::path(post, path = "/v1/events", tag = "admin", request_body = EventBody, security(("bearer" = [])),
    responses((status = 201, body = EventDetail), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn create_event(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    ApiJson(body): ApiJson<EventBody>,
) -> Result<(StatusCode, axum::Json<EventDetail>), ApiError> {
    let orphan_rule = body.orphan_rule;
    let event = new_event(&state, body).await?;
    let mut created = state.store.create_event(event).await?;
    if orphan_rule == Some(false) {
        // The store creates events with the default settings (the rule on, the safe side
        // should this step not happen); the change comes before the event takes holds.
        let off = EventUpdate { orphan_rule: Some(false), ..EventUpdate::default() };
        created = state.store.update_event(created.id, off).await?;
    }
    crate::load_event(&state, created.id).await.map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((StatusCode::CREATED, axum::Json(EventDetail::from(&created))))
}

/// Validates an event body against the catalog.
pub async fn new_event(state: &AppState, body: EventBody) -> Result<NewEvent, ApiError> {
    let name = check_text("name", &body.name, MAX_NAME_CHARS)?;
    let category = check_text("category", &body.category, MAX_NAME_CHARS)?.to_lowercase();
    let description = body
        .description
        .as_deref()
        .map(|d| check_text("description", d, MAX_DESCRIPTION_CHARS))
        .transpose()?;
    let starts_at = parse_time("starts_at", &body.starts_at)?;
    let onsale_at = parse_time("onsale_at", &body.onsale_at)?;
    if onsale_at > starts_at {
        return Err(ApiError::invalid("onsale_at must not be after starts_at"));
    }
    let venue_id = parse_prefixed("ve_", &body.venue_id)
        .ok_or_else(|| ApiError::unprocessable("UNKNOWN_VENUE", "venue_id names no venue"))?;
    let venue = match state.store.venue(venue_id).await {
        Err(StoreError::NotFound) => {
            return Err(ApiError::unprocessable("UNKNOWN_VENUE", "venue_id names no venue"));
        }
        other => other?,
    };
    let performer_ids = body
        .performer_ids
        .iter()
        .map(|p| parse_prefixed("pf_", p))
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| ApiError::unprocessable("UNKNOWN_PERFORMER", "a performer id names no performer"))?;
    match state.store.performers(&performer_ids).await {
        Err(StoreError::NotFound) => {
            return Err(ApiError::unprocessable("UNKNOWN_PERFORMER", "a performer id names no performer"));
        }
        other => other?,
    };
    let mut prices = Vec::with_capacity(venue.tiers.len());
    let mut currency: Option<Currency> = None;
    for tier in &venue.tiers {
        let price = body
            .prices
            .get(tier)
            .ok_or_else(|| ApiError::invalid(format!("prices must give a price for tier {tier:?}")))?;
        let c = Currency::parse(&price.currency)
            .ok_or_else(|| ApiError::invalid("currency must be a 3-letter upper-case ISO 4217 code"))?;
        if currency.is_some_and(|first| first != c) {
            return Err(ApiError::invalid("all prices of an event are in one currency"));
        }
        currency = Some(c);
        if !(0..=MAX_PRICE_MINOR_UNITS).contains(&price.amount) {
            return Err(ApiError::invalid(format!("prices are 0 to {MAX_PRICE_MINOR_UNITS} minor units")));
        }
        prices.push((tier.clone(), Money::new(price.amount, c)));
    }
    if let Some(extra) = body.prices.keys().find(|t| !venue.tiers.contains(t)) {
        return Err(ApiError::invalid(format!("tier {extra:?} is not one of the venue's tiers")));
    }
    Ok(NewEvent { name, venue_id, performer_ids, category, starts_at, onsale_at, prices, description })
}
