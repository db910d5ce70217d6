//! Where an HNSW node's data lives and how its links are read and written.
//!
//! ```text
//! records   (one per slot)  [vector × dim][label][upper][count0][links0 × M0][pad]
//! nodes     (one per slot)  [meta]
//! upper                     first upper block + 1, or 0 when the slot never had one
//! upper     (blocks)        [count][links × M]       one block per level above 0
//! meta bits                 0..8 level | 8..16 upper blocks reserved | 31 writer lock
//! ```
//!
//! The vector comes first and records are padded to whole cache lines (when that costs at
//! most an eighth more memory, and walks measure vectors: see below), so reading a
//! vector touches exactly `dim / 16` lines; the
//! label follows it, so the check "is this node deleted / allowed" costs at most one more.
//! The upper-block pointer shares that line, so a hop through an upper level finds the
//! node's upper links without another dependent miss. Links are atomics: a reader
//! may see a list mid-update (a mix of old and new ids), which is harmless because every
//! id it can see names a node that is reachable and fully written. Writers of one node's
//! links hold that node's lock bit, so "one node's update" is the longest any writer
//! blocks another, and readers never block.
//!
//! Records are not padded when walks steer by codes: a search then reads a
//! record's vector only to re-rank the few nodes it keeps, and inserts pay one line in
//! eight more. Measured at 200k × 128 (docs/benchmarks.md, session 37): searches equal
//! in pairs, builds within 2%, and 52 bytes less per vector, which brings the index
//! from 1.13 × hnswlib's memory back under issue #2's 1.1 ×.

use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

use crate::error::Result;
use crate::metric::Metric;
use crate::sq8::Sq8Store;
use crate::words::{as_f32, load, WordArena};

const LEVEL_MASK: u32 = 0xff;
const RESERVED_SHIFT: u32 = 8;
const LOCK: u32 = 1 << 31;

/// Highest level a node may have. With M >= 2 a level past 16 has probability < 2^-16
/// per node; capping keeps the upper-block bookkeeping in a byte.
pub(crate) const MAX_LEVEL: usize = 16;

/// The storage of an HNSW graph.
#[derive(Debug)]
pub(crate) struct Graph {
    pub(crate) dim: usize,
    /// Links per node at level 0 (2·M).
    pub(crate) m0: usize,
    /// Links per node above level 0 (M).
    pub(crate) m: usize,
    /// Cache lines of a record's vector and label: what a walk prefetches per neighbour.
    pub(crate) prefetch_lines: usize,
    records: WordArena,
    nodes: WordArena,
    upper: WordArena,
    upper_ranges: Mutex<UpperRanges>,
    /// 7- or 8-bit codes of the vectors, when walks steer by them (`HnswParams::sq8_walk`).
    pub(crate) sq8: Option<Sq8Store>,
}

/// Allocation of upper-level blocks: a bump pointer, and ranges given back by reused
/// slots, kept by length so a node of level L takes a free range of L blocks first.
#[derive(Debug, Default)]
struct UpperRanges {
    next: u32,
    free: Vec<Vec<u32>>,
}

impl UpperRanges {
    fn take(&mut self, blocks: usize) -> u32 {
        if let Some(first) = self.free.get_mut(blocks).and_then(Vec::pop) {
            return first;
        }
        let first = self.next;
        self.next += blocks as u32;
        first
    }

    fn give_back(&mut self, first: u32, blocks: usize) {
        if self.free.len() <= blocks {
            self.free.resize_with(blocks + 1, Vec::new);
        }
        self.free[blocks].push(first);
    }
}

impl Graph {
    /// `sq8`: the metric the walks' codes measure by, when walks steer by codes.
    pub(crate) fn new(dim: usize, m: usize, initial_cap: usize, sq8: Option<Metric>) -> Graph {
        let m0 = 2 * m;
        let raw = dim + 3 + m0;
        let padded = raw.next_multiple_of(16);
        let stride = if sq8.is_none() && (padded - raw) * 8 <= raw {
            padded
        } else {
            raw
        };
        Graph {
            dim,
            m0,
            m,
            // An unpadded record may start anywhere in a line: up to 15 words more.
            prefetch_lines: if stride % 16 == 0 {
                (dim + 1).div_ceil(16)
            } else {
                (dim + 1 + 15).div_ceil(16)
            }
            .min(16),
            records: WordArena::new(stride, initial_cap),
            nodes: WordArena::new(1, initial_cap),
            upper: WordArena::new(1 + m, (initial_cap / m.max(1)).max(16)),
            upper_ranges: Mutex::new(UpperRanges::default()),
            sq8: sq8.map(|metric| Sq8Store::new(dim, initial_cap, metric)),
        }
    }

