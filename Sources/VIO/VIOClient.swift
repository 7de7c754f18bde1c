@_exported import VIOSharedMemory
import Synchronization
import VIOLinux
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

/// A link to a peer instance: send, claim/commit, receive, close. See ``LinkEndpoint``.
public typealias Link = LinkEndpoint

/// A database instance attached to its host's `vio-agent`.
///
/// Attach once per process and instance name; open a link per peer. Links are shared memory
/// between the two instances: once open they keep working if the agent restarts (attach
/// again to open new links). Thread-safe: control calls are serialised internally.
public final class VIOClient: @unchecked Sendable {
    /// This instance's name.
    public let instance: String
    /// The cluster the agent serves.
    public let cluster: String
    /// The agent's host.
    public let host: String
    /// Peers the topology lets this instance link to.
    public let peers: [Peer]

    /// A peer instance from the topology.
    public struct Peer: Sendable, Equatable {
        /// Instance name.
        public var name: String
        /// Its host.
        public var host: String
    }

    private let state: Mutex<ControlState>
    /// Readable when an incoming link or the agent's hang-up waits: an epoll set holding the
    /// current control connection, so the number stays the same when libvio attaches again
    /// after an agent restart (poll it, or add it to a poller, once).
    public let controlDescriptor: Int32
    /// The agent's exit, which ends every link to another host (they run through it).
    private let agentExit: Mutex<ProcessExitWatch?>
    /// Links to other hosts, with the agent watch each runs through: told when it exits.
    private let remoteLinks = Mutex<[(watch: ObjectIdentifier, link: WeakLink)]>([])

    /// A link held without keeping it alive (its owner closes it).
    final class WeakLink: @unchecked Sendable {
        weak var link: LinkEndpoint?
        init(_ link: LinkEndpoint) { self.link = link }
    }

    /// What attaching again takes: where the agent listens and what this instance presents.
    private let attachment: (path: String, request: Attach)
    /// The set behind ``controlDescriptor``: the current control connection, while it is up.
    private let events: Epoll
    private var keeper: AttachmentKeeper?

    /// Attaches as `instance` to the agent at `socketPath` (default: see
    /// ``defaultSocketPath()``), presenting `token` when the topology sets a token file.
    public static func attach(as instance: String, socketPath: String? = nil, token: [UInt8] = []) throws(VIOError) -> VIOClient {
        let path: String
        if let socketPath { path = socketPath } else { path = try defaultSocketPath() }
        let channel = try AgentChannel(path: path, role: .instance, software: "libvio \(VIOVersion.string)")
        let attach = Attach(instance: instance, token: token, numaNode: UInt16(CPULocation.currentNode()))
        let reply = try channel.request(.attach(attach))
        guard case .attached(let attached) = reply.message else {
            throw .protocolViolation("expected ATTACHED, got \(reply.message.kindName)")
        }
        let events = try Self.controlSet(watching: channel.descriptor)
        let client = VIOClient(channel: channel, attached: attached, events: events, path: path, request: attach)
        client.keeper = AttachmentKeeper.start(for: client)
        return client
    }

    /// Attaches with the token read from `tokenFile` (surrounding whitespace removed).
    public static func attach(as instance: String, socketPath: String? = nil, tokenFile: String) throws(VIOError) -> VIOClient {
        let token: [UInt8]
        do { token = try TokenFile.read(tokenFile) } catch { throw .tokenUnreadable(path: tokenFile, reason: error.description) }
        return try attach(as: instance, socketPath: socketPath, token: token)
    }

    private init(channel: consuming AgentChannel, attached: Attached, events: consuming Epoll, path: String, request: Attach) {
        instance = attached.instance
        cluster = channel.welcome.cluster
        host = channel.welcome.host
        peers = attached.peers.map { Peer(name: $0.name, host: $0.host) }
        controlDescriptor = events.descriptor
        self.events = events
        attachment = (path, request)
        // Without a pidfd (an agent in another pid namespace), links to other hosts learn of
        // an agent's death only from their timeouts.
        agentExit = Mutex(channel.agentProcessID.flatMap { try? ProcessExitWatch(pid: $0) })
        state = Mutex(ControlState(channel: channel))
    }

