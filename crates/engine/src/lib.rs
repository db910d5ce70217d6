//! Shoal's engine: the deterministic state machine behind every replica.
//!
//! [`Engine::apply`] takes a [`Write`] — commands plus the time the leader stamped on
//! them — and changes state; [`Engine::query`] answers reads without changing anything.
//! Nothing inside `apply` reads a clock or draws a random number: expiry compares with
//! the write's time, HNSW levels are a hash of (index, field, document id), and document
//! ids are handed out in a fixed order. So the same writes in the same order give the
//! same keyspace and the same index contents on every replica, which is what lets the
//! Raft layer (crates/raft) replicate it by replaying its log.
//!
//! Layout: [`keyspace`] holds values; [`search_index`] keeps one search index exact
//! through [`docs`], [`tags`], [`numeric`] and `shoal-index`; [`commands`] implements the
//! Redis and FT commands on top; [`search`] and [`aggregate`] evaluate queries;
//! [`snapshot`] serializes it all.

pub mod aggregate;
pub mod change_log;
pub mod commands;
pub mod docs;
pub mod error;
pub mod fields;
pub mod info;
pub mod keyspace;
pub mod layout;
pub mod numeric;
mod query_cache;
pub mod reply;
pub mod search;
pub mod search_index;
pub mod snapshot;
pub mod tags;

use std::collections::BTreeMap;

pub use commands::ft::{render_search, PreparedSearch};
pub use error::{EngineError, Result};
pub use keyspace::{Entry, Keyspace, Value};
pub use reply::{format_g12, Reply};
pub use search::{Hit, HitSink, SearchResults, SortValue};
pub use search_index::{IndexState, SearchIndex};

/// One entry of the replicated log: commands applied together, atomically, at `now_ms`.
///
/// A single command is a one-element batch; `MULTI`/`EXEC` is a batch of many; a batch of
/// none only advances time (it fires expiries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Leader time in milliseconds since the epoch. Expiry compares against it.
    pub now_ms: u64,
    pub commands: Vec<Vec<Vec<u8>>>,
    /// Shape of the replies to reads inside a transaction (RESP3 maps or RESP2 arrays).
    /// It changes no state.
    pub resp3: bool,
}

impl Write {
    pub fn single(now_ms: u64, args: Vec<Vec<u8>>) -> Self {
        Write {
            now_ms,
            commands: vec![args],
            resp3: false,
        }
    }
}

/// How a read is asked: at what time, and whether the connection speaks RESP3 (some
/// replies, FT.SEARCH's above all, differ in shape and not only in framing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadContext {
    pub now_ms: u64,
    pub resp3: bool,
    /// Inside `apply` (a read in a transaction): TIMEOUT is ignored there, because a
    /// reply may not depend on how fast this replica happens to be.
    pub in_apply: bool,
}

/// Engine-wide counters for INFO.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub expired_keys: u64,
}

/// Keyspace plus search indexes.
#[derive(Debug, Default)]
pub struct Engine {
    pub(crate) keyspace: Keyspace,
    /// Indexes by name; ordered so that iteration (and snapshots) agree everywhere.
    pub(crate) indexes: BTreeMap<String, SearchIndex>,
    pub(crate) stats: Stats,
    /// This group's part in a reshard (default: none). Boxed: two rings, rarely set.
    pub(crate) layout: Box<layout::Layout>,
}

impl Engine {
    pub fn new() -> Self {
        Self::default()
    }

    /// This group's part in a reshard, and the lowest router epoch it answers.
    pub fn layout(&self) -> &layout::Layout {
        &self.layout
    }

    /// Whether this group takes part in a reshard at all: only then do snapshots
    /// carry the state (format 4) and the digest count it, so that a group that never
    /// reshards writes and hashes exactly what the previous release did.
    pub fn has_reshard_state(&self) -> bool {
        !self.layout.is_initial() || self.keyspace.changes().is_some()
    }

