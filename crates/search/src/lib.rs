//! Event discovery: an index of events with BM25 full text (a word of 5+ letters also
//! matches within one edit), filters for city, category, start date and a geo radius,
//! results sorted by relevance or by date, and opaque keyset cursors.
//!
//! Layout: this module holds the backend-neutral part, the [`SearchIndex`] trait (what the
//! server feeds from the catalog's change feed and asks at `GET /v1/search`) and its
//! values ([`EventDoc`], [`SearchQuery`], [`SearchPage`]); [`tantivy_index`] is the embedded
//! backend, a tantivy index in a directory of its own. A distributed deployment puts
//! another implementation behind the same trait and feeds it from its stream.
//!
//! The index is derived data: every document can be rebuilt from the store
//! ([`SearchIndex::rebuild`]). Each commit records the position in the change feed it is
//! current to, atomically with the documents, so a restart resumes exactly there.

pub mod geo;
pub mod tantivy_index;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice_core::UnixMs;
use serde::{Deserialize, Serialize};

pub use tantivy_index::TantivyIndex;

/// Most hits one page may hold.
pub const MAX_PAGE_LIMIT: usize = 100;
/// Largest geo radius accepted: about half the Earth's circumference.
pub const MAX_RADIUS_KM: f64 = 20_000.0;
/// Longest query text accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 500;
/// Query words used at most (more are ignored), so one request cannot build a huge query.
pub const MAX_QUERY_WORDS: usize = 16;
/// Words of at least this many characters also match terms one edit away.
pub const FUZZY_MIN_CHARS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A query that cannot be answered as asked (the server answers 400).
    #[error("{0}")]
    InvalidQuery(String),
    #[error("invalid cursor")]
    BadCursor,
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("the search index is closed")]
    Closed,
    #[error("search index data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = SearchError> = std::result::Result<T, E>;

/// A price with its currency, in minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub amount: i64,
    /// ISO 4217, e.g. `USD`.
    pub currency: String,
}

/// One event as the index knows it: what is searched and filtered on, and what a hit
/// shows (stored with the document, so a page of hits needs no store lookup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDoc {
    /// The event's number (`ev_<id>`).
    pub id: u64,
    pub name: String,
    pub performers: Vec<String>,
    /// Genres of the performers (`pop`, `football`, ...), searched as words too.
    pub genres: Vec<String>,
    pub venue_id: u64,
    pub venue_name: String,
    pub city: String,
    pub category: String,
    pub description: Option<String>,
    pub starts_at: UnixMs,
    pub onsale_at: UnixMs,
    /// `published` or `cancelled`.
    pub status: String,
    pub seat_count: u32,
    /// The venue's location in degrees.
    pub lat: f64,
    pub lon: f64,
    /// Cheapest and dearest tier price.
    pub price_min: Option<Price>,
    pub price_max: Option<Price>,
    /// No seat is available (every seat held or sold), as last reported.
    pub sold_out: bool,
    /// The catalog's `updated_at` of the event.
    pub updated_at: UnixMs,
}

impl EventDoc {
    /// Whether tickets are on sale at `now`: published, the onsale passed, not started.
    pub fn on_sale_at(&self, now: UnixMs) -> bool {
        self.status == "published" && self.onsale_at <= now && now < self.starts_at
    }
}

/// A change to apply to the index.
// Nearly every change is an upsert: boxing its document would add an allocation per
// document to save space only in the rare delete.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum IndexChange {
    /// Adds the document, replacing any with its id.
    Upsert(EventDoc),
    /// Removes the document with this id, if any.
    Delete(u64),
}

/// The order of hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    /// Best BM25 score first (ties: lower id first). Needs query text.
    Relevance,
    /// Earliest start first (ties: lower id first).
    Date,
}

/// Events within `radius_km` (great-circle distance) of a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoRadius {
    pub lat: f64,
    pub lon: f64,
    pub radius_km: f64,
}

