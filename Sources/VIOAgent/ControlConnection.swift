import VIOLinux
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

/// One client connected to the control socket, from hello to hang-up.
final class ControlConnection {
    /// Where the session stands.
    enum Phase { case awaitingHello, ready, attached }

    /// Its socket's registration token on the agent's loop; names the connection.
    let token: UInt64
    let socket: UnixSocket
    /// The socket and, once attached, the pidfd on the agent's loop.
    var registration: Registration?
    var processRegistration: Registration?
    let credentials: PeerCredentials
    var phase: Phase = .awaitingHello
    var role: Hello.Role? = nil
    /// The instance this connection attached as.
    var instance: String? = nil
    /// A pidfd watching the attached process (readable when it exits), -1 before attach.
    /// Owned: closed with the connection.
    var processDescriptor: Int32 = -1
    /// NUMA node the instance reported.
    var numaNode: Int = 0

    init(token: UInt64, socket: consuming UnixSocket, credentials: PeerCredentials) {
        self.token = token
        self.socket = socket
        self.credentials = credentials
    }

    deinit {
        if processDescriptor >= 0 { _ = OwnedFileDescriptor(taking: processDescriptor) }
    }

    func send(_ message: ControlMessage, descriptors: [Int32] = []) throws(SystemError) {
        try send(packet: message.encoded(), descriptors: descriptors)
    }

    /// Packets the socket had no room for yet, in order, each with its own copies of the
    /// descriptors it carries: sent as the client reads (``flush()``), so a client that does
    /// not read never holds up the agent.
    private var backlog: [(bytes: [UInt8], descriptors: HeldDescriptors)] = []
    private var backlogBytes = 0
    /// Called when packets start waiting: the agent then watches the socket for room.
    var onBacklog: (() -> Void)?
    /// The most a client may leave unread before it is dropped: a status of ~100,000 links.
    static let maximumBacklog = ControlMessage.maximumReassembled

    /// Whether packets wait for room.
    var isBackedUp: Bool { !backlog.isEmpty }

    /// Sends an encoded message; one larger than a packet goes as FRAGMENTs. What the socket
    /// has no room for waits in order (``flush()``); throws when the client left more unread
    /// than ``maximumBacklog``, or the socket failed.
    func send(packet: [UInt8], descriptors: [Int32] = []) throws(SystemError) {
        let pieces = packet.count > UnixSocket.maximumMessage && descriptors.isEmpty
            ? ControlMessage.fragments(of: packet, limit: UnixSocket.maximumMessage) : [packet]
        // All or nothing: a reply cut off half-way would leave the client waiting for the rest.
        guard backlogBytes + pieces.reduce(0, { $0 + $1.count }) <= Self.maximumBacklog else {
            throw SystemError("sendmsg", .noBufferSpace, detail: "the client left more than \(Self.maximumBacklog) bytes unread")
        }
        for (i, piece) in pieces.enumerated() {
            let fds = i == pieces.count - 1 ? descriptors : []
            if backlog.isEmpty {
                do {
                    try socket.send(piece, descriptors: fds)
                    continue
                } catch where error.errno == .wouldBlock {
                    onBacklog?()
                }
            }
            let copies = HeldDescriptors()
            for fd in fds { copies.fds.append(try retryingSyscall("dup") { dup(fd) }) }
            backlog.append((piece, copies))
            backlogBytes += piece.count
        }
    }

    /// Sends what waits, as far as the socket takes it; true when nothing waits any more.
    func flush() throws(SystemError) -> Bool {
        while let first = backlog.first {
            do {
                try socket.send(first.bytes, descriptors: first.descriptors.fds)
            } catch where error.errno == .wouldBlock {
                return false
            }
            backlogBytes -= first.bytes.count
            backlog.removeFirst()
        }
        return true
    }
}

/// Copies of descriptors a waiting packet carries, closed once it is sent or dropped.
final class HeldDescriptors {
    var fds: [Int32] = []
    deinit { for fd in fds { close(fd) } }
}
