//! The cluster map and the meta group that holds it.
//!
//! The meta group is a Raft group like a shard group (group id [`META`]), replicated on
//! at most three nodes in distinct zones ([`voters`]). Its state machine is an engine,
//! and the map is one hash in it ([`MAP_KEY`]), so that every change is a plain command
//! in the meta group's log:
//!
//! | field           | value (postcard)                   | written by                   |
//! |-----------------|------------------------------------|------------------------------|
//! | `node:<id>`     | [`NodeRecord`]: zone, addresses,   | each node, every second      |
//! |                 | when it last reported, the groups  | (its liveness)               |
//! |                 | it holds data of                   |                              |
//! | `index:<name>`  | [`IndexDefinition`]: generation,   | FT.CREATE (`HSETNX`),        |
//! |                 | the FT.CREATE arguments            | FT.DROPINDEX (`HDEL`)        |
//! | `group:<id>`    | [`GroupRecord`]: leader, voters,   | the group's leader, with its |
//! |                 | learners, term, committed          | node's report                |
//! |                 | membership                         |                              |
//! | `shape`         | [`ClusterShape`]: shard groups,    | the first node to find it    |
//! |                 | replication factor                 | missing (`HSETNX`)           |
//!
//! Users live in a hash of their own ([`USERS_KEY`]: name → the user's ACL rules, as
//! `ACL LIST` shows them), so that `ACL SETUSER` can change one user as a
//! read-modify-write guarded by that hash's version ([`Router::map_update_user`]) without
//! contending with the nodes' reports, which change the map every second.
//!
//! FT.CREATE commits to the map first and only then enters every shard group's log, so
//! a create that fails part-way is still decided: the map has it, and the meta
//! leader's [`Router::reconcile_indexes`] creates it on the groups that missed it.
//! A second FT.CREATE of the name is refused by the map, whichever groups have it.
//! FT.DROPINDEX takes the name out of the map first; a group the drop missed keeps a
//! definition whose generation the map no longer has, and the reconciler drops it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use shoal_engine::Reply;
use shoal_raft::{GroupId, NodeAddr, NodeId, Request};

use crate::layout::{Layout, LAYOUT_FIELD, RESHARD_KEY};
use crate::placement::spread;
use crate::reshard_record::{ReshardRecord, RESHARD_FIELD};
use crate::router::{error_text, Router};
use crate::shards::{Answer, Op};
use crate::wire::{ReadCall, ANY_EPOCH};

/// The meta group's id: far from the shard groups, which count up from 0.
pub const META: GroupId = u64::MAX;
/// The hash that holds the map in the meta group's keyspace.
pub const MAP_KEY: &[u8] = b"shoal:cluster-map";
/// Voters of the meta group: enough for one zone's loss, few enough to stay cheap.
pub const META_VOTERS: usize = 3;
/// A node that has not reported for this long is shown as down.
pub const NODE_DOWN_AFTER_MS: u64 = 5_000;

/// The hash of users in the meta group's keyspace.
pub const USERS_KEY: &[u8] = b"shoal:cluster-users";
/// The hash of index generations dropped with DD (field `<generation>:<name>`): when
/// the meta leader drops a leftover of one of these from a group that missed the
/// router's drop, it deletes the documents too, as the user asked.
pub const DD_DROPS_KEY: &[u8] = b"shoal:index-dd-drops";
/// Read-modify-write rounds `ACL SETUSER` tries before giving up (each lost one means
/// another router changed a user in between).
const USER_UPDATE_ROUNDS: usize = 16;
/// Read-then-delete rounds FT.DROPINDEX tries (each lost one means the name was dropped
/// and created again in between).
const INDEX_DROP_ROUNDS: usize = 8;

const NODE: &[u8] = b"node:";
pub(crate) const SHAPE: &[u8] = b"shape";
const GROUP: &[u8] = b"group:";
const INDEX: &[u8] = b"index:";

/// The meta group's voters among `members`: up to three, in distinct zones where the
/// cluster has them.
pub fn voters(members: &BTreeMap<NodeId, NodeAddr>) -> BTreeMap<NodeId, NodeAddr> {
    spread(members, META_VOTERS, 0)
        .into_iter()
        .filter_map(|id| members.get(&id).map(|a| (id, a.clone())))
        .collect()
}

/// What every node of a cluster must be started with alike. The ring is built from
/// the group count, so a router with another count sends a key to another group than
/// the rest of the cluster does (with fewer groups, an acknowledged write lands where
/// no other router looks for it); and repair keeps every group at the replication
/// factor of whichever node leads it, so a node with a lower one would remove
/// replicas. The map keeps the cluster's, and a node that differs stops
/// ([`ClusterShape::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterShape {
    pub groups: u64,
    pub replication_factor: u64,
}

impl ClusterShape {
    /// `Err` with what an operator must change when `self` (this node's flags) is not
    /// the cluster's `map` shape.
    pub fn check(&self, map: &ClusterShape) -> Result<(), String> {
        if self == map {
            return Ok(());
        }
        Err(format!(
            "this node was started with --groups {} --replication-factor {}, but the cluster has --groups {} --replication-factor {}: start it with the cluster's",
            self.groups, self.replication_factor, map.groups, map.replication_factor
        ))
    }

    /// Whether `map` shows a cluster of this shape: a fresh record of exactly the
    /// shard groups `0..groups`, each with `replication_factor` voters (every node's
    /// worth when there are fewer). Only then may a node write its shape to a map
    /// without one: a node started with other flags, first to get there, would
    /// otherwise make every rightly started node stop. Groups a reshard added count
    /// too, and need not be told apart: a map without a shape is a cluster's first
    /// seconds, and a reshard starts only in a cluster whose shape is written.
    pub fn seen_in(&self, map: &ClusterMap, now_ms: u64) -> bool {
        let shard: Vec<(&GroupId, &GroupRecord)> =
            map.groups.iter().filter(|(g, _)| **g != META).collect();
        let voters = usize::try_from(self.replication_factor)
            .unwrap_or(usize::MAX)
            .min(map.nodes.len());
        shard.len() as u64 == self.groups
            && shard.iter().enumerate().all(|(i, (g, r))| {
                **g == i as u64
                    && r.voters.len() == voters
                    && now_ms.saturating_sub(r.seen_ms) <= NODE_DOWN_AFTER_MS
            })
    }
}

