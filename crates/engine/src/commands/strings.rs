//! Strings: GET/SET and friends, for completeness of the keyspace.

use super::{parse_int, Args};
use crate::error::{EngineError, Result};
use crate::keyspace::{Entry, Value};
use crate::reply::Reply;
use crate::Engine;

/// Replaces `key` with `entry`, keeping indexes exact.
pub(crate) fn store(engine: &mut Engine, key: &[u8], entry: Entry) {
    let indexed = engine.indexed(key);
    let new_value = indexed.then(|| entry.value.clone());
    let old = engine.keyspace.insert(key, entry);
    if indexed {
        engine.indexes_changed(key, old.as_ref().map(|e| &e.value), new_value.as_ref());
    }
}

pub(super) fn set(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(2, true)?;
    let key = a.get(0)?;
    let value = a.get(1)?.to_vec();
    let mut expires_at = None;
    let (mut nx, mut xx, mut keepttl) = (false, false, false);
    let mut i = 2;
    while i < a.len() {
        let opt = String::from_utf8_lossy(a.get(i)?).to_ascii_uppercase();
        match opt.as_str() {
            "NX" => nx = true,
            "XX" => xx = true,
            "KEEPTTL" => keepttl = true,
            "EX" | "PX" | "EXAT" | "PXAT" => {
                i += 1;
                let n = a.int(i)?;
                if n <= 0 {
                    return Err(EngineError::InvalidExpire("set".into()));
                }
                let n = n as u64;
                expires_at = Some(match opt.as_str() {
                    "EX" => now.saturating_add(n.saturating_mul(1000)),
                    "PX" => now.saturating_add(n),
                    "EXAT" => n.saturating_mul(1000),
                    _ => n,
                });
            }
            _ => return Err(EngineError::Syntax),
        }
        i += 1;
    }
    if nx && xx {
        return Err(EngineError::Syntax);
    }
    let existing = engine.keyspace.get(key, now);
    if (nx && existing.is_some()) || (xx && existing.is_none()) {
        return Ok(Reply::Null);
    }
    if keepttl {
        expires_at = existing.and_then(|e| e.expires_at);
    }
    store(
        engine,
        key,
        Entry {
            value: Value::Str(value),
            expires_at,
        },
    );
    Ok(Reply::Ok)
}

pub(super) fn mset(engine: &mut Engine, a: &Args<'_>, _now: u64) -> Result<Reply> {
    if a.len() < 2 || !a.len().is_multiple_of(2) {
        return Err(EngineError::Arity("mset".into()));
    }
    for pair in a.rest(0).chunks_exact(2) {
        store(
            engine,
            pair[0],
            Entry {
                value: Value::Str(pair[1].to_vec()),
                expires_at: None,
            },
        );
    }
    Ok(Reply::Ok)
}

/// How INCR, DECR, INCRBY and DECRBY get their step.
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
    Fixed(i64),
    Argument,
    NegatedArgument,
}

pub(super) fn incr_by(engine: &mut Engine, a: &Args<'_>, now: u64, step: Step) -> Result<Reply> {
    let by = match step {
        Step::Fixed(b) => {
            a.arity(1, false)?;
            b
        }
        Step::Argument => {
            a.arity(2, false)?;
            a.int(1)?
        }
        Step::NegatedArgument => {
            a.arity(2, false)?;
            a.int(1)?.checked_neg().ok_or(EngineError::Overflow)?
        }
    };
    let key = a.get(0)?;
    let (current, expires_at) = match engine.keyspace.get(key, now) {
        None => (0, None),
        Some(Entry {
            value: Value::Str(s),
            expires_at,
        }) => (parse_int(s)?, *expires_at),
        Some(_) => return Err(EngineError::WrongType),
    };
    let next = current.checked_add(by).ok_or(EngineError::Overflow)?;
    store(
        engine,
        key,
        Entry {
            value: Value::Str(next.to_string().into_bytes()),
            expires_at,
        },
    );
    Ok(Reply::Int(next))
}

pub(super) fn get(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, false)?;
    match engine.keyspace.get(a.get(0)?, now).map(|e| &e.value) {
        None => Ok(Reply::Null),
        Some(Value::Str(s)) => Ok(Reply::Bulk(s.clone())),
        Some(Value::Hash(_) | Value::Json(_)) => Err(EngineError::WrongType),
    }
}

pub(super) fn strlen(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, false)?;
    match engine.keyspace.get(a.get(0)?, now).map(|e| &e.value) {
        None => Ok(Reply::Int(0)),
        Some(Value::Str(s)) => Ok(Reply::Int(s.len() as i64)),
        Some(Value::Hash(_) | Value::Json(_)) => Err(EngineError::WrongType),
    }
}

pub(super) fn mget(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, true)?;
    Ok(Reply::Array(
        a.rest(0)
            .iter()
            .map(|k| match engine.keyspace.get(k, now).map(|e| &e.value) {
                Some(Value::Str(s)) => Reply::Bulk(s.clone()),
                Some(Value::Hash(_) | Value::Json(_)) | None => Reply::Null,
            })
            .collect(),
    ))
}
