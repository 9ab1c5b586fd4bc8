//! Allocations (channels) and presale codes: who may hold which seats, and what the
//! public sees of seats reserved for others (docs/allocations.md).
//!
//! An allocation reserves seats of an event for entitled callers until its `release_at`;
//! from then on its unsold seats are general sale. Whether an allocation is in force is
//! decided by the time of each request (no job runs at the release, so none can be
//! missed). A caller is entitled to an allocation by role (an admin always is; an
//! allocation may name roles, such as `staff` for a box-office channel) or by a presale
//! code of that allocation. Everyone else meets the seats of allocations in force as
//! blocked: the public bitmap and the live map show them unavailable, best available
//! never picks them (the engine's `HoldRequest::blocked`) and a hold naming them is
//! refused with `403 NOT_ENTITLED`.
//!
//! Presale codes are 12 characters from an unambiguous alphabet, drawn from the OS's
//! CSPRNG, and kept only as HMAC-SHA256 digests under a key derived from the admission
//! key that every node shares; a code is looked up by its digest, and the stored digest
//! is then compared in constant time. A wrong, expired, exhausted or other event's code
//! all answer the same `403 NOT_ENTITLED`, and wrong codes are rate-limited per user
//! (`429` with `Retry-After`).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use boxoffice_core::{Bitmap, EventId, UnixMs, UserId};
use boxoffice_store::{Allocation, PresaleCode};
use hmac::{Hmac, Mac};
use rand::{Rng, TryRngCore};
use sha2::Sha256;

use crate::AppState;
use crate::auth::{Caller, Role};
use crate::error::ApiError;

/// Allocations one event may have.
pub const MAX_ALLOCATIONS_PER_EVENT: usize = 64;
/// Seats one allocation may name (the largest venue a layout may describe).
pub const MAX_SEATS_PER_ALLOCATION: usize = 200_000;
/// Longest allocation name (`[a-z0-9][a-z0-9_-]*`).
pub const MAX_ALLOCATION_NAME_LEN: usize = 64;
/// Codes one `POST /v1/events/{id}/presale-codes` may create.
pub const MAX_CODES_PER_REQUEST: u32 = 10_000;
/// The most seats or uses one code may be given.
pub const MAX_CODE_LIMIT: u32 = 10_000;
/// Characters of a presale code.
pub const CODE_LENGTH: usize = 12;
/// No 0/O or 1/I: a code read aloud or copied by hand comes through. 32 symbols, so a
/// 12-character code carries 60 random bits.
const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Wrong codes a user may try at once, then one more every [`CODE_FAILURE_INTERVAL`].
pub const CODE_FAILURE_BURST: std::num::NonZeroU32 = std::num::NonZeroU32::new(5).expect("non-zero");
pub const CODE_FAILURE_INTERVAL: Duration = Duration::from_secs(12);

/// One allocation as the request path uses it.
#[derive(Debug)]
pub struct Channel {
    pub name: String,
    pub seats: Arc<Bitmap>,
    pub seat_count: u32,
    pub release_at: UnixMs,
    pub roles: Vec<Role>,
}

impl Channel {
    pub fn in_force(&self, now: UnixMs) -> bool {
        now < self.release_at
    }

    /// Entitled without a code: admins always, and the roles the allocation names.
    pub fn admits_role(&self, caller: &Caller) -> bool {
        caller.is_admin() || self.roles.contains(&caller.role)
    }
}

/// The allocations of one event (kept in its catalog entry).
#[derive(Debug, Default)]
pub struct EventAllocations {
    channels: Vec<Channel>,
}

