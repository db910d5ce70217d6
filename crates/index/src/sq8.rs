//! 8-bit scalar codes of vectors, and the approximate distances a graph walk steers by.
//!
//! A walk measures hundreds of vectors to keep a few, and on a large index nearly every
//! measurement is a cache miss: with FLOAT32 a 128-dimension vector is eight lines of
//! memory. Its code is two.
//!
//! Each vector is coded on its own range: with `m` the midpoint of its smallest and
//! largest component and `b` about a 254th of the range between them (exactly: the least
//! f32 that keeps both extremes within 127 steps of `m`), `vᵢ ≈ m + b·cᵢ` with codes
//! `cᵢ` in `-127..=127`. So a code is a pure function of its vector: replicas
//! applying the same writes hold the same codes without agreeing on any parameter, and a
//! decoded index rebuilds them from its vectors instead of storing them. A record keeps
//! `m`, `b`, `Σcᵢ` and `Σcᵢ²` beside the code.
//!
//! The query is coded the same way, and both distances expand into one integer dot
//! product `D = c_q · c_v` and those sums, computed in f64:
//!
//! ```text
//! q · v      = n·m_q·m_v + m_q·b_v·Σc_v + m_v·b_q·Σc_q + b_q·b_v·D
//! |q − v|²   = n·Δ² + 2Δ(b_q·Σc_q − b_v·Σc_v) + b_q²·Σc_q² + b_v²·Σc_v² − 2·b_q·b_v·D,
//!              Δ = m_q − m_v
//! ```
//!
//! The L2 form never subtracts two large norms: a shared offset (vectors far from the
//! origin, close to each other) cancels in `Δ` and in the midpoints, so codes still tell
//! such vectors apart. What they cannot resolve is a spread far smaller than the range
//! of a vector's own components. Only the order of a walk's candidates comes from these
//! figures: every distance a search returns is recomputed from the FLOAT32 vectors.

use std::sync::atomic::{AtomicU32, Ordering};

use simsimd::SpatialSimilarity;

use crate::error::Result;
use crate::metric::Metric;
use crate::words::WordArena;

/// Words of a record's `[m, b, Σc, Σc²]`.
const META: usize = 4;

/// Codes and their [`Meta`], one record per slot.
#[derive(Debug)]
pub(crate) struct Sq8Store {
    dim: usize,
    /// Words of a record's codes: `dim` bytes rounded up to whole words; the padding
    /// bytes stay zero, so they add nothing to a dot product.
    words: usize,
    codes: WordArena,
    /// `[m, b, Σc, Σc²]` per slot, apart from the codes so that a 128-dimension code is
    /// two whole cache lines (in page-aligned chunks). At 16 bytes a slot this array is a
    /// quarter of the codes' size, so on a large index it is often a third miss.
    metas: WordArena,
}

impl Sq8Store {
    pub(crate) fn new(dim: usize, initial_cap: usize) -> Sq8Store {
        let words = dim.div_ceil(4);
        Sq8Store {
            dim,
            words,
            codes: WordArena::new(words, initial_cap),
            metas: WordArena::new(META, initial_cap),
        }
    }

    /// Gives `slot` its memory.
    pub(crate) fn ensure(&self, slot: u32) -> Result<()> {
        self.codes.ensure(slot)?;
        self.metas.ensure(slot)
    }

    pub(crate) fn is_backed(&self, slot: u32) -> bool {
        self.codes.is_backed(slot) && self.metas.is_backed(slot)
    }

    /// Codes `v` (a prepared vector) into `slot`, which no reader can reach yet.
    pub(crate) fn write(&self, slot: u32, v: &[f32]) {
        let (bytes, meta) = encode(v, self.words * 4);
        for (w, chunk) in self.codes.record(slot).iter().zip(bytes.chunks_exact(4)) {
            let word = u32::from_le_bytes([
                chunk[0] as u8,
                chunk[1] as u8,
                chunk[2] as u8,
                chunk[3] as u8,
            ]);
            w.store(word, Ordering::Relaxed);
        }
        for (w, x) in self.metas.record(slot).iter().zip(meta.words()) {
            w.store(x, Ordering::Relaxed);
        }
    }

