//! Reaching a shard group's leader from any node: the local replica when this node
//! leads, otherwise the leader's shard service over gRPC, following leader hints.
//!
//! Decision table for one attempt's outcome (the loop stops at the deadline: the
//! group's quorum timeout, or a search's own TIMEOUT):
//!
//! | outcome                                   | next                                  |
//! |-------------------------------------------|---------------------------------------|
//! | answer                                    | done; remember who answered           |
//! | `NotLeader` naming a leader               | retry there at once (bounded count)   |
//! | `NotLeader` without one (election)        | pause, retry                          |
//! | not hosted on the node asked              | forget it, pause, retry another       |
//! | unreachable, call surely never sent       | forget it, pause, retry               |
//! | unreachable after sending, read           | forget it, pause, retry (idempotent)  |
//! | unreachable after sending, write          | fail: outcome unknown (TRYAGAIN)      |
//! | read still unanswered at the deadline     | forget it, fail: `Deadline`           |
//! | no quorum / leadership lost mid-write     | fail: outcome unknown                 |
//! | this node's replica sees another leader   | read: retry there; write: fail,       |
//! | elected while a remote call is pending    | outcome unknown, next one goes there  |
//! | a majority of the group follows another   | the same                              |
//! | leader at one term (asked after 500 ms)   |                                       |
//! | engine error                              | fail with its text                    |
//!
//! The rows for a failed attempt are [`crate::retry::after_failure`], tested one by one
//! there; this module carries them out. A search part its search's confirmation round
//! covers is first read on this node by that round, within the same deadline, and
//! takes the loop only when the round does not confirm it.
//!
//! Only reads are cut at the deadline: a write in flight has its fate decided by the
//! group, so it waits out its attempt and reports an unknown outcome if that fails —
//! unless the group has visibly moved on. A leader that is frozen (a long GC pause, a
//! stopped VM) answers nothing until the quorum timeout; when the local replica of the
//! group (on a node that holds one) learns of a new leader while the call is pending,
//! the call is given up at once: its outcome is unknown either way, and the client's
//! retry reaches the new leader an election after the freeze instead of a quorum
//! timeout after it. Only a change seen *during* the call counts, so a replica whose
//! view is merely stale (partitioned) never cuts calls short.
//!
//! A router on a node without a replica of the group has no such view, and one whose
//! replica learned of the new leader just before the call (while its hint still named
//! the old one) sees no change during the call. So once a call has hung for
//! [`REMOTE_WATCH_AFTER`], the router also asks the group's other members whom they
//! follow (the `Leader` call); when a majority of the group names one leader other than
//! the node called, at one term, the node called is deposed: it cannot commit at its
//! own term any more, and the call is given up the same way. Giving up only ever turns
//! an answer into "unknown" (a write the deposed node committed before it froze may
//! still have been applied; the client is told so), never into a definite failure.
//! Each hung call polls on its own; with many clients behind one frozen leader that is
//! a few small calls per hung call every 200 ms, for an election's length.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use shoal_engine::aggregate::AggregatePart;
use shoal_engine::{IndexState, SearchResults};
use shoal_proto::shard::shard_client::ShardClient;
use shoal_proto::shard::ShardCall;
use shoal_raft::{
    Group, GroupError, GroupId, NodeAddr, NodeId, PeerClient, ReadMode, Request, Response,
};
use tonic::transport::Channel;

use crate::confirm::{search_peer, Fence, FencePlan, Fences, SearchFence, VotesAnswer};
use crate::local::{aggregate_on, search_on, Local};
use crate::read_index::{ReadIndex, ReadIndexes};
use crate::retry::{after_failure, AfterFailure, Attempt, Next};
use crate::service::MAX_MESSAGE;
use crate::turns::{arrived, Turns};
use crate::vote_link::VoteLink;
use crate::wire::{
    decode, encode, AggregateCall, LeaderView, ReadAnswer, ReadCall, SearchCall, ShardError,
};

/// Pause between attempts while a group elects a leader.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How often a pending remote call looks at whether the group elected someone else.
const LEADER_WATCH: Duration = Duration::from_millis(50);
/// How long a remote call hangs before the router asks the group's members whom they
/// follow: about an election, so a healthy call (milliseconds) costs no extra traffic.
const REMOTE_WATCH_AFTER: Duration = Duration::from_millis(500);
/// Between two rounds of asking, and how long one answer may take.
const REMOTE_WATCH: Duration = Duration::from_millis(200);
/// Slack on top of the quorum timeout the remote node applies itself.
const CALL_SLACK: Duration = Duration::from_secs(1);
/// A follower read waits for this node's replica to apply the read index only when it
/// is at most this many entries behind (a replica being caught up by snapshot is not
/// waited for: the leader answers at once)...
const FOLLOWER_MAX_LAG: u64 = 10_000;
/// ...and only this long (at most a quarter of the read's time): past it the leader
/// answers.
const FOLLOWER_CATCH_UP: Duration = Duration::from_millis(200);
/// After a follower read had to go to the leader after all, the group's parts go
/// straight to the leader for this long.
const FOLLOWER_BACKOFF: Duration = Duration::from_secs(1);
/// How long a part waits for a confirmation round (`crate::confirm`) before it takes
/// the read index or leader path (at most a quarter of the read's time)...
const CONFIRM_WAIT: Duration = Duration::from_millis(200);
/// ...and how long a peer whose round failed or timed out is not asked again.
const CONFIRM_BACKOFF: Duration = Duration::from_secs(1);

