import Logging
import SystemPackage
import VIOLinux
import VIOTopology
import VIOTransport
import VIOWire

/// Proxy mode: unmodified TCP clients and servers carried over the fabric. For each service
/// with an end on this host, the agent listens where its clients connect; each accepted
/// connection becomes a session of its own to the server's host (multiplexed on the same
/// channels as the links, with its own credit), whose agent connects to the real server and
/// pumps bytes both ways. A service whose client and server are both here is relayed between
/// two sockets by this agent alone.
///
/// The agents tell each other which servers are up (SERVICE_UPDATE), so a client of a
/// server known to be down is refused at once. Runs on the agent's thread.
final class ProxyManager {
    /// How long a connect to a server may take before the client is reset.
    static let connectTimeoutNanoseconds: UInt64 = 5_000_000_000
    /// How often a server known to be down (or not known yet) is checked.
    static let probeIntervalNanoseconds: UInt64 = 1_000_000_000
    /// Bytes one connection may read per event, so one busy connection cannot hold the turn.
    static let readBudget = 256 * 1024
    /// Connections accepted per listener event.
    static let acceptBatch = 128

    /// This host's share of the topology (replaced by a reload).
    var view: HostView
    let loop: EventLoop
    let logger: Logger
    /// The fabric, for services whose server is on another host (nil on a host without peers).
    weak var fabric: Fabric?
    /// Monotonic nanoseconds.
    let clock: () -> UInt64
    /// The services with an end on this host, in topology order.
    private(set) var services: [ProxyService] = []
    private var byName: [String: ProxyService] = [:]
    /// Connections carried to or from other hosts, by session id.
    var sessions: [ProxyKey: ProxyStream] = [:]
    /// UDP flows carried to or from other hosts, by peer and session id (ProxyManager+Datagrams).
    var flows: [ProxyKey: DatagramFlow] = [:]
    /// Client connections whose start the far agent has not answered, for their deadlines.
    private var awaitingAcceptance: [ProxyStream] = []
    /// Both sockets of each connection relayed on this host.
    private var localStreams: [ObjectIdentifier: ProxyStream] = [:]
    /// Every UDP flow, remote or local, for idle expiry and shutdown.
    var allFlows: [ObjectIdentifier: DatagramFlow] = [:]
    /// Streams connecting to a server (both remote and local), for their deadlines.
    private var connecting: [ProxyStream] = []
    /// Next session id per peer host.
    private var nextID: [String: ProxySessionID] = [:]
    /// Where sockets are read into before their bytes are framed or relayed.
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    private var updateSequence: UInt32 = 0

    /// Listens for every service's clients on this host; throws (the agent does not start)
    /// when a listen address cannot be bound or a server address does not resolve.
    init(view: HostView, loop: EventLoop, logger: Logger, clock: @escaping () -> UInt64 = MonotonicClock.nanoseconds) throws(AgentError) {
        self.view = view
        self.loop = loop
        self.logger = logger
        self.clock = clock
        do {
            for declared in view.services { try add(declared) }
        } catch {
            // Nothing registered may outlive a manager that failed to start.
            for service in services { remove(service.name, reason: "the proxy could not start") }
            throw error
        }
    }

    /// Starts serving `declared`: listens where its clients connect on this host and, when its
    /// server is here, starts checking it. Throws when the listen address cannot be bound or
    /// the server address does not resolve (nothing of the service is left behind).
    func add(_ declared: Service) throws(AgentError) {
        var serverAddress: TCPSocket.Address?
        if declared.server.host == view.host.name {
            do { serverAddress = try TCPSocket.resolve(declared.server.address, port: declared.server.port) } catch {
                throw .system(error, doing: "service '\(declared.name)' (\(declared.server.location)): cannot resolve its server address")
            }
        }
        let service = ProxyService(declared: declared, host: view.host.name, serverAddress: serverAddress)
        if let endpoint = service.listenEndpoint, declared.proto == .udp {
            do {
                let socket = try UDPSocket.bound(to: TCPSocket.resolve(endpoint.address, port: endpoint.port))
                service.datagramRegistration = try loop.register(socket.fd.rawValue) { [unowned self] _ in self.receiveDatagrams(of: service) }
                service.datagramListener = consume socket
            } catch {
                throw .system(error, doing: "cannot take datagrams for service '\(declared.name)' on \(endpoint.address):\(endpoint.port) (\(endpoint.location)); is the port taken or the address not on this host?")
            }
        } else if let endpoint = service.listenEndpoint {
            do {
                let socket = try TCPSocket.listen(on: TCPSocket.resolve(endpoint.address, port: endpoint.port), backlog: 4096)
                try socket.fd.setNonBlocking()
                service.listenRegistration = try loop.register(socket.fd.rawValue) { [unowned self] _ in self.acceptClients(of: service) }
                service.listener = consume socket
            } catch {
                throw .system(error, doing: "cannot listen for clients of service '\(declared.name)' on \(endpoint.address):\(endpoint.port) (\(endpoint.location)); is the port taken or the address not on this host?")
            }
        }
        services.append(service)
        byName[declared.name] = service
        // A UDP server answers no connect: its state is not probed (it is taken as up).
        if service.isServedHere {
            if declared.proto == .tcp { startProbe(service, now: clock()) } else { service.health = .up }
        }
    }

