//! The sold-out waitlist over HTTP: `POST /v1/events/{id}/waitlist` (join), `GET` and
//! `DELETE /v1/events/{id}/waitlist/{waitlist_id}` (state, leave) and the entry's
//! server-sent-events form `.../stream`. Entries are their owner's (and admins'); anyone
//! else gets 404. See [`crate::waitlist`] and docs/waitlist.md.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use boxoffice_store::{NewWaitlistEntry, WaitlistEntry, WaitlistState};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::catalog::EventEntry;
use crate::error::ApiError;
use crate::extract::JsonWithBytes;
use crate::http::dto::{ErrorBody, rfc3339};
use crate::http::events::parse_event_id;
use crate::live::{SSE_KEEP_ALIVE, ViewerSlot};
use crate::waitlist::{self as wl, JoinRefused, MAX_GROUP_SIZE, MAX_SECTIONS_PER_ENTRY, MIN_GROUP_SIZE};
use crate::workers::now_ms;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(join)).routes(routes!(get_entry, leave)).routes(routes!(entry_stream))
}

/// `POST /v1/events/{id}/waitlist`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinWaitlistBody {
    /// Seats wanted together, 1-8.
    pub group_size: u32,
    /// Only seats in these sections (by name); absent or empty: any section.
    #[serde(default)]
    pub sections: Option<Vec<String>>,
    /// Highest price per seat, in minor units of the event's currency.
    #[serde(default)]
    pub max_price: Option<i64>,
    /// The group's seats adjacent in one row (default true).
    #[serde(default)]
    pub adjacent: Option<bool>,
}

/// A waitlist entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct WaitlistEntryDto {
    pub waitlist_id: String,
    pub event_id: String,
    /// `waiting` | `offered` | `expired` | `done` | `left`.
    pub state: String,
    /// Place among the waiting entries (1 = next), while waiting.
    pub position: Option<u64>,
    pub group_size: u32,
    pub sections: Vec<String>,
    pub max_price: Option<i64>,
    pub adjacent: bool,
    /// The hold offered (a normal hold: check it out), once offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<String>,
    /// When the offer's hold expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

async fn dto(state: &AppState, entry: &WaitlistEntry) -> Result<WaitlistEntryDto, ApiError> {
    let position = match entry.state {
        WaitlistState::Waiting => Some(state.store.waitlist_position(entry.event, entry.seq).await?),
        _ => None,
    };
    let offered =
        matches!(entry.state, WaitlistState::Offered | WaitlistState::Done | WaitlistState::Expired);
    Ok(WaitlistEntryDto {
        waitlist_id: entry.id.clone(),
        event_id: entry.event.to_string(),
        state: entry.state.as_str().to_owned(),
        position,
        group_size: entry.group_size,
        sections: entry.sections.clone(),
        max_price: entry.max_price,
        adjacent: entry.adjacent,
        hold_id: entry.hold.filter(|_| offered).map(|h| h.to_string()),
        expires_at: entry.offer_expires_at.filter(|_| offered).map(rfc3339),
    })
}

fn new_entry_id() -> String {
    let bits: u128 = rand::random::<u128>() >> 24;
    format!("wl_{bits:026x}")
}

fn valid_entry_id(raw: &str) -> bool {
    raw.strip_prefix("wl_").is_some_and(|hex| hex.len() == 26 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Joins the event's waitlist (the event, or the sections named, must be sold out).
///
/// Freed seats are offered in join order to the first entry they fit (docs/waitlist.md):
/// `group_size` seats, in the entry's sections, each at most `max_price`, adjacent in one
/// row unless `adjacent` is false. An offer is a hold in the fan's name for the offer time
/// (15 minutes by default), announced on the entry's stream and by mail. Joining again
/// while an entry is waiting or offered returns it (200).
#[utoipa::path(post, path = "/v1/events/{event_id}/waitlist", tag = "waitlist", request_body = JoinWaitlistBody,
    params(("event_id" = String, Path)), security(("bearer" = [])),
    responses((status = 201, body = WaitlistEntryDto), (status = 200, description = "the caller's active entry", body = WaitlistEntryDto),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "NOT_SOLD_OUT (seats are on sale: hold them), NOT_ON_SALE, WAITLIST_FULL (with `limit`)", body = ErrorBody)))]
