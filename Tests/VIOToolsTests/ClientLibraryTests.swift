import Foundation
import Testing
import VIO
import VIOLinux

/// libvio used in-process against a real agent.
@Suite(.serialized)
struct ClientLibraryTests {
    @Test func linksOutliveTheAgentAndInstancesReattach() throws {
        let f = try FabricFixture.standard()
        let db1 = try VIOClient.attach(as: "db1", socketPath: f.socket)
        let db2 = try VIOClient.attach(as: "db2", socketPath: f.socket)
        #expect(db1.peers.map(\.name) == ["db2", "secure", "other-user"])
        let a = try db1.openLink(to: "db2")
        let b = try db2.acceptLink(timeout: .seconds(5))
        try a.send(Array("before".utf8))
        #expect(try b.receive(timeout: .seconds(5)) == Array("before".utf8))

        _ = f.agent.stop(signal: SIGKILL)
        // Shared memory does not need the agent.
        try b.send(Array("after".utf8))
        #expect(try a.receive(timeout: .seconds(5)) == Array("after".utf8))
        #expect(throws: VIOError.self) { try db1.openLink(to: "secure") }

        // The same clients attach again by themselves once an agent serves the socket: no
        // code of the instance's runs for it, and its control descriptor stays the same.
        let descriptor = db1.controlDescriptor
        let restarted = try RunningAgent(arguments: ["--topology", f.topology], socket: f.socket)
        #expect(try Tools.waitUntil(timeout: 10) {
            let status = try Tools.run("vioctl", ["status", "--socket", restarted.socket]).stdout
            return status.split(separator: "\n").filter { $0.contains("attached") && ($0.contains("db1") || $0.contains("db2")) }.count == 2
        }, "\((try? Tools.run("vioctl", ["status", "--socket", restarted.socket]).stdout) ?? "")")
        #expect(db1.reattachments == 1 && db2.reattachments == 1)
        #expect(db1.controlDescriptor == descriptor)
        let c = try db2.openLink(to: "db1")
        let d = try db1.acceptLink(timeout: .seconds(5))
        try c.send([42])
        #expect(try d.receive(timeout: .seconds(5)) == [42])
        // The old link still works too.
        try a.send([1])
        #expect(try b.receive(timeout: .seconds(5)) == [1])
        // Closing it is not announced to the new agent, whose link ids start again (the new
        // link may have the old one's id): the new link carries on.
        b.close()
        try c.send([43])
        #expect(try d.receive(timeout: .seconds(5)) == [43])
        #expect(try Tools.run("vioctl", ["status", "--socket", restarted.socket]).stdout.contains("open"))
    }

    /// An instance whose agent stays away keeps trying (with backoff) and attaches when one
    /// comes; one that detached does not.
    @Test func reattachWaitsForTheAgentAndStopsAfterDetach() throws {
        let f = try FabricFixture.standard()
        let db1 = try VIOClient.attach(as: "db1", socketPath: f.socket)
        let db3 = try VIOClient.attach(as: "db3", socketPath: f.socket)
        db3.detach()
        _ = f.agent.stop(signal: SIGKILL)
        unlink(f.socket)
        // Away for a while: several attempts fail (no socket), none of them spins.
        usleep(1_500_000)
        let restarted = try RunningAgent(arguments: ["--topology", f.topology], socket: f.socket)
        #expect(try Tools.waitUntil(timeout: 10) { db1.reattachments == 1 })
        let status = try Tools.run("vioctl", ["status", "--socket", restarted.socket]).stdout
        let lines = status.split(separator: "\n")
        #expect(lines.contains { $0.contains("db1") && $0.contains("attached") && !$0.contains("not attached") }, "\(status)")
        #expect(db3.reattachments == 0)
    }

    /// A link outlives the agent that made it; when its peer then dies, the survivor learns it
    /// from the kernel (the peer's pidfd), not from an agent that no longer knows the link:
    /// a waiting receive ends with "peer gone" at once, and sends fail.
    @Test(arguments: [false, true])
    func peerDeathIsSeenAfterTheAgentDied(restartAgent: Bool) throws {
        let f = try FabricFixture.standard()
        let db1 = try VIOClient.attach(as: "db1", socketPath: f.socket)
        let peer = try f.probe(["hold", "--as", "db2", "--wait", "sleep"])
        #expect(peer.waitFor("attached"))
        let a = try db1.openLink(to: "db2")
        #expect(peer.waitFor("ready"))
        try a.send([1])
        _ = f.agent.stop(signal: SIGKILL)
        let restarted = restartAgent ? try RunningAgent(arguments: ["--topology", f.topology], socket: f.socket) : nil
        peer.kill()
        let waitStarted = MonotonicClock.nanoseconds()
        #expect(throws: LinkError.peerGone(peer: "db2")) { try a.receive(timeout: .seconds(20)) }
        let waited = (MonotonicClock.nanoseconds() - waitStarted) / 1_000_000
        #expect(waited < 5_000, "the receive waited \(waited) ms for a dead peer")
        #expect(throws: LinkError.peerGone(peer: "db2")) { try a.send([2]) }
        _ = restarted
    }

    /// Counters live in the ring's control page, which either end can write: the largest
    /// values print (vioctl multiplied them by 10 for the tenth of a unit and trapped).
    @Test func scribbledCountersStillPrint() throws {
        let f = try FabricFixture.standard()
        let db1 = try VIOClient.attach(as: "db1", socketPath: f.socket)
        let db2 = try VIOClient.attach(as: "db2", socketPath: f.socket)
        let a = try db1.openLink(to: "db2")
        let b = try db2.acceptLink(timeout: .seconds(5))  // kept: a released link closes
        for ring in 0..<2 {
            for offset in stride(from: 0, to: 64, by: 8) {
                a.region.ringBase(ring).storeBytes(of: UInt64.max, toByteOffset: RegionLayout.Ring.producerCounters + offset, as: UInt64.self)
            }
        }
        let status = try Tools.run("vioctl", ["status", "--socket", f.socket])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("17179869183.9 GiB"), "\(status.stdout)")
        _ = b
    }

    @Test func openingFromBothSidesGivesOneLink() throws {
        let f = try FabricFixture.standard()
        let db1 = try VIOClient.attach(as: "db1", socketPath: f.socket)
        let db2 = try VIOClient.attach(as: "db2", socketPath: f.socket)
        let a = try db1.openLink(to: "db2")
        let b = try db2.openLink(to: "db1")  // already pushed to db2: the same link
        #expect(a.region.linkID == b.region.linkID)
        try b.send([9])
        #expect(try a.receive(timeout: .seconds(5)) == [9])
        #expect(throws: VIOError.self) { try db1.openLink(to: "db2") }
    }

    @Test func closeIsSeenByThePeerAndTheLinkCanBeReopened() throws {
        let f = try FabricFixture.standard()
        let db1 = try VIOClient.attach(as: "db1", socketPath: f.socket)
        let db2 = try VIOClient.attach(as: "db2", socketPath: f.socket)
        let a = try db1.openLink(to: "db2")
        let b = try db2.acceptLink(timeout: .seconds(5))
        try a.send([1])
        a.close()
        #expect(try b.receive(timeout: .seconds(5)) == [1])
        #expect(throws: LinkError.peerClosed(peer: "db1")) { try b.receive(timeout: .seconds(5)) }
        #expect(try f.waitForStatus("db1 <-> db2              local      declared"))
        let again = try db1.openLink(to: "db2")
        let accepted = try db2.acceptLink(timeout: .seconds(5))
        try accepted.send([2])
        #expect(try again.receive(timeout: .seconds(5)) == [2])
    }

    @Test func pollerWaitsOnManyLinks() throws {
        let f = try FabricFixture.standard()
        let db1 = try VIOClient.attach(as: "db1", socketPath: f.socket)
        let db2 = try VIOClient.attach(as: "db2", socketPath: f.socket)
        let secure = try VIOClient.attach(as: "secure", socketPath: f.socket, tokenFile: f.directory + "/secure.token")
        let toDB2 = try db1.openLink(to: "db2"), toSecure = try db1.openLink(to: "secure")
        let fromDB1 = try db2.acceptLink(timeout: .seconds(5)), secureEnd = try secure.acceptLink(timeout: .seconds(5))
        let poller = try LinkPoller(links: [toDB2, toSecure])
        #expect(try poller.wait(timeout: .milliseconds(20)) == [])
        for link in [toDB2, toSecure] { link.waitPolicy = .sleep }
        let sender = Thread {
            usleep(50_000)
            try? secureEnd.send([5])
        }
        sender.start()
        #expect(try poller.wait(timeout: .seconds(5)) == [1])
        #expect(try toSecure.receive(timeout: .zero) == [5])
        try fromDB1.send([6])
        #expect(try poller.wait(timeout: .seconds(5)) == [0])
        #expect(try toDB2.receive(timeout: .zero) == [6])
        fromDB1.close()
        #expect(try poller.wait(timeout: .seconds(5)) == [0], "a state change is readable too")
    }

    @Test func idleLinksCostTheAgentNoCPU() throws {
        // 21 instances linked all-to-all: 210 links, opened and then left idle.
        let names = (1...21).map { "i\($0)" }
        let f = try FabricFixture(
            instances: names.map { "  - { name: \($0), host: local }" }.joined(separator: "\n"),
            links: "  - { group: [\(names.joined(separator: ", "))], ring_size: 4KiB }")
        let clients = try names.map { try VIOClient.attach(as: $0, socketPath: f.socket) }
        var links: [Link] = []
        for i in 0..<names.count {
            for j in (i + 1)..<names.count {
                links.append(try clients[i].openLink(to: names[j]))
                links.append(try clients[j].acceptLink(timeout: .seconds(5)))
            }
        }
        #expect(links.count == 420)
        let open = try f.status().split(separator: "\n").filter { $0.hasSuffix(" open") }.count
        #expect(open == 210, "\(Tools.contents(f.agent.logFile).suffix(2000))")
        #expect(f.agentLinkMappings == 210)
        usleep(200_000)
        let before = f.agentCPUTicks
        usleep(2_000_000)
        let after = f.agentCPUTicks
        #expect(after - before <= 1, "the agent sleeps in epoll_wait: \(after - before) ticks in 2 s")
    }
}
