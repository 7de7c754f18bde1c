import VIOLinux
import VIOWire

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

    /// How long a large reply may wait for the client to read its pieces before the
    /// connection is given up (the agent's loop waits meanwhile).
    static let fragmentDeadlineMilliseconds: UInt64 = 2_000

    /// Sends an encoded message; one larger than a packet goes as FRAGMENTs, waiting (up to
    /// ``fragmentDeadlineMilliseconds``) while the socket's buffer is full.
    func send(packet: [UInt8], descriptors: [Int32] = []) throws(SystemError) {
        guard packet.count > UnixSocket.maximumMessage, descriptors.isEmpty else {
            try socket.send(packet, descriptors: descriptors)
            return
        }
        let deadline = MonotonicClock.nanoseconds() + Self.fragmentDeadlineMilliseconds * 1_000_000
        for piece in ControlMessage.fragments(of: packet, limit: UnixSocket.maximumMessage) {
            while true {
                do {
                    try socket.send(piece)
                    break
                } catch where error.errno == .wouldBlock {
                    let now = MonotonicClock.nanoseconds()
                    guard now < deadline else { throw error }
                    _ = try Poll.writable(socket.fd.rawValue, timeoutMilliseconds: Int32((deadline - now) / 1_000_000) + 1)
                }
            }
        }
    }
}
