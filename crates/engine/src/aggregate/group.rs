//! GROUPBY and its reducers, as partial state that merges: a shard groups its own rows,
//! a router merges the shards' groups and only then turns each into its reducers'
//! values. Every reducer but RANDOM_SAMPLE is exact under merging — AVG as a sum and a
//! count of numbers, STDDEV as a count, mean and sum of squared deviations, QUANTILE
//! and COUNT_DISTINCT as their values — so one node and many agree; a merged sample is
//! as uniform over all the rows as each shard's is over its own.

use std::collections::HashSet;

use indexmap::IndexMap;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use shoal_query::{Reducer, ReducerKind};

use super::{compare, lookup, Cell, Documents, Row};

/// Running state of one reducer over one group, one variant per reducer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Accumulator {
    Count(u64),
    Sum(f64),
    Min(Option<f64>),
    Max(Option<f64>),
    /// AVG: the sum of the values that read as numbers, and how many did.
    Avg {
        sum: f64,
        numbers: u64,
    },
    /// STDDEV, as Welford's running mean and sum of squared deviations; merged by
    /// Chan's formula, which keeps it exact (a sum of squares minus a squared sum
    /// loses every digit when the values are large and close).
    StdDev {
        numbers: u64,
        mean: f64,
        m2: f64,
    },
    /// QUANTILE's numbers, ordered only when the value is asked for.
    Quantile(Vec<f64>),
    /// COUNT_DISTINCT and COUNT_DISTINCTISH.
    Distinct(HashSet<String>),
    /// TOLIST's values in first-seen order, each once.
    List {
        seen: HashSet<String>,
        list: Vec<String>,
    },
    /// FIRST_VALUE: the chosen row's value and, with `BY`, its sort value.
    First(Option<(Cell, Cell)>),
    /// RANDOM_SAMPLE: a uniform sample (reservoir) of the `seen` values so far.
    Sample {
        seen: u64,
        items: Vec<String>,
    },
}

impl Accumulator {
    pub fn new(kind: &ReducerKind) -> Self {
        match kind {
            ReducerKind::Count => Accumulator::Count(0),
            ReducerKind::Sum => Accumulator::Sum(0.0),
            ReducerKind::Min => Accumulator::Min(None),
            ReducerKind::Max => Accumulator::Max(None),
            ReducerKind::Avg => Accumulator::Avg {
                sum: 0.0,
                numbers: 0,
            },
            ReducerKind::StdDev => Accumulator::StdDev {
                numbers: 0,
                mean: 0.0,
                m2: 0.0,
            },
            ReducerKind::Quantile(_) => Accumulator::Quantile(Vec::new()),
            ReducerKind::CountDistinct | ReducerKind::CountDistinctish => {
                Accumulator::Distinct(HashSet::new())
            }
            ReducerKind::ToList => Accumulator::List {
                seen: HashSet::new(),
                list: Vec::new(),
            },
            ReducerKind::FirstValue { .. } => Accumulator::First(None),
            ReducerKind::RandomSample(_) => Accumulator::Sample {
                seen: 0,
                items: Vec::new(),
            },
        }
    }

    /// Adds one row: `value` is the reducer's field (none for COUNT), `by` FIRST_VALUE's
    /// sort value.
    fn add(
        &mut self,
        kind: &ReducerKind,
        value: Option<Cell>,
        by: Option<Cell>,
        rng: &mut dyn RngCore,
    ) {
        if let Accumulator::Count(count) = self {
            *count += 1;
            return;
        }
        let value = value.unwrap_or(Cell::Null);
        if let Accumulator::First(first) = self {
            // Decision table for FIRST_VALUE (`by` present only with BY):
            // | chosen so far        | this row's BY value       | keep            |
            // |----------------------|---------------------------|-----------------|
            // | none                 | any                       | this row        |
            // | any, no BY           | —                         | the chosen row  |
            // | BY value null        | not null                  | this row        |
            // | BY value v           | strictly before v in order| this row        |
            // | otherwise            |                           | the chosen row  |
            let ascending = kind.first_by().map(|(_, ascending)| ascending);
            let candidate = (value, by.unwrap_or(Cell::Null));
            if first_wins(first.as_ref(), &candidate, ascending) {
                *first = Some(candidate);
            }
            return;
        }
        if value == Cell::Null {
            return;
        }
        let number = value.scalar().as_number();
        match self {
            Accumulator::Count(_) | Accumulator::First(_) => {}
            Accumulator::Sum(sum) => *sum += number.unwrap_or(0.0),
            Accumulator::Min(min) => *min = combine(*min, number, f64::min),
            Accumulator::Max(max) => *max = combine(*max, number, f64::max),
            Accumulator::Avg { sum, numbers } => {
                if let Some(n) = number {
                    *sum += n;
                    *numbers += 1;
                }
            }
            Accumulator::StdDev { numbers, mean, m2 } => {
                if let Some(x) = number {
                    *numbers += 1;
                    let delta = x - *mean;
                    *mean += delta / *numbers as f64;
                    *m2 += delta * (x - *mean);
                }
            }
            Accumulator::Quantile(values) => values.extend(number),
            Accumulator::Distinct(set) => {
                set.insert(value.key_text());
            }
            Accumulator::List { seen, list } => {
                let text = value.key_text();
                if seen.insert(text.clone()) {
                    list.push(text);
                }
            }
            Accumulator::Sample { seen, items } => {
                *seen += 1;
                let size = kind.sample_size();
                if items.len() < size {
                    items.push(value.key_text());
                } else if let Some(slot) = usize::try_from(rng.gen_range(0..*seen))
                    .ok()
                    .filter(|&j| j < size)
                {
                    items[slot] = value.key_text();
                }
            }
        }
    }

