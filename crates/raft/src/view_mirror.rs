//! A replica's vote and log views ([`crate::vote_view`]) kept as its log store and state
//! machine write, so that a confirmation round reads them without a message to the
//! replica's Raft core.
//!
//! Asking the core cost every round one message per group on each of its two nodes, and
//! each woke the core for a pass of its loop (metrics included): about 6% of the
//! CPU of a search with default reads at 32 clients (docs/benchmarks.md, "Session 48").
//! openraft's metrics are no substitute: they are published after the pass that changed
//! the state, so they may trail a vote already granted (docs/consistency.md). What is
//! kept here never trails what the replica has told anyone:
//!
//! | fact                  | updated                                          | why that is early enough |
//! |-----------------------|--------------------------------------------------|--------------------------|
//! | vote                  | in `save_vote`, before it is written             | openraft answers a vote request only once the vote is durable, so no grant leaves before the vote shows here |
//! | last log index        | in `append`, before the entries are durable; `truncate_after` and `purge` once done | an entry counts towards a commit only once durable, so every entry of this log a commit counted is at or below it |
//! | membership entries    | in `append`, with the index                      | the same: no other replica can hold or act on an entry before this one has handed it to its log |
//! | applied entry and membership | by the state machine after each batch, before its responses are sent | a write is acknowledged after its leader applied it, so every write the leader acknowledged is at or below its applied index |
//!
//! The applied index is the state machine's, which lives in memory and starts again from
//! the snapshot when the replica is opened. A leader's acknowledged writes above the
//! snapshot are back in it before anyone can read a view: openraft re-applies the
//! committed entries inside `Raft::new`, and a group's handles (`Host::group`) exist
//! only once that returned. (The commit index it re-applies to is saved without an
//! fsync: docs/consistency.md, "On the leader", says what a crash of the whole host can
//! then lose, for every read mode.)
//!
//! After a restart nothing is known until openraft has read the vote and the log state;
//! membership entries already in the log then are not seen by `append`, so the views
//! name no membership until the state machine has applied past them (or a truncation
//! removed them).

use std::collections::BTreeSet;

use openraft::entry::RaftEntry;
use openraft::EntryPayload;
use parking_lot::Mutex;

use crate::types::{Entry, LogId, NodeId, StoredMembership, Vote};
use crate::vote_view::{LogView, VoteView};

/// The views' sources for one replica (shared by its log store, its state machine and
/// its `Group` handles).
#[derive(Debug)]
pub struct ViewMirror(Mutex<Kept>);

impl Default for ViewMirror {
    fn default() -> Self {
        ViewMirror::new()
    }
}

#[derive(Debug, Default)]
struct Kept {
    /// The vote as last saved (or read back at start).
    vote: Option<Vote>,
    /// The index of the last entry in the log; `None` until openraft read the log state.
    last_log: Option<u64>,
    /// Entries at or below this index were in the log before this store saw any
    /// `append` (a restart): a membership among them is unknown until the state machine
    /// has applied past it. `u64::MAX` until the log state was read.
    unseen_upto: u64,
    /// Membership entries appended and not yet applied, in log order: their index and
    /// their voters when they are one configuration.
    pending: Vec<(u64, Option<Vec<NodeId>>)>,
    /// The last entry the state machine applied.
    applied: Option<LogId>,
    /// The membership the state machine holds (applied, hence committed): its index and
    /// voters as in `pending`.
    settled: Option<(u64, Option<Vec<NodeId>>)>,
}

/// The voters of a membership that is one configuration (`None` for a joint one).
fn single_config(configs: &[BTreeSet<NodeId>]) -> Option<Vec<NodeId>> {
    match configs {
        [one] => Some(one.iter().copied().collect()),
        _ => None,
    }
}

impl ViewMirror {
    pub fn new() -> ViewMirror {
        ViewMirror(Mutex::new(Kept {
            unseen_upto: u64::MAX,
            ..Kept::default()
        }))
    }

    /// The vote read back at start, unless one was saved since.
    pub(crate) fn read_vote(&self, vote: Option<&Vote>) {
        let mut k = self.0.lock();
        if k.vote.is_none() {
            k.vote = vote.cloned();
        }
    }

