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

/// Opens the node's groups, serves gRPC on `grpc`, and — when `bootstrap` — makes
/// the configured members the first membership of every group it is asked to.
/// `bootstrap` lists the groups this node initializes (a group initialized by one node
/// first elects that node, which is how `shoal dev` spreads its leaders).
pub async fn start(config: &NodeConfig, grpc: TcpListener, bootstrap: &[u64]) -> Result<Started> {
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
    if !config.members.is_empty() {
        for &group in bootstrap {
            let handle = host
                .group(group)
                .with_context(|| format!("group {group} is not open"))?;
            handle
                .initialize(config.members.clone())
                .await
                .with_context(|| format!("bootstrapping group {group}"))?;
        }
    }
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
