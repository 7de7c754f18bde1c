/// Frames of proxy mode (docs/protocol.md, "Proxy sessions"): an application's TCP
/// connection or UDP flow carried between two agents as a session of its own.

/// The session id of one proxied connection. Links take ids from the topology (1...links);
/// proxied connections take theirs from the top half of the id space, numbered by the agent
/// that accepted the client, so the two kinds never meet and a frame's id alone says which
/// table holds its session. Bit 30 tells the two agents of a pair apart (set when the opener
/// is the pair's dialer), so both may open connections without agreeing on numbers.
public struct ProxySessionID: Hashable, Sendable, CustomStringConvertible {
    /// The id on the wire.
    public let rawValue: UInt32

    /// Ids at or above this are proxied connections.
    public static let base: UInt32 = 1 << 31
    private static let dialerBit: UInt32 = 1 << 30
    private static let serialMask: UInt32 = dialerBit - 1

    /// The id of a frame, if it names a proxied connection.
    public init?(session: UInt32) {
        guard session >= Self.base else { return nil }
        rawValue = session
    }

    /// Whether `session` names a proxied connection (one comparison: the data path asks).
    @inlinable
    public static func isProxy(_ session: UInt32) -> Bool { session >= (1 << 31) }

    /// Connection `serial` (1 ..< 2^30, wrapping) opened by the pair's dialer or acceptor.
    public init(serial: UInt32, openedByDialer: Bool) {
        let s = serial & Self.serialMask
        rawValue = Self.base | (openedByDialer ? Self.dialerBit : 0) | (s == 0 ? 1 : s)
    }

    /// Whether the pair's dialing agent opened it.
    public var openedByDialer: Bool { rawValue & Self.dialerBit != 0 }

    /// The id after this one for the same opener (skips 0 on wrapping).
    public var next: ProxySessionID {
        ProxySessionID(serial: (rawValue & Self.serialMask) &+ 1, openedByDialer: openedByDialer)
    }

    public var description: String { "p\(rawValue & Self.serialMask)\(openedByDialer ? "d" : "a")" }
}

/// SESSION start of a proxied connection: which service the client reached, and the credit
/// the opener grants for the server's bytes.
public struct ProxyOpen: Sendable, Equatable {
    /// The service's name in the topology.
    public var service: String
    /// Bytes the opener will take before it grants more (its socket buffer for this connection).
    public var window: UInt32
    /// The client's address as the opening agent saw it (for logs only).
    public var client: String

    /// A start payload.
    public init(service: String, window: UInt32, client: String) {
        self.service = service
        self.window = window
        self.client = client
    }

    /// The payload bytes.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.write(service); w.write(window); w.write(client)
        return w.bytes
    }

    /// Decodes a payload; a window of 0 or over 16 MiB is refused.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = ByteReader(bytes)
        service = try r.readString(); window = try r.read(); client = try r.readString()
        try r.expectEnd()
        guard window > 0, window <= 1 << 24 else { throw .invalid(field: "proxy window", value: "\(window)") }
    }
}

/// SERVICE_UPDATE: the sender's view of the services it serves (its server end), so the
/// agents where clients connect refuse at once while a server is down. Answered by
/// SERVICE_UPDATE_ACK carrying the same sequence number.
public struct ServiceUpdate: Sendable, Equatable {
    /// One service's state.
    public struct Entry: Sendable, Equatable {
        /// The service's name.
        public var service: String
        /// Whether the server accepts connections.
        public var up: Bool
        /// Why it is down (the last connect's error), empty when up.
        public var reason: String

        /// An entry.
        public init(service: String, up: Bool, reason: String = "") {
            self.service = service
            self.up = up
            self.reason = reason
        }
    }

    /// The services, each once.
    public var entries: [Entry]

    /// An update.
    public init(entries: [Entry]) { self.entries = entries }

    /// The payload bytes.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.write(UInt32(entries.count))
        for e in entries { w.write(e.service); w.write(e.up); w.write(e.reason) }
        return w.bytes
    }

    /// Decodes a payload.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = ByteReader(bytes)
        let count = try r.readCount(max: 1 << 16, minimumElementSize: 5)
        entries = []
        for _ in 0..<count {
            entries.append(Entry(service: try r.readString(), up: try r.readBool(), reason: try r.readString()))
        }
        try r.expectEnd()
    }
}
