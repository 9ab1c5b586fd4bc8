//! The in-process catalog cache: each event's record, seat map, per-tier prices and its
//! rendered detail and seat-geometry documents, loaded once from the store. Events change
//! only through this process's admin routes, which invalidate their entry.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use boxoffice_core::{EventId, Money, SeatMap};
use boxoffice_store::{Event, Store, StoreError};
use bytes::Bytes;
use parking_lot::RwLock;

use crate::error::ApiError;
use crate::http::dto;

pub struct EventEntry {
    pub event: Event,
    pub map: Arc<SeatMap>,
    /// Price of each tier, by tier index of the map.
    pub tier_prices: Vec<Money>,
    /// `GET /v1/events/{id}` body and its ETag.
    pub detail: (Bytes, String),
    seats: OnceLock<SeatsDocument>,
    /// Holds made on this event by this process since the entry was loaded (for the
    /// admin's holds-per-second figure).
    pub holds_made: std::sync::atomic::AtomicU64,
    /// The event's allocations (channels), loaded with the entry.
    pub allocations: Arc<crate::allocations::EventAllocations>,
}

/// `GET /v1/events/{id}/seats`, rendered once (the geometry never changes), plain, gzip-
/// and brotli-compressed (a 60,000-seat map is about 5 MB of JSON, far less compressed).
pub struct SeatsDocument {
    pub plain: Bytes,
    pub gzip: Bytes,
    pub brotli: Bytes,
    pub etag: String,
    pub gzip_etag: String,
    pub brotli_etag: String,
}

/// Brotli settings for the seat geometry: compressed once per event, served many times.
const BROTLI_QUALITY: u32 = 9;
const BROTLI_WINDOW_BITS: u32 = 22;

impl EventEntry {
    pub fn new(event: Event, map: Arc<SeatMap>) -> Result<Self, StoreError> {
        let tier_prices = map
            .tiers()
            .iter()
            .map(|tier| {
                event.prices.iter().find(|(t, _)| t == tier).map(|(_, m)| *m).ok_or_else(|| {
                    StoreError::Corrupt(format!("event {} has no price for tier {tier}", event.id))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let body = serde_json::to_vec(&dto::EventDetail::from(&event)).expect("event details serialize");
        let etag = format!("\"{}-{}\"", event.id, event.updated_at);
        Ok(EventEntry {
            event,
            map,
            tier_prices,
            detail: (Bytes::from(body), etag),
            seats: OnceLock::new(),
            holds_made: Default::default(),
            allocations: Default::default(),
        })
    }

    pub fn price_of(&self, seat: u32) -> Money {
        self.tier_prices[self.map.seat(seat).tier as usize]
    }

    /// `GET /v1/events/{id}/seats` body (rendered once: the geometry never changes).
    pub fn seats_document(&self) -> &SeatsDocument {
        self.seats.get_or_init(|| {
            let body =
                serde_json::to_vec(&dto::SeatsDocument::new(&self.map)).expect("seat documents serialize");
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut encoder, &body).expect("writing to memory cannot fail");
            let gzip = encoder.finish().expect("compressing into memory cannot fail");
            let mut brotli = Vec::new();
            {
                let mut writer =
                    brotli::CompressorWriter::new(&mut brotli, 64 * 1024, BROTLI_QUALITY, BROTLI_WINDOW_BITS);
                std::io::Write::write_all(&mut writer, &body).expect("writing to memory cannot fail");
            }
            SeatsDocument {
                plain: Bytes::from(body),
                gzip: Bytes::from(gzip),
                brotli: Bytes::from(brotli),
                etag: format!("\"seats-{}\"", self.event.id),
                gzip_etag: format!("\"seats-{}-gz\"", self.event.id),
                brotli_etag: format!("\"seats-{}-br\"", self.event.id),
            }
        })
    }
}

#[derive(Default)]
pub struct Catalog {
    events: RwLock<HashMap<EventId, Arc<EventEntry>>>,
}

impl Catalog {
    pub async fn event(&self, store: &dyn Store, id: EventId) -> Result<Arc<EventEntry>, ApiError> {
        if let Some(entry) = self.events.read().get(&id) {
            return Ok(entry.clone());
        }
        let event = match store.event(id).await {
            Err(StoreError::NotFound) => return Err(ApiError::not_found("event")),
            other => other?,
        };
        let map = store.event_seat_map(id).await?;
        let allocations = store.allocations(id).await?;
        let mut entry = EventEntry::new(event, map)?;
        entry.allocations =
            Arc::new(crate::allocations::EventAllocations::new(&allocations, entry.map.len()));
        let entry = Arc::new(entry);
        Ok(self.events.write().entry(id).or_insert(entry).clone())
    }

    pub fn invalidate(&self, id: EventId) {
        self.events.write().remove(&id);
    }
}