    deinit { keeper?.stop() }

    /// An epoll set watching `descriptor` (what ``controlDescriptor`` is).
    private static func controlSet(watching descriptor: Int32) throws(VIOError) -> Epoll {
        let events: Epoll
        do { events = try Epoll() } catch { throw .system(error) }
        do { try events.add(descriptor, token: 0) } catch { throw .system(error) }
        return events
    }

    // MARK: Attaching again

    /// Times this client attached again after losing its agent.
    public var reattachments: Int { state.withLock { $0.reattachments } }

    /// The current control connection's socket, nil once detached (for the keeper's wait).
    var controlSocketDescriptor: Int32? {
        state.withLock { $0.detached ? nil : $0.channel.descriptor }
    }

    /// The control connection hung up: if the agent behind it exited (its pidfd turns
    /// readable within `graceMilliseconds`), every link to another host that ran through it is
    /// told, so waits that do not watch the pidfd (``LinkPoller``, `vio_wait`, async tasks)
    /// return and report it.
    func noticeAgentExit(graceMilliseconds: Int32 = 500) {
        guard let watch = agentExit.withLock({ $0 }),
              (try? Poll.readable(watch.descriptor, timeoutMilliseconds: graceMilliseconds)) == true else { return }
        let id = ObjectIdentifier(watch)
        let links = remoteLinks.withLock { list in list.filter { $0.watch == id }.compactMap(\.link.link) }
        for link in links { link.noteWatchedProcessExited() }
    }

    /// The agent hung up: the dead connection leaves ``controlDescriptor``'s set (so pollers
    /// do not spin on it). False when there is nothing to do (detached, or already lost).
    func controlConnectionLost() -> Bool {
        state.withLock { state in
            guard !state.detached, !state.lost else { return false }
            state.lost = true
            events.remove(state.channel.descriptor)
            return true
        }
    }

    /// What an attempt to attach again came to.
    enum Reattach { case attached, later, gaveUp }

    /// Attaches again as this instance (the keeper's retry): `later` while no agent answers,
    /// `gaveUp` when one refuses this instance (the topology no longer admits it).
    func attachAgain() -> Reattach {
        if state.withLock({ $0.detached }) { return .gaveUp }
        var fresh: AgentChannel?
        do {
            let channel = try AgentChannel(path: attachment.path, role: .instance, software: "libvio \(VIOVersion.string)")
            guard case .attached = try channel.request(.attach(attachment.request)).message else { return .later }
            fresh = consume channel
        } catch {
            // Only a refusal that will not change by itself ends the retries (an unreadable
            // token file during a deploy, say, is retried).
            if case .refused(let refusal) = error,
               [.unknownInstance, .notAllowed, .badToken, .unsupportedVersion, .alreadyAttached].contains(refusal.code) {
                return .gaveUp
            }
            return .later
        }
        // Ready before the swap: a link adopted right after it must watch the new agent.
        let watch = fresh?.agentProcessID.flatMap { try? ProcessExitWatch(pid: $0) }
        let swapped = state.withLock { state -> Bool in
            guard !state.detached, let channel = fresh.take() else { return false }
            // Links the old agent delivered that nobody took yet are still good (shared
            // memory): keep them, under the old connection's generation.
            try? state.channel.collectUnsolicited(into: &state.incoming)
            state.stampIncoming()
            events.remove(state.channel.descriptor)
            state.channel = channel
            try? events.add(state.channel.descriptor, token: 0)
            state.lost = false
            state.generation += 1
            state.reattachments += 1
            agentExit.withLock { $0 = watch }
            return true
        }
        return swapped ? .attached : .gaveUp
    }

