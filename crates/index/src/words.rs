//! A growable array of fixed-size records made of `AtomicU32` words whose records never
//! move. Readers index it without locks while writers append: growth adds a chunk instead
//! of reallocating, so a reference a search holds stays valid.
//!
//! Chunk 0 holds exactly `first` records (the index's INITIAL_CAP, up to 1 GiB of them, so
//! preallocation costs what was asked for); chunk `i >= 1` holds `step << (i - 1)` records with `step` a power
//! of two, so locating a record past chunk 0 is a shift and a leading-zeros count.
//! Chunks are allocated zeroed, which the OS backs lazily: untouched capacity costs address
//! space, not memory. Chunks of a megabyte or more are anonymous mappings advised to use
//! transparent huge pages: a graph walk touches memory at random, and with 4 KiB pages
//! nearly every vector it reads is also a TLB miss.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use crate::error::{IndexError, Result};

/// Enough chunks to address every u32 record id.
pub(crate) const MAX_CHUNKS: usize = 33;

/// A record-addressed, append-friendly store of atomic words.
#[derive(Debug)]
pub(crate) struct WordArena {
    stride: usize,
    first: usize,
    step_shift: u32,
    chunks: [OnceLock<Chunk>; MAX_CHUNKS],
}

/// The most chunk 0 reserves, whatever INITIAL_CAP asks. Under Linux's default
/// overcommit heuristic one mapping larger than the machine's memory is refused, and an
/// index whose chunk 0 cannot be had indexes nothing; 1 GiB still holds 1.5M records of
/// 128 dimensions, M 16, in one chunk.
const MAX_FIRST_BYTES: usize = 1 << 30;

/// Chunks at least this large are mapped with huge pages advised.
const MAP_THRESHOLD: usize = 1 << 20;

/// The memory of one chunk.
#[derive(Debug)]
enum Chunk {
    Heap(Box<[AtomicU32]>),
    Mapped { map: memmap2::MmapRaw, words: usize },
}

impl Chunk {
    /// A zero-filled chunk of `n` words, or None when the memory cannot be had.
    fn zeroed(n: usize) -> Option<Chunk> {
        let bytes = n.checked_mul(std::mem::size_of::<AtomicU32>())?;
        if bytes >= MAP_THRESHOLD {
            if let Ok(map) = memmap2::MmapOptions::new().len(bytes).map_anon() {
                let map = memmap2::MmapRaw::from(map);
                #[cfg(target_os = "linux")]
                {
                    // A hint: where THP is off the mapping simply keeps 4 KiB pages.
                    let _ = map.advise(memmap2::Advice::HugePage);
                }
                return Some(Chunk::Mapped { map, words: n });
            }
        }
        zeroed_words(n).map(Chunk::Heap)
    }

    #[inline]
    fn words(&self) -> &[AtomicU32] {
        match self {
            Chunk::Heap(words) => words,
            Chunk::Mapped { map, words } => {
                // SAFETY: the mapping is page-aligned (so 4-byte aligned), at least
                // `words * 4` bytes long, zero-filled by the OS, writable, and lives as long
                // as `self`. `MmapRaw` hands out its raw pointer without creating a
                // reference to the bytes, and the bytes are only ever accessed through
                // these atomics, so the shared `AtomicU32` view is the only access path.
                unsafe { std::slice::from_raw_parts(map.as_mut_ptr().cast::<AtomicU32>(), *words) }
            }
        }
    }
}

