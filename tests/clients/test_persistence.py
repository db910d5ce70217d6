"""`shoal dev` across restarts. The embedded cluster (the default) keeps every
acknowledged write in its nodes' Raft logs, through a clean stop or a SIGKILL;
`--standalone` keeps what its last snapshot holds (one on shutdown, one every
--snapshot-interval), so a crash loses the writes after it."""

import signal
import time

import numpy as np
import pytest
from redis.commands.search.query import Query

from conftest import Server

MODES = {"cluster": (), "standalone": ("--standalone",)}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("mode", MODES)
def test_clean_restart_keeps_keys_and_indexes(tmp_path, mode, sig):
    """Both signals a user sends (a service manager's SIGTERM, Ctrl-C's SIGINT) stop
    the server cleanly: exit code 0, and with `--standalone` the snapshot on shutdown
    holds every write."""
    server = Server(tmp_path, *MODES[mode]).start()
    r = server.client()
    r.execute_command("FT.CREATE", "idx", "PREFIX", "1", "d:", "SCHEMA",
                      "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "2",
                      "DISTANCE_METRIC", "L2", "t", "TAG")
    for i in range(300):
        r.hset(f"d:{i}", mapping={"v": np.array([i, 0], dtype=np.float32).tobytes(),
                                  "t": "even" if i % 2 == 0 else "odd"})
    r.set("plain", "value")
    r.expire("plain", 3600)
    r.execute_command("JSON.SET", "j", "$", '{"a": [1, 2]}')
    assert server.stop(sig) == 0

    server.start()
    r = server.client()
    assert r.dbsize() == 302
    assert r.get("plain") == b"value"
    assert 0 < r.ttl("plain") <= 3600
    assert r.execute_command("JSON.GET", "j", "$.a") == b"[[1,2]]"
    info = r.ft("idx").info()
    assert int(info["num_docs"]) == 300
    q = Query("@t:{odd}=>[KNN 3 @v $q]").dialect(2).no_content()
    res = r.ft("idx").search(q, query_params={"q": np.array([100, 0], dtype=np.float32).tobytes()})
    # 99 and 101 are nearest; 97 and 103 tie for third.
    ids = [d.id for d in res.docs]
    assert set(ids[:2]) == {"d:99", "d:101"} and ids[2] in ("d:97", "d:103")
    # Writes after a restart go on as before.
    r.hset("d:1000", mapping={"v": np.array([100.5, 0], dtype=np.float32).tobytes(), "t": "odd"})
    res = r.ft("idx").search(q, query_params={"q": np.array([100.5, 0], dtype=np.float32).tobytes()})
    assert res.docs[0].id == "d:1000"
    server.stop()


def test_periodic_snapshot_survives_a_crash(tmp_path):
    import subprocess
    from conftest import binary, free_port
    port = free_port()
    proc = subprocess.Popen([binary(), "dev", "--standalone", "--resp", f"127.0.0.1:{port}",
                             "--api", f"127.0.0.1:{free_port()}",
                             "--data-dir", str(tmp_path), "--snapshot-interval", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert "listening" in proc.stdout.readline()
    import redis
    r = redis.Redis(port=port)
    r.set("before", "1")
    deadline = time.time() + 10
    while not (tmp_path / "shoal.snapshot").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # one more interval, so the snapshot holds the write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    server = Server(tmp_path, "--standalone").start()
    assert server.client().get("before") == b"1"
    server.stop()


def test_the_embedded_cluster_loses_no_acknowledged_write_to_sigkill(tmp_path):
    server = Server(tmp_path).start()
    r = server.client()
    r.execute_command("FT.CREATE", "idx", "PREFIX", "1", "d:", "SCHEMA",
                      "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "2",
                      "DISTANCE_METRIC", "L2")
    pipe = r.pipeline(transaction=False)
    for i in range(500):
        pipe.hset(f"d:{i}", mapping={"v": np.array([i, 1], dtype=np.float32).tobytes()})
    pipe.execute()
    r.set("last", "acknowledged")
    # No snapshot, no clean stop: the acknowledged writes are in the nodes' logs.
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert not (tmp_path / "shoal.snapshot").exists()
    server.start()
    r = server.client()
    assert r.get("last") == b"acknowledged"
    assert r.dbsize() == 501
    assert int(r.ft("idx").info()["num_docs"]) == 500
    q = Query("*=>[KNN 1 @v $q]").dialect(2).no_content()
    res = r.ft("idx").search(q, query_params={"q": np.array([499, 1], dtype=np.float32).tobytes()})
    assert [d.id for d in res.docs] == ["d:499"]
    server.stop()