/// A search: optional text and filters; every filter given must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchQuery {
    /// Words to look for in name, performers, venue, city, category and description.
    pub text: Option<String>,
    /// Exact city, case-insensitive.
    pub city: Option<String>,
    /// Exact category, case-insensitive.
    pub category: Option<String>,
    /// `starts_at >= from`.
    pub from: Option<UnixMs>,
    /// `starts_at < to`.
    pub to: Option<UnixMs>,
    pub near: Option<GeoRadius>,
    /// Only events with this sold-out flag (`Some(false)`: hide sold-out events).
    pub sold_out: Option<bool>,
    /// Default: relevance when there is text, else date.
    pub sort: Option<SortOrder>,
    /// 1 to [`MAX_PAGE_LIMIT`].
    pub limit: usize,
    /// `next_cursor` of the previous page, with the same query.
    pub cursor: Option<String>,
}

impl SearchQuery {
    /// The text, trimmed, if any is left.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref().map(str::trim).filter(|t| !t.is_empty())
    }

    /// The order asked for, or the default.
    pub fn sort_order(&self) -> SortOrder {
        match (self.sort, self.text()) {
            (Some(sort), _) => sort,
            (None, Some(_)) => SortOrder::Relevance,
            (None, None) => SortOrder::Date,
        }
    }

    /// Checks the bounds of every parameter.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_PAGE_LIMIT).contains(&self.limit) {
            return Err(SearchError::InvalidQuery(format!("limit must be from 1 to {MAX_PAGE_LIMIT}")));
        }
        if let Some(text) = &self.text
            && text.chars().count() > MAX_QUERY_CHARS
        {
            return Err(SearchError::InvalidQuery(format!("q must be at most {MAX_QUERY_CHARS} characters")));
        }
        if let Some(near) = self.near {
            geo::validate(near.lat, near.lon, near.radius_km).map_err(SearchError::InvalidQuery)?;
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from > to
        {
            return Err(SearchError::InvalidQuery("from must not be after to".into()));
        }
        if self.sort_order() == SortOrder::Relevance && self.text().is_none() {
            return Err(SearchError::InvalidQuery("sorting by relevance needs q".into()));
        }
        Ok(())
    }
}

/// One result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub doc: EventDoc,
    /// BM25 score (relevance order only).
    pub score: Option<f32>,
    /// Distance from the geo filter's point.
    pub distance_km: Option<f64>,
}

/// A page of results and the cursor to the next, if there is more.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    pub next_cursor: Option<String>,
}

/// The embedded index and any other backend: fed from the catalog's change feed, asked by
/// `GET /v1/search`.
#[async_trait]
pub trait SearchIndex: Send + Sync + 'static {
    /// Applies `changes` and records that the index is current to `position` of the change
    /// feed; the documents and the position become durable and visible together.
    async fn apply(&self, changes: Vec<IndexChange>, position: u64) -> Result<()>;

    /// Replaces every document with `docs`, current to `position`.
    async fn rebuild(&self, docs: Vec<EventDoc>, position: u64) -> Result<()>;

    /// The change feed position of the last commit; `None` for an index that was never
    /// built (new, or discarded because its format changed): it needs a rebuild.
    async fn position(&self) -> Result<Option<u64>>;

    /// Documents in the index.
    async fn doc_count(&self) -> Result<u64>;

    async fn search(&self, query: SearchQuery) -> Result<SearchPage>;

    /// Stops writing and lets go of the index's files (another process or a new instance
    /// may then open it); searches keep working, writes fail with [`SearchError::Closed`].
    async fn close(&self) {}
}

/// Where a page ends, in the page's order: ascending `(primary, id)`, where `primary` is
/// the start time (date order) or the score mapped to an order-preserving integer and
/// negated (relevance order). Opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SortKey {
    pub primary: i64,
    pub id: u64,
}

impl SortKey {
    pub(crate) fn relevance(score: f32, id: u64) -> Self {
        SortKey { primary: -i64::from(orderable(score)), id }
    }

