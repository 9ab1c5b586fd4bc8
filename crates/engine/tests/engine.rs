//! The conformance suite of the `Inventory` contract: every backend-neutral test runs
//! against the embedded backend (`on_memory::*`) and against Redis (`on_redis::*`, each
//! test on its own random key prefix, deleted when it ends): atomic holds, the hold
//! lifecycle, expiry on a manual clock, best available, concurrency, the change feed and
//! history, and a model-based property test. Journal recovery is embedded-only; several
//! Redis nodes sharing one inventory are Redis-only. The backend-neutral tests run a third
//! time on a Redis Cluster of three masters (`on_cluster::*`) that this test binary starts
//! once (`support/redis_cluster.rs`), each test on its own key prefix.
//!
//! Redis: `BOXOFFICE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use boxoffice_core::{Bitmap, EventId, HoldId, HoldStatus, HoldView, SeatMap, SeatSpec, SectionSpec, UserId};
use boxoffice_engine::journal::SyncMode;
use boxoffice_engine::memory::MemoryConfig;
use boxoffice_engine::{
    ChangeKind, Clock, EventTruth, HoldRequest, Inventory, InventoryError, ManualClock, MemoryInventory,
    OfferRequest, Pool, RebuildLock, RedisConfig, RedisInventory, ReleaseReason, RestoredPin, SeatCounts,
    Selection, SoldSeat, SystemClock,
};

const EVENT: EventId = EventId(7);
const TTL: u64 = 60_000;
const START_MS: u64 = 1_700_000_000_000;
const LIMIT: u32 = 8;
/// Change records (Redis) or seat flips (memory) remembered, unless a test says otherwise.
const RING: usize = 1024;

// ---------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    Redis,
    /// The Redis inventory on the test binary's Redis Cluster.
    Cluster,
}

#[path = "support/redis_cluster.rs"]
mod redis_cluster;

/// The Redis Cluster every `on_cluster` test shares (started by the first one).
fn shared_cluster() -> &'static redis_cluster::RedisCluster {
    static CLUSTER: std::sync::OnceLock<redis_cluster::RedisCluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(redis_cluster::RedisCluster::start)
}

fn redis_url() -> String {
    std::env::var("BOXOFFICE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A random key prefix in the shared Redis; its keys are deleted when the last node using
/// it is dropped (even when the test failed).
struct RedisKeyspace {
    prefix: String,
    /// On the shared Redis Cluster instead of the machine's Redis.
    cluster: Option<&'static redis_cluster::RedisCluster>,
}

impl RedisKeyspace {
    fn new() -> Arc<Self> {
        Arc::new(RedisKeyspace { prefix: format!("bo-test-{:016x}:", rand_u64()), cluster: None })
    }

    fn on_cluster() -> Arc<Self> {
        let cluster = Some(shared_cluster());
        Arc::new(RedisKeyspace { prefix: format!("bo-test-{:016x}:", rand_u64()), cluster })
    }

    fn url(&self) -> String {
        self.cluster.map_or_else(redis_url, |cluster| cluster.url())
    }

    /// Every key under the prefix.
    fn keys(&self) -> Vec<String> {
        if let Some(cluster) = self.cluster {
            return cluster.keys_with_prefix(&self.prefix).into_iter().map(|(_, key)| key).collect();
        }
        let client = redis::Client::open(redis_url()).expect("valid redis url");
        let mut conn = client.get_connection().expect("redis is reachable");
        let mut cursor: u64 = 0;
        let mut all = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)
                .expect("SCAN");
            all.extend(keys);
            if next == 0 {
                return all;
            }
            cursor = next;
        }
    }
}

impl Drop for RedisKeyspace {
    fn drop(&mut self) {
        if let Some(cluster) = self.cluster {
            return cluster.delete_prefix(&self.prefix);
        }
        let keys = self.keys();
        if keys.is_empty() {
            return;
        }
        let client = redis::Client::open(redis_url()).expect("valid redis url");
        let mut conn = client.get_connection().expect("redis is reachable");
        let _: () = redis::cmd("DEL").arg(&keys).query(&mut conn).expect("DEL");
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    RandomState::new().hash_one((nanos, std::process::id(), std::thread::current().id()))
}

/// One inventory under test; derefs to the `Inventory` contract.
enum Engine {
    Memory(Box<MemoryInventory>),
    Redis(Box<RedisInventory>, Arc<RedisKeyspace>),
}

impl Engine {
    /// A fresh inventory; `clock: None` is the wall clock (memory) or Redis `TIME`.
    async fn open(b: Backend, clock: Option<Arc<dyn Clock>>, ring: usize) -> Engine {
        match b {
            Backend::Memory => {
                let config = MemoryConfig {
                    change_ring_seats: ring,
                    history_records: ring,
                    ..MemoryConfig::default()
                };
                let clock = clock.unwrap_or_else(|| Arc::new(SystemClock));
                Engine::Memory(Box::new(MemoryInventory::open(config, clock).expect("opens")))
            }
            Backend::Redis => Engine::redis_node(&RedisKeyspace::new(), clock, ring).await,
            Backend::Cluster => Engine::redis_node(&RedisKeyspace::on_cluster(), clock, ring).await,
        }
    }

    /// One more node on the same Redis keys.
    async fn redis_node(keys: &Arc<RedisKeyspace>, clock: Option<Arc<dyn Clock>>, ring: usize) -> Engine {
        let config = RedisConfig {
            key_prefix: keys.prefix.clone(),
            change_stream_len: ring,
            clock,
            ..RedisConfig::new(keys.url())
        };
        let inv =
            RedisInventory::connect(config).await.expect("redis is reachable (BOXOFFICE_TEST_REDIS_URL)");
        Engine::Redis(Box::new(inv), keys.clone())
    }

    async fn check_invariants(&self, event: EventId) -> Result<(), String> {
        match self {
            Engine::Memory(inv) => inv.check_invariants(event),
            Engine::Redis(inv, _) => inv.check_invariants(event).await,
        }
    }
}

impl std::ops::Deref for Engine {
    type Target = dyn Inventory;

    fn deref(&self) -> &Self::Target {
        match self {
            Engine::Memory(inv) => &**inv,
            Engine::Redis(inv, _) => &**inv,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn seat_map(sections: &[(&str, u32, u32)]) -> Arc<SeatMap> {
    let specs: Vec<SectionSpec> = sections
        .iter()
        .map(|&(name, rows, seats_per_row)| SectionSpec {
            name: name.to_owned(),
            rows,
            seats_per_row,
            tier: None,
        })
        .collect();
    Arc::new(SeatMap::from_sections(SeatMap::default_tiers(), &specs).expect("valid layout"))
}

/// One section `A` of 3 rows of 10 seats: seat `r * 10 + (n - 1)` is `A-(r+1)-n`.
fn small_map() -> Arc<SeatMap> {
    seat_map(&[("A", 3, 10)])
}

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("valid user id")
}

/// A hold request with the orphan-seat rule off (its own tests turn it on).
fn request(who: &str, selection: Selection) -> HoldRequest {
    HoldRequest {
        event: EVENT,
        user: user(who),
        selection,
        ttl_ms: TTL,
        max_seats_per_user: LIMIT,
        orphan_rule: false,
        blocked: None,
    }
}

fn seats(who: &str, seats: &[u32]) -> HoldRequest {
    request(who, Selection::Seats(seats.to_vec()))
}

fn best(who: &str, count: u32, section: Option<u16>) -> HoldRequest {
    request(who, Selection::BestAvailable { count, section })
}

/// What `availability()` says, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    version: u64,
    available_count: u32,
    bitmap: Bitmap,
}

impl Snapshot {
    fn taken(&self) -> Vec<u32> {
        (0..self.bitmap.len() as u32).filter(|&i| !self.bitmap.is_available(i)).collect()
    }
}

async fn snapshot(inv: &dyn Inventory, event: EventId, seats: usize) -> Snapshot {
    let a = inv.availability(event).await.expect("event is loaded");
    assert_eq!(a.bitmap.len(), seats.div_ceil(8), "wire bitmap is ceil(n/8) bytes");
    let bitmap = Bitmap::from_bytes(&a.bitmap, seats).expect("well-formed bitmap");
    assert_eq!(a.available_count as usize, bitmap.count_available(), "available_count");
    Snapshot { version: a.version, available_count: a.available_count, bitmap }
}

/// An inventory (without a journal) on a manual clock, with [`EVENT`] loaded.
struct Fixture {
    inv: Engine,
    clock: Arc<ManualClock>,
    map: Arc<SeatMap>,
}

impl Fixture {
    async fn new(b: Backend, map: Arc<SeatMap>) -> Self {
        let clock = Arc::new(ManualClock::new(START_MS));
        let inv = Engine::open(b, Some(clock.clone()), RING).await;
        Self::loaded(inv, clock, map).await
    }

    async fn with_memory_config(map: Arc<SeatMap>, config: MemoryConfig) -> Self {
        let clock = Arc::new(ManualClock::new(START_MS));
        let inv = Engine::Memory(Box::new(MemoryInventory::open(config, clock.clone()).expect("opens")));
        Self::loaded(inv, clock, map).await
    }

    async fn loaded(inv: Engine, clock: Arc<ManualClock>, map: Arc<SeatMap>) -> Self {
        inv.load_event(EVENT, map.clone(), Vec::new()).await.expect("loads");
        Fixture { inv, clock, map }
    }

    async fn snapshot(&self) -> Snapshot {
        snapshot(&*self.inv, EVENT, self.map.len()).await
    }

    async fn check(&self) {
        if let Err(broken) = self.inv.check_invariants(EVENT).await {
            panic!("invariant broken: {broken}");
        }
    }

    async fn status(&self, id: HoldId) -> HoldStatus {
        self.inv.hold_view(id).await.expect("hold is known").status
    }

    async fn user_seats(&self, who: &str) -> u32 {
        self.inv.user_seat_count(EVENT, &user(who)).await.expect("event is loaded")
    }

