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
    /// A transport that takes incoming channels whether or not a pair is carried by it (the
    /// RDMA transport: it meets every peer on TCP first).
    var listener: (any FabricTransport)? = nil

    /// Every distinct transport, once each.
    var all: [any FabricTransport] {
        var seen: [ObjectIdentifier] = []
        return (perPeer.values.map(\.transport) + (listener.map { [$0] } ?? [])).filter { t in
            guard !seen.contains(ObjectIdentifier(t)) else { return false }
            seen.append(ObjectIdentifier(t))
            return true
        }
    }
}

/// The inter-host fabric: carries each cross-host link over one of K channels to its peer
/// host. Three parts, each owning its state:
/// - ``ChannelManager`` (FabricChannels.swift): the channels: dial, accept, HELLO,
///   heartbeats and timeouts, redial;
/// - ``SessionManager`` (FabricSessions.swift): the session protocol and the links' table;
/// - this class, the multiplexer: the turn (drain links into frames, receive and dispatch
///   frames, grant credit, flush), health requests, and what the agent calls.
///
/// Runs on the agent's thread, driven by its loop: channel descriptors (readable,
/// writable), each remote link's two agent-side doorbells, and a periodic tick.
final class Fabric {
    /// Payload bytes one link may frame per turn, so one busy link cannot starve the others.
    static let drainBudget = 256 * 1024
    /// Bytes read from one channel per turn.
    static let receiveBudget = 1 << 20
    /// Above this much queued output a channel takes no more data frames until it drains.
    static let outputHighWater = 4 << 20
    /// Bytes of a far agent's control frame (a reason) written to the log.
    static let controlTextLogged = 1024

