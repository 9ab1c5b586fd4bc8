//! Keeps the search index current with the catalog, and rebuilds it for recovery.
//!
//! The store writes a row to its catalog change feed in the transaction of every catalog
//! change (event created or changed, venue created). [`SearchFeed`] follows that feed from
//! the position recorded in the index's last commit: every [`FEED_INTERVAL`] it reads the
//! new rows, loads the current state of the events they name (all events of a venue for a
//! venue row), upserts their documents and commits them with the new position in one
//! commit; then it mirrors the position into the store's metadata
//! ([`POSITION_KEY`]). Rows are "this changed, read it again", so replaying one after a
//! crash between the two writes is harmless.
//!
//! Sold-out flags come from the inventory, not the catalog: the same loop compares every
//! event's availability with its indexed flag every [`SOLD_OUT_SWEEP_INTERVAL`] and
//! re-indexes the events whose flag flipped.
//!
//! An index that was never built (new data dir, deleted, or in an older format) or that is
//! ahead of the store (a store restored from a backup) is rebuilt from the store at start-up
//! ([`rebuild`]); `boxoffice search reindex` does the same offline ([`reindex`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use boxoffice_core::EventId;
use boxoffice_search::{EventDoc, IndexChange, Price, SearchIndex, SearchQuery, TantivyIndex};
use boxoffice_store::{CatalogEntity, Event, SqliteStore, Store};
use tokio::sync::watch;

use crate::{AppState, StartError};

/// How often the feed is read: at most one index commit per interval, so a catalog change
/// is searchable within about this long.
pub const FEED_INTERVAL: Duration = Duration::from_millis(200);
/// Feed rows applied per commit.
pub const FEED_BATCH: u32 = 5_000;
/// How often indexed sold-out flags are compared with the inventory.
pub const SOLD_OUT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Events read from the store per query during a rebuild.
const REBUILD_CHUNK: usize = 2_000;
/// Store metadata key mirroring the feed position of the index's last commit.
pub const POSITION_KEY: &str = "search.catalog-changes.seq";
/// The index's directory inside the data dir.
pub const INDEX_DIR: &str = "search";

/// Opens the index of a data dir.
pub fn open_index(data_dir: &Path) -> Result<TantivyIndex, StartError> {
    TantivyIndex::open(&data_dir.join(INDEX_DIR)).map_err(|e| StartError::Search(e.to_string()))
}

/// The document of an event.
pub fn event_doc(event: &Event, sold_out: bool) -> EventDoc {
    let price = |m: &boxoffice_core::Money| Price { amount: m.amount, currency: m.currency.to_string() };
    let mut genres: Vec<String> = Vec::new();
    for genre in event.performers.iter().filter_map(|p| p.genre.as_ref()) {
        if !genres.contains(genre) {
            genres.push(genre.clone());
        }
    }
    EventDoc {
        id: event.id.0,
        name: event.name.clone(),
        performers: event.performers.iter().map(|p| p.name.clone()).collect(),
        genres,
        venue_id: event.venue.id,
        venue_name: event.venue.name.clone(),
        city: event.venue.city.clone(),
        category: event.category.clone(),
        description: event.description.clone(),
        starts_at: event.starts_at,
        onsale_at: event.onsale_at,
        status: event.status.as_str().to_owned(),
        seat_count: event.seat_count,
        lat: event.venue.lat,
        lon: event.venue.lon,
        price_min: event.prices.iter().map(|(_, m)| m).min_by_key(|m| m.amount).map(price),
        price_max: event.prices.iter().map(|(_, m)| m).max_by_key(|m| m.amount).map(price),
        sold_out,
        updated_at: event.updated_at,
    }
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    pub events: usize,
    /// The change feed position the index is now current to.
    pub position: u64,
}

/// Replaces the index's documents with every event of the store; `sold_out` names the
/// events to flag sold out.
pub async fn rebuild(
    store: &dyn Store,
    index: &dyn SearchIndex,
    sold_out: &HashSet<EventId>,
) -> Result<Rebuilt, String> {
    // The head first: a change committed while the events are read is replayed after.
    let position = store.catalog_change_head().await.map_err(|e| e.to_string())?;
    let ids = store.all_event_ids().await.map_err(|e| e.to_string())?;
    let mut docs = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(REBUILD_CHUNK) {
        let events = store.events_by_ids(chunk).await.map_err(|e| e.to_string())?;
        docs.extend(events.iter().map(|e| event_doc(e, sold_out.contains(&e.id))));
    }
    let events = docs.len();
    index.rebuild(docs, position).await.map_err(|e| e.to_string())?;
    store.meta_set(POSITION_KEY, &position.to_string()).await.map_err(|e| e.to_string())?;
    Ok(Rebuilt { events, position })
}

