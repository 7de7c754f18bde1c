#!/usr/bin/env bash
# The demo: a vio-agent on the embedded single-host topology, inspected with vioctl, then
# stopped with SIGTERM. Usage: scripts/demo.sh BIN_DIR (where vio-agent and vioctl are).
set -euo pipefail
bin="${1:?usage: demo.sh BIN_DIR}"

# A private socket path, so the demo never collides with an agent already running here.
work="$(mktemp -d /tmp/vio-demo.XXXXXX)"
export VIO_CONTROL_SOCKET="$work/local.sock"
agent_pid=""
cleanup() {
  if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then kill -KILL "$agent_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "The embedded topology, resolved (vioctl topology show)"
"$bin/vioctl" topology show

step "Starting vio-agent (embedded single-host topology)"
"$bin/vio-agent" --log-level info 2>"$work/agent.log" &
agent_pid=$!
for _ in $(seq 1 200); do [ -S "$VIO_CONTROL_SOCKET" ] && break; sleep 0.05; done
[ -S "$VIO_CONTROL_SOCKET" ] || { echo "agent did not start:"; cat "$work/agent.log"; exit 1; }
echo "agent pid $agent_pid listening on $VIO_CONTROL_SOCKET"

step "vioctl status"
"$bin/vioctl" status

step "Stopping the agent (SIGTERM)"
kill -TERM "$agent_pid"
status=0
wait "$agent_pid" || status=$?
agent_pid=""
cat "$work/agent.log"
if [ "$status" -ne 0 ]; then echo "agent exited with status $status"; exit 1; fi
if [ -e "$VIO_CONTROL_SOCKET" ]; then echo "agent left its socket behind"; exit 1; fi
echo "agent stopped cleanly (exit 0, socket removed)"
