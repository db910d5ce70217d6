"""Multi-key commands, hash tags, transactions and scatter-gather search, as a client
sees them. Run against `shoal dev` and, by `make test`, through a router over 3 shard
groups (SHOAL_CLUSTER_GROUPS=3): the answers must not depend on where the keys live."""

import numpy as np
import pytest
import redis

DIM = 8


def test_multi_key_commands_cover_every_group(r):
    keys = [f"mk:{i}" for i in range(200)]
    assert r.mset({k: f"v{i}" for i, k in enumerate(keys)})
    # MGET keeps the order asked for, missing keys included.
    asked = keys[::-1] + ["mk:missing"]
    assert r.mget(asked) == [f"v{199 - i}".encode() for i in range(200)] + [None]
    assert r.exists(*keys[:50], "mk:missing", keys[0]) == 51
    assert r.dbsize() == 200
    assert sorted(k.decode() for k in r.keys("mk:1*")) == sorted(
        k for k in keys if k.startswith("mk:1"))
    seen = []
    cursor = 0
    while True:
        cursor, batch = r.scan(cursor, count=17)
        seen += batch
        if cursor == 0:
            break
    assert sorted(seen) == sorted(k.encode() for k in keys)
    assert r.delete(*keys[:120], "mk:missing") == 120
    assert r.dbsize() == 80


def test_hash_tags_keep_a_transaction_with_watch_whole(r):
    r.set("{user:1}:balance", 10)
    with r.pipeline() as p:
        p.watch("{user:1}:balance", "{user:1}:limit")
        p.multi()
        p.incrby("{user:1}:balance", -3)
        p.set("{user:1}:last", "spent 3")
        assert p.execute() == [7, True]
    # Another client moves a watched key: the transaction does not run.
    other = redis.Redis(connection_pool=r.connection_pool)
    with r.pipeline() as p:
        p.watch("{user:1}:balance")
        other.set("{user:1}:balance", 100)
        p.multi()
        p.set("{user:1}:balance", 0)
        with pytest.raises(redis.WatchError):
            p.execute()
    assert r.get("{user:1}:balance") == b"100"


def test_a_transaction_over_many_keys_applies_every_part(r):
    # redis-py's default pipeline is MULTI/EXEC; these keys land on different groups.
    with r.pipeline() as p:
        for i in range(30):
            p.set(f"tx:{i}", i)
        p.incr("tx:0")
        results = p.execute()
    assert results == [True] * 30 + [1]
    assert r.mget([f"tx:{i}" for i in range(30)]) == [b"1"] + [
        str(i).encode() for i in range(1, 30)]


@pytest.fixture
def flat(r):
    r.execute_command(
        "FT.CREATE", "flat", "ON", "HASH", "PREFIX", "1", "f:", "SCHEMA",
        "n", "NUMERIC", "t", "TAG", "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32",
        "DIM", str(DIM), "DISTANCE_METRIC", "L2")
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((300, DIM)).astype(np.float32)
    pipe = r.pipeline(transaction=False)
    for i, v in enumerate(vectors):
        pipe.hset(f"f:{i}", mapping={"n": i % 50, "t": f"t{i % 3}", "v": v.tobytes()})
    pipe.execute()
    return vectors


def search(server, *args):
    return server.client(protocol=2).execute_command("FT.SEARCH", "flat", *args)


def test_knn_over_groups_is_the_exact_top_k(server, r, flat):
    rng = np.random.default_rng(9)
    for _ in range(5):
        q = rng.standard_normal(DIM).astype(np.float32)
        exact = np.argsort(((flat - q) ** 2).sum(axis=1))[:10]
        res = search(server, "*=>[KNN 10 @v $q AS d]", "PARAMS", "2", "q", q.tobytes(),
                     "SORTBY", "d", "NOCONTENT", "DIALECT", "2")
        assert res[0] == 10
        assert res[1:] == [f"f:{i}".encode() for i in exact]
        # Paging through the same query gives the same order.
        pages = []
        for offset in (0, 4, 8):
            page = search(server, "*=>[KNN 10 @v $q AS d]", "PARAMS", "2", "q", q.tobytes(),
                          "LIMIT", str(offset), "4", "NOCONTENT", "DIALECT", "2")
            pages += page[1:]
        assert pages == res[1:]


def test_filters_sortby_and_info_add_up_over_groups(server, r, flat):
    res = search(server, "@t:{t1} @n:[10 20]", "SORTBY", "n", "DESC", "LIMIT", "0", "100",
                 "RETURN", "1", "n")
    expected = sorted(((i % 50, i) for i in range(300) if i % 3 == 1 and 10 <= i % 50 <= 20),
                      key=lambda x: (-x[0], f"f:{x[1]}"))
    assert res[0] == len(expected)
    assert res[1::2] == [f"f:{i}".encode() for _, i in expected]
    assert [int(f[1]) for f in res[2::2]] == [n for n, _ in expected]
    info = r.ft("flat").info()
    assert int(info["num_docs"]) == 300
    with pytest.raises(redis.ResponseError, match="already exists"):
        r.execute_command("FT.CREATE", "flat", "SCHEMA", "n", "NUMERIC")
    r.execute_command("FT.DROPINDEX", "flat")
    with pytest.raises(redis.ResponseError):
        r.ft("flat").info()
    assert r.dbsize() == 300


