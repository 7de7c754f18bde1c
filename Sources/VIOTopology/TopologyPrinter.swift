/// Renders resolved topologies as YAML-shaped text for `vioctl topology show`.
public enum TopologyPrinter {
    /// The cluster-wide settings and every host's view.
    public static func render(_ t: Topology, views: [HostView]) -> String {
        var out = """
        cluster: \(t.cluster)
        version: \(t.version)
        defaults:
          ring_size: \(t.defaults.ringSize)
          max_message_size: \(t.defaults.maxMessageSize)
          port: \(t.defaults.port)
          transport: \(t.defaults.transport.rawValue)
          channels: \(t.defaults.channels)
          heartbeat_interval_ms: \(t.defaults.heartbeatIntervalMilliseconds)
          peer_timeout_ms: \(t.defaults.peerTimeoutMilliseconds)
          security: \(t.defaults.security.rawValue)
          rekey_after: \(t.defaults.rekeyAfter)
          rekey_interval_s: \(t.defaults.rekeyIntervalSeconds)
          agent_poll_us: \(t.defaults.agentPollMicroseconds < 0 ? "auto" : "\(t.defaults.agentPollMicroseconds)")
          metrics_listen: \(t.defaults.metricsListen ?? "(off)")
        hosts:

        """
        for view in views { out += render(view, indent: "  ") }
        return out
    }

    /// One host's view, as a list item indented by `indent`.
    public static func render(_ v: HostView, indent: String = "") -> String {
        let h = v.host
        var lines = [
            "- name: \(h.name)",
            "  address: \(h.address)",
            "  port: \(h.port)",
            "  transport: \(h.transport.rawValue)",
            "  rdma_device: \(h.rdmaDevice ?? "(first found)")",
            "  nat: \(h.nat.rawValue)",
            "  channels: \(h.channels)",
            "  key: \(h.key?.description ?? "(none)")",
            "  agent_poll_us: \(h.agentPollMicroseconds < 0 ? "auto" : "\(h.agentPollMicroseconds)")",
            "  metrics_listen: \(h.metricsListen ?? "(off)")",
            "  control_socket: \(v.controlSocket)",
            "  instances:" + (v.instances.isEmpty ? " []" : ""),
        ]
        for r in v.instances {
            let i = r.instance
            lines.append("    - name: \(i.name)")
            lines.append("      uid: \(i.uid.map(String.init) ?? "(agent's uid)")")
            lines.append("      gid: \(i.gid.map(String.init) ?? "(any)")")
            lines.append("      token_file: \(i.tokenFile ?? "(none)")")
            lines.append("      ring_size: \(r.ringSize)")
        }
        lines.append("  links:" + (v.links.isEmpty ? " []" : ""))
        for l in v.links {
            let route: String
            switch l.kind {
            case .local: route = "local shared memory"
            case .remote(let host): route = "via agents to host \(host)"
            }
            lines.append("    - between: [\(l.localEnd), \(l.peerEnd)]")
            lines.append("      route: \(route)")
            lines.append("      ring_size: {to \(l.localEnd): \(l.ringSizeToLocal), to \(l.peerEnd): \(l.ringSizeToPeer)}")
            lines.append("      max_message_size: \(l.maxMessageSize)")
        }
        lines.append("  peers:" + (v.peers.isEmpty ? " []" : ""))
        for p in v.peers {
            lines.append("    - host: \(p.host.name)")
            lines.append("      address: \(p.host.address):\(p.host.port)")
            lines.append("      channels: \(p.channels) (\(p.weDial ? "this host dials" : "peer dials")), security: \(p.security.rawValue)")
            lines.append("      links: \(p.linkCount)")
        }
        lines.append("  services:" + (v.services.isEmpty ? " []" : ""))
        for s in v.services {
            lines.append("    - name: \(s.name)")
            lines.append("      protocol: \(s.proto.rawValue)")
            lines.append("      server: \(s.server.host) \(s.server.address):\(s.server.port)")
            for l in s.listen { lines.append("      listen: \(l.host) \(l.address):\(l.port)") }
            if s.proto == .udp { lines.append("      idle_timeout_ms: \(s.idleTimeoutMilliseconds)") }
        }
        return lines.map { indent + $0 }.joined(separator: "\n") + "\n"
    }
}
