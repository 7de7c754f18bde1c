import Foundation
import VIOLinux
@testable import VIOSharedMemory

/// Both ends of one link in this process, wired as the agent would wire them.
struct LinkPair {
    let a: LinkEndpoint
    let b: LinkEndpoint
    let region: LinkRegion

    init(capacity: Int = 4096, maxMessage: Int = 64 << 20, names: (String, String) = ("a", "b")) throws {
        let created = try LinkRegion.create(linkID: 1, names: names, capacities: (capacity, capacity), maxMessage: maxMessage)
        region = created.region
        // Each end maps its own copy, as two processes would.
        let regionA = try LinkRegion.map(fd: created.memoryFile)
        let regionB = try LinkRegion.map(fd: created.memoryFile)
        let dataA = try EventDescriptor.create(), spaceA = try EventDescriptor.create()
        let dataB = try EventDescriptor.create(), spaceB = try EventDescriptor.create()
        let dataA2 = try dataA.duplicate(), spaceA2 = try spaceA.duplicate()
        let dataB2 = try dataB.duplicate(), spaceB2 = try spaceB.duplicate()
        a = LinkEndpoint(region: regionA, end: 0, dataDoorbell: dataA, spaceDoorbell: spaceA,
                         peerDataDoorbell: dataB2, peerSpaceDoorbell: spaceB2)
        b = LinkEndpoint(region: regionB, end: 1, dataDoorbell: dataB, spaceDoorbell: spaceB,
                         peerDataDoorbell: dataA2, peerSpaceDoorbell: spaceA2)
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
        var x = UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(size)
        return (0..<size).map { _ in
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            return UInt8(truncatingIfNeeded: x)
        }
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }
}
