//! Putting a command's parts' replies back together ([`crate::plan::Merge`]).

use shoal_engine::{format_g12, Reply};

use crate::plan::{next_cursor, Merge};

fn int(r: &Reply) -> Option<i64> {
    if let Reply::Int(n) = r {
        Some(*n)
    } else {
        None
    }
}

/// The error a command over groups answers, if a part failed: the first that says a
/// group did not do it (`CLUSTERDOWN`, `TRYAGAIN`: the command is not done everywhere),
/// else the first refusal. A refusal from one group ("already exists") must not hide
/// that another group never took the command.
fn first_error(parts: &[Reply]) -> Option<Reply> {
    let undone = |r: &&Reply| matches!(r, Reply::Error(e) if e.starts_with("CLUSTERDOWN") || e.starts_with("TRYAGAIN"));
    parts
        .iter()
        .find(undone)
        .or_else(|| parts.iter().find(|r| r.is_error()))
        .cloned()
}

/// Merges the replies of a command's parts (never a search: see `router`).
pub fn replies(merge: &Merge, parts: Vec<Reply>) -> Reply {
    if let Some(error) = first_error(&parts) {
        return error;
    }
    let mut parts = parts;
    match merge {
        Merge::Single | Merge::AllOk => parts.into_iter().next().unwrap_or(Reply::Null),
        Merge::Sum => Reply::Int(parts.iter().filter_map(int).sum()),
        Merge::Positional { positions, len } => {
            let mut out = vec![Reply::Null; *len];
            for (part, slots) in parts.into_iter().zip(positions) {
                if let Reply::Array(items) = part {
                    for (item, &slot) in items.into_iter().zip(slots) {
                        if let Some(place) = out.get_mut(slot) {
                            *place = item;
                        }
                    }
                }
            }
            Reply::Array(out)
        }
        Merge::Concat => Reply::Array(
            parts
                .into_iter()
                .flat_map(|r| {
                    if let Reply::Array(items) = r {
                        items
                    } else {
                        vec![r]
                    }
                })
                .collect(),
        ),
        Merge::Scan { index, count } => match parts.pop() {
            Some(Reply::Array(mut pair)) if pair.len() == 2 => {
                let inner = if let Reply::Bulk(b) = &pair[0] {
                    std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0)
                } else {
                    0
                };
                pair[0] = Reply::bulk(next_cursor(*index, *count, inner).to_string());
                Reply::Array(pair)
            }
            Some(other) => other,
            None => Reply::Null,
        },
        Merge::Info => info(parts),
        Merge::Search { .. } | Merge::Aggregate(_) => Reply::err("internal: not a reply merge"),
    }
}

/// How FT.INFO combines one field over groups.
enum Combine {
    Sum,
    Max,
    /// The lowest percentage: the slowest backfill.
    MinPercent,
    /// Any state other than `ready` wins.
    State,
    First,
}

fn combine_for(name: &[u8]) -> Combine {
    match name {
        b"num_docs"
        | b"num_records"
        | b"hash_indexing_failures"
        | b"size"
        | b"capacity"
        | b"mutation_queue_size" => Combine::Sum,
        b"backfill_in_progress" => Combine::Max,
        b"backfill_complete_percent" => Combine::MinPercent,
        b"state" => Combine::State,
        _ => Combine::First,
    }
}

fn percent(r: &Reply) -> f64 {
    if let Reply::Bulk(b) = r {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0)
    } else {
        int(r).map_or(0.0, |n| n as f64)
    }
}

/// Combines one value seen in every group's FT.INFO.
fn combine(name: Option<&[u8]>, values: Vec<Reply>) -> Reply {
    let how = name.map_or(Combine::First, combine_for);
    let mut values = values;
    match how {
        Combine::Sum if values.iter().all(|v| int(v).is_some()) => {
            Reply::Int(values.iter().filter_map(int).sum())
        }
        Combine::Max if values.iter().all(|v| int(v).is_some()) => {
            Reply::Int(values.iter().filter_map(int).max().unwrap_or(0))
        }
        Combine::MinPercent => {
            let low = values.iter().map(percent).fold(f64::INFINITY, f64::min);
            Reply::bulk(format_g12(if low.is_finite() { low } else { 0.0 }))
        }
        Combine::State => values
            .iter()
            .find(|v| !matches!(v, Reply::Bulk(b) if b == b"ready"))
            .cloned()
            .unwrap_or_else(|| values.swap_remove(0)),
        Combine::Sum | Combine::Max | Combine::First => structural(values),
    }
}

