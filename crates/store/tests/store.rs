//! The behaviour every [`Store`] backend owes its callers, written against the trait.
//!
//! Each test body takes a [`Harness`]: the store under test plus the few things the trait
//! cannot do (changing a ticket's status behind the store's back, reopening the same
//! database). `on_every_backend!(body)` at the end of each section runs a body on every
//! backend, as the tests `body::sqlite` and `body::postgres`; a few tests of one backend's
//! own promises follow them.
//!
//! PostgreSQL tests need a server: `postgres://postgres@127.0.0.1:5432` (trust auth), or
//! the server named by `BOXOFFICE_TEST_POSTGRES` (a URL without the database). Each test
//! creates its own database `bo_t_<random>` and drops it when its harness is dropped, so
//! the tests run in parallel.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use boxoffice_core::{
    Currency, EventId, HoldId, Money, OrderId, SeatMap, SectionSpec, TicketId, UnixMs, UserId,
};
use boxoffice_store::{
    AttemptState, AttemptUpdate, AuditType, Event, EventFilter, EventStatus, KeyClaim, KeyScope,
    NewAuditRecord, NewEvent, NewOrder, NewPaymentAttempt, NewTicket, NewVenue, Order, OrderStatus,
    Performer, PgConfig, PgStore, RefundRequest, RefundState, ScanOutcome, SoldSeat, SqliteStore, Store,
    StoreError, TOPIC_ORDER_CREATED, TOPIC_ORDER_REFUNDED, TicketStatus, Venue,
};
use boxoffice_store::{
    EventUpdate, Revocation, RevocationReason, TOPIC_TICKET_SCANNED, TOPIC_TICKET_TRANSFERRED, TicketTransfer,
};
use sqlx::Connection;
use tempfile::TempDir;

// --- harness ---

/// A store under test and the backend-specific operations the tests need.
trait Harness: Sized {
    fn store(&self) -> &dyn Store;
    /// The same store, shareable with spawned tasks.
    fn shared(&self) -> Arc<dyn Store>;
    /// Sets a ticket's status directly, as refunds and scans (not yet in the trait) will.
    async fn set_ticket_status(&self, ticket: &TicketId, status: &str);
    /// Closes the store and opens the same database again.
    async fn reopen(self) -> Self;
}

struct SqliteHarness {
    // Kept so that the directory (and the database in it) lives as long as the test.
    _dir: TempDir,
    path: PathBuf,
    store: Arc<SqliteStore>,
}

async fn sqlite() -> SqliteHarness {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("boxoffice.db");
    let store = Arc::new(SqliteStore::open(&path).await.expect("open a fresh database"));
    SqliteHarness { _dir: dir, path, store }
}

impl Harness for SqliteHarness {
    fn store(&self) -> &dyn Store {
        &*self.store
    }

    fn shared(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn set_ticket_status(&self, ticket: &TicketId, status: &str) {
        let done = sqlx::query("UPDATE tickets SET status = ? WHERE id = ?")
            .bind(status)
            .bind(ticket.as_str())
            .execute(self.store.pool())
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1, "ticket {ticket} exists");
    }

    async fn reopen(self) -> Self {
        self.store.close().await;
        let store = Arc::new(SqliteStore::open(&self.path).await.expect("reopen"));
        SqliteHarness { store, ..self }
    }
}

/// The PostgreSQL server the tests use, as a URL without the database.
fn postgres_server() -> String {
    std::env::var("BOXOFFICE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A database of one test, dropped (best effort) when this is dropped, even while
/// connections to it are open or the test is panicking.
struct TestDatabase(String);

impl Drop for TestDatabase {
    fn drop(&mut self) {
        drop_postgres_database(&self.0);
    }
}

/// Creates a database of its own for one test.
async fn fresh_postgres_database() -> TestDatabase {
    let database = format!("bo_t_{:032x}", rand_id());
    let server = postgres_server();
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("the tests need PostgreSQL at {server}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {database}")).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    TestDatabase(database)
}

/// Settings for a test database: a small pool, since tests run in parallel on one server.
fn postgres_config(database: &str) -> PgConfig {
    PgConfig { max_connections: 8, ..PgConfig::new(format!("{}/{database}", postgres_server())) }
}

/// Drops a test database (best effort), even while connections to it are open.
fn drop_postgres_database(database: &str) {
    let sql = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
    let admin = format!("{}/postgres", postgres_server());
    // On a thread of its own with its own runtime: this runs in `Drop`, maybe during a
    // panic, where the test's runtime cannot be awaited.
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&admin).await?;
            sqlx::query(&sql).execute(&mut conn).await?;
            conn.close().await
        })?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })
    .join();
    if let Ok(Err(e)) = dropped {
        eprintln!("could not drop test database {database}: {e}");
    }
}

struct PgHarness {
    config: PgConfig,
    store: Arc<PgStore>,
    // Last, so that it is dropped after the store.
    _database: TestDatabase,
}

async fn postgres() -> PgHarness {
    let database = fresh_postgres_database().await;
    let config = postgres_config(&database.0);
    let store = Arc::new(PgStore::open(&config).await.expect("open a fresh database"));
    PgHarness { config, store, _database: database }
}

impl Harness for PgHarness {
    fn store(&self) -> &dyn Store {
        &*self.store
    }

    fn shared(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn set_ticket_status(&self, ticket: &TicketId, status: &str) {
        let done = sqlx::query("UPDATE tickets SET status = $1 WHERE id = $2")
            .bind(status)
            .bind(ticket.as_str())
            .execute(self.store.pool())
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1, "ticket {ticket} exists");
    }

    async fn reopen(mut self) -> Self {
        self.store.close().await;
        self.store = Arc::new(PgStore::open(&self.config).await.expect("reopen"));
        self
    }
}

/// Runs a test body on every backend, as the tests `body::sqlite` and `body::postgres`.
/// `by_value` for bodies that take the harness itself (to reopen it).
macro_rules! on_every_backend {
    ($body:ident) => {
        on_every_backend!(@tests $body, &);
    };
    ($body:ident, by_value) => {
        on_every_backend!(@tests $body,);
    };
    (@tests $body:ident, $($by_ref:tt)?) => {
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$body($($by_ref)? super::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$body($($by_ref)? super::postgres().await).await;
            }
        }
    };
}

// --- fixtures ---

const T0: UnixMs = 1_700_000_000_000;
const HOUR: UnixMs = 3_600_000;

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

/// 10 premium seats (section A) then 18 standard ones (section B).
fn small_map() -> Arc<SeatMap> {
    let section = |name: &str, rows, seats_per_row, tier: &str| SectionSpec {
        name: name.into(),
        rows,
        seats_per_row,
        tier: Some(tier.into()),
    };
    Arc::new(
        SeatMap::from_sections(
            vec!["premium".into(), "standard".into()],
            &[section("A", 2, 5, "premium"), section("B", 3, 6, "standard")],
        )
        .unwrap(),
    )
}

/// 60,000 seats in 30 sections: the size the store must handle without trouble.
fn big_map() -> Arc<SeatMap> {
    let sections: Vec<SectionSpec> = (0..30)
        .map(|i| SectionSpec { name: format!("S{i}"), rows: 40, seats_per_row: 50, tier: None })
        .collect();
    Arc::new(SeatMap::from_sections(SeatMap::default_tiers(), &sections).unwrap())
}

fn new_venue(name: &str, city: &str, map: Arc<SeatMap>) -> NewVenue {
    NewVenue {
        name: name.into(),
        city: city.into(),
        lat: 48.8566,
        lon: 2.3522,
        address: Some("1 Rue de la Paix".into()),
        map,
    }
}

fn new_event(venue: &Venue, category: &str, starts_at: UnixMs) -> NewEvent {
    NewEvent {
        name: format!("{category} at {}", venue.name),
        venue_id: venue.id,
        performer_ids: Vec::new(),
        category: category.into(),
        starts_at,
        onsale_at: starts_at - 30 * 24 * HOUR,
        prices: venue.tiers.iter().map(|t| (t.clone(), usd(5_000))).collect(),
        description: Some("An evening to remember".into()),
    }
}

/// A venue with the small map and one event in it.
async fn venue_and_event(store: &dyn Store) -> (Arc<SeatMap>, Event) {
    let map = small_map();
    let venue = store.create_venue(new_venue("Olympia", "Paris", map.clone())).await.unwrap();
    let event = store.create_event(new_event(&venue, "concert", T0)).await.unwrap();
    (map, event)
}

/// An order of `seats`, on a fresh hold, created at `created_at`.
fn new_order(event: &Event, map: &SeatMap, user: &UserId, seats: &[u32], created_at: UnixMs) -> NewOrder {
    let tickets: Vec<NewTicket> = seats
        .iter()
        .map(|&seat| NewTicket {
            id: TicketId::random(),
            seat_index: seat,
            seat_label: map.label(seat),
            price: usd(5_000),
            qr_payload: Some(format!("qr-of-seat-{seat}")),
        })
        .collect();
    NewOrder {
        id: OrderId::random(),
        event: event.id,
        user: user.clone(),
        hold: HoldId::random(event.id),
        payment_attempt: None,
        email: Some("buyer@example.com".into()),
        total: Money::sum(tickets.iter().map(|t| t.price)).unwrap(),
        tickets,
        created_at,
    }
}

fn sold(seat_index: u32, user: &UserId) -> SoldSeat {
    SoldSeat { seat_index, user: user.clone() }
}

/// Every page of events matching `filter`, following the cursors.
async fn all_pages(store: &dyn Store, filter: &EventFilter, limit: u32) -> Vec<Vec<Event>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list_events(filter, limit, cursor.as_deref()).await.unwrap();
        assert!(page.items.len() <= limit as usize);
        pages.push(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 1_000, "pagination must end");
    }
}

fn ids(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.id.0).collect()
}

// --- catalog ---

async fn venues_and_events_read_back_as_created(h: &impl Harness) {
    let store = h.store();
    let map = small_map();
    let venue = store.create_venue(new_venue("Olympia", "Paris", map.clone())).await.unwrap();
    assert_eq!(venue.seat_count, 28);
    assert_eq!(venue.tiers, ["premium", "standard"]);
    assert_eq!(store.venue(venue.id).await.unwrap(), venue);
    assert_eq!(*store.venue_seat_map(venue.id).await.unwrap(), *map);

    let singer = store.create_performer("Edith", Some("chanson")).await.unwrap();
    let band = store.create_performer("The Band", None).await.unwrap();
    let mut spec = new_event(&venue, "concert", T0);
    spec.performer_ids = vec![band.id, singer.id, band.id];
    let event = store.create_event(spec.clone()).await.unwrap();

    assert_eq!(event.name, spec.name);
    assert_eq!(event.venue, venue);
    assert_eq!(event.performers, [band.clone(), singer.clone()], "in order, each once");
    assert_eq!(event.status, EventStatus::Published);
    assert_eq!((event.starts_at, event.onsale_at), (spec.starts_at, spec.onsale_at));
    assert_eq!(event.prices, spec.prices);
    assert_eq!(event.description, spec.description);
    assert_eq!(event.seat_count, 28);
    assert_eq!(event.created_at, event.updated_at);
    assert_eq!(store.event(event.id).await.unwrap(), event);
    assert_eq!(*store.event_seat_map(event.id).await.unwrap(), *map, "the venue's map, copied");
    assert_eq!(store.all_event_ids().await.unwrap(), [event.id]);
}

async fn unknown_catalog_ids_are_not_found(h: &impl Harness) {
    let store = h.store();
    let (_, event) = venue_and_event(store).await;
    let singer = store.create_performer("Edith", None).await.unwrap();
    let missing = 9_999;

    assert!(matches!(store.venue(missing).await, Err(StoreError::NotFound)));
    assert!(matches!(store.venue(u64::MAX).await, Err(StoreError::NotFound)));
    assert!(matches!(store.venue_seat_map(missing).await, Err(StoreError::NotFound)));
    assert!(matches!(store.event(EventId(missing)).await, Err(StoreError::NotFound)));
    assert!(matches!(store.event_seat_map(EventId(missing)).await, Err(StoreError::NotFound)));
    assert!(matches!(store.performers(&[singer.id, missing]).await, Err(StoreError::NotFound)));
    assert_eq!(store.performers(&[]).await.unwrap(), Vec::<Performer>::new());
    assert_eq!(store.performers(&[singer.id]).await.unwrap(), std::slice::from_ref(&singer));

    let mut spec = new_event(&event.venue, "concert", T0);
    spec.performer_ids = vec![singer.id, missing];
    assert!(matches!(store.create_event(spec.clone()).await, Err(StoreError::NotFound)));
    spec.performer_ids.clear();
    spec.venue_id = missing;
    assert!(matches!(store.create_event(spec).await, Err(StoreError::NotFound)));
    assert_eq!(store.all_event_ids().await.unwrap(), [event.id], "nothing half-created");
}

async fn list_events_filters_by_city_category_and_time(h: &impl Harness) {
    let store = h.store();
    let map = small_map();
    let paris = store.create_venue(new_venue("Olympia", "Paris", map.clone())).await.unwrap();
    let munich = store.create_venue(new_venue("Halle", "München", map.clone())).await.unwrap();
    let concert = store.create_event(new_event(&paris, "Concert", T0)).await.unwrap();
    let match_ = store.create_event(new_event(&paris, "sport", T0 + HOUR)).await.unwrap();
    let opera = store.create_event(new_event(&munich, "opera", T0 + 2 * HOUR)).await.unwrap();
    let late = store.create_event(new_event(&munich, "CONCERT", T0 + 3 * HOUR)).await.unwrap();

    let list = |filter: EventFilter| async move {
        let page = store.list_events(&filter, 100, None).await.unwrap();
        assert!(page.next_cursor.is_none());
        ids(&page.items)
    };
    let by_city = |city: &str| EventFilter { city: Some(city.into()), ..Default::default() };
    let by_category = |category: &str| EventFilter { category: Some(category.into()), ..Default::default() };

    let all = vec![concert.id.0, match_.id.0, opera.id.0, late.id.0];
    assert_eq!(list(EventFilter::default()).await, all, "ordered by start");
    assert_eq!(list(by_city("paris")).await, [concert.id.0, match_.id.0]);
    assert_eq!(list(by_city("PARIS")).await, [concert.id.0, match_.id.0]);
    assert_eq!(list(by_city("MÜNCHEN")).await, [opera.id.0, late.id.0], "beyond ASCII");
    assert_eq!(list(by_city("Pari")).await, Vec::<u64>::new(), "exact, not a prefix");
    assert_eq!(list(by_category("concert")).await, [concert.id.0, late.id.0]);
    let from = EventFilter { from: Some(T0 + HOUR), ..Default::default() };
    assert_eq!(list(from).await, [match_.id.0, opera.id.0, late.id.0], "from is inclusive");
    let to = EventFilter { to: Some(T0 + 2 * HOUR), ..Default::default() };
    assert_eq!(list(to).await, [concert.id.0, match_.id.0], "to is exclusive");
    let all_of_them = EventFilter {
        city: Some("münchen".into()),
        category: Some("Concert".into()),
        from: Some(T0),
        to: Some(u64::MAX),
    };
    assert_eq!(list(all_of_them).await, [late.id.0]);
    // The listed events are whole, like `event()`'s.
    let page = store.list_events(&by_city("paris"), 1, None).await.unwrap();
    assert_eq!(page.items, [concert]);
}

