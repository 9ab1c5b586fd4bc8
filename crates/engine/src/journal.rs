//! The hold journal: an append-only file of hold changes, written by one thread with group
//! commit, so that a restart (including after `kill -9`) restores unexpired holds.
//!
//! The journal never decides a sale (the order store does); it only remembers holds. At
//! start-up the old file is replayed and the surviving holds are written to a fresh file,
//! which replaces the old one once recovery has finished ([`Journal::commit_recovery`]), so
//! the journal's size follows the live holds of the last start plus the changes since.
//!
//! Record framing: `len: u32 LE | fnv1a32(body): u32 LE | body`. A torn or corrupt tail (a
//! crash in the middle of a write) ends the replay; everything before it is kept.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use boxoffice_core::{EventId, HoldId, UnixMs, UserId};
use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

const FILE_NAME: &str = "holds.journal";
const NEW_FILE_NAME: &str = "holds.journal.new";
/// Largest record accepted on replay; a hold has at most a few hundred seats.
const MAX_RECORD_BYTES: usize = 64 * 1024;

/// How far a change must have gone before the answer is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// `fdatasync` before answering: survives power loss.
    Fsync,
    /// `write` before answering: survives a killed process, not a lost machine.
    Write,
}

/// Why a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EndReason {
    Released = 1,
    Expired = 2,
    Confirmed = 3,
}

/// One journaled change. `Pool`: the event's waitlist flag after the change, and seats that
/// entered or left its pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Hold { hold: HoldId, user: UserId, seats: Vec<u32>, created_ms: UnixMs, expires_ms: UnixMs },
    End { hold: HoldId, reason: EndReason },
    Pool { event: EventId, on: bool, add: Vec<u32>, remove: Vec<u32> },
}

/// An event's waitlist flag and pool at the end of the replayed journal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JournaledPool {
    pub on: bool,
    pub seats: std::collections::BTreeSet<u32>,
}

/// Seats per pool record, so that a record stays under [`MAX_RECORD_BYTES`].
pub const POOL_RECORD_SEATS: usize = 8_000;

/// A hold that was live at the end of the replayed journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournaledHold {
    pub hold: HoldId,
    pub user: UserId,
    pub seats: Vec<u32>,
    pub created_ms: UnixMs,
    pub expires_ms: UnixMs,
}

const KIND_HOLD: u8 = 1;
const KIND_END: u8 = 2;
const KIND_POOL: u8 = 3;

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

impl Record {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        match self {
            Record::Hold { hold, user, seats, created_ms, expires_ms } => {
                out.push(KIND_HOLD);
                put_hold(out, hold);
                out.extend_from_slice(&created_ms.to_le_bytes());
                out.extend_from_slice(&expires_ms.to_le_bytes());
                let user = user.as_str().as_bytes();
                out.extend_from_slice(&(user.len() as u16).to_le_bytes());
                out.extend_from_slice(user);
                out.extend_from_slice(&(seats.len() as u16).to_le_bytes());
                for seat in seats {
                    out.extend_from_slice(&seat.to_le_bytes());
                }
            }
            Record::End { hold, reason } => {
                out.push(KIND_END);
                put_hold(out, hold);
                out.push(*reason as u8);
            }
            Record::Pool { event, on, add, remove } => {
                out.push(KIND_POOL);
                out.extend_from_slice(&event.0.to_le_bytes());
                out.push(u8::from(*on));
                for seats in [add, remove] {
                    out.extend_from_slice(&(seats.len() as u32).to_le_bytes());
                    for seat in seats {
                        out.extend_from_slice(&seat.to_le_bytes());
                    }
                }
            }
        }
        let body_len = out.len() - start - 8;
        let checksum = fnv1a32(&out[start + 8..]);
        out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&checksum.to_le_bytes());
    }

    fn decode(body: &[u8]) -> Option<Record> {
        let mut r = Reader(body);
        let record = match r.u8()? {
            KIND_HOLD => {
                let hold = r.hold()?;
                let created_ms = r.u64()?;
                let expires_ms = r.u64()?;
                let user_len = r.u16()? as usize;
                let user = UserId::parse(std::str::from_utf8(r.take(user_len)?).ok()?).ok()?;
                let count = r.u16()? as usize;
                let seats = (0..count).map(|_| r.u32()).collect::<Option<Vec<_>>>()?;
                Record::Hold { hold, user, seats, created_ms, expires_ms }
            }
            KIND_END => {
                let hold = r.hold()?;
                let reason = match r.u8()? {
                    1 => EndReason::Released,
                    2 => EndReason::Expired,
                    3 => EndReason::Confirmed,
                    _ => return None,
                };
                Record::End { hold, reason }
            }
            KIND_POOL => {
                let event = EventId(r.u64()?);
                let on = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                let mut lists = [Vec::new(), Vec::new()];
                for list in &mut lists {
                    let count = r.u32()? as usize;
                    if count > MAX_RECORD_BYTES / 4 {
                        return None;
                    }
                    *list = (0..count).map(|_| r.u32()).collect::<Option<Vec<_>>>()?;
                }
                let [add, remove] = lists;
                Record::Pool { event, on, add, remove }
            }
            _ => return None,
        };
        r.0.is_empty().then_some(record)
    }
}