    /// Opens the link to `peer`. If the peer is not attached yet, waits up to `timeout` for
    /// it (`.zero`: fail at once with ``VIOError/refused(_:)`` code `peerNotAttached`; `nil`:
    /// wait forever). If the peer opened the link first, this returns that link.
    public func openLink(to peer: String, timeout: Duration? = .zero) throws(VIOError) -> Link {
        let milliseconds = timeout.map { Self.milliseconds($0) } ?? UInt32.max
        return try state.withLock { (state) throws(VIOError) -> Link in
            if let queued = state.takeIncoming(from: peer) { return try adopt(queued) }
            state.requestCounter &+= 1
            let id = state.requestCounter
            let reply: AgentChannel.Reply
            do {
                defer { state.stampIncoming() }
                reply = try state.channel.request(.openLink(OpenLink(requestID: id, peer: peer, timeoutMilliseconds: milliseconds)),
                                                  replyTo: id, queue: &state.incoming)
            }
            guard case .linkReady(let ready) = reply.message else {
                throw .protocolViolation("expected LINK_READY, got \(reply.message.kindName)")
            }
            if ready.alreadyDelivered {
                guard let queued = state.takeIncoming(linkID: ready.linkID) else {
                    throw .refused(ControlError(.alreadyOpen, "the link to '\(peer)' is already open in this process"))
                }
                return try adopt(queued)
            }
            return try adopt(IncomingLink(ready: ready, descriptors: reply.descriptors, generation: state.generation))
        }
    }

    /// The next link a peer opened to this instance, waiting up to `timeout` (nil: forever).
    public func acceptLink(timeout: Duration? = nil) throws(VIOError) -> Link {
        let deadline = Deadline(timeout: timeout)
        while true {
            let next = try state.withLock { (state) throws(VIOError) -> IncomingLink? in
                if !state.incoming.isEmpty { return state.incoming.removeFirst() }
                defer { state.stampIncoming() }
                try state.channel.collectUnsolicited(into: &state.incoming)
                state.stampIncoming()
                return state.incoming.isEmpty ? nil : state.incoming.removeFirst()
            }
            if let next { return try adopt(next) }
            if deadline.isImmediate || deadline.hasPassed { throw .timedOut }
            do {
                _ = try Poll.readable(controlDescriptor, timeoutMilliseconds: deadline.remainingMilliseconds)
            } catch {
                throw .system(error)
            }
        }
    }

    /// Closes the control connection. Open links keep working until closed.
    public func detach() {
        state.withLock { $0.detached = true }
        keeper?.stop()
    }

    /// Builds the endpoint for a LINK_READY and its five descriptors.
    private func adopt(_ incoming: IncomingLink) throws(VIOError) -> Link {
        var fds = incoming.descriptors
        guard fds.count == LinkReady.descriptorCount || fds.count == LinkReady.descriptorCount + 1 else {
            for fd in fds { close(fd) }
            throw .protocolViolation("LINK_READY carried \(fds.count) descriptors, expected \(LinkReady.descriptorCount) or \(LinkReady.descriptorCount + 1)")
        }
        // The sixth, on links to an instance on this host: the peer process's pidfd.
        let peerProcess = fds.count > LinkReady.descriptorCount ? OwnedFileDescriptor(taking: fds.removeLast()) : nil
        let memoryFile = OwnedFileDescriptor(taking: fds.removeFirst())
        let region: LinkRegion
        do {
            region = try LinkRegion.map(fd: memoryFile)
        } catch {
            for fd in fds { close(fd) }
            throw .link(error)
        }
        // A link delivered with the peer's pidfd is within this host; a region that names a
        // far host then was overwritten (by the peer, before this end mapped it).
        if peerProcess != nil, !region.peerHost.isEmpty {
            for fd in fds { close(fd) }
            throw .protocolViolation("the link region names host '\(region.peerHost)', but the agent delivered a link within this host: the region was overwritten")
        }
        let end = Int(incoming.ready.end)
        guard region.linkID == incoming.ready.linkID, region.name(ofEnd: end) == instance,
              region.name(ofEnd: 1 - end) == incoming.ready.peer else {
            for fd in fds { close(fd) }
            throw .protocolViolation("link region does not match LINK_READY (id \(incoming.ready.linkID), peer \(incoming.ready.peer))")
        }
        let link = LinkEndpoint(region: region, end: end,
                                dataDoorbell: OwnedFileDescriptor(taking: fds[0]),
                                spaceDoorbell: OwnedFileDescriptor(taking: fds[1]),
                                peerDataDoorbell: OwnedFileDescriptor(taking: fds[2]),
                                peerSpaceDoorbell: OwnedFileDescriptor(taking: fds[3]))
        if !region.peerHost.isEmpty, let agentExit = agentExit.withLock({ $0 }) {
            // The far end of a link to another host is the local agent.
            link.endWhenProcessExits(descriptor: agentExit.descriptor, owner: agentExit)
            remoteLinks.withLock { list in
                list.removeAll { $0.link.link == nil }
                list.append((ObjectIdentifier(agentExit), WeakLink(link)))
            }
        }
        let watch: UInt64?
        if let peerProcess {  // a link within this host (checked above)
            watch = PeerExitMonitor.shared.watch(link, peerProcess: peerProcess)
        } else {
            watch = nil
        }
        // The link keeps the attachment alive: dropping the client while links are in use
        // must not detach the instance (which would close them).
        link.onClose = { id in
            self.notifyClosed(id, generation: incoming.generation)
            if let watch { PeerExitMonitor.shared.unwatch(watch) }
        }
        return link
    }

