//! The k-th nearest distance found so far by the KNN walks of one search over several
//! indexes: a router's parts of one FT.SEARCH on its replicas of different shard groups.
//!
//! Each part walks its own group's graph with its own beam (EF_RUNTIME) and returns its
//! own k nearest, of which the router keeps the k nearest of all. Once earlier parts
//! have returned k neighbours between them, a node farther than the k-th of those
//! cannot enter the answer, so a later walk need not go on looking among such nodes.
//! Lucene shares a bar between the segments of one KNN query the same way
//! (`MultiLeafKnnCollector`). How a walk uses the bar: `hnsw::search`'s
//! `walk_layer_within`.

use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

/// The bar of one search. Parts publish what they return; walks read the bar.
#[derive(Debug)]
pub struct SharedBound {
    /// [`order_bits`] of the bar: infinite until k distances are known.
    bar: AtomicU32,
    /// Each source's latest distances (a source: one index, so that a part run twice
    /// on the same replica replaces its first answer rather than counting it twice).
    parts: Mutex<Vec<(usize, Vec<f32>)>>,
}

impl Default for SharedBound {
    fn default() -> Self {
        SharedBound::new()
    }
}

impl SharedBound {
    pub fn new() -> SharedBound {
        SharedBound {
            bar: AtomicU32::new(order_bits(f32::INFINITY)),
            parts: Mutex::new(Vec::new()),
        }
    }

    /// The distance beyond which nothing more can enter the answer: the k-th nearest of
    /// everything published, or infinity until k were.
    #[inline]
    pub fn get(&self) -> f32 {
        from_order_bits(self.bar.load(Ordering::Relaxed))
    }

    /// Sets what `source` returns: the distances of all its neighbours, for a KNN of
    /// `k`. The sources' neighbours must be distinct documents (shard groups' are). NaNs
    /// are ignored; k of 0 sets no bar.
    pub fn publish(&self, source: usize, k: usize, mut mine: Vec<f32>) {
        mine.retain(|d| !d.is_nan());
        let mut parts = self.parts.lock();
        match parts.iter_mut().find(|(s, _)| *s == source) {
            Some((_, theirs)) => *theirs = mine,
            None => parts.push((source, mine)),
        }
        let mut all: Vec<f32> = parts.iter().flat_map(|(_, d)| d.iter().copied()).collect();
        let bar = match k.checked_sub(1) {
            Some(i) if i < all.len() => *all.select_nth_unstable_by(i, f32::total_cmp).1,
            Some(_) | None => f32::INFINITY,
        };
        self.bar.store(order_bits(bar), Ordering::Relaxed);
    }
}

/// An f32's bits reordered so that unsigned order is the floats' order (NaN excluded).
fn order_bits(d: f32) -> u32 {
    let bits = d.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

fn from_order_bits(bits: u32) -> f32 {
    if bits & 0x8000_0000 != 0 {
        f32::from_bits(bits & 0x7fff_ffff)
    } else {
        f32::from_bits(!bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_bits_keep_the_order_of_floats() {
        let xs = [
            f32::NEG_INFINITY,
            -3.5,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            0.25,
            7.0,
            f32::INFINITY,
        ];
        for pair in xs.windows(2) {
            assert!(order_bits(pair[0]) <= order_bits(pair[1]), "{pair:?}");
            assert_eq!(from_order_bits(order_bits(pair[0])), pair[0]);
        }
        assert_eq!(from_order_bits(order_bits(f32::INFINITY)), f32::INFINITY);
    }

    #[test]
    fn the_bar_is_the_kth_nearest_of_every_sources_latest_answer() {
        let b = SharedBound::new();
        assert_eq!(b.get(), f32::INFINITY);
        b.publish(1, 3, vec![5.0, 1.0]);
        assert_eq!(b.get(), f32::INFINITY, "two of three known: no bar yet");
        b.publish(2, 3, vec![4.0, f32::NAN, 9.0]);
        assert_eq!(b.get(), 5.0);
        b.publish(3, 3, vec![0.5, -2.0]);
        assert_eq!(b.get(), 1.0, "-2, 0.5, 1 nearest");
        // A source that answers again replaces its first answer: the same neighbours
        // are not counted twice.
        b.publish(3, 3, vec![0.5, -2.0]);
        assert_eq!(b.get(), 1.0);
        b.publish(3, 3, vec![8.0]);
        assert_eq!(b.get(), 5.0, "1, 4, 5 nearest");
        b.publish(4, 0, vec![-100.0]);
        assert_eq!(b.get(), f32::INFINITY, "k of 0: no bar");
    }
}
