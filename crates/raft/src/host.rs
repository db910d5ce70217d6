//! A node's share of the cluster: the Raft groups it hosts, over one RocksDB, one
//! outgoing [`Network`] and one incoming [`TransportService`].
//!
//! ```text
//! <data dir>/raft-log/          RocksDB: every group's log, votes and commit marks
//! <data dir>/groups/<id>/       the group's current snapshot
//! <data dir>/spool/             snapshots being received
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::db::{GroupId, LogDb};
use crate::error::{RaftError, Result};
use crate::group::{Group, GroupStatus};
use crate::log_store::LogStore;
use crate::network::{GroupNetwork, Groups, Network, Raft, TransportService};
use crate::state_machine::{Replica, Retirement, StateMachine};
use crate::types::NodeId;
use crate::view_mirror::ViewMirror;
use crate::vote_view::{LogView, VoteView};

/// An open group's replica, with what retires its snapshot writes when it is closed,
/// and its views (`crate::view_mirror`).
type Opened = (Arc<RwLock<Replica>>, Retirement, Arc<ViewMirror>);

/// The Raft groups of one node.
#[derive(Debug)]
pub struct Host {
    id: NodeId,
    dir: PathBuf,
    db: Arc<LogDb>,
    network: Network,
    groups: Groups,
    replicas: Mutex<HashMap<GroupId, Opened>>,
    /// What [`Host::was_erased`] found per group: every confirmation round asks it for
    /// each group it carries, and a look at the disk each time was a `statx` per
    /// group per round. The mark is only ever made (by [`Host::erase`], which sets this
    /// first), never removed, so a group found erased stays erased.
    erased: Mutex<HashMap<GroupId, bool>>,
    config: Arc<openraft::Config>,
    /// Held while a group is opened or closed, so two callers never start two Rafts
    /// over the same log and snapshot directory. True once the node shuts down: a
    /// group opened after [`Host::shutdown`] took its list (a map read opening the
    /// layout's groups, say) would keep running past it, never retired.
    lifecycle: tokio::sync::Mutex<bool>,
    /// True from the moment [`Host::shutdown`] begins: long-lived answers (a peer's
    /// stream of confirmation rounds) end then instead of outliving the groups.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl Host {
    /// Opens the node's storage under `dir`. `config` applies to every group.
    pub fn open(id: NodeId, dir: &Path, config: openraft::Config) -> Result<Host> {
        let config = config
            .validate()
            .map_err(|e| RaftError::Config(e.to_string()))?;
        Ok(Host {
            id,
            dir: dir.to_path_buf(),
            db: LogDb::open(&dir.join("raft-log"))?,
            network: Network::new(),
            groups: Groups::default(),
            replicas: Mutex::new(HashMap::new()),
            erased: Mutex::new(HashMap::new()),
            config: Arc::new(config),
            lifecycle: tokio::sync::Mutex::new(false),
            stopping: tokio::sync::watch::Sender::new(false),
        })
    }

