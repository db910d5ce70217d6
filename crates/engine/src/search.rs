//! FT.SEARCH on one index: evaluate the filter to a set of documents, run KNN or range
//! search restricted to it, order, page and load the fields asked for.
//!
//! The result is typed ([`SearchResults`]) so that a router can merge the answers of
//! many shards before anything is framed.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

use shoal_index::{RoaringBitmap, SharedBound, VectorIndex};
use shoal_query::{FieldKind, Filter, KnnPlan, SearchPlan, SearchRequest};

use crate::error::{EngineError, Result};
use crate::fields::{raw_field, words};
use crate::keyspace::{Keyspace, Value};
use crate::layout::Layout;
use crate::reply::G12;
use crate::search_index::{FieldIndex, SearchIndex};

/// One returned document. Serializable: shards send their hits to the router.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hit {
    pub key: Vec<u8>,
    /// The KNN distance, when the query had a KNN clause.
    pub distance: Option<f32>,
    /// What SORTBY ordered by, so a router can merge shards in the same order.
    pub sort_value: Option<SortValue>,
    /// (name, value) pairs in reply order.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A value SORTBY compares: numbers before strings, missing values last.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SortValue {
    Number(f64),
    Text(String),
}

fn compare_sort(a: &Option<SortValue>, b: &Option<SortValue>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Some(SortValue::Number(x)), Some(SortValue::Number(y))) => x.total_cmp(y),
        (Some(SortValue::Text(x)), Some(SortValue::Text(y))) => x.cmp(y),
        (Some(SortValue::Number(_)), Some(SortValue::Text(_))) => Ordering::Less,
        (Some(SortValue::Text(_)), Some(SortValue::Number(_))) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SearchResults {
    /// Matches before LIMIT (for KNN: the neighbours found, at most k).
    pub total: usize,
    pub hits: Vec<Hit>,
    /// The KNN clause's k, when there is one: merged shards report at most k in all.
    pub knn: Option<usize>,
}

/// What two hits are compared by: the key, the KNN distance, the SORTBY value.
type OrderKey<'a> = (&'a [u8], Option<f32>, &'a Option<SortValue>);

fn key(h: &Hit) -> OrderKey<'_> {
    (h.key.as_slice(), h.distance, &h.sort_value)
}

/// The order of FT.SEARCH results, one definition for a shard's sort and a router's
/// merge (so merging sorted shard pages gives the single-node order):
///
/// | request          | order                                                     |
/// |------------------|-----------------------------------------------------------|
/// | SORTBY f [ASC]   | f ascending, documents without f last, then key           |
/// | SORTBY f DESC    | f descending, documents without f last, then key          |
/// | KNN, no SORTBY   | distance ascending, then key                              |
/// | neither          | key                                                       |
fn order(
    sort: Option<&shoal_query::SortBy>,
    knn: bool,
    a: OrderKey<'_>,
    b: OrderKey<'_>,
) -> std::cmp::Ordering {
    match sort {
        Some(sort) => {
            let by_value = compare_sort(a.2, b.2);
            let by_value = if sort.ascending || a.2.is_none() || b.2.is_none() {
                by_value
            } else {
                by_value.reverse()
            };
            by_value.then_with(|| a.0.cmp(b.0))
        }
        None if knn => {
            let (x, y) = (a.1.unwrap_or(f32::INFINITY), b.1.unwrap_or(f32::INFINITY));
            x.total_cmp(&y).then_with(|| a.0.cmp(b.0))
        }
        None => a.0.cmp(b.0),
    }
}

/// Merges shards' answers to one FT.SEARCH into the page `offset..offset + num`.
///
/// Each part holds its shard's first `offset + num` hits in [`order`], or for a KNN
/// query all of its (at most k) neighbours: the k nearest of the whole cluster are
/// chosen by distance first, and only then ordered by SORTBY, as on one node. Totals
/// add up, but a KNN query found at most k in all.
pub fn merge(
    parts: Vec<SearchResults>,
    sort: Option<&shoal_query::SortBy>,
    offset: usize,
    num: usize,
) -> SearchResults {
    let knn = parts.iter().find_map(|p| p.knn);
    let total: usize = parts.iter().map(|p| p.total).sum();
    let total = knn.map_or(total, |k| total.min(k));
    let mut hits: Vec<Hit> = parts.into_iter().flat_map(|p| p.hits).collect();
    if let Some(k) = knn {
        hits.sort_by(|a, b| order(None, true, key(a), key(b)));
        hits.truncate(k);
    }
    hits.sort_by(|a, b| order(sort, knn.is_some(), key(a), key(b)));
    let hits = hits.into_iter().skip(offset).take(num).collect();
    SearchResults { total, hits, knn }
}

