//! The waiting room over HTTP: `POST /v1/events/{id}/queue/challenge` (proof of work),
//! `POST /v1/events/{id}/queue` (join), `GET /v1/events/{id}/queue/{queue_id}` (status and
//! heartbeat) and its server-sent-events form `.../stream`. See [`crate::waiting_room`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use boxoffice_core::{EventId, UnixMs, UserId};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::catalog::EventEntry;
use crate::error::ApiError;
use crate::extract::JsonWithBytes;
use crate::http::dto::{ChallengeDto, ErrorBody, JoinQueueBody, PowBody, QueueEntryDto, rfc3339};
use crate::http::events::parse_event_id;
use crate::live::{SSE_KEEP_ALIVE, ViewerSlot};
use crate::waiting_room::{EntryView, Phase, Policy, QueueId, format_queue_id, now_ms, parse_queue_id, pow};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(challenge))
        .routes(routes!(join))
        .routes(routes!(get_entry))
        .routes(routes!(entry_stream))
}

/// A JSON body that may be absent (no body, or `Content-Length: 0`).
pub struct OptionalJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let headers = req.headers();
        let empty = match headers.get(header::CONTENT_LENGTH) {
            Some(length) => length.as_bytes() == b"0",
            None => !headers.contains_key(header::TRANSFER_ENCODING),
        };
        if empty {
            return Ok(OptionalJson(None));
        }
        JsonWithBytes::from_request(req, state).await.map(|j| OptionalJson(Some(j.value)))
    }
}

/// Joins and challenges need the event to sell (or to be about to) and its queue on.
fn check_queue_open(entry: &EventEntry, now: UnixMs) -> Result<(), ApiError> {
    let event = &entry.event;
    if event.status == boxoffice_store::EventStatus::Cancelled {
        return Err(ApiError::conflict("NOT_ON_SALE", "the event is cancelled"));
    }
    if now >= event.starts_at {
        return Err(ApiError::conflict("NOT_ON_SALE", "the event has started"));
    }
    if !event.queue.enabled {
        return Err(ApiError::conflict(
            "QUEUE_DISABLED",
            "this event has no waiting room: hold seats directly, no admission token needed",
        ));
    }
    Ok(())
}

fn entry_dto(state: &AppState, event: EventId, view: &EntryView) -> QueueEntryDto {
    let token =
        view.admitted_until.map(|until| (state.admission.sign(event, &view.user, until), rfc3339(until)));
    let (admission_token, admission_expires_at) = token.unzip();
    QueueEntryDto {
        queue_id: format_queue_id(view.id),
        event_id: event.to_string(),
        state: view.phase.as_str().to_owned(),
        position: view.position,
        eta_seconds: view.eta_seconds,
        poll_after_seconds: view.poll_after_seconds,
        admission_token,
        admission_expires_at,
    }
}

/// A proof-of-work challenge for joining this event's queue (single-use, expires). The
/// answer is a `nonce` such that SHA-256(challenge || nonce) starts with `bits` zero bits.
#[utoipa::path(post, path = "/v1/events/{event_id}/queue/challenge", tag = "queue",
    params(("event_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = ChallengeDto), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "NOT_ON_SALE, QUEUE_DISABLED", body = ErrorBody),
        (status = 503, description = "OVERLOADED: too many challenges outstanding; QUEUE_UNAVAILABLE", body = ErrorBody)))]
async fn challenge(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path(event_id): Path<String>,
) -> Result<axum::Json<ChallengeDto>, ApiError> {
    let event = parse_event_id(&event_id)?;
    let entry = state.catalog.event(state.store.as_ref(), event).await?;
    let now = now_ms(&state);
    check_queue_open(&entry, now)?;
    let issued = state.waiting_room.issue_challenge(event, &caller.user, now).await?;
    Ok(axum::Json(ChallengeDto {
        challenge: issued.challenge,
        bits: entry.event.queue.proof_of_work_bits,
        expires_at: rfc3339(issued.expires_ms),
    }))
}

