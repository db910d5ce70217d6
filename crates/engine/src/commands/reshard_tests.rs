//! The reshard entries of `super::reshard`, driven as a coordinator will drive them,
//! on engines standing for a source group (0 of 0..3) and the target (3).

use std::collections::BTreeSet;

use shoal_ring::Ring;

use crate::{Engine, ReadContext, Reply, Write};

const NOW: u64 = 1_000_000;
/// The groups before and after: 0..3, then 3 joins.
const TARGET: u64 = 3;

fn run(engine: &mut Engine, args: &[&[u8]]) -> Reply {
    let args = args.iter().map(|a| a.to_vec()).collect();
    engine.apply(&Write::single(NOW, args)).remove(0)
}

fn ask(engine: &Engine, args: &[&[u8]]) -> Reply {
    engine.query(
        args,
        ReadContext {
            now_ms: NOW,
            resp3: false,
            in_apply: false,
        },
    )
}

fn items(reply: Reply) -> Vec<Reply> {
    let Reply::Array(items) = reply else {
        panic!("not an array: {reply:?}");
    };
    items
}

fn text(reply: &Reply) -> String {
    if let Reply::Int(i) = reply {
        return i.to_string();
    }
    String::from_utf8_lossy(&bulk(reply)).into_owned()
}

fn int(reply: &Reply) -> i64 {
    let Reply::Int(i) = reply else {
        panic!("not an integer: {reply:?}");
    };
    *i
}

fn is_error(reply: &Reply) -> bool {
    matches!(reply, Reply::Error(_))
}

fn moving(key: &[u8]) -> bool {
    Ring::new(0..4).group_of(key) == Some(TARGET)
}

/// An engine with the index `idx` over `doc:` hashes: a FLAT 2-d vector `v`.
fn with_index() -> Engine {
    let mut engine = Engine::new();
    let created = run(
        &mut engine,
        &[
            b"FT.CREATE",
            b"idx",
            b"ON",
            b"HASH",
            b"PREFIX",
            b"1",
            b"doc:",
            b"SCHEMA",
            b"v",
            b"VECTOR",
            b"FLAT",
            b"6",
            b"TYPE",
            b"FLOAT32",
            b"DIM",
            b"2",
            b"DISTANCE_METRIC",
            b"L2",
        ],
    );
    assert_eq!(created, Reply::Ok);
    engine
}

/// Group 0 of three: the keys the old ring gives it, `n` of them tried, as hashes
/// with a 2-d vector, indexed.
fn source(n: usize) -> (Engine, Vec<Vec<u8>>) {
    let old = Ring::new(0..3);
    let mut engine = with_index();
    let mut keys = Vec::new();
    for i in 0..n {
        let key = format!("doc:{i}").into_bytes();
        if old.group_of(&key) != Some(0) {
            continue;
        }
        let v = vector(i as f32);
        run(
            &mut engine,
            &[b"HSET", &key, b"v", &v, b"n", i.to_string().as_bytes()],
        );
        keys.push(key);
    }
    (engine, keys)
}

fn vector(x: f32) -> Vec<u8> {
    [x, 0.0].iter().flat_map(|f| f.to_le_bytes()).collect()
}

fn begin(engine: &mut Engine, epoch: &[u8]) -> Reply {
    run(
        engine,
        &[b"SHOAL._BEGIN", epoch, b"3", b"0", b"1", b"2", b"3"],
    )
}

/// Every (key, dump) an export hands over, in calls of at most `keys` keys.
fn export_all(engine: &Engine, keys: &[u8]) -> Pairs {
    let mut cursor = "0".to_owned();
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let reply = items(ask(
            engine,
            &[b"SHOAL._EXPORT", b"3", cursor.as_bytes(), keys, b"1000000"],
        ));
        cursor = text(&reply[0]);
        for pair in reply[1..].chunks(2) {
            out.push((text(&pair[0]).into_bytes(), bulk(&pair[1])));
        }
        if cursor == "0" {
            return out;
        }
    }
    panic!("the export never ended");
}

fn bulk(reply: &Reply) -> Vec<u8> {
    let Reply::Bulk(b) = reply else {
        panic!("not a bulk: {reply:?}");
    };
    b.clone()
}

