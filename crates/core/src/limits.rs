//! Every limit of the hold path, named, with its default.

/// Limits applied to holds. All are configurable; the defaults are the API's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Seats one hold may contain.
    pub max_seats_per_hold: u32,
    /// Seats one user may have in one event, held plus bought.
    pub max_seats_per_user_per_event: u32,
    /// Lifetime of a hold before it expires.
    pub hold_ttl_ms: u64,
}

impl Limits {
    pub const DEFAULT_MAX_SEATS_PER_HOLD: u32 = 8;
    pub const DEFAULT_MAX_SEATS_PER_USER_PER_EVENT: u32 = 8;
    pub const DEFAULT_HOLD_TTL_MS: u64 = 600_000;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_seats_per_hold: Self::DEFAULT_MAX_SEATS_PER_HOLD,
            max_seats_per_user_per_event: Self::DEFAULT_MAX_SEATS_PER_USER_PER_EVENT,
            hold_ttl_ms: Self::DEFAULT_HOLD_TTL_MS,
        }
    }
}

/// Seats a venue (and so an event) may have.
pub const MAX_SEATS_PER_VENUE: usize = 200_000;
/// Sections a venue may have.
pub const MAX_SECTIONS_PER_VENUE: usize = 1_000;
/// Price tiers a venue may have.
pub const MAX_TIERS_PER_VENUE: usize = 32;
