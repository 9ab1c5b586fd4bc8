//! The virtual waiting room: a queue per event in front of its holds.
//!
//! Fans join (`POST /v1/events/{id}/queue`); joins before the onsale form a pre-queue that
//! is shuffled uniformly at random (Fisher-Yates) when the onsale comes, later joins line
//! up FIFO behind it. A background task admits the front of each line at the event's rate
//! (a token bucket, [`drain_step`]); an admitted fan gets an admission token
//! ([`token`]: HMAC-signed, bound to user and event, expiring) that holds on a queued
//! event require ([`check_admission`]). Positions are exact ([`order`]); an entry whose
//! owner stops polling for three advised intervals expires. Joining may cost a proof of
//! work ([`pow`]).
//!
//! The queue lives behind the [`WaitingRoom`] trait: [`memory`] is the embedded backend,
//! kept in this process only (what a restart loses is in ARCHITECTURE.md); [`redis`] is
//! the distributed-mode backend, one queue per event shared by every node, drained by
//! the one node holding the event's lease. Every method takes the time and the event's
//! [`Policy`], so the backends keep no clock and no catalog of their own.

pub mod memory;
pub mod order;
pub mod pow;
pub mod redis;
pub mod token;

use async_trait::async_trait;
use axum::http::StatusCode;
use boxoffice_core::{EventId, UnixMs, UserId};
use boxoffice_store::Event;

pub use memory::MemoryWaitingRoom;
pub use redis::RedisWaitingRoom;

use crate::AppState;
use crate::catalog::EventEntry;
use crate::error::ApiError;

/// How often the admission task runs; admission at a rate is smooth at this grain.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(100);
/// Polls an entry may miss before it expires.
pub const HEARTBEAT_MISSES: u64 = 3;
/// How long a proof-of-work challenge may be answered.
pub const CHALLENGE_TTL_MS: u64 = 5 * 60 * 1000;
/// Unanswered challenges kept at once (one per user and event at most).
pub const MAX_CHALLENGES: usize = 1_000_000;
/// How long an expired entry can still be read (then it is forgotten: 404).
pub const EXPIRED_RETENTION_MS: u64 = 10 * 60 * 1000;

/// How an event's queue runs: its queue settings and its onsale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub admit_rate_per_second: u32,
    pub token_ttl_ms: u64,
    pub max_length: u64,
    pub onsale_at: UnixMs,
}

impl Policy {
    pub fn of(event: &Event) -> Policy {
        Policy {
            admit_rate_per_second: event.queue.admit_rate_per_second.max(1),
            token_ttl_ms: u64::from(event.queue.token_ttl_seconds) * 1000,
            max_length: event.queue.max_length,
            onsale_at: event.onsale_at,
        }
    }
}

/// A queue entry's id within its event, shown as `qu_<16 hex digits>`.
pub type QueueId = u64;

pub fn format_queue_id(id: QueueId) -> String {
    format!("qu_{id:016x}")
}

pub fn parse_queue_id(raw: &str) -> Option<QueueId> {
    let hex =
        raw.strip_prefix("qu_").filter(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))?;
    u64::from_str_radix(hex, 16).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Joined before the onsale; no position until the shuffle.
    Prequeue,
    Waiting,
    /// May hold seats until `admitted_until`.
    Admitted,
    /// Stopped polling, or its admission token ran out.
    Expired,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Prequeue => "prequeue",
            Phase::Waiting => "waiting",
            Phase::Admitted => "admitted",
            Phase::Expired => "expired",
        }
    }
}

/// An entry as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView {
    pub id: QueueId,
    pub user: UserId,
    pub phase: Phase,
    /// 1 = next to be admitted; waiting entries only.
    pub position: Option<u64>,
    /// `position / rate`, rounded up; waiting entries only.
    pub eta_seconds: Option<u64>,
    /// When to ask again (pre-queue and waiting entries); an entry that misses
    /// [`HEARTBEAT_MISSES`] of these expires.
    pub poll_after_seconds: Option<u64>,
    /// Admitted entries: when the admission token expires.
    pub admitted_until: Option<UnixMs>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is full ({max_length} entries)")]
    Full { max_length: u64 },
    #[error("no such queue entry")]
    UnknownEntry,
    #[error("too many proof-of-work challenges are outstanding")]
    ChallengesFull,
    /// The shared backend did not answer.
    #[error("the waiting room is unavailable: {0}")]
    Unavailable(String),
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Full { max_length } => ApiError::unavailable(
                "QUEUE_FULL",
                format!("the queue is full ({max_length} entries); retry later"),
            )
            .retry_after(5),
            QueueError::UnknownEntry => ApiError::not_found("queue entry"),
            QueueError::ChallengesFull => {
                ApiError::unavailable("OVERLOADED", "too many challenges are outstanding; retry shortly")
            }
            QueueError::Unavailable(why) => {
                tracing::warn!(error = %why, "waiting room backend unavailable");
                ApiError::unavailable("QUEUE_UNAVAILABLE", "the waiting room is unavailable; retry shortly")
                    .retry_after(1)
            }
        }
    }
}

/// What one admission step did to an event's queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    pub admitted: u64,
    pub expired: u64,
    /// Pre-queue plus waiting entries after the step.
    pub length: u64,
}

