//! Where a command goes: which groups receive which part of it, and how their replies
//! are put back together ([`Merge`]). Pure and synchronous, so every rule is tested
//! without a cluster.
//!
//! | command                                  | parts                         | merge        |
//! |------------------------------------------|-------------------------------|--------------|
//! | one key, or keys all on one group         | that group, unchanged         | `Single`     |
//! | DEL, UNLINK, EXISTS over groups           | each group its keys           | `Sum`        |
//! | MGET, JSON.MGET over groups               | each group its keys (+ path)  | `Positional` |
//! | MSET over groups                          | each group its pairs          | `AllOk`      |
//! | DBSIZE                                    | every owner                   | `Sum`        |
//! | KEYS                                      | every owner                   | `Concat`     |
//! | SCAN cursor                               | the owner the cursor is in    | `Scan`       |
//! | FLUSHALL, FLUSHDB, FT.CREATE, FT.DROPINDEX| every group                   | `AllOk`      |
//! | FT.INFO                                   | every owner                   | `Info`       |
//! | FT.SEARCH                                 | every owner, a typed part     | `Search`     |
//! | FT.AGGREGATE                              | every owner, a typed part     | `Aggregate`  |
//! | anything else without keys (FT._LIST)     | the first owner               | `Single`     |
//!
//! "Every group" is [`Routing::all`], a group being added included: it must hold every
//! index (and lose every key to FLUSHALL) before it holds a key. "Every owner" is
//! [`Routing::owners`], the groups that hold keys: a group being added joins them once
//! a source has handed it its keys, so a search never counts a key on both.

use std::collections::BTreeMap;

use shoal_query::{AggregateRequest, SortBy};
use shoal_raft::GroupId;

use crate::ring::Routing;
use crate::wire::Prepared;

/// How the replies of a command's parts become its reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Merge {
    Single,
    /// Integer replies added up.
    Sum,
    /// Every part must succeed (else the first error); the reply is the first part's.
    AllOk,
    /// Array replies reassembled: element j of part i goes to `positions[i][j]`.
    Positional {
        positions: Vec<Vec<usize>>,
        len: usize,
    },
    /// Arrays concatenated.
    Concat,
    /// FT.INFO maps combined (counts added, the slowest backfill kept).
    Info,
    /// A SCAN over group number `index` of `count`: its cursor becomes a cluster cursor.
    Scan {
        index: usize,
        count: usize,
    },
    /// FT.SEARCH: the parts are typed results, merged in order, then paged.
    Search {
        offset: usize,
        num: usize,
        sort: Option<SortBy>,
        nocontent: bool,
        scatter: Scatter,
        /// The request parsed here, for the parts this router runs itself.
        prepared: Prepared,
    },
    /// FT.AGGREGATE over groups: the parts are rows or partial groups, finished by
    /// `shoal_engine::aggregate::merge_parts`.
    Aggregate(Box<AggregateRequest>),
}

/// How long a search or aggregation waits for its groups, and whether it may answer
/// without some of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scatter {
    /// `TIMEOUT ms`; without one, the groups' quorum timeout.
    pub timeout_ms: Option<u64>,
    /// `SOMESHARDS`: groups that fail or miss the timeout are left out.
    pub partial: bool,
}

impl Merge {
    /// A typed merge's [`Scatter`]; `None` for merges of plain replies.
    pub fn scatter(&self) -> Option<Scatter> {
        match self {
            Merge::Search { scatter, .. } => Some(*scatter),
            Merge::Aggregate(request) => Some(Scatter {
                timeout_ms: request.timeout_ms,
                partial: request.partial,
            }),
            Merge::Single
            | Merge::Sum
            | Merge::AllOk
            | Merge::Positional { .. }
            | Merge::Concat
            | Merge::Info
            | Merge::Scan { .. } => None,
        }
    }
}

/// One part of a command: the group and the command it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub group: GroupId,
    pub args: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub parts: Vec<Part>,
    pub merge: Merge,
}

