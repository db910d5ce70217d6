//! The node's one RocksDB, shared by every Raft group it hosts, and the thread that makes
//! writes durable for all of them at once (group commit).
//!
//! Writers put their batch into RocksDB without syncing — it is then visible to reads,
//! which openraft relies on — and ask the syncer for durability. The syncer takes every
//! request waiting, syncs the write-ahead log once, and answers them all: one fsync covers
//! every entry and every group that was waiting, however many there were.
//!
//! ```text
//! column family   key                                   value
//! logs            group u64 BE | index u64 BE           postcard(Entry)
//! meta            group u64 BE | b"vote"                postcard(Vote)
//!                 group u64 BE | b"committed"           postcard(LogId)
//!                 group u64 BE | b"purged"              postcard(LogId)
//! ```
//!
//! Big-endian keys sort by (group, index), so a group's log is one contiguous range and
//! truncation and purging are single range deletions.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};

use crate::error::{RaftError, Result};

pub(crate) const LOGS: &str = "logs";
pub(crate) const META: &str = "meta";

/// Names a Raft group on this node.
pub type GroupId = u64;

/// Called once the writes made before the request are durable (or failed to become so).
pub(crate) type Durable = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

/// The node's RocksDB and its syncer thread.
pub struct LogDb {
    db: Arc<DB>,
    syncs: Sender<Durable>,
    syncer: Option<JoinHandle<()>>,
    /// A failpoint: every WAL sync first waits this many ms (a slow disk, for the
    /// chaos tests; `DEBUG FSYNC-DELAY`). Zero in normal operation.
    sync_delay_ms: Arc<AtomicU64>,
}

impl std::fmt::Debug for LogDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogDb")
            .field("path", &self.db.path())
            .finish()
    }
}

impl LogDb {
    /// Opens (or creates) the database under `path`.
    pub fn open(path: &Path) -> Result<Arc<LogDb>> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // The log is written sequentially and read mostly at its tail; a small memtable
        // per column family keeps the footprint of a node with many groups modest.
        opts.set_write_buffer_size(32 << 20);
        opts.set_max_background_jobs(2);
        let cfs = [LOGS, META].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = Arc::new(DB::open_cf_descriptors(&opts, path, cfs)?);
        let (syncs, requests) = mpsc::channel();
        let syncer_db = db.clone();
        let sync_delay_ms = Arc::new(AtomicU64::new(0));
        let delay = sync_delay_ms.clone();
        let syncer = std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || sync_loop(&syncer_db, &requests, &delay))
            .map_err(|e| RaftError::Io(e.to_string()))?;
        Ok(Arc::new(LogDb {
            db,
            syncs,
            syncer: Some(syncer),
            sync_delay_ms,
        }))
    }

    /// Makes every WAL sync take `delay` longer (zero: as fast as the disk).
    pub fn set_sync_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.sync_delay_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    pub(crate) fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| RaftError::Io(format!("column family {name} missing")))
    }

    /// Writes `batch` (visible at once, not yet durable).
    pub(crate) fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// Calls `done` once every write made before this call is on disk.
    pub(crate) fn when_durable(&self, done: Durable) {
        if let Err(mpsc::SendError(done)) = self.syncs.send(done) {
            done(Err("the log syncer has stopped".into()));
        }
    }

    /// Waits until every write made before this call is on disk.
    pub(crate) async fn durable(&self) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.when_durable(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RaftError::Io(e)),
            Err(_) => Err(RaftError::Io("the log syncer dropped a request".into())),
        }
    }

    /// Writes `batch` and returns once it is durable.
    pub(crate) async fn write_durable(&self, batch: WriteBatch) -> Result<()> {
        self.write(batch)?;
        self.durable().await
    }

    /// Deletes everything `group` has here — its log, vote and commit marks — and
    /// returns once that is durable. Only for a replica that no longer belongs to the
    /// group (see `Host::purge_group`): Raft's promises rest on these never going back.
    pub(crate) async fn erase_group(&self, group: GroupId) -> Result<()> {
        let mut batch = WriteBatch::default();
        let logs = self.cf(LOGS)?;
        batch.delete_range_cf(logs, log_key(group, 0), log_key(group, u64::MAX));
        batch.delete_cf(logs, log_key(group, u64::MAX));
        let meta = self.cf(META)?;
        let prefix = group.to_be_bytes();
        for item in self.db.prefix_iterator_cf(meta, prefix) {
            let (key, _) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            batch.delete_cf(meta, key);
        }
        self.write_durable(batch).await
    }
}

impl Drop for LogDb {
    fn drop(&mut self) {
        // Closing the channel ends the loop once it has answered what is queued.
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.syncs, closed));
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
    }
}

/// Group commit: one WAL sync answers every request that arrived before it began.
fn sync_loop(db: &DB, requests: &Receiver<Durable>, delay_ms: &AtomicU64) {
    while let Ok(first) = requests.recv() {
        let delay = delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let mut waiting = vec![first];
        waiting.extend(requests.try_iter());
        let result = db.flush_wal(true).map_err(|e| e.to_string());
        metrics::record_sync(waiting.len());
        for done in waiting {
            done(result.clone());
        }
    }
}

/// Counters of the syncer, for benchmarks and INFO.
pub mod metrics {
    use std::sync::atomic::{AtomicU64, Ordering};

    static SYNCS: AtomicU64 = AtomicU64::new(0);
    static REQUESTS: AtomicU64 = AtomicU64::new(0);

    pub(crate) fn record_sync(requests: usize) {
        SYNCS.fetch_add(1, Ordering::Relaxed);
        REQUESTS.fetch_add(requests as u64, Ordering::Relaxed);
    }

    /// (WAL syncs, durability requests they answered) since the process started.
    pub fn syncs() -> (u64, u64) {
        (
            SYNCS.load(Ordering::Relaxed),
            REQUESTS.load(Ordering::Relaxed),
        )
    }
}

/// `group | index` as a log key.
pub(crate) fn log_key(group: GroupId, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The index in a log key of `group`, or None if the key belongs to another group.
pub(crate) fn index_of(group: GroupId, key: &[u8]) -> Option<u64> {
    let (g, i) = key.split_first_chunk::<8>()?;
    if u64::from_be_bytes(*g) != group {
        return None;
    }
    Some(u64::from_be_bytes(i.try_into().ok()?))
}

/// `group | name` as a meta key.
pub(crate) fn meta_key(group: GroupId, name: &str) -> Vec<u8> {
    let mut k = group.to_be_bytes().to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The slow-disk failpoint delays durability, not visibility, and turns off again.
    #[tokio::test]
    async fn a_sync_delay_holds_durability_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = LogDb::open(dir.path()).unwrap();
        let write = |db: &LogDb, i: u64| {
            let mut batch = WriteBatch::default();
            batch.put_cf(db.cf(LOGS).unwrap(), log_key(0, i), b"x");
            batch
        };
        db.set_sync_delay(Duration::from_millis(1_000));
        let started = std::time::Instant::now();
        db.write_durable(write(&db, 1)).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(1_000));
        db.set_sync_delay(Duration::ZERO);
        let started = std::time::Instant::now();
        db.write_durable(write(&db, 2)).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(1_000));
        let cf = db.cf(LOGS).unwrap();
        assert!(db.db().get_cf(cf, log_key(0, 2)).unwrap().is_some());
    }
}
