//! Durable state of boxoffice behind one trait, [`Store`]: the catalog (venues, performers,
//! events with their copied seat maps), payment attempts, orders and tickets, refunds, the
//! transactional outbox, idempotency keys, and small metadata. The order commit is the truth of a sale: tickets carry a unique index on
//! `(event_id, seat_index)` over valid tickets, the last guard against selling a seat twice.
//!
//! Backends: [`sqlite`] (embedded default) and [`postgres`] (distributed mode). Times are
//! Unix milliseconds.

pub mod allocations;
pub mod group_sync;
pub mod postgres;
mod rows;
pub mod sqlite;
pub mod sqlite_writer;
pub mod waitlist;
pub mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use boxoffice_core::{EventId, HoldId, Money, OrderId, SeatMap, TicketId, UnixMs, UserId};
use serde::{Deserialize, Serialize};

pub use allocations::{Allocation, NewAllocation, NewPresaleCodes, PresaleCode};
pub use group_sync::GroupSync;
pub use postgres::{Migrated, PgConfig, PgStore};
pub use sqlite::SqliteStore;
pub use waitlist::{NewWaitlistEntry, WaitlistChange, WaitlistEntry, WaitlistJoin, WaitlistState};
pub use webhooks::{
    ClaimedDelivery, DeliveryAttempt, DeliveryOutcome, DeliveryStatus, FanOut, NewWebhook,
    TOPIC_EVENT_SOLD_OUT, TOPIC_TICKET_SCANNED, TOPIC_WAITLIST_OFFERED, WEBHOOK_CURSOR_KEY,
    WEBHOOK_EVENT_TYPES, Webhook, WebhookDelivery,
};

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
    /// The payment attempt may no longer complete: it is not authorized (declined,
    /// voided by the reconciler, ...) or its pin deadline has passed.
    #[error("payment attempt {0} is closed")]
    AttemptClosed(String),
    /// The event is cancelled: nothing more is sold for it.
    #[error("event {0} is cancelled")]
    EventCancelled(EventId),
    /// A refund names a ticket that is not part of the order.
    #[error("ticket {0} is not part of this order")]
    TicketNotInOrder(TicketId),
    /// A refund that needs admin rights: the ticket has been scanned at the door.
    #[error("ticket {0} has been scanned")]
    TicketScanned(TicketId),
    /// A refund that needs admin rights: the ticket was transferred to another user.
    #[error("ticket {0} belongs to another user by a transfer")]
    TicketTransferred(TicketId),
    /// A transfer of a ticket that is no longer valid (scanned, voided or transferred).
    #[error("ticket {ticket} cannot be transferred: it is {status:?}")]
    TicketNotTransferable { ticket: TicketId, status: TicketStatus },
    #[error("invalid cursor")]
    BadCursor,
    /// A change that would break a rule of the catalog (e.g. an onsale after the start).
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A statement of the SQLite store's writer failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The SQLite store's writer could not commit a batch (or begin one): the write may
    /// not have happened.
    #[error("database commit failed: {0}")]
    CommitFailed(String),
    /// The SQLite store's writer thread is gone (the store is closing).
    #[error("database writer unavailable: {0}")]
    WriterUnavailable(String),
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
    /// The event's waiting room.
    pub queue: QueueSettings,
    /// Door scanners accept the static (printable) QR payload; when false only the
    /// rotating payload admits (`event_settings.static_tickets_allowed`, default true).
    pub static_tickets_allowed: bool,
    /// The orphan-seat rule: holds may not leave an available seat alone in its row
    /// (`event_settings.orphan_rule`, default true).
    pub orphan_rule: bool,
}

/// An event's waiting room settings (`PATCH /v1/events/{id}` `queue`). An event that was
/// never changed has the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Holds need an admission token from the waiting room.
    pub enabled: bool,
    pub admit_rate_per_second: u32,
    /// Lifetime of an admission token.
    pub token_ttl_seconds: u32,
    /// Entries (pre-queue and waiting) the queue takes; more joins are refused.
    pub max_length: u64,
    /// Leading zero bits of the proof of work a join needs; 0 = none.
    pub proof_of_work_bits: u8,
}

