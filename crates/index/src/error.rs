//! The one error type of the index crate. The engine turns these into the RESP wording
//! of SPEC.md at its boundary, so the text here is for logs and tests, not for users.

use thiserror::Error;

/// Everything an index operation can refuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IndexError {
    /// The vector's length differs from the index's dimension.
    #[error("vector has dimension {got}, the index expects {expected}")]
    DimensionMismatch { expected: usize, got: usize },
    /// A component is NaN or infinite; such a vector has no meaningful distance.
    #[error("vector component {position} is not a finite number")]
    NonFinite { position: usize },
    /// COSINE needs a direction; the zero vector has none.
    #[error("a zero vector has no direction under the COSINE metric")]
    ZeroVector,
    /// A KNN query asked for no neighbours.
    #[error("k must be at least 1")]
    ZeroK,
    /// The id is reserved (`u32::MAX` marks empty slots) and cannot be stored.
    #[error("id {0} is out of range")]
    IdOutOfRange(u32),
    /// `add` was called for an id that is already present; `replace` overwrites.
    #[error("id {0} is already in the index")]
    DuplicateId(u32),
    /// `remove` was called for an id that is not present.
    #[error("id {0} is not in the index")]
    UnknownId(u32),
    /// A construction or query parameter is outside what the index supports.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// Memory for more vectors could not be had.
    #[error("out of memory: could not allocate {0} bytes for the index")]
    OutOfMemory(usize),
    /// The index already holds as many vectors as slot ids can address.
    #[error("the index is full ({0} slots)")]
    Full(usize),
    /// A serialized stream was truncated, corrupted or of an unknown version.
    #[error("corrupt index stream: {0}")]
    Corrupt(String),
    /// Writing or reading the serialized stream failed.
    #[error("i/o error: {0}")]
    Io(String),
}

impl From<std::io::Error> for IndexError {
    fn from(e: std::io::Error) -> Self {
        IndexError::Io(e.to_string())
    }
}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, IndexError>;