/// Maps combine key by key, arrays element by element; anything else is the first.
fn structural(values: Vec<Reply>) -> Reply {
    let Some(first) = values.first().cloned() else {
        return Reply::Null;
    };
    match first {
        Reply::Map(pairs) => {
            let others: Vec<Vec<(Reply, Reply)>> = values
                .into_iter()
                .skip(1)
                .map(|v| if let Reply::Map(p) = v { p } else { Vec::new() })
                .collect();
            Reply::Map(
                pairs
                    .into_iter()
                    .map(|(k, v)| {
                        let mut all = vec![v];
                        for other in &others {
                            if let Some((_, ov)) = other.iter().find(|(ok, _)| *ok == k) {
                                all.push(ov.clone());
                            }
                        }
                        let name = if let Reply::Bulk(b) = &k {
                            Some(b.as_slice())
                        } else {
                            None
                        };
                        let merged = combine(name, all);
                        (k, merged)
                    })
                    .collect(),
            )
        }
        Reply::Array(items) => {
            let others: Vec<Vec<Reply>> = values
                .into_iter()
                .skip(1)
                .map(|v| {
                    if let Reply::Array(a) = v {
                        a
                    } else {
                        Vec::new()
                    }
                })
                .collect();
            Reply::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let mut all = vec![item];
                        all.extend(others.iter().filter_map(|o| o.get(i).cloned()));
                        structural(all)
                    })
                    .collect(),
            )
        }
        other @ (Reply::Ok
        | Reply::Simple(_)
        | Reply::Error(_)
        | Reply::Int(_)
        | Reply::Bulk(_)
        | Reply::Null
        | Reply::Double(_)
        | Reply::Verbatim(_)) => other,
    }
}

/// FT.INFO over groups: document and record counts add up, a backfill is as far as
/// its slowest group, and the index's state is the least ready one.
fn info(parts: Vec<Reply>) -> Reply {
    structural(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_of(docs: i64, percent: &str, state: &str) -> Reply {
        Reply::map([
            ("index_name", Reply::bulk("idx")),
            ("num_docs", Reply::Int(docs)),
            ("backfill_complete_percent", Reply::bulk(percent)),
            ("state", Reply::bulk(state)),
            (
                "attributes",
                Reply::Array(vec![Reply::map([(
                    "index",
                    Reply::map([("size", Reply::Int(docs)), ("dimensions", Reply::Int(8))]),
                )])]),
            ),
        ])
    }

    #[test]
    fn ft_info_adds_counts_and_keeps_the_slowest_backfill() {
        let merged = replies(
            &Merge::Info,
            vec![
                info_of(10, "1", "ready"),
                info_of(5, "0.25", "backfill_in_progress"),
                info_of(7, "1", "ready"),
            ],
        );
        let expected = Reply::map([
            ("index_name", Reply::bulk("idx")),
            ("num_docs", Reply::Int(22)),
            ("backfill_complete_percent", Reply::bulk("0.25")),
            ("state", Reply::bulk("backfill_in_progress")),
            (
                "attributes",
                Reply::Array(vec![Reply::map([(
                    "index",
                    Reply::map([("size", Reply::Int(22)), ("dimensions", Reply::Int(8))]),
                )])]),
            ),
        ]);
        assert_eq!(merged, expected);
    }

    #[test]
    fn an_error_in_any_part_is_the_reply() {
        let err = Reply::error("Unknown index name");
        assert_eq!(
            replies(&Merge::Sum, vec![Reply::Int(1), err.clone()]),
            err.clone()
        );
        assert_eq!(replies(&Merge::AllOk, vec![Reply::Ok, err.clone()]), err);
        // A group that did not take the command outranks another's refusal.
        let down = Reply::error("CLUSTERDOWN shard group 1 has no leader at the moment, try again");
        assert_eq!(
            replies(&Merge::AllOk, vec![err.clone(), down.clone(), Reply::Ok]),
            down
        );
        assert_eq!(
            replies(&Merge::Sum, vec![Reply::Int(1), Reply::Int(2)]),
            Reply::Int(3)
        );
    }

    #[test]
    fn positional_and_scan_replies_are_reassembled() {
        let merged = replies(
            &Merge::Positional {
                positions: vec![vec![1, 3], vec![0, 2]],
                len: 4,
            },
            vec![
                Reply::Array(vec![Reply::bulk("b"), Reply::Null]),
                Reply::Array(vec![Reply::bulk("a"), Reply::bulk("c")]),
            ],
        );
        assert_eq!(
            merged,
            Reply::Array(vec![
                Reply::bulk("a"),
                Reply::bulk("b"),
                Reply::bulk("c"),
                Reply::Null
            ])
        );
        let scan = |inner: &str, index| {
            replies(
                &Merge::Scan { index, count: 2 },
                vec![Reply::Array(vec![Reply::bulk(inner), Reply::Array(vec![])])],
            )
        };
        assert_eq!(
            scan("0", 0),
            Reply::Array(vec![Reply::bulk("2"), Reply::Array(vec![])])
        );
        assert_eq!(
            scan("0", 1),
            Reply::Array(vec![Reply::bulk("0"), Reply::Array(vec![])])
        );
        assert_eq!(
            scan(&((7 << 8) | 0x33).to_string(), 1),
            Reply::Array(vec![
                Reply::bulk(((7 << 8) | 2).to_string()),
                Reply::Array(vec![])
            ])
        );
    }
}
