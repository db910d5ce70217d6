//! `FT.AGGREGATE <index> <query> [steps...]` into an [`AggregateRequest`].
//!
//! The steps run in the order written, as in RediSearch: each of LOAD, GROUPBY (with its
//! REDUCE clauses), SORTBY, APPLY, FILTER and LIMIT transforms the rows of the previous.

use crate::args::{parse_i64, show, Args};
use crate::error::{out_of_bounds, QueryError, Result};
use crate::expr::{parse_expr, Expr};
use crate::search::{parse_dialect, parse_limit, parse_params, parse_shards, parse_timeout};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReducerKind {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    CountDistinct,
    ToList,
}

impl ReducerKind {
    fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "COUNT" => ReducerKind::Count,
            "SUM" => ReducerKind::Sum,
            "MIN" => ReducerKind::Min,
            "MAX" => ReducerKind::Max,
            "AVG" => ReducerKind::Avg,
            "COUNT_DISTINCT" => ReducerKind::CountDistinct,
            "TOLIST" => ReducerKind::ToList,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ReducerKind::Count => "count",
            ReducerKind::Sum => "sum",
            ReducerKind::Min => "min",
            ReducerKind::Max => "max",
            ReducerKind::Avg => "avg",
            ReducerKind::CountDistinct => "count_distinct",
            ReducerKind::ToList => "tolist",
        }
    }
}

/// `REDUCE <kind> <nargs> <args> [AS alias]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reducer {
    pub kind: ReducerKind,
    /// The field the reducer reads (none for COUNT), without `@`.
    pub field: Option<String>,
    pub alias: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AggregateStep {
    GroupBy {
        fields: Vec<String>,
        reducers: Vec<Reducer>,
    },
    /// Keys with `true` for ascending; `max` keeps the first rows only.
    SortBy {
        keys: Vec<(String, bool)>,
        max: Option<usize>,
    },
    Apply {
        expr: Expr,
        alias: String,
    },
    Filter(Expr),
    Limit {
        offset: usize,
        num: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggregateRequest {
    pub index: String,
    pub query: String,
    /// Fields loaded from the documents before the steps, as (field, name in the row);
    /// `None` loads nothing extra, `Some(empty)` is `LOAD *`.
    pub load: Option<Vec<(String, String)>>,
    pub steps: Vec<AggregateStep>,
    pub params: Vec<(String, Vec<u8>)>,
    pub timeout_ms: Option<u64>,
    /// `SOMESHARDS` (see [`crate::SearchRequest::partial`]).
    pub partial: bool,
    pub dialect: u32,
}

fn field_name(token: &str) -> String {
    token.strip_prefix('@').unwrap_or(token).to_owned()
}

fn count<A: AsRef<[u8]>>(args: &mut Args<'_, A>, what: &str) -> Result<usize> {
    let token = args.next_bytes()?;
    parse_i64(token)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n <= args.remaining())
        .ok_or_else(|| QueryError::param(what, out_of_bounds(&show(token))))
}

/// Parses the arguments after `FT.AGGREGATE`.
pub fn parse_aggregate<A: AsRef<[u8]>>(items: &[A]) -> Result<AggregateRequest> {
    let mut args = Args::new(items);
    let mut request = AggregateRequest {
        index: args.next_str()?.to_owned(),
        query: args.next_str()?.to_owned(),
        load: None,
        steps: Vec::new(),
        params: Vec::new(),
        timeout_ms: None,
        partial: false,
        dialect: 2,
    };
    while !args.is_empty() {
        if let Some(partial) = parse_shards(&mut args) {
            request.partial = partial;
        } else if args.eat("VERBATIM") {
        } else if args.eat("SCORER") {
            // redis-py always sends `SCORER TFIDF`; text scoring does not shape
            // aggregate rows, so the scorer is read and ignored.
            args.next_bytes()?;
        } else if args.eat("ADDSCORES") {
        } else if args.eat("LOAD") {
            if args.eat("*") {
                request.load = Some(Vec::new());
            } else {
                let n = count(&mut args, "LOAD")?;
                let mut fields = request.load.take().unwrap_or_default();
                let mut group = args.take(n)?;
                while !group.is_empty() {
                    let field = field_name(group.next_str()?);
                    let name = if group.eat("AS") {
                        group.next_str()?.to_owned()
                    } else {
                        field.clone()
                    };
                    fields.push((field, name));
                }
                request.load = Some(fields);
            }
        } else if args.eat("GROUPBY") {
            let n = count(&mut args, "GROUPBY")?;
            let mut group = args.take(n)?;
            let mut fields = Vec::with_capacity(n);
            while !group.is_empty() {
                let token = group.next_str()?;
                if !token.starts_with('@') {
                    return Err(QueryError::Aggregate(format!(
                        "Bad arguments for GROUPBY: Unknown property `{token}`. Did you mean `@{token}`?"
                    )));
                }
                fields.push(field_name(token));
            }
            let mut reducers = Vec::new();
            while args.eat("REDUCE") {
                reducers.push(parse_reducer(&mut args)?);
            }
            request
                .steps
                .push(AggregateStep::GroupBy { fields, reducers });
        } else if args.eat("SORTBY") {
            let n = count(&mut args, "SORTBY")?;
            let mut group = args.take(n)?;
            let mut keys: Vec<(String, bool)> = Vec::new();
            while !group.is_empty() {
                let token = group.next_str()?;
                if token.eq_ignore_ascii_case("ASC") || token.eq_ignore_ascii_case("DESC") {
                    let Some(last) = keys.last_mut() else {
                        return Err(QueryError::UnexpectedArgument(token.to_owned()));
                    };
                    last.1 = token.eq_ignore_ascii_case("ASC");
                } else {
                    keys.push((field_name(token), true));
                }
            }
            let max = if args.eat("MAX") {
                let token = args.next_bytes()?;
                Some(
                    parse_i64(token)
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| QueryError::param("MAX", out_of_bounds(&show(token))))?,
                )
            } else {
                None
            };
            request.steps.push(AggregateStep::SortBy { keys, max });
        } else if args.eat("APPLY") {
            let expr = parse_expr(args.next_str()?)?;
            if !args.eat("AS") {
                return Err(QueryError::Aggregate(
                    "Bad arguments for APPLY: AS is required".into(),
                ));
            }
            let alias = args.next_str()?.to_owned();
            request.steps.push(AggregateStep::Apply { expr, alias });
        } else if args.eat("FILTER") {
            let expr = parse_expr(args.next_str()?)?;
            request.steps.push(AggregateStep::Filter(expr));
        } else if args.eat("LIMIT") {
            let (offset, num) = parse_limit(&mut args)?;
            request.steps.push(AggregateStep::Limit { offset, num });
        } else if args.eat("PARAMS") {
            request.params = parse_params(&mut args)?;
        } else if args.eat("TIMEOUT") {
            request.timeout_ms = Some(parse_timeout(&mut args)?);
        } else if args.eat("DIALECT") {
            request.dialect = parse_dialect(&mut args)?;
        } else {
            return Err(QueryError::UnexpectedArgument(show(args.next_bytes()?)));
        }
    }
    Ok(request)
}