    /// This host's share of the topology (replaced by a reload, ``reload(to:topology:change:transport:)``).
    var view: HostView
    var topology: Topology
    let logger: Logger
    let loop: EventLoop
    weak var delegate: FabricDelegate?
    /// Proxy mode's connections (nil when this host has no services).
    weak var proxy: ProxyManager?
    /// Where the topology came from (a path), for errors that tell an operator which file.
    let topologySource: String
    let heartbeatNanoseconds: UInt64
    let peerTimeoutNanoseconds: UInt64
    /// Channel lifecycle: transports, dial, accept, HELLO, heartbeats, redial.
    let channels: ChannelManager
    /// Session protocol: open, accept, refuse, close, reset; the links' table.
    let sessions: SessionManager
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
    var unreadChannels = WorkList<ChannelSlot>(.unread)
    /// Channels whose transport must be polled (``FabricChannel/mustBePolled``): received
    /// from every turn; while there is one, the agent's loop does not sleep.
    var polledChannels: [ChannelSlot] = [] { didSet { hasPolledChannels = !polledChannels.isEmpty } }
    /// Whether ``polledChannels`` has any: one flag for the turn to test (an array's emptiness
    /// cost the turn 20 instructions per round trip).
    private(set) var hasPolledChannels = false
    /// Channels with queued output.
    var dirty = WorkList<ChannelSlot>(.dirty)
    /// Links that received data this turn (credit to grant).
    var received = WorkList<RemoteLink>(.received)
    /// Links the next tick looks at (deliveries no grant acknowledged, a backlog waiting for
    /// ring space): a tick costs nothing per idle link.
    var tickLinks = WorkList<RemoteLink>(.tick)
    private var nextTick: UInt64 = 0
    /// The agent loop's clock reading for the current turn (monotonic nanoseconds): what
    /// channel activity is stamped with, so the data path reads the clock once per turn.
    var now: UInt64 = 0

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
         topologySource: String = "the topology", clock: @escaping () -> UInt64 = MonotonicClock.nanoseconds) throws(SystemError) {
        self.clock = clock
        self.topologySource = topologySource
        self.view = view
        self.topology = topology
        self.loop = loop
        self.logger = logger
        channels = ChannelManager(view: view, topology: topology, transports: transports, logger: logger)
        sessions = SessionManager(view: view)
        heartbeatNanoseconds = UInt64(max(10, topology.defaults.heartbeatIntervalMilliseconds)) * 1_000_000
        peerTimeoutNanoseconds = UInt64(max(50, topology.defaults.peerTimeoutMilliseconds)) * 1_000_000
        nextTick = clock()
        now = nextTick
        channels.fabric = self
        sessions.fabric = self
        try channels.listen()
    }

    var isEmpty: Bool { channels.peers.isEmpty }

    // MARK: Events

    /// Doorbells and DATA frames handled so far: what the agent's polling counts as activity
    /// (heartbeats and other control traffic do not keep an agent polling).
    var carried: UInt64 = 0

    /// A link's data doorbell rang: the instance wrote.
    func dataRang(_ link: RemoteLink) {
        carried &+= 1
        EventDescriptor.drain(link.data1.rawValue)
        // Framed at the turn's end, with every other link whose doorbell rang in this batch.
        readyLinks.insert(link)
    }

    /// A link's space doorbell rang: the instance read.
    func spaceRang(_ link: RemoteLink) {
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
        if hasPolledChannels {
            for slot in polledChannels where slot.isLive {
                if !slot.channel.isConnected, !channels.finishConnecting(slot) { continue }
                receive(on: slot)
            }
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
            for link in credited where link.isRegistered {
            grantCredit(link)
            // A backlog left behind, or deliveries the grant did not acknowledge, are looked
            // at again by the tick.
            if !link.backlog.isEmpty || link.deliveredMessages != link.acknowledgedDelivered { tickLinks.insert(link) }
        }
            received.recycle(credited)
        }
        flushAll()
        return !readyLinks.isEmpty || !unreadChannels.isEmpty || hasPolledChannels
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

    /// A channel's descriptor is ready: output can go, frames may have arrived.
    func channelEvent(_ slot: ChannelSlot, _ event: Epoll.Event) {
        if !slot.channel.isConnected {
            // A channel whose descriptor gathers several sources reports its connect as
            // readable: it checks for itself, and may still be connecting.
            guard event.writable || event.hangUp || event.readable, channels.finishConnecting(slot),
                  slot.channel.isConnected else { return }
        }
        if event.writable { dirty.insert(slot) }
        if event.readable || event.hangUp { receive(on: slot) }
    }

    func receive(on slot: ChannelSlot) {
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
                        sessions.endSession(session, on: slot, error.description)
                    case .frame:
                        refuseFrame(header, on: slot, error.description)
                    }
                    return slot.isLive
                }
            }
            if let violation {
                slot.tellNow("closing the channel: \(violation)")
                channels.dropChannel(slot, reason: violation)
            } else if more, slot.isLive {
                unreadChannels.insert(slot)
            }
        } catch {
            channels.dropChannel(slot, reason: "\(error)")
        }
        // Output that waited for the peer's handshake bytes can go now.
        if slot.isLive, slot.channel.queuedBytes > 0 { dirty.insert(slot) }
    }

    /// A frame that cannot apply (no such session, an invalid transition, a malformed answer)
    /// is refused with a control frame; nothing else changes.
    func refuseFrame(_ header: FrameHeader, on slot: ChannelSlot, _ reason: String) {
        logger.warning("frame refused", metadata: ["peer": "\(slot.peer?.name ?? "?")", "type": "\(header.type)",
                                                   "session": "\(header.session)", "reason": "\(reason)"])
        send(FrameHeader(type: .control, session: header.session),
             Array("'\(view.host.name)' refused a \(header.type) frame: \(reason)".utf8), on: slot)
    }

    /// Where a large DATA frame's payload can be read straight into its link's ring.
    func placement(for header: FrameHeader, on slot: ChannelSlot) -> PayloadPlacement? {
        guard header.type == .data, let peer = slot.peer, slot.ready, let link = sessions.links[peer.number, header.session],
              link.channel == slot.index, let destination = link.placement(for: header)
        else { return nil }
        return PayloadPlacement(destination: destination, owner: link)
    }

    // MARK: Output

    /// Queues a frame on a channel (written at the end of the turn).
    func send(_ header: FrameHeader, _ payload: [UInt8] = [], on slot: ChannelSlot) {
        payload.withUnsafeBytes { send(header, payload: $0, on: slot) }
    }

    /// Queues a frame whose payload the caller holds in memory (copied now).
    /// Frames larger than the channel carries never go: a control frame's text is cut to fit;
    /// anything else is not sent and the error logged (the callers size what can be large).
    func send(_ header: FrameHeader, payload: UnsafeRawBufferPointer, on slot: ChannelSlot) {
        var payload = payload
        let limit = slot.frameLimit
        if payload.count > limit {
            guard header.type == .control else {
                logger.error("frame larger than the channel carries not sent", metadata: [
                    "type": "\(header.type)", "bytes": "\(payload.count)", "limit": "\(limit)"])
                return
            }
            payload = UnsafeRawBufferPointer(rebasing: payload[..<limit])
        }
        slot.channel.enqueue(header, payload: payload)
        // An answer to the far agent's heartbeat does not stand in for this agent's own: each
        // side then measures its round trips (metrics), whichever sends first.
        if header.type != .heartbeatResponse { slot.lastSent = now }
        dirty.insert(slot)
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
                channels.dropChannel(slot, reason: "\(error)")
                continue
            }
            if done != !slot.watchingWritable {
                slot.watchingWritable = !done
                if let registration = slot.registration { try? loop.watchWritable(registration, !done) }
            }
            if slot.hasWaiters, slot.channel.queuedBytes < Self.outputHighWater / 2 {
                if !slot.waitingLinks.isEmpty {
                    for link in slot.waitingLinks where link.isRegistered { readyLinks.insert(link) }
                    slot.waitingLinks.removeAll()
                }
                if !slot.waitingStreams.isEmpty { proxy?.channelDrained(slot) }
            }
            if slot.watchingWritable { dirty.insert(slot) }
        }
        // Not in a `defer`: there the array is still shared when handed back, and emptying
        // it would allocate a new buffer every turn.
        dirty.recycle(flushing)
    }

    // MARK: Frames

    private func handleFrame(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, on slot: ChannelSlot) throws(ProtocolViolation) {
        guard slot.ready else { return try channels.handshake(header, Array(payload), on: slot) }
        guard let peer = slot.peer else { return }
        switch header.type {
        case .data:
            carried &+= 1
            guard let link = sessions.links[peer.number, header.session] else {
                if ProxySessionID.isProxy(header.session), let proxy { return try proxy.frame(header, payload, from: peer, on: slot) }
                return try sessions.unknownSession(header, from: peer)
            }
            guard link.isOpen else { throw ProtocolViolation(.session(header.session), "data for session \(header.session) before it was accepted") }
            guard header.destination == link.localID else {
                throw ProtocolViolation(.session(header.session), "session \(header.session) carries destination \(header.destination)")
            }
            if let malformed = try link.receive(header, payload) {
                sessions.corruptFromFar(link, malformed)
                return
            }
            // Most frames of a round trip leave nothing to grant: no turn-end pass for them,
            // and the next tick acknowledges what they delivered.
            if link.wantsGrant { received.insert(link) } else { tickLinks.insert(link) }
        case .acknowledgement:
            guard let link = sessions.links[peer.number, header.session] else {
                if ProxySessionID.isProxy(header.session), let proxy { return try proxy.frame(header, payload, from: peer, on: slot) }
                return try sessions.unknownSession(header, from: peer)
            }
            try sessions.acknowledged(link, header, Array(payload))
        case .session:
            if ProxySessionID.isProxy(header.session), let proxy { return try proxy.frame(header, payload, from: peer, on: slot) }
            try sessions.sessionFrame(header, Array(payload), from: peer)
        case .heartbeatRequest:
            send(FrameHeader(type: .heartbeatResponse, sequence: header.sequence), Array(payload), on: slot)
        case .heartbeatResponse:
            if payload.count == 8 {
                let sent = UInt64(littleEndian: payload.loadUnaligned(as: UInt64.self))
                let now = clock()
                if now >= sent {
                    peer.rttMicroseconds = UInt32(min((now - sent) / 1000, UInt64(UInt32.max)))
                    if peer.rttSamples.count < FabricPeer.maximumRTTSamples { peer.rttSamples.append(peer.rttMicroseconds) }
                }
            }
        case .healthRequest:
            guard let status = delegate?.fabricStatus() else { return }
            let encoded = status.encodedPayload()
            let limit = slot.frameLimit
            guard encoded.count <= limit else {
                // The asker's request times out with the reason in its agent's log.
                send(FrameHeader(type: .control, sequence: header.sequence),
                     Array("'\(view.host.name)' cannot answer a health request: its status is \(encoded.count) bytes, more than one frame carries (\(limit))".utf8), on: slot)
                return
            }
            send(FrameHeader(type: .healthResponse, sequence: header.sequence), encoded, on: slot)
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
            if text.hasPrefix(Self.stoppingNotice) {
                // The far agent is shutting down: its links go down now, with its reason,
                // rather than when its channels close.
                channels.dropChannel(slot, reason: "the agent of '\(peer.name)' is stopping (\(text.dropFirst(Self.stoppingNotice.count)))")
                return
            }
            logger.warning("peer agent reports", metadata: ["peer": "\(peer.name)", "message": "\(text)",
                                                            "bytes": "\(payload.count)"])
        case .serviceUpdate:
            guard let proxy else { throw ProtocolViolation(.frame, "'\(view.host.name)' shares no services with '\(peer.name)'") }
            try proxy.serviceUpdate(header, payload, from: peer, on: slot)
        case .serviceUpdateAck:
            break
        case .declarations:
            let declared: PairDeclarations
            do { declared = try PairDeclarations(decoding: Array(payload)) } catch {
                throw ProtocolViolation(.frame, "malformed DECLARATIONS: \(error)")
            }
            compareDeclarations(declared, from: peer)
        case .helloRequest, .helloResponse:
            throw ProtocolViolation(.frame, "HELLO on an established channel")
        case .carrier:
            // The channel's transport takes its own frames; one that reaches here came from a
            // far transport this channel's does not speak.
            throw ProtocolViolation(.frame, "a carrier frame this channel's transport does not take")
        }
    }

    // MARK: Timers

    /// Starts a control frame that announces an orderly shutdown; the rest is the reason.
    static let stoppingNotice = "agent stopping: "

    /// The agent is stopping (`reason`, e.g. the signal): every far agent hears it on each
    /// channel before the channels close, so its links report why at once.
    func announceStop(_ reason: String) {
        for slot in channels.slots where slot.ready && slot.isLive {
            slot.tellNow(Self.stoppingNotice + reason)
        }
    }

    /// Cross-host links open now (for the hang watch).
    var openLinks: [RemoteLink] { sessions.links.values.filter(\.isOpen) }

    /// The local instance of `link` stopped reading (or reads again): the far agent flags the
    /// far instance's ring, whose sends then report this one not responding.
    func announceReaderStalled(_ link: RemoteLink, _ stalled: Bool) {
        guard let slot = channels.slot(for: link) else { return }
        send(FrameHeader(type: .session, flags: .stalled, session: link.session, destination: link.peerID), [stalled ? 1 : 0], on: slot)
    }

    /// What cross-host links that are gone had carried.
    var retiredTraffic: RetiredTraffic { sessions.retired }

    /// The heartbeat round trips measured since the last call, per peer host (for metrics).
    func takeRoundTrips() -> [(peer: String, microseconds: [UInt32])] {
        channels.peers.values.map { peer in
            defer { peer.rttSamples.removeAll(keepingCapacity: true) }
            return (peer.name, peer.rttSamples)
        }
    }

    /// `peer` went down: its health requests fail with the reason.
    func failHealthRequests(to peer: FabricPeer, reason: String) {
        for (id, request) in healthRequests where request.peer == peer.name {
            healthRequests[id] = nil
            delegate?.fabricHealthReply(to: request.connection, .failure(ControlError(.peerHostDown,
                "host '\(peer.name)' went down before answering: \(reason)")))
        }
    }

    /// Timers: channels (redial, deadlines, heartbeats), session waits, acknowledgements,
    /// health requests.
    private func tick(_ now: UInt64) {
        channels.tick(now)
        sessions.expireWaits(now)
        if !tickLinks.isEmpty {
            let due = tickLinks.take()
            for link in due where link.isRegistered && link.isOpen {
                if link.deliveredMessages != link.acknowledgedDelivered {
                    // Acknowledge deliveries that no credit grant carried.
                    grantCredit(link, force: true)
                } else if !link.backlog.isEmpty, link.flushBacklog() {
                    // A backlog that fits now: a space wake-up missed for any reason costs one
                    // tick, not the link (the grant that follows lets the far sender go on).
                    grantCredit(link)
                }
                if !link.backlog.isEmpty || link.deliveredMessages != link.acknowledgedDelivered { tickLinks.insert(link) }
            }
            tickLinks.recycle(due)
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
        guard let peer = channels.peers[host] else {
            return ControlError(.unknownInstance, "'\(host)' is not a host this one has links to; known: \(channels.peers.keys.sorted().joined(separator: ", "))")
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
    func peerStates() -> [AgentStatus.PeerHostState] { channels.peerStates() }

    // MARK: Requests from the agent

    /// OPEN_LINK for a link to another host (``SessionManager/openLink(instance:link:requestID:waitMilliseconds:)``).
    func openLink(instance: String, link declared: ResolvedLink, requestID: UInt32, waitMilliseconds: UInt32) -> ControlError? {
        sessions.openLink(instance: instance, link: declared, requestID: requestID, waitMilliseconds: waitMilliseconds)
    }

    /// CLOSE_LINK from an instance; false when the id is no link of the fabric's.
    func closeLink(id: LinkID, by instance: String) -> Bool { sessions.closeLink(id: id, by: instance) }

    /// `instance` attached: starts that waited for it complete.
    func instanceAttached(_ instance: String) { sessions.instanceAttached(instance) }

    /// `instance` exited or detached: its links are reset for the far ends.
    func instanceGone(_ instance: String) { sessions.instanceGone(instance) }

    /// The open link carrying `declared`, for status.
    func link(for declared: ResolvedLink) -> RemoteLink? { sessions.link(for: declared) }

    // MARK: Data and credit

    /// Frames what the instance wrote, as far as credit and the channel allow; handles the
    /// instance closing its end.
    ///
    /// With `sendAtOnce` (this link is the only one with frames to send now), a lone message
    /// is written at once rather than queued for the turn's flush: there is nothing to batch
    /// it with, and skipping the queue and the flush's bookkeeping took 14% off the agent's
    /// instructions per round trip.
    func drainLink(_ link: RemoteLink, sendAtOnce: Bool = false) {
        guard link.isOpen, let slot = channels.slot(for: link) else { return }
        if slot.channel.queuedBytes >= Self.outputHighWater {
            if !slot.waitingLinks.contains(where: { $0 === link }) { slot.waitingLinks.append(link) }
            return
        }
        var wroteAll = false
        let result = link.drain(budget: Self.drainBudget) { header, prefix, payload, sentThrough, alone in
            var h = header
            h.destination = link.peerID
            // The payload stays in the ring until the channel has written it (no copy).
            let loan = PayloadLoan(lender: link, position: sentThrough)
            if sendAtOnce && alone {
                wroteAll = slot.channel.sendNow(h, prefix: prefix, payload: payload, loan: loan)
            } else {
                slot.channel.enqueue(h, prefix: prefix, payload: payload, loan: loan)
            }
        }
        slot.lastSent = now
        if !wroteAll || slot.channel.queuedBytes > 0 { dirty.insert(slot) }
        switch result {
        case .empty:
            let state = link.region.state
            if state.kind != .open && state.end == 0 {
                sessions.instanceEnded(link, state)
            } else if polling {
                polledLinks.insert(link)
            } else if !link.armForData() {
                readyLinks.insert(link)
            }
        case .needCredit:
            break  // the far agent's next ACK resumes it
        case .budgetSpent:
            readyLinks.insert(link)
        case .corrupt(let why):
            sessions.endCorrupt(link, "instance wrote a corrupt ring", detail: why,
                       reset: "the ring of '\(link.instance)' on '\(view.host.name)' is corrupt: \(why)")
        }
    }

    /// The instance freed ring space: move backlog in, grant credit, finish a pending close.
    func spaceFreed(_ link: RemoteLink) {
        link.producer.writerArmed.store(0, ordering: .relaxed)
        if link.closeReceived {
            sessions.finishRemoteClose(link)
            return
        }
        link.flushBacklog()
        grantCredit(link)
    }

    /// Grants the far agent the credit that became free (at least a quarter of the window,
    /// or anything when `force`, with the delivered-message count); otherwise, when the far
    /// sender runs short, arms the space doorbell so the instance's reads bring us back.
    func grantCredit(_ link: RemoteLink, force: Bool = false) {
        guard link.isOpen, let slot = channels.slot(for: link) else { return }
        while true {
            if !link.backlog.isEmpty { link.flushBacklog() }
            let grantable = link.grantable
            if grantable >= link.minimumGrant || force {
                let credit = max(0, grantable)
                link.granted += UInt64(credit)
                link.acknowledgedDelivered = link.deliveredMessages
                var delivered = link.deliveredMessages.littleEndian
                var header = sessions.sessionHeader(.acknowledgement, [], link)
                header.credit = UInt32(credit)
                withUnsafeBytes(of: &delivered) { send(header, payload: $0, on: slot) }
                return
            }
            // Nothing worth a grant yet. While the far sender holds credit, its next frame
            // brings us back here: no need to have the instance ring on every read it makes.
            if link.farSenderHasCredit { return }
            if link.armForSpace() { return }
        }
    }

    /// A link left the session table: off this turn's work lists too.
    func forgetWork(of link: RemoteLink) {
        readyLinks.remove(link)
        polledLinks.remove(link)
        received.remove(link)
        tickLinks.remove(link)
    }
}
