//! The log entries and reads that move keys to a shard group being added
//! (docs/resharding.md §3.2). A coordinator sends them over the node-to-node shard
//! service; clients cannot: the RESP command table knows no `SHOAL._*` name.
//!
//! Every write here depends only on its arguments, the entry's time and the engine's
//! state, so every replica ends in the same [`Layout`]. Each may be sent again after an
//! unknown outcome: a repeat, or one naming an epoch below the group's floor (a
//! superseded coordinator's, or one of an earlier reshard's), changes nothing and
//! answers the group's state ([`state`]), which is what the coordinator reads to go
//! on. Imports and accepts name the coordinator's run instead, which only grows.
//!
//! | entry (group)                            | refused when                                        | effect |
//! |------------------------------------------|-----------------------------------------------------|--------|
//! | `_BEGIN e1 T next…` (source)             | the target of a reshard; another target under way   | floor ≥ e1, `outgoing`, changes tracked |
//! | `_FENCE T e` (source)                    | not T's source                                      | floor ≥ e, fenced: moving keys hidden |
//! | `_PURGE T e n` (source)                  | not fenced                                          | changes dropped, ≤ n moving keys deleted |
//! | `_SETTLE SOURCE T e`                     | not switched; handed-over keys not purged yet       | `outgoing` gone, floor ≥ e |
//! | `_SETTLE TARGET e`                       | an old group not accepted (unless aborted)          | `incoming` gone, floor ≥ e |
//! | `_ABORT TARGET e run` (first)            | an older run; a source already accepted             | aborted, every key deleted, floor ≥ e |
//! | `_ABORT SOURCE T e` (then)               | another target                                      | `outgoing` gone (the fence too), floor ≥ e |
//! | `_INCOMING e1 run old…` (target)         | a source; holds keys; another intake; an aborted one's run not older | `incoming`, floor ≥ e1 |
//! | `_IMPORT g run [FLUSH] key dump…`        | no intake; older run; aborted; g accepted; a key not g's; a bad dump | the keys set or deleted |
//! | `_ACCEPT g e run` (target)               | as `_IMPORT`                                        | g's keys shown, floor ≥ e |

use std::collections::BTreeMap;

use shoal_ring::{GroupId, Ring};

use super::Args;
use crate::change_log::ChangeLog;
use crate::error::{EngineError, Result};
use crate::keyspace::Entry;
use crate::layout::{Incoming, Layout, Outgoing};
use crate::reply::Reply;
use crate::snapshot::{dump_entry, load_entry, MAX_RING_GROUPS};
use crate::Engine;

/// Keys an `_EXPORT` or `_PURGE` looks at, at most, whatever it finds: they hold the
/// replica's lock (a read) or the apply loop (a purge) for that long.
const VISIT: usize = 16_384;

fn refused(why: impl Into<String>) -> EngineError {
    EngineError::Reshard(why.into())
}

fn uint(a: &Args<'_>, i: usize) -> Result<u64> {
    u64::try_from(a.int(i)?).map_err(|_| EngineError::NotInteger)
}

/// A keyspace cursor: a u64 hash, sent as its decimal string (as SCAN's) since it
/// does not fit an integer reply.
fn cursor(a: &Args<'_>, i: usize) -> Result<u64> {
    std::str::from_utf8(a.get(i)?)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(EngineError::InvalidCursor)
}

fn cursor_reply(hash: u64) -> Reply {
    Reply::Bulk(hash.to_string().into_bytes())
}

/// A ring's groups; no more than a snapshot can hold again.
fn groups(a: &Args<'_>, from: usize) -> Result<Vec<GroupId>> {
    if a.len().saturating_sub(from) > MAX_RING_GROUPS {
        return Err(refused(format!(
            "a ring of more than {MAX_RING_GROUPS} groups"
        )));
    }
    (from..a.len()).map(|i| uint(a, i)).collect()
}

/// How many of something a read may return: at least one.
fn limit(a: &Args<'_>, i: usize) -> Result<usize> {
    Ok(usize::try_from(uint(a, i)?).unwrap_or(usize::MAX).max(1))
}

