"""Nodes added to a running cluster (`shoal node --join`): group leaders move replicas
onto them one group at a time (learner, snapshot, promote, remove the replica of the
most loaded node), keeping every group in three zones, while writes go on. Nothing
acknowledged is lost, every replica ends up with its group's data, and the nodes the
replicas left erase what they held.

Real `shoal node` processes on loopback.
"""

import signal
import subprocess
import threading
import time

import pytest
import redis

from conftest import ClusterServer, free_port, wait_for

GROUPS = 3
META = 2**64 - 1


def ids(field):
    return sorted(int(v) for v in str(field).split("|") if v)


def layout(client):
    """Each group's voters and learners, and the node ids with their zones, as the
    router of `client` reports them."""
    info = client.info("cluster")
    groups = {g: (ids(info[f"group{g}"]["voters"]), ids(info[f"group{g}"].get("learners", "")))
              for g in range(GROUPS)}
    zones = {int(k[4:]): v["zone"] for k, v in info.items()
             if k.startswith("node") and isinstance(v, dict)}
    return groups, zones


def balanced(client, nodes):
    groups, zones = layout(client)
    load = {n: 0 for n in nodes}
    for voters, learners in groups.values():
        if learners or len(voters) != 3 or len({zones.get(v) for v in voters}) != 3:
            return None
        for v in voters:
            load[v] = load.get(v, 0) + 1
    return (groups, load) if max(load.values()) - min(load.values()) <= 1 else None


def raft_status(port, group):
    raw = redis.Redis(host="127.0.0.1", port=port, protocol=2).execute_command(
        "RAFT", "STATUS", str(group))
    return {raw[i].decode(): raw[i + 1] for i in range(0, len(raw), 2)}


def local_keys(port):
    info = redis.Redis(host="127.0.0.1", port=port, protocol=2).info("keyspace")
    return info.get("db0", {}).get("keys", 0)


def test_nodes_that_join_take_replicas_while_writes_go_on(tmp_path):
    c = ClusterServer(tmp_path, nodes=3, groups=GROUPS,
                      extra=["--replication-factor", "3"]).start()
    stop = threading.Event()
    acked, failed = [], []

    def write():
        w = redis.Redis(host="127.0.0.1", port=c.port, protocol=2, socket_timeout=10)
        i = 0
        while not stop.is_set():
            try:
                w.hset(f"doc:{i}", mapping={"v": bytes([i % 256]) * 16, "n": i})
                acked.append(i)
            except redis.RedisError as e:  # refused while a group moved: not lost
                failed.append((i, repr(e)))
            i += 1
            time.sleep(0.005)

    try:
        client = c.client(protocol=2, decode_responses=True)
        assert client.execute_command(
            "FT.CREATE", "idx", "ON", "HASH", "PREFIX", "1", "doc:", "SCHEMA",
            "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "4",
            "DISTANCE_METRIC", "L2", "n", "NUMERIC") == "OK"
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        wait_for(lambda: len(acked) > 100 or None, what="writes before the joins")
        for _ in range(3):
            c.join()  # nodes 4, 5, 6 in zones a, b, c
        groups, load = wait_for(lambda: balanced(client, range(1, 7)), timeout=120,
                                what="every node holding 1 or 2 replicas, 3 zones a group")
        # (balanced() holds only with every node at 1 or 2 of the 9 replicas.)
        time.sleep(0.5)
        stop.set()
        writer.join(timeout=30)
        assert len(acked) > 200, (len(acked), failed[:3])

        # Every acknowledged write is there, read through an old and a new router.
        for port in (c.ports[0][0], c.ports[5][0]):
            r = redis.Redis(host="127.0.0.1", port=port, protocol=2)
            pipe = r.pipeline(transaction=False)
            for i in acked:
                pipe.hget(f"doc:{i}", "n")
            got = pipe.execute()
            missing = [i for i, v in zip(acked, got) if v != str(i).encode()]
            assert not missing, f"acknowledged writes lost: {missing[:10]}"
        total = client.execute_command("FT.SEARCH", "idx", "*", "LIMIT", "0", "0")[0]
        assert len(acked) <= total <= len(acked) + len(failed), (total, len(acked))
        # Three copies of every key in all: the replicas moved hold their group's data,
        # and the nodes they left erased theirs.
        wait_for(lambda: sum(local_keys(resp) for resp, _ in c.ports) == 3 * total or None,
                 timeout=60, what="three copies of every key, and no more")
        # The replicas of each group agree (once the last writes reached them all).
        for g, (voters, _) in groups.items():
            def agree(g=g, voters=voters):
                digests = {redis.Redis(host="127.0.0.1", port=c.ports[v - 1][0], protocol=2)
                           .execute_command("DEBUG", "DIGEST", str(g)) for v in voters}
                return len(digests) == 1 or None
            wait_for(agree, timeout=20, what=f"group {g}'s replicas agreeing")

        # Node 6 restarted without --join: the data directory remembers it, so it starts
        # none of the groups its member list would place it in (group 1 here, which it
        # is not in: started, that would be a second group 1 on nodes 4, 5, 6).
        c.procs[5].send_signal(signal.SIGKILL)
        c.procs[5].wait()
        c.spawn(5)
        time.sleep(3 * c.election_timeout_ms / 1000 + 2)
        node6 = c.ports[5][0]
        for g, (voters, _) in groups.items():
            status = raft_status(node6, g)
            if 6 in voters:
                assert status["holds_data"] == 1, (g, status)
            else:
                assert status["holds_data"] == 0 and status["membership_index"] == 0, (g, status)
        assert client.set("after", "1") and client.get("after") == "1"
        assert layout(client)[0] == groups
    finally:
        stop.set()
        c.stop()


