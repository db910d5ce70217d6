//! `shoal-bench engine-search`: FT.SEARCH through the engine's own read path, in-process.
//!
//! Issue #3's latency bar sets a server round trip against `shoal-bench ann`'s bare
//! index, built at once in id order. Between the two sit the engine (parse, plan, the
//! walk over the graph the engine built from pipelined HSETs, fields, the reply) and the
//! server (framing, sockets, tasks). This builds the index as a server does, FT.CREATE
//! then HSETs applied `--chunk` at a time, and times in whole passes, taking turns, the
//! bare walk of an index built as `ann` builds it, the bare walk on the engine's graph
//! and the engine's whole FT.SEARCH. So a slower server search can be split into the
//! graph it walks, the engine around the walk, and the rest.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use shoal_engine::search_index::FieldIndex;
use shoal_engine::{Engine, ReadContext, Reply, Write};
use shoal_index::{HnswIndex, HnswParams, Metric, VectorIndex};

use crate::ann::{percentile, recall};
use crate::vecs::{read_ids, read_vectors, Matrix};

/// Arguments of `shoal-bench engine-search`.
#[derive(Debug, Args)]
pub struct EngineSearchArgs {
    /// Base vectors (.fvecs or .npy).
    #[arg(long)]
    pub base: PathBuf,
    /// Query vectors (.fvecs or .npy).
    #[arg(long)]
    pub queries: PathBuf,
    /// Ground-truth ids under L2 (.ivecs or .npy).
    #[arg(long)]
    pub groundtruth: PathBuf,
    /// HSETs per `apply_many`: what one read of a pipelining connection hands the engine.
    #[arg(long, default_value_t = 1000)]
    pub chunk: usize,
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    #[arg(long, default_value_t = 20)]
    pub ef: usize,
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// The index's name: HNSW level draws are seeded by it (and the field's).
    #[arg(long, default_value = "idx")]
    pub index_name: String,
    /// Initial capacity of the bare index (default: the base set's size). A smaller one
    /// makes it grow past its first chunk, as an index created with a small INITIAL_CAP
    /// does.
    #[arg(long)]
    pub bare_cap: Option<usize>,
    /// Timed passes of each kind over all queries (after one untimed pass).
    #[arg(long, default_value_t = 3)]
    pub passes: usize,
    /// Write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    n: usize,
    dim: usize,
    chunk: usize,
    ef: usize,
    k: usize,
    /// HSETs applied per second through `Engine::apply_many`.
    ingest_per_second: f64,
    /// `VectorIndex::search` on an index built as `shoal-bench ann` builds it (all at
    /// once, in id order, 2 threads, its default seed): the bar's in-process search.
    bare_walk_p50_us: f64,
    bare_recall: f64,
    bare_cap: usize,
    /// `VectorIndex::search` on the engine's graph.
    walk_p50_us: f64,
    walk_p99_us: f64,
    walk_recall: f64,
    /// `Engine::query` of the FT.SEARCH issue #3's benchmark sends.
    ft_search_p50_us: f64,
    ft_search_p99_us: f64,
    ft_search_recall: f64,
    /// FT.SEARCH's p50 minus the walk's: the engine around the walk.
    around_walk_p50_us: f64,
}