    /// Adds another shard's state for the same reducer. `self` holds the rows seen
    /// first (FIRST_VALUE without BY keeps its row).
    fn merge(&mut self, kind: &ReducerKind, other: Accumulator, rng: &mut dyn RngCore) {
        match (self, other) {
            (Accumulator::Count(a), Accumulator::Count(b)) => *a += b,
            (Accumulator::Sum(a), Accumulator::Sum(b)) => *a += b,
            (Accumulator::Min(a), Accumulator::Min(b)) => *a = combine(*a, b, f64::min),
            (Accumulator::Max(a), Accumulator::Max(b)) => *a = combine(*a, b, f64::max),
            (
                Accumulator::Avg { sum, numbers },
                Accumulator::Avg {
                    sum: other_sum,
                    numbers: other_numbers,
                },
            ) => {
                *sum += other_sum;
                *numbers += other_numbers;
            }
            (
                Accumulator::StdDev { numbers, mean, m2 },
                Accumulator::StdDev {
                    numbers: nb,
                    mean: mean_b,
                    m2: m2_b,
                },
            ) => {
                if nb == 0 {
                    return;
                }
                let na = *numbers as f64;
                let total = *numbers + nb;
                let delta = mean_b - *mean;
                let share = nb as f64 / total as f64;
                *m2 += m2_b + delta * delta * na * share;
                *mean += delta * share;
                *numbers = total;
            }
            (Accumulator::Quantile(a), Accumulator::Quantile(b)) => a.extend(b),
            (Accumulator::Distinct(a), Accumulator::Distinct(b)) => a.extend(b),
            (
                Accumulator::List { seen, list },
                Accumulator::List {
                    list: other_list, ..
                },
            ) => {
                for item in other_list {
                    if seen.insert(item.clone()) {
                        list.push(item);
                    }
                }
            }
            (Accumulator::First(a), Accumulator::First(b)) => {
                let ascending = kind.first_by().map(|(_, ascending)| ascending);
                if let Some(candidate) = b {
                    if first_wins(a.as_ref(), &candidate, ascending) {
                        *a = Some(candidate);
                    }
                }
            }
            (
                Accumulator::Sample { seen, items },
                Accumulator::Sample {
                    seen: other_seen,
                    items: other_items,
                },
            ) => {
                let size = kind.sample_size();
                *items = merge_samples(
                    (*seen, std::mem::take(items)),
                    (other_seen, other_items),
                    size,
                    rng,
                );
                *seen += other_seen;
            }
            // Both sides are built from the same reducer list (a router merges parts of
            // the request it planned, and every node of a cluster runs one version), so
            // the variants always pair up; a pair that did not would be a bug, and the
            // other side's state is dropped rather than the request failed.
            (mine, theirs) => {
                tracing::warn!(?mine, ?theirs, "aggregate state of another reducer ignored");
            }
        }
    }