def aggregate(server, *args):
    return server.client(protocol=2).execute_command("FT.AGGREGATE", "flat", *args)


def rows_of(res):
    return [dict(zip(row[::2], row[1::2])) for row in res[1:]]


def test_aggregate_reducers_are_exact_over_groups(server, r, flat):
    # Each group reduces its own rows; the router merges the partial state, so AVG and
    # COUNT_DISTINCT are the ones a single node computes, not averages of averages.
    res = aggregate(server, "@n:[5 40]", "APPLY", "@n * 2", "AS", "dbl", "FILTER", "@dbl > 20",
                    "GROUPBY", "1", "@t",
                    "REDUCE", "COUNT", "0", "AS", "count",
                    "REDUCE", "AVG", "1", "@n", "AS", "avg",
                    "REDUCE", "COUNT_DISTINCT", "1", "@n", "AS", "distinct",
                    "REDUCE", "SUM", "1", "@dbl", "AS", "sum",
                    "REDUCE", "MIN", "1", "@n", "AS", "lo",
                    "REDUCE", "MAX", "1", "@n", "AS", "hi",
                    "SORTBY", "2", "@t", "ASC")
    rows = rows_of(res)
    assert [row[b"t"] for row in rows] == [b"t0", b"t1", b"t2"]
    for row in rows:
        t = int(row[b"t"][1:])
        ns = [i % 50 for i in range(300) if i % 3 == t and 10 < i % 50 <= 40]
        assert int(row[b"count"]) == len(ns)
        assert float(row[b"avg"]) == pytest.approx(sum(ns) / len(ns))
        assert int(row[b"distinct"]) == len(set(ns))
        assert float(row[b"sum"]) == 2 * sum(ns)
        assert (int(row[b"lo"]), int(row[b"hi"])) == (min(ns), max(ns))


def test_aggregate_over_knn_keeps_the_k_nearest_of_all_groups(server, r, flat):
    q = np.random.default_rng(3).standard_normal(DIM).astype(np.float32)
    order = np.argsort(((flat - q) ** 2).sum(axis=1))
    # The FILTER runs after the 12 nearest of the whole index are chosen: a group that
    # filtered its own nearest first would let the 13th nearest in.
    res = aggregate(server, "*=>[KNN 12 @v $q AS d]", "PARAMS", "2", "q", q.tobytes(),
                    "LOAD", "2", "@__key", "@n", "FILTER", "@n < 25", "SORTBY", "2", "@d", "ASC",
                    "DIALECT", "2")
    expected = [f"f:{i}" for i in order[:12] if i % 50 < 25]
    assert [row[b"__key"].decode() for row in rows_of(res)] == expected
    # Grouped after the KNN: the counts cover exactly the 12 nearest.
    res = aggregate(server, "*=>[KNN 12 @v $q AS d]", "PARAMS", "2", "q", q.tobytes(),
                    "GROUPBY", "1", "@t", "REDUCE", "COUNT", "0", "AS", "c", "DIALECT", "2")
    counts = {row[b"t"].decode(): int(row[b"c"]) for row in rows_of(res)}
    want = {}
    for i in order[:12]:
        want[f"t{i % 3}"] = want.get(f"t{i % 3}", 0) + 1
    assert counts == want


def test_sorted_aggregate_pages_over_groups(server, r, flat):
    res = aggregate(server, "@t:{t2}", "LOAD", "1", "@__key", "SORTBY", "4", "@n", "DESC",
                    "@__key", "ASC", "LIMIT", "3", "6")
    docs = sorted((i for i in range(300) if i % 3 == 2), key=lambda i: (-(i % 50), f"f:{i}"))
    assert [row[b"__key"].decode() for row in rows_of(res)] == [f"f:{i}" for i in docs[3:9]]


def test_a_search_inside_multi(server, r, flat):
    with r.pipeline() as p:
        p.set("m:{a}", 1)
        p.execute_command("FT.SEARCH", "flat", "@t:{t0}", "LIMIT", "0", "0")
        if int(r.info("cluster").get("shoal_shard_groups", 1)) > 1:
            # Its parts would run beside the log entries, not at the transaction's point:
            # refused rather than answered from another moment.
            with pytest.raises(redis.ResponseError, match="cannot run inside MULTI"):
                p.execute()
        else:
            res = p.execute()[1]
            total = res[0] if isinstance(res, list) else res[b"total_results"]
            assert total == 100
    assert r.get("m:{a}") == b"1"
