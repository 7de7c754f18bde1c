import Foundation
import Testing
import VIOLinux

/// Encrypted, mutually authenticated channels between agents (TLS 1.3, keys in the topology),
/// hosts on loopback ports.
@Suite(.serialized)
struct SecureChannelTests {
    static let pair = (instances: """
          - { name: a1, host: alpha }
          - { name: b1, host: beta }
        """, links: "  - between: [a1, b1]")

    @Test func linksWorkEncryptedAndStatusSaysSo() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: Self.pair.instances, links: Self.pair.links)
        #expect(try cluster.waitForAllPeersUp("alpha", 1))
        let (stream, verify) = try cluster.startVerifiedStream(from: "alpha", "a1", to: "beta", "b1", count: 3000)
        #expect(stream.finish() == 0, "\(stream.output)")
        #expect(verify.finish() == 0, "\(verify.output)")
        #expect(verify.output.contains("verified 3000"))
        let status = try cluster.status("alpha")
        #expect(status.contains("encrypted TLSv1.3 TLS_AES_128_GCM_SHA256"), "\(status)")
    }

    /// A host whose agent presents another key than the topology's is refused: no channel,
    /// no link, and the dialer logs why.
    @Test func wrongKeyIsRefused() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: Self.pair.instances, links: Self.pair.links,
                                          start: ["alpha"])
        // The impostor runs as beta with its own key, from a copy of the topology that says so.
        let impostorKey = try LoopbackCluster.generateKey(at: cluster.directory + "/impostor.key", host: "beta")
        let copy = try String(contentsOfFile: cluster.topology, encoding: .utf8)
            .replacingOccurrences(of: cluster.keys["beta"]!, with: impostorKey)
        try copy.write(toFile: cluster.directory + "/impostor.yaml", atomically: true, encoding: .utf8)
        try cluster.startAgent("beta", keyFile: cluster.directory + "/impostor.key", topology: cluster.directory + "/impostor.yaml")
        #expect(try cluster.waitForStatus("alpha", "presented key \(impostorKey)"), "\((try? cluster.status("alpha")) ?? "")")
        let beta = try cluster.status("alpha").split(separator: "\n").first { $0.hasPrefix("  beta ") } ?? ""
        #expect(!beta.contains(" up "), "\(beta)")
        let open = try cluster.probe("alpha", ["ping", "--as", "a1", "--peer", "b1", "--count", "1", "--open-timeout-ms", "1500"])
        #expect(open.finish() == 2, "\(open.output)")
        #expect(cluster.log("alpha").contains("which the topology does not give the host dialed"))
    }

    /// A third host that is not in the topology (its own copy lists it) is refused by the
    /// accepting agent, which logs the key it presented.
    @Test func hostNotInTopologyIsRefused() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: Self.pair.instances, links: Self.pair.links)
        #expect(try cluster.waitForAllPeersUp("alpha", 1))
        let malloryKey = try LoopbackCluster.generateKey(at: cluster.directory + "/mallory.key", host: "mallory")
        let port = cluster.ports["beta"]! + 3
        let copy = try String(contentsOfFile: cluster.topology, encoding: .utf8)
            .replacingOccurrences(of: "instances:\n", with: """
              - { name: mallory, address: 127.0.0.1, port: \(port), nat: behind, key: "\(malloryKey)" }
            instances:
              - { name: m1, host: mallory }

            """)
            .replacingOccurrences(of: "links:\n", with: "links:\n  - between: [m1, b1]\n")
        try copy.write(toFile: cluster.directory + "/mallory.yaml", atomically: true, encoding: .utf8)
        let mallory = try RunningAgent(arguments: ["--topology", cluster.directory + "/mallory.yaml", "--host", "mallory",
                                                   "--key-file", cluster.directory + "/mallory.key"],
                                       socket: cluster.directory + "/mallory.sock")
        #expect(try waitUntil { cluster.log("beta").contains("presented key \(malloryKey), which the topology does not give any host that may connect") },
                "\(cluster.log("beta"))")
        #expect(!Tools.contents(mallory.logFile).contains("channel up"))
        // beta keeps serving alpha.
        #expect(try cluster.waitForAllPeersUp("beta", 1))
    }

    /// A relay flips one bit of one encrypted record: the receiving agent fails the record's
    /// integrity check, drops that channel and reconnects; nothing corrupted reaches b1.
    @Test func flippedByteFailsIntegrityAndChannelReconnects() throws {
        try tamperedChannel(.flipByte)
    }

    /// A relay sends one encrypted record twice: the copy fails (its sequence number is
    /// wrong), the channel reconnects, and b1 never sees a message twice.
    @Test func replayedRecordIsRejected() throws {
        try tamperedChannel(.replay)
    }

    private func tamperedChannel(_ tamper: TamperingRelay.Tamper) throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: Self.pair.instances, links: Self.pair.links,
                                          start: ["beta"])
        // alpha dials beta through the relay: alpha's copy of the topology points at it
        // (ports are not part of the fingerprint).
        let relayPort = cluster.ports["beta"]! + 2
        let relay = try TamperingRelay(listenPort: relayPort, targetPort: cluster.ports["beta"]!, tamper: tamper, afterRecords: 40)
        defer { relay.stop() }
        let copy = try String(contentsOfFile: cluster.topology, encoding: .utf8)
            .replacingOccurrences(of: "port: \(cluster.ports["beta"]!),", with: "port: \(relayPort),")
        try copy.write(toFile: cluster.directory + "/alpha.yaml", atomically: true, encoding: .utf8)
        try cluster.startAgent("alpha", topology: cluster.directory + "/alpha.yaml")
        #expect(try cluster.waitForAllPeersUp("alpha", 1))
        let (stream, verify) = try cluster.startVerifiedStream(from: "alpha", "a1", to: "beta", "b1", count: 20000, maxSize: 4096)
        _ = stream.finish(timeout: 60)
        _ = verify.finish(timeout: 60)
        #expect(relay.tampered)
        // Whatever arrived was intact and in order; the link then reported the host down.
        #expect(!verify.output.contains("corrupted") && !verify.output.contains("arrived where"), "\(verify.output)")
        #expect(verify.output.contains("peer host") || verify.output.contains("verified 20000"), "\(verify.output)")
        #expect(cluster.log("beta").contains("secure channel failed"), "\(cluster.log("beta"))")
        #expect(cluster.log("beta").contains("bad record mac"), "\(cluster.log("beta"))")
        // The channel comes back (through the relay, which now forwards untouched).
        #expect(try waitUntil { try cluster.status("alpha").contains("1 reconnects") || cluster.status("alpha").contains("2 reconnects") })
        #expect(try cluster.waitForAllPeersUp("alpha", 1))
    }

    /// Key updates under traffic: every message arrives once, in order.
    @Test func keyRotationUnderTrafficLosesNothing() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: Self.pair.instances, links: Self.pair.links,
                                          defaults: "  ring_size: 256KiB\n  heartbeat_interval_ms: 100\n  peer_timeout_ms: 800\n  rekey_after: 64KiB\n")
        #expect(try cluster.waitForAllPeersUp("alpha", 1))
        let (stream, verify) = try cluster.startVerifiedStream(from: "alpha", "a1", to: "beta", "b1", count: 4000, maxSize: 32768)
        #expect(stream.finish() == 0, "\(stream.output)")
        #expect(verify.finish() == 0, "\(verify.output)")
        #expect(verify.output.contains("verified 4000"))
        let status = try cluster.status("alpha")
        #expect(Self.keyUpdates(status) >= 10, "\(status)")
    }

    /// Key updates on time alone: an idle pair (heartbeats only) rotates every second, and the
    /// link still carries traffic afterwards.
    @Test func keysRotateOnTimeWhileIdle() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: Self.pair.instances, links: Self.pair.links,
                                          defaults: "  ring_size: 256KiB\n  heartbeat_interval_ms: 100\n  peer_timeout_ms: 800\n  rekey_interval_s: 1\n")
        #expect(try cluster.waitForAllPeersUp("alpha", 1))
        // Two channels, each rotating once a second: at least four updates within a few seconds.
        #expect(try waitUntil(timeout: 10) { try Self.keyUpdates(cluster.status("alpha")) >= 4 }, "\((try? cluster.status("alpha")) ?? "")")
        try cluster.expectRoundTrips(from: "alpha", "a1", to: "beta", "b1")
    }

    /// `security: plaintext` for a pair: no keys needed, status says plaintext.
    @Test func plaintextPairWhenChosen() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: Self.pair.instances, links: Self.pair.links,
                                          extra: "host_pairs:\n  - { between: [alpha, beta], security: plaintext }\n")
        #expect(try cluster.waitForAllPeersUp("alpha", 1))
        let (stream, verify) = try cluster.startVerifiedStream(from: "alpha", "a1", to: "beta", "b1", count: 500)
        #expect(stream.finish() == 0 && verify.finish() == 0, "\(verify.output)")
        #expect(try cluster.status("alpha").contains("(dials, plaintext)"))
    }

    /// One agent thinks the pair is plaintext, the other encrypted: refused with the reason.
    @Test func securityMismatchIsRefused() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: Self.pair.instances, links: Self.pair.links,
                                          start: ["beta"])
        let copy = try String(contentsOfFile: cluster.topology, encoding: .utf8)
            + "host_pairs:\n  - { between: [alpha, beta], security: plaintext }\n"
        try copy.write(toFile: cluster.directory + "/alpha.yaml", atomically: true, encoding: .utf8)
        try cluster.startAgent("alpha", topology: cluster.directory + "/alpha.yaml")
        #expect(try waitUntil { cluster.log("beta").contains("the peer sent plaintext, but every host pair of this host is encrypted") },
                "\(cluster.log("beta"))")
    }

    /// The agent refuses a key file others can read, and a key that is not its host's.
    @Test func unsafeOrWrongKeyFileStopsTheAgent() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: Self.pair.instances, links: Self.pair.links,
                                          start: [])
        chmod(cluster.directory + "/alpha.key", 0o644)
        let open = try Tools.run("vio-agent", ["--topology", cluster.topology, "--host", "alpha", "--key-file", cluster.directory + "/alpha.key"])
        #expect(open.status != 0)
        #expect(open.stderr.contains("is readable or writable by others (mode 644); run `chmod 600"), "\(open.stderr)")
        let wrong = try Tools.run("vio-agent", ["--topology", cluster.topology, "--host", "alpha", "--key-file", cluster.directory + "/beta.key"])
        #expect(wrong.status != 0)
        #expect(wrong.stderr.contains("is not host 'alpha''s"), "\(wrong.stderr)")
    }

    /// The "N key updates" figure of the first peer host in `vioctl status`.
    static func keyUpdates(_ status: String) -> Int {
        status.split(separator: "\n").first { $0.contains("key updates") }
            .flatMap { line in line.split(separator: ",").first { $0.contains("key updates") } }
            .flatMap { Int($0.split(separator: " ").first ?? "") } ?? 0
    }

    private func waitUntil(timeout: TimeInterval = 20, _ condition: () throws -> Bool) throws -> Bool {
        try Tools.waitUntil(timeout: timeout, pollMicroseconds: 50_000, condition)
    }
}