async fn list_events_pages_through_everything_once(h: &impl Harness) {
    let store = h.store();
    let map = small_map();
    let paris = store.create_venue(new_venue("Olympia", "Paris", map.clone())).await.unwrap();
    let lyon = store.create_venue(new_venue("Halle", "Lyon", map)).await.unwrap();
    // Starts repeat, so that ties on `starts_at` must be broken by id; creation order is
    // not start order.
    let mut expected = Vec::new();
    for i in 0..23u64 {
        let venue = if i % 3 == 0 { &lyon } else { &paris };
        let event = store.create_event(new_event(venue, "concert", T0 + (i * 7 % 5) * HOUR)).await;
        let event = event.unwrap();
        expected.push((event.starts_at, event.id.0, venue.city.clone()));
    }
    expected.sort();
    let everything: Vec<u64> = expected.iter().map(|e| e.1).collect();

    for limit in [1, 5, 23, 100] {
        let pages = all_pages(store, &EventFilter::default(), limit).await;
        let listed: Vec<u64> = pages.iter().flat_map(|p| ids(p)).collect();
        assert_eq!(listed, everything, "limit {limit}: no gap, no duplicate, in order");
        assert_eq!(pages.len(), 23usize.div_ceil(limit as usize).max(1), "limit {limit}");
    }
    // 15 Paris events: exactly three pages of 5, the last one without a cursor.
    let paris_only = EventFilter { city: Some("paris".into()), ..Default::default() };
    let pages = all_pages(store, &paris_only, 5).await;
    let listed: Vec<u64> = pages.iter().flat_map(|p| ids(p)).collect();
    let expected_paris: Vec<u64> = expected.iter().filter(|e| e.2 == "Paris").map(|e| e.1).collect();
    assert_eq!(expected_paris.len(), 15);
    assert_eq!(listed, expected_paris);
    assert_eq!(pages.len(), 3);

    for bad in ["", "x", "1", "1:", ":1", "+1:2", "1:-2", "1:2:3", "a:b", "99999999999999999999:1"] {
        assert!(
            matches!(
                store.list_events(&EventFilter::default(), 5, Some(bad)).await,
                Err(StoreError::BadCursor)
            ),
            "{bad:?}"
        );
    }
}

on_every_backend!(venues_and_events_read_back_as_created);

on_every_backend!(unknown_catalog_ids_are_not_found);

on_every_backend!(list_events_filters_by_city_category_and_time);

on_every_backend!(list_events_pages_through_everything_once);

// --- event changes (PATCH /v1/events/{id}) ---

async fn a_new_event_has_the_default_queue_settings(h: &impl Harness) {
    let (_, event) = venue_and_event(h.store()).await;
    let defaults = boxoffice_store::QueueSettings::default();
    assert_eq!(event.queue, defaults);
    assert_eq!(
        (defaults.enabled, defaults.admit_rate_per_second, defaults.token_ttl_seconds),
        (false, 100, 600),
        "the API's defaults"
    );
    assert_eq!((defaults.max_length, defaults.proof_of_work_bits), (10_000_000, 0));
    assert_eq!(h.store().event(event.id).await.unwrap().queue, defaults);
}

async fn an_event_update_changes_only_what_it_names(h: &impl Harness) {
    use boxoffice_store::{EventUpdate, QueueUpdate};
    let store = h.store();
    let (_, event) = venue_and_event(store).await;

    let queue_on = EventUpdate {
        queue: QueueUpdate {
            enabled: Some(true),
            admit_rate_per_second: Some(250),
            ..QueueUpdate::default()
        },
        ..EventUpdate::default()
    };
    let first = store.update_event(event.id, queue_on).await.unwrap();
    assert!(first.queue.enabled);
    assert_eq!(first.queue.admit_rate_per_second, 250);
    assert_eq!(first.queue.token_ttl_seconds, 600, "not named: kept");
    assert_eq!(first.queue.max_length, 10_000_000, "not named: kept");
    assert_eq!(
        (first.status, first.onsale_at, first.starts_at),
        (event.status, event.onsale_at, event.starts_at)
    );
    assert!(first.updated_at > event.updated_at, "every change moves updated_at (the ETag)");
    assert_eq!(store.event(event.id).await.unwrap(), first, "reads back as returned");

    let later = EventUpdate {
        status: Some(EventStatus::Cancelled),
        onsale_at: Some(T0 - HOUR),
        queue: QueueUpdate { proof_of_work_bits: Some(12), ..QueueUpdate::default() },
        ..EventUpdate::default()
    };
    let second = store.update_event(event.id, later).await.unwrap();
    assert_eq!(second.status, EventStatus::Cancelled);
    assert_eq!((second.onsale_at, second.starts_at), (T0 - HOUR, T0));
    assert_eq!(second.queue.proof_of_work_bits, 12);
    assert!(second.queue.enabled, "set by the first change, kept by the second");
    assert_eq!(second.queue.admit_rate_per_second, 250);
    assert!(second.updated_at > first.updated_at);
    assert_eq!(second.name, event.name);
    assert_eq!(second.prices, event.prices);

    let unchanged = store.update_event(event.id, EventUpdate::default()).await.unwrap();
    assert_eq!(unchanged.queue, second.queue);
    assert_eq!(unchanged.status, second.status);

    let listed = store.list_events(&EventFilter::default(), 10, None).await.unwrap();
    assert_eq!(listed.items[0].queue, second.queue, "lists carry the settings too");
}

async fn an_event_update_that_breaks_a_rule_changes_nothing(h: &impl Harness) {
    use boxoffice_store::{EventUpdate, QueueUpdate};
    let store = h.store();
    let (_, event) = venue_and_event(store).await;
    let after_start = EventUpdate {
        onsale_at: Some(T0 + HOUR),
        queue: QueueUpdate { enabled: Some(true), ..QueueUpdate::default() },
        ..EventUpdate::default()
    };
    assert!(matches!(store.update_event(event.id, after_start).await, Err(StoreError::Invalid(_))));
    let start_before_onsale = EventUpdate { starts_at: Some(event.onsale_at - 1), ..EventUpdate::default() };
    assert!(matches!(store.update_event(event.id, start_before_onsale).await, Err(StoreError::Invalid(_))));
    assert_eq!(store.event(event.id).await.unwrap(), event, "nothing half-applied");

    let both =
        EventUpdate { onsale_at: Some(T0 + HOUR), starts_at: Some(T0 + 2 * HOUR), ..EventUpdate::default() };
    let moved = store.update_event(event.id, both).await.unwrap();
    assert_eq!((moved.onsale_at, moved.starts_at), (T0 + HOUR, T0 + 2 * HOUR), "checked together");

    assert!(matches!(
        store.update_event(EventId(9_999), EventUpdate::default()).await,
        Err(StoreError::NotFound)
    ));
}

async fn event_updates_survive_a_reopen<H: Harness>(h: H) {
    use boxoffice_store::{EventUpdate, QueueUpdate};
    let (_, event) = venue_and_event(h.store()).await;
    let update = EventUpdate {
        queue: QueueUpdate {
            enabled: Some(true),
            admit_rate_per_second: Some(7),
            token_ttl_seconds: Some(60),
            max_length: Some(1_000),
            proof_of_work_bits: Some(32),
        },
        ..EventUpdate::default()
    };
    let updated = h.store().update_event(event.id, update).await.unwrap();
    let h = h.reopen().await;
    assert_eq!(h.store().event(event.id).await.unwrap(), updated);
}

on_every_backend!(a_new_event_has_the_default_queue_settings);

on_every_backend!(an_event_update_changes_only_what_it_names);

on_every_backend!(an_event_update_that_breaks_a_rule_changes_nothing);

on_every_backend!(event_updates_survive_a_reopen, by_value);

// --- orders ---

async fn orders_read_back_as_created(h: &impl Harness) {
    let store = h.store();
    let (map, event) = venue_and_event(store).await;
    let alice = user("alice");
    // Seats given out of order: tickets are listed by seat.
    let spec = new_order(&event, &map, &alice, &[12, 3, 7], T0);
    let order = store.create_order(spec.clone()).await.unwrap();

    assert_eq!(order.id, spec.id);
    assert_eq!((order.event, &order.user, order.hold), (event.id, &alice, spec.hold));
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!((order.email.as_deref(), order.total), (Some("buyer@example.com"), usd(15_000)));
    assert_eq!(order.created_at, T0);
    let seats: Vec<u32> = order.tickets.iter().map(|t| t.seat_index).collect();
    assert_eq!(seats, [3, 7, 12]);
    for ticket in &order.tickets {
        let given = spec.tickets.iter().find(|t| t.id == ticket.id).unwrap();
        assert_eq!((ticket.seat_index, &ticket.seat_label), (given.seat_index, &given.seat_label));
        assert_eq!((ticket.order_id.clone(), ticket.event), (order.id.clone(), event.id));
        assert_eq!((ticket.price, ticket.status), (usd(5_000), TicketStatus::Valid));
    }

    assert_eq!(store.order(&order.id).await.unwrap(), order);
    assert_eq!(store.order_for_hold(&spec.hold).await.unwrap(), Some(order.clone()));
    assert_eq!(store.order_for_hold(&HoldId::random(event.id)).await.unwrap(), None);
    assert!(matches!(store.order(&OrderId::random()).await, Err(StoreError::NotFound)));
    let page = store.orders_of_user(&alice, 10, None).await.unwrap();
    assert_eq!((page.items, page.next_cursor), (vec![order.clone()], None));
    assert!(store.orders_of_user(&user("bob"), 10, None).await.unwrap().items.is_empty());
    assert_eq!(
        store.sold_seats(event.id).await.unwrap(),
        [sold(3, &alice), sold(7, &alice), sold(12, &alice)]
    );
    assert!(store.sold_seats(EventId(9_999)).await.unwrap().is_empty());

    let mut elsewhere = new_order(&event, &map, &alice, &[1], T0);
    elsewhere.event = EventId(9_999);
    let unknown_event = store.create_order(elsewhere.clone()).await;
    assert!(matches!(unknown_event, Err(StoreError::NotFound)), "{unknown_event:?}");
    assert_eq!(store.order_for_hold(&elsewhere.hold).await.unwrap(), None);
}

async fn a_hold_is_ordered_at_most_once(h: &impl Harness) {
    let store = h.store();
    let (map, event) = venue_and_event(store).await;
    let alice = user("alice");
    let first = store.create_order(new_order(&event, &map, &alice, &[1, 2], T0)).await.unwrap();

    // A retried checkout of the same hold, even with other seats and ids.
    let mut retry = new_order(&event, &map, &alice, &[5], T0 + 1);
    retry.hold = first.hold;
    match store.create_order(retry.clone()).await {
        Err(StoreError::HoldAlreadyOrdered(id)) => assert_eq!(id, first.id),
        other => panic!("expected HoldAlreadyOrdered, got {other:?}"),
    }
    assert!(matches!(store.order(&retry.id).await, Err(StoreError::NotFound)));
    assert_eq!(store.sold_seats(event.id).await.unwrap(), [sold(1, &alice), sold(2, &alice)]);
    assert_eq!(store.orders_of_user(&alice, 10, None).await.unwrap().items, [first]);
}

async fn a_sold_seat_cannot_be_sold_again(h: &impl Harness) {
    let store = h.store();
    let (map, event) = venue_and_event(store).await;
    let (alice, bob) = (user("alice"), user("bob"));
    store.create_order(new_order(&event, &map, &alice, &[1, 2], T0)).await.unwrap();

    // Seat 3 would be inserted before the conflict on seat 2 is found.
    let overlapping = new_order(&event, &map, &bob, &[3, 2, 4], T0 + 1);
    match store.create_order(overlapping.clone()).await {
        Err(StoreError::SeatAlreadySold { event: e, seat_index }) => {
            assert_eq!((e, seat_index), (event.id, 2));
        }
        other => panic!("expected SeatAlreadySold, got {other:?}"),
    }
    assert!(matches!(store.order(&overlapping.id).await, Err(StoreError::NotFound)));
    assert_eq!(store.order_for_hold(&overlapping.hold).await.unwrap(), None);
    assert!(store.orders_of_user(&bob, 10, None).await.unwrap().items.is_empty());
    assert_eq!(store.sold_seats(event.id).await.unwrap(), [sold(1, &alice), sold(2, &alice)]);

    // Nothing of the failed order holds on to seats 3 and 4, nor to its hold.
    let mut again = new_order(&event, &map, &bob, &[3, 4], T0 + 2);
    again.hold = overlapping.hold;
    store.create_order(again).await.unwrap();
    let seats: Vec<u32> = store.sold_seats(event.id).await.unwrap().iter().map(|s| s.seat_index).collect();
    assert_eq!(seats, [1, 2, 3, 4]);

    // The same seat in another event is another seat.
    let other = store.create_event(new_event(&event.venue, "concert", T0 + HOUR)).await.unwrap();
    store.create_order(new_order(&other, &map, &bob, &[1, 2], T0 + 3)).await.unwrap();
}

async fn a_voided_ticket_frees_its_seat(h: &impl Harness) {
    let store = h.store();
    let (map, event) = venue_and_event(store).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let first = store.create_order(new_order(&event, &map, &alice, &[4], T0)).await.unwrap();

    h.set_ticket_status(&first.tickets[0].id, "voided").await;
    assert!(store.sold_seats(event.id).await.unwrap().is_empty());
    let second = store.create_order(new_order(&event, &map, &bob, &[4], T0 + 1)).await.unwrap();
    assert_eq!(store.sold_seats(event.id).await.unwrap(), [sold(4, &bob)]);
    let voided = store.order(&first.id).await.unwrap();
    assert_eq!(voided.tickets[0].status, TicketStatus::Voided);

    // A scanned ticket still holds its seat.
    h.set_ticket_status(&second.tickets[0].id, "scanned").await;
    assert_eq!(store.sold_seats(event.id).await.unwrap(), [sold(4, &bob)]);
    let third = store.create_order(new_order(&event, &map, &alice, &[4], T0 + 2)).await;
    assert!(matches!(third, Err(StoreError::SeatAlreadySold { seat_index: 4, .. })));
    assert_eq!(store.order(&second.id).await.unwrap().tickets[0].status, TicketStatus::Scanned);
}

async fn orders_of_user_page_newest_first(h: &impl Harness) {
    let store = h.store();
    let (map, event) = venue_and_event(store).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let mut expected = Vec::new();
    for i in 0..7u32 {
        // Pairs of orders share a creation time: ties are broken by id.
        let spec = new_order(&event, &map, &alice, &[i], T0 + u64::from(i / 2));
        expected.push(store.create_order(spec).await.unwrap());
    }
    store.create_order(new_order(&event, &map, &bob, &[20], T0 + 100)).await.unwrap();
    expected.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));

    for limit in [1, 3, 7] {
        let mut listed: Vec<Order> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = store.orders_of_user(&alice, limit, cursor.as_deref()).await.unwrap();
            pages += 1;
            listed.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(listed, expected, "limit {limit}");
        assert_eq!(pages, 7usize.div_ceil(limit as usize), "limit {limit}");
    }
    for bad in ["", "12", "1:or_", "1:xx_00000000000000000000000000", "-1:or_00000000000000000000000000"] {
        let page = store.orders_of_user(&alice, 5, Some(bad)).await;
        assert!(matches!(page, Err(StoreError::BadCursor)), "{bad:?}");
    }
}

async fn concurrent_orders_sell_each_seat_once(h: &impl Harness) {
    let (map, event) = venue_and_event(h.store()).await;
    let store = h.shared();
    // Twelve buyers race for seat 0 while twelve others buy distinct seats: the writes
    // queue instead of failing as busy.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24u32 {
        let store = store.clone();
        let buyer = user(&format!("buyer{i}"));
        let seats = if i < 12 { vec![0] } else { vec![i] };
        let spec = new_order(&event, &map, &buyer, &seats, T0);
        tasks.spawn(async move { (i, store.create_order(spec).await) });
    }
    let mut winners = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            (i, Ok(_)) if i < 12 => winners += 1,
            (_, Ok(_)) => {}
            (i, Err(StoreError::SeatAlreadySold { seat_index: 0, .. })) if i < 12 => {}
            (i, Err(e)) => panic!("buyer {i}: {e}"),
        }
    }
    assert_eq!(winners, 1);
    let seats: HashSet<u32> =
        store.sold_seats(event.id).await.unwrap().iter().map(|s| s.seat_index).collect();
    assert_eq!(seats, (12..24).chain([0]).collect());
}