struct Evaluation<'a> {
    index: &'a SearchIndex,
    keyspace: &'a Keyspace,
    now: u64,
    deadline: Option<Instant>,
    /// Distances of VECTOR_RANGE matches, by the name they are yielded as.
    yielded: Vec<(String, HashMap<u32, f32>)>,
}

impl Evaluation<'_> {
    fn check_deadline(&self) -> Result<()> {
        match self.deadline {
            Some(d) if Instant::now() > d => Err(EngineError::Timeout),
            Some(_) | None => Ok(()),
        }
    }

    fn vector_index(&self, field: usize) -> Result<&dyn VectorIndex> {
        match &self.index.fields[field] {
            FieldIndex::Vector(v) => Ok(v.as_ref()),
            FieldIndex::Numeric(_) | FieldIndex::Tag(_) | FieldIndex::Text => Err(
                EngineError::Query(shoal_query::QueryError::WrongFieldType {
                    field: self.index.schema.fields[field].alias.clone(),
                    expected: "VECTOR",
                }),
            ),
        }
    }

    /// The documents a filter keeps; `None` for "every document" (no bitmap built).
    fn documents(&mut self, filter: &Filter) -> Result<Option<RoaringBitmap>> {
        match filter {
            Filter::All => Ok(None),
            other @ (Filter::Numeric { .. }
            | Filter::Tag { .. }
            | Filter::Text { .. }
            | Filter::Range(_)
            | Filter::And(_)
            | Filter::Or(_)
            | Filter::Not(_)) => self.bitmap(other).map(Some),
        }
    }

    fn bitmap(&mut self, filter: &Filter) -> Result<RoaringBitmap> {
        self.check_deadline()?;
        Ok(match filter {
            Filter::All => self.index.docs.all().clone(),
            Filter::Numeric {
                field,
                lo,
                lo_exclusive,
                hi,
                hi_exclusive,
            } => match &self.index.fields[*field] {
                FieldIndex::Numeric(n) => n.range(*lo, *lo_exclusive, *hi, *hi_exclusive),
                FieldIndex::Tag(_) | FieldIndex::Text | FieldIndex::Vector(_) => {
                    RoaringBitmap::new()
                }
            },
            Filter::Tag { field, patterns } => match &self.index.fields[*field] {
                FieldIndex::Tag(t) => t.matching(patterns),
                FieldIndex::Numeric(_) | FieldIndex::Text | FieldIndex::Vector(_) => {
                    RoaringBitmap::new()
                }
            },
            Filter::Text {
                field,
                words: wanted,
            } => self.text(*field, wanted),
            Filter::Range(range) => {
                let index = self.vector_index(range.field)?;
                let found = index
                    .range_search(&range.vector, range.radius, range.epsilon, None)
                    .map_err(|e| EngineError::QueryVector(e.to_string()))?;
                let bitmap: RoaringBitmap = found.iter().map(|n| n.id).collect();
                if let Some(name) = &range.yield_as {
                    self.yielded.push((
                        name.clone(),
                        found.iter().map(|n| (n.id, n.distance)).collect(),
                    ));
                }
                bitmap
            }
            Filter::And(parts) => {
                let mut acc: Option<RoaringBitmap> = None;
                for part in parts {
                    let b = self.bitmap(part)?;
                    acc = Some(match acc {
                        Some(a) => a & b,
                        None => b,
                    });
                    if acc.as_ref().is_some_and(RoaringBitmap::is_empty) {
                        break;
                    }
                }
                acc.unwrap_or_default()
            }
            Filter::Or(parts) => {
                let mut acc = RoaringBitmap::new();
                for part in parts {
                    acc |= self.bitmap(part)?;
                }
                acc
            }
            Filter::Not(inner) => self.index.docs.all() - self.bitmap(inner)?,
        })
    }

    /// TEXT is matched word by word against the stored document (full-text indexing is a
    /// later goal): every wanted word, or prefix, must occur.
    fn text(&self, field: Option<usize>, wanted: &[shoal_query::TextWord]) -> RoaringBitmap {
        let schema = &self.index.schema;
        let text_fields: Vec<usize> = match field {
            Some(f) => vec![f],
            None => (0..schema.fields.len())
                .filter(|&i| matches!(schema.fields[i].kind, FieldKind::Text))
                .collect(),
        };
        let mut out = RoaringBitmap::new();
        for doc in self.index.docs.all() {
            let Some(value) = self.document(doc) else {
                continue;
            };
            let mut found: Vec<String> = Vec::new();
            for &f in &text_fields {
                if let Some(raw) = raw_field(value, &schema.fields[f]) {
                    found.extend(words(&raw.as_text()));
                }
            }
            let all = wanted.iter().all(|w| {
                found.iter().any(|f| {
                    if w.prefix {
                        f.starts_with(&w.text)
                    } else {
                        *f == w.text
                    }
                })
            });
            if all {
                out.insert(doc);
            }
        }
        out
    }

    fn document(&self, doc: u32) -> Option<&Value> {
        let key = self.index.docs.key(doc)?;
        self.keyspace.get(key, self.now).map(|e| &e.value)
    }

    fn knn(
        &self,
        knn: &KnnPlan,
        allowed: Option<&RoaringBitmap>,
        bar: Option<&SharedBound>,
    ) -> Result<Vec<(u32, f32)>> {
        let index = self.vector_index(knn.field)?;
        if allowed.is_some_and(RoaringBitmap::is_empty) || index.is_empty() {
            return Ok(Vec::new());
        }
        // The planner: with a bitmap the index knows the filter's cardinality and scans
        // its ids exactly when it is small, walking the graph otherwise (shoal-index's
        // `exact_filter_fraction`, measured in docs/index.md).
        let filter = allowed.map(|b| b as &dyn shoal_index::IdFilter);
        let found = match bar {
            Some(bar) => index.search_under(&knn.vector, knn.k, knn.ef_runtime, filter, bar),
            None => index.search(&knn.vector, knn.k, knn.ef_runtime, filter),
        }
        .map_err(|e| EngineError::QueryVector(e.to_string()))?;
        Ok(found.into_iter().map(|n| (n.id, n.distance)).collect())
    }
}

