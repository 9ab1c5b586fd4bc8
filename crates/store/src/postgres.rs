//! The PostgreSQL backend of [`Store`], for the distributed mode: every node of a cluster
//! opens the same database, so the guarantees that SQLite gets from its single writer come
//! here from constraints, row locks and counter rows, in transactions at PostgreSQL's
//! default isolation (READ COMMITTED).
//!
//! - **Uniqueness does the deciding.** `orders_one_per_hold`, `orders_one_per_attempt` and
//!   the partial unique index `tickets_one_valid_per_seat` refuse a second order of a hold
//!   or attempt and a second valid ticket for a seat, whichever node tries. Tickets are
//!   inserted in seat order, so two orders racing for overlapping seats wait on each other
//!   in one order and never deadlock.
//! - **Compare-and-set on a locked row.** A transaction that reads before it decides locks
//!   the row it decides about first (`SELECT ... FOR UPDATE`): the payment attempt in
//!   `create_order` and `update_attempt` (so an order never commits on an attempt voided
//!   meanwhile, and an attempt is never voided behind an order committed meanwhile), the
//!   event in `update_event`, the order and its tickets in `refund_tickets` and
//!   `finish_refund`. Under READ COMMITTED every statement after the lock sees what the
//!   previous holder committed. `create_order` also share-locks its event, so a
//!   cancellation waits for the orders in flight and every later order sees it.
//! - **Feeds read by position.** The outbox and the catalog's change feed are read as
//!   `seq > last`. A SEQUENCE would hand out values outside transactions, so a row could
//!   commit after a reader had passed its value and be skipped for ever. Their `seq` comes
//!   instead from a counter row in `seq_counters`, incremented inside the writing
//!   transaction at its end: the row stays locked until the commit, so the writers of one
//!   feed commit in the order of their values (without gaps), and whatever a reader has
//!   seen, no lower value can still appear (`catalog_change_head`, the MAX, is safe to
//!   continue from for the same reason). The price is that those writers serialise over
//!   their last statements and commit, and nothing else.
//! - **Audit history**, numbered per event from 1 without gaps, the same way: each event's
//!   row in `audit_heads` is bumped inside the appending transaction. Lock order, so that
//!   no two transactions wait on each other in a circle: rows a transaction decides about
//!   (event, attempt, order, tickets, in that order), then audit heads in event id order,
//!   then the outbox counter, all counters at the very end.
//! - **Migrations** run at [`PgStore::open`] (and by [`PgStore::migrate`]) on a connection
//!   of their own: sqlx's migrator takes `pg_advisory_lock` (keyed by the database name)
//!   before it even creates its bookkeeping table, so nodes starting together apply each
//!   migration once; closing the connection releases the lock even after a failure.
//!
//! Seat maps are immutable once stored, and big, so they are parsed once, off the async
//! threads, and kept in memory per venue and event, as in the SQLite backend.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use boxoffice_core::{Currency, EventId, HoldId, Money, OrderId, SeatMap, TicketId, UnixMs, UserId};
use parking_lot::Mutex;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, FromRow, Postgres, QueryBuilder};

use crate::rows::{RevocationRow, TicketCursor, corrupt, cursor_int, from_db};
use crate::{
    AttemptState, AttemptUpdate, AuditRecord, AuditType, CatalogChange, CatalogEntity, Event, EventFilter,
    EventStatus, FIRST_TICKET_REVISION, KeyClaim, KeyScope, NewAuditRecord, NewEvent, NewOrder,
    NewPaymentAttempt, NewVenue, Order, OrderStatus, OutboxMessage, Page, PaymentAttempt, Performer,
    QueueSettings, Refund, RefundOutcome, RefundRequest, RefundState, Result, ScanOutcome, SoldSeat, Store,
    StoreError, TOPIC_ORDER_CREATED, TOPIC_ORDER_REFUNDED, Ticket, TicketStatus, Venue,
};
use crate::{
    Revocation, TOPIC_TICKET_TRANSFERRED, TicketTransfer, check_transfer, transfer_audit, transfer_message,
    transferred_ticket,
};

/// Columns of an event and its venue, as [`EventRow`] reads them.
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

mod webhooks;

/// Name of the outbox's counter row in `seq_counters`.
const OUTBOX_COUNTER: &str = "outbox";
/// Name of the catalog change feed's counter row in `seq_counters`.
const CATALOG_COUNTER: &str = "catalog_changes";
/// How often `claim_key` retries when the row it collided with is released before it is
/// read; more than once means keys are being released as fast as they are claimed.
const CLAIM_ATTEMPTS: u32 = 3;

/// How to reach the database, and the limits of the connections to it.
#[derive(Clone)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database`; never logged with its password
    /// ([`PgConfig::redacted_url`]).
    pub url: String,
    /// Connections of the pool, shared by every request of this node.
    pub max_connections: u32,
    /// Longest a statement may run before the server cancels it (0 = no limit).
    pub statement_timeout: Duration,
    /// Longest a statement waits for a row lock before it fails (0 = no limit). Row locks
    /// here are held for one short transaction, so a long wait means something is wrong.
    pub lock_timeout: Duration,
    /// How long [`PgStore::open`] keeps trying to reach an unreachable database (with
    /// backoff) before it fails; also bounds the wait for a free pooled connection.
    pub connect_retry: Duration,
}

impl PgConfig {
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;
    pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(30);
    /// First pause between connection attempts; doubled after each failure up to
    /// [`PgConfig::MAX_RETRY_DELAY`].
    pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
    pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

    /// The defaults for the database at `url`.
    pub fn new(url: impl Into<String>) -> PgConfig {
        PgConfig {
            url: url.into(),
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            statement_timeout: Self::DEFAULT_STATEMENT_TIMEOUT,
            lock_timeout: Self::DEFAULT_LOCK_TIMEOUT,
            connect_retry: Self::DEFAULT_CONNECT_RETRY,
        }
    }

    /// The URL with its password (in the user info or a `password=` parameter) replaced by
    /// `***`: what logs and error messages show.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    fn connect_options(&self) -> Result<PgConnectOptions> {
        PgConnectOptions::from_str(&self.url)
            .map(|options| options.application_name("boxoffice"))
            .map_err(|e| StoreError::Invalid(format!("PostgreSQL URL {}: {e}", self.redacted_url())))
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &self.redacted_url())
            .field("max_connections", &self.max_connections)
            .field("statement_timeout", &self.statement_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field("connect_retry", &self.connect_retry)
            .finish()
    }
}

/// The store in one PostgreSQL database. See the module documentation for the concurrency
/// design.
pub struct PgStore {
    url: String,
    pool: PgPool,
    venue_maps: Mutex<HashMap<u64, Arc<SeatMap>>>,
    event_maps: Mutex<HashMap<EventId, Arc<SeatMap>>>,
}

/// What [`PgStore::migrate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrated {
    /// The migrations this call applied (version, description), in order.
    pub applied: Vec<(i64, String)>,
    /// How many were applied before it.
    pub already_applied: usize,
}

/// Runs the migrator under its advisory lock, taken here first so that what was applied
/// before is read without another node's migration in between (`run_direct` takes the
/// lock again: a session's advisory locks stack).
async fn migrate_locked(conn: &mut PgConnection) -> Result<Migrated> {
    use sqlx::migrate::Migrate;
    let migrator = sqlx::migrate!("./migrations/postgres");
    conn.lock().await?;
    let result = async {
        conn.ensure_migrations_table().await?;
        let before: HashSet<i64> =
            conn.list_applied_migrations().await?.into_iter().map(|m| m.version).collect();
        // `run_direct` rather than `run`: `run` goes through `Acquire`, whose lifetimes make
        // this future not `Send` for every lifetime, so it could not be spawned.
        migrator.run_direct(&mut *conn).await?;
        let applied = migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration() && !before.contains(&m.version))
            .map(|m| (m.version, m.description.to_string()))
            .collect();
        Ok::<_, StoreError>(Migrated { applied, already_applied: before.len() })
    }
    .await;
    let unlocked = conn.unlock().await;
    let migrated = result?;
    unlocked?;
    Ok(migrated)
}

