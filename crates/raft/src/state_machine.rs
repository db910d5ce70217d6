//! The engine as a group's Raft state machine.
//!
//! The engine lives in memory; what makes it durable is the log plus snapshots. On
//! restart a replica loads its latest snapshot and openraft re-applies the committed
//! entries after it. Readers on the node (FT.SEARCH, GET) share the same [`Replica`]
//! through [`StateMachine::replica`].

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::EntryPayload;
use parking_lot::RwLock;
use shoal_engine::{Engine, Write};

use crate::snapshot_file;
use crate::types::{LogId, Response, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

/// Entries taken from openraft's apply stream per engine batch: enough that a pipelined
/// ingest inserts its vectors in parallel, few enough that readers wait little.
const APPLY_BATCH: usize = 1024;

/// Up to this many commands, a batch is applied on the runtime thread (see `apply`).
const INLINE_APPLY_COMMANDS: usize = 32;

/// A group's engine and how far the log has been applied to it. One lock covers both,
/// so a snapshot's metadata always matches its contents.
#[derive(Debug, Default)]
pub struct Replica {
    pub engine: Engine,
    applied: Option<LogId>,
    membership: StoredMembership,
}

impl Replica {
    /// The last log entry applied to the engine.
    pub fn applied(&self) -> Option<LogId> {
        self.applied
    }

    /// Applies consecutive entries, one response each. Unguarded writes go to the engine
    /// together (their vector inserts run in parallel); a WATCH-guarded entry first
    /// applies everything before it, so its guard sees the state its log position gives.
    fn apply_entries(&mut self, items: &mut [EntryResponder<TypeConfig>]) -> Vec<Response> {
        let mut out: Vec<Response> = Vec::with_capacity(items.len());
        // Unguarded writes waiting for the engine, and the response slot of each.
        let mut batch: Vec<Write> = Vec::new();
        let mut slots: Vec<usize> = Vec::new();
        for (entry, _) in items.iter_mut() {
            let log_id = entry.log_id();
            match std::mem::replace(&mut entry.payload, EntryPayload::Blank) {
                EntryPayload::Blank => out.push(Response::default()),
                EntryPayload::Normal(request) if request.guard.is_empty() => {
                    slots.push(out.len());
                    out.push(Response::default());
                    batch.push(Write::from(request));
                }
                EntryPayload::Normal(mut request) => {
                    self.flush(&mut batch, &mut slots, &mut out);
                    let guard = std::mem::take(&mut request.guard);
                    let keys: Vec<Vec<u8>> = guard.iter().map(|(k, _)| k.clone()).collect();
                    let current = self.engine.versions(&keys, request.now_ms);
                    let moved = current.iter().zip(&guard).any(|(c, (_, w))| c != w);
                    out.push(if moved {
                        Response {
                            replies: Vec::new(),
                            aborted: true,
                        }
                    } else {
                        Response::replies(self.engine.apply(&Write::from(request)))
                    });
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m);
                    out.push(Response::default());
                }
            }
            self.applied = Some(log_id);
        }
        self.flush(&mut batch, &mut slots, &mut out);
        out
    }

    fn flush(&mut self, batch: &mut Vec<Write>, slots: &mut Vec<usize>, out: &mut [Response]) {
        if batch.is_empty() {
            return;
        }
        let replies = self.engine.apply_many(batch);
        for (slot, replies) in slots.drain(..).zip(replies) {
            if let Some(r) = out.get_mut(slot) {
                r.replies = replies;
            }
        }
        batch.clear();
    }
}

