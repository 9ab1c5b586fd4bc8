//! The waiting-room suite: the contract of the `WaitingRoom` trait, run against the
//! embedded backend (`on_memory::*`), against Redis (`on_redis::*`, each test on its
//! own random key prefix, deleted when it ends) and against a Redis Cluster of three
//! masters (`on_cluster::*`, one per test binary): the pre-queue shuffle, exact positions,
//! expiry of entries that stop polling, admission at the rate, admissions that end,
//! the length limit, proof-of-work challenges and one queue per event. Time is what
//! each test passes in, so nothing depends on how fast the machine is. Then what only
//! the shared backend has: two nodes on one queue, and the drainer's lease moving to
//! another node when its holder stops.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use boxoffice_core::{EventId, UnixMs, UserId};
use boxoffice_server::waiting_room::memory::{MAX_POLL_SECONDS, PREQUEUE_MIN_POLL_SECONDS};
use boxoffice_server::waiting_room::redis::LEASE_MS;
use boxoffice_server::waiting_room::{
    CHALLENGE_TTL_MS, EXPIRED_RETENTION_MS, EntryView, HEARTBEAT_MISSES, MemoryWaitingRoom, Phase, Policy,
    QueueError, QueueId, RedisWaitingRoom, TickReport, WaitingRoom,
};

use crate::services::redis_url;

const ONSALE: UnixMs = 1_800_000_000_000;
const EVENT: EventId = EventId(1);

#[derive(Debug, Clone, Copy)]
enum Backend {
    Memory,
    Redis,
    /// The Redis room on a Redis Cluster of three masters (`cluster::shared_cluster`).
    Cluster,
}

/// A key prefix of one test in the shared Redis; its keys are deleted when dropped.
pub struct Keyspace {
    pub prefix: String,
}

impl Keyspace {
    pub fn new() -> Keyspace {
        Keyspace { prefix: format!("bo-test-{:016x}:", rand::random::<u64>()) }
    }
}

