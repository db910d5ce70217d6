//! What the workload did and what it was told: every operation with its start and end
//! and its outcome, as a linearizability checker needs them.

use std::time::Duration;

use serde::Serialize;

/// What an operation asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Call {
    /// `HSET key val v vec <v's vector>`.
    Write(u64),
    /// `DEL key`.
    Delete,
    /// `HGET key val`.
    Read,
    /// A KNN query for value v's vector: is the key, holding v, the nearest at 0?
    Knn(u64),
}

/// What the operation was told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// Acknowledged: a write or delete happened; a read saw this.
    Ok(Seen),
    /// Refused before it could take effect.
    Failed(String),
    /// No answer, or one that says it may or may not have happened (a timeout, a
    /// dropped connection, TRYAGAIN): it may take effect at any later time, or never.
    Unknown(String),
}

/// What a successful operation returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Seen {
    Done,
    Value(Option<u64>),
    Found(bool),
    /// A KNN answer named this key twice (a document shown by two groups).
    Twice(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Op {
    pub worker: usize,
    pub key: String,
    pub call: Call,
    /// Since the run started.
    pub start: Duration,
    pub end: Duration,
    pub outcome: Outcome,
}

impl Op {
    pub fn changes(&self) -> bool {
        matches!(self.call, Call::Write(_) | Call::Delete)
    }
}
