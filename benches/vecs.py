"""Vector file I/O and exact k-NN shared by the benchmark scripts.

Kept in one place so the dataset generator and the peer runner read, write and
rank vectors identically: a ground-truth mismatch between the two would show
up as a recall difference that has nothing to do with the index under test.
"""

from pathlib import Path

import numpy as np

METRICS = ("l2", "ip", "cosine")


def _write_vecs(path, array, dtype):
    """Write TEXMEX vecs: per row an int32 LE dimension, then the row's values."""
    array = np.ascontiguousarray(array, dtype=dtype)
    rows, dim = array.shape
    out = np.empty((rows, dim + 1), dtype="<i4")
    out[:, 0] = dim
    out[:, 1:] = array.view("<i4")
    out.tofile(path)


def _read_vecs(path, dtype):
    """Read TEXMEX vecs, checking that every row has the same dimension."""
    raw = np.fromfile(path, dtype="<i4")
    if raw.size == 0:
        raise ValueError(f"{path}: empty file")
    dim = int(raw[0])
    if dim <= 0 or raw.size % (dim + 1):
        raise ValueError(f"{path}: size is not a multiple of its row length")
    raw = raw.reshape(-1, dim + 1)
    if not np.all(raw[:, 0] == dim):
        raise ValueError(f"{path}: rows have differing dimensions")
    return np.ascontiguousarray(raw[:, 1:]).view(dtype)


def write_fvecs(path, array):
    """Write float32 vectors as .fvecs."""
    _write_vecs(path, array, "<f4")


def write_ivecs(path, array):
    """Write int32 id lists as .ivecs."""
    _write_vecs(path, array, "<i4")


def load_vectors(path):
    """Load float32 vectors from .fvecs or .npy as a C-contiguous array."""
    path = Path(path)
    if path.suffix == ".npy":
        return np.ascontiguousarray(np.load(path), dtype=np.float32)
    if path.suffix == ".fvecs":
        return _read_vecs(path, "<f4").astype(np.float32, copy=False)
    raise ValueError(f"{path}: expected .fvecs or .npy")


def load_ids(path):
    """Load neighbour id lists from .ivecs or .npy as int64."""
    path = Path(path)
    if path.suffix == ".npy":
        return np.load(path).astype(np.int64)
    if path.suffix == ".ivecs":
        return _read_vecs(path, "<i4").astype(np.int64)
    raise ValueError(f"{path}: expected .ivecs or .npy")


def normalized(array):
    """Return a float32 copy with unit-length rows (zero rows stay zero)."""
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1
    return (array / norms).astype(np.float32)


def exact_knn(base, queries, metric, k, block=128):
    """Exact top-k ids per query, best first, ties broken by smaller id.

    Distances follow the Rust tool: l2 = squared euclidean, ip = 1 - dot,
    cosine = 1 - cos. They are computed in float64 so that rounding in the
    ||x||^2 - 2 x.q + ||q||^2 expansion cannot reorder near-equal
    neighbours; queries are processed in blocks to bound memory to
    block x n distances.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    if metric == "cosine":
        base, queries = normalized(base), normalized(queries)
    k = min(k, len(base))
    base64 = base.astype(np.float64)
    base_sq = np.einsum("ij,ij->i", base64, base64)
    result = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        q = queries[start:start + block].astype(np.float64)
        dist = q @ base64.T  # dot products, turned into distances in place
        if metric == "l2":
            dist *= -2
            dist += base_sq[None, :]
            dist += np.einsum("ij,ij->i", q, q)[:, None]
        else:
            np.subtract(1, dist, out=dist)
        top = np.argpartition(dist, k - 1, axis=1)[:, :k]
        top_dist = np.take_along_axis(dist, top, axis=1)
        for row in range(len(q)):
            order = np.lexsort((top[row], top_dist[row]))
            result[start + row] = top[row, order]
    return result
