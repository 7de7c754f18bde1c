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
