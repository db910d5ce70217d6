//! Command dispatch: a write goes to [`execute`] (inside `apply`), a read to [`read`].
//!
//! Each submodule implements one family; all of them return `Result<Reply>` and the
//! error's text is the wire text. Arity is checked here as well as in the server's
//! command table, so a malformed log entry can never index out of bounds.

pub(crate) mod ft;
mod hash;
mod json;
pub(crate) mod keys;
mod reshard;
mod strings;

use crate::error::{EngineError, Result};
use crate::reply::Reply;
use crate::{Engine, ReadContext};

/// The command's arguments after its name, with arity already checked.
pub(crate) struct Args<'a> {
    name: &'a str,
    items: &'a [&'a [u8]],
}

impl<'a> Args<'a> {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn get(&self, i: usize) -> Result<&'a [u8]> {
        self.items
            .get(i)
            .copied()
            .ok_or_else(|| EngineError::Arity(self.name.to_ascii_lowercase()))
    }

    fn rest(&self, from: usize) -> &'a [&'a [u8]] {
        self.items.get(from..).unwrap_or_default()
    }

    fn int(&self, i: usize) -> Result<i64> {
        parse_int(self.get(i)?)
    }

    /// Exactly `n` arguments, or at least `n` when `at_least`.
    fn arity(&self, n: usize, at_least: bool) -> Result<()> {
        let ok = if at_least {
            self.len() >= n
        } else {
            self.len() == n
        };
        if ok {
            Ok(())
        } else {
            Err(EngineError::Arity(self.name.to_ascii_lowercase()))
        }
    }
}

pub(crate) fn parse_int(bytes: &[u8]) -> Result<i64> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(EngineError::NotInteger)
}

pub(crate) fn parse_float(bytes: &[u8]) -> Result<f64> {
    shoal_query::args::parse_f64(bytes).ok_or(EngineError::NotFloat)
}

/// The command name upper-cased into `buf` (no allocation on the hot path); empty for
/// names no command has.
fn upper<'b>(name: &[u8], buf: &'b mut [u8; 32]) -> &'b str {
    let Some(dst) = buf.get_mut(..name.len()) else {
        return "";
    };
    for (d, s) in dst.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    std::str::from_utf8(dst).unwrap_or("")
}

/// A command's arguments as slices, on the stack for the usual few: this runs for every
/// command of every pipeline. Sixteen covers an FT.SEARCH with PARAMS, RETURN and
/// DIALECT (twelve), which spilled to the heap at eight.
pub(crate) fn arg_refs<A: AsRef<[u8]>>(args: &[A]) -> smallvec::SmallVec<[&[u8]; 16]> {
    args.iter().map(AsRef::as_ref).collect()
}

/// Runs a command inside `apply`: writes change state; reads (inside a transaction)
/// answer from the state as it is at that point of the batch.
pub(crate) fn execute(engine: &mut Engine, args: &[Vec<u8>], now: u64, resp3: bool) -> Reply {
    let refs = arg_refs(args);
    let Some((first, items)) = refs.split_first() else {
        return Reply::err("empty command");
    };
    let mut buf = [0u8; 32];
    let name = upper(first, &mut buf);
    let a = Args { name, items };
    let result = match name {
        "SET" => strings::set(engine, &a, now),
        "MSET" => strings::mset(engine, &a, now),
        "INCR" => strings::incr_by(engine, &a, now, strings::Step::Fixed(1)),
        "DECR" => strings::incr_by(engine, &a, now, strings::Step::Fixed(-1)),
        "INCRBY" => strings::incr_by(engine, &a, now, strings::Step::Argument),
        "DECRBY" => strings::incr_by(engine, &a, now, strings::Step::NegatedArgument),
        "DEL" | "UNLINK" => keys::del(engine, &a, now),
        "EXPIRE" => keys::expire(engine, &a, now, 1000, false),
        "PEXPIRE" => keys::expire(engine, &a, now, 1, false),
        "EXPIREAT" => keys::expire(engine, &a, now, 1000, true),
        "PEXPIREAT" => keys::expire(engine, &a, now, 1, true),
        "PERSIST" => keys::persist(engine, &a, now),
        "FLUSHALL" | "FLUSHDB" => keys::flushall(engine, &a),
        "HSET" | "HMSET" => hash::hset(engine, &a, now, name == "HMSET"),
        "HSETNX" => hash::hsetnx(engine, &a, now),
        "HDEL" => hash::hdel(engine, &a, now),
        "HDELIFEQ" => hash::hdel_if_equal(engine, &a, now),
        "HINCRBY" => hash::hincrby(engine, &a, now),
        "HINCRBYFLOAT" => hash::hincrbyfloat(engine, &a, now),
        "JSON.SET" => json::set(engine, &a, now),
        "JSON.DEL" | "JSON.FORGET" => json::del(engine, &a, now),
        "JSON.NUMINCRBY" => json::numincrby(engine, &a, now),
        "JSON.ARRAPPEND" => json::arrappend(engine, &a, now),
        "FT.CREATE" => ft::create(engine, &a, now),
        "FT._CREATE" => ft::create_with_generation(engine, &a, now),
        "FT._DROPIF" => ft::drop_if_generation(engine, &a, now),
        "FT.DROPINDEX" | "FT.DROP" => ft::dropindex(engine, &a, now),
        "SHOAL._BEGIN" => reshard::begin(engine, &a),
        "SHOAL._FENCE" => reshard::fence(engine, &a),
        "SHOAL._PURGE" => reshard::purge(engine, &a),
        "SHOAL._SETTLE" => reshard::settle(engine, &a),
        "SHOAL._ABORT" => reshard::abort(engine, &a),
        "SHOAL._INCOMING" => reshard::incoming(engine, &a),
        "SHOAL._IMPORT" => reshard::import(engine, &a, now),
        "SHOAL._ACCEPT" => reshard::accept(engine, &a),
        _ => {
            // A read inside a transaction sees every write before it.
            engine.flush_vectors();
            return read(
                engine,
                &refs,
                ReadContext {
                    now_ms: now,
                    resp3,
                    in_apply: true,
                },
            );
        }
    };
    result.unwrap_or_else(|e| Reply::Error(e.to_string()))
}

