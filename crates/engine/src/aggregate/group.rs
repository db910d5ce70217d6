//! GROUPBY and its reducers, as partial state that merges: a shard groups its own rows,
//! a router merges the shards' groups and only then turns each into its reducers'
//! values. Every reducer is kept exact under merging — AVG as a sum and a count of
//! numbers, COUNT_DISTINCT as the set of values — so one node and many agree.

use std::collections::HashSet;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use shoal_query::{Reducer, ReducerKind};

use super::{lookup, Cell, Documents, Row};

/// Running state of one reducer over one group.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accumulator {
    count: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    /// How many values read as numbers (AVG's divisor).
    numbers: u64,
    distinct: HashSet<String>,
    /// TOLIST's values in first-seen order, each once.
    list: Vec<String>,
}

impl Accumulator {
    fn add(&mut self, value: Option<Cell>, kind: ReducerKind) {
        self.count += 1;
        let Some(cell) = value.filter(|c| *c != Cell::Null) else {
            return;
        };
        if let Some(n) = cell.scalar().as_number() {
            self.numbers += 1;
            self.sum += n;
            self.min = Some(self.min.map_or(n, |m| m.min(n)));
            self.max = Some(self.max.map_or(n, |m| m.max(n)));
        }
        let text = cell.key_text();
        if matches!(kind, ReducerKind::ToList) && !self.distinct.contains(&text) {
            self.list.push(text.clone());
        }
        self.distinct.insert(text);
    }

    fn merge(&mut self, other: Accumulator) {
        self.count += other.count;
        self.sum += other.sum;
        self.numbers += other.numbers;
        self.min = combine(self.min, other.min, f64::min);
        self.max = combine(self.max, other.max, f64::max);
        for item in other.list {
            if !self.distinct.contains(&item) {
                self.list.push(item);
            }
        }
        self.distinct.extend(other.distinct);
    }

    fn value(self, kind: ReducerKind) -> Cell {
        match kind {
            ReducerKind::Count => Cell::Number(self.count as f64),
            ReducerKind::Sum => Cell::Number(self.sum),
            ReducerKind::Min => self.min.map_or(Cell::Null, Cell::Number),
            ReducerKind::Max => self.max.map_or(Cell::Null, Cell::Number),
            ReducerKind::Avg => {
                if self.numbers == 0 {
                    Cell::Null
                } else {
                    Cell::Number(self.sum / self.numbers as f64)
                }
            }
            ReducerKind::CountDistinct => Cell::Number(self.distinct.len() as f64),
            ReducerKind::ToList => Cell::List(self.list),
        }
    }
}

fn combine(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(pick(x, y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// One group of a shard: the values of the GROUPBY fields and each reducer's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialGroup {
    key: Vec<Cell>,
    accumulators: Vec<Accumulator>,
}

/// Groups by the text of their GROUPBY values, in first-seen order.
#[derive(Debug, Default)]
pub(super) struct Groups(IndexMap<Vec<String>, PartialGroup>);

impl Groups {
    pub(super) fn add_rows(
        &mut self,
        rows: &[Row],
        fields: &[String],
        reducers: &[Reducer],
        docs: &dyn Documents,
    ) {
        for row in rows {
            let key: Vec<Cell> = fields.iter().map(|f| lookup(docs, row, f)).collect();
            let entry = self
                .0
                .entry(key.iter().map(Cell::key_text).collect())
                .or_insert_with(|| PartialGroup {
                    key,
                    accumulators: vec![Accumulator::default(); reducers.len()],
                });
            for (reducer, acc) in reducers.iter().zip(entry.accumulators.iter_mut()) {
                let value = reducer.field.as_deref().map(|f| lookup(docs, row, f));
                acc.add(value, reducer.kind);
            }
        }
    }

    /// Adds another shard's groups.
    pub(super) fn merge(&mut self, groups: Vec<PartialGroup>) {
        for group in groups {
            let text: Vec<String> = group.key.iter().map(Cell::key_text).collect();
            match self.0.get_mut(&text) {
                Some(mine) => {
                    for (acc, other) in mine.accumulators.iter_mut().zip(group.accumulators) {
                        acc.merge(other);
                    }
                }
                None => {
                    self.0.insert(text, group);
                }
            }
        }
    }

    pub(super) fn into_parts(self) -> Vec<PartialGroup> {
        self.0.into_values().collect()
    }

    /// One row per group: its GROUPBY fields, then each reducer's value.
    pub(super) fn finish(self, fields: &[String], reducers: &[Reducer]) -> Vec<Row> {
        self.0
            .into_values()
            .map(|group| {
                let mut cells = IndexMap::new();
                for (f, c) in fields.iter().zip(group.key) {
                    cells.insert(f.clone(), c);
                }
                for (reducer, acc) in reducers.iter().zip(group.accumulators) {
                    cells.insert(reducer.alias.clone(), acc.value(reducer.kind));
                }
                Row {
                    doc: None,
                    cells,
                    carried: IndexMap::new(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[(&str, Cell)]) -> Row {
        Row {
            doc: None,
            cells: cells
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            carried: IndexMap::new(),
        }
    }

    fn reducer(kind: ReducerKind, field: Option<&str>) -> Reducer {
        Reducer {
            kind,
            field: field.map(str::to_owned),
            alias: kind.name().to_owned(),
        }
    }

    /// Grouping rows in two halves and merging gives what grouping them at once gives,
    /// for every reducer (AVG and COUNT_DISTINCT are the ones a naive merge gets wrong).
    #[test]
    fn merged_halves_equal_the_whole() {
        let rows: Vec<Row> = (0..40)
            .map(|i| {
                row(&[
                    ("c", Cell::Text(["a", "b", "c"][i % 3].into())),
                    ("n", Cell::Number((i * 7 % 11) as f64)),
                    ("t", Cell::Text(format!("t{}", i % 5))),
                ])
            })
            .collect();
        let fields = vec!["c".to_owned()];
        let reducers = vec![
            reducer(ReducerKind::Count, None),
            reducer(ReducerKind::Sum, Some("n")),
            reducer(ReducerKind::Min, Some("n")),
            reducer(ReducerKind::Max, Some("n")),
            reducer(ReducerKind::Avg, Some("n")),
            reducer(ReducerKind::CountDistinct, Some("t")),
            reducer(ReducerKind::ToList, Some("t")),
        ];
        let mut whole = Groups::default();
        whole.add_rows(&rows, &fields, &reducers, &super::super::Detached);
        let whole = whole.finish(&fields, &reducers);

        let (left, right) = rows.split_at(17);
        let mut merged = Groups::default();
        for half in [left, right] {
            let mut g = Groups::default();
            g.add_rows(half, &fields, &reducers, &super::super::Detached);
            merged.merge(g.into_parts());
        }
        let merged = merged.finish(&fields, &reducers);
        assert_eq!(whole.len(), 3);
        for (w, m) in whole.iter().zip(&merged) {
            assert_eq!(w.cells, m.cells);
        }
        // A naive average of the halves' averages would differ from this one.
        let Cell::Number(avg) = whole[0].cells["avg"] else {
            panic!("avg is a number")
        };
        let ns: Vec<f64> = (0..40)
            .filter(|i| i % 3 == 0)
            .map(|i| (i * 7 % 11) as f64)
            .collect();
        assert!((avg - ns.iter().sum::<f64>() / ns.len() as f64).abs() < 1e-12);
        assert_eq!(whole[0].cells["count_distinct"], Cell::Number(5.0));
    }
}
