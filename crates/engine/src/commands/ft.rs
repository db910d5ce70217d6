//! FT.CREATE, FT.DROPINDEX, FT.SEARCH, FT.AGGREGATE and FT.INFO.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shoal_query::{
    aggregate::parse_aggregate, plan::bind, schema::parse_create, search::parse_search,
};

use super::Args;
use crate::error::{EngineError, Result};
use crate::reply::Reply;
use crate::search::{HitSink, SearchResults};
use crate::search_index::SearchIndex;
use crate::{Engine, ReadContext};

pub(super) fn create(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(1, true)?;
    create_generation(engine, a.rest(0), 0, Existing::Keep, now)
}

/// What an FT.CREATE carrying a generation does to an index of the same name that has
/// another generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// Leave it and answer "already exists" (plain FT.CREATE; the meta leader's
    /// reconciler, whose create may be older than the map by the time it lands).
    Keep,
    /// Drop it (documents stay) and create this one: a router's FT.CREATE, sent only
    /// after the cluster map committed this generation, so the other one is a leftover.
    Replace,
}

/// `FT._CREATE <generation> KEEP|REPLACE <FT.CREATE arguments>`: a router's FT.CREATE
/// in a cluster, carrying the generation the cluster map gave the definition, so that
/// a leftover of an earlier definition of the name can be told from this one
/// (docs/consistency.md, "Index definitions"). Not in the server's command table:
/// clients cannot send it.
pub(super) fn create_with_generation(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(3, true)?;
    let generation = generation_arg(a.get(0)?)?;
    let existing = match a.get(1)? {
        m if m.eq_ignore_ascii_case(b"KEEP") => Existing::Keep,
        m if m.eq_ignore_ascii_case(b"REPLACE") => Existing::Replace,
        other => {
            return Err(EngineError::Query(
                shoal_query::QueryError::UnexpectedArgument(
                    String::from_utf8_lossy(other).into_owned(),
                ),
            ))
        }
    };
    create_generation(engine, a.rest(2), generation, existing, now)
}

/// | an index of the name          | `existing` | result                        |
/// |-------------------------------|------------|-------------------------------|
/// | none                          | any        | created                       |
/// | same generation               | any        | "already exists" (idempotent) |
/// | another generation            | `Keep`     | "already exists"              |
/// | another generation            | `Replace`  | the old one dropped, created  |
///
/// Generation 0 is a plain FT.CREATE's: two plain creates of a name are the same
/// generation, so the second is refused as Redis refuses it.
fn create_generation(
    engine: &mut Engine,
    args: &[&[u8]],
    generation: u64,
    existing: Existing,
    now: u64,
) -> Result<Reply> {
    let schema = parse_create(args)?;
    if let Some(old) = engine.indexes.get(&schema.name) {
        match existing {
            Existing::Replace if old.generation != generation => {}
            Existing::Replace | Existing::Keep => {
                return Err(EngineError::IndexExists(schema.name))
            }
        }
    }
    let name = schema.name.clone();
    let definition = args.iter().map(|x| x.to_vec()).collect();
    // Built before the old one goes: a definition the vector index refuses leaves the
    // old one in place.
    let index = SearchIndex::create(schema, definition, generation, &engine.keyspace, now)?;
    engine.indexes.insert(name, index);
    Ok(Reply::Ok)
}

/// `FT._DROPIF <name> <generation> [DD]`: FT.DROPINDEX, but only if the index is still
/// that generation; otherwise the error FT.DROPINDEX gives for a name it does not know.
/// A router's FT.DROPINDEX and the meta leader's removal of leftovers use it, so that a
/// definition created since they looked is never touched.
pub(super) fn drop_if_generation(engine: &mut Engine, a: &Args<'_>, now: u64) -> Result<Reply> {
    a.arity(2, true)?;
    let name = String::from_utf8_lossy(a.get(0)?).into_owned();
    let generation = generation_arg(a.get(1)?)?;
    let matches = engine
        .indexes
        .get(&name)
        .is_some_and(|index| index.generation == generation);
    if !matches {
        return Err(EngineError::UnknownIndex(name));
    }
    let mut rest: Vec<&[u8]> = vec![a.get(0)?];
    rest.extend_from_slice(a.rest(2));
    dropindex(
        engine,
        &Args {
            name: a.name,
            items: &rest,
        },
        now,
    )
}

