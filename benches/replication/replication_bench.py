#!/usr/bin/env python3
"""Replicated writes, measured: `make bench-replication`.

In one run, on this machine:

1. fsync on its own: write 4 KiB + fdatasync in a loop, in the directory the nodes use.
2. HSET through redis-benchmark against three `shoal node` processes (one group, three
   replicas on loopback): 1 and 64 clients, unpipelined and pipeline 16, throughput and
   p50/p99 latency; with the leader's WAL syncs per write (group commit).
3. The same workload against one unreplicated `shoal dev --standalone`, for the ratio.
4. Idle cost: three nodes hosting 64 groups each, nothing written; CPU time of each
   process over a window, as % of one core.

Prints markdown tables and writes JSON (`--json`).
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "clients"))
from loopback import free_port  # noqa: E402


def redis_cli(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                         text=True, timeout=30)
    return out.stdout.strip()


def info_fields(port, section):
    fields = {}
    for line in redis_cli(port, "INFO", section).splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k] = v
    return fields


def fsync_cost(directory, rounds=2000):
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    block = b"x" * 4096
    times = []
    try:
        for _ in range(rounds):
            os.write(fd, block)
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return {"p50_us": times[len(times) // 2] * 1e6,
            "p99_us": times[int(len(times) * 0.99)] * 1e6,
            "per_s": len(times) / sum(times)}


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, args):
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = p.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"{args[:2]} did not start")
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []


def start_cluster(shoal, root, procs, groups=1, extra=()):
    nodes = [(i + 1, "abc"[i], free_port(), free_port()) for i in range(3)]
    members = []
    for node_id, zone, resp, grpc in nodes:
        members += ["--member", f"{node_id},{zone},127.0.0.1:{grpc},127.0.0.1:{resp}"]
    pids = []
    for node_id, zone, resp, grpc in nodes:
        p = procs.start([shoal, "node", "--id", str(node_id), "--zone", zone,
                         "--resp", f"127.0.0.1:{resp}", "--grpc", f"127.0.0.1:{grpc}",
                         "--data-dir", str(root / f"node-{node_id}"),
                         "--groups", str(groups), *extra, *members])
        pids.append(p.pid)
    ports = [n[2] for n in nodes]
    # Settled: every node names the same leader, and it says so itself, twice in a row
    # a second apart (a first election may still be followed by another).
    deadline = time.time() + 60
    agreed = None
    while time.time() < deadline:
        fields = [info_fields(port, "raft") for port in ports]
        leaders = {f.get("raft_leader_resp") for f in fields}
        roles = [f.get("raft_role") for f in fields]
        leader = leaders.pop() if len(leaders) == 1 else None
        if leader and roles.count("leader") == 1:
            if agreed == leader:
                return int(leader.rsplit(":", 1)[1]), ports, pids
            agreed = leader
            time.sleep(1.0)
            continue
        agreed = None
        time.sleep(0.1)
    raise TimeoutError("no leader")


def bench(port, clients, pipeline, requests):
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients),
         "-n", str(requests), "-P", str(pipeline), "-t", "hset", "--csv", "-q",
         "-r", "1000000"],
        capture_output=True, text=True, timeout=600)
    rows = [line.replace('"', "").split(",") for line in out.stdout.strip().splitlines()]
    if len(rows) < 2:
        raise RuntimeError(f"redis-benchmark gave no result: {out.stderr.strip()[-500:]}")
    header, values = rows[0], rows[-1]
    row = dict(zip(header, values))
    return {"rps": float(row["rps"]), "p50_ms": float(row["p50_latency_ms"]),
            "p99_ms": float(row["p99_latency_ms"])}


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", required=True)
    ap.add_argument("--json")
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    args = ap.parse_args()

    results = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus"}
    base = pathlib.Path(os.environ.get("BENCH_TMP", tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        root = pathlib.Path(tmp)
        results["fsync"] = fsync_cost(tmp)

        cases = [(1, 1), (64, 1), (1, 16), (64, 16)]
        procs = Procs()
        try:
            leader, _, _ = start_cluster(args.shoal, root / "replicated", procs)
            replicated = {}
            for clients, pipeline in cases:
                n = args.requests // (10 if clients == 1 and pipeline == 1 else 1)
                before = info_fields(leader, "raft")
                r = bench(leader, clients, pipeline, n)
                after = info_fields(leader, "raft")
                syncs = int(after["raft_log_syncs"]) - int(before["raft_log_syncs"])
                r["writes_per_leader_fsync"] = n / max(syncs, 1)
                replicated[f"{clients}x{pipeline}"] = r
            results["replicated"] = replicated
        finally:
            procs.stop()

        try:
            port = free_port()
            procs.start([args.shoal, "dev", "--standalone", "--api", "127.0.0.1:0", "--resp", f"127.0.0.1:{port}"])
            single = {}
            for clients, pipeline in cases:
                n = args.requests // (10 if clients == 1 and pipeline == 1 else 1)
                single[f"{clients}x{pipeline}"] = bench(port, clients, pipeline, n)
            results["unreplicated"] = single
        finally:
            procs.stop()

        try:
            _, _, pids = start_cluster(args.shoal, root / "idle", procs, groups=64)
            time.sleep(5)  # elections settle
            before = [cpu_seconds(p) for p in pids]
            time.sleep(args.idle_seconds)
            after = [cpu_seconds(p) for p in pids]
            results["idle_64_groups_core_pct"] = [
                100 * (a - b) / args.idle_seconds for a, b in zip(after, before)]
        finally:
            procs.stop()

    f = results["fsync"]
    print(f"machine: {results['machine']}")
    print(f"\nfdatasync of 4 KiB: p50 {f['p50_us']:.0f} µs, p99 {f['p99_us']:.0f} µs "
          f"({f['per_s']:.0f}/s one at a time)\n")
    print("| clients × pipeline | replicated HSET/s | p50 ms | p99 ms | writes per leader fsync "
          "| unreplicated HSET/s | p50 ms | p99 ms | replicated / unreplicated |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key, r in results["replicated"].items():
        u = results["unreplicated"][key]
        print(f"| {key.replace('x', ' × ')} | {r['rps']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} "
              f"| {r['writes_per_leader_fsync']:.1f} | {u['rps']:.0f} | {u['p50_ms']:.3f} "
              f"| {u['p99_ms']:.3f} | {r['rps'] / u['rps']:.2f} |")
    idle = results["idle_64_groups_core_pct"]
    print(f"\n64 idle groups per node, 3 nodes: CPU "
          + ", ".join(f"{x:.1f}%" for x in idle) + " of one core")
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