/// A proof-of-work challenge issued to one user for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub challenge: String,
    pub expires_ms: UnixMs,
}

/// The waiting rooms of every event. Shaped for a shared backend too: every call names
/// its event and carries the time and the event's policy.
#[async_trait]
pub trait WaitingRoom: Send + Sync + 'static {
    /// The user's live entry if there is one (joining again returns it), else a new one:
    /// in the pre-queue before the onsale, at the back of the line after it. A join counts
    /// as a poll. `Full` when the pre-queue and line hold `max_length` entries.
    async fn join(
        &self,
        event: EventId,
        user: &UserId,
        policy: &Policy,
        now: UnixMs,
    ) -> Result<EntryView, QueueError>;
    /// The user's live entry (pre-queue, waiting or admitted with time left), if any.
    async fn entry_of(
        &self,
        event: EventId,
        user: &UserId,
        policy: &Policy,
        now: UnixMs,
    ) -> Result<Option<EntryView>, QueueError>;
    /// An entry by id; when `caller` owns it, this is also its heartbeat.
    async fn view(
        &self,
        event: EventId,
        id: QueueId,
        caller: &UserId,
        policy: &Policy,
        now: UnixMs,
    ) -> Result<EntryView, QueueError>;
    /// One admission step: opens the line at the onsale (shuffling the pre-queue), expires
    /// entries whose owners stopped polling and admits the front at the policy's rate.
    async fn tick(&self, event: EventId, policy: &Policy, now: UnixMs) -> TickReport;
    /// Events that have a queue.
    async fn events(&self) -> Vec<EventId>;
    /// Pre-queue plus waiting entries.
    async fn length(&self, event: EventId) -> u64;
    /// A new challenge for this user and event, replacing any earlier one.
    async fn issue_challenge(
        &self,
        event: EventId,
        user: &UserId,
        now: UnixMs,
    ) -> Result<Challenge, QueueError>;
    /// Takes the user's challenge if it is `challenge` and unexpired: each is used once.
    async fn take_challenge(
        &self,
        event: EventId,
        user: &UserId,
        challenge: &str,
        now: UnixMs,
    ) -> Result<bool, QueueError>;
    /// Forgets expired challenges.
    async fn purge(&self, now: UnixMs);
}

/// The time of the waiting room (injectable for tests).
pub fn now_ms(state: &AppState) -> UnixMs {
    state.queue_clock.now_ms()
}

/// Holds on an event whose queue is on need the caller's admission token
/// (`Admission-Token`): 403 NOT_ADMITTED without one, or with one that is expired, for
/// another event or issued to someone else.
pub fn check_admission(
    state: &AppState,
    entry: &EventEntry,
    user: &UserId,
    token: Option<&str>,
) -> Result<(), ApiError> {
    if !entry.event.queue.enabled {
        return Ok(());
    }
    let refuse = |why: &str| {
        ApiError::new(StatusCode::FORBIDDEN, "NOT_ADMITTED", why.to_owned())
            .with("queue", format!("/v1/events/{}/queue", entry.event.id))
    };
    let Some(token) = token else {
        return Err(refuse(
            "this onsale is queued: join the waiting room and send its admission token as Admission-Token",
        ));
    };
    match state.admission.verify(token, entry.event.id, user, now_ms(state)) {
        Ok(_) => Ok(()),
        Err(e) => Err(refuse(&e.to_string())),
    }
}

/// One admission step over every event that has a queue; publishes the queue metrics.
pub async fn drain_step(state: AppState) -> Result<(), String> {
    let now = now_ms(&state);
    for event in state.waiting_room.events().await {
        let entry = match state.catalog.event(state.store.as_ref(), event).await {
            Ok(entry) => entry,
            Err(e) => {
                tracing::debug!(%event, error = %e.message, "queue of an event the catalog cannot load");
                continue;
            }
        };
        let policy = Policy::of(&entry.event);
        let report = state.waiting_room.tick(event, &policy, now).await;
        let label = event.to_string();
        metrics::gauge!("boxoffice_queue_length", "event" => label.clone()).set(report.length as f64);
        metrics::gauge!("boxoffice_queue_admit_rate", "event" => label.clone())
            .set(f64::from(policy.admit_rate_per_second));
        if report.admitted > 0 {
            metrics::counter!("boxoffice_queue_admitted_total", "event" => label.clone())
                .increment(report.admitted);
        }
        if report.expired > 0 {
            metrics::counter!("boxoffice_queue_expired_total", "event" => label).increment(report.expired);
        }
    }
    state.waiting_room.purge(now).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids_round_trip_and_refuse_other_forms() {
        for id in [0, 1, 0xdead_beef, u64::MAX] {
            assert_eq!(parse_queue_id(&format_queue_id(id)), Some(id));
        }
        for bad in [
            "",
            "qu_",
            "qu_123",
            "qu_zzzzzzzzzzzzzzzz",
            "xx_0000000000000001",
            "qu_00000000000000011",
            "qu_+000000000000001",
        ] {
            assert_eq!(parse_queue_id(bad), None, "{bad:?}");
        }
    }
}