/// What the map knows of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub addr: NodeAddr,
    /// When the node last reported, by its own clock (ms since the epoch).
    pub seen_ms: u64,
    /// The groups this node has a replica's data of (a log or a snapshot), members
    /// or not: a group's leader does not add a node back while it still holds a
    /// replica the group left behind ([`crate::repair`], [`crate::purge`]).
    pub holds: Vec<GroupId>,
}

/// A node's record as nodes before `holds` wrote it: read still, so that the map
/// stays whole while a cluster is upgraded one node at a time.
#[derive(Deserialize)]
struct NodeRecordV1 {
    addr: NodeAddr,
    seen_ms: u64,
}

/// A group's record as leaders before the committed membership wrote it.
#[derive(Deserialize)]
struct GroupRecordV1 {
    leader: NodeId,
    term: u64,
    voters: Vec<NodeId>,
    learners: Vec<NodeId>,
    seen_ms: u64,
}

impl NodeRecord {
    /// The record from its stored bytes, in this shape or the one before.
    pub fn decode(bytes: &[u8]) -> Option<NodeRecord> {
        if let Ok(record) = postcard::from_bytes::<NodeRecord>(bytes) {
            return Some(record);
        }
        let old = postcard::from_bytes::<NodeRecordV1>(bytes).ok()?;
        Some(NodeRecord {
            addr: old.addr,
            seen_ms: old.seen_ms,
            holds: Vec::new(),
        })
    }

    /// Whether it reported within [`NODE_DOWN_AFTER_MS`] of `now_ms`.
    pub fn alive(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.seen_ms) <= NODE_DOWN_AFTER_MS
    }
}

/// What the map knows of a shard group, as its leader last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub leader: NodeId,
    pub term: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// When the leader reported, by its clock (ms since the epoch).
    pub seen_ms: u64,
    /// The log index of the newest membership the leader knows committed (0: none),
    /// and its members: what tells a returning node that the group removed it
    /// ([`crate::purge`]). `voters` and `learners` may be a change still in flight.
    pub committed_index: u64,
    pub committed_members: Vec<NodeId>,
}

impl GroupRecord {
    /// The record from its stored bytes, in this shape or the one before (which
    /// says nothing of the committed membership: index 0, which erases nothing).
    pub fn decode(bytes: &[u8]) -> Option<GroupRecord> {
        if let Ok(record) = postcard::from_bytes::<GroupRecord>(bytes) {
            return Some(record);
        }
        let old = postcard::from_bytes::<GroupRecordV1>(bytes).ok()?;
        Some(GroupRecord {
            leader: old.leader,
            term: old.term,
            voters: old.voters,
            learners: old.learners,
            seen_ms: old.seen_ms,
            committed_index: 0,
            committed_members: Vec::new(),
        })
    }

    /// Every member, voters first.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(&self.learners).copied()
    }
}

/// One index definition in the map.
///
/// The generation tells this definition from any earlier one of the same name: the
/// router that created it drew it at random, and sends it with the create to every
/// group (`FT._CREATE`), which keeps it with the index. A group's index whose
/// generation the map does not have is a leftover (a drop or a create that only partly
/// reached the groups) that the meta leader takes away with a drop that names the
/// generation, so it never touches a definition made since it looked
/// ([`Router::reconcile_indexes`]). Generation 0 is an index made without one (before
/// generations, or by a plain FT.CREATE): left alone unless the map has the name with
/// another generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDefinition {
    pub generation: u64,
    /// The FT.CREATE arguments, after the command name.
    pub args: Vec<Vec<u8>>,
}

/// Marks the map's value format with generations. A value without it is the earlier
/// format, the bare arguments, which can never start with a 0 byte (postcard's length
/// of a list that always holds at least the index name).
const DEFINITION_FORMAT: u8 = 0;

impl IndexDefinition {
    fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut out = vec![DEFINITION_FORMAT];
        out.extend(postcard::to_allocvec(self)?);
        Ok(out)
    }

    fn decode(value: &[u8]) -> Option<IndexDefinition> {
        match value.split_first() {
            Some((&DEFINITION_FORMAT, rest)) => postcard::from_bytes(rest).ok(),
            Some(_) => postcard::from_bytes(value)
                .ok()
                .map(|args| IndexDefinition {
                    generation: 0,
                    args,
                }),
            None => None,
        }
    }
}

/// The map as read from the meta group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMap {
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    /// Shard groups as their leaders report them.
    pub groups: BTreeMap<GroupId, GroupRecord>,
    /// Index name → its definition.
    pub indexes: BTreeMap<String, IndexDefinition>,
    /// User name → its ACL rules ([`shoal_resp::acl::User::rules`]). Users the map does
    /// not have are as a fresh cluster has them (only `default`, unrestricted).
    pub users: BTreeMap<String, String>,
    /// The meta group's log index this map was read at: a cached copy is only
    /// replaced by one at least as new.
    pub applied: u64,
    /// What every node must be started with (`None`: a map no node wrote it to yet).
    pub shape: Option<ClusterShape>,
    /// The groups keys live on, once a reshard wrote them (`None`: the shape's
    /// `0..groups` at epoch 0, [`Layout::initial`]).
    pub layout: Option<Layout>,
    /// The reshard under way, if any (in a format this node knows).
    pub reshard: Option<ReshardRecord>,
}

