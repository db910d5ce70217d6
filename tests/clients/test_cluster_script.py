"""`scripts/cluster.sh`: real `shoal node` processes on loopback, as an operator drives
them — up, status, a node killed and the cluster still writing, up again, down, clean."""

import os
import pathlib
import socket
import subprocess

import grpc
import redis

from conftest import ROOT, binary
from loopback import ephemeral_low, free_port

SCRIPT = ROOT / "scripts" / "cluster.sh"


def base_port() -> int:
    """A base whose 3 RESP ports (base+1..3), 3 peer gRPC ports (base+101..103) and 3
    client API ports (base+201..203) are free and below the ephemeral range: node 1
    binds its ports again after its restart, while its peers keep dialling it, and a
    port in that range can meanwhile be taken as a source port (see `loopback`)."""
    while True:
        base = free_port()
        if base + 203 >= ephemeral_low():
            continue
        try:
            for offset in (1, 2, 3, 101, 102, 103, 201, 202, 203):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base


def running(pid: int) -> bool:
    """Whether any thread of `pid` runs: after a SIGKILL the main thread can be a
    zombie while another still holds the process's ports (an exited process not yet
    reaped does not run)."""
    for stat in pathlib.Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            return True
    return False


def run(env, *args, check=True):
    done = subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"cluster.sh {' '.join(args)} exited {done.returncode}\n"
                             f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\n"
                             f"{node_logs(env)}")
    return done


def node_logs(env) -> str:
    """The last lines of every node's log: why a node did not come up is in there."""
    tails = []
    for log in sorted(pathlib.Path(env["SHOAL_CLUSTER_DIR"]).glob("node-*.log")):
        lines = log.read_text(errors="replace").splitlines()
        tails.append(f"--- {log.name} (last 40 of {len(lines)} lines)")
        tails.extend(lines[-40:])
    return "\n".join(tails)


def test_up_status_kill_up_down_clean(tmp_path: pathlib.Path):
    base = base_port()
    env = dict(os.environ, SHOAL_BIN=binary(), SHOAL_CLUSTER_DIR=str(tmp_path / "c"),
               SHOAL_BASE_PORT=str(base), SHOAL_GROUPS="3")
    try:
        up = run(env, "up", "3")
        assert "cluster of 3 nodes and 3 groups up" in up.stdout
        status = run(env, "status").stdout
        for i in (1, 2, 3):
            assert f"node {i}  pid" in status
            assert f"api {base + 200 + i}" in status
        assert status.count("group2:leader=") == 3
        # Every node serves the gRPC client API too (test_grpc.py calls it): each answers
        # ClusterStatus with its own node id, so the three serialized answers differ.
        answers = set()
        for i in (1, 2, 3):
            with grpc.insecure_channel(f"127.0.0.1:{base + 200 + i}") as channel:
                answers.add(channel.unary_unary("/shoal.v1.Shoal/ClusterStatus")(
                    b"", timeout=10))
        assert len(answers) == 3 and all(answers)

        nodes = [redis.Redis(port=base + i) for i in (1, 2, 3)]
        assert nodes[0].mset({f"k{i}": i for i in range(50)})
        killed = int((tmp_path / "c" / "1.pid").read_text())
        run(env, "kill", "1")
        # `kill` returns once the process has exited, so that `up` can start it again
        # on the same ports at once.
        assert not running(killed)
        assert "node 1  down" in run(env, "status").stdout
        # With a count: the nodes up to it, a node never started among them as down.
        counted = run(env, "status", "4").stdout
        assert "node 1  down" in counted and "node 4  down" in counted
        assert "node 2  pid" in counted and "node 3  pid" in counted
        # Two of three replicas keep every group writing; the routers of the live nodes
        # find the new leaders.
        assert nodes[1].set("after", "kill")
        assert nodes[2].mget(["k0", "k49", "after"]) == [b"0", b"49", b"kill"]

        run(env, "up", "3")
        assert nodes[0].get("after") == b"kill"
        assert nodes[0].dbsize() == 51

        run(env, "down")
        assert run(env, "status").stdout.count("down") == 3
        assert (tmp_path / "c" / "node-1").is_dir()
    finally:
        run(env, "clean", check=False)
    assert not (tmp_path / "c").exists()
