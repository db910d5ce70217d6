//! One node: where its engine lives (in this process, or a replica of a Raft group), the
//! clock that stamps writes, and the background work (backfill, expiry).
//!
//! A `shoal dev` node applies writes to its own engine under a write lock. A `shoal node`
//! hands every command to its router (shoal-cluster), which sends each shard group its
//! part — to the local replica when this node leads the group, otherwise to the leader
//! over gRPC — and answers once the groups committed and applied it; reads are
//! linearized on each group's leader (or served by any replica on a `READONLY`
//! connection). Engine locks are held for the engine call itself, never across I/O.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use bytes::BytesMut;
use parking_lot::RwLock;
use shoal_cluster::turns::ARRIVED;
use shoal_cluster::Router;
use shoal_engine::{Engine, ReadContext, Reply, Write};
use shoal_raft::{Group, GroupError, GroupId, Host, Replica, Request};
use shoal_resp::{encode, Protocol};

use crate::access::Access;
use crate::convert::EngineReply;
use crate::persist;

/// How long INFO waits for this node's replicas to catch up with their leaders.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(1);

/// Node-wide counters INFO reports.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections_received: AtomicU64,
    pub connected_clients: AtomicU64,
    pub commands_processed: AtomicU64,
    pub active_queries: AtomicU64,
    /// TLS clients whose handshake failed or timed out (a wrong CA, plaintext on a
    /// TLS port, no client certificate).
    pub tls_handshake_failures: AtomicU64,
    /// Writes applied since the last snapshot.
    pub dirty: AtomicU64,
    pub last_save_unix: AtomicU64,
}

/// Where the node's engine is.
#[derive(Debug)]
pub enum Store {
    /// In this process only (`shoal dev`); durability is the periodic snapshot.
    Local { engine: RwLock<Engine> },
    /// A replica of a Raft group (`shoal node`).
    Replicated(Box<Replicated>),
}

/// A node hosting replicas of shard groups, with a router in front of all groups.
#[derive(Debug)]
pub struct Replicated {
    pub host: Arc<Host>,
    /// The group `RAFT` and `INFO raft` talk about when none is named (the lowest this
    /// node was placed in). An id, not a handle: the replica behind it can be erased
    /// and opened anew ([`shoal_cluster::purge`]).
    pub group: GroupId,
    pub router: Router,
    /// How long a write or a read's leadership check may wait for a quorum.
    pub quorum_timeout: Duration,
}

impl Replicated {
    /// The handle of [`Replicated::group`] (none for the moment a purge reopens it).
    pub fn default_group(&self) -> Option<Group> {
        self.host.group(self.group)
    }

    /// The local replicas of every shard group this node holds (not the meta group's:
    /// its keys are the cluster map, not the user's data; nor the empty ones of groups
    /// it opened but was not placed in).
    fn replicas(&self) -> Vec<Arc<RwLock<Replica>>> {
        self.host
            .group_ids()
            .into_iter()
            .filter(|g| *g != shoal_cluster::META)
            .filter_map(|g| self.host.group(g))
            .filter(|g| g.is_member())
            .map(|g| g.replica().clone())
            .collect()
    }
}

#[derive(Debug)]
pub struct Node {
    pub store: Store,
    pub data_dir: Option<PathBuf>,
    pub port: u16,
    pub started: Instant,
    pub counters: Counters,
    /// The users connections log in as (see `access`).
    pub access: Access,
    next_client_id: AtomicU64,
}

/// A read on this node's own engine, outside any transaction.
fn local_read(resp3: bool) -> ReadContext {
    ReadContext {
        now_ms: now_ms(),
        resp3,
        in_apply: false,
    }
}

/// Milliseconds since the epoch: the time a write carries into the engine.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The error `RAFT` administration answers when the group could not do it: membership
/// changes go to the leader, which `MOVED <group> <addr>` names (Redis Cluster's
/// redirect, with the group in the slot's place). Data commands never see it: the
/// router follows leaders itself.
pub fn group_error(e: &GroupError) -> String {
    match e {
        GroupError::NotLeader {
            group,
            leader: Some((_, addr)),
        } => format!("MOVED {group} {}", addr.resp),
        GroupError::NotLeader {
            group,
            leader: None,
        } => format!("CLUSTERDOWN shard group {group} has no leader at the moment, try again"),
        GroupError::Timeout { group, timeout } => format!(
            "TRYAGAIN shard group {group} reached no quorum within {} ms; the write may or may not have been applied",
            timeout.as_millis()
        ),
        GroupError::Unknown { group } => format!(
            "TRYAGAIN shard group {group} changed leader while the write was in flight; it may or may not have been applied"
        ),
        GroupError::Raft { .. } => format!("ERR {e}"),
    }
}

