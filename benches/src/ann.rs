//! `shoal-bench ann`: the side-by-side ANN benchmark.
//!
//! Measurement rules match `benches/peers/run_peer.py`: build `--builds` times with
//! `--build-threads`; memory as the process RSS growth over the first build divided by n;
//! search with `--threads` after a warm-up; QPS as the median of several timed passes over
//! all queries (then the median over builds); recall@k against the ground truth (the mean
//! over builds); latency percentiles from per-query timings of the first build.

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
    /// Seed of the HNSW level draws (build i uses seed + i).
    #[arg(long, default_value_t = HnswParams::default().seed)]
    pub seed: u64,
    /// Build the index this many times and report mean recall and median QPS: recall at
    /// low ef varies by up to ±0.01 from one HNSW build to the next.
    #[arg(long, default_value_t = 1)]
    pub builds: usize,
    /// Search threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Build threads (and the threads of FLAT's batched search).
    #[arg(long, default_value_t = 2)]
    pub build_threads: usize,
    /// Walk by the FLOAT32 vectors instead of their 8-bit codes.
    #[arg(long)]
    pub f32_walk: bool,
    /// Write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Build once, print `ready`, then answer requests on stdin, one line each:
    /// `pass EF N` → one untimed pass over all queries, then the median seconds of N
    /// timed single-threaded passes; `latency EF` → one untimed pass, then the p50 µs of
    /// one timed pass's searches (a run times its `p50_us` pass the same way, but after
    /// its QPS passes rather than one untimed pass; `benches/resp/search_ingest.py` asks
    /// between its rounds through the server); `spaced EF GAP_US [spin|busy]` → each query
    /// searched alone after the thread slept GAP_US (or spun with `pause`, or without it),
    /// printing the searches' p50 µs and
    /// the mean gap, the idle a server sees between one client's requests; `recall EF` →
    /// recall@k; `quit`. `benches/paired.py` alternates passes of two engines this way,
    /// so a drift of the machine's speed hits both alike.
    #[arg(long, conflicts_with_all = ["json", "builds"])]
    pub serve: bool,
}