    /// A vote about to be saved.
    pub(crate) fn save_vote(&self, vote: &Vote) {
        self.0.lock().vote = Some(*vote);
    }

    /// The log's last index as openraft read it at start (the first reading only).
    pub(crate) fn log_state(&self, last: Option<u64>) {
        let mut k = self.0.lock();
        if k.last_log.is_none() {
            k.last_log = Some(last.unwrap_or(0));
            k.unseen_upto = last.unwrap_or(0);
        }
    }

    /// Entries handed to the log (before they are durable), in order.
    pub(crate) fn append(&self, entries: &[Entry]) {
        let Some(last) = entries.last() else {
            return;
        };
        let mut k = self.0.lock();
        k.last_log = Some(last.index());
        for entry in entries {
            if let EntryPayload::Membership(m) = &entry.payload {
                k.pending
                    .push((entry.index(), single_config(m.get_joint_config())));
            }
        }
    }

    /// The log cut after `last` (durably).
    pub(crate) fn truncate_after(&self, last: Option<u64>) {
        let mut k = self.0.lock();
        let keep = last.unwrap_or(0);
        k.last_log = Some(keep);
        k.pending.retain(|(index, _)| *index <= keep);
        k.unseen_upto = k.unseen_upto.min(keep);
    }

    /// The log purged up to `upto` (durably): its last index is at least that.
    pub(crate) fn purge(&self, upto: u64) {
        let mut k = self.0.lock();
        k.last_log = Some(k.last_log.unwrap_or(0).max(upto));
    }

    /// What the state machine holds now: called after every batch it applied, after a
    /// snapshot was installed and when it was opened, before any response of the batch
    /// is sent.
    pub(crate) fn applied(&self, applied: Option<LogId>, membership: &StoredMembership) {
        let mut k = self.0.lock();
        k.applied = applied;
        // A state machine that never applied a membership has none to go by.
        let index = membership.log_id().as_ref().map(|l| l.index());
        if k.settled.as_ref().map(|(at, _)| *at) != index {
            k.settled = index.map(|index| {
                let voters = single_config(membership.membership().get_joint_config());
                (index, voters)
            });
        }
        let upto = applied.map_or(0, |l| l.index());
        k.pending.retain(|(index, _)| *index > upto);
    }

