#!/usr/bin/env bash
# `make bench`'s RDMA part: boots the soft-RoCE lab (scripts/rdma-lab) and runs
# scripts/rdma-lab/bench-suite.sh in both guests: perftest, then VIO over RDMA (plaintext and
# TLS) and over TCP between the same two guests.
# Usage: scripts/bench-rdma.sh BIN_DIR RAW_FILE RUNS   (appends "NAME line" records to RAW_FILE)
set -euo pipefail
bin=$(cd "$1" && pwd) raw=$2 runs=${3:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
lab=$root/scripts/rdma-lab/lab.sh
if ! bash "$lab" setup >/dev/null 2>&1; then
  echo "bench: RDMA lab skipped: scripts/rdma-lab/lab.sh setup failed (needs root and Debian packages)" >&2
  exit 0
fi
dir=${VIO_RDMA_LAB:-/var/tmp/vio-rdma-lab}
rm -rf "$dir/bench"
out=$(VIO_RDMA_LAB_TIMEOUT=900 VIO_RDMA_LAB_MEMORY=512 bash "$lab" pair "$root/scripts/rdma-lab/bench-suite.sh" "$bin" "$runs")
echo "$out" | sed -n 's/^BENCH //p' >>"$raw"
echo "$out" | grep -E 'BENCH-ERROR|BARRIER|timed out' >&2 || true
echo "bench: RDMA lab: $(echo "$out" | grep -c '^BENCH ') records"
