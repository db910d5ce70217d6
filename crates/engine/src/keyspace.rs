//! The keyspace: every key, its value and its expiry, in one ordered map.
//!
//! Keys are ordered by (xxh3 of the key, key). The order is the same on every replica and
//! in every process, which gives three things at once: a SCAN cursor that is a plain
//! integer (the hash to resume from) and never misses a key that stays, snapshots whose
//! bytes do not depend on insertion history, and keyspace digests that compare replicas.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;

use crate::change_log::ChangeLog;

/// A hash's fields in insertion order, as HGETALL returns them.
pub type HashValue = IndexMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Vec<u8>),
    Hash(HashValue),
    Json(serde_json::Value),
}

impl Value {
    /// TYPE's answer.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::Json(_) => "ReJSON-RL",
        }
    }

    /// Rough bytes held, for INFO memory.
    pub fn approximate_size(&self) -> usize {
        match self {
            Value::Str(s) => s.len(),
            Value::Hash(h) => h.iter().map(|(k, v)| k.len() + v.len() + 32).sum(),
            Value::Json(j) => j.to_string().len(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub value: Value,
    /// Milliseconds since the epoch at which the key disappears.
    pub expires_at: Option<u64>,
}

/// The stable hash that orders the keyspace.
pub fn hash_key(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// The keys sharing one hash (almost always exactly one), each with the version of its
/// last change.
type Bucket = Vec<(Vec<u8>, Entry, u64)>;

#[derive(Debug, Default, Clone)]
pub struct Keyspace {
    /// Buckets by key hash. A u64 key keeps B-tree lookups to integer compares.
    map: BTreeMap<u64, Bucket>,
    /// (expiry time, key hash, key) for every key with a TTL, so due keys come in order.
    expiries: BTreeSet<(u64, u64, Vec<u8>)>,
    len: usize,
    /// Counts changes; a key's version is the count at its last change, which is what
    /// WATCH compares. Deterministic: only writes move it.
    clock: u64,
    /// While this group hands keys to one being added: the changes to those keys.
    changes: Option<Box<ChangeLog>>,
}

impl Keyspace {
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&self, key: &[u8]) -> Option<&Entry> {
        self.map
            .get(&hash_key(key))?
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, e, _)| e)
    }

    /// The entry, for changing it: its version moves.
    fn entry_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.clock += 1;
        let clock = self.clock;
        let Keyspace { map, changes, .. } = self;
        let (_, entry, version) = map
            .get_mut(&hash_key(key))?
            .iter_mut()
            .find(|(k, _, _)| k == key)?;
        *version = clock;
        if let Some(changes) = changes {
            changes.changed(key);
        }
        Some(entry)
    }

    /// Starts recording the changes to the keys `log` says move (a source's `_BEGIN`),
    /// replacing any log under way.
    pub fn track_changes(&mut self, log: ChangeLog) {
        self.changes = Some(Box::new(log));
    }

    /// Stops recording (a source's `_PURGE`, or an abort); the log so far.
    pub fn stop_tracking(&mut self) -> Option<ChangeLog> {
        self.changes.take().map(|log| *log)
    }

    /// The changes recorded while this group hands keys over.
    pub fn changes(&self) -> Option<&ChangeLog> {
        self.changes.as_deref()
    }

    /// The version of a live key (None when absent or expired at `now`).
    pub fn version(&self, key: &[u8], now: u64) -> Option<u64> {
        self.map
            .get(&hash_key(key))?
            .iter()
            .find(|(k, e, _)| k == key && e.expires_at.is_none_or(|t| t > now))
            .map(|(_, _, v)| *v)
    }

    /// The live entry of `key` at `now` (an expired key reads as absent).
    pub fn get(&self, key: &[u8], now: u64) -> Option<&Entry> {
        self.entry(key)
            .filter(|e| e.expires_at.is_none_or(|t| t > now))
    }

    /// The live entry of `key`, mutably. Writers have already removed due keys.
    pub fn get_mut(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        self.entry_mut(key)
            .filter(|e| e.expires_at.is_none_or(|t| t > now))
    }

    /// Stores `entry` under `key`, returning what was there.
    pub fn insert(&mut self, key: &[u8], entry: Entry) -> Option<Entry> {
        let hash = hash_key(key);
        let new_expiry = entry.expires_at;
        self.clock += 1;
        let clock = self.clock;
        let bucket = self.map.entry(hash).or_default();
        let old = match bucket.iter_mut().find(|(k, _, _)| k == key) {
            Some((_, current, version)) => {
                *version = clock;
                Some(std::mem::replace(current, entry))
            }
            None => {
                bucket.push((key.to_vec(), entry, clock));
                self.len += 1;
                None
            }
        };
        if let Some(changes) = &mut self.changes {
            changes.changed(key);
        }
        let old_expiry = old.as_ref().and_then(|o| o.expires_at);
        if old_expiry != new_expiry {
            if let Some(t) = old_expiry {
                self.expiries.remove(&(t, hash, key.to_vec()));
            }
            if let Some(t) = new_expiry {
                self.expiries.insert((t, hash, key.to_vec()));
            }
        }
        old
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let hash = hash_key(key);
        let bucket = self.map.get_mut(&hash)?;
        let position = bucket.iter().position(|(k, _, _)| k == key)?;
        let (_, old, _) = bucket.swap_remove(position);
        if bucket.is_empty() {
            self.map.remove(&hash);
        }
        self.len -= 1;
        if let Some(t) = old.expires_at {
            self.expiries.remove(&(t, hash, key.to_vec()));
        }
        if let Some(changes) = &mut self.changes {
            changes.changed(key);
        }
        Some(old)
    }

    /// Sets or clears the expiry of a present key; false when the key is absent.
    pub fn set_expiry(&mut self, key: &[u8], expires_at: Option<u64>) -> bool {
        let hash = hash_key(key);
        let Some(entry) = self.entry_mut(key) else {
            return false;
        };
        let old = std::mem::replace(&mut entry.expires_at, expires_at);
        if old != expires_at {
            if let Some(t) = old {
                self.expiries.remove(&(t, hash, key.to_vec()));
            }
            if let Some(t) = expires_at {
                self.expiries.insert((t, hash, key.to_vec()));
            }
        }
        true
    }

    /// Whether some key is past its expiry at `now` but not yet removed (readers then
    /// have to check every key they return).
    pub fn any_expired(&self, now: u64) -> bool {
        self.expiries.first().is_some_and(|(t, _, _)| *t <= now)
    }

    /// Keys whose expiry is at or before `now`, earliest first.
    pub fn due(&self, now: u64) -> Vec<Vec<u8>> {
        self.expiries
            .iter()
            .take_while(|(t, _, _)| *t <= now)
            .map(|(_, _, key)| key.clone())
            .collect()
    }

    /// Whether some key's expiry time has come by `now`.
    pub fn any_due(&self, now: u64) -> bool {
        self.expiries.first().is_some_and(|(t, _, _)| *t <= now)
    }

    /// Live keys at `now`.
    pub fn len(&self, now: u64) -> usize {
        let expired = self
            .expiries
            .iter()
            .take_while(|(t, _, _)| *t <= now)
            .count();
        self.len - expired
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every live entry at `now`, in keyspace order (by hash, then key).
    pub fn iter(&self, now: u64) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.map
            .values()
            .flat_map(|bucket| {
                let mut sorted: Vec<&(Vec<u8>, Entry, u64)> = bucket.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                sorted
            })
            .filter(move |(_, e, _)| e.expires_at.is_none_or(|t| t > now))
            .map(|(k, e, _)| (k.as_slice(), e))
    }

    /// Whole buckets from hash `cursor` on, each sorted by key, expired entries
    /// included. A reader that stops between two buckets resumes at the next one's
    /// hash; sorting makes every replica walk the same keys in the same order, a
    /// replica restored from a snapshot (whose buckets were filled in another order)
    /// included, which is what lets a log entry (a reshard's purge) take keys by it.
    pub(crate) fn buckets_from(
        &self,
        cursor: u64,
    ) -> impl Iterator<Item = (u64, Vec<(&[u8], &Entry)>)> {
        self.map.range(cursor..).map(|(&hash, bucket)| {
            let mut sorted: Vec<(&[u8], &Entry)> =
                bucket.iter().map(|(k, e, _)| (k.as_slice(), e)).collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            (hash, sorted)
        })
    }

    /// Every entry with its version, in keyspace order, and the change clock: what a
    /// snapshot keeps so that WATCH decides the same way on a replica restored from it.
    pub(crate) fn versioned(&self) -> (u64, impl Iterator<Item = (&[u8], &Entry, u64)>) {
        let entries = self.map.values().flat_map(|bucket| {
            let mut sorted: Vec<&(Vec<u8>, Entry, u64)> = bucket.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            sorted.into_iter().map(|(k, e, v)| (k.as_slice(), e, *v))
        });
        (self.clock, entries)
    }

    /// Puts back a snapshot's entry with its version; `clock` is restored afterwards
    /// with [`Keyspace::set_clock`].
    pub(crate) fn restore_versioned(&mut self, key: &[u8], entry: Entry, version: u64) {
        self.insert(key, entry);
        if let Some(slot) = self
            .map
            .get_mut(&hash_key(key))
            .and_then(|b| b.iter_mut().find(|(k, _, _)| k == key))
        {
            slot.2 = version;
        }
    }

    pub(crate) fn set_clock(&mut self, clock: u64) {
        self.clock = clock;
    }

    /// Up to about `count` live keys from `cursor` on, and the cursor to continue from
    /// (0 when done). Keys sharing a hash are never split across calls.
    pub fn scan(&self, cursor: u64, count: usize, now: u64) -> (u64, Vec<&[u8]>) {
        let mut out = Vec::new();
        for (&hash, bucket) in self.map.range(cursor..) {
            if out.len() >= count.max(1) {
                return (hash, out);
            }
            out.extend(
                bucket
                    .iter()
                    .filter(|(_, e, _)| e.expires_at.is_none_or(|t| t > now))
                    .map(|(k, _, _)| k.as_slice()),
            );
        }
        (0, out)
    }

    pub fn clear(&mut self) {
        self.clock += 1;
        self.map.clear();
        self.expiries.clear();
        self.len = 0;
        if let Some(changes) = &mut self.changes {
            changes.flushed_all();
        }
    }

    /// Rough bytes held, for INFO memory.
    pub fn approximate_size(&self) -> usize {
        self.map
            .values()
            .flatten()
            .map(|(k, e, _)| k.len() + e.value.approximate_size() + 64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_ring::Ring;

    fn s(v: &str) -> Entry {
        Entry {
            value: Value::Str(v.as_bytes().to_vec()),
            expires_at: None,
        }
    }

    #[test]
    fn expiry_hides_then_due_lists() {
        let mut ks = Keyspace::new();
        ks.insert(b"a", s("1"));
        ks.insert(b"b", s("2"));
        assert!(ks.set_expiry(b"a", Some(100)));
        assert!(ks.get(b"a", 99).is_some());
        assert!(ks.get(b"a", 100).is_none());
        assert_eq!(ks.len(100), 1);
        assert_eq!(ks.due(100), vec![b"a".to_vec()]);
        assert!(ks.set_expiry(b"a", None));
        assert!(ks.due(1000).is_empty());
        // Overwriting a key with a TTL by one without drops the old expiry record.
        ks.set_expiry(b"b", Some(50));
        ks.insert(b"b", s("3"));
        assert!(ks.due(1000).is_empty());
        ks.set_expiry(b"b", Some(60));
        ks.remove(b"b");
        assert!(ks.due(1000).is_empty());
    }

    #[test]
    fn scan_visits_every_key_once_across_calls() {
        let mut ks = Keyspace::new();
        for i in 0..1000 {
            ks.insert(format!("k{i}").as_bytes(), s("v"));
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut calls = 0;
        loop {
            let (next, keys) = ks.scan(cursor, 37, 0);
            for k in keys {
                assert!(seen.insert(k.to_vec()), "duplicate");
            }
            calls += 1;
            if next == 0 {
                break;
            }
            cursor = next;
        }
        assert_eq!(seen.len(), 1000);
        assert!(calls >= 1000 / 37);
    }

    #[test]
    fn every_kind_of_change_to_a_moving_key_is_recorded_and_nothing_else() {
        let ring = Ring::new(0..4);
        let (moving, staying): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (0..200)
            .map(|i| format!("k:{i}").into_bytes())
            .partition(|k| ring.group_of(k) == Some(3));
        let mut ks = Keyspace::new();
        ks.insert(&moving[0], s("before"));
        ks.insert(&moving[1], s("before"));
        ks.insert(&staying[0], s("before"));
        // Writes before the copy began are the copy's, not the log's.
        ks.track_changes(ChangeLog::new(3, Ring::new(0..4)));
        assert!(ks.changes().is_some_and(ChangeLog::is_empty));
        ks.insert(&staying[0], s("after"));
        ks.insert(&staying[1], s("after"));
        ks.remove(&staying[1]);
        assert!(ks.changes().is_some_and(ChangeLog::is_empty));
        ks.insert(&moving[2], s("new")); // 1: set
        assert!(ks.set_expiry(&moving[0], Some(50))); // 2: expiry
        if let Some(Entry {
            value: Value::Str(v),
            ..
        }) = ks.get_mut(&moving[1], 0)
        {
            v.extend_from_slice(b" and after"); // 3: changed in place
        }
        ks.remove(&moving[0]); // 4: deleted (an expiry firing takes this path)
        let listed: Vec<(u64, Vec<u8>)> = ks
            .changes()
            .map(|c| c.after(0).map(|(seq, k)| (seq, k.to_vec())).collect())
            .unwrap_or_default();
        assert_eq!(
            listed,
            vec![
                (1, moving[2].clone()),
                (3, moving[1].clone()),
                (4, moving[0].clone()),
            ]
        );
        ks.clear();
        assert_eq!(ks.changes().and_then(ChangeLog::flushed), Some(5));
        let log = ks.stop_tracking();
        assert!(log.is_some_and(|l| l.is_empty()));
        ks.insert(&moving[3], s("untracked"));
        assert!(ks.changes().is_none());
    }
}
