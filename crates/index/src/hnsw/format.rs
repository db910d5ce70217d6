//! The HNSW body of the byte stream (after the common header of `codec`):
//!
//! ```text
//! M u32 | EF_CONSTRUCTION u32 | EF_RUNTIME u32 | EPSILON f32 | seed u64
//! exact_filter_fraction f64 | repair_fraction f64 | slots u32 | entry u64
//! per slot: label u32; if label != 0: level u8, per level 0..=level: count u32 + ids,
//!           then the stored vector (dim f32)
//! ```
//!
//! Only occupied slots are written (live and tombstoned nodes), renumbered densely: no link
//! ever names a free slot, so the renumbering is total, and every slot in a stream costs at
//! least `4 · dim` bytes of it, which bounds what decoding may allocate. Loading is linear
//! and needs no rebuild of the graph; the codes (`sq8`) are a pure function of each
//! vector and are recomputed as it is loaded, not stored. Every id, count, level and link
//! is checked before the index is assembled.

use super::graph::MAX_LEVEL;
use super::{HnswIndex, HnswParams, EMPTY};
use crate::codec::{Decoder, Encoder, Kind};
use crate::error::{IndexError, Result};
use crate::slots::{id_of, DELETED, MAX_ID};
use crate::words::load;

fn corrupt(what: impl Into<String>) -> IndexError {
    IndexError::Corrupt(what.into())
}

/// One slot as read from a stream, before validation against the others.
struct SlotImage {
    label: u32,
    lists: Vec<Vec<u32>>,
    vector: Vec<f32>,
}

impl HnswIndex {
    /// Encodes the index. Caller holds the structure lock exclusively.
    pub(super) fn encode(&self) -> Vec<u8> {
        let p = &self.params;
        let mut e = Encoder::new(Kind::Hnsw, self.metric, self.graph.dim);
        e.u32(p.m as u32);
        e.u32(p.ef_construction as u32);
        e.u32(p.ef_runtime as u32);
        e.f32(p.epsilon);
        e.u64(p.seed);
        e.u64(p.exact_filter_fraction.to_bits());
        e.u64(p.repair_fraction.to_bits());
        let high = self.pool.high_water();
        let occupied: Vec<u32> = (0..high)
            .filter(|&s| self.graph.is_backed(s) && self.graph.label_word(s) != 0)
            .collect();
        let mut renumber = std::collections::HashMap::with_capacity(occupied.len());
        for (new, &old) in occupied.iter().enumerate() {
            renumber.insert(old, new as u32);
        }
        // Links only ever name occupied slots (repair unlinks a slot before freeing it);
        // should one not, it is dropped rather than written as garbage.
        let to_new = |old: u32| renumber.get(&old).copied();
        e.u32(occupied.len() as u32);
        let entry = match self.entry() {
            Some((slot, level)) => {
                to_new(slot).map_or(EMPTY, |s| ((level as u64) << 32) | u64::from(s))
            }
            None => EMPTY,
        };
        e.u64(entry);
        let mut list = Vec::new();
        for &s in &occupied {
            e.u32(self.graph.label_word(s));
            let level = self.graph.level(s);
            e.u8(level as u8);
            for l in 0..=level {
                list.clear();
                list.extend(
                    self.graph
                        .links(s, l)
                        .iter()
                        .filter_map(|x| to_new(load(x))),
                );
                e.u32(list.len() as u32);
                list.iter().for_each(|&x| e.u32(x));
            }
            e.f32s(self.graph.vector(s));
        }
        e.finish()
    }

