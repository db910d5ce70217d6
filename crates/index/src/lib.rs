//! Shoal's vector indexes: exact FLAT and approximate HNSW over FLOAT32 vectors, with
//! filters applied inside the search, range search, deletes that keep recall, concurrent
//! readers and writers, and a versioned byte format.
//!
//! Both kinds sit behind [`VectorIndex`], keyed by dense u32 ids that the engine maps to
//! document keys. Readers never take a lock that a writer holds for longer than one node's
//! update; see `grace` for how deleted memory is reused under lock-free readers.

mod codec;
mod error;
mod filter;
mod flat;
mod grace;
mod head_dot;
mod hnsw;
mod metric;
pub mod prefetch;
mod shared_bound;
mod slots;
mod sq8;
mod topk;
mod visited;
mod words;

use std::io::{Read, Write};

pub use error::{IndexError, Result};
pub use filter::{IdFilter, Predicate};
pub use flat::FlatIndex;
pub use hnsw::{FilterStrategy, HnswIndex, HnswParams};
pub use metric::{scalar, Metric};
pub use roaring::RoaringBitmap;
pub use shared_bound::SharedBound;
pub use slots::MAX_ID;
pub use topk::Neighbor;

/// Largest vector dimension an index accepts (valkey-search's limit).
pub const MAX_DIM: usize = 32_768;

/// Default `epsilon` of range search: how far past the radius the walk keeps exploring,
/// relative to the radius (RediSearch's default).
pub const DEFAULT_EPSILON: f32 = 0.01;

/// What an index is built with.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexConfig {
    /// Vector length.
    pub dim: usize,
    /// Distance metric.
    pub metric: Metric,
    /// Vectors to preallocate room for (INITIAL_CAP); the index grows past it.
    pub initial_cap: usize,
    /// FLAT or HNSW.
    pub algorithm: Algorithm,
}

/// The kind of index and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Algorithm {
    /// Exact brute force.
    Flat,
    /// Hierarchical navigable small world graph.
    Hnsw(HnswParams),
}

/// The API both index kinds offer. Every method takes `&self`: writers and readers run
/// concurrently and the index synchronises internally.
pub trait VectorIndex: Send + Sync + std::fmt::Debug {
    /// Vector length.
    fn dim(&self) -> usize;
    /// Distance metric.
    fn metric(&self) -> Metric;
    /// Adds `vector` under `id`; fails if `id` is present.
    fn add(&self, id: u32, vector: &[f32]) -> Result<()>;
    /// Removes `id`; fails if it is absent.
    fn remove(&self, id: u32) -> Result<()>;
    /// Adds `vector` under `id`, replacing the vector `id` had, if any.
    fn replace(&self, id: u32, vector: &[f32]) -> Result<()> {
        match self.remove(id) {
            Ok(()) | Err(IndexError::UnknownId(_)) => self.add(id, vector),
            Err(e) => Err(e),
        }
    }
    /// Whether `id` is present.
    fn contains(&self, id: u32) -> bool;
    /// The k nearest ids to `query` that `filter` allows, closest first. `ef` overrides
    /// the index's EF_RUNTIME for this query (HNSW only; FLAT is exact).
    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&dyn IdFilter>,
    ) -> Result<Vec<Neighbor>>;
    /// [`VectorIndex::search`] for one part of a search over several indexes: the
    /// neighbours farther than `bar` (the k-th nearest that the other parts returned so
    /// far) cannot enter the search's answer, so an HNSW walk stops looking among them
    /// (see `SharedBound`). FLAT measures everything anyway.
    fn search_under(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&dyn IdFilter>,
        _bar: &SharedBound,
    ) -> Result<Vec<Neighbor>> {
        self.search(query, k, ef, filter)
    }
    /// Every allowed id within `radius` of `query`, closest first. `epsilon` widens the
    /// HNSW walk's boundary (default [`DEFAULT_EPSILON`]); FLAT is exact.
    fn range_search(
        &self,
        query: &[f32],
        radius: f32,
        epsilon: Option<f32>,
        filter: Option<&dyn IdFilter>,
    ) -> Result<Vec<Neighbor>>;
    /// Number of vectors present.
    fn len(&self) -> usize;
    /// Whether the index holds no vectors.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Vectors the index can hold without allocating.
    fn capacity(&self) -> usize;
    /// Bytes of memory the index has reserved.
    fn memory_usage(&self) -> usize;
    /// Writes the index in the versioned byte format.
    fn serialize(&self, w: &mut dyn Write) -> Result<()>;

    /// Adds many vectors (`vectors` holds `ids.len()` rows back to back) on `threads`
    /// threads. Stops at the first error and returns it.
    fn add_parallel(&self, ids: &[u32], vectors: &[f32], threads: usize) -> Result<()> {
        let dim = self.dim();
        if vectors.len() != ids.len() * dim {
            return Err(IndexError::DimensionMismatch {
                expected: ids.len() * dim,
                got: vectors.len(),
            });
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = parking_lot::Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..threads.clamp(1, MAX_THREADS) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= ids.len() || failed.lock().is_some() {
                        break;
                    }
                    if let Err(e) = self.add(ids[i], &vectors[i * dim..(i + 1) * dim]) {
                        *failed.lock() = Some(e);
                    }
                });
            }
        });
        failed.into_inner().map_or(Ok(()), Err)
    }
}

/// Builds an empty index.
pub fn build(config: &IndexConfig) -> Result<Box<dyn VectorIndex>> {
    match &config.algorithm {
        Algorithm::Flat => Ok(Box::new(FlatIndex::new(
            config.dim,
            config.metric,
            config.initial_cap,
        )?)),
        Algorithm::Hnsw(params) => Ok(Box::new(HnswIndex::new(
            config.dim,
            config.metric,
            config.initial_cap,
            params.clone(),
        )?)),
    }
}

/// Reads an index written by [`VectorIndex::serialize`], whichever kind it is.
pub fn deserialize(r: &mut dyn Read) -> Result<Box<dyn VectorIndex>> {
    let bytes = codec::read_all(r)?;
    let decoder = codec::Decoder::open(&bytes)?;
    match decoder.kind {
        codec::Kind::Flat => Ok(Box::new(FlatIndex::decode(decoder)?)),
        codec::Kind::Hnsw => Ok(Box::new(HnswIndex::decode(decoder)?)),
    }
}

/// Most threads a batched call spawns, whatever it is asked for.
pub(crate) const MAX_THREADS: usize = 256;

/// Checks INITIAL_CAP: slot ids are below 2^31.
pub(crate) fn check_capacity(initial_cap: usize) -> Result<()> {
    if initial_cap > MAX_ID as usize + 1 {
        Err(IndexError::InvalidParameter(format!(
            "INITIAL_CAP must be at most {}, got {initial_cap}",
            MAX_ID as usize + 1
        )))
    } else {
        Ok(())
    }
}

/// Checks a dimension.
pub(crate) fn check_dim(dim: usize) -> Result<()> {
    if dim == 0 || dim > MAX_DIM {
        Err(IndexError::InvalidParameter(format!(
            "dimension must be between 1 and {MAX_DIM}, got {dim}"
        )))
    } else {
        Ok(())
    }
}
