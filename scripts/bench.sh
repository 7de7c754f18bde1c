#!/usr/bin/env bash
# `make bench`: VIO next to the alternatives, in one run, on this machine.
# Usage: scripts/bench.sh BIN_DIR [RUNS]   (BIN_DIR holds the release vio-agent/vio-probe)
# Writes bench/results.json and prints a table; docs/performance.md explains every name.
set -euo pipefail
bin="${1:?usage: bench.sh BIN_DIR [RUNS]}"
runs="${2:-${VIO_BENCH_RUNS:-3}}"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/vio-bench.XXXXXX)"
raw="$work/raw.txt"
export VIO_CONTROL_SOCKET="$work/agent.sock"
cleanup() { jobs -p | xargs -r kill -TERM 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cores=$(nproc)
if [ "$cores" -lt 2 ]; then echo "bench: needs 2 CPUs to pin the two ends apart; this machine has $cores"; exit 1; fi
# Every case pins its two busy ends to CPUs 0 and 1: never more busy-pollers than cores.

cc -O2 -Wall -Wextra -o "$work/ring_baseline" "$root/Benchmarks/c/ring_baseline.c" -lpthread
cc -O2 -Wall -Wextra -o "$work/socket_pingpong" "$root/Benchmarks/c/socket_pingpong.c"

record() { echo "$1 $2" >>"$raw"; }   # record NAME "line printed by the program"

"$bin/vio-agent" --log-level warning 2>"$work/agent.log" &
for _ in $(seq 1 200); do [ -S "$VIO_CONTROL_SOCKET" ] && break; sleep 0.05; done

vio_pair() {  # vio_pair NAME SERVER_ARGS -- CLIENT_ARGS: one VIO case, server on CPU 1
  local name="$1"; shift
  local server=() client=()
  while [ "$1" != "--" ]; do server+=("$1"); shift; done; shift
  client=("$@")
  "$bin/vio-probe" "${server[@]}" --as db2 --cpu 1 >"$work/server.log" &
  local spid=$!
  for _ in $(seq 1 500); do grep -q attached "$work/server.log" 2>/dev/null && break; sleep 0.01; done
  "$bin/vio-probe" "${client[@]}" --as db1 --peer db2 --cpu 0 >"$work/client.log"
  wait "$spid" || true
  record "$name" "$(grep -h -E '^(rtt_us|rate) ' "$work/client.log" "$work/server.log" | head -1)"
}

for run in $(seq 1 "$runs"); do
  echo "bench: run $run of $runs" >&2
  record rtt.ring_c.64 "$("$work/ring_baseline" lat 64 300000)"
  record rtt.ring_c.sleepsafe.64 "$("$work/ring_baseline" lat 64 300000 sleepsafe)"
  vio_pair rtt.vio.busy.64 echo --wait busy -- ping --wait busy --count 300000
  vio_pair rtt.vio.spin_sleep.busy.64 echo --wait spin -- ping --wait spin --count 300000
  vio_pair rtt.vio.spin_sleep.idle.64 echo --wait spin -- ping --wait spin --count 3000 --warmup 100 --idle-us 1000
  vio_pair rtt.vio.sleep.64 echo --wait sleep -- ping --wait sleep --count 100000
  record rtt.uds.64 "$("$work/socket_pingpong" uds 64 100000)"
  record rtt.uds.idle.64 "$("$work/socket_pingpong" uds 64 3000 1000)"
  record rtt.tcp.64 "$("$work/socket_pingpong" tcp 64 100000)"
  record rate.ring_c.64 "$("$work/ring_baseline" rate 64 20000000)"
  vio_pair rate.vio.64 sink --wait busy --count 5000000 -- rate --wait busy --size 64 --count 5000000
  record bw.ring_c.65536 "$("$work/ring_baseline" rate 65536 200000)"
  vio_pair bw.vio.65536 sink --wait busy --count 200000 -- rate --wait busy --size 65536 --count 200000
  vio_pair bw.vio.4194304 sink --wait busy --count 3000 -- rate --wait busy --size 4194304 --count 3000
done

# UCX shared memory (Debian's ucx-utils), for the same 64 B round trip.
if ! command -v ucx_perftest >/dev/null; then
  apt-get install -y -qq ucx-utils >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq ucx-utils >/dev/null 2>&1) || true
fi
if command -v ucx_perftest >/dev/null; then
  for run in $(seq 1 "$runs"); do
    UCX_TLS=shm taskset -c 1 ucx_perftest -p 13337 >"$work/ucx-server.log" 2>&1 &
    upid=$!
    sleep 0.5
    # ucx_perftest reports one-way latency (half the round trip): doubled here.
    line=$(UCX_TLS=shm taskset -c 0 ucx_perftest localhost -p 13337 -t tag_lat -s 64 -n 300000 2>&1 | grep '^Final:' || true)
    wait "$upid" 2>/dev/null || true
    if [ -n "$line" ]; then
      # ucx_perftest prints no p99 without its timing queue options: p50 only.
      record rtt.ucx_shm.64 "$(echo "$line" | awk '{printf "rtt_us p50=%.3f\n", $3*2}')"
    fi
  done