/// Checks a join's proof of work and uses its challenge up.
async fn check_pow(
    state: &AppState,
    event: EventId,
    user: &UserId,
    pow: Option<PowBody>,
    bits: u8,
    now: UnixMs,
) -> Result<(), ApiError> {
    let refuse = |code: &'static str, message: &str| {
        ApiError::new(StatusCode::FORBIDDEN, code, message.to_owned())
            .with("challenge", format!("/v1/events/{event}/queue/challenge"))
            .with("bits", bits)
    };
    let Some(pow) = pow else {
        return Err(refuse(
            "POW_REQUIRED",
            "joining this queue needs a proof of work: get a challenge first",
        ));
    };
    if !pow::verify(&pow.challenge, &pow.nonce, bits) {
        return Err(refuse("POW_INVALID", "the nonce does not solve the challenge"));
    }
    if !state.waiting_room.take_challenge(event, user, &pow.challenge, now).await? {
        return Err(refuse("POW_INVALID", "the challenge is unknown, used already, expired or not yours"));
    }
    Ok(())
}

/// Joins the event's waiting room (or returns the caller's entry: one per user). Before
/// the onsale the entry is in the pre-queue (no position; the order is drawn at the
/// onsale); after it, at the back of the line.
#[utoipa::path(post, path = "/v1/events/{event_id}/queue", tag = "queue",
    request_body(content = JoinQueueBody, description = "optional: `pow` when the event asks for proof of work"),
    params(("event_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = QueueEntryDto), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "POW_REQUIRED, POW_INVALID", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "NOT_ON_SALE, QUEUE_DISABLED", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED", body = ErrorBody),
        (status = 503, description = "QUEUE_FULL, QUEUE_UNAVAILABLE (Retry-After)", body = ErrorBody)))]
async fn join(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path(event_id): Path<String>,
    OptionalJson(body): OptionalJson<JoinQueueBody>,
) -> Result<axum::Json<QueueEntryDto>, ApiError> {
    let body = body.unwrap_or_default();
    let event = parse_event_id(&event_id)?;
    let entry = state.catalog.event(state.store.as_ref(), event).await?;
    let now = now_ms(&state);
    check_queue_open(&entry, now)?;
    let policy = Policy::of(&entry.event);
    let bits = entry.event.queue.proof_of_work_bits;
    // A member joining again gets their entry without paying again.
    if bits > 0 && state.waiting_room.entry_of(event, &caller.user, &policy, now).await?.is_none() {
        check_pow(&state, event, &caller.user, body.pow, bits, now).await?;
    }
    let view = state.waiting_room.join(event, &caller.user, &policy, now).await?;
    Ok(axum::Json(entry_dto(&state, event, &view)))
}

/// The ids of an entry's path; 404 for anything malformed.
async fn entry_path(
    state: &AppState,
    event_id: &str,
    queue_id: &str,
) -> Result<(Arc<EventEntry>, QueueId), ApiError> {
    let event = parse_event_id(event_id)?;
    let id = parse_queue_id(queue_id).ok_or_else(|| ApiError::not_found("queue entry"))?;
    let entry = state.catalog.event(state.store.as_ref(), event).await?;
    Ok((entry, id))
}

/// The entry's state, position and ETA (owner only; it is also the heartbeat: an entry
/// not polled for 3 times `poll_after_seconds` expires). Admitted entries carry their
/// admission token.
#[utoipa::path(get, path = "/v1/events/{event_id}/queue/{queue_id}", tag = "queue",
    params(("event_id" = String, Path), ("queue_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = QueueEntryDto), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, description = "QUEUE_UNAVAILABLE: the shared waiting room did not answer (Retry-After)", body = ErrorBody)))]
async fn get_entry(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path((event_id, queue_id)): Path<(String, String)>,
) -> Result<axum::Json<QueueEntryDto>, ApiError> {
    let (entry, id) = entry_path(&state, &event_id, &queue_id).await?;
    let event = entry.event.id;
    let policy = Policy::of(&entry.event);
    let view = state.waiting_room.view(event, id, &caller.user, &policy, now_ms(&state)).await?;
    if !caller.may_see(&view.user) {
        return Err(ApiError::not_found("queue entry"));
    }
    Ok(axum::Json(entry_dto(&state, event, &view)))
}

/// The entry as server-sent events (owner only): `event: position` whenever the state or
/// position changes, then `event: admitted` with the admission token (or `event:
/// expired`) and the stream ends. An open stream is the entry's heartbeat.
#[utoipa::path(get, path = "/v1/events/{event_id}/queue/{queue_id}/stream", tag = "queue",
    params(("event_id" = String, Path), ("queue_id" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "SSE stream of `position`, then `admitted` or `expired`", content_type = "text/event-stream"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, description = "too many streams from this address", body = ErrorBody),
        (status = 503, description = "the server follows its maximum of streams; QUEUE_UNAVAILABLE", body = ErrorBody)))]
