#!/usr/bin/env python3
"""Paired QPS comparison of Shoal's HNSW against hnswlib: passes taken in turns.

Usage: python benches/paired.py --bench BIN --base B --queries Q --groundtruth G
                                --metric l2|ip|cosine [--builds 3] [--rounds 15]
                                [--ef-search 10,20,40,80,160] [--json OUT]

Why: the sequential benchmark (run_ann.sh) measures all of Shoal, then all of
hnswlib. On a shared virtual machine the speed of the host drifts by 10-20%
within minutes, so the ratio of two sequential medians can be off by more than
the 1.2x target is wide. Here both engines hold a built index in their own idle
process (`shoal-bench ann --serve`, `run_peer.py --serve`) and this script asks
them for single-thread passes over all queries in turns, alternating who goes
first. A turn is one untimed pass (the other engine has just evicted this one's
caches) and the median of a few timed ones. Each round gives one ratio from two
turns a fraction of a second apart; the
verdict is the median ratio over rounds and builds, with the spread of the
per-build medians beside it.

Only one process computes at a time: the other waits on a pipe. The builds run
one after the other (each with --build-threads), never together.
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

BENCHES = Path(__file__).resolve().parent
RUN_PEER = BENCHES / "peers" / "run_peer.py"
# shoal-bench's default level seed (HnswParams::default().seed) and run_peer.py's:
# build i of a paired run uses seed + i for each, as the sequential benchmark does.
SHOAL_SEED = 24301
PEER_SEED = 100
# Untimed passes per engine before each ef's rounds (caches, branch predictors).
WARMUP_PASSES = 2
# Timed passes per turn (after one untimed pass that reloads the caches the other
# engine evicted): a turn lasts 50-300 ms, short against the host's drift.
PASSES_PER_TURN = 5
QPS_TARGET = 1.2


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, required=True, help="the shoal-bench binary")
    parser.add_argument("--python", default=sys.executable, help="interpreter for run_peer.py")
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--groundtruth", type=Path, required=True)
    parser.add_argument("--metric", choices=("l2", "ip", "cosine"), required=True)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--ef-search", default="10,20,40,80,160")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=15, help="paired passes per ef and build")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.ef_search = [int(ef) for ef in args.ef_search.split(",")]
    if args.builds < 1 or args.rounds < 1:
        parser.error("--builds and --rounds must be at least 1")
    return args


class Server:
    """One engine in `--serve` mode: requests on its stdin, one answer line each."""

    def __init__(self, name, cmd):
        self.name = name
        self.proc = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.build_seconds = float(self._answer("ready").split()[1])

    def _answer(self, expect=None):
        line = self.proc.stdout.readline()
        if not line or (expect and not line.startswith(expect)):
            code = self.proc.poll()
            raise RuntimeError(f"{self.name} answered {line!r} (exit status {code})")
        return line

    def ask(self, request):
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        return float(self._answer())

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def common(args):
    return ["--base", args.base, "--queries", args.queries, "--groundtruth", args.groundtruth,
            "--metric", args.metric, "--m", args.m, "--ef-construction", args.ef_construction,
            "--k", args.k, "--build-threads", args.build_threads, "--algo", "hnsw", "--serve"]


def paired_rounds(shoal, peer, ef, rounds):
    """Per round: (shoal seconds, peer seconds); the first to run alternates."""
    for server in (shoal, peer):
        server.ask(f"pass {ef} {WARMUP_PASSES}")
    request = f"pass {ef} {PASSES_PER_TURN}"
    out = []
    for r in range(rounds):
        if r % 2 == 0:
            s, p = shoal.ask(request), peer.ask(request)
        else:
            p, s = peer.ask(request), shoal.ask(request)
        out.append((s, p))
    return out


def one_build(args, b, num_queries):
    """Builds both engines' index b and measures every ef; returns per-ef records."""
    shoal = Server("shoal", [args.bench, "ann", *common(args), "--seed", SHOAL_SEED + b])
    try:
        peer = Server("hnswlib", [args.python, RUN_PEER, "--engine", "hnswlib", *common(args),
                                  "--seed", PEER_SEED + b])
    except BaseException:
        shoal.close()
        raise
    try:
        records = []
        for ef in args.ef_search:
            pairs = paired_rounds(shoal, peer, ef, args.rounds)
            ratios = [p / s for s, p in pairs]
            records.append({
                "ef": ef,
                "shoal_recall": shoal.ask(f"recall {ef}"),
                "hnswlib_recall": peer.ask(f"recall {ef}"),
                "shoal_qps": num_queries / statistics.median(s for s, _ in pairs),
                "hnswlib_qps": num_queries / statistics.median(p for _, p in pairs),
                "ratios": ratios,
            })
            print(f"build {b} ef {ef}: ratio {statistics.median(ratios):.3f} "
                  f"(shoal {records[-1]['shoal_qps']:.0f} QPS, "
                  f"hnswlib {records[-1]['hnswlib_qps']:.0f})", file=sys.stderr)
        return shoal.build_seconds, peer.build_seconds, records
    finally:
        shoal.close()
        peer.close()


