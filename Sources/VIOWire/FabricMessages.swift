/// Payloads of the inter-agent frames that carry more than a header (docs/protocol.md).
/// Each is little-endian, strings 16-bit-length-prefixed UTF-8, and decoding rejects
/// trailing bytes: a frame is either understood completely or refused.

/// HELLO_REQUEST: the dialing agent introduces one channel.
public struct ChannelHello: Sendable, Equatable {
    /// Cluster name; both agents must run the same one.
    public var cluster: String
    /// The dialing host.
    public var from: String
    /// The host it means to reach.
    public var to: String
    /// Which of the `channels` channels this is.
    public var channel: UInt16
    /// Channels the dialer keeps to this host.
    public var channels: UInt16
    /// ``TopologyFingerprint`` of what the pair must agree on (the cluster, the two hosts'
    /// keys, the pair's security); links are checked one by one as they open.
    public var fingerprint: UInt64
    /// The fabric protocol revision the dialer speaks (``ChannelHello/revision``): 1 numbered
    /// sessions by topology position and sent no revision; 2 derives them from names.
    public var revision: UInt16

    /// The revision this build speaks; an agent refuses a channel of any other.
    public static let currentRevision: UInt16 = 2

    /// A hello.
    public init(cluster: String, from: String, to: String, channel: UInt16, channels: UInt16, fingerprint: UInt64,
                revision: UInt16 = ChannelHello.currentRevision) {
        self.revision = revision
        self.cluster = cluster
        self.from = from
        self.to = to
        self.channel = channel
        self.channels = channels
        self.fingerprint = fingerprint
    }

    /// The payload bytes.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.write(cluster); w.write(from); w.write(to)
        w.write(channel); w.write(channels); w.write(fingerprint); w.write(revision)
        return w.bytes
    }

    /// Decodes a payload.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = ByteReader(bytes)
        cluster = try r.readString(); from = try r.readString(); to = try r.readString()
        channel = try r.read(); channels = try r.read(); fingerprint = try r.read()
        revision = r.remaining == 0 ? 1 : try r.read()
        try r.expectEnd()
    }
}

/// DECLARATIONS: what the sender's topology declares between its host and the receiver's:
/// each link (its two instance names, in name order, and its largest message) and each
/// service (its name and a digest of its settings). The receiver compares them with its own.
public struct PairDeclarations: Sendable, Equatable {
    /// A link as the pair declares it.
    public struct Link: Sendable, Hashable {
        /// The two instances, in name order.
        public var ends: (String, String)
        /// `max_message_size` in bytes.
        public var maxMessageSize: UInt64

        /// A link entry (the names are put in order).
        public init(_ a: String, _ b: String, maxMessageSize: UInt64) {
            ends = a <= b ? (a, b) : (b, a)
            self.maxMessageSize = maxMessageSize
        }

        public static func == (l: Link, r: Link) -> Bool { l.ends == r.ends && l.maxMessageSize == r.maxMessageSize }
        public func hash(into h: inout Hasher) { h.combine(ends.0); h.combine(ends.1); h.combine(maxMessageSize) }
    }

    /// Links between the two hosts.
    public var links: [Link]
    /// Services with one end on each host: name and a digest of everything else.
    public var services: [(name: String, digest: UInt64)]

    /// A declarations payload.
    public init(links: [Link], services: [(name: String, digest: UInt64)]) {
        self.links = links
        self.services = services
    }

    public static func == (l: PairDeclarations, r: PairDeclarations) -> Bool {
        l.links == r.links && l.services.map(\.name) == r.services.map(\.name) && l.services.map(\.digest) == r.services.map(\.digest)
    }

    /// The payload bytes.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.write(UInt32(links.count))
        for l in links { w.write(l.ends.0); w.write(l.ends.1); w.write(l.maxMessageSize) }
        w.write(UInt32(services.count))
        for s in services { w.write(s.name); w.write(s.digest) }
        return w.bytes
    }

    /// Decodes a payload.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = ByteReader(bytes)
        let linkCount = try r.readCount(max: 1 << 20, minimumElementSize: 12)
        links = []
        for _ in 0..<linkCount {
            let a = try r.readString(), b = try r.readString()
            links.append(Link(a, b, maxMessageSize: try r.read()))
        }
        let serviceCount = try r.readCount(max: 1 << 16, minimumElementSize: 10)
        services = []
        for _ in 0..<serviceCount { services.append((try r.readString(), try r.read())) }
        try r.expectEnd()
    }
}

/// SESSION start, and the acknowledgement that accepts it: what the sender's ring can take.
public struct SessionOpen: Sendable, Equatable {
    /// The instance on the sending agent's host.
    public var from: String
    /// The instance on the receiving agent's host.
    public var to: String
    /// Credit the sender grants for the other direction: bytes its instance's ring can take,
    /// counted as ring records (16-byte header, payload rounded up to 16).
    public var window: UInt32
    /// Largest data payload the sender accepts in one frame (fits one record of its ring).
    public var maxFramePayload: UInt32
    /// How long the opener waits for the peer instance to attach (0: not at all,
    /// `UInt32.max`: forever).
    public var waitMilliseconds: UInt32
    /// What the sender accepts on this session beyond plain DATA frames.
    public var features: Features
    /// The largest message the sender's topology declares for the link (0: not said, as by
    /// agents from before it was carried): both hosts must declare the link alike.
    public var maxMessageSize: UInt64