fn put_hold(out: &mut Vec<u8>, hold: &HoldId) {
    out.extend_from_slice(&hold.event.0.to_le_bytes());
    out.extend_from_slice(&hold.nonce.to_le_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn hold(&mut self) -> Option<HoldId> {
        let event = EventId(self.u64()?);
        let nonce = u128::from_le_bytes(self.take(16)?.try_into().ok()?);
        Some(HoldId { event, nonce })
    }
}

/// Replays journal bytes: the holds still live at the end, and how many bytes were valid.
pub fn replay(bytes: &[u8]) -> (Vec<JournaledHold>, usize) {
    let (holds, _, valid) = replay_with_pools(bytes);
    (holds, valid)
}

/// [`replay`], with every event's waitlist flag and pool at the end.
pub fn replay_with_pools(bytes: &[u8]) -> (Vec<JournaledHold>, HashMap<EventId, JournaledPool>, usize) {
    let mut pools: HashMap<EventId, JournaledPool> = HashMap::new();
    let mut live: HashMap<HoldId, JournaledHold> = HashMap::new();
    let mut order: Vec<HoldId> = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 8 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let sum = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len > MAX_RECORD_BYTES || bytes.len() - at - 8 < len {
            break;
        }
        let body = &bytes[at + 8..at + 8 + len];
        if fnv1a32(body) != sum {
            break;
        }
        let Some(record) = Record::decode(body) else { break };
        match record {
            Record::Hold { hold, user, seats, created_ms, expires_ms } => {
                order.push(hold);
                live.insert(hold, JournaledHold { hold, user, seats, created_ms, expires_ms });
            }
            Record::End { hold, .. } => {
                live.remove(&hold);
            }
            Record::Pool { event, on, add, remove } => {
                let pool = pools.entry(event).or_default();
                pool.on = on;
                pool.seats.extend(add);
                for seat in remove {
                    pool.seats.remove(&seat);
                }
            }
        }
        at += 8 + len;
    }
    let holds = order.into_iter().filter_map(|id| live.remove(&id)).collect();
    pools.retain(|_, pool| pool.on || !pool.seats.is_empty());
    (holds, pools, at)
}

/// A promise that appended bytes will be durable: resolved by the writer thread once
/// their batch is written (and synced, per the [`SyncMode`]).
#[must_use = "a ticket says when the change is durable"]
pub struct Ticket(oneshot::Receiver<Result<(), String>>);

impl Ticket {
    pub async fn wait(self) -> Result<(), String> {
        self.0.await.unwrap_or_else(|_| Err("the journal writer stopped".to_owned()))
    }
}

