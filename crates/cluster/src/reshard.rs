//! The reshard coordinator's decision (docs/resharding.md §3.3 and §5): from the
//! reshard record and the layout in the map, and what each group's `SHOAL._LAYOUT`
//! answered this tick, the one action to take next. Pure, so that each row is tested
//! on its own, as `repair::next_step` is; the meta leader's task that performs the
//! actions is step 5 of the plan and not built yet.
//!
//! Every action is safe to repeat: the entries it sends are no-ops when repeated, and
//! the map writes are guarded by the record's version. So the coordinator needs no
//! memory of its own beyond the record: a new meta leader reads the same inputs and
//! takes up where the last one stopped.
//!
//! | phase            | what the groups say                                   | action                |
//! |------------------|-------------------------------------------------------|-----------------------|
//! | Creating         | the target has no leader, or not every voter is up    | wait                  |
//! | Creating         | the target is ready                                   | intake (indexes, `_INCOMING`, map: Copying at epoch + 1) |
//! | Copying          | a source did not answer                               | wait                  |
//! | Copying          | a source has not begun (all begin before any copies)  | begin                 |
//! | Copying          | a source hands keys to another group, or takes keys   | wait (never happens)  |
//! | Copying          | a source's copy is not done                           | copy a page           |
//! | Copying          | a source has not caught up (since the last switch)    | catch up              |
//! | Copying          | all caught up, the target, the source and meta ready  | switching the lowest unswitched source, at epoch + 1 |
//! | Copying          | every source switched                                 | cleaning (map: the settled ring of old groups and the target) |
//! | Switching{g, e}  | g or the target did not answer                        | wait                  |
//! | Switching{g, e}  | g hands no keys over, or the target takes none        | wait (never happens)  |
//! | Switching{g, e}  | g is not fenced, the target, g or meta not ready      | wait                  |
//! | Switching{g, e}  | g is not fenced                                       | fence                 |
//! | Switching{g, e}  | the target has not accepted g                         | accept (final catch-up first) |
//! | Switching{g, e}  | the target accepted g                                 | switch (map: g switched, epoch e) |
//! | Cleaning         | an old group still hands keys over                    | purge, then settle it |
//! | Cleaning         | the target still takes keys                           | settle the target     |
//! | Cleaning         | neither                                               | finish (record removed) |
//! | Aborting         | nothing published (Creating timed out)                | finish the abort: the target holds no keys, and may never answer |
//! | Aborting         | the target accepted a source the map did not switch   | switching it at its epoch: too late, the reshard goes forward |
//! | Aborting         | the target accepted only switched sources             | copying again: forward |
//! | Aborting         | the target has not aborted                            | abort the target (first) |
//! | Aborting         | an old group hands keys over, or is below the abort's epoch | abort it (its floor rises: a late `_BEGIN` is a no-op) |
//! | Aborting         | neither                                               | finish the abort (map: the old groups at epoch + 1) |

use std::collections::{BTreeMap, BTreeSet};

use shoal_engine::Reply;
use shoal_raft::GroupId;

use crate::layout::Layout;
use crate::reshard_record::{Phase, ReshardRecord, SourceProgress};

/// One group's part in a reshard, as its `SHOAL._LAYOUT` reply gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// The lowest routing epoch the group answers.
    pub floor: u64,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    None,
    /// Handing the keys the next ring gives `target` over.
    Source {
        target: GroupId,
        begun: u64,
        fenced: Option<u64>,
    },
    /// Taking keys: the sources accepted so far, with their switch epochs.
    Target {
        run: u64,
        aborted: bool,
        accepted: BTreeMap<GroupId, u64>,
    },
}

impl GroupState {
    /// The state from a `SHOAL._LAYOUT` reply (the engine's `commands::reshard::state`):
    /// `[floor, f, role, none|source|target, …]`. `None` for any other shape (an error
    /// reply, a node of another version).
    pub fn parse(reply: &Reply) -> Option<GroupState> {
        let Reply::Array(items) = reply else {
            return None;
        };
        let mut fields: BTreeMap<String, &Reply> = BTreeMap::new();
        for pair in items.chunks_exact(2) {
            let Reply::Bulk(name) = &pair[0] else {
                return None;
            };
            fields.insert(String::from_utf8_lossy(name).into_owned(), &pair[1]);
        }
        let int = |name: &str| match fields.get(name) {
            Some(Reply::Int(v)) => u64::try_from(*v).ok(),
            Some(_) | None => None,
        };
        let opt = |name: &str| match fields.get(name) {
            Some(Reply::Null) => Some(None),
            Some(Reply::Int(v)) => u64::try_from(*v).ok().map(Some),
            Some(_) | None => None,
        };
        let role = match fields.get("role") {
            Some(Reply::Bulk(r)) if r.as_slice() == b"none" => Role::None,
            Some(Reply::Bulk(r)) if r.as_slice() == b"source" => Role::Source {
                target: int("target")?,
                begun: int("begun")?,
                fenced: opt("fenced")?,
            },
            Some(Reply::Bulk(r)) if r.as_slice() == b"target" => {
                let Some(Reply::Array(pairs)) = fields.get("accepted") else {
                    return None;
                };
                let mut accepted = BTreeMap::new();
                for pair in pairs.chunks_exact(2) {
                    let (Reply::Int(g), Reply::Int(e)) = (&pair[0], &pair[1]) else {
                        return None;
                    };
                    accepted.insert(u64::try_from(*g).ok()?, u64::try_from(*e).ok()?);
                }
                Role::Target {
                    run: int("run")?,
                    aborted: int("aborted")? == 1,
                    accepted,
                }
            }
            Some(_) | None => return None,
        };
        Some(GroupState {
            floor: int("floor")?,
            role,
        })
    }
}