on_every_backend!(orders_read_back_as_created);

on_every_backend!(a_hold_is_ordered_at_most_once);

on_every_backend!(a_sold_seat_cannot_be_sold_again);

on_every_backend!(a_voided_ticket_frees_its_seat);

on_every_backend!(orders_of_user_page_newest_first);

on_every_backend!(concurrent_orders_sell_each_seat_once);

/// Two stores on one file stand for two processes: their writers contend for SQLite's
/// lock, which the busy timeout must absorb.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_stores_on_one_file_both_write() {
    let h = sqlite().await;
    let (map, event) = venue_and_event(h.store()).await;
    let other: Arc<dyn Store> = Arc::new(SqliteStore::open(&h.path).await.unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20u32 {
        let store = if i % 2 == 0 { h.shared() } else { other.clone() };
        let spec = new_order(&event, &map, &user("alice"), &[i], T0 + u64::from(i));
        tasks.spawn(async move { store.create_order(spec).await.map(|_| ()) });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap().unwrap();
    }
    assert_eq!(h.store().sold_seats(event.id).await.unwrap().len(), 20);
    assert_eq!(other.sold_seats(event.id).await.unwrap().len(), 20);
}

/// The settings the module documentation promises: an order is on disk (WAL, `fsync`ed by
/// every commit) before it is acknowledged.
#[tokio::test]
async fn sqlite_databases_are_durable_wal_files() {
    let h = sqlite().await;
    let pool = h.store.pool();
    let number = |pragma: &str| {
        let sql = format!("PRAGMA {pragma}");
        async move { sqlx::query_scalar::<_, i64>(&sql).fetch_one(pool).await.unwrap() }
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await.unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(number("synchronous").await, 2, "FULL: every commit syncs the WAL");
    assert_eq!(number("foreign_keys").await, 1);
    assert_eq!(number("busy_timeout").await, 5_000);
}

/// Concurrent writes share commits: the writer thread commits what waits in one batch,
/// and every write is readable (committed) once it is acknowledged.
#[tokio::test]
async fn sqlite_writes_are_committed_in_groups_before_they_are_acknowledged() {
    let h = sqlite().await;
    let store = h.store.clone();
    let (before, batches_before) = store.group_commit_counts();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let store = store.clone();
        tasks.spawn(async move {
            store.meta_set(&format!("k{i}"), "v").await.unwrap();
            // Acknowledged: a reader (another connection) sees it.
            assert_eq!(store.meta_get(&format!("k{i}")).await.unwrap().as_deref(), Some("v"));
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let (jobs, batches) = store.group_commit_counts();
    assert_eq!(jobs - before, 64, "one job per write");
    let batches = batches - batches_before;
    assert!((1..=64).contains(&batches), "{batches} commits for 64 writes");
}

/// A closed store refuses writes, the writer thread's included.
#[tokio::test]
async fn sqlite_a_closed_store_refuses_writes() {
    let h = sqlite().await;
    h.store.meta_set("before", "v").await.unwrap();
    h.store.close().await;
    assert!(h.store.meta_set("after", "v").await.is_err());
}

/// A write that fails inside a batch is rolled back alone: the writes committed with it
/// stand, and its caller gets its own error.
#[tokio::test]
async fn sqlite_a_failed_write_does_not_undo_its_batch() {
    let h = sqlite().await;
    let store = h.store.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32u32 {
        let store = store.clone();
        tasks.spawn(async move {
            if i % 2 == 0 {
                store.meta_set(&format!("ok{i}"), "v").await.map(|_| ())
            } else {
                // No such attempt: NotFound, after the failed update was rolled back.
                let update = AttemptUpdate {
                    id: "pa_missing",
                    from: &[AttemptState::Initiated],
                    to: AttemptState::Authorized,
                    authorization_id: Some("auth"),
                    now: T0,
                };
                match store.update_attempt(update).await {
                    Err(StoreError::NotFound) => Ok(()),
                    other => panic!("expected NotFound, got {other:?}"),
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    for i in (0..32).step_by(2) {
        assert_eq!(store.meta_get(&format!("ok{i}")).await.unwrap().as_deref(), Some("v"));
    }
}

// --- idempotency keys and metadata ---

async fn idempotency_keys_claim_replay_and_expire(h: &impl Harness) {
    let store = h.store();
    let (alice, bob) = (user("alice"), user("bob"));
    let route = "POST /v1/holds/{id}/checkout";
    let scope = |user, key| KeyScope { user, route, key };
    let (body, other_body) = ([1u8; 32], [2u8; 32]);

    let claim = |user, key, hash, now| store.claim_key(scope(user, key), hash, now);
    assert_eq!(claim(&alice, "k1", body, T0).await.unwrap(), KeyClaim::Claimed);
    assert_eq!(claim(&alice, "k1", body, T0).await.unwrap(), KeyClaim::InProgress);
    assert_eq!(claim(&alice, "k1", other_body, T0).await.unwrap(), KeyClaim::Mismatch);
    // Keys are scoped by user and by route.
    assert_eq!(claim(&bob, "k1", other_body, T0).await.unwrap(), KeyClaim::Claimed);
    let elsewhere = KeyScope { user: &alice, route: "POST /v1/holds", key: "k1" };
    assert_eq!(store.claim_key(elsewhere, body, T0).await.unwrap(), KeyClaim::Claimed);

    store.finish_key(scope(&alice, "k1"), 201, b"{\"order\":1}").await.unwrap();
    let replay = KeyClaim::Replay { status: 201, body: b"{\"order\":1}".to_vec() };
    assert_eq!(claim(&alice, "k1", body, T0).await.unwrap(), replay);
    assert_eq!(claim(&alice, "k1", other_body, T0).await.unwrap(), KeyClaim::Mismatch);
    // A stored answer is final: neither a second finish nor a release changes it.
    store.finish_key(scope(&alice, "k1"), 500, b"").await.unwrap();
    store.release_key(scope(&alice, "k1")).await.unwrap();
    assert_eq!(claim(&alice, "k1", body, T0).await.unwrap(), replay);
    // An empty body is replayed as empty.
    assert_eq!(claim(&alice, "k3", body, T0).await.unwrap(), KeyClaim::Claimed);
    store.finish_key(scope(&alice, "k3"), 204, b"").await.unwrap();
    let empty = KeyClaim::Replay { status: 204, body: Vec::new() };
    assert_eq!(claim(&alice, "k3", body, T0).await.unwrap(), empty);

    // A released key may be claimed afresh, even with another body.
    assert_eq!(claim(&alice, "k2", body, T0 + 10).await.unwrap(), KeyClaim::Claimed);
    store.release_key(scope(&alice, "k2")).await.unwrap();
    assert_eq!(claim(&alice, "k2", other_body, T0 + 20).await.unwrap(), KeyClaim::Claimed);
    // Releasing or finishing a key that does not exist is harmless.
    store.release_key(scope(&alice, "nope")).await.unwrap();
    store.finish_key(scope(&alice, "nope"), 200, b"").await.unwrap();
    assert_eq!(claim(&alice, "nope", body, T0).await.unwrap(), KeyClaim::Claimed);

    // Purging removes exactly the keys created before the bound, finished or not:
    // alice/k1, bob/k1, alice/elsewhere, alice/k3 and alice/nope at T0; alice/k2 at T0+20.
    assert_eq!(store.purge_keys(T0).await.unwrap(), 0);
    assert_eq!(store.purge_keys(T0 + 20).await.unwrap(), 5);
    assert_eq!(claim(&alice, "k1", other_body, T0 + 30).await.unwrap(), KeyClaim::Claimed);
    assert_eq!(claim(&alice, "k2", body, T0 + 30).await.unwrap(), KeyClaim::Mismatch);
    assert_eq!(store.purge_keys(u64::MAX).await.unwrap(), 2);
}

async fn concurrent_claims_of_one_key_have_one_winner(h: &impl Harness) {
    let store = h.shared();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            let alice = user("alice");
            let scope = KeyScope { user: &alice, route: "POST /v1/orders", key: "same" };
            store.claim_key(scope, [7; 32], T0).await.unwrap()
        });
    }
    let mut claims = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        claims.push(joined.unwrap());
    }
    assert_eq!(claims.iter().filter(|c| **c == KeyClaim::Claimed).count(), 1);
    assert_eq!(claims.iter().filter(|c| **c == KeyClaim::InProgress).count(), 15);
}

async fn meta_is_set_only_once(h: &impl Harness) {
    let store = h.store();
    assert_eq!(store.meta_get("seeded").await.unwrap(), None);
    assert!(store.meta_set_if_absent("seeded", "v1").await.unwrap());
    assert!(!store.meta_set_if_absent("seeded", "v2").await.unwrap());
    assert_eq!(store.meta_get("seeded").await.unwrap().as_deref(), Some("v1"));
}

on_every_backend!(idempotency_keys_claim_replay_and_expire);

on_every_backend!(concurrent_claims_of_one_key_have_one_winner);

async fn a_claim_abandoned_by_a_dead_process_is_taken_over_once(h: &impl Harness) {
    let store = h.shared();
    let alice = user("alice");
    let scope = || KeyScope { user: &alice, route: "POST /v1/holds/{id}/checkout", key: "k" };
    assert_eq!(store.claim_key(scope(), [1; 32], T0).await.unwrap(), KeyClaim::Claimed);
    // Still running as far as anyone can tell.
    let later = T0 + boxoffice_store::KEY_CLAIM_ABANDONED_MS - 1;
    assert_eq!(store.claim_key(scope(), [1; 32], later).await.unwrap(), KeyClaim::InProgress);
    // Past the bound: another body is still a mismatch, the same body takes it over, once.
    let abandoned = T0 + boxoffice_store::KEY_CLAIM_ABANDONED_MS + 1;
    assert_eq!(store.claim_key(scope(), [2; 32], abandoned).await.unwrap(), KeyClaim::Mismatch);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            let alice = user("alice");
            let scope = KeyScope { user: &alice, route: "POST /v1/holds/{id}/checkout", key: "k" };
            store.claim_key(scope, [1; 32], abandoned).await.unwrap()
        });
    }
    let mut claims = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        claims.push(joined.unwrap());
    }
    assert_eq!(claims.iter().filter(|c| **c == KeyClaim::Claimed).count(), 1, "{claims:?}");
    assert_eq!(claims.iter().filter(|c| **c == KeyClaim::InProgress).count(), 7);
    // A finished key is final whatever its age.
    store.finish_key(scope(), 201, b"{}").await.unwrap();
    let replay = KeyClaim::Replay { status: 201, body: b"{}".to_vec() };
    assert_eq!(store.claim_key(scope(), [1; 32], u64::MAX / 2).await.unwrap(), replay);
}
on_every_backend!(a_claim_abandoned_by_a_dead_process_is_taken_over_once);

on_every_backend!(meta_is_set_only_once);

// --- payments, refunds, tickets, outbox ---

/// An attempt to pay for `seats` on a fresh hold, with the given pin deadline.
fn new_attempt(event: &Event, user: &UserId, seats: &[u32], pin_deadline: UnixMs) -> NewPaymentAttempt {
    let id = format!("pa_{:032x}", rand_id());
    NewPaymentAttempt {
        gateway_key: id.clone(),
        id,
        hold: HoldId::random(event.id),
        user: user.clone(),
        seats: seats.to_vec(),
        amount: usd(5_000 * seats.len() as i64),
        gateway: "simulated".into(),
        pin_deadline,
        created_at: pin_deadline - 40_000,
    }
}

fn rand_id() -> u128 {
    // Unique enough for tests: the ids of random orders are 104 bits already.
    u128::from_str_radix(&OrderId::random().as_str()[3..], 16).unwrap()
}

/// The order that completes `attempt`.
fn order_for(attempt: &NewPaymentAttempt, event: &Event, map: &SeatMap, created_at: UnixMs) -> NewOrder {
    let mut order = new_order(event, map, &attempt.user, &attempt.seats, created_at);
    order.hold = attempt.hold;
    order.payment_attempt = Some(attempt.id.clone());
    order
}

fn authorize<'a>(id: &'a str, now: UnixMs) -> AttemptUpdate<'a> {
    AttemptUpdate {
        id,
        from: &[AttemptState::Initiated],
        to: AttemptState::Authorized,
        authorization_id: Some(id),
        now,
    }
}

async fn payment_attempts_change_state_by_compare_and_set(h: &impl Harness) {
    let store = h.store();
    let (_, event) = venue_and_event(store).await;
    let alice = user("alice");
    let spec = new_attempt(&event, &alice, &[1, 2], T0);
    let created = store.create_attempt(spec.clone()).await.unwrap();
    assert_eq!(
        (created.state, created.event, &created.seats),
        (AttemptState::Initiated, event.id, &vec![1, 2])
    );
    assert_eq!((created.amount, created.order.clone()), (usd(10_000), None));
    assert_eq!(store.attempt(&spec.id).await.unwrap(), created);
    assert_eq!(store.attempts_for_hold(&spec.hold).await.unwrap(), std::slice::from_ref(&created));

    assert!(store.update_attempt(authorize(&spec.id, T0 - 1)).await.unwrap());
    assert!(!store.update_attempt(authorize(&spec.id, T0 - 1)).await.unwrap(), "no longer initiated");
    let authorized = store.attempt(&spec.id).await.unwrap();
    assert_eq!(authorized.state, AttemptState::Authorized);
    assert_eq!(
        (authorized.authorization_id.as_deref(), authorized.updated_at),
        (Some(spec.id.as_str()), T0 - 1)
    );

    // Open attempts are listed once their deadline is strictly before the bound.
    let open = |before| async move { store.open_attempts(before, 10).await.unwrap() };
    assert!(open(T0).await.is_empty());
    assert_eq!(open(T0 + 1).await.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), [spec.id.as_str()]);
    let captured = AttemptUpdate {
        id: &spec.id,
        from: &[AttemptState::Authorized],
        to: AttemptState::Captured,
        authorization_id: None,
        now: T0,
    };
    assert!(store.update_attempt(captured).await.unwrap());
    assert!(open(u64::MAX).await.is_empty(), "captured is settled");
    assert_eq!(store.attempt(&spec.id).await.unwrap().authorization_id.as_deref(), Some(spec.id.as_str()));

    let unknown = AttemptUpdate { id: "pa_nope", ..authorize("pa_nope", T0) };
    assert!(matches!(store.update_attempt(unknown).await, Err(StoreError::NotFound)));
    assert!(matches!(store.attempt("pa_nope").await, Err(StoreError::NotFound)));
    let mut elsewhere = new_attempt(&event, &alice, &[3], T0);
    elsewhere.hold = HoldId::random(EventId(9_999));
    assert!(matches!(store.create_attempt(elsewhere).await, Err(StoreError::NotFound)));
}