/// `SHOAL._IMPORT 0 <run> [FLUSH] key dump …` on `target`.
fn import(target: &mut Engine, run_id: &[u8], flush: bool, pairs: &[(Vec<u8>, Vec<u8>)]) -> Reply {
    let mut args: Vec<&[u8]> = vec![b"SHOAL._IMPORT", b"0", run_id];
    if flush {
        args.push(b"FLUSH");
    }
    for (k, d) in pairs {
        args.push(k);
        args.push(d);
    }
    run(target, &args)
}

/// (key, dump) pairs as the reads hand them over and `_IMPORT` takes them.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The changes after `after`, fetched `keys` at a time: (high, flushed, pairs).
fn changes_after(engine: &Engine, after: u64, keys: &[u8]) -> (u64, bool, Pairs) {
    let mut flushed = false;
    let mut pairs = Vec::new();
    let mut at = after;
    loop {
        let reply = items(ask(
            engine,
            &[
                b"SHOAL._CHANGES",
                b"3",
                at.to_string().as_bytes(),
                keys,
                b"1000000",
            ],
        ));
        let high = u64::try_from(int(&reply[0])).unwrap();
        flushed |= int(&reply[1]) == 1;
        let listed = reply[2..].len() / 2;
        for pair in reply[2..].chunks(2) {
            pairs.push((bulk(&pair[0]), bulk(&pair[1])));
        }
        if listed == 0 || high == at {
            return (high, flushed, pairs);
        }
        at = high;
    }
}

fn knn_keys(engine: &Engine, k: usize) -> Vec<String> {
    let query = format!("*=>[KNN {k} @v $q]");
    let reply = items(ask(
        engine,
        &[
            b"FT.SEARCH",
            b"idx",
            query.as_bytes(),
            b"PARAMS",
            b"2",
            b"q",
            &vector(0.0),
            b"NOCONTENT",
            b"DIALECT",
            b"2",
        ],
    ));
    reply[1..].iter().map(text).collect()
}

fn visible_keys(engine: &Engine) -> BTreeSet<Vec<u8>> {
    items(ask(engine, &[b"KEYS", b"*"]))
        .iter()
        .map(bulk)
        .collect()
}

#[test]
fn an_export_hands_over_exactly_the_moving_keys_once_whatever_the_page_size() {
    let (mut engine, keys) = source(3_000);
    let expected: BTreeSet<Vec<u8>> = keys.iter().filter(|k| moving(k)).cloned().collect();
    assert!(expected.len() > 100, "{}", expected.len());
    assert!(is_error(&ask(
        &engine,
        &[b"SHOAL._EXPORT", b"3", b"0", b"10", b"100"]
    )));
    begin(&mut engine, b"1");
    for page in [&b"1"[..], b"7", b"100000"] {
        let got = export_all(&engine, page);
        let set: BTreeSet<Vec<u8>> = got.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(set.len(), got.len(), "a key exported twice");
        assert_eq!(set, expected);
    }
    // Nothing is hidden before the fence.
    assert_eq!(visible_keys(&engine).len(), keys.len());
}

#[test]
fn changes_list_each_moving_key_once_at_its_last_change_with_its_state_then() {
    let (mut engine, keys) = source(600);
    begin(&mut engine, b"1");
    let movers: Vec<&Vec<u8>> = keys.iter().filter(|k| moving(k)).collect();
    let stayer = keys.iter().find(|k| !moving(k)).unwrap();
    let (a, b, c) = (movers[0], movers[1], movers[2]);
    run(&mut engine, &[b"HSET", a, b"n", b"first"]);
    run(&mut engine, &[b"HSET", stayer, b"n", b"not listed"]);
    run(&mut engine, &[b"DEL", b]);
    run(&mut engine, &[b"HSET", a, b"n", b"second"]);
    run(&mut engine, &[b"PEXPIRE", c, b"5000"]);
    for page in [&b"1"[..], b"100"] {
        let (high, flushed, pairs) = changes_after(&engine, 0, page);
        assert!(!flushed);
        let listed: Vec<&[u8]> = pairs.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(
            listed,
            vec![b.as_slice(), a.as_slice(), c.as_slice()],
            "page {page:?}"
        );
        assert_eq!(
            high, 4,
            "every change to a moving key counts, a's first one too"
        );
        assert!(pairs[0].1.is_empty(), "a deleted key's dump is empty");
        let a_now = crate::snapshot::load_entry(&pairs[1].1).unwrap();
        assert!(
            matches!(&a_now.value, crate::Value::Hash(h) if h.get(&b"n"[..]).map(Vec::as_slice) == Some(&b"second"[..]))
        );
        let c_now = crate::snapshot::load_entry(&pairs[2].1).unwrap();
        assert_eq!(c_now.expires_at, Some(NOW + 5000));
    }
    // Asked after everything: nothing, and the same high-water mark.
    let (high, _, pairs) = changes_after(&engine, 4, b"10");
    assert_eq!((high, pairs.len()), (4, 0));
    // A FLUSHALL is passed on, and the keys written after it.
    run(&mut engine, &[b"FLUSHALL"]);
    run(&mut engine, &[b"HSET", a, b"n", b"after the flush"]);
    let (high, flushed, pairs) = changes_after(&engine, 4, b"10");
    assert!(flushed);
    assert_eq!((high, pairs.len()), (6, 1));
    let (_, flushed, _) = changes_after(&engine, 6, b"10");
    assert!(!flushed, "a flush is passed on once");
}

