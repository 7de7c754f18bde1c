import Foundation
import Testing
import VIO
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

    /// SIGHUP reloads the topology file (ReloadTests covers what a reload changes) and reports;
    /// a file with errors changes nothing; the agent (and its links) go on.
    @Test func hangupRereadsTheTopologyAndKeepsServing() throws {
        let f = try FabricFixture(instances: "  - { name: db1, host: local }\n  - { name: db2, host: local }",
                                  links: "  - { between: [db1, db2] }")
        let (agent, file) = (f.agent, f.topology)
        let text = try String(contentsOfFile: file, encoding: .utf8)
        let db1 = try VIOClient.attach(as: "db1", socketPath: f.socket)
        let db2 = try VIOClient.attach(as: "db2", socketPath: f.socket)
        let link = try db1.openLink(to: "db2")
        let peer = try db2.acceptLink(timeout: .seconds(5))
        func hangUpAndWait(for text: String) -> Bool {
            kill(agent.process.processIdentifier, SIGHUP)
            return Tools.waitUntil(timeout: 10) { Tools.contents(agent.logFile).contains(text) }
        }
        #expect(hangUpAndWait(for: "changes=none [VIOAgent] SIGHUP: topology reloaded"), "\(Tools.contents(agent.logFile))")
        let changed = (text + "\n  - { between: [db1, db1b] }\n").replacingOccurrences(of: "  - { name: db2, host: local }\n",
            with: "  - { name: db2, host: local }\n  - { name: db1b, host: local }\n")
        #expect(changed.contains("db1b, host"), "\(changed)")
        try changed.write(toFile: file, atomically: true, encoding: .utf8)
        #expect(hangUpAndWait(for: "instances added (1): db1b"), "\(Tools.contents(agent.logFile))")
        try "cluster: test\nversion: 1\nhosts: [\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(hangUpAndWait(for: "has errors; the agent keeps the topology it runs"), "\(Tools.contents(agent.logFile))")
        #expect(Tools.contents(agent.logFile).contains("topology.yaml:"), "errors name their position")
        // Still serving, the link still carrying.
        try link.send([7])
        #expect(try peer.receive(timeout: .seconds(5)) == [7])
        let (code, log) = agent.stop()
        // It stopped once: on SIGTERM, never on the SIGHUPs.
        #expect(code == 0 && log.components(separatedBy: "stopping on signal").count == 2 && log.contains("stopping on signal 15"))
    }

    /// An agent out of descriptors sheds connections instead of waking for them for ever: while
    /// a client holds more control connections than the agent may open, it stays idle, warns,
    /// and serves again once they are gone.
    @Test func outOfDescriptorsShedsConnectionsWithoutSpinning() throws {
        let dir = Tools.scratchDirectory()
        let socket = dir + "/agent.sock"
        let (p, _, log) = Tools.process("/usr/bin/prlimit", ["--nofile=40", Tools.binDirectory + "/vio-agent", "--control-socket", socket])
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        #expect(Tools.waitUntil(timeout: 20) { (try? UnixSocket.connect(path: socket)) != nil })
        // Raw descriptors: the connections are only held, never used.
        var held: [Int32] = []
        for _ in 0..<60 {
            let fd = Glibc.socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(socket.utf8)) }
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if rc == 0 { held.append(fd) } else { close(fd) }
        }
        usleep(300_000)
        func cpuTicks() -> Int {
            let stat = (try? String(contentsOfFile: "/proc/\(p.processIdentifier)/stat", encoding: .utf8)) ?? ""
            let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
            return fields.count > 13 ? (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0) : 0
        }
        let before = cpuTicks()
        sleep(1)
        #expect(cpuTicks() - before < 20, "the agent spun on a listener it could not accept from")
        #expect(Tools.contents(log).contains("out of descriptors"), "\(Tools.contents(log))")
        for fd in held { close(fd) }
        usleep(300_000)
        let status = try Tools.run("vioctl", ["status", "--socket", socket])
        #expect(status.status == 0, "\(status.stderr)")
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
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