async fn an_order_commits_once_on_an_authorized_attempt_before_its_deadline(h: &impl Harness) {
    let store = h.store();
    let (map, event) = venue_and_event(store).await;
    let alice = user("alice");
    let attempt = new_attempt(&event, &alice, &[4, 5], T0);
    store.create_attempt(attempt.clone()).await.unwrap();

    // Not authorized yet: nothing commits.
    let early = store.create_order(order_for(&attempt, &event, &map, T0 - 10)).await;
    assert!(matches!(early, Err(StoreError::AttemptClosed(ref id)) if *id == attempt.id), "{early:?}");
    store.update_attempt(authorize(&attempt.id, T0 - 9)).await.unwrap();
    // At or after the pin deadline: nothing commits either.
    let late = store.create_order(order_for(&attempt, &event, &map, T0)).await;
    assert!(matches!(late, Err(StoreError::AttemptClosed(_))), "{late:?}");
    assert!(store.sold_seats(event.id).await.unwrap().is_empty());

    let first = store.create_order(order_for(&attempt, &event, &map, T0 - 1)).await.unwrap();
    assert_eq!(first.payment_attempt.as_deref(), Some(attempt.id.as_str()));
    assert!(first.tickets.iter().all(|t| t.qr_payload.is_some() && t.revision == 1 && t.user == alice));
    // A second completion of the same attempt inserts nothing and reads the order back.
    let again = store.create_order(order_for(&attempt, &event, &map, T0 - 1)).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(store.orders_of_user(&alice, 10, None).await.unwrap().items, std::slice::from_ref(&first));
    assert_eq!(store.attempt(&attempt.id).await.unwrap().order, Some(first.id.clone()));
    assert_eq!(store.order(&first.id).await.unwrap(), first);

    // A paid attempt is never voided or declined behind its order.
    for to in [AttemptState::Voided, AttemptState::Declined] {
        let update =
            AttemptUpdate { id: &attempt.id, from: &AttemptState::OPEN, to, authorization_id: None, now: T0 };
        assert!(!store.update_attempt(update).await.unwrap(), "{to:?}");
    }
    // The commit wrote exactly one outbox row, naming the order.
    let outbox = store.outbox_pending(10).await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!((outbox[0].topic.as_str(), outbox[0].key.as_str()), (TOPIC_ORDER_CREATED, first.id.as_str()));
    let payload: serde_json::Value = serde_json::from_str(&outbox[0].payload).unwrap();
    assert_eq!(payload["order_id"], first.id.as_str());
}

async fn refunds_void_tickets_once_and_set_the_order_status(h: &impl Harness) {
    let store = h.store();
    let (map, event) = venue_and_event(store).await;
    let alice = user("alice");
    let attempt = new_attempt(&event, &alice, &[1, 2, 3], T0);
    store.create_attempt(attempt.clone()).await.unwrap();
    store.update_attempt(authorize(&attempt.id, T0 - 5)).await.unwrap();
    let order = store.create_order(order_for(&attempt, &event, &map, T0 - 1)).await.unwrap();
    let captured = AttemptUpdate {
        id: &attempt.id,
        from: &[AttemptState::Authorized],
        to: AttemptState::Captured,
        authorization_id: None,
        now: T0,
    };
    store.update_attempt(captured).await.unwrap();
    let request = |tickets: Option<Vec<TicketId>>, refund_id: &str| RefundRequest {
        order: order.id.clone(),
        tickets,
        allow_scanned: false,
        refund_id: refund_id.into(),
        now: T0 + 10,
    };

    let first_ticket = order.tickets[0].clone();
    let partial = store.refund_tickets(request(Some(vec![first_ticket.id.clone()]), "rf_1")).await.unwrap();
    assert_eq!(partial.order.status, OrderStatus::PartiallyRefunded);
    let refund = partial.refund.expect("one ticket refunded");
    assert_eq!(refund.gateway_key, format!("refund:{}", attempt.id));
    assert_eq!(refund.payment_key.as_deref(), Some(attempt.gateway_key.as_str()));
    assert_eq!(
        (refund.amount, refund.tickets.clone(), refund.state),
        (usd(5_000), vec![first_ticket.id.clone()], RefundState::Pending)
    );
    let statuses: Vec<TicketStatus> = partial.order.tickets.iter().map(|t| t.status).collect();
    assert_eq!(statuses, [TicketStatus::Voided, TicketStatus::Valid, TicketStatus::Valid]);
    assert_eq!(store.sold_seats(event.id).await.unwrap(), [sold(2, &alice), sold(3, &alice)]);

    // The same ticket again: nothing more is voided or refunded.
    let repeat = store.refund_tickets(request(Some(vec![first_ticket.id.clone()]), "rf_2")).await.unwrap();
    assert_eq!((repeat.refund, repeat.order.status), (None, OrderStatus::PartiallyRefunded));

    // The rest of the order: the attempt's second refund gets its own key.
    let whole = store.refund_tickets(request(None, "rf_3")).await.unwrap();
    assert_eq!(whole.order.status, OrderStatus::Refunded);
    let second = whole.refund.expect("two tickets refunded");
    assert_eq!(
        (second.gateway_key.clone(), second.amount),
        (format!("refund:{}:2", attempt.id), usd(10_000))
    );
    assert!(store.sold_seats(event.id).await.unwrap().is_empty());
    assert!(store.refund_tickets(request(None, "rf_4")).await.unwrap().refund.is_none());

    let pending: Vec<String> = store.pending_refunds(10).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(pending, ["rf_1", "rf_3"]);
    store.finish_refund("rf_1", T0 + 20).await.unwrap();
    assert_eq!(
        store.attempt(&attempt.id).await.unwrap().state,
        AttemptState::Captured,
        "a refund is still pending"
    );
    store.finish_refund("rf_3", T0 + 20).await.unwrap();
    assert!(store.pending_refunds(10).await.unwrap().is_empty());
    assert_eq!(store.attempt(&attempt.id).await.unwrap().state, AttemptState::Refunded);
    assert!(matches!(store.finish_refund("rf_nope", T0).await, Err(StoreError::NotFound)));

    // Every refund announced itself in the outbox, after the order.
    let topics: Vec<String> = store.outbox_pending(10).await.unwrap().into_iter().map(|m| m.topic).collect();
    assert_eq!(topics, [TOPIC_ORDER_CREATED, TOPIC_ORDER_REFUNDED, TOPIC_ORDER_REFUNDED]);

    let other = store.create_order(new_order(&event, &map, &alice, &[9], T0)).await.unwrap();
    let wrong = store.refund_tickets(request(Some(vec![other.tickets[0].id.clone()]), "rf_5")).await;
    assert!(matches!(wrong, Err(StoreError::TicketNotInOrder(_))), "{wrong:?}");
    let unknown = RefundRequest { order: OrderId::random(), ..request(None, "rf_6") };
    assert!(matches!(store.refund_tickets(unknown).await, Err(StoreError::NotFound)));
}

async fn tickets_scan_once_and_scanned_ones_refund_only_for_admins(h: &impl Harness) {
    let store = h.store();
    let (map, event) = venue_and_event(store).await;
    let alice = user("alice");
    let order = store.create_order(new_order(&event, &map, &alice, &[6, 7], T0)).await.unwrap();
    let ticket = order.tickets[0].clone();
    let read = store.ticket(&ticket.id).await.unwrap();
    assert_eq!(read, ticket);
    assert_eq!(
        (read.user.clone(), read.revision, read.qr_payload.as_deref()),
        (alice.clone(), 1, Some("qr-of-seat-6"))
    );
    assert!(matches!(store.ticket(&TicketId::random()).await, Err(StoreError::NotFound)));

    assert_eq!(store.scan_ticket(&ticket.id, 2, T0).await.unwrap(), ScanOutcome::Unknown, "another revision");
    assert_eq!(store.scan_ticket(&TicketId::random(), 1, T0).await.unwrap(), ScanOutcome::Unknown);
    let ScanOutcome::Admitted(scanned) = store.scan_ticket(&ticket.id, 1, T0).await.unwrap() else {
        panic!("a valid ticket is admitted")
    };
    assert_eq!(scanned.status, TicketStatus::Scanned);
    assert!(matches!(
        store.scan_ticket(&ticket.id, 1, T0 + 1).await.unwrap(),
        ScanOutcome::AlreadyScanned(_)
    ));

    let request = |allow_scanned| RefundRequest {
        order: order.id.clone(),
        tickets: None,
        allow_scanned,
        refund_id: format!("rf_{allow_scanned}"),
        now: T0 + 2,
    };
    match store.refund_tickets(request(false)).await {
        Err(StoreError::TicketScanned(id)) => assert_eq!(id, ticket.id),
        other => panic!("expected TicketScanned, got {other:?}"),
    }
    assert_eq!(store.order(&order.id).await.unwrap().status, OrderStatus::Confirmed, "nothing changed");
    let refund = store.refund_tickets(request(true)).await.unwrap().refund.expect("refunded");
    assert_eq!(refund.tickets.len(), 2);
    assert_eq!(refund.payment_key, None, "an order without a payment attempt");
    assert!(matches!(store.scan_ticket(&ticket.id, 1, T0 + 3).await.unwrap(), ScanOutcome::Revoked(_)));
}

async fn the_outbox_is_read_in_order_marked_sent_and_requeued(h: &impl Harness) {
    let store = h.store();
    let (map, event) = venue_and_event(store).await;
    let alice = user("alice");
    let first = store.create_order(new_order(&event, &map, &alice, &[1], T0)).await.unwrap();
    let second = store.create_order(new_order(&event, &map, &alice, &[2], T0 + 1)).await.unwrap();
    let pending = store.outbox_pending(10).await.unwrap();
    let keys: Vec<&str> = pending.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, [first.id.as_str(), second.id.as_str()]);
    assert!(pending[0].seq < pending[1].seq);
    assert_eq!(store.outbox_pending(1).await.unwrap(), pending[..1]);

    store.outbox_mark_sent(pending[0].seq, T0).await.unwrap();
    assert_eq!(store.outbox_pending(10).await.unwrap(), pending[1..]);
    store.outbox_mark_sent(pending[1].seq, T0).await.unwrap();
    assert!(store.outbox_pending(10).await.unwrap().is_empty());
    // A stream that lost what followed the first row gets it again.
    assert_eq!(store.outbox_requeue_after(pending[0].seq).await.unwrap(), 1);
    assert_eq!(store.outbox_pending(10).await.unwrap(), pending[1..]);

    // Sent rows go once old enough and handled by every consumer; unsent ones stay.
    assert_eq!(store.outbox_purge(T0, pending[1].seq).await.unwrap(), 0, "sent at T0, not before");
    assert_eq!(store.outbox_purge(T0 + 1, 0).await.unwrap(), 0, "not handled yet");
    assert_eq!(
        store.outbox_purge(T0 + 1, pending[1].seq).await.unwrap(),
        1,
        "the first; the second is unsent"
    );
    assert_eq!(store.outbox_pending(10).await.unwrap(), pending[1..]);

    store.meta_set("position", "1").await.unwrap();
    store.meta_set("position", "2").await.unwrap();
    assert_eq!(store.meta_get("position").await.unwrap().as_deref(), Some("2"));
}

on_every_backend!(payment_attempts_change_state_by_compare_and_set);

on_every_backend!(an_order_commits_once_on_an_authorized_attempt_before_its_deadline);

on_every_backend!(refunds_void_tickets_once_and_set_the_order_status);

on_every_backend!(tickets_scan_once_and_scanned_ones_refund_only_for_admins);

on_every_backend!(the_outbox_is_read_in_order_marked_sent_and_requeued);

// --- durability ---

async fn everything_survives_a_reopen<H: Harness>(h: H) {
    let map = big_map();
    assert_eq!(map.len(), 60_000);
    let store = h.store();
    let venue = store.create_venue(new_venue("Stade", "Paris", map.clone())).await.unwrap();
    let singer = store.create_performer("Edith", Some("chanson")).await.unwrap();
    let mut spec = new_event(&venue, "concert", T0);
    spec.performer_ids = vec![singer.id];
    let event = store.create_event(spec).await.unwrap();
    let alice = user("alice");
    let order = store.create_order(new_order(&event, &map, &alice, &[0, 59_999], T0)).await.unwrap();
    let scope = KeyScope { user: &alice, route: "POST /v1/orders", key: "k" };
    store.claim_key(scope.clone(), [1; 32], T0).await.unwrap();
    store.finish_key(scope.clone(), 201, b"done").await.unwrap();
    store.meta_set_if_absent("seeded", "yes").await.unwrap();

    let h = h.reopen().await;
    let store = h.store();
    assert_eq!(store.venue(venue.id).await.unwrap(), venue);
    assert_eq!(store.event(event.id).await.unwrap(), event);
    assert_eq!(store.all_event_ids().await.unwrap(), [event.id]);
    // Parsed from the stored copy this time, not served from the cache.
    assert_eq!(*store.event_seat_map(event.id).await.unwrap(), *map);
    assert_eq!(*store.venue_seat_map(venue.id).await.unwrap(), *map);
    assert_eq!(store.order(&order.id).await.unwrap(), order);
    assert_eq!(store.sold_seats(event.id).await.unwrap(), [sold(0, &alice), sold(59_999, &alice)]);
    let replay = KeyClaim::Replay { status: 201, body: b"done".to_vec() };
    assert_eq!(store.claim_key(scope, [1; 32], T0).await.unwrap(), replay);
    assert!(!store.meta_set_if_absent("seeded", "again").await.unwrap());
    assert_eq!(store.meta_get("seeded").await.unwrap().as_deref(), Some("yes"));
}

on_every_backend!(everything_survives_a_reopen, by_value);

// --- catalog change feed ---

async fn every_catalog_write_adds_a_change_in_order(h: &impl Harness) {
    use boxoffice_store::{CatalogEntity, EventUpdate};
    let store = h.store();
    assert_eq!(store.catalog_change_head().await.unwrap(), 0, "a new store has no changes");
    let venue = store.create_venue(new_venue("Olympia", "Paris", small_map())).await.unwrap();
    let first = store.create_event(new_event(&venue, "concert", T0)).await.unwrap();
    let renamed = EventUpdate {
        name: Some("Renamed".into()),
        description: Some("New words".into()),
        ..EventUpdate::default()
    };
    let updated = store.update_event(first.id, renamed).await.unwrap();
    assert_eq!((updated.name.as_str(), updated.description.as_deref()), ("Renamed", Some("New words")));
    assert_eq!(updated.category, first.category, "not named: kept");
    let bulk = store
        .create_events(vec![
            new_event(&venue, "comedy", T0 + HOUR),
            new_event(&venue, "sports", T0 + 2 * HOUR),
        ])
        .await
        .unwrap();
    assert_eq!(bulk.len(), 2);

    let changes = store.catalog_changes_after(0, 100).await.unwrap();
    let entities: Vec<CatalogEntity> = changes.iter().map(|c| c.entity).collect();
    assert_eq!(
        entities,
        vec![
            CatalogEntity::Venue(venue.id),
            CatalogEntity::Event(first.id),
            CatalogEntity::Event(first.id),
            CatalogEntity::Event(bulk[0]),
            CatalogEntity::Event(bulk[1]),
        ]
    );
    assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq), "in seq order");
    assert_eq!(store.catalog_change_head().await.unwrap(), changes[4].seq);
    let rest = store.catalog_changes_after(changes[1].seq, 2).await.unwrap();
    assert_eq!(rest, changes[2..4], "after a seq, at most `limit`");

    // A failed write adds no change.
    let broken = EventUpdate { onsale_at: Some(T0 + 100 * HOUR), ..EventUpdate::default() };
    assert!(store.update_event(first.id, broken).await.is_err());
    let mut missing_venue = new_event(&venue, "concert", T0);
    missing_venue.venue_id = 9_999;
    assert!(matches!(
        store.create_events(vec![new_event(&venue, "x", T0), missing_venue]).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.catalog_change_head().await.unwrap(), changes[4].seq, "nothing half-written");
    assert_eq!(store.all_event_ids().await.unwrap().len(), 3);
}