    /// Applies a log entry. Returns one reply per command.
    pub fn apply(&mut self, write: &Write) -> Vec<Reply> {
        self.apply_many(std::slice::from_ref(write))
            .pop()
            .unwrap_or_default()
    }

    /// Applies consecutive log entries, one reply list per entry. Vector insertions of
    /// the whole run are made together at the end (in parallel when there are many),
    /// which is what makes a pipelined ingest fast; the state any reader can see is the
    /// same as applying the entries one by one.
    // #[PerformanceCriticalPath]: every write of every replica passes here.
    pub fn apply_many(&mut self, writes: &[Write]) -> Vec<Vec<Reply>> {
        let replies = writes
            .iter()
            .map(|write| {
                self.expire_due(write.now_ms);
                write
                    .commands
                    .iter()
                    .map(|args| commands::execute(self, args, write.now_ms, write.resp3))
                    .collect()
            })
            .collect();
        self.flush_vectors();
        replies
    }

    /// Brings every vector index up to date with the writes applied so far.
    pub(crate) fn flush_vectors(&mut self) {
        for index in self.indexes.values_mut() {
            index.flush_vectors();
        }
    }

    /// Answers a read. Write commands are refused (they must go through `apply`).
    pub fn query<A: AsRef<[u8]>>(&self, args: &[A], ctx: ReadContext) -> Reply {
        commands::read(self, &commands::arg_refs(args), ctx)
    }

    /// An FT.SEARCH (`args` after the command name) into `sink` hit by hit, for a
    /// server that frames the reply itself; the error is the text [`Engine::query`]
    /// would have answered. The sink may hold part of a page when this fails.
    pub fn search_into<A: AsRef<[u8]>, S: HitSink>(
        &self,
        args: &[A],
        ctx: ReadContext,
        sink: &mut S,
    ) -> std::result::Result<(), String> {
        commands::ft::visit_search(self, args, ctx, sink).map_err(|e| e.to_string())
    }

    /// A shard's part of an FT.SEARCH (`args` after the command name): its first
    /// `window` hits in order, or every KNN neighbour, for a router to merge with
    /// `search::merge`. An error is the text the command would have answered.
    pub fn search_part<A: AsRef<[u8]>>(
        &self,
        args: &[A],
        ctx: ReadContext,
        window: usize,
    ) -> std::result::Result<SearchResults, String> {
        commands::ft::run_search(self, args, ctx, Some(window))
            .map(|(results, _)| results)
            .map_err(|e| e.to_string())
    }

    /// [`Engine::search_part`] of a search parsed once for several parts.
    pub fn search_part_prepared(
        &self,
        prepared: &PreparedSearch,
        ctx: ReadContext,
        window: usize,
    ) -> std::result::Result<SearchResults, String> {
        commands::ft::run_prepared(self, prepared, ctx, Some(window))
            .map(|(results, _)| results)
            .map_err(|e| e.to_string())
    }

    /// A shard's part of an FT.AGGREGATE (`args` after the command name), for a router
    /// to finish with `aggregate::merge_parts`. An error is the command's error text.
    pub fn aggregate_part<A: AsRef<[u8]>>(
        &self,
        args: &[A],
        ctx: ReadContext,
    ) -> std::result::Result<aggregate::AggregatePart, String> {
        commands::ft::aggregate_part(self, args, ctx).map_err(|e| e.to_string())
    }

    /// Removes keys whose time has come, and their documents.
    fn expire_due(&mut self, now: u64) {
        for key in self.keyspace.due(now) {
            if let Some(old) = self.keyspace.remove(&key) {
                self.stats.expired_keys += 1;
                self.indexes_changed(&key, Some(&old.value), None);
            }
        }
    }

    /// Tells every index covering `key` that its value went from `old` to `new`.
    pub(crate) fn indexes_changed(&mut self, key: &[u8], old: Option<&Value>, new: Option<&Value>) {
        for index in self.indexes.values_mut() {
            if index.schema.covers(key) {
                index.on_change(key, old, new);
            }
        }
    }