impl Plan {
    /// A search's or aggregation's parts go through a typed call, not as commands.
    pub fn is_typed(&self) -> bool {
        matches!(self.merge, Merge::Search { .. } | Merge::Aggregate(_))
    }
}

/// A cluster SCAN cursor keeps a group's own cursor in its high bits and `1 +` the
/// group's position in its low byte, so that no position in any group encodes as 0
/// (which means "done"). A group cursor is a hash position (keys are visited in hash
/// order from it); its low byte is cleared, which makes a resumed scan start a little
/// early: a key may come back twice, which SCAN allows, but none is skipped.
const GROUP_MASK: u64 = 0xff;

/// The most shard groups a cluster may hold: a SCAN cursor names its group's position
/// in one byte, `1 +` the position, so a 256th group could never be scanned. Node
/// configuration and `RESHARD ADD-GROUP` refuse more.
pub const MAX_GROUPS: usize = GROUP_MASK as usize;

fn owned<A: AsRef<[u8]>>(args: &[A]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.as_ref().to_vec()).collect()
}

fn upper(name: &[u8]) -> String {
    String::from_utf8_lossy(name).to_ascii_uppercase()
}

fn everywhere<A: AsRef<[u8]>>(groups: &[GroupId], args: &[A], merge: Merge) -> Plan {
    let Some((&last, rest)) = groups.split_last() else {
        return Plan {
            parts: Vec::new(),
            merge,
        };
    };
    // Copied for every group but the last, which takes these: an FT.SEARCH's
    // arguments carry its vector.
    let args = owned(args);
    let mut parts: Vec<Part> = rest
        .iter()
        .map(|&group| Part {
            group,
            args: args.clone(),
        })
        .collect();
    parts.push(Part { group: last, args });
    Plan { parts, merge }
}

fn single<A: AsRef<[u8]>>(group: GroupId, args: &[A]) -> Plan {
    Plan {
        parts: vec![Part {
            group,
            args: owned(args),
        }],
        merge: Merge::Single,
    }
}

/// Plans one command (`args[0]` is its name). `None` only when there are no groups.
/// Whether the command is placed by its keys (each group gets the command with its own
/// keys), rather than sent whole to every group or to one: what a router may plan
/// again for one group's part alone without repeating it on the others.
pub fn is_keyed<A: AsRef<[u8]>>(args: &[A]) -> bool {
    let Some(name) = args.first() else {
        return false;
    };
    shoal_resp::lookup(upper(name.as_ref()).as_bytes())
        .is_some_and(|c| c.first_key > 0 && args.len() > c.first_key as usize)
}

