//! A node's handle on one of its groups: what the RESP front needs from Raft — write,
//! read linearizably, report status, change membership — without openraft's types.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{ChangeMembers, ReadPolicy, ServerState};
use parking_lot::RwLock;
use tracing::Instrument;

use crate::db::GroupId;
use crate::network::Raft;
use crate::state_machine::Replica;
use crate::types::{NodeAddr, NodeId, Request, Response};
use crate::view_mirror::ViewMirror;
use crate::vote_view::{LogView, VoteView};

/// How long a membership change waits for the one before it to commit (see
/// `Group::settle_membership`): a commit takes a replication round, so this is room for
/// a slow disk or a busy leader, not a wait anyone should see.
const MEMBERSHIP_SETTLE: Duration = Duration::from_secs(5);

/// How a leader makes sure it still leads before it answers a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// A heartbeat round to a quorum per read batch (Raft's ReadIndex): safe whatever
    /// the clocks do.
    ReadIndex,
    /// The leader's lease: no round trip while a quorum acknowledged it within the
    /// lease, which assumes bounded clock drift between nodes.
    Lease,
    /// As `ReadIndex`, except that a router confirms the search and aggregate parts it
    /// reads on its own node by votes where it can (groups of at most three voters:
    /// shoal-cluster's `confirm`), with no quorum round on the leader.
    Votes,
}

impl ReadMode {
    fn policy(self) -> ReadPolicy {
        match self {
            ReadMode::ReadIndex | ReadMode::Votes => ReadPolicy::ReadIndex,
            ReadMode::Lease => ReadPolicy::LeaseRead,
        }
    }
}

/// Why a group could not do what was asked. Serializable: a router learns it from the
/// node it forwarded to.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum GroupError {
    /// This replica does not lead; `leader` is the one it knows of, if any.
    #[error("not the leader of group {group}")]
    NotLeader {
        group: GroupId,
        leader: Option<(NodeId, NodeAddr)>,
    },
    /// Leadership changed after the write was proposed; its outcome is unknown.
    #[error("leadership of group {group} changed while the write was in flight")]
    Unknown { group: GroupId },
    /// No quorum answered in time; a write's outcome is unknown.
    #[error("group {group} did not reach a quorum within {timeout:?}")]
    Timeout { group: GroupId, timeout: Duration },
    #[error("group {group}: {message}")]
    Raft { group: GroupId, message: String },
}

/// This replica's view of its group, for INFO and `RAFT STATUS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    pub group: GroupId,
    pub id: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: &'static str,
    pub term: u64,
    pub leader: Option<(NodeId, NodeAddr)>,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    /// Every member with its address and whether it votes.
    pub members: Vec<(NodeId, NodeAddr, bool)>,
    /// The log index of the membership this replica goes by (0: none yet).
    pub membership_index: u64,
    /// The newest membership this replica knows to be committed: its log index and
    /// its members. What a leader reports, so that a replica the group left behind
    /// can tell it was removed (`shoal_cluster::purge`).
    pub committed_membership: (u64, Vec<NodeId>),
    /// Whether this replica has anything on disk: a log entry or a snapshot.
    pub holds_data: bool,
}

/// One group on this node.
#[derive(Debug, Clone)]
pub struct Group {
    id: GroupId,
    raft: Raft,
    replica: Arc<RwLock<Replica>>,
    views: Arc<ViewMirror>,
}

impl Group {
    pub(crate) fn new(
        id: GroupId,
        raft: Raft,
        replica: Arc<RwLock<Replica>>,
        views: Arc<ViewMirror>,
    ) -> Group {
        Group {
            id,
            raft,
            replica,
            views,
        }
    }

    pub fn id(&self) -> GroupId {
        self.id
    }

    /// The local replica (engine, applied position) for reads.
    pub fn replica(&self) -> &Arc<RwLock<Replica>> {
        &self.replica
    }

    fn error(&self, e: impl std::fmt::Display) -> GroupError {
        GroupError::Raft {
            group: self.id,
            message: e.to_string(),
        }
    }

    fn not_leader(&self, leader_id: Option<NodeId>, leader: Option<NodeAddr>) -> GroupError {
        // openraft may know the leader's id but not its address; the membership has it.
        let leader = leader_id.and_then(|id| {
            leader
                .or_else(|| self.member_addr(id))
                .map(|addr| (id, addr))
        });
        GroupError::NotLeader {
            group: self.id,
            leader,
        }
    }