/// What the coordinator sees this tick.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub record: &'a ReshardRecord,
    /// The map's layout (the initial one when the map has none).
    pub layout: &'a Layout,
    /// Each group's state; a group that did not answer is absent.
    pub states: &'a BTreeMap<GroupId, GroupState>,
    /// Groups with a leader and every voter up, by the map (the meta group included):
    /// a fence is only put up when the switch behind it can follow at once.
    pub ready: &'a BTreeSet<GroupId>,
}

/// The one thing to do next (see the module's table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Wait(&'static str),
    /// Give the target the map's indexes, `SHOAL._INCOMING <epoch> <run> <old…>` on
    /// it, then the map: layout `{epoch, moving: target}` and phase Copying.
    Intake {
        epoch: u64,
    },
    /// `SHOAL._BEGIN <epoch> <target> <next…>` on `source`.
    Begin {
        source: GroupId,
        epoch: u64,
    },
    /// One page of `SHOAL._EXPORT` from `cursor`, imported into the target; the
    /// record's cursor moves on (to done at "0").
    Copy {
        source: GroupId,
        cursor: u64,
    },
    /// `SHOAL._CHANGES` after `seq` until a round is small, imported; the record's
    /// seq moves on and the source is marked caught up.
    CatchUp {
        source: GroupId,
        seq: u64,
    },
    /// The record: phase Switching{source, epoch}.
    StartSwitch {
        source: GroupId,
        epoch: u64,
    },
    /// `SHOAL._FENCE <target> <epoch>` on `source`.
    Fence {
        source: GroupId,
        epoch: u64,
    },
    /// `SHOAL._CHANGES` from the record's seq until empty, imported, the indexes
    /// reconciled on the target, then `SHOAL._ACCEPT <source> <epoch> <run>`.
    Accept {
        source: GroupId,
        epoch: u64,
        seq: u64,
    },
    /// The map: `source` switched, epoch `epoch`; phase Copying again, every remaining
    /// source's `caught_up` cleared (each catches up again right before its own fence,
    /// so the final catch-up behind it stays short).
    Switch {
        source: GroupId,
        epoch: u64,
    },
    /// The record: phase Copying again (an abort that came after a source switched:
    /// the reshard finishes forward).
    ResumeCopying,
    /// The map: the settled layout of the old groups and the target, at the same
    /// epoch (it routes as the last moving one did); phase Cleaning.
    StartCleaning,
    /// `SHOAL._PURGE` on `source` until done, then `SHOAL._SETTLE SOURCE`.
    Purge {
        source: GroupId,
        epoch: u64,
    },
    /// `SHOAL._SETTLE TARGET <epoch>`.
    SettleTarget {
        epoch: u64,
    },
    /// The record removed: the reshard is over.
    Finish,
    /// `SHOAL._ABORT TARGET <epoch> <run>`: first, so that no accept can follow.
    AbortTarget {
        epoch: u64,
    },
    /// `SHOAL._ABORT SOURCE <target> <epoch>` on `source`.
    AbortSource {
        source: GroupId,
        epoch: u64,
    },
    /// The map: the old groups at `epoch`, nothing moving; the record removed.
    FinishAbort {
        epoch: u64,
    },
}

/// Whether the target, a source and the meta group all have a leader and every
/// voter: a fence is put up only when the switch behind it can follow at once.
fn switch_ready(ready: &BTreeSet<GroupId>, target: GroupId, source: GroupId) -> bool {
    ready.contains(&target) && ready.contains(&source) && ready.contains(&crate::meta::META)
}

