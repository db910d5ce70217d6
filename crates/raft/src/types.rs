//! The openraft type configuration of a shard group, and what its log entries carry.
//!
//! Everything openraft-specific that other crates need is re-exported from here, so the
//! pinned openraft version stays a detail of this crate.

use std::fmt;

use serde::{Deserialize, Serialize};
use shoal_engine::{Reply, Write};

/// openraft's per-group settings (timeouts, snapshot policy), re-exported so callers need
/// not name openraft.
pub use openraft::Config as RaftConfig;

/// The settings a node gives every group it hosts. Elections start after
/// `election_timeout_ms`..2×`election_timeout_ms` without a heartbeat; a snapshot is
/// built every `snapshot_after_logs` entries, and the log before it is purged (but for
/// the last `min(snapshot_after_logs, 1000)` entries).
pub fn raft_config(
    heartbeat_ms: u64,
    election_timeout_ms: u64,
    snapshot_after_logs: u64,
) -> RaftConfig {
    RaftConfig {
        heartbeat_interval: heartbeat_ms,
        election_timeout_min: election_timeout_ms,
        election_timeout_max: election_timeout_ms * 2,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_after_logs),
        // Entries kept behind a snapshot, so a follower a little behind catches up by
        // log rather than by a whole snapshot; never more than a snapshot's worth.
        max_in_snapshot_log_to_keep: snapshot_after_logs.min(1000),
        ..RaftConfig::default()
    }
}

/// Identifies a node in the cluster.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The type configuration of every Shoal Raft group.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = NodeAddr,
        AsyncRuntime = crate::runtime::GridRuntime,
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

/// One log entry's worth of client writes: the engine's [`Write`] in a serializable form,
/// with an optional WATCH guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub now_ms: u64,
    pub commands: Vec<Vec<Vec<u8>>>,
    pub resp3: bool,
    /// `(key, version)` pairs read at WATCH time. If any key's version differs when the
    /// entry is applied, no command runs and the entry answers "aborted". Versions are
    /// part of the replicated state (and of snapshots), so every replica decides alike.
    pub guard: Vec<(Vec<u8>, Option<u64>)>,
}

impl Request {
    /// An entry that only advances time (it fires due expiries).
    pub fn tick(now_ms: u64) -> Request {
        Request {
            now_ms,
            commands: Vec::new(),
            resp3: false,
            guard: Vec::new(),
        }
    }
}

