//! One node of a replicated cluster, started and stopped: its shard groups over its own
//! RocksDB, its gRPC server (Raft transport and shard service), and the router in front
//! of every group. `shoal node` runs one per process; `shoal dev` runs several in one.

use std::sync::Arc;
use std::time::Duration;

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{Context, Result};
use shoal_cluster::meta::GroupRecord;
use shoal_cluster::meta::META_VOTERS;
use shoal_cluster::repair;
use shoal_cluster::turns::Turns;
use shoal_cluster::META;
use shoal_raft::{GroupId, Host, NodeAddr, NodeId};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::cluster_shape;
use crate::node::{self, Node, Store};
use crate::node_config::NodeConfig;

/// In the data directory of a node started with `--join` (see [`start`]).
const JOINED: &str = "JOINED";
/// How long a stopping node lets in-flight Raft calls finish.
const GRPC_DRAIN: Duration = Duration::from_secs(1);
/// How often a node reports itself to the cluster map.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// The least time between two rounds of the map upkeep when a stale view asks for one.
const STALE_GAP: Duration = Duration::from_millis(100);
/// How often each group leader looks for a replica to re-create.
const REPAIR_EVERY: Duration = Duration::from_secs(1);
/// How often the meta leader checks the groups' indexes against the map.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);
/// How often the meta leader looks for a reshard to coordinate (the map it reads is
/// refreshed every second anyway).
const RESHARD_IDLE: Duration = Duration::from_millis(500);
/// How long a coordinator another one superseded waits before it may claim again (by
/// then a deposed meta leader knows it is one).
const RESHARD_STAND_BACK: Duration = Duration::from_secs(3);
/// How soon a coordinator that waits (for a group's leader, for voters) looks again.
const RESHARD_WAIT: Duration = Duration::from_millis(200);

/// A started node.
pub struct Started {
    pub node: Arc<Node>,
    pub host: Arc<Host>,
    server: JoinHandle<()>,
    stop_grpc: tokio::sync::oneshot::Sender<()>,
    /// Set when the map shows another cluster shape than this node's flags
    /// ([`crate::cluster_shape`]): the node must stop.
    misfit: tokio::sync::watch::Receiver<Option<String>>,
}

/// Opens the node's groups, serves gRPC on `grpc`, and bootstraps new groups from the
/// configured members (see [`bootstrap`]).
/// `walks` is the process's queue of searches (`shoal dev`'s nodes share one).
pub async fn start(
    config: &NodeConfig,
    grpc: TcpListener,
    tls: Option<&crate::tls::Tls>,
    walks: Turns,
) -> Result<Started> {
    let peer_tls = tls.and_then(crate::tls::Tls::peer);
    let peer_client = shoal_raft::PeerClient {
        tls: peer_tls.as_ref().map(|t| t.client.clone()),
        source_ip: config.peer_source_ip,
    };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let shape = cluster_shape::of(config);
    cluster_shape::check_remembered(&config.data_dir, &shape)?;
    let raft_config = shoal_raft::raft_config(
        config.heartbeat_ms,
        config.election_timeout_ms,
        config.snapshot_after_logs,
    );
    let host = Arc::new(
        Host::open(config.id, &config.data_dir, raft_config)
            .context("opening the Raft log")?
            .with_peer_client(peer_client.clone()),
    );
    // The groups every node starts with, and any a reshard added that this node held
    // when it stopped (docs/resharding.md §2); the rest a map read opens.
    let mut groups: Vec<GroupId> = (0..config.groups).collect();
    groups.extend(host.group_dirs().into_iter().filter(|g| *g != META));
    groups.sort_unstable();
    groups.dedup();
    for group in groups {
        host.open_group(group)
            .await
            .with_context(|| format!("opening group {group}"))?;
    }
    let meta_voters = shoal_cluster::meta::voters(&config.members);
    // Every member opens the meta group, voter or not: a voter's replica can then be
    // re-created on any of them (see `spawn_repair`).
    if config.members.contains_key(&config.id) {
        host.open_group(META)
            .await
            .context("opening the meta group")?;
    }
    let local = shoal_cluster::Local {
        host: host.clone(),
        read_mode: config.read_mode,
        quorum_timeout: config.quorum_timeout,
        follower_reads: config.follower_reads,
        walks,
    };
    let (stop_grpc, grpc_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let raft = host.service().into_server();
        let shard = shoal_cluster::ShardService::new(local.clone()).into_server();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &peer_tls {
            builder = builder
                .tls_config(tls.server.clone())
                .context("the peers' TLS settings")?;
        }
        tokio::spawn(async move {
            let stop = async {
                let _ = grpc_stopped.await;
            };
            // No Nagle: a heartbeat's small reply must not wait for the ACK of the
            // last one (that stalled every ReadIndex read by a delayed-ACK period).
            let incoming =
                tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
            let served = builder
                .add_service(raft)
                .add_service(shard)
                .serve_with_incoming_shutdown(incoming, stop)
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "gRPC server stopped");
            }
        })
    };
    let placed = placement(config);
    // A joining node's member list is not the one the running cluster started from:
    // placed by it, it would start groups of its own under ids the cluster already
    // uses. The data directory remembers the join, so a restart without the flag
    // does not do that either.
    let joined = config.data_dir.join(JOINED);
    if config.join && !joined.exists() {
        // Synced, file and directory, as the purge marks are: a crash right after the
        // start must not forget it.
        std::fs::File::create(&joined)
            .and_then(|mut f| {
                std::io::Write::write_all(
                    &mut f,
                    b"this node joined a running cluster: it bootstraps nothing\n",
                )?;
                f.sync_all()
            })
            .and_then(|()| std::fs::File::open(&config.data_dir)?.sync_all())
            .with_context(|| format!("writing {}", joined.display()))?;
    }
    if !config.join && !joined.exists() {
        bootstrap(config, &host, &placed)?;
        bootstrap_meta(config, &host, &meta_voters)?;
    }
    // RAFT and INFO raft talk about the lowest group this node was placed in.
    let member_of: Vec<GroupId> = placed
        .iter()
        .filter(|(_, members)| members.iter().any(|(id, _)| *id == config.id))
        .map(|(g, _)| *g)
        .collect();
    let group = member_of.first().copied().unwrap_or(0);
    if host.group(group).is_none() {
        anyhow::bail!("group {group} is not open");
    }
    // Every node opens every group (a replica added later finds it open) and routes
    // to all: the ring covers groups 0..N, and a group's members are its placed ones.
    let ring = shoal_cluster::Ring::new(0..config.groups);
    let mut shards = shoal_cluster::Shards::new(
        local,
        config
            .members
            .iter()
            .map(|(id, addr)| (*id, addr.clone()))
            .collect(),
    )
    .with_group_members(
        META,
        meta_voters
            .iter()
            .map(|(id, addr)| (*id, addr.clone()))
            .collect(),
    )
    .with_peer_client(peer_client);
    for (g, members) in placed {
        shards = shards.with_group_members(g, members);
    }
    let node = Node::replicated(
        node::Replicated {
            host: host.clone(),
            group,
            router: shoal_cluster::Router::new(ring, shards),
            quorum_timeout: config.quorum_timeout,
        },
        config.resp.port(),
        config.members.contains_key(&config.id),
    );
    node.spawn_background(Duration::from_secs(60));
    let (misfit_tx, misfit) = tokio::sync::watch::channel(None);
    if let Some(addr) = config.members.get(&config.id) {
        let keep = Upkeep {
            id: config.id,
            addr: addr.clone(),
            shape,
            data_dir: config.data_dir.clone(),
            misfit: misfit_tx,
            election_timeout_ms: config.election_timeout_ms,
        };
        spawn_map_upkeep(node.clone(), keep);
        spawn_reshard(node.clone(), config.reshard_pace);
        spawn_repair(node.clone(), config, misfit.clone());
    }
    Ok(Started {
        node,
        host,
        server,
        stop_grpc,
        misfit,
    })
}

