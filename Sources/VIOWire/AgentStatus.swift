/// A snapshot of an agent's state, as `vioctl status` shows it.
public struct AgentStatus: Sendable, Equatable {
    /// One declared instance of this host.
    public struct InstanceState: Sendable, Equatable {
        /// Instance name.
        public var name: String
        /// Whether a live process is attached as it.
        public var attached: Bool
        /// The attached process, 0 when detached.
        public var pid: Int32

        /// An instance entry.
        public init(name: String, attached: Bool, pid: Int32) {
            self.name = name
            self.attached = attached
            self.pid = pid
        }
    }

    /// One link with an end on this host.
    public struct LinkState: Sendable, Equatable {
        /// The end on this host.
        public var localEnd: String
        /// The other end.
        public var peerEnd: String
        /// Host of the other end (this host for local links).
        public var peerHost: String
        /// `declared`, `open`, `closed`, ...
        public var state: String

        /// A link entry.
        public init(localEnd: String, peerEnd: String, peerHost: String, state: String) {
            self.localEnd = localEnd
            self.peerEnd = peerEnd
            self.peerHost = peerHost
            self.state = state
        }
    }

    /// Cluster name.
    public var cluster: String
    /// This host.
    public var host: String
    /// Agent process id.
    public var pid: Int32
    /// Milliseconds since the agent started.
    public var uptimeMilliseconds: UInt64
    /// The transport chosen for other hosts, with the reason (e.g. "tcp: no RDMA device").
    public var transport: String
    /// Declared instances of this host.
    public var instances: [InstanceState]
    /// Links with an end here.
    public var links: [LinkState]

    /// A status snapshot.
    public init(cluster: String, host: String, pid: Int32, uptimeMilliseconds: UInt64, transport: String,
                instances: [InstanceState], links: [LinkState]) {
        self.cluster = cluster
        self.host = host
        self.pid = pid
        self.uptimeMilliseconds = uptimeMilliseconds
        self.transport = transport
        self.instances = instances
        self.links = links
    }

    func encode(to w: inout ByteWriter) {
        w.write(cluster)
        w.write(host)
        w.write(pid)
        w.write(uptimeMilliseconds)
        w.write(transport)
        w.write(UInt32(instances.count))
        for i in instances {
            w.write(i.name)
            w.write(i.attached)
            w.write(i.pid)
        }
        w.write(UInt32(links.count))
        for l in links {
            w.write(l.localEnd)
            w.write(l.peerEnd)
            w.write(l.peerHost)
            w.write(l.state)
        }
    }

    init(from r: inout ByteReader) throws(DecodeError) {
        cluster = try r.readString()
        host = try r.readString()
        pid = try r.read()
        uptimeMilliseconds = try r.read()
        transport = try r.readString()
        let instanceCount = try r.readCount(max: 1 << 16, minimumElementSize: 7)
        instances = []
        for _ in 0..<instanceCount {
            instances.append(InstanceState(name: try r.readString(), attached: try r.readBool(), pid: try r.read()))
        }
        let linkCount = try r.readCount(max: 1 << 20, minimumElementSize: 8)
        links = []
        for _ in 0..<linkCount {
            links.append(LinkState(localEnd: try r.readString(), peerEnd: try r.readString(),
                                   peerHost: try r.readString(), state: try r.readString()))
        }
    }
}