/// `boxoffice search reindex`: rebuilds the index of a data dir that no server is using.
pub async fn reindex(data_dir: &Path) -> Result<Rebuilt, StartError> {
    let _lock = crate::lock_data_dir(data_dir)?;
    let store = SqliteStore::open(&data_dir.join("boxoffice.db")).await?;
    let index = open_index(data_dir)?;
    // Offline there is no inventory: an event is sold out when every seat has a ticket.
    // A server started later corrects the flags from its inventory within a second.
    let mut sold_out = HashSet::new();
    for event in store.events_by_ids(&store.all_event_ids().await?).await? {
        if store.sold_seats(event.id).await?.len() >= event.seat_count as usize {
            sold_out.insert(event.id);
        }
    }
    let rebuilt = rebuild(&store, &index, &sold_out).await.map_err(StartError::Search)?;
    index.close().await;
    store.close().await;
    Ok(rebuilt)
}

/// The follower of the catalog's change feed; owned by its worker task.
#[derive(Default)]
pub struct SearchFeed {
    /// Every indexed event and whether its document says sold out.
    indexed_sold_out: HashMap<EventId, bool>,
    last_sweep: Option<Instant>,
}

impl SearchFeed {
    /// Brings the index up to date at start-up: a rebuild when it was never built or is
    /// ahead of the store, else the feed rows after its position.
    pub async fn catch_up(&mut self, state: &AppState) -> Result<(), String> {
        let head = state.store.catalog_change_head().await.map_err(|e| e.to_string())?;
        match state.search.position().await.map_err(|e| e.to_string())? {
            Some(position) if position <= head => {
                self.load_flags(state).await?;
                while self.step(state).await? > 0 {}
            }
            position => {
                let sold_out = self.sold_out_now(state).await?;
                let rebuilt = rebuild(state.store.as_ref(), state.search.as_ref(), &sold_out).await?;
                tracing::info!(events = rebuilt.events, position = rebuilt.position, previous = ?position,
                    "search index rebuilt from the store");
                self.load_flags(state).await?;
            }
        }
        self.sweep_sold_out(state).await
    }