impl fmt::Debug for PgStore {
    // Hand-written: the cached seat maps would print megabytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore").field("url", &self.url).finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects (retrying for `config.connect_retry` while the database is unreachable),
    /// brings the schema up to date under the migrator's advisory lock, and opens the pool.
    pub async fn open(config: &PgConfig) -> Result<PgStore> {
        Self::migrate_with(config).await?;
        let options = config.connect_options()?.options([
            ("statement_timeout", duration_setting(config.statement_timeout)),
            ("lock_timeout", duration_setting(config.lock_timeout)),
        ]);
        let pool_options = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.connect_retry.max(Duration::from_secs(1)));
        let pool = retry_connect(config, || pool_options.clone().connect_with(options.clone())).await?;
        Ok(PgStore {
            url: config.redacted_url(),
            pool,
            venue_maps: Mutex::new(HashMap::new()),
            event_maps: Mutex::new(HashMap::new()),
        })
    }

    /// Applies the migrations that the database at `url` lacks (`boxoffice migrate`), with
    /// the default connection settings.
    pub async fn migrate(url: &str) -> Result<Migrated> {
        Self::migrate_with(&PgConfig::new(url)).await
    }

    /// Applies the missing migrations through a connection of their own, without the
    /// statement and lock timeouts of the pool: a migration may rewrite a big table, and a
    /// node waits for another node's migration to finish rather than fail.
    pub async fn migrate_with(config: &PgConfig) -> Result<Migrated> {
        let options = config.connect_options()?;
        let mut conn = retry_connect(config, || PgConnection::connect_with(&options)).await?;
        let migrated = migrate_locked(&mut conn).await;
        // Closing ends the session and so releases the advisory lock, even when a
        // migration failed while holding it.
        let closed = conn.close().await;
        let migrated = migrated?;
        closed?;
        Ok(migrated)
    }

    /// The connection pool, for maintenance and tests that need SQL the [`Store`] trait
    /// does not offer.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection, waiting for them to finish; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
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
        let text: String =
            sqlx::query_scalar(sql).bind(id).fetch_optional(&self.pool).await?.ok_or(StoreError::NotFound)?;
        let map = blocking(move || serde_json::from_str::<SeatMap>(&text))
            .await
            .map_err(|e| StoreError::Corrupt(format!("seat map {id}: {e}")))?;
        Ok(cache.lock().entry(key).or_insert_with(|| Arc::new(map)).clone())
    }

    /// Turns the failed insert of an order row into the error the trait promises. Called
    /// after the transaction was rolled back, so a competing order is committed by now.
    async fn order_insert_error(&self, err: sqlx::Error, hold: &HoldId) -> StoreError {
        if violates(&err, "orders_one_per_hold") {
            let existing: Result<Option<String>, sqlx::Error> =
                sqlx::query_scalar("SELECT id FROM orders WHERE hold_id = $1")
                    .bind(hold.to_string())
                    .fetch_optional(&self.pool)
                    .await;
            return match existing {
                Ok(Some(id)) => match parse_order_id(&id) {
                    Ok(id) => StoreError::HoldAlreadyOrdered(id),
                    Err(e) => e,
                },
                // Only a concurrent deletion could get here; the original error says most.
                Ok(None) => StoreError::Database(err),
                Err(e) => StoreError::Database(e),
            };
        }
        if is_foreign_key_violation(&err) {
            // The attempt was checked under its lock: the reference that failed is the event.
            return StoreError::NotFound;
        }
        StoreError::Database(err)
    }
}

#[async_trait]
impl Store for PgStore {
    async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn meta_set_if_absent(&self, key: &str, value: &str) -> Result<bool> {
        let done = sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
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
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO venues (name, city, city_folded, lat, lon, address, seat_count, tiers, \
             seat_map) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
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
        .fetch_one(&mut *tx)
        .await?;
        insert_catalog_change(&mut tx, "venue", id, now_ms()).await?;
        tx.commit().await?;
        let id = from_db(id, "venue id")?;
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
            "SELECT id, name, city, lat, lon, address, seat_count, tiers FROM venues WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        row.into_venue()
    }

    async fn venue_seat_map(&self, id: u64) -> Result<Arc<SeatMap>> {
        let db_id = lookup_id(id)?;
        self.cached_map(&self.venue_maps, id, "SELECT seat_map FROM venues WHERE id = $1", db_id).await
    }

    async fn create_performer(&self, name: &str, genre: Option<&str>) -> Result<Performer> {
        let id: i64 = sqlx::query_scalar("INSERT INTO performers (name, genre) VALUES ($1, $2) RETURNING id")
            .bind(name)
            .bind(genre)
            .fetch_one(&self.pool)
            .await?;
        Ok(Performer {
            id: from_db(id, "performer id")?,
            name: name.to_owned(),
            genre: genre.map(str::to_owned),
        })
    }

