//! Distance metrics: the simsimd kernels used on the hot path, the plain scalar reference
//! the tests compare them against, and the validation every vector passes on the way in.
//!
//! COSINE is served by normalising vectors once when they enter the index (and the query
//! once per search) and then using the inner-product kernel: `1 - dot(â, b̂)` is the cosine
//! distance, and it saves two norms per distance on the hot path, as hnswlib does.

use std::borrow::Cow;

use simsimd::SpatialSimilarity;

use crate::error::{IndexError, Result};

/// How distance between two vectors is measured. Smaller is always closer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// `1 - dot(a, b)`; may be negative for long vectors.
    Ip,
    /// `1 - cos(a, b)`, in `[0, 2]`.
    Cosine,
}

impl Metric {
    /// Name as FT.CREATE spells it.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "L2",
            Metric::Ip => "IP",
            Metric::Cosine => "COSINE",
        }
    }

    /// Parses `L2`, `IP` or `COSINE`, case-insensitively.
    pub fn parse(s: &str) -> Option<Metric> {
        match s.to_ascii_uppercase().as_str() {
            "L2" => Some(Metric::L2),
            "IP" => Some(Metric::Ip),
            "COSINE" => Some(Metric::Cosine),
            _ => None,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Metric::L2 => 0,
            Metric::Ip => 1,
            Metric::Cosine => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Metric> {
        match code {
            0 => Some(Metric::L2),
            1 => Some(Metric::Ip),
            2 => Some(Metric::Cosine),
            _ => None,
        }
    }

    /// Distance between two *prepared* vectors (see [`Metric::prepare`]).
    // #[PerformanceCriticalPath]: called for every vector a search touches.
    #[inline]
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::L2 => l2sq(a, b),
            Metric::Ip | Metric::Cosine => 1.0 - dot(a, b),
        }
    }

    /// Checks a vector and writes the form the index stores and compares: unchanged for
    /// L2 and IP, unit length for COSINE.
    pub fn prepare(self, v: &[f32], dim: usize, out: &mut Vec<f32>) -> Result<()> {
        validate(v, dim)?;
        out.clear();
        out.extend_from_slice(v);
        if self == Metric::Cosine {
            // In f64: squares of large f32 components would overflow an f32 sum.
            let norm = norm_sq(v).sqrt();
            if norm == 0.0 {
                return Err(IndexError::ZeroVector);
            }
            // One division, then multiplies: a divide per component was a visible share
            // of a low-ef COSINE query. The multiply stays in f32 (a rounding of at most
            // an ulp) unless 1/norm is not a normal f32, where f32 would lose digits.
            let inv = 1.0 / norm;
            let inv32 = inv as f32;
            if inv32.is_normal() {
                out.iter_mut().for_each(|x| *x *= inv32);
            } else {
                out.iter_mut()
                    .for_each(|x| *x = (f64::from(*x) * inv) as f32);
            }
        }
        Ok(())
    }

    /// Whether `v` is in the form [`Metric::prepare`] stores: any vector for L2 and IP, a
    /// unit vector for COSINE. Decoding checks it, so a stream cannot smuggle in a vector
    /// the index would answer wrongly for.
    pub fn is_prepared(self, v: &[f32]) -> bool {
        match self {
            Metric::L2 | Metric::Ip => true,
            Metric::Cosine => (scalar::dot(v, v) - 1.0).abs() < 1e-3,
        }
    }

    /// [`Metric::prepare`] without a copy where none is needed: L2 and IP compare the
    /// caller's vector as it is, so only COSINE allocates (for the unit vector).
    pub fn prepare_borrowed(self, v: &[f32], dim: usize) -> Result<Cow<'_, [f32]>> {
        match self {
            Metric::L2 | Metric::Ip => {
                validate(v, dim)?;
                Ok(Cow::Borrowed(v))
            }
            Metric::Cosine => {
                let mut out = Vec::with_capacity(dim);
                self.prepare(v, dim, &mut out)?;
                Ok(Cow::Owned(out))
            }
        }
    }

    /// The reference distance on *raw* vectors, computed in f64 without SIMD.
    pub fn reference_distance(self, a: &[f32], b: &[f32]) -> f64 {
        match self {
            Metric::L2 => scalar::l2sq(a, b),
            Metric::Ip => 1.0 - scalar::dot(a, b),
            Metric::Cosine => scalar::cosine_distance(a, b),
        }
    }
}

/// Rejects vectors of the wrong length and with NaN or infinite components.
pub fn validate(v: &[f32], dim: usize) -> Result<()> {
    if v.len() != dim {
        return Err(IndexError::DimensionMismatch {
            expected: dim,
            got: v.len(),
        });
    }
    // A branch-free OR over the exponent bits vectorizes; the position is only looked
    // for once something is wrong. This runs on every query, so it has to be cheap.
    const EXPONENT: u32 = 0x7f80_0000;
    let any_bad = v
        .iter()
        .fold(false, |bad, x| bad | (x.to_bits() & EXPONENT == EXPONENT));
    if !any_bad {
        return Ok(());
    }
    match v.iter().position(|x| !x.is_finite()) {
        Some(position) => Err(IndexError::NonFinite { position }),
        None => Ok(()),
    }
}

