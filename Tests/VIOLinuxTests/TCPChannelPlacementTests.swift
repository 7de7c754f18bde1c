import Testing
import VIOLinux
import VIOTransport
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

/// A TCP channel over loopback that reads large payloads straight into the memory the
/// receiver names (a link's ring in the agent): every frame arrives whole and in order, small
/// ones buffered, large ones in place.
struct TCPChannelPlacementTests {
    /// A connected pair of channels on 127.0.0.1 (dialer, acceptor), both admitted (as after
    /// HELLO) so they take full-size frames.
    /// A connected dialer and acceptor over loopback, both admitted unless `admitted` is false.
    static func pair(admitted: Bool = true) throws -> (TCPChannel, TCPChannel) {
        let listener = try TCPSocket.listen(on: TCPSocket.resolve("127.0.0.1", port: 0))
        let port = UInt16(try listener.localAddress().description.split(separator: ":").last.flatMap { UInt16($0) } ?? 0)
        let dialer = try TCPChannel.dial(TCPSocket.resolve("127.0.0.1", port: port))
        var peer = TCPSocket.Address()
        var accepted: TCPSocket?
        for _ in 0..<1000 where accepted == nil {
            accepted = try listener.accept(peer: &peer)
            if accepted == nil { usleep(1000) }
        }
        let acceptor = TCPChannel(accepted: accepted!, peer: "\(peer)", tls: nil, allowedKeys: [],
                                  rekey: .init(bytes: 1 << 30, nanoseconds: 1 << 40), plaintextAllowed: true)
        for _ in 0..<1000 where (try? dialer.finishConnect()) == nil { usleep(1000) }
        if admitted {
            dialer.admit()
            acceptor.admit()
        }
        return (dialer, acceptor)
    }

    static func payload(_ i: Int, size: Int) -> [UInt8] { (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) } }

    /// Sends frames of `sizes` from one end of a fresh pair to the other, a MiB of output at a
    /// time, receiving what arrived after each flush with every offered payload placed in a
    /// buffer of its own. Checks the order and contents of every frame; returns how many were
    /// handed out from their placement and the receiving channel.
    static func transfer(_ sizes: [Int]) throws -> (placed: Int, receiver: TCPChannel) {
        let (sender, receiver) = try pair()
        var received = 0
        var placed = 0
        var places: [UnsafeMutableRawBufferPointer] = []
        defer { for p in places { p.deallocate() } }
        var next = 0
        while received < sizes.count {
            while next < sizes.count && sender.queuedBytes < 1 << 20 {
                payload(next, size: sizes[next]).withUnsafeBytes {
                    sender.enqueue(FrameHeader(type: .data, session: 7, sequence: UInt32(next)), payload: $0)
                }
                next += 1
            }
            _ = try sender.flush()
            _ = try receiver.receive(budget: 1 << 20, place: { header in
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(header.length), alignment: 16)
                places.append(buffer)
                return PayloadPlacement(destination: buffer, owner: receiver)
            }) { header, bytes in
                if places.last?.baseAddress == UnsafeMutableRawPointer(mutating: bytes.baseAddress) { placed += 1 }
                #expect(Int(header.sequence) == received)
                #expect(bytes.elementsEqual(payload(received, size: sizes[received])),
                        "frame \(received) of \(sizes[received]) bytes differs")
                received += 1
                return true
            }
        }
        return (placed, receiver)
    }

    @Test func largePayloadsAreReadInPlaceSmallOnesBuffered() throws {
        let sizes = (0..<120).map { i in [17, 9000, 70_000, 300, 250_000, 40_000][i % 6] }
        let (placed, receiver) = try Self.transfer(sizes)
        #expect(placed > 0, "no frame was read in place")
        #expect(receiver.counters.framesReceived == UInt64(sizes.count))
    }

    /// Back-to-back frames too small to stream (16 KiB) still go in place once one has: each
    /// placed payload's read also brings the next frame's header (one `readv`), so the chain
    /// goes on instead of falling back to buffered reads and copies.
    @Test func backToBackMidSizeFramesAreEachReadInPlace() throws {
        let count = 400
        let (placed, _) = try Self.transfer(Array(repeating: 16_384, count: count))
        // Buffered reads take 256 KiB (15 such frames) per call, so without the chain at most
        // one frame in 15 would be placed.
        #expect(placed * 2 > count, "only \(placed) of \(count) frames were read in place")
    }
}
