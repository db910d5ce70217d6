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
    keys: Vec<Slot>,
    free: Vec<u32>,
    live: RoaringBitmap,
}

impl DocTable {
    pub fn id(&self, key: &[u8]) -> Option<u32> {
        self.ids.get(key).copied()
    }

    pub fn key(&self, id: u32) -> Option<&[u8]> {
        self.keys.get(id as usize)?.key()
    }

    /// Hints that the table's slots for `ids` will be read soon. A search's hits are
    /// scattered over the table, so reading them hit by hit waits for a cache miss per
    /// slot; asking for them all at once, right after the walk, overlaps those misses.
    /// A key of up to [`INLINE`] bytes comes with its slot; a longer one, in an
    /// allocation of its own, is asked for where the slots are read
    /// (`crate::search::visit`).
    pub fn prefetch_entries(&self, ids: impl IntoIterator<Item = u32>) {
        for id in ids {
            if let Some(slot) = self.keys.get(id as usize) {
                // A slot may straddle two lines: its first and its last byte's.
                let first = std::ptr::from_ref(slot).cast::<u8>();
                shoal_index::prefetch::prefetch(first, 1);
                shoal_index::prefetch::prefetch(first.wrapping_add(SLOT_BYTES - 1), 1);
            }
        }
    }

    /// The id of `key`, assigning one if it has none; `true` when newly assigned.
    pub fn assign(&mut self, key: &[u8]) -> (u32, bool) {
        if let Some(&id) = self.ids.get(key) {
            return (id, false);
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.keys.push(Slot::Free);
                (self.keys.len() - 1) as u32
            }
        };
        self.keys[id as usize] = Slot::new(key);
        self.ids.insert(key.to_vec(), id);
        self.live.insert(id);
        (id, true)
    }

    pub fn release(&mut self, key: &[u8]) -> Option<u32> {
        let id = self.ids.remove(key)?;
        self.keys[id as usize] = Slot::Free;
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
    pub fn parts(&self) -> (impl ExactSizeIterator<Item = Option<&[u8]>> + '_, &[u32]) {
        (self.keys.iter().map(Slot::key), &self.free)
    }

    /// Rebuilds a table from [`DocTable::parts`]; `None` if they are inconsistent.
    pub fn from_parts(keys: Vec<Option<Vec<u8>>>, free: Vec<u32>) -> Option<Self> {
        let free_set: std::collections::HashSet<u32> = free.iter().copied().collect();
        if free_set.len() != free.len() {
            return None;
        }
        let mut table = DocTable {
            keys: Vec::with_capacity(keys.len()),
            free,
            ..DocTable::default()
        };
        for (id, key) in keys.into_iter().enumerate() {
            let id = u32::try_from(id).ok()?;
            table
                .keys
                .push(key.as_deref().map_or(Slot::Free, Slot::new));
            match key {
                Some(k) => {
                    if table.ids.insert(k, id).is_some() {
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
        let consistent = table.free.iter().all(|&f| {
            table
                .keys
                .get(f as usize)
                .is_some_and(|s| s.key().is_none())
        }) && table.free.len() + table.ids.len() == table.keys.len();
        consistent.then_some(table)
    }

    /// An estimate: each key once in `ids`, again in its slot's own allocation when it
    /// does not fit the slot, and the table's and the map's fixed parts.
    pub fn bytes(&self) -> usize {
        self.ids
            .keys()
            .map(|k| k.len() + if k.len() > INLINE { k.len() } else { 0 } + 48)
            .sum::<usize>()
            + self.free.len() * 4
    }
}

/// Keys up to this long live in their slot.
const INLINE: usize = 22;
const SLOT_BYTES: usize = std::mem::size_of::<Slot>();
// On 64-bit targets as small as the `Option<Vec<u8>>` it replaced: the table costs no
// more per document.
const _: () = assert!(SLOT_BYTES == 24);

/// One slot of the table: a short key (`v:123`, `doc:42`, most keys) held in the slot
/// itself, a longer one in an allocation of its own. A search reads its hits' slots
/// right after the walk, scattered over the table; a key in its slot comes with the
/// slot's cache line instead of after a second miss on its own allocation, which cost
/// about 2 µs a 10-hit search (docs/benchmarks.md, session 55).
#[derive(Debug, Clone)]
enum Slot {
    Free,
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Slot {
    fn new(key: &[u8]) -> Slot {
        match u8::try_from(key.len()) {
            Ok(len) if usize::from(len) <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..key.len()].copy_from_slice(key);
                Slot::Inline { len, bytes }
            }
            Ok(_) | Err(_) => Slot::Heap(key.into()),
        }
    }

    fn key(&self) -> Option<&[u8]> {
        match self {
            Slot::Free => None,
            Slot::Inline { len, bytes } => bytes.get(..usize::from(*len)),
            Slot::Heap(key) => Some(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of every length around the inline bound, the empty key included, come
    /// back as they went in, through a release and a snapshot's parts.
    #[test]
    fn keys_short_and_long_come_back_whole() {
        let keys: Vec<Vec<u8>> = (0..=INLINE + 2)
            .map(|n| (0..n).map(|i| b'a' + (i % 26) as u8).collect())
            .chain([
                vec![0xff; 300],
                b"doc:8c1d9c0e-5b1f-4a44-9d8e-0d6a3b7f2e11".to_vec(),
            ])
            .collect();
        let mut t = DocTable::default();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.assign(k), (i as u32, true));
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.key(i as u32), Some(&k[..]), "key of length {}", k.len());
            assert_eq!(t.id(k), Some(i as u32));
        }
        assert_eq!(t.release(&keys[INLINE]), Some(INLINE as u32));
        assert_eq!(t.key(INLINE as u32), None);
        let (slots, free) = t.parts();
        let slots: Vec<Option<Vec<u8>>> = slots.map(|s| s.map(<[u8]>::to_vec)).collect();
        let copy = DocTable::from_parts(slots, free.to_vec()).expect("consistent parts");
        for (i, k) in keys.iter().enumerate() {
            let want = (i != INLINE).then_some(&k[..]);
            assert_eq!(copy.key(i as u32), want);
        }
        // The copy's parts are the original's, slot for slot: what a snapshot writes.
        assert!(t.parts().0.eq(copy.parts().0));
        assert_eq!(t.parts().1, copy.parts().1);
        // The prefetch hint takes any ids, those past the table's end included.
        copy.prefetch_entries([0, 5, u32::MAX]);
    }

    /// Keys up to the bound live in the slot, longer ones on the heap; lengths that a
    /// cast to `u8` would wrap into the inline range (256, 278) stay on the heap.
    #[test]
    fn short_keys_live_in_their_slot() {
        for n in [0, 1, INLINE] {
            assert!(
                matches!(Slot::new(&vec![7; n]), Slot::Inline { .. }),
                "length {n}"
            );
        }
        for n in [INLINE + 1, 255, 256, 256 + INLINE, 300] {
            let slot = Slot::new(&vec![7; n]);
            assert!(matches!(slot, Slot::Heap(_)), "length {n}");
            assert_eq!(slot.key().map(<[u8]>::len), Some(n));
        }
    }

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