fn parse_reducer<A: AsRef<[u8]>>(args: &mut Args<'_, A>) -> Result<Reducer> {
    let name = args.next_str()?;
    let kind = ReducerKind::parse(name)
        .ok_or_else(|| QueryError::Aggregate(format!("Unknown reducer `{name}`")))?;
    let n = count(args, "REDUCE")?;
    let mut group = args.take(n)?;
    let field = match kind {
        ReducerKind::Count => {
            if n != 0 {
                return Err(QueryError::Aggregate(
                    "Bad arguments for COUNT: expected 0 arguments".into(),
                ));
            }
            None
        }
        ReducerKind::Sum
        | ReducerKind::Min
        | ReducerKind::Max
        | ReducerKind::Avg
        | ReducerKind::CountDistinct
        | ReducerKind::ToList => {
            if n != 1 {
                return Err(QueryError::Aggregate(format!(
                    "Bad arguments for {}: expected 1 argument",
                    name.to_ascii_uppercase()
                )));
            }
            Some(field_name(group.next_str()?))
        }
    };
    let alias = if args.eat("AS") {
        args.next_str()?.to_owned()
    } else {
        // RediSearch's generated names: `__generated_alias<kind><field>`.
        format!(
            "__generated_alias{}{}",
            kind.name(),
            field.as_deref().unwrap_or("")
        )
    };
    Ok(Reducer { kind, field, alias })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_count_sort_desc() {
        // redis-py: AggregateRequest('*').group_by('@category', reducers.count().alias('count'))
        //           .sort_by(Desc('@count'))
        let r = parse_aggregate(&[
            "idx",
            "*",
            "GROUPBY",
            "1",
            "@category",
            "REDUCE",
            "COUNT",
            "0",
            "AS",
            "count",
            "SORTBY",
            "2",
            "@count",
            "DESC",
            "DIALECT",
            "2",
        ])
        .unwrap();
        assert_eq!(
            r.steps,
            vec![
                AggregateStep::GroupBy {
                    fields: vec!["category".into()],
                    reducers: vec![Reducer {
                        kind: ReducerKind::Count,
                        field: None,
                        alias: "count".into()
                    }]
                },
                AggregateStep::SortBy {
                    keys: vec![("count".into(), false)],
                    max: None
                },
            ]
        );
    }

    #[test]
    fn every_step_parses() {
        let r = parse_aggregate(&[
            "idx",
            "@price:[0 100]",
            "LOAD",
            "2",
            "@price",
            "@title",
            "APPLY",
            "@price * 2",
            "AS",
            "double",
            "FILTER",
            "@double > 10",
            "GROUPBY",
            "0",
            "REDUCE",
            "AVG",
            "1",
            "@double",
            "REDUCE",
            "COUNT_DISTINCT",
            "1",
            "@title",
            "LIMIT",
            "0",
            "5",
        ])
        .unwrap();
        assert_eq!(
            r.load,
            Some(vec![
                ("price".into(), "price".into()),
                ("title".into(), "title".into())
            ])
        );
        let renamed = parse_aggregate(&["i", "*", "LOAD", "3", "@price", "AS", "p"]).unwrap();
        assert_eq!(renamed.load, Some(vec![("price".into(), "p".into())]));
        assert_eq!(r.steps.len(), 4);
        let AggregateStep::GroupBy { reducers, .. } = &r.steps[2] else {
            panic!()
        };
        assert_eq!(reducers[1].alias, "__generated_aliascount_distincttitle");
    }

    #[test]
    fn errors() {
        assert!(parse_aggregate(&["i", "*", "GROUPBY", "1", "category"]).is_err());
        assert!(
            parse_aggregate(&["i", "*", "GROUPBY", "1", "@c", "REDUCE", "MEDIAN", "1", "@x"])
                .is_err()
        );
        assert!(parse_aggregate(&["i", "*", "GROUPBY", "5", "@c"]).is_err());
        assert!(parse_aggregate(&["i", "*", "APPLY", "1 +"]).is_err());
        assert!(parse_aggregate(&["i", "*", "APPLY", "1", "double"]).is_err());
    }
}
