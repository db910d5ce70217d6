//! Errors of the replication layer.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RaftError {
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("i/o: {0}")]
    Io(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("the node is shutting down")]
    ShuttingDown,
}

pub type Result<T, E = RaftError> = std::result::Result<T, E>;
