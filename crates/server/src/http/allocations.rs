//! Allocations and presale codes over HTTP: the admin routes (`POST` and `GET
//! /v1/events/{id}/allocations`, `POST /v1/events/{id}/presale-codes`) and the
//! entitlement checks of holds and of the entitled availability view. The rules are in
//! [`crate::allocations`]; `docs/allocations.md` is the guide.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use boxoffice_core::{Bitmap, UnixMs};
use boxoffice_engine::Selection;
use boxoffice_store::{NewAllocation, NewPresaleCodes, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::allocations::{
    self as rules, Channel, MAX_ALLOCATIONS_PER_EVENT, MAX_CODE_LIMIT, MAX_CODES_PER_REQUEST,
    MAX_SEATS_PER_ALLOCATION, check_code, failed_attempt, not_entitled,
};
use crate::auth::{Admin, Caller};
use crate::catalog::EventEntry;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::http::dto::{ErrorBody, Page, rfc3339};
use crate::http::events::{parse_event_id, parse_time};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_allocation, list_allocations)).routes(routes!(create_codes))
}

fn now_ms() -> UnixMs {
    boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocationBody {
    /// `[a-z0-9][a-z0-9_-]*`, at most 64 characters, unique within the event.
    #[schema(example = "presale")]
    pub name: String,
    /// Seat labels; a seat belongs to at most one allocation (at most 200,000 seats).
    #[schema(example = json!(["A-1-1", "A-1-2"]))]
    pub seats: Vec<String>,
    /// From this time on the allocation's unsold seats are general sale.
    #[schema(example = "2026-12-01T10:00:00Z")]
    pub release_at: String,
    /// Roles entitled without a code (`fan`, `staff`, `admin`); admins always are.
    #[schema(example = json!(["staff"]))]
    pub roles: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AllocationDto {
    pub name: String,
    pub seat_count: u32,
    /// Seats of the allocation available now (neither held nor sold).
    pub available_count: u32,
    pub release_at: String,
    /// Whether `release_at` has passed: the unsold seats are general sale.
    pub released: bool,
    pub roles: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresaleCodesBody {
    #[schema(example = "presale")]
    pub allocation: String,
    /// Codes to create, 1 to 10,000.
    #[schema(example = 100)]
    pub count: u32,
    /// Seats that all holds made with one code may take together, 1 to 10,000.
    #[schema(example = 4)]
    pub max_seats_per_code: u32,
    /// Holds one code may make, 1 to 10,000.
    #[schema(example = 1)]
    pub max_uses: u32,
    #[schema(example = "2026-12-01T10:00:00Z")]
    pub expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PresaleCodesDto {
    /// The codes, shown this once (the server keeps only their digests).
    pub codes: Vec<String>,
}

fn allocation_dto(channel: &Channel, available: Option<&Bitmap>, now: UnixMs) -> AllocationDto {
    let available_count = available
        .map_or(0, |bits| channel.seats.iter_available().filter(|&s| bits.is_available(s)).count() as u32);
    AllocationDto {
        name: channel.name.clone(),
        seat_count: channel.seat_count,
        available_count,
        release_at: rfc3339(channel.release_at),
        released: !channel.in_force(now),
        roles: channel.roles.iter().map(|&r| rules::role_name(r).to_owned()).collect(),
    }
}

/// Drops the event's catalog entry and loads it again until it shows `name`: a reader
/// that loaded the entry just before the write could otherwise put the old one back.
async fn reload_until_seen(
    state: &AppState,
    entry: &EventEntry,
    name: &str,
) -> Result<Arc<EventEntry>, ApiError> {
    let id = entry.event.id;
    for _ in 0..8 {
        state.catalog.invalidate(id);
        let fresh = state.catalog.event(state.store.as_ref(), id).await?;
        if fresh.allocations.find(name).is_some() {
            return Ok(fresh);
        }
    }
    Err(ApiError::unavailable("CATALOG_BUSY", "the event is changing; retry shortly").retry_after(1))
}

/// Creates an allocation (admin): its seats are held back from general sale until
/// `release_at`, for callers entitled by role or presale code.
#[utoipa::path(post, path = "/v1/events/{event_id}/allocations", tag = "allocations",
    params(("event_id" = String, Path)), request_body = AllocationBody, security(("bearer" = [])),
    responses((status = 201, body = AllocationDto),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "unknown event, or SEAT_NOT_FOUND (with `seats`)", body = ErrorBody),
        (status = 409, description = "ALLOCATION_EXISTS; SEATS_ALLOCATED (a seat is in another allocation)", body = ErrorBody),
        (status = 422, description = "ALLOCATION_LIMIT", body = ErrorBody)))]
async fn create_allocation(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(event_id): Path<String>,
    ApiJson(body): ApiJson<AllocationBody>,
) -> Result<(StatusCode, axum::Json<AllocationDto>), ApiError> {
    if !rules::valid_name(&body.name) {
        return Err(ApiError::invalid(
            "name must be 1 to 64 of a-z, 0-9, '-' and '_', starting with a letter or digit",
        ));
    }
    if body.seats.is_empty() {
        return Err(ApiError::invalid("seats must name at least one seat"));
    }
    if body.seats.len() > MAX_SEATS_PER_ALLOCATION {
        return Err(ApiError::invalid(format!(
            "an allocation may name at most {MAX_SEATS_PER_ALLOCATION} seats"
        ))
        .with("limit", MAX_SEATS_PER_ALLOCATION));
    }
    let release_at = parse_time("release_at", &body.release_at)?;
    let roles = body.roles.unwrap_or_default();
    if let Some(bad) = roles.iter().find(|r| !matches!(r.as_str(), "fan" | "staff" | "admin")) {
        return Err(ApiError::invalid(format!("unknown role {bad:?}: roles are fan, staff and admin")));
    }
    let event = parse_event_id(&event_id)?;
    let entry = state.catalog.event(state.store.as_ref(), event).await?;
    let mut seats = Vec::with_capacity(body.seats.len());
    let mut unknown = Vec::new();
    for label in &body.seats {
        match entry.map.resolve(label) {
            Some(i) => seats.push(i),
            None if unknown.len() < 100 => unknown.push(label.clone()),
            None => {}
        }
    }
    if !unknown.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "SEAT_NOT_FOUND", "no such seat in this event")
            .with("seats", unknown));
    }
    seats.sort_unstable();
    if let Some(w) = seats.windows(2).find(|w| w[0] == w[1]) {
        return Err(ApiError::invalid(format!("seat {} is named twice", entry.map.label(w[0]))));
    }
    let existing = entry.allocations.channels();
    if existing.iter().any(|c| c.name == body.name) {
        return Err(ApiError::conflict("ALLOCATION_EXISTS", format!("allocation {:?} exists", body.name)));
    }
    if existing.len() >= MAX_ALLOCATIONS_PER_EVENT {
        return Err(ApiError::unprocessable(
            "ALLOCATION_LIMIT",
            format!("an event may have at most {MAX_ALLOCATIONS_PER_EVENT} allocations"),
        )
        .with("limit", MAX_ALLOCATIONS_PER_EVENT));
    }
    let shared: Vec<String> = seats
        .iter()
        .filter(|&&s| existing.iter().any(|c| c.seats.is_available(s)))
        .take(100)
        .map(|&s| entry.map.label(s))
        .collect();
    if !shared.is_empty() {
        return Err(ApiError::conflict("SEATS_ALLOCATED", "some seats are in another allocation")
            .with("seats", shared));
    }
    let new = NewAllocation { event, name: body.name.clone(), seats, release_at, roles };
    match state.store.create_allocation(new).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => return Err(ApiError::not_found("event")),
        // Another admin's allocation came in between the checks above and the write.
        Err(StoreError::Invalid(message)) => return Err(ApiError::conflict("SEATS_ALLOCATED", message)),
        Err(other) => return Err(other.into()),
    }
    let fresh = reload_until_seen(&state, &entry, &body.name).await?;
    tracing::info!(event = %event, allocation = %body.name, "allocation created");
    let channel = fresh.allocations.find(&body.name).expect("reloaded until seen");
    let available = state.inventory.availability(event).await.ok();
    let bits = available.and_then(|a| Bitmap::from_bytes(&a.bitmap, fresh.map.len()));
    Ok((StatusCode::CREATED, axum::Json(allocation_dto(channel, bits.as_ref(), now_ms()))))
}