    pub(crate) fn encode(self, order: SortOrder) -> String {
        let tag = match order {
            SortOrder::Relevance => 'r',
            SortOrder::Date => 'd',
        };
        URL_SAFE_NO_PAD.encode(format!("{tag}:{}:{}", self.primary, self.id))
    }

    pub(crate) fn decode(cursor: &str, order: SortOrder) -> Result<SortKey> {
        let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| SearchError::BadCursor)?;
        let text = std::str::from_utf8(&raw).map_err(|_| SearchError::BadCursor)?;
        let mut parts = text.split(':');
        let tag = match order {
            SortOrder::Relevance => "r",
            SortOrder::Date => "d",
        };
        if parts.next() != Some(tag) {
            return Err(SearchError::BadCursor);
        }
        let primary = parts.next().and_then(|p| p.parse().ok()).ok_or(SearchError::BadCursor)?;
        let id = parts.next().and_then(|p| p.parse().ok()).ok_or(SearchError::BadCursor)?;
        if parts.next().is_some() {
            return Err(SearchError::BadCursor);
        }
        Ok(SortKey { primary, id })
    }
}

/// Maps an `f32` to an `i32` with the same order (IEEE 754 total order).
fn orderable(score: f32) -> i32 {
    let bits = score.to_bits() as i32;
    bits ^ ((((bits >> 31) as u32) >> 1) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_map_to_integers_in_the_same_order() {
        let scores = [-3.5f32, -0.0, 0.0, 1e-6, 0.5, 1.0, 7.25, 1e9];
        for pair in scores.windows(2) {
            assert!(orderable(pair[0]) <= orderable(pair[1]), "{pair:?}");
        }
        assert!(SortKey::relevance(2.0, 9) < SortKey::relevance(1.0, 1), "better score sorts first");
        assert!(SortKey::relevance(1.0, 1) < SortKey::relevance(1.0, 2), "then lower id");
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage_or_another_order() {
        let key = SortKey { primary: -1_234_567, id: 42 };
        let cursor = key.encode(SortOrder::Relevance);
        assert_eq!(SortKey::decode(&cursor, SortOrder::Relevance).unwrap(), key);
        assert!(matches!(SortKey::decode(&cursor, SortOrder::Date), Err(SearchError::BadCursor)));
        for bad in ["", "!!", "ZDox", &URL_SAFE_NO_PAD.encode("d:1:2:3")] {
            assert!(matches!(SortKey::decode(bad, SortOrder::Date), Err(SearchError::BadCursor)), "{bad}");
        }
    }

    #[test]
    fn validation_bounds_every_parameter() {
        let ok = SearchQuery { limit: 20, ..SearchQuery::default() };
        assert!(ok.validate().is_ok());
        assert_eq!(ok.sort_order(), SortOrder::Date);
        let with_text = SearchQuery { text: Some(" rock ".into()), ..ok.clone() };
        assert_eq!(with_text.sort_order(), SortOrder::Relevance);
        let bad = [
            SearchQuery { limit: 0, ..ok.clone() },
            SearchQuery { limit: 101, ..ok.clone() },
            SearchQuery { near: Some(GeoRadius { lat: 91.0, lon: 0.0, radius_km: 1.0 }), ..ok.clone() },
            SearchQuery { near: Some(GeoRadius { lat: 0.0, lon: 181.0, radius_km: 1.0 }), ..ok.clone() },
            SearchQuery { near: Some(GeoRadius { lat: 0.0, lon: 0.0, radius_km: 0.0 }), ..ok.clone() },
            SearchQuery { near: Some(GeoRadius { lat: 0.0, lon: 0.0, radius_km: 20_001.0 }), ..ok.clone() },
            SearchQuery { from: Some(10), to: Some(5), ..ok.clone() },
            SearchQuery { sort: Some(SortOrder::Relevance), ..ok.clone() },
            SearchQuery { text: Some("x".repeat(MAX_QUERY_CHARS + 1)), ..ok.clone() },
        ];
        for query in bad {
            assert!(matches!(query.validate(), Err(SearchError::InvalidQuery(_))), "{query:?}");
        }
    }
}
