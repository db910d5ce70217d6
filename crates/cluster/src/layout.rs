//! The layout: which shard groups hold keys, as the cluster map records it, and the
//! routing every router derives from it (step 2 of docs/resharding.md).
//!
//! A cluster started with `--groups N` and never resharded has no layout in the map:
//! it routes by `0..N` at epoch 0, as before layouts existed. A reshard writes one
//! (`RESHARD_KEY`'s `layout` field) and raises its epoch each time the routing
//! function changes (the group being added joins, a source switches, an abort), so a
//! router compares epochs only. Nothing writes a layout yet: the coordinator is step 5
//! of the plan. Until then this is what routers read and install, so that a later
//! node's layout is already obeyed by this one.

use serde::{Deserialize, Serialize};
use shoal_raft::GroupId;

use crate::ring::Routing;

/// The meta group's hash of resharding state (beside the map's hash: its changes are
/// read-modify-writes guarded by its version, which the nodes' reports to the map,
/// every second, would never let through).
pub const RESHARD_KEY: &[u8] = b"shoal:reshard";
/// The field of [`RESHARD_KEY`] that holds the [`Layout`].
pub const LAYOUT_FIELD: &[u8] = b"layout";

/// The groups that hold keys, and the one being added while a reshard runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Raised by one at each change of the routing function.
    pub epoch: u64,
    /// The settled groups: the ring keys are placed by when nothing moves.
    pub groups: Vec<GroupId>,
    pub moving: Option<Moving>,
}

/// A group being added: the sources that have handed it their keys so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moving {
    pub target: GroupId,
    pub switched: Vec<GroupId>,
}

/// Marks the value's format: a value in a format this node does not know (a later
/// node's) is skipped, and the router keeps the routing it has.
const LAYOUT_FORMAT: u8 = 0;

impl Layout {
    /// The layout of a cluster whose map has none: its `--groups`, at epoch 0.
    pub fn initial(groups: u64) -> Layout {
        Layout {
            epoch: 0,
            groups: (0..groups).collect(),
            moving: None,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        encode_as(LAYOUT_FORMAT, self)
    }

    /// `None` for a value in another format, one that does not decode, or one no
    /// router could route by (see [`Layout::is_sound`]).
    pub fn decode(value: &[u8]) -> Option<Layout> {
        decode_as::<Layout>(LAYOUT_FORMAT, value).filter(Layout::is_sound)
    }

    /// Whether keys can be routed by it: some settled group, none of them the meta
    /// group, and a group being added that is not already settled. A router never
    /// goes back to an older epoch, so installing an unsound layout would be for good.
    pub fn is_sound(&self) -> bool {
        let real = |g: &GroupId| *g != crate::meta::META;
        !self.groups.is_empty()
            && self.groups.iter().all(real)
            && self
                .moving
                .as_ref()
                .is_none_or(|m| real(&m.target) && !self.groups.contains(&m.target))
    }

    /// The routing a router installs for this layout.
    pub fn routing(&self) -> Routing {
        match &self.moving {
            None => Routing::stable(self.groups.iter().copied(), self.epoch),
            Some(m) => Routing::moving(
                self.groups.iter().copied(),
                m.target,
                m.switched.iter().copied(),
                self.epoch,
            ),
        }
    }

    /// The settled groups other than `target`: a reshard's old groups, whether the
    /// layout still moves keys to `target` or (once cleaning) settled it among them.
    pub fn old_groups(&self, target: GroupId) -> Vec<GroupId> {
        self.groups
            .iter()
            .copied()
            .filter(|&g| g != target)
            .collect()
    }

    /// Every group of the layout, the one being added included: the groups every node
    /// opens and every index command reaches.
    pub fn all_groups(&self) -> Vec<GroupId> {
        let mut all = self.groups.clone();
        all.extend(self.moving.as_ref().map(|m| m.target));
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// `value` as the hash stores it: its format byte, then postcard.
pub(crate) fn encode_as<T: Serialize>(format: u8, value: &T) -> Result<Vec<u8>, postcard::Error> {
    let mut out = vec![format];
    out.extend(postcard::to_allocvec(value)?);
    Ok(out)
}

/// A stored value in `format`; `None` in another format (a later node's, skipped
/// rather than misread) or when it does not decode.
pub(crate) fn decode_as<T: serde::de::DeserializeOwned>(format: u8, stored: &[u8]) -> Option<T> {
    match stored.split_first() {
        Some((&f, rest)) if f == format => postcard::from_bytes(rest).ok(),
        Some(_) | None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Ring;

    fn moving() -> Layout {
        Layout {
            epoch: 4,
            groups: vec![0, 1, 2],
            moving: Some(Moving {
                target: 3,
                switched: vec![1],
            }),
        }
    }

    #[test]
    fn a_layout_reads_back_as_written_and_other_formats_are_skipped() {
        for layout in [Layout::initial(3), moving()] {
            let bytes = layout.encode().unwrap();
            assert_eq!(Layout::decode(&bytes), Some(layout));
        }
        let mut later = moving().encode().unwrap();
        later[0] = 1;
        assert_eq!(Layout::decode(&later), None);
        assert_eq!(Layout::decode(&[]), None);
        assert_eq!(Layout::decode(&[LAYOUT_FORMAT, 0xff]), None);
        // Written in a known format, but nothing a router could route by.
        let unsound = [
            Layout::initial(0),
            Layout {
                groups: vec![0, crate::meta::META],
                ..Layout::initial(1)
            },
            Layout {
                moving: Some(Moving {
                    target: 1,
                    switched: Vec::new(),
                }),
                ..Layout::initial(3)
            },
            Layout {
                moving: Some(Moving {
                    target: crate::meta::META,
                    switched: Vec::new(),
                }),
                ..Layout::initial(3)
            },
        ];
        for layout in unsound {
            assert_eq!(
                Layout::decode(&layout.encode().unwrap()),
                None,
                "{layout:?}"
            );
        }
    }

    #[test]
    fn the_initial_layout_routes_as_a_cluster_without_one() {
        let routing = Layout::initial(3).routing();
        let before: Routing = Ring::new(0..3).into();
        assert_eq!(routing.epoch(), 0);
        for i in 0..2_000 {
            let key = format!("doc:{i}");
            assert_eq!(
                routing.group_of(key.as_bytes()),
                before.group_of(key.as_bytes())
            );
        }
        assert_eq!(routing.all(), before.all());
        assert_eq!(Layout::initial(3).all_groups(), vec![0, 1, 2]);
    }

    #[test]
    fn a_moving_layout_routes_as_its_routing_says() {
        let layout = moving();
        let routing = layout.routing();
        let expect = Routing::moving([0, 1, 2], 3, [1], 4);
        assert_eq!(routing.epoch(), 4);
        assert_eq!(routing.target(), Some(3));
        for i in 0..2_000 {
            let key = format!("k{i}");
            assert_eq!(
                routing.group_of(key.as_bytes()),
                expect.group_of(key.as_bytes())
            );
        }
        assert_eq!(routing.owners(), expect.owners());
        assert_eq!(layout.all_groups(), vec![0, 1, 2, 3]);
    }
}
