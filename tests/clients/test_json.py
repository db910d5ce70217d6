"""ON JSON indexes: JSONPath fields, JSON.SET / JSON.DEL keep the index exact, `$` returns
the whole document."""

import json

import numpy as np
from redis.commands.search.query import Query


def test_json_index_round_trip(r):
    r.execute_command(
        "FT.CREATE", "jidx", "ON", "JSON", "PREFIX", "1", "j:", "SCHEMA",
        "$.vec", "AS", "vec", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "3",
        "DISTANCE_METRIC", "L2", "$.tags", "AS", "tags", "TAG", "$.n", "AS", "n", "NUMERIC",
        "$.title", "AS", "title", "TEXT",
    )
    docs = {
        "j:1": {"vec": [0, 0, 0], "tags": ["red", "big"], "n": 1, "title": "first one"},
        "j:2": {"vec": [1, 0, 0], "tags": ["blue"], "n": 2, "title": "second"},
        "j:3": {"vec": [5, 5, 5], "tags": ["red"], "n": 3, "title": "third one"},
        "j:bad": {"vec": [1, 2], "tags": ["red"], "n": 4},
    }
    for key, doc in docs.items():
        assert r.execute_command("JSON.SET", key, "$", json.dumps(doc)) in (b"OK", "OK", True)
    info = r.ft("jidx").info()
    assert int(info["num_docs"]) == 4
    assert int(info["hash_indexing_failures"]) == 1  # j:bad has 2 components, not 3

    def search(query, **params):
        q = Query(query).dialect(2).paging(0, 10)
        return r.ft("jidx").search(q, query_params=params or None)

    blob = np.array([0.9, 0, 0], dtype=np.float32).tobytes()
    res = search("@tags:{red}=>[KNN 2 @vec $q AS d]", q=blob)
    assert [d.id for d in res.docs] == ["j:1", "j:3"]
    res = search("@n:[2 3]")
    assert sorted(d.id for d in res.docs) == ["j:2", "j:3"]
    assert json.loads(res.docs[0].json)["n"] in (2, 3)  # `$` holds the whole document
    res = search("@title:one")
    assert sorted(d.id for d in res.docs) == ["j:1", "j:3"]

    # JSON.SET of a path re-indexes just that field.
    r.execute_command("JSON.SET", "j:2", "$.tags", '["red"]')
    assert sorted(d.id for d in search("@tags:{red}").docs) == ["j:1", "j:2", "j:3", "j:bad"]
    # JSON.DEL of a field removes it from its index; of the root, the document.
    r.execute_command("JSON.DEL", "j:3", "$.vec")
    res = search("*=>[KNN 5 @vec $q]", q=blob)
    assert sorted(d.id for d in res.docs) == ["j:1", "j:2"]
    r.execute_command("JSON.DEL", "j:1")
    assert int(r.ft("jidx").info()["num_docs"]) == 3
    res = r.ft("jidx").search(Query("*").return_field("$.title", as_field="t").dialect(2))
    titles = {d.id: getattr(d, "t", None) for d in res.docs}
    assert titles["j:2"] == "second"
