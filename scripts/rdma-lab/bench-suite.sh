#!/bin/sh
# `make bench`'s RDMA part, run in both lab guests by scripts/bench-rdma.sh:
#   scripts/rdma-lab/lab.sh pair scripts/rdma-lab/bench-suite.sh BIN_DIR RUNS
# Guest 1 (h1) sends or pings, guest 2 (h2) receives or echoes. Prints `BENCH NAME LINE`
# records: perftest on the lab's rxe devices, then VIO over RDMA (plaintext and TLS) and over
# TCP on the same lab, and the SQL example's point selects over RDMA, VIO over TCP and plain
# TCP, each RUNS times. Under TCG only ratios between them mean anything.
B=$1
RUNS=${2:-3}
SCRATCH=bench
. "$(dirname "$0")/guest-lib.sh"
retry() { for _ in $(seq 1 100); do "$@" && return 0; sleep 0.3; done; return 1; }

# 1. perftest: two-sided SEND latency (the verb VIO uses) and RDMA WRITE bandwidth. perftest's
#    latency is one-way (half a round trip): recorded doubled, as a round trip.
for run in $(seq 1 "$RUNS"); do
    if [ "$R" = 2 ]; then
        timeout 120 ib_send_lat -d rxe0 -x 1 -s 64 -n 200 > /dev/null 2>&1
        timeout 120 ib_write_bw -d rxe0 -x 1 -s 65536 -n 200 > /dev/null 2>&1
    else
        out=$(retry timeout 120 ib_send_lat -d rxe0 -x 1 -s 64 -n 200 198.18.0.2 2>&1)
        echo "$out" | awk '$1 == 64 && NF >= 6 { printf "BENCH lab.rtt.perftest_send.64 rtt_us p50=%.2f min=%.2f max=%.2f\n", 2 * $5, 2 * $3, 2 * $4 }'
        out=$(retry timeout 120 ib_write_bw -d rxe0 -x 1 -s 65536 -n 200 198.18.0.2 2>&1)
        echo "$out" | awk '$1 == 65536 && NF >= 4 { printf "BENCH lab.bw.perftest_write.65536 rate gb_per_s=%.4f\n", $4 / 1000 }'
    fi
    barrier "perftest$run"
done

# start_agent TOPOLOGY [PULL_BYTES]: this guest's agent, waiting until the other host is up;
# PULL_BYTES 0 makes it copy every payload through the queue pair's buffers (no RDMA READ).
start_agent() {
    rm -f $S
    VIO_RDMA_PULL_BYTES=${2:-} "$B/vio-agent" -t "$1" --host "h$R" --control-socket $S > "$L/agent-$R.log" 2>&1 &
    AGENT=$!
    for _ in $(seq 1 600); do
        timeout 5 "$B/vioctl" status --socket $S 2>/dev/null | grep -q "h$O  *up" && return 0
        sleep 0.1
    done
    echo "BENCH-ERROR h$O not up: $(tail -3 "$L/agent-$R.log")"
}

# agent_cpu: the agent's user+system CPU time so far, in clock ticks.
agent_cpu() { awk '{ print $14 + $15 }' "/proc/$AGENT/stat" 2>/dev/null || echo "BENCH-ERROR the agent is gone" >&2; }

if [ "$R" = 1 ]; then
    k1=$("$B/vioctl" keys generate h1 --out "$L/h1.key" 2>/dev/null | grep -o 'ed25519:[^ ]*')
    k2=$("$B/vioctl" keys generate h2 --out "$L/h2.key" 2>/dev/null | grep -o 'ed25519:[^ ]*')
    for variant in rdma rdma_tls tcp; do
        transport=rdma; [ $variant = tcp ] && transport=tcp
        {
            echo "cluster: rdma-bench"
            echo "version: 1"
            echo "defaults: { port: 7400, transport: $transport, channels: 2, ring_size: 1MiB, heartbeat_interval_ms: 500, peer_timeout_ms: 5000 }"
            echo "hosts:"
            if [ $variant = rdma_tls ]; then
                echo "  - { name: h1, address: 198.18.0.1, key: \"$k1\", key_file: $L/h1.key }"
                echo "  - { name: h2, address: 198.18.0.2, key: \"$k2\", key_file: $L/h2.key }"
            else
                echo "  - { name: h1, address: 198.18.0.1 }"
                echo "  - { name: h2, address: 198.18.0.2 }"
                echo "host_pairs: [ { between: [h1, h2], security: plaintext } ]"
            fi
            echo "instances:"
            for i in 1 2 3 4 5 6 7 8; do echo "  - { name: a$i, host: h1 }"; echo "  - { name: b$i, host: h2 }"; done
            echo "links:"
            for i in 1 2 3 4 5 6 7 8; do for j in 1 2 3 4 5 6 7 8; do echo "  - { between: [a$i, b$j] }"; done; done
        } > "$L/$variant.yaml"
    done
fi
barrier topologies

