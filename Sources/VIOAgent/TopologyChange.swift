import VIOTopology

/// What reloading the topology changes for one host, worked out before anything is applied:
/// which instances, links, services and peer hosts come and go, and which changed settings
/// this agent can only take at its next start. Where things were declared (line numbers) does
/// not count as a change; a changed link or service is one removed and one added.
struct TopologyChange {
    var addedInstances: [String] = []
    var removedInstances: [String] = []
    /// Admission settings (uid, gid, token file) changed: they apply to the next attach.
    var changedInstances: [String] = []
    var addedLinks: [ResolvedLink] = []
    var removedLinks: [ResolvedLink] = []
    var addedServices: [Service] = []
    var removedServices: [Service] = []
    var addedPeers: [PeerHost] = []
    var removedPeers: [PeerHost] = []
    /// Changed settings the running agent keeps until it restarts, each as a sentence.
    var pendingRestart: [String] = []

    /// Compares what the agent runs with `new` (the file just read) for the same host: `old`
    /// is the view it runs (instances and links), `services` and `peers` what it actually
    /// serves and keeps channels to (an earlier reload may have failed to add one), and
    /// `started` what it started with (settings read only at start).
    init(from old: HostView, services: [Service], peers: [PeerHost], started: (view: HostView, topology: Topology),
         to new: HostView, _ newTopology: Topology) {
        func diff<T>(_ a: [T], _ b: [T], key: (T) -> String) -> (added: [T], removed: [T]) {
            let aKeys = Set(a.map(key)), bKeys = Set(b.map(key))
            return (b.filter { !aKeys.contains(key($0)) }, a.filter { !bKeys.contains(key($0)) })
        }
        let instances = diff(old.instances, new.instances) { $0.instance.name }
        addedInstances = instances.added.map(\.instance.name)
        removedInstances = instances.removed.map(\.instance.name)
        let oldInstances = Dictionary(old.instances.map { ($0.instance.name, $0) }, uniquingKeysWith: { a, _ in a })
        changedInstances = new.instances.filter { i in
            oldInstances[i.instance.name].map { Self.admission($0) != Self.admission(i) } ?? false
        }.map(\.instance.name)
        (addedLinks, removedLinks) = diff(old.links, new.links, key: Self.signature)
        (addedServices, removedServices) = diff(services, new.services, key: Self.signature)
        let peerChange = diff(peers, new.peers) { $0.host.name }
        (addedPeers, removedPeers) = (peerChange.added, peerChange.removed)
        let oldPeers = Dictionary(peers.map { ($0.host.name, $0) }, uniquingKeysWith: { a, _ in a })
        for peer in new.peers {
            guard let was = oldPeers[peer.host.name] else { continue }
            let changed = Self.channelSettings(of: was).filter { Self.channelSettings(of: peer)[$0.key] != $0.value }.keys.sorted()
            if !changed.isEmpty {
                pendingRestart.append("host '\(peer.host.name)': \(changed.joined(separator: ", ")) changed; its channels keep the old settings until this agent restarts")
            }
        }
        let mine = Self.ownSettings(started.view, started.topology), theirs = Self.ownSettings(new, newTopology)
        for (name, value) in mine.sorted(by: { $0.key < $1.key }) where theirs[name] != value {
            pendingRestart.append("\(name) changed (\(value) -> \(theirs[name] ?? "unset")); takes effect when this agent restarts")
        }
    }

    /// Nothing to apply and nothing pending.
    var isEmpty: Bool {
        addedInstances.isEmpty && removedInstances.isEmpty && changedInstances.isEmpty && addedLinks.isEmpty
            && removedLinks.isEmpty && addedServices.isEmpty && removedServices.isEmpty && addedPeers.isEmpty
            && removedPeers.isEmpty && pendingRestart.isEmpty
    }