impl QueueSettings {
    pub const DEFAULT_ADMIT_RATE_PER_SECOND: u32 = 100;
    pub const DEFAULT_TOKEN_TTL_SECONDS: u32 = 600;
    pub const DEFAULT_MAX_LENGTH: u64 = 10_000_000;
    /// Most leading zero bits a proof of work may be asked for.
    pub const MAX_PROOF_OF_WORK_BITS: u8 = 32;

    /// These settings with the fields `update` names replaced.
    pub fn updated(self, update: &QueueUpdate) -> QueueSettings {
        QueueSettings {
            enabled: update.enabled.unwrap_or(self.enabled),
            admit_rate_per_second: update.admit_rate_per_second.unwrap_or(self.admit_rate_per_second),
            token_ttl_seconds: update.token_ttl_seconds.unwrap_or(self.token_ttl_seconds),
            max_length: update.max_length.unwrap_or(self.max_length),
            proof_of_work_bits: update.proof_of_work_bits.unwrap_or(self.proof_of_work_bits),
        }
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            enabled: false,
            admit_rate_per_second: Self::DEFAULT_ADMIT_RATE_PER_SECOND,
            token_ttl_seconds: Self::DEFAULT_TOKEN_TTL_SECONDS,
            max_length: Self::DEFAULT_MAX_LENGTH,
            proof_of_work_bits: 0,
        }
    }
}

/// A change of an event (`PATCH /v1/events/{id}`): `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<EventStatus>,
    pub onsale_at: Option<UnixMs>,
    pub starts_at: Option<UnixMs>,
    pub queue: QueueUpdate,
    pub static_tickets_allowed: Option<bool>,
    pub orphan_rule: Option<bool>,
}

/// A change of an event's queue settings: `None` keeps the current value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueUpdate {
    pub enabled: Option<bool>,
    pub admit_rate_per_second: Option<u32>,
    pub token_ttl_seconds: Option<u32>,
    pub max_length: Option<u64>,
    pub proof_of_work_bits: Option<u8>,
}

/// What a row of the catalog's change feed names: an event or a venue that was created or
/// changed. Followers read the current state of what it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogEntity {
    Event(EventId),
    /// A venue (its events show its name, city and location).
    Venue(u64),
}

/// A row of the catalog's change feed, written in the transaction of the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogChange {
    /// Grows with every change; a follower keeps the last one it applied.
    pub seq: u64,
    pub entity: CatalogEntity,
    pub changed_at: UnixMs,
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
    /// The signed QR payload of revision [`FIRST_TICKET_REVISION`].
    pub qr_payload: Option<String>,
}

/// The revision of a newly issued ticket (a reissue, e.g. a transfer, increments it).
pub const FIRST_TICKET_REVISION: u32 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub id: OrderId,
    pub event: EventId,
    pub user: UserId,
    pub hold: HoldId,
    /// The payment attempt that paid for it: must be `authorized` and before its pin
    /// deadline at `created_at`. A second order for the same attempt inserts nothing.
    pub payment_attempt: Option<String>,
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
    pub user: UserId,
    pub revision: u32,
    pub qr_payload: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: OrderId,
    pub event: EventId,
    pub user: UserId,
    pub hold: HoldId,
    pub payment_attempt: Option<String>,
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

/// The state of a payment attempt. `initiated`, `authorized` and `unknown` are open: the
/// reconciler settles them once their pin deadline has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Committed before the gateway was called.
    Initiated,
    /// The gateway authorized the amount; an order may commit on it.
    Authorized,
    Declined,
    /// The authorization was cancelled (or never happened): nothing is charged.
    Voided,
    Captured,
    Refunded,
    /// The gateway did not answer: it may or may not have authorized.
    Unknown,
}