async fn events_read_in_bulk_by_id_and_by_venue(h: &impl Harness) {
    let store = h.store();
    let paris = store.create_venue(new_venue("Olympia", "Paris", small_map())).await.unwrap();
    let lyon = store.create_venue(new_venue("Halle", "Lyon", small_map())).await.unwrap();
    let a = store.create_event(new_event(&paris, "concert", T0)).await.unwrap();
    let b = store.create_event(new_event(&lyon, "concert", T0)).await.unwrap();
    let c = store.create_event(new_event(&paris, "comedy", T0)).await.unwrap();
    let read = store.events_by_ids(&[c.id, EventId(9_999), a.id, c.id]).await.unwrap();
    assert_eq!(read, vec![a.clone(), c.clone()], "id order, unknown ids left out, once each");
    assert_eq!(store.venue_event_ids(paris.id).await.unwrap(), [a.id, c.id]);
    assert_eq!(store.venue_event_ids(lyon.id).await.unwrap(), [b.id]);
    assert!(store.venue_event_ids(9_999).await.unwrap().is_empty());
    let many: Vec<EventId> = (0..1_200).map(EventId).collect();
    assert_eq!(store.events_by_ids(&many).await.unwrap().len(), 3, "more ids than one query binds");
    assert_eq!(*store.event_seat_map(c.id).await.unwrap(), *small_map());
}

on_every_backend!(every_catalog_write_adds_a_change_in_order);

on_every_backend!(events_read_in_bulk_by_id_and_by_venue);

#[tokio::test]
async fn sqlite_events_created_before_the_change_feed_are_announced_once() {
    // A database from before migration 0004: events without change rows. Simulated by
    // removing the rows and re-running the migration's back-fill statement.
    use boxoffice_store::CatalogEntity;
    let h = sqlite().await;
    let venue = h.store.create_venue(new_venue("Olympia", "Paris", small_map())).await.unwrap();
    let event = h.store.create_event(new_event(&venue, "concert", T0)).await.unwrap();
    sqlx::query("DELETE FROM catalog_changes").execute(h.store.pool()).await.unwrap();
    let migration = include_str!("../migrations/sqlite/0004_catalog_changes.sql");
    let backfill = &migration[migration.find("INSERT INTO catalog_changes").unwrap()..];
    sqlx::query(backfill).execute(h.store.pool()).await.unwrap();
    let changes = h.store.catalog_changes_after(0, 10).await.unwrap();
    assert_eq!(changes.iter().map(|c| c.entity).collect::<Vec<_>>(), [CatalogEntity::Event(event.id)]);
}

// --- concurrency: what SQLite gets from its single writer, every backend must keep ---

async fn concurrent_completions_of_one_attempt_make_one_order(h: &impl Harness) {
    let (map, event) = venue_and_event(h.store()).await;
    let store = h.shared();
    let attempt = new_attempt(&event, &user("alice"), &[5, 6], T0);
    store.create_attempt(attempt.clone()).await.unwrap();
    store.update_attempt(authorize(&attempt.id, T0 - 10)).await.unwrap();
    // The response path, a webhook and the reconciler, each with its own order id.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        let spec = order_for(&attempt, &event, &map, T0 - 1);
        tasks.spawn(async move { store.create_order(spec).await });
    }
    let mut orders = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        orders.insert(joined.unwrap().unwrap().id);
    }
    assert_eq!(orders.len(), 1, "every completion reads back the one order");
    let order = orders.into_iter().next().unwrap();
    assert_eq!(store.attempt(&attempt.id).await.unwrap().order, Some(order.clone()));
    assert_eq!(store.orders_of_user(&user("alice"), 10, None).await.unwrap().items.len(), 1);
    assert_eq!(store.sold_seats(event.id).await.unwrap().len(), 2);
    assert_eq!(store.outbox_pending(10).await.unwrap().len(), 1, "one order.created");
}

async fn an_attempt_is_never_both_voided_and_ordered(h: &impl Harness) {
    let (map, event) = venue_and_event(h.store()).await;
    let store = h.shared();
    for seat in 0..12u32 {
        let attempt = new_attempt(&event, &user("alice"), &[seat], T0);
        store.create_attempt(attempt.clone()).await.unwrap();
        store.update_attempt(authorize(&attempt.id, T0 - 10)).await.unwrap();
        // The checkout commits while the reconciler voids the same attempt.
        let ordering = {
            let store = store.clone();
            let spec = order_for(&attempt, &event, &map, T0 - 1);
            tokio::spawn(async move { store.create_order(spec).await })
        };
        let voiding = {
            let store = store.clone();
            let id = attempt.id.clone();
            tokio::spawn(async move {
                let void = AttemptUpdate {
                    id: &id,
                    from: &AttemptState::OPEN,
                    to: AttemptState::Voided,
                    authorization_id: None,
                    now: T0 - 1,
                };
                store.update_attempt(void).await.unwrap()
            })
        };
        let (ordered, voided) = (ordering.await.unwrap(), voiding.await.unwrap());
        match &ordered {
            Ok(_) => assert!(!voided, "seat {seat}: an attempt with an order is never voided"),
            Err(StoreError::AttemptClosed(_)) => assert!(voided, "seat {seat}: closed by the void"),
            Err(e) => panic!("seat {seat}: {e}"),
        }
        let stored = store.attempt(&attempt.id).await.unwrap();
        assert_eq!(stored.order.is_some(), ordered.is_ok(), "seat {seat}");
        assert_eq!(stored.state == AttemptState::Voided, voided, "seat {seat}");
    }
}

async fn a_relay_racing_the_writers_sees_every_outbox_row_once(h: &impl Harness) {
    let (map, event) = venue_and_event(h.store()).await;
    let store = h.shared();
    // Four writers, seven orders each (the 28 seats of the map); the relay reads and marks
    // sent as they commit, as the outbox relay does. A row that committed after the relay
    // had passed its seq would be marked sent unseen.
    let writers = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for writer in 0..4u32 {
                let store = store.clone();
                let specs: Vec<NewOrder> = (0..7u32)
                    .map(|i| new_order(&event, &map, &user("alice"), &[writer * 7 + i], T0))
                    .collect();
                tasks.spawn(async move {
                    let mut ids = Vec::new();
                    for spec in specs {
                        ids.push(store.create_order(spec).await.unwrap().id);
                    }
                    ids
                });
            }
            let mut ids = HashSet::new();
            while let Some(joined) = tasks.join_next().await {
                ids.extend(joined.unwrap().into_iter().map(|id| id.as_str().to_owned()));
            }
            ids
        })
    };
    let mut seen = HashSet::new();
    let mut last = 0;
    loop {
        let finished = writers.is_finished();
        let batch = store.outbox_pending(5).await.unwrap();
        for message in &batch {
            assert!(message.seq > last, "in seq order");
            last = message.seq;
            assert!(seen.insert(message.key.clone()), "{} relayed twice", message.key);
        }
        store.outbox_mark_sent(last, T0).await.unwrap();
        if finished && batch.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let written = writers.await.unwrap();
    assert_eq!(written.len(), 28);
    assert_eq!(seen, written, "every order's row relayed once, none skipped");
}

async fn a_follower_racing_the_writers_sees_every_catalog_change(h: &impl Harness) {
    use boxoffice_store::CatalogEntity;
    let store = h.shared();
    let venue = store.create_venue(new_venue("Olympia", "Paris", small_map())).await.unwrap();
    let writers = {
        let store = store.clone();
        let venue = venue.clone();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for writer in 0..4u64 {
                let store = store.clone();
                let venue = venue.clone();
                tasks.spawn(async move {
                    let mut ids = Vec::new();
                    for i in 0..8u64 {
                        let spec = new_event(&venue, "concert", T0 + (writer * 8 + i) * HOUR);
                        ids.push(store.create_event(spec).await.unwrap().id);
                    }
                    ids
                });
            }
            let mut ids = HashSet::new();
            while let Some(joined) = tasks.join_next().await {
                ids.extend(joined.unwrap());
            }
            ids
        })
    };
    let mut seen = HashSet::new();
    let mut last = 0;
    loop {
        let finished = writers.is_finished();
        let changes = store.catalog_changes_after(last, 4).await.unwrap();
        for change in &changes {
            assert!(change.seq > last, "in seq order");
            last = change.seq;
            if let CatalogEntity::Event(id) = change.entity {
                assert!(seen.insert(id), "event {id} announced twice");
            }
        }
        if finished && changes.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let created = writers.await.unwrap();
    assert_eq!(created.len(), 32);
    assert_eq!(seen, created, "a follower that never re-reads misses nothing");
    assert_eq!(store.catalog_change_head().await.unwrap(), last);
}

async fn concurrent_partial_updates_of_an_event_all_take_effect(h: &impl Harness) {
    use boxoffice_store::{EventUpdate, QueueUpdate};
    let (_, event) = venue_and_event(h.store()).await;
    let store = h.shared();
    let queue = |queue: QueueUpdate| EventUpdate { queue, ..EventUpdate::default() };
    let updates = vec![
        EventUpdate { name: Some("Renamed".into()), ..EventUpdate::default() },
        EventUpdate { description: Some("New words".into()), ..EventUpdate::default() },
        EventUpdate { status: Some(EventStatus::Cancelled), ..EventUpdate::default() },
        queue(QueueUpdate { enabled: Some(true), ..QueueUpdate::default() }),
        queue(QueueUpdate { admit_rate_per_second: Some(7), ..QueueUpdate::default() }),
        queue(QueueUpdate { token_ttl_seconds: Some(60), ..QueueUpdate::default() }),
        queue(QueueUpdate { max_length: Some(1_000), ..QueueUpdate::default() }),
        queue(QueueUpdate { proof_of_work_bits: Some(20), ..QueueUpdate::default() }),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for update in updates {
        let store = store.clone();
        tasks.spawn(async move { store.update_event(event.id, update).await.unwrap().updated_at });
    }
    let mut stamps = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        assert!(stamps.insert(joined.unwrap()), "every change has its own updated_at");
    }
    let now = store.event(event.id).await.unwrap();
    assert_eq!((now.name.as_str(), now.description.as_deref()), ("Renamed", Some("New words")));
    assert_eq!(now.status, EventStatus::Cancelled);
    let expected = boxoffice_store::QueueSettings {
        enabled: true,
        admit_rate_per_second: 7,
        token_ttl_seconds: 60,
        max_length: 1_000,
        proof_of_work_bits: 20,
    };
    assert_eq!(now.queue, expected, "no change lost to another");
    assert_eq!(now.updated_at, stamps.into_iter().max().unwrap());
}

on_every_backend!(concurrent_completions_of_one_attempt_make_one_order);

on_every_backend!(an_attempt_is_never_both_voided_and_ordered);

on_every_backend!(a_relay_racing_the_writers_sees_every_outbox_row_once);

on_every_backend!(a_follower_racing_the_writers_sees_every_catalog_change);

on_every_backend!(concurrent_partial_updates_of_an_event_all_take_effect);

// --- audit history ---

fn audit(event: &Event, kind: AuditType, seat: u32, hold: HoldId, at: UnixMs) -> NewAuditRecord {
    NewAuditRecord {
        event: event.id,
        kind,
        at,
        seat,
        hold: Some(hold),
        order: None,
        user: user("alice"),
        reason: None,
    }
}

async fn audit_records_number_each_event_from_one_without_gaps(h: &impl Harness) {
    let store = h.store();
    let (_, first) = venue_and_event(store).await;
    let second = store.create_event(new_event(&first.venue, "opera", T0 + HOUR)).await.unwrap();
    let (hold_a, hold_b, hold_c) =
        (HoldId::random(first.id), HoldId::random(second.id), HoldId::random(first.id));
    store
        .append_audit(&[
            audit(&first, AuditType::SeatHeld, 1, hold_a, T0),
            audit(&second, AuditType::SeatHeld, 1, hold_b, T0),
            audit(&first, AuditType::SeatHeld, 2, hold_a, T0),
            audit(&first, AuditType::SeatHeld, 3, hold_c, T0),
        ])
        .await
        .unwrap();
    store.append_audit(&[]).await.unwrap();
    let mut released = audit(&first, AuditType::SeatReleased, 3, hold_c, T0 + 1);
    released.reason = Some("expiry".into());
    store.append_audit(std::slice::from_ref(&released)).await.unwrap();

    let records = store.audit_after(first.id, 0, 10).await.unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "from 1, in the order given, without gaps");
    let seats: Vec<u32> = records.iter().map(|r| r.record.seat).collect();
    assert_eq!(seats, [1, 2, 3, 3]);
    assert_eq!(records[3].record, released, "reads back as written");
    assert_eq!(
        store.audit_after(second.id, 0, 10).await.unwrap().iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1]
    );
    assert_eq!(
        store.audit_after(first.id, 1, 2).await.unwrap().iter().map(|r| r.seq).collect::<Vec<_>>(),
        [2, 3]
    );
    assert!(store.audit_after(EventId(9_999), 0, 10).await.unwrap().is_empty());

    let open: Vec<(u64, Option<HoldId>)> =
        store.audit_open_holds(first.id).await.unwrap().iter().map(|r| (r.seq, r.record.hold)).collect();
    assert_eq!(open, [(1, Some(hold_a)), (2, Some(hold_a))], "hold c was released");
    let mut recorded = store.audit_holds_recorded(first.id, &[hold_a, hold_b, hold_c]).await.unwrap();
    recorded.sort_by_key(|h| h.to_string());
    let mut expected = vec![hold_a, hold_c];
    expected.sort_by_key(|h| h.to_string());
    assert_eq!(recorded, expected, "hold b is another event's");
}

async fn order_side_changes_are_audited_in_their_transactions(h: &impl Harness) {
    let store = h.store();
    let (map, event) = venue_and_event(store).await;
    let alice = user("alice");
    let kinds = || async {
        let records = store.audit_after(event.id, 0, 100).await.unwrap();
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=records.len() as u64).collect::<Vec<_>>(), "gap-free");
        records.into_iter().map(|r| (r.record.kind, r.record.seat, r.record.reason)).collect::<Vec<_>>()
    };

    let declined = new_attempt(&event, &alice, &[1, 2], T0);
    store.create_attempt(declined.clone()).await.unwrap();
    let decline = AttemptUpdate {
        id: &declined.id,
        from: &AttemptState::OPEN,
        to: AttemptState::Declined,
        authorization_id: None,
        now: T0 - 5,
    };
    assert!(store.update_attempt(decline).await.unwrap());
    use AuditType::*;
    let reason = |r: &str| Some(r.to_owned());
    assert_eq!(
        kinds().await,
        [
            (PaymentInitiated, 1, None),
            (PaymentInitiated, 2, None),
            (PaymentFailed, 1, reason("declined")),
            (PaymentFailed, 2, reason("declined"))
        ]
    );

    let paid = new_attempt(&event, &alice, &[3, 4], T0);
    store.create_attempt(paid.clone()).await.unwrap();
    assert!(store.create_order(order_for(&paid, &event, &map, T0 - 1)).await.is_err(), "not authorized");
    store.update_attempt(authorize(&paid.id, T0 - 4)).await.unwrap();
    let order = store.create_order(order_for(&paid, &event, &map, T0 - 1)).await.unwrap();
    // A repeated completion and a refused void write nothing.
    store.create_order(order_for(&paid, &event, &map, T0 - 1)).await.unwrap();
    let void = AttemptUpdate {
        id: &paid.id,
        from: &AttemptState::OPEN,
        to: AttemptState::Voided,
        authorization_id: None,
        now: T0,
    };
    assert!(!store.update_attempt(void).await.unwrap());
    let refund = RefundRequest {
        order: order.id.clone(),
        tickets: Some(vec![order.tickets[1].id.clone()]),
        allow_scanned: false,
        refund_id: "rf_1".into(),
        now: T0 + 1,
    };
    store.refund_tickets(refund).await.unwrap();
    assert_eq!(
        kinds().await[4..],
        [
            (PaymentInitiated, 3, None),
            (PaymentInitiated, 4, None),
            (SeatConfirmed, 3, None),
            (SeatConfirmed, 4, None),
            (SeatRefunded, 4, None)
        ]
    );
    let records = store.audit_after(event.id, 6, 100).await.unwrap();
    assert!(
        records
            .iter()
            .all(|r| r.record.order.as_ref() == Some(&order.id) && r.record.hold == Some(paid.hold))
    );
}

