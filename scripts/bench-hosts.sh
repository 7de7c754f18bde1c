#!/usr/bin/env bash
# The cross-host cases of `make bench`: two network-namespace hosts joined by veth and a bridge
# (scripts/netns-cluster.sh), VIO next to direct TCP over the same veth, in one run.
# Usage: scripts/bench-hosts.sh BIN_DIR RAW_FILE RUNS   (appends "NAME line" records to RAW_FILE)
#
#   xrtt.{vio,vio_tls,vio_poll,vio_default,tcp}.sleep.64
#                                   64 B round trip a1 <-> b1, instances sleeping while they
#                                   wait (vio: plaintext channels, agents sleeping at once
#                                   (agent_poll_us: 0); vio_tls: the same over TLS 1.3;
#                                   vio_poll: plaintext with agent_poll_us: 100; vio_default:
#                                   nothing set (TLS, agent_poll_us: auto); tcp: a direct
#                                   connection)
#   xrtt.vio_default.spin.64        the same with nothing set at all: default agents and the
#                                   instances' default wait (spin, then sleep)
#   xcpu.{vio_default,vio_tls,tcp}.64
#                                   CPU per request (µs, every process involved: both agents
#                                   and both instances, or both TCP ends) for 64 B round trips
#                                   100 µs apart (about 7,000-10,000 requests a second)
#   cpu.agents.xidle_links.1024     both agents' CPU (% of a core, over 10 s) with 1,024 idle
#                                   links open between the hosts, default settings
#   xbw.{vio,vio_tls,tcp}.65536     64 KiB one-way stream a1 -> b1
#   fanout.{vio,vio_tls}.SIZE       8 instances per host, all 64 cross-host links streaming
#                                   SIZE-byte messages at once through the two agents (K = 2
#                                   channels); SIZE 256, 1024, 4096, 16384 (TLS: 1024, 16384)
#   fanout.vio_inplace.16384        the plaintext fan-out with senders building each message in
#                                   the ring (claim, stamp, commit) instead of copying it in
#   fanout.tcp.SIZE                 the same workload on 64 direct TCP connections
#   xrtt.relay_c.{sleep,poll}.64,   the relay floor (Benchmarks/c/relay_floor.c): two instances,
#   xbw.relay_c.65536               two relays, rings, doorbells and one TCP connection in C and
#                                   nothing else; relays sleeping or polling; what any
#                                   agent-relayed design costs here at the least
# Needs root (network namespaces); prints "skipped" otherwise.
set -euo pipefail
bin="${1:?usage: bench-hosts.sh BIN_DIR RAW_FILE RUNS}"
raw="${2:?}"
runs="${3:-3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
  echo "bench: skipped the cross-host cases: needs root and iproute2 (network namespaces)" >&2
  exit 0
fi
source "$root/scripts/scratch-cluster.sh"
scratch_cluster bench-hosts "vb$$"
record() { echo "$1 $2" >>"$raw"; }

cc -O2 -Wall -Wextra -o "$work/socket_pingpong" "$root/Benchmarks/c/socket_pingpong.c"
cc -O2 -Wall -Wextra -o "$work/tcp_fanout" "$root/Benchmarks/c/tcp_fanout.c" -lpthread
cc -O2 -Wall -Wextra -o "$work/relay_floor" "$root/Benchmarks/c/relay_floor.c"

# Eight instances per host, every a-instance linked to every b-instance: 64 cross-host links.
# Two variants of the file: channels in plaintext, and TLS 1.3 (the default) with fresh keys.
pair_keys "$bin/vioctl"
pair_topology "$work/plaintext.yaml" plaintext 0 8
pair_topology "$work/tls.yaml" tls 0 8
pair_topology "$work/poll.yaml" plaintext 100 8
pair_topology "$work/default.yaml" tls default 8
pair_topology "$work/idle.yaml" tls default 32

bash "$root/scripts/netns-cluster.sh" up "$prefix" 2
agent_ticks() { awk '{print $14 + $15}' "/proc/$(cat "$work/alpha.pid")/stat" "/proc/$(cat "$work/beta.pid")/stat" | paste -sd+ | bc; }
command -v bc >/dev/null || apt-get install -y -qq bc >/dev/null 2>&1 || true
hz=$(getconf CLK_TCK)

