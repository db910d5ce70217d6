//! Confirmed reads: a search or aggregate part answered from this node's replica after
//! one call to one peer, with no quorum round on any leader.
//!
//! Raft's ReadIndex makes a read linearizable by having the leader confirm, after the
//! read began, that a quorum still takes it for leader: then no newer leader can have
//! been elected (and have acknowledged writes the leader's log lacks) before the read
//! began, and the leader's commit index covers every write acknowledged before it.
//! A confirmation is the same fact stated by votes: a replica grants a newer candidate
//! only by replacing its vote, and votes only grow, so a replica whose vote still names
//! leader (t, L) at some moment after the read began granted no newer leader before
//! the read began. In a group of at most three voters two of them are a quorum; when
//! this node holds one of the two, its own vote is half of the confirmation:
//!
//! | this node's replica, when the round is sent | the peer's replica, when it answers | read at |
//! |----------------------------------------------|-------------------------------------|---------|
//! | leads as (t, me), committed in its own term  | votes for (t, me)                   | my commit index |
//! | votes for (t, peer)                          | leads as (t, peer), committed in its own term | the peer's commit index |
//! | anything else: another leader, a joint or larger membership, the two replicas on different memberships | | not confirmed: the read index or leader path |
//!
//! Both sides must go by one configuration of at most three voters holding both
//! nodes, so that the two are a quorum of any configuration a newer leader could be
//! elected by (a membership change passes through a joint configuration, which one of
//! the two would have to hold). A round is sent after every read it serves began, and
//! this node's own votes are taken when it is sent; the peer's votes when it answers.
//! One round to a peer carries every group the waiting reads need from it: on three
//! nodes that each lead a group, a search over the three groups costs each router two
//! small calls per round, where the read index path costs two calls plus a heartbeat
//! round on every leader.

use std::collections::HashMap;

use shoal_raft::{GroupId, NodeId, VoteView};

use crate::rounds::Rounds;

/// What one round learned: this node's votes when it was sent, the peer's when it
/// answered, per group.
#[derive(Debug, Default)]
pub struct Fence {
    pub own: HashMap<GroupId, VoteView>,
    pub peer: HashMap<GroupId, VoteView>,
}

impl Fence {
    /// The index at which `me` may read its replica of `group`, if the round confirms
    /// one (the module's table).
    pub fn index(&self, me: NodeId, peer: NodeId, group: GroupId) -> Option<u64> {
        confirmed_index(me, self.own.get(&group)?, peer, self.peer.get(&group)?)
    }
}

/// The rounds of one router, per peer (its id and address).
pub type Fences = Rounds<(NodeId, String), GroupId, std::sync::Arc<Fence>>;

