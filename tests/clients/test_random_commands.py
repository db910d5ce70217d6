"""Seeded random commands from the whole command table, well framed but with arguments
drawn from a pool of awkward values and from real commands mutated a token at a time.

Every command must get a reply (an error is fine); the connection must stay open; other
clients must keep being served; and keys and an index outside the commands' reach must
be intact afterwards, with every shard group still taking writes. A panic anywhere a
client's arguments reach (a parser, the engine's apply, the router's merge) fails this
test with the seed and the command that caused it.

`SHOAL_FUZZ_SEED` and `SHOAL_FUZZ_COMMANDS` replay or lengthen a run.
"""

import os
import random

import numpy as np
import pytest
import redis

from conftest import Server, wait_ready

SEED = int(os.environ.get("SHOAL_FUZZ_SEED", "20261207"))
COMMANDS = int(os.environ.get("SHOAL_FUZZ_COMMANDS", "1500"))


def vec(*xs):
    return np.array(xs, dtype=np.float32).tobytes()


# Left out, each for a reason: they end the connection or its protocol (QUIT, HELLO,
# RESET's RESP2), lock the test out (ACL, AUTH with a changed default), wipe the
# sentinels (FLUSHALL, FLUSHDB), change the cluster or the disk (RAFT, RESHARD, DEBUG
# FSYNC-DELAY) or every connection's limits (CONFIG SET, tested on its own).
EXCLUDED = {"QUIT", "HELLO", "RESET", "ACL", "AUTH", "FLUSHALL", "FLUSHDB", "RAFT",
            "RESHARD", "DEBUG", "CONFIG"}

KEYS = [f"fz:{i}" for i in range(6)] + [f"jz:{i}" for i in range(3)] + ["s:1", "s:2", "{fz}:t"]
INDEXES = ["fz", "jz", "nope", "fz2"]
VALUES = [
    "0", "1", "-1", "2", "3", "10", "10000", "10001", "9223372036854775807",
    "-9223372036854775808", "18446744073709551616", "1e400", "-1e400", "nan", "inf", "+inf",
    "-inf", "0x10", "3.5", "-0.0", "", " ", "*", "$", "$.a", "$.v", "$.arr[0]", "$..n",
    "$.v[5]", "$[", "[", "]", "{", "}", "(", ")", "|", "-", "=>", "@", "@t:{a}",
    "@t:{a|b*}", "@n:[1 2]", "@n:[(1 +inf]", "@x:hello", "*=>[KNN 2 @v $q]",
    "*=>[KNN $k @v $q EF_RUNTIME 5 AS d]", "@v:[VECTOR_RANGE 1 $q]=>{$YIELD_DISTANCE_AS: d}",
    "KNN", "PARAMS", "q", "k", "LIMIT", "SORTBY", "ASC", "DESC", "RETURN", "NOCONTENT",
    "DIALECT", "TIMEOUT", "SCHEMA", "VECTOR", "HNSW", "FLAT", "TAG", "NUMERIC", "TEXT", "ON",
    "HASH", "JSON", "PREFIX", "GROUPBY", "REDUCE", "COUNT", "COUNT_DISTINCT", "TOLIST", "SUM",
    "AVG", "LOAD", "APPLY", "FILTER", "AS", "EF_RUNTIME", "M", "DIM", "TYPE", "FLOAT32",
    "DISTANCE_METRIC", "L2", "IP", "COSINE", "SEPARATOR", "CASESENSITIVE", "SKIPINITIALSCAN",
    "INITIAL_CAP", "BLOCK_SIZE", "EF_CONSTRUCTION", "NX", "XX", "GT", "LT", "EX", "PX",
    "KEEPTTL", "GET", "MATCH", "TYPE", "@n", "@t", "@c", "@n*2", "@c>1", "sqrt(@n)",
    "upper(@t)", '{"a":1}', "[1,2]", '"x"', "null", "true", '{"v":[1,2],"t":"a","n":3}',
    '{"v":[1,"x"]}', "\x00", "\xff\xfe", "é", "a" * 300,
]
BLOBS = [vec(1, 2), vec(0, 0), vec(1, 2, 3), b"", b"\x00" * 7, b"\xff" * 8, vec(float("nan"), 1)]