async fn entry_stream(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path((event_id, queue_id)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    let (entry, id) = entry_path(&state, &event_id, &queue_id).await?;
    let event = entry.event.id;
    let view =
        state.waiting_room.view(event, id, &caller.user, &Policy::of(&entry.event), now_ms(&state)).await?;
    if view.user != caller.user {
        return Err(ApiError::not_found("queue entry"));
    }
    let slot = state.live.admit(&state, peer.ip())?;
    let follower = Follower {
        state,
        event,
        id,
        user: caller.user.clone(),
        last: None,
        sleep: Duration::ZERO,
        last_sent: Instant::now(),
        done: false,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(follower, next_frame);
    Ok(crate::live::sse_response(stream))
}

struct Follower {
    state: AppState,
    event: EventId,
    id: QueueId,
    user: UserId,
    /// The state and position last sent.
    last: Option<(Phase, Option<u64>)>,
    /// Until the next look at the entry.
    sleep: Duration,
    last_sent: Instant,
    done: bool,
    _slot: ViewerSlot,
}

fn frame(event: &str, dto: &QueueEntryDto) -> Bytes {
    let data = serde_json::to_string(dto).expect("queue entries serialize");
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// How long a follower sleeps between looks: often near the front, at most the advised
/// poll interval (so the open stream keeps the entry alive), and in the pre-queue until
/// the onsale.
fn follow_interval(view: &EntryView, policy: &Policy, now: UnixMs) -> Duration {
    let poll_s = view.poll_after_seconds.unwrap_or(1).max(1);
    let seconds = match view.phase {
        Phase::Prequeue => poll_s.min((policy.onsale_at.saturating_sub(now) / 1000).max(1)),
        _ => (view.eta_seconds.unwrap_or(0) / 10).clamp(1, poll_s),
    };
    Duration::from_secs(seconds)
}

async fn next_frame(mut f: Follower) -> Option<(Result<Bytes, Infallible>, Follower)> {
    if f.done {
        return None;
    }
    loop {
        tokio::time::sleep(f.sleep).await;
        let entry = f.state.catalog.event(f.state.store.as_ref(), f.event).await.ok()?;
        let policy = Policy::of(&entry.event);
        let now = now_ms(&f.state);
        let view = f.state.waiting_room.view(f.event, f.id, &f.user, &policy, now).await.ok()?;
        f.sleep = follow_interval(&view, &policy, now);
        let dto = entry_dto(&f.state, f.event, &view);
        let bytes = match view.phase {
            Phase::Admitted => {
                f.done = true;
                frame("admitted", &dto)
            }
            Phase::Expired => {
                f.done = true;
                frame("expired", &dto)
            }
            Phase::Prequeue | Phase::Waiting => {
                let current = (view.phase, view.position);
                if f.last == Some(current) {
                    if f.last_sent.elapsed() < SSE_KEEP_ALIVE {
                        continue;
                    }
                    Bytes::from_static(b": keep-alive\n\n")
                } else {
                    f.last = Some(current);
                    frame("position", &dto)
                }
            }
        };
        f.last_sent = Instant::now();
        return Some((Ok(bytes), f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(phase: Phase, eta: Option<u64>, poll: Option<u64>) -> EntryView {
        EntryView {
            id: 1,
            user: UserId::parse("alice").unwrap(),
            phase,
            position: eta,
            eta_seconds: eta,
            poll_after_seconds: poll,
            admitted_until: None,
        }
    }

    #[test]
    fn a_follower_looks_often_near_the_front_and_never_later_than_the_advised_poll() {
        let policy = Policy { admit_rate_per_second: 1, token_ttl_ms: 1, max_length: 1, onsale_at: 100_000 };
        let now = 0;
        assert_eq!(
            follow_interval(&view(Phase::Waiting, Some(3), Some(1)), &policy, now),
            Duration::from_secs(1)
        );
        assert_eq!(
            follow_interval(&view(Phase::Waiting, Some(150), Some(30)), &policy, now),
            Duration::from_secs(15)
        );
        assert_eq!(
            follow_interval(&view(Phase::Waiting, Some(10_000), Some(30)), &policy, now),
            Duration::from_secs(30)
        );
        assert_eq!(
            follow_interval(&view(Phase::Prequeue, None, Some(30)), &policy, 95_000),
            Duration::from_secs(5),
            "wakes at the onsale"
        );
    }
}
