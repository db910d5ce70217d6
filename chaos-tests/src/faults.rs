//! Faults on a seeded schedule: one round every interval, each a kind the scenario
//! allows, drawn from the seed, so a run is reproduced by its seed.

use std::time::{Duration, Instant};

use anyhow::Result;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;

use crate::cluster::{Cluster, ZONES};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Kind {
    /// SIGKILL one group's leader, restart it after the downtime.
    LeaderKill,
    /// SIGKILL every node of one zone, restart them after the downtime.
    ZoneKill,
    /// SIGSTOP one group's leader (a long GC, a frozen VM), SIGCONT after the downtime.
    Pause,
    /// SIGKILL every node, restart them all at once.
    RestartAll,
    /// SIGKILL the nodes of two zones (every group loses its majority) for three times
    /// the downtime: writes must be refused, none acknowledged, until they come back.
    MajorityKill,
    /// Cut one group's leader off from every other node (both ways) for the downtime;
    /// it keeps running and keeps its clients: the others elect a new leader, the old
    /// one must not acknowledge writes it cannot commit.
    PartitionLeader,
    /// Cut one zone off from the other two for the downtime.
    PartitionZone,
    /// Make every log sync of one group's leader take a second (a slow or failing
    /// disk; the `DEBUG FSYNC-DELAY` failpoint) for the downtime.
    SlowDisk,
}

/// How long each log sync of a slow disk takes.
const SLOW_SYNC_MS: u64 = 1_000;

/// One fault as it was done.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub kind: Kind,
    /// Since the run started.
    pub at: Duration,
    pub nodes: Vec<u64>,
    /// The shard groups whose leader it took out.
    pub groups: Vec<u64>,
    /// When every node it takes out was down (the last SIGKILL or SIGSTOP returned):
    /// a write may still commit between `at` and this.
    pub down: Duration,
    /// When it was healed (since the run started).
    pub healed: Duration,
}

/// Does one fault of `kind`, waits `downtime`, heals it.
pub async fn inject(
    cluster: &mut Cluster,
    kind: Kind,
    rng: &mut StdRng,
    started: Instant,
    downtime: Duration,
) -> Result<Option<Fault>> {
    let leaders = cluster.leaders().await.unwrap_or_default();
    let groups: Vec<u64> = leaders.keys().copied().collect();
    let victim_group = groups.choose(rng).copied();
    let targets: Vec<u64> = match kind {
        Kind::LeaderKill | Kind::Pause | Kind::PartitionLeader | Kind::SlowDisk => {
            match victim_group.and_then(|g| leaders.get(&g)) {
                Some(leader) => vec![*leader],
                None => return Ok(None),
            }
        }
        Kind::ZoneKill | Kind::PartitionZone => {
            let zone = ZONES[rng.gen_range(0..ZONES.len())];
            cluster
                .nodes
                .iter()
                .filter(|n| n.zone == zone)
                .map(|n| n.id)
                .collect()
        }
        Kind::RestartAll => cluster.nodes.iter().map(|n| n.id).collect(),
        Kind::MajorityKill => {
            let spared = ZONES[rng.gen_range(0..ZONES.len())];
            cluster
                .nodes
                .iter()
                .filter(|n| n.zone != spared)
                .map(|n| n.id)
                .collect()
        }
    };
    let led: Vec<u64> = leaders
        .iter()
        .filter(|(_, l)| targets.contains(l))
        .map(|(g, _)| *g)
        .collect();
    let mut fault = Fault {
        kind,
        at: started.elapsed(),
        nodes: targets.clone(),
        groups: led,
        down: Duration::ZERO,
        healed: Duration::ZERO,
    };
    tracing::info!(?fault, "fault");
    let positions: Vec<usize> = targets
        .iter()
        .filter_map(|id| cluster.position(*id))
        .collect();
    match kind {
        Kind::LeaderKill | Kind::ZoneKill | Kind::MajorityKill => {
            for &i in &positions {
                cluster.kill(i)?;
            }
            fault.down = started.elapsed();
            // A majority stays down three times as long: long enough for writes sent into
            // it to be refused (after the quorum timeout) before it comes back.
            let down = if kind == Kind::MajorityKill {
                downtime * 3
            } else {
                downtime
            };
            tokio::time::sleep(down).await;
            fault.healed = started.elapsed();
            for &i in &positions {
                cluster.spawn(i)?;
            }
        }
        Kind::Pause => {
            for &i in &positions {
                cluster.pause(i)?;
            }
            fault.down = started.elapsed();
            tokio::time::sleep(downtime).await;
            fault.healed = started.elapsed();
            for &i in &positions {
                cluster.resume(i)?;
            }
        }
        Kind::RestartAll => {
            for &i in &positions {
                cluster.kill(i)?;
            }
            fault.down = started.elapsed();
            for &i in &positions {
                cluster.spawn(i)?;
            }
            fault.healed = started.elapsed();
        }
        Kind::SlowDisk => {
            for &i in &positions {
                cluster.fsync_delay(i, SLOW_SYNC_MS).await?;
            }
            fault.down = started.elapsed();
            tokio::time::sleep(downtime).await;
            fault.healed = started.elapsed();
            for &i in &positions {
                cluster.fsync_delay(i, 0).await?;
            }
        }
        Kind::PartitionLeader | Kind::PartitionZone => {
            let others: Vec<u64> = cluster
                .nodes
                .iter()
                .map(|n| n.id)
                .filter(|id| !targets.contains(id))
                .collect();
            cluster.proxies.partitions.split(&[targets.clone(), others]);
            fault.down = started.elapsed();
            tokio::time::sleep(downtime).await;
            fault.healed = started.elapsed();
            cluster.proxies.partitions.heal();
            tokio::time::sleep(crate::proxy::SETTLE).await;
        }
    }
    Ok(Some(fault))
}
