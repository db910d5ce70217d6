//! Which shard group owns a key: a consistent-hash ring (the `consistent_hash` crate)
//! over the groups, with virtual nodes so that adding a group moves about 1/N of the
//! keys and load stays even.
//!
//! A key with a `{hash tag}` — the part between its first `{` and the next `}`, when
//! that part is not empty — is placed by the tag alone, as in Redis Cluster, so
//! `{user:1}:cart` and `{user:1}:profile` live in one group and can share a
//! transaction.
//!
//! A crate of its own, below the engine and the cluster layer alike: a shard group's
//! engine will need to know which of its keys a reshard moves (docs/resharding.md
//! §3.1), and the engine must not depend on the cluster layer.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use consistent_hash::{Node, RingHash, StaticHashRing};

/// A shard group's id, as `shoal_raft::GroupId` (the same `u64`: this crate sits
/// below the Raft layer and does not depend on it).
pub type GroupId = u64;

/// Virtual nodes per group: with 256 the largest group of 3 holds within a few percent
/// of a third of the keys (measured in the tests).
pub const VNODES: usize = 256;

/// xxh3 rather than the crate's SipHash: fast on short keys, and its output is
/// specified, so every node of a cluster places a key alike.
#[derive(Debug, Clone, Copy, Default)]
struct Xxh3Ring;

impl RingHash for Xxh3Ring {
    fn hash_item<T: Hash>(&self, item: &T) -> u64 {
        let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
        item.hash(&mut hasher);
        hasher.finish()
    }
}

/// The ring over a fixed set of groups.
pub struct Ring {
    groups: Vec<GroupId>,
    ring: StaticHashRing<'static, GroupId, (), Xxh3Ring>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("groups", &self.groups)
            .field("vnodes", &self.ring.len())
            .finish()
    }
}

/// Rebuilt from its groups: the ring is a function of them alone.
impl Clone for Ring {
    fn clone(&self) -> Ring {
        Ring::new(self.groups.iter().copied())
    }
}

impl Ring {
    /// A ring over `groups` (duplicates ignored). An empty set gives an empty ring,
    /// which owns nothing ([`Ring::group_of`] then answers `None`).
    pub fn new(groups: impl IntoIterator<Item = GroupId>) -> Ring {
        let mut groups: Vec<GroupId> = groups.into_iter().collect();
        groups.sort_unstable();
        groups.dedup();
        let nodes = groups.iter().map(|&g| Node::new(g).quantity(VNODES));
        Ring {
            ring: StaticHashRing::new(Xxh3Ring, nodes),
            groups,
        }
    }

    /// The groups on the ring, ascending.
    pub fn groups(&self) -> &[GroupId] {
        &self.groups
    }

    /// The group that owns `key`.
    pub fn group_of(&self, key: &[u8]) -> Option<GroupId> {
        self.ring
            .calc_candidates(&hash_slot_key(key))
            .next()
            .map(|node| node.key)
    }
}

/// Which group owns a key, and which groups a command over every group goes to, while
/// the set of groups may be changing (docs/resharding.md).
///
/// Settled, it is the ring. While a group — the target — is being added, each old
/// group (a source) hands the target the keys the next ring gives it, one source at a
/// time; a key then belongs to the target once its source has switched, else to its
/// old group. A key never moves between old groups (the next ring differs from the old
/// one only by the target's points), so the two rings and the set of switched sources
/// say where every key is.
///
/// | state                      | `group_of(k)`                                 | `owners()`          | `all()`           |
/// |----------------------------|-----------------------------------------------|---------------------|-------------------|
/// | settled                    | the ring's                                    | the ring's groups   | the ring's groups |
/// | moving, nothing switched   | the old ring's                                | the old groups      | old groups + target |
/// | moving, sources S switched | target if the old group is in S and the next ring says target, else the old ring's | old groups + target | old groups + target |
///
/// `epoch` numbers the routing functions: it rises whenever `group_of` or `owners`
/// changes, and a group refuses calls planned at an epoch below the one it has
/// reached.
#[derive(Debug, Clone)]
pub struct Routing {
    epoch: u64,
    ring: Arc<Ring>,
    moving: Option<Moving>,
    owners: Vec<GroupId>,
    all: Vec<GroupId>,
}

#[derive(Debug, Clone)]
struct Moving {
    target: GroupId,
    next: Arc<Ring>,
    switched: BTreeSet<GroupId>,
}