    async fn counts(&self) -> SeatCounts {
        self.inv.seat_counts(EVENT).await.expect("event is loaded")
    }
}

fn journal_config(dir: &Path, sync: SyncMode) -> MemoryConfig {
    MemoryConfig { journal_dir: Some(dir.to_owned()), sync, ..MemoryConfig::default() }
}

/// A tiny deterministic generator, so that the concurrency tests need no extra crates.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `k` distinct values below `n`, in random order.
    fn distinct(&mut self, k: usize, n: u32) -> Vec<u32> {
        let mut out = Vec::with_capacity(k);
        while out.len() < k {
            let v = self.below(u64::from(n)) as u32;
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Atomic holds, bitmap and version
// ---------------------------------------------------------------------------------------

async fn hold_of_taken_seat_is_rejected_and_changes_nothing(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    f.inv.hold(seats("alice", &[3, 4])).await.unwrap();
    f.inv.hold(seats("carol", &[9])).await.unwrap();
    let before = f.snapshot().await;

    // Five seats asked for; two of them are taken: all-or-nothing, and the error names
    // exactly the taken seats, in the order they were asked for.
    let err = f.inv.hold(seats("bob", &[2, 4, 5, 9, 6])).await.unwrap_err();
    assert_eq!(err, InventoryError::SeatsUnavailable(vec![4, 9]));

    assert_eq!(f.snapshot().await, before, "bitmap, count and version unchanged");
    assert_eq!(f.user_seats("bob").await, 0, "no seat went to bob");
    assert_eq!(f.counts().await, SeatCounts { available: 27, held: 3, sold: 0 });
    f.check().await;

    // The free seats of the failed request really are still free.
    let held = f.inv.hold(seats("bob", &[2, 5, 6])).await.unwrap();
    assert_eq!(held.seats, vec![2, 5, 6]);
    f.check().await;
}

async fn hold_of_seats_taken_by_the_same_user_is_rejected_too(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    f.inv.hold(seats("alice", &[1])).await.unwrap();
    let err = f.inv.hold(seats("alice", &[0, 1])).await.unwrap_err();
    assert_eq!(err, InventoryError::SeatsUnavailable(vec![1]));
    assert_eq!(f.user_seats("alice").await, 1);
    f.check().await;
}

async fn malformed_hold_requests_are_rejected_and_change_nothing(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let before = f.snapshot().await;
    assert_eq!(f.inv.hold(seats("alice", &[1, 30])).await.unwrap_err(), InventoryError::BadSeat(30));
    assert_eq!(f.inv.hold(seats("alice", &[1, 2, 1])).await.unwrap_err(), InventoryError::DuplicateSeat);
    assert_eq!(f.inv.hold(seats("alice", &[])).await.unwrap_err(), InventoryError::NotEnoughSeats);
    assert_eq!(f.inv.hold(best("alice", 0, None)).await.unwrap_err(), InventoryError::NotEnoughSeats);
    let mut other_event = seats("alice", &[1]);
    other_event.event = EventId(99);
    assert_eq!(f.inv.hold(other_event).await.unwrap_err(), InventoryError::UnknownEvent);
    assert_eq!(f.inv.availability(EventId(99)).await.unwrap_err(), InventoryError::UnknownEvent);
    assert_eq!(f.snapshot().await, before);
    assert_eq!(f.user_seats("alice").await, 0);
    f.check().await;
}

async fn hold_release_and_confirm_move_bits_version_and_counts(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let s0 = f.snapshot().await;
    assert_eq!(s0.available_count, 30);
    assert!(s0.taken().is_empty());
    f.check().await;

    let h1 = f.inv.hold(seats("alice", &[0, 1, 2])).await.unwrap();
    assert_eq!(h1.status, HoldStatus::Held);
    assert_eq!(h1.seats, vec![0, 1, 2]);
    assert_eq!(h1.user, user("alice"));
    assert_eq!(h1.event, EVENT);
    assert_eq!(h1.id.event, EVENT);
    assert_eq!((h1.created_ms, h1.expires_ms), (START_MS, START_MS + TTL));
    let s1 = f.snapshot().await;
    assert_eq!(s1.version, s0.version + 1);
    assert_eq!(s1.available_count, 27);
    assert_eq!(s1.taken(), vec![0, 1, 2]);
    assert_eq!(f.counts().await, SeatCounts { available: 27, held: 3, sold: 0 });
    f.check().await;

    let h2 = f.inv.hold(seats("bob", &[15, 10])).await.unwrap();
    assert_eq!(h2.seats, vec![15, 10], "seats are reported in the order asked for");
    let s2 = f.snapshot().await;
    assert_eq!(s2.version, s1.version + 1);
    assert_eq!(s2.taken(), vec![0, 1, 2, 10, 15]);
    assert_eq!(s2.available_count, 25);
    f.check().await;

    let released = f.inv.release(h1.id).await.unwrap();
    assert_eq!(released.status, HoldStatus::Released);
    assert_eq!(released.seats, vec![0, 1, 2]);
    let s3 = f.snapshot().await;
    assert_eq!(s3.version, s2.version + 1);
    assert_eq!(s3.taken(), vec![10, 15]);
    assert_eq!(s3.available_count, 28);
    assert_eq!(f.counts().await, SeatCounts { available: 28, held: 2, sold: 0 });
    f.check().await;

    // Pinning changes no seat, so neither the bitmap nor the version moves.
    let pinned = f.inv.pin(h2.id, "co-1", START_MS + TTL).await.unwrap();
    assert_eq!(pinned.status, HoldStatus::Confirming);
    assert_eq!(f.snapshot().await, s3);
    f.check().await;

    let confirmed = f.inv.confirm(h2.id, "co-1").await.unwrap();
    assert_eq!(confirmed.status, HoldStatus::Confirmed);
    assert_eq!(confirmed.seats, vec![15, 10]);
    let s4 = f.snapshot().await;
    assert_eq!(s4.version, s3.version + 1, "confirm bumps the version");
    assert_eq!(s4.taken(), vec![10, 15], "sold seats stay unavailable");
    assert_eq!(s4.available_count, 28);
    assert_eq!(f.counts().await, SeatCounts { available: 28, held: 0, sold: 2 });
    assert_eq!(f.status(h2.id).await, HoldStatus::Confirmed);
    f.check().await;

    // Reading availability twice without a change gives the same version and bits.
    assert_eq!(f.snapshot().await, s4);
}

async fn racing_for_the_same_seats_has_exactly_one_winner(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let mut won = 0;
    for who in ["a", "b", "c", "d"] {
        match f.inv.hold(seats(who, &[5, 6, 7])).await {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(e, InventoryError::SeatsUnavailable(vec![5, 6, 7])),
        }
    }
    assert_eq!(won, 1);
    f.check().await;
}

// ---------------------------------------------------------------------------------------
// Per-user limit
// ---------------------------------------------------------------------------------------

async fn per_user_limit_counts_held_plus_bought_seats(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let limited = |who: &str, s: &[u32]| HoldRequest { max_seats_per_user: 4, ..seats(who, s) };

    let h1 = f.inv.hold(limited("alice", &[0, 1, 2])).await.unwrap();
    assert_eq!(
        f.inv.hold(limited("alice", &[3, 4])).await.unwrap_err(),
        InventoryError::UserLimit { current: 3, requested: 2, limit: 4 }
    );
    let h2 = f.inv.hold(limited("alice", &[3])).await.unwrap();
    assert_eq!(f.user_seats("alice").await, 4);
    // Another user is not affected by alice's seats.
    f.inv.hold(limited("bob", &[10, 11, 12, 13])).await.unwrap();

    // Releasing frees the allowance.
    f.inv.release(h1.id).await.unwrap();
    assert_eq!(f.user_seats("alice").await, 1);
    let h3 = f.inv.hold(limited("alice", &[5, 6, 7])).await.unwrap();
    assert_eq!(f.user_seats("alice").await, 4);

    // Confirmed seats keep counting.
    f.inv.pin(h3.id, "co", START_MS + TTL).await.unwrap();
    f.inv.confirm(h3.id, "co").await.unwrap();
    assert_eq!(f.user_seats("alice").await, 4);
    assert_eq!(
        f.inv.hold(limited("alice", &[20])).await.unwrap_err(),
        InventoryError::UserLimit { current: 4, requested: 1, limit: 4 }
    );
    f.inv.release(h2.id).await.unwrap();
    assert_eq!(f.user_seats("alice").await, 3, "only the bought seats remain");
    assert_eq!(
        f.inv.hold(limited("alice", &[20, 21])).await.unwrap_err(),
        InventoryError::UserLimit { current: 3, requested: 2, limit: 4 }
    );
    // Best available is counted by the seats it asks for.
    assert_eq!(
        f.inv.hold(HoldRequest { max_seats_per_user: 4, ..best("alice", 2, None) }).await.unwrap_err(),
        InventoryError::UserLimit { current: 3, requested: 2, limit: 4 }
    );
    f.inv.hold(limited("alice", &[20])).await.unwrap();
    assert_eq!(f.user_seats("alice").await, 4);
    f.check().await;
}

async fn expired_hold_frees_the_users_allowance(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let limited = |s: &[u32]| HoldRequest { max_seats_per_user: 2, ..seats("alice", s) };
    f.inv.hold(limited(&[0, 1])).await.unwrap();
    assert!(matches!(f.inv.hold(limited(&[2])).await, Err(InventoryError::UserLimit { current: 2, .. })));
    f.clock.advance_ms(TTL);
    // The hold request itself expires what is due before counting.
    f.inv.hold(limited(&[2, 3])).await.unwrap();
    f.check().await;
}

async fn sold_seats_given_at_load_are_unavailable_and_count_for_their_buyer(b: Backend) {
    let inv = Engine::open(b, Some(Arc::new(ManualClock::new(START_MS))), RING).await;
    let map = small_map();
    let sold = vec![
        SoldSeat { seat_index: 4, user: user("alice") },
        SoldSeat { seat_index: 5, user: user("alice") },
        SoldSeat { seat_index: 6, user: user("bob") },
    ];
    inv.load_event(EVENT, map.clone(), sold).await.unwrap();
    let s = snapshot(&*inv, EVENT, map.len()).await;
    assert_eq!(s.taken(), vec![4, 5, 6]);
    assert_eq!(inv.seat_counts(EVENT).await.unwrap(), SeatCounts { available: 27, held: 0, sold: 3 });
    assert_eq!(inv.user_seat_count(EVENT, &user("alice")).await.unwrap(), 2);
    assert_eq!(
        inv.hold(HoldRequest { max_seats_per_user: 3, ..seats("alice", &[0, 1]) }).await.unwrap_err(),
        InventoryError::UserLimit { current: 2, requested: 2, limit: 3 }
    );
    assert_eq!(
        inv.hold(seats("carol", &[3, 4])).await.unwrap_err(),
        InventoryError::SeatsUnavailable(vec![4])
    );
    inv.check_invariants(EVENT).await.unwrap();
}

async fn a_huge_best_available_count_is_refused_without_panicking(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    f.inv.hold(seats("alice", &[0])).await.unwrap();
    let err = f.inv.hold(best("alice", u32::MAX, None)).await.unwrap_err();
    assert_eq!(err, InventoryError::UserLimit { current: 1, requested: u32::MAX, limit: LIMIT });
    f.check().await;
}

// ---------------------------------------------------------------------------------------
// Expiry, pins and the lifecycle
// ---------------------------------------------------------------------------------------

async fn hold_expires_after_its_ttl_lazily_when_viewed(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let h = f.inv.hold(seats("alice", &[7, 8])).await.unwrap();
    let held = f.snapshot().await;

    f.clock.advance_ms(TTL - 1);
    assert_eq!(f.status(h.id).await, HoldStatus::Held, "one millisecond to go");
    assert_eq!(f.snapshot().await, held);

    f.clock.advance_ms(1);
    let view = f.inv.hold_view(h.id).await.unwrap();
    assert_eq!(view.status, HoldStatus::Expired);
    assert_eq!(view.seats, vec![7, 8]);
    f.check().await;
    let after = f.snapshot().await;
    assert!(after.taken().is_empty(), "seats are available again");
    assert_eq!(after.available_count, 30);
    assert_eq!(after.version, held.version + 1);
    assert_eq!(f.user_seats("alice").await, 0);

    assert_eq!(f.inv.confirm(h.id, "co").await.unwrap_err(), InventoryError::HoldExpired);
    assert_eq!(f.inv.pin(h.id, "co", START_MS + 2 * TTL).await.unwrap_err(), InventoryError::HoldExpired);
    assert_eq!(f.inv.unpin(h.id, "co").await.unwrap_err(), InventoryError::HoldExpired);
    assert_eq!(f.inv.release(h.id).await.unwrap_err(), InventoryError::HoldExpired);
    // Nothing above changed anything.
    assert_eq!(f.snapshot().await, after);
    f.check().await;
}

async fn pin_and_confirm_of_a_hold_past_its_ttl_fail_with_hold_expired(b: Backend) {
    // No view in between: pin itself must notice that the hold has expired.
    let f = Fixture::new(b, small_map()).await;
    let h = f.inv.hold(seats("alice", &[1])).await.unwrap();
    f.clock.advance_ms(TTL);
    assert_eq!(f.inv.pin(h.id, "co", START_MS + 2 * TTL).await.unwrap_err(), InventoryError::HoldExpired);
    let h = f.inv.hold(seats("alice", &[1])).await.unwrap();
    f.clock.advance_ms(TTL + 5);
    assert_eq!(f.inv.confirm(h.id, "co").await.unwrap_err(), InventoryError::HoldExpired);
    assert!(f.snapshot().await.taken().is_empty());
    f.check().await;
}

async fn expire_due_expires_exactly_the_holds_whose_time_is_up(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let short = f.inv.hold(HoldRequest { ttl_ms: 1_000, ..seats("alice", &[0, 1]) }).await.unwrap();
    let long_a = f.inv.hold(HoldRequest { ttl_ms: 2_000, ..seats("bob", &[2]) }).await.unwrap();
    let long_b = f.inv.hold(HoldRequest { ttl_ms: 2_000, ..seats("carol", &[3]) }).await.unwrap();
    assert_eq!(f.inv.expire_due().await.unwrap(), 0);

    f.clock.advance_ms(1_000);
    assert_eq!(f.inv.expire_due().await.unwrap(), 1);
    f.check().await;
    assert_eq!(f.counts().await, SeatCounts { available: 28, held: 2, sold: 0 });
    assert_eq!(f.status(short.id).await, HoldStatus::Expired);
    assert_eq!(f.status(long_a.id).await, HoldStatus::Held);

    f.clock.advance_ms(999);
    assert_eq!(f.inv.expire_due().await.unwrap(), 0);
    f.clock.advance_ms(1);
    assert_eq!(f.inv.expire_due().await.unwrap(), 2);
    assert_eq!(f.inv.expire_due().await.unwrap(), 0, "nothing expires twice");
    assert_eq!(f.status(long_a.id).await, HoldStatus::Expired);
    assert_eq!(f.status(long_b.id).await, HoldStatus::Expired);
    assert_eq!(f.counts().await, SeatCounts { available: 30, held: 0, sold: 0 });
    f.check().await;
}

async fn seat_counts_and_user_seat_count_do_not_count_holds_past_their_ttl(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    f.inv.hold(seats("alice", &[0, 1, 2])).await.unwrap();
    f.clock.advance_ms(TTL);
    // Nobody has touched the event since the hold's time ran out.
    assert_eq!(f.user_seats("alice").await, 0);
    assert_eq!(f.counts().await, SeatCounts { available: 30, held: 0, sold: 0 });
    assert_eq!(f.snapshot().await.available_count, 30);
    f.check().await;
}

async fn pinned_hold_is_never_expired_by_time(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let h = f.inv.hold(seats("alice", &[4, 5])).await.unwrap();
    f.inv.pin(h.id, "co-1", START_MS + 1_000).await.unwrap();
    f.clock.advance_ms(100 * TTL);
    assert_eq!(f.inv.expire_due().await.unwrap(), 0);
    assert_eq!(f.status(h.id).await, HoldStatus::Confirming);
    assert_eq!(f.snapshot().await.taken(), vec![4, 5]);
    assert_eq!(f.user_seats("alice").await, 2);
    f.check().await;
    // The checkout may still finish long after the hold's ttl.
    let view = f.inv.confirm(h.id, "co-1").await.unwrap();
    assert_eq!(view.status, HoldStatus::Confirmed);
    assert_eq!(f.snapshot().await.taken(), vec![4, 5]);
    f.clock.advance_ms(100 * TTL);
    assert_eq!(f.inv.expire_due().await.unwrap(), 0);
    assert_eq!(f.status(h.id).await, HoldStatus::Confirmed, "sold seats never expire");
    f.check().await;
}

async fn unpin_after_the_ttl_expires_the_hold_at_once(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let h = f.inv.hold(seats("alice", &[4, 5])).await.unwrap();
    let late = f.inv.hold(seats("bob", &[6])).await.unwrap();
    f.inv.pin(h.id, "co-1", START_MS + 2 * TTL).await.unwrap();
    f.inv.pin(late.id, "co-2", START_MS + 2 * TTL).await.unwrap();
    // Exactly at the hold's expiry time: its time is up.
    f.clock.advance_ms(TTL);
    let view = f.inv.unpin(h.id, "co-1").await.unwrap();
    assert_eq!(view.status, HoldStatus::Expired, "unpin reports the expiry itself");
    f.check().await;
    assert_eq!(f.snapshot().await.taken(), vec![6]);
    assert_eq!(f.status(h.id).await, HoldStatus::Expired);
    assert_eq!(f.user_seats("alice").await, 0);
    // Well past it, too.
    f.clock.advance_ms(TTL);
    assert_eq!(f.inv.unpin(late.id, "co-2").await.unwrap().status, HoldStatus::Expired);
    assert!(f.snapshot().await.taken().is_empty());
    f.check().await;
}

async fn unpin_before_the_ttl_returns_the_hold_to_held_and_it_expires_later(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let h = f.inv.hold(seats("alice", &[4, 5])).await.unwrap();
    f.inv.pin(h.id, "co-1", START_MS + TTL).await.unwrap();
    f.clock.advance_ms(TTL / 2);
    let view = f.inv.unpin(h.id, "co-1").await.unwrap();
    assert_eq!(view.status, HoldStatus::Held);
    assert_eq!(view.expires_ms, START_MS + TTL, "unpinning does not extend the hold");
    f.check().await;
    // It can be pinned again by another checkout.
    f.inv.pin(h.id, "co-2", START_MS + TTL).await.unwrap();
    f.inv.unpin(h.id, "co-2").await.unwrap();
    f.clock.advance_ms(TTL / 2);
    assert_eq!(f.inv.expire_due().await.unwrap(), 1);
    assert_eq!(f.status(h.id).await, HoldStatus::Expired);
    f.check().await;
}

async fn confirm_needs_the_pin_of_the_same_attempt(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let h = f.inv.hold(seats("alice", &[4])).await.unwrap();
    assert_eq!(f.inv.confirm(h.id, "co-1").await.unwrap_err(), InventoryError::NotPinned);
    assert_eq!(f.inv.unpin(h.id, "co-1").await.unwrap_err(), InventoryError::NotPinned);
    f.inv.pin(h.id, "co-1", START_MS + TTL).await.unwrap();
    assert_eq!(f.inv.confirm(h.id, "co-2").await.unwrap_err(), InventoryError::NotPinned);
    assert_eq!(f.inv.unpin(h.id, "co-2").await.unwrap_err(), InventoryError::NotPinned);
    assert_eq!(f.status(h.id).await, HoldStatus::Confirming, "a wrong attempt changes nothing");
    assert_eq!(f.counts().await, SeatCounts { available: 29, held: 1, sold: 0 });
    let view = f.inv.confirm(h.id, "co-1").await.unwrap();
    assert_eq!(view.status, HoldStatus::Confirmed);
    assert_eq!(f.counts().await, SeatCounts { available: 29, held: 0, sold: 1 });
    f.check().await;
}

async fn release_of_a_pinned_hold_and_a_second_pin_are_refused_as_confirming(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let h = f.inv.hold(seats("alice", &[4])).await.unwrap();
    f.inv.pin(h.id, "co-1", START_MS + TTL).await.unwrap();
    let before = f.snapshot().await;
    assert_eq!(f.inv.release(h.id).await.unwrap_err(), InventoryError::HoldConfirming);
    assert_eq!(f.inv.pin(h.id, "co-2", START_MS + TTL).await.unwrap_err(), InventoryError::HoldConfirming);
    assert_eq!(
        f.inv.pin(h.id, "co-1", START_MS + TTL).await.unwrap_err(),
        InventoryError::HoldConfirming,
        "not even the same attempt pins twice"
    );
    assert_eq!(f.snapshot().await, before);
    // The first pin still holds: its attempt confirms.
    f.inv.confirm(h.id, "co-1").await.unwrap();
    f.check().await;
}

async fn ended_holds_report_how_they_ended(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let released = f.inv.hold(seats("alice", &[0])).await.unwrap();
    f.inv.release(released.id).await.unwrap();
    assert_eq!(f.inv.release(released.id).await.unwrap_err(), InventoryError::HoldReleased);
    assert_eq!(f.inv.pin(released.id, "co", START_MS + TTL).await.unwrap_err(), InventoryError::HoldReleased);
    assert_eq!(f.inv.confirm(released.id, "co").await.unwrap_err(), InventoryError::HoldReleased);
    assert_eq!(f.status(released.id).await, HoldStatus::Released);

    let sold = f.inv.hold(seats("alice", &[1])).await.unwrap();
    f.inv.pin(sold.id, "co", START_MS + TTL).await.unwrap();
    f.inv.confirm(sold.id, "co").await.unwrap();
    assert_eq!(f.inv.confirm(sold.id, "co").await.unwrap_err(), InventoryError::AlreadyConfirmed);
    assert_eq!(f.inv.release(sold.id).await.unwrap_err(), InventoryError::AlreadyConfirmed);
    assert_eq!(f.inv.pin(sold.id, "co", START_MS + TTL).await.unwrap_err(), InventoryError::AlreadyConfirmed);
    assert_eq!(f.inv.unpin(sold.id, "co").await.unwrap_err(), InventoryError::AlreadyConfirmed);

    let unknown = HoldId { event: EVENT, nonce: 12345 };
    assert_eq!(f.inv.hold_view(unknown).await.unwrap_err(), InventoryError::UnknownHold);
    assert_eq!(f.inv.release(unknown).await.unwrap_err(), InventoryError::UnknownHold);
    let elsewhere = HoldId { event: EventId(99), nonce: released.id.nonce };
    assert_eq!(f.inv.hold_view(elsewhere).await.unwrap_err(), InventoryError::UnknownHold);
    assert_eq!(f.inv.confirm(elsewhere, "co").await.unwrap_err(), InventoryError::UnknownHold);
    f.check().await;
}

#[tokio::test]
async fn ended_holds_beyond_the_configured_memory_are_forgotten_oldest_first() {
    let config = MemoryConfig { ended_holds_kept_per_event: 2, ..MemoryConfig::default() };
    let f = Fixture::with_memory_config(small_map(), config).await;
    let mut ids = Vec::new();
    for seat in 0..3 {
        let h = f.inv.hold(seats("alice", &[seat])).await.unwrap();
        f.inv.release(h.id).await.unwrap();
        ids.push(h.id);
    }
    assert_eq!(f.inv.hold_view(ids[0]).await.unwrap_err(), InventoryError::UnknownHold);
    assert_eq!(f.inv.release(ids[0]).await.unwrap_err(), InventoryError::UnknownHold);
    assert_eq!(f.status(ids[1]).await, HoldStatus::Released);
    assert_eq!(f.status(ids[2]).await, HoldStatus::Released);
    f.check().await;
}

async fn stale(f: &Fixture) -> Vec<(HoldId, String)> {
    let mut pins: Vec<(HoldId, String)> =
        f.inv.stale_pins().await.unwrap().into_iter().map(|p| (p.hold, p.attempt)).collect();
    pins.sort();
    pins
}

async fn stale_pins_lists_the_pins_past_their_deadline(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let h1 = f.inv.hold(seats("alice", &[0])).await.unwrap();
    let h2 = f.inv.hold(seats("bob", &[1])).await.unwrap();
    let h3 = f.inv.hold(seats("carol", &[2])).await.unwrap();
    f.inv.pin(h1.id, "co-1", START_MS + 1_000).await.unwrap();
    f.inv.pin(h2.id, "co-2", START_MS + 5_000).await.unwrap();
    let _ = h3; // never pinned: never a stale pin, whatever its age

    assert!(stale(&f).await.is_empty());
    f.clock.advance_ms(999);
    assert!(stale(&f).await.is_empty(), "before its deadline a pin is not stale");
    f.clock.advance_ms(2);
    assert_eq!(stale(&f).await, vec![(h1.id, "co-1".to_owned())]);
    f.clock.advance_ms(5_000);
    let mut both = vec![(h1.id, "co-1".to_owned()), (h2.id, "co-2".to_owned())];
    both.sort();
    assert_eq!(stale(&f).await, both);

    // A pin that ends (confirmed or unpinned) is no longer listed.
    f.inv.confirm(h1.id, "co-1").await.unwrap();
    assert_eq!(stale(&f).await, vec![(h2.id, "co-2".to_owned())]);
    f.inv.unpin(h2.id, "co-2").await.unwrap();
    assert!(stale(&f).await.is_empty());
    f.check().await;
}

// ---------------------------------------------------------------------------------------
// Best available
// ---------------------------------------------------------------------------------------

fn assert_adjacent_in_one_row(map: &SeatMap, picked: &[u32]) {
    let first = map.seat(picked[0]);
    for (k, &i) in picked.iter().enumerate() {
        let seat = map.seat(i);
        assert_eq!((seat.section, seat.row), (first.section, first.row), "one row: {picked:?}");
        assert_eq!(seat.number, first.number + k as u32, "adjacent: {picked:?}");
    }
}

async fn best_available_holds_adjacent_seats_in_one_row(b: Backend) {
    let map = seat_map(&[("A", 2, 8), ("B", 2, 6)]);
    let f = Fixture::new(b, map.clone()).await;
    let many = |count| HoldRequest { max_seats_per_user: u32::MAX, ..best("alice", count, None) };

    let first = f.inv.hold(many(4)).await.unwrap();
    let labels: Vec<String> = first.seats.iter().map(|&i| map.label(i)).collect();
    assert_eq!(labels, ["A-1-1", "A-1-2", "A-1-3", "A-1-4"], "front row of the first section");
    assert_eq!(f.snapshot().await.taken(), {
        let mut s = first.seats.clone();
        s.sort();
        s
    });

    // Keep taking groups of three: every group is a run in one row, never overlapping.
    let mut taken: HashSet<u32> = first.seats.iter().copied().collect();
    for _ in 0..5 {
        let h = f.inv.hold(many(3)).await.unwrap();
        assert_eq!(h.seats.len(), 3);
        assert_adjacent_in_one_row(&map, &h.seats);
        for &s in &h.seats {
            assert!(taken.insert(s), "seat {s} handed out twice");
        }
        f.check().await;
    }

    // Within a section.
    let in_b = f.inv.hold(many_in("B", 2, &map)).await.unwrap();
    assert!(in_b.seats.iter().all(|&i| map.label(i).starts_with("B-")));
    assert_adjacent_in_one_row(&map, &in_b.seats);
    f.check().await;
}

fn many_in(section: &str, count: u32, map: &SeatMap) -> HoldRequest {
    HoldRequest {
        max_seats_per_user: u32::MAX,
        ..best("bob", count, Some(map.section_index(section).unwrap()))
    }
}

async fn best_available_without_enough_seats_is_not_enough_seats_and_changes_nothing(b: Backend) {
    let map = seat_map(&[("A", 2, 8), ("B", 2, 6)]);
    let f = Fixture::new(b, map.clone()).await;
    let before = f.snapshot().await;
    let huge = HoldRequest { max_seats_per_user: u32::MAX, ..best("alice", 29, None) };
    assert_eq!(f.inv.hold(huge).await.unwrap_err(), InventoryError::NotEnoughSeats);
    // Section B has 12 seats.
    assert_eq!(f.inv.hold(many_in("B", 13, &map)).await.unwrap_err(), InventoryError::NotEnoughSeats);
    assert_eq!(f.snapshot().await, before);

    // Fill everything but one seat; then two seats cannot be found anywhere.
    let all_but_one: Vec<u32> = (0..map.len() as u32 - 1).collect();
    f.inv.hold(HoldRequest { max_seats_per_user: u32::MAX, ..seats("carol", &all_but_one) }).await.unwrap();
    let before = f.snapshot().await;
    assert_eq!(before.available_count, 1);
    assert_eq!(f.inv.hold(best("dave", 2, None)).await.unwrap_err(), InventoryError::NotEnoughSeats);
    assert_eq!(f.snapshot().await, before);
    let last = f.inv.hold(best("dave", 1, None)).await.unwrap();
    assert_eq!(last.seats, vec![map.len() as u32 - 1]);
    assert_eq!(f.snapshot().await.available_count, 0);
    f.check().await;
}

// ---------------------------------------------------------------------------------------
// Blocked seats (allocations the caller is not entitled to)

/// Rows 1 and 2 of `small_map()` blocked: only row 3 (seats 20..30) is open to the caller.
fn blocked_front_rows() -> Option<Arc<Bitmap>> {
    Some(Arc::new(Bitmap::from_indexes(30, 0..20)))
}

async fn best_available_never_picks_a_blocked_seat(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    for (who, orphan_rule) in [("alice", false), ("bob", true), ("carol", false)] {
        let request = HoldRequest { blocked: blocked_front_rows(), orphan_rule, ..best(who, 3, None) };
        let view = f.inv.hold(request).await.unwrap();
        assert!(view.seats.iter().all(|&s| s >= 20), "{who} got blocked seats: {:?}", view.seats);
    }
    // Row 3 has one seat left; the 20 blocked seats, all available, do not count.
    let before = f.snapshot().await;
    assert_eq!(before.available_count, 21);
    let two = HoldRequest { blocked: blocked_front_rows(), ..best("dave", 2, None) };
    assert_eq!(f.inv.hold(two).await.unwrap_err(), InventoryError::NotEnoughSeats);
    assert_eq!(f.snapshot().await, before);
    // Without the mask the same request is served from the front row.
    let unblocked = f.inv.hold(best("dave", 2, None)).await.unwrap();
    assert!(unblocked.seats.iter().all(|&s| s < 10), "{:?}", unblocked.seats);
    f.check().await;
}

async fn a_named_hold_of_a_blocked_seat_is_not_entitled_and_changes_nothing(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let before = f.snapshot().await;
    let request = HoldRequest { blocked: blocked_front_rows(), ..seats("alice", &[21, 5, 3]) };
    assert_eq!(f.inv.hold(request).await.unwrap_err(), InventoryError::NotEntitled(vec![3, 5]));
    assert_eq!(f.snapshot().await, before);
    // Seats outside the mask are held as usual; the same seats without a mask too.
    let open = HoldRequest { blocked: blocked_front_rows(), ..seats("alice", &[21, 22]) };
    assert_eq!(f.inv.hold(open).await.unwrap().seats, vec![21, 22]);
    assert_eq!(f.inv.hold(seats("bob", &[3, 5])).await.unwrap().seats, vec![3, 5]);
    f.check().await;
}

// ---------------------------------------------------------------------------------------
// The orphan-seat rule
// ---------------------------------------------------------------------------------------

fn strict(who: &str, seats: &[u32]) -> HoldRequest {
    HoldRequest { orphan_rule: true, ..self::seats(who, seats) }
}

fn strict_best(who: &str, count: u32) -> HoldRequest {
    HoldRequest { orphan_rule: true, ..best(who, count, None) }
}

/// Seat indexes of labels.
fn at(map: &SeatMap, labels: &[&str]) -> Vec<u32> {
    labels.iter().map(|l| map.resolve(l).unwrap_or_else(|| panic!("no seat {l}"))).collect()
}

/// One section `A`, one row: seats 1-4, an aisle (no seat 5), seats 6-9.
fn aisle_map() -> Arc<SeatMap> {
    let seats: Vec<SeatSpec> = [1, 2, 3, 4, 6, 7, 8, 9]
        .into_iter()
        .map(|number| SeatSpec { section: "A".into(), row: 1, number, x: number as f32, y: 0.0, tier: None })
        .collect();
    Arc::new(SeatMap::from_seats(SeatMap::default_tiers(), &seats).expect("valid layout"))
}

async fn orphan_rule_refuses_a_hold_that_strands_a_seat_at_a_row_end_and_changes_nothing(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let m = &f.map;
    let before = f.snapshot().await;
    assert_eq!(
        f.inv.hold(strict("alice", &at(m, &["A-1-2"]))).await.unwrap_err(),
        InventoryError::OrphanSeat(at(m, &["A-1-1"]))
    );
    assert_eq!(
        f.inv.hold(strict("alice", &at(m, &["A-2-9"]))).await.unwrap_err(),
        InventoryError::OrphanSeat(at(m, &["A-2-10"]))
    );
    assert_eq!(f.snapshot().await, before, "a refused hold changes nothing, not even the version");
    assert_eq!(f.inv.user_seat_count(EVENT, &user("alice")).await.unwrap(), 0);
    // The row's end seat itself, or both, or a run leaving two: fine.
    f.inv.hold(strict("alice", &at(m, &["A-1-1", "A-1-2"]))).await.unwrap();
    f.inv.hold(strict("bob", &at(m, &["A-2-8"]))).await.unwrap();
    f.inv.hold(strict("carol", &at(m, &["A-3-10"]))).await.unwrap();
    f.check().await;
}

async fn orphan_rule_refuses_a_seat_left_between_taken_seats_and_a_hold_that_fills_the_gap_is_fine(
    b: Backend,
) {
    let f = Fixture::new(b, small_map()).await;
    let m = &f.map;
    f.inv.hold(strict("bob", &at(m, &["A-1-4"]))).await.unwrap();
    f.inv.hold(strict("bob", &at(m, &["A-1-8"]))).await.unwrap();
    // Free: 1-3, 5-7, 9-10. A-1-6 alone would leave 5 and 7 between taken seats.
    assert_eq!(
        f.inv.hold(strict("alice", &at(m, &["A-1-6"]))).await.unwrap_err(),
        InventoryError::OrphanSeat(at(m, &["A-1-5", "A-1-7"]))
    );
    assert_eq!(
        f.inv.hold(strict("alice", &at(m, &["A-1-5", "A-1-6"]))).await.unwrap_err(),
        InventoryError::OrphanSeat(at(m, &["A-1-7"]))
    );
    // The whole gap of three exactly.
    f.inv.hold(strict("alice", &at(m, &["A-1-5", "A-1-6", "A-1-7"]))).await.unwrap();
    // A gap of one, filled exactly.
    f.inv.hold(strict("carol", &at(m, &["A-1-2"]))).await.unwrap_err();
    f.inv.hold(strict("carol", &at(m, &["A-1-1"]))).await.unwrap();
    f.inv.hold(strict("dave", &at(m, &["A-1-3"]))).await.unwrap_err();
    f.inv.hold(strict("dave", &at(m, &["A-1-2", "A-1-3"]))).await.unwrap();
    f.check().await;
}

async fn orphan_rule_counts_an_aisle_as_a_row_end(b: Backend) {
    let f = Fixture::new(b, aisle_map()).await;
    let m = &f.map;
    assert_eq!(
        f.inv.hold(strict("alice", &at(m, &["A-1-3"]))).await.unwrap_err(),
        InventoryError::OrphanSeat(at(m, &["A-1-4"])),
        "A-1-4 would be alone between A-1-3 and the aisle"
    );
    assert_eq!(
        f.inv.hold(strict("alice", &at(m, &["A-1-7"]))).await.unwrap_err(),
        InventoryError::OrphanSeat(at(m, &["A-1-6"])),
        "A-1-6 would be alone between the aisle and A-1-7"
    );
    // Seats on both sides of the aisle are not neighbours: taking 4 and 6 strands nobody.
    f.inv.hold(strict("alice", &at(m, &["A-1-4", "A-1-6"]))).await.unwrap();
    f.inv.hold(strict("bob", &at(m, &["A-1-7", "A-1-8", "A-1-9"]))).await.unwrap();
    f.check().await;
}

async fn orphan_rule_names_every_seat_a_multi_seat_hold_would_strand(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let m = &f.map;
    let before = f.snapshot().await;
    assert_eq!(
        f.inv.hold(strict("alice", &at(m, &["A-1-2", "A-1-4"]))).await.unwrap_err(),
        InventoryError::OrphanSeat(at(m, &["A-1-1", "A-1-3"])),
        "a row end and a seat between its own seats"
    );
    assert_eq!(
        f.inv.hold(strict("alice", &at(m, &["A-2-9", "A-3-2"]))).await.unwrap_err(),
        InventoryError::OrphanSeat(at(m, &["A-2-10", "A-3-1"])),
        "two rows, named in seat order"
    );
    assert_eq!(f.snapshot().await, before);
    // Unavailable seats are answered before the rule.
    f.inv.hold(strict("bob", &at(m, &["A-1-5", "A-1-6"]))).await.unwrap();
    assert_eq!(
        f.inv.hold(strict("alice", &at(m, &["A-1-2", "A-1-5"]))).await.unwrap_err(),
        InventoryError::SeatsUnavailable(at(m, &["A-1-5"]))
    );
    f.inv.hold(strict("alice", &at(m, &["A-1-3", "A-1-4", "A-1-7", "A-1-8"]))).await.unwrap();
    f.check().await;
}

async fn orphan_rule_ignores_a_seat_that_was_alone_before_the_hold(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let m = &f.map;
    // Made without the rule (an event that had it off): A-1-1 is alone.
    f.inv.hold(seats("bob", &at(m, &["A-1-2"]))).await.unwrap();
    f.inv.hold(strict("alice", &at(m, &["A-1-3", "A-1-4"]))).await.unwrap();
    f.inv.hold(strict("carol", &at(m, &["A-1-1"]))).await.unwrap();
    f.check().await;
}

async fn orphan_rule_off_lets_any_hold_strand_a_seat(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let m = &f.map;
    let held = f.inv.hold(seats("alice", &at(m, &["A-1-2", "A-1-4"]))).await.unwrap();
    assert_eq!(held.seats, at(m, &["A-1-2", "A-1-4"]));
    f.check().await;
}

async fn best_available_under_the_orphan_rule_never_strands_a_seat(b: Backend) {
    // One row of 7: with 3 and 6 taken, no run of 3 is left; the plain fallback takes the
    // three seats nearest A-1-1 (1, 2, 4) and strands A-1-5.
    let map = seat_map(&[("A", 1, 7)]);
    let f = Fixture::new(b, map.clone()).await;
    f.inv.hold(seats("bob", &at(&map, &["A-1-3", "A-1-6"]))).await.unwrap();
    let before = f.snapshot().await;
    let picked = f.inv.hold(strict_best("alice", 3)).await.unwrap();
    let labels: Vec<String> = picked.seats.iter().map(|&i| map.label(i)).collect();
    assert_eq!(labels, ["A-1-1", "A-1-2", "A-1-7"]);
    assert!(map.stranded_by(&before.bitmap, &picked.seats).is_empty());
    // A-1-4 and A-1-5 are left: one seat from them would strand the other.
    assert_eq!(f.inv.hold(strict_best("carol", 1)).await.unwrap_err(), InventoryError::NotEnoughSeats);
    f.inv.hold(strict_best("carol", 2)).await.unwrap();
    assert_eq!(f.snapshot().await.available_count, 0);
    f.check().await;

    // Without the rule, the same request strands A-1-5.
    let f = Fixture::new(b, map.clone()).await;
    f.inv.hold(seats("bob", &at(&map, &["A-1-3", "A-1-6"]))).await.unwrap();
    let plain = f.inv.hold(best("alice", 3, None)).await.unwrap();
    let labels: Vec<String> = plain.seats.iter().map(|&i| map.label(i)).collect();
    assert_eq!(labels, ["A-1-1", "A-1-2", "A-1-4"]);

    // Runs in rows: never a run that leaves one seat at the row's end.
    let map = seat_map(&[("A", 2, 5), ("B", 2, 6)]);
    let f = Fixture::new(b, map.clone()).await;
    let many = |count| HoldRequest { max_seats_per_user: u32::MAX, ..strict_best("alice", count) };
    for _ in 0..4 {
        let before = f.snapshot().await;
        let h = f.inv.hold(many(2)).await.unwrap();
        assert_adjacent_in_one_row(&map, &h.seats);
        assert!(map.stranded_by(&before.bitmap, &h.seats).is_empty(), "{:?} strands a seat", h.seats);
    }
    f.check().await;
}

// ---------------------------------------------------------------------------------------
// Loading events
// ---------------------------------------------------------------------------------------

async fn load_event_is_idempotent(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let h = f.inv.hold(seats("alice", &[3, 4])).await.unwrap();
    let before = f.snapshot().await;
    // Loading again, even with another map and sold seats, leaves the event as it is.
    let other = seat_map(&[("Z", 1, 3)]);
    let sold = vec![SoldSeat { seat_index: 0, user: user("bob") }];
    f.inv.load_event(EVENT, other, sold).await.unwrap();
    f.inv.load_event(EVENT, small_map(), Vec::new()).await.unwrap();
    assert_eq!(f.snapshot().await, before);
    assert_eq!(f.inv.hold_view(h.id).await.unwrap(), h);
    assert_eq!(f.counts().await, SeatCounts { available: 28, held: 2, sold: 0 });
    assert_eq!(f.user_seats("bob").await, 0);
    f.check().await;
}

// ---------------------------------------------------------------------------------------
// Journal recovery
// ---------------------------------------------------------------------------------------

fn open_journaled(dir: &Path, now_ms: u64) -> MemoryInventory {
    let clock = Arc::new(ManualClock::new(now_ms));
    MemoryInventory::open(journal_config(dir, SyncMode::Fsync), clock).expect("journal opens")
}

#[tokio::test]
async fn journal_restores_unexpired_holds_after_a_restart_and_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let map = small_map();
    let reopen_at = START_MS + 5_000;

    // First life: a fresh journal.
    let clock = Arc::new(ManualClock::new(START_MS));
    let inv = MemoryInventory::open(journal_config(dir.path(), SyncMode::Fsync), clock.clone()).unwrap();
    inv.load_event(EVENT, map.clone(), Vec::new()).await.unwrap();
    inv.commit_recovery().await.unwrap();

    let keep = inv.hold(seats("alice", &[0, 1])).await.unwrap();
    let keep_too = inv.hold(seats("bob", &[5])).await.unwrap();
    let released = inv.hold(seats("carol", &[2, 3])).await.unwrap();
    inv.release(released.id).await.unwrap();
    let bought = inv.hold(seats("dave", &[8, 7])).await.unwrap();
    inv.pin(bought.id, "co-d", START_MS + TTL).await.unwrap();
    inv.confirm(bought.id, "co-d").await.unwrap();
    // Expires between the two lives: the restart comes 5 s later.
    let short = inv.hold(HoldRequest { ttl_ms: 1_000, ..seats("erin", &[10]) }).await.unwrap();
    // Pinned when the process stops: pins are not journaled, so it comes back held.
    let pinned = inv.hold(seats("frank", &[12, 13])).await.unwrap();
    inv.pin(pinned.id, "co-f", START_MS + TTL).await.unwrap();
    // Expired during the first life.
    let gone = inv.hold(HoldRequest { ttl_ms: 500, ..seats("gina", &[14]) }).await.unwrap();
    clock.advance_ms(500);
    assert_eq!(inv.expire_due().await.unwrap(), 1);
    inv.check_invariants(EVENT).unwrap();

    inv.flush().await.unwrap();
    inv.close();
    drop(inv);
    let first_journal_len = std::fs::metadata(dir.path().join("holds.journal")).unwrap().len();

    let survivors = [keep.clone(), keep_too.clone(), HoldView { status: HoldStatus::Held, ..pinned.clone() }];
    let sold = || bought.seats.iter().map(|&s| SoldSeat { seat_index: s, user: user("dave") }).collect();

    // Second life: replay, then compact.
    let inv = open_journaled(dir.path(), reopen_at);
    assert_eq!(
        inv.hold_view(keep.id).await.unwrap_err(),
        InventoryError::UnknownHold,
        "holds come back with their event"
    );
    inv.load_event(EVENT, map.clone(), sold()).await.unwrap();
    inv.commit_recovery().await.unwrap();
    inv.check_invariants(EVENT).unwrap();
    assert!(!dir.path().join("holds.journal.new").exists(), "the fresh journal was installed");

    for hold in &survivors {
        assert_eq!(&inv.hold_view(hold.id).await.unwrap(), hold, "same id, user, seats, times");
    }
    for ended in [&released, &bought, &short, &gone] {
        assert_eq!(inv.hold_view(ended.id).await.unwrap_err(), InventoryError::UnknownHold);
    }
    let s = snapshot(&inv, EVENT, map.len()).await;
    assert_eq!(s.taken(), vec![0, 1, 5, 7, 8, 12, 13]);
    assert_eq!(inv.seat_counts(EVENT).await.unwrap(), SeatCounts { available: 23, held: 5, sold: 2 });
    assert_eq!(inv.user_seat_count(EVENT, &user("dave")).await.unwrap(), 2);
    assert_eq!(inv.user_seat_count(EVENT, &user("erin")).await.unwrap(), 0);
    // The restored holds behave like any other: the one that was pinned can be pinned
    // again; an expired one's seat can be held by someone else.
    inv.pin(pinned.id, "co-f2", reopen_at + TTL).await.unwrap();
    inv.unpin(pinned.id, "co-f2").await.unwrap();
    let later = inv.hold(seats("hana", &[10, 14])).await.unwrap();
    inv.release(keep_too.id).await.unwrap();
    inv.flush().await.unwrap();
    let compacted_len = std::fs::metadata(dir.path().join("holds.journal")).unwrap().len();
    assert!(
        compacted_len < first_journal_len,
        "compacted journal ({compacted_len} B) is smaller than the first ({first_journal_len} B)"
    );
    inv.close();
    drop(inv);

    // Third life: the compacted journal (plus the changes since) restores the same holds.
    let inv = open_journaled(dir.path(), reopen_at + 1_000);
    inv.load_event(EVENT, map.clone(), sold()).await.unwrap();
    inv.commit_recovery().await.unwrap();
    inv.check_invariants(EVENT).unwrap();
    for hold in [&keep, &survivors[2], &later] {
        assert_eq!(&inv.hold_view(hold.id).await.unwrap(), hold);
    }
    assert_eq!(inv.hold_view(keep_too.id).await.unwrap_err(), InventoryError::UnknownHold);
    let s = snapshot(&inv, EVENT, map.len()).await;
    assert_eq!(s.taken(), vec![0, 1, 7, 8, 10, 12, 13, 14]);
    inv.close();
}

#[tokio::test]
async fn journal_without_committed_recovery_still_holds_the_old_holds() {
    let dir = tempfile::tempdir().unwrap();
    let map = small_map();
    let h = {
        let inv = open_journaled(dir.path(), START_MS);
        inv.load_event(EVENT, map.clone(), Vec::new()).await.unwrap();
        inv.commit_recovery().await.unwrap();
        let h = inv.hold(seats("alice", &[3])).await.unwrap();
        inv.flush().await.unwrap();
        h
    };
    // A life that crashes before committing recovery leaves the journal as it was.
    {
        let inv = open_journaled(dir.path(), START_MS + 1);
        inv.load_event(EVENT, map.clone(), Vec::new()).await.unwrap();
        assert_eq!(inv.hold_view(h.id).await.unwrap(), h);
    }
    let inv = open_journaled(dir.path(), START_MS + 2);
    inv.load_event(EVENT, map.clone(), Vec::new()).await.unwrap();
    inv.commit_recovery().await.unwrap();
    assert_eq!(inv.hold_view(h.id).await.unwrap(), h);
    inv.check_invariants(EVENT).unwrap();
}

#[tokio::test]
async fn recovered_holds_of_events_not_loaded_before_commit_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let map = small_map();
    let h = {
        let inv = open_journaled(dir.path(), START_MS);
        inv.load_event(EVENT, map.clone(), Vec::new()).await.unwrap();
        inv.commit_recovery().await.unwrap();
        let h = inv.hold(seats("alice", &[3])).await.unwrap();
        inv.flush().await.unwrap();
        h
    };
    let inv = open_journaled(dir.path(), START_MS + 1);
    inv.commit_recovery().await.unwrap();
    inv.load_event(EVENT, map.clone(), Vec::new()).await.unwrap();
    assert_eq!(inv.hold_view(h.id).await.unwrap_err(), InventoryError::UnknownHold);
    assert!(snapshot(&inv, EVENT, map.len()).await.taken().is_empty());
}

/// Two loaders of one event at the same moment (e.g. two requests for an event not yet
/// loaded) must not lose the event's recovered holds.
#[test]
fn concurrent_loads_of_one_event_keep_its_recovered_holds() {
    const EVENTS: u64 = 24;
    let dir = tempfile::tempdir().unwrap();
    // A large map makes building a shard take long enough for the two loads to overlap.
    let map = seat_map(&[("A", 200, 500)]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let made: Vec<HoldView> = rt.block_on(async {
        let inv = MemoryInventory::open(
            journal_config(dir.path(), SyncMode::Write),
            Arc::new(ManualClock::new(START_MS)),
        )
        .unwrap();
        let mut made = Vec::new();
        for e in 0..EVENTS {
            inv.load_event(EventId(e), map.clone(), Vec::new()).await.unwrap();
        }
        inv.commit_recovery().await.unwrap();
        for e in 0..EVENTS {
            let mut r = seats("alice", &[e as u32, 1000 + e as u32]);
            r.event = EventId(e);
            made.push(inv.hold(r).await.unwrap());
        }
        inv.flush().await.unwrap();
        inv.close();
        made
    });

    let inv = Arc::new(
        MemoryInventory::open(
            journal_config(dir.path(), SyncMode::Write),
            Arc::new(ManualClock::new(START_MS + 1)),
        )
        .unwrap(),
    );
    for e in 0..EVENTS {
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let loaders: Vec<_> = (0..2)
            .map(|_| {
                let (inv, map, barrier) = (inv.clone(), map.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                    barrier.wait();
                    rt.block_on(inv.load_event(EventId(e), map, Vec::new())).unwrap();
                })
            })
            .collect();
        for loader in loaders {
            loader.join().unwrap();
        }
    }
    rt.block_on(async {
        inv.commit_recovery().await.unwrap();
        let mut lost = Vec::new();
        for hold in &made {
            inv.check_invariants(hold.event).unwrap();
            match inv.hold_view(hold.id).await {
                Ok(view) => assert_eq!(&view, hold),
                Err(e) => lost.push((hold.event, e)),
            }
        }
        assert!(lost.is_empty(), "recovered holds lost by concurrent loads: {lost:?}");
    });
}

// ---------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------

async fn racing_tasks_never_hold_one_seat_twice(b: Backend) {
    const SEATS: u32 = 30;
    const TASKS: u64 = 48;
    let inv = Arc::new(Engine::open(b, None, RING).await);
    let map = small_map();
    inv.load_event(EVENT, map.clone(), Vec::new()).await.unwrap();

    let mut handles = Vec::new();
    for t in 0..TASKS {
        let inv = inv.clone();
        handles.push(tokio::spawn(async move {
            let mut rng = XorShift::new(t + 1);
            let mut live: Vec<HoldId> = Vec::new();
            let (mut won, mut lost) = (0u32, 0u32);
            for _ in 0..60 {
                let k = 2 + rng.below(3) as usize;
                let want = rng.distinct(k, SEATS);
                let r =
                    HoldRequest { max_seats_per_user: u32::MAX, ..seats(&format!("user{}", t % 8), &want) };
                match inv.hold(r).await {
                    Ok(view) => {
                        assert_eq!(view.seats, want);
                        live.push(view.id);
                        won += 1;
                    }
                    Err(InventoryError::SeatsUnavailable(taken)) => {
                        assert!(!taken.is_empty() && taken.iter().all(|s| want.contains(s)));
                        lost += 1;
                    }
                    Err(e) => panic!("unexpected error {e}"),
                }
                if !live.is_empty() && rng.below(2) == 0 {
                    let id = live.swap_remove(rng.below(live.len() as u64) as usize);
                    assert_eq!(inv.release(id).await.unwrap().status, HoldStatus::Released);
                }
                if rng.below(8) == 0 {
                    inv.availability(EVENT).await.unwrap();
                }
                tokio::task::yield_now().await;
            }
            (live, won, lost)
        }));
    }
    let (mut live, mut won, mut lost) = (Vec::new(), 0, 0);
    for h in handles {
        let (l, w, x) = h.await.unwrap();
        live.extend(l);
        won += w;
        lost += x;
    }
    assert!(won > 0 && lost > 0, "the tasks did contend (won {won}, lost {lost})");

    let mut owner: HashMap<u32, HoldId> = HashMap::new();
    for &id in &live {
        let view = inv.hold_view(id).await.unwrap();
        assert_eq!(view.status, HoldStatus::Held);
        for s in view.seats {
            if let Some(other) = owner.insert(s, id) {
                panic!("seat {s} is in two live holds: {other} and {id}");
            }
        }
    }
    inv.check_invariants(EVENT).await.unwrap();
    let s = snapshot(&**inv, EVENT, map.len()).await;
    let mut held: Vec<u32> = owner.keys().copied().collect();
    held.sort();
    assert_eq!(s.taken(), held, "exactly the seats of the live holds are unavailable");
    let counts = inv.seat_counts(EVENT).await.unwrap();
    assert_eq!(counts.held as usize, held.len());
}

async fn a_release_racing_a_pin_has_exactly_one_winner(b: Backend) {
    let inv = Arc::new(Engine::open(b, None, RING).await);
    let map = seat_map(&[("A", 10, 20)]);
    inv.load_event(EVENT, map.clone(), Vec::new()).await.unwrap();
    let far = u64::MAX / 2;
    let mut races = Vec::new();
    for seat in 0..map.len() as u32 {
        let h =
            inv.hold(HoldRequest { max_seats_per_user: u32::MAX, ..seats("alice", &[seat]) }).await.unwrap();
        let (a, b) = (inv.clone(), inv.clone());
        let release = tokio::spawn(async move { a.release(h.id).await });
        let pin = tokio::spawn(async move { b.pin(h.id, "co", far).await });
        races.push((h.id, release, pin));
    }
    let (mut released, mut pinned) = (0, 0);
    for (id, release, pin) in races {
        match (release.await.unwrap(), pin.await.unwrap()) {
            (Ok(_), Err(InventoryError::HoldReleased)) => {
                released += 1;
                assert_eq!(inv.hold_view(id).await.unwrap().status, HoldStatus::Released);
            }
            (Err(InventoryError::HoldConfirming), Ok(_)) => {
                pinned += 1;
                assert_eq!(inv.hold_view(id).await.unwrap().status, HoldStatus::Confirming);
            }
            other => panic!("both or neither won: {other:?}"),
        }
    }
    assert_eq!(released + pinned, map.len());
    inv.check_invariants(EVENT).await.unwrap();
    let counts = inv.seat_counts(EVENT).await.unwrap();
    assert_eq!(counts.held as usize, pinned);
}

// ---------------------------------------------------------------------------------------
// Model-based property test
// ---------------------------------------------------------------------------------------

mod model {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;

