import Logging
import VIOLinux
import VIOSharedMemory
import VIOTopology
import VIOTransport
import VIOWire

/// What the fabric needs from the rest of the agent: the attached instances and their
/// control connections.
protocol FabricDelegate: AnyObject {
    /// Sends LINK_READY with descriptors to an attached instance; false if it is not attached
    /// or the send failed.
    func fabricDeliver(_ ready: LinkReady, descriptors: [Int32], to instance: String) -> Bool
    /// Answers an OPEN_LINK of `instance` with an error.
    func fabricRefuse(requestID: UInt32, of instance: String, _ error: ControlError)
    /// Whether `instance` is attached, and its NUMA node.
    func fabricAttachment(of instance: String) -> (attached: Bool, numaNode: Int)
    /// This agent's status, for a far agent's health request.
    func fabricStatus() -> AgentStatus
    /// The answer to a `vioctl health` request.
    func fabricHealthReply(to connection: UInt64, _ result: Result<AgentStatus, ControlError>)
}

/// The transport that carries the channels to each peer host, and why it was chosen; the agent
/// builds the transports (from the topology and what the machine has) and the fabric only
/// takes channels from them.
struct FabricTransports {
    /// Per peer host (by name): its transport and the reason, for logs and status.
    var perPeer: [String: (transport: any FabricTransport, reason: String)]

    /// Every distinct transport, once each.
    var all: [any FabricTransport] {
        var seen: [ObjectIdentifier] = []
        return perPeer.values.map(\.transport).filter { t in
            guard !seen.contains(ObjectIdentifier(t)) else { return false }
            seen.append(ObjectIdentifier(t))
            return true
        }
    }
}

/// The inter-host fabric: keeps K channels to every peer host, carries each cross-host link
/// over one of them, and runs heartbeats, credits and reconnection.
///
/// Runs on the agent's thread, driven by the shared epoll: channel sockets (readable,
/// writable), each remote link's two agent-side doorbells, and a periodic tick.
final class Fabric {
    static let initialBackoffMilliseconds: UInt64 = 50
    static let maximumBackoffMilliseconds: UInt64 = 1000
    /// Payload bytes one link may frame per turn, so one busy link cannot starve the others.
    static let drainBudget = 256 * 1024
    /// Bytes read from one channel per turn.
    static let receiveBudget = 1 << 20
    /// Above this much queued output a channel takes no more data frames until it drains.
    static let outputHighWater = 4 << 20
    /// Bytes of a far agent's control frame (a reason) written to the log.
    static let controlTextLogged = 1024
    /// Accepted connections that have not said HELLO yet, at most: beyond, new ones are closed
    /// at once. With the small frames such a channel takes (``FrameDecoder/admit()``) and the
    /// HELLO deadline, a flood of connections costs the agent a bounded few MiB.
    static let maximumPendingChannels = 64
    /// The longest an accepted connection may take to say HELLO (the peer timeout when shorter).
    static let maximumHelloNanoseconds: UInt64 = 5_000_000_000

    let view: HostView
    let topology: Topology
    let logger: Logger
    let loop: EventLoop
    weak var delegate: FabricDelegate?
    let fingerprint: UInt64
    let heartbeatNanoseconds: UInt64
    let peerTimeoutNanoseconds: UInt64
    /// Topology position (1-based) of each instance: the frames' destination id.
    let instanceIDs: [String: UInt32]
    /// Hosts that may connect over an authenticated channel, in the order of the keys the
    /// transports were given (``acceptedKeys(of:)``): an accepted channel's proven key indexes it.
    let acceptedHosts: [String]
    /// The transports that listen, watched by the loop.
    private let listening: [any FabricTransport]
    var peers: [String: FabricPeer] = [:]
    /// Every channel, connecting, waiting for HELLO or ready.
    var slots: [ChannelSlot] = []
    var links: SessionTable<RemoteLink>
    /// OPEN_LINKs waiting for their peer host's channels to come up.
    var waitingForHost: [PendingRemoteOpen] = []
    /// SESSION starts waiting for a local instance to attach.
    var waitingForInstance: [WaitingStart] = []
    /// `vioctl health` requests in flight, by request number.
    var healthRequests: [UInt32: (connection: UInt64, peer: String, deadline: UInt64)] = [:]
    private var nextHealthRequest: UInt32 = 1
    /// Links with more to frame now (a doorbell rang, or one turn's budget ran out).
    var readyLinks = WorkList<RemoteLink>(.ready)
    /// Whether the agent loop is polling (`agent_poll_us`): drained links then stay unarmed,
    /// so their instances skip the doorbell, and each turn looks at their rings instead.
    var polling = false
    /// Links drained empty while polling, not armed: `pollLinks` looks at their rings.
    var polledLinks = WorkList<RemoteLink>(.polled)
    /// Channels with bytes still buffered after one turn.
    private var unreadChannels = WorkList<ChannelSlot>(.unread)
    /// Channels with queued output.
    var dirty = WorkList<ChannelSlot>(.dirty)
    /// Links that received data this turn (credit to grant).
    var received = WorkList<RemoteLink>(.received)
    var nextLinkID = LinkID.first(.remote)
    private var nextTick: UInt64 = 0
    /// Connections closed at accept because ``maximumPendingChannels`` were waiting, since
    /// the last warning about it.
    private var refusedPending = 0
    private var lastRefusalWarning: UInt64 = 0
    /// The agent loop's clock reading for the current turn (monotonic nanoseconds): what
    /// channel activity is stamped with, so the data path reads the clock once per turn.
    var now: UInt64 = 0

