//! Slots and ids: the index stores vectors in dense internal slots and maps the caller's
//! ids onto them, so an id can be removed and added again at once while the slot it used
//! waits until no search can reach it. Freed slots are reused before new ones are made,
//! which is how the memory of deleted vectors is reclaimed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::error::{IndexError, Result};

/// Largest id an index accepts. The top bit of a stored label is a tombstone flag and 0
/// marks an empty slot, so labels are stored as `id + 1` below 2^31.
pub const MAX_ID: u32 = (1 << 31) - 2;

/// Tombstone bit of a stored label word.
pub(crate) const DELETED: u32 = 1 << 31;

/// Checks an id against [`MAX_ID`].
pub(crate) fn check_id(id: u32) -> Result<()> {
    if id > MAX_ID {
        Err(IndexError::IdOutOfRange(id))
    } else {
        Ok(())
    }
}

/// The label word stored for `id`.
#[inline]
pub(crate) fn label_word(id: u32) -> u32 {
    id + 1
}

/// The id in a label word, if the slot holds one (deleted or not).
#[inline]
pub(crate) fn id_of(word: u32) -> Option<u32> {
    let w = word & !DELETED;
    w.checked_sub(1)
}

/// Hands out slot numbers: freed ones first, then fresh ones.
#[derive(Debug, Default)]
pub(crate) struct SlotPool {
    next: AtomicU32,
    free: Mutex<Vec<u32>>,
}

impl SlotPool {
    /// A pool whose fresh slots start at `next`, with `free` ready for reuse.
    pub(crate) fn with_state(next: u32, free: Vec<u32>) -> SlotPool {
        SlotPool {
            next: AtomicU32::new(next),
            free: Mutex::new(free),
        }
    }

    pub(crate) fn alloc(&self) -> Result<u32> {
        if let Some(slot) = self.free.lock().pop() {
            return Ok(slot);
        }
        let slot = self.next.fetch_add(1, Ordering::AcqRel);
        if slot > MAX_ID {
            self.next.fetch_sub(1, Ordering::AcqRel);
            return Err(IndexError::Full(slot as usize));
        }
        Ok(slot)
    }

    /// Returns slots that no search can reach any more.
    pub(crate) fn release(&self, slots: impl IntoIterator<Item = u32>) {
        self.free.lock().extend(slots);
    }

    /// One past the highest slot ever handed out: the bound of every scan.
    #[inline]
    pub(crate) fn high_water(&self) -> u32 {
        self.next.load(Ordering::Acquire)
    }

    pub(crate) fn free_count(&self) -> usize {
        self.free.lock().len()
    }
}

/// Caller id → slot.
#[derive(Debug, Default)]
pub(crate) struct IdMap {
    map: RwLock<HashMap<u32, u32>>,
    /// The map's length, readable without the lock (every search consults it).
    len: AtomicUsize,
}

impl IdMap {
    /// A map with room for `n` ids (at most a million up front; it grows past that).
    pub(crate) fn with_capacity(n: usize) -> IdMap {
        IdMap {
            map: RwLock::new(HashMap::with_capacity(n.min(1 << 20))),
            len: AtomicUsize::new(0),
        }
    }

    pub(crate) fn get(&self, id: u32) -> Option<u32> {
        self.map.read().get(&id).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Claims `id` with a slot from `pool`, or fails if `id` is present. `publish` runs
    /// under the map's write lock, before the id becomes visible, and must write the slot
    /// completely (vector, then label): so a reader that finds the id in the map finds a
    /// published slot, and a `remove` of the id cannot slip in between the claim and the
    /// publication. If `publish` fails the slot goes back to the pool.
    pub(crate) fn claim(
        &self,
        id: u32,
        pool: &SlotPool,
        publish: impl FnOnce(u32) -> Result<()>,
    ) -> Result<u32> {
        let mut map = self.map.write();
        if map.contains_key(&id) {
            return Err(IndexError::DuplicateId(id));
        }
        let slot = pool.alloc()?;
        if let Err(e) = publish(slot) {
            pool.release([slot]);
            return Err(e);
        }
        map.insert(id, slot);
        self.len.store(map.len(), Ordering::Release);
        Ok(slot)
    }

    pub(crate) fn remove(&self, id: u32) -> Option<u32> {
        let mut map = self.map.write();
        let slot = map.remove(&id);
        self.len.store(map.len(), Ordering::Release);
        slot
    }

    /// Runs `f` with read access to the whole map (an exact scan of filtered ids).
    pub(crate) fn with_read<R>(&self, f: impl FnOnce(&HashMap<u32, u32>) -> R) -> R {
        f(&self.map.read())
    }

    pub(crate) fn insert(&self, id: u32, slot: u32) {
        let mut map = self.map.write();
        map.insert(id, slot);
        self.len.store(map.len(), Ordering::Release);
    }

    pub(crate) fn bytes(&self) -> usize {
        // hashbrown: 8 bytes of entry plus one control byte per bucket.
        self.map.read().capacity() * 9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_words_round_trip() {
        for id in [0, 1, 77, MAX_ID] {
            assert_eq!(id_of(label_word(id)), Some(id));
            assert_eq!(id_of(label_word(id) | DELETED), Some(id));
        }
        assert_eq!(id_of(0), None);
        assert!(check_id(MAX_ID).is_ok());
        assert_eq!(
            check_id(MAX_ID + 1),
            Err(IndexError::IdOutOfRange(MAX_ID + 1))
        );
    }

    #[test]
    fn freed_slots_are_reused_first() {
        let pool = SlotPool::default();
        let ids = IdMap::default();
        assert_eq!(ids.claim(10, &pool, |_| Ok(())), Ok(0));
        assert_eq!(ids.claim(11, &pool, |_| Ok(())), Ok(1));
        assert_eq!(
            ids.claim(10, &pool, |_| Ok(())),
            Err(IndexError::DuplicateId(10))
        );
        assert_eq!(ids.remove(10), Some(0));
        pool.release([0]);
        assert_eq!(ids.claim(12, &pool, |_| Ok(())), Ok(0));
        assert_eq!(pool.high_water(), 2);
    }

    #[test]
    fn claim_backs_the_slot_before_publishing_the_id() {
        let pool = SlotPool::default();
        let ids = IdMap::default();
        let mut backed = Vec::new();
        let slot = ids
            .claim(7, &pool, |s| {
                // The map is still write-locked: no reader can have found id 7 yet.
                assert!(ids.map.try_read().is_none());
                backed.push(s);
                Ok(())
            })
            .unwrap();
        assert_eq!(backed, vec![slot]);
        assert_eq!(ids.get(7), Some(slot));
        assert!(ids
            .claim(7, &pool, |_| panic!("backed a duplicate"))
            .is_err());
        // A failed publication returns the slot and leaves the id absent.
        let failed = ids.claim(8, &pool, |_| Err(IndexError::OutOfMemory(1)));
        assert_eq!(failed, Err(IndexError::OutOfMemory(1)));
        assert_eq!(ids.get(8), None);
        assert_eq!(ids.claim(9, &pool, |_| Ok(())), Ok(slot + 1));
    }
}
