"""Online resharding (`RESHARD ADD-GROUP`): a fourth shard group added to a running
3-node cluster while clients write and search through every node. Nothing
acknowledged is lost, no search counts a document twice or sees more documents than
were written, and at the end every key lives on the group the new ring gives it only.

Real `shoal node` processes on loopback, redis-py as the client.
"""

import signal
import struct
import threading
import time

import redis

from conftest import ClusterServer, wait_for

GROUPS = 3


def vec(i):
    return struct.pack("<4f", float(i % 97), float(i % 89), float(i % 83), 1.0)


def status(client):
    raw = client.execute_command("RESHARD", "STATUS")
    return {raw[i].decode(): raw[i + 1] for i in range(0, len(raw), 2)}


def wait_idle(client):
    def idle():
        try:
            return status(client)["phase"] == b"none" or None
        except redis.ResponseError:  # the map's shape is written a moment after start
            return None
    wait_for(idle, what="RESHARD STATUS before any reshard")


def local_keys(port):
    info = redis.Redis(host="127.0.0.1", port=port, protocol=2).info("keyspace")
    return info.get("db0", {}).get("keys", 0)


def preload(client, acked, n):
    """`n` documents `doc:p:<i>` through one pipeline, noted as acknowledged: enough
    that each source's copy takes several pages."""
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.hset(f"doc:p:{i}", mapping={"v": vec(i), "n": i})
    assert all(x == 2 for x in pipe.execute())
    acked.update({f"doc:p:{i}": i for i in range(n)})


def create_index(client):
    assert client.execute_command(
        "FT.CREATE", "idx", "ON", "HASH", "PREFIX", "1", "doc:", "SCHEMA",
        "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "4",
        "DISTANCE_METRIC", "L2", "n", "NUMERIC") == b"OK"


def paced_cluster(tmp_path):
    """Three nodes whose coordinator pauses 300 ms after each step, so that each phase
    lasts long enough to act in it; an index and 3,000 documents. Returns the cluster,
    a client of node 1 and the documents (key -> n)."""
    c = ClusterServer(tmp_path, nodes=3, groups=GROUPS,
                      extra=["--replication-factor", "3", "--reshard-pace-ms", "300"]).start()
    try:
        client = c.client(protocol=2)
        create_index(client)
        acked = {}
        preload(client, acked, 3000)
        wait_idle(client)
    except BaseException:
        c.stop()
        raise
    return c, client, acked


