//! Request and response bodies of the HTTP API. Requests reject unknown fields; responses
//! are built from domain values here and nowhere else.

use std::collections::BTreeMap;

use boxoffice_core::{HoldView, Money, SeatMap, UnixMs};
use boxoffice_store::{Event, Order, Performer, Venue};
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

#[derive(Serialize, ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    pub summary: EventSummary,
    pub description: Option<String>,
    pub venue: VenueDto,
    pub performers: Vec<PerformerDto>,
    /// Price of a seat per tier, best tier first in `venue.tiers`.
    pub prices: BTreeMap<String, MoneyDto>,
}

impl From<&Event> for EventDetail {
    fn from(e: &Event) -> Self {
        EventDetail {
            summary: e.into(),
            description: e.description.clone(),
            venue: (&e.venue).into(),
            performers: e.performers.iter().map(Into::into).collect(),
            prices: e.prices.iter().map(|(t, m)| (t.clone(), (*m).into())).collect(),
        }
    }
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
}

#[derive(Serialize, ToSchema)]
pub struct AvailabilityDto {
    pub version: u64,
    pub available_count: u32,
    pub bitmap_base64: String,
}
