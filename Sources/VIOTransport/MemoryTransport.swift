import SystemPackage
import VIOLinux
import VIOWire

/// Agents joined inside one process: a ``MemoryTransport`` per agent, channels that are byte
/// queues. For tests of the inter-host protocol that run in milliseconds without sockets,
/// root or namespaces, and that can cut, stall or corrupt what a channel carries.
///
/// Not thread-safe: every agent of a network runs on the test's one thread.
public final class MemoryNetwork {
    /// Listening transports by "address:port".
    fileprivate var listeners: [String: MemoryTransport] = [:]
    /// Every channel pair made, in order: tests reach a channel's wire through it.
    public private(set) var wires: [MemoryWire] = []
    /// While false, dials fail as if the network were down.
    public var reachable = true

    /// An empty network.
    public init() {}

    fileprivate func connect(from dialer: MemoryTransport, to key: String) throws(ChannelError) -> MemoryChannel {
        guard reachable, let listener = listeners[key] else {
            throw .system(SystemError("connect", .connectionRefused, detail: key))
        }
        let wire = try MemoryWire(dialerIdentity: dialer.identity)
        wires.append(wire)
        listener.pending.append(wire)
        EventDescriptor.ring(listener.doorbell.rawValue)
        return MemoryChannel(wire: wire, side: 0, authenticatedPeer: nil, maximumFramePayload: dialer.maximumFramePayload,
                             polled: dialer.polled)
    }

    /// Cuts every wire (each end reads end of stream) and refuses new dials until
    /// ``reachable`` is set again.
    public func partition() {
        reachable = false
        for wire in wires { wire.cut() }
    }
}

/// Both directions of one channel: bytes in flight each way, a doorbell per end.
public final class MemoryWire {
    /// Bytes sent by side 0 (the dialer) not yet read by side 1, and the reverse.
    fileprivate var queues: ([UInt8], [UInt8]) = ([], [])
    private let doorbell0: OwnedFileDescriptor
    private let doorbell1: OwnedFileDescriptor
    /// The dialer's identity key (nil: an unauthenticated, plaintext dialer).
    fileprivate let dialerIdentity: [UInt8]?
    /// Cut: both ends read end of stream.
    public private(set) var isCut = false
    /// Ends that have let go of their channel.
    fileprivate var closed = (false, false)

    fileprivate init(dialerIdentity: [UInt8]?) throws(ChannelError) {
        do {
            doorbell0 = try EventDescriptor.create()
            doorbell1 = try EventDescriptor.create()
        } catch { throw .system(error) }
        self.dialerIdentity = dialerIdentity
    }

    fileprivate func doorbell(_ side: Int) -> Int32 { side == 0 ? doorbell0.rawValue : doorbell1.rawValue }

    /// Delivers `bytes` to side `side` as if its peer had sent them (a hostile or broken
    /// agent's frames).
    public func inject(_ bytes: [UInt8], toSide side: Int) {
        if side == 0 { queues.1 += bytes } else { queues.0 += bytes }
        EventDescriptor.ring(doorbell(side))
    }

    /// Ends the wire: each side reads end of stream.
    public func cut() {
        isCut = true
        EventDescriptor.ring(doorbell0.rawValue)
        EventDescriptor.ring(doorbell1.rawValue)
    }
}

/// One agent's memory transport. The agent's identity key stands in for a TLS handshake: an
/// accepting transport reports which of its `acceptedKeys` the dialer holds.
public final class MemoryTransport: FabricTransport {
    public let name = "memory"
    private let network: MemoryNetwork
    fileprivate let identity: [UInt8]?
    private let acceptedKeys: [[UInt8]]
    private let listenKey: String?
    fileprivate let doorbell: OwnedFileDescriptor
    fileprivate var pending: [MemoryWire] = []
    /// The largest frame payload its channels report they carry (tests of frame sizing).
    fileprivate let maximumFramePayload: Int
    /// Its channels must be polled (tests of a transport without an event descriptor).
    fileprivate let polled: Bool

    /// A transport in `network`; listens on `listen` ("address:port") when given. `identity`
    /// is this agent's key (shown to the hosts it dials); `acceptedKeys` are the keys of the
    /// hosts that may dial it authenticated.
    public init(network: MemoryNetwork, listen: String?, identity: [UInt8]?, acceptedKeys: [[UInt8]],
                maximumFramePayload: Int = FrameHeader.maximumPayload, polled: Bool = false) throws(SystemError) {
        self.maximumFramePayload = maximumFramePayload
        self.polled = polled
        self.network = network
        self.identity = identity
        self.acceptedKeys = acceptedKeys
        listenKey = listen
        doorbell = try EventDescriptor.create()
        if let listen { network.listeners[listen] = self }
    }

    public var listeningDescriptor: Int32? { listenKey == nil ? nil : doorbell.rawValue }
    public var listeningAddress: String? { listenKey }

