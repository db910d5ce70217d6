//! The engine as a state machine: determinism, snapshots, expiry, backfill, the planner.

use shoal_engine::{Engine, ReadContext, Reply, Write};

fn cmd(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

fn s(text: &str) -> Vec<Vec<u8>> {
    text.split_whitespace()
        .map(|t| t.as_bytes().to_vec())
        .collect()
}

fn blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bulk(r: &Reply) -> Vec<u8> {
    let Reply::Bulk(b) = r else {
        panic!("not a bulk string: {r:?}")
    };
    b.clone()
}

fn apply(e: &mut Engine, now: u64, args: Vec<Vec<u8>>) -> Reply {
    e.apply(&Write::single(now, args)).remove(0)
}

fn read(e: &Engine, now: u64, args: Vec<Vec<u8>>) -> Reply {
    e.query(
        &args,
        ReadContext {
            now_ms: now,
            resp3: false,
            in_apply: false,
        },
    )
}

/// A deterministic stream of writes touching every kind of value and index.
fn workload(seed: u64, n: usize) -> Vec<Write> {
    let mut x = seed;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    let mut writes = vec![Write::single(
        1,
        s("FT.CREATE idx ON HASH PREFIX 1 d: SCHEMA v VECTOR HNSW 6 TYPE FLOAT32 DIM 4 DISTANCE_METRIC L2 t TAG n NUMERIC"),
    )];
    for i in 0..n {
        let now = 10 + i as u64;
        let key = format!("d:{}", next() % 200);
        let write = match next() % 10 {
            0 => Write::single(now, s(&format!("DEL {key}"))),
            1 => Write::single(now, s(&format!("PEXPIRE {key} {}", next() % 50))),
            2 => Write::single(now, s(&format!("HDEL {key} t"))),
            3 => Write::single(
                now,
                cmd(&[
                    b"JSON.SET",
                    format!("j:{}", next() % 20).as_bytes(),
                    b"$",
                    b"{\"a\":[1,2]}",
                ]),
            ),
            _ => {
                let v: Vec<f32> = (0..4).map(|_| (next() % 100) as f32).collect();
                Write::single(
                    now,
                    cmd(&[
                        b"HSET",
                        key.as_bytes(),
                        b"v",
                        &blob(&v),
                        b"t",
                        format!("tag{}", next() % 5).as_bytes(),
                        b"n",
                        format!("{}", next() % 1000).as_bytes(),
                    ]),
                )
            }
        };
        writes.push(write);
    }
    writes
}

#[test]
fn same_writes_same_state() {
    let writes = workload(7, 3000);
    let mut a = Engine::new();
    let mut b = Engine::new();
    for w in &writes {
        a.apply(w);
    }
    // The other replica applies the same log in batches of varying size.
    for chunk in writes.chunks(97) {
        b.apply_many(chunk);
    }
    assert_eq!(a.digest(), b.digest());
    let now = 10_000;
    for q in ["@t:{tag1}", "@n:[100 (500]", "-@t:{tag2}"] {
        let args = cmd(&[
            b"FT.SEARCH",
            b"idx",
            q.as_bytes(),
            b"NOCONTENT",
            b"LIMIT",
            b"0",
            b"1000",
        ]);
        assert_eq!(read(&a, now, args.clone()), read(&b, now, args), "{q}");
    }
    let mut c = Engine::new();
    for w in &workload(8, 3000) {
        c.apply(w);
    }
    assert_ne!(a.digest(), c.digest(), "the digest must see differences");
}

#[test]
fn snapshot_round_trip_keeps_everything() {
    let mut e = Engine::new();
    for w in &workload(11, 2000) {
        e.apply(w);
    }
    apply(
        &mut e,
        5000,
        s("FT.CREATE late PREFIX 1 d: SCHEMA n NUMERIC"),
    );
    let bytes = e.snapshot().unwrap();
    let r = Engine::restore(&bytes).unwrap();
    assert_eq!(e.digest(), r.digest());
    let q = blob(&[10.0, 20.0, 30.0, 40.0]);
    let args = cmd(&[
        b"FT.SEARCH",
        b"idx",
        b"*=>[KNN 5 @v $q]",
        b"PARAMS",
        b"2",
        b"q",
        &q,
        b"DIALECT",
        b"2",
    ]);
    assert_eq!(read(&e, 6000, args.clone()), read(&r, 6000, args));
    let args = cmd(&[
        b"FT.SEARCH",
        b"idx",
        b"@t:{tag3} @n:[0 600]",
        b"NOCONTENT",
        b"LIMIT",
        b"0",
        b"500",
    ]);
    assert_eq!(read(&e, 6000, args.clone()), read(&r, 6000, args));
    // Snapshot of a snapshot is byte-identical: nothing depends on history.
    assert_eq!(r.snapshot().unwrap(), bytes);
}

#[test]
fn corrupt_snapshots_are_errors() {
    let mut e = Engine::new();
    for w in &workload(3, 300) {
        e.apply(w);
    }
    let bytes = e.snapshot().unwrap();
    assert!(shoal_engine::snapshot::verify(&bytes).is_ok());
    for cut in (0..bytes.len()).step_by(bytes.len() / 97 + 1) {
        assert!(
            Engine::restore(&bytes[..cut]).is_err(),
            "truncated at {cut}"
        );
        assert!(
            shoal_engine::snapshot::verify(&bytes[..cut]).is_err(),
            "verify: truncated at {cut}"
        );
    }
    for pos in (0..bytes.len()).step_by(bytes.len() / 61 + 1) {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x40;
        assert!(Engine::restore(&bad).is_err(), "flipped at {pos}");
        assert!(
            shoal_engine::snapshot::verify(&bad).is_err(),
            "verify: flipped at {pos}"
        );
    }
}

#[test]
fn expiry_travels_with_the_write_time() {
    let mut e = Engine::new();
    apply(&mut e, 0, s("FT.CREATE idx PREFIX 1 k: SCHEMA n NUMERIC"));
    apply(&mut e, 1000, s("HSET k:1 n 5"));
    apply(&mut e, 1000, s("PEXPIRE k:1 100"));
    assert_eq!(read(&e, 1099, s("EXISTS k:1")), Reply::Int(1));
    // A read at a later time already hides the key; only a write removes it.
    assert_eq!(read(&e, 1100, s("EXISTS k:1")), Reply::Int(0));
    assert_eq!(e.index("idx").unwrap().docs.len(), 1);
    e.apply(&Write {
        now_ms: 1100,
        commands: Vec::new(),
        resp3: false,
    });
    assert_eq!(e.index("idx").unwrap().docs.len(), 0);
    assert_eq!(e.expired_keys(), 1);
}

#[test]
fn backfill_indexes_existing_keys_and_reports_progress() {
    let mut e = Engine::new();
    for i in 0..100 {
        apply(&mut e, 1, s(&format!("HSET k:{i} n {i}")));
    }
    apply(&mut e, 2, s("FT.CREATE idx PREFIX 1 k: SCHEMA n NUMERIC"));
    let index = e.index("idx").unwrap();
    assert!(index.backfill.in_progress());
    assert_eq!(index.docs.len(), 0);
    // A write during backfill is indexed at once; a delete is not resurrected.
    apply(&mut e, 3, s("HSET k:5 n 500"));
    apply(&mut e, 3, s("DEL k:6"));
    assert!(e.backfill(40));
    assert!((e.index("idx").unwrap().backfill.percent() - 0.4).abs() < 1e-9);
    while e.backfill(40) {}
    let index = e.index("idx").unwrap();
    assert_eq!(index.docs.len(), 99);
    let hits = read(
        &e,
        5,
        cmd(&[b"FT.SEARCH", b"idx", b"@n:[500 500]", b"NOCONTENT"]),
    );
    assert_eq!(
        hits,
        Reply::Array(vec![Reply::Int(1), Reply::Bulk(b"k:5".to_vec())])
    );
}

#[test]
fn a_big_batch_inserts_every_vector() {
    let mut e = Engine::new();
    apply(&mut e, 0, s("FT.CREATE idx PREFIX 1 d: SCHEMA v VECTOR HNSW 6 TYPE FLOAT32 DIM 2 DISTANCE_METRIC L2"));
    let writes: Vec<Write> = (0..2000)
        .map(|i| {
            Write::single(
                1,
                cmd(&[
                    b"HSET",
                    format!("d:{i}").as_bytes(),
                    b"v",
                    &blob(&[i as f32, 0.0]),
                ]),
            )
        })
        .chain(std::iter::once(Write::single(1, s("DEL d:7"))))
        .chain(std::iter::once(Write::single(
            1,
            cmd(&[b"HSET", b"d:9", b"v", &blob(&[f32::NAN, 0.0])]),
        )))
        .collect();
    e.apply_many(&writes);
    let index = e.index("idx").unwrap();
    assert_eq!(index.vectors(), 1998);
    assert_eq!(index.failures, 1);
    for target in [0.0f32, 7.0, 1234.0] {
        let q = blob(&[target, 0.0]);
        let reply = read(
            &e,
            2,
            cmd(&[
                b"FT.SEARCH",
                b"idx",
                b"*=>[KNN 2 @v $q EF_RUNTIME 100]",
                b"PARAMS",
                b"2",
                b"q",
                &q,
                b"NOCONTENT",
                b"DIALECT",
                b"2",
            ]),
        );
        let Reply::Array(items) = reply else {
            panic!("{reply:?}")
        };
        let got: Vec<Vec<u8>> = items[1..].iter().map(bulk).collect();
        // d:7 was deleted: its two neighbours tie.
        let want: Vec<Vec<u8>> = match target as u32 {
            7 => vec![b"d:6".to_vec(), b"d:8".to_vec()],
            t => vec![format!("d:{t}").into_bytes()],
        };
        assert!(want.iter().all(|w| got.contains(w)), "{target}: {got:?}");
    }
}

#[test]
fn selective_and_broad_filters_agree_with_brute_force() {
    // 2,000 documents on a line; tag `rare` on 1% of them, `common` on half.
    let mut e = Engine::new();
    apply(&mut e, 0, s("FT.CREATE idx PREFIX 1 d: SCHEMA v VECTOR HNSW 6 TYPE FLOAT32 DIM 2 DISTANCE_METRIC L2 t TAG"));
    let writes: Vec<Write> = (0..2000)
        .map(|i| {
            let tag = if i % 100 == 0 {
                "rare,common"
            } else if i % 2 == 0 {
                "common"
            } else {
                "other"
            };
            let angle = i as f32 * 0.01;
            Write::single(
                1,
                cmd(&[
                    b"HSET",
                    format!("d:{i}").as_bytes(),
                    b"v",
                    &blob(&[angle.cos() * i as f32, angle.sin() * i as f32]),
                    b"t",
                    tag.as_bytes(),
                ]),
            )
        })
        .collect();
    e.apply_many(&writes);
    let point = |i: usize| {
        let angle = i as f32 * 0.01;
        [angle.cos() * i as f32, angle.sin() * i as f32]
    };
    for (tag, keep) in [("rare", 100usize), ("common", 2)] {
        let q = [300.0f32, 40.0];
        let mut want: Vec<(f32, usize)> = (0..2000)
            .filter(|i| i % keep == 0)
            .map(|i| {
                let p = point(i);
                ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2), i)
            })
            .collect();
        want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let want: Vec<Vec<u8>> = want
            .iter()
            .take(10)
            .map(|(_, i)| format!("d:{i}").into_bytes())
            .collect();
        let query = format!("@t:{{{tag}}}=>[KNN 10 @v $q EF_RUNTIME 200]");
        let reply = read(
            &e,
            2,
            cmd(&[
                b"FT.SEARCH",
                b"idx",
                query.as_bytes(),
                b"PARAMS",
                b"2",
                b"q",
                &blob(&q),
                b"NOCONTENT",
                b"DIALECT",
                b"2",
            ]),
        );
        let Reply::Array(items) = reply else { panic!() };
        let got: Vec<Vec<u8>> = items[1..].iter().map(bulk).collect();
        assert_eq!(got, want, "{tag}");
    }
}

