//! The dot product of a query's 8-bit codes with the first 128 bytes of a stored 7-bit
//! code, and the top bits of those bytes, in one pass over registers (`sq8`).
//!
//! A stored byte is `c + 63` in its low seven bits and one bit of the record's meta in
//! its top bit. Masking the bytes into a buffer and handing it to simsimd measured 20%
//! slower walks than reading a separate meta line (the buffer's narrow stores and the
//! kernel's wide loads do not forward, and gathering 128 top bits with multiplies costs
//! more than the line saved). Here the mask, the gather (`vpmovb2m` / `vpmovmskb`) and the
//! products (`vpdpbusd` / `vpmaddubsw`, unsigned stored bytes times signed query codes)
//! run on the loaded registers. The stored side is at most 127 and the query side at
//! most 127 in magnitude, so `vpmaddubsw`'s pairs (at most 2 · 127 · 127 = 32,258) never
//! saturate.

/// Bytes a head covers: one meta bit each, 128 bits.
pub(crate) const HEAD: usize = 128;

/// The code bits of a stored byte.
const CODE_BITS: u8 = 0x7f;

/// Which implementation this CPU runs, chosen once per store. Its variant is private:
/// only [`Kernel::detect`] (and the tests' [`Kernel::all_supported`]) make one, so a
/// SIMD kernel is never chosen on a CPU without its features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kernel(Imp);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Imp {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl Kernel {
    /// The fastest kernel this CPU supports.
    pub(crate) fn detect() -> Kernel {
        Kernel::all_supported().pop().unwrap_or(Kernel(Imp::Scalar))
    }

    /// Every kernel this CPU supports, slowest first.
    fn all_supported() -> Vec<Kernel> {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut all = vec![Kernel(Imp::Scalar)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(Kernel(Imp::Avx2));
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                all.push(Kernel(Imp::Avx512Vnni));
            }
        }
        all
    }

    /// `Σ q[i]·(stored[i] & 0x7f)` and the top bit of `stored[i]` in bit `i`.
    // #[PerformanceCriticalPath]: every vector a coded walk of 128 or more dimensions measures.
    #[inline(always)]
    pub(crate) fn head_dot(self, q: &[i8; HEAD], stored: &[u8; HEAD]) -> (i32, u128) {
        match self.0 {
            Imp::Scalar => scalar(q, stored),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `all_supported` made this kernel only where the CPU has AVX2.
            Imp::Avx2 => unsafe { x86::avx2(q, stored) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `all_supported` made this kernel only where the CPU has AVX-512
            // F, BW and VNNI.
            Imp::Avx512Vnni => unsafe { x86::avx512_vnni(q, stored) },
        }
    }
}

/// The reference the SIMD kernels are held to.
fn scalar(q: &[i8; HEAD], stored: &[u8; HEAD]) -> (i32, u128) {
    let dot = q
        .iter()
        .zip(stored)
        .map(|(&c, &b)| i32::from(c) * i32::from(b & CODE_BITS))
        .sum();
    (dot, top_bits(stored))
}

/// The top bit of each byte, byte `i` in bit `i`: what the kernels gather, on its own
/// (a record's meta, read without a distance).
pub(crate) fn top_bits(bytes: &[u8; HEAD]) -> u128 {
    let mut bits = 0u128;
    for (i, chunk) in bytes.chunks_exact(8).enumerate() {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        let x = (u64::from_le_bytes(eight) >> 7) & 0x0101_0101_0101_0101;
        // Each byte's low bit lands in the top byte at its own position (no carries:
        // every partial product is a distinct power of two).
        let packed = x.wrapping_mul(0x0102_0408_1020_4080) >> 56;
        bits |= u128::from(packed) << (8 * i);
    }
    bits
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{CODE_BITS, HEAD};

    /// # Safety
    /// The CPU must support AVX-512 F, BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn avx512_vnni(q: &[i8; HEAD], stored: &[u8; HEAD]) -> (i32, u128) {
        let (s, qp) = (stored.as_ptr(), q.as_ptr());
        // SAFETY: both arrays are 128 bytes, so the two unaligned 64-byte loads at
        // offsets 0 and 64 stay inside them.
        let (s0, s1, q0, q1) = unsafe {
            (
                _mm512_loadu_si512(s.cast()),
                _mm512_loadu_si512(s.add(64).cast()),
                _mm512_loadu_si512(qp.cast()),
                _mm512_loadu_si512(qp.add(64).cast()),
            )
        };
        let low = _mm512_set1_epi8(CODE_BITS as i8);
        let bits =
            u128::from(_mm512_movepi8_mask(s0)) | (u128::from(_mm512_movepi8_mask(s1)) << 64);
        let acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(s0, low), q0);
        let acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(s1, low), q1);
        (_mm512_reduce_add_epi32(acc), bits)
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(q: &[i8; HEAD], stored: &[u8; HEAD]) -> (i32, u128) {
        let (s, qp) = (stored.as_ptr(), q.as_ptr());
        let low = _mm256_set1_epi8(CODE_BITS as i8);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_si256();
        let mut bits = 0u128;
        for i in 0..HEAD / 32 {
            // SAFETY: both arrays are 128 bytes; the unaligned 32-byte loads at offsets
            // 0, 32, 64 and 96 stay inside them.
            let (sv, qv) = unsafe {
                (
                    _mm256_loadu_si256(s.add(32 * i).cast()),
                    _mm256_loadu_si256(qp.add(32 * i).cast()),
                )
            };
            let mask = _mm256_movemask_epi8(sv).cast_unsigned();
            bits |= u128::from(mask) << (32 * i);
            let pairs = _mm256_maddubs_epi16(_mm256_and_si256(sv, low), qv);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
        }
        let half = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256::<1>(acc),
        );
        let half = _mm_add_epi32(half, _mm_unpackhi_epi64(half, half));
        let half = _mm_add_epi32(half, _mm_shuffle_epi32::<0b01>(half));
        (_mm_cvtsi128_si32(half), bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel this CPU runs gives the scalar figures, at the extremes of both
    /// sides (a query at ±127, stored bytes of 0 and 126 with and without their top
    /// bit) and on random bytes.
    #[test]
    fn simd_kernels_match_the_scalar_reference() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        };
        let mut cases: Vec<([i8; HEAD], [u8; HEAD])> = vec![
            ([127; HEAD], [126 | 0x80; HEAD]),
            ([-127; HEAD], [126; HEAD]),
            ([-127; HEAD], [0x80; HEAD]),
            ([0; HEAD], [0xff; HEAD]),
        ];
        for _ in 0..200 {
            let q = std::array::from_fn(|_| (next() as i8).max(-127));
            let s = std::array::from_fn(|_| {
                let b = next();
                (b & 0x80) | (b & CODE_BITS).min(126)
            });
            cases.push((q, s));
        }
        let found = Kernel::all_supported();
        for (q, s) in &cases {
            let want = scalar(q, s);
            for &k in &found {
                assert_eq!(k.head_dot(q, s), want, "{k:?}");
            }
        }
        // The extremes are where the products are largest: 128 · 127 · 126.
        assert_eq!(
            scalar(&cases[0].0, &cases[0].1),
            (128 * 127 * 126, u128::MAX)
        );
        assert_eq!(scalar(&cases[3].0, &cases[3].1), (0, u128::MAX));
    }
}
