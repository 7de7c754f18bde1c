import Foundation
import Testing
import VIOLinux

/// The namespace cluster of scripts/netns-cluster.sh: one agent per namespace, joined by veth
/// pairs and a bridge, addresses from 198.18.0.0/15 inside the namespaces only.
final class NetnsCluster: AgentCluster {
    struct SetupFailed: Error, CustomStringConvertible { var description: String }

    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/netns-cluster.sh").path
    static let topology = URL(fileURLWithPath: script).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("topologies/four-hosts.yaml").path
    static var available: Bool { getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") }

    /// One namespace cluster at a time in this process: suites run side by side, and two
    /// clusters (agents, PostgreSQL, a mesh) on two cores make each other miss deadlines. A
    /// cluster waits for the previous one's deinit; each gets prefixes of its own.
    private static let turn = DispatchSemaphore(value: 1)
    nonisolated(unsafe) private static var serial = 0
    let prefix: String
    let directory = Tools.scratchDirectory()

    /// four-hosts.yaml with a fresh key pair per host (the file's keys are examples).
    var topology: String { directory + "/four-hosts.yaml" }

    /// `hosts` namespaces; agents from `template` (default four-hosts.yaml, with fresh keys)
    /// for `start` (default: h1...h4 that exist).
    init(hosts: Int, start: [String]? = nil, template: String = NetnsCluster.topology) throws {
        Self.turn.wait()
        Self.serial += 1
        prefix = "vt\(getpid() % 10000)c\(Self.serial)"
        // The line after each host's address is its key: replace it with a fresh one.
        var lines = try String(contentsOfFile: template, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for i in 1...4 {
            guard let at = lines.firstIndex(of: "    address: 198.18.0.\(i)"), lines[at + 1].hasPrefix("    key: ") else { continue }
            lines[at + 1] = "    key: " + (try LoopbackCluster.generateKey(at: "\(directory)/h\(i).key", host: "h\(i)"))
        }
        let text = lines.joined(separator: "\n")
        try text.write(toFile: topology, atomically: true, encoding: .utf8)
        _ = try run("down", prefix)
        let up = try run("up", prefix, "\(hosts)")
        guard up.status == 0 else { throw SetupFailed(description: "netns up: \(up.stderr)") }
        // Agents are started here rather than by the script's `start`: Foundation's Process
        // would wait for the script's background children before reporting its exit.
        for host in start ?? (1...min(hosts, 4)).map({ "h\($0)" }) { try startAgent(host) }
    }

    private(set) var agents: [String: ToolProcess] = [:]

    /// Starts `host`'s agent in namespace `namespace` (default: the host's own) with
    /// `topology` and `keyFile` (default: the cluster's).
    func startAgent(_ host: String, namespace: String? = nil, topology: String? = nil, keyFile: String? = nil) throws {
        agents[host] = try ToolProcess("/usr/sbin/ip", ["netns", "exec", "\(prefix)-\(namespace ?? host)", Tools.binDirectory + "/vio-agent",
                                                        "--topology", topology ?? self.topology, "--host", host,
                                                        "--key-file", keyFile ?? "\(directory)/\(host).key",
                                                        "--control-socket", socket(host)])
        let deadline = Date().addingTimeInterval(20)
        while (try? UnixSocket.connect(path: socket(host))) == nil {
            guard Date() < deadline else { throw SetupFailed(description: "agent \(host) did not start") }
            usleep(10_000)
        }
    }

    deinit {
        for agent in agents.values { agent.kill() }
        _ = try? run("down", prefix)
        Self.turn.signal()
    }

    @discardableResult
    func run(_ arguments: String...) throws -> Tools.Result {
        try Tools.run("/bin/bash", [Self.script] + arguments, environment: ["VIO_BIN": Tools.binDirectory])
    }

    func ip(_ host: String, _ arguments: String...) throws -> Tools.Result {
        try Tools.run("/usr/sbin/ip", ["-n", "\(prefix)-\(host)"] + arguments)
    }

    func socket(_ host: String) -> String { "\(directory)/\(host).sock" }

    /// What `host`'s agent logged.
    func log(_ host: String) -> String { agents[host].map { Tools.contents($0.stderrFile) } ?? "" }

    /// Established TCP connections in `host`'s namespace, counted by peer address.
    func connectionsByPeer(_ host: String) throws -> [String: Int] {
        let out = try Tools.run("/usr/sbin/ip", ["netns", "exec", "\(prefix)-\(host)", "ss", "-Htn", "state", "established"]).stdout
        var counts: [String: Int] = [:]
        for line in out.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let peer = fields.last?.split(separator: ":").first else { continue }
            counts[String(peer), default: 0] += 1
        }
        return counts
    }
}

@Suite(.serialized, .enabled(if: NetnsCluster.available, "skipped: needs root and iproute2 (network namespaces)"))
struct NetnsClusterTests {
    /// topologies/four-hosts.yaml over veth: K = 2 connections per peer host before and after
    /// all 8 instances open their 28 links, and every message arrives intact and in order.
    @Test func fourHostsAllToAllOverVeth() throws {
        let cluster = try NetnsCluster(hosts: 4)
        for h in ["h1", "h2", "h3", "h4"] {
            #expect(try cluster.waitForAllPeersUp(h, 3), "\(h): \((try? cluster.status(h)) ?? "")")
        }
        let before = try cluster.connectionsByPeer("h1")
        #expect(before == ["198.18.0.2": 2, "198.18.0.3": 2, "198.18.0.4": 2], "\(before)")
        let names = ["h1a", "h1b", "h2a", "h2b", "h3a", "h3b", "h4a", "h4b"]
        let meshes = try names.map { try cluster.probe(String($0.prefix(2)), ["mesh", "--sleep", "--as", $0, "--count", "4", "--max-size", "2097152"]) }
        for (name, mesh) in zip(names, meshes) {
            #expect(mesh.finish(timeout: 240) == 0, "\(name): \(mesh.output)")
            #expect(mesh.output.contains("mesh verified 7 links"))
        }
        for h in ["h1", "h2", "h3", "h4"] {
            let counts = try cluster.connectionsByPeer(h)
            #expect(counts.count == 3 && counts.values.allSatisfy { $0 == 2 }, "\(h): \(counts)")
        }
        // h4 is behind NAT: it listens nowhere.
        let listening = try Tools.run("/usr/sbin/ip", ["netns", "exec", "\(cluster.prefix)-h4", "ss", "-Htln"]).stdout
        #expect(!listening.contains(":7300"), "\(listening)")
    }