# The fan-out at several message sizes: small messages are where a database's requests and
# replies live, 16 KiB where bulk transfers do. TLS only at a small and a bulk size.
fanout_sizes="256 1024 4096 16384"
tls_fanout_sizes="1024 16384"
fanout_vio() {  # fanout_vio TAG SIZE [SENDER_FLAG]: 64 links at once, receivers on beta, senders on alpha
  local tag="$1" size="$2" flags=("${@:3}")
  local t0 t1 rpid tpid sockets tx_cpu line
  t0=$(agent_ticks)
  "$bin/vio-probe" fanout --as "$(seq -f 'b%g' 1 8 | paste -sd,)" --role receive --socket "$work/beta.sock" >"$work/fan-rx.log" 2>&1 &
  rpid=$!
  "$bin/vio-probe" fanout --as "$(seq -f 'a%g' 1 8 | paste -sd,)" --role send "${flags[@]}" --size "$size" --seconds 5 --socket "$work/alpha.sock" >"$work/fan-tx.log" 2>&1 &
  tpid=$!
  sleep 2
  sockets=$(ip netns exec "$prefix-h1" ss -tnH state established "( sport = :7300 or dport = :7300 )" | wc -l)
  wait "$tpid" || true; wait "$rpid" || true
  t1=$(agent_ticks)
  tx_cpu=$(sed -n 's/.*fanout sent.*cpu_s=\([0-9.]*\).*/\1/p' "$work/fan-tx.log")
  line=$(grep -h '^fanout links' "$work/fan-rx.log" || true)
  if [ -n "$line" ]; then
    record "fanout.$tag.$size" "$line app_cpu_s=$(awk -v a="${tx_cpu:-0}" -v l="$line" 'BEGIN {match(l, /cpu_s=[0-9.]+/); print a + substr(l, RSTART + 6, RLENGTH - 6)}') agent_cpu_s=$(awk -v d=$((t1 - t0)) -v hz="$hz" 'BEGIN {printf "%.2f", d / hz}') sockets_per_host=$sockets"
  else
    echo "bench: fanout.$tag.$size failed: $(cat "$work/fan-rx.log" "$work/fan-tx.log" | tail -4)" >&2
  fi
}

probe_pair() {  # probe_pair NAME SERVER_ARGS -- CLIENT_ARGS (server attaches to beta, client to alpha)
  local name="$1"; shift
  local server=() client=()
  while [ "$1" != "--" ]; do server+=("$1"); shift; done; shift
  client=("$@")
  "$bin/vio-probe" "${server[@]}" --socket "$work/beta.sock" >"$work/server.log" 2>&1 &
  local spid=$!
  for _ in $(seq 1 500); do grep -q -E 'attached|open' "$work/server.log" 2>/dev/null && break; sleep 0.01; done
  "$bin/vio-probe" "${client[@]}" --socket "$work/alpha.sock" >"$work/client.log" 2>&1 || true
  wait "$spid" || true
  record "$name" "$(grep -h -E '^(rtt_us|rate|fanout links)' "$work/client.log" "$work/server.log" | head -1)"
}

