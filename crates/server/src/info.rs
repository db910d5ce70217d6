//! INFO: Redis's sections plus the search sections of SPEC.md.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use shoal_engine::info::human_bytes;

use crate::node::{now_ms, Node, Store};

/// The Redis version Shoal reports; clients gate features on it.
pub const REDIS_VERSION: &str = "7.2.4";

const DEFAULT: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "cluster",
    "keyspace",
    "search",
    "raft",
];

/// Resident set size of this process, from /proc (0 where unavailable).
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

pub fn render(node: &Arc<Node>, asked: &[String]) -> String {
    let wanted = |section: &str| {
        asked.is_empty()
            || asked.iter().any(|a| {
                a == section
                    || a == "all"
                    || a == "everything"
                    || (a == "default" && DEFAULT.contains(&section))
            })
    };
    let c = &node.counters;
    let mut out = String::new();
    let mut section = |title: &str, body: String| {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        out.push_str(&format!("# {title}\r\n{body}"));
    };
    if wanted("server") {
        section(
            "Server",
            format!(
                "redis_version:{REDIS_VERSION}\r\nshoal_version:{}\r\nredis_mode:standalone\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::process::id(),
                node.port,
                node.started.elapsed().as_secs()
            ),
        );
    }
    if wanted("clients") {
        section(
            "Clients",
            format!(
                "connected_clients:{}\r\nblocked_clients:0\r\n",
                c.connected_clients.load(Ordering::Relaxed)
            ),
        );
    }
    if wanted("memory") {
        let (keyspace, search) = node.with_engines(|engines| {
            engines.iter().fold((0, 0), |(k, s), e| {
                (k + e.keyspace_memory(), s + e.search_memory())
            })
        });
        let used = keyspace + search;
        let rss = rss_bytes();
        section(
            "Memory",
            format!(
                "used_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_dataset:{keyspace}\r\nmaxmemory:0\r\nmaxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\n",
                human_bytes(used),
                human_bytes(rss)
            ),
        );
    }
    if wanted("persistence") {
        section(
            "Persistence",
            format!(
                "loading:0\r\nrdb_changes_since_last_save:{}\r\nrdb_last_save_time:{}\r\naof_enabled:0\r\n",
                c.dirty.load(Ordering::Relaxed),
                c.last_save_unix.load(Ordering::Relaxed)
            ),
        );
    }
    if wanted("stats") {
        let expired: u64 =
            node.with_engines(|engines| engines.iter().map(|e| e.expired_keys()).sum());
        section(
            "Stats",
            format!(
                "total_connections_received:{}\r\ntotal_commands_processed:{}\r\nexpired_keys:{expired}\r\nacl_access_denied_auth:{}\r\nacl_access_denied_cmd:{}\r\nacl_access_denied_key:{}\r\ntls_handshake_failures:{}\r\n",
                c.connections_received.load(Ordering::Relaxed),
                c.commands_processed.load(Ordering::Relaxed),
                node.access.denied_auth.load(Ordering::Relaxed),
                node.access.denied_cmd.load(Ordering::Relaxed),
                node.access.denied_key.load(Ordering::Relaxed),
                c.tls_handshake_failures.load(Ordering::Relaxed),
            ),
        );
    }
    let raft = match &node.store {
        Store::Replicated(r) => r.default_group().map(|g| g.status()),
        Store::Local { .. } => None,
    };
    if wanted("replication") {
        // Redis's words: the group's leader is the master, the other replicas slaves.
        let role = match &raft {
            Some(s) if s.role != "leader" => "slave",
            _ => "master",
        };
        let slaves = raft
            .as_ref()
            .filter(|s| s.role == "leader")
            .map_or(0, |s| s.members.len().saturating_sub(1));
        section(
            "Replication",
            format!("role:{role}\r\nconnected_slaves:{slaves}\r\n"),
        );
    }
    if let Some(status) = &raft {
        if wanted("raft") {
            section("Raft", crate::raft_admin::info(status));
        }
    }
    if wanted("cpu") {
        section("CPU", String::new());
    }
    if wanted("cluster") {
        section("Cluster", cluster_section(node));
    }
    if wanted("keyspace") {
        section(
            "Keyspace",
            node.with_engines(|e| shoal_engine::info::info_keyspace(e, now_ms())),
        );
    }
    if wanted("search") {
        let active = c.active_queries.load(Ordering::Relaxed);
        let body = node.with_engines(|e| shoal_engine::info::info_search(e, active));
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        out.push_str(&body);
    }
    out
}

/// A group as this node knows it.
pub struct GroupView {
    pub leader: Option<shoal_raft::NodeId>,
    /// This node's role in it (`none` when it holds no replica of it).
    pub role: &'static str,
    pub voters: Vec<shoal_raft::NodeId>,
    /// Replicas being added (catching up before they vote).
    pub learners: Vec<shoal_raft::NodeId>,
}

