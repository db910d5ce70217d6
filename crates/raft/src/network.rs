//! Raft traffic over gRPC (`proto/raft.proto`): the client side openraft calls for every
//! group of the node ([`Network`], through openraft-multi's per-group adapter) and the
//! one service that receives every group's messages ([`TransportService`]).
//!
//! One channel per peer node is shared by all groups, so a node with many groups holds
//! one HTTP/2 connection per peer. Each unary call has its own deadline; a peer that is
//! slow or gone costs only the calls addressed to it. [`Faults`] lets tests drop, delay
//! and partition traffic on the real transport.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft_multi::{GroupNetworkAdapter, GroupNetworkFactory, GroupRouter};
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal_proto::raft::raft_transport_client::RaftTransportClient;
use shoal_proto::raft::raft_transport_server::RaftTransport;
use shoal_proto::raft::{GroupReply, GroupRequest, SnapshotChunk};
use tokio::io::AsyncWriteExt;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::db::GroupId;
use crate::log_store::{decode, encode};
use crate::snapshot_file;
use crate::state_machine::StateMachine;
use crate::types::{Entry, NodeAddr, NodeId, Snapshot, SnapshotMeta, TypeConfig, Vote};
use openraft::entry::RaftEntry;

/// A Raft group as this node runs it.
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// The network factory of one group.
pub type GroupNetwork = GroupNetworkFactory<Network, GroupId>;

/// Largest gRPC message either side accepts: snapshot chunks and append batches of
/// vectors are far beyond tonic's 4 MiB default.
const MAX_MESSAGE: usize = 64 << 20;
/// Appends are cut so that one message stays well inside [`MAX_MESSAGE`].
const MAX_APPEND_BYTES: usize = MAX_MESSAGE / 2;

/// How many leading entries fit in `budget` bytes (at least one: a single entry is bounded
/// by the node's argument-size limit, far below the budget).
fn fitting_prefix(entries: &[Entry], budget: usize) -> usize {
    let mut used = 0usize;
    for (i, entry) in entries.iter().enumerate() {
        // An estimate from the payload: every argument plus a few bytes of framing.
        let size = 64
            + match &entry.payload {
                openraft::EntryPayload::Normal(r) => r
                    .commands
                    .iter()
                    .flatten()
                    .chain(r.guard.iter().map(|(k, _)| k))
                    .map(|a| a.len() + 10)
                    .sum::<usize>(),
                openraft::EntryPayload::Blank | openraft::EntryPayload::Membership(_) => 256,
            };
        used = used.saturating_add(size);
        if used > budget && i > 0 {
            return i;
        }
    }
    entries.len()
}

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A snapshot chunk that takes longer than this to go through means the peer is stuck.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(10);

/// Injected faults on the outgoing side of one node: what tests use to partition, delay
/// and lose messages on the real transport.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<Mutex<FaultState>>,
}

#[derive(Debug, Default)]
struct FaultState {
    blocked: HashSet<NodeId>,
    delays: HashMap<NodeId, Duration>,
    drop_per_mille: u64,
    rng: u64,
    /// Messages lost so far (kept across `heal`, so a test can see its faults fired).
    dropped: u64,
}

impl Faults {
    /// Cuts (or restores) every message from this node to `peer`.
    pub fn block(&self, peer: NodeId, blocked: bool) {
        let mut s = self.inner.lock();
        if blocked {
            s.blocked.insert(peer);
        } else {
            s.blocked.remove(&peer);
        }
    }

    /// Delays every message from this node to `peer` by `delay` (zero: no delay): a
    /// slow link, or a peer that is slow to answer.
    pub fn set_delay(&self, peer: NodeId, delay: Duration) {
        let mut s = self.inner.lock();
        if delay.is_zero() {
            s.delays.remove(&peer);
        } else {
            s.delays.insert(peer, delay);
        }
    }

    /// Loses `per_mille` of outgoing messages, chosen by a generator seeded with `seed`.
    pub fn set_drop(&self, per_mille: u64, seed: u64) {
        let mut s = self.inner.lock();
        s.drop_per_mille = per_mille.min(1000);
        s.rng = seed | 1;
    }

    /// Clears every fault.
    pub fn heal(&self) {
        let mut s = self.inner.lock();
        *s = FaultState {
            dropped: s.dropped,
            ..FaultState::default()
        };
    }

