//! Generated gRPC code for `proto/*.proto`, one module per protobuf package.

/// `proto/raft.proto`: Raft traffic between nodes.
#[allow(clippy::all, missing_debug_implementations)]
pub mod raft {
    tonic::include_proto!("shoal.raft.v1");
}

/// `proto/shard.proto`: a router's calls to the leaders of shard groups.
#[allow(clippy::all, missing_debug_implementations)]
pub mod shard {
    tonic::include_proto!("shoal.shard.v1");
}
