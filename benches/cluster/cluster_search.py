#!/usr/bin/env python3
"""FT.SEARCH through a router over shard groups against one node with the same data
(issue #5): `make bench-cluster`.

In one run, with the same vectors and the same queries, one setup after another (only
one setup's processes run at a time):

- `single`: one `shoal dev --standalone` (one engine, no replication, no router).
- `cluster-gN` for each N of --groups (default 3): three `shoal node` processes in zones
  a, b, c, every node a replica of all N groups. Clients are spread over the three nodes'
  RESP ports; each node's router sends the KNN to every group's leader and merges.
- with --dev, `dev-gN`: `shoal dev --groups N` (what `make run` starts), the same
  three nodes and N groups in one process: one tokio runtime instead of three, so the
  nodes do not outnumber the machine's cores with worker threads. Its one RESP port
  hands every connection to node 1's router (`shoal dev --routers`: the routers would
  share the same cores, and each would send its own confirmation rounds).
  --no-processes skips the three-process setups.
- with --readonly, `cluster-gN-readonly`: the same cluster and data, every client
  connection sends READONLY first, so each node searches its own replicas (stale reads,
  no leader hop or ReadIndex round).

For each setup:

1. Ingest: FT.CREATE as benches/resp/search_ingest.py does (HNSW, M 16,
   EF_CONSTRUCTION 200, L2), then the first --n base vectors as pipelined `HSET v:<i>`
   over one connection (to the first node), chunks of 1,000, two in flight. Reported:
   vectors/s until the last HSET reply, and the time until every replica reports all
   vectors indexed (FT.INFO num_docs and state ready; on a cluster asked of each node
   with READONLY, i.e. of its own replicas).
2. Answers: every query once on one connection; recall@10 against exact L2 neighbours
   (the dataset's gt_l2.ivecs when all base vectors are used, else computed here), and
   the overlap with the single node's answers. This pass is also the warm-up.
3. Load: for each client count, --requests `FT.SEARCH idx "*=>[KNN 10 @vec $q
   EF_RUNTIME <ef>]" PARAMS 2 q <blob> RETURN 1 __vec_score DIALECT 2` in all, spread
   over that many closed-loop clients (one connection each, one query in flight).
   QPS = requests / wall time; p50 and p99 of the per-request latency. The same
   clients then send PING the same way: the PING QPS is the ceiling of this client
   and the RESP loop, so a search QPS close to it means the client, not the search,
   is the limit. The CPU time of the client and of the servers over each window is
   reported as % of one core, and with the rust driver also the time its thread was
   runnable but waiting for a core (% of the window): while it waits, every reply
   that came in waits with it, so that share of the latencies is the driver's. The
   rust driver also times each request until its reply reached the driver's socket
   (the kernel's receive stamp, taken on loopback while the server sends): "at the
   socket" p50 / p99 are the servers' latencies without the driver's wait for a core.
   Beside each search row, the host's own figures (`host.py`): the cores two busy
   processes got at once just before it (1.9-2.0 on this VM when idle), and the CPUs'
   busy and steal shares during it.

The clients (--driver): `procs` (default) runs --client-procs processes, each driving
its share of the connections from one epoll loop (requests pre-encoded, replies parsed
with hiredis); `threads` runs one Python thread per connection in this process; `rust`
(what `make bench-cluster` uses) runs `shoal-bench resp-load` (--bench), every
connection on one Rust thread. The Python drivers spend 50-70 us of CPU per request,
a third of a 2-vCPU machine at 7k searches/s, and a preempted client process delays
every reply it holds: with them even PING had a 4-5 ms p99 at 32 connections.
With --client-rt the rust driver runs at real-time priority. On two vCPUs that the
servers' workers keep busy, an ordinarily scheduled driver reads a reply only when the
kernel next runs it, which added 1.5 ms to the p99 of `shoal dev` at 32 clients
(docs/benchmarks.md, "Session 30"): rows taken with it measure the servers' latency, not
the driver's wait for a core.

Prints markdown tables and writes JSON (`--json`).
"""

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue
import resource
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import hiredis
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "resp"))
# search_ingest also puts benches/ (vecs) and tests/clients (loopback) on sys.path.
from search_ingest import Conn, encode, ingest  # noqa: E402
from loopback import free_port  # noqa: E402
from vecs import exact_knn, load_ids, load_vectors  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import host  # noqa: E402

