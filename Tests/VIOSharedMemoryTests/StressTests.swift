import Foundation
import Testing
@testable import VIOSharedMemory

struct StressTests {
    /// A producer and a consumer thread exchange messages of random sizes from 0 bytes to 4x
    /// the ring, each checked against a checksum the producer sends first.
    @Test func concurrentChecksummedRandomSizes() throws {
        let capacity = 16 * 1024
        let link = try LinkPair(capacity: capacity)
        let count = 3000
        let receiver = link.b
        let reader = Background {
            for i in 0..<count {
                let expected = try receiver.receive(timeout: .seconds(60)) { $0.load(as: UInt64.self) }
                let (sum, size) = try receiver.receive(timeout: .seconds(60)) { (Pattern.checksum($0), $0.count) }
                guard sum == expected else { throw Corrupted(index: i, size: size) }
            }
        }
        var rng = SystemRandomNumberGenerator()
        for i in 0..<count {
            let size = Int.random(in: 0...(4 * capacity), using: &rng)
            let message = Pattern.message(i, size: size)
            let sum = message.withUnsafeBytes(Pattern.checksum)
            try link.a.send(withUnsafeBytes(of: sum) { Array($0) }, timeout: .seconds(60))
            try link.a.send(message, timeout: .seconds(60))
        }
        try reader.join(timeout: 300)
        #expect(link.b.counters.received.messagesReceived == UInt64(2 * count))
        #expect(link.b.counters.received.errors == 0)
    }

    struct Corrupted: Error { var index: Int; var size: Int }
}
