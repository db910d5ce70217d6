//! Bringing a shard group back to full replication after a node is gone: the group's
//! leader adds a learner on another node (it receives a snapshot and the log), makes it
//! a voter once it caught up, then removes the gone voter. One step per round, each a
//! committed membership change, so a leader that dies half-way leaves a state the next
//! leader carries on from.
//!
//! The decision, in order (the first row that applies is the step):
//!
//! | the group's membership                                  | step                          |
//! |---------------------------------------------------------|-------------------------------|
//! | a learner that is up and within [`CAUGHT_UP`] entries   | promote it                    |
//! | a learner that is down                                  | remove it                     |
//! | more voters than the replication factor, one gone       | remove the gone voter         |
//! | a voter gone for `replace_after`, no learner under way  | add a learner on the best node|
//! | anything else (a learner still catching up, all fine)   | nothing                       |
//!
//! "Gone" is the cluster map's view: the node has not reported for `replace_after`,
//! while others have (a node the map has never seen is not gone; when the meta group
//! stalls and nobody's report lands, nobody is gone — the chaos of a rejoining node
//! once made a group re-add it this way). The best node is up, not in the group,
//! holds no data of the group (a replica left behind by an earlier removal, which
//! that node erases first: [`crate::purge`] — a learner's log must never go back
//! under the leader's feet), in a zone the group's remaining voters do not use if
//! there is one, and holds the fewest groups.

use std::collections::{BTreeMap, BTreeSet};

use shoal_raft::{GroupId, NodeId};

use crate::meta::{GroupRecord, NodeRecord};

/// A learner this close to the leader's log can vote without slowing commits.
pub const CAUGHT_UP: u64 = 64;

/// One group's membership as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub voters: Vec<NodeId>,
    /// Each learner with how far behind the leader's log it is (`None`: it has not
    /// acknowledged anything yet).
    pub learners: Vec<(NodeId, Option<u64>)>,
}

/// What the leader does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Promote(NodeId),
    Remove(NodeId),
    AddLearner(NodeId),
    Nothing,
}

/// What the rules need to know of the cluster.
#[derive(Debug, Clone, Copy)]
pub struct Cluster<'a> {
    /// The group being repaired.
    pub group: GroupId,
    pub nodes: &'a BTreeMap<NodeId, NodeRecord>,
    pub groups: &'a BTreeMap<GroupId, GroupRecord>,
    /// Voters a group should have.
    pub replicas: usize,
    pub now_ms: u64,
    /// How long a node must be silent before its replicas are re-created elsewhere.
    pub replace_after_ms: u64,
}

impl Cluster<'_> {
    fn up(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.alive(self.now_ms))
    }

    /// Silent for `replace_after` by the clock *and* against the freshest report in
    /// the map: when the meta group itself stalls (an election), every report stops
    /// at once and nobody is gone — only a node the others outlived by that long.
    fn gone(&self, id: NodeId) -> bool {
        let freshest = self.nodes.values().map(|n| n.seen_ms).max().unwrap_or(0);
        self.nodes.get(&id).is_some_and(|n| {
            self.now_ms.saturating_sub(n.seen_ms) > self.replace_after_ms
                && freshest.saturating_sub(n.seen_ms) > self.replace_after_ms
        })
    }

    /// Whether the node reported holding data of this group.
    fn holds(&self, id: NodeId) -> bool {
        self.nodes
            .get(&id)
            .is_some_and(|n| n.holds.contains(&self.group))
    }

    fn zone(&self, id: NodeId) -> Option<&str> {
        self.nodes.get(&id).map(|n| n.addr.zone.as_str())
    }

    /// Groups each node is a member of, by the map.
    fn load(&self) -> BTreeMap<NodeId, usize> {
        let mut load = BTreeMap::new();
        for record in self.groups.values() {
            for id in record.members() {
                *load.entry(id).or_default() += 1;
            }
        }
        load
    }
}

/// The next step for a group with `membership` (see the module's table).
pub fn next_step(membership: &Membership, cluster: &Cluster<'_>) -> Step {
    for &(id, lag) in &membership.learners {
        if cluster.up(id) && lag.is_some_and(|l| l <= CAUGHT_UP) {
            return Step::Promote(id);
        }
    }
    for &(id, _) in &membership.learners {
        if !cluster.up(id) && cluster.nodes.contains_key(&id) {
            return Step::Remove(id);
        }
    }
    let gone: Vec<NodeId> = membership
        .voters
        .iter()
        .copied()
        .filter(|id| cluster.gone(*id))
        .collect();
    let Some(&first_gone) = gone.first() else {
        return Step::Nothing;
    };
    if membership.voters.len() > cluster.replicas {
        return Step::Remove(first_gone);
    }
    if !membership.learners.is_empty() {
        return Step::Nothing;
    }
    best_node(membership, cluster).map_or(Step::Nothing, Step::AddLearner)
}

