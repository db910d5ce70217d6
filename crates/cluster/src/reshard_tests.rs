//! `next_action`, row by row of the module's table, on three old groups (0, 1, 2)
//! and a target 3; and `GroupState::parse` on the engine's own `SHOAL._LAYOUT`.

use std::collections::{BTreeMap, BTreeSet};

use shoal_engine::{Engine, ReadContext, Write};

use super::*;
use crate::layout::{Layout, Moving};
use crate::meta::META;
use crate::reshard_record::{Phase, ReshardRecord, SourceProgress};

const T: GroupId = 3;

fn record(phase: Phase, progress: &[(GroupId, SourceProgress)]) -> ReshardRecord {
    ReshardRecord {
        target: T,
        members: vec![1, 2, 3],
        phase,
        run: 1,
        started_ms: 0,
        progress: progress.iter().copied().collect(),
    }
}

fn moving(epoch: u64, switched: &[GroupId]) -> Layout {
    Layout {
        epoch,
        groups: vec![0, 1, 2],
        moving: Some(Moving {
            target: T,
            switched: switched.to_vec(),
        }),
    }
}

fn none(floor: u64) -> GroupState {
    GroupState {
        floor,
        role: Role::None,
    }
}

fn source(fenced: Option<u64>) -> GroupState {
    GroupState {
        floor: fenced.unwrap_or(1),
        role: Role::Source {
            target: T,
            begun: 1,
            fenced,
        },
    }
}

fn target(accepted: &[(GroupId, u64)], aborted: bool) -> GroupState {
    GroupState {
        floor: 1,
        role: Role::Target {
            run: 1,
            aborted,
            accepted: accepted.iter().copied().collect(),
        },
    }
}

fn all_ready() -> BTreeSet<GroupId> {
    [0, 1, 2, T, META].into_iter().collect()
}

fn done() -> SourceProgress {
    SourceProgress {
        copy_done: true,
        caught_up: true,
        seq: 40,
        ..SourceProgress::default()
    }
}

fn decide(
    record: &ReshardRecord,
    layout: &Layout,
    states: &[(GroupId, GroupState)],
    ready: &BTreeSet<GroupId>,
) -> Action {
    let states: BTreeMap<GroupId, GroupState> = states.iter().cloned().collect();
    next_action(View {
        record,
        layout,
        states: &states,
        ready,
    })
}

#[test]
fn creating_waits_for_a_ready_target_then_takes_it_in_at_the_next_epoch() {
    let r = record(Phase::Creating, &[]);
    let layout = Layout::initial(3);
    let states = [(0, none(0)), (1, none(0)), (2, none(0)), (T, none(0))];
    let mut ready = all_ready();
    ready.remove(&T);
    assert!(matches!(
        decide(&r, &layout, &states, &ready),
        Action::Wait(_)
    ));
    assert_eq!(
        decide(&r, &layout, &states, &all_ready()),
        Action::Intake { epoch: 1 }
    );
    // Ready by the map but silent this tick: wait.
    assert!(matches!(
        decide(&r, &layout, &states[..3], &all_ready()),
        Action::Wait(_)
    ));
}

#[test]
fn copying_begins_copies_then_catches_up_each_source_in_order() {
    let layout = moving(1, &[]);
    let ready = all_ready();
    let t = (T, target(&[], false));
    // Source 0 has not begun.
    let r = record(Phase::Copying, &[]);
    let states = [
        (0, none(0)),
        (1, source(None)),
        (2, source(None)),
        t.clone(),
    ];
    assert_eq!(
        decide(&r, &layout, &states, &ready),
        Action::Begin {
            source: 0,
            epoch: 1
        }
    );
    // All begun; 0 copied, 1 half way.
    let half = SourceProgress {
        cursor: 77,
        ..SourceProgress::default()
    };
    let r = record(Phase::Copying, &[(0, done()), (1, half)]);
    let states = [
        (0, source(None)),
        (1, source(None)),
        (2, source(None)),
        t.clone(),
    ];
    assert_eq!(
        decide(&r, &layout, &states, &ready),
        Action::Copy {
            source: 1,
            cursor: 77
        }
    );
    // All copied, 2 not caught up.
    let copied = SourceProgress {
        copy_done: true,
        seq: 12,
        ..SourceProgress::default()
    };
    let r = record(Phase::Copying, &[(0, done()), (1, done()), (2, copied)]);
    assert_eq!(
        decide(&r, &layout, &states, &ready),
        Action::CatchUp { source: 2, seq: 12 }
    );
    // A source that did not answer, or one handing keys to another group: wait.
    assert!(matches!(
        decide(&r, &layout, &states[1..], &ready),
        Action::Wait(_)
    ));
    let elsewhere = GroupState {
        floor: 1,
        role: Role::Source {
            target: 9,
            begun: 1,
            fenced: None,
        },
    };
    let mixed = [(0, elsewhere), (1, source(None)), (2, source(None)), t];
    assert!(matches!(
        decide(&r, &layout, &mixed, &ready),
        Action::Wait(_)
    ));
}