impl AttemptState {
    pub const OPEN: [AttemptState; 3] =
        [AttemptState::Initiated, AttemptState::Authorized, AttemptState::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptState::Initiated => "initiated",
            AttemptState::Authorized => "authorized",
            AttemptState::Declined => "declined",
            AttemptState::Voided => "voided",
            AttemptState::Captured => "captured",
            AttemptState::Refunded => "refunded",
            AttemptState::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "initiated" => AttemptState::Initiated,
            "authorized" => AttemptState::Authorized,
            "declined" => AttemptState::Declined,
            "voided" => AttemptState::Voided,
            "captured" => AttemptState::Captured,
            "refunded" => AttemptState::Refunded,
            "unknown" => AttemptState::Unknown,
            _ => return None,
        })
    }

    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewPaymentAttempt {
    /// `pa_<32 hex>`; also the engine's pin attempt.
    pub id: String,
    pub hold: HoldId,
    pub user: UserId,
    pub seats: Vec<u32>,
    pub amount: Money,
    /// The gateway's name, e.g. `simulated`.
    pub gateway: String,
    /// The idempotency key sent to the gateway with every call about this payment.
    pub gateway_key: String,
    pub pin_deadline: UnixMs,
    pub created_at: UnixMs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PaymentAttempt {
    pub id: String,
    pub hold: HoldId,
    pub event: EventId,
    pub user: UserId,
    pub seats: Vec<u32>,
    pub amount: Money,
    pub gateway: String,
    pub gateway_key: String,
    pub authorization_id: Option<String>,
    pub state: AttemptState,
    pub created_at: UnixMs,
    pub updated_at: UnixMs,
    pub pin_deadline: UnixMs,
    /// The order this attempt paid for, if one committed.
    pub order: Option<OrderId>,
}

/// A compare-and-set of an attempt's state.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptUpdate<'a> {
    pub id: &'a str,
    /// The change happens only from one of these states.
    pub from: &'a [AttemptState],
    pub to: AttemptState,
    /// Recorded when given (the gateway's authorization id).
    pub authorization_id: Option<&'a str>,
    pub now: UnixMs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Tickets are voided; the gateway refund is still to be confirmed.
    Pending,
    Succeeded,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    pub id: String,
    pub order: OrderId,
    pub payment_attempt: Option<String>,
    /// The gateway's idempotency key of this refund.
    pub gateway_key: String,
    /// The gateway key of the payment refunded.
    pub payment_key: Option<String>,
    pub amount: Money,
    pub tickets: Vec<TicketId>,
    pub state: RefundState,
    pub created_at: UnixMs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefundRequest {
    pub order: OrderId,
    /// `None`: every ticket of the order still valid or scanned.
    pub tickets: Option<Vec<TicketId>>,
    /// Admins may refund scanned tickets and tickets transferred away from the buyer; fans
    /// get `TicketScanned` or `TicketTransferred`, and `tickets: None` chooses only the
    /// tickets the buyer still holds.
    pub allow_scanned: bool,
    /// Id of the refund row, if this request voids anything.
    pub refund_id: String,
    pub now: UnixMs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefundOutcome {
    /// The order after the refund.
    pub order: Order,
    /// What this request voided; `None` when every chosen ticket was voided already.
    pub refund: Option<Refund>,
}

/// The result of scanning a ticket at the door.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanOutcome {
    /// It was valid and is now scanned.
    Admitted(Ticket),
    AlreadyScanned(Ticket),
    /// Voided or transferred: it no longer admits anyone.
    Revoked(Ticket),
    /// No ticket with this id and revision.
    Unknown,
}

/// A row of the transactional outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub seq: u64,
    /// e.g. `order.created`.
    pub topic: String,
    /// What the message is about, e.g. the order id.
    pub key: String,
    /// JSON.
    pub payload: String,
    pub created_at: UnixMs,
}

pub const TOPIC_ORDER_CREATED: &str = "order.created";
pub const TOPIC_ORDER_REFUNDED: &str = "order.refunded";
pub const TOPIC_TICKET_TRANSFERRED: &str = "ticket.transferred";

