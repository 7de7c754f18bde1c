import VIOLinux

/// The RDMA transport: channels meet on TCP (the agent's TCP transport, TLS and all) and move
/// onto RDMA RC queue pairs (``RDMAChannel``). It listens for both: TCP connections, and RDMA
/// connect requests that must present a ticket one of its channels handed out.
///
/// Used by the agent's one thread.
public final class RDMATransport: FabricTransport {
    public let name = "rdma"
    private let tcp: TCPTransport
    private let rendezvous: RDMARendezvous
    /// The TCP listener and the RDMA listener, watched as one.
    private let sources: Epoll

    /// A transport on `tcp` (which listens when some peer dials this host), with an RDMA
    /// listener on this host's topology `address`. Throws, saying why, when no active RDMA
    /// port serves that address: `transport: auto` then uses TCP for every pair.
    public init(tcp: TCPTransport, address: String, required: Bool) throws(ChannelError) {
        self.tcp = tcp
        let listener = try RDMAListener(address: address)
        rendezvous = RDMARendezvous(localAddress: address, listener: listener)
        self.required = required
        do {
            sources = try Epoll()
            if let fd = tcp.listeningDescriptor { try sources.add(fd, token: 0) }
            try sources.add(listener.descriptor, token: 1)
        } catch {
            throw .system(error)
        }
    }

    /// Whether a pair that cannot move to RDMA fails (`transport: rdma`) rather than stays on TCP.
    public let required: Bool

    /// The RDMA port this host's address is served by, for logs.
    public var deviceDescription: String { rendezvous.listener?.description ?? "none" }

    public var listeningDescriptor: Int32? { tcp.listeningDescriptor == nil ? nil : sources.descriptor }
    public var listeningAddress: String? {
        tcp.listeningAddress.map { "\($0), RDMA on \(rendezvous.localAddress) port \(rendezvous.listener?.port ?? 0)" }
    }

    public func accept() throws(ChannelError) -> (channel: any FabricChannel, from: String)? {
        while let (request, data) = try rendezvous.listener?.next() {
            if let channel = rendezvous.redeem(data) {
                channel.acceptQueuePair(request)
            } else {
                RDMAListener.reject(request)
            }
        }
        guard let (channel, address) = try tcp.acceptTCP() else { return nil }
        return (try RDMAChannel(accepted: channel, rendezvous: rendezvous), address)
    }

    public func dial(_ peer: TransportPeer) throws(ChannelError) -> any FabricChannel {
        try RDMAChannel(dialed: try tcp.dialTCP(peer), to: peer.address, required: required, rendezvous: rendezvous)
    }
}

/// What an RDMA transport shares with its channels: the listener, and the tickets accepted
/// channels handed out to their dialers (each good for one connect request).
final class RDMARendezvous {
    /// 16 random bytes.
    struct Ticket: Hashable {
        static let size = 16
        let bytes: [UInt8]
    }

    /// Starts every connect request's private data, before the ticket.
    static let requestMagic: [UInt8] = Array("VIO1".utf8)

    let localAddress: String
    let listener: RDMAListener?
    /// Why there is no listener (for a declining reply).
    let unavailable: String
    private var tickets: [Ticket: Weak] = [:]

    private struct Weak { weak var channel: RDMAChannel? }

    init(localAddress: String, listener: RDMAListener?, unavailable: String = "") {
        self.localAddress = localAddress
        self.listener = listener
        self.unavailable = unavailable
    }

    func issue(to channel: RDMAChannel) -> Ticket {
        var generator = SystemRandomNumberGenerator()
        let ticket = Ticket(bytes: (0..<Ticket.size).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
        tickets[ticket] = Weak(channel: channel)
        return ticket
    }

    func withdraw(_ ticket: Ticket) { tickets[ticket] = nil }

    /// The channel a connect request's private data names, once (tickets are compared by
    /// hash lookup; a guess must hit one of a few live 128-bit values).
    func redeem(_ data: [UInt8]) -> RDMAChannel? {
        let magic = Self.requestMagic.count
        // The request's private data may come zero-padded to the carrier's size.
        guard data.count >= magic + Ticket.size, Array(data[..<magic]) == Self.requestMagic else { return nil }
        let ticket = Ticket(bytes: Array(data[magic..<(magic + Ticket.size)]))
        guard let entry = tickets.removeValue(forKey: ticket) else { return nil }
        return entry.channel
    }
}
