//! Software prefetch of the next vector a graph walk will read. The walk's memory accesses
//! are data-dependent, so the hardware prefetcher cannot guess them; issuing the loads one
//! neighbour ahead overlaps their latency with the current distance computation. The
//! engine uses it too, for the keys of a search's hits (`shoal_engine::search`).

/// Hints that the `lines` cache lines starting at `ptr` will be read soon.
#[inline(always)]
pub fn prefetch<T>(ptr: *const T, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = ptr.cast::<i8>();
        for line in 0..lines {
            // SAFETY: prefetch is a hint that never faults, whatever the address; SSE is
            // part of the x86_64 baseline, so the instruction always exists.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line * 64)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ptr, lines);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefetch_of_any_address_is_harmless() {
        let v = [1u32; 64];
        super::prefetch(v.as_ptr(), 4);
        super::prefetch(std::ptr::null::<u8>(), 2);
        super::prefetch(usize::MAX as *const u8, 1);
        assert_eq!(v[0], 1);
    }
}