    /// How many messages `set_drop` has lost.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().dropped
    }

    async fn before_send(&self, target: NodeId) -> Result<(), RPCError<TypeConfig>> {
        let (blocked, delay, dropped) = {
            let mut s = self.inner.lock();
            let dropped = s.drop_per_mille > 0 && {
                // xorshift64: deterministic for a seed, which is all a test needs.
                s.rng ^= s.rng << 13;
                s.rng ^= s.rng >> 7;
                s.rng ^= s.rng << 17;
                s.rng % 1000 < s.drop_per_mille
            };
            s.dropped += u64::from(dropped);
            let delay = s.delays.get(&target).copied().unwrap_or_default();
            (s.blocked.contains(&target), delay, dropped)
        };
        if blocked {
            return Err(RPCError::Unreachable(Unreachable::from_string(format!(
                "partitioned from node {target}"
            ))));
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if dropped {
            return Err(RPCError::Network(NetworkError::from_string(
                "message dropped by fault injection",
            )));
        }
        Ok(())
    }
}

/// The client side of the transport for every group of a node.
#[derive(Debug, Clone, Default)]
pub struct Network {
    peers: Arc<Mutex<HashMap<NodeId, Peer>>>,
    faults: Faults,
    client: PeerClient,
}

/// Mutual TLS between nodes: what a node's gRPC server presents and requires, and
/// what its channels to other nodes present and check.
#[derive(Debug, Clone)]
pub struct PeerTls {
    pub server: ServerTlsConfig,
    pub client: ClientTlsConfig,
}

/// How a node's channels to other nodes are made: every node-to-node channel (Raft
/// traffic, routed commands) alike.
#[derive(Debug, Clone, Default)]
pub struct PeerClient {
    /// Mutual TLS, when the cluster runs it.
    pub tls: Option<ClientTlsConfig>,
    /// The local address connections leave from (a host with several addresses; the
    /// chaos tests tell nodes apart by it), else the system's choice.
    pub source_ip: Option<std::net::IpAddr>,
}

impl PeerClient {
    /// A lazily connecting channel's settings to another node's gRPC address.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .local_address(self.source_ip);
        match &self.tls {
            Some(tls) => endpoint.tls_config(tls.clone()),
            None => Ok(endpoint),
        }
    }
}

#[derive(Debug)]
struct Peer {
    addr: String,
    channel: Channel,
}

/// Which unary RPC to make.
#[derive(Debug, Clone, Copy)]
enum Call {
    Append,
    Vote,
    PreVote,
    TransferLeader,
}

fn network_err(e: impl std::fmt::Display) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string(e.to_string()))
}

fn status_err(status: &Status) -> RPCError<TypeConfig> {
    // Nothing listening, or the connection could not be made: back off at once. Any
    // other status (a deadline, a group not hosted there yet) is worth retrying soon.
    if status.code() == tonic::Code::Unavailable {
        RPCError::Unreachable(Unreachable::from_string(status.message().to_owned()))
    } else {
        network_err(status.message())
    }
}

impl Network {
    pub fn new() -> Self {
        Self::default()
    }