    /// Stops serving service `name` (a reload removed or changed it): its listener closes and
    /// every connection and flow of it is reset, the far agents told `reason`.
    func remove(_ name: String, reason: String) {
        guard let service = byName.removeValue(forKey: name) else { return }
        services.removeAll { $0 === service }
        for registration in [service.listenRegistration, service.datagramRegistration, service.probeRegistration].compactMap({ $0 }) {
            loop.unregister(registration)
        }
        service.listenRegistration = nil; service.datagramRegistration = nil; service.probeRegistration = nil
        service.listener = nil; service.datagramListener = nil; service.probe = nil
        service.probeDeadline = .max
        var seen = Set<ObjectIdentifier>()
        for stream in Array(sessions.values) + connecting + awaitingAcceptance + Array(localStreams.values)
        where stream.service === service && seen.insert(ObjectIdentifier(stream)).inserted {
            if let remote = stream.remote { sendReset(remote, .removed, reason) }
            close(stream, reset: true)
        }
        for flow in Array(allFlows.values) where flow.service === service { endFlow(flow, tellPeer: true, why: reason) }
        logger.notice("service stopped", metadata: ["service": "\(name)", "reason": "\(reason)"])
    }

    deinit { scratch.deallocate() }

    // MARK: Clients

    private func acceptClients(of service: ProxyService) {
        for _ in 0..<Self.acceptBatch {
            var peer = TCPSocket.Address()
            let accepted: TCPSocket?
            do { accepted = try service.listener?.accept(peer: &peer) } catch {
                logger.warning("proxy accept failed", metadata: ["service": "\(service.name)", "error": "\(error)"])
                return
            }
            guard let socket = accepted else { return }
            try? socket.setNoDelay()
            let client = ProxyStream(side: .client, service: service, socket: socket, address: "\(peer)")
            if service.isServedHere {
                connectLocally(client, service)
            } else {
                openRemote(client, service)
            }
        }
    }

    /// Client and server on this host: connect to the server and relay between the two.
    private func connectLocally(_ client: ProxyStream, _ service: ProxyService) {
        guard let address = service.serverAddress else { return }
        let socket: TCPSocket
        do { socket = try TCPSocket.connect(to: address) } catch {
            if Self.meansServerDown(error.errno) { markDown(service, error.errno.description) }
            refuse(client, "cannot connect to the server at \(address): \(error.errno.description)")
            return
        }
        try? socket.setNoDelay()
        let server = ProxyStream(side: .server, service: service, socket: socket, address: "\(address)")
        client.localPartner = server
        server.localPartner = client
        localStreams[ObjectIdentifier(client)] = client
        localStreams[ObjectIdentifier(server)] = server
        guard register(client, writable: false), beginConnect(server) else {
            close(server, reset: true)
            refuse(client, "the agent could not watch the connection")
            return
        }
        countOpened(client)
    }