#[test]
fn a_switch_starts_with_the_lowest_unswitched_source_only_when_everyone_is_ready() {
    let r = record(Phase::Copying, &[(0, done()), (1, done()), (2, done())]);
    let states = [
        (0, source(Some(2))),
        (1, source(None)),
        (2, source(None)),
        (T, target(&[(0, 2)], false)),
    ];
    let layout = moving(2, &[0]);
    assert_eq!(
        decide(&r, &layout, &states, &all_ready()),
        Action::StartSwitch {
            source: 1,
            epoch: 3
        }
    );
    for missing in [1, T, META] {
        let mut ready = all_ready();
        ready.remove(&missing);
        assert!(
            matches!(decide(&r, &layout, &states, &ready), Action::Wait(_)),
            "{missing} not ready"
        );
    }
    // Every source switched: cleaning.
    let layout = moving(4, &[0, 1, 2]);
    assert_eq!(
        decide(&r, &layout, &states, &all_ready()),
        Action::StartCleaning
    );
}

#[test]
fn switching_fences_then_accepts_then_switches_the_map() {
    let r = record(
        Phase::Switching {
            source: 1,
            epoch: 3,
        },
        &[(0, done()), (1, done()), (2, done())],
    );
    let layout = moving(2, &[0]);
    let ready = all_ready();
    let with = |s1: GroupState, t: GroupState| {
        vec![(0, source(Some(2))), (1, s1), (2, source(None)), (T, t)]
    };
    assert_eq!(
        decide(
            &r,
            &layout,
            &with(source(None), target(&[(0, 2)], false)),
            &ready
        ),
        Action::Fence {
            source: 1,
            epoch: 3
        }
    );
    assert_eq!(
        decide(
            &r,
            &layout,
            &with(source(Some(3)), target(&[(0, 2)], false)),
            &ready
        ),
        Action::Accept {
            source: 1,
            epoch: 3,
            seq: 40
        }
    );
    assert_eq!(
        decide(
            &r,
            &layout,
            &with(source(Some(3)), target(&[(0, 2), (1, 3)], false)),
            &ready
        ),
        Action::Switch {
            source: 1,
            epoch: 3
        }
    );
    // The source silent, or not handing keys over: wait, never accept.
    let silent = [
        (0, source(Some(2))),
        (2, source(None)),
        (T, target(&[], false)),
    ];
    assert!(matches!(
        decide(&r, &layout, &silent, &ready),
        Action::Wait(_)
    ));
    assert!(matches!(
        decide(
            &r,
            &layout,
            &with(none(3), target(&[(0, 2)], false)),
            &ready
        ),
        Action::Wait(_)
    ));
}

