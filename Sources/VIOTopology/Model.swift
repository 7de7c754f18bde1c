/// A whole cluster as declared in one topology file. The same file is given to every agent.
public struct Topology: Sendable, Equatable {
    /// The cluster's name, shown in status output and used to tell clusters apart.
    public var cluster: String
    /// The topology format version this file was written for (``Topology/formatVersion``).
    public var version: Int
    /// Values used wherever a host, instance or link leaves a setting out.
    public var defaults: Defaults
    /// The machines, each running one `vio-agent`.
    public var hosts: [Host]
    /// The database instances (or containers) that attach to an agent.
    public var instances: [Instance]
    /// Which instances may talk to which; groups are expanded to pairs.
    public var links: [Link]
    /// TCP/UDP services carried through the fabric in proxy mode.
    public var services: [Service]
    /// Per host pair settings (channel security).
    public var hostPairs: [HostPair] = []

    /// The only format version this build reads.
    public static let formatVersion = 1

    /// The host with this name, if declared.
    public func host(named name: String) -> Host? { hosts.first { $0.name == name } }
    /// The instance with this name, if declared.
    public func instance(named name: String) -> Instance? { instances.first { $0.name == name } }
}

/// Cluster-wide defaults; every field has a built-in value.
public struct Defaults: Sendable, Equatable {
    /// Bytes of each direction's ring of a link. Power of two.
    public var ringSize: ByteSize = .mebibytes(1)
    /// The largest message a link accepts; larger than the ring means fragmented.
    public var maxMessageSize: ByteSize = .mebibytes(64)
    /// The TCP/RDMA port agents listen on for each other.
    public var port: UInt16 = 7300
    /// How hosts reach each other.
    public var transport: Transport = .auto
    /// Physical channels kept to each peer host.
    public var channels: Int = 2
    /// Interval between heartbeats on an idle channel, in milliseconds.
    public var heartbeatIntervalMilliseconds: Int = 200
    /// Silence after which a peer host is declared down, in milliseconds.
    public var peerTimeoutMilliseconds: Int = 1000
    /// How channels between hosts are protected unless `host_pairs` says otherwise.
    public var security: Security = .tls
    /// Bytes sent on an encrypted channel after which its keys are updated.
    public var rekeyAfter: ByteSize = .gibibytes(1)
    /// Seconds after which an encrypted channel's keys are updated, whatever the traffic.
    public var rekeyIntervalSeconds: Int = 3600
    /// How long an agent keeps polling after activity before it sleeps, in microseconds
    /// (0: it sleeps at once); -1 (`agent_poll_us: auto`, the default): a window the agent
    /// learns from the traffic, up to 200 µs, nothing when idle or where polling does not
    /// make the traffic faster.
    public var agentPollMicroseconds: Int = -1
    /// Where agents serve Prometheus metrics (`ADDRESS:PORT`); nil: no metrics endpoint.
    public var metricsListen: String?
    /// How long an instance may leave data unread in a link's ring before its peers are told
    /// it is not responding, in milliseconds (0: never).
    public var notRespondingMilliseconds: Int = 5000

    /// The built-in defaults.
    public init() {}
}

/// A machine running one `vio-agent`.
public struct Host: Sendable, Equatable {
    /// Unique name; `vio-agent --host NAME` picks it.
    public var name: String
    /// IP address (or DNS name) other agents use to reach this one.
    public var address: String
    /// Port other agents connect to.
    public var port: UInt16
    /// Which physical transport to use towards this host.
    public var transport: Transport
    /// The RDMA device to use (e.g. `mlx5_0`); `nil` picks the first one found.
    public var rdmaDevice: String?
    /// Whether this host can accept connections or only dial out.
    public var nat: NATRole
    /// Physical channels kept to each peer host.
    public var channels: Int
    /// The agent's control socket path; `nil` means the built-in default.
    public var controlSocket: String?
    /// The host's public key, which its agent proves on every encrypted channel.
    public var key: HostKey?
    /// Where the host's agent finds its private key; `nil` means ``Topology/defaultKeyFile(host:)``.
    public var keyFile: String?
    /// How long this host's agent polls after activity, in microseconds (see ``Defaults``).
    public var agentPollMicroseconds: Int
    /// Where this host's agent serves Prometheus metrics (`ADDRESS:PORT`); nil: nowhere.
    public var metricsListen: String? = nil
    /// Where the host was declared.
    public var location: SourceLocation
}