K = 10
CONN_TIMEOUT = 120.0


# --- processes ----------------------------------------------------------------------

class Procs:
    """Server processes of one setup, each logging stdout and stderr to a file."""

    def __init__(self, logdir):
        self.logdir = Path(logdir)
        self.procs = []

    def start(self, name, args, timeout=60):
        log_path = self.logdir / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.procs.append((name, proc, log_path))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if b"listening" in log_path.read_bytes():
                return proc
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"{name} did not start:\n{tail(log_path)}")

    def pids(self):
        return [p.pid for _, p, _ in self.procs]

    def check_alive(self):
        for name, p, log_path in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{tail(log_path)}")

    def stop(self):
        for _, p, _ in self.procs:
            if p.poll() is None:
                p.terminate()
        for _, p, _ in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


def tail(path, lines=20):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_quiet(pids, limit=180.0, window=2.0, busy=0.10):
    """Waits until the servers use under `busy` of a core over `window` seconds (after an
    ingest they snapshot their Raft logs and compact RocksDB, work that would otherwise
    land on the first measurements); returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(window)
        if sum(cpu_seconds(p) for p in pids) - before < busy * window:
            break
    return time.perf_counter() - t0


def connect(port, readonly=False):
    conn = Conn(port)
    conn.sock.settimeout(CONN_TIMEOUT)
    if readonly:
        conn.call(encode("READONLY"))
    return conn


def info_fields(conn, section):
    body = conn.call(encode("INFO", section))
    body = body.decode() if isinstance(body, bytes) else str(body)
    return dict(line.split(":", 1) for line in body.splitlines() if ":" in line)


def start_single(shoal, procs, _root, _args):
    port = free_port()
    procs.start("single", [shoal, "dev", "--standalone", "--api", "127.0.0.1:0",
                           "--resp", f"127.0.0.1:{port}"])
    return [port]


def start_cluster(shoal, procs, root, args, groups):
    """Three `shoal node` processes hosting `groups` groups; returns their RESP ports
    once every node names a leader for every group (the same one on every node)."""
    nodes = [(i + 1, "abc"[i], free_port(), free_port()) for i in range(3)]
    members = []
    for node_id, zone, resp, grpc in nodes:
        members += ["--member", f"{node_id},{zone},127.0.0.1:{grpc},127.0.0.1:{resp}"]
    extra = node_flags(args)
    for node_id, zone, resp, grpc in nodes:
        procs.start(f"g{groups}-node-{node_id}", [
            shoal, "node", "--id", str(node_id), "--zone", zone,
            "--resp", f"127.0.0.1:{resp}", "--grpc", f"127.0.0.1:{grpc}",
            "--data-dir", str(root / f"g{groups}-node-{node_id}"),
            "--groups", str(groups), *extra, *members])
    ports = [n[2] for n in nodes]
    conns = [connect(p) for p in ports]
    deadline = time.time() + 60
    while time.time() < deadline:
        procs.check_alive()
        views = [info_fields(c, "cluster") for c in conns]
        leaders = [[v.get(f"group{g}", "").split(",")[0] for g in range(groups)] for v in views]
        if all(lead == leaders[0] for lead in leaders) and \
                all(x.startswith("leader=") and x != "leader=none" for x in leaders[0]):
            break
        time.sleep(0.1)
    else:
        raise TimeoutError(f"shard groups elected no leaders: {views}")
    for c in conns:
        c.sock.close()
    return ports


def node_flags(args):
    """The read settings every node of a cluster setup runs with."""
    flags = ["--read-mode", args.read_mode] if args.read_mode else []
    if args.follower_reads:
        flags += ["--follower-reads", args.follower_reads]
    return flags


def start_dev(shoal, procs, root, args, groups, extra=()):
    """`shoal dev` (what `make run` starts): three nodes in one process, `groups`
    groups of three replicas, `extra` more flags. Returns its one RESP port, served by
    node 1's router unless `extra` asks for more;
    the other nodes' replicas are not asked whether they are indexed (`wait_quiet`
    waits for their work to end)."""
    port = free_port()
    procs.start(f"dev-g{groups}", [
        shoal, "dev", "--resp", f"127.0.0.1:{port}", "--api", "127.0.0.1:0",
        "--data-dir", str(root / f"dev-g{groups}"), "--groups", str(groups),
        *node_flags(args), *extra])
    conn = connect(port)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            procs.check_alive()
            view = info_fields(conn, "cluster")
            leads = [view.get(f"group{g}", "").split(",")[0] for g in range(groups)]
            if all(x.startswith("leader=") and x != "leader=none" for x in leads):
                return [port]
            time.sleep(0.1)
        raise TimeoutError(f"shard groups elected no leaders: {view}")
    finally:
        conn.sock.close()


def follower_read_counts(ports):
    """Each router's (follower reads, read index rounds, confirmed reads, confirmation
    rounds) from INFO cluster; `shoal dev` has one router."""
    conns = [connect(p) for p in ports]
    try:
        views = [info_fields(c, "cluster") for c in conns]
    finally:
        for c in conns:
            c.sock.close()
    keys = ("follower_reads", "read_index_rounds", "confirmed_reads", "confirm_rounds")
    return [tuple(int(v.get(k, 0)) for k in keys) for v in views]


def leader_layout(port, groups):
    conn = connect(port)
    try:
        view = info_fields(conn, "cluster")
    finally:
        conn.sock.close()
    return {f"group{g}": view.get(f"group{g}", "").split(",")[0].removeprefix("leader=")
            for g in range(groups)}


def wait_indexed(ports, n, readonly, procs, timeout):
    """Until FT.INFO on every port reports n docs and state ready (with READONLY on a
    cluster: that node's own replicas)."""
    deadline = time.time() + timeout
    conns = [connect(p, readonly) for p in ports]
    last = None
    try:
        while time.time() < deadline:
            procs.check_alive()
            done = True
            last = []
            for c in conns:
                try:
                    info = c.call(encode("FT.INFO", "idx"))
                except RuntimeError as e:  # the index not created on this replica yet
                    last.append(str(e))
                    done = False
                    continue
                fields = dict(zip(info[::2], info[1::2]))
                docs, state = int(fields[b"num_docs"]), fields[b"state"]
                last.append((docs, state))
                done &= docs == n and state == b"ready"
            if done:
                return
            time.sleep(0.1)
    finally:
        for c in conns:
            c.sock.close()
    raise TimeoutError(f"not every replica indexed {n} vectors: {last}")


# --- load generation ----------------------------------------------------------------

def plan(payloads, total, clients, c):
    """Connection c's requests: every clients-th of `total`, cycling over payloads."""
    return [payloads[j % len(payloads)] for j in range(c, total, clients)]


def drive(conns, seqs):
    """Closed loop, one request in flight per connection; latencies in µs."""
    lat = []
    clock = time.perf_counter_ns
    if len(conns) == 1:
        conn = conns[0]
        for p in seqs[0]:
            t = clock()
            conn.call(p)
            lat.append((clock() - t) / 1000)
        return lat
    ep = select.epoll()
    state = {}
    try:
        for conn, seq in zip(conns, seqs):
            if not seq:
                continue
            fd = conn.sock.fileno()
            ep.register(fd, select.EPOLLIN)
            state[fd] = [conn, seq, 1, clock()]
            conn.sock.sendall(seq[0])
        while state:
            for fd, _ in ep.poll():
                st = state[fd]
                conn = st[0]
                data = conn.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("server closed the connection")
                conn.reader.feed(data)
                reply = conn.reader.gets()
                if reply is False:
                    continue
                now = clock()
                if isinstance(reply, hiredis.ReplyError):
                    raise RuntimeError(reply)
                lat.append((now - st[3]) / 1000)
                seq, i = st[1], st[2]
                if i < len(seq):
                    st[2] = i + 1
                    st[3] = clock()
                    conn.sock.sendall(seq[i])
                else:
                    ep.unregister(fd)
                    del state[fd]
    finally:
        ep.close()
    return lat


def rusage_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _proc_worker(job, conn_ids, ready_q, go, out_q):
    try:
        conns = [connect(job["ports"][c % len(job["ports"])], job["readonly"])
                 for c in conn_ids]
        seqs = [plan(job["payloads"], job["total"], job["clients"], c) for c in conn_ids]
        for conn, seq in zip(conns, seqs):  # one unmeasured request per connection
            if seq:
                conn.call(seq[0])
        ready_q.put(None)
        if not go.wait(timeout=300):
            return
        cpu0, t0 = rusage_cpu(), time.perf_counter()
        lat = drive(conns, seqs)
        t1, cpu1 = time.perf_counter(), rusage_cpu()
        out_q.put((t0, t1, lat, cpu1 - cpu0))
    except Exception as e:  # reported to the parent, which raises
        try:
            ready_q.put(f"worker {conn_ids}: {e!r}")
        finally:
            out_q.put(f"worker {conn_ids}: {e!r}")


def _get(q, workers, timeout):
    """The next message, failing early when a worker died without sending one."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return q.get(timeout=0.5)
        except queue.Empty:
            if any(w.exitcode not in (None, 0) for w in workers):
                raise RuntimeError("a client process died") from None
    raise TimeoutError("client processes did not report")


def run_procs(job, procs_n):
    """Connections dealt round-robin over procs_n forked processes, each an epoll loop."""
    ctx = mp.get_context("fork")
    ready_q, out_q, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs_n = max(1, min(procs_n, job["clients"]))
    workers = [ctx.Process(target=_proc_worker,
                           args=(job, list(range(w, job["clients"], procs_n)), ready_q, go, out_q),
                           daemon=True)
               for w in range(procs_n)]
    try:
        for w in workers:
            w.start()
        for _ in workers:
            msg = _get(ready_q, workers, 300)
            if msg is not None:
                raise RuntimeError(msg)
        go.set()
        results = []
        for _ in workers:
            msg = _get(out_q, workers, 900)
            if isinstance(msg, str):
                raise RuntimeError(msg)
            results.append(msg)
    finally:
        go.set()
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.terminate()
                w.join()
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    lat = [x for r in results for x in r[2]]
    return end - start, lat, sum(r[3] for r in results)


def run_threads(job):
    """One Python thread per connection, in this process."""
    clients = job["clients"]
    conns = [connect(job["ports"][c % len(job["ports"])], job["readonly"])
             for c in range(clients)]
    seqs = [plan(job["payloads"], job["total"], clients, c) for c in range(clients)]
    for conn, seq in zip(conns, seqs):
        if seq:
            conn.call(seq[0])
    barrier = threading.Barrier(clients + 1)
    ends, lats, errors = [0.0] * clients, [None] * clients, []

    def client(c):
        try:
            barrier.wait()
            lats[c] = drive([conns[c]], [seqs[c]])
        except Exception as e:
            errors.append(repr(e))
        ends[c] = time.perf_counter()

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    cpu0 = rusage_cpu()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    cpu1 = rusage_cpu()
    for c in conns:
        c.sock.close()
    if errors:
        raise RuntimeError(errors[0])
    return max(ends) - start, [x for lat in lats for x in lat], cpu1 - cpu0


def run_rust(job, bench):
    """`shoal-bench resp-load`: the same plan, every connection on one Rust thread."""
    with tempfile.NamedTemporaryFile(prefix="resp-load-", suffix=".bin") as f:
        for p in job["payloads"]:
            f.write(len(p).to_bytes(4, "little") + p)
        f.flush()
        cmd = [bench, "resp-load", "--requests-file", f.name, "--clients", str(job["clients"]),
               "--requests", str(job["total"]),
               "--warmup-seconds", str(job.get("warmup", 0.0))]
        if job.get("client_rt"):
            cmd = ["chrt", "--fifo", "10", *cmd]
        for port in job["ports"]:
            cmd += ["--addr", f"127.0.0.1:{port}"]
        if job["readonly"]:
            cmd.append("--readonly")
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"shoal-bench resp-load failed: {out.stderr.strip()}")
    report = json.loads(out.stdout)
    if report["unstamped"]:
        print(f"note: {report['unstamped']} replies came without a receive stamp (the "
              "kernel turns stamping on late); their read time stands in",
              file=sys.stderr, flush=True)
    return (report["seconds"], report["latencies_us"], report["cpu_seconds"],
            report["warmup_seconds"], report["wait_seconds"],
            report["arrival_latencies_us"])


def load(args, ports, payloads, clients, readonly, server_pids, probe=True):
    """One row: `payloads` from `clients` closed-loop clients. `probe`: measure the
    host's cores first (the search rows; the PING rows after them skip it, their
    figures are the client's ceiling, not a verdict)."""
    job = {"ports": ports, "payloads": payloads, "total": args.requests,
           "clients": clients, "readonly": readonly,
           "client_rt": getattr(args, "client_rt", False),
           "warmup": getattr(args, "warmup", 0.0)}
    if job["warmup"] and args.driver != "rust":
        raise SystemExit("--warmup needs --driver rust")
    # The host first (the servers idle): what two busy processes got at once.
    cores, lone_rate = host.parallel_cores() if probe else (None, None)
    before = [cpu_seconds(p) for p in server_pids]
    stat_before = host.cpu_times()
    warmed = 0.0
    # Only the Rust driver is one thread whose run-queue wait can be read, and only it
    # reads when each reply reached its socket.
    client_wait, arrival = None, None
    if args.driver == "threads":
        wall, lat, client_cpu = run_threads(job)
    elif args.driver == "rust":
        wall, lat, client_cpu, warmed, client_wait, arrival = run_rust(job, args.bench)
    else:
        wall, lat, client_cpu = run_procs(job, args.client_procs)
    # The servers' CPU is read around the whole run, warm-up included, and taken over
    # the same span.
    server_cpu = sum(cpu_seconds(p) for p in server_pids) - sum(before)
    cpus = host.cpu_shares(stat_before, host.cpu_times())
    server_cpu *= wall / (wall + warmed)
    assert len(lat) == args.requests, (len(lat), args.requests)
    assert arrival is None or len(arrival) == len(lat), (len(arrival), len(lat))
    return {"qps": len(lat) / wall, "p50_ms": statistics.median(lat) / 1000,
            "p99_ms": float(np.percentile(lat, 99)) / 1000,
            "arrival_p50_ms": arrival and statistics.median(arrival) / 1000,
            "arrival_p99_ms": arrival and float(np.percentile(arrival, 99)) / 1000,
            "mean_ms": statistics.fmean(lat) / 1000, "max_ms": max(lat) / 1000,
            "seconds": wall, "client_cpu_pct": 100 * client_cpu / wall,
            "client_wait_pct": None if client_wait is None else 100 * client_wait / wall,
            "server_cpu_pct": 100 * server_cpu / wall,
            "host_cores": cores, "host_lone_rate": lone_rate,
            "cpus_busy_pct": cpus and cpus["busy_pct"],
            "cpus_steal_pct": cpus and cpus["steal_pct"]}


# --- answers ------------------------------------------------------------------------

def answer_ids(port, payloads, readonly):
    """The ids each query returns, in order, over one connection."""
    conn = connect(port, readonly)
    try:
        out = []
        for p in payloads:
            reply = conn.call(p)
            keys = reply[1::2]
            out.append([int(k.split(b":", 1)[1]) for k in keys])
        return out
    finally:
        conn.sock.close()


def recall(answers, truth):
    hits = sum(len(set(a[:K]) & set(t[:K])) for a, t in zip(answers, truth))
    return hits / (K * len(truth))


# --- main ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shoal", required=True, help="shoal binary (release for real figures)")
    ap.add_argument("--data", required=True, type=Path,
                    help="dataset directory (make bench-ann's / gen_dataset.py's)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--n", type=int, default=0, help="base vectors to ingest [all]")
    ap.add_argument("--queries", type=int, default=1000, help="distinct queries used")
    ap.add_argument("--clients", default="1,32", help="client counts, comma-separated")
    ap.add_argument("--requests", type=int, default=3000,
                    help="FT.SEARCH requests per (setup, clients) measurement")
    ap.add_argument("--ef", type=int, default=20, help="EF_RUNTIME")
    ap.add_argument("--warmup", type=float, default=0.0,
                    help="seconds each load runs unmeasured first (--driver rust) [0]")
    ap.add_argument("--groups", default="3",
                    help="shard groups of the cluster setups, comma-separated (e.g. 3,1)")
    ap.add_argument("--readonly", action="store_true",
                    help="also measure each cluster with READONLY clients (local replicas)")
    ap.add_argument("--read-mode", choices=["votes", "read-index", "lease"],
                    help="the nodes' --read-mode [the node's default]")
    ap.add_argument("--follower-reads", choices=["true", "false"],
                    help="the nodes' --follower-reads [the node's default]")
    ap.add_argument("--driver", choices=["procs", "threads", "rust"], default="procs")
    ap.add_argument("--bench", help="shoal-bench binary, for --driver rust")
    ap.add_argument("--client-rt", action="store_true",
                    help="run the rust driver at real-time priority (chrt --fifo 10, needs "
                         "root): a reply is then read when it arrives, not when the "
                         "kernel next schedules the driver among the servers' threads")
    ap.add_argument("--client-procs", type=int, default=2,
                    help="client processes for --driver procs")
    ap.add_argument("--no-single", action="store_true", help="skip the single-node setup")
    ap.add_argument("--no-processes", action="store_true",
                    help="skip the three-process cluster setups")
    ap.add_argument("--dev", action="store_true",
                    help="also measure `shoal dev` (the same cluster in one process)")
    ap.add_argument("--settle-timeout", type=float, default=1800,
                    help="seconds to wait for every replica to index all vectors")
    ap.add_argument("--target-p99-ms", type=float, default=5.0)
    args = ap.parse_args()
    if args.driver == "rust" and not args.bench:
        ap.error("--driver rust needs --bench (the shoal-bench binary)")

    base = load_vectors(args.data / "base.fvecs")
    queries = load_vectors(args.data / "queries.fvecs")[:args.queries]
    all_base = len(base)
    n = args.n or all_base
    base = base[:n]
    clients_list = [int(c) for c in args.clients.split(",")]
    groups_list = [int(g) for g in args.groups.split(",") if g]
    gt_path = args.data / "gt_l2.ivecs"
    if n == all_base and gt_path.exists():
        truth = load_ids(gt_path)[:len(queries), :K].tolist()
        truth_source = "gt_l2.ivecs"
    else:
        truth = exact_knn(base, queries, "l2", K).tolist()
        truth_source = "exact_knn over the first n"

    search = [encode("FT.SEARCH", "idx", f"*=>[KNN {K} @vec $q EF_RUNTIME {args.ef}]",
                     "PARAMS", "2", "q", q.tobytes(), "RETURN", "1", "__vec_score",
                     "DIALECT", "2") for q in queries]
    ping = [encode("PING")]

    results = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        "shoal": args.shoal, "n": n, "dim": int(base.shape[1]), "queries": len(queries),
        "k": K, "ef": args.ef, "requests_per_measurement": args.requests,
        "driver": args.driver, "client_rt": args.client_rt,
        "client_procs": args.client_procs if args.driver == "procs" else None,
        "read_mode": args.read_mode or "default",
        "follower_reads": args.follower_reads or "default", "truth": truth_source,
        "setups": {},
    }
    setups = [] if args.no_single else [("single", "single", None)]
    if not args.no_processes:
        setups += [(f"cluster-g{g}", "processes", g) for g in groups_list]
    if args.dev:
        setups += [(f"dev-g{g}", "dev", g) for g in groups_list]

    tmp_base = os.environ.get("BENCH_TMP", tempfile.gettempdir())
    single_answers = None
    with tempfile.TemporaryDirectory(dir=tmp_base, prefix="shoal-cluster-bench-") as tmp:
        root = Path(tmp)
        for name, kind, groups in setups:
            procs = Procs(root)
            try:
                if kind == "single":
                    ports = start_single(args.shoal, procs, root, args)
                elif kind == "dev":
                    ports = start_dev(args.shoal, procs, root, args, groups)
                else:
                    ports = start_cluster(args.shoal, procs, root, args, groups)
                print(f"{name}: up on RESP ports {ports}; ingesting {n} vectors",
                      file=sys.stderr, flush=True)
                conn = connect(ports[0])
                t0 = time.perf_counter()
                rate, seconds = ingest(conn, base)
                conn.sock.close()
                wait_indexed(ports, n, groups is not None, procs, args.settle_timeout)
                settled = time.perf_counter() - t0
                quiet = wait_quiet(procs.pids())
                print(f"{name}: {rate:,.0f} vectors/s, all replicas indexed after "
                      f"{settled:.1f}s, servers idle {quiet:.1f}s later",
                      file=sys.stderr, flush=True)
                entry = {"ingest_vectors_per_second": rate, "ingest_seconds": seconds,
                         "indexed_everywhere_seconds": settled,
                         "quiet_after_seconds": quiet}
                if groups is not None:
                    entry["groups"] = groups
                    entry["leaders"] = leader_layout(ports[0], groups)
                variants = [(name, False)]
                if groups is not None and args.readonly:
                    variants.append((f"{name}-readonly", True))
                for vname, readonly in variants:
                    v = dict(entry) if vname == name else {"same_cluster_as": name}
                    answers = answer_ids(ports[0], search, readonly)
                    v["recall_at_10"] = recall(answers, truth)
                    if groups is None:
                        single_answers = answers
                    elif single_answers is not None:
                        v["overlap_with_single"] = recall(answers, single_answers)
                    v["load"] = {}
                    for clients in clients_list:
                        procs.check_alive()
                        r = load(args, ports, search, clients, readonly, procs.pids())
                        r["ping"] = load(args, ports, ping, clients, readonly, procs.pids(),
                                         probe=False)
                        v["load"][str(clients)] = r
                        print(f"{vname} x{clients}: {r['qps']:,.0f} QPS p50 {r['p50_ms']:.3f} "
                              f"p99 {r['p99_ms']:.3f} ms", file=sys.stderr, flush=True)
                    if groups is not None:
                        v["follower_reads"] = follower_read_counts(ports)
                        print(f"{vname}: follower reads, read index rounds, confirmed "
                              f"reads, confirmation rounds so far: {v['follower_reads']}",
                              file=sys.stderr, flush=True)
                    results["setups"][vname] = v
            except BaseException:
                for log in sorted(root.glob("*.log")):
                    print(f"--- {log.name}\n{tail(log)}", file=sys.stderr)
                raise
            finally:
                procs.stop()

    report(results, clients_list, args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def waiting(row):
    """The driver's run-queue wait as a share of the row's time ("—" for the Python
    drivers, or a row recorded before it was measured)."""
    pct = row.get("client_wait_pct")
    return "—" if pct is None else f"{pct:.1f}"


def at_socket(row, key="arrival_p99_ms"):
    """A latency until the replies reached the driver's socket ("—" for the Python
    drivers, or a row recorded before it was measured)."""
    ms = row.get(key)
    return "—" if ms is None else f"{ms:.3f}"


def host_cores(row):
    """The cores two busy processes got at once just before the row ("—" where it was
    not probed)."""
    cores = row.get("host_cores")
    return "—" if cores is None else f"{cores:.2f}"


def cpus_used(row):
    """The CPUs' busy and steal shares over the row, whole percents: /proc/stat counts
    10 ms ticks, about 100 of them in a short row on two CPUs."""
    busy = row.get("cpus_busy_pct")
    return "—" if busy is None else f"{busy:.0f} / {row['cpus_steal_pct']:.0f}"


def report(results, clients_list, args):
    setups = results["setups"]
    print(f"machine: {results['machine']}; n {results['n']} x {results['dim']}, "
          f"{results['queries']} queries, KNN {K} EF_RUNTIME {results['ef']}, "
          f"{results['requests_per_measurement']} requests per row, client driver "
          f"{results['driver']}"
          + (f" ({results['client_procs']} processes)" if results["client_procs"] else "")
          + f"; read mode {results['read_mode']}, follower reads {results['follower_reads']}")
    print("\n| setup | ingest vectors/s (pipelined HSET) | ingest s | all replicas indexed s "
          "| recall@10 | overlap with single |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, s in setups.items():
        ingest_cols = ("— (same data) | — | —" if "same_cluster_as" in s else
                       f"{s['ingest_vectors_per_second']:,.0f} | {s['ingest_seconds']:.1f} "
                       f"| {s['indexed_everywhere_seconds']:.1f}")
        overlap = s.get("overlap_with_single")
        print(f"| {name} | {ingest_cols} | {s['recall_at_10']:.4f} | "
              f"{'—' if overlap is None else f'{overlap:.4f}'} |")
    print("\n| setup | clients | FT.SEARCH QPS | p50 ms | p99 ms | max ms | at the socket: "
          "p50 / p99 ms | PING QPS (client ceiling) | PING p99 ms | client CPU % | client "
          "waiting for a core % | servers CPU % | host cores before | CPUs busy / steal % |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in setups.items():
        for clients, r in s["load"].items():
            print(f"| {name} | {clients} | {r['qps']:,.0f} | {r['p50_ms']:.3f} | "
                  f"{r['p99_ms']:.3f} | {r['max_ms']:.1f} | "
                  f"{at_socket(r, 'arrival_p50_ms')} / {at_socket(r)} | "
                  f"{r['ping']['qps']:,.0f} | "
                  f"{r['ping']['p99_ms']:.3f} | {r['client_cpu_pct']:.0f} | "
                  f"{waiting(r)} | {r['server_cpu_pct']:.0f} | {host_cores(r)} | "
                  f"{cpus_used(r)} |")
    top = str(max(clients_list))
    if "single" in setups:
        print()
        for name, s in setups.items():
            if name != "single" and top in s["load"]:
                ratio = s["load"][top]["qps"] / setups["single"]["load"][top]["qps"]
                print(f"{name} / single QPS at {top} clients: {ratio:.2f}")
    print()
    for name, s in setups.items():
        if name != "single" and top in s["load"]:
            p99 = s["load"][top]["p99_ms"]
            verdict = "met" if p99 < args.target_p99_ms else "NOT met"
            print(f"target p99 < {args.target_p99_ms:g} ms at {top} clients, {name}: "
                  f"{p99:.2f} ms, {verdict} (at the driver's socket: "
                  f"{at_socket(s['load'][top])} ms; host cores before the row: "
                  f"{host_cores(s['load'][top])})")
    for name, s in setups.items():
        if "leaders" in s:
            print(f"{name} leaders: " + ", ".join(f"{g} on node {l}"
                                                 for g, l in s["leaders"].items()))


if __name__ == "__main__":
    main()