def leaders_by_status(c, groups):
    """Each group's leader as the replicas themselves say (RAFT STATUS on a node that
    calls itself leader), not the map."""
    out = {}
    for g in range(groups):
        for resp, _ in c.ports:
            try:
                status = raft_status(resp, g)
            except redis.RedisError:
                continue
            if status["role"] == b"leader":
                out[g] = status["id"]
    return out


def handovers_logged(c):
    return sum((c.data_dir / f"node-{i + 1}.log").read_text(errors="replace").count("HandOver(")
               for i in range(len(c.ports)))


def writer_thread(c, stop, acked, failed):
    def write():
        w = redis.Redis(host="127.0.0.1", port=c.port, protocol=2, socket_timeout=10)
        i = 0
        while not stop.is_set():
            try:
                w.set(f"k:{i}", i)
                acked.append(i)
            except redis.RedisError as e:  # refused while leadership moved: not lost
                failed.append((i, repr(e)))
            i += 1
            time.sleep(0.005)
    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


def all_acked_there(c, acked):
    r = c.client(protocol=2)
    pipe = r.pipeline(transaction=False)
    for i in acked:
        pipe.get(f"k:{i}")
    got = pipe.execute()
    missing = [i for i, v in zip(acked, got) if v != str(i).encode()]
    assert not missing, f"acknowledged writes lost: {missing[:10]}"