/// `FT._GENERATIONS`: every index's name and generation, flattened.
pub(super) fn generations(engine: &Engine) -> Reply {
    Reply::Array(
        engine
            .indexes
            .iter()
            .flat_map(|(name, index)| {
                [
                    Reply::bulk(name.as_bytes()),
                    Reply::bulk(index.generation.to_string().into_bytes()),
                ]
            })
            .collect(),
    )
}

fn generation_arg(bytes: &[u8]) -> Result<u64> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(EngineError::NotInteger)
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
        // Every key the index covers, whether or not backfill has reached it yet: what
        // DD deletes must not depend on how far a replica's backfill got.
        let keys: Vec<Vec<u8>> = engine
            .keyspace
            .iter(0)
            .filter(|(key, entry)| {
                index.schema.covers(key)
                    && crate::search_index::type_matches(index.schema.key_type, &entry.value)
            })
            .map(|(key, _)| key.to_vec())
            .collect();
        for key in keys {
            super::keys::remove(engine, &key, now);
        }
    }
    Ok(Reply::Ok)
}

fn index_named<'e>(engine: &'e Engine, name: &str) -> Result<&'e crate::search_index::SearchIndex> {
    engine
        .indexes
        .get(name)
        .ok_or_else(|| EngineError::UnknownIndex(name.to_owned()))
}

fn deadline(timeout_ms: Option<u64>, in_apply: bool) -> Option<Instant> {
    if in_apply {
        return None;
    }
    timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms))
}

/// Parses, binds and runs an FT.SEARCH; the typed result, for routers to merge, and
/// whether the request asked for NOCONTENT. `window`: a shard's part of a cluster-wide
/// search (see `search::merge`); `None` pages by the request's LIMIT.
pub fn run_search<A: AsRef<[u8]>>(
    engine: &Engine,
    args: &[A],
    ctx: ReadContext,
    window: Option<usize>,
) -> Result<(SearchResults, bool)> {
    let (request, index, parsed) = parse_for(engine, args)?;
    run_parsed(engine, index, &request, &parsed, ctx, window, None)
}

/// An FT.SEARCH's arguments, its index and its query, errors in the order the command
/// reports them (the arguments, then an unknown index, then the query).
fn parse_for<'e, A: AsRef<[u8]>>(
    engine: &'e Engine,
    args: &[A],
) -> Result<(
    shoal_query::SearchRequest,
    &'e SearchIndex,
    std::sync::Arc<shoal_query::ParsedQuery>,
)> {
    let request = parse_search(args)?;
    let index = index_named(engine, &request.index)?;
    let parsed = crate::query_cache::parse(&request.query)?;
    Ok((request, index, parsed))
}

/// An FT.SEARCH's arguments and query parsed once, for the parts of one search that
/// run on this node's replicas of several groups: parsing is a tenth of a part's own
/// work, and it depends on the arguments alone (binding, which needs the index's
/// schema, stays with each part).
#[derive(Debug)]
pub struct PreparedSearch {
    request: shoal_query::SearchRequest,
    /// Kept as it came out: a bad query is reported after an unknown index, as
    /// [`run_search`] orders its errors.
    query: std::result::Result<std::sync::Arc<shoal_query::ParsedQuery>, shoal_query::QueryError>,
    /// The KNN neighbours the parts returned so far (`crate::search::visit`).
    bar: shoal_index::SharedBound,
}

