//! Faults on a seeded schedule: one round every interval, each a kind the scenario
//! allows, drawn from the seed, so a run is reproduced by its seed.

use std::collections::BTreeMap;
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
    /// Hand one group's leadership to another of its voters (`RAFT TRANSFER-LEADER` on
    /// the leader: what rebalancing and an operator draining a node do) while writes
    /// go on, then wait the downtime; rebalancing may hand it back meanwhile.
    HandOver,
    /// Two of the above at once, staggered over one and a half downtimes: the first
    /// alone, then both, then the second alone. Both hit the zone of a random group's
    /// leader, so every group keeps a majority and must keep taking writes: two of
    /// its nodes (the leader first) when it has two, else
    /// its one node twice (a slow disk, then cut off; or cut off, then paused, killed
    /// or given a slow disk).
    Combined,
}

/// What one fault does to a set of nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Harm {
    /// SIGKILL; undone by starting the node again on its data.
    Kill,
    /// SIGSTOP; undone by SIGCONT.
    Pause,
    /// Cut off from every node outside the set, both ways; undone by healing.
    Cut,
    /// Each log sync takes a second; undone by `DEBUG FSYNC-DELAY 0`.
    SlowDisk,
}

/// What a combined fault on two different nodes draws its two (different) harms from.
const HARMS: [Harm; 4] = [Harm::Kill, Harm::Pause, Harm::Cut, Harm::SlowDisk];

/// Pairs (first, second) a combined fault may do to one node: undoing the first must
/// not need the node to answer while the second is in force (`DEBUG FSYNC-DELAY`
/// cannot reach a paused or dead node), and a second harm must still change something.
const SAME_NODE: [(Harm, Harm); 4] = [
    (Harm::SlowDisk, Harm::Cut),
    (Harm::Cut, Harm::Pause),
    (Harm::Cut, Harm::Kill),
    (Harm::Cut, Harm::SlowDisk),
];

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
    /// For a combined fault: what it did to which node, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
}

/// One harm of a combined fault.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    pub harm: Harm,
    pub node: u64,
    /// When it was done (since the run started).
    pub at: Duration,
    /// The groups the node led just before: each one's write recovery is timed from
    /// `at`, since the part may come after the fault's first harm.
    pub groups: Vec<u64>,
}

/// Does `harm` to the nodes at `positions`.
async fn harm(cluster: &mut Cluster, harm: Harm, positions: &[usize]) -> Result<()> {
    match harm {
        Harm::Kill => {
            for &i in positions {
                cluster.kill(i)?;
            }
        }
        Harm::Pause => {
            for &i in positions {
                cluster.pause(i)?;
            }
        }
        Harm::Cut => {
            let inside: Vec<u64> = positions.iter().map(|&i| cluster.nodes[i].id).collect();
            let outside: Vec<u64> = cluster
                .nodes
                .iter()
                .map(|n| n.id)
                .filter(|id| !inside.contains(id))
                .collect();
            cluster.proxies.partitions.split(&[inside, outside]);
        }
        Harm::SlowDisk => {
            for &i in positions {
                cluster.fsync_delay(i, SLOW_SYNC_MS).await?;
            }
        }
    }
    Ok(())
}

/// Undoes `harm` to the nodes at `positions`.
async fn undo(cluster: &mut Cluster, harm: Harm, positions: &[usize]) -> Result<()> {
    match harm {
        Harm::Kill => {
            for &i in positions {
                cluster.spawn(i)?;
            }
        }
        Harm::Pause => {
            for &i in positions {
                cluster.resume(i)?;
            }
        }
        Harm::Cut => {
            cluster.proxies.partitions.heal();
            tokio::time::sleep(crate::proxy::SETTLE).await;
        }
        Harm::SlowDisk => {
            for &i in positions {
                cluster.fsync_delay(i, 0).await?;
            }
        }
    }
    Ok(())
}

