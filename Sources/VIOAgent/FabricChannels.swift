import Logging
import VIOLinux
import VIOTopology
import VIOTransport
import VIOWire

/// The fabric's channels to every peer host: takes them from the transports (dial, accept),
/// authenticates them with HELLO, keeps them alive with heartbeats, drops them on timeouts
/// and redials with backoff. What the channels carry is the sessions' and the multiplexer's
/// business (``SessionManager``, ``Fabric``).
final class ChannelManager {
    static let initialBackoffMilliseconds: UInt64 = 50
    static let maximumBackoffMilliseconds: UInt64 = 1000
    /// Accepted connections that have not said HELLO yet, at most: beyond, the one that waited
    /// longest is dropped. With the small frames such a channel takes (``FrameDecoder/admit()``)
    /// and the HELLO deadline, a flood of connections costs the agent a bounded few MiB.
    static let maximumPendingChannels = 64
    /// The longest an accepted connection may take to say HELLO (the peer timeout when shorter).
    static let maximumHelloNanoseconds: UInt64 = 5_000_000_000

    /// The fabric this belongs to (set once it exists; it outlives this).
    unowned(unsafe) var fabric: Fabric!
    /// Hosts that may connect over an authenticated channel, in the order of the keys the
    /// transports were given (``Fabric/acceptedKeys(of:)``): an accepted channel's proven key indexes it.
    /// Only ever appended to (a reload adds hosts), so an index stays valid for channels
    /// accepted before.
    private(set) var acceptedHosts: [String]
    /// The transports that listen, watched by the loop.
    private var listening: [any FabricTransport]
    /// Every peer host, by name.
    private(set) var peers: [String: FabricPeer] = [:]
    /// Every channel, connecting, waiting for HELLO or ready.
    private(set) var slots: [ChannelSlot] = []
    /// Connections waiting for HELLO dropped because ``maximumPendingChannels`` were waiting,
    /// since the last warning about it.
    private var droppedPending = 0
    private var lastDropWarning: UInt64 = 0

    /// The number the next peer added gets (never reused: the session table keys by it).
    private var nextPeerNumber: UInt32 = 1

    init(view: HostView, topology: Topology, transports: FabricTransports, logger: Logger) {
        let accepted = Fabric.acceptedKeys(of: view)
        acceptedHosts = accepted.map(\.host)
        acceptedKeys = accepted.map(\.key)
        listening = transports.all.filter { $0.listeningDescriptor != nil }
        for p in view.peers {
            guard let (transport, reason) = transports.perPeer[p.host.name] else { continue }
            add(p, of: view.host.name, topology: topology, transport: transport, reason: reason, logger: logger)
        }
    }

    /// Starts keeping channels to `p` (dialed by the next tick, or accepted when it dials).
    func add(_ p: PeerHost, of host: String, topology: Topology, transport: any FabricTransport, reason: String, logger: Logger) {
        peers[p.host.name] = FabricPeer(host: p.host, number: nextPeerNumber, dials: p.weDial, channels: p.channels,
                                        security: p.security, transport: transport, transportReason: reason,
                                        fingerprint: TopologyFingerprint.of(topology.pairIdentity(host, p.host.name)))
        nextPeerNumber += 1
        logger.info("peer host transport", metadata: ["peer": "\(p.host.name)", "transport": "\(transport.name)",
                                                     "why": "\(reason)"])
    }

    /// Watches every listening transport; on failure none stays watched (a fabric that fails
    /// to start leaves nothing on the loop that refers to it).
    func listen() throws(SystemError) {
        do {
            for transport in listening { try watch(transport) }
        } catch {
            stopListening()
            throw error
        }
    }

    private var listenRegistrations: [Registration] = []

    private func watch(_ transport: any FabricTransport) throws(SystemError) {
        listenRegistrations.append(try loop.register(transport.listeningDescriptor!) { [unowned self] _ in self.acceptAll(from: transport) })
        logger.info("fabric listening", metadata: ["address": "\(transport.listeningAddress ?? "?")",
                                                   "transport": "\(transport.name)"])
    }

    private func stopListening() {
        for registration in listenRegistrations { loop.unregister(registration) }
        listenRegistrations = []
    }

    /// A transport that listens from now on (a reload added the first host that dials this one).
    func addListener(_ transport: any FabricTransport) throws(SystemError) {
        guard transport.listeningDescriptor != nil, !listening.contains(where: { $0 === transport }) else { return }
        try watch(transport)
        listening.append(transport)
    }

    /// The keys of ``acceptedHosts``, in the same order (what the transports were given).
    private(set) var acceptedKeys: [[UInt8]] = []