    /// The code of `slot`, padding included.
    // #[PerformanceCriticalPath]
    #[inline(always)]
    pub(crate) fn code(&self, slot: u32) -> &[i8] {
        as_i8(self.codes.record(slot))
    }

    /// The `[m, b, Σc, Σc²]` of `slot`.
    #[inline(always)]
    pub(crate) fn meta(&self, slot: u32) -> Meta {
        let w = self.metas.record(slot);
        Meta::from_words(std::array::from_fn(|i| w[i].load(Ordering::Relaxed)))
    }

    /// Pointers to `slot`'s code and meta, for prefetching.
    #[inline(always)]
    pub(crate) fn ptrs(&self, slot: u32) -> (*const AtomicU32, *const AtomicU32) {
        (
            self.codes.record(slot).as_ptr(),
            self.metas.record(slot).as_ptr(),
        )
    }

    /// Cache lines of one code.
    pub(crate) fn lines(&self) -> usize {
        self.words.div_ceil(16)
    }

    /// A query coded for distances to this store's codes.
    pub(crate) fn query(&self, q: &[f32], metric: Metric) -> Sq8Query {
        debug_assert_eq!(q.len(), self.dim);
        let (codes, meta) = encode(q, self.words * 4);
        Sq8Query {
            codes,
            meta,
            n: self.dim as f64,
            err: 0.0,
            metric,
        }
    }

    pub(crate) fn allocated_bytes(&self) -> usize {
        self.codes.allocated_bytes() + self.metas.allocated_bytes()
    }
}

/// What a record keeps beside its code: the midpoint `m` and step `b` of `vᵢ ≈ m + b·cᵢ`,
/// and the sums `Σcᵢ`, `Σcᵢ²` that the distance expansions need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Meta {
    mid: f32,
    step: f32,
    sum: i32,
    sum_sq: u32,
}

impl Meta {
    fn words(self) -> [u32; META] {
        [
            self.mid.to_bits(),
            self.step.to_bits(),
            u32::from_ne_bytes(self.sum.to_ne_bytes()),
            self.sum_sq,
        ]
    }

    fn from_words(w: [u32; META]) -> Meta {
        Meta {
            mid: f32::from_bits(w[0]),
            step: f32::from_bits(w[1]),
            sum: i32::from_ne_bytes(w[2].to_ne_bytes()),
            sum_sq: w[3],
        }
    }
}

/// A coded query.
#[derive(Debug)]
pub(crate) struct Sq8Query {
    codes: Vec<i8>,
    meta: Meta,
    /// The dimension (padding codes are zero and add nothing to the sums).
    n: f64,
    /// `|q − q̂|`, how far decoding moved the query (`q̂ᵢ = m + b·cᵢ`), once
    /// [`Sq8Query::prepare_floors`] ran.
    err: f64,
    metric: Metric,
}

/// Widening of a floor's error term against rounding in the figures it is built from
/// (the f64 expansion cast to f32, f32 steps and midpoints): a floor must never exceed
/// the exact distance, and this costs a few re-ranked nodes at most.
const FLOOR_SLACK: f64 = 1e-3;

