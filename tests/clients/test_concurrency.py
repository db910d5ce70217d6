"""Many clients at once: writers, deleters and searchers race; afterwards every index
still agrees exactly with the keyspace, and every acknowledged write is readable."""

import random
import threading
import time

import numpy as np
from redis.commands.search.query import Query


def vector(n):
    """A vector per value: random (collinear or duplicate points are HNSW's known
    worst case and not what this test is about), the same for the same value."""
    return np.random.default_rng(n).random(4, dtype=np.float32).tobytes()


def test_racing_clients_leave_indexes_exact(server, r):
    r.execute_command("FT.CREATE", "idx", "PREFIX", "1", "d:", "SCHEMA",
                      "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "4",
                      "DISTANCE_METRIC", "L2", "t", "TAG", "n", "NUMERIC")
    stop = time.time() + 4.0
    errors = []
    acked = {}
    lock = threading.Lock()

    def writer(seed):
        c = server.client(protocol=2)
        rng = random.Random(seed)
        while time.time() < stop:
            pipe = c.pipeline(transaction=rng.random() < 0.3)
            batch = []
            for _ in range(rng.randint(1, 50)):
                key = f"d:{rng.randrange(500)}"
                if rng.random() < 0.2:
                    pipe.delete(key)
                    batch.append((key, None))
                else:
                    n = rng.randrange(1000)
                    vec = vector(n)
                    pipe.hset(key, mapping={"v": vec, "t": f"t{n % 7}", "n": n})
                    batch.append((key, n))
            try:
                pipe.execute()
            except Exception as e:  # noqa: BLE001 - any failure fails the test below
                errors.append(repr(e))
                return
            with lock:
                for key, n in batch:
                    acked[key] = (n, seed)

    def searcher(seed):
        c = server.client()
        rng = random.Random(seed)
        while time.time() < stop:
            q = vector(rng.randrange(1000))
            try:
                c.ft("idx").search(Query("*=>[KNN 5 @v $q]").dialect(2), query_params={"q": q})
                c.ft("idx").search(Query(f"@t:{{t{rng.randrange(7)}}} @n:[0 500]").dialect(2))
                c.ft("idx").info()
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
                return

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=searcher, args=(100 + i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]

    # The index holds exactly the keys that exist, with their current values.
    keys = {k.decode() for k in r.scan_iter(match="d:*", count=1000)}
    info = r.ft("idx").info()
    assert int(info["num_docs"]) == len(keys)
    assert int(info["hash_indexing_failures"]) == 0
    res = r.ft("idx").search(Query("*").no_content().paging(0, 1000).dialect(2))
    assert {d.id for d in res.docs} == keys
    for tag in range(7):
        res = r.ft("idx").search(Query(f"@t:{{t{tag}}}").no_content().paging(0, 1000).dialect(2))
        want = {k for k in keys if int(r.hget(k, "n")) % 7 == tag}
        assert {d.id for d in res.docs} == want, tag
    # Each existing document is its own nearest neighbour at distance 0.
    for key in random.Random(1).sample(sorted(keys), min(50, len(keys))):
        n = int(r.hget(key, "n"))
        q = vector(n)
        res = r.ft("idx").search(Query("*=>[KNN 50 @v $q AS d]").sort_by("d").dialect(2),
                                 query_params={"q": q})
        near = {d.id for d in res.docs if float(d.d) == 0.0}
        assert key in near, key