def test_a_group_added_while_writing_and_searching_takes_its_keys(tmp_path):
    c = ClusterServer(tmp_path, nodes=3, groups=GROUPS,
                      extra=["--replication-factor", "3"]).start()
    stop = threading.Event()
    issued = [0]  # writes sent so far (searches may see at most that many documents)
    issuing = threading.Lock()
    acked, deleted, failed, violations = {}, set(), [], []

    def write(t, port):
        w = redis.Redis(host="127.0.0.1", port=port, protocol=2, socket_timeout=10)
        i = 0
        while not stop.is_set():
            key = f"doc:{t}:{i}"
            with issuing:
                issued[0] += 1
            try:
                w.hset(key, mapping={"v": vec(i), "n": i})
                if i % 7 == 0:
                    w.pexpire(key, 600_000)
                acked[key] = i
            except redis.RedisError as e:
                failed.append((key, repr(e)))
            if i % 11 == 10:  # an earlier key of this writer deleted
                gone = f"doc:{t}:{i - 5}"
                try:
                    w.delete(gone)
                    deleted.add(gone)
                except redis.RedisError as e:  # gone or not: checked neither way
                    failed.append((gone, repr(e)))
            i += 1
            time.sleep(0.002)

    def search(port):
        s = redis.Redis(host="127.0.0.1", port=port, protocol=2, socket_timeout=10)
        while not stop.is_set():
            try:
                total = s.execute_command("FT.SEARCH", "idx", "*", "LIMIT", "0", "0")[0]
                # Every document it found was sent before the search's answer came back.
                ceiling = issued[0]
                if total > ceiling:
                    violations.append(f"{total} documents found, {ceiling} written")
                hits = s.execute_command(
                    "FT.SEARCH", "idx", "*=>[KNN 2 @v $q]", "PARAMS", "2", "q", vec(5),
                    "NOCONTENT", "DIALECT", "2")
                if len(set(hits[1:])) != len(hits[1:]):
                    violations.append(f"a key twice in {hits}")
            except redis.RedisError as e:
                # A group refusing a router below its epoch, after its retries.
                failed.append(("search", repr(e)))

    try:
        client = c.client(protocol=2)
        create_index(client)
        wait_idle(client)
        preload(client, acked, 6000)
        issued[0] = len(acked)
        threads = [threading.Thread(target=write, args=(t, c.ports[t][0]), daemon=True)
                   for t in range(3)]
        threads += [threading.Thread(target=search, args=(c.ports[t][0],), daemon=True)
                    for t in (1, 2)]
        for t in threads:
            t.start()
        wait_for(lambda: len(acked) > 6300 or None, what="writes before the reshard")

        node2 = redis.Redis(host="127.0.0.1", port=c.ports[1][0], protocol=2)
        assert node2.execute_command("RESHARD", "ADD-GROUP") == GROUPS
        try:
            node2.execute_command("RESHARD", "ADD-GROUP")
            raise AssertionError("a second reshard was accepted")
        except redis.ResponseError as e:
            assert "under way" in str(e)
        infos = []  # INFO cluster's reshard line, as each poll below saw it

        def done():
            infos.append(client.info("cluster").get("shoal_reshard"))
            s = status(client)
            return s if s["phase"] == b"none" and s["groups"] == [0, 1, 2, 3] else None

        final = wait_for(done, timeout=120, what="the reshard to finish")
        assert final["epoch"] >= 4, final  # intake, three switches
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert not violations, violations[:5]
        assert len(acked) > 6500, (len(acked), failed[:3])

        # Every acknowledged write reads back through every router; deletes stayed.
        uncertain = {k for k, _ in failed}
        live = {k: i for k, i in acked.items() if k not in deleted and k not in uncertain}
        for resp, _ in c.ports:
            r = redis.Redis(host="127.0.0.1", port=resp, protocol=2)
            pipe = r.pipeline(transaction=False)
            for k in live:
                pipe.hget(k, "n")
            for k in deleted:
                pipe.exists(k)
            got = pipe.execute()
            lost = [k for k, v in zip(live, got) if v != str(live[k]).encode()]
            assert not lost, f"acknowledged writes lost: {lost[:10]}"
            back = [k for k, v in zip(deleted, got[len(live):]) if v]
            assert not back, f"deleted keys back: {back[:10]}"
        dbsize = client.dbsize()
        unknown = len(uncertain - {"search"}) + len(
            [k for k in acked if k in uncertain and k not in deleted])
        assert len(live) <= dbsize <= len(live) + unknown, (dbsize, len(live), unknown)
        total = client.execute_command("FT.SEARCH", "idx", "*", "LIMIT", "0", "0")[0]
        assert total == dbsize, (total, dbsize)

        info = client.info("cluster")
        assert isinstance(info.get("group3"), dict), info
        # While it ran, INFO cluster showed it from the map each router reads every
        # second (the reshard takes several: the writers keep the sources busy).
        running = [i for i in infos if i and i.get("phase") != "none"]
        assert running and all(i["target"] == GROUPS for i in running), infos[:5]
        wait_for(lambda: client.info("cluster")["shoal_reshard"]
                 == {"phase": "none", "epoch": final["epoch"]} or None,
                 timeout=10, what="INFO cluster's reshard line after the reshard")
        # Each key on its new group only: three replicas of each, and no more.
        wait_for(lambda: sum(local_keys(resp) for resp, _ in c.ports) == 3 * dbsize or None,
                 timeout=30, what="three copies of every key, and no more")
        for g in range(GROUPS + 1):
            def agree(g=g):
                digests = {redis.Redis(host="127.0.0.1", port=resp, protocol=2)
                           .execute_command("DEBUG", "DIGEST", str(g)) for resp, _ in c.ports}
                return len(digests) == 1 or None
            wait_for(agree, timeout=20, what=f"group {g}'s replicas agreeing")
        # A new group takes writes of its own afterwards.
        assert client.set("after", "1") and client.get("after") == b"1"
    finally:
        stop.set()
        c.stop()


