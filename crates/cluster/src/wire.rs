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
    pub args: Vec<Vec<u8>>,
    pub resp3: bool,
    pub now_ms: u64,
    /// The first this many hits in order (offset + num of the whole query).
    pub window: usize,
    pub stale_ok: bool,
}

/// One group's part of an FT.AGGREGATE (`args` without the command name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateCall {
    pub args: Vec<Vec<u8>>,
    pub now_ms: u64,
    pub stale_ok: bool,
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
    // New variants go last: postcard numbers variants by position, and nodes of the
    // previous version must read the ones they know alike.
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ShardError> {
    postcard::to_allocvec(value).map_err(|e| ShardError::Codec(e.to_string()))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ShardError> {
    postcard::from_bytes(bytes).map_err(|e| ShardError::Codec(e.to_string()))
}
