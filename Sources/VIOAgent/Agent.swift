import Logging
import VIOLinux
import VIOSecurity
import VIOSharedMemory
import VIOTopology
import VIOTransport
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

/// The per-host daemon: owns the control socket, admits instances and sets up their links.
///
/// The control plane runs on one thread around an epoll loop (listening socket, one socket
/// per client, one pidfd per attached instance, a signalfd). The data path never passes
/// through it: local links are shared memory between the instances.
public final class Agent {
    /// The topology and this host's view of it (replaced by each reload).
    private(set) var configuration: AgentConfiguration
    /// What the agent started with: settings read only then are compared with it.
    private let startedWith: AgentConfiguration
    let logger: Logger
    private var transport: TransportChoice
    private let startedAt = MonotonicClock.nanoseconds()
    private var admission: Admission
    /// What the fabric takes channels from (nil while this host has no peers).
    private var transports: AgentTransports?
    /// Reloads applied, and the settings that wait for a restart (status).
    private var reloads: UInt32 = 0
    private var pendingRestart: [String] = []
    /// A reload created the fabric or the proxy: the loop reads its parts again.
    private var partsChanged = false
    /// Instances that stopped reading (`not_responding_ms`; nil when 0).
    private let hangWatch: HangWatch?

    private let loop: EventLoop
    /// The inter-host fabric; nil when this host has no links to other hosts.
    private var fabric: Fabric?
    /// Proxy mode: the services with an end on this host (nil when there are none).
    private var proxy: ProxyManager?
    /// The Prometheus endpoint, when the host's `metrics_listen` (or `--metrics-listen`) asks.
    private var metricsEndpoint: MetricsEndpoint?
    private let signals: SignalDescriptor
    private let listener: UnixSocket
    private var connections: [UInt64: ControlConnection] = [:]
    private var attachments: [String: ControlConnection] = [:]
    private var links = LocalLinkTable()
    private var pendingOpens: [PendingOpen] = []
    /// A stop signal arrived: `run` returns after this turn's events.
    private var stopping = false

    /// Scheduling priority the agent asks for when it carries cross-host links.
    static let fabricNice: Int32 = -10

    /// An OPEN_LINK waiting for its peer to attach.
    struct PendingOpen {
        var connection: UInt64
        var requester: String
        var peer: String
        var requestID: UInt32
        var deadline: UInt64
    }

    /// Sets up the control socket and signal handling; refuses to start on anything wrong.
    public init(configuration: AgentConfiguration, logger: Logger) throws(AgentError) {
        self.configuration = configuration
        startedWith = configuration
        self.logger = logger
        admission = Admission(view: configuration.view, agentUID: getuid())
        hangWatch = HangWatch(milliseconds: configuration.topology.defaults.notRespondingMilliseconds)
        let host = configuration.view.host
        var transport: TransportChoice
        do {
            transport = try TransportSelector.choose(requested: host.transport.rawValue, device: host.rdmaDevice)
        } catch {
            throw .transportUnavailable("host '\(host.name)': \(error.description)")
        }
        self.transport = transport
        let tls = try Self.loadIdentity(configuration)
        let path = configuration.view.controlSocket
        if let probe = try? UnixSocket.connect(path: path) {
            _ = consume probe
            throw .alreadyRunning(socket: path)
        }
        do {
            signals = try SignalDescriptor(signals: [SIGTERM, SIGINT, SIGHUP])
            try Directories.create(Directories.parent(of: path))
            // Only the topology's uids may connect (mode 0600 plus an ACL entry per uid);
            // admission then checks each connection's SO_PEERCRED against its instance.
            listener = try UnixSocket.listen(path: path, mode: 0o600)
            Self.limitControlSocket(configuration.view, logger: logger)
            try listener.fd.setNonBlocking()
            loop = try EventLoop()
            try loop.register(listener.fd.rawValue) { [unowned self] _ in self.acceptAll() }
            try loop.register(signals.fd.rawValue) { [unowned self] _ in self.signalArrived() }
        } catch {
            throw .system(error, doing: "cannot set up the control socket \(path)")
        }
        if !configuration.view.peers.isEmpty {
            do { try startFabric(tls: tls) } catch {
                unlink(path)
                throw error
            }
        }
        if !configuration.view.services.isEmpty {
            do { try startProxy() } catch {
                unlink(path)
                throw error
            }
        }
        if let listen = configuration.view.host.metricsListen {
            guard let (address, port) = Host.listenAddress(listen) else {
                unlink(path)
                throw .system(SystemError("bind", .invalidArgument, detail: listen), doing: "metrics_listen is not ADDRESS:PORT")
            }
            let metrics = AgentMetrics(startTime: Double(time(nil)))
            do {
                metricsEndpoint = try MetricsEndpoint(address: address, port: port, loop: loop) { [unowned self] in
                    metrics.scrape(self.statusWithTotals(), roundTrips: self.fabric?.takeRoundTrips() ?? [])
                }
            } catch {
                unlink(path)
                throw .system(error, doing: "cannot serve metrics on \(listen) (metrics_listen)")
            }
        }
    }

