"""Every error string of SPEC.md, provoked once through redis-py and compared."""

import re

import numpy as np
import pytest
import redis

SCHEMA = ["SCHEMA", "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "2",
          "DISTANCE_METRIC", "L2", "t", "TAG", "n", "NUMERIC", "x", "TEXT"]


@pytest.fixture
def idx(r):
    r.execute_command("FT.CREATE", "idx", "PREFIX", "1", "d:", *SCHEMA)
    r.hset("d:1", mapping={"v": np.array([1, 2], dtype=np.float32).tobytes(), "t": "a", "n": 1})
    return r


def error(r, *args) -> str:
    with pytest.raises(redis.ResponseError) as e:
        r.execute_command(*args)
    return str(e.value)


BLOB = np.array([1, 2], dtype=np.float32).tobytes()

CREATE_CASES = [
    (["FT.CREATE", "idx", *SCHEMA], "Index idx in database 0 already exists."),
    (["FT.CREATE", "i2", "SCHEMA", "a", "NUMERIC", "a", "TAG"], "Duplicate field in schema - a"),
    (["FT.CREATE", "i2", "SCHEMA", "v", "VECTOR", "HNSW", "4", "TYPE", "FLOAT32", "DIM", "2"],
     "Missing DISTANCE_METRIC parameter."),
    (["FT.CREATE", "i2", "SCHEMA", "v", "VECTOR", "HNSW", "4", "TYPE", "FLOAT32", "DISTANCE_METRIC", "L2"],
     "Missing dimensions parameter."),
    (["FT.CREATE", "i2", "SCHEMA", "v", "VECTOR", "HNSW", "4", "DIM", "2", "DISTANCE_METRIC", "L2"],
     "Missing vector TYPE parameter."),
    (["FT.CREATE", "i2", "SCHEMA", "v", "VECTOR", "HNSW", "8", "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "L2"],
     "Invalid field type for field `v`: Expected 8 parameters for HNSW but got 6 parameters."),
    (["FT.CREATE", "i2", "BOGUS", "SCHEMA", "a", "NUMERIC"],
     "Unexpected parameter `BOGUS`, expecting `SCHEMA`"),
    (["FT.CREATE", "i2", "SCHEMA", "v", "VECTOR", "HNSW", "8", "TYPE", "FLOAT32", "DIM", "2",
      "DISTANCE_METRIC", "L2", "M", "1"],
     "Invalid range: Value below minimum; M must be a positive integer greater than 2 and cannot exceed 512."),
]

SEARCH_CASES = [
    (["FT.SEARCH", "nope", "*"], "Index with name 'nope' not found in database 0"),
    (["FT.SEARCH", "idx", "*=>[KNN 5 @nope $q]", "PARAMS", "2", "q", BLOB, "DIALECT", "2"],
     "Index field `nope` does not exist"),
    (["FT.SEARCH", "idx", "*=>[KNN 5 @v $q]", "PARAMS", "2", "q", b"abc", "DIALECT", "2"],
     "Error parsing vector similarity parameters: query vector blob size (3) does not match index's expected size (8)."),
    (["FT.SEARCH", "idx", "*=>[KNN 5 @v $q]", "PARAMS", "4", "q", BLOB, "extra", "1", "DIALECT", "2"],
     "Parameter `extra` not used."),
    (["FT.SEARCH", "idx", "*=>[KNN 5 @v $q]", "PARAMS", "3", "q", BLOB, "x"],
     "Error parsing value for the parameter `PARAMS` - Parameter count must be an even number."),
    (["FT.SEARCH", "idx", "*", "DIALECT", "1"], "DIALECT requires a non negative integer >=2 and <= 4"),
    (["FT.SEARCH", "idx", "*=>[KNN 10001 @v $q]", "PARAMS", "2", "q", BLOB, "DIALECT", "2"],
     "Invalid range: Value above maximum; KNN parameter must be a positive integer greater than 0 and cannot exceed 10000."),
    (["FT.SEARCH", "idx", "*", "TIMEOUT", "0"],
     "TIMEOUT must be a positive integer greater than 0 and cannot exceed 60000."),
    (["FT.SEARCH", "idx", "(*=>[KNN 5 @v $q]", "PARAMS", "2", "q", BLOB, "DIALECT", "2"],
     "Invalid filter expression: `(*`. Missing `)`"),
]


@pytest.mark.parametrize("args,want", CREATE_CASES + SEARCH_CASES,
                         ids=[w[:40] for _, w in CREATE_CASES + SEARCH_CASES])
def test_reference_wording(idx, args, want):
    got = error(idx, *args)
    # The whole text, not just a part (redis-py drops only the `ERR ` code). A vector
    # field's own problems come, as valkey-search words them, after the field's name:
    # SPEC.md's text is then the whole rest of the line.
    assert got in (want, f"Invalid field type for field `v`: {want}"), got
    # The server keeps serving after every error.
    assert idx.ping()


def test_timeout_cancels_a_slow_search(r):
    r.execute_command("FT.CREATE", "big", "PREFIX", "1", "b:", "SCHEMA", "x", "TEXT", "n", "NUMERIC")
    pipe = r.pipeline(transaction=False)
    for i in range(20000):
        pipe.hset(f"b:{i}", mapping={"x": f"word{i} other text here", "n": i})
    pipe.execute()
    got = error(r, "FT.SEARCH", "big", "@x:word1* | @x:word2* -@n:[5 10]", "TIMEOUT", "1")
    # A shard cancels the search itself (the reference text), or, over shard groups, the
    # router gives up on a group first (a CI machine that stalled past the router's
    # grace) and says which: the reference text still comes first.
    assert re.fullmatch(
        r"Search operation cancelled due to timeout"
        r"(: shard group \d+ \(node \d+\) did not answer within \d+ ms)?", got), got
    assert r.ping()


def test_redis_errors_keep_their_codes(r):
    r.set("s", "v")
    assert error(r, "HSET", "s", "f", "v").startswith("WRONGTYPE")
    assert error(r, "GET") == "wrong number of arguments for 'get' command"
    assert "unknown command 'NOPE'" in error(r, "NOPE", "a")
    assert error(r, "HINCRBY", "h", "f", "x") == "value is not an integer or out of range"
