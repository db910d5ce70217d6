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
reached, report the median pass. With --builds N the index is built N
times (hnswlib random_seed 100, 101, ...) and recall is averaged over the
builds, QPS and build time are their medians (see the README, "Builds").
"""

import argparse
import gc
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
# Default hnswlib random_seed of build 0 (--seed); build i uses seed + i. The Rust
# tool has its own default seed: the two engines' level draws are unrelated anyway.
HNSW_SEED = 100


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
    parser.add_argument("--builds", type=int, default=1,
                        help="build the index this many times (random_seed --seed + i); "
                             "recall is the mean over builds, QPS and build time the median")
    parser.add_argument("--seed", type=int, default=HNSW_SEED,
                        help="level-draw seed of build 0 (build i uses seed + i)")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--serve", action="store_true",
                        help="build once, print 'ready', then answer 'pass EF N' (one untimed "
                             "pass, then the median seconds of N batched single-thread "
                             "passes), 'recall EF' and 'quit' on stdin, as "
                             "`shoal-bench ann --serve` does (benches/paired.py)")
    args = parser.parse_args()
    args.ef_search = [int(ef) for ef in args.ef_search.split(",")]
    if args.k < 1:
        parser.error("--k must be at least 1")  # as the Rust tool; recall divides by k
    if args.builds < 1:
        parser.error("--builds must be at least 1")
    if args.engine == "hnswlib" and args.algo != "hnsw":
        parser.error("hnswlib supports only --algo hnsw")
    if args.serve and (args.algo != "hnsw" or args.json or args.builds != 1):
        parser.error("--serve is for one HNSW build and writes no JSON")
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


def median(values):
    """Median of values; for an even count the upper middle one, the same
    convention as time_passes and `times[len / 2]` in benches/src/ann.rs."""
    return sorted(values)[len(values) // 2]


def mean(values):
    """Arithmetic mean of values."""
    return sum(values) / len(values)


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
    return median(times)


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
    """hnswlib HNSW; its 'ip' and 'cosine' spaces match our 1-dot / 1-cos.

    seed is init_index's random_seed, which drives the level draws.
    """

    def __init__(self, args, dim, seed):
        import hnswlib
        self.index = hnswlib.Index(space=args.metric, dim=dim)
        self.args = args
        self.seed = seed
        self.threads = args.threads

    def build(self, base):
        self.index.set_num_threads(self.args.build_threads)
        self.index.init_index(max_elements=len(base), ef_construction=self.args.ef_construction,
                              M=self.args.m, random_seed=self.seed)
        self.index.add_items(base, np.arange(len(base)), num_threads=self.args.build_threads)

    def prepare_search(self, ef, threads):
        self.threads = threads
        self.index.set_num_threads(threads)
        self.index.set_ef(ef)

    def search(self, queries):
        labels, _ = self.index.knn_query(queries, k=self.args.k, num_threads=self.threads)
        return labels


class FaissEngine:
    """faiss IndexFlat* / IndexHNSWFlat; cosine = normalised vectors + inner product.

    For HNSW, seed drives the level draws through hnsw.rng (faiss's own default
    is a fixed 12345), so builds differ the way hnswlib's do.
    """

    def __init__(self, args, dim, seed):
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
            self.index.hnsw.rng = faiss.RandomGenerator(seed)

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


def measure(engine, queries, truth, args, ef, latency):
    """One HNSW row of one build: recall from a batched call, QPS as the median
    batched pass, then (when latency is true) per-query latencies."""
    engine.prepare_search(ef, args.threads)
    labels = engine.search(queries)
    pass_seconds = time_passes(lambda: engine.search(queries))
    run = {"ef": ef, "recall": recall(labels, truth, args.k), "qps": len(queries) / pass_seconds}
    if latency:
        run["p50_us"], run["p99_us"] = latency_stats(engine.search, queries)
    return run


def measure_flat(engine, queries, truth, args, latency):
    """FLAT row: QPS one query at a time, plus batched QPS on all build threads.

    A pass of the one-at-a-time QPS is a Python loop of single-query calls
    with --threads threads; a single exhaustive query costs milliseconds, so
    the Python call overhead in it is negligible. A pass of batch_qps is one
    call over all queries with --build-threads threads (the BLAS path). Both
    are timed by time_passes, like the Rust tool. Latencies only when latency
    is true. Returns (run, batch QPS).
    """
    engine.prepare_search(None, args.threads)
    rows = single_rows(queries)

    def one_at_a_time():
        for row in rows:
            engine.search(row)

    single_seconds = time_passes(one_at_a_time)
    run = {"ef": None, "qps": len(queries) / single_seconds}
    if latency:
        run["p50_us"], run["p99_us"] = latency_stats(engine.search, queries)
    engine.prepare_search(None, args.build_threads)
    labels = engine.search(queries)
    run["recall"] = recall(labels, truth, args.k)
    batch_seconds = time_passes(lambda: engine.search(queries))
    return run, len(queries) / batch_seconds


def combine_builds(per_build):
    """Merge the runs of every build into the reported runs.

    per_build[b][j] is run j (one ef) of build b. Each merged run has the
    mean recall and the median QPS over builds, every build's values in
    recall_all / qps_all (in build order), and build 0's latencies.
    """
    runs = []
    for j, first in enumerate(per_build[0]):
        recalls = [build[j]["recall"] for build in per_build]
        qps = [build[j]["qps"] for build in per_build]
        runs.append({"ef": first["ef"], "recall": mean(recalls), "qps": median(qps),
                     "p50_us": first["p50_us"], "p99_us": first["p99_us"],
                     "recall_all": recalls, "qps_all": qps})
    return runs


def print_table(result):
    """Human-readable summary of the JSON result."""
    builds = result["builds"]
    print(f"{result['engine']} {result['algo']} {result['metric']}  n={result['n']} "
          f"dim={result['dim']} k={result['k']}  build {result['build_seconds']:.2f}s  "
          f"{result['bytes_per_vector']:.1f} B/vec  builds={builds}")
    if builds > 1:
        print("recall: mean (min-max) over builds; qps, build: median over builds; "
              "B/vec, p50/p99: build 0")
    print(f"{'ef':>6} {'recall':>8} {'(min-max)':>15} {'qps':>10} {'p50_us':>9} {'p99_us':>9}")
    for run in result["runs"]:
        ef = "-" if run["ef"] is None else run["ef"]
        spread = f"({min(run['recall_all']):.4f}-{max(run['recall_all']):.4f})"
        print(f"{ef:>6} {run['recall']:>8.4f} {spread:>15} {run['qps']:>10.1f} "
              f"{run['p50_us']:>9.1f} {run['p99_us']:>9.1f}")
    if "batch_qps" in result:
        print(f"batch qps ({result['batch_threads']} threads): {result['batch_qps']:.1f}")


def serve(engine, queries, truth, args, build_seconds):
    """The --serve loop: requests on stdin, one answer line each on stdout."""
    print(f"ready {build_seconds:.3f}", flush=True)
    current_ef = None
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        verb, ef = words[0], int(words[1])
        if ef != current_ef:
            engine.prepare_search(ef, 1)
            current_ef = ef
        if verb == "pass":
            # One untimed pass first: the other engine ran last and evicted ours from
            # the caches.
            engine.search(queries)
            times = []
            for _ in range(int(words[2]) if len(words) > 2 else 1):
                t0 = time.perf_counter()
                engine.search(queries)
                times.append(time.perf_counter() - t0)
            print(f"{median(times):.9f}", flush=True)
        elif verb == "recall":
            print(f"{recall(engine.search(queries), truth, args.k):.6f}", flush=True)
        else:
            sys.exit(f"unknown request {verb!r}")


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

    engine_class = HnswlibEngine if args.engine == "hnswlib" else FaissEngine
    build_seconds_all, per_build, batch_qps_all = [], [], []
    for i in range(args.builds):
        if i > 0:
            # Free the previous index before the next one is built, so at most
            # one index is resident and the builds do not compete for memory.
            del engine
            gc.collect()
        engine = engine_class(args, dim, args.seed + i)
        rss_before = rss_bytes()
        t0 = time.perf_counter()
        engine.build(base)
        build_seconds_all.append(time.perf_counter() - t0)
        if args.serve:
            serve(engine, queries, truth, args, build_seconds_all[-1])
            return
        if i == 0:
            # Build 0 only: later builds reuse pages the previous index freed.
            bytes_per_vector = (rss_bytes() - rss_before) / n
        print(f"build {i + 1}/{args.builds}: {build_seconds_all[-1]:.2f} s", file=sys.stderr)
        # Latency percentiles from build 0 only.
        if args.algo == "flat":
            run, batch_qps = measure_flat(engine, queries, truth, args, latency=i == 0)
            per_build.append([run])
            batch_qps_all.append(batch_qps)
        else:
            per_build.append([measure(engine, queries, truth, args, ef, latency=i == 0)
                              for ef in args.ef_search])

    result = {
        "engine": args.engine, "engine_version": version(ENGINE_PACKAGES[args.engine]),
        "algo": args.algo, "metric": args.metric, "n": n, "dim": dim, "k": args.k,
        "num_queries": len(queries),
        "m": args.m if args.algo == "hnsw" else None,
        "ef_construction": args.ef_construction if args.algo == "hnsw" else None,
        "build_threads": args.build_threads, "search_threads": args.threads,
        "builds": args.builds,
        "build_seconds": median(build_seconds_all), "build_seconds_all": build_seconds_all,
        "bytes_per_vector": bytes_per_vector,
        "latency_includes_python_call": True,
        "runs": combine_builds(per_build),
    }
    if args.algo == "flat":
        result.update(batch_qps=median(batch_qps_all), batch_qps_all=batch_qps_all,
                      batch_threads=args.build_threads)

    print_table(result)
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
