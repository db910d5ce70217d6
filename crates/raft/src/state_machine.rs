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

use crate::log_store::{LogStore, WeakLog};
use crate::snapshot_file;
use crate::types::{LogId, Response, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::view_mirror::ViewMirror;

/// Entries taken from openraft's apply stream per engine batch: enough that a pipelined
/// ingest inserts its vectors in parallel, few enough that readers wait little.
const APPLY_BATCH: usize = 1024;

/// Up to this many commands, a batch is applied on the runtime thread (see `apply`).
const INLINE_APPLY_COMMANDS: usize = 32;

/// Log entries read and replayed at a time while a snapshot is rebuilt: at most this
/// many, and no more than `REPLAY_BYTES` of them past the first (an entry can be a
/// 32 MiB pipeline).
const REPLAY_CHUNK: u64 = 256;
const REPLAY_BYTES: usize = 64 << 20;

/// Keys a rebuilt snapshot's index backfill takes per step.
const BACKFILL_STEP: usize = 4096;

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

    /// The snapshot metadata of this state.
    fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
        }
    }

    /// Applies consecutive entries, one response each. Unguarded writes go to the engine
    /// together (their vector inserts run in parallel); a WATCH-guarded entry first
    /// applies everything before it, so its guard sees the state its log position gives.
    ///
    /// | entry                                        | applied                                   |
    /// |----------------------------------------------|-------------------------------------------|
    /// | `SHOAL._EPOCH x` first, `x` below the floor   | not at all: `stale` = the floor           |
    /// | no epoch, routed by key, the floor above 0    | not at all: planned at epoch 0            |
    /// | a reshard step (`SHOAL._*`)                   | alone, after the batch before it          |
    /// | WATCH-guarded                                 | alone, after the batch, if the guard holds |
    /// | anything else                                 | in the batch                              |
    ///
    /// The floor moves only with reshard steps, which never wait in a batch, so the
    /// floor an entry is checked against is the one at its log position.
    fn apply_entries(&mut self, items: &mut [EntryResponder<TypeConfig>]) -> Vec<Response> {
        let mut out: Vec<Response> = Vec::with_capacity(items.len());
        // Unguarded writes waiting for the engine, and the response slot of each.
        let mut batch: Vec<Write> = Vec::new();
        let mut slots: Vec<usize> = Vec::new();
        for (entry, _) in items.iter_mut() {
            let log_id = entry.log_id();
            let payload = match std::mem::replace(&mut entry.payload, EntryPayload::Blank) {
                EntryPayload::Normal(mut request) => {
                    let floor = self.engine.layout().floor;
                    let planned_at = match request.take_epoch() {
                        Some(epoch) => epoch,
                        // A router that has not seen a reshard (or of the previous
                        // release): epoch 0, which every floor of a group that never
                        // resharded takes, so the commands are only looked at after one.
                        None if floor == 0 || !request.unrouted() => Some(0),
                        None => Some(u64::MAX),
                    };
                    if planned_at.is_none_or(|epoch| epoch < floor) {
                        // Planned by a routing older than the group's (or unreadable):
                        // nothing runs, and the router re-reads the map.
                        out.push(Response {
                            stale: Some(floor),
                            ..Response::default()
                        });
                        self.applied = Some(log_id);
                        continue;
                    }
                    EntryPayload::Normal(request)
                }
                other @ (EntryPayload::Blank | EntryPayload::Membership(_)) => other,
            };
            match payload {
                EntryPayload::Blank => out.push(Response::default()),
                EntryPayload::Normal(request)
                    if request.guard.is_empty() && !request.reshards() =>
                {
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
                            aborted: true,
                            ..Response::default()
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
    /// The group's log: a snapshot is rebuilt from the previous one plus the entries
    /// after it, beside the live replica (see `build_snapshot`).
    log: WeakLog,
    /// Bytes of log read per replay step (`REPLAY_BYTES`; tests make it small).
    replay_bytes: usize,
    /// Serializes replacing the snapshot file: openraft builds snapshots in a task of
    /// their own, which can overlap installing one received from the leader. Holds
    /// `true` once the replica is retired ([`Retirement::retire`]): a build that
    /// finishes after that must not write into a directory that is being erased.
    snapshot_writes: Arc<parking_lot::Mutex<bool>>,
    /// The replica's views (`crate::view_mirror`): told what is applied before any
    /// response of a batch is sent.
    views: Arc<ViewMirror>,
}

/// Applies `items` to the replica and shows the replica's views what it now holds,
/// under the write lock, before the caller sends any response.
fn apply_and_show(
    replica: &RwLock<Replica>,
    views: &ViewMirror,
    items: &mut [EntryResponder<TypeConfig>],
) -> Vec<Response> {
    let mut r = replica.write();
    let outcomes = r.apply_entries(items);
    views.applied(r.applied, &r.membership);
    outcomes
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl StateMachine {
    /// Opens the state machine whose snapshots live in `dir`, restoring the latest one;
    /// `log` is the group's log.
    pub fn open(dir: PathBuf, log: &LogStore) -> io::Result<StateMachine> {
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
        let views = log.views();
        views.applied(replica.applied, &replica.membership);
        Ok(StateMachine {
            replica: Arc::new(RwLock::new(replica)),
            dir: Arc::new(dir),
            log: log.weak(),
            replay_bytes: REPLAY_BYTES,
            snapshot_writes: Arc::default(),
            views,
        })
    }

    /// The replica, for reads on this node.
    pub fn replica(&self) -> Arc<RwLock<Replica>> {
        self.replica.clone()
    }

    /// What [`Retirement::retire`] needs to stop this state machine's snapshot writes.
    pub fn retirement(&self) -> Retirement {
        Retirement(self.snapshot_writes.clone())
    }
}

/// Stops a state machine's snapshot writes for good, from outside the Raft that owns it:
/// openraft's shutdown does not wait for a snapshot build in flight, and a replica
/// being erased must not get a file back after its directory is gone.
#[derive(Debug, Clone)]
pub struct Retirement(Arc<parking_lot::Mutex<bool>>);

impl Retirement {
    /// Waits for a snapshot write in progress, then refuses every later one.
    pub fn retire(&self) {
        *self.0.lock() = true;
    }

    /// Whether the state machine refuses snapshot writes (waits for one in progress).
    pub fn is_retired(&self) -> bool {
        *self.0.lock()
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
                let (replica, views) = (self.replica.clone(), self.views.clone());
                tokio::task::spawn_blocking(move || {
                    let outcomes = apply_and_show(&replica, &views, &mut items);
                    (items, outcomes)
                })
                .await
                .map_err(io_err)?
            } else {
                let outcomes = apply_and_show(&self.replica, &self.views, &mut items);
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
            let retired = writes.lock();
            if *retired {
                return Err(io_err("the replica was retired"));
            }
            snapshot_file::write(&dir, &meta, &bytes)?;
            Ok((engine, meta))
        })
        .await
        .map_err(io_err)??;
        let mut r = self.replica.write();
        r.engine = engine;
        r.applied = meta.last_log_id;
        r.membership = meta.last_membership;
        self.views.applied(r.applied, &r.membership);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        Ok(snapshot_file::open_current(&self.dir)?
            .map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

/// The current snapshot file (metadata and handle), opened.
type Current = Option<(SnapshotMeta, std::fs::File)>;

/// `current` as the snapshot to hand out when it already covers everything up to `upto`;
/// otherwise `current` back, to build on.
fn covering(current: Current, upto: Option<LogId>) -> Result<Snapshot, Current> {
    match current {
        Some((meta, snapshot)) if meta.last_log_id >= upto => Ok(Snapshot { meta, snapshot }),
        other => Err(other),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = std::fs::File;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let target = self.replica.read().applied;
        let builder = self.clone();
        tokio::task::spawn_blocking(move || builder.build_at(target))
            .await
            .map_err(io_err)?
    }
}

impl StateMachine {
    /// Builds the snapshot of the state after `target`, without the live replica's lock.
    ///
    /// The live engine cannot be serialized without stopping its applies for as long as
    /// that takes (it is not copy-on-write), so the snapshot is rebuilt beside it: the
    /// previous snapshot is loaded into a second replica and the log entries after it,
    /// up to `target`, are replayed into that one. The engine is deterministic, so the
    /// result is the state the live replica had at `target`. It costs CPU and, while it
    /// runs, a second copy of the state in memory; writes go on meanwhile.
    ///
    /// | log holds (previous snapshot, target]   | snapshot is built from          |
    /// |-----------------------------------------|---------------------------------|
    /// | yes (openraft purges only what a        | previous snapshot + replay      |
    /// | snapshot covers)                        |                                 |
    /// | no: a newer snapshot was installed and  | that newer snapshot, as it is   |
    /// | purged the log meanwhile                |                                 |
    /// | no: entries were applied that the log   | the live replica, under its     |
    /// | never had (openraft's storage suite)    | read lock                       |
    fn build_at(&self, target: Option<LogId>) -> io::Result<Snapshot> {
        let base = match covering(snapshot_file::open_current(&self.dir)?, target) {
            Ok(done) => return Ok(done),
            Err(base) => base,
        };
        let rebuilt = self.replay(base, target)?;
        let (meta, bytes) = match rebuilt {
            Some(replica) => (replica.meta(), replica.engine.snapshot().map_err(io_err)?),
            None => {
                if let Ok(newer) = covering(snapshot_file::open_current(&self.dir)?, target) {
                    return Ok(newer);
                }
                // Serialized under the read lock: reads go on, applies wait.
                tracing::warn!(
                    dir = %self.dir.display(),
                    "the log lacks entries the state machine applied; snapshotting the live replica"
                );
                let r = self.replica.read();
                (r.meta(), r.engine.snapshot().map_err(io_err)?)
            }
        };
        let retired = self.snapshot_writes.lock();
        if *retired {
            return Err(io_err("the replica was retired"));
        }
        // An install may have replaced the file with a newer snapshot while this one
        // was being built: never put an older one back over it.
        let current = snapshot_file::open_current(&self.dir)?;
        if let Ok(newer) = covering(current, meta.last_log_id) {
            return Ok(newer);
        }
        let file = snapshot_file::write(&self.dir, &meta, &bytes)?;
        Ok(Snapshot {
            meta,
            snapshot: file,
        })
    }

    /// The replica at `target`: `base` (the current snapshot, if any) with the log's
    /// entries after it applied, backfills finished. `None` when the log does not hold
    /// every entry in between.
    fn replay(&self, base: Current, target: Option<LogId>) -> io::Result<Option<Replica>> {
        let mut replica = match base {
            Some((meta, mut file)) => {
                let (_, bytes) = snapshot_file::read(&mut file)?;
                Replica {
                    engine: Engine::restore(&bytes).map_err(io_err)?,
                    applied: meta.last_log_id,
                    membership: meta.last_membership,
                }
            }
            None => Replica::default(),
        };
        let end = target.map_or(0, |t| t.index + 1);
        let mut next = replica.applied.map_or(0, |a| a.index + 1);
        while next < end {
            let upto = next.saturating_add(REPLAY_CHUNK).min(end);
            let entries = self.log.read_range(next, upto, self.replay_bytes)?;
            // Keys are unique and ordered, so entries starting at `next` and ending at
            // `next + len - 1` are all there.
            let contiguous = entries.first().map(|e| e.log_id().index) == Some(next)
                && entries.last().map(|e| e.log_id().index)
                    == Some(next + entries.len() as u64 - 1);
            if !contiguous {
                return Ok(None);
            }
            next += entries.len() as u64;
            let mut items: Vec<EntryResponder<TypeConfig>> =
                entries.into_iter().map(|e| (e, None)).collect();
            replica.apply_entries(&mut items);
        }
        // Committed entries are never replaced, so the log's entry at the target index
        // is the one applied; anything else means the log is not the one applied from.
        if replica.applied != target {
            return Ok(None);
        }
        // Backfill is local work the live replica does between applies; the snapshot
        // carries finished indexes so a replica restored from it searches them at once.
        while replica.engine.backfill(BACKFILL_STEP) {}
        Ok(Some(replica))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::LogDb;
    use crate::types::Entry;
    use openraft::testing::{blank_ent, log_id};

    /// A state machine over a fresh log of its own in `dir`.
    fn open(dir: &std::path::Path) -> (StateMachine, LogStore) {
        let log = LogStore::new(LogDb::open(&dir.join("log")).unwrap(), 1);
        (StateMachine::open(dir.join("sm"), &log).unwrap(), log)
    }

    /// Appends `entries` to the log and applies them, as Raft would.
    async fn commit(sm: &mut StateMachine, log: &LogStore, entries: Vec<Entry>) {
        log.put(&entries).unwrap();
        let items: Vec<io::Result<EntryResponder<TypeConfig>>> =
            entries.into_iter().map(|e| Ok((e, None))).collect();
        sm.apply(futures::stream::iter(items)).await.unwrap();
    }

    fn command_entry(index: u64, args: &[&str]) -> Entry {
        let mut entry = blank_ent::<TypeConfig>(1, 1, index);
        entry.payload = EntryPayload::Normal(crate::types::Request {
            now_ms: index,
            commands: vec![args.iter().map(|a| a.as_bytes().to_vec()).collect()],
            resp3: false,
            guard: Vec::new(),
        });
        entry
    }

    /// An index over `doc:` hashes, then hashes `from..to` with a tag and a vector.
    fn writes(from: u64, to: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        if from == 0 {
            out.push(command_entry(
                0,
                &[
                    "FT.CREATE",
                    "idx",
                    "ON",
                    "HASH",
                    "PREFIX",
                    "1",
                    "doc:",
                    "SCHEMA",
                    "t",
                    "TAG",
                    "v",
                    "VECTOR",
                    "HNSW",
                    "6",
                    "TYPE",
                    "FLOAT32",
                    "DIM",
                    "2",
                    "DISTANCE_METRIC",
                    "L2",
                ],
            ));
        }
        for i in from.max(1)..to {
            let vector: Vec<u8> = [i as f32, 1.0]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            let mut entry = command_entry(i, &["HSET", "", "t", "x"]);
            if let EntryPayload::Normal(r) = &mut entry.payload {
                r.commands[0][1] = format!("doc:{i}").into_bytes();
                r.commands[0].extend([b"v".to_vec(), vector]);
            }
            out.push(entry);
        }
        out
    }

    fn restored(snapshot: &mut Snapshot) -> Engine {
        let (_, bytes) = snapshot_file::read(&mut snapshot.snapshot).unwrap();
        Engine::restore(&bytes).unwrap()
    }

    /// Builds a snapshot of what `sm` has applied while this thread holds the live
    /// replica's write lock, as an apply does. A build that needed the replica would wait
    /// forever, so it runs on a thread of its own and is given a minute.
    fn build_while_applying(sm: &StateMachine) -> (Snapshot, u64) {
        let live = sm.replica.write();
        let target = live.applied;
        let builder = sm.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(builder.build_at(target));
        });
        let built = rx.recv_timeout(std::time::Duration::from_secs(60));
        let digest = live.engine.digest();
        drop(live);
        let built = built
            .expect("the build waited for the live replica")
            .unwrap();
        assert_eq!(built.meta.last_log_id, target);
        (built, digest)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_is_rebuilt_from_the_log_without_the_live_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, log) = open(dir.path());
        commit(&mut sm, &log, writes(0, 200)).await;
        let (mut built, live_digest) = build_while_applying(&sm);
        let engine = restored(&mut built);
        assert_eq!(
            engine.digest(),
            live_digest,
            "the rebuilt state is the live one"
        );
        let index = engine.index("idx").unwrap();
        assert_eq!(index.vectors(), 199, "and its vectors are indexed");
        assert!(!index.backfill.in_progress(), "with the backfill finished");

        // The next build starts from that snapshot and needs only the entries after it:
        // what the first one covers may be purged.
        commit(&mut sm, &log, writes(200, 300)).await;
        log.drop_below(200).unwrap();
        // One entry per read: a replay step may end anywhere inside its chunk.
        sm.replay_bytes = 1;
        let (mut built, live_digest) = build_while_applying(&sm);
        assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(299));
        let engine = restored(&mut built);
        assert_eq!(engine.digest(), live_digest);
        assert_eq!(engine.index("idx").unwrap().vectors(), 299);
    }

    /// One run of entries, applied together: each is checked against the floor at its
    /// own log position, entries without an epoch count as epoch 0 once the floor has
    /// risen, and ticks and index metadata are not refused.
    #[tokio::test]
    async fn routing_epochs_are_checked_at_each_entrys_position_in_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, log) = open(dir.path());
        let at = |index: u64, epoch: Option<u64>, args: &[&str]| {
            let mut entry = command_entry(index, args);
            if let (EntryPayload::Normal(r), Some(epoch)) = (&mut entry.payload, epoch) {
                *r = r.clone().at_epoch(epoch);
            }
            entry
        };
        // A tick long after the key "g" was due to expire.
        let mut tick = blank_ent::<TypeConfig>(1, 1, 11);
        tick.payload = EntryPayload::Normal(crate::types::Request::tick(100));
        let entries = vec![
            at(1, None, &["SET", "a", "1"]),
            at(2, None, &["SHOAL._BEGIN", "5", "3", "0", "1", "2", "3"]),
            at(3, None, &["SET", "b", "1"]),
            at(4, Some(5), &["SET", "c", "1"]),
            at(5, Some(4), &["SET", "d", "1"]),
            at(6, None, &["SHOAL._FENCE", "3", "6"]),
            at(7, Some(5), &["SET", "e", "1"]),
            at(8, Some(6), &["SET", "f", "1"]),
            at(9, Some(6), &["SET", "g", "1", "PX", "5"]),
            // Index metadata without an epoch: not routed by key, not refused.
            at(
                10,
                None,
                &[
                    "FT._CREATE",
                    "7",
                    "KEEP",
                    "idx",
                    "ON",
                    "HASH",
                    "SCHEMA",
                    "n",
                    "NUMERIC",
                ],
            ),
            tick,
        ];
        commit(&mut sm, &log, entries).await;
        let replica = sm.replica();
        let replica = replica.read();
        let held = |k: &str| replica.engine.keyspace().get(k.as_bytes(), 10).is_some();
        let got: Vec<(&str, bool)> = ["a", "b", "c", "d", "e", "f"]
            .into_iter()
            .map(|k| (k, held(k)))
            .collect();
        let expected = vec![
            ("a", true),
            ("b", false),
            ("c", true),
            ("d", false),
            ("e", false),
            ("f", true),
        ];
        assert_eq!(got, expected);
        assert_eq!(replica.engine.layout().floor, 6);
        assert!(
            replica.engine.index("idx").is_some(),
            "index metadata was refused"
        );
        assert_eq!(replica.engine.expired_keys(), 1, "the tick was refused");
        assert_eq!(replica.applied().map(|l| l.index), Some(11));
    }

    #[tokio::test]
    async fn entries_the_log_never_had_are_snapshotted_from_the_live_replica() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, _log) = open(dir.path());
        let entries: Vec<io::Result<EntryResponder<TypeConfig>>> =
            writes(0, 20).into_iter().map(|e| Ok((e, None))).collect();
        sm.apply(futures::stream::iter(entries)).await.unwrap();
        let mut built = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(19));
        assert_eq!(
            restored(&mut built).digest(),
            sm.replica.read().engine.digest()
        );
    }

    #[tokio::test]
    async fn a_build_never_puts_an_older_snapshot_back_over_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, _log) = open(dir.path());
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
        snapshot_file::write(&dir.path().join("sm"), &newer, &engine).unwrap();

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
        let (mut sm2, _log2) = open(dir2.path());
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
