#!/usr/bin/env bash
# The demo: a vio-agent on the embedded single-host topology, two instances (db1, db2)
# exchanging request/response traffic over their shared-memory link, round trips measured
# under each wait policy, the agent's view with vioctl, then a clean stop.
# Usage: scripts/demo.sh BIN_DIR (where vio-agent, vioctl and vio-probe are).
set -euo pipefail
bin="${1:?usage: demo.sh BIN_DIR}"

# A private socket path, so the demo never collides with an agent already running here.
work="$(mktemp -d /tmp/vio-demo.XXXXXX)"
export VIO_CONTROL_SOCKET="$work/local.sock"
agent_pid=""
cleanup() {
  jobs -p | xargs -r kill -KILL 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_for() {  # wait_for FILE TEXT: until FILE contains TEXT (10 s at most)
  for _ in $(seq 1 500); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.02; done
  echo "timed out waiting for '$2' in $1:"; cat "$1"; exit 1
}

step "The embedded topology, resolved (vioctl topology show)"
"$bin/vioctl" topology show

step "Starting vio-agent"
"$bin/vio-agent" --log-level info 2>"$work/agent.log" &
agent_pid=$!
for _ in $(seq 1 200); do [ -S "$VIO_CONTROL_SOCKET" ] && break; sleep 0.05; done
[ -S "$VIO_CONTROL_SOCKET" ] || { echo "agent did not start:"; cat "$work/agent.log"; exit 1; }
echo "agent pid $agent_pid listening on $VIO_CONTROL_SOCKET"

# Two cores: db1 on CPU 0, db2 on CPU 1, so a busy-polling pair never shares a core.
for policy in busy spin sleep; do
  case $policy in
    busy) what="busy-poll: both ends spin";;
    spin) what="spin-then-sleep (the default): spin 50 us, then sleep on the doorbell";;
    sleep) what="sleep-only: every message wakes a sleeping receiver";;
  esac
  step "db1 -> db2 request/response, 64 B, $what"
  "$bin/vio-probe" echo --as db2 --wait "$policy" --cpu 1 >"$work/echo.log" &
  echo_pid=$!
  wait_for "$work/echo.log" "attached"
  linger=0; [ "$policy" = sleep ] && linger=2000
  "$bin/vio-probe" ping --as db1 --peer db2 --count 100000 --wait "$policy" --cpu 0 --linger-ms "$linger" >"$work/ping.log" &
  ping_pid=$!
  wait_for "$work/ping.log" "rtt_us"
  grep rtt_us "$work/ping.log"
  if [ "$policy" = sleep ]; then
    step "vioctl status (while the link is open)"
    "$bin/vioctl" status
  fi
  wait "$ping_pid"
  wait "$echo_pid"
done

step "Stopping the agent (SIGTERM)"
kill -TERM "$agent_pid"
status=0
wait "$agent_pid" || status=$?
agent_pid=""
cat "$work/agent.log"
if [ "$status" -ne 0 ]; then echo "agent exited with status $status"; exit 1; fi
if [ -e "$VIO_CONTROL_SOCKET" ]; then echo "agent left its socket behind"; exit 1; fi
echo "agent stopped cleanly (exit 0, socket removed)"