/// Whether `apply` changes state for this command (the server sends these through the
/// log; everything else is a read).
pub fn is_write(name: &str) -> bool {
    matches!(
        name.to_ascii_uppercase().as_str(),
        "SET"
            | "MSET"
            | "INCR"
            | "DECR"
            | "INCRBY"
            | "DECRBY"
            | "DEL"
            | "UNLINK"
            | "EXPIRE"
            | "PEXPIRE"
            | "EXPIREAT"
            | "PEXPIREAT"
            | "PERSIST"
            | "FLUSHALL"
            | "FLUSHDB"
            | "HSET"
            | "HMSET"
            | "HSETNX"
            | "HDEL"
            | "HDELIFEQ"
            | "HINCRBY"
            | "HINCRBYFLOAT"
            | "JSON.SET"
            | "JSON.DEL"
            | "JSON.FORGET"
            | "JSON.NUMINCRBY"
            | "JSON.ARRAPPEND"
            | "FT.CREATE"
            | "FT._CREATE"
            | "FT._DROPIF"
            | "FT.DROPINDEX"
            | "FT.DROP"
            | "SHOAL._BEGIN"
            | "SHOAL._FENCE"
            | "SHOAL._PURGE"
            | "SHOAL._SETTLE"
            | "SHOAL._ABORT"
            | "SHOAL._INCOMING"
            | "SHOAL._IMPORT"
            | "SHOAL._ACCEPT"
    )
}

/// Answers a read.
pub(crate) fn read(engine: &Engine, args: &[&[u8]], ctx: ReadContext) -> Reply {
    let Some((first, items)) = args.split_first() else {
        return Reply::err("empty command");
    };
    let mut buf = [0u8; 32];
    let name = upper(first, &mut buf);
    let a = Args { name, items };
    let now = ctx.now_ms;
    let result = match name {
        "GET" => strings::get(engine, &a, now),
        "MGET" => strings::mget(engine, &a, now),
        "STRLEN" => strings::strlen(engine, &a, now),
        "EXISTS" => keys::exists(engine, &a, now),
        "TYPE" => keys::type_of(engine, &a, now),
        "TTL" => keys::ttl(engine, &a, now, 1000),
        "PTTL" => keys::ttl(engine, &a, now, 1),
        "KEYS" => keys::keys(engine, &a, now),
        "SCAN" => keys::scan(engine, &a, now),
        "DBSIZE" => Ok(Reply::Int(engine.dbsize(now) as i64)),
        "HGET" => hash::hget(engine, &a, now),
        "HMGET" => hash::hmget(engine, &a, now),
        "HGETALL" => hash::hgetall(engine, &a, now),
        "HLEN" => hash::hlen(engine, &a, now),
        "HEXISTS" => hash::hexists(engine, &a, now),
        "HKEYS" => hash::hkeys(engine, &a, now, true),
        "HVALS" => hash::hkeys(engine, &a, now, false),
        "JSON.GET" => json::get(engine, &a, now),
        "JSON.MGET" => json::mget(engine, &a, now),
        "JSON.TYPE" => json::type_of(engine, &a, now),
        "FT.SEARCH" => ft::search(engine, &a, ctx),
        "FT.AGGREGATE" => ft::aggregate(engine, &a, ctx),
        "FT.INFO" => ft::info(engine, &a, ctx),
        "FT._LIST" => Ok(Reply::Array(
            engine.index_names().map(Reply::bulk).collect(),
        )),
        "FT._GENERATIONS" => Ok(ft::generations(engine)),
        "SHOAL._EXPORT" => reshard::export(engine, &a, now),
        "SHOAL._CHANGES" => reshard::changes(engine, &a, now),
        "SHOAL._LAYOUT" => Ok(reshard::state(engine)),
        _ => Err(EngineError::UnknownCommand(
            String::from_utf8_lossy(first).to_ascii_lowercase(),
        )),
    };
    result.unwrap_or_else(|e| Reply::Error(e.to_string()))
}
