import VIOSharedMemory
import VIOTopology
import VIOTransport
import VIOWire

extension Fabric {
    /// The reason every link, session and connection a reload ends carries.
    static let removedReason = "removed from the topology"

    /// Applies a reload (``TopologyChange``): links it removes close at both ends with the
    /// reason, peer hosts it removes lose their channels, added ones are dialed or accepted
    /// (`transport` gives each its transport). Links and channels nothing changed keep flowing.
    func reload(to newView: HostView, topology newTopology: Topology, change: TopologyChange,
                transport: (PeerHost) -> (transport: any FabricTransport, reason: String)) {
        for declared in change.removedLinks {
            guard case .remote(let host) = declared.kind, let peer = channels.peers[host] else { continue }
            sessions.remove(declared, peer: peer, "the link '\(declared.localEnd)' <-> '\(declared.peerEnd)' was \(Self.removedReason) of host '\(view.host.name)'")
        }
        view = newView
        topology = newTopology
        // Sessions declared again are no longer "removed".
        sessions.removed = sessions.removed.filter { r in !view.links.contains { $0.session == r.session && $0.kind == .remote(host: r.peer) } }
        for removed in change.removedPeers {
            channels.removePeer(removed.host.name, reason: "host '\(removed.host.name)' was \(Self.removedReason) of '\(view.host.name)'")
        }
        for added in change.addedPeers {
            let (carrier, reason) = transport(added)
            channels.add(added, of: view.host.name, topology: topology, transport: carrier, reason: reason, logger: logger)
        }
        // Every peer hears what this host now declares with it (and compares again).
        for peer in channels.peers.values where peer.isUp {
            sendDeclarations(to: peer)
            if let theirs = peer.declarations { compareDeclarations(theirs, from: peer) }
        }
    }
}

extension SessionManager {
    /// A reload removed `declared` (a link to `peer`): its open session closes at both ends
    /// (the far agent hears `message` in a reset), an open or start waiting for it is refused,
    /// and frames still in flight for it are dropped quietly.
    func remove(_ declared: ResolvedLink, peer: FabricPeer, _ message: String) {
        removed.insert(RemovedSession(peer: peer.name, session: declared.session))
        for pending in waitingForHost where pending.link.session == declared.session && pending.link.kind == declared.kind {
            fabric.delegate?.fabricRefuse(requestID: pending.requestID, of: pending.instance, ControlError(.undeclaredLink, message))
        }
        waitingForHost.removeAll { $0.link.session == declared.session && $0.link.kind == declared.kind }
        for start in waitingForInstance where start.session == declared.session && start.peer == peer.name {
            reset(session: start.session, declared: declared, peer: peer, .removed, message)
        }
        waitingForInstance.removeAll { $0.session == declared.session && $0.peer == peer.name }
        guard let link = links[peer.number, declared.session] else { return }
        if let (requestID, _) = link.openRequest {
            fabric.delegate?.fabricRefuse(requestID: requestID, of: link.instance, ControlError(.undeclaredLink, message))
        }
        link.finish(LinkStateWord(kind: .removed, end: 1))
        sendReset(link, .removed, message)
        unregister(link)
        fabric.logger.notice("link closed: \(Fabric.removedReason)", metadata: ["link": "\(link.instance) <-> \(link.peer)@\(link.peerHost)"])
    }
}

// MARK: Declarations: where two hosts' files differ

extension Fabric {
    /// Differences kept per peer for status, at most.
    static let differencesShown = 50

    /// What this host's topology declares between it and `peer`.
    func declarations(with peer: String) -> PairDeclarations {
        let links = view.links.filter { $0.kind == .remote(host: peer) }
            .map { PairDeclarations.Link($0.localEnd, $0.peerEnd, maxMessageSize: UInt64($0.maxMessageSize.bytes)) }
        let services = view.services.filter { s in
            (s.server.host == view.host.name && s.listen.contains { $0.host == peer })
                || (s.server.host == peer && s.listen.contains { $0.host == view.host.name })
        }.map { (name: $0.name, digest: TopologyFingerprint.of([TopologyChange.signature($0)])) }
        return PairDeclarations(links: links.sorted { ($0.ends.0, $0.ends.1) < ($1.ends.0, $1.ends.1) }, services: services)
    }

    /// Tells `peer` what this host declares with it (when the pair comes up and after a
    /// reload). A list too large for one frame is not sent; the far agent then reports nothing.
    func sendDeclarations(to peer: FabricPeer) {
        guard let slot = peer.readySlot(0) else { return }
        let payload = declarations(with: peer.name).encoded()
        guard payload.count <= slot.frameLimit else {
            logger.warning("declarations not sent: more than one frame carries", metadata: ["peer": "\(peer.name)", "bytes": "\(payload.count)"])
            return
        }
        send(FrameHeader(type: .declarations), payload, on: slot)
    }

    /// Compares what `peer` declares with what this host does and keeps the differences for
    /// status; logs them when they change.
    func compareDeclarations(_ theirs: PairDeclarations, from peer: FabricPeer) {
        peer.declarations = theirs
        let mine = declarations(with: peer.name)
        var differences: [String] = []
        func key(_ l: PairDeclarations.Link) -> String { "\(l.ends.0)\u{0}\(l.ends.1)" }
        let theirLinks = Dictionary(theirs.links.map { (key($0), $0) }, uniquingKeysWith: { a, _ in a })
        let myLinks = Dictionary(mine.links.map { (key($0), $0) }, uniquingKeysWith: { a, _ in a })
        for l in mine.links {
            guard let other = theirLinks[key(l)] else {
                differences.append("link '\(l.ends.0)' <-> '\(l.ends.1)' is declared here, not on '\(peer.name)'")
                continue
            }
            if other.maxMessageSize != l.maxMessageSize {
                differences.append("link '\(l.ends.0)' <-> '\(l.ends.1)': max_message_size \(l.maxMessageSize) bytes here, \(other.maxMessageSize) on '\(peer.name)'")
            }
        }
        for l in theirs.links where myLinks[key(l)] == nil {
            differences.append("link '\(l.ends.0)' <-> '\(l.ends.1)' is declared on '\(peer.name)', not here")
        }
        let theirServices = Dictionary(theirs.services.map { ($0.name, $0.digest) }, uniquingKeysWith: { a, _ in a })
        let myServices = Dictionary(mine.services.map { ($0.name, $0.digest) }, uniquingKeysWith: { a, _ in a })
        for s in mine.services {
            guard let digest = theirServices[s.name] else {
                differences.append("service '\(s.name)' is declared here, not on '\(peer.name)'")
                continue
            }
            if digest != s.digest { differences.append("service '\(s.name)' is declared differently here and on '\(peer.name)'") }
        }
        for s in theirs.services where myServices[s.name] == nil {
            differences.append("service '\(s.name)' is declared on '\(peer.name)', not here")
        }
        // Names come from the far agent: escaped; and a status must fit one control message.
        differences = differences.map { DisplaySafe.escape($0) }
        if differences.count > Self.differencesShown {
            let more = differences.count - Self.differencesShown
            differences = Array(differences.prefix(Self.differencesShown)) + ["... and \(more) more"]
        }
        guard differences != peer.differences else { return }
        peer.differences = differences
        if differences.isEmpty {
            logger.notice("topology agrees with the peer's again", metadata: ["peer": "\(peer.name)"])
        } else {
            logger.warning("topology differs from the peer's", metadata: ["peer": "\(peer.name)", "differences": "\(differences.joined(separator: "; "))"])
        }
    }
}
