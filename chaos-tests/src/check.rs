//! The checks run after the faults healed.
//!
//! **Per-key linearizability.** A key belongs to one worker, which runs one operation
//! at a time, so its acknowledged operations are totally ordered; an operation whose
//! outcome is unknown may take effect at any point after it started, or never; a
//! failed one never does. The history is linearizable if some placement of the
//! unknown ones makes every acknowledged read see the value of the last change before
//! it, and the final read (on the leaders, after healing) see the last of all. A
//! depth-first search over (position, value, unknowns applied), memoized, decides it
//! (Wing & Gong's search, made small by the sequential client).
//!
//! Acknowledged writes that the final read does not see are the "lost writes" the
//! search reports: no placement explains them.

use std::collections::{BTreeMap, HashSet};

use crate::history::{Call, Op, Outcome, Seen};

/// Most unknown changes one key's history may hold (the search is exponential in them).
pub const MAX_UNKNOWN: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the history; the message says which operation first.
    Violation(String),
    /// Too many unknown outcomes to search; not counted as either.
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
        (Call::Read | Call::Knn(_) | Call::Write(_) | Call::Delete, _) => false,
    }
}

/// Checks one key's operations (in the order its worker ran them) against the value
/// read at the end.
pub fn key_history(ops: &[&Op], final_value: Option<u64>) -> Verdict {
    // Acknowledged operations in order, and the unknown changes with how many
    // acknowledged operations came before each.
    let mut definite: Vec<(&Call, &Seen, &Op)> = Vec::new();
    let mut unknown: Vec<(usize, &Call)> = Vec::new();
    for op in ops {
        match &op.outcome {
            Outcome::Ok(seen) => definite.push((&op.call, seen, op)),
            Outcome::Unknown(_) if op.changes() => unknown.push((definite.len(), &op.call)),
            Outcome::Unknown(_) | Outcome::Failed(_) => {}
        }
    }
    if unknown.len() > MAX_UNKNOWN {
        return Verdict::Skipped;
    }
    let mut seen: HashSet<(usize, Option<u64>, u32)> = HashSet::new();
    let mut stack = vec![(0usize, None::<u64>, 0u32)];
    // The furthest acknowledged operation any order reached, for the report.
    let mut furthest = 0;
    while let Some((pos, value, applied)) = stack.pop() {
        if !seen.insert((pos, value, applied)) {
            continue;
        }
        furthest = furthest.max(pos);
        if pos == definite.len() && value == final_value {
            return Verdict::Linearizable;
        }
        for (j, (after, call)) in unknown.iter().enumerate() {
            if applied & (1 << j) == 0 && *after <= pos {
                stack.push((pos, apply(value, call), applied | (1 << j)));
            }
        }
        if let Some((call, result, _)) = definite.get(pos) {
            if reads(value, call, result) {
                stack.push((pos + 1, apply(value, call), applied));
            }
        }
    }
    let what = match definite.get(furthest) {
        Some((call, result, op)) => format!(
            "{} {:?} at {:?} saw {:?}, which no order of the acknowledged and unknown changes before it explains",
            op.key, call, op.start, result
        ),
        None => format!(
            "{}: the final read saw {final_value:?}, which no order of the changes explains (a lost or phantom write)",
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
        .map(|(key, mut ops)| {
            ops.sort_by_key(|o| o.start);
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
