/// The single-host topology built into the binaries, so `vio-agent` and `vioctl` work with no
/// file at all. It is `topologies/single-host.yaml` verbatim (a test keeps the two equal).
public enum EmbeddedTopology {
    /// The name diagnostics use for the embedded text.
    public static let source = "<embedded single-host.yaml>"

    /// The host the embedded topology declares.
    public static let hostName = "local"

    /// The YAML text.
    public static let text = #"""
# VIO topology: one host, the default the demo and `vio-agent` without --topology use.
#
# Two database instances on this machine, linked directly through shared memory: the agent
# admits them and sets the link up, then stays out of the data path.
cluster: demo
version: 1

hosts:
  - name: local
    address: 127.0.0.1      # where other agents would reach this one (none here)
    transport: tcp          # no other hosts: nothing to carry, so skip the RDMA probe

instances:
  # uid/gid left out: only processes running as the agent's own user may attach.
  - name: db1
    host: local
  - name: db2
    host: local

links:
  - between: [db1, db2]
    ring_size: 1MiB         # each direction; messages larger than this are fragmented

"""#
}