/// The whole protocol between one source and the target, writes going on, as the
/// coordinator will drive it: after the switch each key is shown by exactly one of
/// them, with the source's last state, in KEYS, DBSIZE and KNN alike.
#[test]
fn a_copy_with_writes_then_a_switch_moves_every_moving_key_and_nothing_else() {
    let (mut src, keys) = source(1_200);
    let mut dst = with_index();
    assert!(!is_error(&begin(&mut src, b"1")));
    assert!(!is_error(&run(
        &mut dst,
        &[b"SHOAL._INCOMING", b"1", b"1", b"0", b"1", b"2"]
    )));
    let copied = export_all(&src, b"50");
    // Writes during the copy: after it was read, so only the changes carry them.
    let movers: Vec<Vec<u8>> = keys.iter().filter(|k| moving(k)).cloned().collect();
    run(&mut src, &[b"DEL", &movers[0]]);
    run(&mut src, &[b"HSET", &movers[1], b"v", &vector(0.25)]);
    let fresh = (10_000..20_000)
        .map(|i| format!("doc:{i}").into_bytes())
        .find(|k| Ring::new(0..3).group_of(k) == Some(0) && moving(k))
        .unwrap();
    run(&mut src, &[b"HSET", &fresh, b"v", &vector(0.5)]);
    for chunk in copied.chunks(40) {
        assert!(!is_error(&import(&mut dst, b"1", false, chunk)));
    }
    let (seq, _, pairs) = changes_after(&src, 0, b"2");
    assert_eq!(pairs.len(), 3);
    assert!(!is_error(&import(&mut dst, b"1", false, &pairs)));
    // Copies are not shown before the accept, not even to KNN.
    assert!(visible_keys(&dst).is_empty());
    assert!(knn_keys(&dst, 5).is_empty());
    assert_eq!(int(&ask(&dst, &[b"DBSIZE"])), 0);
    // The switch: fence, the last changes (one more write landed before it), accept.
    run(&mut src, &[b"HSET", &movers[2], b"v", &vector(0.75)]);
    assert!(!is_error(&run(&mut src, &[b"SHOAL._FENCE", b"3", b"2"])));
    let (_, _, last) = changes_after(&src, seq, b"100");
    assert_eq!(last.len(), 1);
    assert!(!is_error(&import(&mut dst, b"1", false, &last)));
    assert!(!is_error(&run(
        &mut dst,
        &[b"SHOAL._ACCEPT", b"0", b"2", b"1"]
    )));

    let mut expected_moved: BTreeSet<Vec<u8>> = movers.iter().cloned().collect();
    expected_moved.remove(&movers[0]);
    expected_moved.insert(fresh.clone());
    let shown_src = visible_keys(&src);
    let shown_dst = visible_keys(&dst);
    assert_eq!(shown_dst, expected_moved);
    assert!(shown_src.iter().all(|k| !moving(k)));
    assert_eq!(shown_src.len() + shown_dst.len(), keys.len());
    assert_eq!(int(&ask(&src, &[b"DBSIZE"])) as usize, shown_src.len());
    assert_eq!(int(&ask(&dst, &[b"DBSIZE"])) as usize, shown_dst.len());
    // Each side's KNN finds k keys it shows: the hidden ones were filtered before the
    // walk, not cut from its answer.
    for (engine, shown) in [(&src, &shown_src), (&dst, &shown_dst)] {
        let found = knn_keys(engine, 10);
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|k| shown.contains(k.as_bytes())));
    }
    // The target holds the source's last state of every moved key.
    for key in &expected_moved {
        let get = |e: &Engine| ask(e, &[b"HGETALL", key]);
        assert_eq!(get(&dst), get(&src), "{}", String::from_utf8_lossy(key));
    }
    // Imports for a switched source are refused, whole.
    assert!(is_error(&import(&mut dst, b"1", false, &last)));

    // Purge in small steps, then settle: the source holds none of the moved keys.
    let mut cursor = String::new();
    for _ in 0..10_000 {
        let reply = items(run(&mut src, &[b"SHOAL._PURGE", b"3", b"2", b"7"]));
        cursor = text(&reply[0]);
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(cursor, "0");
    assert!(src.keyspace().iter(NOW).all(|(k, _)| !moving(k)));
    assert!(is_error(&ask(
        &src,
        &[b"SHOAL._CHANGES", b"3", b"0", b"1", b"1"]
    )));
    assert!(!is_error(&run(
        &mut src,
        &[b"SHOAL._SETTLE", b"SOURCE", b"3", b"2"]
    )));
    // The other old groups (standing in for this test) switch too, handing nothing.
    for g in [&b"1"[..], b"2"] {
        assert!(!is_error(&run(
            &mut dst,
            &[b"SHOAL._ACCEPT", g, b"2", b"1"]
        )));
    }
    assert!(!is_error(&run(
        &mut dst,
        &[b"SHOAL._SETTLE", b"TARGET", b"2"]
    )));
    assert_eq!(visible_keys(&src), shown_src);
    assert_eq!(visible_keys(&dst), shown_dst);
    for engine in [&src, &dst] {
        assert!(!engine.has_reshard_state() || engine.layout().floor == 2);
        assert!(engine.layout().outgoing.is_none() && engine.layout().incoming.is_none());
    }
}

