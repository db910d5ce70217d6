"""`shoal dev --busy-poll-us`: a connection that polls for its next request answers
exactly what a parked one does, pipelined or not, and spinning connections do not keep
other clients from being served."""

import threading

import numpy as np
import pytest

from conftest import Server, wait_ready

DIM = 8


@pytest.fixture(scope="module")
def polling(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("busy"), "--busy-poll-us", "2000").start()
    yield s
    s.stop()


def test_answers_match_brute_force_one_at_a_time_and_pipelined(polling):
    r = polling.client(protocol=2)
    r.flushall()
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((300, DIM)).astype(np.float32)
    r.execute_command("FT.CREATE", "bp", "ON", "HASH", "PREFIX", "1", "bp:", "SCHEMA",
                      "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", DIM,
                      "DISTANCE_METRIC", "L2")
    pipe = r.pipeline(transaction=False)
    for i, v in enumerate(vecs):
        pipe.hset(f"bp:{i}", mapping={"v": v.tobytes()})
    assert pipe.execute() == [1] * len(vecs)
    wait_ready(r, "bp")
    for q in vecs[:40]:
        reply = r.execute_command("FT.SEARCH", "bp", "*=>[KNN 3 @v $q]", "PARAMS", "2",
                                  "q", q.tobytes(), "NOCONTENT", "DIALECT", "2")
        got = [int(k.split(b":")[1]) for k in reply[1:]]
        want = np.argsort(((vecs - q) ** 2).sum(axis=1))[:3].tolist()
        assert got == want
    assert r.dbsize() == len(vecs)
    r.close()


def test_spinning_connections_do_not_starve_others(polling):
    # More busy clients than the server has worker threads, each one round trip at a
    # time: every one of them must finish with every reply in order.
    errors = []

    def worker(n):
        try:
            c = polling.client(protocol=2)
            for i in range(300):
                assert c.set(f"bp:w{n}:{i}", i)
                assert c.get(f"bp:w{n}:{i}") == str(i).encode()
            c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a client was starved"
    assert errors == []


def test_a_client_closing_while_polled_leaves_the_server_serving(polling):
    for _ in range(20):
        c = polling.client(protocol=2)
        assert c.ping()
        c.close()
    r = polling.client(protocol=2)
    assert r.ping()
    assert polling.alive()