    fn value(self, kind: &ReducerKind) -> Cell {
        match self {
            Accumulator::Count(count) => Cell::Number(count as f64),
            Accumulator::Sum(sum) => Cell::Number(sum),
            Accumulator::Min(min) => min.map_or(Cell::Null, Cell::Number),
            Accumulator::Max(max) => max.map_or(Cell::Null, Cell::Number),
            Accumulator::Avg { sum, numbers } => {
                if numbers == 0 {
                    Cell::Null
                } else {
                    Cell::Number(sum / numbers as f64)
                }
            }
            // RediSearch: 0 for fewer than two numbers.
            Accumulator::StdDev { numbers, m2, .. } => Cell::Number(if numbers < 2 {
                0.0
            } else {
                (m2 / (numbers - 1) as f64).max(0.0).sqrt()
            }),
            Accumulator::Quantile(mut values) => {
                let q = kind.quantile();
                values.sort_by(f64::total_cmp);
                quantile(&values, q).map_or(Cell::Null, Cell::Number)
            }
            Accumulator::Distinct(set) => Cell::Number(set.len() as f64),
            Accumulator::List { list, .. } => Cell::List(list),
            Accumulator::First(first) => first.map_or(Cell::Null, |(value, _)| value),
            Accumulator::Sample { items, .. } => Cell::List(items),
        }
    }
}

/// The value at fraction `q` of `sorted` (ascending): the smallest value with at
/// least `q × n` of the values at or below it, so always one of the values
/// (QUANTILE 0.5 of 1, 2, 3, 4 is 2; of 1 to 5, 3).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // Less a hair, so that 0.07 × 100 = 7.000000000000001 ranks 7th, not 8th.
    let rank = (q * n as f64 - 1e-9).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// Whether FIRST_VALUE's `candidate` (value, BY value) replaces the row chosen so far.
/// `ascending` is BY's order, `None` without BY.
fn first_wins(
    chosen: Option<&(Cell, Cell)>,
    candidate: &(Cell, Cell),
    ascending: Option<bool>,
) -> bool {
    let Some((_, chosen_by)) = chosen else {
        return true;
    };
    let Some(ascending) = ascending else {
        return false;
    };
    match (chosen_by, &candidate.1) {
        (_, Cell::Null) => false,
        (Cell::Null, _) => true,
        (chosen_by, by) => {
            let order = compare(by, chosen_by);
            if ascending {
                order.is_lt()
            } else {
                order.is_gt()
            }
        }
    }
}

