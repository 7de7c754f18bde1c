import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The agent's Prometheus endpoint (`metrics_listen`), scraped over HTTP like Prometheus does.
@Suite(.serialized) struct MetricsTests {
    /// One HTTP exchange with 127.0.0.1:`port`: what the server sent before closing.
    static func exchange(_ port: Int, _ request: String) throws -> String {
        guard let fd = connectLoopback(port: port, receiveTimeout: timeval(tv_sec: 10, tv_usec: 0)) else {
            throw POSIXError(.ECONNREFUSED)
        }
        defer { close(fd) }
        _ = request.withCString { send(fd, $0, strlen($0), 0) }
        var response = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            response += buffer[..<n]
        }
        return String(decoding: response, as: UTF8.self)
    }

    static func scrape(_ port: Int) throws -> (head: String, body: String) {
        let response = try exchange(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        guard let split = response.range(of: "\r\n\r\n") else { return (response, "") }
        return (String(response[..<split.lowerBound]), String(response[split.upperBound...]))
    }

    /// The value of the sample line starting with `series` (name and labels).
    static func value(_ body: String, _ series: String) -> Double? {
        body.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
    }

    /// With `service` ports, a proxied service `echo`: its server on beta, its clients on alpha.
    static func cluster(metricsPort: Int, service: (server: Int, listen: Int)? = nil) throws -> LoopbackCluster {
        let services = service.map { s in """
            services:
              - name: echo
                server: { host: beta, address: "127.0.0.1:\(s.server)" }
                listen:
                  - { host: alpha, address: "127.0.0.1:\(s.listen)" }

            """ } ?? ""
        return try LoopbackCluster(hosts: ["alpha", "beta"], hostFields: ["alpha": "metrics_listen: \"127.0.0.1:\(metricsPort)\""],
                                   instances: """
                                     - { name: a1, host: alpha }
                                     - { name: b1, host: beta }
                                   """, links: "  - { between: [a1, b1] }", extra: services)
    }

    /// Per-link totals count every lifetime of the link (they survive its closing), per-peer
    /// counters and round trips are there, and promtool accepts the whole scrape.
    @Test func scrapeCountsEveryLinkLifetimeAndPassesPromtool() throws {
        let ports = try LoopbackCluster.freePorts(3)
        let port = ports[0]
        let echo = try ToolProcess("vio-probe", ["tcp-echo", "--listen", "127.0.0.1:\(ports[1])"])
        defer { echo.kill() }
        #expect(echo.waitFor("listening"))
        let cluster = try Self.cluster(metricsPort: port, service: (ports[1], ports[2]))
        #expect(try cluster.waitForAllPeersUp("alpha", 1))
        // Proxied connections too, once beta's agent found the server up.
        #expect(try Tools.waitUntil(timeout: 10) { try cluster.status("alpha").contains(" up, listen") })
        let proxied = try Tools.run("vio-probe", ["tcp-check", "--connect", "127.0.0.1:\(ports[2])", "--connections", "2", "--max-size", "5000"])
        #expect(proxied.status == 0, "\(proxied.stdout)")
        for _ in 0..<2 {
            let (stream, verify) = try cluster.startVerifiedStream(from: "alpha", "a1", to: "beta", "b1", count: 40)
            #expect(stream.finish() == 0 && verify.finish() == 0, "\(stream.output) \(verify.output)")
        }
        // Heartbeats every 100 ms: a few round trips measured.
        usleep(500_000)
        let (head, body) = try Self.scrape(port)
        #expect(head.hasPrefix("HTTP/1.1 200 OK") && head.contains("text/plain; version=0.0.4"), "\(head)")
        let link = "{link=\"a1<->b1\",local=\"a1\",peer=\"b1\",peer_host=\"beta\""
        #expect(Self.value(body, "vio_link_messages_total\(link),direction=\"sent\"}") == 80, "\(body)")
        #expect(Self.value(body, "vio_peer_up{peer=\"beta\"}") == 1)
        #expect(Self.value(body, "vio_peer_channels_up{peer=\"beta\"}") == 2)
        // Several messages may share a frame (record runs): frames and bytes are only bounded.
        #expect((Self.value(body, "vio_peer_frames_total{peer=\"beta\",direction=\"sent\"}") ?? 0) > 0)
        #expect((Self.value(body, "vio_peer_bytes_total{peer=\"beta\",direction=\"sent\"}") ?? 0)
                >= (Self.value(body, "vio_link_bytes_total\(link),direction=\"sent\"}") ?? .infinity))
        #expect((Self.value(body, "vio_peer_rtt_seconds_count{peer=\"beta\"}") ?? 0) > 0, "\(body)")
        #expect(Self.value(body, "vio_instances_declared") == 1)
        #expect(Self.value(body, "vio_service_connections_total{service=\"echo\",protocol=\"tcp\"}") == 2, "\(body)")
        #expect(Self.value(body, "vio_service_up{service=\"echo\",protocol=\"tcp\"}") == 1)
        #expect(cluster.log("alpha").contains("metrics listening"))

        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") else {
            Issue.record("promtool is missing: scripts/install-deps.sh installs Debian's prometheus package")
            return
        }
        let file = cluster.directory + "/scrape.txt"
        try body.write(toFile: file, atomically: true, encoding: .utf8)
        let check = try Tools.run("/bin/sh", ["-c", "/usr/bin/promtool check metrics < \(file)"])
        #expect(check.status == 0, "promtool: \(check.stdout) \(check.stderr)")
    }

    /// Only GET /metrics is served; malformed or oversized requests get an error status, and
    /// connections that say nothing (more than the endpoint keeps) do not stop a scrape.
    @Test func onlyMetricsAreServedAndIdleClientsCannotBlockIt() throws {
        let port = try LoopbackCluster.freePort()
        let cluster = try Self.cluster(metricsPort: port)
        #expect(try cluster.waitForStatus("alpha", "beta"))
        #expect(try Self.exchange(port, "GET / HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 404"))
        #expect(try Self.exchange(port, "POST /metrics HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 405"))
        #expect(try Self.exchange(port, "hello\r\n\r\n").hasPrefix("HTTP/1.1 400"))
        // HEAD: the GET reply's headers (its length included), no body.
        let headOnly = try Self.exchange(port, "HEAD /metrics HTTP/1.1\r\n\r\n")
        #expect(headOnly.hasPrefix("HTTP/1.1 200") && headOnly.hasSuffix("\r\n\r\n") && !headOnly.contains("Content-Length: 0\r\n"),
                "\(headOnly)")
        #expect(try Self.exchange(port, "HEAD /nothing HTTP/1.1\r\n\r\n").hasSuffix("\r\n\r\n"))
        #expect(try Self.exchange(port, "GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 10_000)).hasPrefix("HTTP/1.1 431"))
        var silent: [Int32] = []
        defer { for fd in silent { close(fd) } }
        for _ in 0..<20 {
            if let fd = connectLoopback(port: port, receiveTimeout: timeval(tv_sec: 1, tv_usec: 0)) { silent.append(fd) }
        }
        #expect(silent.count == 20)
        let (head, body) = try Self.scrape(port)
        #expect(head.hasPrefix("HTTP/1.1 200"), "\(head)")
        #expect(body.contains("vio_agent_info{cluster=\"loopback\",host=\"alpha\""))
        // The agent still serves its instances.
        try cluster.expectRoundTrips(from: "alpha", "a1", to: "beta", "b1")
    }

    /// A bad `metrics_listen` is a topology error with its position; the flag is checked too.
    @Test func badListenAddressesAreRefused() throws {
        let dir = Tools.scratchDirectory()
        let file = dir + "/t.yaml"
        try """
        cluster: c
        version: 1
        defaults:
          metrics_listen: "localhost"
        hosts:
          - { name: h, address: 127.0.0.1 }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let check = try Tools.run("vioctl", ["topology", "check", file])
        #expect(check.status != 0)
        #expect(check.stdout.contains("t.yaml:4:") && check.stdout.contains("metrics_listen 'localhost' is not ADDRESS:PORT"), "\(check.stdout)")
        let agent = try Tools.run("vio-agent", ["--metrics-listen", "nowhere", "--check"])
        #expect(agent.status != 0 && agent.stderr.contains("--metrics-listen 'nowhere' is not ADDRESS:PORT"), "\(agent.stderr)")
    }
}