    const USERS: usize = 5;
    const USER_LIMIT: u32 = 6;
    const PROP_TTL: u64 = 1_000;
    const PIN_FOR: u64 = 300;

    /// 4 rows of 10 seats in two sections: 40 seats.
    fn prop_map() -> Arc<SeatMap> {
        seat_map(&[("L", 2, 10), ("R", 2, 10)])
    }

    fn uid(u: usize) -> UserId {
        user(&format!("user{u}"))
    }

    #[derive(Debug, Clone)]
    enum Op {
        Hold { user: usize, seats: Vec<u32>, orphan: bool },
        Best { user: usize, count: u32, section: Option<u16>, orphan: bool },
        Release(HoldRef),
        Pin(HoldRef, u8),
        Unpin(HoldRef, u8),
        Confirm(HoldRef, u8),
        View(HoldRef),
        ExpireDue,
    }

    /// One of the holds made so far: mostly one of the latest (which are likely live).
    #[derive(Debug, Clone)]
    struct HoldRef {
        recent: bool,
        index: Index,
    }

    impl HoldRef {
        fn pick(&self, made: usize) -> Option<usize> {
            const RECENT: usize = 6;
            match (made, self.recent) {
                (0, _) => None,
                (n, true) => Some(n - 1 - self.index.index(n.min(RECENT))),
                (n, false) => Some(self.index.index(n)),
            }
        }
    }

