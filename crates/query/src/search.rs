//! `FT.SEARCH <index> <query> [options]` into a [`SearchRequest`].

use crate::args::{parse_i64, show, Args};
use crate::error::{out_of_bounds, QueryError, Result};

/// Largest `offset + num` of a LIMIT.
pub const MAX_LIMIT: usize = 10_000;
/// Largest TIMEOUT in milliseconds.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// A field to return and the name to return it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnField {
    pub field: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortBy {
    pub field: String,
    pub ascending: bool,
}

/// Everything an FT.SEARCH says besides the query's meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub index: String,
    pub query: String,
    pub nocontent: bool,
    /// `None` returns every field.
    pub return_fields: Option<Vec<ReturnField>>,
    pub sort_by: Option<SortBy>,
    pub offset: usize,
    pub num: usize,
    pub params: Vec<(String, Vec<u8>)>,
    pub timeout_ms: Option<u64>,
    /// `SOMESHARDS`: over several shard groups, answer with the groups that answered
    /// within the timeout instead of failing (valkey-search's option; `ALLSHARDS`, the
    /// default, fails naming the group that did not answer).
    pub partial: bool,
    pub dialect: u32,
}

/// Reads `ALLSHARDS` or `SOMESHARDS` if it is next: whether partial results are asked for.
pub fn parse_shards<A: AsRef<[u8]>>(args: &mut Args<'_, A>) -> Option<bool> {
    if args.eat("ALLSHARDS") {
        Some(false)
    } else if args.eat("SOMESHARDS") {
        Some(true)
    } else {
        None
    }
}

/// Parses the arguments after `FT.SEARCH` (FT.AGGREGATE shares the PARAMS, TIMEOUT and
/// DIALECT readers).
pub fn parse_search<A: AsRef<[u8]>>(items: &[A]) -> Result<SearchRequest> {
    let mut args = Args::new(items);
    let index = args.next_str()?.to_owned();
    let query = args.next_str()?.to_owned();
    let mut request = SearchRequest {
        index,
        query,
        nocontent: false,
        return_fields: None,
        sort_by: None,
        offset: 0,
        num: 10,
        params: Vec::new(),
        timeout_ms: None,
        partial: false,
        dialect: 2,
    };
    while !args.is_empty() {
        if let Some(partial) = parse_shards(&mut args) {
            request.partial = partial;
        } else if args.eat("NOCONTENT") {
            request.nocontent = true;
        } else if args.eat("VERBATIM") || args.eat("NOSTOPWORDS") {
            // Full-text modifiers; nothing to change while TEXT is matched word by word.
        } else if args.eat("RETURN") {
            let fields = parse_return(&mut args)?;
            if fields.is_empty() {
                request.nocontent = true;
            }
            request.return_fields = Some(fields);
        } else if args.eat("SORTBY") {
            let field = args.next_str()?;
            let field = field.strip_prefix('@').unwrap_or(field).to_owned();
            let ascending = if args.eat("DESC") {
                false
            } else {
                args.eat("ASC");
                true
            };
            request.sort_by = Some(SortBy { field, ascending });
        } else if args.eat("LIMIT") {
            let (offset, num) = parse_limit(&mut args)?;
            request.offset = offset;
            request.num = num;
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

fn parse_return<A: AsRef<[u8]>>(args: &mut Args<'_, A>) -> Result<Vec<ReturnField>> {
    let count = args.next_bytes()?;
    let n = parse_i64(count)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| QueryError::param("RETURN", out_of_bounds(&show(count))))?;
    let mut group = args
        .take(n)
        .map_err(|_| QueryError::param("RETURN", "Missing argument"))?;
    let mut fields = Vec::new();
    while !group.is_empty() {
        let field = group.next_str()?;
        let field = field.strip_prefix('@').unwrap_or(field).to_owned();
        let name = if group.eat("AS") {
            group.next_str()?.to_owned()
        } else {
            field.clone()
        };
        fields.push(ReturnField { field, name });
    }
    Ok(fields)
}

/// `LIMIT offset num`.
pub fn parse_limit<A: AsRef<[u8]>>(args: &mut Args<'_, A>) -> Result<(usize, usize)> {
    let number = |args: &mut Args<'_, A>| -> Result<usize> {
        let token = args.next_bytes()?;
        parse_i64(token)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= MAX_LIMIT)
            .ok_or_else(|| QueryError::param("LIMIT", out_of_bounds(&show(token))))
    };
    let offset = number(args)?;
    let num = number(args)?;
    if offset + num > MAX_LIMIT {
        return Err(QueryError::param(
            "LIMIT",
            format!("offset plus count cannot exceed {MAX_LIMIT}"),
        ));
    }
    Ok((offset, num))
}

