#!/usr/bin/env bash
# A test cluster on one machine: N hosts as network namespaces, each with one veth into a
# bridge that lives in its own namespace. Addresses are 198.18.0.<i>/24 (the benchmarking
# range) and exist only inside the namespaces this script creates; the machine's own
# namespace gets no interface, address or route.
#
#   netns-cluster.sh up PREFIX N            create PREFIX-sw and PREFIX-h1..hN
#   netns-cluster.sh start PREFIX TOPOLOGY DIR [HOSTS...]
#                                           start vio-agent --host hI in PREFIX-hI for each
#                                           host (default: every namespace), control socket
#                                           DIR/hI.sock, log DIR/hI.log, pid DIR/hI.pid
#   netns-cluster.sh stop PREFIX DIR HOST   SIGKILL one agent
#   netns-cluster.sh down PREFIX [DIR]      kill the agents, delete every namespace
#   netns-cluster.sh run N TOPOLOGY -- CMD  up + start, run CMD, then down (also on failure)
#
# Needs root (ip netns). vio-agent is taken from $VIO_BIN (default .build/debug).
set -euo pipefail

BIN="${VIO_BIN:-$(cd "$(dirname "$0")/.." && pwd)/.build/debug}"

die() { echo "netns-cluster: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
command -v ip >/dev/null || die "needs iproute2 (ip)"

up() {
    local prefix=$1 n=$2 sw="$1-sw"
    ip netns add "$sw"
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" link set br0 up
    for i in $(seq 1 "$n"); do
        local ns="$prefix-h$i"
        ip netns add "$ns"
        ip -n "$sw" link add "veth-h$i" type veth peer name eth0 netns "$ns"
        ip -n "$sw" link set "veth-h$i" master br0 up
        ip -n "$ns" addr add "198.18.0.$i/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
    done
}

start() {
    local prefix=$1 topology=$2 dir=$3; shift 3
    local hosts=("$@")
    if [ ${#hosts[@]} -eq 0 ]; then
        mapfile -t hosts < <(ip netns list | awk '{print $1}' | grep "^$prefix-h" | sed "s/^$prefix-//" | sort)
    fi
    mkdir -p "$dir"
    for h in "${hosts[@]}"; do
        rm -f "$dir/$h.sock"
        ip netns exec "$prefix-$h" "$BIN/vio-agent" --topology "$topology" --host "$h" \
            --control-socket "$dir/$h.sock" >>"$dir/$h.log" 2>&1 &
        echo $! >"$dir/$h.pid"
    done
    for h in "${hosts[@]}"; do
        for _ in $(seq 1 200); do [ -S "$dir/$h.sock" ] && break; sleep 0.05; done
        [ -S "$dir/$h.sock" ] || die "agent for $h did not start: $(tail -3 "$dir/$h.log")"
    done
}

stop() {
    local dir=$2 h=$3
    [ -f "$dir/$h.pid" ] && kill -9 "$(cat "$dir/$h.pid")" 2>/dev/null || true
}

down() {
    local prefix=$1 dir=${2:-}
    if [ -n "$dir" ]; then
        for p in "$dir"/*.pid; do [ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null || true; done
    fi
    # Deleting a namespace removes its veth end, and so the pair.
    for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix-" || true); do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns delete "$ns"
    done
}

case "${1:-}" in
    up) up "$2" "$3" ;;
    start) shift; start "$@" ;;
    stop) stop "$2" "$3" "$4" ;;
    down) down "$2" "${3:-}" ;;
    run)
        n=$2 topology=$3; shift 3
        [ "${1:-}" = "--" ] && shift
        prefix="vio$$"
        dir=$(mktemp -d)
        trap 'down "$prefix" "$dir"; rm -rf "$dir"' EXIT
        up "$prefix" "$n"
        start "$prefix" "$topology" "$dir"
        echo "cluster $prefix up: control sockets in $dir"
        VIO_CLUSTER_PREFIX=$prefix VIO_CLUSTER_DIR=$dir "$@"
        ;;
    *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