/// The group's part in a reshard as the coordinator reads it (`SHOAL._LAYOUT`, and the
/// reply of every write here):
/// `[floor, f, role, none|source|target, …]`, then for a source `target, T, begun, e,
/// fenced, e|nil, changes, last|nil, flushed, seq|nil, purge_cursor, c`, for a target
/// `run, r, aborted, 0|1, accepted, [g, e, …]`.
pub(super) fn state(engine: &Engine) -> Reply {
    let layout = engine.layout();
    let int = |v: u64| Reply::Int(i64::try_from(v).unwrap_or(i64::MAX));
    let opt = |v: Option<u64>| v.map_or(Reply::Null, int);
    let mut out = vec![Reply::bulk("floor"), int(layout.floor), Reply::bulk("role")];
    match (&layout.outgoing, &layout.incoming) {
        (Some(out_), _) => {
            let changes = engine.keyspace.changes();
            out.extend([
                Reply::bulk("source"),
                Reply::bulk("target"),
                int(out_.target),
                Reply::bulk("begun"),
                int(out_.begun),
                Reply::bulk("fenced"),
                opt(out_.fenced),
                Reply::bulk("changes"),
                opt(changes.map(ChangeLog::last)),
                Reply::bulk("flushed"),
                opt(changes.and_then(ChangeLog::flushed)),
                Reply::bulk("purge_cursor"),
                int(out_.purge_cursor),
            ]);
        }
        (None, Some(inc)) => {
            let accepted = inc
                .accepted
                .iter()
                .flat_map(|(&g, &e)| [int(g), int(e)])
                .collect();
            out.extend([
                Reply::bulk("target"),
                Reply::bulk("run"),
                int(inc.run),
                Reply::bulk("aborted"),
                Reply::Int(i64::from(inc.aborted)),
                Reply::bulk("accepted"),
                Reply::Array(accepted),
            ]);
        }
        (None, None) => out.push(Reply::bulk("none")),
    }
    Reply::Array(out)
}

/// This source's hand-over to `target`, or why there is none.
fn outgoing_to(layout: &mut Layout, target: GroupId) -> Result<&mut Outgoing> {
    match layout.outgoing.as_mut() {
        Some(out) if out.target == target => Ok(out),
        Some(out) => Err(refused(format!(
            "this group hands keys to group {}, not {target}",
            out.target
        ))),
        None => Err(refused(format!(
            "this group hands no keys to group {target}"
        ))),
    }
}

/// `SHOAL._BEGIN <e1> <T> <next groups…>`: the copy to `T` starts; from now on every
/// change to a key the next ring gives `T` is tracked.
pub(super) fn begin(engine: &mut Engine, a: &Args<'_>) -> Result<Reply> {
    a.arity(3, true)?;
    let epoch = uint(a, 0)?;
    let target = uint(a, 1)?;
    let next = groups(a, 2)?;
    if epoch < engine.layout.floor {
        return Ok(state(engine));
    }
    if !next.contains(&target) || next.len() < 2 {
        return Err(refused(format!(
            "the next ring must hold group {target} and at least one other"
        )));
    }
    if engine.layout.incoming.is_some() {
        return Err(refused("this group is the target of a reshard"));
    }
    let next = Ring::new(next);
    if let Some(out) = &engine.layout.outgoing {
        if out.target != target || out.next.groups() != next.groups() {
            return Err(refused(format!(
                "this group already hands keys to group {}",
                out.target
            )));
        }
        // A repeat (a coordinator that did not learn the first one's outcome).
        engine.layout.floor = engine.layout.floor.max(epoch);
        return Ok(state(engine));
    }
    engine.layout.floor = epoch;
    engine
        .keyspace
        .track_changes(ChangeLog::new(target, next.clone()));
    engine.layout.outgoing = Some(Outgoing {
        target,
        next,
        begun: epoch,
        fenced: None,
        purge_cursor: 0,
    });
    Ok(state(engine))
}