# Real commands, each then mutated a token at a time.
TEMPLATES = [
    ["FT.SEARCH", "fz", "*=>[KNN 2 @v $q]", "PARAMS", "2", "q", vec(1, 2), "DIALECT", "2"],
    ["FT.SEARCH", "fz", "@t:{a|b} @n:[1 (5]", "RETURN", "2", "n", "t", "SORTBY", "n", "DESC",
     "LIMIT", "0", "3"],
    ["FT.SEARCH", "fz", "(@t:{a} | -@n:[2 3])=>[KNN 3 @v $q AS d]", "PARAMS", "2", "q",
     vec(0, 1), "SORTBY", "d", "LIMIT", "1", "2", "DIALECT", "2"],
    ["FT.SEARCH", "fz", "@v:[VECTOR_RANGE 2 $q]=>{$YIELD_DISTANCE_AS: d; $EPSILON: 0.5}",
     "PARAMS", "2", "q", vec(1, 1), "NOCONTENT"],
    ["FT.SEARCH", "jz", "@n:[-inf inf]", "RETURN", "1", "$.t", "TIMEOUT", "100"],
    ["FT.AGGREGATE", "fz", "*", "LOAD", "2", "@n", "@t", "GROUPBY", "1", "@t", "REDUCE",
     "COUNT", "0", "AS", "c", "REDUCE", "SUM", "1", "@n", "AS", "s", "SORTBY", "2", "@c",
     "DESC", "APPLY", "@c*2", "AS", "d", "FILTER", "@d>1", "LIMIT", "0", "5"],
    ["FT.AGGREGATE", "fz", "*=>[KNN 3 @v $q]", "PARAMS", "2", "q", vec(2, 2), "LOAD", "*",
     "DIALECT", "2"],
    ["FT.CREATE", "fz2", "ON", "HASH", "PREFIX", "1", "fz:", "SCHEMA", "v", "VECTOR", "HNSW",
     "6", "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "L2", "t", "TAG", "SEPARATOR", ";",
     "n", "NUMERIC"],
    ["FT.CREATE", "fz2", "ON", "JSON", "PREFIX", "1", "jz:", "SCHEMA", "$.v", "AS", "v",
     "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "COSINE"],
    ["FT.DROPINDEX", "fz2"],
    ["FT.INFO", "fz"],
    ["HSET", "fz:1", "v", vec(1, 2), "t", "a", "n", "3", "x", "hello world"],
    ["JSON.SET", "jz:1", "$", '{"v":[1,2],"t":"b","n":4,"arr":[1,2,3]}'],
    ["JSON.SET", "jz:1", "$.arr[1]", "7"],
    ["JSON.ARRAPPEND", "jz:1", "$.arr", "1", "2"],
    ["JSON.NUMINCRBY", "jz:1", "$.n", "2.5"],
    ["JSON.GET", "jz:1", "$.arr[0]", "$.t"],
    ["SET", "s:1", "v", "EX", "100", "NX"],
    ["SCAN", "0", "MATCH", "fz:*", "COUNT", "5", "TYPE", "hash"],
    ["EXPIRE", "fz:2", "100", "GT"],
    ["MULTI"],
    ["EXEC"],
    ["DISCARD"],
    ["WATCH", "fz:1", "s:1"],
]


def random_arg(rng):
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(KEYS)
    if roll < 0.4:
        return rng.choice(INDEXES)
    if roll < 0.5:
        return rng.choice(BLOBS)
    if roll < 0.55:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
    return rng.choice(VALUES)


QUERY_CHARS = "()[]{}|-@*$:;=>,.\\\" '0123456789abKNNvtn"


def mutate_text(rng, value):
    """A character-level change inside one argument (queries, JSON, expressions)."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    at = rng.randrange(len(text) + 1)
    roll = rng.random()
    if roll < 0.4:
        text = text[:at] + rng.choice(QUERY_CHARS) + text[at:]
    elif roll < 0.7 and text:
        text = text[:at] + text[at + 1:]
    else:
        text = text[:at] + text[at:at + rng.randrange(1, 6)] + text[at:]
    return text.encode("latin-1") if isinstance(value, bytes) else text


def mutate(rng, command):
    command = list(command)
    if len(command) > 1 and rng.random() < 0.5:
        where = rng.randrange(1, len(command))
        command[where] = mutate_text(rng, command[where])
        return command
    for _ in range(rng.randrange(1, 4)):
        where = rng.randrange(1, len(command) + 1)
        roll = rng.random()
        if roll < 0.4 and where < len(command):
            command[where] = random_arg(rng)
        elif roll < 0.6 and where < len(command) and len(command) > 2:
            del command[where]
        elif roll < 0.8:
            command.insert(where, random_arg(rng))
        elif where < len(command):
            command.insert(where, command[where])
    return command


def random_command(rng, names):
    if rng.random() < 0.45:
        command = mutate(rng, rng.choice(TEMPLATES))
    else:
        command = [rng.choice(names)] + [random_arg(rng) for _ in range(rng.randrange(0, 7))]
    # FT.DROPINDEX ... DD deletes the documents an index covers, and an FT.CREATE with
    # an empty prefix covers the sentinels: the option is taken out, whatever spells it.
    if str(command[0]).upper() == "FT.DROPINDEX":
        command = [a for a in command if as_bytes(a).upper() != b"DD"]
    return command


def as_bytes(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def make_sentinels(r):
    """Keys and an index the random commands never name, to check afterwards."""
    r.execute_command("FT.CREATE", "keep", "PREFIX", "1", "keep:", "SCHEMA",
                      "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "2",
                      "DISTANCE_METRIC", "L2", "n", "NUMERIC")
    for name, schema in (("fz", ["v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "2",
                                 "DISTANCE_METRIC", "L2", "t", "TAG", "n", "NUMERIC", "x", "TEXT"]),
                         ("jz", ["$.v", "AS", "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM",
                                 "2", "DISTANCE_METRIC", "L2", "$.t", "AS", "t", "TAG", "$.n", "AS",
                                 "n", "NUMERIC"])):
        on = "JSON" if name == "jz" else "HASH"
        r.execute_command("FT.CREATE", name, "ON", on, "PREFIX", "1", f"{name}:", "SCHEMA", *schema)
    kept = {f"keep:{i}": {b"v": vec(i, i), b"n": str(i).encode()} for i in range(20)}
    for key, fields in kept.items():
        r.hset(key, mapping=fields)
    for i in range(5):
        r.hset(f"fz:{i}", mapping={"v": vec(i, 1), "t": "ab"[i % 2], "n": i, "x": f"word{i}"})
    wait_ready(r, "keep")
    return kept


def test_random_commands_get_replies_and_touch_nothing_else(server, r):
    """Through a router: `shoal dev`'s groups, or 3 processes (SHOAL_CLUSTER_GROUPS)."""
    run_random_commands(server, r)


def test_random_commands_on_one_standalone_engine(tmp_path):
    """`--standalone` answers a search by framing its hits itself (search_frame.rs)."""
    server = Server(tmp_path / "standalone", "--standalone").start()
    try:
        with server.client() as r:
            run_random_commands(server, r)
        assert server.alive()
    finally:
        server.stop()


def server_logs(server) -> list:
    """The log files of `server`: one for `shoal dev`, one per process of a cluster."""
    if hasattr(server, "log"):
        return [server.log]
    return sorted(server.data_dir.glob("node-*.log"))


def panics(server) -> list:
    """Lines of the server's logs where a task panicked (tokio survives a panicking
    task, so a panic in a Raft apply or a read round would not fail a command)."""
    return [line for log in server_logs(server)
            for line in log.read_text(errors="replace").splitlines() if "panicked at" in line]


def run_random_commands(server, r):
    sentinels = make_sentinels(r)
    rng = random.Random(SEED)
    listed = (n.decode() if isinstance(n, bytes) else n for n in r.command_list())
    names = sorted({name for name in listed if name.upper() not in EXCLUDED})
    assert len(names) > 40, names
    # One connection of each protocol (RESP3 replies are built another way), the
    # commands spread over both at random.
    fuzz = [server.client(protocol=p, socket_timeout=30) for p in (2, 3)]
    for client in fuzz:
        # Raw replies: redis-py's per-command parsing expects well-formed answers to
        # well-formed commands (and a `QUEUED` inside MULTI trips it).
        client.response_callbacks.clear()
    watcher = server.client(socket_timeout=30)
    errors = 0
    for i in range(COMMANDS):
        command = random_command(rng, names)
        protocol = rng.choice((2, 3))
        try:
            fuzz[protocol - 2].execute_command(*command)
        except redis.ResponseError:
            errors += 1
        except (redis.ConnectionError, redis.TimeoutError) as e:
            pytest.fail(f"seed {SEED}, command {i} (RESP{protocol}): {command!r} lost the "
                        f"connection ({e})")
        if i % 100 == 99:
            assert watcher.ping(), f"seed {SEED}: another client not served after command {i}"
    for client in fuzz:
        client.close()
    assert server_logs(server), "no server log to look for panics in"
    assert not panics(server), panics(server)[:5]
    assert server.alive(), f"seed {SEED}: a server process ended"
    # Most random commands are refused, but not all: the run reached past the parsers.
    print(f"seed {SEED}: {errors} of {COMMANDS} random commands refused")
    assert 0 < errors < COMMANDS

    r = server.client(socket_timeout=30)
    for key, fields in sentinels.items():
        assert r.hgetall(key) == fields, key
    with server.client(protocol=2) as plain:
        got = plain.execute_command("FT.SEARCH", "keep", "*=>[KNN 20 @v $q]", "PARAMS", "2",
                                    "q", vec(0, 0), "NOCONTENT", "LIMIT", "0", "20", "DIALECT", "2")
    assert got[0] == 20 and sorted(got[1:]) == sorted(k.encode() for k in sentinels)
    # Every shard group still takes writes (a group whose apply had failed would not).
    for i in range(30):
        assert r.set(f"after:{i}", i) is True
    assert r.mget([f"after:{i}" for i in range(30)]) == [str(i).encode() for i in range(30)]
    r.close()