def test_leaders_gathered_on_one_node_spread_back_while_writes_go_on(tmp_path):
    """An operator moves every leader onto node 1 (RAFT TRANSFER-LEADER, as before
    maintenance); the group leaders hand leadership over again until each node leads
    one group. Nothing acknowledged is lost."""
    c = ClusterServer(tmp_path, nodes=3, groups=GROUPS).start()
    stop = threading.Event()
    acked, failed = [], []
    try:
        writer = writer_thread(c, stop, acked, failed)
        wait_for(lambda: len(acked) > 50 or None, what="writes before the hand-overs")
        node1 = redis.Redis(host="127.0.0.1", port=c.ports[0][0], protocol=2)
        # The errors an operator can meet.
        with pytest.raises(redis.ResponseError, match="node 9 is not a voter of group 0"):
            node1.execute_command("RAFT", "TRANSFER-LEADER", "0", "9")
        with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
            node1.execute_command("RAFT", "TRANSFER-LEADER", "0")
        # A follower names the leader instead (MOVED, as for any membership change).
        # (Before the gathering: leaders spread as they started, nothing moves them.)
        leader = leaders_by_status(c, GROUPS)[0]
        other = 1 if leader != 1 else 2
        follower = redis.Redis(host="127.0.0.1", port=c.ports[other - 1][0], protocol=2)
        with pytest.raises(redis.exceptions.MovedError) as moved:
            follower.execute_command("RAFT", "TRANSFER-LEADER", "0", str(other))
        assert str(moved.value).endswith(f":{c.ports[leader - 1][0]}"), moved.value
        gathered = False
        for _ in range(20):
            for g, leader in leaders_by_status(c, GROUPS).items():
                if leader != 1:
                    r = redis.Redis(host="127.0.0.1", port=c.ports[leader - 1][0], protocol=2)
                    try:
                        assert r.execute_command("RAFT", "TRANSFER-LEADER", str(g), "1") == b"OK"
                    except redis.RedisError:
                        pass  # it handed over (to the balancer) in between: ask again
            if set(leaders_by_status(c, GROUPS).values()) == {1}:
                gathered = True
                break
        assert gathered, leaders_by_status(c, GROUPS)

        spread = wait_for(
            lambda: (lambda l: l if sorted(l.values(), key=str) == [1, 2, 3] else None)(c.leaders()),
            timeout=60, what="one leader per node again")
        assert leaders_by_status(c, GROUPS) == spread
        assert handovers_logged(c) >= 2
        time.sleep(0.5)
        stop.set()
        writer.join(timeout=30)
        assert len(acked) > 200, (len(acked), failed[:3])
        all_acked_there(c, acked)
    finally:
        stop.set()
        c.stop()


def test_a_leader_s_own_replica_moves_once_it_hands_over(tmp_path):
    """Two groups on three nodes, led by nodes 1 and 2; node 4 joins in zone a. Only
    node 1's replicas can go to it (zones kept), and the lowest group, 0, is led by
    node 1: it hands group 0 over, and the next leader moves node 1's replica to node
    4. (Before hand-overs existed, group 1 moved instead; and had node 1 led both,
    node 4 would have stayed empty.)"""
    c = ClusterServer(tmp_path, nodes=3, groups=2).start()
    stop = threading.Event()
    acked, failed = [], []
    try:
        assert c.leaders() == {0: 1, 1: 2}
        writer = writer_thread(c, stop, acked, failed)
        wait_for(lambda: len(acked) > 50 or None, what="writes before the join")
        c.join()  # node 4, zone a
        client = c.client(protocol=2, decode_responses=True)

        def moved():
            info = client.info("cluster")
            voters = {g: ids(info[f"group{g}"]["voters"]) for g in range(2)}
            learners = [ids(info[f"group{g}"].get("learners", "")) for g in range(2)]
            return voters if 4 in voters[0] and 1 not in voters[0] and not any(learners) \
                else None
        voters = wait_for(moved, timeout=90, what="node 1's replica of group 0 on node 4")
        assert voters == {0: [2, 3, 4], 1: [1, 2, 3]}
        assert c.leaders()[0] in (2, 3)
        assert handovers_logged(c) >= 1
        time.sleep(0.5)
        stop.set()
        writer.join(timeout=30)
        assert len(acked) > 100, (len(acked), failed[:3])
        all_acked_there(c, acked)
        # Node 1 erased its replica of group 0.
        wait_for(lambda: raft_status(c.ports[0][0], 0)["holds_data"] == 0 or None,
                 timeout=30, what="node 1 erasing group 0")
    finally:
        stop.set()
        c.stop()


