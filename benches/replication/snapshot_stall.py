#!/usr/bin/env python3
"""How long a Raft snapshot holds up writes: `make bench-snapshot`.

Three `shoal node` processes (one group) hold an HNSW index of N vectors (dim 128,
random) in N hashes. One client writes `SET` in a loop on the leader and records every
latency with its start time; meanwhile `RAFT SNAPSHOT` is triggered on the leader and
the snapshot's index is polled until the build is done. The table compares the write
latencies inside each build's window with those before it: a build that holds the state
machine's lock shows up as one write waiting for the whole serialization. Two builds: the
first replays the whole log, the next starts from the first.

Prints a markdown table and writes JSON (`--json`).
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import threading
import time

import numpy as np
import redis

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from replication_bench import Procs, info_fields, start_cluster  # noqa: E402

DIM = 128


def ingest(client, n, batch=500):
    client.execute_command(
        "FT.CREATE", "idx", "ON", "HASH", "PREFIX", "1", "v:", "SCHEMA", "vec", "VECTOR",
        "HNSW", "10", "TYPE", "FLOAT32", "DIM", str(DIM), "DISTANCE_METRIC", "L2",
        "M", "16", "EF_CONSTRUCTION", "100")
    rng = np.random.default_rng(7)
    for start in range(0, n, batch):
        vecs = rng.random((min(batch, n - start), DIM), dtype=np.float32)
        pipe = client.pipeline(transaction=False)
        for i, v in enumerate(vecs):
            pipe.hset(f"v:{start + i}", mapping={"vec": v.tobytes(), "n": start + i})
        pipe.execute()


def writer(port, stop, samples):
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=60)
    i = 0
    while not stop.is_set():
        t = time.perf_counter()
        client.set(f"w:{i % 1000}", i)
        samples.append((t, time.perf_counter() - t))
        i += 1


def summary(latencies):
    if not latencies:
        return {"writes": 0}
    a = np.sort(np.array(latencies)) * 1e3
    return {"writes": len(a), "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a[-1])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", required=True)
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--json")
    args = ap.parse_args()

    results = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
               "vectors": args.vectors, "dim": DIM}
    base = pathlib.Path(os.environ.get("BENCH_TMP", tempfile.gettempdir()))
    procs = Procs()
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        try:
            # No snapshot on its own during the run: only the one triggered below.
            leader, _, _ = start_cluster(args.shoal, pathlib.Path(tmp), procs,
                                         extra=["--snapshot-after-logs", "100000000"])
            client = redis.Redis(host="127.0.0.1", port=leader, socket_timeout=600)
            t = time.perf_counter()
            ingest(client, args.vectors)
            results["ingest_s"] = time.perf_counter() - t

            stop, samples = threading.Event(), []
            thread = threading.Thread(target=writer, args=(leader, stop, samples))
            thread.start()
            time.sleep(2.0)
            windows = []
            # The first build has no snapshot to start from; the second starts from the
            # first and replays only what was written since (the writes of the first).
            for _ in range(2):
                before_index = int(info_fields(leader, "raft")["raft_snapshot_index"])
                started = time.perf_counter()
                client.execute_command("RAFT", "SNAPSHOT")
                while int(info_fields(leader, "raft")["raft_snapshot_index"]) == before_index:
                    if time.perf_counter() - started > 600:
                        raise TimeoutError("the snapshot was not built in 10 minutes")
                    time.sleep(0.01)
                windows.append((started, time.perf_counter()))
                time.sleep(2.0)
            stop.set()
            thread.join()
        finally:
            procs.stop()

    # A write counts as inside a build when any part of it overlaps the build's window.
    first_start = windows[0][0]
    results["before"] = summary([d for s, d in samples if s + d <= first_start])
    results["builds"] = []
    for started, finished in windows:
        during = summary([d for s, d in samples if s < finished and s + d > started])
        during["build_s"] = finished - started
        results["builds"].append(during)

    print(f"machine: {results['machine']}")
    print(f"\n{args.vectors} vectors x {DIM} (HNSW M 16) ingested in {results['ingest_s']:.1f} s;"
          " build time is from the trigger to the snapshot index moving (polled every 10 ms)\n")
    print("| SET on the leader, one client | build s | writes | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [("before any build", None, results["before"])]
    rows += [(name, b["build_s"], b) for name, b in
             zip(("during the first build", "during the next build"), results["builds"])]
    for name, build_s, r in rows:
        build = f"{build_s:.1f}" if build_s is not None else "-"
        if r["writes"]:
            print(f"| {name} | {build} | {r['writes']} | {r['p50_ms']:.2f} | "
                  f"{r['p99_ms']:.2f} | {r['max_ms']:.1f} |")
        else:
            print(f"| {name} | {build} | 0 | - | - | - |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