pub fn plan<A: AsRef<[u8]>>(routing: &Routing, args: &[A]) -> Option<Plan> {
    let owners = routing.owners();
    let first = *owners.first()?;
    let Some(name) = args.first() else {
        return Some(single(first, args));
    };
    let name = upper(name.as_ref());
    let keyed = shoal_resp::lookup(name.as_bytes()).filter(|c| c.first_key > 0);
    let Some(command) = keyed else {
        return Some(match name.as_str() {
            "DBSIZE" => everywhere(owners, args, Merge::Sum),
            "KEYS" => everywhere(owners, args, Merge::Concat),
            // FT._CREATE, FT._DROPIF: a router's FT.CREATE and FT.DROPINDEX with the
            // definition's generation (crate::meta).
            "FLUSHALL" | "FLUSHDB" | "FT.CREATE" | "FT._CREATE" | "FT.DROPINDEX" | "FT._DROPIF" => {
                everywhere(routing.all(), args, Merge::AllOk)
            }
            "FT.INFO" => everywhere(owners, args, Merge::Info),
            "FT.SEARCH" => search(owners, args).unwrap_or_else(|| single(first, args)),
            "FT.AGGREGATE" if owners.len() > 1 => {
                aggregate(owners, args).unwrap_or_else(|| single(first, args))
            }
            "SCAN" => scan(owners, args).unwrap_or_else(|| single(first, args)),
            _ => single(first, args),
        });
    };
    let first_key = command.first_key as usize;
    if args.len() <= first_key {
        return Some(single(first, args));
    }
    // Key positions: last_key -1 is the last argument, -2 the one before it.
    let last_key = match command.last_key {
        k if k < 0 => args.len().saturating_sub(k.unsigned_abs() as usize),
        k => (k as usize).min(args.len() - 1),
    };
    let step = command.step.max(1) as usize;
    let positions: Vec<usize> = (first_key..=last_key).step_by(step).collect();
    // A key without its whole step (MSET's value missing) is a malformed command: one
    // group answers it, with the engine's arity error, rather than a part being cut.
    if positions.last().is_some_and(|&i| i + step > args.len()) {
        return Some(single(first, args));
    }
    let group_of = |i: usize| routing.group_of(args[i].as_ref()).unwrap_or(first);
    let home = group_of(first_key);
    if positions.iter().all(|&i| group_of(i) == home) {
        return Some(single(home, args));
    }
    // Keys over several groups: each gets the command with its own keys.
    let mut by_group: BTreeMap<GroupId, Vec<usize>> = BTreeMap::new();
    for (n, &i) in positions.iter().enumerate() {
        by_group.entry(group_of(i)).or_default().push(n);
    }
    let tail = &args[last_key + 1..];
    let parts: Vec<Part> = by_group
        .iter()
        .map(|(&group, keys)| {
            let mut part = vec![args[0].as_ref().to_vec()];
            for &n in keys {
                let at = positions[n];
                part.extend(args[at..at + step].iter().map(|a| a.as_ref().to_vec()));
            }
            part.extend(tail.iter().map(|a| a.as_ref().to_vec()));
            Part { group, args: part }
        })
        .collect();
    let merge = match name.as_str() {
        "MGET" | "JSON.MGET" => Merge::Positional {
            positions: by_group.into_values().collect(),
            len: positions.len(),
        },
        "MSET" => Merge::AllOk,
        // DEL, UNLINK, EXISTS; WATCH is planned by the router itself.
        _ => Merge::Sum,
    };
    Some(Plan { parts, merge })
}

fn search<A: AsRef<[u8]>>(owners: &[GroupId], args: &[A]) -> Option<Plan> {
    // Unparsable: one group answers with the engine's error.
    let request = shoal_query::search::parse_search(&args[1..]).ok()?;
    Some(everywhere(
        owners,
        args,
        Merge::Search {
            offset: request.offset,
            num: request.num,
            sort: request.sort_by.clone(),
            nocontent: request.nocontent,
            scatter: Scatter {
                timeout_ms: request.timeout_ms,
                partial: request.partial,
            },
            prepared: Prepared::of(request),
        },
    ))
}

fn aggregate<A: AsRef<[u8]>>(owners: &[GroupId], args: &[A]) -> Option<Plan> {
    // Unparsable: one group answers with the engine's error.
    let request = shoal_query::aggregate::parse_aggregate(&args[1..]).ok()?;
    Some(everywhere(
        owners,
        args,
        Merge::Aggregate(Box::new(request)),
    ))
}

/// The group position a cluster SCAN cursor is in, and the cursor within the group.
pub fn split_cursor(cursor: u64) -> (usize, u64) {
    match cursor & GROUP_MASK {
        0 => (0, 0),
        low => ((low - 1) as usize, cursor & !GROUP_MASK),
    }
}

/// The cluster cursor after group position `index` (of `count`) answered `inner`:
/// the same group while it has more, then the next group from its start, then 0.
pub fn next_cursor(index: usize, count: usize, inner: u64) -> u64 {
    if inner != 0 {
        return (inner & !GROUP_MASK) | (index as u64 + 1);
    }
    if index + 1 < count {
        index as u64 + 2
    } else {
        0
    }
}

