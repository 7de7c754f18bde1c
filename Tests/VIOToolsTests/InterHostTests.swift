import Foundation
import Testing
import VIOLinux
import VIOWire

/// The inter-host fabric with real agents and instances, hosts on loopback ports.
@Suite(.serialized)
struct InterHostTests {
    static let fourHosts = (
        instances: ["h1a", "h1b", "h2a", "h2b", "h3a", "h3b", "h4a", "h4b"],
        yaml: """
          - { name: h1a, host: h1 }
          - { name: h1b, host: h1 }
          - { name: h2a, host: h2 }
          - { name: h2b, host: h2 }
          - { name: h3a, host: h3 }
          - { name: h3b, host: h3 }
          - { name: h4a, host: h4, ring_size: 1MiB }
          - { name: h4b, host: h4, ring_size: 64KiB }
        """)

    /// Four hosts (one behind NAT), two instances each, all 28 links at once, random sizes up
    /// to 8 MiB with checksums: every message arrives, intact and in order, on every link.
    @Test func allToAllAcrossFourHosts() throws {
        let cluster = try LoopbackCluster(hosts: ["h1", "h2", "h3", "h4"], hostFields: ["h4": "nat: behind"],
                                          instances: Self.fourHosts.yaml,
                                          links: "  - group: [h1a, h1b, h2a, h2b, h3a, h3b, h4a, h4b]")
        for h in ["h1", "h2", "h3", "h4"] {
            #expect(try cluster.waitForAllPeersUp(h, 3), "\(h): \((try? cluster.status(h)) ?? "")")
        }
        let meshes = try Self.fourHosts.instances.map { name in
            // 112 sender/receiver threads on this machine's cores: they sleep rather than spin,
            // or their spinning competes with the agents for the CPU (see docs/fabric.md).
            try cluster.probe(String(name.prefix(2)), ["mesh", "--sleep", "--as", name, "--count", "12", "--max-size", "8388608"])
        }
        for (name, mesh) in zip(Self.fourHosts.instances, meshes) {
            #expect(mesh.finish(timeout: 240) == 0, "\(name): \(mesh.output)")
            #expect(mesh.output.contains("mesh verified 7 links"), "\(name): \(mesh.output)")
        }
        let status = try cluster.status("h1")
        for peer in ["h2", "h3", "h4"] {
            let line = status.split(separator: "\n").first { $0.hasPrefix("  \(peer) ") } ?? ""
            #expect(line.contains("up") && line.contains("channels 2/2"), "\(status)")
        }
        // h4 is behind NAT: it dialed everyone, so its agent listens nowhere.
        #expect(!cluster.log("h4").contains("fabric listening"))
        #expect(cluster.log("h1").contains("fabric listening"))
    }

