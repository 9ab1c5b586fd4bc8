//! The SQLite store's writer: one thread, one connection, one commit for many writes.
//!
//! Each write of the hot path (idempotency keys, payment attempts, orders, audit rows, the
//! outbox) is a *job*: a closure over the writer's connection. The writer thread takes
//! every job that is waiting (up to [`MAX_BATCH_JOBS`]), runs them one after another in
//! ONE `BEGIN IMMEDIATE` transaction, each inside its own savepoint, commits once, and
//! only then answers every caller. A job that fails is rolled back to its savepoint alone
//! and its error goes to its caller; a commit that fails fails every job of the batch.
//!
//! The connection runs with `synchronous=FULL`: in WAL mode the commit `fsync`s the WAL
//! before it returns and before other connections can see the transaction. So a batch of
//! N checkouts pays one commit and one disk flush between them, nobody reads a write
//! that is not on disk yet, and no statement crosses a thread boundary: a job's statements
//! run where the connection lives, from its prepared-statement cache.
//!
//! The rest of the store's writes (catalog, refunds: rare and long) keep their own
//! connection. The [`WriteGate`] keeps the two writers of this process from waiting on
//! each other inside SQLite's busy handler, which polls and could starve the rare writer
//! while the batches run back to back: whoever writes holds the gate.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::{Result, StoreError};

/// Jobs committed together at most.
pub const MAX_BATCH_JOBS: usize = 1_024;
/// Jobs waiting for the writer at most; a caller beyond this waits for room.
pub const MAX_QUEUED_JOBS: usize = 16_384;
/// Page cache of the writer's connection, in KiB.
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// Prepared statements kept by the writer's connection.
const STATEMENT_CACHE: usize = 128;

/// The one writer of this process at a time: the writer thread holds it for a batch, a
/// write on the store's other connection for its transaction.
pub type WriteGate = Arc<tokio::sync::Mutex<()>>;

/// A job's answer before the commit, its type erased so that one queue carries every job.
type Answer = Result<Box<dyn Any + Send>>;

struct Job {
    run: Box<dyn FnOnce(&Connection) -> Answer + Send>,
    answer: oneshot::Sender<Answer>,
}

/// The handle to the writer thread. Dropping the last handle stops the thread once the
/// jobs already sent are done.
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    stats: Arc<Stats>,
    /// Set by [`Writer::close`]: later writes fail.
    closed: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Stats {
    jobs: AtomicU64,
    batches: AtomicU64,
}

impl Writer {
    /// Opens the writer's connection to the (existing, migrated) database at `path` and
    /// starts its thread.
    pub fn start(path: &Path, busy_timeout: Duration, gate: WriteGate) -> Result<Writer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(busy_timeout)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // A job's savepoint journals the pages it changes: in memory, not a temp file.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Keeps the indexes the hot path touches in memory (negative: KiB).
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let (jobs, queue) = mpsc::channel(MAX_QUEUED_JOBS);
        let stats = Arc::new(Stats::default());
        let counters = stats.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, queue, gate, &counters))
            .map_err(|e| StoreError::WriterUnavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer { jobs, stats, closed: std::sync::atomic::AtomicBool::new(false) })
    }

    /// Runs `job` in the writer's next batch; answers once the batch is committed (and
    /// so on disk). The job's `Err` rolls back its own statements only.
    pub async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::WriterUnavailable("the store is closed".into()));
        }
        let (answer, answered) = oneshot::channel();
        let run =
            Box::new(move |conn: &Connection| job(conn).map(|value| Box::new(value) as Box<dyn Any + Send>));
        self.jobs.send(Job { run, answer }).await.map_err(|_| stopped())?;
        let value = answered.await.map_err(|_| stopped())??;
        Ok(*value.downcast::<T>().expect("a job answers with its own type"))
    }

    /// Refuses later writes; jobs already sent still run and are answered.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// `(jobs committed or failed, batches)` so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.stats.jobs.load(Ordering::Relaxed), self.stats.batches.load(Ordering::Relaxed))
    }
}

fn stopped() -> StoreError {
    StoreError::WriterUnavailable("the writer thread has stopped".into())
}

fn run(conn: Connection, mut queue: mpsc::Receiver<Job>, gate: WriteGate, stats: &Stats) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH_JOBS);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH_JOBS {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let jobs = batch.len() as u64;
        {
            let _gate = gate.blocking_lock();
            run_batch(&conn, &mut batch);
        }
        stats.jobs.fetch_add(jobs, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the jobs in one transaction and answers them after its commit.
fn run_batch(conn: &Connection, batch: &mut Vec<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "the store's writer cannot begin a transaction");
        let reason = format!("cannot begin a write transaction: {e}");
        for job in batch.drain(..) {
            let _ = job.answer.send(Err(StoreError::CommitFailed(reason.clone())));
        }
        return;
    }
    let mut answers: Vec<(oneshot::Sender<Answer>, Answer)> = Vec::with_capacity(batch.len());
    let mut jobs = batch.drain(..);
    while let Some(Job { run, answer }) = jobs.next() {
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            let _ = answer.send(Err(StoreError::CommitFailed(format!("cannot open a savepoint: {e}"))));
            continue;
        }
        let result = match catch_unwind(AssertUnwindSafe(|| run(conn))) {
            Ok(result) => result,
            Err(_) => {
                tracing::error!("a store write panicked; its statements are rolled back");
                Err(StoreError::CommitFailed("the write failed unexpectedly".into()))
            }
        };
        let closed = if result.is_ok() {
            conn.execute_batch("RELEASE job")
        } else {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        if let Err(e) = closed {
            // The transaction's state is unknown now: fail the whole batch.
            tracing::error!(error = %e, "cannot close a job's savepoint; the batch is rolled back");
            let _ = conn.execute_batch("ROLLBACK");
            let reason = format!("cannot close a savepoint: {e}");
            let _ = answer.send(Err(StoreError::CommitFailed(reason.clone())));
            for (answer, _) in answers {
                let _ = answer.send(Err(StoreError::CommitFailed(reason.clone())));
            }
            for job in jobs {
                let _ = job.answer.send(Err(StoreError::CommitFailed(reason.clone())));
            }
            return;
        }
        answers.push((answer, result));
    }
    drop(jobs);
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            for (answer, result) in answers {
                let _ = answer.send(result);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "the store's writer could not commit a batch");
            let _ = conn.execute_batch("ROLLBACK");
            let reason = format!("the commit failed: {e}");
            for (answer, result) in answers {
                // A job that failed on its own keeps its own error.
                let _ = answer.send(result.and(Err(StoreError::CommitFailed(reason.clone()))));
            }
        }
    }
}
