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
# (as `make bench`). Each round starts both agents of each build in turn, then measures direct
# TCP over the same veth (Benchmarks/c/socket_pingpong.c) and the relay floor
# (Benchmarks/c/relay_floor.c, its relays polling when AGENT_POLL_US > 0), and prints one line
# per case and round. At the end: every case's p50s sorted, and each build's ratio to direct
# TCP per round (the VM's speed drifts between rounds, so a ratio within a round says more
# than two medians). ROUND_TRIPS (default 20000) sets the round trips per run. An AGENT_BIN may
# be a wrapper script (e.g. one that sets an environment variable before exec'ing the agent).
# Needs root and a C compiler.
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
cc -O2 -Wall -Wextra -o "$work/socket_pingpong" "$root/Benchmarks/c/socket_pingpong.c"
cc -O2 -Wall -Wextra -o "$work/relay_floor" "$root/Benchmarks/c/relay_floor.c"
floor_mode=$([ "$poll" -gt 0 ] && echo poll || echo sleep)
count="${ROUND_TRIPS:-20000}"
p50_of() { grep -o 'p50=[0-9.]*' | cut -d= -f2 | head -1 || true; }

: >"$work/results"
for round in $(seq 1 "$rounds"); do
  for index in $(seq 1 $#); do
    agent="${!index}"
    pair_start "$agent" "$bin/vioctl" "$work/t.yaml" || echo "round $round build $index: no round trips" >&2
    "$bin/vio-probe" echo --as b1 --wait sleep --cpu 1 --socket "$work/beta.sock" >"$work/echo.log" 2>&1 &
    echo $! >"$work/echo.pid"
    sleep 0.3
    p50=$("$bin/vio-probe" ping --as a1 --peer b1 --wait sleep --cpu 0 --count "$count" \
      --socket "$work/alpha.sock" 2>&1 | p50_of)
    wait "$(cat "$work/echo.pid")" 2>/dev/null || true
    pair_stop
    echo "round $round build $index ($agent): p50 ${p50:-failed} us"
    echo "$round $index ${p50:-failed}" >>"$work/results"
  done
  tcp=$("$work/socket_pingpong" tcpns 64 "$count" "$prefix-h2" "$prefix-h1" 198.18.0.2 2>&1 | p50_of)
  floor=$("$work/relay_floor" rtt 64 "$count" "$prefix-h1" "$prefix-h2" 198.18.0.2 "$floor_mode" 2>&1 | p50_of)
  echo "round $round direct TCP: p50 ${tcp:-failed} us; relay floor ($floor_mode): p50 ${floor:-failed} us"
  echo "$round tcp ${tcp:-failed}" >>"$work/results"
  echo "$round floor ${floor:-failed}" >>"$work/results"
done
sorted() { awk -v c="$1" '$2 == c { print $3 }' "$work/results" | sort -n | paste -sd' '; }
for index in $(seq 1 $#); do echo "build $index (${!index}): $(sorted "$index") us"; done
echo "direct TCP: $(sorted tcp) us"
echo "relay floor ($floor_mode): $(sorted floor) us"
# Per round: the case's p50 over direct TCP's p50 of the same round.
ratios() {
  awk -v c="$1" '$2 == "tcp" { t[$1] = $3 } $2 == c { v[$1] = $3 }
    END { for (r in v) if (v[r] + 0 > 0 && t[r] + 0 > 0) printf "%.2f\n", v[r] / t[r] }' "$work/results" | sort -n | paste -sd' '
}
for index in $(seq 1 $#); do echo "build $index / direct TCP, per round: $(ratios "$index")"; done
echo "relay floor / direct TCP, per round: $(ratios floor)"
