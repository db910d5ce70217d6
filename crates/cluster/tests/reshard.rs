//! Adding a fourth group to three, step by step as the coordinator will drive it
//! (docs/resharding.md §3.3), with writes between the steps, routed and read through
//! the router's own plans and merges at each step's routing: after every step the
//! FT.SEARCH and FT.AGGREGATE answers are those of one engine holding the same writes
//! (nothing counted twice, nothing missed), and at the end every key is on exactly the
//! group `Ring::new(0..4)` gives it.

mod common;

use std::collections::BTreeSet;

use common::{bytes, command, corpus, load, rows_sorted, Sharded, AGGREGATIONS, NOW, SEARCHES};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_cluster::plan::plan;
use shoal_cluster::ring::Ring;
use shoal_cluster::Routing;
use shoal_engine::{Engine, ReadContext, Reply, Write};

const TARGET: u64 = 3;
const RUN: &[u8] = b"1";

/// The cluster being resharded, the engine every write also goes to, and the writer.
struct World {
    cluster: Sharded,
    one: Sharded,
    rng: StdRng,
    /// Keys written so far (some deleted since).
    keys: Vec<Vec<u8>>,
    next_doc: usize,
    dim: usize,
    /// Per source, the change its catch-up goes on after (the coordinator's recorded
    /// `progress.seq`, which only moves forward).
    seq: std::collections::BTreeMap<u64, u64>,
}

fn ctx() -> ReadContext {
    ReadContext {
        now_ms: NOW,
        resp3: false,
        in_apply: false,
    }
}

fn apply(engine: &mut Engine, args: Vec<Vec<u8>>) -> Reply {
    let reply = engine.apply(&Write::single(NOW, args)).remove(0);
    assert!(!reply.is_error(), "{reply:?}");
    reply
}

fn items(reply: Reply) -> Vec<Reply> {
    let Reply::Array(items) = reply else {
        panic!("not an array: {reply:?}");
    };
    items
}

fn bulk(reply: &Reply) -> Vec<u8> {
    let Reply::Bulk(b) = reply else {
        panic!("not a bulk: {reply:?}");
    };
    b.clone()
}