/// What an audit record says happened (see `GET /v1/events/{id}/audit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditType {
    /// AVAILABLE -> HELD (written from the engine's change history).
    SeatHeld,
    /// HELD or SOLD -> AVAILABLE, with a reason (from the engine's change history).
    SeatReleased,
    /// A payment attempt for the seat's hold was committed (in that transaction).
    PaymentInitiated,
    /// The attempt was declined or voided without an order (in that transaction).
    PaymentFailed,
    /// The order sold the seat (in the order transaction).
    SeatConfirmed,
    /// The seat's ticket was voided by a refund (in the refund transaction).
    SeatRefunded,
    /// The seat's ticket changed hands.
    TicketTransferred,
}

impl AuditType {
    pub const ALL: [AuditType; 7] = [
        AuditType::SeatHeld,
        AuditType::SeatReleased,
        AuditType::PaymentInitiated,
        AuditType::PaymentFailed,
        AuditType::SeatConfirmed,
        AuditType::SeatRefunded,
        AuditType::TicketTransferred,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditType::SeatHeld => "SEAT_HELD",
            AuditType::SeatReleased => "SEAT_RELEASED",
            AuditType::PaymentInitiated => "PAYMENT_INITIATED",
            AuditType::PaymentFailed => "PAYMENT_FAILED",
            AuditType::SeatConfirmed => "SEAT_CONFIRMED",
            AuditType::SeatRefunded => "SEAT_REFUNDED",
            AuditType::TicketTransferred => "TICKET_TRANSFERRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One audit record to append: one seat, one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditRecord {
    pub event: EventId,
    pub kind: AuditType,
    pub at: UnixMs,
    pub seat: u32,
    pub hold: Option<HoldId>,
    pub order: Option<OrderId>,
    pub user: UserId,
    /// For SEAT_RELEASED: user, expiry, refund, cancel, superseded or recovery; for
    /// PAYMENT_FAILED: declined or voided.
    pub reason: Option<String>,
}

/// An audit record as stored: `seq` orders the records of one event, from 1, gap-free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: u64,
    pub record: NewAuditRecord,
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

/// An idempotency key still `in_progress` this long after its claim belongs to a request
/// whose process died (no request runs this long: checkouts are bounded by the payment
/// timeout and the pin): a new claim with the same body takes it over.
pub const KEY_CLAIM_ABANDONED_MS: u64 = 5 * 60 * 1000;

/// Scope of an idempotency key: a user and a route (e.g. `POST /v1/holds/{id}/checkout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyScope<'a> {
    pub user: &'a UserId,
    pub route: &'a str,
    pub key: &'a str,
}

// --- transfers and revocations ---

/// A transfer of a valid ticket to another user (`Store::transfer_ticket`): the ticket
/// becomes `transferred` and a new ticket of the next revision is issued to `to`, for the
/// same order, event and seat.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketTransfer {
    pub ticket: TicketId,
    /// The caller: the transfer happens only if the ticket is still theirs and valid.
    pub from: UserId,
    pub to: UserId,
    /// The id of the ticket issued to `to`.
    pub new_ticket: TicketId,
    /// The signed static payload of the new ticket, made for `new_ticket` and the
    /// revision after the old ticket's.
    pub new_qr_payload: Option<String>,
    /// The revision the payload was made for: the old ticket's revision plus one. The
    /// store refuses the transfer (`Corrupt`) if it does not match.
    pub new_revision: u32,
    pub now: UnixMs,
}

/// Why a ticket revision stopped admitting anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// Voided by a refund (the fan's, an admin's or the event's cancellation).
    Refunded,
    /// Reissued to another user under a new ticket id and revision.
    Transferred,
}

impl RevocationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Refunded => "refunded",
            RevocationReason::Transferred => "transferred",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "refunded" => Some(RevocationReason::Refunded),
            "transferred" => Some(RevocationReason::Transferred),
            _ => None,
        }
    }
}

/// A revoked ticket revision, as an offline door scanner keeps it. `seq` is the audit
/// record's sequence number of the change that revoked it (SEAT_REFUNDED or
/// TICKET_TRANSFERRED): growing per event, committed in order, with gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub seq: u64,
    pub ticket: TicketId,
    pub revision: u32,
    pub reason: RevocationReason,
    pub revoked_at: UnixMs,
}

