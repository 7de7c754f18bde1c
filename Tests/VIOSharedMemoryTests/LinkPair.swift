import Foundation
import VIOLinux
@testable import VIOSharedMemory

/// Both ends of one link in this process, wired as the agent would wire them.
struct LinkPair {
    let a: LinkEndpoint
    let b: LinkEndpoint
    let region: LinkRegion

    init(capacity: Int = 4096, maxMessage: Int = 64 << 20, names: (String, String) = ("a", "b")) throws {
        (a, b) = try LinkEndpoint.localPair(capacity: capacity, maxMessage: maxMessage, names: names)
        region = a.region
    }
}

/// Runs `body` on a new thread; `join()` waits and rethrows.
final class Background: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var error: (any Error)?

    init(_ body: @escaping @Sendable () throws -> Void) {
        let thread = Thread { [self] in
            do { try body() } catch { self.error = error }
            done.signal()
        }
        thread.start()
    }

    func join(timeout: TimeInterval = 120) throws {
        guard done.wait(timeout: .now() + timeout) == .success else { throw TimedOut() }
        if let error { throw error }
    }

    struct TimedOut: Error {}
}

/// Deterministic test data: a message's content is derived from its index and size.
enum Pattern {
    static func message(_ index: Int, size: Int) -> [UInt8] {
        var x = UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(size) | 1
        var bytes = [UInt8](repeating: 0, count: size)
        bytes.withUnsafeMutableBytes { raw in
            var offset = 0
            while offset < size {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17
                withUnsafeBytes(of: x) { word in
                    let n = min(8, size - offset)
                    raw.baseAddress!.advanced(by: offset).copyMemory(from: word.baseAddress!, byteCount: n)
                }
                offset += 8
            }
        }
        return bytes
    }

    /// FNV-1a over 8-byte words (and the tail bytes): order-sensitive and quick in debug builds.
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325 ^ UInt64(bytes.count)
        let words = bytes.count / 8
        for i in 0..<words { h = (h ^ bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) &* 0x100_0000_01B3 }
        for b in bytes[(words * 8)...] { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }
}
