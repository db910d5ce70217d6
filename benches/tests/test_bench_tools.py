"""Tests of the benchmark tooling: dataset generator, peer runner, Rust tool, compare.py.

The numbers these tools produce are only comparable if the pieces agree on
file formats, metric definitions, JSON schema and timing policy; each test
below pins one of those agreements down on a tiny dataset (see conftest.py).
Timings themselves are never asserted: they depend on the machine (the host probe's
test bounds only what more processes than it ran could give).
"""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import (BENCHES, BUILD_THREADS, COMPARE, DIM, HNSW_EFS, K, METRICS, N, QUERIES,
                      SUBPROCESS_TIMEOUT, common_args, gen_dataset_cmd, run_script,
                      shoal_bench_binary)
from conftest import run_peer as run_peer_json
from vecs import load_ids, load_vectors

# Top-level keys both the Rust tool and run_peer.py must write (compare.py reads
# them). FLAT adds the batched-search keys; every run has RUN_KEYS. The *_all
# keys hold one value per build (--builds), in build order.
SHARED_KEYS = ["engine", "algo", "metric", "n", "dim", "k", "num_queries", "m",
               "ef_construction", "build_threads", "search_threads", "builds",
               "build_seconds", "build_seconds_all", "bytes_per_vector", "runs"]
FLAT_KEYS = SHARED_KEYS + ["batch_qps", "batch_qps_all", "batch_threads"]
RUN_KEYS = ["ef", "recall", "qps", "p50_us", "p99_us", "recall_all", "qps_all"]
# Keys only the Python peers write: they describe the peer, not the result.
PEER_ONLY_KEYS = {"engine_version", "latency_includes_python_call"}
# Exact search must find every true neighbour; with k=10 and 50 queries a
# single miss would already give 0.998.
EXACT_RECALL = 0.999
HNSW_MIN_RECALL = 0.9
DATASET_FILES = ["base.fvecs", "queries.fvecs", "params.json"] + [f"gt_{m}.ivecs" for m in METRICS]


def mtimes(directory):
    """mtime in ns of every dataset file, to tell a skipped run from a rewrite."""
    return {name: (directory / name).stat().st_mtime_ns for name in DATASET_FILES}


def runs_by_ef(result):
    """Map ef -> run of one result."""
    return {run["ef"]: run for run in result["runs"]}