impl Node {
    /// `users_known`: whether the built-in `default` user is all there is (no cluster
    /// map to read users from).
    fn with_store(
        store: Store,
        data_dir: Option<PathBuf>,
        port: u16,
        users_known: bool,
    ) -> Arc<Node> {
        let access = Access::new(users_known);
        Arc::new(Node {
            store,
            data_dir,
            port,
            started: Instant::now(),
            counters: Counters::default(),
            // A standalone node's users are all in this table; a replicated node's
            // come with the cluster map.
            access,
            next_client_id: AtomicU64::new(1),
        })
    }

    /// Opens a `shoal dev` node, loading the snapshot in `data_dir` if there is one.
    pub fn open(data_dir: Option<PathBuf>, port: u16) -> Result<Arc<Node>> {
        let engine = match &data_dir {
            Some(dir) => persist::load(dir)?,
            None => Engine::new(),
        };
        Ok(Self::with_store(
            Store::Local {
                engine: RwLock::new(engine),
            },
            data_dir,
            port,
            true,
        ))
    }

    /// A `shoal node` serving `replicated.group` (its data lives under the host's dir).
    /// `in_map`: the node is a configured member and reads its users from the cluster
    /// map; a node started without members (one that joins a group as a learner) has
    /// no map to read and knows only the built-in `default` user.
    pub fn replicated(replicated: Replicated, port: u16, in_map: bool) -> Arc<Node> {
        Self::with_store(Store::Replicated(Box::new(replicated)), None, port, !in_map)
    }

    /// The key prefixes of index `name`, for the ACL check of the FT commands: from
    /// the cluster map when replicated (falling back to a local replica for an index
    /// the map does not have), else from the engine.
    pub fn index_prefixes(&self, name: &str) -> Option<Vec<Vec<u8>>> {
        if let Store::Replicated(r) = &self.store {
            let from_map = r.router.with_cached_map(|m| {
                m.indexes
                    .get(name)
                    .and_then(|d| shoal_query::schema::parse_create(&d.args).ok())
                    .map(|s| s.prefixes)
            });
            if from_map.is_some() {
                return from_map;
            }
        }
        self.with_engines(|engines| {
            engines
                .iter()
                .find_map(|e| e.index(name).map(|i| i.schema.prefixes.clone()))
        })
    }

    /// Reads the users again from the meta leader (replicated; a standalone node's
    /// table is always current). Whether it read them.
    pub async fn refresh_access(&self) -> bool {
        let Store::Replicated(r) = &self.store else {
            return false;
        };
        match r.router.refresh_map(now_ms(), true).await {
            Ok(()) => {
                r.router.with_cached_map(|m| self.access.sync(&m.users));
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not read the users from the cluster map");
                false
            }
        }
    }

