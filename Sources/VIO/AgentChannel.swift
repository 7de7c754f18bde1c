import VIOLinux
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

/// Errors from libvio's control operations, each saying what failed and what to do.
public enum VIOError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No agent answers at the control socket path.
    case agentUnreachable(path: String, reason: String)
    /// The agent refused a request; the code says why.
    case refused(ControlError)
    /// The agent sent something this library cannot read.
    case protocolViolation(String)
    /// The agent closed the control connection (it stopped or restarted). Open links keep
    /// working; attach again to open new ones.
    case agentGone
    /// Nothing arrived before the timeout.
    case timedOut
    /// The token file could not be read.
    case tokenUnreadable(path: String, reason: String)
    /// A link could not be set up.
    case link(LinkError)
    /// A system call failed.
    case system(SystemError)

    public var description: String {
        switch self {
        case .agentUnreachable(let path, let reason) where reason.hasPrefix("permission denied"):
            return "cannot reach vio-agent at \(path): \(reason)"
        case .agentUnreachable(let path, let reason):
            return "cannot reach vio-agent at \(path): \(reason). Is the agent running? (pass its socket, or set VIO_CONTROL_SOCKET)"
        case .refused(let error): return "agent refused: \(error.message)"
        case .protocolViolation(let what): return "protocol violation from agent: \(what)"
        case .agentGone: return "the agent closed the control connection; links already open keep working, and libvio attaches again by itself once an agent serves the socket"
        case .timedOut: return "timed out"
        case .tokenUnreadable(let path, let reason): return "cannot read token file \(path): \(reason)"
        case .link(let e): return e.description
        case .system(let error): return error.description
        }
    }
}

/// A control connection to the local agent: connect, say hello, then requests and replies.
public struct AgentChannel: ~Copyable, Sendable {
    private let socket: UnixSocket
    /// What the agent said in its welcome.
    public let welcome: Welcome

    /// A received control message and the descriptors that came with it (owned by the caller).
    public struct Reply {
        /// The message.
        public var message: ControlMessage
        /// Descriptors passed with it.
        public var descriptors: [Int32]
    }

    /// Connects to the agent at `path` and completes the hello exchange.
    public init(path: String, role: Hello.Role, software: String) throws(VIOError) {
        let socket: UnixSocket
        do {
            socket = try UnixSocket.connect(path: path)
        } catch {
            throw error.errno == .permissionDenied
                ? .agentUnreachable(path: path, reason: "permission denied: the agent admits only the uids its topology gives this host's instances (uid \(getuid()) is not one)")
                : .agentUnreachable(path: path, reason: error.errno.description)
        }
        do {
            try socket.send(ControlMessage.hello(Hello(role: role, software: software)).encoded())
        } catch {
            throw .system(error)
        }
        let reply = try Self.receive(on: socket, wait: true)!
        switch reply.message {
        case .welcome(let w): welcome = w
        case .error(let e): throw .refused(e)
        case let other: throw .protocolViolation("expected WELCOME, got \(other.kindName)")
        }
        self.socket = socket
    }

    /// The socket's descriptor (for polling).
    public var descriptor: Int32 { socket.fd.rawValue }

    /// The agent's process id (SO_PEERCRED at connect time).
    public var agentProcessID: Int32? { try? socket.peerCredentials().pid }

    /// Sends a message that has no reply.
    public func send(_ message: ControlMessage) throws(VIOError) {
        do {
            try socket.send(message.encoded())
        } catch {
            throw error.errno == .brokenPipe || error.errno == .connectionReset ? .agentGone : .system(error)
        }
    }

    /// Sends `request` and waits for its reply; an ERROR reply is thrown as ``VIOError/refused(_:)``.
    public func request(_ request: ControlMessage) throws(VIOError) -> Reply {
        var ignored: [IncomingLink] = []
        return try self.request(request, replyTo: nil, queue: &ignored)
    }

