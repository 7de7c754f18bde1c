import Prometheus
import VIOWire

/// The agent's Prometheus metrics: swift-prometheus's registry, filled at each scrape from the
/// counters the data path keeps anyway (``AgentStatus``), so a scrape costs the data path
/// nothing. Counters stay registered after a link closes or a channel drops, so totals survive
/// them; a source that restarts from zero (a link reopened) adds its new count.
///
/// The registry is used directly rather than through swift-metrics' factory: its API takes each
/// metric's HELP text, which `promtool check metrics` asks for.
final class AgentMetrics {
    let registry = PrometheusCollectorRegistry()
    private var counters: [String: (counter: Counter, last: UInt64)] = [:]
    private var gauges: [String: Gauge] = [:]
    private var histograms: [String: DurationHistogram] = [:]
    private let startTime: Double

    /// Heartbeat round trips, 25 µs to 2 s.
    static let roundTripBuckets: [Duration] = [25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 100_000, 500_000, 2_000_000]
        .map { .microseconds($0) }

    init(startTime: Double) { self.startTime = startTime }

    /// Brings every metric up to date with `status` and the round trips measured since the
    /// last scrape, and renders the exposition text.
    func scrape(_ status: AgentStatus, roundTrips: [(peer: String, microseconds: [UInt32])]) -> [UInt8] {
        gauge("vio_agent_info", "The agent: cluster, host and transport choice (always 1).",
              [("cluster", status.cluster), ("host", status.host), ("transport", String(status.transport.prefix(while: { $0 != " " && $0 != ":" })))])
            .set(1.0)
        gauge("vio_agent_start_time_seconds", "When the agent started, seconds since the epoch.", []).set(startTime)
        gauge("vio_instances_declared", "Instances the topology declares on this host.", []).set(Int64(status.instances.count))
        gauge("vio_instances_attached", "Instances attached to this agent now.", []).set(Int64(status.instances.filter(\.attached).count))
        for link in status.links {
            let labels = [("link", "\(link.localEnd)<->\(link.peerEnd)"), ("local", link.localEnd), ("peer", link.peerEnd),
                          ("peer_host", link.peerHost.isEmpty ? status.host : link.peerHost)]
            gauge("vio_link_up", "Whether the link is open (1) or not (0).", labels).set(link.state == "open" ? 1.0 : 0.0)
            for (direction, c) in [("sent", link.sent), ("received", link.received)] {
                let l = labels + [("direction", direction)]
                count("vio_link_messages_total", "Messages carried by the link.", l, c.messages)
                count("vio_link_bytes_total", "Message bytes carried by the link.", l, c.bytes)
                count("vio_link_wakeups_total", "Doorbells rung for the link's reader or writer.", l, c.wakeups)
                count("vio_link_full_ring_stalls_total", "Times a writer found the link's ring full.", l, c.fullStalls)
                count("vio_link_errors_total", "Errors on the link.", l, c.errors)
            }
        }
        for peer in status.peerHosts {
            let labels = [("peer", peer.name)]
            gauge("vio_peer_up", "Whether every channel to the peer host is up (1) or not (0).", labels).set(peer.state == "up" ? 1.0 : 0.0)
            gauge("vio_peer_channels_up", "Channels to the peer host that are up.", labels).set(Int64(peer.channelsUp))
            gauge("vio_peer_channels", "Channels the topology declares to the peer host.", labels).set(Int64(peer.channels))
            gauge("vio_peer_links_open", "Cross-host links open to the peer host.", labels).set(Int64(peer.linksOpen))
            gauge("vio_peer_encrypted", "Whether the channels to the peer host are encrypted (1) or not (0).", labels)
                .set(peer.encrypted ? 1.0 : 0.0)
            gauge("vio_peer_rdma", "Whether the channels to the peer host run over RDMA (1) or TCP (0).", labels)
                .set(peer.transport.hasPrefix("rdma") ? 1.0 : 0.0)
            for (direction, bytes, frames) in [("sent", peer.bytesSent, peer.framesSent), ("received", peer.bytesReceived, peer.framesReceived)] {
                count("vio_peer_bytes_total", "Bytes on the channels to the peer host, frames included.", labels + [("direction", direction)], bytes)
                count("vio_peer_frames_total", "Frames on the channels to the peer host.", labels + [("direction", direction)], frames)
            }
            count("vio_peer_credit_stalls_total", "Times a link to the peer host waited for credit.", labels, peer.creditStalls)
            count("vio_peer_reconnects_total", "Times the peer host came back after being down.", labels, peer.reconnects)
            count("vio_peer_key_updates_total", "Key updates this agent asked for on channels to the peer host.", labels, peer.keyUpdates)
        }
        for service in status.services {
            let labels = [("service", service.name), ("protocol", service.proto)]
            gauge("vio_service_up", "Whether the service's server is known to be up (1) or not (0: down or not known).", labels)
                .set(service.state == "up" ? 1.0 : 0.0)
            gauge("vio_service_connections_open", "Proxied connections of the service open through this agent.", labels)
                .set(Int64(service.connectionsOpen))
            count("vio_service_connections_total", "Proxied connections of the service through this agent.", labels, service.connectionsTotal)
            count("vio_service_bytes_total", "Bytes of the service's connections carried by this agent.", labels + [("direction", "to_server")], service.bytesToServer)
            count("vio_service_bytes_total", "Bytes of the service's connections carried by this agent.", labels + [("direction", "to_clients")], service.bytesToClients)
            count("vio_service_refused_total", "Connections refused: the server or its host down, or the connect failed.", labels, service.refused)
            count("vio_service_resets_total", "Connections ended by a reset at either end or a lost host.", labels, service.resets)
        }
        for (peer, samples) in roundTrips {
            let h = histogram("vio_peer_rtt_seconds", "Heartbeat round trip to the peer host's agent.", [("peer", peer)])
            for us in samples { h.record(.microseconds(Int64(us))) }
        }
        return registry.emitToBuffer()
    }

    private func key(_ name: String, _ labels: [(String, String)]) -> String {
        labels.reduce(name) { $0 + "\u{0}" + $1.0 + "=" + $1.1 }
    }

    private func gauge(_ name: String, _ help: String, _ labels: [(String, String)]) -> Gauge {
        let k = key(name, labels)
        if let g = gauges[k] { return g }
        let g = registry.makeGauge(name: name, labels: labels, help: help)
        gauges[k] = g
        return g
    }

    /// Advances a counter to `value`. The sources only grow (closed links' traffic is kept),
    /// except where an instance scribbled on its ring's counters: a value below the last one is
    /// ignored, and no scrape adds more than ``maximumIncrease``, so an exposed counter never
    /// goes backwards or wraps.
    private func count(_ name: String, _ help: String, _ labels: [(String, String)], _ value: UInt64) {
        let k = key(name, labels)
        let entry = counters[k] ?? (registry.makeCounter(name: name, labels: labels, help: help), 0)
        if value > entry.last { entry.counter.increment(by: Int64(min(value - entry.last, Self.maximumIncrease))) }
        counters[k] = (entry.counter, max(value, entry.last))
    }

    /// 2^48 (256 TiB, or messages) between two scrapes: more than any link carries.
    static let maximumIncrease: UInt64 = 1 << 48

    private func histogram(_ name: String, _ help: String, _ labels: [(String, String)]) -> DurationHistogram {
        let k = key(name, labels)
        if let h = histograms[k] { return h }
        let h = registry.makeDurationHistogram(name: name, labels: labels, buckets: Self.roundTripBuckets, help: help)
        histograms[k] = h
        return h
    }
}
