//! Scalar codes of vectors (7 or 8 bits) and queries (8 bits), and the approximate
//! distances a graph walk steers by.
//!
//! A walk measures hundreds of vectors to keep a few, and on a large index nearly every
//! measurement is a cache miss: with FLOAT32 a 128-dimension vector is eight lines of
//! memory. Its code is two.
//!
//! Each vector is coded on its own range: with `m` the midpoint of its smallest and
//! largest component and `b` about a 126th of the range between them (exactly: the least
//! f32 that keeps both extremes within 63 steps of `m`), `vᵢ ≈ m + b·cᵢ` with codes
//! `cᵢ` in `-63..=63` (8-bit codes: 127 steps). So a code is a pure function of its
//! vector: replicas
//! applying the same writes hold the same codes without agreeing on any parameter, and a
//! decoded index rebuilds them from its vectors instead of storing them. A record keeps
//! `m`, `b`, `Σcᵢ` and `Σcᵢ²` with the code (and, with 7 bits, its decoding error).
//!
//! Why 7 bits: under L2 and COSINE a code of 128 dimensions or more is stored as the
//! bytes `cᵢ + 63`, with `cᵢ` in `-63..=63`, which leaves each byte's top bit free; the
//! first 128 of them carry the record's meta: `[m, b]`, the sums, and how far the code
//! decodes from its vector (`Meta::err`, for the re-rank's floors). A walk then reads
//! two lines per 128-dimension neighbour instead of three (in the page-aligned chunks of
//! 1 MiB and more; a small chunk on the heap may put a code across a third line) (with the meta in an array of
//! its own, the third line was a miss of its own, and profiles put a third of the
//! walk's time on prefetches waiting for a free fill buffer). Shorter codes, and IP's,
//! keep 8 bits (`-127..=127`, about a 254th of the range) and the four words in a
//! separate array (`Sq8Store::new` says why). The query, coded once per search, keeps 8
//! bits: its precision costs nothing per node.
//!
//! Both distances expand into one integer dot product `D = c_q · c_v` and those sums,
//! computed in f64:
//!
//! ```text
//! q · v      = n·m_q·m_v + m_q·b_v·Σc_v + m_v·b_q·Σc_q + b_q·b_v·D
//! |q − v|²   = n·Δ² + 2Δ(b_q·Σc_q − b_v·Σc_v) + b_q²·Σc_q² + b_v²·Σc_v² − 2·b_q·b_v·D,
//!              Δ = m_q − m_v
//! ```
//!
//! COSINE takes the L2 form, halved: its vectors are normalised, so `1 − cos = |q − v|²/2`.
//!
//! The L2 form never subtracts two large norms: a shared offset (vectors far from the
//! origin, close to each other) cancels in `Δ` and in the midpoints, so codes still tell
//! such vectors apart. What they cannot resolve is a spread far smaller than the range
//! of a vector's own components. Only the order of a walk's candidates comes from these
//! figures: every distance a search returns is recomputed from the FLOAT32 vectors.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use simsimd::SpatialSimilarity;

use crate::error::Result;
use crate::head_dot::{top_bits, Kernel, HEAD};
use crate::metric::Metric;
use crate::words::WordArena;

/// Words of a record's `[m, b, Σc, Σc²]`.
const META: usize = 4;

/// The largest code of a stored vector that carries its meta: 7 bits, stored as
/// `c + VECTOR_MAX`.
const VECTOR_MAX: i32 = 63;

/// The largest code of a query, and of a stored vector whose meta is apart.
const QUERY_MAX: i32 = 127;

/// Code bytes whose top bits hold a record's meta, one bit each.
const META_BITS: usize = HEAD;
const _: () = assert!(META_BITS == META * 32);

/// Codes and their [`Meta`], one record per slot.
#[derive(Debug)]
pub(crate) struct Sq8Store {
    dim: usize,
    /// Words of a record's codes: `dim` bytes rounded up to whole words; the padding
    /// bytes stay zero, and the query's codes there are zero, so they add nothing to a
    /// dot product.
    words: usize,
    codes: WordArena,
    /// `[m, b, Σc, Σc²]` per slot beside 8-bit codes; 7-bit codes (L2 and COSINE, 128
    /// dimensions or more) carry them in their own top bits (`None` here).
    metas: Option<WordArena>,
    /// Reads the first [`META_BITS`] bytes of a code that carries its meta.
    kernel: Kernel,
    /// The largest `|1 − |v|²|` of any vector written, as f64 bits (non-negative f64s
    /// order as their bits): what a COSINE floor allows for vectors that are only
    /// nearly of unit length. `Metric::prepare` leaves a few ulps; a decoded index
    /// accepts up to 1e-3 (`Metric::is_prepared`). Only grows.
    norm_dev: AtomicU64,
}