/// Read `SHOAL._EXPORT <T> <cursor> <keys> <bytes>`: from hash `cursor` on, the live
/// keys that move to `T` with their dumps, until `keys` keys or `bytes` bytes of dumps
/// (at least one key when any is left) or [`VISIT`] keys looked at:
/// `[next_cursor ("0": done), key, dump, …]`.
pub(super) fn export(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(4, false)?;
    let target = uint(a, 0)?;
    let cursor = cursor(a, 1)?;
    let (max_keys, max_bytes) = (limit(a, 2)?, limit(a, 3)?);
    let next = match &engine.layout.outgoing {
        Some(out) if out.target == target => &out.next,
        Some(_) | None => {
            return Err(refused(format!(
                "this group hands no keys to group {target}"
            )))
        }
    };
    let (mut keys, mut bytes, mut visited) = (0usize, 0usize, 0usize);
    let mut out = vec![cursor_reply(0)];
    for (hash, bucket) in engine.keyspace.buckets_from(cursor) {
        // Whole buckets only, so the next call resumes at a bucket's hash.
        if keys >= max_keys || bytes >= max_bytes || visited >= VISIT {
            out[0] = cursor_reply(hash);
            return Ok(Reply::Array(out));
        }
        visited += bucket.len();
        for (key, entry) in bucket {
            if entry.expires_at.is_some_and(|t| t <= now) || next.group_of(key) != Some(target) {
                continue;
            }
            let dump = dump_entry(entry)?;
            keys += 1;
            bytes += dump.len();
            out.push(Reply::Bulk(key.to_vec()));
            out.push(Reply::Bulk(dump));
        }
    }
    Ok(Reply::Array(out))
}

/// Read `SHOAL._CHANGES <T> <after> <keys> <bytes>`: the keys changed after change
/// `after`, in the order of their last change, each with its dump now (empty: gone),
/// within the limits: `[high, flushed, key, dump, …]`, where `high` is the change to
/// ask after next time and `flushed` is 1 when a FLUSHALL came after `after` (the
/// target drops what it copied from this group first).
pub(super) fn changes(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(4, false)?;
    let target = uint(a, 0)?;
    let after = uint(a, 1)?;
    let (max_keys, max_bytes) = (limit(a, 2)?, limit(a, 3)?);
    let log = match (&engine.layout.outgoing, engine.keyspace.changes()) {
        (Some(out), Some(log)) if out.target == target => log,
        (Some(_) | None, _) => {
            return Err(refused(format!(
                "this group tracks no changes for group {target}"
            )))
        }
    };
    let flushed = log.flushed().is_some_and(|f| f > after);
    let (mut keys, mut bytes) = (0usize, 0usize);
    // Cut short, the next call asks after the last key listed; else after the log's end
    // (past a flush that was its last change).
    let (mut high, mut cut) = (after, false);
    let mut listed = Vec::new();
    for (seq, key) in log.after(after) {
        if keys >= max_keys || bytes >= max_bytes {
            cut = true;
            break;
        }
        let dump = match engine.keyspace.get(key, now) {
            Some(entry) => dump_entry(entry)?,
            None => Vec::new(),
        };
        keys += 1;
        bytes += dump.len() + key.len();
        listed.push(Reply::Bulk(key.to_vec()));
        listed.push(Reply::Bulk(dump));
        high = seq;
    }
    if !cut {
        high = log.last().max(after);
    }
    let mut out = vec![
        Reply::Int(i64::try_from(high).unwrap_or(i64::MAX)),
        Reply::Int(i64::from(flushed)),
    ];
    out.extend(listed);
    Ok(Reply::Array(out))
}

/// `SHOAL._FENCE <T> <e>`: this source switches; its keys that move are hidden from now
/// on, and calls below epoch `e` are refused.
pub(super) fn fence(engine: &mut Engine, a: &Args<'_>) -> Result<Reply> {
    a.arity(2, false)?;
    let target = uint(a, 0)?;
    let epoch = uint(a, 1)?;
    if epoch < engine.layout.floor {
        return Ok(state(engine));
    }
    let floor = engine.layout.floor;
    let out = outgoing_to(&mut engine.layout, target)?;
    if out.fenced.is_none() {
        out.fenced = Some(epoch);
    }
    engine.layout.floor = floor.max(epoch);
    Ok(state(engine))
}

