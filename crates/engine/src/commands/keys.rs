//! Commands over keys of any type: DEL, EXISTS, TYPE, expiry, KEYS, SCAN, FLUSHALL.

use super::Args;
use crate::error::{EngineError, Result};
use crate::keyspace::Keyspace;
use crate::reply::Reply;
use crate::search_index::SearchIndex;
use crate::Engine;

/// Removes `key`, keeping indexes exact; whether it existed.
pub(crate) fn remove(engine: &mut Engine, key: &[u8], now: u64) -> bool {
    if engine.keyspace.get(key, now).is_none() {
        return false;
    }
    match engine.keyspace.remove(key) {
        Some(old) => {
            engine.indexes_changed(key, Some(&old.value), None);
            true
        }
        None => false,
    }
}

pub(super) fn del(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, true)?;
    let removed = a.rest(0).iter().filter(|k| remove(engine, k, now)).count();
    Ok(Reply::Int(removed as i64))
}

/// EXPIRE and friends. `unit` is 1000 for seconds; `absolute` for the *AT forms.
pub(super) fn expire(
    engine: &mut Engine,
    a: &Args<'_>,
    now: u64,
    unit: i64,
    absolute: bool,
) -> Result<Reply> {
    a.arity(2, true)?;
    let key = a.get(0)?;
    let amount = a.int(1)?;
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in a.rest(2) {
        match String::from_utf8_lossy(opt).to_ascii_uppercase().as_str() {
            "NX" => nx = true,
            "XX" => xx = true,
            "GT" => gt = true,
            "LT" => lt = true,
            _ => return Err(EngineError::Syntax),
        }
    }
    let millis = amount
        .checked_mul(unit)
        .ok_or_else(|| EngineError::InvalidExpire(a.name.to_ascii_lowercase()))?;
    let at = if absolute {
        millis
    } else {
        (now as i64)
            .checked_add(millis)
            .ok_or_else(|| EngineError::InvalidExpire(a.name.to_ascii_lowercase()))?
    };
    let Some(entry) = engine.keyspace.get(key, now) else {
        return Ok(Reply::Int(0));
    };
    let current = entry.expires_at;
    let allowed = match current {
        None => !xx && !gt,
        Some(t) => !nx && (!gt || at > t as i64) && (!lt || at < t as i64),
    };
    if !allowed {
        return Ok(Reply::Int(0));
    }
    if at <= now as i64 {
        remove(engine, key, now);
    } else {
        engine.keyspace.set_expiry(key, Some(at as u64));
    }
    Ok(Reply::Int(1))
}

pub(super) fn persist(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, false)?;
    let key = a.get(0)?;
    match engine.keyspace.get(key, now) {
        Some(e) if e.expires_at.is_some() => {
            engine.keyspace.set_expiry(key, None);
            Ok(Reply::Int(1))
        }
        Some(_) | None => Ok(Reply::Int(0)),
    }
}

/// Empties the keyspace; indexes stay defined and become empty.
pub(super) fn flushall(engine: &mut Engine, a: &Args<'_>) -> Result<Reply> {
    for opt in a.rest(0) {
        match String::from_utf8_lossy(opt).to_ascii_uppercase().as_str() {
            "SYNC" | "ASYNC" => {}
            _ => return Err(EngineError::Syntax),
        }
    }
    // A group taking keys in a reshard holds copies it does not own yet: those are
    // flushed by their source (its own FLUSHALL reaches them as a FLUSH import), not
    // here, or a write acknowledged by the source after its flush would be lost.
    if engine.layout.incoming.is_some() {
        let owned: Vec<Vec<u8>> = engine
            .keyspace
            .buckets_from(0)
            .flat_map(|(_, bucket)| bucket.into_iter().map(|(k, _)| k.to_vec()))
            .filter(|k| engine.layout.visible(k))
            .collect();
        for key in owned {
            if let Some(old) = engine.keyspace.remove(&key) {
                engine.indexes_changed(&key, Some(&old.value), None);
            }
        }
        return Ok(Reply::Ok);
    }
    engine.keyspace.clear();
    let empty = Keyspace::new();
    let names: Vec<String> = engine.indexes.keys().cloned().collect();
    for name in names {
        if let Some(index) = engine.indexes.remove(&name) {
            let fresh = SearchIndex::create(
                index.schema.clone(),
                index.definition.clone(),
                index.generation,
                &empty,
                0,
            )?;
            engine.indexes.insert(name, fresh);
        }
    }
    Ok(Reply::Ok)
}