    struct PendingRemoteOpen {
        var instance: String
        var link: ResolvedLink
        var requestID: UInt32
        var waitMilliseconds: UInt32
        var deadline: UInt64
    }

    struct WaitingStart {
        var session: UInt32
        var open: SessionOpen
        var peer: String
        var deadline: UInt64
    }

    /// Hosts that may connect to `view`'s host over an authenticated channel, with their keys,
    /// in the order an accepted channel's ``FabricChannel/authenticatedPeer`` refers to.
    static func acceptedKeys(of view: HostView) -> [(host: String, key: [UInt8])] {
        view.peers.filter { !$0.weDial && $0.security == .tls }.compactMap { p in p.host.key.map { (p.host.name, $0.bytes) } }
    }

    /// Monotonic nanoseconds: the system's clock, or a test's.
    let clock: () -> UInt64

    /// `clock` is read for deadlines and timers; the agent's loop also sets ``now`` each turn
    /// (from the same clock).
    init(view: HostView, topology: Topology, loop: EventLoop, logger: Logger, transports: FabricTransports,
         clock: @escaping () -> UInt64 = MonotonicClock.nanoseconds) throws(SystemError) {
        self.clock = clock
        self.view = view
        self.topology = topology
        self.loop = loop
        self.logger = logger
        acceptedHosts = Self.acceptedKeys(of: view).map(\.host)
        links = SessionTable(largest: view.links.map { Int($0.session) }.max() ?? 0)
        fingerprint = TopologyFingerprint.of(topology.fabricIdentity)
        heartbeatNanoseconds = UInt64(max(10, topology.defaults.heartbeatIntervalMilliseconds)) * 1_000_000
        peerTimeoutNanoseconds = UInt64(max(50, topology.defaults.peerTimeoutMilliseconds)) * 1_000_000
        instanceIDs = Dictionary(topology.instances.enumerated().map { ($1.name, UInt32($0 + 1)) },
                                 uniquingKeysWith: { a, _ in a })
        for p in view.peers {
            guard let (transport, reason) = transports.perPeer[p.host.name] else { continue }
            peers[p.host.name] = FabricPeer(host: p.host, dials: p.weDial, channels: p.channels, security: p.security,
                                            transport: transport, transportReason: reason)
            logger.info("peer host transport", metadata: ["peer": "\(p.host.name)", "transport": "\(transport.name)",
                                                         "why": "\(reason)"])
        }
        listening = transports.all.filter { $0.listeningDescriptor != nil }
        nextTick = clock()
        now = nextTick
        for transport in listening {
            try loop.register(transport.listeningDescriptor!) { [unowned self] _ in self.acceptAll(from: transport) }
            logger.info("fabric listening", metadata: ["address": "\(transport.listeningAddress ?? "?")",
                                                       "transport": "\(transport.name)"])
        }
    }

    var isEmpty: Bool { peers.isEmpty }

    // MARK: Events

    /// A link's data doorbell rang: the instance wrote.
    private func dataRang(_ link: RemoteLink) {
        EventDescriptor.drain(link.data1.rawValue)
        // Framed at the turn's end, with every other link whose doorbell rang in this batch.
        readyLinks.insert(link)
    }

    /// A link's space doorbell rang: the instance read.
    private func spaceRang(_ link: RemoteLink) {
        EventDescriptor.drain(link.space1.rawValue)
        spaceFreed(link)
    }