def test_an_abort_while_copying_leaves_every_key_where_it_was_and_a_new_reshard_reuses_the_id(
        tmp_path):
    c, client, acked = paced_cluster(tmp_path)
    try:
        try:
            client.execute_command("RESHARD", "ABORT")
            raise AssertionError("an abort with no reshard was accepted")
        except redis.ResponseError as e:
            assert "no reshard" in str(e)
        assert client.execute_command("RESHARD", "ADD-GROUP") == GROUPS
        def copied():
            """Keys copied so far, over the sources (their progress in RESHARD STATUS)."""
            s = status(client)
            if s["phase"] != b"copying":
                return 0
            return sum(dict(zip(p[::2], p[1::2]))[b"copied"] for p in s["sources"])
        # Aborted once a source has begun and copied keys: each is told to stop.
        wait_for(lambda: copied() > 0 or None, timeout=60, what="the copy to begin")
        assert client.execute_command("RESHARD", "ABORT") == b"OK"
        final = wait_for(lambda: (lambda s: s if s["phase"] == b"none" else None)(status(client)),
                         timeout=60, what="the abort to finish")
        assert final["groups"] == [0, 1, 2], final
        for k, i in acked.items():
            assert client.hget(k, "n") == str(i).encode(), k
        dbsize = client.dbsize()
        assert dbsize == len(acked)
        assert client.execute_command("FT.SEARCH", "idx", "*", "LIMIT", "0", "0")[0] == dbsize
        # The aborted group holds nothing: three copies of each key, on the old groups.
        wait_for(lambda: sum(local_keys(resp) for resp, _ in c.ports) == 3 * dbsize or None,
                 timeout=30, what="three copies of every key, and no more")

        # The next reshard takes the same id and finishes.
        assert client.execute_command("RESHARD", "ADD-GROUP") == GROUPS
        done = wait_for(lambda: (lambda s: s if s["phase"] == b"none" else None)(status(client)),
                        timeout=120, what="the second reshard to finish")
        assert done["groups"] == [0, 1, 2, 3], done
        for k, i in acked.items():
            assert client.hget(k, "n") == str(i).encode(), k
        assert client.dbsize() == len(acked)
        wait_for(lambda: sum(local_keys(resp) for resp, _ in c.ports) == 3 * len(acked) or None,
                 timeout=30, what="three copies of every key after the second reshard")
    finally:
        c.stop()


META = 2**64 - 1


def leads_meta(port):
    """Whether the node at `port` leads the meta group, by its own Raft state (INFO
    cluster's view of the map may trail a new election)."""
    raw = redis.Redis(host="127.0.0.1", port=port, protocol=2).execute_command(
        "RAFT", "STATUS", str(META))
    return dict(zip(raw[::2], raw[1::2])).get(b"role") == b"leader"


def test_the_reshard_goes_on_when_the_meta_leader_is_killed_while_copying_and_switching(
        tmp_path):
    c, client, acked = paced_cluster(tmp_path)
    try:
        runs = []

        def kill_meta_leader_once(phase):
            """SIGKILLs the node leading the meta group (the coordinator) once the
            reshard is in `phase`, and starts it again; asked through a node that
            stays up."""
            def in_phase():
                for i, (resp, _) in enumerate(c.ports):
                    try:
                        s = status(redis.Redis(host="127.0.0.1", port=resp, protocol=2))
                        if s["phase"] == phase and leads_meta(resp):
                            return s, i
                    except redis.RedisError:
                        continue
                return None
            s, victim = wait_for(in_phase, timeout=60, what=f"phase {phase}")
            runs.append(s["run"])
            c.procs[victim].send_signal(signal.SIGKILL)
            c.procs[victim].wait()
            c.spawn(victim)
            return victim

        survivor = lambda victim: redis.Redis(  # noqa: E731
            host="127.0.0.1", port=c.ports[(victim + 1) % 3][0], protocol=2)
        assert client.execute_command("RESHARD", "ADD-GROUP") == GROUPS
        victim = kill_meta_leader_once(b"copying")
        victim = kill_meta_leader_once(b"switching")

        def done():
            try:
                s = status(survivor(victim))
            except redis.RedisError:
                return None
            return s if s["phase"] == b"none" and s["groups"] == [0, 1, 2, 3] else None
        wait_for(done, timeout=120, what="the reshard to finish after the kills")
        # Each new coordinator claimed the reshard at a higher run.
        assert runs[1] > runs[0], runs
        r = survivor(victim)
        wait_for(lambda: r.dbsize() == len(acked) or None, timeout=30,
                 what="every key counted once")
        pipe = r.pipeline(transaction=False)
        for k in acked:
            pipe.hget(k, "n")
        lost = [k for k, v in zip(acked, pipe.execute()) if v != str(acked[k]).encode()]
        assert not lost, f"acknowledged writes lost: {lost[:10]}"
        assert r.execute_command("FT.SEARCH", "idx", "*", "LIMIT", "0", "0")[0] == len(acked)
        wait_for(lambda: sum(local_keys(resp) for resp, _ in c.ports) == 3 * len(acked) or None,
                 timeout=60, what="three copies of every key, and no more")
    finally:
        c.stop()