impl Routing {
    /// A settled ring over `groups`.
    pub fn stable(groups: impl IntoIterator<Item = GroupId>, epoch: u64) -> Routing {
        Routing::from_ring(Ring::new(groups), epoch)
    }

    fn from_ring(ring: Ring, epoch: u64) -> Routing {
        let groups = ring.groups().to_vec();
        Routing {
            epoch,
            ring: Arc::new(ring),
            moving: None,
            owners: groups.clone(),
            all: groups,
        }
    }

    /// `target` being added to `groups`, the sources in `switched` having handed it
    /// their keys. A target already among `groups`, or sources that are not, are
    /// ignored: the routing is then the settled ring's (or its sources the real ones).
    pub fn moving(
        groups: impl IntoIterator<Item = GroupId>,
        target: GroupId,
        switched: impl IntoIterator<Item = GroupId>,
        epoch: u64,
    ) -> Routing {
        let ring = Ring::new(groups);
        if ring.groups().contains(&target) {
            return Routing::from_ring(ring, epoch);
        }
        let switched: BTreeSet<GroupId> = switched
            .into_iter()
            .filter(|g| ring.groups().contains(g))
            .collect();
        let next = Ring::new(ring.groups().iter().copied().chain([target]));
        let mut owners = ring.groups().to_vec();
        if !switched.is_empty() {
            owners.push(target);
        }
        let mut all = ring.groups().to_vec();
        all.push(target);
        Routing {
            epoch,
            ring: Arc::new(ring),
            moving: Some(Moving {
                target,
                next: Arc::new(next),
                switched,
            }),
            owners,
            all,
        }
    }

    /// The routing function's number (see the type's doc).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether a router routing by `current` should take this routing instead: not when
    /// it is older (a map read that finished late must not take a router back). An
    /// equal epoch is taken: the settled ring written when the last source switches
    /// routes exactly as the moving one it replaces.
    pub fn supersedes(&self, current: &Routing) -> bool {
        self.epoch >= current.epoch
    }

    /// The group being added, while one is.
    pub fn target(&self) -> Option<GroupId> {
        self.moving.as_ref().map(|m| m.target)
    }

    /// The group that owns `key` now; `None` only when there are no groups.
    pub fn group_of(&self, key: &[u8]) -> Option<GroupId> {
        let old = self.ring.group_of(key)?;
        match &self.moving {
            Some(m) if m.switched.contains(&old) && m.next.group_of(key) == Some(m.target) => {
                Some(m.target)
            }
            Some(_) | None => Some(old),
        }
    }

    /// The groups that hold keys, ascending (the old ring's, then the target once a
    /// source has switched): where searches, counts and scans go.
    pub fn owners(&self) -> &[GroupId] {
        &self.owners
    }

    /// Every group, the target included, ascending: where index definitions and
    /// FLUSHALL go, so that a target holds every index before it holds a key.
    pub fn all(&self) -> &[GroupId] {
        &self.all
    }
}

impl From<Ring> for Routing {
    fn from(ring: Ring) -> Routing {
        Routing::from_ring(ring, 0)
    }
}

