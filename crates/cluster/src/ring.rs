//! Which shard group owns a key: a consistent-hash ring (the `consistent_hash` crate)
//! over the groups, with virtual nodes so that adding a group moves about 1/N of the
//! keys and load stays even.
//!
//! A key with a `{hash tag}` — the part between its first `{` and the next `}`, when
//! that part is not empty — is placed by the tag alone, as in Redis Cluster, so
//! `{user:1}:cart` and `{user:1}:profile` live in one group and can share a
//! transaction.

use std::hash::{Hash, Hasher};

use consistent_hash::{Node, RingHash, StaticHashRing};
use shoal_raft::GroupId;

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
