import Foundation
import VIOSecurity

#if canImport(Glibc)
import Glibc
#endif

/// Two TLS sessions whose bytes pass through the test: each side has a socket pair, and
/// ``pump(_:)`` carries what one side sent to the other (optionally changed on the way), so a
/// test can tamper with, replay or inspect records.
final class SessionPair {
    let dialer: TLSSession
    let acceptor: TLSSession
    private let dialerSocket: Int32, dialerWire: Int32
    private let acceptorSocket: Int32, acceptorWire: Int32
    private let directory: String

    init(dialerRecords: TLSContext.RecordLayer, acceptorRecords: TLSContext.RecordLayer) throws {
        directory = NSTemporaryDirectory() + "vio-tls-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let dialerKey = try KeyFile.generate(at: directory + "/dialer.key")
        let acceptorKey = try KeyFile.generate(at: directory + "/acceptor.key")
        (dialerSocket, dialerWire) = Self.socketPair()
        (acceptorSocket, acceptorWire) = Self.socketPair()
        dialer = try TLSContext(keyPath: directory + "/dialer.key")
            .session(descriptor: dialerSocket, dialer: true, allowedKeys: [acceptorKey], records: dialerRecords)
        acceptor = try TLSContext(keyPath: directory + "/acceptor.key")
            .session(descriptor: acceptorSocket, dialer: false, allowedKeys: [dialerKey], records: acceptorRecords)
    }

    deinit {
        for fd in [dialerSocket, dialerWire, acceptorSocket, acceptorWire] { close(fd) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    private static func socketPair() -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
        return (fds[0], fds[1])
    }

    /// Everything waiting on the wire from `from` (the sending side's bytes, not yet delivered).
    func take(from session: TLSSession) -> [UInt8] {
        let wire = session === dialer ? dialerWire : acceptorWire
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(wire, &chunk, chunk.count)
            if n <= 0 { break }
            bytes += chunk[..<n]
        }
        return bytes
    }

    /// Delivers `bytes` to `session`'s socket as if its peer had sent them.
    func deliver(_ bytes: [UInt8], to session: TLSSession) {
        let wire = session === dialer ? dialerWire : acceptorWire
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(wire, $0.baseAddress, $0.count) }
            precondition(n > 0, "the test's socket buffer is full")
            offset += n
        }
    }

    /// Carries what each side sent to the other; `change` may alter the dialer's bytes.
    func pump(_ change: (inout [UInt8]) -> Void = { _ in }) {
        var forward = take(from: dialer)
        change(&forward)
        deliver(forward, to: acceptor)
        deliver(take(from: acceptor), to: dialer)
    }

    /// Runs both handshakes to the end.
    func handshake() throws {
        for _ in 0..<50 {
            let done = (try dialer.handshake(), try acceptor.handshake())
            pump()
            if done.0 && done.1 { return }
        }
        throw SecurityError("the handshake did not finish")
    }

    /// Writes all of `bytes` from `session` and flushes, carrying bytes over while the socket is full.
    func send(_ bytes: [UInt8], from session: TLSSession) throws {
        var offset = 0
        while offset < bytes.count {
            let outcome = try bytes[offset...].withUnsafeBytes { try session.write($0) }
            if case .bytes(let n) = outcome { offset += n } else { pump() }
        }
        while try !session.flush() { pump() }
    }

    /// Reads until `count` application bytes arrived at `session` (or `limit` pumps passed).
    func receive(_ count: Int, at session: TLSSession) throws -> [UInt8] {
        var got: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 70000)
        var idle = 0
        while got.count < count, idle < 100 {
            let outcome = try buffer.withUnsafeMutableBytes { try session.read(into: $0) }
            switch outcome {
            case .bytes(let n): got += buffer[..<n]; idle = 0
            case .wouldBlock: pump(); idle += 1
            case .closed: return got
            }
        }
        return got
    }
}

/// `count` bytes of a pattern that differs for every `seed`.
func pattern(_ count: Int, seed: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed &* 7 &+ ($0 >> 8)) }
}
