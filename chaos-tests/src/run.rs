//! One run: start a cluster, run the workload while faults happen, heal, check.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::check::{self, Verdict};
use crate::cluster::{Cluster, Shape};
use crate::faults::{self, Fault, Kind};
use crate::history::{Op, Outcome, Seen};
use crate::workload::{self, Workload};

#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub shape: Shape,
    pub workload: Workload,
    pub kinds: Vec<Kind>,
    pub rounds: usize,
    /// Time between one fault healing and the next starting (jittered ±50%).
    pub interval: Duration,
    pub downtime: Duration,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub name: String,
    pub seed: u64,
    pub nodes: usize,
    pub groups: u64,
    pub faults: Vec<Fault>,
    pub operations: usize,
    pub acknowledged: usize,
    pub unknown: usize,
    pub failed: usize,
    pub keys: usize,
    pub keys_skipped: usize,
    pub violations: Vec<String>,
    /// Per group: whether every replica's digest matched after healing.
    pub converged: BTreeMap<u64, bool>,
    /// Per fault that took a leader out: ms from the fault to the first acknowledged
    /// write to that group that started after it.
    pub recovery_ms: Vec<u64>,
    /// While a majority was down: changes started and answered in that window, by
    /// how they were answered (an acknowledgement there is a violation).
    pub majority_loss: MajorityLoss,
    /// With joining nodes: whether they took replicas within a minute of the faults
    /// ending (see `every_node_votes`); `None` without.
    pub rebalanced: Option<bool>,
    /// With a reshard: whether it finished, the new group taking its keys, within
    /// [`RESHARD_WITHIN`] of the faults ending; `None` without.
    pub resharded: Option<bool>,
    /// With a reshard: each phase `RESHARD STATUS` showed (polled every 250 ms from
    /// the first node that answers) and ms since the start when it was first seen.
    pub reshard_phases: Vec<(String, u64)>,
    /// With a reshard: the faults that began after it started and before it was seen
    /// done (what the scenario is for; a run where the reshard outran every fault
    /// checks little more than a reshard without faults).
    pub faults_during_reshard: usize,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MajorityLoss {
    pub refused_with_an_error: usize,
    pub timed_out: usize,
    pub acknowledged: usize,
    /// Each acknowledged one, with its timing against the fault's.
    pub acknowledged_ops: Vec<String>,
}

/// Issue #6's availability target: a group takes writes again within this after its
/// leader is lost. A slower recovery does not fail the run (the machine's load moves
/// it), but the run's logs are kept to find out why.
pub const RECOVERY_TARGET_MS: u64 = 3_000;

/// How long after healing a reshard may take to finish. Its steps are paced (see
/// `cluster::RESHARD_PACE_MS`), and a coordinator killed in the faults stands back
/// a few seconds before the next claims the reshard.
pub const RESHARD_WITHIN: Duration = Duration::from_secs(90);

impl Report {
    /// No violation, every group converged, and every key checked: a key the search
    /// gave up on is a check not made, so it fails the run too.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
            && self.converged.values().all(|c| *c)
            && self.keys_skipped == 0
            && self.rebalanced != Some(false)
            && self.resharded != Some(false)
    }

    pub fn recovered_in_time(&self) -> bool {
        self.recovery_ms.iter().all(|ms| *ms < RECOVERY_TARGET_MS)
    }
}

pub async fn run(plan: &Plan) -> Result<Report> {
    let dir = tempfile::Builder::new().prefix("shoal-chaos-").tempdir()?;
    match run_in(plan, dir.path()).await {
        Ok(report) if report.passed() && report.recovered_in_time() => Ok(report),
        // The nodes' logs and data are kept for a look at what went wrong (or slow).
        Ok(report) => {
            println!("  nodes' logs and data kept in {}", dir.keep().display());
            Ok(report)
        }
        Err(e) => {
            let kept = dir.keep();
            Err(e.context(format!("nodes' logs and data kept in {}", kept.display())))
        }
    }
}

