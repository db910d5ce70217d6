//! `FT.CREATE` arguments into an [`IndexSchema`].
//!
//! The grammar is the reference's: index-level options in any order until `SCHEMA`, then
//! `identifier [AS alias] TYPE [options]` per field. Errors keep the reference wording,
//! field problems prefixed with ``Invalid field type for field `<f>`: ``.

use crate::args::{parse_f64, parse_i64, show, Args};
use crate::error::{out_of_bounds, range_error, unknown_argument, QueryError, Result};

/// Most fields one index may declare.
pub const MAX_ATTRIBUTES: usize = 1000;
/// Most key prefixes one index may subscribe to.
pub const MAX_PREFIXES: usize = 16;
/// Longest vector.
pub const MAX_DIM: u64 = 32_768;
/// Largest INITIAL_CAP and BLOCK_SIZE.
pub const MAX_INITIAL_CAP: u64 = 10_000_000;
/// The HNSW bounds of `crates/index`.
pub const MAX_M: u64 = 512;
pub const MAX_EF: u64 = 4096;

pub const DEFAULT_INITIAL_CAP: usize = 10 * 1024;
pub const DEFAULT_BLOCK_SIZE: usize = 1024;

/// Characters an attribute alias may not contain: the query language gives them meaning.
const ALIAS_PUNCTUATION: &str = ",.<>{}[]\"':;!@#$%^&*()-+=~/\\|";

/// What kind of key an index covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Hash,
    Json,
}

impl KeyType {
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Hash => "HASH",
            KeyType::Json => "JSON",
        }
    }
}

/// A parsed `FT.CREATE`.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSchema {
    pub name: String,
    pub key_type: KeyType,
    /// Key prefixes; empty means every key.
    pub prefixes: Vec<Vec<u8>>,
    pub score: f64,
    pub language: String,
    pub skip_initial_scan: bool,
    pub fields: Vec<Field>,
}

impl IndexSchema {
    /// The field a query names by `@alias` (an identifier works too, as in the reference).
    pub fn field(&self, name: &str) -> Option<(usize, &Field)> {
        self.fields
            .iter()
            .enumerate()
            .find(|(_, f)| f.alias == name)
            .or_else(|| {
                self.fields
                    .iter()
                    .enumerate()
                    .find(|(_, f)| f.identifier == name)
            })
    }

    /// Whether `key` falls under this index's prefixes.
    pub fn covers(&self, key: &[u8]) -> bool {
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| key.starts_with(p))
    }
}

/// One schema field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Hash field name, or JSONPath for JSON indexes.
    pub identifier: String,
    /// The name queries and replies use (`AS`); the identifier when not given.
    pub alias: String,
    pub kind: FieldKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    Numeric,
    Tag(TagOptions),
    Text,
    Vector(VectorOptions),
}