    /// Lets only the view's uids connect to the control socket (mode 0600 plus an ACL entry
    /// per uid), or everyone when ACLs are not available.
    private static func limitControlSocket(_ view: HostView, logger: Logger) {
        let path = view.controlSocket
        let users = view.instances.map { $0.instance.uid ?? getuid() }
        do { try FileAccess.limit(path, toOwnerAnd: users) } catch {
            logger.warning("cannot limit the control socket to the topology's uids with an ACL; it is open to every local user (admission still checks each connection's uid)",
                           metadata: ["socket": "\(path)", "error": "\(error)"])
            _ = chmod(path, 0o666)
        }
    }

    /// Starts the inter-host fabric for the current view (at start, or when a reload gives
    /// this host its first peer): its transports, listener and channels.
    private func startFabric(tls: TLSContext?) throws(AgentError) {
        let view = configuration.view
        if setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, Self.fabricNice) != 0 {
            // Cross-host links and heartbeats run on this thread: when instances oversubscribe
            // the cores, a normal-priority agent can be starved past the peer timeout. Raised
            // where allowed (root or CAP_SYS_NICE); otherwise it runs as is.
            logger.debug("could not raise the agent's priority (nice \(Self.fabricNice)); running at the default")
        }
        let transports = try AgentTransports(view: view, defaults: configuration.topology.defaults, choice: transport, tls: tls)
        let fabric: Fabric
        do {
            fabric = try Fabric(view: view, topology: configuration.topology, loop: loop, logger: logger,
                                transports: transports.forFabric(view), topologySource: configuration.topologySource)
        } catch {
            throw .system(error, doing: "cannot listen for other agents on \(view.host.address):\(view.host.port) (is another agent running, or is the address not on this host?)")
        }
        transport = transports.choice
        fabric.delegate = self
        fabric.proxy = proxy
        proxy?.fabric = fabric
        self.transports = transports
        self.fabric = fabric
    }

    /// Starts proxy mode for the current view's services (at start, or when a reload adds the
    /// first service of this host).
    private func startProxy() throws(AgentError) {
        let descriptors = DescriptorLimit.raiseToMaximum()
        logger.debug("descriptor limit for proxied connections", metadata: ["limit": "\(descriptors)"])
        let proxy = try ProxyManager(view: configuration.view, loop: loop, logger: logger)
        proxy.fabric = fabric
        fabric?.proxy = proxy
        self.proxy = proxy
    }

    /// Loads this host's private key when some of its host pairs are encrypted, and checks it
    /// is the key the topology declares for the host.
    private static func loadIdentity(_ configuration: AgentConfiguration) throws(AgentError) -> TLSContext? {
        let view = configuration.view
        let encrypted = view.peers.filter { $0.security == .tls }
        guard !encrypted.isEmpty else { return nil }
        let path = configuration.resolvedKeyFile
        let context: TLSContext
        do { context = try TLSContext(keyPath: path) } catch {
            throw .security("host '\(view.host.name)' encrypts its channels to \(encrypted.map(\.host.name).joined(separator: ", ")), but its key cannot be used: \(error)")
        }
        guard let declared = view.host.key else {
            throw .security("host '\(view.host.name)' has no key in the topology (\(view.host.location))")
        }
        guard declared.bytes == context.publicKey else {
            throw .security("the key in \(path) is not host '\(view.host.name)''s: the topology (\(view.host.location)) says \(declared), the file holds \(HostKey(bytes: context.publicKey)!); pass the right file with --key-file or fix the topology")
        }
        // Every send passes MSG_NOSIGNAL, but a peer that vanishes must give EPIPE, never kill
        // the agent, whatever writes to a socket.
        signal(SIGPIPE, SIG_IGN)
        return context
    }

    /// Serves until SIGTERM, SIGINT or SIGHUP, then removes the control socket.
    public func run() throws(AgentError) {
        let view = configuration.view
        logger.info("vio-agent serving", metadata: [
            "cluster": "\(configuration.topology.cluster)", "host": "\(view.host.name)",
            "socket": "\(view.controlSocket)", "instances": "\(view.instances.count)",
            "links": "\(view.links.count)", "transport": "\(transport)", "numa_nodes": "\(NUMA.nodeCount)",
        ])
        defer { unlink(view.controlSocket) }
        if let metricsEndpoint {
            logger.info("metrics listening", metadata: ["address": "\(metricsEndpoint.address)", "path": "/metrics"])
        }
        // Under systemd (Type=notify): ready once the control socket and the fabric listen.
        ServiceManager.notify("READY=1\nSTATUS=serving host \(view.host.name)\nMAINPID=\(getpid())")
        var moreWork = false
        var lastActivity: UInt64 = 0
        // How long the loop keeps polling after activity (topology `agent_poll_us`).
        // A fixed window when the topology sets one; otherwise learned from the traffic (only
        // an agent with a fabric relays messages: one without has nothing to poll for).
        func fixedPollWindow() -> UInt64? {
            view.host.agentPollMicroseconds >= 0 ? UInt64(view.host.agentPollMicroseconds) * 1000 : self.fabric == nil ? 0 : nil
        }
        var fixedPoll = fixedPollWindow()
        var adaptive = AdaptivePoll()
        var trialsLogged = 0
        var events = Epoll.EventBuffer(capacity: 256)
        // Read once: every `self.fabric` in the loop would retain and release it again.
        var fabric = self.fabric
        var proxy = self.proxy
        let hangWatch = self.hangWatch
        // When the hang watch is due, kept here: the loop reads it every turn.
        var nextHangCheck = hangWatch?.nextCheck ?? .max
        // One clock reading per turn, which the fabric stamps its activity with: taken at the
        // end of every turn (timing it), and again after a wait that may have slept or a yield.
        var now: UInt64 = 0
        func noteActivity() {
            lastActivity = now
            if fixedPoll == nil { adaptive.activity(at: now) }
        }
        func readClock() {
            now = MonotonicClock.nanoseconds()
            fabric?.now = now
        }
        readClock()
        while true {
            // Polling (`agent_poll_us`): after activity, look again without sleeping for a
            // while, yielding the core to anyone runnable, so the next frame or message does
            // not pay a wake-up.
            let pollNanoseconds = fixedPoll ?? adaptive.window(at: now)
            if adaptive.trials != trialsLogged {
                trialsLogged = adaptive.trials
                logger.debug("polling trial", metadata: [
                    "bursts_polling": "\(adaptive.lastTrial.polling)", "bursts_sleeping": "\(adaptive.lastTrial.sleeping)",
                    "polls": "\(adaptive.pollingHelps)", "window_us": "\(adaptive.learned / 1000)"])
            }
            let polling = pollNanoseconds > 0 && now &- lastActivity < pollNanoseconds
            if let fabric, fabric.polling != polling {
                // Entering: links drained from now on stay unarmed. Leaving: arm them all
                // before sleeping, and drain any that filled meanwhile.
                if polling { fabric.polling = true } else if fabric.stopPolling() { moreWork = true }
            }
            if polling, let fabric, fabric.pollLinks() {
                // Frame and send what the instances wrote before looking at epoll: the
                // message goes out one system call sooner.
                noteActivity()
                moreWork = fabric.finishTurn()
            }
            let timeout = moreWork || polling ? 0 : nextTimeoutMilliseconds(now: now, fabric: fabric, proxy: proxy, hangCheck: nextHangCheck)
            do {
                try loop.epoll.wait(timeoutMilliseconds: timeout, into: &events)
            } catch {
                throw .system(error, doing: "waiting for control events")
            }
            if timeout != 0 { readClock() }
            if events.isEmpty && polling && !moreWork {
                sched_yield()
                readClock()
                moreWork = fabric?.finishTurn() ?? false
                continue
            }
            let turnStart = now
            let carriedBefore = fabric?.carried ?? 0
            for index in 0..<events.count {
                loop.dispatch(events[index])
                if stopping { return }
            }

            if partsChanged {
                // A reload started the fabric or the proxy.
                partsChanged = false
                fabric = self.fabric
                proxy = self.proxy
                fixedPoll = fixedPollWindow()
                fabric?.now = now
            }
            expirePendingOpens(now: now)
            if let proxy, proxy.nextDeadline <= now { proxy.tick(now) }
            if nextHangCheck <= now, let hangWatch {
                checkForHangs(hangWatch, now: now)
                nextHangCheck = hangWatch.nextCheck
            }
            moreWork = fabric?.finishTurn() ?? false
            // Only traffic counts (doorbells, DATA frames, those the turn's end read too):
            // heartbeats leave the agent asleep.
            if let fabric, fabric.carried != carriedBefore { noteActivity() }
            readClock()
            if now &- turnStart > 200_000_000 {
                logger.warning("slow agent turn", metadata: ["ms": "\((now &- turnStart) / 1_000_000)", "events": "\(events.count)"])
            }
        }
    }

    /// SIGTERM or SIGINT: every connection is dropped and the loop stops. SIGHUP: the topology
    /// is reloaded (``reload()``); the agent goes on.
    private func signalArrived() {
        guard let signal = try? signals.next() else { return }
        if signal == SIGHUP {
            switch reload() {
            case .success(let applied): logger.notice("SIGHUP: topology reloaded", metadata: ["changes": "\(applied.isEmpty ? "none" : applied.joined(separator: "; "))"])
            case .failure(let error): logger.error("SIGHUP: reload refused", metadata: ["reason": "\(error.message)"])
            }
            return
        }
        logger.info("stopping on signal \(signal)")
        ServiceManager.notify("STOPPING=1")
        fabric?.announceStop("signal \(signal)")
        proxy?.stop()
        for connection in connections.values { drop(connection, reason: "agent stopping") }
        stopping = true
    }

    // MARK: Reload

    /// Re-reads the topology file and applies what changed for this host (``TopologyChange``):
    /// added instances may attach, added links open, added services listen, added peer hosts
    /// are dialed or accepted; removed ones close with the reason "removed from the topology"
    /// (their instances see ``LinkError/removedFromTopology(peer:)``); links nothing changed
    /// keep flowing. Settings read only at start are listed as pending a restart. A file with
    /// errors, or without this host, changes nothing. Returns one line per kind of change.
    func reload() -> Result<[String], ControlError> {
        ServiceManager.notify("RELOADING=1")
        defer { ServiceManager.notify("READY=1\nSTATUS=serving host \(configuration.view.host.name)") }
        let source = configuration.topologySource
        guard source != EmbeddedTopology.source else {
            return .failure(ControlError(.notSupported, "this agent runs the embedded topology, which cannot change; start it with --topology FILE to reload"))
        }
        let fresh: Topology
        do { (fresh, _) = try TopologyLoader.load(path: source) } catch {
            return .failure(ControlError(.invalidTopology, "\(source) has errors; the agent keeps the topology it runs:\n\(error.diagnostics.map(\.description).joined(separator: "\n"))"))
        }
        let old = configuration.view
        guard var view = fresh.view(for: old.host.name, controlSocket: old.controlSocket) else {
            return .failure(ControlError(.invalidTopology, "\(source) no longer declares host '\(old.host.name)'; the agent keeps the topology it runs (stop it to take the host out)"))
        }
        let carried = fabric?.channels.peers.values.map(\.asDeclared) ?? []
        let change = TopologyChange(from: old, services: proxy?.services.map(\.declared) ?? [], peers: carried,
                                    started: (startedWith.view, startedWith.topology), to: view, fresh)
        // The socket the agent serves stays where it is (a change there waits for a restart).
        view.controlSocket = old.controlSocket
        let updated = AgentConfiguration(reloading: configuration, topology: fresh, view: view)
        guard !change.isEmpty else {
            configuration = updated
            fabric?.view = view
            fabric?.topology = fresh
            proxy?.view = view
            return .success([])
        }
        let reason = "removed from the topology of host '\(old.host.name)'"
        // Links first, so they end as removed rather than as gone with their instances.
        for declared in change.removedLinks where declared.kind == .local {
            pendingOpens.removeAll { p in
                guard (p.requester == declared.localEnd && p.peer == declared.peerEnd) || (p.requester == declared.peerEnd && p.peer == declared.localEnd),
                      let connection = connections[p.connection] else { return false }
                _ = reply(connection, ControlError(.undeclaredLink, "the link '\(declared.localEnd)' <-> '\(declared.peerEnd)' was \(reason)"))
                return true
            }
            guard let link = links.any(between: declared.localEnd, declared.peerEnd) else { continue }
            link.finish(LinkStateWord(kind: .removed, end: 0))
            links.remove(link)
            logger.notice("link closed: \(Fabric.removedReason)", metadata: ["link": "\(declared.localEnd) <-> \(declared.peerEnd)"])
        }
        var problems: [String] = []
        admission = Admission(view: view, agentUID: getuid())
        if let fabric, let transports {
            fabric.reload(to: view, topology: fresh, change: change, transport: transports.forPeer)
            // Acceptance follows the peers as the fabric carries them: added ones join; one
            // whose key or security changed keeps the old until a restart (pending).
            do {
                if let listener = try transports.prepare(for: fabric.channels, identity: { () throws(AgentError) in try Self.loadIdentity(updated) }) {
                    do { try fabric.channels.addListener(listener) } catch { problems.append("cannot watch the new fabric listener: \(error)") }
                }
            } catch {
                problems.append(error.description)
            }
        }
        for name in change.removedInstances {
            guard let connection = attachments[name] else { continue }
            try? connection.send(.error(ControlError(.unknownInstance, "instance '\(name)' was \(reason)")))
            drop(connection, reason: "instance \(reason)")
        }
        for service in change.removedServices { proxy?.remove(service.name, reason: "service '\(service.name)' was \(reason)") }
        let previous = configuration
        configuration = updated
        proxy?.view = view
        if let proxy {
            for service in change.addedServices {
                do { try proxy.add(service) } catch { problems.append("service '\(service.name)': \(error.description)") }
            }
        } else if !view.services.isEmpty {
            do { try startProxy() } catch { problems.append("proxy mode: \(error.description)") }
            partsChanged = true
        }
        if fabric == nil && !view.peers.isEmpty {
            do {
                try startFabric(tls: try Self.loadIdentity(configuration))
                partsChanged = true
            } catch {
                problems.append("the fabric to other hosts: \(error.description)")
            }
        }
        if Set(previous.view.instances.map { $0.instance.uid ?? getuid() }) != Set(view.instances.map { $0.instance.uid ?? getuid() }) {
            Self.limitControlSocket(view, logger: logger)
        }
        reloads += 1
        pendingRestart = change.pendingRestart + problems
        let applied = change.summary + problems.map { "not applied: \($0)" }
        for line in applied { logger.notice("topology reloaded", metadata: ["change": "\(line)"]) }
        return .success(applied)
    }

    // MARK: Connections

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
                // The registration's token names the connection (its events carry it).
                let registration = try loop.register(socket.fd.rawValue) { [unowned self] event in
                    self.serve(token: event.token, event: event)
                }
                let connection = ControlConnection(token: registration.token, socket: socket, credentials: credentials)
                connection.registration = registration
                // A reply the client has not read yet waits; the loop sends it as room appears.
                connection.onBacklog = { [unowned self, unowned connection] in
                    if let registration = connection.registration { try? self.loop.watchWritable(registration, true) }
                }
                connections[registration.token] = connection
                logger.debug("control connection", metadata: ["pid": "\(credentials.pid)", "uid": "\(credentials.uid)"])
            } catch {
                logger.warning("dropping control connection: \(error)")
            }
        }
    }

    private func serve(token: UInt64, event: Epoll.Event) {
        guard let connection = connections[token] else { return }
        if event.writable, connection.isBackedUp {
            do {
                if try connection.flush(), let registration = connection.registration { try? loop.watchWritable(registration, false) }
            } catch {
                drop(connection, reason: "control socket error: \(error)")
                return
            }
        }
        while true {
            let received: UnixSocket.Received?
            do {
                received = try connection.socket.receive(dontWait: true)
            } catch {
                drop(connection, reason: "control socket error: \(error)")
                return
            }
            guard let message = received else { break }
            if message.closed {
                drop(connection, reason: "control connection closed")
                return
            }
            for fd in message.descriptors { close(fd) }  // clients never send descriptors
            let descriptors = message.descriptorsTruncated ? "more than \(message.descriptors.count)" : message.descriptors.isEmpty ? nil : "\(message.descriptors.count)"
            if !handle(message.bytes, truncated: message.truncated, descriptors: descriptors, on: connection) {
                drop(connection, reason: nil)
                return
            }
        }
        if event.hangUp { drop(connection, reason: "control connection hung up") }
    }

    /// Forgets a connection; an attached instance's links are reported gone to their peers.
    private func drop(_ connection: ControlConnection, reason: String?) {
        guard connections.removeValue(forKey: connection.token) != nil else { return }
        for registration in [connection.registration, connection.processRegistration].compactMap({ $0 }) {
            loop.unregister(registration)
        }
        pendingOpens.removeAll { $0.connection == connection.token }
        guard let name = connection.instance, attachments[name] === connection else { return }
        attachments[name] = nil
        fabric?.instanceGone(name)
        let gone = links.instanceGone(name)
        logger.info("instance detached", metadata: [
            "instance": "\(name)", "pid": "\(connection.credentials.pid)", "reason": "\(reason ?? "closed")",
            "links_closed": "\(gone.count)",
        ])
    }

    // MARK: Messages

    /// Handles one packet; returns false when the connection must be closed.
    /// `descriptors` says how many file descriptors came with it, nil for none.
    private func handle(_ bytes: [UInt8], truncated: Bool, descriptors: String?, on connection: ControlConnection) -> Bool {
        let pid = connection.credentials.pid
        func refuse(_ error: ControlError, close: Bool = true) -> Bool {
            logger.warning("refusing control client", metadata: ["pid": "\(pid)", "reason": "\(error.message)"])
            try? connection.send(.error(error))
            return !close
        }
        if truncated {
            return refuse(ControlError(.malformed, "control message larger than \(UnixSocket.maximumMessage) bytes"))
        }
        if let descriptors {
            return refuse(ControlError(.malformed, "a control message of \(bytes.count) bytes carried \(descriptors) file descriptors; clients send none (they were closed)"))
        }
        let message: ControlMessage
        do {
            message = try ControlMessage.decode(bytes)
        } catch .unsupportedVersion(let found, let supported) {
            return refuse(ControlError(.unsupportedVersion, "the client speaks control protocol version \(found); this agent speaks \(supported)"))
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
            return refuse(ControlError(.unexpected, "the first message must be HELLO, not \(message.kindName)"))
        case (_, .statusRequest):
            return (try? connection.send(.status(status()))) != nil
        case (_, .reloadRequest):
            // Only whoever runs the agent (or root) may change what it serves.
            guard connection.credentials.uid == getuid() || connection.credentials.uid == 0 else {
                return reply(connection, ControlError(.notAllowed, "uid \(connection.credentials.uid) may not reload the agent; only its own uid (\(getuid())) or root may"))
            }
            switch reload() {
            case .success(let applied): return (try? connection.send(.reloaded(applied))) != nil
            case .failure(let error): return reply(connection, error)
            }
        case (_, .healthRequest(let host)):
            if host == configuration.view.host.name { return (try? connection.send(.status(status()))) != nil }
            guard let fabric else {
                return reply(connection, ControlError(.unknownInstance, "host '\(configuration.view.host.name)' has no links to other hosts"))
            }
            if let error = fabric.requestHealth(of: host, for: connection.token) { return reply(connection, error) }
            return true
        case (.ready, .attach(let request)) where connection.role == .instance:
            return attach(request, on: connection)
        case (.attached, .openLink(let request)):
            return openLink(request, on: connection)
        case (.attached, .closeLink(let request)):
            closeLink(LinkID(rawValue: request.linkID), on: connection)
            return true
        default:
            return refuse(ControlError(.unexpected, "\(message.kindName) is not valid \(connection.phase == .attached ? "after ATTACH" : "before ATTACH")"))
        }
    }

    private func attach(_ request: Attach, on connection: ControlConnection) -> Bool {
        let credentials = connection.credentials
        let decision = admission.admit(request, uid: credentials.uid, gid: credentials.gid) { name in
            self.attachments[name]?.credentials.pid
        }
        let instance: Instance
        switch decision {
        case .failure(let error):
            logger.warning("attach refused", metadata: ["pid": "\(credentials.pid)", "uid": "\(credentials.uid)",
                                                        "instance": "\(request.instance)", "reason": "\(error.message)"])
            try? connection.send(.error(error))
            return false
        case .success(let i): instance = i
        }
        do {
            let pidfd = try ProcessDescriptor.open(pid: credentials.pid)
            connection.processRegistration = try loop.register(pidfd.rawValue) { [unowned self, weak connection] _ in
                if let connection { self.drop(connection, reason: "process \(connection.credentials.pid) exited") }
            }
            connection.processDescriptor = pidfd.take()
        } catch {
            // The process may already be gone; the socket hang-up will tell us.
            logger.debug("pidfd unavailable for pid \(credentials.pid): \(error)")
        }
        connection.phase = .attached
        connection.instance = instance.name
        // A node this host does not have (a confused or hostile client) means no preference.
        connection.numaNode = Int(request.numaNode) < NUMA.nodeCount ? Int(request.numaNode) : 0
        attachments[instance.name] = connection
        let peers = configuration.view.links.compactMap { link -> Attached.Peer? in
            guard let peer = configuration.view.peer(of: instance.name, on: link) else { return nil }
            switch link.kind {
            case .local: return Attached.Peer(name: peer, host: configuration.view.host.name)
            case .remote(let host): return Attached.Peer(name: peer, host: host)
            }
        }
        guard (try? connection.send(.attached(Attached(instance: instance.name, peers: peers)))) != nil else { return false }
        logger.info("instance attached", metadata: ["instance": "\(instance.name)", "pid": "\(credentials.pid)",
                                                    "uid": "\(credentials.uid)", "numa_node": "\(request.numaNode)"])
        fabric?.instanceAttached(instance.name)
        // Opens that were waiting for this instance complete now.
        let waiting = pendingOpens.filter { $0.peer == instance.name }
        pendingOpens.removeAll { $0.peer == instance.name }
        for pending in waiting {
            guard let requester = connections[pending.connection] else { continue }
            establish(from: requester, to: instance.name, requestID: pending.requestID)
        }
        return true
    }

    private func openLink(_ request: OpenLink, on connection: ControlConnection) -> Bool {
        let me = connection.instance!
        let view = configuration.view
        guard let declared = view.link(between: me, and: request.peer) else {
            let mine = view.links.compactMap { view.peer(of: me, on: $0) }
            return reply(connection, ControlError(.undeclaredLink,
                "no link between '\(me)' and '\(request.peer)' is declared in \(configuration.topologySource); '\(me)' may link to: \(mine.isEmpty ? "nobody" : mine.joined(separator: ", "))"))
        }
        if case .remote = declared.kind {
            guard let fabric else { return reply(connection, ControlError(.internalError, "no fabric for a remote link")) }
            if let error = fabric.openLink(instance: me, link: declared, requestID: request.requestID,
                                           waitMilliseconds: request.timeoutMilliseconds) {
                return reply(connection, error)
            }
            return true
        }
        if attachments[request.peer] != nil {
            establish(from: connection, to: request.peer, requestID: request.requestID)
            return true
        }
        if request.timeoutMilliseconds == 0 {
            return reply(connection, ControlError(.peerNotAttached,
                "instance '\(request.peer)' is not attached to this agent; start it, or open with a timeout to wait for it"))
        }
        let deadline = request.timeoutMilliseconds == UInt32.max ? UInt64.max
            : MonotonicClock.nanoseconds() + UInt64(request.timeoutMilliseconds) * 1_000_000
        pendingOpens.append(PendingOpen(connection: connection.token, requester: me, peer: request.peer,
                                        requestID: request.requestID, deadline: deadline))
        return true
    }

    /// Sends a non-fatal error reply (the connection stays open).
    private func reply(_ connection: ControlConnection, _ error: ControlError) -> Bool {
        logger.info("request refused", metadata: ["instance": "\(connection.instance ?? "-")", "reason": "\(error.message)"])
        return (try? connection.send(.error(error))) != nil
    }

    /// Creates the link between the requester and `peer` and hands it to both; when it is open
    /// already (opened from the other side, or a second open that waited for the same peer),
    /// the requester is pointed at it instead: at most one link per pair, never one lost.
    private func establish(from requester: ControlConnection, to peer: String, requestID: UInt32) {
        let me = requester.instance!
        guard let peerConnection = attachments[peer] else { return }
        if let existing = links.open(between: me, peer) {
            let ready = LinkReady(requestID: requestID, linkID: existing.id.rawValue, peer: peer,
                                  end: UInt8(existing.end(of: me)!), alreadyDelivered: true)
            _ = try? requester.send(.linkReady(ready))
            return
        }
        let view = configuration.view
        // OPEN_LINK checked the declaration before anything reaches here.
        guard let declared = view.link(between: me, and: peer) else { return }
        // Ring e is read by end e: end 0 (me) reads the ring sized for me.
        let toMe = declared.localEnd == me ? declared.ringSizeToLocal : declared.ringSizeToPeer
        let toPeer = declared.localEnd == me ? declared.ringSizeToPeer : declared.ringSizeToLocal
        let link: LocalLink
        do {
            link = try links.create(opener: me, peer: peer, capacities: (toMe.bytes, toPeer.bytes),
                                    maxMessage: declared.maxMessageSize.bytes,
                                    nodes: (requester.numaNode, peerConnection.numaNode))
        } catch {
            logger.error("cannot create link \(me) <-> \(peer): \(error)")
            _ = reply(requester, ControlError(.internalError, "the agent could not create the link: \(error)"))
            return
        }
        do {
            // Each end also gets the other's pidfd (when the agent has one): it then learns of
            // its peer's death itself, even after this agent is gone.
            func watching(_ other: ControlConnection) -> [Int32] { other.processDescriptor >= 0 ? [other.processDescriptor] : [] }
            try requester.send(.linkReady(LinkReady(requestID: requestID, linkID: link.id.rawValue, peer: peer, end: 0,
                                                    alreadyDelivered: false)),
                               descriptors: link.descriptors(for: 0) + watching(peerConnection))
            try peerConnection.send(.linkReady(LinkReady(requestID: 0, linkID: link.id.rawValue, peer: me, end: 1,
                                                         alreadyDelivered: false)),
                                    descriptors: link.descriptors(for: 1) + watching(requester))
        } catch {
            logger.warning("could not deliver link \(me) <-> \(peer): \(error)")
            link.finish(LinkStateWord(kind: .closed, end: 0))
            links.remove(link)
            return
        }
        logger.info("link open", metadata: ["id": "\(link.id)", "ends": "\(me) <-> \(peer)",
                                            "ring_bytes": "\(toMe)/\(toPeer)"])
    }

    private func closeLink(_ id: LinkID, on connection: ControlConnection) {
        if let me = connection.instance, let fabric, fabric.closeLink(id: id, by: me) { return }
        guard let me = connection.instance, let link = links.link(id: id), let end = link.end(of: me) else { return }
        link.finish(LinkStateWord(kind: .closed, end: end))
        links.remove(link)
        logger.info("link closed", metadata: ["id": "\(id)", "by": "\(me)"])
    }

    // MARK: Timers

    /// Milliseconds from `now` to the next deadline (rounded up; -1: none).
    /// (The loop passes the agent's parts it holds: reading them from `self` here would retain
    /// and release each before every sleep.)
    private func nextTimeoutMilliseconds(now: UInt64, fabric: Fabric?, proxy: ProxyManager?, hangCheck: UInt64) -> Int32 {
        let opens = pendingOpens.lazy.map(\.deadline).min() ?? .max
        // Asked before every sleep: nothing here may allocate or walk the links.
        // Two-argument mins: the three-argument one is variadic (generic, an array per call).
        let timers = min(min(fabric?.nextTimeoutNanoseconds() ?? .max, proxy?.nextDeadline ?? .max), hangCheck)
        return Deadline(nanoseconds: min(opens, timers)).remainingMilliseconds(at: now)
    }

    /// Rings instances of this host read: each local link's two, each cross-host link's ring 0.
    /// A reader found stalled (or moving again) wakes its local writer, or is announced to the
    /// far agent, whose writer it is.
    private func checkForHangs(_ watch: HangWatch, now: UInt64) {
        var readers: [(region: LinkRegion, rings: ClosedRange<Int>)] = []
        for link in links.byPair.values where link.isOpen { readers.append((link.region, 0...1)) }
        let remoteLinks = fabric?.openLinks ?? []
        for link in remoteLinks { readers.append((link.region, 0...0)) }
        let changes = watch.check(readers, now: now)
        guard !changes.isEmpty else { return }
        // Rare: look the links up only now.
        let local = Dictionary(links.byPair.values.map { (ObjectIdentifier($0.region), $0) }, uniquingKeysWith: { a, _ in a })
        let remote = Dictionary(remoteLinks.map { (ObjectIdentifier($0.region), $0) }, uniquingKeysWith: { a, _ in a })
        for change in changes {
            let reader = change.region.name(ofEnd: change.ring)
            if change.stalled {
                logger.warning("instance not responding", metadata: ["instance": "\(reader)", "link": "\(change.region.name(ofEnd: 0)) <-> \(change.region.name(ofEnd: 1))",
                                                                     "unread_for_ms": "\(watch.limitNanoseconds / 1_000_000)"])
            } else {
                logger.info("instance responding again", metadata: ["instance": "\(reader)"])
            }
            if let link = local[ObjectIdentifier(change.region)] {
                // The writer of ring r is end 1 - r, which waits on its space doorbell.
                EventDescriptor.ring(change.ring == 0 ? link.space1.rawValue : link.space0.rawValue)
            } else if let link = remote[ObjectIdentifier(change.region)] {
                fabric?.announceReaderStalled(link, change.stalled)
            }
        }
    }

    private func expirePendingOpens(now: UInt64) {
        guard !pendingOpens.isEmpty else { return }
        let expired = pendingOpens.filter { $0.deadline <= now }
        pendingOpens.removeAll { $0.deadline <= now }
        for pending in expired {
            guard let connection = connections[pending.connection] else { continue }
            _ = reply(connection, ControlError(.peerNotAttached,
                "instance '\(pending.peer)' did not attach before the timeout; is it running?"))
        }
    }

    // MARK: Status

    /// Ring sizes and per-direction counters of a link whose local end reads ring `localRing`.
    private static func recordTraffic(of region: LinkRegion, localRing: Int, into state: inout AgentStatus.LinkState) {
        state.ringBytes = (UInt64(region.capacity(ofRing: localRing)), UInt64(region.capacity(ofRing: 1 - localRing)))
        state.sent = AgentStatus.DirectionCounters(region.counters(ofRing: 1 - localRing))
        state.received = AgentStatus.DirectionCounters(region.counters(ofRing: localRing))
    }

    /// ``status()`` with each link's counters counting every link between its two instances
    /// since the agent started, closed ones included (metrics).
    func statusWithTotals() -> AgentStatus {
        var s = status()
        let retired = [links.retired, fabric?.retiredTraffic].compactMap { $0 }
        for i in s.links.indices {
            let (a, b) = (s.links[i].localEnd, s.links[i].peerEnd)
            for r in retired {
                s.links[i].sent = s.links[i].sent.adding(r.counters(from: a, to: b))
                s.links[i].received = s.links[i].received.adding(r.counters(from: b, to: a))
            }
        }
        return s
    }

    /// The current state, for `vioctl status`.
    func status() -> AgentStatus {
        let view = configuration.view
        let instances = view.instances.map { resolved -> AgentStatus.InstanceState in
            let name = resolved.instance.name
            guard let c = attachments[name] else { return AgentStatus.InstanceState(name: name, attached: false, pid: 0) }
            return AgentStatus.InstanceState(name: name, attached: true, pid: c.credentials.pid, uid: c.credentials.uid,
                                             numaNode: UInt16(c.numaNode))
        }
        let multiNode = NUMA.nodeCount > 1
        let linkStates = view.links.map { declared -> AgentStatus.LinkState in
            let peerHost: String
            switch declared.kind {
            case .local: peerHost = view.host.name
            case .remote(let host): peerHost = host
            }
            var state = AgentStatus.LinkState(localEnd: declared.localEnd, peerEnd: declared.peerEnd,
                                              peerHost: peerHost, state: "declared")
            if case .remote = declared.kind {
                guard let remote = fabric?.link(for: declared) else { return state }
                state.state = remote.isOpen ? "open" : remote.closeReceived ? "closing" : "opening"
                // The region's ends are the instance here (0) and the far one (1).
                if remote.isOpen { state.state = ([state.state] + remote.region.notResponding).joined(separator: ", ") }
                state.session = remote.machine.state.briefName
                state.linkID = remote.id.rawValue
                // The instance is end 0 of a fabric link's region: it reads ring 0.
                Self.recordTraffic(of: remote.region, localRing: 0, into: &state)
                return state
            }
            guard let link = links.any(between: declared.localEnd, declared.peerEnd),
                  let local = link.end(of: declared.localEnd) else { return state }
            state.state = link.stateDescription
            state.linkID = link.id.rawValue
            let nodes = [Int16(clamping: link.nodes.0), Int16(clamping: link.nodes.1)]
            state.numaNodes = multiNode ? (nodes[local], nodes[1 - local]) : (-1, -1)
            Self.recordTraffic(of: link.region, localRing: local, into: &state)
            return state
        }
        var status = AgentStatus(cluster: configuration.topology.cluster, host: view.host.name, pid: getpid(),
                                 uptimeMilliseconds: (MonotonicClock.nanoseconds() - startedAt) / 1_000_000,
                                 transport: transport.description, numaNodes: UInt16(NUMA.nodeCount),
                                 instances: instances, links: linkStates)
        status.peerHosts = fabric?.peerStates() ?? []
        status.services = proxy?.statuses() ?? []
        status.topologySource = configuration.topologySource
        status.reloads = reloads
        status.pendingRestart = pendingRestart
        return status
    }
}

// MARK: - Fabric

extension Agent: FabricDelegate {
    func fabricDeliver(_ ready: LinkReady, descriptors: [Int32], to instance: String) -> Bool {
        guard let connection = attachments[instance] else { return false }
        return (try? connection.send(.linkReady(ready), descriptors: descriptors)) != nil
    }

    func fabricRefuse(requestID: UInt32, of instance: String, _ error: ControlError) {
        guard let connection = attachments[instance] else { return }
        _ = reply(connection, error)
    }

    func fabricAttachment(of instance: String) -> (attached: Bool, numaNode: Int) {
        guard let connection = attachments[instance] else { return (false, 0) }
        return (true, connection.numaNode)
    }

    func fabricStatus() -> AgentStatus { status() }

    func fabricHealthReply(to connection: UInt64, _ result: Result<AgentStatus, ControlError>) {
        guard let c = connections[connection] else { return }
        switch result {
        case .success(let status):
            // A reply that cannot go whole ends the connection: the client would wait for it.
            do { try c.send(.status(status)) } catch { drop(c, reason: "control socket error: \(error)") }
        case .failure(let error): try? c.send(.error(error))
        }
    }
}
