#!/bin/sh
# A reference run of the lab (scripts/rdma-lab/lab.sh pair scripts/rdma-lab/perftest-pair.sh):
# guest 1 serves, guest 2 connects; perftest's latency and bandwidth over rxe0 (GID index 1,
# RoCE v2 over IPv4).
peer=198.18.0.1
retry() { for _ in $(seq 1 60); do "$@" && return 0; sleep 0.5; done; echo "FAILED: $*"; return 1; }
ibv_devices
if [ "$LAB_ROLE" = 1 ]; then
    timeout 60 ib_send_lat -d rxe0 -x 1 -n 500 >/dev/null
    timeout 60 ib_write_bw -d rxe0 -x 1 -n 200 -s 65536 >/dev/null
else
    retry timeout 60 ib_send_lat -d rxe0 -x 1 -n 500 $peer | tail -3
    retry timeout 60 ib_write_bw -d rxe0 -x 1 -n 200 -s 65536 $peer | tail -3
fi