impl FieldKind {
    /// The type name FT.INFO reports.
    pub fn name(&self) -> &'static str {
        match self {
            FieldKind::Numeric => "NUMERIC",
            FieldKind::Tag(_) => "TAG",
            FieldKind::Text => "TEXT",
            FieldKind::Vector(_) => "VECTOR",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagOptions {
    pub separator: u8,
    pub case_sensitive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistanceMetric {
    L2,
    Ip,
    Cosine,
}

impl DistanceMetric {
    pub fn name(self) -> &'static str {
        match self {
            DistanceMetric::L2 => "L2",
            DistanceMetric::Ip => "IP",
            DistanceMetric::Cosine => "COSINE",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VectorOptions {
    pub algorithm: VectorAlgorithm,
    pub dim: usize,
    pub metric: DistanceMetric,
    pub initial_cap: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VectorAlgorithm {
    Hnsw(HnswOptions),
    Flat(FlatOptions),
}

impl VectorAlgorithm {
    pub fn name(&self) -> &'static str {
        match self {
            VectorAlgorithm::Hnsw(_) => "HNSW",
            VectorAlgorithm::Flat(_) => "FLAT",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HnswOptions {
    pub m: usize,
    pub ef_construction: usize,
    pub ef_runtime: usize,
    pub epsilon: Option<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlatOptions {
    pub block_size: usize,
}

/// Parses the arguments after `FT.CREATE`.
pub fn parse_create<A: AsRef<[u8]>>(items: &[A]) -> Result<IndexSchema> {
    let mut args = Args::new(items);
    let name = args.next_str()?.to_owned();
    let mut schema = IndexSchema {
        name,
        key_type: KeyType::Hash,
        prefixes: Vec::new(),
        score: 1.0,
        language: "english".into(),
        skip_initial_scan: false,
        fields: Vec::new(),
    };
    index_options(&mut args, &mut schema)?;
    let keyword = args.next_bytes()?;
    if !keyword.eq_ignore_ascii_case(b"SCHEMA") {
        return Err(QueryError::ExpectingSchema(show(keyword)));
    }
    if args.is_empty() {
        return Err(QueryError::EmptySchema);
    }
    while !args.is_empty() {
        let identifier = args.next_str()?.to_owned();
        let mut field = parse_field(&mut args, &identifier)
            .map_err(|detail| QueryError::field(&identifier, detail))?;
        if schema.key_type == KeyType::Json {
            // Legacy paths (`title`, `.title`) name the same value as `$.title`, as the
            // JSON commands read them.
            field.identifier = json_path(&field.identifier);
        }
        if schema
            .fields
            .iter()
            .any(|f| f.identifier == field.identifier)
        {
            return Err(QueryError::DuplicateField(identifier));
        }
        if schema.fields.iter().any(|f| f.alias == field.alias) {
            return Err(QueryError::DuplicateField(field.alias));
        }
        if schema.fields.len() == MAX_ATTRIBUTES {
            return Err(QueryError::TooManyAttributes(MAX_ATTRIBUTES));
        }
        schema.fields.push(field);
    }
    Ok(schema)
}

/// Options between the index name and `SCHEMA`, in any order.
fn index_options<A: AsRef<[u8]>>(args: &mut Args<'_, A>, schema: &mut IndexSchema) -> Result<()> {
    loop {
        if args.eat("ON") {
            let kind = args.next_bytes()?;
            schema.key_type = if kind.eq_ignore_ascii_case(b"HASH") {
                KeyType::Hash
            } else if kind.eq_ignore_ascii_case(b"JSON") {
                KeyType::Json
            } else {
                return Err(QueryError::param("ON", unknown_argument(&show(kind))));
            };
        } else if args.eat("PREFIX") {
            let count = args.next_bytes()?;
            let n = parse_i64(count)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n <= args.remaining() && n <= MAX_PREFIXES)
                .ok_or_else(|| QueryError::PrefixCount(show(count)))?;
            for _ in 0..n {
                schema.prefixes.push(args.next_bytes()?.to_vec());
            }
        } else if args.eat("SCORE") {
            let token = args.next_bytes()?;
            schema.score = parse_f64(token)
                .filter(|s| (0.0..=1.0).contains(s))
                .ok_or_else(|| QueryError::Score(show(token)))?;
        } else if args.eat("LANGUAGE") {
            let token = args.next_bytes()?;
            if !token.eq_ignore_ascii_case(b"ENGLISH") {
                return Err(QueryError::Language(show(token)));
            }
        } else if args.eat("SKIPINITIALSCAN") {
            schema.skip_initial_scan = true;
        } else if args.eat("NOOFFSETS") || args.eat("NOHL") || args.eat("NOFIELDS") {
            // Full-text options with no meaning until TEXT is searched by relevance.
        } else {
            for unsupported in ["FILTER", "LANGUAGE_FIELD", "PAYLOAD_FIELD", "SCORE_FIELD"] {
                if args.eat(unsupported) {
                    return Err(QueryError::NotSupported(unsupported.into()));
                }
            }
            return Ok(());
        }
    }
}

/// RediSearch field flags with a meaning this index cannot give: NOINDEX (a field only
/// sorted by), INDEXMISSING and INDEXEMPTY (queries for absent or empty values) and
/// PHONETIC (text matching by sound).
const UNSUPPORTED_FIELD_FLAGS: [&str; 4] = ["NOINDEX", "INDEXMISSING", "INDEXEMPTY", "PHONETIC"];

/// Whether `token` begins a field's definition after its identifier.
fn starts_field(token: &[u8]) -> bool {
    ["AS", "NUMERIC", "TAG", "TEXT", "VECTOR", "GEO", "GEOSHAPE"]
        .iter()
        .any(|k| token.eq_ignore_ascii_case(k.as_bytes()))
}

/// One field after its identifier. Errors are the detail of "Invalid field type ...".
fn parse_field<A: AsRef<[u8]>>(
    args: &mut Args<'_, A>,
    identifier: &str,
) -> std::result::Result<Field, String> {
    let missing = |_| "Missing argument".to_owned();
    let alias = if args.eat("AS") {
        args.next_str().map_err(missing)?.to_owned()
    } else {
        identifier.to_owned()
    };
    if let Some(bad) = alias.chars().find(|c| ALIAS_PUNCTUATION.contains(*c)) {
        return Err(format!(
            "Attribute alias `{alias}` contains invalid character `{bad}`"
        ));
    }
    let kind_token = args.next_bytes().map_err(missing)?;
    let kind = if kind_token.eq_ignore_ascii_case(b"NUMERIC") {
        FieldKind::Numeric
    } else if kind_token.eq_ignore_ascii_case(b"TAG") {
        FieldKind::Tag(tag_options(args)?)
    } else if kind_token.eq_ignore_ascii_case(b"TEXT") {
        text_options(args)?;
        FieldKind::Text
    } else if kind_token.eq_ignore_ascii_case(b"VECTOR") {
        FieldKind::Vector(vector_options(args)?)
    } else {
        return Err(unknown_argument(&show(kind_token)));
    };
    loop {
        // Accepted for RediSearch compatibility: every index here is already sortable.
        if args.eat("SORTABLE") || args.eat("UNF") {
            continue;
        }
        // RediSearch's other field flags (redis-py sends them before SORTABLE) are
        // refused by name, not read as the next field's identifier; a field of that
        // name is followed by its type or AS.
        match args.peek() {
            Some(token)
                if UNSUPPORTED_FIELD_FLAGS
                    .iter()
                    .any(|f| token.eq_ignore_ascii_case(f.as_bytes()))
                    && !args.peek_at(1).is_some_and(starts_field) =>
            {
                return Err(format!(
                    "The parameter `{}` is not supported",
                    show(token).to_ascii_uppercase()
                ));
            }
            _ => break,
        }
    }
    Ok(Field {
        identifier: identifier.to_owned(),
        alias,
        kind,
    })
}

fn tag_options<A: AsRef<[u8]>>(args: &mut Args<'_, A>) -> std::result::Result<TagOptions, String> {
    let mut options = TagOptions {
        separator: b',',
        case_sensitive: false,
    };
    loop {
        if args.eat("SEPARATOR") {
            let sep = args.next_bytes().map_err(|_| {
                "Error parsing value for the parameter `SEPARATOR` - Missing argument".to_owned()
            })?;
            // Clients quote it (`'|'`); the quotes are not part of the separator.
            let sep = match sep {
                [b'\'', c, b'\''] | [b'"', c, b'"'] => std::slice::from_ref(c),
                other => other,
            };
            match sep {
                [c] => options.separator = *c,
                other => {
                    return Err(format!(
                        "The separator must be a single character, but got `{}`",
                        show(other)
                    ))
                }
            }
        } else if args.eat("CASESENSITIVE") {
            options.case_sensitive = true;
        } else if args.eat("WITHSUFFIXTRIE") {
            // Only speeds up RediSearch's suffix and contains matches.
        } else {
            return Ok(options);
        }
    }
}

fn text_options<A: AsRef<[u8]>>(args: &mut Args<'_, A>) -> std::result::Result<(), String> {
    loop {
        if args.eat("WEIGHT") {
            let token = args.next_bytes().map_err(|_| {
                "Error parsing value for the parameter `WEIGHT` - Missing argument".to_owned()
            })?;
            if parse_f64(token) != Some(1.0) {
                return Err(
                    "The `WEIGHT` clause with a value other than `1.0` is not supported."
                        .to_owned(),
                );
            }
        } else if args.eat("NOSTEM") || args.eat("WITHSUFFIXTRIE") || args.eat("NOSUFFIXTRIE") {
            // Stemming and suffix tries matter only to full-text ranking.
        } else {
            return Ok(());
        }
    }
}

fn vector_options<A: AsRef<[u8]>>(
    args: &mut Args<'_, A>,
) -> std::result::Result<VectorOptions, String> {
    let algo_token = args
        .next_bytes()
        .map_err(|_| "Missing argument".to_owned())?;
    let hnsw = if algo_token.eq_ignore_ascii_case(b"HNSW") {
        true
    } else if algo_token.eq_ignore_ascii_case(b"FLAT") {
        false
    } else {
        return Err(unknown_argument(&show(algo_token)));
    };
    let algo = if hnsw { "HNSW" } else { "FLAT" };
    let nargs_token = args
        .next_bytes()
        .map_err(|_| "Missing argument".to_owned())?;
    let nargs = parse_i64(nargs_token)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| out_of_bounds(&show(nargs_token)))?;
    if nargs > args.remaining() {
        return Err(format!(
            "Expected {nargs} parameters for {algo} but got {} parameters.",
            args.remaining()
        ));
    }
    let mut group = args
        .take(nargs)
        .map_err(|_| "Missing argument".to_owned())?;

    let mut dim = None;
    let mut metric = None;
    let mut typed = false;
    let mut initial_cap = DEFAULT_INITIAL_CAP as u64;
    let mut hnsw_options = HnswOptions {
        m: 16,
        ef_construction: 200,
        ef_runtime: 10,
        epsilon: None,
    };
    let mut block_size = DEFAULT_BLOCK_SIZE as u64;
    while !group.is_empty() {
        let key = group
            .next_bytes()
            .map_err(|_| "Missing argument".to_owned())?;
        let name = show(key).to_ascii_uppercase();
        let value = group.next_bytes().map_err(|_| {
            format!("Error parsing value for the parameter `{name}` - Missing argument")
        })?;
        let int = |v: &[u8]| -> std::result::Result<u64, String> {
            match parse_i64(v) {
                Some(n) => u64::try_from(n).map_err(|_| {
                    format!("Error parsing value for the parameter `{name}` - {}", out_of_bounds(&show(v)))
                }),
                None => Err(format!(
                    "Error parsing value for the parameter `{name}` - `{}` is not a valid numeric value",
                    show(v)
                )),
            }
        };
        match name.as_str() {
            "TYPE" => {
                if !value.eq_ignore_ascii_case(b"FLOAT32") {
                    return Err(format!(
                        "Error parsing value for the parameter `TYPE` - {}",
                        unknown_argument(&show(value))
                    ));
                }
                typed = true;
            }
            "DIM" => dim = Some(int(value)?),
            "DISTANCE_METRIC" => {
                let upper = show(value).to_ascii_uppercase();
                metric = Some(match upper.as_str() {
                    "L2" => DistanceMetric::L2,
                    "IP" => DistanceMetric::Ip,
                    "COSINE" => DistanceMetric::Cosine,
                    _ => {
                        return Err(format!(
                            "Error parsing value for the parameter `DISTANCE_METRIC` - {}",
                            unknown_argument(&show(value))
                        ))
                    }
                });
            }
            "INITIAL_CAP" => initial_cap = int(value)?,
            "M" if hnsw => hnsw_options.m = bounded(int(value)?, "M", 2, "2", MAX_M)?,
            "EF_CONSTRUCTION" if hnsw => {
                hnsw_options.ef_construction =
                    bounded(int(value)?, "EF_CONSTRUCTION", 1, "0", MAX_EF)?
            }
            "EF_RUNTIME" if hnsw => {
                hnsw_options.ef_runtime = bounded(int(value)?, "EF_RUNTIME", 1, "0", MAX_EF)?
            }
            "EPSILON" if hnsw => {
                let e = parse_f64(value)
                    .filter(|e| e.is_finite() && *e >= 0.0)
                    .ok_or_else(|| {
                        format!(
                            "Error parsing value for the parameter `EPSILON` - {}",
                            out_of_bounds(&show(value))
                        )
                    })?;
                hnsw_options.epsilon = Some(e as f32);
            }
            "BLOCK_SIZE" if !hnsw => block_size = int(value)?,
            _ => return Err(format!("Unexpected argument `{}`", show(key))),
        }
    }
    let Some(dim) = dim else {
        return Err("Missing dimensions parameter.".into());
    };
    if !(1..=MAX_DIM).contains(&dim) {
        let side = if dim == 0 {
            "below minimum"
        } else {
            "above maximum"
        };
        return Err(format!(
            "Invalid range: Value {side}; The dimensions value must be a positive integer greater than 0 and less than or equal to {MAX_DIM}."
        ));
    }
    let initial_cap = bounded(initial_cap, "INITIAL_CAP", 1, "0", MAX_INITIAL_CAP)?;
    if !typed {
        return Err("Missing vector TYPE parameter.".into());
    }
    let Some(metric) = metric else {
        return Err("Missing DISTANCE_METRIC parameter.".into());
    };
    let algorithm = if hnsw {
        VectorAlgorithm::Hnsw(hnsw_options)
    } else {
        VectorAlgorithm::Flat(FlatOptions {
            block_size: bounded(block_size, "BLOCK_SIZE", 1, "0", MAX_INITIAL_CAP)?,
        })
    };
    Ok(VectorOptions {
        algorithm,
        dim: dim as usize,
        metric,
        initial_cap,
    })
}

/// A field identifier of a JSON index as JSONPath.
fn json_path(identifier: &str) -> String {
    if identifier.starts_with('$') {
        identifier.to_owned()
    } else if identifier == "." {
        "$".to_owned()
    } else if let Some(rest) = identifier.strip_prefix('.') {
        format!("$.{rest}")
    } else {
        format!("$.{identifier}")
    }
}

/// `v` within `[min, max]`, or the reference's range error.
fn bounded(
    v: u64,
    name: &str,
    min: u64,
    min_word: &str,
    max: u64,
) -> std::result::Result<usize, String> {
    if v < min || v > max {
        return Err(range_error(name, v > max, min_word, max));
    }
    usize::try_from(v).map_err(|_| range_error(name, true, min_word, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<IndexSchema> {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        parse_create(&tokens)
    }

    fn err(line: &str) -> String {
        parse(line).expect_err(line).to_string()
    }

    #[test]
    fn the_seed_schemas_parse() {
        let s = parse("idx ON HASH PREFIX 1 item: SCHEMA vec VECTOR FLAT 6 TYPE FLOAT32 DIM 512 DISTANCE_METRIC COSINE title TEXT category TAG").unwrap();
        assert_eq!(s.prefixes, vec![b"item:".to_vec()]);
        assert_eq!(s.fields.len(), 3);
        let FieldKind::Vector(v) = &s.fields[0].kind else {
            panic!("not a vector")
        };
        assert_eq!((v.dim, v.metric), (512, DistanceMetric::Cosine));
        assert!(matches!(v.algorithm, VectorAlgorithm::Flat(_)));
        assert_eq!(
            s.fields[2].kind,
            FieldKind::Tag(TagOptions {
                separator: b',',
                case_sensitive: false
            })
        );

        // LangChain's shape: SCORE, TEXT WEIGHT 1, a separator per tag.
        let s = parse("users ON HASH PREFIX 1 doc:users SCORE 1.0 SCHEMA content TEXT WEIGHT 1 content_vector VECTOR HNSW 12 TYPE FLOAT32 DIM 10 DISTANCE_METRIC COSINE M 12 EF_CONSTRUCTION 50 EF_RUNTIME 20 user TAG SEPARATOR , age NUMERIC").unwrap();
        let FieldKind::Vector(v) = &s.fields[1].kind else {
            panic!("not a vector")
        };
        assert_eq!(
            v.algorithm,
            VectorAlgorithm::Hnsw(HnswOptions {
                m: 12,
                ef_construction: 50,
                ef_runtime: 20,
                epsilon: None
            })
        );
    }

    #[test]
    fn json_aliases_and_options_in_any_order() {
        let s = parse("j SKIPINITIALSCAN ON JSON SCORE 0.5 PREFIX 2 a: b: SCHEMA $.vec AS vec VECTOR HNSW 6 TYPE FLOAT32 DIM 3 DISTANCE_METRIC L2 $.t AS t TAG SEPARATOR | CASESENSITIVE").unwrap();
        assert_eq!(s.key_type, KeyType::Json);
        assert!(s.skip_initial_scan);
        assert_eq!(s.score, 0.5);
        assert_eq!(s.fields[0].identifier, "$.vec");
        assert_eq!(s.field("vec").map(|(i, _)| i), Some(0));
        assert_eq!(
            s.fields[1].kind,
            FieldKind::Tag(TagOptions {
                separator: b'|',
                case_sensitive: true
            })
        );
        assert!(s.covers(b"b:1") && !s.covers(b"c:1"));
        let s = parse("j ON JSON SCHEMA title TEXT .n AS n NUMERIC").unwrap();
        assert_eq!(s.fields[0].identifier, "$.title");
        assert_eq!(s.fields[0].alias, "title");
        assert_eq!(s.fields[1].identifier, "$.n");
        assert_eq!(
            parse("i SCHEMA a AS x NUMERIC b AS x TAG")
                .unwrap_err()
                .to_string(),
            "Duplicate field in schema - x"
        );
    }

    #[test]
    fn errors_use_the_reference_wording() {
        let cases = [
            ("idx SCHEMA f VECTOR HNSW 8 TYPE FLOAT32 DIM 3 DISTANCE_METRIC IP",
             "Invalid field type for field `f`: Expected 8 parameters for HNSW but got 6 parameters."),
            ("idx SCHEMA f VECTOR HNSW 5 TYPE FLOAT32 DIM 3 DISTANCE_METRIC IP",
             "Invalid field type for field `f`: Error parsing value for the parameter `DISTANCE_METRIC` - Missing argument"),
            ("idx SCHEMA f VECTOR FLAT -6 TYPE FLOAT32 DIM 3 DISTANCE_METRIC IP",
             "Invalid field type for field `f`: `-6` is outside acceptable bounds"),
            ("idx SCHEMA f VECTOR HNSW 6 TYPE1 FLOAT32 DIM 3 DISTANCE_METRIC IP",
             "Invalid field type for field `f`: Unexpected argument `TYPE1`"),
            ("idx SCHEMA f VECTOR HNSW 6 TYPE FLOAT321 DIM 3 DISTANCE_METRIC IP",
             "Invalid field type for field `f`: Error parsing value for the parameter `TYPE` - Unknown argument `FLOAT321`"),
            ("idx SCHEMA f VECTOR HNSW 4 TYPE FLOAT32 DISTANCE_METRIC IP",
             "Invalid field type for field `f`: Missing dimensions parameter."),
            ("idx SCHEMA f VECTOR HNSW 4 DIM 3 DISTANCE_METRIC IP",
             "Invalid field type for field `f`: Missing vector TYPE parameter."),
            ("idx SCHEMA f VECTOR HNSW 4 TYPE FLOAT32 DIM 3",
             "Invalid field type for field `f`: Missing DISTANCE_METRIC parameter."),
            ("idx SCHEMA f VECTOR HNSW 8 TYPE FLOAT32 DIM 3 DISTANCE_METRIC IP M 1",
             "Invalid field type for field `f`: Invalid range: Value below minimum; M must be a positive integer greater than 2 and cannot exceed 512."),
            ("idx SCHEMA f VECTOR HNSW 8 TYPE FLOAT32 DIM 3 DISTANCE_METRIC IP EF_RUNTIME -100",
             "Invalid field type for field `f`: Error parsing value for the parameter `EF_RUNTIME` - `-100` is outside acceptable bounds"),
            ("idx SCHEMA f VECTOR FLAT 8 TYPE FLOAT32 DIM 3 DISTANCE_METRIC IP BLOCK_SIZE 0",
             "Invalid field type for field `f`: Invalid range: Value below minimum; BLOCK_SIZE must be a positive integer greater than 0 and cannot exceed 10000000."),
            ("idx SCHEMA f asa g VECTOR", "Invalid field type for field `f`: Unknown argument `asa`"),
            ("idx SCHEMA f AS g]1 NUMERIC", "Invalid field type for field `f`: Attribute alias `g]1` contains invalid character `]`"),
            ("idx SCHEMA f TAG SEPARATOR @@", "Invalid field type for field `f`: The separator must be a single character, but got `@@`"),
            ("idx SCHEMA f NUMERIC f NUMERIC", "Duplicate field in schema - f"),
            ("idx SCHEMA f NUMERIC trailing", "Invalid field type for field `trailing`: Missing argument"),
            ("idx SCOREa 2 SCHEMA f NUMERIC", "Unexpected parameter `SCOREa`, expecting `SCHEMA`"),
            ("idx SCORE 2 SCHEMA f NUMERIC", "`SCORE` parameter with a value `2` is not supported. The value must be between 0.0 and 1.0"),
            ("idx PREFIX -2 SCHEMA f NUMERIC", "Bad arguments for PREFIX: `-2` is outside acceptable bounds"),
            ("idx PREFIX 20 SCHEMA f NUMERIC", "Bad arguments for PREFIX: `20` is outside acceptable bounds"),
            ("idx LANGUAGE hebrew SCHEMA f NUMERIC", "Bad arguments for LANGUAGE: Unknown argument `hebrew`"),
            ("idx FILTER x SCHEMA f NUMERIC", "The parameter `FILTER` is not supported"),
            ("idx PREFIX 1 x", "Missing argument"),
            ("idx", "Missing argument"),
            ("idx SCHEMA", "Index schema must have at least one attribute"),
            ("idx SCHEMA t TEXT WEIGHT 2", "Invalid field type for field `t`: The `WEIGHT` clause with a value other than `1.0` is not supported."),
            // redis-py's NumericField(no_index=True), TagField(index_missing=True), ...
            ("idx SCHEMA n NUMERIC SORTABLE NOINDEX t TAG", "Invalid field type for field `n`: The parameter `NOINDEX` is not supported"),
            ("idx SCHEMA t TAG SEPARATOR , indexmissing", "Invalid field type for field `t`: The parameter `INDEXMISSING` is not supported"),
            ("idx SCHEMA t TEXT INDEXEMPTY", "Invalid field type for field `t`: The parameter `INDEXEMPTY` is not supported"),
            ("idx SCHEMA t TEXT PHONETIC dm:en", "Invalid field type for field `t`: The parameter `PHONETIC` is not supported"),
        ];
        for (line, want) in cases {
            assert_eq!(err(line), want, "{line}");
        }
    }

    /// TAG's WITHSUFFIXTRIE (redis-py's `withsuffixtrie=True`) is accepted as TEXT's
    /// is, and a field named like a flag is still a field when its type follows.
    #[test]
    fn suffix_tries_and_fields_named_like_flags() {
        let s = parse("i SCHEMA t TAG SEPARATOR , WITHSUFFIXTRIE SORTABLE n NUMERIC").unwrap();
        assert_eq!(s.fields.len(), 2);
        let s = parse("i SCHEMA n NUMERIC SORTABLE noindex TAG phonetic AS p TEXT").unwrap();
        let names: Vec<&str> = s.fields.iter().map(|f| f.alias.as_str()).collect();
        assert_eq!(names, ["n", "noindex", "p"]);
    }

    #[test]
    fn defaults_match_the_reference() {
        let s = parse("i SCHEMA v VECTOR HNSW 6 TYPE FLOAT32 DIM 4 DISTANCE_METRIC L2").unwrap();
        let FieldKind::Vector(v) = &s.fields[0].kind else {
            panic!("not a vector")
        };
        assert_eq!(v.initial_cap, DEFAULT_INITIAL_CAP);
        assert_eq!(
            v.algorithm,
            VectorAlgorithm::Hnsw(HnswOptions {
                m: 16,
                ef_construction: 200,
                ef_runtime: 10,
                epsilon: None
            })
        );
        assert!(s.prefixes.is_empty() && s.covers(b"anything"));
    }
}
