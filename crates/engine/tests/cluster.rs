//! The Redis inventory on a Redis Cluster of three masters started by each test
//! (`support/redis_cluster.rs`): each event's keys live in one slot and events spread over
//! the masters; holds on events of different masters do not wait for each other; and a
//! slot migration under running holds is retried by the client, never an error, leaving
//! the event consistent. (The conformance suite runs on a cluster too: `engine.rs`,
//! `on_cluster::*`.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use boxoffice_core::{EventId, HoldId, SeatMap, SectionSpec, UserId};
use boxoffice_engine::{HoldRequest, Inventory, InventoryError, RedisConfig, RedisInventory, Selection};

#[path = "support/redis_cluster.rs"]
mod redis_cluster;

use redis_cluster::{MASTERS, RedisCluster};

const TTL: u64 = 600_000;

fn seat_map(rows: u32, seats_per_row: u32) -> Arc<SeatMap> {
    let specs = [SectionSpec { name: "A".into(), rows, seats_per_row, tier: None }];
    Arc::new(SeatMap::from_sections(SeatMap::default_tiers(), &specs).expect("valid layout"))
}

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("valid user id")
}

fn request(event: EventId, who: &str, selection: Selection) -> HoldRequest {
    HoldRequest {
        event,
        user: user(who),
        selection,
        ttl_ms: TTL,
        max_seats_per_user: u32::MAX,
        orphan_rule: false,
        blocked: None,
    }
}

fn random_prefix() -> String {
    use std::hash::{BuildHasher, RandomState};
    format!("bo-test-{:016x}:", RandomState::new().hash_one(std::time::SystemTime::now()))
}

/// A node of the inventory on `cluster` under `prefix` (time from Redis).
async fn node(cluster: &RedisCluster, prefix: &str) -> RedisInventory {
    let config = RedisConfig { key_prefix: prefix.to_owned(), ..RedisConfig::new(cluster.url()) };
    RedisInventory::connect(config).await.expect("the test cluster is reachable")
}

/// The slot of an event's hash tag.
fn event_slot(cluster: &RedisCluster, event: EventId) -> u16 {
    cluster.keyslot(&format!("{{ev:{}}}", event.0))
}