impl Sq8Store {
    pub(crate) fn new(dim: usize, initial_cap: usize, metric: Metric) -> Sq8Store {
        let words = dim.div_ceil(4);
        // Which codes carry their meta: those measured by the L2 form. A code's error
        // enters the IP form scaled by the whole query (`|q|₁·E`) and the L2 form by
        // the difference (`|q − v|₁·E`), small between near neighbours. COSINE vectors
        // are normalised, so `1 − cos = |q − v|²/2` and they take the L2 form: at 7 bits
        // by the IP form COSINE walks lost recall (0.931 → 0.889 at ef 10, 200k × 128),
        // by the L2 form they gained (0.949) (docs/benchmarks.md, session 38). IP vectors
        // have no common norm and keep the IP form and 8 bits.
        //
        //   metric       dim < 128                 dim ≥ 128
        //   L2, COSINE   8-bit codes, meta apart   7-bit codes carrying the meta
        //   IP           8-bit codes, meta apart   8-bit codes, meta apart
        let inline = match metric {
            Metric::L2 | Metric::Cosine => dim >= META_BITS,
            Metric::Ip => false,
        };
        Sq8Store {
            dim,
            words,
            codes: WordArena::new(words, initial_cap),
            metas: (!inline).then(|| WordArena::new(META, initial_cap)),
            kernel: Kernel::detect(),
            norm_dev: AtomicU64::new(0),
        }
    }

    /// Gives `slot` its memory.
    pub(crate) fn ensure(&self, slot: u32) -> Result<()> {
        self.codes.ensure(slot)?;
        match &self.metas {
            Some(metas) => metas.ensure(slot),
            None => Ok(()),
        }
    }

    pub(crate) fn is_backed(&self, slot: u32) -> bool {
        self.codes.is_backed(slot) && self.metas.as_ref().is_none_or(|m| m.is_backed(slot))
    }

    /// Codes `v` (a prepared vector) into `slot`, which no reader can reach yet.
    pub(crate) fn write(&self, slot: u32, v: &[f32]) {
        // Before the slot is published (as its code is): a reader that finds the slot
        // then reads a deviation at least this vector's.
        self.norm_dev
            .fetch_max(norm_dev(v).to_bits(), Ordering::Relaxed);
        let (codes, meta) = encode(v, self.words * 4, self.vector_max());
        let mut bytes: Vec<u8>;
        match &self.metas {
            Some(metas) => {
                bytes = codes.iter().map(|&c| c.cast_unsigned()).collect();
                for (w, x) in metas.record(slot).iter().zip(meta.words()) {
                    w.store(x, Ordering::Relaxed);
                }
            }
            None => {
                bytes = codes
                    .iter()
                    .take(self.dim)
                    .map(|&c| (i32::from(c) + VECTOR_MAX) as u8)
                    .collect();
                bytes.resize(self.words * 4, 0);
                let bits = meta.packed();
                for (i, byte) in bytes.iter_mut().take(META_BITS).enumerate() {
                    *byte |= (((bits >> i) & 1) as u8) << 7;
                }
            }
        }
        for (w, chunk) in self.codes.record(slot).iter().zip(bytes.chunks_exact(4)) {
            let word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            w.store(word, Ordering::Relaxed);
        }
    }

    /// The `[m, b, Σc, Σc²]` of `slot`.
    #[inline(always)]
    pub(crate) fn meta(&self, slot: u32) -> Meta {
        match &self.metas {
            Some(metas) => {
                let w = metas.record(slot);
                Meta::from_words(std::array::from_fn(|i| w[i].load(Ordering::Relaxed)))
            }
            None => {
                let head: &[u8; META_BITS] = head(as_u8(self.codes.record(slot)));
                Meta::from_packed(top_bits(head))
            }
        }
    }

    /// Approximate distance from `q` to `slot`, in the units of [`Metric::distance`].
    // #[PerformanceCriticalPath]: every vector a coded walk measures.
    #[inline(always)]
    pub(crate) fn distance(&self, q: &Sq8Query, slot: u32) -> f32 {
        let words = self.codes.record(slot);
        // simsimd refuses only slices of different lengths; both are `words * 4` long.
        debug_assert_eq!(q.codes.len(), words.len() * 4);
        match &self.metas {
            Some(_) => {
                let d = i8::dot(&q.codes, as_i8(words)).unwrap_or(0.0);
                q.expand(d, self.meta(slot))
            }
            None => {
                let (head_words, tail_words) = words.split_at(META_BITS / 4);
                let (q_head, q_tail) = q.codes.split_at(META_BITS);
                let (dot, bits) = self.kernel.head_dot(head(q_head), head(as_u8(head_words)));
                let mut stored_dot = f64::from(dot);
                if !q_tail.is_empty() {
                    // Past the head no byte carries a meta bit.
                    stored_dot += i8::dot(q_tail, as_i8(tail_words)).unwrap_or(0.0);
                }
                // Σ c_q·(stored − 63) over the query's codes; its padding codes are zero.
                let d = stored_dot - f64::from(VECTOR_MAX) * f64::from(q.meta.sum);
                q.expand(d, Meta::from_packed(bits))
            }
        }
    }

    /// Pointers to `slot`'s code and, when it has one apart, its meta, for prefetching.
    #[inline(always)]
    pub(crate) fn ptrs(&self, slot: u32) -> (*const AtomicU32, Option<*const AtomicU32>) {
        (
            self.codes.record(slot).as_ptr(),
            self.metas.as_ref().map(|m| m.record(slot).as_ptr()),
        )
    }

    /// The largest code of a stored vector.
    fn vector_max(&self) -> i32 {
        match self.metas {
            Some(_) => QUERY_MAX,
            None => VECTOR_MAX,
        }
    }

    /// Cache lines of one code.
    pub(crate) fn lines(&self) -> usize {
        self.words.div_ceil(16)
    }

    /// A query coded for distances to this store's codes.
    pub(crate) fn query(&self, q: &[f32], metric: Metric) -> Sq8Query {
        debug_assert_eq!(q.len(), self.dim);
        let (codes, meta) = encode(q, self.words * 4, QUERY_MAX);
        Sq8Query {
            codes,
            meta,
            n: self.dim as f64,
            err: 0.0,
            norm_dev: norm_dev(q),
            metric,
        }
    }

