//! A real cluster of `shoal node` processes on loopback, and the faults done to it:
//! SIGKILL, SIGSTOP/SIGCONT, restart, and partitions (through the proxies of
//! `proxy`, in front of every node's peer port). Each node gets free ports, its own
//! data directory and log file; zones are `a`, `b`, `c` in turn.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::proxy::{self, Proxies};

pub const ZONES: [&str; 3] = ["a", "b", "c"];

/// How the cluster is started.
#[derive(Debug, Clone)]
pub struct Shape {
    pub shoal: PathBuf,
    pub nodes_per_zone: usize,
    pub groups: u64,
    pub election_timeout_ms: u64,
    pub heartbeat_ms: u64,
    /// How long a write waits for a quorum (the nodes' default is what users run).
    pub quorum_timeout_ms: u64,
    /// The last this many nodes are not started with the others: [`Cluster::join`]
    /// starts them later with `--join`, and the group leaders move replicas onto them.
    pub joining: usize,
    /// Whether the run adds a shard group (`RESHARD ADD-GROUP`) while the faults go
    /// on; the nodes then pause [`RESHARD_PACE_MS`] after each reshard step, so that
    /// the reshard spans the faults instead of finishing before the first.
    pub reshard: bool,
}

/// `--reshard-pace-ms` of a resharding run's nodes.
pub const RESHARD_PACE_MS: u64 = 1_500;

#[derive(Debug)]
pub struct Node {
    pub id: u64,
    pub zone: &'static str,
    pub resp: u16,
    /// Where the node listens for its peers; they reach it through its proxy.
    pub grpc: u16,
    /// Started with `--join` (one of [`Shape::joining`]).
    pub joins: bool,
    /// Started at least once: `heal` restarts it if it is down.
    started: bool,
    child: Option<Child>,
    paused: bool,
}

impl Node {
    pub fn addr(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.resp)
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }
}

#[derive(Debug)]
pub struct Cluster {
    pub shape: Shape,
    pub nodes: Vec<Node>,
    pub proxies: Proxies,
    dir: PathBuf,
}

/// A free port, and the listener that keeps it taken until dropped: the proxies bind
/// port 0 after the nodes' ports are picked, and the kernel may hand one of those out
/// again if it is already released (then a node cannot bind, and traffic for it loops
/// back through a proxy to another node — once a leader received its own entries).
fn reserve_port() -> Result<(u16, TcpListener)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok((listener.local_addr()?.port(), listener))
}

fn signal(pid: u32, name: &str) -> Result<()> {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -s {name} {pid} failed");
    }
    Ok(())
}

impl Cluster {
    /// Starts every node and waits until every group and the meta group has a leader.
    pub async fn start(shape: Shape, dir: &Path) -> Result<Cluster> {
        let mut nodes = Vec::new();
        let mut reserved = Vec::new();
        let count = shape.nodes_per_zone * ZONES.len();
        for i in 0..count {
            let (resp, resp_hold) = reserve_port()?;
            let (grpc, grpc_hold) = reserve_port()?;
            reserved.extend([resp_hold, grpc_hold]);
            nodes.push(Node {
                id: i as u64 + 1,
                zone: ZONES[i % ZONES.len()],
                resp,
                grpc,
                joins: i + shape.joining >= count,
                started: false,
                child: None,
                paused: false,
            });
        }
        let upstreams: Vec<(u64, u16)> = nodes.iter().map(|n| (n.id, n.grpc)).collect();
        let proxies = Proxies::start(&upstreams).await?;
        // The proxies have their ports: the nodes can have theirs.
        drop(reserved);
        let mut cluster = Cluster {
            shape,
            nodes,
            proxies,
            dir: dir.to_owned(),
        };
        for i in 0..cluster.nodes.len() {
            if !cluster.nodes[i].joins {
                cluster.spawn(i)?;
            }
        }
        cluster.wait_for_leaders(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// Starts the joining nodes that have not been started yet.
    pub fn join(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].joins && !self.nodes[i].started {
                self.spawn(i)?;
            }
        }
        Ok(())
    }

