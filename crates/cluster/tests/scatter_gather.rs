//! The same data and queries give the same FT.SEARCH answers on one engine and spread
//! over 3 and 6 shards by the ring, merged the way the router merges them: exactly for
//! FLAT, and with recall against brute force for HNSW.

use rand::{Rng, SeedableRng};
use shoal_cluster::plan::{plan, Merge};
use shoal_cluster::router::search_reply;
use shoal_cluster::Ring;
use shoal_engine::{Engine, ReadContext, Reply, Write};

const NOW: u64 = 1_700_000_000_000;

fn args(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

/// A command from `;`-separated arguments, with `$VEC` replaced by `vector`.
fn command(line: &str, vector: &[u8]) -> Vec<Vec<u8>> {
    line.split(';')
        .map(|a| {
            if a == "$VEC" {
                vector.to_vec()
            } else {
                a.as_bytes().to_vec()
            }
        })
        .collect()
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// One engine per group of `ring`; every write goes to the key's group, as the router
/// sends it.
struct Sharded {
    ring: Ring,
    engines: Vec<Engine>,
}

impl Sharded {
    fn new(groups: u64) -> Sharded {
        Sharded {
            ring: Ring::new(0..groups),
            engines: (0..groups).map(|_| Engine::new()).collect(),
        }
    }

    fn write(&mut self, command: Vec<Vec<u8>>) {
        let p = plan(&self.ring, &command).unwrap_or_else(|| unreachable!());
        for part in p.parts {
            let replies = self.engines[part.group as usize].apply(&Write::single(NOW, part.args));
            assert!(!replies.iter().any(Reply::is_error), "{replies:?}");
        }
    }

    fn settle(&mut self) {
        for e in &mut self.engines {
            while e.backfill(100_000) {}
        }
    }

    fn search(&self, command: &[Vec<u8>], resp3: bool) -> Reply {
        let p = plan(&self.ring, command).unwrap_or_else(|| unreachable!());
        let Merge::Search {
            offset,
            num,
            sort,
            nocontent,
        } = &p.merge
        else {
            panic!("not a search plan: {:?}", p.merge)
        };
        let ctx = ReadContext {
            now_ms: NOW,
            resp3,
            in_apply: false,
        };
        let parts = p
            .parts
            .iter()
            .map(|part| {
                self.engines[part.group as usize].search_part(&part.args[1..], ctx, offset + num)
            })
            .collect();
        search_reply(parts, *offset, *num, sort.as_ref(), *nocontent, resp3)
    }
}

fn corpus(algo: &str, n: usize, dim: usize, seed: u64) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<f32>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut create = args(&[
        b"FT.CREATE",
        b"idx",
        b"ON",
        b"HASH",
        b"PREFIX",
        b"1",
        b"doc:",
        b"SCHEMA",
        b"tag",
        b"TAG",
        b"price",
        b"NUMERIC",
        b"title",
        b"TEXT",
        b"v",
        b"VECTOR",
    ]);
    let dim_s = dim.to_string();
    if algo == "FLAT" {
        create.extend(args(&[
            b"FLAT",
            b"6",
            b"TYPE",
            b"FLOAT32",
            b"DIM",
            dim_s.as_bytes(),
            b"DISTANCE_METRIC",
            b"L2",
        ]));
    } else {
        create.extend(args(&[
            b"HNSW",
            b"10",
            b"TYPE",
            b"FLOAT32",
            b"DIM",
            dim_s.as_bytes(),
            b"DISTANCE_METRIC",
            b"L2",
            b"M",
            b"16",
            b"EF_CONSTRUCTION",
            b"200",
        ]));
    }
    let mut writes = vec![create];
    let mut vectors = Vec::new();
    for i in 0..n {
        let v: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let key = format!("doc:{i}");
        let tag = format!("t{}", i % 5);
        let price = (i * 7 % 100).to_string();
        let title = format!("item {} of {}", i, if i % 2 == 0 { "even" } else { "odd" });
        writes.push(args(&[
            b"HSET",
            key.as_bytes(),
            b"tag",
            tag.as_bytes(),
            b"price",
            price.as_bytes(),
            b"title",
            title.as_bytes(),
            b"v",
            &bytes(&v),
        ]));
        vectors.push(v);
    }
    (writes, vectors)
}

fn load(groups: u64, writes: &[Vec<Vec<u8>>]) -> Sharded {
    let mut s = Sharded::new(groups);
    for w in writes {
        s.write(w.clone());
    }
    s.settle();
    s
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
    // `;` separates arguments; `$VEC` stands for the query vector's bytes.
    let queries: Vec<Vec<Vec<u8>>> = [
        "FT.SEARCH;idx;*=>[KNN 10 @v $q AS d];PARAMS;2;q;$VEC;DIALECT;2",
        "FT.SEARCH;idx;*=>[KNN 10 @v $q AS d];PARAMS;2;q;$VEC;SORTBY;d;RETURN;2;d;tag",
        "FT.SEARCH;idx;(@tag:{t1|t2})=>[KNN 7 @v $q];PARAMS;2;q;$VEC",
        "FT.SEARCH;idx;*=>[KNN 10 @v $q AS d];PARAMS;2;q;$VEC;LIMIT;2;5",
        "FT.SEARCH;idx;*=>[KNN 20 @v $q AS d];PARAMS;2;q;$VEC;SORTBY;price;ASC;LIMIT;0;10;RETURN;2;price;d",
        "FT.SEARCH;idx;@price:[10 50];SORTBY;price;DESC;LIMIT;3;12;RETURN;1;price",
        "FT.SEARCH;idx;@price:[(10 50];LIMIT;0;5",
        "FT.SEARCH;idx;*;NOCONTENT;LIMIT;0;20",
        "FT.SEARCH;idx;-@tag:{t3} @title:even;SORTBY;price;LIMIT;5;10",
        "FT.SEARCH;idx;@v:[VECTOR_RANGE 3 $q]=>{$YIELD_DISTANCE_AS: dist};PARAMS;2;q;$VEC;SORTBY;dist;LIMIT;0;15",
        "FT.SEARCH;idx;@tag:{t4};LIMIT;0;0",
        "FT.SEARCH;nope;*",
    ]
    .iter()
    .map(|line| command(line, &q))
    .collect();
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