pub(super) fn exists(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, true)?;
    let n = a
        .rest(0)
        .iter()
        .filter(|k| engine.keyspace.get(k, now).is_some())
        .count();
    Ok(Reply::Int(n as i64))
}

pub(super) fn type_of(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, false)?;
    Ok(Reply::Simple(
        engine
            .keyspace
            .get(a.get(0)?, now)
            .map_or("none", |e| e.value.type_name())
            .to_owned(),
    ))
}

/// TTL in `unit` milliseconds, rounded as Redis rounds (-2 missing, -1 no expiry).
pub(super) fn ttl(engine: &Engine, a: &Args<'_>, now: u64, unit: u64) -> Result<Reply> {
    a.arity(1, false)?;
    Ok(Reply::Int(match engine.keyspace.get(a.get(0)?, now) {
        None => -2,
        Some(e) => match e.expires_at {
            None => -1,
            Some(t) => {
                let left = t.saturating_sub(now);
                ((left + unit / 2) / unit) as i64
            }
        },
    }))
}

/// KEYS's and SCAN MATCH's pattern: Redis's glob over the key's bytes, and a bare `*`
/// every key, the empty one included (which the glob alone would leave out), as
/// Redis's KEYS and SCAN take it.
fn matcher(pattern: &[u8]) -> impl Fn(&[u8]) -> bool + '_ {
    move |key| pattern == b"*" || shoal_resp::glob::matches(pattern, key)
}

pub(super) fn keys(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, false)?;
    let pattern = matcher(a.get(0)?);
    Ok(Reply::Array(
        engine
            .keyspace
            .iter(now)
            .filter(|(k, _)| engine.layout.visible(k))
            .filter(|(k, _)| pattern(k))
            .map(|(k, _)| Reply::Bulk(k.to_vec()))
            .collect(),
    ))
}

pub(super) fn scan(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, true)?;
    let cursor: u64 = std::str::from_utf8(a.get(0)?)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(EngineError::InvalidCursor)?;
    let mut pattern = None;
    let mut count = 10usize;
    let mut type_filter = None;
    let mut i = 1;
    while i < a.len() {
        let opt = String::from_utf8_lossy(a.get(i)?).to_ascii_uppercase();
        let value = a.get(i + 1).map_err(|_| EngineError::Syntax)?;
        match opt.as_str() {
            "MATCH" => pattern = Some(matcher(value)),
            "COUNT" => {
                count = super::parse_int(value)
                    .ok()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| *n >= 1)
                    .ok_or(EngineError::Syntax)?
            }
            "TYPE" => type_filter = Some(String::from_utf8_lossy(value).to_ascii_lowercase()),
            _ => return Err(EngineError::Syntax),
        }
        i += 2;
    }
    let (next, found) = engine.keyspace.scan(cursor, count, now);
    let keys = found
        .into_iter()
        .filter(|k| engine.layout.visible(k))
        .filter(|k| pattern.as_ref().is_none_or(|p| p(k)))
        .filter(|k| {
            type_filter.as_ref().is_none_or(|t| {
                engine
                    .keyspace
                    .get(k, now)
                    .is_some_and(|e| e.value.type_name().eq_ignore_ascii_case(t))
            })
        })
        .map(|k| Reply::Bulk(k.to_vec()))
        .collect();
    Ok(Reply::Array(vec![
        Reply::bulk(next.to_string()),
        Reply::Array(keys),
    ]))
}
