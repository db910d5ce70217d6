//! One node: the engine behind a lock, the clock that stamps writes, persistence and
//! the background work (backfill, expiry).
//!
//! Writes are serialized through the engine's write lock, which is the order a Raft log
//! will impose in #4; reads share the read lock. Both sides hold the lock only for the
//! engine call itself, never across I/O.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use parking_lot::RwLock;
use shoal_engine::{Engine, ReadContext, Reply, Write};

use crate::persist;

/// Node-wide counters INFO reports.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections_received: AtomicU64,
    pub connected_clients: AtomicU64,
    pub commands_processed: AtomicU64,
    pub active_queries: AtomicU64,
    /// Writes applied since the last snapshot.
    pub dirty: AtomicU64,
    pub last_save_unix: AtomicU64,
}

#[derive(Debug)]
pub struct Node {
    engine: RwLock<Engine>,
    pub data_dir: Option<PathBuf>,
    pub port: u16,
    pub started: Instant,
    pub counters: Counters,
    next_client_id: AtomicU64,
}

/// Milliseconds since the epoch: the time a write carries into the engine.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Node {
    /// Opens the node, loading the snapshot in `data_dir` if there is one.
    pub fn open(data_dir: Option<PathBuf>, port: u16) -> Result<Arc<Node>> {
        let engine = match &data_dir {
            Some(dir) => persist::load(dir)?,
            None => Engine::new(),
        };
        Ok(Arc::new(Node {
            engine: RwLock::new(engine),
            data_dir,
            port,
            started: Instant::now(),
            counters: Counters::default(),
            next_client_id: AtomicU64::new(1),
        }))
    }

    pub fn client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Applies each command as its own log entry, under one lock acquisition.
    // #[PerformanceCriticalPath]: pipelined writes arrive here in batches.
    pub fn apply_each(&self, commands: Vec<Vec<Vec<u8>>>) -> Vec<Reply> {
        let mut engine = self.engine.write();
        // Stamped under the lock, so log order and time order agree.
        let now = now_ms();
        let n = commands.len() as u64;
        let writes: Vec<Write> = commands
            .into_iter()
            .map(|args| Write::single(now, args))
            .collect();
        let replies = engine.apply_many(&writes).into_iter().flatten().collect();
        self.counters.dirty.fetch_add(n, Ordering::Relaxed);
        replies
    }

    /// Applies a transaction as one log entry.
    /// Applies a transaction as one log entry, unless a watched key changed since WATCH
    /// (then `None`, and nothing is applied). The check and the apply share one lock.
    pub fn apply_batch(
        &self,
        commands: Vec<Vec<Vec<u8>>>,
        resp3: bool,
        watched: &[(Vec<u8>, Option<u64>)],
    ) -> Option<Vec<Reply>> {
        let mut engine = self.engine.write();
        if !watched.is_empty() {
            let keys: Vec<Vec<u8>> = watched.iter().map(|(k, _)| k.clone()).collect();
            let now = now_ms();
            let current = engine.versions(&keys, now);
            if current.iter().zip(watched).any(|(c, (_, w))| c != w) {
                return None;
            }
        }
        let write = Write {
            now_ms: now_ms(),
            commands,
            resp3,
        };
        let replies = engine.apply(&write);
        drop(engine);
        self.counters.dirty.fetch_add(1, Ordering::Relaxed);
        Some(replies)
    }

    /// The current versions of keys, for WATCH.
    pub fn versions(&self, keys: &[Vec<u8>]) -> Vec<Option<u64>> {
        self.engine.read().versions(keys, now_ms())
    }

    /// Answers consecutive reads of one connection under one read lock.
    // #[PerformanceCriticalPath]: pipelined reads arrive here in batches.
    pub fn read_each(&self, requests: &[Vec<bytes::Bytes>], resp3: bool) -> Vec<Reply> {
        self.counters.active_queries.fetch_add(1, Ordering::Relaxed);
        let ctx = ReadContext {
            now_ms: now_ms(),
            resp3,
            in_apply: false,
        };
        let engine = self.engine.read();
        let replies = requests
            .iter()
            .map(|args| engine.query(args, ctx))
            .collect();
        drop(engine);
        self.counters.active_queries.fetch_sub(1, Ordering::Relaxed);
        replies
    }

    /// Runs `f` with shared access to the engine (INFO, DBSIZE).
    pub fn with_engine<T>(&self, f: impl FnOnce(&Engine) -> T) -> T {
        f(&self.engine.read())
    }

    /// Fires due expiries (an empty log entry carrying the time).
    pub fn tick(&self) {
        let mut engine = self.engine.write();
        let write = Write {
            now_ms: now_ms(),
            commands: Vec::new(),
            resp3: false,
        };
        engine.apply(&write);
    }

    /// Advances index backfills; whether work remains.
    pub fn backfill(&self, budget: usize) -> bool {
        self.engine.write().backfill(budget)
    }

    /// Writes a snapshot if there is a data directory; the bytes are taken under the
    /// read lock and written without it.
    pub fn save(&self) -> Result<()> {
        let Some(dir) = &self.data_dir else {
            return Ok(());
        };
        let dirty = self.counters.dirty.load(Ordering::Relaxed);
        let bytes = self.engine.read().snapshot()?;
        persist::save(dir, &bytes)?;
        self.counters.dirty.fetch_sub(dirty, Ordering::Relaxed);
        self.counters
            .last_save_unix
            .store(now_ms() / 1000, Ordering::Relaxed);
        Ok(())
    }

    /// The background loops: backfill, expiry ticks, periodic snapshots.
    pub fn spawn_background(self: &Arc<Self>, snapshot_every: Duration) {
        let node = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let more = {
                    let node = Arc::clone(&node);
                    tokio::task::spawn_blocking(move || node.backfill(2048))
                        .await
                        .unwrap_or(false)
                };
                let pause = if more { 1 } else { 50 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        });
        let node = Arc::clone(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(100));
            loop {
                interval.tick().await;
                node.tick();
            }
        });
        if self.data_dir.is_some() {
            let node = Arc::clone(self);
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(snapshot_every);
                interval.tick().await;
                loop {
                    interval.tick().await;
                    if node.counters.dirty.load(Ordering::Relaxed) == 0 {
                        continue;
                    }
                    let saver = Arc::clone(&node);
                    match tokio::task::spawn_blocking(move || saver.save()).await {
                        Ok(Ok(())) => tracing::debug!("snapshot written"),
                        Ok(Err(e)) => tracing::error!(error = %e, "snapshot failed"),
                        Err(e) => tracing::error!(error = %e, "snapshot task failed"),
                    }
                }
            });
        }
    }
}
