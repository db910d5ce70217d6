"""The same data and queries give the same answers on one engine and through a router over
six shard groups on three real `shoal node` processes: FLAT answers identical (KNN with
filters, LIMIT, SORTBY, RETURN, NOCONTENT, VECTOR_RANGE, FT.AGGREGATE), HNSW recall
against brute force at ef 64 at least 0.95 on both.

Complements `crates/cluster/tests/scatter_gather.rs`, which runs 1, 3 and 6 groups of
engines in one process through the router's merge: here every part crosses gRPC,
each group is a Raft group, and each router reads its own replicas."""

import numpy as np
import pytest
import redis

from conftest import ClusterServer, Server, wait_ready

N, DIM = 600, 8
RNG = np.random.default_rng(29)
VECTORS = RNG.normal(size=(N, DIM)).astype(np.float32)
QUERIES = RNG.normal(size=(12, DIM)).astype(np.float32)
COLORS = ["red", "green", "blue"]


def load(r):
    for algo, name in (("FLAT", "flat"), ("HNSW", "hnsw")):
        extra = ["EF_RUNTIME", "64"] if algo == "HNSW" else []
        r.execute_command(
            "FT.CREATE", name, "ON", "HASH", "PREFIX", "1", "doc:", "SCHEMA",
            "v", "VECTOR", algo, str(6 + len(extra)), "TYPE", "FLOAT32", "DIM", str(DIM),
            "DISTANCE_METRIC", "L2", *extra, "color", "TAG", "n", "NUMERIC", "title", "TEXT")
    pipe = r.pipeline(transaction=False)
    for i, v in enumerate(VECTORS):
        pipe.hset(f"doc:{i}", mapping={"v": v.tobytes(), "color": COLORS[i % 3], "n": i,
                                       "title": f"item {i} {'even' if i % 2 == 0 else 'odd'}"})
    pipe.execute()
    wait_ready(r, "flat")
    wait_ready(r, "hnsw")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """One engine (`shoal dev --standalone`) and six groups on three processes, loaded
    alike."""
    single = Server(tmp_path_factory.mktemp("single"), "--standalone").start()
    six = ClusterServer(tmp_path_factory.mktemp("six-groups"), 3, 6).start()
    try:
        clients = []
        for s in (single, six):
            c = redis.Redis(host="127.0.0.1", port=s.port, protocol=2)
            load(c)
            clients.append(c)
        yield clients
    finally:
        single.stop()
        six.stop()


def q(v):
    return v.tobytes()


QUERY_CASES = [
    ("knn", ["*=>[KNN 10 @v $q AS d]", "SORTBY", "d", "RETURN", "2", "d", "n"]),
    ("knn filtered", ["(@color:{red} @n:[100 500])=>[KNN 7 @v $q AS d]", "SORTBY", "d",
                      "RETURN", "1", "color"]),
    ("knn nocontent", ["@title:even=>[KNN 5 @v $q]", "NOCONTENT"]),
    ("knn paged", ["*=>[KNN 20 @v $q AS d]", "SORTBY", "d", "LIMIT", "5", "10",
                   "RETURN", "1", "d"]),
    ("range", ["@v:[VECTOR_RANGE 6 $q]=>{$YIELD_DISTANCE_AS: d}", "SORTBY", "d",
               "LIMIT", "0", "1000", "RETURN", "1", "d"]),
    ("range and tag", ["@color:{blue} @v:[VECTOR_RANGE 8 $q]=>{$YIELD_DISTANCE_AS: d}",
                       "SORTBY", "d", "LIMIT", "0", "1000", "RETURN", "2", "d", "color"]),
    ("sortby numeric", ["@color:{green|blue} @n:[(50 +inf]", "SORTBY", "n", "DESC",
                        "LIMIT", "3", "8", "RETURN", "2", "n", "color"]),
]