else
  echo "bench: skipped rtt.ucx_shm.64: ucx-utils could not be installed" >&2
fi

# What idle links cost the agent: CPU over 10 s and memory, for 1, ~100 and ~1000 links.
for n in 2 15 46; do
  topo="$work/idle-$n.yaml"
  {
    echo "cluster: idle"; echo "version: 1"
    echo "hosts: [{ name: local, address: 127.0.0.1, transport: tcp }]"
    echo "instances:"; for i in $(seq 1 "$n"); do echo "  - { name: i$i, host: local }"; done
    echo "links:"; echo "  - group: [$(seq -f 'i%g' 1 "$n" | paste -sd, - | sed 's/,/, /g')]"
  } >"$topo"
  sock="$work/idle-$n.sock"
  "$bin/vio-agent" --topology "$topo" --control-socket "$sock" --log-level warning 2>>"$work/agent.log" &
  apid=$!
  for _ in $(seq 1 200); do [ -S "$sock" ] && break; sleep 0.05; done
  rss0=$(awk '/VmRSS/ {print $2}' "/proc/$apid/status")
  fds0=$(ls "/proc/$apid/fd" | wc -l)
  "$bin/vio-probe" idle-links --instances "$n" --socket "$sock" >"$work/idle.log" 2>&1 &
  ipid=$!
  for _ in $(seq 1 1000); do grep -q ready "$work/idle.log" && break; sleep 0.02; done
  links=$(sed -n 's/.*links=\([0-9]*\).*/\1/p' "$work/idle.log")
  sleep 1
  t0=$(awk '{print $14 + $15}' "/proc/$apid/stat")
  sleep 10
  t1=$(awk '{print $14 + $15}' "/proc/$apid/stat")
  rss1=$(awk '/VmRSS/ {print $2}' "/proc/$apid/status")
  fds1=$(ls "/proc/$apid/fd" | wc -l)
  hz=$(getconf CLK_TCK)
  size=$(( links >= 1000 ? 1000 : (links >= 100 ? 100 : 1) ))
  record "cpu.agent.idle_links.$size" "$(awk -v d=$((t1 - t0)) -v hz="$hz" -v l="$links" 'BEGIN {printf "cpu percent=%.3f links=%d\n", d / hz / 10 * 100, l}')"
  if [ "$size" = 1000 ]; then
    record mem.agent.per_link "$(awk -v a="$rss0" -v b="$rss1" -v l="$links" -v f0="$fds0" -v f1="$fds1" 'BEGIN {printf "mem kib=%.1f fds=%.1f links=%d\n", (b - a) / l, (f1 - f0) / l, l}')"
  fi
  kill "$ipid" "$apid" 2>/dev/null; wait "$ipid" "$apid" 2>/dev/null || true
done

# Across hosts: two network-namespace hosts, VIO next to direct TCP over the same veth (root only).
bash "$root/scripts/bench-hosts.sh" "$bin" "$raw" "$runs"

# Proxy mode: PostgreSQL and Redis clients through the agents and on direct TCP (root only).
bash "$root/scripts/bench-proxy.sh" "$bin" "$raw" "$runs"

# The SQL example (examples/sql): the same engine over a VIO link and over TCP.
bash "$root/scripts/bench-sql.sh" "$bin" "$raw" "$runs"

# Across two soft-RoCE guests (scripts/rdma-lab): perftest, VIO over RDMA and over TCP.
bash "$root/scripts/bench-rdma.sh" "$bin" "$raw" "$runs"

