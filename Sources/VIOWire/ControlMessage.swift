/// Messages on the agent's control socket (a Unix `SOCK_SEQPACKET` socket: one message per
/// packet). Every packet starts with an 8-byte header:
///
/// | offset | size | field                                   |
/// |--------|------|-----------------------------------------|
/// | 0      | 4    | magic `VIOC` (0x56 0x49 0x4F 0x43)      |
/// | 4      | 2    | protocol version, little-endian         |
/// | 6      | 2    | message type, little-endian             |
///
/// followed by the type's fields (docs/control-protocol.md).
public enum ControlMessage: Sendable, Equatable {
    /// First message from any client: who it is and which protocol versions it speaks.
    case hello(Hello)
    /// The agent's answer to `hello`.
    case welcome(Welcome)
    /// Asks for the agent's state (operators, `vioctl status`).
    case statusRequest
    /// The agent's state.
    case status(AgentStatus)
    /// Asks this agent to fetch another host's state over the fabric (`vioctl health HOST`);
    /// answered with `status` or `error`.
    case healthRequest(host: String)
    /// Asks the agent to re-read its topology file and apply what changed (`vioctl reload`);
    /// answered with `reloaded` or `error`.
    case reloadRequest
    /// What a reload applied, one line per kind of change (empty: nothing changed).
    case reloaded([String])
    /// A piece of a message too large for one packet (a status with thousands of links): the
    /// pieces' bytes, in order, are the whole message's packet; `last` marks the final one.
    case fragment(last: Bool, bytes: [UInt8])
    /// A refusal or failure, with a reason the client can print.
    case error(ControlError)
    /// Become an instance (after HELLO with role `instance`).
    case attach(Attach)
    /// The instance was admitted.
    case attached(Attached)
    /// Open the link to a peer.
    case openLink(OpenLink)
    /// A link is set up (descriptors attached).
    case linkReady(LinkReady)
    /// This end closed a link.
    case closeLink(CloseLink)

    /// The protocol version this build speaks.
    public static let protocolVersion: UInt16 = 1
    /// Header magic, "VIOC".
    public static let magic: [UInt8] = [0x56, 0x49, 0x4F, 0x43]
    /// Header size in bytes.
    public static let headerSize = 8

    /// Message type codes (stable: documented in docs/control-protocol.md).
    public enum Kind: UInt16, Sendable {
        case hello = 1, welcome = 2, statusRequest = 3, status = 4, healthRequest = 5, reloadRequest = 6, reloaded = 7, fragment = 8
        case error = 15
        case attach = 16, attached = 17, openLink = 18, linkReady = 19, closeLink = 20
    }

    var kind: Kind {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .statusRequest: .statusRequest
        case .status: .status
        case .healthRequest: .healthRequest
        case .reloadRequest: .reloadRequest
        case .reloaded: .reloaded
        case .fragment: .fragment
        case .error: .error
        case .attach: .attach
        case .attached: .attached
        case .openLink: .openLink
        case .linkReady: .linkReady
        case .closeLink: .closeLink
        }
    }

    /// The message type's name, for logs and errors.
    public var kindName: String {
        switch self {
        case .hello: "HELLO"
        case .welcome: "WELCOME"
        case .statusRequest: "STATUS_REQUEST"
        case .status: "STATUS"
        case .healthRequest: "HEALTH_REQUEST"
        case .reloadRequest: "RELOAD_REQUEST"
        case .reloaded: "RELOADED"
        case .fragment: "FRAGMENT"
        case .error: "ERROR"
        case .attach: "ATTACH"
        case .attached: "ATTACHED"
        case .openLink: "OPEN_LINK"
        case .linkReady: "LINK_READY"
        case .closeLink: "CLOSE_LINK"
        }
    }

    /// The packet for this message.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.write(raw: Self.magic)
        w.write(Self.protocolVersion)
        w.write(kind.rawValue)
        switch self {
        case .hello(let m): m.encode(to: &w)
        case .welcome(let m): m.encode(to: &w)
        case .statusRequest: break
        case .status(let m): m.encode(to: &w)
        case .healthRequest(let host): w.write(host)
        case .reloadRequest: break
        case .fragment(let last, let bytes):
            w.write(last)
            w.write(UInt32(bytes.count))
            w.write(raw: bytes)
        case .reloaded(let lines):
            w.write(UInt32(lines.count))
            for line in lines { w.write(line) }
        case .error(let m): m.encode(to: &w)
        case .attach(let m): m.encode(to: &w)
        case .attached(let m): m.encode(to: &w)
        case .openLink(let m): m.encode(to: &w)
        case .linkReady(let m): m.encode(to: &w)
        case .closeLink(let m): m.encode(to: &w)
        }
        return w.bytes
    }

    /// `packet` (an encoded message) as FRAGMENT packets of at most `limit` bytes each.
    public static func fragments(of packet: [UInt8], limit: Int) -> [[UInt8]] {
        let piece = max(1, limit - headerSize - 5)
        return stride(from: 0, to: packet.count, by: piece).map { start in
            let end = min(packet.count, start + piece)
            return ControlMessage.fragment(last: end == packet.count, bytes: Array(packet[start..<end])).encoded()
        }
    }

    /// The largest control packet (the agent's socket takes messages of up to 64 KiB).
    enum UnixPacketLimit { static let bytes = 64 * 1024 }

    /// The most a client puts together from FRAGMENTs: a status of about 100,000 links.
    public static let maximumReassembled = 64 << 20

    /// Decodes one packet; throws a ``DecodeError`` naming what is wrong for anything malformed.
    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> ControlMessage {
        var r = ByteReader(bytes)
        guard try r.readBytes(4) == magic else { throw .invalid(field: "magic", value: "not a VIO control message") }
        let version = try r.read(UInt16.self)
        guard version == protocolVersion else {
            throw .unsupportedVersion(found: Int(version), supported: Int(protocolVersion))
        }
        let code = try r.read(UInt16.self)
        guard let kind = Kind(rawValue: code) else { throw .invalid(field: "message type", value: "\(code)") }
        let message: ControlMessage
        switch kind {
        case .hello: message = .hello(try Hello(from: &r))
        case .welcome: message = .welcome(try Welcome(from: &r))
        case .statusRequest: message = .statusRequest
        case .status: message = .status(try AgentStatus(from: &r))
        case .healthRequest: message = .healthRequest(host: try r.readString())
        case .reloadRequest: message = .reloadRequest
        case .fragment:
            let last = try r.readBool()
            message = .fragment(last: last, bytes: try r.readBytes(try r.readCount(max: UnixPacketLimit.bytes)))
        case .reloaded:
            let count = try r.readCount(max: 1 << 12, minimumElementSize: 2)
            var lines: [String] = []
            for _ in 0..<count { lines.append(try r.readString()) }
            message = .reloaded(lines)
        case .error: message = .error(try ControlError(from: &r))
        case .attach: message = .attach(try Attach(from: &r))
        case .attached: message = .attached(try Attached(from: &r))
        case .openLink: message = .openLink(try OpenLink(from: &r))
        case .linkReady: message = .linkReady(try LinkReady(from: &r))
        case .closeLink: message = .closeLink(try CloseLink(from: &r))
        }
        try r.expectEnd()
        return message
    }
}

