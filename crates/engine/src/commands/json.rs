//! JSON documents, the documents of ON JSON indexes: JSON.SET/GET/DEL/MGET/TYPE/
//! NUMINCRBY/ARRAPPEND with JSONPath through serde_json_path.
//!
//! Paths starting with `$` are JSONPath and answer with every match (as RedisJSON 2
//! does); legacy paths (`.a.b`, `a.b`, `.`) name one value and answer with it alone.
//! An object keeps its members in the order they were written, as RedisJSON does
//! (serde_json's `preserve_order`): a document reads back as it was stored.

use serde_json::Value as Json;
use serde_json_path::JsonPath;

use super::Args;
use crate::error::{EngineError, Result};
use crate::keyspace::{Entry, Value};
use crate::reply::Reply;
use crate::Engine;

/// A path as given, and whether it is legacy syntax.
struct Path {
    compiled: JsonPath,
    text: String,
    legacy: bool,
}

fn path(raw: &[u8]) -> Result<Path> {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (normalized, legacy) = if text.starts_with('$') {
        (text.clone(), false)
    } else if text == "." {
        ("$".to_owned(), true)
    } else if let Some(rest) = text.strip_prefix('.') {
        (format!("$.{rest}"), true)
    } else {
        (format!("$.{text}"), true)
    };
    let compiled = JsonPath::parse(&normalized)
        .map_err(|e| EngineError::Json(format!("invalid JSONPath `{text}`: {e}")))?;
    Ok(Path {
        compiled,
        text: normalized,
        legacy,
    })
}

fn root_path() -> Result<Path> {
    path(b".")
}

fn is_root(p: &Path) -> bool {
    p.text == "$"
}

fn document<'e>(engine: &'e Engine, key: &[u8], now: u64) -> Result<Option<&'e Json>> {
    match engine.keyspace.get(key, now).map(|e| &e.value) {
        None => Ok(None),
        Some(Value::Json(j)) => Ok(Some(j)),
        Some(Value::Str(_) | Value::Hash(_)) => Err(EngineError::WrongType),
    }
}

/// JSON pointers of every match, for mutating them.
fn pointers(p: &Path, doc: &Json) -> Vec<String> {
    p.compiled
        .query_located(doc)
        .locations()
        .map(|l| l.to_json_pointer())
        .collect()
}

/// Applies `change` to the document at `key`, keeping indexes exact.
fn modify<T>(
    engine: &mut Engine,
    key: &[u8],
    now: u64,
    change: impl FnOnce(Option<Json>) -> Result<(Option<Json>, T)>,
) -> Result<T> {
    let (current, expires_at) = match engine.keyspace.get(key, now) {
        None => (None, None),
        Some(Entry {
            value: Value::Json(j),
            expires_at,
        }) => (Some(j.clone()), *expires_at),
        Some(_) => return Err(EngineError::WrongType),
    };
    let old = current.clone().map(Value::Json);
    let (next, out) = change(current)?;
    let indexed = engine.indexed(key);
    match next {
        Some(doc) => {
            let value = Value::Json(doc);
            let after = indexed.then(|| value.clone());
            engine.keyspace.insert(key, Entry { value, expires_at });
            if indexed {
                engine.indexes_changed(key, old.as_ref(), after.as_ref());
            }
        }
        None => {
            if engine.keyspace.remove(key).is_some() && indexed {
                engine.indexes_changed(key, old.as_ref(), None);
            }
        }
    }
    Ok(out)
}

fn parse_json(raw: &[u8]) -> Result<Json> {
    serde_json::from_slice(raw)
        .map_err(|e| EngineError::Json(format!("expected value at line 1 column {}", e.column())))
}

/// Splits `$.a.b` / `$['b']` into its parent path and last member name, for creating a
/// member that does not exist yet.
fn parent_and_member(text: &str) -> Option<(String, String)> {
    if let Some(stripped) = text.strip_suffix("']").or_else(|| text.strip_suffix("\"]")) {
        let open = stripped.rfind(['\'', '"'])?;
        let parent = stripped[..open].strip_suffix('[')?;
        return Some((parent.to_owned(), stripped[open + 1..].to_owned()));
    }
    let dot = text.rfind('.')?;
    let member = &text[dot + 1..];
    if member.is_empty() || !member.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    Some((text[..dot].to_owned(), member.to_owned()))
}

