//! Walking the graph: greedy descent through the upper levels, the beam search of one
//! level with a filter applied inside it, the exact path for very selective filters, and
//! range search.

use super::graph::Graph;
use super::{FilterStrategy, HnswIndex};
use crate::filter::IdFilter;
use crate::metric::Metric;
use crate::prefetch::prefetch;
use crate::shared_bound::SharedBound;
use crate::slots::{id_of, label_word, DELETED};
use crate::sq8::{Sq8Query, Sq8Store};
use crate::topk::{unique_neighbors, Candidates, Key, Neighbor, TopK};
use crate::visited::Visited;
use crate::words::load;

/// Neighbours whose vectors are requested ahead of the one being measured: enough to
/// overlap memory latency, few enough not to flood the core's fill buffers. Measured in
/// pairs on 200k × 128 (docs/benchmarks.md, session 35): 8 walked 3–8% faster than 4
/// and 3 slower; 12 gained another 1–2% at ef 20 and up, inside the noise, so the
/// smaller depth stays for cores with fewer fill buffers. The coded walk's re-rank
/// requests its FLOAT32 vectors (nine lines each at 128 dimensions) as far ahead; the
/// pairs measured the two together.
const AHEAD: usize = 8;

/// The widest beam a range walk keeps outside its radius. An index's EF_RUNTIME may be
/// in the thousands for its KNN queries; a range query, which has no EF_RUNTIME of its
/// own, should not pay a walk that wide when it finds nothing.
const RANGE_BEAM: usize = 64;

/// Reusable buffers of one walk, pooled per index.
#[derive(Debug, Default)]
pub(crate) struct WalkState {
    pub(super) visited: Visited,
    pub(super) candidates: Candidates,
    pub(super) fresh: Vec<u32>,
    pub(super) results: TopK,
    /// A capped walk's own k nearest (`walk_layer_within`); a range walk's beam of the
    /// nearest nodes outside its radius (`HnswIndex::range`).
    pub(super) own: TopK,
    pub(super) sorted: Vec<Key>,
    /// Floors of `sorted`'s nodes in a coded re-rank.
    pub(super) floors: Vec<f32>,
}

impl WalkState {
    pub(crate) fn bytes(&self) -> usize {
        self.visited.bytes()
            + self.candidates.bytes()
            + self.results.bytes()
            + self.own.bytes()
            + (self.fresh.capacity() + 2 * self.sorted.capacity() + self.floors.capacity()) * 4
    }
}

/// The beam width of a coded walk asked for `ef`: a quarter wider, so that the nodes
/// the codes misplace around the edge of the beam are still in it when the exact distances
/// re-rank it. Measured on 200k × 128 (docs/index.md, "Coded walks"): with the first,
/// zero-centred codes a beam of exactly `ef` lost recall against the FLOAT32 walk at ef 10
/// and 20; with the present codes a quarter wider finds more than the FLOAT32 walk at
/// every ef.
pub(super) fn sq8_width(ef: usize) -> usize {
    ef + ef.div_ceil(4)
}

/// How far past a shared bar (an exact distance) a walk still looks: the walk compares
/// the codes' approximate distances against it, and a node whose code lies a little
/// beyond the bar may lie under it. A fraction of the bar's size, and an absolute
/// floor for bars at or near 0.
fn beyond_bar(bar: f32) -> f32 {
    bar + bar.abs() * BAR_SLACK + BAR_SLACK_MIN
}

/// See [`beyond_bar`].
const BAR_SLACK: f32 = 0.05;
/// See [`beyond_bar`].
const BAR_SLACK_MIN: f32 = 1e-6;

/// How far a walk looks: the beam's bound, or `reach` where nearer, but only once the
/// beam is full: until then every node found may yet lead somewhere (a walk that
/// admitted only nodes nearer than its nearest would descend greedily and stall in a
/// local minimum, as a first version did: recall@10 0.83 through a router instead of
/// 0.997). `reach` is compared first so that an infinite one folds away where it is a
/// constant.
#[inline(always)]
fn within(results: &TopK, reach: f32) -> f32 {
    let bound = results.bound();
    if reach < bound && results.is_full() {
        reach
    } else {
        bound
    }
}

