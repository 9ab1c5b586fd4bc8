//! Domain types and rules of boxoffice, free of IO.
//!
//! Everything that crosses a crate boundary is defined here: ids ([`ids`]), the immutable
//! geometry of an event's seats and the pure best-available picker ([`seatmap`]), the
//! one-bit-per-seat availability [`bitmap`], [`money`], the named [`limits`], and the
//! hold lifecycle ([`hold`]). Values are parsed once at the edge (`SeatLabel::parse`,
//! `UserId::parse`, ...) so that invalid data cannot exist past it.

pub mod bitmap;
pub mod hold;
pub mod ids;
pub mod limits;
pub mod money;
pub mod seatmap;

pub use bitmap::Bitmap;
pub use hold::{HoldStatus, HoldView};
pub use ids::{EventId, HoldId, IdError, OrderId, TicketId, UserId};
pub use limits::Limits;
pub use money::{Currency, Money};
pub use seatmap::{LayoutError, SeatLabel, SeatMap, SeatSpec, SectionSpec, StrandCheck};

/// Milliseconds since the Unix epoch: the one time unit of the domain.
pub type UnixMs = u64;
