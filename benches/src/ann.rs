//! `shoal-bench ann`: the side-by-side ANN benchmark.
//!
//! Measurement rules match `benches/peers/run_peer.py`: build with `--build-threads`,
//! memory as the process RSS growth over the build divided by n, search with `--threads`
//! after a warm-up, QPS as the median of several timed passes over all queries, latency
//! percentiles from per-query timings, recall@k against the ground truth.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use shoal_index::{FlatIndex, HnswIndex, HnswParams, Metric, Neighbor, VectorIndex};

use crate::vecs::{read_ids, read_vectors, Matrix};

/// A timed pass is repeated until both limits are reached; the median pass is reported.
const MIN_PASSES: usize = 3;
const MIN_TIMED: Duration = Duration::from_secs(1);
/// Warm-up before timing each setting.
const WARMUP: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MetricArg {
    L2,
    Ip,
    Cosine,
}

impl MetricArg {
    fn metric(self) -> Metric {
        match self {
            MetricArg::L2 => Metric::L2,
            MetricArg::Ip => Metric::Ip,
            MetricArg::Cosine => Metric::Cosine,
        }
    }
    fn name(self) -> &'static str {
        match self {
            MetricArg::L2 => "l2",
            MetricArg::Ip => "ip",
            MetricArg::Cosine => "cosine",
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum AlgoArg {
    Hnsw,
    Flat,
}

/// Arguments of `shoal-bench ann`.
#[derive(Debug, Args)]
pub struct AnnArgs {
    /// Base vectors (.fvecs or .npy).
    #[arg(long)]
    pub base: PathBuf,
    /// Query vectors (.fvecs or .npy).
    #[arg(long)]
    pub queries: PathBuf,
    /// Ground-truth ids (.ivecs or .npy); computed exactly when omitted.
    #[arg(long)]
    pub groundtruth: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub metric: MetricArg,
    #[arg(long, value_enum)]
    pub algo: AlgoArg,
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    /// Comma-separated beam widths to search with (HNSW).
    #[arg(long, value_delimiter = ',', default_value = "10,20,40,80,160")]
    pub ef_search: Vec<usize>,
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Search threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Build threads (and the threads of FLAT's batched search).
    #[arg(long, default_value_t = 2)]
    pub build_threads: usize,
    /// Write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Run {
    ef: Option<usize>,
    recall: f64,
    qps: f64,
    p50_us: f64,
    p99_us: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    engine: &'static str,
    engine_version: &'static str,
    algo: &'static str,
    metric: &'static str,
    n: usize,
    dim: usize,
    k: usize,
    num_queries: usize,
    m: Option<usize>,
    ef_construction: Option<usize>,
    build_threads: usize,
    search_threads: usize,
    build_seconds: f64,
    bytes_per_vector: f64,
    index_bytes_per_vector: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_qps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_threads: Option<usize>,
    cpu: String,
    runs: Vec<Run>,
}

/// Resident set size of this process.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn recall(found: &[Neighbor], truth: &[u32]) -> f64 {
    let hits = found.iter().filter(|n| truth.contains(&n.id)).count();
    hits as f64 / truth.len().max(1) as f64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `pass` (which answers every query once) until warm, then times it repeatedly and
/// returns the median wall time of a pass.
fn time_passes(mut pass: impl FnMut() -> Result<()>) -> Result<Duration> {
    let warm = Instant::now();
    while warm.elapsed() < WARMUP {
        pass()?;
    }
    let started = Instant::now();
    let mut times = Vec::new();
    while times.len() < MIN_PASSES || started.elapsed() < MIN_TIMED {
        let t = Instant::now();
        pass()?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Answers every query on `threads` threads; returns results in query order.
fn search_all(
    index: &dyn VectorIndex,
    queries: &Matrix<f32>,
    k: usize,
    ef: Option<usize>,
    threads: usize,
    latencies: Option<&mut Vec<f64>>,
) -> Result<Vec<Vec<Neighbor>>> {
    if threads <= 1 {
        let mut out = Vec::with_capacity(queries.rows);
        let mut lat = latencies;
        for i in 0..queries.rows {
            let t = Instant::now();
            out.push(index.search(queries.row(i), k, ef, None)?);
            if let Some(l) = lat.as_deref_mut() {
                l.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        return Ok(out);
    }
    let per = queries.rows.div_ceil(threads);
    let parts: Vec<Result<Vec<Vec<Neighbor>>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(queries.rows))
                        .map(|i| Ok(index.search(queries.row(i), k, ef, None)?))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut out = Vec::with_capacity(queries.rows);
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

fn ground_truth(
    args: &AnnArgs,
    base: &Matrix<f32>,
    queries: &Matrix<f32>,
) -> Result<Vec<Vec<u32>>> {
    if let Some(path) = &args.groundtruth {
        let gt = read_ids(path)?;
        if gt.rows != queries.rows || gt.cols < args.k {
            bail!(
                "ground truth has {}x{}, need {}x>={}",
                gt.rows,
                gt.cols,
                queries.rows,
                args.k
            );
        }
        return Ok((0..gt.rows).map(|i| gt.row(i)[..args.k].to_vec()).collect());
    }
    eprintln!("computing exact ground truth ...");
    let flat = FlatIndex::new(base.cols, args.metric.metric(), base.rows)?;
    let ids: Vec<u32> = (0..base.rows as u32).collect();
    flat.add_parallel(&ids, &base.data, args.build_threads)?;
    let found = flat.search_batch(&queries.data, args.k, None, args.build_threads)?;
    Ok(found
        .into_iter()
        .map(|r| r.into_iter().map(|n| n.id).collect())
        .collect())
}

pub fn run(args: &AnnArgs) -> Result<()> {
    if args.k == 0 {
        bail!("--k must be at least 1");
    }
    let base = read_vectors(&args.base)?;
    let queries = read_vectors(&args.queries)?;
    if base.cols != queries.cols {
        bail!("base has dimension {}, queries {}", base.cols, queries.cols);
    }
    if let Some(dir) = args.json.as_ref().and_then(|p| p.parent()) {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    let metric = args.metric.metric();
    let (n, dim) = (base.rows, base.cols);

    let rss_before = rss_bytes();
    let started = Instant::now();
    let index: Box<dyn VectorIndex> = match args.algo {
        AlgoArg::Hnsw => Box::new(HnswIndex::new(
            dim,
            metric,
            n,
            HnswParams {
                m: args.m,
                ef_construction: args.ef_construction,
                ..HnswParams::default()
            },
        )?),
        AlgoArg::Flat => Box::new(FlatIndex::new(dim, metric, n)?),
    };
    let ids: Vec<u32> = (0..n as u32).collect();
    index
        .add_parallel(&ids, &base.data, args.build_threads)
        .context("building the index")?;
    let build_seconds = started.elapsed().as_secs_f64();
    let bytes_per_vector = rss_bytes().saturating_sub(rss_before) as f64 / n as f64;
    eprintln!("built {n} x {dim} in {build_seconds:.2} s");
    // After the build and its RSS reading: ground truth computed earlier would leave freed
    // pages behind for the index to reuse, hiding its memory.
    let truth = ground_truth(args, &base, &queries)?;

    let efs: Vec<Option<usize>> = match args.algo {
        AlgoArg::Hnsw => args.ef_search.iter().map(|&e| Some(e)).collect(),
        AlgoArg::Flat => vec![None],
    };
    let mut runs = Vec::new();
    for ef in efs {
        let results = search_all(index.as_ref(), &queries, args.k, ef, args.threads, None)?;
        let rec = results
            .iter()
            .zip(&truth)
            .map(|(f, t)| recall(f, t))
            .sum::<f64>()
            / queries.rows as f64;
        let pass = time_passes(|| {
            search_all(index.as_ref(), &queries, args.k, ef, args.threads, None).map(|_| ())
        })?;
        let mut lat = Vec::with_capacity(queries.rows);
        search_all(index.as_ref(), &queries, args.k, ef, 1, Some(&mut lat))?;
        lat.sort_by(f64::total_cmp);
        runs.push(Run {
            ef,
            recall: rec,
            qps: queries.rows as f64 / pass.as_secs_f64(),
            p50_us: percentile(&lat, 0.5),
            p99_us: percentile(&lat, 0.99),
        });
    }

    let mut batch_qps = None;
    if args.algo == AlgoArg::Flat {
        let flat = FlatIndex::new(dim, metric, n)?;
        flat.add_parallel(&ids, &base.data, args.build_threads)?;
        let pass = time_passes(|| {
            flat.search_batch(&queries.data, args.k, None, args.build_threads)
                .map(|_| ())
                .map_err(Into::into)
        })?;
        batch_qps = Some(queries.rows as f64 / pass.as_secs_f64());
    }

    let hnsw = args.algo == AlgoArg::Hnsw;
    let report = Report {
        engine: "shoal",
        engine_version: env!("CARGO_PKG_VERSION"),
        algo: if hnsw { "hnsw" } else { "flat" },
        metric: args.metric.name(),
        n,
        dim,
        k: args.k,
        num_queries: queries.rows,
        m: hnsw.then_some(args.m),
        ef_construction: hnsw.then_some(args.ef_construction),
        build_threads: args.build_threads,
        search_threads: args.threads,
        build_seconds,
        bytes_per_vector,
        index_bytes_per_vector: index.memory_usage() as f64 / n as f64,
        batch_qps,
        batch_threads: batch_qps.map(|_| args.build_threads),
        cpu: cpu_model(),
        runs,
    };
    print_table(&report);
    if let Some(path) = &args.json {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "shoal {} {} n={} dim={} k={} build {:.2}s ({} threads) {:.1} B/vector (index {:.1})",
        r.algo,
        r.metric,
        r.n,
        r.dim,
        r.k,
        r.build_seconds,
        r.build_threads,
        r.bytes_per_vector,
        r.index_bytes_per_vector
    );
    println!(
        "{:>6} {:>8} {:>10} {:>9} {:>9}",
        "ef", "recall", "qps", "p50_us", "p99_us"
    );
    for run in &r.runs {
        let ef = run.ef.map_or("-".to_string(), |e| e.to_string());
        println!(
            "{ef:>6} {:>8.4} {:>10.1} {:>9.1} {:>9.1}",
            run.recall, run.qps, run.p50_us, run.p99_us
        );
    }
    if let Some(b) = r.batch_qps {
        println!("batched: {b:.1} QPS on {} threads", r.build_threads);
    }
}