for run in $(seq 1 "$runs"); do
  echo "bench: cross-host run $run of $runs" >&2
  for security in plaintext tls; do
    tag=$([ "$security" = tls ] && echo vio_tls || echo vio)
    pair_start "$bin/vio-agent" "$bin/vioctl" "$work/$security.yaml" || continue
    probe_pair "xrtt.$tag.sleep.64" echo --as b1 --wait sleep --cpu 1 -- ping --as a1 --peer b1 --wait sleep --cpu 0 --count 20000
    probe_pair "xbw.$tag.65536" sink --as b1 --wait sleep --count 30000 -- rate --as a1 --peer b1 --wait sleep --size 65536 --count 30000
    for size in $([ "$security" = tls ] && echo "$tls_fanout_sizes" || echo "$fanout_sizes"); do
      fanout_vio "$tag" "$size"
    done
    if [ "$security" = plaintext ]; then fanout_vio vio_inplace 16384 --in-place; fi
    pair_stop
  done
  # Nothing set: TLS, and a polling window the agents learn from the traffic (agent_poll_us
  # auto); the instances sleeping while they wait, then with their default wait.
  if pair_start "$bin/vio-agent" "$bin/vioctl" "$work/default.yaml"; then
    probe_pair xrtt.vio_default.sleep.64 echo --as b1 --wait sleep --cpu 1 -- ping --as a1 --peer b1 --wait sleep --cpu 0 --count 20000
    probe_pair xrtt.vio_default.spin.64 echo --as b1 --cpu 1 -- ping --as a1 --peer b1 --cpu 0 --count 20000
    pair_stop
  fi
  # Agents that poll 100 µs after activity (agent_poll_us) instead of sleeping at once.
  if pair_start "$bin/vio-agent" "$bin/vioctl" "$work/poll.yaml"; then
    probe_pair xrtt.vio_poll.sleep.64 echo --as b1 --wait sleep --cpu 1 -- ping --as a1 --peer b1 --wait sleep --cpu 0 --count 20000
    pair_stop
  fi
  # CPU per request at about 10,000 requests a second (100 µs between round trips).
  for case in vio_default:default.yaml vio_tls:tls.yaml; do
    tag=${case%%:*}
    pair_start "$bin/vio-agent" "$bin/vioctl" "$work/${case#*:}" || continue
    t0=$(agent_ticks)
    ( TIMEFORMAT='%U %S'; time "$bin/vio-probe" echo --as b1 --socket "$work/beta.sock" >"$work/server.log" 2>&1 ) 2>"$work/echo.time" &
    epid=$!
    for _ in $(seq 1 500); do grep -q attached "$work/server.log" 2>/dev/null && break; sleep 0.01; done
    ( TIMEFORMAT='%U %S'; time "$bin/vio-probe" ping --as a1 --peer b1 --count 20000 --warmup 0 --idle-us 100 --socket "$work/alpha.sock" >"$work/client.log" 2>&1 ) 2>"$work/ping.time" || true
    wait "$epid" || true
    t1=$(agent_ticks)
    record "xcpu.$tag.64" "$(awk -v a=$((t1 - t0)) -v hz="$hz" '{s += $1 + $2} END {printf "cpu_us=%.2f\n", (s + a / hz) / 20000 * 1e6}' "$work/echo.time" "$work/ping.time")"
    pair_stop
  done
  ( TIMEFORMAT='%U %S'; time "$work/socket_pingpong" tcpns 64 20000 "$prefix-h2" "$prefix-h1" 198.18.0.2 100 >/dev/null ) 2>"$work/tcp.time" || true
  record xcpu.tcp.64 "$(awk '{printf "cpu_us=%.2f\n", ($1 + $2) / 22000 * 1e6}' "$work/tcp.time")"
  # 1,024 idle links between the hosts (32 instances each, every pair linked), default settings.
  if pair_start "$bin/vio-agent" "$bin/vioctl" "$work/idle.yaml"; then
    "$bin/vio-probe" idle-links --prefix b --instances 32 --accept-each 32 --socket "$work/beta.sock" >"$work/idle-b.log" 2>&1 &
    ib=$!
    "$bin/vio-probe" idle-links --prefix a --instances 32 --to-prefix b --to-count 32 --socket "$work/alpha.sock" >"$work/idle-a.log" 2>&1 &
    ia=$!
    for _ in $(seq 1 3000); do grep -q ready "$work/idle-a.log" 2>/dev/null && grep -q ready "$work/idle-b.log" 2>/dev/null && break; sleep 0.02; done
    if grep -q "ready links=1024" "$work/idle-a.log" && grep -q "ready links=1024" "$work/idle-b.log"; then
      sleep 1
      t0=$(agent_ticks); sleep 10; t1=$(agent_ticks)
      record cpu.agents.xidle_links.1024 "$(awk -v d=$((t1 - t0)) -v hz="$hz" 'BEGIN {printf "cpu percent=%.3f\n", d / hz / 10 * 100}')"
    else
      echo "bench: the 1,024 idle links did not open: $(tail -n 2 "$work/idle-a.log" "$work/idle-b.log")" >&2
    fi
    kill "$ia" "$ib" 2>/dev/null || true
    wait "$ia" "$ib" 2>/dev/null || true
    pair_stop
  fi
  record xrtt.relay_c.sleep.64 "$("$work/relay_floor" rtt 64 20000 "$prefix-h1" "$prefix-h2" 198.18.0.2 sleep)"
  record xrtt.relay_c.poll.64 "$("$work/relay_floor" rtt 64 20000 "$prefix-h1" "$prefix-h2" 198.18.0.2 poll)"
  record xbw.relay_c.65536 "$("$work/relay_floor" stream 65536 30000 "$prefix-h1" "$prefix-h2" 198.18.0.2 sleep | sed 's/^bw /rate /')"
  record xrtt.tcp.64 "$("$work/socket_pingpong" tcpns 64 20000 "$prefix-h2" "$prefix-h1" 198.18.0.2)"
  record xbw.tcp.65536 "$("$work/socket_pingpong" tcpns 65536 30000 "$prefix-h2" "$prefix-h1" 198.18.0.2 stream | sed 's/^bw /rate /')"
  for size in $fanout_sizes; do
    record "fanout.tcp.$size" "$("$work/tcp_fanout" "$prefix-h2" "$prefix-h1" 198.18.0.2 64 "$size" 5 | sed 's/cpu_s=/app_cpu_s=/')"
  done
done
