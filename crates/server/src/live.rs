//! The live seat map: one feed per event, shared by all of its viewers.
//!
//! A feed task wakes every `sse_interval_ms` (100 ms by default), asks the inventory
//! for the change since the version it last sent, renders it once as an SSE frame
//! (`Bytes`), and broadcasts that frame to every viewer: one serialization, many writes.
//! It sends a snapshot instead of a delta whenever the snapshot is smaller. A feed is
//! created by its first viewer and ends after its last.
//!
//! Each viewer starts with a snapshot (or, resuming with `Last-Event-ID`, the delta since
//! its version), then applies frames whose `from` is its version. A viewer that falls
//! behind (its broadcast buffer overflowed, or it joined between two frames) catches up
//! with a delta computed for it, or a snapshot when the change ring no longer reaches
//! back; one that keeps falling behind is dropped. Nobody waits for a slow viewer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine;
use boxoffice_core::EventId;
use boxoffice_engine::{Availability, Feed, SeatChanges};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::AppState;
use crate::error::ApiError;

/// Frames buffered per viewer before it counts as slow.
pub const SSE_BUFFER_FRAMES: usize = 64;
/// Idle time after which a comment keeps proxies from closing the stream.
pub const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Times a viewer may fall behind before it is dropped.
pub const SSE_MAX_CATCH_UPS: u32 = 8;

/// A `text/event-stream` response over a stream of ready-made frames, unbuffered by
/// proxies that honour `X-Accel-Buffering`.
pub fn sse_response<S>(frames: S) -> axum::response::Response
where
    S: futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
{
    use axum::http::{HeaderValue, header};
    let mut response = axum::response::Response::new(axum::body::Body::from_stream(frames));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// One rendered SSE frame and the versions it spans (within one epoch of the event).
#[derive(Debug)]
pub struct Frame {
    pub epoch: u64,
    pub from: u64,
    pub to: u64,
    pub snapshot: bool,
    pub bytes: Bytes,
    /// The allocation mask the frame was rendered with (`allocations::EventAllocations::
    /// mask_tag`): a delta continues only a map drawn with the same mask.
    pub mask: u64,
}

pub fn snapshot_frame(epoch: u64, availability: &Availability) -> Bytes {
    let b64 = base64::engine::general_purpose::STANDARD.encode(&availability.bitmap);
    Bytes::from(format!(
        "event: snapshot\nid: {epoch}.{v}\ndata: {{\"version\":{v},\"bitmap_base64\":\"{b64}\"}}\n\n",
        v = availability.version
    ))
}

pub fn delta_frame(epoch: u64, changes: &SeatChanges) -> Bytes {
    use std::fmt::Write;
    let mut out = String::with_capacity(96 + 7 * (changes.available.len() + changes.unavailable.len()));
    let _ = write!(
        out,
        "event: delta\nid: {epoch}.{to}\ndata: {{\"from\":{from},\"version\":{to},\"available\":[",
        from = changes.from,
        to = changes.to
    );
    join(&mut out, &changes.available);
    out.push_str("],\"unavailable\":[");
    join(&mut out, &changes.unavailable);
    out.push_str("]}\n\n");
    Bytes::from(out)
}

fn join(out: &mut String, seats: &[u32]) {
    use std::fmt::Write;
    for (i, seat) in seats.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{seat}");
    }
}

/// Length of a snapshot frame for `bitmap_bytes` bytes (to choose the smaller form).
fn snapshot_len(bitmap_bytes: usize) -> usize {
    bitmap_bytes.div_ceil(3) * 4 + 96
}

/// The frame that takes a viewer from `changes.from` to `changes.to`: a delta, or the
/// snapshot when that is smaller.
pub fn catch_up_frame(
    epoch: u64,
    availability: &Availability,
    changes: Option<&SeatChanges>,
    mask: u64,
) -> Frame {
    if let Some(changes) = changes {
        let delta = delta_frame(epoch, changes);
        if delta.len() <= snapshot_len(availability.bitmap.len()) {
            return Frame { epoch, from: changes.from, to: changes.to, snapshot: false, bytes: delta, mask };
        }
    }
    Frame {
        epoch,
        from: availability.version,
        to: availability.version,
        snapshot: true,
        bytes: snapshot_frame(epoch, availability),
        mask,
    }
}

/// The event's feed as the public sees it: the seats of allocations in force masked
/// (see `allocations.rs`), with the tag of that mask. The mask is evaluated at the time
/// of the call, so a release shows on the next read without any job.
pub async fn public_feed(state: &AppState, event: EventId, since: u64) -> Result<(Feed, u64), ApiError> {
    let entry = state.catalog.event(state.store.as_ref(), event).await?;
    let feed = state.inventory.feed(event, since).await?;
    let now = boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock);
    Ok(crate::allocations::visible_feed(&entry.allocations, feed, now))
}