impl ClusterMap {
    /// The map from `HGETALL`'s field/value pairs; fields it does not know are skipped
    /// (a newer node's), and so are values that do not decode.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> ClusterMap {
        let mut map = ClusterMap::default();
        for (field, value) in pairs {
            if let Some(id) = field.strip_prefix(NODE) {
                let id = std::str::from_utf8(id).ok().and_then(|s| s.parse().ok());
                if let (Some(id), Some(record)) = (id, NodeRecord::decode(&value)) {
                    map.nodes.insert(id, record);
                }
            } else if let Some(id) = field.strip_prefix(GROUP) {
                let id = std::str::from_utf8(id).ok().and_then(|s| s.parse().ok());
                let record = GroupRecord::decode(&value);
                if let (Some(id), Some(record)) = (id, record) {
                    // Two leaders of different terms may both have reported; the
                    // later term is the group as it is now.
                    let newer = map.groups.get(&id).is_none_or(|r| r.term <= record.term);
                    if newer {
                        map.groups.insert(id, record);
                    }
                }
            } else if field == SHAPE {
                map.shape = postcard::from_bytes(&value).ok();
            } else if let Some(name) = field.strip_prefix(INDEX) {
                if let Some(definition) = IndexDefinition::decode(&value) {
                    map.indexes
                        .insert(String::from_utf8_lossy(name).into_owned(), definition);
                }
            }
        }
        map
    }

    /// The cluster's shard groups: the layout's (a group being added included), or
    /// `0..initial` (the `--groups` every node starts with) in a cluster never
    /// resharded.
    pub fn shard_groups(&self, initial: u64) -> Vec<GroupId> {
        self.layout
            .as_ref()
            .map_or_else(|| (0..initial).collect(), Layout::all_groups)
    }

    /// Adds the resharding hash's field/value pairs ([`crate::layout::RESHARD_KEY`]):
    /// a layout in a format this node does not know is skipped.
    pub fn with_reshard(mut self, pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        for (field, value) in pairs {
            if field == LAYOUT_FIELD {
                self.layout = Layout::decode(&value);
            } else if field == RESHARD_FIELD {
                self.reshard = ReshardRecord::decode(&value);
            }
        }
        self
    }

    /// Adds the users hash's field/value pairs (name → rules); names and rules that
    /// are not UTF-8 are skipped.
    pub fn with_users(mut self, pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        for (name, rules) in pairs {
            if let (Ok(name), Ok(rules)) = (String::from_utf8(name), String::from_utf8(rules)) {
                self.users.insert(name, rules);
            }
        }
        self
    }
}

/// What `ACL SETUSER` / `ACL DELUSER` want done to a user, given its current rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    /// Store these rules.
    Set(String),
    /// Remove the user.
    Delete,
    /// Leave the map as it is (the user is already so, or there is nothing to delete).
    Keep,
}

fn node_field(id: NodeId) -> Vec<u8> {
    [NODE, id.to_string().as_bytes()].concat()
}

fn group_field(id: GroupId) -> Vec<u8> {
    [GROUP, id.to_string().as_bytes()].concat()
}

fn index_field(name: &str) -> Vec<u8> {
    [INDEX, name.as_bytes()].concat()
}

fn dd_drop_field(name: &str, generation: u64) -> Vec<u8> {
    format!("{generation}:{name}").into_bytes()
}

/// The `(name, generation)` of a [`DD_DROPS_KEY`] field.
fn parse_dd_drop_field(field: &[u8]) -> Option<(String, u64)> {
    let text = std::str::from_utf8(field).ok()?;
    let (generation, name) = text.split_once(':')?;
    Some((name.to_owned(), generation.parse().ok()?))
}

fn cmd(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

fn pairs(reply: Reply) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Reply::Map(pairs) = reply else {
        return Vec::new();
    };
    pairs
        .into_iter()
        .filter_map(|kv| match kv {
            (Reply::Bulk(k), Reply::Bulk(v)) => Some((k, v)),
            _ => None,
        })
        .collect()
}

/// `FT._GENERATIONS`'s reply (name, generation, name, generation, ...) as a map; `None`
/// for anything else (an error: a node that does not know the command yet).
fn generations(reply: &Reply) -> Option<BTreeMap<String, u64>> {
    let Reply::Array(items) = reply else {
        return None;
    };
    let text = |r: &Reply| match r {
        Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Simple(s) => Some(s.clone()),
        Reply::Ok
        | Reply::Error(_)
        | Reply::Int(_)
        | Reply::Null
        | Reply::Array(_)
        | Reply::Map(_)
        | Reply::Double(_)
        | Reply::Verbatim(_) => None,
    };
    items
        .chunks(2)
        .map(|pair| match pair {
            [name, generation] => Some((text(name)?, text(generation)?.parse().ok()?)),
            _ => None,
        })
        .collect()
}

/// `HSETNX`'s or `HDELIFEQ`'s count as a [`MapChange`].
fn map_change(reply: Reply) -> Result<MapChange, String> {
    match reply {
        Reply::Int(1) => Ok(MapChange::Changed),
        Reply::Int(_) => Ok(MapChange::Unchanged),
        Reply::Error(e) => Err(e),
        other @ (Reply::Ok
        | Reply::Simple(_)
        | Reply::Bulk(_)
        | Reply::Null
        | Reply::Array(_)
        | Reply::Map(_)
        | Reply::Double(_)
        | Reply::Verbatim(_)) => Err(format!("ERR meta group answered {other:?}")),
    }
}

/// What the map said to an index command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapChange {
    /// The map changed: the groups' "already exists" / "not found" is then our own
    /// change arriving late (the reconciler came first), not the client's error.
    Changed,
    /// The map was already so (FT.CREATE of an existing name, FT.DROPINDEX of a name
    /// the map never had).
    Unchanged,
}

