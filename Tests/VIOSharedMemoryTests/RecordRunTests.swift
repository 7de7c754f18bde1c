import Foundation
import Testing
import VIOLinux
@testable import VIOSharedMemory

/// Runs of whole messages taken from one ring and committed into another as they are (what
/// the agents do across hosts), and the checks a run from the network must pass.
struct RecordRunTests {
    /// The agent's side of two links: it reads what `from.a` sends and writes what `to.b` reads.
    final class Relay {
        let from: LinkPair, to: LinkPair
        let consumer: RingConsumer, producer: RingProducer
        let space: OwnedFileDescriptor, data: OwnedFileDescriptor

        init(capacity: Int = 4096) throws {
            from = try LinkPair(capacity: capacity)
            to = try LinkPair(capacity: capacity)
            space = try EventDescriptor.create()
            data = try EventDescriptor.create()
            consumer = RingConsumer(region: from.region, ring: 1, spaceDoorbell: space.rawValue)
            producer = RingProducer(region: to.region, ring: 1, doorbell: data.rawValue)
        }

        /// Moves one run across (copying, as when it arrives in the channel's buffer); returns
        /// its message count, or nil when there was no run.
        func moveRun(maxBytes: Int = 1 << 20) throws -> Int? {
            guard let run = consumer.nextRun(maxBytes: maxBytes) else { return nil }
            let checked = try RecordRun.validate(run.bytes, maxPayload: 1 << 20)
            #expect(checked.messages == run.messages && checked.payloadBytes == run.payloadBytes)
            guard let p = try producer.reserveRun(bytes: run.bytes.count) else { return nil }
            p.copyMemory(from: run.bytes.baseAddress!, byteCount: run.bytes.count)
            producer.commit(checked)
            consumer.publish(through: consumer.consume(run))
            return run.messages
        }
    }

