"""redis-py with RESP3 (`protocol=3`): search, info and aggregate come back as maps."""

import numpy as np
import pytest
from redis.commands.search.query import Query


@pytest.fixture
def r3(server, r):
    r.execute_command(
        "FT.CREATE", "idx", "ON", "HASH", "PREFIX", "1", "item:", "SCHEMA",
        "vec", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "4", "DISTANCE_METRIC", "L2",
        "category", "TAG",
    )
    for i in range(20):
        r.hset(f"item:{i}", mapping={
            "vec": np.full(4, i, dtype=np.float32).tobytes(),
            "category": "even" if i % 2 == 0 else "odd",
        })
    client = server.client(protocol=3)
    yield client
    client.close()


def test_hello_3_negotiates_resp3(r3):
    hello = r3.execute_command("HELLO", "3")
    assert hello[b"proto"] == 3


def test_search_map_form(r3):
    q = Query("@category:{even}=>[KNN 3 @vec $v AS dist]").sort_by("dist") \
        .return_fields("dist", "category").dialect(2)
    res = r3.ft("idx").search(q, query_params={"v": np.full(4, 5, dtype=np.float32).tobytes()})
    # With protocol=3 redis-py hands back the RESP3 map, keys and values decoded.
    assert res["total_results"] == 3
    ids = [row["id"] for row in res["results"]]
    assert ids == ["item:4", "item:6", "item:2"]
    first = res["results"][0]["extra_attributes"]
    assert first["category"] == "even"
    assert float(first["dist"]) == 4.0


def test_info_map_form(r3):
    info = r3.ft("idx").info()
    assert info[b"num_docs"] == 20
    assert info[b"index_name"] == b"idx"
    vector = info[b"attributes"][0]
    assert vector[b"type"] == b"VECTOR"
    assert vector[b"index"][b"dimensions"] == 4
    search = r3.info("search")
    assert search["search_number_of_indexes"] == 1


def test_hgetall_is_a_map(r3):
    assert r3.hgetall("item:1")[b"category"] == b"odd"