def is_median(value, values):
    """value is a median of values: between the two middle ones (the tools report
    the upper middle one for an even count; this accepts either convention)."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2] <= value <= ordered[len(ordered) // 2]


def check_common(result, engine, algo, metric, builds=1):
    """Settings every result must echo back, whichever engine wrote it, and the
    per-build aggregation: one value per build in every *_all list, recall the
    mean over builds, QPS and build seconds the median."""
    assert result["engine"] == engine
    assert (result["algo"], result["metric"]) == (algo, metric)
    assert (result["n"], result["dim"], result["k"]) == (N, DIM, K)
    assert result["num_queries"] == QUERIES
    assert result["build_threads"] == BUILD_THREADS
    assert result["search_threads"] == 1
    assert result["builds"] == builds
    assert len(result["build_seconds_all"]) == builds
    assert all(seconds > 0 for seconds in result["build_seconds_all"])
    assert is_median(result["build_seconds"], result["build_seconds_all"])
    for run in result["runs"]:
        assert sorted(run) == sorted(RUN_KEYS)
        assert run["qps"] > 0 and 0 < run["p50_us"] <= run["p99_us"]
        assert len(run["recall_all"]) == len(run["qps_all"]) == builds
        assert run["recall"] == pytest.approx(sum(run["recall_all"]) / builds, abs=1e-12)
        assert is_median(run["qps"], run["qps_all"])
    if "batch_qps" in result:
        assert len(result["batch_qps_all"]) == builds
        assert is_median(result["batch_qps"], result["batch_qps_all"])


# a. gen_dataset.py

def test_gen_dataset_shapes_skip_and_regenerate(tmp_path):
    """The generator writes the files the runners read, with the right shapes, and
    its cache check works: same parameters -> untouched, new ones -> rewritten.

    A stale cache would silently benchmark the wrong data; a cache that never
    hits would regenerate 200k x 128 vectors and their ground truth every run.
    """
    out = tmp_path / "data"
    run_script(*gen_dataset_cmd(out))
    assert load_vectors(out / "base.fvecs").shape == (N, DIM)
    assert load_vectors(out / "queries.fvecs").shape == (QUERIES, DIM)
    for metric in METRICS:
        gt = load_ids(out / f"gt_{metric}.ivecs")
        assert gt.shape == (QUERIES, 100), metric
        assert gt.min() >= 0 and gt.max() < N, metric
        assert all(len(set(row)) == len(row) for row in gt.tolist()), metric
    assert json.loads((out / "params.json").read_text())["n"] == N

    before = mtimes(out)
    proc = run_script(*gen_dataset_cmd(out))
    assert "skipping" in proc.stdout
    assert mtimes(out) == before

    run_script(*gen_dataset_cmd(out, n=N // 2))
    assert load_vectors(out / "base.fvecs").shape == (N // 2, DIM)
    assert load_ids(out / "gt_l2.ivecs").max() < N // 2
    assert json.loads((out / "params.json").read_text())["n"] == N // 2
    assert all(after != before[name] for name, after in mtimes(out).items())


# b. run_peer.py, faiss FLAT

@pytest.mark.parametrize("metric", METRICS)
def test_faiss_flat_exact_and_schema(faiss_flat, metric):
    """Exact faiss search finds exactly the generator's ground truth for each metric.

    This is what ties the metric definitions together: gen_dataset.py ranks
    with l2 = squared euclidean, ip = 1 - dot, cosine = 1 - cos in float64,
    faiss with its own kernels (cosine via normalised inner product). Any
    disagreement shows up as FLAT recall below 1 and would otherwise be
    misread as an index losing recall. Also checks the JSON schema compare.py
    and the Rust tool share.
    """
    result = faiss_flat[metric]
    check_common(result, "faiss", "flat", metric)
    assert sorted(set(result) - PEER_ONLY_KEYS) == sorted(FLAT_KEYS)
    assert result["m"] is None and result["ef_construction"] is None
    assert result["bytes_per_vector"] >= 0
    [run] = result["runs"]
    assert run["ef"] is None
    assert run["recall"] > EXACT_RECALL
    assert result["batch_qps"] > 0
    assert result["batch_threads"] == BUILD_THREADS


# c. run_peer.py, hnswlib HNSW

def test_hnswlib_hnsw_recall(hnswlib_hnsw_l2):
    """hnswlib finds most true neighbours at ef 64, and every ef gets its own run.

    Low recall here would mean the runner mislabels ids or mis-sets ef, which
    would make hnswlib look worse than it is next to Shoal.
    """
    _, result = hnswlib_hnsw_l2
    check_common(result, "hnswlib", "hnsw", "l2")
    assert (result["m"], result["ef_construction"]) == (16, 200)
    assert [run["ef"] for run in result["runs"]] == list(HNSW_EFS)
    assert runs_by_ef(result)[64]["recall"] >= HNSW_MIN_RECALL
    assert "batch_qps" not in result


def test_hnswlib_builds(dataset, tmp_path):
    """--builds 2 builds hnswlib twice and reports both builds' recall and QPS,
    recall as their mean and QPS as their median (the upper middle one, i.e. the
    larger of two, as time_passes and the Rust tool do).

    One build's recall at low ef is noise of about ±0.01 (random level draws,
    multithreaded insertion); the mean over builds is what compare.py judges.
    """
    result = run_peer_json(dataset, tmp_path / "hnswlib_hnsw_ip.json", "hnswlib", "hnsw", "ip",
                      "--ef-search", ",".join(map(str, HNSW_EFS)), "--builds", "2")
    check_common(result, "hnswlib", "hnsw", "ip", builds=2)
    assert [run["ef"] for run in result["runs"]] == list(HNSW_EFS)
    for run in result["runs"]:
        assert len(run["recall_all"]) == 2 and len(run["qps_all"]) == 2
        assert run["recall"] == sum(run["recall_all"]) / 2
        assert run["qps"] == max(run["qps_all"])
    assert result["build_seconds"] == max(result["build_seconds_all"])
    assert runs_by_ef(result)[64]["recall"] >= HNSW_MIN_RECALL


def test_median_convention():
    """run_peer.median takes the upper middle value for an even count, like
    `times[len / 2]` / `v[len / 2]` in benches/src/ann.rs, for passes and builds alike."""
    import run_peer

    assert run_peer.median([3.0, 1.0, 2.0]) == 2.0
    assert run_peer.median([4.0, 1.0]) == 4.0
    assert run_peer.median([5.0]) == 5.0
    assert run_peer.mean([0.25, 0.75]) == 0.5


def test_time_passes_policy(monkeypatch):
    """run_peer.time_passes follows the Rust tool's policy exactly, on a fake clock:
    >= 200 ms of whole warm-up passes, then >= 3 timed passes AND >= 1 s, median
    reported (upper middle for an even count, like `times[len / 2]` in ann.rs).

    Both tools must time the same way, or QPS ratios between them are skewed.
    """
    import run_peer

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(run_peer, "time", SimpleNamespace(perf_counter=lambda: clock.now))

    def scripted(durations):
        """A pass that advances the fake clock by the next duration; counts calls."""
        durations = list(durations)
        calls = []

        def run_pass():
            calls.append(durations[len(calls)])
            clock.now += calls[-1]
        return run_pass, calls

    # Warm-up: 0.125 + 0.125 >= 0.2. Timed: 0.875 s after 3 passes, so a 4th
    # is needed for 1 s; median of [0.125, 0.25, 0.375, 0.5] -> 0.375.
    run_pass, calls = scripted([0.125, 0.125, 0.5, 0.125, 0.25, 0.375, 9.0])
    assert run_peer.time_passes(run_pass) == 0.375
    assert len(calls) == 6

    # Slow passes: one pass covers the warm-up and 1 s is reached after one timed
    # pass, but 3 timed passes are still required.
    run_pass, calls = scripted([2.0, 4.0, 2.0, 3.0, 9.0])
    assert run_peer.time_passes(run_pass) == 3.0
    assert len(calls) == 4


# d. the Rust tool, end to end

def run_shoal(binary, dataset, out_json, algo, metric, *extra, groundtruth=True):
    """Run `shoal-bench ann` and return its JSON result."""
    run_script(binary, "ann", "--algo", algo, *common_args(dataset, metric, groundtruth),
               *extra, "--json", out_json)
    return json.loads(out_json.read_text())


def test_shoal_hnsw_end_to_end(dataset, tmp_path):
    """`shoal-bench ann --algo hnsw --builds 2` reads the generator's files and
    ground truth and writes the shared schema with sensible recall, aggregated
    over both builds like the peers (mean recall, median QPS, *_all lists).

    This is the CLI and file contract benches/run_ann.sh relies on; the Rust
    unit tests cannot see it.
    """
    binary = shoal_bench_binary()
    result = run_shoal(binary, dataset, tmp_path / "shoal_hnsw_l2.json", "hnsw", "l2",
                       "--ef-search", ",".join(map(str, HNSW_EFS)), "--builds", "2")
    check_common(result, "shoal", "hnsw", "l2", builds=2)
    assert set(SHARED_KEYS) <= set(result)
    assert (result["m"], result["ef_construction"]) == (16, 200)
    assert [run["ef"] for run in result["runs"]] == list(HNSW_EFS)
    assert runs_by_ef(result)[64]["recall"] >= HNSW_MIN_RECALL
    assert "batch_qps" not in result


def test_paired_run_alternates_both_engines(dataset, tmp_path):
    """benches/paired.py drives `shoal-bench ann --serve` and `run_peer.py --serve`
    in turns: every round yields one positive ratio, recall comes from both engines,
    and the JSON carries every round so the verdict can be recomputed."""
    binary = shoal_bench_binary()
    out = tmp_path / "paired_l2.json"
    run_script(sys.executable, BENCHES / "paired.py", "--bench", binary,
               "--base", dataset / "base.fvecs", "--queries", dataset / "queries.fvecs",
               "--groundtruth", dataset / "gt_l2.ivecs", "--metric", "l2",
               "--ef-search", ",".join(map(str, HNSW_EFS)), "--builds", "2", "--rounds", "3",
               "--json", out)
    result = json.loads(out.read_text())
    assert [run["ef"] for run in result["runs"]] == list(HNSW_EFS)
    assert len(result["build_seconds"]) == 2
    for run in result["runs"]:
        assert [len(r) for r in run["ratios_per_build"]] == [3, 3]
        assert all(r > 0 for rs in run["ratios_per_build"] for r in rs)
        assert run["ratio_build_min"] <= run["ratio"] <= run["ratio_build_max"]
        assert run["shoal_qps"] > 0 and run["hnswlib_qps"] > 0
    at_64 = result["runs"][-1]
    assert at_64["shoal_recall"] >= HNSW_MIN_RECALL
    assert at_64["hnswlib_recall"] >= HNSW_MIN_RECALL


def test_paired_builds_walk_one_graph(dataset, tmp_path):
    """benches/paired_builds.py pairs two shoal-bench builds: given the same binary twice,
    both build the same graph (one thread, one seed), so their recall is identical at
    every ef, and every turn yields a positive ratio."""
    binary = shoal_bench_binary()
    out = tmp_path / "builds.json"
    run_script(sys.executable, BENCHES / "paired_builds.py", "--a", f"x={binary}",
               "--b", f"y={binary}", "--base", dataset / "base.fvecs",
               "--queries", dataset / "queries.fvecs", "--groundtruth", dataset / "gt_l2.ivecs",
               "--metric", "l2", "--ef-search", ",".join(map(str, HNSW_EFS)), "--rounds", "3",
               "--json", out)
    result = json.loads(out.read_text())
    assert result["a"][0] == "x" and result["b"][0] == "y"
    assert [run["ef"] for run in result["runs"]] == list(HNSW_EFS)
    for run in result["runs"]:
        assert run["a_recall"] == run["b_recall"]
        assert len(run["ratios"]) == 3 and all(r > 0 for r in run["ratios"])
        assert run["speedup_min"] <= run["speedup"] <= run["speedup_max"]
    assert result["runs"][-1]["a_recall"] >= HNSW_MIN_RECALL


def test_engine_search_walks_the_engines_graph(dataset, tmp_path):
    """`shoal-bench engine-search` builds through the engine in pipelines (here 7 HSETs
    each, so many flushes and a grown index) and times the bare walk and FT.SEARCH on that
    graph: FT.SEARCH answers exactly the walk's ids, so the two recalls are equal, and
    the bare index built as `ann` builds it finds the neighbours too."""
    out = tmp_path / "engine.json"
    run_script(shoal_bench_binary(), "engine-search", "--base", dataset / "base.fvecs",
               "--queries", dataset / "queries.fvecs", "--groundtruth", dataset / "gt_l2.ivecs",
               "--chunk", "7", "--ef", "64", "--passes", "2", "--bare-cap", "100", "--json", out)
    result = json.loads(out.read_text())
    assert (result["n"], result["dim"], result["chunk"], result["ef"]) == (N, DIM, 7, 64)
    assert result["bare_cap"] == 100
    assert result["ft_search_recall"] == result["walk_recall"]
    assert result["walk_recall"] >= HNSW_MIN_RECALL
    assert result["bare_recall"] >= HNSW_MIN_RECALL
    assert result["ingest_per_second"] > 0
    assert result["bare_walk_p50_us"] > 0
    for kind in ("walk", "ft_search"):
        assert 0 < result[f"{kind}_p50_us"] <= result[f"{kind}_p99_us"]


def test_serve_refuses_a_bad_request(dataset):
    """A malformed request ends `shoal-bench ann --serve` with an error naming it,
    instead of a wrong timing."""
    binary = shoal_bench_binary()
    cmd = [str(c) for c in (binary, "ann", "--algo", "hnsw", "--serve",
                            *common_args(dataset, "l2"))]
    proc = subprocess.run(cmd, input="pass ten\n", capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)
    assert proc.stdout.startswith("ready ")
    assert proc.returncode != 0
    assert "bad ef" in proc.stderr


def test_serve_spaced_searches_after_each_gap(dataset):
    """`spaced EF GAP_US [spin|busy]` times each query alone after a gap: it reports a
    positive p50 and a mean gap at least the one asked (slept, spun with or without
    `pause`), and refuses a request without a gap or with another way to wait."""
    binary = shoal_bench_binary()
    cmd = [str(c) for c in (binary, "ann", "--algo", "hnsw", "--serve",
                            *common_args(dataset, "l2"))]
    requests = "spaced 20 200\nspaced 20 200 spin\nspaced 20 200 busy\nspaced 20 0\n"
    proc = subprocess.run(cmd, input=requests + "spaced 20\n",
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ready ")
    slept, spun, busy, tight = ([float(x) for x in line.split()] for line in lines[1:5])
    for p50, _ in (slept, spun, busy, tight):
        assert p50 > 0
    assert slept[1] >= 200 and spun[1] >= 200 and busy[1] >= 200
    assert tight[1] < 200
    assert proc.returncode != 0
    assert "spaced needs a gap" in proc.stderr
    proc = subprocess.run(cmd, input="spaced 20 10 nap\n", capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode != 0
    assert "not \"nap\"" in proc.stderr


def test_shoal_flat_end_to_end_and_schema(dataset, faiss_flat, tmp_path):
    """`shoal-bench ann --algo flat` computes its own exact ground truth (no
    --groundtruth), finds all of it, reports batched QPS, and writes every key
    the peers' FLAT JSON has apart from the peer-only ones.

    The key check is what keeps compare.py from showing "—" for a Shoal column
    because one side renamed or dropped a field.
    """
    binary = shoal_bench_binary()
    result = run_shoal(binary, dataset, tmp_path / "shoal_flat_cosine.json", "flat", "cosine",
                       groundtruth=False)
    check_common(result, "shoal", "flat", "cosine")
    [run] = result["runs"]
    assert run["ef"] is None
    assert run["recall"] > EXACT_RECALL
    assert result["batch_qps"] > 0
    assert result["batch_threads"] == BUILD_THREADS
    assert result["m"] is None and result["ef_construction"] is None

    peer_keys = set(faiss_flat["cosine"]) - PEER_ONLY_KEYS
    assert peer_keys == set(FLAT_KEYS), "update FLAT_KEYS: the peers' schema changed"
    missing = sorted(set(FLAT_KEYS) - set(result))
    assert not missing, f"shoal JSON lacks keys the peers write: {missing}"


# e. compare.py

def test_compare_prints_both_engines_and_targets(hnswlib_hnsw_l2, tmp_path):
    """compare.py puts a Shoal and an hnswlib HNSW result side by side and checks
    the targets, exiting 0.

    The Shoal result is synthetic (the hnswlib one with the engine renamed and
    1.5x its QPS) so this test needs no Rust build and its target verdicts are
    known: QPS targets met (1.5 >= 1.2), recall targets met (equal recall).
    """
    hnswlib_path, hnswlib = hnswlib_hnsw_l2
    results = tmp_path / "results"
    results.mkdir()
    (results / hnswlib_path.name).write_text(hnswlib_path.read_text())
    shoal = {key: value for key, value in hnswlib.items() if key not in PEER_ONLY_KEYS}
    shoal["engine"] = "shoal"
    shoal["runs"] = [dict(run, qps=run["qps"] * 1.5, qps_all=[q * 1.5 for q in run["qps_all"]])
                     for run in hnswlib["runs"]]
    (results / "shoal_hnsw_l2.json").write_text(json.dumps(shoal))

    proc = subprocess.run([sys.executable, str(COMPARE), str(results)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "## HNSW l2 (1 build)" in out
    assert "shoal" in out and "hnswlib" in out
    assert "Settings differ" not in out
    targets = out.split("## Targets", 1)[1]
    for ef in HNSW_EFS:
        assert f"- met — hnsw l2 ef={ef} recall" in targets
        assert f"- met — hnsw l2 ef={ef} QPS" in targets
    assert "n/a" not in targets
    assert "mean recall and the median QPS" in targets
    # Exact values rendered in the table: hnswlib's QPS at the largest ef.
    assert f"{runs_by_ef(hnswlib)[HNSW_EFS[-1]]['qps']:.0f}" in out


def synthetic_hnsw(engine, recalls_by_ef, qps, builds=None, build_seconds=1.0):
    """A minimal HNSW result: ef -> per-build recalls, one QPS for every build.

    builds=None writes the result as tools did before --builds existed: no
    builds, *_all or build_seconds_all keys at all.
    """
    result = {"engine": engine, "algo": "hnsw", "metric": "l2", "n": N, "dim": DIM, "k": K,
              "num_queries": QUERIES, "m": 16, "ef_construction": 200,
              "build_threads": BUILD_THREADS, "search_threads": 1,
              "build_seconds": build_seconds, "bytes_per_vector": 100.0, "runs": []}
    for ef, recalls in recalls_by_ef.items():
        run = {"ef": ef, "recall": sum(recalls) / len(recalls), "qps": qps,
               "p50_us": 10.0, "p99_us": 20.0}
        if builds is not None:
            run.update(recall_all=recalls, qps_all=[qps] * len(recalls))
        result["runs"].append(run)
    if builds is not None:
        result.update(builds=builds, build_seconds_all=[build_seconds] * builds)
    return result


def run_compare(results_dir, results):
    """Write results as JSON files into results_dir and return compare.py's stdout."""
    results_dir.mkdir()
    for result in results:
        name = f"{result['engine']}_{result['algo']}_{result['metric']}.json"
        (results_dir / name).write_text(json.dumps(result))
    proc = subprocess.run([sys.executable, str(COMPARE), str(results_dir)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_compare_builds(tmp_path):
    """compare.py shows mean recall with the builds' min–max range, the number of
    builds in the heading, judges targets on the means, and flags engines whose
    number of builds differs; results without a "builds" key count as one build.

    Synthetic results, so the rendered numbers are known exactly.
    """
    shoal = synthetic_hnsw("shoal", {10: [0.956, 0.9622]}, qps=1300.0, builds=2)
    hnswlib = synthetic_hnsw("hnswlib", {10: [0.9601, 0.9581]}, qps=1000.0, builds=2)
    out = run_compare(tmp_path / "agree", [shoal, hnswlib])
    assert "## HNSW l2 (2 builds)" in out
    assert "Settings differ" not in out
    # Shoal's mean 0.9591 with its range, hnswlib's mean 0.9591 with its range.
    assert "| 10 | 0.9591 (0.956–0.962) | 1300 | 0.9591 (0.958–0.960) | 1000 |" in out
    targets = out.split("## Targets", 1)[1]
    assert "- met — hnsw l2 ef=10 recall" in targets
    assert "- met — hnsw l2 ef=10 QPS" in targets

    # An old single-build hnswlib file (no builds key) against a 2-build Shoal.
    old = synthetic_hnsw("hnswlib", {10: [0.9591]}, qps=1000.0, builds=None)
    out = run_compare(tmp_path / "mixed", [shoal, old])
    assert "## HNSW l2 (builds shoal=2, hnswlib=1)" in out
    assert "**Settings differ:** builds shoal=2, hnswlib=1" in out
    assert "| 10 | 0.9591 (0.956–0.962) | 1300 | 0.9591 | 1000 |" in out

    # Both old: one build each, no ranges, no warning.
    shoal_old = synthetic_hnsw("shoal", {10: [0.9591]}, qps=1300.0, builds=None)
    out = run_compare(tmp_path / "old", [shoal_old, old])
    assert "## HNSW l2 (1 build)" in out
    assert "Settings differ" not in out
    assert "| 10 | 0.9591 | 1300 | 0.9591 | 1000 |" in out


def test_vecs_round_trip(tmp_path):
    """vecs.py writes and reads TEXMEX files losslessly; every other test relies on it."""
    from vecs import write_fvecs, write_ivecs

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((7, 5)).astype(np.float32)
    ids = rng.integers(0, 1000, (7, 3))
    write_fvecs(tmp_path / "v.fvecs", vectors)
    write_ivecs(tmp_path / "i.ivecs", ids)
    np.testing.assert_array_equal(load_vectors(tmp_path / "v.fvecs"), vectors)
    np.testing.assert_array_equal(load_ids(tmp_path / "i.ivecs"), ids)


# g. cluster/host.py: the host's figures beside each cluster_search row

def test_host_cpu_shares_from_proc_stat(tmp_path):
    """Per-CPU busy (user, nice, system, irq, softirq), idle (with iowait) and steal
    ticks, and their shares of a window over the CPUs present at both ends; the
    aggregate `cpu` line and the other lines are not CPUs."""
    sys.path.insert(0, str(BENCHES / "cluster"))
    import host

    def stat(path, cpus):
        lines = ["cpu  99 99 99 99 99 99 99 99 0 0", *(
            f"cpu{i} {u} 0 {s} {idle} {io} {irq} {soft} {steal} 0 0"
            for i, (u, s, idle, io, irq, soft, steal) in enumerate(cpus)),
            "intr 12345 0 0", "ctxt 999"]
        path.write_text("\n".join(lines) + "\n")
        return host.cpu_times(str(path))

    before = stat(tmp_path / "a", [(100, 10, 50, 5, 1, 2, 0), (200, 20, 60, 0, 0, 0, 3)])
    assert before == {"cpu0": (113, 55, 0), "cpu1": (220, 60, 3)}
    # Over the window: CPU 0 busy 60 and idle 40; CPU 1 busy 30, idle 50, steal 20.
    after = stat(tmp_path / "b", [(150, 20, 80, 15, 1, 2, 0), (220, 30, 110, 0, 0, 0, 23)])
    shares = host.cpu_shares(before, after)
    assert shares["busy_pct"] == pytest.approx(45.0)
    assert shares["idle_pct"] == pytest.approx(45.0)
    assert shares["steal_pct"] == pytest.approx(10.0)
    # A CPU that went away is left out, not paired with another; no tick, no figures.
    assert host.cpu_shares(before, {"cpu1": after["cpu1"]})["steal_pct"] == pytest.approx(20.0)
    assert host.cpu_shares(after, after) is None
    # The running machine's own file parses.
    assert host.cpu_times() and all(len(v) == 3 for v in host.cpu_times().values())


def test_host_parallel_cores_reports_every_process():
    """Every spinning process reports a rate over the shared window, and the summed
    rate is measured against a lone one: positive, and (however loaded the machine)
    not more than the processes that ran, beyond what timer noise explains."""
    sys.path.insert(0, str(BENCHES / "cluster"))
    import host

    rates = host._rates(3, 0.05)
    assert len(rates) == 3 and all(r > 0 for r in rates)
    one, rate = host.parallel_cores(workers=1, seconds=0.05)
    assert rate > 0 and 0 < one <= 1.5
    two, _ = host.parallel_cores(workers=2, seconds=0.05)
    assert 0 < two <= 3.0
