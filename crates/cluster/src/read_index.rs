//! Read indexes for follower reads, one leader round trip shared by every read that
//! waits for one.
//!
//! A router whose node holds a replica of a group answers a search part there instead
//! of at the leader: it asks the leader for a read index (the leader confirms it still
//! leads, as for any linearizable read), waits until its own replica has applied that
//! index, and searches its own replica. The walk and the hits stay on this node; what
//! crosses the network is a small call, and one call serves every read that was waiting
//! when it was sent (`crate::rounds`).
//!
//! Why a read may take another's index: an index is good for a read when the leader
//! confirmed its leadership after the read arrived, so every write acknowledged before
//! the read is at or below the index. In a group of three voters `crate::confirm`
//! reaches the same guarantee without the leader's quorum round; this path serves the
//! other groups (five voters, a membership change) and older leaders.

use shoal_raft::{GroupId, NodeId};

use crate::rounds::Rounds;

/// What a leader answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadIndex {
    /// The index a replica must have applied.
    At(u64),
    /// The node runs an older Shoal without the call: send it the read instead.
    Unsupported,
}

/// The rounds of one router, per group and leader (its id and address: a node that
/// comes back elsewhere gets rounds of its own, not the old address's).
pub type ReadIndexes = Rounds<(GroupId, NodeId, String), (), ReadIndex>;
