//! The router on every node: plans each command ([`crate::plan`]), sends each group
//! its parts — one log entry per group for a run of writes, one call per group for a
//! run of reads — and merges the answers in the commands' order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, FutureExt};
use shoal_engine::aggregate::AggregatePart;
use shoal_engine::{render_search, EngineError, Reply, SearchResults};
use shoal_query::AggregateRequest;
use shoal_raft::{GroupError, GroupId, Request};
use tracing::Instrument;

use crate::merge;
use crate::meta::{ClusterMap, IndexDefinition, MapChange};
use crate::plan::{is_keyed, plan, Merge, Plan};
use crate::ring::{Ring, Routing};
use crate::shards::{Answer, Op, PendingFence, Shards};
use crate::wire::{AggregateCall, ReadCall, SearchCall, ShardError, ANY_EPOCH};

/// What a client is told when a group could not answer. Redirects are the router's
/// business, so a client never sees `MOVED`: only that a group is electing
/// (`CLUSTERDOWN`, nothing applied) or that a write's outcome is unknown (`TRYAGAIN`).
pub fn error_text(e: &ShardError) -> String {
    match e {
        ShardError::Group(GroupError::NotLeader { group, .. }) => {
            format!("CLUSTERDOWN shard group {group} has no leader at the moment, try again")
        }
        ShardError::Group(GroupError::Timeout { group, timeout }) => format!(
            "TRYAGAIN shard group {group} reached no quorum within {} ms; a write may or may not have been applied",
            timeout.as_millis()
        ),
        ShardError::Group(GroupError::Unknown { group }) => format!(
            "TRYAGAIN shard group {group} changed leader while the write was in flight; it may or may not have been applied"
        ),
        ShardError::Group(e @ GroupError::Raft { .. }) => format!("ERR {e}"),
        ShardError::NotHosted { group, .. } | ShardError::NoRoute { group } => {
            format!("CLUSTERDOWN shard group {group} has no reachable replica, try again")
        }
        ShardError::Unreachable {
            group,
            node,
            message,
            never_sent: true,
        } => format!("CLUSTERDOWN shard group {group}: node {node} unreachable ({message})"),
        ShardError::Unreachable {
            group,
            node,
            message,
            never_sent: false,
        } => format!(
            "TRYAGAIN shard group {group}: node {node} stopped answering ({message}); a write may or may not have been applied"
        ),
        ShardError::Deadline { group, node, millis } => format!(
            "CLUSTERDOWN shard group {group}{} did not answer within {millis} ms, try again",
            asked(*node)
        ),
        ShardError::Engine(text) => text.clone(),
        ShardError::Codec(text) => format!("ERR shard call: {text}"),
        ShardError::StaleMap { group, floor } => format!(
            "CLUSTERDOWN shard group {group} is handing keys to a new group (routing epoch {floor}), try again"
        ),
    }
}

/// What a search or aggregation part is told when its group failed: a group that did
/// not answer in time cancels the query with the reference wording, and says which.
fn part_error_text(e: &ShardError) -> String {
    match e {
        ShardError::Deadline {
            group,
            node,
            millis,
        } => format!(
            "Search operation cancelled due to timeout: shard group {group}{} did not answer within {millis} ms",
            asked(*node)
        ),
        ShardError::Group(_)
        | ShardError::NotHosted { .. }
        | ShardError::Unreachable { .. }
        | ShardError::NoRoute { .. }
        | ShardError::Engine(_)
        | ShardError::Codec(_)
        | ShardError::StaleMap { .. } => error_text(e),
    }
}

fn asked(node: Option<shoal_raft::NodeId>) -> String {
    node.map(|n| format!(" (node {n})")).unwrap_or_default()
}

const UNEXPECTED: &str = "ERR shard call: unexpected answer";

/// How much longer than a query's TIMEOUT the router waits for a group's part: a shard
/// that is up cancels its own search at TIMEOUT and says so in the reference words, and
/// that answer should reach the router before it gives up on the group.
const PART_GRACE: Duration = Duration::from_millis(200);

/// How often a router refused for a stale map reads the map again while waiting for
/// the new routing (`Router::await_epoch`).
const EPOCH_PAUSE: Duration = Duration::from_millis(50);

/// Times a command is planned again after a group refused it for a stale map: each
/// time the router first waited for the newer routing, so a second refusal means
/// yet another switch, and a third is not worth waiting for.
const STALE_REPLANS: usize = 3;

/// A command that changes the index definitions of the cluster map, with its index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IndexCommand {
    Create(String),
    Drop(String),
}

impl IndexCommand {
    /// Whether the command is FT.CREATE or FT.DROPINDEX, before looking further.
    fn named(command: &[Vec<u8>]) -> bool {
        command.first().is_some_and(|name| {
            name.eq_ignore_ascii_case(b"FT.CREATE") || name.eq_ignore_ascii_case(b"FT.DROPINDEX")
        })
    }

    /// FT.CREATE whose schema parses (one that does not is the groups' to refuse, with
    /// the engine's words), or FT.DROPINDEX with an index name.
    fn of(command: &[Vec<u8>]) -> Option<IndexCommand> {
        let name = command.first()?;
        if name.eq_ignore_ascii_case(b"FT.CREATE") {
            let schema = shoal_query::schema::parse_create(&command[1..]).ok()?;
            return Some(IndexCommand::Create(schema.name));
        }
        let dd = |a: &Vec<u8>| a.eq_ignore_ascii_case(b"DD");
        if name.eq_ignore_ascii_case(b"FT.DROPINDEX")
            && (command.len() == 2 || (command.len() == 3 && dd(&command[2])))
        {
            // Lossy, as the engine reads the name.
            let index = String::from_utf8_lossy(command.get(1)?).into_owned();
            return Some(IndexCommand::Drop(index));
        }
        None
    }
}