    pub fn client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Applies each command as its own write (replicated: one log entry per shard group
    /// the run touches). A command a group could not take is answered with the reason.
    // #[PerformanceCriticalPath]: pipelined writes arrive here in batches.
    pub async fn apply_each(&self, commands: Vec<Vec<Vec<u8>>>) -> Vec<Reply> {
        let n = commands.len();
        match &self.store {
            Store::Local { engine } => {
                let mut engine = engine.write();
                // Stamped under the lock, so log order and time order agree.
                let now = now_ms();
                let writes: Vec<Write> = commands
                    .into_iter()
                    .map(|args| Write::single(now, args))
                    .collect();
                let replies = engine.apply_many(&writes).into_iter().flatten().collect();
                self.counters.dirty.fetch_add(n as u64, Ordering::Relaxed);
                replies
            }
            // One entry per group: each group's commands apply in order, and no other
            // entry interleaves, which is what a pipeline on one connection observes.
            Store::Replicated(r) => r.router.write(commands, now_ms()).await,
        }
    }

    /// Applies a transaction as one log entry, unless a watched key changed since WATCH
    /// (then `Ok(None)`, and nothing is applied). `Err` is the error EXEC answers when
    /// the group could not take the transaction.
    pub async fn apply_batch(
        &self,
        commands: Vec<Vec<Vec<u8>>>,
        resp3: bool,
        watched: Vec<(Vec<u8>, Option<u64>)>,
    ) -> std::result::Result<Option<Vec<Reply>>, String> {
        match &self.store {
            Store::Local { engine } => {
                let mut engine = engine.write();
                let now = now_ms();
                if !watched.is_empty() {
                    let keys: Vec<Vec<u8>> = watched.iter().map(|(k, _)| k.clone()).collect();
                    let current = engine.versions(&keys, now);
                    if current.iter().zip(&watched).any(|(c, (_, w))| c != w) {
                        return Ok(None);
                    }
                }
                let write = Write {
                    now_ms: now,
                    commands,
                    resp3,
                };
                let replies = engine.apply(&write);
                drop(engine);
                self.counters.dirty.fetch_add(1, Ordering::Relaxed);
                Ok(Some(replies))
            }
            // Nothing to apply and nothing to check (MULTI; PING; EXEC): no log entry.
            Store::Replicated(_) if commands.is_empty() && watched.is_empty() => {
                Ok(Some(Vec::new()))
            }
            // The guard travels in the entry: every replica checks it at the entry's log
            // position, against versions that are part of the replicated state.
            Store::Replicated(r) => {
                r.router
                    .transaction(commands, resp3, watched, now_ms())
                    .await
            }
        }
    }

    /// The current versions of keys, for WATCH. Replicated, they are read like any read
    /// on the leader (linearized), so a guard never starts from a stale view.
    pub async fn versions(
        &self,
        keys: &[Vec<u8>],
    ) -> std::result::Result<Vec<Option<u64>>, String> {
        match &self.store {
            Store::Local { engine } => Ok(engine.read().versions(keys, now_ms())),
            Store::Replicated(r) => r.router.versions(keys, now_ms()).await,
        }
    }

    /// Answers consecutive reads of one connection together. On a replicated node the
    /// leader first confirms it still leads and has applied everything acknowledged
    /// (once for the whole run); `stale_ok` (a `READONLY` connection) reads this replica
    /// as it is, leader or not.
    // #[PerformanceCriticalPath]: pipelined reads arrive here in batches.
    pub async fn read_each(
        &self,
        requests: &[Vec<bytes::Bytes>],
        resp3: bool,
        stale_ok: bool,
    ) -> Vec<Reply> {
        let since = Instant::now();
        self.counters.active_queries.fetch_add(1, Ordering::Relaxed);
        if let Store::Replicated(r) = &self.store {
            let read = r.router.read(requests, resp3, stale_ok, now_ms());
            let replies = ARRIVED.scope(since, read).await;
            self.counters.active_queries.fetch_sub(1, Ordering::Relaxed);
            return replies;
        }
        let ctx = local_read(resp3);
        let replies = self.with_engine(|engine| {
            requests
                .iter()
                .map(|args| engine.query(args, ctx))
                .collect()
        });
        self.counters.active_queries.fetch_sub(1, Ordering::Relaxed);
        replies
    }

    /// [`Node::read_each`] framed into `out` for a connection speaking `protocol`. On
    /// one engine (`--standalone`) a RESP2 FT.SEARCH is framed as its hits are found
    /// ([`crate::search_frame`]); other replies are encoded once the engine's lock is
    /// released, as before, so a long pipeline of them does not hold writers back.
    // #[PerformanceCriticalPath]: a --standalone search's reply is framed here.
    pub async fn read_into(
        &self,
        requests: &[Vec<bytes::Bytes>],
        protocol: Protocol,
        stale_ok: bool,
        out: &mut BytesMut,
    ) {
        let resp3 = protocol == Protocol::Resp3;
        if let Store::Replicated(_) = &self.store {
            for reply in self.read_each(requests, resp3, stale_ok).await {
                encode(EngineReply(reply), protocol, out);
            }
            return;
        }
        self.counters.active_queries.fetch_add(1, Ordering::Relaxed);
        let ctx = local_read(resp3);
        let mut rest = requests;
        // Runs of framed searches and of other reads, in order.
        while let Some(first) = rest.first() {
            let framed = crate::search_frame::frames(first, resp3);
            let len = rest
                .iter()
                .take_while(|r| crate::search_frame::frames(r, resp3) == framed)
                .count();
            let (run, tail) = rest.split_at(len);
            if framed {
                self.with_engine(|engine| {
                    for args in run {
                        if !crate::search_frame::frame(engine, args, ctx, out) {
                            encode(EngineReply(engine.query(args, ctx)), protocol, out);
                        }
                    }
                });
            } else {
                let replies: Vec<Reply> = self
                    .with_engine(|engine| run.iter().map(|args| engine.query(args, ctx)).collect());
                for reply in replies {
                    encode(EngineReply(reply), protocol, out);
                }
            }
            rest = tail;
        }
        self.counters.active_queries.fetch_sub(1, Ordering::Relaxed);
    }

    /// Waits, at most [`CATCH_UP_LIMIT`], until this node's replica of every group has
    /// applied what the group's leader had applied when asked. INFO's figures are this
    /// node's; after this they include every write acknowledged before the INFO, even
    /// where this node follows (a follower learns of commits a heartbeat later). While a
    /// group elects, INFO answers after the limit with what the node has.
    pub async fn catch_up(&self) {
        let Store::Replicated(r) = &self.store else {
            return;
        };
        let _ = tokio::time::timeout(CATCH_UP_LIMIT, self.wait_for_leaders(r)).await;
    }

    async fn wait_for_leaders(&self, r: &Replicated) {
        for (group, target) in r.router.applied(now_ms()).await {
            let (Some(replica), Ok(target)) = (r.host.replica(group), target) else {
                continue;
            };
            while replica.read().applied().map_or(0, |l| l.index) < target {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }

    /// Runs `f` over every engine on this node — one per group replica it hosts — for
    /// INFO's node-wide figures.
    pub fn with_engines<T>(&self, f: impl FnOnce(&[&Engine]) -> T) -> T {
        match &self.store {
            Store::Local { engine } => f(&[&engine.read()]),
            Store::Replicated(r) => {
                let replicas = r.replicas();
                let guards: Vec<_> = replicas.iter().map(|r| r.read()).collect();
                let engines: Vec<&Engine> = guards.iter().map(|g| &g.engine).collect();
                f(&engines)
            }
        }
    }

    /// Runs `f` with shared access to this node's engine (its first group's replica
    /// when replicated: DEBUG DIGEST).
    pub fn with_engine<T>(&self, f: impl FnOnce(&Engine) -> T) -> T {
        match &self.store {
            Store::Local { engine } => f(&engine.read()),
            Store::Replicated(r) => match r.host.replica(r.group) {
                Some(replica) => f(&replica.read().engine),
                None => f(&Engine::default()),
            },
        }
    }

    /// `DEBUG FSYNC-DELAY`: slows this node's log syncs; false without a log.
    pub fn set_log_sync_delay(&self, delay: Duration) -> bool {
        match &self.store {
            Store::Local { .. } => false,
            Store::Replicated(r) => {
                r.host.set_log_sync_delay(delay);
                true
            }
        }
    }

    /// `DEBUG DIGEST <group>`: the digest of this node's replica of `group`, if it
    /// holds one.
    pub fn group_digest(&self, group: u64) -> Option<u64> {
        match &self.store {
            Store::Local { engine } => (group == 0).then(|| engine.read().digest()),
            Store::Replicated(r) => r
                .host
                .group(group)
                .filter(|g| g.is_member())
                .map(|g| g.replica().read().engine.digest()),
        }
    }

    /// Fires due expiries: an empty write carrying the time. Replicated, only the leader
    /// proposes it, and only when some key is due, so idle groups append nothing.
    pub async fn tick(&self) {
        let now = now_ms();
        match &self.store {
            Store::Local { engine } => {
                // Only when some key is due: see `backfill` for why an idle write lock
                // is not free.
                if !engine.read().expiry_due(now) {
                    return;
                }
                engine.write().apply(&Write {
                    now_ms: now,
                    commands: Vec::new(),
                    resp3: false,
                });
            }
            Store::Replicated(r) => {
                for id in r.host.group_ids() {
                    let Some(group) = r.host.group(id) else {
                        continue;
                    };
                    if !group.is_leader() || !group.replica().read().engine.expiry_due(now) {
                        continue;
                    }
                    if let Err(e) = group.write(Request::tick(now), r.quorum_timeout).await {
                        tracing::debug!(group = id, error = %e, "expiry tick not committed");
                    }
                }
            }
        }
    }

    /// Advances index backfills; whether work remains. Backfill is local work on every
    /// replica (see `Engine::backfill`).
    ///
    /// A replica with nothing to backfill is only looked at under the read lock. This
    /// loop runs every 50 ms on every replica, and a write lock is not free even when
    /// the work under it is nothing: it waits for the searches that hold the read lock,
    /// and parking_lot's lock then holds back every new reader until it is through. A
    /// search preempted with the read lock held (two vCPUs, a load driver beside the
    /// server) can turn such a wait into a stall of every search of that replica (none
    /// showed in a paired benchmark: docs/benchmarks.md, "Session 50").
    pub fn backfill(&self, budget: usize) -> bool {
        match &self.store {
            Store::Local { engine } => {
                // Its own statement: the read guard is dropped before the write lock.
                let pending = engine.read().backfilling();
                pending && engine.write().backfill(budget)
            }
            Store::Replicated(r) => {
                let mut more = false;
                for replica in r.replicas() {
                    if replica.read().engine.backfilling() {
                        more |= replica.write().engine.backfill(budget);
                    }
                }
                more
            }
        }
    }

    /// Writes a snapshot if this is a `shoal dev` node with a data directory; the bytes
    /// are taken under the read lock and written without it. (A replicated node's
    /// snapshots are Raft's.)
    pub fn save(&self) -> Result<()> {
        let (Store::Local { engine }, Some(dir)) = (&self.store, &self.data_dir) else {
            return Ok(());
        };
        let dirty = self.counters.dirty.load(Ordering::Relaxed);
        let bytes = engine.read().snapshot()?;
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
                node.tick().await;
            }
        });
        if self.data_dir.is_some() && matches!(self.store, Store::Local { .. }) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A command's arguments, written as one line.
    fn words(line: &str) -> Vec<Vec<u8>> {
        line.split(' ').map(|w| w.as_bytes().to_vec()).collect()
    }

    /// Runs `pass` on a thread of its own while this thread holds the engine's read
    /// lock, as a search does: `Some` if it returned within five seconds, `None` if it
    /// was still waiting (for the write lock).
    fn beside_a_reader<T: Send + 'static>(
        node: &Arc<Node>,
        pass: impl FnOnce(Arc<Node>) -> T + Send + 'static,
    ) -> Option<T> {
        let Store::Local { engine } = &node.store else {
            panic!("a local node");
        };
        let _reading = engine.read();
        let (tx, rx) = std::sync::mpsc::channel();
        let node = Arc::clone(node);
        std::thread::spawn(move || {
            let _ = tx.send(pass(node));
        });
        rx.recv_timeout(Duration::from_secs(5)).ok()
    }