/// The next action (see the module's table).
pub fn next_action(view: View<'_>) -> Action {
    let View {
        record,
        layout,
        states,
        ready,
    } = view;
    let target = record.target;
    // The old groups: the settled ones other than the target (in Cleaning the layout
    // is the settled ring of both).
    let old = layout.old_groups(target);
    let switched: BTreeSet<GroupId> = layout
        .moving
        .as_ref()
        .map(|m| m.switched.iter().copied().collect())
        .unwrap_or_default();
    let role = |g: GroupId| states.get(&g).map(|s| &s.role);
    let hands_over =
        |g: GroupId| matches!(role(g), Some(Role::Source { target: t, .. }) if *t == target);
    match record.phase {
        Phase::Creating => {
            if !ready.contains(&target) || !states.contains_key(&target) {
                return Action::Wait("the new group has no leader or not every voter yet");
            }
            Action::Intake {
                epoch: layout.epoch + 1,
            }
        }
        Phase::Copying => copying(view, &old, &switched),
        Phase::Switching { source, epoch } => {
            let (Some(s), Some(t)) = (role(source), role(target)) else {
                return Action::Wait("the source or the target did not answer");
            };
            let Role::Target {
                aborted: false,
                accepted,
                ..
            } = t
            else {
                return Action::Wait("the target takes no keys");
            };
            let fenced = match s {
                Role::Source {
                    target: to, fenced, ..
                } if *to == target => fenced.is_some(),
                Role::Source { .. } | Role::None | Role::Target { .. } => {
                    return Action::Wait("the switching source hands no keys to the target")
                }
            };
            if !fenced {
                // A coordinator resuming here checks again what the one that chose to
                // switch checked.
                if !switch_ready(ready, target, source) {
                    return Action::Wait(
                        "a fence waits for the target, the source and the meta group",
                    );
                }
                return Action::Fence { source, epoch };
            }
            if accepted.contains_key(&source) {
                Action::Switch { source, epoch }
            } else {
                Action::Accept {
                    source,
                    epoch,
                    seq: record.progress_of(source).seq,
                }
            }
        }
        Phase::Cleaning => {
            if let Some(&source) = old.iter().find(|&&g| hands_over(g)) {
                return Action::Purge {
                    source,
                    epoch: layout.epoch,
                };
            }
            if old.iter().any(|g| !states.contains_key(g)) || !states.contains_key(&target) {
                return Action::Wait("a group did not answer");
            }
            match role(target) {
                Some(Role::Target { .. }) => Action::SettleTarget {
                    epoch: layout.epoch,
                },
                Some(Role::None | Role::Source { .. }) | None => Action::Finish,
            }
        }
        Phase::Aborting => {
            let epoch = layout.epoch + 1;
            // Creating timed out: nothing was published, no source began, and the
            // target (which may never answer: that is why) holds no keys.
            if layout.moving.is_none() {
                return Action::FinishAbort { epoch };
            }
            let Some(t) = role(target) else {
                return Action::Wait("the target did not answer");
            };
            if let Role::Target {
                aborted: false,
                accepted,
                ..
            } = t
            {
                // Too late: a source switched (or its accept landed before the abort).
                // The target refuses to abort; the reshard goes forward.
                if let Some((&source, &at)) = accepted.iter().find(|(g, _)| !switched.contains(g)) {
                    return Action::StartSwitch { source, epoch: at };
                }
                if !accepted.is_empty() {
                    return Action::ResumeCopying;
                }
                return Action::AbortTarget { epoch };
            }
            // Every old group learns the abort's epoch, a source or not: a `_BEGIN` of
            // this reshard still in flight (an unknown outcome, a deposed
            // coordinator's) then finds the floor above its epoch and does nothing,
            // instead of starting to track changes for a target that is gone.
            let behind = |g: GroupId| states.get(&g).is_some_and(|s| s.floor < epoch);
            if let Some(&source) = old.iter().find(|&&g| hands_over(g) || behind(g)) {
                return Action::AbortSource { source, epoch };
            }
            if old.iter().any(|g| !states.contains_key(g)) {
                return Action::Wait("a source did not answer");
            }
            Action::FinishAbort { epoch }
        }
    }
}

/// The Copying rows: every source begins, then each copies, then each catches up,
/// then the lowest unswitched source switches.
fn copying(view: View<'_>, old: &[GroupId], switched: &BTreeSet<GroupId>) -> Action {
    let View {
        record,
        layout,
        states,
        ready,
    } = view;
    let target = record.target;
    let unswitched: Vec<GroupId> = old
        .iter()
        .copied()
        .filter(|g| !switched.contains(g))
        .collect();
    let Some(&first) = unswitched.first() else {
        return Action::StartCleaning;
    };
    // Every source begins before any copies: from its `_BEGIN` on, a router still
    // below the reshard's epoch is refused there (docs/resharding.md §2).
    for &g in &unswitched {
        match states.get(&g).map(|s| &s.role) {
            None => return Action::Wait("a source did not answer"),
            Some(Role::None) => {
                return Action::Begin {
                    source: g,
                    epoch: layout.epoch,
                }
            }
            Some(Role::Target { .. }) => return Action::Wait("an old group takes keys itself"),
            Some(Role::Source { target: t, .. }) if *t != target => {
                return Action::Wait("a source hands keys to another group")
            }
            Some(Role::Source { .. }) => {}
        }
    }
    for &g in &unswitched {
        let SourceProgress {
            copy_done, cursor, ..
        } = record.progress_of(g);
        if !copy_done {
            return Action::Copy { source: g, cursor };
        }
    }
    for &g in &unswitched {
        let p = record.progress_of(g);
        if !p.caught_up {
            return Action::CatchUp {
                source: g,
                seq: p.seq,
            };
        }
    }
    if !switch_ready(ready, target, first) {
        return Action::Wait("a fence waits for the target, the source and the meta group");
    }
    Action::StartSwitch {
        source: first,
        epoch: layout.epoch + 1,
    }
}

#[cfg(test)]
#[path = "reshard_tests.rs"]
mod tests;
