//! Ordered (distance, id) keys and the two heaps every search uses.
//!
//! A distance and an id are packed into one u64 whose integer order is the order of
//! (distance, id): comparisons on the hot path are single integer compares, and ties break
//! by id so results are deterministic.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// One search result: an index id and its distance to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// The id the vector was added under.
    pub id: u32,
    /// Distance under the index's metric; smaller is closer.
    pub distance: f32,
}

/// Builds the final answer from (distance, id) keys in ascending order: at most `limit`
/// neighbours, each id once. An id can reach a search twice when it is removed and added
/// again while the search runs (its old and new slots); the closer occurrence is kept.
pub(crate) fn unique_neighbors(
    sorted: impl IntoIterator<Item = (f32, u32)>,
    limit: usize,
) -> Vec<Neighbor> {
    let sorted = sorted.into_iter();
    // Sized once: growing from empty took three allocations for a k of 10 on every search.
    // Only by a bound the input knows: range searches pass `usize::MAX` as the limit.
    let room = sorted.size_hint().1.map_or(0, |upper| upper.min(limit));
    let mut out: Vec<Neighbor> = Vec::with_capacity(room);
    let mut seen: Option<std::collections::HashSet<u32>> = None;
    for (distance, id) in sorted {
        if out.len() >= limit {
            break;
        }
        let fresh = match &mut seen {
            Some(set) => set.insert(id),
            None if out.len() < 32 => !out.iter().any(|n| n.id == id),
            None => {
                let mut set: std::collections::HashSet<u32> = out.iter().map(|n| n.id).collect();
                let fresh = set.insert(id);
                seen = Some(set);
                fresh
            }
        };
        if fresh {
            out.push(Neighbor { id, distance });
        }
    }
    out
}

/// Maps an f32 to a u32 with the same total order (negative values included).
#[inline]
pub(crate) fn order_bits(d: f32) -> u32 {
    let b = d.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

#[inline]
fn from_order_bits(o: u32) -> f32 {
    if o & 0x8000_0000 != 0 {
        f32::from_bits(o & 0x7fff_ffff)
    } else {
        f32::from_bits(!o)
    }
}

/// A (distance, slot-or-id) pair ordered by distance, then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key(u64);

impl Key {
    #[inline]
    pub(crate) fn new(distance: f32, id: u32) -> Key {
        Key((u64::from(order_bits(distance)) << 32) | u64::from(id))
    }
    #[inline]
    pub(crate) fn distance(self) -> f32 {
        from_order_bits((self.0 >> 32) as u32)
    }
    #[inline]
    pub(crate) fn id(self) -> u32 {
        self.0 as u32
    }
}

/// The k closest seen so far: a max-heap whose top is the current worst.
#[derive(Debug, Default)]
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Key>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// Resets for a new search, keeping the allocation.
    pub(crate) fn reset(&mut self, k: usize) {
        self.k = k;
        self.heap.clear();
    }

    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.heap.len() >= self.k
    }

    /// Distance a newcomer must beat to enter (infinite until full).
    #[inline]
    pub(crate) fn bound(&self) -> f32 {
        if self.is_full() {
            self.heap.peek().map_or(f32::INFINITY, |k| k.distance())
        } else {
            f32::INFINITY
        }
    }

    /// Offers a candidate; keeps it if it is among the k best.
    #[inline]
    pub(crate) fn push(&mut self, key: Key) {
        if self.heap.len() < self.k {
            self.heap.push(key);
        } else if let Some(mut top) = self.heap.peek_mut() {
            if key < *top {
                *top = key;
            }
        }
    }

    /// Merges another heap's contents in.
    pub(crate) fn absorb(&mut self, other: TopK) {
        for key in other.heap {
            self.push(key);
        }
    }

    /// The kept keys, closest first.
    pub(crate) fn into_sorted(self) -> Vec<Key> {
        self.heap.into_sorted_vec()
    }

    /// Moves the kept keys, closest first, into `out`, keeping this heap's allocation.
    pub(crate) fn drain_sorted(&mut self, out: &mut Vec<Key>) {
        out.clear();
        out.extend(self.heap.drain());
        out.sort_unstable();
    }

    pub(crate) fn bytes(&self) -> usize {
        self.heap.capacity() * std::mem::size_of::<Key>()
    }
}

/// Min-heap of candidates still to expand, closest on top.
#[derive(Debug, Default)]
pub(crate) struct Candidates(BinaryHeap<Reverse<Key>>);

impl Candidates {
    #[inline]
    pub(crate) fn push(&mut self, key: Key) {
        self.0.push(Reverse(key));
    }
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<Key> {
        self.0.pop().map(|Reverse(k)| k)
    }
    #[inline]
    pub(crate) fn peek(&self) -> Option<Key> {
        self.0.peek().map(|Reverse(k)| *k)
    }
    pub(crate) fn bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<Key>()
    }
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_like_distances() {
        let values = [-3.5f32, -0.0, 0.0, 1e-30, 0.25, 1.0, 7.0, f32::INFINITY];
        for w in values.windows(2) {
            assert!(Key::new(w[0], 9) <= Key::new(w[1], 0) || w[0] == w[1]);
            assert_eq!(Key::new(w[0], 3).distance(), w[0]);
            assert_eq!(Key::new(w[0], 3).id(), 3);
        }
        assert!(Key::new(1.0, 1) < Key::new(1.0, 2), "ties break by id");
    }

    #[test]
    fn topk_keeps_the_best() {
        let mut top = TopK::new(3);
        for (i, d) in [5.0f32, 1.0, 4.0, 2.0, 3.0, 0.5].iter().enumerate() {
            top.push(Key::new(*d, i as u32));
        }
        let kept: Vec<f32> = top.into_sorted().iter().map(|k| k.distance()).collect();
        assert_eq!(kept, vec![0.5, 1.0, 2.0]);
    }

    #[test]
    fn unique_neighbors_keeps_the_closest_occurrence() {
        let mut keys: Vec<(f32, u32)> = (0..100).map(|i| (i as f32, i % 40)).collect();
        keys.insert(0, (-1.0, 5));
        let out = unique_neighbors(keys, 50);
        assert_eq!(out.len(), 40);
        assert_eq!(
            out[0],
            Neighbor {
                id: 5,
                distance: -1.0
            }
        );
        assert!(out.iter().filter(|n| n.id == 5).count() == 1);
        assert_eq!(unique_neighbors([(1.0, 1), (2.0, 1), (3.0, 2)], 2).len(), 2);
    }
}
