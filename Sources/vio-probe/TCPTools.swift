import ArgumentParser
import Synchronization
import SystemPackage
import VIOLinux
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

/// `ADDRESS:PORT` (`[IPv6]:PORT`) as the TCP tools take it.
private func splitAddress(_ text: String) throws -> (String, UInt16) {
    guard let (host, port) = TCPSocket.split(hostPort: text) else { throw ValidationError("'\(text)' is not ADDRESS:PORT") }
    return (host, port)
}

/// The bytes of connection `index` of a check: a reproducible stream (xorshift), so the
/// reader compares what comes back with what was sent without keeping it.
private struct CheckStream {
    private var state: UInt64

    init(seed: UInt64, index: Int) { state = (seed &+ UInt64(bitPattern: Int64(index)) &* 0x9E37_79B9_7F4A_7C15) | 1 }

    /// The next bytes of the stream. Eight per step, whatever the buffer's length, so the
    /// same stream comes out however reads and writes cut it.
    mutating func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        var i = 0
        while i < buffer.count {
            if used == 8 {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                word = state
                used = 0
            }
            let n = min(8 - used, buffer.count - i)
            for k in 0..<n { buffer[i + k] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(used + k))) }
            used += n
            i += n
        }
    }

    private var word: UInt64 = 0
    private var used = 8
}

/// A blocking connection to `address`: its descriptor, which the caller closes.
private func connectBlocking(_ address: TCPSocket.Address) throws(SystemError) -> Int32 {
    let socket = try TCPSocket.connect(to: address)
    var poll = pollfd(fd: socket.fd.rawValue, events: Int16(POLLOUT), revents: 0)
    _ = Glibc.poll(&poll, 1, 10_000)
    if let error = socket.pendingError() { throw SystemError("connect", error, detail: "\(address)") }
    try socket.fd.setNonBlocking(false)
    // A second descriptor the caller owns; this one closes with `socket`.
    return try retryingSyscall("dup") { dup(socket.fd.rawValue) }
}

/// `vio-probe tcp-echo`: a TCP echo server for proxy tests (one thread, epoll, thousands of
/// connections). Each connection's bytes come back in order; its end of stream is answered
/// with one once everything is echoed.
struct TCPEcho: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tcp-echo",
        abstract: "Echo every TCP connection on ADDRESS:PORT (a server for proxy tests).")

    @Option(help: "Where to listen: ADDRESS:PORT.")
    var listen: String

    /// One connection: what it sent that has not been written back yet.
    final class Connection {
        let socket: TCPSocket
        var pending: [UInt8] = []
        var sent = 0
        var ended = false
        init(_ socket: consuming TCPSocket) { self.socket = socket }
    }

    func run() throws {
        let (host, port) = try splitAddress(listen)
        let listener = try TCPSocket.listen(on: TCPSocket.resolve(host, port: port), backlog: 4096)
        try listener.fd.setNonBlocking()
        let epoll = try Epoll()
        try epoll.add(listener.fd.rawValue, token: UInt64(UInt32.max))
        var connections: [Int32: Connection] = [:]
        var events = Epoll.EventBuffer(capacity: 256)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        say("listening on \(listen)")
        func update(_ fd: Int32, _ c: Connection) {
            let backlog = c.pending.count - c.sent
            try? epoll.modify(fd, token: UInt64(fd), readable: !c.ended && backlog < 1 << 20, writable: backlog > 0)
        }
        func drop(_ fd: Int32) {
            epoll.remove(fd)
            connections[fd] = nil
        }
        while true {
            try epoll.wait(timeoutMilliseconds: -1, into: &events)
            for i in 0..<events.count {
                let event = events[i]
                if event.token == UInt64(UInt32.max) {
                    var peer = TCPSocket.Address()
                    while let socket = try? listener.accept(peer: &peer) {
                        let fd = socket.fd.rawValue
                        try? epoll.add(fd, token: UInt64(fd))
                        connections[fd] = Connection(socket)
                    }
                    continue
                }
                let fd = Int32(event.token)
                guard let c = connections[fd] else { continue }
                if (event.readable || event.hangUp) && !c.ended {
                    do {
                        if let n = try c.socket.read(into: buffer) {
                            if n == 0 { c.ended = true } else { c.pending.append(contentsOf: buffer[..<n]) }
                        }
                    } catch { drop(fd); continue }
                }
                if c.sent < c.pending.count {
                    do {
                        let n = try c.pending.withUnsafeBytes { raw in try c.socket.write(UnsafeRawBufferPointer(rebasing: raw[c.sent...])) }
                        c.sent += n ?? 0
                    } catch { drop(fd); continue }
                    if c.sent == c.pending.count { c.pending.removeAll(keepingCapacity: c.pending.count <= 1 << 16); c.sent = 0 }
                }
                if c.ended && c.sent >= c.pending.count {
                    try? c.socket.shutdownWrite()
                    drop(fd)
                    continue
                }
                update(fd, c)
            }
        }
    }
}