async fn join(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path(event_id): Path<String>,
    body: JsonWithBytes<JoinWaitlistBody>,
) -> Result<Response, ApiError> {
    let body = body.value;
    if !(MIN_GROUP_SIZE..=MAX_GROUP_SIZE).contains(&body.group_size) {
        return Err(ApiError::invalid(format!(
            "group_size must be from {MIN_GROUP_SIZE} to {MAX_GROUP_SIZE}"
        ))
        .with("limit", MAX_GROUP_SIZE));
    }
    if body.group_size > state.limits.max_seats_per_user_per_event {
        return Err(ApiError::invalid(format!(
            "group_size must not pass the limit of {} seats per user",
            state.limits.max_seats_per_user_per_event
        )));
    }
    let sections = body.sections.unwrap_or_default();
    if sections.len() > MAX_SECTIONS_PER_ENTRY {
        return Err(ApiError::invalid(format!("at most {MAX_SECTIONS_PER_ENTRY} sections")));
    }
    for (i, name) in sections.iter().enumerate() {
        if sections[..i].contains(name) {
            return Err(ApiError::invalid(format!("section {name:?} is named twice")));
        }
    }
    if body.max_price.is_some_and(|p| p < 0) {
        return Err(ApiError::invalid("max_price must not be negative"));
    }
    let event = parse_event_id(&event_id)?;
    let entry: Arc<EventEntry> = state.catalog.event(state.store.as_ref(), event).await?;
    for name in &sections {
        if entry.map.section_index(name).is_none() {
            return Err(
                ApiError::invalid(format!("no section {name:?} in this event")).with("section", name.clone())
            );
        }
    }
    crate::http::holds::check_on_sale(&entry, now_ms())?;
    let new = NewWaitlistEntry {
        id: new_entry_id(),
        event,
        user: caller.user.clone(),
        email: caller.email.clone(),
        group_size: body.group_size,
        sections,
        max_price: body.max_price,
        adjacent: body.adjacent.unwrap_or(true),
        now: now_ms(),
    };
    let criteria = criteria(&entry, &new);
    match wl::join(&state, new, &entry.map, criteria).await {
        Ok((joined, created)) => {
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            Ok((status, axum::Json(dto(&state, &joined).await?)).into_response())
        }
        Err(JoinRefused::NotSoldOut) => Err(ApiError::conflict(
            "NOT_SOLD_OUT",
            "seats are on sale for this event (or these sections): hold them instead",
        )),
        Err(JoinRefused::Full(limit)) => {
            Err(ApiError::conflict("WAITLIST_FULL", "this event's waitlist is full").with("limit", limit))
        }
        Err(JoinRefused::Inventory(e)) => Err(e.into()),
        Err(JoinRefused::Store(e)) => Err(e.into()),
    }
}

/// The matcher's criteria for a join (section names were checked against the map).
fn criteria(entry: &EventEntry, new: &NewWaitlistEntry) -> wl::Criteria {
    let mut sections: Vec<u16> = new.sections.iter().filter_map(|n| entry.map.section_index(n)).collect();
    sections.sort_unstable();
    wl::Criteria { group_size: new.group_size, sections, max_price: new.max_price, adjacent: new.adjacent }
}

/// The entry, for its owner or an admin; 404 to anyone else.
async fn owned_entry(
    state: &AppState,
    caller: &Caller,
    event_id: &str,
    waitlist_id: &str,
) -> Result<WaitlistEntry, ApiError> {
    let event = parse_event_id(event_id)?;
    if !valid_entry_id(waitlist_id) {
        return Err(ApiError::not_found("waitlist entry"));
    }
    match state.store.waitlist_entry(waitlist_id).await? {
        Some(entry) if entry.event == event && caller.may_see(&entry.user) => Ok(entry),
        _ => Err(ApiError::not_found("waitlist entry")),
    }
}

