"""The connection, server and keyspace commands of SPEC.md that the seed walkthroughs do
not reach: CONFIG GET/SET (and what SET changes), CLIENT and HELLO names, QUIT, SELECT,
ECHO, INFO's default and `everything`, the hash commands besides HSET/HGET, TYPE,
PERSIST, FLUSHDB, a JSONPath array index; FT.CREATE's LANGUAGE, INITIAL_CAP and
BLOCK_SIZE; FT.SEARCH with DIALECT 3 and 4, `k` as a parameter and the default score
name; and the wire form of the reference errors (what redis-py's parsing would hide).

Every test asserts values, so a command that answers but does the wrong thing fails.
"""

import socket
import time

import numpy as np
import pytest
import redis

from conftest import wait_for, wait_ready
from test_malformed import resp


def vec(*xs):
    return np.array(xs, dtype=np.float32).tobytes()


def text(value):
    return value.decode() if isinstance(value, bytes) else value


def raw(server, payload: bytes, until: bytes = b"\r\n", timeout=5.0) -> bytes:
    """Sends `payload` on a fresh socket and reads until `until` has been seen."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(payload)
        got = b""
        while until not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


# --- CONFIG ----------------------------------------------------------------------------


def test_config_get_and_set_report_and_change_the_live_values(server, r):
    before = {text(k): text(v) for k, v in r.config_get("*").items()}
    assert before["maxmemory"] == "0" and before["maxmemory-policy"] == "noeviction"
    assert before["databases"] == "1" and before["timeout"] == "0"
    # `shoal dev` is a cluster: an argument must fit one Raft message (16 MiB).
    assert before["proto-max-bulk-len"] == str(16 << 20)

    # A client's usual set-up: a fixed parameter set to its own value goes through.
    assert r.config_set("save", "") is True
    assert r.config_set("appendonly", "no") is True

    with pytest.raises(redis.ResponseError) as e:
        r.config_set("maxmemory", "100mb")
    assert str(e.value) == ("CONFIG SET failed (possibly related to argument 'maxmemory') - "
                            "can't set immutable config")
    with pytest.raises(redis.ResponseError) as e:
        r.config_set("no-such-parameter", "1")
    assert str(e.value) == "Unknown option or number of arguments for CONFIG SET - 'no-such-parameter'"
    with pytest.raises(redis.ResponseError) as e:
        r.config_set("proto-max-bulk-len", "1gb")
    assert str(e.value) == ("CONFIG SET failed (possibly related to argument 'proto-max-bulk-len') - "
                            "argument must be between 1048576 and 16777216 inclusive")
    # Several pairs are all applied or none: the bad second pair leaves timeout alone.
    with pytest.raises(redis.ResponseError):
        r.execute_command("CONFIG", "SET", "timeout", "9", "proto-max-bulk-len", "x")
    assert text(r.config_get("timeout")["timeout"]) == "0"
    assert r.ping()


def refused_at_its_header(server, declared: int) -> bytes:
    """What the server answers a SET whose value declares `declared` bytes, sent as the
    header alone: a refusal comes before any of the body (which would then meet a
    closed socket)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n" % declared)
        got = b""
        try:
            while b"\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except socket.timeout:
            pass  # accepted: the server waits for the body
        return got


def test_config_set_proto_max_bulk_len_bounds_the_next_requests(server, r):
    assert r.config_set("proto-max-bulk-len", "1mb") is True
    try:
        assert text(r.config_get("proto-max-bulk-len")["proto-max-bulk-len"]) == str(1 << 20)
        assert refused_at_its_header(server, (1 << 20) + 10) == b"-ERR Protocol error: invalid bulk length\r\n"
        # Up to the limit is still taken.
        assert r.set("small", b"x" * (1 << 20)) is True
        # In one pipeline: the SET after the CONFIG SET meets the new limit.
        pipe = r.pipeline(transaction=False)
        pipe.config_set("proto-max-bulk-len", "2mb")
        pipe.set("bigger", b"y" * ((1 << 20) + 100))
        assert pipe.execute() == [True, True]
    finally:
        with server.client() as fresh:
            assert fresh.config_set("proto-max-bulk-len", str(16 << 20)) is True
    with server.client() as fresh:
        assert fresh.set("big", b"x" * (4 << 20)) is True