    /// Server on another host: open a session to its agent; the client's bytes wait in its
    /// socket until the far agent has connected.
    private func openRemote(_ client: ProxyStream, _ service: ProxyService) {
        guard let fabric, let peer = fabric.channels.peers[service.serverHost] else {
            refuse(client, "host '\(service.serverHost)' is not one this agent reaches")
            return
        }
        guard peer.isUp else {
            refuse(client, "host '\(peer.name)' of the server is down (\(peer.lastError.isEmpty ? "not connected yet" : peer.lastError))")
            return
        }
        if case .down(let why) = service.health {
            refuse(client, "the server on '\(peer.name)' is down: \(why)")
            return
        }
        let id = allocateID(for: peer)
        let channel = FabricPeer.channelIndex(session: id.rawValue, channels: peer.channelCount)
        guard let slot = peer.readySlot(channel) else {
            refuse(client, "host '\(peer.name)' of the server is down")
            return
        }
        client.remote = ProxyStream.Remote(id: id, peer: peer, channel: channel, sendCredit: 0)
        guard register(client, writable: false) else {
            refuse(client, "the agent could not watch the connection")
            return
        }
        sessions[ProxyKey(peer, id.rawValue)] = client
        countOpened(client)
        client.acceptDeadline = clock() + Self.connectTimeoutNanoseconds + fabric.peerTimeoutNanoseconds
        awaitingAcceptance.append(client)
        schedule(client.acceptDeadline!)
        settle(client)
        let open = ProxyOpen(service: service.name, window: UInt32(ProxyStream.window), client: client.address)
        fabric.send(FrameHeader(type: .session, flags: .start, session: id.rawValue), open.encoded(), on: slot)
    }

    func allocateID(for peer: FabricPeer) -> ProxySessionID {
        var id = nextID[peer.name] ?? ProxySessionID(serial: 1, openedByDialer: peer.dials)
        while sessions[ProxyKey(peer, id.rawValue)] != nil || flows[ProxyKey(peer, id.rawValue)] != nil { id = id.next }
        nextID[peer.name] = id.next
        return id
    }

    /// Resets a client that cannot be served, with the reason logged.
    private func refuse(_ stream: ProxyStream, _ reason: String) {
        stream.service.refused &+= 1
        logger.info("proxied connection refused", metadata: ["service": "\(stream.service.name)", "client": "\(stream.address)",
                                                            "reason": "\(reason)"])
        close(stream, reset: true)
    }

    // MARK: Server connects

    /// Watches a connect to the server until it completes or its deadline passes.
    private func beginConnect(_ server: ProxyStream) -> Bool {
        server.connectDeadline = clock() + Self.connectTimeoutNanoseconds
        schedule(server.connectDeadline!)
        guard register(server, writable: true) else { return false }
        connecting.append(server)
        return true
    }

    private func finishConnect(_ server: ProxyStream) {
        connecting.removeAll { $0 === server }
        server.connectDeadline = nil
        if let error = server.pendingError() {
            connectFailed(server, "connect to \(server.address) failed: \(error.description)", down: error.description)
            return
        }
        let service = server.service
        markUp(service)
        server.accepted = true
        if let partner = server.localPartner {
            partner.accepted = true
            settle(partner)
        } else if let remote = server.remote, let fabric, let slot = remote.peer.readySlot(remote.channel) {
            let accept = ProxyOpen(service: service.name, window: UInt32(ProxyStream.window), client: "")
            fabric.send(FrameHeader(type: .acknowledgement, flags: .start, session: remote.id.rawValue), accept.encoded(), on: slot)
        }
        settle(server)
    }

    /// The server refused (or did not answer): the client is reset with the reason, and the
    /// service is down until a probe finds it up.
    private func connectFailed(_ server: ProxyStream, _ reason: String, down: String) {
        connecting.removeAll { $0 === server }
        server.connectDeadline = nil
        let service = server.service
        markDown(service, down)
        if let partner = server.localPartner {
            close(server, reset: true)
            refuse(partner, reason)
            return
        }
        if let remote = server.remote {
            service.refused &+= 1
            logger.info("proxied connection refused", metadata: ["service": "\(service.name)", "from": "\(remote.peer.name)",
                                                                "reason": "\(reason)"])
            sendReset(remote, .refused, "'\(view.host.name)': \(reason)")
            close(server, reset: true)
        }
    }

    // MARK: Events

    private func register(_ stream: ProxyStream, writable: Bool) -> Bool {
        do {
            stream.registration = try loop.register(stream.descriptor, writable: writable) { [unowned self] event in
                self.event(stream, event)
            }
            _ = stream.changeWatching(to: (true, writable))
            return true
        } catch {
            logger.warning("proxy: cannot watch a connection", metadata: ["error": "\(error)"])
            return false
        }
    }

