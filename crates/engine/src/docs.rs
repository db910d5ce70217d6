//! Key ↔ document id of one search index.
//!
//! Vector, tag and numeric indexes speak dense u32 ids; this table maps them to keys. Ids
//! of removed documents are reused last-freed-first, so the same writes in the same order
//! give the same ids on every replica — and HNSW level draws, a function of the id, agree.

use std::collections::HashMap;

use shoal_index::RoaringBitmap;

#[derive(Debug, Default, Clone)]
pub struct DocTable {
    ids: HashMap<Vec<u8>, u32>,
    keys: Vec<Option<Vec<u8>>>,
    free: Vec<u32>,
    live: RoaringBitmap,
}

impl DocTable {
    pub fn id(&self, key: &[u8]) -> Option<u32> {
        self.ids.get(key).copied()
    }

    pub fn key(&self, id: u32) -> Option<&[u8]> {
        self.keys.get(id as usize)?.as_deref()
    }

    /// The id of `key`, assigning one if it has none; `true` when newly assigned.
    pub fn assign(&mut self, key: &[u8]) -> (u32, bool) {
        if let Some(&id) = self.ids.get(key) {
            return (id, false);
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.keys.push(None);
                (self.keys.len() - 1) as u32
            }
        };
        self.keys[id as usize] = Some(key.to_vec());
        self.ids.insert(key.to_vec(), id);
        self.live.insert(id);
        (id, true)
    }

    pub fn release(&mut self, key: &[u8]) -> Option<u32> {
        let id = self.ids.remove(key)?;
        self.keys[id as usize] = None;
        self.free.push(id);
        self.live.remove(id);
        Some(id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Every live id.
    pub fn all(&self) -> &RoaringBitmap {
        &self.live
    }

    /// Slots (key or free) and the free list, for snapshots.
    pub fn parts(&self) -> (&[Option<Vec<u8>>], &[u32]) {
        (&self.keys, &self.free)
    }

    /// Rebuilds a table from [`DocTable::parts`]; `None` if they are inconsistent.
    pub fn from_parts(keys: Vec<Option<Vec<u8>>>, free: Vec<u32>) -> Option<Self> {
        let free_set: std::collections::HashSet<u32> = free.iter().copied().collect();
        if free_set.len() != free.len() {
            return None;
        }
        let mut table = DocTable {
            keys,
            free,
            ..DocTable::default()
        };
        for (id, key) in table.keys.iter().enumerate() {
            let id = u32::try_from(id).ok()?;
            match key {
                Some(k) => {
                    if table.ids.insert(k.clone(), id).is_some() {
                        return None;
                    }
                    table.live.insert(id);
                }
                None => {
                    if !free_set.contains(&id) {
                        return None;
                    }
                }
            }
        }
        let consistent = table
            .free
            .iter()
            .all(|&f| table.keys.get(f as usize).is_some_and(Option::is_none))
            && table.free.len() + table.ids.len() == table.keys.len();
        consistent.then_some(table)
    }

    pub fn bytes(&self) -> usize {
        self.ids.keys().map(|k| k.len() * 2 + 48).sum::<usize>() + self.free.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_reused_deterministically() {
        let mut t = DocTable::default();
        assert_eq!(t.assign(b"a"), (0, true));
        assert_eq!(t.assign(b"b"), (1, true));
        assert_eq!(t.assign(b"a"), (0, false));
        assert_eq!(t.release(b"a"), Some(0));
        assert_eq!(t.key(0), None);
        assert_eq!(t.assign(b"c"), (0, true));
        assert_eq!(t.key(0), Some(&b"c"[..]));
        assert_eq!(t.all().len(), 2);
    }
}