impl From<Write> for Request {
    fn from(w: Write) -> Self {
        Request {
            now_ms: w.now_ms,
            commands: w.commands,
            resp3: w.resp3,
            guard: Vec::new(),
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

/// The replies to one entry's commands, in order; `aborted` when its WATCH guard failed
/// and nothing ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub replies: Vec<Reply>,
    pub aborted: bool,
    /// The group's floor when the entry named an older router epoch
    /// ([`EPOCH_COMMAND`]): nothing ran. Never on the wire: the node that proposed the
    /// entry turns it into an error for the router that sent it, so a node of the
    /// previous release still reads every `Response` it is sent.
    #[serde(skip)]
    pub stale: Option<u64>,
}

impl Response {
    pub fn replies(replies: Vec<Reply>) -> Response {
        Response {
            replies,
            aborted: false,
            stale: None,
        }
    }
}

/// The pseudo-command a router puts first in an entry, `SHOAL._EPOCH <x>`, with the
/// epoch of the routing it planned the entry by (docs/resharding.md §3.2). The replica
/// strips it before the engine sees the entry, and applies nothing if `x` is below the
/// group's floor; an entry without it counts as planned at epoch 0 (unless
/// [`Request::unrouted`]), so a router that has not seen a reshard yet is refused too.
/// A pseudo-command rather than a `Request` field: entries are postcard in the log
/// store, and a new field would make existing logs unreadable. Routers send it only
/// from epoch 1 on (a cluster that has resharded), so entries of a cluster that never
/// did are byte for byte what the previous release wrote.
pub const EPOCH_COMMAND: &[u8] = b"SHOAL._EPOCH";

impl Request {
    /// Puts `SHOAL._EPOCH <epoch>` first, when `epoch` is above 0 (see [`EPOCH_COMMAND`]).
    pub fn at_epoch(mut self, epoch: u64) -> Request {
        if epoch > 0 {
            self.commands.insert(
                0,
                vec![EPOCH_COMMAND.to_vec(), epoch.to_string().into_bytes()],
            );
        }
        self
    }

    /// Takes the entry's `SHOAL._EPOCH` off: `Some(x)` when it had one (`Some(None)`
    /// when its argument is not an epoch), `None` when it had none.
    pub fn take_epoch(&mut self) -> Option<Option<u64>> {
        let first = self.commands.first()?;
        if !first
            .first()
            .is_some_and(|name| name.eq_ignore_ascii_case(EPOCH_COMMAND))
        {
            return None;
        }
        let epoch = (first.len() == 2)
            .then(|| std::str::from_utf8(&first[1]).ok()?.parse().ok())
            .flatten();
        self.commands.remove(0);
        Some(epoch)
    }

    /// Whether the entry does not depend on where keys live, so that no routing epoch
    /// applies to it: an expiry tick (no commands), a reshard step, or index metadata
    /// only (`FT._CREATE`/`FT._DROPIF`, which every group holds alike and the
    /// reconciler keeps in line on a group being added). Any other entry without
    /// `SHOAL._EPOCH` was planned at epoch 0.
    pub fn unrouted(&self) -> bool {
        self.reshards()
            || self.commands.iter().all(|c| {
                c.first().is_some_and(|name| {
                    name.eq_ignore_ascii_case(b"FT._CREATE")
                        || name.eq_ignore_ascii_case(b"FT._DROPIF")
                })
            })
    }

    /// Whether a command of the entry is a reshard step (`SHOAL._*`): it may move the
    /// floor or what readers see, so it is applied alone, at its exact position.
    pub fn reshards(&self) -> bool {
        self.commands.iter().any(|c| {
            c.first().is_some_and(|name| {
                name.len() > 7
                    && name[..7].eq_ignore_ascii_case(b"SHOAL._")
                    && !name.eq_ignore_ascii_case(EPOCH_COMMAND)
            })
        })
    }
}

pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot as openraft passes it around: metadata and the open snapshot file.
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, std::fs::File>;

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str) -> Request {
        Request {
            now_ms: 1,
            commands: vec![vec![b"SET".to_vec(), key.into(), b"v".to_vec()]],
            resp3: false,
            guard: Vec::new(),
        }
    }

    #[test]
    fn an_entrys_epoch_goes_first_and_comes_off_before_the_engine() {
        assert_eq!(
            set("k").at_epoch(0),
            set("k"),
            "epoch 0 writes what it always did"
        );
        let mut entry = set("k").at_epoch(7);
        assert_eq!(entry.commands.len(), 2);
        assert!(!entry.reshards(), "the epoch is not a reshard step");
        assert_eq!(entry.take_epoch(), Some(Some(7)));
        assert_eq!(entry, set("k"));
        assert_eq!(entry.take_epoch(), None);
        let mut bad = set("k");
        bad.commands
            .insert(0, vec![b"shoal._epoch".to_vec(), b"x".to_vec()]);
        assert_eq!(
            bad.take_epoch(),
            Some(None),
            "unreadable: refused, not ignored"
        );
        let step = Request {
            commands: vec![vec![b"shoal._fence".to_vec(), b"3".to_vec(), b"2".to_vec()]],
            ..set("k")
        };
        assert!(step.reshards());
    }

    #[test]
    fn a_stale_answer_never_reaches_the_wire() {
        let response = Response {
            stale: Some(4),
            ..Response::replies(vec![Reply::Int(1)])
        };
        let bytes = postcard::to_allocvec(&response).unwrap_or_default();
        let back: Response = postcard::from_bytes(&bytes).unwrap_or_default();
        assert_eq!(back, Response::replies(vec![Reply::Int(1)]));
    }
}