def idle_socket(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    s.sendall(resp("PING"))
    assert s.recv(100) == b"+PONG\r\n"
    return s


def closed_after(s) -> float:
    """Seconds until the server closes `s` (the socket's timeout if it never does)."""
    started = time.monotonic()
    assert s.recv(100) == b"", "the connection got bytes instead of being closed"
    return time.monotonic() - started


def test_config_set_timeout_closes_idle_connections_only(server, r):
    assert r.config_set("timeout", 2) is True
    try:
        with idle_socket(server) as idle, server.client(socket_timeout=15) as busy:
            started = time.monotonic()
            # A connection that keeps talking stays open past the timeout.
            while time.monotonic() - started < 4.5:
                assert busy.ping()
                time.sleep(0.2)
            # Idle for more than 2 s, in whole seconds of a once-a-second sweep: closed
            # between 2 and 4 s after its last request (a loaded machine may run the
            # sweep late: up to 3 s more allowed).
            assert closed_after(idle) < 3.0
            assert busy.ping()
    finally:
        with server.client() as fresh:
            assert fresh.config_set("timeout", 0) is True


def test_config_set_timeout_reaches_connections_already_waiting(server, r):
    with idle_socket(server) as idle:
        time.sleep(1.5)  # waiting with no timeout set
        assert r.config_set("timeout", 1) is True
        try:
            # Already idle for longer: closed at one of the next sweeps.
            assert closed_after(idle) < 5.0
        finally:
            with server.client() as fresh:
                assert fresh.config_set("timeout", 0) is True
    # And with the timeout back at 0, an idle connection stays.
    with idle_socket(server) as idle:
        time.sleep(2.5)
        idle.sendall(resp("PING"))
        assert idle.recv(100) == b"+PONG\r\n"


# --- the connection ----------------------------------------------------------------------


def test_client_names_ids_and_info(server):
    a, b = server.client(), server.client()
    assert a.client_getname() is None
    assert a.client_setname("alpha") is True
    assert text(a.client_getname()) == "alpha"
    ida, idb = a.client_id(), b.client_id()
    assert isinstance(ida, int) and ida != idb
    info = a.client_info()
    assert int(info["id"]) == ida and text(info["name"]) == "alpha"
    # HELLO's SETNAME names the connection too, and HELLO answers its server map.
    hello = b.execute_command("HELLO", "3", "SETNAME", "beta")
    hello = {text(k): v for k, v in hello.items()}
    assert hello["proto"] == 3 and text(hello["server"]) == "redis"
    assert text(b.client_getname()) == "beta"
    a.close(), b.close()


def test_select_0_echo_and_quit(server, r):
    assert r.execute_command("SELECT", "0") in (b"OK", "OK", True)
    assert r.echo("hello there") in (b"hello there", "hello there")
    got = raw(server, resp("PING") + resp("QUIT") + resp("PING"), until=b"\x00")
    # QUIT answers, then closes: the PING after it is never answered.
    assert got == b"+PONG\r\n+OK\r\n"


def test_info_with_no_section_and_everything(r):
    plain = r.info()
    assert "redis_version" in plain and "connected_clients" in plain
    assert "search_number_of_indexes" in plain
    everything = r.info("everything")
    assert set(plain) <= set(everything)
    assert "used_memory" in everything


# --- keys and hashes -----------------------------------------------------------------


def test_hash_commands_besides_hset_and_hget(r):
    assert r.execute_command("HMSET", "h", "a", "1", "b", "2.5", "c", "x") in (b"OK", "OK", True)
    assert r.hmget("h", "a", "nope", "c") == [b"1", None, b"x"]
    assert r.hlen("h") == 3
    assert r.hexists("h", "b") is True and r.hexists("h", "z") is False
    assert sorted(r.hkeys("h")) == [b"a", b"b", b"c"]
    assert sorted(r.hvals("h")) == [b"1", b"2.5", b"x"]
    assert r.hincrby("h", "a", 41) == 42
    assert r.hincrby("h", "new", -3) == -3
    assert r.hincrbyfloat("h", "b", 0.25) == pytest.approx(2.75)
    assert r.hget("h", "b") == b"2.75"
    with pytest.raises(redis.ResponseError) as e:
        r.hincrbyfloat("h", "c", 1)
    assert "not a valid float" in str(e.value) or "not a float" in str(e.value)
    assert r.hlen("missing") == 0 and r.hkeys("missing") == []


def test_type_persist_and_flushdb(r):
    r.set("s", "v")
    r.hset("h", "f", "v")
    r.execute_command("JSON.SET", "j", "$", '{"a": 1}')
    assert [text(r.type(k)) for k in ("s", "h", "j", "none")] == ["string", "hash", "ReJSON-RL", "none"]
    r.expire("s", 100)
    assert 0 < r.ttl("s") <= 100
    assert r.persist("s") is True
    assert r.ttl("s") == -1
    assert r.persist("s") is False
    assert r.flushdb() is True
    assert r.dbsize() == 0


def test_keys_and_scan_take_redis_globs(r):
    for key in ("user:1", "user:2", "user:x", "user:10", "u*er", "other", b"bin:\xff"):
        r.set(key, "v")
    got = lambda pattern: sorted(r.keys(pattern))  # noqa: E731
    assert got("user:?") == [b"user:1", b"user:2", b"user:x"]
    assert got("user:[0-9]") == [b"user:1", b"user:2"]
    assert got("user:[^0-9]") == [b"user:x"]
    assert got("user:[0-9]*") == [b"user:1", b"user:10", b"user:2"]
    assert got("u\\*er") == [b"u*er"]
    assert got("bin:?") == [b"bin:\xff"]
    assert got("[ou][st]*") == [b"other", b"user:1", b"user:10", b"user:2", b"user:x"]
    assert sorted(r.scan_iter(match="user:[12]*", count=100)) == [b"user:1", b"user:10", b"user:2"]
    assert sorted(r.scan_iter(match="*[^a-z0-9:*]*", count=100)) == [b"bin:\xff"]
    # A bare `*` is every key, the empty name included (as Redis's KEYS and SCAN take it);
    # as a glob, `**` is not.
    r.set("", "empty")
    assert b"" in r.keys("*") and b"" in set(r.scan_iter(match="*", count=100))
    assert b"" not in r.keys("**")


def test_jsonpath_array_index(r):
    r.execute_command("JSON.SET", "doc", "$", '{"arr": [10, 20, 30], "o": {"list": [{"v": 1}]}}')
    assert r.execute_command("JSON.GET", "doc", "$.arr[0]") in (b"[10]", "[10]")
    assert r.execute_command("JSON.GET", "doc", "$.arr[2]") in (b"[30]", "[30]")
    assert r.execute_command("JSON.GET", "doc", "$.o.list[0].v") in (b"[1]", "[1]")
    r.execute_command("JSON.SET", "doc", "$.arr[1]", "99")
    assert r.execute_command("JSON.GET", "doc", "$.arr") in (b"[[10,99,30]]", "[[10,99,30]]")
    assert r.execute_command("JSON.NUMINCRBY", "doc", "$.arr[0]", "5") in (b"[15]", "[15]")


# --- FT.CREATE options and FT.SEARCH forms ------------------------------------------


def test_language_initial_cap_and_block_size_are_taken_and_reported(r):
    assert r.execute_command(
        "FT.CREATE", "f", "ON", "HASH", "PREFIX", "1", "f:", "LANGUAGE", "ENGLISH", "SCHEMA",
        "v", "VECTOR", "FLAT", "10", "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "L2",
        "INITIAL_CAP", "500", "BLOCK_SIZE", "64") in (b"OK", "OK", True)
    assert r.execute_command(
        "FT.CREATE", "h", "ON", "HASH", "PREFIX", "1", "h:", "SCHEMA",
        "v", "VECTOR", "HNSW", "8", "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "L2",
        "INITIAL_CAP", "700") in (b"OK", "OK", True)
    flat = wait_ready(r, "f")
    hnsw = wait_ready(r, "h")

    def vector_index(info):
        attr = info["attributes"][0]
        attr = attr if isinstance(attr, dict) else dict(zip(attr[::2], attr[1::2]))
        attr = {text(k): v for k, v in attr.items()}
        index = attr["index"]
        index = index if isinstance(index, dict) else dict(zip(index[::2], index[1::2]))
        return {text(k): v for k, v in index.items()}

    f, h = vector_index(flat), vector_index(hnsw)
    assert int(f["capacity"]) >= 500 and int(h["capacity"]) >= 700
    algorithm = f["algorithm"]
    algorithm = algorithm if isinstance(algorithm, dict) else dict(zip(algorithm[::2], algorithm[1::2]))
    algorithm = {text(k): text(v) if isinstance(v, bytes) else v for k, v in algorithm.items()}
    assert algorithm["name"] == "FLAT" and int(algorithm["block_size"]) == 64
    # The index works at that size.
    r.hset("f:1", "v", vec(1, 1))
    wait_for(lambda: r.ft("f").search("*").total == 1)


def knn_keys(reply):
    """The keys of a RESP2 FT.SEARCH reply, in order."""
    return [text(k) for k in reply[1::2]]


def knn_fields(reply):
    return [{text(k): v for k, v in zip(f[::2], f[1::2])} for f in reply[2::2]]


@pytest.fixture
def points(server, r):
    """An index of ten points on a line, and a RESP2 client (replies as flat arrays)."""
    r.close()
    r = server.client(protocol=2)
    r.execute_command("FT.CREATE", "p", "PREFIX", "1", "p:", "SCHEMA",
                      "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "L2")
    for i in range(10):
        r.hset(f"p:{i}", "v", vec(i, 0))
    wait_ready(r, "p")
    wait_for(lambda: len(knn_keys(r.execute_command(
        "FT.SEARCH", "p", "*=>[KNN 10 @v $q]", "PARAMS", "2", "q", vec(0, 0), "DIALECT", "2"))) == 10)
    return r


@pytest.mark.parametrize("dialect", ["2", "3", "4"])
def test_dialects_2_to_4_answer_alike(points, dialect):
    reply = points.execute_command("FT.SEARCH", "p", "*=>[KNN 3 @v $q]", "PARAMS", "2", "q",
                                   vec(3.1, 0), "DIALECT", dialect)
    assert knn_keys(reply) == ["p:3", "p:4", "p:2"]


def test_k_as_a_parameter_and_the_default_score_name(points):
    reply = points.execute_command("FT.SEARCH", "p", "*=>[KNN $k @v $q]", "PARAMS", "4",
                                   "k", "2", "q", vec(7.2, 0), "DIALECT", "2")
    assert knn_keys(reply) == ["p:7", "p:8"]
    fields = knn_fields(reply)
    # Without AS, the distance is `__<field>_score`, first among the fields, and the
    # document's own fields follow.
    assert list(fields[0]) == ["__v_score", "v"]
    assert fields[0]["v"] == vec(7, 0)
    assert float(fields[0]["__v_score"]) == pytest.approx(0.04, abs=1e-6)
    assert float(fields[1]["__v_score"]) == pytest.approx(0.64, abs=1e-5)


# --- the reference errors on the wire -----------------------------------------------


@pytest.mark.parametrize("args,want", [
    (("FT.SEARCH", "nope", "*"), b"-Index with name 'nope' not found in database 0\r\n"),
    (("FT.CREATE", "i2", "BOGUS", "SCHEMA", "a", "NUMERIC"),
     b"-Unexpected parameter `BOGUS`, expecting `SCHEMA`\r\n"),
    (("FT.SEARCH", "x", "*", "TIMEOUT", "0"),
     b"-TIMEOUT must be a positive integer greater than 0 and cannot exceed 60000.\r\n"),
    (("FT.SEARCH", "x", "*", "DIALECT", "1"),
     b"-DIALECT requires a non negative integer >=2 and <= 4\r\n"),
    (("GET",), b"-ERR wrong number of arguments for 'get' command\r\n"),
    (("CONFIG", "SET", "nope", "1"),
     b"-ERR Unknown option or number of arguments for CONFIG SET - 'nope'\r\n"),
], ids=["not-found", "create-syntax", "timeout", "dialect", "arity", "config-set"])
def test_errors_go_out_as_valkey_search_sends_them(server, args, want):
    # A module's error text is its own first word onward (no `ERR ` added); Redis's
    # own errors keep their `ERR`. redis-py strips `ERR ` either way, so the bytes are
    # checked here.
    assert raw(server, resp(*args)) == want
