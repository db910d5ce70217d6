//! FT.CREATE, FT.DROPINDEX, FT.SEARCH, FT.AGGREGATE and FT.INFO.

use std::time::{Duration, Instant};

use shoal_query::{
    aggregate::parse_aggregate, filter::parse_query, plan::bind, schema::parse_create,
    search::parse_search,
};

use super::Args;
use crate::error::{EngineError, Result};
use crate::reply::Reply;
use crate::search::SearchResults;
use crate::search_index::SearchIndex;
use crate::{Engine, ReadContext};

pub(super) fn create(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, true)?;
    let schema = parse_create(a.rest(0))?;
    if engine.indexes.contains_key(&schema.name) {
        return Err(EngineError::IndexExists(schema.name));
    }
    let name = schema.name.clone();
    let definition = a.rest(0).iter().map(|x| x.to_vec()).collect();
    let index = SearchIndex::create(schema, definition, &engine.keyspace, now)?;
    engine.indexes.insert(name, index);
    Ok(Reply::Ok)
}

pub(super) fn dropindex(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, true)?;
    let name = String::from_utf8_lossy(a.get(0)?).into_owned();
    let delete_docs = match a.rest(1) {
        [] => false,
        [flag] if flag.eq_ignore_ascii_case(b"DD") => true,
        [other, ..] => {
            return Err(EngineError::Query(
                shoal_query::QueryError::UnexpectedArgument(
                    String::from_utf8_lossy(other).into_owned(),
                ),
            ))
        }
    };
    let index = engine
        .indexes
        .remove(&name)
        .ok_or(EngineError::UnknownIndex(name))?;
    if delete_docs {
        let keys: Vec<Vec<u8>> = index
            .docs
            .all()
            .iter()
            .filter_map(|d| index.docs.key(d).map(<[u8]>::to_vec))
            .collect();
        for key in keys {
            super::keys::remove(engine, &key, now);
        }
    }
    Ok(Reply::Ok)
}

fn deadline(timeout_ms: Option<u64>) -> Option<Instant> {
    timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms))
}

/// Parses, binds and runs an FT.SEARCH; the typed result, for routers to merge, and
/// whether the request asked for NOCONTENT.
pub fn run_search<A: AsRef<[u8]>>(
    engine: &Engine,
    args: &[A],
    now: u64,
) -> Result<(SearchResults, bool)> {
    let request = parse_search(args)?;
    let index = engine
        .indexes
        .get(&request.index)
        .ok_or_else(|| EngineError::UnknownIndex(request.index.clone()))?;
    let parsed = parse_query(&request.query)?;
    let plan = bind(&index.schema, &parsed, &request.params)?;
    let results = crate::search::execute(
        index,
        &engine.keyspace,
        &request,
        &plan,
        now,
        deadline(request.timeout_ms),
    )?;
    Ok((results, request.nocontent))
}

pub(super) fn search(engine: &Engine, a: &Args<'_>, ctx: ReadContext) -> Result<Reply> {
    a.arity(2, true)?;
    let (results, nocontent) = run_search(engine, a.rest(0), ctx.now_ms)?;
    Ok(render_search(results, nocontent, ctx.resp3))
}

/// FT.SEARCH's reply: `[total, key, [field, value, ...], ...]` in RESP2, RediSearch's map
/// (`total_results`, `results` of `{id, extra_attributes, values}`) in RESP3.
pub fn render_search(results: SearchResults, nocontent: bool, resp3: bool) -> Reply {
    let total = results.total as i64;
    if resp3 {
        let rows = results
            .hits
            .into_iter()
            .map(|hit| {
                let mut row = vec![("id", Reply::Bulk(hit.key))];
                if !nocontent {
                    row.push((
                        "extra_attributes",
                        Reply::Map(
                            hit.fields
                                .into_iter()
                                .map(|(k, v)| (Reply::Bulk(k), Reply::Bulk(v)))
                                .collect(),
                        ),
                    ));
                }
                row.push(("values", Reply::Array(Vec::new())));
                Reply::map(row)
            })
            .collect();
        return Reply::map([
            ("attributes", Reply::Array(Vec::new())),
            ("warning", Reply::Array(Vec::new())),
            ("total_results", Reply::Int(total)),
            ("format", Reply::Simple("STRING".into())),
            ("results", Reply::Array(rows)),
        ]);
    }
    let mut out = Vec::with_capacity(1 + results.hits.len() * 2);
    out.push(Reply::Int(total));
    for hit in results.hits {
        out.push(Reply::Bulk(hit.key));
        if !nocontent {
            out.push(Reply::Array(
                hit.fields
                    .into_iter()
                    .flat_map(|(k, v)| [Reply::Bulk(k), Reply::Bulk(v)])
                    .collect(),
            ));
        }
    }
    Reply::Array(out)
}

pub(super) fn aggregate(engine: &Engine, a: &Args<'_>, ctx: ReadContext) -> Result<Reply> {
    a.arity(2, true)?;
    let request = parse_aggregate(a.rest(0))?;
    let index = engine
        .indexes
        .get(&request.index)
        .ok_or_else(|| EngineError::UnknownIndex(request.index.clone()))?;
    let rows = crate::aggregate::execute(
        index,
        &engine.keyspace,
        &request,
        ctx.now_ms,
        deadline(request.timeout_ms),
    )?;
    Ok(crate::aggregate::render(&rows, ctx.resp3))
}

pub(super) fn info(engine: &Engine, a: &Args<'_>, ctx: ReadContext) -> Result<Reply> {
    a.arity(1, false)?;
    let name = String::from_utf8_lossy(a.get(0)?).into_owned();
    let index = engine
        .indexes
        .get(&name)
        .ok_or(EngineError::UnknownIndex(name))?;
    Ok(crate::info::ft_info(index, ctx.resp3))
}
