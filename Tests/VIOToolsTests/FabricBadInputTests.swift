import Foundation
import Testing
import VIOLinux
import VIOWire

/// Garbage on the fabric port: the agent drops that connection with a logged reason and keeps
/// carrying every other link.
@Suite(.serialized)
struct FabricBadInputTests {
    /// A blocking TCP connection to 127.0.0.1:`port` that sends `bytes`, then reads until the
    /// agent closes it (or 5 s pass). Returns what the agent sent and whether it closed.
    static func exchange(port: Int, _ bytes: [UInt8]) -> (reply: [UInt8], closed: Bool) {
        guard let fd = connectLoopback(port: port, receiveTimeout: timeval(tv_sec: 5, tv_usec: 0)) else { return ([], false) }
        defer { close(fd) }
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n == 0 { return (reply, true) }
            if n < 0 { return (reply, errno == ECONNRESET) }
            reply += buffer[..<n]
        }
    }

    /// The test plays gamma with raw frames, so the pair beta-gamma runs in plaintext (the
    /// TLS layer's own bad input is SecureChannelTests' business); alpha-beta stays encrypted.
    static let plaintextGamma = "host_pairs:\n  - { between: [beta, gamma], security: plaintext }\n"

    /// alpha and beta running (encrypted pair, a1 <-> b1), gamma declared behind NAT with a
    /// plaintext pair to beta (b1 <-> g1) and no agent: the test speaks for it.
    static func alphaBetaAndPlaintextGamma(defaults: String = "  ring_size: 256KiB\n  heartbeat_interval_ms: 100\n  peer_timeout_ms: 800\n") throws -> LoopbackCluster {
        try LoopbackCluster(hosts: ["alpha", "beta", "gamma"], hostFields: ["gamma": "nat: behind"], instances: """
              - { name: a1, host: alpha }
              - { name: b1, host: beta }
              - { name: g1, host: gamma }
            """, links: """
              - between: [a1, b1]
              - between: [b1, g1]
            """, defaults: defaults, extra: plaintextGamma, start: ["alpha", "beta"])
    }

    static func frame(_ header: FrameHeader, _ payload: [UInt8] = []) -> [UInt8] {
        Frame(header, payload: payload).encoded()
    }

    /// An instance that writes fragments not adding up to their message's announced length
    /// (more, or fewer) into its ring on a link to another host: its own agent checks what it
    /// forwards as a local peer would, so only that link ends ("corrupt ring" at the
    /// scribbler, a reset naming it at the far end); the host pair and its other link carry on.
    @Test(arguments: ["over", "under"])
    func inconsistentFragmentsEndOnlyTheirLink(fragments: String) throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: """
              - { name: a1, host: alpha }
              - { name: a2, host: alpha }
              - { name: b1, host: beta }
              - { name: b2, host: beta }
            """, links: """
              - between: [a1, b1]
              - between: [a2, b2]
            """)
        #expect(try cluster.waitForAllPeersUp("alpha", 1))
        let far = try cluster.probe("beta", ["hold", "--as", "b1"])
        #expect(far.waitFor("attached"))
        let scribbler = try cluster.probe("alpha", ["scribble", "--as", "a1", "--peer", "b1", "--fragments", fragments])
        #expect(scribbler.finish(timeout: 30) == 0, "\(scribbler.output)")
        #expect(scribbler.output.contains("link ended: corrupt ring: the agent carrying the link to 'b1' on 'beta' ended it"),
                "\(scribbler.output)")
        #expect(far.finish(timeout: 10) == 3, "\(far.output)")
        #expect(far.output.contains("corrupt ring"), "\(far.output)")
        #expect(cluster.log("alpha").contains("fragments add up to more or less than the announced length"), "\(cluster.log("alpha"))")
        #expect(cluster.log("beta").contains("the ring of 'a1' on 'alpha' is corrupt"), "\(cluster.log("beta"))")
        for host in ["alpha", "beta"] {
            #expect(!cluster.log(host).contains("peer host down"), "\(cluster.log(host))")
        }
        #expect(try cluster.status("alpha").contains(" 0 reconnects"), "\((try? cluster.status("alpha")) ?? "")")
        try cluster.expectRoundTrips(from: "alpha", "a2", to: "beta", "b2")
    }

    /// Connections that never authenticate cost the agent little, whatever they announce: a
    /// HELLO header announcing a megabyte is refused at once, silent connections beyond a
    /// small number are closed at accept, and the agent's memory stays flat (before: each
    /// reserved what it announced, 300 took an agent from 33 to 365 MB).
    @Test func unauthenticatedConnectionsCostLittle() throws {
        let cluster = try Self.alphaBetaAndPlaintextGamma(
            defaults: "  ring_size: 256KiB\n  heartbeat_interval_ms: 100\n  peer_timeout_ms: 3000\n")
        #expect(try cluster.waitForStatus("alpha", "channels 2/2"))
        let port = cluster.ports["beta"]!
        let agent = cluster.agents["beta"]!.process.processIdentifier
        func residentKiB() -> Int {
            let line = Tools.contents("/proc/\(agent)/status").split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
        }
        let before = residentKiB()
        var announced = Self.frame(FrameHeader(type: .helloRequest))
        announced.replaceSubrange(12..<16, with: [0x00, 0x00, 0x10, 0x00])  // 1 MiB
        var open: [Int32] = []
        defer { for fd in open { close(fd) } }
        for i in 0..<600 {
            guard let fd = connectLoopback(port: port, receiveTimeout: timeval(tv_sec: 5, tv_usec: 0)) else { continue }
            open.append(fd)
            // Half announce a large HELLO and stop; half send part of a header and stay silent.
            let bytes = i % 2 == 0 ? announced : Array(announced.prefix(10))
            _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        #expect(open.count == 600)
        // Measured once the agent has taken every connection, not after a fixed sleep that a
        // loaded machine may outrun: it accepts in order, so when one more connection made now
        // has been read and dropped, all the others were accepted before it.
        #expect(Self.exchange(port: port, announced).closed)
        let during = residentKiB()
        #expect(before > 0 && during - before < 16 * 1024, "the agent grew from \(before) to \(during) KiB")
        let log = cluster.log("beta")
        #expect(log.contains("invalid frame length: 1048576 (at most 4096 before the channel's HELLO is accepted)"), "\(log)")
        #expect(log.contains("fabric connections dropped: too many waiting for HELLO"), "\(log)")
        // The agent keeps serving: its host pair is up and its links carry traffic.
        #expect(try cluster.status("beta").contains("channels 2/2"))
        try cluster.expectRoundTrips(from: "alpha", "a1", to: "beta", "b1")
    }

    /// A host name in an unauthenticated HELLO holding a newline and terminal escapes is
    /// logged escaped: it cannot write a record of its own into the agent's log.
    @Test func hostileNamesCannotForgeLogRecords() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: """
              - { name: a1, host: alpha }
              - { name: b1, host: beta }
            """, links: "  - between: [a1, b1]", extra: "host_pairs:\n  - { between: [alpha, beta], security: plaintext }\n",
            start: ["beta"])
        // Serving status means serving the fabric port too (the control socket exists earlier).
        #expect(try cluster.waitForStatus("beta", "peer hosts"))
        let forged = "gamma\n2026-12-06T00:00:00+0000 error vio-agent: FORGED [VIOAgent] \u{1B}[2K\u{202E}"
        let hello = Self.frame(FrameHeader(type: .helloRequest), ChannelHello(
            cluster: "loopback", from: forged, to: "beta", channel: 0, channels: 2, fingerprint: 0).encoded())
        let (_, closed) = Self.exchange(port: cluster.ports["beta"]!, hello)
        #expect(closed)
        let log = cluster.log("beta")
        #expect(log.contains(#"refused HELLO from gamma\u{A}2026-12-06T00:00:00+0000 error vio-agent: FORGED [VIOAgent] \u{1B}[2K\u{202E}"#), "\(log)")
        #expect(!log.split(separator: "\n").contains { $0.hasPrefix("2026-12-06T00:00:00") }, "\(log)")
        #expect(!log.contains("\u{1B}") && !log.contains("\u{202E}"))
    }

    @Test func badFramesDropOnlyTheirConnection() throws {
        let cluster = try Self.alphaBetaAndPlaintextGamma()
        #expect(try cluster.waitForStatus("alpha", "channels 2/2"))
        let port = cluster.ports["beta"]!
        let gammaHello = Self.frame(FrameHeader(type: .helloRequest), ChannelHello(
            cluster: "loopback", from: "gamma", to: "beta", channel: 0, channels: 2,
            fingerprint: 0).encoded())
        var badVersion = Self.frame(FrameHeader(type: .heartbeatRequest))
        badVersion[0] = 9
        var oversized = Self.frame(FrameHeader(type: .data))
        oversized.replaceSubrange(12..<16, with: [0xFF, 0xFF, 0xFF, 0x7F])
        var random = (0..<256).map { _ in UInt8.random(in: 0...255) }
        random[0] = 0x7F
        let cases: [(String, [UInt8], String)] = [
            ("random bytes", random, "invalid frame version: 127"),
            ("unknown version", badVersion, "invalid frame version: 9 (this agent speaks 1)"),
            ("oversized length", oversized, "invalid frame length: 2147483647 (maximum 1048576)"),
            ("data before HELLO", Self.frame(FrameHeader(type: .data, session: 1), [1, 2, 3]), "expected HELLO, got data"),
            ("unknown frame type", [1, 99] + [UInt8](repeating: 0, count: 22), "invalid frame type: 99"),
            ("wrong topology", gammaHello, "the two topology files differ"),
            // A TLS record header (0x16) followed by garbage: the TLS layer refuses it.
            ("garbage after a TLS record header", [0x16, 0x03, 0x01, 0x00, 0x20] + (0..<32).map { _ in UInt8.random(in: 0...255) },
             "secure channel failed"),
        ]
        for (name, bytes, reason) in cases {
            let (_, closed) = Self.exchange(port: port, bytes)
            #expect(closed, "\(name): the agent keeps the connection")
            #expect(cluster.log("beta").contains(reason), "\(name): \(cluster.log("beta"))")
        }
        // A truncated frame and silence: dropped when the handshake time (the peer timeout) ends.
        let (_, closed) = Self.exchange(port: port, Array(badVersion.prefix(10)))
        #expect(closed)
        #expect(cluster.log("beta").contains("no HELLO within the peer timeout"))
        // The real channels to alpha survived all of it and still carry the link.
        let echo = try cluster.probe("beta", ["echo", "--as", "b1"])
        #expect(echo.waitFor("attached"))
        let ping = try cluster.probe("alpha", ["ping", "--as", "a1", "--peer", "b1", "--count", "200", "--warmup", "0"])
        #expect(ping.finish() == 0, "\(ping.output)")
        #expect(echo.finish() == 0)
        let status = try cluster.status("beta")
        #expect(status.contains("alpha            up") && status.contains(" 0 reconnects"), "\(status)")
    }

    /// A channel that completes HELLO and then sends a frame for a session that is no link
    /// between the two hosts is dropped with that reason.
    /// A frame for a session that is no link of the pair cannot apply: refused with a control
    /// frame naming it, and the channel stays (only broken framing ends a channel).
    @Test func frameForAnUndeclaredSessionIsRefused() throws {
        let cluster = try LoopbackCluster(hosts: ["beta", "gamma"], hostFields: ["gamma": "nat: behind"],
                                          instances: """
              - { name: b1, host: beta }
              - { name: g1, host: gamma }
            """, links: "  - between: [b1, g1]", extra: Self.plaintextGamma, start: ["beta"])
        // The fingerprint both agents compute from the same file.
        let status = try cluster.status("beta")
        #expect(status.contains("gamma"))
        let fingerprint = try Tools.run("vioctl", ["topology", "fingerprint", cluster.topology, "--between", "beta", "gamma"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let hello = Self.frame(FrameHeader(type: .helloRequest), ChannelHello(
            cluster: "loopback", from: "gamma", to: "beta", channel: 0, channels: 2,
            fingerprint: UInt64(fingerprint, radix: 16) ?? 0).encoded())
        let (reply, _) = Self.exchange(port: cluster.ports["beta"]!, hello + Self.frame(FrameHeader(type: .data, session: 999)))
        #expect(reply.count >= FrameHeader.size && reply[1] == FrameType.helloResponse.rawValue, "HELLO was accepted first")
        let text = String(decoding: reply, as: UTF8.self)
        #expect(text.contains("'beta' refused a data frame: frame for session 999, which is not a link between beta and gamma"), "\(text)")
        #expect(cluster.log("beta").contains("frame refused"), "\(cluster.log("beta"))")
        // The channel was dropped later, for the heartbeats this test never sends, not for the frame.
        #expect(!cluster.log("beta").contains("closing the channel"), "\(cluster.log("beta"))")
    }

    /// A frame that breaks one session's protocol (out of sequence) ends that session only:
    /// its instance sees the link fail, the far agent gets a reset naming the reason, and the
    /// channel carries on (a heartbeat sent after it is answered). The test plays gamma's agent.
    @Test func aBadFrameEndsOnlyItsSession() throws {
        let cluster = try RawPeer.betaWithPlayedGamma()
        let holder = try cluster.probe("beta", ["hold", "--as", "b1"])
        #expect(holder.waitFor("attached"))
        let gamma = try RawPeer.gammaAfterHello(in: cluster)
        gamma.send(FrameHeader(type: .session, flags: .start, session: RawPeer.session, destination: RawPeer.b1),
                   SessionOpen(from: "g1", to: "b1", window: 1 << 16, maxFramePayload: 1 << 16).encoded())
        #expect(gamma.waitFor { h, _ in h.type == .acknowledgement && h.flags.contains(.start) })
        #expect(holder.waitFor("ready"))
        gamma.send(FrameHeader(type: .data, session: RawPeer.session, destination: RawPeer.b1, sequence: 7), [1, 2, 3])
        var reset: SessionReset?
        #expect(gamma.waitFor { h, p in
            guard h.type == .session, h.flags.contains(.reset) else { return false }
            reset = try? SessionReset(decoding: p)
            return true
        })
        #expect(reset?.message.contains("'beta' ended session \(RawPeer.session): session \(RawPeer.session): frame 7 arrived, 0 expected") == true, "\(String(describing: reset))")
        #expect(holder.finish(timeout: 10) == 3, "\(holder.output)")
        #expect(holder.output.contains("corrupt ring"), "\(holder.output)")
        // Still the same channel: a heartbeat is answered.
        gamma.send(FrameHeader(type: .heartbeatRequest, sequence: 42), [UInt8](repeating: 0, count: 8))
        #expect(gamma.waitFor { h, _ in h.type == .heartbeatResponse && h.sequence == 42 })
        #expect(!gamma.closed)
        #expect(!cluster.log("beta").contains("closing the channel"), "\(cluster.log("beta"))")
        #expect(cluster.log("beta").contains("session ended: the far agent broke its protocol"))
    }
}