/// Documents a plan matches (live keys only), with their KNN distance when there is a
/// KNN clause, and the distances VECTOR_RANGE clauses yielded. `bar`: see [`visit`].
#[allow(clippy::type_complexity)]
pub fn matching(
    index: &SearchIndex,
    keyspace: &Keyspace,
    layout: &Layout,
    plan: &SearchPlan,
    now: u64,
    deadline: Option<Instant>,
    bar: Option<&SharedBound>,
) -> Result<(Vec<(u32, Option<f32>)>, Vec<(String, HashMap<u32, f32>)>)> {
    let mut eval = Evaluation {
        index,
        keyspace,
        now,
        deadline,
        yielded: Vec::new(),
    };
    let allowed = eval.documents(&plan.filter)?;
    // During a reshard some documents here belong to another group (a switched
    // source's moved keys, the target's copies from sources not switched yet). They
    // leave the allowed set before the walk, not its answer, so a KNN still finds k
    // neighbours it may show.
    let allowed = match (allowed, shown_documents(index, layout)) {
        (allowed, None) => allowed,
        (None, Some(shown)) => Some(shown),
        (Some(mut allowed), Some(shown)) => {
            allowed &= &shown;
            Some(allowed)
        }
    };
    eval.check_deadline()?;
    // Every document's key exists (writes keep the table exact); only one that expired
    // and was not yet removed by a write must be hidden, and there is rarely any.
    let check_expiry = keyspace.any_expired(now);
    let live = |doc: u32| {
        !check_expiry
            || index
                .docs
                .key(doc)
                .is_some_and(|k| keyspace.get(k, now).is_some())
    };
    let matches: Vec<(u32, Option<f32>)> = match &plan.knn {
        Some(knn) => {
            let found = eval.knn(knn, allowed.as_ref(), bar)?;
            index.docs.prefetch_entries(found.iter().map(|&(d, _)| d));
            // Sized once (a filtered collect grows from empty, reallocating as it goes).
            let mut matches = Vec::with_capacity(found.len());
            matches.extend(
                found
                    .into_iter()
                    .filter(|(d, _)| live(*d))
                    .map(|(d, dist)| (d, Some(dist))),
            );
            matches
        }
        None => match &allowed {
            Some(b) => b.iter().filter(|d| live(*d)).map(|d| (d, None)).collect(),
            None => index
                .docs
                .all()
                .iter()
                .filter(|d| live(*d))
                .map(|d| (d, None))
                .collect(),
        },
    };
    eval.check_deadline()?;
    Ok((matches, eval.yielded))
}

