import Foundation
import Testing
import VIO
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// An instance that stops reading (SIGSTOP) is reported to its peers as not responding once
/// it has left data unread for `not_responding_ms`, distinct from one that died, and recovers
/// when it reads again: on one host, and across hosts.
@Suite(.serialized) struct HangTests {
    /// Sends 1 KiB messages on `link` until a send fails; returns the error.
    static func sendUntilRefused(_ link: Link, within seconds: Int = 20) -> LinkError? {
        let message = [UInt8](repeating: 7, count: 1024)
        let deadline = Date().addingTimeInterval(TimeInterval(seconds))
        while Date() < deadline {
            do { try link.send(message, timeout: .seconds(seconds)) } catch { return error }
        }
        return nil
    }

    @Test func stoppedLocalReaderIsNotRespondingThenRecovers() throws {
        let f = try FabricFixture(instances: """
              - { name: db1, host: local }
              - { name: db2, host: local }
            """, links: """
              - { between: [db1, db2], ring_size: 16KiB }
            """, defaults: "  not_responding_ms: 300\n")
        let reader = try f.probe(["sink", "--as", "db2", "--count", "100000000", "--wait", "sleep"])
        #expect(reader.waitFor("attached"))
        let db1 = try VIOClient.attach(as: "db1", socketPath: f.socket)
        let link = try db1.openLink(to: "db2", timeout: .seconds(5))
        try link.send([1])
        kill(reader.pid, SIGSTOP)
        let started = Date()
        #expect(Self.sendUntilRefused(link) == .peerNotResponding(peer: "db2"))
        #expect(Date().timeIntervalSince(started) < 10)
        #expect(try f.status().contains("db2 not responding"), "\((try? f.status()) ?? "")")
        // The link is open: the reader resumes, the flag clears, sends go through again.
        kill(reader.pid, SIGCONT)
        #expect(Tools.waitUntil(timeout: 10) { (try? link.send([2], timeout: .seconds(1))) != nil })
        #expect(try Tools.waitUntil(timeout: 10) { try !f.status().contains("not responding") })
        reader.kill()
    }

    @Test func stoppedReaderOnAnotherHostIsNotResponding() throws {
        let cluster = try LoopbackCluster(hosts: ["a", "b"], instances: "  - { name: a1, host: a }\n  - { name: b1, host: b }",
                                          links: "  - { between: [a1, b1], ring_size: 16KiB }",
                                          defaults: "  heartbeat_interval_ms: 100\n  peer_timeout_ms: 800\n  not_responding_ms: 300\n")
        _ = try cluster.waitForAllPeersUp("a", 1)
        let reader = try cluster.probe("b", ["sink", "--as", "b1", "--count", "100000000", "--wait", "sleep"])
        #expect(reader.waitFor("attached"))
        let a1 = try VIOClient.attach(as: "a1", socketPath: cluster.socket("a"))
        let link = try a1.openLink(to: "b1", timeout: .seconds(5))
        try link.send([1])
        kill(reader.pid, SIGSTOP)
        #expect(Self.sendUntilRefused(link) == .peerNotResponding(peer: "b1"))
        #expect(try cluster.status("a").contains("b1 not responding"), "\((try? cluster.status("a")) ?? "")")
        #expect(try cluster.status("b").contains("b1 not responding"), "\((try? cluster.status("b")) ?? "")")
        kill(reader.pid, SIGCONT)
        #expect(Tools.waitUntil(timeout: 10) { (try? link.send([2], timeout: .seconds(1))) != nil })
        #expect(try Tools.waitUntil(timeout: 10) { try !cluster.status("a").contains("not responding") })
        reader.kill()
    }
}
