import Testing
@testable import VIOTransport

#if canImport(Glibc)
import Glibc
#endif

/// The channel output queue: copied runs and lent payloads leave in order, and each loan is
/// reported only once every byte up to its frame is written.
struct OutputQueueTests {
    final class Lender: PayloadLender {
        var reported: [UInt64] = []
        func sent(through position: UInt64) { reported.append(position) }
    }

    /// Adds a frame whose head is `head` (copied) and whose payload is `payload`.
    func frame(_ q: OutputQueue, head: [UInt8] = [], _ payload: UnsafeRawBufferPointer, loan: PayloadLoan?, inPlace: Bool) {
        q.appendFrame(head: head.count, { p in
            head.withUnsafeBytes { if $0.count > 0 { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        }, payload: payload, loan: loan, inPlace: inPlace)
    }

    func drain(_ q: OutputQueue, step: Int) -> [UInt8] {
        var out: [UInt8] = []
        let vectors = UnsafeMutableBufferPointer<iovec>.allocate(capacity: 8)
        defer { vectors.deallocate() }
        while q.count > 0 {
            let used = q.gather(into: vectors)
            var take = step
            for v in vectors[..<used] where take > 0 {
                let n = min(take, v.iov_len)
                out += UnsafeRawBufferPointer(start: v.iov_base, count: n)
                take -= n
            }
            q.consume(min(step, q.count))
        }
        return out
    }

    @Test(arguments: [1, 7, 3000, 1 << 20])
    func bytesLeaveInOrderAndLoansAreReportedWhenWritten(step: Int) {
        let q = OutputQueue()
        let lender = Lender()
        let big = [UInt8]((0..<5000).map { UInt8(truncatingIfNeeded: $0) })
        let small = [UInt8](repeating: 0xAB, count: 100)
        var expected: [UInt8] = []
        big.withUnsafeBytes { big in
            small.withUnsafeBytes { small in
                frame(q, head: [1, 2, 3], UnsafeRawBufferPointer(start: nil, count: 0), loan: nil, inPlace: false)
                frame(q, head: [9, 9], big, loan: PayloadLoan(lender: lender, position: 10), inPlace: true)   // lent
                frame(q, head: [8], small, loan: PayloadLoan(lender: lender, position: 20), inPlace: true)   // small: copied
                frame(q, big, loan: PayloadLoan(lender: lender, position: nil), inPlace: true)               // lent, reported later
                frame(q, head: [7, 7, 7], big, loan: PayloadLoan(lender: lender, position: 30), inPlace: false) // copied (TLS)
                frame(q, UnsafeRawBufferPointer(start: nil, count: 0), loan: PayloadLoan(lender: lender, position: 5), inPlace: true)
                #expect(lender.reported == [5])  // an empty frame is sent at once
                lender.reported = []
                expected = [1, 2, 3] + [9, 9] + Array(big) + [8] + Array(small) + Array(big) + [7, 7, 7] + Array(big)
                #expect(q.count == expected.count)
                #expect(lender.reported.isEmpty)
                #expect(drain(q, step: step) == expected)
            }
        }
        #expect(lender.reported == [10, 20, 30])
        #expect(q.count == 0)
    }

    @Test func frontJoinsCopiedFramesIntoOneRun() {
        let q = OutputQueue()
        let lender = Lender()
        let payload = [UInt8](repeating: 1, count: 3000)
        payload.withUnsafeBytes { p in
            frame(q, p, loan: PayloadLoan(lender: lender, position: 1), inPlace: false)
            frame(q, p, loan: PayloadLoan(lender: lender, position: 2), inPlace: false)
            #expect(q.front?.count == 6000)
            q.consume(4000)
            #expect(lender.reported == [1])
            #expect(q.front?.count == 2000)
        }
    }

    @Test func aLoanWaitsForItsLastByte() {
        let q = OutputQueue()
        let lender = Lender()
        let big = [UInt8](repeating: 7, count: 4096)
        big.withUnsafeBytes { big in
            frame(q, big, loan: PayloadLoan(lender: lender, position: 1), inPlace: true)
            q.consume(4095)
            #expect(lender.reported.isEmpty)
            q.consume(1)
            #expect(lender.reported == [1])
        }
    }
}