type Waiter = oneshot::Sender<Result<(), String>>;

struct Pending {
    buf: Vec<u8>,
    /// One per append: resolved when the batch holding its bytes is durable.
    waiters: Vec<Waiter>,
    /// The writer is parked on the condvar (so an append must wake it).
    writer_idle: bool,
    closed: bool,
    /// Once a write fails every later append fails too: fail closed.
    failed: Option<String>,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

/// The journal of one data directory.
pub struct Journal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
}

impl Journal {
    /// Replays `dir/holds.journal` and starts a fresh journal file beside it. Returns the
    /// holds that were live, in the order they were made.
    pub fn open(dir: &Path, mode: SyncMode) -> io::Result<(Journal, Vec<JournaledHold>)> {
        Self::open_with_pools(dir, mode).map(|(journal, holds, _)| (journal, holds))
    }

    /// [`open`](Self::open), with the waitlist pools that were in the journal.
    pub fn open_with_pools(
        dir: &Path,
        mode: SyncMode,
    ) -> io::Result<(Journal, Vec<JournaledHold>, HashMap<EventId, JournaledPool>)> {
        std::fs::create_dir_all(dir)?;
        let mut bytes = Vec::new();
        match File::open(dir.join(FILE_NAME)) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let (holds, pools, valid) = replay_with_pools(&bytes);
        if valid < bytes.len() {
            tracing::warn!(
                valid_bytes = valid,
                total_bytes = bytes.len(),
                "hold journal has a torn or corrupt tail; it was ignored"
            );
        }
        let file =
            OpenOptions::new().create(true).write(true).truncate(true).open(dir.join(NEW_FILE_NAME))?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                buf: Vec::with_capacity(1 << 16),
                waiters: Vec::new(),
                writer_idle: false,
                closed: false,
                failed: None,
            }),
            wake: Condvar::new(),
        });
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("hold-journal".into())
            .spawn(move || write_loop(&writer_shared, file, mode))?;
        let journal = Journal { shared, writer: Mutex::new(Some(writer)), dir: dir.to_owned() };
        Ok((journal, holds, pools))
    }

    /// Encodes a record into `out` (to batch several records into one append).
    pub fn encode(record: &Record, out: &mut Vec<u8>) {
        record.encode(out);
    }

    /// Queues encoded records. Call it inside the critical section that made the change,
    /// so that the journal's order is the order of the changes; await the ticket after
    /// leaving it.
    pub fn append_bytes(&self, bytes: &[u8]) -> Ticket {
        let (tx, rx) = oneshot::channel();
        let mut pending = self.shared.pending.lock();
        if let Some(error) = &pending.failed {
            let _ = tx.send(Err(error.clone()));
            return Ticket(rx);
        }
        if pending.closed {
            let _ = tx.send(Err("the journal is closed".to_owned()));
            return Ticket(rx);
        }
        pending.buf.extend_from_slice(bytes);
        pending.waiters.push(tx);
        let wake = pending.writer_idle;
        drop(pending);
        if wake {
            self.shared.wake.notify_one();
        }
        Ticket(rx)
    }

    /// Queues one record.
    pub fn append(&self, record: &Record) -> Ticket {
        let mut bytes = Vec::new();
        record.encode(&mut bytes);
        self.append_bytes(&bytes)
    }

    /// Waits until everything appended so far is durable.
    pub async fn flush(&self) -> Result<(), String> {
        self.append_bytes(&[]).wait().await
    }

    /// Makes the fresh file (holding the recovered holds and everything since) the journal.
    pub async fn commit_recovery(&self) -> Result<(), String> {
        self.flush().await?;
        let rename = || -> io::Result<()> {
            std::fs::rename(self.dir.join(NEW_FILE_NAME), self.dir.join(FILE_NAME))?;
            File::open(&self.dir)?.sync_all()
        };
        rename().map_err(|e| format!("cannot install the recovered journal: {e}"))
    }

    /// Writes what is queued and stops the writer thread.
    pub fn close(&self) {
        self.shared.pending.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(shared: &Shared, mut file: File, mode: SyncMode) {
    let mut spare = Vec::with_capacity(1 << 16);
    loop {
        let waiters = {
            let mut pending = shared.pending.lock();
            while pending.buf.is_empty() && pending.waiters.is_empty() && !pending.closed {
                pending.writer_idle = true;
                shared.wake.wait(&mut pending);
            }
            pending.writer_idle = false;
            if pending.buf.is_empty() && pending.waiters.is_empty() {
                return;
            }
            std::mem::swap(&mut pending.buf, &mut spare);
            std::mem::take(&mut pending.waiters)
        };
        let written = if spare.is_empty() {
            Ok(())
        } else {
            file.write_all(&spare).and_then(|()| match mode {
                SyncMode::Fsync => file.sync_data(),
                SyncMode::Write => Ok(()),
            })
        };
        spare.clear();
        match written {
            Ok(()) => {
                for waiter in waiters {
                    let _ = waiter.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "hold journal write failed; holds are refused");
                let error = format!("the hold journal cannot be written: {e}");
                let late = {
                    let mut pending = shared.pending.lock();
                    pending.failed = Some(error.clone());
                    std::mem::take(&mut pending.waiters)
                };
                for waiter in waiters.into_iter().chain(late) {
                    let _ = waiter.send(Err(error.clone()));
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(n: u128) -> HoldId {
        HoldId { event: EventId(7), nonce: n }
    }

    fn held(n: u128, seats: Vec<u32>) -> Record {
        Record::Hold {
            hold: hold(n),
            user: UserId::parse("alice").unwrap(),
            seats,
            created_ms: 1,
            expires_ms: 2,
        }
    }

    #[test]
    fn replay_keeps_holds_that_did_not_end() {
        let mut bytes = Vec::new();
        held(1, vec![1, 2]).encode(&mut bytes);
        held(2, vec![3]).encode(&mut bytes);
        Record::End { hold: hold(1), reason: EndReason::Released }.encode(&mut bytes);
        let (live, valid) = replay(&bytes);
        assert_eq!(valid, bytes.len());
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].hold, hold(2));
        assert_eq!(live[0].seats, vec![3]);
    }

    #[test]
    fn a_torn_tail_is_ignored_and_the_rest_kept() {
        let mut bytes = Vec::new();
        held(1, vec![1]).encode(&mut bytes);
        let whole = bytes.len();
        held(2, vec![2]).encode(&mut bytes);
        for cut in whole..bytes.len() {
            let (live, valid) = replay(&bytes[..cut]);
            assert_eq!(valid, whole, "cut at {cut}");
            assert_eq!(live.len(), 1);
        }
        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert_eq!(replay(&corrupt).1, whole);
    }

    #[tokio::test]
    async fn journal_survives_reopen_and_recovery_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (journal, live) = Journal::open(dir.path(), SyncMode::Fsync).unwrap();
            assert!(live.is_empty());
            journal.commit_recovery().await.unwrap();
            journal.append(&held(1, vec![5])).wait().await.unwrap();
            let _ = journal.append(&held(2, vec![6]));
            let _ = journal.append(&Record::End { hold: hold(2), reason: EndReason::Expired });
            journal.flush().await.unwrap();
        }
        let (journal, live) = Journal::open(dir.path(), SyncMode::Write).unwrap();
        assert_eq!(live.iter().map(|h| h.hold).collect::<Vec<_>>(), vec![hold(1)]);
        // Until recovery is committed, the old file stays the journal.
        drop(journal);
        let (_journal, live) = Journal::open(dir.path(), SyncMode::Write).unwrap();
        assert_eq!(live.len(), 1);
    }
}
