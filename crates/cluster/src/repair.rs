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
//! | a learner that is down, or stalled                      | remove it                     |
//! | more voters than the replication factor, one gone       | remove the gone voter         |
//! | a voter gone for `replace_after`, no learner under way  | add a learner on the best node|
//! | no voter gone: rebalancing, below                       | (see the next table)          |
//! | anything else (a learner still catching up, all fine)   | nothing                       |
//!
//! "Stalled": its acknowledged log index has not moved for `--learner-stall-ms`
//! ([`crate::learner_watch`]); its node is then shunned, not picked for the group
//! again for as long.
//!
//! "Gone" is the cluster map's view: the node has not reported for `replace_after`,
//! while others have (a node the map has never seen is not gone; when the meta group
//! stalls and nobody's report lands, nobody is gone — the chaos of a rejoining node
//! once made a group re-add it this way). The best node is up, not in the group,
//! holds no data of the group (a replica left behind by an earlier removal, which
//! that node erases first: [`crate::purge`] — a learner's log must never go back
//! under the leader's feet), in a zone the group's remaining voters do not use if
//! there is one, and holds the fewest groups.
//!
//! Rebalancing (shard groups only, when `rebalance` is on) moves replicas onto nodes
//! that hold fewer, such as a node added later, with the same three committed steps,
//! and spreads leaders over nodes by handing leadership over:
//!
//! | the cluster, with no voter gone                          | step                         |
//! |----------------------------------------------------------|------------------------------|
//! | a voter of this group is down, or it has a learner       | nothing: repair comes first  |
//! | this group has more voters than the replication factor   | remove the `surplus` voter   |
//! | a reshard is under way (the map has its record)          | nothing: no new move or hand-over until it ends |
//! | the map misses a shard group, or its leader has not      | nothing: loads unknown       |
//! | reported it for 5 s (a cluster starting, a group leaderless) |                          |
//! | or it does not show this group as it is now (voters, leader) |                          |
//! | another group has a voter down, a learner, or more voters| nothing                      |
//! | than the replication factor, or a node holds its data    |                              |
//! | that its record does not name (a move finishing there;   |                              |
//! | for 20 s at most: `Leftovers`)                           |                              |
//! | a lower shard group has a `planned_move` by the map      | nothing: one move at a time  |
//! | (below, "a group" is never one whose step has stood      |                              |
//! | untaken for a minute: `Stuck`)                           |                              |
//! | this group has one, from another node than the leader's  | add its learner              |
//! | this group has one, from the leader's own node           | hand leadership to another   |
//! |                                                          | voter (then the next leader  |
//! |                                                          | moves it)                    |
//! | some group has a move (by the map)                       | nothing: replicas first      |
//! | a lower shard group has a `planned_handover` by the map  | nothing: one at a time       |
//! | this group has one                                       | hand leadership over         |
//! | anything else (loads and leads within one)               | nothing                      |
//!
//! A move takes a replica from the voter `surplus` would remove once the new node
//! votes, and only when that node holds at least two more shard replicas than the new
//! one and the group keeps as many zones: every move lowers the spread of the loads,
//! so moves stop. Which voter goes does not depend on who leads, so a leader that
//! hands over for a move leaves the next leader the same move; the removal after the
//! promotion is decided again by the same rule, so it takes the replica the move was
//! planned for (a leader never removes itself). A hand-over to spread leaders goes to
//! a caught-up voter leading at least two shard groups fewer than this leader: it too
//! lowers a spread, so hand-overs stop.

use std::collections::{BTreeMap, BTreeSet};

use shoal_raft::{GroupId, NodeId};

use crate::meta::{GroupRecord, NodeRecord, META, NODE_DOWN_AFTER_MS};

/// A learner this close to the leader's log can vote without slowing commits.
pub const CAUGHT_UP: u64 = 64;

/// One group's membership as its leader sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub voters: Vec<NodeId>,
    /// Each learner with how far behind the leader's log it is (`None`: it has not
    /// acknowledged anything yet).
    pub learners: Vec<(NodeId, Option<u64>)>,
    /// Voters not known to be within [`CAUGHT_UP`] entries of the leader's log: a
    /// hand-over to one of them would wait for its log, and fail.
    pub lagging: Vec<NodeId>,
    /// Learners that stopped catching up ([`crate::learner_watch`]).
    pub stalled: Vec<NodeId>,
    /// Nodes not to add to this group for now (a learner of theirs stalled).
    pub shunned: Vec<NodeId>,
    /// (group, node): a live node that has held a shard group's data without being
    /// its member by the map for longer than [`LEFTOVER_AFTER_MS`] ([`Leftovers`]).
    pub leftovers: Vec<(GroupId, NodeId)>,
    /// Shard groups whose step by the map (a move, a hand-over) has stood untaken for
    /// longer than [`STUCK_AFTER_MS`] ([`Stuck`]): the "lower group first" rows let
    /// the others go past them.
    pub stuck: Vec<GroupId>,
}

/// How long a group may show a step by the map, its record unchanged and no group
/// mid-move, before the groups above it stop waiting for it. Its leader may be unable to take it: the only
/// voter to hand over to lags for good, or the move's target is shunned there
/// ([`crate::learner_watch`]); none of which the map shows.
pub const STUCK_AFTER_MS: u64 = 60_000;

/// Since when each shard group has shown the same record and a step by the map.
#[derive(Debug, Default)]
pub struct Stuck {
    since: BTreeMap<GroupId, (GroupRecord, u64)>,
}

