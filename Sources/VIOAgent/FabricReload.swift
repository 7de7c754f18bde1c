import VIOSharedMemory
import VIOTopology
import VIOTransport
import VIOWire

extension Fabric {
    /// The reason every link, session and connection a reload ends carries.
    static let removedReason = "removed from the topology"

    /// Applies a reload (``TopologyChange``): links it removes close at both ends with the
    /// reason, peer hosts it removes lose their channels, added ones are dialed or accepted
    /// (`transport` gives each its transport; nil: it cannot be carried until a restart).
    /// Links and channels nothing changed keep flowing. Returns what could not be applied.
    func reload(to newView: HostView, topology newTopology: Topology, change: TopologyChange,
                transport: (PeerHost) -> (transport: any FabricTransport, reason: String)?) -> [String] {
        var problems: [String] = []
        for declared in change.removedLinks {
            guard case .remote(let host) = declared.kind, let peer = channels.peers[host] else { continue }
            sessions.remove(declared, peer: peer, "the link '\(declared.localEnd)' <-> '\(declared.peerEnd)' was \(Self.removedReason) of host '\(view.host.name)'")
        }
        view = newView
        topology = newTopology
        for removed in change.removedPeers {
            channels.removePeer(removed.host.name, reason: "host '\(removed.host.name)' was \(Self.removedReason) of '\(view.host.name)'")
        }
        for added in change.addedPeers {
            guard let (carrier, reason) = transport(added) else {
                problems.append("host '\(added.host.name)': its channels need a transport this agent did not start with; restart the agent to reach it")
                continue
            }
            channels.add(added, of: view.host.name, topology: topology, transport: carrier, reason: reason, logger: logger)
        }
        return problems
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
