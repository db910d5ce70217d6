//! The checks run after the faults healed.
//!
//! **Per-key linearizability** (Wing & Gong's search with Lowe's memoization). Several
//! workers share each key, through different routers, so a key's operations overlap
//! in time. Each acknowledged operation took effect at one instant between its start
//! and its end; an operation whose outcome is unknown took effect at some instant
//! after its start, or never; a failed one never did. The history is linearizable if
//! some order of those instants, consistent with real time, makes every acknowledged
//! read see the last change before it and the final read (on the leaders, after
//! healing) see the last of all.
//!
//! The search builds the order one operation at a time. The next one may be any
//! operation not yet placed that started before the earliest end among the
//! acknowledged operations not yet placed (that one must come before anything that
//! started after it ended). A state is (the set placed, the register's value); states
//! already explored are not explored again, which keeps the search near linear when
//! few operations overlap. The final read is an acknowledged read that starts after
//! everything else ended.
//!
//! Acknowledged writes that the final read does not see are the "lost writes" the
//! search reports: no placement explains them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::history::{Call, Op, Outcome, Seen};

/// Most unknown changes one key's history may hold: each one doubles what the search
/// may have to explore.
pub const MAX_UNKNOWN: usize = 20;
/// States one key's search may visit before it gives up (and the key is skipped).
const MAX_STATES: usize = 500_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the history; the message says which operation first.
    Violation(String),
    /// Too many unknown outcomes or states to search; not counted as either.
    Skipped,
}

fn apply(value: Option<u64>, call: &Call) -> Option<u64> {
    match call {
        Call::Write(v) => Some(*v),
        Call::Delete => None,
        Call::Read | Call::Knn(_) => value,
    }
}

/// Whether an acknowledged read saw what `value` says.
fn reads(value: Option<u64>, call: &Call, seen: &Seen) -> bool {
    match (call, seen) {
        (Call::Read, Seen::Value(v)) => *v == value,
        (Call::Knn(v), Seen::Found(found)) => *found == (value == Some(*v)),
        (Call::Write(_) | Call::Delete, Seen::Done) => true,
        // A KNN answer that names a key twice reads nothing consistent (run.rs
        // reports it as a violation of its own too).
        (Call::Read | Call::Knn(_) | Call::Write(_) | Call::Delete, _) => false,
    }
}

/// One operation as the search sees it.
struct Entry<'a> {
    call: &'a Call,
    /// What it was told; None for an unknown outcome (it may be placed, or not).
    seen: Option<&'a Seen>,
    start: Duration,
    /// None: unknown, so it constrains nothing after it.
    end: Option<Duration>,
    /// The operation, for the report (None for the final read).
    op: Option<&'a Op>,
}

/// A set of entries by index.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Placed(Vec<u64>);