    /// Tells the agent that delivered the link. A link from an agent since replaced is not
    /// announced: the new agent numbers its links afresh, and the id may be one of its own.
    private func notifyClosed(_ linkID: UInt64, generation: Int) {
        state.withLock { state in
            guard state.generation == generation, !state.lost else { return }
            try? state.channel.send(.closeLink(CloseLink(linkID: linkID)))
        }
    }

    private static func milliseconds(_ d: Duration) -> UInt32 {
        let (s, atto) = d.components
        guard s >= 0 else { return 0 }
        let ms = s * 1000 + atto / 1_000_000_000_000_000
        return UInt32(clamping: min(ms, Int64(UInt32.max - 1)))
    }

    /// The agent's socket when none is given: `$VIO_CONTROL_SOCKET`, else the only socket in
    /// `/run/vio` (root) or `$XDG_RUNTIME_DIR/vio` / `/tmp/vio` (other users).
    public static func defaultSocketPath() throws(VIOError) -> String {
        if let env = getenv("VIO_CONTROL_SOCKET"), env.pointee != 0 { return String(cString: env) }
        let directory: String
        if getuid() == 0 {
            directory = "/run/vio"
        } else if let runtime = getenv("XDG_RUNTIME_DIR"), runtime.pointee != 0 {
            directory = String(cString: runtime) + "/vio"
        } else {
            directory = "/tmp/vio"
        }
        let sockets = Directories.entries(of: directory).filter { $0.hasSuffix(".sock") }
        guard sockets.count == 1 else {
            throw .agentUnreachable(path: directory,
                reason: sockets.isEmpty ? "no agent socket there" : "several agent sockets (\(sockets.joined(separator: ", "))); name one")
        }
        return directory + "/" + sockets[0]
    }
}

/// A LINK_READY with its descriptors, not yet turned into an endpoint.
struct IncomingLink: Sendable {
    var ready: LinkReady
    var descriptors: [Int32]
    /// Which control connection delivered it (``ControlState/generation``); -1 until stamped.
    var generation = -1
}

/// What the control connection holds, guarded by the client's mutex.
struct ControlState: ~Copyable, Sendable {
    var channel: AgentChannel
    var incoming: [IncomingLink] = []
    var requestCounter: UInt32 = 0
    var detached = false
    /// The agent hung up and no new connection replaced it yet.
    var lost = false
    var reattachments = 0
    /// Counts control connections: links are told apart by the one that delivered them.
    var generation = 0

    /// Marks links received on the current connection as its.
    mutating func stampIncoming() {
        for i in incoming.indices where incoming[i].generation < 0 { incoming[i].generation = generation }
    }

    mutating func takeIncoming(from peer: String) -> IncomingLink? {
        guard let index = incoming.firstIndex(where: { $0.ready.peer == peer }) else { return nil }
        return incoming.remove(at: index)
    }

    mutating func takeIncoming(linkID: UInt64) -> IncomingLink? {
        guard let index = incoming.firstIndex(where: { $0.ready.linkID == linkID }) else { return nil }
        return incoming.remove(at: index)
    }
}

/// libvio's version.
public enum VIOVersion {
    /// "major.minor.patch".
    public static let string = "0.1.0"
}
