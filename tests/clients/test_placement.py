"""Where shard groups live: each group on `--replication-factor` nodes in distinct zones,
spread so that every node holds some and leads some; and, when a node is gone longer
than `--replace-after-ms`, its replicas re-created on the others (learner, snapshot,
promote, remove) so that every group is back to full replication with its data.

Real `shoal node` processes on loopback; clients talk to node 1's router, which also
routes to groups it holds no replica of.
"""

import signal
import time

import pytest
import redis

from conftest import ClusterServer, free_port, wait_for


def groups(client, n):
    """Each group's leader and voters as INFO cluster reports them."""
    info = client.info("cluster")
    out = {}
    for g in range(n):
        line = info[f"group{g}"]
        voters = str(line.get("voters", ""))
        out[g] = {
            "leader": line.get("leader"),
            "voters": sorted(int(v) for v in voters.split("|") if v),
        }
    return out, info


def zone_of(info, node_id):
    return info[f"node{node_id}"]["zone"]


def local_keys(port):
    """Keys in the replicas this node holds (INFO keyspace counts only those)."""
    info = redis.Redis(host="127.0.0.1", port=port, protocol=2).info("keyspace")
    return info.get("db0", {}).get("keys", 0)


def test_groups_sit_on_three_nodes_in_three_zones_and_spread_over_five(tmp_path):
    c = ClusterServer(tmp_path, nodes=5, groups=5,
                      extra=["--replication-factor", "3"]).start()
    try:
        client = c.client(protocol=2, decode_responses=True)
        placed, info = groups(client, 5)
        load = {}
        for g, view in placed.items():
            assert len(view["voters"]) == 3, placed
            assert len({zone_of(info, v) for v in view["voters"]}) == 3, placed
            for v in view["voters"]:
                load[v] = load.get(v, 0) + 1
        assert sorted(load) == [1, 2, 3, 4, 5], f"every node holds a group: {load}"
        leaders = {int(view["leader"]) for view in placed.values()}
        assert len(leaders) >= 3, f"leaders spread: {placed}"

        # Written through node 5's router, read through node 1's.
        writer = redis.Redis(host="127.0.0.1", port=c.ports[4][0], protocol=2)
        pipe = writer.pipeline(transaction=False)
        for i in range(300):
            pipe.set(f"k:{i}", i)
        pipe.execute()
        assert client.mget([f"k:{i}" for i in range(300)]) == [str(i) for i in range(300)]
        assert client.dbsize() == 300
        # Three copies of every key in all: each node holds only its groups' keys.
        total = wait_for(lambda: sum(local_keys(resp) for resp, _ in c.ports) == 900 and 900,
                         what="three copies of every key")
        assert total == 900
    finally:
        c.stop()


META = 2**64 - 1


def raft_status(port, group):
    """RAFT STATUS of `group` on the node at `port`, as a dict."""
    raw = redis.Redis(host="127.0.0.1", port=port, protocol=2).execute_command(
        "RAFT", "STATUS", str(group))
    return {raw[i].decode(): raw[i + 1] for i in range(0, len(raw), 2)}


