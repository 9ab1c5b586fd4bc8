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
}

impl GroupSync {
    pub fn new(path: PathBuf) -> Self {
        GroupSync {
            path,
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// Call after a write has reached the file (its `write` returned): returns once that
    /// write, and everything written before it, is on disk.
    pub async fn durable(&self) -> io::Result<()> {
        let ticket = self.written.fetch_add(1, Ordering::SeqCst) + 1;
        if self.synced.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        let _turn = self.flushing.lock().await;
        if self.synced.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        // Every write that took a ticket up to here is in the file now.
        let upto = self.written.load(Ordering::SeqCst);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(&path)?.sync_data())
            .await
            .map_err(|e| io::Error::other(format!("sync task failed: {e}")))??;
        self.synced.fetch_max(upto, Ordering::SeqCst);
        self.syncs.fetch_add(1, Ordering::Relaxed);
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