/// `SHOAL._PURGE <T> <e> <n>`: deletes up to `n` of the keys this fenced source handed
/// over (whole buckets, at most [`VISIT`] keys looked at), through the normal delete
/// path so the indexes follow: `[next_cursor (0: done), deleted]`.
pub(super) fn purge(engine: &mut Engine, a: &Args<'_>) -> Result<Reply> {
    a.arity(3, false)?;
    let target = uint(a, 0)?;
    let epoch = uint(a, 1)?;
    let max = limit(a, 2)?;
    if epoch < engine.layout.floor {
        return Ok(state(engine));
    }
    let out = outgoing_to(&mut engine.layout, target)?;
    if out.fenced.is_none() {
        return Err(refused("a source purges only once it has switched"));
    }
    let (next, cursor) = (out.next.clone(), out.purge_cursor);
    // What the target needed from the log was read after the fence: done with it.
    engine.keyspace.stop_tracking();
    let mut doomed = Vec::new();
    let mut visited = 0usize;
    let mut resume = 0;
    for (hash, bucket) in engine.keyspace.buckets_from(cursor) {
        if doomed.len() >= max || visited >= VISIT {
            resume = hash;
            break;
        }
        visited += bucket.len();
        doomed.extend(
            bucket
                .into_iter()
                .filter(|(key, _)| next.group_of(key) == Some(target))
                .map(|(key, _)| key.to_vec()),
        );
    }
    remove_keys(engine, &doomed);
    if let Some(out) = engine.layout.outgoing.as_mut() {
        out.purge_cursor = resume;
    }
    Ok(Reply::Array(vec![
        cursor_reply(resume),
        Reply::Int(i64::try_from(doomed.len()).unwrap_or(i64::MAX)),
    ]))
}

/// Which side of a reshard a `_SETTLE` or `_ABORT` is meant for: said in the entry,
/// not guessed from the group's state, so that a repeat, or one that arrives before
/// the group took part, cannot be read as the other side's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Target,
}

fn side(a: &Args<'_>) -> Result<Side> {
    let word = a.get(0)?;
    if word.eq_ignore_ascii_case(b"SOURCE") {
        Ok(Side::Source)
    } else if word.eq_ignore_ascii_case(b"TARGET") {
        Ok(Side::Target)
    } else {
        Err(EngineError::Syntax)
    }
}

/// `SHOAL._SETTLE SOURCE <T> <e>` (a source that switched and purged) or
/// `SHOAL._SETTLE TARGET <e>` (the target, once every old group was accepted or the
/// reshard aborted): the reshard is over for this group, every key it holds is shown.
pub(super) fn settle(engine: &mut Engine, a: &Args<'_>) -> Result<Reply> {
    a.arity(2, true)?;
    let side = side(a)?;
    match side {
        Side::Source => a.arity(3, false)?,
        Side::Target => a.arity(2, false)?,
    }
    let epoch = uint(a, a.len() - 1)?;
    if epoch < engine.layout.floor {
        return Ok(state(engine));
    }
    match side {
        Side::Source => {
            let target = uint(a, 1)?;
            if engine.layout.outgoing.is_none() {
                // Settled already (a repeat).
                engine.layout.floor = engine.layout.floor.max(epoch);
                return Ok(state(engine));
            }
            let out = outgoing_to(&mut engine.layout, target)?;
            if out.fenced.is_none() {
                return Err(refused(
                    "a source that has not switched ends its hand-over by _ABORT",
                ));
            }
            // Settled, a source shows every key it holds again: one it handed over and
            // still held would be counted twice. One pass over the keys, once a reshard.
            let next = out.next.clone();
            let left = engine
                .keyspace
                .buckets_from(0)
                .any(|(_, bucket)| bucket.iter().any(|(k, _)| next.group_of(k) == Some(target)));
            if left {
                return Err(refused(
                    "keys handed over are still here: _PURGE them first",
                ));
            }
            engine.keyspace.stop_tracking();
            engine.layout.outgoing = None;
        }
        Side::Target => {
            if let Some(inc) = &engine.layout.incoming {
                let pending: Vec<GroupId> = inc
                    .old
                    .groups()
                    .iter()
                    .filter(|g| !inc.accepted.contains_key(g))
                    .copied()
                    .collect();
                // Settled, the target shows every key it holds: copies from a group
                // that has not switched would be counted twice.
                if !inc.aborted && !pending.is_empty() {
                    return Err(refused(format!(
                        "groups {pending:?} have not switched to this group"
                    )));
                }
            }
            engine.layout.incoming = None;
        }
    }
    engine.layout.floor = engine.layout.floor.max(epoch);
    Ok(state(engine))
}

