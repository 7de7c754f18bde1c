import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// The TCP side of the example: the same messages as over a link, each preceded by its length
/// (u32, little-endian), on a blocking socket.
public final class FramedTCP: @unchecked Sendable {
    private let socket: TCPSocket
    /// Largest message taken from the network (the link's max_message_size in the example).
    public static let maximumMessage = 64 << 20

    /// Connects to `host:port` (blocking).
    public init(connectingTo host: String, port: UInt16) throws(SystemError) {
        let socket = try TCPSocket.connect(to: TCPSocket.resolve(host, port: port))
        try socket.fd.setNonBlocking(false)
        try socket.setNoDelay()
        self.socket = socket
    }

    /// An accepted connection. Keepalive probes after 10 s of silence end a connection whose
    /// client's host went away within about 25 s (its session's transaction is then rolled back).
    public init(accepted: consuming TCPSocket) throws(SystemError) {
        try accepted.fd.setNonBlocking(false)
        try accepted.setNoDelay()
        try accepted.setOption(SOL_SOCKET, SO_KEEPALIVE, 1)
        try accepted.setOption(Int32(IPPROTO_TCP), TCP_KEEPIDLE, 10)
        try accepted.setOption(Int32(IPPROTO_TCP), TCP_KEEPINTVL, 5)
        try accepted.setOption(Int32(IPPROTO_TCP), TCP_KEEPCNT, 3)
        socket = accepted
    }

    /// Whether the far end closed or reset the connection (without reading anything).
    public var peerHungUp: Bool {
        (try? Poll.hangUp(socket.fd.rawValue, or: -1, timeoutMilliseconds: 0).hungUp) == true
    }

    /// Sends one message.
    public func send(_ message: [UInt8]) throws {
        var length = UInt32(message.count).littleEndian
        let frame = withUnsafeBytes(of: &length) { Array($0) } + message
        try frame.withUnsafeBytes { raw in
            var at = 0
            while at < raw.count {
                guard let n = try socket.write(UnsafeRawBufferPointer(rebasing: raw[at...])) else { continue }
                at += n
            }
        }
    }

    /// Receives one message; throws ECONNRESET-like errors, and `.connectionReset` at end of
    /// stream (the far end went away).
    public func receive() throws -> [UInt8] {
        let header = try readExactly(4)
        let length = Int(UInt32(littleEndian: header.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }))
        guard length <= Self.maximumMessage else { throw SystemError("recv", .messageTooLong, detail: "\(length) bytes") }
        return try readExactly(length)
    }

    private func readExactly(_ count: Int) throws -> [UInt8] {
        // Grown as the bytes arrive: a length prefix alone does not make this allocate it.
        var buffer = [UInt8](repeating: 0, count: min(count, 1 << 20))
        var at = 0
        while at < count {
            if at == buffer.count { buffer += [UInt8](repeating: 0, count: min(count - at, buffer.count)) }
            let n = try buffer.withUnsafeMutableBytes { raw in
                try socket.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[at..<min(raw.count, count)]))
            }
            guard let n else { continue }
            if n == 0 { throw SystemError("recv", .connectionReset, detail: "end of stream") }
            at += n
        }
        return buffer
    }
}

/// Runs `body` on a detached thread of its own.
public func spawnThread(_ body: @escaping @Sendable () -> Void) {
    final class Box: @unchecked Sendable { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body))
    if pthread_create(&thread, nil, { raw in
        Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, box.toOpaque()) == 0 {
        pthread_detach(thread)
    } else {
        box.release()
    }
}
