import VIOWire

/// Human-readable `vioctl status` output.
enum StatusPrinter {
    static func render(_ s: AgentStatus, socket: String) -> String {
        var lines = [
            "agent:     pid \(s.pid), up \(formatUptime(s.uptimeMilliseconds))",
            "cluster:   \(s.cluster)",
            "host:      \(s.host)",
            "socket:    \(socket)",
            "transport: \(s.transport)",
            "instances: \(s.instances.count) declared, \(s.instances.filter(\.attached).count) attached",
        ]
        for i in s.instances {
            lines.append("  \(pad(i.name, 16)) \(i.attached ? "attached (pid \(i.pid))" : "detached")")
        }
        lines.append("links:     \(s.links.count)")
        for l in s.links {
            let route = l.peerHost == s.host ? "local" : "via \(l.peerHost)"
            lines.append("  \(pad("\(l.localEnd) <-> \(l.peerEnd)", 24)) \(pad(route, 12)) \(l.state)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    static func formatUptime(_ ms: UInt64) -> String {
        ms < 10_000 ? "\(ms) ms" : "\(ms / 1000) s"
    }
}