    #[inline]
    fn label_at(&self) -> usize {
        self.dim
    }

    #[inline]
    fn upper_at(&self) -> usize {
        self.dim + 1
    }

    #[inline]
    fn count0_at(&self) -> usize {
        self.dim + 2
    }

    /// Max links of a node at `level`.
    #[inline]
    pub(crate) fn max_links(&self, level: usize) -> usize {
        if level == 0 {
            self.m0
        } else {
            self.m
        }
    }

    /// Gives `slot` its memory.
    pub(crate) fn ensure(&self, slot: u32) -> Result<()> {
        self.records.ensure(slot)?;
        if let Some(codes) = &self.sq8 {
            codes.ensure(slot)?;
        }
        self.nodes.ensure(slot)
    }

    pub(crate) fn is_backed(&self, slot: u32) -> bool {
        self.records.is_backed(slot)
            && self.nodes.is_backed(slot)
            && self.sq8.as_ref().is_none_or(|codes| codes.is_backed(slot))
    }

    /// The stored vector of `slot`.
    // #[PerformanceCriticalPath]
    #[inline(always)]
    pub(crate) fn vector(&self, slot: u32) -> &[f32] {
        as_f32(&self.records.record(slot)[..self.dim])
    }

    /// Pointer to a node's vector and label, for prefetching.
    #[inline(always)]
    pub(crate) fn vector_ptr(&self, slot: u32) -> *const AtomicU32 {
        self.records.record(slot).as_ptr()
    }

    /// Pointer to a node's level-0 list and the cache lines it spans, for prefetching.
    #[inline(always)]
    pub(crate) fn links_ptr(&self, slot: u32) -> (*const AtomicU32, usize) {
        let ptr = self.records.record(slot)[self.count0_at()..].as_ptr();
        (ptr, (self.m0 + 1).div_ceil(16) + 1)
    }

    /// Pointer to a node's list at an upper `level`, for prefetching; the node's record
    /// line that names the block is read, so call it for nodes just measured.
    #[inline(always)]
    pub(crate) fn upper_links_ptr(&self, slot: u32, level: usize) -> *const AtomicU32 {
        self.list(slot, level).0
    }

    /// Raw label word of `slot` (see `slots`).
    #[inline(always)]
    pub(crate) fn label_word(&self, slot: u32) -> u32 {
        load(&self.records.record(slot)[self.label_at()])
    }

    pub(crate) fn set_label_word(&self, slot: u32, word: u32) {
        self.records.record(slot)[self.label_at()].store(word, Ordering::Release);
    }

    /// Sets or clears the tombstone bit, returning the previous word.
    pub(crate) fn mark_deleted(&self, slot: u32) -> u32 {
        self.records.record(slot)[self.label_at()].fetch_or(crate::slots::DELETED, Ordering::AcqRel)
    }

    #[inline]
    fn meta(&self, slot: u32) -> &AtomicU32 {
        &self.nodes.record(slot)[0]
    }

    /// Level of `slot`.
    #[inline]
    pub(crate) fn level(&self, slot: u32) -> usize {
        (load(self.meta(slot)) & LEVEL_MASK) as usize
    }

    /// The link list of `slot` at `level`: its count word and its entries.
    // #[PerformanceCriticalPath]
    #[inline(always)]
    fn list(&self, slot: u32, level: usize) -> (&AtomicU32, &[AtomicU32]) {
        if level == 0 {
            let rec = self.records.record(slot);
            let at = self.count0_at();
            (&rec[at], &rec[at + 1..at + 1 + self.m0])
        } else {
            let first = load(&self.records.record(slot)[self.upper_at()]).wrapping_sub(1);
            let block = self.upper.record(first + level as u32 - 1);
            (&block[0], &block[1..])
        }
    }

    /// The current neighbours of `slot` at `level`. May reflect a concurrent update
    /// partially; every id in it is a valid slot.
    #[inline(always)]
    pub(crate) fn links(&self, slot: u32, level: usize) -> &[AtomicU32] {
        let (count, entries) = self.list(slot, level);
        let n = (load(count) as usize).min(entries.len());
        &entries[..n]
    }

    /// Copies the neighbours of `slot` at `level` into `out`.
    pub(crate) fn links_into(&self, slot: u32, level: usize, out: &mut Vec<u32>) {
        out.clear();
        out.extend(self.links(slot, level).iter().map(load));
    }

