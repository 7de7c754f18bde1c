#!/usr/bin/env bash
# The proxy-mode cases of `make bench`: unmodified PostgreSQL and Redis clients on one
# network-namespace host, their servers on another (topologies/database-proxy.yaml), through
# the agents' proxy mode next to the same clients on direct TCP over the same veth, in one run.
# Usage: scripts/bench-proxy.sh BIN_DIR RAW_FILE RUNS   (appends "NAME line" records to RAW_FILE)
#
#   proxy.pgbench_select.{vio,tcp}.{16,64}   pgbench -S (select-only), 16 and 64 clients, 5 s:
#                                            tps, average latency, sockets h1 -> h2 mid-run
#   proxy.redis_{set,get}.{vio,tcp}.{16,64}  redis-benchmark -P 1, 16 and 64 clients: requests/s
#   proxy.lock_release.vio                   a psql holding a row lock in an open transaction
#                                            through the proxy is killed -9: ms until a waiting
#                                            client's UPDATE completes
# Needs root (network namespaces), PostgreSQL and Redis; prints "skipped" otherwise.
set -euo pipefail
bin="${1:?usage: bench-proxy.sh BIN_DIR RAW_FILE RUNS}"
raw="${2:?}"
runs="${3:-3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || [ ! -x "$pgbin/postgres" ] || ! command -v redis-benchmark >/dev/null; then
  echo "bench: skipped the proxy cases: needs root, iproute2, PostgreSQL and Redis (scripts/install-deps.sh)" >&2
  exit 0
fi
source "$root/scripts/scratch-cluster.sh"
scratch_cluster bench-proxy "vp$$"
record() { echo "$1 $2" >>"$raw"; }
h1() { ip netns exec "$prefix-h1" "$@"; }
h2() { ip netns exec "$prefix-h2" "$@"; }

# The example topology with a fresh key per host, the control sockets in $work.
cp "$root/topologies/database-proxy.yaml" "$work/topology.yaml"
for h in h1 h2; do
  pub=$("$bin/vioctl" keys generate "$h" --out "$work/$h.key" | sed -n 's/^ *key: //p')
  n=${h#h}
  sed -i "/address: 198.18.0.$n\$/{n;s|key: .*|key: $pub|}" "$work/topology.yaml"
done
bash "$root/scripts/netns-cluster.sh" up "$prefix" 2
for h in h1 h2; do
  ip netns exec "$prefix-$h" "$bin/vio-agent" --topology "$work/topology.yaml" --host "$h" --key-file "$work/$h.key" \
    --control-socket "$work/$h.sock" --log-level warning 2>>"$work/$h.log" &
  echo $! >"$work/$h.pid"
done

# PostgreSQL on h2: loopback for its agent, 198.18.0.2 for the direct runs.
mkdir -p "$work/pg" && chown postgres "$work/pg" && chmod 755 "$work"
runuser -u postgres -- "$pgbin/initdb" -D "$work/pg/data" -A trust -U postgres --no-sync >/dev/null
echo "host all all 198.18.0.0/15 trust" >>"$work/pg/data/pg_hba.conf"
h2 runuser -u postgres -- "$pgbin/postgres" -D "$work/pg/data" -c listen_addresses=127.0.0.1,198.18.0.2 -c port=5432 \
  -c unix_socket_directories="$work/pg" -c max_connections=200 -c fsync=off -c synchronous_commit=off \
  -c shared_buffers=128MB >"$work/pg.log" 2>&1 &
echo $! >"$work/pg.pid"
h2 redis-server --port 6379 --bind 127.0.0.1 198.18.0.2 --save "" --appendonly no --protected-mode no \
  --dir "$work" --maxclients 1000 >"$work/redis.log" 2>&1 &
echo $! >"$work/redis.pid"
for _ in $(seq 1 200); do h2 "$pgbin/pg_isready" -q -h 127.0.0.1 -p 5432 && break; sleep 0.1; done
for _ in $(seq 1 200); do h2 redis-cli ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
# h2's agent checks a server it found down once a second and tells h1: wait for both.
for _ in $(seq 1 300); do
  st=$("$bin/vioctl" status --socket "$work/h1.sock" 2>/dev/null || true)
  echo "$st" | grep -q "^  postgres .* up," && echo "$st" | grep -q "^  redis .* up," && break
  sleep 0.1
done
h1 "$pgbin/pgbench" -h 198.18.0.2 -U postgres -i -s 10 -q postgres >/dev/null 2>&1
stop_postgres() { pkill -INT -u postgres -f "postgres -D $work/pg/data" 2>/dev/null || true; }
trap 'stop_postgres; scratch_cluster_cleanup' EXIT

sockets() { h1 ss -Htn state established dst 198.18.0.2 | wc -l; }

for run in $(seq 1 "$runs"); do
  echo "bench: proxy run $run of $runs" >&2
  for clients in 16 64; do
    for path in vio tcp; do
      addr=$([ $path = vio ] && echo 198.18.0.1 || echo 198.18.0.2)
      h1 "$pgbin/pgbench" -h "$addr" -U postgres -n -S -c "$clients" -j 2 -T 5 postgres >"$work/pgbench.log" 2>&1 &
      ppid=$!
      sleep 2.5
      n=$(sockets)
      wait "$ppid"
      tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.log")
      lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$work/pgbench.log")
      failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$work/pgbench.log")
      record "proxy.pgbench_select.$path.$clients" "tps=$tps latency_ms=$lat sockets=$n failed=${failed:-0}"
    done
    for path in vio tcp; do
      addr=$([ $path = vio ] && echo 198.18.0.1 || echo 198.18.0.2)
      h1 redis-benchmark -h "$addr" -p 6379 -c "$clients" -n 100000 -P 1 -t set,get -q --csv >"$work/redis.csv" 2>&1
      for t in set get; do
        rps=$(grep -i "^\"$t\"" "$work/redis.csv" | cut -d, -f2 | tr -d '"')
        record "proxy.redis_$t.$path.$clients" "rps=$rps"
      done
    done
  done
  # A row lock held through the proxy by a client killed with -9: how long until the waiter
  # gets it (the end of stream crosses both agents, PostgreSQL aborts the transaction).
  h1 "$pgbin/psql" -h 198.18.0.1 -U postgres -X -q -c "CREATE TABLE IF NOT EXISTS lock_bench (id int PRIMARY KEY, v int); INSERT INTO lock_bench VALUES (1, 0) ON CONFLICT DO NOTHING" postgres
  rm -f "$work/holder.sql"; mkfifo "$work/holder.sql"
  # Not through h1(): `ip netns exec` execs psql, so $! is psql itself (what kill -9 must hit).
  ip netns exec "$prefix-h1" "$pgbin/psql" -h 198.18.0.1 -U postgres -X -q -A -t -f "$work/holder.sql" postgres >"$work/holder.log" 2>&1 &
  hpid=$!
  exec 9>"$work/holder.sql"
  printf 'BEGIN;\nUPDATE lock_bench SET v = v + 1 WHERE id = 1;\nSELECT %s;\n' "'holding'" >&9
  for _ in $(seq 1 200); do grep -q holding "$work/holder.log" && break; sleep 0.02; done
  h1 "$pgbin/psql" -h 198.18.0.1 -U postgres -X -q -c "UPDATE lock_bench SET v = v + 10 WHERE id = 1" postgres &
  wpid=$!
  sleep 0.5
  ms=$(release_ms "$hpid" "$wpid")
  exec 9>&-
  wait "$hpid" 2>/dev/null || true
  record proxy.lock_release.vio "ms=$ms"
done