/// `vio-probe tcp-check`: checked TCP connections through an echo server (a proxy in
/// between). Each connection sends a reproducible stream of a random size, half-closes,
/// and must read back exactly that stream and then end of stream. With `--hold`, it opens
/// the connections, exchanges one message on each, reports, and keeps them open until it is
/// killed.
struct TCPCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tcp-check",
        abstract: "Send checked streams through TCP connections to an echo server, or hold many connections open.",
        discussion: "Exit status: 0 every stream came back intact, 3 a connection failed or a stream differed.")

    @Option(help: "The echo server (or the proxy in front of it): ADDRESS:PORT.")
    var connect: String

    @Option(help: "Connections, each on its own thread (--hold: opened one after another).")
    var connections: Int = 8

    @Option(help: "Largest stream per connection, bytes (sizes are random up to it; the first connection sends exactly this).")
    var maxSize: Int = 1 << 20

    @Option(help: "Seed of the streams and their sizes.")
    var seed: UInt64 = 1

    @Flag(help: "Open the connections, exchange one message on each, and keep them open until killed.")
    var hold = false

    func run() throws {
        let (host, port) = try splitAddress(connect)
        let address = try TCPSocket.resolve(host, port: port)
        if hold { return try holdOpen(address) }
        let outcome = Mutex<(failures: [String], bytes: Int)>(([], 0))
        var sizes = CheckStream(seed: seed, index: -1)
        let threads = (0..<connections).map { index -> pthread_t in
            var raw: UInt64 = 0
            withUnsafeMutableBytes(of: &raw) { sizes.fill($0) }
            let size = index == 0 ? maxSize : Int(raw % UInt64(maxSize + 1))
            let seed = seed
            return spawn {
                let failure = Self.check(address, index: index, size: size, seed: seed)
                outcome.withLock { o in
                    if let failure { o.failures.append("connection \(index) (\(size) bytes): \(failure)") } else { o.bytes += size }
                }
            }
        }
        for thread in threads { pthread_join(thread, nil) }
        let (failures, bytes) = outcome.withLock { $0 }
        guard failures.isEmpty else { throw Failure(code: 3, failures.joined(separator: "\n")) }
        say("checked \(connections) connections, \(bytes) bytes")
    }

    /// One checked connection: nil when the stream came back intact, else what went wrong.
    static func check(_ address: TCPSocket.Address, index: Int, size: Int, seed: UInt64) -> String? {
        let fd: Int32
        do { fd = try connectBlocking(address) } catch { return "\(error)" }
        defer { Glibc.close(fd) }
        let writeError = Mutex<String?>(nil)
        let writer = spawn {
            var stream = CheckStream(seed: seed, index: index)
            let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
            defer { chunk.deallocate() }
            var left = size
            while left > 0 {
                let n = min(left, chunk.count)
                stream.fill(UnsafeMutableRawBufferPointer(rebasing: chunk[..<n]))
                var at = 0
                while at < n {
                    let w = Glibc.send(fd, chunk.baseAddress! + at, n - at, Int32(MSG_NOSIGNAL))
                    if w < 0 { if errno == EINTR { continue }; writeError.withLock { $0 = "send: \(Errno(rawValue: errno))" }; return }
                    at += w
                }
                left -= n
            }
            Glibc.shutdown(fd, Int32(SHUT_WR))
        }
        var expected = CheckStream(seed: seed, index: index)
        let got = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        let want = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { got.deallocate(); want.deallocate() }
        var received = 0
        var failure: String?
        while true {
            let n = Glibc.recv(fd, got.baseAddress, got.count, 0)
            if n < 0 { if errno == EINTR { continue }; failure = "recv after \(received) bytes: \(Errno(rawValue: errno))"; break }
            if n == 0 { break }
            guard received + n <= size else { failure = "received more than the \(size) bytes sent"; break }
            expected.fill(UnsafeMutableRawBufferPointer(rebasing: want[..<n]))
            if memcmp(got.baseAddress!, want.baseAddress!, n) != 0 {
                let at = (0..<n).first { got[$0] != want[$0] } ?? 0
                failure = "byte \(received + at) differs"
                break
            }
            received += n
        }
        pthread_join(writer, nil)
        if let error = writeError.withLock({ $0 }) { return error }
        if let failure { return failure }
        return received == size ? nil : "end of stream after \(received) of \(size) bytes"
    }

    private func holdOpen(_ address: TCPSocket.Address) throws {
        // Kept as duplicates of each socket (an array cannot hold the non-copyable owners).
        var held: [Int32] = []
        held.reserveCapacity(connections)
        defer { for fd in held { Glibc.close(fd) } }
        var reply = [UInt8](repeating: 0, count: 16)
        for index in 0..<connections {
            let fd: Int32
            do { fd = try connectBlocking(address) } catch { throw Failure(code: 3, "connection \(index): \(error)") }
            held.append(fd)
            let message = Array("hello \(index)".utf8).prefix(16)
            _ = message.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            var got = 0
            while got < message.count {
                let n = reply.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress! + got, message.count - got, 0) }
                if n <= 0 { throw Failure(code: 3, "connection \(index): no echo (\(n == 0 ? "end of stream" : "\(Errno(rawValue: errno))"))") }
                got += n
            }
            guard Array(reply[..<got]) == Array(message) else { throw Failure(code: 3, "connection \(index): wrong echo") }
        }
        say("holding \(connections) connections")
        while true { pause() }
    }
}
