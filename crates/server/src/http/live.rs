//! `GET /v1/events/{id}/availability/stream`: the live seat map over server-sent events
//! (see [`crate::live`] for the feed behind it).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use boxoffice_core::EventId;
use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::http::dto::ErrorBody;
use crate::http::events::parse_event_id;
use crate::live::{EventFeed, Frame, SSE_KEEP_ALIVE, SSE_MAX_CATCH_UPS, ViewerSlot, catch_up_frame};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(availability_stream))
}

/// `Last-Event-ID: <epoch>.<version>`: a version counts only within the event's current
/// epoch (a new one starts when the event's state is rebuilt, or the embedded server
/// restarts).
fn resume_id(headers: &HeaderMap) -> Option<(u64, u64)> {
    let id = headers.get("last-event-id")?.to_str().ok()?;
    let (e, v) = id.trim().split_once('.')?;
    Some((e.parse().ok()?, v.parse().ok()?))
}

/// Live availability: `event: snapshot` first (or, resuming with `Last-Event-ID`, the
/// delta since that version), then `event: delta` frames (`from`, `version`,
/// `available`, `unavailable`) at most every 100 ms; a snapshot may come again at any
/// time. Ids are `<epoch>.<version>`; `: keep-alive` comments every 15 s.
#[utoipa::path(get, path = "/v1/events/{event_id}/availability/stream", tag = "availability",
    params(("event_id" = String, Path), ("Last-Event-ID" = Option<String>, Header)),
    responses(
        (status = 200, description = "SSE stream", content_type = "text/event-stream"),
        (status = 404, body = ErrorBody),
        (status = 429, description = "too many streams from this address", body = ErrorBody),
        (status = 503, description = "the server follows its maximum of streams", body = ErrorBody)))]
async fn availability_stream(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let event = parse_event_id(&event_id)?;
    state.catalog.event(state.store.as_ref(), event).await?;
    let slot = state.live.admit(&state, peer.ip())?;
    let feed = state.live.feed(&state, event);
    // Subscribe before reading the start, so no frame after it is missed.
    let rx = feed.tx.subscribe();
    let resume = resume_id(&headers);
    let (current, mask) =
        crate::live::public_feed(&state, event, resume.map_or(u64::MAX, |(_, v)| v)).await?;
    let epoch = current.availability.epoch;
    let resume = resume.filter(|&(e, _)| e == epoch).map(|(_, v)| v);
    // A resumed viewer's map may predate an allocation or its release (the id does not
    // say which mask it was drawn with): for an event with allocations it starts again
    // with a snapshot.
    let resumable = mask == 0;
    let first = match (resume, current.changes.as_ref()) {
        (Some(v), Some(_)) if v == current.availability.version && resumable => None,
        (Some(_), Some(changes)) if resumable => {
            Some(catch_up_frame(epoch, &current.availability, Some(changes), mask))
        }
        _ => Some(catch_up_frame(epoch, &current.availability, None, mask)),
    };
    let viewer = Viewer {
        state,
        event,
        _feed: feed,
        rx,
        epoch,
        version: current.availability.version,
        mask,
        catch_ups: 0,
        first: first.map(|f| f.bytes),
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(viewer, next_frame);
    Ok(crate::live::sse_response(stream))
}

struct Viewer {
    state: AppState,
    event: EventId,
    /// Keeps the event's feed running while this viewer watches.
    _feed: Arc<EventFeed>,
    rx: tokio::sync::broadcast::Receiver<Arc<Frame>>,
    /// The epoch and version the viewer's map is at.
    epoch: u64,
    version: u64,
    /// The allocation mask the viewer's map is drawn with.
    mask: u64,
    catch_ups: u32,
    first: Option<Bytes>,
    _slot: ViewerSlot,
}

async fn next_frame(mut viewer: Viewer) -> Option<(Result<Bytes, Infallible>, Viewer)> {
    if let Some(first) = viewer.first.take() {
        return Some((Ok(first), viewer));
    }
    loop {
        let received = match tokio::time::timeout(SSE_KEEP_ALIVE, viewer.rx.recv()).await {
            Err(_idle) => return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), viewer)),
            Ok(received) => received,
        };
        match received {
            Ok(frame) => {
                if frame.epoch != viewer.epoch {
                    // The event was rebuilt: only a snapshot of the new epoch follows on.
                    if frame.snapshot {
                        (viewer.epoch, viewer.version, viewer.mask) = (frame.epoch, frame.to, frame.mask);
                        return Some((Ok(frame.bytes.clone()), viewer));
                    }
                    return catch_up(viewer).await;
                }
                // A snapshot of the same version under a new allocation mask (a release)
                // still changes the viewer's map.
                if frame.to < viewer.version || (frame.to == viewer.version && frame.mask == viewer.mask) {
                    continue;
                }
                if frame.snapshot || (frame.from == viewer.version && frame.mask == viewer.mask) {
                    (viewer.version, viewer.mask) = (frame.to, frame.mask);
                    return Some((Ok(frame.bytes.clone()), viewer));
                }
                // Joined between two frames: its own delta bridges the gap.
                return catch_up(viewer).await;
            }
            Err(RecvError::Lagged(_)) => {
                viewer.catch_ups += 1;
                if viewer.catch_ups > SSE_MAX_CATCH_UPS {
                    metrics::counter!("boxoffice_sse_dropped_total").increment(1);
                    tracing::debug!(event = %viewer.event, "dropped a live map viewer that keeps falling behind");
                    return None;
                }
                return catch_up(viewer).await;
            }
            Err(RecvError::Closed) => return None,
        }
    }
}

async fn catch_up(mut viewer: Viewer) -> Option<(Result<Bytes, Infallible>, Viewer)> {
    let (current, mask) = crate::live::public_feed(&viewer.state, viewer.event, viewer.version).await.ok()?;
    let epoch = current.availability.epoch;
    let changes = current.changes.as_ref().filter(|_| epoch == viewer.epoch && mask == viewer.mask);
    let frame = catch_up_frame(epoch, &current.availability, changes, mask);
    viewer.epoch = epoch;
    viewer.mask = mask;
    if frame.snapshot {
        metrics::counter!("boxoffice_sse_resnapshots_total").increment(1);
    }
    viewer.version = current.availability.version;
    Some((Ok(frame.bytes), viewer))
}