mkdir -p "$root/bench"
python3 - "$raw" "$root/bench/results.json" <<'PY'
import json, re, statistics, sys, platform, os
raw, out = sys.argv[1], sys.argv[2]
cases = {}
for line in open(raw):
    name, _, text = line.strip().partition(" ")
    kv = dict(re.findall(r"(\w+)=([\d.]+)", text))
    cases.setdefault(name, []).append(kv)
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
records = []
for name, runs in cases.items():
    # The lab's records (lab.KIND.…) are read as their kind's.
    kind = name.split(".")[1] if name.startswith("lab.") else name.split(".")[0]
    if kind == "fanout":
        v = [float(r["gb_per_s"]) for r in runs if "gb_per_s" in r]
        if not v: continue
        mid = sorted(runs, key=lambda r: float(r.get("gb_per_s", 0)))[len(runs) // 2]
        records.append({"name": name, "unit": "GB/s", "p50": None, "p99": None, "min": min(v), "max": max(v),
                        "runs": len(v), "value": statistics.median(v),
                        "app_cpu_s": float(mid.get("app_cpu_s", 0)), "agent_cpu_s": float(mid.get("agent_cpu_s", 0)),
                        "sockets_per_host": int(float(mid.get("sockets_per_host", 0)))})
    elif kind in ("rtt", "xrtt"):
        p50 = [float(r["p50"]) for r in runs if "p50" in r]
        p99 = [float(r["p99"]) for r in runs if "p99" in r]
        if not p50: continue
        records.append({"name": name, "unit": "us", "p50": statistics.median(p50),
                        "p99": statistics.median(p99) if p99 else None,
                        "min": min(p50), "max": max(p50), "runs": len(p50), "value": statistics.median(p50)})
    elif kind == "rate":
        v = [float(r["msgs_per_s"]) / 1e6 for r in runs if "msgs_per_s" in r]
        if not v: continue
        records.append({"name": name, "unit": "Mmsg/s", "p50": None, "p99": None, "min": min(v), "max": max(v),
                        "runs": len(v), "value": statistics.median(v)})
    elif kind == "cpu":
        v = [float(r["percent"]) for r in runs if "percent" in r]
        if not v: continue
        records.append({"name": name, "unit": "% core", "p50": None, "p99": None, "min": min(v), "max": max(v),
                        "runs": len(v), "value": statistics.median(v)})
    elif kind == "xcpu":
        v = [float(r["cpu_us"]) for r in runs if "cpu_us" in r]
        if not v: continue
        records.append({"name": name, "unit": "us/req", "p50": None, "p99": None, "min": min(v), "max": max(v),
                        "runs": len(v), "value": statistics.median(v)})
    elif kind == "agentcpu":
        v = [float(r["cpu_s"]) for r in runs if "cpu_s" in r]
        if not v: continue
        records.append({"name": name, "unit": "s", "p50": None, "p99": None, "min": min(v), "max": max(v),
                        "runs": len(v), "value": statistics.median(v)})
    elif kind == "mem":
        v = [float(r["kib"]) for r in runs if "kib" in r]
        if not v: continue
        records.append({"name": name, "unit": "KiB", "p50": None, "p99": None, "min": min(v), "max": max(v),
                        "runs": len(v), "value": statistics.median(v)})
    elif kind == "sql":
        # Round trips (p50, p99, requests/s) or, for the rollback case, ms.
        if any("ms" in r for r in runs):
            v = [float(r["ms"]) for r in runs if "ms" in r]
            records.append({"name": name, "unit": "ms", "p50": None, "p99": None, "min": min(v), "max": max(v),
                            "runs": len(v), "value": statistics.median(v)})
            continue
        p50 = [float(r["p50"]) for r in runs if "p50" in r]
        if not p50: continue
        mid = sorted(runs, key=lambda r: float(r.get("p50", 0)))[len(runs) // 2]
        records.append({"name": name, "unit": "us", "p50": statistics.median(p50), "p99": float(mid.get("p99", 0)),
                        "min": min(p50), "max": max(p50), "runs": len(p50), "value": statistics.median(p50),
                        "ops_per_s": float(mid.get("ops_per_s", 0))})
    elif kind == "proxy":
        # tps (pgbench), rps (redis-benchmark) or ms (lock release): the first present.
        key = next((k for k in ("tps", "rps", "ms") if any(k in r for r in runs)), None)
        v = [float(r[key]) for r in runs if key and key in r]
        if not v: continue
        mid = sorted(runs, key=lambda r: float(r.get(key, 0)))[len(runs) // 2]
        rec = {"name": name, "unit": {"tps": "tx/s", "rps": "req/s", "ms": "ms"}[key], "p50": None, "p99": None,
               "min": min(v), "max": max(v), "runs": len(v), "value": statistics.median(v)}
        if "latency_ms" in mid: rec["latency_ms"] = float(mid["latency_ms"])
        if "sockets" in mid: rec["sockets_between_hosts"] = int(float(mid["sockets"]))
        records.append(rec)
    elif kind in ("bw", "xbw"):
        v = [float(r["gb_per_s"]) for r in runs if "gb_per_s" in r]
        if not v: continue
        records.append({"name": name, "unit": "GB/s", "p50": None, "p99": None, "min": min(v), "max": max(v),
                        "runs": len(v), "value": statistics.median(v)})
machine = {"cpus": os.cpu_count(), "model": model, "kernel": platform.release()}
json.dump({"machine": machine, "results": records}, open(out, "w"), indent=2)
by = {r["name"]: r for r in records}
def ratio(a, b):
    return f"{by[a]['value'] / by[b]['value']:.2f}x" if a in by and b in by else "-"
print(f"machine: {machine['cpus']} CPUs, {model}, Linux {machine['kernel']}")
print(f"{'name':32} {'unit':7} {'median':>9} {'p99':>8} {'min':>9} {'max':>9}  vs tcp   vs ring_c")
for r in records:
    kind = r["name"].split(".")[0]
    # The fan-out is compared with 64 TCP connections at the same message size.
    base = {"rtt": "rtt.tcp.64", "xrtt": "xrtt.tcp.64", "xbw": "xbw.tcp.65536", "xcpu": "xcpu.tcp.64",
            "fanout": "fanout.tcp." + r["name"].split(".")[-1],
            "proxy": r["name"].replace(".vio.", ".tcp."), "sql": r["name"].replace(".vio.", ".tcp.")}.get(kind)
    ring = {"rtt": "rtt.ring_c.64", "rate": "rate.ring_c.64", "bw": "bw.ring_c.65536"}.get(kind, "")
    p99 = f"{r['p99']:.2f}" if r["p99"] is not None else "-"
    print(f"{r['name']:32} {r['unit']:7} {r['value']:9.2f} {p99:>8} {r['min']:9.2f} {r['max']:9.2f}  "
          f"{ratio(r['name'], base) if base else '-':>7}  {ratio(r['name'], ring):>7}")
for kind, unit in [("xrtt", "sleep.64"), ("xbw", "65536")] + [("fanout", r["name"].split(".")[-1])
                                                             for r in records if r["name"].startswith("fanout.vio_tls.")]:
    a, b = f"{kind}.vio_tls.{unit}", f"{kind}.vio.{unit}"
    if a in by and b in by:
        print(f"{a:32} encrypted / plaintext: {by[a]['value'] / by[b]['value']:.2f}x")
for a, b in (("xrtt.vio_default.sleep.64", "xrtt.vio.sleep.64"), ("xrtt.vio_default.spin.64", "xrtt.vio.sleep.64")):
    if a in by and b in by:
        print(f"{a:32} default agents / sleeping agents ({b}): {by[a]['value'] / by[b]['value']:.2f}x")
for a, b in (("xrtt.vio.sleep.64", "xrtt.relay_c.sleep.64"), ("xrtt.vio_poll.sleep.64", "xrtt.relay_c.poll.64"),
             ("xbw.vio.65536", "xbw.relay_c.65536")):
    if a in by and b in by:
        print(f"{a:32} vs the relay floor ({b}): {by[a]['value'] / by[b]['value']:.2f}x")
# The lab: VIO over RDMA against perftest on the same rxe devices, and against VIO over TCP
# between the same guests (absolute times under TCG mean nothing).
for a, b, what in (("lab.rtt.vio_rdma.64", "lab.rtt.perftest_send.64", "vs perftest ib_send_lat (round trip)"),
                   ("lab.rtt.vio_rdma.64", "lab.rtt.vio_tcp.64", "vs VIO over TCP on the lab"),
                   ("lab.rtt.vio_rdma_tls.64", "lab.rtt.vio_rdma.64", "encrypted / plaintext"),
                   ("lab.bw.vio_rdma.65536", "lab.bw.perftest_write.65536", "vs perftest ib_write_bw"),
                   ("lab.bw.vio_rdma.65536", "lab.bw.vio_tcp.65536", "vs VIO over TCP on the lab"),
                   ("lab.bw.vio_rdma_tls.65536", "lab.bw.vio_rdma.65536", "encrypted / plaintext"),
                   ("lab.bw.vio_rdma.65536", "lab.bw.vio_rdma_copy.65536", "pulled by RDMA READ / copied"),
                   ("lab.agentcpu.vio_rdma.65536.h1", "lab.agentcpu.vio_rdma_copy.65536.h1", "sending agent's CPU, pulled / copied"),
                   ("lab.agentcpu.vio_rdma.65536.h2", "lab.agentcpu.vio_rdma_copy.65536.h2", "receiving agent's CPU, pulled / copied"),
                   ("lab.fanout.vio_rdma.16384", "lab.fanout.vio_rdma_copy.16384", "64 links, pulled / copied"),
                   ("lab.fanout.vio_rdma.16384", "lab.fanout.vio_tcp.16384", "64 links, vs VIO over TCP on the lab")):
    if a in by and b in by:
        print(f"{a:32} {what}: {by[a]['value'] / by[b]['value']:.2f}x")
for r in records:
    if r["name"].startswith("fanout.") or r["name"].startswith("lab.fanout."):
        print(f"{r['name']:32} sockets per host {r['sockets_per_host']}, app CPU {r['app_cpu_s']:.2f} s, "
              f"agent CPU {r['agent_cpu_s']:.2f} s (both agents, whole run)")
PY
echo "bench: wrote bench/results.json"