    @Test func aRunCarriesWholeMessagesIntoAnotherRingUnchanged() throws {
        let relay = try Relay()
        let messages = (0..<12).map { Pattern.message($0, size: ($0 * 29) % 200) }
        for m in messages { try relay.from.a.send(m, timeout: .zero) }
        #expect(try relay.moveRun() == 12)
        #expect(relay.consumer.nextRun(maxBytes: 1 << 20) == nil)
        for m in messages { #expect(try relay.to.b.receive(timeout: .zero) == m) }
        #expect(relay.to.b.counters.received.messagesReceived == 12)
        // Both rings count messages and payload bytes as one-by-one sends and receives would.
        let bytes = UInt64(messages.reduce(0) { $0 + $1.count })
        #expect(relay.from.b.counters.received.messagesReceived == 12)
        #expect(relay.from.b.counters.received.bytesReceived == bytes)
        #expect(relay.to.b.counters.received.messagesSent == 12)
        #expect(relay.to.b.counters.received.bytesSent == bytes)
    }

    @Test func aRunStopsAtALoneMessageAFragmentTheLimitAndTheRingsEnd() throws {
        let relay = try Relay()
        // One message is not a run: it goes through next().
        try relay.from.a.send([1, 2, 3], timeout: .zero)
        #expect(relay.consumer.nextRun(maxBytes: 4096) == nil)
        let lone = try #require(try relay.consumer.next())
        relay.consumer.publish(through: relay.consumer.consume(lone))
        // Two whole messages, then one fragmented in several records: the run is the two.
        try relay.from.a.send(Pattern.message(1, size: 100), timeout: .zero)
        try relay.from.a.send(Pattern.message(2, size: 100), timeout: .zero)
        let big = Pattern.message(3, size: relay.from.a.fragmentPayload + 10)
        let sender = Background { [a = relay.from.a] in try a.send(big, timeout: .seconds(10)) }
        var run = try #require(relay.consumer.nextRun(maxBytes: 4096))
        #expect(run.messages == 2 && run.bytes.count == 256 && run.payloadBytes == 200)
        relay.consumer.publish(through: relay.consumer.consume(run))
        try sender.join()
        while let record = try relay.consumer.next() { relay.consumer.publish(through: relay.consumer.consume(record)) }
        // The byte limit: five 128-byte records, 300 bytes allowed.
        for i in 0..<5 { try relay.from.a.send(Pattern.message(i, size: 100), timeout: .zero) }
        run = try #require(relay.consumer.nextRun(maxBytes: 300))
        #expect(run.messages == 2)
        relay.consumer.publish(through: relay.consumer.consume(run))
        run = try #require(relay.consumer.nextRun(maxBytes: 4096))
        #expect(run.messages == 3)
        relay.consumer.publish(through: relay.consumer.consume(run))
        // Records up to the ring's end, then more after the wrap: a run never crosses the end.
        var sent = 0
        while (try? relay.from.a.send(Pattern.message(sent, size: 400), timeout: .zero)) != nil { sent += 1 }
        var moved = 0
        while moved < sent {
            if let run = relay.consumer.nextRun(maxBytes: 4096) {
                #expect(run.bytes.baseAddress! + run.bytes.count <= relay.from.region.ringBase(1) + RegionLayout.Ring.data + 4096)
                moved += run.messages
                relay.consumer.publish(through: relay.consumer.consume(run))
            } else {
                let record = try #require(try relay.consumer.next())
                moved += 1
                relay.consumer.publish(through: relay.consumer.consume(record))
            }
        }
        #expect(try relay.consumer.next() == nil)
    }

    @Test func runsCommittedAcrossTheWrapArriveInOrder() throws {
        let relay = try Relay(capacity: 4096)
        var next = 0, received = 0
        // Sizes that do not divide the ring: committed runs straddle its end and need padding.
        for round in 0..<300 {
            let count = 2 + round % 5
            for _ in 0..<count {
                try relay.from.a.send(Pattern.message(next, size: (next * 53) % 300), timeout: .zero)
                next += 1
            }
            while try relay.moveRun() != nil {}
            #expect(relay.consumer.nextRun(maxBytes: 4096) == nil)
            // What did not form a run (a lone record before the ring's end) goes one by one.
            while let record = try relay.consumer.next() {
                let p = try #require(try relay.producer.reserve(payload: record.payload.count))
                p.copyMemory(from: record.payload.baseAddress!, byteCount: record.payload.count)
                relay.producer.commit(payload: record.payload.count, flags: record.flags, total: record.total)
                relay.consumer.publish(through: relay.consumer.consume(record))
            }
            while received < next {
                #expect(try relay.to.b.receive(timeout: .zero) == Pattern.message(received, size: (received * 53) % 300))
                received += 1
            }
        }
        #expect(received == next)
    }

    /// Bytes of one record: header fields as given, payload of `length` bytes, padded to 16.
    static func record(length: UInt32, flags: UInt16 = 3, reserved: UInt16 = 0, total: UInt64? = nil) -> [UInt8] {
        var bytes = [UInt8](repeating: 0xAB, count: RegionLayout.Record.size(payload: Int(length)))
        bytes.withUnsafeMutableBytes { p in
            p.storeBytes(of: length, toByteOffset: RegionLayout.Record.length, as: UInt32.self)
            p.storeBytes(of: flags, toByteOffset: RegionLayout.Record.flags, as: UInt16.self)
            p.storeBytes(of: reserved, toByteOffset: RegionLayout.Record.reserved, as: UInt16.self)
            p.storeBytes(of: total ?? UInt64(length), toByteOffset: RegionLayout.Record.total, as: UInt64.self)
        }
        return bytes
    }

    @Test func aValidatedRunYieldsEachMessageInOrder() throws {
        // Payloads that differ, of lengths with and without padding, one of them empty.
        func message(_ length: UInt32, _ fill: UInt8) -> [UInt8] {
            var bytes = Self.record(length: length)
            bytes.replaceSubrange(RegionLayout.Record.headerBytes..<(RegionLayout.Record.headerBytes + Int(length)),
                                  with: [UInt8](repeating: fill, count: Int(length)))
            return bytes
        }
        let bytes = message(5, 1) + message(0, 2) + message(16, 3) + message(33, 4)
        let payloads = try bytes.withUnsafeBytes { raw in
            let run = try RecordRun.validate(raw, maxPayload: 100)
            var seen: [[UInt8]] = []
            run.forEachMessage { seen.append(Array($0)) }
            return seen
        }
        #expect(payloads == [[UInt8](repeating: 1, count: 5), [], [UInt8](repeating: 3, count: 16), [UInt8](repeating: 4, count: 33)])
    }

    @Test func validationNamesWhatIsWrong() throws {
        let good = Self.record(length: 5) + Self.record(length: 0) + Self.record(length: 40)
        let run = try good.withUnsafeBytes { try RecordRun.validate($0, maxPayload: 100) }
        #expect(run.messages == 3 && run.payloadBytes == 45)
        let cases: [([UInt8], String)] = [
            ([], "an empty record run"),
            (Self.record(length: 5, flags: 1), "is not a whole message"),
            (Self.record(length: 5, flags: 2), "is not a whole message"),
            (Self.record(length: 5, flags: 4), "is not a whole message"),
            (Self.record(length: 5, reserved: 1), "is not a whole message"),
            (Self.record(length: 5, total: 6), "is not a whole message"),
            (Self.record(length: 200), "holds 200 bytes (maximum 100)"),
            (Self.record(length: 5) + [UInt8](repeating: 0, count: 8), "8 bytes left at offset 32"),
            (Array(Self.record(length: 40).prefix(40)), "needs 64 bytes, 40 are left"),
        ]
        for (bytes, reason) in cases {
            #expect {
                try bytes.withUnsafeBytes { try RecordRun.validate($0, maxPayload: 100) }
            } throws: { error in
                "\(error)".contains(reason)
            }
        }
    }
}
