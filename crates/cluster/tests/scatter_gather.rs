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

/// A query drawn as the corpus's vectors are.
fn random_query(rng: &mut rand::rngs::StdRng) -> Vec<f32> {
    (0..16).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

/// Brute force: the documents `admits` lets in, nearest first, with their distances.
fn nearest(vectors: &[Vec<f32>], q: &[f32], admits: impl Fn(usize) -> bool) -> Vec<(f32, usize)> {
    let mut exact: Vec<(f32, usize)> = vectors
        .iter()
        .enumerate()
        .filter(|(i, _)| admits(*i))
        .map(|(i, v)| (l2(v, q), i))
        .collect();
    exact.sort_by(|a, b| a.0.total_cmp(&b.0));
    exact
}

#[test]
fn hnsw_recall_over_3_and_6_groups_stays_above_0_95_at_ef_64() {
    let (writes, vectors) = corpus("HNSW", 3000, 16, 11);
    for groups in [3, 6] {
        let s = load(groups, &writes);
        let mut rng = rand::rngs::StdRng::seed_from_u64(99);
        let (mut found, mut wanted) = (0usize, 0usize);
        for _ in 0..50 {
            let q = random_query(&mut rng);
            let exact = nearest(&vectors, &q, |_| true);
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

/// A page of an FT.SEARCH that returns `d`, in RESP2: the total, and each key with the
/// distance it was returned with.
fn keys_and_distances(reply: Reply) -> (i64, Vec<(String, f32)>) {
    let Reply::Array(items) = reply else {
        panic!("not an array: {reply:?}")
    };
    let Reply::Int(total) = items[0] else {
        panic!("no total: {:?}", items[0])
    };
    let hits = items[1..]
        .chunks(2)
        .map(|hit| {
            let (Reply::Bulk(key), Reply::Array(fields)) = (&hit[0], &hit[1]) else {
                panic!("not a key and its fields: {hit:?}")
            };
            let Some(Reply::Bulk(d)) = fields.get(1) else {
                panic!("no distance: {fields:?}")
            };
            let (Ok(key), Some(d)) = (
                String::from_utf8(key.clone()),
                std::str::from_utf8(d)
                    .ok()
                    .and_then(|d| d.parse::<f32>().ok()),
            ) else {
                panic!("not a key and a number: {hit:?}")
            };
            (key, d)
        })
        .collect();
    (total, hits)
}

/// A KNN's filter, which documents it admits, and how many of the nearest a page shows.
type Shape<'a> = (&'static str, &'a dyn Fn(usize) -> bool, usize);

/// The shapes a KNN takes over groups, each against brute force over the documents it
/// admits: TAG, NUMERIC and both as pre-filters, LIMIT paging the k nearest, and the
/// distance RETURNed, which must be the vector's own.
#[test]
fn hnsw_recall_over_3_and_6_groups_with_filters_limit_and_return_stays_above_0_95_at_ef_64() {
    let (writes, vectors) = corpus("HNSW", 3000, 16, 11);
    // The corpus's fields: tag t{i % 5}, price i * 7 % 100.
    let tag = |i: usize| i % 5 == 1 || i % 5 == 3;
    let cheap = |i: usize| i * 7 % 100 <= 49;
    let shapes: [Shape; 4] = [
        ("@tag:{t1|t3}", &tag, 10),
        ("@price:[0 49]", &cheap, 10),
        ("(@tag:{t1|t3} @price:[0 49])", &|i| tag(i) && cheap(i), 10),
        // LIMIT 0 5: the first five of the ten nearest.
        ("*", &|_| true, 5),
    ];
    for groups in [3, 6] {
        let s = load(groups, &writes);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (filter, admits, shown) in shapes {
            let (mut found, mut wanted) = (0usize, 0usize);
            for _ in 0..40 {
                let q = random_query(&mut rng);
                let exact = nearest(&vectors, &q, admits);
                let truth: Vec<String> = exact[..shown]
                    .iter()
                    .map(|(_, i)| format!("doc:{i}"))
                    .collect();
                let query = format!("{filter}=>[KNN 10 @v $q EF_RUNTIME 64 AS d]");
                let shown_s = shown.to_string();
                let request = args(&[
                    b"FT.SEARCH",
                    b"idx",
                    query.as_bytes(),
                    b"PARAMS",
                    b"2",
                    b"q",
                    &bytes(&q),
                    b"RETURN",
                    b"1",
                    b"d",
                    b"LIMIT",
                    b"0",
                    shown_s.as_bytes(),
                    b"DIALECT",
                    b"2",
                ]);
                let (total, hits) = keys_and_distances(s.search(&request, false));
                assert_eq!(total, 10, "{groups} groups, {filter}");
                assert_eq!(hits.len(), shown, "{groups} groups, {filter}");
                for (key, d) in &hits {
                    let i: usize = key["doc:".len()..].parse().unwrap();
                    assert!(
                        admits(i),
                        "{groups} groups, {filter}: {key} is not admitted"
                    );
                    let own = l2(&vectors[i], &q);
                    assert!(
                        (d - own).abs() <= 1e-4 * own.max(1.0),
                        "{key}: {d} vs {own}"
                    );
                }
                assert!(
                    hits.windows(2).all(|w| w[0].1 <= w[1].1),
                    "{groups} groups, {filter}: not nearest first: {hits:?}"
                );
                found += truth
                    .iter()
                    .filter(|t| hits.iter().any(|(k, _)| k == *t))
                    .count();
                wanted += shown;
            }
            let recall = found as f64 / wanted as f64;
            assert!(recall >= 0.95, "{groups} groups, {filter}: recall {recall}");
        }
    }
}

/// VECTOR_RANGE over groups on HNSW: every document within the radius, against brute
/// force, each group's part walking its own graph.
#[test]
fn hnsw_vector_range_over_3_and_6_groups_finds_the_documents_within_the_radius() {
    let (writes, vectors) = corpus("HNSW", 3000, 16, 11);
    for groups in [3, 6] {
        let s = load(groups, &writes);
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let (mut found, mut wanted) = (0usize, 0usize);
        for _ in 0..40 {
            let q = random_query(&mut rng);
            let exact = nearest(&vectors, &q, |_| true);
            // A radius between the 30th and 31st nearest: thirty documents inside.
            let radius = (exact[29].0 + exact[30].0) / 2.0;
            let truth: Vec<String> = exact[..30]
                .iter()
                .map(|(_, i)| format!("doc:{i}"))
                .collect();
            let radius_s = radius.to_string();
            let request = args(&[
                b"FT.SEARCH",
                b"idx",
                b"@v:[VECTOR_RANGE $r $q]=>{$YIELD_DISTANCE_AS: d}",
                b"PARAMS",
                b"4",
                b"r",
                radius_s.as_bytes(),
                b"q",
                &bytes(&q),
                b"SORTBY",
                b"d",
                b"RETURN",
                b"1",
                b"d",
                b"LIMIT",
                b"0",
                b"100",
                b"DIALECT",
                b"2",
            ]);
            let (total, hits) = keys_and_distances(s.search(&request, false));
            assert_eq!(total as usize, hits.len(), "{groups} groups");
            for (key, d) in &hits {
                assert!(*d <= radius * (1.0 + 1e-5), "{key} at {d}, beyond {radius}");
            }
            assert!(
                hits.windows(2).all(|w| w[0].1 <= w[1].1),
                "not sorted: {hits:?}"
            );
            found += truth
                .iter()
                .filter(|t| hits.iter().any(|(k, _)| k == *t))
                .count();
            wanted += truth.len();
        }
        let recall = found as f64 / wanted as f64;
        assert!(recall >= 0.95, "{groups} groups: recall {recall}");
    }
}
