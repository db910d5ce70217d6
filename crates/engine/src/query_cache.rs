//! FT.SEARCH query texts parsed once per thread, looked up by their text.
//!
//! Clients send the same query text again and again with new PARAMS: a KNN template
//! (`*=>[KNN 10 @vec $vec AS score]`, redis-py's and LangChain's), a filter with `$`
//! parameters. Parsing is a pure function of the text, so a parse kept from an earlier
//! search is exactly what parsing again would give; binding (which needs the index's
//! schema and the PARAMS) still runs for every search. In the server the parser's code
//! and tables are cold between one client's searches: a lookup is one hash of the text.
//!
//! Per thread, so a lookup takes no lock and the entries stay in the cache of the core
//! that made them. Bounded in entries, and in the length and predicates of a query
//! kept; when full, the cache starts over rather than keeping order for an eviction
//! policy: a workload with more distinct texts than it holds gains little from any
//! policy, and loses only the hash and one copy of the text per search.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use shoal_query::{filter::parse_query, ParsedQuery, QueryError};

/// Texts kept per thread.
const ENTRIES: usize = 64;
/// Longer texts are parsed every time: they are rarely repeated verbatim, and a full
/// cache of them would hold `ENTRIES` times this much.
const LONGEST: usize = 1024;
/// Nor is a parse of more predicates kept: a short text can still hold hundreds
/// (`a|b|c|...`), each an allocation of the tree, and 64 such trees would take megabytes
/// per thread. A KNN template has one, a typical filter a few.
const MOST_TERMS: usize = 64;

type Cache = HashMap<Box<str>, Arc<ParsedQuery>>;

thread_local! {
    static PARSED: RefCell<Cache> = RefCell::new(Cache::with_capacity(ENTRIES));
}

/// [`parse_query`], from this thread's cache when the text was parsed here before.
/// Errors are not kept: a query that does not parse is parsed again (and refused again)
/// each time.
pub fn parse(text: &str) -> Result<Arc<ParsedQuery>, QueryError> {
    if text.len() > LONGEST {
        return parse_query(text).map(Arc::new);
    }
    if let Some(hit) = PARSED.with_borrow(|cache| cache.get(text).cloned()) {
        return Ok(hit);
    }
    let parsed = Arc::new(parse_query(text)?);
    if parsed.filter.terms() > MOST_TERMS {
        return Ok(parsed);
    }
    PARSED.with_borrow_mut(|cache| {
        if cache.len() >= ENTRIES {
            cache.clear();
        }
        cache.insert(text.into(), Arc::clone(&parsed));
    });
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(text: &str) -> bool {
        PARSED.with_borrow(|cache| cache.contains_key(text))
    }

    /// A kept parse is the parse: the same texts, first parsed and then looked up, give
    /// what the parser gives, and the second time comes from the cache.
    #[test]
    fn a_kept_parse_is_what_the_parser_gives() {
        let texts = [
            "*=>[KNN 10 @vec $q EF_RUNTIME 20 AS score]",
            "@tag:{a|b*} @n:[(1 +inf]=>[KNN $k @vec $q]",
            "(@t:{x} | -@n:[-inf 5])",
            "@v:[VECTOR_RANGE 0.5 $q]=>{$YIELD_DISTANCE_AS: d}",
            "*",
        ];
        for text in texts {
            let expected = parse_query(text).expect("the test's queries parse");
            assert_eq!(*parse(text).expect("parses"), expected, "{text}");
            assert!(cached(text), "{text}");
            let again = parse(text).expect("parses");
            assert_eq!(*again, expected, "{text}");
        }
    }

    /// Errors are the parser's, every time, and never kept.
    #[test]
    fn a_bad_query_is_refused_every_time() {
        let text = "*=>[KNN ten @vec $q]";
        let expected = parse_query(text).expect_err("k must be a number or a parameter");
        for _ in 0..2 {
            assert_eq!(parse(text).expect_err("refused"), expected);
            assert!(!cached(text));
        }
    }

    /// The bounds: a full cache starts over, and a text over the length limit, or with
    /// more predicates than a kept parse may hold, is parsed without being kept (its
    /// answer is the parser's all the same).
    #[test]
    fn the_cache_stays_bounded() {
        for i in 0..ENTRIES * 3 {
            let text = format!("@n:[{i} {}]", i + 1);
            assert_eq!(
                *parse(&text).expect("parses"),
                parse_query(&text).expect("parses")
            );
            assert!(PARSED.with_borrow(|cache| cache.len()) <= ENTRIES);
        }
        let long = format!("@t:{{{}}}", "a".repeat(LONGEST));
        assert_eq!(
            *parse(&long).expect("parses"),
            parse_query(&long).expect("parses")
        );
        assert!(!cached(&long));
        let many: Vec<String> = (0..=MOST_TERMS).map(|i| format!("t{i}")).collect();
        let wide = format!("@t:{{{}}}", many.join("|"));
        assert!(wide.len() <= LONGEST);
        assert_eq!(
            *parse(&wide).expect("parses"),
            parse_query(&wide).expect("parses")
        );
        assert!(!cached(&wide));
        let narrow = format!("@t:{{{}}}", many[..MOST_TERMS].join("|"));
        parse(&narrow).expect("parses");
        assert!(cached(&narrow));
    }
}