/// The initial members of every shard group, in placement order (the first starts
/// the group): [`shoal_cluster::placement::group_members`] over the configured members.
pub fn placement(config: &NodeConfig) -> BTreeMap<GroupId, Vec<(NodeId, NodeAddr)>> {
    (0..config.groups)
        .map(|g| {
            let members = shoal_cluster::placement::group_members(
                &config.members,
                config.replication_factor,
                g,
            );
            let members = members
                .into_iter()
                .filter_map(|id| config.members.get(&id).map(|a| (id, a.clone())))
                .collect();
            (g, members)
        })
        .collect()
}

/// Makes each group's placed members its first membership, on the members.
///
/// A group initialized by one member first elects that member, so the first placed
/// member initializes it (placement turns the first member with the group: the
/// leaders start spread over the nodes). It does so once a majority of the members
/// accept connections (a candidate whose peers are not up yet would wait a whole
/// election timeout before it asked again). The other members initialize it too,
/// after a few election timeouts, in case the first never came up; by then a group
/// that has a leader reached them and the call is a no-op (openraft allows every
/// member to initialize with the same membership).
fn bootstrap(
    config: &NodeConfig,
    host: &Arc<Host>,
    placed: &BTreeMap<GroupId, Vec<(NodeId, NodeAddr)>>,
) -> Result<()> {
    for (&group, members) in placed {
        let Some(position) = members.iter().position(|(id, _)| *id == config.id) else {
            continue;
        };
        if host.was_erased(group) {
            // The group removed this node and it erased its replica: the list
            // describes a membership long gone. A leader adds it back if it wants it.
            continue;
        }
        let handle = host
            .group(group)
            .with_context(|| format!("group {group} is not open"))?;
        let members: BTreeMap<NodeId, NodeAddr> = members.iter().cloned().collect();
        spawn_initialize(
            config.id,
            config.election_timeout_ms,
            handle,
            members,
            position == 0,
        );
    }
    Ok(())
}

/// Bootstraps the meta group on its voters as [`bootstrap`] does a shard group, the
/// first voter being the one to start it.
fn bootstrap_meta(
    config: &NodeConfig,
    host: &Arc<Host>,
    voters: &BTreeMap<NodeId, NodeAddr>,
) -> Result<()> {
    let Some(position) = voters.keys().position(|id| *id == config.id) else {
        return Ok(());
    };
    if host.was_erased(META) {
        return Ok(());
    }
    let handle = host.group(META).context("the meta group is not open")?;
    spawn_initialize(
        config.id,
        config.election_timeout_ms,
        handle,
        voters.clone(),
        position == 0,
    );
    Ok(())
}

/// Initializes `group` with `members`: at once when it is this node's to start (once a
/// majority is reachable, or after three election timeouts at most), otherwise after
/// three election timeouts as a fallback.
fn spawn_initialize(
    me: NodeId,
    election_timeout_ms: u64,
    group: shoal_raft::Group,
    members: BTreeMap<NodeId, NodeAddr>,
    first: bool,
) {
    let fallback = Duration::from_millis(election_timeout_ms.saturating_mul(3));
    tokio::spawn(async move {
        if first {
            quorum_reachable(&members, me, fallback).await;
        } else {
            tokio::time::sleep(fallback).await;
        }
        if let Err(e) = group.initialize(members).await {
            tracing::warn!(group = group.id(), error = %e, "bootstrapping a group");
        }
    });
}

