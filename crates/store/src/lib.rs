//! Durable state of boxoffice behind one trait, [`Store`]: the catalog (venues, performers,
//! events with their copied seat maps), orders and tickets, idempotency keys, and small
//! metadata. The order commit is the truth of a sale: tickets carry a unique index on
//! `(event_id, seat_index)` over valid tickets, the last guard against selling a seat twice.
//!
//! Backends: [`sqlite`] (embedded default). Times are Unix milliseconds.

pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use boxoffice_core::{EventId, HoldId, Money, OrderId, SeatMap, TicketId, UnixMs, UserId};
use serde::{Deserialize, Serialize};

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A valid ticket already exists for one of the seats (the unique index fired).
    #[error("seat {seat_index} of event {event} is already sold")]
    SeatAlreadySold { event: EventId, seat_index: u32 },
    /// An order already exists for this hold; its id is given.
    #[error("hold already has order {0}")]
    HoldAlreadyOrdered(OrderId),
    #[error("invalid cursor")]
    BadCursor,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Published,
    Cancelled,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Published => "published",
            EventStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewVenue {
    pub name: String,
    pub city: String,
    pub lat: f64,
    pub lon: f64,
    pub address: Option<String>,
    pub map: Arc<SeatMap>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Venue {
    pub id: u64,
    pub name: String,
    pub city: String,
    pub lat: f64,
    pub lon: f64,
    pub address: Option<String>,
    pub seat_count: u32,
    pub tiers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Performer {
    pub id: u64,
    pub name: String,
    pub genre: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub name: String,
    pub venue_id: u64,
    pub performer_ids: Vec<u64>,
    pub category: String,
    pub starts_at: UnixMs,
    pub onsale_at: UnixMs,
    /// Price per tier name of the venue; every tier of the venue has one.
    pub prices: Vec<(String, Money)>,
    pub description: Option<String>,
}

/// An event as the catalog knows it (without its seat map, see [`Store::event_seat_map`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub name: String,
    pub venue: Venue,
    pub performers: Vec<Performer>,
    pub category: String,
    pub starts_at: UnixMs,
    pub onsale_at: UnixMs,
    pub status: EventStatus,
    pub prices: Vec<(String, Money)>,
    pub description: Option<String>,
    pub seat_count: u32,
    pub created_at: UnixMs,
    pub updated_at: UnixMs,
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Exact, case-insensitive.
    pub city: Option<String>,
    /// Exact, case-insensitive.
    pub category: Option<String>,
    /// `starts_at >= from`.
    pub from: Option<UnixMs>,
    /// `starts_at < to`.
    pub to: Option<UnixMs>,
}

/// A page of a list, with an opaque cursor to the next page.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Confirmed,
    PartiallyRefunded,
    Refunded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Valid,
    Scanned,
    Voided,
    Transferred,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewTicket {
    pub id: TicketId,
    pub seat_index: u32,
    pub seat_label: String,
    pub price: Money,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub id: OrderId,
    pub event: EventId,
    pub user: UserId,
    pub hold: HoldId,
    pub email: Option<String>,
    pub total: Money,
    pub tickets: Vec<NewTicket>,
    pub created_at: UnixMs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub id: TicketId,
    pub order_id: OrderId,
    pub event: EventId,
    pub seat_index: u32,
    pub seat_label: String,
    pub price: Money,
    pub status: TicketStatus,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: OrderId,
    pub event: EventId,
    pub user: UserId,
    pub hold: HoldId,
    pub status: OrderStatus,
    pub email: Option<String>,
    pub total: Money,
    pub tickets: Vec<Ticket>,
    pub created_at: UnixMs,
}

/// A seat sold by a valid (or scanned) ticket, and to whom: what the engine needs at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoldSeat {
    pub seat_index: u32,
    pub user: UserId,
}

/// The outcome of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// The key is new and now marked in progress: run the request, then `finish_key`
    /// (final answers) or `release_key` (answers that must not be replayed).
    Claimed,
    /// A final answer was stored for the same body: replay it.
    Replay { status: u16, body: Vec<u8> },
    /// The key was used with another body.
    Mismatch,
    /// The first request with this key is still running.
    InProgress,
}

/// Scope of an idempotency key: a user and a route (e.g. `POST /v1/holds/{id}/checkout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyScope<'a> {
    pub user: &'a UserId,
    pub route: &'a str,
    pub key: &'a str,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- metadata ---
    async fn meta_get(&self, key: &str) -> Result<Option<String>>;
    /// Sets `key` only if absent; returns whether it was set. Used for once-only work
    /// such as demo seeding.
    async fn meta_set_if_absent(&self, key: &str, value: &str) -> Result<bool>;

    // --- catalog ---
    async fn create_venue(&self, venue: NewVenue) -> Result<Venue>;
    async fn venue(&self, id: u64) -> Result<Venue>;
    async fn venue_seat_map(&self, id: u64) -> Result<Arc<SeatMap>>;
    async fn create_performer(&self, name: &str, genre: Option<&str>) -> Result<Performer>;
    /// `StoreError::NotFound` when a performer id is unknown.
    async fn performers(&self, ids: &[u64]) -> Result<Vec<Performer>>;
    /// Copies the venue's seat map into the event.
    async fn create_event(&self, event: NewEvent) -> Result<Event>;
    async fn event(&self, id: EventId) -> Result<Event>;
    async fn event_seat_map(&self, id: EventId) -> Result<Arc<SeatMap>>;
    /// Ordered by `(starts_at, id)`; `limit` is already validated (1..=100).
    async fn list_events(
        &self,
        filter: &EventFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Event>>;
    /// Every event id, for loading the inventory at start-up.
    async fn all_event_ids(&self) -> Result<Vec<EventId>>;

    // --- orders ---
    /// Inserts the order and its tickets in one transaction. `HoldAlreadyOrdered` when the
    /// hold already has an order (nothing inserted); `SeatAlreadySold` when the unique
    /// index over valid tickets fires (nothing inserted).
    async fn create_order(&self, order: NewOrder) -> Result<Order>;
    async fn order(&self, id: &OrderId) -> Result<Order>;
    async fn order_for_hold(&self, hold: &HoldId) -> Result<Option<Order>>;
    /// The user's orders, newest first.
    async fn orders_of_user(&self, user: &UserId, limit: u32, cursor: Option<&str>) -> Result<Page<Order>>;
    async fn sold_seats(&self, event: EventId) -> Result<Vec<SoldSeat>>;

    // --- idempotency ---
    async fn claim_key(&self, scope: KeyScope<'_>, body_sha256: [u8; 32], now: UnixMs) -> Result<KeyClaim>;
    async fn finish_key(&self, scope: KeyScope<'_>, status: u16, body: &[u8]) -> Result<()>;
    async fn release_key(&self, scope: KeyScope<'_>) -> Result<()>;
    /// Deletes keys created before `before`; returns how many.
    async fn purge_keys(&self, before: UnixMs) -> Result<u64>;
}