/// Whether an error is the backend failing (what a redirection must never surface as),
/// rather than an answer about seats or holds.
fn is_backend_error(e: &InventoryError) -> bool {
    matches!(e, InventoryError::Journal(_) | InventoryError::EventLost | InventoryError::UnknownEvent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_events_keys_share_one_slot_and_events_spread_over_the_masters() {
    let cluster = RedisCluster::start();
    let prefix = random_prefix();
    let inv = node(&cluster, &prefix).await;
    let map = seat_map(2, 10);
    let events: Vec<EventId> = (1..=30).map(EventId).collect();
    for &event in &events {
        inv.load_event(event, map.clone(), Vec::new()).await.unwrap();
        // Touch every kind of key: seats, users, holds, expiry, pins, ended, changes.
        let pinned = inv.hold(request(event, "ann", Selection::Seats(vec![0, 1]))).await.unwrap();
        inv.pin(pinned.id, "pa_1", u64::MAX / 4).await.unwrap();
        let released = inv.hold(request(event, "bob", Selection::Seats(vec![5]))).await.unwrap();
        inv.release(released.id).await.unwrap();
        inv.hold(request(event, "cat", Selection::BestAvailable { count: 2, section: None })).await.unwrap();
        inv.check_invariants(event).await.unwrap();
    }

    let mut by_event: BTreeMap<u64, Vec<(usize, String)>> = BTreeMap::new();
    for (master, key) in cluster.keys_with_prefix(&prefix) {
        let tag = key
            .strip_prefix(&format!("{prefix}{{ev:"))
            .and_then(|rest| rest.split_once('}'))
            .unwrap_or_else(|| panic!("{key} does not carry an event hash tag"));
        by_event.entry(tag.0.parse().unwrap()).or_default().push((master, key));
    }
    assert_eq!(by_event.keys().copied().collect::<Vec<_>>(), (1..=30).collect::<Vec<u64>>());
    let mut masters_used = BTreeSet::new();
    for (&id, keys) in &by_event {
        let slot = event_slot(&cluster, EventId(id));
        let owner = cluster.owner_of(slot);
        assert!(keys.len() >= 8, "event {id}: {keys:?}");
        for (master, key) in keys {
            assert_eq!(cluster.keyslot(key), slot, "{key} is outside its event's slot");
            assert_eq!(*master, owner, "{key} is not on the master that owns slot {slot}");
        }
        masters_used.insert(owner);
    }
    assert_eq!(masters_used.len(), MASTERS, "30 events land on every master");
    cluster.delete_prefix(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_on_events_of_different_masters_go_on_in_parallel() {
    let cluster = RedisCluster::start();
    let prefix = random_prefix();
    let inv = Arc::new(node(&cluster, &prefix).await);
    let map = seat_map(2, 10);
    // Two events whose slots are on different masters.
    let a = EventId(1);
    let master_a = cluster.owner_of(event_slot(&cluster, a));
    let b = (2..100)
        .map(EventId)
        .find(|&e| cluster.owner_of(event_slot(&cluster, e)) != master_a)
        .expect("an event on another master");
    for event in [a, b] {
        inv.load_event(event, map.clone(), Vec::new()).await.unwrap();
    }

    // A's master stops running writes (scripts included) until it is told to go on.
    let _: String = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(60_000)
        .arg("WRITE")
        .query(&mut cluster.conn(master_a))
        .unwrap();
    let (done, mut finished) = tokio::sync::mpsc::unbounded_channel();
    let hold_on = |event: EventId, label: &'static str| {
        let (inv, done) = (inv.clone(), done.clone());
        tokio::spawn(async move {
            let result = inv.hold(request(event, "ann", Selection::Seats(vec![3, 4]))).await;
            done.send(label).unwrap();
            result
        })
    };
    let on_a = hold_on(a, "a");
    let on_b = hold_on(b, "b");
    assert_eq!(finished.recv().await, Some("b"), "the hold on the other master completes first");
    assert_eq!(on_b.await.unwrap().unwrap().seats, vec![3, 4]);
    assert!(!on_a.is_finished(), "the hold on the paused master is still pending");

    let _: String = redis::cmd("CLIENT").arg("UNPAUSE").query(&mut cluster.conn(master_a)).unwrap();
    assert_eq!(finished.recv().await, Some("a"));
    assert_eq!(on_a.await.unwrap().unwrap().seats, vec![3, 4], "then it completes, not fails");
    for event in [a, b] {
        inv.check_invariants(event).await.unwrap();
        assert_eq!(inv.seat_counts(event).await.unwrap().held, 2);
    }
    cluster.delete_prefix(&prefix);
}

/// What the workers of the migration test did.
#[derive(Default)]
struct Tally {
    /// Live holds by id, with their seats.
    live: HashMap<HoldId, Vec<u32>>,
    /// Backend errors (must stay empty).
    failures: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_migration_under_running_holds_is_retried_never_an_error() {
    let cluster = Arc::new(RedisCluster::start());
    let prefix = random_prefix();
    // Two nodes of one inventory, as two servers would be.
    let nodes = [Arc::new(node(&cluster, &prefix).await), Arc::new(node(&cluster, &prefix).await)];
    let event = EventId(7);
    let map = seat_map(10, 20);
    for inv in &nodes {
        inv.load_event(event, map.clone(), Vec::new()).await.unwrap();
    }
    let slot = event_slot(&cluster, event);
    let from = cluster.owner_of(slot);
    let to = (from + 1) % MASTERS;

    let stop = Arc::new(AtomicBool::new(false));
    let migrating = Arc::new(AtomicBool::new(false));
    let (ops, ops_in_migration) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tally = Arc::new(parking_lot::Mutex::new(Tally::default()));
    let mut workers = Vec::new();
    for w in 0..8u32 {
        let inv = nodes[w as usize % 2].clone();
        let (stop, migrating, ops, ops_in_migration, tally) =
            (stop.clone(), migrating.clone(), ops.clone(), ops_in_migration.clone(), tally.clone());
        workers.push(tokio::spawn(async move {
            let who = format!("fan{w}");
            let mut mine: Vec<HoldId> = Vec::new();
            let mut i = 0u32;
            while !stop.load(Ordering::Acquire) {
                let during = migrating.load(Ordering::Acquire);
                // Named seats (each worker in its own row, so they race with best
                // available only), best available, and releases of its own holds.
                let result = match i % 3 {
                    0 => {
                        let seat = w * 20 + (i / 3) % 20;
                        inv.hold(request(event, &who, Selection::Seats(vec![seat]))).await.map(Some)
                    }
                    1 => {
                        let best = Selection::BestAvailable { count: 2, section: None };
                        inv.hold(request(event, &who, best)).await.map(Some)
                    }
                    _ => match mine.pop() {
                        Some(id) => inv.release(id).await.map(Some),
                        // Nothing to release: a read stands in for the step.
                        None => inv.seat_counts(event).await.map(|_| None),
                    },
                };
                let mut t = tally.lock();
                match result {
                    Ok(Some(view)) if view.status == boxoffice_core::HoldStatus::Held => {
                        t.live.insert(view.id, view.seats.clone());
                        mine.push(view.id);
                    }
                    Ok(Some(view)) => {
                        t.live.remove(&view.id);
                    }
                    Ok(None) => {}
                    Err(e) if is_backend_error(&e) => t.failures.push(format!("{e:?}")),
                    // A seat another worker took first, or none left: answers, not errors.
                    Err(_) => {}
                }
                drop(t);
                ops.fetch_add(1, Ordering::AcqRel);
                if during {
                    ops_in_migration.fetch_add(1, Ordering::AcqRel);
                }
                i += 1;
            }
        }));
    }

    let wait_for_ops = |n: u64| {
        let ops = ops.clone();
        async move {
            while ops.load(Ordering::Acquire) < n {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };
    wait_for_ops(100).await;
    let redirects_before: u64 =
        ["TRYAGAIN", "ASK", "MOVED"].iter().map(|code| cluster.error_count(from, code)).sum();
    migrating.store(true, Ordering::Release);
    let migration = {
        let cluster = cluster.clone();
        // One key at a time with pauses, so that scripts arrive in every phase.
        tokio::task::spawn_blocking(move || {
            cluster.migrate_slot(slot, to, 1, std::time::Duration::from_millis(50))
        })
    };
    migration.await.unwrap();
    migrating.store(false, Ordering::Release);
    let after = ops.load(Ordering::Acquire);
    wait_for_ops(after + 100).await;
    stop.store(true, Ordering::Release);
    for worker in workers {
        worker.await.unwrap();
    }

    let tally = std::mem::take(&mut *tally.lock());
    assert!(tally.failures.is_empty(), "backend errors reached the caller: {:?}", tally.failures);
    assert!(ops_in_migration.load(Ordering::Acquire) > 0, "operations ran while the slot migrated");
    let redirects: u64 =
        ["TRYAGAIN", "ASK", "MOVED"].iter().map(|code| cluster.error_count(from, code)).sum();
    assert!(redirects > redirects_before, "the old owner redirected the clients (and they followed)");
    assert_eq!(cluster.owner_of(slot), to);
    for (master, key) in cluster.keys_with_prefix(&prefix) {
        assert_eq!(master, to, "{key} stayed behind");
    }

    // The event is whole and agrees with what the callers were told.
    for inv in &nodes {
        inv.check_invariants(event).await.unwrap();
        let held: usize = tally.live.values().map(Vec::len).sum();
        assert_eq!(inv.seat_counts(event).await.unwrap().held as usize, held);
        let availability = inv.availability(event).await.unwrap();
        let bitmap = boxoffice_core::Bitmap::from_bytes(&availability.bitmap, map.len()).unwrap();
        let taken: BTreeSet<u32> = (0..map.len() as u32).filter(|&s| !bitmap.is_available(s)).collect();
        let held_seats: BTreeSet<u32> = tally.live.values().flatten().copied().collect();
        assert_eq!(taken, held_seats, "the bitmap shows exactly the live holds' seats");
        for (&id, seats) in &tally.live {
            let view = inv.hold_view(id).await.unwrap();
            assert_eq!(&view.seats, seats);
        }
    }
    cluster.delete_prefix(&prefix);
}