async fn concurrent_audit_appends_keep_every_event_gap_free(h: &impl Harness) {
    let (_, first) = venue_and_event(h.store()).await;
    let second = h.store().create_event(new_event(&first.venue, "opera", T0 + HOUR)).await.unwrap();
    let store = h.shared();
    // Batches name both events, in both orders: the writers must neither deadlock nor
    // hand out one number twice.
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..8u32 {
        let store = store.clone();
        let (a, b) =
            if writer % 2 == 0 { (first.clone(), second.clone()) } else { (second.clone(), first.clone()) };
        tasks.spawn(async move {
            for i in 0..10u32 {
                let hold = HoldId::random(a.id);
                let batch = [
                    audit(&a, AuditType::SeatHeld, writer * 10 + i, hold, T0),
                    audit(&b, AuditType::SeatHeld, writer * 10 + i, HoldId::random(b.id), T0),
                    audit(&a, AuditType::SeatReleased, writer * 10 + i, hold, T0),
                ];
                store.append_audit(&batch).await.unwrap();
            }
        });
    }
    // A reader following one event as they write never sees a gap.
    let mut last = 0;
    while !tasks.is_empty() {
        for record in store.audit_after(first.id, last, 50).await.unwrap() {
            assert_eq!(record.seq, last + 1, "no gap, even mid-write");
            last = record.seq;
        }
        if let Some(joined) = tasks.try_join_next() {
            joined.unwrap();
        }
        tokio::task::yield_now().await;
    }
    for record in store.audit_after(first.id, last, 1_000).await.unwrap() {
        assert_eq!(record.seq, last + 1);
        last = record.seq;
    }
    // The first event gets 2 records a batch from the even writers and 1 from the odd ones.
    assert_eq!(last, 4 * 10 * 2 + 4 * 10);
    let second_seqs: Vec<u64> =
        store.audit_after(second.id, 0, 1_000).await.unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(second_seqs, (1..=second_seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(second_seqs.len() + last as usize, 8 * 10 * 3);
}

on_every_backend!(audit_records_number_each_event_from_one_without_gaps);

on_every_backend!(order_side_changes_are_audited_in_their_transactions);

on_every_backend!(concurrent_audit_appends_keep_every_event_gap_free);

// --- PostgreSQL's own promises ---

/// Nodes of a cluster start together on a database nobody has migrated: the migrator's
/// advisory lock lets one of them apply the migrations and the others find them applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_nodes_starting_together_migrate_a_fresh_database_once() {
    let database = fresh_postgres_database().await;
    let config = postgres_config(&database.0);
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let config = config.clone();
        opening.spawn(async move { PgStore::open(&config).await });
    }
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    while let Some(joined) = opening.join_next().await {
        stores.push(Arc::new(joined.unwrap().expect("every node opens")));
    }
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .filter(|f| f.as_ref().unwrap().path().extension().is_some_and(|e| e == "sql"))
        .count();
    let mut conn = sqlx::PgConnection::connect(&config.url).await.unwrap();
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(applied.len(), files, "each migration applied once: {applied:?}");
    assert!(applied.iter().all(|(_, success)| *success));
    // `boxoffice migrate` on an up-to-date database does nothing, and fails nothing.
    PgStore::migrate(&config.url).await.unwrap();
    conn.close().await.unwrap();

    // And the nodes share one truth.
    let (map, event) = venue_and_event(&*stores[0]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20u32 {
        let store = stores[i as usize % stores.len()].clone();
        let spec = new_order(&event, &map, &user("alice"), &[i], T0 + u64::from(i));
        tasks.spawn(async move { store.create_order(spec).await.map(|_| ()) });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap().unwrap();
    }
    for store in &stores {
        assert_eq!(store.sold_seats(event.id).await.unwrap().len(), 20);
    }
}

#[tokio::test]
async fn postgres_an_unreachable_database_fails_in_bounded_time_without_its_password() {
    // Nothing listens on port 1.
    let config = PgConfig {
        connect_retry: std::time::Duration::from_millis(1_500),
        ..PgConfig::new("postgres://bo:s3cret@127.0.0.1:1/boxoffice")
    };
    let started = std::time::Instant::now();
    let err = PgStore::open(&config).await.expect_err("no database there");
    let elapsed = started.elapsed();
    let message = err.to_string();
    assert!(message.contains("postgres://bo:***@127.0.0.1:1/boxoffice"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
    assert!(elapsed >= std::time::Duration::from_millis(500), "it retried: {elapsed:?}, {message}");
    assert!(elapsed < std::time::Duration::from_secs(10), "bounded: {elapsed:?}");
    // A wrong database on a live server is not a wait-and-see failure: it fails at once,
    // also naming the URL.
    let missing = PgConfig::new(format!("{}/bo_t_does_not_exist", postgres_server()));
    let started = std::time::Instant::now();
    let message = PgStore::open(&missing).await.expect_err("no such database").to_string();
    assert!(message.contains("bo_t_does_not_exist"), "{message}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn postgres_connections_carry_the_configured_timeouts() {
    let database = fresh_postgres_database().await;
    let config = PgConfig {
        statement_timeout: std::time::Duration::from_millis(1_234),
        lock_timeout: std::time::Duration::from_millis(567),
        ..postgres_config(&database.0)
    };
    let store = PgStore::open(&config).await.unwrap();
    let show = |setting: &'static str| {
        let pool = store.pool().clone();
        async move { sqlx::query_scalar::<_, String>(&format!("SHOW {setting}")).fetch_one(&pool).await.unwrap() }
    };
    assert_eq!(show("statement_timeout").await, "1234ms");
    assert_eq!(show("lock_timeout").await, "567ms");
    let slow = sqlx::query("SELECT pg_sleep(3)").execute(store.pool()).await.expect_err("cancelled");
    let code = slow.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("57014"), "query_canceled: {slow}");
    store.close().await;
}

#[tokio::test]
async fn postgres_tickets_and_audit_are_partitioned_by_event() {
    let h = postgres().await;
    let pool = h.store.pool();
    let partitioned: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::TEXT, p.partstrat::TEXT FROM pg_partitioned_table p \
         JOIN pg_class c ON c.oid = p.partrelid ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let hash = |table: &str| (table.to_owned(), "h".to_owned());
    assert_eq!(partitioned, [hash("audit"), hash("ticket_revocations"), hash("tickets")]);
    for table in ["tickets", "audit", "ticket_revocations"] {
        let partitions: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = '{table}'::regclass"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(partitions, 8, "{table}");
    }
    let guard: String =
        sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE indexname = 'tickets_one_valid_per_seat'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(guard.starts_with("CREATE UNIQUE INDEX"), "{guard}");
    assert!(guard.contains("(event_id, seat_index) WHERE"), "{guard}");
    let unique: Vec<String> = sqlx::query_scalar(
        "SELECT conname::TEXT FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'u' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(unique, ["orders_one_per_attempt", "orders_one_per_hold"]);

    // The tickets of different events land in different partitions, and the guard holds
    // in each.
    let (map, first) = venue_and_event(h.store()).await;
    let mut events = vec![first];
    for i in 1..8 {
        events
            .push(h.store.create_event(new_event(&events[0].venue, "concert", T0 + i * HOUR)).await.unwrap());
    }
    for event in &events {
        h.store.create_order(new_order(event, &map, &user("alice"), &[0], T0)).await.unwrap();
        let again = h.store.create_order(new_order(event, &map, &user("bob"), &[0], T0)).await;
        assert!(matches!(again, Err(StoreError::SeatAlreadySold { seat_index: 0, .. })), "{again:?}");
    }
    let used: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT tableoid) FROM tickets").fetch_one(pool).await.unwrap();
    assert!(used > 1, "8 events in one partition");

    // Audit rows are never changed or deleted.
    let records = h.store.audit_after(events[0].id, 0, 10).await.unwrap();
    assert_eq!(records.len(), 1, "the order's SEAT_CONFIRMED");
    assert!(sqlx::query("UPDATE audit SET seat = 1").execute(pool).await.is_err());
    assert!(sqlx::query("DELETE FROM audit").execute(pool).await.is_err());
    assert_eq!(h.store.audit_after(events[0].id, 0, 10).await.unwrap(), records);
}

// --- cancellation ---

async fn a_cancelled_event_sells_nothing_more_and_lists_its_orders_to_refund(h: &impl Harness) {
    use boxoffice_store::EventUpdate;
    let store = h.store();
    let (map, event) = venue_and_event(store).await;
    let other = store.create_event(new_event(&event.venue, "opera", T0 + HOUR)).await.unwrap();
    let alice = user("alice");
    let first = store.create_order(new_order(&event, &map, &alice, &[1, 2], T0)).await.unwrap();
    let second = store.create_order(new_order(&event, &map, &alice, &[3], T0)).await.unwrap();
    store.create_order(new_order(&other, &map, &alice, &[1], T0)).await.unwrap();
    assert!(store.cancellation_refunds_due(10).await.unwrap().is_empty(), "nothing cancelled");

    let cancel = EventUpdate { status: Some(EventStatus::Cancelled), ..EventUpdate::default() };
    store.update_event(event.id, cancel).await.unwrap();
    let late = new_order(&event, &map, &alice, &[4], T0 + 1);
    let refused = store.create_order(late.clone()).await;
    assert!(matches!(refused, Err(StoreError::EventCancelled(id)) if id == event.id), "{refused:?}");
    assert_eq!(store.order_for_hold(&late.hold).await.unwrap(), None, "nothing inserted");
    // Cancelled is final, checked inside the update's transaction.
    let publish = EventUpdate { status: Some(EventStatus::Published), ..EventUpdate::default() };
    let refused = store.update_event(event.id, publish).await;
    assert!(matches!(refused, Err(StoreError::EventCancelled(id)) if id == event.id), "{refused:?}");
    let rename = EventUpdate { name: Some("Still cancelled".into()), ..EventUpdate::default() };
    assert_eq!(store.update_event(event.id, rename).await.unwrap().status, EventStatus::Cancelled);

    let mut expected = vec![(event.id, first.id.clone()), (event.id, second.id.clone())];
    expected.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(store.cancellation_refunds_due(10).await.unwrap(), expected, "once per order");
    assert_eq!(store.cancellation_refunds_due(1).await.unwrap(), expected[..1]);
    let refund = RefundRequest {
        order: first.id.clone(),
        tickets: None,
        allow_scanned: true,
        refund_id: "rf_cancel".into(),
        now: T0 + 2,
    };
    store.refund_tickets(refund).await.unwrap();
    assert_eq!(store.cancellation_refunds_due(10).await.unwrap(), [(event.id, second.id.clone())]);
}

on_every_backend!(a_cancelled_event_sells_nothing_more_and_lists_its_orders_to_refund);

async fn refunds_finishing_together_settle_the_payment(h: &impl Harness) {
    let (map, event) = venue_and_event(h.store()).await;
    let store = h.shared();
    for round in 0..5u32 {
        let attempt = new_attempt(&event, &user("alice"), &[round * 2, round * 2 + 1], T0);
        store.create_attempt(attempt.clone()).await.unwrap();
        store.update_attempt(authorize(&attempt.id, T0 - 10)).await.unwrap();
        let order = store.create_order(order_for(&attempt, &event, &map, T0 - 1)).await.unwrap();
        let mut refund_ids = Vec::new();
        for ticket in &order.tickets {
            let id = format!("rf_{round}_{}", ticket.seat_index);
            let request = RefundRequest {
                order: order.id.clone(),
                tickets: Some(vec![ticket.id.clone()]),
                allow_scanned: false,
                refund_id: id.clone(),
                now: T0,
            };
            store.refund_tickets(request).await.unwrap().refund.expect("voided");
            refund_ids.push(id);
        }
        // The gateway confirms both refunds at once: whichever finishes last sees the other
        // finished, and the payment ends refunded.
        let mut tasks = tokio::task::JoinSet::new();
        for id in refund_ids {
            let store = store.clone();
            tasks.spawn(async move { store.finish_refund(&id, T0 + 1).await.unwrap() });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap();
        }
        assert_eq!(store.attempt(&attempt.id).await.unwrap().state, AttemptState::Refunded, "round {round}");
    }
    assert!(store.pending_refunds(100).await.unwrap().is_empty());
}

on_every_backend!(refunds_finishing_together_settle_the_payment);

// --- transfers and revocations ---

/// A transfer of `ticket` from `from` to `to`, issuing revision `revision`.
fn transfer_of(ticket: &boxoffice_store::Ticket, from: &UserId, to: &UserId, now: UnixMs) -> TicketTransfer {
    let new_ticket = TicketId::random();
    TicketTransfer {
        ticket: ticket.id.clone(),
        from: from.clone(),
        to: to.clone(),
        new_qr_payload: Some(format!("qr-of-{new_ticket}")),
        new_ticket,
        new_revision: ticket.revision + 1,
        now,
    }
}

/// Every revocation of the event, read a page of `limit` at a time.
async fn all_revocations(store: &dyn Store, event: EventId, limit: u32) -> Vec<Revocation> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = store.revocations_after(event, after, limit).await.unwrap();
        let Some(last) = page.last() else { return all };
        assert!(page.len() <= limit as usize);
        after = last.seq;
        all.extend(page);
    }
}

