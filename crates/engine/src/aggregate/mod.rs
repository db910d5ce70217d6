//! FT.AGGREGATE on one index: the matching documents become rows, and the steps of the
//! request (GROUPBY/REDUCE, SORTBY, APPLY, FILTER, LIMIT) transform them in order.
//! Over shard groups the same steps are split between the shards and the router
//! ([`split`]); grouping keeps mergeable partial state for that ([`group`]).

mod group;
mod split;

use std::time::Instant;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use shoal_query::expr::Scalar;
use shoal_query::{plan::bind, AggregateRequest, AggregateStep, FieldKind};

use crate::error::{EngineError, Result};
use crate::fields::raw_field;
use crate::keyspace::{Keyspace, Value};
use crate::layout::Layout;
use crate::reply::{format_g12, Reply};
use crate::search_index::{FieldIndex, SearchIndex};

pub use group::{Accumulator, PartialGroup};
pub use split::{merge_parts, part, AggregatePart};

/// A cell of a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cell {
    Null,
    Number(f64),
    Text(String),
    List(Vec<String>),
}

impl Cell {
    fn scalar(&self) -> Scalar {
        match self {
            Cell::Null => Scalar::Null,
            Cell::Number(n) => Scalar::Number(*n),
            Cell::Text(t) => Scalar::Str(t.clone()),
            Cell::List(items) => Scalar::Str(items.join(",")),
        }
    }

    fn from_scalar(s: Scalar) -> Cell {
        match s {
            Scalar::Null => Cell::Null,
            Scalar::Number(n) => Cell::Number(n),
            Scalar::Str(t) => Cell::Text(t),
        }
    }

    /// The text a group key or COUNT_DISTINCT compares.
    fn key_text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Number(n) => format_g12(*n),
            Cell::Text(t) => t.clone(),
            Cell::List(items) => items.join(","),
        }
    }

    fn reply(&self) -> Reply {
        match self {
            Cell::Null => Reply::Null,
            Cell::Number(n) => Reply::bulk(format_g12(*n)),
            Cell::Text(t) => Reply::bulk(t.clone()),
            Cell::List(items) => {
                Reply::Array(items.iter().map(|i| Reply::bulk(i.clone())).collect())
            }
        }
    }
}

/// One row: the document it came from (until GROUPBY) and its named cells.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Only meaningful on the node that holds the document; a row sent to a router
    /// brings the fields the router's steps read in `carried` instead.
    #[serde(skip)]
    doc: Option<u32>,
    pub cells: IndexMap<String, Cell>,
    /// Fields read from the document for steps run elsewhere: looked up like the
    /// document's own, never part of the output.
    carried: IndexMap<String, Cell>,
}

/// Where a row's fields come from when neither its cells nor its carried fields
/// have them: the node's documents, or nothing on a router.
trait Documents {
    fn field(&self, doc: u32, name: &str) -> Cell;
}

/// A router's rows have no documents behind them.
struct Detached;

impl Documents for Detached {
    fn field(&self, _doc: u32, _name: &str) -> Cell {
        Cell::Null
    }
}

/// A field of a row as the steps see it.
fn lookup(docs: &dyn Documents, row: &Row, name: &str) -> Cell {
    if let Some(cell) = row.cells.get(name).or_else(|| row.carried.get(name)) {
        return cell.clone();
    }
    row.doc.map_or(Cell::Null, |d| docs.field(d, name))
}

struct Source<'a> {
    index: &'a SearchIndex,
    keyspace: &'a Keyspace,
    /// Which keys this group shows while it takes part in a reshard.
    layout: &'a Layout,
    now: u64,
}

