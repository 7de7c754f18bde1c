import Foundation
import Testing
import VIOLinux
import VIOWire

/// One fabric connection to an agent, spoken frame by frame by a test playing the far agent;
/// answers heartbeats.
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

extension RawPeer {
    /// The session id of b1 <-> g1, and b1's destination id (both derived from the names).
    static let session = FabricIdentifiers.session(between: "b1", and: "g1")
    static let b1 = FabricIdentifiers.instance("b1")

    /// beta's agent alone, with one link b1 <-> g1 to gamma, whose agent the test plays
    /// (plaintext pair, one channel, a long peer timeout).
    static func betaWithPlayedGamma() throws -> LoopbackCluster {
        try LoopbackCluster(hosts: ["beta", "gamma"], hostFields: ["gamma": "nat: behind"], instances: """
              - { name: b1, host: beta }
              - { name: g1, host: gamma }
            """, links: "  - between: [b1, g1]",
            defaults: "  ring_size: 256KiB\n  channels: 1\n  heartbeat_interval_ms: 100\n  peer_timeout_ms: 5000\n",
            extra: FabricBadInputTests.plaintextGamma, start: ["beta"])
    }

    /// gamma's channel 0 to beta, HELLO accepted.
    static func gammaAfterHello(in cluster: LoopbackCluster, sourceLocation: SourceLocation = #_sourceLocation) throws -> RawPeer {
        let fingerprint = try Tools.run("vioctl", ["topology", "fingerprint", cluster.topology, "--between", "beta", "gamma"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let gamma = try RawPeer(port: cluster.ports["beta"]!)
        gamma.send(FrameHeader(type: .helloRequest), ChannelHello(cluster: "loopback", from: "gamma", to: "beta", channel: 0,
                                                                  channels: 1, fingerprint: UInt64(fingerprint, radix: 16) ?? 0).encoded())
        #expect(gamma.waitFor { h, _ in h.type == .helloResponse }, "\(cluster.log("beta"))", sourceLocation: sourceLocation)
        return gamma
    }
}
