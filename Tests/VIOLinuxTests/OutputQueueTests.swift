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
                [UInt8]([1, 2, 3]).withUnsafeBytes { q.append($0) }
                q.append(big, loan: PayloadLoan(lender: lender, position: 10), inPlace: true)   // lent
                q.append(small, loan: PayloadLoan(lender: lender, position: 20), inPlace: true) // small: copied
                q.append(big, loan: PayloadLoan(lender: lender, position: nil), inPlace: true)  // lent, reported later
                q.append(big, loan: PayloadLoan(lender: lender, position: 30), inPlace: false)  // copied (TLS)
                expected = [1, 2, 3] + Array(big) + Array(small) + Array(big) + Array(big)
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
            q.append(p, loan: PayloadLoan(lender: lender, position: 1), inPlace: false)
            q.append(p, loan: PayloadLoan(lender: lender, position: 2), inPlace: false)
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
            q.append(big, loan: PayloadLoan(lender: lender, position: 1), inPlace: true)
            q.consume(4095)
            #expect(lender.reported.isEmpty)
            q.consume(1)
            #expect(lender.reported == [1])
        }
    }
}
