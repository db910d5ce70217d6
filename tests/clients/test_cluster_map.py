"""The cluster map in its meta group, as a client and an operator see it: nodes and
their liveness in INFO cluster, index definitions decided by the map first, and an
FT.CREATE that missed a shard group finished by the meta leader.

Three real `shoal node` processes, three shard groups; node 1 bootstraps the meta group
and group 0, node 2 group 1, node 3 group 2, so the leaders are known.
"""

import signal
import time

import numpy as np
import pytest
import redis

from conftest import ClusterServer, wait_for

DIM = 4
CREATE = ("FT.CREATE", "idx", "ON", "HASH", "PREFIX", "1", "d:", "SCHEMA",
          "t", "TAG", "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32",
          "DIM", str(DIM), "DISTANCE_METRIC", "L2")


def nodes(client):
    info = client.info("cluster")
    return {int(k[4:]): v for k, v in info.items() if k.startswith("node")}, info


def write_docs(client, n):
    rng = np.random.default_rng(3)
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.hset(f"d:{i}", mapping={"t": "x", "v": rng.standard_normal(DIM).astype(
            np.float32).tobytes()})
    pipe.execute()


def total(client):
    return client.execute_command("FT.SEARCH", "idx", "*", "NOCONTENT", "LIMIT", "0", "0")[0]


@pytest.fixture
def cluster(tmp_path):
    # A group that lost its leader elects a new one 3-6 s later; a write gives up
    # after 1 s. So a write to that group fails, and nothing but the meta leader's
    # reconciliation can bring it a missed FT.CREATE before the election.
    c = ClusterServer(tmp_path, nodes=3, groups=3, election_timeout_ms=3000,
                      extra=["--quorum-timeout-ms", "1000"]).start()
    try:
        yield c
    finally:
        c.stop()


def test_the_map_lists_every_node_and_index_and_refuses_a_second_create(cluster):
    client = cluster.client(protocol=2)
    seen, info = wait_for(lambda: (lambda n: n if len(n[0]) == 3 else None)(nodes(client)),
                          what="three nodes in the map")
    assert {i: (n["zone"], n["state"]) for i, n in seen.items()} == {
        1: ("a", "up"), 2: ("b", "up"), 3: ("c", "up")}
    assert seen[2]["resp"] == f"127.0.0.1:{cluster.ports[1][0]}"
    assert info["meta_group"]["leader"] == 1
    assert client.execute_command(*CREATE) == b"OK"
    with pytest.raises(redis.ResponseError, match="^Index idx in database 0 already exists.$"):
        client.execute_command(*CREATE)
    wait_for(lambda: client.info("cluster")["shoal_indexes"] == 1, what="the index in the map")
    # Not inside MULTI: an aborted transaction could not take the map's change back.
    with pytest.raises(redis.ResponseError, match="cannot run inside MULTI"):
        with client.pipeline() as p:
            p.execute_command("FT.DROPINDEX", "idx")
            p.execute()
    write_docs(client, 60)
    assert total(client) == 60
    assert client.execute_command("FT.DROPINDEX", "idx") == b"OK"
    with pytest.raises(redis.ResponseError, match="not found"):
        client.execute_command("FT.DROPINDEX", "idx")
    wait_for(lambda: client.info("cluster")["shoal_indexes"] == 0, what="the map emptied")
    # The name is free again, on the map and on every group.
    assert client.execute_command(*CREATE) == b"OK"
    wait_for(lambda: total(client) == 60, what="the backfill")


def test_a_create_that_missed_a_group_is_finished_by_the_meta_leader(cluster):
    client = cluster.client(protocol=2)
    assert cluster.leaders()[1] == 2
    write_docs(client, 90)
    cluster.procs[1].send_signal(signal.SIGKILL)
    cluster.procs[1].wait()
    # Group 1 has no leader now: the create reaches the map and groups 0 and 2 only.
    with pytest.raises(redis.ResponseError) as failed:
        client.execute_command(*CREATE)
    assert "shard group 1" in str(failed.value), failed.value
    # The map decided it: a second create is refused, whichever groups have it.
    with pytest.raises(redis.ResponseError, match="already exists"):
        client.execute_command(*CREATE)
    # Once group 1 elects a leader, the meta leader creates the index there too, and
    # the index covers all 90 documents of the three groups.
    wait_for(lambda: client.info("cluster")["group1"]["leader"] in (1, 3),
             what="a new leader of group 1")
    wait_for(lambda: _total_or_none(client) == 90, what="the index on every group")
    # The map saw node 2 go.
    seen = wait_for(lambda: (lambda n: n if n[2]["state"] == "down" else None)(
        nodes(client)[0]), what="node 2 reported down")
    assert seen[1]["state"] == "up" and seen[3]["state"] == "up"