/// The part of `key` that places it: its hash tag if it has a non-empty one, else the
/// whole key (Redis Cluster's rule).
pub fn hash_slot_key(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_follow_redis_cluster() {
        assert_eq!(hash_slot_key(b"{user1000}.following"), b"user1000");
        assert_eq!(hash_slot_key(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_slot_key(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_slot_key(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_slot_key(b"plain"), b"plain");
        assert_eq!(hash_slot_key(b"open{only"), b"open{only");
    }

    #[test]
    fn keys_with_one_tag_share_a_group() {
        let ring = Ring::new(0..6);
        for i in 0..200 {
            let tag = format!("user:{i}");
            let a = ring.group_of(format!("{{{tag}}}:cart").as_bytes());
            let b = ring.group_of(format!("profile:{{{tag}}}").as_bytes());
            assert_eq!(a, b);
        }
    }

    #[test]
    fn groups_get_even_shares() {
        let ring = Ring::new(0..3);
        let mut counts = [0usize; 3];
        let n = 60_000;
        for i in 0..n {
            let g = ring.group_of(format!("doc:{i}").as_bytes());
            counts[g.unwrap_or(0) as usize] += 1;
        }
        for c in counts {
            let share = c as f64 / n as f64;
            assert!((share - 1.0 / 3.0).abs() < 0.05, "{counts:?}");
        }
    }

    #[test]
    fn adding_a_group_moves_about_one_in_n_keys() {
        let before = Ring::new(0..3);
        let after = Ring::new(0..4);
        let n = 40_000;
        let mut moved = 0;
        for i in 0..n {
            let key = format!("k{i}");
            let (a, b) = (
                before.group_of(key.as_bytes()),
                after.group_of(key.as_bytes()),
            );
            if a != b {
                // A key only ever moves to the new group.
                assert_eq!(b, Some(3));
                moved += 1;
            }
        }
        let share = moved as f64 / n as f64;
        assert!((share - 0.25).abs() < 0.05, "moved {share}");
    }

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("doc:{i}").into_bytes()).collect()
    }

    #[test]
    fn a_target_with_no_source_switched_routes_as_the_old_ring() {
        let old = Ring::new(0..3);
        let moving = Routing::moving(0..3, 3, [], 1);
        for key in keys(5_000) {
            assert_eq!(moving.group_of(&key), old.group_of(&key));
        }
        assert_eq!(moving.owners(), &[0, 1, 2]);
        assert_eq!(moving.all(), &[0, 1, 2, 3]);
        assert_eq!(moving.target(), Some(3));
    }

    #[test]
    fn every_source_switched_routes_as_the_next_ring() {
        let next = Ring::new(0..4);
        let moving = Routing::moving(0..3, 3, 0..3, 4);
        for key in keys(5_000) {
            assert_eq!(moving.group_of(&key), next.group_of(&key));
        }
        assert_eq!(moving.owners(), &[0, 1, 2, 3]);
        assert_eq!(moving.epoch(), 4);
    }

    #[test]
    fn a_switched_source_moves_exactly_its_keys_for_the_target() {
        let (old, next) = (Ring::new(0..3), Ring::new(0..4));
        let moving = Routing::moving(0..3, 3, [1], 2);
        let mut moved = 0;
        for key in keys(20_000) {
            let expect = match (old.group_of(&key), next.group_of(&key)) {
                (Some(1), Some(3)) => Some(3),
                (before, _) => before,
            };
            moved += usize::from(expect == Some(3));
            assert_eq!(moving.group_of(&key), expect);
        }
        // About a quarter of group 1's third.
        assert!((800..2_600).contains(&moved), "{moved} keys moved");
        assert_eq!(moving.owners(), &[0, 1, 2, 3]);
    }

    #[test]
    fn a_router_never_goes_back_to_an_older_routing() {
        let copying = Routing::moving(0..3, 3, [], 1);
        let switched = Routing::moving(0..3, 3, [0], 2);
        assert!(switched.supersedes(&copying));
        assert!(!copying.supersedes(&switched));
        // The end of a move is written at the last switch's epoch, and taken.
        let last = Routing::moving(0..3, 3, 0..3, 4);
        let settled = Routing::stable(0..4, 4);
        assert!(settled.supersedes(&last));
        assert_eq!(settled.owners(), last.owners());
    }

    #[test]
    fn tagged_keys_stay_together_in_every_state() {
        let states = [
            Routing::stable(0..3, 0),
            Routing::moving(0..3, 3, [], 1),
            Routing::moving(0..3, 3, [0, 2], 3),
            Routing::moving(0..3, 3, 0..3, 4),
        ];
        for routing in &states {
            for i in 0..300 {
                let a = routing.group_of(format!("{{user:{i}}}:cart").as_bytes());
                let b = routing.group_of(format!("profile:{{user:{i}}}").as_bytes());
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn a_target_already_on_the_ring_or_foreign_sources_change_nothing() {
        let settled = Routing::moving(0..4, 3, 0..4, 7);
        assert_eq!(settled.target(), None);
        assert_eq!(settled.all(), &[0, 1, 2, 3]);
        let foreign = Routing::moving(0..3, 3, [9], 1);
        assert_eq!(foreign.owners(), &[0, 1, 2]);
        let old = Ring::new(0..3);
        for key in keys(1_000) {
            assert_eq!(settled.group_of(&key), Ring::new(0..4).group_of(&key));
            assert_eq!(foreign.group_of(&key), old.group_of(&key));
        }
        assert_eq!(Routing::stable([], 0).group_of(b"x"), None);
    }

    #[test]
    fn placement_is_the_same_for_every_ring_built_alike() {
        let a = Ring::new([2, 0, 1]);
        let b = Ring::new(0..3);
        for i in 0..1000 {
            let key = format!("key:{i}");
            assert_eq!(a.group_of(key.as_bytes()), b.group_of(key.as_bytes()));
        }
        assert_eq!(Ring::new([]).group_of(b"x"), None);
    }
}