def test_a_gone_node_s_replicas_are_re_created_on_the_others(tmp_path):
    # Zones a, b, c, a: node 3 is zone c's only node and in both groups.
    # Rebalancing off: it would give the returning node replicas back once it erased
    # its old ones (test_rebalance.py), and this test is about the erasure.
    c = ClusterServer(tmp_path, nodes=4, groups=2,
                      extra=["--replication-factor", "3", "--replace-after-ms", "2000",
                             "--rebalance", "false"]).start()
    try:
        client = c.client(protocol=2, decode_responses=True)
        placed, _ = groups(client, 2)
        assert all(3 in view["voters"] for view in placed.values()), placed
        pipe = client.pipeline(transaction=False)
        for i in range(200):
            pipe.set(f"k:{i}", i)
        pipe.execute()

        c.procs[2].send_signal(signal.SIGKILL)
        c.procs[2].wait()

        def repaired():
            view, info = groups(client, 2)
            meta = sorted(int(v) for v in str(info["meta_group"]["voters"]).split("|") if v)
            ok = all(len(v["voters"]) == 3 and 3 not in v["voters"] for v in view.values())
            # The meta group too: node 3 was one of its three voters.
            return view if ok and meta == [1, 2, 4] else None

        view = wait_for(repaired, timeout=45, what="every group, and the meta group, back to three voters")
        # The nodes that took node 3's place hold every key of their groups.
        for node_id in (1, 2, 4):
            held = [g for g, v in view.items() if node_id in v["voters"]]
            assert held, view
        assert wait_for(lambda: local_keys(c.ports[3][0]) == 200 or None,
                        what="node 4 holding both groups' keys")
        assert client.mget([f"k:{i}" for i in range(200)]) == [str(i) for i in range(200)]
        assert client.set("after", "1") and client.get("after") == "1"
        # Shown down 5 s after its last report; the repair can finish sooner than that
        # (it starts after --replace-after-ms, 2 s here).
        wait_for(lambda: client.info("cluster")["node3"]["state"] == "down",
                 what="node 3 shown down")

        # The replaced node comes back: it is no longer in the groups, and its old
        # replicas must not disturb them (no lost or refused writes while it runs).
        assert all(raft_status(c.ports[1][0], g)["membership_index"] > 0 for g in (0, 1, META))
        c.spawn(2)
        deadline = time.monotonic() + 5
        i = 0
        while time.monotonic() < deadline:
            assert client.set(f"back:{i}", i)
            i += 1
            time.sleep(0.02)
        assert client.mget([f"back:{j}" for j in range(i)]) == [str(j) for j in range(i)]
        view, _ = groups(client, 2)
        assert all(3 not in v["voters"] and len(v["voters"]) == 3 for v in view.values()), view

        # It erases the replicas it was replaced in (both groups and the meta group's):
        # a committed membership without it, newer than any it knows.
        node3 = c.ports[2][0]

        def erased():
            try:
                status = [raft_status(node3, g) for g in (0, 1, META)]
            except redis.ResponseError:
                return None  # a group is closed for the moment its erase takes
            done = all(s["holds_data"] == 0 and s["last_log_index"] == 0 for s in status)
            return status if done else None
        wait_for(erased, timeout=20, what="node 3 erasing the replicas it was replaced in")
        assert local_keys(node3) == 0
        log = c.data_dir / "node-3.log"

        def erasures():
            return log.read_text(errors="replace").count("erased a replica the group removed")
        wait_for(lambda: erasures() == 3 or None, timeout=5, what="three erasures logged")

        # Restarted with the same command line, it does not bootstrap those groups
        # again from its member list (that fallback fires after three election
        # timeouts, 1.5 s here): they stay erased.
        c.procs[2].send_signal(signal.SIGKILL)
        c.procs[2].wait()
        c.spawn(2)
        time.sleep(3 * c.election_timeout_ms / 1000 + 2)
        status = [raft_status(node3, g) for g in (0, 1, META)]
        assert all(s["holds_data"] == 0 and s["membership_index"] == 0 for s in status), status
        assert erasures() == 3, "the restart started an erased group over, and erased it again"
        assert client.mget([f"k:{j}" for j in range(200)]) == [str(j) for j in range(200)]
        assert client.set("end", "1") and client.get("end") == "1"
        view, _ = groups(client, 2)
        assert all(3 not in v["voters"] and len(v["voters"]) == 3 for v in view.values()), view
    finally:
        c.stop()


def test_a_learner_that_never_catches_up_is_removed(tmp_path):
    """An operator adds node 4 to group 0 with a wrong Raft address: the node is up
    (it reports to the map) but no entry ever reaches it. Without a deadline that
    learner would hold the group's repair back for good; after --learner-stall-ms
    the leader removes it. Added again with the right address, it catches up and
    votes."""
    c = ClusterServer(tmp_path, nodes=3, groups=1,
                      extra=["--rebalance", "false", "--learner-stall-ms", "3000"]).start()
    try:
        client = c.client(protocol=2, decode_responses=True)
        for i in range(50):
            client.set(f"k:{i}", i)
        c.join()  # node 4, zone a
        leader = c.leaders()[0]
        admin = redis.Redis(host="127.0.0.1", port=c.ports[leader - 1][0], protocol=2)
        resp4, grpc4 = c.ports[3]
        closed = free_port()
        assert admin.execute_command("RAFT", "ADD-LEARNER", "0", "4", "a",
                                     f"127.0.0.1:{closed}", f"127.0.0.1:{resp4}") == b"OK"
        members = lambda: [m[1] for m in raft_status(c.ports[leader - 1][0], 0)["members"]]
        assert 4 in members()
        started = time.monotonic()
        wait_for(lambda: 4 not in members(), timeout=30, what="the stalled learner removed")
        assert time.monotonic() - started >= 2.0, "removed before the stall time"
        logs = (tmp_path / f"node-{leader}.log").read_text(errors="replace")
        assert "a learner stopped catching up" in logs
        # With its real address it catches up, and the leader promotes it.
        assert admin.execute_command("RAFT", "ADD-LEARNER", "0", "4", "a",
                                     f"127.0.0.1:{grpc4}", f"127.0.0.1:{resp4}") == b"OK"
        wait_for(lambda: raft_status(resp4, 0)["applied_index"] > 0
                 and groups(client, 1)[0][0]["voters"] == [1, 2, 3, 4] or None,
                 timeout=30, what="node 4 voting in group 0")
        assert redis.Redis(host="127.0.0.1", port=resp4, protocol=2).execute_command(
            "DEBUG", "DIGEST", "0") == admin.execute_command("DEBUG", "DIGEST", "0")
    finally:
        c.stop()
