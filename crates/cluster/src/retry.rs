//! What a router does after one attempt at a group failed: the failure rows of the
//! decision table in [`crate::shards`], as a function of the error and the attempt, so
//! that the loop in `Shards::call_fenced` only carries them out and each row is tested
//! on its own.
//!
//! | error                                        | next     | hint   | map     |
//! |----------------------------------------------|----------|--------|---------|
//! | `NotLeader` naming another node, < 3 so far  | redirect | set    |         |
//! | `NotLeader` otherwise (none named, the node  | pause    | forget |         |
//! | asked named, or [`MAX_REDIRECTS`] followed)  |          |        |         |
//! | not hosted on the node asked                 | pause    | forget | refresh |
//! | unreachable, never sent, or sent by a read   | pause    | forget |         |
//! | unreachable after sending, write             | fail     | forget |         |
//! | no quorum, leadership lost, deadline, no     | fail     |        |         |
//! | route, engine or codec error                 |          |        |         |
//! | the group's routing epoch is past the call's | fail     |        | refresh |
//! | (a reshard: nothing ran)                     |          |        |         |
//!
//! A row that would pause fails instead once the call is out of time, with the error
//! that made it pause. The redirect bound stops two nodes that each name the other
//! (a stale view on both sides) from bouncing a call between them without a pause:
//! after it, the hint is dropped and the next attempt asks the group afresh.

use shoal_raft::{GroupError, NodeAddr, NodeId};

use crate::wire::ShardError;

/// Redirects followed within one call before pausing: leadership rarely moves twice
/// while a call is in flight.
pub const MAX_REDIRECTS: usize = 3;

/// The attempt that failed, as far as the decision needs it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// The node that was asked.
    pub node: NodeId,
    /// Redirects already followed within this call.
    pub redirects: usize,
    /// Whether the call may be repeated (a read) even if it may have arrived.
    pub idempotent: bool,
    /// Whether a pause would take the call past its deadline.
    pub out_of_time: bool,
}

/// The next step of the call.
#[derive(Debug)]
pub enum Next {
    /// Ask this leader at once.
    Redirect((NodeId, NodeAddr)),
    /// Pause, then ask again.
    Pause,
    /// Give up with this error.
    Fail(ShardError),
}

/// The decision, and what the router's caches should learn from the failure.
#[derive(Debug)]
pub struct AfterFailure {
    pub next: Next,
    /// Drop the group's leader hint (the node it names did not answer as leader).
    pub forget_hint: bool,
    /// Ask the cluster map again: the group's replicas are not where this router thinks.
    pub refresh_map: bool,
}

