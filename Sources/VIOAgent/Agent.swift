import Logging
import VIOLinux
import VIOTopology
import VIOTransport
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

/// The per-host daemon: owns the control socket, admits instances and sets up their links.
///
/// The control plane runs on one thread around an epoll loop; the data path never passes
/// through it (local links are shared memory between the instances).
public final class Agent {
    private let configuration: AgentConfiguration
    private let logger: Logger
    private let transport: TransportChoice
    private let startedAt = MonotonicClock.nanoseconds()

    private let epoll: Epoll
    private let signals: SignalDescriptor
    private let listener: UnixSocket
    private var connections: [UInt64: ControlConnection] = [:]
    private var nextToken: UInt64 = 16

    private static let listenerToken: UInt64 = 1
    private static let signalToken: UInt64 = 2

    /// Sets up the control socket and signal handling; refuses to start on anything wrong.
    public init(configuration: AgentConfiguration, logger: Logger) throws(AgentError) {
        self.configuration = configuration
        self.logger = logger
        let host = configuration.view.host
        do {
            transport = try TransportSelector.choose(requested: host.transport.rawValue, device: host.rdmaDevice)
        } catch {
            throw .transportUnavailable("host '\(host.name)': \(error.description)")
        }
        let path = configuration.view.controlSocket
        if let probe = try? UnixSocket.connect(path: path) {
            _ = consume probe
            throw .alreadyRunning(socket: path)
        }
        do {
            signals = try SignalDescriptor(signals: [SIGTERM, SIGINT, SIGHUP])
            try Directories.create(Directories.parent(of: path))
            // Admission is decided per connection from SO_PEERCRED, so any local user may
            // connect; the socket's mode does not have to encode the topology's uids.
            listener = try UnixSocket.listen(path: path, mode: 0o666)
            try listener.fd.setNonBlocking()
            epoll = try Epoll()
            try epoll.add(listener.fd.rawValue, token: Self.listenerToken)
            try epoll.add(signals.fd.rawValue, token: Self.signalToken)
        } catch {
            throw .system(error, doing: "cannot set up the control socket \(path)")
        }
    }

    /// Serves until SIGTERM, SIGINT or SIGHUP, then removes the control socket.
    public func run() throws(AgentError) {
        let view = configuration.view
        logger.info("vio-agent serving", metadata: [
            "cluster": "\(configuration.topology.cluster)", "host": "\(view.host.name)",
            "socket": "\(view.controlSocket)", "instances": "\(view.instances.count)",
            "links": "\(view.links.count)", "transport": "\(transport)",
        ])
        defer { unlink(view.controlSocket) }
        while true {
            let events: [Epoll.Event]
            do {
                events = try epoll.wait(timeoutMilliseconds: -1)
            } catch {
                throw .system(error, doing: "waiting for control events")
            }
            for event in events {
                switch event.token {
                case Self.listenerToken: acceptAll()
                case Self.signalToken:
                    if let signal = try? signals.next() {
                        logger.info("stopping on signal \(signal)")
                        connections.removeAll()
                        return
                    }
                default: serve(token: event.token, event: event)
                }
            }
        }
    }

    private func acceptAll() {
        while true {
            let accepted: UnixSocket?
            do {
                accepted = try listener.accept()
            } catch {
                logger.warning("accept failed: \(error)")
                return
            }
            guard let socket = accepted else { return }
            do {
                let credentials = try socket.peerCredentials()
                try socket.fd.setNonBlocking()
                let token = nextToken
                nextToken += 1
                try epoll.add(socket.fd.rawValue, token: token)
                connections[token] = ControlConnection(socket: socket, credentials: credentials)
                logger.debug("control connection", metadata: ["pid": "\(credentials.pid)", "uid": "\(credentials.uid)"])
            } catch {
                logger.warning("dropping control connection: \(error)")
            }
        }
    }

    private func serve(token: UInt64, event: Epoll.Event) {
        guard let connection = connections[token] else { return }
        var keep = true
        while keep {
            let received: UnixSocket.Received?
            do {
                received = try connection.socket.receive(dontWait: true)
            } catch {
                logger.debug("control connection failed: \(error)")
                keep = false
                break
            }
            guard let message = received else { break }
            if message.closed { keep = false; break }
            for fd in message.descriptors { close(fd) }  // clients never send descriptors
            keep = handle(message.bytes, truncated: message.truncated, on: connection)
        }
        if !keep || event.hangUp {
            epoll.remove(connection.socket.fd.rawValue)
            connections[token] = nil
        }
    }

    /// Handles one packet; returns false when the connection must be closed.
    private func handle(_ bytes: [UInt8], truncated: Bool, on connection: ControlConnection) -> Bool {
        let pid = connection.credentials.pid
        func refuse(_ error: ControlError) -> Bool {
            logger.warning("refusing control client", metadata: ["pid": "\(pid)", "reason": "\(error.message)"])
            try? connection.send(.error(error))
            return false
        }
        if truncated {
            return refuse(ControlError(.malformed, "control message larger than \(UnixSocket.maximumMessage) bytes"))
        }
        let message: ControlMessage
        do {
            message = try ControlMessage.decode(bytes)
        } catch {
            return refuse(ControlError(.malformed, "malformed control message: \(error)"))
        }
        switch (connection.phase, message) {
        case (.awaitingHello, .hello(let hello)):
            connection.phase = .ready
            connection.role = hello.role
            let welcome = Welcome(cluster: configuration.topology.cluster, host: configuration.view.host.name,
                                  agentPID: getpid())
            return (try? connection.send(.welcome(welcome))) != nil
        case (.awaitingHello, _):
            return refuse(ControlError(.unexpected, "the first message must be HELLO"))
        case (.ready, .statusRequest):
            return (try? connection.send(.status(status()))) != nil
        case (.ready, _):
            return refuse(ControlError(.unexpected, "unexpected message \(message.kindName) after HELLO"))
        }
    }

    /// The current state, for `vioctl status`.
    func status() -> AgentStatus {
        let view = configuration.view
        let instances = view.instances.map {
            AgentStatus.InstanceState(name: $0.instance.name, attached: false, pid: 0)
        }
        let links = view.links.map { link -> AgentStatus.LinkState in
            let peerHost: String
            switch link.kind {
            case .local: peerHost = view.host.name
            case .remote(let host): peerHost = host
            }
            return AgentStatus.LinkState(localEnd: link.localEnd, peerEnd: link.peerEnd, peerHost: peerHost,
                                         state: "declared")
        }
        return AgentStatus(cluster: configuration.topology.cluster, host: view.host.name, pid: getpid(),
                           uptimeMilliseconds: (MonotonicClock.nanoseconds() - startedAt) / 1_000_000,
                           transport: transport.description, instances: instances, links: links)
    }
}
