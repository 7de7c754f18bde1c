#!/usr/bin/env bash
# The SQL example's cases of `make bench` (examples/sql): vio-sql-server's point selects and
# single-row updates over a VIO link next to its own TCP listener, the same engine and data,
# one request at a time, in one run.
# Usage: scripts/bench-sql.sh BIN_DIR RAW_FILE RUNS   (appends "NAME line" records to RAW_FILE)
#
#   sql.{select,update}.{vio,tcp}.local   client and server on this host (VIO: a shared-memory
#                                         link; TCP: loopback)
#   sql.{select,update}.{vio,tcp}.hosts   client on one network-namespace host, server on
#                                         another (VIO: the agents' channel; TCP: the veth);
#                                         root only
#   sql.rollback.vio.local                a client holding the write lock is killed -9: ms
#                                         until a waiting client's UPDATE has committed
set -euo pipefail
bin="${1:?usage: bench-sql.sh BIN_DIR RAW_FILE RUNS}"
raw="${2:?}"
runs="${3:-3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/scripts/scratch-cluster.sh"
scratch_cluster bench-sql "vs$$"
record() { echo "$1 $2" >>"$raw"; }
count=20000

# Same host: one agent, the server and a client instance linked to it.
cat >"$work/local.yaml" <<EOF
cluster: sql-bench
version: 1
defaults: { max_message_size: 64MiB }
hosts:
  - { name: local, address: 127.0.0.1, port: 7399, transport: tcp }
instances:
  - { name: sqlserver, host: local }
  - { name: c1, host: local }
  - { name: c2, host: local }
links:
  - between: [sqlserver, c1]
  - between: [sqlserver, c2]
EOF
"$bin/vio-agent" --topology "$work/local.yaml" --control-socket "$work/local.sock" --log-level warning 2>>"$work/agent.log" &
echo $! >"$work/agent.pid"
for _ in $(seq 1 200); do [ -S "$work/local.sock" ] && break; sleep 0.05; done
tcp_port=$((20000 + RANDOM % 10000))
"$bin/vio-sql-server" --socket "$work/local.sock" --tcp-listen "127.0.0.1:$tcp_port" >"$work/server.out" 2>"$work/server.log" &
echo $! >"$work/server.pid"
for _ in $(seq 1 200); do grep -q ready "$work/server.out" && break; sleep 0.05; done

for run in $(seq 1 "$runs"); do
  echo "bench: sql run $run of $runs" >&2
  for kind in select update; do
    record "sql.$kind.vio.local" "$("$bin/vio-sql" --as c1 --socket "$work/local.sock" --bench "$kind" --count "$count")"
    record "sql.$kind.tcp.local" "$("$bin/vio-sql" --tcp "127.0.0.1:$tcp_port" --bench "$kind" --count "$count")"
  done
  # The dead client's transaction: c1 holds the write lock, c2 waits, c1 is killed.
  rm -f "$work/holder.fifo"; mkfifo "$work/holder.fifo"
  "$bin/vio-sql" --as c1 --socket "$work/local.sock" <"$work/holder.fifo" >"$work/holder.out" 2>&1 &
  hpid=$!
  exec 9>"$work/holder.fifo"
  printf 'BEGIN IMMEDIATE\nUPDATE bench SET v = v + 1 WHERE id = 1\nSELECT %s\n' "'holding'" >&9
  for _ in $(seq 1 200); do grep -q holding "$work/holder.out" && break; sleep 0.02; done
  "$bin/vio-sql" --as c2 --socket "$work/local.sock" -c "UPDATE bench SET v = v + 10 WHERE id = 1" &
  wpid=$!
  sleep 0.5
  ms=$(release_ms "$hpid" "$wpid")
  exec 9>&-
  wait "$hpid" 2>/dev/null || true
  record sql.rollback.vio.local "ms=$ms"
done
kill "$(cat "$work/server.pid")" "$(cat "$work/agent.pid")" 2>/dev/null || true

# Two network-namespace hosts: the server attached as b1 on beta (198.18.0.2), the client as
# a1 on alpha; TCP straight to the server's listener on beta's address.
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
  echo "bench: skipped the cross-host SQL cases: needs root and iproute2 (network namespaces)" >&2
  exit 0
fi
pair_keys "$bin/vioctl"
pair_topology "$work/pair.yaml" tls default 1
bash "$root/scripts/netns-cluster.sh" up "$prefix" 2
pair_start "$bin/vio-agent" "$bin/vioctl" "$work/pair.yaml"
ip netns exec "$prefix-h2" "$bin/vio-sql-server" --as b1 --socket "$work/beta.sock" --tcp-listen "198.18.0.2:7400" \
  >"$work/pair-server.out" 2>"$work/pair-server.log" &
echo $! >"$work/pair-server.pid"
for _ in $(seq 1 200); do grep -q ready "$work/pair-server.out" && break; sleep 0.05; done
for run in $(seq 1 "$runs"); do
  for kind in select update; do
    record "sql.$kind.vio.hosts" "$(ip netns exec "$prefix-h1" "$bin/vio-sql" --as a1 --server b1 --socket "$work/alpha.sock" --bench "$kind" --count "$count")"
    record "sql.$kind.tcp.hosts" "$(ip netns exec "$prefix-h1" "$bin/vio-sql" --tcp 198.18.0.2:7400 --bench "$kind" --count "$count")"
  done
done