def count_queries(path):
    """Rows of an .fvecs or .npy file, without loading the vectors."""
    sys.path.insert(0, str(BENCHES))
    from vecs import load_vectors  # noqa: E402
    return len(load_vectors(path))


def summarize(args, builds):
    """Per ef: mean recalls, median QPS, the pooled median ratio and per-build spread."""
    rows = []
    for j, ef in enumerate(args.ef_search):
        per_build = [records[j] for _, _, records in builds]
        pooled = [r for rec in per_build for r in rec["ratios"]]
        build_medians = [statistics.median(rec["ratios"]) for rec in per_build]
        rows.append({
            "ef": ef,
            "shoal_recall": statistics.mean(rec["shoal_recall"] for rec in per_build),
            "hnswlib_recall": statistics.mean(rec["hnswlib_recall"] for rec in per_build),
            "shoal_qps": statistics.median(rec["shoal_qps"] for rec in per_build),
            "hnswlib_qps": statistics.median(rec["hnswlib_qps"] for rec in per_build),
            "ratio": statistics.median(pooled),
            "ratio_build_min": min(build_medians),
            "ratio_build_max": max(build_medians),
            "rounds_at_target": sum(r >= QPS_TARGET for r in pooled) / len(pooled),
            "ratios_per_build": [rec["ratios"] for rec in per_build],
        })
    return rows


def print_table(args, rows, builds):
    shoal_build = statistics.median(s for s, _, _ in builds)
    peer_build = statistics.median(p for _, p, _ in builds)
    print(f"\n### HNSW {args.metric}, paired passes ({len(builds)} builds x "
          f"{args.rounds} rounds)\n")
    print("| ef | shoal recall | hnswlib recall | Δ | shoal QPS | hnswlib QPS "
          "| paired ratio (per-build range) | rounds ≥ 1.2 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ef']} | {r['shoal_recall']:.4f} | {r['hnswlib_recall']:.4f} "
              f"| {r['shoal_recall'] - r['hnswlib_recall']:+.4f} | {r['shoal_qps']:.0f} "
              f"| {r['hnswlib_qps']:.0f} | **{r['ratio']:.2f}** "
              f"({r['ratio_build_min']:.2f}–{r['ratio_build_max']:.2f}) "
              f"| {100 * r['rounds_at_target']:.0f}% |")
    print(f"\nbuild seconds (median): shoal {shoal_build:.2f}, hnswlib {peer_build:.2f}")


def main():
    args = parse_args()
    num_queries = count_queries(args.queries)
    builds = [one_build(args, b, num_queries) for b in range(args.builds)]
    rows = summarize(args, builds)
    print_table(args, rows, builds)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {"engines": ["shoal", "hnswlib"], "metric": args.metric, "k": args.k,
                  "m": args.m, "ef_construction": args.ef_construction,
                  "builds": args.builds, "rounds": args.rounds,
                  "build_seconds": [[s, p] for s, p, _ in builds], "runs": rows}
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
