import Foundation
import Testing

/// Online topology changes (`vioctl reload`, SIGHUP) between real agents on loopback: what a
/// reload adds goes live, what it removes closes with the reason at both ends, links nothing
/// changed keep flowing with nothing lost, and files that differ between hosts carry the links
/// both declare alike.
@Suite(.serialized) struct ReloadTests {
    static let instances = """
          - { name: a1, host: alpha }
          - { name: a2, host: alpha }
          - { name: b1, host: beta }
          - { name: b2, host: beta }
        """
    static let links = """
          - between: [a1, b1]
          - between: [a2, b2]
          - between: [a1, a2]
        """

    func reload(_ cluster: LoopbackCluster, _ host: String) throws -> (status: Int32, output: String) {
        let r = try Tools.run("vioctl", ["reload", "--socket", cluster.socket(host)])
        return (r.status, r.stdout + r.stderr)
    }

    /// One agent reloaded at a time: removed links end at both ends as removed, added
    /// instances and links work once both agents have the file (and are refused with the
    /// reason while only one has it), and a checked stream on an unchanged link loses nothing.
    @Test func rollingChangeKeepsUnchangedLinksFlowing() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: Self.instances, links: Self.links)
        #expect(try cluster.waitForAllPeersUp("alpha", 1))
        // Traffic that lasts through both reloads: about 4 s at 5,000 messages a second.
        let count = 20_000
        let verify = try cluster.probe("beta", ["verify", "--as", "b1", "--count", "\(count)"])
        #expect(verify.waitFor("attached"))
        let stream = try cluster.probe("alpha", ["stream", "--as", "a1", "--peer", "b1", "--count", "\(count)",
                                                  "--max-size", "2048", "--rate", "5000"])
        #expect(verify.waitFor("ready"))
        // Links the change removes, held open at both ends.
        let heldB2 = try cluster.probe("beta", ["hold", "--as", "b2"])
        #expect(heldB2.waitFor("attached"))
        let heldA2 = try cluster.probe("alpha", ["hold", "--as", "a2", "--peer", "b2"])
        #expect(heldA2.waitFor("ready") && heldB2.waitFor("ready"))

        // The new file: a2 <-> b2 goes, a3 and b3 come with a link between them.
        let changed = Self.instances + "\n  - { name: a3, host: alpha }\n  - { name: b3, host: beta }"
        try cluster.rewrite(instances: changed, links: """
              - between: [a1, b1]
              - between: [a1, a2]
              - between: [a3, b3]
            """)
        let first = try reload(cluster, "alpha")
        #expect(first.status == 0, "\(first.output)")
        #expect(first.output.contains("instances added (1): a3") && first.output.contains("links removed (1): a2 <-> b2@beta")
                && first.output.contains("links added (1): a3 <-> b3@beta"), "\(first.output)")
        #expect(heldA2.finish(timeout: 10) != 0)
        #expect(heldA2.output.contains("removed from the topology"), "\(heldA2.output)")
        #expect(heldB2.finish(timeout: 10) != 0)
        #expect(heldB2.output.contains("removed from the topology"), "\(heldB2.output)")
        // Only alpha knows a3 <-> b3: the open is refused with beta's reason.
        let early = try cluster.probe("alpha", ["ping", "--as", "a3", "--peer", "b3", "--count", "1", "--open-timeout-ms", "0"])
        #expect(early.finish() != 0)
        let reason = "no link 'a3' <-> 'b3' is declared in the topology of host 'beta'"
        #expect(early.output.contains(reason), "\(early.output)")

        #expect(try cluster.waitForStatus("alpha", "topology differs: link 'a3' <-> 'b3' is declared here, not on 'beta'"),
                "\((try? cluster.status("alpha")) ?? "")")
        #expect(try cluster.status("beta").contains("topology differs: link 'a3' <-> 'b3' is declared on 'alpha', not here"))
        let second = try reload(cluster, "beta")
        #expect(second.status == 0 && second.output.contains("instances added (1): b3"), "\(second.output)")
        try cluster.expectRoundTrips(from: "alpha", "a3", to: "beta", "b3")
        // A second reload of the same file changes nothing.
        #expect(try reload(cluster, "beta").output.contains("unchanged"))

        #expect(stream.finish() == 0, "\(stream.output)")
        #expect(verify.finish() == 0, "\(verify.output)")
        #expect(verify.output.contains("verified \(count)"))
        let status = try cluster.status("alpha")
        #expect(status.contains("1 reload") && status.contains(" 0 reconnects") && !status.contains("topology differs"), "\(status)")
        #expect(!cluster.log("alpha").contains("frame refused") && !cluster.log("beta").contains("frame refused"),
                "\(cluster.log("alpha"))\n\(cluster.log("beta"))")
    }

    /// A removed instance is detached (told why), its local links end as removed for their
    /// peers; an added local link opens; SIGHUP reloads like `vioctl reload`.
    @Test func removedInstancesAreDetachedAndSIGHUPReloads() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: Self.instances, links: Self.links)
        let heldA1 = try cluster.probe("alpha", ["hold", "--as", "a1"])
        #expect(heldA1.waitFor("attached"))
        let heldA2 = try cluster.probe("alpha", ["hold", "--as", "a2", "--peer", "a1"])
        #expect(heldA2.waitFor("ready") && heldA1.waitFor("ready"))
        try cluster.rewrite(instances: """
              - { name: a1, host: alpha }
              - { name: a4, host: alpha }
              - { name: b1, host: beta }
              - { name: b2, host: beta }
            """, links: """
              - between: [a1, b1]
              - between: [a1, a4]
            """)
        let agentPID = try #require(cluster.agents["alpha"]?.process.processIdentifier)
        kill(agentPID, SIGHUP)
        #expect(heldA1.finish(timeout: 10) != 0)
        #expect(heldA1.output.contains("removed from the topology"), "\(heldA1.output)")
        #expect(heldA2.finish(timeout: 10) != 0)
        #expect(try Tools.waitUntil(timeout: 10) { cluster.log("alpha").contains("SIGHUP: topology reloaded") }, "\(cluster.log("alpha"))")
        #expect(cluster.log("alpha").contains("instance removed from the topology"), "\(cluster.log("alpha"))")
        // The removed instance cannot attach again; the added one can, and its link works.
        let again = try cluster.probe("alpha", ["hold", "--as", "a2", "--peer", "a1"])
        #expect(again.finish() != 0)
        let echo = try cluster.probe("alpha", ["echo", "--as", "a4"])
        #expect(echo.waitFor("attached"))
        let ping = try cluster.probe("alpha", ["ping", "--as", "a1", "--peer", "a4", "--count", "50", "--warmup", "0"])
        #expect(ping.finish() == 0, "\(ping.output)")
        #expect(echo.finish() == 0)
        let status = try cluster.status("alpha")
        #expect(status.contains("instances: 2 declared") && status.contains("  a4  ") && !status.contains("  a2  "), "\(status)")
        // beta still declares a2 <-> b2: the difference is reported on both sides.
        #expect(status.contains("topology differs: link 'a2' <-> 'b2' is declared on 'beta', not here"), "\(status)")
    }

    /// A file with errors, or without this host, changes nothing and says why with positions;
    /// settings read only at start are reported as pending a restart.
    @Test func badFilesAreRefusedAndStartOnlySettingsWait() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: Self.instances, links: Self.links, start: ["alpha"])
        let good = Tools.contents(cluster.topology)
        try (good + "  - between: [a1, nobody]\n").write(toFile: cluster.topology, atomically: true, encoding: .utf8)
        let broken = try reload(cluster, "alpha")
        #expect(broken.status == 1, "\(broken.output)")
        #expect(broken.output.contains("has errors; the agent keeps the topology it runs") && broken.output.contains("topology.yaml:"),
                "\(broken.output)")
        try good.replacingOccurrences(of: "name: alpha", with: "name: gamma").replacingOccurrences(of: "host: alpha", with: "host: gamma")
            .write(toFile: cluster.topology, atomically: true, encoding: .utf8)
        let hostless = try reload(cluster, "alpha")
        #expect(hostless.status == 1 && hostless.output.contains("no longer declares host 'alpha'"), "\(hostless.output)")
        try cluster.rewrite(instances: Self.instances, links: Self.links,
                            defaults: "  ring_size: 256KiB\n  heartbeat_interval_ms: 150\n  peer_timeout_ms: 800\n")
        let pending = try reload(cluster, "alpha")
        #expect(pending.status == 0 && pending.output.contains("pending restart: heartbeat_interval_ms changed (100 -> 150)"), "\(pending.output)")
        #expect(try cluster.status("alpha").contains("pending restart: heartbeat_interval_ms"))
        // Nothing was lost on the way: the agent still serves its links.
        let echo = try cluster.probe("alpha", ["echo", "--as", "a2"])
        #expect(echo.waitFor("attached"))
        let ping = try cluster.probe("alpha", ["ping", "--as", "a1", "--peer", "a2", "--count", "20", "--warmup", "0"])
        #expect(ping.finish() == 0, "\(ping.output)")
        #expect(echo.finish() == 0)
    }
}
