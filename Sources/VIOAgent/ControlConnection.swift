import VIOLinux
import VIOWire

/// One client connected to the control socket, from hello to hang-up.
final class ControlConnection {
    /// Where the session stands in the handshake.
    enum Phase { case awaitingHello, ready }

    let socket: UnixSocket
    let credentials: PeerCredentials
    var phase: Phase = .awaitingHello
    var role: Hello.Role? = nil

    init(socket: consuming UnixSocket, credentials: PeerCredentials) {
        self.socket = socket
        self.credentials = credentials
    }

    func send(_ message: ControlMessage) throws(SystemError) {
        try socket.send(message.encoded())
    }
}
