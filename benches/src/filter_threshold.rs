//! `shoal-bench filter-threshold`: where does scanning a filter's ids exactly start to beat
//! the filtered graph walk? Builds one HNSW index, then for each selectivity times both
//! strategies over the same queries and random filters and prints QPS and recall of each.
//! The crossover is the default of `HnswParams::exact_filter_fraction`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use shoal_index::{FilterStrategy, HnswIndex, HnswParams, Metric, RoaringBitmap, VectorIndex};

use crate::vecs::read_vectors;

/// Arguments of `shoal-bench filter-threshold`.
#[derive(Debug, Args)]
pub struct ThresholdArgs {
    #[arg(long)]
    pub base: PathBuf,
    #[arg(long)]
    pub queries: PathBuf,
    /// Use only the first N base vectors.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    #[arg(long, default_value_t = 64)]
    pub ef: usize,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.001,0.002,0.005,0.01,0.02,0.05,0.1,0.2,0.5"
    )]
    pub selectivity: Vec<f64>,
    #[arg(long, default_value_t = 2)]
    pub build_threads: usize,
}

/// A deterministic pseudo-random subset holding about `fraction` of `0..n`.
fn subset(n: usize, fraction: f64, salt: u64) -> RoaringBitmap {
    let cut = (fraction * u32::MAX as f64) as u64;
    (0..n as u32)
        .filter(|&i| {
            let mut z = u64::from(i) ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
            z ^= z >> 33;
            (z & 0xffff_ffff) < cut
        })
        .collect()
}

pub fn run(args: &ThresholdArgs) -> Result<()> {
    let base = read_vectors(&args.base)?;
    let queries = read_vectors(&args.queries)?;
    let n = args.limit.map_or(base.rows, |l| l.min(base.rows));
    let index = HnswIndex::new(base.cols, Metric::L2, n, HnswParams::default())?;
    let ids: Vec<u32> = (0..n as u32).collect();
    index.add_parallel(&ids, &base.data[..n * base.cols], args.build_threads)?;
    let nq = queries.rows.min(200);
    println!("n={n} k={} ef={} queries={nq}", args.k, args.ef);
    println!(
        "{:>11} {:>11} {:>11} {:>12} {:>12}",
        "selectivity", "exact_qps", "walk_qps", "walk_recall", "faster"
    );
    for &fraction in &args.selectivity {
        let mut times = [0f64; 2];
        let mut hits = 0usize;
        let mut wanted = 0usize;
        for qi in 0..nq {
            let filter = subset(n, fraction, qi as u64);
            let q = queries.row(qi);
            let t = Instant::now();
            let exact = index.search_with(
                q,
                args.k,
                Some(args.ef),
                Some(&filter),
                FilterStrategy::Exact,
            )?;
            times[0] += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let walk = index.search_with(
                q,
                args.k,
                Some(args.ef),
                Some(&filter),
                FilterStrategy::Walk,
            )?;
            times[1] += t.elapsed().as_secs_f64();
            hits += walk
                .iter()
                .filter(|w| exact.iter().any(|e| e.id == w.id))
                .count();
            wanted += exact.len();
        }
        let (exact_qps, walk_qps) = (nq as f64 / times[0], nq as f64 / times[1]);
        println!(
            "{fraction:>11} {exact_qps:>11.0} {walk_qps:>11.0} {:>12.4} {:>12}",
            hits as f64 / wanted.max(1) as f64,
            if exact_qps > walk_qps {
                "exact"
            } else {
                "walk"
            }
        );
    }
    Ok(())
}
