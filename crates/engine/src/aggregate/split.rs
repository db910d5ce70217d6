//! FT.AGGREGATE over shard groups: what each shard runs and sends ([`part`]) and how a
//! router finishes the request from the shards' parts ([`merge_parts`]), so that the
//! answer is the one a single node holding every document gives.
//!
//! The leading APPLY and FILTER steps look at one row at a time, so shards run them.
//! What follows them decides the rest:
//!
//! | query, then the next step        | a shard runs and sends                    | the router                                  |
//! |----------------------------------|-------------------------------------------|---------------------------------------------|
//! | KNN, any steps                   | no step; its k nearest rows               | keeps the k nearest of all, runs every step |
//! | GROUPBY                          | the leading steps, then partial groups    | merges groups, reduces, runs the rest       |
//! | SORTBY MAX m / SORTBY + LIMIT o n| the leading steps, the sort, first m / o+n| sorts again, runs the rest                  |
//! | LIMIT o n                        | the leading steps, its first o+n rows     | runs the rest                               |
//! | anything else, or no step        | the leading steps, every row              | runs the rest                               |
//!
//! KNN runs nothing on the shards because the k nearest are chosen over all the
//! documents before the first step: a FILTER run on a shard would let the k+1-th
//! nearest in. A sort's first m rows overall are among the shards' first m each, so a
//! shard may cut its sorted rows. Rows sent to a router carry (unshown) every field the
//! router's steps read up to the first GROUPBY, as the router has no documents.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use shoal_query::{AggregateRequest, AggregateStep, Reducer};

use super::group::{Groups, PartialGroup};
use super::{compare, lookup, run, source_rows, Cell, Detached, Documents, Row, Source};
use crate::error::{EngineError, Result};
use crate::keyspace::Keyspace;
use crate::layout::Layout;
use crate::search_index::SearchIndex;

/// A shard's part of an FT.AGGREGATE.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AggregatePart {
    /// Rows after the steps the shard ran. `knn`: the distance's name and k, when the
    /// router must first keep the k nearest rows of all shards.
    Rows {
        rows: Vec<Row>,
        knn: Option<(String, usize)>,
    },
    /// The shard's groups for the first GROUPBY, not yet reduced.
    Groups(Vec<PartialGroup>),
}