    /// Applies the feed rows after the index's position in one commit; returns how many.
    pub async fn step(&mut self, state: &AppState) -> Result<usize, String> {
        let position = state.search.position().await.map_err(|e| e.to_string())?.unwrap_or(0);
        let changes =
            state.store.catalog_changes_after(position, FEED_BATCH).await.map_err(|e| e.to_string())?;
        let Some(last) = changes.last().map(|c| c.seq) else { return Ok(0) };
        let mut ids: Vec<EventId> = Vec::new();
        for change in &changes {
            match change.entity {
                CatalogEntity::Event(id) => ids.push(id),
                CatalogEntity::Venue(venue) => {
                    ids.extend(state.store.venue_event_ids(venue).await.map_err(|e| e.to_string())?)
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        if state.memory.is_none() {
            // Distributed mode: another node may have made or changed these events.
            follow_other_nodes(state, &ids).await?;
        }
        let updates = self.documents(state, &ids).await?;
        let count = updates.len();
        state.search.apply(updates, last).await.map_err(|e| e.to_string())?;
        state.store.meta_set(POSITION_KEY, &last.to_string()).await.map_err(|e| e.to_string())?;
        metrics::counter!("boxoffice_search_documents_indexed_total").increment(count as u64);
        metrics::gauge!("boxoffice_search_feed_position").set(last as f64);
        tracing::debug!(rows = changes.len(), events = count, position = last, "search index updated");
        Ok(changes.len())
    }

    /// Re-indexes the events whose sold-out flag no longer matches the inventory.
    pub async fn sweep_sold_out(&mut self, state: &AppState) -> Result<(), String> {
        self.last_sweep = Some(Instant::now());
        let mut flipped = Vec::new();
        for (&id, &indexed) in &self.indexed_sold_out {
            if let Ok(counts) = state.inventory.seat_counts(id).await
                && (counts.available == 0) != indexed
            {
                flipped.push(id);
            }
        }
        if flipped.is_empty() {
            return Ok(());
        }
        flipped.sort_unstable();
        let updates = self.documents(state, &flipped).await?;
        let position = state.search.position().await.map_err(|e| e.to_string())?.unwrap_or(0);
        state.search.apply(updates, position).await.map_err(|e| e.to_string())?;
        tracing::debug!(events = flipped.len(), "sold-out flags updated in the search index");
        Ok(())
    }

    /// Upserts of the current state of `ids` (deletes for ids the store no longer has),
    /// remembering the sold-out flag each document gets.
    async fn documents(&mut self, state: &AppState, ids: &[EventId]) -> Result<Vec<IndexChange>, String> {
        let events = state.store.events_by_ids(ids).await.map_err(|e| e.to_string())?;
        let found: HashSet<EventId> = events.iter().map(|e| e.id).collect();
        let mut changes = Vec::with_capacity(ids.len());
        for event in &events {
            let sold_out = state.inventory.seat_counts(event.id).await.is_ok_and(|c| c.available == 0);
            self.indexed_sold_out.insert(event.id, sold_out);
            changes.push(IndexChange::Upsert(event_doc(event, sold_out)));
        }
        for id in ids.iter().filter(|id| !found.contains(id)) {
            self.indexed_sold_out.remove(id);
            changes.push(IndexChange::Delete(id.0));
        }
        Ok(changes)
    }

    /// Events sold out in the inventory now.
    async fn sold_out_now(&self, state: &AppState) -> Result<HashSet<EventId>, String> {
        let mut sold_out = HashSet::new();
        for id in state.store.all_event_ids().await.map_err(|e| e.to_string())? {
            if state.inventory.seat_counts(id).await.is_ok_and(|c| c.available == 0) {
                sold_out.insert(id);
            }
        }
        Ok(sold_out)
    }

    /// Learns every event's indexed sold-out flag: the store lists the events, the index
    /// the ones it flags.
    async fn load_flags(&mut self, state: &AppState) -> Result<(), String> {
        let flagged = sold_out_in_index(state.search.as_ref()).await?;
        self.indexed_sold_out = state
            .store
            .all_event_ids()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|id| (id, flagged.contains(&id)))
            .collect();
        Ok(())
    }
}

/// Ids of the events the index flags sold out.
async fn sold_out_in_index(index: &dyn SearchIndex) -> Result<HashSet<EventId>, String> {
    let mut flagged = HashSet::new();
    let mut cursor = None;
    loop {
        let query = SearchQuery {
            sold_out: Some(true),
            limit: boxoffice_search::MAX_PAGE_LIMIT,
            cursor,
            ..SearchQuery::default()
        };
        let page = index.search(query).await.map_err(|e| e.to_string())?;
        flagged.extend(page.hits.iter().map(|h| EventId(h.doc.id)));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(flagged),
        }
    }
}

/// Runs the feed until shutdown: a step every [`FEED_INTERVAL`], a sold-out sweep every
/// [`SOLD_OUT_SWEEP_INTERVAL`].
/// Keeps this node's view of events current with changes made on other nodes: cached
/// metadata is dropped, and events this node's inventory does not know are loaded.
async fn follow_other_nodes(state: &AppState, ids: &[EventId]) -> Result<(), String> {
    for &id in ids {
        state.catalog.invalidate(id);
        // Idempotent: registers the seat map on this node; initializes nothing twice.
        crate::load_event(state, id).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub fn spawn_worker(state: AppState, mut stop: watch::Receiver<bool>, mut feed: SearchFeed) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(FEED_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = feed.step(&state).await {
                tracing::warn!(worker = "search feed", error = %e, "worker step failed; retrying next tick");
            }
            if feed.last_sweep.is_none_or(|at| at.elapsed() >= SOLD_OUT_SWEEP_INTERVAL)
                && let Err(e) = feed.sweep_sold_out(&state).await
            {
                tracing::warn!(worker = "search sold-out sweep", error = %e, "worker step failed; retrying");
            }
        }
    });
}
