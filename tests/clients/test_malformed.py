"""A table of malformed inputs: each gets an error or a closed connection, the server
keeps serving other clients, and nothing acknowledged is lost."""

import socket

import numpy as np
import pytest


def resp(*args) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


BLOB = np.array([1, 2], dtype=np.float32).tobytes()


def search(query, *extra):
    return resp("FT.SEARCH", "idx", query, *extra)


def knn(query, blob=BLOB):
    return resp("FT.SEARCH", "idx", query, "PARAMS", "2", "q", blob, "DIALECT", "2")


ERROR, CLOSED = "error", "closed"

CASES = [
    # wrong arity
    ("get no key", resp("GET"), ERROR),
    ("set no value", resp("SET", "k"), ERROR),
    ("hset odd", resp("HSET", "k", "f"), ERROR),
    ("hset odd pairs", resp("HSET", "k", "f", "v", "g"), ERROR),
    ("hget one", resp("HGET", "k"), ERROR),
    ("ft.create bare", resp("FT.CREATE"), ERROR),
    ("ft.search no query", resp("FT.SEARCH", "idx"), ERROR),
    ("ft.info extra", resp("FT.INFO", "idx", "x"), ERROR),
    ("expire no time", resp("EXPIRE", "k"), ERROR),
    ("mget none", resp("MGET"), ERROR),
    ("json.set short", resp("JSON.SET", "k", "$"), ERROR),
    ("echo none", resp("ECHO"), ERROR),
    # bad numbers
    ("expire nan", resp("EXPIRE", "k", "abc"), ERROR),
    ("set ex text", resp("SET", "k", "v", "EX", "abc"), ERROR),
    ("set ex negative", resp("SET", "k", "v", "EX", "-1"), ERROR),
    ("hincrby text", resp("HINCRBY", "h", "f", "abc"), ERROR),
    ("incrby float", resp("INCRBY", "k", "1.5"), ERROR),
    ("scan cursor", resp("SCAN", "abc"), ERROR),
    ("select 5", resp("SELECT", "5"), ERROR),
    ("limit text", search("*", "LIMIT", "a", "b"), ERROR),
    ("limit huge", search("*", "LIMIT", "0", "99999"), ERROR),
    ("timeout text", search("*", "TIMEOUT", "x"), ERROR),
    ("dialect 9", search("*", "DIALECT", "9"), ERROR),
    ("dim text", resp("FT.CREATE", "i2", "SCHEMA", "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "x", "DISTANCE_METRIC", "L2"), ERROR),
    ("dim zero", resp("FT.CREATE", "i2", "SCHEMA", "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "0", "DISTANCE_METRIC", "L2"), ERROR),
    ("dim huge", resp("FT.CREATE", "i2", "SCHEMA", "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "99999", "DISTANCE_METRIC", "L2"), ERROR),
    ("m huge", resp("FT.CREATE", "i2", "SCHEMA", "v", "VECTOR", "HNSW", "8", "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "L2", "M", "99999"), ERROR),
    ("score text", resp("FT.CREATE", "i2", "SCORE", "abc", "SCHEMA", "a", "NUMERIC"), ERROR),
    ("knn k zero", knn("*=>[KNN 0 @v $q]"), ERROR),
    ("knn k text", knn("*=>[KNN x @v $q]"), ERROR),
    # wrong vector sizes
    ("blob 3 bytes", knn("*=>[KNN 5 @v $q]", b"abc"), ERROR),
    ("blob 12 bytes", knn("*=>[KNN 5 @v $q]", b"x" * 12), ERROR),
    ("blob empty", knn("*=>[KNN 5 @v $q]", b""), ERROR),
    ("range radius text", resp("FT.SEARCH", "idx", "@v:[VECTOR_RANGE $r $q]", "PARAMS", "4", "r", "abc", "q", BLOB, "DIALECT", "2"), ERROR),
    # unknown fields and indexes
    ("unknown index", resp("FT.SEARCH", "nope", "*"), ERROR),
    ("unknown index info", resp("FT.INFO", "nope"), ERROR),
    ("unknown index drop", resp("FT.DROPINDEX", "nope"), ERROR),
    ("unknown tag field", search("@nope:{a}"), ERROR),
    ("unknown knn field", knn("*=>[KNN 5 @nope $q]"), ERROR),
    ("numeric on tag", search("@t:[1 2]"), ERROR),
    ("return count", search("*", "RETURN", "5", "a"), ERROR),
    ("unknown option", search("*", "BOGUS"), ERROR),
    # malformed queries
    ("open paren", search("("), ERROR),
    ("close paren", search(")"), ERROR),
    ("open brace", search("@t:{"), ERROR),
    ("unclosed brace", search("@t:{a"), ERROR),
    ("unclosed range", search("@n:[1"), ERROR),
    ("range words", search("@n:[a b]"), ERROR),
    ("empty field", search("@:{a}"), ERROR),
    ("lone minus", search("-"), ERROR),
    ("lone bar", search("|"), ERROR),
    ("trailing bar", search("@t:{a}|"), ERROR),
    ("unclosed quote", search('"abc'), ERROR),
    ("deep nesting", search("(" * 5000 + "*" + ")" * 5000), ERROR),
    ("knn truncated", search("*=>[KNN"), ERROR),
    ("knn no blob", knn("*=>[KNN 5 @v]"), ERROR),
    ("vector range bare", search("@v:[VECTOR_RANGE]"), ERROR),
    # protocol level
    ("huge bulk length", b"*1\r\n$99999999999\r\nab", CLOSED),
    ("huge multibulk", b"*99999999999\r\n", CLOSED),
    ("integer in request", b"*2\r\n$3\r\nGET\r\n:5\r\n", CLOSED),
    ("negative bulk", b"*1\r\n$-7\r\n", CLOSED),
    ("bulk length text", b"*1\r\n$abc\r\n", CLOSED),
    ("binary garbage", b"\x00\xff\xfe\xfd garbage \x01\r\n", ERROR),
    ("unbalanced inline quote", b'SET "k v\r\n', CLOSED),
    ("nested arrays", b"*1\r\n" * 100_000, CLOSED),
    ("crlf in an echoed name", resp("FT.INFO", "x\r\n+OK"), ERROR),
]


def exchange(port, payload, timeout=5.0, until_closed=False):
    """Sends `payload`; returns ("error"|"ok"|"closed", first bytes).

    With `until_closed`, a reply line is not the end: the connection must then be
    closed by the server within two seconds to count as "closed" (a protocol error is
    answered, then the server hangs up); one left open is what its first line says.

    A server that closes while the client is still sending (a 400 KB payload refused
    after its first bytes) makes the kernel answer the rest with a reset: the client
    then sees ECONNRESET or EPIPE instead of an orderly end, and that too is "closed".
    """
    try:
        return _exchange(port, payload, timeout, until_closed)
    except (ConnectionResetError, BrokenPipeError):
        return CLOSED, b""


def _exchange(port, payload, timeout, until_closed):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return (CLOSED if not data else ERROR if data.startswith(b"-") else "ok"), data
            data += chunk
        kind = ERROR if data.startswith(b"-") else "ok"
        if until_closed:
            s.settimeout(2.0)
            try:
                while True:
                    rest = s.recv(65536)
                    if not rest:
                        return CLOSED, data
                    data += rest
            except socket.timeout:
                pass
        return kind, data


@pytest.fixture(scope="module")
def prepared(server):
    r = server.client()
    r.flushall()
    for name in r.execute_command("FT._LIST"):
        r.execute_command("FT.DROPINDEX", name)
    r.execute_command("FT.CREATE", "idx", "PREFIX", "1", "d:", "SCHEMA", "v", "VECTOR", "HNSW", "6",
                      "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "L2", "t", "TAG", "n", "NUMERIC")
    for i in range(100):
        r.hset(f"d:{i}", mapping={"v": np.array([i, i], dtype=np.float32).tobytes(), "t": "a", "n": i})
    return r


@pytest.mark.parametrize("name,payload,want", CASES, ids=[c[0] for c in CASES])
def test_malformed_input(server, prepared, name, payload, want):
    kind, data = exchange(server.port, payload, until_closed=want == CLOSED)
    if want == CLOSED:
        # An error line may come first; then the server must hang up.
        assert kind == CLOSED, (kind, data)
        assert data == b"" or data.startswith(b"-ERR Protocol error"), data
    else:
        assert kind == ERROR, (kind, data)
    # Everyone else is still served and acknowledged data is intact.
    assert server.alive()
    assert prepared.ping()
    assert prepared.dbsize() == 100
    assert prepared.hget("d:42", "n") == b"42"


def test_enough_cases():
    assert len(CASES) >= 50


def test_client_closing_mid_frame_applies_nothing(server, prepared):
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nval")
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf")
        s.shutdown(socket.SHUT_WR)
    assert prepared.exists("half") == 0
    assert prepared.dbsize() == 100


def test_reply_lines_cannot_be_injected(server, prepared):
    kind, data = exchange(server.port, resp("FT.INFO", "x\r\n+OK") + resp("PING"))
    assert kind == ERROR
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(resp("FT.INFO", "x\r\n+OK") + resp("PING"))
        data = b""
        while data.count(b"\r\n") < 2:
            data += s.recv(4096)
    assert data.split(b"\r\n")[:2] == [b"-Index with name 'x  +OK' not found in database 0", b"+PONG"]


def test_empty_ranges_and_reset_in_multi(server, prepared):
    from redis.commands.search.query import Query
    assert prepared.ft("idx").search(Query("@n:[(5 (5]").dialect(2)).total == 0
    assert prepared.ft("idx").search(Query("@n:[6 5]").dialect(2)).total == 0
    assert prepared.ft("idx").search(Query("@n:[5 5]").dialect(2)).total == 1
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(resp("MULTI") + resp("SET", "k", "v") + resp("RESET") + resp("GET", "nokey"))
        data = b""
        while data.count(b"\r\n") < 4:
            data += s.recv(4096)
    assert data == b"+OK\r\n+QUEUED\r\n+RESET\r\n$-1\r\n"


def test_wrong_size_vector_is_acknowledged_and_counted(server, prepared):
    before = int(prepared.ft("idx").info()["hash_indexing_failures"])
    prepared.hset("x:1", "v", b"abc")  # not covered by the index: no failure
    prepared.hset("d:bad", mapping={"v": b"abc", "n": 1})
    info = prepared.ft("idx").info()
    assert int(info["hash_indexing_failures"]) == before + 1
    prepared.delete("d:bad", "x:1")