pub fn run(args: &EngineSearchArgs) -> Result<()> {
    if args.k == 0 || args.chunk == 0 || args.passes == 0 {
        bail!("--k, --chunk and --passes must be at least 1");
    }
    let base = read_vectors(&args.base)?;
    let queries = read_vectors(&args.queries)?;
    let truth = read_ids(&args.groundtruth)?;
    if base.cols != queries.cols || truth.rows < queries.rows || truth.cols < args.k {
        bail!("base, queries and ground truth do not match");
    }
    let mut engine = Engine::new();
    let ingest_per_second = ingest(&mut engine, &base, args)?;
    let index = engine
        .index(&args.index_name)
        .context("FT.CREATE made no index")?;
    let bare_cap = args.bare_cap.unwrap_or(base.rows);
    let bare = HnswIndex::new(
        base.cols,
        Metric::L2,
        bare_cap,
        HnswParams {
            m: args.m,
            ef_construction: args.ef_construction,
            ..HnswParams::default()
        },
    )?;
    let ids: Vec<u32> = (0..base.rows as u32).collect();
    bare.add_parallel(&ids, &base.data, 2)?;
    let Some(FieldIndex::Vector(vectors)) = index.fields.first() else {
        bail!("the index's first field is not its vector");
    };
    let ctx = ReadContext {
        now_ms: 1,
        resp3: false,
        in_apply: false,
    };
    let query_text = format!("*=>[KNN {} @vec $q EF_RUNTIME {}]", args.k, args.ef);
    let blobs: Vec<Vec<u8>> = (0..queries.rows)
        .map(|q| {
            queries
                .row(q)
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect()
        })
        .collect();
    let ft_search = |q: usize| {
        let command: [&[u8]; 12] = [
            b"FT.SEARCH",
            args.index_name.as_bytes(),
            query_text.as_bytes(),
            b"PARAMS",
            b"2",
            b"q",
            &blobs[q],
            b"RETURN",
            b"1",
            b"__vec_score",
            b"DIALECT",
            b"2",
        ];
        engine.query(&command, ctx)
    };
    let walk = |q: usize| vectors.search(queries.row(q), args.k, Some(args.ef), None);
    let bare_walk = |q: usize| bare.search(queries.row(q), args.k, Some(args.ef), None);
    // The untimed first pass gives recall and warms the caches.
    let (mut bare_hits, mut walk_hits, mut search_hits) = (0.0, 0.0, 0.0);
    for (q, want) in (0..queries.rows).map(|q| (q, &truth.row(q)[..args.k])) {
        bare_hits += recall(bare_walk(q)?.iter().map(|n| n.id), want);
        walk_hits += recall(walk(q)?.iter().map(|n| n.id), want);
        search_hits += recall(reply_ids(&ft_search(q))?, want);
    }
    // Whole passes of one kind, the kinds in a rotating order: a query searched twice in
    // a row finds the second walk's nodes in cache, and the host's speed drifts.
    let mut times: [Vec<f64>; 3] = Default::default();
    for pass in 0..args.passes * 3 {
        let kind = (pass + pass / 3) % 3;
        for q in 0..queries.rows {
            let t = Instant::now();
            match kind {
                0 => drop(std::hint::black_box(bare_walk(q)?)),
                1 => drop(std::hint::black_box(walk(q)?)),
                _ => drop(std::hint::black_box(ft_search(q))),
            }
            times[kind].push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    for v in &mut times {
        v.sort_by(f64::total_cmp);
    }
    let [bare_times, walks, searches] = times;
    let n_queries = queries.rows as f64;
    let report = Report {
        n: base.rows,
        dim: base.cols,
        chunk: args.chunk,
        ef: args.ef,
        k: args.k,
        ingest_per_second,
        bare_walk_p50_us: percentile(&bare_times, 0.5),
        bare_recall: bare_hits / n_queries,
        bare_cap,
        walk_p50_us: percentile(&walks, 0.5),
        walk_p99_us: percentile(&walks, 0.99),
        walk_recall: walk_hits / n_queries,
        ft_search_p50_us: percentile(&searches, 0.5),
        ft_search_p99_us: percentile(&searches, 0.99),
        ft_search_recall: search_hits / n_queries,
        around_walk_p50_us: percentile(&searches, 0.5) - percentile(&walks, 0.5),
    };
    println!(
        "ingest {:.0}/s; bare walk p50 {:.1} us (recall {:.4}); walk p50 {:.1} us (recall {:.4}); FT.SEARCH p50 {:.1} us \
         (recall {:.4}); around the walk p50 {:.1} us",
        report.ingest_per_second,
        report.bare_walk_p50_us,
        report.bare_recall,
        report.walk_p50_us,
        report.walk_recall,
        report.ft_search_p50_us,
        report.ft_search_recall,
        report.around_walk_p50_us
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// FT.CREATE as `benches/resp/search_ingest.py` sends it, then the base set as
/// `HSET v:<i> vec <blob>` in runs of `--chunk` writes; returns HSETs per second.
fn ingest(engine: &mut Engine, base: &Matrix<f32>, args: &EngineSearchArgs) -> Result<f64> {
    let create: Vec<Vec<u8>> = [
        "FT.CREATE",
        &args.index_name,
        "ON",
        "HASH",
        "PREFIX",
        "1",
        "v:",
        "SCHEMA",
        "vec",
        "VECTOR",
        "HNSW",
        "12",
        "TYPE",
        "FLOAT32",
        "DIM",
        &base.cols.to_string(),
        "DISTANCE_METRIC",
        "L2",
        "M",
        &args.m.to_string(),
        "EF_CONSTRUCTION",
        &args.ef_construction.to_string(),
        "INITIAL_CAP",
        &base.rows.to_string(),
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    if let Some(Reply::Error(e)) = engine.apply(&Write::single(1, create)).first() {
        bail!("FT.CREATE: {e}");
    }
    let started = Instant::now();
    for start in (0..base.rows).step_by(args.chunk) {
        let writes: Vec<Write> = (start..(start + args.chunk).min(base.rows))
            .map(|i| {
                let blob = base.row(i).iter().flat_map(|x| x.to_le_bytes()).collect();
                Write::single(
                    1,
                    vec![
                        b"HSET".to_vec(),
                        format!("v:{i}").into(),
                        b"vec".to_vec(),
                        blob,
                    ],
                )
            })
            .collect();
        for reply in engine.apply_many(&writes).iter().flatten() {
            if let Reply::Error(e) = reply {
                bail!("HSET: {e}");
            }
        }
    }
    Ok(base.rows as f64 / started.elapsed().as_secs_f64())
}

/// The ids of an FT.SEARCH reply's keys (`v:<id>`), in order.
fn reply_ids(reply: &Reply) -> Result<Vec<u32>> {
    let Reply::Array(items) = reply else {
        bail!("FT.SEARCH answered {reply:?}");
    };
    // [total, key, fields, key, fields, ...]
    items
        .iter()
        .skip(1)
        .step_by(2)
        .map(|item| {
            let Reply::Bulk(key) = item else {
                bail!("unexpected reply item {item:?}");
            };
            std::str::from_utf8(key)
                .ok()
                .and_then(|k| k.strip_prefix("v:"))
                .and_then(|id| id.parse().ok())
                .with_context(|| format!("unexpected key {key:?}"))
        })
        .collect()
}