impl Drop for Keyspace {
    fn drop(&mut self) {
        let pattern = format!("{}*", self.prefix);
        let Ok(client) = redis::Client::open(redis_url()) else { return };
        let Ok(mut conn) = client.get_connection() else { return };
        let mut cursor: u64 = 0;
        loop {
            let Ok((next, keys)) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(10_000)
                .query::<(u64, Vec<String>)>(&mut conn)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("UNLINK").arg(keys).query(&mut conn);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

/// One waiting room under test; derefs to the trait.
enum Room {
    Memory(MemoryWaitingRoom),
    Redis(Box<RedisWaitingRoom>, Arc<Keyspace>),
}

impl Room {
    async fn open(b: Backend, seed: u64) -> Room {
        match b {
            Backend::Memory => Room::Memory(MemoryWaitingRoom::with_seed(seed)),
            Backend::Redis => Room::redis_node(&Arc::new(Keyspace::new()), Some(seed)).await,
            Backend::Cluster => {
                let keys = Arc::new(Keyspace::new());
                let url = tokio::task::spawn_blocking(|| crate::cluster::shared_cluster().url())
                    .await
                    .expect("the test cluster starts");
                let room = RedisWaitingRoom::connect(&url, &keys.prefix)
                    .await
                    .unwrap_or_else(|e| panic!("the test cluster at {url} answers: {e}"))
                    .with_seed(seed);
                Room::Redis(Box::new(room), keys)
            }
        }
    }

    /// One more node on the same keys.
    async fn redis_node(keys: &Arc<Keyspace>, seed: Option<u64>) -> Room {
        let room = RedisWaitingRoom::connect(&redis_url(), &keys.prefix)
            .await
            .unwrap_or_else(|e| panic!("these tests need Redis at {}: {e}", redis_url()));
        let room = match seed {
            Some(seed) => room.with_seed(seed),
            None => room,
        };
        Room::Redis(Box::new(room), keys.clone())
    }

    fn redis(&self) -> &RedisWaitingRoom {
        match self {
            Room::Redis(room, _) => room,
            Room::Memory(_) => panic!("a Redis-only helper"),
        }
    }

    async fn check(&self, event: EventId, policy: &Policy, now: UnixMs) {
        match self {
            Room::Memory(room) => room.check_invariants(),
            Room::Redis(room, _) => room.check_invariants(event, policy, now).await.unwrap(),
        }
    }
}

impl Deref for Room {
    type Target = dyn WaitingRoom;
    fn deref(&self) -> &Self::Target {
        match self {
            Room::Memory(room) => room,
            Room::Redis(room, _) => room.as_ref(),
        }
    }
}

fn policy(rate: u32) -> Policy {
    Policy { admit_rate_per_second: rate, token_ttl_ms: 600_000, max_length: 1_000_000, onsale_at: ONSALE }
}

fn user(i: usize) -> UserId {
    UserId::parse(&format!("fan{i}")).unwrap()
}

/// Runs `trials` on `tasks` tasks; `trial(room, i)` returns one result each.
async fn in_parallel<T, F, Fut>(room: Arc<Room>, trials: u64, tasks: u64, trial: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<Room>, u64) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let room = room.clone();
        set.spawn(async move {
            let mut out = Vec::new();
            let mut i = task;
            while i < trials {
                out.push(trial(room.clone(), i).await);
                i += tasks;
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(done) = set.join_next().await {
        all.extend(done.unwrap());
    }
    all
}

/// Joins users `0..n` before the onsale of `event`, opens the line, and returns the
/// user at each position, front first.
async fn shuffled_order(room: &Room, event: EventId, n: usize) -> Vec<usize> {
    let p = policy(1);
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(room.join(event, &user(i), &p, ONSALE - 1_000).await.unwrap().id);
    }
    room.tick(event, &p, ONSALE).await;
    let mut order = vec![usize::MAX; n];
    for (i, id) in ids.iter().enumerate() {
        let view = room.view(event, *id, &user(i), &p, ONSALE).await.unwrap();
        order[view.position.unwrap() as usize - 1] = i;
    }
    order
}

async fn the_prequeue_shuffle_puts_each_fan_at_each_position_equally_often(b: Backend) {
    // Chi-square of the (fan, position) table over 20,000 shuffles of 5 fans: 16
    // degrees of freedom, so 39.25 is the 0.1% critical value. The seeds are fixed,
    // so this passes or fails the same way every run.
    let (n, trials) = (5, 20_000);
    let room = Arc::new(Room::open(b, 1).await);
    let orders = in_parallel(room, trials, 32, move |room, trial| async move {
        shuffled_order(&room, EventId(10 + trial), n).await
    })
    .await;
    let mut counts = vec![vec![0u32; n]; n];
    for order in orders {
        for (position, fan) in order.into_iter().enumerate() {
            counts[fan][position] += 1;
        }
    }
    let expected = trials as f64 / n as f64;
    let chi_square: f64 =
        counts.iter().flatten().map(|&c| (f64::from(c) - expected).powi(2) / expected).sum();
    assert!(chi_square < 39.25, "chi-square {chi_square:.1} over {counts:?}");
}

async fn the_prequeue_shuffle_makes_every_order_equally_likely(b: Backend) {
    // 24 orders of 4 fans, 24,000 shuffles: 23 degrees of freedom, 0.1% critical
    // value 49.73.
    let trials = 24_000u64;
    let room = Arc::new(Room::open(b, 2).await);
    let orders = in_parallel(room, trials, 32, |room, trial| async move {
        shuffled_order(&room, EventId(1_000_000 + trial), 4).await
    })
    .await;
    let mut counts: HashMap<Vec<usize>, u32> = HashMap::new();
    for order in orders {
        *counts.entry(order).or_default() += 1;
    }
    assert_eq!(counts.len(), 24, "every order happens");
    let expected = trials as f64 / 24.0;
    let chi_square: f64 = counts.values().map(|&c| (f64::from(c) - expected).powi(2) / expected).sum();
    assert!(chi_square < 49.73, "chi-square {chi_square:.1} over {counts:?}");
}

async fn prequeue_entries_have_no_position_until_the_onsale(b: Backend) {
    let p = policy(10);
    let q = Room::open(b, 1).await;
    let view = q.join(EVENT, &user(1), &p, ONSALE - 40_000).await.unwrap();
    assert_eq!(view.phase, Phase::Prequeue);
    assert_eq!((view.position, view.eta_seconds), (None, None));
    assert_eq!(view.poll_after_seconds, Some(MAX_POLL_SECONDS), "40 s early: the longest interval");
    let close = q.view(EVENT, view.id, &user(1), &p, ONSALE - 2_000).await.unwrap();
    assert_eq!(close.poll_after_seconds, Some(PREQUEUE_MIN_POLL_SECONDS));
    let open = q.view(EVENT, view.id, &user(1), &p, ONSALE).await.unwrap();
    assert_eq!((open.phase, open.position, open.eta_seconds), (Phase::Waiting, Some(1), Some(1)));
    q.check(EVENT, &p, ONSALE).await;
}

async fn joins_after_the_onsale_line_up_fifo_behind_the_shuffled_prequeue(b: Backend) {
    let p = policy(1);
    let q = Room::open(b, 9).await;
    let mut early: Vec<QueueId> = Vec::new();
    for i in 0..5 {
        early.push(q.join(EVENT, &user(i), &p, ONSALE - 5_000).await.unwrap().id);
    }
    let mut late: Vec<EntryView> = Vec::new();
    for i in 5..10 {
        late.push(q.join(EVENT, &user(i), &p, ONSALE + 10).await.unwrap());
    }
    for (k, view) in late.iter().enumerate() {
        assert_eq!(view.position, Some(6 + k as u64), "behind all five of the pre-queue, in join order");
    }
    let mut admitted = Vec::new();
    for second in 1..=10 {
        let now = ONSALE + 10 + second * 1_000;
        assert_eq!(q.tick(EVENT, &p, now).await.admitted, 1, "one a second");
        for (i, id) in early.iter().chain(late.iter().map(|v| &v.id)).enumerate() {
            if q.view(EVENT, *id, &user(i), &p, now).await.unwrap().phase == Phase::Admitted
                && !admitted.contains(&i)
            {
                admitted.push(i);
            }
        }
        q.check(EVENT, &p, now).await;
    }
    assert!(admitted[..5].iter().all(|&i| i < 5), "the pre-queue first: {admitted:?}");
    assert_eq!(admitted[5..], [5, 6, 7, 8, 9], "then the later joins in order");
}

async fn positions_are_exact_and_close_up_when_someone_ahead_expires(b: Backend) {
    let p = policy(100);
    let q = Room::open(b, 2).await;
    let t = ONSALE + 1_000;
    let mut views: Vec<EntryView> = Vec::new();
    for i in 0..5 {
        views.push(q.join(EVENT, &user(i), &p, t).await.unwrap());
    }
    assert_eq!(views.iter().map(|v| v.position.unwrap()).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(views[4].eta_seconds, Some(1), "5 at 100/s: within the first second");
    // Everyone but fan 1 keeps polling; fan 1 misses three advised intervals. Joins and
    // polls only: nobody is admitted while no admission step runs.
    let advised = views[1].poll_after_seconds.unwrap() * 1000;
    let mut now = t;
    while now <= t + HEARTBEAT_MISSES * advised {
        now += 500;
        for i in [0, 2, 3, 4] {
            q.view(EVENT, views[i].id, &user(i), &p, now).await.unwrap();
        }
    }
    let fan1 = q.view(EVENT, views[1].id, &user(1), &p, now).await.unwrap();
    assert_eq!(fan1.phase, Phase::Expired);
    let mut positions = Vec::new();
    for i in [0, 2, 3, 4] {
        positions.push(q.view(EVENT, views[i].id, &user(i), &p, now).await.unwrap().position);
    }
    assert_eq!(positions, [Some(1), Some(2), Some(3), Some(4)], "everyone behind fan 1 moved up");
    assert_eq!(q.length(EVENT).await, 4);
    q.check(EVENT, &p, now).await;
}

async fn an_admission_step_expires_entries_nobody_reads(b: Backend) {
    let p = policy(1);
    let q = Room::open(b, 3).await;
    let t = ONSALE + 1;
    let views = [
        q.join(EVENT, &user(1), &p, t).await.unwrap(),
        q.join(EVENT, &user(2), &p, t).await.unwrap(),
        q.join(EVENT, &user(3), &p, t).await.unwrap(),
    ];
    // Fans 1 and 2 stop polling, fan 3 polls; the step a second after their deadline
    // expires 1 and 2 (admitting nobody dead) and fan 3 is at the front.
    let deadline = t + HEARTBEAT_MISSES * views[0].poll_after_seconds.unwrap() * 1000;
    q.view(EVENT, views[2].id, &user(3), &p, deadline - 1_000).await.unwrap();
    let now = deadline + 1_000;
    let report = q.tick(EVENT, &p, now).await;
    assert_eq!((report.expired, report.length), (2, 0), "{report:?}");
    assert_eq!(report.admitted, 1, "the one credit went to the live fan");
    assert_eq!(q.view(EVENT, views[2].id, &user(3), &p, now).await.unwrap().phase, Phase::Admitted);
    q.check(EVENT, &p, now).await;
}

async fn joining_again_returns_the_same_entry_and_after_expiry_a_new_one_at_the_back(b: Backend) {
    let p = policy(1);
    let q = Room::open(b, 3).await;
    let t = ONSALE + 1;
    let first = q.join(EVENT, &user(1), &p, t).await.unwrap();
    let second = q.join(EVENT, &user(2), &p, t).await.unwrap();
    let again = q.join(EVENT, &user(1), &p, t + 10).await.unwrap();
    assert_eq!((again.id, again.position), (first.id, Some(1)), "one entry per user");
    assert_eq!(q.length(EVENT).await, 2);
    // Fan 1 stops polling; fan 2 polls. Fan 1's entry expires and a new join lines up
    // behind fan 2.
    let later = t + 10 + HEARTBEAT_MISSES * first.poll_after_seconds.unwrap() * 1000 + 1;
    q.view(EVENT, second.id, &user(2), &p, later - 1_000).await.unwrap();
    let back = q.join(EVENT, &user(1), &p, later).await.unwrap();
    assert_ne!(back.id, first.id);
    assert_eq!(back.position, Some(2));
    assert_eq!(
        q.view(EVENT, first.id, &user(1), &p, later).await.unwrap().phase,
        Phase::Expired,
        "the old one reads expired"
    );
    q.check(EVENT, &p, later).await;
}

async fn admission_drains_at_the_rate_and_the_eta_holds_within_ten_percent(b: Backend) {
    let rate = 50;
    let p = policy(rate);
    let q = Arc::new(Room::open(b, 4).await);
    let t = ONSALE;
    let n = 1_000;
    let mut views: Vec<EntryView> = Vec::new();
    for i in 0..n {
        views.push(q.join(EVENT, &user(i), &p, t).await.unwrap());
    }
    assert_eq!(views[n - 1].eta_seconds, Some(20), "1000 at 50/s");
    let mut admitted_at: Vec<Option<UnixMs>> = vec![None; n];
    let mut admitted = 0;
    let mut now = t;
    while admitted < n as u64 {
        now += 100;
        let report = q.tick(EVENT, &p, now).await;
        assert!(report.admitted <= 5, "never more than a tick's worth: {report:?}");
        admitted += report.admitted;
        // Every waiting fan polls, all at once.
        let mut polls = tokio::task::JoinSet::new();
        for (i, view) in views.iter().enumerate() {
            if admitted_at[i].is_none() {
                let (q, id) = (q.clone(), view.id);
                polls.spawn(async move { (i, q.view(EVENT, id, &user(i), &p, now).await.unwrap().phase) });
            }
        }
        while let Some(done) = polls.join_next().await {
            let (i, phase) = done.unwrap();
            if phase == Phase::Admitted {
                admitted_at[i] = Some(now);
            }
        }
    }
    assert_eq!(now - t, 20_000, "1000 at 50/s take 20 s");
    for i in [99, 499, 999] {
        let eta_ms = views[i].eta_seconds.unwrap() * 1000;
        let took = admitted_at[i].unwrap() - t;
        assert!(took.abs_diff(eta_ms) * 10 <= eta_ms, "fan {i}: eta {eta_ms} ms, admitted after {took} ms");
    }
    q.check(EVENT, &p, now).await;
}

async fn admission_does_not_save_up_while_nobody_waits(b: Backend) {
    let p = policy(10);
    let q = Room::open(b, 5).await;
    // The event's queue exists (someone came and was admitted) but nobody waits.
    let early = q.join(EVENT, &user(0), &p, ONSALE).await.unwrap();
    assert_eq!(q.tick(EVENT, &p, ONSALE + 100).await.admitted, 1);
    assert_eq!(q.view(EVENT, early.id, &user(0), &p, ONSALE + 100).await.unwrap().phase, Phase::Admitted);
    q.tick(EVENT, &p, ONSALE + 60_000).await;
    let view = q.join(EVENT, &user(1), &p, ONSALE + 60_000).await.unwrap();
    assert_eq!(q.tick(EVENT, &p, ONSALE + 60_000).await.admitted, 0, "an idle minute earned nothing");
    assert_eq!(q.tick(EVENT, &p, ONSALE + 60_100).await.admitted, 1, "a tenth of a second at 10/s earns one");
    assert_eq!(q.view(EVENT, view.id, &user(1), &p, ONSALE + 60_100).await.unwrap().phase, Phase::Admitted);
}

async fn an_admission_ends_after_the_token_ttl_and_the_fan_may_join_again(b: Backend) {
    let p = policy(10);
    let q = Room::open(b, 6).await;
    let view = q.join(EVENT, &user(1), &p, ONSALE).await.unwrap();
    q.tick(EVENT, &p, ONSALE + 100).await;
    let admitted = q.view(EVENT, view.id, &user(1), &p, ONSALE + 100).await.unwrap();
    assert_eq!(admitted.phase, Phase::Admitted);
    assert_eq!(admitted.admitted_until, Some(ONSALE + 100 + p.token_ttl_ms));
    assert_eq!(
        q.join(EVENT, &user(1), &p, ONSALE + 200).await.unwrap().id,
        view.id,
        "still admitted: the same entry"
    );
    assert_eq!(q.entry_of(EVENT, &user(1), &p, ONSALE + 200).await.unwrap().map(|e| e.id), Some(view.id));
    let end = ONSALE + 100 + p.token_ttl_ms;
    q.tick(EVENT, &p, end).await;
    assert_eq!(q.view(EVENT, view.id, &user(1), &p, end).await.unwrap().phase, Phase::Expired);
    assert_eq!(q.entry_of(EVENT, &user(1), &p, end).await.unwrap(), None, "no live entry");
    let again = q.join(EVENT, &user(1), &p, end).await.unwrap();
    assert_ne!(again.id, view.id);
    assert_eq!(again.phase, Phase::Waiting);
    // The expired entry is forgotten after its retention.
    q.view(EVENT, again.id, &user(1), &p, end + EXPIRED_RETENTION_MS).await.unwrap();
    q.tick(EVENT, &p, end + EXPIRED_RETENTION_MS + 1_000).await;
    assert_eq!(
        q.view(EVENT, view.id, &user(1), &p, end + EXPIRED_RETENTION_MS + 1_000).await,
        Err(QueueError::UnknownEntry)
    );
    q.check(EVENT, &p, end + EXPIRED_RETENTION_MS + 1_000).await;
}

async fn a_full_queue_refuses_new_joins_but_not_its_members(b: Backend) {
    let p = Policy { max_length: 3, ..policy(1) };
    let q = Room::open(b, 7).await;
    for i in 0..2 {
        q.join(EVENT, &user(i), &p, ONSALE - 1_000).await.unwrap();
    }
    q.join(EVENT, &user(2), &p, ONSALE + 1).await.unwrap();
    assert_eq!(q.join(EVENT, &user(3), &p, ONSALE + 2).await, Err(QueueError::Full { max_length: 3 }));
    assert!(q.join(EVENT, &user(0), &p, ONSALE + 3).await.is_ok(), "a member joining again is no new entry");
    q.tick(EVENT, &p, ONSALE + 1_003).await;
    assert!(q.join(EVENT, &user(3), &p, ONSALE + 1_003).await.is_ok(), "an admission made room");
}

async fn only_the_owner_polling_keeps_an_entry_alive(b: Backend) {
    let p = policy(1);
    let q = Room::open(b, 8).await;
    let view = q.join(EVENT, &user(1), &p, ONSALE).await.unwrap();
    let deadline = ONSALE + HEARTBEAT_MISSES * view.poll_after_seconds.unwrap() * 1000;
    let seen = q.view(EVENT, view.id, &user(99), &p, deadline - 1).await.unwrap();
    assert_eq!((seen.user, seen.position), (user(1), Some(1)), "anyone may read it");
    q.tick(EVENT, &p, deadline).await;
    assert_eq!(q.view(EVENT, view.id, &user(1), &p, deadline).await.unwrap().phase, Phase::Expired);
}

async fn a_challenge_is_single_use_bound_to_its_user_and_event_and_expires(b: Backend) {
    let room = Room::open(b, 1).await;
    let (ev, other_ev) = (EventId(1), EventId(2));
    let take = |event, who, challenge: String, now| {
        let room = &room;
        async move { room.take_challenge(event, &user(who), &challenge, now).await.unwrap() }
    };
    let c = room.issue_challenge(ev, &user(1), ONSALE).await.unwrap();
    assert_eq!(c.expires_ms, ONSALE + CHALLENGE_TTL_MS);
    assert!(!take(ev, 2, c.challenge.clone(), ONSALE).await, "another user");
    assert!(!take(other_ev, 1, c.challenge.clone(), ONSALE).await, "another event");
    assert!(!take(ev, 1, "00112233445566778899aabbccddeeff".into(), ONSALE).await, "another challenge");
    assert!(!take(ev, 1, "not hex".into(), ONSALE).await);
    assert!(take(ev, 1, c.challenge.to_uppercase(), ONSALE).await, "hex in either case");
    assert!(!take(ev, 1, c.challenge.clone(), ONSALE).await, "used once");

    let late = room.issue_challenge(ev, &user(1), ONSALE).await.unwrap();
    assert!(!take(ev, 1, late.challenge.clone(), late.expires_ms).await, "expired");
    let first = room.issue_challenge(ev, &user(1), ONSALE).await.unwrap();
    let second = room.issue_challenge(ev, &user(1), ONSALE).await.unwrap();
    assert!(!take(ev, 1, first.challenge, ONSALE).await, "replaced by a newer one");
    assert!(take(ev, 1, second.challenge, ONSALE).await);
}

async fn outstanding_challenges_are_bounded(b: Backend) {
    let room = match b {
        Backend::Memory => Room::Memory(MemoryWaitingRoom::new().with_max_challenges(2)),
        Backend::Redis | Backend::Cluster => match Room::open(b, 1).await {
            Room::Redis(room, keys) => Room::Redis(Box::new(room.with_max_challenges(2)), keys),
            Room::Memory(_) => unreachable!(),
        },
    };
    room.issue_challenge(EventId(1), &user(1), ONSALE).await.unwrap();
    room.issue_challenge(EventId(1), &user(2), ONSALE).await.unwrap();
    assert_eq!(room.issue_challenge(EventId(1), &user(3), ONSALE).await, Err(QueueError::ChallengesFull));
    assert!(room.issue_challenge(EventId(1), &user(1), ONSALE).await.is_ok(), "a user's own replaces");
    let later = ONSALE + CHALLENGE_TTL_MS;
    assert!(room.issue_challenge(EventId(1), &user(3), later).await.is_ok(), "expired ones make room");
}

async fn the_room_keeps_one_queue_per_event(b: Backend) {
    let room = Room::open(b, 1).await;
    let p = policy(1);
    let a = room.join(EventId(1), &user(1), &p, ONSALE).await.unwrap();
    let b2 = room.join(EventId(2), &user(1), &p, ONSALE).await.unwrap();
    assert_ne!(a.id, b2.id);
    assert_eq!((a.position, b2.position), (Some(1), Some(1)));
    assert_eq!(room.view(EventId(2), a.id, &user(1), &p, ONSALE).await, Err(QueueError::UnknownEntry));
    assert_eq!(room.view(EventId(3), a.id, &user(1), &p, ONSALE).await, Err(QueueError::UnknownEntry));
    let mut events = room.events().await;
    events.sort();
    assert_eq!(events, [EventId(1), EventId(2)]);
    assert_eq!(room.length(EventId(1)).await, 1);
    assert_eq!(room.tick(EventId(9), &p, ONSALE).await, TickReport::default());
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod on_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Memory).await;
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Redis).await;
                }
            )*
        }
        mod on_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Cluster).await;
                }
            )*
        }
    };
}

