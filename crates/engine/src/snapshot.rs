//! The whole engine as one byte stream: what Raft ships to a lagging replica and what a
//! restart loads.
//!
//! Layout: `SHOALENG`, format version (u32), the keyspace, the indexes, the group's
//! reshard state ([`crate::layout`]), a CRC32 of everything before it. Every length is checked against what is left before anything
//! is allocated, so a truncated or corrupted stream is an error, never a panic or a
//! huge allocation. Vector indexes travel in their own versioned format (shoal-index);
//! tag and numeric indexes are rebuilt from the documents, which is cheap.

use std::collections::{BTreeMap, VecDeque};

use shoal_query::schema::parse_create;
use shoal_ring::Ring;

use crate::change_log::ChangeLog;
use crate::docs::DocTable;
use crate::error::{EngineError, Result};
use crate::keyspace::{Entry, HashValue, Value};
use crate::layout::{Incoming, Layout, Outgoing};
use crate::search_index::{FieldIndex, SearchIndex};
use crate::Engine;

const MAGIC: &[u8; 8] = b"SHOALENG";
/// 2 added each key's WATCH version and the keyspace's change clock; 1 still loads (its
/// versions restart from the load). 3 added each index's generation; 1 and 2 load with
/// generation 0. 4 added the reshard state; 1 to 3 load with none.
const VERSION: u32 = 4;
/// What an engine with no reshard state writes: the version before 4, which it needs
/// nothing of, so that a node of the previous release (a rolling upgrade) installs
/// the snapshots of a cluster that never reshards.
const VERSION_WITHOUT_LAYOUT: u32 = 3;

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

struct In<'a> {
    data: &'a [u8],
    pos: usize,
}

fn corrupt(what: &str) -> EngineError {
    EngineError::Snapshot(what.to_owned())
}

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| corrupt("truncated"))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// A count of items each at least `min_size` bytes long, checked against what is left.
    fn count(&mut self, min_size: usize) -> Result<usize> {
        let n = usize::try_from(self.u64()?).map_err(|_| corrupt("count"))?;
        if n.saturating_mul(min_size.max(1)) > self.data.len() - self.pos {
            return Err(corrupt("count exceeds the stream"));
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.count(1)?;
        self.take(n)
    }
}

/// One key's value and expiry as a snapshot stores it: also the dump a reshard will
/// copy a key by (docs/resharding.md §3.2), so the two never disagree.
fn write_entry(out: &mut Out, entry: &Entry) -> Result<()> {
    match entry.expires_at {
        Some(t) => {
            out.u8(1);
            out.u64(t);
        }
        None => out.u8(0),
    }
    match &entry.value {
        Value::Str(s) => {
            out.u8(0);
            out.bytes(s);
        }
        Value::Hash(h) => {
            out.u8(1);
            out.u64(h.len() as u64);
            for (k, v) in h {
                out.bytes(k);
                out.bytes(v);
            }
        }
        Value::Json(j) => {
            out.u8(2);
            out.bytes(&serde_json::to_vec(j).map_err(|e| corrupt(&e.to_string()))?);
        }
    }
    Ok(())
}

fn read_entry(r: &mut In<'_>) -> Result<Entry> {
    let expires_at = match r.u8()? {
        0 => None,
        1 => Some(r.u64()?),
        _ => return Err(corrupt("expiry flag")),
    };
    let value = match r.u8()? {
        0 => Value::Str(r.bytes()?.to_vec()),
        1 => {
            let n = r.count(16)?;
            let mut h = HashValue::with_capacity(n);
            for _ in 0..n {
                let k = r.bytes()?.to_vec();
                let v = r.bytes()?.to_vec();
                h.insert(k, v);
            }
            Value::Hash(h)
        }
        2 => Value::Json(serde_json::from_slice(r.bytes()?).map_err(|e| corrupt(&e.to_string()))?),
        _ => return Err(corrupt("value type")),
    };
    Ok(Entry { value, expires_at })
}

/// One key's dump, as a reshard copies it from a source to the target: the snapshot's
/// encoding of its value and absolute expiry.
pub(crate) fn dump_entry(entry: &Entry) -> Result<Vec<u8>> {
    let mut out = Out(Vec::new());
    write_entry(&mut out, entry)?;
    Ok(out.0)
}

