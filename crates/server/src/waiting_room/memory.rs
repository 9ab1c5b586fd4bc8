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

    /// Checks the invariants of every event's queue; for tests.
    pub fn check_invariants(&self) {
        for queue in self.queues.read().values() {
            queue.lock().check_invariants();
        }
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
    ) -> Result<Option<EntryView>, QueueError> {
        Ok(self.existing(event).and_then(|queue| queue.lock().entry_of(user, policy, now)))
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

    async fn take_challenge(
        &self,
        event: EventId,
        user: &UserId,
        challenge: &str,
        now: UnixMs,
    ) -> Result<bool, QueueError> {
        let mut given = [0u8; 16];
        if hex::decode_to_slice(challenge, &mut given).is_err() {
            return Ok(false);
        }
        let mut challenges = self.challenges.lock();
        let key = (event, user.clone());
        Ok(match challenges.get(&key) {
            Some((bytes, expires)) if *bytes == given => {
                let fresh = *expires > now;
                challenges.remove(&key);
                fresh
            }
            _ => false,
        })
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
    //! The backend-neutral behaviour (shuffle, positions, expiry, admission, challenges)
    //! is the waiting-room suite in `tests/api/waiting_room.rs`, run on this backend and
    //! on Redis; here what only the embedded queue has.
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
}