    /// After a reload added peers: the hosts that may now connect over TLS are appended with
    /// their keys (as the peers are carried, so a peer whose key changed keeps its old one
    /// until a restart). A host no longer accepted keeps its entry and key, so indexes stay;
    /// HELLO refuses it, as it is no peer that dials here. Returns the keys for the transports.
    func acceptPeersAdded() -> [[UInt8]] {
        for peer in peers.values.sorted(by: { $0.name < $1.name })
        where !peer.dials && peer.security == .tls && !acceptedHosts.contains(peer.name) {
            guard let key = peer.host.key else { continue }
            acceptedHosts.append(peer.name)
            acceptedKeys.append(key.bytes)
        }
        return acceptedKeys
    }

    /// Whether a carried peer dials this host in plaintext.
    var acceptsPlaintext: Bool { peers.values.contains { !$0.dials && $0.security == .plaintext } }
    /// Whether some carried peer dials this host.
    var acceptsAny: Bool { peers.values.contains { !$0.dials } }
    /// Whether some carried pair is encrypted.
    var encryptsAny: Bool { peers.values.contains { $0.security == .tls } }

    /// A reload removed `name`: its channels close, its links and connections report the host
    /// down with `reason`, and it is neither dialed nor accepted any more.
    func removePeer(_ name: String, reason: String) {
        guard let peer = peers.removeValue(forKey: name) else { return }
        for case let slot? in peer.slots where slot.ready && slot.isLive {
            slot.tellNow("'\(view.host.name)' no longer has links or services with '\(name)': \(reason)")
        }
        hostDown(peer, reason: reason)
        logger.notice("peer host removed", metadata: ["peer": "\(name)", "reason": "\(reason)"])
    }

    // The fabric's context, as the moved code reads it.
    private var view: HostView { fabric.view }
    private var topology: Topology { fabric.topology }
    private var logger: Logger { fabric.logger }
    private var loop: EventLoop { fabric.loop }
    private var peerTimeoutNanoseconds: UInt64 { fabric.peerTimeoutNanoseconds }
    private var heartbeatNanoseconds: UInt64 { fabric.heartbeatNanoseconds }
    private func clock() -> UInt64 { fabric.clock() }
    private func send(_ header: FrameHeader, _ payload: [UInt8] = [], on slot: ChannelSlot) { fabric.send(header, payload, on: slot) }

    /// A channel still connecting may have finished (its descriptor turned writable, or it is
    /// polled): once connected it says HELLO. False when it failed (dropped).
    func finishConnecting(_ slot: ChannelSlot) -> Bool {
        do {
            try slot.channel.finishConnect()
        } catch {
            dropChannel(slot, reason: "cannot connect to \(slot.peer?.name ?? "?"): \(error)")
            return false
        }
        if slot.channel.isConnected { sendHello(slot) }
        return true
    }