async fn run_in(plan: &Plan, dir: &std::path::Path) -> Result<Report> {
    let started = Instant::now();
    let mut cluster = Cluster::start(plan.shape.clone(), dir).await?;
    // The clients know the first nodes only; joining nodes serve as routers too, but
    // the checks below read through the first node as always.
    let addrs: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| !n.joins)
        .map(|n| n.addr())
        .collect();
    create_index(&addrs[0]).await?;

    let stop = Arc::new(AtomicBool::new(false));
    // Set once the reshard is seen done (or given up on): the phase watcher stops.
    let watching = Arc::new(AtomicBool::new(false));
    let load = {
        let workload = plan.workload.clone();
        let addrs = addrs.clone();
        let stop = stop.clone();
        let seed = plan.seed;
        tokio::spawn(async move { workload::run(&workload, &addrs, seed, started, stop).await })
    };
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut done = Vec::new();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Joining nodes come in now: replicas move onto them while the faults go on.
    cluster.join()?;
    // A group is added now: its creation, copy and switches go on under the faults.
    let phases = if plan.shape.reshard {
        add_group(&addrs[0]).await?;
        let addrs = addrs.clone();
        let watching = watching.clone();
        Some(tokio::spawn(async move {
            watch_phases(&addrs, started, &watching).await
        }))
    } else {
        None
    };
    for _ in 0..plan.rounds {
        let Some(kind) = plan.kinds.choose(&mut rng).copied() else {
            break;
        };
        if let Some(fault) =
            faults::inject(&mut cluster, kind, &mut rng, started, plan.downtime).await?
        {
            done.push(fault);
        }
        let jitter = rng.gen_range(0.5..1.5);
        tokio::time::sleep(plan.interval.mul_f64(jitter)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let ops = load.await.context("the workload panicked")?;

    cluster.heal()?;
    let healed = Instant::now();
    cluster.wait_for_leaders(Duration::from_secs(30)).await?;
    let rebalanced = if plan.shape.joining > 0 {
        Some(every_node_votes(&mut cluster, Duration::from_secs(60)).await)
    } else {
        None
    };
    let resharded = if plan.shape.reshard {
        let groups = usize::try_from(plan.shape.groups)? + 1;
        let left = RESHARD_WITHIN.saturating_sub(healed.elapsed());
        Some(reshard_done(&addrs[0], groups, left).await)
    } else {
        None
    };
    // The keys are read once moves and the reshard are over, so that a switch or a
    // purge after healing is checked too (a key that went back to an older value
    // on the new group keeps the index count but fails its history).
    let finals = final_values(&addrs[0], &ops).await?;
    let verdicts = check::histories(&ops, &finals);
    watching.store(true, Ordering::Relaxed);
    let reshard_phases = match phases {
        Some(task) => task.await.context("the phase watcher panicked")?,
        None => Vec::new(),
    };
    let faults_during_reshard = match (reshard_phases.first(), reshard_phases.last()) {
        (Some((_, from)), Some((_, to))) => done
            .iter()
            .filter(|f| (*from..*to).contains(&u64::try_from(f.at.as_millis()).unwrap_or(u64::MAX)))
            .count(),
        (None, _) | (_, None) => 0,
    };
    // Every group of the final layout (with the added one once the reshard is done).
    let groups: Vec<u64> = cluster
        .wait_for_leaders(Duration::from_secs(30))
        .await?
        .into_keys()
        .collect();
    let converged = converged(&mut cluster, &groups, Duration::from_secs(30)).await;
    let recovery_ms = recovery(&ops, &done, plan.shape.groups, plan.shape.reshard);
    let majority_loss = majority_loss(&ops, &done);
    // The index agrees with the keys: a document counted twice (its copy on the new
    // group and its original both shown) or lost would be seen here, as in a KNN
    // answer that names one key twice.
    let live = finals.values().filter(|v| v.is_some()).count();
    let indexed = indexed_total(&addrs[0]).await?;
    let index_violations = (indexed != live).then(|| {
        format!("FT.SEARCH counts {indexed} documents after healing, the keys hold {live}")
    });
    let twice = ops.iter().filter_map(|o| match &o.outcome {
        Outcome::Ok(Seen::Twice(key)) => Some(format!(
            "a KNN answer named {key} twice: {} {:?} from {:?} to {:?}",
            o.key, o.call, o.start, o.end
        )),
        Outcome::Ok(Seen::Done | Seen::Value(_) | Seen::Found(_))
        | Outcome::Failed(_)
        | Outcome::Unknown(_) => None,
    });
    cluster.stop();

    let count = |f: fn(&Outcome) -> bool| ops.iter().filter(|o| f(&o.outcome)).count();
    Ok(Report {
        name: plan.name.clone(),
        seed: plan.seed,
        nodes: cluster.nodes.len(),
        groups: plan.shape.groups,
        faults: done,
        operations: ops.len(),
        acknowledged: count(|o| matches!(o, Outcome::Ok(_))),
        unknown: count(|o| matches!(o, Outcome::Unknown(_))),
        failed: count(|o| matches!(o, Outcome::Failed(_))),
        keys: verdicts.len(),
        keys_skipped: verdicts
            .values()
            .filter(|v| **v == Verdict::Skipped)
            .count(),
        violations: verdicts
            .into_values()
            .filter_map(|v| match v {
                Verdict::Violation(why) => Some(why),
                Verdict::Linearizable | Verdict::Skipped => None,
            })
            .chain(
                majority_loss.acknowledged_ops.iter().map(|op| {
                    format!("acknowledged while a majority of every group was down: {op}")
                }),
            )
            .chain(index_violations)
            .chain(twice)
            .collect(),
        converged,
        recovery_ms,
        majority_loss,
        rebalanced,
        resharded,
        reshard_phases,
        faults_during_reshard,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

async fn connection(addr: &str) -> Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(addr)?;
    Ok(tokio::time::timeout(
        workload::OP_TIMEOUT,
        client.get_multiplexed_async_connection(),
    )
    .await
    .context("connecting")??)
}

async fn create_index(addr: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = async {
            let mut con = connection(addr).await?;
            let _: () = workload::create_index().query_async(&mut con).await?;
            anyhow::Ok(())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "creating the index");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `RESHARD ADD-GROUP` through `addr`, retried until a node takes it (the map's
/// shape is written a moment after the cluster starts). An attempt that timed out
/// may have been recorded all the same: the next is then refused as "under way",
/// which is the reshard this run asked for.
async fn add_group(addr: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = async {
            let mut con = connection(addr).await?;
            let mut cmd = redis::cmd("RESHARD");
            cmd.arg("ADD-GROUP");
            let q = cmd.query_async::<u64>(&mut con);
            anyhow::Ok(tokio::time::timeout(workload::OP_TIMEOUT, q).await??)
        };
        match attempt.await {
            Ok(_) => return Ok(()),
            Err(e) if e.to_string().contains("is under way") => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "adding a group");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.context("RESHARD ADD-GROUP")),
        }
    }
}

/// Each phase `RESHARD STATUS` shows through any of `addrs`, with ms since `started`
/// when first seen, until `stop` (the reshard is then done or given up on).
async fn watch_phases(addrs: &[String], started: Instant, stop: &AtomicBool) -> Vec<(String, u64)> {
    let mut seen: Vec<(String, u64)> = Vec::new();
    loop {
        // Read once more after `stop`: the phase the final check saw is recorded too.
        let last_round = stop.load(Ordering::Relaxed);
        for addr in addrs {
            if let Some(phase) = reshard_phase(addr).await {
                if seen.last().is_none_or(|(last, _)| *last != phase) {
                    let at = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    seen.push((phase, at));
                }
                break;
            }
        }
        if last_round {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `RESHARD STATUS`'s fields through `addr`, as a flat list of names and values.
async fn reshard_status(addr: &str) -> Result<Vec<redis::Value>> {
    let mut con = tokio::time::timeout(Duration::from_secs(1), connection(addr)).await??;
    let mut cmd = redis::cmd("RESHARD");
    cmd.arg("STATUS");
    let q = cmd.query_async::<Vec<redis::Value>>(&mut con);
    Ok(tokio::time::timeout(Duration::from_secs(1), q).await??)
}

/// The value of `name` in a `RESHARD STATUS` reply.
fn status_field(fields: &[redis::Value], name: &str) -> Option<redis::Value> {
    fields
        .chunks(2)
        .find(|kv| kv[0] == redis::Value::BulkString(name.as_bytes().to_vec()))
        .and_then(|kv| kv.get(1).cloned())
}

/// The phase `RESHARD STATUS` names through `addr`, if it answers.
async fn reshard_phase(addr: &str) -> Option<String> {
    let fields = reshard_status(addr).await.ok()?;
    if let Some(redis::Value::BulkString(phase)) = status_field(&fields, "phase") {
        Some(String::from_utf8_lossy(&phase).into_owned())
    } else {
        None
    }
}

/// Whether, within `within`, `RESHARD STATUS` says no reshard runs and keys live on
/// `groups` groups.
async fn reshard_done(addr: &str, groups: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(fields) = reshard_status(addr).await {
            let field = |name: &str| status_field(&fields, name);
            let idle = field("phase") == Some(redis::Value::BulkString(b"none".to_vec()));
            let count = if let Some(redis::Value::Array(list)) = field("groups") {
                list.len()
            } else {
                0
            };
            if idle && count == groups {
                return true;
            }
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `FT.SEARCH chaos * LIMIT 0 0`'s total, retried for 30 s.
async fn indexed_total(addr: &str) -> Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            let mut con = connection(addr).await?;
            let mut cmd = redis::cmd("FT.SEARCH");
            cmd.arg(workload::INDEX).arg(&["*", "LIMIT", "0", "0"][..]);
            let q = cmd.query_async::<Vec<redis::Value>>(&mut con);
            let reply = tokio::time::timeout(workload::OP_TIMEOUT, q).await??;
            if let Some(redis::Value::Int(n)) = reply.first() {
                Ok(usize::try_from(*n)?)
            } else {
                bail!("FT.SEARCH answered {reply:?}")
            }
        };
        match attempt.await {
            Ok(n) => return Ok(n),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "counting documents");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.context("FT.SEARCH * LIMIT 0 0 after healing")),
        }
    }
}

/// Every key's value as the leaders have it once healed (retried until answered).
async fn final_values(addr: &str, ops: &[Op]) -> Result<BTreeMap<String, Option<u64>>> {
    let mut keys: Vec<&str> = ops.iter().map(|o| o.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut con = None;
    for key in keys {
        loop {
            if con.is_none() {
                con = connection(addr).await.ok();
            }
            let read = match con.as_mut() {
                Some(c) => {
                    let mut cmd = redis::cmd("HGET");
                    cmd.arg(key).arg("val");
                    let q = cmd.query_async::<Option<u64>>(c);
                    tokio::time::timeout(workload::OP_TIMEOUT, q)
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
                None => None,
            };
            if let Some(value) = read {
                out.insert(key.to_owned(), value);
                break;
            }
            con = None;
            if Instant::now() > deadline {
                bail!("the final reads did not finish within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(out)
}

/// Whether, within `within`, every joined node is a voter of some shard group. Each
/// takes a replica of its own zone's older node (which holds one per group, two more
/// than the newcomer); where that node leads the group, it hands leadership over first.
async fn every_node_votes(cluster: &mut Cluster, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if let Some(voters) = cluster.voters().await {
            let all_vote = cluster
                .nodes
                .iter()
                .filter(|n| n.joins)
                .all(|n| voters.values().any(|v| v.contains(&n.id)));
            if all_vote {
                return true;
            }
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether every replica of every group holds the same data (`DEBUG DIGEST <group>` on
/// every node; nodes that hold no replica of a group say so and are skipped), waiting
/// up to `within` for followers to apply what their leader has.
async fn converged(cluster: &mut Cluster, groups: &[u64], within: Duration) -> BTreeMap<u64, bool> {
    let deadline = Instant::now() + within;
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr()).collect();
    let mut out = BTreeMap::new();
    for &g in groups {
        let equal = loop {
            let mut digests = Vec::new();
            for addr in &addrs {
                let Ok(mut con) = connection(addr).await else {
                    continue;
                };
                let mut cmd = redis::cmd("DEBUG");
                cmd.arg("DIGEST").arg(g);
                let q = cmd.query_async::<String>(&mut con);
                if let Ok(Ok(d)) = tokio::time::timeout(workload::OP_TIMEOUT, q).await {
                    digests.push(d);
                }
            }
            let equal = digests.len() >= 2 && digests.iter().all(|d| *d == digests[0]);
            if equal || Instant::now() > deadline {
                break equal;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        out.insert(g, equal);
    }
    out
}

/// Changes that started once a majority was down and were answered before it came
/// back: none may be acknowledged (no group had a quorum). The window starts when the
/// last kill returned, not when the first began: a write may commit while the nodes
/// are still being killed one after another.
fn majority_loss(ops: &[Op], faults: &[Fault]) -> MajorityLoss {
    let mut out = MajorityLoss::default();
    for fault in faults.iter().filter(|f| f.kind == Kind::MajorityKill) {
        let inside = ops
            .iter()
            .filter(|o| o.changes() && o.start >= fault.down && o.end <= fault.healed);
        for op in inside {
            match &op.outcome {
                Outcome::Ok(_) => {
                    out.acknowledged += 1;
                    out.acknowledged_ops.push(format!(
                        "{} {:?} from {:?} to {:?} (fault began {:?}, down {:?}, healed {:?})",
                        op.key, op.call, op.start, op.end, fault.at, fault.down, fault.healed
                    ));
                }
                Outcome::Unknown(why) if why == "timed out" => out.timed_out += 1,
                Outcome::Unknown(_) | Outcome::Failed(_) => out.refused_with_an_error += 1,
            }
        }
    }
    out
}

/// For each fault that took a group's leader out, ms until the first acknowledged
/// change to a key of that group that started after the fault (after the nodes came
/// back, for a majority loss). With a reshard, only the keys that stay on their group
/// count: one the new group took may be served by it while its old group has no
/// leader.
fn recovery(ops: &[Op], faults: &[Fault], groups: u64, resharded: bool) -> Vec<u64> {
    let ring = shoal_cluster::Ring::new(0..groups);
    let next = shoal_cluster::Ring::new(0..=groups);
    let stays =
        |key: &str| !resharded || ring.group_of(key.as_bytes()) == next.group_of(key.as_bytes());
    let mut out = Vec::new();
    // (when the clock starts, the group) for every leader a fault took out.
    let mut losses: Vec<(Duration, u64)> = Vec::new();
    for fault in faults {
        match fault.kind {
            // Each part of a combined fault starts its own clock for the groups its
            // node led then.
            Kind::Combined => {
                for part in &fault.parts {
                    losses.extend(part.groups.iter().map(|g| (part.at, *g)));
                }
            }
            // A group without a majority is meant to refuse writes until the nodes
            // are back: its clock starts when they are.
            Kind::MajorityKill => losses.extend(fault.groups.iter().map(|g| (fault.healed, *g))),
            Kind::LeaderKill
            | Kind::ZoneKill
            | Kind::Pause
            | Kind::RestartAll
            | Kind::PartitionLeader
            | Kind::PartitionZone
            | Kind::SlowDisk
            | Kind::HandOver => losses.extend(fault.groups.iter().map(|g| (fault.at, *g))),
        }
    }
    for (from, g) in losses {
        let first = ops
            .iter()
            .filter(|o| o.changes() && matches!(o.outcome, Outcome::Ok(_)))
            .filter(|o| o.start >= from)
            .filter(|o| ring.group_of(o.key.as_bytes()) == Some(g) && stays(&o.key))
            .map(|o| o.end)
            .min();
        if let Some(end) = first {
            out.push(u64::try_from((end - from).as_millis()).unwrap_or(u64::MAX));
        }
    }
    out
}
