#!/bin/sh
# The cross-host cases over RDMA, run in both lab guests by `lab.sh pair` (the host's test,
# RDMALabTests, reads the `CASE` lines and checks them):
#   scripts/rdma-lab/lab.sh pair scripts/rdma-lab/fabric-suite.sh BIN_DIR
# Guest 1 is host h1 (instances a1, a2), guest 2 is h2 (b1, b2); `transport: rdma`, so a
# channel that cannot move onto a queue pair fails instead of staying on TCP. The guests
# meet at barriers (files in the shared lab directory).
B=$1
SCRATCH=suite
. "$(dirname "$0")/guest-lib.sh"

# start_agent TOPOLOGY TAG: an agent for this guest's host, its log in the lab directory.
start_agent() {
    rm -f $S
    # Not under `timeout`: $AGENT must be the agent itself (kill -9 below); the guest's own
    # time limit ends it if the suite hangs.
    "$B/vio-agent" -t "$1" --host "h$R" --control-socket $S > "$L/agent-$R.$2.log" 2>&1 &
    AGENT=$!
    for _ in $(seq 1 200); do [ -S $S ] && return 0; sleep 0.1; done
    echo "agent did not start: $(tail -3 "$L/agent-$R.$2.log")"
}

status() { timeout 10 "$B/vioctl" status --socket $S 2>&1; }

# Waits (up to 60 s) until the other host is up with every channel on RDMA.
wait_up() {
    for _ in $(seq 1 600); do
        st=$(status)
        if echo "$st" | grep -q "h$O  *up" && echo "$st" | grep -q "transport rdma: rxe0"; then return 0; fi
        sleep 0.1
    done
    echo "h$O not up over RDMA: $st"
    return 1
}

result() { if [ "$2" = 0 ]; then echo "CASE $1 ok $3"; else echo "CASE $1 FAILED $3"; fi; }

# number TEXT MARKER: the number just before MARKER in TEXT.
number() { echo "$1" | sed -n "s/.* \([0-9][0-9]*\)$2.*/\1/p" | head -1; }

if [ "$R" = 1 ]; then
    cat > "$L/plain.yaml" <<EOF
cluster: rdma-lab
version: 1
defaults:
  port: 7300
  transport: rdma
  channels: 2
  ring_size: 1MiB
  max_message_size: 16MiB
  heartbeat_interval_ms: 300
  peer_timeout_ms: 2500
hosts:
  - { name: h1, address: 198.18.0.1 }
  - { name: h2, address: 198.18.0.2 }
host_pairs:
  - { between: [h1, h2], security: plaintext }
instances:
  - { name: a1, host: h1 }
  - { name: a2, host: h1 }
  - { name: b1, host: h2 }
  - { name: b2, host: h2 }
links:
  - group: [a1, a2, b1, b2]
services:
  - name: echo
    server: { host: h2, address: "127.0.0.1:7000" }
    listen:
      - { host: h1, address: "198.18.0.1:7000" }
EOF
    rm -f "$L"/h?.key
    k1=$("$B/vioctl" keys generate h1 --out "$L/h1.key" | grep -o 'ed25519:[^ ]*')
    k2=$("$B/vioctl" keys generate h2 --out "$L/h2.key" | grep -o 'ed25519:[^ ]*')
    sed -e "s|{ name: h1, address: 198.18.0.1 }|{ name: h1, address: 198.18.0.1, key: \"$k1\", key_file: $L/h1.key }|" \
        -e "s|{ name: h2, address: 198.18.0.2 }|{ name: h2, address: 198.18.0.2, key: \"$k2\", key_file: $L/h2.key }|" \
        -e '/host_pairs:/d' -e '/security: plaintext/d' -e 's/transport: rdma/transport: auto/' "$L/plain.yaml" > "$L/tls.yaml"
fi
barrier topology
# The proxied service's real server (case 1b).
if [ "$R" = 2 ]; then "$B/vio-probe" tcp-echo --listen 127.0.0.1:7000 > /dev/null 2>&1 & fi
start_agent "$L/plain.yaml" plain
wait_up

# 1. Every link of the group at once (two within each host, four across), checked messages
#    from 16 B to 8 MiB both ways, and a 1-byte round trip.
if [ "$R" = 1 ]; then mine="a1 a2"; else mine="b1 b2"; fi
pids=""
for i in $mine; do
    timeout 300 "$B/vio-probe" mesh --as $i --count 4 --max-size 8388608 --sleep > "$L/mesh-$i.txt" 2>&1 &
    pids="$pids $!"
