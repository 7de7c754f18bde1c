import Foundation
import Testing
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// The agent as a service: the service manager hears when it is ready and when it stops, and
/// far agents hear why it went.
@Suite(.serialized) struct ServiceTests {
    /// A datagram socket at `path`, as systemd's $NOTIFY_SOCKET; reads time out after 10 s.
    static func notifySocket(at path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    static func nextMessage(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buffer, buffer.count, 0)
        return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : ""
    }

    @Test func tellsTheServiceManagerWhenReadyAndWhenStopping() throws {
        let dir = Tools.scratchDirectory()
        let fd = Self.notifySocket(at: dir + "/notify")
        defer { close(fd) }
        let agent = try RunningAgent(environment: ["NOTIFY_SOCKET": dir + "/notify"], socket: dir + "/agent.sock")
        let ready = Self.nextMessage(fd)
        #expect(ready.contains("READY=1") && ready.contains("MAINPID=\(agent.process.processIdentifier)"), "\(ready)")
        let (code, _) = agent.stop()
        #expect(code == 0)
        #expect(Self.nextMessage(fd).contains("STOPPING=1"))
    }

    /// SIGTERM on one agent: the other's links to it go down at once, with the reason.
    @Test func aStoppingAgentTellsItsPeersWhy() throws {
        let cluster = try LoopbackCluster(hosts: ["alpha", "beta"], instances: """
              - { name: a1, host: alpha }
              - { name: b1, host: beta }
            """, links: "  - { between: [a1, b1] }")
        #expect(try cluster.waitForAllPeersUp("alpha", 1))
        let far = try cluster.probe("beta", ["hold", "--as", "b1"])
        #expect(far.waitFor("attached"))
        let near = try cluster.probe("alpha", ["hold", "--as", "a1", "--peer", "b1"])
        #expect(near.waitFor("ready"))
        let (code, _) = cluster.agents["beta"]!.stop()
        #expect(code == 0)
        #expect(near.finish(timeout: 10) == 3, "\(near.output)")
        #expect(near.output.contains("peer host down"), "\(near.output)")
        #expect(cluster.log("alpha").contains("the agent of 'beta' is stopping (signal 15)"), "\(cluster.log("alpha"))")
        _ = far.finish(timeout: 10)
    }
}
