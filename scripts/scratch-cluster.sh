# Sourced by the scripts that run agents in throw-away network namespaces
# (bench-hosts.sh, agent-instructions.sh, ab-round-trip.sh), after they set $root:
#
#   scratch_cluster NAME PREFIX
#
# sets $work (a new directory /tmp/vio-NAME.XXXXXX) and $prefix, and on exit, also after a
# failure, kills every process whose pid is in $work/*.pid, deletes the namespaces PREFIX-*
# (scripts/netns-cluster.sh down) and removes $work.
scratch_cluster() {
  work="$(mktemp -d "/tmp/vio-$1.XXXXXX")"
  prefix="$2"
  trap scratch_cluster_cleanup EXIT
}

scratch_cluster_cleanup() {
  for p in "$work"/*.pid; do [ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null || true; done
  bash "$root/scripts/netns-cluster.sh" down "$prefix" >/dev/null 2>&1 || true
  rm -rf "$work"
}

# Two hosts, alpha (198.18.0.1) and beta (198.18.0.2), in $prefix-h1 and $prefix-h2.

# pair_keys VIOCTL: a key pair per host, $work/NAME.key and its public line $work/NAME.pub.
pair_keys() {
  for name in alpha beta; do
    "$1" keys generate "$name" --out "$work/$name.key" | sed -n 's/^ *key: //p' >"$work/$name.pub"
  done
}

# pair_topology FILE SECURITY AGENT_POLL_US N (AGENT_POLL_US: microseconds, auto, or default: left out): N instances per host (a1..aN, b1..bN), every
# a-instance linked to every b-instance, K = 2 channels; hosts carry their keys when
# pair_keys made them.
pair_topology() {
  local name key
  {
    echo "cluster: $(basename "$1" .yaml)"; echo "version: 1"
    # POLL "default" leaves agent_poll_us out: what a user who sets nothing runs.
    echo "defaults: { ring_size: 1MiB, port: 7300, transport: tcp, channels: 2, security: $2$([ "$3" = default ] || echo ", agent_poll_us: $3") }"
    echo "hosts:"
    for name in alpha beta; do
      key=""
      [ -f "$work/$name.pub" ] && key=", key: \"$(cat "$work/$name.pub")\""
      echo "  - { name: $name, address: 198.18.0.$([ $name = alpha ] && echo 1 || echo 2)$key }"
    done
    echo "instances:"
    for i in $(seq 1 "$4"); do echo "  - { name: a$i, host: alpha }"; echo "  - { name: b$i, host: beta }"; done
    echo "links:"
    for i in $(seq 1 "$4"); do for j in $(seq 1 "$4"); do echo "  - between: [a$i, b$j]"; done; done
  } >"$1"
}

# pair_connected VIOCTL [TRIES]: waits (0.05 s a try, 400 tries by default) until alpha's
# agent has both channels to beta up; fails when it does not.
pair_connected() {
  for _ in $(seq 1 "${2:-400}"); do
    "$1" status --socket "$work/alpha.sock" 2>/dev/null | grep -q "channels 2/2" && return 0
    sleep 0.05
  done
  return 1
}

# pair_start VIO_AGENT VIOCTL TOPOLOGY: an agent per namespace (control socket, pid and log
# $work/NAME.sock, .pid, agent-NAME.log, key file $work/NAME.key), then pair_connected; when
# they do not connect, says so with the end of their logs and fails.
pair_start() {
  local h name
  for h in 1 2; do
    name=$([ "$h" = 1 ] && echo alpha || echo beta)
    rm -f "$work/$name.sock"
    ip netns exec "$prefix-h$h" "$1" --topology "$3" --host "$name" --key-file "$work/$name.key" \
      --control-socket "$work/$name.sock" --log-level warning 2>>"$work/agent-$name.log" &
    echo $! >"$work/$name.pid"
  done
  pair_connected "$2" && return 0
  echo "the agents did not connect: $(tail -n 3 "$work"/agent-*.log)" >&2
  return 1
}

# pair_stop: stops both agents (SIGTERM) and waits until they are gone.
pair_stop() {
  local name
  for name in alpha beta; do kill "$(cat "$work/$name.pid")" 2>/dev/null || true; done
  for name in alpha beta; do while kill -0 "$(cat "$work/$name.pid")" 2>/dev/null; do sleep 0.02; done; done
}

# release_ms HOLDER_PID WAITER_PID: kills the holder of a lock with -9 and waits for the waiter
# (blocked on that lock) to finish; prints the milliseconds between the two.
release_ms() {
  local t0 t1
  t0=$(date +%s%N)
  kill -9 "$1"
  wait "$2"
  t1=$(date +%s%N)
  awk -v d=$((t1 - t0)) 'BEGIN {printf "%.2f", d / 1e6}'
}