impl Stuck {
    /// Takes the map as `cluster` has it now; returns the shard groups whose step by
    /// the map has stood, record unchanged, for longer than [`STUCK_AFTER_MS`].
    pub fn observe(&mut self, cluster: &Cluster<'_>) -> Vec<GroupId> {
        // A step waits rightly while another group is mid-move, or while a reshard
        // runs (rebalancing waits for it): the clocks run only while neither is so.
        let moving = cluster.resharding
            || cluster
                .groups
                .iter()
                .filter(|(g, _)| **g != META)
                .any(|(_, r)| !r.learners.is_empty() || r.voters.len() > cluster.replicas);
        if moving {
            self.since.clear();
            return Vec::new();
        }
        let leads = cluster.leads();
        let planned: BTreeMap<GroupId, &GroupRecord> = cluster
            .groups
            .iter()
            .filter(|(g, _)| **g != META)
            .filter(|(g, r)| {
                planned_move(**g, &r.voters, r.leader, &[], cluster).is_some()
                    || planned_handover(r.leader, &r.voters, &leads, cluster, |_| true).is_some()
            })
            .map(|(g, r)| (*g, r))
            .collect();
        self.since
            .retain(|g, (record, _)| planned.get(g).is_some_and(|now| same_step(record, now)));
        for (g, record) in &planned {
            self.since
                .entry(*g)
                .or_insert_with(|| ((*record).clone(), cluster.now_ms));
        }
        self.since
            .iter()
            .filter(|(_, (_, since))| cluster.now_ms.saturating_sub(*since) > STUCK_AFTER_MS)
            .map(|(g, _)| *g)
            .collect()
    }
}

/// Whether two records of a group show it as the same (`seen_ms` aside).
fn same_step(a: &GroupRecord, b: &GroupRecord) -> bool {
    (a.leader, a.term, &a.voters, &a.learners) == (b.leader, b.term, &b.voters, &b.learners)
}

/// A node holding a group's data that the group's record does not name is a move in
/// flight for this long (a learner the record does not show yet, a replica left
/// behind and about to be erased); after it, a leftover its node cannot erase yet
/// (its own log has a membership newer than the group's: `crate::purge`), which
/// must not hold every other group back for good.
pub const LEFTOVER_AFTER_MS: u64 = 20_000;

/// Since when each live node has held data of a shard group the map does not make
/// it a member of, as a group leader watched it.
#[derive(Debug, Default)]
pub struct Leftovers {
    since: BTreeMap<(GroupId, NodeId), u64>,
}

impl Leftovers {
    /// Takes the map as read now; returns the (group, node) pairs held that way for
    /// longer than [`LEFTOVER_AFTER_MS`].
    pub fn observe(
        &mut self,
        nodes: &BTreeMap<NodeId, NodeRecord>,
        groups: &BTreeMap<GroupId, GroupRecord>,
        now_ms: u64,
    ) -> Vec<(GroupId, NodeId)> {
        let mut seen = BTreeSet::new();
        for (id, node) in nodes.iter().filter(|(_, n)| n.alive(now_ms)) {
            for g in node.holds.iter().filter(|g| **g != META) {
                let member = groups.get(g).is_some_and(|r| r.members().any(|m| m == *id));
                if !member {
                    seen.insert((*g, *id));
                }
            }
        }
        self.since.retain(|key, _| seen.contains(key));
        for key in &seen {
            self.since.entry(*key).or_insert(now_ms);
        }
        self.since
            .iter()
            .filter(|(_, since)| now_ms.saturating_sub(**since) > LEFTOVER_AFTER_MS)
            .map(|(key, _)| *key)
            .collect()
    }
}

