//! A shard group's part in a reshard, as its engine keeps it (docs/resharding.md §3.1):
//! the lowest router epoch it answers, and, while a group is being added, whether it
//! hands keys over (a source) or takes them (the target), and which of its keys a
//! reader may see.
//!
//! Part of the replicated state: it travels in snapshots and counts in the digest, so
//! every replica decides alike. The log entries that change it (`SHOAL._BEGIN`,
//! `_FENCE`, `_INCOMING`, `_ACCEPT`, ...) are step 3 of the plan and not built yet; a
//! group that never reshards keeps [`Layout::default`], under which every key is
//! visible and every epoch answered.

use std::collections::BTreeMap;

use shoal_ring::{GroupId, Ring};

#[derive(Debug, Default)]
pub struct Layout {
    /// The lowest router epoch this group answers: calls and entries below it are
    /// refused (the router's map is stale).
    pub floor: u64,
    /// Set on a source group from `_BEGIN` to `_SETTLE`.
    pub outgoing: Option<Outgoing>,
    /// Set on the target group from `_INCOMING` to `_SETTLE`.
    pub incoming: Option<Incoming>,
}

/// A source's hand-over of the keys the next ring gives to `target`.
#[derive(Debug)]
pub struct Outgoing {
    pub target: GroupId,
    /// The ring once the target has joined: the keys it gives the target move.
    pub next: Ring,
    /// The epoch the copy began at.
    pub begun: u64,
    /// The epoch this source switched at (`_FENCE`): from then on its moving keys
    /// belong to the target and are hidden here, until purged.
    pub fenced: Option<u64>,
    /// Where the purge of the hidden keys goes on from.
    pub purge_cursor: u64,
}

/// The target's intake: keys copied from each old group, shown only once that group
/// has switched.
#[derive(Debug)]
pub struct Incoming {
    /// The ring before the target joined: which source each copied key comes from.
    pub old: Ring,
    /// The sources that have switched, with the epoch each switched at.
    pub accepted: BTreeMap<GroupId, u64>,
    /// The coordinator's run the imports come from (a deposed one's are refused).
    pub run: u64,
    pub aborted: bool,
}

impl Layout {
    /// Whether a reader of this group may see `key`. Decision table:
    ///
    /// | this group is                 | `key` is visible when                        |
    /// |-------------------------------|----------------------------------------------|
    /// | neither source nor target     | always                                       |
    /// | a source, before its fence    | always (it still owns its moving keys)        |
    /// | a source, fenced              | the next ring does not give it to the target |
    /// | the target                    | its old group has switched (accepted)        |
    ///
    /// A group is never both: the target is new, the sources are the old groups.
    pub fn visible(&self, key: &[u8]) -> bool {
        let hidden_by_source = self
            .outgoing
            .as_ref()
            .is_some_and(|out| out.fenced.is_some() && out.next.group_of(key) == Some(out.target));
        let shown_by_target = self.incoming.as_ref().is_none_or(|inc| {
            inc.old
                .group_of(key)
                .is_some_and(|g| inc.accepted.contains_key(&g))
        });
        !hidden_by_source && shown_by_target
    }

    /// No reshard state at all: what a group that never reshards holds (its snapshots
    /// are then written in the format before this state existed).
    pub fn is_initial(&self) -> bool {
        self.floor == 0 && self.outgoing.is_none() && self.incoming.is_none()
    }

    /// Whether every key is visible, so readers need not ask key by key (every group,
    /// nearly always).
    pub fn shows_everything(&self) -> bool {
        let fenced = self.outgoing.as_ref().is_some_and(|o| o.fenced.is_some());
        !fenced && self.incoming.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> impl Iterator<Item = Vec<u8>> {
        (0..2_000).map(|i| format!("doc:{i}").into_bytes())
    }

    #[test]
    fn a_group_outside_a_reshard_shows_every_key() {
        let layout = Layout::default();
        assert!(layout.is_initial());
        assert!(layout.shows_everything());
        assert!(keys().all(|k| layout.visible(&k)));
    }

    #[test]
    fn a_fenced_source_hides_exactly_the_keys_the_next_ring_gives_the_target() {
        let mut layout = Layout {
            floor: 3,
            outgoing: Some(Outgoing {
                target: 3,
                next: Ring::new(0..4),
                begun: 2,
                fenced: None,
                purge_cursor: 0,
            }),
            incoming: None,
        };
        // Copying: the source still owns them.
        assert!(layout.shows_everything());
        assert!(keys().all(|k| layout.visible(&k)));
        if let Some(out) = layout.outgoing.as_mut() {
            out.fenced = Some(3);
        }
        assert!(!layout.shows_everything());
        let next = Ring::new(0..4);
        let mut moved = 0;
        for key in keys() {
            let to_target = next.group_of(&key) == Some(3);
            assert_eq!(layout.visible(&key), !to_target);
            moved += usize::from(to_target);
        }
        // About a quarter of the keys move to a fourth group.
        assert!((300..700).contains(&moved), "{moved}");
    }

    #[test]
    fn the_target_shows_the_keys_of_the_sources_that_switched_only() {
        let old = Ring::new(0..3);
        let mut layout = Layout {
            floor: 2,
            outgoing: None,
            incoming: Some(Incoming {
                old: Ring::new(0..3),
                accepted: BTreeMap::new(),
                run: 1,
                aborted: false,
            }),
        };
        assert!(!layout.shows_everything());
        assert!(keys().all(|k| !layout.visible(&k)));
        if let Some(inc) = layout.incoming.as_mut() {
            inc.accepted.insert(1, 3);
        }
        for key in keys() {
            assert_eq!(layout.visible(&key), old.group_of(&key) == Some(1));
        }
    }
}