#[test]
fn late_repeated_and_out_of_order_entries_change_nothing_or_are_refused() {
    let (mut src, keys) = source(300);
    let mover = keys.iter().find(|k| moving(k)).unwrap().clone();
    let stayer = keys.iter().find(|k| !moving(k)).unwrap().clone();
    // Purge, fence or abort with no reshard: refused.
    assert!(is_error(&run(&mut src, &[b"SHOAL._FENCE", b"3", b"2"])));
    assert!(is_error(&run(
        &mut src,
        &[b"SHOAL._PURGE", b"3", b"2", b"10"]
    )));
    assert!(!is_error(&begin(&mut src, b"5")));
    let digest = src.digest();
    // A repeat is a no-op; an older epoch's BEGIN answers the state and does nothing.
    assert!(!is_error(&begin(&mut src, b"5")));
    assert!(!is_error(&begin(&mut src, b"4")));
    assert_eq!(src.digest(), digest);
    let state = items(ask(&src, &[b"SHOAL._LAYOUT"]));
    assert_eq!(
        (text(&state[1]), text(&state[3])),
        ("5".into(), "source".into())
    );
    // Another target while this one runs: refused.
    assert!(is_error(&run(
        &mut src,
        &[b"SHOAL._BEGIN", b"6", b"4", b"0", b"1", b"2", b"4"]
    )));
    // A source cannot purge or settle before it switched, nor settle before its purge.
    assert!(is_error(&run(
        &mut src,
        &[b"SHOAL._PURGE", b"3", b"6", b"10"]
    )));
    let settle = |e: &'static [u8]| vec![&b"SHOAL._SETTLE"[..], b"SOURCE", b"3", e];
    assert!(is_error(&run(&mut src, &settle(b"6"))));
    assert!(!is_error(&run(&mut src, &[b"SHOAL._FENCE", b"3", b"6"])));
    assert!(
        is_error(&run(&mut src, &settle(b"6"))),
        "settled before its purge, a source would show the keys it handed over"
    );
    assert!(visible_keys(&src).iter().all(|k| !moving(k)));
    // Aborted (its target aborted first), a source drops its fence and shows every
    // key again; the aborted reshard's late entries then change nothing.
    let abort = |e: &'static [u8]| vec![&b"SHOAL._ABORT"[..], b"SOURCE", b"3", e];
    assert!(
        is_error(&run(&mut src, &[b"SHOAL._ABORT", b"3", b"7"])),
        "no side named"
    );
    assert!(!is_error(&run(&mut src, &abort(b"7"))));
    assert_eq!(visible_keys(&src).len(), keys.len());
    let digest = src.digest();
    for late in [
        vec![&b"SHOAL._FENCE"[..], b"3", b"6"],
        vec![&b"SHOAL._PURGE"[..], b"3", b"6", b"100"],
        settle(b"6"),
        abort(b"7"),
        abort(b"6"),
    ] {
        let reply = run(&mut src, &late);
        assert!(!is_error(&reply), "{late:?}: {reply:?}");
        assert_eq!(src.digest(), digest, "{late:?}");
    }
    assert_eq!(src.layout().floor, 7);
    assert!(src.keyspace().changes().is_none());
    // A target's abort or settle sent to a group that is not one only moves its floor.
    assert!(!is_error(&run(
        &mut src,
        &[b"SHOAL._ABORT", b"TARGET", b"8", b"1"]
    )));
    assert!(!is_error(&run(
        &mut src,
        &[b"SHOAL._SETTLE", b"TARGET", b"8"]
    )));
    assert_eq!(src.layout().floor, 8);
    assert_eq!(visible_keys(&src).len(), keys.len());

    // The target: empty to begin with, runs only go forward, all or nothing.
    let mut dst = Engine::new();
    run(&mut dst, &[b"SET", b"k", b"v"]);
    assert!(is_error(&run(
        &mut dst,
        &[b"SHOAL._INCOMING", b"5", b"2", b"0", b"1", b"2"]
    )));
    let mut dst = Engine::new();
    assert!(
        is_error(&import(&mut dst, b"2", false, &[])),
        "no intake yet"
    );
    run(
        &mut dst,
        &[b"SHOAL._INCOMING", b"5", b"2", b"0", b"1", b"2"],
    );
    let dump =
        |key: &[u8]| crate::snapshot::dump_entry(src.keyspace().get(key, NOW).unwrap()).unwrap();
    let good = (mover.clone(), dump(&mover));
    let not_group_0 = (0..)
        .map(|i| format!("other:{i}").into_bytes())
        .find(|k| Ring::new(0..3).group_of(k) == Some(1))
        .unwrap();
    let wrong_group = (not_group_0, dump(&stayer));
    let corrupt = (mover.clone(), b"garbage".to_vec());
    for bad in [vec![good.clone(), wrong_group], vec![good.clone(), corrupt]] {
        assert!(is_error(&import(&mut dst, b"2", false, &bad)));
        assert!(
            dst.keyspace().is_empty(),
            "a refused import applies nothing"
        );
    }
    assert!(
        is_error(&import(&mut dst, b"1", false, std::slice::from_ref(&good))),
        "an older run"
    );
    assert_eq!(
        int(&import(&mut dst, b"3", false, std::slice::from_ref(&good))),
        1
    );
    assert!(
        is_error(&import(&mut dst, b"2", false, std::slice::from_ref(&good))),
        "run 3 took over"
    );
    // An expired dump deletes; FLUSH drops what came from that group before.
    let mut expired = src.keyspace().get(&mover, NOW).unwrap().clone();
    expired.expires_at = Some(NOW - 1);
    let expired = (
        mover.clone(),
        crate::snapshot::dump_entry(&expired).unwrap(),
    );
    assert_eq!(int(&import(&mut dst, b"3", false, &[expired])), 1);
    assert!(dst.keyspace().is_empty());
    import(&mut dst, b"3", false, std::slice::from_ref(&good));
    import(&mut dst, b"3", true, &[]);
    assert!(dst.keyspace().is_empty());
    // Abort: copies dropped, later imports refused; not once a source is accepted.
    import(&mut dst, b"3", false, std::slice::from_ref(&good));
    assert!(!is_error(&run(
        &mut dst,
        &[b"SHOAL._ABORT", b"TARGET", b"7", b"3"]
    )));
    assert!(dst.keyspace().is_empty());
    assert!(is_error(&import(
        &mut dst,
        b"3",
        false,
        std::slice::from_ref(&good)
    )));
    // The next attempt reuses the aborted target: its intake starts afresh, at a
    // newer run only (the aborted attempt's late entries carry its older one).
    assert!(is_error(&run(
        &mut dst,
        &[b"SHOAL._INCOMING", b"8", b"3", b"0", b"1", b"2"]
    )));
    assert!(!is_error(&run(
        &mut dst,
        &[b"SHOAL._INCOMING", b"8", b"4", b"0", b"1", b"2"]
    )));
    assert_eq!(
        int(&import(&mut dst, b"4", false, std::slice::from_ref(&good))),
        1
    );
    let mut dst = Engine::new();
    run(
        &mut dst,
        &[b"SHOAL._INCOMING", b"5", b"1", b"0", b"1", b"2"],
    );
    assert!(!is_error(&run(
        &mut dst,
        &[b"SHOAL._ACCEPT", b"0", b"6", b"1"]
    )));
    assert!(
        !is_error(&run(&mut dst, &[b"SHOAL._ACCEPT", b"0", b"6", b"1"])),
        "a repeat"
    );
    assert!(is_error(&run(
        &mut dst,
        &[b"SHOAL._ACCEPT", b"0", b"7", b"1"]
    )));
    assert!(
        is_error(&run(&mut dst, &[b"SHOAL._ACCEPT", b"5", b"6", b"1"])),
        "not an old group"
    );
    // Settling the target waits for every old group; aborting it is too late now.
    let settle = [&b"SHOAL._SETTLE"[..], b"TARGET", b"6"];
    assert!(is_error(&run(&mut dst, &settle)));
    assert!(is_error(&run(
        &mut dst,
        &[b"SHOAL._ABORT", b"TARGET", b"8", b"1"]
    )));
    for g in [&b"1"[..], b"2"] {
        assert!(!is_error(&run(
            &mut dst,
            &[b"SHOAL._ACCEPT", g, b"6", b"1"]
        )));
    }
    assert!(!is_error(&run(&mut dst, &settle)));
    // A first key named like the flag is a key: the flag goes by the count.
    let mut dst = Engine::new();
    run(
        &mut dst,
        &[b"SHOAL._INCOMING", b"1", b"1", b"0", b"1", b"2"],
    );
    let g = Ring::new(0..3).group_of(b"flush").unwrap().to_string();
    let imported = run(
        &mut dst,
        &[
            b"SHOAL._IMPORT",
            g.as_bytes(),
            b"1",
            b"flush",
            &dump(&mover),
        ],
    );
    assert_eq!(int(&imported), 1);
    assert!(dst.keyspace().get(b"flush", NOW).is_some());
}

