import SystemPackage
import VIOLinux
import VIOTransport
import VIOWire

/// One TCP connection the agent holds in proxy mode: a client's connection it accepted, or
/// its own connection to the real server. Its bytes go to one partner:
/// - a session to another host's agent (``remote``), with credit both ways: this side sends
///   at most what the far agent granted and grants back what its socket took;
/// - the other socket of a service whose client and server are both on this host
///   (``localPartner``): it reads only while the partner's buffer has room.
///
/// The stream keeps TCP's semantics end to end: end of stream becomes the partner's
/// half-close (shutdown for writing), a reset or a lost peer host becomes a reset (the socket
/// is closed with SO_LINGER 0), and a client whose connection dies has its server connection
/// closed at once. Runs on the agent's thread.
final class ProxyStream {
    /// Which end of the service this socket is.
    enum Side { case client, server }

    /// The far-host part of a stream whose partner is another agent.
    struct Remote {
        let id: ProxySessionID
        unowned let peer: FabricPeer
        /// Which of the peer's channels carries the session.
        let channel: Int
        /// Bytes the far agent still takes.
        var sendCredit: Int
        /// Bytes written to the socket since the last grant.
        var ungranted = 0
    }

    /// Bytes this agent buffers per connection and direction before it stops reading: the
    /// window it grants the far agent, and the room a local partner leaves.
    static let window = 128 * 1024

    let side: Side
    let service: ProxyService
    /// The socket; nil once closed.
    private(set) var socket: TCPSocket?
    /// The peer's address, for logs.
    let address: String
    var registration: Registration?
    var remote: Remote?
    /// The other socket of a service on this host (the pair holds each other until both end).
    var localPartner: ProxyStream?
    /// The partner accepted the connection (server connected): bytes may flow.
    var accepted = false
    /// A connect to the server is in progress (server side), and until when it may take.
    var connectDeadline: UInt64?
    /// Client side: until when the far agent may take to answer the connection's start.
    var acceptDeadline: UInt64?
    /// Bytes for the socket that it did not take yet (allocated only when it falls behind).
    private var outbound: ByteQueue?
    /// This socket's end of stream was read and passed on.
    private(set) var readEnded = false
    /// The partner sends no more: shut the socket's writing once ``outbound`` drains.
    private(set) var partnerEnded = false
    /// The socket's writing is shut down.
    private(set) var wroteEnd = false
    /// What the loop watches now (changed only when it differs).
    private var watching = (readable: true, writable: false)
    /// Counted as an open connection of its service (the client's socket, or the server's
    /// when the client is on another host; one per connection).
    var counted = false
    /// Waiting for the channel's output to drain (on the slot's list).
    var waitingForChannel = false

    init(side: Side, service: ProxyService, socket: consuming TCPSocket, address: String) {
        self.side = side
        self.service = service
        self.socket = consume socket
        self.address = address
    }

    var isOpen: Bool { socket != nil }

    /// Bytes buffered for the socket.
    var buffered: Int { outbound?.count ?? 0 }

    /// Both directions ended in order: the connection is done.
    var isFinished: Bool { readEnded && wroteEnd }

    // MARK: Reading

    /// Reads what the partner can take now, up to `budget` bytes, into `scratch` and hands it
    /// to `pass`; returns what happened so the manager can act on ends and errors.
    enum ReadResult { case wouldBlock, paused, ended, failed(String) }

    func read(into scratch: UnsafeMutableRawBufferPointer, room: Int, budget: Int,
              pass: (UnsafeRawBufferPointer) -> Void) -> ReadResult {
        guard accepted, !readEnded else { return .paused }
        var left = budget
        var room = room
        while left > 0 {
            if room <= 0 { return .paused }
            let want = min(room, scratch.count, left)
            let n: Int?
            do { n = try socket?.read(into: UnsafeMutableRawBufferPointer(rebasing: scratch[..<want])) } catch {
                return .failed(error.errno.description)
            }
            guard let n else { return .wouldBlock }
            if n == 0 {
                readEnded = true
                return .ended
            }
            pass(UnsafeRawBufferPointer(rebasing: scratch[..<n]))
            // A short read emptied the socket: asking again would only return EAGAIN (a
            // system call per message); the level-triggered loop reports anything newer.
            if n < want { return .wouldBlock }
            left -= n
            room -= n
        }
        return .wouldBlock
    }

    // MARK: Writing

    /// Writes `bytes` to the socket, buffering what it does not take. Returns the bytes the
    /// socket took now, or nil when writing failed (the connection is lost).
    func deliver(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard isOpen else { return 0 }
        var written = 0
        if buffered == 0 {
            do { written = try socket?.write(bytes) ?? 0 } catch { return nil }
        }
        if written < bytes.count {
            let queue = outbound ?? ByteQueue(capacity: max(4096, bytes.count - written))
            outbound = queue
            queue.extend(by: bytes.count - written).copyMemory(from: bytes.baseAddress! + written, byteCount: bytes.count - written)
        }
        return written
    }

    /// Writes buffered bytes the socket takes now; shuts writing once drained after the
    /// partner's end. Returns the bytes written, nil when writing failed.
    func flush() -> Int? {
        var written = 0
        if let queue = outbound, queue.count > 0 {
            do { written = try socket?.write(queue.bytes) ?? 0 } catch { return nil }
            queue.consume(written)
            // Dropped once drained: an idle connection holds no buffer.
            if queue.count == 0 { outbound = nil }
        }
        if partnerEnded && buffered == 0 && !wroteEnd { shutWriting() }
        return written
    }

    /// The partner sends no more: writing ends once the buffer drains.
    func partnerEnd() {
        partnerEnded = true
        if buffered == 0 && !wroteEnd { shutWriting() }
    }

    private func shutWriting() {
        wroteEnd = true
        try? socket?.shutdownWrite()
    }

    // MARK: Closing

    /// Closes in order (both directions ended).
    func close() {
        socket = nil
    }

    /// Closes with a reset: the application sees ECONNRESET, not end of stream.
    func reset() {
        socket?.resetOnClose()
        socket = nil
    }

    /// The error pending on the socket: a finished connect's result, or a reset that arrived
    /// while it was not read.
    func pendingError() -> Errno? { socket?.pendingError() }

    /// What the loop should watch: input while the partner has room, output while bytes wait
    /// (or the connect is pending).
    func wanted(room: Int) -> (readable: Bool, writable: Bool) {
        (accepted && !readEnded && room > 0, buffered > 0 || connectDeadline != nil)
    }

    /// Whether the watched set differs from `wanted` (and records it as watched).
    func changeWatching(to wanted: (readable: Bool, writable: Bool)) -> Bool {
        guard wanted != watching else { return false }
        watching = wanted
        return true
    }

    /// The socket's descriptor (for the loop).
    var descriptor: Int32 { socket?.fd.rawValue ?? -1 }
}