impl Sq8Query {
    /// Approximate distance to a stored code, in the units of [`Metric::distance`].
    // #[PerformanceCriticalPath]: every vector a coded walk measures.
    #[inline(always)]
    pub(crate) fn distance(&self, code: &[i8], v: Meta) -> f32 {
        // simsimd refuses only slices of different lengths; both are `words * 4` long.
        debug_assert_eq!(self.codes.len(), code.len());
        let d = i8::dot(&self.codes, code).unwrap_or(0.0);
        let q = self.meta;
        let (mq, bq, sq, qq) = (
            f64::from(q.mid),
            f64::from(q.step),
            f64::from(q.sum),
            f64::from(q.sum_sq),
        );
        let (mv, bv, sv, qv) = (
            f64::from(v.mid),
            f64::from(v.step),
            f64::from(v.sum),
            f64::from(v.sum_sq),
        );
        let distance = match self.metric {
            Metric::L2 => {
                let delta = mq - mv;
                self.n * delta * delta
                    + 2.0 * delta * (bq * sq - bv * sv)
                    + bq * bq * qq
                    + bv * bv * qv
                    - 2.0 * bq * bv * d
            }
            Metric::Ip | Metric::Cosine => {
                1.0 - (self.n * mq * mv + mq * bv * sv + mv * bq * sq + bq * bv * d)
            }
        };
        distance as f32
    }
}

impl Sq8Query {
    /// Measures what [`Sq8Query::floor`] needs of the query side (`q`, the query
    /// this was coded from): only searches that compute floors pay for it.
    pub(crate) fn prepare_floors(&mut self, q: &[f32]) {
        let mut err_sq = 0.0;
        for (&c, &x) in self.codes.iter().zip(q) {
            let decoded = f64::from(self.meta.mid) + f64::from(self.meta.step) * f64::from(c);
            err_sq += (f64::from(x) - decoded).powi(2);
        }
        self.err = err_sq.sqrt();
    }

    /// A distance the exact one from this query to a vector cannot be below, given the
    /// distance its code measured (`approx`, from [`Sq8Query::distance`]) and its meta.
    ///
    /// Every component of a vector is within half a step of its decoded value
    /// (`encode`), so `|v − v̂| ≤ √n·b_v/2`; the query's own `|q − q̂|` is known. By the
    /// triangle inequality:
    ///
    /// ```text
    /// L2:  |q − v| ≥ |q̂ − v̂| − |q − q̂| − |v − v̂|       floor = (√approx − reach)², or 0
    /// ```
    ///
    /// The slack covers the f32 rounding of the exact distance, which for L2 is
    /// relative to the result. IP and COSINE have no floor (negative infinity): the
    /// one tried, `|q·v − q̂·v̂| ≤ |q − q̂|·|v̂| + (|q̂| + |q − q̂|)·|v − v̂|` plus an f32
    /// dot's rounding, was too loose to pay (docs/benchmarks.md, session 37).
    ///
    /// A re-rank may skip a node whose floor is above the k-th exact distance found so
    /// far: it cannot be among the k closest (`HnswIndex::coded_knn`).
    pub(crate) fn floor(&self, approx: f32, v: Meta) -> f32 {
        match self.metric {
            Metric::L2 => {
                let v_err = self.n.sqrt() * f64::from(v.step) / 2.0;
                let root = f64::from(approx).max(0.0).sqrt();
                let reach = (self.err + v_err) * (1.0 + FLOOR_SLACK) + root * FLOOR_SLACK;
                let gap = (root - reach).max(0.0);
                // Lowered by more than the cast to f32 can raise it.
                (gap * gap * (1.0 - 1e-6)) as f32
            }
            Metric::Ip | Metric::Cosine => f32::NEG_INFINITY,
        }
    }
}

