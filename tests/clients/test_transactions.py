"""MULTI/EXEC/DISCARD/WATCH as redis-py drives them."""

import pytest
import redis


def test_watch_aborts_when_a_watched_key_changes(server, r):
    other = server.client()
    r.set("w", "0")
    with r.pipeline() as pipe:
        pipe.watch("w")
        pipe.multi()
        pipe.set("w", "mine")
        other.set("w", "theirs")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.get("w") == b"theirs"


def test_watch_lets_an_untouched_transaction_through(server, r):
    r.set("w", "0")
    with r.pipeline() as pipe:
        pipe.watch("w", "absent")
        pipe.multi()
        pipe.incr("w")
        pipe.get("w")
        assert pipe.execute() == [1, b"1"]


def test_exec_is_atomic_and_execabort_applies_nothing(r):
    with r.pipeline() as pipe:
        pipe.set("a", "1")
        pipe.hset("h", "f", "v")
        pipe.get("a")
        assert pipe.execute() == [True, 1, b"1"]
    conn = r.connection_pool.get_connection()
    try:
        conn.send_command("MULTI")
        assert conn.read_response() == b"OK"
        conn.send_command("SET", "x", "1")
        assert conn.read_response() == b"QUEUED"
        conn.send_command("GET")  # wrong arity: the transaction is doomed
        with pytest.raises(redis.ResponseError):
            conn.read_response()
        conn.send_command("EXEC")
        with pytest.raises(redis.ResponseError, match="Transaction discarded"):
            conn.read_response()
    finally:
        r.connection_pool.release(conn)
    assert r.exists("x") == 0


def test_discard(r):
    with r.pipeline() as pipe:
        pipe.multi()
        pipe.set("d", "1")
        pipe.reset()
    assert r.exists("d") == 0