/// The parts of a combined fault in zone `zone`: its nodes that lead the most groups
/// first.
fn combined_parts(
    cluster: &Cluster,
    leaders: &BTreeMap<u64, u64>,
    zone: &str,
    rng: &mut StdRng,
) -> Vec<(Harm, u64)> {
    let mut in_zone: Vec<u64> = cluster
        .nodes
        .iter()
        .filter(|n| n.zone == zone)
        .map(|n| n.id)
        .collect();
    let led = |id: &u64| leaders.values().filter(|l| *l == id).count();
    in_zone.sort_by_key(|id| std::cmp::Reverse(led(id)));
    match in_zone[..] {
        [a, b, ..] => {
            let pair: Vec<Harm> = HARMS.choose_multiple(rng, 2).copied().collect();
            vec![(pair[0], a), (pair[1], b)]
        }
        [a] => {
            let (first, second) = SAME_NODE[rng.gen_range(0..SAME_NODE.len())];
            vec![(first, a), (second, a)]
        }
        [] => Vec::new(),
    }
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
    let mut plan: Vec<(Harm, u64)> = Vec::new();
    let targets: Vec<u64> = match kind {
        Kind::LeaderKill | Kind::Pause | Kind::PartitionLeader | Kind::SlowDisk => {
            match victim_group.and_then(|g| leaders.get(&g)) {
                Some(leader) => vec![*leader],
                None => return Ok(None),
            }
        }
        Kind::HandOver => {
            return hand_over(cluster, &leaders, victim_group, rng, started, downtime).await;
        }
        Kind::Combined => {
            // The zone of a random group's leader, so that a leader is among the nodes hit.
            let leader = victim_group.and_then(|g| leaders.get(&g));
            let zone = cluster
                .nodes
                .iter()
                .find(|n| Some(&n.id) == leader)
                .map_or(ZONES[rng.gen_range(0..ZONES.len())], |n| n.zone);
            plan = combined_parts(cluster, &leaders, zone, rng);
            let mut nodes: Vec<u64> = plan.iter().map(|(_, id)| *id).collect();
            nodes.dedup();
            nodes
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
        parts: Vec::new(),
    };
    if targets.is_empty() {
        return Ok(None);
    }
    tracing::info!(?fault, "fault");
    let positions: Vec<usize> = targets
        .iter()
        .filter_map(|id| cluster.position(*id))
        .collect();
    // Decision table: what each kind does, for how long.
    //   kind                      harm      nodes            down for
    //   leader-/zone-kill         Kill      leader / zone    downtime
    //   majority-kill             Kill      two zones        3 x downtime
    //   pause                     Pause     leader           downtime
    //   partition-leader/-zone    Cut       leader / zone    downtime
    //   slow-disk                 SlowDisk  leader           downtime
    //   restart-all               Kill      every node       none (restarted at once)
    //   combined                  two       one zone         1.5 x downtime, staggered
    //   hand-over                 none      (its leader)     none: a leadership change
    let single = match kind {
        Kind::LeaderKill | Kind::ZoneKill | Kind::RestartAll => Some((Harm::Kill, downtime)),
        // A majority stays down three times as long: long enough for writes sent into
        // it to be refused (after the quorum timeout) before it comes back.
        Kind::MajorityKill => Some((Harm::Kill, downtime * 3)),
        Kind::Pause => Some((Harm::Pause, downtime)),
        Kind::PartitionLeader | Kind::PartitionZone => Some((Harm::Cut, downtime)),
        Kind::SlowDisk => Some((Harm::SlowDisk, downtime)),
        // (A hand-over harms no node: it returned above.)
        Kind::Combined | Kind::HandOver => None,
    };
    match single {
        Some((what, down)) => {
            harm(cluster, what, &positions).await?;
            fault.down = started.elapsed();
            if kind != Kind::RestartAll {
                tokio::time::sleep(down).await;
            }
            fault.healed = started.elapsed();
            undo(cluster, what, &positions).await?;
        }
        None => {
            let half = downtime / 2;
            let at = |id: u64| cluster.position(id).into_iter().collect::<Vec<_>>();
            let steps: Vec<(Harm, Vec<usize>)> = plan.iter().map(|(h, id)| (*h, at(*id))).collect();
            for (n, ((what, on), (_, node))) in steps.iter().zip(&plan).enumerate() {
                let leaders = match n {
                    0 => leaders.clone(),
                    _ => cluster.leaders().await.unwrap_or_default(),
                };
                let part = Part {
                    harm: *what,
                    node: *node,
                    at: started.elapsed(),
                    groups: leaders
                        .iter()
                        .filter(|(_, l)| *l == node)
                        .map(|(g, _)| *g)
                        .collect(),
                };
                harm(cluster, *what, on).await?;
                if n == 0 {
                    fault.down = started.elapsed();
                }
                fault.parts.push(part);
                tokio::time::sleep(half).await;
            }
            // Every step is undone even if one fails: a node left paused or cut off
            // would fail the checks that follow for the wrong reason.
            let mut first_error = None;
            for (n, (what, on)) in steps.iter().enumerate() {
                if let Err(e) = undo(cluster, *what, on).await {
                    first_error.get_or_insert(e);
                }
                if n + 1 < steps.len() {
                    tokio::time::sleep(half).await;
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            fault.healed = started.elapsed();
            fault.groups = fault.parts.iter().flat_map(|p| p.groups.clone()).collect();
            fault.groups.sort_unstable();
            fault.groups.dedup();
        }
    }
    Ok(Some(fault))
}

/// A [`Kind::HandOver`]: the leader of `group` hands it to a random other voter. A
/// hand-over that does not take (the voter lagged, or was elected and lost it at once)
/// is no failure of the harness: the group elects someone, and the checks that follow
/// judge what the clients saw.
async fn hand_over(
    cluster: &mut Cluster,
    leaders: &BTreeMap<u64, u64>,
    group: Option<u64>,
    rng: &mut StdRng,
    started: Instant,
    downtime: Duration,
) -> Result<Option<Fault>> {
    let Some((group, leader)) = group.and_then(|g| leaders.get(&g).map(|l| (g, *l))) else {
        return Ok(None);
    };
    let voters = cluster.voters().await.unwrap_or_default();
    let others: Vec<u64> = voters
        .get(&group)
        .into_iter()
        .flatten()
        .copied()
        .filter(|v| *v != leader)
        .collect();
    let (Some(&to), Some(at_leader)) = (others.choose(rng), cluster.position(leader)) else {
        return Ok(None);
    };
    let at = started.elapsed();
    let outcome = cluster.transfer_leader(at_leader, group, to).await;
    tracing::info!(group, leader, to, ?outcome, "hand-over");
    let fault = Fault {
        kind: Kind::HandOver,
        at,
        nodes: vec![leader],
        groups: vec![group],
        down: at,
        healed: started.elapsed(),
        parts: Vec::new(),
    };
    tokio::time::sleep(downtime).await;
    Ok(Some(fault))
}