    private func event(_ stream: ProxyStream, _ event: Epoll.Event) {
        guard stream.isOpen else { return }
        if stream.connectDeadline != nil {
            if event.writable || event.hangUp { finishConnect(stream) }
            return
        }
        if event.writable {
            guard let n = stream.flush() else {
                fail(stream, "writing to \(stream.address) failed")
                return
            }
            written(stream, n)
            guard stream.isOpen else { return }
        }
        if event.readable || event.hangUp {
            pump(stream)
            guard stream.isOpen else { return }
            if event.hangUp, let error = stream.pendingError() {
                fail(stream, "\(stream.side == .client ? "client" : "server") \(stream.address): \(error.description)")
                return
            }
        }
        settle(stream)
    }

    /// Reads what the partner can take and passes it on; handles end of stream and errors.
    private func pump(_ stream: ProxyStream) {
        let limit = stream.remote.flatMap { $0.peer.readySlot($0.channel)?.frameLimit } ?? scratch.count
        let buffer = UnsafeMutableRawBufferPointer(rebasing: scratch[..<min(scratch.count, limit)])
        let result = stream.read(into: buffer, room: room(for: stream), budget: Self.readBudget) { bytes in
            pass(bytes, from: stream)
        }
        switch result {
        case .ended:
            passEnd(from: stream)
        case .failed(let why):
            fail(stream, "\(stream.side == .client ? "client" : "server") \(stream.address): \(why)")
        case .wouldBlock, .paused:
            break
        }
    }

    /// Bytes the stream may read now: the far agent's credit (while the channel is not backed
    /// up), or the room in the local partner's buffer.
    private func room(for stream: ProxyStream) -> Int {
        if let remote = stream.remote {
            guard let slot = remote.peer.readySlot(remote.channel) else { return 0 }
            if slot.channel.queuedBytes >= Fabric.outputHighWater {
                if !stream.waitingForChannel {
                    stream.waitingForChannel = true
                    slot.waitingStreams.append(stream)
                }
                return 0
            }
            return remote.sendCredit
        }
        if let partner = stream.localPartner, partner.isOpen { return ProxyStream.window - partner.buffered }
        return 0
    }

    private func pass(_ bytes: UnsafeRawBufferPointer, from stream: ProxyStream) {
        count(bytes.count, from: stream.side, service: stream.service)
        if let remote = stream.remote {
            guard let fabric, let slot = remote.peer.readySlot(remote.channel) else { return }
            stream.remote!.sendCredit -= bytes.count
            fabric.send(FrameHeader(type: .data, session: remote.id.rawValue), payload: bytes, on: slot)
        } else if let partner = stream.localPartner {
            guard partner.deliver(bytes) != nil else {
                fail(partner, "writing to \(partner.address) failed")
                return
            }
            settle(partner)
        }
    }

    private func passEnd(from stream: ProxyStream) {
        if let remote = stream.remote {
            if let fabric, let slot = remote.peer.readySlot(remote.channel) {
                fabric.send(FrameHeader(type: .session, flags: .dataEnd, session: remote.id.rawValue), on: slot)
            }
        } else if let partner = stream.localPartner {
            partner.partnerEnd()
            finishIfDone(partner)
            if partner.isOpen { settle(partner) }
        }
        finishIfDone(stream)
    }

    /// The socket took `n` bytes from its buffer or from a frame: the partner may send more.
    private func written(_ stream: ProxyStream, _ n: Int) {
        if n > 0 {
            if var remote = stream.remote {
                remote.ungranted += n
                if remote.ungranted >= ProxyStream.window / 4, let fabric, let slot = remote.peer.readySlot(remote.channel) {
                    fabric.send(FrameHeader(type: .acknowledgement, session: remote.id.rawValue, credit: UInt32(remote.ungranted)), on: slot)
                    remote.ungranted = 0
                }
                stream.remote = remote
            } else if let partner = stream.localPartner, partner.isOpen {
                settle(partner)
            }
        }
        finishIfDone(stream)
    }


    /// Watches what the stream needs now.
    private func settle(_ stream: ProxyStream) {
        guard stream.isOpen, let registration = stream.registration else { return }
        let wanted = stream.wanted(room: room(for: stream))
        if stream.changeWatching(to: wanted) {
            try? loop.watch(registration, readable: wanted.readable, writable: wanted.writable)
        }
    }

    /// The channel `slot` drained: streams that waited for it read again.
    func channelDrained(_ slot: ChannelSlot) {
        let waiting = slot.waitingStreams
        slot.waitingStreams.removeAll()
        for stream in waiting {
            stream.waitingForChannel = false
            settle(stream)
        }
    }