/// The documents a reader of this group may see while it takes part in a reshard;
/// `None` (no bitmap built) when it may see them all, as nearly always.
fn shown_documents(index: &SearchIndex, layout: &Layout) -> Option<RoaringBitmap> {
    if layout.shows_everything() {
        return None;
    }
    Some(
        index
            .docs
            .all()
            .iter()
            .filter(|&doc| index.docs.key(doc).is_some_and(|key| layout.visible(key)))
            .collect(),
    )
}

/// A match with everything its ordering needs, gathered once before the sort so a
/// comparison does not look the key up again.
struct Ranked<'a> {
    doc: u32,
    key: &'a [u8],
    distance: Option<f32>,
    sort_value: Option<SortValue>,
}

/// Where a search's page goes, hit by hit: into owned [`Hit`]s for a router to merge
/// ([`execute`]), or straight into a client's reply by the server. A reply framed from
/// here skips copying every key and field into buffers of their own only to copy them
/// again into the reply, and building and dropping a tree of the reply in between.
pub trait HitSink {
    /// Before the first hit: the matches before LIMIT, how many hits follow, and
    /// whether they carry fields (not under NOCONTENT).
    fn begin(&mut self, total: usize, hits: usize, with_fields: bool);
    /// A hit's key, then its fields in reply order, then [`HitSink::end_hit`]. `fields`
    /// is how many fields the request names (0 when it returns every field).
    fn hit(
        &mut self,
        key: &[u8],
        distance: Option<f32>,
        sort_value: Option<SortValue>,
        fields: usize,
    );
    /// One of the hit's fields; `value` is borrowed from the document unless it had to
    /// be computed (a score's text, a JSON path's answer).
    fn field(&mut self, name: &[u8], value: Cow<'_, [u8]>);
    /// The hit is complete (a framer writes its field count only now).
    fn end_hit(&mut self);
}

/// The hits as [`SearchResults`] keeps them.
#[derive(Default)]
struct Collect {
    hits: Vec<Hit>,
}

impl HitSink for Collect {
    fn begin(&mut self, _total: usize, hits: usize, _with_fields: bool) {
        self.hits.reserve_exact(hits);
    }

    fn hit(
        &mut self,
        key: &[u8],
        distance: Option<f32>,
        sort_value: Option<SortValue>,
        fields: usize,
    ) {
        self.hits.push(Hit {
            key: key.to_vec(),
            distance,
            sort_value,
            fields: Vec::with_capacity(fields),
        });
    }

    fn field(&mut self, name: &[u8], value: Cow<'_, [u8]>) {
        if let Some(hit) = self.hits.last_mut() {
            hit.fields.push((name.to_vec(), value.into_owned()));
        }
    }