for variant in rdma rdma_copy rdma_tls tcp; do
    if [ $variant = rdma_copy ]; then start_agent "$L/rdma.yaml" 0; else start_agent "$L/$variant.yaml"; fi
    barrier "up-$variant"
    for run in $(seq 1 "$RUNS"); do
        # 64 B round trips.
        if [ "$R" = 2 ]; then
            timeout 120 "$B/vio-probe" echo --as b1 --wait sleep --count 250 > /dev/null 2>&1
        else
            out=$(timeout 120 "$B/vio-probe" ping --as a1 --peer b1 --wait sleep --count 200 --warmup 50 --open-timeout-ms 30000 2>&1)
            echo "BENCH lab.rtt.vio_$variant.64 $(echo "$out" | grep '^rtt_us')"
        fi
        barrier "rtt-$variant-$run"
        # One link streaming 64 KiB messages; each agent's CPU time over the stream.
        hz=$(getconf CLK_TCK)
        c0=$(agent_cpu)
        if [ "$R" = 2 ]; then
            timeout 300 "$B/vio-probe" sink --as b1 --wait sleep --count 300 > "$L/sink.txt" 2>&1
            echo "BENCH lab.bw.vio_$variant.65536 $(grep '^rate' "$L/sink.txt")"
        else
            timeout 300 "$B/vio-probe" rate --as a1 --peer b1 --wait sleep --size 65536 --count 300 --open-timeout-ms 30000 > /dev/null 2>&1
        fi
        echo "BENCH lab.agentcpu.vio_$variant.65536.h$R cpu_s=$(awk -v d=$(($(agent_cpu) - c0)) -v hz="$hz" 'BEGIN { printf "%.2f", d / hz }')"
        barrier "bw-$variant-$run"
    done
    # 64 links at once (8 instances per host), 16 KiB messages, for 5 s.
    if [ "$variant" = rdma ] || [ "$variant" = tcp ] || [ "$variant" = rdma_copy ]; then
        if [ "$R" = 2 ]; then
            timeout 120 "$B/vio-probe" fanout --as b1,b2,b3,b4,b5,b6,b7,b8 --role receive > "$L/fan.txt" 2>&1
            echo "BENCH lab.fanout.vio_$variant.16384 $(grep '^fanout links' "$L/fan.txt")"
        else
            sleep 1
            timeout 120 "$B/vio-probe" fanout --as a1,a2,a3,a4,a5,a6,a7,a8 --role send --size 16384 --seconds 5 > /dev/null 2>&1
        fi
        barrier "fan-$variant"
    fi
    # The SQL example (examples/sql): point selects over a link through both agents, and
    # (once) over the server's TCP listener between the same guests.
    if [ "$variant" = rdma ] || [ "$variant" = tcp ]; then
        if [ "$R" = 2 ]; then
            "$B/vio-sql-server" --as b3 --socket $S --tcp-listen 198.18.0.2:7500 > "$L/sql-$variant.out" 2> "$L/sql-$variant.log" &
            SQL=$!
            for _ in $(seq 1 100); do grep -q ready "$L/sql-$variant.out" 2>/dev/null && break; sleep 0.1; done
        fi
        barrier "sql-up-$variant"
        if [ "$R" = 1 ]; then
            for run in $(seq 1 "$RUNS"); do
                out=$(timeout 300 "$B/vio-sql" --as a3 --server b3 --socket $S --bench select --count 300 2>&1)
                echo "BENCH lab.sql.select.vio_$variant $(echo "$out" | grep '^rtt_us')"
                if [ $variant = tcp ]; then
                    out=$(timeout 300 "$B/vio-sql" --tcp 198.18.0.2:7500 --bench select --count 300 2>&1)
                    echo "BENCH lab.sql.select.tcp $(echo "$out" | grep '^rtt_us')"
                fi
            done
        fi
        barrier "sql-done-$variant"
        if [ "$R" = 2 ]; then kill $SQL; wait $SQL 2>/dev/null; fi
    fi
    # Idle: two links open (each end blocked in receive), nothing flowing, for 10 s.
    if [ "$variant" = rdma ] || [ "$variant" = tcp ]; then
        if [ "$R" = 2 ]; then
            timeout 60 "$B/vio-probe" hold --as b1 > /dev/null 2>&1 &
            timeout 60 "$B/vio-probe" hold --as b2 > /dev/null 2>&1 &
        else
            timeout 60 "$B/vio-probe" hold --as a1 --peer b1 > /dev/null 2>&1 &
            timeout 60 "$B/vio-probe" hold --as a2 --peer b2 > /dev/null 2>&1 &
        fi
        sleep 3
        hz=$(getconf CLK_TCK)
        t0=$(agent_cpu); sleep 10; t1=$(agent_cpu)
        echo "BENCH lab.cpu.idle_links.vio_$variant.h$R percent=$(awk -v d=$((t1 - t0)) -v hz="$hz" 'BEGIN { printf "%.2f", 100 * d / hz / 10 }')"
        pkill -f "vio-probe hold" 2>/dev/null
        barrier "idle-$variant"
    fi
    kill $AGENT; wait $AGENT 2>/dev/null
    barrier "down-$variant"
done
echo "bench suite done"
