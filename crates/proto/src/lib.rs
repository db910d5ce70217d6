//! Generated gRPC code for `proto/*.proto`, one module per protobuf package.

/// `proto/raft.proto`: Raft traffic between nodes.
#[allow(clippy::all, missing_debug_implementations)]
pub mod raft {
    tonic::include_proto!("shoal.raft.v1");
}