/// A uniform sample of up to `size` of the union of two populations, from a uniform
/// sample of each: every draw takes from one side with the chance of its share of
/// the rows not yet drawn, then a random item of that side's sample.
fn merge_samples(
    (mut left, mut a): (u64, Vec<String>),
    (mut right, mut b): (u64, Vec<String>),
    size: usize,
    rng: &mut dyn RngCore,
) -> Vec<String> {
    a.shuffle(rng);
    b.shuffle(rng);
    let mut out = Vec::with_capacity(size.min(a.len() + b.len()));
    while out.len() < size && left + right > 0 {
        let from_left = rng.gen_range(0..left + right) < left;
        let side = if from_left { &mut a } else { &mut b };
        // A side's sample holds min(rows, size) items and fewer than `size` were
        // drawn, so it is not empty while its rows are not all drawn.
        let Some(item) = side.pop() else { break };
        out.push(item);
        if from_left {
            left -= 1;
        } else {
            right -= 1;
        }
    }
    out
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
        let mut rng = rand::thread_rng();
        for row in rows {
            let key: Vec<Cell> = fields.iter().map(|f| lookup(docs, row, f)).collect();
            let entry = self
                .0
                .entry(key.iter().map(Cell::key_text).collect())
                .or_insert_with(|| PartialGroup {
                    key,
                    accumulators: reducers.iter().map(|r| Accumulator::new(&r.kind)).collect(),
                });
            for (reducer, acc) in reducers.iter().zip(entry.accumulators.iter_mut()) {
                let value = reducer.field.as_deref().map(|f| lookup(docs, row, f));
                let by = reducer.kind.first_by().map(|(f, _)| lookup(docs, row, f));
                acc.add(&reducer.kind, value, by, &mut rng);
            }
        }
    }

    /// Adds another shard's groups.
    pub(super) fn merge(&mut self, groups: Vec<PartialGroup>, reducers: &[Reducer]) {
        let mut rng = rand::thread_rng();
        for group in groups {
            let text: Vec<String> = group.key.iter().map(Cell::key_text).collect();
            match self.0.get_mut(&text) {
                Some(mine) => {
                    for ((acc, other), reducer) in mine
                        .accumulators
                        .iter_mut()
                        .zip(group.accumulators)
                        .zip(reducers)
                    {
                        acc.merge(&reducer.kind, other, &mut rng);
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
                    cells.insert(reducer.alias.clone(), acc.value(&reducer.kind));
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
    use rand::rngs::StdRng;
    use rand::SeedableRng;

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
        named(kind.name(), kind, field)
    }

    fn named(alias: &str, kind: ReducerKind, field: Option<&str>) -> Reducer {
        Reducer {
            kind,
            field: field.map(str::to_owned),
            alias: alias.to_owned(),
        }
    }

    fn number(cell: &Cell) -> f64 {
        let Cell::Number(n) = cell else {
            panic!("not a number: {cell:?}")
        };
        *n
    }

    /// Grouping rows in two halves and merging gives what grouping them at once gives,
    /// for every reducer but RANDOM_SAMPLE (AVG, STDDEV, QUANTILE and COUNT_DISTINCT are
    /// the ones a naive merge gets wrong).
    #[test]
    fn merged_halves_equal_the_whole() {
        let rows: Vec<Row> = (0..40)
            .map(|i| {
                let mut cells = vec![
                    ("c", Cell::Text(["a", "b", "c"][i % 3].into())),
                    ("n", Cell::Number((i * 7 % 11) as f64)),
                    ("t", Cell::Text(format!("t{}", i % 5))),
                ];
                if i % 4 != 1 {
                    cells.push(("s", Cell::Number(1e9 + (i * 13 % 17) as f64)));
                }
                row(&cells)
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
            reducer(ReducerKind::CountDistinctish, Some("t")),
            reducer(ReducerKind::ToList, Some("t")),
            reducer(ReducerKind::StdDev, Some("s")),
            reducer(ReducerKind::Quantile(0.3), Some("n")),
            named("first", ReducerKind::FirstValue { by: None }, Some("t")),
            named(
                "oldest",
                ReducerKind::FirstValue {
                    by: Some(("s".into(), false)),
                },
                Some("t"),
            ),
        ];
        let mut whole = Groups::default();
        whole.add_rows(&rows, &fields, &reducers, &super::super::Detached);
        let whole = whole.finish(&fields, &reducers);

        let (left, right) = rows.split_at(17);
        let mut merged = Groups::default();
        for half in [left, right] {
            let mut g = Groups::default();
            g.add_rows(half, &fields, &reducers, &super::super::Detached);
            merged.merge(g.into_parts(), &reducers);
        }
        let merged = merged.finish(&fields, &reducers);
        assert_eq!(whole.len(), 3);
        for (w, m) in whole.iter().zip(&merged) {
            for (name, cell) in &w.cells {
                if name == "stddev" {
                    // Welford's and Chan's roundings differ: the values near 1e9 carry
                    // about 2.5e-8 of this deviation in their last bit.
                    let (a, b) = (number(cell), number(&m.cells[name]));
                    assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{a} vs {b}");
                } else {
                    assert_eq!(cell, &m.cells[name], "{name}");
                }
            }
        }
        // A naive average of the halves' averages would differ from this one.
        let avg = number(&whole[0].cells["avg"]);
        let ns: Vec<f64> = (0..40)
            .filter(|i| i % 3 == 0)
            .map(|i| (i * 7 % 11) as f64)
            .collect();
        assert!((avg - ns.iter().sum::<f64>() / ns.len() as f64).abs() < 1e-12);
        assert_eq!(whole[0].cells["count_distinct"], Cell::Number(5.0));
        assert_eq!(whole[0].cells["count_distinctish"], Cell::Number(5.0));

        // STDDEV against the two-pass textbook formula over group "a"'s numbers; the
        // values near 1e9 are where a sum of squares minus a squared sum would fail.
        let xs: Vec<f64> = (0..40)
            .filter(|i| i % 3 == 0 && i % 4 != 1)
            .map(|i| 1e9 + (i * 13 % 17) as f64)
            .collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
        let stddev = number(&whole[0].cells["stddev"]);
        assert!(
            (stddev - var.sqrt()).abs() < 1e-6,
            "{stddev} vs {}",
            var.sqrt()
        );
        assert!(stddev > 1.0);

        // QUANTILE 0.3 of group "a"'s 14 values: the 5th smallest (ceil(4.2)).
        let mut sorted = ns.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(whole[0].cells["quantile"], Cell::Number(sorted[4]));

        // FIRST_VALUE: without BY the group's first row (i = 0); BY s DESC the row with
        // the largest s, the first of them on a tie.
        assert_eq!(whole[0].cells["first"], Cell::Text("t0".into()));
        let best = (0..40)
            .filter(|i| i % 3 == 0 && i % 4 != 1)
            .max_by_key(|i| (i * 13 % 17, std::cmp::Reverse(*i)))
            .unwrap();
        assert_eq!(
            whole[0].cells["oldest"],
            Cell::Text(format!("t{}", best % 5))
        );
    }

    #[test]
    fn quantiles_are_values_of_the_group() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 0.25), Some(1.0));
        assert_eq!(quantile(&v, 0.26), Some(2.0));
        assert_eq!(quantile(&v, 0.5), Some(2.0));
        assert_eq!(quantile(&v, 1.0), Some(4.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), Some(3.0));
        assert_eq!(quantile(&[], 0.5), None);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&hundred, 0.07), Some(7.0));
        assert_eq!(quantile(&hundred, 0.0), Some(1.0));
    }

    /// FIRST_VALUE BY: rows without the BY field lose to rows with it, in either
    /// order, and ties keep the row seen first.
    #[test]
    fn first_value_by_skips_missing_sort_values() {
        let mut rng = StdRng::seed_from_u64(1);
        for ascending in [true, false] {
            let kind = ReducerKind::FirstValue {
                by: Some(("age".into(), ascending)),
            };
            let mut acc = Accumulator::new(&kind);
            let rows = [
                ("nobody", Cell::Null),
                ("ann", Cell::Number(30.0)),
                ("bob", Cell::Number(20.0)),
                ("cy", Cell::Number(40.0)),
                ("dee", Cell::Number(20.0)),
                ("eve", Cell::Number(40.0)),
                ("nil", Cell::Null),
            ];
            for (name, age) in rows {
                acc.add(&kind, Some(Cell::Text(name.into())), Some(age), &mut rng);
            }
            let want = if ascending { "bob" } else { "cy" };
            assert_eq!(acc.value(&kind), Cell::Text(want.into()));
        }
    }

    /// RANDOM_SAMPLE: a sample never exceeds its size, holds only values of the group,
    /// and merged over shards of unequal size it is uniform over all the rows: each of
    /// 10 values (3 on one shard, 7 on the other) drawn alone about a tenth of the time.
    #[test]
    fn merged_samples_are_uniform() {
        let mut rng = StdRng::seed_from_u64(7);
        let kind = ReducerKind::RandomSample(1);
        let mut counts = [0u32; 10];
        let trials = 20_000;
        for _ in 0..trials {
            let mut left = Accumulator::new(&kind);
            let mut right = Accumulator::new(&kind);
            for v in 0..10 {
                let side = if v < 3 { &mut left } else { &mut right };
                side.add(&kind, Some(Cell::Number(f64::from(v))), None, &mut rng);
            }
            left.merge(&kind, right, &mut rng);
            let Cell::List(items) = left.value(&kind) else {
                panic!("a list")
            };
            assert_eq!(items.len(), 1);
            let v: usize = items[0].parse().unwrap();
            counts[v] += 1;
        }
        for (v, &c) in counts.iter().enumerate() {
            // Expected 2,000 each; ±300 is over six standard deviations (σ ≈ 42).
            assert!((1_700..=2_300).contains(&c), "value {v}: {c} of {trials}");
        }

        let kind = ReducerKind::RandomSample(4);
        let mut a = Accumulator::new(&kind);
        let mut b = Accumulator::new(&kind);
        for v in 0..50 {
            let side = if v % 2 == 0 { &mut a } else { &mut b };
            side.add(&kind, Some(Cell::Text(format!("v{v}"))), None, &mut rng);
        }
        a.merge(&kind, b, &mut rng);
        let Cell::List(items) = a.value(&kind) else {
            panic!("a list")
        };
        assert_eq!(items.len(), 4);
        let distinct: HashSet<&String> = items.iter().collect();
        assert_eq!(distinct.len(), 4, "drawn without replacement: {items:?}");
        assert!(items.iter().all(|i| i.starts_with('v')));

        // Fewer rows than the size: all of them.
        let mut small = Accumulator::new(&kind);
        for v in ["x", "y"] {
            small.add(&kind, Some(Cell::Text(v.into())), None, &mut rng);
        }
        let Cell::List(mut items) = small.value(&kind) else {
            panic!("a list")
        };
        items.sort();
        assert_eq!(items, ["x", "y"]);
    }
}
