//! When a node erases its replica of a group: the group replaced it while the node was
//! gone (see [`crate::repair`]), and the node came back with the old log and snapshot.
//! Kept, that data would fill its disk, answer its `READONLY` reads with a state that
//! no longer moves, and keep the node out of the group for good (a leader does not add
//! back a node that holds the group's data).
//!
//! Erasing a replica throws away its vote and log, which Raft's safety rests on while
//! the node is a member; so the rule asks for proof that it is not one and will not
//! be one without a fresh start: a committed membership without the node, newer than
//! any membership the replica knows (or as new, when the replica's own membership
//! already leaves it out: it saw its removal before it went away).
//!
//! | replica holds data | map's record of the group                                   | decision |
//! |--------------------|-------------------------------------------------------------|----------|
//! | no                 | —                                                           | keep     |
//! | yes                | none, or no committed membership in it (index 0)            | keep     |
//! | yes                | names the node (committed or in-flight membership)          | keep     |
//! | yes                | leaves it out, committed at an index > the replica's own    | erase    |
//! | yes                | leaves it out, committed at the replica's own index or      | erase if the replica's own membership leaves it out too, else keep: the map lags (the node may have been added back) |
//! |                    | later                                                       |          |
//! | yes                | leaves it out, committed below the replica's own index      | keep: the replica knows a newer membership, the map lags |
//!
//! The caller erases only on two decisions in a row, a second apart (each after a
//! map read, when the meta group answers), with the replica's log unchanged between
//! them, and the decision asked once more after the replica's Raft stopped
//! (`Host::purge_group`): a learner being caught up from an old snapshot (whose
//! membership predates its own addition) can look left behind for the moment before
//! the entries after the snapshot arrive, but its log moves.
//!
//! Compared by index alone, a replica whose log ends in an uncommitted membership
//! entry of its own old leadership, at an index above the committed one that removed
//! it, is kept (the last row) until the group's memberships pass that index: kept
//! data, never a wrong erase.
//!
//! Why erasing is safe: membership changes are ordered by log index. A committed
//! membership at index `m` without the node was agreed by a quorum; any later
//! membership that adds the node back sits at an index above `m`, and reaches the node
//! only through its log — after which the replica's own index is above `m` and the
//! last row keeps it. The one way around it, a leader replicating to the node before
//! the node's log shows the new membership, needs the leader to add a node that
//! reports holding the group's data, which neither [`crate::repair`] nor `RAFT
//! ADD-LEARNER` does. An erased node has no vote, and would grant one to a lagging
//! candidate whose old membership still lists it; with memberships that change one
//! node at a time (all that repair and the `RAFT` commands make) the old and new
//! quorums still overlap, so that vote cannot elect a second leader. A change of
//! several voters at once would need more care.

use shoal_raft::NodeId;

use crate::meta::GroupRecord;

/// This node's replica of a group, as the purge rule needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalReplica {
    /// It has a log entry or a snapshot.
    pub holds_data: bool,
    /// The log index of the membership it goes by (0: none).
    pub membership_index: u64,
    /// Whether that membership names this node.
    pub names_me: bool,
}

/// Whether node `me` should erase its replica (see the module's table).
pub fn left_behind(me: NodeId, local: LocalReplica, record: Option<&GroupRecord>) -> bool {
    let Some(record) = record else {
        return false;
    };
    if !local.holds_data || record.committed_index == 0 {
        return false;
    }
    let named = record.committed_members.contains(&me) || record.members().any(|id| id == me);
    if named {
        return false;
    }
    record.committed_index > local.membership_index
        || (!local.names_me && record.committed_index >= local.membership_index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(committed_index: u64, committed: &[NodeId], voters: &[NodeId]) -> GroupRecord {
        GroupRecord {
            leader: 1,
            term: 4,
            voters: voters.to_vec(),
            learners: Vec::new(),
            seen_ms: 0,
            committed_index,
            committed_members: committed.to_vec(),
        }
    }

    const OLD: LocalReplica = LocalReplica {
        holds_data: true,
        membership_index: 10,
        names_me: true,
    };

    #[test]
    fn a_replica_removed_by_a_newer_committed_membership_is_erased() {
        assert!(left_behind(
            3,
            OLD,
            Some(&record(40, &[1, 2, 4], &[1, 2, 4]))
        ));
    }

    #[test]
    fn a_replica_that_saw_its_own_removal_is_erased_once_the_map_has_it() {
        // It applied the membership at 40 that leaves it out, then went away; the
        // group changed nothing since, so the map's committed index is 40 too.
        let saw_it = LocalReplica {
            membership_index: 40,
            names_me: false,
            ..OLD
        };
        assert!(left_behind(
            3,
            saw_it,
            Some(&record(40, &[1, 2, 4], &[1, 2, 4]))
        ));
        assert!(left_behind(
            3,
            saw_it,
            Some(&record(41, &[1, 2, 4], &[1, 2, 4]))
        ));
    }

    #[test]
    fn every_other_row_keeps_the_replica() {
        let removed = record(40, &[1, 2, 4], &[1, 2, 4]);
        // Nothing on disk: nothing to erase.
        let empty = LocalReplica {
            holds_data: false,
            membership_index: 0,
            names_me: false,
        };
        assert!(!left_behind(3, empty, Some(&removed)));
        // No record, or one without a committed membership (an older leader's).
        assert!(!left_behind(3, OLD, None));
        assert!(!left_behind(3, OLD, Some(&record(0, &[], &[1, 2, 4]))));
        // Still a member, committed or in flight (being added back as a learner).
        assert!(!left_behind(
            3,
            OLD,
            Some(&record(40, &[1, 2, 3], &[1, 2, 3]))
        ));
        assert!(!left_behind(
            3,
            OLD,
            Some(&record(40, &[1, 2, 4], &[1, 2, 3, 4]))
        ));
        let mut learner = removed.clone();
        learner.learners = vec![3];
        assert!(!left_behind(3, OLD, Some(&learner)));
        // The replica knows a membership at least as new as the map's record.
        let same = LocalReplica {
            membership_index: 40,
            ..OLD
        };
        assert!(!left_behind(3, same, Some(&removed)));
        let added_back = LocalReplica {
            membership_index: 55,
            ..OLD
        };
        assert!(!left_behind(3, added_back, Some(&removed)));
        // The replica saw a removal newer than the map's record: wait for the map.
        let saw_newer_removal = LocalReplica {
            membership_index: 55,
            names_me: false,
            ..OLD
        };
        assert!(!left_behind(3, saw_newer_removal, Some(&removed)));
    }
}