impl Router {
    /// Reads the map on the meta group's leader (`stale_ok`: from this node's replica
    /// if it has one, as it is).
    pub async fn cluster_map(&self, now_ms: u64, stale_ok: bool) -> Result<ClusterMap, String> {
        let call = ReadCall {
            commands: vec![
                cmd(&[b"HGETALL", MAP_KEY]),
                cmd(&[b"HGETALL", USERS_KEY]),
                cmd(&[b"HGETALL", RESHARD_KEY]),
            ],
            resp3: false,
            now_ms,
            stale_ok,
            versions: Vec::new(),
            // The meta group never reshards.
            epoch: 0,
        };
        match self.shards().call(META, &Op::Read(call)).await {
            Ok(Answer::Read(answer)) => {
                // A refused read is an error, never an empty map: no users would mean
                // the built-in, unrestricted `default`.
                if let Some(Reply::Error(e)) =
                    answer.replies.iter().find(|r| matches!(r, Reply::Error(_)))
                {
                    return Err(e.clone());
                }
                let mut replies = answer.replies.into_iter();
                let map = ClusterMap::from_pairs(replies.next().map(pairs).unwrap_or_default());
                let map = map.with_users(replies.next().map(pairs).unwrap_or_default());
                let mut map = map.with_reshard(replies.next().map(pairs).unwrap_or_default());
                map.applied = answer.applied;
                Ok(map)
            }
            Ok(Answer::Write(_) | Answer::Search(_) | Answer::Aggregate(_)) => {
                Err("ERR meta group: unexpected answer".into())
            }
            Err(e) => Err(error_text(&e)),
        }
    }

    /// Records that node `id` is up, at `addr`, now, holding data of the groups
    /// `holds`, with the groups it leads.
    pub async fn report_node(
        &self,
        id: NodeId,
        addr: &NodeAddr,
        holds: &[GroupId],
        led: &[(GroupId, GroupRecord)],
        now_ms: u64,
    ) -> Result<(), String> {
        let record = NodeRecord {
            addr: addr.clone(),
            seen_ms: now_ms,
            holds: holds.to_vec(),
        };
        let value = postcard::to_allocvec(&record).map_err(|e| format!("ERR {e}"))?;
        let mut command = vec![b"HSET".to_vec(), MAP_KEY.to_vec(), node_field(id), value];
        for (group, record) in led {
            command.push(group_field(*group));
            command.push(postcard::to_allocvec(record).map_err(|e| format!("ERR {e}"))?);
        }
        let reply = self.group_write(META, command, now_ms).await?;
        if let Reply::Error(e) = reply {
            return Err(e);
        }
        Ok(())
    }

    /// Writes `shape` to the map unless it has one (the first node to get there
    /// decides; a node with another then stops).
    pub async fn claim_shape(&self, shape: &ClusterShape, now_ms: u64) -> Result<(), String> {
        let value = postcard::to_allocvec(shape).map_err(|e| format!("ERR {e}"))?;
        let command = vec![b"HSETNX".to_vec(), MAP_KEY.to_vec(), SHAPE.to_vec(), value];
        // 1: ours; 0: a node was first, and the next map read checks against it.
        map_change(self.group_write(META, command, now_ms).await?).map(|_| ())
    }

    /// Writes `layout` to the map: every router installs its routing at its next map
    /// read, and every node opens its groups. The coordinator's write (step 5 of
    /// docs/resharding.md guards it by the hash's version, so that a deposed
    /// coordinator's late write is refused; until then nothing but tests calls it).
    pub async fn map_set_layout(&self, layout: &Layout, now_ms: u64) -> Result<(), String> {
        let value = layout.encode().map_err(|e| format!("ERR {e}"))?;
        let command = vec![
            b"HSET".to_vec(),
            RESHARD_KEY.to_vec(),
            LAYOUT_FIELD.to_vec(),
            value,
        ];
        map_change(self.group_write(META, command, now_ms).await?).map(|_| ())
    }

    /// Writes `record` to the map, as [`Router::map_set_layout`] writes a layout: the
    /// coordinator's write, guarded once step 5 of docs/resharding.md builds it; until
    /// then nothing but tests calls it.
    pub async fn map_set_reshard(&self, record: &ReshardRecord, now_ms: u64) -> Result<(), String> {
        let value = record.encode().map_err(|e| format!("ERR {e}"))?;
        let command = vec![
            b"HSET".to_vec(),
            RESHARD_KEY.to_vec(),
            RESHARD_FIELD.to_vec(),
            value,
        ];
        map_change(self.group_write(META, command, now_ms).await?).map(|_| ())
    }

    /// Changes one user: reads its rules and the users hash's version on the meta
    /// leader, asks `change` what to store, and writes that guarded by the version, so
    /// that two routers changing users at once do not lose either change (the one that
    /// loses the race reads again). `change` sees `None` for a user the map lacks.
    /// Returns what was done.
    pub async fn map_update_user(
        &self,
        name: &str,
        change: impl Fn(Option<&str>) -> Result<UserChange, String>,
        now_ms: u64,
    ) -> Result<UserChange, String> {
        for _ in 0..USER_UPDATE_ROUNDS {
            let call = ReadCall {
                commands: vec![cmd(&[b"HGET", USERS_KEY, name.as_bytes()])],
                resp3: false,
                now_ms,
                stale_ok: false,
                versions: vec![USERS_KEY.to_vec()],
                // The meta group never reshards.
                epoch: 0,
            };
            let (current, version) = match self.shards().call(META, &Op::Read(call)).await {
                Ok(Answer::Read(answer)) => {
                    let current = match answer.replies.into_iter().next() {
                        Some(Reply::Bulk(rules)) => {
                            Some(String::from_utf8_lossy(&rules).into_owned())
                        }
                        Some(Reply::Error(e)) => return Err(e),
                        Some(_) | None => None,
                    };
                    (current, answer.versions.into_iter().next().flatten())
                }
                Ok(Answer::Write(_) | Answer::Search(_) | Answer::Aggregate(_)) => {
                    return Err("ERR meta group: unexpected answer".into())
                }
                Err(e) => return Err(error_text(&e)),
            };
            let decided = change(current.as_deref())?;
            let command = match &decided {
                UserChange::Set(rules) => vec![
                    b"HSET".to_vec(),
                    USERS_KEY.to_vec(),
                    name.as_bytes().to_vec(),
                    rules.as_bytes().to_vec(),
                ],
                UserChange::Delete => {
                    vec![
                        b"HDEL".to_vec(),
                        USERS_KEY.to_vec(),
                        name.as_bytes().to_vec(),
                    ]
                }
                UserChange::Keep => return Ok(decided),
            };
            let request = Request {
                now_ms,
                commands: vec![command],
                resp3: false,
                guard: vec![(USERS_KEY.to_vec(), version)],
            };
            match self.shards().call(META, &Op::Write(request)).await {
                // Another router changed a user since the read: read again.
                Ok(Answer::Write(response)) if response.aborted => continue,
                Ok(Answer::Write(response)) => {
                    if let Some(Reply::Error(e)) = response.replies.into_iter().next() {
                        return Err(e);
                    }
                    return Ok(decided);
                }
                Ok(Answer::Read(_) | Answer::Search(_) | Answer::Aggregate(_)) => {
                    return Err("ERR meta group: unexpected answer".into())
                }
                Err(e) => return Err(error_text(&e)),
            }
        }
        Err("TRYAGAIN the users changed under every attempt to change this one; try again".into())
    }

