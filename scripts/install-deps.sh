#!/usr/bin/env bash
# Installs the Debian packages VIO builds and tests against. Idempotent: a second run
# only re-checks. Needs root (or sudo) on a Debian/Ubuntu machine.
set -euo pipefail

packages=(
  gcc libc6-dev     # the C examples and baselines (tests compile them)
  pkg-config        # finds the -dev libraries; checks vio.pc
  liburing-dev      # io_uring waits and the agent's I/O
  libibverbs-dev    # RDMA verbs (builds and links; hardware optional)
  librdmacm-dev     # RDMA connection manager
  libnuma-dev       # ring memory placement on multi-node hosts
  libssl-dev        # TLS 1.3 between agents (OpenSSL)
  libacl1-dev       # the control socket's ACL: only the topology's uids may connect
  tcpdump           # the test that captures a channel and looks for plaintext
  prometheus        # promtool checks a real scrape of the agent's metrics
  postgresql        # proxy mode: a real PostgreSQL server, psql and pgbench behind the agents
  redis-server      # proxy mode: a real Redis server ...
  redis-tools       # ... and redis-cli, redis-benchmark
  libsqlite3-dev    # examples/sql: the in-memory SQL database served over VIO
  iproute2          # network namespaces for multi-host tests
  procps            # process tools used by tests and demo
  util-linux        # setpriv (tests run a process as another uid), taskset (bench)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
