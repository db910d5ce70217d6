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

/// `proto/shoal.proto`: the client API.
#[allow(clippy::all, missing_debug_implementations)]
pub mod api {
    tonic::include_proto!("shoal.v1");

    /// The encoded descriptors of every compiled file, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("shoal_descriptor");
}
