//! The KNN clause after `=>`: `[KNN <k> @<field> $<vector> [EF_RUNTIME <n>] [AS <name>]]`.
//!
//! The clause is a bracketed list of whitespace-separated tokens, so it is read as tokens;
//! each error names the clause as the reference does
//! (``Error parsing vector similarity parameters: `[...]`. <why>``).

use crate::args::parse_f64;
use crate::error::{QueryError, Result};
use crate::filter::Value;

/// A parsed, unbound KNN clause.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnClause {
    pub k: Value,
    /// The vector field, without its `@`.
    pub field: String,
    /// The PARAMS name holding the query vector, without its `$`.
    pub vector_param: String,
    pub ef_runtime: Option<Value>,
    /// `AS name`: what the distance is returned as.
    pub alias: Option<String>,
}

pub(crate) fn parse_knn(clause: &str) -> Result<KnnClause> {
    let err = |detail: String| QueryError::Knn {
        clause: clause.to_owned(),
        detail,
    };
    let mut chars = clause.chars();
    match chars.next() {
        Some('[') => {}
        Some(c) => return Err(err(format!("Expecting '[' got '{c}'"))),
        None => return Err(err("Missing parameters".into())),
    }
    match chars.next_back() {
        Some(']') => {}
        Some(c) => return Err(err(format!("Expecting ']' got '{c}'"))),
        None => return Err(err("Expecting ']'".into())),
    }
    let mut tokens = chars.as_str().split_whitespace();
    let head = tokens
        .next()
        .ok_or_else(|| err("Missing parameters".into()))?;
    if !head.eq_ignore_ascii_case("KNN") {
        return Err(err(format!("`{head}`. Expecting `KNN`")));
    }
    let k = value(tokens.next(), "KNN").map_err(err)?;
    let field = match tokens.next() {
        Some(t) if t.len() > 1 && t.starts_with('@') => t[1..].to_owned(),
        Some(t) => {
            return Err(err(format!(
                "Unexpected argument `{t}`. Expecting a vector field name, starting with '@'"
            )))
        }
        None => return Err(err("Vector field argument is missing".into())),
    };
    let vector_param = match tokens.next() {
        Some(t) if t.len() > 1 && t.starts_with('$') => t[1..].to_owned(),
        Some(t) => {
            return Err(err(format!(
                "Unexpected argument `{t}`. Expecting a parameter name, starting with '$'"
            )))
        }
        None => return Err(err("Blob attribute argument is missing".into())),
    };
    let mut ef_runtime = None;
    let mut alias = None;
    while let Some(token) = tokens.next() {
        if token.eq_ignore_ascii_case("EF_RUNTIME") {
            ef_runtime = Some(value(tokens.next(), "EF_RUNTIME").map_err(err)?);
        } else if token.eq_ignore_ascii_case("AS") {
            let name = tokens
                .next()
                .ok_or_else(|| err("AS argument is missing".into()))?;
            alias = Some(name.to_owned());
        } else {
            return Err(err(format!("Unexpected argument `{token}`")));
        }
    }
    Ok(KnnClause {
        k,
        field,
        vector_param,
        ef_runtime,
        alias,
    })
}

fn value(token: Option<&str>, what: &str) -> std::result::Result<Value, String> {
    match token {
        None => Err(format!("{what} argument is missing")),
        Some(t) if t.len() > 1 && t.starts_with('$') => Ok(Value::Param(t[1..].to_owned())),
        Some(t) => parse_f64(t.as_bytes())
            .map(Value::Number)
            .ok_or_else(|| format!("`{t}` is not a valid numeric value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_clause_in_any_order() {
        let c = parse_knn("[KNN $k @vec $BLOB As as_test EF_RUNTIMe $EF]").unwrap();
        assert_eq!(c.k, Value::Param("k".into()));
        assert_eq!(c.field, "vec");
        assert_eq!(c.vector_param, "BLOB");
        assert_eq!(c.ef_runtime, Some(Value::Param("EF".into())));
        assert_eq!(c.alias.as_deref(), Some("as_test"));
    }

    #[test]
    fn reference_errors() {
        let e = |c: &str| parse_knn(c).unwrap_err().to_string();
        let p = "Error parsing vector similarity parameters: ";
        assert_eq!(
            e("[KNN 10 @vec $BLOB EF_RUNTIMe $EF bubu 3 As as_test]"),
            format!("{p}`[KNN 10 @vec $BLOB EF_RUNTIMe $EF bubu 3 As as_test]`. Unexpected argument `bubu`")
        );
        assert_eq!(
            e("[KNN 10 @vec $BLOB EF_RUNTIMe]"),
            format!("{p}`[KNN 10 @vec $BLOB EF_RUNTIMe]`. EF_RUNTIME argument is missing")
        );
        assert_eq!(
            e("[KNN 10 @vec $BLOB EF_RUNTIMe 10 AS]"),
            format!("{p}`[KNN 10 @vec $BLOB EF_RUNTIMe 10 AS]`. AS argument is missing")
        );
        assert_eq!(
            e("[KNN 10 @ $BLOB]"),
            format!("{p}`[KNN 10 @ $BLOB]`. Unexpected argument `@`. Expecting a vector field name, starting with '@'")
        );
        assert_eq!(
            e("[KNN 10 @vec ]"),
            format!("{p}`[KNN 10 @vec ]`. Blob attribute argument is missing")
        );
        assert_eq!(
            e("ss[KNN 10 @vec $BLOB]"),
            format!("{p}`ss[KNN 10 @vec $BLOB]`. Expecting '[' got 's'")
        );
        assert_eq!(
            e("[KNN 10 @vec $BLOB] aa"),
            format!("{p}`[KNN 10 @vec $BLOB] aa`. Expecting ']' got 'a'")
        );
        assert_eq!(e("[]"), format!("{p}`[]`. Missing parameters"));
        assert_eq!(
            e("[@vec1 $BLOB]"),
            format!("{p}`[@vec1 $BLOB]`. `@vec1`. Expecting `KNN`")
        );
        assert_eq!(e("[KNN]"), format!("{p}`[KNN]`. KNN argument is missing"));
        assert_eq!(
            e("[KNN aa @v $b]"),
            format!("{p}`[KNN aa @v $b]`. `aa` is not a valid numeric value")
        );
    }
}