/// Where the shards stop and the router takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Shards send their k nearest rows; the router runs every step.
    Knn,
    /// Shards run the leading steps and group; step `pushed` is that GROUPBY.
    Groups,
    /// Shards run the leading steps, then `sorted` (the SORTBY at `pushed`) and keep
    /// their first `window` rows if given.
    Rows { window: Option<usize>, sorted: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Split {
    /// How many leading steps (APPLY, FILTER) the shards run.
    pushed: usize,
    shape: Shape,
}

fn split(steps: &[AggregateStep], knn: bool) -> Split {
    if knn {
        return Split {
            pushed: 0,
            shape: Shape::Knn,
        };
    }
    let pushed = steps
        .iter()
        .take_while(|s| matches!(s, AggregateStep::Apply { .. } | AggregateStep::Filter(_)))
        .count();
    let limit_after = |at: usize| match steps.get(at) {
        Some(AggregateStep::Limit { offset, num }) => Some(offset.saturating_add(*num)),
        _ => None,
    };
    let shape = match steps.get(pushed) {
        Some(AggregateStep::GroupBy { .. }) => Shape::Groups,
        Some(AggregateStep::SortBy { max, .. }) => {
            let window = match (*max, limit_after(pushed + 1)) {
                (Some(m), Some(l)) => Some(m.min(l)),
                (m, l) => m.or(l),
            };
            Shape::Rows {
                window,
                sorted: window.is_some(),
            }
        }
        Some(AggregateStep::Limit { .. }) => Shape::Rows {
            window: limit_after(pushed),
            sorted: false,
        },
        Some(AggregateStep::Apply { .. } | AggregateStep::Filter(_)) | None => Shape::Rows {
            window: None,
            sorted: false,
        },
    };
    Split { pushed, shape }
}

/// Every field `steps` read before their first GROUPBY (which it reads too); rows
/// after a GROUPBY have only their cells.
fn fields_read(steps: &[AggregateStep]) -> Vec<&str> {
    let mut out = Vec::new();
    for step in steps {
        match step {
            AggregateStep::GroupBy { fields, reducers } => {
                out.extend(fields.iter().map(String::as_str));
                out.extend(reducers.iter().flat_map(Reducer::reads));
                break;
            }
            AggregateStep::SortBy { keys, .. } => out.extend(keys.iter().map(|(k, _)| k.as_str())),
            AggregateStep::Apply { expr, .. } | AggregateStep::Filter(expr) => {
                expr.fields(&mut out)
            }
            AggregateStep::Limit { .. } => {}
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Puts into each row the document fields `names` the router will read.
fn carry(rows: &mut [Row], names: &[&str], docs: &dyn Documents) {
    for row in rows {
        let Some(doc) = row.doc else { continue };
        for &name in names {
            if row.cells.contains_key(name) || row.carried.contains_key(name) {
                continue;
            }
            let cell = docs.field(doc, name);
            if cell != Cell::Null {
                row.carried.insert(name.to_owned(), cell);
            }
        }
    }
}

/// This shard's part of `request` (see the module's table).
pub fn part(
    index: &SearchIndex,
    keyspace: &Keyspace,
    layout: &Layout,
    request: &AggregateRequest,
    now: u64,
    deadline: Option<Instant>,
) -> Result<AggregatePart> {
    let source = Source {
        index,
        keyspace,
        layout,
        now,
    };
    let (rows, knn) = source_rows(&source, request, deadline)?;
    let steps = &request.steps;
    let Split { pushed, shape } = split(steps, knn.is_some());
    match shape {
        Shape::Knn => {
            let mut rows = rows;
            let mut names = fields_read(steps);
            // Ties in distance are broken by key, so that every router keeps the same rows.
            names.push("__key");
            carry(&mut rows, &names, &source);
            Ok(AggregatePart::Rows { rows, knn })
        }
        Shape::Groups => {
            let rows = run(rows, &steps[..pushed], &source, deadline)?;
            let Some(AggregateStep::GroupBy { fields, reducers }) = steps.get(pushed) else {
                return Err(EngineError::PartsDisagree("FT.AGGREGATE"));
            };
            let mut groups = Groups::default();
            groups.add_rows(&rows, fields, reducers, &source);
            Ok(AggregatePart::Groups(groups.into_parts()))
        }
        Shape::Rows { window, sorted } => {
            let mut rows = run(rows, &steps[..pushed], &source, deadline)?;
            match (sorted, steps.get(pushed)) {
                (true, Some(AggregateStep::SortBy { keys, .. })) => {
                    let cut = AggregateStep::SortBy {
                        keys: keys.clone(),
                        max: window,
                    };
                    rows = run(rows, std::slice::from_ref(&cut), &source, deadline)?;
                }
                _ => {
                    if let Some(window) = window {
                        rows.truncate(window);
                    }
                }
            }
            carry(&mut rows, &fields_read(&steps[pushed..]), &source);
            Ok(AggregatePart::Rows { rows, knn: None })
        }
    }
}

/// The rows of `request` from every shard's part.
pub fn merge_parts(request: &AggregateRequest, parts: Vec<AggregatePart>) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut groups: Option<Groups> = None;
    let mut knn = None;
    // Shards group at the first GROUPBY after the leading APPLY and FILTER steps.
    let leading = request
        .steps
        .iter()
        .take_while(|s| matches!(s, AggregateStep::Apply { .. } | AggregateStep::Filter(_)))
        .count();
    let reducers: &[Reducer] =
        if let Some(AggregateStep::GroupBy { reducers, .. }) = request.steps.get(leading) {
            reducers
        } else {
            &[]
        };
    for part in parts {
        match part {
            AggregatePart::Rows { rows: more, knn: k } => {
                rows.extend(more);
                knn = knn.or(k);
            }
            AggregatePart::Groups(more) => groups
                .get_or_insert_with(Groups::default)
                .merge(more, reducers),
        }
    }
    let steps = &request.steps;
    let Split { pushed, shape } = split(steps, knn.is_some());
    let disagree = || Err(EngineError::PartsDisagree("FT.AGGREGATE"));
    match (shape, groups, knn) {
        (Shape::Knn, None, Some((alias, k))) => {
            let distance = |r: &Row| lookup(&Detached, r, &alias);
            let key = |r: &Row| lookup(&Detached, r, "__key");
            rows.sort_by(|a, b| {
                compare(&distance(a), &distance(b)).then_with(|| compare(&key(a), &key(b)))
            });
            rows.truncate(k);
            run(rows, steps, &Detached, None)
        }
        (Shape::Groups, Some(groups), None) if rows.is_empty() => {
            let Some(AggregateStep::GroupBy { fields, reducers }) = steps.get(pushed) else {
                return disagree();
            };
            let rows = groups.finish(fields, reducers);
            run(rows, &steps[pushed + 1..], &Detached, None)
        }
        (Shape::Rows { .. }, None, None) => run(rows, &steps[pushed..], &Detached, None),
        (Shape::Knn | Shape::Groups | Shape::Rows { .. }, _, _) => disagree(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_query::aggregate::parse_aggregate;

    fn shape_of(args: &[&str], knn: bool) -> Split {
        let mut all = vec!["idx", "*"];
        all.extend_from_slice(args);
        split(&parse_aggregate(&all).unwrap().steps, knn)
    }

    #[test]
    fn the_decision_table() {
        let rows = |window, sorted| Shape::Rows { window, sorted };
        let cases: &[(&[&str], bool, usize, Shape)] = &[
            (&["GROUPBY", "1", "@c"], true, 0, Shape::Knn),
            (
                &["APPLY", "@a*2", "AS", "b", "GROUPBY", "1", "@c"],
                false,
                1,
                Shape::Groups,
            ),
            (
                &["FILTER", "@a>1", "SORTBY", "1", "@a", "MAX", "5"],
                false,
                1,
                rows(Some(5), true),
            ),
            (
                &["SORTBY", "1", "@a", "LIMIT", "2", "3"],
                false,
                0,
                rows(Some(5), true),
            ),
            (
                &["SORTBY", "1", "@a", "MAX", "9", "LIMIT", "0", "3"],
                false,
                0,
                rows(Some(3), true),
            ),
            (&["SORTBY", "1", "@a"], false, 0, rows(None, false)),
            (
                &["LIMIT", "10", "5", "GROUPBY", "1", "@c"],
                false,
                0,
                rows(Some(15), false),
            ),
            (&["APPLY", "@a", "AS", "b"], false, 1, rows(None, false)),
            (&[], false, 0, rows(None, false)),
        ];
        for (args, knn, pushed, shape) in cases {
            let got = shape_of(args, *knn);
            assert_eq!((got.pushed, got.shape), (*pushed, *shape), "{args:?}");
        }
    }

    #[test]
    fn fields_read_stop_at_the_first_groupby() {
        let r = parse_aggregate(&[
            "i", "*", "APPLY", "@a+@b", "AS", "s", "FILTER", "@s>1", "SORTBY", "1", "@d",
            "GROUPBY", "1", "@c", "REDUCE", "AVG", "1", "@e", "APPLY", "@x", "AS", "y",
        ])
        .unwrap();
        assert_eq!(fields_read(&r.steps), ["a", "b", "c", "d", "e", "s"]);
    }
}