#[test]
fn watch_versions_survive_a_snapshot() {
    // A replica restored from a snapshot must decide a WATCH guard exactly as one that
    // applied the whole log, so versions and the change clock travel in the snapshot.
    let mut e = Engine::new();
    for w in &workload(5, 500) {
        e.apply(w);
    }
    apply(&mut e, 9000, s("SET watched a"));
    apply(&mut e, 9001, s("SET other b"));
    let keys = vec![b"watched".to_vec(), b"other".to_vec(), b"absent".to_vec()];
    let mut r = Engine::restore(&e.snapshot().unwrap()).unwrap();
    assert_eq!(e.versions(&keys, 9002), r.versions(&keys, 9002));
    assert!(e.versions(&keys, 9002)[0].is_some());
    // The next change moves the version the same way on both.
    apply(&mut e, 9003, s("SET absent c"));
    apply(&mut r, 9003, s("SET absent c"));
    assert_eq!(e.versions(&keys, 9004), r.versions(&keys, 9004));
    assert_eq!(e.digest(), r.digest());
}

#[test]
fn counters_step_by_one_or_by_their_argument_and_refuse_overflow() {
    let mut e = Engine::new();
    assert_eq!(apply(&mut e, 1, s("INCR c")), Reply::Int(1));
    assert_eq!(apply(&mut e, 1, s("INCRBY c 10")), Reply::Int(11));
    assert_eq!(apply(&mut e, 1, s("DECRBY c 4")), Reply::Int(7));
    assert_eq!(apply(&mut e, 1, s("DECRBY c -3")), Reply::Int(10));
    assert_eq!(apply(&mut e, 1, s("DECR c")), Reply::Int(9));
    assert_eq!(bulk(&read(&e, 1, s("GET c"))), b"9".to_vec());
    // i64::MIN cannot be negated; the value is left alone.
    let min = apply(&mut e, 1, s("DECRBY c -9223372036854775808"));
    assert!(
        matches!(&min, Reply::Error(text) if text.contains("overflow")),
        "{min:?}"
    );
    assert!(matches!(apply(&mut e, 1, s("DECRBY c x")), Reply::Error(_)));
    assert!(matches!(apply(&mut e, 1, s("DECRBY c")), Reply::Error(_)));
    assert_eq!(bulk(&read(&e, 1, s("GET c"))), b"9".to_vec());
}

