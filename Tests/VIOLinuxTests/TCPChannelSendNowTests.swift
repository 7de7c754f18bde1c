import Testing
import VIOLinux
import VIOTransport
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

/// `sendNow` writes a lone frame at once (no queue, no flush) and falls back to the queue
/// whenever it cannot: something already queued, or a socket that takes only part of the
/// frame. Either way the far end gets every frame whole and in order, and every loan is
/// reported once, in order, only after its bytes were written.
struct TCPChannelSendNowTests {
    typealias Lender = OutputQueueTests.Lender

    static func frame(_ i: Int) -> FrameHeader { FrameHeader(type: .data, session: 3, sequence: UInt32(i)) }

    /// Receives until `count` frames arrived, checking each against `payload(i)` in order.
    static func expectFrames(_ count: Int, on receiver: TCPChannel, payload: (Int) -> [UInt8]) throws {
        var received = 0
        var idle = 0
        while received < count && idle < 5000 {
            let before = received
            _ = try receiver.receive(budget: 1 << 20) { header, bytes in
                #expect(Int(header.sequence) == received)
                #expect(bytes.elementsEqual(payload(received)), "frame \(received) differs")
                received += 1
                return true
            }
            if received == before { idle += 1; usleep(200) } else { idle = 0 }
        }
        #expect(received == count)
    }

    @Test func aLoneFrameIsWrittenAtOnceAndItsLoanReported() throws {
        let (sender, receiver) = try TCPChannelPlacementTests.pair()
        let lender = Lender()
        let prefix: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        let body = TCPChannelPlacementTests.payload(0, size: 64)
        let wrote = prefix.withUnsafeBytes { p in
            body.withUnsafeBytes { b in sender.sendNow(Self.frame(0), prefix: p, payload: b, loan: PayloadLoan(lender: lender, position: 80)) }
        }
        #expect(wrote)
        #expect(sender.queuedBytes == 0)
        #expect(lender.reported == [80])
        #expect(sender.counters.framesSent == 1)
        #expect(sender.counters.bytesSent == UInt64(FrameHeader.size + 72))
        try Self.expectFrames(1, on: receiver) { _ in prefix + body }
    }

    @Test func aFrameBehindQueuedOutputIsQueuedInOrder() throws {
        let (sender, receiver) = try TCPChannelPlacementTests.pair()
        let lender = Lender()
        let payload = { (i: Int) in TCPChannelPlacementTests.payload(i, size: 100 + i) }
        payload(0).withUnsafeBytes { sender.enqueue(Self.frame(0), prefix: UnsafeRawBufferPointer(start: nil, count: 0), payload: $0,
                                                     loan: PayloadLoan(lender: lender, position: 1)) }
        let wrote = payload(1).withUnsafeBytes {
            sender.sendNow(Self.frame(1), prefix: UnsafeRawBufferPointer(start: nil, count: 0), payload: $0,
                           loan: PayloadLoan(lender: lender, position: 2))
        }
        #expect(!wrote, "a frame may not overtake queued output")
        #expect(lender.reported.isEmpty, "nothing is written before the flush")
        #expect(try sender.flush())
        #expect(lender.reported == [1, 2])
        try Self.expectFrames(2, on: receiver, payload: payload)
    }

    /// The receiver reads nothing until the socket buffers are full: the frame that meets the
    /// full socket is written in part, its rest queued; later frames queue behind it.
    @Test func aSocketThatTakesPartOfTheFrameLeavesTheRestQueued() throws {
        let (sender, receiver) = try TCPChannelPlacementTests.pair()
        let lender = Lender()
        let size = 60_000
        let payload = { (i: Int) in TCPChannelPlacementTests.payload(i, size: size) }
        // Payloads this large are lent, not copied: they stay valid until the end, as a ring's
        // records stay until their loans are reported.
        var lent: [UnsafeMutableRawBufferPointer] = []
        defer { for buffer in lent { buffer.deallocate() } }
        func send(_ i: Int) -> Bool {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
            buffer.copyBytes(from: payload(i))
            lent.append(buffer)
            return sender.sendNow(Self.frame(i), prefix: UnsafeRawBufferPointer(start: nil, count: 0),
                                  payload: UnsafeRawBufferPointer(buffer), loan: PayloadLoan(lender: lender, position: UInt64(i + 1)))
        }
        var sent = 0
        var direct = 0
        while sender.queuedBytes == 0 && sent < 10_000 {
            let wrote = send(sent)
            if wrote { direct += 1 }
            sent += 1
        }
        #expect(direct > 0, "the first frames fit the empty socket")
        #expect(sender.queuedBytes > 0 && sender.queuedBytes <= FrameHeader.size + size)
        #expect(lender.reported == (0..<direct).map { UInt64($0 + 1) }, "only frames fully written are reported")
        // Two more behind the partial one.
        for i in sent..<(sent + 2) { #expect(!send(i)) }
        sent += 2
        // Drain both ends alternately until everything arrived.
        var received = 0
        var rounds = 0
        while received < sent && rounds < 100_000 {
            _ = try sender.flush()
            _ = try receiver.receive(budget: 1 << 20) { header, bytes in
                #expect(Int(header.sequence) == received)
                #expect(bytes.elementsEqual(payload(received)), "frame \(received) differs")
                received += 1
                return true
            }
            rounds += 1
        }
        #expect(received == sent)
        #expect(try sender.flush())
        #expect(lender.reported == (0..<sent).map { UInt64($0 + 1) })
        #expect(sender.counters.framesSent == UInt64(sent))
        #expect(sender.counters.bytesSent == UInt64(sent * (FrameHeader.size + size)))
    }
}
