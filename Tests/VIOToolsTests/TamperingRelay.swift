import Foundation
import Synchronization
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// A man in the middle: forwards TCP connections from one address to another (on loopback,
/// or inside a test namespace), parsing the TLS records the dialer sends, and tampers with one of them once:
/// flips a byte in the middle of its ciphertext, or sends it twice (a replay).
final class TamperingRelay: @unchecked Sendable {
    enum Tamper: Sendable { case flipByte, replay }

    let listenPort: Int
    private let listenAddress: String
    private let targetAddress: String
    private let targetPort: Int
    private let tamper: Tamper
    /// The application-data record (counted over all connections) to tamper with.
    private let victim: Int
    private var listener: Int32 = -1
    private let state = Mutex((records: 0, tampered: false, stopped: false))

    /// Listens on `listenAddress:listenPort` and forwards to `targetAddress:targetPort`; with
    /// `netns`, inside that network namespace (the relay's threads enter it before making
    /// any socket).
    init(listenAddress: String = "127.0.0.1", listenPort: Int, targetAddress: String = "127.0.0.1", targetPort: Int,
         netns: String? = nil, tamper: Tamper, afterRecords victim: Int) throws {
        self.listenAddress = listenAddress
        self.listenPort = listenPort
        self.targetAddress = targetAddress
        self.targetPort = targetPort
        self.tamper = tamper
        self.victim = victim
        let ready = DispatchSemaphore(value: 0)
        let failed = Mutex(false)
        Thread.detachNewThread { [self] in
            if let netns {
                guard (try? NetworkNamespace.enterOnThisThread(netns)) != nil else { failed.withLock { $0 = true }; ready.signal(); return }
            }
            let l = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var one: Int32 = 1
            setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            var address = Self.address(listenAddress, port: listenPort)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(l, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0, listen(l, 16) == 0 else { failed.withLock { $0 = true }; ready.signal(); return }
            listener = l
            ready.signal()
            acceptLoop()  // threads it starts inherit the namespace
        }
        ready.wait()
        if failed.withLock({ $0 }) { throw RelayFailed() }
    }

    struct RelayFailed: Error {}

    /// Whether the tampering happened.
    var tampered: Bool { state.withLock { $0.tampered } }

    /// Stops accepting (the accept thread closes the listener as it leaves).
    func stop() {
        state.withLock { $0.stopped = true }
        shutdown(listener, Int32(SHUT_RDWR))
    }

    private static func address(_ ip: String, port: Int) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = in_port_t(UInt16(port).bigEndian)
        a.sin_addr.s_addr = inet_addr(ip)
        return a
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 || state.withLock({ $0.stopped }) {
                if client >= 0 { close(client) }
                close(listener)
                return
            }
            let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.address(targetAddress, port: targetPort)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { close(client); close(server); continue }
            let pair = Connection(client, server)
            Thread.detachNewThread { [self] in forwardRecords(from: client, to: server); pair.directionEnded() }
            Thread.detachNewThread { Self.copy(from: server, to: client); pair.directionEnded() }
        }
    }

    /// Both sockets of one relayed connection, closed once when both directions have ended
    /// (closing twice could close a descriptor the test process has reused meanwhile).
    private final class Connection: @unchecked Sendable {
        let client: Int32, server: Int32
        private let ended = Mutex(0)
        init(_ client: Int32, _ server: Int32) { self.client = client; self.server = server }
        func directionEnded() {
            guard ended.withLock({ $0 += 1; return $0 }) == 2 else { return }
            close(client)
            close(server)
        }
    }

    private static func copy(from a: Int32, to b: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(a, &buffer, buffer.count)
            if n <= 0 || !writeAll(b, buffer[0..<n]) { break }
        }
        shutdown(a, Int32(SHUT_RDWR)); shutdown(b, Int32(SHUT_RDWR))
    }

    /// Dialer to acceptor, record by record (5-byte header: type, version, length).
    private func forwardRecords(from a: Int32, to b: Int32) {
        defer { shutdown(a, Int32(SHUT_RDWR)); shutdown(b, Int32(SHUT_RDWR)) }
        while true {
            guard var record = Self.readExactly(a, 5) else { return }
            let length = Int(record[3]) << 8 | Int(record[4])
            guard let body = Self.readExactly(a, length) else { return }
            record += body
            var copies = 1
            if record[0] == 0x17 {
                let mine = state.withLock { s -> Bool in
                    s.records += 1
                    guard !s.tampered, s.records >= victim else { return false }
                    s.tampered = true
                    return true
                }
                if mine {
                    switch tamper {
                    case .flipByte: record[5 + length / 2] ^= 0x01
                    case .replay: copies = 2
                    }
                }
            }
            for _ in 0..<copies where !Self.writeAll(b, record[...]) { return }
        }
    }

    private static func readExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, count - got) }
            if n <= 0 { return nil }
            got += n
        }
        return out
    }

    private static func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        var put = 0
        return bytes.withUnsafeBytes { raw in
            while put < raw.count {
                let n = send(fd, raw.baseAddress! + put, raw.count - put, Int32(MSG_NOSIGNAL))
                if n <= 0 { return false }
                put += n
            }
            return true
        }
    }
}
