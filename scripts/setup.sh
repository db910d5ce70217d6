#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test Shoal, and nothing
# that is already there. Safe to run again and again; `make test` runs it first.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${SHOAL_VENV:-$HOME/.cache/shoal-venv}"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# System packages: a C/C++ toolchain for simsimd and RocksDB, libclang for bindgen
# (RocksDB's bindings), protoc for the gRPC code, Python's venv module for the peer
# benchmarks and client tests, redis-tools for redis-cli (client tests) and
# redis-benchmark.
missing=()
for pkg in build-essential pkg-config libclang-dev clang protobuf-compiler python3-venv python3-dev redis-tools; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Rust: the toolchain comes with the machine (rustup); make sure fmt and clippy are there.
if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found; install Rust with rustup first" >&2
    exit 1
fi
for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
        rustup component add "$component"
    fi
done

# Python: one venv outside the clone, reinstalled only when the requirements change.
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
reqs=(benches/peers/requirements.txt tests/clients/requirements.txt)
stamp="$VENV/.shoal-requirements.sha"
want=$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing Python requirements into $VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q $(printf -- '-r %s ' "${reqs[@]}")
    echo "$want" >"$stamp"
fi