    /// Work left after a batch of events: continue budget-limited links and channels, grant
    /// credit, and write everything queued. Returns whether more work is ready now.
    func finishTurn() -> Bool {
        if now >= nextTick {
            tick(now)
            nextTick = now + heartbeatNanoseconds / 4
        }
        // Items on a taken list may have closed since they were added: `isLive` says.
        if !unreadChannels.isEmpty {
            let unread = unreadChannels.take()
            for slot in unread where slot.isLive { receive(on: slot) }
            unreadChannels.recycle(unread)
        }
        if !readyLinks.isEmpty {
            let ready = readyLinks.take()
            // One link: its frame has nothing to be batched with.
            let oneLink = ready.count == 1
            for link in ready where link.isRegistered { drainLink(link, sendAtOnce: oneLink) }
            readyLinks.recycle(ready)
        }
        if !received.isEmpty {
            let credited = received.take()
            for link in credited where link.isRegistered { grantCredit(link) }
            received.recycle(credited)
        }
        flushAll()
        return !readyLinks.isEmpty || !unreadChannels.isEmpty
    }

    /// Moves the polled links that have records (or changed state) to the ready list.
    /// Returns whether any had.
    func pollLinks() -> Bool {
        guard polledLinks.items.contains(where: { $0.hasWork }) else { return false }
        let polled = polledLinks.take()
        for link in polled where link.isRegistered {
            if link.hasWork { readyLinks.insert(link) } else { polledLinks.insert(link) }
        }
        polledLinks.recycle(polled)
        return true
    }

    /// Leaves polling: arms every polled link's doorbell before the agent sleeps. Returns
    /// whether one had records after all (drain it rather than sleep).
    func stopPolling() -> Bool {
        polling = false
        var found = false
        let polled = polledLinks.take()
        for link in polled where link.isRegistered && !link.armForData() {
            readyLinks.insert(link)
            found = true
        }
        polledLinks.recycle(polled)
        return found
    }

    /// When the next tick is due (heartbeats, reconnects, deadlines), monotonic nanoseconds.
    func nextTimeoutNanoseconds() -> UInt64 { nextTick }

    private func channelEvent(_ slot: ChannelSlot, _ event: Epoll.Event) {
        if !slot.channel.isConnected {
            guard event.writable || event.hangUp else { return }
            do {
                try slot.channel.finishConnect()
            } catch {
                dropChannel(slot, reason: "cannot connect to \(slot.peer?.name ?? "?"): \(error)")
                return
            }
            sendHello(slot)
        }
        if event.writable { dirty.insert(slot) }
        if event.readable || event.hangUp { receive(on: slot) }
    }

    private func receive(on slot: ChannelSlot) {
        guard slot.isLive else { return }
        var violation: String?
        do {
            let more = try slot.channel.receive(budget: Self.receiveBudget, place: { header in
                placement(for: header, on: slot)
            }) { header, payload in
                slot.lastReceived = now
                do throws(ProtocolViolation) {
                    try handleFrame(header, payload, on: slot)
                    return slot.isLive
                } catch {
                    switch error.scope {
                    case .channel:
                        violation = error.description
                        return false
                    case .session(let session):
                        endSession(session, on: slot, error.description)
                    case .frame:
                        refuseFrame(header, on: slot, error.description)
                    }
                    return slot.isLive
                }
            }
            if let violation {
                // Tell the far agent why before closing (best effort: the socket may be full).
                slot.channel.enqueue(FrameHeader(type: .control), bytes: Array("closing the channel: \(violation)".utf8))
                _ = try? slot.channel.flush()
                dropChannel(slot, reason: violation)
            } else if more, slot.isLive {
                unreadChannels.insert(slot)
            }
        } catch {
            dropChannel(slot, reason: "\(error)")
        }
        // Output that waited for the peer's handshake bytes can go now.
        if slot.isLive, slot.channel.queuedBytes > 0 { dirty.insert(slot) }
    }