    public func accept() throws(ChannelError) -> (channel: any FabricChannel, from: String)? {
        EventDescriptor.drain(doorbell.rawValue)
        guard !pending.isEmpty else { return nil }
        let wire = pending.removeFirst()
        let proven = wire.dialerIdentity.flatMap { key in acceptedKeys.firstIndex(of: key) }
        return (MemoryChannel(wire: wire, side: 1, authenticatedPeer: proven, maximumFramePayload: maximumFramePayload, polled: polled),
                "memory wire \(network.wires.count)")
    }

    public func dial(_ peer: TransportPeer) throws(ChannelError) -> any FabricChannel {
        try network.connect(from: self, to: "\(peer.address):\(peer.port)")
    }
}

/// One end of a ``MemoryWire``: frames are copied into the peer's queue when flushed.
public final class MemoryChannel: FabricChannel {
    private let wire: MemoryWire
    private let side: Int
    private var output: [UInt8] = []
    private var decoder = FrameDecoder(admitted: false)
    private var admitted = false
    public private(set) var counters = ChannelCounters()
    public let authenticatedPeer: Int?
    private let maximumFramePayload: Int
    public let mustBePolled: Bool

    fileprivate init(wire: MemoryWire, side: Int, authenticatedPeer: Int?, maximumFramePayload: Int, polled: Bool) {
        self.maximumFramePayload = maximumFramePayload
        mustBePolled = polled
        self.wire = wire
        self.side = side
        self.authenticatedPeer = authenticatedPeer
    }

    deinit { close(reason: "released") }

    /// The far end reads end of stream, as after a socket's close.
    public func close(reason: String) {
        if side == 0 { wire.closed.0 = true } else { wire.closed.1 = true }
        EventDescriptor.ring(wire.doorbell(1 - side))
    }

    /// The other end let its channel go.
    private var farEndClosed: Bool { side == 0 ? wire.closed.1 : wire.closed.0 }

    public var descriptor: Int32 { wire.doorbell(side) }
    public var capabilities: ChannelCapabilities {
        ChannelCapabilities(transport: "memory", maximumFramePayload: maximumFramePayload, encrypted: false)
    }
    public var peerDescription: String { "memory wire, side \(side)" }
    public var isConnected: Bool { true }
    public var securityDescription: String? { nil }
    public func finishConnect() throws(ChannelError) {}
    public func admit() { admitted = true }

    public func enqueue(_ header: FrameHeader, prefix: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, loan: PayloadLoan?) {
        // A multiplexer that ignored the capability is a bug: fail loudly in the tests.
        precondition(prefix.count + payload.count <= maximumFramePayload,
                     "a \(prefix.count + payload.count)-byte frame on a channel that carries \(maximumFramePayload)")
        var h = header
        h.length = UInt32(prefix.count + payload.count)
        var w = ByteWriter()
        h.encode(to: &w)
        output += w.bytes
        output += prefix
        output += payload
        counters.framesSent &+= 1
        // Copied: the ring space can go back at once.
        if let loan, let position = loan.position { loan.lender.sent(through: position) }
    }

    public func sendNow(_ header: FrameHeader, prefix: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, loan: PayloadLoan?) -> Bool {
        enqueue(header, prefix: prefix, payload: payload, loan: loan)
        return (try? flush()) ?? false
    }

    public var queuedBytes: Int { output.count }

    public func flush() throws(ChannelError) -> Bool {
        guard !wire.isCut, !farEndClosed else {
            throw .system(SystemError("send", .brokenPipe, detail: peerDescription))
        }
        guard !output.isEmpty else { return true }
        counters.bytesSent &+= UInt64(output.count)
        if side == 0 { wire.queues.0 += output } else { wire.queues.1 += output }
        output.removeAll(keepingCapacity: true)
        EventDescriptor.ring(wire.doorbell(1 - side))
        return true
    }

    public func receive(budget: Int, place: (FrameHeader) -> PayloadPlacement?,
                        _ body: (FrameHeader, UnsafeRawBufferPointer) -> Bool) throws(ChannelError) -> Bool {
        EventDescriptor.drain(wire.doorbell(side))
        let incoming: [UInt8]
        if side == 0 { incoming = wire.queues.1; wire.queues.1.removeAll() } else { incoming = wire.queues.0; wire.queues.0.removeAll() }
        if !incoming.isEmpty {
            counters.bytesReceived &+= UInt64(incoming.count)
            decoder.feed(incoming)
        }
        while true {
            if admitted != decoder.isAdmitted { decoder.admit() }
            let more: Bool?
            do { more = try decoder.nextFrame { header, payload in body(header, payload) } } catch {
                throw .protocolViolation("\(error)")
            }
            guard let more else { break }
            counters.framesReceived &+= 1
            if !more { return true }
        }
        if wire.isCut || farEndClosed { throw .closedByPeer }
        return false
    }
}
