//! The visited set of a graph walk: a generation-tagged array reused across searches, so
//! starting a search costs an increment instead of clearing n entries (hnswlib's trick).

use parking_lot::Mutex;

/// Marks of one walk. `tags[i] == generation` means slot i was visited.
#[derive(Debug, Default)]
pub(crate) struct Visited {
    tags: Vec<u16>,
    generation: u16,
}

impl Visited {
    /// Starts a new walk over at least `n` slots.
    pub(crate) fn begin(&mut self, n: usize) {
        if self.tags.len() < n {
            self.tags.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.tags.iter_mut().for_each(|t| *t = 0);
            self.generation = 1;
        }
    }

    /// Marks `slot`; returns true if it was not yet visited in this walk.
    // #[PerformanceCriticalPath]
    #[inline]
    pub(crate) fn insert(&mut self, slot: u32) -> bool {
        let i = slot as usize;
        if i >= self.tags.len() {
            // A slot added after the walk began; grow rather than miss it.
            self.tags.resize((i + 1).next_power_of_two(), 0);
        }
        let tag = &mut self.tags[i];
        if *tag == self.generation {
            false
        } else {
            *tag = self.generation;
            true
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.tags.capacity() * 2
    }
}

/// A pool of visited sets, one taken per concurrent search.
#[derive(Debug, Default)]
pub(crate) struct VisitedPool(Mutex<Vec<Visited>>);

impl VisitedPool {
    pub(crate) fn take(&self) -> Visited {
        self.0.lock().pop().unwrap_or_default()
    }

    pub(crate) fn give_back(&self, v: Visited) {
        self.0.lock().push(v);
    }

    pub(crate) fn bytes(&self) -> usize {
        self.0.lock().iter().map(Visited::bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_isolate_walks_even_across_wraparound() {
        let mut v = Visited::default();
        for round in 0..70_000u32 {
            v.begin(10);
            let slot = round % 10;
            assert!(v.insert(slot));
            assert!(!v.insert(slot));
            assert!(v.insert((slot + 1) % 10), "a neighbour is unmarked");
        }
        v.begin(4);
        assert!(v.insert(1_000), "slots beyond the initial size are tracked");
        assert!(!v.insert(1_000));
    }
}