    pub(crate) fn decode(mut d: Decoder<'_>) -> Result<HnswIndex> {
        let params = HnswParams {
            m: d.u32()? as usize,
            ef_construction: d.u32()? as usize,
            ef_runtime: d.u32()? as usize,
            epsilon: d.f32()?,
            seed: d.u64()?,
            exact_filter_fraction: f64::from_bits(d.u64()?),
            repair_fraction: f64::from_bits(d.u64()?),
            ..HnswParams::default()
        };
        params.check().map_err(|e| corrupt(e.to_string()))?;
        let high = d.u32()?;
        if high > MAX_ID {
            return Err(corrupt("slot count out of range"));
        }
        let entry = d.u64()?;
        // Every written slot carries at least its label, level, one count and its vector.
        d.expect_records(u64::from(high), 9 + 4 * d.dim as u64)?;
        let (dim, m0, m) = (d.dim, 2 * params.m, params.m);

        let mut images = Vec::with_capacity(high as usize);
        for _ in 0..high {
            let label = d.u32()?;
            if label == 0 {
                return Err(corrupt("an empty slot in the stream"));
            }
            let level = d.u8()? as usize;
            if level > MAX_LEVEL {
                return Err(corrupt(format!("node level {level} above {MAX_LEVEL}")));
            }
            let mut lists = Vec::with_capacity(level + 1);
            for l in 0..=level {
                let count = d.u32()? as usize;
                if count > if l == 0 { m0 } else { m } {
                    return Err(corrupt(format!(
                        "{count} links at level {l} exceed the limit"
                    )));
                }
                let list = (0..count).map(|_| d.u32()).collect::<Result<Vec<u32>>>()?;
                lists.push(list);
            }
            let mut vector = Vec::with_capacity(dim);
            d.f32s(dim, &mut vector)?;
            if !d.metric.is_prepared(&vector) {
                return Err(corrupt("a COSINE vector is not of unit length"));
            }
            images.push(SlotImage {
                label,
                lists,
                vector,
            });
        }
        d.finish()?;

        // Cross-checks: every link names an occupied slot that has that level, ids are
        // unique, and the entry point is an occupied slot of the highest level.
        let mut seen = std::collections::HashSet::new();
        for (s, img) in images.iter().enumerate() {
            if img.label == 0 {
                continue;
            }
            let id = id_of(img.label).ok_or_else(|| corrupt("bad label"))?;
            if img.label & DELETED == 0 && !seen.insert(id) {
                return Err(corrupt(format!("id {id} appears twice")));
            }
            for (l, list) in img.lists.iter().enumerate() {
                for &n in list {
                    let ok = images
                        .get(n as usize)
                        .is_some_and(|t| t.label != 0 && t.lists.len() > l && n as usize != s);
                    if !ok {
                        return Err(corrupt(format!("slot {s} links to invalid slot {n}")));
                    }
                }
            }
        }
        let top = images.iter().map(|i| i.lists.len()).max().unwrap_or(0);
        if entry == EMPTY {
            if images
                .iter()
                .any(|i| i.label != 0 && i.label & DELETED == 0)
            {
                return Err(corrupt("nodes present but no entry point"));
            }
        } else {
            let (slot, level) = (entry as u32, (entry >> 32) as usize);
            let ok = images
                .get(slot as usize)
                .is_some_and(|i| i.label != 0 && i.lists.len() == level + 1 && level + 1 == top);
            if !ok {
                return Err(corrupt("entry point is not a node of the top level"));
            }
        }

        let index = HnswIndex::new(dim, d.metric, high as usize, params)?;
        let mut free = Vec::new();
        let mut tombstones = 0;
        for (s, img) in images.iter().enumerate() {
            let s = s as u32;
            if img.label == 0 {
                free.push(s);
                continue;
            }
            index.graph.init_slot(s, img.lists.len() - 1, &img.vector)?;
            for (l, list) in img.lists.iter().enumerate() {
                index.graph.set_links(s, l, list);
            }
            index.graph.set_label_word(s, img.label);
            match id_of(img.label) {
                Some(id) if img.label & DELETED == 0 => index.ids.insert(id, s),
                Some(_) | None => tombstones += 1,
            }
        }
        index
            .tombstones
            .store(tombstones, std::sync::atomic::Ordering::Release);
        index
            .entry
            .store(entry, std::sync::atomic::Ordering::Release);
        let pool = crate::slots::SlotPool::with_state(high, free);
        Ok(HnswIndex { pool, ..index })
    }
}