/// A run of searches' confirmation round ([`Shards::search_fence`]), shared by its
/// parts: the first part to need it drives it, the others wait for the same answer.
pub type PendingFence<'a> =
    futures::future::Shared<futures::future::BoxFuture<'a, Option<SearchFence>>>;

/// Whether a part read on this node may still be confirmed by votes there
/// ([`Shards::confirmed_part`]).
#[derive(Clone)]
enum Confirm<'a> {
    /// Yes: by its search's round when it has one (`Some`), else by a round of its own.
    Try(Option<PendingFence<'a>>),
    /// No: `confirmed_part` was tried first, with the search's round, and answered
    /// nothing (the round did not confirm the group and no round of the part's own
    /// did, the replica did not catch up, or the group cannot be confirmed here); the
    /// read index or leader path only.
    Tried,
}

/// One call to a group.
#[derive(Debug, Clone)]
pub enum Op {
    Write(Request),
    Read(ReadCall),
    Search(SearchCall),
    Aggregate(AggregateCall),
}

impl Op {
    fn idempotent(&self) -> bool {
        match self {
            Op::Write(_) => false,
            Op::Read(_) | Op::Search(_) | Op::Aggregate(_) => true,
        }
    }

    /// A `READONLY` read: any replica may answer, as it is.
    fn stale_ok(&self) -> bool {
        match self {
            Op::Write(_) => false,
            Op::Read(call) => call.stale_ok,
            Op::Search(call) => call.stale_ok,
            Op::Aggregate(call) => call.stale_ok,
        }
    }
}

/// What a call answers.
#[derive(Debug, Clone)]
pub enum Answer {
    Write(Response),
    Read(ReadAnswer),
    Search(SearchResults),
    Aggregate(AggregatePart),
}

/// Every group as one router sees it.
#[derive(Debug)]
pub struct Shards {
    local: Local,
    /// Nodes to try for a group this node knows no leader of: its members.
    members: Vec<(NodeId, NodeAddr)>,
    /// Each group's members, where known (placement, then the cluster map).
    group_members: parking_lot::RwLock<HashMap<GroupId, Vec<(NodeId, NodeAddr)>>>,
    /// The leader each group answered from last (or was redirected to).
    hints: Mutex<HashMap<GroupId, (NodeId, NodeAddr)>>,
    channels: Mutex<HashMap<String, Channel>>,
    /// How channels to other nodes are made.
    peer_client: PeerClient,
    /// Follower reads' rounds to the leaders (`crate::read_index`).
    read_indexes: Arc<ReadIndexes>,
    /// Until when each group's parts skip the follower read (see `backing_off`).
    follower_backoff: Mutex<HashMap<GroupId, Instant>>,
    /// Parts answered from this node's replicas by follower reads.
    answered_here: AtomicU64,
    /// Reads and parts of `READONLY` connections answered from this node's replicas as
    /// they were, unconfirmed.
    stale: AtomicU64,
    /// Confirmation rounds to peers (`crate::confirm`), and the parts they confirmed.
    fences: Arc<Fences>,
    confirmed: AtomicU64,
    /// Of those, the parts confirmed by their search's own round (`search_fence`).
    confirmed_by_search: AtomicU64,
    /// Until when each peer is not asked for confirmations (its last round failed).
    confirm_backoff: Mutex<HashMap<NodeId, Instant>>,
    /// The stream the confirmation rounds to each peer address go on
    /// (`crate::vote_link`).
    vote_links: Mutex<HashMap<String, Arc<VoteLink>>>,
    /// Raised when a call finds this router's members of a group wrong (the node asked
    /// holds no replica, or none is known): the map upkeep reads the map again at once
    /// instead of at its next tick.
    stale_map: Arc<tokio::sync::Notify>,
}

impl Shards {
    pub fn new(local: Local, members: Vec<(NodeId, NodeAddr)>) -> Shards {
        Shards {
            local,
            members,
            group_members: parking_lot::RwLock::new(HashMap::new()),
            hints: Mutex::new(HashMap::new()),
            channels: Mutex::new(HashMap::new()),
            peer_client: PeerClient::default(),
            read_indexes: Arc::default(),
            follower_backoff: Mutex::new(HashMap::new()),
            answered_here: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            fences: Arc::default(),
            confirmed: AtomicU64::new(0),
            confirmed_by_search: AtomicU64::new(0),
            confirm_backoff: Mutex::new(HashMap::new()),
            vote_links: Mutex::new(HashMap::new()),
            stale_map: Arc::default(),
        }
    }

    /// Notified whenever a call found this router's view of a group's members stale
    /// (see the field). One permit is kept while nobody waits, so a nudge between two
    /// waits is not lost; many nudges before the next wait are one.
    pub fn stale_map(&self) -> Arc<tokio::sync::Notify> {
        self.stale_map.clone()
    }

    /// Calls to other nodes are made with these settings (TLS, source address).
    pub fn with_peer_client(mut self, client: PeerClient) -> Shards {
        self.peer_client = client;
        self
    }

    /// Names the members of `group` when they are not every member of the cluster.
    pub fn with_group_members(
        mut self,
        group: GroupId,
        members: Vec<(NodeId, NodeAddr)>,
    ) -> Shards {
        self.group_members.get_mut().insert(group, members);
        self
    }

    /// Replaces what this router knows of `group`'s members (the map changed them).
    pub fn set_group_members(&self, group: GroupId, members: Vec<(NodeId, NodeAddr)>) {
        if !members.is_empty() {
            self.group_members.write().insert(group, members);
        }
    }