/// How a walk measures a query's distance to a node: what a graph walk is generic over,
/// so that each kind of measure gets its own compiled loop.
pub(super) trait Probe {
    /// Distance from the query to `slot`.
    fn distance(&self, slot: u32) -> f32;
    /// Requests what [`Probe::distance`] of `slot` will read.
    fn prefetch(&self, slot: u32);
}

/// Exact distances on the FLOAT32 vectors: inserts, repairs, range and exact searches.
pub(super) struct Exact<'a> {
    pub(super) graph: &'a Graph,
    pub(super) metric: Metric,
    pub(super) q: &'a [f32],
}

impl Probe for Exact<'_> {
    #[inline(always)]
    fn distance(&self, slot: u32) -> f32 {
        self.metric.distance(self.q, self.graph.vector(slot))
    }

    #[inline(always)]
    fn prefetch(&self, slot: u32) {
        prefetch(self.graph.vector_ptr(slot), self.graph.prefetch_lines);
    }
}

/// Approximate distances on the vectors' 7- or 8-bit codes: the KNN walk (see `sq8`).
pub(super) struct Coded<'a> {
    codes: &'a Sq8Store,
    q: Sq8Query,
    lines: usize,
}

impl Probe for Coded<'_> {
    #[inline(always)]
    fn distance(&self, slot: u32) -> f32 {
        self.codes.distance(&self.q, slot)
    }

    #[inline(always)]
    fn prefetch(&self, slot: u32) {
        let (code, meta) = self.codes.ptrs(slot);
        prefetch(code, self.lines);
        if let Some(meta) = meta {
            prefetch(meta, 1);
        }
    }
}

impl HnswIndex {
    /// Distance from a prepared query to a stored node.
    #[inline]
    pub(super) fn dist(&self, q: &[f32], slot: u32) -> f32 {
        self.metric.distance(q, self.graph.vector(slot))
    }

    /// The exact measure of a prepared query.
    pub(super) fn exact<'a>(&'a self, q: &'a [f32]) -> Exact<'a> {
        Exact {
            graph: &self.graph,
            metric: self.metric,
            q,
        }
    }

    /// Greedy descent at one upper level: moves to the closest neighbour until none is
    /// closer. Deleted nodes are fine stepping stones.
    pub(super) fn greedy(
        &self,
        probe: &impl Probe,
        mut cur: u32,
        mut cur_d: f32,
        level: usize,
    ) -> (u32, f32) {
        loop {
            let mut moved = false;
            let links = self.graph.links(cur, level);
            for link in links {
                probe.prefetch(load(link));
            }
            for link in links {
                let n = load(link);
                let d = probe.distance(n);
                if d < cur_d {
                    (cur, cur_d, moved) = (n, d, true);
                    // Likely the next hop: start loading its links at this level.
                    prefetch(self.graph.upper_links_ptr(n, level), 2);
                }
            }
            if !moved {
                return (cur, cur_d);
            }
        }
    }

    /// Descends from the entry point to `stop_level + 1`'s closest node; returns the node
    /// and its distance, or None for an empty graph.
    pub(super) fn descend(
        &self,
        probe: &impl Probe,
        stop_level: usize,
    ) -> Option<(u32, f32, usize)> {
        let (ep, top) = self.entry()?;
        let (mut cur, mut cur_d) = (ep, probe.distance(ep));
        for level in (stop_level + 1..=top).rev() {
            (cur, cur_d) = self.greedy(probe, cur, cur_d, level);
        }
        Some((cur, cur_d, top))
    }

    /// Beam search of width `results.k` at `level` from `start`. Every reachable node may
    /// be traversed; only those `accept` admits enter `results`. Without a filter this is
    /// the search of the HNSW paper; with one, the walk goes on until `ef` admitted nodes
    /// are found or the reachable region is exhausted.
    // #[PerformanceCriticalPath]: the inner loop of every query and every insert.
    #[inline]
    pub(super) fn walk_layer(
        &self,
        probe: &impl Probe,
        start: (u32, f32),
        level: usize,
        accept: impl Fn(u32) -> bool,
        state: &mut WalkState,
        results: &mut TopK,
    ) {
        let everywhere = |_: f32| f32::INFINITY;
        self.walk_layer_within(probe, start, level, accept, everywhere, 0, state, results);
    }

