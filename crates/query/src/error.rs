//! The one place where the wording users see is written.
//!
//! Every message is the reference text of SPEC.md (valkey-search's, RediSearch's where the
//! reference is silent). Clients and users match on these strings, so a change here is a
//! change of the protocol.

/// A rejected schema, query or request option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("Missing argument")]
    MissingArgument,
    #[error("Unexpected parameter `{0}`, expecting `SCHEMA`")]
    ExpectingSchema(String),
    #[error("Index schema must have at least one attribute")]
    EmptySchema,
    #[error("Duplicate field in schema - {0}")]
    DuplicateField(String),
    /// A schema field's own problem; `detail` is one of the `field_*` texts below.
    #[error("Invalid field type for field `{field}`: {detail}")]
    Field { field: String, detail: String },
    #[error("Bad arguments for PREFIX: `{0}` is outside acceptable bounds")]
    PrefixCount(String),
    #[error("Bad arguments for LANGUAGE: Unknown argument `{0}`")]
    Language(String),
    #[error("The parameter `{0}` is not supported")]
    NotSupported(String),
    #[error("`SCORE` parameter with a value `{0}` is not supported. The value must be between 0.0 and 1.0")]
    Score(String),
    #[error(
        "Invalid range: Value above maximum; The maximum number of attributes cannot exceed {0}."
    )]
    TooManyAttributes(usize),
    #[error("Invalid filter expression: `{filter}`. {detail}")]
    Filter { filter: String, detail: String },
    #[error("Error parsing vector similarity parameters: `{clause}`. {detail}")]
    Knn { clause: String, detail: String },
    #[error("Error parsing vector similarity parameters: query vector blob size ({got}) does not match index's expected size ({want}).")]
    BlobSize { got: usize, want: usize },
    #[error("Index field `{0}` does not exist")]
    UnknownField(String),
    #[error("Index field `{field}` is not a {expected} field")]
    WrongFieldType {
        field: String,
        expected: &'static str,
    },
    #[error("Parameter `{0}` not used.")]
    UnusedParam(String),
    #[error("No such parameter `{0}`")]
    NoSuchParam(String),
    #[error("Error parsing value for the parameter `{param}` - {detail}")]
    ParamValue { param: String, detail: String },
    #[error("DIALECT requires a non negative integer >=2 and <= 4")]
    Dialect,
    #[error("Invalid range: Value {0}; KNN parameter must be a positive integer greater than 0 and cannot exceed 10000.")]
    KnnRange(&'static str),
    #[error("TIMEOUT must be a positive integer greater than 0 and cannot exceed 60000.")]
    Timeout,
    #[error("Unexpected argument `{0}`")]
    UnexpectedArgument(String),
    #[error("Query is longer than {0} bytes")]
    QueryTooLong(usize),
    #[error("Query has more than {0} terms")]
    TooManyTerms(usize),
    #[error("{0}")]
    Aggregate(String),
}

impl QueryError {
    pub(crate) fn field(field: &str, detail: impl Into<String>) -> Self {
        QueryError::Field {
            field: field.to_owned(),
            detail: detail.into(),
        }
    }

    pub(crate) fn param(param: &str, detail: impl Into<String>) -> Self {
        QueryError::ParamValue {
            param: param.to_owned(),
            detail: detail.into(),
        }
    }
}

/// `` `v` is outside acceptable bounds ``.
pub(crate) fn out_of_bounds(v: &str) -> String {
    format!("`{v}` is outside acceptable bounds")
}

/// `` Unknown argument `v` ``.
pub(crate) fn unknown_argument(v: &str) -> String {
    format!("Unknown argument `{v}`")
}

/// The range error of a bounded integer parameter, as the reference words it.
pub(crate) fn range_error(name: &str, above: bool, min_word: &str, max: u64) -> String {
    let side = if above {
        "above maximum"
    } else {
        "below minimum"
    };
    format!(
        "Invalid range: Value {side}; {name} must be a positive integer greater than {min_word} and cannot exceed {max}."
    )
}

pub type Result<T> = std::result::Result<T, QueryError>;