    /// How channels to other nodes are made (TLS, source address): call before any
    /// group is opened (each group's network is a clone of the host's).
    pub fn with_peer_client(mut self, client: crate::PeerClient) -> Host {
        self.network = Network::with_client(client);
        self
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Starts (or restarts, from what is on disk) this node's replica of `group`.
    pub async fn open_group(&self, group: GroupId) -> Result<Raft> {
        let shut_down = self.lifecycle.lock().await;
        if *shut_down {
            return Err(RaftError::ShuttingDown);
        }
        self.open_locked(group).await
    }

    /// The groups this node has a directory for: the ones it held a replica of when
    /// it stopped. A node restarted after a reshard added a group reopens that group
    /// from these before it reads the cluster map, so it takes part in the group's
    /// Raft at once. A group whose erase a crash interrupted (its directory gone, its
    /// purge mark left) is listed too, so its open finishes the erase. An unreadable
    /// directory lists nothing: the map read opens the groups later.
    pub fn group_dirs(&self) -> Vec<GroupId> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("groups")) else {
            return Vec::new();
        };
        let mut groups: Vec<GroupId> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                match name.strip_suffix(".purging") {
                    Some(id) => id.parse().ok(),
                    None if e.file_type().is_ok_and(|t| t.is_dir()) => name.parse().ok(),
                    None => None,
                }
            })
            .collect();
        groups.sort_unstable();
        groups.dedup();
        groups
    }

    fn group_dir(&self, group: GroupId) -> PathBuf {
        self.dir.join("groups").join(group.to_string())
    }

    /// The mark of a purge under way: made (durably) before anything is erased and
    /// removed after, so a purge a crash interrupted is finished at the next open
    /// instead of leaving a log without its snapshot or the reverse.
    fn purge_mark(&self, group: GroupId) -> PathBuf {
        self.dir.join("groups").join(format!("{group}.purging"))
    }

    /// The mark left by a finished purge: this node's replica of the group was erased
    /// because the group removed it, so the node must not bootstrap the group again
    /// from its configured member list (it would start an old membership over).
    fn erased_mark(&self, group: GroupId) -> PathBuf {
        self.dir.join("groups").join(format!("{group}.erased"))
    }

    /// Whether this node's replica of `group` was erased by [`Host::purge_group`].
    pub fn was_erased(&self, group: GroupId) -> bool {
        if let Some(&erased) = self.erased.lock().get(&group) {
            return erased;
        }
        let erased = self.erased_mark(group).exists();
        // Kept only if no erase began meanwhile (it sets `true` before the mark).
        *self.erased.lock().entry(group).or_insert(erased)
    }

    /// This node's vote and log views of `group` for a read confirmation (see
    /// [`crate::vote_view`]); `None` when it holds no member replica of it, or its
    /// core has stopped.
    ///
    /// A replica erased once (the group had removed it) and given back offers no log
    /// view, ever: it may have been sent a snapshot older than memberships its erased
    /// log had acknowledged, and would then name as committed a membership a quorum
    /// has already left, which the logs proof cannot tell. Its vote still counts: the
    /// votes proof needs the leader's own view, which names the membership it commits
    /// by.
    pub fn read_views(&self, group: GroupId) -> Option<(VoteView, Option<LogView>)> {
        let replica = self.group(group).filter(|r| r.is_member())?;
        let (vote, log) = replica.vote_view()?;
        Some((vote, (!self.was_erased(group)).then_some(log)))
    }

    async fn open_locked(&self, group: GroupId) -> Result<Raft> {
        if let Some(raft) = self.groups.get(group) {
            return Ok(raft);
        }
        if self.purge_mark(group).exists() {
            self.erase(group).await?;
        }
        let log = LogStore::new(self.db.clone(), group);
        let sm = StateMachine::open(self.group_dir(group), &log)
            .map_err(|e| RaftError::Io(e.to_string()))?;
        let replica = (sm.replica(), sm.retirement(), log.views());
        let raft = Raft::new(
            self.id,
            self.config.clone(),
            GroupNetwork::new(self.network.clone(), group),
            log,
            sm,
        )
        .await
        .map_err(|e| RaftError::Raft(e.to_string()))?;
        self.groups.insert(group, raft.clone());
        self.replicas.lock().insert(group, replica);
        Ok(raft)
    }

    /// Stops this node's replica of `group` (its data stays on disk).
    pub async fn close_group(&self, group: GroupId) -> Result<()> {
        let _closing = self.lifecycle.lock().await;
        self.close_locked(group).await
    }

    /// Stops the replica and retires its state machine: openraft's shutdown does not
    /// wait for a snapshot build in flight, and whatever opens the group next (a
    /// reopen, an erase) must not have the old state machine write its snapshot file
    /// under it.
    async fn close_locked(&self, group: GroupId) -> Result<()> {
        let retirement = self.replicas.lock().remove(&group).map(|(_, r, _)| r);
        let stopped = match self.groups.remove(group) {
            Some(raft) => raft
                .shutdown()
                .await
                .map_err(|e| RaftError::Raft(e.to_string())),
            None => Ok(()),
        };
        // Retired even when the shutdown failed: the Raft is out of the map either way.
        let retired = match retirement {
            // Waits for a snapshot write in flight: off the runtime's threads.
            Some(retirement) => tokio::task::spawn_blocking(move || retirement.retire())
                .await
                .map_err(|e| RaftError::Io(e.to_string())),
            None => Ok(()),
        };
        // The shutdown's failure, if any, is the one worth reporting.
        stopped.and(retired)
    }

    /// What retires the state machine of this node's replica of `group` now; for
    /// tests that check a closed replica's old state machine stays quiet.
    pub fn retirement(&self, group: GroupId) -> Option<Retirement> {
        self.replicas.lock().get(&group).map(|(_, r, _)| r.clone())
    }

    /// Erases this node's replica of `group` — log, vote, snapshot — and opens it again
    /// empty, as a node that was never in the group (a leader can add it back later,
    /// and it then receives a snapshot like any new replica). Returns whether it did.
    ///
    /// Only for a replica the group has left behind: one whose node a committed
    /// membership change removed, and which knows of no later membership (the caller's
    /// decision: `shoal_cluster::purge`). Erasing a voter's vote or log would break
    /// the promises Raft's safety rests on. `still` is that decision, asked again of
    /// the replica's status under the lifecycle lock, and once more after its Raft has
    /// stopped (it takes appends until then): if either says no, the replica is
    /// reopened as it is.
    pub async fn purge_group(
        &self,
        group: GroupId,
        still: impl Fn(&GroupStatus) -> bool,
    ) -> Result<bool> {
        let _purging = self.lifecycle.lock().await;
        let Some(handle) = self.group(group) else {
            return Ok(false);
        };
        if !still(&handle.status()) {
            return Ok(false);
        }
        let closed = self.close_locked(group).await;
        // Metrics keep their last values after the shutdown: what the log holds now.
        let confirmed = closed.is_ok() && still(&handle.status());
        let erased = match (closed, confirmed) {
            (Ok(()), true) => self.erase_closed(group).await,
            (Ok(()), false) => Ok(false),
            (Err(e), _) => Err(e),
        };
        // Whatever happened, the group is open again: erased, or as it was (with a
        // purge mark left by a failed erase, the open finishes the erase).
        let reopened = self.open_locked(group).await;
        let erased = erased?;
        reopened?;
        Ok(erased)
    }

    /// The erase of a stopped replica, under a durable purge mark.
    async fn erase_closed(&self, group: GroupId) -> Result<bool> {
        let io = |e: std::io::Error| RaftError::Io(e.to_string());
        let groups = self.dir.join("groups");
        std::fs::create_dir_all(&groups).map_err(io)?;
        std::fs::File::create(self.purge_mark(group))
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        sync_dir(&groups).map_err(io)?;
        self.erase(group).await?;
        Ok(true)
    }

    /// Removes the group's part of the log, then its snapshot directory, then the
    /// purge mark (leaving the erased mark). In that order so that a crash at any
    /// point leaves either the mark (finished at the next open) or a state openraft
    /// opens: the log is never left without the snapshot its purged prefix needs.
    async fn erase(&self, group: GroupId) -> Result<()> {
        let io = |e: std::io::Error| RaftError::Io(e.to_string());
        // Known erased from the start, before the mark exists: a replica offering its
        // log view to a confirmation (`read_views`) in between would be the unsafe
        // direction, one withholding it the safe one.
        self.erased.lock().insert(group, true);
        self.db.erase_group(group).await?;
        match std::fs::remove_dir_all(self.group_dir(group)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        std::fs::File::create(self.erased_mark(group))
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        // The removed directory and the erased mark are durable before the purge mark
        // goes: a crash never leaves neither mark with the erase half done.
        let groups = self.dir.join("groups");
        sync_dir(&groups).map_err(io)?;
        std::fs::remove_file(self.purge_mark(group)).map_err(io)?;
        sync_dir(&groups).map_err(io)?;
        tracing::info!(group, "erased this node's replica of the group");
        Ok(())
    }

    /// Resolves once the node has begun to shut down.
    pub fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping.subscribe();
        async move {
            // An error means the host is gone: stopped all the same.
            let _ = stopping.wait_for(|stopping| *stopping).await;
        }
    }

    /// Stops every group.
    pub async fn shutdown(&self) -> Result<()> {
        self.stopping.send_replace(true);
        let mut shut_down = self.lifecycle.lock().await;
        *shut_down = true;
        for group in self.groups.ids() {
            self.close_locked(group).await?;
        }
        Ok(())
    }

    pub fn raft(&self, group: GroupId) -> Option<Raft> {
        self.groups.get(group)
    }

    /// The handle the node's fronts use for `group`, if this node hosts it.
    pub fn group(&self, group: GroupId) -> Option<Group> {
        let raft = self.groups.get(group)?;
        let (replica, _, views) = self.replicas.lock().get(&group)?.clone();
        Some(Group::new(group, raft, replica, views))
    }

    /// The engine of this node's replica of `group`, for local reads.
    pub fn replica(&self, group: GroupId) -> Option<Arc<RwLock<Replica>>> {
        self.replicas.lock().get(&group).map(|(r, _, _)| r.clone())
    }

    pub fn group_ids(&self) -> Vec<GroupId> {
        self.groups.ids()
    }

    /// The failpoint of [`LogDb::set_sync_delay`]: every log sync of this node's groups
    /// waits `delay` first.
    pub fn set_log_sync_delay(&self, delay: std::time::Duration) {
        self.db.set_sync_delay(delay);
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The gRPC service to serve on the node's Raft address.
    pub fn service(&self) -> TransportService {
        TransportService::new(
            self.groups.clone(),
            self.dir.join("spool"),
            self.dir.join("groups"),
        )
    }

    /// Serves the Raft transport on `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<()> {
        // No Nagle: a heartbeat's small reply must not wait for the ACK of the last one
        // (that stalled every ReadIndex read by up to a delayed-ACK period).
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .add_service(self.service().into_server())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| RaftError::Io(e.to_string()))
    }
}

/// Makes a directory's entries (files made or removed in it) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