    fn hold_ref() -> impl Strategy<Value = HoldRef> {
        (proptest::bool::weighted(0.75), any::<Index>()).prop_map(|(recent, index)| HoldRef { recent, index })
    }

    #[derive(Debug, Clone)]
    struct Step {
        /// Clock advance before the operation (which then expires lazily what is due).
        advance_ms: u64,
        op: Op,
    }

    fn op() -> impl Strategy<Value = Op> {
        let all: Vec<u32> = (0..40).collect();
        prop_oneof![
            6 => (0..USERS, proptest::sample::subsequence(all, 1..=5).prop_shuffle(), any::<bool>())
                .prop_map(|(user, seats, orphan)| Op::Hold { user, seats, orphan }),
            2 => (0..USERS, 1..=5u32, proptest::option::of(0..2u16), any::<bool>())
                .prop_map(|(user, count, section, orphan)| Op::Best { user, count, section, orphan }),
            3 => hold_ref().prop_map(Op::Release),
            3 => (hold_ref(), 0..2u8).prop_map(|(i, a)| Op::Pin(i, a)),
            2 => (hold_ref(), 0..2u8).prop_map(|(i, a)| Op::Unpin(i, a)),
            3 => (hold_ref(), 0..2u8).prop_map(|(i, a)| Op::Confirm(i, a)),
            1 => hold_ref().prop_map(Op::View),
            1 => Just(Op::ExpireDue),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        (prop_oneof![5 => Just(0u64), 1 => 1..=400u64], op())
            .prop_map(|(advance_ms, op)| Step { advance_ms, op })
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum MSeat {
        Free,
        Held(usize),
        Sold,
    }

    #[derive(Debug, Clone)]
    struct MHold {
        id: HoldId,
        user: usize,
        seats: Vec<u32>,
        expires_ms: u64,
        /// `(attempt, deadline)` while pinned.
        pin: Option<(u8, u64)>,
        status: HoldStatus,
    }

    /// What the engine should be doing, written as plainly as possible.
    struct Model {
        now: u64,
        version: u64,
        seats: Vec<MSeat>,
        holds: Vec<MHold>,
        per_user: [u32; USERS],
        sold: BTreeSet<u32>,
    }

    impl Model {
        fn new(seats: usize, now: u64, version: u64) -> Self {
            Model {
                now,
                version,
                seats: vec![MSeat::Free; seats],
                holds: Vec::new(),
                per_user: [0; USERS],
                sold: BTreeSet::new(),
            }
        }

        fn bitmap(&self) -> Bitmap {
            let mut b = Bitmap::all_available(self.seats.len());
            for (i, s) in self.seats.iter().enumerate() {
                if *s != MSeat::Free {
                    b.set_available(i as u32, false);
                }
            }
            b
        }

        /// The orphan-seat rule, written plainly: the free seats next to the hold (not in
        /// it) whose neighbours on both sides are taken once it is made, a row end or an
        /// aisle counting as taken. Ascending.
        fn stranded(&self, map: &SeatMap, hold: &[u32]) -> Vec<u32> {
            let taken_after =
                |s: Option<u32>| s.is_none_or(|s| hold.contains(&s) || self.seats[s as usize] != MSeat::Free);
            let mut stranded: Vec<u32> = hold
                .iter()
                .flat_map(|&s| {
                    let (left, right) = map.row_neighbours(s);
                    [left, right]
                })
                .flatten()
                .filter(|&n| !hold.contains(&n) && self.seats[n as usize] == MSeat::Free)
                .filter(|&n| {
                    let (left, right) = map.row_neighbours(n);
                    taken_after(left) && taken_after(right)
                })
                .collect();
            stranded.sort_unstable();
            stranded.dedup();
            stranded
        }

        fn end(&mut self, h: usize, status: HoldStatus) {
            let hold = &mut self.holds[h];
            assert!(hold.status.is_live());
            hold.status = status;
            hold.pin = None;
            for &s in &hold.seats {
                assert_eq!(self.seats[s as usize], MSeat::Held(h));
                if status == HoldStatus::Confirmed {
                    self.seats[s as usize] = MSeat::Sold;
                    self.sold.insert(s);
                } else {
                    self.seats[s as usize] = MSeat::Free;
                }
            }
            if status != HoldStatus::Confirmed {
                self.per_user[hold.user] -= hold.seats.len() as u32;
            }
            self.version += 1;
        }

        fn expire_due(&mut self) -> u32 {
            let due: Vec<usize> = (0..self.holds.len())
                .filter(|&h| {
                    let hold = &self.holds[h];
                    hold.status == HoldStatus::Held && hold.expires_ms <= self.now
                })
                .collect();
            for &h in &due {
                self.end(h, HoldStatus::Expired);
            }
            due.len() as u32
        }

        fn not_live(&self, h: usize) -> InventoryError {
            match self.holds[h].status {
                HoldStatus::Released => InventoryError::HoldReleased,
                HoldStatus::Expired => InventoryError::HoldExpired,
                HoldStatus::Confirmed => InventoryError::AlreadyConfirmed,
                live => unreachable!("{live:?} is live"),
            }
        }

        fn install(&mut self, view: &HoldView, user: usize) {
            let h = self.holds.len();
            for &s in &view.seats {
                assert_eq!(self.seats[s as usize], MSeat::Free, "engine handed out seat {s}");
                self.seats[s as usize] = MSeat::Held(h);
            }
            self.per_user[user] += view.seats.len() as u32;
            self.version += 1;
            self.holds.push(MHold {
                id: view.id,
                user,
                seats: view.seats.clone(),
                expires_ms: self.now + PROP_TTL,
                pin: None,
                status: HoldStatus::Held,
            });
        }
    }

    /// Runs one step on the engine and the model; fails on any difference.
    async fn run_step(
        inv: &Engine,
        clock: &ManualClock,
        map: &SeatMap,
        m: &mut Model,
        step: &Step,
    ) -> Result<(), TestCaseError> {
        clock.advance_ms(step.advance_ms);
        m.now += step.advance_ms;
        match &step.op {
            Op::Hold { user, seats, orphan } => {
                m.expire_due();
                let n = seats.len() as u32;
                let current = m.per_user[*user];
                let unavailable: Vec<u32> =
                    seats.iter().copied().filter(|&s| m.seats[s as usize] != MSeat::Free).collect();
                let expected = if current + n > USER_LIMIT {
                    Err(InventoryError::UserLimit { current, requested: n, limit: USER_LIMIT })
                } else if !unavailable.is_empty() {
                    Err(InventoryError::SeatsUnavailable(unavailable))
                } else if *orphan && !m.stranded(map, seats).is_empty() {
                    Err(InventoryError::OrphanSeat(m.stranded(map, seats)))
                } else {
                    Ok(seats.clone())
                };
                let got = inv
                    .hold(HoldRequest {
                        event: EVENT,
                        user: uid(*user),
                        selection: Selection::Seats(seats.clone()),
                        ttl_ms: PROP_TTL,
                        max_seats_per_user: USER_LIMIT,
                        orphan_rule: *orphan,
                        blocked: None,
                    })
                    .await;
                check_hold(m, got, expected, *user)?;
            }
            Op::Best { user, count, section, orphan } => {
                m.expire_due();
                let current = m.per_user[*user];
                let expected = if current + count > USER_LIMIT {
                    Err(InventoryError::UserLimit { current, requested: *count, limit: USER_LIMIT })
                } else if *orphan {
                    map.best_available_strict(&m.bitmap(), *count, *section)
                        .ok_or(InventoryError::NotEnoughSeats)
                } else {
                    map.best_available(&m.bitmap(), *count, *section).ok_or(InventoryError::NotEnoughSeats)
                };
                if let Ok(picked) = &expected {
                    prop_assert_eq!(picked.len() as u32, *count);
                    if *orphan {
                        prop_assert_eq!(m.stranded(map, picked), Vec::<u32>::new(), "best available strands");
                    }
                }
                let got = inv
                    .hold(HoldRequest {
                        event: EVENT,
                        user: uid(*user),
                        selection: Selection::BestAvailable { count: *count, section: *section },
                        ttl_ms: PROP_TTL,
                        max_seats_per_user: USER_LIMIT,
                        orphan_rule: *orphan,
                        blocked: None,
                    })
                    .await;
                check_hold(m, got, expected, *user)?;
            }
            Op::Release(i) | Op::Pin(i, _) | Op::Unpin(i, _) | Op::Confirm(i, _) | Op::View(i) => {
                let Some(h) = i.pick(m.holds.len()) else {
                    let never = HoldId { event: EVENT, nonce: 1 };
                    prop_assert_eq!(inv.hold_view(never).await, Err(InventoryError::UnknownHold));
                    return Ok(());
                };
                m.expire_due();
                let id = m.holds[h].id;
                let status = m.holds[h].status;
                let (got, expected) = match &step.op {
                    Op::Release(_) => {
                        let expected = match status {
                            HoldStatus::Held => {
                                m.end(h, HoldStatus::Released);
                                Ok(HoldStatus::Released)
                            }
                            HoldStatus::Confirming => Err(InventoryError::HoldConfirming),
                            _ => Err(m.not_live(h)),
                        };
                        (inv.release(id).await, expected)
                    }
                    Op::Pin(_, attempt) => {
                        let deadline = m.now + PIN_FOR;
                        let expected = match status {
                            HoldStatus::Held => {
                                m.holds[h].pin = Some((*attempt, deadline));
                                m.holds[h].status = HoldStatus::Confirming;
                                Ok(HoldStatus::Confirming)
                            }
                            HoldStatus::Confirming => Err(InventoryError::HoldConfirming),
                            _ => Err(m.not_live(h)),
                        };
                        (inv.pin(id, &attempt_name(*attempt), deadline).await, expected)
                    }
                    Op::Unpin(_, attempt) => {
                        let expected = match (status, m.holds[h].pin) {
                            (HoldStatus::Confirming, Some((a, _))) if a == *attempt => {
                                m.holds[h].pin = None;
                                m.holds[h].status = HoldStatus::Held;
                                if m.holds[h].expires_ms <= m.now {
                                    m.end(h, HoldStatus::Expired);
                                }
                                Ok(m.holds[h].status)
                            }
                            (s, _) if s.is_live() => Err(InventoryError::NotPinned),
                            _ => Err(m.not_live(h)),
                        };
                        (inv.unpin(id, &attempt_name(*attempt)).await, expected)
                    }
                    Op::Confirm(_, attempt) => {
                        let expected = match (status, m.holds[h].pin) {
                            (HoldStatus::Confirming, Some((a, _))) if a == *attempt => {
                                m.end(h, HoldStatus::Confirmed);
                                Ok(HoldStatus::Confirmed)
                            }
                            (s, _) if s.is_live() => Err(InventoryError::NotPinned),
                            _ => Err(m.not_live(h)),
                        };
                        (inv.confirm(id, &attempt_name(*attempt)).await, expected)
                    }
                    Op::View(_) => (inv.hold_view(id).await, Ok(status)),
                    _ => unreachable!(),
                };
                let got = got.map(|view| {
                    assert_eq!(view.id, id);
                    assert_eq!(view.seats, m.holds[h].seats);
                    view.status
                });
                prop_assert_eq!(got, expected, "{:?} of hold #{}", step.op, h);
            }
            Op::ExpireDue => {
                let expected = m.expire_due();
                prop_assert_eq!(inv.expire_due().await, Ok(expected));
            }
        }
        Ok(())
    }

    fn attempt_name(a: u8) -> String {
        format!("attempt-{a}")
    }

    fn check_hold(
        m: &mut Model,
        got: Result<HoldView, InventoryError>,
        expected: Result<Vec<u32>, InventoryError>,
        user: usize,
    ) -> Result<(), TestCaseError> {
        match (got, expected) {
            (Ok(view), Ok(seats)) => {
                prop_assert_eq!(&view.seats, &seats);
                prop_assert_eq!(view.status, HoldStatus::Held);
                prop_assert_eq!(&view.user, &uid(user));
                prop_assert_eq!((view.created_ms, view.expires_ms), (m.now, m.now + PROP_TTL));
                for s in &view.seats {
                    prop_assert!(!m.sold.contains(s), "sold seat {} held again", s);
                }
                prop_assert!(m.holds.iter().all(|h| h.id != view.id), "hold id reused");
                m.install(&view, user);
            }
            (got, expected) => prop_assert_eq!(got.map(|v| v.seats), expected),
        }
        Ok(())
    }

    /// Everything that must hold between any two steps.
    async fn check_state(inv: &Engine, m: &mut Model, last_sold: &mut u32) -> Result<(), TestCaseError> {
        if let Err(broken) = inv.check_invariants(EVENT).await {
            return Err(TestCaseError::fail(format!("invariant broken: {broken}")));
        }
        // Availability expires lazily, and so does the model.
        m.expire_due();
        let s = snapshot(&**inv, EVENT, m.seats.len()).await;
        prop_assert_eq!(&s.bitmap, &m.bitmap(), "bitmap differs from the model");
        prop_assert_eq!(s.version, m.version, "version differs from the model");
        for &sold in &m.sold {
            prop_assert!(!s.bitmap.is_available(sold), "sold seat {} is available", sold);
        }

        let counts = inv.seat_counts(EVENT).await.unwrap();
        let held = m.seats.iter().filter(|s| matches!(s, MSeat::Held(_))).count() as u32;
        prop_assert_eq!(counts, SeatCounts { available: s.available_count, held, sold: m.sold.len() as u32 });
        prop_assert!(counts.sold >= *last_sold, "a sold seat came back");
        *last_sold = counts.sold;
        for u in 0..USERS {
            let n = inv.user_seat_count(EVENT, &uid(u)).await.unwrap();
            prop_assert_eq!(n, m.per_user[u], "seats of user {}", u);
        }

        // No seat is in two live holds, as the engine reports them.
        let mut owner: HashMap<u32, HoldId> = HashMap::new();
        for hold in m.holds.iter().filter(|h| h.status.is_live()) {
            let view = inv.hold_view(hold.id).await.unwrap();
            prop_assert_eq!(view.status, hold.status);
            for s in view.seats {
                prop_assert!(owner.insert(s, hold.id).is_none(), "seat {} in two live holds", s);
            }
        }

        let mut stale: Vec<HoldId> = inv.stale_pins().await.unwrap().into_iter().map(|p| p.hold).collect();
        stale.sort();
        let mut expected: Vec<HoldId> = m
            .holds
            .iter()
            .filter(|h| h.pin.is_some_and(|(_, deadline)| deadline < m.now))
            .map(|h| h.id)
            .collect();
        expected.sort();
        prop_assert_eq!(stale, expected, "stale pins");
        Ok(())
    }

    fn run_case(b: Backend, steps: &[Step]) -> Result<(), TestCaseError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let map = prop_map();
            let clock = Arc::new(ManualClock::new(START_MS));
            let inv = Engine::open(b, Some(clock.clone()), RING).await;
            inv.load_event(EVENT, map.clone(), Vec::new()).await.unwrap();
            let version = inv.availability(EVENT).await.unwrap().version;
            let mut m = Model::new(map.len(), START_MS, version);
            let mut last_sold = 0;
            check_state(&inv, &mut m, &mut last_sold).await?;
            for step in steps {
                run_step(&inv, &clock, &map, &mut m, step).await?;
                check_state(&inv, &mut m, &mut last_sold).await?;
            }
            Ok::<(), TestCaseError>(())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn random_operations_keep_the_memory_engine_equal_to_a_simple_model(
            steps in proptest::collection::vec(step(), 1..200)
        ) {
            run_case(Backend::Memory, &steps)?;
        }
    }

    proptest! {
        // Each step is a few round trips to Redis: fewer cases keep the suite fast.
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        #[test]
        fn random_operations_keep_the_redis_engine_equal_to_a_simple_model(
            steps in proptest::collection::vec(step(), 1..200)
        ) {
            run_case(Backend::Redis, &steps)?;
        }
    }

    proptest! {
        // The same model on the Redis Cluster: the scripts' keys share one slot.
        #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

        #[test]
        fn random_operations_keep_the_cluster_engine_equal_to_a_simple_model(
            steps in proptest::collection::vec(step(), 1..200)
        ) {
            run_case(Backend::Cluster, &steps)?;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Change feed
// ---------------------------------------------------------------------------------------

async fn feed_inventory(b: Backend, ring: usize) -> Engine {
    let inv = Engine::open(b, Some(Arc::new(ManualClock::new(START_MS))), ring).await;
    inv.load_event(EVENT, small_map(), Vec::new()).await.unwrap();
    inv
}

async fn feed_gives_the_net_change_since_a_version(b: Backend) {
    let inv = feed_inventory(b, 1024).await;
    let v0 = inv.feed(EVENT, 0).await.unwrap();
    assert_eq!(v0.availability.version, 0);
    assert_eq!(v0.changes.as_ref().map(|c| (c.available.len(), c.unavailable.len())), Some((0, 0)));
    let a = inv.hold(seats("ann", &[1, 2])).await.unwrap();
    inv.hold(seats("bob", &[5])).await.unwrap();
    inv.release(a.id).await.unwrap();
    inv.hold(seats("cat", &[2])).await.unwrap();
    let feed = inv.feed(EVENT, 0).await.unwrap();
    let changes = feed.changes.expect("the ring covers version 0");
    assert_eq!((changes.from, changes.to), (0, feed.availability.version));
    // Seat 1 was taken and given back: no net change. Seats 2 and 5 are taken.
    assert_eq!(changes.unavailable, vec![2, 5]);
    assert!(changes.available.is_empty());
    // Since the release, seats 1 and 2 came back and 2 went again: net, 1 is available.
    let after_bob = 2;
    let since = inv.feed(EVENT, after_bob).await.unwrap().changes.unwrap();
    assert_eq!(since.available, vec![1]);
    assert_eq!(since.unavailable, Vec::<u32>::new());
}

async fn feed_of_a_version_older_than_the_ring_or_from_the_future_has_no_changes(b: Backend) {
    let inv = feed_inventory(b, 4).await;
    for seat in 0..6 {
        inv.hold(seats("ann", &[seat])).await.ok();
    }
    let feed = inv.feed(EVENT, 0).await.unwrap();
    assert!(feed.changes.is_none(), "six flips do not fit a ring of four");
    let recent = feed.availability.version - 2;
    assert!(inv.feed(EVENT, recent).await.unwrap().changes.is_some());
    assert!(inv.feed(EVENT, feed.availability.version + 1).await.unwrap().changes.is_none());
}

// ---------------------------------------------------------------------------------------
// Repairs from the order store: refunds and anti-entropy
// ---------------------------------------------------------------------------------------

async fn release_sold_returns_refunded_seats_to_sale_and_frees_the_buyers_allowance(b: Backend) {
    let inv = feed_inventory(b, 1024).await;
    let hold = inv.hold(seats("ann", &[3, 4])).await.unwrap();
    inv.pin(hold.id, "pa_1", START_MS + 60_000).await.unwrap();
    inv.confirm(hold.id, "pa_1").await.unwrap();
    assert_eq!(inv.user_seat_count(EVENT, &user("ann")).await.unwrap(), 2);
    let before = inv.feed(EVENT, 0).await.unwrap().availability.version;
    // Seat 5 is not sold: it is left alone.
    assert_eq!(inv.release_sold(EVENT, &[3, 5], ReleaseReason::Refund).await.unwrap(), vec![3]);
    assert_eq!(inv.sold_seats(EVENT).await.unwrap(), vec![4]);
    assert_eq!(inv.user_seat_count(EVENT, &user("ann")).await.unwrap(), 1);
    let feed = inv.feed(EVENT, before).await.unwrap();
    assert_eq!(feed.changes.unwrap().available, vec![3], "the live map sees the seat come back");
    inv.check_invariants(EVENT).await.unwrap();
    // The seat can be sold again.
    inv.hold(seats("bob", &[3])).await.unwrap();
}

async fn mark_sold_repairs_seats_the_store_sold_and_a_hold_on_them_loses(b: Backend) {
    let inv = feed_inventory(b, 1024).await;
    let loser = inv.hold(seats("bob", &[7, 8])).await.unwrap();
    let changed = inv
        .mark_sold(
            EVENT,
            vec![
                SoldSeat { seat_index: 1, user: user("ann") },
                SoldSeat { seat_index: 7, user: user("ann") },
            ],
        )
        .await
        .unwrap();
    assert_eq!(changed, vec![1, 7]);
    assert_eq!(inv.sold_seats(EVENT).await.unwrap(), vec![1, 7]);
    assert_eq!(inv.hold_view(loser.id).await.unwrap().status, HoldStatus::Released);
    let availability = inv.availability(EVENT).await.unwrap();
    let bits = Bitmap::from_bytes(&availability.bitmap, 30).unwrap();
    assert!(bits.is_available(8), "the losing hold's other seat is free again");
    assert!(!bits.is_available(1) && !bits.is_available(7));
    // Marking again changes nothing.
    assert!(
        inv.mark_sold(EVENT, vec![SoldSeat { seat_index: 1, user: user("ann") }]).await.unwrap().is_empty()
    );
    inv.check_invariants(EVENT).await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Change history
// ---------------------------------------------------------------------------------------

/// `(version, kind, seats, hold, user)` of each record.
type Brief = (u64, ChangeKind, Vec<u32>, Option<HoldId>, Option<String>);

fn brief(history: &boxoffice_engine::History) -> Vec<Brief> {
    history
        .records
        .iter()
        .map(|r| {
            assert!(!r.recovered);
            (r.version, r.kind, r.seats.clone(), r.hold, r.user.as_ref().map(|u| u.to_string()))
        })
        .collect()
}

async fn history_records_every_change_once_in_version_order(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let ann = |s: &str| Some(s.to_owned());
    let a = f.inv.hold(seats("ann", &[1, 2])).await.unwrap();
    f.inv.release(a.id).await.unwrap();
    let c = f.inv.hold(seats("cat", &[3])).await.unwrap();
    f.inv.pin(c.id, "co", START_MS + TTL).await.unwrap();
    f.inv.confirm(c.id, "co").await.unwrap();
    let d = f.inv.hold(HoldRequest { ttl_ms: 10, ..seats("dan", &[4]) }).await.unwrap();
    f.clock.advance_ms(10);
    assert_eq!(f.inv.release_sold(EVENT, &[3, 9], ReleaseReason::Refund).await.unwrap(), vec![3]);
    let e = f.inv.hold(seats("eve", &[5, 6])).await.unwrap();
    let sold = vec![
        SoldSeat { seat_index: 6, user: user("fay") },
        SoldSeat { seat_index: 7, user: user("gus") },
        SoldSeat { seat_index: 8, user: user("fay") },
    ];
    assert_eq!(f.inv.mark_sold(EVENT, sold).await.unwrap(), vec![6, 7, 8]);

    let all = f.inv.history(EVENT, 0, 100).await.unwrap();
    assert!(all.complete);
    let expected: Vec<Brief> = vec![
        (1, ChangeKind::Held, vec![1, 2], Some(a.id), ann("ann")),
        (2, ChangeKind::Released(ReleaseReason::User), vec![1, 2], Some(a.id), ann("ann")),
        (3, ChangeKind::Held, vec![3], Some(c.id), ann("cat")),
        (4, ChangeKind::Sold, vec![3], Some(c.id), ann("cat")),
        (5, ChangeKind::Held, vec![4], Some(d.id), ann("dan")),
        // The refund expired what was due first, in the same step.
        (6, ChangeKind::Released(ReleaseReason::Expiry), vec![4], Some(d.id), ann("dan")),
        (7, ChangeKind::Released(ReleaseReason::Refund), vec![3], None, ann("cat")),
        (8, ChangeKind::Held, vec![5, 6], Some(e.id), ann("eve")),
        (9, ChangeKind::Released(ReleaseReason::Superseded), vec![5, 6], Some(e.id), ann("eve")),
        (10, ChangeKind::Sold, vec![6, 8], None, ann("fay")),
        (10, ChangeKind::Sold, vec![7], None, ann("gus")),
    ];
    assert_eq!(brief(&all), expected);
    assert!(all.records.iter().all(|r| r.at_ms >= START_MS && r.at_ms <= START_MS + 10));
    assert_eq!(f.snapshot().await.version, 10);

    // Pages start after a version and never split one.
    assert_eq!(brief(&f.inv.history(EVENT, 7, 2).await.unwrap()), expected[7..9].to_vec());
    assert_eq!(brief(&f.inv.history(EVENT, 8, 2).await.unwrap()), expected[8..11].to_vec());
    assert_eq!(brief(&f.inv.history(EVENT, 9, 1).await.unwrap()), expected[9..11].to_vec());
    let done = f.inv.history(EVENT, 10, 100).await.unwrap();
    assert!(done.complete && done.records.is_empty());
    f.check().await;
}

async fn history_says_when_records_were_trimmed(b: Backend) {
    let inv = feed_inventory(b, 4).await;
    for seat in 0..6 {
        inv.hold(seats("ann", &[seat])).await.unwrap();
    }
    let from_start = inv.history(EVENT, 0, 100).await.unwrap();
    assert!(!from_start.complete, "six records do not fit a history of four");
    let recent = inv.history(EVENT, 2, 100).await.unwrap();
    assert!(recent.complete);
    let versions: Vec<u64> = recent.records.iter().map(|r| r.version).collect();
    assert_eq!(versions, vec![3, 4, 5, 6]);
}

// ---------------------------------------------------------------------------------------
// Redis: several nodes, one inventory
// ---------------------------------------------------------------------------------------

/// Two nodes on the same Redis keys and the same manual clock, the event loaded on both.
async fn two_nodes(map: Arc<SeatMap>) -> (Engine, Engine, Arc<ManualClock>) {
    let keys = RedisKeyspace::new();
    let clock = Arc::new(ManualClock::new(START_MS));
    let a = Engine::redis_node(&keys, Some(clock.clone()), RING).await;
    let b = Engine::redis_node(&keys, Some(clock.clone()), RING).await;
    a.load_event(EVENT, map.clone(), Vec::new()).await.unwrap();
    b.load_event(EVENT, map, Vec::new()).await.unwrap();
    (a, b, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_nodes_racing_for_the_same_seats_have_exactly_one_winner() {
    let (a, b, _) = two_nodes(seat_map(&[("A", 10, 20)])).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    for round in 0..50u32 {
        let want = vec![round * 4, round * 4 + 1, round * 4 + 2];
        let (na, nb) = (a.clone(), b.clone());
        let (wa, wb) = (want.clone(), want.clone());
        let many = |who: &str, s: &[u32]| HoldRequest { max_seats_per_user: u32::MAX, ..seats(who, s) };
        let ta = tokio::spawn(async move { na.hold(many("ann", &wa)).await });
        let tb = tokio::spawn(async move { nb.hold(many("bob", &wb)).await });
        let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
        let (winner, loser) = match (ra, rb) {
            (Ok(view), Err(e)) | (Err(e), Ok(view)) => (view, e),
            other => panic!("round {round}: both or neither won: {other:?}"),
        };
        assert_eq!(winner.seats, want);
        assert_eq!(loser, InventoryError::SeatsUnavailable(want.clone()));
        // The winner releases through the other node half of the time.
        if round % 2 == 0 {
            let other = if winner.user == user("ann") { &b } else { &a };
            other.release(winner.id).await.unwrap();
        }
    }
    a.check_invariants(EVENT).await.unwrap();
    let counts_a = a.seat_counts(EVENT).await.unwrap();
    assert_eq!(counts_a, b.seat_counts(EVENT).await.unwrap());
    assert_eq!(counts_a.held, 25 * 3);
    // Best available from both nodes at once never hands a seat out twice. Each loss of
    // a task means another task won since its pick, so 12 tasks fit in the retries.
    let mut tasks = Vec::new();
    for t in 0..12 {
        let node = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            node.hold(HoldRequest { max_seats_per_user: u32::MAX, ..best(&format!("u{t}"), 3, None) }).await
        }));
    }
    let mut taken = HashSet::new();
    for task in tasks {
        for seat in task.await.unwrap().expect("enough seats for everyone").seats {
            assert!(taken.insert(seat), "seat {seat} handed out twice");
        }
    }
    b.check_invariants(EVENT).await.unwrap();
}

#[tokio::test]
async fn a_hold_made_on_one_redis_node_is_seen_pinned_confirmed_and_expired_on_another() {
    let (a, b, clock) = two_nodes(small_map()).await;
    let h = a.hold(seats("ann", &[1, 2])).await.unwrap();
    assert_eq!(b.hold_view(h.id).await.unwrap(), h);
    assert_eq!(snapshot(&*b, EVENT, 30).await.taken(), vec![1, 2]);
    b.pin(h.id, "co", START_MS + TTL).await.unwrap();
    assert_eq!(a.release(h.id).await.unwrap_err(), InventoryError::HoldConfirming);
    assert_eq!(a.confirm(h.id, "co").await.unwrap().status, HoldStatus::Confirmed);
    assert_eq!(b.sold_seats(EVENT).await.unwrap(), vec![1, 2]);
    assert_eq!(b.user_seat_count(EVENT, &user("ann")).await.unwrap(), 2);

    // A hold made on one node is expired by the other's sweep, exactly on time.
    let short = a.hold(HoldRequest { ttl_ms: 1_000, ..seats("bob", &[5]) }).await.unwrap();
    clock.advance_ms(999);
    assert_eq!(b.expire_due().await.unwrap(), 0);
    clock.advance_ms(1);
    let (ea, eb) = tokio::join!(a.expire_due(), b.expire_due());
    assert_eq!(ea.unwrap() + eb.unwrap(), 1, "sweeping at once expires a hold once");
    assert_eq!(a.hold_view(short.id).await.unwrap().status, HoldStatus::Expired);
    // A node that never loaded the event still serves holds by id.
    let keys = match &a {
        Engine::Redis(_, keys) => keys.clone(),
        Engine::Memory(_) => unreachable!(),
    };
    let c = Engine::redis_node(&keys, Some(clock.clone()), RING).await;
    assert_eq!(c.hold_view(short.id).await.unwrap().status, HoldStatus::Expired);
    assert_eq!(c.hold(seats("cat", &[9])).await.unwrap_err(), InventoryError::UnknownEvent);
    a.check_invariants(EVENT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_loads_from_several_redis_nodes_initialize_the_event_once() {
    let keys = RedisKeyspace::new();
    let map = small_map();
    let sold =
        || vec![SoldSeat { seat_index: 3, user: user("ann") }, SoldSeat { seat_index: 4, user: user("ann") }];
    let mut nodes = Vec::new();
    for _ in 0..4 {
        nodes.push(Arc::new(
            Engine::redis_node(&keys, Some(Arc::new(ManualClock::new(START_MS))), RING).await,
        ));
    }
    let loads: Vec<_> = nodes
        .iter()
        .map(|node| {
            let (node, map, sold) = (node.clone(), map.clone(), sold());
            tokio::spawn(async move { node.load_event(EVENT, map, sold).await })
        })
        .collect();
    for load in loads {
        load.await.unwrap().unwrap();
    }
    let h = nodes[0].hold(seats("bob", &[7])).await.unwrap();
    // A late loader (even with other sold seats) changes nothing.
    let late = Engine::redis_node(&keys, Some(Arc::new(ManualClock::new(START_MS))), RING).await;
    late.load_event(EVENT, map.clone(), vec![SoldSeat { seat_index: 9, user: user("cat") }]).await.unwrap();
    for node in nodes.iter().map(|n| &**n).chain([&late]) {
        assert_eq!(node.seat_counts(EVENT).await.unwrap(), SeatCounts { available: 27, held: 1, sold: 2 });
        assert_eq!(node.user_seat_count(EVENT, &user("ann")).await.unwrap(), 2);
        assert_eq!(node.hold_view(h.id).await.unwrap(), h);
    }
    late.check_invariants(EVENT).await.unwrap();
}

#[tokio::test]
async fn redis_keys_carry_the_event_hash_tag_and_the_bitmap_has_the_wire_layout() {
    let f = Fixture::new(Backend::Redis, small_map()).await;
    f.inv.hold(seats("ann", &[0, 9, 17])).await.unwrap();
    let Engine::Redis(inv, keys) = &f.inv else { unreachable!() };
    let mut names = keys.keys();
    names.sort();
    assert!(!names.is_empty());
    for name in &names {
        assert!(name.starts_with(&format!("{}{{ev:7}}:", keys.prefix)), "{name}");
    }
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let raw: Vec<u8> =
        redis::cmd("GET").arg(format!("{}{{ev:7}}:bits", keys.prefix)).query(&mut conn).unwrap();
    let mut expected = Bitmap::all_available(30);
    for seat in [0, 9, 17] {
        expected.set_available(seat, false);
    }
    assert_eq!(raw, expected.to_bytes());
    assert!(inv.epoch(EVENT).await.unwrap() >= START_MS, "the epoch is set at initialization");
}

#[tokio::test]
async fn redis_ended_holds_are_forgotten_after_the_configured_time() {
    let keys = RedisKeyspace::new();
    let clock = Arc::new(ManualClock::new(START_MS));
    let config = RedisConfig {
        key_prefix: keys.prefix.clone(),
        ended_hold_keep_ms: 1_000,
        clock: Some(clock.clone()),
        ..RedisConfig::new(redis_url())
    };
    let inv = Engine::Redis(Box::new(RedisInventory::connect(config).await.unwrap()), keys);
    inv.load_event(EVENT, small_map(), Vec::new()).await.unwrap();
    let h = inv.hold(seats("ann", &[1])).await.unwrap();
    inv.release(h.id).await.unwrap();
    clock.advance_ms(999);
    assert_eq!(inv.hold_view(h.id).await.unwrap().status, HoldStatus::Released);
    clock.advance_ms(1);
    assert_eq!(inv.hold_view(h.id).await.unwrap_err(), InventoryError::UnknownHold);
    assert_eq!(inv.release(h.id).await.unwrap_err(), InventoryError::UnknownHold);
    inv.check_invariants(EVENT).await.unwrap();
}

#[tokio::test]
async fn redis_time_comes_from_the_server_without_an_injected_clock() {
    let inv = Engine::open(Backend::Redis, None, RING).await;
    inv.load_event(EVENT, small_map(), Vec::new()).await.unwrap();
    let before = SystemClock.now_ms();
    let h = inv.hold(HoldRequest { ttl_ms: 200, ..seats("ann", &[1]) }).await.unwrap();
    assert!(h.created_ms + 1_000 >= before && h.created_ms <= SystemClock.now_ms() + 1_000, "{h:?}");
    assert_eq!(h.expires_ms, h.created_ms + 200);
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert_eq!(inv.expire_due().await.unwrap(), 1);
    assert_eq!(inv.hold_view(h.id).await.unwrap().status, HoldStatus::Expired);
}

#[tokio::test]
async fn redis_lost_event_answers_event_lost_until_one_node_rebuilds_it_with_sales_and_pins() {
    let keys = RedisKeyspace::new();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(START_MS));
    let a = Engine::redis_node(&keys, Some(clock.clone()), RING).await;
    let b = Engine::redis_node(&keys, Some(clock.clone()), RING).await;
    let map = small_map();
    for node in [&a, &b] {
        node.load_event(EVENT, map.clone(), vec![SoldSeat { seat_index: 0, user: user("ann") }])
            .await
            .unwrap();
    }
    let lost_hold = a.hold(seats("ann", &[1, 2])).await.unwrap();
    let pinned = a.hold(seats("bob", &[3])).await.unwrap();
    a.pin(pinned.id, "pa_1", START_MS + 90_000).await.unwrap();

    // Redis forgets everything of the event.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let _: () = redis::cmd("DEL").arg(keys.keys()).query(&mut conn).unwrap();
    for node in [&a, &b] {
        assert_eq!(node.hold(seats("cat", &[5])).await.unwrap_err(), InventoryError::EventLost);
        assert_eq!(node.availability(EVENT).await.unwrap_err(), InventoryError::EventLost);
        assert_eq!(node.hold_view(lost_hold.id).await.unwrap_err(), InventoryError::EventLost);
        assert_eq!(node.sold_seats(EVENT).await.unwrap_err(), InventoryError::EventLost);
        assert_eq!(node.lost_events(), vec![EVENT]);
    }
    assert!(keys.keys().is_empty(), "a refused operation recreates nothing");

    // One node rebuilds under the lock; the other waits, then serves the rebuilt state.
    let RebuildLock::Acquired(lock) = a.begin_rebuild(EVENT, map.clone(), 30_000).await.unwrap() else {
        panic!("the first caller takes the lock");
    };
    assert_eq!(b.begin_rebuild(EVENT, map.clone(), 30_000).await.unwrap(), RebuildLock::Busy);
    let truth = EventTruth {
        epoch: 42,
        version: 10,
        sold: vec![SoldSeat { seat_index: 0, user: user("ann") }],
        pins: vec![RestoredPin {
            hold: pinned.id,
            user: user("bob"),
            seats: vec![3],
            attempt: "pa_1".into(),
            deadline_ms: START_MS + 90_000,
        }],
    };
    assert!(a.finish_rebuild(EVENT, map.clone(), &lock, truth.clone()).await.unwrap());
    assert!(a.finish_rebuild(EVENT, map.clone(), &lock, truth).await.is_err(), "a lock is used once");
    assert_eq!(
        b.begin_rebuild(EVENT, map.clone(), 30_000).await.unwrap(),
        RebuildLock::Present { epoch: 42 }
    );
    for node in [&a, &b] {
        assert!(node.lost_events().is_empty());
        let availability = node.availability(EVENT).await.unwrap();
        assert_eq!((availability.epoch, availability.version), (42, 10));
        let taken = snapshot(&**node, EVENT, map.len()).await.taken();
        assert_eq!(taken, vec![0, 3], "SOLD from the store, the pin restored, the lost hold's seats free");
        assert_eq!(node.hold_view(lost_hold.id).await.unwrap_err(), InventoryError::UnknownHold);
        assert_eq!(node.hold_view(pinned.id).await.unwrap().status, HoldStatus::Confirming);
    }
    a.check_invariants(EVENT).await.unwrap();
    assert_eq!(b.confirm(pinned.id, "pa_1").await.unwrap().status, HoldStatus::Confirmed);
    assert_eq!(a.sold_seats(EVENT).await.unwrap(), vec![0, 3]);
    let h = b.hold(seats("cat", &[1, 2])).await.unwrap();
    assert_eq!(h.seats, vec![1, 2]);
    a.check_invariants(EVENT).await.unwrap();
}

#[tokio::test]
async fn memory_rebuild_of_an_absent_event_loads_sales_and_pins() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let inv = MemoryInventory::open(MemoryConfig::default(), clock).unwrap();
    let map = small_map();
    let RebuildLock::Acquired(lock) = inv.begin_rebuild(EVENT, map.clone(), 1_000).await.unwrap() else {
        panic!("an absent event is the caller's to load");
    };
    let pinned = HoldId { event: EVENT, nonce: 77 };
    let truth = EventTruth {
        epoch: 1,
        version: 0,
        sold: vec![SoldSeat { seat_index: 0, user: user("ann") }],
        pins: vec![RestoredPin {
            hold: pinned,
            user: user("bob"),
            seats: vec![4, 5],
            attempt: "pa_2".into(),
            deadline_ms: START_MS + 1_000,
        }],
    };
    assert!(inv.finish_rebuild(EVENT, map.clone(), &lock, truth).await.unwrap());
    assert!(matches!(
        inv.begin_rebuild(EVENT, map.clone(), 1_000).await.unwrap(),
        RebuildLock::Present { .. }
    ));
    assert_eq!(snapshot(&inv, EVENT, map.len()).await.taken(), vec![0, 4, 5]);
    assert_eq!(inv.hold_view(pinned).await.unwrap().status, HoldStatus::Confirming);
    assert_eq!(inv.stale_pins().await.unwrap().len(), 0);
    inv.check_invariants(EVENT).unwrap();
    assert_eq!(inv.confirm(pinned, "pa_2").await.unwrap().status, HoldStatus::Confirmed);
    inv.check_invariants(EVENT).unwrap();
}

// ---------------------------------------------------------------------------------------
// The waitlist pool
// ---------------------------------------------------------------------------------------

fn offer_to(who: &str, seats: &[u32], ttl_ms: u64) -> OfferRequest {
    OfferRequest { event: EVENT, user: user(who), seats: seats.to_vec(), ttl_ms, max_seats_per_user: LIMIT }
}

fn kinds_after(history: &boxoffice_engine::History, after: u64) -> Vec<(ChangeKind, Vec<u32>)> {
    history.records.iter().filter(|r| r.version > after).map(|r| (r.kind, r.seats.clone())).collect()
}

async fn freed_seats_go_to_the_pool_only_while_the_waitlist_flag_is_set(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let inv = &f.inv;
    // Flag off: a release puts the seat back on sale as always.
    let plain = inv.hold(seats("ann", &[0])).await.unwrap();
    inv.release(plain.id).await.unwrap();
    assert!(f.snapshot().await.bitmap.is_available(0));
    assert_eq!(on_and_seats(inv.pool(EVENT).await.unwrap()), (false, vec![]));

    let released = inv.hold(seats("bob", &[1, 2])).await.unwrap();
    let expiring = inv.hold(HoldRequest { ttl_ms: 1_000, ..seats("cat", &[3]) }).await.unwrap();
    let bought = inv.hold(seats("dan", &[4, 5])).await.unwrap();
    inv.pin(bought.id, "pa_1", START_MS + TTL).await.unwrap();
    inv.confirm(bought.id, "pa_1").await.unwrap();
    let version = f.snapshot().await.version;

    assert_eq!(inv.set_waitlist(EVENT, true).await.unwrap(), Vec::<u32>::new());
    inv.release(released.id).await.unwrap();
    f.clock.advance_ms(1_000);
    assert_eq!(inv.expire_due().await.unwrap(), 1);
    assert_eq!(inv.hold_view(expiring.id).await.unwrap().status, HoldStatus::Expired);
    assert_eq!(inv.release_sold(EVENT, &[4], ReleaseReason::Refund).await.unwrap(), vec![4]);
    // A cancellation never feeds the waitlist.
    assert_eq!(inv.release_sold(EVENT, &[5], ReleaseReason::Cancel).await.unwrap(), vec![5]);

    assert_eq!(on_and_seats(inv.pool(EVENT).await.unwrap()), (true, vec![1, 2, 3, 4]));
    let s = f.snapshot().await;
    assert_eq!(s.taken(), vec![1, 2, 3, 4], "pool seats stay unavailable");
    assert_eq!(f.counts().await, SeatCounts { available: 26, held: 4, sold: 0 });
    assert_eq!(f.user_seats("bob").await, 0, "the released hold frees its user's allowance");
    assert_eq!(f.user_seats("dan").await, 0);
    // Nobody can hold a pool seat.
    assert_eq!(inv.hold(seats("eve", &[2])).await.unwrap_err(), InventoryError::SeatsUnavailable(vec![2]));
    let picked = inv.hold(best("eve", 8, None)).await.unwrap();
    assert!(picked.seats.iter().all(|s| ![1, 2, 3, 4].contains(s)), "best available skips the pool");
    inv.release(picked.id).await.unwrap();
    let history = inv.history(EVENT, 0, 100).await.unwrap();
    assert_eq!(
        kinds_after(&history, version),
        vec![
            (ChangeKind::Pooled(ReleaseReason::User), vec![1, 2]),
            (ChangeKind::Pooled(ReleaseReason::Expiry), vec![3]),
            (ChangeKind::Pooled(ReleaseReason::Refund), vec![4]),
            (ChangeKind::Released(ReleaseReason::Cancel), vec![5]),
            (ChangeKind::Held, picked.seats.clone()),
            (ChangeKind::Pooled(ReleaseReason::User), picked.seats.clone()),
        ]
    );
    let pooled = history.records.iter().find(|r| r.kind == ChangeKind::Pooled(ReleaseReason::User)).unwrap();
    assert_eq!((pooled.hold, pooled.user.clone()), (Some(released.id), Some(user("bob"))));
    assert_eq!(inv.pool(EVENT).await.unwrap().seats.len(), 12);
    f.check().await;
}

async fn an_offer_moves_pool_seats_into_a_hold_of_the_fan_all_or_nothing(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let inv = &f.inv;
    inv.set_waitlist(EVENT, true).await.unwrap();
    let freed = inv.hold(seats("ann", &[10, 11, 12])).await.unwrap();
    inv.release(freed.id).await.unwrap();
    let version = f.snapshot().await.version;

    // One seat is not in the pool: nothing changes.
    assert_eq!(
        inv.offer(offer_to("bob", &[10, 13], 5_000)).await.unwrap_err(),
        InventoryError::SeatsUnavailable(vec![13])
    );
    assert_eq!(inv.offer(offer_to("bob", &[], 5_000)).await.unwrap_err(), InventoryError::NotEnoughSeats);
    assert_eq!(inv.offer(offer_to("bob", &[99], 5_000)).await.unwrap_err(), InventoryError::BadSeat(99));
    assert_eq!(
        inv.offer(OfferRequest { max_seats_per_user: 1, ..offer_to("bob", &[10, 11], 5_000) })
            .await
            .unwrap_err(),
        InventoryError::UserLimit { current: 0, requested: 2, limit: 1 }
    );
    assert_eq!(f.snapshot().await.version, version);
    assert_eq!(inv.pool(EVENT).await.unwrap().seats, vec![10, 11, 12]);

    let offer = inv.offer(offer_to("bob", &[10, 11], 5_000)).await.unwrap();
    assert_eq!(
        (offer.user.clone(), offer.seats.clone(), offer.status),
        (user("bob"), vec![10, 11], HoldStatus::Held)
    );
    assert_eq!(offer.expires_ms, START_MS + 5_000);
    assert_eq!(inv.pool(EVENT).await.unwrap().seats, vec![12]);
    assert_eq!(f.user_seats("bob").await, 2);
    assert_eq!(f.counts().await, SeatCounts { available: 27, held: 3, sold: 0 });
    // A second offer of the same seats (another matcher) loses.
    assert_eq!(
        inv.offer(offer_to("cat", &[10], 5_000)).await.unwrap_err(),
        InventoryError::SeatsUnavailable(vec![10])
    );
    f.check().await;

    // Not taken: the offer expires and its seats go back to the pool, not on sale.
    f.clock.advance_ms(5_000);
    assert_eq!(inv.hold_view(offer.id).await.unwrap().status, HoldStatus::Expired);
    assert_eq!(inv.pool(EVENT).await.unwrap().seats, vec![10, 11, 12]);
    // Taken: the offer is a normal hold, checked out as any other.
    let second = inv.offer(offer_to("cat", &[11, 12], 5_000)).await.unwrap();
    inv.pin(second.id, "pa_c", START_MS + TTL).await.unwrap();
    assert_eq!(inv.confirm(second.id, "pa_c").await.unwrap().status, HoldStatus::Confirmed);
    assert_eq!(inv.sold_seats(EVENT).await.unwrap(), vec![11, 12]);
    let history = inv.history(EVENT, version, 100).await.unwrap();
    assert_eq!(
        kinds_after(&history, version),
        vec![
            (ChangeKind::Offered, vec![10, 11]),
            (ChangeKind::Pooled(ReleaseReason::Expiry), vec![10, 11]),
            (ChangeKind::Offered, vec![11, 12]),
            (ChangeKind::Sold, vec![11, 12]),
        ]
    );
    assert_eq!(history.records[0].hold, Some(offer.id));
    assert_eq!(history.records[0].user, Some(user("bob")));
    f.check().await;
}

/// The pool without its generation.
fn on_and_seats(pool: Pool) -> (bool, Vec<u32>) {
    (pool.on, pool.seats)
}

async fn a_clear_of_the_waitlist_flag_loses_to_a_set_made_since_its_generation_was_read(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let inv = &f.inv;
    inv.set_waitlist(EVENT, true).await.unwrap();
    let freed = inv.hold(seats("ann", &[5, 6])).await.unwrap();
    inv.release(freed.id).await.unwrap();
    // A matcher reads the generation, then (say) finds nobody waiting...
    let read = inv.pool(EVENT).await.unwrap();
    assert_eq!((read.on, read.seats.clone()), (true, vec![5, 6]));
    // ...while a join sets the flag again: the matcher's clear is refused, nothing changes.
    inv.set_waitlist(EVENT, true).await.unwrap();
    assert_eq!(inv.clear_waitlist_if(EVENT, read.generation).await.unwrap(), None);
    let now = inv.pool(EVENT).await.unwrap();
    assert!(now.generation > read.generation);
    assert_eq!(on_and_seats(now.clone()), (true, vec![5, 6]));
    assert!(!f.snapshot().await.bitmap.is_available(5), "still pooled, not on sale");
    // Nor with the current generation while the set is recent: a joining node may still
    // be inserting its entry.
    assert_eq!(inv.clear_waitlist_if(EVENT, now.generation).await.unwrap(), None);
    // Once the guard is over, the current generation clears and returns the pool to sale.
    f.clock.advance_ms(boxoffice_engine::WAITLIST_JOIN_GUARD_MS);
    assert_eq!(inv.clear_waitlist_if(EVENT, now.generation).await.unwrap(), Some(vec![5, 6]));
    assert_eq!(on_and_seats(inv.pool(EVENT).await.unwrap()), (false, vec![]));
    assert!(f.snapshot().await.bitmap.is_available(5));
    f.check().await;
}

async fn release_pool_and_clearing_the_flag_put_pool_seats_back_on_sale(b: Backend) {
    let f = Fixture::new(b, small_map()).await;
    let inv = &f.inv;
    inv.set_waitlist(EVENT, true).await.unwrap();
    let freed = inv.hold(seats("ann", &[20, 21, 22, 23])).await.unwrap();
    let version = f.snapshot().await.version;
    inv.release(freed.id).await.unwrap();
    // Seats not in the pool are left alone.
    assert_eq!(inv.release_pool(EVENT, &[21, 5]).await.unwrap(), vec![21]);
    assert!(f.snapshot().await.bitmap.is_available(21));
    inv.hold(seats("bob", &[21])).await.unwrap();
    assert_eq!(on_and_seats(inv.pool(EVENT).await.unwrap()), (true, vec![20, 22, 23]));
    let feed = inv.feed(EVENT, version).await.unwrap();
    assert_eq!(feed.changes.unwrap().available, Vec::<u32>::new(), "the live map never saw 21 free");
    // Clearing the flag returns the whole pool in the same step.
    assert_eq!(inv.set_waitlist(EVENT, false).await.unwrap(), vec![20, 22, 23]);
    assert_eq!(on_and_seats(inv.pool(EVENT).await.unwrap()), (false, vec![]));
    assert_eq!(f.snapshot().await.taken(), vec![21]);
    let feed = inv.feed(EVENT, version).await.unwrap();
    assert_eq!(feed.changes.unwrap().available, vec![20, 22, 23]);
    let last = inv.history(EVENT, 0, 100).await.unwrap().records.last().cloned().unwrap();
    assert_eq!((last.kind, last.seats, last.user), (ChangeKind::Unpooled, vec![20, 22, 23], None));
    // With the flag off, freed seats go straight back on sale.
    let h = inv.hold(seats("cat", &[0])).await.unwrap();
    inv.release(h.id).await.unwrap();
    assert!(inv.pool(EVENT).await.unwrap().seats.is_empty());
    // The order store wins over the pool: a pooled seat it says is sold becomes sold.
    inv.set_waitlist(EVENT, true).await.unwrap();
    let h = inv.hold(seats("dan", &[1])).await.unwrap();
    inv.release(h.id).await.unwrap();
    assert_eq!(
        inv.mark_sold(EVENT, vec![SoldSeat { seat_index: 1, user: user("eve") }]).await.unwrap(),
        vec![1]
    );
    assert!(inv.pool(EVENT).await.unwrap().seats.is_empty());
    f.check().await;
}

#[tokio::test]
async fn the_waitlist_pool_and_flag_survive_a_restart_of_the_journaled_engine() {
    let dir = tempfile::tempdir().unwrap();
    let map = small_map();
    let inv = open_journaled(dir.path(), START_MS);
    inv.load_event(EVENT, map.clone(), Vec::new()).await.unwrap();
    inv.commit_recovery().await.unwrap();
    inv.set_waitlist(EVENT, true).await.unwrap();
    let freed = inv.hold(seats("ann", &[3, 4, 5])).await.unwrap();
    inv.release(freed.id).await.unwrap();
    let offer = inv.offer(offer_to("bob", &[3], TTL)).await.unwrap();
    inv.release_pool(EVENT, &[5]).await.unwrap();
    inv.flush().await.unwrap();
    inv.close();
    drop(inv);

    for life in 0..2 {
        let inv = open_journaled(dir.path(), START_MS + 1_000 + life);
        inv.load_event(EVENT, map.clone(), Vec::new()).await.unwrap();
        inv.commit_recovery().await.unwrap();
        inv.check_invariants(EVENT).unwrap();
        assert_eq!(on_and_seats(inv.pool(EVENT).await.unwrap()), (true, vec![4]), "life {life}");
        assert_eq!(inv.hold_view(offer.id).await.unwrap().seats, vec![3]);
        assert_eq!(snapshot(&inv, EVENT, map.len()).await.taken(), vec![3, 4]);
        assert_eq!(
            inv.hold(seats("cat", &[4])).await.unwrap_err(),
            InventoryError::SeatsUnavailable(vec![4])
        );
        inv.flush().await.unwrap();
        inv.close();
    }
    // Cleared, then restarted: nothing is pooled and the flag stays off.
    let inv = open_journaled(dir.path(), START_MS + 3_000);
    inv.load_event(EVENT, map.clone(), Vec::new()).await.unwrap();
    inv.commit_recovery().await.unwrap();
    assert_eq!(inv.set_waitlist(EVENT, false).await.unwrap(), vec![4]);
    inv.flush().await.unwrap();
    inv.close();
    drop(inv);
    let inv = open_journaled(dir.path(), START_MS + 4_000);
    inv.load_event(EVENT, map.clone(), Vec::new()).await.unwrap();
    inv.commit_recovery().await.unwrap();
    assert_eq!(inv.pool(EVENT).await.unwrap(), Pool::default());
    let h = inv.hold(seats("dan", &[6])).await.unwrap();
    inv.release(h.id).await.unwrap();
    assert!(snapshot(&inv, EVENT, map.len()).await.bitmap.is_available(6));
    inv.check_invariants(EVENT).unwrap();
    inv.close();
}

// ---------------------------------------------------------------------------------------
// Every backend-neutral test, on each backend
// ---------------------------------------------------------------------------------------

macro_rules! on_both_backends {
    ($($name:ident $([$($flavor:tt)*])?,)*) => {
        mod on_memory {
            $(
                #[tokio::test$(($($flavor)*))?]
                async fn $name() {
                    super::$name(super::Backend::Memory).await
                }
            )*
        }

        mod on_redis {
            $(
                #[tokio::test$(($($flavor)*))?]
                async fn $name() {
                    super::$name(super::Backend::Redis).await
                }
            )*
        }

        mod on_cluster {
            $(
                #[tokio::test$(($($flavor)*))?]
                async fn $name() {
                    super::$name(super::Backend::Cluster).await
                }
            )*
        }
    };
}

on_both_backends! {
    hold_of_taken_seat_is_rejected_and_changes_nothing,
    hold_of_seats_taken_by_the_same_user_is_rejected_too,
    malformed_hold_requests_are_rejected_and_change_nothing,
    hold_release_and_confirm_move_bits_version_and_counts,
    racing_for_the_same_seats_has_exactly_one_winner,
    per_user_limit_counts_held_plus_bought_seats,
    expired_hold_frees_the_users_allowance,
    sold_seats_given_at_load_are_unavailable_and_count_for_their_buyer,
    a_huge_best_available_count_is_refused_without_panicking,
    hold_expires_after_its_ttl_lazily_when_viewed,
    pin_and_confirm_of_a_hold_past_its_ttl_fail_with_hold_expired,
    expire_due_expires_exactly_the_holds_whose_time_is_up,
    seat_counts_and_user_seat_count_do_not_count_holds_past_their_ttl,
    pinned_hold_is_never_expired_by_time,
    unpin_after_the_ttl_expires_the_hold_at_once,
    unpin_before_the_ttl_returns_the_hold_to_held_and_it_expires_later,
    confirm_needs_the_pin_of_the_same_attempt,
    release_of_a_pinned_hold_and_a_second_pin_are_refused_as_confirming,
    ended_holds_report_how_they_ended,
    stale_pins_lists_the_pins_past_their_deadline,
    best_available_holds_adjacent_seats_in_one_row,
    best_available_without_enough_seats_is_not_enough_seats_and_changes_nothing,
    load_event_is_idempotent,
    best_available_never_picks_a_blocked_seat,
    a_named_hold_of_a_blocked_seat_is_not_entitled_and_changes_nothing,
    racing_tasks_never_hold_one_seat_twice [flavor = "multi_thread", worker_threads = 4],
    a_release_racing_a_pin_has_exactly_one_winner [flavor = "multi_thread", worker_threads = 4],
    feed_gives_the_net_change_since_a_version,
    feed_of_a_version_older_than_the_ring_or_from_the_future_has_no_changes,
    release_sold_returns_refunded_seats_to_sale_and_frees_the_buyers_allowance,
    mark_sold_repairs_seats_the_store_sold_and_a_hold_on_them_loses,
    history_records_every_change_once_in_version_order,
    history_says_when_records_were_trimmed,
    orphan_rule_refuses_a_hold_that_strands_a_seat_at_a_row_end_and_changes_nothing,
    orphan_rule_refuses_a_seat_left_between_taken_seats_and_a_hold_that_fills_the_gap_is_fine,
    orphan_rule_counts_an_aisle_as_a_row_end,
    orphan_rule_names_every_seat_a_multi_seat_hold_would_strand,
    orphan_rule_ignores_a_seat_that_was_alone_before_the_hold,
    orphan_rule_off_lets_any_hold_strand_a_seat,
    best_available_under_the_orphan_rule_never_strands_a_seat,
    freed_seats_go_to_the_pool_only_while_the_waitlist_flag_is_set,
    an_offer_moves_pool_seats_into_a_hold_of_the_fan_all_or_nothing,
    release_pool_and_clearing_the_flag_put_pool_seats_back_on_sale,
    a_clear_of_the_waitlist_flag_loses_to_a_set_made_since_its_generation_was_read,
}
