import Foundation
import Testing
import VIOLinux
@testable import VIOSharedMemory

struct RingTests {
    @Test func messagesGoBothWays() throws {
        let link = try LinkPair()
        try link.a.send(Array("ping".utf8))
        #expect(try link.b.receive(timeout: .seconds(5)) == Array("ping".utf8))
        try link.b.send(Array("pong".utf8))
        #expect(try link.a.receive(timeout: .seconds(5)) == Array("pong".utf8))
    }

    @Test func emptyMessageIsAMessage() throws {
        let link = try LinkPair()
        try link.a.send([])
        try link.a.send([7])
        #expect(try link.b.receive(timeout: .seconds(5)) == [])
        #expect(try link.b.receive(timeout: .seconds(5)) == [7])
    }

    @Test func wrapsAroundManyTimesInOrder() throws {
        let link = try LinkPair(capacity: 4096)
        // Sizes that do not divide the ring, so records straddle the end and need padding.
        for i in 0..<5000 {
            let message = Pattern.message(i, size: (i * 37) % 700)
            try link.a.send(message, timeout: .zero)
            #expect(try link.b.receive(timeout: .zero) == message)
        }
        let (sent, _) = link.a.counters
        #expect(sent.messagesSent == 5000)
        #expect(link.b.counters.received.messagesReceived == 5000)
    }

