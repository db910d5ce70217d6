"""Shared fixtures for the benchmark-tooling tests.

The scripts under test are run as subprocesses, exactly as `make bench-ann`
runs them, so argument parsing, file output and exit codes are covered too.
Expensive artefacts (the tiny dataset, the peers' result files) are built
once per session and only read by the tests, which keeps the suite fast while
each test stays independent of the others' order.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHES = Path(__file__).resolve().parent.parent
# vecs.py (shared I/O and exact k-NN) and run_peer.py are imported directly by
# some tests; the scripts themselves are always run as subprocesses.
sys.path.insert(0, str(BENCHES))
sys.path.insert(0, str(BENCHES / "peers"))

GEN_DATASET = BENCHES / "gen_dataset.py"
RUN_PEER = BENCHES / "peers" / "run_peer.py"
COMPARE = BENCHES / "compare.py"

# Tiny but clustered: big enough for HNSW recall to mean something, small
# enough that every script finishes in about a second of work.
N, DIM, QUERIES, CLUSTERS, SEED = 2000, 16, 50, 20, 7
K = 10
METRICS = ("l2", "ip", "cosine")
HNSW_EFS = (10, 64)
BUILD_THREADS = 2
SUBPROCESS_TIMEOUT = 300


def run_script(*cmd, cwd=None):
    """Run a command; on a non-zero exit fail with its full output.

    Returns the CompletedProcess so callers can inspect stdout.
    """
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited with {proc.returncode}\n"
                    f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


def gen_dataset_cmd(out, n=N, dim=DIM, queries=QUERIES, clusters=CLUSTERS, seed=SEED):
    """Command line of gen_dataset.py for the tiny test dataset."""
    return [sys.executable, GEN_DATASET, "--n", n, "--dim", dim, "--queries", queries,
            "--clusters", clusters, "--seed", seed, "--out", out]


def common_args(dataset, metric, groundtruth=True):
    """Arguments shared by run_peer.py and `shoal-bench ann`, as in benches/run_ann.sh."""
    args = ["--base", dataset / "base.fvecs", "--queries", dataset / "queries.fvecs",
            "--metric", metric, "--k", K, "--build-threads", BUILD_THREADS]
    if groundtruth:
        args += ["--groundtruth", dataset / f"gt_{metric}.ivecs"]
    return args


def run_peer(dataset, out_json, engine, algo, metric, *extra):
    """Run run_peer.py and return its JSON result."""
    run_script(sys.executable, RUN_PEER, "--engine", engine, "--algo", algo,
               *common_args(dataset, metric), *extra, "--json", out_json)
    return json.loads(Path(out_json).read_text())


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """The tiny dataset, generated once per session (read-only for tests)."""
    out = tmp_path_factory.mktemp("dataset")
    run_script(*gen_dataset_cmd(out))
    return out


@pytest.fixture(scope="session")
def faiss_flat(dataset, tmp_path_factory):
    """faiss FLAT results for every metric: metric -> parsed JSON.

    Shared by the recall/schema test of the peer runner and the schema check of
    the Rust tool, which compares its keys with these.
    """
    out = tmp_path_factory.mktemp("faiss_flat")
    return {metric: run_peer(dataset, out / f"faiss_flat_{metric}.json", "faiss", "flat", metric)
            for metric in METRICS}


@pytest.fixture(scope="session")
def hnswlib_hnsw_l2(dataset, tmp_path_factory):
    """hnswlib HNSW l2 result at ef 10 and 64: (path of the JSON, parsed JSON)."""
    path = tmp_path_factory.mktemp("hnswlib") / "hnswlib_hnsw_l2.json"
    result = run_peer(dataset, path, "hnswlib", "hnsw", "l2",
                      "--ef-search", ",".join(map(str, HNSW_EFS)))
    return path, result


def shoal_bench_binary():
    """Path of the `shoal-bench` binary named by $SHOAL_BENCH (see `_binary`)."""
    return _binary("SHOAL_BENCH", "shoal-bench")


def shoal_binary():
    """Path of the `shoal` server binary named by $SHOAL_BIN (see `_binary`)."""
    return _binary("SHOAL_BIN", "shoal")


def _binary(var, name):
    """Path of the binary named by $var.

    Called from the test body (not a fixture) so a missing binary under CI is
    reported as a test FAILURE, not as a fixture error or a skip: in CI a
    silently skipped end-to-end test would hide a broken Rust tool. Outside CI
    the test is skipped, so the Python tooling can be tested without a build.
    """
    path = os.environ.get(var)
    if not path:
        message = (f"{var} is not set: point it at a built {name} binary, e.g. "
                   f"{var}=~/.cache/shoal-target/debug/{name} (`make pytest` "
                   "builds it and sets it)")
        if os.environ.get("CI"):
            pytest.fail(message + "; CI is set, so this end-to-end test may not be skipped",
                        pytrace=False)
        pytest.skip(message)
    binary = Path(path).expanduser()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"{var}={path} is not an executable file", pytrace=False)
    return binary
