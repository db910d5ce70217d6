//! The test harness of the scatter-gather and reshard tests: engines standing for shard
//! groups, written and read through the router's own plans and merges.

#![allow(dead_code)] // each test binary uses its own part

use rand::{Rng, SeedableRng};
use shoal_cluster::plan::{plan, Merge};
use shoal_cluster::router::{aggregate_reply, search_reply};
use shoal_cluster::Routing;
use shoal_engine::{Engine, ReadContext, Reply, Write};

pub const NOW: u64 = 1_700_000_000_000;

pub fn args(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

/// A command from `;`-separated arguments, with `$VEC` replaced by `vector`.
pub fn command(line: &str, vector: &[u8]) -> Vec<Vec<u8>> {
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

pub fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// One engine per group of `ring`; every write goes to the key's group, as the router
/// sends it.
pub struct Sharded {
    pub ring: Routing,
    pub engines: Vec<Engine>,
}

impl Sharded {
    pub fn new(groups: u64) -> Sharded {
        Sharded {
            ring: Routing::stable(0..groups, 0),
            engines: (0..groups).map(|_| Engine::new()).collect(),
        }
    }

    pub fn write(&mut self, command: Vec<Vec<u8>>) {
        let p = plan(&self.ring, &command).unwrap_or_else(|| unreachable!());
        for part in p.parts {
            let replies = self.engines[part.group as usize].apply(&Write::single(NOW, part.args));
            assert!(!replies.iter().any(Reply::is_error), "{replies:?}");
        }
    }

    pub fn settle(&mut self) {
        for e in &mut self.engines {
            while e.backfill(100_000) {}
        }
    }

    pub fn search(&self, command: &[Vec<u8>], resp3: bool) -> Reply {
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
    pub fn aggregate(&self, command: &[Vec<u8>], resp3: bool) -> Reply {
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
pub fn rows_sorted(reply: Reply) -> Reply {
    let Reply::Array(mut items) = reply else {
        return reply;
    };
    if items.len() > 1 {
        items[1..].sort_by_key(|r| format!("{r:?}"));
    }
    Reply::Array(items)
}

pub fn corpus(algo: &str, n: usize, dim: usize, seed: u64) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<f32>>) {
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

pub fn load(groups: u64, writes: &[Vec<Vec<u8>>]) -> Sharded {
    let mut s = Sharded::new(groups);
    for w in writes {
        s.write(w.clone());
    }
    s.settle();
    s
}

/// FT.AGGREGATE requests over the corpus (`;` separates arguments, `$VEC` stands for the
/// query vector), with whether their order is defined: every path of the split between
/// shards and router (partial groups, KNN rows, sorted windows, LIMIT windows, plain
/// rows), and two errors.
pub const AGGREGATIONS: &[(&str, bool)] = &[
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

/// FT.SEARCH requests over the corpus, written as [`AGGREGATIONS`].
pub const SEARCHES: &[&str] = &[
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
];
