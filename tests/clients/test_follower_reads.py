"""Follower reads: a router answers its search and aggregate parts from its own node's
replicas instead of sending the parts to the leaders, once they are confirmed: by one
peer's vote (`--read-mode votes`, the default: groups of three voters) or by a read
index from the group's leader (`--read-mode read-index`). Reads stay linearizable: a
write acknowledged through one router is seen by a search that starts after it
through any other.

Three real `shoal node` processes, every node a replica of every group, so each
router has a local replica of the groups the others lead. Run with follower reads
confirmed by votes, by read indexes, and off (`--follower-reads false`): the answers
must be the same, and only the first two answer from local replicas.
"""

import struct
import threading
import time

import pytest
import redis

from conftest import ClusterServer

GROUPS = 3


@pytest.fixture(scope="module", params=["votes", "read-index", "off"])
def cluster(request, tmp_path_factory):
    extra = {"votes": [], "read-index": ["--read-mode", "read-index"],
             "off": ["--follower-reads", "false"]}[request.param]
    c = ClusterServer(tmp_path_factory.mktemp(f"follower-reads-{request.param}"), 3,
                      GROUPS, extra=extra).start()
    c.follower_reads = request.param
    yield c
    c.stop()


def routers(cluster):
    return [redis.Redis(host="127.0.0.1", port=resp, protocol=2)
            for resp, _ in cluster.ports]


def vec(x):
    return struct.pack("<2f", float(x), 0.0)


def counts(client):
    """(parts answered here after a read index, read index rounds, parts answered
    here after a confirmation by votes, confirmation rounds)"""
    info = client.info("cluster")
    return tuple(int(info[k]) for k in (
        "follower_reads", "read_index_rounds", "confirmed_reads", "confirm_rounds"))


def test_every_router_sees_each_acknowledged_write_at_once(cluster):
    clients = routers(cluster)
    clients[0].execute_command(
        "FT.CREATE", "fr", "ON", "HASH", "PREFIX", "1", "fr:", "SCHEMA",
        "n", "NUMERIC", "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "2",
        "DISTANCE_METRIC", "L2")
    before = [counts(c) for c in clients]
    for i in range(120):
        writer, reader = clients[i % 3], clients[(i + 1) % 3]
        writer.hset(f"fr:{i}", mapping={"n": i, "v": vec(i)})
        # Acknowledged through one router: the next search through another, which
        # reads the groups the others lead from its own replicas, must count it...
        total = reader.execute_command("FT.SEARCH", "fr", "*", "LIMIT", "0", "0")
        assert total == [i + 1] or total == i + 1, f"write {i}: {total}"
        # ...find it as the nearest neighbour of its own vector...
        hit = reader.execute_command(
            "FT.SEARCH", "fr", "*=>[KNN 1 @v $q]", "PARAMS", "2", "q", vec(i),
            "NOCONTENT", "DIALECT", "2")
        assert hit[1] == f"fr:{i}".encode(), f"write {i}: {hit}"
        # ...and so must an aggregate.
        rows = reader.execute_command(
            "FT.AGGREGATE", "fr", "*", "GROUPBY", "0", "REDUCE", "COUNT", "0", "AS", "c")
        assert rows[1] == [b"c", str(i + 1).encode()], f"write {i}: {rows}"
    after = [counts(c) for c in clients]
    for b, a in zip(before, after):
        reads, rounds, confirmed, fences = (y - x for x, y in zip(b, a))
        if cluster.follower_reads == "read-index":
            # Each router searched 80 times, two of its three groups led elsewhere:
            # those parts were answered here, each after a read index round.
            assert reads >= 80, (reads, rounds)
            assert 0 < rounds <= reads
            assert (confirmed, fences) == (0, 0)
        elif cluster.follower_reads == "votes":
            # All three groups' parts, the one this node leads included, were
            # answered here after a round of votes with one peer; no read index.
            assert confirmed >= 3 * 80, (confirmed, fences)
            assert 0 < fences <= confirmed
            assert (reads, rounds) == (0, 0)
        else:
            assert (reads, rounds, confirmed, fences) == (0, 0, 0, 0)


