#!/usr/bin/env python3
"""VECTOR_RANGE on two `shoal dev --standalone` builds: recall against brute force, and
each server's CPU per query, in turns.

Usage: python benches/resp/paired_range.py --a NAME=SHOAL_BIN --b NAME=SHOAL_BIN
           --data DIR [--queries 300] [--ranks 10,100] [--rounds 10] [--json OUT]

Why: a range search's answer is every document within its radius, and an HNSW walk can
miss some; what a change to the walk buys is recall, and what it costs is time. Both
servers are ingested as search_ingest.py does it (HNSW M 16, EF_CONSTRUCTION 200, the
default EF_RUNTIME and EPSILON). For each rank r, each query's radius lies halfway
between its r-th and (r+1)-th nearest base vectors (squared L2, as the server measures),
so r documents are inside. Recall is the share of them found; a document returned from
beyond the radius is counted apart. Time is the server's CPU per query with the
queries pipelined (one write a round, as `paired_latency.py --pipelined`), the servers
taking turns going first.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from paired_latency import cpu_ns, named
from search_ingest import Conn, encode, ingest, load_vectors, start


def radii_and_truth(base, queries, rank):
    """Per query: the radius holding its `rank` nearest, and their ids."""
    base64 = base.astype(np.float64)
    norms = (base64 ** 2).sum(1)
    radii, truth = [], []
    for q in queries.astype(np.float64):
        d = norms - 2 * base64 @ q + (q ** 2).sum()
        part = np.partition(d, [rank - 1, rank])
        radius = (part[rank - 1] + part[rank]) / 2
        radii.append(float(radius))
        truth.append(set(np.nonzero(d <= radius)[0].tolist()))
    return radii, truth


def requests(queries, radii):
    return [encode("FT.SEARCH", "idx", "@vec:[VECTOR_RANGE $r $q]=>{$YIELD_DISTANCE_AS: d}",
                   "PARAMS", "4", "r", repr(r), "q", q.tobytes(), "NOCONTENT",
                   "LIMIT", "0", "10000", "DIALECT", "2")
            for q, r in zip(queries, radii)]


def recall(conn, payloads, truth):
    """(share of the in-radius documents found, documents returned beyond the radius)."""
    found = wanted = beyond = 0
    for payload, inside in zip(payloads, truth):
        conn.sock.sendall(payload)
        reply = conn.replies(1)[0]
        got = {int(key.decode().split(":", 1)[1]) for key in reply[1:]}
        found += len(got & inside)
        wanted += len(inside)
        beyond += len(got - inside)
    return found / wanted, beyond


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", type=named, required=True, help="NAME=path of a shoal binary")
    ap.add_argument("--b", type=named, required=True, help="NAME=path of another")
    ap.add_argument("--data", type=Path, required=True, help="dataset directory (make bench-ann's)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--ranks", default="10,100", help="documents inside each radius, comma-separated")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    base = load_vectors(args.data / "base.fvecs")
    queries = load_vectors(args.data / "queries.fvecs")[:args.queries]
    ranks = [int(r) for r in args.ranks.split(",")]
    # A page holds at most 10,000 (LIMIT's bound), and a radius needs a next nearest.
    if any(not 0 < r < min(len(base), 10_000) for r in ranks):
        ap.error(f"ranks must be between 1 and {min(len(base), 10_000) - 1}")

    servers = []
    try:
        for name, binary in (args.a, args.b):
            proc, port = start(binary)
            servers.append((name, proc, None))
            conn = Conn(port)
            ingest(conn, base)
            servers[-1] = (name, proc, conn)
        out = {"ranks": {}}
        print("| inside the radius | server | recall | returned beyond the radius | server CPU per query, median µs (rounds) |")
        print("|---:|---|---:|---:|---|")
        for rank in ranks:
            radii, truth = radii_and_truth(base, queries, rank)
            payloads = requests(queries, radii)
            rows = {name: {"recall": None, "beyond": None, "cpu_us": []} for name, _, _ in servers}
            for name, _, conn in servers:
                rows[name]["recall"], rows[name]["beyond"] = recall(conn, payloads, truth)
            batch = b"".join(payloads)
            for r in range(args.rounds):
                for name, proc, conn in (servers if r % 2 == 0 else servers[::-1]):
                    before = cpu_ns(proc.pid)
                    conn.sock.sendall(batch)
                    conn.replies(len(payloads))
                    rows[name]["cpu_us"].append((cpu_ns(proc.pid) - before) / 1000 / len(payloads))
            for name, row in rows.items():
                cpu = row["cpu_us"]
                print(f"| {rank} | {name} | {row['recall']:.4f} | {row['beyond']} | "
                      f"{statistics.median(cpu):.1f} ({min(cpu):.1f}–{max(cpu):.1f}) |")
            out["ranks"][str(rank)] = rows
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))
    finally:
        for _, proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