    pub fn local(&self) -> &Local {
        &self.local
    }

    /// Where to send the next attempt: the last known leader, else the leader the
    /// local replica knows of, else the members in turn.
    fn target(&self, group: GroupId, attempt: usize) -> Option<(NodeId, NodeAddr)> {
        if let Some(hint) = self.hints.lock().get(&group) {
            return Some(hint.clone());
        }
        if let Some(leader) = self.local.host.group(group).and_then(|g| g.leader()) {
            return Some(leader);
        }
        let known = self.group_members.read();
        let members = known.get(&group).unwrap_or(&self.members);
        if members.is_empty() {
            return None;
        }
        members.get(attempt % members.len()).cloned()
    }

    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock();
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = self.peer_client.endpoint(addr).map_err(|e| e.to_string())?;
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Runs `op` on `group`'s leader (see the module's decision table) within the
    /// group's quorum timeout; a stale read on the local replica when this node hosts
    /// one.
    pub async fn call(&self, group: GroupId, op: &Op) -> Result<Answer, ShardError> {
        self.call_within(group, op, self.local.quorum_timeout).await
    }

    /// [`Self::call`] with its own time budget: a read not answered within `budget`
    /// fails with [`ShardError::Deadline`] (a write keeps the quorum timeout).
    pub async fn call_within(
        &self,
        group: GroupId,
        op: &Op,
        budget: Duration,
    ) -> Result<Answer, ShardError> {
        self.call_fenced(group, op, budget, None).await
    }

    /// [`Self::call_within`] for a part of a run of searches whose round
    /// ([`Self::search_fence`]) is `search`: the part reads by it where it can (waiting
    /// for it first), and takes the leader loop below only when it does not confirm.
    pub async fn call_fenced(
        &self,
        group: GroupId,
        op: &Op,
        budget: Duration,
        search: Option<PendingFence<'_>>,
    ) -> Result<Answer, ShardError> {
        let start = Instant::now();
        let budget = if op.idempotent() {
            budget
        } else {
            self.local.quorum_timeout
        };
        let deadline = start + budget;
        let expired = |node: Option<NodeId>| ShardError::Deadline {
            group,
            node,
            millis: u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
        };
        if op.stale_ok() && self.local.host.group(group).is_some_and(|g| g.is_member()) {
            let answer = tokio::time::timeout(budget, self.call_local(group, op))
                .await
                .unwrap_or_else(|_| Err(expired(Some(self.local.host.id()))));
            // The router's own reads of the cluster map are stale too; only clients'
            // answered reads are counted.
            if answer.is_ok() && group != crate::meta::META {
                self.stale.fetch_add(1, Ordering::Relaxed);
            }
            return answer;
        }
        // A part its search's round covers reads by that round first: no leader to
        // look up and no watch on a remote call, within the part's deadline as any
        // attempt (its walk may wait for a turn). Only a part the round did not confirm
        // takes the loop below, which does not try confirmation again. A follower
        // backing off (it lagged) leaves the part to the leader at once, as
        // `call_leader` does.
        let mut confirm = Confirm::Try(search.clone());
        if search.is_some() && !self.follower_backing_off(group) {
            let here = self.confirmed_part(group, op, budget, search);
            match tokio::time::timeout(budget, here).await {
                Ok(Some(answer)) => {
                    if let Err(ShardError::StaleMap { .. }) = &answer {
                        // As `after_failure` has it: the map says where keys went.
                        self.stale_map.notify_one();
                    }
                    return answer;
                }
                Ok(None) => confirm = Confirm::Tried,
                Err(_) => return Err(expired(Some(self.local.host.id()))),
            }
        }
        // A read stops before a pause would take it past its deadline, with the error
        // that made it pause; a write tries once more after it (it was not applied).
        let out_of_time = || {
            let now = Instant::now();
            now >= deadline || (op.idempotent() && now + RETRY_PAUSE >= deadline)
        };
        let mut redirects = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some((node, addr)) = self.target(group, attempt) else {
                self.stale_map.notify_one();
                return Err(ShardError::NoRoute { group });
            };
            let call = async {
                if node == self.local.host.id() {
                    if let Confirm::Try(search) = confirm.clone() {
                        if let Some(answer) = self.confirmed_part(group, op, budget, search).await {
                            return answer;
                        }
                    }
                    return self.call_local(group, op).await;
                }
                let call = self.call_leader(group, node, &addr, op, budget, confirm.clone());
                let local = async {
                    match self.local_view(group) {
                        Some(before) => self.superseded(group, node, before).await,
                        None => std::future::pending().await,
                    }
                };
                let watch = async {
                    tokio::select! {
                        leader = local => leader,
                        leader = self.deposed(group, node) => leader,
                    }
                };
                tokio::select! {
                    answer = call => answer,
                    leader = watch => {
                        tracing::debug!(group, node, new_leader = leader.0, "the group elected another leader during a call");
                        self.hints.lock().insert(group, leader.clone());
                        Err(ShardError::Group(if op.idempotent() {
                            GroupError::NotLeader { group, leader: Some(leader) }
                        } else {
                            GroupError::Unknown { group }
                        }))
                    }
                }
            };
            let result = if op.idempotent() {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, call).await {
                    Ok(result) => result,
                    Err(_) => {
                        // It may be gone (paused, partitioned): the next call looks
                        // for the leader afresh instead of waiting on it again.
                        self.hints.lock().remove(&group);
                        return Err(expired(Some(node)));
                    }
                }
            } else {
                call.await
            };
            let error = match result {
                Ok(answer) => {
                    self.hints.lock().insert(group, (node, addr));
                    return Ok(answer);
                }
                Err(error) => error,
            };
            let AfterFailure {
                next,
                forget_hint,
                refresh_map,
            } = after_failure(
                error,
                Attempt {
                    node,
                    redirects,
                    idempotent: op.idempotent(),
                    out_of_time: out_of_time(),
                },
            );
            if refresh_map {
                // The replica moved (a node replaced): the map says where.
                self.stale_map.notify_one();
            }
            if forget_hint {
                self.hints.lock().remove(&group);
            }
            let pause = match next {
                Next::Redirect(leader) => {
                    redirects += 1;
                    self.hints.lock().insert(group, leader);
                    false
                }
                Next::Pause => true,
                Next::Fail(error) => return Err(error),
            };
            if pause {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }

    /// What this node's own replica of `group` knows of its leader: `None` when it
    /// holds no replica, `Some(None)` when its replica knows no leader.
    fn local_view(&self, group: GroupId) -> Option<Option<(NodeId, NodeAddr)>> {
        self.local
            .host
            .group(group)
            .filter(|g| g.is_member())
            .map(|g| g.leader())
    }

    /// Resolves once this node's replica of `group` names a leader that is neither
    /// `node` (being called) nor `before` (what it named when the call started).
    async fn superseded(
        &self,
        group: GroupId,
        node: NodeId,
        before: Option<(NodeId, NodeAddr)>,
    ) -> (NodeId, NodeAddr) {
        let before = before.map(|(id, _)| id);
        loop {
            tokio::time::sleep(LEADER_WATCH).await;
            if let Some(Some(leader)) = self.local_view(group) {
                if leader.0 != node && Some(leader.0) != before {
                    return leader;
                }
            }
        }
    }

    /// Resolves once a majority of `group`'s members, asked over the network, follow
    /// one leader other than `node` at one term (see the module's notes). Never
    /// resolves when `node` is not among the members this router knows.
    async fn deposed(&self, group: GroupId, node: NodeId) -> (NodeId, NodeAddr) {
        tokio::time::sleep(REMOTE_WATCH_AFTER).await;
        // Without a record of the group's members, every member of the cluster is
        // asked: nodes without a replica do not answer a view, so a majority of them
        // is harder to reach, never wrongly reached.
        let members = self.group_members.read().get(&group).cloned();
        let members = members.unwrap_or_else(|| self.members.clone());
        if !members.iter().any(|(id, _)| *id == node) {
            return std::future::pending().await;
        }
        let majority = members.len() / 2 + 1;
        loop {
            let views = futures::future::join_all(
                members
                    .iter()
                    .filter(|(id, _)| *id != node)
                    .map(|(id, addr)| self.leader_view(group, *id, addr)),
            )
            .await;
            let mut counts: HashMap<(u64, NodeId), usize> = HashMap::new();
            for view in views.into_iter().flatten() {
                if let Some(leader) = view.leader.filter(|l| *l != node) {
                    *counts.entry((view.term, leader)).or_default() += 1;
                }
            }
            let followed = counts
                .into_iter()
                .find(|(_, n)| *n >= majority)
                .and_then(|((_, leader), _)| members.iter().find(|(id, _)| *id == leader));
            if let Some(leader) = followed {
                return leader.clone();
            }
            tokio::time::sleep(REMOTE_WATCH).await;
        }
    }

    /// Whom `node`'s replica of `group` follows; None when it does not answer in time
    /// or holds no replica.
    async fn leader_view(
        &self,
        group: GroupId,
        node: NodeId,
        addr: &NodeAddr,
    ) -> Option<LeaderView> {
        let channel = self.channel(&addr.raft).ok()?;
        let mut client = ShardClient::new(channel);
        let mut request = tonic::Request::new(ShardCall {
            group,
            payload: Vec::new(),
        });
        request.set_timeout(REMOTE_WATCH);
        let reply = tokio::time::timeout(REMOTE_WATCH, client.leader(request))
            .await
            .ok()?
            .ok()?;
        match answer::<LeaderView>(&reply.into_inner().payload) {
            Ok(view) => Some(view),
            Err(e) => {
                tracing::debug!(group, node, error = %e, "no leader view");
                None
            }
        }
    }

    async fn call_local(&self, group: GroupId, op: &Op) -> Result<Answer, ShardError> {
        match op {
            Op::Write(request) => self
                .local
                .write(group, request.clone())
                .await
                .map(Answer::Write),
            Op::Read(call) => self.local.read(group, call).await.map(Answer::Read),
            Op::Search(call) => self.local.search(group, call).await.map(Answer::Search),
            Op::Aggregate(call) => self
                .local
                .aggregate(group, call)
                .await
                .map(Answer::Aggregate),
        }
    }

    /// A call to `node`, the group's leader as far as this router knows: a search or
    /// aggregate part is answered from this node's own replica when it holds one
    /// (a follower read), else the call goes to the leader.
    ///
    /// | this node's replica of the group     | leader's `ReadIndex` answer | next            |
    /// |--------------------------------------|-----------------------------|-----------------|
    /// | none, follows another leader or none,| (not asked)                 | call the leader |
    /// | or follower reads are off            |                             |                 |
    /// | follows `node`                       | an error (not the leader,   | that error: the |
    /// |                                      | unreachable, ...)           | loop redirects, |
    /// |                                      |                             | retries, fails  |
    /// | follows `node`                       | no such call (older Shoal)  | call the leader |
    /// | follows `node`, applies the index    | an index                    | answer here     |
    /// | within [`FOLLOWER_CATCH_UP`] (at most|                             |                 |
    /// | a quarter of the read's time)        |                             |                 |
    /// | follows `node`, lags more than       | an index                    | call the leader |
    /// | [`FOLLOWER_MAX_LAG`] or not in time  |                             |                 |
    ///
    /// Whenever a part asked for a read index and went to the leader all the same (an
    /// older leader, or a replica that did not catch up), the group's parts skip the
    /// follower read for [`FOLLOWER_BACKOFF`]: a replica that cannot keep up (or an
    /// older leader) costs one wasted round a second, not one per search.
    async fn call_leader(
        &self,
        group: GroupId,
        node: NodeId,
        addr: &NodeAddr,
        op: &Op,
        budget: Duration,
        confirm: Confirm<'_>,
    ) -> Result<Answer, ShardError> {
        let follower = match op {
            // A replica that follows another leader (or none: a left-behind one that
            // campaigns) would only wait out the catch-up time.
            Op::Search(_) | Op::Aggregate(_) if self.local.follower_reads => self
                .local
                .host
                .group(group)
                .filter(|g| g.is_member() && g.leader().is_some_and(|(id, _)| id == node))
                .filter(|g| !self.backing_off(group) && !backfilling(g, op)),
            Op::Search(_) | Op::Aggregate(_) | Op::Read(_) | Op::Write(_) => None,
        };
        let Some(replica) = follower else {
            return self.call_remote(group, node, addr, op, budget).await;
        };
        if let Confirm::Try(search) = confirm {
            if let Some(answer) = self.confirmed_part(group, op, budget, search).await {
                return answer;
            }
        }
        let index = match self.read_index(group, node, addr).await? {
            ReadIndex::At(index) => index,
            ReadIndex::Unsupported => {
                self.back_off(group);
                return self.call_remote(group, node, addr, op, budget).await;
            }
        };
        if let Some(answer) = answer_here(&self.local.walks, &replica, index, op, budget).await {
            self.answered_here.fetch_add(1, Ordering::Relaxed);
            return answer;
        }
        self.back_off(group);
        self.call_remote(group, node, addr, op, budget).await
    }

    /// A search or aggregate part answered from this node's replica of `group` after a
    /// confirmation round with one peer (`crate::confirm`), another voter of the
    /// group. `None` when the part, the group or the moment does not allow it; the
    /// caller then takes the read index or leader path.
    async fn confirmed_part(
        &self,
        group: GroupId,
        op: &Op,
        budget: Duration,
        search: Option<PendingFence<'_>>,
    ) -> Option<Result<Answer, ShardError>> {
        match op {
            Op::Search(_) | Op::Aggregate(_)
                if self.local.follower_reads && self.local.read_mode == ReadMode::Votes => {}
            Op::Search(_) | Op::Aggregate(_) | Op::Read(_) | Op::Write(_) => return None,
        }
        let started = Instant::now();
        let replica = self.local.host.group(group).filter(|g| g.is_member())?;
        // A follower still backfilling leaves the part to the leader (`backfilling`).
        if !replica.is_leader() && backfilling(&replica, op) {
            return None;
        }
        let me = self.local.host.id();
        // The search's own round, when it took one for this group (`search` is only
        // given to the parts it covers). Its views carry the voters, which the proof
        // checks, so nothing about the membership is looked up first. A peer whose
        // round did not confirm the group is not asked again for it below.
        let mut asked = None;
        if let Some(SearchFence { peer, fence }) = match search {
            Some(pending) => pending.await,
            None => None,
        } {
            asked = Some(peer);
            if let Some(index) = fence.index(me, peer, group) {
                let answer = self
                    .answer_confirmed(&replica, peer, index, op, budget)
                    .await;
                if answer.is_some() {
                    self.confirmed_by_search.fetch_add(1, Ordering::Relaxed);
                }
                return answer;
            }
        }
        // A group of more than three voters (or joint ones, counted together) can never
        // be confirmed by two: no round for it.
        if replica.voter_count() > 3 {
            return None;
        }
        // The leader where it is another node (the votes proof: its commit index, no
        // wait for entries in flight); else, or while the leader is not answering, any
        // other voter (the logs proof of `crate::confirm` needs no leader, so a search
        // is still confirmed while a lost leader's group elects the next, or while a
        // frozen one has not been replaced yet, unless it froze with an entry the
        // others hold and do not know committed). A peer whose round fails is backed off
        // and the next one asked at once, within the same part. A run of searches over
        // several groups takes one round for all of them first (`search` above, see
        // `search_fence`); this is for a group it did not cover.
        let voters = replica.voters();
        // A learner's replica confirms nothing (both rows need two voters).
        if !voters.iter().any(|(id, _)| *id == me) {
            return None;
        }
        let leader = replica.leader().filter(|(id, _)| *id != me);
        let peers = leader.clone().into_iter().chain(
            voters
                .into_iter()
                .filter(|(id, _)| *id != me && leader.as_ref().is_none_or(|(l, _)| l != id)),
        );
        // Each peer gets a quarter of the part's time at most, all of them together
        // half: the read index or leader path keeps the rest.
        let wait = CONFIRM_WAIT.min(budget / 4);
        // Counted from the part's start, the search's round included.
        let give_up = started + budget / 2;
        let mut confirmed = None;
        for (peer, addr) in peers {
            if asked == Some(peer) || self.confirm_backing_off(peer) {
                continue;
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(wait.min(left), self.fence(vec![group], peer, &addr)).await {
                Ok(Some(Ok(fence))) => {
                    confirmed = fence.index(me, peer, group).map(|index| (peer, index));
                    break;
                }
                Ok(Some(Err(_)) | None) | Err(_) => {
                    self.confirm_backoff
                        .lock()
                        .insert(peer, Instant::now() + CONFIRM_BACKOFF);
                }
            }
        }
        let (peer, index) = confirmed?;
        self.answer_confirmed(&replica, peer, index, op, budget)
            .await
    }

    /// A part answered from `replica` once it has applied `index`, which a round with
    /// `peer` confirmed.
    async fn answer_confirmed(
        &self,
        replica: &Group,
        peer: NodeId,
        index: u64,
        op: &Op,
        budget: Duration,
    ) -> Option<Result<Answer, ShardError>> {
        let Some(answer) = answer_here(&self.local.walks, replica, index, op, budget).await else {
            // Not applied in time. By the logs proof the index may name entries that
            // will never commit (the uncommitted tail of a deposed leader the peer is,
            // still cut off from the others): the next parts ask another voter, or
            // take the read index path, instead of waiting here each time.
            self.confirm_backoff
                .lock()
                .insert(peer, Instant::now() + CONFIRM_BACKOFF);
            return None;
        };
        self.confirmed.fetch_add(1, Ordering::Relaxed);
        Some(answer)
    }

    /// Where one confirmation round for every group of a run of searches would go,
    /// taken before their parts start: each covered part then reads by that round
    /// (`confirmed_part`) instead of joining a round of its own. A search over three
    /// groups then costs one call instead of two, and its parts cannot miss a round they
    /// would have shared (each part registering on its own raced the round's task,
    /// session 27). `None` when fewer than two of the groups could be confirmed here:
    /// the parts take their own rounds as before.
    pub fn search_fence_plan(&self, groups: &[GroupId]) -> Option<FencePlan> {
        if !(self.local.follower_reads && self.local.read_mode == ReadMode::Votes) {
            return None;
        }
        let me = self.local.host.id();
        let mut views = Vec::with_capacity(groups.len());
        let mut replicas = Vec::with_capacity(groups.len());
        for &group in groups {
            let Some(replica) = self.local.host.group(group) else {
                continue;
            };
            let Some((voters, leader)) = replica.voting() else {
                continue;
            };
            if voters.len() > 3 || !voters.contains(&me) {
                continue;
            }
            views.push((group, voters, leader));
            replicas.push(replica);
        }
        if views.len() < 2 {
            return None;
        }
        let mut candidates: Vec<NodeId> = views
            .iter()
            .flat_map(|(_, voters, _)| voters.iter().copied())
            .filter(|&p| p != me)
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates.retain(|&p| !self.confirm_backing_off(p));
        let peer = search_peer(me, &views, &candidates)?;
        let addr = views
            .iter()
            .zip(&replicas)
            .filter(|((_, voters, _), _)| voters.contains(&peer))
            .find_map(|(_, replica)| replica.member_addr(peer))?;
        let covered = views
            .iter()
            .filter(|(_, voters, _)| voters.contains(&peer))
            .map(|(group, _, _)| *group)
            .collect();
        Some(FencePlan {
            peer,
            addr,
            covered,
        })
    }

    /// The round `plan` names, sent when the first covered part asks for it (so after
    /// every read of the run began). `None` when it failed or took longer than a
    /// quarter of `budget`: the parts then take their own rounds.
    pub async fn search_fence(&self, plan: FencePlan, budget: Duration) -> Option<SearchFence> {
        let FencePlan {
            peer,
            addr,
            covered,
        } = plan;
        let wait = CONFIRM_WAIT.min(budget / 4);
        match tokio::time::timeout(wait, self.fence(covered, peer, &addr)).await {
            Ok(Some(Ok(fence))) => Some(SearchFence { peer, fence }),
            // A round cut short by a search's own short TIMEOUT says nothing of the
            // peer: only a failure, or the full wait passing, backs it off.
            Err(_) if wait < CONFIRM_WAIT => None,
            Ok(Some(Err(_)) | None) | Err(_) => {
                self.confirm_backoff
                    .lock()
                    .insert(peer, Instant::now() + CONFIRM_BACKOFF);
                None
            }
        }
    }

    /// Whether `peer`'s last confirmation round failed within [`CONFIRM_BACKOFF`].
    fn confirm_backing_off(&self, peer: NodeId) -> bool {
        backing_off_until(&self.confirm_backoff, peer)
    }

    /// A confirmation round with `peer` sent after this call began, carrying `groups`
    /// and the groups of every other caller waiting for one (`crate::rounds`). This
    /// node's views are taken as the round is sent.
    async fn fence(
        &self,
        groups: Vec<GroupId>,
        peer: NodeId,
        addr: &NodeAddr,
    ) -> Option<Result<Arc<Fence>, ShardError>> {
        let link = match self.vote_link(&addr.raft) {
            Ok(link) => link,
            Err(message) => {
                let group = groups.first().copied().unwrap_or(0);
                return Some(Err(unreachable(group, peer, message, true)));
            }
        };
        let local = self.local.clone();
        // Built for every caller, run only by the one that starts a round: it holds
        // what it needs by reference count, not by copy.
        let fetch = move |asked: Vec<Vec<GroupId>>| {
            let link = link.clone();
            let local = local.clone();
            async move {
                let mut groups: Vec<GroupId> = asked.into_iter().flatten().collect();
                groups.sort_unstable();
                groups.dedup();
                let payload = encode(&groups)?;
                // This node's views as the round is sent, the peer's when it answers:
                // each only has to be taken after every read the round serves began
                // (they all did before this round started), in either order
                // (docs/consistency.md).
                let own = local.vote_views(&groups);
                // Bounded: the callers give up after CONFIRM_WAIT, and a round that
                // hung on a partitioned peer would hold the slot for every later one.
                let reply =
                    tokio::time::timeout(CONFIRM_WAIT, link.round(payload, CONFIRM_WAIT)).await;
                let reply = match reply {
                    Ok(Ok(reply)) => reply,
                    Ok(Err(status)) => return Err(failed_call(0, peer, &status)),
                    Err(_) => return Err(no_answer(0, peer, CONFIRM_WAIT)),
                };
                let theirs = VotesAnswer::decode(&reply)?;
                Ok(Arc::new(Fence {
                    own: own
                        .into_iter()
                        .filter_map(|(g, view)| view.map(|view| (g, view)))
                        .collect(),
                    peer: theirs.into_iter().collect(),
                }))
            }
        };
        self.fences
            .get((peer, addr.raft.clone()), groups, fetch)
            .await
    }

    /// The link this router's confirmation rounds to the node at `addr` go on.
    fn vote_link(&self, addr: &str) -> Result<Arc<VoteLink>, String> {
        if let Some(link) = self.vote_links.lock().get(addr) {
            return Ok(link.clone());
        }
        let link = Arc::new(VoteLink::new(self.channel(addr)?));
        Ok(self
            .vote_links
            .lock()
            .entry(addr.to_owned())
            .or_insert(link)
            .clone())
    }

    /// Whether this router recently found its replica of `group` unable to answer
    /// follower reads (behind, or the leader too old): its parts go to the leader for
    /// a while instead of paying for a read index and a wait each time.
    fn backing_off(&self, group: GroupId) -> bool {
        backing_off_until(&self.follower_backoff, group)
    }

    /// [`Self::backing_off`] for a replica that does not lead: a leader's own part
    /// never goes elsewhere.
    fn follower_backing_off(&self, group: GroupId) -> bool {
        self.backing_off(group) && !self.local.host.group(group).is_some_and(|g| g.is_leader())
    }

    fn back_off(&self, group: GroupId) {
        self.follower_backoff
            .lock()
            .insert(group, Instant::now() + FOLLOWER_BACKOFF);
    }

    /// `node`'s read index for `group`, from a round shared with the other reads
    /// waiting for one (`crate::read_index`).
    async fn read_index(
        &self,
        group: GroupId,
        node: NodeId,
        addr: &NodeAddr,
    ) -> Result<ReadIndex, ShardError> {
        let channel = self
            .channel(&addr.raft)
            .map_err(|message| unreachable(group, node, message, true))?;
        let ttl = self.local.quorum_timeout + CALL_SLACK;
        let fetch = move |_: Vec<()>| {
            let mut client = ShardClient::new(channel.clone());
            async move {
                let mut request = tonic::Request::new(ShardCall {
                    group,
                    payload: Vec::new(),
                });
                request.set_timeout(ttl);
                match tokio::time::timeout(ttl, client.read_index(request)).await {
                    Ok(Ok(reply)) => answer::<u64>(&reply.into_inner().payload).map(ReadIndex::At),
                    Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                        Ok(ReadIndex::Unsupported)
                    }
                    Ok(Err(status)) => Err(failed_call(group, node, &status)),
                    Err(_) => Err(no_answer(group, node, ttl)),
                }
            }
        };
        self.read_indexes
            .get((group, node, addr.raft.clone()), (), fetch)
            .await
            .unwrap_or_else(|| {
                Err(unreachable(
                    group,
                    node,
                    "the read index round was dropped".into(),
                    false,
                ))
            })
    }

    /// Parts this router answered from its own replicas, and the read index rounds it
    /// sent for them (a part that then went to its leader counts in the rounds only).
    pub fn follower_read_counts(&self) -> (u64, u64) {
        (
            self.answered_here.load(Ordering::Relaxed),
            self.read_indexes.rounds(),
        )
    }

    /// Reads and search or aggregate parts of `READONLY` connections this router
    /// answered from its own replicas, unconfirmed (stale reads).
    pub fn stale_read_count(&self) -> u64 {
        self.stale.load(Ordering::Relaxed)
    }

    /// Parts this router answered from its own replicas after a confirmation round,
    /// and the rounds it sent (`crate::confirm`).
    pub fn confirmed_read_counts(&self) -> (u64, u64) {
        (self.confirmed.load(Ordering::Relaxed), self.fences.rounds())
    }

    /// Streams this router opened for its confirmation rounds (`crate::vote_link`):
    /// one per peer while nothing breaks.
    pub fn confirm_streams(&self) -> u64 {
        self.vote_links.lock().values().map(|l| l.opened()).sum()
    }

    /// Of the confirmed parts, those confirmed by their search's own round.
    pub fn confirmed_by_search(&self) -> u64 {
        self.confirmed_by_search.load(Ordering::Relaxed)
    }

    /// Peers left alone by confirmed reads, and groups read at their leader instead of
    /// here, at this moment: while any is, a frozen leader can fail searches its
    /// group's other replica could confirm (docs/consistency.md).
    pub fn read_backoffs(&self) -> usize {
        let now = Instant::now();
        let peers = self
            .confirm_backoff
            .lock()
            .values()
            .filter(|&&t| now < t)
            .count();
        let groups = self
            .follower_backoff
            .lock()
            .values()
            .filter(|&&t| now < t)
            .count();
        peers + groups
    }

    async fn call_remote(
        &self,
        group: GroupId,
        node: NodeId,
        addr: &NodeAddr,
        op: &Op,
        budget: Duration,
    ) -> Result<Answer, ShardError> {
        let channel = self
            .channel(&addr.raft)
            .map_err(|message| unreachable(group, node, message, true))?;
        let mut client = ShardClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let payload = match op {
            Op::Write(r) => encode(r)?,
            Op::Read(r) => encode(r)?,
            Op::Search(r) => encode(r)?,
            Op::Aggregate(r) => encode(r)?,
        };
        // A read with a longer budget than the quorum timeout (a search's TIMEOUT) gets
        // it whole: cut earlier, it would be sent again and run again.
        let ttl = (self.local.quorum_timeout + CALL_SLACK).max(budget);
        let mut request = tonic::Request::new(ShardCall { group, payload });
        request.set_timeout(ttl);
        let sent = async {
            match op {
                Op::Write(_) => client.write(request).await,
                Op::Read(_) => client.read(request).await,
                Op::Search(_) => client.search(request).await,
                Op::Aggregate(_) => client.aggregate(request).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, sent).await {
            Ok(Ok(reply)) => reply.into_inner().payload,
            Ok(Err(status)) => return Err(failed_call(group, node, &status)),
            Err(_) => return Err(no_answer(group, node, ttl)),
        };
        match op {
            Op::Write(_) => answer::<Response>(&reply).map(Answer::Write),
            Op::Read(_) => answer::<ReadAnswer>(&reply).map(Answer::Read),
            Op::Search(_) => answer::<SearchResults>(&reply).map(Answer::Search),
            Op::Aggregate(_) => answer::<AggregatePart>(&reply).map(Answer::Aggregate),
        }
    }
}