pub(crate) fn set(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(3, true)?;
    let key = a.get(0)?;
    let p = path(a.get(1)?)?;
    let value = parse_json(a.get(2)?)?;
    let (mut nx, mut xx) = (false, false);
    for opt in a.rest(3) {
        match String::from_utf8_lossy(opt).to_ascii_uppercase().as_str() {
            "NX" => nx = true,
            "XX" => xx = true,
            _ => return Err(EngineError::Syntax),
        }
    }
    modify(engine, key, now, |doc| {
        let Some(mut doc) = doc else {
            if !is_root(&p) {
                return Err(EngineError::JsonNewAtRoot);
            }
            if xx {
                return Ok((None, Reply::Null));
            }
            return Ok((Some(value), Reply::Ok));
        };
        if is_root(&p) {
            if nx {
                return Ok((Some(doc), Reply::Null));
            }
            return Ok((Some(value), Reply::Ok));
        }
        let found = pointers(&p, &doc);
        if !found.is_empty() {
            if nx {
                return Ok((Some(doc), Reply::Null));
            }
            for pointer in found {
                if let Some(slot) = doc.pointer_mut(&pointer) {
                    *slot = value.clone();
                }
            }
            return Ok((Some(doc), Reply::Ok));
        }
        if xx {
            return Ok((Some(doc), Reply::Null));
        }
        let Some((parent, member)) = parent_and_member(&p.text) else {
            return Ok((Some(doc), Reply::Null));
        };
        let parent = path(parent.as_bytes())?;
        let mut created = false;
        for pointer in pointers(&parent, &doc) {
            if let Some(Json::Object(map)) = doc.pointer_mut(&pointer) {
                map.insert(member.clone(), value.clone());
                created = true;
            }
        }
        Ok((Some(doc), if created { Reply::Ok } else { Reply::Null }))
    })
}

fn serialize(values: &[&Json]) -> Vec<u8> {
    serde_json::to_vec(values).unwrap_or_default()
}

pub(crate) fn get(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, true)?;
    let Some(doc) = document(engine, a.get(0)?, now)? else {
        return Ok(Reply::Null);
    };
    // Formatting options of RedisJSON (INDENT, NEWLINE, SPACE, each with a value, and
    // the legacy NOESCAPE, which redis-py's `get(no_escape=True)` sends) are accepted
    // and ignored.
    let mut paths = Vec::new();
    let mut i = 1;
    while i < a.len() {
        let token = a.get(i)?;
        if ["INDENT", "NEWLINE", "SPACE"]
            .iter()
            .any(|o| token.eq_ignore_ascii_case(o.as_bytes()))
        {
            i += 2;
            continue;
        }
        if token.eq_ignore_ascii_case(b"NOESCAPE") {
            i += 1;
            continue;
        }
        paths.push((token, path(token)?));
        i += 1;
    }
    if paths.is_empty() {
        paths.push((b".".as_slice(), root_path()?));
    }
    if let [(_, only)] = paths.as_slice() {
        let found = only.compiled.query(doc).all();
        if only.legacy {
            return Ok(match found.first() {
                Some(v) => Reply::Bulk(serde_json::to_vec(v).unwrap_or_default()),
                None => Reply::Null,
            });
        }
        return Ok(Reply::Bulk(serialize(&found)));
    }
    // Several paths: an object keyed by each path as written. As in RedisJSON, when
    // every path is a legacy one each holds its first match (null when none); when
    // any is a JSONPath, each holds the array of all its matches.
    let legacy = paths.iter().all(|(_, p)| p.legacy);
    let mut out = serde_json::Map::new();
    for (given, p) in &paths {
        let found = p.compiled.query(doc).all();
        let value = if legacy {
            found.first().map_or(Json::Null, |v| (*v).clone())
        } else {
            Json::Array(found.into_iter().cloned().collect())
        };
        out.insert(String::from_utf8_lossy(given).into_owned(), value);
    }
    Ok(Reply::Bulk(serde_json::to_vec(&out).unwrap_or_default()))
}

pub(crate) fn mget(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(2, true)?;
    let p = path(a.get(a.len() - 1)?)?;
    let keys = &a.rest(0)[..a.len() - 1];
    Ok(Reply::Array(
        keys.iter()
            .map(|k| match document(engine, k, now) {
                Ok(Some(doc)) => {
                    let found = p.compiled.query(doc).all();
                    if p.legacy {
                        found.first().map_or(Reply::Null, |v| {
                            Reply::Bulk(serde_json::to_vec(v).unwrap_or_default())
                        })
                    } else {
                        Reply::Bulk(serialize(&found))
                    }
                }
                Ok(None) | Err(_) => Reply::Null,
            })
            .collect(),
    ))
}

fn type_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

pub(crate) fn type_of(engine: &Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, true)?;
    let Some(doc) = document(engine, a.get(0)?, now)? else {
        return Ok(Reply::Null);
    };
    let p = match a.rest(1).first() {
        Some(raw) => path(raw)?,
        None => root_path()?,
    };
    let found = p.compiled.query(doc).all();
    if p.legacy {
        return Ok(found
            .first()
            .map_or(Reply::Null, |v| Reply::Simple(type_name(v).into())));
    }
    Ok(Reply::Array(
        found.iter().map(|v| Reply::bulk(type_name(v))).collect(),
    ))
}