impl Documents for Source<'_> {
    /// A document's field as a cell: numbers for NUMERIC fields, text otherwise.
    fn field(&self, doc: u32, name: &str) -> Cell {
        let Some(key) = self.index.docs.key(doc) else {
            return Cell::Null;
        };
        if name == "__key" {
            return Cell::Text(String::from_utf8_lossy(key).into_owned());
        }
        let Some(entry) = self.keyspace.get(key, self.now) else {
            return Cell::Null;
        };
        if let Some((position, field)) = self.index.schema.field(name) {
            if let (FieldKind::Numeric, FieldIndex::Numeric(n)) =
                (&field.kind, &self.index.fields[position])
            {
                return n.value(doc).map_or(Cell::Null, Cell::Number);
            }
            return raw_field(&entry.value, field).map_or(Cell::Null, |r| Cell::Text(r.as_text()));
        }
        match &entry.value {
            Value::Hash(h) => h.get(name.as_bytes()).map_or(Cell::Null, |v| {
                Cell::Text(String::from_utf8_lossy(v).into_owned())
            }),
            Value::Json(_) | Value::Str(_) => Cell::Null,
        }
    }
}

/// A KNN clause's distance name and k.
type Knn = Option<(String, usize)>;

/// The rows an FT.AGGREGATE starts from, with the KNN clause if any.
fn source_rows(
    source: &Source<'_>,
    request: &AggregateRequest,
    deadline: Option<Instant>,
) -> Result<(Vec<Row>, Knn)> {
    let parsed = crate::query_cache::parse(&request.query)?;
    let plan = bind(&source.index.schema, &parsed, &request.params)?;
    let (matches, _) = crate::search::matching(
        source.index,
        source.keyspace,
        source.layout,
        &plan,
        source.now,
        deadline,
        None,
    )?;
    let rows = matches
        .iter()
        .map(|(doc, distance)| {
            let mut cells = IndexMap::new();
            if let (Some(knn), Some(d)) = (&plan.knn, distance) {
                cells.insert(knn.alias.clone(), Cell::Number(f64::from(*d)));
            }
            match &request.load {
                // LOAD *: a hash's every field, as RediSearch; a JSON document's
                // declared fields under their names, as MemoryDB's LOAD * reads.
                Some(fields) if fields.is_empty() => match source
                    .index
                    .docs
                    .key(*doc)
                    .and_then(|k| source.keyspace.get(k, source.now))
                    .map(|e| &e.value)
                {
                    Some(Value::Hash(h)) => {
                        for (k, v) in h {
                            cells.insert(
                                String::from_utf8_lossy(k).into_owned(),
                                Cell::Text(String::from_utf8_lossy(v).into_owned()),
                            );
                        }
                    }
                    Some(Value::Json(_)) => {
                        for field in &source.index.schema.fields {
                            let cell = source.field(*doc, &field.alias);
                            cells.insert(field.alias.clone(), cell);
                        }
                    }
                    Some(Value::Str(_)) | None => {}
                },
                Some(fields) => {
                    for (field, name) in fields {
                        cells.insert(name.clone(), source.field(*doc, field));
                    }
                }
                None => {}
            }
            Row {
                doc: Some(*doc),
                cells,
                carried: IndexMap::new(),
            }
        })
        .collect();
    Ok((rows, plan.knn.map(|k| (k.alias, k.k))))
}

/// Runs an FT.AGGREGATE.
pub fn execute(
    index: &SearchIndex,
    keyspace: &Keyspace,
    layout: &Layout,
    request: &AggregateRequest,
    now: u64,
    deadline: Option<Instant>,
) -> Result<Vec<Row>> {
    let source = Source {
        index,
        keyspace,
        layout,
        now,
    };
    let (rows, _) = source_rows(&source, request, deadline)?;
    run(rows, &request.steps, &source, deadline)
}

fn check(deadline: Option<Instant>) -> Result<()> {
    match deadline {
        Some(d) if Instant::now() > d => Err(EngineError::Timeout),
        Some(_) | None => Ok(()),
    }
}

/// Runs `steps` over `rows` in order.
fn run(
    mut rows: Vec<Row>,
    steps: &[AggregateStep],
    docs: &dyn Documents,
    deadline: Option<Instant>,
) -> Result<Vec<Row>> {
    check(deadline)?;
    for step in steps {
        rows = apply_step(rows, step, docs);
        check(deadline)?;
    }
    Ok(rows)
}

