//! The SQLite backend of [`Store`]: one database file in WAL mode, and an order is on disk
//! before the buyer hears about it.
//!
//! Group commit: transactions commit with `synchronous=NORMAL` (SQLite writes the WAL but
//! does not `fsync` it per commit), and every write method returns only after
//! [`GroupSync::durable`] has `fsync`ed the WAL once after its commit. Commits that finish
//! while one `fsync` runs share the next one, so concurrent checkouts pay one disk flush
//! between them instead of one each. (SQLite itself still syncs the WAL before each
//! checkpoint.)
//!
//! SQLite allows one writer at a time, and a deferred transaction that reads before it
//! writes fails with `SQLITE_BUSY` instead of waiting when another connection wrote in
//! between. So every write goes through a pool of exactly one connection and every write
//! transaction starts with `BEGIN IMMEDIATE`: writers of this process queue in the pool
//! rather than in SQLite, and writers of other processes are waited for by the busy
//! timeout. Reads use a separate pool of a few `query_only` connections, which WAL lets run
//! beside the writer.
//!
//! Seat maps are immutable once stored, and big (a 60,000-seat map is about 2 MB of JSON),
//! so they are parsed once, off the async threads, and kept in memory per venue and event.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use boxoffice_core::{Currency, EventId, HoldId, Money, OrderId, SeatMap, TicketId, UnixMs, UserId};
use parking_lot::Mutex;
use rusqlite::OptionalExtension;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{FromRow, QueryBuilder, Sqlite};

use crate::rows::{RevocationRow, TicketCursor, corrupt, cursor_int, from_db};
use crate::sqlite_writer::{WriteGate, Writer};
use crate::{
    AttemptState, AttemptUpdate, AuditRecord, AuditType, CatalogChange, CatalogEntity, Event, EventFilter,
    EventStatus, FIRST_TICKET_REVISION, KEY_CLAIM_ABANDONED_MS, KeyClaim, KeyScope, NewAuditRecord, NewEvent,
    NewOrder, NewPaymentAttempt, NewVenue, Order, OrderStatus, OutboxMessage, Page, PaymentAttempt,
    Performer, Refund, RefundOutcome, RefundRequest, RefundState, Result, ScanOutcome, SoldSeat, Store,
    StoreError, TOPIC_ORDER_CREATED, TOPIC_ORDER_REFUNDED, Ticket, TicketStatus, Venue,
};
use crate::{
    Revocation, TOPIC_TICKET_TRANSFERRED, TicketTransfer, check_transfer, transfer_audit, transfer_message,
    transferred_ticket,
};

mod webhooks;

/// How long a writer waits for another process holding the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read connections: enough for concurrent page loads, few enough to keep memory small.
const READ_CONNECTIONS: u32 = 4;

/// Columns of an event and its venue, as [`EventRow`] reads them. A macro rather than a
/// const so that `concat!` can complete it into static queries.
macro_rules! event_select {
    () => {
        "SELECT e.id, e.name, e.category, e.starts_at, e.onsale_at, e.status, e.prices, \
         e.description, e.seat_count, e.created_at, e.updated_at, \
         v.id AS venue_id, v.name AS venue_name, v.city AS venue_city, v.lat AS venue_lat, \
         v.lon AS venue_lon, v.address AS venue_address, v.seat_count AS venue_seat_count, \
         v.tiers AS venue_tiers, \
         s.queue_enabled, s.queue_admit_rate_per_second, s.queue_token_ttl_seconds, \
         s.queue_max_length, s.queue_proof_of_work_bits, s.static_tickets_allowed, s.orphan_rule \
         FROM events e JOIN venues v ON v.id = e.venue_id \
         LEFT JOIN event_settings s ON s.event_id = e.id"
    };
}

/// Columns of an order, as [`OrderRow`] reads them.
macro_rules! order_select {
    () => {
        "SELECT id, event_id, user_id, hold_id, status, email, total_amount, currency, \
         created_at, payment_attempt_id FROM orders"
    };
}

/// Columns of a ticket, as [`TicketRow`] reads them.
macro_rules! ticket_select {
    () => {
        "SELECT id, order_id, event_id, seat_index, seat_label, price_amount, currency, status, \
         user_id, revision, qr_payload FROM tickets"
    };
}

/// Columns of a payment attempt and its order, as [`AttemptRow`] reads them.
macro_rules! attempt_select {
    () => {
        "SELECT a.id, a.hold_id, a.event_id, a.user_id, a.seats, a.amount, a.currency, a.gateway, \
         a.gateway_key, a.authorization_id, a.state, a.created_at, a.updated_at, a.pin_deadline, \
         o.id AS order_id \
         FROM payment_attempts a LEFT JOIN orders o ON o.payment_attempt_id = a.id"
    };
}

/// Columns of a refund and the key of the payment it refunds, as [`RefundRow`] reads them.
macro_rules! refund_select {
    () => {
        "SELECT r.id, r.order_id, r.payment_attempt_id, r.gateway_key, r.amount, r.currency, \
         r.ticket_ids, r.state, r.created_at, a.gateway_key AS payment_key \
         FROM refunds r LEFT JOIN payment_attempts a ON a.id = r.payment_attempt_id"
    };
}

/// A write transaction on the store's own connection; holds the [`WriteGate`] until it
/// ends, so that the writer thread does not wait for it inside SQLite.
struct GatedTx {
    tx: sqlx::Transaction<'static, Sqlite>,
    _gate: tokio::sync::OwnedMutexGuard<()>,
}

