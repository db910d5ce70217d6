//! FT.AGGREGATE on one index: the matching documents become rows, and the steps of the
//! request (GROUPBY/REDUCE, SORTBY, APPLY, FILTER, LIMIT) transform them in order.

use std::collections::HashSet;
use std::time::Instant;

use indexmap::IndexMap;
use shoal_query::expr::Scalar;
use shoal_query::{
    filter::parse_query, plan::bind, AggregateRequest, AggregateStep, FieldKind, Reducer,
    ReducerKind,
};

use crate::error::{EngineError, Result};
use crate::fields::raw_field;
use crate::keyspace::{Keyspace, Value};
use crate::reply::{format_g12, Reply};
use crate::search_index::{FieldIndex, SearchIndex};

/// A cell of a row.
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone)]
pub struct Row {
    doc: Option<u32>,
    pub cells: IndexMap<String, Cell>,
}

struct Source<'a> {
    index: &'a SearchIndex,
    keyspace: &'a Keyspace,
    now: u64,
}

impl Source<'_> {
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

    fn lookup(&self, row: &Row, name: &str) -> Cell {
        match row.cells.get(name) {
            Some(cell) => cell.clone(),
            None => row.doc.map_or(Cell::Null, |d| self.field(d, name)),
        }
    }
}

/// Runs an FT.AGGREGATE.
pub fn execute(
    index: &SearchIndex,
    keyspace: &Keyspace,
    request: &AggregateRequest,
    now: u64,
    deadline: Option<Instant>,
) -> Result<Vec<Row>> {
    let parsed = parse_query(&request.query)?;
    let plan = bind(&index.schema, &parsed, &request.params)?;
    let (matches, _) = crate::search::matching(index, keyspace, &plan, now, deadline)?;
    let source = Source {
        index,
        keyspace,
        now,
    };
    let check = || match deadline {
        Some(d) if Instant::now() > d => Err(EngineError::Timeout),
        Some(_) | None => Ok(()),
    };
    let mut rows: Vec<Row> = matches
        .iter()
        .map(|(doc, distance)| {
            let mut cells = IndexMap::new();
            if let (Some(knn), Some(d)) = (&plan.knn, distance) {
                cells.insert(knn.alias.clone(), Cell::Number(f64::from(*d)));
            }
            match &request.load {
                Some(fields) if fields.is_empty() => {
                    if let Some(Value::Hash(h)) = index
                        .docs
                        .key(*doc)
                        .and_then(|k| keyspace.get(k, now))
                        .map(|e| &e.value)
                    {
                        for (k, v) in h {
                            cells.insert(
                                String::from_utf8_lossy(k).into_owned(),
                                Cell::Text(String::from_utf8_lossy(v).into_owned()),
                            );
                        }
                    }
                }
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
            }
        })
        .collect();
    check()?;
    for step in &request.steps {
        check()?;
        rows = match step {
            AggregateStep::GroupBy { fields, reducers } => group(&source, rows, fields, reducers),
            AggregateStep::SortBy { keys, max } => {
                let mut keyed: Vec<(Vec<Cell>, Row)> = rows
                    .into_iter()
                    .map(|r| (keys.iter().map(|(k, _)| source.lookup(&r, k)).collect(), r))
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
                            let v = source.lookup(row, k);
                            row.cells.insert(k.clone(), v);
                        }
                    }
                }
                sorted
            }
            AggregateStep::Apply { expr, alias } => rows
                .into_iter()
                .map(|mut row| {
                    let value = expr.eval(&|name| Some(source.lookup(&row, name).scalar()));
                    row.cells.insert(alias.clone(), Cell::from_scalar(value));
                    row
                })
                .collect(),
            AggregateStep::Filter(expr) => rows
                .into_iter()
                .filter(|row| expr.test(&|name| Some(source.lookup(row, name).scalar())))
                .collect(),
            AggregateStep::Limit { offset, num } => {
                rows.into_iter().skip(*offset).take(*num).collect()
            }
        };
    }
    Ok(rows)
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

/// Running state of one reducer over one group.
#[derive(Debug, Default)]
struct Accumulator {
    count: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    numbers: u64,
    distinct: HashSet<String>,
    list: Vec<String>,
}

fn group(source: &Source<'_>, rows: Vec<Row>, fields: &[String], reducers: &[Reducer]) -> Vec<Row> {
    let mut groups: IndexMap<Vec<String>, (Vec<Cell>, Vec<Accumulator>)> = IndexMap::new();
    for row in &rows {
        let key_cells: Vec<Cell> = fields.iter().map(|f| source.lookup(row, f)).collect();
        let key: Vec<String> = key_cells.iter().map(Cell::key_text).collect();
        let entry = groups.entry(key).or_insert_with(|| {
            (
                key_cells,
                reducers.iter().map(|_| Accumulator::default()).collect(),
            )
        });
        for (reducer, acc) in reducers.iter().zip(entry.1.iter_mut()) {
            acc.count += 1;
            let Some(field) = &reducer.field else {
                continue;
            };
            let cell = source.lookup(row, field);
            if cell == Cell::Null {
                continue;
            }
            if let Some(n) = cell.scalar().as_number() {
                acc.numbers += 1;
                acc.sum += n;
                acc.min = Some(acc.min.map_or(n, |m| m.min(n)));
                acc.max = Some(acc.max.map_or(n, |m| m.max(n)));
            }
            let text = cell.key_text();
            if matches!(reducer.kind, ReducerKind::ToList) && !acc.distinct.contains(&text) {
                acc.list.push(text.clone());
            }
            acc.distinct.insert(text);
        }
    }
    groups
        .into_values()
        .map(|(key_cells, accs)| {
            let mut cells = IndexMap::new();
            for (f, c) in fields.iter().zip(key_cells) {
                cells.insert(f.clone(), c);
            }
            for (reducer, acc) in reducers.iter().zip(accs) {
                let value = match reducer.kind {
                    ReducerKind::Count => Cell::Number(acc.count as f64),
                    ReducerKind::Sum => Cell::Number(acc.sum),
                    ReducerKind::Min => acc.min.map_or(Cell::Null, Cell::Number),
                    ReducerKind::Max => acc.max.map_or(Cell::Null, Cell::Number),
                    ReducerKind::Avg => {
                        if acc.numbers == 0 {
                            Cell::Null
                        } else {
                            Cell::Number(acc.sum / acc.numbers as f64)
                        }
                    }
                    ReducerKind::CountDistinct => Cell::Number(acc.distinct.len() as f64),
                    ReducerKind::ToList => Cell::List(acc.list),
                };
                cells.insert(reducer.alias.clone(), value);
            }
            Row { doc: None, cells }
        })
        .collect()
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