    /// Optional frame forms a receiving agent accepts, announced per session. Bits this build
    /// does not know are ignored (a newer agent may announce more).
    public struct Features: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// DATA frames flagged ``FrameFlags/records``: a run of whole messages laid out as
        /// ring records (docs/protocol.md).
        public static let recordRuns = Features(rawValue: 1 << 0)
        /// What this build accepts.
        public static let supported: Features = [.recordRuns]
    }

    /// A session-open payload.
    public init(from: String, to: String, window: UInt32, maxFramePayload: UInt32, waitMilliseconds: UInt32 = 0,
                features: Features = .supported, maxMessageSize: UInt64 = 0) {
        self.maxMessageSize = maxMessageSize
        self.from = from
        self.to = to
        self.window = window
        self.maxFramePayload = maxFramePayload
        self.waitMilliseconds = waitMilliseconds
        self.features = features
    }

    /// The payload bytes.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.write(from); w.write(to); w.write(window); w.write(maxFramePayload); w.write(waitMilliseconds)
        w.write(features.rawValue); w.write(maxMessageSize)
        return w.bytes
    }

    /// Decodes a payload.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = ByteReader(bytes)
        from = try r.readString(); to = try r.readString()
        window = try r.read(); maxFramePayload = try r.read(); waitMilliseconds = try r.read()
        // An agent from before features ends here: it takes plain DATA frames only.
        features = r.remaining == 0 ? [] : Features(rawValue: try r.read())
        maxMessageSize = r.remaining == 0 ? 0 : try r.read()
        try r.expectEnd()
        guard maxFramePayload >= 64, maxFramePayload <= UInt32(FrameHeader.maximumPayload) else {
            throw .invalid(field: "max frame payload", value: "\(maxFramePayload)")
        }
    }
}

/// SESSION reset: why a session ends abnormally or is refused.
public struct SessionReset: Sendable, Equatable {
    /// What happened (stable values).
    public enum Reason: UInt8, Sendable {
        /// The instance at the sender's end closed the link (orderly; data before it counts).
        case closed = 1
        /// The instance at the sender's end exited or detached.
        case gone = 2
        /// The sender found the instance's ring corrupt.
        case corrupt = 3
        /// The destination instance is not attached (and the opener did not wait).
        case notAttached = 4
        /// The opener gave up waiting.
        case cancelled = 5
        /// The link is not declared on the receiving side.
        case refused = 6
        /// A reload of the sender's topology removed the link (or one of its instances).
        case removed = 7
    }

    /// What happened.
    public var reason: Reason
    /// A sentence for logs and errors.
    public var message: String

    /// A reset payload.
    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }

    /// The payload bytes.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.write(reason.rawValue); w.write(message)
        return w.bytes
    }

    /// Decodes a payload.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = ByteReader(bytes)
        let raw = try r.read(UInt8.self)
        guard let reason = Reason(rawValue: raw) else { throw .invalid(field: "reset reason", value: "\(raw)") }
        self.reason = reason
        message = try r.readString()
        try r.expectEnd()
    }
}

/// A stable 64-bit FNV-1a hash of the parts of a topology two agents must agree on (what
/// their host pair shares, ``ChannelHello/fingerprint``). Not a security measure.
public enum TopologyFingerprint {
    /// The fingerprint of `parts`, in order.
    public static func of(_ parts: [String]) -> UInt64 {
        FNV1a.hash(parts, basis: 0xcbf2_9ce4_8422_2325, prime: 0x0000_0100_0000_01B3)
    }
}

/// FNV-1a over strings, each followed by a 0xFF separator (so ["ab", "c"] and ["a", "bc"]
/// differ), at the width of `T`.
enum FNV1a {
    static func hash<T: FixedWidthInteger & UnsignedInteger>(_ parts: [String], basis: T, prime: T) -> T {
        var hash = basis
        for part in parts {
            for byte in part.utf8 {
                hash ^= T(byte)
                hash &*= prime
            }
            hash ^= 0xFF
            hash &*= prime
        }
        return hash
    }
}

extension AgentStatus {
    /// The status as a HEALTH_RESPONSE payload.
    public func encodedPayload() -> [UInt8] {
        var w = ByteWriter()
        encode(to: &w)
        return w.bytes
    }

    /// Decodes a HEALTH_RESPONSE payload.
    public init(decodingPayload bytes: [UInt8]) throws(DecodeError) {
        var r = ByteReader(bytes)
        try self.init(from: &r)
        try r.expectEnd()
    }
}
