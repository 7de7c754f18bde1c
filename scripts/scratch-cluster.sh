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
