//! The hold lifecycle, shared by every inventory backend.
//!
//! ```text
//! held --pin--> confirming --confirm--> confirmed
//!  |  <--unpin--    |
//!  +--release / expiry--> released | expired   (expiry never touches a pin)
//! ```

use crate::{EventId, HoldId, UnixMs, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    Held,
    Confirming,
    Confirmed,
    Released,
    Expired,
}

impl HoldStatus {
    pub fn is_live(self) -> bool {
        matches!(self, HoldStatus::Held | HoldStatus::Confirming)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Held => "held",
            HoldStatus::Confirming => "confirming",
            HoldStatus::Confirmed => "confirmed",
            HoldStatus::Released => "released",
            HoldStatus::Expired => "expired",
        }
    }
}

/// What an inventory backend reports of a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldView {
    pub id: HoldId,
    pub event: EventId,
    pub user: UserId,
    /// Seat indexes, in the order they were asked for.
    pub seats: Vec<u32>,
    pub status: HoldStatus,
    pub created_ms: UnixMs,
    pub expires_ms: UnixMs,
}
