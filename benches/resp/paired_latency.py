#!/usr/bin/env python3
"""Two `shoal dev --standalone` builds, one client each, FT.SEARCH latency in turns.

Usage: python benches/resp/paired_latency.py --a NAME=SHOAL_BIN --b NAME=SHOAL_BIN
           --data DIR [--rounds 10] [--pipelined] [--json OUT]

Why: issue #3's latency bar (search_ingest.py) is one sequential run per server, and
on this VM the in-process walk alone moves between 20 and 36 us from one hour to the
next (docs/benchmarks.md, session 44), more than most changes to the search path are
worth. Here both servers are started and ingested the way search_ingest.py does it,
then asked in rounds for one pass over the 1,000 queries each, alternating which goes
first; every search is timed right after a PING, as there. The verdict is the median
over rounds of each server's p50, and of a's over b's. Each pass also reads the server's
CPU time (schedstat), which the VM's wake-ups move less than its latency.

`--pipelined` prices the server's own path instead: each round sends a server the 1,000
searches in one write, so it answers them back to back without a wake-up between, and
the figure is its CPU per search (a change of a microsecond shows here, where the
latency's rounds move by tens).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from search_ingest import Conn, encode, ingest, latencies, load_vectors, start


def cpu_ns(pid):
    """CPU time all of a process's threads have run, in ns (schedstat's first field):
    a pass's server CPU, which the VM's wake-up cost moves far less than its latency."""
    total, read = 0, 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
            read += 1
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    if not read:
        raise RuntimeError(f"no /proc/{pid}/task/*/schedstat: a kernel without schedstats")
    return total


def pipelined(servers, payloads, args):
    """Rounds of one write of every search per server, in turns: the server's CPU and the
    wall time per search, and a's CPU minus b's paired by round."""
    batch = b"".join(payloads)
    rows = {name: {"server_cpu_us_per_search": [], "wall_us_per_search": []}
            for name, _, _ in servers}
    for r in range(args.rounds):
        order = servers if r % 2 == 0 else servers[::-1]
        for name, proc, conn in order:
            before, t0 = cpu_ns(proc.pid), time.perf_counter_ns()
            conn.sock.sendall(batch)
            conn.replies(len(payloads))
            rows[name]["wall_us_per_search"].append(
                (time.perf_counter_ns() - t0) / 1000 / len(payloads))
            rows[name]["server_cpu_us_per_search"].append(
                (cpu_ns(proc.pid) - before) / 1000 / len(payloads))
    (a, _), (b, _) = args.a, args.b
    table(f"{args.rounds} rounds of {len(payloads):,} pipelined searches", rows, a, b, 2,
          (("server_cpu_us_per_search", "server CPU per search, us (median)"),
           ("wall_us_per_search", "wall time per search, us (median)")))
    print()
    cpu = cpu_difference(rows, a, b, "server_cpu_us_per_search", "per search")
    if args.json:
        args.json.write_text(json.dumps({"pipelined": rows, "a_minus_b_cpu_us": cpu}, indent=2))


def table(title, rows, a, b, digits, keys):
    """The two servers' medians over the rounds, one row per (key, label)."""
    print(f"\n| {title} | {a} | {b} |")
    print("|---|---:|---:|")
    for key, label in keys:
        print(f"| {label} | {statistics.median(rows[a][key]):.{digits}f} | "
              f"{statistics.median(rows[b][key]):.{digits}f} |")


def cpu_difference(rows, a, b, key, per):
    """Server CPU of a minus b's, paired by round: printed, and returned per round."""
    cpu = [x - y for x, y in zip(rows[a][key], rows[b][key])]
    print(f"{a}'s server CPU {per} minus {b}'s: median {statistics.median(cpu):+.2f} us "
          f"(rounds {min(cpu):+.2f} to {max(cpu):+.2f})")
    return cpu


def named(text):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", type=named, required=True, help="NAME=path of a shoal binary")
    ap.add_argument("--b", type=named, required=True, help="NAME=path of another")
    ap.add_argument("--data", type=Path, required=True, help="dataset directory (make bench-ann's)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--pipelined", action="store_true",
                    help="each round one write of all the searches: server CPU per search")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    base = load_vectors(args.data / "base.fvecs")
    queries = load_vectors(args.data / "queries.fvecs")
    payloads = [encode("FT.SEARCH", "idx", "*=>[KNN 10 @vec $q EF_RUNTIME 20]", "PARAMS",
                       "2", "q", q.tobytes(), "RETURN", "1", "__vec_score", "DIALECT", "2")
                for q in queries]

    servers = []
    try:
        for name, binary in (args.a, args.b):
            proc, port = start(binary)
            servers.append((name, proc, Conn(port)))
            rate, _ = ingest(servers[-1][2], base)
            print(f"{name}: {rate:,.0f} vectors/s ingested", file=sys.stderr, flush=True)
        # One untimed pass each: caches, and the index's last insertions settled.
        for _, _, conn in servers:
            latencies(conn, payloads, 1)
        if args.pipelined:
            pipelined(servers, payloads, args)
            return
        rows = {name: {"search_p50_us": [], "over_ping_p50_us": [], "ping_p50_us": [],
                       "server_cpu_us_per_pair": []}
                for name, _, _ in servers}
        for r in range(args.rounds):
            order = servers if r % 2 == 0 else servers[::-1]
            for name, proc, conn in order:
                before = cpu_ns(proc.pid)
                ping, search = latencies(conn, payloads, 1)
                rows[name]["server_cpu_us_per_pair"].append(
                    (cpu_ns(proc.pid) - before) / 1000 / len(payloads))
                rows[name]["ping_p50_us"].append(statistics.median(ping))
                rows[name]["search_p50_us"].append(statistics.median(search))
                rows[name]["over_ping_p50_us"].append(
                    statistics.median(s - p for p, s in zip(ping, search)))
    finally:
        for _, proc, conn in servers:
            conn.sock.close()
            proc.terminate()
            proc.wait(timeout=60)

    (a, _), (b, _) = args.a, args.b
    ratio = [x / y for x, y in zip(rows[a]["search_p50_us"], rows[b]["search_p50_us"])]
    table(f"{args.rounds} rounds of 1,000 searches each", rows, a, b, 1,
          (("search_p50_us", "FT.SEARCH p50, us (median over rounds)"),
           ("over_ping_p50_us", "FT.SEARCH over the PING before it, p50, us"),
           ("ping_p50_us", "PING p50, us"),
           ("server_cpu_us_per_pair", "server CPU per PING and FT.SEARCH, us")))
    print(f"\n{a}'s p50 over {b}'s: median {statistics.median(ratio):.3f} "
          f"(rounds {min(ratio):.3f}-{max(ratio):.3f})")
    cpu = cpu_difference(rows, a, b, "server_cpu_us_per_pair", "per pair")
    if args.json:
        args.json.write_text(json.dumps({"rounds": rows, "a_over_b": ratio,
                                         "a_minus_b_cpu_us": cpu}, indent=2))


if __name__ == "__main__":
    main()
