//! Learners that stopped catching up. A replica being added (a repair or a move) holds
//! its group back: repair waits for it, and rebalancing waits for every learner in the
//! cluster. One on a node that is up but cannot take the data (a full disk, a snapshot
//! that fails every time) would hold them back for good. A group's leader watches the
//! log index each learner acknowledged; one that has not moved for the stall time is
//! removed ([`crate::repair`]'s table), and its node is not picked for that group again
//! for as long, so the next try goes elsewhere.
//!
//! Leader-local: a new leader starts watching afresh, which only gives a stuck learner
//! one more stall time.

use std::collections::HashMap;

use shoal_raft::{GroupId, NodeId};

/// A watched learner: the index it had acknowledged, since when, and when this leader
/// last saw it.
#[derive(Debug, Clone, Copy)]
struct Progress {
    matched: Option<u64>,
    since_ms: u64,
    seen_ms: u64,
}

/// A learner not seen for this long is watched afresh when seen again (this node led
/// elsewhere meanwhile, or the learner was removed and added back).
const FORGET_AFTER_MS: u64 = 10_000;

#[derive(Debug)]
pub struct LearnerWatch {
    stall_ms: u64,
    progress: HashMap<(GroupId, NodeId), Progress>,
    /// (group, node) → until when the node is not picked for the group.
    shunned: HashMap<(GroupId, NodeId), u64>,
}

impl LearnerWatch {
    pub fn new(stall_ms: u64) -> LearnerWatch {
        LearnerWatch {
            stall_ms,
            progress: HashMap::new(),
            shunned: HashMap::new(),
        }
    }

    /// Takes this round's learners of `group`, each with the log index it has
    /// acknowledged (`None`: nothing yet, e.g. a snapshot still on its way); returns
    /// those whose index has not moved for the stall time.
    pub fn stalled(
        &mut self,
        group: GroupId,
        learners: &[(NodeId, Option<u64>)],
        now_ms: u64,
    ) -> Vec<NodeId> {
        self.progress
            .retain(|(g, id), _| *g != group || learners.iter().any(|(l, _)| l == id));
        let mut stalled = Vec::new();
        for &(id, matched) in learners {
            let entry = self.progress.entry((group, id)).or_insert(Progress {
                matched,
                since_ms: now_ms,
                seen_ms: now_ms,
            });
            let forgotten = now_ms.saturating_sub(entry.seen_ms) > FORGET_AFTER_MS;
            if forgotten || matched > entry.matched {
                entry.matched = matched;
                entry.since_ms = now_ms;
            }
            entry.seen_ms = now_ms;
            if now_ms.saturating_sub(entry.since_ms) >= self.stall_ms {
                stalled.push(id);
            }
        }
        stalled
    }

    /// Keeps `node` from being picked for `group` for the stall time (its learner was
    /// removed for stalling).
    pub fn shun(&mut self, group: GroupId, node: NodeId, now_ms: u64) {
        self.shunned
            .insert((group, node), now_ms.saturating_add(self.stall_ms));
        self.progress.remove(&(group, node));
    }

    /// The nodes not to pick for `group` now.
    pub fn shunned(&mut self, group: GroupId, now_ms: u64) -> Vec<NodeId> {
        self.shunned.retain(|_, until| *until > now_ms);
        let mut out: Vec<NodeId> = self
            .shunned
            .keys()
            .filter(|(g, _)| *g == group)
            .map(|(_, id)| *id)
            .collect();
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_learner_that_stops_acknowledging_is_reported_once_the_stall_time_passed() {
        let mut w = LearnerWatch::new(1_000);
        // A snapshot on its way: nothing acknowledged, within the stall time.
        assert!(w.stalled(0, &[(4, None)], 0).is_empty());
        assert!(w.stalled(0, &[(4, None)], 900).is_empty());
        // It lands: progress, the clock starts again.
        assert!(w.stalled(0, &[(4, Some(50))], 950).is_empty());
        assert!(w.stalled(0, &[(4, Some(80))], 1_900).is_empty());
        assert_eq!(w.stalled(0, &[(4, Some(80))], 2_900), vec![4]);
        // Another group's learner on the same node is watched on its own.
        assert!(w.stalled(1, &[(4, None)], 2_900).is_empty());
        // Gone from the group (removed, or promoted): forgotten.
        assert!(w.stalled(0, &[], 3_000).is_empty());
        assert!(w.stalled(0, &[(4, Some(80))], 3_100).is_empty());
        // Not seen for a while (this node led elsewhere): watched afresh.
        assert!(w.stalled(1, &[(4, None)], 20_000).is_empty());
        assert_eq!(w.stalled(1, &[(4, None)], 21_000), vec![4]);
    }

    #[test]
    fn a_shunned_node_is_not_picked_again_until_the_stall_time_passed() {
        let mut w = LearnerWatch::new(1_000);
        assert!(w.stalled(0, &[(4, None)], 0).is_empty());
        assert_eq!(w.stalled(0, &[(4, None)], 1_000), vec![4]);
        w.shun(0, 4, 1_000);
        assert_eq!(w.shunned(0, 1_500), vec![4]);
        assert!(w.shunned(1, 1_500).is_empty(), "another group may take it");
        assert!(w.shunned(0, 2_000).is_empty());
        // Added back later, it is watched from then on.
        assert!(w.stalled(0, &[(4, None)], 2_100).is_empty());
    }
}