    /// Puts an index definition in the map unless the name is taken.
    pub async fn map_create_index(
        &self,
        name: &str,
        definition: &IndexDefinition,
        now_ms: u64,
    ) -> Result<MapChange, String> {
        let value = definition.encode().map_err(|e| format!("ERR {e}"))?;
        let reply = self
            .group_write(
                META,
                vec![
                    b"HSETNX".to_vec(),
                    MAP_KEY.to_vec(),
                    index_field(name),
                    value,
                ],
                now_ms,
            )
            .await?;
        map_change(reply)
    }

    /// Takes the map's definition of `name` out of the map, whichever it is, and says
    /// which one it took (`None`: the map has no such name). Read, then deleted only if
    /// unchanged, so the caller knows the generation to drop from the groups, and a
    /// definition created in between is never the one taken.
    ///
    /// With `dd`, the generation is first marked in [`DD_DROPS_KEY`], before it leaves
    /// the map: the meta leader, which drops from the groups whatever the map no longer
    /// has, may come first on some group (or finish a drop a group missed), and must
    /// delete the documents there as well. The caller takes the mark back
    /// ([`Router::map_forget_dd_drop`]) once every group dropped it.
    pub async fn map_drop_index(
        &self,
        name: &str,
        dd: bool,
        now_ms: u64,
    ) -> Result<Option<IndexDefinition>, String> {
        for _ in 0..INDEX_DROP_ROUNDS {
            let Some(value) = self.map_field(&index_field(name), now_ms).await? else {
                return Ok(None);
            };
            // One that does not decode is taken out all the same; the groups then drop
            // a generation-0 index of the name, if any.
            let definition = IndexDefinition::decode(&value).unwrap_or(IndexDefinition {
                generation: 0,
                args: Vec::new(),
            });
            if dd {
                let mark = vec![
                    b"HSET".to_vec(),
                    DD_DROPS_KEY.to_vec(),
                    dd_drop_field(name, definition.generation),
                    b"1".to_vec(),
                ];
                if let Reply::Error(e) = self.group_write(META, mark, now_ms).await? {
                    return Err(e);
                }
            }
            if self.map_delete_value(name, &value, now_ms).await? {
                return Ok(Some(definition));
            }
            // Lost to another drop or create: a mark left behind names a generation
            // the map no longer has, and the meta leader clears it.
        }
        Err("TRYAGAIN the index was created again under every attempt to drop it; try again".into())
    }

    /// Takes `definition` out of the map if it is still the map's definition of `name`
    /// (a create every group refused); whether it did.
    pub async fn map_remove_definition(
        &self,
        name: &str,
        definition: &IndexDefinition,
        now_ms: u64,
    ) -> Result<bool, String> {
        let value = definition.encode().map_err(|e| format!("ERR {e}"))?;
        self.map_delete_value(name, &value, now_ms).await
    }

    /// Clears the DD mark of `name`'s `generation`: every group dropped it.
    pub async fn map_forget_dd_drop(
        &self,
        name: &str,
        generation: u64,
        now_ms: u64,
    ) -> Result<(), String> {
        let command = vec![
            b"HDEL".to_vec(),
            DD_DROPS_KEY.to_vec(),
            dd_drop_field(name, generation),
        ];
        match self.group_write(META, command, now_ms).await? {
            Reply::Error(e) => Err(e),
            Reply::Ok
            | Reply::Simple(_)
            | Reply::Int(_)
            | Reply::Bulk(_)
            | Reply::Null
            | Reply::Array(_)
            | Reply::Map(_)
            | Reply::Double(_)
            | Reply::Verbatim(_) => Ok(()),
        }
    }

    /// The generations marked as dropped with DD.
    async fn dd_drops(&self, now_ms: u64) -> Result<BTreeSet<(String, u64)>, String> {
        match self
            .group_read(META, cmd(&[b"HKEYS", DD_DROPS_KEY]), now_ms)
            .await?
        {
            Reply::Array(fields) => Ok(fields
                .iter()
                .filter_map(|f| match f {
                    Reply::Bulk(b) => parse_dd_drop_field(b),
                    other @ (Reply::Ok
                    | Reply::Simple(_)
                    | Reply::Int(_)
                    | Reply::Null
                    | Reply::Error(_)
                    | Reply::Array(_)
                    | Reply::Map(_)
                    | Reply::Double(_)
                    | Reply::Verbatim(_)) => {
                        tracing::warn!(field = ?other, "unexpected DD mark");
                        None
                    }
                })
                .collect()),
            other @ (Reply::Ok
            | Reply::Simple(_)
            | Reply::Error(_)
            | Reply::Int(_)
            | Reply::Bulk(_)
            | Reply::Null
            | Reply::Map(_)
            | Reply::Double(_)
            | Reply::Verbatim(_)) => Err(format!("ERR meta group answered {other:?}")),
        }
    }

