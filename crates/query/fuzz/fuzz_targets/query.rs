//! The query language: any string parses or errors, and a parsed query binds against a
//! schema with arbitrary PARAMS without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = shoal_query::filter::parse_query(text) else {
        return;
    };
    let schema = shoal_query::schema::parse_create(&[
        "idx", "SCHEMA", "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "2",
        "DISTANCE_METRIC", "L2", "t", "TAG", "n", "NUMERIC", "x", "TEXT",
    ])
    .expect("the fixed schema parses");
    let params = vec![
        ("v".to_owned(), vec![0u8; 8]),
        ("k".to_owned(), b"5".to_vec()),
        ("r".to_owned(), b"0.5".to_vec()),
    ];
    let _ = shoal_query::plan::bind(&schema, &parsed, &params);
});
