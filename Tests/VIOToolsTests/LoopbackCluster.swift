import Foundation
import VIOLinux

/// Several hosts on one machine: one agent per host, all on 127.0.0.1 with their own fabric
/// port and control socket. Exercises the inter-host fabric without root or namespaces (the
/// namespace cluster in scripts/netns-cluster.sh covers real veth links).
final class LoopbackCluster: AgentCluster {
    let directory = Tools.scratchDirectory()
    var topology: String { directory + "/topology.yaml" }
    let hosts: [String]
    let ports: [String: Int]
    private(set) var agents: [String: RunningAgent] = [:]

    /// A port no socket on 127.0.0.1 uses now: random below the kernel's ephemeral range (so
    /// no outgoing connection of a test running beside takes it before the agent binds it),
    /// checked by binding it. Clusters of suites running side by side never share one.
    static func freePort() throws -> Int {
        let range = Tools.contents("/proc/sys/net/ipv4/ip_local_port_range").split(whereSeparator: \.isWhitespace)
        let ephemeralStart = range.first.flatMap { Int($0) } ?? 32768
        for _ in 0..<1000 {
            let port = Int.random(in: 20000..<max(20001, ephemeralStart))
            if (try? TCPSocket.listen(on: TCPSocket.resolve("127.0.0.1", port: UInt16(port)))) != nil { return port }
        }
        throw TCPSocketBusy()
    }

    struct TCPSocketBusy: Error {}

    /// `count` distinct free ports (a released port may come back at once).
    static func freePorts(_ count: Int) throws -> [Int] {
        var ports: [Int] = []
        while ports.count < count {
            let port = try freePort()
            if !ports.contains(port) { ports.append(port) }
        }
        return ports
    }

    /// Each host's public key (`ed25519:...`), generated per cluster; the private keys are
    /// in DIR/HOST.key.
    private(set) var keys: [String: String] = [:]

    /// `hostFields` are extra per-host YAML fields by host name (e.g. `nat: behind`). Every
    /// host gets a fresh key pair and the channels are encrypted (the default), unless
    /// `defaults` says `security: plaintext`.
    init(hosts: [String], hostFields: [String: String] = [:], instances: String, links: String,
         defaults: String = "  ring_size: 256KiB\n  heartbeat_interval_ms: 100\n  peer_timeout_ms: 800\n",
         extra: String = "", start: [String]? = nil) throws {
        self.hosts = hosts
        self.hostFields = hostFields
        for h in hosts { keys[h] = try Self.generateKey(at: "\(directory)/\(h).key", host: h) }
        ports = Dictionary(uniqueKeysWithValues: zip(hosts, try Self.freePorts(hosts.count)))
        try rewrite(instances: instances, links: links, defaults: defaults, extra: extra)
        for h in start ?? hosts { try startAgent(h) }
    }

    private let hostFields: [String: String]

    /// Writes the topology file (`to`, default the cluster's) with the cluster's hosts and
    /// these instances, links, defaults and extra sections: what a reload test changes.
    func rewrite(instances: String, links: String, defaults: String = "  ring_size: 256KiB\n  heartbeat_interval_ms: 100\n  peer_timeout_ms: 800\n",
                 extra: String = "", to path: String? = nil) throws {
        var text = "cluster: loopback\nversion: 1\ndefaults:\n\(defaults)hosts:\n"
        for h in hosts {
            let more = hostFields[h].map { ", \($0)" } ?? ""
            text += "  - { name: \(h), address: 127.0.0.1, port: \(ports[h]!), control_socket: \(directory)/\(h).sock, key: \"\(keys[h]!)\"\(more) }\n"
        }
        text += "instances:\n\(instances)\nlinks:\n\(links)\n\(extra)"
        try text.write(toFile: path ?? topology, atomically: true, encoding: .utf8)
    }

    func socket(_ host: String) -> String { "\(directory)/\(host).sock" }

    /// Starts `host`'s agent with its own key (or `keyFile`) and `topology` (default: the cluster's).
    func startAgent(_ host: String, keyFile: String? = nil, topology: String? = nil) throws {
        agents[host] = try RunningAgent(arguments: ["--topology", topology ?? self.topology, "--host", host,
                                                    "--key-file", keyFile ?? "\(directory)/\(host).key"],
                                        socket: socket(host))
    }

    /// Runs `vioctl keys generate`; returns the public key it printed.
    static func generateKey(at path: String, host: String) throws -> String {
        let r = try Tools.run("vioctl", ["keys", "generate", host, "--out", path])
        guard r.status == 0, let line = r.stdout.split(separator: "\n").first(where: { $0.contains("key: ed25519:") }) else {
            throw KeyGenerationFailed(output: r.stdout + r.stderr)
        }
        return line.split(separator: " ").last.map(String.init) ?? ""
    }

    struct KeyGenerationFailed: Error { var output: String }

    func log(_ host: String) -> String { agents[host].map { Tools.contents($0.logFile) } ?? "" }
}