/// A key from its dump ([`dump_entry`]); trailing bytes are an error, not ignored.
pub(crate) fn load_entry(bytes: &[u8]) -> Result<Entry> {
    let mut r = In {
        data: bytes,
        pos: 0,
    };
    let entry = read_entry(&mut r)?;
    if r.pos != bytes.len() {
        return Err(corrupt("bytes after the dump"));
    }
    Ok(entry)
}

/// The reshard state as a snapshot stores it (also what the digest hashes).
pub(crate) fn reshard_bytes(layout: &Layout, changes: Option<&ChangeLog>) -> Vec<u8> {
    let mut out = Out(Vec::new());
    write_layout(&mut out, layout);
    write_changes(&mut out, changes);
    out.0
}

fn write_changes(out: &mut Out, changes: Option<&ChangeLog>) {
    let Some(log) = changes else {
        out.u8(0);
        return;
    };
    out.u8(1);
    out.u64(log.target);
    write_ring(out, &log.next);
    out.u64(log.last());
    match log.flushed() {
        None => out.u8(0),
        Some(seq) => {
            out.u8(1);
            out.u64(seq);
        }
    }
    let listed: Vec<(u64, &[u8])> = log.after(0).collect();
    out.u64(listed.len() as u64);
    for (seq, key) in listed {
        out.u64(seq);
        out.bytes(key);
    }
}

fn read_changes(r: &mut In<'_>) -> Result<Option<ChangeLog>> {
    match r.u8()? {
        0 => return Ok(None),
        1 => {}
        _ => return Err(corrupt("change log flag")),
    }
    let target = r.u64()?;
    let next = read_ring(r)?;
    let last = r.u64()?;
    let flushed = match r.u8()? {
        0 => None,
        1 => Some(r.u64()?),
        _ => return Err(corrupt("flush flag")),
    };
    let n = r.count(16)?;
    let mut listed = Vec::with_capacity(n);
    for _ in 0..n {
        let seq = r.u64()?;
        listed.push((seq, r.bytes()?.to_vec()));
    }
    ChangeLog::from_parts(target, next, last, flushed, listed)
        .map(Some)
        .ok_or_else(|| corrupt("change log"))
}

fn write_ring(out: &mut Out, ring: &Ring) {
    out.u64(ring.groups().len() as u64);
    for &g in ring.groups() {
        out.u64(g);
    }
}

/// More groups than any cluster has: a ring's size is not the stream's (each group
/// is 256 virtual nodes), so a crafted count must not reach it.
pub(crate) const MAX_RING_GROUPS: usize = 4_096;

fn read_ring(r: &mut In<'_>) -> Result<Ring> {
    let n = r.count(8)?;
    if n > MAX_RING_GROUPS {
        return Err(corrupt("ring size"));
    }
    let mut groups = Vec::with_capacity(n);
    for _ in 0..n {
        groups.push(r.u64()?);
    }
    Ok(Ring::new(groups))
}

fn write_layout(out: &mut Out, layout: &Layout) {
    out.u64(layout.floor);
    match &layout.outgoing {
        None => out.u8(0),
        Some(o) => {
            out.u8(1);
            out.u64(o.target);
            write_ring(out, &o.next);
            out.u64(o.begun);
            match o.fenced {
                None => out.u8(0),
                Some(e) => {
                    out.u8(1);
                    out.u64(e);
                }
            }
            out.u64(o.purge_cursor);
        }
    }
    match &layout.incoming {
        None => out.u8(0),
        Some(i) => {
            out.u8(1);
            write_ring(out, &i.old);
            out.u64(i.accepted.len() as u64);
            for (&g, &e) in &i.accepted {
                out.u64(g);
                out.u64(e);
            }
            out.u64(i.run);
            out.u8(u8::from(i.aborted));
        }
    }
}

fn read_layout(r: &mut In<'_>) -> Result<Layout> {
    let floor = r.u64()?;
    let outgoing = match r.u8()? {
        0 => None,
        1 => Some(Outgoing {
            target: r.u64()?,
            next: read_ring(r)?,
            begun: r.u64()?,
            fenced: match r.u8()? {
                0 => None,
                1 => Some(r.u64()?),
                _ => return Err(corrupt("fence flag")),
            },
            purge_cursor: r.u64()?,
        }),
        _ => return Err(corrupt("outgoing flag")),
    };
    let incoming = match r.u8()? {
        0 => None,
        1 => {
            let old = read_ring(r)?;
            let n = r.count(16)?;
            let mut accepted = BTreeMap::new();
            for _ in 0..n {
                accepted.insert(r.u64()?, r.u64()?);
            }
            Some(Incoming {
                old,
                accepted,
                run: r.u64()?,
                aborted: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(corrupt("aborted flag")),
                },
            })
        }
        _ => return Err(corrupt("incoming flag")),
    };
    Ok(Layout {
        floor,
        outgoing,
        incoming,
    })
}