/// The row of the module's table for `error`.
pub fn after_failure(error: ShardError, attempt: Attempt) -> AfterFailure {
    let pause_or_fail = |error| {
        if attempt.out_of_time {
            Next::Fail(error)
        } else {
            Next::Pause
        }
    };
    match error {
        ShardError::Group(GroupError::NotLeader {
            leader: Some(leader),
            ..
        }) if attempt.redirects < MAX_REDIRECTS && leader.0 != attempt.node => AfterFailure {
            next: Next::Redirect(leader),
            forget_hint: false,
            refresh_map: false,
        },
        e @ ShardError::Group(GroupError::NotLeader { .. }) => AfterFailure {
            next: pause_or_fail(e),
            forget_hint: true,
            refresh_map: false,
        },
        e @ ShardError::NotHosted { .. } => AfterFailure {
            next: pause_or_fail(e),
            forget_hint: true,
            refresh_map: true,
        },
        e @ ShardError::Unreachable { .. } => {
            let never_sent = matches!(
                e,
                ShardError::Unreachable {
                    never_sent: true,
                    ..
                }
            );
            let next = if never_sent || attempt.idempotent {
                pause_or_fail(e)
            } else {
                Next::Fail(e)
            };
            AfterFailure {
                next,
                forget_hint: true,
                refresh_map: false,
            }
        }
        e @ (ShardError::Group(
            GroupError::Timeout { .. } | GroupError::Unknown { .. } | GroupError::Raft { .. },
        )
        | ShardError::Deadline { .. }
        | ShardError::NoRoute { .. }
        | ShardError::Engine(_)
        | ShardError::Codec(_)) => AfterFailure {
            next: Next::Fail(e),
            forget_hint: false,
            refresh_map: false,
        },
        // The whole command is planned again on the new map, not this one part (its
        // keys may live on another group now).
        e @ ShardError::StaleMap { .. } => AfterFailure {
            next: Next::Fail(e),
            forget_hint: false,
            refresh_map: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn addr(id: NodeId) -> (NodeId, NodeAddr) {
        (
            id,
            NodeAddr {
                zone: "a".into(),
                raft: format!("127.0.0.1:{}", 7000 + id),
                resp: format!("127.0.0.1:{}", 6000 + id),
            },
        )
    }

    fn not_leader(leader: Option<NodeId>) -> ShardError {
        ShardError::Group(GroupError::NotLeader {
            group: 1,
            leader: leader.map(addr),
        })
    }

    fn unreachable(never_sent: bool) -> ShardError {
        ShardError::Unreachable {
            group: 1,
            node: 2,
            message: "connection refused".into(),
            never_sent,
        }
    }

    fn attempt(redirects: usize) -> Attempt {
        Attempt {
            node: 2,
            redirects,
            idempotent: true,
            out_of_time: false,
        }
    }

    #[test]
    fn a_named_leader_is_asked_at_once_until_the_redirect_bound_then_the_call_pauses() {
        for redirects in 0..MAX_REDIRECTS {
            let d = after_failure(not_leader(Some(3)), attempt(redirects));
            assert!(
                matches!(d.next, Next::Redirect((3, _))),
                "{redirects}: {d:?}"
            );
            assert!(!d.forget_hint && !d.refresh_map, "{d:?}");
        }
        let d = after_failure(not_leader(Some(3)), attempt(MAX_REDIRECTS));
        assert!(matches!(d.next, Next::Pause), "{d:?}");
        assert!(d.forget_hint, "the bounced hint must go: {d:?}");
    }

    #[test]
    fn a_node_naming_itself_as_leader_is_not_asked_again_at_once() {
        let d = after_failure(not_leader(Some(2)), attempt(0));
        assert!(matches!(d.next, Next::Pause), "{d:?}");
        assert!(d.forget_hint);
    }

    #[test]
    fn no_leader_named_pauses_and_fails_with_not_leader_once_out_of_time() {
        let d = after_failure(not_leader(None), attempt(0));
        assert!(matches!(d.next, Next::Pause), "{d:?}");
        let late = Attempt {
            out_of_time: true,
            ..attempt(0)
        };
        let d = after_failure(not_leader(None), late);
        assert!(
            matches!(
                d.next,
                Next::Fail(ShardError::Group(GroupError::NotLeader { .. }))
            ),
            "{d:?}"
        );
        assert!(d.forget_hint);
        // A named leader past the bound, out of time, fails the same way.
        let d = after_failure(
            not_leader(Some(3)),
            Attempt {
                out_of_time: true,
                ..attempt(MAX_REDIRECTS)
            },
        );
        assert!(matches!(d.next, Next::Fail(_)), "{d:?}");
    }

    #[test]
    fn a_replica_not_hosted_where_asked_refreshes_the_map() {
        let d = after_failure(ShardError::NotHosted { node: 2, group: 1 }, attempt(0));
        assert!(matches!(d.next, Next::Pause), "{d:?}");
        assert!(d.forget_hint && d.refresh_map, "{d:?}");
    }

    #[test]
    fn an_unreachable_node_is_retried_unless_a_write_may_have_arrived() {
        let write = Attempt {
            idempotent: false,
            ..attempt(0)
        };
        let cases = [
            // (never sent, idempotent, out of time, pauses)
            (true, false, false, true),
            (false, false, false, false),
            (false, true, false, true),
            (false, true, true, false),
            (true, false, true, false),
        ];
        for (never_sent, idempotent, out_of_time, pauses) in cases {
            let at = Attempt {
                idempotent,
                out_of_time,
                ..write
            };
            let d = after_failure(unreachable(never_sent), at);
            let paused = matches!(d.next, Next::Pause);
            assert!(
                paused || matches!(d.next, Next::Fail(ShardError::Unreachable { .. })),
                "{d:?}"
            );
            assert_eq!(
                paused, pauses,
                "never_sent {never_sent} idempotent {idempotent} out_of_time {out_of_time}"
            );
            assert!(d.forget_hint && !d.refresh_map, "{d:?}");
        }
    }

    #[test]
    fn definite_errors_fail_at_once_and_keep_the_hint() {
        let errors = [
            ShardError::Group(GroupError::Timeout {
                group: 1,
                timeout: Duration::from_secs(1),
            }),
            ShardError::Group(GroupError::Unknown { group: 1 }),
            ShardError::Group(GroupError::Raft {
                group: 1,
                message: "shut down".into(),
            }),
            ShardError::Deadline {
                group: 1,
                node: Some(2),
                millis: 100,
            },
            ShardError::NoRoute { group: 1 },
            ShardError::Engine("ERR unknown index".into()),
            ShardError::Codec("bad payload".into()),
        ];
        for e in errors {
            let text = e.to_string();
            let d = after_failure(e, attempt(0));
            assert!(!d.forget_hint && !d.refresh_map, "{text}");
            let Next::Fail(got) = d.next else {
                panic!("{text}: {:?}", d.next)
            };
            assert_eq!(got.to_string(), text);
        }
    }

    #[test]
    fn a_group_past_the_calls_routing_fails_it_and_has_the_map_read_again() {
        let d = after_failure(ShardError::StaleMap { group: 1, floor: 4 }, attempt(0));
        assert!(d.refresh_map && !d.forget_hint);
        assert!(matches!(
            d.next,
            Next::Fail(ShardError::StaleMap { group: 1, floor: 4 })
        ));
    }
}
