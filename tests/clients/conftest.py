"""Starts the real `shoal` binary for the client tests.

Every test module gets its own server on a free loopback port with its own data
directory; `SHOAL_BIN` points at the binary (the Makefile passes the one it built).
"""

import os
import pathlib
import signal
import subprocess
import time

import pytest
import redis

from loopback import free_port  # noqa: F401  (re-exported for the test modules)

ROOT = pathlib.Path(__file__).resolve().parents[2]


def binary() -> str:
    default = pathlib.Path(
        os.environ.get("CARGO_TARGET_DIR", pathlib.Path.home() / ".cache/shoal-target")
    ) / "debug" / "shoal"
    path = os.environ.get("SHOAL_BIN", str(default))
    if not os.path.exists(path):
        pytest.fail(f"shoal binary not found at {path}; build it or set SHOAL_BIN")
    return path




class Server:
    """A running `shoal dev` process."""

    def __init__(self, data_dir: pathlib.Path, *extra_args: str):
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.port = None
        self.proc = None

    def start(self):
        # The port is picked free just before binding; retry if another process takes it.
        for _ in range(5):
            self.port = free_port()
            # The gRPC API too gets a free port, unless the test picks one.
            api = [] if "--api" in self.extra_args else ["--api", f"127.0.0.1:{free_port()}"]
            # The log goes to a file: a pipe nobody drains would block the server once
            # it filled up.
            self.log = self.data_dir.parent / f"{self.data_dir.name}.log"
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    [binary(), "dev", "--resp", f"127.0.0.1:{self.port}",
                     "--data-dir", str(self.data_dir), *api, *self.extra_args],
                    stdout=subprocess.PIPE, stderr=log, text=True,
                )
            line = self.proc.stdout.readline()
            if "listening" in line:
                return self
            self.proc.wait(timeout=10)
        raise RuntimeError(f"shoal did not start: {self.log.read_text()[-2000:]}")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def alive(self) -> bool:
        return self.proc.poll() is None


class ClusterServer:
    """Real `shoal node` processes replicating SHOAL_CLUSTER_GROUPS shard groups; clients
    talk to the first node's router, exactly as they talk to `shoal dev`."""

    def __init__(self, data_dir: pathlib.Path, nodes: int, groups: int,
                 election_timeout_ms: int = 500, extra=(), api: bool = False):
        self.data_dir = data_dir
        self.groups = groups
        self.election_timeout_ms = election_timeout_ms
        self.extra = list(extra)
        self.ports = [(free_port(), free_port()) for _ in range(nodes)]
        # With `api`, every node also serves the gRPC client API, node i + 1 on
        # api_ports[i].
        self.api_ports = [free_port() for _ in range(nodes)] if api else []
        self.procs = []
        self.port = self.ports[0][0]

    def argv(self, i, *more, groups=None, extra=None):
        """The command line of node i + 1: the member list of every node so far, the
        cluster's flags (`groups`, `extra` instead, to start one otherwise) and `more`."""
        zones = "abc"
        members = []
        for j, (resp, grpc) in enumerate(self.ports):
            members += ["--member",
                        f"{j + 1},{zones[j % 3]},127.0.0.1:{grpc},127.0.0.1:{resp}"]
        resp, grpc = self.ports[i]
        api = ["--api", f"127.0.0.1:{self.api_ports[i]}"] if i < len(self.api_ports) else []
        return [binary(), "node", "--id", str(i + 1), "--zone", zones[i % 3],
                "--resp", f"127.0.0.1:{resp}", "--grpc", f"127.0.0.1:{grpc}", *api,
                "--data-dir", str(self.data_dir / f"node-{i + 1}"),
                "--groups", str(self.groups if groups is None else groups),
                "--election-timeout-ms", str(self.election_timeout_ms),
                "--heartbeat-ms", "100", *(self.extra if extra is None else extra),
                *more, *members]

    def spawn(self, i, *more):
        """Starts node i + 1 (again, after a kill: same ports, same data), with the
        member list of every node so far and `more` flags."""
        log = open(self.data_dir / f"node-{i + 1}.log", "ab")
        proc = subprocess.Popen(self.argv(i, *more), stdout=subprocess.PIPE, stderr=log,
                                text=True)
        if i < len(self.procs):
            self.procs[i] = proc
        else:
            self.procs.append(proc)
        if "listening" not in proc.stdout.readline():
            self.stop()
            raise RuntimeError(f"node {i + 1} did not start: see {log.name}")

    def join(self):
        """Starts one more node with --join (zones turn a, b, c); returns its index."""
        self.ports.append((free_port(), free_port()))
        i = len(self.ports) - 1
        self.spawn(i, "--join")
        return i

    def start(self):
        for i in range(len(self.ports)):
            self.spawn(i)
        # Ready once every group, and the meta group, has elected a leader.
        deadline = time.time() + 30
        client = self.client(protocol=2)
        while time.time() < deadline:
            info = client.info("cluster")
            # redis-py parses "group0:leader=2,local_role=follower" into a dict.
            groups = [info.get(f"group{g}") for g in range(self.groups)]
            groups.append(info.get("meta_group"))
            if all(isinstance(g, dict) and g.get("leader") not in (None, "none")
                   for g in groups):
                return self
            time.sleep(0.05)
        # Not left running behind a fixture that never got to yield it.
        self.stop()
        raise RuntimeError(f"shard groups elected no leaders: {info}")

    def stop(self, sig=signal.SIGTERM):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(sig)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def leaders(self) -> dict:
        """Each group's leader, by node id, as node 1's INFO cluster reports it; None
        for a group that has none at the moment (`leader=none`: an election or a
        hand-over under way)."""
        info = self.client(protocol=2).info("cluster")
        leader = lambda g: str(info[f"group{g}"]["leader"])  # noqa: E731
        return {g: int(leader(g)) if leader(g).isdigit() else None for g in range(self.groups)}

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)


def cluster_groups() -> int:
    """SHOAL_CLUSTER_GROUPS=N runs the client tests against a 3-node cluster of N
    shard groups through a router instead of `shoal dev` (0 or unset: `shoal dev`)."""
    return int(os.environ.get("SHOAL_CLUSTER_GROUPS", "0") or 0)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    groups = cluster_groups()
    if groups:
        s = ClusterServer(tmp_path_factory.mktemp("shoal-cluster"), 3, groups).start()
    else:
        s = Server(tmp_path_factory.mktemp("shoal")).start()
    yield s
    s.stop()


def clean_client(server, **kwargs):
    """A client on an empty server: no keys, no indexes."""
    client = server.client(**kwargs)
    client.flushall()
    for name in client.execute_command("FT._LIST"):
        client.execute_command("FT.DROPINDEX", name)
    return client


@pytest.fixture
def r(server):
    """redis-py as users get it: its default protocol (RESP3 in redis-py 8)."""
    client = server.client()
    client.flushall()
    for name in client.execute_command("FT._LIST"):
        client.execute_command("FT.DROPINDEX", name)
    yield client
    client.close()


def wait_ready(client, index, timeout=30.0):
    """Waits until an index's backfill is done."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = client.ft(index).info()
        if info.get("state") in ("ready", b"ready"):
            return info
        time.sleep(0.05)
    raise TimeoutError(f"index {index} still backfilling")


def wait_for(check, timeout=30.0, what="condition"):
    """Polls `check` until it returns something true, and returns that."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.1)
