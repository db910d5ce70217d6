#!/usr/bin/env python3
"""Benchmark a peer ANN library (hnswlib or faiss) the same way as Shoal's tool.

Same CLI and JSON schema as the Rust benchmark, plus --engine, so that
benches/compare.py can put the numbers side by side. The measurement rules
(see benches/peers/README.md) are chosen so the peers are not penalised for
being driven from Python: a timed pass of the HNSW throughput is one batched
native call over all queries, and only the per-query latency percentiles
include the Python call overhead, which the JSON flags explicitly. Every QPS
figure follows the Rust tool's policy (benches/src/ann.rs, `time_passes`):
warm up, repeat the pass until both a minimum count and a minimum time are
reached, report the median pass.
"""

import argparse
import json
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vecs import METRICS, exact_knn, load_ids, load_vectors, normalized  # noqa: E402

# Distribution whose version is recorded with each engine's results.
ENGINE_PACKAGES = {"hnswlib": "hnswlib", "faiss": "faiss-cpu"}
# QPS timing policy, identical to benches/src/ann.rs (WARMUP, MIN_PASSES,
# MIN_TIMED): whole passes are repeated for WARMUP_SECONDS (at least one;
# after a thread-count change faiss/OpenMP also needs several calls before
# timings settle), then timed until at least MIN_PASSES passes AND
# MIN_TIMED_SECONDS have elapsed; the median pass is reported.
WARMUP_SECONDS = 0.2
MIN_PASSES = 3
MIN_TIMED_SECONDS = 1.0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=tuple(ENGINE_PACKAGES), required=True)
    parser.add_argument("--base", type=Path, required=True, help=".fvecs or .npy")
    parser.add_argument("--queries", type=Path, required=True, help=".fvecs or .npy")
    parser.add_argument("--groundtruth", type=Path,
                        help=".ivecs or .npy; computed exactly when omitted")
    parser.add_argument("--metric", choices=METRICS, required=True)
    parser.add_argument("--algo", choices=("hnsw", "flat"), required=True)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--ef-search", default="10,20,40,80,160",
                        help="comma-separated ef values for HNSW search")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="search threads")
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args()
    args.ef_search = [int(ef) for ef in args.ef_search.split(",")]
    if args.k < 1:
        parser.error("--k must be at least 1")  # as the Rust tool; recall divides by k
    if args.engine == "hnswlib" and args.algo != "hnsw":
        parser.error("hnswlib supports only --algo hnsw")
    return args


