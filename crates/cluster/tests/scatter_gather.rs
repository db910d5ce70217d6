//! The same data and queries give the same FT.SEARCH and FT.AGGREGATE answers on one
//! engine and spread over 3 and 6 shards by the ring, merged the way the router merges
//! them: exactly for FLAT, and with recall against brute force for HNSW.

use rand::{Rng, SeedableRng};
use shoal_cluster::plan::{plan, Merge};
use shoal_cluster::router::{aggregate_reply, search_reply};
use shoal_cluster::Routing;
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
    ring: Routing,
    engines: Vec<Engine>,
}

impl Sharded {
    fn new(groups: u64) -> Sharded {
        Sharded {
            ring: Routing::stable(0..groups, 0),
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
            ..
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

    /// An FT.AGGREGATE as the router runs it: one engine answers it whole, several
    /// give parts the router finishes.
    fn aggregate(&self, command: &[Vec<u8>], resp3: bool) -> Reply {
        let p = plan(&self.ring, command).unwrap_or_else(|| unreachable!());
        let ctx = ReadContext {
            now_ms: NOW,
            resp3,
            in_apply: false,
        };
        match &p.merge {
            Merge::Single => self.engines[p.parts[0].group as usize].query(command, ctx),
            Merge::Aggregate(request) => {
                let parts = p
                    .parts
                    .iter()
                    .map(|part| {
                        self.engines[part.group as usize].aggregate_part(&part.args[1..], ctx)
                    })
                    .collect();
                aggregate_reply(request, parts, resp3)
            }
            other @ (Merge::Sum
            | Merge::AllOk
            | Merge::Positional { .. }
            | Merge::Concat
            | Merge::Info
            | Merge::Scan { .. }
            | Merge::Search { .. }) => panic!("not an aggregate plan: {other:?}"),
        }
    }
}

/// An aggregate reply with its rows in a canonical order, for requests whose order
/// is not defined (no final SORTBY).
fn rows_sorted(reply: Reply) -> Reply {
    let Reply::Array(mut items) = reply else {
        return reply;
    };
    if items.len() > 1 {
        items[1..].sort_by_key(|r| format!("{r:?}"));
    }
    Reply::Array(items)
}

#[test]
fn flat_aggregations_are_identical_on_1_3_and_6_groups() {
    let (writes, vectors) = corpus("FLAT", 600, 8, 7);
    let one = load(1, &writes);
    let three = load(3, &writes);
    let six = load(6, &writes);
    let q = bytes(&vectors[3]);
    // (request, whether its order is defined). Every path of the split between shards
    // and router: partial groups, KNN rows, sorted windows, LIMIT windows, plain rows.
    let queries: &[(&str, bool)] = &[
        // Partial groups: every reducer, AVG and COUNT_DISTINCT merged exactly.
        ("FT.AGGREGATE;idx;*;GROUPBY;1;@tag;REDUCE;COUNT;0;AS;n;REDUCE;AVG;1;@price;AS;avg;REDUCE;COUNT_DISTINCT;1;@price;AS;cd;REDUCE;SUM;1;@price;AS;s;REDUCE;MIN;1;@price;AS;lo;REDUCE;MAX;1;@price;AS;hi;SORTBY;2;@tag;ASC", true),
        // APPLY and FILTER on the shards, then one global group.
        ("FT.AGGREGATE;idx;@price:[10 50];APPLY;@price*2;AS;dbl;FILTER;@dbl>40;GROUPBY;0;REDUCE;COUNT;0;AS;n;REDUCE;AVG;1;@dbl;AS;a", true),
        ("FT.AGGREGATE;idx;@title:even;APPLY;upper(@tag);AS;T;GROUPBY;1;@T;REDUCE;COUNT;0;AS;n;SORTBY;4;@n;DESC;@T;ASC;LIMIT;0;2", true),
        // KNN: the k nearest of all groups first, then the steps (a FILTER on a shard
        // would let the k+1-th nearest in).
        ("FT.AGGREGATE;idx;*=>[KNN 20 @v $q AS d];PARAMS;2;q;$VEC;GROUPBY;1;@tag;REDUCE;COUNT;0;AS;n;REDUCE;MIN;1;@d;AS;best;SORTBY;2;@best;ASC", true),
        ("FT.AGGREGATE;idx;*=>[KNN 10 @v $q AS d];PARAMS;2;q;$VEC;LOAD;1;@price;FILTER;@price>30;SORTBY;2;@d;ASC", true),
        // Sorted windows and LIMIT windows cut on the shards.
        ("FT.AGGREGATE;idx;*;LOAD;2;@price;@tag;SORTBY;4;@price;DESC;@tag;ASC;MAX;7", true),
        ("FT.AGGREGATE;idx;@tag:{t1};SORTBY;1;@price;LIMIT;3;5", true),
        ("FT.AGGREGATE;idx;*;GROUPBY;1;@price;REDUCE;TOLIST;1;@tag;AS;tags;SORTBY;1;@price;MAX;5", true),
        ("FT.AGGREGATE;idx;*;LIMIT;0;1000;GROUPBY;0;REDUCE;COUNT;0;AS;n", true),
        ("FT.AGGREGATE;idx;@v:[VECTOR_RANGE 3 $q];PARAMS;2;q;$VEC;GROUPBY;1;@tag;REDUCE;COUNT;0;AS;n;SORTBY;2;@tag;ASC", true),
        // Plain rows, order undefined.
        ("FT.AGGREGATE;idx;@price:[0 5];LOAD;2;@tag;@price;APPLY;@price+1;AS;p1", false),
        ("FT.AGGREGATE;nope;*", true),
        ("FT.AGGREGATE;idx;*;GROUPBY;1;tag", true),
    ];
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
