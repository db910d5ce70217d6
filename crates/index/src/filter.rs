//! Filters applied *inside* a search: the graph walk still traverses ids a filter rejects
//! (they are good stepping stones) but never returns them, so a filter that keeps 1% of
//! the ids still yields k results when k exist.

use roaring::RoaringBitmap;

/// A set of allowed ids. Implementations must be cheap to query: `allows` runs once per
/// node the search touches.
pub trait IdFilter: Sync {
    /// Whether `id` may appear in the results.
    fn allows(&self, id: u32) -> bool;

    /// The exact number of allowed ids, when known cheaply. Lets an index answer very
    /// selective filters by an exact scan of the allowed ids instead of a graph walk.
    fn cardinality(&self) -> Option<u64> {
        None
    }

    /// Calls `f` for every allowed id and returns true, or returns false when the set cannot
    /// be enumerated (a predicate). Only called when `cardinality` returned `Some`.
    fn for_each_allowed(&self, f: &mut dyn FnMut(u32)) -> bool {
        let _ = f;
        false
    }
}

impl IdFilter for RoaringBitmap {
    #[inline]
    fn allows(&self, id: u32) -> bool {
        self.contains(id)
    }

    fn cardinality(&self) -> Option<u64> {
        Some(self.len())
    }

    fn for_each_allowed(&self, f: &mut dyn FnMut(u32)) -> bool {
        self.iter().for_each(f);
        true
    }
}

/// Adapts any `Fn(u32) -> bool` into a filter. Its cardinality is unknown, so an index
/// always answers it with the filtered graph walk (or a filtered FLAT scan).
pub struct Predicate<F>(pub F);

impl<F: Fn(u32) -> bool + Sync> IdFilter for Predicate<F> {
    #[inline]
    fn allows(&self, id: u32) -> bool {
        (self.0)(id)
    }
}

impl<F> std::fmt::Debug for Predicate<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Predicate(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_and_predicate_agree() {
        let bitmap: RoaringBitmap = (0..100u32).filter(|i| i % 7 == 0).collect();
        let pred = Predicate(|i: u32| i.is_multiple_of(7));
        for i in 0..100 {
            assert_eq!(bitmap.allows(i), pred.allows(i));
        }
        assert_eq!(IdFilter::cardinality(&bitmap), Some(15));
        assert_eq!(pred.cardinality(), None);
        let mut seen = Vec::new();
        assert!(bitmap.for_each_allowed(&mut |i| seen.push(i)));
        assert_eq!(seen.len(), 15);
        assert!(!pred.for_each_allowed(&mut |_| {}));
    }
}
