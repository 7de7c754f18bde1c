#!/usr/bin/env bash
# Instructions the agent executes per cross-host round trip, counted by valgrind (callgrind):
# a deterministic figure for the agent's own code on the message path, where timings on this
# 2-core VM move by 10-20% from run to run.
#
#   scripts/agent-instructions.sh BIN_DIR [ROUND_TRIPS] [AGENT_POLL_US]
#   make agent-instructions
#
# Two network-namespace hosts (scripts/netns-cluster.sh), one link a1 <-> b1, plaintext
# channels; vio-probe ping/echo with 64 B messages. Agent alpha runs under callgrind, which
# collects only inside the agent's loop (Agent.run: start-up is left out); the total over
# ROUND_TRIPS plus the probe's warm-up is divided by the round trips. Alpha carries both
# directions of every round trip: one message out (ring -> frame -> socket) and one in
# (socket -> frame -> ring). Prints the figure and the ten costliest functions; with
# CALLGRIND_OUT=FILE keeps callgrind's raw counts there (for callgrind_annotate --tree=caller).
# Needs root (namespaces) and valgrind.
set -euo pipefail
bin="${1:?usage: agent-instructions.sh BIN_DIR [ROUND_TRIPS] [AGENT_POLL_US]}"
count="${2:-10000}"
poll="${3:-0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$(id -u)" != 0 ]; then echo "agent-instructions: needs root (network namespaces)" >&2; exit 1; fi
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
source "$root/scripts/scratch-cluster.sh"
scratch_cluster instructions "vi$$"

# valgrind 3.19 (Debian 12) cannot read Swift 6's DWARF 5: count on a copy without it.
strip --strip-debug -o "$work/vio-agent" "$bin/vio-agent"
pair_topology "$work/t.yaml" plaintext "$poll" 1
bash "$root/scripts/netns-cluster.sh" up "$prefix" 2 >/dev/null
ip netns exec "$prefix-h1" valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
  --toggle-collect='$s8VIOAgent5AgentC3runyyAA0B5ErrorOYKF' \
  "$work/vio-agent" --topology "$work/t.yaml" --host alpha --control-socket "$work/alpha.sock" \
  --log-level warning 2>"$work/alpha.log" &
echo $! >"$work/alpha.pid"
ip netns exec "$prefix-h2" "$bin/vio-agent" --topology "$work/t.yaml" --host beta \
  --control-socket "$work/beta.sock" --log-level warning 2>"$work/beta.log" &
echo $! >"$work/beta.pid"
pair_connected "$bin/vioctl" 600 || true  # valgrind starts slowly; the ping says if it never came up
"$bin/vio-probe" echo --as b1 --wait sleep --socket "$work/beta.sock" >"$work/echo.log" 2>&1 &
echo $! >"$work/echo.pid"
sleep 0.3
warmup=1000
"$bin/vio-probe" ping --as a1 --peer b1 --wait sleep --count "$count" --warmup "$warmup" \
  --socket "$work/alpha.sock" >"$work/ping.log" 2>&1 || { cat "$work/ping.log" "$work"/*.log >&2; exit 1; }
wait "$(cat "$work/echo.pid")" 2>/dev/null || true
# SIGTERM: the agent stops its loop cleanly and callgrind writes its counts.
for name in alpha beta; do kill "$(cat "$work/$name.pid")"; wait "$(cat "$work/$name.pid")" 2>/dev/null || true; done
[ -n "${CALLGRIND_OUT:-}" ] && cp "$work/callgrind.out" "$CALLGRIND_OUT"
total=$(callgrind_annotate "$work/callgrind.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
echo "agent instructions per round trip: $((total / (count + warmup))) (agent_poll_us $poll, $count round trips, callgrind)"
echo "costliest functions (self):"
callgrind_annotate "$work/callgrind.out" 2>/dev/null | sed -n '/file:function/,$p' | sed -n '3,12p' |
  sed 's/ \[.*//; s/???://' | { if command -v swift-demangle >/dev/null; then swift-demangle --simplified; else cat; fi; } | cut -c1-150