async fn a_transfer_reissues_the_ticket_and_revokes_the_old_revision(h: &impl Harness) {
    let store = h.store();
    let (map, event) = venue_and_event(store).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let order = store.create_order(new_order(&event, &map, &alice, &[3, 4], T0)).await.unwrap();
    let given = order.tickets[0].clone();
    let transfer = transfer_of(&given, &alice, &bob, T0 + 10);

    let issued = store.transfer_ticket(transfer.clone()).await.unwrap();
    assert_eq!(
        (&issued.id, &issued.user, issued.revision, issued.status, issued.seat_index, &issued.order_id),
        (&transfer.new_ticket, &bob, 2, TicketStatus::Valid, 3, &order.id)
    );
    assert_eq!(issued.qr_payload, transfer.new_qr_payload);
    assert_eq!((&issued.seat_label, issued.price, issued.event), (&given.seat_label, given.price, event.id));
    assert_eq!(store.ticket(&issued.id).await.unwrap(), issued, "reads back as returned");
    let old = store.ticket(&given.id).await.unwrap();
    assert_eq!((old.status, &old.user, old.revision), (TicketStatus::Transferred, &alice, 1));

    // The seat stays sold, now to bob; the old revision admits nobody, the new one does.
    assert_eq!(store.sold_seats(event.id).await.unwrap(), vec![sold(3, &bob), sold(4, &alice)]);
    assert_eq!(store.revenue_minor_units(event.id).await.unwrap(), 10_000, "a transfer sells nothing");
    assert!(matches!(store.scan_ticket(&given.id, 1, T0 + 20).await.unwrap(), ScanOutcome::Revoked(_)));
    assert!(matches!(store.scan_ticket(&issued.id, 2, T0 + 20).await.unwrap(), ScanOutcome::Admitted(_)));

    // The revocation carries the audit record's position; the record names the recipient.
    let revoked = all_revocations(store, event.id, 10).await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        (&revoked[0].ticket, revoked[0].revision, revoked[0].reason, revoked[0].revoked_at),
        (&given.id, 1, RevocationReason::Transferred, T0 + 10)
    );
    let audit = store.audit_after(event.id, 0, 100).await.unwrap();
    let record = audit.iter().find(|r| r.seq == revoked[0].seq).expect("the transfer's audit record");
    assert_eq!(record.record.kind, AuditType::TicketTransferred);
    assert_eq!(
        (record.record.seat, &record.record.user, record.record.order.as_ref(), record.record.at),
        (3, &bob, Some(&order.id), T0 + 10)
    );
    assert_eq!(audit.last().unwrap().seq, record.seq, "the last record");
    // The transfer's outbox row, then the admitted scan's (for integrator webhooks).
    let pending = store.outbox_pending(10).await.unwrap();
    let topics: Vec<(&str, &str)> = pending.iter().map(|m| (m.topic.as_str(), m.key.as_str())).collect();
    assert_eq!(
        topics[topics.len() - 2..],
        [(TOPIC_TICKET_TRANSFERRED, issued.id.as_str()), (TOPIC_TICKET_SCANNED, issued.id.as_str())]
    );
    let message = &pending[pending.len() - 2];
    let payload: serde_json::Value = serde_json::from_str(&message.payload).unwrap();
    assert_eq!(payload["previous_ticket_id"], given.id.as_str());
    assert_eq!((payload["from_user"].as_str(), payload["to_user"].as_str()), (Some("alice"), Some("bob")));

    // Each sees their own tickets, newest first; the order lists every ticket issued under it.
    let bobs = store.tickets_of_user(&bob, 10, None).await.unwrap();
    let listed: Vec<_> = bobs.items.iter().map(|t| (t.id.clone(), t.status, t.revision)).collect();
    assert_eq!((listed, bobs.next_cursor), (vec![(issued.id.clone(), TicketStatus::Scanned, 2)], None));
    let alices = store.tickets_of_user(&alice, 10, None).await.unwrap().items;
    assert_eq!(alices.len(), 2);
    assert!(alices.iter().any(|t| t.id == given.id && t.status == TicketStatus::Transferred));
    assert_eq!(store.order(&order.id).await.unwrap().tickets.len(), 3);

    // Scanned, it stays; valid again (behind the store's back), bob passes it on: revision
    // 3, and revision 2 joins the list.
    let carol = user("carol");
    let again = store
        .transfer_ticket(transfer_of(&store.ticket(&issued.id).await.unwrap(), &bob, &carol, T0 + 30))
        .await;
    assert!(
        matches!(again, Err(StoreError::TicketNotTransferable { status: TicketStatus::Scanned, .. })),
        "{again:?}"
    );
    h.set_ticket_status(&issued.id, "valid").await;
    let third = store.transfer_ticket(transfer_of(&issued, &bob, &carol, T0 + 40)).await.unwrap();
    assert_eq!((third.revision, &third.user), (3, &carol));
    let revoked = all_revocations(store, event.id, 1).await;
    assert_eq!(
        revoked.iter().map(|r| (r.ticket.clone(), r.revision)).collect::<Vec<_>>(),
        vec![(given.id.clone(), 1), (issued.id.clone(), 2)]
    );
    assert!(revoked[0].seq < revoked[1].seq);
    assert_eq!(store.revocations_after(event.id, revoked[1].seq, 10).await.unwrap(), vec![]);
}

on_every_backend!(a_transfer_reissues_the_ticket_and_revokes_the_old_revision);

async fn transfers_of_tickets_not_valid_or_not_the_callers_change_nothing(h: &impl Harness) {
    let store = h.store();
    let (map, event) = venue_and_event(store).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let order = store.create_order(new_order(&event, &map, &alice, &[1, 2, 3, 4], T0)).await.unwrap();
    let [t1, t2, t3, t4] = <[boxoffice_store::Ticket; 4]>::try_from(order.tickets.clone()).unwrap();

    let theirs = store.transfer_ticket(transfer_of(&t1, &bob, &bob, T0)).await;
    assert!(matches!(theirs, Err(StoreError::NotFound)), "not bob's: {theirs:?}");
    let unknown = TicketTransfer { ticket: TicketId::random(), ..transfer_of(&t1, &alice, &bob, T0) };
    assert!(matches!(store.transfer_ticket(unknown).await, Err(StoreError::NotFound)));
    let skipped = TicketTransfer { new_revision: 3, ..transfer_of(&t1, &alice, &bob, T0) };
    assert!(
        matches!(store.transfer_ticket(skipped).await, Err(StoreError::Invalid(_))),
        "revision 1 + 1 only"
    );

    store.scan_ticket(&t2.id, 1, T0).await.unwrap();
    let refund = RefundRequest {
        order: order.id.clone(),
        tickets: Some(vec![t3.id.clone()]),
        allow_scanned: false,
        refund_id: "rf_t3".into(),
        now: T0,
    };
    store.refund_tickets(refund).await.unwrap();
    store.transfer_ticket(transfer_of(&t4, &alice, &bob, T0)).await.unwrap();
    for (ticket, status) in
        [(&t2, TicketStatus::Scanned), (&t3, TicketStatus::Voided), (&t4, TicketStatus::Transferred)]
    {
        match store.transfer_ticket(transfer_of(ticket, &alice, &bob, T0 + 1)).await {
            Err(StoreError::TicketNotTransferable { ticket: id, status: found }) => {
                assert_eq!((id, found), (ticket.id.clone(), status))
            }
            other => panic!("expected TicketNotTransferable, got {other:?}"),
        }
    }
    let audit_head = store.audit_after(event.id, 0, 100).await.unwrap().len();
    let before = store.order(&order.id).await.unwrap();

    store
        .update_event(
            event.id,
            EventUpdate { status: Some(EventStatus::Cancelled), ..EventUpdate::default() },
        )
        .await
        .unwrap();
    let cancelled = store.transfer_ticket(transfer_of(&t1, &alice, &bob, T0 + 2)).await;
    assert!(matches!(cancelled, Err(StoreError::EventCancelled(id)) if id == event.id), "{cancelled:?}");

    assert_eq!(store.order(&order.id).await.unwrap(), before, "refused transfers change nothing");
    assert_eq!(store.audit_after(event.id, 0, 100).await.unwrap().len(), audit_head);
    assert_eq!(store.tickets_of_user(&bob, 10, None).await.unwrap().items.len(), 1, "only t4's reissue");
}

on_every_backend!(transfers_of_tickets_not_valid_or_not_the_callers_change_nothing);

async fn refunds_are_revoked_and_a_fan_refund_spares_tickets_given_away(h: &impl Harness) {
    let store = h.store();
    let (map, event) = venue_and_event(store).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let order = store.create_order(new_order(&event, &map, &alice, &[5, 6], T0)).await.unwrap();
    let (given, kept) = (order.tickets[0].clone(), order.tickets[1].clone());
    let bobs = store.transfer_ticket(transfer_of(&given, &alice, &bob, T0 + 1)).await.unwrap();
    let request = |tickets: Option<Vec<TicketId>>, allow_scanned: bool, id: &str| RefundRequest {
        order: order.id.clone(),
        tickets,
        allow_scanned,
        refund_id: id.into(),
        now: T0 + 5,
    };

    // The buyer refunding "everything" refunds what they still hold.
    let refund = store.refund_tickets(request(None, false, "rf_fan")).await.unwrap().refund.expect("voided");
    assert_eq!(refund.tickets, vec![kept.id.clone()]);
    assert_eq!(store.ticket(&bobs.id).await.unwrap().status, TicketStatus::Valid, "bob keeps his ticket");
    match store.refund_tickets(request(Some(vec![bobs.id.clone()]), false, "rf_fan_2")).await {
        Err(StoreError::TicketTransferred(id)) => assert_eq!(id, bobs.id),
        other => panic!("expected TicketTransferred, got {other:?}"),
    }
    assert_eq!(store.ticket(&bobs.id).await.unwrap().status, TicketStatus::Valid);
    // An admin (or the event's cancellation) refunds it.
    let admin = store.refund_tickets(request(None, true, "rf_admin")).await.unwrap().refund.expect("voided");
    assert_eq!(admin.tickets, vec![bobs.id.clone()]);
    assert!(matches!(store.scan_ticket(&bobs.id, 2, T0 + 6).await.unwrap(), ScanOutcome::Revoked(_)));

    let revoked = all_revocations(store, event.id, 2).await;
    let entries: Vec<_> = revoked.iter().map(|r| (r.ticket.clone(), r.revision, r.reason)).collect();
    assert_eq!(
        entries,
        vec![
            (given.id.clone(), 1, RevocationReason::Transferred),
            (kept.id.clone(), 1, RevocationReason::Refunded),
            (bobs.id.clone(), 2, RevocationReason::Refunded),
        ]
    );
    // Each entry sits at its audit record: TICKET_TRANSFERRED or SEAT_REFUNDED of its seat.
    let audit = store.audit_after(event.id, 0, 100).await.unwrap();
    for r in &revoked {
        let record = &audit.iter().find(|a| a.seq == r.seq).expect("an audit record at the same seq").record;
        let kind = match r.reason {
            RevocationReason::Transferred => AuditType::TicketTransferred,
            RevocationReason::Refunded => AuditType::SeatRefunded,
        };
        let seat = if r.ticket == kept.id { 6 } else { 5 };
        assert_eq!((record.kind, record.seat), (kind, seat), "{r:?}");
    }
    assert!(store.revocations_after(EventId(event.id.0 + 1000), 0, 10).await.unwrap().is_empty());
}

on_every_backend!(refunds_are_revoked_and_a_fan_refund_spares_tickets_given_away);