    async fn map_delete_value(
        &self,
        name: &str,
        value: &[u8],
        now_ms: u64,
    ) -> Result<bool, String> {
        let command = vec![
            b"HDELIFEQ".to_vec(),
            MAP_KEY.to_vec(),
            index_field(name),
            value.to_vec(),
        ];
        let reply = self.group_write(META, command, now_ms).await?;
        Ok(map_change(reply)? == MapChange::Changed)
    }

    /// One field of the map, read on the meta leader.
    async fn map_field(&self, field: &[u8], now_ms: u64) -> Result<Option<Vec<u8>>, String> {
        match self
            .group_read(META, cmd(&[b"HGET", MAP_KEY, field]), now_ms)
            .await?
        {
            Reply::Bulk(value) => Ok(Some(value)),
            Reply::Null => Ok(None),
            other @ (Reply::Ok
            | Reply::Simple(_)
            | Reply::Error(_)
            | Reply::Int(_)
            | Reply::Array(_)
            | Reply::Map(_)
            | Reply::Double(_)
            | Reply::Verbatim(_)) => Err(format!("ERR meta group answered {other:?}")),
        }
    }

    /// Makes every shard group's indexes what the map says: drops the leftovers of
    /// definitions the map no longer has, then creates the map's indexes on the groups
    /// that lack them (what finishes an FT.CREATE or FT.DROPINDEX that reached the map
    /// but not every group). Returns how many drops and creates it sent.
    ///
    /// Reads happen in this order: the map (`before`), each group's indexes with their
    /// generations, the map again (`after`).
    ///
    /// | a group has          | `after` has the name | done                          |
    /// |----------------------|----------------------|-------------------------------|
    /// | generation g ≠ 0     | not, or not with g   | drop if still g (a leftover:  |
    /// |                      |                      | g left the map for good)      |
    /// | generation 0         | not                  | nothing (made without the     |
    /// |                      |                      | map; adopted by no one)       |
    /// | generation 0         | with g ≠ 0           | drop if still 0               |
    /// | the generation       | with it              | nothing                       |
    /// | no such index        | (`before` has it)    | create it, keeping whatever   |
    /// |                      |                      | came since                    |
    ///
    /// A generation is drawn at random once per FT.CREATE and reaches the groups only
    /// after the map has it, so one missing from `after` never comes back: the drop is
    /// safe whatever was created since. An index missing from a group's list was in
    /// `before`; if an FT.DROPINDEX came in between, the create here would bring it
    /// back, so after each create the map is read again and the create taken back (by
    /// its generation) unless the map still has it.
    pub async fn reconcile_indexes(&self, now_ms: u64) -> Result<usize, String> {
        let routing = self.routing();
        self.reconcile_groups(routing.all(), true, now_ms).await
    }

    /// [`Router::reconcile_indexes`] on `groups` only (a reshard's target before the
    /// routing names it); `every` when they are all the routing's groups, the one case
    /// where a DD mark no group holds may be cleared.
    pub(crate) async fn reconcile_groups(
        &self,
        groups: &[GroupId],
        every: bool,
        now_ms: u64,
    ) -> Result<usize, String> {
        let before = self.cluster_map(now_ms, false).await?;
        let mut listed = BTreeMap::new();
        for &group in groups {
            let answer = self
                .group_read(group, cmd(&[b"FT._GENERATIONS"]), now_ms)
                .await
                .ok()
                .as_ref()
                .and_then(generations);
            // A group that cannot answer now is looked at next round.
            if let Some(answer) = answer {
                listed.insert(group, answer);
            }
        }
        if listed.values().all(BTreeMap::is_empty) && before.indexes.is_empty() {
            return Ok(0);
        }
        let after = self.cluster_map(now_ms, false).await?;
        // Read after `after`: a router marks a DD drop before the map loses the
        // generation, so every generation `after` lacks because of one is marked here.
        let dd_drops = self.dd_drops(now_ms).await?;
        let mut sent = 0;
        for (&group, indexes) in &mut listed {
            let stale: Vec<(String, u64)> = indexes
                .iter()
                .filter(|&(name, &g)| match after.indexes.get(name) {
                    Some(definition) => definition.generation != g,
                    None => g != 0,
                })
                .map(|(name, &g)| (name.clone(), g))
                .collect();
            for (name, g) in stale {
                let dd = dd_drops.contains(&(name.clone(), g));
                let dropped = self.drop_generation(group, &name, g, dd, now_ms).await;
                tracing::info!(group, index = %name, generation = g, dd, reply = ?dropped, "dropped a leftover index definition");
                sent += 1;
                if matches!(dropped, Ok(Reply::Ok)) {
                    indexes.remove(&name);
                }
            }
            for (name, definition) in &before.indexes {
                // Changed in between: the next round sees the map as it is then.
                if indexes.contains_key(name) || after.indexes.get(name) != Some(definition) {
                    continue;
                }
                let mut create = vec![
                    b"FT._CREATE".to_vec(),
                    definition.generation.to_string().into_bytes(),
                    b"KEEP".to_vec(),
                ];
                create.extend(definition.args.iter().cloned());
                let created = self.group_write(group, create, now_ms).await;
                tracing::info!(group, index = %name, generation = definition.generation, reply = ?created, "reconciled an index missing from a group");
                sent += 1;
                // Dropped meanwhile, or dropped and created again: take this one back
                // (the next round creates the current one).
                let still = self.cluster_map(now_ms, false).await?;
                if still.indexes.get(name) != Some(definition) {
                    let _ = self
                        .drop_generation(group, name, definition.generation, false, now_ms)
                        .await;
                }
            }
        }
        // A mark is done with once no group has its generation and the map does not
        // have it either; known only when every group answered.
        if every && listed.len() == groups.len() {
            for (name, g) in &dd_drops {
                let current = after.indexes.get(name).map(|d| d.generation) == Some(*g);
                let held = listed.values().any(|indexes| indexes.get(name) == Some(g));
                if !current && !held {
                    if let Err(e) = self.map_forget_dd_drop(name, *g, now_ms).await {
                        tracing::debug!(index = %name, error = %e, "could not clear a DD mark");
                    }
                }
            }
        }
        Ok(sent)
    }