    async fn performers(&self, ids: &[u64]) -> Result<Vec<Performer>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let db_ids = ids.iter().map(|&id| lookup_id(id)).collect::<Result<Vec<_>>>()?;
        let rows: Vec<PerformerRow> =
            sqlx::query_as("SELECT id, name, genre FROM performers WHERE id = ANY($1)")
                .bind(dedup(&db_ids))
                .fetch_all(&self.pool)
                .await?;
        let found = rows
            .into_iter()
            .map(|row| Ok((row.id, row.into_performer()?)))
            .collect::<Result<HashMap<_, _>>>()?;
        db_ids.iter().map(|id| found.get(id).cloned().ok_or(StoreError::NotFound)).collect()
    }

    async fn create_event(&self, event: NewEvent) -> Result<Event> {
        let mut tx = self.pool.begin().await?;
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
        let mut conn = self.pool.acquire().await?;
        load_event(&mut conn, id).await
    }

    async fn event_seat_map(&self, id: EventId) -> Result<Arc<SeatMap>> {
        let db_id = lookup_id(id.0)?;
        self.cached_map(&self.event_maps, id, "SELECT seat_map FROM events WHERE id = $1", db_id).await
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
        let mut query = QueryBuilder::<Postgres>::new(concat!(event_select!(), " WHERE 1 = 1"));
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
        let mut conn = self.pool.acquire().await?;
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
            sqlx::query_scalar("SELECT id FROM events ORDER BY id").fetch_all(&self.pool).await?;
        ids.into_iter().map(|id| Ok(EventId(from_db(id, "event id")?))).collect()
    }

    async fn create_events(&self, events: Vec<NewEvent>) -> Result<Vec<EventId>> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
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
        let db_ids = ids.iter().map(|id| lookup_id(id.0)).collect::<Result<Vec<_>>>()?;
        let mut conn = self.pool.acquire().await?;
        // One array parameter, however many ids: no limit of bound parameters to chunk by.
        let rows: Vec<EventRow> =
            sqlx::query_as(concat!(event_select!(), " WHERE e.id = ANY($1) ORDER BY e.id"))
                .bind(dedup(&db_ids))
                .fetch_all(&mut *conn)
                .await?;
        events_with_performers(&mut conn, rows).await
    }

    async fn venue_event_ids(&self, venue_id: u64) -> Result<Vec<EventId>> {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM events WHERE venue_id = $1 ORDER BY id")
            .bind(lookup_id(venue_id)?)
            .fetch_all(&self.pool)
            .await?;
        ids.into_iter().map(|id| Ok(EventId(from_db(id, "event id")?))).collect()
    }

    async fn catalog_changes_after(&self, after_seq: u64, limit: u32) -> Result<Vec<CatalogChange>> {
        let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT seq, entity, entity_id, changed_at FROM catalog_changes WHERE seq > $1 \
             ORDER BY seq LIMIT $2",
        )
        .bind(saturating_db(after_seq))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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
        // Every committed change is below the head and none can still commit below it
        // (see the module documentation), so MAX is a safe place to continue from.
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM catalog_changes")
            .fetch_one(&self.pool)
            .await?;
        from_db(head, "catalog change seq")
    }

    async fn update_event(&self, id: EventId, update: crate::EventUpdate) -> Result<Event> {
        let db_id = lookup_id(id.0)?;
        let mut tx = self.pool.begin().await?;
        // The lock makes the read, merge and write below one step: two concurrent partial
        // changes both take effect, and `updated_at` moves strictly forward.
        let locked: Option<i64> = sqlx::query_scalar("SELECT id FROM events WHERE id = $1 FOR UPDATE")
            .bind(db_id)
            .fetch_optional(&mut *tx)
            .await?;
        if locked.is_none() {
            return Err(StoreError::NotFound);
        }
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
            "UPDATE events SET name = $1, description = $2, status = $3, onsale_at = $4, \
             starts_at = $5, updated_at = $6 WHERE id = $7",
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
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (event_id) DO UPDATE SET queue_enabled = excluded.queue_enabled, \
             queue_admit_rate_per_second = excluded.queue_admit_rate_per_second, \
             queue_token_ttl_seconds = excluded.queue_token_ttl_seconds, \
             queue_max_length = excluded.queue_max_length, \
             queue_proof_of_work_bits = excluded.queue_proof_of_work_bits",
        )
        .bind(db_id)
        .bind(queue.enabled)
        .bind(i64::from(queue.admit_rate_per_second))
        .bind(i64::from(queue.token_ttl_seconds))
        .bind(to_db(queue.max_length, "queue max_length")?)
        .bind(i64::from(queue.proof_of_work_bits))
        .execute(&mut *tx)
        .await?;
        if let Some(allowed) = update.static_tickets_allowed {
            sqlx::query("UPDATE event_settings SET static_tickets_allowed = $1 WHERE event_id = $2")
                .bind(allowed)
                .bind(db_id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(on) = update.orphan_rule {
            sqlx::query("UPDATE event_settings SET orphan_rule = $1 WHERE event_id = $2")
                .bind(on)
                .bind(db_id)
                .execute(&mut *tx)
                .await?;
        }
        let updated = load_event(&mut tx, db_id).await?;
        // Last: the feed's counter row stays locked only for the commit.
        insert_catalog_change(&mut tx, "event", db_id, updated_at).await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn create_order(&self, order: NewOrder) -> Result<Order> {
        let event = to_db(order.event.0, "event id")?;
        let created_at = to_db(order.created_at, "created_at")?;
        let hold = order.hold.to_string();
        let mut tx = self.pool.begin().await?;
        // FOR SHARE: a cancellation committing meanwhile waits for this order, and an order
        // after it sees the cancellation.
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM events WHERE id = $1 FOR SHARE")
            .bind(event)
            .fetch_optional(&mut *tx)
            .await?;
        if status.as_deref() == Some(EventStatus::Cancelled.as_str()) {
            tx.rollback().await?;
            return Err(StoreError::EventCancelled(order.event));
        }
        if let Some(attempt) = &order.payment_attempt {
            // Locked first: a concurrent completion of the same attempt, or a concurrent
            // void or decline of it, waits here until this transaction ends, and then sees
            // its outcome.
            let open: Option<(String, i64)> =
                sqlx::query_as("SELECT state, pin_deadline FROM payment_attempts WHERE id = $1 FOR UPDATE")
                    .bind(attempt)
                    .fetch_optional(&mut *tx)
                    .await?;
            let existing: Option<String> =
                sqlx::query_scalar("SELECT id FROM orders WHERE payment_attempt_id = $1")
                    .bind(attempt)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(existing) = existing {
                // A second completion of one attempt: the first order stands.
                tx.rollback().await?;
                return self.order(&parse_order_id(&existing)?).await;
            }
            let committable = open.is_some_and(|(state, deadline)| {
                state == AttemptState::Authorized.as_str() && created_at < deadline
            });
            if !committable {
                tx.rollback().await?;
                return Err(StoreError::AttemptClosed(attempt.clone()));
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO orders (id, event_id, user_id, hold_id, status, email, total_amount, \
             currency, created_at, payment_attempt_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(order.id.as_str())
        .bind(event)
        .bind(order.user.as_str())
        .bind(&hold)
        .bind(order_status_str(OrderStatus::Confirmed))
        .bind(&order.email)
        .bind(order.total.amount)
        .bind(order.total.currency.as_str())
        .bind(created_at)
        .bind(&order.payment_attempt)
        .execute(&mut *tx)
        .await;
        if let Err(err) = inserted {
            tx.rollback().await?;
            return Err(self.order_insert_error(err, &order.hold).await);
        }
        // In seat order: two orders racing for overlapping seats then wait on each other's
        // seats in the same order, and the second fails instead of deadlocking.
        let mut by_seat: Vec<&crate::NewTicket> = order.tickets.iter().collect();
        by_seat.sort_by_key(|t| t.seat_index);
        for ticket in by_seat {
            // One statement per ticket: when the unique index fires, the seat is known.
            let inserted = sqlx::query(
                "INSERT INTO tickets (id, order_id, event_id, seat_index, seat_label, \
                 price_amount, currency, user_id, status, created_at, qr_payload, revision) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(ticket.id.as_str())
            .bind(order.id.as_str())
            .bind(event)
            .bind(i64::from(ticket.seat_index))
            .bind(&ticket.seat_label)
            .bind(ticket.price.amount)
            .bind(ticket.price.currency.as_str())
            .bind(order.user.as_str())
            .bind(ticket_status_str(TicketStatus::Valid))
            .bind(created_at)
            .bind(&ticket.qr_payload)
            .bind(i64::from(FIRST_TICKET_REVISION))
            .execute(&mut *tx)
            .await;
            if let Err(err) = inserted {
                tx.rollback().await?;
                if violates_seat_index(&err) {
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
        // The event's audit head, then the outbox counter: every transaction takes these
        // locks in this order, at its end, after anything else it waits for.
        insert_audit(&mut tx, &audit).await?;
        insert_outbox(&mut tx, TOPIC_ORDER_CREATED, order.id.as_str(), &payload, created_at).await?;
        tx.commit().await?;
        let mut tickets: Vec<Ticket> = order
            .tickets
            .into_iter()
            .map(|t| Ticket {
                id: t.id,
                order_id: order.id.clone(),
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
            id: order.id,
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
        let mut conn = self.pool.acquire().await?;
        let row: OrderRow = sqlx::query_as(concat!(order_select!(), " WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut orders = orders_with_tickets(&mut conn, vec![row]).await?;
        Ok(orders.pop().expect("one row in, one order out"))
    }

    async fn order_for_hold(&self, hold: &HoldId) -> Result<Option<Order>> {
        let mut conn = self.pool.acquire().await?;
        let row: Option<OrderRow> = sqlx::query_as(concat!(order_select!(), " WHERE hold_id = $1"))
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
        let mut query = QueryBuilder::<Postgres>::new(concat!(order_select!(), " WHERE user_id = "));
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
        let mut conn = self.pool.acquire().await?;
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
             WHERE event_id = $1 AND status IN ('valid', 'scanned') ORDER BY seat_index",
        )
        .bind(event)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(seat, user)| Ok(SoldSeat { seat_index: seat_index(seat)?, user: parse_user(&user)? }))
            .collect()
    }

    async fn cancellation_refunds_due(&self, limit: u32) -> Result<Vec<(EventId, OrderId)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT DISTINCT t.event_id, t.order_id FROM tickets t JOIN events e ON e.id = t.event_id \
             WHERE e.status = 'cancelled' AND t.status IN ('valid', 'scanned') \
             ORDER BY t.event_id, t.order_id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(event, order)| Ok((EventId(from_db(event, "event id")?), parse_order_id(&order)?)))
            .collect()
    }

    async fn revenue_minor_units(&self, event: EventId) -> Result<i64> {
        let event = lookup_id(event.0)?;
        // SUM of BIGINT is NUMERIC in PostgreSQL; an event's revenue fits in BIGINT.
        let sum: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(price_amount), 0)::BIGINT FROM tickets \
             WHERE event_id = $1 AND status IN ('valid', 'scanned')",
        )
        .bind(event)
        .fetch_one(&self.pool)
        .await?;
        Ok(sum)
    }

    async fn create_attempt(&self, attempt: NewPaymentAttempt) -> Result<PaymentAttempt> {
        let event = to_db(attempt.hold.event.0, "event id")?;
        let created_at = to_db(attempt.created_at, "created_at")?;
        let pin_deadline = to_db(attempt.pin_deadline, "pin_deadline")?;
        let seats = serde_json::to_string(&attempt.seats).expect("seat indexes serialize");
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO payment_attempts (id, hold_id, event_id, user_id, seats, amount, currency, \
             gateway, gateway_key, state, created_at, updated_at, pin_deadline) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&attempt.id)
        .bind(attempt.hold.to_string())
        .bind(event)
        .bind(attempt.user.as_str())
        .bind(seats)
        .bind(attempt.amount.amount)
        .bind(attempt.amount.currency.as_str())
        .bind(&attempt.gateway)
        .bind(&attempt.gateway_key)
        .bind(AttemptState::Initiated.as_str())
        .bind(created_at)
        .bind(created_at)
        .bind(pin_deadline)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(err) if is_foreign_key_violation(&err) => return Err(StoreError::NotFound),
            Err(err) => return Err(err.into()),
        }
        let audit: Vec<NewAuditRecord> = attempt
            .seats
            .iter()
            .map(|&seat| NewAuditRecord {
                event: attempt.hold.event,
                kind: AuditType::PaymentInitiated,
                at: attempt.created_at,
                seat,
                hold: Some(attempt.hold),
                order: None,
                user: attempt.user.clone(),
                reason: None,
            })
            .collect();
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
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
        let row: AttemptRow = sqlx::query_as(concat!(attempt_select!(), " WHERE a.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        row.into_attempt()
    }

    async fn attempts_for_hold(&self, hold: &HoldId) -> Result<Vec<PaymentAttempt>> {
        let rows: Vec<AttemptRow> =
            sqlx::query_as(concat!(attempt_select!(), " WHERE a.hold_id = $1 ORDER BY a.created_at, a.id"))
                .bind(hold.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(AttemptRow::into_attempt).collect()
    }

    async fn update_attempt(&self, update: AttemptUpdate<'_>) -> Result<bool> {
        if update.from.is_empty() {
            return Ok(false);
        }
        let mut tx = self.pool.begin().await?;
        // The lock first, then the compare-and-set in a statement of its own: READ COMMITTED
        // gives that statement a snapshot taken after the lock was granted, so it sees an
        // order that `create_order` committed while holding the lock. (A single UPDATE
        // would judge `NOT EXISTS` by its snapshot from before the wait.)
        let known: Option<String> =
            sqlx::query_scalar("SELECT id FROM payment_attempts WHERE id = $1 FOR UPDATE")
                .bind(update.id)
                .fetch_optional(&mut *tx)
                .await?;
        if known.is_none() {
            return Err(StoreError::NotFound);
        }
        let from: Vec<&str> = update.from.iter().map(|s| s.as_str()).collect();
        let mut query = QueryBuilder::<Postgres>::new("UPDATE payment_attempts SET state = ");
        query.push_bind(update.to.as_str());
        query.push(", updated_at = ").push_bind(to_db(update.now, "now")?);
        query.push(", authorization_id = COALESCE(").push_bind(update.authorization_id);
        query.push(", authorization_id) WHERE id = ").push_bind(update.id);
        query.push(" AND state = ANY(").push_bind(from).push(")");
        if matches!(update.to, AttemptState::Voided | AttemptState::Declined | AttemptState::Refunded) {
            query.push(
                " AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.payment_attempt_id = payment_attempts.id)",
            );
        }
        let done = query.build().execute(&mut *tx).await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        if matches!(update.to, AttemptState::Declined | AttemptState::Voided | AttemptState::Refunded) {
            // A payment that ended without an order: its seats' history says so.
            let row: Option<(String, String, String)> = sqlx::query_as(
                "SELECT a.hold_id, a.user_id, a.seats FROM payment_attempts a WHERE a.id = $1 \
                 AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.payment_attempt_id = a.id)",
            )
            .bind(update.id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((hold, user, seats)) = row {
                let hold = HoldId::parse(&hold).map_err(|_| corrupt(format!("hold id {hold:?}")))?;
                let user = parse_user(&user)?;
                let seats: Vec<u32> = serde_json::from_str(&seats)
                    .map_err(|e| corrupt(format!("seats of attempt {}: {e}", update.id)))?;
                let audit: Vec<NewAuditRecord> = seats
                    .into_iter()
                    .map(|seat| NewAuditRecord {
                        event: hold.event,
                        kind: AuditType::PaymentFailed,
                        at: update.now,
                        seat,
                        hold: Some(hold),
                        order: None,
                        user: user.clone(),
                        reason: Some(update.to.as_str().to_owned()),
                    })
                    .collect();
                insert_audit(&mut tx, &audit).await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn open_attempts(&self, deadline_before: UnixMs, limit: u32) -> Result<Vec<PaymentAttempt>> {
        let rows: Vec<AttemptRow> = sqlx::query_as(concat!(
            attempt_select!(),
            " WHERE a.state IN ('initiated', 'authorized', 'unknown') AND a.pin_deadline < $1 \
             ORDER BY a.pin_deadline, a.id LIMIT $2"
        ))
        .bind(saturating_db(deadline_before))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AttemptRow::into_attempt).collect()
    }

    async fn refund_tickets(&self, request: RefundRequest) -> Result<RefundOutcome> {
        let now = to_db(request.now, "now")?;
        let mut tx = self.pool.begin().await?;
        // The order row serialises the refunds of one order (their count names the gateway
        // key); its tickets are locked too, so that a ticket scanned meanwhile is seen as
        // scanned before a fan's refund voids it.
        let row: OrderRow = sqlx::query_as(concat!(order_select!(), " WHERE id = $1 FOR UPDATE"))
            .bind(request.order.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let attempt = row.payment_attempt_id.clone();
        let locked: Vec<TicketRow> =
            sqlx::query_as(concat!(ticket_select!(), " WHERE event_id = $1 AND order_id = $2 FOR UPDATE"))
                .bind(row.event_id)
                .bind(&row.id)
                .fetch_all(&mut *tx)
                .await?;
        let mut tickets = locked.into_iter().map(TicketRow::into_ticket).collect::<Result<Vec<_>>>()?;
        sort_tickets(&mut tickets);
        let order = row.into_order(tickets)?;
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
            return Ok(RefundOutcome { order, refund: None });
        }
        let amount = Money::sum(to_void.iter().map(|t| t.price))
            .ok_or_else(|| corrupt(format!("ticket prices of order {} do not add up", order.id)))?;
        let earlier: i64 = sqlx::query_scalar("SELECT count(*) FROM refunds WHERE order_id = $1")
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
                sqlx::query_scalar("SELECT gateway_key FROM payment_attempts WHERE id = $1")
                    .bind(attempt)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        };
        let void_ids: Vec<&str> = to_void.iter().map(|t| t.id.as_str()).collect();
        sqlx::query(
            "UPDATE tickets SET status = 'voided', updated_at = $1 \
             WHERE event_id = $2 AND status IN ('valid', 'scanned') AND id = ANY($3)",
        )
        .bind(now)
        .bind(to_db(order.event.0, "event id")?)
        .bind(&void_ids)
        .execute(&mut *tx)
        .await?;
        let remaining = order
            .tickets
            .iter()
            .filter(|t| matches!(t.status, TicketStatus::Valid | TicketStatus::Scanned))
            .count()
            - to_void.len();
        let status = if remaining == 0 { OrderStatus::Refunded } else { OrderStatus::PartiallyRefunded };
        sqlx::query("UPDATE orders SET status = $1 WHERE id = $2")
            .bind(order_status_str(status))
            .bind(order.id.as_str())
            .execute(&mut *tx)
            .await?;
        let ticket_ids: Vec<TicketId> = to_void.iter().map(|t| t.id.clone()).collect();
        let ticket_ids_json = serde_json::to_string(&void_ids).expect("ticket ids serialize");
        sqlx::query(
            "INSERT INTO refunds (id, order_id, payment_attempt_id, gateway_key, amount, currency, \
             ticket_ids, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9)",
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
            "ticket_ids": void_ids,
            "seats": to_void.iter().map(|t| t.seat_index).collect::<Vec<_>>(),
            "event_id": order.event.to_string(),
        });
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
        // Last but the outbox row, in the lock order that `create_order` explains.
        insert_audit(&mut tx, &audit).await?;
        insert_revocations(&mut tx, order.event, &to_void, crate::RevocationReason::Refunded, now).await?;
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
        let mut tx = self.pool.begin().await?;
        // The order's lock, as in `refund_tickets`: two refunds of one order finishing at
        // once are judged one after the other, so the second sees the first finished and
        // the payment ends `refunded`.
        let order: Option<String> = sqlx::query_scalar(
            "SELECT o.id FROM refunds r JOIN orders o ON o.id = r.order_id WHERE r.id = $1 \
             FOR UPDATE OF o",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if order.is_none() {
            return Err(StoreError::NotFound);
        }
        sqlx::query("UPDATE refunds SET state = 'succeeded', updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // The payment is refunded once its order is refunded whole and no refund is pending.
        sqlx::query(
            "UPDATE payment_attempts SET state = 'refunded', updated_at = $1 \
             WHERE state IN ('authorized', 'captured') AND id = \
               (SELECT o.payment_attempt_id FROM refunds r JOIN orders o ON o.id = r.order_id \
                WHERE r.id = $2 AND o.status = 'refunded' AND NOT EXISTS \
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
            " WHERE r.state = 'pending' ORDER BY r.created_at, r.id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(RefundRow::into_refund).collect()
    }

    async fn ticket(&self, id: &TicketId) -> Result<Ticket> {
        let row: TicketRow = sqlx::query_as(concat!(ticket_select!(), " WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        row.into_ticket()
    }

    async fn scan_ticket(&self, id: &TicketId, revision: u32, now: UnixMs) -> Result<ScanOutcome> {
        let now = to_db(now, "now")?;
        // One statement decides: a concurrent scan or refund of the ticket makes this one
        // wait and then re-check `status = 'valid'` on the row as that one left it. The
        // `ticket.scanned` outbox row commits with it.
        let mut tx = self.pool.begin().await?;
        let scanned: Option<TicketRow> = sqlx::query_as(
            "UPDATE tickets SET status = 'scanned', updated_at = $1 \
             WHERE id = $2 AND revision = $3 AND status = 'valid' \
             RETURNING id, order_id, event_id, seat_index, seat_label, price_amount, currency, \
             status, user_id, revision, qr_payload",
        )
        .bind(now)
        .bind(id.as_str())
        .bind(i64::from(revision))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = scanned {
            let ticket = row.into_ticket()?;
            let payload = crate::webhooks::scan_message(&ticket, now);
            insert_outbox(&mut tx, crate::TOPIC_TICKET_SCANNED, ticket.id.as_str(), &payload, now).await?;
            tx.commit().await?;
            return Ok(ScanOutcome::Admitted(ticket));
        }
        tx.rollback().await?;
        let row: Option<TicketRow> = sqlx::query_as(concat!(ticket_select!(), " WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(ticket) = row.map(TicketRow::into_ticket).transpose()? else {
            return Ok(ScanOutcome::Unknown);
        };
        if ticket.revision != revision {
            return Ok(ScanOutcome::Unknown);
        }
        Ok(match ticket.status {
            TicketStatus::Scanned => ScanOutcome::AlreadyScanned(ticket),
            TicketStatus::Voided | TicketStatus::Transferred => ScanOutcome::Revoked(ticket),
            TicketStatus::Valid => ScanOutcome::Unknown,
        })
    }

    async fn outbox_pending(&self, limit: u32) -> Result<Vec<OutboxMessage>> {
        let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
            "SELECT seq, topic, key, payload, created_at FROM outbox WHERE sent_at IS NULL \
             ORDER BY seq LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
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
        sqlx::query("UPDATE outbox SET sent_at = $1 WHERE seq <= $2 AND sent_at IS NULL")
            .bind(to_db(now, "now")?)
            .bind(saturating_db(up_to_seq))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn outbox_requeue_after(&self, seq: u64) -> Result<u64> {
        let done = sqlx::query("UPDATE outbox SET sent_at = NULL WHERE seq > $1 AND sent_at IS NOT NULL")
            .bind(saturating_db(seq))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn outbox_purge(&self, sent_before: UnixMs, up_to_seq: u64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1 AND seq <= $2")
            .bind(saturating_db(sent_before))
            .bind(saturating_db(up_to_seq))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn append_audit(&self, records: &[NewAuditRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        insert_audit(&mut tx, records).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_after(&self, event: EventId, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT event_id, seq, type, at, seat, hold_id, order_id, user_id, reason FROM audit \
             WHERE event_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(to_db(event.0, "event id")?)
        .bind(saturating_db(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AuditRow::into_record).collect()
    }

    async fn audit_open_holds(&self, event: EventId) -> Result<Vec<AuditRecord>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT a.event_id, a.seq, a.type, a.at, a.seat, a.hold_id, a.order_id, a.user_id, a.reason \
             FROM audit a WHERE a.event_id = $1 AND a.type = 'SEAT_HELD' AND NOT EXISTS \
             (SELECT 1 FROM audit b WHERE b.hold_id = a.hold_id \
              AND b.type IN ('SEAT_RELEASED', 'SEAT_CONFIRMED')) ORDER BY a.seq",
        )
        .bind(to_db(event.0, "event id")?)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AuditRow::into_record).collect()
    }

    async fn audit_holds_recorded(&self, event: EventId, holds: &[HoldId]) -> Result<Vec<HoldId>> {
        let holds: Vec<String> = holds.iter().map(HoldId::to_string).collect();
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT hold_id FROM audit \
             WHERE type = 'SEAT_HELD' AND event_id = $1 AND hold_id = ANY($2)",
        )
        .bind(to_db(event.0, "event id")?)
        .bind(&holds)
        .fetch_all(&self.pool)
        .await?;
        found.iter().map(|h| HoldId::parse(h).map_err(|_| corrupt(format!("hold id {h:?}")))).collect()
    }

    async fn claim_key(&self, scope: KeyScope<'_>, body_sha256: [u8; 32], now: UnixMs) -> Result<KeyClaim> {
        let now = to_db(now, "now")?;
        for _ in 0..CLAIM_ATTEMPTS {
            // A concurrent claim of the same key waits on the unique index until the first
            // insert commits, then inserts nothing; the read that follows (a statement of
            // its own, so with a fresh snapshot) finds the winner's row.
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (user_id, route, key, body_sha256, state, created_at) \
                 VALUES ($1, $2, $3, $4, 'in_progress', $5) ON CONFLICT DO NOTHING",
            )
            .bind(scope.user.as_str())
            .bind(scope.route)
            .bind(scope.key)
            .bind(&body_sha256[..])
            .bind(now)
            .execute(&self.pool)
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(KeyClaim::Claimed);
            }
            // A claim abandoned by a dead process: the row lock lets one taker win.
            let taken_over = sqlx::query(
                "UPDATE idempotency_keys SET created_at = $1 WHERE user_id = $2 AND route = $3 AND key = $4 \
                 AND state = 'in_progress' AND body_sha256 = $5 AND created_at < $6",
            )
            .bind(now)
            .bind(scope.user.as_str())
            .bind(scope.route)
            .bind(scope.key)
            .bind(&body_sha256[..])
            .bind(now.saturating_sub(crate::KEY_CLAIM_ABANDONED_MS as i64))
            .execute(&self.pool)
            .await?;
            if taken_over.rows_affected() == 1 {
                return Ok(KeyClaim::Claimed);
            }
            let row: Option<KeyRow> = sqlx::query_as(
                "SELECT body_sha256, state, status, body FROM idempotency_keys \
                 WHERE user_id = $1 AND route = $2 AND key = $3",
            )
            .bind(scope.user.as_str())
            .bind(scope.route)
            .bind(scope.key)
            .fetch_optional(&self.pool)
            .await?;
            // None: released or purged between the two statements; claim again.
            if let Some(row) = row {
                return row.into_claim(&body_sha256);
            }
        }
        Err(StoreError::Invalid(format!(
            "idempotency key {:?} was released {CLAIM_ATTEMPTS} times while being claimed",
            scope.key
        )))
    }

    async fn finish_key(&self, scope: KeyScope<'_>, status: u16, body: &[u8]) -> Result<()> {
        // Only an in-progress key: a final answer once stored is never replaced.
        let done = sqlx::query(
            "UPDATE idempotency_keys SET state = 'done', status = $1, body = $2 \
             WHERE user_id = $3 AND route = $4 AND key = $5 AND state = 'in_progress'",
        )
        .bind(i64::from(status))
        .bind(body)
        .bind(scope.user.as_str())
        .bind(scope.route)
        .bind(scope.key)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            // The answer has been given already; only its replay is lost (the key was
            // purged or released meanwhile), which is not worth failing the request for.
            tracing::warn!(
                user = %scope.user, route = scope.route, key = scope.key,
                "idempotency key finished but no longer in progress; its answer is not stored"
            );
        }
        Ok(())
    }

    async fn release_key(&self, scope: KeyScope<'_>) -> Result<()> {
        // Only an in-progress key, for the same reason as in `finish_key`.
        sqlx::query(
            "DELETE FROM idempotency_keys \
             WHERE user_id = $1 AND route = $2 AND key = $3 AND state = 'in_progress'",
        )
        .bind(scope.user.as_str())
        .bind(scope.route)
        .bind(scope.key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn purge_keys(&self, before: UnixMs) -> Result<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(saturating_db(before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    // --- transfers and revocations ---

    async fn transfer_ticket(&self, transfer: TicketTransfer) -> Result<Ticket> {
        let now = to_db(transfer.now, "now")?;
        // Dropping the transaction on an early return rolls it back.
        let mut tx = self.pool.begin().await?;
        let found: Option<(i64, String)> =
            sqlx::query_as("SELECT event_id, order_id FROM tickets WHERE id = $1")
                .bind(transfer.ticket.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let (event_id, order_id) = found.ok_or(StoreError::NotFound)?;
        // Locks in the order `create_order` explains: the event (shared: a cancellation
        // waits for this transfer, and a transfer after it sees it), the order (refunds of
        // it wait), the ticket (a scan waits, then finds it transferred).
        let event_status: Option<String> =
            sqlx::query_scalar("SELECT status FROM events WHERE id = $1 FOR SHARE")
                .bind(event_id)
                .fetch_optional(&mut *tx)
                .await?;
        if event_status.as_deref() == Some(EventStatus::Cancelled.as_str()) {
            return Err(StoreError::EventCancelled(EventId(from_db(event_id, "event id")?)));
        }
        sqlx::query("SELECT id FROM orders WHERE id = $1 FOR UPDATE")
            .bind(&order_id)
            .execute(&mut *tx)
            .await?;
        let row: TicketRow =
            sqlx::query_as(concat!(ticket_select!(), " WHERE event_id = $1 AND id = $2 FOR UPDATE"))
                .bind(event_id)
                .bind(transfer.ticket.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
        let old = row.into_ticket()?;
        check_transfer(&old, &transfer)?;
        // The old ticket leaves the unique index over valid tickets before the new one enters.
        sqlx::query(
            "UPDATE tickets SET status = 'transferred', updated_at = $1 \
             WHERE event_id = $2 AND id = $3 AND status = 'valid'",
        )
        .bind(now)
        .bind(event_id)
        .bind(old.id.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO tickets (id, order_id, event_id, seat_index, seat_label, price_amount, currency, \
             user_id, status, created_at, qr_payload, revision) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(transfer.new_ticket.as_str())
        .bind(old.order_id.as_str())
        .bind(event_id)
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
             WHERE event_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(lookup_id(event.0)?)
        .bind(saturating_db(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(RevocationRow::into_revocation).collect()
    }

    async fn tickets_of_user(&self, user: &UserId, limit: u32, cursor: Option<&str>) -> Result<Page<Ticket>> {
        let limit = limit.max(1);
        let before = cursor.map(TicketCursor::parse).transpose()?;
        let mut query = QueryBuilder::<Postgres>::new(
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
        let mut rows: Vec<UserTicketRow> = query.build_query_as().fetch_all(&self.pool).await?;
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
        let mut tx = self.pool.begin().await?;
        // The event row's lock serialises the allocations of one event: the checks against
        // the others and the insert are one step.
        let locked: Option<i64> = sqlx::query_scalar("SELECT id FROM events WHERE id = $1 FOR UPDATE")
            .bind(db_id)
            .fetch_optional(&mut *tx)
            .await?;
        if locked.is_none() {
            return Err(StoreError::NotFound);
        }
        let now = now_ms();
        let created =
            crate::allocations::postgres::create_allocation(&mut tx, db_id, &allocation, now).await?;
        insert_catalog_change(&mut tx, "event", db_id, now).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn allocations(&self, event: EventId) -> Result<Vec<crate::Allocation>> {
        let mut conn = self.pool.acquire().await?;
        crate::allocations::postgres::allocations(&mut conn, lookup_id(event.0)?).await
    }

    async fn create_presale_codes(&self, codes: crate::NewPresaleCodes) -> Result<()> {
        let db_id = lookup_id(codes.event.0)?;
        let mut tx = self.pool.begin().await?;
        crate::allocations::postgres::create_codes(&mut tx, db_id, &codes, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn presale_code(&self, event: EventId, code_hash: &str) -> Result<Option<crate::PresaleCode>> {
        let mut conn = self.pool.acquire().await?;
        crate::allocations::postgres::code(&mut conn, lookup_id(event.0)?, code_hash).await
    }

    async fn use_presale_code(
        &self,
        event: EventId,
        code_hash: &str,
        seats: u32,
        now: UnixMs,
    ) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        // One conditional UPDATE: its row lock makes concurrent uses of a code count one
        // after the other against the limits.
        crate::allocations::postgres::use_code(
            &mut conn,
            lookup_id(event.0)?,
            code_hash,
            seats,
            saturating_db(now),
        )
        .await
    }

    async fn return_presale_code_use(&self, event: EventId, code_hash: &str, seats: u32) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        crate::allocations::postgres::return_use(&mut conn, lookup_id(event.0)?, code_hash, seats).await
    }

    async fn waitlist_join(
        &self,
        entry: crate::NewWaitlistEntry,
        max_entries: u32,
    ) -> Result<crate::WaitlistJoin> {
        let db_id = lookup_id(entry.event.0)?;
        let mut tx = self.pool.begin().await?;
        // The event row's lock serialises the event's joins: the user's entry, the count,
        // the next `seq` and the insert are one step.
        let locked: Option<i64> = sqlx::query_scalar("SELECT id FROM events WHERE id = $1 FOR UPDATE")
            .bind(db_id)
            .fetch_optional(&mut *tx)
            .await?;
        if locked.is_none() {
            return Err(StoreError::NotFound);
        }
        let joined = crate::waitlist::postgres::join(&mut tx, db_id, &entry, max_entries).await?;
        tx.commit().await?;
        Ok(joined)
    }

    async fn waitlist_entry(&self, id: &str) -> Result<Option<crate::WaitlistEntry>> {
        let mut conn = self.pool.acquire().await?;
        crate::waitlist::postgres::entry(&mut conn, id).await
    }

    async fn waitlist_active_of(
        &self,
        event: EventId,
        user: &UserId,
    ) -> Result<Option<crate::WaitlistEntry>> {
        let mut conn = self.pool.acquire().await?;
        crate::waitlist::postgres::active_of(&mut conn, lookup_id(event.0)?, user).await
    }

    async fn waitlist_active(&self, event: Option<EventId>) -> Result<Vec<crate::WaitlistEntry>> {
        let mut conn = self.pool.acquire().await?;
        crate::waitlist::postgres::active(&mut conn, event.map(|e| lookup_id(e.0)).transpose()?).await
    }

    async fn waitlist_position(&self, event: EventId, seq: u64) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        crate::waitlist::postgres::position(&mut conn, lookup_id(event.0)?, seq).await
    }

    async fn waitlist_update(
        &self,
        id: &str,
        from: crate::WaitlistState,
        change: crate::WaitlistChange,
    ) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        crate::waitlist::postgres::update(&mut conn, id, from, &change).await
    }
}

// --- connecting ---

/// Runs `connect` until it succeeds, a failure that waiting cannot cure happens, or
/// `config.connect_retry` has passed, pausing with exponential backoff in between. The
/// final error names the database by its URL without the password.
async fn retry_connect<T, F, Fut>(config: &PgConfig, mut connect: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let started = Instant::now();
    let deadline = started + config.connect_retry;
    let mut delay = PgConfig::FIRST_RETRY_DELAY;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        // An attempt that hangs (a host that drops packets) is cut off at the deadline too.
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        let err = match tokio::time::timeout(left, connect()).await {
            Ok(Ok(connected)) => return Ok(connected),
            Ok(Err(err)) => err,
            Err(_) => sqlx::Error::PoolTimedOut,
        };
        let now = Instant::now();
        if !is_transient(&err) || now + delay >= deadline {
            let message = format!(
                "cannot connect to PostgreSQL at {} ({attempts} attempts in {:.1} s): {err}",
                config.redacted_url(),
                now.duration_since(started).as_secs_f64()
            );
            let kind = match &err {
                sqlx::Error::Io(e) => e.kind(),
                _ => std::io::ErrorKind::Other,
            };
            return Err(StoreError::Database(sqlx::Error::Io(std::io::Error::new(kind, message))));
        }
        tracing::warn!(
            url = %config.redacted_url(), attempt = attempts, error = %err,
            "PostgreSQL is not reachable yet; retrying"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(PgConfig::MAX_RETRY_DELAY);
    }
}

/// Failures that may pass by themselves: the server is down, starting, or full.
fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(e) => {
            // cannot_connect_now (starting up or shutting down), too_many_connections,
            // admin_shutdown, crash_shutdown.
            matches!(e.code().as_deref(), Some("57P03" | "53300" | "57P01" | "57P02"))
        }
        _ => false,
    }
}

/// A duration as a PostgreSQL setting in milliseconds (`0` disables the limit).
fn duration_setting(limit: Duration) -> String {
    limit.as_millis().to_string()
}

/// `url` with the password of its user info, and of a `password=` parameter, replaced by
/// `***`.
fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end =
            out[authority_start..].find(['/', '?', '#']).map_or(out.len(), |i| authority_start + i);
        if let Some(at) = out[authority_start..authority_end].rfind('@') {
            let user_info = authority_start..authority_start + at;
            if let Some(colon) = out[user_info.clone()].find(':') {
                out.replace_range(user_info.start + colon + 1..user_info.end, "***");
            }
        }
    }
    if let Some(query_start) = out.find('?') {
        let (head, query) = out.split_at(query_start + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", redacted.join("&"));
    }
    out
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
    queue_enabled: Option<bool>,
    queue_admit_rate_per_second: Option<i64>,
    queue_token_ttl_seconds: Option<i64>,
    queue_max_length: Option<i64>,
    queue_proof_of_work_bits: Option<i64>,
    static_tickets_allowed: Option<bool>,
    orphan_rule: Option<bool>,
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
            static_tickets_allowed: self.static_tickets_allowed.unwrap_or(true),
            orphan_rule: self.orphan_rule.unwrap_or(true),
        })
    }
}

/// An event's queue settings from its `event_settings` columns (the defaults without a row).
fn queue_settings(
    enabled: Option<bool>,
    admit_rate_per_second: Option<i64>,
    token_ttl_seconds: Option<i64>,
    max_length: Option<i64>,
    proof_of_work_bits: Option<i64>,
) -> Result<QueueSettings> {
    let (Some(enabled), Some(rate), Some(ttl), Some(max_length), Some(bits)) =
        (enabled, admit_rate_per_second, token_ttl_seconds, max_length, proof_of_work_bits)
    else {
        return Ok(QueueSettings::default());
    };
    let bad = |what: &str, value: i64| corrupt(format!("queue {what} {value}"));
    Ok(QueueSettings {
        enabled,
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

// --- writes shared by several operations ---

/// Takes the next value of a feed's counter inside the caller's transaction, locking the
/// counter row until that transaction ends (see the module documentation). Call it as the
/// transaction's last statement but one, so that the lock is held for the commit only.
async fn next_seq(conn: &mut PgConnection, counter: &str) -> Result<i64> {
    let seq: Option<i64> =
        sqlx::query_scalar("UPDATE seq_counters SET value = value + 1 WHERE name = $1 RETURNING value")
            .bind(counter)
            .fetch_optional(&mut *conn)
            .await?;
    seq.ok_or_else(|| corrupt(format!("the counter {counter:?} is missing")))
}

/// Appends an outbox row inside the caller's transaction.
async fn insert_outbox(
    conn: &mut PgConnection,
    topic: &str,
    key: &str,
    payload: &serde_json::Value,
    now: i64,
) -> Result<()> {
    let seq = next_seq(conn, OUTBOX_COUNTER).await?;
    sqlx::query("INSERT INTO outbox (seq, topic, key, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(seq)
        .bind(topic)
        .bind(key)
        .bind(payload.to_string())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Appends audit records inside the caller's transaction, giving each event's records its
/// next sequence numbers in the order given. Each event's head row in `audit_heads` is
/// bumped and so locked until the transaction ends (see the migration); the heads are
/// locked in event id order, so two transactions that append to the same events never
/// wait on each other in a circle.
async fn insert_audit(conn: &mut PgConnection, records: &[NewAuditRecord]) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut counts: Vec<(EventId, i64)> = Vec::new();
    for record in records {
        match counts.iter_mut().find(|(event, _)| *event == record.event) {
            Some((_, n)) => *n += 1,
            None => counts.push((record.event, 1)),
        }
    }
    counts.sort_by_key(|(event, _)| *event);
    let mut next: HashMap<EventId, i64> = HashMap::with_capacity(counts.len());
    for (event, n) in counts {
        let last: i64 = sqlx::query_scalar(
            "INSERT INTO audit_heads (event_id, seq) VALUES ($1, $2) \
             ON CONFLICT (event_id) DO UPDATE SET seq = audit_heads.seq + excluded.seq RETURNING seq",
        )
        .bind(to_db(event.0, "event id")?)
        .bind(n)
        .fetch_one(&mut *conn)
        .await?;
        next.insert(event, last - n + 1);
    }
    let mut columns = AuditColumns::default();
    for record in records {
        let seq = next.get_mut(&record.event).expect("every event counted");
        columns.event_id.push(to_db(record.event.0, "event id")?);
        columns.seq.push(*seq);
        *seq += 1;
        columns.kind.push(record.kind.as_str());
        columns.at.push(saturating_db(record.at));
        columns.seat.push(i64::from(record.seat));
        columns.hold_id.push(record.hold.map(|h| h.to_string()));
        columns.order_id.push(record.order.as_ref().map(|o| o.as_str()));
        columns.user_id.push(record.user.as_str());
        columns.reason.push(record.reason.as_deref());
    }
    // One statement for any number of rows: each column travels as one array.
    sqlx::query(
        "INSERT INTO audit (event_id, seq, type, at, seat, hold_id, order_id, user_id, reason) \
         SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[], \
         $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[])",
    )
    .bind(&columns.event_id)
    .bind(&columns.seq)
    .bind(&columns.kind)
    .bind(&columns.at)
    .bind(&columns.seat)
    .bind(&columns.hold_id)
    .bind(&columns.order_id)
    .bind(&columns.user_id)
    .bind(&columns.reason)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Audit records to insert, column by column.
#[derive(Default)]
struct AuditColumns<'a> {
    event_id: Vec<i64>,
    seq: Vec<i64>,
    kind: Vec<&'static str>,
    at: Vec<i64>,
    seat: Vec<i64>,
    hold_id: Vec<Option<String>>,
    order_id: Vec<Option<&'a str>>,
    user_id: Vec<&'a str>,
    reason: Vec<Option<&'a str>>,
}

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
        let order = self.order_id.as_deref().map(parse_order_id).transpose()?;
        Ok(AuditRecord {
            seq: from_db(self.seq, "audit seq")?,
            record: NewAuditRecord {
                event: EventId(from_db(self.event_id, "event id")?),
                kind,
                at: from_db(self.at, "audit time")?,
                seat: seat_index(self.seat)?,
                hold,
                order,
                user: parse_user(&self.user_id)?,
                reason: self.reason,
            },
        })
    }
}

/// Inserts an event (its venue's map is copied inside the database: megabytes that need
/// not travel through Rust), its performers and its catalog change row; returns its id.
/// `NotFound` for an unknown venue or performer.
async fn insert_event(conn: &mut PgConnection, event: &NewEvent, now: i64) -> Result<i64> {
    let venue_id = lookup_id(event.venue_id)?;
    let performer_ids = event.performer_ids.iter().map(|&id| lookup_id(id)).collect::<Result<Vec<_>>>()?;
    // A performer named twice is listed once, at their first place.
    let performer_ids = dedup(&performer_ids);
    let prices = serde_json::to_string(&event.prices).expect("prices serialize");
    if !performer_ids.is_empty() {
        let known: i64 = sqlx::query_scalar("SELECT count(*) FROM performers WHERE id = ANY($1)")
            .bind(&performer_ids)
            .fetch_one(&mut *conn)
            .await?;
        if usize::try_from(known).ok() != Some(performer_ids.len()) {
            return Err(StoreError::NotFound);
        }
    }
    let event_id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO events (name, venue_id, category, category_folded, starts_at, \
         onsale_at, status, prices, description, seat_count, created_at, updated_at, \
         seat_map) \
         SELECT $1, id, $2, $3, $4, $5, 'published', $6, $7, seat_count, $8, $9, seat_map \
         FROM venues WHERE id = $10 RETURNING id",
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
    .fetch_optional(&mut *conn)
    .await?;
    let event_id = event_id.ok_or(StoreError::NotFound)?;
    if !performer_ids.is_empty() {
        let positions: Vec<i64> = (0..performer_ids.len())
            .map(|p| i64::try_from(p).expect("a performer list fits in memory"))
            .collect();
        sqlx::query(
            "INSERT INTO event_performers (event_id, performer_id, position) \
             SELECT $1, performer, pos FROM UNNEST($2::BIGINT[], $3::BIGINT[]) AS p (performer, pos)",
        )
        .bind(event_id)
        .bind(&performer_ids)
        .bind(&positions)
        .execute(&mut *conn)
        .await?;
    }
    insert_catalog_change(conn, "event", event_id, now).await?;
    Ok(event_id)
}

/// Adds a row to the catalog's change feed, in the caller's transaction.
async fn insert_catalog_change(conn: &mut PgConnection, entity: &str, id: i64, now: i64) -> Result<()> {
    let seq = next_seq(conn, CATALOG_COUNTER).await?;
    sqlx::query("INSERT INTO catalog_changes (seq, entity, entity_id, changed_at) VALUES ($1, $2, $3, $4)")
        .bind(seq)
        .bind(entity)
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn load_event(conn: &mut PgConnection, id: i64) -> Result<Event> {
    let row: EventRow = sqlx::query_as(concat!(event_select!(), " WHERE e.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    let mut events = events_with_performers(conn, vec![row]).await?;
    Ok(events.pop().expect("one row in, one event out"))
}

/// Completes event rows with their performers, in one query for the whole list.
async fn events_with_performers(conn: &mut PgConnection, rows: Vec<EventRow>) -> Result<Vec<Event>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    let found: Vec<(i64, i64, String, Option<String>)> = sqlx::query_as(
        "SELECT ep.event_id, p.id, p.name, p.genre FROM event_performers ep \
         JOIN performers p ON p.id = ep.performer_id WHERE ep.event_id = ANY($1) \
         ORDER BY ep.event_id, ep.position",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
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
async fn orders_with_tickets(conn: &mut PgConnection, rows: Vec<OrderRow>) -> Result<Vec<Order>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
    let events: Vec<i64> = dedup(&rows.iter().map(|row| row.event_id).collect::<Vec<_>>());
    // The events narrow the search to their partitions.
    let found: Vec<TicketRow> =
        sqlx::query_as(concat!(ticket_select!(), " WHERE event_id = ANY($1) AND order_id = ANY($2)"))
            .bind(&events)
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
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

// --- cursors (the same text as the SQLite backend's, so a cursor means one thing) ---

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
        StoreError::Database(sqlx::Error::Encode(format!("{what} {value} exceeds BIGINT's range").into()))
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

/// The form of a city or category that filters compare: folded in Rust, exactly as the
/// SQLite backend does, so that both backends match the same things.
fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// The distinct values, in order of first appearance.
fn dedup(values: &[i64]) -> Vec<i64> {
    let mut seen = HashSet::new();
    values.iter().copied().filter(|v| seen.insert(*v)).collect()
}

/// A unique violation of the named constraint.
fn violates(err: &sqlx::Error, constraint: &str) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation() && e.constraint() == Some(constraint))
}

/// A unique violation of `tickets_one_valid_per_seat`. PostgreSQL names the index of the
/// partition that refused the row, `tickets_pN_one_valid_per_seat` (named so by the
/// migration), not the parent's.
fn violates_seat_index(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e)
        if e.is_unique_violation() && e.constraint().is_some_and(|c| c.ends_with("one_valid_per_seat")))
}

fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_foreign_key_violation())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_in_a_redacted_url() {
        let redact = |url: &str| PgConfig::new(url).redacted_url();
        assert_eq!(redact("postgres://bo:s3cret@db:5432/boxoffice"), "postgres://bo:***@db:5432/boxoffice");
        assert_eq!(
            redact("postgres://bo:p%40ss@db/x?sslmode=require"),
            "postgres://bo:***@db/x?sslmode=require"
        );
        assert_eq!(redact("postgres://bo@db/x"), "postgres://bo@db/x", "no password, nothing to hide");
        assert_eq!(redact("postgres://db/x?user=bo&password=s3cret"), "postgres://db/x?user=bo&password=***");
        assert_eq!(redact("postgres://a:b:c@db/x"), "postgres://a:***@db/x");
        let debug = format!("{:?}", PgConfig::new("postgres://bo:s3cret@db/x"));
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn limits_are_sent_in_milliseconds() {
        assert_eq!(duration_setting(Duration::from_secs(30)), "30000");
        assert_eq!(duration_setting(Duration::ZERO), "0");
    }
}

// --- transfers and revocations ---

/// Records the revocation of `tickets` under the sequence numbers of the audit records
/// just appended for them: call it right after `insert_audit` wrote exactly one record
/// per ticket of `event`, in the same order, in the same transaction.
async fn insert_revocations(
    conn: &mut PgConnection,
    event: EventId,
    tickets: &[&Ticket],
    reason: crate::RevocationReason,
    now: i64,
) -> Result<()> {
    if tickets.is_empty() {
        return Ok(());
    }
    let event_id = to_db(event.0, "event id")?;
    let head: i64 = sqlx::query_scalar("SELECT seq FROM audit_heads WHERE event_id = $1")
        .bind(event_id)
        .fetch_one(&mut *conn)
        .await?;
    let first = head - tickets.len() as i64 + 1;
    for (seq, ticket) in (first..).zip(tickets) {
        sqlx::query(
            "INSERT INTO ticket_revocations (event_id, seq, ticket_id, revision, reason, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
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