/// Waits until a majority of `members` (this node counted) accept TCP connections on
/// their Raft address, or `limit` has passed.
async fn quorum_reachable(members: &BTreeMap<NodeId, NodeAddr>, me: NodeId, limit: Duration) {
    const PROBE: Duration = Duration::from_millis(200);
    let deadline = tokio::time::Instant::now() + limit;
    let need = members.len() / 2 + 1;
    loop {
        let mut up = usize::from(members.contains_key(&me));
        for (id, addr) in members {
            if *id == me || up >= need {
                continue;
            }
            let connect = tokio::net::TcpStream::connect(addr.raft.as_str());
            if matches!(tokio::time::timeout(PROBE, connect).await, Ok(Ok(_))) {
                up += 1;
            }
        }
        if up >= need || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What [`spawn_map_upkeep`] needs of the node's configuration.
struct Upkeep {
    id: NodeId,
    addr: NodeAddr,
    shape: shoal_cluster::ClusterShape,
    data_dir: std::path::PathBuf,
    misfit: tokio::sync::watch::Sender<Option<String>>,
    election_timeout_ms: u64,
}

/// Keeps this node's part of the cluster map: it reports itself every
/// [`REPORT_EVERY`] (its liveness) and reads the map back, sooner when a call finds the
/// router's view of a group stale (`Shards::stale_map`); and while it leads the meta
/// group it creates the map's indexes on any shard group that misses one
/// ([`shoal_cluster::Router::reconcile_indexes`]), in a task of its own, since a
/// leaderless group can hold that up for a quorum timeout and the reports must go on.
fn spawn_map_upkeep(node: Arc<Node>, keep: Upkeep) {
    let Upkeep {
        id,
        addr,
        shape,
        data_dir,
        misfit,
        election_timeout_ms,
    } = keep;
    let reporter = node.clone();
    tokio::spawn(async move {
        let Store::Replicated(r) = &reporter.store else {
            return;
        };
        let mut interval = tokio::time::interval(REPORT_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut suspects = HashMap::new();
        // The reshards (by their start) whose new group this node has started.
        let mut started_targets = HashSet::new();
        // A call that found a group's members wrong asks for an early round (the map
        // says where the replicas went), at most one per STALE_GAP: a group nobody can
        // reach would otherwise nudge on every retry.
        let stale = r.router.shards().stale_map();
        let mut last = tokio::time::Instant::now();
        loop {
            let nudged = tokio::select! {
                _ = interval.tick() => false,
                () = stale.notified() => {
                    tokio::time::sleep_until(last + STALE_GAP).await;
                    true
                }
            };
            last = tokio::time::Instant::now();
            // A nudged round only reads the map back (and opens what it names): the
            // report is a meta log entry, and the purge's two decisions must stay a
            // tick apart (`purge`), so both keep the tick's pace.
            if !nudged {
                let led = led_groups(&r.host, node::now_ms());
                let holds = held_groups(&r.host);
                let report = r
                    .router
                    .report_node(id, &addr, &holds, &led, node::now_ms());
                if let Err(e) = report.await {
                    tracing::debug!(error = %e, "could not report to the cluster map");
                }
            }
            // The first read of the users comes from the meta leader: a lagging
            // replica could hold an older, more permissive set. So does every read
            // while this node's meta replica is not a live part of the group: one the
            // group left behind (no leader, and the map does not name it) would
            // answer with the map as it was when this node went away, for good.
            let linearized =
                !reporter.access.loaded() || !map_replica_current(&r.host, id, &r.router);
            match r.router.refresh_map(node::now_ms(), linearized).await {
                Ok(()) => r.router.with_cached_map(|m| reporter.access.sync(&m.users)),
                Err(e) => tracing::debug!(error = %e, "could not read the cluster map"),
            }
            // The groups keys are routed to, and a group being created before any
            // key is (its members take part in its Raft from the start).
            let mut groups = r.router.routing().all().to_vec();
            groups.extend(r.router.with_cached_map(|m| {
                m.reshard
                    .as_ref()
                    .filter(|x| x.names_members())
                    .map(|x| x.target)
            }));
            open_missing_groups(&r.host, &groups).await;
            start_new_group(
                &r.host,
                id,
                election_timeout_ms,
                &r.router,
                &mut started_targets,
            );
            if nudged {
                continue;
            }
            let meta_leader = r.host.group(META).is_some_and(|g| g.is_leader());
            let fits = cluster_shape::check_map(&r.router, &shape, &data_dir, meta_leader).await;
            if let Err(why) = fits {
                tracing::error!(%why, "this node does not fit the cluster: stopping");
                let _ = misfit.send(Some(why));
                return;
            }
            let map = r.router.cached_map();
            purge_left_behind(&r.host, id, &map, &mut suspects).await;
        }
    });
    tokio::spawn(async move {
        let Store::Replicated(r) = &node.store else {
            return;
        };
        let mut interval = tokio::time::interval(RECONCILE_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if !r.host.group(META).is_some_and(|g| g.is_leader()) {
                continue;
            }
            if let Err(e) = r.router.reconcile_indexes(node::now_ms()).await {
                tracing::debug!(error = %e, "index reconciliation did not finish");
            }
        }
    });
}

/// Starts the group a reshard adds, on its recorded members, as [`bootstrap`] starts
/// the first groups: the first member at once, the others as a fallback. Once per
/// reshard (by its start time): a later initialize of a group that has a leader is
/// refused by openraft anyway, but need not be tried every second.
fn start_new_group(
    host: &Host,
    me: NodeId,
    election_timeout_ms: u64,
    router: &shoal_cluster::Router,
    started: &mut HashSet<(GroupId, u64)>,
) {
    let Some((record, addrs)) = router.with_cached_map(|m| {
        let record = m.reshard.clone()?;
        let addrs: BTreeMap<NodeId, NodeAddr> = record
            .members
            .iter()
            .filter_map(|id| m.nodes.get(id).map(|n| (*id, n.addr.clone())))
            .collect();
        Some((record, addrs))
    }) else {
        return;
    };
    let key = (record.target, record.started_ms);
    let creating = record.phase == shoal_cluster::reshard_record::Phase::Creating;
    if !creating || !record.members.contains(&me) || started.contains(&key) {
        return;
    }
    // Every member's address, or none: a membership missing one would be for good.
    if addrs.len() != record.members.len() {
        return;
    }
    let Some(group) = host.group(record.target) else {
        return;
    };
    started.insert(key);
    let first = record.members.first() == Some(&me);
    tracing::info!(group = record.target, members = ?record.members, first, "starting the group a reshard adds");
    spawn_initialize(me, election_timeout_ms, group, addrs, first);
}

/// While this node leads the meta group and a reshard is recorded, the coordinator's
/// ticks ([`shoal_cluster::reshard_run`]): at once after a step, every
/// [`RESHARD_WAIT`] while it waits, every [`RESHARD_IDLE`] with no reshard; `pace`
/// after each step taken (`--reshard-pace-ms`).
fn spawn_reshard(node: Arc<Node>, pace: Duration) {
    use shoal_cluster::reshard_run::{Coordinator, Tick};
    tokio::spawn(async move {
        let Store::Replicated(r) = &node.store else {
            return;
        };
        let mut me = Coordinator::default();
        loop {
            let leads = r.host.group(META).is_some_and(|g| g.is_leader());
            let recorded = r.router.with_cached_map(|m| m.reshard.is_some());
            let pause = if !leads {
                me.forget();
                RESHARD_IDLE
            } else if !recorded {
                RESHARD_IDLE
            } else {
                match r.router.reshard_tick(&mut me, node::now_ms()).await {
                    Ok(Tick::Idle) => RESHARD_IDLE,
                    Ok(Tick::Waiting(why)) => {
                        tracing::debug!(why, "reshard waits");
                        RESHARD_WAIT
                    }
                    Ok(Tick::Took(_)) => pace,
                    Ok(Tick::Claimed(_) | Tick::TimedOut) => Duration::ZERO,
                    Ok(Tick::Lost) => RESHARD_WAIT,
                    Ok(Tick::Superseded) => RESHARD_STAND_BACK,
                    Err(e) => {
                        tracing::info!(error = %e, "reshard step did not finish; trying again");
                        RESHARD_WAIT
                    }
                }
            };
            if pause.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(pause).await;
            }
        }
    });
}

/// Opens every one of `groups` this node has not opened: a group a reshard adds is
/// opened by every node, as the first groups are at start, so that a replica added to
/// it later finds it open. A group that fails to open is tried again at the next map
/// read; none is opened once the node shuts down.
async fn open_missing_groups(host: &Host, groups: &[GroupId]) {
    for &group in groups {
        if host.group(group).is_some() {
            continue;
        }
        match host.open_group(group).await {
            Ok(_) => tracing::info!(group, "opened a group the cluster map names"),
            Err(shoal_raft::RaftError::ShuttingDown) => return,
            Err(e) => tracing::warn!(group, error = %e, "could not open a group the map names"),
        }
    }
}

/// Every [`REPAIR_EVERY`], each group this node leads (shard groups, and the meta
/// group with its three voters) takes its next step towards full replication
/// ([`shoal_cluster::repair`]): replacing the replicas of a node that has been silent
/// for `replace_after`; then, with `rebalance`, moving replicas onto less loaded nodes
/// and handing leadership over so that leaders spread over the nodes.
fn spawn_repair(
    node: Arc<Node>,
    config: &NodeConfig,
    misfit: tokio::sync::watch::Receiver<Option<String>>,
) {
    let shape = cluster_shape::of(config);
    let replicas = config.replication_factor;
    let replace_after_ms = u64::try_from(config.replace_after.as_millis()).unwrap_or(u64::MAX);
    let (me, rebalance, initial_groups) = (config.id, config.rebalance, config.groups);
    let step_limit = config.quorum_timeout.saturating_mul(2);
    let stall_ms = u64::try_from(config.learner_stall.as_millis()).unwrap_or(u64::MAX);
    tokio::spawn(async move {
        let Store::Replicated(r) = &node.store else {
            return;
        };
        let mut watch = shoal_cluster::learner_watch::LearnerWatch::new(stall_ms);
        let mut leftovers = repair::Leftovers::default();
        let mut stuck = repair::Stuck::default();
        let mut interval = tokio::time::interval(REPAIR_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if misfit.borrow().is_some() {
                return;
            }
            let map = r.router.cached_map();
            // Not by another cluster's rules: a lower replication factor would shrink
            // the groups this node leads (the node stops at its next map read).
            if map.shape.is_some_and(|s| s != shape) {
                continue;
            }
            let now_ms = node::now_ms();
            let shard_groups = map.shard_groups(initial_groups);
            // Both only feed the rebalancing rows.
            let old_leftovers = match rebalance {
                true => leftovers.observe(&map.nodes, &map.groups, now_ms),
                false => Vec::new(),
            };
            let cluster = |group, replicas| repair::Cluster {
                group,
                nodes: &map.nodes,
                groups: &map.groups,
                replicas,
                now_ms,
                replace_after_ms,
                leader: me,
                rebalance,
                shard_groups: &shard_groups,
                resharding: map.reshard.is_some(),
            };
            // (Whose steps stand untaken does not depend on the group asking.)
            let stuck_groups = match rebalance {
                true => stuck.observe(&cluster(0, replicas)),
                false => Vec::new(),
            };
            let meta = r.host.group(META).filter(|g| g.is_leader());
            let led = led_shard_groups(&r.host).into_iter().map(|g| (g, replicas));
            for (group, replicas) in led.chain(meta.map(|g| (g, META_VOTERS))) {
                let cluster = cluster(group.id(), replicas);
                let status = group.status();
                let acknowledged: Vec<(NodeId, Option<u64>)> = status
                    .members
                    .iter()
                    .filter(|m| !m.2)
                    .map(|m| (m.0, group.matched(m.0)))
                    .collect();
                let stalled = watch.stalled(group.id(), &acknowledged, now_ms);
                let membership = repair::Membership {
                    voters: status.members.iter().filter(|m| m.2).map(|m| m.0).collect(),
                    learners: status
                        .members
                        .iter()
                        .filter(|m| !m.2)
                        .map(|m| (m.0, group.lag(m.0)))
                        .collect(),
                    lagging: status
                        .members
                        .iter()
                        .filter(|m| m.2 && m.0 != me)
                        .filter(|m| group.lag(m.0).is_none_or(|l| l > repair::CAUGHT_UP))
                        .map(|m| m.0)
                        .collect(),
                    shunned: watch.shunned(group.id(), now_ms),
                    stalled,
                    leftovers: old_leftovers.clone(),
                    stuck: stuck_groups.clone(),
                };
                let step = repair::next_step(&membership, &cluster);
                let stalled = match step {
                    repair::Step::Remove(id) if membership.stalled.contains(&id) => {
                        tracing::warn!(
                            group = group.id(),
                            node = id,
                            "a learner stopped catching up: removing it"
                        );
                        Some(id)
                    }
                    repair::Step::Remove(_)
                    | repair::Step::Promote(_)
                    | repair::Step::AddLearner(_)
                    | repair::Step::HandOver(_)
                    | repair::Step::Nothing => None,
                };
                let done = match step {
                    repair::Step::Nothing => continue,
                    repair::Step::Promote(id) => {
                        tokio::time::timeout(step_limit, group.promote(id)).await
                    }
                    repair::Step::Remove(id) => {
                        tokio::time::timeout(step_limit, group.remove(id)).await
                    }
                    repair::Step::AddLearner(id) => {
                        let Some(record) = map.nodes.get(&id) else {
                            continue;
                        };
                        let add = group.add_learner(id, record.addr.clone());
                        tokio::time::timeout(step_limit, add).await
                    }
                    repair::Step::HandOver(id) => Ok(group.transfer_leader(id, step_limit).await),
                };
                if let (Ok(Ok(())), Some(id)) = (&done, stalled) {
                    // Not picked for this group again for a while: the next try goes
                    // elsewhere.
                    watch.shun(group.id(), id, now_ms);
                }
                match done {
                    Ok(Ok(())) => {
                        tracing::info!(group = group.id(), ?step, "repair or rebalancing step")
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(group = group.id(), ?step, error = %e, "repair or rebalancing step")
                    }
                    Err(_) => {
                        tracing::warn!(
                            group = group.id(),
                            ?step,
                            "repair or rebalancing step: timed out"
                        )
                    }
                }
            }
        }
    });
}

/// Whether this node's replica of the meta group follows a leader and is a member by
/// the map last read: only then is reading the map from it merely a little stale.
fn map_replica_current(host: &Host, me: NodeId, router: &shoal_cluster::Router) -> bool {
    let led = host.group(META).is_some_and(|g| g.leader().is_some());
    let named = router.with_cached_map(|m| {
        m.groups
            .get(&META)
            .is_none_or(|record| record.members().any(|id| id == me))
    });
    led && named
}

/// The groups (the meta group too) of which this node has a replica's data, member or
/// not: what its report tells group leaders ([`shoal_cluster::repair`]).
fn held_groups(host: &Host) -> Vec<GroupId> {
    host.group_ids()
        .into_iter()
        .filter(|g| host.group(*g).is_some_and(|h| h.status().holds_data))
        .collect()
}

/// A replica's log as the purge rule last saw it: (membership, last log, snapshot)
/// indexes. A replica the group left behind does not move; one being caught up does.
type LogMark = (u64, u64, u64);

fn log_mark(s: &shoal_raft::GroupStatus) -> LogMark {
    (s.membership_index, s.last_log_index, s.snapshot_index)
}

/// Erases this node's replicas that their groups left behind
/// ([`shoal_cluster::purge`]): the node was replaced while it was gone. A replica is
/// erased on its second decision in a row with its log unchanged (`suspects` holds
/// the first), and the decision is asked again as the erase begins and once the
/// replica's Raft has stopped.
async fn purge_left_behind(
    host: &Host,
    me: NodeId,
    map: &shoal_cluster::ClusterMap,
    suspects: &mut HashMap<GroupId, LogMark>,
) {
    let left_behind = |s: &shoal_raft::GroupStatus| {
        let local = shoal_cluster::purge::LocalReplica {
            holds_data: s.holds_data,
            membership_index: s.membership_index,
            names_me: s.members.iter().any(|m| m.0 == me),
        };
        shoal_cluster::purge::left_behind(me, local, map.groups.get(&s.group))
    };
    for g in host.group_ids() {
        let Some(status) = host.group(g).map(|h| h.status()) else {
            continue;
        };
        if !left_behind(&status) {
            suspects.remove(&g);
            continue;
        }
        let mark = log_mark(&status);
        if suspects.insert(g, mark) != Some(mark) {
            continue;
        }
        let committed = map.groups.get(&g).map_or(0, |r| r.committed_index);
        let still = |s: &shoal_raft::GroupStatus| left_behind(s) && log_mark(s) == mark;
        match host.purge_group(g, still).await {
            Ok(true) => {
                suspects.remove(&g);
                tracing::warn!(
                    group = g,
                    local_membership = status.membership_index,
                    committed_membership = committed,
                    "erased a replica the group removed while this node was away"
                );
            }
            Ok(false) => {
                suspects.remove(&g);
            }
            Err(e) => tracing::error!(group = g, error = %e, "erasing a left-behind replica"),
        }
    }
}

/// The shard groups (not the meta group) this node leads.
fn led_shard_groups(host: &Host) -> Vec<shoal_raft::Group> {
    host.group_ids()
        .into_iter()
        .filter(|g| *g != META)
        .filter_map(|g| host.group(g))
        .filter(|g| g.is_leader())
        .collect()
}

/// The groups this node leads (the meta group too: routers find its voters there
/// once they moved), as the map records them.
fn led_groups(host: &Host, now_ms: u64) -> Vec<(GroupId, GroupRecord)> {
    let meta = host.group(META).filter(|g| g.is_leader());
    led_shard_groups(host)
        .into_iter()
        .chain(meta)
        .map(|g| {
            let status = g.status();
            let (voters, learners): (Vec<_>, Vec<_>) =
                status.members.iter().partition(|(_, _, votes)| *votes);
            let (committed_index, committed_members) = status.committed_membership.clone();
            let record = GroupRecord {
                leader: status.id,
                term: status.term,
                voters: voters.into_iter().map(|(id, _, _)| *id).collect(),
                learners: learners.into_iter().map(|(id, _, _)| *id).collect(),
                seen_ms: now_ms,
                committed_index,
                committed_members,
            };
            (g.id(), record)
        })
        .collect()
}

impl Started {
    /// Whether every group this node holds a replica of has a leader it knows of
    /// (and it holds some: a member's groups are initialized by then).
    pub fn groups_led(&self) -> bool {
        let held: Vec<_> = self
            .host
            .group_ids()
            .into_iter()
            .filter_map(|g| self.host.group(g))
            .filter(|h| h.is_member())
            .collect();
        !held.is_empty() && held.iter().all(|h| h.leader().is_some())
    }

    /// Resolves, with the reason, once the node finds it does not fit the cluster
    /// (another `--groups` or `--replication-factor`); never otherwise.
    pub fn misfit(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut misfit = self.misfit.clone();
        async move {
            let why = misfit
                .wait_for(Option::is_some)
                .await
                .map(|why| why.clone().unwrap_or_default());
            match why {
                Ok(why) => why,
                // The upkeep task is gone without a verdict: nothing to stop for.
                Err(_) => std::future::pending().await,
            }
        }
    }

    /// `shoal node`'s check before it serves RESP, when its data directory has no
    /// `SHAPE` yet and it joins a running cluster or holds data (a restart): the map,
    /// read from the meta group, must have this node's shape ([`crate::cluster_shape`]).
    /// Not for `shoal dev`, whose nodes share their flags and start one by one (the
    /// first could not read a map before the others are up).
    pub async fn check_shape_first(&self, config: &NodeConfig) -> Result<()> {
        let holds_data = self
            .host
            .group_ids()
            .into_iter()
            .filter_map(|g| self.host.group(g))
            .any(|g| g.status().holds_data);
        if !cluster_shape::must_check_first(&config.data_dir, config.join, holds_data) {
            return Ok(());
        }
        let Store::Replicated(r) = &self.node.store else {
            return Ok(());
        };
        let shape = cluster_shape::of(config);
        cluster_shape::check_before_serving(&r.router, &shape, &config.data_dir).await
    }

    /// Stops the groups, then the gRPC server.
    pub async fn stop(self) -> Result<()> {
        self.host.shutdown().await.context("stopping groups")?;
        let _ = self.stop_grpc.send(());
        // tonic's graceful stop waits for every peer to close its connection, and live
        // peers keep theirs open: give in-flight calls a moment, then stop.
        let abort = self.server.abort_handle();
        if tokio::time::timeout(GRPC_DRAIN, self.server).await.is_err() {
            abort.abort();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_the_layout_adds_is_opened_and_listed_for_the_next_start() {
        let dir = tempfile::TempDir::new().unwrap();
        let host = Host::open(1, dir.path(), shoal_raft::raft_config(100, 500, 1_000)).unwrap();
        for group in 0..3 {
            host.open_group(group).await.unwrap();
        }
        // The routing a router installs from a layout that adds group 3.
        let routing = shoal_cluster::Routing::stable(0..4, 1);
        assert!(host.group(3).is_none());
        open_missing_groups(&host, routing.all()).await;
        assert!(host.group(3).is_some());
        // Already open: left as it is.
        let replica = host.replica(3).unwrap();
        open_missing_groups(&host, routing.all()).await;
        assert!(Arc::ptr_eq(&host.replica(3).unwrap(), &replica));
        assert_eq!(host.group_dirs(), vec![0, 1, 2, 3]);
        // A map read racing the shutdown opens nothing after it.
        host.shutdown().await.unwrap();
        open_missing_groups(&host, &[0, 4]).await;
        assert!(host.group(0).is_none() && host.group(4).is_none());
    }

    /// A one-node cluster of `groups` groups in `dir`.
    fn one_node(dir: &tempfile::TempDir, groups: u64) -> crate::dev_cluster::Shape {
        crate::dev_cluster::Shape {
            nodes: 1,
            groups,
            replication_factor: 1,
            zones: vec!["a".to_owned()],
            resp: "127.0.0.1:6379".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            max_bulk_len: 1 << 20,
            busy_poll_us: 0,
            read_mode: None,
            follower_reads: None,
            tls: None,
        }
    }

    /// The whole path on a real one-node cluster (RocksDB, openraft, gRPC): a layout
    /// written to the meta group is read back by the node's map upkeep, its routing
    /// installed and its new group opened; nothing goes back on a later read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_layout_written_to_the_map_is_routed_by_and_its_group_opened() {
        let dir = tempfile::TempDir::new().unwrap();
        let shape = one_node(&dir, 2);
        let cluster = crate::dev_cluster::DevCluster::start(&shape).await.unwrap();
        let started = &cluster.nodes[0];
        let Store::Replicated(r) = &started.node.store else {
            panic!("a cluster node is replicated");
        };
        assert_eq!(r.router.routing().all(), &[0, 1]);
        assert!(started.host.group(2).is_none());
        let layout = shoal_cluster::layout::Layout {
            epoch: 1,
            groups: vec![0, 1],
            moving: Some(shoal_cluster::layout::Moving {
                target: 2,
                switched: Vec::new(),
            }),
        };
        // The meta group may still be electing: retried as a client would.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while let Err(e) = r.router.map_set_layout(&layout, node::now_ms()).await {
            assert!(std::time::Instant::now() < deadline, "{e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while r.router.routing().epoch() < 1 || started.host.group(2).is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "layout not installed: {:?}",
                r.router.routing()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(r.router.routing().all(), &[0, 1, 2]);
        // No source has switched: keys still go to the old groups only.
        assert_eq!(r.router.routing().owners(), &[0, 1]);
        assert_eq!(r.router.cached_map().layout, Some(layout));
        cluster.stop().await.unwrap();
    }

    /// A group that has moved past the router's routing epoch (a reshard step raised
    /// its floor) refuses the router's calls, which run nothing there. The router reads
    /// the map again: while the map is older it answers CLUSTERDOWN, nothing applied;
    /// once the map has the newer routing it plans the command again, and it succeeds
    /// (docs/resharding.md §4). Real one-node cluster: RocksDB, openraft, gRPC.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_router_refused_for_a_stale_map_waits_for_the_new_routing_and_plans_again() {
        use shoal_cluster::shards::{Answer, Op};
        let dir = tempfile::TempDir::new().unwrap();
        let shape = one_node(&dir, 2);
        let cluster = crate::dev_cluster::DevCluster::start(&shape).await.unwrap();
        let started = &cluster.nodes[0];
        let Store::Replicated(r) = &started.node.store else {
            panic!("a cluster node is replicated");
        };
        let key = (0..)
            .map(|i| format!("k{i}").into_bytes())
            .find(|k| r.router.routing().group_of(k) == Some(0))
            .unwrap();
        let args = |parts: &[&[u8]]| parts.iter().map(|p| p.to_vec()).collect::<Vec<_>>();
        // Group 0 begins handing keys to a group 2 at epoch 1; the map says nothing yet.
        let begin = shoal_raft::Request {
            now_ms: node::now_ms(),
            commands: vec![args(&[b"SHOAL._BEGIN", b"1", b"2", b"0", b"1", b"2"])],
            resp3: false,
            guard: Vec::new(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let answer = r.router.shards().call(0, &Op::Write(begin.clone())).await;
            if matches!(&answer, Ok(Answer::Write(w)) if !w.replies.iter().any(|x| x.is_error())) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{answer:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(r.router.routing().epoch(), 0);
        // Refused while the map is older: CLUSTERDOWN, for a write and a read alike.
        let set = |v: &[u8]| vec![args(&[b"SET", &key, v])];
        let get = [args(&[b"GET", &key])];
        let (refused, read) = tokio::join!(
            r.router.write(set(b"1"), node::now_ms()),
            r.router.read(&get, false, false, node::now_ms()),
        );
        for reply in [&refused[0], &read[0]] {
            let shoal_engine::Reply::Error(text) = reply else {
                panic!("not refused: {reply:?}");
            };
            assert!(
                text.starts_with("CLUSTERDOWN shard group 0 is handing keys"),
                "{text}"
            );
        }
        let held = |host: &Host| {
            host.replica(0).is_some_and(|g| {
                g.read()
                    .engine
                    .keyspace()
                    .get(&key, node::now_ms())
                    .is_some()
            })
        };
        assert!(!held(&started.host), "a refused write ran");
        // The write is planned at epoch 0 before the layout is written (the first poll
        // of `join!` plans it), so it can only succeed by waiting for the new routing.
        let layout = shoal_cluster::layout::Layout {
            epoch: 1,
            groups: vec![0, 1],
            moving: Some(shoal_cluster::layout::Moving {
                target: 2,
                switched: Vec::new(),
            }),
        };
        let publish = async {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while let Err(e) = r.router.map_set_layout(&layout, node::now_ms()).await {
                assert!(std::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        // An MSET over both groups and an INCR on group 1: group 1 takes its part at
        // once, group 0's part alone is planned again (an INCR sent twice would say 5).
        let other = (0..)
            .map(|i| format!("o{i}").into_bytes())
            .find(|k| r.router.routing().group_of(k) == Some(1))
            .unwrap();
        let run = vec![
            args(&[b"MSET", &key, b"2", &other, b"3"]),
            args(&[b"INCR", &other]),
        ];
        let (written, ()) = tokio::join!(r.router.write(run, node::now_ms()), publish);
        assert_eq!(
            written,
            vec![shoal_engine::Reply::Ok, shoal_engine::Reply::Int(4)]
        );
        assert_eq!(r.router.routing().epoch(), 1);
        let get = [args(&[b"MGET", &key, &other])];
        let read = r.router.read(&get, false, false, node::now_ms()).await;
        let both = vec![
            shoal_engine::Reply::bulk("2"),
            shoal_engine::Reply::bulk("4"),
        ];
        assert_eq!(read, vec![shoal_engine::Reply::Array(both)]);
        cluster.stop().await.unwrap();
    }

    /// The coordinator's inputs on a real one-node cluster: nothing while no reshard is
    /// recorded; then the record and the layout from the map, each group's state from
    /// its leader (the target, not created yet, silent), and the groups ready. The
    /// decision on them is to wait for the target.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_coordinator_reads_the_record_and_every_groups_state() {
        use shoal_cluster::reshard::{next_action, Action, GroupState, Role};
        use shoal_cluster::reshard_record::{Phase, ReshardRecord};
        let dir = tempfile::TempDir::new().unwrap();
        let shape = one_node(&dir, 2);
        let cluster = crate::dev_cluster::DevCluster::start(&shape).await.unwrap();
        let Store::Replicated(r) = &cluster.nodes[0].node.store else {
            panic!("a cluster node is replicated");
        };
        // Once the map is read (and its shape written), still no reshard: no inputs.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while r.router.cached_map().shape.is_none() || r.router.cached_map().groups.len() < 3 {
            assert!(std::time::Instant::now() < deadline, "no map");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(r.router.reshard_inputs(node::now_ms()).await.is_none());
        // Its member is a node the map does not know, so the group is never started
        // and the coordinator (this node leads the meta group) waits for it.
        let record = ReshardRecord {
            target: 2,
            members: vec![9],
            phase: Phase::Creating,
            run: 1,
            started_ms: node::now_ms(),
            progress: Default::default(),
        };
        r.router
            .map_set_reshard(&record, node::now_ms())
            .await
            .unwrap();
        r.router.refresh_map(node::now_ms(), true).await.unwrap();
        let inputs = r.router.reshard_inputs(node::now_ms()).await.unwrap();
        // The coordinator may have claimed it since (a higher run), nothing else.
        assert!(inputs.record.run >= record.run);
        assert_eq!(
            ReshardRecord {
                run: record.run,
                ..inputs.record.clone()
            },
            record
        );
        assert_eq!(inputs.layout, shoal_cluster::layout::Layout::initial(2));
        let idle = GroupState {
            floor: 0,
            role: Role::None,
        };
        assert_eq!(inputs.states.get(&0), Some(&idle));
        assert_eq!(inputs.states.get(&1), Some(&idle));
        assert!(
            !inputs.states.contains_key(&2),
            "the target has no leader yet"
        );
        for g in [0, 1, shoal_cluster::META] {
            assert!(
                inputs.ready.contains(&g),
                "{g} not ready: {:?}",
                inputs.ready
            );
        }
        assert!(matches!(next_action(inputs.view()), Action::Wait(_)));
        cluster.stop().await.unwrap();
    }

    /// The whole reshard on a real one-node cluster (RocksDB, openraft, gRPC):
    /// `RESHARD ADD-GROUP`'s record, the new group started on its member, and the meta
    /// leader's coordinator taking every step while a writer goes on. Every write
    /// acknowledged before and during the reshard reads back, DBSIZE counts each key
    /// once, and each key is held by the group the final ring gives it and no other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn adding_a_group_moves_its_keys_while_writes_go_on() {
        use shoal_engine::Reply;
        let dir = tempfile::TempDir::new().unwrap();
        let shape = one_node(&dir, 2);
        let cluster = crate::dev_cluster::DevCluster::start(&shape).await.unwrap();
        let started = &cluster.nodes[0];
        let Store::Replicated(r) = &started.node.store else {
            panic!("a cluster node is replicated");
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while r.router.cached_map().shape.is_none() || r.router.cached_map().groups.len() < 3 {
            assert!(std::time::Instant::now() < deadline, "no map");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let set = |k: &str, expire: bool| {
            let mut c = vec![
                b"SET".to_vec(),
                k.as_bytes().to_vec(),
                format!("v-{k}").into_bytes(),
            ];
            if expire {
                c.extend([b"PX".to_vec(), b"600000".to_vec()]);
            }
            c
        };
        let mut acked: Vec<String> = Vec::new();
        for chunk in 0..4 {
            let keys: Vec<String> = (0..100).map(|i| format!("k{}", chunk * 100 + i)).collect();
            let commands = keys.iter().map(|k| set(k, k.ends_with('7'))).collect();
            let replies = r.router.write(commands, node::now_ms()).await;
            assert!(replies.iter().all(|x| *x == Reply::Ok), "{replies:?}");
            acked.extend(keys);
        }
        assert_eq!(r.router.reshard_add_group(node::now_ms()).await, Ok(2));
        let again = r.router.reshard_add_group(node::now_ms()).await;
        assert!(again.is_err_and(|e| e.contains("under way")));
        // Four writers while the reshard runs: each key once, its acknowledgement noted.
        let writer = |t: usize| async move {
            let (mut ok, mut refused) = (Vec::new(), 0);
            for i in 0.. {
                if i % 8 == 0 {
                    let status = r.router.reshard_status(node::now_ms()).await;
                    if status.is_ok_and(|s| s.record.is_none()) {
                        break;
                    }
                }
                let k = format!("w{t}-{i}");
                match r
                    .router
                    .write(vec![set(&k, i % 5 == 0)], node::now_ms())
                    .await
                    .first()
                {
                    Some(Reply::Ok) => ok.push(k),
                    _ => refused += 1,
                }
            }
            (ok, refused)
        };
        let writing = futures::future::join_all((0..4).map(writer));
        let (mut written, mut refused) = (Vec::new(), 0);
        for (ok, no) in tokio::time::timeout(Duration::from_secs(90), writing)
            .await
            .expect("the reshard did not finish within 90 s")
        {
            written.extend(ok);
            refused += no;
        }
        let status = r.router.reshard_status(node::now_ms()).await.unwrap();
        assert_eq!(status.layout.groups, vec![0, 1, 2]);
        assert!(status.layout.moving.is_none());
        assert!(
            written.len() > 20,
            "the writer wrote {} keys",
            written.len()
        );
        acked.extend(written);
        // The router installs the final routing at its next map read.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while r.router.routing().all() != [0, 1, 2] {
            assert!(
                std::time::Instant::now() < deadline,
                "routing not installed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for k in &acked {
            let got = r
                .router
                .read(
                    &[vec![b"GET".to_vec(), k.as_bytes().to_vec()]],
                    false,
                    false,
                    node::now_ms(),
                )
                .await;
            assert_eq!(got, vec![Reply::Bulk(format!("v-{k}").into_bytes())], "{k}");
        }
        let dbsize = r
            .router
            .read(&[vec![b"DBSIZE".to_vec()]], false, false, node::now_ms())
            .await;
        // A refused write may have applied (an unknown outcome), never one not sent.
        let Reply::Int(dbsize) = dbsize[0] else {
            panic!("{dbsize:?}")
        };
        let dbsize = usize::try_from(dbsize).unwrap();
        assert!(
            (acked.len()..=acked.len() + refused).contains(&dbsize),
            "{dbsize} keys, {} acknowledged, {refused} refused",
            acked.len()
        );
        let routing = r.router.routing();
        let now = node::now_ms();
        let mut moved = 0;
        for k in &acked {
            let owner = routing.group_of(k.as_bytes()).unwrap();
            moved += usize::from(owner == 2);
            for g in 0..3 {
                let held = started
                    .host
                    .replica(g)
                    .is_some_and(|x| x.read().engine.keyspace().get(k.as_bytes(), now).is_some());
                assert_eq!(held, g == owner, "{k} on group {g}, owned by {owner}");
            }
        }
        assert!(
            moved > acked.len() / 6,
            "only {moved} of {} keys moved",
            acked.len()
        );
        cluster.stop().await.unwrap();
    }

    /// A call that finds a group where the router's view put it no longer (the node
    /// holds no replica) has the map read again at once, not at the next tick.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_that_finds_the_map_stale_has_it_read_again_before_the_next_tick() {
        let dir = tempfile::TempDir::new().unwrap();
        let shape = one_node(&dir, 1);
        let cluster = crate::dev_cluster::DevCluster::start(&shape).await.unwrap();
        let Store::Replicated(r) = &cluster.nodes[0].node.store else {
            panic!("a cluster node is replicated");
        };
        let reads_after = |n: u64, within: Duration| async move {
            let deadline = std::time::Instant::now() + within;
            while r.router.map_reads() <= n {
                if std::time::Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            true
        };
        // Just after a tick's read, so the next tick is about a second away.
        assert!(
            reads_after(0, Duration::from_secs(20)).await,
            "no map read at all"
        );
        let n = r.router.map_reads();
        assert!(
            reads_after(n, Duration::from_secs(5)).await,
            "the ticks stopped"
        );
        let n = r.router.map_reads();
        // Group 9 is nowhere: this node, the only one it could try, holds no replica.
        let op = shoal_cluster::shards::Op::Read(shoal_cluster::wire::ReadCall {
            commands: vec![vec![b"GET".to_vec(), b"k".to_vec()]],
            resp3: false,
            now_ms: node::now_ms(),
            stale_ok: false,
            versions: Vec::new(),
            epoch: 0,
        });
        let asked = std::time::Instant::now();
        let answer = r
            .router
            .shards()
            .call_within(9, &op, Duration::from_millis(20))
            .await;
        assert!(answer.is_err(), "{answer:?}");
        assert!(
            reads_after(n, Duration::from_millis(600)).await,
            "no early read: the next one came {:?} after the call",
            {
                reads_after(n, Duration::from_secs(5)).await;
                asked.elapsed()
            }
        );
        cluster.stop().await.unwrap();
    }
}
