//! Shared test data: seeded clustered vectors and brute-force ground truth.
#![allow(dead_code, clippy::unwrap_used)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_index::{Algorithm, HnswParams, IdFilter, IndexConfig, Metric, Neighbor, VectorIndex};

/// `n` vectors drawn from the mixture of `clusters` anisotropic Gaussian clusters in `dim`
/// dimensions. The mixture depends only on (dim, clusters), so data and queries drawn
/// with different seeds come from the same distribution, as queries do in practice.
/// Per-axis scales are log-uniform over [0.05, 2]: a few axes carry most of a cluster's
/// spread, as in real embeddings (isotropic high-dimensional noise is far harder than any
/// real data).
pub fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut shape = StdRng::seed_from_u64((dim as u64) << 32 | clusters as u64);
    let centers: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| shape.gen_range(-10.0..10.0)).collect())
        .collect();
    let scales: Vec<Vec<f32>> = (0..clusters)
        .map(|_| {
            (0..dim)
                .map(|_| shape.gen_range(0.05f32.ln()..2.0f32.ln()).exp())
                .collect()
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let c = rng.gen_range(0..clusters);
            (0..dim)
                .map(|d| centers[c][d] + gauss(&mut rng) * scales[c][d])
                .collect()
        })
        .collect()
}

pub fn gauss(rng: &mut StdRng) -> f32 {
    let u1: f32 = rng.gen_range(f32::EPSILON..1.0);
    let u2: f32 = rng.gen_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

/// Exact k nearest (id, distance) by the scalar reference, over ids `filter` allows.
pub fn brute_force(
    data: &[Vec<f32>],
    q: &[f32],
    k: usize,
    metric: Metric,
    filter: Option<&dyn IdFilter>,
) -> Vec<(u32, f64)> {
    let mut all: Vec<(u32, f64)> = data
        .iter()
        .enumerate()
        .filter(|(i, _)| filter.is_none_or(|f| f.allows(*i as u32)))
        .map(|(i, v)| (i as u32, metric.reference_distance(q, v)))
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

/// Fraction of the true top-k found.
pub fn recall(found: &[Neighbor], truth: &[(u32, f64)]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    let hits = found
        .iter()
        .filter(|n| truth.iter().any(|t| t.0 == n.id))
        .count();
    hits as f64 / truth.len() as f64
}

pub fn hnsw_config(dim: usize, metric: Metric, cap: usize) -> IndexConfig {
    IndexConfig {
        dim,
        metric,
        initial_cap: cap,
        algorithm: Algorithm::Hnsw(HnswParams {
            m: 16,
            ef_construction: 200,
            ..HnswParams::default()
        }),
    }
}

pub fn flat_config(dim: usize, metric: Metric, cap: usize) -> IndexConfig {
    IndexConfig {
        dim,
        metric,
        initial_cap: cap,
        algorithm: Algorithm::Flat,
    }
}

pub fn fill(index: &dyn VectorIndex, data: &[Vec<f32>]) {
    for (i, v) in data.iter().enumerate() {
        index.add(i as u32, v).unwrap();
    }
}

/// Mean recall@k of `index` over `queries` at `ef`.
pub fn mean_recall(
    index: &dyn VectorIndex,
    data: &[Vec<f32>],
    queries: &[Vec<f32>],
    k: usize,
    ef: usize,
    filter: Option<&dyn IdFilter>,
) -> f64 {
    let metric = index.metric();
    let total: f64 = queries
        .iter()
        .map(|q| {
            let found = index.search(q, k, Some(ef), filter).unwrap();
            recall(&found, &brute_force(data, q, k, metric, filter))
        })
        .sum();
    total / queries.len() as f64
}
