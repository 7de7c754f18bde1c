import Foundation
import Testing
import VIOLinux
import VIOSharedMemory
import VIOWire

/// Record runs on the wire, played by hand against a real agent: a run of whole messages is
/// delivered one message each, in order; a run whose records are malformed ends only its link
/// (the far instance scribbled on its ring while its agent sent it), never the channel.
@Suite(.serialized)
struct RecordRunWireTests {
    /// Whole messages as ring records (header, payload, padding to 16).
    static func run(_ messages: [[UInt8]], flags: UInt16 = RegionLayout.Record.first | RegionLayout.Record.last) -> [UInt8] {
        var bytes: [UInt8] = []
        for m in messages {
            var record = [UInt8](repeating: 0, count: RegionLayout.Record.size(payload: m.count))
            record.withUnsafeMutableBytes { p in
                p.storeBytes(of: UInt32(m.count), toByteOffset: RegionLayout.Record.length, as: UInt32.self)
                p.storeBytes(of: flags, toByteOffset: RegionLayout.Record.flags, as: UInt16.self)
                p.storeBytes(of: UInt64(m.count), toByteOffset: RegionLayout.Record.total, as: UInt64.self)
            }
            record.replaceSubrange(RegionLayout.Record.headerBytes..<(RegionLayout.Record.headerBytes + m.count), with: m)
            bytes += record
        }
        return bytes
    }

    /// The messages in a DATA frame from the agent: its payload, or each record of a run.
    static func messages(in header: FrameHeader, _ payload: [UInt8]) -> [[UInt8]] {
        guard header.flags.contains(.records) else { return [payload] }
        var out: [[UInt8]] = [], offset = 0
        while offset + RegionLayout.Record.headerBytes <= payload.count {
            let length = payload.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
            let start = offset + RegionLayout.Record.headerBytes
            out.append(Array(payload[start..<(start + length)]))
            offset += RegionLayout.Record.size(payload: length)
        }
        return out
    }

    @Test func runIsDeliveredAndAMalformedOneEndsOnlyItsLink() throws {
        let cluster = try RawPeer.betaWithPlayedGamma()
        let echo = try cluster.probe("beta", ["echo", "--as", "b1"])
        #expect(echo.waitFor("attached"))
        let gamma = try RawPeer.gammaAfterHello(in: cluster)
        gamma.send(FrameHeader(type: .session, flags: .start, session: RawPeer.session, destination: RawPeer.b1),
                   SessionOpen(from: "g1", to: "b1", window: 1 << 20, maxFramePayload: 262_128).encoded())
        var accepted: SessionOpen?
        #expect(gamma.waitFor { h, p in
            guard h.type == .acknowledgement, h.flags.contains(.start) else { return false }
            accepted = try? SessionOpen(decoding: p)
            return true
        }, "\(cluster.log("beta"))")
        #expect(accepted?.features.contains(.recordRuns) == true, "the agent announces that it takes runs")

        // Three messages in one frame: the echo sends each back, in order.
        let sent = (0..<3).map { Array("message \($0) of a run".utf8) + [UInt8](repeating: UInt8($0), count: $0 * 7) }
        gamma.send(FrameHeader(type: .data, flags: .records, session: RawPeer.session, destination: RawPeer.b1, sequence: 0), Self.run(sent))
        var echoed: [[UInt8]] = []
        #expect(gamma.waitFor { h, p in
            if h.type == .data, h.session == RawPeer.session { echoed += Self.messages(in: h, p) }
            return echoed.count >= sent.count
        }, "\(cluster.log("beta"))")
        #expect(echoed == sent)

        // A run whose record is a fragment, not a whole message: the link ends as corrupt,
        // at both ends, with the reason; the channel stays.
        gamma.send(FrameHeader(type: .data, flags: .records, session: RawPeer.session, destination: RawPeer.b1, sequence: 1),
                   Self.run([Array("half".utf8)], flags: RegionLayout.Record.first))
        var reset: SessionReset?
        #expect(gamma.waitFor { h, p in
            guard h.type == .session, h.flags.contains(.reset), h.session == RawPeer.session else { return false }
            reset = try? SessionReset(decoding: p)
            return true
        }, "\(cluster.log("beta"))")
        #expect(reset?.reason == .corrupt)
        #expect(reset?.message.contains("arrived malformed on 'beta'") == true, "\(String(describing: reset))")
        #expect(reset?.message.contains("is not a whole message") == true, "\(String(describing: reset))")
        #expect(echo.finish() != 0)
        #expect(echo.output.contains("corrupt"), "\(echo.output)")
        gamma.send(FrameHeader(type: .heartbeatRequest, sequence: 77), [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(gamma.waitFor { h, _ in h.type == .heartbeatResponse && h.sequence == 77 }, "the channel still answers")
        #expect(!gamma.closed)
        #expect(cluster.log("beta").contains("malformed messages from the far instance"))
        #expect(!cluster.log("beta").contains("protocol violation"), "\(cluster.log("beta"))")
    }
}
