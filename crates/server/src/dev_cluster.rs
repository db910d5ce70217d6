//! `shoal dev`'s embedded cluster: several nodes in one process, each with its own
//! RocksDB under the data directory and its own gRPC port on loopback, replicating every
//! shard group over real sockets. One RESP listener hands connections to the first
//! `--routers` nodes in turn (node 1's router alone by default).
//!
//! The nodes' gRPC ports are picked free on the first start and kept in
//! `<data-dir>/dev-cluster.toml`: the groups' Raft memberships hold those addresses, so a
//! restart must bind the same ones. They are picked below the kernel's ephemeral range:
//! a port from there could be in use as some connection's source port when a restart
//! wants it back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use shoal_cluster::turns::Turns;
use shoal_raft::NodeId;
use tokio::net::TcpListener;

use crate::cluster_node::{self, Started};
use crate::node_config::{NodeArgs, MAX_BULK_LEN};

/// The layout a data directory was first started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Layout {
    groups: u64,
    nodes: Vec<NodeSpot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct NodeSpot {
    id: NodeId,
    zone: String,
    grpc: SocketAddr,
}

const LAYOUT_FILE: &str = "dev-cluster.toml";
/// How long the groups may take to elect their first leaders.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// What the embedded cluster is asked to be.
#[derive(Debug, Clone)]
pub struct Shape {
    pub nodes: usize,
    pub groups: u64,
    pub replication_factor: usize,
    pub zones: Vec<String>,
    pub resp: SocketAddr,
    pub data_dir: PathBuf,
    pub max_bulk_len: usize,
    pub busy_poll_us: u64,
    /// `shoal node --read-mode` and `--follower-reads` for every node.
    pub read_mode: Option<String>,
    pub follower_reads: Option<bool>,
    /// Mutual TLS between the embedded nodes, when asked for.
    pub tls: Option<crate::tls::Tls>,
}

/// The running nodes.
pub struct DevCluster {
    pub nodes: Vec<Started>,
}

fn read_layout(dir: &Path) -> Result<Option<Layout>> {
    let path = dir.join(LAYOUT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Binds every node's gRPC listener: the kept addresses, or free ports on loopback.
async fn bind(shape: &Shape) -> Result<(Layout, Vec<TcpListener>)> {
    if let Some(layout) = read_layout(&shape.data_dir)? {
        if layout.nodes.len() != shape.nodes || layout.groups != shape.groups {
            bail!(
                "{} holds a cluster of {} nodes and {} groups; start it with --nodes {} --groups {}, or use another --data-dir",
                shape.data_dir.display(),
                layout.nodes.len(),
                layout.groups,
                layout.nodes.len(),
                layout.groups
            );
        }
        let mut listeners = Vec::new();
        for spot in &layout.nodes {
            listeners.push(
                TcpListener::bind(spot.grpc)
                    .await
                    .with_context(|| format!("binding node {}'s gRPC {}", spot.id, spot.grpc))?,
            );
        }
        return Ok((layout, listeners));
    }
    let mut nodes = Vec::new();
    let mut listeners = Vec::new();
    for i in 0..shape.nodes {
        let listener = bind_below_ephemeral().await?;
        nodes.push(NodeSpot {
            id: i as NodeId + 1,
            zone: shape.zones[i % shape.zones.len()].clone(),
            grpc: listener.local_addr()?,
        });
        listeners.push(listener);
    }
    let layout = Layout {
        groups: shape.groups,
        nodes,
    };
    std::fs::create_dir_all(&shape.data_dir)
        .with_context(|| format!("creating {}", shape.data_dir.display()))?;
    let text = toml::to_string(&layout).context("writing the layout")?;
    crate::persist::write_atomically(&shape.data_dir.join(LAYOUT_FILE), text.as_bytes())?;
    Ok((layout, listeners))
}

/// The lowest port the kernel hands out as a source port.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// A listener on a free loopback port under the ephemeral range.
async fn bind_below_ephemeral() -> Result<TcpListener> {
    use rand::Rng;
    let high = ephemeral_low();
    let low = high.saturating_sub(20_000).max(1024);
    if low >= high {
        return TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a gRPC port");
    }
    for _ in 0..1000 {
        let port = rand::thread_rng().gen_range(low..high);
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await {
            return Ok(listener);
        }
    }
    bail!("no free loopback port in {low}..{high}")
}

impl DevCluster {
    /// Starts the nodes and waits until every group has elected a leader.
    pub async fn start(shape: &Shape) -> Result<DevCluster> {
        if shape.nodes == 0 || shape.zones.is_empty() {
            bail!("an embedded cluster needs at least one node and one zone");
        }
        let (layout, listeners) = bind(shape).await?;
        let members: Vec<String> = layout
            .nodes
            .iter()
            .map(|n| format!("{},{},{},{}", n.id, n.zone, n.grpc, shape.resp))
            .collect();
        let mut nodes = Vec::new();
        // One queue for the process: its searches share the same cores.
        let walks = Turns::default();
        for (spot, listener) in layout.nodes.iter().zip(listeners) {
            let config = NodeArgs {
                id: Some(spot.id),
                zone: Some(spot.zone.clone()),
                resp: Some(shape.resp),
                grpc: Some(spot.grpc),
                data_dir: Some(shape.data_dir.join(format!("node-{}", spot.id))),
                groups: Some(shape.groups),
                replication_factor: Some(shape.replication_factor),
                members: members.clone(),
                max_bulk_len: Some(shape.max_bulk_len.min(MAX_BULK_LEN)),
                busy_poll_us: Some(shape.busy_poll_us),
                read_mode: shape.read_mode.clone(),
                follower_reads: shape.follower_reads,
                ..NodeArgs::default()
            }
            .resolve()?;
            nodes.push(
                cluster_node::start(&config, listener, shape.tls.as_ref(), walks.clone()).await?,
            );
        }
        let cluster = DevCluster { nodes };
        let deadline = Instant::now() + READY_WITHIN;
        while !cluster.nodes.iter().all(Started::groups_led) {
            if Instant::now() > deadline {
                bail!("the shard groups elected no leaders within {READY_WITHIN:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(cluster)
    }

    /// Stops every node.
    pub async fn stop(self) -> Result<()> {
        let stops = self.nodes.into_iter().map(Started::stop);
        for result in futures::future::join_all(stops).await {
            result?;
        }
        Ok(())
    }
}