def test_a_follower_read_waits_for_its_replica_to_apply_the_write(cluster):
    """Writes through node 1 while node 2 syncs its log slowly (DEBUG FSYNC-DELAY),
    then a search through node 2: the groups node 2 does not lead commit without it
    (nodes 1 and 3 are a quorum), so its replicas of them have not applied the last
    writes when the search starts, and a follower read must wait for them (or leave
    the part to the leader) rather than answer without them."""
    clients = routers(cluster)
    clients[0].execute_command(
        "FT.CREATE", "burst", "ON", "HASH", "PREFIX", "1", "burst:", "SCHEMA",
        "n", "NUMERIC")
    slow = clients[1]
    try:
        assert slow.execute_command("DEBUG", "FSYNC-DELAY", "150") == b"OK"
        for rnd in range(8):
            pipe = clients[0].pipeline(transaction=False)
            for j in range(50):
                pipe.hset(f"burst:{rnd}:{j}", "n", j)
            pipe.execute()
            total = slow.execute_command("FT.SEARCH", "burst", "*", "LIMIT", "0", "0")
            assert total == [50 * (rnd + 1)] or total == 50 * (rnd + 1), (rnd, total)
    finally:
        slow.execute_command("DEBUG", "FSYNC-DELAY", "0")


def test_concurrent_searches_stay_linearizable_and_share_one_round(cluster):
    """Many clients at once, each writing through one router and searching through
    another at once after the acknowledgement: every search finds the write it follows.
    With votes, a router busy with other searches confirms a search's three parts by one
    round for all of them (`confirmed_reads_by_search`); idle, or in the other modes,
    it does not."""
    clients = routers(cluster)
    clients[0].execute_command(
        "FT.CREATE", "conc", "ON", "HASH", "PREFIX", "1", "conc:", "SCHEMA",
        "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "L2")

    def by_search():
        return [int(c.info("cluster")["confirmed_reads_by_search"]) for c in clients]

    def streams_and_rounds():
        infos = [c.info("cluster") for c in clients]
        return (sum(int(i["confirm_streams"]) for i in infos),
                sum(int(i["confirm_rounds"]) for i in infos))

    before = by_search()
    streams_before, rounds_before = streams_and_rounds()
    threads, rounds = 12, 25
    start = threading.Barrier(threads)
    wrong = []

    def client(t):
        ports = cluster.ports
        writer = redis.Redis(host="127.0.0.1", port=ports[t % 3][0], protocol=2)
        reader = redis.Redis(host="127.0.0.1", port=ports[(t + 1) % 3][0], protocol=2)
        start.wait()
        for i in range(rounds):
            x = 1000 * (t + 1) + i
            writer.hset(f"conc:{x}", "v", vec(x))
            hit = reader.execute_command(
                "FT.SEARCH", "conc", "*=>[KNN 1 @v $q]", "PARAMS", "2", "q", vec(x),
                "NOCONTENT", "DIALECT", "2")
            if hit[1:] != [f"conc:{x}".encode()]:
                wrong.append((t, i, hit))

    pool = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not wrong, wrong[:5]
    gained = [a - b for a, b in zip(by_search(), before)]
    if cluster.follower_reads == "votes":
        assert sum(gained) > 0, gained
    else:
        assert gained == [0, 0, 0], gained
    # Confirmation rounds go on one stream per peer, kept between rounds: a stream is
    # opened again only after one broke or a round was given up.
    streams_after, rounds_after = streams_and_rounds()
    new_streams, new_rounds = streams_after - streams_before, rounds_after - rounds_before
    if cluster.follower_reads == "votes":
        assert streams_after >= 1 and new_rounds >= 20, (streams_after, new_rounds)
        assert 4 * new_streams <= new_rounds, (new_streams, new_rounds)
    else:
        assert streams_after == 0 and rounds_after == 0, (streams_after, rounds_after)


def test_a_search_after_ft_info_says_ready_finds_every_document(cluster):
    """Backfill is each replica's own work: a follower may still be indexing old keys
    when the leaders (whose state FT.INFO reports) are done. A search through any
    router once FT.INFO says `ready` must count every document all the same."""
    clients = routers(cluster)
    pipe = clients[0].pipeline(transaction=False)
    for i in range(20000):
        pipe.hset(f"bf:{i}", mapping={"t": "x" if i % 2 else "y"})
    pipe.execute()
    clients[0].execute_command("FT.CREATE", "bf", "ON", "HASH", "PREFIX", "1", "bf:",
                               "SCHEMA", "t", "TAG")
    def ready():
        info = clients[0].execute_command("FT.INFO", "bf")
        return dict(zip(info[::2], info[1::2]))[b"state"] == b"ready"

    # Polled without pause: the search must start the moment FT.INFO says ready.
    deadline = time.monotonic() + 60
    while not ready():
        assert time.monotonic() < deadline, "FT.INFO never said ready"
    for reader in clients[1:] + clients[:1]:
        total = reader.execute_command("FT.SEARCH", "bf", "@t:{x}", "LIMIT", "0", "0")
        assert total in ([10000], 10000), total