    /// This replica's views now, as node `me`; `None` before openraft has read its
    /// vote and log state. `leads`: openraft's metrics show the replica leading. A
    /// replica restarted with leader restore off keeps its committed vote on disk but
    /// starts as a follower, and after a crash of the host its applied index may trail
    /// writes it acknowledged (docs/consistency.md, "On the leader"): it gives no read
    /// index then. Metrics that still show a leader that stepped down since are no
    /// harm: the read index rests on the votes, not on leading now.
    pub fn views(&self, me: NodeId, leads: bool) -> Option<(VoteView, LogView)> {
        let k = self.0.lock();
        let vote = k.vote.as_ref()?;
        let last_log = k.last_log?;
        let leader_id = vote.leader_id();
        // This replica was elected (t, me); it reads at its applied index once it has
        // applied an entry of its own term (its blank entry): every entry of an older
        // term is below that, and every write it acknowledged was applied here first.
        let read_index = k
            .applied
            .filter(|a| {
                leads
                    && vote.is_committed()
                    && leader_id.node_id == me
                    && a.committed_leader_id() == leader_id
            })
            .map(|a| a.index());
        let applied = k.applied.map_or(0, |a| a.index());
        // The membership this replica goes by: the last one in its log, else the state
        // machine's; unknown while an entry from before the restart may be one.
        let known = k.unseen_upto <= applied;
        let voters = match (known, k.pending.last(), &k.settled) {
            (true, Some((_, voters)), _) | (true, None, Some((_, voters))) => voters.clone(),
            (true, None, None) | (false, _, _) => None,
        };
        let settled_membership = match (known, k.pending.is_empty(), &k.settled) {
            (true, true, Some((index, _))) => Some(*index),
            (true, true, None) | (true, false, _) | (false, _, _) => None,
        };
        Some((
            VoteView {
                id: me,
                term: leader_id.term,
                node: leader_id.node_id,
                read_index,
                voters,
            },
            LogView {
                last_log,
                settled_membership,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::testing::{blank_ent, log_id, membership_ent};
    use openraft::Membership;

    use super::*;
    use crate::types::{NodeAddr, TypeConfig};

    fn config(voters: &[&[NodeId]]) -> Vec<BTreeSet<NodeId>> {
        voters.iter().map(|c| c.iter().copied().collect()).collect()
    }

    fn membership(term: u64, index: u64, voters: &[&[NodeId]]) -> Entry {
        membership_ent::<TypeConfig>(term, 1, index, config(voters))
    }

    fn stored(term: u64, index: u64, voters: &[&[NodeId]]) -> StoredMembership {
        let m = Membership::<NodeId, NodeAddr>::new_with_defaults(config(voters), []);
        StoredMembership::new(Some(log_id::<TypeConfig>(term, 1, index)), m)
    }

    /// A replica that read vote `vote` and a log ending at `last` at start, its state
    /// machine at `applied` with the three-voter membership of index 1.
    fn started(vote: Vote, last: u64, applied: u64) -> ViewMirror {
        let v = ViewMirror::new();
        v.read_vote(Some(&vote));
        v.log_state(Some(last));
        v.applied(
            Some(log_id::<TypeConfig>(1, 1, applied)),
            &stored(1, 1, &[&[1, 2, 3]]),
        );
        v
    }

    #[test]
    fn nothing_is_known_before_the_vote_and_the_log_were_read() {
        let v = ViewMirror::new();
        assert_eq!(v.views(1, true), None);
        v.read_vote(Some(&Vote::new(1, 1)));
        assert_eq!(v.views(1, true), None);
        v.log_state(Some(4));
        let (vote, log) = v.views(1, true).unwrap();
        assert_eq!((vote.term, vote.node, vote.read_index), (1, 1, None));
        assert_eq!(log.last_log, 4);
    }

    /// Only an elected replica that applied an entry of its own term gives a read
    /// index, its applied one; a granted vote shows at once.
    #[test]
    fn the_read_index_is_the_elected_replicas_applied_index_in_its_own_term() {
        let v = started(Vote::new_committed(1, 1), 5, 5);
        assert_eq!(v.views(1, true).unwrap().0.read_index, Some(5));
        // Another node's view of the same state leads nothing.
        assert_eq!(v.views(2, true).unwrap().0.read_index, None);
        // Elected at term 2, nothing of term 2 applied yet: no read index.
        v.save_vote(&Vote::new_committed(2, 1));
        assert_eq!(v.views(1, true).unwrap().0.read_index, None);
        v.append(&[blank_ent::<TypeConfig>(2, 1, 6)]);
        assert_eq!(v.views(1, true).unwrap().0.read_index, None);
        v.applied(
            Some(log_id::<TypeConfig>(2, 1, 6)),
            &stored(1, 1, &[&[1, 2, 3]]),
        );
        assert_eq!(v.views(1, true).unwrap().0.read_index, Some(6));
        // A vote granted to a newer candidate, before it is durable: the view names
        // the candidate and no read index.
        v.save_vote(&Vote::new(3, 2));
        let (vote, _) = v.views(1, true).unwrap();
        assert!(
            vote.votes_for(3, 2) && vote.read_index.is_none(),
            "{vote:?}"
        );
        // An uncommitted vote for itself (a candidate) gives none either.
        v.save_vote(&Vote::new(4, 1));
        assert_eq!(v.views(1, true).unwrap().0.read_index, None);
    }

    /// A replica whose committed vote for itself was read back at start, but which
    /// openraft runs as a follower (leader restore off), gives no read index.
    #[test]
    fn a_replica_not_running_as_leader_gives_no_read_index() {
        let v = started(Vote::new_committed(1, 1), 5, 5);
        assert_eq!(v.views(1, true).unwrap().0.read_index, Some(5));
        let (vote, _) = v.views(1, false).unwrap();
        assert!(
            vote.votes_for(1, 1) && vote.read_index.is_none(),
            "{vote:?}"
        );
    }

    #[test]
    fn the_last_log_index_follows_appends_truncations_and_purges() {
        let v = started(Vote::new_committed(1, 1), 3, 3);
        v.append(&[
            blank_ent::<TypeConfig>(1, 1, 4),
            blank_ent::<TypeConfig>(1, 1, 5),
        ]);
        assert_eq!(v.views(1, true).unwrap().1.last_log, 5);
        v.truncate_after(Some(4));
        assert_eq!(v.views(1, true).unwrap().1.last_log, 4);
        v.purge(9);
        assert_eq!(v.views(1, true).unwrap().1.last_log, 9);
        v.truncate_after(None);
        assert_eq!(v.views(1, true).unwrap().1.last_log, 0);
    }

    /// The membership gone by is the last one in the log; it counts as settled only
    /// once the state machine applied it, and a joint one names no voters.
    #[test]
    fn a_membership_in_the_log_is_gone_by_at_once_and_settled_once_applied() {
        let v = started(Vote::new_committed(1, 1), 3, 3);
        let (vote, log) = v.views(1, true).unwrap();
        assert_eq!(vote.voters, Some(vec![1, 2, 3]));
        assert_eq!(log.settled_membership, Some(1));
        v.append(&[membership(1, 4, &[&[1, 2, 3], &[1, 2, 4]])]);
        let (vote, log) = v.views(1, true).unwrap();
        assert_eq!((vote.voters, log.settled_membership), (None, None));
        v.append(&[membership(1, 5, &[&[1, 2, 4]])]);
        assert_eq!(v.views(1, true).unwrap().0.voters, Some(vec![1, 2, 4]));
        assert_eq!(v.views(1, true).unwrap().1.settled_membership, None);
        // Index 5 cut off: the joint one of index 4 is gone by again.
        v.truncate_after(Some(4));
        assert_eq!(v.views(1, true).unwrap().0.voters, None);
        v.append(&[membership(2, 5, &[&[1, 2, 4]])]);
        v.applied(
            Some(log_id::<TypeConfig>(2, 1, 5)),
            &stored(2, 5, &[&[1, 2, 4]]),
        );
        let (vote, log) = v.views(1, true).unwrap();
        assert_eq!(
            (vote.voters, log.settled_membership),
            (Some(vec![1, 2, 4]), Some(5))
        );
    }

    /// After a restart, the log may hold a membership this store never saw appended:
    /// none is named until the state machine has applied past the log's end as read
    /// at start, or a truncation cut what was unseen.
    #[test]
    fn a_log_from_before_the_restart_hides_the_membership_until_applied_past() {
        let v = started(Vote::new(1, 2), 8, 5);
        let (vote, log) = v.views(1, true).unwrap();
        assert_eq!((vote.voters, log.settled_membership), (None, None));
        v.applied(
            Some(log_id::<TypeConfig>(1, 2, 8)),
            &stored(1, 1, &[&[1, 2, 3]]),
        );
        let (vote, log) = v.views(1, true).unwrap();
        assert_eq!(
            (vote.voters, log.settled_membership),
            (Some(vec![1, 2, 3]), Some(1))
        );

        let v = started(Vote::new(1, 2), 8, 5);
        v.truncate_after(Some(5));
        assert_eq!(v.views(1, true).unwrap().0.voters, Some(vec![1, 2, 3]));
    }

    /// A snapshot installed past the pending entries settles them, and its membership
    /// is the one gone by.
    #[test]
    fn a_snapshot_settles_what_it_covers() {
        let v = started(Vote::new(1, 2), 3, 3);
        v.append(&[membership(1, 4, &[&[1, 2, 3], &[1, 2, 4]])]);
        v.applied(
            Some(log_id::<TypeConfig>(1, 2, 10)),
            &stored(1, 7, &[&[1, 2, 4]]),
        );
        let (vote, log) = v.views(1, true).unwrap();
        assert_eq!(
            (vote.voters, log.settled_membership),
            (Some(vec![1, 2, 4]), Some(7))
        );
    }
}