    /// [`HnswIndex::walk_layer`] that, once its beam is full, looks no farther than
    /// `reach(own)`, where `own` is the distance of its `own_k`-th nearest admitted node
    /// (infinite until it has that many, or with `own_k` 0): nodes beyond are neither
    /// expanded nor kept. A search's later parts reach to the bar of its earlier ones
    /// (`SharedBound`) but never short of their own k nearest, so a walk with nothing
    /// under the bar still walks as a beam of k would (Lucene's greediness).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) fn walk_layer_within(
        &self,
        probe: &impl Probe,
        start: (u32, f32),
        level: usize,
        accept: impl Fn(u32) -> bool,
        reach: impl Fn(f32) -> f32,
        own_k: usize,
        state: &mut WalkState,
        results: &mut TopK,
    ) {
        let WalkState {
            visited,
            candidates,
            fresh,
            own,
            ..
        } = state;
        candidates.clear();
        visited.begin(self.pool.high_water() as usize);
        visited.insert(start.0);
        let start_key = Key::new(start.1, start.0);
        candidates.push(start_key);
        let track = own_k > 0;
        own.reset(own_k.max(1));
        if accept(start.0) {
            results.push(start_key);
            if track {
                own.push(start_key);
            }
        }
        // Infinite until the walk has its own k.
        let own_bound = |own: &TopK| if track { own.bound() } else { f32::INFINITY };
        while let Some(c) = candidates.pop() {
            // The beam's bound is infinite until it is full.
            let mut bound = within(results, reach(own_bound(own)));
            if c.distance() > bound {
                break;
            }
            // The node expanded next is the closest candidate: the one on top now,
            // unless this node's neighbours bring a closer one. Its list is requested
            // as soon as it is known, so that the load overlaps the distances below
            // rather than stalling the next expansion (profiled: the read of a popped
            // node's list count was the walk's costliest instruction). Level 0 only:
            // an upper level's list is found through the node's record first.
            let ahead = level == 0;
            let mut next = candidates.peek();
            if let Some(top) = next.filter(|_| ahead) {
                let (ptr, lines) = self.graph.links_ptr(top.id());
                prefetch(ptr, lines);
            }
            // First pass: unvisited neighbours, with their vectors requested from memory
            // all at once so the loads overlap.
            fresh.clear();
            for link in self.graph.links(c.id(), level) {
                let n = load(link);
                if visited.insert(n) {
                    if fresh.len() < AHEAD {
                        probe.prefetch(n);
                    }
                    fresh.push(n);
                }
            }
            for (i, &n) in fresh.iter().enumerate() {
                if let Some(&later) = fresh.get(i + AHEAD) {
                    probe.prefetch(later);
                }
                let d = probe.distance(n);
                if d < bound {
                    let key = Key::new(d, n);
                    candidates.push(key);
                    // The heap's order: by distance, then by slot.
                    if ahead && next.is_none_or(|top| key < top) {
                        next = Some(key);
                        let (ptr, lines) = self.graph.links_ptr(n);
                        prefetch(ptr, lines);
                    }
                    if accept(n) {
                        results.push(key);
                        if track {
                            own.push(key);
                        }
                        bound = within(results, reach(own_bound(own)));
                    }
                }
            }
        }
    }

    /// Whether `slot` may be returned: not deleted and allowed by the filter.
    #[inline]
    fn admits(&self, slot: u32, filter: Option<&dyn IdFilter>) -> bool {
        let word = self.graph.label_word(slot);
        if word & DELETED != 0 {
            return false;
        }
        match (filter, id_of(word)) {
            (None, Some(_)) => true,
            (Some(f), Some(id)) => f.allows(id),
            (_, None) => false,
        }
    }

    /// Converts ascending slot keys to at most `limit` neighbours by caller id.
    fn to_neighbors(&self, keys: impl IntoIterator<Item = Key>, limit: usize) -> Vec<Neighbor> {
        let ids = keys
            .into_iter()
            .filter_map(|k| id_of(self.graph.label_word(k.id())).map(|id| (k.distance(), id)));
        unique_neighbors(ids, limit)
    }

    /// The filter to answer by an exact scan of its ids, if `strategy` says so.
    fn use_exact<'f>(
        &self,
        filter: Option<&'f dyn IdFilter>,
        strategy: FilterStrategy,
    ) -> Option<&'f dyn IdFilter> {
        let f = filter?;
        match strategy {
            FilterStrategy::Walk => None,
            FilterStrategy::Exact => Some(f),
            FilterStrategy::Auto => {
                let card = f.cardinality()?;
                let limit = self.params.exact_filter_fraction * self.ids.len() as f64;
                ((card as f64) < limit).then_some(f)
            }
        }
    }

    /// Distances to every allowed, present id, by id lookup. False if the filter cannot
    /// enumerate its ids.
    fn scan_allowed(&self, q: &[f32], f: &dyn IdFilter, mut sink: impl FnMut(Key)) -> bool {
        self.ids.with_read(|map| {
            f.for_each_allowed(&mut |id| {
                // Claims publish the slot before the id enters the map; the label check
                // skips a slot that a concurrent remove has just tombstoned.
                if let Some(&slot) = map.get(&id) {
                    if self.graph.label_word(slot) == label_word(id) {
                        sink(Key::new(self.dist(q, slot), slot));
                    }
                }
            })
        })
    }

    /// K nearest neighbours of a prepared query; with `bar`, only those a search's
    /// earlier parts leave room for need be found (see `SharedBound`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn knn(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&dyn IdFilter>,
        strategy: FilterStrategy,
        bar: Option<&SharedBound>,
    ) -> Vec<Neighbor> {
        let _reading = self.grace.read();
        if let Some(f) = self.use_exact(filter, strategy) {
            let mut top = TopK::new(k);
            if self.scan_allowed(q, f, |key| top.push(key)) {
                return self.to_neighbors(top.into_sorted(), k);
            }
        }
        let mut state = self.scratch.take();
        let answer = match bar {
            None => self.knn_within(q, k, ef, filter, |_| f32::INFINITY, 0, &mut state),
            Some(bar) => {
                let reach = |own: f32| beyond_bar(bar.get()).max(own);
                self.knn_within(q, k, ef, filter, reach, k, &mut state)
            }
        };
        self.scratch.give_back(state);
        answer
    }

    /// The walk of [`HnswIndex::knn`] and its answer, within `reach` of its own `own_k`
    /// nearest.
    #[allow(clippy::too_many_arguments)]
    fn knn_within(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&dyn IdFilter>,
        reach: impl Fn(f32) -> f32,
        own_k: usize,
        state: &mut WalkState,
    ) -> Vec<Neighbor> {
        match &self.graph.sq8 {
            Some(codes) => self.coded_knn(codes, q, k, ef, filter, reach, own_k, state),
            None if self.knn_walk(&self.exact(q), ef, filter, reach, own_k, state) => {
                self.to_neighbors(state.sorted.iter().copied(), k)
            }
            None => Vec::new(),
        }
    }

    /// The coded walk of a KNN query and its answer: the walk's nodes re-ranked by their
    /// exact distances, the first `k` returned.
    ///
    /// The walk's order came from the codes; what it returns is measured exactly, so
    /// distances are those of the vectors and ties of codes cannot push a closer node out
    /// of the first k. Not every node the walk kept needs measuring: once k are measured,
    /// a node whose code's floor (`Sq8Query::floor`, a distance its exact one cannot be
    /// below) lies above the k-th exact distance so far cannot enter the answer, and is
    /// skipped. The bound only falls as nodes are measured, so a skip stays right. Should
    /// the answer come out short or its k-th distance reach a skipped floor (an id met
    /// twice: removed and added again while the search ran), the skipped nodes are
    /// measured too: the answer
    /// is always the one re-ranking every node would give. Measured in pairs
    /// (docs/benchmarks.md, session 37): on 200k × 128 L2, searches 4%, 10% and 17%
    /// faster at ef 40, 80 and 160; narrower beams are measured whole.
    #[allow(clippy::too_many_arguments)]
    fn coded_knn(
        &self,
        codes: &Sq8Store,
        q: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&dyn IdFilter>,
        reach: impl Fn(f32) -> f32,
        own_k: usize,
        state: &mut WalkState,
    ) -> Vec<Neighbor> {
        let mut probe = Coded {
            codes,
            q: codes.query(q, self.metric),
            lines: codes.lines(),
        };
        if !self.knn_walk(&probe, sq8_width(ef), filter, reach, own_k, state) {
            return Vec::new();
        }
        // Where floors pay, measured in pairs (docs/benchmarks.md, sessions 37–38):
        //
        //   metric      beam ≤ 3k        beam > 3k
        //   L2          measure whole    skip by floors (1.04× at ef 40, 1.18× at 160)
        //   COSINE      measure whole    skip by floors (L2's, halved: session 38)
        //   IP          measure whole    measure whole: a floor tried for it was
        //                                looser; 0.97× at ef 40, 1.04× at 160 (COSINE)
        //
        // At k 10, ef 20 keeps 25 nodes: with floors, 2–3% slower in pairs.
        let exact = self.exact(q);
        if state.sorted.len() <= 3 * k || self.metric == Metric::Ip {
            let sorted = &mut state.sorted;
            for key in sorted.iter().take(AHEAD) {
                exact.prefetch(key.id());
            }
            for i in 0..sorted.len() {
                if let Some(later) = sorted.get(i + AHEAD) {
                    exact.prefetch(later.id());
                }
                let id = sorted[i].id();
                sorted[i] = Key::new(exact.distance(id), id);
            }
            sorted.sort_unstable();
            return self.to_neighbors(sorted.iter().copied(), k);
        }
        probe.q.prepare_floors(q);
        self.rerank_with_floors(codes, &probe.q, &exact, k, state)
    }

    /// The re-rank of a beam wider than 3k, skipping by floors (see `coded_knn`). Kept
    /// out of line: inlined, it slowed the walks of narrow beams by 1–3% (in pairs).
    #[inline(never)]
    fn rerank_with_floors(
        &self,
        codes: &Sq8Store,
        coded: &Sq8Query,
        exact: &Exact<'_>,
        k: usize,
        state: &mut WalkState,
    ) -> Vec<Neighbor> {
        let WalkState {
            sorted,
            floors,
            fresh: skipped,
            results: top,
            ..
        } = state;
        // The first k are measured whatever their floors: until then there is no bound.
        let floor = |j: usize, key: Key| {
            if j < k {
                f32::NEG_INFINITY
            } else {
                codes.floor(coded, key.distance(), key.id())
            }
        };
        floors.clear();
        skipped.clear();
        top.reset(k);
        // The walk never read these vectors: request each a few ahead of its measure, as
        // the walk does its codes, unless its floor already rules it out.
        for (j, &key) in sorted.iter().enumerate().take(AHEAD) {
            floors.push(floor(j, key));
            exact.prefetch(key.id());
        }
        let mut kept = 0;
        let mut lowest_skipped = f32::INFINITY;
        for i in 0..sorted.len() {
            let bound = top.bound();
            if let Some(&later) = sorted.get(i + AHEAD) {
                let f = floor(i + AHEAD, later);
                floors.push(f);
                if f <= bound {
                    exact.prefetch(later.id());
                }
            }
            let id = sorted[i].id();
            if floors[i] > bound {
                skipped.push(id);
                lowest_skipped = lowest_skipped.min(floors[i]);
                continue;
            }
            let key = Key::new(exact.distance(id), id);
            top.push(key);
            sorted[kept] = key;
            kept += 1;
        }
        sorted.truncate(kept);
        sorted.sort_unstable();
        let answer = self.to_neighbors(sorted.iter().copied(), k);
        let settled = answer.len() == k
            && answer
                .last()
                .is_some_and(|last| last.distance < lowest_skipped);
        if skipped.is_empty() || settled {
            return answer;
        }
        sorted.extend(skipped.iter().map(|&id| Key::new(exact.distance(id), id)));
        sorted.sort_unstable();
        self.to_neighbors(sorted.iter().copied(), k)
    }

    /// The walk of a KNN query: leaves the `ef` best admitted nodes in `state.sorted`,
    /// closest first by `probe`, looking no farther than `reach` (see
    /// [`HnswIndex::walk_layer_within`]); false for an empty graph.
    fn knn_walk(
        &self,
        probe: &impl Probe,
        ef: usize,
        filter: Option<&dyn IdFilter>,
        reach: impl Fn(f32) -> f32,
        own_k: usize,
        state: &mut WalkState,
    ) -> bool {
        let Some((cur, cur_d, _)) = self.descend(probe, 0) else {
            return false;
        };
        let mut results = std::mem::take(&mut state.results);
        results.reset(ef);
        let start = (cur, cur_d);
        if filter.is_none() && self.tombstones() == 0 {
            self.walk_layer_within(probe, start, 0, |_| true, reach, own_k, state, &mut results);
        } else {
            let accept = |slot| self.admits(slot, filter);
            self.walk_layer_within(probe, start, 0, accept, reach, own_k, state, &mut results);
        }
        results.drain_sorted(&mut state.sorted);
        state.results = results;
        true
    }

    /// Every admitted node within `radius` of a prepared query.
    ///
    /// The walk keeps a dynamic range: the distance of the closest node seen (never below
    /// `radius`). It expands candidates within `range · (1 + epsilon)`, so it crosses the
    /// gap between the entry point and the query's neighbourhood and then stays a little
    /// beyond the radius, where the graph's paths between in-radius nodes run.
    ///
    /// It also expands the `ef_runtime` nearest nodes it has seen outside the radius (at
    /// most [`RANGE_BEAM`]), as a KNN walk's beam would, wherever they lie. Where few
    /// nodes fall inside the radius they are seldom linked to one another, and a walk
    /// held to the boundary stops at the first: a shard group's part of a search holds a
    /// fraction of the nodes, and over 3 groups the boundary alone found 0.76 of the
    /// nodes within the radius where one graph of all of them found 0.95
    /// (`crates/cluster/tests/scatter_gather.rs`).
    pub(super) fn range(
        &self,
        q: &[f32],
        radius: f32,
        epsilon: f32,
        filter: Option<&dyn IdFilter>,
    ) -> Vec<Neighbor> {
        let _reading = self.grace.read();
        let mut hits = Vec::new();
        if let Some(f) = self.use_exact(filter, FilterStrategy::Auto) {
            if self.scan_allowed(q, f, |key| {
                if key.distance() <= radius {
                    hits.push(key);
                }
            }) {
                hits.sort_unstable();
                return self.to_neighbors(hits, usize::MAX);
            }
        }
        let Some((start, start_d, _)) = self.descend(&self.exact(q), 0) else {
            return Vec::new();
        };
        let boundary = |range: f32| range + range.abs() * epsilon;
        let mut dynamic = start_d.max(radius);
        let mut state = self.scratch.take();
        let WalkState {
            visited,
            candidates,
            own: beam,
            ..
        } = &mut state;
        visited.begin(self.pool.high_water() as usize);
        visited.insert(start);
        candidates.clear();
        candidates.push(Key::new(start_d, start));
        beam.reset(self.params.ef_runtime.min(RANGE_BEAM));
        if start_d > radius {
            beam.push(Key::new(start_d, start));
        } else if self.admits(start, filter) {
            hits.push(Key::new(start_d, start));
        }
        // Infinite until the beam is full: the walk starts as a KNN walk does.
        let reach = |dynamic: f32, beam: &TopK| boundary(dynamic).max(beam.bound());
        while let Some(c) = candidates.pop() {
            if c.distance() > reach(dynamic, beam) {
                break;
            }
            for link in self.graph.links(c.id(), 0) {
                let n = load(link);
                if !visited.insert(n) {
                    continue;
                }
                let d = self.dist(q, n);
                if d <= reach(dynamic, beam) {
                    candidates.push(Key::new(d, n));
                    if d > radius {
                        beam.push(Key::new(d, n));
                    } else if self.admits(n, filter) {
                        hits.push(Key::new(d, n));
                    }
                }
                if d < dynamic {
                    dynamic = d.max(radius);
                }
            }
        }
        self.scratch.give_back(state);
        hits.sort_unstable();
        self.to_neighbors(hits, usize::MAX)
    }
}