/// `SHOAL._ABORT TARGET <e> <run>`, then `SHOAL._ABORT SOURCE <T> <e>` on every source:
/// the reshard is given up while the target has accepted no source. The target goes
/// first, so an accept still in flight lands after its abort and is refused: the target
/// never owns anything, and a source may drop its fence (docs/resharding.md §5).
pub(super) fn abort(engine: &mut Engine, a: &Args<'_>) -> Result<Reply> {
    a.arity(3, false)?;
    let side = side(a)?;
    let epoch = match side {
        Side::Source => uint(a, 2)?,
        Side::Target => uint(a, 1)?,
    };
    if epoch < engine.layout.floor {
        return Ok(state(engine));
    }
    match side {
        Side::Source => {
            let target = uint(a, 1)?;
            // A source that never began (or aborted already) only learns the epoch.
            if engine.layout.outgoing.is_some() {
                outgoing_to(&mut engine.layout, target)?;
                engine.keyspace.stop_tracking();
                engine.layout.outgoing = None;
            }
        }
        Side::Target => {
            let run = uint(a, 2)?;
            if let Some(inc) = engine.layout.incoming.as_mut() {
                if run < inc.run {
                    return Err(refused(format!("run {run} is older than run {}", inc.run)));
                }
                if let Some(g) = inc.accepted.keys().next() {
                    return Err(refused(format!(
                        "group {g} has switched to this group: the reshard finishes forward"
                    )));
                }
                inc.run = run;
                inc.aborted = true;
                // Only copies are held before a source is accepted: routers send
                // clients' writes here only from the first accept on.
                let keys: Vec<Vec<u8>> = engine
                    .keyspace
                    .buckets_from(0)
                    .flat_map(|(_, bucket)| bucket.into_iter().map(|(k, _)| k.to_vec()))
                    .collect();
                remove_keys(engine, &keys);
            }
        }
    }
    engine.layout.floor = engine.layout.floor.max(epoch);
    Ok(state(engine))
}

/// Deletes `keys` through the keyspace (which records what a source still tracks) and
/// keeps the indexes exact.
fn remove_keys(engine: &mut Engine, keys: &[Vec<u8>]) {
    for key in keys {
        if let Some(old) = engine.keyspace.remove(key) {
            engine.indexes_changed(key, Some(&old.value), None);
        }
    }
}

/// `SHOAL._INCOMING <e1> <run> <old groups…>`: this new, empty group takes keys from
/// the old groups, showing each one's only once it has switched.
pub(super) fn incoming(engine: &mut Engine, a: &Args<'_>) -> Result<Reply> {
    a.arity(3, true)?;
    let epoch = uint(a, 0)?;
    let run = uint(a, 1)?;
    let old = Ring::new(groups(a, 2)?);
    if epoch < engine.layout.floor {
        return Ok(state(engine));
    }
    if engine.layout.outgoing.is_some() {
        return Err(refused("this group hands keys over itself"));
    }
    match engine.layout.incoming.as_mut() {
        // An aborted intake (emptied by its abort) starts afresh: the next attempt
        // to add a group reuses the id. Its run must be newer, so that a late entry of
        // the aborted attempt is refused by its run (coordinators number runs from the
        // reshard's first epoch: docs/resharding.md §5).
        Some(inc) if inc.aborted && run <= inc.run => {
            return Err(refused(format!(
                "run {run} is not newer than the aborted run {}",
                inc.run
            )));
        }
        Some(inc) if inc.aborted => {}
        Some(inc) => {
            if inc.old.groups() != old.groups() {
                return Err(refused("this group already takes keys from other groups"));
            }
            inc.run = inc.run.max(run);
            engine.layout.floor = engine.layout.floor.max(epoch);
            return Ok(state(engine));
        }
        None => {}
    }
    if !engine.keyspace.is_empty() {
        return Err(refused(
            "a group added by a reshard starts empty; this one holds keys",
        ));
    }
    engine.layout.incoming = Some(Incoming {
        old,
        accepted: BTreeMap::new(),
        run,
        aborted: false,
    });
    engine.layout.floor = epoch;
    Ok(state(engine))
}