impl Placed {
    fn new(n: usize) -> Self {
        Placed(vec![0; n.div_ceil(64)])
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    /// The first index not in the set: everything before it is placed.
    fn first_missing(&self) -> usize {
        self.0
            .iter()
            .position(|w| *w != u64::MAX)
            .map_or(self.0.len() * 64, |at| {
                at * 64 + self.0[at].trailing_ones() as usize
            })
    }
    fn with(&self, i: usize) -> Self {
        let mut out = self.clone();
        out.0[i / 64] |= 1 << (i % 64);
        out
    }
}

/// Checks one key's operations against the value read at the end.
pub fn key_history(ops: &[&Op], final_value: Option<u64>) -> Verdict {
    let after_all = ops.iter().map(|o| o.end).max().unwrap_or_default() + Duration::from_millis(1);
    // Values are unique, so a value some acknowledged read saw was written by exactly
    // one write. If that write's outcome is unknown, it certainly took effect, before
    // the first read that saw it ended: it is placed like an acknowledged write with
    // that end. Only unknown changes nobody saw stay optional, which keeps the search
    // from doubling its states for every unknown write that did land.
    let mut seen_by: HashMap<u64, Duration> = HashMap::new();
    for op in ops {
        let value = match (&op.call, &op.outcome) {
            (Call::Read, Outcome::Ok(Seen::Value(Some(v)))) => Some(*v),
            (Call::Knn(v), Outcome::Ok(Seen::Found(true))) => Some(*v),
            _ => None,
        };
        if let Some(v) = value {
            let end = seen_by.entry(v).or_insert(op.end);
            *end = (*end).min(op.end);
        }
    }
    if let Some(v) = final_value {
        seen_by.entry(v).or_insert(after_all);
    }
    let landed = Seen::Done;
    let mut entries: Vec<Entry> = Vec::with_capacity(ops.len() + 1);
    for op in ops {
        let (seen, end) = match (&op.outcome, &op.call) {
            (Outcome::Ok(seen), _) => (Some(seen), Some(op.end)),
            (Outcome::Unknown(_), Call::Write(v)) => match seen_by.get(v) {
                // A read that ended before the write started is a phantom: this end,
                // before the start, makes the entry impossible to place.
                Some(end) => (Some(&landed), Some(*end)),
                None => (None, None),
            },
            (Outcome::Unknown(_), Call::Delete) => (None, None),
            // A read whose answer never came constrains nothing.
            (Outcome::Unknown(_), Call::Read | Call::Knn(_)) | (Outcome::Failed(_), _) => continue,
        };
        entries.push(Entry {
            call: &op.call,
            seen,
            start: op.start,
            end,
            op: Some(op),
        });
    }
    if entries.iter().filter(|e| e.seen.is_none()).count() > MAX_UNKNOWN {
        return Verdict::Skipped;
    }
    let final_read = Seen::Value(final_value);
    entries.push(Entry {
        call: &Call::Read,
        seen: Some(&final_read),
        start: after_all,
        end: Some(after_all),
        op: None,
    });
    entries.sort_by_key(|e| e.start);
    let definite = entries.iter().filter(|e| e.seen.is_some()).count();
    search(&entries, definite, ops)
}

fn search(entries: &[Entry], definite: usize, ops: &[&Op]) -> Verdict {
    let mut explored: HashSet<(Placed, Option<u64>)> = HashSet::new();
    let mut stack = vec![(Placed::new(entries.len()), None::<u64>, 0usize)];
    // The state that placed the most acknowledged operations, and the operation that
    // bounded what it could place next, for the report.
    let mut furthest: (usize, Option<usize>) = (0, None);
    while let Some((placed, value, placed_definite)) = stack.pop() {
        if placed_definite == definite {
            return Verdict::Linearizable;
        }
        if explored.len() >= MAX_STATES {
            return Verdict::Skipped;
        }
        if !explored.insert((placed.clone(), value)) {
            continue;
        }
        // The earliest end among the acknowledged operations not yet placed: only
        // operations that started before it may come next. Entries are in start
        // order, so the scan stops at the first start past it (an entry further on
        // ends after it starts, so after the horizon; a phantom, which "ends" before
        // it starts, is never placed whichever horizon is taken).
        let first = placed.first_missing();
        let mut horizon: Option<(Duration, usize)> = None;
        for (i, e) in entries.iter().enumerate().skip(first) {
            if horizon.is_some_and(|(h, _)| e.start > h) {
                break;
            }
            if let (false, Some(end)) = (placed.has(i), e.end) {
                if horizon.is_none_or(|(h, _)| end < h) {
                    horizon = Some((end, i));
                }
            }
        }
        let Some((horizon_end, bounding)) = horizon else {
            continue;
        };
        if placed_definite >= furthest.0 {
            furthest = (placed_definite, Some(bounding));
        }
        // Pushed in reverse start order, so the earliest-starting candidate is tried
        // first: in a history with little overlap that is almost always the answer.
        let mut next = Vec::new();
        for (i, e) in entries.iter().enumerate().skip(first) {
            if e.start > horizon_end {
                break;
            }
            if placed.has(i) {
                continue;
            }
            match e.seen {
                Some(seen) if reads(value, e.call, seen) => {
                    next.push((placed.with(i), apply(value, e.call), placed_definite + 1));
                }
                Some(_) => {}
                None => next.push((placed.with(i), apply(value, e.call), placed_definite)),
            }
        }
        stack.extend(next.into_iter().rev());
    }
    let what = match furthest.1.and_then(|i| entries.get(i)) {
        Some(Entry {
            call,
            seen,
            start,
            op: Some(op),
            ..
        }) => format!(
            "{} {:?} from {:?} to {:?} saw {:?}, which no order of the changes around it explains",
            op.key, call, start, op.end, seen
        ),
        Some(Entry { seen: Some(seen), .. }) => format!(
            "{}: the final read saw {seen:?}, which no order of the changes explains (a lost or phantom write)",
            ops.first().map_or("?", |o| o.key.as_str())
        ),
        Some(Entry { seen: None, .. }) | None => format!(
            "{}: no order of the operations explains the history",
            ops.first().map_or("?", |o| o.key.as_str())
        ),
    };
    Verdict::Violation(what)
}

/// Every key's verdict.
pub fn histories(ops: &[Op], finals: &BTreeMap<String, Option<u64>>) -> BTreeMap<String, Verdict> {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    by_key
        .into_iter()
        .map(|(key, ops)| {
            let final_value = finals.get(key).copied().flatten();
            (key.to_owned(), key_history(&ops, final_value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn op(i: u64, call: Call, outcome: Outcome) -> Op {
        Op {
            worker: 0,
            key: "k".into(),
            call,
            start: Duration::from_millis(i * 10),
            end: Duration::from_millis(i * 10 + 5),
            outcome,
        }
    }

    fn ok(i: u64, call: Call) -> Op {
        let seen = match call {
            Call::Write(_) | Call::Delete => Seen::Done,
            Call::Read | Call::Knn(_) => Seen::Value(None),
        };
        op(i, call, Outcome::Ok(seen))
    }

    fn read(i: u64, v: Option<u64>) -> Op {
        op(i, Call::Read, Outcome::Ok(Seen::Value(v)))
    }

    fn unknown(i: u64, call: Call) -> Op {
        op(i, call, Outcome::Unknown("timed out".into()))
    }

    fn verdict(ops: &[Op], last: Option<u64>) -> Verdict {
        key_history(&ops.iter().collect::<Vec<_>>(), last)
    }

    #[test]
    fn acknowledged_writes_must_be_seen() {
        let h = [
            ok(0, Call::Write(1)),
            read(1, Some(1)),
            ok(2, Call::Write(2)),
        ];
        assert_eq!(verdict(&h, Some(2)), Verdict::Linearizable);
        // The last acknowledged write is gone at the end: lost.
        assert!(matches!(verdict(&h, Some(1)), Verdict::Violation(_)));
        assert!(matches!(verdict(&h, None), Verdict::Violation(_)));
        // A read that saw an older value than an acknowledged write before it.
        let stale = [
            ok(0, Call::Write(1)),
            ok(1, Call::Write(2)),
            read(2, Some(1)),
        ];
        assert!(matches!(verdict(&stale, Some(2)), Verdict::Violation(_)));
    }

    #[test]
    fn an_unknown_write_may_land_late_or_never() {
        let h = [
            ok(0, Call::Write(1)),
            unknown(1, Call::Write(2)),
            read(2, Some(1)),
        ];
        assert_eq!(verdict(&h, Some(1)), Verdict::Linearizable, "never");
        assert_eq!(
            verdict(&h, Some(2)),
            Verdict::Linearizable,
            "after the read"
        );
        // Once seen, an unknown write cannot be unseen by a later read without a change.
        let h = [
            ok(0, Call::Write(1)),
            unknown(1, Call::Write(2)),
            read(2, Some(2)),
            read(3, Some(1)),
        ];
        assert!(matches!(verdict(&h, Some(1)), Verdict::Violation(_)));
        // A failed write never lands.
        let h = [
            ok(0, Call::Write(1)),
            op(1, Call::Write(2), Outcome::Failed("no".into())),
        ];
        assert!(matches!(verdict(&h, Some(2)), Verdict::Violation(_)));
    }

    /// An operation of `worker` from `start` to `end` ms.
    fn at(worker: usize, start: u64, end: u64, call: Call, outcome: Outcome) -> Op {
        Op {
            worker,
            key: "k".into(),
            call,
            start: Duration::from_millis(start),
            end: Duration::from_millis(end),
            outcome,
        }
    }

    fn done() -> Outcome {
        Outcome::Ok(Seen::Done)
    }

    fn saw(v: Option<u64>) -> Outcome {
        Outcome::Ok(Seen::Value(v))
    }

    #[test]
    fn overlapping_writes_may_take_effect_in_either_order() {
        let h = [
            at(0, 0, 10, Call::Write(1), done()),
            at(1, 5, 15, Call::Write(2), done()),
            at(2, 20, 25, Call::Read, saw(Some(1))),
        ];
        assert_eq!(verdict(&h, Some(1)), Verdict::Linearizable);
        let h = [
            at(0, 0, 10, Call::Write(1), done()),
            at(1, 5, 15, Call::Write(2), done()),
            at(2, 20, 25, Call::Read, saw(Some(2))),
        ];
        assert_eq!(verdict(&h, Some(2)), Verdict::Linearizable);
        // Both orders are fine, but the read and the end must agree on one.
        let h = [
            at(0, 0, 10, Call::Write(1), done()),
            at(1, 5, 15, Call::Write(2), done()),
            at(2, 20, 25, Call::Read, saw(Some(2))),
        ];
        assert!(matches!(verdict(&h, Some(1)), Verdict::Violation(_)));
    }

    #[test]
    fn a_read_after_another_clients_acknowledged_write_must_see_it() {
        let h = [
            at(0, 0, 5, Call::Write(1), done()),
            at(1, 10, 12, Call::Read, saw(None)),
        ];
        assert!(matches!(verdict(&h, Some(1)), Verdict::Violation(_)));
        // While the write is in flight, either answer is right.
        let h = [
            at(0, 0, 20, Call::Write(1), done()),
            at(1, 10, 12, Call::Read, saw(None)),
            at(2, 11, 13, Call::Read, saw(Some(1))),
        ];
        assert_eq!(verdict(&h, Some(1)), Verdict::Linearizable);
        // But once a read saw the new value, a read that starts later cannot see the
        // old one.
        let h = [
            at(0, 0, 40, Call::Write(1), done()),
            at(1, 10, 12, Call::Read, saw(Some(1))),
            at(2, 15, 17, Call::Read, saw(None)),
        ];
        assert!(matches!(verdict(&h, Some(1)), Verdict::Violation(_)));
    }

    #[test]
    fn another_clients_unknown_write_may_land_between_two_reads() {
        let h = [
            at(0, 0, 5, Call::Write(1), done()),
            at(
                1,
                6,
                7,
                Call::Write(2),
                Outcome::Unknown("timed out".into()),
            ),
            at(2, 10, 12, Call::Read, saw(Some(1))),
            at(2, 30, 32, Call::Read, saw(Some(2))),
        ];
        assert_eq!(verdict(&h, Some(2)), Verdict::Linearizable);
        // Not before it started.
        let h = [
            at(0, 0, 5, Call::Write(1), done()),
            at(2, 10, 12, Call::Read, saw(Some(2))),
            at(
                1,
                20,
                21,
                Call::Write(2),
                Outcome::Unknown("timed out".into()),
            ),
        ];
        assert!(matches!(verdict(&h, Some(2)), Verdict::Violation(_)));
    }

    #[test]
    fn a_long_history_with_overlap_is_checked_quickly() {
        // Three clients in lockstep, each op overlapping the other clients' ops: 3,000
        // operations, which a search without memoization could not finish.
        let mut h = Vec::new();
        for round in 0..1_000u64 {
            let t = round * 10;
            let v = round + 1;
            h.push(at(0, t, t + 8, Call::Write(v), done()));
            h.push(at(1, t + 1, t + 9, Call::Read, saw(Some(v))));
            h.push(at(
                2,
                t + 2,
                t + 7,
                Call::Knn(v),
                Outcome::Ok(Seen::Found(true)),
            ));
        }
        assert_eq!(verdict(&h, Some(1_000)), Verdict::Linearizable);
        // A lost last write is still found.
        assert!(matches!(verdict(&h, Some(999)), Verdict::Violation(_)));
    }

    #[test]
    fn an_unseen_unknown_write_may_explain_a_negative_knn_answer() {
        // The key held 1; a KNN query for 1 then missed it: only the unknown write of 2
        // (which nobody saw) explains that.
        let h = [
            at(0, 0, 5, Call::Write(1), done()),
            at(
                1,
                6,
                7,
                Call::Write(2),
                Outcome::Unknown("timed out".into()),
            ),
            at(2, 10, 12, Call::Knn(1), Outcome::Ok(Seen::Found(false))),
        ];
        assert_eq!(verdict(&h, Some(2)), Verdict::Linearizable);
        assert!(
            matches!(verdict(&h, None), Verdict::Violation(why) if why.contains("final read")),
            "nothing deletes the key"
        );
    }

    #[test]
    fn many_unknown_writes_that_landed_do_not_blow_up_the_search() {
        // 40 unknown writes, each seen by a read before the next: more than MAX_UNKNOWN
        // would allow if they stayed optional, and a lost last write must still be found.
        let mut h = Vec::new();
        for i in 0..40u64 {
            let t = i * 10;
            h.push(at(
                0,
                t,
                t + 3,
                Call::Write(i + 1),
                Outcome::Unknown("timed out".into()),
            ));
            h.push(at(1, t + 5, t + 8, Call::Read, saw(Some(i + 1))));
        }
        assert_eq!(verdict(&h, Some(40)), Verdict::Linearizable);
        assert!(matches!(verdict(&h, Some(39)), Verdict::Violation(_)));
    }

    #[test]
    fn a_knn_query_reads_whether_the_key_holds_the_value() {
        let found = |i, v, f| op(i, Call::Knn(v), Outcome::Ok(Seen::Found(f)));
        let h = [
            ok(0, Call::Write(1)),
            found(1, 1, true),
            ok(2, Call::Delete),
            found(3, 1, false),
        ];
        assert_eq!(verdict(&h, None), Verdict::Linearizable);
        // Acknowledged, then not found by its own vector: read-your-writes broken.
        let h = [ok(0, Call::Write(1)), found(1, 1, false)];
        assert!(matches!(verdict(&h, Some(1)), Verdict::Violation(_)));
    }
}
