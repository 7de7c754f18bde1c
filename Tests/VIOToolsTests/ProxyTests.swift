import Foundation
import Testing
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// Two hosts on loopback with proxied services: `echo` served on b for clients on a,
/// `local` served and reached on b. The echo server is `vio-probe tcp-echo`, started per test.
final class ProxyCluster {
    let cluster: LoopbackCluster
    /// The real server's port (on b), the port clients of a use, the port of b's local service.
    let serverPort: Int, remotePort: Int, localPort: Int
    private(set) var server: ToolProcess?

    init(startServer: Bool = true) throws {
        let ports = try LoopbackCluster.freePorts(3)
        (serverPort, remotePort, localPort) = (ports[0], ports[1], ports[2])
        let services = """
            services:
              - name: echo
                server: { host: b, address: "127.0.0.1:\(serverPort)" }
                listen:
                  - { host: a, address: "127.0.0.1:\(remotePort)" }
              - name: local
                server: { host: b, address: "127.0.0.1:\(serverPort)" }
                listen:
                  - { host: b, address: "127.0.0.1:\(localPort)" }

            """
        cluster = try Self.loopback(hosts: ["a", "b"], services: services)
        _ = try cluster.waitForAllPeersUp("a", 1)
        if startServer {
            try self.startServer()
            // b checked the server before it ran and told a it was down: wait for the news.
            _ = try Tools.waitUntil(timeout: 10) { try serviceStatus("a", "echo").contains(" up,") }
        }
    }

    /// Loopback hosts with one instance each (`i` + the host's name), the first two linked,
    /// and `services` (a YAML `services:` section).
    static func loopback(hosts: [String], services: String) throws -> LoopbackCluster {
        try LoopbackCluster(hosts: hosts, instances: hosts.map { "  - { name: i\($0), host: \($0) }" }.joined(separator: "\n"),
                            links: "  - between: [i\(hosts[0]), i\(hosts[1])]", extra: services)
    }

    func startServer() throws {
        let echo = try ToolProcess("vio-probe", ["tcp-echo", "--listen", "127.0.0.1:\(serverPort)"])
        #expect(echo.waitFor("listening"))
        server = echo
    }

    func stopServer() {
        server?.kill()
        _ = server?.finish()
        server = nil
    }

    /// `vio-probe tcp-check` against `port`; its exit status and output.
    func check(port: Int, connections: Int, maxSize: Int, seed: Int = 1) throws -> Tools.Result {
        try Tools.run("vio-probe", ["tcp-check", "--connect", "127.0.0.1:\(port)", "--connections", "\(connections)",
                                    "--max-size", "\(maxSize)", "--seed", "\(seed)"])
    }

    /// The status line of service `name` on `host` and the counters line after it.
    func serviceStatus(_ host: String, _ name: String) throws -> String {
        let lines = try cluster.status(host).split(separator: "\n").map(String.init)
        guard let at = lines.firstIndex(where: { $0.hasPrefix("  \(name) ") }) else { return "" }
        return lines[at] + "\n" + (at + 1 < lines.count ? lines[at + 1] : "")
    }

    deinit { server?.kill() }
}

/// A blocking client socket to 127.0.0.1:`port` whose reads time out after `seconds`.
private func client(_ port: Int, timeout seconds: Int = 10) throws -> Int32 {
    guard let fd = connectLoopback(port: port, receiveTimeout: timeval(tv_sec: seconds, tv_usec: 0)) else {
        throw ProxyTestFailure("cannot connect to 127.0.0.1:\(port)")
    }
    return fd
}

struct ProxyTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Sends all of `bytes`.
private func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var at = 0
    while at < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + at, bytes.count - at, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { return false }
        at += n
    }
    return true
}

/// Reads until `count` bytes, end of stream or an error: the bytes, and errno (0 at end of
/// stream or when all came).
private func receive(_ fd: Int32, _ count: Int) -> ([UInt8], Int32) {
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while out.count < count {
        let n = recv(fd, &buffer, min(buffer.count, count - out.count), 0)
        if n < 0 { return (out, errno) }
        if n == 0 { break }
        out += buffer[..<n]
    }
    return (out, 0)
}

/// Closes `fd` so the far end reads a reset (SO_LINGER 0).
private func resetClose(_ fd: Int32) {
    var value = linger(l_onoff: 1, l_linger: 0)
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &value, socklen_t(MemoryLayout<linger>.size))
    close(fd)
}