def rss_bytes():
    """Resident set size of this process, from /proc/self/statm."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def recall(found, truth, k):
    """Mean over queries of |found top-k ∩ truth top-k| / k."""
    hits = sum(len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth))
    return hits / (k * len(truth))


def single_rows(queries):
    """One (1, dim) view per query, sliced up front so loops time only the search calls."""
    return [queries[i:i + 1] for i in range(len(queries))]


def time_passes(run_pass):
    """Median wall seconds of run_pass(), which answers every query once.

    Same policy as `time_passes` in benches/src/ann.rs: repeat whole passes
    for WARMUP_SECONDS (at least one), then time passes until at least
    MIN_PASSES have run and MIN_TIMED_SECONDS have elapsed, and return the
    median (for an even count the upper middle one, as the Rust tool does).
    """
    warm_started = time.perf_counter()
    while time.perf_counter() - warm_started < WARMUP_SECONDS:
        run_pass()
    times = []
    started = time.perf_counter()
    while len(times) < MIN_PASSES or time.perf_counter() - started < MIN_TIMED_SECONDS:
        t0 = time.perf_counter()
        run_pass()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def latency_stats(single_search, queries):
    """Time one search call per query; return (p50 us, p99 us).

    The single-row views are sliced before timing so only the search call
    itself (including its Python binding overhead) is measured.
    """
    rows = single_rows(queries)
    samples = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        t0 = time.perf_counter_ns()
        single_search(row)
        samples[i] = time.perf_counter_ns() - t0
    p50, p99 = np.percentile(samples, [50, 99]) / 1e3
    return float(p50), float(p99)


class HnswlibEngine:
    """hnswlib HNSW; its 'ip' and 'cosine' spaces match our 1-dot / 1-cos."""

    def __init__(self, args, dim):
        import hnswlib
        self.index = hnswlib.Index(space=args.metric, dim=dim)
        self.args = args
        self.threads = args.threads

    def build(self, base):
        self.index.set_num_threads(self.args.build_threads)
        self.index.init_index(max_elements=len(base), ef_construction=self.args.ef_construction,
                              M=self.args.m, random_seed=100)
        self.index.add_items(base, np.arange(len(base)), num_threads=self.args.build_threads)

    def prepare_search(self, ef, threads):
        self.threads = threads
        self.index.set_num_threads(threads)
        self.index.set_ef(ef)

    def search(self, queries):
        labels, _ = self.index.knn_query(queries, k=self.args.k, num_threads=self.threads)
        return labels


class FaissEngine:
    """faiss IndexFlat* / IndexHNSWFlat; cosine = normalised vectors + inner product."""

    def __init__(self, args, dim):
        import faiss
        self.faiss = faiss
        self.args = args
        inner = args.metric in ("ip", "cosine")
        if args.algo == "flat":
            self.index = faiss.IndexFlatIP(dim) if inner else faiss.IndexFlatL2(dim)
        else:
            metric = faiss.METRIC_INNER_PRODUCT if inner else faiss.METRIC_L2
            self.index = faiss.IndexHNSWFlat(dim, args.m, metric)
            self.index.hnsw.efConstruction = args.ef_construction

    def build(self, base):
        self.faiss.omp_set_num_threads(self.args.build_threads)
        self.index.add(base)

    def prepare_search(self, ef, threads):
        self.faiss.omp_set_num_threads(threads)
        if ef is not None:
            self.index.hnsw.efSearch = ef

    def search(self, queries):
        _, labels = self.index.search(queries, self.args.k)
        return labels


def measure(engine, queries, truth, args, ef):
    """One HNSW row: recall from a batched call, QPS as the median batched pass,
    then per-query latencies."""
    engine.prepare_search(ef, args.threads)
    labels = engine.search(queries)
    pass_seconds = time_passes(lambda: engine.search(queries))
    p50, p99 = latency_stats(engine.search, queries)
    return {"ef": ef, "recall": recall(labels, truth, args.k),
            "qps": len(queries) / pass_seconds, "p50_us": p50, "p99_us": p99}


def measure_flat(engine, queries, truth, args):
    """FLAT row: QPS one query at a time, plus batched QPS on all build threads.

    A pass of the one-at-a-time QPS is a Python loop of single-query calls
    with --threads threads; a single exhaustive query costs milliseconds, so
    the Python call overhead in it is negligible. A pass of batch_qps is one
    call over all queries with --build-threads threads (the BLAS path). Both
    are timed by time_passes, like the Rust tool.
    """
    engine.prepare_search(None, args.threads)
    rows = single_rows(queries)

    def one_at_a_time():
        for row in rows:
            engine.search(row)

    single_seconds = time_passes(one_at_a_time)
    p50, p99 = latency_stats(engine.search, queries)
    engine.prepare_search(None, args.build_threads)
    labels = engine.search(queries)
    batch_seconds = time_passes(lambda: engine.search(queries))
    run = {"ef": None, "recall": recall(labels, truth, args.k),
           "qps": len(queries) / single_seconds, "p50_us": p50, "p99_us": p99}
    return run, len(queries) / batch_seconds


def print_table(result):
    """Human-readable summary of the JSON result."""
    print(f"{result['engine']} {result['algo']} {result['metric']}  n={result['n']} "
          f"dim={result['dim']} k={result['k']}  build {result['build_seconds']:.2f}s  "
          f"{result['bytes_per_vector']:.1f} B/vec")
    print(f"{'ef':>6} {'recall':>8} {'qps':>10} {'p50_us':>9} {'p99_us':>9}")
    for run in result["runs"]:
        ef = "-" if run["ef"] is None else run["ef"]
        print(f"{ef:>6} {run['recall']:>8.4f} {run['qps']:>10.1f} "
              f"{run['p50_us']:>9.1f} {run['p99_us']:>9.1f}")
    if "batch_qps" in result:
        print(f"batch qps ({result['batch_threads']} threads): {result['batch_qps']:.1f}")


def write_json(path, result):
    """Write via a .tmp file and rename, so compare.py never reads a partial result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)


def main():
    args = parse_args()
    base = load_vectors(args.base)
    queries = load_vectors(args.queries)
    if base.shape[1] != queries.shape[1]:
        sys.exit(f"dimension mismatch: base {base.shape[1]}, queries {queries.shape[1]}")
    if args.groundtruth:
        truth = load_ids(args.groundtruth)
    else:
        truth = exact_knn(base, queries, args.metric, args.k)
    if truth.shape[0] != len(queries) or truth.shape[1] < args.k:
        sys.exit(f"ground truth shape {truth.shape} does not cover "
                 f"{len(queries)} queries x k={args.k}")
    if args.engine == "faiss" and args.metric == "cosine":
        base, queries = normalized(base), normalized(queries)
    n, dim = base.shape

    engine = (HnswlibEngine if args.engine == "hnswlib" else FaissEngine)(args, dim)
    rss_before = rss_bytes()
    t0 = time.perf_counter()
    engine.build(base)
    build_seconds = time.perf_counter() - t0
    bytes_per_vector = (rss_bytes() - rss_before) / n

    result = {
        "engine": args.engine, "engine_version": version(ENGINE_PACKAGES[args.engine]),
        "algo": args.algo, "metric": args.metric, "n": n, "dim": dim, "k": args.k,
        "num_queries": len(queries),
        "m": args.m if args.algo == "hnsw" else None,
        "ef_construction": args.ef_construction if args.algo == "hnsw" else None,
        "build_threads": args.build_threads, "search_threads": args.threads,
        "build_seconds": build_seconds, "bytes_per_vector": bytes_per_vector,
        "latency_includes_python_call": True,
    }
    if args.algo == "flat":
        run, batch_qps = measure_flat(engine, queries, truth, args)
        result.update(runs=[run], batch_qps=batch_qps, batch_threads=args.build_threads)
    else:
        result["runs"] = [measure(engine, queries, truth, args, ef) for ef in args.ef_search]

    print_table(result)
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