    // MARK: Ends

    private func finishIfDone(_ stream: ProxyStream) {
        guard stream.isOpen, stream.isFinished else { return }
        close(stream, reset: false)
    }

    /// The connection is lost at this end: it is reset here and at the partner.
    private func fail(_ stream: ProxyStream, _ reason: String) {
        guard stream.isOpen else { return }
        logger.info("proxied connection reset", metadata: ["service": "\(stream.service.name)", "reason": "\(reason)"])
        stream.service.resets &+= 1
        if let remote = stream.remote {
            sendReset(remote, .gone, "'\(view.host.name)': \(reason)")
        }
        let partner = stream.localPartner
        close(stream, reset: true)
        if let partner, partner.isOpen { close(partner, reset: true) }
    }

    func sendReset(_ remote: ProxyStream.Remote, _ reason: SessionReset.Reason, _ message: String) {
        guard let fabric, let slot = remote.peer.readySlot(remote.channel) else { return }
        fabric.send(FrameHeader(type: .session, flags: .reset, session: remote.id.rawValue),
                    SessionReset(reason, String(message.prefix(1024))).encoded(), on: slot)
    }

    /// Closes the socket (with a reset if asked) and forgets the stream.
    private func close(_ stream: ProxyStream, reset: Bool) {
        guard stream.isOpen else { return }
        if let registration = stream.registration { loop.unregister(registration) }
        stream.registration = nil
        if reset { stream.reset() } else { stream.close() }
        if stream.connectDeadline != nil {
            connecting.removeAll { $0 === stream }
            stream.connectDeadline = nil
        }
        if let remote = stream.remote, sessions[ProxyKey(remote.peer, remote.id.rawValue)] === stream {
            sessions[ProxyKey(remote.peer, remote.id.rawValue)] = nil
        }
        if stream.localPartner != nil { localStreams[ObjectIdentifier(stream)] = nil }
        if stream.acceptDeadline != nil {
            stream.acceptDeadline = nil
            awaitingAcceptance.removeAll { $0 === stream }
        }
        if stream.counted {
            stream.counted = false
            stream.service.connectionsOpen &-= 1
        }
        // Once both ends of a local pair closed, neither holds the other.
        if let partner = stream.localPartner, !partner.isOpen {
            partner.localPartner = nil
            stream.localPartner = nil
        }
    }

    /// `stream` stands for a connection in its service's counters until it closes.
    private func countOpened(_ stream: ProxyStream) {
        stream.counted = true
        stream.service.connectionsOpen &+= 1
        stream.service.connectionsTotal &+= 1
    }

    // MARK: Frames from the far agent

    /// A DATA, ACK or SESSION frame of a proxied connection from `peer`.
    func frame(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, from peer: FabricPeer, on slot: ChannelSlot) throws(ProtocolViolation) {
        if header.type == .session && header.flags.contains(.start) {
            return try open(header, Array(payload), from: peer)
        }
        let key = ProxyKey(peer, header.session)
        if let flow = flows[key] { return flowFrame(flow, header, payload, from: peer) }
        // A connection closed here may still get frames the far agent sent before it knew.
        guard let stream = sessions[key], let remote = stream.remote else { return }
        switch header.type {
        case .data:
            guard stream.accepted, !stream.partnerEnded else {
                return violated(stream, "data on proxied connection \(remote.id) \(stream.accepted ? "after its end" : "before it was accepted")")
            }
            count(payload.count, from: stream.side == .client ? .server : .client, service: stream.service)
            guard let n = stream.deliver(payload) else {
                fail(stream, "writing to \(stream.side == .client ? "client" : "server") \(stream.address) failed")
                return
            }
            guard stream.buffered <= ProxyStream.window else {
                return violated(stream, "proxied connection \(remote.id) sent beyond its credit")
            }
            written(stream, n)
            settle(stream)
        case .acknowledgement:
            if header.flags.contains(.start) {
                guard stream.side == .client, !stream.accepted else { return violated(stream, "proxied connection \(remote.id) accepted twice") }
                let accept: ProxyOpen
                do { accept = try ProxyOpen(decoding: Array(payload)) } catch {
                    return violated(stream, "malformed acceptance of proxied connection \(remote.id): \(error)")
                }
                stream.remote!.sendCredit = Int(accept.window)
                stream.accepted = true
                stream.acceptDeadline = nil
                awaitingAcceptance.removeAll { $0 === stream }
                markUp(stream.service)
            } else {
                stream.remote!.sendCredit += Int(header.credit)
                guard stream.remote!.sendCredit <= 1 << 25 else {
                    return violated(stream, "proxied connection \(remote.id) granted credit beyond any window")
                }
            }
            settle(stream)
        case .session:
            if header.flags.contains(.reset) {
                let reset = try? SessionReset(decoding: Array(payload))
                let message = reset.map { DisplaySafe.escape($0.message) } ?? "no reason given"
                if !stream.accepted {
                    refuse(stream, message)
                } else {
                    logger.info("proxied connection reset", metadata: ["service": "\(stream.service.name)",
                                                                      "by": "\(peer.name)", "reason": "\(message)"])
                    stream.service.resets &+= 1
                    close(stream, reset: true)
                }
            } else if header.flags.contains(.dataEnd) {
                stream.partnerEnd()
                finishIfDone(stream)
                settle(stream)
            }
        default:
            break
        }
    }

