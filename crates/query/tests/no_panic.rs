//! Every parser on arbitrary input: an answer or an error, never a panic. The cargo-fuzz
//! targets in `fuzz/` explore further; these run on stable in every `make test`.

use proptest::prelude::*;

/// Tokens drawn from the grammar's keywords and numbers, plus arbitrary strings, so that
/// generated commands get deep into the parsers instead of failing at the first token.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "SCHEMA",
            "ON",
            "HASH",
            "JSON",
            "PREFIX",
            "SCORE",
            "LANGUAGE",
            "SKIPINITIALSCAN",
            "VECTOR",
            "HNSW",
            "FLAT",
            "TYPE",
            "FLOAT32",
            "DIM",
            "DISTANCE_METRIC",
            "L2",
            "IP",
            "COSINE",
            "M",
            "EF_CONSTRUCTION",
            "EF_RUNTIME",
            "INITIAL_CAP",
            "BLOCK_SIZE",
            "TAG",
            "SEPARATOR",
            "CASESENSITIVE",
            "NUMERIC",
            "TEXT",
            "WEIGHT",
            "AS",
            "SORTABLE",
            "NOCONTENT",
            "RETURN",
            "SORTBY",
            "ASC",
            "DESC",
            "LIMIT",
            "PARAMS",
            "TIMEOUT",
            "DIALECT",
            "LOAD",
            "GROUPBY",
            "REDUCE",
            "COUNT",
            "SUM",
            "AVG",
            "TOLIST",
            "APPLY",
            "FILTER",
            "MAX",
            "*",
            "@f",
            "0",
            "1",
            "2",
            "4",
            "6",
            "-1",
            "999999999999",
            "1.5",
            "inf",
            "nan",
            "",
            "$p",
        ])
        .prop_map(str::to_owned),
        ".{0,12}",
    ]
}

fn query_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "(",
                ")",
                "|",
                "-",
                "*",
                "@t:",
                "@n:",
                "@v:",
                "{",
                "}",
                "[",
                "]",
                "=>",
                "KNN",
                "VECTOR_RANGE",
                "$q",
                "$k",
                "AS",
                "EF_RUNTIME",
                " ",
                "10",
                "(5",
                "inf",
                "a*",
                "\\",
                "\"",
                ";",
                "$YIELD_DISTANCE_AS:",
                "{$EPSILON: 0.1}",
            ])
            .prop_map(str::to_owned),
            ".{0,4}",
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn schema_parser_never_panics(tokens in prop::collection::vec(token(), 0..30)) {
        let _ = shoal_query::schema::parse_create(&tokens);
    }

    #[test]
    fn search_and_aggregate_options_never_panic(tokens in prop::collection::vec(token(), 0..30)) {
        let _ = shoal_query::search::parse_search(&tokens);
        let _ = shoal_query::aggregate::parse_aggregate(&tokens);
    }

    #[test]
    fn query_parse_and_bind_never_panic(text in query_text()) {
        if let Ok(parsed) = shoal_query::filter::parse_query(&text) {
            let schema = shoal_query::schema::parse_create(&[
                "idx", "SCHEMA", "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "2",
                "DISTANCE_METRIC", "L2", "t", "TAG", "n", "NUMERIC",
            ]).unwrap();
            let params = vec![("q".to_owned(), vec![0u8; 8]), ("k".to_owned(), b"3".to_vec())];
            let _ = shoal_query::plan::bind(&schema, &parsed, &params);
        }
    }

    #[test]
    fn expressions_never_panic(text in query_text()) {
        if let Ok(e) = shoal_query::expr::parse_expr(&text) {
            let _ = e.eval(&|_| None);
        }
    }
}