    /// The background passes run every 50 and 100 ms. With nothing to backfill and no
    /// key due they must not take the write lock: it would wait for every search in
    /// flight and hold back every new one meanwhile (`Node::backfill`). With work to do
    /// they still take it and do the work.
    #[tokio::test]
    async fn idle_background_passes_leave_searches_alone_and_busy_ones_still_work() {
        let node = Node::open(None, 0).unwrap();
        node.apply_each(
            (0..3000)
                .map(|i| words(&format!("HSET d:{i} n 1")))
                .collect(),
        )
        .await;

        let backfilled = beside_a_reader(&node, |n| n.backfill(2048));
        assert_eq!(
            backfilled,
            Some(false),
            "an idle backfill pass waited for the reader"
        );
        let ticked = beside_a_reader(&node, |n| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(n.tick());
        });
        assert_eq!(
            ticked,
            Some(()),
            "an idle expiry tick waited for the reader"
        );

        // An index over the 3,000 keys already there: two passes of 2,048 index them.
        let create = words("FT.CREATE idx ON HASH PREFIX 1 d: SCHEMA n NUMERIC");
        node.apply_each(vec![create]).await;
        assert!(node.with_engine(Engine::backfilling));
        assert!(node.backfill(2048), "a first pass leaves 952 keys");
        assert!(!node.backfill(2048), "the second pass finishes");
        assert!(!node.with_engine(Engine::backfilling));
        let indexed = node.with_engine(|e| {
            e.query(
                &["FT.SEARCH", "idx", "@n:[1 1]", "LIMIT", "0", "0"],
                local_read(false),
            )
        });
        assert_eq!(indexed, Reply::Array(vec![Reply::Int(3000)]));

        // A key due: the tick takes the write lock and expires it.
        node.apply_each(vec![words("PEXPIRE d:0 1")]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(node.with_engine(|e| e.expiry_due(now_ms())));
        node.tick().await;
        assert!(!node.with_engine(|e| e.expiry_due(now_ms())));
    }
}
