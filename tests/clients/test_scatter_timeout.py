"""A shard group that stops answering, as a router's client sees it.

Three real `shoal node` processes host three shard groups; node 2 leads one of them and
is paused with SIGSTOP (a long GC, a frozen VM). Elections are made slow (20 s), so the
paused node stays that group's leader for the whole test.

With `--read-mode read-index` every read of the group needs that leader, so the group
cannot answer: FT.SEARCH and FT.AGGREGATE fail within their TIMEOUT, naming the group
(ALLSHARDS, the default), or answer from the groups that did answer (SOMESHARDS).

In the default mode (`votes`) the router's own replica and the group's third one
confirm a search without the leader (the logs proof, docs/consistency.md "Confirmed
reads"), so one frozen node stops no search once its followers know every write they
hold committed; a second one does, again by name and within the TIMEOUT. After
SIGCONT every group answers again.
"""

import signal
import time

import numpy as np
import pytest
import redis

from conftest import ClusterServer, wait_for

DIM = 8
N = 300


def slow_elections(tmp_path, *extra):
    c = ClusterServer(tmp_path, nodes=3, groups=3, election_timeout_ms=20_000,
                      extra=extra).start()
    try:
        yield c
    finally:
        for proc in c.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
        c.stop()


@pytest.fixture
def cluster(tmp_path):
    """Reads that need the group's leader."""
    yield from slow_elections(tmp_path, "--read-mode", "read-index")


@pytest.fixture
def confirmed(tmp_path):
    """The default read mode: searches confirmed by any two replicas."""
    yield from slow_elections(tmp_path)


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


def applied(readonly, count):
    """Whether a READONLY connection's node shows `count` documents at n = 5000 in its
    own replicas. A replica that has the group but not yet FT.CREATE answers "no such
    index": not yet, rather than a failure."""
    try:
        reply = readonly.execute_command(
            "FT.SEARCH", "idx", "@n:[5000 5000]", "NOCONTENT", "LIMIT", "0", "0")
    except redis.exceptions.ResponseError:
        return False
    return reply[0] == count


def loaded(cluster):
    """A client, the vectors loaded through it, every key, and the group node 2 leads."""
    client = cluster.client(protocol=2)
    vectors = load(client)
    total, everything = every_key(client)
    assert total == N and len(everything) == N
    leaders = cluster.leaders()
    paused_groups = [g for g, node in leaders.items() if node == 2]
    assert len(paused_groups) == 1, leaders
    return client, vectors, everything, paused_groups[0]


def test_a_paused_group_fails_a_search_by_name_or_is_left_out_on_request(cluster):
    client, vectors, everything, group = loaded(cluster)
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
    wait_whole(client, everything)
    assert knn(client, vectors[7])[0] == "d:7"


def wait_whole(client, everything):
    """Searches again in full once every group answers (after SIGCONT)."""
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


def test_a_frozen_leader_stops_no_search_and_a_lost_quorum_fails_by_name(confirmed):
    client, vectors, everything, _ = loaded(confirmed)
    # Acknowledged just before the freeze, in every group: a confirmed search sees it.
    keys = [f"d:{i}" for i in range(30)]
    for key in keys:
        client.hset(key, "n", 5000)
    # Frozen only once both followers (nodes 1 and 3) have applied them: a leader frozen
    # before its followers learn an entry is committed leaves that entry for the next
    # leader, and the searches with it (the case the logs proof cannot help). Node 3
    # too: in one CI run (session 49's stop) the leader froze 250 ms after the cluster
    # started, while its replication to node 3 still backed off from a connection
    # refused during node 3's start; node 3 held no entry of the group, not even its
    # membership, and the group could not be confirmed (docs/consistency.md).
    for port in (confirmed.port, confirmed.ports[2][0]):
        node = redis.Redis(host="127.0.0.1", port=port, protocol=2,
                           single_connection_client=True)
        # A READONLY part is read on the node's own replica only once that replica
        # knows the group's membership (INFO's local_role is `none` until then, and the
        # part goes to another replica): wait for that first, or the count below could
        # come from elsewhere.
        wait_for(lambda: all(
            node.info("cluster")[f"group{g}"]["local_role"] != "none"
            for g in range(confirmed.groups)),
            timeout=10, what=f"the node on {port} holds a replica of every group")
        node.execute_command("READONLY")
        wait_for(lambda: applied(node, len(keys)), timeout=10,
                 what=f"the node on {port} applied the writes")
    # Frozen only once the router has no back-off left from the search before (in
    # `loaded`, right after the bulk load). Had node 1's replica lagged a round's index
    # then by more than its 200 ms catch-up, the router leaves that peer alone, or reads
    # that group at its leader, for 1 s; a leader frozen within that second fails the
    # group's searches until it ends, which is the back-off's documented cost, not what
    # this test is about. Only searches that are not READONLY start one, and none runs
    # in between.
    wait_for(lambda: int(client.info("cluster")["read_backoffs"]) == 0, timeout=10,
             what="the router's read back-offs ran out")

    confirmed.procs[1].send_signal(signal.SIGSTOP)
    # Whole answers, repeatedly (past the 1 s a failed peer is left alone), each within
    # its TIMEOUT: the frozen leader's group is confirmed by nodes 1 and 3.
    deadline = time.monotonic() + 2.5
    searches = 0
    while time.monotonic() < deadline:
        assert every_key(client, "TIMEOUT", "1000") == (N, everything)
        searches += 1
    assert searches >= 5
    reply = client.execute_command(
        "FT.SEARCH", "idx", "@n:[5000 5000]", "NOCONTENT", "LIMIT", "0", "100",
        "TIMEOUT", "1000")
    assert reply[0] == len(keys) and {k.decode() for k in reply[1:]} == set(keys)
    assert knn(client, vectors[7], "TIMEOUT", "1000")[0] == "d:7"

    # Node 3 frozen too: no group has two live replicas, so none can be confirmed.
    confirmed.procs[2].send_signal(signal.SIGSTOP)
    start = time.monotonic()
    with pytest.raises(redis.exceptions.ResponseError, match=(
            r"^Search operation cancelled due to timeout: "
            r"shard group \d+ \(node \d\) did not answer within 500 ms$")):
        every_key(client, "TIMEOUT", "300")
    assert time.monotonic() - start < 2.5

    for proc in confirmed.procs[1:]:
        proc.send_signal(signal.SIGCONT)
    wait_whole(client, everything)


def test_someshards_with_every_group_answering_is_the_whole_answer(confirmed):
    client = confirmed.client(protocol=2)
    load(client)
    assert every_key(client, "SOMESHARDS") == every_key(client)
    resp3 = confirmed.client(protocol=3)
    reply = resp3.execute_command("FT.SEARCH", "idx", "*", "NOCONTENT", "SOMESHARDS")
    assert reply.get(b"warning", reply.get("warning")) == []