/// A group's leader and voters as this node knows them: its replica's view when it
/// holds one, else what the group's leader last reported to the map.
pub fn group_view(
    r: &crate::node::Replicated,
    map: &shoal_cluster::ClusterMap,
    g: shoal_raft::GroupId,
) -> GroupView {
    if let Some(group) = r.host.group(g).filter(|group| group.is_member()) {
        let s = group.status();
        return GroupView {
            leader: s.leader.map(|(id, _)| id),
            role: s.role,
            voters: s
                .members
                .iter()
                .filter(|(_, _, votes)| *votes)
                .map(|(id, _, _)| *id)
                .collect(),
            learners: s
                .members
                .iter()
                .filter(|(_, _, votes)| !*votes)
                .map(|(id, _, _)| *id)
                .collect(),
        };
    }
    GroupView {
        leader: map.groups.get(&g).map(|record| record.leader),
        role: "none",
        voters: map
            .groups
            .get(&g)
            .map(|record| record.voters.clone())
            .unwrap_or_default(),
        learners: map
            .groups
            .get(&g)
            .map(|record| record.learners.clone())
            .unwrap_or_default(),
    }
}

/// `INFO cluster`'s `shoal_reshard` line, from the map this router last read (up to a
/// second old; `RESHARD STATUS` reads it linearized): `phase=none` and the routing
/// epoch when no reshard runs, else the phase, the group being added and the sources
/// that have handed it their keys so far.
fn reshard_line(map: &shoal_cluster::ClusterMap, epoch: u64) -> String {
    let Some(record) = &map.reshard else {
        return format!("shoal_reshard:phase=none,epoch={epoch}\r\n");
    };
    let switched = map
        .layout
        .as_ref()
        .and_then(|l| l.moving.as_ref())
        .map(|m| {
            m.switched
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("|")
        })
        .unwrap_or_default();
    format!(
        "shoal_reshard:phase={},epoch={epoch},target={},run={},switched={switched}\r\n",
        crate::reshard_admin::phase_name(record.phase),
        record.target,
        record.run,
    )
}

/// `INFO cluster`: the shard groups this node routes to and who leads each.
fn cluster_section(node: &Node) -> String {
    // cluster_enabled stays 0 even on a cluster: the router hides the shards, and a
    // client that read 1 would switch to the Redis Cluster protocol (CLUSTER SLOTS,
    // MOVED), which a router does not speak (LangChain does exactly that).
    let Store::Replicated(r) = &node.store else {
        return "cluster_enabled:0\r\n".into();
    };
    let routing = r.router.routing();
    let groups = routing.all();
    let mut out = format!(
        "cluster_enabled:0\r\nshoal_node_id:{}\r\nshoal_shard_groups:{}\r\n",
        r.host.id(),
        groups.len()
    );
    // The map as this router last read it (every second).
    let map = r.router.cached_map();
    let line = |g| {
        let v = group_view(r, &map, g);
        let ids = |ids: &[shoal_raft::NodeId]| {
            ids.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("|")
        };
        format!(
            "leader={},local_role={},voters={},learners={}\r\n",
            v.leader
                .map_or_else(|| "none".to_owned(), |id| id.to_string()),
            v.role,
            ids(&v.voters),
            ids(&v.learners)
        )
    };
    for &g in groups {
        out.push_str(&format!("group{g}:{}", line(g)));
    }
    out.push_str(&format!("meta_group:{}", line(shoal_cluster::META)));
    out.push_str(&reshard_line(&map, routing.epoch()));
    let now = now_ms();
    out.push_str(&format!("shoal_nodes:{}\r\n", map.nodes.len()));
    for (id, record) in &map.nodes {
        out.push_str(&format!(
            "node{id}:zone={},resp={},grpc={},last_seen_ms={},state={}\r\n",
            record.addr.zone,
            record.addr.resp,
            record.addr.raft,
            now.saturating_sub(record.seen_ms),
            if record.alive(now) { "up" } else { "down" }
        ));
    }
    out.push_str(&format!("shoal_indexes:{}\r\n", map.indexes.len()));
    // Search and aggregate parts this router answered from its own replicas, and the
    // read index rounds it sent for them (their ratio is how many reads a round served).
    let (reads, rounds) = r.router.shards().follower_read_counts();
    out.push_str(&format!(
        "follower_reads:{reads}\r\nread_index_rounds:{rounds}\r\n"
    ));
    // Parts answered here after a confirmation round with one peer instead (the
    // default in groups of three voters), and those rounds.
    let (confirmed, fences) = r.router.shards().confirmed_read_counts();
    out.push_str(&format!(
        "confirmed_reads:{confirmed}\r\nconfirm_rounds:{fences}\r\n"
    ));
    // Of those parts, the ones a busy router confirmed with one round for the whole
    // search (`Shards::search_fence`).
    out.push_str(&format!(
        "confirmed_reads_by_search:{}\r\n",
        r.router.shards().confirmed_by_search()
    ));
    // The streams those rounds went on: one per peer unless one broke.
    out.push_str(&format!(
        "confirm_streams:{}\r\n",
        r.router.shards().confirm_streams()
    ));
    out.push_str(&format!(
        "read_backoffs:{}\r\n",
        r.router.shards().read_backoffs()
    ));
    // What READONLY connections read here unconfirmed, as the replicas were.
    out.push_str(&format!(
        "stale_reads:{}\r\n",
        r.router.shards().stale_read_count()
    ));
    out
}
