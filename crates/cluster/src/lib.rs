//! The cluster layer: which shard group owns a key ([`ring`]), how a command is split
//! over groups and merged back ([`plan`], [`merge`]), and the router that sends each
//! group its part ([`router`]) — through this node's replica when it leads the group
//! ([`local`]), or a peer's shard service over gRPC ([`service`], [`shards`]). The
//! cluster map (nodes and their liveness, index definitions) lives in a meta group of
//! its own ([`meta`]), with the [`layout`] of the groups keys live on; [`placement`]
//! says which nodes hold a group's replicas, [`repair`] how a group gets back to full
//! replication when a node is gone, and [`purge`] when a node that comes back erases
//! the replicas it was replaced in.

pub mod confirm;
pub mod layout;
pub mod learner_watch;
pub mod local;
pub mod merge;
pub mod meta;
pub mod placement;
pub mod plan;
pub mod purge;
pub mod read_index;
pub mod repair;
pub mod reshard;
pub mod reshard_admin;
pub mod reshard_inputs;
pub mod reshard_record;
pub mod reshard_run;
pub mod retry;
pub mod rounds;
pub mod router;
pub mod service;
pub mod shards;
pub mod turns;
pub mod vote_link;
pub mod wire;

pub use local::Local;
pub use meta::{ClusterMap, ClusterShape, UserChange, META};
pub use ring::{Ring, Routing};
pub use router::{error_text, Router};
pub use service::ShardService;
pub use shards::Shards;
/// Which group owns a key (a crate of its own, so that the engine can use it too).
pub use shoal_ring as ring;