    /// One line per kind of change, for the log and `vioctl reload`.
    var summary: [String] {
        func names(_ list: [String]) -> String { list.count <= 8 ? list.joined(separator: ", ") : list.prefix(8).joined(separator: ", ") + ", ..." }
        func line(_ what: String, _ list: [String]) -> String? {
            list.isEmpty ? nil : "\(what) (\(list.count)): \(names(list))"
        }
        func link(_ l: ResolvedLink) -> String {
            if case .remote(let host) = l.kind { return "\(l.localEnd) <-> \(l.peerEnd)@\(host)" }
            return "\(l.localEnd) <-> \(l.peerEnd)"
        }
        return [
            line("instances added", addedInstances), line("instances removed", removedInstances),
            line("instances whose admission changed (applies to the next attach)", changedInstances),
            line("links added", addedLinks.map(link)), line("links removed", removedLinks.map(link)),
            line("services added", addedServices.map(\.name)), line("services removed", removedServices.map(\.name)),
            line("peer hosts added", addedPeers.map(\.host.name)), line("peer hosts removed", removedPeers.map(\.host.name)),
        ].compactMap { $0 } + pendingRestart.map { "pending restart: \($0)" }
    }

    // MARK: Signatures (everything but where it was declared)

    private static func admission(_ i: ResolvedInstance) -> String {
        "\(i.instance.uid.map(String.init) ?? "-")|\(i.instance.gid.map(String.init) ?? "-")|\(i.instance.tokenFile ?? "-")"
    }

    /// A link as this host carries it: its ends (in name order, each with the ring it reads
    /// where that ring is this host's), its size limit, where the far end is, its session.
    static func signature(_ l: ResolvedLink) -> String {
        switch l.kind {
        case .local:
            let ends = [(l.localEnd, l.ringSizeToLocal.bytes), (l.peerEnd, l.ringSizeToPeer.bytes)].sorted { $0.0 < $1.0 }
            return "local|\(ends[0].0)|\(ends[0].1)|\(ends[1].0)|\(ends[1].1)|\(l.maxMessageSize.bytes)"
        case .remote(let host):
            return "remote|\(host)|\(l.localEnd)|\(l.ringSizeToLocal.bytes)|\(l.peerEnd)|\(l.maxMessageSize.bytes)|\(l.session)"
        }
    }

    static func signature(_ s: Service) -> String {
        let listen = s.listen.map { "\($0.host)/\($0.address)/\($0.port)" }.joined(separator: ",")
        return "\(s.name)|\(s.proto.rawValue)|\(s.server.host)/\(s.server.address)/\(s.server.port)|\(listen)|\(s.idleTimeoutMilliseconds)"
    }

    /// What the channels to a peer are made with, by setting name.
    static func channelSettings(of p: PeerHost) -> [String: String] {
        ["address": p.host.address, "port": "\(p.host.port)", "transport": p.host.transport.rawValue,
         "nat": p.host.nat.rawValue, "channels": "\(p.channels)", "key": p.host.key?.description ?? "none",
         "security": p.security.rawValue, "rdma_device": p.host.rdmaDevice ?? "any"]
    }

    /// Settings of this host and the cluster that the agent reads only when it starts.
    static func ownSettings(_ v: HostView, _ t: Topology) -> [String: String] {
        let d = t.defaults
        return [
            "cluster": t.cluster, "address": v.host.address, "port": "\(v.host.port)", "transport": v.host.transport.rawValue,
            "nat": v.host.nat.rawValue, "key": v.host.key?.description ?? "none", "key_file": v.host.keyFile ?? "default",
            "rdma_device": v.host.rdmaDevice ?? "any", "control_socket": v.host.controlSocket ?? "default",
            "metrics_listen": v.host.metricsListen ?? "off", "agent_poll_us": "\(v.host.agentPollMicroseconds)",
            "heartbeat_interval_ms": "\(d.heartbeatIntervalMilliseconds)", "peer_timeout_ms": "\(d.peerTimeoutMilliseconds)",
            "rekey_after": "\(d.rekeyAfter)", "rekey_interval_s": "\(d.rekeyIntervalSeconds)",
            "not_responding_ms": "\(d.notRespondingMilliseconds)",
        ]
    }
}