/// WATCH's guard: keys and their versions when watched.
type Guard = Vec<(Vec<u8>, Option<u64>)>;
/// Each search's or aggregation's parts, by command number.
type TypedParts = BTreeMap<usize, Vec<Result<Answer, String>>>;

/// Commands of one run, grouped: each group's commands in order, and where each
/// command's parts landed.
#[derive(Debug)]
struct Batches {
    by_group: BTreeMap<GroupId, Vec<Vec<Vec<u8>>>>,
    /// Per command: its merge, and (group, position in that group's batch) per part.
    slots: Vec<(Merge, Vec<(GroupId, usize)>)>,
    /// Search and aggregation parts, called one by one: (command number, group, args).
    typed: Vec<(usize, GroupId, Vec<Vec<u8>>)>,
    /// The epoch of the routing the parts were planned by; every call names it, and a
    /// group that has moved past it refuses the call (docs/resharding.md §4).
    epoch: u64,
    /// That routing, for whatever else the run places (WATCH's keys).
    routing: Arc<Routing>,
}

impl Batches {
    fn add(&mut self, plan: Plan) {
        let command = self.slots.len();
        let mut slots = Vec::with_capacity(plan.parts.len());
        let typed = plan.is_typed();
        for part in plan.parts {
            if typed {
                self.typed.push((command, part.group, part.args));
                continue;
            }
            let batch = self.by_group.entry(part.group).or_default();
            slots.push((part.group, batch.len()));
            batch.push(part.args);
        }
        self.slots.push((plan.merge, slots));
    }
}

#[derive(Debug)]
pub struct Router {
    /// Where keys live ([`Routing`]); replaced, never by an older one, when the groups
    /// change.
    routing: parking_lot::RwLock<Arc<Routing>>,
    shards: Shards,
    /// The cluster map as last read ([`Router::refresh_map`]), for INFO.
    map: parking_lot::RwLock<ClusterMap>,
    /// Map reads that succeeded: how a test sees that a stale view was read again.
    map_reads: std::sync::atomic::AtomicU64,
    /// Runs of reads in flight on this router (see `read`'s fence).
    reads_in_flight: std::sync::atomic::AtomicUsize,
    /// One wait for a newer routing at a time (`await_epoch`): the callers refused
    /// together share its map reads instead of each asking the meta leader.
    epoch_wait: tokio::sync::Mutex<()>,
}

