#!/usr/bin/env bash
# redis-benchmark against `shoal dev` and Debian's redis-server in the same run: PING,
# SET, GET, HSET with 50 clients, unpipelined and with pipeline 16. Prints a markdown
# table with the ratio Shoal / redis-server. Called by `make bench-resp`, which sets SHOAL.
set -euo pipefail
: "${SHOAL:?path to the release shoal binary}"
# Requests per test: pipelined runs are ten times longer, or they would last a blink.
REQUESTS="${REQUESTS:-200000}"
ROUNDS="${ROUNDS:-3}"
CLIENTS="${CLIENTS:-50}"
OUT="${OUT:-benches/results/redis_benchmark.csv}"
mkdir -p "$(dirname "$OUT")"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do redis-cli -p "$1" PING >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

work=$(mktemp -d)
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
pids=()
trap cleanup EXIT

shoal_port=$(free_port)
"$SHOAL" dev --standalone --api 127.0.0.1:0 --resp "127.0.0.1:$shoal_port" >/dev/null 2>"$work/shoal.log" &
pids+=($!)
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" --daemonize no >/dev/null &
pids+=($!)
wait_port "$shoal_port"
wait_port "$redis_port"

run() { # engine port pipeline
    local n=$((REQUESTS * ($3 > 1 ? 10 : 1)))
    redis-benchmark -h 127.0.0.1 -p "$2" -c "$CLIENTS" -n "$n" -P "$3" \
        -t ping_mbulk,set,get,hset --csv -q 2>/dev/null |
        tail -n +2 | tr -d '"' | awk -F, -v e="$1" -v p="$3" '{print e","p","$1","$2}'
}
: >"$OUT"
for round in $(seq "$ROUNDS"); do
    for pipeline in 1 16; do
        # Alternate the engines so that neither always runs on a warmer machine.
        run shoal "$shoal_port" "$pipeline" >>"$OUT"
        run redis "$redis_port" "$pipeline" >>"$OUT"
    done
done

python3 - "$OUT" <<'PY'
import csv, statistics, sys
runs = {}
for engine, pipeline, test, rps in csv.reader(open(sys.argv[1])):
    runs.setdefault((engine, int(pipeline), test.split(" ")[0]), []).append(float(rps))
# The median of the rounds: one unlucky scheduling does not decide a ratio.
rows = {k: statistics.median(v) for k, v in runs.items()}
print(f"median of {len(next(iter(runs.values())))} rounds")
print("| command | pipeline | shoal req/s | redis-server req/s | shoal / redis |")
print("|---|---|---|---|---|")
for (engine, pipeline, test), rps in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][2])):
    if engine != "shoal":
        continue
    other = rows.get(("redis", pipeline, test))
    ratio = f"{rps / other:.2f}" if other else "—"
    print(f"| {test} | {pipeline} | {rps:,.0f} | {other:,.0f} | {ratio} |")
PY
