/// ATTACH: become instance `instance` of this host.
public struct Attach: Sendable, Equatable {
    /// The instance name from the topology.
    public var instance: String
    /// The secret from the instance's token file; empty when it has none.
    public var token: [UInt8]
    /// The NUMA node the instance runs on (its rings are placed there).
    public var numaNode: UInt16

    /// An attach request.
    public init(instance: String, token: [UInt8], numaNode: UInt16) {
        self.instance = instance
        self.token = token
        self.numaNode = numaNode
    }

    func encode(to w: inout ByteWriter) {
        w.write(instance)
        w.write(UInt16(token.count))
        w.write(raw: token)
        w.write(numaNode)
    }

    init(from r: inout ByteReader) throws(DecodeError) {
        instance = try r.readString()
        let count = Int(try r.read(UInt16.self))
        guard count <= 4096 else { throw .invalid(field: "token length", value: "\(count)") }
        token = try r.readBytes(count)
        numaNode = try r.read()
    }
}

/// ATTACHED: the agent admitted the instance.
public struct Attached: Sendable, Equatable {
    /// One peer the topology lets this instance link to.
    public struct Peer: Sendable, Equatable {
        /// Instance name.
        public var name: String
        /// Its host.
        public var host: String

        /// A peer entry.
        public init(name: String, host: String) {
            self.name = name
            self.host = host
        }
    }

    /// The instance name.
    public var instance: String
    /// Declared peers.
    public var peers: [Peer]

    /// An attach reply.
    public init(instance: String, peers: [Peer]) {
        self.instance = instance
        self.peers = peers
    }

    func encode(to w: inout ByteWriter) {
        w.write(instance)
        w.write(UInt32(peers.count))
        for p in peers {
            w.write(p.name)
            w.write(p.host)
        }
    }

    init(from r: inout ByteReader) throws(DecodeError) {
        instance = try r.readString()
        let count = try r.readCount(max: 1 << 16, minimumElementSize: 4)
        peers = []
        for _ in 0..<count { peers.append(Peer(name: try r.readString(), host: try r.readString())) }
    }
}

/// OPEN_LINK: open the link to `peer`, waiting up to `timeoutMilliseconds` for it to attach.
public struct OpenLink: Sendable, Equatable {
    /// Echoed in the reply, so replies are told apart from unsolicited LINK_READY messages.
    public var requestID: UInt32
    /// The peer instance.
    public var peer: String
    /// 0: fail at once if the peer is not attached; `UInt32.max`: wait forever.
    public var timeoutMilliseconds: UInt32

    /// An open request.
    public init(requestID: UInt32, peer: String, timeoutMilliseconds: UInt32) {
        self.requestID = requestID
        self.peer = peer
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    func encode(to w: inout ByteWriter) {
        w.write(requestID)
        w.write(peer)
        w.write(timeoutMilliseconds)
    }

    init(from r: inout ByteReader) throws(DecodeError) {
        requestID = try r.read()
        peer = try r.readString()
        timeoutMilliseconds = try r.read()
    }
}

/// LINK_READY: a link is set up. Carries five descriptors (SCM_RIGHTS), in this order: the
/// region memfd, this end's data doorbell, this end's space doorbell, the peer's data
/// doorbell, the peer's space doorbell. Sent as the reply to OPEN_LINK (`requestID` echoed)
/// and unsolicited to the other end (`requestID` 0).
public struct LinkReady: Sendable, Equatable {
    /// The request this answers, 0 when unsolicited.
    public var requestID: UInt32
    /// The agent's link id (also in the region header).
    public var linkID: UInt64
    /// The peer instance.
    public var peer: String
    /// Which end of the region this instance is (0 or 1).
    public var end: UInt8
    /// The link was already delivered to this instance as an incoming link: no descriptors
    /// come with this message; use the incoming one.
    public var alreadyDelivered: Bool

    /// Number of descriptors that accompany a LINK_READY with `alreadyDelivered == false`:
    /// the region, then four doorbells. A link to an instance on the same host adds a sixth,
    /// the peer process's pidfd, so each end learns of the other's death from the kernel
    /// whatever becomes of the agent.
    public static let descriptorCount = 5

    /// A link-ready message.
    public init(requestID: UInt32, linkID: UInt64, peer: String, end: UInt8, alreadyDelivered: Bool) {
        self.requestID = requestID
        self.linkID = linkID
        self.peer = peer
        self.end = end
        self.alreadyDelivered = alreadyDelivered
    }

    func encode(to w: inout ByteWriter) {
        w.write(requestID)
        w.write(linkID)
        w.write(peer)
        w.write(end)
        w.write(alreadyDelivered)
    }

    init(from r: inout ByteReader) throws(DecodeError) {
        requestID = try r.read()
        linkID = try r.read()
        peer = try r.readString()
        end = try r.read()
        guard end <= 1 else { throw .invalid(field: "end", value: "\(end)") }
        alreadyDelivered = try r.readBool()
    }
}

/// CLOSE_LINK: this instance closed its end; the agent forgets the link.
public struct CloseLink: Sendable, Equatable {
    /// The link.
    public var linkID: UInt64

    /// A close notice.
    public init(linkID: UInt64) { self.linkID = linkID }

    func encode(to w: inout ByteWriter) { w.write(linkID) }

    init(from r: inout ByteReader) throws(DecodeError) { linkID = try r.read() }
}