    /// The agent's view in `vioctl status`, and `vioctl health` of a far host over the fabric.
    @Test func statusAndRemoteHealth() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: """
              - { name: a1, host: alpha }
              - { name: b1, host: beta }
            """, links: "  - between: [a1, b1]")
        #expect(try cluster.waitForStatus("alpha", "channels 2/2"))
        let echo = try cluster.probe("beta", ["echo", "--as", "b1"])
        #expect(echo.waitFor("attached"))
        let ping = try cluster.probe("alpha", ["ping", "--as", "a1", "--peer", "b1", "--count", "300", "--warmup", "10"])
        #expect(ping.finish() == 0, "\(ping.output)")
        #expect(echo.finish() == 0)
        #expect(echo.output.contains("echoed 310"))
        let health = try Tools.run("vioctl", ["health", "beta", "--socket", cluster.socket("alpha")])
        #expect(health.status == 0, "\(health.stderr)")
        #expect(health.stdout.contains("host:      beta"))
        #expect(health.stdout.contains("alpha            up"), "\(health.stdout)")
        let healthJSON = try Tools.run("vioctl", ["health", "beta", "--json", "--socket", cluster.socket("alpha")])
        let far = try JSONSerialization.jsonObject(with: Data(healthJSON.stdout.utf8)) as? [String: Any]
        #expect(far?["host"] as? String == "beta" && far?["schema"] as? String == "vio.status", "\(healthJSON.stdout)")
        let unknown = try Tools.run("vioctl", ["health", "gamma", "--socket", cluster.socket("alpha")])
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("'gamma' is not a host this one has links to; known: beta"))
        let status = try cluster.status("alpha")
        #expect(status.contains("frames"), "\(status)")
        // Which transport carries the pair, and why.
        #expect(status.contains("    transport tcp: auto: no RDMA device"), "\(status)")
        #expect(cluster.log("alpha").contains("peer host transport"), "\(cluster.log("alpha"))")
    }

    /// Many small messages: the agents carry back-to-back messages as runs in one frame
    /// (fewer frames than messages), and every message arrives intact and in order.
    @Test func smallMessagesTravelInRunsIntactAndInOrder() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: """
              - { name: a1, host: alpha }
              - { name: b1, host: beta }
            """, links: "  - between: [a1, b1]")
        #expect(try cluster.waitForStatus("alpha", "channels 2/2"))
        let (streamer, verifier) = try cluster.startVerifiedStream(from: "alpha", "a1", to: "beta", "b1", count: 20000, maxSize: 700)
        #expect(verifier.finish(timeout: 120) == 0, "\(verifier.output)")
        #expect(verifier.output.contains("verified 20000"), "\(verifier.output)")
        #expect(streamer.finish() == 0, "\(streamer.output)")
        let status = try cluster.status("alpha")
        let line = status.split(separator: "\n").first { $0.contains("    sent ") } ?? ""
        let frames = line.split(separator: " ").firstIndex(of: "frames,").map { Int(line.split(separator: " ")[$0 - 1]) ?? 0 } ?? 0
        #expect(frames > 0 && frames < 20000, "\(status)")
    }

    /// One receiver stops reading: only its link backs up (credit stalls), the other link
    /// between the same two hosts keeps flowing to completion.
    @Test func stoppedReaderBacksUpOnlyItsLink() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: """
              - { name: a1, host: alpha }
              - { name: a2, host: alpha }
              - { name: b1, host: beta }
              - { name: b2, host: beta }
            """, links: """
              - between: [a1, b1]
              - between: [a2, b2]
            """, defaults: "  ring_size: 64KiB\n  channels: 1\n  heartbeat_interval_ms: 100\n  peer_timeout_ms: 800\n")
        #expect(try cluster.waitForStatus("alpha", "channels 1/1"))
        let staller = try cluster.probe("beta", ["hold", "--as", "b1", "--stall"])
        #expect(staller.waitFor("attached"))
        let blocked = try cluster.probe("alpha", ["stream", "--as", "a1", "--peer", "b1", "--count", "100000", "--max-size", "65536"])
        // Both links share the one channel; the stalled one fills its credit and its rings.
        #expect(try cluster.waitForStatus("alpha", " 0 reconnects"))
        usleep(500_000)
        let (streamer, verifier) = try cluster.startVerifiedStream(from: "alpha", "a2", to: "beta", "b2", count: 3000, maxSize: 65536)
        #expect(verifier.finish(timeout: 120) == 0, "\(verifier.output)")
        #expect(verifier.output.contains("verified 3000"))
        #expect(streamer.finish() == 0)
        let status = try cluster.status("alpha")
        let peerLine = status.split(separator: "\n").first { $0.contains("credit stalls") } ?? ""
        #expect(!peerLine.contains(" 0 credit stalls"), "\(status)")
        // The stalled link is open: its session's state as the state machine has it.
        #expect(status.contains("a1 <-> b1") && status.contains("open, session data write and read"), "\(status)")
        // The same state as JSON, the documented schema.
        let json = try Tools.run("vioctl", ["status", "--json", "--socket", cluster.socket("alpha")])
        #expect(json.status == 0, "\(json.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["schema"] as? String == "vio.status" && object["version"] as? Int == 1)
        #expect(object["host"] as? String == "alpha")
        let links = try #require(object["links"] as? [[String: Any]])
        let stalled = try #require(links.first { $0["local_end"] as? String == "a1" })
        #expect(stalled["state"] as? String == "open" && stalled["session"] as? String == "data write and read")
        #expect(((stalled["sent"] as? [String: Any])?["messages"] as? Int ?? 0) > 0)
        let peers = try #require(object["peer_hosts"] as? [[String: Any]])
        #expect(peers.first?["name"] as? String == "beta" && peers.first?["state"] as? String == "up")
        #expect((peers.first?["credit_stalls"] as? Int ?? 0) > 0)
        #expect((peers.first?["transport"] as? String)?.hasPrefix("tcp: ") == true)
        #expect(blocked.process.isRunning, "the stalled link's sender blocks, it does not fail: \(blocked.output)")
        blocked.kill()
        staller.kill()
    }

    /// kill -9 of one agent: instances on the other host get "peer host down" within the
    /// timeout with the unacknowledged count; once the agent is back, the link reopens.
    @Test func killedAgentIsPeerHostDownThenLinksReopen() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: """
              - { name: a1, host: alpha }
              - { name: b1, host: beta }
            """, links: "  - between: [a1, b1]")
        #expect(try cluster.waitForStatus("alpha", "channels 2/2"))
        // b1 busy-polls: its own agent's death must reach it while it spins, too.
        let far = try cluster.probe("beta", ["hold", "--as", "b1", "--wait", "busy"])
        #expect(far.waitFor("attached"))
        let near = try cluster.probe("alpha", ["hold", "--as", "a1", "--peer", "b1"])
        #expect(near.waitFor("ready"))
        #expect(far.waitFor("ready"))
        let killedAt = MonotonicClock.nanoseconds()
        kill(cluster.agents["beta"]!.process.processIdentifier, SIGKILL)
        #expect(near.finish(timeout: 10) == 3)
        let line = near.output.split(separator: "\n").first { $0.hasPrefix("link ended at") } ?? ""
        #expect(line.contains("peer host down: host 'beta' of instance 'b1' is unreachable"), "\(near.output)")
        #expect(line.contains("0 message(s) sent on this link were not acknowledged"), "\(line)")
        let endedAt = UInt64(line.split(separator: " ")[3]) ?? 0
        #expect(endedAt > killedAt && endedAt - killedAt < 3_000_000_000, "detected after \((endedAt &- killedAt) / 1_000_000) ms")
        // b1's link ran through the agent that died: b1 is told at once, not left waiting.
        #expect(far.finish(timeout: 10) == 3, "\(far.output)")
        let farLine = far.output.split(separator: "\n").first { $0.hasPrefix("link ended at") } ?? ""
        #expect(farLine.contains("the local vio-agent exited: the link to instance 'a1' on host 'alpha' went through it"), "\(far.output)")
        let farEndedAt = UInt64(farLine.split(separator: " ")[safe: 3] ?? "") ?? 0
        #expect(farEndedAt > killedAt && farEndedAt - killedAt < 1_000_000_000, "detected after \((farEndedAt &- killedAt) / 1_000_000) ms")
        #expect(try cluster.waitForStatus("alpha", "last error:"))
        try cluster.startAgent("beta")
        #expect(try cluster.waitForStatus("alpha", "1 reconnects"), "\((try? cluster.status("alpha")) ?? "")")
        try cluster.expectRoundTrips(from: "alpha", "a1", to: "beta", "b1")
    }

    /// An instance asleep on a link to another host learns at once that its own agent died
    /// (the link's far end is that agent): receive fails with "the local vio-agent exited".
    @Test func sleepingInstanceLearnsItsAgentDied() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: """
              - { name: a1, host: alpha }
              - { name: b1, host: beta }
            """, links: "  - between: [a1, b1]")
        #expect(try cluster.waitForAllPeersUp("alpha", 1))
        let far = try cluster.probe("beta", ["hold", "--as", "b1", "--wait", "sleep"])
        #expect(far.waitFor("attached"))
        let near = try cluster.probe("alpha", ["hold", "--as", "a1", "--peer", "b1"])
        #expect(near.waitFor("ready") && far.waitFor("ready"))
        usleep(200_000)  // b1 is asleep in poll now
        let killedAt = MonotonicClock.nanoseconds()
        kill(cluster.agents["beta"]!.process.processIdentifier, SIGKILL)
        #expect(far.finish(timeout: 10) == 3, "\(far.output)")
        let line = far.output.split(separator: "\n").first { $0.hasPrefix("link ended at") } ?? ""
        #expect(line.contains("the local vio-agent exited"), "\(far.output)")
        let endedAt = UInt64(line.split(separator: " ")[safe: 3] ?? "") ?? 0
        #expect(endedAt > killedAt && endedAt - killedAt < 1_000_000_000, "detected after \((endedAt &- killedAt) / 1_000_000) ms")
        near.kill()
    }

    /// Agents that poll after activity (`agent_poll_us`) carry links as usual and go back to
    /// sleep when idle: no CPU burnt once the traffic stops.
    @Test func pollingAgentsCarryTrafficAndSleepWhenIdle() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: """
              - { name: a1, host: alpha }
              - { name: b1, host: beta }
            """, links: "  - between: [a1, b1]",
            defaults: "  ring_size: 256KiB\n  heartbeat_interval_ms: 100\n  peer_timeout_ms: 800\n  agent_poll_us: 500\n")
        #expect(try cluster.waitForAllPeersUp("alpha", 1))
        let echo = try cluster.probe("beta", ["echo", "--as", "b1", "--wait", "sleep"])
        #expect(echo.waitFor("attached"))
        let ping = try cluster.probe("alpha", ["ping", "--as", "a1", "--peer", "b1", "--count", "2000", "--warmup", "0", "--wait", "sleep"])
        #expect(ping.finish() == 0, "\(ping.output)")
        #expect(echo.finish() == 0)
        // Gaps longer than the polling window: each message finds agents that stopped
        // polling (links they had left unarmed must be armed again, or this hangs).
        let echo2 = try cluster.probe("beta", ["echo", "--as", "b1", "--wait", "sleep"])
        #expect(echo2.waitFor("attached"))
        let gaps = try cluster.probe("alpha", ["ping", "--as", "a1", "--peer", "b1", "--count", "200", "--warmup", "0", "--wait", "sleep", "--idle-us", "1500"])
        #expect(gaps.finish() == 0, "\(gaps.output)")
        #expect(echo2.finish() == 0)
        // A checksummed stream through polling agents: nothing lost, reordered or corrupted.
        let (streamer, verifier) = try cluster.startVerifiedStream(from: "alpha", "a1", to: "beta", "b1", count: 3000, maxSize: 65536)
        #expect(streamer.finish() == 0, "\(streamer.output)")
        #expect(verifier.finish() == 0, "\(verifier.output)")
        #expect(verifier.output.contains("verified 3000"), "\(verifier.output)")
        func cpuTicks(_ host: String) -> Int {
            let stat = Tools.contents("/proc/\(cluster.agents[host]!.process.processIdentifier)/stat")
            let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
            return fields.count > 13 ? (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0) : -1
        }
        usleep(200_000)
        let before = cpuTicks("alpha") + cpuTicks("beta")
        sleep(2)
        let used = cpuTicks("alpha") + cpuTicks("beta") - before
        // Heartbeats every 100 ms each wake a 500 µs polling window: a few percent at most.
        #expect(before >= 0 && used <= 20, "two idle polling agents used \(used) ticks in 2 s")
    }

    /// A link opened before the far instance attaches waits for it (with a timeout), and
    /// fails with a clear error without one.
    @Test func openWaitsForTheFarInstance() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: """
              - { name: a1, host: alpha }
              - { name: b1, host: beta }
            """, links: "  - between: [a1, b1]")
        #expect(try cluster.waitForStatus("alpha", "channels 2/2"))
        let refused = try cluster.probe("alpha", ["hold", "--as", "a1", "--peer", "b1", "--open-timeout-ms", "0"])
        #expect(refused.finish() == 2)
        #expect(refused.output.contains("instance 'b1' is not attached to the agent on 'beta'"), "\(refused.output)")
        let opener = try cluster.probe("alpha", ["verify", "--as", "a1", "--peer", "b1", "--count", "50"])
        #expect(opener.waitFor("attached"))
        usleep(300_000)
        let streamer = try cluster.probe("beta", ["stream", "--as", "b1", "--count", "50"])
        #expect(opener.finish() == 0, "\(opener.output)")
        #expect(opener.output.contains("verified 50"))
        #expect(streamer.finish() == 0)
    }
}

extension Array {
    /// The element at `index`, or nil past the end.
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
