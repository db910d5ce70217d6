//! One node of a replicated cluster, started and stopped: its shard groups over its own
//! RocksDB, its gRPC server (Raft transport and shard service), and the router in front
//! of every group. `shoal node` runs one per process; `shoal dev` runs several in one.

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use shoal_cluster::META;
use shoal_raft::{Host, NodeAddr, NodeId};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::node::{self, Node, Store};
use crate::node_config::NodeConfig;

/// How long a stopping node lets in-flight Raft calls finish.
const GRPC_DRAIN: Duration = Duration::from_secs(1);
/// How often a node reports itself to the cluster map.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How often the meta leader checks the groups' indexes against the map.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// A started node.
pub struct Started {
    pub node: Arc<Node>,
    pub host: Arc<Host>,
    server: JoinHandle<()>,
    stop_grpc: tokio::sync::oneshot::Sender<()>,
}

/// Opens the node's groups, serves gRPC on `grpc`, and bootstraps new groups from the
/// configured members (see [`bootstrap`]).
pub async fn start(config: &NodeConfig, grpc: TcpListener) -> Result<Started> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let raft_config = shoal_raft::raft_config(
        config.heartbeat_ms,
        config.election_timeout_ms,
        config.snapshot_after_logs,
    );
    let host = Arc::new(
        Host::open(config.id, &config.data_dir, raft_config).context("opening the Raft log")?,
    );
    for group in 0..config.groups {
        host.open_group(group)
            .await
            .with_context(|| format!("opening group {group}"))?;
    }
    let meta_voters = shoal_cluster::meta::voters(&config.members);
    if meta_voters.contains_key(&config.id) {
        host.open_group(META)
            .await
            .context("opening the meta group")?;
    }
    let local = shoal_cluster::Local {
        host: host.clone(),
        read_mode: config.read_mode,
        quorum_timeout: config.quorum_timeout,
    };
    let (stop_grpc, grpc_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let raft = host.service().into_server();
        let shard = shoal_cluster::ShardService::new(local.clone()).into_server();
        tokio::spawn(async move {
            let stop = async {
                let _ = grpc_stopped.await;
            };
            // No Nagle: a heartbeat's small reply must not wait for the ACK of the
            // last one (that stalled every ReadIndex read by a delayed-ACK period).
            let incoming =
                tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
            let served = tonic::transport::Server::builder()
                .add_service(raft)
                .add_service(shard)
                .serve_with_incoming_shutdown(incoming, stop)
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "gRPC server stopped");
            }
        })
    };
    bootstrap(config, &host)?;
    bootstrap_meta(config, &host, &meta_voters)?;
    let group = host.group(0).context("group 0 is not open")?;
    // Every node hosts every group (static placement): the ring covers groups 0..N,
    // and a group's members are the configured voters.
    let ring = shoal_cluster::Ring::new(0..config.groups);
    let shards = shoal_cluster::Shards::new(
        local,
        config
            .members
            .iter()
            .map(|(id, addr)| (*id, addr.clone()))
            .collect(),
    )
    .with_group_members(
        META,
        meta_voters
            .iter()
            .map(|(id, addr)| (*id, addr.clone()))
            .collect(),
    );
    let node = Node::replicated(
        node::Replicated {
            host: host.clone(),
            group,
            router: shoal_cluster::Router::new(ring, shards),
            quorum_timeout: config.quorum_timeout,
        },
        config.resp.port(),
        config.members.contains_key(&config.id),
    );
    node.spawn_background(Duration::from_secs(60));
    if let Some(addr) = config.members.get(&config.id) {
        spawn_map_upkeep(node.clone(), config.id, addr.clone());
    }
    Ok(Started {
        node,
        host,
        server,
        stop_grpc,
    })
}

/// Makes the configured members the first membership of this node's new groups.
///
/// A group initialized by one member first elects that member, so member number p (in
/// id order) initializes the groups g with g mod members = p: the leaders start spread
/// over the nodes. It does so once a majority of the members accept connections (a
/// candidate whose peers are not up yet would wait a whole election timeout before it
/// asked again). It initializes the others too, after a few election timeouts, in case
/// their own member never came up; by then a group that has a leader reached this node
/// and the call is a no-op (openraft allows every member to initialize with the same
/// membership).
fn bootstrap(config: &NodeConfig, host: &Arc<Host>) -> Result<()> {
    let Some(position) = config.members.keys().position(|id| *id == config.id) else {
        return Ok(());
    };
    let count = config.members.len() as u64;
    for group in 0..config.groups {
        let handle = host
            .group(group)
            .with_context(|| format!("group {group} is not open"))?;
        let first = group % count == position as u64;
        spawn_initialize(config, handle, config.members.clone(), first);
    }
    Ok(())
}

