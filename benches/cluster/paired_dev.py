#!/usr/bin/env python3
"""Two `shoal dev` builds measured in turns on the same data: FT.SEARCH QPS and latency.

Usage: python benches/cluster/paired_dev.py --a NAME=SHOAL_BIN --b NAME=SHOAL_BIN
           --bench SHOAL_BENCH --data DIR [--rounds 8] [--requests 3000] [--ef 20]
           [--a-read-mode lease] [--b-read-mode read-index] [--warmup 0.5]
           [--a-flags '--routers 3'] [--b-flags ...]

The two may be one binary run two ways (`--b-read-mode lease`, `--b-flags '--routers 3'`).
Beside each row: the confirmation rounds per confirmed read over it (INFO cluster of
every routing node, before and after).

Why: on this shared VM the speed of the host drifts by a third between runs minutes
apart (docs/benchmarks.md, "Session 24"), more than most changes to a search are worth.
So both clusters are started and loaded with the bench-ann data first, then measured in
rounds, each round running every row (32 and 1 clients, default reads and READONLY) on
both, alternating which goes first. The verdict is the median over rounds. The idle
cluster only heartbeats while the other is measured.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import cluster_search as cs


def start(name, shoal, root, args, read_mode, extra):
    args.read_mode = read_mode
    procs = cs.Procs(root)
    ports = cs.start_dev(shoal, procs, root, args, 3, extra)
    conn = cs.connect(ports[0])
    try:
        rate, _ = cs.ingest(conn, args.base)
    finally:
        conn.sock.close()
    cs.wait_indexed(ports, len(args.base), True, procs, 1800)
    quiet = cs.wait_quiet(procs.pids())
    print(f"{name}: {rate:,.0f} vectors/s ingested, idle after {quiet:.1f}s",
          file=sys.stderr, flush=True)
    return procs, ports


def confirmations(port, connections=6):
    """(confirmed reads, confirmation rounds) summed over the routers that a few fresh
    connections reach: `shoal dev` hands them to its routing nodes in turn, and each
    node is counted once."""
    seen = {}
    for _ in range(connections):
        conn = cs.connect(port)
        try:
            view = cs.info_fields(conn, "cluster")
        finally:
            conn.sock.close()
        seen[view.get("shoal_node_id")] = (int(view.get("confirmed_reads", 0)),
                                           int(view.get("confirm_rounds", 0)))
    return tuple(sum(x) for x in zip(*seen.values()))


def per_read(rows):
    """The median of a row's rounds per confirmed read, or a dash where it confirmed
    none (READONLY)."""
    ratios = [x["rounds_per_read"] for x in rows if x["rounds_per_read"] is not None]
    return f"{statistics.median(ratios):.3f}" if ratios else "—"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="NAME=path of the first shoal binary")
    ap.add_argument("--b", required=True, help="NAME=path of the second shoal binary")
    ap.add_argument("--a-read-mode", choices=["votes", "read-index", "lease"],
                    help="the first cluster's --read-mode [the node's default]")
    ap.add_argument("--b-read-mode", choices=["votes", "read-index", "lease"],
                    help="the second cluster's --read-mode [the node's default]")
    ap.add_argument("--a-flags", default="",
                    help="more `shoal dev` flags for the first cluster, e.g. '--routers 3'")
    ap.add_argument("--b-flags", default="", help="the same for the second")
    ap.add_argument("--bench", required=True, help="shoal-bench binary (the load driver)")
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--ef", type=int, default=20)
    ap.add_argument("--warmup", type=float, default=0.0,
                    help="seconds each row's clients run unmeasured before it [0]")
    ap.add_argument("--client-rt", action="store_true",
                    help="the load driver at real-time priority (cluster_search.py)")
    args = ap.parse_args()
    # What cluster_search.load and start_dev read.
    args.driver, args.read_mode, args.follower_reads = "rust", None, None
    args.base = cs.load_vectors(args.data / "base.fvecs")
    queries = cs.load_vectors(args.data / "queries.fvecs")[:1000]
    search = [cs.encode("FT.SEARCH", "idx", f"*=>[KNN 10 @vec $q EF_RUNTIME {args.ef}]",
                        "PARAMS", "2", "q", q.tobytes(), "RETURN", "1", "__vec_score",
                        "DIALECT", "2") for q in queries]
    builds = [tuple(x.split("=", 1)) for x in (args.a, args.b)]
    modes = {builds[0][0]: args.a_read_mode, builds[1][0]: args.b_read_mode}
    flags = {builds[0][0]: args.a_flags.split(), builds[1][0]: args.b_flags.split()}
    if builds[0][0] == builds[1][0]:
        ap.error("--a and --b need different names")
    rows = [(ro, c) for ro in (False, True) for c in (32, 1)]
    results = {(name, ro, c): [] for name, _ in builds for ro, c in rows}
    clusters = {}
    with tempfile.TemporaryDirectory(prefix="shoal-paired-dev-") as tmp:
        try:
            for name, shoal in builds:
                root = Path(tmp) / name
                root.mkdir()
                clusters[name] = start(name, shoal, root, args, modes[name], flags[name])
            for r in range(args.rounds):
                order = [n for n, _ in builds]
                if r % 2:
                    order.reverse()
                for ro, c in rows:
                    for name in order:
                        procs, ports = clusters[name]
                        procs.check_alive()
                        before = confirmations(ports[0])
                        x = cs.load(args, ports, search, c, ro, procs.pids())
                        reads, rounds = (b - a for a, b in zip(before, confirmations(ports[0])))
                        x["rounds_per_read"] = rounds / reads if reads else None
                        results[(name, ro, c)].append(x)
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        finally:
            for procs, _ in clusters.values():
                procs.stop()
    print(f"rounds {args.rounds}, {args.requests} requests per row, KNN 10 EF_RUNTIME "
          f"{args.ef}, warm-up {args.warmup:g} s, read modes {modes}, flags {flags}, "
          "medians over rounds (p99: median and lowest); confirmation rounds per "
          "confirmed read over each row and its warm-up")
    print("| build | reads | clients | FT.SEARCH QPS | p50 ms | p99 ms | lowest p99 ms "
          "| p99 at the socket ms | servers CPU % | host cores before | rounds per read |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for ro, c in rows:
        for name, _ in builds:
            v = results[(name, ro, c)]
            med = lambda key: statistics.median(x[key] for x in v)  # noqa: E731
            print(f"| {name} | {'READONLY' if ro else 'default'} | {c} | {med('qps'):,.0f} "
                  f"| {med('p50_ms'):.3f} | {med('p99_ms'):.3f} "
                  f"| {min(x['p99_ms'] for x in v):.3f} | {med('arrival_p99_ms'):.3f} "
                  f"| {med('server_cpu_pct'):.0f} "
                  f"| {med('host_cores'):.2f} | {per_read(v)} |")


if __name__ == "__main__":
    main()