/// Up to this many PARAMS are checked for repeats by a scan, beyond it through a set.
const PARAM_SCAN: usize = 16;

/// `PARAMS n name value ...`.
pub fn parse_params<A: AsRef<[u8]>>(args: &mut Args<'_, A>) -> Result<Vec<(String, Vec<u8>)>> {
    let count = args
        .next_bytes()
        .map_err(|_| QueryError::param("PARAMS", "Missing argument"))?;
    let n = parse_i64(count)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| QueryError::param("PARAMS", out_of_bounds(&show(count))))?;
    if n % 2 != 0 {
        return Err(QueryError::param(
            "PARAMS",
            "Parameter count must be an even number.",
        ));
    }
    let mut group = args
        .take(n)
        .map_err(|_| QueryError::param("PARAMS", "Missing argument"))?;
    let mut params: Vec<(String, Vec<u8>)> = Vec::with_capacity(n / 2);
    // Names seen, in a set only once there are enough of them for a scan to cost more
    // (a search has one or two; the set's hashing and copies were most of this parse).
    let mut seen: Option<std::collections::HashSet<String>> = None;
    while !group.is_empty() {
        let name = group.next_str()?;
        let value = group.next_bytes()?;
        let repeated = match &mut seen {
            Some(names) => !names.insert(name.to_owned()),
            None if params.len() < PARAM_SCAN => params.iter().any(|(n, _)| n == name),
            None => {
                let mut names: std::collections::HashSet<String> =
                    params.iter().map(|(n, _)| n.clone()).collect();
                let repeated = !names.insert(name.to_owned());
                seen = Some(names);
                repeated
            }
        };
        if repeated {
            return Err(QueryError::param(
                "PARAMS",
                format!("Parameter {name} is already defined."),
            ));
        }
        params.push((name.to_owned(), value.to_vec()));
    }
    Ok(params)
}

/// `TIMEOUT ms`.
pub fn parse_timeout<A: AsRef<[u8]>>(args: &mut Args<'_, A>) -> Result<u64> {
    let token = args.next_bytes()?;
    parse_i64(token)
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| (1..=MAX_TIMEOUT_MS).contains(n))
        .ok_or(QueryError::Timeout)
}