/// The physical transport between agents.
public enum Transport: String, Sendable, Equatable, CaseIterable {
    /// RDMA when the host has a device, TCP otherwise; the agent logs which and why.
    case auto
    /// RDMA RC queue pairs only; the agent refuses to start without a device.
    case rdma
    /// TCP connections only.
    case tcp
}

/// Which side of a host pair opens the connections.
public enum NATRole: String, Sendable, Equatable, CaseIterable {
    /// Reachable: accepts connections and dials out.
    case none
    /// Behind NAT or a firewall: only dials out, never accepts.
    case behind
}

/// A database instance (or container) that attaches to the agent of its host.
public struct Instance: Sendable, Equatable {
    /// Unique name the instance attaches as.
    public var name: String
    /// The host whose agent it attaches to.
    public var host: String
    /// The uid allowed to attach as this instance; `nil` means the agent's own uid.
    public var uid: UInt32?
    /// The gid allowed to attach as this instance; `nil` means any gid.
    public var gid: UInt32?
    /// A file holding a secret the instance must present; `nil` means no token.
    public var tokenFile: String?
    /// Ring size for links this instance receives on, unless the link sets one.
    public var ringSize: ByteSize?
    /// Where the instance was declared.
    public var location: SourceLocation
}

/// Permission for two instances to open a link between them.
public struct Link: Sendable, Equatable {
    /// The two ends, in declaration order.
    public var endpoints: (String, String)
    /// Ring size of each direction; `nil` inherits from the receiving instance or the defaults.
    public var ringSize: ByteSize?
    /// Largest message; `nil` inherits the defaults.
    public var maxMessageSize: ByteSize?
    /// Where the link (or the group it came from) was declared: its first end's name.
    public var location: SourceLocation
    /// Where each end's name was written, for diagnostics about one end.
    public var endpointLocations: (SourceLocation, SourceLocation)

    /// Whether this link joins `a` and `b`, in either order.
    public func joins(_ a: String, _ b: String) -> Bool {
        (endpoints.0 == a && endpoints.1 == b) || (endpoints.0 == b && endpoints.1 == a)
    }

    /// The other end, if `name` is one end.
    public func peer(of name: String) -> String? {
        if endpoints.0 == name { return endpoints.1 }
        if endpoints.1 == name { return endpoints.0 }
        return nil
    }

    public static func == (lhs: Link, rhs: Link) -> Bool {
        lhs.endpoints == rhs.endpoints && lhs.ringSize == rhs.ringSize
            && lhs.maxMessageSize == rhs.maxMessageSize && lhs.location == rhs.location
    }
}

/// A TCP or UDP service carried through the fabric: clients connect to a local listener on
/// their host and the agent re-originates the session to the real server on its host.
public struct Service: Sendable, Equatable {
    /// Unique service name.
    public var name: String
    /// `tcp` or `udp`.
    public var proto: ServiceProtocol
    /// Where the real server listens.
    public var server: ServiceEndpoint
    /// Where clients reach it, one entry per host that offers it.
    public var listen: [ServiceEndpoint]
    /// UDP: a client's flow ends after this long without a datagram either way.
    public var idleTimeoutMilliseconds: Int = Service.defaultIdleTimeoutMilliseconds
    /// Where the service was declared.
    public var location: SourceLocation

    /// `idle_timeout_ms` when the topology gives none.
    public static let defaultIdleTimeoutMilliseconds = 60_000
}

/// The transport protocol of a proxied service.
public enum ServiceProtocol: String, Sendable, Equatable, CaseIterable {
    /// A stream service.
    case tcp
    /// A datagram service.
    case udp
}

/// One end of a proxied service: a host and the socket address on it.
public struct ServiceEndpoint: Sendable, Equatable {
    /// The host whose agent owns this end.
    public var host: String
    /// IP address on that host.
    public var address: String
    /// Port on that host.
    public var port: UInt16
    /// Where the endpoint was declared.
    public var location: SourceLocation
}

extension Host {
    /// `ADDRESS:PORT` (`[IPv6]:PORT`) split, or nil when it is not one: the form of
    /// `metrics_listen` and of `vio-agent --metrics-listen`.
    public static func listenAddress(_ text: String) -> (address: String, port: UInt16)? {
        Addresses.splitHostPort(text).map { (address: $0.0, port: $0.1) }
    }
}