    fn end_hit(&mut self) {}
}

/// Runs a bound query against one index. `window`, for a shard's part of a cluster-wide
/// search, replaces LIMIT: see [`merge`]. `bar`: see [`visit`].
#[allow(clippy::too_many_arguments)]
pub fn execute(
    index: &SearchIndex,
    keyspace: &Keyspace,
    layout: &Layout,
    request: &SearchRequest,
    plan: &SearchPlan,
    now: u64,
    deadline: Option<Instant>,
    window: Option<usize>,
    bar: Option<&SharedBound>,
) -> Result<SearchResults> {
    let mut sink = Collect::default();
    let total = visit(
        index, keyspace, layout, request, plan, now, deadline, window, bar, &mut sink,
    )?;
    Ok(SearchResults {
        total,
        hits: sink.hits,
        knn: plan.knn.as_ref().map(|k| k.k),
    })
}

/// [`execute`] into a [`HitSink`]; returns the matches before LIMIT. On an error the
/// sink may hold part of the page: its owner drops it.
///
/// `bar` is shared by the parts of one cluster-wide KNN search that run on this node
/// (`shoal_index::SharedBound`): this part's walk need not look beyond the k-th nearest
/// neighbour the parts before it returned, and its own neighbours join the bar for the
/// parts after it. Only a part (`window`) of a KNN search publishes: its hits are its
/// neighbours that are shown, which the router merges.
#[allow(clippy::too_many_arguments)]
pub fn visit<S: HitSink>(
    index: &SearchIndex,
    keyspace: &Keyspace,
    layout: &Layout,
    request: &SearchRequest,
    plan: &SearchPlan,
    now: u64,
    deadline: Option<Instant>,
    window: Option<usize>,
    bar: Option<&SharedBound>,
    sink: &mut S,
) -> Result<usize> {
    let bar = bar.filter(|_| window.is_some());
    let (mut matches, yielded) = matching(index, keyspace, layout, plan, now, deadline, bar)?;
    let eval = Evaluation {
        index,
        keyspace,
        now,
        deadline,
        yielded,
    };
    let total = matches.len();
    let key_of = |doc: u32| index.docs.key(doc).unwrap_or_default();

    let knn_alias = plan.knn.as_ref().map(|k| k.alias.as_str());
    let yielded_distance = |name: &str, doc: u32| {
        eval.yielded
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, m)| m.get(&doc).copied())
    };
    // Sort values, computed once per match.
    let sort_value = |doc: u32, distance: Option<f32>| -> Option<SortValue> {
        let sort = request.sort_by.as_ref()?;
        if Some(sort.field.as_str()) == knn_alias {
            return distance.map(|d| SortValue::Number(f64::from(d)));
        }
        if let Some(d) = yielded_distance(&sort.field, doc) {
            return Some(SortValue::Number(f64::from(d)));
        }
        if let Some((position, field)) = index.schema.field(&sort.field) {
            if let FieldIndex::Numeric(n) = &index.fields[position] {
                return n.value(doc).map(SortValue::Number);
            }
            let value = eval.document(doc)?;
            return raw_field(value, field).map(|r| SortValue::Text(r.as_text()));
        }
        let value = eval.document(doc)?;
        match value {
            Value::Hash(h) => h.get(sort.field.as_bytes()).map(|v| {
                let text = String::from_utf8_lossy(v).into_owned();
                match shoal_query::args::parse_f64(v) {
                    Some(n) => SortValue::Number(n),
                    None => SortValue::Text(text),
                }
            }),
            Value::Json(_) | Value::Str(_) => None,
        }
    };

    // Each match's key looked up once, not at every comparison of the sort, and its
    // bytes asked for now: a key longer than a table slot holds lives in an allocation
    // of its own, cold after the walk, and the copies into the hits below would
    // otherwise stall on them one by one (a short key came with its slot).
    let mut ordered: Vec<Ranked<'_>> = matches
        .drain(..)
        .map(|(doc, distance)| {
            let key = key_of(doc);
            shoal_index::prefetch::prefetch(key.as_ptr(), 1);
            Ranked {
                doc,
                key,
                distance,
                sort_value: sort_value(doc, distance),
            }
        })
        .collect();
    let knn = plan.knn.is_some();
    ordered.sort_by(|a, b| {
        order(
            request.sort_by.as_ref(),
            knn,
            (a.key, a.distance, &a.sort_value),
            (b.key, b.distance, &b.sort_value),
        )
    });

    // The page, cut from `ordered` in place.
    match window {
        // A shard's part of a cluster-wide search: every KNN neighbour (the router picks
        // the k nearest of all shards), otherwise the first offset + num in order.
        Some(_) if knn => {}
        Some(w) => ordered.truncate(w),
        None => {
            ordered.truncate(request.offset.saturating_add(request.num));
            ordered.drain(..request.offset.min(ordered.len()));
        }
    }
    let fields = match &request.return_fields {
        Some(list) if !request.nocontent => list.len(),
        Some(_) | None => 0,
    };
    // What this part shows joins the bar once it has all been shown: a part that fails
    // on the way (its deadline, mid-page) is left out of a SOMESHARDS answer, and its
    // neighbours must not hold the later parts back.
    let publish = match (bar, &plan.knn, window) {
        (Some(bar), Some(plan), Some(_)) => {
            let shown: Vec<f32> = ordered.iter().filter_map(|r| r.distance).collect();
            Some((bar, plan.k, shown))
        }
        _ => None,
    };
    sink.begin(total, ordered.len(), !request.nocontent);
    for Ranked {
        doc,
        key,
        distance,
        sort_value,
    } in ordered
    {
        eval.check_deadline()?;
        sink.hit(key, distance, sort_value, fields);
        if !request.nocontent {
            load_fields(
                &eval,
                doc,
                distance,
                knn_alias,
                request,
                &yielded_distance,
                sink,
            );
        }
        sink.end_hit();
    }
    if let Some((bar, k, shown)) = publish {
        bar.publish(std::ptr::from_ref(index).addr(), k, shown);
    }
    Ok(total)
}