/// `DIALECT n`: 2 to 4 behave alike here.
pub fn parse_dialect<A: AsRef<[u8]>>(args: &mut Args<'_, A>) -> Result<u32> {
    let token = args.next_bytes().map_err(|_| QueryError::Dialect)?;
    parse_i64(token)
        .filter(|n| (2..=4).contains(n))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(QueryError::Dialect)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(tokens: &[&str]) -> Result<SearchRequest> {
        parse_search(tokens)
    }

    #[test]
    fn redis_py_shape() {
        // What redis-py's Query(...).sort_by('score').return_fields(...).dialect(2) sends.
        let r = parse(&[
            "idx",
            "*=>[KNN 10 @vec $vec AS score]",
            "RETURN",
            "3",
            "title",
            "category",
            "score",
            "SORTBY",
            "score",
            "ASC",
            "LIMIT",
            "0",
            "10",
            "DIALECT",
            "2",
            "PARAMS",
            "2",
            "vec",
            "blob",
        ])
        .unwrap();
        assert_eq!(r.return_fields.as_ref().map(Vec::len), Some(3));
        assert_eq!(
            r.sort_by,
            Some(SortBy {
                field: "score".into(),
                ascending: true
            })
        );
        assert_eq!((r.offset, r.num, r.dialect), (0, 10, 2));
        assert_eq!(r.params[0].1, b"blob".to_vec());
    }

    #[test]
    fn return_with_aliases_and_zero() {
        let r = parse(&["i", "*", "RETURN", "4", "r1", "AS", "r11", "r2"]).unwrap();
        assert_eq!(
            r.return_fields.unwrap(),
            vec![
                ReturnField {
                    field: "r1".into(),
                    name: "r11".into()
                },
                ReturnField {
                    field: "r2".into(),
                    name: "r2".into()
                },
            ]
        );
        assert!(parse(&["i", "*", "RETURN", "0"]).unwrap().nocontent);
        assert_eq!(
            parse(&["i", "*", "RETURN", "3", "r1", "AS", "r11", "r2"]).unwrap_err(),
            QueryError::UnexpectedArgument("r2".into())
        );
    }

    /// A repeat is found whether it falls among the scanned names or past them, where a
    /// set takes over; distinct names are all kept, in order.
    #[test]
    fn repeated_params_are_found_past_the_scan() {
        let params = |names: &[String]| {
            let mut args: Vec<String> = vec!["i".into(), "*".into(), "PARAMS".into()];
            args.push((2 * names.len()).to_string());
            for (i, name) in names.iter().enumerate() {
                args.push(name.clone());
                args.push(i.to_string());
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            parse(&refs)
        };
        let distinct: Vec<String> = (0..3 * PARAM_SCAN).map(|i| format!("p{i}")).collect();
        let request = params(&distinct).unwrap();
        assert_eq!(request.params.len(), distinct.len());
        assert_eq!(
            request.params[PARAM_SCAN + 1],
            (
                format!("p{}", PARAM_SCAN + 1),
                (PARAM_SCAN + 1).to_string().into_bytes()
            )
        );
        for (at, of) in [
            (3, 1),
            (PARAM_SCAN, 2),
            (PARAM_SCAN + 1, PARAM_SCAN),
            (2 * PARAM_SCAN, 0),
        ] {
            let mut names = distinct.clone();
            names[at] = names[of].clone();
            let message = params(&names).unwrap_err().to_string();
            assert!(
                message.ends_with(&format!("Parameter p{of} is already defined.")),
                "{message}"
            );
        }
    }

    #[test]
    fn reference_errors() {
        let e = |t: &[&str]| parse(t).unwrap_err().to_string();
        assert_eq!(
            e(&["i", "*", "PARAMS", "1", "x"]),
            "Error parsing value for the parameter `PARAMS` - Parameter count must be an even number."
        );
        assert_eq!(
            e(&["i", "*", "PARAMS", "4", "EXTRA", "1"]),
            "Error parsing value for the parameter `PARAMS` - Missing argument"
        );
        assert_eq!(
            e(&["i", "*", "PARAMS", "4", "A", "1", "A", "2"]),
            "Error parsing value for the parameter `PARAMS` - Parameter A is already defined."
        );
        assert_eq!(
            e(&["i", "*", "DIALECT", "1"]),
            "DIALECT requires a non negative integer >=2 and <= 4"
        );
        assert_eq!(
            e(&["i", "*", "DIALECT", "x"]),
            "DIALECT requires a non negative integer >=2 and <= 4"
        );
        assert_eq!(
            e(&["i", "*", "TIMEOUT", "0"]),
            "TIMEOUT must be a positive integer greater than 0 and cannot exceed 60000."
        );
        assert_eq!(e(&["i", "*", "BOGUS"]), "Unexpected argument `BOGUS`");
        assert_eq!(e(&["i"]), "Missing argument");
        assert!(e(&["i", "*", "LIMIT", "0", "20000"]).contains("LIMIT"));
    }
}