pub(crate) fn del(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, true)?;
    let key = a.get(0)?;
    let p = match a.rest(1).first() {
        Some(raw) => path(raw)?,
        None => root_path()?,
    };
    if document(engine, key, now)?.is_none() {
        return Ok(Reply::Int(0));
    }
    modify(engine, key, now, |doc| {
        let Some(mut doc) = doc else {
            return Ok((None, Reply::Int(0)));
        };
        if is_root(&p) {
            return Ok((None, Reply::Int(1)));
        }
        let mut found = pointers(&p, &doc);
        // Deepest and highest index first, so removing one does not shift another's
        // position; array indices compare as numbers ("/a/10" after "/a/9").
        found.sort_by(|a, b| pointer_order(b, a));
        let mut removed = 0;
        for pointer in found {
            let Some(split) = pointer.rfind('/') else {
                continue;
            };
            let (parent, last) = (&pointer[..split], &pointer[split + 1..]);
            let last = last.replace("~1", "/").replace("~0", "~");
            match doc.pointer_mut(parent) {
                Some(Json::Object(map)) => {
                    // Shifted out, not swapped: the members keep their order.
                    if map.shift_remove(&last).is_some() {
                        removed += 1;
                    }
                }
                Some(Json::Array(items)) => {
                    if let Ok(i) = last.parse::<usize>() {
                        if i < items.len() {
                            items.remove(i);
                            removed += 1;
                        }
                    }
                }
                Some(_) | None => {}
            }
        }
        Ok((Some(doc), Reply::Int(removed)))
    })
}

/// Orders JSON pointers segment by segment, numeric segments as numbers.
fn pointer_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut x, mut y) = (a.split('/'), b.split('/'));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(p), Some(q)) => {
                let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    _ => p.cmp(q),
                };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

pub(crate) fn numincrby(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(3, false)?;
    let key = a.get(0)?;
    let p = path(a.get(1)?)?;
    let by = super::parse_float(a.get(2)?)?;
    modify(engine, key, now, |doc| {
        let Some(mut doc) = doc else {
            return Err(EngineError::Json(
                "could not perform this operation on a key that doesn't exist".into(),
            ));
        };
        let mut results = Vec::new();
        for pointer in pointers(&p, &doc) {
            match doc.pointer_mut(&pointer) {
                Some(slot @ Json::Number(_)) => {
                    let current = slot.as_f64().unwrap_or(0.0);
                    let both_int = slot.is_i64() && by.fract() == 0.0;
                    let next = current + by;
                    if !next.is_finite() {
                        return Err(EngineError::Json("result is an infinite number".into()));
                    }
                    *slot = if both_int && next.abs() < 9e15 {
                        Json::from(next as i64)
                    } else {
                        serde_json::Number::from_f64(next).map_or(Json::Null, Json::Number)
                    };
                    results.push(slot.clone());
                }
                Some(_) | None => results.push(Json::Null),
            }
        }
        let reply = if p.legacy {
            match results.first() {
                Some(Json::Null) | None => {
                    return Err(EngineError::Json(
                        "Path does not exist or is not a number".into(),
                    ))
                }
                Some(v) => Reply::Bulk(serde_json::to_vec(v).unwrap_or_default()),
            }
        } else {
            Reply::Bulk(serde_json::to_vec(&results).unwrap_or_default())
        };
        Ok((Some(doc), reply))
    })
}

pub(crate) fn arrappend(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(3, true)?;
    let key = a.get(0)?;
    let p = path(a.get(1)?)?;
    let values = a
        .rest(2)
        .iter()
        .map(|v| parse_json(v))
        .collect::<Result<Vec<Json>>>()?;
    modify(engine, key, now, |doc| {
        let Some(mut doc) = doc else {
            return Err(EngineError::Json(
                "could not perform this operation on a key that doesn't exist".into(),
            ));
        };
        let mut lengths = Vec::new();
        for pointer in pointers(&p, &doc) {
            match doc.pointer_mut(&pointer) {
                Some(Json::Array(items)) => {
                    items.extend(values.iter().cloned());
                    lengths.push(Reply::Int(items.len() as i64));
                }
                Some(_) | None => lengths.push(Reply::Null),
            }
        }
        let reply = if p.legacy {
            lengths.into_iter().next().unwrap_or(Reply::Null)
        } else {
            Reply::Array(lengths)
        };
        Ok((Some(doc), reply))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_order_numerically() {
        let mut p = vec!["/a/9", "/a/10", "/a/2", "/b"];
        p.sort_by(|a, b| pointer_order(b, a));
        assert_eq!(p, vec!["/b", "/a/10", "/a/9", "/a/2"]);
    }

    #[test]
    fn parent_and_member_split() {
        assert_eq!(parent_and_member("$.a.b"), Some(("$.a".into(), "b".into())));
        assert_eq!(
            parent_and_member("$['x y']"),
            Some(("$".into(), "x y".into()))
        );
        assert_eq!(parent_and_member("$.a[0]"), None);
    }
}