    /// The address of `id` in the membership this replica goes by.
    pub fn member_addr(&self, id: NodeId) -> Option<NodeAddr> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        m.membership_config.get_node(&id).cloned()
    }

    /// Makes `members` the group's first membership if the group has none yet (static
    /// bootstrap). Every member may call it with the same set; it is a no-op once the
    /// group holds a membership, so a restart never re-initializes.
    pub async fn initialize(&self, members: BTreeMap<NodeId, NodeAddr>) -> Result<(), GroupError> {
        if self
            .raft
            .is_initialized()
            .await
            .map_err(|e| self.error(e))?
        {
            return Ok(());
        }
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another member's initialization reached this one first.
            Err(e) if self.raft.is_initialized().await.unwrap_or(false) => {
                tracing::debug!(group = self.id, error = %e, "already initialized");
                Ok(())
            }
            Err(e) => Err(self.error(e)),
        }
    }

    /// Proposes `request` and waits until it is committed and applied here.
    ///
    /// Decision table for the outcome a client is told:
    ///
    /// | what happened                     | answer                      | applied?  |
    /// |-----------------------------------|-----------------------------|-----------|
    /// | committed and applied             | `Ok(response)`              | yes       |
    /// | not the leader when proposed      | `NotLeader` (redirect)      | no        |
    /// | no quorum within `timeout`        | `Timeout`                   | unknown   |
    /// | leadership lost after proposing   | `Unknown`                   | unknown   |
    pub async fn write(&self, request: Request, timeout: Duration) -> Result<Response, GroupError> {
        let span = tracing::debug_span!("raft_write", group = self.id);
        let write = self.raft.client_write(request).instrument(span);
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(resp)) => Ok(resp.data),
            // Proposed, then the leader changed and the entry was dropped from this log:
            // it may have committed elsewhere, so the client must not be told to redirect.
            Ok(Err(openraft::error::RaftError::APIError(
                openraft::error::ClientWriteError::LogEntryDiscarded(_),
            ))) => Err(GroupError::Unknown { group: self.id }),
            Ok(Err(e)) => Err(self.api_error(e)),
            Err(_) => Err(GroupError::Timeout {
                group: self.id,
                timeout,
            }),
        }
    }

    /// Waits until a read on this replica sees every write acknowledged before the call
    /// (this replica leads, and has applied up to the read index).
    pub async fn linearize(&self, mode: ReadMode, timeout: Duration) -> Result<(), GroupError> {
        let span = tracing::debug_span!("raft_read_index", group = self.id);
        let check = self
            .raft
            .ensure_linearizable(mode.policy())
            .instrument(span);
        match tokio::time::timeout(timeout, check).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.api_error(e)),
            Err(_) => Err(GroupError::Timeout {
                group: self.id,
                timeout,
            }),
        }
    }

    /// The leader's half of a read served by another replica (a follower read): once
    /// this replica has confirmed it leads, the index a replica must have applied to
    /// see every write acknowledged before the call. The leader's own state machine
    /// is not waited for.
    pub async fn read_index(&self, mode: ReadMode, timeout: Duration) -> Result<u64, GroupError> {
        let span = tracing::debug_span!("raft_read_index_for_peer", group = self.id);
        let check = self
            .raft
            .get_read_linearizer(mode.policy())
            .instrument(span);
        match tokio::time::timeout(timeout, check).await {
            Ok(Ok(linearizer)) => Ok(linearizer.read_log_id().index()),
            Ok(Err(e)) => Err(self.api_error(e)),
            Err(_) => Err(GroupError::Timeout {
                group: self.id,
                timeout,
            }),
        }
    }

    /// This replica's vote and log views now (see [`crate::vote_view`]), from what its
    /// log store and state machine keep as they write ([`crate::view_mirror`]); `None`
    /// until the replica has read its vote and log at start.
    pub fn vote_view(&self) -> Option<(VoteView, LogView)> {
        let watch = self.raft.metrics();
        let (me, leads) = {
            let m = watch.borrow_watched();
            (m.id, m.state == ServerState::Leader)
        };
        self.views.views(me, leads)
    }

    /// The index this replica has applied (cheap: no copy of the metrics).
    pub fn applied_index(&self) -> u64 {
        let watch = self.raft.metrics();
        let applied = watch.borrow_watched().last_applied.map_or(0, |l| l.index);
        applied
    }

    /// The follower's half: waits until this replica has applied `index`; false when
    /// it has not within `timeout` (a lagging or still catching-up replica).
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let applied = |m: &openraft::RaftMetrics<crate::TypeConfig>| {
            m.last_applied.as_ref().is_some_and(|l| l.index >= index)
        };
        if applied(&self.raft.metrics().borrow_watched()) {
            return true;
        }
        self.raft
            .wait(Some(timeout))
            .metrics(applied, "applied the read index")
            .await
            .is_ok()
    }

    /// Whether this replica currently believes it leads (cheap; for background work
    /// such as proposing expiry ticks, not for correctness).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// Whether this node holds a replica of the group (a voter or learner in its
    /// membership). A node opens every group, but holds data only for those it was
    /// placed in or added to; the others stay empty and uninitialized.
    pub fn is_member(&self) -> bool {
        let watch = self.raft.metrics();
        let metrics = watch.borrow_watched();
        let me = metrics.id;
        let member = metrics.membership_config.nodes().any(|(id, _)| *id == me);
        member
    }

    /// The leader this replica knows of.
    pub fn leader(&self) -> Option<(NodeId, NodeAddr)> {
        // Borrowed, not cloned: routers ask on every remote call.
        let watch = self.raft.metrics();
        let metrics = watch.borrow_watched();
        let id = metrics.current_leader?;
        let leader = metrics
            .membership_config
            .get_node(&id)
            .cloned()
            .map(|addr| (id, addr));
        leader
    }

    /// How many voters the membership this replica goes by has (those of both halves
    /// of a joint membership, counted once). Cheap: no copy.
    pub fn voter_count(&self) -> usize {
        let watch = self.raft.metrics();
        let count = watch.borrow_watched().membership_config.voter_ids().count();
        count
    }

    /// The voters of the membership this replica goes by and the leader it knows of,
    /// read together and without copying addresses (a router plans a confirmation
    /// round by them for every search); `None` when this node holds no replica.
    pub fn voting(&self) -> Option<(Vec<NodeId>, Option<NodeId>)> {
        let watch = self.raft.metrics();
        let metrics = watch.borrow_watched();
        let config = &metrics.membership_config;
        let me = metrics.id;
        if !config.nodes().any(|(id, _)| *id == me) {
            return None;
        }
        Some((config.voter_ids().collect(), metrics.current_leader))
    }

    /// The voters of the membership this replica goes by, with their addresses.
    pub fn voters(&self) -> Vec<(NodeId, NodeAddr)> {
        let watch = self.raft.metrics();
        let metrics = watch.borrow_watched();
        let config = &metrics.membership_config;
        let voters = config
            .voter_ids()
            .filter_map(|id| config.get_node(&id).map(|addr| (id, addr.clone())))
            .collect();
        voters
    }

    pub fn status(&self) -> GroupStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let index = |l: Option<&crate::types::LogId>| l.map_or(0, |l| l.index);
        let voters: BTreeSet<NodeId> = m.membership_config.voter_ids().collect();
        let members = m
            .membership_config
            .nodes()
            .map(|(id, addr)| (*id, addr.clone(), voters.contains(id)))
            .collect();
        let leader = m.current_leader.and_then(|id| {
            m.membership_config
                .get_node(&id)
                .cloned()
                .map(|addr| (id, addr))
        });
        GroupStatus {
            group: self.id,
            id: m.id,
            role,
            term: m.current_term,
            leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            committed_index: index(m.cluster_committed.as_ref()),
            applied_index: index(m.last_applied.as_ref()),
            snapshot_index: index(m.snapshot.as_ref()),
            purged_index: index(m.purged.as_ref()),
            members,
            membership_index: index(m.membership_config.log_id().as_ref()),
            committed_membership: (
                index(m.committed_membership_config.log_id().as_ref()),
                m.committed_membership_config
                    .nodes()
                    .map(|(id, _)| *id)
                    .collect(),
            ),
            holds_data: m.last_log_index.is_some() || m.snapshot.is_some(),
        }
    }

    /// An openraft API error as a [`GroupError`]: a redirect when openraft names (or
    /// does not know) the leader, otherwise the error itself.
    fn api_error<E>(&self, e: openraft::error::RaftError<crate::TypeConfig, E>) -> GroupError
    where
        E: std::error::Error
            + openraft::TryAsRef<openraft::error::ForwardToLeader<crate::TypeConfig>>,
    {
        match e.forward_to_leader() {
            Some(f) => self.not_leader(f.leader_id, f.leader_node.clone()),
            None => self.error(e),
        }
    }

    fn membership_result<T, E>(
        &self,
        r: Result<T, openraft::error::RaftError<crate::TypeConfig, E>>,
    ) -> Result<(), GroupError>
    where
        E: std::error::Error
            + openraft::TryAsRef<openraft::error::ForwardToLeader<crate::TypeConfig>>,
    {
        match r {
            Ok(_) => Ok(()),
            Err(e) => Err(self.api_error(e)),
        }
    }

    /// Waits, at most [`MEMBERSHIP_SETTLE`], until the membership this replica last
    /// appended is committed. openraft refuses a change while another is uncommitted,
    /// and the last one is visible (`RAFT STATUS` members) from its append: a change
    /// asked for right after seeing one, by an operator or by repair after the leader
    /// removed a stalled learner, would otherwise fail for a few milliseconds with
    /// "already undergoing a configuration change". Past the bound the change is
    /// proposed anyway and gets openraft's answer (a group without a quorum cannot
    /// commit either change).
    async fn settle_membership(&self) {
        let settled = |m: &openraft::RaftMetrics<crate::TypeConfig>| {
            m.membership_config.log_id() == m.committed_membership_config.log_id()
        };
        if settled(&self.raft.metrics().borrow_watched()) {
            return;
        }
        let _ = self
            .raft
            .wait(Some(MEMBERSHIP_SETTLE))
            .metrics(settled, "the last membership change committed")
            .await;
    }

    /// Adds `id` as a learner: it receives the log (or a snapshot) but does not vote.
    /// Returns once the membership entry is committed, not when the learner caught up.
    pub async fn add_learner(&self, id: NodeId, addr: NodeAddr) -> Result<(), GroupError> {
        self.settle_membership().await;
        let r = self.raft.add_learner(id, addr, false).await;
        self.membership_result(r)
    }

    /// Makes a learner a voter (through joint consensus).
    pub async fn promote(&self, id: NodeId) -> Result<(), GroupError> {
        self.settle_membership().await;
        let r = self
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await;
        self.membership_result(r)
    }

    /// How many entries `id` is behind this leader's log (`None` when this replica
    /// does not lead, or `id` has acknowledged nothing yet, e.g. while a snapshot is
    /// being installed on it).
    pub fn lag(&self, id: NodeId) -> Option<u64> {
        let matched = self.matched(id)?;
        let last = self.raft.metrics().borrow_watched().last_log_index;
        Some(last.unwrap_or(0).saturating_sub(matched))
    }

    /// The last log index `id` has acknowledged to this leader (`None` as for
    /// [`Group::lag`]): it moves while a learner catches up, even when the leader's
    /// log grows faster.
    pub fn matched(&self, id: NodeId) -> Option<u64> {
        let watch = self.raft.metrics();
        let m = watch.borrow_watched();
        let matched = m.replication.as_ref()?.get(&id)?.as_ref()?.index;
        Some(matched)
    }

    /// Removes `id` from the group, voter or learner.
    pub async fn remove(&self, id: NodeId) -> Result<(), GroupError> {
        self.settle_membership().await;
        let m = self.raft.metrics().borrow_watched().clone();
        if m.membership_config.voter_ids().any(|v| v == id) {
            let r = self
                .raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await;
            self.membership_result(r)?;
        }
        let m = self.raft.metrics().borrow_watched().clone();
        if m.membership_config.get_node(&id).is_some() {
            let r = self
                .raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await;
            self.membership_result(r)?;
        }
        Ok(())
    }

    /// Hands leadership to the voter `to` and waits up to `timeout` for the group to
    /// name its next leader: `Ok` once that is `to`. Rebalancing needs it to move a
    /// leader's own replica, and to spread leaders over nodes.
    ///
    /// From the call on, this replica proposes nothing (a write gets `NotLeader`
    /// naming `to`, which a router follows) and every voter stops honouring its lease,
    /// so `to` is elected at once. When `to` cannot take over (its log is behind, it
    /// is cut off), nobody hears this leader's heartbeats any more and the group
    /// elects again after an election timeout: a pause, never two leaders.
    pub async fn transfer_leader(&self, to: NodeId, timeout: Duration) -> Result<(), GroupError> {
        let me = {
            let watch = self.raft.metrics();
            let m = watch.borrow_watched();
            if m.state != ServerState::Leader {
                return Err(self.not_leader(m.current_leader, None));
            }
            m.id
        };
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| self.error(e))?;
        let next = self
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != me),
                "another replica leads",
            )
            .await
            .map_err(|_| GroupError::Timeout {
                group: self.id,
                timeout,
            })?
            .current_leader;
        match next {
            Some(l) if l == to => Ok(()),
            other => Err(self.error(format!("leadership went to {other:?}, not to node {to}"))),
        }
    }

    /// Builds a snapshot now (the log before it is then purged per the config).
    pub async fn snapshot(&self) -> Result<(), GroupError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| self.error(e))
    }
}