impl PreparedSearch {
    /// From FT.SEARCH's arguments as `shoal_query::search::parse_search` gave them
    /// (arguments that do not parse are not prepared: each part refuses them itself).
    pub fn from_request(request: shoal_query::SearchRequest) -> Self {
        let query = crate::query_cache::parse(&request.query);
        PreparedSearch {
            request,
            query,
            bar: shoal_index::SharedBound::new(),
        }
    }
}

/// [`run_search`] of a search parsed before.
pub fn run_prepared(
    engine: &Engine,
    prepared: &PreparedSearch,
    ctx: ReadContext,
    window: Option<usize>,
) -> Result<(SearchResults, bool)> {
    let request = &prepared.request;
    let index = index_named(engine, &request.index)?;
    let parsed = prepared.query.as_ref().map_err(|e| e.clone())?;
    run_parsed(
        engine,
        index,
        request,
        parsed,
        ctx,
        window,
        Some(&prepared.bar),
    )
}

fn run_parsed(
    engine: &Engine,
    index: &SearchIndex,
    request: &shoal_query::SearchRequest,
    parsed: &shoal_query::ParsedQuery,
    ctx: ReadContext,
    window: Option<usize>,
    bar: Option<&shoal_index::SharedBound>,
) -> Result<(SearchResults, bool)> {
    let plan = bind(&index.schema, parsed, &request.params)?;
    let results = crate::search::execute(
        index,
        &engine.keyspace,
        &engine.layout,
        request,
        &plan,
        ctx.now_ms,
        deadline(request.timeout_ms, ctx.in_apply),
        window,
        bar,
    )?;
    Ok((results, request.nocontent))
}

/// An FT.SEARCH (`args` after the command name) into a [`HitSink`], for a server that
/// frames the reply itself: the same parsing, binding and errors as [`run_search`].
pub fn visit_search<A: AsRef<[u8]>, S: HitSink>(
    engine: &Engine,
    args: &[A],
    ctx: ReadContext,
    sink: &mut S,
) -> Result<()> {
    if args.len() < 2 {
        return Err(EngineError::Arity("ft.search".into()));
    }
    let (request, index, parsed) = parse_for(engine, args)?;
    let plan = bind(&index.schema, &parsed, &request.params)?;
    crate::search::visit(
        index,
        &engine.keyspace,
        &engine.layout,
        &request,
        &plan,
        ctx.now_ms,
        deadline(request.timeout_ms, ctx.in_apply),
        None,
        None,
        sink,
    )?;
    Ok(())
}

