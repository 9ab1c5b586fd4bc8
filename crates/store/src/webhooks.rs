//! Types of the webhook endpoints and their delivery log (see [`crate::Store`]'s webhook
//! methods), and what both backends share about them.
//!
//! Deliveries are made from the outbox: the dispatcher reads it by position (its own
//! cursor, [`WEBHOOK_CURSOR_KEY`], not `sent_at`) and adds one delivery per subscribed
//! endpoint in the same transaction that moves the cursor, so a row is fanned out once
//! whichever node does it. A delivery is then claimed (a lease), sent, and its result
//! recorded under that claim.

use boxoffice_core::UnixMs;

use crate::rows::{corrupt, cursor_int, from_db};
use crate::{StoreError, TOPIC_ORDER_CREATED, TOPIC_ORDER_REFUNDED, TOPIC_TICKET_TRANSFERRED};

/// A door scan admitted a ticket (written in the scan's transaction).
pub const TOPIC_TICKET_SCANNED: &str = "ticket.scanned";
/// Every seat of an event has a valid ticket (announced once per event).
pub const TOPIC_EVENT_SOLD_OUT: &str = "event.sold_out";
/// A waitlist entry was offered a hold.
pub const TOPIC_WAITLIST_OFFERED: &str = "waitlist.offered";

/// The event types an endpoint may subscribe to: the outbox topics of the same names.
pub const WEBHOOK_EVENT_TYPES: [&str; 6] = [
    TOPIC_ORDER_CREATED,
    TOPIC_ORDER_REFUNDED,
    TOPIC_TICKET_TRANSFERRED,
    TOPIC_TICKET_SCANNED,
    TOPIC_EVENT_SOLD_OUT,
    TOPIC_WAITLIST_OFFERED,
];

/// The meta row holding the outbox `seq` the webhook dispatcher has fanned out through;
/// the outbox purge keeps every row after it.
pub const WEBHOOK_CURSOR_KEY: &str = "webhooks.outbox-seq";

/// An endpoint to register. The caller has validated every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    pub url: String,
    pub secret: String,
    /// Event types, each one of [`WEBHOOK_EVENT_TYPES`], without duplicates.
    pub events: Vec<String>,
    pub created_at: UnixMs,
    /// Enabled endpoints allowed at once: the insert is refused at this count.
    pub max_enabled: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: u64,
    pub url: String,
    /// Needed to sign deliveries; never shown back by the API.
    pub secret: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub created_at: UnixMs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or being attempted).
    Pending,
    Delivered,
    /// Retried until the retry window closed; a manual redelivery queues it again.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> crate::Result<Self> {
        match s {
            "pending" => Ok(DeliveryStatus::Pending),
            "delivered" => Ok(DeliveryStatus::Delivered),
            "failed" => Ok(DeliveryStatus::Failed),
            other => Err(StoreError::Corrupt(format!("delivery status {other:?}"))),
        }
    }
}

/// One outbox message for one endpoint, with what its attempts did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub id: u64,
    pub webhook_id: u64,
    /// The outbox row it comes from: the message's id (`evt_<seq>`) for every endpoint.
    pub outbox_seq: u64,
    /// The event type (outbox topic).
    pub kind: String,
    /// The ticketing event the message is about (or the message's key when it names none):
    /// the unit of ordering.
    pub event_key: String,
    /// The message's JSON, the `data` of the body.
    pub payload: String,
    /// When the message was written.
    pub message_created_at: UnixMs,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: UnixMs,
    /// The first attempt since the delivery was (re)queued: the retry window starts here.
    pub first_attempt_at: Option<UnixMs>,
    pub last_attempt_at: Option<UnixMs>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: UnixMs,
    pub delivered_at: Option<UnixMs>,
}

/// A delivery claimed for one attempt, with what sending it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    /// As it is after the claim (`attempts` counts this attempt).
    pub delivery: WebhookDelivery,
    pub url: String,
    pub secret: String,
    /// The claim's token: the result is recorded only under it.
    pub lease: String,
}

