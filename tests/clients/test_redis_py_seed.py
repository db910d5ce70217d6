"""Seed 001 (the Redis vector guide), run unchanged through redis-py against Shoal."""

import numpy as np
import pytest
from redis.commands.search.aggregation import AggregateRequest, Desc
from redis.commands.search import reducers
from redis.commands.search.query import Query

from conftest import clean_client, wait_ready

DIM = 512


def brute_force_cosine(vectors, query, k):
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = query / np.linalg.norm(query)
    d = 1.0 - v @ q
    order = np.argsort(d, kind="stable")[:k]
    return order, d[order]


@pytest.fixture(params=["default", "resp2"])
def r(server, request):
    """Every seed step runs with redis-py's default protocol (RESP3) and with RESP2."""
    kwargs = {"protocol": 2} if request.param == "resp2" else {}
    client = clean_client(server, **kwargs)
    yield client
    client.close()


@pytest.fixture
def loaded(r):
    """The seed's FLAT index and its 1,000-key transactional pipeline."""
    r.execute_command(
        "FT.CREATE", "idx", "ON", "HASH", "PREFIX", "1", "item:", "SCHEMA",
        "vec", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", str(DIM),
        "DISTANCE_METRIC", "COSINE", "title", "TEXT", "category", "TAG",
    )
    rng = np.random.default_rng(7)
    vectors = rng.random((1000, DIM), dtype=np.float32)
    categories = ["electronics", "books", "toys"]
    pipe = r.pipeline()  # transaction=True: MULTI ... EXEC
    for i in range(1000):
        pipe.hset(f"item:{i}", mapping={
            "vec": vectors[i].tobytes(),
            "title": f"제품 {i}",
            "category": categories[i % 3],
        })
    replies = pipe.execute()
    assert replies == [3] * 1000
    return vectors


def test_knn_matches_brute_force(r, loaded):
    vectors = loaded
    query_vector = np.random.default_rng(1).random(DIM, dtype=np.float32)
    q = Query("*=>[KNN 10 @vec $vec AS score]") \
        .sort_by("score") \
        .return_fields("title", "category", "score") \
        .dialect(2)
    results = r.ft("idx").search(q, query_params={"vec": query_vector.tobytes()})
    want, want_d = brute_force_cosine(vectors, query_vector, 10)
    assert results.total == 10
    assert [d.id for d in results.docs] == [f"item:{i}" for i in want]
    for doc, i, dist in zip(results.docs, want, want_d):
        assert doc.title == f"제품 {i}"
        assert doc.category == ["electronics", "books", "toys"][i % 3]
        assert abs(float(doc.score) - dist) < 1e-5


def test_hybrid_tag_query(r, loaded):
    vectors = loaded
    query_vector = np.random.default_rng(2).random(DIM, dtype=np.float32)
    q = Query("(@category:{electronics})=>[KNN 10 @vec $vec AS score]") \
        .sort_by("score").return_fields("category", "score").dialect(2)
    results = r.ft("idx").search(q, query_params={"vec": query_vector.tobytes()})
    electronics = np.arange(0, 1000, 3)
    order, _ = brute_force_cosine(vectors[electronics], query_vector, 10)
    assert [d.id for d in results.docs] == [f"item:{electronics[i]}" for i in order]
    assert all(d.category == "electronics" for d in results.docs)


def test_hybrid_tag_numeric_text_query(r):
    r.execute_command(
        "FT.CREATE", "shop", "ON", "HASH", "PREFIX", "1", "p:", "SCHEMA",
        "vec", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "4", "DISTANCE_METRIC", "L2",
        "title", "TEXT", "category", "TAG", "price", "NUMERIC",
    )
    rows = [
        ("p:1", [0, 0, 0, 0], "cheap smartphone", "electronics", 100),
        ("p:2", [1, 0, 0, 0], "smartphone deluxe", "electronics", 1500),
        ("p:3", [0, 1, 0, 0], "laptop", "electronics", 900),
        ("p:4", [0, 0, 1, 0], "smartphone case", "accessories", 20),
    ]
    for key, v, title, cat, price in rows:
        r.hset(key, mapping={"vec": np.array(v, dtype=np.float32).tobytes(),
                             "title": title, "category": cat, "price": price})
    qv = np.zeros(4, dtype=np.float32).tobytes()
    q = Query("(@category:{electronics} @price:[0 1000])=>[KNN 10 @vec $vec AS score]") \
        .sort_by("score").dialect(2)
    assert [d.id for d in r.ft("shop").search(q, query_params={"vec": qv}).docs] == ["p:1", "p:3"]
    q = Query("(@category:{electronics} @title:(smartphone))=>[KNN 10 @vec $vec AS score]") \
        .sort_by("score").dialect(2)
    assert [d.id for d in r.ft("shop").search(q, query_params={"vec": qv}).docs] == ["p:1", "p:2"]
    q = Query("@price:[(20 +inf]").sort_by("price", asc=False).dialect(2)
    assert [d.id for d in r.ft("shop").search(q).docs] == ["p:2", "p:3", "p:1"]