/// A distance as FT.SEARCH shows it (`%.12g`), formatted on the stack.
fn distance_text(d: f32) -> G12 {
    G12::new(f64::from(d))
}

/// Sends a hit's fields to `sink`, in reply order.
fn load_fields<S: HitSink>(
    eval: &Evaluation<'_>,
    doc: u32,
    distance: Option<f32>,
    knn_alias: Option<&str>,
    request: &SearchRequest,
    yielded_distance: &dyn Fn(&str, u32) -> Option<f32>,
    sink: &mut S,
) {
    let schema = &eval.index.schema;
    // Looked up only when a field needs the document (a RETURN of the score alone does not).
    let document = std::cell::OnceCell::new();
    let value = || *document.get_or_init(|| eval.document(doc));
    let score = |sink: &mut S, name: &[u8], d: f32| {
        sink.field(name, Cow::Borrowed(distance_text(d).as_bytes()));
    };
    match &request.return_fields {
        None => {
            if let (Some(alias), Some(d)) = (knn_alias, distance) {
                score(sink, alias.as_bytes(), d);
            }
            for (name, _) in &eval.yielded {
                if let Some(d) = yielded_distance(name, doc) {
                    score(sink, name.as_bytes(), d);
                }
            }
            match value() {
                Some(Value::Hash(h)) => {
                    for (k, v) in h.iter() {
                        sink.field(k, Cow::Borrowed(v));
                    }
                }
                Some(Value::Json(j)) => sink.field(b"$", Cow::Owned(j.to_string().into_bytes())),
                Some(Value::Str(_)) | None => {}
            }
        }
        Some(list) => {
            for wanted in list {
                let name = wanted.name.as_bytes();
                if Some(wanted.field.as_str()) == knn_alias {
                    if let Some(d) = distance {
                        score(sink, name, d);
                    }
                    continue;
                }
                if let Some(d) = yielded_distance(&wanted.field, doc) {
                    score(sink, name, d);
                    continue;
                }
                let Some(value) = value() else {
                    continue;
                };
                if let Some((_, field)) = schema.field(&wanted.field) {
                    if let Some(raw) = raw_field(value, field) {
                        sink.field(name, raw.reply_cow());
                    }
                    continue;
                }
                match value {
                    Value::Hash(h) => {
                        if let Some(v) = h.get(wanted.field.as_bytes()) {
                            sink.field(name, Cow::Borrowed(v));
                        }
                    }
                    Value::Json(j) => {
                        if wanted.field.starts_with('$') {
                            if let Some(nodes) = crate::fields::json_query(j, &wanted.field) {
                                if !nodes.is_empty() {
                                    sink.field(name, crate::fields::Raw::Json(nodes).reply_cow());
                                }
                            }
                        }
                    }
                    Value::Str(_) => {}
                }
            }
        }
    }
}
