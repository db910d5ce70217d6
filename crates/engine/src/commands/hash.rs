//! Hashes, the documents of ON HASH indexes.

use super::{parse_float, parse_int, Args};
use crate::error::{EngineError, Result};
use crate::keyspace::{Entry, HashValue, Value};
use crate::reply::Reply;
use crate::Engine;

/// Applies `change` to the hash at `key` (created empty if absent), keeping indexes
/// exact; an emptied hash is deleted, as in Redis.
fn modify<T>(
    engine: &mut Engine,
    key: &[u8],
    now: u64,
    change: impl FnOnce(&mut HashValue) -> Result<T>,
) -> Result<T> {
    let indexed = engine.indexed(key);
    if !indexed {
        // Nothing to keep exact: change the hash where it lies.
        return match engine.keyspace.get_mut(key, now) {
            Some(Entry {
                value: Value::Hash(h),
                ..
            }) => {
                let out = change(h)?;
                if h.is_empty() {
                    engine.keyspace.remove(key);
                }
                Ok(out)
            }
            Some(_) => Err(EngineError::WrongType),
            None => {
                let mut h = HashValue::new();
                let out = change(&mut h)?;
                if !h.is_empty() {
                    engine.keyspace.insert(
                        key,
                        Entry {
                            value: Value::Hash(h),
                            expires_at: None,
                        },
                    );
                }
                Ok(out)
            }
        };
    }
    let (mut hash, expires_at, old) = match engine.keyspace.get(key, now) {
        None => (HashValue::new(), None, None),
        Some(Entry {
            value: Value::Hash(h),
            expires_at,
        }) => (
            h.clone(),
            *expires_at,
            indexed.then(|| Value::Hash(h.clone())),
        ),
        Some(_) => return Err(EngineError::WrongType),
    };
    let out = change(&mut hash)?;
    if hash.is_empty() {
        engine.keyspace.remove(key);
        engine.indexes_changed(key, old.as_ref(), None);
        return Ok(out);
    }
    let new = Value::Hash(hash);
    let after = new.clone();
    engine.keyspace.insert(
        key,
        Entry {
            value: new,
            expires_at,
        },
    );
    engine.indexes_changed(key, old.as_ref(), Some(&after));
    Ok(out)
}

fn read<'e>(engine: &'e Engine, key: &[u8], now: u64) -> Result<Option<&'e HashValue>> {
    match engine.keyspace.get(key, now).map(|e| &e.value) {
        None => Ok(None),
        Some(Value::Hash(h)) => Ok(Some(h)),
        Some(Value::Str(_) | Value::Json(_)) => Err(EngineError::WrongType),
    }
}

pub(super) fn hset(engine: &mut Engine, a: &Args<'_>, now: u64, hmset: bool) -> Result<Reply> {
    if a.len() < 3 || a.len().is_multiple_of(2) {
        return Err(EngineError::Arity(a.name.to_ascii_lowercase()));
    }
    let key = a.get(0)?;
    let pairs = a.rest(1);
    let added = modify(engine, key, now, |h| {
        let mut added = 0;
        for pair in pairs.chunks_exact(2) {
            if h.insert(pair[0].to_vec(), pair[1].to_vec()).is_none() {
                added += 1;
            }
        }
        Ok(added)
    })?;
    Ok(if hmset { Reply::Ok } else { Reply::Int(added) })
}

pub(super) fn hsetnx(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(3, false)?;
    let (key, field, value) = (a.get(0)?, a.get(1)?, a.get(2)?);
    if read(engine, key, now)?.is_some_and(|h| h.contains_key(field)) {
        return Ok(Reply::Int(0));
    }
    modify(engine, key, now, |h| {
        h.insert(field.to_vec(), value.to_vec());
        Ok(())
    })?;
    Ok(Reply::Int(1))
}

pub(super) fn hdel(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(2, true)?;
    let key = a.get(0)?;
    if read(engine, key, now)?.is_none() {
        return Ok(Reply::Int(0));
    }
    let fields = a.rest(1);
    let removed = modify(engine, key, now, |h| {
        // One pass over the hash, whatever the number of fields named.
        let doomed: std::collections::HashSet<&[u8]> = fields.iter().copied().collect();
        let before = h.len();
        h.retain(|k, _| !doomed.contains(k.as_slice()));
        Ok(before - h.len())
    })?;
    Ok(Reply::Int(removed as i64))
}