def _total_or_none(client):
    try:
        return total(client)
    except redis.ResponseError:
        return None


def _keys_or_none(client):
    try:
        reply = client.execute_command("FT.SEARCH", "idx", "*", "NOCONTENT",
                                       "LIMIT", "0", "1000")
    except redis.ResponseError:
        return None
    return reply[0], sorted(k.decode() for k in reply[1:])


def test_a_drop_that_missed_a_group_leaves_no_leftover_under_a_new_definition(cluster):
    """FT.DROPINDEX reaches the map and groups 0 and 2; group 1 has no leader and keeps
    the old definition. The name is created again with another prefix, which misses
    group 1 as well. Once group 1 has a leader, the meta leader drops the leftover
    there (the map no longer has its generation) and creates the new definition, so
    every group answers with the new prefix's documents only."""
    client = cluster.client(protocol=2)
    assert cluster.leaders()[1] == 2
    assert client.execute_command(*CREATE) == b"OK"
    write_docs(client, 90)
    pipe = client.pipeline(transaction=False)
    for i in range(60):
        pipe.hset(f"e:{i}", mapping={"t": "y", "v": np.ones(DIM, np.float32).tobytes()})
    pipe.execute()
    assert total(client) == 90
    # The router's own engine commands for the groups are not client commands.
    with pytest.raises(redis.ResponseError, match="unknown command"):
        client.execute_command("FT._CREATE", "1", "KEEP", "x", "SCHEMA", "t", "TAG")
    with pytest.raises(redis.ResponseError, match="unknown command"):
        client.execute_command("FT._DROPIF", "idx", "1")

    cluster.procs[1].send_signal(signal.SIGKILL)
    cluster.procs[1].wait()
    with pytest.raises(redis.ResponseError) as failed:
        client.execute_command("FT.DROPINDEX", "idx")
    assert "shard group 1" in str(failed.value), failed.value
    other = list(CREATE)
    other[other.index("d:")] = "e:"
    with pytest.raises(redis.ResponseError) as failed:
        client.execute_command(*other)
    assert "shard group 1" in str(failed.value), failed.value

    wait_for(lambda: client.info("cluster")["group1"]["leader"] in (1, 3),
             what="a new leader of group 1")
    want = (60, sorted(f"e:{i}" for i in range(60)))
    seen = wait_for(lambda: (lambda k: k if k == want else None)(_keys_or_none(client)),
                    what="the new definition, and only it, on every group", timeout=30)
    assert seen == want


def test_a_dd_drop_that_missed_a_group_is_finished_with_its_documents(cluster):
    """FT.DROPINDEX ... DD reaches the map and groups 0 and 2 only. The map remembers
    that the generation went with DD, so when group 1 has a leader again the meta
    leader drops the index there with its documents, as the user asked."""
    client = cluster.client(protocol=2)
    assert cluster.leaders()[1] == 2
    assert client.execute_command(*CREATE) == b"OK"
    write_docs(client, 90)
    client.set("kept", "not covered by the index")
    assert total(client) == 90

    cluster.procs[1].send_signal(signal.SIGKILL)
    cluster.procs[1].wait()
    with pytest.raises(redis.ResponseError) as failed:
        client.execute_command("FT.DROPINDEX", "idx", "DD")
    assert "shard group 1" in str(failed.value), failed.value

    wait_for(lambda: client.info("cluster")["group1"]["leader"] in (1, 3),
             what="a new leader of group 1")
    wait_for(lambda: _dbsize_or_none(client) == 1,
             what="group 1's documents deleted with its index", timeout=30)
    assert client.get("kept") == b"not covered by the index"
    with pytest.raises(redis.ResponseError, match="not found"):
        total(client)


def _dbsize_or_none(client):
    try:
        return client.dbsize()
    except redis.ResponseError:
        return None