/// The state machine of one group, cheap to clone (the snapshot builder is a clone).
#[derive(Debug, Clone)]
pub struct StateMachine {
    replica: Arc<RwLock<Replica>>,
    dir: Arc<PathBuf>,
    /// Serializes replacing the snapshot file: openraft builds snapshots in a task of
    /// their own, which can overlap installing one received from the leader.
    snapshot_writes: Arc<parking_lot::Mutex<()>>,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl StateMachine {
    /// Opens the state machine whose snapshots live in `dir`, restoring the latest one.
    pub fn open(dir: PathBuf) -> io::Result<StateMachine> {
        std::fs::create_dir_all(&dir)?;
        let path = snapshot_file::current_path(&dir);
        let replica = match std::fs::File::open(&path) {
            Ok(mut file) => {
                let (meta, engine) = snapshot_file::read(&mut file)?;
                Replica {
                    engine: Engine::restore(&engine).map_err(io_err)?,
                    applied: meta.last_log_id,
                    membership: meta.last_membership,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Replica::default(),
            Err(e) => return Err(e),
        };
        Ok(StateMachine {
            replica: Arc::new(RwLock::new(replica)),
            dir: Arc::new(dir),
            snapshot_writes: Arc::default(),
        })
    }

    /// The replica, for reads on this node.
    pub fn replica(&self) -> Arc<RwLock<Replica>> {
        self.replica.clone()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = std::fs::File;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let r = self.replica.read();
        Ok((r.applied, r.membership.clone()))
    }

    async fn apply<S>(&mut self, entries: S) -> io::Result<()>
    where
        S: futures::Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + Send,
    {
        // Whatever openraft has ready is applied as one engine batch, in log order.
        let mut chunks = entries.ready_chunks(APPLY_BATCH);
        while let Some(chunk) = chunks.next().await {
            let mut items = Vec::with_capacity(chunk.len());
            let mut failed = None;
            for item in chunk {
                match item {
                    Ok(e) => items.push(e),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let commands: usize = items
                .iter()
                .map(|(e, _)| match &e.payload {
                    EntryPayload::Normal(r) => r.commands.len(),
                    EntryPayload::Blank | EntryPayload::Membership(_) => 0,
                })
                .sum();
            // A big batch (a pipelined ingest: vector inserts) is applied on a blocking
            // thread, so this task does not occupy a runtime thread meanwhile; a few
            // commands are cheaper applied in place. Readers of this replica still wait
            // for the write lock's release, on whatever thread they run.
            let (items_back, outcomes) = if commands > INLINE_APPLY_COMMANDS {
                let replica = self.replica.clone();
                tokio::task::spawn_blocking(move || {
                    let outcomes = replica.write().apply_entries(&mut items);
                    (items, outcomes)
                })
                .await
                .map_err(io_err)?
            } else {
                let outcomes = self.replica.write().apply_entries(&mut items);
                (items, outcomes)
            };
            let items = items_back;
            for ((_, responder), response) in items.into_iter().zip(outcomes) {
                if let Some(responder) = responder {
                    responder.send(response);
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: std::fs::File,
    ) -> io::Result<()> {
        let dir = self.dir.clone();
        let meta = meta.clone();
        let writes = self.snapshot_writes.clone();
        let (engine, meta) = tokio::task::spawn_blocking(move || -> io::Result<_> {
            let (_, bytes) = snapshot_file::read(&mut snapshot)?;
            let engine = Engine::restore(&bytes).map_err(io_err)?;
            let _writing = writes.lock();
            snapshot_file::write(&dir, &meta, &bytes)?;
            Ok((engine, meta))
        })
        .await
        .map_err(io_err)??;
        let mut r = self.replica.write();
        r.engine = engine;
        r.applied = meta.last_log_id;
        r.membership = meta.last_membership;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        Ok(snapshot_file::open_current(&self.dir)?
            .map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = std::fs::File;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let replica = self.replica.clone();
        let dir = self.dir.clone();
        let writes = self.snapshot_writes.clone();
        tokio::task::spawn_blocking(move || -> io::Result<_> {
            // Serialized under the read lock (reads go on; applies wait until the bytes
            // are taken), written to disk after it is released.
            let (meta, bytes) = {
                let r = replica.read();
                let meta = SnapshotMeta {
                    last_log_id: r.applied,
                    last_membership: r.membership.clone(),
                };
                (meta, r.engine.snapshot().map_err(io_err)?)
            };
            let _writing = writes.lock();
            // An install may have replaced the file with a newer snapshot while this one
            // was being serialized: never put an older one back over it.
            if let Some((current, file)) = snapshot_file::open_current(&dir)? {
                if current.last_log_id >= meta.last_log_id {
                    return Ok(Snapshot {
                        meta: current,
                        snapshot: file,
                    });
                }
            }
            let file = snapshot_file::write(&dir, &meta, &bytes)?;
            Ok(Snapshot {
                meta,
                snapshot: file,
            })
        })
        .await
        .map_err(io_err)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::{blank_ent, log_id};

    #[tokio::test]
    async fn a_build_never_puts_an_older_snapshot_back_over_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path().to_path_buf()).unwrap();
        let entries: Vec<io::Result<EntryResponder<TypeConfig>>> = (1..=5)
            .map(|i| Ok((blank_ent::<TypeConfig>(1, 1, i), None)))
            .collect();
        sm.apply(futures::stream::iter(entries)).await.unwrap();
        // An install of a newer snapshot finished while this build was serializing.
        let newer = SnapshotMeta {
            last_log_id: Some(log_id::<TypeConfig>(2, 1, 10)),
            ..SnapshotMeta::default()
        };
        let engine = Engine::new().snapshot().unwrap();
        snapshot_file::write(dir.path(), &newer, &engine).unwrap();

        let built = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(built.meta, newer, "the build hands back the newer snapshot");
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, newer, "and leaves it in place");

        // With nothing newer on disk, a build writes its own.
        let dir2 = tempfile::tempdir().unwrap();
        let mut sm2 = StateMachine::open(dir2.path().to_path_buf()).unwrap();
        let entries: Vec<io::Result<EntryResponder<TypeConfig>>> = (1..=3)
            .map(|i| Ok((blank_ent::<TypeConfig>(1, 1, i), None)))
            .collect();
        sm2.apply(futures::stream::iter(entries)).await.unwrap();
        let built = sm2
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(built.meta.last_log_id, Some(log_id::<TypeConfig>(1, 1, 3)));
        let current = sm2.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, built.meta);
    }
    fn normal(index: u64, request: crate::types::Request) -> EntryResponder<TypeConfig> {
        let mut entry = blank_ent::<TypeConfig>(1, 1, index);
        entry.payload = EntryPayload::Normal(request);
        (entry, None)
    }

    fn set(
        now: u64,
        key: &str,
        value: &str,
        guard: Vec<(Vec<u8>, Option<u64>)>,
    ) -> crate::types::Request {
        crate::types::Request {
            now_ms: now,
            commands: vec![vec![b"SET".to_vec(), key.into(), value.into()]],
            resp3: false,
            guard,
        }
    }

    #[test]
    fn a_guard_sees_the_entries_before_it_in_the_same_batch() {
        let mut replica = Replica::default();
        let mut first = vec![normal(1, set(1, "k", "1", Vec::new()))];
        replica.apply_entries(&mut first);
        let seen = replica.engine.versions(&[b"k".to_vec()], 2)[0];
        // One batch: a plain write to k, then a transaction guarded by k's old version
        // (aborted), then one guarded by a key nobody touched (applied).
        let mut batch = vec![
            normal(2, set(2, "k", "2", Vec::new())),
            normal(3, set(3, "k", "guarded", vec![(b"k".to_vec(), seen)])),
            normal(4, set(4, "j", "ok", vec![(b"j".to_vec(), None)])),
        ];
        let out = replica.apply_entries(&mut batch);
        assert!(!out[0].aborted);
        assert!(out[1].aborted && out[1].replies.is_empty(), "{:?}", out[1]);
        assert!(!out[2].aborted);
        assert_eq!(out[2].replies, vec![shoal_engine::Reply::Ok]);
        assert_eq!(replica.applied().map(|l| l.index), Some(4));
        let ctx = shoal_engine::ReadContext {
            now_ms: 5,
            resp3: false,
            in_apply: false,
        };
        assert_eq!(
            replica.engine.query(&[b"GET".as_slice(), b"k"], ctx),
            shoal_engine::Reply::Bulk(b"2".to_vec())
        );
    }
}