/// The cluster's create and drop by generation (docs/consistency.md, "Index
/// definitions"): a router's create replaces a leftover of another generation, the
/// reconciler's leaves it, and a conditional drop spares a newer definition.
#[test]
fn index_generations_tell_a_leftover_from_the_current_definition() {
    let mut e = Engine::new();
    let exists = Reply::Error("Index idx in database 0 already exists.".into());
    apply(&mut e, 1, s("HSET d:1 n 5"));
    apply(&mut e, 1, s("HSET e:1 n 7"));
    assert_eq!(
        apply(
            &mut e,
            2,
            s("FT._CREATE 7 KEEP idx PREFIX 1 d: SCHEMA n NUMERIC")
        ),
        Reply::Ok
    );
    while e.backfill(1000) {}
    let generations = |e: &Engine| read(e, 3, s("FT._GENERATIONS"));
    assert_eq!(
        generations(&e),
        Reply::Array(vec![Reply::bulk("idx"), Reply::bulk("7")])
    );
    // The same generation again (a create arriving late): already there, either way.
    for mode in ["KEEP", "REPLACE"] {
        let again = format!("FT._CREATE 7 {mode} idx PREFIX 1 e: SCHEMA n NUMERIC");
        assert_eq!(apply(&mut e, 4, s(&again)), exists);
    }
    // Another generation: the reconciler's create keeps what is there...
    assert_eq!(
        apply(
            &mut e,
            5,
            s("FT._CREATE 9 KEEP idx PREFIX 1 e: SCHEMA n NUMERIC")
        ),
        exists
    );
    // ...and a drop of a generation that is not there leaves it.
    let unknown = Reply::Error("Index with name 'idx' not found in database 0".into());
    assert_eq!(apply(&mut e, 5, s("FT._DROPIF idx 9")), unknown);
    let total = |e: &Engine| {
        let Reply::Array(items) = read(e, 6, s("FT.SEARCH idx * NOCONTENT")) else {
            panic!("not an array")
        };
        items.first().cloned()
    };
    assert_eq!(total(&e), Some(Reply::Int(1)));
    // A router's create replaces it: the index now covers e:, not d:.
    assert_eq!(
        apply(
            &mut e,
            7,
            s("FT._CREATE 9 REPLACE idx PREFIX 1 e: SCHEMA n NUMERIC")
        ),
        Reply::Ok
    );
    while e.backfill(1000) {}
    let keys = read(&e, 8, s("FT.SEARCH idx * NOCONTENT"));
    assert_eq!(keys, Reply::Array(vec![Reply::Int(1), Reply::bulk("e:1")]));
    // A definition the vector index refuses leaves the old one in place.
    let refused = apply(
        &mut e,
        8,
        s("FT._CREATE 11 REPLACE idx SCHEMA v VECTOR HNSW 6 TYPE FLOAT32 DIM 4 DISTANCE_METRIC L2 M 100000"),
    );
    assert!(matches!(refused, Reply::Error(_)), "{refused:?}");
    assert_eq!(
        generations(&e),
        Reply::Array(vec![Reply::bulk("idx"), Reply::bulk("9")])
    );
    // The generation is replicated state: snapshots keep it, digests see it.
    let restored = Engine::restore(&e.snapshot().unwrap()).unwrap();
    assert_eq!(generations(&restored), generations(&e));
    assert_eq!(restored.digest(), e.digest());
    let mut other = Engine::new();
    apply(&mut other, 1, s("HSET d:1 n 5"));
    apply(&mut other, 1, s("HSET e:1 n 7"));
    apply(
        &mut other,
        7,
        s("FT._CREATE 10 REPLACE idx PREFIX 1 e: SCHEMA n NUMERIC"),
    );
    assert_ne!(other.digest(), e.digest());
    // FLUSHALL empties the index and keeps what it is, generation included (a router's
    // later drop names the generation).
    apply(&mut e, 9, s("FLUSHALL"));
    assert_eq!(
        generations(&e),
        Reply::Array(vec![Reply::bulk("idx"), Reply::bulk("9")])
    );
    apply(&mut e, 9, s("HSET d:1 n 5"));
    apply(&mut e, 9, s("HSET e:1 n 7"));
    // The conditional drop of the current generation drops it; documents stay unless
    // DD, as with FT.DROPINDEX.
    assert_eq!(apply(&mut e, 9, s("FT._DROPIF idx 9")), Reply::Ok);
    assert_eq!(generations(&e), Reply::Array(vec![]));
    assert_eq!(read(&e, 9, s("DBSIZE")), Reply::Int(2));
    apply(
        &mut e,
        9,
        s("FT._CREATE 12 KEEP idx PREFIX 1 e: SCHEMA n NUMERIC"),
    );
    assert_eq!(apply(&mut e, 9, s("FT._DROPIF idx 12 DD")), Reply::Ok);
    assert_eq!(read(&e, 9, s("DBSIZE")), Reply::Int(1));
    // The map's compare-and-delete.
    apply(&mut e, 9, s("HSET map f one"));
    assert_eq!(apply(&mut e, 9, s("HDELIFEQ map f two")), Reply::Int(0));
    assert_eq!(apply(&mut e, 9, s("HDELIFEQ map g one")), Reply::Int(0));
    assert_eq!(apply(&mut e, 9, s("HDELIFEQ nokey f one")), Reply::Int(0));
    assert_eq!(apply(&mut e, 9, s("HDELIFEQ map f one")), Reply::Int(1));
    assert_eq!(read(&e, 9, s("EXISTS map")), Reply::Int(0));
    // Malformed: a generation that is not a number, an unknown mode, too few arguments.
    assert_eq!(
        apply(&mut e, 10, s("FT._CREATE x KEEP idx SCHEMA n NUMERIC")),
        Reply::Error("ERR value is not an integer or out of range".into())
    );
    assert!(matches!(
        apply(&mut e, 10, s("FT._CREATE 1 MAYBE idx SCHEMA n NUMERIC")),
        Reply::Error(_)
    ));
    assert!(matches!(
        apply(&mut e, 10, s("FT._DROPIF idx")),
        Reply::Error(_)
    ));
}