    private func acceptAll(from transport: any FabricTransport) {
        while true {
            let accepted: (channel: any FabricChannel, from: String)?
            do { accepted = try transport.accept() } catch {
                logger.warning("fabric accept failed: \(error)", metadata: ["transport": "\(transport.name)"])
                return
            }
            guard let (channel, address) = accepted else { return }
            let now = clock()
            if pendingChannels >= Self.maximumPendingChannels,
               let oldest = slots.filter({ $0.peer == nil }).min(by: { $0.createdAt < $1.createdAt }) {
                // The one that waited longest goes, not the newcomer: connections held open
                // without a word cannot keep a real peer (whose HELLO follows its connect
                // within a round trip) out for good.
                droppedPending += 1
                forget(oldest, reason: "too many connections waiting for HELLO")
                if now - lastDropWarning >= 1_000_000_000 {
                    logger.warning("fabric connections dropped: too many waiting for HELLO",
                                   metadata: ["dropped": "\(droppedPending)", "waiting": "\(pendingChannels)",
                                              "latest_from": "\(address)"])
                    droppedPending = 0
                    lastDropWarning = now
                }
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
        if channel.mustBePolled {
            // Nothing to watch: the multiplexer looks at it every turn.
            fabric.polledChannels.append(slot)
            return slot
        }
        do {
            // Events go straight to the multiplexer (the data path); unowned(unsafe): the fabric
            // outlives every registration on its loop, and a checked reference would cost a
            // retain and release per event (measured: 1.2% of the agent's instructions per
            // round trip).
            let fabric: Fabric = self.fabric
            slot.registration = try loop.register(slot.channel.descriptor, writable: slot.watchingWritable) { [unowned(unsafe) fabric] event in
                fabric.channelEvent(slot, event)
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
                                 channel: UInt16(slot.index), channels: UInt16(peer.channelCount), fingerprint: peer.fingerprint)
        send(FrameHeader(type: .helloRequest), hello.encoded(), on: slot)
    }

    /// The ready channel a session uses, if its peer host is up.
    func slot(for link: RemoteLink) -> ChannelSlot? { link.host.readySlot(link.channel) }

    /// Closes a channel; if it was part of a peer's fabric, that host is down.
    func dropChannel(_ slot: ChannelSlot, reason: String) {
        guard slot.isLive else { return }
        // Logged before the channel closes: the far end (a test reading this log among them)
        // sees the close only after the reason is written.
        guard let peer = slot.peer, slot.index >= 0, peer.slots[slot.index] === slot else {
            logger.warning("fabric connection dropped", metadata: ["from": "\(slot.channel.peerDescription)", "reason": "\(reason)"])
            forget(slot, reason: reason)
            return
        }
        logger.warning("fabric channel dropped", metadata: ["peer": "\(peer.name)", "channel": "\(slot.index)",
                                                           "reason": "\(reason)"])
        forget(slot, reason: reason)
        peer.retire(slot)
        peer.slots[slot.index] = nil
        hostDown(peer, reason: reason)
    }

    /// Takes a channel out of the fabric: the slot table, epoll and the work lists (items
    /// still on a list taken this turn see `isLive` false). False if it was already out.
    @discardableResult
    private func forget(_ slot: ChannelSlot, reason: String) -> Bool {
        guard let index = slots.firstIndex(where: { $0 === slot }) else { return false }
        slots.remove(at: index)
        slot.isLive = false
        slot.channel.close(reason: reason)
        if let registration = slot.registration { loop.unregister(registration) }
        fabric.polledChannels.removeAll { $0 === slot }
        fabric.dirty.remove(slot)
        fabric.unreadChannels.remove(slot)
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
            forget(slot, reason: reason)
        }
        peer.slots = Array(repeating: nil, count: peer.channelCount)
        let now = clock()
        if peer.dials {
            for index in 0..<peer.channelCount { scheduleRedial(peer, index: index, now: now) }
        }
        let affected = fabric.sessions.hostDown(peer)
        fabric.proxy?.hostDown(peer, reason: reason)
        fabric.failHealthRequests(to: peer, reason: reason)
        if wasUp || affected > 0 {
            logger.error("peer host down", metadata: ["peer": "\(peer.name)", "reason": "\(reason)",
                                                      "links": "\(affected)"])
        }
    }

    func handshake(_ header: FrameHeader, _ payload: [UInt8], on slot: ChannelSlot) throws(ProtocolViolation) {
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
                throw refuse("host '\(hello.from)' has no links or services with '\(view.host.name)' in the topology")
            }
            guard !peer.dials else { throw refuse("'\(view.host.name)' dials '\(peer.name)', not the other way (nat roles)") }
            if let proven = slot.channel.authenticatedPeer {
                guard proven < acceptedHosts.count, acceptedHosts[proven] == peer.name else {
                    throw refuse("the channel proved the key of host '\(proven < acceptedHosts.count ? acceptedHosts[proven] : "?")', not of '\(peer.name)'")
                }
            } else if peer.security == .tls {
                throw refuse("the pair \(view.host.name)–\(peer.name) is encrypted (security: tls), but this channel is not authenticated")
            }
            guard hello.revision == ChannelHello.currentRevision else {
                throw refuse("'\(hello.from)' speaks fabric protocol revision \(hello.revision), this agent \(ChannelHello.currentRevision); run the same VIO version on both hosts")
            }
            guard hello.fingerprint == peer.fingerprint else {
                throw refuse("the two topology files differ in what the pair needs (cluster, the hosts' keys or the pair's security); give both agents the same file")
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
        fabric.sendDeclarations(to: peer)
        fabric.sessions.hostUp(peer)
        fabric.proxy?.hostUp(peer)
    }

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
            s.creditStalls = peer.creditStalls + fabric.sessions.links.values.filter { $0.host === peer }.reduce(0) { $0 + $1.creditStalls }
            s.reconnects = peer.reconnects
            s.linksOpen = UInt32(fabric.sessions.links.values.filter { $0.host === peer && $0.isOpen }.count)
            s.lastError = peer.lastError
            s.differences = peer.differences
            s.keyUpdates = totals.keyUpdates
            s.payloadsPulled = totals.payloadsPulled
            let live = peer.slots.compactMap { $0 }.filter(\.ready)
            // What carries the channels now (an RDMA channel moves after HELLO, or says why not).
            s.transport = live.lazy.compactMap { $0.channel.carrierDescription }.first
                ?? "\(live.first?.channel.capabilities.transport ?? peer.transport.name): \(peer.transportReason)"
            s.encrypted = !live.isEmpty && live.allSatisfy { $0.channel.capabilities.encrypted }
            s.security = live.compactMap { $0.channel.securityDescription }.first
                ?? (peer.security == .tls ? "tls" : "plaintext")
            return s
        }
    }

    // MARK: Timers

    /// Redials missing channels, drops channels past their deadlines, sends heartbeats.
    func tick(_ now: UInt64) {
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
            if let carrier = slot.channel.carrierDescription, carrier != slot.carrier, let peer = slot.peer {
                // Checked here, not per frame: the move to RDMA is logged within a tick.
                slot.carrier = carrier
                logger.info("channel carrier", metadata: ["peer": "\(peer.name)", "channel": "\(slot.index)",
                                                          "carrier": "\(carrier)"])
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
    }
}