#[derive(Debug, Serialize)]
struct Run {
    ef: Option<usize>,
    /// Mean over builds.
    recall: f64,
    /// Median over builds.
    qps: f64,
    /// Of the first build.
    p50_us: f64,
    p99_us: f64,
    recall_all: Vec<f64>,
    qps_all: Vec<f64>,
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
    builds: usize,
    build_seconds: f64,
    build_seconds_all: Vec<f64>,
    bytes_per_vector: f64,
    index_bytes_per_vector: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_qps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_qps_all: Option<Vec<f64>>,
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

/// Recall@k of the ids found against the true ids (k = `truth.len()`).
pub(crate) fn recall(found: impl IntoIterator<Item = u32>, truth: &[u32]) -> f64 {
    let hits = found.into_iter().filter(|id| truth.contains(id)).count();
    hits as f64 / truth.len().max(1) as f64
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
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

/// An index under test.
enum Built {
    Flat(Box<FlatIndex>),
    Hnsw(Box<HnswIndex>),
}

impl Built {
    fn index(&self) -> &dyn VectorIndex {
        match self {
            Built::Flat(f) => f.as_ref(),
            Built::Hnsw(h) => h.as_ref(),
        }
    }
}

/// Builds the index for build number `build` (its seed is `--seed + build`).
fn build(args: &AnnArgs, base: &Matrix<f32>, build: usize) -> Result<(Built, f64)> {
    let (n, dim) = (base.rows, base.cols);
    let metric = args.metric.metric();
    let started = Instant::now();
    let built = match args.algo {
        AlgoArg::Hnsw => Built::Hnsw(Box::new(HnswIndex::new(
            dim,
            metric,
            n,
            HnswParams {
                m: args.m,
                ef_construction: args.ef_construction,
                seed: args.seed.wrapping_add(build as u64),
                sq8_walk: !args.f32_walk,
                ..HnswParams::default()
            },
        )?)),
        AlgoArg::Flat => Built::Flat(Box::new(FlatIndex::new(dim, metric, n)?)),
    };
    let ids: Vec<u32> = (0..n as u32).collect();
    built
        .index()
        .add_parallel(&ids, &base.data, args.build_threads)
        .context("building the index")?;
    Ok((built, started.elapsed().as_secs_f64()))
}

/// Recall and QPS of one build at one ef.
fn measure(
    args: &AnnArgs,
    index: &dyn VectorIndex,
    queries: &Matrix<f32>,
    truth: &[Vec<u32>],
    ef: Option<usize>,
) -> Result<(f64, f64)> {
    let results = search_all(index, queries, args.k, ef, args.threads, None)?;
    let rec = results
        .iter()
        .zip(truth)
        .map(|(f, t)| recall(f.iter().map(|n| n.id), t))
        .sum::<f64>()
        / queries.rows as f64;
    let pass =
        time_passes(|| search_all(index, queries, args.k, ef, args.threads, None).map(|_| ()))?;
    Ok((rec, queries.rows as f64 / pass.as_secs_f64()))
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub fn run(args: &AnnArgs) -> Result<()> {
    if args.k == 0 || args.builds == 0 {
        bail!("--k and --builds must be at least 1");
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
    if args.serve {
        return serve(args, &base, &queries);
    }
    let (n, dim) = (base.rows, base.cols);
    let efs: Vec<Option<usize>> = match args.algo {
        AlgoArg::Hnsw => args.ef_search.iter().map(|&e| Some(e)).collect(),
        AlgoArg::Flat => vec![None],
    };

    let mut truth = None;
    let mut build_seconds_all = Vec::new();
    let mut recall_all = vec![Vec::new(); efs.len()];
    let mut qps_all = vec![Vec::new(); efs.len()];
    let mut latencies = vec![(0.0, 0.0); efs.len()];
    let mut batch_qps_all = Vec::new();
    let (mut bytes_per_vector, mut index_bytes_per_vector) = (0.0, 0.0);
    for b in 0..args.builds {
        let rss_before = rss_bytes();
        let (built, seconds) = build(args, &base, b)?;
        eprintln!("build {b}: {n} x {dim} in {seconds:.2} s");
        build_seconds_all.push(seconds);
        let index = built.index();
        if b == 0 {
            bytes_per_vector = rss_bytes().saturating_sub(rss_before) as f64 / n as f64;
            index_bytes_per_vector = index.memory_usage() as f64 / n as f64;
            // After the first build's RSS reading: ground truth computed earlier would leave
            // freed pages behind for the index to reuse, hiding its memory.
            truth = Some(ground_truth(args, &base, &queries)?);
        }
        let truth = truth.as_deref().context("ground truth")?;
        for (i, &ef) in efs.iter().enumerate() {
            let (rec, qps) = measure(args, index, &queries, truth, ef)?;
            recall_all[i].push(rec);
            qps_all[i].push(qps);
            if b == 0 {
                let mut lat = Vec::with_capacity(queries.rows);
                search_all(index, &queries, args.k, ef, 1, Some(&mut lat))?;
                lat.sort_by(f64::total_cmp);
                latencies[i] = (percentile(&lat, 0.5), percentile(&lat, 0.99));
            }
        }
        if let Built::Flat(flat) = &built {
            let pass = time_passes(|| {
                flat.search_batch(&queries.data, args.k, None, args.build_threads)
                    .map(|_| ())
                    .map_err(Into::into)
            })?;
            batch_qps_all.push(queries.rows as f64 / pass.as_secs_f64());
        }
    }

    let runs = efs
        .iter()
        .enumerate()
        .map(|(i, &ef)| Run {
            ef,
            recall: mean(&recall_all[i]),
            qps: median(&qps_all[i]),
            p50_us: latencies[i].0,
            p99_us: latencies[i].1,
            recall_all: recall_all[i].clone(),
            qps_all: qps_all[i].clone(),
        })
        .collect();
    let hnsw = args.algo == AlgoArg::Hnsw;
    let flat = !hnsw;
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
        builds: args.builds,
        build_seconds: median(&build_seconds_all),
        build_seconds_all,
        bytes_per_vector,
        index_bytes_per_vector,
        batch_qps: flat.then(|| median(&batch_qps_all)),
        batch_qps_all: flat.then_some(batch_qps_all),
        batch_threads: flat.then_some(args.build_threads),
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

/// The `--serve` loop: one build, then passes on request (see [`AnnArgs::serve`]).
fn serve(args: &AnnArgs, base: &Matrix<f32>, queries: &Matrix<f32>) -> Result<()> {
    use std::io::{BufRead, Write};

    let (built, seconds) = build(args, base, 0)?;
    let truth = ground_truth(args, base, queries)?;
    let index = built.index();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {seconds:.3}")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        let (verb, ef) = (words.next(), words.next().map(str::parse::<usize>));
        let ef = match ef {
            Some(Ok(ef)) => Some(ef),
            Some(Err(e)) => bail!("bad ef in {line:?}: {e}"),
            None => None,
        };
        match verb {
            Some("pass") => {
                let passes = match words.next().map(str::parse::<usize>) {
                    Some(Ok(p)) if p > 0 => p,
                    None => 1,
                    Some(_) => bail!("bad pass count in {line:?}"),
                };
                // One untimed pass first: the other engine ran last and evicted ours
                // from the caches.
                search_all(index, queries, args.k, ef, 1, None)?;
                let mut times = Vec::with_capacity(passes);
                for _ in 0..passes {
                    let t = Instant::now();
                    search_all(index, queries, args.k, ef, 1, None)?;
                    times.push(t.elapsed().as_secs_f64());
                }
                writeln!(out, "{:.9}", median(&times))?;
            }
            Some("latency") => {
                search_all(index, queries, args.k, ef, 1, None)?;
                let mut lat = Vec::with_capacity(queries.rows);
                search_all(index, queries, args.k, ef, 1, Some(&mut lat))?;
                lat.sort_by(f64::total_cmp);
                writeln!(out, "{:.3}", percentile(&lat, 0.5))?;
            }
            Some("spaced") => {
                let gap = match words.next().map(str::parse::<u64>) {
                    Some(Ok(us)) => Duration::from_micros(us),
                    _ => bail!("spaced needs a gap in µs: {line:?}"),
                };
                let idle = match words.next() {
                    None => Idle::Sleep,
                    Some("spin") => Idle::Spin,
                    Some("busy") => Idle::Busy,
                    Some(other) => bail!("spaced waits by sleep, spin or busy, not {other:?}"),
                };
                let (p50, slept) = spaced(index, queries, args.k, ef, gap, idle)?;
                writeln!(out, "{p50:.2} {slept:.1}")?;
            }
            Some("recall") => {
                let found = search_all(index, queries, args.k, ef, 1, None)?;
                let sum: f64 = found
                    .iter()
                    .zip(&truth)
                    .map(|(f, t)| recall(f.iter().map(|n| n.id), t))
                    .sum();
                writeln!(out, "{:.6}", sum / queries.rows as f64)?;
            }
            Some("quit") | None => break,
            Some(other) => bail!("unknown request {other:?}"),
        }
        out.flush()?;
    }
    Ok(())
}

/// How `spaced` passes the gap before each search.
#[derive(Debug, Clone, Copy)]
enum Idle {
    /// The thread sleeps: an idle vCPU halts.
    Sleep,
    /// It spins with `pause` (`spin_loop`), which a hypervisor's pause-loop exiting may
    /// take for a vCPU waiting on a lock and answer by running something else.
    Spin,
    /// It spins on the clock alone, without `pause`.
    Busy,
}

/// Searches every query alone after an idle gap, slept or spun; returns the searches' p50 in µs and
/// the mean time the thread was away, in µs (sleeps overshoot by the timer's slack). The
/// tight loop of a `pass` keeps the core busy and its caches warm; a server answering
/// one client idles between requests, and on a VM whose idle vCPU halts, what the next
/// search finds in the caches and clocks differs (docs/benchmarks.md, session 37).
fn spaced(
    index: &dyn VectorIndex,
    queries: &Matrix<f32>,
    k: usize,
    ef: Option<usize>,
    gap: Duration,
    idle: Idle,
) -> Result<(f64, f64)> {
    let mut lat = Vec::with_capacity(queries.rows);
    let mut away = 0.0;
    for i in 0..queries.rows {
        let t = Instant::now();
        match idle {
            Idle::Sleep => std::thread::sleep(gap),
            Idle::Spin => {
                while t.elapsed() < gap {
                    std::hint::spin_loop();
                }
            }
            Idle::Busy => while std::hint::black_box(t.elapsed()) < gap {},
        }
        away += t.elapsed().as_secs_f64() * 1e6;
        let t = Instant::now();
        index.search(queries.row(i), k, ef, None)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(f64::total_cmp);
    match lat.get(lat.len() / 2) {
        Some(&p50) => Ok((p50, away / queries.rows as f64)),
        None => bail!("no queries to search"),
    }
}

fn print_table(r: &Report) {
    println!(
        "shoal {} {} n={} dim={} k={} builds={} build {:.2}s ({} threads) {:.1} B/vector (index {:.1})",
        r.algo,
        r.metric,
        r.n,
        r.dim,
        r.k,
        r.builds,
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