/// The feed of one event.
pub struct EventFeed {
    pub event: EventId,
    pub tx: broadcast::Sender<Arc<Frame>>,
}

/// Every live feed, and the counts behind the viewer limits.
#[derive(Default)]
pub struct LiveHub {
    feeds: Mutex<HashMap<EventId, Weak<EventFeed>>>,
    clients: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

/// A viewer's place in the limits; released when the stream ends.
pub struct ViewerSlot {
    state: AppState,
    ip: IpAddr,
}

impl Drop for ViewerSlot {
    fn drop(&mut self) {
        let hub = &self.state.live;
        hub.clients.fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = hub.per_ip.lock();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        metrics::gauge!("boxoffice_sse_clients").decrement(1.0);
    }
}

impl LiveHub {
    /// Takes a viewer slot, or refuses: 503 at the total limit, 429 at the per-IP limit.
    pub fn admit(&self, state: &AppState, ip: IpAddr) -> Result<ViewerSlot, ApiError> {
        let max_total = state.config.sse_max_clients;
        let max_per_ip = state.config.sse_max_clients_per_ip;
        if self.clients.fetch_add(1, Ordering::Relaxed) >= max_total {
            self.clients.fetch_sub(1, Ordering::Relaxed);
            return Err(ApiError::unavailable(
                "SSE_CAPACITY",
                format!("this server follows at most {max_total} live seat maps at once; retry shortly"),
            )
            .retry_after(5));
        }
        {
            let mut per_ip = self.per_ip.lock();
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= max_per_ip {
                drop(per_ip);
                self.clients.fetch_sub(1, Ordering::Relaxed);
                return Err(ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    format!("at most {max_per_ip} live seat maps per client address"),
                )
                .retry_after(5));
            }
            *n += 1;
        }
        metrics::gauge!("boxoffice_sse_clients").increment(1.0);
        Ok(ViewerSlot { state: state.clone(), ip })
    }

    /// The event's feed, started if it has no viewer yet.
    pub fn feed(&self, state: &AppState, event: EventId) -> Arc<EventFeed> {
        let mut feeds = self.feeds.lock();
        if let Some(feed) = feeds.get(&event).and_then(Weak::upgrade) {
            return feed;
        }
        let (tx, _) = broadcast::channel(SSE_BUFFER_FRAMES);
        let feed = Arc::new(EventFeed { event, tx });
        feeds.insert(event, Arc::downgrade(&feed));
        tokio::spawn(run_feed(state.clone(), Arc::downgrade(&feed)));
        feed
    }
}

/// Broadcasts the event's changes until its last viewer has gone.
async fn run_feed(state: AppState, feed: Weak<EventFeed>) {
    let interval = Duration::from_millis(state.config.sse_interval_ms);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The epoch and version last sent: a new epoch (the event was rebuilt) starts again
    // with a snapshot, whatever its versions.
    let mut sent: Option<(u64, u64)> = None;
    // The allocation mask last sent: when an allocation is made or released the map
    // changes without a new version, and a snapshot carries the change to every viewer.
    let mut sent_mask = 0;
    loop {
        ticker.tick().await;
        let Some(feed) = feed.upgrade() else { return };
        let since = sent.map_or(u64::MAX, |(_, version)| version);
        let (current, mask) = match public_feed(&state, feed.event, since).await {
            Ok(current) => current,
            Err(e) => {
                tracing::warn!(event = %feed.event, error = ?e, "live feed cannot read the inventory");
                continue;
            }
        };
        let (epoch, version) = (current.availability.epoch, current.availability.version);
        if sent == Some((epoch, version)) && mask == sent_mask {
            continue;
        }
        let frame = match (sent, current.changes.as_ref()) {
            (Some((e, _)), Some(changes)) if e == epoch && mask == sent_mask => {
                catch_up_frame(epoch, &current.availability, Some(changes), mask)
            }
            _ => catch_up_frame(epoch, &current.availability, None, mask),
        };
        sent_mask = mask;
        if let Some(oldest) = current.changes.as_ref().and_then(|c| c.oldest_change_ms) {
            let now = boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock);
            metrics::histogram!("boxoffice_sse_delta_lag_seconds")
                .record(now.saturating_sub(oldest) as f64 / 1000.0);
        }
        sent = Some((epoch, version));
        // No receiver is fine: viewers come and go between ticks.
        let _ = feed.tx.send(Arc::new(frame));
    }
}