impl EventAllocations {
    pub fn new(allocations: &[Allocation], seat_count: usize) -> Self {
        let channels = allocations
            .iter()
            .map(|a| Channel {
                name: a.name.clone(),
                seats: Arc::new(Bitmap::from_indexes(seat_count, a.seats.iter().copied())),
                seat_count: a.seats.len() as u32,
                release_at: a.release_at,
                roles: a.roles.iter().filter_map(|r| parse_role(r)).collect(),
            })
            .collect();
        EventAllocations { channels }
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    pub fn find(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// The union of the seats of allocations in force at `now` that `entitled` does not
    /// open; `None` when nothing is blocked.
    pub fn blocked(&self, now: UnixMs, entitled: impl Fn(&Channel) -> bool) -> Option<Arc<Bitmap>> {
        let mut closed = self.channels.iter().filter(|c| c.in_force(now) && !entitled(c));
        let first = closed.next()?;
        let Some(second) = closed.next() else { return Some(first.seats.clone()) };
        let mut union = (*first.seats).clone();
        for channel in std::iter::once(second).chain(closed) {
            for seat in channel.seats.iter_available() {
                union.set_available(seat, true);
            }
        }
        Some(Arc::new(union))
    }

    /// Identifies the set of allocations in force at `now` (0 when the event has none):
    /// it changes exactly when the public mask does, at a creation or a release.
    pub fn mask_tag(&self, now: UnixMs) -> u64 {
        let released = self.channels.iter().filter(|c| !c.in_force(now)).count() as u64;
        ((self.channels.len() as u64) << 32) | released
    }
}

fn parse_role(raw: &str) -> Option<Role> {
    match raw {
        "fan" => Some(Role::Fan),
        "staff" => Some(Role::Staff),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Fan => "fan",
        Role::Staff => "staff",
        Role::Admin => "admin",
    }
}

/// Checks an allocation name: `[a-z0-9][a-z0-9_-]*`, at most [`MAX_ALLOCATION_NAME_LEN`].
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_ALLOCATION_NAME_LEN
        && bytes[0].is_ascii_lowercase() | bytes[0].is_ascii_digit()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

/// The public view: the bitmap with the seats of every allocation in force cleared.
pub fn public_bitmap(bitmap: &[u8], mask: &Bitmap) -> Option<(Vec<u8>, u32)> {
    let seats = Bitmap::from_bytes(bitmap, mask.len())?;
    let visible = seats.without(mask);
    Some((visible.to_bytes(), visible.count_available() as u32))
}

// --- presale codes ---

type HmacSha256 = Hmac<Sha256>;

/// A new code from the OS's CSPRNG.
pub fn new_code() -> String {
    let mut rng = rand::rngs::OsRng.unwrap_err();
    (0..CODE_LENGTH).map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char).collect()
}

/// A code as typed: upper-cased, spaces and dashes dropped; `None` when it cannot be one.
pub fn normalize_code(raw: &str) -> Option<String> {
    let code: String =
        raw.chars().filter(|c| !matches!(c, ' ' | '-')).map(|c| c.to_ascii_uppercase()).collect();
    (code.len() == CODE_LENGTH && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(code)
}

fn code_mac(state: &AppState, event: EventId, code: &str) -> HmacSha256 {
    let key = state.admission.derived_key("presale-codes");
    let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(event.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(code.as_bytes());
    mac
}

/// The digest a code is stored and looked up by (lower-case hex).
pub fn code_hash(state: &AppState, event: EventId, code: &str) -> String {
    hex(&code_mac(state, event, code).finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (s.len().is_multiple_of(2))
        .then(|| (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect())
        .flatten()
}

/// The same answer for every code that does not entitle: no oracle of which codes exist.
pub fn not_entitled() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "NOT_ENTITLED",
        "these seats are reserved for an allocation; a valid presale code or role is needed",
    )
}

/// A code that was found valid for this event.
#[derive(Debug, Clone)]
pub struct ValidCode {
    pub hash: String,
    pub record: PresaleCode,
}

/// Looks a code up for `user`: the user's wrong-code limit first (429), then the code by
/// its digest, compared in constant time with the stored digest. A code that does not
/// exist, belongs to another event or has expired counts against the limit and answers
/// [`not_entitled`].
pub async fn check_code(
    state: &AppState,
    event: EventId,
    user: &UserId,
    raw: &str,
    now: UnixMs,
) -> Result<ValidCode, ApiError> {
    state.guard.presale_codes.check_not_blocked(user, now)?;
    let found = match normalize_code(raw) {
        None => None,
        Some(code) => {
            let mac = code_mac(state, event, &code);
            let hash = hex(&mac.clone().finalize().into_bytes());
            match state.store.presale_code(event, &hash).await? {
                // The index found it; the constant-time comparison is the check.
                Some(record)
                    if unhex(&record.code_hash).is_some_and(|stored| mac.verify_slice(&stored).is_ok())
                        && now < record.expires_at =>
                {
                    Some(ValidCode { hash, record })
                }
                _ => None,
            }
        }
    };
    match found {
        Some(valid) => Ok(valid),
        None => Err(failed_attempt(state, user, now).await),
    }
}

/// The wrong-code limit: a GCRA limit per user (shared by every node in distributed
/// mode), and the users past it with the time they wait until (this node's memory, so
/// that a user past the limit gets no answer about any code, right or wrong, until then).
pub struct CodeAttempts {
    failures: crate::http::guard::Limit<UserId>,
    blocked: parking_lot::Mutex<std::collections::HashMap<UserId, UnixMs>>,
}

/// Users remembered as past the wrong-code limit at once; past the bound the GCRA limit
/// alone answers (it still refuses their wrong codes).
pub const MAX_BLOCKED_USERS: usize = 100_000;

impl CodeAttempts {
    pub fn new(failures: crate::http::guard::Limit<UserId>) -> Self {
        CodeAttempts { failures, blocked: Default::default() }
    }

    /// Forgets the users whose wait is over and keys of the limiter back to a full burst.
    pub fn purge(&self, now: UnixMs) {
        self.blocked.lock().retain(|_, until| *until > now);
        self.failures.purge();
    }

    fn check_not_blocked(&self, user: &UserId, now: UnixMs) -> Result<(), ApiError> {
        match self.blocked.lock().get(user) {
            Some(&until) if until > now => Err(rate_limited((until - now).div_ceil(1000))),
            _ => Ok(()),
        }
    }
}

/// A wrong code: counted against the user's limit; past it the user waits (429).
pub async fn failed_attempt(state: &AppState, user: &UserId, now: UnixMs) -> ApiError {
    metrics::counter!("boxoffice_presale_code_failures_total").increment(1);
    let attempts = &state.guard.presale_codes;
    match attempts.failures.check(user).await {
        Ok(()) => not_entitled(),
        Err(wait_s) => {
            let until = now.saturating_add(wait_s.saturating_mul(1000));
            let mut blocked = attempts.blocked.lock();
            if blocked.len() >= MAX_BLOCKED_USERS {
                blocked.retain(|_, t| *t > now);
            }
            if blocked.len() < MAX_BLOCKED_USERS {
                blocked.insert(user.clone(), until);
            }
            rate_limited(wait_s)
        }
    }
}

fn rate_limited(wait_s: u64) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", "too many wrong presale codes; retry later")
        .retry_after(wait_s.max(1))
}

// --- what the public sees ---

/// The availability as a viewer sees it at `now`: the seats of allocations in force
/// (except `open`, the allocation of an entitled view) cleared. Returns it with the tag
/// of the mask applied (0: no mask), for ETags and the live map.
pub fn visible(
    allocations: &EventAllocations,
    availability: boxoffice_engine::Availability,
    now: UnixMs,
    open: Option<&str>,
) -> (boxoffice_engine::Availability, u64) {
    let tag = allocations.mask_tag(now);
    let Some(mask) = allocations.blocked(now, |c| Some(c.name.as_str()) == open) else {
        return (availability, tag);
    };
    match public_bitmap(&availability.bitmap, &mask) {
        Some((bitmap, available_count)) => {
            (boxoffice_engine::Availability { bitmap: bitmap.into(), available_count, ..availability }, tag)
        }
        None => {
            tracing::error!(seats = mask.len(), "an availability bitmap does not fit its event's seat map");
            (availability, tag)
        }
    }
}

/// [`visible`] for the live map: the feed's bitmap masked and its changes without the
/// masked seats (a viewer of the same mask already shows them unavailable).
pub fn visible_feed(
    allocations: &EventAllocations,
    feed: boxoffice_engine::Feed,
    now: UnixMs,
) -> (boxoffice_engine::Feed, u64) {
    let mask = allocations.blocked(now, |_| false);
    let (availability, tag) = visible(allocations, feed.availability, now, None);
    let changes = match (feed.changes, mask) {
        (Some(mut changes), Some(mask)) => {
            changes.available.retain(|&s| !mask.is_available(s));
            changes.unavailable.retain(|&s| !mask.is_available(s));
            Some(changes)
        }
        (changes, _) => changes,
    };
    (boxoffice_engine::Feed { availability, changes }, tag)
}