/// Replicas fed the same entries agree, and one restored from a snapshot taken in
/// the middle answers the coordinator's reads as the others do.
#[test]
fn replicas_and_a_snapshot_taken_mid_reshard_agree() {
    let feed = |engine: &mut Engine, keys: &[Vec<u8>]| {
        begin(engine, b"1");
        for (i, key) in keys.iter().enumerate().take(40) {
            run(engine, &[b"HSET", key, b"n", format!("{i}x").as_bytes()]);
        }
        run(engine, &[b"DEL", &keys[41]]);
        run(engine, &[b"SHOAL._FENCE", b"3", b"2"]);
    };
    let (mut a, keys) = source(500);
    let (mut b, _) = source(500);
    feed(&mut a, &keys);
    feed(&mut b, &keys);
    assert_eq!(a.digest(), b.digest());
    let mut c = Engine::restore(&a.snapshot().unwrap()).unwrap();
    assert_eq!(c.digest(), a.digest());
    let changes = |e: &Engine| ask(e, &[b"SHOAL._CHANGES", b"3", b"0", b"1000", b"1000000"]);
    assert_eq!(changes(&c), changes(&a));
    assert_eq!(export_all(&c, b"9"), export_all(&a, b"9"));
    assert_eq!(visible_keys(&c), visible_keys(&a));
    // The purge takes the same keys from each, restored or not.
    let purge = |e: &mut Engine| items(run(e, &[b"SHOAL._PURGE", b"3", b"2", b"5"]));
    assert_eq!(purge(&mut c), purge(&mut a));
    assert_eq!(c.digest(), a.digest());
}