/// `HDELIFEQ key field value`: deletes the field only if it holds exactly `value`; 1 if
/// it did. Internal (not in the server's command table): the cluster map's
/// compare-and-delete of an index definition, which must not take away a newer
/// definition of the same name (crates/cluster/src/meta.rs).
pub(super) fn hdel_if_equal(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(3, false)?;
    let (key, field, value) = (a.get(0)?, a.get(1)?, a.get(2)?);
    let holds =
        read(engine, key, now)?.is_some_and(|h| h.get(field).map(Vec::as_slice) == Some(value));
    if !holds {
        return Ok(Reply::Int(0));
    }
    modify(engine, key, now, |h| {
        // As HDEL does it: the other fields keep their order.
        h.shift_remove(field);
        Ok(())
    })?;
    Ok(Reply::Int(1))
}

pub(super) fn hincrby(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(3, false)?;
    let (key, field) = (a.get(0)?, a.get(1)?);
    let by = a.int(2)?;
    let next = modify(engine, key, now, |h| {
        let current = match h.get(field) {
            None => 0,
            Some(v) => parse_int(v).map_err(|_| EngineError::HashNotInteger)?,
        };
        let next = current.checked_add(by).ok_or(EngineError::Overflow)?;
        h.insert(field.to_vec(), next.to_string().into_bytes());
        Ok(next)
    })?;
    Ok(Reply::Int(next))
}

pub(super) fn hincrbyfloat(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(3, false)?;
    let (key, field) = (a.get(0)?, a.get(1)?);
    let by = parse_float(a.get(2)?)?;
    let text = modify(engine, key, now, |h| {
        let current = match h.get(field) {
            None => 0.0,
            Some(v) => parse_float(v).map_err(|_| EngineError::HashNotFloat)?,
        };
        let next = current + by;
        if !next.is_finite() {
            return Err(EngineError::Overflow);
        }
        // Redis prints with 17 significant digits, trimmed.
        let text = format_float17(next);
        h.insert(field.to_vec(), text.clone().into_bytes());
        Ok(text)
    })?;
    Ok(Reply::bulk(text))
}

/// Redis prints the shortest text that reads back as the same double.
fn format_float17(v: f64) -> String {
    format!("{v}")
}

pub(super) fn hget(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(2, false)?;
    Ok(read(engine, a.get(0)?, now)?
        .and_then(|h| h.get(a.get(1).ok()?))
        .map_or(Reply::Null, |v| Reply::Bulk(v.clone())))
}

pub(super) fn hmget(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(2, true)?;
    let hash = read(engine, a.get(0)?, now)?;
    Ok(Reply::Array(
        a.rest(1)
            .iter()
            .map(|f| {
                hash.and_then(|h| h.get(*f))
                    .map_or(Reply::Null, |v| Reply::Bulk(v.clone()))
            })
            .collect(),
    ))
}

pub(super) fn hgetall(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, false)?;
    Ok(Reply::Map(
        read(engine, a.get(0)?, now)?
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (Reply::Bulk(k.clone()), Reply::Bulk(v.clone())))
                    .collect()
            })
            .unwrap_or_default(),
    ))
}

pub(super) fn hlen(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, false)?;
    Ok(Reply::Int(
        read(engine, a.get(0)?, now)?.map_or(0, |h| h.len() as i64),
    ))
}

pub(super) fn hexists(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(2, false)?;
    let field = a.get(1)?;
    Ok(Reply::Int(i64::from(
        read(engine, a.get(0)?, now)?.is_some_and(|h| h.contains_key(field)),
    )))
}

pub(super) fn hkeys(engine: &Engine, a: &Args<'_>, now: u64, keys: bool) -> Result<Reply> {
    a.arity(1, false)?;
    Ok(Reply::Array(
        read(engine, a.get(0)?, now)?
            .map(|h| {
                h.iter()
                    .map(|(k, v)| Reply::Bulk(if keys { k.clone() } else { v.clone() }))
                    .collect()
            })
            .unwrap_or_default(),
    ))
}