    /// Replaces the neighbours of `slot` at `level`. Caller holds the node's lock (or the
    /// node is not yet reachable).
    pub(crate) fn set_links(&self, slot: u32, level: usize, new: &[u32]) {
        let (count, entries) = self.list(slot, level);
        let n = new.len().min(entries.len());
        // Shrink first so a reader never pairs the new count with stale entries beyond it.
        if (load(count) as usize) > n {
            count.store(n as u32, Ordering::Release);
        }
        for (e, v) in entries.iter().zip(&new[..n]) {
            e.store(*v, Ordering::Release);
        }
        count.store(n as u32, Ordering::Release);
    }

    /// Appends one neighbour if there is room; returns false when the list is full.
    pub(crate) fn try_push_link(&self, slot: u32, level: usize, new: u32) -> bool {
        let (count, entries) = self.list(slot, level);
        let n = load(count) as usize;
        if n >= entries.len() {
            return false;
        }
        entries[n].store(new, Ordering::Release);
        count.store(n as u32 + 1, Ordering::Release);
        true
    }

    /// Takes the writer lock of `slot`. Held only while one link list is rewritten.
    pub(crate) fn lock(&self, slot: u32) -> NodeLock<'_> {
        let meta = self.meta(slot);
        let mut spins = 0u32;
        loop {
            let cur = meta.load(Ordering::Relaxed);
            if cur & LOCK == 0
                && meta
                    .compare_exchange_weak(cur, cur | LOCK, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return NodeLock { meta };
            }
            spins += 1;
            if spins < 128 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Prepares an unreachable slot for a node of `level` holding `vector`: backs its
    /// memory, empties its lists and reserves upper blocks (reusing the slot's old ones when
    /// they are enough). The label is written last, by the caller, to publish the node.
    pub(crate) fn init_slot(&self, slot: u32, level: usize, vector: &[f32]) -> Result<()> {
        self.ensure(slot)?;
        let meta = &self.nodes.record(slot)[0];
        let rec = self.records.record(slot);
        let upper = &rec[self.upper_at()];
        let reserved = ((load(meta) >> RESERVED_SHIFT) & LEVEL_MASK) as usize;
        // The slot is unreachable, and so is the range of upper blocks it had: keep the
        // range if it has exactly the length needed, else give it back and take one that
        // has (keeping a longer one would let every slot drift towards holding the
        // largest range it ever had).
        let reserved = if level != reserved || (level > 0 && load(upper) == 0) {
            let mut ranges = self.upper_ranges.lock();
            if reserved > 0 && load(upper) != 0 {
                ranges.give_back(load(upper) - 1, reserved);
            }
            upper.store(0, Ordering::Relaxed);
            if level > 0 {
                let first = ranges.take(level);
                for b in first..first + level as u32 {
                    self.upper.ensure(b)?;
                }
                upper.store(first + 1, Ordering::Relaxed);
            }
            level
        } else {
            reserved
        };
        meta.store(
            (level as u32) | ((reserved as u32) << RESERVED_SHIFT),
            Ordering::Release,
        );
        rec[self.count0_at()].store(0, Ordering::Relaxed);
        crate::words::store_f32(&rec[..self.dim], vector);
        if let Some(codes) = &self.sq8 {
            codes.write(slot, vector);
        }
        for l in 1..=level {
            let (count, _) = self.list(slot, l);
            count.store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Bytes reserved by the graph's storage.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.records.allocated_bytes()
            + self.nodes.allocated_bytes()
            + self.upper.allocated_bytes()
            + self.sq8.as_ref().map_or(0, Sq8Store::allocated_bytes)
    }

    /// Vectors the graph holds without allocating.
    pub(crate) fn capacity(&self) -> usize {
        self.records.capacity()
    }
}

/// A held node lock; released on drop.
#[derive(Debug)]
pub(crate) struct NodeLock<'a> {
    meta: &'a AtomicU32,
}

impl Drop for NodeLock<'_> {
    fn drop(&mut self) {
        self.meta.fetch_and(!LOCK, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::{Graph, Metric};

    /// Bytes a graph reserves per slot of its records, codes included.
    fn per_slot(g: &Graph) -> usize {
        g.allocated_bytes() / g.capacity()
    }

    #[test]
    fn records_are_padded_to_lines_only_when_walks_read_their_vectors() {
        // dim 128, M 16: a record is 163 words; padded it is 176 (11 lines).
        let float = Graph::new(128, 16, 4096, None);
        let coded = Graph::new(128, 16, 4096, Some(Metric::L2));
        float.ensure(0).unwrap();
        coded.ensure(0).unwrap();
        assert_eq!(float.records.record(0).len(), 176);
        assert_eq!(coded.records.record(0).len(), 163);
        // So a coded slot costs less than a float one plus its code (128 bytes, the
        // meta in its top bits under L2).
        let codes = 128;
        assert!(per_slot(&coded) < per_slot(&float) + codes);
    }
}
