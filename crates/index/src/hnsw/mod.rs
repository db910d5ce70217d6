//! HNSW: the hierarchical navigable small world graph of Malkov & Yashunin, with the
//! paper's neighbour-selection heuristic, filters applied inside the walk, range search,
//! tombstone deletes repaired in batches, and lock-free readers.
//!
//! Module map: `graph` stores nodes and links; `search` walks the graph; `insert` adds a
//! node; `repair` removes tombstones and reconnects their neighbours; `format` writes and
//! reads the byte stream.

mod format;
mod graph;
mod insert;
mod repair;
mod search;

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::error::{IndexError, Result};
use crate::filter::IdFilter;
use crate::grace::Grace;
use crate::metric::Metric;
use crate::shared_bound::SharedBound;
use crate::slots::{check_id, IdMap, SlotPool};
use crate::topk::Neighbor;
use crate::visited::Pool;
use crate::{check_capacity, check_dim, VectorIndex};

use graph::{Graph, MAX_LEVEL};

/// Construction and query parameters of an HNSW index.
#[derive(Debug, Clone, PartialEq)]
pub struct HnswParams {
    /// Links per node above level 0 (level 0 gets 2·M). FT.CREATE's `M`.
    pub m: usize,
    /// Beam width while inserting. `EF_CONSTRUCTION`.
    pub ef_construction: usize,
    /// Default beam width of a query. `EF_RUNTIME`.
    pub ef_runtime: usize,
    /// Default range-search boundary factor. `EPSILON`.
    pub epsilon: f32,
    /// Seeds the level draws, which are a pure function of (seed, id) so that replicas
    /// applying the same writes build the same graph.
    pub seed: u64,
    /// A filter whose known cardinality is below this fraction of the index is answered
    /// by an exact scan of its ids instead of a filtered walk (docs/index.md says how it
    /// was measured). 0 disables the exact path.
    pub exact_filter_fraction: f64,
    /// Tombstones are repaired in one batch once they reach this fraction of the nodes.
    pub repair_fraction: f64,
    /// KNN walks steer by 7- or 8-bit codes of the vectors (`sq8`) and re-rank what they
    /// keep by the FLOAT32 vectors: a quarter of the memory read per vector measured (at
    /// dimension 128 two lines instead of eight), for the codes' memory: 805.5 bytes per
    /// vector at 200k × 128, M 16 (hnswlib 774; docs/index.md).
    /// Not part of the byte format (the codes are derived data):
    /// a decoded index takes the default, on unless built with the `float-walk` feature.
    pub sq8_walk: bool,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_runtime: 10,
            epsilon: crate::DEFAULT_EPSILON,
            seed: 0x5eed,
            exact_filter_fraction: 0.03,
            repair_fraction: 0.1,
            // The `float-walk` feature builds a server whose walks use the FLOAT32
            // vectors, for measuring the codes against them (docs/benchmarks.md).
            sq8_walk: !cfg!(feature = "float-walk"),
        }
    }
}

impl HnswParams {
    fn check(&self) -> Result<()> {
        let bad = |what: String| Err(IndexError::InvalidParameter(what));
        if !(2..=512).contains(&self.m) {
            return bad(format!("M must be between 2 and 512, got {}", self.m));
        }
        if !(1..=4096).contains(&self.ef_construction) {
            return bad(format!(
                "EF_CONSTRUCTION must be between 1 and 4096, got {}",
                self.ef_construction
            ));
        }
        if !(1..=4096).contains(&self.ef_runtime) {
            return bad(format!(
                "EF_RUNTIME must be between 1 and 4096, got {}",
                self.ef_runtime
            ));
        }
        if !(self.epsilon.is_finite() && self.epsilon >= 0.0) {
            return bad(format!(
                "EPSILON must be a non-negative number, got {}",
                self.epsilon
            ));
        }
        if !(0.0..=1.0).contains(&self.exact_filter_fraction)
            || !(0.0..=1.0).contains(&self.repair_fraction)
        {
            return bad("fractions must be between 0 and 1".into());
        }
        Ok(())
    }
}