/// The target's intake for coordinator run `run` from one of the old groups, or why
/// it refuses it.
fn intake(layout: &mut Layout, source: GroupId, run: u64) -> Result<&mut Incoming> {
    let Some(inc) = layout.incoming.as_mut() else {
        return Err(refused("this group takes no keys"));
    };
    if !inc.old.groups().contains(&source) {
        return Err(refused(format!("group {source} is not an old group")));
    }
    if run < inc.run {
        return Err(refused(format!("run {run} is older than run {}", inc.run)));
    }
    if inc.aborted {
        return Err(refused("the reshard was aborted"));
    }
    Ok(inc)
}

/// `SHOAL._IMPORT <g> <run> [FLUSH] <key> <dump> …`: copies of `g`'s keys (an empty dump,
/// or one already expired at the entry's time, deletes the key). All or nothing: every
/// key and dump is checked before anything changes.
pub(super) fn import(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(2, true)?;
    let source = uint(a, 0)?;
    let run = uint(a, 1)?;
    // By count, not by spelling: a first key may be called "flush".
    let flush = a.len() % 2 == 1;
    if flush && !a.get(2)?.eq_ignore_ascii_case(b"FLUSH") {
        return Err(EngineError::Syntax);
    }
    let pairs = a.rest(if flush { 3 } else { 2 });
    let inc = intake(&mut engine.layout, source, run)?;
    if inc.accepted.contains_key(&source) {
        return Err(refused(format!("group {source} has switched already")));
    }
    let mut entries: Vec<(&[u8], Option<Entry>)> = Vec::with_capacity(pairs.len() / 2);
    for pair in pairs.chunks_exact(2) {
        let (key, dump) = (pair[0], pair[1]);
        if inc.old.group_of(key) != Some(source) {
            return Err(refused(format!(
                "a key of group {:?} in an import from group {source}",
                inc.old.group_of(key)
            )));
        }
        let entry = if dump.is_empty() {
            None
        } else {
            let entry = load_entry(dump).map_err(|e| refused(format!("a bad dump: {e}")))?;
            entry.expires_at.is_none_or(|t| t > now).then_some(entry)
        };
        entries.push((key, entry));
    }
    inc.run = run;
    let old = inc.old.clone();
    if flush {
        let gone: Vec<Vec<u8>> = engine
            .keyspace
            .buckets_from(0)
            .flat_map(|(_, bucket)| bucket.into_iter().map(|(k, _)| k.to_vec()))
            .filter(|k| old.group_of(k) == Some(source))
            .collect();
        remove_keys(engine, &gone);
    }
    let applied = entries.len();
    for (key, entry) in entries {
        match entry {
            Some(entry) => super::strings::store(engine, key, entry),
            None => {
                if let Some(old) = engine.keyspace.remove(key) {
                    engine.indexes_changed(key, Some(&old.value), None);
                }
            }
        }
    }
    Ok(Reply::Int(i64::try_from(applied).unwrap_or(i64::MAX)))
}

/// `SHOAL._ACCEPT <g> <e> <run>`: `g` has switched at epoch `e`: its keys here are
/// shown from now on, and calls below `e` are refused.
pub(super) fn accept(engine: &mut Engine, a: &Args<'_>) -> Result<Reply> {
    a.arity(3, false)?;
    let source = uint(a, 0)?;
    let epoch = uint(a, 1)?;
    let run = uint(a, 2)?;
    let inc = intake(&mut engine.layout, source, run)?;
    match inc.accepted.get(&source) {
        Some(&e) if e == epoch => {}
        Some(&e) => {
            return Err(refused(format!(
                "group {source} switched at epoch {e}, not {epoch}"
            )))
        }
        None => {
            inc.accepted.insert(source, epoch);
        }
    }
    inc.run = run;
    engine.layout.floor = engine.layout.floor.max(epoch);
    Ok(state(engine))
}

#[cfg(test)]
#[path = "reshard_tests.rs"]
mod tests;