impl GatedTx {
    async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for GatedTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for GatedTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

/// The store in one SQLite file. See the module documentation for the concurrency design.
pub struct SqliteStore {
    path: PathBuf,
    /// The writer thread: the hot path's writes, many to a commit.
    jobs: Writer,
    /// One writer of this process at a time: the writer thread or `writer` below.
    gate: WriteGate,
    /// Exactly one connection, for the rare writes (catalog, refunds, scans).
    writer: SqlitePool,
    /// `query_only` connections, so that a write sent here by mistake fails loudly instead
    /// of competing with the writer for the lock.
    reader: SqlitePool,
    venue_maps: Mutex<HashMap<u64, Arc<SeatMap>>>,
    event_maps: Mutex<HashMap<EventId, Arc<SeatMap>>>,
}

impl fmt::Debug for SqliteStore {
    // Hand-written: the cached seat maps would print megabytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `path` and brings its schema up to
    /// date.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // The one writer stays open for the store's life: its WAL then stays in place too.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        // Before the readers connect: they must find the schema and WAL mode in place.
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options.create_if_missing(false).pragma("query_only", "ON"))
            .await?;
        let gate = WriteGate::default();
        let jobs = Writer::start(path, BUSY_TIMEOUT, gate.clone())?;
        Ok(SqliteStore {
            path: path.to_owned(),
            jobs,
            gate,
            writer,
            reader,
            venue_maps: Mutex::new(HashMap::new()),
            event_maps: Mutex::new(HashMap::new()),
        })
    }

    /// The write pool (one connection), for maintenance and tests that need SQL the
    /// [`Store`] trait does not offer. Writing through it is serialised with the store's
    /// own writes.
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// Group commit so far: `(writes done by the writer thread, batches it committed)`.
    pub fn group_commit_counts(&self) -> (u64, u64) {
        self.jobs.counts()
    }

    /// Begins a write transaction on the store's own connection, holding the write gate.
    async fn begin_write(&self) -> Result<GatedTx> {
        let gate = self.gate.clone().lock_owned().await;
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        Ok(GatedTx { tx, _gate: gate })
    }

    /// Closes every connection, waiting for them to finish; later calls fail.
    pub async fn close(&self) {
        self.jobs.close();
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn cached_map<K: Copy + Eq + Hash>(
        &self,
        cache: &Mutex<HashMap<K, Arc<SeatMap>>>,
        key: K,
        sql: &'static str,
        id: i64,
    ) -> Result<Arc<SeatMap>> {
        if let Some(map) = cache.lock().get(&key) {
            return Ok(map.clone());
        }
        // Loaded without holding the lock: two concurrent first loads parse twice, which is
        // cheaper than making every other map wait behind one parse.
        let text: String = sqlx::query_scalar(sql)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or(StoreError::NotFound)?;
        let map = blocking(move || serde_json::from_str::<SeatMap>(&text))
            .await
            .map_err(|e| StoreError::Corrupt(format!("seat map {id}: {e}")))?;
        Ok(cache.lock().entry(key).or_insert_with(|| Arc::new(map)).clone())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.reader)
            .await?)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn meta_set_if_absent(&self, key: &str, value: &str) -> Result<bool> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.jobs
            .write(move |conn| {
                let done = conn
                    .prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?
                    .execute((&key, &value))?;
                Ok(done == 1)
            })
            .await
    }
    async fn create_venue(&self, venue: NewVenue) -> Result<Venue> {
        let map = venue.map.clone();
        let map_json = blocking(move || serde_json::to_string(&*map))
            .await
            .expect("a seat map serializes: its coordinates are checked finite when built");
        let tiers = venue.map.tiers().to_vec();
        let tiers_json = serde_json::to_string(&tiers).expect("a list of strings serializes");
        let seat_count =
            u32::try_from(venue.map.len()).expect("seat maps are limited far below u32::MAX seats");
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO venues (name, city, city_folded, lat, lon, address, seat_count, tiers, \
             seat_map) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&venue.name)
        .bind(&venue.city)
        .bind(fold(&venue.city))
        .bind(venue.lat)
        .bind(venue.lon)
        .bind(&venue.address)
        .bind(i64::from(seat_count))
        .bind(tiers_json)
        .bind(map_json)
        .execute(&mut *tx)
        .await?;
        insert_catalog_change(&mut tx, "venue", done.last_insert_rowid(), now_ms()).await?;
        tx.commit().await?;
        let id = from_db(done.last_insert_rowid(), "venue id")?;
        self.venue_maps.lock().insert(id, venue.map);
        Ok(Venue {
            id,
            name: venue.name,
            city: venue.city,
            lat: venue.lat,
            lon: venue.lon,
            address: venue.address,
            seat_count,
            tiers,
        })
    }

    async fn venue(&self, id: u64) -> Result<Venue> {
        let id = lookup_id(id)?;
        let row: VenueRow = sqlx::query_as(
            "SELECT id, name, city, lat, lon, address, seat_count, tiers FROM venues WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?
        .ok_or(StoreError::NotFound)?;
        row.into_venue()
    }

    async fn venue_seat_map(&self, id: u64) -> Result<Arc<SeatMap>> {
        let db_id = lookup_id(id)?;
        self.cached_map(&self.venue_maps, id, "SELECT seat_map FROM venues WHERE id = ?", db_id).await
    }

    async fn create_performer(&self, name: &str, genre: Option<&str>) -> Result<Performer> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("INSERT INTO performers (name, genre) VALUES (?, ?)")
            .bind(name)
            .bind(genre)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Performer {
            id: from_db(done.last_insert_rowid(), "performer id")?,
            name: name.to_owned(),
            genre: genre.map(str::to_owned),
        })
    }

    async fn performers(&self, ids: &[u64]) -> Result<Vec<Performer>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let db_ids = ids.iter().map(|&id| lookup_id(id)).collect::<Result<Vec<_>>>()?;
        let mut query = QueryBuilder::<Sqlite>::new("SELECT id, name, genre FROM performers WHERE id IN (");
        let mut list = query.separated(", ");
        for id in dedup(&db_ids) {
            list.push_bind(id);
        }
        query.push(")");
        let rows: Vec<PerformerRow> = query.build_query_as().fetch_all(&self.reader).await?;
        let found = rows
            .into_iter()
            .map(|row| Ok((row.id, row.into_performer()?)))
            .collect::<Result<HashMap<_, _>>>()?;
        db_ids.iter().map(|id| found.get(id).cloned().ok_or(StoreError::NotFound)).collect()
    }

    async fn create_event(&self, event: NewEvent) -> Result<Event> {
        let mut tx = self.begin_write().await?;
        let event_id = insert_event(&mut tx, &event, now_ms()).await?;
        let created = load_event(&mut tx, event_id).await?;
        tx.commit().await?;
        // The event's map is a copy of the venue's, so a parsed venue map serves as is.
        if let Some(map) = self.venue_maps.lock().get(&event.venue_id).cloned() {
            self.event_maps.lock().insert(created.id, map);
        }
        Ok(created)
    }

    async fn event(&self, id: EventId) -> Result<Event> {
        let id = lookup_id(id.0)?;
        let mut conn = self.reader.acquire().await?;
        load_event(&mut conn, id).await
    }

    async fn event_seat_map(&self, id: EventId) -> Result<Arc<SeatMap>> {
        let db_id = lookup_id(id.0)?;
        self.cached_map(&self.event_maps, id, "SELECT seat_map FROM events WHERE id = ?", db_id).await
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Event>> {
        // A page of nothing would have no last item to continue from.
        let limit = limit.max(1);
        let after = cursor.map(EventCursor::parse).transpose()?;
        let mut query = QueryBuilder::<Sqlite>::new(concat!(event_select!(), " WHERE 1 = 1"));
        if let Some(city) = &filter.city {
            query.push(" AND v.city_folded = ").push_bind(fold(city));
        }
        if let Some(category) = &filter.category {
            query.push(" AND e.category_folded = ").push_bind(fold(category));
        }
        if let Some(from) = filter.from {
            query.push(" AND e.starts_at >= ").push_bind(saturating_db(from));
        }
        if let Some(to) = filter.to {
            query.push(" AND e.starts_at < ").push_bind(saturating_db(to));
        }
        if let Some(after) = after {
            query
                .push(" AND (e.starts_at, e.id) > (")
                .push_bind(after.starts_at)
                .push(", ")
                .push_bind(after.id)
                .push(")");
        }
        // One row more than asked tells whether another page exists.
        query.push(" ORDER BY e.starts_at, e.id LIMIT ").push_bind(i64::from(limit) + 1);
        let mut conn = self.reader.acquire().await?;
        let mut rows: Vec<EventRow> = query.build_query_as().fetch_all(&mut *conn).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = match rows.last() {
            Some(last) if more => Some(EventCursor { starts_at: last.starts_at, id: last.id }.to_string()),
            _ => None,
        };
        let items = events_with_performers(&mut conn, rows).await?;
        Ok(Page { items, next_cursor })
    }

    async fn all_event_ids(&self) -> Result<Vec<EventId>> {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM events ORDER BY id").fetch_all(&self.reader).await?;
        ids.into_iter().map(|id| Ok(EventId(from_db(id, "event id")?))).collect()
    }

    async fn create_events(&self, events: Vec<NewEvent>) -> Result<Vec<EventId>> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let mut ids = Vec::with_capacity(events.len());
        for event in &events {
            ids.push(EventId(from_db(insert_event(&mut tx, event, now).await?, "event id")?));
        }
        tx.commit().await?;
        let venue_maps = self.venue_maps.lock().clone();
        let mut event_maps = self.event_maps.lock();
        for (id, event) in ids.iter().zip(&events) {
            if let Some(map) = venue_maps.get(&event.venue_id) {
                event_maps.insert(*id, map.clone());
            }
        }
        Ok(ids)
    }

    async fn events_by_ids(&self, ids: &[EventId]) -> Result<Vec<Event>> {
        /// Ids per query, well under SQLite's limit of bound parameters.
        const CHUNK: usize = 500;
        let mut conn = self.reader.acquire().await?;
        let mut events = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let db_ids = chunk.iter().map(|id| lookup_id(id.0)).collect::<Result<Vec<_>>>()?;
            let mut query = QueryBuilder::<Sqlite>::new(concat!(event_select!(), " WHERE e.id IN ("));
            let mut list = query.separated(", ");
            for id in dedup(&db_ids) {
                list.push_bind(id);
            }
            query.push(") ORDER BY e.id");
            let rows: Vec<EventRow> = query.build_query_as().fetch_all(&mut *conn).await?;
            events.extend(events_with_performers(&mut conn, rows).await?);
        }
        events.sort_by_key(|e| e.id);
        events.dedup_by_key(|e| e.id);
        Ok(events)
    }

    async fn venue_event_ids(&self, venue_id: u64) -> Result<Vec<EventId>> {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM events WHERE venue_id = ? ORDER BY id")
            .bind(lookup_id(venue_id)?)
            .fetch_all(&self.reader)
            .await?;
        ids.into_iter().map(|id| Ok(EventId(from_db(id, "event id")?))).collect()
    }

    async fn catalog_changes_after(&self, after_seq: u64, limit: u32) -> Result<Vec<CatalogChange>> {
        let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT seq, entity, entity_id, changed_at FROM catalog_changes WHERE seq > ? \
             ORDER BY seq LIMIT ?",
        )
        .bind(saturating_db(after_seq))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(seq, entity, id, at)| {
                let id = from_db(id, "catalog change entity id")?;
                let entity = match entity.as_str() {
                    "event" => CatalogEntity::Event(EventId(id)),
                    "venue" => CatalogEntity::Venue(id),
                    other => return Err(corrupt(format!("catalog change of unknown entity {other:?}"))),
                };
                Ok(CatalogChange {
                    seq: from_db(seq, "catalog change seq")?,
                    entity,
                    changed_at: from_db(at, "catalog change time")?,
                })
            })
            .collect()
    }

    async fn catalog_change_head(&self) -> Result<u64> {
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM catalog_changes")
            .fetch_one(&self.reader)
            .await?;
        from_db(head, "catalog change seq")
    }

    async fn update_event(&self, id: EventId, update: crate::EventUpdate) -> Result<Event> {
        let db_id = lookup_id(id.0)?;
        // IMMEDIATE: the read and the write below see no other writer in between, so two
        // concurrent partial changes both take effect.
        let mut tx = self.begin_write().await?;
        let current = load_event(&mut tx, db_id).await?;
        let onsale_at = update.onsale_at.unwrap_or(current.onsale_at);
        let starts_at = update.starts_at.unwrap_or(current.starts_at);
        if onsale_at > starts_at {
            // Dropping the transaction rolls it back.
            return Err(StoreError::Invalid("onsale_at must not be after starts_at".into()));
        }
        let status = update.status.unwrap_or(current.status);
        if current.status == EventStatus::Cancelled && status != EventStatus::Cancelled {
            // Cancelled is final: its orders are being refunded.
            return Err(StoreError::EventCancelled(id));
        }
        let name = update.name.unwrap_or(current.name);
        let description = update.description.or(current.description);
        let queue = current.queue.updated(&update.queue);
        // Strictly later than the last change: the event's ETag is made of it.
        let updated_at = now_ms().max(to_db(current.updated_at, "updated_at")?.saturating_add(1));
        sqlx::query(
            "UPDATE events SET name = ?, description = ?, status = ?, onsale_at = ?, starts_at = ?, \
             updated_at = ? WHERE id = ?",
        )
        .bind(&name)
        .bind(&description)
        .bind(status.as_str())
        .bind(to_db(onsale_at, "onsale_at")?)
        .bind(to_db(starts_at, "starts_at")?)
        .bind(updated_at)
        .bind(db_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO event_settings (event_id, queue_enabled, queue_admit_rate_per_second, \
             queue_token_ttl_seconds, queue_max_length, queue_proof_of_work_bits) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (event_id) DO UPDATE SET queue_enabled = excluded.queue_enabled, \
             queue_admit_rate_per_second = excluded.queue_admit_rate_per_second, \
             queue_token_ttl_seconds = excluded.queue_token_ttl_seconds, \
             queue_max_length = excluded.queue_max_length, \
             queue_proof_of_work_bits = excluded.queue_proof_of_work_bits",
        )
        .bind(db_id)
        .bind(i64::from(queue.enabled))
        .bind(i64::from(queue.admit_rate_per_second))
        .bind(i64::from(queue.token_ttl_seconds))
        .bind(to_db(queue.max_length, "queue max_length")?)
        .bind(i64::from(queue.proof_of_work_bits))
        .execute(&mut *tx)
        .await?;
        if let Some(allowed) = update.static_tickets_allowed {
            set_static_tickets_allowed(&mut tx, db_id, allowed).await?;
        }
        if let Some(on) = update.orphan_rule {
            sqlx::query("UPDATE event_settings SET orphan_rule = ? WHERE event_id = ?")
                .bind(i64::from(on))
                .bind(db_id)
                .execute(&mut *tx)
                .await?;
        }
        insert_catalog_change(&mut tx, "event", db_id, updated_at).await?;
        let updated = load_event(&mut tx, db_id).await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn create_order(&self, order: NewOrder) -> Result<Order> {
        let event = to_db(order.event.0, "event id")?;
        let created_at = to_db(order.created_at, "created_at")?;
        let job = order.clone();
        let made = self.jobs.write(move |conn| insert_order(conn, &job, event, created_at)).await?;
        let id = match made {
            OrderMade::Created => order.id.clone(),
            // A second completion of one attempt: the first order stands.
            OrderMade::Existing(id) => return self.order(&id).await,
        };
        let mut tickets: Vec<Ticket> = order
            .tickets
            .into_iter()
            .map(|t| Ticket {
                id: t.id,
                order_id: id.clone(),
                event: order.event,
                seat_index: t.seat_index,
                seat_label: t.seat_label,
                price: t.price,
                status: TicketStatus::Valid,
                user: order.user.clone(),
                revision: FIRST_TICKET_REVISION,
                qr_payload: t.qr_payload,
            })
            .collect();
        sort_tickets(&mut tickets);
        Ok(Order {
            id,
            event: order.event,
            user: order.user,
            hold: order.hold,
            payment_attempt: order.payment_attempt,
            status: OrderStatus::Confirmed,
            email: order.email,
            total: order.total,
            tickets,
            created_at: order.created_at,
        })
    }
    async fn order(&self, id: &OrderId) -> Result<Order> {
        let mut conn = self.reader.acquire().await?;
        let row: OrderRow = sqlx::query_as(concat!(order_select!(), " WHERE id = ?"))
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut orders = orders_with_tickets(&mut conn, vec![row]).await?;
        Ok(orders.pop().expect("one row in, one order out"))
    }

    async fn order_for_hold(&self, hold: &HoldId) -> Result<Option<Order>> {
        let mut conn = self.reader.acquire().await?;
        let row: Option<OrderRow> = sqlx::query_as(concat!(order_select!(), " WHERE hold_id = ?"))
            .bind(hold.to_string())
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(orders_with_tickets(&mut conn, vec![row]).await?.pop()),
        }
    }

    async fn orders_of_user(&self, user: &UserId, limit: u32, cursor: Option<&str>) -> Result<Page<Order>> {
        let limit = limit.max(1);
        let before = cursor.map(OrderCursor::parse).transpose()?;
        let mut query = QueryBuilder::<Sqlite>::new(concat!(order_select!(), " WHERE user_id = "));
        query.push_bind(user.as_str());
        if let Some(before) = before {
            query
                .push(" AND (created_at, id) < (")
                .push_bind(before.created_at)
                .push(", ")
                .push_bind(before.id)
                .push(")");
        }
        query.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit) + 1);
        let mut conn = self.reader.acquire().await?;
        let mut rows: Vec<OrderRow> = query.build_query_as().fetch_all(&mut *conn).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = match rows.last() {
            Some(last) if more => {
                Some(OrderCursor { created_at: last.created_at, id: last.id.clone() }.to_string())
            }
            _ => None,
        };
        let items = orders_with_tickets(&mut conn, rows).await?;
        Ok(Page { items, next_cursor })
    }

    async fn sold_seats(&self, event: EventId) -> Result<Vec<SoldSeat>> {
        let event = lookup_id(event.0)?;
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seat_index, user_id FROM tickets \
             WHERE event_id = ? AND status IN ('valid', 'scanned') ORDER BY seat_index",
        )
        .bind(event)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(seat, user)| Ok(SoldSeat { seat_index: seat_index(seat)?, user: parse_user(&user)? }))
            .collect()
    }

    async fn revenue_minor_units(&self, event: EventId) -> Result<i64> {
        let event = lookup_id(event.0)?;
        let (sum,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(SUM(price_amount), 0) FROM tickets \
             WHERE event_id = ? AND status IN ('valid', 'scanned')",
        )
        .bind(event)
        .fetch_one(&self.reader)
        .await?;
        Ok(sum)
    }

    async fn cancellation_refunds_due(&self, limit: u32) -> Result<Vec<(EventId, OrderId)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT DISTINCT t.event_id, t.order_id FROM tickets t JOIN events e ON e.id = t.event_id \
             WHERE e.status = 'cancelled' AND t.status IN ('valid', 'scanned') \
             ORDER BY t.event_id, t.order_id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(event, order)| Ok((EventId(from_db(event, "event id")?), parse_order_id(&order)?)))
            .collect()
    }

    async fn create_attempt(&self, attempt: NewPaymentAttempt) -> Result<PaymentAttempt> {
        let event = to_db(attempt.hold.event.0, "event id")?;
        let created_at = to_db(attempt.created_at, "created_at")?;
        let pin_deadline = to_db(attempt.pin_deadline, "pin_deadline")?;
        let seats = serde_json::to_string(&attempt.seats).expect("seat indexes serialize");
        let job = attempt.clone();
        self.jobs
            .write(move |conn| {
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO payment_attempts (id, hold_id, event_id, user_id, seats, amount, \
                         currency, gateway, gateway_key, state, created_at, updated_at, pin_deadline) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12)",
                    )?
                    .execute(rusqlite::params![
                        job.id,
                        job.hold.to_string(),
                        event,
                        job.user.as_str(),
                        seats,
                        job.amount.amount,
                        job.amount.currency.as_str(),
                        job.gateway,
                        job.gateway_key,
                        AttemptState::Initiated.as_str(),
                        created_at,
                        pin_deadline,
                    ]);
                match inserted {
                    Ok(_) => {}
                    Err(err) if is_foreign_key_failure(&err) => return Err(StoreError::NotFound),
                    Err(err) => return Err(err.into()),
                }
                let audit: Vec<NewAuditRecord> = job
                    .seats
                    .iter()
                    .map(|&seat| NewAuditRecord {
                        event: job.hold.event,
                        kind: AuditType::PaymentInitiated,
                        at: job.created_at,
                        seat,
                        hold: Some(job.hold),
                        order: None,
                        user: job.user.clone(),
                        reason: None,
                    })
                    .collect();
                write_audit(conn, &audit)
            })
            .await?;
        Ok(PaymentAttempt {
            id: attempt.id,
            hold: attempt.hold,
            event: attempt.hold.event,
            user: attempt.user,
            seats: attempt.seats,
            amount: attempt.amount,
            gateway: attempt.gateway,
            gateway_key: attempt.gateway_key,
            authorization_id: None,
            state: AttemptState::Initiated,
            created_at: attempt.created_at,
            updated_at: attempt.created_at,
            pin_deadline: attempt.pin_deadline,
            order: None,
        })
    }
    async fn attempt(&self, id: &str) -> Result<PaymentAttempt> {
        let row: AttemptRow = sqlx::query_as(concat!(attempt_select!(), " WHERE a.id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or(StoreError::NotFound)?;
        row.into_attempt()
    }

    async fn attempts_for_hold(&self, hold: &HoldId) -> Result<Vec<PaymentAttempt>> {
        let rows: Vec<AttemptRow> =
            sqlx::query_as(concat!(attempt_select!(), " WHERE a.hold_id = ? ORDER BY a.created_at, a.id"))
                .bind(hold.to_string())
                .fetch_all(&self.reader)
                .await?;
        rows.into_iter().map(AttemptRow::into_attempt).collect()
    }

    async fn update_attempt(&self, update: AttemptUpdate<'_>) -> Result<bool> {
        use rusqlite::types::Value;
        if update.from.is_empty() {
            return Ok(false);
        }
        let mut sql = String::from(
            "UPDATE payment_attempts SET state = ?, updated_at = ?, \
             authorization_id = COALESCE(?, authorization_id) WHERE id = ? AND state IN (",
        );
        sql.push_str(&vec!["?"; update.from.len()].join(", "));
        sql.push(')');
        let failed =
            matches!(update.to, AttemptState::Voided | AttemptState::Declined | AttemptState::Refunded);
        if failed {
            sql.push_str(
                " AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.payment_attempt_id = payment_attempts.id)",
            );
        }
        let mut values = vec![
            Value::Text(update.to.as_str().to_owned()),
            Value::Integer(to_db(update.now, "now")?),
            update.authorization_id.map_or(Value::Null, |a| Value::Text(a.to_owned())),
            Value::Text(update.id.to_owned()),
        ];
        values.extend(update.from.iter().map(|s| Value::Text(s.as_str().to_owned())));
        let (id, now, reason) = (update.id.to_owned(), update.now, update.to.as_str());
        self.jobs
            .write(move |conn| {
                let changed = conn.prepare_cached(&sql)?.execute(rusqlite::params_from_iter(values.iter()))?;
                if changed == 1 {
                    if failed {
                        let row: Option<(String, String, String)> = conn
                            .prepare_cached(
                                "SELECT a.hold_id, a.user_id, a.seats FROM payment_attempts a WHERE a.id = ?1 \
                                 AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.payment_attempt_id = a.id)",
                            )?
                            .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                            .optional()?;
                        if let Some((hold, user, seats)) = row {
                            let hold = HoldId::parse(&hold).map_err(|_| corrupt(format!("hold id {hold:?}")))?;
                            let user = UserId::parse(&user).map_err(|_| corrupt(format!("user id {user:?}")))?;
                            let seats: Vec<u32> = serde_json::from_str(&seats)
                                .map_err(|_| corrupt(format!("seats of attempt {id}")))?;
                            let audit: Vec<NewAuditRecord> = seats
                                .into_iter()
                                .map(|seat| NewAuditRecord {
                                    event: hold.event,
                                    kind: AuditType::PaymentFailed,
                                    at: now,
                                    seat,
                                    hold: Some(hold),
                                    order: None,
                                    user: user.clone(),
                                    reason: Some(reason.to_owned()),
                                })
                                .collect();
                            write_audit(conn, &audit)?;
                        }
                    }
                    return Ok(true);
                }
                let known = conn
                    .prepare_cached("SELECT 1 FROM payment_attempts WHERE id = ?1")?
                    .query_row([&id], |_| Ok(()))
                    .optional()?;
                match known {
                    Some(()) => Ok(false),
                    None => Err(StoreError::NotFound),
                }
            })
            .await
    }
    async fn open_attempts(&self, deadline_before: UnixMs, limit: u32) -> Result<Vec<PaymentAttempt>> {
        let rows: Vec<AttemptRow> = sqlx::query_as(concat!(
            attempt_select!(),
            " WHERE a.state IN ('initiated', 'authorized', 'unknown') AND a.pin_deadline < ? \
             ORDER BY a.pin_deadline, a.id LIMIT ?"
        ))
        .bind(saturating_db(deadline_before))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(AttemptRow::into_attempt).collect()
    }

    async fn refund_tickets(&self, request: RefundRequest) -> Result<RefundOutcome> {
        let now = to_db(request.now, "now")?;
        let mut tx = self.begin_write().await?;
        let row: OrderRow = sqlx::query_as(concat!(order_select!(), " WHERE id = ?"))
            .bind(request.order.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let attempt = row.payment_attempt_id.clone();
        let order = orders_with_tickets(&mut tx, vec![row]).await?.pop().expect("one row in, one order out");
        let chosen: Vec<&Ticket> = match &request.tickets {
            None => order.tickets.iter().filter(|t| request.allow_scanned || t.user == order.user).collect(),
            Some(ids) => {
                let mut chosen: Vec<&Ticket> = Vec::with_capacity(ids.len());
                for id in ids {
                    let ticket = order
                        .tickets
                        .iter()
                        .find(|t| &t.id == id)
                        .ok_or_else(|| StoreError::TicketNotInOrder(id.clone()))?;
                    if !chosen.iter().any(|t| t.id == ticket.id) {
                        chosen.push(ticket);
                    }
                }
                chosen
            }
        };
        let to_void: Vec<&Ticket> = chosen
            .into_iter()
            .filter(|t| matches!(t.status, TicketStatus::Valid | TicketStatus::Scanned))
            .collect();
        if !request.allow_scanned
            && let Some(scanned) = to_void.iter().find(|t| t.status == TicketStatus::Scanned)
        {
            return Err(StoreError::TicketScanned(scanned.id.clone()));
        }
        if !request.allow_scanned
            && let Some(theirs) = to_void.iter().find(|t| t.user != order.user)
        {
            return Err(StoreError::TicketTransferred(theirs.id.clone()));
        }
        if to_void.is_empty() {
            tx.rollback().await?;
            // What an earlier refund did is answered only once it is on disk.
            return Ok(RefundOutcome { order, refund: None });
        }
        let amount = Money::sum(to_void.iter().map(|t| t.price))
            .ok_or_else(|| corrupt(format!("ticket prices of order {} do not add up", order.id)))?;
        let earlier: i64 = sqlx::query_scalar("SELECT count(*) FROM refunds WHERE order_id = ?")
            .bind(order.id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let gateway_key = match (&attempt, earlier) {
            (Some(attempt), 0) => format!("refund:{attempt}"),
            (Some(attempt), n) => format!("refund:{attempt}:{}", n + 1),
            (None, n) => format!("refund:{}:{}", order.id, n + 1),
        };
        let payment_key: Option<String> = match &attempt {
            Some(attempt) => {
                sqlx::query_scalar("SELECT gateway_key FROM payment_attempts WHERE id = ?")
                    .bind(attempt)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        };
        let mut update = QueryBuilder::<Sqlite>::new("UPDATE tickets SET status = 'voided', updated_at = ");
        update.push_bind(now).push(" WHERE status IN ('valid', 'scanned') AND id IN (");
        let mut list = update.separated(", ");
        for ticket in &to_void {
            list.push_bind(ticket.id.as_str());
        }
        update.push(")");
        update.build().execute(&mut *tx).await?;
        let audit: Vec<NewAuditRecord> = to_void
            .iter()
            .map(|ticket| NewAuditRecord {
                event: order.event,
                kind: AuditType::SeatRefunded,
                at: request.now,
                seat: ticket.seat_index,
                hold: Some(order.hold),
                order: Some(order.id.clone()),
                user: ticket.user.clone(),
                reason: None,
            })
            .collect();
        insert_audit(&mut tx, &audit).await?;
        insert_revocations(&mut tx, order.event, &to_void, crate::RevocationReason::Refunded, now).await?;
        let remaining: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tickets WHERE order_id = ? AND status IN ('valid', 'scanned')",
        )
        .bind(order.id.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let status = if remaining == 0 { OrderStatus::Refunded } else { OrderStatus::PartiallyRefunded };
        sqlx::query("UPDATE orders SET status = ? WHERE id = ?")
            .bind(order_status_str(status))
            .bind(order.id.as_str())
            .execute(&mut *tx)
            .await?;
        let ticket_ids: Vec<TicketId> = to_void.iter().map(|t| t.id.clone()).collect();
        let ticket_ids_json =
            serde_json::to_string(&ticket_ids.iter().map(TicketId::as_str).collect::<Vec<_>>())
                .expect("ticket ids serialize");
        sqlx::query(
            "INSERT INTO refunds (id, order_id, payment_attempt_id, gateway_key, amount, currency, \
             ticket_ids, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
        )
        .bind(&request.refund_id)
        .bind(order.id.as_str())
        .bind(&attempt)
        .bind(&gateway_key)
        .bind(amount.amount)
        .bind(amount.currency.as_str())
        .bind(&ticket_ids_json)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let payload = serde_json::json!({
            "order_id": order.id.as_str(),
            "refund_id": request.refund_id,
            "ticket_ids": ticket_ids.iter().map(TicketId::as_str).collect::<Vec<_>>(),
            "seats": to_void.iter().map(|t| t.seat_index).collect::<Vec<_>>(),
            "event_id": order.event.to_string(),
        });
        insert_outbox(&mut tx, TOPIC_ORDER_REFUNDED, order.id.as_str(), &payload, now).await?;
        tx.commit().await?;
        let refund = Refund {
            id: request.refund_id,
            order: order.id.clone(),
            payment_attempt: attempt,
            gateway_key,
            payment_key,
            amount,
            tickets: ticket_ids,
            state: RefundState::Pending,
            created_at: request.now,
        };
        let order = self.order(&order.id).await?;
        Ok(RefundOutcome { order, refund: Some(refund) })
    }

    async fn finish_refund(&self, id: &str, now: UnixMs) -> Result<()> {
        let now = to_db(now, "now")?;
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE refunds SET state = 'succeeded', updated_at = ? WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::NotFound);
        }
        // The payment is refunded once its order is refunded whole and no refund is pending.
        sqlx::query(
            "UPDATE payment_attempts SET state = 'refunded', updated_at = ? \
             WHERE state IN ('authorized', 'captured') AND id = \
               (SELECT o.payment_attempt_id FROM refunds r JOIN orders o ON o.id = r.order_id \
                WHERE r.id = ? AND o.status = 'refunded' AND NOT EXISTS \
                  (SELECT 1 FROM refunds p WHERE p.order_id = o.id AND p.state = 'pending'))",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn pending_refunds(&self, limit: u32) -> Result<Vec<Refund>> {
        let rows: Vec<RefundRow> = sqlx::query_as(concat!(
            refund_select!(),
            " WHERE r.state = 'pending' ORDER BY r.created_at, r.id LIMIT ?"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(RefundRow::into_refund).collect()
    }

    async fn ticket(&self, id: &TicketId) -> Result<Ticket> {
        let row: TicketRow = sqlx::query_as(concat!(ticket_select!(), " WHERE id = ?"))
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?
            .ok_or(StoreError::NotFound)?;
        row.into_ticket()
    }

    async fn scan_ticket(&self, id: &TicketId, revision: u32, now: UnixMs) -> Result<ScanOutcome> {
        let now = to_db(now, "now")?;
        let mut tx = self.begin_write().await?;
        let scanned = sqlx::query(
            "UPDATE tickets SET status = 'scanned', updated_at = ? \
             WHERE id = ? AND revision = ? AND status = 'valid'",
        )
        .bind(now)
        .bind(id.as_str())
        .bind(i64::from(revision))
        .execute(&mut *tx)
        .await?;
        let row: Option<TicketRow> = sqlx::query_as(concat!(ticket_select!(), " WHERE id = ?"))
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let row = row.map(TicketRow::into_ticket).transpose()?;
        if scanned.rows_affected() == 1
            && let Some(ticket) = &row
        {
            // `ticket.scanned` commits with the scan (for webhooks).
            let payload = crate::webhooks::scan_message(ticket, now);
            insert_outbox(&mut tx, crate::TOPIC_TICKET_SCANNED, ticket.id.as_str(), &payload, now).await?;
        }
        tx.commit().await?;
        let Some(ticket) = row else {
            return Ok(ScanOutcome::Unknown);
        };
        if ticket.revision != revision {
            return Ok(ScanOutcome::Unknown);
        }
        Ok(match ticket.status {
            _ if scanned.rows_affected() == 1 => ScanOutcome::Admitted(ticket),
            TicketStatus::Scanned => ScanOutcome::AlreadyScanned(ticket),
            TicketStatus::Voided | TicketStatus::Transferred => ScanOutcome::Revoked(ticket),
            TicketStatus::Valid => ScanOutcome::Unknown,
        })
    }

    async fn outbox_pending(&self, limit: u32) -> Result<Vec<OutboxMessage>> {
        let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
            "SELECT seq, topic, key, payload, created_at FROM outbox WHERE sent_at IS NULL \
             ORDER BY seq LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        // Published only once on disk: a row read here may still be syncing.
        rows.into_iter()
            .map(|(seq, topic, key, payload, created_at)| {
                Ok(OutboxMessage {
                    seq: from_db(seq, "outbox seq")?,
                    topic,
                    key,
                    payload,
                    created_at: from_db(created_at, "created_at")?,
                })
            })
            .collect()
    }

    async fn outbox_mark_sent(&self, up_to_seq: u64, now: UnixMs) -> Result<()> {
        let (now, up_to) = (to_db(now, "now")?, saturating_db(up_to_seq));
        self.jobs
            .write(move |conn| {
                conn.prepare_cached("UPDATE outbox SET sent_at = ?1 WHERE seq <= ?2 AND sent_at IS NULL")?
                    .execute((now, up_to))?;
                Ok(())
            })
            .await
    }

    async fn outbox_requeue_after(&self, seq: u64) -> Result<u64> {
        let seq = saturating_db(seq);
        self.jobs
            .write(move |conn| {
                let done = conn
                    .prepare_cached(
                        "UPDATE outbox SET sent_at = NULL WHERE seq > ?1 AND sent_at IS NOT NULL",
                    )?
                    .execute([seq])?;
                Ok(done as u64)
            })
            .await
    }
    async fn outbox_purge(&self, sent_before: UnixMs, up_to_seq: u64) -> Result<u64> {
        let (before, up_to) = (saturating_db(sent_before), saturating_db(up_to_seq));
        self.jobs
            .write(move |conn| {
                let done = conn
                    .prepare_cached(
                        "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?1 AND seq <= ?2",
                    )?
                    .execute((before, up_to))?;
                Ok(done as u64)
            })
            .await
    }
    async fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.jobs
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?
                .execute((&key, &value))?;
                Ok(())
            })
            .await
    }
    async fn append_audit(&self, records: &[NewAuditRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let records = records.to_vec();
        self.jobs.write(move |conn| write_audit(conn, &records)).await
    }
    async fn audit_after(&self, event: EventId, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT event_id, seq, type, at, seat, hold_id, order_id, user_id, reason FROM audit \
             WHERE event_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(to_db(event.0, "event id")?)
        .bind(saturating_db(after))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(AuditRow::into_record).collect()
    }

    async fn audit_open_holds(&self, event: EventId) -> Result<Vec<AuditRecord>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT a.event_id, a.seq, a.type, a.at, a.seat, a.hold_id, a.order_id, a.user_id, a.reason \
             FROM audit a WHERE a.event_id = ? AND a.type = 'SEAT_HELD' AND NOT EXISTS \
             (SELECT 1 FROM audit b WHERE b.hold_id = a.hold_id \
              AND b.type IN ('SEAT_RELEASED', 'SEAT_CONFIRMED')) ORDER BY a.seq",
        )
        .bind(to_db(event.0, "event id")?)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(AuditRow::into_record).collect()
    }

    async fn audit_holds_recorded(&self, event: EventId, holds: &[HoldId]) -> Result<Vec<HoldId>> {
        let mut recorded = Vec::new();
        for chunk in holds.chunks(500) {
            let mut query = QueryBuilder::<Sqlite>::new(
                "SELECT DISTINCT hold_id FROM audit WHERE type = 'SEAT_HELD' AND event_id = ",
            );
            query.push_bind(to_db(event.0, "event id")?).push(" AND hold_id IN (");
            let mut list = query.separated(", ");
            for hold in chunk {
                list.push_bind(hold.to_string());
            }
            query.push(")");
            let found: Vec<(String,)> = query.build_query_as().fetch_all(&self.reader).await?;
            for (hold,) in found {
                recorded.push(HoldId::parse(&hold).map_err(|_| corrupt(format!("hold id {hold:?}")))?);
            }
        }
        Ok(recorded)
    }

    async fn claim_key(&self, scope: KeyScope<'_>, body_sha256: [u8; 32], now: UnixMs) -> Result<KeyClaim> {
        let now = to_db(now, "now")?;
        let (user, route, key) =
            (scope.user.as_str().to_owned(), scope.route.to_owned(), scope.key.to_owned());
        // In the writer's transaction the insert-or-read below sees no other writer between.
        self.jobs
            .write(move |conn| {
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO idempotency_keys (user_id, route, key, body_sha256, state, created_at) \
                         VALUES (?1, ?2, ?3, ?4, 'in_progress', ?5) ON CONFLICT DO NOTHING",
                    )?
                    .execute(rusqlite::params![user, route, key, &body_sha256[..], now])?;
                let taken_over = inserted == 0
                    && conn
                        .prepare_cached(
                            "UPDATE idempotency_keys SET created_at = ?1 WHERE user_id = ?2 AND route = ?3 \
                             AND key = ?4 AND state = 'in_progress' AND body_sha256 = ?5 AND created_at < ?6",
                        )?
                        .execute(rusqlite::params![
                            now,
                            user,
                            route,
                            key,
                            &body_sha256[..],
                            now.saturating_sub(KEY_CLAIM_ABANDONED_MS as i64)
                        ])?
                        == 1;
                if inserted == 1 || taken_over {
                    return Ok(KeyClaim::Claimed);
                }
                let row = conn
                    .prepare_cached(
                        "SELECT body_sha256, state, status, body FROM idempotency_keys \
                         WHERE user_id = ?1 AND route = ?2 AND key = ?3",
                    )?
                    .query_row((&user, &route, &key), |r| {
                        Ok(KeyRow {
                            body_sha256: r.get(0)?,
                            state: r.get(1)?,
                            status: r.get(2)?,
                            body: r.get(3)?,
                        })
                    })?;
                row.into_claim(&body_sha256)
            })
            .await
    }

    async fn finish_key(&self, scope: KeyScope<'_>, status: u16, body: &[u8]) -> Result<()> {
        let (user, route, key) =
            (scope.user.as_str().to_owned(), scope.route.to_owned(), scope.key.to_owned());
        let body = body.to_vec();
        // Only an in-progress key: a final answer once stored is never replaced.
        let done = self
            .jobs
            .write({
                let (user, route, key) = (user.clone(), route.clone(), key.clone());
                move |conn| {
                    Ok(conn
                        .prepare_cached(
                            "UPDATE idempotency_keys SET state = 'done', status = ?1, body = ?2 \
                             WHERE user_id = ?3 AND route = ?4 AND key = ?5 AND state = 'in_progress'",
                        )?
                        .execute(rusqlite::params![i64::from(status), body, user, route, key])?)
                }
            })
            .await?;
        if done == 0 {
            // The answer has been given already; only its replay is lost (the key was
            // purged or released meanwhile), which is not worth failing the request for.
            tracing::warn!(
                %user, %route, %key,
                "idempotency key finished but no longer in progress; its answer is not stored"
            );
        }
        Ok(())
    }
    async fn release_key(&self, scope: KeyScope<'_>) -> Result<()> {
        let (user, route, key) =
            (scope.user.as_str().to_owned(), scope.route.to_owned(), scope.key.to_owned());
        // Only an in-progress key, for the same reason as in `finish_key`.
        self.jobs
            .write(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM idempotency_keys \
                     WHERE user_id = ?1 AND route = ?2 AND key = ?3 AND state = 'in_progress'",
                )?
                .execute((&user, &route, &key))?;
                Ok(())
            })
            .await
    }
    async fn purge_keys(&self, before: UnixMs) -> Result<u64> {
        let before = saturating_db(before);
        self.jobs
            .write(move |conn| {
                let done = conn
                    .prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")?
                    .execute([before])?;
                Ok(done as u64)
            })
            .await
    }

    // --- transfers and revocations ---

    async fn transfer_ticket(&self, transfer: TicketTransfer) -> Result<Ticket> {
        let now = to_db(transfer.now, "now")?;
        // Dropping the transaction on an early return rolls it back.
        let mut tx = self.begin_write().await?;
        let row: TicketRow = sqlx::query_as(concat!(ticket_select!(), " WHERE id = ?"))
            .bind(transfer.ticket.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let old = row.into_ticket()?;
        check_transfer(&old, &transfer)?;
        let event_status: Option<String> = sqlx::query_scalar("SELECT status FROM events WHERE id = ?")
            .bind(to_db(old.event.0, "event id")?)
            .fetch_optional(&mut *tx)
            .await?;
        if event_status.as_deref() == Some(EventStatus::Cancelled.as_str()) {
            return Err(StoreError::EventCancelled(old.event));
        }
        // The old ticket leaves the unique index over valid tickets before the new one enters.
        sqlx::query(
            "UPDATE tickets SET status = 'transferred', updated_at = ? WHERE id = ? AND status = 'valid'",
        )
        .bind(now)
        .bind(old.id.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO tickets (id, order_id, event_id, seat_index, seat_label, price_amount, currency, \
             user_id, status, created_at, qr_payload, revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(transfer.new_ticket.as_str())
        .bind(old.order_id.as_str())
        .bind(to_db(old.event.0, "event id")?)
        .bind(i64::from(old.seat_index))
        .bind(&old.seat_label)
        .bind(old.price.amount)
        .bind(old.price.currency.as_str())
        .bind(transfer.to.as_str())
        .bind(ticket_status_str(TicketStatus::Valid))
        .bind(now)
        .bind(&transfer.new_qr_payload)
        .bind(i64::from(transfer.new_revision))
        .execute(&mut *tx)
        .await?;
        let new = transferred_ticket(&old, &transfer);
        insert_audit(&mut tx, &[transfer_audit(&old, &transfer)]).await?;
        insert_revocations(&mut tx, old.event, &[&old], crate::RevocationReason::Transferred, now).await?;
        let payload = transfer_message(&old, &new);
        insert_outbox(&mut tx, TOPIC_TICKET_TRANSFERRED, new.id.as_str(), &payload, now).await?;
        tx.commit().await?;
        Ok(new)
    }

    async fn revocations_after(&self, event: EventId, after: u64, limit: u32) -> Result<Vec<Revocation>> {
        let rows: Vec<RevocationRow> = sqlx::query_as(
            "SELECT seq, ticket_id, revision, reason, revoked_at FROM ticket_revocations \
             WHERE event_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(lookup_id(event.0)?)
        .bind(saturating_db(after))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(RevocationRow::into_revocation).collect()
    }

    async fn tickets_of_user(&self, user: &UserId, limit: u32, cursor: Option<&str>) -> Result<Page<Ticket>> {
        let limit = limit.max(1);
        let before = cursor.map(TicketCursor::parse).transpose()?;
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT id, order_id, event_id, seat_index, seat_label, price_amount, currency, status, \
             user_id, revision, qr_payload, created_at FROM tickets WHERE user_id = ",
        );
        query.push_bind(user.as_str());
        if let Some(before) = before {
            query
                .push(" AND (created_at, id) < (")
                .push_bind(before.created_at)
                .push(", ")
                .push_bind(before.id)
                .push(")");
        }
        query.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit) + 1);
        let mut rows: Vec<UserTicketRow> = query.build_query_as().fetch_all(&self.reader).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = match rows.last() {
            Some(last) if more => {
                Some(TicketCursor { created_at: last.created_at, id: last.ticket.id.clone() }.to_string())
            }
            _ => None,
        };
        let items = rows.into_iter().map(|row| row.ticket.into_ticket()).collect::<Result<Vec<_>>>()?;
        Ok(Page { items, next_cursor })
    }

    async fn outbox_append(
        &self,
        topic: &str,
        key: &str,
        payload: &serde_json::Value,
        now: UnixMs,
    ) -> Result<u64> {
        self.wh_outbox_append(topic, key, payload, now).await
    }
    async fn create_webhook(&self, webhook: crate::NewWebhook) -> Result<Option<crate::Webhook>> {
        self.wh_create(webhook).await
    }
    async fn webhooks(&self) -> Result<Vec<crate::Webhook>> {
        self.wh_list().await
    }
    async fn webhook(&self, id: u64) -> Result<crate::Webhook> {
        self.wh_get(id).await
    }
    async fn disable_webhook(&self, id: u64, now: UnixMs) -> Result<crate::Webhook> {
        self.wh_disable(id, now).await
    }
    async fn webhook_fan_out(&self, limit: u32, now: UnixMs) -> Result<crate::FanOut> {
        self.wh_fan_out(limit, now).await
    }
    async fn webhook_claim(
        &self,
        now: UnixMs,
        lease_ms: u64,
        limit: u32,
        lease: &str,
    ) -> Result<Vec<crate::ClaimedDelivery>> {
        self.wh_claim(now, lease_ms, limit, lease).await
    }
    async fn webhook_record(&self, attempt: crate::DeliveryAttempt) -> Result<bool> {
        self.wh_record(attempt).await
    }
    async fn webhook_deliveries(
        &self,
        webhook: u64,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<crate::WebhookDelivery>> {
        self.wh_deliveries(webhook, limit, cursor).await
    }
    async fn webhook_redeliver(
        &self,
        webhook: u64,
        delivery: u64,
        now: UnixMs,
    ) -> Result<crate::WebhookDelivery> {
        self.wh_redeliver(webhook, delivery, now).await
    }

    async fn create_allocation(&self, allocation: crate::NewAllocation) -> Result<crate::Allocation> {
        let db_id = lookup_id(allocation.event.0)?;
        // IMMEDIATE: the checks against the event's other allocations and the insert see
        // no other writer in between.
        let mut tx = self.begin_write().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM events WHERE id = ?")
            .bind(db_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let now = now_ms();
        let created = crate::allocations::sqlite::create_allocation(&mut tx, db_id, &allocation, now).await?;
        insert_catalog_change(&mut tx, "event", db_id, now).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn allocations(&self, event: EventId) -> Result<Vec<crate::Allocation>> {
        let mut conn = self.reader.acquire().await?;
        crate::allocations::sqlite::allocations(&mut conn, lookup_id(event.0)?).await
    }

    async fn create_presale_codes(&self, codes: crate::NewPresaleCodes) -> Result<()> {
        let db_id = lookup_id(codes.event.0)?;
        let mut tx = self.begin_write().await?;
        crate::allocations::sqlite::create_codes(&mut tx, db_id, &codes, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn presale_code(&self, event: EventId, code_hash: &str) -> Result<Option<crate::PresaleCode>> {
        let mut conn = self.reader.acquire().await?;
        crate::allocations::sqlite::code(&mut conn, lookup_id(event.0)?, code_hash).await
    }

    async fn use_presale_code(
        &self,
        event: EventId,
        code_hash: &str,
        seats: u32,
        now: UnixMs,
    ) -> Result<bool> {
        let db_id = lookup_id(event.0)?;
        let mut tx = self.begin_write().await?;
        let used = crate::allocations::sqlite::use_code(&mut tx, db_id, code_hash, seats, saturating_db(now))
            .await?;
        tx.commit().await?;
        Ok(used)
    }

    async fn return_presale_code_use(&self, event: EventId, code_hash: &str, seats: u32) -> Result<()> {
        let db_id = lookup_id(event.0)?;
        let mut tx = self.begin_write().await?;
        crate::allocations::sqlite::return_use(&mut tx, db_id, code_hash, seats).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn waitlist_join(
        &self,
        entry: crate::NewWaitlistEntry,
        max_entries: u32,
    ) -> Result<crate::WaitlistJoin> {
        let db_id = lookup_id(entry.event.0)?;
        // IMMEDIATE: the user's entry, the count and the insert see no other writer between.
        let mut tx = self.begin_write().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM events WHERE id = ?")
            .bind(db_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let joined = crate::waitlist::sqlite::join(&mut tx, db_id, &entry, max_entries).await?;
        tx.commit().await?;
        Ok(joined)
    }

    async fn waitlist_entry(&self, id: &str) -> Result<Option<crate::WaitlistEntry>> {
        let mut conn = self.reader.acquire().await?;
        crate::waitlist::sqlite::entry(&mut conn, id).await
    }

    async fn waitlist_active_of(
        &self,
        event: EventId,
        user: &UserId,
    ) -> Result<Option<crate::WaitlistEntry>> {
        let mut conn = self.reader.acquire().await?;
        crate::waitlist::sqlite::active_of(&mut conn, lookup_id(event.0)?, user).await
    }

    async fn waitlist_active(&self, event: Option<EventId>) -> Result<Vec<crate::WaitlistEntry>> {
        let mut conn = self.reader.acquire().await?;
        crate::waitlist::sqlite::active(&mut conn, event.map(|e| lookup_id(e.0)).transpose()?).await
    }

    async fn waitlist_position(&self, event: EventId, seq: u64) -> Result<u64> {
        let mut conn = self.reader.acquire().await?;
        crate::waitlist::sqlite::position(&mut conn, lookup_id(event.0)?, seq).await
    }

    async fn waitlist_update(
        &self,
        id: &str,
        from: crate::WaitlistState,
        change: crate::WaitlistChange,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = crate::waitlist::sqlite::update(&mut tx, id, from, &change).await?;
        tx.commit().await?;
        Ok(done)
    }
}

// --- rows and their conversion into domain values ---

#[derive(FromRow)]
struct VenueRow {
    id: i64,
    name: String,
    city: String,
    lat: f64,
    lon: f64,
    address: Option<String>,
    seat_count: i64,
    tiers: String,
}

impl VenueRow {
    fn into_venue(self) -> Result<Venue> {
        Ok(Venue {
            id: from_db(self.id, "venue id")?,
            name: self.name,
            city: self.city,
            lat: self.lat,
            lon: self.lon,
            address: self.address,
            seat_count: seat_count(self.seat_count)?,
            tiers: serde_json::from_str(&self.tiers)
                .map_err(|e| corrupt(format!("tiers of venue {}: {e}", self.id)))?,
        })
    }
}

#[derive(FromRow)]
struct PerformerRow {
    id: i64,
    name: String,
    genre: Option<String>,
}

impl PerformerRow {
    fn into_performer(self) -> Result<Performer> {
        Ok(Performer { id: from_db(self.id, "performer id")?, name: self.name, genre: self.genre })
    }
}

#[derive(FromRow)]
struct EventRow {
    id: i64,
    name: String,
    category: String,
    starts_at: i64,
    onsale_at: i64,
    status: String,
    prices: String,
    description: Option<String>,
    seat_count: i64,
    created_at: i64,
    updated_at: i64,
    venue_id: i64,
    venue_name: String,
    venue_city: String,
    venue_lat: f64,
    venue_lon: f64,
    venue_address: Option<String>,
    venue_seat_count: i64,
    venue_tiers: String,
    // From `event_settings`: all absent for an event that was never changed.
    queue_enabled: Option<i64>,
    queue_admit_rate_per_second: Option<i64>,
    queue_token_ttl_seconds: Option<i64>,
    queue_max_length: Option<i64>,
    queue_proof_of_work_bits: Option<i64>,
    static_tickets_allowed: Option<i64>,
    orphan_rule: Option<i64>,
}

impl EventRow {
    fn into_event(self, performers: Vec<Performer>) -> Result<Event> {
        let venue = VenueRow {
            id: self.venue_id,
            name: self.venue_name,
            city: self.venue_city,
            lat: self.venue_lat,
            lon: self.venue_lon,
            address: self.venue_address,
            seat_count: self.venue_seat_count,
            tiers: self.venue_tiers,
        }
        .into_venue()?;
        Ok(Event {
            id: EventId(from_db(self.id, "event id")?),
            name: self.name,
            venue,
            performers,
            category: self.category,
            starts_at: from_db(self.starts_at, "starts_at")?,
            onsale_at: from_db(self.onsale_at, "onsale_at")?,
            status: match self.status.as_str() {
                "published" => EventStatus::Published,
                "cancelled" => EventStatus::Cancelled,
                other => return Err(corrupt(format!("event status {other:?}"))),
            },
            prices: serde_json::from_str(&self.prices)
                .map_err(|e| corrupt(format!("prices of event {}: {e}", self.id)))?,
            description: self.description,
            seat_count: seat_count(self.seat_count)?,
            created_at: from_db(self.created_at, "created_at")?,
            updated_at: from_db(self.updated_at, "updated_at")?,
            queue: queue_settings(
                self.queue_enabled,
                self.queue_admit_rate_per_second,
                self.queue_token_ttl_seconds,
                self.queue_max_length,
                self.queue_proof_of_work_bits,
            )?,
            static_tickets_allowed: self.static_tickets_allowed.is_none_or(|allowed| allowed != 0),
            orphan_rule: self.orphan_rule.is_none_or(|on| on != 0),
        })
    }
}

/// An event's queue settings from its `event_settings` columns (the defaults without a row).
fn queue_settings(
    enabled: Option<i64>,
    admit_rate_per_second: Option<i64>,
    token_ttl_seconds: Option<i64>,
    max_length: Option<i64>,
    proof_of_work_bits: Option<i64>,
) -> Result<crate::QueueSettings> {
    let (Some(enabled), Some(rate), Some(ttl), Some(max_length), Some(bits)) =
        (enabled, admit_rate_per_second, token_ttl_seconds, max_length, proof_of_work_bits)
    else {
        return Ok(crate::QueueSettings::default());
    };
    let bad = |what: &str, value: i64| corrupt(format!("queue {what} {value}"));
    Ok(crate::QueueSettings {
        enabled: enabled != 0,
        admit_rate_per_second: u32::try_from(rate).map_err(|_| bad("admit rate", rate))?,
        token_ttl_seconds: u32::try_from(ttl).map_err(|_| bad("token ttl", ttl))?,
        max_length: u64::try_from(max_length).map_err(|_| bad("max length", max_length))?,
        proof_of_work_bits: u8::try_from(bits).map_err(|_| bad("proof of work bits", bits))?,
    })
}

#[derive(FromRow)]
struct OrderRow {
    id: String,
    event_id: i64,
    user_id: String,
    hold_id: String,
    status: String,
    email: Option<String>,
    total_amount: i64,
    currency: String,
    created_at: i64,
    payment_attempt_id: Option<String>,
}

impl OrderRow {
    fn into_order(self, tickets: Vec<Ticket>) -> Result<Order> {
        Ok(Order {
            id: parse_order_id(&self.id)?,
            event: EventId(from_db(self.event_id, "event id")?),
            user: parse_user(&self.user_id)?,
            hold: HoldId::parse(&self.hold_id).map_err(|_| corrupt(format!("hold id {:?}", self.hold_id)))?,
            payment_attempt: self.payment_attempt_id,
            status: match self.status.as_str() {
                "confirmed" => OrderStatus::Confirmed,
                "partially_refunded" => OrderStatus::PartiallyRefunded,
                "refunded" => OrderStatus::Refunded,
                other => return Err(corrupt(format!("order status {other:?}"))),
            },
            email: self.email,
            total: Money::new(self.total_amount, parse_currency(&self.currency)?),
            tickets,
            created_at: from_db(self.created_at, "created_at")?,
        })
    }
}

#[derive(FromRow)]
struct TicketRow {
    id: String,
    order_id: String,
    event_id: i64,
    seat_index: i64,
    seat_label: String,
    price_amount: i64,
    currency: String,
    status: String,
    user_id: String,
    revision: i64,
    qr_payload: Option<String>,
}

impl TicketRow {
    fn into_ticket(self) -> Result<Ticket> {
        Ok(Ticket {
            id: TicketId::parse(&self.id).map_err(|_| corrupt(format!("ticket id {:?}", self.id)))?,
            order_id: parse_order_id(&self.order_id)?,
            event: EventId(from_db(self.event_id, "event id")?),
            seat_index: seat_index(self.seat_index)?,
            seat_label: self.seat_label,
            price: Money::new(self.price_amount, parse_currency(&self.currency)?),
            status: match self.status.as_str() {
                "valid" => TicketStatus::Valid,
                "scanned" => TicketStatus::Scanned,
                "voided" => TicketStatus::Voided,
                "transferred" => TicketStatus::Transferred,
                other => return Err(corrupt(format!("ticket status {other:?}"))),
            },
            user: parse_user(&self.user_id)?,
            revision: u32::try_from(self.revision)
                .map_err(|_| corrupt(format!("revision {}", self.revision)))?,
            qr_payload: self.qr_payload,
        })
    }
}

#[derive(FromRow)]
struct KeyRow {
    body_sha256: Vec<u8>,
    state: String,
    status: Option<i64>,
    body: Option<Vec<u8>>,
}

impl KeyRow {
    fn into_claim(self, body_sha256: &[u8; 32]) -> Result<KeyClaim> {
        if self.body_sha256 != body_sha256[..] {
            return Ok(KeyClaim::Mismatch);
        }
        match self.state.as_str() {
            "in_progress" => Ok(KeyClaim::InProgress),
            "done" => {
                let status = self
                    .status
                    .and_then(|s| u16::try_from(s).ok())
                    .ok_or_else(|| corrupt("finished idempotency key without a valid status"))?;
                Ok(KeyClaim::Replay { status, body: self.body.unwrap_or_default() })
            }
            other => Err(corrupt(format!("idempotency key state {other:?}"))),
        }
    }
}

#[derive(FromRow)]
struct AttemptRow {
    id: String,
    hold_id: String,
    event_id: i64,
    user_id: String,
    seats: String,
    amount: i64,
    currency: String,
    gateway: String,
    gateway_key: String,
    authorization_id: Option<String>,
    state: String,
    created_at: i64,
    updated_at: i64,
    pin_deadline: i64,
    order_id: Option<String>,
}

impl AttemptRow {
    fn into_attempt(self) -> Result<PaymentAttempt> {
        Ok(PaymentAttempt {
            hold: HoldId::parse(&self.hold_id).map_err(|_| corrupt(format!("hold id {:?}", self.hold_id)))?,
            event: EventId(from_db(self.event_id, "event id")?),
            user: parse_user(&self.user_id)?,
            seats: serde_json::from_str(&self.seats)
                .map_err(|e| corrupt(format!("seats of attempt {}: {e}", self.id)))?,
            amount: Money::new(self.amount, parse_currency(&self.currency)?),
            gateway: self.gateway,
            gateway_key: self.gateway_key,
            authorization_id: self.authorization_id,
            state: AttemptState::parse(&self.state)
                .ok_or_else(|| corrupt(format!("attempt state {:?}", self.state)))?,
            created_at: from_db(self.created_at, "created_at")?,
            updated_at: from_db(self.updated_at, "updated_at")?,
            pin_deadline: from_db(self.pin_deadline, "pin_deadline")?,
            order: self.order_id.as_deref().map(parse_order_id).transpose()?,
            id: self.id,
        })
    }
}

#[derive(FromRow)]
struct RefundRow {
    id: String,
    order_id: String,
    payment_attempt_id: Option<String>,
    gateway_key: String,
    amount: i64,
    currency: String,
    ticket_ids: String,
    state: String,
    created_at: i64,
    payment_key: Option<String>,
}

impl RefundRow {
    fn into_refund(self) -> Result<Refund> {
        let ids: Vec<String> = serde_json::from_str(&self.ticket_ids)
            .map_err(|e| corrupt(format!("tickets of refund {}: {e}", self.id)))?;
        Ok(Refund {
            order: parse_order_id(&self.order_id)?,
            payment_attempt: self.payment_attempt_id,
            gateway_key: self.gateway_key,
            payment_key: self.payment_key,
            amount: Money::new(self.amount, parse_currency(&self.currency)?),
            tickets: ids
                .iter()
                .map(|id| TicketId::parse(id).map_err(|_| corrupt(format!("ticket id {id:?}"))))
                .collect::<Result<_>>()?,
            state: match self.state.as_str() {
                "pending" => RefundState::Pending,
                "succeeded" => RefundState::Succeeded,
                other => return Err(corrupt(format!("refund state {other:?}"))),
            },
            created_at: from_db(self.created_at, "created_at")?,
            id: self.id,
        })
    }
}

/// Appends an outbox row inside the caller's transaction.
async fn insert_outbox(
    conn: &mut SqliteConnection,
    topic: &str,
    key: &str,
    payload: &serde_json::Value,
    now: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO outbox (topic, key, payload, created_at) VALUES (?, ?, ?, ?)")
        .bind(topic)
        .bind(key)
        .bind(payload.to_string())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Appends audit records, giving each event's records its next sequence numbers in order.
async fn insert_audit(conn: &mut SqliteConnection, records: &[NewAuditRecord]) -> Result<()> {
    let mut counts: Vec<(EventId, i64)> = Vec::new();
    for record in records {
        match counts.iter_mut().find(|(event, _)| *event == record.event) {
            Some((_, n)) => *n += 1,
            None => counts.push((record.event, 1)),
        }
    }
    let mut next: HashMap<EventId, i64> = HashMap::with_capacity(counts.len());
    for (event, n) in counts {
        let last: i64 = sqlx::query_scalar(
            "INSERT INTO audit_heads (event_id, seq) VALUES (?, ?) \
             ON CONFLICT (event_id) DO UPDATE SET seq = seq + excluded.seq RETURNING seq",
        )
        .bind(to_db(event.0, "event id")?)
        .bind(n)
        .fetch_one(&mut *conn)
        .await?;
        next.insert(event, last - n + 1);
    }
    for chunk in records.chunks(AUDIT_ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO audit (event_id, seq, type, at, seat, hold_id, order_id, user_id, reason) ",
        );
        let mut rows = Vec::with_capacity(chunk.len());
        for record in chunk {
            let seq = next.get_mut(&record.event).expect("every event counted");
            rows.push((record, *seq));
            *seq += 1;
        }
        let mut failed = None;
        insert.push_values(rows, |mut row, (record, seq)| {
            let event = match to_db(record.event.0, "event id") {
                Ok(event) => event,
                Err(e) => {
                    failed = Some(e);
                    0
                }
            };
            row.push_bind(event)
                .push_bind(seq)
                .push_bind(record.kind.as_str())
                .push_bind(saturating_db(record.at))
                .push_bind(i64::from(record.seat))
                .push_bind(record.hold.map(|h| h.to_string()))
                .push_bind(record.order.as_ref().map(|o| o.as_str().to_owned()))
                .push_bind(record.user.as_str().to_owned())
                .push_bind(record.reason.clone());
        });
        if let Some(e) = failed {
            return Err(e);
        }
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Audit rows per INSERT statement (9 parameters each, under SQLite's limit of 32,766).
const AUDIT_ROWS_PER_STATEMENT: usize = 1_000;

#[derive(FromRow)]
struct AuditRow {
    event_id: i64,
    seq: i64,
    #[sqlx(rename = "type")]
    kind: String,
    at: i64,
    seat: i64,
    hold_id: Option<String>,
    order_id: Option<String>,
    user_id: String,
    reason: Option<String>,
}

impl AuditRow {
    fn into_record(self) -> Result<AuditRecord> {
        let kind =
            AuditType::parse(&self.kind).ok_or_else(|| corrupt(format!("audit type {:?}", self.kind)))?;
        let hold = match &self.hold_id {
            Some(h) => Some(HoldId::parse(h).map_err(|_| corrupt(format!("hold id {h:?}")))?),
            None => None,
        };
        let order = match &self.order_id {
            Some(o) => Some(parse_order_id(o)?),
            None => None,
        };
        Ok(AuditRecord {
            seq: from_db(self.seq, "audit seq")?,
            record: NewAuditRecord {
                event: EventId(from_db(self.event_id, "event id")?),
                kind,
                at: from_db(self.at, "audit time")?,
                seat: u32::try_from(self.seat).map_err(|_| corrupt(format!("seat {}", self.seat)))?,
                hold,
                order,
                user: UserId::parse(&self.user_id)
                    .map_err(|_| corrupt(format!("user id {:?}", self.user_id)))?,
                reason: self.reason,
            },
        })
    }
}

/// Inserts an event (its venue's map is copied inside SQLite: megabytes that need not
/// travel through Rust), its performers and its catalog change row; returns its row id.
/// `NotFound` for an unknown venue or performer.
async fn insert_event(conn: &mut SqliteConnection, event: &NewEvent, now: i64) -> Result<i64> {
    let venue_id = lookup_id(event.venue_id)?;
    let performer_ids = event.performer_ids.iter().map(|&id| lookup_id(id)).collect::<Result<Vec<_>>>()?;
    // A performer named twice is listed once, at their first place.
    let performer_ids = dedup(&performer_ids);
    let prices = serde_json::to_string(&event.prices).expect("prices serialize");
    if !performer_ids.is_empty() {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT count(*) FROM performers WHERE id IN (");
        let mut list = query.separated(", ");
        for &id in &performer_ids {
            list.push_bind(id);
        }
        query.push(")");
        let known: i64 = query.build_query_scalar().fetch_one(&mut *conn).await?;
        if usize::try_from(known).ok() != Some(performer_ids.len()) {
            return Err(StoreError::NotFound);
        }
    }
    let done = sqlx::query(
        "INSERT INTO events (name, venue_id, category, category_folded, starts_at, \
         onsale_at, status, prices, description, seat_count, created_at, updated_at, \
         seat_map) \
         SELECT ?, id, ?, ?, ?, ?, 'published', ?, ?, seat_count, ?, ?, seat_map \
         FROM venues WHERE id = ?",
    )
    .bind(&event.name)
    .bind(&event.category)
    .bind(fold(&event.category))
    .bind(to_db(event.starts_at, "starts_at")?)
    .bind(to_db(event.onsale_at, "onsale_at")?)
    .bind(prices)
    .bind(&event.description)
    .bind(now)
    .bind(now)
    .bind(venue_id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    let event_id = done.last_insert_rowid();
    for (position, &performer) in performer_ids.iter().enumerate() {
        sqlx::query("INSERT INTO event_performers (event_id, performer_id, position) VALUES (?, ?, ?)")
            .bind(event_id)
            .bind(performer)
            .bind(i64::try_from(position).expect("a performer list fits in memory"))
            .execute(&mut *conn)
            .await?;
    }
    insert_catalog_change(conn, "event", event_id, now).await?;
    Ok(event_id)
}

/// Adds a row to the catalog's change feed, in the caller's transaction.
async fn insert_catalog_change(conn: &mut SqliteConnection, entity: &str, id: i64, now: i64) -> Result<()> {
    sqlx::query("INSERT INTO catalog_changes (entity, entity_id, changed_at) VALUES (?, ?, ?)")
        .bind(entity)
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn load_event(conn: &mut SqliteConnection, id: i64) -> Result<Event> {
    let row: EventRow = sqlx::query_as(concat!(event_select!(), " WHERE e.id = ?"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    let mut events = events_with_performers(conn, vec![row]).await?;
    Ok(events.pop().expect("one row in, one event out"))
}

/// Completes event rows with their performers, in one query for the whole list.
async fn events_with_performers(conn: &mut SqliteConnection, rows: Vec<EventRow>) -> Result<Vec<Event>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = QueryBuilder::<Sqlite>::new(
        "SELECT ep.event_id, p.id, p.name, p.genre FROM event_performers ep \
         JOIN performers p ON p.id = ep.performer_id WHERE ep.event_id IN (",
    );
    let mut list = query.separated(", ");
    for row in &rows {
        list.push_bind(row.id);
    }
    query.push(") ORDER BY ep.event_id, ep.position");
    let found: Vec<(i64, i64, String, Option<String>)> = query.build_query_as().fetch_all(&mut *conn).await?;
    let mut by_event: HashMap<i64, Vec<Performer>> = HashMap::new();
    for (event, id, name, genre) in found {
        let performer = PerformerRow { id, name, genre }.into_performer()?;
        by_event.entry(event).or_default().push(performer);
    }
    rows.into_iter()
        .map(|row| {
            let performers = by_event.remove(&row.id).unwrap_or_default();
            row.into_event(performers)
        })
        .collect()
}

/// Completes order rows with their tickets, in one query for the whole list.
async fn orders_with_tickets(conn: &mut SqliteConnection, rows: Vec<OrderRow>) -> Result<Vec<Order>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = QueryBuilder::<Sqlite>::new(concat!(ticket_select!(), " WHERE order_id IN ("));
    let mut list = query.separated(", ");
    for row in &rows {
        list.push_bind(row.id.clone());
    }
    query.push(")");
    let found: Vec<TicketRow> = query.build_query_as().fetch_all(&mut *conn).await?;
    let mut by_order: HashMap<String, Vec<Ticket>> = HashMap::new();
    for row in found {
        by_order.entry(row.order_id.clone()).or_default().push(row.into_ticket()?);
    }
    rows.into_iter()
        .map(|row| {
            let mut tickets = by_order.remove(&row.id).unwrap_or_default();
            sort_tickets(&mut tickets);
            row.into_order(tickets)
        })
        .collect()
}

/// Tickets of an order are listed in seat order, however they were inserted.
fn sort_tickets(tickets: &mut [Ticket]) {
    tickets.sort_by(|a, b| a.seat_index.cmp(&b.seat_index).then_with(|| a.id.cmp(&b.id)));
}

// --- cursors ---

/// Position after which the next page of events starts: `"<starts_at>:<id>"`.
struct EventCursor {
    starts_at: i64,
    id: i64,
}

impl EventCursor {
    fn parse(s: &str) -> Result<Self> {
        let (starts_at, id) = s.split_once(':').ok_or(StoreError::BadCursor)?;
        Ok(EventCursor { starts_at: cursor_int(starts_at)?, id: cursor_int(id)? })
    }
}

impl fmt::Display for EventCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.starts_at, self.id)
    }
}

/// Position before which the next page of orders (newest first) starts:
/// `"<created_at>:<order id>"`.
struct OrderCursor {
    created_at: i64,
    id: String,
}

impl OrderCursor {
    fn parse(s: &str) -> Result<Self> {
        let (created_at, id) = s.split_once(':').ok_or(StoreError::BadCursor)?;
        let id = OrderId::parse(id).map_err(|_| StoreError::BadCursor)?;
        Ok(OrderCursor { created_at: cursor_int(created_at)?, id: id.as_str().to_owned() })
    }
}

impl fmt::Display for OrderCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.created_at, self.id)
    }
}

// --- small conversions ---

/// An integer from the domain (u64) that must be stored; past `i64::MAX` it cannot be.
fn to_db(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        StoreError::Database(sqlx::Error::Encode(
            format!("{what} {value} exceeds SQLite's integer range").into(),
        ))
    })
}

/// A bound of a range: past `i64::MAX` it means the same as `i64::MAX`.
fn saturating_db(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An id to look up: one past `i64::MAX` cannot have been stored.
fn lookup_id(id: u64) -> Result<i64> {
    i64::try_from(id).map_err(|_| StoreError::NotFound)
}

fn seat_count(value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| corrupt(format!("seat count {value}")))
}

fn seat_index(value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| corrupt(format!("seat index {value}")))
}

fn parse_order_id(s: &str) -> Result<OrderId> {
    OrderId::parse(s).map_err(|_| corrupt(format!("order id {s:?}")))
}

fn parse_user(s: &str) -> Result<UserId> {
    UserId::parse(s).map_err(|_| corrupt(format!("user id {s:?}")))
}

fn parse_currency(s: &str) -> Result<Currency> {
    Currency::parse(s).ok_or_else(|| corrupt(format!("currency {s:?}")))
}

fn order_status_str(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Confirmed => "confirmed",
        OrderStatus::PartiallyRefunded => "partially_refunded",
        OrderStatus::Refunded => "refunded",
    }
}

fn ticket_status_str(status: TicketStatus) -> &'static str {
    match status {
        TicketStatus::Valid => "valid",
        TicketStatus::Scanned => "scanned",
        TicketStatus::Voided => "voided",
        TicketStatus::Transferred => "transferred",
    }
}

/// The form of a city or category that filters compare: SQLite's own case folding
/// (`lower`, `NOCASE`) only knows ASCII.
fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// The distinct values, in order of first appearance.
fn dedup(values: &[i64]) -> Vec<i64> {
    let mut seen = HashSet::new();
    values.iter().copied().filter(|v| seen.insert(*v)).collect()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs CPU-heavy work (a seat map is megabytes of JSON) off the async worker threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

// --- the writer thread's statements (see `sqlite_writer`) ---

/// What [`insert_order`] did.
enum OrderMade {
    Created,
    /// The attempt already completed with this order.
    Existing(OrderId),
}

/// Inserts an order with its tickets, outbox row and audit rows, on the writer's
/// connection (inside its batch, in the job's savepoint).
fn insert_order(
    conn: &rusqlite::Connection,
    order: &NewOrder,
    event: i64,
    created_at: i64,
) -> Result<OrderMade> {
    use rusqlite::OptionalExtension;
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM events WHERE id = ?1")?
        .query_row([event], |r| r.get(0))
        .optional()?;
    if status.as_deref() == Some(EventStatus::Cancelled.as_str()) {
        return Err(StoreError::EventCancelled(order.event));
    }
    if let Some(attempt) = &order.payment_attempt {
        let existing: Option<String> = conn
            .prepare_cached("SELECT id FROM orders WHERE payment_attempt_id = ?1")?
            .query_row([attempt], |r| r.get(0))
            .optional()?;
        if let Some(existing) = existing {
            return Ok(OrderMade::Existing(parse_order_id(&existing)?));
        }
        let open: Option<(String, i64)> = conn
            .prepare_cached("SELECT state, pin_deadline FROM payment_attempts WHERE id = ?1")?
            .query_row([attempt], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let committable = open.is_some_and(|(state, deadline)| {
            state == AttemptState::Authorized.as_str() && created_at < deadline
        });
        if !committable {
            return Err(StoreError::AttemptClosed(attempt.clone()));
        }
    }
    let hold = order.hold.to_string();
    let inserted = conn
        .prepare_cached(
            "INSERT INTO orders (id, event_id, user_id, hold_id, status, email, total_amount, \
             currency, created_at, payment_attempt_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(rusqlite::params![
            order.id.as_str(),
            event,
            order.user.as_str(),
            hold,
            order_status_str(OrderStatus::Confirmed),
            order.email,
            order.total.amount,
            order.total.currency.as_str(),
            created_at,
            order.payment_attempt,
        ]);
    if let Err(err) = inserted {
        if is_unique_failure(&err, "orders.hold_id") {
            let existing: Option<String> = conn
                .prepare_cached("SELECT id FROM orders WHERE hold_id = ?1")?
                .query_row([&hold], |r| r.get(0))
                .optional()?;
            return Err(match existing {
                Some(id) => StoreError::HoldAlreadyOrdered(parse_order_id(&id)?),
                None => err.into(),
            });
        }
        // The only reference an order row makes is to its event.
        return Err(if is_foreign_key_failure(&err) { StoreError::NotFound } else { err.into() });
    }
    let mut insert_ticket = conn.prepare_cached(
        "INSERT INTO tickets (id, order_id, event_id, seat_index, seat_label, price_amount, currency, \
         user_id, status, created_at, qr_payload, revision) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    for ticket in &order.tickets {
        // One statement per ticket: when the unique index fires, the seat is known.
        let inserted = insert_ticket.execute(rusqlite::params![
            ticket.id.as_str(),
            order.id.as_str(),
            event,
            i64::from(ticket.seat_index),
            ticket.seat_label,
            ticket.price.amount,
            ticket.price.currency.as_str(),
            order.user.as_str(),
            ticket_status_str(TicketStatus::Valid),
            created_at,
            ticket.qr_payload,
            i64::from(FIRST_TICKET_REVISION),
        ]);
        if let Err(err) = inserted {
            if is_unique_failure(&err, "tickets.seat_index") {
                return Err(StoreError::SeatAlreadySold {
                    event: order.event,
                    seat_index: ticket.seat_index,
                });
            }
            return Err(err.into());
        }
    }
    let payload = serde_json::json!({
        "order_id": order.id.as_str(),
        "event_id": order.event.to_string(),
        "user": order.user.as_str(),
        "email": order.email,
    });
    conn.prepare_cached("INSERT INTO outbox (topic, key, payload, created_at) VALUES (?1, ?2, ?3, ?4)")?
        .execute((TOPIC_ORDER_CREATED, order.id.as_str(), payload.to_string(), created_at))?;
    let audit: Vec<NewAuditRecord> = order
        .tickets
        .iter()
        .map(|ticket| NewAuditRecord {
            event: order.event,
            kind: AuditType::SeatConfirmed,
            at: order.created_at,
            seat: ticket.seat_index,
            hold: Some(order.hold),
            order: Some(order.id.clone()),
            user: order.user.clone(),
            reason: None,
        })
        .collect();
    write_audit(conn, &audit)?;
    Ok(OrderMade::Created)
}

/// [`insert_audit`] on the writer's connection.
fn write_audit(conn: &rusqlite::Connection, records: &[NewAuditRecord]) -> Result<()> {
    let mut counts: Vec<(EventId, i64)> = Vec::new();
    for record in records {
        match counts.iter_mut().find(|(event, _)| *event == record.event) {
            Some((_, n)) => *n += 1,
            None => counts.push((record.event, 1)),
        }
    }
    let mut next: HashMap<EventId, i64> = HashMap::with_capacity(counts.len());
    let mut head = conn.prepare_cached(
        "INSERT INTO audit_heads (event_id, seq) VALUES (?1, ?2) \
         ON CONFLICT (event_id) DO UPDATE SET seq = seq + excluded.seq RETURNING seq",
    )?;
    for (event, n) in counts {
        let last: i64 = head.query_row((to_db(event.0, "event id")?, n), |r| r.get(0))?;
        next.insert(event, last - n + 1);
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO audit (event_id, seq, type, at, seat, hold_id, order_id, user_id, reason) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for record in records {
        let seq = next.get_mut(&record.event).expect("every event counted");
        insert.execute(rusqlite::params![
            to_db(record.event.0, "event id")?,
            *seq,
            record.kind.as_str(),
            saturating_db(record.at),
            i64::from(record.seat),
            record.hold.map(|h| h.to_string()),
            record.order.as_ref().map(|o| o.as_str()),
            record.user.as_str(),
            record.reason,
        ])?;
        *seq += 1;
    }
    Ok(())
}

fn is_unique_failure(err: &rusqlite::Error, column: &str) -> bool {
    // SQLite names no constraint, only its columns: "UNIQUE constraint failed: t.a, t.b".
    matches!(err, rusqlite::Error::SqliteFailure(e, Some(message))
        if matches!(e.extended_code, rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
            && message.contains(column))
}

fn is_foreign_key_failure(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, _) if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

// --- transfers and revocations ---

/// Records the revocation of `tickets` under the sequence numbers of the audit records
/// just appended for them: call it right after `insert_audit` wrote exactly one record
/// per ticket of `event`, in the same order, in the same transaction.
async fn insert_revocations(
    conn: &mut SqliteConnection,
    event: EventId,
    tickets: &[&Ticket],
    reason: crate::RevocationReason,
    now: i64,
) -> Result<()> {
    if tickets.is_empty() {
        return Ok(());
    }
    let event_id = to_db(event.0, "event id")?;
    let head: i64 = sqlx::query_scalar("SELECT seq FROM audit_heads WHERE event_id = ?")
        .bind(event_id)
        .fetch_one(&mut *conn)
        .await?;
    let first = head - tickets.len() as i64 + 1;
    for (seq, ticket) in (first..).zip(tickets) {
        sqlx::query(
            "INSERT INTO ticket_revocations (event_id, seq, ticket_id, revision, reason, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(event_id)
        .bind(seq)
        .bind(ticket.id.as_str())
        .bind(i64::from(ticket.revision))
        .bind(reason.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A ticket row with the creation time that orders a user's tickets.
#[derive(FromRow)]
struct UserTicketRow {
    #[sqlx(flatten)]
    ticket: TicketRow,
    created_at: i64,
}

/// `PATCH /v1/events/{id}` `static_tickets_allowed`, inside `update_event`'s transaction
/// (after its `event_settings` row is written).
async fn set_static_tickets_allowed(conn: &mut SqliteConnection, event_id: i64, allowed: bool) -> Result<()> {
    sqlx::query("UPDATE event_settings SET static_tickets_allowed = ? WHERE event_id = ?")
        .bind(i64::from(allowed))
        .bind(event_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
