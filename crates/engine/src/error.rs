//! Engine errors and their wire text.
//!
//! Redis's own errors carry their code (`ERR`, `WRONGTYPE`); search errors are the bare
//! reference text, as valkey-search sends them (the first word becomes the code).

use shoal_query::QueryError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("ERR wrong number of arguments for '{0}' command")]
    Arity(String),
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("ERR hash value is not an integer")]
    HashNotInteger,
    #[error("ERR hash value is not a float")]
    HashNotFloat,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpire(String),
    #[error("ERR invalid cursor")]
    InvalidCursor,
    #[error("ERR unknown command '{0}'")]
    UnknownCommand(String),
    #[error("Index {0} in database 0 already exists.")]
    IndexExists(String),
    #[error("Index with name '{0}' not found in database 0")]
    UnknownIndex(String),
    #[error("Search operation cancelled due to timeout")]
    Timeout,
    #[error("{0}")]
    Query(#[from] QueryError),
    #[error("ERR {0}")]
    Json(String),
    #[error("ERR new objects must be created at the root")]
    JsonNewAtRoot,
    #[error("ERR could not create the vector index: {0}")]
    Index(String),
    #[error("Error parsing vector similarity parameters: {0}")]
    QueryVector(String),
    #[error("ERR snapshot is corrupt: {0}")]
    Snapshot(String),
    /// Shards answered one request in different shapes: nodes of different versions.
    #[error("ERR shard groups answered {0} in different shapes; are the nodes of one version?")]
    PartsDisagree(&'static str),
    /// A reshard step this group's state does not allow (docs/resharding.md §3.2).
    #[error("ERR reshard: {0}")]
    Reshard(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;
