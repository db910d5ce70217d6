"""A shard group that stops answering, as a router's client sees it.

Three real `shoal node` processes host three shard groups; node 2 leads one of them and
is paused with SIGSTOP (a long GC, a frozen VM). Elections are made slow (20 s), so the
paused node stays that group's leader for the whole test and the group cannot answer.
FT.SEARCH and FT.AGGREGATE then fail within their TIMEOUT, naming the group
(ALLSHARDS, the default), or answer from the groups that did answer (SOMESHARDS). After
SIGCONT every group answers again.
"""

import signal
import time

import numpy as np
import pytest
import redis

from conftest import ClusterServer

DIM = 8
N = 300


@pytest.fixture
def cluster(tmp_path):
    c = ClusterServer(tmp_path, nodes=3, groups=3, election_timeout_ms=20_000).start()
    try:
        yield c
    finally:
        for proc in c.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
        c.stop()


def load(client):
    client.execute_command(
        "FT.CREATE", "idx", "ON", "HASH", "PREFIX", "1", "d:", "SCHEMA",
        "n", "NUMERIC", "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32",
        "DIM", str(DIM), "DISTANCE_METRIC", "L2")
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((N, DIM)).astype(np.float32)
    pipe = client.pipeline(transaction=False)
    for i, v in enumerate(vectors):
        pipe.hset(f"d:{i}", mapping={"n": i, "v": v.tobytes()})
    pipe.execute()
    return vectors


def every_key(client, *options):
    reply = client.execute_command(
        "FT.SEARCH", "idx", "*", "NOCONTENT", "LIMIT", "0", str(N), *options)
    return reply[0], {k.decode() for k in reply[1:]}


def knn(client, query, *options):
    reply = client.execute_command(
        "FT.SEARCH", "idx", "*=>[KNN 10 @v $q AS d]", "PARAMS", "2", "q", query.tobytes(),
        "RETURN", "1", "d", *options, "DIALECT", "2")
    return [reply[i].decode() for i in range(1, len(reply), 2)]


def test_a_paused_group_fails_a_search_by_name_or_is_left_out_on_request(cluster):
    client = cluster.client(protocol=2)
    vectors = load(client)
    total, everything = every_key(client)
    assert total == N and len(everything) == N

    leaders = cluster.leaders()
    paused_groups = [g for g, node in leaders.items() if node == 2]
    assert len(paused_groups) == 1, leaders
    group = paused_groups[0]
    cluster.procs[1].send_signal(signal.SIGSTOP)

    # ALLSHARDS (the default): the query is cancelled at its TIMEOUT (and the router's
    # 200 ms grace for a shard's own timeout answer), naming the group.
    for options in [("TIMEOUT", "300"), ("ALLSHARDS", "TIMEOUT", "300")]:
        start = time.monotonic()
        with pytest.raises(redis.exceptions.ResponseError) as failed:
            every_key(client, *options)
        waited = time.monotonic() - start
        assert str(failed.value) == (
            "Search operation cancelled due to timeout: "
            f"shard group {group} (node 2) did not answer within 500 ms")
        # Cut at its own TIMEOUT, well before the 5 s quorum timeout that bounds a
        # search without one.
        assert waited < 2.5, waited
    with pytest.raises(redis.exceptions.ResponseError, match=f"shard group {group}"):
        client.execute_command(
            "FT.AGGREGATE", "idx", "*", "TIMEOUT", "300",
            "GROUPBY", "0", "REDUCE", "COUNT", "0", "AS", "c")

    # SOMESHARDS: the groups that answered, and only them.
    total, partial = every_key(client, "SOMESHARDS", "TIMEOUT", "300")
    assert partial < everything
    assert total == len(partial)
    # The ring gives each of 3 groups about a third of the keys.
    assert N // 6 < N - len(partial) < N // 2, len(partial)
    # KNN over what answered is the exact top 10 of those documents.
    query = vectors[7] + 0.01
    kept = sorted(partial, key=lambda k: float(
        np.sum((vectors[int(k[2:])] - query) ** 2)))
    assert knn(client, query, "SOMESHARDS", "TIMEOUT", "300") == kept[:10]
    # FT.AGGREGATE counts the same documents.
    rows = client.execute_command(
        "FT.AGGREGATE", "idx", "*", "SOMESHARDS", "TIMEOUT", "300",
        "GROUPBY", "0", "REDUCE", "COUNT", "0", "AS", "c")
    assert rows[1] == [b"c", str(len(partial)).encode()]
    # RESP3 says why the answer is partial, in RediSearch's `warning` entry.
    resp3 = cluster.client(protocol=3)
    reply = resp3.execute_command(
        "FT.SEARCH", "idx", "*", "NOCONTENT", "SOMESHARDS", "TIMEOUT", "300")
    warning = reply.get(b"warning", reply.get("warning"))
    assert [w.decode() if isinstance(w, bytes) else w for w in warning] == [
        "Search operation cancelled due to timeout: "
        f"shard group {group} (node 2) did not answer within 500 ms"]
    # The groups that answered keep taking writes meanwhile.
    live = min(partial)
    client.hset(live, "n", 1000)
    assert client.hget(live, "n") == b"1000"

    # Resumed, the group answers again and nothing was lost.
    cluster.procs[1].send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 30
    while True:
        try:
            total, again = every_key(client, "TIMEOUT", "2000")
            break
        except redis.exceptions.ResponseError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert (total, again) == (N, everything)
    assert knn(client, vectors[7])[0] == "d:7"


def test_someshards_with_every_group_answering_is_the_whole_answer(cluster):
    client = cluster.client(protocol=2)
    load(client)
    assert every_key(client, "SOMESHARDS") == every_key(client)
    resp3 = cluster.client(protocol=3)
    reply = resp3.execute_command("FT.SEARCH", "idx", "*", "NOCONTENT", "SOMESHARDS")
    assert reply.get(b"warning", reply.get("warning")) == []