    @Test func fillsUpThenReportsWouldBlock() throws {
        let link = try LinkPair(capacity: 4096)
        var sent = 0
        while true {
            do { try link.a.send(Pattern.message(sent, size: 100), timeout: .zero) } catch {
                #expect(error == .wouldBlock)
                break
            }
            sent += 1
        }
        #expect(sent == 4096 / 128)  // 100 B payload + 16 B header, 16-aligned: 128 B a record
        #expect(link.a.counters.sent.fullStalls == 1)
        for i in 0..<sent { #expect(try link.b.receive(timeout: .zero) == Pattern.message(i, size: 100)) }
        #expect(throws: LinkError.wouldBlock) { try link.b.receive(timeout: .zero) }
    }

    @Test func fragmentationAtEveryBoundary() throws {
        let link = try LinkPair(capacity: 4096)
        let f = link.a.fragmentPayload
        var sizes = [0, 1, 15, 16, 17]
        for k in 1...5 { sizes += [k * f - 1, k * f, k * f + 1] }
        sizes += [4096, 4 * 4096, 4 * 4096 + 3]
        let receiver = link.b
        let allSizes = sizes
        let reader = Background {
            for (i, size) in allSizes.enumerated() {
                let got = try receiver.receive(timeout: .seconds(30))
                guard got == Pattern.message(i, size: size) else { throw Mismatch(index: i, size: size) }
            }
        }
        for (i, size) in sizes.enumerated() { try link.a.send(Pattern.message(i, size: size), timeout: .seconds(30)) }
        try reader.join()
    }

    struct Mismatch: Error { var index: Int; var size: Int }

    @Test func claimCommitAndAbort() throws {
        let link = try LinkPair()
        var buffer = try link.a.claim(64)
        buffer.copyBytes(from: Array("in place".utf8))
        try link.a.commit(8)
        buffer = try link.a.claim(32)
        buffer.copyBytes(from: Array("dropped".utf8))
        link.a.abort()
        buffer = try link.a.claim(5)
        buffer.copyBytes(from: Array("again".utf8))
        try link.a.commit(5)
        #expect(try link.b.receive(timeout: .zero) == Array("in place".utf8))
        #expect(try link.b.receive(timeout: .zero) == Array("again".utf8))
        #expect(throws: LinkError.wouldBlock) { try link.b.receive(timeout: .zero) }
    }

    @Test func claimMisuseIsAnErrorNotACrash() throws {
        let link = try LinkPair(capacity: 4096, maxMessage: 1 << 20)
        #expect(throws: LinkError.misuse("commit without a claim")) { try link.a.commit(1) }
        _ = try link.a.claim(10)
        #expect(throws: LinkError.self) { try link.a.claim(10) }
        #expect(throws: LinkError.self) { try link.a.send([1]) }
        #expect(throws: LinkError.misuse("commit of 11 bytes exceeds the 10 claimed")) { try link.a.commit(11) }
        link.a.abort()
        #expect(throws: LinkError.self) { try link.a.claim(link.a.maximumClaim + 1) }
        #expect(throws: LinkError.messageTooLarge(size: 2 << 20, maximum: 1 << 20)) { try link.a.claim(2 << 20) }
    }

    @Test func zeroCopyReceiveSeesTheRing() throws {
        let link = try LinkPair()
        try link.a.send(Array(repeating: 0xAB, count: 100))
        let (count, sum) = try link.b.receive(timeout: .zero) { ($0.count, $0.reduce(0) { $0 + Int($1) }) }
        #expect(count == 100 && sum == 100 * 0xAB)
    }

    @Test func tooLargeIsRefusedUpFront() throws {
        let link = try LinkPair(maxMessage: 1000)
        #expect(throws: LinkError.messageTooLarge(size: 1001, maximum: 1000)) { try link.a.send([UInt8](repeating: 0, count: 1001)) }
        try link.a.send([UInt8](repeating: 1, count: 1000))
        #expect(try link.b.receive(timeout: .zero).count == 1000)
    }

    @Test func receiveTimesOut() throws {
        let link = try LinkPair()
        for policy in [WaitPolicy.busyPoll, .default, .sleep] {
            link.b.waitPolicy = policy
            let start = MonotonicClock.nanoseconds()
            #expect(throws: LinkError.timedOut) { try link.b.receive(timeout: .milliseconds(20)) }
            #expect(MonotonicClock.nanoseconds() - start >= 19_000_000)
        }
    }

    @Test(arguments: [WaitPolicy.busyPoll, .default, .spinThenSleep(spinNanoseconds: 50_000), .adaptive(maxSpinNanoseconds: .max), .sleep])
    func pingPongUnderEveryPolicy(policy: WaitPolicy) throws {
        let link = try LinkPair()
        link.a.waitPolicy = policy
        link.b.waitPolicy = policy
        let server = link.b
        let echo = Background {
            for _ in 0..<2000 {
                let m = try server.receive(timeout: .seconds(30))
                try server.send(m, timeout: .seconds(30))
            }
        }
        for i in 0..<2000 {
            let m = Pattern.message(i, size: 64)
            try link.a.send(m, timeout: .seconds(30))
            #expect(try link.a.receive(timeout: .seconds(30)) == m)
        }
        try echo.join()
        if policy == .sleep { #expect(link.b.counters.received.wakeupsReceived > 0) }
    }

    @Test func closeDeliversWhatWasSentThenReportsPeerClosed() throws {
        let link = try LinkPair(names: ("db1", "db2"))
        try link.a.send([1])
        try link.a.send([2])
        link.a.close()
        #expect(throws: LinkError.closed) { try link.a.send([3]) }
        #expect(try link.b.receive(timeout: .zero) == [1])
        #expect(try link.b.receive(timeout: .zero) == [2])
        #expect(throws: LinkError.peerClosed(peer: "db1")) { try link.b.receive(timeout: .seconds(5)) }
        #expect(throws: LinkError.peerClosed(peer: "db1")) { try link.b.send([4]) }
    }

    @Test func closeWakesASleepingReceiver() throws {
        let link = try LinkPair(names: ("db1", "db2"))
        link.b.waitPolicy = .sleep
        let receiver = link.b
        let waiter = Background {
            do {
                _ = try receiver.receive(timeout: .seconds(30))
                throw Unexpected()
            } catch LinkError.peerClosed(peer: "db1") {}
        }
        usleep(50_000)
        link.a.close()
        try waiter.join(timeout: 10)
    }

    @Test func closeWakesASenderWaitingForSpace() throws {
        let link = try LinkPair(capacity: 4096, names: ("db1", "db2"))
        link.a.waitPolicy = .sleep
        while (try? link.a.send([UInt8](repeating: 0, count: 1000), timeout: .zero)) != nil {}
        let sender = link.a
        let waiter = Background {
            do {
                try sender.send([UInt8](repeating: 0, count: 1000), timeout: .seconds(30))
                throw Unexpected()
            } catch LinkError.peerClosed(peer: "db2") {}
        }
        usleep(50_000)
        link.b.close()
        try waiter.join(timeout: 10)
    }

    struct Unexpected: Error {}

    @Test func fragmentedSendThatTimesOutIsNeverDelivered() throws {
        let link = try LinkPair(capacity: 4096)
        let big = Pattern.message(1, size: 20_000)
        #expect(throws: LinkError.timedOut) { try link.a.send(big, timeout: .milliseconds(20)) }
        // The receiver drains the partial message; the abort record discards it.
        let receiver = link.b
        let reader = Background {
            let next = try receiver.receive(timeout: .seconds(30))
            guard next == Pattern.message(2, size: 10) else { throw Unexpected() }
        }
        try link.a.send(Pattern.message(2, size: 10), timeout: .seconds(30))
        try reader.join()
    }

    @Test func spaceWaiterIsWokenByTheConsumer() throws {
        let link = try LinkPair(capacity: 4096)
        link.a.waitPolicy = .sleep
        let count = 3000
        let receiver = link.b
        receiver.waitPolicy = .sleep
        let reader = Background {
            for i in 0..<count {
                guard try receiver.receive(timeout: .seconds(30)) == Pattern.message(i, size: 300) else { throw Unexpected() }
            }
        }
        for i in 0..<count { try link.a.send(Pattern.message(i, size: 300), timeout: .seconds(30)) }
        try reader.join()
        #expect(link.a.counters.sent.fullStalls > 0)
    }
}

extension WaitPolicy: CustomTestStringConvertible {
    public var testDescription: String {
        switch self {
        case .busyPoll: "busy-poll"
        case .spinThenSleep: "spin-then-sleep"
        case .sleep: "sleep"
        case .adaptive: "adaptive"
        }
    }
}

/// The adaptive wait's learning: waits that end while spinning keep it spinning (at least
/// 20 µs, twice the usual wait); waits longer than the ceiling make it sleep at once, until
/// quick ones come back.
struct WaitLearningTests {
    @Test func spinFitsTheWaitsSeen() {
        let ceiling: UInt64 = 100_000
        var learning = WaitLearning()
        #expect(learning.spin(ceiling: ceiling) == 50_000, "nothing learned yet: half the ceiling")
        for _ in 0..<10 { learning.record(WaitLearning.shortWait, ceiling: ceiling) }
        #expect(learning.spin(ceiling: ceiling) == WaitLearning.minimumSpin)
        for _ in 0..<10 { learning.record(40_000, ceiling: ceiling) }
        #expect(learning.spin(ceiling: ceiling) >= 75_000 && learning.spin(ceiling: ceiling) <= ceiling)
        // Replies slower than the ceiling (a far host, a slow query): spinning cannot catch them.
        for _ in 0..<10 { learning.record(150_000, ceiling: ceiling) }
        #expect(learning.spin(ceiling: ceiling) == 0)
        // One long idle pause counts as twice the ceiling: a few quick waits win the spin back.
        learning.record(30_000_000_000, ceiling: ceiling)
        #expect(learning.typical <= 2 * ceiling)
        for _ in 0..<8 { learning.record(10_000, ceiling: ceiling) }
        #expect(learning.spin(ceiling: ceiling) > 0)
    }
}