impl WordArena {
    /// An arena of records of `stride` words with room for `first` records in chunk 0,
    /// or as many as [`MAX_FIRST_BYTES`] hold.
    pub(crate) fn new(stride: usize, first: usize) -> Self {
        let stride = stride.max(1);
        let most = (MAX_FIRST_BYTES / (stride * std::mem::size_of::<AtomicU32>())).max(1);
        let first = first.clamp(1, most);
        let step_shift = first.next_power_of_two().trailing_zeros().clamp(6, 20);
        WordArena {
            stride,
            first,
            step_shift,
            chunks: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Which chunk holds record `i`, and where in it.
    #[inline(always)]
    fn locate(&self, i: u32) -> (usize, usize) {
        let i = i as usize;
        if i < self.first {
            return (0, i);
        }
        let r = i - self.first;
        let q = (r >> self.step_shift) + 1;
        let hb = (usize::BITS - 1 - q.leading_zeros()) as usize;
        let offset = r - (((1usize << hb) - 1) << self.step_shift);
        (hb + 1, offset)
    }

    fn chunk_len(&self, chunk: usize) -> usize {
        if chunk == 0 {
            self.first
        } else {
            1usize << (self.step_shift as usize + chunk - 1)
        }
    }

    /// Chunk `c`'s first record id: `first`, then chunks doubling from `1 << step_shift`,
    /// so the ids before chunk `c >= 1` are `first + (2^(c-1) - 1) << step_shift`. In
    /// closed form because a FLAT scan asks it of all 33 chunks of two arenas per search
    /// (summing the lengths before each was a microsecond of every small FLAT search).
    fn chunk_start(&self, c: usize) -> usize {
        match c {
            0 => 0,
            _ => self.first + (((1usize << (c - 1)) - 1) << self.step_shift),
        }
    }

    /// Makes sure record `i` is backed by memory. Safe to race: one allocation wins.
    pub(crate) fn ensure(&self, i: u32) -> Result<()> {
        let (chunk, _) = self.locate(i);
        let cell = &self.chunks[chunk];
        if cell.get().is_some() {
            return Ok(());
        }
        let words = self.chunk_len(chunk).saturating_mul(self.stride);
        let fresh = Chunk::zeroed(words).ok_or(IndexError::OutOfMemory(words.saturating_mul(4)))?;
        // Losing a race drops `fresh`; the winner's chunk is the one everybody uses.
        let _ = cell.set(fresh);
        Ok(())
    }

    /// Whether record `i` is backed by memory.
    pub(crate) fn is_backed(&self, i: u32) -> bool {
        let (chunk, _) = self.locate(i);
        self.chunks[chunk].get().is_some()
    }

    /// The words of record `i`.
    ///
    /// Panics if the record was never [`ensure`](Self::ensure)d: ids reach readers only
    /// after their record was written, so that would be a bug in this crate, not input.
    // #[PerformanceCriticalPath]
    #[inline(always)]
    pub(crate) fn record(&self, i: u32) -> &[AtomicU32] {
        let (chunk, offset) = self.locate(i);
        let words = self.chunks[chunk]
            .get()
            .expect("records are backed before their id is published")
            .words();
        &words[offset * self.stride..(offset + 1) * self.stride]
    }

    /// The words of record `i`, or None if its chunk is not allocated.
    #[inline]
    pub(crate) fn get(&self, i: u32) -> Option<&[AtomicU32]> {
        let (chunk, offset) = self.locate(i);
        let words = self.chunks.get(chunk)?.get()?.words();
        words.get(offset * self.stride..(offset + 1) * self.stride)
    }

    /// Records addressable without allocating.
    pub(crate) fn capacity(&self) -> usize {
        (0..MAX_CHUNKS)
            .filter(|&c| self.chunks[c].get().is_some())
            .map(|c| self.chunk_len(c))
            .sum()
    }

    /// Bytes of memory reserved by the allocated chunks.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.capacity() * self.stride * std::mem::size_of::<AtomicU32>()
    }

    /// Chunk `c`'s first record id and its words for the records below `limit`, if the
    /// chunk is allocated and starts below `limit`: the contiguous shape a scan wants.
    pub(crate) fn chunk(&self, c: usize, limit: u32) -> Option<(u32, &[AtomicU32])> {
        let start = self.chunk_start(c);
        if start >= limit as usize {
            return None;
        }
        let words = self.chunks.get(c)?.get()?.words();
        let n = self.chunk_len(c).min(limit as usize - start);
        Some((start as u32, &words[..n * self.stride]))
    }
}

/// Reads a word.
#[inline]
pub(crate) fn load(w: &AtomicU32) -> u32 {
    w.load(Ordering::Acquire)
}

/// Views words as the f32 values stored in them.
///
/// Only for words no thread writes while the view lives: the vector part of a record is
/// written before its id is published (Release) and reused only after a grace period
/// ([`crate::grace`]) has proven that no search can still reach it.
#[inline]
pub(crate) fn as_f32(words: &[AtomicU32]) -> &[f32] {
    // SAFETY: AtomicU32 has the size, alignment and bit validity of u32, and every bit
    // pattern is a valid f32, so the cast is a reinterpretation of initialised memory.
    // The caller holds the invariant above, so no write races with this shared view.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<f32>(), words.len()) }
}

/// Writes f32 values into words that no reader can reach yet.
pub(crate) fn store_f32(words: &[AtomicU32], values: &[f32]) {
    for (w, v) in words.iter().zip(values) {
        w.store(v.to_bits(), Ordering::Relaxed);
    }
}

/// A zero-filled boxed slice of atomics, or None when the allocation fails.
fn zeroed_words(n: usize) -> Option<Box<[AtomicU32]>> {
    let mut plain: Vec<u32> = Vec::new();
    plain.try_reserve_exact(n).ok()?;
    plain.resize(n, 0);
    let plain = plain.into_boxed_slice();
    let raw = Box::into_raw(plain);
    // SAFETY: AtomicU32 has the same size, alignment and in-memory representation as u32
    // (documented in std), so a Box<[u32]> of n zeroes is a valid Box<[AtomicU32]> of n
    // zeroes and is freed with the same layout.
    Some(unsafe { Box::from_raw(raw as *mut [AtomicU32]) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_never_overlap_and_survive_growth() {
        let arena = WordArena::new(3, 5);
        for i in 0..2_000u32 {
            arena.ensure(i).unwrap();
            let r = arena.record(i);
            assert_eq!(r.len(), 3);
            for (k, w) in r.iter().enumerate() {
                assert_eq!(w.load(Ordering::Relaxed), 0, "fresh memory is zeroed");
                w.store(i * 3 + k as u32, Ordering::Relaxed);
            }
        }
        for i in 0..2_000u32 {
            let r = arena.record(i);
            for (k, w) in r.iter().enumerate() {
                assert_eq!(w.load(Ordering::Relaxed), i * 3 + k as u32);
            }
        }
        assert!(arena.capacity() >= 2_000);
        let mut seen = 0u32;
        for c in 0..MAX_CHUNKS {
            if let Some((start, words)) = arena.chunk(c, 2_000) {
                assert_eq!(start, seen);
                seen += (words.len() / 3) as u32;
            }
        }
        assert_eq!(seen, 2_000);
    }

    /// The closed form is the sum of the chunks before, and the first id of each chunk
    /// is where `locate` puts the chunk's first record, for small, odd and huge starts.
    #[test]
    fn chunk_starts_are_the_lengths_before_them() {
        for (stride, first) in [
            (3, 5),
            (1, 1),
            (130, 10_240),
            (16, 200_000),
            (32_768, 10_000_000),
        ] {
            let arena = WordArena::new(stride, first);
            let mut before = 0usize;
            for c in 0..MAX_CHUNKS {
                assert_eq!(
                    arena.chunk_start(c),
                    before,
                    "stride {stride} first {first} chunk {c}"
                );
                if let Ok(id) = u32::try_from(before) {
                    assert_eq!(
                        arena.locate(id),
                        (c, 0),
                        "stride {stride} first {first} chunk {c}"
                    );
                }
                before += arena.chunk_len(c);
            }
        }
    }

    #[test]
    fn a_huge_initial_cap_reserves_at_most_max_first_bytes() {
        // DIM 32768 and INITIAL_CAP 10M, both allowed by FT.CREATE: 1.3 TB asked.
        let arena = WordArena::new(32_768, 10_000_000);
        assert!(arena.chunk_len(0) * 32_768 * 4 <= MAX_FIRST_BYTES);
        arena.ensure(0).unwrap();
        arena.record(0)[0].store(7, Ordering::Relaxed);
        let past = arena.chunk_len(0) as u32;
        arena.ensure(past).unwrap();
        assert_eq!(arena.record(past)[0].load(Ordering::Relaxed), 0);
        assert_eq!(arena.record(0)[0].load(Ordering::Relaxed), 7);
    }

    #[test]
    fn mapped_chunks_behave_like_heap_chunks() {
        // 300k records of 1 word: chunk 0 is 1.2 MB, above MAP_THRESHOLD, so mapped.
        let arena = WordArena::new(1, 300_000);
        arena.ensure(0).unwrap();
        assert!(matches!(arena.chunks[0].get(), Some(Chunk::Mapped { .. })));
        for i in (0..300_000u32).step_by(997) {
            assert_eq!(arena.record(i)[0].load(Ordering::Relaxed), 0);
            arena.record(i)[0].store(i, Ordering::Relaxed);
        }
        for i in (0..300_000u32).step_by(997) {
            assert_eq!(arena.record(i)[0].load(Ordering::Relaxed), i);
        }
        let small = WordArena::new(1, 10);
        small.ensure(0).unwrap();
        assert!(matches!(small.chunks[0].get(), Some(Chunk::Heap(_))));
    }

    #[test]
    fn f32_views_round_trip() {
        let arena = WordArena::new(4, 2);
        arena.ensure(1).unwrap();
        let values = [1.5f32, -0.0, f32::MIN_POSITIVE, 3.25];
        store_f32(arena.record(1), &values);
        assert_eq!(as_f32(arena.record(1)), &values);
    }

    #[test]
    fn locate_counts_through_the_chunks_in_order() {
        for first in [1usize, 5, 64, 1000, 65_536, 300_000, 5_000_000] {
            let arena = WordArena::new(1, first);
            assert_eq!(arena.chunk_len(0), first);
            let (mut chunk, mut offset) = (0usize, 0usize);
            for i in 0..((first * 9).min(4_000_000) + 5_000) as u32 {
                assert_eq!(
                    arena.locate(i),
                    (chunk, offset),
                    "first {first}, record {i}"
                );
                offset += 1;
                if offset == arena.chunk_len(chunk) {
                    (chunk, offset) = (chunk + 1, 0);
                }
            }
            // The last u32 id still has a chunk.
            let (last, at) = arena.locate(u32::MAX);
            assert!(
                last < MAX_CHUNKS && at < arena.chunk_len(last),
                "first {first}"
            );
        }
    }
}