/// The module's table for one group: `own` is this node's view when the round was
/// sent, `theirs` the peer's when it answered.
pub fn confirmed_index(me: NodeId, own: &VoteView, peer: NodeId, theirs: &VoteView) -> Option<u64> {
    let voters = own.voters.as_ref()?;
    // The views must be the two nodes' own: an address now held by another node (a
    // learner, say) would otherwise answer for the peer.
    let quorum_of_two = own.id == me
        && theirs.id == peer
        && me != peer
        && voters.len() <= 3
        && voters.contains(&me)
        && voters.contains(&peer)
        && theirs.voters.as_ref() == Some(voters);
    if !quorum_of_two || !theirs.votes_for(own.term, own.node) {
        return None;
    }
    match (own.node == me, own.node == peer) {
        (true, _) => own.read_index,
        (false, true) => theirs.read_index,
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Node `id`'s view: it votes for leader (`term`, `node`).
    fn view(id: NodeId, term: u64, node: NodeId, read_index: Option<u64>) -> VoteView {
        VoteView {
            id,
            term,
            node,
            read_index,
            voters: Some(vec![1, 2, 3]),
        }
    }

    fn with_voters(v: VoteView, voters: Option<&[NodeId]>) -> VoteView {
        VoteView {
            voters: voters.map(<[NodeId]>::to_vec),
            ..v
        }
    }

    #[test]
    fn a_leader_is_confirmed_by_one_voter_that_still_votes_for_it() {
        let me = view(1, 4, 1, Some(90));
        let peer = view(2, 4, 1, None);
        assert_eq!(confirmed_index(1, &me, 2, &peer), Some(90));
    }

    #[test]
    fn a_follower_reads_at_the_leaders_index_when_it_still_votes_for_it() {
        let me = view(1, 4, 2, None);
        let leader = view(2, 4, 2, Some(77));
        assert_eq!(confirmed_index(1, &me, 2, &leader), Some(77));
        // Two voters: the two of them are the quorum.
        let two = Some(&[1, 2][..]);
        assert_eq!(
            confirmed_index(1, &with_voters(me, two), 2, &with_voters(leader, two)),
            Some(77)
        );
    }

    #[test]
    fn anything_else_is_not_confirmed() {
        let five = Some(&[1, 2, 3, 4, 5][..]);
        let other = Some(&[1, 2, 4][..]);
        let cases: Vec<(&str, NodeId, VoteView, NodeId, VoteView)> = vec![
            // The peer moved on to a newer leader: a newer term, or in openraft's
            // leader ids a greater node at the same term.
            (
                "peer votes newer term",
                1,
                view(1, 4, 1, Some(9)),
                2,
                view(2, 5, 3, None),
            ),
            (
                "peer votes other node",
                1,
                view(1, 4, 1, Some(9)),
                2,
                view(2, 4, 3, None),
            ),
            // This node moved on before the round was sent.
            (
                "I follow another",
                1,
                view(1, 5, 3, None),
                2,
                view(2, 4, 2, Some(9)),
            ),
            // The leader has not committed an entry of its own term yet.
            (
                "I lead, no index",
                1,
                view(1, 4, 1, None),
                2,
                view(2, 4, 1, None),
            ),
            (
                "peer leads, no index",
                1,
                view(1, 4, 2, None),
                2,
                view(2, 4, 2, None),
            ),
            // Neither of the two leads: the third voter would be the one to ask.
            (
                "third node leads",
                1,
                view(1, 4, 3, None),
                2,
                view(2, 4, 3, Some(9)),
            ),
            // Five voters: two are not a quorum.
            (
                "five voters",
                1,
                with_voters(view(1, 4, 1, Some(9)), five),
                2,
                with_voters(view(2, 4, 1, None), five),
            ),
            // The two go by different memberships (one has a change the other lacks).
            (
                "memberships differ",
                1,
                view(1, 4, 1, Some(9)),
                2,
                with_voters(view(2, 4, 1, None), other),
            ),
            // A joint configuration on either side.
            (
                "I am joint",
                1,
                with_voters(view(1, 4, 1, Some(9)), None),
                2,
                view(2, 4, 1, None),
            ),
            (
                "peer is joint",
                1,
                view(1, 4, 1, Some(9)),
                2,
                with_voters(view(2, 4, 1, None), None),
            ),
            // The peer is a learner, not a voter.
            (
                "peer not a voter",
                1,
                view(1, 4, 1, Some(9)),
                4,
                view(4, 4, 1, None),
            ),
            (
                "asking oneself",
                1,
                view(1, 4, 1, Some(9)),
                1,
                view(1, 4, 1, Some(9)),
            ),
            // Another node answered at the peer's address (node 4, a learner that
            // still votes for me), or the views are not this node's own.
            (
                "wrong node answered",
                1,
                view(1, 4, 1, Some(9)),
                2,
                view(4, 4, 1, None),
            ),
            (
                "not my view",
                1,
                view(3, 4, 1, Some(9)),
                2,
                view(2, 4, 1, None),
            ),
        ];
        for (name, me, own, peer, theirs) in cases {
            assert_eq!(confirmed_index(me, &own, peer, &theirs), None, "{name}");
        }
    }

    #[test]
    fn a_fence_answers_only_groups_both_sides_reported() {
        let mut fence = Fence::default();
        fence.own.insert(7, view(1, 4, 1, Some(12)));
        fence.peer.insert(7, view(2, 4, 1, None));
        fence.own.insert(8, view(1, 4, 1, Some(12)));
        assert_eq!(fence.index(1, 2, 7), Some(12));
        assert_eq!(fence.index(1, 2, 8), None);
        assert_eq!(fence.index(1, 2, 9), None);
    }
}