    /// Drops `name` on `group` if it still has generation `generation` (`OK` if it did),
    /// with its documents when `dd`.
    async fn drop_generation(
        &self,
        group: GroupId,
        name: &str,
        generation: u64,
        dd: bool,
        now_ms: u64,
    ) -> Result<Reply, String> {
        let mut drop = vec![
            b"FT._DROPIF".to_vec(),
            name.as_bytes().to_vec(),
            generation.to_string().into_bytes(),
        ];
        if dd {
            drop.push(b"DD".to_vec());
        }
        self.group_write(group, drop, now_ms).await
    }

    /// One read command, linearized on `group`'s leader, and its reply; an error reply
    /// is `Err`.
    pub(crate) async fn group_read(
        &self,
        group: GroupId,
        command: Vec<Vec<u8>>,
        now_ms: u64,
    ) -> Result<Reply, String> {
        let call = ReadCall {
            commands: vec![command],
            resp3: false,
            now_ms,
            stale_ok: false,
            versions: Vec::new(),
            // Index metadata, the same on every group whatever the routing.
            epoch: ANY_EPOCH,
        };
        match self.shards().call(group, &Op::Read(call)).await {
            Ok(Answer::Read(answer)) => match answer.replies.into_iter().next() {
                Some(Reply::Error(e)) => Err(e),
                Some(reply) => Ok(reply),
                None => Err(format!("ERR shard group {group}: no answer")),
            },
            Ok(Answer::Write(_) | Answer::Search(_) | Answer::Aggregate(_)) => {
                Err(format!("ERR shard group {group}: unexpected answer"))
            }
            Err(e) => Err(error_text(&e)),
        }
    }

