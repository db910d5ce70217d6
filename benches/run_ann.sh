#!/usr/bin/env bash
# Runs Shoal and its peers on one dataset in one go and prints the side-by-side table.
# Called by `make bench-ann`, which sets PY, DATA, RESULTS and BENCH.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PY:?}" "${DATA:?}" "${RESULTS:?}" "${BENCH:?}"
mkdir -p "$RESULTS"

"$PY" benches/gen_dataset.py --n 200000 --dim 128 --clusters 1000 --queries 1000 \
    --seed 42 --out "$DATA"

common() {
    echo --base "$DATA/base.fvecs" --queries "$DATA/queries.fvecs" \
        --groundtruth "$DATA/gt_$1.ivecs" --metric "$1" \
        --m 16 --ef-construction 200 --ef-search 10,20,40,80,160 --k 10 \
        --threads 1 --build-threads 2 --builds "${BUILDS:-3}"
}

for metric in l2 ip cosine; do
    # shellcheck disable=SC2046
    "$BENCH" ann --algo hnsw $(common "$metric") --json "$RESULTS/shoal_hnsw_$metric.json"
    # shellcheck disable=SC2046
    "$PY" benches/peers/run_peer.py --engine hnswlib --algo hnsw $(common "$metric") \
        --json "$RESULTS/hnswlib_hnsw_$metric.json"
    # shellcheck disable=SC2046
    "$PY" benches/peers/run_peer.py --engine faiss --algo hnsw $(common "$metric") \
        --json "$RESULTS/faiss_hnsw_$metric.json"
done

# shellcheck disable=SC2046
"$BENCH" ann --algo flat $(common l2) --json "$RESULTS/shoal_flat_l2.json"
# shellcheck disable=SC2046
"$PY" benches/peers/run_peer.py --engine faiss --algo flat $(common l2) \
    --json "$RESULTS/faiss_flat_l2.json"

"$PY" benches/compare.py "$RESULTS"

# The QPS ratio again, from passes of Shoal and hnswlib taken in turns (benches/paired.py):
# the sequential runs above are exposed to the host's speed drifting between them.
for metric in l2 ip cosine; do
    "$PY" benches/paired.py --bench "$BENCH" --python "$PY" \
        --base "$DATA/base.fvecs" --queries "$DATA/queries.fvecs" \
        --groundtruth "$DATA/gt_$metric.ivecs" --metric "$metric" \
        --m 16 --ef-construction 200 --ef-search 10,20,40,80,160 --k 10 --build-threads 2 \
        --builds "${PAIRED_BUILDS:-3}" --rounds "${PAIRED_ROUNDS:-15}" \
        --json "$RESULTS/paired/hnsw_$metric.json"
done
