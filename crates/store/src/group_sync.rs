//! Group commit of one append-only file: writers append without `fsync`, then wait in
//! [`GroupSync::durable`] until one `fsync` that started after their write has finished.
//! Writers that finish while a sync runs share the next one, so N concurrent writers pay
//! one disk flush between them instead of N. Used for SQLite's WAL (the store commits with
//! `synchronous=NORMAL`) and for the simulated payment gateway's ledger.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// The group commit of the file at one path.
pub struct GroupSync {
    path: PathBuf,
    /// Tickets handed out after writes, and the highest ticket known to be on disk.
    written: AtomicU64,
    synced: AtomicU64,
    /// `fsync`s done.
    syncs: AtomicU64,
    /// One `fsync` at a time; waiters queue here and most find their write synced.
    flushing: tokio::sync::Mutex<()>,
    /// Set by a failed `fsync`: the kernel may have dropped the unwritten pages, so a later
    /// successful `fsync` proves nothing about them. Every later call fails.
    failed: std::sync::atomic::AtomicBool,
}

impl GroupSync {
    pub fn new(path: PathBuf) -> Self {
        GroupSync {
            path,
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            flushing: tokio::sync::Mutex::new(()),
            failed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Call after a write has reached the file (its `write` returned): returns once that
    /// write, and everything written before it, is on disk.
    pub async fn durable(&self) -> io::Result<()> {
        let ticket = self.written.fetch_add(1, Ordering::SeqCst) + 1;
        self.check()?;
        if self.synced.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        let _turn = self.flushing.lock().await;
        self.check()?;
        if self.synced.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        // Every write that took a ticket up to here is in the file now.
        let upto = self.written.load(Ordering::SeqCst);
        let path = self.path.clone();
        let synced = tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
            Ok(file) => file.sync_data(),
            // SQLite removes its WAL when the last connection closes, after a checkpoint
            // that synced the database: nothing is left to sync.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| io::Error::other(format!("sync task failed: {e}")))
        .and_then(|r| r);
        if let Err(e) = synced {
            self.failed.store(true, Ordering::SeqCst);
            return Err(e);
        }
        self.synced.fetch_max(upto, Ordering::SeqCst);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn check(&self) -> io::Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(io::Error::other(format!(
                "an fsync of {} failed earlier; writes can no longer be made durable",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// `(writes acknowledged, writes known on disk, fsyncs done)`.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.written.load(Ordering::SeqCst),
            self.synced.load(Ordering::SeqCst),
            self.syncs.load(Ordering::Relaxed),
        )
    }
}