    /// Cutting h2's veth: both ends of a link through it report "peer host down" within the
    /// timeout; every message the sender wrote is either delivered or counted as possibly
    /// lost; after the link is restored the agents reconnect and the link reopens.
    @Test func cutAndRestoreTheNetwork() throws {
        let cluster = try NetnsCluster(hosts: 4)
        #expect(try cluster.waitForStatus("h1", "h2               up"))
        let verifier = try cluster.probe("h2", ["verify", "--as", "h2a", "--count", "100000000"])
        #expect(verifier.waitFor("attached"))
        let streamer = try cluster.probe("h1", ["stream", "--as", "h1a", "--peer", "h2a", "--count", "100000000", "--max-size", "2000"])
        #expect(verifier.waitFor("ready"))
        usleep(500_000)
        #expect(try cluster.ip("h2", "link", "set", "eth0", "down").status == 0)
        #expect(streamer.finish(timeout: 10) == 3, "\(streamer.output)")
        #expect(verifier.finish(timeout: 10) == 3, "\(verifier.output)")
        func number(_ text: String, before marker: String) -> Int? {
            guard let range = text.range(of: marker) else { return nil }
            return Int(text[..<range.lowerBound].split(whereSeparator: { !$0.isNumber }).last ?? "")
        }
        let sent = number(streamer.output, before: " before the link failed") ?? -1
        let lost = number(streamer.output, before: " message(s) sent on this link were not acknowledged") ?? -1
        let verified = number(verifier.output, before: " before the link failed") ?? -1
        #expect(streamer.output.contains("peer host down: host 'h2' of instance 'h2a'"), "\(streamer.output)")
        #expect(verifier.output.contains("peer host down: host 'h1' of instance 'h1a'"), "\(verifier.output)")
        #expect(sent > 0 && verified > 0 && verified <= sent, "sent \(sent), verified \(verified)")
        #expect(sent - verified <= lost, "sent \(sent), delivered \(verified), reported possibly lost \(lost)")
        #expect(try cluster.ip("h2", "link", "set", "eth0", "up").status == 0)
        #expect(try cluster.waitForStatus("h1", "h2               up"), "\((try? cluster.status("h1")) ?? "")")
        try cluster.expectRoundTrips(from: "h1", "h1a", to: "h2", "h2a")
    }

