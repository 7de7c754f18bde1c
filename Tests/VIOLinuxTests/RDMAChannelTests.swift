import Testing
import VIOLinux
@testable import VIOTransport
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

/// The RDMA channel's move, where this machine can run it: the TCP side (propose, decline,
/// frames kept in order) and the tickets. The queue pairs themselves run in the soft-RoCE lab
/// (RDMALabTests).
struct RDMAChannelTests {
    static let noDevice = "host 'h2' has no active RDMA port on 127.0.0.1"

    /// A dialed and an accepted RDMA channel over loopback TCP, before HELLO's admission; the
    /// accepting side has no RDMA listener.
    static func pair(required: Bool) throws -> (dialer: RDMAChannel, acceptor: RDMAChannel) {
        let (tcpDialer, tcpAcceptor) = try TCPChannelPlacementTests.pair(admitted: false)
        let rendezvous = RDMARendezvous(localAddress: "127.0.0.1", listener: nil, unavailable: noDevice)
        return (try RDMAChannel(dialed: tcpDialer, to: "127.0.0.1", required: required, rendezvous: rendezvous),
                try RDMAChannel(accepted: tcpAcceptor, rendezvous: rendezvous))
    }

    /// Flushes `from` and lets `to` receive until it has nothing more; the frames it passed on.
    @discardableResult
    static func deliver(from: RDMAChannel, to: RDMAChannel) throws -> [(FrameHeader, [UInt8])] {
        var frames: [(FrameHeader, [UInt8])] = []
        _ = try from.flush()
        for _ in 0..<50 {
            _ = try to.receive(budget: 1 << 20) { header, payload in
                frames.append((header, Array(payload)))
                return true
            }
            usleep(1000)
        }
        return frames
    }

    @Test func aDecliningHostKeepsThePairOnTCPAndSaysWhy() throws {
        let (dialer, acceptor) = try Self.pair(required: false)
        dialer.enqueue(FrameHeader(type: .helloRequest), bytes: [1])
        #expect(try Self.deliver(from: dialer, to: acceptor).map(\.0.type) == [.helloRequest])
        acceptor.admit()
        acceptor.enqueue(FrameHeader(type: .helloResponse), bytes: [2])
        #expect(try Self.deliver(from: acceptor, to: dialer).map(\.0.type) == [.helloResponse])
        // Admitted: the dialer proposes RDMA (a carrier frame the fabric never sees) and sends
        // a frame behind it; the acceptor declines, and both stay on TCP.
        dialer.admit()
        dialer.enqueue(FrameHeader(type: .data, session: 7), bytes: [3, 4, 5])
        let atAcceptor = try Self.deliver(from: dialer, to: acceptor)
        #expect(atAcceptor.map(\.0.type) == [.data] && atAcceptor.first?.1 == [3, 4, 5])
        acceptor.enqueue(FrameHeader(type: .data, session: 8), bytes: [6])
        let atDialer = try Self.deliver(from: acceptor, to: dialer)
        #expect(atDialer.map(\.0.type) == [.data])
        #expect(dialer.carrierDescription == "tcp: the far agent declined RDMA: \(Self.noDevice)")
        #expect(acceptor.carrierDescription == "tcp: \(Self.noDevice)")
        #expect(dialer.capabilities.transport == "tcp" && acceptor.capabilities.transport == "tcp")
    }

    @Test func transportRDMAEndsAChannelTheFarHostDeclines() throws {
        let (dialer, acceptor) = try Self.pair(required: true)
        acceptor.admit()
        dialer.admit()
        try Self.deliver(from: dialer, to: acceptor)
        let error = #expect(throws: ChannelError.self) { try Self.deliver(from: acceptor, to: dialer) }
        #expect(error == .carrier("transport: rdma, but the far agent declined RDMA: \(Self.noDevice)"))
    }

    /// A peer that has not passed HELLO cannot ask for a queue pair.
    @Test func noProposalBeforeHello() throws {
        let (dialer, acceptor) = try Self.pair(required: false)
        dialer.admit()  // the dialer proposes; the acceptor never admitted it
        let error = #expect(throws: ChannelError.self) { try Self.deliver(from: dialer, to: acceptor) }
        #expect(error == .protocolViolation("RDMA proposed before HELLO or twice"))
    }

