#!/usr/bin/env bash
# Cross-host round trip of two or more vio-agent builds, alternated in one pair of network
# namespaces: how a change to the agent is judged here, where one run's p50 moves 10-20% with
# the VM and only alternating runs side by side say anything.
#
#   scripts/ab-round-trip.sh ROUNDS AGENT_POLL_US SECURITY AGENT_BIN [AGENT_BIN...]
#   e.g. scripts/ab-round-trip.sh 6 100 plaintext /tmp/base/vio-agent .build/release/vio-agent
#
# Two hosts (scripts/netns-cluster.sh), one link a1 <-> b1, K = 2 channels; vio-probe
# ping/echo with 64 B messages and the sleep wait, pinned to CPUs 0 and 1, agents unpinned
# (as `make bench`). Each round starts both agents of each build in turn and prints one line
# per build and round, then every build's p50s sorted. ROUND_TRIPS (default 20000) sets the
# round trips per run. An AGENT_BIN may be a wrapper script (e.g. one that sets an
# environment variable before exec'ing the agent). Needs root.
set -euo pipefail
[ $# -ge 4 ] || { sed -n '6,7p' "$0" >&2; exit 2; }
rounds=$1 poll=$2 security=$3
shift 3
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${VIO_BIN:-$root/.build/release}"
if [ "$(id -u)" != 0 ]; then echo "ab-round-trip: needs root (network namespaces)" >&2; exit 1; fi
for agent in "$@"; do [ -x "$agent" ] || { echo "ab-round-trip: $agent is not executable" >&2; exit 1; }; done
source "$root/scripts/scratch-cluster.sh"
scratch_cluster ab "ab$$"

pair_keys "$bin/vioctl"
pair_topology "$work/t.yaml" "$security" "$poll" 1
bash "$root/scripts/netns-cluster.sh" up "$prefix" 2 >/dev/null

: >"$work/results"
for round in $(seq 1 "$rounds"); do
  for index in $(seq 1 $#); do
    agent="${!index}"
    pair_start "$agent" "$bin/vioctl" "$work/t.yaml" || echo "round $round build $index: no round trips" >&2
    "$bin/vio-probe" echo --as b1 --wait sleep --cpu 1 --socket "$work/beta.sock" >"$work/echo.log" 2>&1 &
    echo $! >"$work/echo.pid"
    sleep 0.3
    p50=$("$bin/vio-probe" ping --as a1 --peer b1 --wait sleep --cpu 0 --count "${ROUND_TRIPS:-20000}" \
      --socket "$work/alpha.sock" 2>&1 | grep -o 'p50=[0-9.]*' | cut -d= -f2 || true)
    wait "$(cat "$work/echo.pid")" 2>/dev/null || true
    pair_stop
    echo "round $round build $index ($agent): p50 ${p50:-failed} us"
    echo "$index ${p50:-failed}" >>"$work/results"
  done
done
for index in $(seq 1 $#); do
  echo "build $index (${!index}): $(awk -v i="$index" '$1 == i { print $2 }' "$work/results" | sort -n | paste -sd' ') us"
done
