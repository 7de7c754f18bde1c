import VIOLinux
import VIOWire

/// One client's UDP flow of a datagram service: the datagrams from one client address, and
/// the server's answers, each carried whole in one DATA frame. A flow ends after the service's
/// `idle_timeout_ms` without a datagram either way. UDP may drop, so nothing here waits: a
/// datagram that finds a full socket or channel is dropped and counted.
final class DatagramFlow {
    let service: ProxyService
    /// The far agent's part (nil for a flow relayed on this host).
    let id: ProxySessionID?
    unowned(unsafe) let peer: FabricPeer?
    let channel: Int
    /// Listen side: the client's address (datagrams back go there from the listen socket).
    let client: TCPSocket.Address?
    /// Server side, and local flows: a socket connected to the real server.
    var server: UDPSocket?
    var serverRegistration: Registration?
    /// The far agent accepted the flow: datagrams go at once.
    var accepted = false
    /// Datagrams from the client before the far agent accepted (a few, then dropped).
    var pending: [[UInt8]] = []
    var lastActive: UInt64
    var isOpen = true

    /// Datagrams held per flow while its start is answered.
    static let pendingLimit = 16

    /// Whether this agent times the flow out: the side that knows the client (the listen
    /// side, local flows included); a remote flow's server side ends with it.
    var expiresHere: Bool { client != nil }

    /// When the flow has been idle for its service's `idle_timeout_ms`.
    var expiry: UInt64 { lastActive &+ UInt64(service.declared.idleTimeoutMilliseconds) * 1_000_000 }

    init(service: ProxyService, id: ProxySessionID?, peer: FabricPeer?, channel: Int, client: TCPSocket.Address?, now: UInt64) {
        self.service = service
        self.id = id
        self.peer = peer
        self.channel = channel
        self.client = client
        lastActive = now
    }
}

extension ProxyManager {
    /// Largest datagram carried (UDP's own limit over IPv4).
    static let maximumDatagram = 65_507

    /// Datagrams from clients on a service's listen socket.
    func receiveDatagrams(of service: ProxyService) {
        let now = clock()
        let buffer = UnsafeMutableRawBufferPointer(rebasing: scratch[..<min(scratch.count, Self.maximumDatagram)])
        for _ in 0..<Self.acceptBatch {
            var from = TCPSocket.Address()
            let received: Int?
            do { received = try service.datagramListener?.receive(into: buffer, from: &from) } catch { return }
            guard let n = received else { return }
            let datagram = UnsafeRawBufferPointer(rebasing: buffer[..<n])
            let flow = service.flowsByClient[from] ?? startFlow(service, client: from, now: now)
            guard let flow else {
                service.datagramsDropped &+= 1
                continue
            }
            flow.lastActive = now
            service.bytesToServer &+= UInt64(n)
            if flow.id == nil {
                if (try? flow.server?.send(datagram)) != true { service.datagramsDropped &+= 1 }
            } else if flow.accepted {
                sendDatagram(datagram, on: flow)
            } else if flow.pending.count < DatagramFlow.pendingLimit {
                flow.pending.append(Array(datagram))
            } else {
                service.datagramsDropped &+= 1
            }
        }
    }

    /// A new client address: a flow relayed here, or a session to the server's host. Nil (the
    /// datagram dropped, the flow refused) when the server or its host is down.
    private func startFlow(_ service: ProxyService, client: TCPSocket.Address, now: UInt64) -> DatagramFlow? {
        if let address = service.serverAddress {
            let flow = DatagramFlow(service: service, id: nil, peer: nil, channel: 0, client: client, now: now)
            guard connectFlow(flow, to: address) else { return nil }
            flow.accepted = true
            register(flow)
            return flow
        }
        guard let fabric, let peer = fabric.channels.peers[service.serverHost], peer.isUp else {
            service.refused &+= 1
            return nil
        }
        if case .down = service.health {
            service.refused &+= 1
            return nil
        }
        let id = allocateID(for: peer)
        let channel = FabricPeer.channelIndex(session: id.rawValue, channels: peer.channelCount)
        guard let slot = peer.readySlot(channel) else { return nil }
        let flow = DatagramFlow(service: service, id: id, peer: peer, channel: channel, client: client, now: now)
        flows[ProxyKey(peer, id.rawValue)] = flow
        register(flow)
        let open = ProxyOpen(service: service.name, window: UInt32(ProxyStream.window), client: "\(client)")
        fabric.send(FrameHeader(type: .session, flags: .start, session: id.rawValue), open.encoded(), on: slot)
        return flow
    }

    private func register(_ flow: DatagramFlow) {
        allFlows[ObjectIdentifier(flow)] = flow
        if let client = flow.client { flow.service.flowsByClient[client] = flow }
        flow.service.connectionsOpen &+= 1
        flow.service.connectionsTotal &+= 1
        schedule(flow.expiry)
    }

    /// A socket connected to the server, watched for its answers.
    private func connectFlow(_ flow: DatagramFlow, to address: TCPSocket.Address) -> Bool {
        do {
            let socket = try UDPSocket.connected(to: address)
            flow.serverRegistration = try loop.register(socket.fd.rawValue) { [unowned self] _ in self.serverDatagrams(flow) }
            flow.server = consume socket
            return true
        } catch {
            logger.info("proxied flow refused", metadata: ["service": "\(flow.service.name)", "reason": "\(error)"])
            flow.service.refused &+= 1
            return false
        }
    }