    /// [`Sq8Query::floor`] of `slot`, whose code measured `approx`.
    pub(crate) fn floor(&self, q: &Sq8Query, approx: f32, slot: u32) -> f32 {
        let stored = f64::from_bits(self.norm_dev.load(Ordering::Relaxed));
        q.floor(approx, self.meta(slot), stored)
    }

    pub(crate) fn allocated_bytes(&self) -> usize {
        self.codes.allocated_bytes() + self.metas.as_ref().map_or(0, WordArena::allocated_bytes)
    }
}

/// The first [`META_BITS`] codes of a query or bytes of a stored code that has them.
#[inline(always)]
fn head<T>(bytes: &[T]) -> &[T; META_BITS] {
    match bytes.first_chunk() {
        Some(head) => head,
        // Only stores without a meta array call this, and their codes are that long.
        None => unreachable!("a code of {} bytes carries no meta", bytes.len()),
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
    /// `|v − v̂|` in [`ERR_FULL`]ths of its bound `√n·b/2`, rounded up: what an L2
    /// floor subtracts for the vector's side. 7-bit codes carry it (their sums leave 12
    /// bits free); beside 8-bit codes it is the bound itself.
    err: u16,
}

/// The `err` of a [`Meta`] that is the whole bound.
const ERR_FULL: u16 = 4095;

/// Bit fields of a meta carried in a code's top bits: `[m, b]` in the first 64, then
/// `Σc` (24 bits, two's complement), `Σc²` (28 bits) and `err` (12 bits). At most
/// 32,768 dimensions of 7-bit codes give `|Σc| ≤ 2,064,384 < 2²³` and `Σc² ≤
/// 130,056,192 < 2²⁸`.
const SUM_BITS: u32 = 24;
const SUM_SQ_BITS: u32 = 28;

impl Meta {
    /// The 128 bits a 7-bit code carries.
    fn packed(self) -> u128 {
        let sum = u128::from(self.sum.cast_unsigned() & ((1 << SUM_BITS) - 1));
        let sum_sq = u128::from(self.sum_sq & ((1 << SUM_SQ_BITS) - 1));
        u128::from(self.mid.to_bits())
            | (u128::from(self.step.to_bits()) << 32)
            | (sum << 64)
            | (sum_sq << (64 + SUM_BITS))
            | (u128::from(self.err & ERR_FULL) << (64 + SUM_BITS + SUM_SQ_BITS))
    }

    #[inline(always)]
    fn from_packed(bits: u128) -> Meta {
        let low = |shift: u32, width: u32| ((bits >> shift) as u32) & ((1u32 << width) - 1);
        // Sign-extends the 24-bit sum.
        let sum = (low(64, SUM_BITS) << (32 - SUM_BITS)).cast_signed() >> (32 - SUM_BITS);
        Meta {
            mid: f32::from_bits(bits as u32),
            step: f32::from_bits((bits >> 32) as u32),
            sum,
            sum_sq: low(64 + SUM_BITS, SUM_SQ_BITS),
            err: (bits >> (64 + SUM_BITS + SUM_SQ_BITS)) as u16 & ERR_FULL,
        }
    }

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
            err: ERR_FULL,
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
    /// `|1 − |q|²|`, for COSINE floors.
    norm_dev: f64,
    metric: Metric,
}

/// Widening of a floor's error term against rounding in the figures it is built from
/// (the f64 expansion cast to f32, f32 steps and midpoints): a floor must never exceed
/// the exact distance, and this costs a few re-ranked nodes at most.
const FLOOR_SLACK: f64 = 1e-3;

impl Sq8Query {
    /// The distance from the dot product `D` of the query's codes with a record's and
    /// the record's meta.
    #[inline(always)]
    fn expand(&self, d: f64, v: Meta) -> f32 {
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
            Metric::L2 | Metric::Cosine => {
                let delta = mq - mv;
                let l2 = self.n * delta * delta
                    + 2.0 * delta * (bq * sq - bv * sv)
                    + bq * bq * qq
                    + bv * bv * qv
                    - 2.0 * bq * bv * d;
                if self.metric == Metric::Cosine {
                    l2 / 2.0
                } else {
                    l2
                }
            }
            Metric::Ip => 1.0 - (self.n * mq * mv + mq * bv * sv + mv * bq * sq + bq * bv * d),
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
    /// relative to the result. COSINE's floor is half L2's less an absolute slack for
    /// vectors of nearly unit length (below). IP has no floor (negative infinity): the one
    /// tried, `|q·v − q̂·v̂| ≤ |q − q̂|·|v̂| + (|q̂| + |q − q̂|)·|v − v̂|` plus an f32
    /// dot's rounding, was too loose to pay (docs/benchmarks.md, session 37).
    ///
    /// A re-rank may skip a node whose floor is above the k-th exact distance found so
    /// far: it cannot be among the k closest (`HnswIndex::coded_knn`).
    pub(crate) fn floor(&self, approx: f32, v: Meta, stored_norm_dev: f64) -> f32 {
        match self.metric {
            Metric::L2 => self.l2_floor(f64::from(approx), v) as f32,
            Metric::Cosine => {
                // `approx` is half the L2 form. The exact figure is `1 − q·v` in f32, and
                // `1 − q·v = |q − v|²/2 + (1 − |q|²)/2 + (1 − |v|²)/2`: the norms' terms
                // come off as measured (the query's, and the largest of any stored
                // vector's), with a thousandth more for their own rounding. The f32 dot
                // product of n terms of unit vectors and the subtraction from one add at
                // most (n + 1)u (u = 2⁻²⁴); twice that comes off too. The floor may be
                // negative, as the exact figure of two equal vectors may be.
                let u = f64::from(f32::EPSILON) / 2.0;
                let norms = (self.norm_dev + stored_norm_dev) / 2.0 * (1.0 + FLOOR_SLACK);
                let slack = 2.0 * (self.n + 1.0) * u + norms;
                (self.l2_floor(2.0 * f64::from(approx), v) / 2.0 - slack) as f32
            }
            Metric::Ip => f32::NEG_INFINITY,
        }
    }

    /// The floor of a squared L2 distance (see [`Sq8Query::floor`]).
    fn l2_floor(&self, approx: f64, v: Meta) -> f64 {
        let v_err =
            self.n.sqrt() * f64::from(v.step) / 2.0 * f64::from(v.err) / f64::from(ERR_FULL);
        let root = approx.max(0.0).sqrt();
        let reach = (self.err + v_err) * (1.0 + FLOOR_SLACK) + root * FLOOR_SLACK;
        let gap = (root - reach).max(0.0);
        // Lowered by more than the cast to f32 can raise it.
        gap * gap * (1.0 - 1e-6)
    }
}

/// `|1 − |v|²|`, in f64.
fn norm_dev(v: &[f32]) -> f64 {
    (v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() - 1.0).abs()
}

/// Codes `v` into `len` codes in `-max..=max` (zero past `v`), with its [`Meta`].
fn encode(v: &[f32], len: usize, max: i32) -> (Vec<i8>, Meta) {
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
                err: ERR_FULL,
            },
        );
    }
    // In f64: `hi - lo` of two large f32 of opposite signs may overflow an f32. The step
    // is measured from the midpoint as stored (rounded to f32) and rounded up, so both
    // extremes lie within `max` steps of it: no code is clamped, every component is within
    // half a step of `m + b·c`, even when the range is a few ulps of a large midpoint.
    let mid = ((f64::from(lo) + f64::from(hi)) / 2.0) as f32;
    let reach = (f64::from(hi) - f64::from(mid)).max(f64::from(mid) - f64::from(lo));
    let step = round_up(reach / f64::from(max));
    let (mut sum, mut sum_sq, mut err_sq) = (0i32, 0u32, 0.0f64);
    if step > 0.0 && step.is_finite() {
        let (m, b) = (f64::from(mid), f64::from(step));
        // Three passes, not one: the codes and their sums have no order to keep and go
        // several components at a time, while the error is summed in the components'
        // order, its bits the same as ever. In one pass all three went at the pace of
        // that chain of f64 additions: a 128-dimension query (coded once per part of
        // every search) took 1.59 µs, now 1.13 (`Sq8Store::query`, in a loop).
        for (c, &x) in codes.iter_mut().zip(v) {
            *c = round_within((f64::from(x) - m) / b, max);
        }
        // The padding past `v` is zero: it adds nothing to either sum.
        for &c in &codes {
            // At most 127 · 32,768 and 127² · 32,768 (MAX_DIM): no overflow.
            sum += i32::from(c);
            sum_sq += i32::from(c).unsigned_abs().pow(2);
        }
        for (&c, &x) in codes.iter().zip(v) {
            err_sq += (f64::from(x) - (m + b * f64::from(c))).powi(2);
        }
    }
    let step = if step.is_finite() { step } else { 0.0 };
    // The error as a share of its bound, rounded up and one more: the floor's reach
    // must not fall short of it by the rounding of this division.
    let bound = (v.len() as f64).sqrt() * f64::from(step) / 2.0;
    let err = if bound > 0.0 {
        (err_sq.sqrt() / bound * f64::from(ERR_FULL)).ceil() + 1.0
    } else {
        f64::from(ERR_FULL)
    };
    (
        codes,
        Meta {
            mid,
            step,
            sum,
            sum_sq,
            err: err.min(f64::from(ERR_FULL)) as u16,
        },
    )
}