fn cmd(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

impl World {
    /// A few writes of every kind, to the cluster as its routing sends them and to
    /// the single engine.
    fn writes(&mut self, n: usize) {
        self.writes_away_from(None, n);
    }

    /// Writes, none of them to a key `group` owns now.
    fn writes_away_from(&mut self, group: Option<u64>, n: usize) {
        for _ in 0..n {
            let write = match self.rng.gen_range(0..10) {
                0..=3 => {
                    let key = format!("doc:{}", self.next_doc).into_bytes();
                    self.next_doc += 1;
                    self.keys.push(key.clone());
                    self.hset(key)
                }
                4..=6 => {
                    let key = self.keys[self.rng.gen_range(0..self.keys.len())].clone();
                    self.hset(key)
                }
                // An expiry travels with the key's dump (it does not fire: NOW stays).
                7 => {
                    let key = self.keys[self.rng.gen_range(0..self.keys.len())].clone();
                    let ttl = self.rng.gen_range(1_000..100_000u64).to_string();
                    cmd(&[b"PEXPIRE", &key, ttl.as_bytes()])
                }
                _ => {
                    let key = self.keys[self.rng.gen_range(0..self.keys.len())].clone();
                    cmd(&[b"DEL", &key])
                }
            };
            if group.is_some() && self.cluster.ring.group_of(&write[1]) == group {
                continue;
            }
            self.cluster.write(write.clone());
            self.one.write(write);
        }
    }

    /// A delete and an update of keys group `g` hands over (copied already or not),
    /// which only the catch-up can carry to the target.
    fn churn(&mut self, g: u64) {
        let (old, next) = (Ring::new(0..3), Ring::new(0..4));
        let moving: Vec<Vec<u8>> = self
            .keys
            .iter()
            .filter(|k| old.group_of(k) == Some(g) && next.group_of(k) == Some(TARGET))
            .cloned()
            .collect();
        if moving.is_empty() {
            return;
        }
        let gone = moving[self.rng.gen_range(0..moving.len())].clone();
        let changed = moving[self.rng.gen_range(0..moving.len())].clone();
        for write in [cmd(&[b"DEL", &gone]), self.hset(changed)] {
            self.cluster.write(write.clone());
            self.one.write(write);
        }
    }

    fn hset(&mut self, key: Vec<u8>) -> Vec<Vec<u8>> {
        let v: Vec<f32> = (0..self.dim)
            .map(|_| self.rng.gen_range(-1.0f32..1.0))
            .collect();
        let i = self.rng.gen_range(0..1000usize);
        let tag = format!("t{}", i % 5);
        let price = (i * 7 % 100).to_string();
        let title = format!("item {i} of {}", if i % 2 == 0 { "even" } else { "odd" });
        cmd(&[
            b"HSET",
            &key,
            b"tag",
            tag.as_bytes(),
            b"price",
            price.as_bytes(),
            b"title",
            title.as_bytes(),
            b"v",
            &bytes(&v),
        ])
    }

    fn group(&mut self, g: u64) -> &mut Engine {
        &mut self.cluster.engines[g as usize]
    }

    /// A coordinator's entry on group `g`.
    fn entry(&mut self, g: u64, args: Vec<Vec<u8>>) -> Reply {
        apply(self.group(g), args)
    }

    fn route(&mut self, routing: Routing) {
        self.cluster.ring = routing;
    }

    /// Every answer of the corpus's queries equals the single engine's.
    fn check(&self, step: &str) {
        let q = bytes(&vec![0.1; self.dim]);
        for line in SEARCHES {
            let query = command(line, &q);
            for resp3 in [false, true] {
                assert_eq!(
                    self.cluster.search(&query, resp3),
                    self.one.search(&query, resp3),
                    "{step}: {line}"
                );
            }
        }
        for (line, ordered) in AGGREGATIONS {
            let query = command(line, &q);
            let shape = |r: Reply| if *ordered { r } else { rows_sorted(r) };
            assert_eq!(
                shape(self.cluster.aggregate(&query, false)),
                shape(self.one.aggregate(&query, false)),
                "{step}: {line}"
            );
        }
        // Counts and listings through the router's merges.
        let dbsize: i64 = self
            .cluster
            .ring
            .owners()
            .iter()
            .map(|&g| {
                let reply = self.cluster.engines[g as usize].query(&cmd(&[b"DBSIZE"]), ctx());
                let Reply::Int(n) = reply else {
                    panic!("DBSIZE: {reply:?}");
                };
                n
            })
            .sum();
        let expected = self.one.engines[0].dbsize(NOW) as i64;
        assert_eq!(dbsize, expected, "{step}: DBSIZE");
        let mut listed: Vec<Vec<u8>> = Vec::new();
        for &g in self.cluster.ring.owners() {
            let keys = self.cluster.engines[g as usize].query(&cmd(&[b"KEYS", b"*"]), ctx());
            listed.extend(items(keys).iter().map(bulk));
        }
        let unique: BTreeSet<&Vec<u8>> = listed.iter().collect();
        assert_eq!(
            unique.len(),
            listed.len(),
            "{step}: a key listed by two groups"
        );
        assert_eq!(listed.len() as i64, expected, "{step}: KEYS");
    }

    /// Copies source `g`'s moving keys to the target, a page at a time, with writes
    /// between the pages (to the source: the routing still sends its keys there).
    fn copy(&mut self, g: u64, flush: bool) {
        let mut cursor = b"0".to_vec();
        let mut flush = flush;
        for _ in 0..10_000 {
            let page = self.group(g).query(
                &cmd(&[b"SHOAL._EXPORT", b"3", &cursor, b"25", b"65536"]),
                ctx(),
            );
            let page = items(page);
            cursor = bulk(&page[0]);
            self.import(g, false, &page[1..]);
            self.writes(3);
            self.churn(g);
            // A FLUSHALL in the middle of a copy, whose part on the target lands late:
            // the sources flush, writes follow and reach the target by a catch-up, and
            // only then does the target's part apply. None of the writes to keys the
            // sources own may go (writes to keys the target owns are concurrent with
            // its part, as for any group's part of a FLUSHALL, so there are none here).
            if std::mem::take(&mut flush) {
                let flushall = cmd(&[b"FLUSHALL"]);
                let parts = plan(&self.cluster.ring, &flushall).unwrap_or_else(|| unreachable!());
                let (late, now): (Vec<_>, Vec<_>) =
                    parts.parts.into_iter().partition(|p| p.group == TARGET);
                assert_eq!(late.len(), 1, "the target is among all() groups");
                for part in now {
                    apply(self.group(part.group), part.args);
                }
                self.one.write(flushall);
                self.writes_away_from(Some(TARGET), 150);
                self.catch_up(g, 0);
                for part in late {
                    apply(self.group(part.group), part.args);
                }
                self.check(&format!("flushed while copying group {g}"));
            }
            if cursor == b"0" {
                return;
            }
        }
        panic!("the copy of group {g} never ended");
    }

    /// `SHOAL._IMPORT g RUN [FLUSH] key dump …` on the target.
    fn import(&mut self, g: u64, flush: bool, pairs: &[Reply]) {
        let mut args = cmd(&[b"SHOAL._IMPORT", g.to_string().as_bytes(), RUN]);
        if flush {
            args.push(b"FLUSH".to_vec());
        }
        args.extend(pairs.iter().map(bulk));
        apply(self.group(TARGET), args);
    }

    /// Catch-up rounds from where the last one stopped until one lists nothing.
    fn catch_up(&mut self, g: u64, writes: usize) {
        let mut after = self.seq.get(&g).copied().unwrap_or(0);
        for _ in 0..10_000 {
            let reply = self.group(g).query(
                &cmd(&[
                    b"SHOAL._CHANGES",
                    b"3",
                    after.to_string().as_bytes(),
                    b"10",
                    b"65536",
                ]),
                ctx(),
            );
            let reply = items(reply);
            let Reply::Int(high) = reply[0] else {
                panic!("{reply:?}")
            };
            let flushed = reply[1] == Reply::Int(1);
            self.import(g, flushed, &reply[2..]);
            let listed = reply.len() > 2;
            after = u64::try_from(high).unwrap_or(0);
            self.seq.insert(g, after);
            if !listed {
                return;
            }
            self.writes(writes);
        }
        panic!("the catch-up of group {g} never ended");
    }
}

#[test]
fn adding_a_group_while_writing_answers_every_query_as_one_engine_at_every_step() {
    reshard_while_writing(None);
}

/// A FLUSHALL while the second source is copied: the target drops its copies only
/// through each source's own flush (a FLUSH import), keeps what the switched source
/// handed it until the flush reaches it directly, and loses no write made after it.
#[test]
fn a_flushall_in_the_middle_of_a_reshard_loses_no_write_made_after_it() {
    reshard_while_writing(Some(1));
}

/// One reshard of three groups into four, writes between its steps, a FLUSHALL while
/// copying `flush_during` if given.
fn reshard_while_writing(flush_during: Option<u64>) {
    let dim = 8;
    let (writes, _) = corpus("FLAT", 400, dim, 5);
    let mut world = World {
        cluster: load(3, &writes),
        one: load(1, &writes),
        rng: StdRng::seed_from_u64(42),
        keys: (0..400).map(|i| format!("doc:{i}").into_bytes()).collect(),
        next_doc: 400,
        dim,
        seq: std::collections::BTreeMap::new(),
    };
    // The target: a new, empty engine with the index (the coordinator's
    // `reconcile_group`), not in the routing yet.
    let mut target = Engine::new();
    let create = plan(&Routing::stable([TARGET], 0), &writes[0]).unwrap_or_else(|| unreachable!());
    for part in create.parts {
        apply(&mut target, part.args);
    }
    world.cluster.engines.push(target);
    world.check("before");

    // Begin (epoch 1): the target joins `all()`, not the owners; sources track changes.
    world.route(Routing::moving(0..3, TARGET, [], 1));
    world.entry(
        TARGET,
        cmd(&[b"SHOAL._INCOMING", b"1", RUN, b"0", b"1", b"2"]),
    );
    for g in 0..3 {
        world.entry(
            g,
            cmd(&[b"SHOAL._BEGIN", b"1", b"3", b"0", b"1", b"2", b"3"]),
        );
    }
    world.writes(20);
    world.check("begun");

    let mut switched = Vec::new();
    for (g, epoch) in [(0u64, 2u64), (1, 3), (2, 4)] {
        world.copy(g, flush_during == Some(g));
        world.check(&format!("group {g} copied"));
        world.catch_up(g, 2);
        world.check(&format!("group {g} caught up"));
        // The switch. Between the fence and the new routing a router below the epoch
        // is refused by `g` (step 4), so no write reaches `g` here.
        let e = epoch.to_string();
        world.entry(g, cmd(&[b"SHOAL._FENCE", b"3", e.as_bytes()]));
        world.catch_up(g, 0);
        world.entry(
            TARGET,
            cmd(&[
                b"SHOAL._ACCEPT",
                g.to_string().as_bytes(),
                e.as_bytes(),
                RUN,
            ]),
        );
        switched.push(g);
        world.route(Routing::moving(0..3, TARGET, switched.clone(), epoch));
        world.check(&format!("group {g} switched"));
        world.writes(20);
        world.check(&format!("writes after group {g} switched"));
    }

    // Clean: the settled ring of four, the sources purged, everyone settled.
    world.route(Routing::stable(0..4, 4));
    for g in 0..3 {
        for _ in 0..10_000 {
            let reply = items(world.entry(g, cmd(&[b"SHOAL._PURGE", b"3", b"4", b"30"])));
            world.writes(1);
            if bulk(&reply[0]) == b"0" {
                break;
            }
        }
        world.check(&format!("group {g} purged"));
    }
    for g in 0..3 {
        world.entry(g, cmd(&[b"SHOAL._SETTLE", b"SOURCE", b"3", b"4"]));
    }
    world.entry(TARGET, cmd(&[b"SHOAL._SETTLE", b"TARGET", b"4"]));
    world.writes(20);
    world.check("settled");

    let ring = Ring::new(0..4);
    let mut held = 0;
    for (g, engine) in world.cluster.engines.iter().enumerate() {
        for (key, _) in engine.keyspace().iter(NOW) {
            assert_eq!(ring.group_of(key), Some(g as u64), "{key:?} on group {g}");
            held += 1;
        }
        assert!(engine.layout().outgoing.is_none() && engine.layout().incoming.is_none());
    }
    assert_eq!(held, world.one.engines[0].dbsize(NOW));
    // Every key holds what it would on one engine, its expiry included.
    let one = &world.one.engines[0];
    for (key, _) in one.keyspace().iter(NOW) {
        let Some(g) = ring.group_of(key) else {
            panic!("no group for {key:?}");
        };
        let engine = &world.cluster.engines[g as usize];
        for read in [&b"HGETALL"[..], b"PTTL"] {
            let ask = cmd(&[read, key]);
            assert_eq!(engine.query(&ask, ctx()), one.query(&ask, ctx()), "{key:?}");
        }
    }
    // The target took its share: about a quarter of the keys.
    let on_target = world.cluster.engines[3].dbsize(NOW);
    assert!(
        on_target * 6 > held && on_target * 3 < held,
        "{on_target} of {held}"
    );
}