/// What the leader does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Promote(NodeId),
    Remove(NodeId),
    AddLearner(NodeId),
    /// Hand leadership of the group to this voter.
    HandOver(NodeId),
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
    /// The node deciding: the group's leader.
    pub leader: NodeId,
    /// Whether replicas move onto less loaded nodes (see the module's second table).
    pub rebalance: bool,
    /// The cluster's shard groups (the map's layout: `0..--groups`, and a group being
    /// added by a reshard): loads are only known once the map has a fresh record of
    /// each.
    pub shard_groups: &'a [GroupId],
    /// Whether a reshard is under way (the map has its record): rebalancing waits
    /// for it to end, so that the coordinator's copy and switches do not share the
    /// nodes with snapshot installs and its groups' leaders stay where they are.
    pub resharding: bool,
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
        self.holds_of(id, self.group)
    }

    fn holds_of(&self, id: NodeId, group: GroupId) -> bool {
        self.nodes
            .get(&id)
            .is_some_and(|n| n.holds.contains(&group))
    }

    fn zone(&self, id: NodeId) -> Option<&str> {
        self.nodes.get(&id).map(|n| n.addr.zone.as_str())
    }

    /// Groups each node is a member of, by the map.
    fn load(&self) -> BTreeMap<NodeId, usize> {
        self.members_per_node(|_| true)
    }

    /// Shard replicas (voters and learners) on each node by the map; the meta group's
    /// do not count, they hold little.
    fn shard_load(&self) -> BTreeMap<NodeId, usize> {
        self.members_per_node(|g| g != META)
    }

    /// Shard groups each node leads, by the map.
    fn leads(&self) -> BTreeMap<NodeId, usize> {
        let mut leads = BTreeMap::new();
        for (_, record) in self.groups.iter().filter(|(g, _)| **g != META) {
            *leads.entry(record.leader).or_default() += 1;
        }
        leads
    }

    fn members_per_node(&self, counted: impl Fn(GroupId) -> bool) -> BTreeMap<NodeId, usize> {
        let mut load = BTreeMap::new();
        for (_, record) in self.groups.iter().filter(|(g, _)| counted(**g)) {
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
        let down = !cluster.up(id) && cluster.nodes.contains_key(&id);
        if down || membership.stalled.contains(&id) {
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
        return rebalance_step(membership, cluster);
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
        .filter(|id| !membership.shunned.contains(id))
        .min_by_key(|id| {
            let zone_used = cluster.zone(*id).is_some_and(|z| used_zones.contains(z));
            (zone_used, load.get(id).copied().unwrap_or(0), *id)
        })
}

/// The rebalancing rows (the module's second table), for a group with no voter gone.
fn rebalance_step(membership: &Membership, cluster: &Cluster<'_>) -> Step {
    if !cluster.rebalance || cluster.group == META {
        return Step::Nothing;
    }
    let own_up = membership.voters.iter().all(|id| cluster.up(*id));
    if !own_up || !membership.learners.is_empty() {
        return Step::Nothing;
    }
    // A move half done finishes whatever the other groups do.
    if membership.voters.len() > cluster.replicas {
        let load = cluster.shard_load();
        return surplus(&membership.voters, Some(cluster.leader), &load, cluster)
            .map_or(Step::Nothing, Step::Remove);
    }
    if cluster.resharding {
        return Step::Nothing;
    }
    // Loads counted before every group reported (a cluster starting) are too low.
    let reported = cluster.shard_groups.iter().all(|g| {
        cluster
            .groups
            .get(g)
            .is_some_and(|r| cluster.now_ms.saturating_sub(r.seen_ms) <= NODE_DOWN_AFTER_MS)
    });
    // Nor is a step planned on the map until it shows this group as it is now: right
    // after a move it still counts the replica that left, right after a hand-over
    // the leader that left.
    let own_record_current = cluster.groups.get(&cluster.group).is_some_and(|r| {
        r.learners.is_empty()
            && r.leader == cluster.leader
            && r.voters.iter().collect::<BTreeSet<_>>()
                == membership.voters.iter().collect::<BTreeSet<_>>()
    });
    if !reported || !own_record_current {
        return Step::Nothing;
    }
    let others: Vec<(&GroupId, &GroupRecord)> = cluster
        .groups
        .iter()
        .filter(|(g, _)| **g != META && **g != cluster.group)
        .collect();
    // A live node holding a group's data that its record does not name is a learner
    // the record does not show yet, or a replica a move left behind and not yet
    // erased: either way that group is mid-move, and the loads the map gives are not
    // yet so. (A node that is down may never come back to erase what it held; one
    // that has held it so for `LEFTOVER_AFTER_MS` cannot erase it yet.)
    let others_settled = others.iter().all(|(g, r)| {
        r.learners.is_empty()
            && r.voters.len() <= cluster.replicas
            && r.voters.iter().all(|id| cluster.up(*id))
            && cluster
                .nodes
                .iter()
                .filter(|(id, _)| cluster.up(**id))
                .filter(|(id, _)| !membership.leftovers.contains(&(**g, **id)))
                .all(|(id, n)| !n.holds.contains(g) || r.members().any(|m| m == *id))
    });
    if !others_settled {
        return Step::Nothing;
    }
    // Waiting for a group whose leader cannot take its step would be for good.
    let lower = |g: &GroupId| *g < cluster.group && !membership.stuck.contains(g);
    let moves_elsewhere: Vec<GroupId> = others
        .iter()
        .filter(|(g, _)| !membership.stuck.contains(g))
        .filter(|(g, r)| planned_move(**g, &r.voters, r.leader, &[], cluster).is_some())
        .map(|(g, _)| **g)
        .collect();
    if moves_elsewhere.iter().any(lower) {
        return Step::Nothing;
    }
    let own = planned_move(
        cluster.group,
        &membership.voters,
        cluster.leader,
        &membership.shunned,
        cluster,
    );
    let caught_up = |id: NodeId| !membership.lagging.contains(&id);
    match own {
        Some((_, victim)) if victim == cluster.leader => {
            let leads = cluster.leads();
            let to = least_leading(
                cluster.leader,
                &membership.voters,
                &leads,
                cluster,
                caught_up,
            );
            return to.map_or(Step::Nothing, Step::HandOver);
        }
        Some((target, _)) => return Step::AddLearner(target),
        None => {}
    }
    if !moves_elsewhere.is_empty() {
        return Step::Nothing;
    }
    let leads = cluster.leads();
    let lower_handover = others.iter().any(|(g, r)| {
        lower(g) && planned_handover(r.leader, &r.voters, &leads, cluster, |_| true).is_some()
    });
    if lower_handover {
        return Step::Nothing;
    }
    planned_handover(
        cluster.leader,
        &membership.voters,
        &leads,
        cluster,
        caught_up,
    )
    .map_or(Step::Nothing, Step::HandOver)
}

/// The voter to remove from `voters` (one more than the group keeps), never
/// `keep` (the leader): first one whose zone another voter shares (so the zones
/// stay), then the most loaded node, then the lowest id.
fn surplus(
    voters: &[NodeId],
    keep: Option<NodeId>,
    load: &BTreeMap<NodeId, usize>,
    cluster: &Cluster<'_>,
) -> Option<NodeId> {
    let zone_shared = |id: NodeId| {
        let zone = cluster.zone(id);
        zone.is_some() && voters.iter().any(|o| *o != id && cluster.zone(*o) == zone)
    };
    voters
        .iter()
        .copied()
        .filter(|id| Some(*id) != keep)
        .max_by_key(|id| {
            (
                zone_shared(*id),
                load.get(id).copied().unwrap_or(0),
                std::cmp::Reverse(*id),
            )
        })
}

/// A move for `group` (voters `voters`, led by `leader`), as `(new node, voter it
/// replaces)`: onto the least loaded live node that holds nothing of the group, when
/// the replaced voter holds at least two more shard replicas than it and the group
/// keeps as many zones. Which voter a target replaces does not depend on who leads;
/// of the moves there are, the first that leaves the leader in place is taken, and
/// one that takes the leader's replica only when there is no other (see the
/// module's notes: the next leader then finds the same move).
fn planned_move(
    group: GroupId,
    voters: &[NodeId],
    leader: NodeId,
    shunned: &[NodeId],
    cluster: &Cluster<'_>,
) -> Option<(NodeId, NodeId)> {
    let load = cluster.shard_load();
    let of = |id: &NodeId| load.get(id).copied().unwrap_or(0);
    let zones = |ids: &mut dyn Iterator<Item = NodeId>| -> usize {
        ids.filter_map(|id| cluster.zone(id))
            .collect::<BTreeSet<_>>()
            .len()
    };
    let before = zones(&mut voters.iter().copied());
    let mut targets: Vec<NodeId> = cluster
        .nodes
        .keys()
        .copied()
        .filter(|id| !voters.contains(id) && cluster.up(*id) && !cluster.holds_of(*id, group))
        .filter(|id| !shunned.contains(id))
        .collect();
    targets.sort_by_key(|id| (of(id), *id));
    let moves: Vec<(NodeId, NodeId)> = targets
        .into_iter()
        .filter_map(|target| {
            let mut with: Vec<NodeId> = voters.to_vec();
            with.push(target);
            let mut after_load = load.clone();
            *after_load.entry(target).or_default() += 1;
            let victim = surplus(&with, None, &after_load, cluster)?;
            let kept = zones(&mut with.iter().copied().filter(|id| *id != victim));
            (victim != target && of(&victim) >= of(&target) + 2 && kept >= before)
                .then_some((target, victim))
        })
        .collect();
    moves
        .iter()
        .find(|(_, victim)| *victim != leader)
        .or(moves.first())
        .copied()
}

/// The voter a leader hands over to so that leaders spread: the one [`least_leading`]
/// picks, when it leads at least two shard groups fewer than `leader`.
fn planned_handover(
    leader: NodeId,
    voters: &[NodeId],
    leads: &BTreeMap<NodeId, usize>,
    cluster: &Cluster<'_>,
    eligible: impl Fn(NodeId) -> bool,
) -> Option<NodeId> {
    let of = |id: NodeId| leads.get(&id).copied().unwrap_or(0);
    least_leading(leader, voters, leads, cluster, eligible).filter(|id| of(*id) + 2 <= of(leader))
}

/// The voter of `voters` other than `leader` that is up, passes `eligible` (caught up,
/// when the leader itself decides) and leads the fewest shard groups, then the lowest
/// id: where a hand-over goes, to spread leaders or before a move takes the leader's
/// own replica.
fn least_leading(
    leader: NodeId,
    voters: &[NodeId],
    leads: &BTreeMap<NodeId, usize>,
    cluster: &Cluster<'_>,
    eligible: impl Fn(NodeId) -> bool,
) -> Option<NodeId> {
    voters
        .iter()
        .copied()
        .filter(|id| *id != leader && cluster.up(*id) && eligible(*id))
        .min_by_key(|id| (leads.get(id).copied().unwrap_or(0), *id))
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
        step_watched(voters, learners, &[], &[], n)
    }

    /// [`step`] with learners that stalled and nodes shunned.
    fn step_watched(
        voters: &[NodeId],
        learners: &[(NodeId, Option<u64>)],
        stalled: &[NodeId],
        shunned: &[NodeId],
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
            leader: 4,
            rebalance: false,
            resharding: false,
            shard_groups: &[0],
        };
        next_step(
            &Membership {
                voters: voters.to_vec(),
                learners: learners.to_vec(),
                stalled: stalled.to_vec(),
                shunned: shunned.to_vec(),
                ..Membership::default()
            },
            &cluster,
        )
    }

    #[test]
    fn a_stalled_learner_is_removed_and_its_node_not_picked_again() {
        // Node 3 gone; 6 (zone c) took a learner that stopped catching up.
        let n = nodes(&[
            (1, "a", 0),
            (2, "b", 0),
            (3, "c", 20_000),
            (6, "c", 0),
            (7, "c", 0),
        ]);
        assert_eq!(step(&[1, 2, 3], &[(6, None)], &n), Step::Nothing, "waiting");
        assert_eq!(
            step_watched(&[1, 2, 3], &[(6, None)], &[6], &[], &n),
            Step::Remove(6)
        );
        // A stalled learner that is caught up after all is promoted, not removed.
        assert_eq!(
            step_watched(&[1, 2, 3], &[(6, Some(2))], &[6], &[], &n),
            Step::Promote(6)
        );
        // The next try goes to the other node of zone c, then anywhere but 6.
        assert_eq!(
            step_watched(&[1, 2, 3], &[], &[], &[6], &n),
            Step::AddLearner(7)
        );
        assert_eq!(
            step_watched(&[1, 2, 3], &[], &[], &[6, 7], &n),
            Step::Nothing,
            "nobody else"
        );
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

    /// Groups as a map of `(voters, learners, leader)`.
    type Layout = BTreeMap<GroupId, (Vec<NodeId>, Vec<NodeId>, NodeId)>;

    fn records(layout: &Layout) -> BTreeMap<GroupId, GroupRecord> {
        layout
            .iter()
            .map(|(g, (voters, learners, leader))| {
                let record = GroupRecord {
                    leader: *leader,
                    term: 1,
                    voters: voters.clone(),
                    learners: learners.clone(),
                    seen_ms: NOW,
                    committed_index: 1,
                    committed_members: voters.clone(),
                };
                (*g, record)
            })
            .collect()
    }

    fn rebalance_step(layout: &Layout, n: &BTreeMap<NodeId, NodeRecord>, group: GroupId) -> Step {
        rebalance_step_adding(layout, n, group, &[])
    }

    /// [`rebalance_step`] while a reshard adds the groups `adding`, which the map has no
    /// record of yet.
    fn rebalance_step_adding(
        layout: &Layout,
        n: &BTreeMap<NodeId, NodeRecord>,
        group: GroupId,
        adding: &[GroupId],
    ) -> Step {
        rebalance_step_in(layout, n, group, adding, false)
    }

    /// [`rebalance_step_adding`], with a reshard's record in the map or not.
    fn rebalance_step_in(
        layout: &Layout,
        n: &BTreeMap<NodeId, NodeRecord>,
        group: GroupId,
        adding: &[GroupId],
        resharding: bool,
    ) -> Step {
        let groups = records(layout);
        let shard_groups: Vec<GroupId> = layout.keys().chain(adding).copied().collect();
        let (voters, learners, leader) = &layout[&group];
        let cluster = Cluster {
            group,
            nodes: n,
            groups: &groups,
            replicas: 3,
            now_ms: NOW,
            replace_after_ms: 10_000,
            leader: *leader,
            rebalance: true,
            resharding,
            shard_groups: &shard_groups,
        };
        let membership = Membership {
            voters: voters.clone(),
            learners: learners.iter().map(|id| (*id, Some(0))).collect(),
            ..Membership::default()
        };
        next_step(&membership, &cluster)
    }

    fn shard_loads(layout: &Layout) -> BTreeMap<NodeId, usize> {
        let mut load = BTreeMap::new();
        for (voters, learners, _) in layout.values() {
            for id in voters.iter().chain(learners) {
                *load.entry(*id).or_default() += 1;
            }
        }
        load
    }

    /// What [`settle`] saw: steps taken, and how many were hand-overs.
    #[derive(Debug, Default)]
    struct Settled {
        steps: usize,
        handovers: usize,
    }

    /// Every leader takes its step once a round, on the map as it was when the round
    /// began (leaders read the same, slightly stale map), until nobody has one.
    fn settle(layout: &mut Layout, n: &BTreeMap<NodeId, NodeRecord>) -> Settled {
        let mut settled = Settled::default();
        for _ in 0..100 {
            let before = layout.clone();
            let mut moved = false;
            let mut handovers = 0;
            for g in before.keys() {
                let step = rebalance_step(&before, n, *g);
                let (voters, learners, leader) = layout.get_mut(g).expect("group");
                match step {
                    Step::Nothing => continue,
                    Step::AddLearner(id) => learners.push(id),
                    Step::Promote(id) => {
                        learners.retain(|l| *l != id);
                        voters.push(id);
                    }
                    Step::Remove(id) => {
                        assert_ne!(id, *leader, "a leader removed itself");
                        voters.retain(|v| *v != id);
                    }
                    Step::HandOver(id) => {
                        assert!(voters.contains(&id), "{id} is no voter: {layout:?}");
                        assert_ne!(id, *leader);
                        *leader = id;
                        handovers += 1;
                        settled.handovers += 1;
                    }
                }
                moved = true;
                settled.steps += 1;
            }
            let moving = layout
                .values()
                .filter(|(v, l, _)| !l.is_empty() || v.len() > 3)
                .count();
            assert!(moving + handovers <= 1, "two steps at once: {layout:?}");
            if !moved {
                return settled;
            }
        }
        panic!("no fixed point: {layout:?}");
    }

    fn leads_of(layout: &Layout) -> BTreeMap<NodeId, usize> {
        let mut leads = BTreeMap::new();
        for (_, _, leader) in layout.values() {
            *leads.entry(*leader).or_default() += 1;
        }
        leads
    }

    #[test]
    fn nodes_added_later_take_replicas_one_move_at_a_time_keeping_zones() {
        let n = nodes(&[
            (1, "a", 0),
            (2, "b", 0),
            (3, "c", 0),
            (4, "a", 0),
            (5, "b", 0),
            (6, "c", 0),
        ]);
        let mut layout: Layout = (0..3)
            .map(|g| (g, (vec![1, 2, 3], Vec::new(), g + 1)))
            .collect();
        let settled = settle(&mut layout, &n);
        let moves = settled.steps - settled.handovers;
        assert_eq!(
            moves % 3,
            0,
            "each move is add, promote, remove: {settled:?}"
        );
        assert!(moves >= 9, "at least three moves: {settled:?}");
        for (g, (voters, learners, leader)) in &layout {
            assert!(learners.is_empty(), "{g}: {layout:?}");
            assert_eq!(voters.len(), 3, "{g}: {layout:?}");
            assert!(voters.contains(leader), "{g}: {layout:?}");
            let zones: BTreeSet<_> = voters.iter().map(|id| n[id].addr.zone.clone()).collect();
            assert_eq!(zones.len(), 3, "{g}: {layout:?}");
        }
        let load = shard_loads(&layout);
        assert!(
            (1..=6).all(|id| (1..=2).contains(&load.get(&id).copied().unwrap_or(0))),
            "{load:?}"
        );
        assert!(leads_of(&layout).values().all(|l| *l == 1), "{layout:?}");
    }

    #[test]
    fn a_zone_s_only_newcomer_takes_a_leader_s_replica_after_a_hand_over() {
        // Node 4 can take only node 1's replicas (zone a). Group 0 is the lowest with
        // that move, and 1 leads it: 1 hands over first, to the voter leading fewest.
        let n = nodes(&[(1, "a", 0), (2, "b", 0), (3, "c", 0), (4, "a", 0)]);
        let mut layout: Layout = (0..3)
            .map(|g| (g, (vec![1, 2, 3], Vec::new(), g + 1)))
            .collect();
        assert_eq!(rebalance_step(&layout, &n, 0), Step::HandOver(2));
        assert_eq!(rebalance_step(&layout, &n, 1), Step::Nothing, "0 first");
        assert_eq!(rebalance_step(&layout, &n, 2), Step::Nothing, "0 first");
        // The next leader is left the same move.
        layout.get_mut(&0).expect("group 0").2 = 2;
        assert_eq!(rebalance_step(&layout, &n, 0), Step::AddLearner(4));
        layout.get_mut(&0).expect("group 0").2 = 1;
        let settled = settle(&mut layout, &n);
        assert_eq!(layout[&0].0, vec![2, 3, 4]);
        // 1 and 4 now hold 2 and 1: within one of each other, nothing more moves.
        assert_eq!(layout[&1].0, vec![1, 2, 3]);
        assert_eq!(layout[&2].0, vec![1, 2, 3]);
        // 2 led groups 0 and 1, 1 none: leads spread again, one each but for 1.
        assert!(settled.handovers >= 2, "{settled:?}");
        let leads = leads_of(&layout);
        assert!(leads.values().all(|l| *l == 1), "{leads:?}");
    }

    #[test]
    fn nothing_new_moves_while_a_reshard_runs_but_a_half_done_move_finishes() {
        let n = nodes(&[(1, "a", 0), (2, "b", 0), (3, "c", 0), (4, "a", 0)]);
        let layout: Layout = (0..3)
            .map(|g| (g, (vec![1, 2, 3], Vec::new(), g + 1)))
            .collect();
        // Without a reshard: the hand-over that starts node 4's move (as above).
        assert_eq!(
            rebalance_step_in(&layout, &n, 0, &[], false),
            Step::HandOver(2)
        );
        assert_eq!(rebalance_step_in(&layout, &n, 0, &[], true), Step::Nothing);
        // Every group led by 1: leaders would spread; not while a reshard runs.
        let all_one: Layout = (0..3)
            .map(|g| (g, (vec![1, 2, 3], Vec::new(), 1)))
            .collect();
        let n3 = nodes(&[(1, "a", 0), (2, "b", 0), (3, "c", 0)]);
        assert_eq!(
            rebalance_step_in(&all_one, &n3, 0, &[], false),
            Step::HandOver(2)
        );
        assert_eq!(
            rebalance_step_in(&all_one, &n3, 0, &[], true),
            Step::Nothing
        );
        // A move that got as far as promoting node 4 still removes the surplus voter.
        let mut half = layout.clone();
        half.insert(0, (vec![1, 2, 3, 4], Vec::new(), 2));
        assert_eq!(rebalance_step_in(&half, &n, 0, &[], true), Step::Remove(1));
    }

    #[test]
    fn leaders_spread_over_the_nodes_one_hand_over_at_a_time() {
        let n = nodes(&[(1, "a", 0), (2, "b", 0), (3, "c", 0)]);
        // Every group led by 1 (the others restarted, say).
        let mut layout: Layout = (0..3)
            .map(|g| (g, (vec![1, 2, 3], Vec::new(), 1)))
            .collect();
        assert_eq!(rebalance_step(&layout, &n, 0), Step::HandOver(2));
        assert_eq!(rebalance_step(&layout, &n, 1), Step::Nothing, "0 first");
        let settled = settle(&mut layout, &n);
        assert_eq!(settled.handovers, settled.steps, "nothing but hand-overs");
        assert_eq!(settled.handovers, 2, "{layout:?}");
        assert_eq!(leads_of(&layout), BTreeMap::from([(1, 1), (2, 1), (3, 1)]));
        // Two, one and one: within one, stays.
        let near: Layout = BTreeMap::from([
            (0, (vec![1, 2, 3], Vec::new(), 1)),
            (1, (vec![1, 2, 3], Vec::new(), 1)),
            (2, (vec![1, 2, 3], Vec::new(), 2)),
            (3, (vec![1, 2, 3], Vec::new(), 3)),
        ]);
        assert!((0..4).all(|g| rebalance_step(&near, &n, g) == Step::Nothing));
    }

    #[test]
    fn a_hand_over_waits_for_a_caught_up_voter_and_a_current_map() {
        let n = nodes(&[(1, "a", 0), (2, "b", 0), (3, "c", 0)]);
        let layout: Layout = (0..3)
            .map(|g| (g, (vec![1, 2, 3], Vec::new(), 1)))
            .collect();
        let groups = records(&layout);
        let cluster = Cluster {
            group: 0,
            nodes: &n,
            groups: &groups,
            replicas: 3,
            now_ms: NOW,
            replace_after_ms: 10_000,
            leader: 1,
            rebalance: true,
            resharding: false,
            shard_groups: &[0, 1, 2],
        };
        let mut membership = Membership {
            voters: vec![1, 2, 3],
            lagging: vec![2],
            ..Membership::default()
        };
        assert_eq!(
            next_step(&membership, &cluster),
            Step::HandOver(3),
            "2 lags"
        );
        membership.lagging = vec![2, 3];
        assert_eq!(next_step(&membership, &cluster), Step::Nothing);
        membership.lagging.clear();
        // The map still names another leader of this group (a hand-over just done).
        let mut behind = groups.clone();
        if let Some(r) = behind.get_mut(&0) {
            r.leader = 3;
        }
        let lagging_map = Cluster {
            groups: &behind,
            ..cluster
        };
        assert_eq!(next_step(&membership, &lagging_map), Step::Nothing);
        // A node down: repair's turn, nothing moves.
        let mut down = n.clone();
        if let Some(r) = down.get_mut(&3) {
            r.seen_ms = NOW - 6_000;
        }
        let with_down = Cluster {
            nodes: &down,
            ..cluster
        };
        assert_eq!(next_step(&membership, &with_down), Step::Nothing);
        // Switched off: nothing.
        let off = Cluster {
            rebalance: false,
            resharding: false,
            ..cluster
        };
        assert_eq!(next_step(&membership, &off), Step::Nothing);
    }

    #[test]
    fn nothing_moves_while_balanced_down_repairing_or_switched_off() {
        let mut n = nodes(&[
            (1, "a", 0),
            (2, "b", 0),
            (3, "c", 0),
            (4, "a", 0),
            (5, "b", 0),
            (6, "c", 0),
        ]);
        // Loads 2, 2, 1, 1, 2, 1: within one.
        let balanced: Layout = BTreeMap::from([
            (0, (vec![1, 2, 3], Vec::new(), 1)),
            (1, (vec![4, 5, 6], Vec::new(), 4)),
            (2, (vec![1, 2, 5], Vec::new(), 2)),
        ]);
        assert!((0..3).all(|g| rebalance_step(&balanced, &n, g) == Step::Nothing));
        let crowded: Layout = (0..3)
            .map(|g| (g, (vec![1, 2, 3], Vec::new(), g + 1)))
            .collect();
        // Group 0 (led by 1) gives node 2's replica to node 5, zone b for zone b.
        assert_eq!(rebalance_step(&crowded, &n, 0), Step::AddLearner(5));
        // Not while a group the layout adds has not reported: the loads lack it.
        assert_eq!(rebalance_step_adding(&crowded, &n, 0, &[3]), Step::Nothing);
        assert_eq!(rebalance_step(&crowded, &n, 1), Step::Nothing, "0 first");
        // A learner under way in another group: wait for it.
        let mut busy = crowded.clone();
        busy.get_mut(&1).expect("group 1").1.push(6);
        assert_eq!(rebalance_step(&busy, &n, 0), Step::Nothing);
        // A voter's node down (not yet gone): repair has the right of way.
        if let Some(r) = n.get_mut(&3) {
            r.seen_ms = NOW - 6_000;
        }
        assert_eq!(rebalance_step(&crowded, &n, 0), Step::Nothing);
        if let Some(r) = n.get_mut(&3) {
            r.seen_ms = NOW;
        }
        // The map without group 2's record, or with an old one: loads unknown.
        let mut partial = records(&crowded);
        partial.remove(&2);
        let cluster = Cluster {
            group: 0,
            nodes: &n,
            groups: &partial,
            replicas: 3,
            now_ms: NOW,
            replace_after_ms: 10_000,
            leader: 1,
            rebalance: true,
            resharding: false,
            shard_groups: &[0, 1, 2],
        };
        let membership = Membership {
            voters: vec![1, 2, 3],
            ..Membership::default()
        };
        assert_eq!(next_step(&membership, &cluster), Step::Nothing);
        let mut stale = records(&crowded);
        if let Some(r) = stale.get_mut(&2) {
            r.seen_ms = NOW - 6_000;
        }
        let cluster = Cluster {
            groups: &stale,
            ..cluster
        };
        assert_eq!(next_step(&membership, &cluster), Step::Nothing);
        let fresh = records(&crowded);
        let cluster = Cluster {
            groups: &fresh,
            ..cluster
        };
        assert_eq!(next_step(&membership, &cluster), Step::AddLearner(5));
        // The map still shows the voter a finished move removed: wait for the report.
        let mut behind = records(&crowded);
        if let Some(r) = behind.get_mut(&0) {
            r.voters.push(6);
        }
        let lagging = Cluster {
            groups: &behind,
            ..cluster
        };
        assert_eq!(next_step(&membership, &lagging), Step::Nothing);
        // Switched off: the repair rows only.
        let cluster = Cluster {
            rebalance: false,
            resharding: false,
            ..cluster
        };
        assert_eq!(next_step(&membership, &cluster), Step::Nothing);
    }

    #[test]
    fn a_move_the_map_does_not_show_yet_holds_the_others_back() {
        // Group 0's record lags: it still shows [1, 2, 3] without a learner, but node 4
        // already reported holding group 0's data (a learner being caught up). Group
        // 1 must not take node 1's replica for node 4 too.
        let mut n = nodes(&[(1, "a", 0), (2, "b", 0), (3, "c", 0), (4, "a", 0)]);
        let layout: Layout = BTreeMap::from([
            (0, (vec![1, 2, 3], Vec::new(), 3)),
            (1, (vec![1, 2, 3], Vec::new(), 2)),
        ]);
        if let Some(r) = n.get_mut(&4) {
            r.holds = vec![0];
        }
        assert_eq!(rebalance_step(&layout, &n, 1), Step::Nothing);
        // Nor while node 1 still holds group 0's replica after the move.
        let moved: Layout = BTreeMap::from([
            (0, (vec![2, 3, 4], Vec::new(), 3)),
            (1, (vec![1, 2, 3], Vec::new(), 2)),
        ]);
        for (id, holds) in [(1, vec![0, 1]), (4, vec![0])] {
            if let Some(r) = n.get_mut(&id) {
                r.holds = holds;
            }
        }
        assert_eq!(rebalance_step(&moved, &n, 1), Step::Nothing);
        // One that stays (a leftover node 1 cannot erase yet) stops counting once
        // the leader has seen it for LEFTOVER_AFTER_MS.
        let groups = records(&layout);
        let mut watch = Leftovers::default();
        assert_eq!(watch.observe(&n, &groups, NOW), Vec::new());
        assert_eq!(watch.observe(&n, &groups, NOW + 1_000), Vec::new());
        let later = NOW + LEFTOVER_AFTER_MS + 1;
        let mut reported = n.clone();
        for r in reported.values_mut() {
            r.seen_ms = later;
        }
        let held_long = watch.observe(&reported, &groups, later);
        assert_eq!(
            held_long,
            vec![(0, 4)],
            "node 4 with group 0's data, not a member"
        );
        let cluster = Cluster {
            group: 1,
            nodes: &n,
            groups: &groups,
            replicas: 3,
            now_ms: NOW,
            replace_after_ms: 10_000,
            leader: 2,
            rebalance: true,
            resharding: false,
            shard_groups: &[0, 1],
        };
        let mut membership = Membership {
            voters: vec![1, 2, 3],
            ..Membership::default()
        };
        assert_eq!(next_step(&membership, &cluster), Step::Nothing);
        membership.leftovers = held_long;
        assert_eq!(next_step(&membership, &cluster), Step::AddLearner(4));
        // Once node 1 erased it, the loads are 1, 2, 2, 1: nothing to do anyway.
        if let Some(r) = n.get_mut(&1) {
            r.holds = vec![1];
        }
        assert_eq!(rebalance_step(&moved, &n, 1), Step::Nothing);
        // Without node 4's data on group 0 and group 0 shown as before, group 0 moves
        // first (the lowest), and group 1 waits for it.
        if let Some(r) = n.get_mut(&4) {
            r.holds = Vec::new();
        }
        assert_eq!(rebalance_step(&layout, &n, 0), Step::AddLearner(4));
        assert_eq!(rebalance_step(&layout, &n, 1), Step::Nothing);
    }

    #[test]
    fn a_lower_group_whose_step_stands_untaken_stops_holding_the_others_back() {
        // Every group led by 1; group 0's only other voters lag for good, so its
        // leader never hands over; group 1 waits for it, then goes past it.
        let n = nodes(&[(1, "a", 0), (2, "b", 0), (3, "c", 0)]);
        let layout: Layout = (0..3)
            .map(|g| (g, (vec![1, 2, 3], Vec::new(), 1)))
            .collect();
        let groups = records(&layout);
        // The nodes and groups as reported at `now_ms` (every node reports each second).
        let fresh = |now_ms: u64, groups: &BTreeMap<GroupId, GroupRecord>| {
            let mut nodes = n.clone();
            for r in nodes.values_mut() {
                r.seen_ms = now_ms;
            }
            let mut groups = groups.clone();
            for r in groups.values_mut() {
                r.seen_ms = now_ms;
            }
            (nodes, groups)
        };
        let at = |now_ms, group, nodes, groups| Cluster {
            group,
            nodes,
            groups,
            replicas: 3,
            now_ms,
            replace_after_ms: 10_000,
            leader: 1,
            rebalance: true,
            resharding: false,
            shard_groups: &[0, 1, 2],
        };
        let mut stuck = Stuck::default();
        let (n0, g0) = fresh(NOW, &groups);
        assert!(stuck.observe(&at(NOW, 0, &n0, &g0)).is_empty());
        let (n1, g1) = fresh(NOW + 30_000, &groups);
        assert!(stuck.observe(&at(NOW + 30_000, 0, &n1, &g1)).is_empty());
        let mut membership = Membership {
            voters: vec![1, 2, 3],
            ..Membership::default()
        };
        let late = NOW + STUCK_AFTER_MS + 1;
        let (n2, g2) = fresh(late, &groups);
        assert_eq!(
            next_step(&membership, &at(late, 1, &n2, &g2)),
            Step::Nothing,
            "0 first"
        );
        membership.stuck = stuck.observe(&at(late, 0, &n2, &g2));
        assert_eq!(membership.stuck, vec![0, 1, 2]);
        assert_eq!(
            next_step(&membership, &at(late, 1, &n2, &g2)),
            Step::HandOver(2)
        );
        // A record that changed starts its clock again.
        let mut moved = groups.clone();
        if let Some(r) = moved.get_mut(&0) {
            r.term = 2;
        }
        let (n3, g3) = fresh(late + 1, &moved);
        assert_eq!(stuck.observe(&at(late + 1, 0, &n3, &g3)), vec![1, 2]);
        // Another group mid-move: waiting is right, every clock starts again.
        let mut busy = moved.clone();
        if let Some(r) = busy.get_mut(&2) {
            r.learners.push(4);
        }
        let (n4, g4) = fresh(late + 2, &busy);
        assert!(stuck.observe(&at(late + 2, 0, &n4, &g4)).is_empty());
        let (n5, g5) = fresh(late + 3, &moved);
        assert!(stuck.observe(&at(late + 3, 0, &n5, &g5)).is_empty());
        // While a reshard runs every step waits by design: no clock runs, so none of
        // them is taken for stuck when it ends.
        let (n6, g6) = fresh(late + 4, &moved);
        let resharding = Cluster {
            resharding: true,
            ..at(late + 4, 0, &n6, &g6)
        };
        assert!(stuck.observe(&resharding).is_empty());
        let (n7, g7) = fresh(late + 4 + 2 * STUCK_AFTER_MS, &moved);
        let still = Cluster {
            resharding: true,
            ..at(late + 4 + 2 * STUCK_AFTER_MS, 0, &n7, &g7)
        };
        assert!(stuck.observe(&still).is_empty());
        let (n8, g8) = fresh(late + 5 + 2 * STUCK_AFTER_MS, &moved);
        assert!(
            stuck
                .observe(&at(late + 5 + 2 * STUCK_AFTER_MS, 0, &n8, &g8))
                .is_empty(),
            "the clocks start again when the reshard ends"
        );
    }

    #[test]
    fn the_surplus_voter_keeps_the_zones_and_is_never_the_leader() {
        let n = nodes(&[(1, "a", 0), (2, "b", 0), (3, "c", 0), (4, "a", 0)]);
        let groups = BTreeMap::new();
        let cluster = Cluster {
            group: 0,
            nodes: &n,
            groups: &groups,
            replicas: 3,
            now_ms: NOW,
            replace_after_ms: 10_000,
            leader: 1,
            rebalance: true,
            resharding: false,
            shard_groups: &[],
        };
        let load = BTreeMap::from([(1, 3), (2, 3), (3, 3), (4, 1)]);
        // 1 and 4 share zone a; 1 leads, so 4 goes although 2 and 3 hold more.
        assert_eq!(surplus(&[1, 2, 3, 4], Some(1), &load, &cluster), Some(4));
        // Led by 2: of the two in zone a, the more loaded.
        assert_eq!(surplus(&[1, 2, 3, 4], Some(2), &load, &cluster), Some(1));
        // When planning a move, whoever leads: the same.
        assert_eq!(surplus(&[1, 2, 3, 4], None, &load, &cluster), Some(1));
        // No zone shared: the most loaded, then the lowest id.
        assert_eq!(surplus(&[1, 2, 3], Some(1), &load, &cluster), Some(2));
        assert_eq!(surplus(&[1], Some(1), &load, &cluster), None);
    }
}