    /// Channels to peers are made with these settings.
    pub fn with_client(client: PeerClient) -> Self {
        Network {
            client,
            ..Self::default()
        }
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Records where `node` listens. The channel connects lazily, on first use.
    pub fn set_peer(&self, node: NodeId, addr: &str) {
        let mut peers = self.peers.lock();
        if peers.get(&node).is_some_and(|p| p.addr == addr) {
            return;
        }
        match self.client.endpoint(addr) {
            Ok(endpoint) => {
                peers.insert(
                    node,
                    Peer {
                        addr: addr.to_owned(),
                        channel: endpoint.connect_lazy(),
                    },
                );
            }
            Err(e) => tracing::warn!(node, addr, error = %e, "unusable peer address"),
        }
    }

    fn client(&self, target: NodeId) -> Result<RaftTransportClient<Channel>, RPCError<TypeConfig>> {
        let peers = self.peers.lock();
        let peer = peers.get(&target).ok_or_else(|| {
            RPCError::Unreachable(Unreachable::from_string(format!(
                "no address for node {target}"
            )))
        })?;
        Ok(RaftTransportClient::new(peer.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    async fn unary<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: NodeId,
        group: GroupId,
        call: Call,
        rpc: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        self.faults.before_send(target).await?;
        let payload = encode(rpc).map_err(network_err)?;
        let mut client = self.client(target)?;
        let mut request = Request::new(GroupRequest { group, payload });
        request.set_timeout(ttl);
        let response = tokio::time::timeout(ttl, async {
            match call {
                Call::Append => client.append(request).await,
                Call::Vote => client.vote(request).await,
                Call::PreVote => client.pre_vote(request).await,
                Call::TransferLeader => client.transfer_leader(request).await,
            }
        })
        .await
        .map_err(|_| network_err(format!("{call:?} to node {target} timed out after {ttl:?}")))?
        .map_err(|s| status_err(&s))?;
        let result: Result<Resp, String> =
            decode(&response.into_inner().payload, "raft reply").map_err(network_err)?;
        result.map_err(network_err)
    }
}

impl GroupRouter<TypeConfig, GroupId> for Network {
    type SnapshotData = File;

    async fn append_entries(
        &self,
        target: NodeId,
        group: GroupId,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // A batch of vectors needs more than a heartbeat's soft deadline.
        let ttl = option.soft_ttl().max(Duration::from_millis(500));
        let mut rpc = rpc;
        let fit = fitting_prefix(&rpc.entries, MAX_APPEND_BYTES);
        if fit == rpc.entries.len() {
            return self.unary(target, group, Call::Append, &rpc, ttl).await;
        }
        // Too big for one message (a lagging follower behind a pipelined ingest): send
        // the prefix that fits and report how far it got; openraft sends the rest next.
        rpc.entries.truncate(fit);
        let last = rpc.entries.last().map(|e| e.log_id());
        let response: AppendEntriesResponse<TypeConfig> =
            self.unary(target, group, Call::Append, &rpc, ttl).await?;
        Ok(match response {
            AppendEntriesResponse::Success => AppendEntriesResponse::PartialSuccess(last),
            other @ (AppendEntriesResponse::PartialSuccess(_)
            | AppendEntriesResponse::Conflict
            | AppendEntriesResponse::HigherVote(_)) => other,
        })
    }

    async fn vote(
        &self,
        target: NodeId,
        group: GroupId,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(target, group, Call::Vote, &rpc, option.soft_ttl())
            .await
    }

    async fn pre_vote(
        &self,
        target: NodeId,
        group: GroupId,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(target, group, Call::PreVote, &rpc, option.soft_ttl())
            .await
    }

    /// openraft sends this to every voter when the leader hands over
    /// ([`crate::Group::transfer_leader`]); without it a leader could never give up its
    /// place, so its own replica could never move.
    async fn transfer_leader(
        &self,
        target: NodeId,
        group: GroupId,
        rpc: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(target, group, Call::TransferLeader, &rpc, option.soft_ttl())
            .await
    }

    async fn full_snapshot(
        &self,
        target: NodeId,
        group: GroupId,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        self.faults.before_send(target).await?;
        let chunk_size = option
            .snapshot_chunk_size()
            .unwrap_or(1 << 20)
            .clamp(64 << 10, MAX_MESSAGE / 2);
        let first = SnapshotChunk {
            group,
            vote: encode(&vote).map_err(network_err)?,
            meta: encode(&snapshot.meta).map_err(network_err)?,
            data: Vec::new(),
        };
        // The file is read on a blocking thread, a few chunks ahead of the network.
        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(4);
        let mut file = snapshot.snapshot;
        let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            file.seek(SeekFrom::Start(0))?;
            if tx.blocking_send(first).is_err() {
                return Ok(());
            }
            loop {
                let mut data = vec![0u8; chunk_size];
                let n = read_full(&mut file, &mut data)?;
                if n == 0 {
                    return Ok(());
                }
                data.truncate(n);
                let chunk = SnapshotChunk {
                    group,
                    data,
                    ..SnapshotChunk::default()
                };
                if tx.blocking_send(chunk).is_err() {
                    return Ok(());
                }
            }
        });
        // Every chunk must get through within CHUNK_TIMEOUT, or the stream ends early
        // and the receiver rejects the incomplete snapshot.
        let chunks = futures::stream::unfold(rx, |mut rx| async move {
            match tokio::time::timeout(CHUNK_TIMEOUT, rx.recv()).await {
                Ok(Some(chunk)) => Some((chunk, rx)),
                Ok(None) | Err(_) => None,
            }
        });
        let mut client = self.client(target)?;
        let call = client.install_snapshot(chunks);
        let response = tokio::select! {
            r = call => r.map_err(|s| StreamingError::from(status_err(&s)))?,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        match reader.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StreamingError::from(network_err(e))),
            Err(e) => return Err(StreamingError::from(network_err(e))),
        }
        let result: Result<SnapshotResponse<TypeConfig>, String> =
            decode(&response.into_inner().payload, "snapshot reply")
                .map_err(|e| StreamingError::from(network_err(e)))?;
        result.map_err(|e| StreamingError::from(network_err(e)))
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

impl RaftNetworkFactory<TypeConfig> for GroupNetworkFactory<Network, GroupId> {
    type Network = GroupNetworkAdapter<TypeConfig, GroupId, Network>;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> Self::Network {
        self.factory.set_peer(target, &node.raft);
        GroupNetworkAdapter::new(self.factory.clone(), target, self.group_id)
    }
}

/// The groups a node hosts, by id: where the transport service delivers messages.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    inner: Arc<RwLock<HashMap<GroupId, Raft>>>,
}

impl Groups {
    pub fn insert(&self, group: GroupId, raft: Raft) {
        self.inner.write().insert(group, raft);
    }

