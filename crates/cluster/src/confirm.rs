//! Confirmed reads: a search or aggregate part answered from this node's replica after
//! one call to one peer, with no quorum round on any leader.
//!
//! Raft's ReadIndex makes a read linearizable by having the leader confirm, after the
//! read began, that a quorum still takes it for leader: then no newer leader can have
//! been elected (and have acknowledged writes the leader's log lacks) before the read
//! began, and the leader's commit index covers every write acknowledged before it.
//! In a group of at most three voters two of them are a quorum, and when this node
//! holds one of the two its own replica is half of what such a proof needs. Two
//! proofs are used, the first where it applies, for its lower index:
//!
//! * **Votes.** A replica grants a newer candidate only by replacing its vote, and
//!   votes only grow, so a replica whose vote still names leader (t, L) at some moment
//!   after the read began granted no newer leader before the read began; if both of
//!   the two still vote (t, L) and one of them is L, L's applied index (once L applied
//!   an entry of its own term) covers every write acknowledged before the read began:
//!   L acknowledges a write only once it applied it, and older leaders' writes are
//!   below L's first entry.
//! * **Logs** (a quorum read, as Paxos Quorum Reads do). A write acknowledged before
//!   the read began was committed, so it was in the logs of a quorum, and a committed
//!   entry is never cut from a log that holds it (Raft overwrites only uncommitted
//!   entries). Every quorum holds this node or the peer, so the higher of their two
//!   last log indexes, read after the read began, is at or above every such write.
//!   A replica applies only committed entries, so once this node's replica has applied
//!   that index it holds every acknowledged write and nothing that can be undone. No
//!   vote and no leader is needed: the peer can be any voter, so a part is confirmed
//!   while its group has no leader, or one that does not answer. The index may name entries in
//!   flight when the round answered (the read waits for their commit), or an
//!   uncommitted tail that will be overwritten instead (a deposed leader's): then the
//!   part gives up after the catch-up wait and the peer is not asked for a while.
//!   A replica that was erased and given back offers no log view
//!   (`shoal_raft::Host::read_views` says why).
//!
//! | this node's replica, while the round is out | the peer's replica, when it answers | read at |
//! |----------------------------------------------|-------------------------------------|---------|
//! | elected as (t, me), applied in its own term  | votes for (t, me)                   | my applied index |
//! | votes for (t, peer)                          | elected as (t, peer), applied in its own term | the peer's applied index |
//! | the same committed membership                | the same committed membership       | the higher of the two last log indexes |
//! | anything else: a joint or larger membership, the two on different memberships, one not yet known committed | | not confirmed: the read index or leader path |
//!
//! Both sides must go by one configuration of at most three voters holding both
//! nodes, so that the two are a quorum of any configuration a newer leader could be
//! elected by, or an entry committed by (a membership change passes through a joint
//! configuration, which one of the two would have to hold in its log and then go by).
//! The logs proof further asks that both know that configuration committed at the same
//! index: their logs then agree up to it, so an entry committed under an older
//! configuration is in both. A round is sent after every read it serves began, and
//! this node's own views are taken as it is sent; the peer's when it answers. Both
//! follow every read the round serves, which is all the proof needs of either. The
//! views are what each replica's log store and state machine keep as they write
//! (`shoal_raft::view_mirror` says why that is never behind what the replica told
//! anyone), not a message to its Raft core.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use shoal_raft::{GroupId, LogView, NodeId, VoteView};

use crate::rounds::Rounds;
use crate::wire::{decode, ShardError};

/// One replica's views, as a round carries them. `log` is `None` from a node of the
/// previous version (it sends votes only), and from a replica this node erased and
/// was given back (see `shoal_raft::Host::read_views`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub vote: VoteView,
    pub log: Option<LogView>,
}

/// What one round learned: this node's views while it was out, the peer's when it
/// answered, per group.
#[derive(Debug, Default)]
pub struct Fence {
    pub own: HashMap<GroupId, View>,
    pub peer: HashMap<GroupId, View>,
}

impl Fence {
    /// The index at which `me` may read its replica of `group`, if the round confirms
    /// one (the module's table).
    pub fn index(&self, me: NodeId, peer: NodeId, group: GroupId) -> Option<u64> {
        confirmed_index(me, self.own.get(&group)?, peer, self.peer.get(&group)?)
    }
}

/// The rounds of one router, per peer (its id and address); each caller names the
/// groups it needs (one part's group, or every group of a search at once).
pub type Fences = Rounds<(NodeId, String), Vec<GroupId>, std::sync::Arc<Fence>>;