@pytest.mark.parametrize("name,args", QUERY_CASES, ids=[c[0] for c in QUERY_CASES])
def test_flat_answers_are_identical_on_one_engine_and_six_groups(pair, name, args):
    single, six = pair
    for v in QUERIES[:6]:
        params = ["PARAMS", "2", "q", q(v)] if "$q" in args[0] else []
        cmd = ["FT.SEARCH", "flat", *args, *params, "DIALECT", "2"]
        want = single.execute_command(*cmd)
        got = six.execute_command(*cmd)
        assert got == want, (name, got[:6], want[:6])
        assert want[0] > 0, (name, "an empty answer proves nothing")


AGGREGATE_CASES = [
    ["FT.AGGREGATE", "flat", "*", "LOAD", "2", "@n", "@color", "GROUPBY", "1", "@color",
     "REDUCE", "COUNT", "0", "AS", "count", "REDUCE", "AVG", "1", "@n", "AS", "avg",
     "REDUCE", "COUNT_DISTINCT", "1", "@n", "AS", "distinct", "REDUCE", "MIN", "1", "@n",
     "AS", "min", "REDUCE", "MAX", "1", "@n", "AS", "max", "REDUCE", "SUM", "1", "@n", "AS",
     "sum", "SORTBY", "2", "@color", "ASC"],
    ["FT.AGGREGATE", "flat", "@n:[0 299]", "LOAD", "1", "@n", "APPLY", "@n % 7", "AS", "m",
     "GROUPBY", "1", "@m", "REDUCE", "COUNT", "0", "AS", "c", "FILTER", "@c > 40",
     "SORTBY", "2", "@m", "ASC", "LIMIT", "0", "5"],
]


@pytest.mark.parametrize("args", AGGREGATE_CASES, ids=["reducers", "apply-filter-limit"])
def test_aggregates_are_identical_on_one_engine_and_six_groups(pair, args):
    single, six = pair
    want = single.execute_command(*args)
    got = six.execute_command(*args)
    assert got == want
    assert len(want) > 1, "an empty answer proves nothing"


def test_hnsw_recall_at_ef_64_on_one_engine_and_six_groups(pair):
    for client in pair:
        found = 0
        for v in QUERIES:
            truth = set(np.argsort(((VECTORS - v) ** 2).sum(axis=1))[:10])
            reply = client.execute_command(
                "FT.SEARCH", "hnsw", "*=>[KNN 10 @v $q EF_RUNTIME 64]", "PARAMS", "2", "q",
                q(v), "NOCONTENT", "DIALECT", "2")
            found += len(truth & {int(k.decode().split(":")[1]) for k in reply[1:]})
        assert found / (10 * len(QUERIES)) >= 0.95


def test_a_pipeline_of_searches_and_other_reads_answers_in_order(pair):
    """One engine answers a pipeline's searches framed and its other reads through the
    reply tree, in runs: the replies still come in request order, as a router's do."""
    answers = []
    for client in pair:
        pipe = client.pipeline(transaction=False)
        for i, v in enumerate(QUERIES[:3]):
            pipe.execute_command("FT.SEARCH", "flat", "*=>[KNN 3 @v $q AS d]", "SORTBY", "d",
                                 "RETURN", "1", "d", "PARAMS", "2", "q", q(v), "DIALECT", "2")
            pipe.execute_command("FT.SEARCH", "flat", "*=>[KNN 2 @v $q]", "PARAMS", "2", "q",
                                 q(v), "NOCONTENT", "DIALECT", "2")
            pipe.hget(f"doc:{i}", "color")
            pipe.exists(f"doc:{i}", "doc:none")
        answers.append(pipe.execute())
    single, six = answers
    assert single == six
    assert [single[k] for k in (2, 6, 10)] == [c.encode() for c in COLORS]
    assert all(single[k] == 1 for k in (3, 7, 11))
    assert all(single[k][0] == 3 and len(single[k]) == 7 for k in (0, 4, 8))
