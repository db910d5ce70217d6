//! One replica's vote, as a read confirmation needs it (shoal-cluster's `confirm`).
//!
//! Raft's ReadIndex asks a quorum, after a read began, whether the leader still leads.
//! In a group of three voters the quorum is the leader and one other voter, so a
//! router whose node holds one of the two can supply that voter's half itself: its own
//! replica's vote, taken after the read began, plus the other node's vote, asked
//! after the read began. A vote is the one fact that can prove no newer leader was
//! elected: a replica grants a newer candidate only by replacing its vote, and votes
//! only grow. Where neither of the two leads, the two replicas' logs prove as much
//! ([`LogView`]): every committed entry is in one of them. The arguments are in
//! docs/consistency.md ("Confirmed reads").

use crate::types::NodeId;

/// A replica's vote and what it leads, as its log store saved the vote
/// ([`crate::view_mirror`]): never behind a vote the replica has granted, unlike
/// openraft's metrics, which may trail one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VoteView {
    /// The node whose replica this is: a confirmation counts the votes of the nodes
    /// it names, not of whichever node answers at an address.
    pub id: NodeId,
    /// The term and node of the leader the replica votes for.
    pub term: u64,
    pub node: NodeId,
    /// When the replica was elected under that vote and has applied an entry of its
    /// own term: its applied index, which covers every write acknowledged before now
    /// (a leader acknowledges a write once it applied it, and every entry of an older
    /// term is below its own first). `None` otherwise.
    pub read_index: Option<u64>,
    /// The voters of the membership the replica goes by, when it is one configuration
    /// (`None` while the group changes membership: a joint configuration).
    pub voters: Option<Vec<NodeId>>,
}

/// A replica's log, as the quorum-read proof of shoal-cluster's `confirm` needs it,
/// read with the [`VoteView`]. Sent beside the vote views, not in
/// them: a node of the previous version decodes the votes and never sees these.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogView {
    /// The index of the last entry in the replica's log, committed or not. A
    /// committed entry is never cut from a log that holds it (only uncommitted ones
    /// are overwritten), so every entry committed before the view was taken is at or
    /// below this in at least one replica of every quorum.
    pub last_log: u64,
    /// The log index of the membership the replica goes by, when the replica knows it
    /// committed, having applied it (`None` while a newer one is only in its log): two replicas naming
    /// the same committed membership hold the same log up to it, and a newer one that
    /// reached a quorum of it would be in one of their logs, and gone by.
    pub settled_membership: Option<u64>,
}

impl VoteView {
    /// Whether this view names `leader` as the leader elected at `term`.
    pub fn votes_for(&self, term: u64, leader: NodeId) -> bool {
        self.term == term && self.node == leader
    }
}
