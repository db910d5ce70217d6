# Shoal's two user-facing commands are `make run` and `make test`; everything else here
# serves them or the benchmarks.

export CARGO_TARGET_DIR ?= $(HOME)/.cache/shoal-target
VENV ?= $(HOME)/.cache/shoal-venv
PY := $(VENV)/bin/python
DATA ?= $(HOME)/.cache/shoal-bench-data
RESULTS ?= benches/results
RESP ?= 127.0.0.1:6379
CLUSTER_ARGS ?= --dev --readonly --requests 30000 --warmup 0.5
DATA_DIR ?= data

SEED ?= 1

.PHONY: all setup test lint unit pytest chaos chaos-quick run build bench-ann bench-resp bench-replication bench-cluster bench-kernels bench-search-fixed filter-threshold clean

all: test

setup:
	@scripts/setup.sh

## Everything CI checks: formatting, lints, Rust tests, Python tests, a short fault run.
test: setup lint unit pytest chaos-quick

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	# The fuzz targets live outside the workspace (libFuzzer wants nightly to run);
	# checking them on stable keeps them compiling with the parsers they call.
	cargo check --manifest-path crates/query/fuzz/Cargo.toml --bins

unit:
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		cargo test --workspace --no-fail-fast; \
	fi

CLUSTER_CLIENT_TESTS := test_redis_py_seed.py test_langchain.py test_errors.py test_json.py \
	test_transactions.py test_resp3.py test_cluster.py test_acl.py test_surface.py test_grpc.py \
	test_connection_and_keys.py test_random_commands.py test_redispy_search_api.py

## Python tests: the benchmark harness, and the real clients against the real binary.
pytest:
	cargo build -p shoal-bench -p shoal-server
	SHOAL_BENCH=$(CARGO_TARGET_DIR)/debug/shoal-bench SHOAL_BIN=$(CARGO_TARGET_DIR)/debug/shoal \
		$(PY) -m pytest -q benches/tests
	SHOAL_BIN=$(CARGO_TARGET_DIR)/debug/shoal $(PY) -m pytest -q tests/clients
	# The same client tests, unchanged, through a router over 3 processes and 3 groups.
	SHOAL_BIN=$(CARGO_TARGET_DIR)/debug/shoal SHOAL_CLUSTER_GROUPS=3 $(PY) -m pytest -q \
		$(addprefix tests/clients/,$(CLUSTER_CLIENT_TESTS))

## Fault injection (chaos-tests/): a short seeded run of every fault kind on 3 nodes.
chaos-quick:
	cargo build -p shoal-server -p shoal-chaos
	$(CARGO_TARGET_DIR)/debug/shoal-chaos --shoal $(CARGO_TARGET_DIR)/debug/shoal --suite quick --seed $(SEED)

## The full suite: 6 nodes over 3 zones, more rounds, mixed faults (minutes). Reproduce
## a run with SEED=n.
chaos: setup
	cargo build -p shoal-server -p shoal-chaos
	$(CARGO_TARGET_DIR)/debug/shoal-chaos --shoal $(CARGO_TARGET_DIR)/debug/shoal --suite full --seed $(SEED) --json $(RESULTS)/chaos.json

build:
	cargo build --release --workspace

## Starts shoal dev (3 nodes in zones a/b/c, 3 shard groups of 3 replicas, in one process)
## with RESP on $(RESP) and its RocksDB under $(DATA_DIR); Ctrl-C stops it.
run: setup
	cargo build --release -p shoal-server
	$(CARGO_TARGET_DIR)/release/shoal dev --resp $(RESP) --data-dir $(DATA_DIR)

## hnswlib, faiss and Shoal on the same 200k x 128 dataset, side by side.
bench-ann: setup
	cargo build --release -p shoal-bench
	PY=$(PY) DATA=$(DATA) RESULTS=$(RESULTS) BENCH=$(CARGO_TARGET_DIR)/release/shoal-bench \
		benches/run_ann.sh

## The RESP front: redis-benchmark against Debian's redis-server in the same run, then
## FT.SEARCH latency and pipelined-HSET ingest on the bench-ann dataset.
bench-resp: setup
	@command -v redis-server >/dev/null || { echo "installing redis-server (for comparison only)"; \
		sudo_cmd=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	cargo build --release -p shoal-server -p shoal-bench
	$(PY) benches/gen_dataset.py --n 200000 --dim 128 --clusters 1000 --queries 1000 --seed 42 --out $(DATA)
	SHOAL=$(CARGO_TARGET_DIR)/release/shoal OUT=$(RESULTS)/redis_benchmark.csv benches/resp/redis_benchmark.sh
	$(PY) benches/resp/search_ingest.py --shoal $(CARGO_TARGET_DIR)/release/shoal \
		--bench $(CARGO_TARGET_DIR)/release/shoal-bench --data $(DATA) --json $(RESULTS)/search_ingest.json \
		--busy-poll-us 200

## Replicated HSET (3 shoal node processes) beside one unreplicated shoal dev --standalone, fsync
## on its own, the CPU of 64 idle groups per node, and how long a snapshot of 100k
## vectors holds up writes.
bench-replication: setup
	@command -v redis-benchmark >/dev/null || { sudo_cmd=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools >/dev/null; }
	cargo build --release -p shoal-server
	$(PY) benches/replication/replication_bench.py --shoal $(CARGO_TARGET_DIR)/release/shoal \
		--json $(RESULTS)/replication.json
	$(PY) benches/replication/snapshot_stall.py --shoal $(CARGO_TARGET_DIR)/release/shoal \
		--json $(RESULTS)/snapshot_stall.json

## FT.SEARCH KNN 10 through a router over 3 shard groups -- 3 shoal node processes and
## shoal dev, default reads and READONLY -- beside one shoal dev --standalone with the same
## data, at 1 and 32 clients (QPS, p50, p99, recall), and pipelined-HSET ingest through the
## router, on the bench-ann dataset. CLUSTER_ARGS defaults to the rows docs/benchmarks.md
## records (30,000 requests a row after a 0.5 s warm-up); add --no-processes for shoal dev
## alone.
bench-cluster: setup
	cargo build --release -p shoal-server -p shoal-bench
	$(PY) benches/gen_dataset.py --n 200000 --dim 128 --clusters 1000 --queries 1000 --seed 42 --out $(DATA)
	$(PY) benches/cluster/cluster_search.py --shoal $(CARGO_TARGET_DIR)/release/shoal \
		--driver rust --bench $(CARGO_TARGET_DIR)/release/shoal-bench \
		--data $(DATA) --json $(RESULTS)/cluster_search.json $(CLUSTER_ARGS)

## criterion micro-benchmarks of the distance kernels.
bench-kernels:
	cargo bench -p shoal-bench --bench distance

## criterion: what an FT.SEARCH costs the engine besides its walk (a 16-document FLAT index).
bench-search-fixed:
	cargo bench -p shoal-bench --bench search_fixed

## Where an exact scan of a filter's ids beats the filtered walk.
filter-threshold: setup
	cargo build --release -p shoal-bench
	$(PY) benches/gen_dataset.py --n 200000 --dim 128 --clusters 1000 --queries 1000 --seed 42 --out $(DATA)
	$(CARGO_TARGET_DIR)/release/shoal-bench filter-threshold --base $(DATA)/base.fvecs --queries $(DATA)/queries.fvecs

clean:
	cargo clean