pub(super) fn search(engine: &Engine, a: &Args<'_>, ctx: ReadContext) -> Result<Reply> {
    a.arity(2, true)?;
    let (results, nocontent) = run_search(engine, a.rest(0), ctx, None)?;
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
                            distinct_fields(hit.fields)
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

/// A hit's fields with each name once, where it first appeared, holding its last value:
/// a RESP3 map's keys are distinct, and `RETURN 2 f f`, or a hash field named like the
/// KNN alias, would otherwise repeat one. (RESP2's flat array keeps them all, as
/// RediSearch's does.)
fn distinct_fields(fields: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(fields.len());
    // Positions by name once there are enough names for a scan to cost more.
    let mut at: Option<HashMap<Vec<u8>, usize>> = None;
    for (name, value) in fields {
        let seen = match &mut at {
            Some(index) => index.get(&name).copied(),
            None => out.iter().position(|(n, _)| *n == name),
        };
        match seen {
            Some(i) => out[i].1 = value,
            None => {
                if let Some(index) = &mut at {
                    index.insert(name.clone(), out.len());
                }
                out.push((name, value));
                if at.is_none() && out.len() > DISTINCT_SCAN {
                    at = Some(
                        out.iter()
                            .enumerate()
                            .map(|(i, (n, _))| (n.clone(), i))
                            .collect(),
                    );
                }
            }
        }
    }
    out
}

/// Up to this many fields a hit's names are checked for repeats by a scan.
const DISTINCT_SCAN: usize = 16;

pub(super) fn aggregate(engine: &Engine, a: &Args<'_>, ctx: ReadContext) -> Result<Reply> {
    a.arity(2, true)?;
    let request = parse_aggregate(a.rest(0))?;
    let index = index_named(engine, &request.index)?;
    let rows = crate::aggregate::execute(
        index,
        &engine.keyspace,
        &engine.layout,
        &request,
        ctx.now_ms,
        deadline(request.timeout_ms, ctx.in_apply),
    )?;
    Ok(crate::aggregate::render(&rows, ctx.resp3))
}

/// A shard's part of an FT.AGGREGATE (`args` after the command name).
pub(crate) fn aggregate_part<A: AsRef<[u8]>>(
    engine: &Engine,
    args: &[A],
    ctx: ReadContext,
) -> Result<crate::aggregate::AggregatePart> {
    if args.len() < 2 {
        return Err(EngineError::Arity("ft.aggregate".into()));
    }
    let request = parse_aggregate(args)?;
    let index = index_named(engine, &request.index)?;
    crate::aggregate::part(
        index,
        &engine.keyspace,
        &engine.layout,
        &request,
        ctx.now_ms,
        deadline(request.timeout_ms, ctx.in_apply),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{Hit, SearchResults};

    fn hit(fields: &[(&str, &str)]) -> SearchResults {
        SearchResults {
            total: 1,
            hits: vec![Hit {
                key: b"doc:1".to_vec(),
                distance: None,
                sort_value: None,
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                    .collect(),
            }],
            knn: None,
        }
    }

    fn extra_attributes(reply: Reply) -> Vec<(Reply, Reply)> {
        let Reply::Map(top) = reply else {
            panic!("not a map: {reply:?}");
        };
        let Some((_, Reply::Array(rows))) =
            top.into_iter().find(|(k, _)| *k == Reply::bulk("results"))
        else {
            panic!("no results");
        };
        let Some(Reply::Map(row)) = rows.into_iter().next() else {
            panic!("no row");
        };
        let Some((_, Reply::Map(fields))) = row
            .into_iter()
            .find(|(k, _)| *k == Reply::bulk("extra_attributes"))
        else {
            panic!("no extra_attributes");
        };
        fields
    }

    /// RESP3 names each field once (first place, last value); RESP2 keeps every pair.
    #[test]
    fn resp3_rows_name_each_field_once() {
        let fields = [("f", "1"), ("g", "2"), ("f", "3")];
        let map = extra_attributes(render_search(hit(&fields), false, true));
        assert_eq!(
            map,
            vec![
                (Reply::bulk("f"), Reply::bulk("3")),
                (Reply::bulk("g"), Reply::bulk("2"))
            ]
        );
        let Reply::Array(flat) = render_search(hit(&fields), false, false) else {
            panic!("RESP2 FT.SEARCH is an array");
        };
        assert_eq!(
            flat[2],
            Reply::Array(["f", "1", "g", "2", "f", "3"].map(Reply::bulk).to_vec())
        );
    }

    /// Past the scan's reach the same holds through the index of names.
    #[test]
    fn many_fields_are_made_distinct_too() {
        let names: Vec<String> = (0..3 * DISTINCT_SCAN).map(|i| format!("f{i}")).collect();
        let mut fields: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "a")).collect();
        fields.push(("f2", "late"));
        fields.push((names[2 * DISTINCT_SCAN].as_str(), "later"));
        let map = extra_attributes(render_search(hit(&fields), false, true));
        assert_eq!(map.len(), names.len());
        assert_eq!(map[2], (Reply::bulk("f2"), Reply::bulk("late")));
        assert_eq!(map[2 * DISTINCT_SCAN].1, Reply::bulk("later"));
        assert_eq!(map[1].1, Reply::bulk("a"));
    }
}