    /// The address peers reach node `id` at: its proxy.
    fn advertised(&self, id: u64) -> String {
        format!(
            "127.0.0.1:{}",
            self.proxies.ports.get(&id).copied().unwrap_or(0)
        )
    }

    /// The member list a node starts with: the first nodes' own, or for a joining node
    /// every node's (the running ones never learn of it but through the map).
    fn members(&self, joins: bool) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| joins || !n.joins)
            .flat_map(|n| {
                [
                    "--member".to_owned(),
                    format!(
                        "{},{},{},127.0.0.1:{}",
                        n.id,
                        n.zone,
                        self.advertised(n.id),
                        n.resp
                    ),
                ]
            })
            .collect()
    }

    /// Starts node `i` (again): same ports, same data.
    pub fn spawn(&mut self, i: usize) -> Result<()> {
        let members = self.members(self.nodes[i].joins);
        let advertised = self.advertised(self.nodes[i].id);
        let shape = &self.shape;
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{}.log", node.id)))?;
        let child = Command::new(&shape.shoal)
            .arg("node")
            .args(["--id", &node.id.to_string(), "--zone", node.zone])
            .args(["--resp", &format!("127.0.0.1:{}", node.resp)])
            .args(["--grpc", &format!("127.0.0.1:{}", node.grpc)])
            .args(["--advertise-grpc", &advertised])
            .args(["--peer-source-ip", &proxy::source_ip(node.id).to_string()])
            .arg("--data-dir")
            .arg(self.dir.join(format!("node-{}", node.id)))
            .args(["--groups", &shape.groups.to_string()])
            .args([
                "--election-timeout-ms",
                &shape.election_timeout_ms.to_string(),
            ])
            .args(["--heartbeat-ms", &shape.heartbeat_ms.to_string()])
            .args(["--quorum-timeout-ms", &shape.quorum_timeout_ms.to_string()])
            .args(node.joins.then_some("--join"))
            .args(
                shape
                    .reshard
                    .then(|| ["--reshard-pace-ms".to_owned(), RESHARD_PACE_MS.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .args(members)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", shape.shoal.display()))?;
        node.child = Some(child);
        node.started = true;
        node.paused = false;
        Ok(())
    }

    pub fn kill(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            if node.paused {
                let _ = signal(child.id(), "CONT");
            }
            child.kill()?;
            child.wait()?;
        }
        node.paused = false;
        Ok(())
    }

    pub fn pause(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        if let Some(child) = &node.child {
            signal(child.id(), "STOP")?;
            node.paused = true;
        }
        Ok(())
    }

    pub fn resume(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        if let Some(child) = &node.child {
            if node.paused {
                signal(child.id(), "CONT")?;
            }
        }
        node.paused = false;
        Ok(())
    }

    /// Every node running, not paused and reachable again.
    pub fn heal(&mut self) -> Result<()> {
        self.proxies.partitions.heal();
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_paused() {
                self.resume(i)?;
            }
            if self.nodes[i].started && !self.nodes[i].is_running() {
                self.spawn(i)?;
            }
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.kill(i);
        }
    }

    /// The index in `nodes` of the node with `id`.
    pub fn position(&self, id: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// The leaders of every shard group, as some live node's INFO cluster says (not a
    /// cut-off node's, whose view may be stale).
    pub async fn leaders(&mut self) -> Option<BTreeMap<u64, u64>> {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].is_running()
                || self.nodes[i].is_paused()
                || self.proxies.partitions.cut_off(self.nodes[i].id, &ids)
            {
                continue;
            }
            let Ok(info) = info_cluster(&self.nodes[i].addr()).await else {
                continue;
            };
            let groups = group_ids(&info);
            let mut leaders = BTreeMap::new();
            for &g in &groups {
                if let Some(leader) = field(&info, &format!("group{g}"), "leader") {
                    if let Ok(id) = leader.parse() {
                        leaders.insert(g, id);
                    }
                }
            }
            let meta_led =
                field(&info, "meta_group", "leader").is_some_and(|l| l.parse::<u64>().is_ok());
            if leaders.len() == groups.len() && groups.len() as u64 >= self.shape.groups && meta_led
            {
                return Some(leaders);
            }
        }
        None
    }

    /// Each shard group's voters, as some live node's INFO cluster says, when no
    /// group has a learner (no replica being added).
    pub async fn voters(&mut self) -> Option<BTreeMap<u64, Vec<u64>>> {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].is_running() || self.nodes[i].is_paused() {
                continue;
            }
            let Ok(info) = info_cluster(&self.nodes[i].addr()).await else {
                continue;
            };
            let ids = |list: Option<String>| -> Vec<u64> {
                list.unwrap_or_default()
                    .split('|')
                    .filter_map(|v| v.parse().ok())
                    .collect()
            };
            let mut out = BTreeMap::new();
            for g in group_ids(&info) {
                let name = format!("group{g}");
                if !ids(field(&info, &name, "learners")).is_empty() {
                    return None;
                }
                out.insert(g, ids(field(&info, &name, "voters")));
            }
            return Some(out);
        }
        None
    }

    pub async fn wait_for_leaders(&mut self, within: Duration) -> Result<BTreeMap<u64, u64>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(leaders) = self.leaders().await {
                return Ok(leaders);
            }
            if Instant::now() > deadline {
                bail!("the groups have no leaders after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Cluster {
    /// `DEBUG FSYNC-DELAY ms` on node `i`: its log syncs take that long (0: normal).
    pub async fn fsync_delay(&self, i: usize, ms: u64) -> Result<()> {
        let mut cmd = redis::cmd("DEBUG");
        cmd.arg("FSYNC-DELAY").arg(ms);
        self.admin(i, cmd, Duration::from_secs(3)).await
    }

    /// `RAFT TRANSFER-LEADER group to` on node `i` (the group's leader).
    pub async fn transfer_leader(&self, i: usize, group: u64, to: u64) -> Result<()> {
        let mut cmd = redis::cmd("RAFT");
        cmd.arg("TRANSFER-LEADER").arg(group).arg(to);
        self.admin(i, cmd, Duration::from_secs(12)).await
    }

    /// Sends an admin command expecting OK to node `i`, within `limit`.
    async fn admin(&self, i: usize, cmd: redis::Cmd, limit: Duration) -> Result<()> {
        let client = redis::Client::open(self.nodes[i].addr())?;
        let mut con = tokio::time::timeout(
            Duration::from_secs(2),
            client.get_multiplexed_async_connection(),
        )
        .await
        .context("connecting")??;
        let _: () = tokio::time::timeout(limit, cmd.query_async(&mut con))
            .await
            .context("an admin command timed out")??;
        Ok(())
    }
}

pub async fn info_cluster(addr: &str) -> Result<String> {
    let client = redis::Client::open(addr)?;
    let mut con = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .context("connecting")??;
    let info: String = tokio::time::timeout(
        Duration::from_secs(3),
        redis::cmd("INFO").arg("cluster").query_async(&mut con),
    )
    .await
    .context("INFO")??;
    Ok(info)
}

/// The shard groups an INFO cluster lists (`group<id>:` lines): the groups keys live
/// on, and during a reshard the group being added.
pub fn group_ids(info: &str) -> Vec<u64> {
    info.lines()
        .filter_map(|l| l.strip_prefix("group")?.split_once(':')?.0.parse().ok())
        .collect()
}

/// `key` of the `name:k1=v1,k2=v2` line of an INFO section.
pub fn field(info: &str, name: &str, key: &str) -> Option<String> {
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?;
    line.split(',')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_groups_of_an_info_cluster_are_its_group_lines() {
        let info = "cluster_enabled:0\r\nshoal_shard_groups:3\r\n\
                    group0:leader=1,local_role=leader,voters=1|2|3,learners=\r\n\
                    group2:leader=none,local_role=follower,voters=1|2|3,learners=\r\n\
                    group10:leader=3,local_role=follower,voters=1|2|3,learners=\r\n\
                    meta_group:leader=1,local_role=leader,voters=1|2|3,learners=\r\n\
                    groups_seen:7\r\n";
        assert_eq!(group_ids(info), vec![0, 2, 10]);
        assert_eq!(field(info, "group2", "leader").as_deref(), Some("none"));
        assert_eq!(field(info, "group10", "voters").as_deref(), Some("1|2|3"));
    }
}