/// SCAN over the owners by position: a group being added comes last (its id is the
/// highest), so the positions of the others do not move when it joins them.
fn scan<A: AsRef<[u8]>>(owners: &[GroupId], args: &[A]) -> Option<Plan> {
    let cursor: u64 = std::str::from_utf8(args.get(1)?.as_ref())
        .ok()?
        .parse()
        .ok()?;
    let (index, inner) = split_cursor(cursor);
    // One byte names the group; a cluster holds at most MAX_GROUPS of them.
    let group = *owners.get(index)?;
    let mut part = owned(args);
    part[1] = inner.to_string().into_bytes();
    Some(Plan {
        parts: vec![Part { group, args: part }],
        merge: Merge::Scan {
            index,
            count: owners.len(),
        },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keyed_commands_are_told_from_the_ones_every_group_gets() {
        for keyed in [
            &["SET", "k", "v"][..],
            &["MSET", "a", "1", "b", "2"],
            &["DEL", "a", "b"],
        ] {
            assert!(super::is_keyed(keyed), "{keyed:?}");
        }
        for whole in [
            &["FLUSHALL"][..],
            &["DBSIZE"],
            &["FT._CREATE", "1", "KEEP", "idx"],
            &["KEYS", "*"],
            &["SCAN", "0"],
            &[],
        ] {
            assert!(!super::is_keyed(whole), "{whole:?}");
        }
    }

    use super::*;

    fn cmd(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|p| p.as_bytes().to_vec()).collect()
    }

    fn keys_on_distinct_groups(ring: &Routing, n: usize) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for i in 0.. {
            let k = format!("k{i}");
            if seen.insert(ring.group_of(k.as_bytes())) {
                out.push(k);
            }
            if out.len() == n {
                break;
            }
        }
        out
    }

    #[test]
    fn one_key_goes_to_its_group_unchanged() {
        let ring = Routing::stable(0..3, 0);
        let args = cmd("HSET doc:1 f v");
        let p = plan(&ring, &args).unwrap_or_else(|| unreachable!());
        assert_eq!(p.merge, Merge::Single);
        assert_eq!(p.parts.len(), 1);
        assert_eq!(Some(p.parts[0].group), ring.group_of(b"doc:1"));
        assert_eq!(p.parts[0].args, args);
    }

    #[test]
    fn multi_key_commands_split_by_group() {
        let ring = Routing::stable(0..3, 0);
        let k = keys_on_distinct_groups(&ring, 3);
        let args = cmd(&format!("MGET {} {} {} {}", k[0], k[1], k[2], k[0]));
        let p = plan(&ring, &args).unwrap_or_else(|| unreachable!());
        assert_eq!(p.parts.len(), 3);
        let Merge::Positional { positions, len } = &p.merge else {
            panic!("{:?}", p.merge)
        };
        assert_eq!(*len, 4);
        // Every position is covered once, by the group that owns the key there.
        let mut all: Vec<usize> = positions.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3]);
        for (part, pos) in p.parts.iter().zip(positions) {
            assert_eq!(part.args.len(), 1 + pos.len());
            for (arg, &n) in part.args[1..].iter().zip(pos) {
                assert_eq!(arg, &args[1 + n]);
                assert_eq!(ring.group_of(arg), Some(part.group));
            }
        }
        let mset = cmd(&format!("MSET {} 1 {} 2", k[0], k[1]));
        let p = plan(&ring, &mset).unwrap_or_else(|| unreachable!());
        assert_eq!(p.merge, Merge::AllOk);
        let mut pairs: Vec<Vec<Vec<u8>>> = p.parts.iter().map(|p| p.args.clone()).collect();
        pairs.sort();
        assert!(pairs.contains(&cmd(&format!("MSET {} 1", k[0]))));
        assert!(pairs.contains(&cmd(&format!("MSET {} 2", k[1]))));
        // The path of JSON.MGET goes to every part.
        let jm = cmd(&format!("JSON.MGET {} {} $.a", k[0], k[1]));
        let p = plan(&ring, &jm).unwrap_or_else(|| unreachable!());
        assert!(p
            .parts
            .iter()
            .all(|part| part.args.last() == Some(&b"$.a".to_vec())));
        assert!(p.parts.iter().all(|part| part.args.len() == 3));
        let del = cmd(&format!("DEL {} {}", k[1], k[2]));
        assert_eq!(plan(&ring, &del).map(|p| p.merge), Some(Merge::Sum));
    }

    #[test]
    fn a_key_without_its_value_goes_whole_to_one_group() {
        // Found by tests/clients/test_random_commands.py: MSET a 1 b split as pairs
        // read past the arguments.
        let ring = Routing::stable(0..3, 0);
        let k = keys_on_distinct_groups(&ring, 3);
        for line in [
            format!("MSET {} 1 {}", k[0], k[1]),
            format!("MSET {} 1 {} 2 {}", k[0], k[1], k[2]),
        ] {
            let args = cmd(&line);
            let p = plan(&ring, &args).unwrap_or_else(|| unreachable!());
            assert_eq!(p.merge, Merge::Single, "{line}");
            assert_eq!(p.parts.len(), 1, "{line}");
            assert_eq!(p.parts[0].args, args, "{line}");
        }
    }

    #[test]
    fn hash_tagged_keys_stay_whole() {
        let ring = Routing::stable(0..6, 0);
        let args = cmd("DEL {u1}:a {u1}:b {u1}:c");
        let p = plan(&ring, &args).unwrap_or_else(|| unreachable!());
        assert_eq!(p.merge, Merge::Single);
        assert_eq!(p.parts[0].args, args);
    }

    #[test]
    fn index_commands_go_everywhere() {
        let ring = Routing::stable(0..3, 0);
        for (c, merge) in [
            ("FT.CREATE idx SCHEMA a TAG", Merge::AllOk),
            ("FT.DROPINDEX idx", Merge::AllOk),
            ("FT.INFO idx", Merge::Info),
            ("DBSIZE", Merge::Sum),
            ("KEYS *", Merge::Concat),
        ] {
            let p = plan(&ring, &cmd(c)).unwrap_or_else(|| unreachable!());
            assert_eq!(p.merge, merge, "{c}");
            assert_eq!(p.parts.len(), 3, "{c}");
        }
        let p = plan(
            &ring,
            &cmd("FT.SEARCH idx * LIMIT 5 7 SORTBY n DESC SOMESHARDS NOCONTENT TIMEOUT 250"),
        )
        .unwrap_or_else(|| unreachable!());
        assert!(p.is_typed());
        let agg =
            plan(&ring, &cmd("FT.AGGREGATE idx * GROUPBY 1 @c")).unwrap_or_else(|| unreachable!());
        assert!(matches!(&agg.merge, Merge::Aggregate(r) if r.steps.len() == 1));
        assert_eq!(agg.parts.len(), 3);
        // An unparsable request is one group's to refuse, with the engine's words.
        let bad =
            plan(&ring, &cmd("FT.AGGREGATE idx * GROUPBY 1 c")).unwrap_or_else(|| unreachable!());
        assert_eq!((bad.merge, bad.parts.len()), (Merge::Single, 1));
        assert_eq!(
            p.merge,
            Merge::Search {
                offset: 5,
                num: 7,
                sort: Some(SortBy {
                    field: "n".into(),
                    ascending: false
                }),
                nocontent: true,
                scatter: Scatter {
                    timeout_ms: Some(250),
                    partial: true
                },
                prepared: Prepared::default(),
            }
        );
        assert_eq!(
            p.merge.scatter(),
            Some(Scatter {
                timeout_ms: Some(250),
                partial: true
            })
        );
        // ALLSHARDS is the default; an aggregation carries its own options.
        let all = plan(&ring, &cmd("FT.SEARCH idx * ALLSHARDS")).unwrap_or_else(|| unreachable!());
        assert_eq!(all.merge.scatter(), Some(Scatter::default()));
        let agg = plan(
            &ring,
            &cmd("FT.AGGREGATE idx * SOMESHARDS TIMEOUT 9 GROUPBY 1 @c"),
        )
        .unwrap_or_else(|| unreachable!());
        assert_eq!(
            agg.merge.scatter(),
            Some(Scatter {
                timeout_ms: Some(9),
                partial: true
            })
        );
        assert_eq!(Merge::Sum.scatter(), None);
        let one = Routing::stable([0], 0);
        let p = plan(&one, &cmd("FT.AGGREGATE idx *")).unwrap_or_else(|| unreachable!());
        assert_eq!(p.merge, Merge::Single);
        assert!(plan(&Routing::stable([], 0), &cmd("GET a")).is_none());
    }

    #[test]
    fn scan_cursors_walk_every_group_once() {
        let ring = Routing::stable([4, 7, 9], 0);
        let p = plan(&ring, &cmd("SCAN 0 COUNT 5")).unwrap_or_else(|| unreachable!());
        assert_eq!(p.parts[0].group, 4);
        assert_eq!(p.parts[0].args, cmd("SCAN 0 COUNT 5"));
        // Group 4 (position 0) is not done: its cursor, low byte cleared, comes back.
        let c = next_cursor(0, 3, 0xabcd_ef12_3456_7891);
        assert_eq!(c, 0xabcd_ef12_3456_7801);
        assert_eq!(split_cursor(c), (0, 0xabcd_ef12_3456_7800));
        let p = plan(&ring, &cmd(&format!("SCAN {c}"))).unwrap_or_else(|| unreachable!());
        assert_eq!(p.parts[0].group, 4);
        assert_eq!(p.parts[0].args[1], b"12379813812177893376".to_vec());
        // Group 4 done: group 7 from its start; a cursor within group 0 is never 0.
        assert_eq!(next_cursor(0, 3, 0), 2);
        let p = plan(&ring, &cmd("SCAN 2")).unwrap_or_else(|| unreachable!());
        assert_eq!(
            (p.parts[0].group, p.parts[0].args[1].as_slice()),
            (7, &b"0"[..])
        );
        assert_ne!(next_cursor(0, 3, 5), 0);
        assert_eq!(next_cursor(2, 3, 0), 0);
        assert_eq!(split_cursor(0), (0, 0));
    }

    #[test]
    fn a_group_being_added_gets_index_commands_at_once_and_searches_once_it_owns_keys() {
        let copying = Routing::moving(0..3, 3, [], 1);
        let groups = |c: &str, r: &Routing| -> Vec<GroupId> {
            let p = plan(r, &cmd(c)).unwrap_or_else(|| unreachable!());
            p.parts.iter().map(|p| p.group).collect()
        };
        for c in ["FT.CREATE idx SCHEMA a TAG", "FT.DROPINDEX idx", "FLUSHALL"] {
            assert_eq!(groups(c, &copying), vec![0, 1, 2, 3], "{c}");
        }
        // Commands over the owners reach the target once a source has switched.
        let one_switched = Routing::moving(0..3, 3, [0], 2);
        let owners = [
            "FT.SEARCH idx *",
            "FT.AGGREGATE idx *",
            "FT.INFO idx",
            "DBSIZE",
            "KEYS *",
        ];
        for c in owners {
            assert_eq!(groups(c, &copying), vec![0, 1, 2], "{c}");
            assert_eq!(groups(c, &one_switched), vec![0, 1, 2, 3], "{c}");
        }
        // SCAN keeps the old groups' positions: the target is the last.
        let p = plan(&one_switched, &cmd("SCAN 4")).unwrap_or_else(|| unreachable!());
        assert_eq!(p.parts[0].group, 3);
        assert_eq!(p.merge, Merge::Scan { index: 3, count: 4 });
        // A key of the switched source that the next ring gives the target goes there.
        let next = Routing::stable(0..4, 0);
        let old = Routing::stable(0..3, 0);
        let moved = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| {
                old.group_of(k.as_bytes()) == Some(0) && next.group_of(k.as_bytes()) == Some(3)
            })
            .unwrap_or_else(|| unreachable!());
        let p =
            plan(&one_switched, &cmd(&format!("GET {moved}"))).unwrap_or_else(|| unreachable!());
        assert_eq!(p.parts[0].group, 3);
        let p = plan(&copying, &cmd(&format!("GET {moved}"))).unwrap_or_else(|| unreachable!());
        assert_eq!(p.parts[0].group, 0);
    }
}
