//! One node of a replicated cluster, started and stopped: its shard groups over its own
//! RocksDB, its gRPC server (Raft transport and shard service), and the router in front
//! of every group. `shoal node` runs one per process; `shoal dev` runs several in one.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use shoal_raft::Host;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::node::{self, Node};
use crate::node_config::NodeConfig;

/// How long a stopping node lets in-flight Raft calls finish.
const GRPC_DRAIN: Duration = Duration::from_secs(1);

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
    bootstrap(config, &host).await?;
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
    );
    let node = Node::replicated(
        node::Replicated {
            host: host.clone(),
            group,
            router: shoal_cluster::Router::new(ring, shards),
            quorum_timeout: config.quorum_timeout,
        },
        config.resp.port(),
    );
    node.spawn_background(Duration::from_secs(60));
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
/// id order) initializes the groups g with g mod members = p at once: the leaders
/// start spread over the nodes. It initializes the others too, after a few election
/// timeouts, in case their own member never came up; by then a group that has a
/// leader reached this node and the call is a no-op (openraft allows every member to
/// initialize with the same membership).
async fn bootstrap(config: &NodeConfig, host: &Arc<Host>) -> Result<()> {
    let Some(position) = config.members.keys().position(|id| *id == config.id) else {
        return Ok(());
    };
    let count = config.members.len() as u64;
    let fallback = Duration::from_millis(config.election_timeout_ms.saturating_mul(3));
    for group in 0..config.groups {
        let handle = host
            .group(group)
            .with_context(|| format!("group {group} is not open"))?;
        let members = config.members.clone();
        if group % count == position as u64 {
            handle
                .initialize(members)
                .await
                .with_context(|| format!("bootstrapping group {group}"))?;
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(fallback).await;
                if let Err(e) = handle.initialize(members).await {
                    tracing::warn!(group, error = %e, "bootstrapping a group whose own member is late");
                }
            });
        }
    }
    Ok(())
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