    /// One command as one log entry of `group` (the meta group's or a shard group's),
    /// and its reply.
    pub(crate) async fn group_write(
        &self,
        group: GroupId,
        command: Vec<Vec<u8>>,
        now_ms: u64,
    ) -> Result<Reply, String> {
        let request = Request {
            now_ms,
            commands: vec![command],
            resp3: false,
            guard: Vec::new(),
        };
        match self.shards().call(group, &Op::Write(request)).await {
            Ok(Answer::Write(response)) => {
                Ok(response.replies.into_iter().next().unwrap_or(Reply::Null))
            }
            Ok(Answer::Read(_) | Answer::Search(_) | Answer::Aggregate(_)) => {
                Err(format!("ERR shard group {group}: unexpected answer"))
            }
            Err(e) => Err(error_text(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(zone: &str, port: u16) -> NodeAddr {
        NodeAddr {
            zone: zone.into(),
            raft: format!("127.0.0.1:{port}"),
            resp: format!("127.0.0.1:{}", port + 1),
        }
    }

    #[test]
    fn a_map_has_a_layout_only_when_one_in_a_known_format_was_written() {
        let layout = Layout {
            epoch: 2,
            groups: vec![0, 1, 2],
            moving: Some(crate::layout::Moving {
                target: 3,
                switched: Vec::new(),
            }),
        };
        let value = layout.encode().unwrap();
        let map = ClusterMap::default().with_reshard([(LAYOUT_FIELD.to_vec(), value.clone())]);
        assert_eq!(map.layout, Some(layout));
        // Today's clusters: no layout, the shape's groups at epoch 0.
        assert_eq!(ClusterMap::default().with_reshard([]).layout, None);
        // A later node's format, or another field of the hash: skipped.
        let mut later = value;
        later[0] = 7;
        let map = ClusterMap::default().with_reshard([
            (LAYOUT_FIELD.to_vec(), later),
            (RESHARD_FIELD.to_vec(), vec![0]),
            (b"other".to_vec(), vec![0]),
        ]);
        assert_eq!(map.layout, None);
        assert_eq!(map.reshard, None, "a record that does not decode");
        let record = ReshardRecord {
            target: 3,
            members: vec![1, 2, 3],
            phase: crate::reshard_record::Phase::Copying,
            run: 1,
            started_ms: 5,
            progress: BTreeMap::new(),
        };
        let map = ClusterMap::default()
            .with_reshard([(RESHARD_FIELD.to_vec(), record.encode().unwrap())]);
        assert_eq!(map.reshard, Some(record));
        assert_eq!(map.layout, None, "a record alone moves no key");
    }

    #[test]
    fn the_shape_reads_back_and_a_node_started_otherwise_is_told_what_to_change() {
        let shape = ClusterShape {
            groups: 3,
            replication_factor: 3,
        };
        let value = postcard::to_allocvec(&shape).unwrap_or_default();
        let map = ClusterMap::from_pairs([(SHAPE.to_vec(), value)]);
        assert_eq!(map.shape, Some(shape));
        assert!(ClusterMap::from_pairs([]).shape.is_none());
        assert_eq!(shape.check(&shape), Ok(()));
        let fewer = ClusterShape { groups: 2, ..shape };
        assert_eq!(
            fewer.check(&shape),
            Err("this node was started with --groups 2 --replication-factor 3, but the cluster has --groups 3 --replication-factor 3: start it with the cluster's".into())
        );
        let single = ClusterShape {
            replication_factor: 1,
            ..shape
        };
        assert!(single.check(&shape).is_err());

        // Only a map that shows the shape lets a node write it there.
        let record = |voters: Vec<NodeId>| GroupRecord {
            leader: voters[0],
            term: 1,
            voters: voters.clone(),
            learners: Vec::new(),
            seen_ms: 1_000,
            committed_index: 1,
            committed_members: voters,
        };
        let mut map = ClusterMap::default();
        for id in 1..=4u16 {
            map.nodes.insert(
                u64::from(id),
                NodeRecord {
                    addr: addr("a", 7000 + id),
                    seen_ms: 1_000,
                    holds: Vec::new(),
                },
            );
        }
        for g in 0..3 {
            map.groups.insert(g, record(vec![1, 2, 3]));
        }
        map.groups.insert(META, record(vec![1, 2, 3]));
        assert!(shape.seen_in(&map, 1_500));
        assert!(!shape.seen_in(&map, 9_000), "records gone stale");
        assert!(!fewer.seen_in(&map, 1_500), "three groups report, not two");
        assert!(!single.seen_in(&map, 1_500), "three voters, not one");
        let four = ClusterShape { groups: 4, ..shape };
        assert!(!four.seen_in(&map, 1_500), "group 3 has no leader");
        map.groups.remove(&1);
        assert!(!shape.seen_in(&map, 1_500), "group 1 has not reported yet");
    }

    #[test]
    fn records_in_the_shape_before_holds_and_the_committed_membership_still_read() {
        // postcard writes a struct as its fields in order: a tuple is the old shape.
        let node = postcard::to_allocvec(&(addr("c", 7002), 42u64)).unwrap_or_default();
        let group = postcard::to_allocvec(&(3u64, 7u64, vec![1u64, 2, 3], Vec::<u64>::new(), 9u64))
            .unwrap_or_default();
        let map = ClusterMap::from_pairs([(node_field(3), node), (group_field(0), group)]);
        assert_eq!(map.nodes[&3].addr, addr("c", 7002));
        assert!(map.nodes[&3].holds.is_empty());
        let g = &map.groups[&0];
        assert_eq!((g.leader, g.term, g.seen_ms), (3, 7, 9));
        assert_eq!(g.voters, vec![1, 2, 3]);
        assert_eq!((g.committed_index, g.committed_members.len()), (0, 0));
    }

    #[test]
    fn the_map_reads_back_what_was_written_and_skips_what_it_does_not_know() {
        let record = NodeRecord {
            addr: addr("b", 7000),
            seen_ms: 42,
            holds: vec![0, 2, META],
        };
        let args: Vec<Vec<u8>> = vec![
            b"idx".to_vec(),
            b"SCHEMA".to_vec(),
            b"t".to_vec(),
            b"TAG".to_vec(),
        ];
        let map = ClusterMap::from_pairs([
            (
                node_field(2),
                postcard::to_allocvec(&record).unwrap_or_default(),
            ),
            (
                index_field("idx"),
                postcard::to_allocvec(&args).unwrap_or_default(),
            ),
            (b"node:x".to_vec(), b"?".to_vec()),
            (b"future:thing".to_vec(), b"1".to_vec()),
            (index_field("broken"), vec![0xff; 3]),
            (index_field("broken2"), vec![DEFINITION_FORMAT, 0xff]),
            (index_field("empty"), Vec::new()),
            (
                index_field("gen"),
                IndexDefinition {
                    generation: 77,
                    args: args.clone(),
                }
                .encode()
                .unwrap_or_default(),
            ),
        ]);
        assert_eq!(map.nodes.len(), 1);
        assert_eq!(map.nodes[&2], record);
        assert_eq!(map.indexes.len(), 2);
        // The earlier format, bare arguments, reads as generation 0.
        assert_eq!(
            map.indexes["idx"],
            IndexDefinition {
                generation: 0,
                args: args.clone()
            }
        );
        assert_eq!(map.indexes["gen"].generation, 77);
        assert_eq!(map.indexes["gen"].args, args);
        assert!(record.alive(42 + NODE_DOWN_AFTER_MS));
        assert!(!record.alive(43 + NODE_DOWN_AFTER_MS));
    }

    #[test]
    fn generations_read_from_a_group_reply() {
        let reply = Reply::Array(vec![
            Reply::bulk("a"),
            Reply::bulk("5"),
            Reply::bulk("b"),
            Reply::bulk("0"),
        ]);
        let read = generations(&reply).unwrap_or_default();
        assert_eq!(
            read.into_iter().collect::<Vec<_>>(),
            vec![("a".into(), 5), ("b".into(), 0)]
        );
        assert_eq!(
            generations(&Reply::Array(Vec::new())),
            Some(BTreeMap::new())
        );
        assert_eq!(
            generations(&Reply::Error("ERR unknown command".into())),
            None
        );
        assert_eq!(generations(&Reply::Array(vec![Reply::bulk("a")])), None);
        let bad = Reply::Array(vec![Reply::bulk("a"), Reply::bulk("x")]);
        assert_eq!(generations(&bad), None);
    }

    #[test]
    fn dd_marks_name_the_generation_and_keep_colons_in_names() {
        let field = dd_drop_field("a:b", 42);
        assert_eq!(field, b"42:a:b");
        assert_eq!(parse_dd_drop_field(&field), Some(("a:b".into(), 42)));
        assert_eq!(parse_dd_drop_field(b"x:idx"), None);
        assert_eq!(parse_dd_drop_field(b"idx"), None);
    }

    #[test]
    fn meta_voters_are_three_nodes_in_distinct_zones() {
        let members: BTreeMap<NodeId, NodeAddr> = [
            (1, addr("a", 7000)),
            (2, addr("a", 7010)),
            (3, addr("b", 7020)),
            (4, addr("c", 7030)),
            (5, addr("c", 7040)),
        ]
        .into_iter()
        .collect();
        let v = voters(&members);
        assert_eq!(v.keys().copied().collect::<Vec<_>>(), vec![1, 3, 4]);
        let one: BTreeMap<NodeId, NodeAddr> = [(9, addr("a", 7000))].into_iter().collect();
        assert_eq!(voters(&one).len(), 1);
    }
}
