/// A peer host as a transport reaches it: where its agent listens and how the pair is secured.
public struct TransportPeer: Sendable {
    /// The host's name in the topology.
    public var name: String
    /// Its topology address and fabric port.
    public var address: String
    public var port: UInt16
    /// The key its agent must prove (an encrypted pair); nil for a plaintext pair.
    public var key: [UInt8]?

    /// A peer.
    public init(name: String, address: String, port: UInt16, key: [UInt8]?) {
        self.name = name
        self.address = address
        self.port = port
        self.key = key
    }
}

/// How agents reach each other. One implementation per carrier (TCP today, RDMA queue pairs
/// next, an in-memory one for tests), configured by the agent and chosen per host pair: the
/// fabric takes channels from it, multiplexes links over them and never names the carrier.
///
/// Used by the agent's one thread. A transport that listens gives the loop a descriptor to
/// watch; readable means ``accept()`` has channels to hand out.
public protocol FabricTransport: AnyObject {
    /// For status and logs: `tcp`, `rdma`, `memory`.
    var name: String { get }
    /// What the loop watches for incoming channels; nil when nobody dials this host.
    var listeningDescriptor: Int32? { get }
    /// Where it listens, for logs; nil when not listening.
    var listeningAddress: String? { get }
    /// The next incoming channel and where it came from, nil when none waits. Its far agent
    /// is unknown until that agent's HELLO; until ``FabricChannel/admit()`` the channel takes
    /// only HELLO-size frames.
    func accept() throws(ChannelError) -> (channel: any FabricChannel, from: String)?
    /// Starts a channel to `peer`. It may still be connecting: the loop watches its
    /// descriptor for writability and calls ``FabricChannel/finishConnect()``.
    func dial(_ peer: TransportPeer) throws(ChannelError) -> any FabricChannel
}