    /// A frame broke one session's protocol: that session ends at both ends (the far agent is
    /// told in a reset, the local instance sees the link corrupt); the channel carries on.
    private func endSession(_ session: UInt32, on slot: ChannelSlot, _ reason: String) {
        guard let peer = slot.peer else { return }
        logger.warning("session ended: the far agent broke its protocol",
                       metadata: ["peer": "\(peer.name)", "session": "\(session)", "reason": "\(reason)"])
        let message = "'\(view.host.name)' ended session \(session): \(reason)"
        waitingForInstance.removeAll { $0.session == session }
        if let link = links[session], link.host === peer {
            if let (requestID, _) = link.openRequest {
                delegate?.fabricRefuse(requestID: requestID, of: link.instance, ControlError(.internalError, message))
            }
            link.finish(LinkStateWord(kind: .corrupt, end: 1))
            sendReset(link, .corrupt, message)
            unregister(link)
        } else if let declared = view.links.first(where: { $0.session == session && $0.kind == .remote(host: peer.name) }) {
            reset(session: session, declared: declared, peer: peer, .corrupt, message)
        }
    }

    /// A frame that cannot apply (no such session, an invalid transition, a malformed answer)
    /// is refused with a control frame; nothing else changes.
    private func refuseFrame(_ header: FrameHeader, on slot: ChannelSlot, _ reason: String) {
        logger.warning("frame refused", metadata: ["peer": "\(slot.peer?.name ?? "?")", "type": "\(header.type)",
                                                   "session": "\(header.session)", "reason": "\(reason)"])
        send(FrameHeader(type: .control, session: header.session),
             Array("'\(view.host.name)' refused a \(header.type) frame: \(reason)".utf8), on: slot)
    }

    /// Where a large DATA frame's payload can be read straight into its link's ring.
    private func placement(for header: FrameHeader, on slot: ChannelSlot) -> PayloadPlacement? {
        guard header.type == .data, let peer = slot.peer, slot.ready, let link = links[header.session],
              link.host === peer, link.channel == slot.index, let destination = link.placement(for: header)
        else { return nil }
        return PayloadPlacement(destination: destination, owner: link)
    }

    // MARK: Channels

    private func acceptAll(from transport: any FabricTransport) {
        while true {
            let accepted: (channel: any FabricChannel, from: String)?
            do { accepted = try transport.accept() } catch {
                logger.warning("fabric accept failed: \(error)", metadata: ["transport": "\(transport.name)"])
                return
            }
            guard let (channel, address) = accepted else { return }
            let now = clock()
            if pendingChannels >= Self.maximumPendingChannels {
                // Closed here (the channel goes out of scope); a real peer redials with backoff.
                refusedPending += 1
                if now - lastRefusalWarning >= 1_000_000_000 {
                    logger.warning("fabric connections refused: too many waiting for HELLO",
                                   metadata: ["refused": "\(refusedPending)", "waiting": "\(pendingChannels)",
                                              "latest_from": "\(address)"])
                    refusedPending = 0
                    lastRefusalWarning = now
                }
                continue
            }
            register(channel, peer: nil, index: -1, now: now)
            logger.debug("fabric connection accepted", metadata: ["from": "\(address)"])
        }
    }

    /// Accepted channels whose HELLO has not arrived.
    private var pendingChannels: Int { slots.reduce(0) { $0 + ($1.peer == nil ? 1 : 0) } }

    /// Adds a channel to ``slots`` (and, dialed, to its peer's channels) and watches it.
    @discardableResult
    private func register(_ channel: any FabricChannel, peer: FabricPeer?, index: Int, now: UInt64) -> ChannelSlot {
        let slot = ChannelSlot(channel: channel, peer: peer, index: index, now: now)
        slots.append(slot)
        // Before watching: a channel epoll refuses is then dropped as the peer's (redialed).
        if let peer { peer.slots[index] = slot }
        do {
            // unowned(unsafe): the fabric outlives every registration on its loop, and a checked
            // reference would cost a retain and release per event (measured: 1.2% of the
            // agent's instructions per round trip).
            slot.registration = try loop.register(slot.channel.descriptor, writable: slot.watchingWritable) { [unowned(unsafe) self] event in
                self.channelEvent(slot, event)
            }
        } catch {
            dropChannel(slot, reason: "cannot watch the channel: \(error)")
        }
        return slot
    }

    private func dial(_ peer: FabricPeer, index: Int, now: UInt64) {
        let channel: any FabricChannel
        do {
            channel = try peer.transport.dial(TransportPeer(name: peer.name, address: peer.host.address, port: peer.host.port,
                                                            key: peer.security == .tls ? peer.host.key?.bytes : nil))
        } catch {
            peer.lastError = "cannot dial: \(error)"
            scheduleRedial(peer, index: index, now: now)
            return
        }
        let slot = register(channel, peer: peer, index: index, now: now)
        // A transport whose channels connect at once (not TCP's connect-then-writable) says
        // HELLO now.
        if slot.isLive, channel.isConnected { sendHello(slot) }
    }

