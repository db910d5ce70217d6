//! The keyspace: every key, its value and its expiry, in one ordered map.
//!
//! Keys are ordered by (xxh3 of the key, key). The order is the same on every replica and
//! in every process, which gives three things at once: a SCAN cursor that is a plain
//! integer (the hash to resume from) and never misses a key that stays, snapshots whose
//! bytes do not depend on insertion history, and keyspace digests that compare replicas.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;

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

/// Position of a key in the map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    hash: u64,
    key: Vec<u8>,
}

impl Slot {
    fn of(key: &[u8]) -> Slot {
        Slot {
            hash: hash_key(key),
            key: key.to_vec(),
        }
    }
}

/// A slot to look up without building one: lookups happen on every command, and a
/// `Slot` would copy the key. `Slot` borrows as this trait object and both order by
/// (hash, key), which is what `BTreeMap` needs of a borrowed key.
trait SlotKey {
    fn parts(&self) -> (u64, &[u8]);
}

impl SlotKey for Slot {
    fn parts(&self) -> (u64, &[u8]) {
        (self.hash, &self.key)
    }
}

impl SlotKey for (u64, &[u8]) {
    fn parts(&self) -> (u64, &[u8]) {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn SlotKey + 'a> for Slot {
    fn borrow(&self) -> &(dyn SlotKey + 'a) {
        self
    }
}

impl PartialEq for dyn SlotKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn SlotKey + '_ {}

impl PartialOrd for dyn SlotKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn SlotKey + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts().cmp(&other.parts())
    }
}

/// The borrowed lookup key of `key`.
fn probe(key: &[u8]) -> (u64, &[u8]) {
    (hash_key(key), key)
}

/// The stable hash that orders the keyspace.
pub fn hash_key(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

#[derive(Debug, Default, Clone)]
pub struct Keyspace {
    map: BTreeMap<Slot, Entry>,
    /// (expiry time, key) for every key with a TTL, so due keys are found in order.
    expiries: BTreeSet<(u64, Slot)>,
}

impl Keyspace {
    pub fn new() -> Self {
        Self::default()
    }

    /// The live entry of `key` at `now` (an expired key reads as absent).
    pub fn get(&self, key: &[u8], now: u64) -> Option<&Entry> {
        self.map
            .get(&probe(key) as &dyn SlotKey)
            .filter(|e| e.expires_at.is_none_or(|t| t > now))
    }

    /// The live entry of `key`, mutably. Writers have already removed due keys.
    pub fn get_mut(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        self.map
            .get_mut(&probe(key) as &dyn SlotKey)
            .filter(|e| e.expires_at.is_none_or(|t| t > now))
    }

    /// Stores `entry` under `key`, returning what was there.
    pub fn insert(&mut self, key: &[u8], entry: Entry) -> Option<Entry> {
        let probe = probe(key);
        if let Some(current) = self.map.get_mut(&probe as &dyn SlotKey) {
            let old = std::mem::replace(current, entry);
            let expires_at = current.expires_at;
            if old.expires_at != expires_at {
                let slot = Slot {
                    hash: probe.0,
                    key: key.to_vec(),
                };
                if let Some(t) = old.expires_at {
                    self.expiries.remove(&(t, slot.clone()));
                }
                if let Some(t) = expires_at {
                    self.expiries.insert((t, slot));
                }
            }
            return Some(old);
        }
        let slot = Slot {
            hash: probe.0,
            key: key.to_vec(),
        };
        if let Some(t) = entry.expires_at {
            self.expiries.insert((t, slot.clone()));
        }
        self.map.insert(slot, entry);
        None
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let old = self.map.remove(&probe(key) as &dyn SlotKey)?;
        if let Some(t) = old.expires_at {
            self.expiries.remove(&(t, Slot::of(key)));
        }
        Some(old)
    }

    /// Sets or clears the expiry of a present key; false when the key is absent.
    pub fn set_expiry(&mut self, key: &[u8], expires_at: Option<u64>) -> bool {
        let slot = Slot::of(key);
        let Some(entry) = self.map.get_mut(&slot) else {
            return false;
        };
        if let Some(t) = entry.expires_at {
            self.expiries.remove(&(t, slot.clone()));
        }
        entry.expires_at = expires_at;
        if let Some(t) = expires_at {
            self.expiries.insert((t, slot));
        }
        true
    }

    /// Keys whose expiry is at or before `now`, earliest first.
    pub fn due(&self, now: u64) -> Vec<Vec<u8>> {
        self.expiries
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, slot)| slot.key.clone())
            .collect()
    }

    /// Live keys at `now`.
    pub fn len(&self, now: u64) -> usize {
        let expired = self.expiries.iter().take_while(|(t, _)| *t <= now).count();
        self.map.len() - expired
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every live entry at `now`, in keyspace order.
    pub fn iter(&self, now: u64) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.map
            .iter()
            .filter(move |(_, e)| e.expires_at.is_none_or(|t| t > now))
            .map(|(s, e)| (s.key.as_slice(), e))
    }

    /// Up to about `count` live keys from `cursor` on, and the cursor to continue from
    /// (0 when done). Keys sharing a hash are never split across calls.
    pub fn scan(&self, cursor: u64, count: usize, now: u64) -> (u64, Vec<&[u8]>) {
        let start = Slot {
            hash: cursor,
            key: Vec::new(),
        };
        let mut out = Vec::new();
        let mut last_hash = None;
        for (slot, entry) in self.map.range(start..) {
            if out.len() >= count.max(1) && last_hash != Some(slot.hash) {
                return (slot.hash, out);
            }
            last_hash = Some(slot.hash);
            if entry.expires_at.is_none_or(|t| t > now) {
                out.push(slot.key.as_slice());
            }
        }
        (0, out)
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.expiries.clear();
    }

    /// Rough bytes held, for INFO memory.
    pub fn approximate_size(&self) -> usize {
        self.map
            .iter()
            .map(|(s, e)| s.key.len() + e.value.approximate_size() + 64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