/// One round with one peer taken for a whole run of searches (`Shards::search_fence`):
/// each part it covers reads by it where it confirms the part's group.
#[derive(Debug, Clone)]
pub struct SearchFence {
    pub peer: NodeId,
    pub fence: std::sync::Arc<Fence>,
}

/// Where a run of searches' round goes, and the groups it covers (those the peer is a
/// voter of), decided before the parts start (`Shards::search_fence_plan`).
#[derive(Debug, Clone)]
pub struct FencePlan {
    pub peer: NodeId,
    pub addr: shoal_raft::NodeAddr,
    pub covered: Vec<GroupId>,
}

/// The peer a search's round goes to, among `candidates` (every voter, but this node,
/// of at least one of the search's groups), given each group's voters and leader as
/// this node's replica knows them.
///
/// | what a peer gives a group                              | counts as |
/// |--------------------------------------------------------|-----------|
/// | it leads the group, or this node leads and it votes    | a votes-row group: read at a commit index, nothing in flight to wait for |
/// | it is another voter                                    | a logs-row group: read at the higher last log index (may wait for entries in flight) |
/// | it is not a voter of the group                         | nothing: that part takes its own round |
///
/// The peer with the most groups covered wins, then the most votes-row groups; ties go
/// to the first id after `me` in ring order, so that the routers of a balanced cluster
/// ask different peers instead of all the same one.
pub fn search_peer(
    me: NodeId,
    groups: &[(GroupId, Vec<NodeId>, Option<NodeId>)],
    candidates: &[NodeId],
) -> Option<NodeId> {
    let score = |peer: NodeId| {
        let mut covered = 0usize;
        let mut by_votes = 0usize;
        for (_, voters, leader) in groups {
            if voters.contains(&peer) && voters.contains(&me) {
                covered += 1;
                if *leader == Some(peer) || *leader == Some(me) {
                    by_votes += 1;
                }
            }
        }
        (covered, by_votes)
    };
    // Ring order after `me`: ids above it first, ascending, then the ones below.
    let ring = |peer: NodeId| (peer <= me, peer);
    candidates
        .iter()
        .copied()
        .filter(|&p| p != me)
        .map(|p| (score(p), p))
        .filter(|((covered, _), _)| *covered > 0)
        .max_by(|(a, p), (b, q)| a.cmp(b).then_with(|| ring(*q).cmp(&ring(*p))))
        .map(|(_, p)| p)
}

/// The answer to a `Votes` call on the wire: the vote views first, exactly as the
/// previous version sent them alone, then the log views. postcard ignores what follows
/// a value, so a node of the previous version reads the votes and stops there.
#[derive(Debug, Serialize, Deserialize)]
pub struct VotesAnswer {
    pub votes: Vec<(GroupId, Option<VoteView>)>,
    pub logs: Vec<(GroupId, LogView)>,
}

impl VotesAnswer {
    pub fn new(views: Vec<(GroupId, Option<View>)>) -> VotesAnswer {
        let logs = views
            .iter()
            .filter_map(|(g, v)| Some((*g, v.as_ref()?.log.clone()?)))
            .collect();
        let votes = views
            .into_iter()
            .map(|(g, v)| (g, v.map(|v| v.vote)))
            .collect();
        VotesAnswer { votes, logs }
    }

    /// Reads an answer of either version (a `Result` of it, as the shard service
    /// answers): the log views are missing from a node of the previous version.
    pub fn decode(bytes: &[u8]) -> Result<Vec<(GroupId, View)>, ShardError> {
        type Votes = Vec<(GroupId, Option<VoteView>)>;
        let (votes, rest): (Result<Votes, ShardError>, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|e| ShardError::Codec(e.to_string()))?;
        let votes = votes?;
        let mut logs: HashMap<GroupId, LogView> = if rest.is_empty() {
            HashMap::new()
        } else {
            decode::<Vec<(GroupId, LogView)>>(rest)?
                .into_iter()
                .collect()
        };
        Ok(votes
            .into_iter()
            .filter_map(|(g, vote)| {
                let log = logs.remove(&g);
                Some((g, View { vote: vote?, log }))
            })
            .collect())
    }
}

