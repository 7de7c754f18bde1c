import Foundation
import Testing
import VIO
import VIOLinux
import VIOWire

/// Refusals: every one names its reason, and none disturbs the agent.
@Suite(.serialized)
struct AdmissionTests {
    @Test func unknownInstance() throws {
        let f = try FabricFixture.standard()
        let r = try f.runProbe(["hold", "--as", "nope", "--peer", "db1"])
        #expect(r.status == 2)
        #expect(r.stdout.contains("no instance 'nope' on host 'local'; this host's instances: db1, db2, db3, secure, other-user"))
    }

    @Test func secondAttachOfTheSameInstance() throws {
        let f = try FabricFixture.standard()
        let first = try f.probe(["hold", "--as", "db2"])
        #expect(first.waitFor("attached"))
        let r = try f.runProbe(["hold", "--as", "db2"])
        #expect(r.status == 2)
        #expect(r.stdout.contains("instance 'db2' is already attached by pid \(first.pid)"))
    }

    @Test func undeclaredLink() throws {
        let f = try FabricFixture.standard()
        let r = try f.runProbe(["hold", "--as", "db1", "--peer", "db3"])
        #expect(r.status == 2)
        #expect(r.stdout.contains("no link between 'db1' and 'db3' is declared in \(f.topology); 'db1' may link to: db2, secure, other-user"))
    }

    @Test func peerNotAttachedWithoutWaiting() throws {
        let f = try FabricFixture.standard()
        let r = try f.runProbe(["hold", "--as", "db1", "--peer", "db2", "--open-timeout-ms", "0"])
        #expect(r.status == 2)
        #expect(r.stdout.contains("instance 'db2' is not attached to this agent"))
    }

    @Test func tokens() throws {
        let f = try FabricFixture.standard()
        let missing = try f.runProbe(["hold", "--as", "secure", "--peer", "db1"])
        #expect(missing.stdout.contains("wrong token for instance 'secure'"))
        let wrong = try f.runProbe(["hold", "--as", "secure", "--peer", "db1", "--token-file", f.directory + "/wrong.token"])
        #expect(wrong.status == 2)
        #expect(wrong.stdout.contains("wrong token for instance 'secure'"))
        let right = try f.probe(["hold", "--as", "secure", "--token-file", f.directory + "/secure.token"])
        #expect(right.waitFor("attached as secure"))
    }

    @Test func wrongUID() throws {
        let f = try FabricFixture.standard()
        // The topology allows only uid 65534 as 'other-user'; we are not it.
        let r = try f.runProbe(["hold", "--as", "other-user", "--peer", "db1"])
        #expect(r.status == 2)
        #expect(r.stdout.contains("uid \(getuid()) may not attach as 'other-user'; the topology allows uid 65534"))
    }

    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
                   "skipped: needs root and setpriv to run a process as another uid"))
    func anotherUserCannotTakeTheAgentsInstances() throws {
        let f = try FabricFixture.standard()
        let r = try Tools.runAs(uid: 65534, "vio-probe", ["hold", "--as", "db1", "--peer", "db2", "--socket", f.socket])
        #expect(r.stdout.contains("uid 65534 may not attach as 'db1'; the topology allows uid 0 (the agent's own)"), "\(r.stdout) \(r.stderr)")
    }

    /// The control socket itself admits only the topology's uids (mode 0600 plus one ACL
    /// entry per instance uid): any other user cannot even connect.
    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
                   "skipped: needs root and setpriv to run a process as another uid"))
    func controlSocketAdmitsOnlyTheTopologysUIDs() throws {
        let f = try FabricFixture.standard()
        var info = stat()
        #expect(stat(f.socket, &info) == 0)
        #expect(info.st_mode & 0o077 == 0o060 || info.st_mode & 0o077 == 0, "mode \(String(info.st_mode & 0o777, radix: 8))")
        #expect(info.st_mode & 0o007 == 0, "others may connect: mode \(String(info.st_mode & 0o777, radix: 8))")
        let stranger = try Tools.runAs(uid: 4321, "vioctl", ["status", "--socket", f.socket])
        #expect(stranger.status != 0)
        #expect(stranger.stderr.contains("permission denied: the agent admits only the uids its topology gives this host's instances (uid 4321 is not one)"),
                "\(stranger.stderr)")
        let declared = try Tools.runAs(uid: 65534, "vioctl", ["status", "--socket", f.socket])
        #expect(declared.status == 0, "\(declared.stderr)")
    }

    @Test func malformedControlMessagesAreRefusedAndTheAgentKeepsServing() throws {
        let f = try FabricFixture.standard()
        func exchange(_ packets: [[UInt8]]) throws -> ControlMessage? {
            let socket = try UnixSocket.connect(path: f.socket)
            for p in packets { try socket.send(p) }
            var last: ControlMessage?
            while let r = try socket.receive(), !r.closed { last = try? ControlMessage.decode(r.bytes) }
            return last
        }
        let hello = ControlMessage.hello(Hello(role: .instance, software: "test")).encoded()
        let cases: [([[UInt8]], String)] = [
            ([[1, 2, 3]], "malformed control message"),
            ([Array("GET / HTTP/1.1\r\n\r\n".utf8)], "not a VIO control message"),
            ([ControlMessage.attach(Attach(instance: "db1", token: [], numaNode: 0)).encoded()], "the first message must be HELLO"),
            ([hello, Array(hello.prefix(9))], "malformed control message"),
            ([hello, [UInt8](repeating: 7, count: 70_000)], "larger than"),
            ([hello, ControlMessage.openLink(OpenLink(requestID: 1, peer: "db2", timeoutMilliseconds: 0)).encoded()], "not valid before ATTACH"),
        ]
        for (packets, expected) in cases {
            let reply = try exchange(packets)
            guard case .error(let e) = reply else {
                Issue.record("expected an ERROR for \(expected), got \(String(describing: reply))")
                continue
            }
            #expect(e.message.contains(expected), "\(e.message)")
        }
        let status = try Tools.run("vioctl", ["status", "--socket", f.socket])
        #expect(status.status == 0)
        #expect(status.stdout.contains("instances: 5 declared, 0 attached"))
    }
}