/// The event's allocations (admin), with seat counts and release times.
#[utoipa::path(get, path = "/v1/events/{event_id}/allocations", tag = "allocations",
    params(("event_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Page<AllocationDto>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_allocations(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(event_id): Path<String>,
) -> Result<axum::Json<Page<AllocationDto>>, ApiError> {
    let event = parse_event_id(&event_id)?;
    let entry = state.catalog.event(state.store.as_ref(), event).await?;
    let available = state.inventory.availability(event).await.ok();
    let bits = available.and_then(|a| Bitmap::from_bytes(&a.bitmap, entry.map.len()));
    let now = now_ms();
    let items = entry.allocations.channels().iter().map(|c| allocation_dto(c, bits.as_ref(), now)).collect();
    Ok(axum::Json(Page { items, next_cursor: None }))
}

/// Creates presale codes for an allocation (admin). The codes are answered once; the
/// server keeps only their digests.
#[utoipa::path(post, path = "/v1/events/{event_id}/presale-codes", tag = "allocations",
    params(("event_id" = String, Path)), request_body = PresaleCodesBody, security(("bearer" = [])),
    responses((status = 201, body = PresaleCodesDto),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "unknown event or ALLOCATION_NOT_FOUND", body = ErrorBody)))]
async fn create_codes(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(event_id): Path<String>,
    ApiJson(body): ApiJson<PresaleCodesBody>,
) -> Result<(StatusCode, axum::Json<PresaleCodesDto>), ApiError> {
    if !(1..=MAX_CODES_PER_REQUEST).contains(&body.count) {
        return Err(ApiError::invalid(format!("count must be 1 to {MAX_CODES_PER_REQUEST}"))
            .with("limit", MAX_CODES_PER_REQUEST));
    }
    for (field, value) in [("max_seats_per_code", body.max_seats_per_code), ("max_uses", body.max_uses)] {
        if !(1..=MAX_CODE_LIMIT).contains(&value) {
            return Err(ApiError::invalid(format!("{field} must be 1 to {MAX_CODE_LIMIT}"))
                .with("limit", MAX_CODE_LIMIT));
        }
    }
    let expires_at = parse_time("expires_at", &body.expires_at)?;
    let now = now_ms();
    if expires_at <= now {
        return Err(ApiError::invalid("expires_at must be in the future"));
    }
    let event = parse_event_id(&event_id)?;
    let entry = state.catalog.event(state.store.as_ref(), event).await?;
    if entry.allocations.find(&body.allocation).is_none() {
        return Err(allocation_not_found(&body.allocation));
    }
    let mut codes: Vec<String> = Vec::with_capacity(body.count as usize);
    let mut seen = std::collections::HashSet::with_capacity(body.count as usize);
    while codes.len() < body.count as usize {
        let code = rules::new_code();
        if seen.insert(code.clone()) {
            codes.push(code);
        }
    }
    let code_hashes = codes.iter().map(|c| rules::code_hash(&state, event, c)).collect();
    let new = NewPresaleCodes {
        event,
        allocation: body.allocation.clone(),
        code_hashes,
        max_seats_per_code: body.max_seats_per_code,
        max_uses: body.max_uses,
        expires_at,
    };
    match state.store.create_presale_codes(new).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(allocation_not_found(&body.allocation)),
        Err(other) => return Err(other.into()),
    }
    tracing::info!(event = %event, allocation = %body.allocation, count = body.count, "presale codes created");
    Ok((StatusCode::CREATED, axum::Json(PresaleCodesDto { codes })))
}