    private func scheduleRedial(_ peer: FabricPeer, index: Int, now: UInt64) {
        peer.nextAttempt[index] = now + peer.backoffMilliseconds * 1_000_000
        peer.backoffMilliseconds = min(peer.backoffMilliseconds * 2, Self.maximumBackoffMilliseconds)
    }

    private func sendHello(_ slot: ChannelSlot) {
        guard let peer = slot.peer else { return }
        let hello = ChannelHello(cluster: topology.cluster, from: view.host.name, to: peer.name,
                                 channel: UInt16(slot.index), channels: UInt16(peer.channelCount), fingerprint: fingerprint)
        send(FrameHeader(type: .helloRequest), hello.encoded(), on: slot)
    }

    /// Queues a frame on a channel (written at the end of the turn).
    func send(_ header: FrameHeader, _ payload: [UInt8] = [], on slot: ChannelSlot) {
        payload.withUnsafeBytes { send(header, payload: $0, on: slot) }
    }

    /// Queues a frame whose payload the caller holds in memory (copied now).
    func send(_ header: FrameHeader, payload: UnsafeRawBufferPointer, on slot: ChannelSlot) {
        slot.channel.enqueue(header, payload: payload)
        slot.lastSent = now
        dirty.insert(slot)
    }

    /// The ready channel a session uses, if its peer host is up.
    func slot(for link: RemoteLink) -> ChannelSlot? {
        let peer = link.host
        guard peer.isUp, let slot = peer.slots[link.channel], slot.ready else { return nil }
        return slot
    }

    /// Writes queued output on every dirty channel; watches for writability where the
    /// socket did not take everything.
    private func flushAll() {
        guard !dirty.isEmpty else { return }
        // Channels still waiting for the socket to take more go back on `dirty`.
        let flushing = dirty.take()
        for slot in flushing where slot.isLive {
            let done: Bool
            do { done = try slot.channel.flush() } catch {
                dropChannel(slot, reason: "\(error)")
                continue
            }
            if done != !slot.watchingWritable {
                slot.watchingWritable = !done
                if let registration = slot.registration { try? loop.watchWritable(registration, !done) }
            }
            if slot.channel.queuedBytes < Self.outputHighWater / 2, !slot.waitingLinks.isEmpty {
                for link in slot.waitingLinks where link.isRegistered { readyLinks.insert(link) }
                slot.waitingLinks.removeAll()
            }
            if slot.watchingWritable { dirty.insert(slot) }
        }
        // Not in a `defer`: there the array is still shared when handed back, and emptying
        // it would allocate a new buffer every turn.
        dirty.recycle(flushing)
    }

    /// Closes a channel; if it was part of a peer's fabric, that host is down.
    func dropChannel(_ slot: ChannelSlot, reason: String) {
        guard forget(slot) else { return }
        guard let peer = slot.peer, slot.index >= 0, peer.slots[slot.index] === slot else {
            logger.warning("fabric connection dropped", metadata: ["from": "\(slot.channel.peerDescription)", "reason": "\(reason)"])
            return
        }
        peer.retire(slot)
        peer.slots[slot.index] = nil
        logger.warning("fabric channel dropped", metadata: ["peer": "\(peer.name)", "channel": "\(slot.index)",
                                                           "reason": "\(reason)"])
        hostDown(peer, reason: reason)
    }

    /// Takes a channel out of the fabric: the slot table, epoll and the work lists (items
    /// still on a list taken this turn see `isLive` false). False if it was already out.
    @discardableResult
    private func forget(_ slot: ChannelSlot) -> Bool {
        guard let index = slots.firstIndex(where: { $0 === slot }) else { return false }
        slots.remove(at: index)
        slot.isLive = false
        if let registration = slot.registration { loop.unregister(registration) }
        dirty.remove(slot)
        unreadChannels.remove(slot)
        return true
    }