def refused(c, i, *more, groups=None, extra=None, within=40):
    """Runs node i + 1 with other flags; returns what it printed on the way out (it
    must exit, with an error, within `within` s)."""
    proc = subprocess.Popen(c.argv(i, *more, groups=groups, extra=extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"node {i + 1} started with {more} {groups} {extra} kept running")
    assert proc.returncode != 0, (out, err)
    return err


def test_a_node_started_with_another_shape_than_the_cluster_s_stops(tmp_path):
    """Another --groups would route keys by another ring (with fewer groups, writes
    land where no other router looks); a lower --replication-factor would shrink the
    groups it leads. The map keeps the cluster's shape: a joining node with another
    refuses before it routes anything, a restarted one is refused by its data
    directory, and the cluster goes on serving."""
    c = ClusterServer(tmp_path, nodes=3, groups=GROUPS).start()
    try:
        client = c.client(protocol=2, decode_responses=True)
        for i in range(50):
            client.set(f"k:{i}", i)
        wanted = "but the cluster has --groups 3 --replication-factor 3"
        # Joining with fewer groups, or with a lower replication factor.
        c.ports.append((free_port(), free_port()))
        err = refused(c, 3, "--join", groups=2)
        assert "started with --groups 2 --replication-factor 3, " + wanted in err, err
        err = refused(c, 3, "--join", extra=["--replication-factor", "1"])
        assert "started with --groups 3 --replication-factor 1, " + wanted in err, err
        c.ports.pop()
        # Every node remembers the shape once it has seen the map agree.
        wait_for(lambda: all((tmp_path / f"node-{i}" / "SHAPE").exists() for i in (1, 2, 3)),
                 what="every node remembering the shape")
        c.procs[2].send_signal(signal.SIGTERM)
        c.procs[2].wait()
        err = refused(c, 2, groups=4, within=15)
        assert "started with --groups 4 --replication-factor 3, " + wanted in err, err
        # Started as it was, it serves again; nothing was lost.
        c.spawn(2)
        wait_for(lambda: c.leaders() and all(
            redis.Redis(host="127.0.0.1", port=c.ports[2][0], protocol=2).get(f"k:{i}")
            == str(i).encode() for i in range(50)), what="node 3 serving again")
        assert client.mget([f"k:{i}" for i in range(50)]) == [str(i) for i in range(50)]
    finally:
        c.stop()


def test_a_node_of_a_new_cluster_with_another_shape_stops_at_its_first_map_read(tmp_path):
    """Four nodes start a new cluster together; node 4 has --groups 2. It cannot be
    the one that writes the shape (the meta leader writes it once three groups with
    three voters report), and it stops once the map has the shape, keeping the
    cluster's shape in its data directory: started again with the same flags it is
    refused at once; with the cluster's it serves."""
    c = ClusterServer(tmp_path, nodes=4, groups=GROUPS)
    for i in range(3):
        c.spawn(i)
    wrong = subprocess.Popen(c.argv(3, groups=2), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        try:
            _, err = wrong.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            wrong.kill()
            raise AssertionError("node 4 with --groups 2 kept running")
        assert wrong.returncode != 0
        assert "started with --groups 2 --replication-factor 3, but the cluster has " \
               "--groups 3 --replication-factor 3" in err, err[-2000:]
        assert (tmp_path / "node-4" / "SHAPE").read_text() == \
            "groups 3\nreplication_factor 3\n"
        err = refused(c, 3, groups=2, within=15)
        assert "but the cluster has --groups 3" in err, err
        # The others never stopped; with the cluster's flags node 4 serves too.
        assert all(p.poll() is None for p in c.procs[:3])
        c.spawn(3)
        client = c.client(protocol=2, decode_responses=True)

        def serving(check):
            try:
                return check()
            except redis.RedisError:  # a group still electing its first leader
                return None
        wait_for(lambda: serving(lambda: client.set("after", "1") and client.get("after") == "1"),
                 what="the cluster serving")
        node4 = redis.Redis(host="127.0.0.1", port=c.ports[3][0], protocol=2)
        wait_for(lambda: serving(lambda: node4.get("after") == b"1"), what="node 4 routing")
    finally:
        c.stop()
