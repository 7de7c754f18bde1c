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
            "topology:  \(s.topologySource)\(s.reloads == 0 ? "" : ", \(s.reloads) reload\(s.reloads == 1 ? "" : "s")")",
            "numa:      \(s.numaNodes) node\(s.numaNodes == 1 ? " (rings not bound)" : "s (each ring bound to its reader's node)")",
            "instances: \(s.instances.count) declared, \(s.instances.filter(\.attached).count) attached",
        ]
        for i in s.instances {
            let detail = i.attached ? "attached  pid \(i.pid) uid \(i.uid) node \(i.numaNode)" : "detached"
            lines.append("  \(pad(i.name, 16)) \(detail)")
        }
        lines.append("links:     \(s.links.count)")
        for l in s.links {
            let route = l.peerHost == s.host ? "local" : "via \(l.peerHost)"
            lines.append("  \(pad("\(l.localEnd) <-> \(l.peerEnd)", 24)) \(pad(route, 10)) \(l.state)\(l.session.isEmpty ? "" : ", session \(l.session)")")
            guard l.linkID != 0 else { continue }
            var rings = "    id \(l.linkID), rings \(bytes(l.ringBytes.toPeer)) to \(l.peerEnd) / \(bytes(l.ringBytes.toLocal)) to \(l.localEnd)"
            if l.numaNodes.toPeer >= 0 { rings += ", nodes \(l.numaNodes.toPeer)/\(l.numaNodes.toLocal)" }
            lines.append(rings)
            lines.append("    \(pad("\(l.localEnd) -> \(l.peerEnd):", 26)) \(counters(l.sent))")
            lines.append("    \(pad("\(l.peerEnd) -> \(l.localEnd):", 26)) \(counters(l.received))")
        }
        if !s.peerHosts.isEmpty {
            lines.append("peer hosts: \(s.peerHosts.count)")
            for p in s.peerHosts {
                let security = p.encrypted ? "encrypted \(p.security)" : "plaintext"
                lines.append("  \(pad(p.name, 16)) \(pad(p.state, 10)) channels \(p.channelsUp)/\(p.channels) (\(p.dials ? "dials" : "accepts"), \(security)), rtt \(p.rttMicroseconds) us, \(p.linksOpen) links open")
                lines.append("    sent \(bytes(p.bytesSent)) in \(p.framesSent) frames, received \(bytes(p.bytesReceived)) in \(p.framesReceived) frames, \(p.creditStalls) credit stalls, \(p.reconnects) reconnects\(p.encrypted ? ", \(p.keyUpdates) key updates" : "")")
                if !p.transport.isEmpty {
                    lines.append("    transport \(p.transport)\(p.payloadsPulled > 0 ? ", \(p.payloadsPulled) payloads pulled by RDMA READ" : "")")
                }
                if !p.lastError.isEmpty { lines.append("    last error: \(p.lastError)") }
                for d in p.differences { lines.append("    topology differs: \(d)") }
            }
        }
        if !s.services.isEmpty {
            lines.append("services: \(s.services.count)")
            for v in s.services {
                let ends = [v.listen.isEmpty ? nil : "listen \(v.listen)", "server \(v.server)"].compactMap { $0 }.joined(separator: ", ")
                lines.append("  \(pad(v.name, 16)) \(pad(v.proto, 4)) \(pad(v.role, 14)) \(v.state)\(v.reason.isEmpty ? "" : " (\(v.reason))"), \(ends)")
                lines.append("    \(v.connectionsOpen) connections open, \(v.connectionsTotal) total, \(bytes(v.bytesToServer)) to the server, \(bytes(v.bytesToClients)) to clients, \(v.refused) refused, \(v.resets) reset\(v.proto == "udp" ? ", \(v.datagramsDropped) datagrams dropped" : "")")
            }
        }
        for pending in s.pendingRestart { lines.append("pending restart: \(pending)") }
        // Names, reasons and errors come from agents (a far one's, for health): one line each.
        return lines.map { DisplaySafe.escape($0) }.joined(separator: "\n") + "\n"
    }

    static func counters(_ c: AgentStatus.DirectionCounters) -> String {
        "\(c.messages) msgs, \(bytes(c.bytes)), \(c.wakeups) wake-ups, \(c.fullStalls) full stalls, \(c.errors) errors"
    }

    static func bytes(_ n: UInt64) -> String {
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] where n >= 1 << shift {
            // The tenth from the remainder: counters come from shared memory and far agents, and
            // n * 10 would overflow for the largest of them.
            let whole = n >> shift, tenth = ((n & ((1 << shift) - 1)) * 10) >> shift
            return "\(whole)\(tenth == 0 ? "" : ".\(tenth)") \(unit)"
        }
        return "\(n) B"
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    static func formatUptime(_ ms: UInt64) -> String {
        ms < 10_000 ? "\(ms) ms" : "\(ms / 1000) s"
    }
}