    /// Every channel to `peer` closes and every link through it reports "peer host down";
    /// the dialing side reconnects with capped backoff.
    private func hostDown(_ peer: FabricPeer, reason: String) {
        let wasUp = peer.isUp
        peer.isUp = false
        peer.lastError = reason
        for case let slot? in peer.slots {
            peer.retire(slot)
            forget(slot)
        }
        peer.slots = Array(repeating: nil, count: peer.channelCount)
        let now = clock()
        if peer.dials {
            for index in 0..<peer.channelCount { scheduleRedial(peer, index: index, now: now) }
        }
        let affected = links.values.filter { $0.host === peer }
        for link in affected { linkHostDown(link) }
        waitingForInstance.removeAll { $0.peer == peer.name }
        for (id, request) in healthRequests where request.peer == peer.name {
            healthRequests[id] = nil
            delegate?.fabricHealthReply(to: request.connection, .failure(ControlError(.peerHostDown,
                "host '\(peer.name)' went down before answering: \(reason)")))
        }
        if wasUp || !affected.isEmpty {
            logger.error("peer host down", metadata: ["peer": "\(peer.name)", "reason": "\(reason)",
                                                      "links": "\(affected.count)"])
        }
    }

    // MARK: Frames

    private func handleFrame(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, on slot: ChannelSlot) throws(ProtocolViolation) {
        guard slot.ready else { return try handshake(header, Array(payload), on: slot) }
        guard let peer = slot.peer else { return }
        switch header.type {
        case .data:
            guard let link = links[header.session], link.host === peer else {
                return try unknownSession(header, from: peer)
            }
            guard link.isOpen else { throw ProtocolViolation(.session(header.session), "data for session \(header.session) before it was accepted") }
            guard header.destination == link.localID else {
                throw ProtocolViolation(.session(header.session), "session \(header.session) carries destination \(header.destination)")
            }
            if let malformed = try link.receive(header, payload) {
                corruptFromFar(link, malformed)
                return
            }
            // Most frames of a round trip leave nothing to grant: no turn-end pass for them.
            if link.wantsGrant { received.insert(link) }
        case .acknowledgement:
            guard let link = links[header.session], link.host === peer else {
                return try unknownSession(header, from: peer)
            }
            try acknowledged(link, header, Array(payload))
        case .session:
            try sessionFrame(header, Array(payload), from: peer)
        case .heartbeatRequest:
            send(FrameHeader(type: .heartbeatResponse, sequence: header.sequence), Array(payload), on: slot)
        case .heartbeatResponse:
            if payload.count == 8 {
                let sent = UInt64(littleEndian: payload.loadUnaligned(as: UInt64.self))
                let now = clock()
                if now >= sent { peer.rttMicroseconds = UInt32(min((now - sent) / 1000, UInt64(UInt32.max))) }
            }
        case .healthRequest:
            guard let status = delegate?.fabricStatus() else { return }
            send(FrameHeader(type: .healthResponse, sequence: header.sequence), status.encodedPayload(), on: slot)
        case .healthResponse:
            // Only the host asked may answer (request numbers are easy to guess).
            guard let request = healthRequests[header.sequence], request.peer == peer.name else { return }
            healthRequests[header.sequence] = nil
            do {
                let status = try AgentStatus(decodingPayload: Array(payload))
                delegate?.fabricHealthReply(to: request.connection, .success(status))
            } catch {
                // The asker hears why before the channel goes (it would wait forever otherwise).
                delegate?.fabricHealthReply(to: request.connection, .failure(ControlError(.internalError,
                    "host '\(peer.name)' sent a malformed health response: \(error)")))
                throw ProtocolViolation(.frame, "malformed health response: \(error)")
            }
        case .control:
            // At most a line's worth: a far agent's reason, not a way to fill this host's log.
            let text = String(decoding: payload.prefix(Self.controlTextLogged), as: UTF8.self)
            logger.warning("peer agent reports", metadata: ["peer": "\(peer.name)", "message": "\(text)",
                                                            "bytes": "\(payload.count)"])
        case .serviceUpdate:
            // Proxy services are not carried yet; say so rather than pretend.
            send(FrameHeader(type: .control, session: header.session),
                 Array("service updates are not supported by \(view.host.name)".utf8), on: slot)
        case .serviceUpdateAck:
            break
        case .helloRequest, .helloResponse:
            throw ProtocolViolation(.frame, "HELLO on an established channel")
        }
    }

    /// A frame for a session that is not open here: legal for a declared link (a close
    /// crossed it), a protocol violation otherwise.
    private func unknownSession(_ header: FrameHeader, from peer: FabricPeer) throws(ProtocolViolation) {
        let declared = view.links.contains { $0.session == header.session && $0.kind == .remote(host: peer.name) }
        guard declared else {
            throw ProtocolViolation(.frame, "frame for session \(header.session), which is not a link between \(view.host.name) and \(peer.name)")
        }
        logger.debug("frame for a closed session dropped", metadata: ["session": "\(header.session)", "type": "\(header.type)"])
    }

