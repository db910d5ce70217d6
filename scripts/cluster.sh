#!/usr/bin/env bash
# A cluster of real `shoal node` processes on loopback, for trying failover by hand.
#
#   scripts/cluster.sh up N       start N nodes (zones a, b, c in turn), wait for leaders
#   scripts/cluster.sh status [N] each node's pid, zone, ports and its view of the groups and of the cluster map
#                                 (with N: nodes 1..N, those not running listed as down)
#   scripts/cluster.sh down       stop every node (SIGTERM), keep the data
#   scripts/cluster.sh kill ID    SIGKILL one node (it comes back with `up N` again)
#   scripts/cluster.sh clean      stop every node and delete the data
#
# Node i serves RESP on BASE+i, its peers' gRPC on BASE+100+i and the gRPC client API
# (proto/shoal.proto) on BASE+200+i. Settings, from the environment:
#   SHOAL_BIN            the binary       (default: $CARGO_TARGET_DIR/release/shoal,
#                                          else target/release/shoal)
#   SHOAL_CLUSTER_DIR    data and logs    (default: /tmp/shoal-cluster)
#   SHOAL_BASE_PORT      BASE             (default: 7000)
#   SHOAL_GROUPS         shard groups     (default: 3)
set -euo pipefail

target=${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}
bin=${SHOAL_BIN:-$target/release/shoal}
[[ -x $bin ]] || bin=target/release/shoal
dir=${SHOAL_CLUSTER_DIR:-/tmp/shoal-cluster}
base=${SHOAL_BASE_PORT:-7000}
groups=${SHOAL_GROUPS:-3}
zones=(a b c)

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

resp_port() { echo $((base + $1)); }
grpc_port() { echo $((base + 100 + $1)); }
api_port() { echo $((base + 200 + $1)); }

# The nodes started by the last `up`, one id per line.
ids() { [[ -f $dir/nodes ]] && cat "$dir/nodes" || true; }