done
for p in $pids; do wait $p; done
mine_ok=0
for i in $mine; do grep -q "mesh verified 3 links" "$L/mesh-$i.txt" || mine_ok=1; done
result all-to-all $mine_ok "$(for i in $mine; do tail -1 "$L/mesh-$i.txt"; done | tr '\n' ';')"
barrier mesh
if [ "$R" = 1 ]; then
    out=$(timeout 60 "$B/vio-probe" ping --as a1 --peer b1 --count 20 --warmup 2 --size 1 2>&1); rc=$?
    result one-byte $rc "$(echo "$out" | tail -1)"
else
    timeout 60 "$B/vio-probe" echo --as b1 --count 22 > /dev/null 2>&1
fi
st=$(status)
echo "$st" | grep -q "transport rdma: rxe0"; result carrier $? "$(echo "$st" | grep 'transport rdma' | head -1)"
# Payloads of 64 KiB and more went ring to ring by RDMA READ (the mesh sends up to 8 MiB).
echo "$st" | grep -q "payloads pulled by RDMA READ"; result pulled $? "$(echo "$st" | grep -o '[0-9]* payloads pulled by RDMA READ' | head -1)"
barrier oneByte

# An RDMA connect request without a ticket (rping, not an agent) is rejected before any queue
# pair exists, and the pair carries on.
if [ "$R" = 1 ]; then
    port=$(sed -n 's/.*RDMA on 198.18.0.2 port \([0-9][0-9]*\).*/\1/p' "$L/agent-2.plain.log" | head -1)
    out=$(timeout 20 rping -c -a 198.18.0.2 -p "${port:-0}" -C 1 -v 2>&1); rc=$?
    echo "$out" | grep -qi "reject"; rejected=$?
    timeout 60 "$B/vio-probe" ping --as a2 --peer b2 --count 5 --warmup 1 > /dev/null 2>&1; still=$?
    result impostor $((rejected + still + (rc == 0))) "port=$port rping=$rc $(echo "$out" | tr '\n' ' ' | cut -c1-160)"
else
    timeout 60 "$B/vio-probe" echo --as b2 --count 6 > /dev/null 2>&1
fi
barrier impostor

# 1b. Proxy mode over the RDMA pair: checked TCP streams from h1's listen address through both
#     agents to the echo server on h2.
if [ "$R" = 1 ]; then
    for _ in $(seq 1 200); do status | grep -q "^  echo .* up," && break; sleep 0.1; done
    out=$(timeout 120 "$B/vio-probe" tcp-check --connect 198.18.0.1:7000 --connections 4 --max-size 1000000 2>&1)
    result proxy $? "$(echo "$out" | tail -1)"
fi
barrier proxy

# 2. Head of line: b1 never reads, so a1's stream to it stalls; a2 -> b2 must still finish.
if [ "$R" = 2 ]; then
    timeout 200 "$B/vio-probe" hold --as b1 --stall > "$L/hold.txt" 2>&1 &
    HOLD=$!
    timeout 200 "$B/vio-probe" verify --as b2 --count 300 > "$L/verify-b2.txt" 2>&1 &
    VERIFY=$!
    barrier holReady
    wait $VERIFY; rc=$?
    result head-of-line $rc "$(tail -1 "$L/verify-b2.txt")"
    barrier holDone
    kill $HOLD 2>/dev/null; wait $HOLD 2>/dev/null
else
    barrier holReady
    timeout 200 "$B/vio-probe" stream --as a1 --peer b1 --count 100000000 --max-size 65536 > "$L/stalled.txt" 2>&1 &
    STALLED=$!
    sleep 3
    timeout 120 "$B/vio-probe" stream --as a2 --peer b2 --count 300 --max-size 65536 > "$L/stream-a2.txt" 2>&1
    stalls=$(status | sed -n 's/.* \([0-9][0-9]*\) credit stalls.*/\1/p' | head -1)
    sent=$(number "$(cat "$L/stalled.txt")" " before the link")
    result stalled-link-stalled 0 "credit stalls ${stalls:-?}"
    barrier holDone
    kill $STALLED 2>/dev/null; wait $STALLED 2>/dev/null
fi
barrier holClean

