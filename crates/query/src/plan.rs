//! Binding: a parsed query plus PARAMS plus the index's schema become a [`SearchPlan`].
//!
//! After binding every field reference is an index into the schema with the right type,
//! every `$param` is resolved and used, numbers are numbers and query vectors are floats
//! of the right length. Whoever evaluates a plan (a shard's engine) cannot meet a
//! malformed one.

use std::collections::HashSet;

use crate::args::{parse_f64, parse_i64};
use crate::error::{QueryError, Result};
use crate::filter::{Bound, Node, ParsedQuery, TagPattern, TextWord, Value};
use crate::schema::{FieldKind, IndexSchema};
use crate::MAX_K;

/// A query ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPlan {
    pub filter: Filter,
    pub knn: Option<KnnPlan>,
}

/// The filter, with fields resolved to schema positions.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All,
    Numeric {
        field: usize,
        lo: f64,
        lo_exclusive: bool,
        hi: f64,
        hi_exclusive: bool,
    },
    /// Patterns already case-folded when the field is not CASESENSITIVE.
    Tag {
        field: usize,
        patterns: Vec<TagPattern>,
    },
    /// Lower-cased words that must all occur in `field` (any TEXT field when `None`).
    Text {
        field: Option<usize>,
        words: Vec<TextWord>,
    },
    Range(RangePlan),
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

/// `VECTOR_RANGE`: every vector within `radius` of `vector`.
#[derive(Debug, Clone, PartialEq)]
pub struct RangePlan {
    pub field: usize,
    pub radius: f32,
    pub vector: Vec<f32>,
    pub epsilon: Option<f32>,
    /// Where the distance is returned, when asked for.
    pub yield_as: Option<String>,
}

/// The KNN clause.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnPlan {
    pub k: usize,
    pub field: usize,
    pub vector: Vec<f32>,
    pub ef_runtime: Option<usize>,
    /// The name the distance is returned under: `AS`, or `__<field>_score`.
    pub alias: String,
}

impl SearchPlan {
    /// Range clauses of the filter, for the names their distances are returned under.
    pub fn ranges(&self) -> Vec<&RangePlan> {
        fn walk<'a>(f: &'a Filter, out: &mut Vec<&'a RangePlan>) {
            match f {
                Filter::Range(r) => out.push(r),
                Filter::And(v) | Filter::Or(v) => v.iter().for_each(|f| walk(f, out)),
                Filter::Not(f) => walk(f, out),
                Filter::All | Filter::Numeric { .. } | Filter::Tag { .. } | Filter::Text { .. } => {
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.filter, &mut out);
        out
    }
}

/// Binds `parsed` against `schema` with the request's PARAMS.
pub fn bind(
    schema: &IndexSchema,
    parsed: &ParsedQuery,
    params: &[(String, Vec<u8>)],
) -> Result<SearchPlan> {
    let mut binder = Binder {
        schema,
        params,
        used: HashSet::new(),
    };
    let filter = binder.filter(&parsed.filter)?;
    let knn = parsed.knn.as_ref().map(|c| binder.knn(c)).transpose()?;
    if let Some((unused, _)) = params
        .iter()
        .find(|(p, _)| !binder.used.contains(p.as_str()))
    {
        return Err(QueryError::UnusedParam(unused.clone()));
    }
    Ok(SearchPlan { filter, knn })
}

struct Binder<'a> {
    schema: &'a IndexSchema,
    params: &'a [(String, Vec<u8>)],
    used: HashSet<&'a str>,
}

