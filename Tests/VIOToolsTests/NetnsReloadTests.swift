import Foundation
import Testing

/// Online topology changes across the four namespace hosts of topologies/four-hosts.yaml.
@Suite(.serialized, .enabled(if: NetnsCluster.available, "skipped: needs root and iproute2 (network namespaces)"))
struct NetnsReloadTests {
    /// A rolling change (one agent reloaded at a time, h1 to h4) that adds two instances with a
    /// link between them and removes one: while the agents run different files, checked
    /// streams on unchanged links (the plaintext pair, the pair with the host behind NAT, an
    /// encrypted pair) keep flowing and lose nothing; the removed instance's link ends at both
    /// ends as removed; the added link works once both its hosts have the file; no channel
    /// drops and no frame is refused along the way.
    @Test func rollingChangeAcrossFourHostsLosesNothing() throws {
        let cluster = try NetnsCluster(hosts: 4)
        for h in ["h1", "h2", "h3", "h4"] {
            #expect(try cluster.waitForAllPeersUp(h, 3), "\(h): \((try? cluster.status(h)) ?? "")")
        }
        // About 8 s of traffic at 2,500 messages a second on each unchanged link.
        let count = 20_000
        let flows = [("h1", "h1a", "h2", "h2a"), ("h3", "h3a", "h4", "h4a"), ("h4", "h4b", "h1", "h1b")]
        var streams: [(String, ToolProcess, ToolProcess)] = []
        for (host, instance, peerHost, peer) in flows {
            let verify = try cluster.probe(peerHost, ["verify", "--as", peer, "--count", "\(count)"])
            #expect(verify.waitFor("attached"))
            let stream = try cluster.probe(host, ["stream", "--as", instance, "--peer", peer, "--count", "\(count)",
                                                  "--max-size", "1024", "--rate", "2500"])
            #expect(verify.waitFor("ready"), "\(verify.output)")
            streams.append(("\(instance) -> \(peer)", stream, verify))
        }
        // h2b's link to h3b, held at both ends: h2b is the instance the change removes.
        let heldH2b = try cluster.probe("h2", ["hold", "--as", "h2b"])
        #expect(heldH2b.waitFor("attached"))
        let heldH3b = try cluster.probe("h3", ["hold", "--as", "h3b", "--peer", "h2b"])
        #expect(heldH3b.waitFor("ready") && heldH2b.waitFor("ready"))

        let original = try String(contentsOfFile: cluster.topology, encoding: .utf8)
        let changed = original
            .replacingOccurrences(of: "  - { name: h2b, host: h2 }\n", with: "  - { name: h1c, host: h1 }\n  - { name: h3c, host: h3 }\n")
            .replacingOccurrences(of: "  - group: [h1a, h1b, h2a, h2b, h3a, h3b, h4a, h4b]\n",
                                  with: "  - group: [h1a, h1b, h2a, h3a, h3b, h4a, h4b]\n  - between: [h1c, h3c]\n")
        #expect(changed != original && changed.contains("between: [h1c, h3c]"), "the template changed: \(changed)")
        try changed.write(toFile: cluster.topology, atomically: true, encoding: .utf8)
        // What each agent logs from here on (connects refused while the agents started are not the change's).
        let logged = Dictionary(uniqueKeysWithValues: ["h1", "h2", "h3", "h4"].map { ($0, cluster.log($0).utf8.count) })
        for host in ["h1", "h2", "h3", "h4"] {
            let r = try Tools.run("vioctl", ["reload", "--socket", cluster.socket(host)])
            #expect(r.status == 0, "\(host): \(r.stdout) \(r.stderr)")
            if host == "h2" {
                #expect(r.stdout.contains("instances removed (1): h2b"), "\(r.stdout)")
            }
            if host == "h1" {
                #expect(r.stdout.contains("instances added (1): h1c") && r.stdout.contains("links added (1): h1c <-> h3c@h3"), "\(r.stdout)")
            }
            // Between reloads, for a while, the agents run different files.
            usleep(500_000)
            for (name, _, verify) in streams {
                #expect(!verify.output.contains("failed") && verify.process.isRunning, "\(name) after reloading \(host): \(verify.output)")
            }
        }
        for held in [heldH2b, heldH3b] {
            #expect(held.finish(timeout: 10) != 0)
            #expect(held.output.contains("removed from the topology"), "\(held.output)")
        }
        try cluster.expectRoundTrips(from: "h1", "h1c", to: "h3", "h3c")
        for (name, stream, verify) in streams {
            #expect(stream.finish(timeout: 120) == 0, "\(name): \(stream.output)")
            #expect(verify.finish(timeout: 30) == 0 && verify.output.contains("verified \(count)"), "\(name): \(verify.output)")
        }
        for h in ["h1", "h2", "h3", "h4"] {
            let status = try cluster.status(h)
            #expect(status.contains("1 reload") && !status.contains("pending restart"), "\(h): \(status)")
            #expect(status.split(separator: "\n").filter { $0.contains(" 0 reconnects") }.count == 3, "\(h): \(status)")
            let complaints = String(decoding: cluster.log(h).utf8.dropFirst(logged[h] ?? 0), as: UTF8.self).split(separator: "\n").filter { $0.contains("frame refused") || $0.contains("channel dropped") }
            #expect(complaints.isEmpty, "\(h): \(complaints.joined(separator: "\n"))")
        }
    }
}
