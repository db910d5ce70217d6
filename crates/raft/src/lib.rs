//! Replication of shard groups: one openraft group per shard group, its log in the node's
//! RocksDB ([`db`], [`log_store`]), the engine as its state machine ([`state_machine`]).
//!
//! openraft's types stay behind this crate: other crates use [`types`].

pub mod db;
pub mod error;
pub mod group;
pub mod host;
pub mod log_store;
pub mod network;
pub mod runtime;
mod snapshot_file;
pub mod state_machine;
pub mod types;
pub mod view_mirror;
pub mod vote_view;

pub use db::{GroupId, LogDb};
pub use error::{RaftError, Result};
pub use group::{Group, GroupError, GroupStatus, ReadMode};
pub use host::Host;
pub use log_store::{LogStore, WeakLog};
pub use network::{Faults, Network, PeerClient, PeerTls, Raft};
pub use state_machine::{Replica, Retirement, StateMachine};
pub use types::{
    raft_config, NodeAddr, NodeId, RaftConfig, Request, Response, TypeConfig, EPOCH_COMMAND,
};
pub use vote_view::{LogView, VoteView};
