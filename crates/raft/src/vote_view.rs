//! One replica's vote, as a read confirmation needs it (shoal-cluster's `confirm`).
//!
//! Raft's ReadIndex asks a quorum, after a read began, whether the leader still leads.
//! In a group of three voters the quorum is the leader and one other voter, so a
//! router whose node holds one of the two can supply that voter's half itself: its own
//! replica's vote, taken after the read began, plus the other node's vote, asked
//! after the read began. A vote is the one fact that can prove no newer leader was
//! elected: a replica grants a newer candidate only by replacing its vote, and votes
//! only grow. The argument is in docs/consistency.md ("Confirmed reads").

use crate::types::NodeId;

/// A replica's vote and what it leads, read inside its Raft core: the vote is the one
/// the replica answers vote requests by at that moment, not a metrics copy that may
/// trail a vote it has already granted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VoteView {
    /// The node whose replica this is: a confirmation counts the votes of the nodes
    /// it names, not of whichever node answers at an address.
    pub id: NodeId,
    /// The term and node of the leader the replica votes for.
    pub term: u64,
    pub node: NodeId,
    /// When the replica leads under that vote and has committed an entry of its own
    /// term: its commit index, which covers every write acknowledged before now
    /// (Raft's read index). `None` otherwise.
    pub read_index: Option<u64>,
    /// The voters of the membership the replica goes by, when it is one configuration
    /// (`None` while the group changes membership: a joint configuration).
    pub voters: Option<Vec<NodeId>>,
}

impl VoteView {
    /// Whether this view names `leader` as the leader elected at `term`.
    pub fn votes_for(&self, term: u64, leader: NodeId) -> bool {
        self.term == term && self.node == leader
    }
}

pub(crate) fn of_state(me: NodeId, st: &openraft::RaftState<crate::TypeConfig>) -> VoteView {
    let vote = st.vote_ref();
    let leader_id = vote.leader_id();
    let leads = st.server_state == openraft::ServerState::Leader
        && leader_id.node_id == me
        && vote.is_committed();
    // The commit index is a read index only once the leader committed an entry of its
    // own term (its blank entry): before, it may not know which of its predecessor's
    // entries committed.
    let read_index = st
        .local_committed()
        .filter(|c| leads && c.committed_leader_id() == leader_id)
        .map(|c| c.index);
    let configs = st.membership_state.effective().get_joint_config();
    let voters = match configs.as_slice() {
        [one] => Some(one.iter().copied().collect()),
        _ => None,
    };
    VoteView {
        id: me,
        term: leader_id.term,
        node: leader_id.node_id,
        read_index,
        voters,
    }
}