/// Counts a run of reads in flight for as long as it lives.
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> InFlight<'a> {
    /// Counted in; whether other runs were in flight already.
    fn enter(count: &'a std::sync::atomic::AtomicUsize) -> (InFlight<'a>, bool) {
        let before = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (InFlight(count), before > 0)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Router {
    pub fn new(ring: Ring, shards: Shards) -> Router {
        Router {
            routing: parking_lot::RwLock::new(Arc::new(ring.into())),
            shards,
            map: parking_lot::RwLock::new(ClusterMap::default()),
            map_reads: std::sync::atomic::AtomicU64::new(0),
            reads_in_flight: std::sync::atomic::AtomicUsize::new(0),
            epoch_wait: tokio::sync::Mutex::new(()),
        }
    }

    /// Waits until this router routes by epoch `floor` or later, the epoch a group
    /// refused a call below (docs/resharding.md §4): the map is read from the meta
    /// leader, again every [`EPOCH_PAUSE`] while it is older, for at most the quorum
    /// timeout. A group moves past an epoch only a step or two before the map does
    /// (the coordinator writes the map right after), so the wait is a few quorum round
    /// trips. On time out, the refusal's text, which says nothing ran.
    pub async fn await_epoch(&self, group: GroupId, floor: u64, now_ms: u64) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + self.shards.local().quorum_timeout;
        let refused = || Err(error_text(&ShardError::StaleMap { group, floor }));
        loop {
            if self.routing().epoch() >= floor {
                return Ok(());
            }
            let reads = self.map_reads();
            let read = async {
                let _one = self.epoch_wait.lock().await;
                // Another caller read the map while this one waited for the lock:
                // that read is as good as this one's would be.
                if self.routing().epoch() >= floor || self.map_reads() != reads {
                    return;
                }
                // A failed read (the meta group electing) is tried again below.
                if let Err(e) = self.refresh_map(now_ms, true).await {
                    tracing::debug!(group, floor, error = %e, "map read while waiting for a routing epoch");
                }
            };
            if tokio::time::timeout_at(deadline, read).await.is_err() {
                return refused();
            }
            if self.routing().epoch() >= floor {
                return Ok(());
            }
            if tokio::time::Instant::now() + EPOCH_PAUSE >= deadline {
                return refused();
            }
            tokio::time::sleep(EPOCH_PAUSE).await;
        }
    }

    /// How many map reads have succeeded since start.
    pub fn map_reads(&self) -> u64 {
        self.map_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The cluster map as this router last read it.
    pub fn cached_map(&self) -> ClusterMap {
        self.map.read().clone()
    }

    /// Runs `f` on the cached map without copying it.
    pub fn with_cached_map<T>(&self, f: impl FnOnce(&ClusterMap) -> T) -> T {
        f(&self.map.read())
    }

    /// Reads the map again: from this node's meta replica if it has one, as it is, or
    /// (`linearized`) from the meta leader, which sees every change committed before
    /// the call. A read older than what the cache already has is dropped, so the
    /// cache never goes back in time.
    pub async fn refresh_map(&self, now_ms: u64, linearized: bool) -> Result<(), String> {
        let map = self.cluster_map(now_ms, !linearized).await?;
        self.map_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut cached = self.map.write();
        // Compared even for a leader read: one sent earlier may finish after a newer
        // replica read and must not undo it.
        if map.applied >= cached.applied {
            // A group's members as its leader reported them: where to look for it when
            // no leader is known (replicas move when a node is replaced).
            for (group, record) in &map.groups {
                let members = record
                    .members()
                    .filter_map(|id| map.nodes.get(&id).map(|n| (id, n.addr.clone())))
                    .collect();
                self.shards.set_group_members(*group, members);
            }
            // A group being added: its members as the reshard chose them, until its
            // leader reports the group (its record above then says).
            if let Some(reshard) = map.reshard.as_ref().filter(|r| r.names_members()) {
                if !map.groups.contains_key(&reshard.target) {
                    let members = reshard
                        .members
                        .iter()
                        .filter_map(|id| map.nodes.get(id).map(|n| (*id, n.addr.clone())))
                        .collect();
                    self.shards.set_group_members(reshard.target, members);
                }
            }
            // A map without a layout leaves the routing the node started with.
            if let Some(layout) = &map.layout {
                self.set_routing(layout.routing());
            }
            *cached = map;
        }
        Ok(())
    }

    /// Where keys live now.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.read().clone()
    }

    /// Routes by `routing` from now on, unless this router already routes by a later
    /// epoch (a slow map read must not take it back). Whether it was taken.
    pub fn set_routing(&self, routing: Routing) -> bool {
        let mut current = self.routing.write();
        if !routing.supersedes(&current) {
            return false;
        }
        *current = Arc::new(routing);
        true
    }

    pub fn shards(&self) -> &Shards {
        &self.shards
    }

    fn batches<A: AsRef<[u8]>>(&self, commands: &[Vec<A>]) -> Option<Batches> {
        let routing = self.routing();
        let mut batches = Batches {
            by_group: BTreeMap::new(),
            slots: Vec::new(),
            typed: Vec::new(),
            epoch: routing.epoch(),
            routing: routing.clone(),
        };
        for command in commands {
            batches.add(plan(&routing, command)?);
        }
        Some(batches)
    }

    fn no_groups(n: usize) -> Vec<Reply> {
        vec![Reply::error("CLUSTERDOWN the cluster has no shard groups"); n]
    }

    /// Applies a run of writes: each group's share as one log entry, the groups in
    /// parallel. Replies come back in the commands' order. FT.CREATE and FT.DROPINDEX
    /// change the cluster map first ([`crate::meta`]), one after another, before the run
    /// is sent; a command the map refuses is answered without reaching any group.
    pub async fn write(&self, commands: Vec<Vec<Vec<u8>>>, now_ms: u64) -> Vec<Reply> {
        let n = commands.len();
        // The common run (pipelined HSETs) has no index command: straight to the groups.
        if !commands.iter().any(|c| IndexCommand::named(c)) {
            return self.write_run(commands, now_ms).await;
        }
        let mut decided: Vec<Option<Reply>> = vec![None; n];
        let mut changed: Vec<Option<IndexCommand>> = vec![None; n];
        // What the groups get instead: the command with the definition's generation.
        let mut generational: Vec<Option<Vec<Vec<u8>>>> = vec![None; n];
        let mut created: Vec<Option<IndexDefinition>> = vec![None; n];
        // FT.DROPINDEX ... DD: the name and generation marked in the map (see
        // `map_drop_index`), cleared once every group dropped it.
        let mut dd_marks: Vec<Option<(String, u64)>> = vec![None; n];
        for (i, command) in commands.iter().enumerate() {
            let Some(index_command) = IndexCommand::of(command) else {
                continue;
            };
            let change = match &index_command {
                IndexCommand::Create(name) => {
                    let definition = IndexDefinition {
                        // Unique per create; 0 is kept for indexes made without one.
                        generation: rand::random::<u64>().max(1),
                        args: command[1..].to_vec(),
                    };
                    let change = self.map_create_index(name, &definition, now_ms).await;
                    // The groups get the create with its generation, replacing any
                    // leftover of an earlier definition of the name.
                    let mut create = vec![
                        b"FT._CREATE".to_vec(),
                        definition.generation.to_string().into_bytes(),
                        b"REPLACE".to_vec(),
                    ];
                    create.extend(definition.args.iter().cloned());
                    generational[i] = Some(create);
                    created[i] = Some(definition);
                    change
                }
                // The groups drop the generation the map had, and nothing newer.
                // (`IndexCommand::of`: a third argument is DD.)
                IndexCommand::Drop(name) => {
                    match self.map_drop_index(name, command.len() == 3, now_ms).await {
                        Ok(Some(definition)) => {
                            if command.len() == 3 {
                                dd_marks[i] = Some((name.clone(), definition.generation));
                            }
                            let mut drop = vec![
                                b"FT._DROPIF".to_vec(),
                                name.as_bytes().to_vec(),
                                definition.generation.to_string().into_bytes(),
                            ];
                            drop.extend(command[2..].iter().cloned());
                            generational[i] = Some(drop);
                            Ok(MapChange::Changed)
                        }
                        Ok(None) => Ok(MapChange::Unchanged),
                        Err(e) => Err(e),
                    }
                }
            };
            // FT.CREATE of a name the map has: refused. FT.DROPINDEX of a name it lacks:
            // the groups answer (an index made before the map existed, or a leftover).
            match (change, &index_command) {
                (Ok(MapChange::Changed), _) => changed[i] = Some(index_command),
                (Ok(MapChange::Unchanged), IndexCommand::Create(name)) => {
                    decided[i] = Some(Reply::Error(
                        EngineError::IndexExists(name.clone()).to_string(),
                    ));
                }
                (Ok(MapChange::Unchanged), IndexCommand::Drop(_)) => {}
                (Err(message), _) => decided[i] = Some(Reply::Error(message)),
            }
        }
        let sent: Vec<Vec<Vec<u8>>> = commands
            .into_iter()
            .zip(generational)
            .zip(&decided)
            .filter(|(_, d)| d.is_none())
            .map(|((c, g), _)| g.unwrap_or(c))
            .collect();
        let mut replies = if sent.is_empty() {
            Vec::new()
        } else {
            self.write_run(sent, now_ms).await
        }
        .into_iter();
        let mut out = Vec::with_capacity(n);
        for (((decided, changed), created), dd_mark) in
            decided.into_iter().zip(changed).zip(created).zip(dd_marks)
        {
            let reply = match decided {
                Some(reply) => reply,
                None => replies.next().unwrap_or(Reply::Null),
            };
            // Every group dropped it with its documents: the mark is not needed. Any
            // other answer leaves it for the meta leader, which finishes the drop.
            if let (Some((name, generation)), Reply::Ok) = (&dd_mark, &reply) {
                if let Err(e) = self.map_forget_dd_drop(name, *generation, now_ms).await {
                    tracing::debug!(index = %name, error = %e, "could not clear a DD mark");
                }
            }
            out.push(match changed {
                Some(command) => {
                    self.settle_index_command(command, created.as_ref(), reply, now_ms)
                        .await
                }
                None => reply,
            });
        }
        out
    }

    /// A run of writes without a guard: one entry per group, replies in order.
    async fn write_run(&self, commands: Vec<Vec<Vec<u8>>>, now_ms: u64) -> Vec<Reply> {
        let n = commands.len();
        match self
            .run_transaction(commands, false, Vec::new(), now_ms, 0)
            .await
        {
            Ok(Some(replies)) => replies,
            // Without a guard nothing aborts; an error is every command's answer.
            Ok(None) => vec![Reply::Null; n],
            Err(message) => vec![Reply::Error(message); n],
        }
    }

    /// The reply to an index command whose map change was made, from its groups' reply.
    ///
    /// | groups answered                         | reply   | map                       |
    /// |-----------------------------------------|---------|---------------------------|
    /// | OK                                      | OK      | kept                      |
    /// | "already exists" / "not found"          | OK      | kept (the reconciler came |
    /// |                                         |         | first: a create's groups  |
    /// |                                         |         | replace any other         |
    /// |                                         |         | generation of the name)   |
    /// | the vector index refused its parameters | error   | taken back: the engine is |
    /// | (the same on every group)               |         | determined, no group can  |
    /// |                                         |         | ever create it            |
    /// | any other error (CLUSTERDOWN, TRYAGAIN, | error   | kept: the reconciler      |
    /// | a transport error: one group's)         |         | finishes the create       |
    async fn settle_index_command(
        &self,
        command: IndexCommand,
        created: Option<&IndexDefinition>,
        reply: Reply,
        now_ms: u64,
    ) -> Reply {
        let Reply::Error(message) = &reply else {
            return reply;
        };
        let late = match &command {
            IndexCommand::Create(name) => EngineError::IndexExists(name.clone()).to_string(),
            IndexCommand::Drop(name) => EngineError::UnknownIndex(name.clone()).to_string(),
        };
        if *message == late {
            return Reply::Ok;
        }
        // The schema parsed before the map was changed, so the one error every group
        // gives alike is the vector index's own refusal; any other error may be one
        // group's, and the groups that took the create keep it.
        let refused = message.starts_with(&EngineError::Index(String::new()).to_string());
        // Only this definition: the name may have been dropped and created again since.
        if let (IndexCommand::Create(name), Some(definition), true) = (&command, created, refused) {
            if let Err(e) = self.map_remove_definition(name, definition, now_ms).await {
                tracing::warn!(index = %name, error = %e, "could not take a refused FT.CREATE back out of the map");
            }
        }
        reply
    }

    /// Applies a transaction. On one group it is one log entry, checked against the
    /// WATCH `guard` (`Ok(None)`: a watched key moved, nothing ran). Over several groups
    /// each group's part is one entry, atomic within the group (docs/consistency.md);
    /// WATCH then needs every key on one group. FT.CREATE and FT.DROPINDEX are refused:
    /// they change the cluster map, which an aborted transaction could not take back.
    pub async fn transaction(
        &self,
        commands: Vec<Vec<Vec<u8>>>,
        resp3: bool,
        guard: Guard,
        now_ms: u64,
    ) -> Result<Option<Vec<Reply>>, String> {
        if let Some(name) = commands
            .iter()
            .find(|c| IndexCommand::of(c).is_some())
            .and_then(|c| c.first())
        {
            return Err(format!(
                "ERR {} changes the cluster map and cannot run inside MULTI; send it outside the transaction",
                String::from_utf8_lossy(name).to_uppercase()
            ));
        }
        self.run_transaction(commands, resp3, guard, now_ms, 0)
            .await
    }

    /// `transaction`, planned again (`replans` times so far) when a group refused it
    /// for a stale map.
    async fn run_transaction(
        &self,
        commands: Vec<Vec<Vec<u8>>>,
        resp3: bool,
        guard: Guard,
        now_ms: u64,
        replans: usize,
    ) -> Result<Option<Vec<Reply>>, String> {
        let Some(mut batches) = self.batches(&commands) else {
            return Ok(Some(Self::no_groups(commands.len())));
        };
        // Watched keys on other groups count too: their check is a read before the
        // entry, which a replan would move further from its commit.
        let guarded = !guard.is_empty();
        let mut guards: BTreeMap<GroupId, Guard> = BTreeMap::new();
        let routing = batches.routing.clone();
        for (key, version) in guard {
            let group = routing.group_of(&key).unwrap_or_default();
            guards.entry(group).or_default().push((key, version));
        }
        // WATCH over groups. Decision table:
        //
        // | transaction's commands | watched keys           | how the guard is checked         |
        // |------------------------|------------------------|----------------------------------|
        // | on one group (or none) | on that group          | in the entry, at its log position|
        // | on one group (or none) | also on other groups   | those: a linearized read of their|
        // |                        |                        | versions just before proposing   |
        // | on several groups      | any                    | refused: CROSSSLOT               |
        //
        // The read check of the second row misses a write to a watched key of another
        // group that lands between the read and the commit (docs/consistency.md).
        if !guards.is_empty() && batches.by_group.len() > 1 {
            return Err(
                "CROSSSLOT WATCH with a transaction over several shard groups; give its keys one {hash tag}"
                    .into(),
            );
        }
        let foreign: Vec<GroupId> = guards
            .keys()
            .filter(|g| !batches.by_group.contains_key(g))
            .copied()
            .collect();
        for group in foreign {
            let guard = guards.remove(&group).unwrap_or_default();
            let keys: Vec<Vec<u8>> = guard.iter().map(|(k, _)| k.clone()).collect();
            let now = self.versions(&keys, now_ms).await?;
            if now.iter().zip(&guard).any(|(v, (_, w))| v != w) {
                return Ok(None);
            }
        }
        let touched: std::collections::BTreeSet<GroupId> = batches
            .by_group
            .keys()
            .chain(guards.keys())
            .copied()
            .collect();
        let calls = touched.iter().map(|&group| {
            let request = Request {
                now_ms,
                commands: batches.by_group.remove(&group).unwrap_or_default(),
                resp3,
                guard: guards.remove(&group).unwrap_or_default(),
            }
            .at_epoch(batches.epoch);
            let span = tracing::debug_span!("group_write", group);
            async move {
                let op = Op::Write(request);
                let result = self.shards.call(group, &op).await;
                (group, result, op)
            }
            .instrument(span)
        });
        let mut answers: BTreeMap<GroupId, Result<Vec<Reply>, String>> = BTreeMap::new();
        let mut refused: Vec<(GroupId, u64, Op)> = Vec::new();
        for (group, result, op) in join_all(calls).await {
            let replies = match result {
                Ok(Answer::Write(response)) if response.aborted => return Ok(None),
                Ok(Answer::Write(response)) => Ok(response.replies),
                Ok(Answer::Read(_) | Answer::Search(_) | Answer::Aggregate(_)) => {
                    Err(UNEXPECTED.to_owned())
                }
                Err(ShardError::StaleMap { floor, .. }) if replans < STALE_REPLANS => {
                    refused.push((group, floor, op));
                    continue;
                }
                Err(e) => Err(error_text(&e)),
            };
            answers.insert(group, replies);
        }
        // A group that refused for a stale map ran nothing of its part. Decision table:
        //
        // | the transaction        | what happens to a refused group's part                |
        // |------------------------|-------------------------------------------------------|
        // | guarded by WATCH       | EXEC aborts (nil): its versions were read where the keys |
        // |                        | may no longer be, and nothing ran on that group          |
        // | not guarded, keyed     | its commands are planned again on the newer routing,    |
        // |                        | each one's merged reply in its place; the other groups' |
        // |                        | parts, applied already, are not sent again (a one-group |
        // |                        | MULTI whose keys now span two groups becomes one entry  |
        // |                        | per group, as any MULTI over groups)                    |
        // | a command every group  | the refusal's error: planned again it would reach the   |
        // | gets (FLUSHALL, FT.*)  | groups that applied it already a second time            |
        for (group, floor, op) in refused {
            let Op::Write(mut request) = op else {
                answers.insert(group, Err(UNEXPECTED.to_owned()));
                continue;
            };
            request.take_epoch();
            if !guarded && !request.commands.iter().all(|c| is_keyed(c)) {
                answers.insert(
                    group,
                    Err(error_text(&ShardError::StaleMap { group, floor })),
                );
                continue;
            }
            if let Err(text) = self.await_epoch(group, floor, now_ms).await {
                answers.insert(group, Err(text));
                continue;
            }
            if guarded {
                return Ok(None);
            }
            let part = Box::pin(self.run_transaction(
                request.commands,
                resp3,
                Vec::new(),
                now_ms,
                replans + 1,
            ))
            .await;
            answers.insert(
                group,
                match part {
                    Ok(Some(replies)) => Ok(replies),
                    // Unguarded, nothing aborts.
                    Ok(None) => Err(UNEXPECTED.to_owned()),
                    Err(text) => Err(text),
                },
            );
        }
        // A search or aggregation over groups has no place in a log entry: its parts
        // are typed calls, which would not run at the transaction's point.
        let mut refused = TypedParts::new();
        for (command, _, args) in batches.typed {
            let name = String::from_utf8_lossy(args.first().map_or(&[][..], |a| a)).to_uppercase();
            refused.entry(command).or_insert_with(|| {
                vec![Err(format!(
                    "ERR {name} over several shard groups cannot run inside MULTI; send it outside the transaction"
                ))]
            });
        }
        Ok(Some(assemble(batches.slots, &answers, refused, resp3)))
    }

    /// Answers a run of reads: one call per group for the plain reads, one per group and
    /// search; `stale_ok` reads whichever replica answers (`READONLY`).
    pub async fn read<A: AsRef<[u8]>>(
        &self,
        requests: &[Vec<A>],
        resp3: bool,
        stale_ok: bool,
        now_ms: u64,
    ) -> Vec<Reply> {
        let mut replans = 0;
        loop {
            let (replies, stale) = self.read_once(requests, resp3, stale_ok, now_ms).await;
            // A group refused for a stale map: reads are idempotent, so once the router
            // routes by the newer epoch the whole run is read again (a search's parts
            // must all come from one routing, or a moving key counts twice or never).
            let Some((group, floor)) = stale else {
                return replies;
            };
            if replans >= STALE_REPLANS || self.await_epoch(group, floor, now_ms).await.is_err() {
                return replies;
            }
            replans += 1;
        }
    }

    /// One try of [`Router::read`], and the highest floor a group refused it for.
    async fn read_once<A: AsRef<[u8]>>(
        &self,
        requests: &[Vec<A>],
        resp3: bool,
        stale_ok: bool,
        now_ms: u64,
    ) -> (Vec<Reply>, Option<(GroupId, u64)>) {
        let stale: parking_lot::Mutex<Option<(GroupId, u64)>> = parking_lot::Mutex::new(None);
        let note = |e: &ShardError| {
            if let ShardError::StaleMap { group, floor } = e {
                let mut seen = stale.lock();
                if seen.is_none_or(|(_, f)| f < *floor) {
                    *seen = Some((*group, *floor));
                }
            }
        };
        let Some(mut batches) = self.batches(requests) else {
            return (Self::no_groups(requests.len()), None);
        };
        let epoch = batches.epoch;
        let reads = std::mem::take(&mut batches.by_group)
            .into_iter()
            .map(|(group, commands)| {
                let call = ReadCall {
                    commands,
                    resp3,
                    now_ms,
                    stale_ok,
                    versions: Vec::new(),
                    epoch,
                };
                let span = tracing::debug_span!("group_read", group);
                let note = &note;
                async move {
                    let result = match self.shards.call(group, &Op::Read(call)).await {
                        Ok(Answer::Read(answer)) => Ok(answer.replies),
                        Ok(Answer::Write(_) | Answer::Search(_) | Answer::Aggregate(_)) => {
                            Err(UNEXPECTED.to_owned())
                        }
                        Err(e) => {
                            note(&e);
                            Err(error_text(&e))
                        }
                    };
                    (group, result)
                }
                .instrument(span)
            });
        let quorum_timeout = self.shards.local().quorum_timeout;
        let budget_of = |merge: &Merge| {
            merge
                .scatter()
                .and_then(|s| s.timeout_ms)
                .map_or(quorum_timeout, |ms| Duration::from_millis(ms) + PART_GRACE)
        };
        // One confirmation round for the groups of every search and aggregate in the
        // run (`Shards::search_fence`), driven by the first part that needs it, when
        // the router is busy:
        //
        // | other runs in flight here | rounds for a search over 3 groups | why |
        // |---|---|---|
        // | none | one per peer its parts ask (on 3 nodes: 2, in parallel) | the CPU is idle: a part walks as soon as its own round is back, while the other is in flight (paired, session 29: 8% lower p50 at one client) |
        // | some | one, to one peer, shared with the other runs waiting | the CPU is the limit: a round costs a gRPC call on both nodes (7% more searches a second at 32 clients) |
        let (_in_flight, busy) = InFlight::enter(&self.reads_in_flight);
        let fence: Option<(Vec<GroupId>, PendingFence<'_>)> =
            if stale_ok || !busy || batches.typed.is_empty() {
                None
            } else {
                let groups: BTreeSet<GroupId> = batches.typed.iter().map(|(_, g, _)| *g).collect();
                let budget = batches
                    .typed
                    .iter()
                    .map(|(command, _, _)| budget_of(&batches.slots[*command].0))
                    .min()
                    .unwrap_or(quorum_timeout);
                let groups: Vec<GroupId> = groups.into_iter().collect();
                self.shards.search_fence_plan(&groups).map(|plan| {
                    let covered = plan.covered.clone();
                    (
                        covered,
                        self.shards.search_fence(plan, budget).boxed().shared(),
                    )
                })
            };
        let typed = std::mem::take(&mut batches.typed)
            .into_iter()
            .map(|(command, group, args)| {
                let args: Vec<Vec<u8>> = args.into_iter().skip(1).collect();
                // Typed parts come from Search and Aggregate plans only
                // (`Plan::is_typed`); the other merges are listed for exhaustiveness.
                let merge = &batches.slots[command].0;
                let budget = budget_of(merge);
                let op = match merge {
                    Merge::Search {
                        offset,
                        num,
                        prepared,
                        ..
                    } => Op::Search(SearchCall {
                        args,
                        resp3,
                        now_ms,
                        window: offset.saturating_add(*num),
                        stale_ok,
                        epoch,
                        prepared: prepared.clone(),
                    }),
                    Merge::Aggregate(_)
                    | Merge::Single
                    | Merge::Sum
                    | Merge::AllOk
                    | Merge::Positional { .. }
                    | Merge::Concat
                    | Merge::Info
                    | Merge::Scan { .. } => Op::Aggregate(AggregateCall {
                        args,
                        now_ms,
                        stale_ok,
                        epoch,
                    }),
                };
                let span = tracing::debug_span!("group_part", group);
                // Only a part the round covers waits for it.
                let fence = fence
                    .as_ref()
                    .filter(|(covered, _)| covered.contains(&group))
                    .map(|(_, round)| round.clone());
                let note = &note;
                async move {
                    let result = self.shards.call_fenced(group, &op, budget, fence).await;
                    let result = result.map_err(|e| {
                        note(&e);
                        part_error_text(&e)
                    });
                    (command, result)
                }
                .instrument(span)
            });
        let (reads, typed) = futures::join!(join_all(reads), join_all(typed));
        let answers: BTreeMap<GroupId, Result<Vec<Reply>, String>> = reads.into_iter().collect();
        let mut by_command = TypedParts::new();
        for (command, result) in typed {
            by_command.entry(command).or_default().push(result);
        }
        let replies = assemble(batches.slots, &answers, by_command, resp3);
        (replies, stale.into_inner())
    }

    /// How far each group's leader had applied its log, read linearizably (so every
    /// write acknowledged before the call is at or below it).
    pub async fn applied(&self, now_ms: u64) -> Vec<(GroupId, Result<u64, String>)> {
        let routing = self.routing();
        let calls = routing.all().iter().map(|&group| {
            let call = ReadCall {
                commands: Vec::new(),
                resp3: false,
                now_ms,
                stale_ok: false,
                versions: Vec::new(),
                // How far a log was applied does not depend on where keys live.
                epoch: ANY_EPOCH,
            };
            async move {
                let result = match self.shards.call(group, &Op::Read(call)).await {
                    Ok(Answer::Read(answer)) => Ok(answer.applied),
                    Ok(Answer::Write(_) | Answer::Search(_) | Answer::Aggregate(_)) => {
                        Err(UNEXPECTED.to_owned())
                    }
                    Err(e) => Err(error_text(&e)),
                };
                (group, result)
            }
        });
        join_all(calls).await
    }

    /// The versions of `keys` for WATCH, read linearizably on their groups.
    pub async fn versions(
        &self,
        keys: &[Vec<u8>],
        now_ms: u64,
    ) -> Result<Vec<Option<u64>>, String> {
        let mut by_group: BTreeMap<GroupId, Vec<usize>> = BTreeMap::new();
        let routing = self.routing();
        for (i, key) in keys.iter().enumerate() {
            let group = routing
                .group_of(key)
                .ok_or("CLUSTERDOWN the cluster has no shard groups")?;
            by_group.entry(group).or_default().push(i);
        }
        let calls = by_group.into_iter().map(|(group, positions)| {
            let call = ReadCall {
                commands: Vec::new(),
                resp3: false,
                now_ms,
                stale_ok: false,
                versions: positions.iter().map(|&i| keys[i].clone()).collect(),
                epoch: routing.epoch(),
            };
            async move { (positions, self.shards.call(group, &Op::Read(call)).await) }
        });
        let mut out = vec![None; keys.len()];
        for (positions, result) in join_all(calls).await {
            match result {
                Ok(Answer::Read(answer)) => {
                    for (i, v) in positions.into_iter().zip(answer.versions) {
                        out[i] = v;
                    }
                }
                Ok(Answer::Write(_) | Answer::Search(_) | Answer::Aggregate(_)) => {
                    return Err(UNEXPECTED.into())
                }
                Err(e) => return Err(error_text(&e)),
            }
        }
        Ok(out)
    }
}

/// Every command's reply, in order, from its groups' answers.
fn assemble(
    slots: Vec<(Merge, Vec<(GroupId, usize)>)>,
    answers: &BTreeMap<GroupId, Result<Vec<Reply>, String>>,
    mut typed: TypedParts,
    resp3: bool,
) -> Vec<Reply> {
    slots
        .into_iter()
        .enumerate()
        .map(|(command, (merge, parts))| {
            if let Merge::Search {
                offset,
                num,
                sort,
                nocontent,
                scatter,
                prepared: _,
            } = &merge
            {
                let parts = typed.remove(&command).unwrap_or_default();
                let parts = parts.into_iter().map(|p| match p? {
                    Answer::Search(results) => Ok(results),
                    Answer::Write(_) | Answer::Read(_) | Answer::Aggregate(_) => {
                        Err(UNEXPECTED.to_owned())
                    }
                });
                let (parts, warnings) = leave_out_failed(parts.collect(), scatter.partial);
                let reply = search_reply(parts, *offset, *num, sort.as_ref(), *nocontent, resp3);
                return with_warnings(reply, warnings);
            }
            if let Merge::Aggregate(request) = &merge {
                let parts = typed.remove(&command).unwrap_or_default();
                let parts = parts.into_iter().map(|p| match p? {
                    Answer::Aggregate(part) => Ok(part),
                    Answer::Write(_) | Answer::Read(_) | Answer::Search(_) => {
                        Err(UNEXPECTED.to_owned())
                    }
                });
                let (parts, warnings) = leave_out_failed(parts.collect(), request.partial);
                return with_warnings(aggregate_reply(request, parts, resp3), warnings);
            }
            let replies = parts
                .into_iter()
                .map(|(group, at)| match answers.get(&group) {
                    Some(Ok(replies)) => replies.get(at).cloned().unwrap_or(Reply::Null),
                    Some(Err(message)) => Reply::Error(message.clone()),
                    None => Reply::err("internal: a group's answer is missing"),
                })
                .collect();
            merge::replies(&merge, replies)
        })
        .collect()
}

/// Under `SOMESHARDS`, the parts that failed are dropped and become warnings, as long
/// as one part answered; otherwise (or under `ALLSHARDS`) the parts stay as they are,
/// so the first error is the reply.
fn leave_out_failed<T>(
    parts: Vec<Result<T, String>>,
    partial: bool,
) -> (Vec<Result<T, String>>, Vec<String>) {
    if !partial || !parts.iter().any(Result::is_ok) {
        return (parts, Vec::new());
    }
    let mut kept = Vec::with_capacity(parts.len());
    let mut warnings = Vec::new();
    for part in parts {
        match part {
            Ok(answer) => kept.push(Ok(answer)),
            Err(message) => {
                tracing::warn!(%message, "SOMESHARDS: answering without a shard group");
                warnings.push(message);
            }
        }
    }
    (kept, warnings)
}

/// Puts `warnings` into a RESP3 search or aggregation reply's `warning` entry, where
/// RediSearch reports a partial answer. RESP2 has no place for them.
fn with_warnings(reply: Reply, warnings: Vec<String>) -> Reply {
    let Reply::Map(pairs) = reply else {
        return reply;
    };
    if warnings.is_empty() {
        return Reply::Map(pairs);
    }
    let list = Reply::Array(warnings.into_iter().map(Reply::Simple).collect());
    let mut list = Some(list);
    Reply::Map(
        pairs
            .into_iter()
            .map(
                |(k, v)| match list.take_if(|_| k == Reply::bulk("warning")) {
                    Some(list) => (k, list),
                    None => (k, v),
                },
            )
            .collect(),
    )
}

/// An FT.AGGREGATE's reply from its groups' parts: the first error, or the rows the
/// router finishes from them.
pub fn aggregate_reply(
    request: &AggregateRequest,
    parts: Vec<Result<AggregatePart, String>>,
    resp3: bool,
) -> Reply {
    let parts: Result<Vec<AggregatePart>, String> = parts.into_iter().collect();
    let rows = parts.and_then(|parts| {
        shoal_engine::aggregate::merge_parts(request, parts).map_err(|e| e.to_string())
    });
    match rows {
        Ok(rows) => shoal_engine::aggregate::render(&rows, resp3),
        Err(message) => Reply::Error(message),
    }
}

/// A search's reply from its groups' parts: the first error, or the merged page.
pub fn search_reply(
    parts: Vec<Result<SearchResults, String>>,
    offset: usize,
    num: usize,
    sort: Option<&shoal_query::SortBy>,
    nocontent: bool,
    resp3: bool,
) -> Reply {
    let mut ok = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Ok(results) => ok.push(results),
            Err(message) => return Reply::Error(message),
        }
    }
    let merged = shoal_engine::search::merge(ok, sort, offset, num);
    render_search(merged, nocontent, resp3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn someshards_drops_failed_parts_only_when_one_answered() {
        let parts = || vec![Ok(1), Err("group 1 late".to_owned()), Ok(3)];
        assert_eq!(
            leave_out_failed(parts(), true),
            (vec![Ok(1), Ok(3)], vec!["group 1 late".to_owned()])
        );
        // ALLSHARDS keeps the error, which becomes the reply.
        assert_eq!(leave_out_failed(parts(), false), (parts(), Vec::new()));
        // Nothing answered: an error, not an empty page.
        let none: Vec<Result<i32, String>> = vec![Err("a".into()), Err("b".into())];
        assert_eq!(leave_out_failed(none.clone(), true), (none, Vec::new()));
    }

    #[test]
    fn warnings_fill_the_resp3_warning_entry() {
        let results = SearchResults {
            total: 0,
            hits: Vec::new(),
            knn: None,
        };
        let resp3 = render_search(results.clone(), false, true);
        let warned = with_warnings(resp3, vec!["group 2 late".into()]);
        let Reply::Map(pairs) = &warned else {
            panic!("{warned:?}")
        };
        let warning = pairs.iter().find(|(k, _)| *k == Reply::bulk("warning"));
        assert_eq!(
            warning.map(|(_, v)| v),
            Some(&Reply::Array(vec![Reply::Simple("group 2 late".into())]))
        );
        // RESP2 has no place for them: the reply is unchanged.
        let resp2 = render_search(results, false, false);
        assert_eq!(with_warnings(resp2.clone(), vec!["x".into()]), resp2);
    }

    #[test]
    fn index_commands_are_recognized_only_when_the_groups_would_take_them() {
        let c = |parts: &[&[u8]]| {
            IndexCommand::of(&parts.iter().map(|p| p.to_vec()).collect::<Vec<_>>())
        };
        assert_eq!(
            c(&[b"ft.create", b"idx", b"SCHEMA", b"t", b"TAG"]),
            Some(IndexCommand::Create("idx".into()))
        );
        // A schema that does not parse is the groups' to refuse: the map is not touched.
        assert_eq!(c(&[b"FT.CREATE", b"idx", b"SCHEMA", b"t", b"NOPE"]), None);
        assert_eq!(
            c(&[b"FT.DROPINDEX", b"idx", b"dd"]),
            Some(IndexCommand::Drop("idx".into()))
        );
        assert_eq!(c(&[b"FT.DROPINDEX", b"idx", b"XX"]), None);
        assert_eq!(c(&[b"FT.DROPINDEX"]), None);
        // Names are read as the engine reads them.
        assert_eq!(
            c(&[b"FT.DROPINDEX", b"idx\xff"]),
            Some(IndexCommand::Drop("idx\u{fffd}".into()))
        );
        assert_eq!(c(&[b"HSET", b"k", b"f", b"v"]), None);
    }

    #[test]
    fn a_late_group_cancels_the_search_by_name() {
        let late = ShardError::Deadline {
            group: 2,
            node: Some(3),
            millis: 250,
        };
        assert_eq!(
            part_error_text(&late),
            "Search operation cancelled due to timeout: shard group 2 (node 3) did not answer within 250 ms"
        );
        assert_eq!(
            error_text(&late),
            "CLUSTERDOWN shard group 2 (node 3) did not answer within 250 ms, try again"
        );
    }
}