async fn concurrent_transfers_of_one_ticket_have_one_winner(h: &impl Harness) {
    let (map, event) = venue_and_event(h.store()).await;
    let store = h.shared();
    let alice = user("alice");
    let order = store.create_order(new_order(&event, &map, &alice, &[9], T0)).await.unwrap();
    let ticket = order.tickets[0].clone();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8 {
        let (store, ticket, alice) = (store.clone(), ticket.clone(), alice.clone());
        tasks.spawn(async move {
            let to = user(&format!("friend{n}"));
            store.transfer_ticket(transfer_of(&ticket, &alice, &to, T0 + 1)).await
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            Ok(issued) => winners.push(issued),
            Err(StoreError::TicketNotTransferable { status: TicketStatus::Transferred, .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(store.sold_seats(event.id).await.unwrap(), vec![sold(9, &winners[0].user)]);
    assert_eq!(all_revocations(&*store, event.id, 10).await.len(), 1);
}

on_every_backend!(concurrent_transfers_of_one_ticket_have_one_winner);

async fn static_tickets_are_allowed_until_an_update_refuses_them<H: Harness>(h: H) {
    let (_, event) = venue_and_event(h.store()).await;
    assert!(event.static_tickets_allowed, "on by default");
    let refuse = EventUpdate { static_tickets_allowed: Some(false), ..EventUpdate::default() };
    assert!(!h.store().update_event(event.id, refuse).await.unwrap().static_tickets_allowed);
    let renamed = EventUpdate { name: Some("Renamed".into()), ..EventUpdate::default() };
    assert!(!h.store().update_event(event.id, renamed).await.unwrap().static_tickets_allowed, "kept");
    let h = h.reopen().await;
    assert!(!h.store().event(event.id).await.unwrap().static_tickets_allowed, "durable");
    let allow = EventUpdate { static_tickets_allowed: Some(true), ..EventUpdate::default() };
    assert!(h.store().update_event(event.id, allow).await.unwrap().static_tickets_allowed);
}

on_every_backend!(static_tickets_are_allowed_until_an_update_refuses_them, by_value);

// --- webhooks ---

fn new_webhook(url: &str, events: &[&str], max_enabled: u32) -> boxoffice_store::NewWebhook {
    boxoffice_store::NewWebhook {
        url: url.into(),
        secret: "s3cret-s3cret-s3cret".into(),
        events: events.iter().map(|e| e.to_string()).collect(),
        created_at: T0,
        max_enabled,
    }
}

async fn webhook_deliveries_are_fanned_out_once_and_claimed_in_order_per_event(h: &impl Harness) {
    use boxoffice_store::{DeliveryAttempt, DeliveryOutcome, DeliveryStatus, TOPIC_TICKET_SCANNED};
    let store = h.store();
    let orders_hook = store
        .create_webhook(new_webhook("http://127.0.0.1:9/a", &[TOPIC_ORDER_CREATED, TOPIC_TICKET_SCANNED], 2))
        .await
        .unwrap()
        .expect("under the limit");
    let refunds_hook = store
        .create_webhook(new_webhook("http://127.0.0.1:9/b", &[TOPIC_ORDER_REFUNDED], 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.create_webhook(new_webhook("http://x/c", &[TOPIC_ORDER_CREATED], 2)).await.unwrap(),
        None
    );
    assert_eq!(store.webhook(orders_hook.id).await.unwrap(), orders_hook);
    assert_eq!(orders_hook.secret, "s3cret-s3cret-s3cret");

    let (map, event) = venue_and_event(store).await;
    let alice = user("alice");
    let first = store.create_order(new_order(&event, &map, &alice, &[1], T0)).await.unwrap();
    store.create_order(new_order(&event, &map, &alice, &[2], T0 + 1)).await.unwrap();
    assert!(matches!(
        store.scan_ticket(&first.tickets[0].id, 1, T0 + 2).await.unwrap(),
        ScanOutcome::Admitted(_)
    ));
    let topics: Vec<String> = store.outbox_pending(10).await.unwrap().into_iter().map(|m| m.topic).collect();
    assert_eq!(
        topics,
        [TOPIC_ORDER_CREATED, TOPIC_ORDER_CREATED, TOPIC_TICKET_SCANNED],
        "the scan wrote its row"
    );

    let fanned = store.webhook_fan_out(10, T0).await.unwrap();
    assert_eq!(
        (fanned.read, fanned.deliveries),
        (3, 3),
        "three rows for the first endpoint, none for the second"
    );
    assert_eq!(store.webhook_fan_out(10, T0).await.unwrap().read, 0, "each row once");
    assert!(store.webhook_deliveries(refunds_hook.id, 10, None).await.unwrap().items.is_empty());

    // One event: only the oldest pending delivery may be attempted.
    let claimed = store.webhook_claim(T0, 1_000, 10, "lease-1").await.unwrap();
    assert_eq!(claimed.len(), 1);
    let oldest = &claimed[0];
    assert_eq!((oldest.delivery.kind.as_str(), oldest.delivery.attempts), (TOPIC_ORDER_CREATED, 1));
    assert_eq!(oldest.delivery.event_key, event.id.to_string());
    assert_eq!(oldest.url, "http://127.0.0.1:9/a");
    assert!(
        store.webhook_claim(T0, 1_000, 10, "lease-2").await.unwrap().is_empty(),
        "claimed, and the rest wait"
    );

    let result = |lease: &str, outcome| DeliveryAttempt {
        delivery_id: oldest.delivery.id,
        lease: lease.into(),
        at: T0 + 10,
        status_code: Some(500),
        error: Some("the endpoint answered 500".into()),
        outcome,
    };
    let retry = DeliveryOutcome::Retry { next_attempt_at: T0 + 500 };
    assert!(!store.webhook_record(result("lease-2", retry)).await.unwrap(), "not under another claim");
    assert!(store.webhook_record(result("lease-1", retry)).await.unwrap());
    assert!(
        store.webhook_claim(T0 + 100, 1_000, 10, "lease-3").await.unwrap().is_empty(),
        "backing off, in order"
    );
    let again = store.webhook_claim(T0 + 500, 1_000, 10, "lease-4").await.unwrap();
    assert_eq!((again.len(), again[0].delivery.id, again[0].delivery.attempts), (1, oldest.delivery.id, 2));
    assert_eq!(again[0].delivery.first_attempt_at, Some(T0), "the retry window starts at the first attempt");
    let delivered = DeliveryAttempt {
        status_code: Some(200),
        error: None,
        ..result("lease-4", DeliveryOutcome::Delivered)
    };
    assert!(store.webhook_record(delivered).await.unwrap());
    let next = store.webhook_claim(T0 + 600, 1_000, 10, "lease-5").await.unwrap();
    assert_eq!(next.len(), 1, "the next of the event, now that the older one is delivered");
    assert!(next[0].delivery.id > oldest.delivery.id);

    // The log, newest first, paged.
    let page = store.webhook_deliveries(orders_hook.id, 2, None).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = store.webhook_deliveries(orders_hook.id, 2, page.next_cursor.as_deref()).await.unwrap();
    assert_eq!((rest.items.len(), rest.next_cursor), (1, None));
    let first_logged = &rest.items[0];
    assert_eq!(first_logged.id, oldest.delivery.id);
    assert_eq!(
        (
            first_logged.status,
            first_logged.attempts,
            first_logged.last_status_code,
            first_logged.delivered_at
        ),
        (DeliveryStatus::Delivered, 2, Some(200), Some(T0 + 10))
    );
    assert!(matches!(store.webhook_deliveries(999, 2, None).await, Err(StoreError::NotFound)));
    assert!(matches!(
        store.webhook_deliveries(orders_hook.id, 2, Some("x")).await,
        Err(StoreError::BadCursor)
    ));

    // A redelivery queues it again with a new window; under another endpoint it is unknown.
    let queued = store.webhook_redeliver(orders_hook.id, oldest.delivery.id, T0 + 700).await.unwrap();
    assert_eq!(
        (queued.status, queued.next_attempt_at, queued.first_attempt_at),
        (DeliveryStatus::Pending, T0 + 700, None)
    );
    assert!(matches!(
        store.webhook_redeliver(refunds_hook.id, oldest.delivery.id, T0).await,
        Err(StoreError::NotFound)
    ));

    // A disabled endpoint gets nothing more; a message appended on its own is fanned out.
    store.disable_webhook(orders_hook.id, T0).await.unwrap();
    assert!(store.webhook_claim(T0 + 800, 1_000, 10, "lease-6").await.unwrap().is_empty());
    let seq = store
        .outbox_append(TOPIC_ORDER_REFUNDED, "or_x", &serde_json::json!({"event_id": "ev_7"}), T0)
        .await
        .unwrap();
    let fanned = store.webhook_fan_out(10, T0).await.unwrap();
    assert_eq!((fanned.read, fanned.deliveries, fanned.position), (1, 1, seq));
    let log = store.webhook_deliveries(refunds_hook.id, 10, None).await.unwrap();
    assert_eq!((log.items[0].outbox_seq, log.items[0].event_key.as_str()), (seq, "ev_7"));
    let listed = store.webhooks().await.unwrap();
    assert_eq!(
        listed.iter().map(|w| (w.id, w.enabled)).collect::<Vec<_>>(),
        [(orders_hook.id, false), (refunds_hook.id, true)]
    );
    assert_eq!(store.meta_get(boxoffice_store::WEBHOOK_CURSOR_KEY).await.unwrap(), Some(seq.to_string()));
}

on_every_backend!(webhook_deliveries_are_fanned_out_once_and_claimed_in_order_per_event);

async fn a_sold_out_event_is_announced_once(h: &impl Harness) {
    use boxoffice_store::TOPIC_EVENT_SOLD_OUT;
    let store = h.store();
    let (map, event) = venue_and_event(store).await;
    let alice = user("alice");
    let all_but_one: Vec<u32> = (0..map.len() as u32 - 1).collect();
    store.create_order(new_order(&event, &map, &alice, &all_but_one, T0)).await.unwrap();
    store.webhook_fan_out(10, T0).await.unwrap();
    let last =
        store.create_order(new_order(&event, &map, &alice, &[map.len() as u32 - 1], T0)).await.unwrap();
    store.webhook_fan_out(10, T0).await.unwrap();
    let sold_out = |rows: Vec<boxoffice_store::OutboxMessage>| {
        rows.into_iter().filter(|m| m.topic == TOPIC_EVENT_SOLD_OUT).collect::<Vec<_>>()
    };
    let announced = sold_out(store.outbox_pending(10).await.unwrap());
    assert_eq!(announced.len(), 1, "after the order that sold the last seat");
    assert_eq!(announced[0].key, event.id.to_string());

    // Sold out again after a refund and a new sale: still announced once.
    let refund = RefundRequest {
        order: last.id.clone(),
        tickets: None,
        allow_scanned: false,
        refund_id: "rf_1".into(),
        now: T0,
    };
    store.refund_tickets(refund).await.unwrap();
    store.create_order(new_order(&event, &map, &alice, &[map.len() as u32 - 1], T0)).await.unwrap();
    store.webhook_fan_out(10, T0).await.unwrap();
    assert_eq!(sold_out(store.outbox_pending(20).await.unwrap()).len(), 1);
}

on_every_backend!(a_sold_out_event_is_announced_once);

// --- allocations and presale codes ---

fn allocation(
    event: &Event,
    name: &str,
    seats: &[u32],
    release_at: UnixMs,
) -> boxoffice_store::NewAllocation {
    boxoffice_store::NewAllocation {
        event: event.id,
        name: name.into(),
        seats: seats.to_vec(),
        release_at,
        roles: vec!["staff".into()],
    }
}

async fn allocations_read_back_and_refuse_a_taken_name_or_seat(h: &impl Harness) {
    let store = h.store();
    let (_, event) = venue_and_event(store).await;
    let head = store.catalog_change_head().await.unwrap();
    let presale = store.create_allocation(allocation(&event, "presale", &[0, 1, 2], T0)).await.unwrap();
    assert_eq!((presale.name.as_str(), presale.seats.as_slice()), ("presale", &[0, 1, 2][..]));
    let changes = store.catalog_changes_after(head, 10).await.unwrap();
    assert_eq!(changes.len(), 1, "followers hear of the new allocation");
    let same_name = store.create_allocation(allocation(&event, "presale", &[7], T0)).await;
    assert!(matches!(same_name, Err(StoreError::Invalid(_))), "{same_name:?}");
    let shared_seat = store.create_allocation(allocation(&event, "fanclub", &[2, 3], T0)).await;
    assert!(matches!(shared_seat, Err(StoreError::Invalid(_))), "{shared_seat:?}");
    store.create_allocation(allocation(&event, "fanclub", &[3, 4], T0 + HOUR)).await.unwrap();
    let listed = store.allocations(event.id).await.unwrap();
    assert_eq!(listed.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["presale", "fanclub"]);
    assert_eq!(listed[1].release_at, T0 + HOUR);
    assert_eq!(listed[1].roles, vec!["staff".to_owned()]);
    let missing =
        boxoffice_store::NewAllocation { event: EventId(987_654), ..allocation(&event, "y", &[1], T0) };
    assert!(matches!(store.create_allocation(missing).await, Err(StoreError::NotFound)));
}

on_every_backend!(allocations_read_back_and_refuse_a_taken_name_or_seat);

async fn presale_codes_count_uses_and_seats_within_their_limits(h: &impl Harness) {
    let store = h.store();
    let (_, event) = venue_and_event(store).await;
    store.create_allocation(allocation(&event, "presale", &[0, 1, 2, 3], T0 + HOUR)).await.unwrap();
    let codes = |hashes: &[&str]| boxoffice_store::NewPresaleCodes {
        event: event.id,
        allocation: "presale".into(),
        code_hashes: hashes.iter().map(|h| (*h).to_owned()).collect(),
        max_seats_per_code: 4,
        max_uses: 2,
        expires_at: T0 + HOUR,
    };
    store.create_presale_codes(codes(&["aa", "bb"])).await.unwrap();
    let unknown_allocation = boxoffice_store::NewPresaleCodes { allocation: "nope".into(), ..codes(&["cc"]) };
    assert!(matches!(store.create_presale_codes(unknown_allocation).await, Err(StoreError::NotFound)));

    let read = store.presale_code(event.id, "aa").await.unwrap().unwrap();
    assert_eq!((read.allocation.as_str(), read.uses, read.seats_used, read.max_uses), ("presale", 0, 0, 2));
    assert!(store.presale_code(event.id, "zz").await.unwrap().is_none());
    assert!(
        store.presale_code(EventId(987_654), "aa").await.unwrap().is_none(),
        "codes belong to their event"
    );

    // Seats: 3 then 2 more would pass 4; 1 more fits and is the second (last) use.
    assert!(store.use_presale_code(event.id, "aa", 3, T0).await.unwrap());
    assert!(!store.use_presale_code(event.id, "aa", 2, T0).await.unwrap());
    assert!(store.use_presale_code(event.id, "aa", 1, T0).await.unwrap());
    assert!(!store.use_presale_code(event.id, "aa", 0, T0).await.unwrap(), "no third use");
    let used = store.presale_code(event.id, "aa").await.unwrap().unwrap();
    assert_eq!((used.uses, used.seats_used), (2, 4));
    // A use given back (its hold was not made) can be taken again.
    store.return_presale_code_use(event.id, "aa", 1).await.unwrap();
    assert!(store.use_presale_code(event.id, "aa", 1, T0).await.unwrap());
    // Expired: refused at and after `expires_at`.
    assert!(!store.use_presale_code(event.id, "bb", 1, T0 + HOUR).await.unwrap());
    assert!(store.use_presale_code(event.id, "bb", 1, T0 + HOUR - 1).await.unwrap());
}

on_every_backend!(presale_codes_count_uses_and_seats_within_their_limits);

async fn concurrent_uses_of_a_code_never_pass_its_limit(h: &impl Harness) {
    let store = h.shared();
    let (_, event) = venue_and_event(&*store).await;
    store.create_allocation(allocation(&event, "presale", &[0, 1], T0 + HOUR)).await.unwrap();
    let codes = boxoffice_store::NewPresaleCodes {
        event: event.id,
        allocation: "presale".into(),
        code_hashes: vec!["aa".into()],
        max_seats_per_code: 100,
        max_uses: 3,
        expires_at: T0 + HOUR,
    };
    store.create_presale_codes(codes).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let store = store.clone();
        tasks.spawn(async move { store.use_presale_code(event.id, "aa", 1, T0).await.unwrap() });
    }
    let mut counted = 0;
    while let Some(used) = tasks.join_next().await {
        counted += usize::from(used.unwrap());
    }
    assert_eq!(counted, 3);
    assert_eq!(store.presale_code(event.id, "aa").await.unwrap().unwrap().uses, 3);
}

on_every_backend!(concurrent_uses_of_a_code_never_pass_its_limit);

// --- the sold-out waitlist ---

fn waitlist_entry(event: &Event, id: &str, who: &str) -> boxoffice_store::NewWaitlistEntry {
    boxoffice_store::NewWaitlistEntry {
        id: id.into(),
        event: event.id,
        user: user(who),
        email: Some(format!("{who}@example.com")),
        group_size: 2,
        sections: vec!["A".into()],
        max_price: Some(5_000),
        adjacent: true,
        now: T0,
    }
}

async fn waitlist_entries_keep_join_order_one_active_per_user_and_change_by_compare_and_set(
    h: &impl Harness,
) {
    use boxoffice_store::{WaitlistChange, WaitlistJoin, WaitlistState};
    let store = h.store();
    let (_, event) = venue_and_event(store).await;
    let joined = |j: WaitlistJoin| match j {
        WaitlistJoin::Joined(e) => e,
        other => panic!("expected a new entry, got {other:?}"),
    };
    let ann = joined(store.waitlist_join(waitlist_entry(&event, "wl_a", "ann"), 3).await.unwrap());
    assert_eq!((ann.seq, ann.state, ann.group_size, ann.adjacent), (1, WaitlistState::Waiting, 2, true));
    let bob = joined(store.waitlist_join(waitlist_entry(&event, "wl_b", "bob"), 3).await.unwrap());
    assert_eq!(bob.seq, 2);
    // Joining again returns the active entry.
    match store.waitlist_join(waitlist_entry(&event, "wl_a2", "ann"), 3).await.unwrap() {
        WaitlistJoin::Existing(e) => assert_eq!(e.id, "wl_a"),
        other => panic!("{other:?}"),
    }
    joined(store.waitlist_join(waitlist_entry(&event, "wl_c", "cat"), 3).await.unwrap());
    assert_eq!(
        store.waitlist_join(waitlist_entry(&event, "wl_d", "dan"), 3).await.unwrap(),
        WaitlistJoin::Full(3)
    );
    let missing =
        boxoffice_store::NewWaitlistEntry { event: EventId(987_654), ..waitlist_entry(&event, "wl_x", "x") };
    assert!(matches!(store.waitlist_join(missing, 3).await, Err(StoreError::NotFound)));

    let read = store.waitlist_entry("wl_a").await.unwrap().unwrap();
    assert_eq!(read, ann);
    assert_eq!(read.email.as_deref(), Some("ann@example.com"));
    assert_eq!(read.sections, vec!["A".to_owned()]);
    assert_eq!(read.max_price, Some(5_000));
    assert_eq!(store.waitlist_position(event.id, bob.seq).await.unwrap(), 2);
    assert_eq!(store.waitlist_active_of(event.id, &user("bob")).await.unwrap(), Some(bob.clone()));
    assert_eq!(store.waitlist_active_of(event.id, &user("eve")).await.unwrap(), None);

    let hold = HoldId::random(event.id);
    let offer = WaitlistChange {
        state: WaitlistState::Offered,
        hold: Some(hold),
        offer_expires_at: Some(T0 + HOUR),
        now: T0 + 1,
    };
    assert!(store.waitlist_update("wl_a", WaitlistState::Waiting, offer.clone()).await.unwrap());
    // A second offer to the same entry (another matcher) is refused.
    assert!(!store.waitlist_update("wl_a", WaitlistState::Waiting, offer).await.unwrap());
    let offered = store.waitlist_entry("wl_a").await.unwrap().unwrap();
    assert_eq!(
        (offered.state, offered.hold, offered.offer_expires_at),
        (WaitlistState::Offered, Some(hold), Some(T0 + HOUR))
    );
    assert_eq!(store.waitlist_position(event.id, bob.seq).await.unwrap(), 1, "ann no longer waits");
    let done = WaitlistChange { state: WaitlistState::Done, hold: None, offer_expires_at: None, now: T0 + 2 };
    assert!(store.waitlist_update("wl_a", WaitlistState::Offered, done).await.unwrap());
    let ended = store.waitlist_entry("wl_a").await.unwrap().unwrap();
    assert_eq!((ended.state, ended.hold), (WaitlistState::Done, Some(hold)), "the hold is kept");
    let active: Vec<String> =
        store.waitlist_active(Some(event.id)).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(active, vec!["wl_b", "wl_c"]);
    assert_eq!(store.waitlist_active(None).await.unwrap().len(), 2);
    // Ended, ann may join again, at the back.
    let again = joined(store.waitlist_join(waitlist_entry(&event, "wl_a3", "ann"), 3).await.unwrap());
    assert_eq!(again.seq, 4);
    assert!(store.waitlist_entry("wl_nope").await.unwrap().is_none());
}

on_every_backend!(waitlist_entries_keep_join_order_one_active_per_user_and_change_by_compare_and_set);
