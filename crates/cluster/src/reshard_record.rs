//! The state of a reshard under way, as the cluster map records it
//! (`shoal:reshard`'s `reshard` field, docs/resharding.md §1).
//!
//! `RESHARD ADD-GROUP` creates it and the meta leader's coordinator moves it through
//! its phases (`crate::reshard` decides the next step; the task that takes it, step 5
//! of the plan, is not built, so nothing writes one yet). What routers use of it today: the new group's members, where to look for
//! the group before its leader has reported it to the map.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_raft::{GroupId, NodeId};

use crate::layout::{decode_as, encode_as};

/// The field of [`crate::layout::RESHARD_KEY`] that holds the [`ReshardRecord`].
pub const RESHARD_FIELD: &[u8] = b"reshard";

/// A group being added, and how far the move of keys onto it has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshardRecord {
    /// The group being added.
    pub target: GroupId,
    /// Its first members, chosen once when the record was created; every node obeys
    /// them and none recomputes them.
    pub members: Vec<NodeId>,
    pub phase: Phase,
    /// Raised each time a coordinator claims the reshard, so a deposed one's writes
    /// (guarded by the version of the hash) are refused.
    pub run: u64,
    pub started_ms: u64,
    /// Per source group: how far its keys have been copied.
    pub progress: BTreeMap<GroupId, SourceProgress>,
}

/// The phases of a reshard, in order; `Aborting` may follow `Creating` or `Copying`
/// only (once a source has switched, the reshard finishes forward).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// The target group is being created on its members.
    Creating,
    /// Every source's keys are being copied to the target, changes tracked.
    Copying,
    /// `source` is handing its keys over; the layout's epoch becomes `epoch`.
    Switching { source: GroupId, epoch: u64 },
    /// Every source has switched; the sources drop the keys they handed over.
    Cleaning,
    /// Routing goes back to the groups before the reshard; the target is dropped.
    Aborting,
}

/// One source group's copy to the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceProgress {
    /// Where the copy's scan of the source goes on from (0: not started).
    pub cursor: u64,
    /// Keys copied so far.
    pub copied: u64,
    /// The last of the source's tracked changes the target has applied.
    pub seq: u64,
    /// Keys the source had to move when the copy began.
    pub keys: u64,
    /// The copy's scan has reached the end (its cursor came back as "0").
    pub copy_done: bool,
    /// A catch-up round after the copy was small enough to fence behind.
    pub caught_up: bool,
}

/// Marks the value's format, as [`crate::layout`]'s: a record in a format this node
/// does not know (a later node's) is skipped.
const RECORD_FORMAT: u8 = 0;

impl ReshardRecord {
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        encode_as(RECORD_FORMAT, self)
    }

    /// `None` for a value in another format, one that does not decode, or one whose
    /// target is the meta group.
    pub fn decode(value: &[u8]) -> Option<ReshardRecord> {
        decode_as::<ReshardRecord>(RECORD_FORMAT, value).filter(|r| r.target != crate::meta::META)
    }

    /// How far `source`'s copy has come (nothing yet when the record has no entry).
    pub fn progress_of(&self, source: GroupId) -> SourceProgress {
        self.progress.get(&source).copied().unwrap_or_default()
    }

    /// Whether routers should learn the target's members from this record: until
    /// the group's leader reports it to the map (its own record then says who its
    /// members are, as they change), and not while the reshard is being undone.
    pub fn names_members(&self) -> bool {
        match self.phase {
            Phase::Creating | Phase::Copying | Phase::Switching { .. } | Phase::Cleaning => true,
            Phase::Aborting => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(phase: Phase) -> ReshardRecord {
        ReshardRecord {
            target: 3,
            members: vec![2, 3, 1],
            phase,
            run: 2,
            started_ms: 1_700_000_000_000,
            progress: BTreeMap::from([
                (0, SourceProgress::default()),
                (
                    1,
                    SourceProgress {
                        cursor: 77,
                        copied: 1_024,
                        seq: 9,
                        keys: 5_000,
                        copy_done: true,
                        caught_up: false,
                    },
                ),
            ]),
        }
    }

    #[test]
    fn a_record_reads_back_as_written_in_every_phase_and_other_formats_are_skipped() {
        let phases = [
            Phase::Creating,
            Phase::Copying,
            Phase::Switching {
                source: 1,
                epoch: 5,
            },
            Phase::Cleaning,
            Phase::Aborting,
        ];
        for phase in phases {
            let bytes = record(phase).encode().unwrap();
            assert_eq!(ReshardRecord::decode(&bytes), Some(record(phase)));
        }
        let mut later = record(Phase::Copying).encode().unwrap();
        later[0] = 1;
        assert_eq!(ReshardRecord::decode(&later), None);
        assert_eq!(ReshardRecord::decode(&[]), None);
        assert_eq!(ReshardRecord::decode(&[RECORD_FORMAT, 0xff]), None);
        let meta = ReshardRecord {
            target: crate::meta::META,
            ..record(Phase::Creating)
        };
        assert_eq!(ReshardRecord::decode(&meta.encode().unwrap()), None);
    }

    #[test]
    fn only_an_abort_stops_naming_the_targets_members() {
        assert!(record(Phase::Creating).names_members());
        assert!(record(Phase::Cleaning).names_members());
        assert!(!record(Phase::Aborting).names_members());
    }
}