def test_info_drop_and_memory(r, loaded):
    info = wait_ready(r, "idx")
    assert int(info["num_docs"]) == 1000
    assert info["index_name"] == "idx"
    r.hset("item:bad", mapping={"vec": b"short", "title": "broken"})
    info = r.ft("idx").info()
    assert int(info["hash_indexing_failures"]) == 1
    assert int(info["num_docs"]) == 1001
    memory = r.info("memory")
    assert memory["used_memory"] > 1000 * DIM * 4
    search = r.info("search")
    assert search["search_number_of_indexes"] == 1
    assert search["search_total_indexed_vector"] == 1000
    r.ft("idx").dropindex()
    assert r.execute_command("FT._LIST") == []
    assert r.dbsize() == 1001  # DROPINDEX without DD keeps the documents


def test_dropindex_dd_deletes_documents(r, loaded):
    r.set("other", "kept")
    r.execute_command("FT.DROPINDEX", "idx", "DD")
    assert r.dbsize() == 1


def test_group_by_category_count(r, loaded):
    req = AggregateRequest("*").group_by("@category", reducers.count().alias("count")) \
        .sort_by(Desc("@count"))
    res = r.ft("idx").aggregate(req)
    rows = [(row[1].decode(), int(row[3])) for row in res.rows]
    assert rows[0] == ("electronics", 334)
    assert sorted(rows) == [("books", 333), ("electronics", 334), ("toys", 333)]


def test_backfill_of_existing_keys(r):
    for i in range(500):
        r.hset(f"old:{i}", mapping={"n": i, "t": "x" if i % 2 else "y"})
    r.execute_command("FT.CREATE", "late", "PREFIX", "1", "old:", "SCHEMA",
                      "n", "NUMERIC", "t", "TAG")
    info = wait_ready(r, "late")
    assert int(info["num_docs"]) == 500
    assert r.ft("late").search(Query("@t:{x}").paging(0, 0)).total == 250
    r.execute_command("FT.CREATE", "skip", "PREFIX", "1", "old:", "SKIPINITIALSCAN",
                      "SCHEMA", "n", "NUMERIC")
    assert int(r.ft("skip").info()["num_docs"]) == 0


def test_every_mutation_keeps_the_index_exact(r):
    r.execute_command("FT.CREATE", "m", "PREFIX", "1", "d:", "SCHEMA",
                      "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "2",
                      "DISTANCE_METRIC", "L2", "t", "TAG", "n", "NUMERIC")

    def ids(query, **params):
        q = Query(query).dialect(2).paging(0, 100)
        return sorted(d.id for d in r.ft("m").search(q, query_params=params or None).docs)

    v = lambda x, y: np.array([x, y], dtype=np.float32).tobytes()
    r.hset("d:1", mapping={"v": v(0, 0), "t": "a", "n": 1})
    r.hset("d:2", mapping={"v": v(1, 1), "t": "b", "n": 2})
    assert ids("@t:{a}") == ["d:1"]
    r.hset("d:1", "t", "b")                      # HSET of one field
    assert ids("@t:{b}") == ["d:1", "d:2"]
    r.hdel("d:2", "t")                           # HDEL
    assert ids("@t:{b}") == ["d:1"]
    r.delete("d:1")                              # DEL
    assert ids("*") == ["d:2"]
    r.hset("d:3", mapping={"v": v(5, 5), "n": 3})
    r.unlink("d:3")                              # UNLINK
    assert ids("@n:[0 10]") == ["d:2"]
    r.hset("d:4", mapping={"v": v(0, 0), "n": 4})
    r.pexpire("d:4", 50)                         # expiry firing
    import time
    time.sleep(0.4)
    assert ids("*=>[KNN 5 @v $q]", q=v(0, 0)) == ["d:2"]
    r.flushall()                                 # FLUSHALL
    assert ids("*") == []
    assert int(r.ft("m").info()["num_docs"]) == 0