/// `Σ vᵢ²` in f64 with eight independent accumulators, so it vectorizes (a single f64
/// sum is one long dependency chain). Differs from [`scalar::dot`] only in rounding order.
fn norm_sq(v: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = v.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, x) in acc.iter_mut().zip(chunk) {
            let x = f64::from(*x);
            *a += x * x;
        }
    }
    let head: f64 = acc.iter().sum();
    head + tail
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
}

/// Squared Euclidean distance through simsimd.
#[inline]
pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    // simsimd only refuses slices of different lengths, which callers never pass.
    f32::l2sq(a, b).map_or(f32::INFINITY, |d| d as f32)
}

/// Dot product through simsimd.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    f32::dot(a, b).map_or(f32::NEG_INFINITY, |d| d as f32)
}

/// Plain loops in f64: slow, obviously right, and what the SIMD kernels are tested against.
pub mod scalar {
    /// Squared Euclidean distance.
    pub fn l2sq(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| {
                let d = f64::from(*x) - f64::from(*y);
                d * d
            })
            .sum()
    }

    /// Dot product.
    pub fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    /// `1 - cos(a, b)`; 1.0 when either vector is zero.
    pub fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
        let denom = (dot(a, a) * dot(b, b)).sqrt();
        if denom == 0.0 {
            1.0
        } else {
            1.0 - dot(a, b) / denom
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn simd_kernels_match_scalar_reference() {
        let mut seed = 7;
        for dim in [1, 3, 16, 17, 100, 128, 384, 768, 1536] {
            let a: Vec<f32> = (0..dim).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f32> = (0..dim).map(|_| lcg(&mut seed)).collect();
            for metric in [Metric::L2, Metric::Ip, Metric::Cosine] {
                let (mut pa, mut pb) = (Vec::new(), Vec::new());
                metric.prepare(&a, dim, &mut pa).unwrap();
                metric.prepare(&b, dim, &mut pb).unwrap();
                let fast = f64::from(metric.distance(&pa, &pb));
                let slow = metric.reference_distance(&a, &b);
                let tol = 1e-4 * (1.0 + slow.abs());
                assert!(
                    (fast - slow).abs() <= tol,
                    "{metric:?} dim {dim}: {fast} vs {slow}"
                );
            }
        }
    }

    #[test]
    fn bad_vectors_are_typed_errors() {
        let mut out = Vec::new();
        assert_eq!(
            Metric::L2.prepare(&[1.0, 2.0], 3, &mut out),
            Err(IndexError::DimensionMismatch {
                expected: 3,
                got: 2
            })
        );
        assert_eq!(
            Metric::L2.prepare(&[1.0, f32::NAN], 2, &mut out),
            Err(IndexError::NonFinite { position: 1 })
        );
        assert_eq!(
            Metric::Ip.prepare(&[f32::INFINITY, 0.0], 2, &mut out),
            Err(IndexError::NonFinite { position: 0 })
        );
        assert_eq!(
            Metric::Cosine.prepare(&[0.0, 0.0], 2, &mut out),
            Err(IndexError::ZeroVector)
        );
        assert!(Metric::L2.prepare(&[0.0, 0.0], 2, &mut out).is_ok());
    }

    #[test]
    fn norm_matches_reference_and_does_not_overflow() {
        let mut seed = 11;
        for dim in [1, 7, 8, 9, 128, 1537] {
            for scale in [1e-30f32, 1.0, 1e30, 1e38] {
                let v: Vec<f32> = (0..dim).map(|_| lcg(&mut seed) * scale).collect();
                let (fast, slow) = (norm_sq(&v), scalar::dot(&v, &v));
                assert!(fast.is_finite(), "dim {dim}: {fast}");
                assert!(
                    (fast - slow).abs() <= 1e-12 * slow,
                    "dim {dim}: {fast} vs {slow}"
                );
                let mut unit = Vec::new();
                Metric::Cosine.prepare(&v, dim, &mut unit).unwrap();
                assert!(Metric::Cosine.is_prepared(&unit), "dim {dim} scale {scale}");
            }
        }
    }

    #[test]
    fn every_non_finite_position_is_found() {
        let mut out = Vec::new();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN] {
            for position in [0, 5, 8, 16, 127] {
                let mut v = vec![0.5f32; 128];
                v[position] = bad;
                assert_eq!(
                    Metric::L2.prepare(&v, 128, &mut out),
                    Err(IndexError::NonFinite { position })
                );
            }
        }
        // Largest finite and subnormal values are fine.
        let v = [f32::MAX, f32::MIN, f32::MIN_POSITIVE / 2.0, -0.0];
        assert!(Metric::L2.prepare(&v, 4, &mut out).is_ok());
    }

    #[test]
    fn names_round_trip() {
        for m in [Metric::L2, Metric::Ip, Metric::Cosine] {
            assert_eq!(Metric::parse(m.name()), Some(m));
            assert_eq!(Metric::from_code(m.code()), Some(m));
        }
        assert_eq!(Metric::parse("cosine"), Some(Metric::Cosine));
        assert_eq!(Metric::parse("hamming"), None);
    }
}
