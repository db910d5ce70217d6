//! The visited set of a graph walk: one bit per slot, plus the list of slots marked, so
//! starting the next walk clears only what this one touched. At 200k slots the bits take
//! 25 KB and stay in L1 cache, where a walk's random probes are cheapest.

use parking_lot::Mutex;

/// Marks of one walk.
#[derive(Debug, Default)]
pub(crate) struct Visited {
    bits: Vec<u64>,
    touched: Vec<u32>,
}

impl Visited {
    /// Starts a new walk over at least `n` slots.
    pub(crate) fn begin(&mut self, n: usize) {
        if self.touched.len() * 8 > self.bits.len() {
            self.bits.iter_mut().for_each(|w| *w = 0);
        } else {
            for &slot in &self.touched {
                self.bits[(slot >> 6) as usize] = 0;
            }
        }
        self.touched.clear();
        let words = n.div_ceil(64);
        if self.bits.len() < words {
            self.bits.resize(words, 0);
        }
    }

    /// Marks `slot`; returns true if it was not yet visited in this walk.
    // #[PerformanceCriticalPath]
    #[inline]
    pub(crate) fn insert(&mut self, slot: u32) -> bool {
        let word = (slot >> 6) as usize;
        let bit = 1u64 << (slot & 63);
        if word >= self.bits.len() {
            // A slot added after the walk began; grow rather than miss it.
            self.bits.resize((word + 1).next_power_of_two(), 0);
        }
        let w = &mut self.bits[word];
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        self.touched.push(slot);
        true
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bits.capacity() * 8 + self.touched.capacity() * 4
    }
}

/// Scratch state reused across searches, one taken per concurrent search, so a query
/// allocates nothing on the hot path once the pool is warm.
#[derive(Debug)]
pub(crate) struct Pool<T>(Mutex<Vec<T>>);

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool(Mutex::new(Vec::new()))
    }
}

impl<T: Default> Pool<T> {
    pub(crate) fn take(&self) -> T {
        self.0.lock().pop().unwrap_or_default()
    }

    pub(crate) fn give_back(&self, v: T) {
        self.0.lock().push(v);
    }

    /// Sums `f` over the pooled values (memory accounting).
    pub(crate) fn sum(&self, f: impl Fn(&T) -> usize) -> usize {
        self.0.lock().iter().map(f).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_do_not_see_each_others_marks() {
        let mut v = Visited::default();
        for round in 0..1_000u32 {
            v.begin(1_000);
            let slot = (round * 7) % 1_000;
            assert!(v.insert(slot));
            assert!(!v.insert(slot));
            assert!(v.insert((slot + 1) % 1_000), "a neighbour is unmarked");
        }
        // A walk that touches most slots clears by memset; the next sees nothing.
        v.begin(1_000);
        for s in 0..1_000 {
            assert!(v.insert(s));
        }
        v.begin(1_000);
        assert!((0..1_000).all(|s| v.insert(s)));
        v.begin(4);
        assert!(v.insert(1_000), "slots beyond the initial size are tracked");
        assert!(!v.insert(1_000));
    }
}
