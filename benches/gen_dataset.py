#!/usr/bin/env python3
"""Generate the seeded clustered ANN benchmark dataset with exact ground truth.

Uniformly random vectors give an index no structure to exploit, and queries
copied from the base set are trivially easy, so neither resembles real
embeddings. This script draws base vectors and queries independently from
one anisotropic Gaussian mixture: every cluster has a random center, a
random rotation and random log-uniform per-axis scales (so clusters are
elongated ellipsoids with differing spreads), and cluster sizes vary.

Output in --out: base.fvecs, queries.fvecs, gt_{l2,ip,cosine}.ivecs (exact
top-100 per query) and params.json. params.json is written last, so an
interrupted run is regenerated on the next call, and a complete one with the
same parameters is skipped.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vecs import METRICS, exact_knn, write_fvecs, write_ivecs

# Bump when the sampling below changes, so cached datasets are regenerated.
GENERATOR_VERSION = 1
GT_K = 100
# Cluster centers ~ N(0, CENTER_STD^2 I). Per-axis standard deviations are
# log-uniform in [AXIS_SCALE_MIN, AXIS_SCALE_MAX] times a per-cluster factor
# in [0.5, 1.5]: clusters stay well apart relative to their spread yet are
# dense enough that a query's 100 nearest neighbours mostly share its cluster.
CENTER_STD = 1.0
AXIS_SCALE_MIN = 0.02
AXIS_SCALE_MAX = 0.6
# Cluster weights ~ lognormal(0, CLUSTER_SIZE_SIGMA): sizes vary a few-fold.
CLUSTER_SIZE_SIGMA = 0.5


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="base vectors")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    return parser.parse_args()


def sample_mixture(n, nq, dim, clusters, seed):
    """Draw n base and nq query vectors from one seeded Gaussian mixture.

    Cluster parameters, base points and query points use separate child
    streams of the seed, so the queries do not change when --n does and vice
    versa. Each cluster's transform is generated and used immediately rather
    than stored, keeping memory at O(dim^2) beyond the outputs.
    """
    param_rng, base_rng, query_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    weights = param_rng.lognormal(0.0, CLUSTER_SIZE_SIGMA, clusters)
    weights /= weights.sum()
    base_labels = base_rng.choice(clusters, size=n, p=weights)
    query_labels = query_rng.choice(clusters, size=nq, p=weights)
    base = np.empty((n, dim), dtype=np.float32)
    queries = np.empty((nq, dim), dtype=np.float32)
    log_lo, log_hi = np.log(AXIS_SCALE_MIN), np.log(AXIS_SCALE_MAX)
    for cluster in range(clusters):
        center = param_rng.standard_normal(dim) * CENTER_STD
        rotation, _ = np.linalg.qr(param_rng.standard_normal((dim, dim)))
        scales = np.exp(param_rng.uniform(log_lo, log_hi, dim)) * param_rng.uniform(0.5, 1.5)
        # Row vector z -> center + z diag(scales) R^T: covariance R S^2 R^T.
        transform = (scales[:, None] * rotation.T).astype(np.float32)
        for labels, out, rng in ((base_labels, base, base_rng),
                                 (query_labels, queries, query_rng)):
            members = np.flatnonzero(labels == cluster)
            noise = rng.standard_normal((len(members), dim), dtype=np.float32)
            out[members] = center + noise @ transform
    return base, queries


def is_current(out, params):
    """True when out already holds every file for exactly these parameters."""
    params_file = out / "params.json"
    expected = ["base.fvecs", "queries.fvecs"] + [f"gt_{m}.ivecs" for m in METRICS]
    if not params_file.exists() or not all((out / f).exists() for f in expected):
        return False
    try:
        return json.loads(params_file.read_text()) == params
    except json.JSONDecodeError:
        return False


def main():
    args = parse_args()
    params = {"generator_version": GENERATOR_VERSION, "n": args.n, "dim": args.dim,
              "clusters": args.clusters, "queries": args.queries, "seed": args.seed,
              "gt_k": GT_K}
    args.out.mkdir(parents=True, exist_ok=True)
    if is_current(args.out, params):
        print(f"{args.out}: dataset with these parameters already exists, skipping")
        return
    (args.out / "params.json").unlink(missing_ok=True)

    started = time.perf_counter()
    base, queries = sample_mixture(args.n, args.queries, args.dim, args.clusters, args.seed)
    write_fvecs(args.out / "base.fvecs", base)
    write_fvecs(args.out / "queries.fvecs", queries)
    print(f"sampled {args.n} base + {args.queries} queries x {args.dim} "
          f"in {time.perf_counter() - started:.1f}s", flush=True)
    for metric in METRICS:
        t0 = time.perf_counter()
        gt = exact_knn(base, queries, metric, GT_K)
        write_ivecs(args.out / f"gt_{metric}.ivecs", gt)
        print(f"ground truth {metric}: {time.perf_counter() - t0:.1f}s", flush=True)
    (args.out / "params.json").write_text(json.dumps(params, indent=2) + "\n")
    print(f"done in {time.perf_counter() - started:.1f}s -> {args.out}")


if __name__ == "__main__":
    main()
