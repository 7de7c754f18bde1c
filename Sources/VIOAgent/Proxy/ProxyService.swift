import VIOLinux
import VIOTopology
import VIOWire

/// A declared service as this agent serves it: the listener where its clients connect on
/// this host, the real server's address when the server is on this host, what is known of the
/// server's health, and the service's counters.
final class ProxyService {
    /// What the server's state is known to be.
    enum Health: Equatable {
        case unknown
        case up
        case down(String)

        var word: String {
            switch self {
            case .unknown: "unknown"
            case .up: "up"
            case .down: "down"
            }
        }
    }

    let declared: Service
    /// Where clients connect on this host, if they do.
    let listenEndpoint: ServiceEndpoint?
    /// The listening socket (clients of this host).
    var listener: TCPSocket?
    var listenRegistration: Registration?
    /// UDP: the socket where clients send, and each client's flow by its address.
    var datagramListener: UDPSocket?
    var datagramRegistration: Registration?
    var flowsByClient: [TCPSocket.Address: DatagramFlow] = [:]
    /// The server's address when the server is on this host.
    let serverAddress: TCPSocket.Address?
    /// The server's health: from connects here when it is on this host, from its agent's
    /// service updates otherwise.
    var health = Health.unknown
    /// A connect that only checks the server is up (while it is down or not known).
    var probe: TCPSocket?
    var probeRegistration: Registration?
    /// When the next probe starts, or when the running one gives up.
    var probeDeadline: UInt64 = 0

    /// Counters (``AgentStatus/ServiceState``).
    var connectionsOpen: UInt32 = 0
    var connectionsTotal: UInt64 = 0
    var bytesToServer: UInt64 = 0
    var bytesToClients: UInt64 = 0
    var refused: UInt64 = 0
    var resets: UInt64 = 0
    var datagramsDropped: UInt64 = 0

    init(declared: Service, host: String, serverAddress: TCPSocket.Address?) {
        self.declared = declared
        listenEndpoint = declared.listen.first { $0.host == host }
        self.serverAddress = serverAddress
    }

    var name: String { declared.name }
    var serverHost: String { declared.server.host }
    var isServedHere: Bool { serverAddress != nil }

    /// `HOST ADDRESS:PORT` of an endpoint.
    static func describe(_ e: ServiceEndpoint) -> String {
        "\(e.host) \(e.address.contains(":") ? "[\(e.address)]" : e.address):\(e.port)"
    }

    /// The status entry; `peerDown` is why the server's host is unreachable, if it is.
    func status(peerDown: String?) -> AgentStatus.ServiceState {
        let role = [listenEndpoint != nil ? "listen" : nil, isServedHere ? "server" : nil].compactMap { $0 }.joined(separator: "+")
        var state = health.word
        var reason = ""
        if case .down(let why) = health { reason = why }
        if let peerDown {
            state = "down"
            reason = peerDown
        }
        var s = AgentStatus.ServiceState(name: name, proto: declared.proto.rawValue, role: role,
                                         listen: listenEndpoint.map { Self.describe($0) } ?? "",
                                         server: Self.describe(declared.server), state: state)
        s.reason = reason
        s.connectionsOpen = connectionsOpen
        s.connectionsTotal = connectionsTotal
        s.bytesToServer = bytesToServer
        s.bytesToClients = bytesToClients
        s.refused = refused
        s.resets = resets
        s.datagramsDropped = datagramsDropped
        return s
    }
}
