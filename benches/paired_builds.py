#!/usr/bin/env python3
"""Paired QPS comparison of two shoal-bench builds on the same graph: passes in turns.

Usage: python benches/paired_builds.py --a NAME=BIN --b NAME=BIN --base B --queries Q
                                       --groundtruth G --metric l2|ip|cosine
                                       [--ef-search 10,20,40,80] [--rounds 10] [--json OUT]

Why: a change to the walk moves its speed by a few percent, less than this VM's drift
between two sequential runs. Both builds hold an index in their own idle process
(`shoal-bench ann --serve`), built with one thread and the same seed, so that both
walk the same graph when the change leaves the graph alone; this script asks them for
single-thread passes in turns, as benches/paired.py does against hnswlib, and reports
the median ratio of a's time to b's (above 1: b is faster). Recall is reported for both:
a change meant to move only timing must leave it identical.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

from paired import SHOAL_SEED, Server, common, count_queries, paired_rounds


def named(text):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=named, required=True, help="NAME=path of a shoal-bench")
    parser.add_argument("--b", type=named, required=True, help="NAME=path of another")
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--groundtruth", type=Path, required=True)
    parser.add_argument("--metric", choices=("l2", "ip", "cosine"), required=True)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--ef-search", default="10,20,40,80")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10, help="paired turns per ef")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.ef_search = [int(ef) for ef in args.ef_search.split(",")]
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    # One build thread: a parallel build is not repeatable, and the pair must walk one graph.
    args.build_threads = 1
    return args


def serve(args, name, binary):
    return Server(name, [binary, "ann", *common(args), "--seed", SHOAL_SEED])


def measure(args, a, b, num_queries):
    rows = []
    for ef in args.ef_search:
        pairs = paired_rounds(a, b, ef, args.rounds)
        ratios = [ta / tb for ta, tb in pairs]
        rows.append({
            "ef": ef,
            "a_recall": a.ask(f"recall {ef}"),
            "b_recall": b.ask(f"recall {ef}"),
            "a_qps": num_queries / statistics.median(ta for ta, _ in pairs),
            "b_qps": num_queries / statistics.median(tb for _, tb in pairs),
            "speedup": statistics.median(ratios),
            "speedup_min": min(ratios),
            "speedup_max": max(ratios),
            "ratios": ratios,
        })
    return rows


def main():
    args = parse_args()
    (a_name, a_bin), (b_name, b_bin) = args.a, args.b
    num_queries = count_queries(args.queries)
    # Built one after the other: never two builds at once.
    a = serve(args, a_name, a_bin)
    try:
        b = serve(args, b_name, b_bin)
        try:
            rows = measure(args, a, b, num_queries)
        finally:
            b.close()
    finally:
        a.close()
    print(f"\n### HNSW {args.metric}: {b_name} against {a_name}, {args.rounds} paired turns "
          f"per ef, one graph\n")
    print(f"| ef | {a_name} recall | {b_name} recall | {a_name} QPS | {b_name} QPS "
          f"| {b_name} / {a_name} (range) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ef']} | {r['a_recall']:.4f} | {r['b_recall']:.4f} | {r['a_qps']:.0f} "
              f"| {r['b_qps']:.0f} | **{r['speedup']:.3f}×** "
              f"({r['speedup_min']:.3f}–{r['speedup_max']:.3f}) |")
    if any(r["a_recall"] != r["b_recall"] for r in rows):
        print("\nrecall differs: the two builds do not walk the same way", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {"a": [a_name, str(a_bin)], "b": [b_name, str(b_bin)],
                  "metric": args.metric, "k": args.k, "m": args.m,
                  "ef_construction": args.ef_construction, "rounds": args.rounds,
                  "build_seconds": [a.build_seconds, b.build_seconds], "runs": rows}
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