    pub fn remove(&self, group: GroupId) -> Option<Raft> {
        self.inner.write().remove(&group)
    }

    pub fn get(&self, group: GroupId) -> Option<Raft> {
        self.inner.read().get(&group).cloned()
    }

    pub fn ids(&self) -> Vec<GroupId> {
        let mut ids: Vec<_> = self.inner.read().keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

/// The gRPC service that receives every group's Raft messages on a node.
#[derive(Debug, Clone)]
pub struct TransportService {
    groups: Groups,
    /// Where incoming snapshots are spooled before they are installed.
    spool: PathBuf,
    /// Where `Host::purge_group` leaves `<group>.erased` marks.
    marks: PathBuf,
}

/// The answer to a vote request for a group whose replica here was erased.
pub const ERASED: &str = "this replica was erased after the group removed it: it does not vote";

impl TransportService {
    pub fn new(groups: Groups, spool: PathBuf, marks: PathBuf) -> Self {
        TransportService {
            groups,
            spool,
            marks,
        }
    }

    /// Whether this node's replica of `group` must not vote: the group removed it and
    /// it erased what it held, and no leader has added it back since (it holds
    /// nothing). Its empty log would grant any candidate, and a replica that missed
    /// its own removal still campaigns with the membership it last knew: once the
    /// group moved on from enough of those members, their erased replicas would elect
    /// it, a second group under the same id. A replica added back holds data again
    /// (the leader's snapshot or log) before anyone asks it to vote.
    pub fn refuses_votes(&self, group: GroupId) -> bool {
        let Some(raft) = self.groups.get(group) else {
            return false;
        };
        let empty = {
            let m = raft.metrics();
            let m = m.borrow_watched();
            m.last_log_index.is_none() && m.snapshot.is_none()
        };
        empty && self.marks.join(format!("{group}.erased")).exists()
    }

    /// The service, wrapped for tonic, with message limits raised for snapshots.
    pub fn into_server(
        self,
    ) -> shoal_proto::raft::raft_transport_server::RaftTransportServer<TransportService> {
        shoal_proto::raft::raft_transport_server::RaftTransportServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// Decodes a unary request, hands it to its group's Raft, and encodes the outcome
    /// (a Raft error travels inside the reply, not as a gRPC status).
    async fn dispatch<Req, Resp, E, F, Fut>(
        &self,
        request: Request<GroupRequest>,
        what: &'static str,
        call: F,
    ) -> Result<Response<GroupReply>, Status>
    where
        Req: DeserializeOwned,
        Resp: Serialize,
        E: std::fmt::Display,
        F: FnOnce(Raft, Req) -> Fut,
        Fut: std::future::Future<Output = Result<Resp, E>>,
    {
        let req = request.into_inner();
        let raft = self.raft(req.group)?;
        let rpc: Req = decode(&req.payload, what).map_err(bad_request)?;
        let result = call(raft, rpc).await.map_err(|e| e.to_string());
        reply(&result)
    }

    fn raft(&self, group: GroupId) -> Result<Raft, Status> {
        self.groups
            .get(group)
            .ok_or_else(|| Status::not_found(format!("group {group} is not hosted here")))
    }
}

fn reply<T: Serialize>(result: &Result<T, String>) -> Result<Response<GroupReply>, Status> {
    let payload = encode(result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(GroupReply { payload }))
}

fn bad_request(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

#[tonic::async_trait]
impl RaftTransport for TransportService {
    async fn append(&self, request: Request<GroupRequest>) -> Result<Response<GroupReply>, Status> {
        self.dispatch(request, "append request", |raft, rpc| async move {
            raft.append_entries(rpc).await
        })
        .await
    }

    async fn vote(&self, request: Request<GroupRequest>) -> Result<Response<GroupReply>, Status> {
        if self.refuses_votes(request.get_ref().group) {
            return reply::<VoteResponse<TypeConfig>>(&Err(ERASED.to_owned()));
        }
        self.dispatch(request, "vote request", |raft, rpc| async move {
            raft.vote(rpc).await
        })
        .await
    }

    async fn pre_vote(
        &self,
        request: Request<GroupRequest>,
    ) -> Result<Response<GroupReply>, Status> {
        if self.refuses_votes(request.get_ref().group) {
            return reply::<VoteResponse<TypeConfig>>(&Err(ERASED.to_owned()));
        }
        self.dispatch(request, "pre-vote request", |raft, rpc| async move {
            raft.pre_vote(rpc).await
        })
        .await
    }

    /// An erased replica holds no log, so it can be neither the next leader nor
    /// anyone's voter: it has nothing to say to a hand-over either.
    async fn transfer_leader(
        &self,
        request: Request<GroupRequest>,
    ) -> Result<Response<GroupReply>, Status> {
        if self.refuses_votes(request.get_ref().group) {
            return reply::<TransferLeaderResponse<TypeConfig>>(&Err(ERASED.to_owned()));
        }
        self.dispatch(request, "transfer-leader request", |raft, rpc| async move {
            raft.handle_transfer_leader(rpc).await
        })
        .await
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<GroupReply>, Status> {
        let mut chunks = request.into_inner();
        let first = chunks
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let raft = self.raft(first.group)?;
        let vote: Vote = decode(&first.vote, "snapshot vote").map_err(bad_request)?;
        let meta: SnapshotMeta = decode(&first.meta, "snapshot metadata").map_err(bad_request)?;
        std::fs::create_dir_all(&self.spool).map_err(|e| Status::internal(e.to_string()))?;
        let spooled =
            tempfile::tempfile_in(&self.spool).map_err(|e| Status::internal(e.to_string()))?;
        let mut file = tokio::fs::File::from_std(spooled);
        file.write_all(&first.data)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        while let Some(chunk) = chunks.message().await? {
            if chunk.group != first.group {
                return Err(Status::invalid_argument(
                    "snapshot chunks of two groups mixed",
                ));
            }
            file.write_all(&chunk.data)
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        file.flush()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut file = file.into_std().await;
        // Checked here, not in the state machine: a state machine that fails to install
        // stops its Raft group, while a refused transfer is simply sent again.
        let (carried, file) = tokio::task::spawn_blocking(move || {
            snapshot_file::verify(&mut file).map(|m| (m, file))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::data_loss(e.to_string()))?;
        if carried != meta {
            return Err(Status::invalid_argument(
                "snapshot metadata differs from the file's own",
            ));
        }
        // openraft asserts (panics) on a snapshot newer than the vote that sends it; a
        // message that claims one is refused here instead of stopping the group.
        if meta
            .last_log_id
            .is_some_and(|l| l.leader_id > vote.leader_id)
        {
            return Err(Status::invalid_argument(
                "snapshot from a term later than its sender's vote",
            ));
        }
        let result = raft
            .install_full_snapshot(
                vote,
                Snapshot {
                    meta,
                    snapshot: file,
                },
            )
            .await
            .map_err(|e| e.to_string());
        reply(&result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::blank_ent;

    fn big(index: u64, bytes: usize) -> Entry {
        let mut e = blank_ent::<TypeConfig>(1, 1, index);
        e.payload = openraft::EntryPayload::Normal(crate::types::Request {
            now_ms: 0,
            commands: vec![vec![b"SET".to_vec(), b"k".to_vec(), vec![0; bytes]]],
            resp3: false,
            guard: Vec::new(),
        });
        e
    }

    #[test]
    fn appends_are_cut_to_the_budget_but_never_below_one_entry() {
        let entries: Vec<Entry> = (1..=10).map(|i| big(i, 1000)).collect();
        assert_eq!(fitting_prefix(&entries, 1_000_000), 10, "all fit");
        assert_eq!(fitting_prefix(&entries, 3_500), 3, "three of ~1.1 KB each");
        assert_eq!(fitting_prefix(&entries[..1], 10), 1, "one always goes");
        assert_eq!(fitting_prefix(&[], 10), 0);
    }
}