/// A client's introduction.
public struct Hello: Sendable, Equatable {
    /// What kind of client.
    public enum Role: UInt8, Sendable {
        /// A database instance that will attach and open links.
        case instance = 1
        /// An operator tool that only reads state.
        case observer = 2
    }

    /// What kind of client.
    public var role: Role
    /// Free text for logs, e.g. "vioctl 0.1".
    public var software: String

    /// A hello.
    public init(role: Role, software: String) {
        self.role = role
        self.software = software
    }

    func encode(to w: inout ByteWriter) {
        w.write(role.rawValue)
        w.write(software)
    }

    init(from r: inout ByteReader) throws(DecodeError) {
        let raw = try r.read(UInt8.self)
        guard let role = Role(rawValue: raw) else { throw .invalid(field: "role", value: "\(raw)") }
        self.role = role
        software = try r.readString()
    }
}

/// The agent's answer to a hello: which cluster and host it serves.
public struct Welcome: Sendable, Equatable {
    /// Cluster name from the topology.
    public var cluster: String
    /// This agent's host name.
    public var host: String
    /// The agent's process id.
    public var agentPID: Int32

    /// A welcome.
    public init(cluster: String, host: String, agentPID: Int32) {
        self.cluster = cluster
        self.host = host
        self.agentPID = agentPID
    }

    func encode(to w: inout ByteWriter) {
        w.write(cluster)
        w.write(host)
        w.write(agentPID)
    }

    init(from r: inout ByteReader) throws(DecodeError) {
        cluster = try r.readString()
        host = try r.readString()
        agentPID = try r.read()
    }
}

/// A refusal or failure the client can act on.
public struct ControlError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Machine-readable reasons (stable codes).
    public enum Code: UInt16, Sendable {
        case malformed = 1
        case unsupportedVersion = 2
        case notAllowed = 3
        case unknownInstance = 4
        case alreadyAttached = 5
        case badToken = 6
        case undeclaredLink = 7
        case peerNotAttached = 8
        case internalError = 9
        case unexpected = 10
        case notSupported = 11
        case alreadyOpen = 12
        case peerHostDown = 13
        /// A reload found the topology file unusable (errors, or this host not in it).
        case invalidTopology = 14
    }

    /// The reason code.
    public var code: Code
    /// A sentence saying what failed and what to do.
    public var message: String

    /// An error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    func encode(to w: inout ByteWriter) {
        w.write(code.rawValue)
        w.write(message)
    }

    init(from r: inout ByteReader) throws(DecodeError) {
        let raw = try r.read(UInt16.self)
        code = Code(rawValue: raw) ?? .unexpected
        message = try r.readString()
    }
}