    /// Sends `request`, queues unsolicited LINK_READY messages (request id 0) that arrive
    /// before the reply, and returns the reply.
    func request(_ request: ControlMessage, replyTo requestID: UInt32?, queue: inout [IncomingLink]) throws(VIOError) -> Reply {
        try send(request)
        while true {
            let reply = try Self.receive(on: socket, wait: true)!
            if case .linkReady(let ready) = reply.message, ready.requestID == 0, requestID != 0 {
                queue.append(IncomingLink(ready: ready, descriptors: reply.descriptors))
                continue
            }
            if case .error(let e) = reply.message { throw .refused(e) }
            return reply
        }
    }

    /// Reads every message already waiting, queuing incoming links; throws if the agent left.
    func collectUnsolicited(into queue: inout [IncomingLink]) throws(VIOError) {
        while let reply = try Self.receive(on: socket, wait: false) {
            guard case .linkReady(let ready) = reply.message, ready.requestID == 0 else {
                for fd in reply.descriptors { close(fd) }
                throw .protocolViolation("unexpected \(reply.message.kindName) from the agent")
            }
            queue.append(IncomingLink(ready: ready, descriptors: reply.descriptors))
        }
    }

    /// The agent's state.
    public func status() throws(VIOError) -> AgentStatus {
        switch try request(.statusRequest).message {
        case .status(let s): return s
        case let other: throw .protocolViolation("expected STATUS, got \(other.kindName)")
        }
    }

    /// Asks the agent to re-read its topology file and apply what changed; returns what it
    /// applied, one line per kind of change (empty: nothing changed).
    public func reload() throws(VIOError) -> [String] {
        switch try request(.reloadRequest).message {
        case .reloaded(let lines): return lines
        case let other: throw .protocolViolation("expected RELOADED, got \(other.kindName)")
        }
    }

    /// Another host's agent state, fetched by this agent over the fabric.
    public func health(of host: String) throws(VIOError) -> AgentStatus {
        switch try request(.healthRequest(host: host)).message {
        case .status(let s): return s
        case let other: throw .protocolViolation("expected STATUS, got \(other.kindName)")
        }
    }

    /// The next message, put together from FRAGMENTs when the agent sent it in pieces.
    private static func receive(on socket: borrowing UnixSocket, wait: Bool) throws(VIOError) -> Reply? {
        guard let first = try receivePacket(on: socket, wait: wait) else { return nil }
        guard case .fragment(var last, let bytes) = first.message else { return first }
        for fd in first.descriptors { close(fd) }
        var packet = bytes
        while !last {
            // The rest follows at once: wait for it.
            guard let next = try receivePacket(on: socket, wait: true), case .fragment(let isLast, let more) = next.message,
                  !more.isEmpty || isLast else {
                throw .protocolViolation("a message in pieces was cut short by another message, or an empty piece")
            }
            for fd in next.descriptors { close(fd) }
            guard packet.count + more.count <= ControlMessage.maximumReassembled else {
                throw .protocolViolation("the agent sent a message of more than \(ControlMessage.maximumReassembled) bytes in pieces")
            }
            packet += more
            last = isLast
        }
        let message: ControlMessage
        do { message = try ControlMessage.decode(packet) } catch { throw .protocolViolation(error.description) }
        if case .fragment = message { throw .protocolViolation("a message in pieces held another message in pieces") }
        return Reply(message: message, descriptors: [])
    }

    private static func receivePacket(on socket: borrowing UnixSocket, wait: Bool) throws(VIOError) -> Reply? {
        let next: UnixSocket.Received?
        do {
            next = try socket.receive(dontWait: !wait)
        } catch {
            throw error.errno == .connectionReset ? .agentGone : .system(error)
        }
        guard let received = next else { return nil }
        if received.closed { throw .agentGone }
        if received.truncated {
            for fd in received.descriptors { close(fd) }
            throw .protocolViolation("the agent sent a control message larger than \(UnixSocket.maximumMessage) bytes")
        }
        do {
            return Reply(message: try ControlMessage.decode(received.bytes), descriptors: received.descriptors)
        } catch {
            for fd in received.descriptors { close(fd) }
            throw .protocolViolation(error.description)
        }
    }
}
