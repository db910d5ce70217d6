//! `shoal-chaos`: runs fault scenarios against real `shoal node` processes and prints
//! what each found. `make chaos` runs the full suite; `make test` the quick one.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use shoal_chaos::cluster::{Shape, ZONES};
use shoal_chaos::faults::Kind;
use shoal_chaos::run::{self, Plan, Report};
use shoal_chaos::workload::Workload;

/// The scenario that starts with one node per zone and adds the others (`--join`)
/// while leaders are killed, paused and cut off: rebalancing under faults.
const GROW: &str = "grow";

/// The scenario that adds a shard group (`RESHARD ADD-GROUP`) while leaders (the
/// sources', the new group's, the meta group's where it shares a node) are killed,
/// paused and cut off.
const RESHARD: &str = "reshard";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Suite {
    /// A few faults of each kind on a 3-node cluster (CI: a couple of minutes).
    Quick,
    /// More rounds, 6 nodes (2 per zone), every fault kind, and mixed.
    Full,
}

#[derive(Debug, Parser)]
#[command(
    name = "shoal-chaos",
    about = "Fault injection against a real Shoal cluster"
)]
struct Cli {
    /// The `shoal` binary.
    #[arg(long, env = "SHOAL_BIN")]
    shoal: PathBuf,
    #[arg(long, value_enum, default_value = "quick")]
    suite: Suite,
    /// Seed of the fault schedule and the workload (a run is reproduced by it).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Only these fault kinds.
    #[arg(long, value_enum)]
    only: Vec<Kind>,
    /// How long each fault lasts before it is healed: longer than an election, so a
    /// paused leader is replaced before it wakes up.
    #[arg(long, default_value_t = 4_000)]
    downtime_ms: u64,
    /// Nodes per zone instead of the suite's (1 quick, 2 full).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
    nodes_per_zone: Option<u8>,
    /// Writes every report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn plans(cli: &Cli) -> Vec<Plan> {
    let (nodes_per_zone, rounds, workers) = match cli.suite {
        Suite::Quick => (1, 3, 6),
        Suite::Full => (2, 8, 12),
    };
    let shape = Shape {
        shoal: cli.shoal.clone(),
        nodes_per_zone: cli.nodes_per_zone.map_or(nodes_per_zone, usize::from),
        groups: 2,
        election_timeout_ms: 500,
        heartbeat_ms: 100,
        quorum_timeout_ms: 5_000,
        joining: 0,
        reshard: false,
    };
    let workload = Workload {
        workers,
        team: 3,
        keys_per_team: 8,
        pace: Duration::from_millis(5),
    };
    let mut scenarios: Vec<(&str, Vec<Kind>)> = vec![
        ("leader-kill", vec![Kind::LeaderKill]),
        ("pause", vec![Kind::Pause]),
        ("zone-kill", vec![Kind::ZoneKill]),
        ("restart-all", vec![Kind::RestartAll]),
        ("majority-kill", vec![Kind::MajorityKill]),
        ("partition-leader", vec![Kind::PartitionLeader]),
        ("slow-disk", vec![Kind::SlowDisk]),
        ("combined", vec![Kind::Combined]),
        ("hand-over", vec![Kind::HandOver]),
        (
            RESHARD,
            vec![Kind::LeaderKill, Kind::Pause, Kind::PartitionLeader],
        ),
    ];
    if cli.suite == Suite::Full {
        scenarios.push((
            "mixed",
            vec![
                Kind::LeaderKill,
                Kind::Pause,
                Kind::ZoneKill,
                Kind::RestartAll,
                Kind::PartitionLeader,
                Kind::PartitionZone,
                Kind::SlowDisk,
                Kind::Combined,
                Kind::HandOver,
            ],
        ));
        scenarios.push(("partition-zone", vec![Kind::PartitionZone]));
        scenarios.push((
            GROW,
            vec![Kind::LeaderKill, Kind::Pause, Kind::PartitionLeader],
        ));
    }
    scenarios
        .into_iter()
        .filter(|(_, kinds)| cli.only.is_empty() || kinds.iter().all(|k| cli.only.contains(k)))
        .enumerate()
        .map(|(i, (name, kinds))| Plan {
            name: name.to_owned(),
            // One node per zone to start with; the others join while faults go on.
            shape: Shape {
                joining: if name == GROW {
                    shape.nodes_per_zone.saturating_sub(1) * ZONES.len()
                } else {
                    0
                },
                reshard: name == RESHARD,
                ..shape.clone()
            },
            workload: workload.clone(),
            rounds: if kinds == [Kind::RestartAll] || kinds == [Kind::MajorityKill] {
                1.max(rounds / 3)
            } else {
                rounds
            },
            kinds,
            interval: Duration::from_secs(2),
            downtime: Duration::from_millis(cli.downtime_ms),
            seed: cli.seed.wrapping_add(i as u64),
        })
        .collect()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(r: &Report) -> String {
    let mut rec = r.recovery_ms.clone();
    rec.sort_unstable();
    format!(
        "{:<12} seed {:<4} {} nodes {} groups: {} faults, {} ops ({} acked, {} unknown, {} failed), {} keys checked ({} skipped), {} violations, converged {}{}{}, write recovery after a leader loss p50 {} ms p99 {} ms max {} ms ({} samples){}, {:.1} s — {}",
        r.name,
        r.seed,
        r.nodes,
        r.groups,
        r.faults.len(),
        r.operations,
        r.acknowledged,
        r.unknown,
        r.failed,
        r.keys,
        r.keys_skipped,
        r.violations.len(),
        r.converged.values().all(|c| *c),
        match r.rebalanced {
            Some(done) => format!(", joined nodes holding replicas {done}"),
            None => String::new(),
        },
        match r.resharded {
            Some(done) => format!(
                ", a group added {done} ({} faults during it{}; phases {})",
                r.faults_during_reshard,
                if r.faults_during_reshard == 0 {
                    ", so it checked little more than a reshard without faults"
                } else {
                    ""
                },
                r.reshard_phases
                    .iter()
                    .map(|(phase, ms)| format!("{phase} at {:.1} s", *ms as f64 / 1000.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => String::new(),
        },
        percentile(&rec, 0.5),
        percentile(&rec, 0.99),
        rec.last().copied().unwrap_or(0),
        rec.len(),
        if r.faults.iter().any(|f| f.kind == Kind::MajorityKill) {
            format!(
                ", during majority loss {} changes refused with an error, {} timed out, {} acknowledged",
                r.majority_loss.refused_with_an_error,
                r.majority_loss.timed_out,
                r.majority_loss.acknowledged
            )
        } else {
            String::new()
        },
        r.duration_ms as f64 / 1000.0,
        if r.passed() { "PASS" } else { "FAIL" }
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut reports = Vec::new();
    for plan in plans(&cli) {
        let report = run::run(&plan).await?;
        println!("{}", summary(&report));
        for v in report.violations.iter().take(10) {
            println!("  violation: {v}");
        }
        reports.push(report);
    }
    if let Some(path) = &cli.json {
        // `make chaos` writes under benches/results, which a fresh clone lacks: a run
        // of ten minutes must not end in "No such file or directory".
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&reports)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if reports.iter().any(|r| !r.passed()) {
        bail!("a scenario failed");
    }
    Ok(())
}
