"""A write through a router that holds no replica of the key's group, while that group's
leader is frozen (SIGSTOP: a long GC, a stopped VM).

The router cannot see the group elect a new leader through a replica of its own, so it
asks the group's members whom they follow; once a majority names another leader, the
write pending on the frozen one is given up as `TRYAGAIN ... may or may not have been
applied`, and the client's retry reaches the new leader. The quorum timeout is made long
(20 s) so that waiting it out, as the router did before, cannot pass for this.

Real `shoal node` processes on loopback.
"""

import signal
import time

import pytest
import redis

from conftest import ClusterServer, wait_for

QUORUM_TIMEOUT_S = 20


def view(c, node):
    """Group 0 as `node` sees it: (leader, voters, its own role)."""
    client = redis.Redis(host="127.0.0.1", port=c.ports[node - 1][0], protocol=2,
                         decode_responses=True)
    try:
        line = client.info("cluster")["group0"]
    finally:
        client.close()
    leader = None if line["leader"] in (None, "none") else int(line["leader"])
    return leader, sorted(int(v) for v in str(line["voters"]).split("|") if v), \
        line["local_role"]


def settled_leader(c):
    """Group 0's leader once every voter's own replica names the same one.

    Node 1's INFO alone is not enough: when node 1 is not a voter it reports the cluster
    map's leader hint (what placement intended, refreshed every second), and a node
    frozen on that word may not lead at all, so the write "during" the freeze went
    through at once (seen once in CI, 0.3 s after the cluster started)."""
    def agreed():
        _, members, _ = view(c, 1)
        views = [view(c, n) for n in members]
        leaders = {leader for leader, _, _ in views}
        roles = sorted(role for _, _, role in views)
        if len(members) == 3 and len(leaders) == 1 and None not in leaders \
                and roles == ["follower", "follower", "leader"]:
            return leaders.pop(), members
        return None
    return wait_for(agreed, timeout=15, what="group 0's voters agreeing on a leader")


def test_a_router_without_a_replica_leaves_a_frozen_leader(tmp_path):
    c = ClusterServer(tmp_path, nodes=4, groups=1, extra=[
        "--replication-factor", "3", "--quorum-timeout-ms", str(QUORUM_TIMEOUT_S * 1000)]).start()
    frozen = None
    try:
        leader, members = settled_leader(c)
        outsider = next(n for n in range(1, 5) if n not in members)
        router = redis.Redis(host="127.0.0.1", port=c.ports[outsider - 1][0], protocol=2,
                             decode_responses=True, socket_timeout=QUORUM_TIMEOUT_S * 2)
        # The router learns the leader from a first write.
        assert router.set("before", "1")

        before = router.info("cluster")
        frozen = c.procs[leader - 1]
        frozen.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ResponseError) as refused:
            router.set("during", "1")
            pytest.fail(f"the write went through with node {leader} frozen; the router saw "
                        f"{before} before, and {router.info('cluster')} now")
        waited = time.monotonic() - started
        assert "may or may not have been applied" in str(refused.value)
        assert waited < QUORUM_TIMEOUT_S / 2, (
            f"the write waited {waited:.1f} s on the frozen leader")

        # The retry reaches the new leader; nothing written before is lost.
        def retried():
            try:
                return router.set("during", "2")
            except redis.exceptions.ResponseError as e:
                assert str(e).startswith("TRYAGAIN"), e
                return None

        assert wait_for(retried, timeout=15, what="a write through the router after the election")
        assert router.mget(["before", "during"]) == ["1", "2"]
    finally:
        if frozen is not None:
            frozen.send_signal(signal.SIGCONT)
        c.stop()
