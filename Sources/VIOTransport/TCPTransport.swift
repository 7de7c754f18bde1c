import VIOLinux
import VIOSecurity

/// The TCP transport: channels are TCP connections, inside TLS 1.3 for encrypted host pairs
/// (keys from the topology, rekeyed per ``TCPChannel/RekeyPolicy``) and plaintext otherwise.
public final class TCPTransport: FabricTransport {
    /// What the agent configures it with.
    public struct Configuration {
        /// Where to listen (the host's topology address and port); nil when nobody dials it.
        public var listen: (address: String, port: UInt16)?
        /// This host's TLS identity, when some pair is encrypted.
        public var tls: TLSContext?
        /// Keys of the hosts that may connect over TLS; an accepted channel's
        /// ``FabricChannel/authenticatedPeer`` indexes this list.
        public var acceptedKeys: [[UInt8]]
        /// Whether some host may connect in plaintext.
        public var acceptsPlaintext: Bool
        /// When encrypted channels ask for new keys.
        public var rekey: TCPChannel.RekeyPolicy

        /// A configuration.
        public init(listen: (address: String, port: UInt16)?, tls: TLSContext?, acceptedKeys: [[UInt8]],
                    acceptsPlaintext: Bool, rekey: TCPChannel.RekeyPolicy) {
            self.listen = listen
            self.tls = tls
            self.acceptedKeys = acceptedKeys
            self.acceptsPlaintext = acceptsPlaintext
            self.rekey = rekey
        }
    }

    private final class Listener {
        let socket: TCPSocket
        let address: TCPSocket.Address
        init(_ socket: consuming TCPSocket, address: TCPSocket.Address) {
            self.socket = socket
            self.address = address
        }
    }

    private var configuration: Configuration
    private let listener: Listener?

    public let name = "tcp"

    /// A transport; listens now when `configuration.listen` is set.
    public init(_ configuration: Configuration) throws(SystemError) {
        self.configuration = configuration
        if let (host, port) = configuration.listen {
            let address = try TCPSocket.resolve(host, port: port)
            listener = Listener(try TCPSocket.listen(on: address), address: address)
        } else {
            listener = nil
        }
    }

    /// Who may connect from now on (a reload changed the hosts that dial this one); channels
    /// accepted before keep what they were accepted with. `acceptedKeys` only grows, so an
    /// accepted channel's ``FabricChannel/authenticatedPeer`` keeps meaning the same host.
    public func updateAcceptance(tls: TLSContext?, acceptedKeys: [[UInt8]], acceptsPlaintext: Bool) {
        configuration.tls = tls
        configuration.acceptedKeys = acceptedKeys
        configuration.acceptsPlaintext = acceptsPlaintext
    }

    public var listeningDescriptor: Int32? { listener?.socket.fd.rawValue }
    public var listeningAddress: String? { listener.map { "\($0.address)" } }

    public func accept() throws(ChannelError) -> (channel: any FabricChannel, from: String)? {
        try acceptTCP()
    }

    /// ``accept()``, typed: the RDMA transport meets its peers on these.
    func acceptTCP() throws(ChannelError) -> (channel: TCPChannel, from: String)? {
        guard let listener else { return nil }
        var address = TCPSocket.Address()
        let accepted: TCPSocket?
        do { accepted = try listener.socket.accept(peer: &address) } catch { throw .system(error) }
        guard let socket = accepted else { return nil }
        let c = configuration
        let channel = TCPChannel(accepted: socket, peer: "\(address)", tls: c.acceptedKeys.isEmpty ? nil : c.tls,
                                 allowedKeys: c.acceptedKeys, rekey: c.rekey, plaintextAllowed: c.acceptsPlaintext)
        return (channel, "\(address)")
    }

    public func dial(_ peer: TransportPeer) throws(ChannelError) -> any FabricChannel {
        try dialTCP(peer)
    }

    /// ``dial(_:)``, typed.
    func dialTCP(_ peer: TransportPeer) throws(ChannelError) -> TCPChannel {
        let address: TCPSocket.Address
        do { address = try TCPSocket.resolve(peer.address, port: peer.port) } catch { throw .system(error) }
        if let key = peer.key {
            guard let tls = configuration.tls else {
                throw .authentication("the pair with '\(peer.name)' is encrypted, but this agent has no key loaded")
            }
            return try TCPChannel.dial(address, tls: (tls, key, configuration.rekey))
        }
        return try TCPChannel.dial(address)
    }
}
