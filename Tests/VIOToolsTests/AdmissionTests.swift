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
        func exchange(_ packets: [[UInt8]], descriptors: Int = 0) throws -> ControlMessage? {
            let socket = try UnixSocket.connect(path: f.socket)
            for p in packets.dropLast() { try socket.send(p) }
            if let p = packets.last { #expect(Self.send(p, descriptors: descriptors, on: socket.fd.rawValue) == p.count) }
            var last: ControlMessage?
            while let r = try socket.receive(), !r.closed { last = try? ControlMessage.decode(r.bytes) }
            return last
        }
        let hello = ControlMessage.hello(Hello(role: .instance, software: "test")).encoded()
        var futureHello = hello
        futureHello[4] = 9  // the protocol version field
        let cases: [([[UInt8]], Int, ControlError.Code, String)] = [
            ([[1, 2, 3]], 0, .malformed, "malformed control message"),
            ([Array("GET / HTTP/1.1\r\n\r\n".utf8)], 0, .malformed, "not a VIO control message"),
            ([ControlMessage.attach(Attach(instance: "db1", token: [], numaNode: 0)).encoded()], 0, .unexpected, "the first message must be HELLO"),
            ([hello, Array(hello.prefix(9))], 0, .malformed, "malformed control message"),
            ([hello, [UInt8](repeating: 7, count: 70_000)], 0, .malformed, "larger than 65536 bytes"),
            ([hello, ControlMessage.openLink(OpenLink(requestID: 1, peer: "db2", timeoutMilliseconds: 0)).encoded()], 0, .unexpected, "not valid before ATTACH"),
            ([futureHello], 0, .unsupportedVersion, "the client speaks control protocol version 9; this agent speaks 1"),
            // Descriptors are refused for what they are, not as an oversized message: as many as
            // the agent takes, and more (the kernel cuts the control data and closes the rest).
            ([[UInt8](repeating: 0, count: 20)], 4, .malformed, "a control message of 20 bytes carried 4 file descriptors"),
            ([[UInt8](repeating: 0, count: 20)], 32, .malformed, "a control message of 20 bytes carried more than 16 file descriptors"),
        ]
        for (packets, descriptors, code, expected) in cases {
            let reply = try exchange(packets, descriptors: descriptors)
            guard case .error(let e) = reply else {
                Issue.record("expected an ERROR for \(expected), got \(String(describing: reply))")
                continue
            }
            #expect(e.message.contains(expected), "\(e.message)")
            #expect(e.code == code, "\(e.message)")
        }
        let status = try Tools.run("vioctl", ["status", "--socket", f.socket])
        #expect(status.status == 0)
        #expect(status.stdout.contains("instances: 5 declared, 0 attached"))
    }

    /// An instance that attaches claiming a NUMA node the host does not have (40000) and opens
    /// a link: the agent takes it as no preference, and `vioctl status` still answers (it
    /// trapped converting the node for the status before).
    @Test func impossibleNUMANodeIsNoPreference() throws {
        let f = try FabricFixture.standard()
        func attached(_ instance: String, node: UInt16) throws -> UnixSocket {
            let socket = try UnixSocket.connect(path: f.socket)
            try socket.send(ControlMessage.hello(Hello(role: .instance, software: "test")).encoded())
            _ = try socket.receive()
            try socket.send(ControlMessage.attach(Attach(instance: instance, token: [], numaNode: node)).encoded())
            let reply = try #require(try socket.receive())
            guard case .attached = try ControlMessage.decode(reply.bytes) else { throw Failure("\(instance) was not attached") }
            return socket
        }
        let db1 = try attached("db1", node: 40000)
        let db2 = try attached("db2", node: 0)
        try db1.send(ControlMessage.openLink(OpenLink(requestID: 1, peer: "db2", timeoutMilliseconds: 0)).encoded())
        let ready = try #require(try db1.receive())
        for fd in ready.descriptors { close(fd) }
        guard case .linkReady = try ControlMessage.decode(ready.bytes) else { throw Failure("no LINK_READY") }
        let status = try Tools.run("vioctl", ["status", "--socket", f.socket])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("db1 <-> db2"), "\(status.stdout)")
        _ = db2
    }

    /// Two opens of the same link that wait for the peer (a client that does not wait for the
    /// first reply): when the peer attaches, both are answered with the one link, and the link
    /// can still be closed (the second used to replace the first, which then leaked).
    @Test func twoWaitingOpensGetOneLink() throws {
        let f = try FabricFixture.standard()
        let db1 = try UnixSocket.connect(path: f.socket)
        try db1.send(ControlMessage.hello(Hello(role: .instance, software: "test")).encoded())
        _ = try db1.receive()
        try db1.send(ControlMessage.attach(Attach(instance: "db1", token: [], numaNode: 0)).encoded())
        _ = try db1.receive()
        for id: UInt32 in [1, 2] {
            try db1.send(ControlMessage.openLink(OpenLink(requestID: id, peer: "db2", timeoutMilliseconds: 10_000)).encoded())
        }
        usleep(100_000)
        let db2 = try VIOClient.attach(as: "db2", socketPath: f.socket)
        var linkIDs: [UInt64] = []
        for _ in 0..<2 {
            let reply = try #require(try db1.receive())
            for fd in reply.descriptors { close(fd) }
            guard case .linkReady(let ready) = try ControlMessage.decode(reply.bytes) else { throw Failure("no LINK_READY") }
            linkIDs.append(ready.linkID)
        }
        #expect(linkIDs.count == 2 && linkIDs[0] == linkIDs[1], "\(linkIDs)")
        let link = try db2.acceptLink(timeout: .seconds(5))
        #expect(link.region.linkID == linkIDs[0])
        // db1 closes it: db2 sees the close (the agent's table held this link, not a lost twin).
        try db1.send(ControlMessage.closeLink(CloseLink(linkID: linkIDs[0])).encoded())
        #expect(throws: LinkError.self) { _ = try link.receive(timeout: .seconds(5)) }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// sendmsg of `bytes` with `descriptors` copies of stdin's descriptor as SCM_RIGHTS (any
    /// count: UnixSocket.send stops at the 16 the agent's protocol uses).
    static func send(_ bytes: [UInt8], descriptors: Int, on socket: Int32) -> Int {
        let header = MemoryLayout<cmsghdr>.size
        var control = [UInt8](repeating: 0, count: descriptors == 0 ? 0 : header + (descriptors * 4 + 7) & ~7)
        if descriptors > 0 {
            control.withUnsafeMutableBytes { c in
                var h = cmsghdr()
                h.cmsg_len = header + descriptors * 4
                h.cmsg_level = SOL_SOCKET
                h.cmsg_type = Int32(SCM_RIGHTS)
                c.storeBytes(of: h, as: cmsghdr.self)
                for i in 0..<descriptors { c.storeBytes(of: Int32(0), toByteOffset: header + i * 4, as: Int32.self) }
            }
        }
        var payload = bytes
        return payload.withUnsafeMutableBytes { p in
            control.withUnsafeMutableBytes { c in
                var iov = iovec(iov_base: p.baseAddress, iov_len: p.count)
                return withUnsafeMutablePointer(to: &iov) { iovp in
                    var message = msghdr()
                    message.msg_iov = iovp
                    message.msg_iovlen = 1
                    message.msg_control = c.isEmpty ? nil : c.baseAddress
                    message.msg_controllen = c.count
                    return sendmsg(socket, &message, 0)
                }
            }
        }
    }
}