/// The module's table for one group: `own` is this node's view while the round was
/// out, `theirs` the peer's when it answered.
pub fn confirmed_index(me: NodeId, own: &View, peer: NodeId, theirs: &View) -> Option<u64> {
    let (mine, peers) = (&own.vote, &theirs.vote);
    let voters = mine.voters.as_ref()?;
    // The views must be the two nodes' own: an address now held by another node (a
    // learner, say) would otherwise answer for the peer.
    let quorum_of_two = mine.id == me
        && peers.id == peer
        && me != peer
        && voters.len() <= 3
        && voters.contains(&me)
        && voters.contains(&peer)
        && peers.voters.as_ref() == Some(voters);
    if !quorum_of_two {
        return None;
    }
    let by_votes = match (
        peers.votes_for(mine.term, mine.node),
        mine.node == me,
        mine.node == peer,
    ) {
        (true, true, _) => mine.read_index,
        (true, false, true) => peers.read_index,
        (true, false, false) | (false, _, _) => None,
    };
    let by_logs = || {
        let (a, b) = (own.log.as_ref()?, theirs.log.as_ref()?);
        let settled = a.settled_membership?;
        (b.settled_membership == Some(settled)).then(|| a.last_log.max(b.last_log))
    };
    by_votes.or_else(by_logs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three groups on nodes 1, 2, 3, led by 1, 2 and 3: every peer covers all three,
    /// two by votes each, so the routers' ties go round the ring (1 asks 2, 2 asks 3,
    /// 3 asks 1) rather than all to one node.
    #[test]
    fn a_search_asks_the_next_node_when_the_peers_tie() {
        let all = vec![1, 2, 3];
        let groups = vec![
            (0, all.clone(), Some(1)),
            (1, all.clone(), Some(2)),
            (2, all.clone(), Some(3)),
        ];
        assert_eq!(search_peer(1, &groups, &[2, 3]), Some(2));
        assert_eq!(search_peer(2, &groups, &[1, 3]), Some(3));
        assert_eq!(search_peer(3, &groups, &[1, 2]), Some(1));
        // A peer backed off (not a candidate) leaves the other.
        assert_eq!(search_peer(1, &groups, &[3]), Some(3));
        assert_eq!(search_peer(1, &groups, &[]), None);
    }

    /// Coverage first, then the votes row: a peer that is a voter of more of the
    /// search's groups wins even against the next id; between equal coverage, the one
    /// leading (or voting for this node's lead) more groups.
    #[test]
    fn a_search_asks_the_peer_that_covers_most_groups_then_most_by_votes() {
        // Five nodes: group 0 on 1,2,3; group 1 on 1,3,4; group 2 on 1,3,5.
        let groups = vec![
            (0, vec![1, 2, 3], Some(2)),
            (1, vec![1, 3, 4], Some(4)),
            (2, vec![1, 3, 5], Some(5)),
        ];
        assert_eq!(search_peer(1, &groups, &[2, 3, 4, 5]), Some(3));
        // Equal coverage (one group each): group 1's leader covers it by votes.
        let groups = vec![(0, vec![1, 2, 3], None), (1, vec![1, 4, 5], Some(5))];
        assert_eq!(search_peer(1, &groups, &[2, 3, 4, 5]), Some(5));
        // A group this node is no voter of counts for nobody.
        let groups = vec![(0, vec![2, 3, 4], Some(2))];
        assert_eq!(search_peer(1, &groups, &[2, 3, 4]), None);
    }

    /// Node `id`'s view: it votes for leader (`term`, `node`); no log view (a node of
    /// the previous version).
    fn view(id: NodeId, term: u64, node: NodeId, read_index: Option<u64>) -> View {
        View {
            vote: VoteView {
                id,
                term,
                node,
                read_index,
                voters: Some(vec![1, 2, 3]),
            },
            log: None,
        }
    }

    fn with_voters(mut v: View, voters: Option<&[NodeId]>) -> View {
        v.vote.voters = voters.map(<[NodeId]>::to_vec);
        v
    }

    /// `v`, knowing the membership at log index `at` committed, with `last_log` as the
    /// last index of its log.
    fn settled(mut v: View, at: u64, last_log: u64) -> View {
        v.log = Some(LogView {
            last_log,
            settled_membership: Some(at),
        });
        v
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
        let cases: Vec<(&str, NodeId, View, NodeId, View)> = vec![
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
    fn two_logs_on_one_settled_membership_confirm_whoever_leads() {
        // The third node leads: the votes proof has nothing to say, the logs do.
        let me = settled(view(1, 4, 3, None), 5, 120);
        let peer = settled(view(2, 4, 3, None), 5, 131);
        assert_eq!(confirmed_index(1, &me, 2, &peer), Some(131));
        assert_eq!(confirmed_index(2, &peer, 1, &me), Some(131));
        // No leader known, or the two on different terms: the logs still hold every
        // committed entry.
        let electing = settled(view(1, 5, 1, None), 5, 140);
        assert_eq!(confirmed_index(1, &electing, 2, &peer), Some(140));
        // Where the votes proof applies it wins: the leader's commit index is lower
        // than its last log while entries are in flight.
        let leading = settled(view(1, 4, 1, Some(118)), 5, 120);
        let voting = settled(view(2, 4, 1, None), 5, 120);
        assert_eq!(confirmed_index(1, &leading, 2, &voting), Some(118));
        // Two voters: the two of them are every quorum.
        let two = Some(&[1, 2][..]);
        assert_eq!(
            confirmed_index(1, &with_voters(me, two), 2, &with_voters(peer, two)),
            Some(131)
        );
    }

    #[test]
    fn logs_confirm_nothing_unless_both_know_the_same_membership_committed() {
        let five = Some(&[1, 2, 3, 4, 5][..]);
        let other = Some(&[1, 2, 4][..]);
        let me = settled(view(1, 4, 3, None), 5, 120);
        let peer = settled(view(2, 4, 3, None), 5, 131);
        let cases: Vec<(&str, NodeId, View, NodeId, View)> = vec![
            (
                "peer of the previous version",
                1,
                me.clone(),
                2,
                view(2, 4, 3, None),
            ),
            (
                "peer's membership not known committed",
                1,
                me.clone(),
                2,
                View {
                    log: Some(LogView {
                        last_log: 131,
                        settled_membership: None,
                    }),
                    ..view(2, 4, 3, None)
                },
            ),
            (
                "mine not known committed",
                1,
                view(1, 4, 3, None),
                2,
                peer.clone(),
            ),
            (
                "committed at different indexes",
                1,
                me.clone(),
                2,
                settled(view(2, 4, 3, None), 9, 131),
            ),
            (
                "five voters",
                1,
                with_voters(me.clone(), five),
                2,
                with_voters(peer.clone(), five),
            ),
            (
                "different voters",
                1,
                me.clone(),
                2,
                with_voters(peer.clone(), other),
            ),
            (
                "I am joint",
                1,
                with_voters(me.clone(), None),
                2,
                peer.clone(),
            ),
            (
                "peer not a voter",
                1,
                me.clone(),
                4,
                settled(view(4, 4, 3, None), 5, 131),
            ),
            (
                "wrong node answered",
                1,
                me.clone(),
                2,
                settled(view(4, 4, 3, None), 5, 131),
            ),
            ("asking oneself", 1, me.clone(), 1, me.clone()),
        ];
        for (name, me, own, peer, theirs) in cases {
            assert_eq!(confirmed_index(me, &own, peer, &theirs), None, "{name}");
        }
    }

    #[test]
    fn votes_answers_of_both_versions_read_alike() {
        let views = vec![
            (1, Some(settled(view(2, 4, 2, Some(40)), 5, 41))),
            (2, None),
            (3, Some(view(2, 4, 3, None))),
        ];
        let answer: Result<VotesAnswer, ShardError> = Ok(VotesAnswer::new(views.clone()));
        let bytes = crate::wire::encode(&answer).unwrap();
        let read = VotesAnswer::decode(&bytes).unwrap();
        let expect: Vec<(GroupId, View)> = views
            .iter()
            .filter_map(|(g, v)| Some((*g, v.clone()?)))
            .collect();
        assert_eq!(read, expect);
        // A node of the previous version reads the votes and ignores the rest.
        type Old = Result<Vec<(GroupId, Option<VoteView>)>, ShardError>;
        let old: Old = decode(&bytes).unwrap();
        let votes: Vec<_> = views
            .iter()
            .map(|(g, v)| (*g, v.clone().map(|v| v.vote)))
            .collect();
        assert_eq!(old.unwrap(), votes);
        // And its answers, votes alone, read here with no log views.
        let old_bytes = crate::wire::encode(&Old::Ok(votes)).unwrap();
        let read = VotesAnswer::decode(&old_bytes).unwrap();
        assert!(read.iter().all(|(_, v)| v.log.is_none()));
        assert_eq!(read.len(), 2);
        // An error answer is an error.
        let failed = crate::wire::encode(&Old::Err(ShardError::NoRoute { group: 7 })).unwrap();
        assert!(matches!(
            VotesAnswer::decode(&failed),
            Err(ShardError::NoRoute { group: 7 })
        ));
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