fn allocation_not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ALLOCATION_NOT_FOUND",
        format!("no allocation {name:?} in this event"),
    )
}

// --- entitlement ---

/// A use of a presale code counted for a hold being made.
pub struct CodeUse {
    hash: String,
    seats: u32,
    channel: Arc<Bitmap>,
}

/// What a hold may take: the seats blocked for it, and the code use it counted.
pub struct HoldEntitlement {
    pub blocked: Option<Arc<Bitmap>>,
    pub code_use: Option<CodeUse>,
}

/// Decides what a hold may take (see `crate::allocations`). A code, when one came, is
/// checked first, whatever the seats: a wrong one answers `403 NOT_ENTITLED` (or `429`).
/// A named seat of an allocation in force that the caller is not entitled to answers
/// `403 NOT_ENTITLED`. A valid code of an allocation in force is counted (one use, the
/// hold's seats) when the hold names one of its seats, or asks for best available; an
/// exhausted code answers `403 NOT_ENTITLED` like a wrong one.
pub async fn entitle_hold(
    state: &AppState,
    entry: &EventEntry,
    caller: &Caller,
    code: Option<&str>,
    selection: &Selection,
    now: UnixMs,
) -> Result<HoldEntitlement, ApiError> {
    let allocations = &entry.allocations;
    let event = entry.event.id;
    let valid = match code {
        Some(raw) => Some(check_code(state, event, &caller.user, raw, now).await?),
        None => None,
    };
    if allocations.is_empty() {
        return Ok(HoldEntitlement { blocked: None, code_use: None });
    }
    let code_channel =
        valid.as_ref().and_then(|v| allocations.find(&v.record.allocation)).filter(|c| c.in_force(now));
    let blocked = allocations
        .blocked(now, |c| c.admits_role(caller) || code_channel.is_some_and(|open| open.name == c.name));
    if let (Selection::Seats(seats), Some(mask)) = (selection, &blocked) {
        let refused: Vec<String> =
            seats.iter().filter(|&&s| mask.is_available(s)).map(|&s| entry.map.label(s)).collect();
        if !refused.is_empty() {
            metrics::counter!("boxoffice_holds_total", "result" => "not_entitled").increment(1);
            return Err(not_entitled().with("seats", refused));
        }
    }
    let mut code_use = None;
    if let (Some(valid), Some(channel)) = (valid, code_channel) {
        let touches = match selection {
            Selection::Seats(seats) => seats.iter().any(|&s| channel.seats.is_available(s)),
            Selection::BestAvailable { .. } => true,
        };
        if touches {
            let seats = selection.seat_count();
            if !state.store.use_presale_code(event, &valid.hash, seats, now).await? {
                return Err(failed_attempt(state, &caller.user, now).await);
            }
            code_use = Some(CodeUse { hash: valid.hash, seats, channel: channel.seats.clone() });
        }
    }
    Ok(HoldEntitlement { blocked, code_use })
}