/// Codes `v` into `len` bytes (zero past `v`), with its [`Meta`].
fn encode(v: &[f32], len: usize) -> (Vec<i8>, Meta) {
    let (lo, hi) = v
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    let mut codes = vec![0i8; len];
    if !(lo.is_finite() && hi.is_finite()) {
        // Only an empty vector; validation refuses non-finite components before this.
        return (
            codes,
            Meta {
                mid: 0.0,
                step: 0.0,
                sum: 0,
                sum_sq: 0,
            },
        );
    }
    // In f64: `hi - lo` of two large f32 of opposite signs may overflow an f32. The step
    // is measured from the midpoint as stored (rounded to f32) and rounded up, so both
    // extremes lie within 127 steps of it: no code is clamped, every component is within
    // half a step of `m + b·c`, even when the range is a few ulps of a large midpoint.
    let mid = ((f64::from(lo) + f64::from(hi)) / 2.0) as f32;
    let reach = (f64::from(hi) - f64::from(mid)).max(f64::from(mid) - f64::from(lo));
    let step = round_up(reach / 127.0);
    let (mut sum, mut sum_sq) = (0i32, 0u32);
    if step > 0.0 && step.is_finite() {
        for (c, &x) in codes.iter_mut().zip(v) {
            let code = ((f64::from(x) - f64::from(mid)) / f64::from(step))
                .round()
                .clamp(-127.0, 127.0) as i8;
            *c = code;
            // At most 127 · 32,768 and 127² · 32,768 (MAX_DIM): no overflow.
            sum += i32::from(code);
            sum_sq += i32::from(code).unsigned_abs().pow(2);
        }
    }
    let step = if step.is_finite() { step } else { 0.0 };
    (
        codes,
        Meta {
            mid,
            step,
            sum,
            sum_sq,
        },
    )
}

/// The least f32 at or above `x`, for `0 ≤ x < f32::MAX` (a step: half a range of f32s
/// over 127).
fn round_up(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) < x {
        // For a non-negative finite f32 the next one up is the next bit pattern
        // (`f32::next_up` is newer than the crate's minimum Rust).
        f32::from_bits(f.to_bits() + 1)
    } else {
        f
    }
}