/// Bootstraps the meta group on its voters as [`bootstrap`] does a shard group, the
/// first voter being the one to start it.
fn bootstrap_meta(
    config: &NodeConfig,
    host: &Arc<Host>,
    voters: &BTreeMap<NodeId, NodeAddr>,
) -> Result<()> {
    let Some(position) = voters.keys().position(|id| *id == config.id) else {
        return Ok(());
    };
    let handle = host.group(META).context("the meta group is not open")?;
    spawn_initialize(config, handle, voters.clone(), position == 0);
    Ok(())
}

/// Initializes `group` with `members`: at once when it is this node's to start (once a
/// majority is reachable, or after three election timeouts at most), otherwise after
/// three election timeouts as a fallback.
fn spawn_initialize(
    config: &NodeConfig,
    group: shoal_raft::Group,
    members: BTreeMap<NodeId, NodeAddr>,
    first: bool,
) {
    let me = config.id;
    let fallback = Duration::from_millis(config.election_timeout_ms.saturating_mul(3));
    tokio::spawn(async move {
        if first {
            quorum_reachable(&members, me, fallback).await;
        } else {
            tokio::time::sleep(fallback).await;
        }
        if let Err(e) = group.initialize(members).await {
            tracing::warn!(group = group.id(), error = %e, "bootstrapping a group");
        }
    });
}

/// Waits until a majority of `members` (this node counted) accept TCP connections on
/// their Raft address, or `limit` has passed.
async fn quorum_reachable(members: &BTreeMap<NodeId, NodeAddr>, me: NodeId, limit: Duration) {
    const PROBE: Duration = Duration::from_millis(200);
    let deadline = tokio::time::Instant::now() + limit;
    let need = members.len() / 2 + 1;
    loop {
        let mut up = usize::from(members.contains_key(&me));
        for (id, addr) in members {
            if *id == me || up >= need {
                continue;
            }
            let connect = tokio::net::TcpStream::connect(addr.raft.as_str());
            if matches!(tokio::time::timeout(PROBE, connect).await, Ok(Ok(_))) {
                up += 1;
            }
        }
        if up >= need || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Keeps this node's part of the cluster map: it reports itself every
/// [`REPORT_EVERY`] (its liveness) and reads the map back; and while it leads the meta
/// group it creates the map's indexes on any shard group that misses one
/// ([`shoal_cluster::Router::reconcile_indexes`]), in a task of its own, since a
/// leaderless group can hold that up for a quorum timeout and the reports must go on.
fn spawn_map_upkeep(node: Arc<Node>, id: NodeId, addr: NodeAddr) {
    let reporter = node.clone();
    tokio::spawn(async move {
        let Store::Replicated(r) = &reporter.store else {
            return;
        };
        let mut interval = tokio::time::interval(REPORT_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(e) = r.router.report_node(id, &addr, node::now_ms()).await {
                tracing::debug!(error = %e, "could not report to the cluster map");
            }
            match r.router.refresh_map(node::now_ms(), false).await {
                Ok(()) => r.router.with_cached_map(|m| reporter.access.sync(&m.users)),
                Err(e) => tracing::debug!(error = %e, "could not read the cluster map"),
            }
        }
    });
    tokio::spawn(async move {
        let Store::Replicated(r) = &node.store else {
            return;
        };
        let mut interval = tokio::time::interval(RECONCILE_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if !r.host.group(META).is_some_and(|g| g.is_leader()) {
                continue;
            }
            if let Err(e) = r.router.reconcile_indexes(node::now_ms()).await {
                tracing::debug!(error = %e, "index reconciliation did not finish");
            }
        }
    });
}

impl Started {
    /// Whether every group has a leader this node knows of.
    pub fn groups_led(&self) -> bool {
        self.host
            .group_ids()
            .into_iter()
            .all(|g| self.host.group(g).is_some_and(|h| h.leader().is_some()))
    }

    /// Stops the groups, then the gRPC server.
    pub async fn stop(self) -> Result<()> {
        self.host.shutdown().await.context("stopping groups")?;
        let _ = self.stop_grpc.send(());
        // tonic's graceful stop waits for every peer to close its connection, and live
        // peers keep theirs open: give in-flight calls a moment, then stop.
        let abort = self.server.abort_handle();
        if tokio::time::timeout(GRPC_DRAIN, self.server).await.is_err() {
            abort.abort();
        }
        Ok(())
    }
}