    private func handshake(_ header: FrameHeader, _ payload: [UInt8], on slot: ChannelSlot) throws(ProtocolViolation) {
        switch header.type {
        case .helloRequest where slot.peer == nil:
            let hello: ChannelHello
            do { hello = try ChannelHello(decoding: payload) } catch { throw ProtocolViolation("malformed HELLO: \(error)") }
            // The violation path tells the dialer the reason in a control frame before closing.
            func refuse(_ why: String) -> ProtocolViolation {
                ProtocolViolation("refused HELLO from \(hello.from): \(why)")
            }
            guard hello.cluster == topology.cluster else { throw refuse("cluster '\(hello.cluster)' is not '\(topology.cluster)'") }
            guard hello.to == view.host.name else { throw refuse("this is host '\(view.host.name)', not '\(hello.to)'") }
            guard let peer = peers[hello.from] else {
                throw refuse("host '\(hello.from)' has no links to '\(view.host.name)' in the topology")
            }
            guard !peer.dials else { throw refuse("'\(view.host.name)' dials '\(peer.name)', not the other way (nat roles)") }
            if let proven = slot.channel.authenticatedPeer {
                guard proven < acceptedHosts.count, acceptedHosts[proven] == peer.name else {
                    throw refuse("the channel proved the key of host '\(proven < acceptedHosts.count ? acceptedHosts[proven] : "?")', not of '\(peer.name)'")
                }
            } else if peer.security == .tls {
                throw refuse("the pair \(view.host.name)–\(peer.name) is encrypted (security: tls), but this channel is not authenticated")
            }
            guard hello.fingerprint == fingerprint else {
                throw refuse("the topologies differ (link tables do not match); give both agents the same file")
            }
            guard Int(hello.channels) == peer.channelCount, Int(hello.channel) < peer.channelCount else {
                throw refuse("channel \(hello.channel) of \(hello.channels); expected \(peer.channelCount) channels")
            }
            let index = Int(hello.channel)
            if let old = peer.slots[index] {
                // The far agent restarted or lost the channel before we noticed.
                dropChannel(old, reason: "host '\(peer.name)' reconnected channel \(index)")
            }
            slot.peer = peer
            slot.index = index
            slot.markReady()
            peer.slots[index] = slot
            send(FrameHeader(type: .helloResponse), Array(view.host.name.utf8), on: slot)
            channelReady(peer)
        case .helloResponse where slot.peer != nil:
            slot.markReady()
            channelReady(slot.peer!)
        case .control:
            throw ProtocolViolation("the far agent refused the channel: \(String(decoding: payload, as: UTF8.self))")
        default:
            throw ProtocolViolation("expected HELLO, got \(header.type)")
        }
    }

    private func channelReady(_ peer: FabricPeer) {
        guard peer.readyCount == peer.channelCount, !peer.isUp else { return }
        peer.isUp = true
        peer.backoffMilliseconds = Self.initialBackoffMilliseconds
        if peer.wasUp { peer.reconnects &+= 1 }
        peer.wasUp = true
        logger.info("peer host up", metadata: ["peer": "\(peer.name)", "channels": "\(peer.channelCount)",
                                               "role": "\(peer.dials ? "dialer" : "acceptor")"])
        let starting = waitingForHost.filter { $0.link.kind == .remote(host: peer.name) }
        waitingForHost.removeAll { $0.link.kind == .remote(host: peer.name) }
        for pending in starting {
            startSession(instance: pending.instance, link: pending.link, requestID: pending.requestID,
                         waitMilliseconds: pending.waitMilliseconds, deadline: pending.deadline)
        }
    }

    // MARK: Timers