    /// Bytes that came from `side`'s socket (or, for a frame, travel towards the other side).
    private func count(_ n: Int, from side: ProxyStream.Side, service: ProxyService) {
        if side == .client { service.bytesToServer &+= UInt64(n) } else { service.bytesToClients &+= UInt64(n) }
    }

    /// The far agent broke one connection's protocol: that connection is reset at both ends.
    private func violated(_ stream: ProxyStream, _ why: String) {
        logger.warning("proxied connection ended: the far agent broke its protocol", metadata: ["reason": "\(why)"])
        fail(stream, why)
    }

    /// SESSION start from the agent where a client connected: connect to the server here.
    private func open(_ header: FrameHeader, _ payload: [UInt8], from peer: FabricPeer) throws(ProtocolViolation) {
        guard let id = ProxySessionID(session: header.session), id.openedByDialer == !peer.dials else {
            throw ProtocolViolation(.frame, "proxied connection \(header.session) is not numbered by '\(peer.name)'")
        }
        let channel = FabricPeer.channelIndex(session: id.rawValue, channels: peer.channelCount)
        var remote = ProxyStream.Remote(id: id, peer: peer, channel: channel, sendCredit: 0)
        let key = ProxyKey(peer, header.session)
        if let old = sessions[key] {
            // The far agent reused an id it still has open: both connections end, with a reset
            // each way (its client hears why rather than waiting).
            logger.warning("proxied connection opened twice", metadata: ["peer": "\(peer.name)", "id": "\(id)"])
            fail(old, "'\(peer.name)' opened proxied connection \(id) twice")
            return
        }
        if let old = flows[key] {
            endFlow(old, tellPeer: true, why: "'\(peer.name)' opened flow \(id) twice")
            return
        }
        let open: ProxyOpen
        do { open = try ProxyOpen(decoding: payload) } catch {
            sendReset(remote, .refused, "'\(view.host.name)' could not read the connection's start: \(error)")
            return
        }
        guard let service = byName[open.service], service.isServedHere,
              service.declared.listen.contains(where: { $0.host == peer.name }), let address = service.serverAddress else {
            sendReset(remote, .refused, "'\(view.host.name)' does not serve '\(DisplaySafe.escape(open.service))' to clients on '\(peer.name)'")
            return
        }
        guard service.declared.proto == .tcp else { return openFlow(remote, service, address, client: open.client) }
        remote.sendCredit = Int(open.window)
        let socket: TCPSocket
        do { socket = try TCPSocket.connect(to: address) } catch {
            if Self.meansServerDown(error.errno) { markDown(service, error.errno.description) }
            service.refused &+= 1
            sendReset(remote, .refused, "'\(view.host.name)': connect to \(address) failed: \(error.errno.description)")
            return
        }
        try? socket.setNoDelay()
        let server = ProxyStream(side: .server, service: service, socket: socket, address: "\(address)")
        server.remote = remote
        guard beginConnect(server) else {
            sendReset(remote, .refused, "'\(view.host.name)' could not watch the connection")
            return
        }
        sessions[key] = server
        countOpened(server)
    }

    // MARK: Hosts

    /// `peer`'s channels are up: it hears the state of the services served here for it.
    func hostUp(_ peer: FabricPeer) {
        sendUpdate(to: peer, services.filter { $0.isServedHere && $0.declared.listen.contains { $0.host == peer.name } })
    }

