import VIOLinux
import VIOWire

/// Errors from libvio, each saying what failed and what to do.
public enum VIOError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No agent answers at the control socket path.
    case agentUnreachable(path: String, reason: String)
    /// The agent refused a request.
    case refused(ControlError)
    /// The agent sent something this library cannot read.
    case protocolViolation(String)
    /// The agent closed the control connection.
    case agentGone
    /// A system call failed.
    case system(SystemError)

    public var description: String {
        switch self {
        case .agentUnreachable(let path, let reason):
            return "cannot reach vio-agent at \(path): \(reason). Is the agent running? (pass its socket with --socket or VIO_CONTROL_SOCKET)"
        case .refused(let error): return "agent refused: \(error.message)"
        case .protocolViolation(let what): return "protocol violation from agent: \(what)"
        case .agentGone: return "the agent closed the control connection"
        case .system(let error): return error.description
        }
    }
}

/// A control connection to the local agent: connect, say hello, then requests and replies.
public struct AgentChannel: ~Copyable {
    private let socket: UnixSocket
    /// What the agent said in its welcome.
    public let welcome: Welcome

    /// Connects to the agent at `path` and completes the hello exchange.
    public init(path: String, role: Hello.Role, software: String) throws(VIOError) {
        let socket: UnixSocket
        do {
            socket = try UnixSocket.connect(path: path)
        } catch {
            throw .agentUnreachable(path: path, reason: error.errno.description)
        }
        do {
            try socket.send(ControlMessage.hello(Hello(role: role, software: software)).encoded())
        } catch {
            throw .system(error)
        }
        switch try Self.receive(on: socket) {
        case .welcome(let w): welcome = w
        case .error(let e): throw .refused(e)
        case let other: throw .protocolViolation("expected WELCOME, got \(other.kindName)")
        }
        self.socket = socket
    }

    /// Sends `request` and waits for the reply; an ERROR reply is thrown as ``VIOError/refused(_:)``.
    public func request(_ request: ControlMessage) throws(VIOError) -> ControlMessage {
        do {
            try socket.send(request.encoded())
        } catch {
            throw error.errno == .brokenPipe || error.errno == .connectionReset ? .agentGone : .system(error)
        }
        let reply = try Self.receive(on: socket)
        if case .error(let e) = reply { throw .refused(e) }
        return reply
    }

    /// The agent's state.
    public func status() throws(VIOError) -> AgentStatus {
        switch try request(.statusRequest) {
        case .status(let s): return s
        case let other: throw .protocolViolation("expected STATUS, got \(other.kindName)")
        }
    }

    private static func receive(on socket: borrowing UnixSocket) throws(VIOError) -> ControlMessage {
        let next: UnixSocket.Received?
        do {
            next = try socket.receive()
        } catch {
            throw error.errno == .connectionReset ? .agentGone : .system(error)
        }
        guard let received = next, !received.closed else { throw .agentGone }
        do {
            return try ControlMessage.decode(received.bytes)
        } catch {
            throw .protocolViolation(error.description)
        }
    }
}