/// The entry's state: `waiting` (with `position`), `offered` (with `hold_id` and
/// `expires_at`), `expired` (the offer was not taken), `done` (bought) or `left`.
#[utoipa::path(get, path = "/v1/events/{event_id}/waitlist/{waitlist_id}", tag = "waitlist",
    params(("event_id" = String, Path), ("waitlist_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = WaitlistEntryDto), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_entry(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path((event_id, waitlist_id)): Path<(String, String)>,
) -> Result<axum::Json<WaitlistEntryDto>, ApiError> {
    let entry = owned_entry(&state, &caller, &event_id, &waitlist_id).await?;
    Ok(axum::Json(dto(&state, &entry).await?))
}

/// Leaves the waitlist (an open offer's hold is released, its seats go to the next entry).
#[utoipa::path(delete, path = "/v1/events/{event_id}/waitlist/{waitlist_id}", tag = "waitlist",
    params(("event_id" = String, Path), ("waitlist_id" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn leave(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path((event_id, waitlist_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let entry = owned_entry(&state, &caller, &event_id, &waitlist_id).await?;
    wl::leave(&state, &entry).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The entry as server-sent events (owner only): `event: waiting` (with the position)
/// whenever it changes, `event: offered` (with `hold_id` and `expires_at`) when seats are
/// offered, then `event: done`, `expired` or `left`, and the stream ends.
#[utoipa::path(get, path = "/v1/events/{event_id}/waitlist/{waitlist_id}/stream", tag = "waitlist",
    params(("event_id" = String, Path), ("waitlist_id" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "SSE stream of `waiting`, `offered`, then `done`, `expired` or `left`", content_type = "text/event-stream"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, description = "too many streams from this address", body = ErrorBody),
        (status = 503, description = "the server follows its maximum of streams", body = ErrorBody)))]
async fn entry_stream(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path((event_id, waitlist_id)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    let entry = owned_entry(&state, &caller, &event_id, &waitlist_id).await?;
    let slot = state.live.admit(&state, peer.ip())?;
    let follower = Follower {
        state,
        id: entry.id,
        last: None,
        first: true,
        last_sent: Instant::now(),
        done: false,
        _slot: slot,
    };
    Ok(crate::live::sse_response(futures_util::stream::unfold(follower, next_frame)))
}

/// How often a follower looks at the store without being woken (an offer made on another
/// node, or a missed wake-up).
const FOLLOW_POLL: Duration = Duration::from_millis(500);

struct Follower {
    state: AppState,
    id: String,
    /// The state and position last sent.
    last: Option<(WaitlistState, Option<u64>)>,
    first: bool,
    last_sent: Instant,
    done: bool,
    _slot: ViewerSlot,
}

async fn next_frame(mut f: Follower) -> Option<(Result<Bytes, Infallible>, Follower)> {
    if f.done {
        return None;
    }
    loop {
        let state = f.state.clone();
        let changed = state.waitlists.changed.notified();
        if !f.first {
            let _ = tokio::time::timeout(FOLLOW_POLL, changed).await;
        }
        f.first = false;
        let entry = f.state.store.waitlist_entry(&f.id).await.ok()??;
        let dto = dto(&f.state, &entry).await.ok()?;
        let current = (entry.state, dto.position);
        if f.last == Some(current) {
            if f.last_sent.elapsed() < SSE_KEEP_ALIVE {
                continue;
            }
            f.last_sent = Instant::now();
            return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), f));
        }
        f.last = Some(current);
        f.done = !entry.state.is_active();
        let data = serde_json::to_string(&dto).expect("waitlist entries serialize");
        f.last_sent = Instant::now();
        return Some((Ok(Bytes::from(format!("event: {}\ndata: {data}\n\n", entry.state.as_str()))), f));
    }
}