/// A transfer's preconditions on the ticket as read in its transaction.
pub(crate) fn check_transfer(old: &Ticket, transfer: &TicketTransfer) -> Result<()> {
    if old.user != transfer.from {
        return Err(StoreError::NotFound);
    }
    if old.status != TicketStatus::Valid {
        return Err(StoreError::TicketNotTransferable { ticket: old.id.clone(), status: old.status });
    }
    if old.revision.checked_add(1) != Some(transfer.new_revision) {
        return Err(StoreError::Invalid(format!(
            "the new ticket's revision must be {} + 1, not {}",
            old.revision, transfer.new_revision
        )));
    }
    Ok(())
}

/// The ticket a transfer issues.
pub(crate) fn transferred_ticket(old: &Ticket, transfer: &TicketTransfer) -> Ticket {
    Ticket {
        id: transfer.new_ticket.clone(),
        order_id: old.order_id.clone(),
        event: old.event,
        seat_index: old.seat_index,
        seat_label: old.seat_label.clone(),
        price: old.price,
        status: TicketStatus::Valid,
        user: transfer.to.clone(),
        revision: transfer.new_revision,
        qr_payload: transfer.new_qr_payload.clone(),
    }
}

/// TICKET_TRANSFERRED: the seat stays sold under its order; `user` is the new holder.
pub(crate) fn transfer_audit(old: &Ticket, transfer: &TicketTransfer) -> NewAuditRecord {
    NewAuditRecord {
        event: old.event,
        kind: AuditType::TicketTransferred,
        at: transfer.now,
        seat: old.seat_index,
        hold: None,
        order: Some(old.order_id.clone()),
        user: transfer.to.clone(),
        reason: None,
    }
}

