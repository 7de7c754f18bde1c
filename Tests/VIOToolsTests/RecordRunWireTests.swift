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
    /// One fabric connection to an agent, spoken frame by frame; answers heartbeats.
    final class RawPeer {
        let fd: Int32
        var decoder = FrameDecoder()
        private(set) var closed = false

        init(port: Int) throws {
            guard let fd = connectLoopback(port: port, receiveTimeout: timeval(tv_sec: 0, tv_usec: 100_000)) else {
                throw ConnectFailed(errno: errno)
            }
            self.fd = fd
        }

        deinit { close(fd) }

        struct ConnectFailed: Error { var errno: Int32 }

        func send(_ header: FrameHeader, _ payload: [UInt8] = []) {
            let bytes = Frame(header, payload: payload).encoded()
            _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }

        /// Frames from the agent until `match` takes one (true) or `seconds` pass.
        func waitFor(seconds: Double = 10, _ match: (FrameHeader, [UInt8]) -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            var buffer = [UInt8](repeating: 0, count: 65536)
            while Date() < deadline, !closed {
                while let (header, payload) = try? decoder.nextFrame({ ($0, Array($1)) }) {
                    if header.type == .heartbeatRequest {
                        send(FrameHeader(type: .heartbeatResponse, sequence: header.sequence), payload)
                        continue
                    }
                    if match(header, payload) { return true }
                }
                let n = recv(fd, &buffer, buffer.count, 0)
                if n == 0 { closed = true } else if n > 0 { decoder.feed(buffer[..<n]) }
            }
            return false
        }
    }

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
        let cluster = try LoopbackCluster(hosts: ["beta", "gamma"], hostFields: ["gamma": "nat: behind"],
                                          instances: """
              - { name: b1, host: beta }
              - { name: g1, host: gamma }
            """, links: "  - between: [b1, g1]",
            defaults: "  ring_size: 256KiB\n  channels: 1\n  heartbeat_interval_ms: 100\n  peer_timeout_ms: 5000\n",
            extra: FabricBadInputTests.plaintextGamma, start: ["beta"])
        let echo = try cluster.probe("beta", ["echo", "--as", "b1"])
        #expect(echo.waitFor("attached"))
        let fingerprint = try Tools.run("vioctl", ["topology", "fingerprint", cluster.topology]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let gamma = try RawPeer(port: cluster.ports["beta"]!)
        gamma.send(FrameHeader(type: .helloRequest), ChannelHello(cluster: "loopback", from: "gamma", to: "beta", channel: 0,
                                                                  channels: 1, fingerprint: UInt64(fingerprint, radix: 16) ?? 0).encoded())
        #expect(gamma.waitFor { h, _ in h.type == .helloResponse }, "\(cluster.log("beta"))")
        // Session 1 is b1 <-> g1; instance ids are topology positions from 1 (b1 = 1, g1 = 2).
        gamma.send(FrameHeader(type: .session, flags: .start, session: 1, destination: 1),
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
        gamma.send(FrameHeader(type: .data, flags: .records, session: 1, destination: 1, sequence: 0), Self.run(sent))
        var echoed: [[UInt8]] = []
        #expect(gamma.waitFor { h, p in
            if h.type == .data, h.session == 1 { echoed += Self.messages(in: h, p) }
            return echoed.count >= sent.count
        }, "\(cluster.log("beta"))")
        #expect(echoed == sent)

        // A run whose record is a fragment, not a whole message: the link ends as corrupt,
        // at both ends, with the reason; the channel stays.
        gamma.send(FrameHeader(type: .data, flags: .records, session: 1, destination: 1, sequence: 1),
                   Self.run([Array("half".utf8)], flags: RegionLayout.Record.first))
        var reset: SessionReset?
        #expect(gamma.waitFor { h, p in
            guard h.type == .session, h.flags.contains(.reset), h.session == 1 else { return false }
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