/// RedisJSON keeps an object's members in the order they were written: a new member
/// goes last, a deleted one leaves the others where they were, and a snapshot keeps it.
#[test]
fn json_objects_keep_their_members_in_written_order() {
    let mut e = Engine::new();
    apply(
        &mut e,
        1,
        cmd(&[b"JSON.SET", b"j", b"$", br#"{"z":1,"a":2,"m":3,"b":4}"#]),
    );
    apply(&mut e, 2, cmd(&[b"JSON.DEL", b"j", b"$.a"]));
    apply(&mut e, 3, cmd(&[b"JSON.SET", b"j", b"$.c", b"5"]));
    let got = bulk(&read(&e, 4, cmd(&[b"JSON.GET", b"j"])));
    assert_eq!(got, br#"{"z":1,"m":3,"b":4,"c":5}"#.to_vec());
    let restored = Engine::restore(&e.snapshot().expect("snapshot")).expect("restore");
    let again = bulk(&read(&restored, 4, cmd(&[b"JSON.GET", b"j"])));
    assert_eq!(again, got);
    assert_eq!(restored.digest(), e.digest());
}

/// A search parsed once for several parts (a router's own replicas) answers as the
/// same arguments parsed by each part: the same hits, and the same error where the
/// index is unknown, the query malformed, or both (the unknown index first).
#[test]
fn a_prepared_search_answers_as_its_arguments_do() {
    use shoal_engine::PreparedSearch;
    let mut e = Engine::new();
    apply(
        &mut e,
        1,
        s("FT.CREATE idx ON HASH PREFIX 1 d: SCHEMA v VECTOR FLAT 6 TYPE FLOAT32 DIM 2 DISTANCE_METRIC L2 t TAG"),
    );
    for i in 0..20u8 {
        let key = format!("d:{i}");
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        apply(
            &mut e,
            2,
            cmd(&[
                b"HSET",
                key.as_bytes(),
                b"v",
                &blob(&[f32::from(i), 1.0]),
                b"t",
                tag.as_bytes(),
            ]),
        );
    }
    let ctx = ReadContext {
        now_ms: 3,
        resp3: false,
        in_apply: false,
    };
    let q = blob(&[4.2, 1.0]);
    let searches: Vec<Vec<Vec<u8>>> = vec![
        cmd(&[
            b"idx",
            b"*=>[KNN 3 @v $q AS d]",
            b"PARAMS",
            b"2",
            b"q",
            &q,
            b"DIALECT",
            b"2",
        ]),
        cmd(&[
            b"idx",
            b"@t:{odd}=>[KNN 4 @v $q]",
            b"PARAMS",
            b"2",
            b"q",
            &q,
            b"RETURN",
            b"1",
            b"t",
        ]),
        cmd(&[b"idx", b"@t:{even}", b"LIMIT", b"0", b"3"]),
        cmd(&[b"idx", b"@t:{odd", b"DIALECT", b"2"]),
        cmd(&[b"nosuch", b"@t:{odd", b"DIALECT", b"2"]),
        cmd(&[b"nosuch", b"*"]),
        cmd(&[b"idx", b"*=>[KNN 3 @v $missing]", b"DIALECT", b"2"]),
    ];
    let mut errors = 0;
    for args in &searches {
        let plain = e.search_part(args, ctx, 10);
        // As a router prepares it (`shoal_cluster::plan`).
        let request = shoal_query::search::parse_search(args)
            .unwrap_or_else(|e| panic!("{args:?} parses as a request: {e}"));
        let prepared = e.search_part_prepared(&PreparedSearch::from_request(request), ctx, 10);
        assert_eq!(format!("{plain:?}"), format!("{prepared:?}"), "{args:?}");
        errors += usize::from(plain.is_err());
    }
    assert_eq!(errors, 4, "the last four are refused");
}

/// JSON.GET as RedisJSON answers it: NOESCAPE (redis-py's `no_escape=True`) is an
/// option, not a path; several legacy paths give each its first match under the path
/// as written; any JSONPath among them gives every path its array of matches.
#[test]
fn json_get_options_and_several_paths() {
    let mut e = Engine::new();
    apply(
        &mut e,
        1,
        cmd(&[b"JSON.SET", b"j", b"$", br#"{"a":1,"b":{"c":[2,3]}}"#]),
    );
    let get = |args: &[&[u8]]| {
        let mut all: Vec<&[u8]> = vec![b"JSON.GET", b"j"];
        all.extend_from_slice(args);
        String::from_utf8(bulk(&read(&e, 2, cmd(&all)))).expect("utf-8")
    };
    assert_eq!(get(&[b"noescape", b"."]), r#"{"a":1,"b":{"c":[2,3]}}"#);
    assert_eq!(get(&[b"NOESCAPE"]), r#"{"a":1,"b":{"c":[2,3]}}"#);
    assert_eq!(get(&[b"INDENT", b"  ", b"NOESCAPE", b"$.a"]), "[1]");
    assert_eq!(get(&[b".a", b".b.c"]), r#"{".a":1,".b.c":[2,3]}"#);
    assert_eq!(get(&[b".a", b".missing"]), r#"{".a":1,".missing":null}"#);
    assert_eq!(
        get(&[b"$.a", b".b.c", b"$..c[*]"]),
        r#"{"$.a":[1],".b.c":[[2,3]],"$..c[*]":[2,3]}"#
    );
}