/// Proxy mode on two loopback hosts: bytes, half-closes, resets, refusals, service updates,
/// host loss, and one connection's stall not slowing the others.
@Suite(.serialized) struct ProxyTests {
    /// Checked streams of random sizes up to 16 MiB through the cross-host service and the
    /// local one, each half-closed by the client and answered to the end.
    @Test func checkedStreamsThroughRemoteAndLocalServices() throws {
        let p = try ProxyCluster()
        let remote = try p.check(port: p.remotePort, connections: 12, maxSize: 16 << 20)
        #expect(remote.status == 0, "\(remote.stdout)\(remote.stderr)")
        #expect(remote.stdout.contains("checked 12 connections"))
        let local = try p.check(port: p.localPort, connections: 12, maxSize: 4 << 20, seed: 2)
        #expect(local.status == 0, "\(local.stdout)\(local.stderr)")
        let a = try p.serviceStatus("a", "echo"), b = try p.serviceStatus("b", "echo")
        #expect(a.contains("listen") && a.contains(" up,") && a.contains("12 total"), "\(a)")
        #expect(b.contains("server") && b.contains("12 total"), "\(b)")
        #expect(try Tools.waitUntil(timeout: 5) { try p.serviceStatus("b", "echo").contains("0 connections open") })
        #expect(try p.serviceStatus("b", "local").contains("listen+server"))
        // One channel pair between the hosts carried all of it: no socket per client.
        let json = try Tools.run("vioctl", ["status", "--json", "--socket", p.cluster.socket("a")]).stdout
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        let services = object?["services"] as? [[String: Any]] ?? []
        #expect(services.first?["name"] as? String == "echo" && services.first?["connections_total"] as? Int == 12, "\(json)")
    }

    /// A client whose server is down is reset at once with the reason logged; the server's
    /// agent says the service is down, the client's agent hears it and refuses the next
    /// client without asking; once the server is back, clients get through again.
    @Test func downServerRefusesClientsAtOnceAndRecovers() throws {
        let p = try ProxyCluster(startServer: false)
        #expect(try Tools.waitUntil(timeout: 10) { try p.serviceStatus("a", "echo").contains("down (") }, "\((try? p.serviceStatus("a", "echo")) ?? "")")
        let started = Date()
        let fd = try client(p.remotePort)
        let error = receive(fd, 3).1
        close(fd)
        #expect(error == ECONNRESET, "errno \(error)")
        #expect(Date().timeIntervalSince(started) < 2)
        #expect(p.cluster.log("a").contains("the server on 'b' is down"), "\(p.cluster.log("a"))")
        // The local service too: reset, with the connect's error in the log.
        let lfd = try client(p.localPort)
        #expect(receive(lfd, 1).1 == ECONNRESET)
        close(lfd)
        #expect(Tools.waitUntil(timeout: 10) { p.cluster.log("b").contains("Connection refused service=local") })
        try p.startServer()
        #expect(try Tools.waitUntil(timeout: 10) { try p.serviceStatus("a", "echo").contains(" up,") }, "\((try? p.serviceStatus("a", "echo")) ?? "")")
        let ok = try p.check(port: p.remotePort, connections: 2, maxSize: 1000)
        #expect(ok.status == 0, "\(ok.stdout)")
        #expect(try p.serviceStatus("a", "echo").contains("refused"))
    }

    /// Resets travel both ways: a client that resets makes the server's connection reset, and
    /// a server that resets makes the client's. Half-close travels both ways.
    @Test func resetsAndHalfClosesTravelBothWays() throws {
        let ports = try LoopbackCluster.freePorts(2)
        let services = """
            services:
              - name: raw
                server: { host: b, address: "127.0.0.1:\(ports[0])" }
                listen:
                  - { host: a, address: "127.0.0.1:\(ports[1])" }

            """
        let cluster = try ProxyCluster.loopback(hosts: ["a", "b"], services: services)
        _ = try cluster.waitForAllPeersUp("a", 1)
        let listener = try TCPSocket.listen(on: TCPSocket.resolve("127.0.0.1", port: UInt16(ports[0])))
        func acceptServer() throws -> Int32 {
            var poll = pollfd(fd: listener.fd.rawValue, events: Int16(POLLIN), revents: 0)
            guard Glibc.poll(&poll, 1, 10_000) == 1 else { throw ProxyTestFailure("the server's agent did not connect") }
            let fd = accept(listener.fd.rawValue, nil, nil)
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            return fd
        }
        #expect(try Tools.waitUntil(timeout: 10) { try cluster.status("a").contains(" up,") })
        // b's agent checked the server with connects of its own: drop them.
        try listener.fd.setNonBlocking()
        while true {
            let probe = accept(listener.fd.rawValue, nil, nil)
            if probe < 0 { break }
            close(probe)
        }
        try listener.fd.setNonBlocking(false)

        // Half-close from the client: the server reads the bytes then end of stream, and can
        // still answer; its own half-close ends the client's stream.
        var c = try client(ports[1]), s = try acceptServer()
        #expect(sendAll(c, Array("request".utf8)))
        shutdown(c, Int32(SHUT_WR))
        let (request, requestError) = receive(s, 100)
        #expect(String(decoding: request, as: UTF8.self) == "request" && requestError == 0)
        #expect(sendAll(s, Array("answer".utf8)))
        shutdown(s, Int32(SHUT_WR))
        let (answer, answerError) = receive(c, 100)
        #expect(String(decoding: answer, as: UTF8.self) == "answer" && answerError == 0)
        close(c); close(s)

        // The client resets: the server's connection is reset.
        c = try client(ports[1]); s = try acceptServer()
        #expect(sendAll(c, [42]))
        #expect(receive(s, 1).0 == [42])
        resetClose(c)
        #expect(receive(s, 1).1 == ECONNRESET)
        close(s)

        // The server resets: the client's connection is reset.
        c = try client(ports[1]); s = try acceptServer()
        #expect(sendAll(c, [7]))
        #expect(receive(s, 1).0 == [7])
        resetClose(s)
        #expect(receive(c, 1).1 == ECONNRESET)
        close(c)
        #expect(try Tools.waitUntil(timeout: 5) { try cluster.status("b").contains("2 reset") }, "\((try? cluster.status("b")) ?? "")")
    }