# Whether process PID runs: whether any of its threads does. After a SIGKILL the main
# thread can be a zombie while another still finishes a system call, holding the
# process's sockets and files; an exited process nobody has reaped yet does not run.
running() {
    local states
    states=$(cat /proc/"$1"/task/*/stat 2>/dev/null | sed -n 's/^.*) \(.\).*$/\1/p' || true)
    [[ $states == *[!Z$'\n']* ]]
}

alive() { [[ -f $dir/$1.pid ]] && running "$(cat "$dir/$1.pid")"; }

# Waits up to 10 s for process PID to exit. A SIGKILL takes effect only once every
# thread has left the kernel (a RocksDB fsync can hold one), and until then the node's
# ports and files are still its own: a node started again at once would fail to bind.
gone() {
    local i
    for ((i = 0; i < 100; i++)); do
        running "$1" || return 0
        sleep 0.1
    done
    echo "process $1 did not exit within 10 s" >&2
    return 1
}

ask() { # ask ID COMMAND... : one RESP command to node ID, with a bash /dev/tcp socket
    local id=$1
    shift
    local req="*$#\r\n" arg
    for arg in "$@"; do req+="\$${#arg}\r\n$arg\r\n"; done
    req+="*1\r\n\$4\r\nQUIT\r\n" # the node closes the connection after answering
    exec 3<>"/dev/tcp/127.0.0.1/$(resp_port "$id")" || return 1
    printf '%b' "$req" >&3
    timeout 5 cat <&3 | tr -d '\r' || true
    exec 3<&- 3>&-
}

up() {
    local n=${1:?usage: cluster.sh up N}
    [[ -x $bin ]] || { echo "no shoal binary at $bin (make build, or set SHOAL_BIN)" >&2; exit 1; }
    mkdir -p "$dir"
    if [[ -f $dir/nodes && $(wc -l <"$dir/nodes") -ne $n ]]; then
        echo "$dir holds a cluster of $(wc -l <"$dir/nodes") nodes; clean it first" >&2
        exit 1
    fi
    local members=() i
    for ((i = 1; i <= n; i++)); do
        members+=(--member "$i,${zones[$(((i - 1) % 3))]},127.0.0.1:$(grpc_port $i),127.0.0.1:$(resp_port $i)")
    done
    seq 1 "$n" >"$dir/nodes"
    for ((i = 1; i <= n; i++)); do
        if alive "$i"; then continue; fi
        # Appended: the end of a killed node's log stays readable after its restart.
        echo "--- cluster.sh up: starting node $i at $(date -u +%FT%TZ)" >>"$dir/node-$i.log"
        "$bin" node --id "$i" --zone "${zones[$(((i - 1) % 3))]}" \
            --resp "127.0.0.1:$(resp_port $i)" --grpc "127.0.0.1:$(grpc_port $i)" \
            --api "127.0.0.1:$(api_port $i)" --data-dir "$dir/node-$i" --groups "$groups" "${members[@]}" \
            >>"$dir/node-$i.out" 2>>"$dir/node-$i.log" &
        echo $! >"$dir/$i.pid"
    done
    # Ready when every node answers and each sees a leader for every group.
    local deadline=$((SECONDS + 60)) ready
    while ((SECONDS < deadline)); do
        ready=1
        for ((i = 1; i <= n; i++)); do
            # A node that exited will not come back by waiting: say why at once.
            if ! alive "$i"; then
                echo "node $i exited; the end of $dir/node-$i.log:" >&2
                tail -n 20 "$dir/node-$i.log" | sed 's/^/    /' >&2
                exit 1
            fi
            local led
            led=$(ask "$i" INFO cluster 2>/dev/null | grep -c '^group[0-9]*:leader=[0-9]' || true)
            ((led == groups)) || ready=0
        done
        if ((ready)); then
            echo "cluster of $n nodes and $groups groups up; RESP on $(resp_port 1)..$(resp_port "$n"), gRPC API on $(api_port 1)..$(api_port "$n")"
            return 0
        fi
        sleep 0.2
    done
    # Say which node is missing what: one that does not answer, or the groups it sees
    # without a leader (a node that exited was reported in the loop).
    {
        echo "not every node saw a leader for each of the $groups groups within 60 s:"
        for ((i = 1; i <= n; i++)); do
            local view
            view=$(ask "$i" INFO cluster 2>/dev/null | grep -E '^(group[0-9]*|meta_group):' || true)
            echo "  node $i: ${view:-no answer}" | sed '2,$s/^/    /'
        done
        echo "see $dir/node-*.log"
    } >&2
    exit 1
}

status() {
    local i list
    if [[ -n ${1:-} ]]; then
        [[ $1 =~ ^[1-9][0-9]*$ ]] || { echo "usage: cluster.sh status [N]" >&2; exit 2; }
        list=$(seq 1 "$1")
    else
        list=$(ids)
    fi
    for i in $list; do
        if alive "$i"; then
            echo "node $i  pid $(cat "$dir/$i.pid")  resp $(resp_port "$i")  grpc $(grpc_port "$i")  api $(api_port "$i")"
            { ask "$i" INFO cluster | grep -E '^(group|meta_group|node[0-9]|shoal_)' || echo "(no answer)"; } | sed 's/^/    /'
        else
            echo "node $i  down"
        fi
    done
}

down() {
    local i
    for i in $(ids); do
        if alive "$i"; then kill -TERM "$(cat "$dir/$i.pid")"; fi
    done
    for i in $(ids); do
        while alive "$i"; do sleep 0.1; done
        rm -f "$dir/$i.pid"
    done
}

case ${1:-} in
up) up "${2:-}" ;;
status) status "${2:-}" ;;
down) down ;;
kill)
    id=${2:?usage: cluster.sh kill ID}
    if alive "$id"; then
        pid=$(cat "$dir/$id.pid")
        kill -KILL "$pid" 2>/dev/null || true # it may have exited since
        gone "$pid"
    fi
    rm -f "$dir/$id.pid"
    ;;
clean)
    down
    rm -rf "$dir"
    ;;
*) usage ;;
esac