/// Views words as the bytes stored in them, as signed codes.
///
/// Only for words no thread writes while the view lives; codes follow the same rule as
/// vectors ([`crate::words::as_f32`]): written before the slot's id is published, reused
/// only after a grace period.
#[inline(always)]
fn as_i8(words: &[AtomicU32]) -> &[i8] {
    // SAFETY: AtomicU32 has the size and in-memory representation of u32, so `words`
    // is `4 * len` initialised bytes, and i8 has alignment 1 and no invalid bit patterns.
    // The caller holds the invariant above, so no write races with this shared view.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<i8>(), words.len() * 4) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded stream of uniform values in [-1, 1).
    fn uniform(seed: u64) -> impl FnMut() -> f32 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        }
    }

    fn store_of(vectors: &[Vec<f32>]) -> Sq8Store {
        let store = Sq8Store::new(vectors[0].len(), vectors.len());
        for (s, v) in vectors.iter().enumerate() {
            store.ensure(s as u32).unwrap();
            store.write(s as u32, v);
        }
        store
    }

    #[test]
    fn codes_round_trip_through_words() {
        let store = store_of(&[vec![0.75f32, -2.0, 0.4, 0.0, 2.0]]);
        let code = store.code(0);
        assert_eq!(code.len(), 8, "5 bytes rounded up to 2 words");
        // m = 0, b = 2/127 (rounded up to an f32): 0.75 is 47.6 steps, 0.4 is 25.4.
        assert_eq!(&code[..5], &[48, -127, 25, 0, 127]);
        assert_eq!(&code[5..], &[0, 0, 0], "padding is zero");
        let meta = store.meta(0);
        assert_eq!(meta.mid, 0.0);
        // The least f32 at or above 2/127.
        assert!(f64::from(meta.step) >= 2.0 / 127.0);
        assert!(f64::from(f32::from_bits(meta.step.to_bits() - 1)) < 2.0 / 127.0);
        assert_eq!((meta.sum, meta.sum_sq), (73, 35_187));
    }

    #[test]
    fn every_component_is_within_half_a_step() {
        let one_ulp_up = f32::from_bits(1.0f32.to_bits() + 1);
        let mut next = uniform(3);
        let cases: Vec<Vec<f32>> = vec![
            // A range of one ulp at 1.0: the midpoint rounds to 1.0, and a step taken
            // from the exact range would put the top component 254 steps away.
            vec![1.0, one_ulp_up],
            vec![1.0, one_ulp_up, 1.0, one_ulp_up, one_ulp_up],
            vec![1e30, -1e30, 0.0, 3.0],
            vec![f32::MAX, f32::MIN, 1.0],
            vec![f32::MIN_POSITIVE, 0.0, -f32::MIN_POSITIVE / 2.0],
            vec![1_000_000.0, 1_000_000.1, 999_999.9],
            (0..37).map(|_| 5_000.0 + next()).collect(),
        ];
        for v in cases {
            let (codes, meta) = encode(&v, v.len().div_ceil(4) * 4);
            let half = f64::from(meta.step) / 2.0;
            for (i, (&x, &c)) in v.iter().zip(&codes).enumerate() {
                let back = f64::from(meta.mid) + f64::from(meta.step) * f64::from(c);
                let error = (f64::from(x) - back).abs();
                assert!(
                    error <= half * (1.0 + 1e-9) + f64::from(meta.mid.abs()) * 1e-12,
                    "{v:?}[{i}]: {x} came back as {back} (m {}, b {}, c {c})",
                    meta.mid,
                    meta.step
                );
            }
        }
    }

    #[test]
    fn constant_vectors_code_to_their_value() {
        let store = store_of(&[vec![3.0; 4], vec![5.0; 4], vec![0.0; 4]]);
        assert_eq!(store.code(0), &[0; 4]);
        let q = store.query(&[5.0; 4], Metric::L2);
        assert_eq!(q.distance(store.code(0), store.meta(0)), 16.0);
        assert_eq!(q.distance(store.code(1), store.meta(1)), 0.0);
        assert_eq!(q.distance(store.code(2), store.meta(2)), 100.0);
        let q = store.query(&[0.5; 4], Metric::Ip);
        assert_eq!(q.distance(store.code(0), store.meta(0)), 1.0 - 6.0);
    }

    /// Approximate distances within the worst case of half a step per component, and on
    /// average far inside it; `offset` moves every vector away from the origin.
    fn check_error_bounds(dim: usize, offset: f32, spread: f32) {
        let mut next = uniform(7);
        let mut draw = || -> Vec<f32> { (0..dim).map(|_| offset + spread * next()).collect() };
        let vectors: Vec<Vec<f32>> = (0..64).map(|_| draw()).collect();
        let q = draw();
        let store = store_of(&vectors);
        let half_step = |v: &[f32]| f64::from(encode(v, v.len().div_ceil(4) * 4).1.step) / 2.0;

        let l1 = |v: &[f32]| v.iter().map(|x| f64::from(x.abs())).sum::<f64>();
        let l1_diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| f64::from((x - y).abs()))
                .sum::<f64>()
        };
        for metric in [Metric::L2, Metric::Ip] {
            let coded = store.query(&q, metric);
            let mut relative = 0.0;
            for (s, v) in vectors.iter().enumerate() {
                let exact = f64::from(metric.distance(&q, v));
                let approx = f64::from(coded.distance(store.code(s as u32), store.meta(s as u32)));
                let (eq, ev) = (half_step(&q), half_step(v));
                let bound = match metric {
                    // |x + e|² − |x|² ≤ 2|x|₁·E + n·E², |eᵢ| ≤ E = eq + ev.
                    Metric::L2 => {
                        let e = eq + ev;
                        2.0 * l1_diff(&q, v) * e + dim as f64 * e * e
                    }
                    Metric::Ip | Metric::Cosine => ev * l1(&q) + eq * l1(v) + dim as f64 * eq * ev,
                };
                // f32 rounding of the exact figure and of the stored sums.
                let bound = bound * 1.01 + 1e-5 * exact.abs().max(1.0);
                let error = (exact - approx).abs();
                assert!(
                    error <= bound,
                    "{metric:?} slot {s}: exact {exact}, approx {approx}, bound {bound}"
                );
                relative += error / bound;
            }
            let mean = relative / vectors.len() as f64;
            assert!(mean < 0.25, "{metric:?}: mean error {mean} of the bound");
        }
    }

    /// The invariant a re-rank's skips rest on: no L2 floor is above its exact
    /// distance, near and far from the origin, wide and narrow spreads, padded
    /// dimensions, and a query that is one of the vectors.
    #[test]
    fn floors_never_exceed_exact_distances() {
        // Pairs, and those whose floor is within a factor of two of the exact distance.
        let (mut total, mut useful) = (0, 0);
        for (dim, offset, spread, seed) in [
            (128, 0.0, 1.0, 21),
            (37, 0.0, 1.0, 22),
            (128, 1_000.0, 2.0, 23),
            (16, 1_000.0, 0.001, 24),
            (64, -5.0, 100.0, 25),
            (3, 0.0, 1e-6, 26),
        ] {
            let mut next = uniform(seed);
            let mut draw = || -> Vec<f32> { (0..dim).map(|_| offset + spread * next()).collect() };
            let vectors: Vec<Vec<f32>> = (0..200).map(|_| draw()).collect();
            let store = store_of(&vectors);
            for q in [draw(), vectors[7].clone()] {
                let mut coded = store.query(&q, Metric::L2);
                coded.prepare_floors(&q);
                for (s, v) in vectors.iter().enumerate() {
                    let (code, meta) = (store.code(s as u32), store.meta(s as u32));
                    let exact = Metric::L2.distance(&q, v);
                    let floor = coded.floor(coded.distance(code, meta), meta);
                    assert!(
                        floor <= exact,
                        "dim {dim} offset {offset} spread {spread} slot {s}: \
                         floor {floor} above exact {exact}"
                    );
                    total += 1;
                    useful += usize::from(floor > exact * 0.5);
                }
            }
        }
        // Not vacuous: many floors are within a factor of two of the exact distance.
        assert!(useful * 4 > total, "{useful} of {total} floors useful");
        // IP and COSINE have none.
        let store = store_of(&[vec![1.0, 2.0, 3.0]]);
        for metric in [Metric::Ip, Metric::Cosine] {
            let coded = store.query(&[1.0, 2.0, 3.0], metric);
            assert_eq!(coded.floor(0.0, store.meta(0)), f32::NEG_INFINITY);
        }
    }

    #[test]
    fn approximate_distances_are_close_to_exact_ones() {
        check_error_bounds(128, 0.0, 1.0);
        // Padding: 37 bytes of code in 10 words.
        check_error_bounds(37, 0.0, 1.0);
    }

    #[test]
    fn a_shared_offset_cancels() {
        // Far from the origin and close together: a code of the raw values could not
        // tell these apart, a code about each vector's midpoint can.
        check_error_bounds(128, 1_000.0, 2.0);
        let dim = 16;
        let mut next = uniform(9);
        let vectors: Vec<Vec<f32>> = (0..200)
            .map(|_| (0..dim).map(|_| 1_000.0 + next()).collect())
            .collect();
        let store = store_of(&vectors);
        let q: Vec<f32> = (0..dim).map(|_| 1_000.0 + next()).collect();
        let coded = store.query(&q, Metric::L2);
        let nearest = |d: &dyn Fn(usize) -> f32| {
            (0..vectors.len())
                .min_by(|&a, &b| d(a).total_cmp(&d(b)))
                .unwrap()
        };
        let exact = nearest(&|s| Metric::L2.distance(&q, &vectors[s]));
        let approx = nearest(&|s| coded.distance(store.code(s as u32), store.meta(s as u32)));
        let (de, da) = (
            Metric::L2.distance(&q, &vectors[exact]),
            Metric::L2.distance(&q, &vectors[approx]),
        );
        assert!(
            da <= de * 1.1 + 0.01,
            "codes chose a node at {da}, the nearest is at {de}"
        );
    }
}