    /// A client killed with -9 has its server connections closed at once (what lets a
    /// database abort its transaction); the agent's counts go back to zero.
    @Test func killedClientClosesItsServerConnections() throws {
        let p = try ProxyCluster()
        let holder = try ToolProcess("vio-probe", ["tcp-check", "--hold", "--connect", "127.0.0.1:\(p.remotePort)", "--connections", "20"])
        #expect(holder.waitFor("holding 20 connections"), "\(holder.output)")
        #expect(try p.serviceStatus("b", "echo").contains("20 connections open"), "\((try? p.serviceStatus("b", "echo")) ?? "")")
        holder.kill()
        #expect(try Tools.waitUntil(timeout: 5) { try p.serviceStatus("b", "echo").contains("0 connections open") },
                "\((try? p.serviceStatus("b", "echo")) ?? "")")
        #expect(try p.serviceStatus("a", "echo").contains("0 connections open"))
    }

    /// A client that stops reading stalls only its own connection: its agent stops granting
    /// credit, the other connections' checked streams complete.
    @Test func stoppedReaderStallsOnlyItsConnection() throws {
        let p = try ProxyCluster()
        let stuck = try client(p.remotePort)
        defer { close(stuck) }
        var size: Int32 = 64 * 1024
        setsockopt(stuck, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(stuck, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // Send until the path is full: the echo comes back and nobody reads it.
        let chunk = [UInt8](repeating: 9, count: 64 * 1024)
        var sent = 0
        while sent < 64 << 20 {
            let n = chunk.withUnsafeBytes { send(stuck, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
        #expect(sent < 64 << 20, "the stalled connection never filled: \(sent) bytes taken")
        let started = Date()
        let others = try p.check(port: p.remotePort, connections: 6, maxSize: 2 << 20, seed: 3)
        #expect(others.status == 0, "\(others.stdout)")
        #expect(Date().timeIntervalSince(started) < 30)
        // What the stalled connection holds in the agents is bounded by its windows.
        #expect(try p.serviceStatus("a", "echo").contains("1 connections open"))
    }

    /// The server's host going down resets every proxied connection through it; while it is
    /// down, clients are refused at once with the reason.
    @Test func hostDownResetsItsConnections() throws {
        let p = try ProxyCluster()
        let fds = try (0..<3).map { _ in try client(p.remotePort) }
        for fd in fds {
            #expect(sendAll(fd, [1]))
            #expect(receive(fd, 1).0 == [1])
        }
        _ = p.cluster.agents["b"]?.stop(signal: SIGKILL)
        for fd in fds {
            #expect(receive(fd, 1).1 == ECONNRESET)
            close(fd)
        }
        let late = try client(p.remotePort)
        #expect(receive(late, 1).1 == ECONNRESET)
        close(late)
        #expect(p.cluster.log("a").contains("of the server is down"), "\(p.cluster.log("a"))")
        #expect(try p.serviceStatus("a", "echo").contains("down (host 'b' is down"), "\((try? p.serviceStatus("a", "echo")) ?? "")")
    }

    /// Two client hosts that both dial the server's host number their connections alike: the
    /// server's agent keeps them apart by peer, and both hosts' checked streams come back
    /// intact at once. An agent stopped by SIGTERM resets its clients' connections.
    @Test func twoClientHostsShareOneServer() throws {
        let ports = try LoopbackCluster.freePorts(3)
        let services = """
            services:
              - name: echo
                server: { host: c, address: "127.0.0.1:\(ports[0])" }
                listen:
                  - { host: a, address: "127.0.0.1:\(ports[1])" }
                  - { host: b, address: "127.0.0.1:\(ports[2])" }

            """
        let cluster = try ProxyCluster.loopback(hosts: ["a", "b", "c"], services: services)
        let echo = try ToolProcess("vio-probe", ["tcp-echo", "--listen", "127.0.0.1:\(ports[0])"])
        #expect(echo.waitFor("listening"))
        for host in ["a", "b"] {
            #expect(try Tools.waitUntil(timeout: 15) { try cluster.status(host).contains(" up, listen") }, "\((try? cluster.status(host)) ?? "")")
        }
        let first = try ToolProcess("vio-probe", ["tcp-check", "--connect", "127.0.0.1:\(ports[1])", "--connections", "8", "--max-size", "2000000", "--seed", "5"])
        let second = try ToolProcess("vio-probe", ["tcp-check", "--connect", "127.0.0.1:\(ports[2])", "--connections", "8", "--max-size", "2000000", "--seed", "6"])
        #expect(first.finish() == 0, "\(first.output)")
        #expect(second.finish() == 0, "\(second.output)")
        #expect(try cluster.status("c").contains("16 total"), "\((try? cluster.status("c")) ?? "")")
        // SIGTERM: a's agent resets the connection it holds rather than ending it in order.
        let fd = try client(ports[1])
        #expect(sendAll(fd, [5]))
        #expect(receive(fd, 1).0 == [5])
        _ = cluster.agents["a"]?.stop()
        #expect(receive(fd, 1).1 == ECONNRESET)
        close(fd)
        echo.kill()
    }

    /// A UDP service: each datagram from a client comes back whole through both agents (and
    /// through the local relay), one flow per client address; a flow idle past the service's
    /// timeout ends at both agents, and the client's next datagram starts a new one.
    @Test func datagramsThroughRemoteAndLocalFlows() throws {
        let ports = try LoopbackCluster.freePorts(3)
        let services = """
            services:
              - name: dns
                protocol: udp
                idle_timeout_ms: 400
                server: { host: b, address: "127.0.0.1:\(ports[0])" }
                listen:
                  - { host: a, address: "127.0.0.1:\(ports[1])" }
                  - { host: b, address: "127.0.0.1:\(ports[2])" }

            """
        let cluster = try ProxyCluster.loopback(hosts: ["a", "b"], services: services)
        _ = try cluster.waitForAllPeersUp("a", 1)
        // The server: echoes every datagram, with a prefix so an echo cannot be a reflection.
        let server = udpSocket(port: ports[0])
        defer { close(server) }
        let echo = Thread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            var from = sockaddr_storage(), length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            while true {
                let n = withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(server, &buffer, buffer.count, 0, $0, &length) }
                }
                if n < 0 { return }
                let reply = Array("echo:".utf8) + buffer[..<n]
                _ = withUnsafePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(server, reply, reply.count, 0, $0, length) }
                }
            }
        }
        echo.start()
        for port in [ports[1], ports[2]] {
            let client = udpSocket(port: 0)
            defer { close(client) }
            for size in [1, 100, 1400, 9000, 60000] {
                let datagram = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ size) }
                #expect(udpSend(client, datagram, to: port))
                let reply = udpReceive(client)
                #expect(reply == Array("echo:".utf8) + datagram, "size \(size) via port \(port): \(reply.count) bytes back")
            }
        }
        let flows = try cluster.status("a")
        #expect(flows.contains("1 connections open, 1 total"), "\(flows)")
        // Idle past 400 ms: the flow ends on both agents.
        #expect(try Tools.waitUntil(timeout: 10) {
            let a = try cluster.status("a"), b = try cluster.status("b")
            return a.contains("0 connections open, 1 total") && b.contains("0 connections open, 2 total")
        }, "\((try? cluster.status("b")) ?? "")")
        let client = udpSocket(port: 0)
        defer { close(client) }
        #expect(udpSend(client, [1, 2, 3], to: ports[1]))
        #expect(udpReceive(client) == Array("echo:".utf8) + [1, 2, 3])
        #expect(try cluster.status("a").contains("1 connections open, 2 total"))
    }
}

/// A UDP socket bound to 127.0.0.1:`port` (0: any), reads timing out after 10 s.
private func udpSocket(port: Int) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

private func udpSend(_ fd: Int32, _ bytes: [UInt8], to port: Int) -> Bool {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == bytes.count
}

private func udpReceive(_ fd: Int32) -> [UInt8] {
    var buffer = [UInt8](repeating: 0, count: 65536)
    let n = recv(fd, &buffer, buffer.count, 0)
    return n > 0 ? Array(buffer[..<n]) : []
}