impl<'a> Binder<'a> {
    fn param(&mut self, name: &str) -> Result<&'a [u8]> {
        let (key, value) = self
            .params
            .iter()
            .find(|(p, _)| p == name)
            .ok_or_else(|| QueryError::NoSuchParam(name.to_owned()))?;
        self.used.insert(key.as_str());
        Ok(value)
    }

    fn number(&mut self, value: &Value, what: &str) -> Result<f64> {
        match value {
            Value::Number(n) => Ok(*n),
            Value::Param(p) => {
                let bytes = self.param(p)?;
                parse_f64(bytes).ok_or_else(|| {
                    QueryError::param(
                        what,
                        format!(
                            "`{}` is not a valid numeric value",
                            String::from_utf8_lossy(bytes)
                        ),
                    )
                })
            }
        }
    }

    /// A positive integer from the query or from PARAMS.
    fn integer(&mut self, value: &Value, what: &str) -> Result<i64> {
        match value {
            Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => Ok(*n as i64),
            Value::Number(n) => Err(QueryError::param(
                what,
                format!("`{n}` is not a valid integer"),
            )),
            Value::Param(p) => {
                let bytes = self.param(p)?;
                parse_i64(bytes).ok_or_else(|| {
                    QueryError::param(
                        what,
                        format!(
                            "`{}` is not a valid integer",
                            String::from_utf8_lossy(bytes)
                        ),
                    )
                })
            }
        }
    }

    fn field(&self, name: &str, want: &'static str) -> Result<(usize, &'a FieldKind)> {
        let (position, field) = self
            .schema
            .field(name)
            .ok_or_else(|| QueryError::UnknownField(name.to_owned()))?;
        let matches = matches!(
            (&field.kind, want),
            (FieldKind::Numeric, "NUMERIC")
                | (FieldKind::Tag(_), "TAG")
                | (FieldKind::Text, "TEXT")
                | (FieldKind::Vector(_), "VECTOR")
        );
        if !matches {
            return Err(QueryError::WrongFieldType {
                field: name.to_owned(),
                expected: want,
            });
        }
        Ok((position, &field.kind))
    }

    fn vector(&mut self, field_kind: &FieldKind, param: &str) -> Result<Vec<f32>> {
        let FieldKind::Vector(options) = field_kind else {
            return Err(QueryError::UnknownField(param.to_owned()));
        };
        let blob = self.param(param)?;
        let want = options.dim * 4;
        if blob.len() != want {
            return Err(QueryError::BlobSize {
                got: blob.len(),
                want,
            });
        }
        Ok(blob
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn bound(&mut self, bound: &Bound) -> Result<(f64, bool)> {
        Ok((self.number(&bound.value, "range")?, bound.exclusive))
    }

    fn filter(&mut self, node: &Node) -> Result<Filter> {
        Ok(match node {
            Node::All => Filter::All,
            Node::Numeric { field, lo, hi } => {
                let (field, _) = self.field(field, "NUMERIC")?;
                let (lo, lo_exclusive) = self.bound(lo)?;
                let (hi, hi_exclusive) = self.bound(hi)?;
                Filter::Numeric {
                    field,
                    lo,
                    lo_exclusive,
                    hi,
                    hi_exclusive,
                }
            }
            Node::Tag { field, tags } => {
                let (field, kind) = self.field(field, "TAG")?;
                let case_sensitive = matches!(kind, FieldKind::Tag(o) if o.case_sensitive);
                let patterns = tags
                    .iter()
                    .map(|t| TagPattern {
                        text: if case_sensitive {
                            t.text.clone()
                        } else {
                            t.text.to_lowercase()
                        },
                        prefix: t.prefix,
                    })
                    .collect();
                Filter::Tag { field, patterns }
            }
            Node::Text { field, words } => {
                let field = match field {
                    Some(name) => Some(self.field(name, "TEXT")?.0),
                    None => None,
                };
                let words = words
                    .iter()
                    .map(|w| TextWord {
                        text: w.text.to_lowercase(),
                        prefix: w.prefix,
                    })
                    .collect();
                Filter::Text { field, words }
            }
            Node::VectorRange {
                field,
                radius,
                vector_param,
                yield_as,
                epsilon,
            } => {
                let (position, kind) = self.field(field, "VECTOR")?;
                let radius = self.number(radius, "VECTOR_RANGE")?;
                let epsilon = epsilon
                    .as_ref()
                    .map(|e| self.number(e, "EPSILON"))
                    .transpose()?;
                let vector = self.vector(kind, vector_param)?;
                Filter::Range(RangePlan {
                    field: position,
                    radius: radius as f32,
                    vector,
                    epsilon: epsilon.map(|e| e as f32),
                    yield_as: yield_as.clone(),
                })
            }
            Node::And(nodes) => Filter::And(
                nodes
                    .iter()
                    .map(|n| self.filter(n))
                    .collect::<Result<_>>()?,
            ),
            Node::Or(nodes) => Filter::Or(
                nodes
                    .iter()
                    .map(|n| self.filter(n))
                    .collect::<Result<_>>()?,
            ),
            Node::Not(node) => Filter::Not(Box::new(self.filter(node)?)),
        })
    }

    fn knn(&mut self, clause: &crate::knn::KnnClause) -> Result<KnnPlan> {
        let k = self.integer(&clause.k, "KNN")?;
        if k < 1 {
            return Err(QueryError::KnnRange("below minimum"));
        }
        if k > MAX_K as i64 {
            return Err(QueryError::KnnRange("above maximum"));
        }
        let (field, kind) = self.field(&clause.field, "VECTOR")?;
        let ef_runtime = match &clause.ef_runtime {
            Some(v) => {
                let ef = self.integer(v, "EF_RUNTIME")?;
                if !(1..=crate::schema::MAX_EF as i64).contains(&ef) {
                    return Err(QueryError::param(
                        "EF_RUNTIME",
                        format!(
                            "`EF_RUNTIME` must be a positive integer greater than 0 and cannot exceed {}.",
                            crate::schema::MAX_EF
                        ),
                    ));
                }
                Some(ef as usize)
            }
            None => None,
        };
        let vector = self.vector(kind, &clause.vector_param)?;
        let alias = clause
            .alias
            .clone()
            .unwrap_or_else(|| format!("__{}_score", self.schema.fields[field].alias));
        Ok(KnnPlan {
            k: k as usize,
            field,
            vector,
            ef_runtime,
            alias,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::parse_query;
    use crate::schema::parse_create;

    fn schema() -> IndexSchema {
        let line = "idx ON HASH PREFIX 1 item: SCHEMA vec VECTOR HNSW 6 TYPE FLOAT32 DIM 2 DISTANCE_METRIC L2 title TEXT category TAG price NUMERIC cs TAG CASESENSITIVE";
        parse_create(&line.split_whitespace().collect::<Vec<_>>()).unwrap()
    }

    fn blob(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn bind_str(q: &str, params: &[(&str, Vec<u8>)]) -> Result<SearchPlan> {
        let params: Vec<(String, Vec<u8>)> = params
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect();
        bind(&schema(), &parse_query(q)?, &params)
    }

    #[test]
    fn knn_binds_vector_k_and_default_alias() {
        let plan = bind_str(
            "(@category:{Electronics} @price:[0 (1000])=>[KNN $k @vec $v EF_RUNTIME 50]",
            &[("k", b"5".to_vec()), ("v", blob(&[1.0, 2.0]))],
        )
        .unwrap();
        let knn = plan.knn.unwrap();
        assert_eq!((knn.k, knn.field, knn.ef_runtime), (5, 0, Some(50)));
        assert_eq!(knn.vector, vec![1.0, 2.0]);
        assert_eq!(knn.alias, "__vec_score");
        let Filter::And(parts) = plan.filter else {
            panic!()
        };
        assert_eq!(
            parts[0],
            Filter::Tag {
                field: 2,
                patterns: vec![TagPattern {
                    text: "electronics".into(),
                    prefix: false
                }]
            }
        );
        assert_eq!(
            parts[1],
            Filter::Numeric {
                field: 3,
                lo: 0.0,
                lo_exclusive: false,
                hi: 1000.0,
                hi_exclusive: true
            }
        );
    }

    #[test]
    fn case_sensitive_tags_keep_case() {
        let plan = bind_str("@cs:{AbC}", &[]).unwrap();
        assert_eq!(
            plan.filter,
            Filter::Tag {
                field: 4,
                patterns: vec![TagPattern {
                    text: "AbC".into(),
                    prefix: false
                }]
            }
        );
    }

    #[test]
    fn reference_errors() {
        let v = blob(&[1.0, 2.0]);
        let e = |q: &str, p: &[(&str, Vec<u8>)]| bind_str(q, p).unwrap_err().to_string();
        assert_eq!(
            e("*=>[KNN 5 @vec1 $v]", &[("v", v.clone())]),
            "Index field `vec1` does not exist"
        );
        assert_eq!(
            e("*=>[KNN 5 @vec $v]", &[("v", blob(&[1.0]))]),
            "Error parsing vector similarity parameters: query vector blob size (4) does not match index's expected size (8)."
        );
        assert_eq!(
            e(
                "*=>[KNN 5 @vec $v]",
                &[("v", v.clone()), ("EXTRA", b"1".to_vec())]
            ),
            "Parameter `EXTRA` not used."
        );
        assert_eq!(
            e("*=>[KNN 0 @vec $v]", &[("v", v.clone())]),
            "Invalid range: Value below minimum; KNN parameter must be a positive integer greater than 0 and cannot exceed 10000."
        );
        assert_eq!(
            e("*=>[KNN 10001 @vec $v]", &[("v", v.clone())]),
            "Invalid range: Value above maximum; KNN parameter must be a positive integer greater than 0 and cannot exceed 10000."
        );
        assert_eq!(
            e("@title:{x}", &[]),
            "Index field `title` is not a TAG field"
        );
        assert_eq!(e("*=>[KNN 5 @vec $nope]", &[]), "No such parameter `nope`");
    }

    #[test]
    fn range_binds_radius_from_params() {
        let plan = bind_str(
            "@vec:[VECTOR_RANGE $r $v]=>{$YIELD_DISTANCE_AS: d}",
            &[("r", b"0.25".to_vec()), ("v", blob(&[0.0, 1.0]))],
        )
        .unwrap();
        let ranges = plan.ranges();
        assert_eq!(ranges.len(), 1);
        assert_eq!(ranges[0].radius, 0.25);
        assert_eq!(ranges[0].yield_as.as_deref(), Some("d"));
    }
}