/// Settles a counted code use once the hold is answered: given back when no hold was
/// made, or when best available took none of the allocation's seats.
pub async fn settle_code_use(
    state: &AppState,
    entry: &EventEntry,
    code_use: Option<CodeUse>,
    held: Option<&[u32]>,
) {
    let Some(code_use) = code_use else { return };
    let used = held.is_some_and(|seats| seats.iter().any(|&s| code_use.channel.is_available(s)));
    if used {
        metrics::counter!("boxoffice_presale_code_uses_total").increment(1);
        return;
    }
    if let Err(e) = state.store.return_presale_code_use(entry.event.id, &code_use.hash, code_use.seats).await
    {
        // The use stays spent: the buyer's code has one hold fewer, never one more.
        tracing::warn!(event = %entry.event.id, error = %e, "a presale code use could not be given back");
    }
}

/// Checks the caller of `GET /v1/events/{id}/availability?allocation=NAME`: a bearer token
/// (401), the allocation (404), then a role it names or a `Presale-Code` header with a
/// valid code of it (403 NOT_ENTITLED, wrong codes rate-limited like holds' ones).
pub async fn check_view_entitlement(
    state: &AppState,
    entry: &EventEntry,
    name: &str,
    headers: &HeaderMap,
    now: UnixMs,
) -> Result<(), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "an allocation's view needs Authorization: Bearer <token>",
            )
        })?;
    let caller = state.auth.verify(token.trim())?;
    let channel = entry.allocations.find(name).ok_or_else(|| allocation_not_found(name))?;
    if channel.admits_role(&caller) {
        return Ok(());
    }
    let Some(code) = headers.get("presale-code").and_then(|h| h.to_str().ok()) else {
        return Err(not_entitled());
    };
    let valid = check_code(state, entry.event.id, &caller.user, code, now).await?;
    if valid.record.allocation != name {
        return Err(failed_attempt(state, &caller.user, now).await);
    }
    Ok(())
}