    /// A capture on h1's veth sees a marker the instances send in plaintext on the plaintext
    /// pair (h1-h2), and nowhere on the encrypted pair (h1-h3).
    @Test func captureShowsNoPlaintextOnEncryptedChannels() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/tcpdump") else {
            Issue.record("tcpdump is missing: scripts/install-deps.sh installs it")
            return
        }
        let cluster = try NetnsCluster(hosts: 4)
        #expect(try cluster.waitForAllPeersUp("h1", 3))
        let marker = "VIO-PLAINTEXT-MARKER-\(getpid())"
        func captured(to peer: String, host: String, address: String) throws -> Bool {
            let capture = "\(cluster.directory)/\(peer).pcap"
            let dump = try ToolProcess("/usr/sbin/ip", ["netns", "exec", "\(cluster.prefix)-h1", "/usr/bin/tcpdump", "-i", "eth0",
                                                        "-U", "-s", "0", "-w", capture, "host", address])
            usleep(700_000)
            let sink = try cluster.probe(host, ["sink", "--as", peer, "--count", "200"])
            #expect(sink.waitFor("attached"))
            let rate = try cluster.probe("h1", ["rate", "--as", "h1a", "--peer", peer, "--count", "200", "--size", "4096",
                                                "--pattern", marker])
            #expect(sink.finish() == 0, "\(sink.output)")
            _ = rate.finish()
            // tcpdump on a loaded 2-core machine may lag the traffic: give it time to catch up.
            usleep(1_000_000)
            dump.kill(SIGKILL)  // -U wrote every packet as it came; SIGTERM may be masked in the test runner
            #expect(dump.finish(timeout: 10) != -1)
            let bytes = (try? Data(contentsOf: URL(fileURLWithPath: capture))) ?? Data()
            // Most of the 800 KiB sent must be in the capture for the marker's absence to mean
            // anything (a loaded machine once left 700 KiB of it: the kernel's capture buffer
            // dropped packets).
            #expect(bytes.count > 100 * 4096, "the capture holds \(bytes.count) bytes")
            return bytes.range(of: Data(marker.utf8)) != nil
        }
        #expect(try captured(to: "h2a", host: "h2", address: "198.18.0.2"), "the plaintext pair must show the marker")
        #expect(!(try captured(to: "h3a", host: "h3", address: "198.18.0.3")), "the encrypted pair leaked the marker")
        #expect(try cluster.status("h1").contains("encrypted TLSv1.3"))
    }

    /// A relay in a fifth namespace sits between h1 and h3 (an encrypted pair) and flips one
    /// bit of one TLS record: h3 fails the record's integrity check and drops the channel, the
    /// link reports the host down, nothing corrupted reaches h3a, and h1 reconnects.
    @Test func flippedByteOverVethFailsIntegrity() throws {
        let cluster = try NetnsCluster(hosts: 5, start: ["h2", "h3", "h4"])
        let relay = try TamperingRelay(listenAddress: "198.18.0.5", listenPort: 7300, targetAddress: "198.18.0.3", targetPort: 7300,
                                       netns: "\(cluster.prefix)-h5", tamper: .flipByte, afterRecords: 40)
        defer { relay.stop() }
        // h1 reaches h3 at the relay's address (addresses are not part of the fingerprint).
        let copy = try String(contentsOfFile: cluster.topology, encoding: .utf8)
            .replacingOccurrences(of: "address: 198.18.0.3\n", with: "address: 198.18.0.5\n")
        try copy.write(toFile: cluster.directory + "/h1-via-relay.yaml", atomically: true, encoding: .utf8)
        try cluster.startAgent("h1", topology: cluster.directory + "/h1-via-relay.yaml")
        #expect(try cluster.waitForAllPeersUp("h1", 3), "\((try? cluster.status("h1")) ?? "")")
        let (stream, verify) = try cluster.startVerifiedStream(from: "h1", "h1a", to: "h3", "h3a", count: 20000, maxSize: 4096)
        _ = stream.finish(timeout: 60)
        _ = verify.finish(timeout: 60)
        #expect(relay.tampered)
        #expect(!verify.output.contains("corrupted") && !verify.output.contains("arrived where"), "\(verify.output)")
        #expect(cluster.log("h3").contains("bad record mac"), "\(cluster.log("h3"))")
        #expect(try cluster.waitForAllPeersUp("h1", 3), "\((try? cluster.status("h1")) ?? "")")
    }

    /// A fifth machine runs an agent whose own topology adds it (with its key) and links it to
    /// h3: h3 refuses the channel because the key is not in its topology, and logs it.
    @Test func unknownHostOverVethIsRefused() throws {
        let cluster = try NetnsCluster(hosts: 5)
        #expect(try cluster.waitForAllPeersUp("h3", 3))
        let key = try LoopbackCluster.generateKey(at: cluster.directory + "/mallory.key", host: "mallory")
        let copy = try String(contentsOfFile: cluster.topology, encoding: .utf8)
            .replacingOccurrences(of: "\ninstances:\n", with: """

              - { name: mallory, address: 198.18.0.5, nat: behind, key: "\(key)" }
            instances:
              - { name: m1, host: mallory }

            """)
            .replacingOccurrences(of: "\nlinks:\n", with: "\nlinks:\n  - between: [m1, h3a]\n")
        try copy.write(toFile: cluster.directory + "/mallory.yaml", atomically: true, encoding: .utf8)
        try cluster.startAgent("mallory", namespace: "h5", topology: cluster.directory + "/mallory.yaml",
                               keyFile: cluster.directory + "/mallory.key")
        _ = Tools.waitUntil(timeout: 20, pollMicroseconds: 50_000) { cluster.log("h3").contains("presented key \(key)") }
        #expect(cluster.log("h3").contains("presented key \(key), which the topology does not give any host that may connect"),
                "\(cluster.log("h3")) / \(cluster.log("mallory"))")
        #expect(try cluster.waitForAllPeersUp("h3", 3))
    }
}
