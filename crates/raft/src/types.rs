//! The openraft type configuration of a shard group, and what its log entries carry.
//!
//! Everything openraft-specific that other crates need is re-exported from here, so the
//! pinned openraft version stays a detail of this crate.

use std::fmt;

use serde::{Deserialize, Serialize};
use shoal_engine::{Reply, Write};

/// Identifies a node in the cluster.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The type configuration of every Shoal Raft group.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = NodeAddr,
);

/// Where a node is and how to reach it; carried in membership entries so that every
/// replica of a group knows its peers' addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// Availability zone, for placement (#5).
    pub zone: String,
    /// gRPC address of the node's Raft service (`host:port`).
    pub raft: String,
    /// RESP address clients use (`host:port`), for MOVED-style redirects.
    pub resp: String,
}

/// One log entry's worth of client writes: the engine's [`Write`] in a serializable form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub now_ms: u64,
    pub commands: Vec<Vec<Vec<u8>>>,
    pub resp3: bool,
}

impl From<Write> for Request {
    fn from(w: Write) -> Self {
        Request {
            now_ms: w.now_ms,
            commands: w.commands,
            resp3: w.resp3,
        }
    }
}

impl From<Request> for Write {
    fn from(r: Request) -> Self {
        Write {
            now_ms: r.now_ms,
            commands: r.commands,
            resp3: r.resp3,
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self
            .commands
            .first()
            .and_then(|c| c.first())
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .unwrap_or_default();
        write!(
            f,
            "{} command(s) at {} ({first}…)",
            self.commands.len(),
            self.now_ms
        )
    }
}

/// The replies to one entry's commands, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response(pub Vec<Reply>);

pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot as openraft passes it around: metadata and the open snapshot file.
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, std::fs::File>;
