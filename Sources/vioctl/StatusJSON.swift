import Foundation
import VIOWire

/// `vioctl status --json` and `vioctl health HOST --json`: the agent's state as one JSON
/// object, schema `vio.status` version 1 (docs/status-json.md). Everything the text shows,
/// plus each cross-host link's session state. Strings are escaped as in the text output
/// (control, separator and bidirectional characters as `\u{…}`): names and reasons may come
/// from other hosts.
enum StatusJSON {
    /// The schema's name and version: a consumer checks both.
    static let schema = "vio.status"
    static let version = 1

    static func render(_ s: AgentStatus) throws -> String {
        func text(_ t: String) -> String { DisplaySafe.escape(t) }
        func counters(_ c: AgentStatus.DirectionCounters) -> [String: Any] {
            ["messages": c.messages, "bytes": c.bytes, "wakeups": c.wakeups, "full_stalls": c.fullStalls, "errors": c.errors]
        }
        let object: [String: Any] = [
            "schema": schema,
            "version": version,
            "cluster": text(s.cluster),
            "host": text(s.host),
            "pid": s.pid,
            "uptime_ms": s.uptimeMilliseconds,
            "transport": text(s.transport),
            "numa_nodes": s.numaNodes,
            "topology": ["source": text(s.topologySource), "reloads": s.reloads,
                         "pending_restart": s.pendingRestart.map(text)] as [String: Any],
            "instances": s.instances.map { i -> [String: Any] in
                ["name": text(i.name), "attached": i.attached, "pid": i.pid, "uid": i.uid, "numa_node": i.numaNode]
            },
            "links": s.links.map { l -> [String: Any] in
                var link: [String: Any] = [
                    "local_end": text(l.localEnd), "peer_end": text(l.peerEnd), "peer_host": text(l.peerHost),
                    "state": text(l.state), "link_id": l.linkID,
                    "ring_bytes": ["to_local": l.ringBytes.toLocal, "to_peer": l.ringBytes.toPeer],
                    "sent": counters(l.sent), "received": counters(l.received),
                ]
                // Only for links to other hosts: the session's state as the agent's machine has it.
                if !l.session.isEmpty { link["session"] = text(l.session) }
                if l.numaNodes.toPeer >= 0 {
                    link["numa_nodes"] = ["to_local": l.numaNodes.toLocal, "to_peer": l.numaNodes.toPeer]
                }
                return link
            },
            "peer_hosts": s.peerHosts.map { p -> [String: Any] in
                [
                    "name": text(p.name), "state": text(p.state), "dials": p.dials,
                    "channels_up": p.channelsUp, "channels": p.channels,
                    "encrypted": p.encrypted, "security": text(p.security), "transport": text(p.transport),
                    "rtt_us": p.rttMicroseconds, "links_open": p.linksOpen,
                    "bytes_sent": p.bytesSent, "bytes_received": p.bytesReceived,
                    "frames_sent": p.framesSent, "frames_received": p.framesReceived,
                    "credit_stalls": p.creditStalls, "reconnects": p.reconnects, "key_updates": p.keyUpdates, "payloads_pulled": p.payloadsPulled,
                    "last_error": text(p.lastError), "differences": p.differences.map(text),
                ]
            },
            "services": s.services.map { v -> [String: Any] in
                [
                    "name": text(v.name), "protocol": text(v.proto), "role": text(v.role),
                    "listen": text(v.listen), "server": text(v.server), "state": text(v.state), "reason": text(v.reason),
                    "connections_open": v.connectionsOpen, "connections_total": v.connectionsTotal,
                    "bytes_to_server": v.bytesToServer, "bytes_to_clients": v.bytesToClients,
                    "refused": v.refused, "resets": v.resets, "datagrams_dropped": v.datagramsDropped,
                ]
            },
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