    private func tick(_ now: UInt64) {
        // Slots may be stamped after `now` was read: never let a difference wrap.
        func since(_ t: UInt64) -> UInt64 { now > t ? now - t : 0 }
        for peer in peers.values {
            if peer.dials {
                for index in 0..<peer.channelCount where peer.slots[index] == nil && now >= peer.nextAttempt[index] {
                    dial(peer, index: index, now: now)
                }
            }
        }
        for slot in slots {
            if !slot.ready {
                let limit = slot.peer == nil ? min(peerTimeoutNanoseconds, Self.maximumHelloNanoseconds) : peerTimeoutNanoseconds
                if since(slot.createdAt) > limit {
                    dropChannel(slot, reason: slot.channel.isConnected ? "no HELLO within the peer timeout"
                                                                        : "connect timed out")
                }
                continue
            }
            if since(slot.lastReceived) > peerTimeoutNanoseconds {
                dropChannel(slot, reason: "no frames for \(since(slot.lastReceived) / 1_000_000) ms (peer timeout)")
                continue
            }
            if since(slot.lastSent) >= heartbeatNanoseconds {
                var stamp = now.littleEndian
                let bytes = withUnsafeBytes(of: &stamp) { Array($0) }
                send(FrameHeader(type: .heartbeatRequest), bytes, on: slot)
            }
        }
        expireWaits(now)
        // Acknowledge deliveries that no credit grant carried.
        for link in links.values where link.isOpen && link.deliveredMessages != link.acknowledgedDelivered {
            grantCredit(link, force: true)
        }
        for (id, request) in healthRequests where request.deadline <= now {
            healthRequests[id] = nil
            delegate?.fabricHealthReply(to: request.connection, .failure(ControlError(.peerHostDown,
                "host '\(request.peer)' did not answer the health request in time")))
        }
    }

    // MARK: Health

    /// Asks `host`'s agent for its status; the answer goes to the delegate.
    func requestHealth(of host: String, for connection: UInt64) -> ControlError? {
        guard let peer = peers[host] else {
            return ControlError(.unknownInstance, "'\(host)' is not a host this one has links to; known: \(peers.keys.sorted().joined(separator: ", "))")
        }
        guard peer.isUp, let slot = peer.slots[0], slot.ready else {
            return ControlError(.peerHostDown, "host '\(host)' is down: \(peer.lastError.isEmpty ? "not connected yet" : peer.lastError)")
        }
        let id = nextHealthRequest
        nextHealthRequest &+= 1
        healthRequests[id] = (connection, host, clock() + 2_000_000_000)
        send(FrameHeader(type: .healthRequest, sequence: id), on: slot)
        return nil
    }

    // MARK: Status

    /// Per-peer-host state for `vioctl status`.
    func peerStates() -> [AgentStatus.PeerHostState] {
        view.peers.compactMap { peers[$0.host.name] }.map { peer in
            var s = AgentStatus.PeerHostState(name: peer.name,
                                              state: peer.isUp ? "up" : peer.slots.contains { $0 != nil } ? "connecting" : "down",
                                              dials: peer.dials, channelsUp: UInt16(peer.readyCount),
                                              channels: UInt16(peer.channelCount))
            let totals = peer.totals
            s.rttMicroseconds = peer.rttMicroseconds
            s.bytesSent = totals.bytesSent; s.bytesReceived = totals.bytesReceived
            s.framesSent = totals.framesSent; s.framesReceived = totals.framesReceived
            s.creditStalls = peer.creditStalls + links.values.filter { $0.host === peer }.reduce(0) { $0 + $1.creditStalls }
            s.reconnects = peer.reconnects
            s.linksOpen = UInt32(links.values.filter { $0.host === peer && $0.isOpen }.count)
            s.lastError = peer.lastError
            s.keyUpdates = totals.keyUpdates
            s.transport = "\(peer.transport.name): \(peer.transportReason)"
            let live = peer.slots.compactMap { $0 }.filter(\.ready)
            s.encrypted = !live.isEmpty && live.allSatisfy { $0.channel.capabilities.encrypted }
            s.security = live.compactMap { $0.channel.securityDescription }.first
                ?? (peer.security == .tls ? "tls" : "plaintext")
            return s
        }
    }

    /// The open link carrying `declared`, for status.
    func link(for declared: ResolvedLink) -> RemoteLink? {
        guard let link = links[declared.session], link.instance == declared.localEnd else { return nil }
        return link
    }

    // MARK: Link registration

    func register(_ link: RemoteLink) throws(SystemError) {
        // unowned(unsafe) as for channels: these run once per message in each direction.
        let data = try loop.register(link.data1.rawValue) { [unowned(unsafe) self] _ in self.dataRang(link) }
        do {
            link.registrations = [data, try loop.register(link.space1.rawValue) { [unowned(unsafe) self] _ in self.spaceRang(link) }]
        } catch {
            loop.unregister(data)
            throw error
        }
        links[link.session] = link
        link.isRegistered = true
    }

    func unregister(_ link: RemoteLink) {
        guard links[link.session] === link else { return }
        for registration in link.registrations { loop.unregister(registration) }
        link.registrations = []
        links[link.session] = nil
        link.isRegistered = false
        readyLinks.remove(link)
        polledLinks.remove(link)
        received.remove(link)
        link.host.creditStalls &+= link.creditStalls
    }
}
