//! The changes a reshard's source must pass on: every key the next ring gives the
//! group being added, changed since the copy began (docs/resharding.md §3.1).
//!
//! The copy reads the source's keys once, from a cursor, while writes go on; what a
//! write changes behind the cursor would be lost. So from `_BEGIN` on, the keyspace
//! records here each change to a moving key — a set, a field, an expiry, a delete, an
//! expiry firing — by a sequence number of its own, and the catch-up rounds read the
//! keys changed after the last one they saw and copy their current state (or their
//! absence). A key changed twice is listed once, at its last change: only its final
//! state matters. A FLUSHALL drops the list and marks the flush, so the target drops
//! what it copied first.
//!
//! Deterministic: the sequence moves only with writes, in log order, so every replica
//! lists the same keys under the same numbers, and a new leader's catch-up reads on
//! where the old one's stopped.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use shoal_ring::{GroupId, Ring};

#[derive(Debug, Clone)]
pub struct ChangeLog {
    /// The group being added, and the ring that says which keys go to it.
    pub target: GroupId,
    pub next: Ring,
    /// Changed keys by the number of their last change.
    by_seq: BTreeMap<u64, Vec<u8>>,
    seq_of: HashMap<Vec<u8>, u64>,
    /// The number of the last change recorded (a flush included).
    last: u64,
    /// The number of the last FLUSHALL, if one came while tracking.
    flushed: Option<u64>,
}

impl ChangeLog {
    pub fn new(target: GroupId, next: Ring) -> ChangeLog {
        ChangeLog {
            target,
            next,
            by_seq: BTreeMap::new(),
            seq_of: HashMap::new(),
            last: 0,
            flushed: None,
        }
    }

    /// Records a change to `key` if it is one that moves (one ring lookup).
    pub fn changed(&mut self, key: &[u8]) {
        if self.next.group_of(key) != Some(self.target) {
            return;
        }
        self.last += 1;
        let seq = self.last;
        if let Some(old) = self.seq_of.insert(key.to_vec(), seq) {
            self.by_seq.remove(&old);
        }
        self.by_seq.insert(seq, key.to_vec());
    }

    /// Every key is gone: what was listed no longer matters, the flush does.
    pub fn flushed_all(&mut self) {
        self.last += 1;
        self.flushed = Some(self.last);
        self.by_seq.clear();
        self.seq_of.clear();
    }

    /// The keys changed after change `after`, in the order of their last change.
    pub fn after(&self, after: u64) -> impl Iterator<Item = (u64, &[u8])> {
        self.by_seq
            .range((Bound::Excluded(after), Bound::Unbounded))
            .map(|(seq, key)| (*seq, key.as_slice()))
    }

    /// The number of the last change recorded.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The number of the last FLUSHALL while tracking.
    pub fn flushed(&self) -> Option<u64> {
        self.flushed
    }

    /// Keys listed (each once).
    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// The log rebuilt from a snapshot's parts: its counters and its listed keys.
    /// `None` for parts no log could have had: a number at 0 or past `last`, numbers
    /// out of order, a key listed twice, a flush after the last change, or a `last`
    /// that could not move on.
    pub(crate) fn from_parts(
        target: GroupId,
        next: Ring,
        last: u64,
        flushed: Option<u64>,
        listed: impl IntoIterator<Item = (u64, Vec<u8>)>,
    ) -> Option<ChangeLog> {
        if last == u64::MAX || flushed.is_some_and(|f| f == 0 || f > last) {
            return None;
        }
        let mut log = ChangeLog::new(target, next);
        log.last = last;
        log.flushed = flushed;
        let mut previous = flushed.unwrap_or(0);
        for (seq, key) in listed {
            if seq <= previous || seq > last || log.seq_of.insert(key.clone(), seq).is_some() {
                return None;
            }
            previous = seq;
            log.by_seq.insert(seq, key);
        }
        Some(log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys the ring over 0..4 gives group 3, and keys it does not.
    fn split() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let ring = Ring::new(0..4);
        (0..400)
            .map(|i| format!("k:{i}").into_bytes())
            .partition(|k| ring.group_of(k) == Some(3))
    }

    #[test]
    fn only_moving_keys_are_listed_once_at_their_last_change() {
        let (moving, staying) = split();
        let mut log = ChangeLog::new(3, Ring::new(0..4));
        for key in staying.iter().take(20) {
            log.changed(key);
        }
        assert!(log.is_empty());
        assert_eq!(log.last(), 0);
        log.changed(&moving[0]);
        log.changed(&moving[1]);
        log.changed(&moving[0]);
        let listed: Vec<(u64, &[u8])> = log.after(0).collect();
        assert_eq!(listed, vec![(2, &moving[1][..]), (3, &moving[0][..])]);
        // A catch-up that saw change 2 reads only what came after it.
        let later: Vec<(u64, &[u8])> = log.after(2).collect();
        assert_eq!(later, vec![(3, &moving[0][..])]);
        assert_eq!(log.after(3).count(), 0);
        assert_eq!(log.len(), 2);
    }

    #[test]
    fn a_flush_replaces_everything_listed_before_it() {
        let (moving, _) = split();
        let mut log = ChangeLog::new(3, Ring::new(0..4));
        log.changed(&moving[0]);
        log.changed(&moving[1]);
        log.flushed_all();
        assert_eq!(log.flushed(), Some(3));
        assert!(log.is_empty());
        log.changed(&moving[2]);
        let listed: Vec<(u64, &[u8])> = log.after(0).collect();
        assert_eq!(listed, vec![(4, &moving[2][..])]);
    }

    #[test]
    fn parts_no_log_could_have_are_refused() {
        let ring = || Ring::new(0..4);
        let key = |i: u32| format!("k:{i}").into_bytes();
        assert!(ChangeLog::from_parts(3, ring(), 5, Some(2), [(3, key(1)), (5, key(2))]).is_some());
        type Parts = (u64, Option<u64>, Vec<(u64, Vec<u8>)>);
        let bad: [Parts; 6] = [
            (5, None, vec![(0, key(1))]),
            (5, None, vec![(6, key(1))]),
            (5, None, vec![(3, key(1)), (2, key(2))]),
            (5, None, vec![(2, key(1)), (3, key(1))]),
            (5, Some(6), Vec::new()),
            (u64::MAX, None, Vec::new()),
        ];
        for (last, flushed, listed) in bad {
            let refused = ChangeLog::from_parts(3, ring(), last, flushed, listed.clone());
            assert!(refused.is_none(), "{last} {flushed:?} {listed:?}");
        }
        // Listed before the flush: the flush dropped those.
        assert!(ChangeLog::from_parts(3, ring(), 5, Some(4), [(3, key(1))]).is_none());
    }
}