/// `y.round().clamp(-max, max)` (halves away from zero), for `0 < max ≤ 127`.
///
/// `f64::round` is a libm call on the baseline x86-64 target, once per component of
/// every query of every search part (a copy of the loop: 1.45 µs a 128-dimension
/// vector with it, 1.18 with this). Rounding is monotonic, so clamping first gives the
/// same code, and a clamped `y` truncates to an integer exactly, with `y − t` exact
/// too (Sterbenz: `t ≤ y ≤ 2t` for `y ≥ 1`, and `t = 0` below 1): so the codes are
/// the same bits as before, which replicas that code the same vector rely on.
#[inline(always)]
fn round_within(y: f64, max: i32) -> i8 {
    let m = f64::from(max);
    // Components are validated finite and the step is positive, so `y` is never NaN
    // (one would come out as `-max` here, where `round` then the cast gave 0).
    let y = y.max(-m).min(m);
    let t = y as i32;
    let frac = y - f64::from(t);
    let code = t + i32::from(frac >= 0.5) - i32::from(frac <= -0.5);
    // Within -127..=127 by the clamp.
    code as i8
}

/// The least f32 at or above `x`, for `0 ≤ x < f32::MAX` (a step: half a range of f32s
/// over 63 or 127).
fn round_up(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) < x {
        f.next_up()
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

/// Views words as the bytes stored in them.
///
/// The same rule as [`as_i8`].
#[inline(always)]
fn as_u8(words: &[AtomicU32]) -> &[u8] {
    // SAFETY: as for `as_i8`: `4 * len` initialised bytes, u8 has alignment 1 and no
    // invalid bit patterns, and no write races with the view.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 4) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The code bits of a byte that carries a meta bit.
    const CODE_BITS: u8 = 0x7f;

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

    fn store_of(vectors: &[Vec<f32>], metric: Metric) -> Sq8Store {
        let store = Sq8Store::new(vectors[0].len(), vectors.len(), metric);
        for (s, v) in vectors.iter().enumerate() {
            store.ensure(s as u32).unwrap();
            store.write(s as u32, v);
        }
        store
    }

    /// The bytes stored for `slot`.
    fn stored(store: &Sq8Store, slot: u32) -> &[u8] {
        as_u8(store.codes.record(slot))
    }

    /// The codes are the bits `f64::round` and a clamp gave, on halves, near-halves,
    /// the clamp's edges and a spread of ordinary values, for both code ranges.
    #[test]
    fn rounding_within_the_range_is_round_then_clamp() {
        let reference = |y: f64, max: i32| y.round().clamp(-f64::from(max), f64::from(max)) as i8;
        let mut ys = vec![0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300];
        for k in -140..=140 {
            let h = f64::from(k) + 0.5;
            ys.extend([
                h,
                h.next_up(),
                h.next_down(),
                f64::from(k),
                f64::from(k).next_up(),
            ]);
            ys.extend([f64::from(k).next_down(), f64::from(k) - 0.49999999999999994]);
        }
        let mut next = uniform(11);
        ys.extend((0..100_000).map(|_| f64::from(next()) * 150.0));
        for max in [VECTOR_MAX, QUERY_MAX, 1] {
            for &y in &ys {
                assert_eq!(
                    round_within(y, max),
                    reference(y, max),
                    "y = {y:e}, max = {max}"
                );
            }
        }
    }

    /// The coding loop as it was in one pass (session 41): the three passes give the
    /// same codes and the same meta to the bit (the error's share, from its sum, too)
    /// on vectors of many scales and lengths, for both code ranges.
    #[test]
    fn coding_in_three_passes_gives_the_bits_of_one() {
        let one_pass = |v: &[f32], len: usize, max: i32| {
            let (lo, hi) = v
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                    (lo.min(x), hi.max(x))
                });
            let mid = ((f64::from(lo) + f64::from(hi)) / 2.0) as f32;
            let reach = (f64::from(hi) - f64::from(mid)).max(f64::from(mid) - f64::from(lo));
            let step = round_up(reach / f64::from(max));
            let mut codes = vec![0i8; len];
            let (mut sum, mut sum_sq, mut err_sq) = (0i32, 0u32, 0.0f64);
            if !(step > 0.0 && step.is_finite()) {
                return (codes, sum, sum_sq, err_sq);
            }
            for (c, &x) in codes.iter_mut().zip(v) {
                let code = round_within((f64::from(x) - f64::from(mid)) / f64::from(step), max);
                *c = code;
                sum += i32::from(code);
                sum_sq += i32::from(code).unsigned_abs().pow(2);
                err_sq +=
                    (f64::from(x) - (f64::from(mid) + f64::from(step) * f64::from(code))).powi(2);
            }
            (codes, sum, sum_sq, err_sq)
        };
        let mut next = uniform(42);
        for (i, dim) in [1usize, 3, 4, 17, 128, 300, 1536]
            .into_iter()
            .cycle()
            .take(70)
            .enumerate()
        {
            let scale = [1e-6f32, 1e-2, 1.0, 3.0e2, 1e7][i % 5];
            let shift = [0.0f32, 0.5, -40.0][i % 3] * scale;
            let v: Vec<f32> = (0..dim).map(|_| next() * scale + shift).collect();
            for max in [VECTOR_MAX, QUERY_MAX] {
                let len = dim.div_ceil(4) * 4;
                let (codes, meta) = encode(&v, len, max);
                let (want, sum, sum_sq, err_sq) = one_pass(&v, len, max);
                assert_eq!(codes, want, "dim {dim}, scale {scale}, max {max}");
                assert_eq!((meta.sum, meta.sum_sq), (sum, sum_sq));
                let bound = (v.len() as f64).sqrt() * f64::from(meta.step) / 2.0;
                let err = if bound > 0.0 {
                    ((err_sq.sqrt() / bound * f64::from(ERR_FULL)).ceil() + 1.0)
                        .min(f64::from(ERR_FULL)) as u16
                } else {
                    ERR_FULL
                };
                assert_eq!(meta.err, err, "dim {dim}, scale {scale}, max {max}");
            }
        }
    }

    #[test]
    fn codes_round_trip_through_words() {
        let store = store_of(&[vec![0.75f32, -2.0, 0.4, 0.0, 2.0]], Metric::L2);
        let bytes = stored(&store, 0);
        assert_eq!(bytes.len(), 8, "5 bytes rounded up to 2 words");
        // m = 0, b = 2/127 (rounded up to an f32): 0.75 is 47.6 steps, 0.4 is 25.4.
        assert_eq!(&bytes[..5], &[48, (-127i8).cast_unsigned(), 25, 0, 127]);
        assert_eq!(&bytes[5..], &[0, 0, 0], "padding is zero");
        let meta = store.meta(0);
        assert_eq!(meta.mid, 0.0);
        // The least f32 at or above 2/127.
        assert!(f64::from(meta.step) >= 2.0 / 127.0);
        assert!(f64::from(f32::from_bits(meta.step.to_bits() - 1)) < 2.0 / 127.0);
        assert_eq!((meta.sum, meta.sum_sq), (73, 35_187));

        // 128 dimensions under L2: 7-bit codes stored as c + 63, the meta in the top
        // bits. m = 0, b = 2/63: 0.75 is 23.6 steps, 0.4 is 12.6.
        let mut v = vec![0.0f32; 128];
        v[..5].copy_from_slice(&[0.75, -2.0, 0.4, 0.0, 2.0]);
        let store = store_of(&[v], Metric::L2);
        let meta = store.meta(0);
        let codes: Vec<u8> = stored(&store, 0).iter().map(|b| b & CODE_BITS).collect();
        assert_eq!(&codes[..5], &[24 + 63, 0, 13 + 63, 63, 126]);
        assert!(codes[5..].iter().all(|&c| c == 63));
        assert!(f64::from(meta.step) >= 2.0 / 63.0);
        assert!(f64::from(f32::from_bits(meta.step.to_bits() - 1)) < 2.0 / 63.0);
        assert_eq!((meta.sum, meta.sum_sq), (37, 8_683));
    }

    #[test]
    fn meta_bits_round_trip() {
        let mut next = uniform(11);
        for _ in 0..100 {
            let bits = (0..4).fold(0u128, |acc, _| {
                (acc << 32) | u128::from((next().to_bits()) ^ (next().to_bits() << 3))
            });
            let mut bytes = [0u8; META_BITS];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = (i as u8 & CODE_BITS) | ((((bits >> i) & 1) as u8) << 7);
            }
            assert_eq!(top_bits(&bytes), bits);
            assert_eq!(Meta::from_packed(bits).packed(), bits);
        }
        // The widest sums 32,768 dimensions of 7-bit codes can have.
        for (sum, sum_sq, err) in [
            (-2_064_384, 130_056_192, ERR_FULL),
            (2_064_384, 0, 0),
            (-1, 1, 1),
            (0, 3_969, 77),
        ] {
            let meta = Meta {
                mid: -1.5,
                step: 0.25,
                sum,
                sum_sq,
                err,
            };
            assert_eq!(Meta::from_packed(meta.packed()), meta);
        }
    }

    /// A vector's `err` bounds how far its code decodes from it, and is on average well
    /// inside the bound `√n·b/2` it is a share of.
    #[test]
    fn err_bounds_the_decoding_error() {
        let mut next = uniform(41);
        let (mut shares, mut count) = (0.0, 0);
        for (dim, offset, spread) in [(128usize, 0.0, 1.0), (300, 50.0, 0.01), (1, 2.0, 1.0)] {
            for max in [VECTOR_MAX, QUERY_MAX] {
                for _ in 0..50 {
                    let v: Vec<f32> = (0..dim).map(|_| offset + spread * next()).collect();
                    let (codes, meta) = encode(&v, dim.div_ceil(4) * 4, max);
                    let bound = (dim as f64).sqrt() * f64::from(meta.step) / 2.0;
                    let actual = v
                        .iter()
                        .zip(&codes)
                        .map(|(&x, &c)| {
                            let back = f64::from(meta.mid) + f64::from(meta.step) * f64::from(c);
                            (f64::from(x) - back).powi(2)
                        })
                        .sum::<f64>()
                        .sqrt();
                    let share = f64::from(meta.err) / f64::from(ERR_FULL);
                    assert!(
                        actual <= bound * share,
                        "dim {dim}: {actual} over {bound} x {share}"
                    );
                    shares += share;
                    count += 1;
                }
            }
        }
        assert!(
            shares / f64::from(count) < 0.8,
            "mean share {}",
            shares / f64::from(count)
        );
    }

    /// Codes of 128 bytes or more carry their meta in their top bits, shorter ones in
    /// the array apart; either way the code bits, the meta and the distances are the
    /// ones the vector codes to. The distance is checked against `|q̂ − v̂|²`,
    /// `|q̂ − v̂|²/2` and `1 − q̂·v̂` taken directly from the decoded values, so the
    /// expansion, the dot
    /// product over the head and the tail, and the offset of the stored bytes are
    /// all in the comparison.
    #[test]
    fn long_codes_carry_their_meta_in_their_top_bits() {
        for (dim, offset, spread, seed) in [
            (128, 0.0, 1.0, 31),
            (130, -3.0, 0.5, 32),
            (200, 1_000.0, 2.0, 33),
            (127, 0.0, 1.0, 34),
            (16, -1.0, 4.0, 35),
        ] {
            let mut next = uniform(seed);
            let mut draw = || -> Vec<f32> { (0..dim).map(|_| offset + spread * next()).collect() };
            // Negative vectors give negative sums: every bit pattern of the words.
            let mut vectors: Vec<Vec<f32>> = (0..40).map(|_| draw()).collect();
            vectors.push(vec![-5.0; dim]);
            vectors.push((0..dim).map(|i| -(i as f32)).collect());
            let q = draw();
            for metric in [Metric::L2, Metric::Cosine, Metric::Ip] {
                let store = store_of(&vectors, metric);
                let inline = dim >= META_BITS && metric != Metric::Ip;
                assert_eq!(store.metas.is_none(), inline, "{metric:?} dim {dim}");
                let max = if inline { VECTOR_MAX } else { QUERY_MAX };
                let offset = if inline { VECTOR_MAX } else { 0 };
                let coded = store.query(&q, metric);
                let q_hat: Vec<f64> = coded
                    .codes
                    .iter()
                    .take(dim)
                    .map(|&c| f64::from(coded.meta.mid) + f64::from(coded.meta.step) * f64::from(c))
                    .collect();
                for (s, v) in vectors.iter().enumerate() {
                    let (codes, mut meta) = encode(v, store.words * 4, max);
                    if !inline {
                        // Beside 8-bit codes no room is kept for the error.
                        meta.err = ERR_FULL;
                    }
                    assert_eq!(store.meta(s as u32), meta, "dim {dim} slot {s}");
                    let bytes = stored(&store, s as u32);
                    for i in 0..dim {
                        let code = if inline {
                            i32::from(bytes[i] & CODE_BITS)
                        } else {
                            i32::from(bytes[i].cast_signed())
                        };
                        assert_eq!(
                            code,
                            i32::from(codes[i]) + offset,
                            "dim {dim} slot {s} byte {i}"
                        );
                    }
                    let v_hat = codes
                        .iter()
                        .take(dim)
                        .map(|&c| f64::from(meta.mid) + f64::from(meta.step) * f64::from(c));
                    let l2 = || {
                        q_hat
                            .iter()
                            .zip(v_hat.clone())
                            .map(|(a, b)| (a - b).powi(2))
                            .sum()
                    };
                    let direct = match metric {
                        Metric::L2 => l2(),
                        // Normalised vectors: 1 − cos = |q − v|²/2.
                        Metric::Cosine => l2() / 2.0,
                        Metric::Ip => {
                            1.0 - q_hat.iter().zip(v_hat).map(|(a, b)| a * b).sum::<f64>()
                        }
                    };
                    let got = f64::from(store.distance(&coded, s as u32));
                    // The L2 form subtracts no large norms, so its error is relative to
                    // the result; the IP form's to the query's size.
                    let scale = match metric {
                        Metric::L2 | Metric::Cosine => direct.abs() + 1.0,
                        Metric::Ip => {
                            q_hat.iter().map(|a| a * a).sum::<f64>().max(1.0) + direct.abs()
                        }
                    };
                    assert!(
                        (got - direct).abs() <= 1e-6 * scale,
                        "{metric:?} dim {dim} slot {s}: {got} against {direct}"
                    );
                }
            }
        }
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
            for max in [VECTOR_MAX, QUERY_MAX] {
                let (codes, meta) = encode(&v, v.len().div_ceil(4) * 4, max);
                let half = f64::from(meta.step) / 2.0;
                for (i, (&x, &c)) in v.iter().zip(&codes).enumerate() {
                    let back = f64::from(meta.mid) + f64::from(meta.step) * f64::from(c);
                    let error = (f64::from(x) - back).abs();
                    assert!(
                        error <= half * (1.0 + 1e-9) + f64::from(meta.mid.abs()) * 1e-12,
                        "{v:?}[{i}] at {max}: {x} came back as {back} (m {}, b {}, c {c})",
                        meta.mid,
                        meta.step
                    );
                }
            }
        }
    }

    #[test]
    fn constant_vectors_code_to_their_value() {
        let store = store_of(&[vec![3.0; 4], vec![5.0; 4], vec![0.0; 4]], Metric::L2);
        assert_eq!(stored(&store, 0), &[0; 4]);
        let q = store.query(&[5.0; 4], Metric::L2);
        assert_eq!(store.distance(&q, 0), 16.0);
        assert_eq!(store.distance(&q, 1), 0.0);
        assert_eq!(store.distance(&q, 2), 100.0);
        let store = store_of(&[vec![3.0; 4]], Metric::Ip);
        let q = store.query(&[0.5; 4], Metric::Ip);
        assert_eq!(store.distance(&q, 0), 1.0 - 6.0);
        // Carrying the meta, a constant code is 63s with the meta's bits on top.
        let store = store_of(&[vec![3.0; 128], vec![5.0; 128]], Metric::L2);
        assert!(stored(&store, 0).iter().all(|&b| b & CODE_BITS == 63));
        let q = store.query(&[5.0; 128], Metric::L2);
        assert_eq!(store.distance(&q, 0), 4.0 * 128.0);
        assert_eq!(store.distance(&q, 1), 0.0);
    }

    /// Approximate distances within the worst case of half a step per component, and on
    /// average far inside it; `offset` moves every vector away from the origin.
    fn check_error_bounds(dim: usize, offset: f32, spread: f32) {
        let mut next = uniform(7);
        let mut draw = || -> Vec<f32> { (0..dim).map(|_| offset + spread * next()).collect() };
        let vectors: Vec<Vec<f32>> = (0..64).map(|_| draw()).collect();
        let q = draw();
        let half_step =
            |v: &[f32], max| f64::from(encode(v, v.len().div_ceil(4) * 4, max).1.step) / 2.0;

        let l1 = |v: &[f32]| v.iter().map(|x| f64::from(x.abs())).sum::<f64>();
        let l1_diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| f64::from((x - y).abs()))
                .sum::<f64>()
        };
        for metric in [Metric::L2, Metric::Ip] {
            let store = store_of(&vectors, metric);
            let coded = store.query(&q, metric);
            let mut relative = 0.0;
            for (s, v) in vectors.iter().enumerate() {
                let exact = f64::from(metric.distance(&q, v));
                let approx = f64::from(store.distance(&coded, s as u32));
                let (eq, ev) = (half_step(&q, QUERY_MAX), half_step(v, store.vector_max()));
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

    /// Floors of every pair of a store against its exact distances: how many, and how
    /// many within a factor of two of the exact distance.
    fn check_floors(
        metric: Metric,
        vectors: &[Vec<f32>],
        queries: &[Vec<f32>],
        what: &str,
    ) -> (usize, usize) {
        let store = store_of(vectors, metric);
        let (mut total, mut useful) = (0, 0);
        for q in queries {
            let mut coded = store.query(q, metric);
            coded.prepare_floors(q);
            for (s, v) in vectors.iter().enumerate() {
                let exact = metric.distance(q, v);
                let floor = store.floor(&coded, store.distance(&coded, s as u32), s as u32);
                assert!(
                    floor <= exact,
                    "{metric:?} {what} slot {s}: floor {floor} above exact {exact}"
                );
                total += 1;
                useful += usize::from(floor > exact * 0.5);
            }
        }
        (total, useful)
    }

    /// The invariant a re-rank's skips rest on: no L2 or COSINE floor is above its
    /// exact distance, near and far from the origin, wide and narrow spreads, padded
    /// dimensions, 7- and 8-bit codes (with tails past the meta's 128 bytes), and a
    /// query that is one of the vectors.
    #[test]
    fn floors_never_exceed_exact_distances() {
        for metric in [Metric::L2, Metric::Cosine] {
            let (mut total, mut useful) = (0, 0);
            for (dim, offset, spread, seed) in [
                (128, 0.0, 1.0, 21),
                (37, 0.0, 1.0, 22),
                (128, 1_000.0, 2.0, 23),
                (16, 1_000.0, 0.001, 24),
                (64, -5.0, 100.0, 25),
                (3, 0.0, 1e-6, 26),
                (130, 0.0, 1.0, 27),
                (200, 1_000.0, 2.0, 28),
                (1536, 0.0, 1.0, 29),
            ] {
                let mut next = uniform(seed);
                let mut draw =
                    || -> Vec<f32> { (0..dim).map(|_| offset + spread * next()).collect() };
                // COSINE stores and searches unit vectors.
                let prepare = |v: Vec<f32>| {
                    let mut out = Vec::new();
                    metric.prepare(&v, dim, &mut out).unwrap();
                    out
                };
                let vectors: Vec<Vec<f32>> = (0..200).map(|_| prepare(draw())).collect();
                let queries = [prepare(draw()), vectors[7].clone()];
                let what = format!("dim {dim} offset {offset} spread {spread}");
                let (t, u) = check_floors(metric, &vectors, &queries, &what);
                total += t;
                useful += u;
            }
            // Not vacuous: many floors are within a factor of two of the exact distance.
            assert!(
                useful * 4 > total,
                "{metric:?}: {useful} of {total} floors useful"
            );
        }
        // IP has none.
        let store = store_of(&[vec![1.0, 2.0, 3.0]], Metric::Ip);
        let coded = store.query(&[1.0, 2.0, 3.0], Metric::Ip);
        assert_eq!(store.floor(&coded, 0.0, 0), f32::NEG_INFINITY);
    }

    /// A decoded index takes COSINE vectors whose squared length is within 1e-3 of one
    /// (`Metric::is_prepared`), more than `Metric::prepare` ever leaves. Their exact
    /// distances then stray from `|q − v|²/2` by up to half that, and the floors must
    /// allow for it: a query equal to a vector 1 + 5e-4 long in square has an exact
    /// distance of −2.5e-4, which a slack for f32 rounding alone would put its floor
    /// above.
    #[test]
    fn cosine_floors_allow_for_vectors_of_nearly_unit_length() {
        for dim in [16, 128, 130] {
            let mut next = uniform(51);
            let unit = |v: Vec<f32>| {
                let mut out = Vec::new();
                Metric::Cosine.prepare(&v, dim, &mut out).unwrap();
                out
            };
            let mut vectors: Vec<Vec<f32>> = (0..50)
                .map(|_| unit((0..dim).map(|_| next()).collect()))
                .collect();
            // Vector 4 is made longer below: against its own unit direction the exact
            // distance is about −2.5e-4.
            let query = vectors[4].clone();
            for (i, v) in vectors.iter_mut().enumerate() {
                let stretch = if i % 2 == 0 { 1.0 + 5e-4 } else { 1.0 - 5e-4 };
                v.iter_mut().for_each(|x| *x *= f32::sqrt(stretch));
                assert!(Metric::Cosine.is_prepared(v), "a decoder would take it");
            }
            check_floors(
                Metric::Cosine,
                &vectors,
                &[query, vectors[3].clone()],
                &format!("dim {dim}"),
            );
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
        let store = store_of(&vectors, Metric::L2);
        let q: Vec<f32> = (0..dim).map(|_| 1_000.0 + next()).collect();
        let coded = store.query(&q, Metric::L2);
        let nearest = |d: &dyn Fn(usize) -> f32| {
            (0..vectors.len())
                .min_by(|&a, &b| d(a).total_cmp(&d(b)))
                .unwrap()
        };
        let exact = nearest(&|s| Metric::L2.distance(&q, &vectors[s]));
        let approx = nearest(&|s| store.distance(&coded, s as u32));
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