fn apply_step(rows: Vec<Row>, step: &AggregateStep, docs: &dyn Documents) -> Vec<Row> {
    match step {
        AggregateStep::GroupBy { fields, reducers } => {
            let mut groups = group::Groups::default();
            groups.add_rows(&rows, fields, reducers, docs);
            groups.finish(fields, reducers)
        }
        AggregateStep::SortBy { keys, max } => {
            let mut keyed: Vec<(Vec<Cell>, Row)> = rows
                .into_iter()
                .map(|r| (keys.iter().map(|(k, _)| lookup(docs, &r, k)).collect(), r))
                .collect();
            keyed.sort_by(|a, b| {
                for (i, (_, ascending)) in keys.iter().enumerate() {
                    let o = compare(&a.0[i], &b.0[i]);
                    let o = if *ascending { o } else { o.reverse() };
                    if o != std::cmp::Ordering::Equal {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
            let mut sorted: Vec<Row> = keyed.into_iter().map(|(_, r)| r).collect();
            if let Some(max) = max {
                sorted.truncate(*max);
            }
            // The sort keys are part of the output, as in RediSearch.
            for row in &mut sorted {
                for (k, _) in keys {
                    if !row.cells.contains_key(k) {
                        let v = lookup(docs, row, k);
                        row.cells.insert(k.clone(), v);
                    }
                }
            }
            sorted
        }
        AggregateStep::Apply { expr, alias } => rows
            .into_iter()
            .map(|mut row| {
                let value = expr.eval(&|name| Some(lookup(docs, &row, name).scalar()));
                row.cells.insert(alias.clone(), Cell::from_scalar(value));
                row
            })
            .collect(),
        AggregateStep::Filter(expr) => rows
            .into_iter()
            .filter(|row| expr.test(&|name| Some(lookup(docs, row, name).scalar())))
            .collect(),
        AggregateStep::Limit { offset, num } => rows.into_iter().skip(*offset).take(*num).collect(),
    }
}

/// A total order, as `sort_by` requires: numbers (or text that reads as one) first, by
/// value; then other text; missing values last.
fn compare(a: &Cell, b: &Cell) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let class = |c: &Cell| match c {
        Cell::Null => 2,
        Cell::Number(_) | Cell::Text(_) | Cell::List(_) => {
            if c.scalar().as_number().is_some() {
                0
            } else {
                1
            }
        }
    };
    let by_class = class(a).cmp(&class(b));
    if by_class != Ordering::Equal {
        return by_class;
    }
    match (a.scalar().as_number(), b.scalar().as_number()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => a.key_text().cmp(&b.key_text()),
    }
}

/// FT.AGGREGATE's reply: `[n, [k, v, ...], ...]` in RESP2, a map with `results` in RESP3.
pub fn render(rows: &[Row], resp3: bool) -> Reply {
    let cells = |row: &Row| -> Vec<(Reply, Reply)> {
        row.cells
            .iter()
            .filter(|(_, c)| **c != Cell::Null)
            .map(|(k, c)| (Reply::bulk(k.clone()), c.reply()))
            .collect()
    };
    if resp3 {
        return Reply::map([
            ("attributes", Reply::Array(Vec::new())),
            ("format", Reply::Simple("STRING".into())),
            (
                "results",
                Reply::Array(
                    rows.iter()
                        .map(|r| {
                            Reply::map([
                                ("extra_attributes", Reply::Map(cells(r))),
                                ("values", Reply::Array(Vec::new())),
                            ])
                        })
                        .collect(),
                ),
            ),
            ("total_results", Reply::Int(rows.len() as i64)),
            ("warning", Reply::Array(Vec::new())),
        ]);
    }
    let mut out = vec![Reply::Int(rows.len() as i64)];
    for row in rows {
        out.push(Reply::Array(
            cells(row).into_iter().flat_map(|(k, v)| [k, v]).collect(),
        ));
    }
    Reply::Array(out)
}