/// What an attempt decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Try again at this time.
    Retry {
        next_attempt_at: UnixMs,
    },
    /// Give up (the retry window closed).
    Failed,
}

/// The result of one attempt, recorded by [`crate::Store::webhook_record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub delivery_id: u64,
    pub lease: String,
    pub at: UnixMs,
    /// The endpoint's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why it failed, when it did (bounded by the caller).
    pub error: Option<String>,
    pub outcome: DeliveryOutcome,
}

/// What one fan-out step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOut {
    /// Outbox rows read past the cursor.
    pub read: u32,
    /// Deliveries created from them.
    pub deliveries: u32,
    /// The cursor after the step.
    pub position: u64,
}

/// The ticketing event an outbox payload is about: its `event_id` field, or else the
/// row's key.
pub(crate) fn event_key(payload: &str, key: &str) -> String {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("event_id").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| key.to_owned())
}

/// The subscribed endpoints of a topic among `(id, events)`.
pub(crate) fn subscribers<'a>(
    hooks: &'a [(i64, Vec<String>)],
    topic: &'a str,
) -> impl Iterator<Item = i64> + 'a {
    hooks.iter().filter(move |(_, events)| events.iter().any(|e| e == topic)).map(|(id, _)| *id)
}

pub(crate) fn parse_events(json: &str) -> crate::Result<Vec<String>> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("webhook events: {e}")))
}

/// The `event.sold_out` message of an event.
pub(crate) fn sold_out_message(
    event: boxoffice_core::EventId,
    seat_count: i64,
    at: UnixMs,
) -> serde_json::Value {
    serde_json::json!({
        "event_id": event.to_string(),
        "seat_count": seat_count,
        "sold_out_at_ms": at,
    })
}

/// Events named by the `order.created` rows among `(topic, payload)`: the candidates for a
/// sell-out.
pub(crate) fn sold_out_candidates<'a>(
    rows: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<boxoffice_core::EventId> {
    let mut events: Vec<boxoffice_core::EventId> = rows
        .filter(|(topic, _)| *topic == TOPIC_ORDER_CREATED)
        .filter_map(|(_, payload)| {
            let value: serde_json::Value = serde_json::from_str(payload).ok()?;
            boxoffice_core::EventId::parse(value.get("event_id")?.as_str()?).ok()
        })
        .collect();
    events.sort();
    events.dedup();
    events
}

/// Columns of a delivery, as [`DeliveryRow`] reads them (table alias `d`).
pub(crate) const DELIVERY_COLUMNS: &str = "d.id, d.webhook_id, d.outbox_seq, d.type, d.event_key, d.payload, \
     d.message_created_at, d.status, d.attempts, d.next_attempt_at, d.first_attempt_at, d.last_attempt_at, \
     d.last_status_code, d.last_error, d.created_at, d.delivered_at";

/// [`DELIVERY_COLUMNS`] unqualified, for SQLite's `RETURNING` (which takes no table alias).
pub(crate) const DELIVERY_RETURNING: &str = "id, webhook_id, outbox_seq, type, event_key, payload, \
     message_created_at, status, attempts, next_attempt_at, first_attempt_at, last_attempt_at, \
     last_status_code, last_error, created_at, delivered_at";

/// Columns of an endpoint, as [`WebhookRow`] reads them.
pub(crate) const WEBHOOK_COLUMNS: &str = "id, url, secret, events, enabled, created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct WebhookRow {
    pub(crate) id: i64,
    pub(crate) url: String,
    pub(crate) secret: String,
    pub(crate) events: String,
    pub(crate) enabled: bool,
    pub(crate) created_at: i64,
}