    /// `peer` went down: every connection carried to it is reset.
    func hostDown(_ peer: FabricPeer, reason: String) {
        for flow in flows.values where flow.peer === peer { endFlow(flow, tellPeer: false) }
        let lost = sessions.values.filter { $0.remote?.peer === peer }
        for stream in lost {
            stream.service.resets &+= 1
            close(stream, reset: true)
        }
        if !lost.isEmpty {
            logger.warning("proxied connections reset: host down", metadata: ["peer": "\(peer.name)", "connections": "\(lost.count)",
                                                                             "reason": "\(reason)"])
        }
    }

    // MARK: Service health

    func markUp(_ service: ProxyService) {
        guard service.health != .up else { return }
        service.health = .up
        guard service.isServedHere else { return }
        logger.info("service up", metadata: ["service": "\(service.name)", "server": "\(ProxyService.describe(service.declared.server))"])
        announce(service)
    }

    func markDown(_ service: ProxyService, _ why: String) {
        if case .down(let old) = service.health, old == why { return }
        let wasDown: Bool = if case .down = service.health { true } else { false }
        service.health = .down(why)
        if service.probe == nil {
            service.probeDeadline = min(service.probeDeadline, clock() + Self.probeIntervalNanoseconds)
            schedule(service.probeDeadline)
        }
        guard service.isServedHere, !wasDown else { return }
        logger.warning("service down", metadata: ["service": "\(service.name)", "server": "\(ProxyService.describe(service.declared.server))",
                                                  "reason": "\(why)"])
        announce(service)
    }

    /// Tells the hosts where the service's clients connect.
    private func announce(_ service: ProxyService) {
        guard let fabric else { return }
        for endpoint in service.declared.listen where endpoint.host != view.host.name {
            if let peer = fabric.channels.peers[endpoint.host], peer.isUp { sendUpdate(to: peer, [service]) }
        }
    }

    private func sendUpdate(to peer: FabricPeer, _ list: [ProxyService]) {
        guard !list.isEmpty, let fabric, let slot = peer.readySlot(0) else { return }
        updateSequence &+= 1
        let update = ServiceUpdate(entries: list.map { s in
            switch s.health {
            case .up: ServiceUpdate.Entry(service: s.name, up: true)
            case .down(let why): ServiceUpdate.Entry(service: s.name, up: false, reason: why)
            case .unknown: ServiceUpdate.Entry(service: s.name, up: true, reason: "not checked yet")
            }
        })
        fabric.send(FrameHeader(type: .serviceUpdate, sequence: updateSequence), update.encoded(), on: slot)
    }

    /// SERVICE_UPDATE from `peer`: the state of the servers it serves for this host.
    func serviceUpdate(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, from peer: FabricPeer, on slot: ChannelSlot) throws(ProtocolViolation) {
        let update: ServiceUpdate
        do { update = try ServiceUpdate(decoding: Array(payload)) } catch {
            throw ProtocolViolation(.frame, "malformed service update: \(error)")
        }
        for entry in update.entries {
            // Only the host that serves a service may say how it is.
            guard let service = byName[entry.service], service.serverHost == peer.name, !service.isServedHere else {
                logger.warning("service update ignored", metadata: ["peer": "\(peer.name)", "service": "\(DisplaySafe.escape(entry.service))",
                                                                    "reason": "not a service '\(peer.name)' serves to this host"])
                continue
            }
            let health: ProxyService.Health = entry.up ? .up : .down(DisplaySafe.escape(String(entry.reason.prefix(512))))
            if health != service.health {
                logger.info("service state", metadata: ["service": "\(service.name)", "state": "\(health.word)",
                                                        "reason": "\(entry.up ? "" : DisplaySafe.escape(entry.reason))"])
            }
            service.health = health
        }
        fabric?.send(FrameHeader(type: .serviceUpdateAck, sequence: header.sequence), on: slot)
    }

    /// Starts a connect that only checks the server is up.
    private func startProbe(_ service: ProxyService, now: UInt64) {
        guard let address = service.serverAddress, service.probe == nil else { return }
        do {
            let socket = try TCPSocket.connect(to: address)
            service.probeRegistration = try loop.register(socket.fd.rawValue, writable: true) { [unowned self] event in
                if event.writable || event.hangUp { self.finishProbe(service) }
            }
            service.probe = consume socket
            service.probeDeadline = now + Self.connectTimeoutNanoseconds
            schedule(service.probeDeadline)
        } catch {
            markDown(service, error.errno.description)
            service.probeDeadline = now + Self.probeIntervalNanoseconds
            schedule(service.probeDeadline)
        }
    }

