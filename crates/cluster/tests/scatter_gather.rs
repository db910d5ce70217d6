//! The same data and queries give the same FT.SEARCH and FT.AGGREGATE answers on one
//! engine and spread over 3 and 6 shards by the ring, merged the way the router merges
//! them: exactly for FLAT, and with recall against brute force for HNSW.

mod common;

use common::{args, bytes, command, corpus, load, rows_sorted, AGGREGATIONS, NOW, SEARCHES};
use rand::{Rng, SeedableRng};
use shoal_engine::Reply;

#[test]
fn flat_aggregations_are_identical_on_1_3_and_6_groups() {
    let (writes, vectors) = corpus("FLAT", 600, 8, 7);
    let one = load(1, &writes);
    let three = load(3, &writes);
    let six = load(6, &writes);
    let q = bytes(&vectors[3]);
    let queries = AGGREGATIONS;
    for (line, ordered) in queries {
        let query = command(line, &q);
        for resp3 in [false, true] {
            if !ordered && resp3 {
                continue;
            }
            let shape = |r: Reply| if *ordered { r } else { rows_sorted(r) };
            let expected = shape(one.aggregate(&query, resp3));
            assert_eq!(
                shape(three.aggregate(&query, resp3)),
                expected,
                "3 groups: {line}"
            );
            assert_eq!(
                shape(six.aggregate(&query, resp3)),
                expected,
                "6 groups: {line}"
            );
        }
    }
    // The answers hold rows (a merge of empty answers proves nothing).
    let rows = |line: &str| {
        let Reply::Array(items) = one.aggregate(&command(line, &q), false) else {
            panic!("{line}: not an array")
        };
        items.len() - 1
    };
    assert_eq!(rows(queries[0].0), 5);
    assert_eq!(rows(queries[3].0), 5);
    assert!((1..10).contains(&rows(queries[4].0)));
    assert_eq!(rows(queries[5].0), 7);
    assert_eq!(rows(queries[6].0), 5);
    assert!(rows(queries[10].0) > 10);
    assert!(matches!(
        one.aggregate(&command(queries[8].0, &q), false),
        Reply::Array(items) if items[1] == Reply::Array(vec![Reply::bulk("n"), Reply::bulk("600")])
    ));
}

#[test]
fn flat_answers_are_identical_on_1_3_and_6_groups() {
    let (writes, vectors) = corpus("FLAT", 600, 8, 7);
    let one = load(1, &writes);
    let three = load(3, &writes);
    let six = load(6, &writes);
    // Every group got a share of the documents.
    for s in [&three, &six] {
        assert!(s.engines.iter().all(|e| e.dbsize(NOW) > 30));
    }
    let q = bytes(&vectors[3]);
    let queries: Vec<Vec<Vec<u8>>> = SEARCHES.iter().map(|line| command(line, &q)).collect();
    for query in &queries {
        for resp3 in [false, true] {
            let expected = one.search(query, resp3);
            assert_eq!(
                three.search(query, resp3),
                expected,
                "3 groups: {}",
                String::from_utf8_lossy(&query[2])
            );
            assert_eq!(
                six.search(query, resp3),
                expected,
                "6 groups: {}",
                String::from_utf8_lossy(&query[2])
            );
        }
    }
    // The queries found something (a merge of empty answers proves nothing).
    let Reply::Array(first) = one.search(&queries[0], false) else {
        panic!()
    };
    assert_eq!(first[0], Reply::Int(10));
    let Reply::Array(range) = one.search(&queries[9], false) else {
        panic!()
    };
    assert!(
        matches!(range[0], Reply::Int(n) if n > 15),
        "{:?}",
        range[0]
    );
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

#[test]
fn hnsw_recall_over_3_and_6_groups_stays_above_0_95_at_ef_64() {
    let (writes, vectors) = corpus("HNSW", 3000, 16, 11);
    for groups in [3, 6] {
        let s = load(groups, &writes);
        let mut rng = rand::rngs::StdRng::seed_from_u64(99);
        let (mut found, mut wanted) = (0usize, 0usize);
        for _ in 0..50 {
            let q: Vec<f32> = (0..16).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let mut exact: Vec<(f32, usize)> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| (l2(v, &q), i))
                .collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0));
            let truth: Vec<Vec<u8>> = exact[..10]
                .iter()
                .map(|(_, i)| format!("doc:{i}").into_bytes())
                .collect();
            let query = args(&[
                b"FT.SEARCH",
                b"idx",
                b"*=>[KNN 10 @v $q EF_RUNTIME 64 AS d]",
                b"PARAMS",
                b"2",
                b"q",
                &bytes(&q),
                b"NOCONTENT",
            ]);
            let Reply::Array(reply) = s.search(&query, false) else {
                panic!("not an array")
            };
            assert_eq!(reply[0], Reply::Int(10));
            let got: Vec<&Vec<u8>> = reply[1..]
                .iter()
                .filter_map(|r| {
                    if let Reply::Bulk(k) = r {
                        Some(k)
                    } else {
                        None
                    }
                })
                .collect();
            found += truth.iter().filter(|t| got.contains(t)).count();
            wanted += 10;
        }
        let recall = found as f64 / wanted as f64;
        assert!(recall >= 0.95, "{groups} groups: recall {recall}");
    }
}
