import Foundation
import Testing
import VIOLinux

/// The intra-host fabric with real processes: an agent and `vio-probe` instances.
@Suite(.serialized)
struct FabricProcessTests {
    @Test func checkedStreamWithFragmentsAcrossProcesses() throws {
        let f = try FabricFixture.standard()
        let verifier = try f.probe(["verify", "--as", "db2", "--count", "150"])
        #expect(verifier.waitFor("attached as db2"))
        // Up to 3 MiB: many times the 1 MiB ring, so messages are fragmented and reassembled.
        let streamer = try f.probe(["stream", "--as", "db1", "--peer", "db2", "--count", "150", "--max-size", "3145728"])
        #expect(verifier.finish() == 0, "verifier: \(verifier.output)")
        #expect(verifier.output.contains("verified 150"))
        #expect(streamer.finish() == 0, "streamer: \(streamer.output)")
    }

    @Test func smallRingStreamAndCountersInStatus() throws {
        let f = try FabricFixture.standard()
        let verifier = try f.probe(["verify", "--as", "db3", "--count", "3000", "--linger-ms", "3000"])
        #expect(verifier.waitFor("attached as db3"))
        let streamer = try f.probe(["stream", "--as", "db2", "--peer", "db3", "--count", "3000", "--max-size", "20000"])
        #expect(verifier.waitFor("verified 3000"), "verifier: \(verifier.output)")
        let status = try f.status()
        #expect(status.contains("db2 <-> db3"))
        #expect(status.contains("rings 4 KiB to db3 / 4 KiB to db2"))
        let line = status.split(separator: "\n").first { $0.contains("db2 -> db3:") } ?? ""
        #expect(line.contains(" 3000 msgs, "), "\(status)")
        #expect(line.hasSuffix(" 0 errors"))
        #expect(verifier.finish() == 0)
        #expect(streamer.finish() == 0)
    }

    @Test func closeThenReopen() throws {
        let f = try FabricFixture.standard()
        for round in 0..<2 {
            let echo = try f.probe(["echo", "--as", "db2"])
            #expect(echo.waitFor("attached"))
            let ping = try f.runProbe(["ping", "--as", "db1", "--peer", "db2", "--count", "200", "--warmup", "10"])
            #expect(ping.status == 0, "round \(round): \(ping.stdout)")
            #expect(ping.stdout.contains("rtt_us p50="))
            #expect(echo.finish() == 0)
            #expect(echo.output.contains("echoed 210"))
        }
    }

    @Test(arguments: ["opener", "acceptor"])
    func killNineIsSeenAsPeerGone(victim: String) throws {
        let f = try FabricFixture.standard()
        let acceptor = try f.probe(["hold", "--as", "db2"])
        #expect(acceptor.waitFor("attached"))
        let opener = try f.probe(["hold", "--as", "db1", "--peer", "db2"])
        #expect(opener.waitFor("ready"))
        #expect(acceptor.waitFor("ready"))
        let (dead, survivor, deadName) = victim == "opener" ? (opener, acceptor, "db1") : (acceptor, opener, "db2")
        let killedAt = MonotonicClock.nanoseconds()
        dead.kill(SIGKILL)
        #expect(survivor.finish(timeout: 10) == 3)
        let line = survivor.output.split(separator: "\n").first { $0.hasPrefix("link ended at") } ?? ""
        #expect(line.contains("peer gone: instance '\(deadName)'"), "\(survivor.output)")
        let endedAt = UInt64(line.split(separator: " ")[3]) ?? .max
        let latencyMs = Double(endedAt &- killedAt) / 1e6
        // Liveness bound only (the agent reacts to the pidfd at once; ~1 ms here).
        #expect(endedAt >= killedAt && latencyMs < 1000, "detected after \(latencyMs) ms")
    }

    @Test func agentResourcesReturnToBaselineAfterKills() throws {
        let f = try FabricFixture.standard()
        usleep(100_000)
        let baseline = f.agentDescriptors
        #expect(baseline > 0)
        for _ in 0..<3 {
            let a = try f.probe(["hold", "--as", "db2"])
            #expect(a.waitFor("attached"))
            let b = try f.probe(["hold", "--as", "db1", "--peer", "db2"])
            #expect(b.waitFor("ready") && a.waitFor("ready"))
            #expect(f.agentLinkMappings == 1)
            a.kill(SIGKILL)
            b.kill(SIGKILL)
            _ = a.finish(); _ = b.finish()
            #expect(try f.waitForStatus("instances: 5 declared, 0 attached"))
        }
        #expect(f.agentDescriptors == baseline)
        #expect(f.agentLinkMappings == 0)
    }

    @Test func idleInstancesSleep() throws {
        let f = try FabricFixture.standard()
        let a = try f.probe(["hold", "--as", "db2"])
        #expect(a.waitFor("attached"))
        let b = try f.probe(["hold", "--as", "db1", "--peer", "db2"])
        #expect(b.waitFor("ready") && a.waitFor("ready"))
        usleep(200_000)  // past the 50 µs spin: both ends now sleep in poll(2)
        let before = (Tools.cpuTicks(pid: a.pid), Tools.cpuTicks(pid: b.pid))
        usleep(2_000_000)
        let after = (Tools.cpuTicks(pid: a.pid), Tools.cpuTicks(pid: b.pid))
        #expect(after.0 - before.0 <= 1 && after.1 - before.1 <= 1, "idle instances used \(after.0 - before.0) and \(after.1 - before.1) ticks in 2 s")
    }

    @Test func openWaitsForAPeerThatAttachesLater() throws {
        let f = try FabricFixture.standard()
        let opener = try f.probe(["hold", "--as", "db1", "--peer", "db2", "--open-timeout-ms", "20000"])
        #expect(opener.waitFor("attached"))
        usleep(300_000)
        #expect(!opener.output.contains("ready"))
        let late = try f.probe(["hold", "--as", "db2"])
        #expect(late.waitFor("ready"))
        #expect(opener.waitFor("ready"))
        #expect(try f.status().contains("db1 <-> db2              local      open"))
    }

    @Test func scribblerMakesOnlyThatLinkFail() throws {
        let f = try FabricFixture.standard()
        let victim = try f.probe(["hold", "--as", "db2"])
        #expect(victim.waitFor("attached"))
        let scribbler = try f.probe(["scribble", "--as", "db1", "--peer", "db2"])
        #expect(victim.finish(timeout: 20) == 3)
        #expect(victim.output.contains("corrupt ring: producer tail"), "\(victim.output)")
        scribbler.kill()
        // The agent is unharmed and serves everyone else.
        let verifier = try f.probe(["verify", "--as", "db3", "--count", "10"])
        #expect(verifier.waitFor("attached"))
        let streamer = try f.runProbe(["stream", "--as", "db2", "--peer", "db3", "--count", "10"])
        #expect(streamer.status == 0)
        #expect(verifier.finish() == 0)
    }
}