# 3. kill -9 of h2's agent while a1 streams to b1: h1's link reports the host down with a
#    possibly-lost count; h2's agent restarts, the pair comes back over RDMA, links reopen.
if [ "$R" = 2 ]; then
    timeout 200 "$B/vio-probe" verify --as b1 --count 100000000 > "$L/verify-kill.txt" 2>&1 &
    VERIFY=$!
    barrier killReady
    sleep 3
    kill -9 $AGENT
    wait $VERIFY
    echo "CASE kill9-receiver verified=$(number "$(cat "$L/verify-kill.txt")" " before the link")"
    barrier killed
    start_agent "$L/plain.yaml" restarted
    wait_up; rc=$?
    timeout 60 "$B/vio-probe" echo --as b1 --count 20 > /dev/null 2>&1
    barrier killBack
    result kill9-reconnect $rc ""
else
    barrier killReady
    out=$(timeout 120 "$B/vio-probe" stream --as a1 --peer b1 --count 100000000 --max-size 2000 2>&1); rc=$?
    sent=$(number "$out" " before the link failed")
    lost=$(number "$out" " message(s) sent on this link were not acknowledged")
    echo "$out" | grep -q "peer host down: host 'h2'"; down=$?
    echo "CASE kill9-sender exit=$rc down=$down sent=$sent lost=$lost"
    barrier killed
    wait_up
    out=$(timeout 60 "$B/vio-probe" ping --as a1 --peer b1 --count 10 --warmup 10 2>&1); rc=$?
    result kill9-reopen $rc "$(echo "$out" | tail -1)"
    barrier killBack
fi

# 4. A pulled cable: h2's NIC goes down for longer than the peer timeout (queue pairs
#    survive that; the heartbeats on them do not): both ends report the host down, and
#    after the cable is back the pair reconnects and the link works again.
if [ "$R" = 2 ]; then
    timeout 200 "$B/vio-probe" verify --as b1 --count 100000000 > "$L/verify-cut.txt" 2>&1 &
    VERIFY=$!
    barrier cutReady
    sleep 2
    touch "$LAB_DIR/link-off-2"
    wait $VERIFY; rc=$?
    grep -q "peer host down: host 'h1'" "$L/verify-cut.txt"; down=$?
    echo "CASE cut-receiver exit=$rc down=$down verified=$(number "$(cat "$L/verify-cut.txt")" " before the link")"
    touch "$LAB_DIR/link-on-2"
    wait_up; rc=$?
    timeout 60 "$B/vio-probe" echo --as b1 --count 20 > /dev/null 2>&1
    barrier cutBack
    result cut-reconnect $rc ""
else
    barrier cutReady
    out=$(timeout 120 "$B/vio-probe" stream --as a1 --peer b1 --count 100000000 --max-size 2000 2>&1); rc=$?
    echo "$out" | grep -q "peer host down: host 'h2'"; down=$?
    echo "CASE cut-sender exit=$rc down=$down sent=$(number "$out" " before the link failed") lost=$(number "$out" " message(s) sent on this link were not acknowledged")"
    wait_up
    out=$(timeout 60 "$B/vio-probe" ping --as a1 --peer b1 --count 10 --warmup 10 2>&1); rc=$?
    result cut-reopen $rc "$(echo "$out" | tail -1)"
    barrier cutBack
fi

# 5. An encrypted pair over RDMA, chosen by `transport: auto` (both hosts have an active rxe
#    port on their address): every queue-pair message a sealed record.
kill $AGENT; wait $AGENT 2>/dev/null
barrier plainDone
start_agent "$L/tls.yaml" tls
wait_up
if [ "$R" = 2 ]; then
    timeout 200 "$B/vio-probe" verify --as b2 --count 200 > "$L/verify-tls.txt" 2>&1; rc=$?
    result tls-stream $rc "$(tail -1 "$L/verify-tls.txt")"
else
    timeout 200 "$B/vio-probe" stream --as a2 --peer b2 --count 200 --max-size 1048576 > /dev/null 2>&1
fi
st=$(status)
echo "$st" | grep -q "encrypted TLSv1.3"; enc=$?
echo "$st" | grep -q "transport rdma: rxe0"; rdma=$?
echo "$st" | grep -q "^transport: rdma (rxe0)"; auto=$?
result tls-carrier $((enc + rdma + auto)) "$(echo "$st" | grep -E 'encrypted|transport' | tr -s ' ' | tr '\n' ';')"
barrier tlsDone
kill $AGENT; wait $AGENT 2>/dev/null
echo "suite done"
