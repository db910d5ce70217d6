//! `FT.AGGREGATE <index> <query> [steps...]` into an [`AggregateRequest`].
//!
//! The steps run in the order written, as in RediSearch: each of LOAD, GROUPBY (with its
//! REDUCE clauses), SORTBY, APPLY, FILTER and LIMIT transforms the rows of the previous.

use crate::args::{parse_f64, parse_i64, show, Args};
use crate::error::{out_of_bounds, QueryError, Result};
use crate::expr::{parse_expr, Expr};
use crate::search::{parse_dialect, parse_limit, parse_params, parse_shards, parse_timeout};

/// A REDUCE function, with the options its arguments give it.
///
/// MemoryDB's list: COUNT, COUNT_DISTINCT(ISH), SUM, MIN, MAX, AVG, STDDEV, QUANTILE,
/// TOLIST, FIRST_VALUE and RANDOM_SAMPLE.
#[derive(Debug, Clone, PartialEq)]
pub enum ReducerKind {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    /// The sample standard deviation (divided by n − 1) of the numbers, as RediSearch's.
    StdDev,
    /// The value at this fraction (0 to 1) of the group's numbers in order.
    Quantile(f64),
    CountDistinct,
    /// RediSearch counts these with a HyperLogLog; counted exactly here, which is
    /// within any approximation's bounds.
    CountDistinctish,
    ToList,
    /// The field's value in the group's first row, or in its first row ordered by
    /// `by` (a field without `@`, ascending when true).
    FirstValue {
        by: Option<(String, bool)>,
    },
    /// Up to this many of the field's values, drawn uniformly at random.
    RandomSample(usize),
}

/// RediSearch's bound on RANDOM_SAMPLE's size.
pub const MAX_SAMPLE: usize = 1000;

impl ReducerKind {
    /// FIRST_VALUE's `BY` field and whether it ascends.
    pub fn first_by(&self) -> Option<(&str, bool)> {
        if let ReducerKind::FirstValue {
            by: Some((field, ascending)),
        } = self
        {
            Some((field.as_str(), *ascending))
        } else {
            None
        }
    }

    /// RANDOM_SAMPLE's size; 0 for any other reducer.
    pub fn sample_size(&self) -> usize {
        if let ReducerKind::RandomSample(size) = self {
            *size
        } else {
            0
        }
    }

    /// QUANTILE's fraction; the median for any other reducer.
    pub fn quantile(&self) -> f64 {
        if let ReducerKind::Quantile(q) = self {
            *q
        } else {
            0.5
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ReducerKind::Count => "count",
            ReducerKind::Sum => "sum",
            ReducerKind::Min => "min",
            ReducerKind::Max => "max",
            ReducerKind::Avg => "avg",
            ReducerKind::StdDev => "stddev",
            ReducerKind::Quantile(_) => "quantile",
            ReducerKind::CountDistinct => "count_distinct",
            ReducerKind::CountDistinctish => "count_distinctish",
            ReducerKind::ToList => "tolist",
            ReducerKind::FirstValue { .. } => "first_value",
            ReducerKind::RandomSample(_) => "random_sample",
        }
    }
}

/// `REDUCE <kind> <nargs> <args> [AS alias]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reducer {
    pub kind: ReducerKind,
    /// The field the reducer reads (none for COUNT), without `@`.
    pub field: Option<String>,
    pub alias: String,
}

