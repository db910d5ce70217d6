//! Three replicas of a group in one process, each with its own RocksDB, talking over the
//! real gRPC transport on loopback, with faults injected on the sending side.

#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use shoal_engine::Reply;
use shoal_raft::{GroupStatus, Host, NodeAddr, NodeId, Raft, Request, Response};
use tempfile::TempDir;
use tokio::net::TcpListener;

const GROUP: u64 = 1;
const WAIT: Option<Duration> = Some(Duration::from_secs(10));

struct Node {
    id: NodeId,
    addr: String,
    host: Arc<Host>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

fn config() -> openraft::Config {
    openraft::Config {
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        ..Default::default()
    }
}

async fn serve(
    host: &Arc<Host>,
    listener: TcpListener,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let host = host.clone();
    let server = tokio::spawn(async move {
        let _ = host
            .serve(listener, async {
                let _ = rx.await;
            })
            .await;
    });
    (tx, server)
}

/// Opens a node's storage, waiting for a previous instance in this process to let go
/// of it: a stopped node's RocksDB stays locked until the last task holding it (a
/// server connection, a Raft task winding down) has ended, which is shortly after its
/// shutdown returns, not at once.
async fn open_when_released(id: NodeId, dir: &std::path::Path, config: openraft::Config) -> Host {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Host::open(id, dir, config.clone()) {
            Ok(host) => return host,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("opening node {id}: {e}"),
        }
    }
}

impl Node {
    async fn start(
        id: NodeId,
        dir: &std::path::Path,
        listener: TcpListener,
        config: openraft::Config,
    ) -> Node {
        let addr = listener.local_addr().unwrap().to_string();
        let host = Arc::new(open_when_released(id, &dir.join(format!("node-{id}")), config).await);
        host.open_group(GROUP).await.unwrap();
        let (stop, server) = serve(&host, listener).await;
        Node {
            id,
            addr,
            host,
            stop: Some(stop),
            server: Some(server),
        }
    }

    fn raft(&self) -> Raft {
        self.host.raft(GROUP).unwrap()
    }

    fn digest(&self) -> u64 {
        self.host.replica(GROUP).unwrap().read().engine.digest()
    }

    fn hget(&self, key: &str) -> Reply {
        let replica = self.host.replica(GROUP).unwrap();
        let r = replica.read();
        r.engine.query(
            &["HGET", key, "f"],
            shoal_engine::ReadContext {
                now_ms: 1,
                resp3: false,
                in_apply: false,
            },
        )
    }

