//! Request and response bodies of the HTTP API. Requests reject unknown fields; responses
//! are built from domain values here and nowhere else.

use std::collections::BTreeMap;

use boxoffice_core::{HoldView, Money, SeatMap, UnixMs};
use boxoffice_store::{Event, Order, Performer, Refund, Ticket, Venue};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::catalog::EventEntry;

pub fn rfc3339(ms: UnixMs) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Money: integer minor units and an ISO 4217 code.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyDto {
    pub amount: i64,
    #[schema(example = "USD")]
    pub currency: String,
}

impl From<Money> for MoneyDto {
    fn from(m: Money) -> Self {
        MoneyDto { amount: m.amount, currency: m.currency.to_string() }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// Every error: `{"error":{"code","message",...details}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct VenueDto {
    pub id: String,
    pub name: String,
    pub city: String,
    pub lat: f64,
    pub lon: f64,
    pub address: Option<String>,
    pub seat_count: u32,
    pub tiers: Vec<String>,
}

impl From<&Venue> for VenueDto {
    fn from(v: &Venue) -> Self {
        VenueDto {
            id: format!("ve_{}", v.id),
            name: v.name.clone(),
            city: v.city.clone(),
            lat: v.lat,
            lon: v.lon,
            address: v.address.clone(),
            seat_count: v.seat_count,
            tiers: v.tiers.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PerformerDto {
    pub id: String,
    pub name: String,
    pub genre: Option<String>,
}

impl From<&Performer> for PerformerDto {
    fn from(p: &Performer) -> Self {
        PerformerDto { id: format!("pf_{}", p.id), name: p.name.clone(), genre: p.genre.clone() }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EventSummary {
    pub id: String,
    pub name: String,
    pub city: String,
    pub category: String,
    pub starts_at: String,
    pub onsale_at: String,
    #[schema(example = "published")]
    pub status: String,
    pub seat_count: u32,
    pub venue_id: String,
    pub venue_name: String,
}

impl From<&Event> for EventSummary {
    fn from(e: &Event) -> Self {
        EventSummary {
            id: e.id.to_string(),
            name: e.name.clone(),
            city: e.venue.city.clone(),
            category: e.category.clone(),
            starts_at: rfc3339(e.starts_at),
            onsale_at: rfc3339(e.onsale_at),
            status: e.status.as_str().to_owned(),
            seat_count: e.seat_count,
            venue_id: format!("ve_{}", e.venue.id),
            venue_name: e.venue.name.clone(),
        }
    }
}

/// A search result: the fields of an event summary plus what search knows about it.
#[derive(Serialize, ToSchema)]
pub struct SearchHitDto {
    #[serde(flatten)]
    pub summary: EventSummary,
    pub venue_lat: f64,
    pub venue_lon: f64,
    /// Cheapest and dearest seat price.
    pub price_min: Option<MoneyDto>,
    pub price_max: Option<MoneyDto>,
    /// Published, past its onsale and not started.
    pub on_sale: bool,
    /// No seat available (held or sold), as of the last second or so.
    pub sold_out: bool,
    /// BM25 relevance (in relevance order only).
    pub score: Option<f32>,
    /// Great-circle distance from `lat`/`lon` (with a geo filter only).
    pub distance_km: Option<f64>,
}

impl SearchHitDto {
    pub fn new(hit: &boxoffice_search::SearchHit, now: UnixMs) -> Self {
        let doc = &hit.doc;
        let money = |p: &boxoffice_search::Price| MoneyDto { amount: p.amount, currency: p.currency.clone() };
        SearchHitDto {
            summary: EventSummary {
                id: boxoffice_core::EventId(doc.id).to_string(),
                name: doc.name.clone(),
                city: doc.city.clone(),
                category: doc.category.clone(),
                starts_at: rfc3339(doc.starts_at),
                onsale_at: rfc3339(doc.onsale_at),
                status: doc.status.clone(),
                seat_count: doc.seat_count,
                venue_id: format!("ve_{}", doc.venue_id),
                venue_name: doc.venue_name.clone(),
            },
            venue_lat: doc.lat,
            venue_lon: doc.lon,
            price_min: doc.price_min.as_ref().map(money),
            price_max: doc.price_max.as_ref().map(money),
            on_sale: doc.on_sale_at(now),
            sold_out: doc.sold_out,
            score: hit.score,
            distance_km: hit.distance_km.map(|d| (d * 1000.0).round() / 1000.0),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    pub summary: EventSummary,
    pub description: Option<String>,
    pub venue: VenueDto,
    pub performers: Vec<PerformerDto>,
    /// Price of a seat per tier, best tier first in `venue.tiers`.
    pub prices: BTreeMap<String, MoneyDto>,
    /// The event's waiting room.
    pub queue: QueueSettingsDto,
    /// Door scanners accept the static (printable) QR payload; false: only the rotating one.
    pub static_tickets_allowed: bool,
    /// The orphan-seat rule: holds that would leave a single available seat alone in its
    /// row are refused with `422 ORPHAN_SEAT` (see `POST /v1/events/{event_id}/holds`).
    pub orphan_rule: bool,
}

impl From<&Event> for EventDetail {
    fn from(e: &Event) -> Self {
        EventDetail {
            summary: e.into(),
            description: e.description.clone(),
            venue: (&e.venue).into(),
            performers: e.performers.iter().map(Into::into).collect(),
            prices: e.prices.iter().map(|(t, m)| (t.clone(), (*m).into())).collect(),
            queue: e.queue.into(),
            static_tickets_allowed: e.static_tickets_allowed,
            orphan_rule: e.orphan_rule,
        }
    }
}

// ---- waiting room ----

/// An event's waiting room settings.
#[derive(Serialize, ToSchema)]
pub struct QueueSettingsDto {
    /// Holds need an `Admission-Token` from the waiting room.
    pub enabled: bool,
    pub admit_rate_per_second: u32,
    pub token_ttl_seconds: u32,
    pub max_length: u64,
    /// Leading zero bits of SHA-256(challenge || nonce) a join needs; 0 = no proof of work.
    pub proof_of_work_bits: u8,
}

impl From<boxoffice_store::QueueSettings> for QueueSettingsDto {
    fn from(q: boxoffice_store::QueueSettings) -> Self {
        QueueSettingsDto {
            enabled: q.enabled,
            admit_rate_per_second: q.admit_rate_per_second,
            token_ttl_seconds: q.token_ttl_seconds,
            max_length: q.max_length,
            proof_of_work_bits: q.proof_of_work_bits,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatusBody {
    Published,
    Cancelled,
}

/// Queue settings to change; the ones left out keep their values.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueuePatchBody {
    pub enabled: Option<bool>,
    /// At least 1.
    pub admit_rate_per_second: Option<u64>,
    /// At least 1.
    pub token_ttl_seconds: Option<u64>,
    /// At least 1.
    pub max_length: Option<u64>,
    /// 0 to 32.
    pub proof_of_work_bits: Option<u64>,
}

/// `PATCH /v1/events/{id}`: any subset; what is left out keeps its value.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventPatchBody {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<EventStatusBody>,
    pub onsale_at: Option<String>,
    pub starts_at: Option<String>,
    pub queue: Option<QueuePatchBody>,
    /// Whether door scanners accept the static (printable) QR payload.
    pub static_tickets_allowed: Option<bool>,
    /// Turns the orphan-seat rule on or off for this event's holds.
    pub orphan_rule: Option<bool>,
}

/// A proof-of-work challenge: find `nonce` such that SHA-256 of the UTF-8 bytes of
/// `challenge` followed by those of `nonce` starts with `bits` zero bits.
#[derive(Serialize, ToSchema)]
pub struct ChallengeDto {
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015")]
    pub challenge: String,
    pub bits: u8,
    /// The challenge is single-use and must be answered before this time.
    pub expires_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowBody {
    pub challenge: String,
    /// At most 64 characters.
    #[schema(example = "48213")]
    pub nonce: String,
}

/// Optional body of a join: `pow` when the event asks for proof of work.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinQueueBody {
    pub pow: Option<PowBody>,
}

/// A waiting room entry as its owner sees it.
#[derive(Serialize, ToSchema)]
pub struct QueueEntryDto {
    #[schema(example = "qu_8f14e45fceea167a")]
    pub queue_id: String,
    pub event_id: String,
    /// `prequeue` | `waiting` | `admitted` | `expired`.
    #[schema(example = "waiting")]
    pub state: String,
    /// 1 = next; `null` in the pre-queue (the order is drawn at the onsale) and after.
    pub position: Option<u64>,
    /// `position / admit_rate_per_second`, rounded up.
    pub eta_seconds: Option<u64>,
    /// Poll again after this long; an entry not polled for 3 times this expires.
    pub poll_after_seconds: Option<u64>,
    /// When admitted: send it as `Admission-Token` with holds on this event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SectionDto {
    pub id: u32,
    pub name: String,
    /// Best tier of the section's seats.
    pub tier: String,
}

#[derive(Serialize, ToSchema)]
pub struct SeatDto {
    pub index: u32,
    pub label: String,
    pub section: String,
    pub row: u32,
    pub number: u32,
    pub x: f32,
    pub y: f32,
    pub tier: String,
}

/// Seat geometry of an event: immutable.
#[derive(Serialize, ToSchema)]
pub struct SeatsDocument {
    pub tiers: Vec<String>,
    pub sections: Vec<SectionDto>,
    pub seats: Vec<SeatDto>,
}

impl SeatsDocument {
    pub fn new(map: &SeatMap) -> Self {
        let sections = map.sections();
        SeatsDocument {
            tiers: map.tiers().to_vec(),
            sections: sections
                .iter()
                .enumerate()
                .map(|(i, s)| SectionDto {
                    id: i as u32,
                    name: s.name.clone(),
                    tier: map.tiers()[s.tier as usize].clone(),
                })
                .collect(),
            seats: map
                .seats()
                .iter()
                .enumerate()
                .map(|(i, s)| SeatDto {
                    index: i as u32,
                    label: map.label(i as u32),
                    section: sections[s.section as usize].name.clone(),
                    row: s.row,
                    number: s.number,
                    x: s.x,
                    y: s.y,
                    tier: map.tiers()[s.tier as usize].clone(),
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PricedSeat {
    pub label: String,
    pub index: u32,
    pub price: MoneyDto,
}

#[derive(Serialize, ToSchema)]
pub struct HoldDto {
    pub hold_id: String,
    pub event_id: String,
    #[schema(example = "held")]
    pub status: String,
    pub seats: Vec<PricedSeat>,
    pub total: MoneyDto,
    pub created_at: String,
    pub expires_at: String,
}

impl HoldDto {
    pub fn new(view: &HoldView, entry: &EventEntry) -> Self {
        let seats: Vec<PricedSeat> = view
            .seats
            .iter()
            .map(|&i| PricedSeat { label: entry.map.label(i), index: i, price: entry.price_of(i).into() })
            .collect();
        let total = total_of(view.seats.iter().map(|&i| entry.price_of(i)), entry);
        HoldDto {
            hold_id: view.id.to_string(),
            event_id: view.event.to_string(),
            status: view.status.as_str().to_owned(),
            seats,
            total: total.into(),
            created_at: rfc3339(view.created_ms),
            expires_at: rfc3339(view.expires_ms),
        }
    }
}

/// The sum of seat prices (an event prices all tiers in one currency).
pub fn total_of(prices: impl Iterator<Item = Money>, entry: &EventEntry) -> Money {
    let currency = entry.tier_prices[0].currency;
    Money::sum(prices).unwrap_or(Money::new(0, currency))
}

#[derive(Serialize, ToSchema)]
pub struct TicketDto {
    pub ticket_id: String,
    pub seat: String,
    pub seat_index: u32,
    pub price: MoneyDto,
    #[schema(example = "valid")]
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct OrderDto {
    pub order_id: String,
    pub event_id: String,
    pub hold_id: String,
    #[schema(example = "confirmed")]
    pub status: String,
    pub seats: Vec<PricedSeat>,
    pub total: MoneyDto,
    pub tickets: Vec<TicketDto>,
    pub email: Option<String>,
    pub created_at: String,
}

fn snake<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

impl From<&Order> for OrderDto {
    fn from(o: &Order) -> Self {
        OrderDto {
            order_id: o.id.to_string(),
            event_id: o.event.to_string(),
            hold_id: o.hold.to_string(),
            status: snake(&o.status),
            seats: o
                .tickets
                .iter()
                .map(|t| PricedSeat {
                    label: t.seat_label.clone(),
                    index: t.seat_index,
                    price: t.price.into(),
                })
                .collect(),
            total: o.total.into(),
            tickets: o
                .tickets
                .iter()
                .map(|t| TicketDto {
                    ticket_id: t.id.to_string(),
                    seat: t.seat_label.clone(),
                    seat_index: t.seat_index,
                    price: t.price.into(),
                    status: snake(&t.status),
                })
                .collect(),
            email: o.email.clone(),
            created_at: rfc3339(o.created_at),
        }
    }
}

/// A ticket as its owner (or an admin) sees it, with its signed QR payload.
#[derive(Serialize, ToSchema)]
pub struct TicketDetailDto {
    pub ticket_id: String,
    pub order_id: String,
    pub event_id: String,
    pub seat: String,
    pub seat_index: u32,
    pub price: MoneyDto,
    #[schema(example = "valid")]
    pub status: String,
    /// Grows when the ticket is reissued; older payloads stop verifying.
    pub revision: u32,
    /// `base64url(ticket_id|event_id|seat_index|revision)` `.` `base64url(Ed25519 signature)`.
    pub qr_payload: Option<String>,
}

impl From<&Ticket> for TicketDetailDto {
    fn from(t: &Ticket) -> Self {
        TicketDetailDto {
            ticket_id: t.id.to_string(),
            order_id: t.order_id.to_string(),
            event_id: t.event.to_string(),
            seat: t.seat_label.clone(),
            seat_index: t.seat_index,
            price: t.price.into(),
            status: snake(&t.status),
            revision: t.revision,
            qr_payload: t.qr_payload.clone(),
        }
    }
}

/// What a refund request voided.
#[derive(Serialize, ToSchema)]
pub struct RefundInfoDto {
    pub refund_id: String,
    pub ticket_ids: Vec<String>,
    pub amount: MoneyDto,
    /// `succeeded` once the gateway returned the money; `pending` while it is retried.
    #[schema(example = "succeeded")]
    pub status: String,
}

/// The order after a refund, and what this request refunded (`null`: nothing more, the
/// chosen tickets were refunded already).
#[derive(Serialize, ToSchema)]
pub struct RefundDto {
    #[serde(flatten)]
    pub order: OrderDto,
    pub refund: Option<RefundInfoDto>,
}

impl RefundDto {
    pub fn new(order: &Order, refund: Option<&Refund>) -> Self {
        RefundDto {
            order: order.into(),
            refund: refund.map(|r| RefundInfoDto {
                refund_id: r.id.clone(),
                ticket_ids: r.tickets.iter().map(ToString::to_string).collect(),
                amount: r.amount.into(),
                status: snake(&r.state),
            }),
        }
    }
}

/// The answer of a door scan: `valid` (now scanned), `already_scanned`, `voided` (refunded
/// or transferred), `invalid` (forged or unknown), `expired` (a rotating payload outside
/// the clock tolerance) or `static_not_allowed` (a static payload at an event that refuses
/// them).
#[derive(Serialize, ToSchema)]
pub struct VerifyDto {
    #[schema(example = "valid")]
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seat: Option<String>,
}

// ---- requests ----

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BestAvailableBody {
    pub count: u32,
    pub section: Option<String>,
}

/// Either `seats` (labels) or `best_available`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    #[schema(example = json!(["A-12-7", "A-12-8"]))]
    pub seats: Option<Vec<String>>,
    pub best_available: Option<BestAvailableBody>,
    /// A presale code: entitles the hold to the seats of the code's allocation.
    #[schema(example = "K7M2QXH9RT4W")]
    pub presale_code: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentBody {
    #[schema(example = "card")]
    pub method: String,
    #[schema(example = "tok_visa")]
    pub token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    pub payment: PaymentBody,
    pub email: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    pub user: String,
    pub role: crate::auth::Role,
    pub email: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenDto {
    pub token: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SectionBody {
    pub name: String,
    pub rows: u32,
    pub seats_per_row: u32,
    pub tier: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeatBody {
    pub section: String,
    pub row: u32,
    pub number: u32,
    pub x: f32,
    pub y: f32,
    pub tier: Option<String>,
}

/// A venue laid out by `sections` (shapes) or by explicit `seats`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VenueBody {
    pub name: String,
    pub city: String,
    pub lat: f64,
    pub lon: f64,
    pub address: Option<String>,
    /// Price tiers, best first (default `["standard"]`).
    pub tiers: Option<Vec<String>>,
    pub sections: Option<Vec<SectionBody>>,
    pub seats: Option<Vec<SeatBody>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PerformerBody {
    pub name: String,
    pub genre: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    pub name: String,
    pub venue_id: String,
    #[serde(default)]
    pub performer_ids: Vec<String>,
    pub category: String,
    pub starts_at: String,
    pub onsale_at: String,
    /// A price for every tier of the venue.
    pub prices: BTreeMap<String, MoneyDto>,
    pub description: Option<String>,
    /// The orphan-seat rule for this event's holds; on when left out.
    pub orphan_rule: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct AvailabilityDto {
    pub version: u64,
    pub available_count: u32,
    pub bitmap_base64: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// The tickets to refund; the whole order when absent.
    pub ticket_ids: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    pub qr_payload: String,
}