impl Reducer {
    /// The fields this reducer reads from a row: its own and FIRST_VALUE's `BY`.
    pub fn reads(&self) -> impl Iterator<Item = &str> {
        let by = self.kind.first_by().map(|(field, _)| field);
        self.field.as_deref().into_iter().chain(by)
    }
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

/// The tokens of a `<nargs>` group, as text, without consuming them.
fn args_of<A: AsRef<[u8]>>(group: &Args<'_, A>) -> Vec<String> {
    (0..group.remaining())
        .filter_map(|i| group.peek_at(i))
        .map(show)
        .collect()
}

fn parse_reducer<A: AsRef<[u8]>>(args: &mut Args<'_, A>) -> Result<Reducer> {
    let name = args.next_str()?;
    let upper = name.to_ascii_uppercase();
    let n = count(args, "REDUCE")?;
    let mut group = args.take(n)?;
    // RediSearch's generated name: `__generated_alias`, the function and its arguments
    // without `@`, comma-separated, all lower-cased (`...quantileprice,0.5`), so that two
    // reducers of one field get two columns.
    let generated = {
        let args = args_of(&group);
        let args: Vec<&str> = args.iter().map(|a| a.trim_start_matches('@')).collect();
        format!("__generated_alias{name}{}", args.join(",")).to_lowercase()
    };
    let arity = |allowed: &[usize], expected: &str| -> Result<()> {
        if allowed.contains(&n) {
            Ok(())
        } else {
            Err(QueryError::Aggregate(format!(
                "Bad arguments for {upper}: expected {expected}"
            )))
        }
    };
    let (kind, field) = match upper.as_str() {
        "COUNT" => {
            arity(&[0], "0 arguments")?;
            (ReducerKind::Count, None)
        }
        "SUM" | "MIN" | "MAX" | "AVG" | "STDDEV" | "COUNT_DISTINCT" | "COUNT_DISTINCTISH"
        | "TOLIST" => {
            arity(&[1], "1 argument")?;
            let kind = match upper.as_str() {
                "SUM" => ReducerKind::Sum,
                "MIN" => ReducerKind::Min,
                "MAX" => ReducerKind::Max,
                "AVG" => ReducerKind::Avg,
                "STDDEV" => ReducerKind::StdDev,
                "COUNT_DISTINCT" => ReducerKind::CountDistinct,
                "COUNT_DISTINCTISH" => ReducerKind::CountDistinctish,
                _ => ReducerKind::ToList,
            };
            (kind, Some(field_name(group.next_str()?)))
        }
        // QUANTILE <field> <q> [<resolution>]: the resolution tunes RediSearch's
        // streaming estimate; the quantile here is exact, so it is read and ignored.
        "QUANTILE" => {
            arity(&[2, 3], "2 or 3 arguments")?;
            let field = field_name(group.next_str()?);
            let token = group.next_bytes()?;
            let q = parse_f64(token)
                .filter(|q| (0.0..=1.0).contains(q))
                .ok_or_else(|| {
                    QueryError::Aggregate(format!(
                        "Bad arguments for QUANTILE: quantile `{}` must be between 0.0 and 1.0",
                        show(token)
                    ))
                })?;
            if !group.is_empty() {
                let token = group.next_bytes()?;
                if parse_i64(token).is_none_or(|r| r <= 0) {
                    return Err(QueryError::Aggregate(format!(
                        "Bad arguments for QUANTILE: resolution `{}` must be a positive integer",
                        show(token)
                    )));
                }
            }
            (ReducerKind::Quantile(q), Some(field))
        }
        // FIRST_VALUE <field> [BY <field> [ASC|DESC]]
        "FIRST_VALUE" => {
            arity(&[1, 3, 4], "1, 3 or 4 arguments")?;
            let field = field_name(group.next_str()?);
            let by = if group.is_empty() {
                None
            } else {
                if !group.eat("BY") {
                    return Err(QueryError::Aggregate(format!(
                        "Bad arguments for FIRST_VALUE: expected BY, got `{}`",
                        show(group.next_bytes()?)
                    )));
                }
                let by = field_name(group.next_str()?);
                let ascending = if group.is_empty() || group.eat("ASC") {
                    true
                } else if group.eat("DESC") {
                    false
                } else {
                    return Err(QueryError::Aggregate(format!(
                        "Bad arguments for FIRST_VALUE: expected ASC or DESC, got `{}`",
                        show(group.next_bytes()?)
                    )));
                };
                Some((by, ascending))
            };
            (ReducerKind::FirstValue { by }, Some(field))
        }
        // RANDOM_SAMPLE <field> <size>
        "RANDOM_SAMPLE" => {
            arity(&[2], "2 arguments")?;
            let field = field_name(group.next_str()?);
            let token = group.next_bytes()?;
            let size = parse_i64(token)
                .and_then(|s| usize::try_from(s).ok())
                .filter(|s| (1..=MAX_SAMPLE).contains(s))
                .ok_or_else(|| {
                    QueryError::Aggregate(format!(
                        "Bad arguments for RANDOM_SAMPLE: sample size `{}` must be between 1 and {MAX_SAMPLE}",
                        show(token)
                    ))
                })?;
            (ReducerKind::RandomSample(size), Some(field))
        }
        _ => return Err(QueryError::Aggregate(format!("Unknown reducer `{name}`"))),
    };
    let alias = if args.eat("AS") {
        args.next_str()?.to_owned()
    } else {
        generated
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
    fn reducer_of(args: &[&str]) -> Result<Reducer> {
        let mut all = vec!["i", "*", "GROUPBY", "1", "@c", "REDUCE"];
        all.extend_from_slice(args);
        let request = parse_aggregate(&all)?;
        let Some(AggregateStep::GroupBy { reducers, .. }) = request.steps.first() else {
            panic!("one GROUPBY")
        };
        Ok(reducers[0].clone())
    }

    /// MemoryDB's reducers beyond SPEC's seven, with their arguments.
    #[test]
    fn memorydb_reducers_parse() {
        let r = reducer_of(&["STDDEV", "1", "@n"]).unwrap();
        assert_eq!(r.kind, ReducerKind::StdDev);
        assert_eq!(r.alias, "__generated_aliasstddevn");
        // Generated names carry every argument, as RediSearch's do.
        let r = reducer_of(&["QUANTILE", "2", "@Price", "0.5"]).unwrap();
        assert_eq!(r.alias, "__generated_aliasquantileprice,0.5");
        let r = reducer_of(&["first_value", "4", "@title", "BY", "@price", "DESC"]).unwrap();
        assert_eq!(r.alias, "__generated_aliasfirst_valuetitle,by,price,desc");
        let r = reducer_of(&["quantile", "2", "@n", "0.25", "AS", "q"]).unwrap();
        assert_eq!(r.kind, ReducerKind::Quantile(0.25));
        assert_eq!((r.field.as_deref(), r.alias.as_str()), (Some("n"), "q"));
        assert_eq!(
            reducer_of(&["QUANTILE", "3", "@n", "1", "500"])
                .unwrap()
                .kind,
            ReducerKind::Quantile(1.0)
        );
        assert_eq!(
            reducer_of(&["COUNT_DISTINCTISH", "1", "@t"]).unwrap().kind,
            ReducerKind::CountDistinctish
        );
        let r = reducer_of(&["FIRST_VALUE", "4", "@name", "BY", "@age", "DESC"]).unwrap();
        assert_eq!(
            r.kind,
            ReducerKind::FirstValue {
                by: Some(("age".into(), false))
            }
        );
        assert_eq!(r.reads().collect::<Vec<_>>(), ["name", "age"]);
        let r = reducer_of(&["FIRST_VALUE", "3", "@name", "BY", "@age"]).unwrap();
        assert_eq!(
            r.kind,
            ReducerKind::FirstValue {
                by: Some(("age".into(), true))
            }
        );
        let r = reducer_of(&["FIRST_VALUE", "1", "@name"]).unwrap();
        assert_eq!(r.kind, ReducerKind::FirstValue { by: None });
        assert_eq!(r.reads().collect::<Vec<_>>(), ["name"]);
        let r = reducer_of(&["RANDOM_SAMPLE", "2", "@t", "3"]).unwrap();
        assert_eq!(r.kind, ReducerKind::RandomSample(3));
    }

    #[test]
    fn memorydb_reducer_errors() {
        let error = |args: &[&str]| match reducer_of(args) {
            Err(QueryError::Aggregate(text)) => text,
            other => panic!("{args:?}: {other:?}"),
        };
        assert_eq!(
            error(&["STDDEV", "2", "@n", "@m"]),
            "Bad arguments for STDDEV: expected 1 argument"
        );
        assert_eq!(
            error(&["QUANTILE", "2", "@n", "1.5"]),
            "Bad arguments for QUANTILE: quantile `1.5` must be between 0.0 and 1.0"
        );
        assert!(error(&["QUANTILE", "2", "@n", "x"]).contains("between 0.0 and 1.0"));
        assert!(error(&["QUANTILE", "1", "@n"]).contains("expected 2 or 3 arguments"));
        assert!(error(&["QUANTILE", "3", "@n", "0.5", "0"]).contains("resolution `0`"));
        assert!(error(&["FIRST_VALUE", "3", "@n", "ON", "@m"]).contains("expected BY"));
        assert!(error(&["FIRST_VALUE", "4", "@n", "BY", "@m", "UP"]).contains("ASC or DESC"));
        assert!(error(&["FIRST_VALUE", "2", "@n", "BY"]).contains("1, 3 or 4 arguments"));
        assert!(error(&["RANDOM_SAMPLE", "2", "@t", "0"]).contains("between 1 and 1000"));
        assert!(error(&["RANDOM_SAMPLE", "2", "@t", "1001"]).contains("between 1 and 1000"));
        assert!(error(&["RANDOM_SAMPLE", "1", "@t"]).contains("expected 2 arguments"));
        assert_eq!(error(&["MEDIAN", "1", "@n"]), "Unknown reducer `MEDIAN`");
    }
}