/// How a filtered KNN query is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterStrategy {
    /// Exact scan of the filter's ids when its cardinality is below
    /// `exact_filter_fraction` of the index, the filtered walk otherwise.
    Auto,
    /// Always the filtered graph walk.
    Walk,
    /// Always the exact scan of the filter's ids (falls back to the walk for filters that
    /// cannot list their ids).
    Exact,
}

/// Entry point packed as `level << 32 | slot`; `EMPTY` while the graph has no node.
const EMPTY: u64 = u64::MAX;

/// An HNSW index.
#[derive(Debug)]
pub struct HnswIndex {
    metric: Metric,
    params: HnswParams,
    /// 1 / ln(M): the level distribution's scale.
    level_scale: f64,
    graph: Graph,
    pool: SlotPool,
    ids: IdMap,
    entry: AtomicU64,
    /// Serialises changes of the entry point (a node rising above the top level).
    entry_lock: Mutex<()>,
    /// Inserts and removes share it; repair and serialization take it alone. Searches
    /// never touch it.
    structure: RwLock<()>,
    tombstones: AtomicUsize,
    grace: Grace,
    scratch: Pool<search::WalkState>,
}

impl HnswIndex {
    /// An empty index with room for `initial_cap` vectors.
    pub fn new(
        dim: usize,
        metric: Metric,
        initial_cap: usize,
        params: HnswParams,
    ) -> Result<HnswIndex> {
        check_dim(dim)?;
        check_capacity(initial_cap)?;
        params.check()?;
        Ok(HnswIndex {
            metric,
            level_scale: 1.0 / (params.m as f64).ln(),
            graph: Graph::new(
                dim,
                params.m,
                initial_cap,
                params.sq8_walk.then_some(metric),
            ),
            params,
            pool: SlotPool::default(),
            ids: IdMap::with_capacity(initial_cap),
            entry: AtomicU64::new(EMPTY),
            entry_lock: Mutex::new(()),
            structure: RwLock::new(()),
            tombstones: AtomicUsize::new(0),
            grace: Grace::default(),
            scratch: Pool::default(),
        })
    }

    /// The parameters the index was built with.
    pub fn params(&self) -> &HnswParams {
        &self.params
    }

    /// KNN with an explicit choice between the filtered walk and the exact filtered scan;
    /// [`VectorIndex::search`] is this with [`FilterStrategy::Auto`].
    pub fn search_with(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&dyn IdFilter>,
        strategy: FilterStrategy,
    ) -> Result<Vec<Neighbor>> {
        self.search_within(query, k, ef, filter, strategy, None)
    }

    /// [`HnswIndex::search_with`], looking no farther than `bar` allows where given.
    fn search_within(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&dyn IdFilter>,
        strategy: FilterStrategy,
        bar: Option<&SharedBound>,
    ) -> Result<Vec<Neighbor>> {
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let ef = ef.unwrap_or(self.params.ef_runtime);
        if ef == 0 {
            return Err(IndexError::InvalidParameter(
                "EF_RUNTIME must be at least 1".into(),
            ));
        }
        let q = self.metric.prepare_borrowed(query, self.graph.dim)?;
        // Neither can usefully exceed the number of vectors; clamping keeps a huge k or ef
        // from sizing allocations.
        let k = k.min(self.ids.len().max(1));
        let ef = ef.max(k).min(self.ids.len().max(k));
        Ok(self.knn(&q, k, ef, filter, strategy, bar))
    }

    /// Removed vectors not yet repaired out of the graph.
    pub fn tombstones(&self) -> usize {
        self.tombstones.load(Ordering::Acquire)
    }