/// Checks that `data` is a whole, uncorrupted engine snapshot (its checksum and header)
/// without building the engine: what a replica does with a snapshot it received before
/// it lets go of its own state.
pub fn verify(data: &[u8]) -> Result<()> {
    let body = checked_body(data)?;
    if !body.starts_with(MAGIC) {
        return Err(corrupt("not a Shoal engine snapshot"));
    }
    Ok(())
}

/// The bytes a snapshot's trailing CRC covers, once the CRC matches.
fn checked_body(data: &[u8]) -> Result<&[u8]> {
    if data.len() < MAGIC.len() + 8 {
        return Err(corrupt("truncated"));
    }
    let (body, tail) = data.split_at(data.len() - 4);
    let crc = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if crc32fast::hash(body) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(body)
}

impl Engine {
    /// Serializes the engine.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let mut out = Out(Vec::new());
        out.0.extend_from_slice(MAGIC);
        let with_layout = self.has_reshard_state();
        out.u32(match with_layout {
            true => VERSION,
            false => VERSION_WITHOUT_LAYOUT,
        });
        let (clock, entries) = self.keyspace.versioned();
        let entries: Vec<(&[u8], &Entry, u64)> = entries.collect();
        out.u64(clock);
        out.u64(entries.len() as u64);
        for (key, entry, version) in entries {
            out.bytes(key);
            out.u64(version);
            write_entry(&mut out, entry)?;
        }
        out.u64(self.indexes.len() as u64);
        for index in self.indexes.values() {
            out.u64(index.definition.len() as u64);
            for arg in &index.definition {
                out.bytes(arg);
            }
            out.u64(index.generation);
            let (slots, free) = index.docs.parts();
            out.u64(slots.len() as u64);
            for slot in slots {
                match slot {
                    Some(k) => {
                        out.u8(1);
                        out.bytes(k);
                    }
                    None => out.u8(0),
                }
            }
            out.u64(free.len() as u64);
            for f in free {
                out.u32(*f);
            }
            out.u64(index.failures);
            out.u64(index.backfill.total as u64);
            out.u64(index.backfill.done as u64);
            out.u64(index.backfill.pending.len() as u64);
            for key in &index.backfill.pending {
                out.bytes(key);
            }
            for field in &index.fields {
                if let FieldIndex::Vector(v) = field {
                    let mut buf = Vec::new();
                    v.serialize(&mut buf)
                        .map_err(|e| EngineError::Index(e.to_string()))?;
                    out.bytes(&buf);
                }
            }
        }
        if with_layout {
            write_layout(&mut out, &self.layout);
            write_changes(&mut out, self.keyspace.changes());
        }
        let crc = crc32fast::hash(&out.0);
        out.u32(crc);
        Ok(out.0)
    }

    /// Rebuilds an engine from [`Engine::snapshot`]'s bytes.
    pub fn restore(data: &[u8]) -> Result<Engine> {
        let body = checked_body(data)?;
        let mut r = In { data: body, pos: 0 };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(corrupt("not a Shoal engine snapshot"));
        }
        let version = r.u32()?;
        if !(1..=VERSION).contains(&version) {
            return Err(corrupt(&format!("unsupported format version {version}")));
        }
        let versioned = version >= 2;
        let mut engine = Engine::new();
        let clock = if versioned { Some(r.u64()?) } else { None };
        let keys = r.count(10)?;
        for _ in 0..keys {
            let key = r.bytes()?.to_vec();
            let key_version = if versioned { Some(r.u64()?) } else { None };
            let entry = read_entry(&mut r)?;
            match key_version {
                Some(v) => engine.keyspace.restore_versioned(&key, entry, v),
                None => {
                    engine.keyspace.insert(&key, entry);
                }
            }
        }
        if let Some(clock) = clock {
            engine.keyspace.set_clock(clock);
        }
        let indexes = r.count(8)?;
        for _ in 0..indexes {
            let n = r.count(8)?;
            let mut definition = Vec::with_capacity(n);
            for _ in 0..n {
                definition.push(r.bytes()?.to_vec());
            }
            let schema = parse_create(&definition).map_err(|e| corrupt(&e.to_string()))?;
            let generation = if version >= 3 { r.u64()? } else { 0 };
            let mut index =
                SearchIndex::create(schema, definition, generation, &engine.keyspace, 0)?;
            index.backfill.pending.clear();
            let slots = r.count(1)?;
            let mut keys = Vec::with_capacity(slots);
            for _ in 0..slots {
                keys.push(match r.u8()? {
                    0 => None,
                    1 => Some(r.bytes()?.to_vec()),
                    _ => return Err(corrupt("slot flag")),
                });
            }
            let free_n = r.count(4)?;
            let mut free = Vec::with_capacity(free_n);
            for _ in 0..free_n {
                free.push(r.u32()?);
            }
            index.docs =
                DocTable::from_parts(keys, free).ok_or_else(|| corrupt("document table"))?;
            index.failures = r.u64()?;
            index.backfill.total = usize::try_from(r.u64()?).map_err(|_| corrupt("backfill"))?;
            index.backfill.done = usize::try_from(r.u64()?).map_err(|_| corrupt("backfill"))?;
            let pending = r.count(8)?;
            let mut queue = VecDeque::with_capacity(pending);
            for _ in 0..pending {
                queue.push_back(r.bytes()?.to_vec());
            }
            index.backfill.pending = queue;
            for field in &mut index.fields {
                if let FieldIndex::Vector(v) = field {
                    let mut bytes = r.bytes()?;
                    *v = shoal_index::deserialize(&mut bytes)
                        .map_err(|e| corrupt(&format!("vector index: {e}")))?;
                }
            }
            // Tags and numbers come back from the documents themselves.
            let docs: Vec<(u32, Vec<u8>)> = index
                .docs
                .all()
                .iter()
                .filter_map(|d| index.docs.key(d).map(|k| (d, k.to_vec())))
                .collect();
            for (doc, key) in docs {
                let Some(entry) = engine.keyspace.get(&key, 0) else {
                    return Err(corrupt("indexed document missing from the keyspace"));
                };
                index.reload_doc(doc, &entry.value);
            }
            engine.indexes.insert(index.schema.name.clone(), index);
        }
        if version >= 4 {
            *engine.layout = read_layout(&mut r)?;
            if let Some(log) = read_changes(&mut r)? {
                engine.keyspace.track_changes(log);
            }
        }
        if r.pos != body.len() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reshard_layout() -> Layout {
        Layout {
            floor: 7,
            outgoing: Some(Outgoing {
                target: 3,
                next: Ring::new(0..4),
                begun: 5,
                fenced: Some(7),
                purge_cursor: 1_234,
            }),
            incoming: Some(Incoming {
                old: Ring::new(0..3),
                accepted: BTreeMap::from([(0, 6), (2, 7)]),
                run: 2,
                aborted: true,
            }),
        }
    }

    #[test]
    fn the_reshard_state_survives_a_snapshot_and_counts_in_the_digest() {
        let mut engine = Engine::new();
        let plain = engine.digest();
        *engine.layout = reshard_layout();
        assert_ne!(engine.digest(), plain);
        let restored = Engine::restore(&engine.snapshot().unwrap()).unwrap();
        assert_eq!(
            reshard_bytes(&restored.layout, None),
            reshard_bytes(&reshard_layout(), None)
        );
        assert_eq!(restored.digest(), engine.digest());
        let back = &restored.layout;
        assert_eq!(back.floor, 7);
        let out = back.outgoing.as_ref().unwrap();
        assert_eq!(
            (
                out.target,
                out.next.groups(),
                out.begun,
                out.fenced,
                out.purge_cursor
            ),
            (3, &[0, 1, 2, 3][..], 5, Some(7), 1_234)
        );
        let inc = back.incoming.as_ref().unwrap();
        assert_eq!(inc.old.groups(), &[0, 1, 2]);
        assert_eq!(inc.accepted, BTreeMap::from([(0, 6), (2, 7)]));
        assert_eq!((inc.run, inc.aborted), (2, true));
        // Each field's change changes the digest.
        let mut other = Engine::new();
        *other.layout = reshard_layout();
        if let Some(inc) = other.layout.incoming.as_mut() {
            inc.accepted.insert(1, 8);
        }
        assert_ne!(other.digest(), engine.digest());
    }

    fn version(snapshot: &[u8]) -> u32 {
        let mut r = In {
            data: snapshot,
            pos: MAGIC.len(),
        };
        r.u32().unwrap()
    }

    #[test]
    fn an_engine_outside_a_reshard_writes_version_3_as_before() {
        let mut engine = Engine::new();
        let v3 = engine.snapshot().unwrap();
        assert_eq!(version(&v3), 3, "readable by the previous release");
        let restored = Engine::restore(&v3).unwrap();
        assert!(restored.layout.is_initial());
        assert_eq!(restored.digest(), engine.digest());
        *engine.layout = reshard_layout();
        let v4 = engine.snapshot().unwrap();
        assert_eq!(version(&v4), 4);
        // Version 4 cut before its layout (checksum made good) is refused, not read
        // as a version 3 stream.
        let mut cut = v4[..v4.len() - 4 - reshard_bytes(&reshard_layout(), None).len()].to_vec();
        let crc = crc32fast::hash(&cut);
        cut.extend_from_slice(&crc.to_le_bytes());
        assert!(Engine::restore(&cut).is_err());
    }

    #[test]
    fn a_change_log_under_way_survives_a_snapshot() {
        let mut engine = Engine::new();
        engine
            .keyspace
            .track_changes(ChangeLog::new(3, Ring::new(0..4)));
        let plain = Engine::new().digest();
        assert_ne!(engine.digest(), plain, "tracking counts in the digest");
        for i in 0..300 {
            let key = format!("k:{i}").into_bytes();
            engine.keyspace.insert(
                &key,
                Entry {
                    value: Value::Str(b"v".to_vec()),
                    expires_at: None,
                },
            );
        }
        engine.keyspace.remove(b"k:7");
        let bytes = engine.snapshot().unwrap();
        assert_eq!(version(&bytes), 4, "a layout-less engine that tracks");
        let restored = Engine::restore(&bytes).unwrap();
        let (a, b) = (
            engine.keyspace.changes().unwrap(),
            restored.keyspace.changes().unwrap(),
        );
        assert!(!a.is_empty());
        assert_eq!((b.target, b.next.groups()), (3, &[0, 1, 2, 3][..]));
        assert_eq!((b.last(), b.flushed()), (a.last(), a.flushed()));
        assert!(a.after(0).eq(b.after(0)));
        assert_eq!(restored.digest(), engine.digest());
        // Tracking goes on from where it was: the next change is numbered after.
        let mut restored = restored;
        let moving = a.after(0).next().map(|(_, k)| k.to_vec()).unwrap();
        restored.keyspace.remove(&moving);
        assert_eq!(restored.keyspace.changes().unwrap().last(), a.last() + 1);
    }

    #[test]
    fn a_crafted_change_log_or_ring_is_an_error_not_an_allocation() {
        let mut log = Out(Vec::new());
        write_changes(&mut log, Some(&ChangeLog::new(3, Ring::new(0..4))));
        let good = log.0.clone();
        let mut r = In {
            data: &good,
            pos: 0,
        };
        assert!(read_changes(&mut r).unwrap().is_some());
        // Flag, target, then the ring's group count: a huge ring in a short stream.
        let mut huge = good.clone();
        huge[9..17].copy_from_slice(&(MAX_RING_GROUPS as u64 + 1).to_le_bytes());
        huge.extend(std::iter::repeat_n(0u8, 8 * (MAX_RING_GROUPS + 1)));
        let mut r = In {
            data: &huge,
            pos: 0,
        };
        assert!(read_changes(&mut r).is_err());
        // A listed change numbered 0.
        let mut zero = Out(Vec::new());
        zero.u8(1);
        zero.u64(3);
        write_ring(&mut zero, &Ring::new(0..4));
        zero.u64(5);
        zero.u8(0);
        zero.u64(1);
        zero.u64(0);
        zero.bytes(b"k");
        let mut r = In {
            data: &zero.0,
            pos: 0,
        };
        assert!(read_changes(&mut r).is_err());
        let mut bad_flag = good;
        bad_flag[0] = 2;
        let mut r = In {
            data: &bad_flag,
            pos: 0,
        };
        assert!(read_changes(&mut r).is_err());
    }

    #[test]
    fn bad_flags_in_the_reshard_state_are_errors() {
        for (at, value) in [(8, 2u8), (9, 9u8)] {
            let mut bytes = reshard_bytes(&Layout::default(), None);
            bytes[at] = value;
            let mut r = In {
                data: &bytes,
                pos: 0,
            };
            assert!(read_layout(&mut r).is_err(), "byte {at} = {value}");
        }
    }
}