#[test]
fn cleaning_purges_each_source_then_settles_the_target_then_finishes() {
    let r = record(Phase::Cleaning, &[]);
    let layout = Layout {
        epoch: 4,
        groups: vec![0, 1, 2, T],
        moving: None,
    };
    let ready = all_ready();
    let accepted = target(&[(0, 2), (1, 3), (2, 4)], false);
    let states = [
        (0, none(2)),
        (1, source(Some(3))),
        (2, source(Some(4))),
        (T, accepted.clone()),
    ];
    assert_eq!(
        decide(&r, &layout, &states, &ready),
        Action::Purge {
            source: 1,
            epoch: 4
        }
    );
    let states = [(0, none(2)), (1, none(3)), (2, none(4)), (T, accepted)];
    assert_eq!(
        decide(&r, &layout, &states, &ready),
        Action::SettleTarget { epoch: 4 }
    );
    let settled = [(0, none(2)), (1, none(3)), (2, none(4)), (T, none(4))];
    assert_eq!(decide(&r, &layout, &settled, &ready), Action::Finish);
    // Finishing needs every group's word that it is done.
    assert!(matches!(
        decide(&r, &layout, &settled[1..], &ready),
        Action::Wait(_)
    ));
}

#[test]
fn aborting_undoes_the_target_first_then_the_sources_then_the_map() {
    let r = record(Phase::Aborting, &[]);
    let layout = moving(1, &[]);
    let ready = all_ready();
    let states = [
        (0, source(None)),
        (1, source(Some(2))),
        (2, none(1)),
        (T, target(&[], false)),
    ];
    assert_eq!(
        decide(&r, &layout, &states, &ready),
        Action::AbortTarget { epoch: 2 }
    );
    let states = [
        (0, source(None)),
        (1, source(Some(2))),
        (2, none(1)),
        (T, target(&[], true)),
    ];
    assert_eq!(
        decide(&r, &layout, &states, &ready),
        Action::AbortSource {
            source: 0,
            epoch: 2
        }
    );
    // A group that never began learns the abort's epoch too (a late `_BEGIN` of the
    // reshard then finds its floor above it).
    let states = [
        (0, none(2)),
        (1, none(2)),
        (2, none(1)),
        (T, target(&[], true)),
    ];
    assert_eq!(
        decide(&r, &layout, &states, &ready),
        Action::AbortSource {
            source: 2,
            epoch: 2
        }
    );
    let states = [
        (0, none(2)),
        (1, none(2)),
        (2, none(2)),
        (T, target(&[], true)),
    ];
    assert_eq!(
        decide(&r, &layout, &states, &ready),
        Action::FinishAbort { epoch: 2 }
    );
    assert!(matches!(
        decide(&r, &layout, &states[1..], &ready),
        Action::Wait(_)
    ));
}

/// The parser reads what the engine answers, in every role.
#[test]
fn group_states_parse_from_the_engines_own_answers() {
    let ctx = ReadContext {
        now_ms: 1,
        resp3: false,
        in_apply: false,
    };
    let run = |engine: &mut Engine, args: &[&str]| {
        let args = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        engine.apply(&Write::single(1, args));
    };
    let state = |engine: &Engine| GroupState::parse(&engine.query(&["SHOAL._LAYOUT"], ctx));
    let mut src = Engine::new();
    assert_eq!(state(&src), Some(none(0)));
    run(&mut src, &["SHOAL._BEGIN", "1", "3", "0", "1", "2", "3"]);
    run(&mut src, &["SHOAL._FENCE", "3", "2"]);
    assert_eq!(
        state(&src),
        Some(GroupState {
            floor: 2,
            role: Role::Source {
                target: 3,
                begun: 1,
                fenced: Some(2)
            }
        })
    );
    let mut dst = Engine::new();
    run(&mut dst, &["SHOAL._INCOMING", "1", "4", "0", "1", "2"]);
    run(&mut dst, &["SHOAL._ACCEPT", "1", "3", "4"]);
    assert_eq!(
        state(&dst),
        Some(GroupState {
            floor: 3,
            role: Role::Target {
                run: 4,
                aborted: false,
                accepted: BTreeMap::from([(1, 3)])
            }
        })
    );
    assert_eq!(GroupState::parse(&shoal_engine::Reply::err("no")), None);
}

#[test]
fn every_source_begins_before_any_copies() {
    let r = record(Phase::Copying, &[]);
    let layout = moving(1, &[]);
    let states = [
        (0, source(None)),
        (1, none(0)),
        (2, source(None)),
        (T, target(&[], false)),
    ];
    assert_eq!(
        decide(&r, &layout, &states, &all_ready()),
        Action::Begin {
            source: 1,
            epoch: 1
        }
    );
    // An old group that takes keys itself: never begun, wait.
    let states = [
        (0, source(None)),
        (1, target(&[], false)),
        (2, source(None)),
        (T, target(&[], false)),
    ];
    assert!(matches!(
        decide(&r, &layout, &states, &all_ready()),
        Action::Wait(_)
    ));
}