impl WebhookRow {
    pub(crate) fn into_webhook(self) -> crate::Result<Webhook> {
        Ok(Webhook {
            id: from_db(self.id, "webhook id")?,
            url: self.url,
            secret: self.secret,
            events: parse_events(&self.events)?,
            enabled: self.enabled,
            created_at: from_db(self.created_at, "created_at")?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    pub(crate) id: i64,
    pub(crate) webhook_id: i64,
    pub(crate) outbox_seq: i64,
    #[sqlx(rename = "type")]
    pub(crate) kind: String,
    pub(crate) event_key: String,
    pub(crate) payload: String,
    pub(crate) message_created_at: i64,
    pub(crate) status: String,
    pub(crate) attempts: i32,
    pub(crate) next_attempt_at: i64,
    pub(crate) first_attempt_at: Option<i64>,
    pub(crate) last_attempt_at: Option<i64>,
    pub(crate) last_status_code: Option<i32>,
    pub(crate) last_error: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) delivered_at: Option<i64>,
}

impl DeliveryRow {
    pub(crate) fn into_delivery(self) -> crate::Result<WebhookDelivery> {
        let opt = |v: Option<i64>, what: &str| v.map(|v| from_db(v, what)).transpose();
        Ok(WebhookDelivery {
            id: from_db(self.id, "delivery id")?,
            webhook_id: from_db(self.webhook_id, "webhook id")?,
            outbox_seq: from_db(self.outbox_seq, "outbox seq")?,
            kind: self.kind,
            event_key: self.event_key,
            payload: self.payload,
            message_created_at: from_db(self.message_created_at, "message_created_at")?,
            status: DeliveryStatus::parse(&self.status)?,
            attempts: u32::try_from(self.attempts)
                .map_err(|_| corrupt(format!("attempts {}", self.attempts)))?,
            next_attempt_at: from_db(self.next_attempt_at, "next_attempt_at")?,
            first_attempt_at: opt(self.first_attempt_at, "first_attempt_at")?,
            last_attempt_at: opt(self.last_attempt_at, "last_attempt_at")?,
            last_status_code: self
                .last_status_code
                .map(|c| u16::try_from(c).map_err(|_| corrupt(format!("status code {c}"))))
                .transpose()?,
            last_error: self.last_error,
            created_at: from_db(self.created_at, "created_at")?,
            delivered_at: opt(self.delivered_at, "delivered_at")?,
        })
    }
}

/// The status, code and error columns an attempt's outcome writes.
pub(crate) fn outcome_columns(outcome: DeliveryOutcome) -> (&'static str, Option<UnixMs>) {
    match outcome {
        DeliveryOutcome::Delivered => (DeliveryStatus::Delivered.as_str(), None),
        DeliveryOutcome::Retry { next_attempt_at } => {
            (DeliveryStatus::Pending.as_str(), Some(next_attempt_at))
        }
        DeliveryOutcome::Failed => (DeliveryStatus::Failed.as_str(), None),
    }
}

/// A page of deliveries, newest first: `limit + 1` rows were read to know whether more
/// follow; the cursor is the last id shown.
pub(crate) fn delivery_page(
    rows: Vec<DeliveryRow>,
    limit: u32,
) -> crate::Result<crate::Page<WebhookDelivery>> {
    let mut items: Vec<WebhookDelivery> =
        rows.into_iter().map(DeliveryRow::into_delivery).collect::<crate::Result<_>>()?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|d| d.id.to_string())
    } else {
        None
    };
    Ok(crate::Page { items, next_cursor })
}

/// The id after which a page of deliveries continues (exclusive, newest first).
pub(crate) fn delivery_cursor(cursor: Option<&str>) -> crate::Result<i64> {
    match cursor {
        None => Ok(i64::MAX),
        Some(c) => cursor_int(c),
    }
}

/// The `ticket.scanned` message of a ticket admitted at `now` (ms).
pub(crate) fn scan_message(ticket: &crate::Ticket, now: i64) -> serde_json::Value {
    serde_json::json!({
        "ticket_id": ticket.id.as_str(),
        "revision": ticket.revision,
        "event_id": ticket.event.to_string(),
        "order_id": ticket.order_id.as_str(),
        "seat": ticket.seat_label,
        "user": ticket.user.as_str(),
        "scanned_at_ms": now,
    })
}