/// Whether `key` is still backing off (its time in `until` is ahead); forgets a
/// time that has.
fn backing_off_until<K: std::hash::Hash + Eq>(until: &Mutex<HashMap<K, Instant>>, key: K) -> bool {
    let mut until = until.lock();
    match until.get(&key) {
        Some(&t) if Instant::now() < t => true,
        Some(_) => {
            until.remove(&key);
            false
        }
        None => false,
    }
}

/// Whether `replica` is still backfilling the index `op` reads. Backfill is each
/// replica's own background work, not a log entry, so a follower that applied every
/// write may still miss documents its leader has indexed, and FT.INFO reports the
/// leaders: a part on such a follower goes to the leader instead, so that a search
/// after FT.INFO said `ready` finds every document.
fn backfilling(replica: &Group, op: &Op) -> bool {
    let args = match op {
        Op::Search(call) => &call.args,
        Op::Aggregate(call) => &call.args,
        Op::Read(_) | Op::Write(_) => return false,
    };
    let Some(name) = args.first() else {
        return false;
    };
    let name = String::from_utf8_lossy(name);
    let state = replica.replica().read();
    state
        .engine
        .index(&name)
        .is_some_and(|index| index.state() == IndexState::Backfilling)
}

/// Answers a search or aggregate part on this node's replica once it has applied
/// `index` (the read's read index): `None` when it lags more than [`FOLLOWER_MAX_LAG`]
/// or does not get there within [`FOLLOWER_CATCH_UP`] (a quarter of the read's time if
/// less), so that the caller can send the part to the leader.
async fn answer_here(
    walks: &Turns,
    replica: &Group,
    index: u64,
    op: &Op,
    budget: Duration,
) -> Option<Result<Answer, ShardError>> {
    let catch_up = FOLLOWER_CATCH_UP.min(budget / 4);
    let near = index.saturating_sub(replica.applied_index()) <= FOLLOWER_MAX_LAG;
    if !(near && replica.wait_applied(index, catch_up).await) {
        return None;
    }
    let _turn = walks.take(arrived()).await;
    // Checked again under the lock the part reads under: the metrics waited on belong
    // to the Raft, the state to the replica, and a reopen of the group between the two
    // lookups could pair a new replica with old metrics.
    let state = replica.replica().read();
    let applied = state.applied().map_or(0, |l| l.index);
    match op {
        _ if applied < index => None,
        Op::Search(call) => Some(search_on(&state, replica.id(), call).map(Answer::Search)),
        Op::Aggregate(call) => {
            Some(aggregate_on(&state, replica.id(), call).map(Answer::Aggregate))
        }
        Op::Read(_) | Op::Write(_) => None,
    }
}

fn answer<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ShardError> {
    decode::<Result<T, ShardError>>(bytes)?
}

fn unreachable(group: GroupId, node: NodeId, message: String, never_sent: bool) -> ShardError {
    ShardError::Unreachable {
        group,
        node,
        message,
        never_sent,
    }
}

/// A call to `node` that failed in gRPC: surely not sent when the connection was
/// refused.
fn failed_call(group: GroupId, node: NodeId, status: &tonic::Status) -> ShardError {
    unreachable(
        group,
        node,
        status.message().to_owned(),
        connection_refused(status),
    )
}

/// A call to `node` that got no answer within `ttl`: it may have run.
fn no_answer(group: GroupId, node: NodeId, ttl: Duration) -> ShardError {
    unreachable(group, node, format!("no answer within {ttl:?}"), false)
}

/// Whether a failed call never left this node: its connection was refused (the peer
/// is down), so even a write may be retried elsewhere without being applied twice.
fn connection_refused(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = e.source();
    }
    false
}