#[test]
fn a_resumed_switch_fences_only_when_everyone_is_ready_and_the_target_takes_keys() {
    let r = record(
        Phase::Switching {
            source: 0,
            epoch: 2,
        },
        &[(0, done()), (1, done()), (2, done())],
    );
    let layout = moving(1, &[]);
    let states = [
        (0, source(None)),
        (1, source(None)),
        (2, source(None)),
        (T, target(&[], false)),
    ];
    let mut ready = all_ready();
    ready.remove(&META);
    assert!(matches!(
        decide(&r, &layout, &states, &ready),
        Action::Wait(_)
    ));
    let aborted = [
        (0, source(Some(2))),
        (1, source(None)),
        (2, source(None)),
        (T, target(&[], true)),
    ];
    assert!(matches!(
        decide(&r, &layout, &aborted, &all_ready()),
        Action::Wait(_)
    ));
}

#[test]
fn an_abort_after_a_source_switched_goes_forward_and_one_before_any_publish_just_ends() {
    let r = record(Phase::Aborting, &[]);
    let ready = all_ready();
    // The accept of source 1 landed before the abort: switch it at its epoch.
    let states = [
        (0, source(None)),
        (1, source(Some(2))),
        (2, source(None)),
        (T, target(&[(1, 2)], false)),
    ];
    assert_eq!(
        decide(&r, &moving(1, &[]), &states, &ready),
        Action::StartSwitch {
            source: 1,
            epoch: 2
        }
    );
    // Already switched in the map: copying again.
    assert_eq!(
        decide(&r, &moving(2, &[1]), &states, &ready),
        Action::ResumeCopying
    );
    // Creating timed out: nothing published, the target silent (why it timed out).
    let silent = [(0, none(0)), (1, none(0)), (2, none(0))];
    assert_eq!(
        decide(&r, &Layout::initial(3), &silent, &ready),
        Action::FinishAbort { epoch: 1 }
    );
    // A source silent while the target has aborted: wait, it may still hide keys.
    let states = [(0, none(2)), (2, none(2)), (T, target(&[], true))];
    assert!(matches!(
        decide(&r, &moving(1, &[]), &states, &ready),
        Action::Wait(_)
    ));
}

#[test]
fn cleaning_waits_for_a_silent_target() {
    let r = record(Phase::Cleaning, &[]);
    let layout = Layout {
        epoch: 4,
        groups: vec![0, 1, 2, T],
        moving: None,
    };
    let states = [(0, none(2)), (1, none(3)), (2, none(4))];
    assert!(matches!(
        decide(&r, &layout, &states, &all_ready()),
        Action::Wait(_)
    ));
}

#[test]
fn group_states_parse_an_unfenced_source_and_an_aborted_empty_target() {
    let ctx = ReadContext {
        now_ms: 1,
        resp3: false,
        in_apply: false,
    };
    let run = |engine: &mut Engine, args: &[&str]| {
        let args = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        engine.apply(&Write::single(1, args));
    };
    let state = |engine: &Engine| GroupState::parse(&engine.query(&["SHOAL._LAYOUT"], ctx));
    let mut src = Engine::new();
    run(&mut src, &["SHOAL._BEGIN", "1", "3", "0", "1", "2", "3"]);
    assert_eq!(state(&src), Some(source(None)));
    let mut dst = Engine::new();
    run(&mut dst, &["SHOAL._INCOMING", "1", "1", "0", "1", "2"]);
    assert_eq!(state(&dst), Some(target(&[], false)));
    run(&mut dst, &["SHOAL._ABORT", "TARGET", "2", "1"]);
    assert_eq!(
        state(&dst),
        Some(GroupState {
            floor: 2,
            role: Role::Target {
                run: 1,
                aborted: true,
                accepted: BTreeMap::new()
            }
        })
    );
}
