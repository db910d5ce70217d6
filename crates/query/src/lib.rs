//! What a client asks for, parsed and checked before anything is touched.
//!
//! Three inputs arrive as RESP arguments: an `FT.CREATE` schema, an `FT.SEARCH` request
//! (whose query string is a small language of its own) and an `FT.AGGREGATE` pipeline.
//! This crate turns each into a typed value — [`IndexSchema`], [`SearchRequest`] bound into
//! a [`SearchPlan`], [`AggregateRequest`] — or into a [`QueryError`] whose text is the
//! reference wording clients match on (SPEC.md). It knows nothing about storage: the
//! engine evaluates plans, the router of a cluster parses once and ships them.
//!
//! The query language is parsed with winnow ([`filter`]); command arguments, which are
//! already tokens, are walked with [`args::Args`].

pub mod aggregate;
pub mod args;
pub mod error;
pub mod expr;
pub mod filter;
pub mod knn;
pub mod plan;
pub mod schema;
pub mod search;

pub use aggregate::{AggregateRequest, AggregateStep, Reducer, ReducerKind};
pub use error::{QueryError, Result};
pub use filter::{Bound, Node, ParsedQuery, TagPattern, TextWord, Value};
pub use knn::KnnClause;
pub use plan::{bind, Filter, KnnPlan, RangePlan, SearchPlan};
pub use schema::{
    DistanceMetric, Field, FieldKind, FlatOptions, HnswOptions, IndexSchema, KeyType, TagOptions,
    VectorAlgorithm, VectorOptions,
};
pub use search::{ReturnField, SearchRequest, SortBy};

/// Longest query string accepted, in bytes. Vectors travel as PARAMS, so real queries are
/// short; the bound keeps a hostile one from costing more than a moment to reject.
pub const MAX_QUERY_LEN: usize = 16 * 1024;
/// Deepest nesting of parentheses and negations in a query.
pub const MAX_DEPTH: usize = 64;
/// Most predicates (tags, ranges, words) one query may hold.
pub const MAX_TERMS: usize = 1024;
/// Largest KNN `k`, as in the reference.
pub const MAX_K: usize = 10_000;
