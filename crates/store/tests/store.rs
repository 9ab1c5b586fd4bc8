//! The behaviour every [`Store`] backend owes its callers, written against the trait.
//!
//! Each test body takes a [`Harness`]: the store under test plus the few things the trait
//! cannot do (changing a ticket's status behind the store's back, reopening the same
//! database). The `#[tokio::test]` wrappers at the end of each section run the bodies on
//! SQLite; another backend reuses the bodies with its own harness.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use boxoffice_core::{
    Currency, EventId, HoldId, Money, OrderId, SeatMap, SectionSpec, TicketId, UnixMs, UserId,
};
use boxoffice_store::{
    AttemptState, AttemptUpdate, Event, EventFilter, EventStatus, KeyClaim, KeyScope, NewEvent, NewOrder,
    NewPaymentAttempt, NewTicket, NewVenue, Order, OrderStatus, Performer, RefundRequest, RefundState,
    ScanOutcome, SoldSeat, SqliteStore, Store, StoreError, TOPIC_ORDER_CREATED, TOPIC_ORDER_REFUNDED,
    TicketStatus, Venue,
};
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

#[tokio::test]
async fn sqlite_venues_and_events_read_back_as_created() {
    venues_and_events_read_back_as_created(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_unknown_catalog_ids_are_not_found() {
    unknown_catalog_ids_are_not_found(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_list_events_filters_by_city_category_and_time() {
    list_events_filters_by_city_category_and_time(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_list_events_pages_through_everything_once() {
    list_events_pages_through_everything_once(&sqlite().await).await;
}

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

#[tokio::test]
async fn sqlite_a_new_event_has_the_default_queue_settings() {
    a_new_event_has_the_default_queue_settings(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_an_event_update_changes_only_what_it_names() {
    an_event_update_changes_only_what_it_names(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_an_event_update_that_breaks_a_rule_changes_nothing() {
    an_event_update_that_breaks_a_rule_changes_nothing(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_event_updates_survive_a_reopen() {
    event_updates_survive_a_reopen(sqlite().await).await;
}

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

#[tokio::test]
async fn sqlite_orders_read_back_as_created() {
    orders_read_back_as_created(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_a_hold_is_ordered_at_most_once() {
    a_hold_is_ordered_at_most_once(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_a_sold_seat_cannot_be_sold_again() {
    a_sold_seat_cannot_be_sold_again(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_a_voided_ticket_frees_its_seat() {
    a_voided_ticket_frees_its_seat(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_orders_of_user_page_newest_first() {
    orders_of_user_page_newest_first(&sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_orders_sell_each_seat_once() {
    concurrent_orders_sell_each_seat_once(&sqlite().await).await;
}

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

/// The settings the module documentation promises: an order is on disk (WAL, fsynced at
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
    assert_eq!(number("synchronous").await, 2, "FULL");
    assert_eq!(number("foreign_keys").await, 1);
    assert_eq!(number("busy_timeout").await, 5_000);
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

#[tokio::test]
async fn sqlite_idempotency_keys_claim_replay_and_expire() {
    idempotency_keys_claim_replay_and_expire(&sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_claims_of_one_key_have_one_winner() {
    concurrent_claims_of_one_key_have_one_winner(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_meta_is_set_only_once() {
    meta_is_set_only_once(&sqlite().await).await;
}

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

#[tokio::test]
async fn sqlite_payment_attempts_change_state_by_compare_and_set() {
    payment_attempts_change_state_by_compare_and_set(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_an_order_commits_once_on_an_authorized_attempt_before_its_deadline() {
    an_order_commits_once_on_an_authorized_attempt_before_its_deadline(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_refunds_void_tickets_once_and_set_the_order_status() {
    refunds_void_tickets_once_and_set_the_order_status(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_tickets_scan_once_and_scanned_ones_refund_only_for_admins() {
    tickets_scan_once_and_scanned_ones_refund_only_for_admins(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_the_outbox_is_read_in_order_marked_sent_and_requeued() {
    the_outbox_is_read_in_order_marked_sent_and_requeued(&sqlite().await).await;
}

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

#[tokio::test]
async fn sqlite_everything_survives_a_reopen() {
    everything_survives_a_reopen(sqlite().await).await;
}

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

#[tokio::test]
async fn sqlite_every_catalog_write_adds_a_change_in_order() {
    every_catalog_write_adds_a_change_in_order(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_events_read_in_bulk_by_id_and_by_venue() {
    events_read_in_bulk_by_id_and_by_venue(&sqlite().await).await;
}

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