fn best_node(membership: &Membership, cluster: &Cluster<'_>) -> Option<NodeId> {
    let members: BTreeSet<NodeId> = membership
        .voters
        .iter()
        .copied()
        .chain(membership.learners.iter().map(|(id, _)| *id))
        .collect();
    let used_zones: BTreeSet<&str> = membership
        .voters
        .iter()
        .filter(|id| !cluster.gone(**id))
        .filter_map(|id| cluster.zone(*id))
        .collect();
    let load = cluster.load();
    cluster
        .nodes
        .keys()
        .copied()
        .filter(|id| !members.contains(id) && cluster.up(*id) && !cluster.holds(*id))
        .min_by_key(|id| {
            let zone_used = cluster.zone(*id).is_some_and(|z| used_zones.contains(z));
            (zone_used, load.get(id).copied().unwrap_or(0), *id)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_raft::NodeAddr;

    const NOW: u64 = 1_000_000;

    fn nodes(spec: &[(NodeId, &str, u64)]) -> BTreeMap<NodeId, NodeRecord> {
        spec.iter()
            .map(|&(id, zone, silent_ms)| {
                let addr = NodeAddr {
                    zone: zone.into(),
                    raft: format!("127.0.0.1:{}", 7000 + id),
                    resp: format!("127.0.0.1:{}", 6000 + id),
                };
                (
                    id,
                    NodeRecord {
                        addr,
                        seen_ms: NOW - silent_ms,
                        holds: Vec::new(),
                    },
                )
            })
            .collect()
    }

    fn step(
        voters: &[NodeId],
        learners: &[(NodeId, Option<u64>)],
        n: &BTreeMap<NodeId, NodeRecord>,
    ) -> Step {
        let groups = BTreeMap::from([(
            9,
            GroupRecord {
                leader: 4,
                term: 1,
                voters: vec![4, 5],
                learners: Vec::new(),
                seen_ms: NOW,
                committed_index: 1,
                committed_members: vec![4, 5],
            },
        )]);
        let cluster = Cluster {
            group: 9,
            nodes: n,
            groups: &groups,
            replicas: 3,
            now_ms: NOW,
            replace_after_ms: 10_000,
        };
        next_step(
            &Membership {
                voters: voters.to_vec(),
                learners: learners.to_vec(),
            },
            &cluster,
        )
    }

    #[test]
    fn a_gone_voter_is_replaced_in_three_committed_steps() {
        // Node 3 (zone c) silent for 20 s; 6 is the other node of zone c, 4 is in a.
        let n = nodes(&[
            (1, "a", 0),
            (2, "b", 0),
            (3, "c", 20_000),
            (4, "a", 0),
            (6, "c", 0),
        ]);
        assert_eq!(
            step(&[1, 2, 3], &[], &n),
            Step::AddLearner(6),
            "zone c again"
        );
        assert_eq!(
            step(&[1, 2, 3], &[(6, None)], &n),
            Step::Nothing,
            "snapshot under way"
        );
        assert_eq!(
            step(&[1, 2, 3], &[(6, Some(500))], &n),
            Step::Nothing,
            "catching up"
        );
        assert_eq!(step(&[1, 2, 3], &[(6, Some(3))], &n), Step::Promote(6));
        assert_eq!(step(&[1, 2, 3, 6], &[], &n), Step::Remove(3));
        assert_eq!(step(&[1, 2, 6], &[], &n), Step::Nothing);
    }

    #[test]
    fn nobody_is_gone_while_the_map_itself_stands_still() {
        // Every report 20 s old: the meta group stalled, not the nodes.
        let n = nodes(&[
            (1, "a", 20_000),
            (2, "b", 20_500),
            (3, "c", 21_000),
            (4, "a", 20_200),
        ]);
        assert_eq!(step(&[1, 2, 3], &[], &n), Step::Nothing);
    }

    #[test]
    fn nothing_moves_before_the_delay_or_for_a_node_never_seen() {
        let n = nodes(&[(1, "a", 0), (2, "b", 0), (3, "c", 6_000), (4, "a", 0)]);
        assert_eq!(
            step(&[1, 2, 3], &[], &n),
            Step::Nothing,
            "down, not yet gone"
        );
        assert_eq!(step(&[1, 2, 7], &[], &n), Step::Nothing, "7 never reported");
    }

    #[test]
    fn the_new_replica_goes_to_an_unused_zone_then_to_the_least_loaded_node() {
        // Zone c has no other node: any zone will do; 4 holds a group (by the map), 8 none.
        let n = nodes(&[
            (1, "a", 0),
            (2, "b", 0),
            (3, "c", 20_000),
            (4, "a", 0),
            (8, "b", 0),
        ]);
        assert_eq!(step(&[1, 2, 3], &[], &n), Step::AddLearner(8));
        // Nobody to take it: nothing.
        let n = nodes(&[(1, "a", 0), (2, "b", 0), (3, "c", 20_000)]);
        assert_eq!(step(&[1, 2, 3], &[], &n), Step::Nothing);
    }

    #[test]
    fn a_learner_that_went_down_is_dropped_and_another_is_tried() {
        let n = nodes(&[
            (1, "a", 0),
            (2, "b", 0),
            (3, "c", 20_000),
            (6, "c", 7_000),
            (7, "c", 0),
        ]);
        assert_eq!(step(&[1, 2, 3], &[(6, Some(1))], &n), Step::Remove(6));
        assert_eq!(step(&[1, 2, 3], &[], &n), Step::AddLearner(7));
    }

    #[test]
    fn a_node_still_holding_a_left_behind_replica_is_not_added_back() {
        // 8 would be best (zone c), but still has group 9's data from before.
        let mut n = nodes(&[
            (1, "a", 0),
            (2, "b", 0),
            (3, "c", 20_000),
            (4, "a", 0),
            (8, "c", 0),
        ]);
        if let Some(r) = n.get_mut(&8) {
            r.holds = vec![9];
        }
        assert_eq!(step(&[1, 2, 3], &[], &n), Step::AddLearner(4));
        // Another group's data does not count.
        if let Some(r) = n.get_mut(&8) {
            r.holds = vec![7];
        }
        assert_eq!(step(&[1, 2, 3], &[], &n), Step::AddLearner(8));
    }
}
