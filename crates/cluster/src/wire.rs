//! What travels in `proto/shard.proto`'s payloads: a router's calls and a shard's
//! answers, serialized with postcard (as the Raft transport does).

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use shoal_raft::{GroupError, GroupId, NodeId};

/// Reads for one group, answered together on its leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadCall {
    pub commands: Vec<Vec<Vec<u8>>>,
    pub resp3: bool,
    pub now_ms: u64,
    /// Answer from the receiving replica as it is, leader or not (`READONLY`).
    pub stale_ok: bool,
    /// Keys whose versions to report too (WATCH), read at the same point.
    pub versions: Vec<Vec<u8>>,
    /// The epoch of the routing the call was planned by: a group whose floor is above
    /// it refuses the call ([`ShardError::StaleMap`]). New fields go last (see
    /// [`decode_call`]).
    pub epoch: u64,
}

/// A [`ReadCall`]'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadAnswer {
    pub replies: Vec<shoal_engine::Reply>,
    pub versions: Vec<Option<u64>>,
    /// The log index the answering replica had applied: how far another replica must
    /// get to include everything these replies saw.
    pub applied: u64,
}

/// One group's part of an FT.SEARCH (`args` without the command name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchCall {
    /// Not to be changed once planned without clearing `prepared`, which was parsed
    /// from them and is what a part on this node runs.
    pub args: Vec<Vec<u8>>,
    pub resp3: bool,
    pub now_ms: u64,
    /// The first this many hits in order (offset + num of the whole query).
    pub window: usize,
    pub stale_ok: bool,
    /// As [`ReadCall::epoch`].
    pub epoch: u64,
    /// The arguments as the router parsed them; never sent: a peer parses `args`.
    #[serde(skip)]
    pub prepared: Prepared,
}

/// An FT.SEARCH parsed once by the router that plans it, for every part it then runs
/// on its own replicas (`shoal_engine::PreparedSearch`); `None` where it did not parse
/// (each part then gives the engine's error).
#[derive(Debug, Clone, Default)]
pub struct Prepared(pub Option<std::sync::Arc<shoal_engine::PreparedSearch>>);

impl Prepared {
    pub fn of(request: shoal_query::SearchRequest) -> Self {
        Prepared(Some(std::sync::Arc::new(
            shoal_engine::PreparedSearch::from_request(request),
        )))
    }
}

/// Equal always: a call's `args` say everything it holds, and are compared.
impl PartialEq for Prepared {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Prepared {}

/// One group's part of an FT.AGGREGATE (`args` without the command name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateCall {
    pub args: Vec<Vec<u8>>,
    pub now_ms: u64,
    pub stale_ok: bool,
    /// As [`ReadCall::epoch`].
    pub epoch: u64,
}

/// The epoch of a read that does not depend on where keys live (index metadata): no
/// group refuses it.
pub const ANY_EPOCH: u64 = u64::MAX;

/// The calls as a node of the previous release sends them: without the epoch, which
/// they are read with as 0 (a cluster that has never resharded, the only kind such a
/// node can be in, is at epoch 0 everywhere).
mod before_epochs {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    pub struct ReadCall {
        pub commands: Vec<Vec<Vec<u8>>>,
        pub resp3: bool,
        pub now_ms: u64,
        pub stale_ok: bool,
        pub versions: Vec<Vec<u8>>,
    }

    #[derive(Debug, Deserialize)]
    pub struct SearchCall {
        pub args: Vec<Vec<u8>>,
        pub resp3: bool,
        pub now_ms: u64,
        pub window: usize,
        pub stale_ok: bool,
    }

    #[derive(Debug, Deserialize)]
    pub struct AggregateCall {
        pub args: Vec<Vec<u8>>,
        pub now_ms: u64,
        pub stale_ok: bool,
    }
}

impl From<before_epochs::ReadCall> for ReadCall {
    fn from(c: before_epochs::ReadCall) -> Self {
        ReadCall {
            commands: c.commands,
            resp3: c.resp3,
            now_ms: c.now_ms,
            stale_ok: c.stale_ok,
            versions: c.versions,
            epoch: 0,
        }
    }
}

impl From<before_epochs::SearchCall> for SearchCall {
    fn from(c: before_epochs::SearchCall) -> Self {
        SearchCall {
            args: c.args,
            resp3: c.resp3,
            now_ms: c.now_ms,
            window: c.window,
            stale_ok: c.stale_ok,
            epoch: 0,
            prepared: Prepared::default(),
        }
    }
}

impl From<before_epochs::AggregateCall> for AggregateCall {
    fn from(c: before_epochs::AggregateCall) -> Self {
        AggregateCall {
            args: c.args,
            now_ms: c.now_ms,
            stale_ok: c.stale_ok,
            epoch: 0,
        }
    }
}

