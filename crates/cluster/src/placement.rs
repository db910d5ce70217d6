//! Which nodes hold a group's replicas: spread over zones first, so that losing one
//! zone costs a group at most one replica while there are at least as many zones as
//! replicas. Pure and deterministic: every node computes the same answer from the same
//! membership, with no coordination.

use std::collections::BTreeMap;

use shoal_raft::{NodeAddr, NodeId};

/// Up to `count` of `nodes`, taking one node of each zone in turn (zones in name order,
/// nodes in id order within a zone) and starting the turn at zone `offset`, so that
/// groups with different offsets start on different zones.
///
/// | nodes per zone         | result                                              |
/// |------------------------|-----------------------------------------------------|
/// | zones ≥ count          | `count` nodes in `count` distinct zones             |
/// | zones < count          | every zone once, then again, until `count`          |
/// | fewer nodes than count | every node                                          |
pub fn spread(nodes: &BTreeMap<NodeId, NodeAddr>, count: usize, offset: usize) -> Vec<NodeId> {
    spread_from(nodes, count, offset, 0)
}

/// The initial members of shard group `group` with `replicas` replicas: [`spread`]
/// over zones, with both the first zone and the first node within each zone turning
/// with the group, so that groups land on different nodes of a zone and the first
/// member — the one that starts the group, and so its first leader — differs from
/// group to group.
pub fn group_members(
    nodes: &BTreeMap<NodeId, NodeAddr>,
    replicas: usize,
    group: u64,
) -> Vec<NodeId> {
    let turn = usize::try_from(group).unwrap_or(usize::MAX);
    spread_from(nodes, replicas, turn, turn)
}

fn spread_from(
    nodes: &BTreeMap<NodeId, NodeAddr>,
    count: usize,
    offset: usize,
    inner: usize,
) -> Vec<NodeId> {
    let mut zones: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
    for (id, addr) in nodes {
        zones.entry(addr.zone.as_str()).or_default().push(*id);
    }
    let mut columns: Vec<Vec<NodeId>> = zones.into_values().collect();
    if columns.is_empty() {
        return Vec::new();
    }
    let start = offset % columns.len();
    columns.rotate_left(start);
    for column in &mut columns {
        let len = column.len();
        column.rotate_left(inner % len);
    }
    let mut picked = Vec::with_capacity(count.min(nodes.len()));
    let mut depth = 0;
    while picked.len() < count.min(nodes.len()) {
        for column in &columns {
            if let Some(id) = column.get(depth) {
                picked.push(*id);
                if picked.len() == count {
                    break;
                }
            }
        }
        depth += 1;
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(spec: &[(NodeId, &str)]) -> BTreeMap<NodeId, NodeAddr> {
        spec.iter()
            .map(|&(id, zone)| {
                (
                    id,
                    NodeAddr {
                        zone: zone.into(),
                        raft: format!("127.0.0.1:{}", 7000 + id),
                        resp: format!("127.0.0.1:{}", 6000 + id),
                    },
                )
            })
            .collect()
    }

    fn zones(all: &BTreeMap<NodeId, NodeAddr>, picked: &[NodeId]) -> Vec<String> {
        picked.iter().map(|id| all[id].zone.clone()).collect()
    }

    #[test]
    fn three_zones_give_three_distinct_zones() {
        let all = nodes(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]);
        for offset in 0..6 {
            let picked = spread(&all, 3, offset);
            let mut z = zones(&all, &picked);
            z.sort();
            assert_eq!(z, ["a", "b", "c"], "offset {offset}: {picked:?}");
        }
        assert_eq!(spread(&all, 3, 0), vec![1, 3, 5]);
        // Another offset starts on another zone.
        assert_eq!(spread(&all, 3, 1), vec![3, 5, 1]);
    }

    #[test]
    fn fewer_zones_than_replicas_reuse_zones_evenly() {
        let all = nodes(&[(1, "a"), (2, "a"), (3, "b"), (4, "b")]);
        assert_eq!(spread(&all, 3, 0), vec![1, 3, 2]);
        let one_zone = nodes(&[(7, "z"), (8, "z")]);
        assert_eq!(spread(&one_zone, 3, 5), vec![7, 8]);
        assert!(spread(&BTreeMap::new(), 3, 0).is_empty());
    }

    #[test]
    fn groups_spread_over_the_nodes_of_each_zone_and_start_on_different_nodes() {
        let all = nodes(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]);
        let mut first = Vec::new();
        let mut load: BTreeMap<NodeId, usize> = BTreeMap::new();
        for g in 0..6 {
            let m = group_members(&all, 3, g);
            let mut z = zones(&all, &m);
            z.sort();
            assert_eq!(z, ["a", "b", "c"], "group {g}: {m:?}");
            first.push(m[0]);
            for id in m {
                *load.entry(id).or_default() += 1;
            }
        }
        first.sort();
        assert_eq!(first, vec![1, 2, 3, 4, 5, 6], "every node starts one group");
        assert!(load.values().all(|&n| n == 3), "{load:?}");
        // Five nodes over three zones: node 3 is zone c's only node, in every group.
        let five = nodes(&[(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "b")]);
        let mut first: Vec<NodeId> = (0..5).map(|g| group_members(&five, 3, g)[0]).collect();
        first.sort();
        assert_eq!(first, vec![1, 2, 3, 4, 5]);
        assert!((0..5).all(|g| group_members(&five, 3, g).contains(&3)));
        // Every node when the cluster is smaller than the replication factor.
        assert_eq!(group_members(&five, 9, 2).len(), 5);
    }
}
