import VIOSecurity
import VIOTopology
import VIOTransport

/// The transports an agent's fabric takes its channels from: TCP (plain or TLS) always, RDMA
/// when this host chose it and an active port serves its address. Kept for the agent's life so
/// a reload can give peer hosts it adds their transport, and let hosts that newly dial this
/// one in (a listener, their keys).
final class AgentTransports {
    /// What this host uses towards peers, and why.
    private(set) var choice: TransportChoice
    /// TCP: listens when some peer dials this host (and, with RDMA, is where peers meet it).
    private(set) var tcp: TCPTransport
    /// Dials pairs that stay on TCP: `tcp` itself, or one that does not listen when RDMA
    /// takes every incoming channel.
    private let dialing: TCPTransport
    private let rdma: RDMATransport?
    /// This host's TLS identity (nil until some pair is encrypted).
    private var tls: TLSContext?
    private let rekey: TCPChannel.RekeyPolicy
    private let host: Host

    /// Builds the transports for `view`: listens only if some peer dials this host (a host
    /// behind NAT never accepts); under `auto`, a host where no RDMA port serves its address
    /// uses TCP and `choice` says why.
    init(view: HostView, defaults: Defaults, choice: TransportChoice, tls: TLSContext?) throws(AgentError) {
        self.choice = choice
        self.tls = tls
        host = view.host
        rekey = TCPChannel.RekeyPolicy(bytes: UInt64(defaults.rekeyAfter.bytes),
                                       nanoseconds: UInt64(defaults.rekeyIntervalSeconds) * 1_000_000_000)
        var settings = TCPTransport.Configuration(
            listen: view.peers.contains { !$0.weDial } ? (view.host.address, view.host.port) : nil,
            tls: tls, acceptedKeys: Fabric.acceptedKeys(of: view).map(\.key),
            acceptsPlaintext: view.peers.contains { !$0.weDial && $0.security == .plaintext }, rekey: rekey)
        do { tcp = try TCPTransport(settings) } catch { throw .system(error, doing: Self.listening(view.host)) }
        var rdma: RDMATransport?
        if choice.kind == "rdma" {
            do {
                rdma = try RDMATransport(tcp: tcp, address: view.host.address, required: view.host.transport == .rdma)
                self.choice.reason += "; \(rdma!.deviceDescription) serves \(view.host.address)"
            } catch {
                guard view.host.transport != .rdma else {
                    throw .transportUnavailable("host '\(view.host.name)': transport 'rdma' requested, but \(error); set 'transport: auto' or 'tcp' to run without RDMA")
                }
                self.choice = TransportChoice(kind: "tcp", device: nil, reason: "auto: \(error)")
            }
        }
        self.rdma = rdma
        if rdma != nil {
            settings.listen = nil
            do { dialing = try TCPTransport(settings) } catch { throw .system(error, doing: Self.listening(view.host)) }
        } else {
            dialing = tcp
        }
    }

    private static func listening(_ host: Host) -> String {
        "cannot listen for other agents on \(host.address):\(host.port) (is another agent running, or is the address not on this host?)"
    }

    /// The transport for channels to `peer`, and why.
    func forPeer(_ peer: PeerHost) -> (transport: any FabricTransport, reason: String) {
        let (kind, reason) = TransportSelector.forPair(local: choice, peer: peer.host.name, peerSetting: peer.host.transport.rawValue)
        if kind == "rdma", let rdma { return (rdma, reason) }
        return (dialing, reason)
    }

    /// What the fabric starts with, for `view`'s peers.
    func forFabric(_ view: HostView) -> FabricTransports {
        FabricTransports(perPeer: Dictionary(view.peers.map { ($0.host.name, forPeer($0)) }, uniquingKeysWith: { a, _ in a }),
                         listener: rdma)
    }

    /// Gets ready for the peers a reload added (the fabric's ``ChannelManager`` says what it
    /// now carries): loads the TLS identity if a pair is now encrypted, gives the TCP
    /// transports the accepted keys (`acceptedKeys`, in the fabric's order) and whether
    /// plaintext is accepted, and listens if a host dials this one for the first time.
    /// Returns a transport that listens from now on (for the fabric to watch), or nil.
    func prepare(for channels: ChannelManager, identity: () throws(AgentError) -> TLSContext?) throws(AgentError) -> (any FabricTransport)? {
        if tls == nil, channels.encryptsAny { tls = try identity() }
        let keys = channels.acceptPeersAdded(), plaintext = channels.acceptsPlaintext
        for t in [tcp, dialing] { t.updateAcceptance(tls: tls, acceptedKeys: keys, acceptsPlaintext: plaintext) }
        guard channels.acceptsAny, tcp.listeningDescriptor == nil else { return nil }
        guard rdma == nil else {
            throw .transportUnavailable("a host now dials '\(host.name)', whose RDMA transport was started without a TCP listener; restart the agent")
        }
        let listener: TCPTransport
        do {
            listener = try TCPTransport(.init(listen: (host.address, host.port), tls: tls, acceptedKeys: keys,
                                              acceptsPlaintext: plaintext, rekey: rekey))
        } catch { throw .system(error, doing: Self.listening(host)) }
        tcp = listener
        return listener
    }
}
