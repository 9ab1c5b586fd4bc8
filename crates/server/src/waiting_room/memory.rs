//! The embedded waiting room: every event's queue in this process's memory, one
//! `parking_lot::Mutex` per event (no call awaits while holding it).
//!
//! An event's queue ([`EventQueue`]) keeps:
//! - `entries` by queue id and `by_user` (one live entry per user);
//! - the pre-queue, ids in join order, shuffled once with Fisher-Yates when the onsale
//!   comes (from a seeded RNG in tests);
//! - the line: ids in sequence-number order. Each entry that enters the line gets the
//!   next sequence number (pre-queue entries in shuffled order, then later joins), so
//!   the line is FIFO; admission takes from its front. [`Ranks`] turns a sequence number
//!   into an exact position even when entries in the middle expire;
//! - `due`: entry ids by the second of their deadline (expiry unless polled, end of an
//!   admission, end of an expired entry's retention), swept every tick;
//! - the admission token bucket, in thousandths of an admission so that a rate adds up
//!   exactly: it fills at the event's rate while someone waits (at most one second's
//!   worth) and is empty while nobody does, so admission is steady rather than a burst.
//!
//! Memory: about 230 bytes per queued user (measured in docs/benchmarks.md).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use boxoffice_core::{EventId, UnixMs, UserId};
use parking_lot::{Mutex, RwLock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::order::Ranks;
use super::{
    CHALLENGE_TTL_MS, Challenge, EXPIRED_RETENTION_MS, EntryView, HEARTBEAT_MISSES, MAX_CHALLENGES, Phase,
    Policy, QueueError, QueueId, TickReport, WaitingRoom,
};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Shortest poll interval advised to a waiting entry.
pub const MIN_POLL_SECONDS: u64 = 1;
/// Longest poll interval advised.
pub const MAX_POLL_SECONDS: u64 = 30;
/// Shortest poll interval advised in the pre-queue: nothing changes there before the onsale.
pub const PREQUEUE_MIN_POLL_SECONDS: u64 = 5;
/// Sequence numbers the rank tree keeps behind the front of the line before it is rebuilt.
const COMPACT_AFTER: u64 = 1 << 16;
/// How often expired challenges are forgotten.
const CHALLENGE_PURGE_INTERVAL_MS: u64 = 60_000;
/// Deadlines one tick applies at most (the rest wait for the next tick; reads apply a
/// passed deadline themselves), so that one tick holds the queue's lock briefly.
const MAX_DEADLINES_PER_TICK: usize = 100_000;
/// The sequence number of an entry still in the pre-queue.
const NO_SEQ: u64 = u64::MAX;

struct Entry {
    user: UserId,
    /// Place in the line; [`NO_SEQ`] in the pre-queue.
    seq: u64,
    /// Pre-queue and waiting: when it expires unless polled. Admitted: when its admission
    /// ends. Expired: when it is forgotten.
    deadline_ms: UnixMs,
    phase: Phase,
}

/// One event's queue. Public for benchmarks and tests; the server uses it through
/// [`MemoryWaitingRoom`].
pub struct EventQueue {
    entries: FastMap<QueueId, Entry>,
    by_user: FastMap<UserId, QueueId>,
    prequeue: Vec<QueueId>,
    prequeued: u64,
    /// The onsale has come and the pre-queue has been shuffled into the line.
    opened: bool,
    line: VecDeque<QueueId>,
    ranks: Ranks,
    waiting: u64,
    due: BTreeMap<u64, Vec<QueueId>>,
    /// Thousandths of an admission.
    credit_milli: u64,
    refilled_ms: UnixMs,
    rng: StdRng,
}

impl EventQueue {
    pub fn new(rng: StdRng, now: UnixMs) -> Self {
        EventQueue {
            entries: FastMap::default(),
            by_user: FastMap::default(),
            prequeue: Vec::new(),
            prequeued: 0,
            opened: false,
            line: VecDeque::new(),
            ranks: Ranks::new(0),
            waiting: 0,
            due: BTreeMap::new(),
            credit_milli: 0,
            refilled_ms: now,
            rng,
        }
    }

    /// Pre-queue plus waiting entries.
    pub fn length(&self) -> u64 {
        self.prequeued + self.waiting
    }

    /// See [`WaitingRoom::join`].
    pub fn join(&mut self, user: &UserId, policy: &Policy, now: UnixMs) -> Result<EntryView, QueueError> {
        self.open_if_due(policy, now);
        if let Some(id) = self.live_entry(user, now) {
            self.touch(id, policy, now);
            return Ok(self.view_of(id, policy, now));
        }
        if self.length() >= policy.max_length {
            return Err(QueueError::Full { max_length: policy.max_length });
        }
        let id = loop {
            let id: QueueId = rand::random();
            if !self.entries.contains_key(&id) {
                break id;
            }
        };
        let (phase, seq) = if self.opened {
            self.start_filling(now);
            let seq = self.ranks.next_seq();
            self.ranks.push(true);
            self.line.push_back(id);
            self.waiting += 1;
            (Phase::Waiting, seq)
        } else {
            self.prequeue.push(id);
            self.prequeued += 1;
            (Phase::Prequeue, NO_SEQ)
        };
        // Deadline 0 until the first touch below schedules the real one.
        self.entries.insert(id, Entry { user: user.clone(), seq, deadline_ms: 0, phase });
        self.by_user.insert(user.clone(), id);
        self.touch(id, policy, now);
        Ok(self.view_of(id, policy, now))
    }

    /// See [`WaitingRoom::entry_of`].
    pub fn entry_of(&mut self, user: &UserId, policy: &Policy, now: UnixMs) -> Option<EntryView> {
        self.open_if_due(policy, now);
        self.live_entry(user, now).map(|id| self.view_of(id, policy, now))
    }

    /// See [`WaitingRoom::view`].
    pub fn view(
        &mut self,
        id: QueueId,
        caller: &UserId,
        policy: &Policy,
        now: UnixMs,
    ) -> Result<EntryView, QueueError> {
        self.open_if_due(policy, now);
        self.settle(id, now);
        let entry = self.entries.get(&id).ok_or(QueueError::UnknownEntry)?;
        if &entry.user == caller {
            self.touch(id, policy, now);
        }
        Ok(self.view_of(id, policy, now))
    }

    /// See [`WaitingRoom::tick`].
    pub fn tick(&mut self, policy: &Policy, now: UnixMs) -> TickReport {
        self.open_if_due(policy, now);
        let mut report = TickReport::default();
        let now_s = now / 1000;
        let mut budget = MAX_DEADLINES_PER_TICK;
        while budget > 0 {
            let Some(mut bucket) = self.due.first_entry() else { break };
            if *bucket.key() > now_s {
                break;
            }
            let ids = bucket.get_mut();
            let batch: Vec<QueueId> = ids.drain(ids.len().saturating_sub(budget)..).collect();
            if ids.is_empty() {
                bucket.remove();
            }
            budget -= batch.len();
            for id in batch {
                if self.settle(id, now) {
                    report.expired += 1;
                }
            }
        }
        report.admitted = self.admit(policy, now);
        self.compact();
        report.length = self.length();
        report
    }

    /// The user's entry if it is in the pre-queue, waiting, or admitted with time left.
    fn live_entry(&mut self, user: &UserId, now: UnixMs) -> Option<QueueId> {
        let id = *self.by_user.get(user)?;
        self.settle(id, now);
        let entry = self.entries.get(&id)?;
        matches!(entry.phase, Phase::Prequeue | Phase::Waiting | Phase::Admitted).then_some(id)
    }

    /// At the onsale, the pre-queue is shuffled (Fisher-Yates: every order equally likely)
    /// and enters the line in that order, before any later join.
    fn open_if_due(&mut self, policy: &Policy, now: UnixMs) {
        if self.opened || now < policy.onsale_at {
            return;
        }
        self.opened = true;
        self.start_filling(now);
        let mut order = std::mem::take(&mut self.prequeue);
        for i in (1..order.len()).rev() {
            let j = self.rng.random_range(0..=i);
            order.swap(i, j);
        }
        for id in order {
            let Some(entry) = self.entries.get_mut(&id) else { continue };
            if entry.phase != Phase::Prequeue {
                continue;
            }
            entry.phase = Phase::Waiting;
            entry.seq = self.ranks.next_seq();
            self.ranks.push(true);
            self.line.push_back(id);
            self.prequeued -= 1;
            self.waiting += 1;
        }
    }

    /// Applies a deadline that has passed: a pre-queue or waiting entry expires (returns
    /// true), an admission ends, an expired entry is forgotten.
    fn settle(&mut self, id: QueueId, now: UnixMs) -> bool {
        let Some(entry) = self.entries.get(&id) else { return false };
        if entry.deadline_ms > now {
            return false;
        }
        let (phase, seq, deadline) = (entry.phase, entry.seq, entry.deadline_ms);
        let expired_now = match phase {
            Phase::Prequeue => {
                self.prequeued -= 1;
                true
            }
            Phase::Waiting => {
                self.ranks.remove(seq);
                self.waiting -= 1;
                true
            }
            Phase::Admitted => false,
            Phase::Expired => {
                let entry = self.entries.remove(&id).expect("looked up above");
                if self.by_user.get(&entry.user) == Some(&id) {
                    self.by_user.remove(&entry.user);
                }
                return false;
            }
        };
        let forget_at = deadline.max(now) + EXPIRED_RETENTION_MS;
        let entry = self.entries.get_mut(&id).expect("looked up above");
        entry.phase = Phase::Expired;
        entry.deadline_ms = forget_at;
        self.schedule(id, forget_at);
        expired_now
    }

    /// The bucket fills only while someone waits: called as the line stops being empty.
    fn start_filling(&mut self, now: UnixMs) {
        if self.waiting == 0 {
            self.credit_milli = 0;
            self.refilled_ms = self.refilled_ms.max(now);
        }
    }

    /// A poll by the owner: a pre-queue or waiting entry lives for another
    /// [`HEARTBEAT_MISSES`] advised intervals.
    fn touch(&mut self, id: QueueId, policy: &Policy, now: UnixMs) {
        let Some(poll_s) = self.view_of(id, policy, now).poll_after_seconds else { return };
        let entry = self.entries.get_mut(&id).expect("a viewed entry exists");
        let old = entry.deadline_ms;
        entry.deadline_ms = now + HEARTBEAT_MISSES * poll_s * 1000;
        let new = entry.deadline_ms;
        // Each deadline has an id in its second's bucket; a bucket that fires finds the
        // entry's deadline later and leaves it alone.
        if new.div_ceil(1000) != old.div_ceil(1000) || new <= now {
            self.schedule(id, new);
        }
    }

    fn schedule(&mut self, id: QueueId, deadline_ms: UnixMs) {
        self.due.entry(deadline_ms.div_ceil(1000)).or_default().push(id);
    }

    fn view_of(&self, id: QueueId, policy: &Policy, now: UnixMs) -> EntryView {
        let entry = self.entries.get(&id).expect("a viewed entry exists");
        let mut view = EntryView {
            id,
            user: entry.user.clone(),
            phase: entry.phase,
            position: None,
            eta_seconds: None,
            poll_after_seconds: None,
            admitted_until: None,
        };
        match entry.phase {
            Phase::Prequeue => {
                let until_onsale_s = policy.onsale_at.saturating_sub(now) / 1000;
                view.poll_after_seconds =
                    Some(until_onsale_s.clamp(PREQUEUE_MIN_POLL_SECONDS, MAX_POLL_SECONDS));
            }
            Phase::Waiting => {
                let position = self.ranks.rank(entry.seq);
                let eta = position.div_ceil(u64::from(policy.admit_rate_per_second.max(1)));
                view.position = Some(position);
                view.eta_seconds = Some(eta);
                view.poll_after_seconds = Some((eta / 4).clamp(MIN_POLL_SECONDS, MAX_POLL_SECONDS));
            }
            Phase::Admitted => view.admitted_until = Some(entry.deadline_ms),
            Phase::Expired => {}
        }
        view
    }

    /// The token bucket: admits the front of the line at the policy's rate.
    fn admit(&mut self, policy: &Policy, now: UnixMs) -> u64 {
        let rate = u64::from(policy.admit_rate_per_second.max(1));
        if self.waiting == 0 {
            self.credit_milli = 0;
        } else {
            let elapsed_ms = now.saturating_sub(self.refilled_ms);
            self.credit_milli =
                self.credit_milli.saturating_add(elapsed_ms.saturating_mul(rate)).min(rate * 1000);
        }
        self.refilled_ms = self.refilled_ms.max(now);
        let mut admitted = 0;
        while self.credit_milli >= 1000 {
            let Some(id) = self.line.pop_front() else { break };
            let seq = self.ranks.next_seq() - self.line.len() as u64 - 1;
            let Some(entry) = self.entries.get_mut(&id) else { continue };
            if entry.phase != Phase::Waiting || entry.seq != seq {
                continue;
            }
            entry.phase = Phase::Admitted;
            entry.deadline_ms = now + policy.token_ttl_ms;
            let deadline = entry.deadline_ms;
            self.ranks.remove(seq);
            self.waiting -= 1;
            self.credit_milli -= 1000;
            admitted += 1;
            self.schedule(id, deadline);
        }
        admitted
    }

    /// Rebuilds the rank tree from the line once most of it lies behind the front, and
    /// gives back memory a drained queue no longer needs.
    fn compact(&mut self) {
        let front = self.ranks.next_seq() - self.line.len() as u64;
        if front - self.ranks.base() > COMPACT_AFTER.max(self.ranks.len() as u64 / 2) {
            let mut ranks = Ranks::new(front);
            for (i, id) in self.line.iter().enumerate() {
                let seq = front + i as u64;
                ranks.push(self.entries.get(id).is_some_and(|e| e.phase == Phase::Waiting && e.seq == seq));
            }
            self.ranks = ranks;
            if self.line.capacity() > 4 * self.line.len() + 1024 {
                self.line.shrink_to_fit();
            }
        }
        if self.entries.capacity() > 4 * self.entries.len() + 1024 {
            self.entries.shrink_to_fit();
            self.by_user.shrink_to_fit();
        }
    }

    /// Checks the queue's invariants; for tests.
    pub fn check_invariants(&self) {
        assert_eq!(self.ranks.total(), self.waiting, "the rank tree counts every waiting entry");
        let count = |phase| self.entries.values().filter(|e| e.phase == phase).count() as u64;
        assert_eq!(count(Phase::Waiting), self.waiting);
        assert_eq!(count(Phase::Prequeue), self.prequeued);
        assert!(self.opened || self.waiting == 0, "nobody waits in the line before the onsale");
        let front = self.ranks.next_seq() - self.line.len() as u64;
        assert!(front >= self.ranks.base());
        for (&id, entry) in &self.entries {
            if entry.phase == Phase::Waiting {
                assert!(entry.seq >= front, "a waiting entry is in the line");
                assert_eq!(self.line[(entry.seq - front) as usize], id, "at its sequence number");
            }
        }
        for (user, id) in &self.by_user {
            assert_eq!(&self.entries[id].user, user, "by_user points at the user's own entry");
        }
    }
}

/// A challenge's 16 bytes and when it expires.
type IssuedChallenge = ([u8; 16], UnixMs);

/// Every event's queue in this process. What a restart loses: see ARCHITECTURE.md.
pub struct MemoryWaitingRoom {
    queues: RwLock<FastMap<EventId, Arc<Mutex<EventQueue>>>>,
    challenges: Mutex<FastMap<(EventId, UserId), IssuedChallenge>>,
    challenges_purged_ms: Mutex<UnixMs>,
    max_challenges: usize,
    seed: Option<u64>,
}

impl Default for MemoryWaitingRoom {
    fn default() -> Self {
        MemoryWaitingRoom::new()
    }
}

impl MemoryWaitingRoom {
    pub fn new() -> Self {
        MemoryWaitingRoom {
            queues: RwLock::new(FastMap::default()),
            challenges: Mutex::new(FastMap::default()),
            challenges_purged_ms: Mutex::new(0),
            max_challenges: MAX_CHALLENGES,
            seed: None,
        }
    }

    /// Shuffles every pre-queue from `seed` (tests): runs repeat exactly.
    pub fn with_seed(seed: u64) -> Self {
        MemoryWaitingRoom { seed: Some(seed), ..MemoryWaitingRoom::new() }
    }

    /// At most `max` unanswered challenges (tests).
    pub fn with_max_challenges(mut self, max: usize) -> Self {
        self.max_challenges = max;
        self
    }

    fn rng_for(&self, event: EventId) -> StdRng {
        match self.seed {
            Some(seed) => StdRng::seed_from_u64(seed ^ event.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            None => StdRng::from_rng(&mut rand::rng()),
        }
    }

    fn queue(&self, event: EventId, now: UnixMs) -> Arc<Mutex<EventQueue>> {
        if let Some(queue) = self.queues.read().get(&event) {
            return queue.clone();
        }
        self.queues
            .write()
            .entry(event)
            .or_insert_with(|| Arc::new(Mutex::new(EventQueue::new(self.rng_for(event), now))))
            .clone()
    }

    fn existing(&self, event: EventId) -> Option<Arc<Mutex<EventQueue>>> {
        self.queues.read().get(&event).cloned()
    }
}

#[async_trait]
impl WaitingRoom for MemoryWaitingRoom {
    async fn join(
        &self,
        event: EventId,
        user: &UserId,
        policy: &Policy,
        now: UnixMs,
    ) -> Result<EntryView, QueueError> {
        self.queue(event, now).lock().join(user, policy, now)
    }

    async fn entry_of(
        &self,
        event: EventId,
        user: &UserId,
        policy: &Policy,
        now: UnixMs,
    ) -> Option<EntryView> {
        self.existing(event)?.lock().entry_of(user, policy, now)
    }

    async fn view(
        &self,
        event: EventId,
        id: QueueId,
        caller: &UserId,
        policy: &Policy,
        now: UnixMs,
    ) -> Result<EntryView, QueueError> {
        self.existing(event).ok_or(QueueError::UnknownEntry)?.lock().view(id, caller, policy, now)
    }

    async fn tick(&self, event: EventId, policy: &Policy, now: UnixMs) -> TickReport {
        match self.existing(event) {
            Some(queue) => queue.lock().tick(policy, now),
            None => TickReport::default(),
        }
    }

    async fn events(&self) -> Vec<EventId> {
        self.queues.read().keys().copied().collect()
    }

    async fn length(&self, event: EventId) -> u64 {
        self.existing(event).map_or(0, |queue| queue.lock().length())
    }

    async fn issue_challenge(
        &self,
        event: EventId,
        user: &UserId,
        now: UnixMs,
    ) -> Result<Challenge, QueueError> {
        let bytes: [u8; 16] = rand::random();
        let expires_ms = now + CHALLENGE_TTL_MS;
        let mut challenges = self.challenges.lock();
        let key = (event, user.clone());
        if challenges.len() >= self.max_challenges && !challenges.contains_key(&key) {
            challenges.retain(|_, (_, expires)| *expires > now);
            if challenges.len() >= self.max_challenges {
                return Err(QueueError::ChallengesFull);
            }
        }
        challenges.insert(key, (bytes, expires_ms));
        Ok(Challenge { challenge: hex::encode(bytes), expires_ms })
    }

    async fn take_challenge(&self, event: EventId, user: &UserId, challenge: &str, now: UnixMs) -> bool {
        let mut given = [0u8; 16];
        if hex::decode_to_slice(challenge, &mut given).is_err() {
            return false;
        }
        let mut challenges = self.challenges.lock();
        let key = (event, user.clone());
        match challenges.get(&key) {
            Some((bytes, expires)) if *bytes == given => {
                let fresh = *expires > now;
                challenges.remove(&key);
                fresh
            }
            _ => false,
        }
    }

    async fn purge(&self, now: UnixMs) {
        {
            let mut purged = self.challenges_purged_ms.lock();
            if now < *purged + CHALLENGE_PURGE_INTERVAL_MS {
                return;
            }
            *purged = now;
        }
        let mut challenges = self.challenges.lock();
        challenges.retain(|_, (_, expires)| *expires > now);
        if challenges.capacity() > 4 * challenges.len() + 1024 {
            challenges.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONSALE: UnixMs = 1_800_000_000_000;

    fn policy(rate: u32) -> Policy {
        Policy {
            admit_rate_per_second: rate,
            token_ttl_ms: 600_000,
            max_length: 1_000_000,
            onsale_at: ONSALE,
        }
    }

    fn user(i: usize) -> UserId {
        UserId::parse(&format!("fan{i}")).unwrap()
    }

    fn queue(seed: u64) -> EventQueue {
        EventQueue::new(StdRng::seed_from_u64(seed), ONSALE - 60_000)
    }

    /// Joins users `0..n` before the onsale, opens the line, and returns the user at each
    /// position, front first.
    fn shuffled_order(seed: u64, n: usize) -> Vec<usize> {
        let p = policy(1);
        let mut q = queue(seed);
        let ids: Vec<QueueId> = (0..n).map(|i| q.join(&user(i), &p, ONSALE - 1_000).unwrap().id).collect();
        q.tick(&p, ONSALE);
        let mut order = vec![usize::MAX; n];
        for (i, id) in ids.iter().enumerate() {
            let view = q.view(*id, &user(i), &p, ONSALE).unwrap();
            order[view.position.unwrap() as usize - 1] = i;
        }
        order
    }

    #[test]
    fn the_prequeue_shuffle_puts_each_fan_at_each_position_equally_often() {
        // Chi-square of the (fan, position) table over 20,000 shuffles of 5 fans: 16
        // degrees of freedom, so 39.25 is the 0.1% critical value. The seeds are fixed,
        // so this passes or fails the same way every run.
        let (n, trials) = (5, 20_000);
        let mut counts = vec![vec![0u32; n]; n];
        for trial in 0..trials {
            for (position, fan) in shuffled_order(trial, n).into_iter().enumerate() {
                counts[fan][position] += 1;
            }
        }
        let expected = f64::from(trials as u32) / n as f64;
        let chi_square: f64 =
            counts.iter().flatten().map(|&c| (f64::from(c) - expected).powi(2) / expected).sum();
        assert!(chi_square < 39.25, "chi-square {chi_square:.1} over {counts:?}");
    }

    #[test]
    fn the_prequeue_shuffle_makes_every_order_equally_likely() {
        // 24 orders of 4 fans, 24,000 shuffles: 23 degrees of freedom, 0.1% critical
        // value 49.73.
        let trials = 24_000u32;
        let mut counts: HashMap<Vec<usize>, u32> = HashMap::new();
        for trial in 0..u64::from(trials) {
            *counts.entry(shuffled_order(1_000_000 + trial, 4)).or_default() += 1;
        }
        assert_eq!(counts.len(), 24, "every order happens");
        let expected = f64::from(trials) / 24.0;
        let chi_square: f64 = counts.values().map(|&c| (f64::from(c) - expected).powi(2) / expected).sum();
        assert!(chi_square < 49.73, "chi-square {chi_square:.1} over {counts:?}");
    }

    #[test]
    fn prequeue_entries_have_no_position_until_the_onsale() {
        let p = policy(10);
        let mut q = queue(1);
        let view = q.join(&user(1), &p, ONSALE - 40_000).unwrap();
        assert_eq!(view.phase, Phase::Prequeue);
        assert_eq!((view.position, view.eta_seconds), (None, None));
        assert_eq!(view.poll_after_seconds, Some(MAX_POLL_SECONDS), "40 s early: the longest interval");
        let close = q.view(view.id, &user(1), &p, ONSALE - 2_000).unwrap();
        assert_eq!(close.poll_after_seconds, Some(PREQUEUE_MIN_POLL_SECONDS));
        let open = q.view(view.id, &user(1), &p, ONSALE).unwrap();
        assert_eq!((open.phase, open.position, open.eta_seconds), (Phase::Waiting, Some(1), Some(1)));
        q.check_invariants();
    }

    #[test]
    fn joins_after_the_onsale_line_up_fifo_behind_the_shuffled_prequeue() {
        let p = policy(1);
        let mut q = queue(9);
        let early: Vec<QueueId> = (0..5).map(|i| q.join(&user(i), &p, ONSALE - 5_000).unwrap().id).collect();
        let late: Vec<EntryView> = (5..10).map(|i| q.join(&user(i), &p, ONSALE + 10).unwrap()).collect();
        for (k, view) in late.iter().enumerate() {
            assert_eq!(view.position, Some(6 + k as u64), "behind all five of the pre-queue, in join order");
        }
        let mut admitted = Vec::new();
        for second in 1..=10 {
            let now = ONSALE + 10 + second * 1_000;
            assert_eq!(q.tick(&p, now).admitted, 1, "one a second");
            for (i, id) in early.iter().chain(late.iter().map(|v| &v.id)).enumerate() {
                if q.view(*id, &user(i), &p, now).unwrap().phase == Phase::Admitted && !admitted.contains(&i)
                {
                    admitted.push(i);
                }
            }
            q.check_invariants();
        }
        assert!(admitted[..5].iter().all(|&i| i < 5), "the pre-queue first: {admitted:?}");
        assert_eq!(admitted[5..], [5, 6, 7, 8, 9], "then the later joins in order");
    }

    #[test]
    fn positions_are_exact_and_close_up_when_someone_ahead_expires() {
        let p = policy(100);
        let mut q = queue(2);
        let t = ONSALE + 1_000;
        let views: Vec<EntryView> = (0..5).map(|i| q.join(&user(i), &p, t).unwrap()).collect();
        assert_eq!(views.iter().map(|v| v.position.unwrap()).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(views[4].eta_seconds, Some(1), "5 at 100/s: within the first second");
        // Everyone but fan 1 keeps polling; fan 1 misses three advised intervals.
        let advised = views[1].poll_after_seconds.unwrap() * 1000;
        let mut now = t;
        while now <= t + HEARTBEAT_MISSES * advised {
            now += 500;
            for i in [0, 2, 3, 4] {
                q.view(views[i].id, &user(i), &p, now).unwrap();
            }
            // Joins and polls only: the bucket is kept empty by ticking at the same time.
            q.refilled_ms = now;
        }
        q.tick(&p, now);
        let fan1 = q.view(views[1].id, &user(1), &p, now).unwrap();
        assert_eq!(fan1.phase, Phase::Expired);
        let positions: Vec<Option<u64>> =
            [0, 2, 3, 4].iter().map(|&i| q.view(views[i].id, &user(i), &p, now).unwrap().position).collect();
        assert_eq!(positions, [Some(1), Some(2), Some(3), Some(4)], "everyone behind fan 1 moved up");
        assert_eq!(q.length(), 4);
        q.check_invariants();
    }

    #[test]
    fn joining_again_returns_the_same_entry_and_after_expiry_a_new_one_at_the_back() {
        let p = policy(1);
        let mut q = queue(3);
        let t = ONSALE + 1;
        let first = q.join(&user(1), &p, t).unwrap();
        q.join(&user(2), &p, t).unwrap();
        let again = q.join(&user(1), &p, t + 10).unwrap();
        assert_eq!((again.id, again.position), (first.id, Some(1)), "one entry per user");
        assert_eq!(q.length(), 2);
        // Fan 1 stops polling; fan 2 polls. Fan 1's entry expires and a new join lines up
        // behind fan 2.
        let later = t + 10 + HEARTBEAT_MISSES * first.poll_after_seconds.unwrap() * 1000 + 1;
        q.view(q.by_user[&user(2)], &user(2), &p, later - 1_000).unwrap();
        q.refilled_ms = later;
        q.tick(&p, later);
        let back = q.join(&user(1), &p, later).unwrap();
        assert_ne!(back.id, first.id);
        assert_eq!(back.position, Some(2));
        assert_eq!(
            q.view(first.id, &user(1), &p, later).unwrap().phase,
            Phase::Expired,
            "the old one reads expired"
        );
        q.check_invariants();
    }

    #[test]
    fn admission_drains_at_the_rate_and_the_eta_holds_within_ten_percent() {
        let rate = 50;
        let p = policy(rate);
        let mut q = queue(4);
        let t = ONSALE;
        let n = 1_000;
        let views: Vec<EntryView> = (0..n).map(|i| q.join(&user(i), &p, t).unwrap()).collect();
        assert_eq!(views[n - 1].eta_seconds, Some(20), "1000 at 50/s");
        let mut admitted_at: Vec<Option<UnixMs>> = vec![None; n];
        let mut admitted = 0;
        let mut now = t;
        while admitted < n as u64 {
            now += 100;
            let report = q.tick(&p, now);
            assert!(report.admitted <= 5, "never more than a tick's worth: {report:?}");
            admitted += report.admitted;
            for (i, view) in views.iter().enumerate() {
                if admitted_at[i].is_none() {
                    let v = q.view(view.id, &user(i), &p, now).unwrap();
                    if v.phase == Phase::Admitted {
                        admitted_at[i] = Some(now);
                    }
                }
            }
        }
        assert_eq!(now - t, 20_000, "1000 at 50/s take 20 s");
        for i in [99, 499, 999] {
            let eta_ms = views[i].eta_seconds.unwrap() * 1000;
            let took = admitted_at[i].unwrap() - t;
            assert!(
                took.abs_diff(eta_ms) * 10 <= eta_ms,
                "fan {i}: eta {eta_ms} ms, admitted after {took} ms"
            );
        }
        q.check_invariants();
    }

    #[test]
    fn admission_does_not_save_up_while_nobody_waits() {
        let p = policy(10);
        let mut q = queue(5);
        q.tick(&p, ONSALE);
        q.tick(&p, ONSALE + 60_000);
        let view = q.join(&user(1), &p, ONSALE + 60_000).unwrap();
        assert_eq!(q.tick(&p, ONSALE + 60_000).admitted, 0, "an idle minute earned nothing");
        assert_eq!(q.tick(&p, ONSALE + 60_100).admitted, 1, "a tenth of a second at 10/s earns one");
        assert_eq!(q.view(view.id, &user(1), &p, ONSALE + 60_100).unwrap().phase, Phase::Admitted);
    }

    #[test]
    fn an_admission_ends_after_the_token_ttl_and_the_fan_may_join_again() {
        let p = policy(10);
        let mut q = queue(6);
        let view = q.join(&user(1), &p, ONSALE).unwrap();
        q.tick(&p, ONSALE + 100);
        let admitted = q.view(view.id, &user(1), &p, ONSALE + 100).unwrap();
        assert_eq!(admitted.phase, Phase::Admitted);
        assert_eq!(admitted.admitted_until, Some(ONSALE + 100 + p.token_ttl_ms));
        assert_eq!(q.join(&user(1), &p, ONSALE + 200).unwrap().id, view.id, "still admitted: the same entry");
        let end = ONSALE + 100 + p.token_ttl_ms;
        q.tick(&p, end);
        assert_eq!(q.view(view.id, &user(1), &p, end).unwrap().phase, Phase::Expired);
        let again = q.join(&user(1), &p, end).unwrap();
        assert_ne!(again.id, view.id);
        assert_eq!(again.phase, Phase::Waiting);
        // The expired entry is forgotten after its retention.
        q.view(again.id, &user(1), &p, end + EXPIRED_RETENTION_MS).unwrap();
        q.tick(&p, end + EXPIRED_RETENTION_MS + 1_000);
        assert_eq!(
            q.view(view.id, &user(1), &p, end + EXPIRED_RETENTION_MS + 1_000),
            Err(QueueError::UnknownEntry)
        );
        q.check_invariants();
    }

    #[test]
    fn a_full_queue_refuses_new_joins_but_not_its_members() {
        let p = Policy { max_length: 3, ..policy(1) };
        let mut q = queue(7);
        for i in 0..2 {
            q.join(&user(i), &p, ONSALE - 1_000).unwrap();
        }
        q.join(&user(2), &p, ONSALE + 1).unwrap();
        assert_eq!(q.join(&user(3), &p, ONSALE + 2), Err(QueueError::Full { max_length: 3 }));
        assert!(q.join(&user(0), &p, ONSALE + 3).is_ok(), "a member joining again is no new entry");
        q.tick(&p, ONSALE + 1_003);
        assert!(q.join(&user(3), &p, ONSALE + 1_003).is_ok(), "an admission made room");
    }

    #[test]
    fn only_the_owner_polling_keeps_an_entry_alive() {
        let p = policy(1);
        let mut q = queue(8);
        let view = q.join(&user(1), &p, ONSALE).unwrap();
        let deadline = ONSALE + HEARTBEAT_MISSES * view.poll_after_seconds.unwrap() * 1000;
        q.view(view.id, &user(99), &p, deadline - 1).unwrap();
        q.refilled_ms = deadline;
        q.tick(&p, deadline);
        assert_eq!(q.view(view.id, &user(1), &p, deadline).unwrap().phase, Phase::Expired);
    }

    #[test]
    fn the_rank_tree_stays_the_size_of_the_line() {
        let p = policy(1_000);
        let mut q = queue(10);
        let mut now = ONSALE;
        for round in 0..40 {
            for i in 0..5_000 {
                q.join(&user(round * 5_000 + i), &p, now).unwrap();
            }
            for _ in 0..5 {
                now += 1_000;
                q.tick(&p, now);
            }
        }
        assert!(q.ranks.base() > 0, "rebuilt at least once");
        assert!(
            q.ranks.len() as u64 <= q.line.len() as u64 + 2 * COMPACT_AFTER,
            "{} vs {}",
            q.ranks.len(),
            q.line.len()
        );
        q.check_invariants();
    }

    #[tokio::test]
    async fn a_challenge_is_single_use_bound_to_its_user_and_event_and_expires() {
        let room = MemoryWaitingRoom::new();
        let (ev, other_ev) = (EventId(1), EventId(2));
        let c = room.issue_challenge(ev, &user(1), ONSALE).await.unwrap();
        assert_eq!(c.expires_ms, ONSALE + CHALLENGE_TTL_MS);
        assert!(!room.take_challenge(ev, &user(2), &c.challenge, ONSALE).await, "another user");
        assert!(!room.take_challenge(other_ev, &user(1), &c.challenge, ONSALE).await, "another event");
        assert!(
            !room.take_challenge(ev, &user(1), "00112233445566778899aabbccddeeff", ONSALE).await,
            "another challenge"
        );
        assert!(!room.take_challenge(ev, &user(1), "not hex", ONSALE).await);
        assert!(room.take_challenge(ev, &user(1), &c.challenge, ONSALE).await);
        assert!(!room.take_challenge(ev, &user(1), &c.challenge, ONSALE).await, "used once");

        let late = room.issue_challenge(ev, &user(1), ONSALE).await.unwrap();
        assert!(!room.take_challenge(ev, &user(1), &late.challenge, late.expires_ms).await, "expired");
        let first = room.issue_challenge(ev, &user(1), ONSALE).await.unwrap();
        let second = room.issue_challenge(ev, &user(1), ONSALE).await.unwrap();
        assert!(
            !room.take_challenge(ev, &user(1), &first.challenge, ONSALE).await,
            "replaced by a newer one"
        );
        assert!(room.take_challenge(ev, &user(1), &second.challenge, ONSALE).await);
    }

    #[tokio::test]
    async fn outstanding_challenges_are_bounded() {
        let room = MemoryWaitingRoom::new().with_max_challenges(2);
        room.issue_challenge(EventId(1), &user(1), ONSALE).await.unwrap();
        room.issue_challenge(EventId(1), &user(2), ONSALE).await.unwrap();
        assert_eq!(room.issue_challenge(EventId(1), &user(3), ONSALE).await, Err(QueueError::ChallengesFull));
        assert!(room.issue_challenge(EventId(1), &user(1), ONSALE).await.is_ok(), "a user's own replaces");
        let later = ONSALE + CHALLENGE_TTL_MS;
        assert!(room.issue_challenge(EventId(1), &user(3), later).await.is_ok(), "expired ones make room");
    }

    #[tokio::test]
    async fn the_room_keeps_one_queue_per_event() {
        let room = MemoryWaitingRoom::with_seed(1);
        let p = policy(1);
        let a = room.join(EventId(1), &user(1), &p, ONSALE).await.unwrap();
        let b = room.join(EventId(2), &user(1), &p, ONSALE).await.unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!((a.position, b.position), (Some(1), Some(1)));
        assert_eq!(room.view(EventId(2), a.id, &user(1), &p, ONSALE).await, Err(QueueError::UnknownEntry));
        assert_eq!(room.view(EventId(3), a.id, &user(1), &p, ONSALE).await, Err(QueueError::UnknownEntry));
        let mut events = room.events().await;
        events.sort();
        assert_eq!(events, [EventId(1), EventId(2)]);
        assert_eq!(room.length(EventId(1)).await, 1);
        assert_eq!(room.tick(EventId(9), &p, ONSALE).await, TickReport::default());
    }
}
