"""`shoal dev`'s count flags: the cluster it embeds takes the shape asked for, a data
directory keeps the shape it was made with, and `--routers` picks the nodes that serve
the clients."""

import subprocess

import numpy as np
from redis.commands.search.query import Query

from conftest import Server, binary, free_port, wait_for


def voters(info, group):
    return sorted(int(v) for v in str(info[f"group{group}"]["voters"]).split("|") if v)


def test_nodes_groups_replicas_and_zones_take_the_shape_asked_for(tmp_path):
    server = Server(tmp_path / "data", "--nodes", "4", "--groups", "2",
                    "--replication-factor", "2", "--zones", "a,b").start()
    try:
        client = server.client(protocol=2, decode_responses=True)
        # Every node reports itself to the map within a second of starting, and every
        # group's leader its voters (node 1 shows a group it holds no replica of from that).
        info = wait_for(lambda: (i := client.info("cluster")) and int(i["shoal_nodes"]) == 4
                        and all(voters(i, g) for g in range(2)) and i,
                        what="four nodes and both groups' voters in the map")
        assert int(info["shoal_shard_groups"]) == 2
        assert "group2" not in info
        zones = {n: info[f"node{n}"]["zone"] for n in (1, 2, 3, 4)}
        assert zones == {1: "a", 2: "b", 3: "a", 4: "b"}
        for g in range(2):
            members = voters(info, g)
            assert len(members) == 2, (g, members)
            assert sorted(zones[v] for v in members) == ["a", "b"], (g, members)

        # Keys spread over both groups: writes, multi-key commands and a KNN answer whole.
        r = server.client()
        r.execute_command("FT.CREATE", "idx", "PREFIX", "1", "d:", "SCHEMA",
                          "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "2",
                          "DISTANCE_METRIC", "L2")
        pipe = r.pipeline(transaction=False)
        for i in range(100):
            pipe.hset(f"d:{i}", mapping={"v": np.array([i, 0], dtype=np.float32).tobytes()})
        pipe.execute()
        assert r.dbsize() == 100
        assert r.exists(*[f"d:{i}" for i in range(100)]) == 100
        q = Query("*=>[KNN 3 @v $q]").dialect(2).no_content()
        res = r.ft("idx").search(q, query_params={"q": np.array([50.2, 0], dtype=np.float32).tobytes()})
        assert [d.id for d in res.docs] == ["d:50", "d:51", "d:49"]
    finally:
        server.stop()


def test_a_data_directory_refuses_another_shape(tmp_path):
    data = tmp_path / "data"
    server = Server(data).start()
    server.client().set("k", "kept")
    assert server.stop() == 0

    proc = subprocess.run(
        [binary(), "dev", "--resp", f"127.0.0.1:{free_port()}", "--api", f"127.0.0.1:{free_port()}",
         "--data-dir", str(data), "--groups", "2"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "holds a cluster of 3 nodes and 3 groups; start it with --nodes 3 --groups 3" in proc.stderr

    # Refused without harm: the shape it was made with still starts, with its data.
    server.start()
    try:
        assert server.client().get("k") == b"kept"
    finally:
        server.stop()


def node_ids(server, connections):
    """The node that serves each of `connections` fresh RESP connections."""
    ids = []
    for _ in range(connections):
        client = server.client(protocol=2, decode_responses=True)
        try:
            ids.append(int(client.info("cluster")["shoal_node_id"]))
        finally:
            client.close()
    return ids


def test_routers_choose_which_nodes_serve_the_clients(tmp_path):
    # By default node 1's router serves every connection.
    server = Server(tmp_path / "one").start()
    try:
        assert node_ids(server, 4) == [1, 1, 1, 1]
        r = server.client()
        r.hset("h:1", mapping={"f": "v"})
        assert r.hgetall("h:1") == {b"f": b"v"}
    finally:
        server.stop()

    # --routers 3: new connections go to the three nodes' routers in turn, and each
    # router serves every group's keys.
    server = Server(tmp_path / "three", "--routers", "3").start()
    try:
        assert node_ids(server, 6) == [1, 2, 3, 1, 2, 3]
        clients = [server.client() for _ in range(3)]
        for i, c in enumerate(clients):
            pipe = c.pipeline(transaction=False)
            for j in range(20):
                pipe.set(f"k{i}:{j}", f"{i}.{j}")
            assert pipe.execute() == [True] * 20
        for c in clients:
            assert c.dbsize() == 60
            assert c.get("k2:19") == b"2.19"
    finally:
        server.stop()

    # More routers than nodes is refused before anything starts.
    proc = subprocess.run(
        [binary(), "dev", "--resp", f"127.0.0.1:{free_port()}", "--api", f"127.0.0.1:{free_port()}",
         "--data-dir", str(tmp_path / "four"), "--routers", "4"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "--routers must be between 1 and --nodes (3), not 4" in proc.stderr
    assert not (tmp_path / "four").exists()
