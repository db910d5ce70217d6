//! The ordered index of one NUMERIC field.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use shoal_index::RoaringBitmap;

/// An f64 ordered by `total_cmp`, so it can key a B-tree (NaN is never stored).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Key(f64);

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[derive(Debug, Default, Clone)]
pub struct NumericIndex {
    entries: BTreeSet<(Key, u32)>,
    by_doc: HashMap<u32, f64>,
}

impl NumericIndex {
    pub fn insert(&mut self, doc: u32, value: f64) {
        self.remove(doc);
        // -0.0 and 0.0 are one value to a range query.
        let value = if value == 0.0 { 0.0 } else { value };
        self.entries.insert((Key(value), doc));
        self.by_doc.insert(doc, value);
    }

    pub fn remove(&mut self, doc: u32) {
        if let Some(v) = self.by_doc.remove(&doc) {
            self.entries.remove(&(Key(v), doc));
        }
    }

    pub fn value(&self, doc: u32) -> Option<f64> {
        self.by_doc.get(&doc).copied()
    }

    /// Documents whose value lies in the range.
    pub fn range(&self, lo: f64, lo_exclusive: bool, hi: f64, hi_exclusive: bool) -> RoaringBitmap {
        let (lo, hi) = (lo + 0.0, hi + 0.0); // -0.0 + 0.0 is 0.0: one zero, as stored.
        let start = if lo_exclusive {
            Bound::Excluded((Key(lo), u32::MAX))
        } else {
            Bound::Included((Key(lo), 0))
        };
        let end = if hi_exclusive {
            Bound::Excluded((Key(hi), 0))
        } else {
            Bound::Included((Key(hi), u32::MAX))
        };
        // An empty range ((5 (5], [6 5]) would make the B-tree's range panic.
        let empty = match Key(lo).cmp(&Key(hi)) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Equal => lo_exclusive || hi_exclusive,
            std::cmp::Ordering::Less => false,
        };
        if empty {
            return RoaringBitmap::new();
        }
        self.entries.range((start, end)).map(|(_, d)| *d).collect()
    }

    pub fn len(&self) -> usize {
        self.by_doc.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_doc.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.by_doc.len() * 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inclusive_exclusive_and_infinite_bounds() {
        let mut n = NumericIndex::default();
        for (doc, v) in [(0, -5.0), (1, 0.0), (2, 10.0), (3, 10.0), (4, 1e9)] {
            n.insert(doc, v);
        }
        let ids = |b: RoaringBitmap| b.iter().collect::<Vec<_>>();
        assert_eq!(ids(n.range(0.0, false, 10.0, false)), vec![1, 2, 3]);
        assert_eq!(ids(n.range(0.0, true, 10.0, true)), Vec::<u32>::new());
        assert_eq!(ids(n.range(f64::NEG_INFINITY, false, 0.0, true)), vec![0]);
        assert_eq!(
            ids(n.range(10.0, false, f64::INFINITY, false)),
            vec![2, 3, 4]
        );
        assert_eq!(ids(n.range(-0.0, false, -0.0, false)), vec![1]);
        assert!(n.range(5.0, false, 1.0, false).is_empty());
        assert!(n.range(10.0, true, 10.0, true).is_empty());
        assert!(n.range(10.0, true, 10.0, false).is_empty());
        assert_eq!(ids(n.range(10.0, false, 10.0, false)), vec![2, 3]);
        n.insert(2, 3.0);
        n.remove(3);
        assert_eq!(ids(n.range(10.0, false, 10.0, false)), Vec::<u32>::new());
        assert_eq!(n.value(2), Some(3.0));
    }
}