    /// SESSION start of a UDP service from the client's host: a socket to the server, and the
    /// acceptance at once (a UDP socket connects without asking anyone).
    func openFlow(_ remote: ProxyStream.Remote, _ service: ProxyService, _ address: TCPSocket.Address, client: String) {
        let flow = DatagramFlow(service: service, id: remote.id, peer: remote.peer, channel: remote.channel, client: nil, now: clock())
        guard connectFlow(flow, to: address) else {
            sendReset(remote, .refused, "'\(view.host.name)' cannot reach the server of '\(service.name)' at \(address)")
            return
        }
        flow.accepted = true
        flows[ProxyKey(remote.peer, remote.id.rawValue)] = flow
        register(flow)
        if let fabric, let slot = remote.peer.readySlot(remote.channel) {
            let accept = ProxyOpen(service: service.name, window: UInt32(ProxyStream.window), client: "")
            fabric.send(FrameHeader(type: .acknowledgement, flags: .start, session: remote.id.rawValue), accept.encoded(), on: slot)
        }
    }

    /// Answers from the server: back to the client (local flow) or to the far agent.
    private func serverDatagrams(_ flow: DatagramFlow) {
        guard flow.isOpen else { return }
        let buffer = UnsafeMutableRawBufferPointer(rebasing: scratch[..<min(scratch.count, Self.maximumDatagram)])
        for _ in 0..<Self.acceptBatch {
            let received: Int?
            do { received = try flow.server?.receive(into: buffer) } catch {
                // An ICMP "port unreachable" surfaces here: the server is not there (now).
                if flow.id == nil { endFlow(flow, tellPeer: false) } else { endFlow(flow, tellPeer: true, why: "server: \(error.errno)") }
                return
            }
            guard let n = received else { return }
            let datagram = UnsafeRawBufferPointer(rebasing: buffer[..<n])
            flow.lastActive = clock()
            flow.service.bytesToClients &+= UInt64(n)
            if flow.id == nil {
                if let client = flow.client, (try? flow.service.datagramListener?.send(datagram, to: client)) != true {
                    flow.service.datagramsDropped &+= 1
                }
            } else {
                sendDatagram(datagram, on: flow)
            }
        }
    }

    /// One datagram in one DATA frame, or dropped when the channel is backed up.
    private func sendDatagram(_ datagram: UnsafeRawBufferPointer, on flow: DatagramFlow) {
        guard let fabric, let id = flow.id, let peer = flow.peer, let slot = peer.readySlot(flow.channel),
              slot.channel.queuedBytes < Fabric.outputHighWater, datagram.count <= slot.frameLimit else {
            flow.service.datagramsDropped &+= 1
            return
        }
        fabric.send(FrameHeader(type: .data, session: id.rawValue), payload: datagram, on: slot)
    }

    /// A frame of a flow from the far agent.
    func flowFrame(_ flow: DatagramFlow, _ header: FrameHeader, _ payload: UnsafeRawBufferPointer, from peer: FabricPeer) {
        guard flow.peer === peer else { return }
        switch header.type {
        case .data:
            guard flow.accepted else { return endFlow(flow, tellPeer: true, why: "a datagram before the flow was accepted") }
            flow.lastActive = clock()
            let sent: Bool
            if let client = flow.client {
                flow.service.bytesToClients &+= UInt64(payload.count)
                sent = (try? flow.service.datagramListener?.send(payload, to: client)) == true
            } else {
                flow.service.bytesToServer &+= UInt64(payload.count)
                sent = (try? flow.server?.send(payload)) == true
            }
            if !sent { flow.service.datagramsDropped &+= 1 }
        case .acknowledgement where header.flags.contains(.start):
            guard !flow.accepted else { return }
            flow.accepted = true
            for datagram in flow.pending { datagram.withUnsafeBytes { sendDatagram($0, on: flow) } }
            flow.pending = []
        case .session where header.flags.contains(.reset):
            if !flow.accepted {
                flow.service.refused &+= 1
                let reason = (try? SessionReset(decoding: Array(payload))).map { DisplaySafe.escape($0.message) } ?? "no reason given"
                logger.info("proxied flow refused", metadata: ["service": "\(flow.service.name)", "reason": "\(reason)"])
            }
            endFlow(flow, tellPeer: false)
        default:
            break
        }
    }

    /// Ends a flow here, telling the far agent unless it ended it.
    func endFlow(_ flow: DatagramFlow, tellPeer: Bool, why: String = "") {
        guard flow.isOpen else { return }
        flow.isOpen = false
        if let registration = flow.serverRegistration { loop.unregister(registration) }
        flow.serverRegistration = nil
        flow.server = nil
        if let id = flow.id {
            if tellPeer, let peer = flow.peer {
                sendReset(ProxyStream.Remote(id: id, peer: peer, channel: flow.channel, sendCredit: 0), .closed, "'\(view.host.name)' ended the flow: \(why)")
            }
            if let peer = flow.peer, flows[ProxyKey(peer, id.rawValue)] === flow { flows[ProxyKey(peer, id.rawValue)] = nil }
        }
        if let client = flow.client, flow.service.flowsByClient[client] === flow { flow.service.flowsByClient[client] = nil }
        allFlows[ObjectIdentifier(flow)] = nil
        flow.service.connectionsOpen &-= 1
    }

    /// Flows idle past their service's timeout end (``DatagramFlow/expiresHere``). A flow may
    /// have been stamped during this turn, after `now` was read: its expiry is then later.
    func expireFlows(_ now: UInt64) {
        for flow in allFlows.values where flow.expiresHere && flow.expiry <= now {
            endFlow(flow, tellPeer: true, why: "idle for \(flow.service.declared.idleTimeoutMilliseconds) ms")
        }
    }

    /// When the next flow may expire.
    var nextFlowExpiry: UInt64 {
        allFlows.values.lazy.filter(\.expiresHere).map(\.expiry).min() ?? .max
    }
}