    fn prepare(&self, v: &[f32]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.graph.dim);
        self.metric.prepare(v, self.graph.dim, &mut out)?;
        Ok(out)
    }

    /// The level of `id`'s node: geometric with scale 1/ln(M), drawn from a hash of
    /// (seed, id) so it is the same on every replica and in any insertion order.
    fn level_for(&self, id: u32) -> usize {
        let mut z = self.params.seed ^ (u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // Uniform in (0, 1].
        let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-u.ln() * self.level_scale) as usize).min(MAX_LEVEL)
    }

    fn entry(&self) -> Option<(u32, usize)> {
        match self.entry.load(Ordering::Acquire) {
            EMPTY => None,
            e => Some((e as u32, (e >> 32) as usize)),
        }
    }

    fn set_entry(&self, entry: Option<(u32, usize)>) {
        let packed = entry.map_or(EMPTY, |(slot, level)| {
            ((level as u64) << 32) | u64::from(slot)
        });
        self.entry.store(packed, Ordering::Release);
    }

    /// Repairs tombstones when they have reached `repair_fraction` of the nodes.
    fn maybe_repair(&self) {
        let dead = self.tombstones();
        let live = self.len();
        if dead >= 16 && dead as f64 >= self.params.repair_fraction * (live + dead) as f64 {
            self.repair();
        }
    }
}

impl VectorIndex for HnswIndex {
    fn dim(&self) -> usize {
        self.graph.dim
    }

    fn metric(&self) -> Metric {
        self.metric
    }

    fn add(&self, id: u32, vector: &[f32]) -> Result<()> {
        check_id(id)?;
        let prepared = self.prepare(vector)?;
        // Reclaim tombstoned slots before the graph would grow into a new chunk.
        if self.tombstones() > 0
            && self.pool.free_count() == 0
            && !self.graph.is_backed(self.pool.high_water())
        {
            self.repair();
        }
        let _shared = self.structure.read();
        self.insert(id, &prepared)
    }

    fn remove(&self, id: u32) -> Result<()> {
        {
            let _shared = self.structure.read();
            let slot = self.ids.remove(id).ok_or(IndexError::UnknownId(id))?;
            self.graph.mark_deleted(slot);
            self.tombstones.fetch_add(1, Ordering::AcqRel);
        }
        self.maybe_repair();
        Ok(())
    }

    fn contains(&self, id: u32) -> bool {
        self.ids.get(id).is_some()
    }

    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&dyn IdFilter>,
    ) -> Result<Vec<Neighbor>> {
        self.search_with(query, k, ef, filter, FilterStrategy::Auto)
    }

    fn search_under(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&dyn IdFilter>,
        bar: &SharedBound,
    ) -> Result<Vec<Neighbor>> {
        self.search_within(query, k, ef, filter, FilterStrategy::Auto, Some(bar))
    }

    fn range_search(
        &self,
        query: &[f32],
        radius: f32,
        epsilon: Option<f32>,
        filter: Option<&dyn IdFilter>,
    ) -> Result<Vec<Neighbor>> {
        let epsilon = epsilon.unwrap_or(self.params.epsilon);
        if !(radius.is_finite() && epsilon.is_finite() && epsilon >= 0.0) {
            return Err(IndexError::InvalidParameter(
                "radius must be finite and epsilon non-negative".into(),
            ));
        }
        let q = self.metric.prepare_borrowed(query, self.graph.dim)?;
        Ok(self.range(&q, radius, epsilon, filter))
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn capacity(&self) -> usize {
        self.graph.capacity()
    }

    fn memory_usage(&self) -> usize {
        self.graph.allocated_bytes()
            + self.ids.bytes()
            + self.scratch.sum(search::WalkState::bytes)
            + self.pool.free_count() * 4
    }

    fn serialize(&self, w: &mut dyn Write) -> Result<()> {
        let bytes = {
            let _exclusive = self.structure.write();
            self.encode()
        };
        w.write_all(&bytes)?;
        Ok(())
    }
}