/// The `ticket.transferred` outbox message.
pub(crate) fn transfer_message(old: &Ticket, new: &Ticket) -> serde_json::Value {
    serde_json::json!({
        "ticket_id": new.id.as_str(),
        "previous_ticket_id": old.id.as_str(),
        "revision": new.revision,
        "event_id": old.event.to_string(),
        "order_id": old.order_id.as_str(),
        "seat": old.seat_label,
        "from_user": old.user.as_str(),
        "to_user": new.user.as_str(),
    })
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- metadata ---
    async fn meta_get(&self, key: &str) -> Result<Option<String>>;
    /// Sets `key` only if absent; returns whether it was set. Used for once-only work
    /// such as demo seeding.
    async fn meta_set_if_absent(&self, key: &str, value: &str) -> Result<bool>;

    /// A trivial read that reaches the database (`/readyz`): fails when it cannot.
    async fn ping(&self) -> Result<()>;

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
    /// Creates many events in one transaction (bulk loads such as the demo catalog); each
    /// copies its venue's seat map as [`Store::create_event`] does. All or nothing.
    async fn create_events(&self, events: Vec<NewEvent>) -> Result<Vec<EventId>>;
    /// The events with these ids, in id order; unknown ids are left out.
    async fn events_by_ids(&self, ids: &[EventId]) -> Result<Vec<Event>>;
    /// Ids of the events at a venue.
    async fn venue_event_ids(&self, venue_id: u64) -> Result<Vec<EventId>>;
    /// Rows of the catalog's change feed after `after_seq`, oldest first. Every catalog
    /// write (`create_venue`, `create_event(s)`, `update_event`) adds its rows in its own
    /// transaction.
    async fn catalog_changes_after(&self, after_seq: u64, limit: u32) -> Result<Vec<CatalogChange>>;
    /// The newest change's `seq` (0 when there is none): where a follower that has just
    /// read the whole catalog continues from.
    async fn catalog_change_head(&self) -> Result<u64>;
    /// Applies `update` in one transaction (fields it leaves `None` keep their values) and
    /// returns the event as it now is, with a later `updated_at`. `NotFound` for an unknown
    /// event; `Invalid` when the result would open the sale after the start.
    async fn update_event(&self, id: EventId, update: EventUpdate) -> Result<Event>;

    // --- orders ---
    /// Inserts the order, its tickets and an `order.created` outbox row in one
    /// transaction. With a payment attempt: when the attempt already has an order, that
    /// order is returned and nothing is inserted; `AttemptClosed` when the attempt is not
    /// `authorized` or `created_at` is not before its pin deadline. `HoldAlreadyOrdered`
    /// when the hold already has an order (nothing inserted); `SeatAlreadySold` when the
    /// unique index over valid tickets fires (nothing inserted).
    async fn create_order(&self, order: NewOrder) -> Result<Order>;
    async fn order(&self, id: &OrderId) -> Result<Order>;
    async fn order_for_hold(&self, hold: &HoldId) -> Result<Option<Order>>;
    /// The user's orders, newest first.
    async fn orders_of_user(&self, user: &UserId, limit: u32, cursor: Option<&str>) -> Result<Page<Order>>;
    async fn sold_seats(&self, event: EventId) -> Result<Vec<SoldSeat>>;
    /// The sum of the prices of the event's valid (and scanned) tickets, in minor units
    /// (an event prices every tier in one currency); 0 when nothing is sold.
    /// Orders that still have valid or scanned tickets for cancelled events (the
    /// cancellation job's work list), at most `limit`, oldest events first.
    async fn cancellation_refunds_due(&self, limit: u32) -> Result<Vec<(EventId, OrderId)>>;
    async fn revenue_minor_units(&self, event: EventId) -> Result<i64>;

    // --- payments ---
    /// Records an attempt in state `initiated`, before the gateway hears of it.
    async fn create_attempt(&self, attempt: NewPaymentAttempt) -> Result<PaymentAttempt>;
    async fn attempt(&self, id: &str) -> Result<PaymentAttempt>;
    /// Every attempt to pay for a hold, oldest first.
    async fn attempts_for_hold(&self, hold: &HoldId) -> Result<Vec<PaymentAttempt>>;
    /// Compare-and-set of the state; returns whether it changed. A change to `voided` or
    /// `declined` also needs the attempt to have no order (an order is the truth of a
    /// sale: its payment is never cancelled behind it). `NotFound` for an unknown id.
    async fn update_attempt(&self, update: AttemptUpdate<'_>) -> Result<bool>;
    /// Open attempts (`initiated`, `authorized`, `unknown`) whose pin deadline is before
    /// `deadline_before`, oldest deadline first.
    async fn open_attempts(&self, deadline_before: UnixMs, limit: u32) -> Result<Vec<PaymentAttempt>>;

    // --- refunds and tickets ---
    /// Voids the chosen tickets, sets the order's status and records a pending refund, in
    /// one transaction; tickets voided already are skipped, so a repeated request changes
    /// nothing. Also writes an `order.refunded` outbox row.
    async fn refund_tickets(&self, request: RefundRequest) -> Result<RefundOutcome>;
    async fn finish_refund(&self, id: &str, now: UnixMs) -> Result<()>;
    async fn pending_refunds(&self, limit: u32) -> Result<Vec<Refund>>;
    async fn ticket(&self, id: &TicketId) -> Result<Ticket>;
    /// Marks a valid ticket of this revision scanned, atomically.
    async fn scan_ticket(&self, id: &TicketId, revision: u32, now: UnixMs) -> Result<ScanOutcome>;

    // --- outbox ---
    /// Unsent rows in `seq` order.
    async fn outbox_pending(&self, limit: u32) -> Result<Vec<OutboxMessage>>;
    /// Marks every row up to `seq` sent.
    async fn outbox_mark_sent(&self, up_to_seq: u64, now: UnixMs) -> Result<()>;
    /// Marks every row after `seq` unsent again (re-drives a stream that lost them);
    /// returns how many.
    async fn outbox_requeue_after(&self, seq: u64) -> Result<u64>;
    /// Deletes rows sent before `sent_before` with `seq <= up_to_seq` (what every
    /// consumer has handled); returns how many.
    async fn outbox_purge(&self, sent_before: UnixMs, up_to_seq: u64) -> Result<u64>;
    /// Sets a metadata value, replacing any (e.g. a consumer's position).
    async fn meta_set(&self, key: &str, value: &str) -> Result<()>;

    // --- audit history ---
    /// Appends records in one transaction; each event's records get the next sequence
    /// numbers in the order given. (Order-side records are written by `create_attempt`,
    /// `update_attempt`, `create_order` and `refund_tickets` inside their transactions.)
    async fn append_audit(&self, records: &[NewAuditRecord]) -> Result<()>;
    /// Up to `limit` records of the event with `seq > after`, in `seq` order.
    async fn audit_after(&self, event: EventId, after: u64, limit: u32) -> Result<Vec<AuditRecord>>;
    /// The SEAT_HELD records of holds that have neither a SEAT_RELEASED nor a
    /// SEAT_CONFIRMED record: the holds the history says are still live.
    async fn audit_open_holds(&self, event: EventId) -> Result<Vec<AuditRecord>>;
    /// Which of `holds` have a SEAT_HELD record.
    async fn audit_holds_recorded(&self, event: EventId, holds: &[HoldId]) -> Result<Vec<HoldId>>;

    // --- idempotency ---
    async fn claim_key(&self, scope: KeyScope<'_>, body_sha256: [u8; 32], now: UnixMs) -> Result<KeyClaim>;
    async fn finish_key(&self, scope: KeyScope<'_>, status: u16, body: &[u8]) -> Result<()>;
    async fn release_key(&self, scope: KeyScope<'_>) -> Result<()>;
    /// Deletes keys created before `before`; returns how many.
    async fn purge_keys(&self, before: UnixMs) -> Result<u64>;

    // --- transfers and revocations ---
    /// Transfers a valid ticket of `from` to `to` in one transaction: the ticket becomes
    /// `transferred`, the new ticket is inserted (valid, revision + 1, same order and seat),
    /// with a TICKET_TRANSFERRED audit record (user = the recipient), a revocation of the
    /// old revision and a `ticket.transferred` outbox row. `NotFound` when the ticket does
    /// not exist or is not `from`'s; `TicketNotTransferable` when it is not valid;
    /// `EventCancelled` for a cancelled event. Returns the new ticket.
    async fn transfer_ticket(&self, transfer: TicketTransfer) -> Result<Ticket>;
    /// Up to `limit` revocations of the event with `seq > after`, in `seq` order.
    async fn revocations_after(&self, event: EventId, after: u64, limit: u32) -> Result<Vec<Revocation>>;
    /// The user's tickets (every status), newest first; the cursor is opaque.
    async fn tickets_of_user(&self, user: &UserId, limit: u32, cursor: Option<&str>) -> Result<Page<Ticket>>;

    // --- outbox appends and webhooks (see `webhooks.rs`) ---
    /// Appends an outbox row in a transaction of its own and returns its `seq`: for
    /// messages whose change is not itself in this store (e.g. `waitlist.offered`). A
    /// change that is in the store writes its row in its own transaction instead.
    async fn outbox_append(
        &self,
        topic: &str,
        key: &str,
        payload: &serde_json::Value,
        now: UnixMs,
    ) -> Result<u64>;
    /// Registers an endpoint, enabled; `None` when `max_enabled` endpoints are enabled
    /// already (counted in the inserting transaction).
    async fn create_webhook(&self, webhook: NewWebhook) -> Result<Option<Webhook>>;
    /// Every endpoint, enabled or not, oldest first.
    async fn webhooks(&self) -> Result<Vec<Webhook>>;
    /// `NotFound` for an unknown id.
    async fn webhook(&self, id: u64) -> Result<Webhook>;
    /// Disables an endpoint: nothing more is fanned out to it or sent; its log stays.
    /// `NotFound` for an unknown id.
    async fn disable_webhook(&self, id: u64, now: UnixMs) -> Result<Webhook>;
    /// Reads up to `limit` outbox rows after the dispatcher's cursor, adds a pending
    /// delivery (due at `now`) for every enabled endpoint subscribed to each row's topic,
    /// announces the sell-out of events that the batch's orders sold out (an
    /// `event.sold_out` outbox row, once per event), and moves the cursor, in one
    /// transaction: each row is fanned out once, whichever node runs it.
    async fn webhook_fan_out(&self, limit: u32, now: UnixMs) -> Result<FanOut>;
    /// Claims up to `limit` due deliveries of enabled endpoints under `lease` until
    /// `now + lease_ms` (counting the attempt). A delivery is due when pending, its
    /// `next_attempt_at` is reached, and no older delivery of the same endpoint and
    /// ticketing event is pending (per-event order). Claims of concurrent callers are
    /// disjoint.
    async fn webhook_claim(
        &self,
        now: UnixMs,
        lease_ms: u64,
        limit: u32,
        lease: &str,
    ) -> Result<Vec<ClaimedDelivery>>;
    /// Records an attempt's result if the delivery is still claimed under its lease;
    /// returns whether it was recorded.
    async fn webhook_record(&self, attempt: DeliveryAttempt) -> Result<bool>;
    /// The endpoint's deliveries, newest first. `NotFound` for an unknown endpoint.
    async fn webhook_deliveries(
        &self,
        webhook: u64,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<WebhookDelivery>>;
    /// Queues a delivery again, due at `now` with a new retry window (whatever its status;
    /// a claim in flight loses its lease). `NotFound` unless it belongs to the endpoint.
    async fn webhook_redeliver(&self, webhook: u64, delivery: u64, now: UnixMs) -> Result<WebhookDelivery>;

    // --- allocations and presale codes (`allocations.rs`) ---
    /// Creates an allocation, with a catalog change row for the event (so every node
    /// reloads it). `NotFound` for an unknown event; `Invalid` when the name is taken or a
    /// seat is in another allocation of the event.
    async fn create_allocation(&self, allocation: NewAllocation) -> Result<Allocation>;
    /// The event's allocations, oldest first.
    async fn allocations(&self, event: EventId) -> Result<Vec<Allocation>>;
    /// Stores a batch of code digests for an allocation (`NotFound` when it does not exist).
    async fn create_presale_codes(&self, codes: NewPresaleCodes) -> Result<()>;
    /// The code with this digest, if the event has it.
    async fn presale_code(&self, event: EventId, code_hash: &str) -> Result<Option<PresaleCode>>;
    /// Counts one use of the code for a hold of `seats` seats, atomically and only while
    /// unexpired at `now` and within both limits; returns whether it was counted.
    async fn use_presale_code(
        &self,
        event: EventId,
        code_hash: &str,
        seats: u32,
        now: UnixMs,
    ) -> Result<bool>;
    /// Gives back a use counted by `use_presale_code` whose hold was then not made.
    async fn return_presale_code_use(&self, event: EventId, code_hash: &str, seats: u32) -> Result<()>;

    // --- the sold-out waitlist (`waitlist.rs`) ---
    /// Joins the event's waitlist: the user's active entry when there is one, else a new
    /// waiting entry at the back (next `seq`), unless `max_entries` entries are active.
    /// `NotFound` for an unknown event.
    async fn waitlist_join(&self, entry: NewWaitlistEntry, max_entries: u32) -> Result<WaitlistJoin>;
    async fn waitlist_entry(&self, id: &str) -> Result<Option<WaitlistEntry>>;
    /// The user's waiting or offered entry of the event.
    async fn waitlist_active_of(&self, event: EventId, user: &UserId) -> Result<Option<WaitlistEntry>>;
    /// Waiting and offered entries of one event (or of every event), in join order.
    async fn waitlist_active(&self, event: Option<EventId>) -> Result<Vec<WaitlistEntry>>;
    /// Waiting entries of the event with `seq` up to this one (a waiting entry's position).
    async fn waitlist_position(&self, event: EventId, seq: u64) -> Result<u64>;
    /// Compare-and-set: moves the entry from `from` to `change`; false when it was not in `from`.
    async fn waitlist_update(&self, id: &str, from: WaitlistState, change: WaitlistChange) -> Result<bool>;
}
