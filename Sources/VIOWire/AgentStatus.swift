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
        /// The attached process's uid.
        public var uid: UInt32
        /// NUMA node the instance reported at attach.
        public var numaNode: UInt16

        /// An instance entry.
        public init(name: String, attached: Bool, pid: Int32, uid: UInt32 = 0, numaNode: UInt16 = 0) {
            self.name = name
            self.attached = attached
            self.pid = pid
            self.uid = uid
            self.numaNode = numaNode
        }
    }

    /// Counters of one direction of a link.
    public struct DirectionCounters: Sendable, Equatable {
        /// Whole messages.
        public var messages: UInt64 = 0
        /// Payload bytes.
        public var bytes: UInt64 = 0
        /// Doorbells rung for a sleeping receiver.
        public var wakeups: UInt64 = 0
        /// Times the sender found the ring full.
        public var fullStalls: UInt64 = 0
        /// Errors the receiver detected.
        public var errors: UInt64 = 0

        /// Zero counters.
        public init() {}

        /// Counters with values.
        public init(messages: UInt64, bytes: UInt64, wakeups: UInt64, fullStalls: UInt64, errors: UInt64) {
            self.messages = messages
            self.bytes = bytes
            self.wakeups = wakeups
            self.fullStalls = fullStalls
            self.errors = errors
        }

        func encode(to w: inout ByteWriter) {
            for v in [messages, bytes, wakeups, fullStalls, errors] { w.write(v) }
        }

        init(from r: inout ByteReader) throws(DecodeError) {
            messages = try r.read(); bytes = try r.read(); wakeups = try r.read()
            fullStalls = try r.read(); errors = try r.read()
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
        /// `declared` (not open), `open`, `closed by X`, `X gone`, `corrupt`.
        public var state: String
        /// The agent's link id, 0 when not open.
        public var linkID: UInt64 = 0
        /// Ring bytes each way (towards local end, towards peer).
        public var ringBytes: (toLocal: UInt64, toPeer: UInt64) = (0, 0)
        /// NUMA nodes the two rings were placed on (reader's node), or -1 when not bound.
        public var numaNodes: (toLocal: Int16, toPeer: Int16) = (-1, -1)
        /// From the local end to the peer.
        public var sent = DirectionCounters()
        /// From the peer to the local end.
        public var received = DirectionCounters()
        /// A link to another host: its session's state as the agent's state machine has it
        /// (``SessionState/briefName``); empty for local links and links not open.
        public var session: String = ""

        /// A link entry.
        public init(localEnd: String, peerEnd: String, peerHost: String, state: String) {
            self.localEnd = localEnd
            self.peerEnd = peerEnd
            self.peerHost = peerHost
            self.state = state
        }

        public static func == (a: LinkState, b: LinkState) -> Bool {
            a.localEnd == b.localEnd && a.peerEnd == b.peerEnd && a.peerHost == b.peerHost && a.state == b.state
                && a.linkID == b.linkID && a.ringBytes == b.ringBytes && a.numaNodes == b.numaNodes
                && a.sent == b.sent && a.received == b.received && a.session == b.session
        }
    }

    /// The fabric towards one other host.
    public struct PeerHostState: Sendable, Equatable {
        /// The peer host.
        public var name: String
        /// `up`, `connecting`, `down` (with the last reason in ``lastError``).
        public var state: String
        /// Whether this agent dials (otherwise it accepts).
        public var dials: Bool
        /// Channels up / channels configured.
        public var channelsUp: UInt16
        public var channels: UInt16
        /// Whether the channels are encrypted.
        public var encrypted: Bool = false
        /// Last heartbeat round trip, microseconds (0: none yet).
        public var rttMicroseconds: UInt32 = 0
        /// Bytes and frames written to / read from the channels.
        public var bytesSent: UInt64 = 0
        public var bytesReceived: UInt64 = 0
        public var framesSent: UInt64 = 0
        public var framesReceived: UInt64 = 0
        /// Times a link had data to send but no credit.
        public var creditStalls: UInt64 = 0
        /// Channels re-established after a loss.
        public var reconnects: UInt64 = 0
        /// Virtual links open through this host.
        public var linksOpen: UInt32 = 0
        /// Why the channels last went down, empty if never.
        public var lastError: String = ""
        /// How the channels are protected: the TLS version and suite, or `plaintext`.
        public var security: String = ""
        /// TLS key updates this agent asked for on these channels.
        public var keyUpdates: UInt64 = 0
        /// What carries the channels (`tcp`, `rdma`) and why it was chosen for this pair.
        public var transport: String = ""
        /// Payloads this agent pulled from the far agent's rings by RDMA READ (no CPU copy).
        public var payloadsPulled: UInt64 = 0
        /// Where this host's topology and the peer's differ on what the pair shares (links or
        /// services declared on one side only, or differently), one sentence each.
        public var differences: [String] = []

        /// A peer-host entry.
        public init(name: String, state: String, dials: Bool, channelsUp: UInt16, channels: UInt16) {
            self.name = name
            self.state = state
            self.dials = dials
            self.channelsUp = channelsUp
            self.channels = channels
        }

        func encode(to w: inout ByteWriter) {
            w.write(name); w.write(state); w.write(dials); w.write(channelsUp); w.write(channels); w.write(encrypted)
            w.write(rttMicroseconds)
            for v in [bytesSent, bytesReceived, framesSent, framesReceived, creditStalls, reconnects] { w.write(v) }
            w.write(linksOpen)
            w.write(lastError)
            w.write(security)
            w.write(keyUpdates)
            w.write(transport)
            w.write(payloadsPulled)
            w.write(UInt32(differences.count))
            for d in differences { w.write(d) }
        }

        init(from r: inout ByteReader) throws(DecodeError) {
            self.init(name: try r.readString(), state: try r.readString(), dials: try r.readBool(),
                      channelsUp: try r.read(), channels: try r.read())
            encrypted = try r.readBool()
            rttMicroseconds = try r.read()
            bytesSent = try r.read(); bytesReceived = try r.read(); framesSent = try r.read()
            framesReceived = try r.read(); creditStalls = try r.read(); reconnects = try r.read()
            linksOpen = try r.read()
            lastError = try r.readString()
            security = try r.readString()
            keyUpdates = try r.read()
            transport = try r.readString()
            payloadsPulled = try r.read()
            let count = try r.readCount(max: 1 << 16, minimumElementSize: 2)
            differences = []
            for _ in 0..<count { differences.append(try r.readString()) }
        }
    }

    /// A proxied service with an end on this host (proxy mode).
    public struct ServiceState: Sendable, Equatable {
        /// The service's name.
        public var name: String
        /// `tcp` or `udp`.
        public var proto: String
        /// This host's part: `listen`, `server` or `listen+server`.
        public var role: String
        /// Where clients connect on this host (empty when it only serves).
        public var listen: String
        /// The real server: `HOST ADDRESS:PORT`.
        public var server: String
        /// `up`, `down` or `unknown`, as this agent knows it.
        public var state: String
        /// Why it is down (empty when up).
        public var reason: String = ""
        /// Connections (or UDP flows) open now through this agent.
        public var connectionsOpen: UInt32 = 0
        /// Connections (or flows) since the agent started.
        public var connectionsTotal: UInt64 = 0
        /// Bytes from clients towards the server, and back, through this agent.
        public var bytesToServer: UInt64 = 0
        public var bytesToClients: UInt64 = 0
        /// Connections refused (server or its host down, connect failed).
        public var refused: UInt64 = 0
        /// Connections ended by a reset (either end, or a peer host lost).
        public var resets: UInt64 = 0
        /// UDP: datagrams dropped (a full socket or channel, or a flow's first datagrams
        /// beyond what waits for the far agent).
        public var datagramsDropped: UInt64 = 0

        /// A service entry.
        public init(name: String, proto: String, role: String, listen: String, server: String, state: String) {
            self.name = name
            self.proto = proto
            self.role = role
            self.listen = listen
            self.server = server
            self.state = state
        }

        func encode(to w: inout ByteWriter) {
            w.write(name); w.write(proto); w.write(role); w.write(listen); w.write(server); w.write(state); w.write(reason)
            w.write(connectionsOpen)
            for v in [connectionsTotal, bytesToServer, bytesToClients, refused, resets, datagramsDropped] { w.write(v) }
        }

        init(from r: inout ByteReader) throws(DecodeError) {
            self.init(name: try r.readString(), proto: try r.readString(), role: try r.readString(),
                      listen: try r.readString(), server: try r.readString(), state: try r.readString())
            reason = try r.readString()
            connectionsOpen = try r.read()
            connectionsTotal = try r.read(); bytesToServer = try r.read(); bytesToClients = try r.read()
            refused = try r.read(); resets = try r.read(); datagramsDropped = try r.read()
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
    /// NUMA nodes on this host.
    public var numaNodes: UInt16 = 1
    /// Declared instances of this host.
    public var instances: [InstanceState]
    /// Links with an end here.
    public var links: [LinkState]
    /// The fabric towards each other host this one has links to.
    public var peerHosts: [PeerHostState] = []
    /// Proxied services with an end on this host.
    public var services: [ServiceState] = []
    /// The topology file the agent runs (or "embedded").
    public var topologySource = ""
    /// Reloads applied since the agent started (`vioctl reload`, SIGHUP).
    public var reloads: UInt32 = 0
    /// Changed settings the agent keeps until it restarts, each as a sentence.
    public var pendingRestart: [String] = []

    /// A status snapshot.
    public init(cluster: String, host: String, pid: Int32, uptimeMilliseconds: UInt64, transport: String,
                numaNodes: UInt16 = 1, instances: [InstanceState], links: [LinkState]) {
        self.cluster = cluster
        self.host = host
        self.pid = pid
        self.uptimeMilliseconds = uptimeMilliseconds
        self.transport = transport
        self.numaNodes = numaNodes
        self.instances = instances
        self.links = links
    }

    func encode(to w: inout ByteWriter) {
        w.write(cluster)
        w.write(host)
        w.write(pid)
        w.write(uptimeMilliseconds)
        w.write(transport)
        w.write(numaNodes)
        w.write(UInt32(instances.count))
        for i in instances {
            w.write(i.name)
            w.write(i.attached)
            w.write(i.pid)
            w.write(i.uid)
            w.write(i.numaNode)
        }
        w.write(UInt32(links.count))
        for l in links {
            w.write(l.localEnd)
            w.write(l.peerEnd)
            w.write(l.peerHost)
            w.write(l.state)
            w.write(l.linkID)
            w.write(l.ringBytes.toLocal)
            w.write(l.ringBytes.toPeer)
            w.write(l.numaNodes.toLocal)
            w.write(l.numaNodes.toPeer)
            l.sent.encode(to: &w)
            l.received.encode(to: &w)
            w.write(l.session)
        }
        w.write(UInt32(peerHosts.count))
        for p in peerHosts { p.encode(to: &w) }
        w.write(UInt32(services.count))
        for s in services { s.encode(to: &w) }
        w.write(topologySource)
        w.write(reloads)
        w.write(UInt32(pendingRestart.count))
        for p in pendingRestart { w.write(p) }
    }

    init(from r: inout ByteReader) throws(DecodeError) {
        cluster = try r.readString()
        host = try r.readString()
        pid = try r.read()
        uptimeMilliseconds = try r.read()
        transport = try r.readString()
        numaNodes = try r.read()
        let instanceCount = try r.readCount(max: 1 << 16, minimumElementSize: 13)
        instances = []
        for _ in 0..<instanceCount {
            instances.append(InstanceState(name: try r.readString(), attached: try r.readBool(), pid: try r.read(),
                                           uid: try r.read(), numaNode: try r.read()))
        }
        let linkCount = try r.readCount(max: 1 << 20, minimumElementSize: 118)
        links = []
        for _ in 0..<linkCount {
            var l = LinkState(localEnd: try r.readString(), peerEnd: try r.readString(),
                              peerHost: try r.readString(), state: try r.readString())
            l.linkID = try r.read()
            l.ringBytes = (try r.read(), try r.read())
            l.numaNodes = (try r.read(), try r.read())
            l.sent = try DirectionCounters(from: &r)
            l.received = try DirectionCounters(from: &r)
            l.session = try r.readString()
            links.append(l)
        }
        let peerCount = try r.readCount(max: 1 << 16, minimumElementSize: 72)
        peerHosts = []
        for _ in 0..<peerCount { peerHosts.append(try PeerHostState(from: &r)) }
        services = []
        let serviceCount = try r.readCount(max: 1 << 16, minimumElementSize: 66)
        for _ in 0..<serviceCount { services.append(try ServiceState(from: &r)) }
        topologySource = try r.readString()
        reloads = try r.read()
        let pendingCount = try r.readCount(max: 1 << 12, minimumElementSize: 2)
        pendingRestart = []
        for _ in 0..<pendingCount { pendingRestart.append(try r.readString()) }
    }
}