    /// Tickets open one connect request each, and only with the request's magic; private data
    /// padded by the carrier still matches.
    @Test func ticketsAreSingleUse() throws {
        let (_, acceptor) = try Self.pair(required: false)
        let rendezvous = RDMARendezvous(localAddress: "127.0.0.1", listener: nil)
        let ticket = rendezvous.issue(to: acceptor)
        #expect(rendezvous.redeem(Array("VIO2".utf8) + ticket.bytes) == nil)
        #expect(rendezvous.redeem(RDMARendezvous.requestMagic + ticket.bytes.dropLast()) == nil)
        #expect(rendezvous.redeem(RDMARendezvous.requestMagic + ticket.bytes + [UInt8](repeating: 0, count: 36)) === acceptor)
        #expect(rendezvous.redeem(RDMARendezvous.requestMagic + ticket.bytes) == nil)
        let other = rendezvous.issue(to: acceptor)
        rendezvous.withdraw(other)
        #expect(rendezvous.redeem(RDMARendezvous.requestMagic + other.bytes) == nil)
        #expect(ticket != other)
    }
}

/// The bookkeeping of payloads pulled by RDMA READ: ring space goes back in order, and a
/// peer's PULL descriptor is checked before anything is read.
struct PayloadPullsTests {
    final class Lender: PayloadLender {
        var reported: [UInt64] = []
        func sent(through position: UInt64) { reported.append(position) }
    }

    /// Inline and pulled loans of one link interleave: the lender hears a position only when
    /// every earlier loan is done, whatever order they finish in.
    @Test func ledgerReportsInOrder() {
        let lender = Lender()
        let ledger = PayloadPulls.Ledger(lender)
        let pulled = ledger.add(position: 10, pulled: true)
        _ = ledger.add(position: 20, pulled: false)
        let cut = ledger.add(position: nil, pulled: true)  // a record cut into frames: reported by its last
        let inline2 = ledger.add(position: 40, pulled: false)
        ledger.sent(through: inline2)  // both inline loans written: nothing may be reported yet
        #expect(lender.reported.isEmpty)
        ledger.released(cut)
        #expect(lender.reported.isEmpty)
        ledger.released(pulled)  // the first is done: everything through 40 is
        #expect(lender.reported == [40])
        #expect(ledger.isEmpty)
    }

    @Test func ledgerReportsAsSoonAsThePrefixIsDone() {
        let lender = Lender()
        let ledger = PayloadPulls.Ledger(lender)
        let a = ledger.add(position: 1, pulled: false)
        let b = ledger.add(position: 2, pulled: true)
        _ = ledger.add(position: 3, pulled: false)
        ledger.sent(through: a)
        #expect(lender.reported == [1])
        ledger.released(b)
        #expect(lender.reported == [1, 2])
        #expect(!ledger.isEmpty)
    }

    @Test func descriptorsRoundTripAndBadOnesAreRefused() throws {
        let header = FrameHeader(type: .data, session: 3, destination: 4, length: 8 + 70_000, sequence: 9)
        let prefix: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        let bytes = prefix.withUnsafeBytes {
            PayloadPulls.descriptor(header: header, prefix: $0, address: 0x1000, rkey: 77, count: 70_000, token: 42)
        }
        let d = try PayloadPulls.parse(bytes)
        #expect(d.header == header && d.prefix == prefix && d.address == 0x1000 && d.rkey == 77 && d.count == 70_000 && d.token == 42)
        // An address that would wrap, a length that disagrees with the header, a frame larger
        // than a frame may be, a carrier frame in a carrier frame, trailing bytes: refused.
        func refused(_ h: FrameHeader, address: UInt64 = 0x1000, count: Int, extra: [UInt8] = []) -> Bool {
            let b = prefix.withUnsafeBytes {
                PayloadPulls.descriptor(header: h, prefix: $0, address: address, rkey: 1, count: count, token: 1)
            }
            return (try? PayloadPulls.parse(b + extra)) == nil
        }
        #expect(refused(header, address: UInt64.max - 100, count: 70_000))
        #expect(refused(header, count: 69_999))
        #expect(refused(FrameHeader(type: .data, length: UInt32(FrameHeader.maximumPayload + 8 + 1)), count: FrameHeader.maximumPayload + 1))
        #expect(refused(FrameHeader(type: .carrier, length: 8 + 100), count: 100))
        #expect(refused(header, count: 70_000, extra: [0]))
        #expect((try? PayloadPulls.parse([1, 2, 3])) == nil)
    }
}