    /// Whether any index covers `key` (writers skip copying old values otherwise).
    pub(crate) fn indexed(&self, key: &[u8]) -> bool {
        self.indexes.values().any(|i| i.schema.covers(key))
    }

    /// Whether any index still has keys to backfill: the background loop asks under the
    /// read lock and takes the write lock only when there is work (`Node::backfill`).
    pub fn backfilling(&self) -> bool {
        self.indexes.values().any(|i| i.backfill.in_progress())
    }

    /// Advances backfills by up to `budget` keys. Returns whether any is still pending.
    ///
    /// Backfill is local work, not a log entry: every replica runs it against the same
    /// keyspace and writes keep the index exact meanwhile, so contents converge.
    pub fn backfill(&mut self, budget: usize) -> bool {
        let mut left = budget;
        for index in self.indexes.values_mut() {
            if left == 0 {
                break;
            }
            left -= index.backfill_step(&self.keyspace, left);
            index.flush_vectors();
        }
        self.backfilling()
    }

    /// Versions of `keys` at `now` (None: absent), for WATCH.
    pub fn versions(&self, keys: &[Vec<u8>], now: u64) -> Vec<Option<u64>> {
        keys.iter().map(|k| self.keyspace.version(k, now)).collect()
    }

    /// Whether a write at `now` would expire some key: a replicated leader proposes an
    /// empty entry (a tick) only then, so idle groups write nothing.
    pub fn expiry_due(&self, now: u64) -> bool {
        self.keyspace.any_due(now)
    }

    /// Number of live keys a reader of this group may see (during a reshard, not the
    /// ones it handed over nor copies it does not show yet).
    pub fn dbsize(&self, now: u64) -> usize {
        if self.layout.shows_everything() {
            return self.keyspace.len(now);
        }
        self.keyspace
            .iter(now)
            .filter(|(key, _)| self.layout.visible(key))
            .count()
    }

    pub fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    pub fn index(&self, name: &str) -> Option<&SearchIndex> {
        self.indexes.get(name)
    }

    /// A digest of the contents every replica must agree on: the keyspace and, per
    /// index, which keys are documents and what failed to index. (HNSW graphs may
    /// differ between replicas; what they contain does not.)
    pub fn digest(&self) -> u64 {
        use std::hash::Hasher;
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let (clock, entries) = self.keyspace.versioned();
        h.write_u64(clock);
        for (key, entry, version) in entries {
            h.write(key);
            // WATCH versions too: a transaction guarded by them must decide alike.
            h.write_u64(version);
            h.write_u64(entry.expires_at.unwrap_or(0));
            match &entry.value {
                Value::Str(s) => {
                    h.write_u8(0);
                    h.write(s);
                }
                Value::Hash(fields) => {
                    h.write_u8(1);
                    for (k, v) in fields {
                        h.write(k);
                        h.write(v);
                    }
                }
                Value::Json(j) => {
                    h.write_u8(2);
                    h.write(j.to_string().as_bytes());
                }
            }
        }
        for (name, index) in &self.indexes {
            h.write(name.as_bytes());
            h.write_u64(index.generation);
            h.write_u64(index.failures);
            // Documents by key: ids depend on when backfill reached each key.
            let mut keys: Vec<&[u8]> = index
                .docs
                .all()
                .iter()
                .filter_map(|d| index.docs.key(d))
                .collect();
            keys.sort_unstable();
            for key in keys {
                h.write(key);
            }
            h.write_u64(index.vectors() as u64);
        }
        // The reshard state decides what readers see and which entries apply (none:
        // the digest as before it existed).
        if self.has_reshard_state() {
            h.write(&snapshot::reshard_bytes(
                &self.layout,
                self.keyspace.changes(),
            ));
        }
        h.finish()
    }

    /// Keys removed by expiry so far.
    pub fn expired_keys(&self) -> u64 {
        self.stats.expired_keys
    }

    pub fn index_names(&self) -> impl Iterator<Item = &str> {
        self.indexes.keys().map(String::as_str)
    }
}