suite!(
    the_prequeue_shuffle_puts_each_fan_at_each_position_equally_often,
    the_prequeue_shuffle_makes_every_order_equally_likely,
    prequeue_entries_have_no_position_until_the_onsale,
    joins_after_the_onsale_line_up_fifo_behind_the_shuffled_prequeue,
    positions_are_exact_and_close_up_when_someone_ahead_expires,
    an_admission_step_expires_entries_nobody_reads,
    joining_again_returns_the_same_entry_and_after_expiry_a_new_one_at_the_back,
    admission_drains_at_the_rate_and_the_eta_holds_within_ten_percent,
    admission_does_not_save_up_while_nobody_waits,
    an_admission_ends_after_the_token_ttl_and_the_fan_may_join_again,
    a_full_queue_refuses_new_joins_but_not_its_members,
    only_the_owner_polling_keeps_an_entry_alive,
    a_challenge_is_single_use_bound_to_its_user_and_event_and_expires,
    outstanding_challenges_are_bounded,
    the_room_keeps_one_queue_per_event,
);

// ---- Redis only: several nodes on one queue ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_queue_one_entry_per_user_and_one_line() {
    let keys = Arc::new(Keyspace::new());
    let (a, b) = (Room::redis_node(&keys, None).await, Room::redis_node(&keys, None).await);
    let p = policy(1);
    let on_a = a.join(EVENT, &user(1), &p, ONSALE + 1).await.unwrap();
    let on_b = b.join(EVENT, &user(1), &p, ONSALE + 2).await.unwrap();
    assert_eq!(on_a.id, on_b.id, "one entry per user across nodes");
    let second = b.join(EVENT, &user(2), &p, ONSALE + 3).await.unwrap();
    assert_eq!(second.position, Some(2));
    assert_eq!(a.view(EVENT, second.id, &user(2), &p, ONSALE + 4).await.unwrap().position, Some(2));
    assert_eq!(a.length(EVENT).await, 2);
    assert_eq!(b.events().await, [EVENT]);
    a.check(EVENT, &p, ONSALE + 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_drainer_at_a_time_and_the_lease_moves_when_its_holder_stops() {
    let keys = Arc::new(Keyspace::new());
    let (a, b) = (Room::redis_node(&keys, None).await, Room::redis_node(&keys, None).await);
    let p = policy(10);
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(a.join(EVENT, &user(i), &p, ONSALE).await.unwrap().id);
    }
    // Both nodes run admission steps; only the lease holder admits, at the event's rate.
    let mut now = ONSALE;
    let mut admitted = 0;
    for _ in 0..10 {
        now += 100;
        let (ra, rb) = (a.tick(EVENT, &p, now).await, b.tick(EVENT, &p, now).await);
        assert_eq!(rb.admitted, 0, "node b does not hold the lease");
        admitted += ra.admitted;
    }
    assert_eq!(admitted, 10, "one second at 10/s, not twice that");
    let lease_a = a.redis().acquire_lease(EVENT).await.unwrap().expect("a holds the lease");
    assert!(lease_a.starts_with(a.redis().node()));
    assert_eq!(b.redis().acquire_lease(EVENT).await.unwrap(), None);

    // Node a stops (no more steps): within the lease its line stands still, then b takes
    // the lease with a higher fencing token and admits.
    tokio::time::sleep(Duration::from_millis(LEASE_MS + 200)).await;
    now += 100;
    let report = b.tick(EVENT, &p, now).await;
    assert_eq!(report.admitted, 1, "b drains now: {report:?}");
    let lease_b = b.redis().acquire_lease(EVENT).await.unwrap().expect("b holds the lease");
    let fence = |lease: &str| lease.rsplit(':').next().unwrap().parse::<u64>().unwrap();
    assert!(fence(&lease_b) > fence(&lease_a), "{lease_b} after {lease_a}");

    // Node a wakes up with its old lease: the admission script refuses it.
    let stale = a.redis().tick_with_lease(EVENT, &p, now + 1_000, &lease_a).await.unwrap();
    assert_eq!(stale, None, "fenced");
    assert_eq!(a.redis().fenced_steps(), 1);
    assert_eq!(a.tick(EVENT, &p, now + 1_000).await.admitted, 0, "and it cannot take the lease back");
    let mut phases = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        phases.push(a.view(EVENT, *id, &user(i), &p, now).await.unwrap().phase);
    }
    assert_eq!(phases.iter().filter(|&&ph| ph == Phase::Admitted).count(), 11);
    assert_eq!(phases.iter().filter(|&&ph| ph == Phase::Waiting).count(), 29);
    a.check(EVENT, &p, now).await;
}