    async fn stop(&mut self) {
        self.host.shutdown().await.unwrap();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

struct Cluster {
    _dir: TempDir,
    nodes: Vec<Node>,
}

impl Cluster {
    async fn start(config: openraft::Config) -> Cluster {
        let dir = TempDir::new().unwrap();
        let mut nodes = Vec::new();
        for id in 1..=3 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            nodes.push(Node::start(id, dir.path(), listener, config.clone()).await);
        }
        let members: BTreeMap<NodeId, NodeAddr> = nodes
            .iter()
            .map(|n| {
                (
                    n.id,
                    NodeAddr {
                        zone: format!("zone-{}", n.id),
                        raft: n.addr.clone(),
                        resp: String::new(),
                    },
                )
            })
            .collect();
        nodes[0].raft().initialize(members).await.unwrap();
        Cluster { _dir: dir, nodes }
    }

    fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize - 1]
    }

    /// Waits until `among` agree on a leader that is one of them; returns it.
    async fn leader(&self, among: &[NodeId]) -> NodeId {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let views: Vec<Option<NodeId>> = among
                .iter()
                .map(|&id| {
                    let m = self.node(id).raft().metrics().borrow_watched().clone();
                    m.current_leader
                })
                .collect();
            if let Some(Some(l)) = views.first() {
                let l = *l;
                if among.contains(&l)
                    && views.iter().all(|v| *v == Some(l))
                    && self.node(l).raft().metrics().borrow_watched().state == ServerState::Leader
                {
                    return l;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no leader among {among:?}: {views:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cuts `id` off from every other node, both ways (or heals it).
    fn isolate(&self, id: NodeId, cut: bool) {
        for other in &self.nodes {
            if other.id != id {
                other.host.network().faults().block(id, cut);
                self.node(id).host.network().faults().block(other.id, cut);
            }
        }
    }

    /// Waits until every node has applied `index`, then checks their digests agree.
    async fn converge(&self, index: u64) -> u64 {
        for n in &self.nodes {
            n.raft()
                .wait(WAIT)
                .applied_index_at_least(Some(index), "replica catches up")
                .await
                .unwrap_or_else(|e| panic!("node {} did not catch up: {e}", n.id));
        }
        let digests: Vec<u64> = self.nodes.iter().map(Node::digest).collect();
        assert!(
            digests.windows(2).all(|w| w[0] == w[1]),
            "digests differ: {digests:?}"
        );
        digests[0]
    }
}

fn hset(key: &str, value: &str) -> Request {
    Request {
        now_ms: 1,
        commands: vec![vec![
            b"HSET".to_vec(),
            key.into(),
            b"f".to_vec(),
            value.into(),
        ]],
        resp3: false,
        guard: Vec::new(),
    }
}

/// Writes through whichever of `among` leads, finding it again when leadership moved
/// between the lookup and the write (a new leader may also refuse until its lease
/// holds): the test asserts what the group commits, not which node answered first.
async fn write_on_leader(cluster: &Cluster, among: &[NodeId], key: &str) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let leader = cluster.leader(among).await;
        match cluster
            .node(leader)
            .raft()
            .client_write(hset(key, "v"))
            .await
        {
            Ok(resp) => {
                assert_eq!(resp.data, Response::replies(vec![Reply::Int(1)]));
                return resp.log_id.index;
            }
            Err(e) if e.forward_to_leader().is_some() && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("writing {key}: {e}"),
        }
    }
}

async fn write(raft: &Raft, key: &str) -> u64 {
    let resp = raft.client_write(hset(key, "v")).await.unwrap();
    assert_eq!(resp.data, Response::replies(vec![Reply::Int(1)]));
    resp.log_id.index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_elect_replicate_and_converge() {
    let cluster = Cluster::start(config()).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    let raft = cluster.node(leader).raft();
    let mut last = 0;
    for i in 0..200 {
        last = write(&raft, &format!("k{i}")).await;
    }
    cluster.converge(last).await;
    for n in &cluster.nodes {
        assert_eq!(n.hget("k199"), Reply::bulk("v"), "node {}", n.id);
        assert_eq!(n.host.replica(GROUP).unwrap().read().engine.dbsize(1), 200);
    }
    // A follower refuses writes and names the leader.
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap();
    let err = follower
        .raft()
        .client_write(hset("x", "v"))
        .await
        .unwrap_err();
    let forward = err.forward_to_leader().expect("forward to leader");
    assert_eq!(forward.leader_id, Some(leader));
}

/// A leader hands over to a named voter, which then leads and commits; nothing
/// acknowledged before is lost. A hand-over to a voter that is cut off fails, and the
/// other two elect a leader and go on committing (a pause, not an outage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_is_handed_to_a_named_voter() {
    let cluster = Cluster::start(config()).await;
    let all = [1, 2, 3];
    let mut last = 0;
    for i in 0..10 {
        last = write_on_leader(&cluster, &all, &format!("a{i}")).await;
    }
    let first = cluster.leader(&all).await;
    let term = cluster
        .node(first)
        .raft()
        .metrics()
        .borrow_watched()
        .current_term;
    let to = all.into_iter().find(|&id| id != first).unwrap();
    let group = cluster.node(first).host.group(GROUP).unwrap();
    group
        .transfer_leader(to, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(cluster.leader(&all).await, to);
    let now = cluster
        .node(to)
        .raft()
        .metrics()
        .borrow_watched()
        .current_term;
    assert!(now > term, "a new term: {term} -> {now}");
    // The old leader no longer leads: it cannot hand anything over.
    let refused = group.transfer_leader(first, Duration::from_secs(1)).await;
    assert!(
        matches!(refused, Err(shoal_raft::GroupError::NotLeader { .. })),
        "{refused:?}"
    );
    for i in 0..10 {
        last = write_on_leader(&cluster, &all, &format!("b{i}")).await;
    }
    cluster.converge(last).await;
    for n in &cluster.nodes {
        assert_eq!(n.host.replica(GROUP).unwrap().read().engine.dbsize(1), 20);
    }

    // To a voter that cannot hear anyone: no.
    let third = all.into_iter().find(|&id| id != first && id != to).unwrap();
    cluster.isolate(third, true);
    let group = cluster.node(to).host.group(GROUP).unwrap();
    let failed = group.transfer_leader(third, Duration::from_secs(3)).await;
    assert!(failed.is_err(), "{failed:?}");
    let rest = [first, to];
    for i in 0..10 {
        last = write_on_leader(&cluster, &rest, &format!("c{i}")).await;
    }
    cluster.isolate(third, false);
    cluster.converge(last).await;
    for n in &cluster.nodes {
        assert_eq!(n.host.replica(GROUP).unwrap().read().engine.dbsize(1), 30);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_does_not_commit_and_is_overwritten() {
    let mut cluster = Cluster::start(config()).await;
    let before = write_on_leader(&cluster, &[1, 2, 3], "before").await;
    let old = cluster.leader(&[1, 2, 3]).await;
    cluster.converge(before).await;

    cluster.isolate(old, true);
    let stranded = cluster.node(old).raft();
    let attempt = tokio::spawn(async move {
        tokio::time::timeout(
            Duration::from_secs(3),
            stranded.client_write(hset("lost", "v")),
        )
        .await
    });
    let rest: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&id| id != old).collect();
    let new = cluster.leader(&rest).await;
    assert_ne!(new, old);
    let after = write_on_leader(&cluster, &rest, "after").await;
    match attempt.await.unwrap() {
        Err(_elapsed) => {}
        Ok(Err(e)) => assert!(e.forward_to_leader().is_some(), "unexpected error {e}"),
        Ok(Ok(r)) => panic!("an isolated leader committed {:?}", r.log_id),
    }

    cluster.isolate(old, false);
    cluster.converge(after).await;
    for n in &cluster.nodes {
        assert_eq!(n.hget("before"), Reply::bulk("v"), "node {}", n.id);
        assert_eq!(n.hget("after"), Reply::bulk("v"), "node {}", n.id);
        assert_eq!(
            n.hget("lost"),
            Reply::Null,
            "node {} kept an uncommitted write",
            n.id
        );
    }
    for n in &mut cluster.nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_goes_on_when_a_fifth_of_all_messages_are_lost() {
    let cluster = Cluster::start(config()).await;
    cluster.leader(&[1, 2, 3]).await;
    for (seed, n) in cluster.nodes.iter().enumerate() {
        n.host.network().faults().set_drop(200, seed as u64 + 7);
    }
    // A lost heartbeat streak can move leadership; a write refused by a node that is no
    // longer leader is sent again to the new one (it sets the same value, so a retry
    // of one that did commit changes nothing).
    let mut last = 0;
    for i in 0..60 {
        let key = format!("lossy{i}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        last = loop {
            let leader = cluster.leader(&[1, 2, 3]).await;
            match cluster
                .node(leader)
                .raft()
                .client_write(hset(&key, "v"))
                .await
            {
                Ok(resp) => break resp.log_id.index,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "{key}: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
    }
    let lost: u64 = cluster
        .nodes
        .iter()
        .map(|n| n.host.network().faults().dropped())
        .sum();
    assert!(lost > 0, "no message was lost");
    for n in &cluster.nodes {
        n.host.network().faults().heal();
    }
    cluster.converge(last).await;
    for n in &cluster.nodes {
        for i in 0..60 {
            assert_eq!(
                n.hget(&format!("lossy{i}")),
                Reply::bulk("v"),
                "node {}",
                n.id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_follower_does_not_hold_up_commits() {
    // Heartbeats reach the slow follower late but well inside its election timeout, so
    // it stays a follower; it just acknowledges everything `SLOW` late.
    const SLOW: Duration = Duration::from_millis(400);
    let cfg = openraft::Config {
        election_timeout_min: 1500,
        election_timeout_max: 3000,
        ..config()
    };
    let cluster = Cluster::start(cfg).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    let slow = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    cluster
        .node(leader)
        .host
        .network()
        .faults()
        .set_delay(slow, SLOW);
    let raft = cluster.node(leader).raft();
    let mut latencies = Vec::new();
    let mut last = 0;
    for i in 0..20 {
        let started = std::time::Instant::now();
        last = write(&raft, &format!("slow{i}")).await;
        latencies.push(started.elapsed());
    }
    // The last write is committed; the slow follower cannot have it yet, since every
    // message to it waits `SLOW` first: commits went at the fast follower's pace.
    let slow_applied = cluster
        .node(slow)
        .raft()
        .metrics()
        .borrow_watched()
        .last_applied;
    assert!(
        slow_applied.is_none_or(|l| l.index < last),
        "the delay did not hold the slow follower back: {slow_applied:?} vs {last}"
    );
    latencies.sort();
    // Waiting on the slow follower would make every write take at least `SLOW`.
    assert!(
        latencies[latencies.len() / 2] < SLOW / 2,
        "writes waited for the slow follower: {latencies:?}"
    );
    // Slow is not lost: it catches up and agrees.
    cluster.converge(last).await;
    assert_eq!(cluster.node(slow).hget("slow19"), Reply::bulk("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_catches_up_by_snapshot() {
    let cfg = openraft::Config {
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(30),
        max_in_snapshot_log_to_keep: 0,
        ..config()
    };
    let cluster = Cluster::start(cfg).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    let lagging = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    cluster.isolate(lagging, true);
    let raft = cluster.node(leader).raft();
    let mut last = 0;
    for i in 0..120 {
        last = write(&raft, &format!("s{i}")).await;
    }
    // The leader has snapshotted and purged what the lagging replica lacks.
    raft.wait(WAIT)
        .metrics(
            |m| m.purged.is_some_and(|p| p.index > 30),
            "leader purged its log",
        )
        .await
        .unwrap();
    cluster.isolate(lagging, false);
    cluster.converge(last).await;
    let m = cluster
        .node(lagging)
        .raft()
        .metrics()
        .borrow_watched()
        .clone();
    assert!(
        m.snapshot.is_some(),
        "the lagging replica installed a snapshot: {m:?}"
    );
    assert_eq!(cluster.node(lagging).hget("s119"), Reply::bulk("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_recovers_from_rocksdb_and_catches_up() {
    let mut cluster = Cluster::start(config()).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    let raft = cluster.node(leader).raft();
    let mut last = 0;
    for i in 0..50 {
        last = write(&raft, &format!("r{i}")).await;
    }
    cluster.converge(last).await;
    let restarted = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    let at = restarted as usize - 1;
    let addr = cluster.nodes[at].addr.clone();
    let dir = cluster._dir.path().to_path_buf();
    let mut old = cluster.nodes.remove(at);
    old.stop().await;
    // The node's RocksDB is closed only when the last handle to it goes.
    drop(old);
    for i in 50..80 {
        last = write(&raft, &format!("r{i}")).await;
    }
    {
        // Before it can hear from anyone, the replica rebuilds its engine from its own
        // log: everything it had applied is back.
        let host =
            open_when_released(restarted, &dir.join(format!("node-{restarted}")), config()).await;
        host.open_group(GROUP).await.unwrap();
        let keys = host.replica(GROUP).unwrap().read().engine.dbsize(1);
        assert_eq!(keys, 50, "replayed from the local log");
        host.shutdown().await.unwrap();
    }
    let listener = TcpListener::bind(&addr).await.unwrap();
    cluster
        .nodes
        .insert(at, Node::start(restarted, &dir, listener, config()).await);
    cluster.converge(last).await;
    assert_eq!(cluster.nodes[at].hget("r0"), Reply::bulk("v"));
    assert_eq!(cluster.nodes[at].hget("r79"), Reply::bulk("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_group_twice_at_once_starts_one_raft() {
    let dir = TempDir::new().unwrap();
    let host = Arc::new(Host::open(9, dir.path(), config()).unwrap());
    let (a, b) = tokio::join!(host.open_group(GROUP), host.open_group(GROUP));
    let (a, b) = (a.unwrap(), b.unwrap());
    // Both callers got the same group (one Raft over the log), not two.
    a.initialize(BTreeMap::from([(9, NodeAddr::default())]))
        .await
        .unwrap();
    b.wait(WAIT)
        .state(ServerState::Leader, "the one raft leads")
        .await
        .unwrap();
    write(&a, "once").await;
    assert_eq!(host.group_ids(), vec![GROUP]);
    host.shutdown().await.unwrap();
}

/// Long-lived answers (a peer's stream of confirmation rounds) end on `stopping`:
/// pending while the node runs, resolved by the shutdown, and at once for a caller
/// that asks after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_tells_when_it_begins_to_stop() {
    let dir = TempDir::new().unwrap();
    let host = Host::open(9, dir.path(), config()).unwrap();
    host.open_group(GROUP).await.unwrap();
    let early = tokio::spawn(host.stopping());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!early.is_finished(), "resolved while the host runs");
    host.shutdown().await.unwrap();
    let ten = Duration::from_secs(10);
    tokio::time::timeout(ten, early).await.unwrap().unwrap();
    tokio::time::timeout(ten, host.stopping()).await.unwrap();
}

/// A replica the group removed is erased (log, vote, snapshot: durably, a restart
/// does not bring it back), and the group can add the node back as a fresh learner
/// that catches up like any new replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_replica_is_erased_and_can_be_added_back() {
    let cfg = openraft::Config {
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10),
        ..config()
    };
    let mut cluster = Cluster::start(cfg.clone()).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    let removed = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    let raft = cluster.node(leader).raft();
    let mut last = 0;
    for i in 0..25 {
        last = write(&raft, &format!("p{i}")).await;
    }
    cluster.converge(last).await;
    let group = cluster.node(leader).host.group(GROUP).unwrap();
    group.remove(removed).await.unwrap();
    let committed = group.status().committed_membership;
    assert!(!committed.1.contains(&removed), "{committed:?}");

    let at = removed as usize - 1;
    let host = cluster.nodes[at].host.clone();
    let before = host.group(GROUP).unwrap().status();
    assert!(before.holds_data, "{before:?}");
    assert!(
        before.membership_index < committed.0 || !before.members.iter().any(|m| m.0 == removed)
    );
    let snapshots = cluster
        ._dir
        .path()
        .join(format!("node-{removed}/groups/{GROUP}"));
    // A decision that no longer holds once asked again leaves the replica alone.
    assert!(!host.purge_group(GROUP, |_| false).await.unwrap());
    let kept = host.group(GROUP).unwrap().status();
    assert!(kept.holds_data, "{kept:?}");
    assert_eq!(host.replica(GROUP).unwrap().read().engine.dbsize(1), 25);
    assert!(!host.was_erased(GROUP));
    // Nor does one that holds when first asked but not once the Raft has stopped: the
    // replica is reopened as it was, and its old state machine is retired (a snapshot
    // build of it still in flight must not write the file the reopened one owns).
    let old = host.retirement(GROUP).unwrap();
    let asked = AtomicUsize::new(0);
    let first_only = |_: &GroupStatus| asked.fetch_add(1, Ordering::SeqCst) == 0;
    assert!(!host.purge_group(GROUP, first_only).await.unwrap());
    assert_eq!(
        asked.load(Ordering::SeqCst),
        2,
        "asked before and after the stop"
    );
    assert!(old.is_retired());
    assert!(!host.retirement(GROUP).unwrap().is_retired());
    let reopened = host.raft(GROUP).unwrap();
    reopened
        .wait(WAIT)
        .applied_index_at_least(Some(last), "the reopened replica replays its log")
        .await
        .unwrap();
    assert!(host.group(GROUP).unwrap().status().holds_data);
    assert_eq!(host.replica(GROUP).unwrap().read().engine.dbsize(1), 25);
    // The reopened state machine still writes snapshots.
    let applied = reopened
        .metrics()
        .borrow_watched()
        .last_applied
        .map(|l| l.index);
    reopened.trigger().snapshot().await.unwrap();
    reopened
        .wait(WAIT)
        .metrics(
            |m| m.snapshot.map(|l| l.index) >= applied,
            "the reopened replica builds a snapshot",
        )
        .await
        .unwrap();
    assert!(host.purge_group(GROUP, |s| s.holds_data).await.unwrap());
    let after = host.group(GROUP).unwrap().status();
    assert!(!after.holds_data, "{after:?}");
    assert_eq!(after.membership_index, 0);
    assert_eq!(after.last_log_index, 0);
    assert!(after.members.is_empty(), "{after:?}");
    assert_eq!(host.replica(GROUP).unwrap().read().engine.dbsize(1), 0);
    assert_eq!(std::fs::read_dir(&snapshots).unwrap().count(), 0);

    // Durable: a restart of the node opens an empty replica.
    let addr = cluster.nodes[at].addr.clone();
    let dir = cluster._dir.path().to_path_buf();
    let mut old = cluster.nodes.remove(at);
    old.stop().await;
    drop(old);
    drop(host);
    let listener = TcpListener::bind(&addr).await.unwrap();
    cluster
        .nodes
        .insert(at, Node::start(removed, &dir, listener, cfg).await);
    let reopened = cluster.nodes[at].host.group(GROUP).unwrap().status();
    assert!(!reopened.holds_data, "{reopened:?}");
    assert!(cluster.nodes[at].host.was_erased(GROUP));
    // Erased and empty, it refuses every vote request for the group (a replica that
    // missed its own removal could otherwise be elected by such replicas); the
    // others vote as before.
    assert!(cluster.nodes[at].host.service().refuses_votes(GROUP));
    assert!(!cluster.node(leader).host.service().refuses_votes(GROUP));

    // Added back, it catches up from nothing (by snapshot or log, whichever the
    // leader still has) and holds every key.
    let peer = NodeAddr {
        zone: format!("zone-{removed}"),
        raft: addr,
        resp: String::new(),
    };
    group.add_learner(removed, peer).await.unwrap();
    last = write(&raft, "after").await;
    cluster.nodes[at]
        .raft()
        .wait(WAIT)
        .applied_index_at_least(Some(last), "the erased node catches up")
        .await
        .unwrap();
    assert_eq!(cluster.nodes[at].hget("p0"), Reply::bulk("v"));
    assert_eq!(cluster.nodes[at].hget("after"), Reply::bulk("v"));
    // Holding the group's data again, it votes again.
    assert!(!cluster.nodes[at].host.service().refuses_votes(GROUP));
    // But it never offers its log for a quorum read (`Host::read_views`): what it was
    // given back may be older than what its erased log had acknowledged. A replica
    // never erased does.
    group.promote(removed).await.unwrap();
    let (_, log) = cluster.nodes[at].host.read_views(GROUP).unwrap();
    assert_eq!(log, None);
    let (_, log) = cluster.node(leader).host.read_views(GROUP).unwrap();
    assert!(log.is_some_and(|l| l.settled_membership.is_some()));
}

/// A membership change asked for while the last one is appended but not yet committed
/// waits for that commit instead of failing: the leader's links are slowed so that its
/// first change stays uncommitted for a while, and a second change is asked for inside
/// that window (openraft alone refuses it: "already undergoing a configuration change").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_change_waits_for_the_one_before_it() {
    const SLOW: Duration = Duration::from_millis(250);
    let cluster = Cluster::start(config()).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    let group = cluster.node(leader).host.group(GROUP).unwrap();
    let learner = |id: NodeId| NodeAddr {
        zone: format!("zone-{id}"),
        // Nobody listens there: a learner that never catches up is fine for this.
        raft: "127.0.0.1:9".into(),
        resp: String::new(),
    };
    for n in &cluster.nodes {
        if n.id != leader {
            cluster
                .node(leader)
                .host
                .network()
                .faults()
                .set_delay(n.id, SLOW);
        }
    }
    let first = {
        let group = group.clone();
        let addr = learner(4);
        tokio::spawn(async move { group.add_learner(4, addr).await })
    };
    // The first change appended and not committed: the window the second lands in.
    let raft = cluster.node(leader).raft();
    raft.wait(WAIT)
        .metrics(
            |m| {
                m.membership_config.nodes().any(|(id, _)| *id == 4)
                    && m.membership_config.log_id() != m.committed_membership_config.log_id()
            },
            "the first change appended, uncommitted",
        )
        .await
        .unwrap();
    group.add_learner(5, learner(5)).await.unwrap();
    first.await.unwrap().unwrap();
    // Both committed. The metrics follow a change's commit by a report, so they are
    // waited for, not read at once.
    raft.wait(WAIT)
        .metrics(
            |m| {
                let committed: Vec<NodeId> = m
                    .committed_membership_config
                    .nodes()
                    .map(|(id, _)| *id)
                    .collect();
                committed.contains(&4) && committed.contains(&5)
            },
            "both learners in the committed membership",
        )
        .await
        .unwrap();
    cluster.node(leader).host.network().faults().heal();
}

/// What a restart reopens: groups with a directory, and a group whose erase a crash
/// cut short after its directory went (the open finishes it); no mark, nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_dirs_lists_groups_and_interrupted_erases_only() {
    let dir = TempDir::new().unwrap();
    let host = Host::open(9, dir.path(), config()).unwrap();
    let groups = dir.path().join("groups");
    std::fs::create_dir_all(groups.join("3")).unwrap();
    std::fs::create_dir_all(groups.join("scratch")).unwrap();
    std::fs::write(groups.join("7.purging"), b"").unwrap();
    std::fs::write(groups.join("5.erased"), b"").unwrap();
    std::fs::write(groups.join("11"), b"").unwrap();
    assert_eq!(host.group_dirs(), vec![3, 7]);
    // A shut down node opens nothing more.
    host.shutdown().await.unwrap();
    assert!(matches!(
        host.open_group(3).await,
        Err(shoal_raft::RaftError::ShuttingDown)
    ));
    assert!(host.group(3).is_none());
}

/// A purge a crash interrupted (its mark still there) is finished when the group opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_purge_is_finished_at_the_next_open() {
    let dir = TempDir::new().unwrap();
    {
        let host = Host::open(9, dir.path(), config()).unwrap();
        let raft = host.open_group(GROUP).await.unwrap();
        raft.initialize(BTreeMap::from([(9, NodeAddr::default())]))
            .await
            .unwrap();
        raft.wait(WAIT)
            .state(ServerState::Leader, "leads alone")
            .await
            .unwrap();
        write(&raft, "k").await;
        assert!(host.group(GROUP).unwrap().status().holds_data);
        host.shutdown().await.unwrap();
    }
    std::fs::write(dir.path().join(format!("groups/{GROUP}.purging")), b"").unwrap();
    let host = open_when_released(9, dir.path(), config()).await;
    // Never initialized and not erased: an empty replica votes (a group's first
    // members vote before they initialize it themselves).
    host.open_group(GROUP + 1).await.unwrap();
    assert!(!host.service().refuses_votes(GROUP + 1));
    host.open_group(GROUP).await.unwrap();
    let status = host.group(GROUP).unwrap().status();
    assert!(!status.holds_data, "{status:?}");
    assert_eq!(host.replica(GROUP).unwrap().read().engine.dbsize(1), 0);
    assert!(!dir.path().join(format!("groups/{GROUP}.purging")).exists());
    assert!(host.was_erased(GROUP));
    // What a restart reopens before it reads the cluster map: the groups opened, and
    // not the marks beside them.
    assert!(dir.path().join(format!("groups/{GROUP}.erased")).exists());
    assert_eq!(host.group_dirs(), vec![GROUP, GROUP + 1]);
    host.shutdown().await.unwrap();
}

/// Every replica's vote view names the leader at one term; only the leader gives a
/// read index, and it covers every acknowledged write. A partitioned leader's view
/// still names itself (it cannot know better), but the replicas that elected its
/// successor name the successor: a read confirmed by the old leader and one of them
/// is refused (shoal-cluster's `confirm`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vote_views_name_the_leader_and_only_it_gives_a_read_index() {
    let cluster = Cluster::start(config()).await;
    let all = [1, 2, 3];
    let mut last = 0;
    for i in 0..20 {
        last = write_on_leader(&cluster, &all, &format!("v{i}")).await;
    }
    let leader = cluster.leader(&all).await;
    let cluster = &cluster;
    let views = |id: NodeId| async move {
        let group = cluster.node(id).host.group(GROUP).unwrap();
        group.vote_view().unwrap()
    };
    let view = |id: NodeId| async move { views(id).await.0 };
    let log = |id: NodeId| async move { views(id).await.1 };
    let lead = view(leader).await;
    assert_eq!(lead.node, leader);
    assert!(
        lead.read_index.is_some_and(|i| i >= last),
        "{lead:?} after {last}"
    );
    assert_eq!(lead.voters.as_deref(), Some(&all[..]));
    for id in all.into_iter().filter(|&id| id != leader) {
        let v = view(id).await;
        assert!(v.votes_for(lead.term, leader), "node {id}: {v:?}");
        assert_eq!(v.read_index, None, "node {id} does not lead");
        assert_eq!(v.voters, lead.voters);
    }
    // The logs proof: every replica knows the one membership committed, at one index,
    // and any two replicas' logs reach every acknowledged write.
    let mut logs = Vec::new();
    for id in all {
        logs.push(log(id).await);
    }
    assert!(logs[0].settled_membership.is_some(), "{logs:?}");
    assert!(logs
        .iter()
        .all(|l| l.settled_membership == logs[0].settled_membership));
    // Two distinct replicas: one alone may trail (a write is acknowledged once two of
    // three hold it, and the third may not have it yet).
    for (i, a) in logs.iter().enumerate() {
        for b in &logs[i + 1..] {
            assert!(
                a.last_log.max(b.last_log) >= last,
                "{a:?} {b:?} after {last}"
            );
        }
    }
    // Cut the leader off: the other two elect a successor at a newer term.
    cluster.isolate(leader, true);
    let rest: Vec<NodeId> = all.into_iter().filter(|&id| id != leader).collect();
    let next = cluster.leader(&rest).await;
    let stale = view(leader).await;
    assert!(stale.votes_for(lead.term, leader), "{stale:?}");
    for &id in &rest {
        let v = view(id).await;
        assert!(
            !v.votes_for(lead.term, leader),
            "node {id} still votes {v:?}"
        );
        assert!(
            v.votes_for(v.term, next) && v.term > lead.term,
            "node {id}: {v:?}"
        );
    }
    // Writes the cut-off leader never sees: its own log misses them, but paired with
    // either replica that elected its successor the logs reach them.
    let mut acked = 0;
    for i in 0..5 {
        acked = write_on_leader(cluster, &rest, &format!("w{i}")).await;
    }
    let stale = log(leader).await;
    assert!(stale.last_log < acked, "{stale:?} after {acked}");
    for &id in &rest {
        let l = log(id).await;
        assert!(stale.last_log.max(l.last_log) >= acked, "node {id}: {l:?}");
    }
    cluster.isolate(leader, false);
}

/// Entries planned by a routing older than the group's (docs/resharding.md §3.2): the
/// floor a reshard step raised refuses them on every replica at their log position,
/// nothing of them runs, and the replicas stay equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_below_the_groups_routing_epoch_is_refused_on_every_replica() {
    let cluster = Cluster::start(config()).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    let raft = cluster.node(leader).raft();
    let entry = |commands: Vec<Vec<&str>>| Request {
        now_ms: 1,
        commands: commands
            .into_iter()
            .map(|c| c.into_iter().map(|a| a.as_bytes().to_vec()).collect())
            .collect(),
        resp3: false,
        guard: Vec::new(),
    };
    // Epoch 0 adds nothing to an entry: what a cluster that never resharded writes.
    assert_eq!(hset("a", "v").at_epoch(0), hset("a", "v"));
    // Before any reshard every epoch passes.
    let resp = raft.client_write(hset("a", "1").at_epoch(3)).await.unwrap();
    assert_eq!(resp.data, Response::replies(vec![Reply::Int(1)]));
    // A reshard step raises the floor to 5.
    let begin = entry(vec![vec!["SHOAL._BEGIN", "5", "3", "0", "1", "2", "3"]]);
    let resp = raft.client_write(begin).await.unwrap();
    assert!(!resp.data.replies[0].is_error(), "{:?}", resp.data);
    // Older: refused whole, with the floor; equal or newer: applied, the epoch stripped.
    let resp = raft.client_write(hset("b", "1").at_epoch(4)).await.unwrap();
    assert_eq!(resp.data.stale, Some(5));
    assert!(resp.data.replies.is_empty());
    // Without an epoch: planned at 0 (a router that has not seen the reshard yet).
    let resp = raft.client_write(hset("x", "1")).await.unwrap();
    assert_eq!(resp.data.stale, Some(5));
    let resp = raft.client_write(hset("c", "1").at_epoch(5)).await.unwrap();
    assert_eq!(
        (resp.data.stale, resp.data.replies.clone()),
        (None, vec![Reply::Int(1)])
    );
    // Entries proposed together, likely applied in one batch: the floor moves exactly
    // at the step's position, so one at epoch 5 runs before it and not after it.
    let fence = entry(vec![vec!["SHOAL._FENCE", "3", "6"]]);
    let (a, b, c) = tokio::join!(
        raft.client_write(hset("d", "1").at_epoch(5)),
        raft.client_write(fence),
        raft.client_write(hset("e", "1").at_epoch(5)),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    let fenced_at = b.log_id.index;
    // Whichever order the three were committed in, an entry ran exactly when it came
    // before the fence.
    for resp in [&a, &c] {
        let ran = resp.log_id.index < fenced_at;
        assert_eq!(resp.data.stale, (!ran).then_some(6), "{resp:?}");
    }
    let last_index = a.log_id.index.max(b.log_id.index).max(c.log_id.index);
    cluster.converge(last_index).await;
    let shown = |ran: bool| if ran { Reply::bulk("1") } else { Reply::Null };
    for n in &cluster.nodes {
        assert_eq!(n.hget("a"), Reply::bulk("1"), "node {}", n.id);
        assert_eq!(n.hget("b"), Reply::Null, "node {}", n.id);
        assert_eq!(n.hget("x"), Reply::Null, "node {}", n.id);
        assert_eq!(n.hget("c"), Reply::bulk("1"), "node {}", n.id);
        assert_eq!(
            n.hget("d"),
            shown(a.log_id.index < fenced_at),
            "node {}",
            n.id
        );
        assert_eq!(
            n.hget("e"),
            shown(c.log_id.index < fenced_at),
            "node {}",
            n.id
        );
        let floor = n.host.replica(GROUP).unwrap().read().engine.layout().floor;
        assert_eq!(floor, 6, "node {}", n.id);
    }
}