/// A call in this release's shape, or else in the previous one's. Postcard has no
/// optional trailing fields: a payload without the last field fails to decode as the
/// new shape (it ends early), and one with it is what this release sends; a node of
/// the previous release reads a new payload by ignoring the bytes after its fields.
pub fn decode_call<T, Before>(bytes: &[u8]) -> Result<T, ShardError>
where
    T: DeserializeOwned,
    Before: DeserializeOwned + Into<T>,
{
    decode::<T>(bytes).or_else(|e| decode::<Before>(bytes).map(Into::into).map_err(|_| e))
}

pub fn decode_read(bytes: &[u8]) -> Result<ReadCall, ShardError> {
    decode_call::<ReadCall, before_epochs::ReadCall>(bytes)
}

pub fn decode_search(bytes: &[u8]) -> Result<SearchCall, ShardError> {
    decode_call::<SearchCall, before_epochs::SearchCall>(bytes)
}

pub fn decode_aggregate(bytes: &[u8]) -> Result<AggregateCall, ShardError> {
    decode_call::<AggregateCall, before_epochs::AggregateCall>(bytes)
}

/// What one replica takes for its group's leader (the `Leader` call's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderView {
    pub term: u64,
    pub leader: Option<NodeId>,
}

/// Why a shard call did not give an answer.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum ShardError {
    /// The group itself said no (not the leader, no quorum, ...).
    #[error(transparent)]
    Group(#[from] GroupError),
    /// The node asked does not host a replica of the group.
    #[error("node {node} hosts no replica of shard group {group}")]
    NotHosted { node: NodeId, group: GroupId },
    /// The call did not reach the node, or its answer did not come back.
    #[error("shard group {group}: node {node} unreachable: {message}")]
    Unreachable {
        group: GroupId,
        node: NodeId,
        message: String,
        /// Whether the call surely never arrived (the connection was refused), so
        /// that even a write may be sent elsewhere.
        never_sent: bool,
    },
    /// The group has no member this router knows how to reach.
    #[error("shard group {group} has no known members")]
    NoRoute { group: GroupId },
    /// The engine refused the request (the text a client gets).
    #[error("{0}")]
    Engine(String),
    /// The payload could not be decoded: the nodes run different versions.
    #[error("shard call: {0}")]
    Codec(String),
    /// A read's time ran out before the group answered (the router's own deadline:
    /// a search's TIMEOUT, or the quorum timeout); the replica it waited on is named
    /// when one was being asked.
    #[error("shard group {group} did not answer within {millis} ms")]
    Deadline {
        group: GroupId,
        node: Option<NodeId>,
        millis: u64,
    },
    /// The group has moved on to a newer routing than the call was planned by (a
    /// reshard, docs/resharding.md §4): nothing ran; the router reads the map again.
    #[error(
        "shard group {group} has moved on to routing epoch {floor}; this router's map is older"
    )]
    StaleMap { group: GroupId, floor: u64 },
    // New variants go last: postcard numbers variants by position, and nodes of the
    // previous version must read the ones they know alike.
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ShardError> {
    postcard::to_allocvec(value).map_err(|e| ShardError::Codec(e.to_string()))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ShardError> {
    postcard::from_bytes(bytes).map_err(|e| ShardError::Codec(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct OldReadCall {
        commands: Vec<Vec<Vec<u8>>>,
        resp3: bool,
        now_ms: u64,
        stale_ok: bool,
        versions: Vec<Vec<u8>>,
    }

    #[derive(Serialize)]
    struct OldSearchCall {
        args: Vec<Vec<u8>>,
        resp3: bool,
        now_ms: u64,
        window: usize,
        stale_ok: bool,
    }

    #[test]
    fn calls_of_both_releases_are_read_and_the_old_ones_are_at_epoch_0() {
        let new = ReadCall {
            commands: vec![vec![b"GET".to_vec(), b"k".to_vec()]],
            resp3: true,
            now_ms: 9,
            stale_ok: false,
            versions: vec![b"w".to_vec()],
            epoch: 3,
        };
        let bytes = encode(&new).unwrap_or_default();
        assert_eq!(decode_read(&bytes).ok(), Some(new.clone()));
        // What a node of the previous release reads of it: its fields, the rest ignored.
        let theirs: Option<before_epochs::ReadCall> = decode(&bytes).ok();
        assert!(theirs.is_some_and(|c| c.commands == new.commands && c.versions == new.versions));
        let old = OldReadCall {
            commands: new.commands.clone(),
            resp3: true,
            now_ms: 9,
            stale_ok: false,
            versions: new.versions.clone(),
        };
        let read = decode_read(&encode(&old).unwrap_or_default()).ok();
        assert_eq!(read, Some(ReadCall { epoch: 0, ..new }));

        let old = OldSearchCall {
            args: vec![b"idx".to_vec(), b"*".to_vec()],
            resp3: false,
            now_ms: 1,
            window: 10,
            stale_ok: true,
        };
        let search = decode_search(&encode(&old).unwrap_or_default()).ok();
        assert_eq!(
            search.map(|c| (c.window, c.stale_ok, c.epoch)),
            Some((10, true, 0))
        );
        assert!(
            decode_aggregate(b"\xff").is_err(),
            "garbage is still refused"
        );
    }
}