    private func finishProbe(_ service: ProxyService, timedOut: Bool = false) {
        let error = timedOut ? "no answer in \(Self.connectTimeoutNanoseconds / 1_000_000_000) s" : service.probe?.pendingError()?.description
        if let registration = service.probeRegistration { loop.unregister(registration) }
        service.probeRegistration = nil
        service.probe = nil
        service.probeDeadline = clock() + Self.probeIntervalNanoseconds
        schedule(service.probeDeadline)
        if let error { markDown(service, error) } else { markUp(service) }
    }

    /// Whether a connect's error says the server (or the way to it) is down, rather than that
    /// this host ran short of something (descriptors, buffers, ports): only the former makes
    /// the service down for every client host.
    static func meansServerDown(_ errno: Errno) -> Bool {
        let down: [Errno] = [.connectionRefused, .timedOut, .noRouteToHost, .networkUnreachable, .connectionReset,
                             .connectionAbort, .hostIsDown, .networkDown]
        return down.contains(errno)
    }

    /// The agent is stopping: every proxied connection is reset here (a client must not take
    /// the end of its connection for the end of an answer); the far agents hear of the stop
    /// from the fabric.
    func stop() {
        for stream in Array(sessions.values) + connecting { close(stream, reset: true) }
        for flow in Array(allFlows.values) { endFlow(flow, tellPeer: false) }
        for stream in Array(localStreams.values) { close(stream, reset: true) }
    }

    // MARK: Timers

    /// Connects past their deadline fail; servers down (or not known) are checked again.
    func tick(_ now: UInt64) {
        expireFlows(now)
        for client in awaitingAcceptance where (client.acceptDeadline ?? .max) <= now {
            if let remote = client.remote { sendReset(remote, .cancelled, "'\(view.host.name)' stopped waiting for the server's connect") }
            refuse(client, "the agent of '\(client.remote?.peer.name ?? "?")' did not answer the connection in time")
        }
        for stream in connecting where (stream.connectDeadline ?? .max) <= now {
            connectFailed(stream, "connect to \(stream.address) timed out", down: "no answer to a connect in \(Self.connectTimeoutNanoseconds / 1_000_000_000) s")
        }
        for service in services where service.isServedHere && service.probeDeadline <= now {
            if service.probe != nil {
                finishProbe(service, timedOut: true)
            } else if service.health != .up {
                startProbe(service, now: now)
            } else {
                service.probeDeadline = .max
            }
        }
        nextDeadline = computeNextDeadline()
    }

    /// When ``tick(_:)`` next has work, monotonic nanoseconds: kept rather than computed, as
    /// the agent's loop asks every turn. Anything that sets a deadline lowers it; each tick
    /// recomputes it (a deadline pushed later only makes a tick find nothing to do).
    private(set) var nextDeadline: UInt64 = 0

    /// Makes the loop tick by `deadline`.
    func schedule(_ deadline: UInt64) { nextDeadline = min(nextDeadline, deadline) }

    private func computeNextDeadline() -> UInt64 {
        let connects = min(connecting.lazy.compactMap(\.connectDeadline).min() ?? .max,
                           awaitingAcceptance.lazy.compactMap(\.acceptDeadline).min() ?? .max)
        let probes = services.lazy.filter(\.isServedHere).map(\.probeDeadline).min() ?? .max
        return min(connects, probes, nextFlowExpiry)
    }

    // MARK: Status

    /// Every service with an end here.
    func statuses() -> [AgentStatus.ServiceState] {
        services.map { service in
            var peerDown: String?
            if !service.isServedHere {
                if let peer = fabric?.channels.peers[service.serverHost], !peer.isUp {
                    peerDown = "host '\(peer.name)' is down\(peer.lastError.isEmpty ? "" : ": \(peer.lastError)")"
                }
            }
            return service.status(peerDown: peerDown)
        }
    }
}

/// A proxied connection's key: session ids are numbered per host pair, so two peers may use
/// the same one.
struct ProxyKey: Hashable {
    let peer: ObjectIdentifier
    let id: UInt32

    init(_ peer: FabricPeer, _ id: UInt32) {
        self.peer = ObjectIdentifier(peer)
        self.id = id
    }
}
