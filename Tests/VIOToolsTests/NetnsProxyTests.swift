import Foundation
import Testing
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// topologies/database-proxy.yaml in two namespace hosts: clients on h1, servers on h2.
private func databaseCluster() throws -> NetnsCluster {
    let template = URL(fileURLWithPath: NetnsCluster.topology).deletingLastPathComponent()
        .appendingPathComponent("database-proxy.yaml").path
    let cluster = try NetnsCluster(hosts: 2, start: ["h1", "h2"], template: template)
    #expect(try cluster.waitForAllPeersUp("h1", 1))
    return cluster
}

/// Waits until h1's agent says `service` is up (h2 checks a server it found down every second).
private func waitForService(_ cluster: NetnsCluster, _ service: String) throws -> Bool {
    try Tools.waitUntil(timeout: 15) {
        try cluster.status("h1").split(separator: "\n").contains { $0.hasPrefix("  \(service) ") && $0.contains(" up,") }
    }
}

/// Runs `arguments` in `host`'s namespace.
private func inHost(_ cluster: NetnsCluster, _ host: String, _ arguments: [String], timeout: TimeInterval = 120) throws -> Tools.Result {
    try Tools.run("/usr/sbin/ip", DatabaseServers.inHost(cluster, host, arguments), timeout: timeout)
}

/// Unmodified PostgreSQL and Redis clients through the agents' proxy mode, each server in its
/// own namespace host: the programs come from Debian's packages and are started and stopped
/// here.
@Suite(.serialized, .enabled(if: DatabaseServers.available, "skipped: needs root, iproute2, PostgreSQL (postgresql) and Redis (redis-server, redis-tools)"))
struct NetnsProxyTests {
    /// pgbench through h1's listen address: initialise, then select-only and TPC-B-like at 1,
    /// 16 and 64 clients with no failed transaction; psql runs a multi-statement transaction;
    /// h1 and h2 keep their two channels, whatever the number of clients.
    @Test func pgbenchAndPsqlThroughTheProxy() throws {
        let cluster = try databaseCluster()
        let pg = try PostgresServer(in: cluster, host: "h2", address: "198.18.0.2")
        #expect(try waitForService(cluster, "postgres"), "\((try? cluster.status("h1")) ?? "")")
        let connect = ["-h", "198.18.0.1", "-p", "5432", "-U", "postgres"]
        let initialise = try inHost(cluster, "h1", ["pgbench"] + connect + ["-i", "-s", "2", "-q", "postgres"])
        #expect(initialise.status == 0, "\(initialise.stdout)\(initialise.stderr)")
        for (script, clients) in [(["-S"], 1), (["-S"], 16), (["-S"], 64), ([], 1), ([], 16), ([], 64)] {
            let run = try inHost(cluster, "h1", ["pgbench"] + connect + script + ["-n", "-c", "\(clients)", "-j", "2", "-T", "2", "postgres"])
            #expect(run.status == 0, "\(script) \(clients) clients: \(run.stdout)\(run.stderr)")
            #expect(run.stdout.contains("number of failed transactions: 0 (0.000%)"), "\(run.stdout)")
            #expect(run.stdout.contains("tps = "), "\(run.stdout)")
        }
        let sockets = try cluster.connectionsByPeer("h1")
        #expect(sockets["198.18.0.2"] == 2, "one socket per channel, not per client: \(sockets)")
        let transaction = """
            BEGIN;
            CREATE TABLE proxied (id int PRIMARY KEY, note text);
            INSERT INTO proxied SELECT g, 'row ' || g FROM generate_series(1, 1000) g;
            UPDATE proxied SET note = 'changed' WHERE id % 10 = 0;
            COMMIT;
            SELECT count(*), sum(id), count(*) FILTER (WHERE note = 'changed') FROM proxied;
            """
        let psql = try inHost(cluster, "h1", ["psql"] + connect + ["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", transaction, "postgres"])
        #expect(psql.status == 0, "\(psql.stderr)")
        #expect(psql.stdout.split(separator: "\n").last == "1000|500500|100", "\(psql.stdout)")
        let status = try cluster.status("h1")
        #expect(status.contains("0 refused, 0 reset"), "\(status)")
        _ = pg
    }

    /// A client holding a row lock in an open transaction through the proxy is killed with -9:
    /// its connection's end travels to the server at once, PostgreSQL aborts the transaction,
    /// and a client waiting for the row gets it.
    @Test func killedClientReleasesItsRowLock() throws {
        let cluster = try databaseCluster()
        let pg = try PostgresServer(in: cluster, host: "h2", address: "198.18.0.2")
        #expect(try waitForService(cluster, "postgres"))
        let connect = ["-h", "198.18.0.1", "-p", "5432", "-U", "postgres", "-X", "-A", "-t", "-q"]
        let setup = try inHost(cluster, "h1", ["psql"] + connect + ["-c", "CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 0);", "postgres"])
        #expect(setup.status == 0, "\(setup.stderr)")
        // The holder reads its statements from a FIFO this test keeps open: it stays idle in
        // its transaction, as an application between statements.
        let fifo = Tools.scratchDirectory() + "/holder.sql"
        #expect(mkfifo(fifo, 0o644) == 0)
        let holder = try ToolProcess("/usr/sbin/ip", DatabaseServers.inHost(cluster, "h1", ["psql"] + connect + ["-f", fifo, "postgres"]))
        let statements = FileHandle(forWritingAtPath: fifo)
        statements?.write(Data("BEGIN;\nUPDATE accounts SET balance = balance + 1 WHERE id = 1;\nSELECT 'holding';\n".utf8))
        #expect(holder.waitFor("holding"), "\(holder.output)")
        let waiter = try ToolProcess("/usr/sbin/ip", DatabaseServers.inHost(cluster, "h1", ["psql"] + connect + [
            "-c", "UPDATE accounts SET balance = balance + 10 WHERE id = 1; SELECT balance FROM accounts WHERE id = 1;", "postgres"]))
        usleep(500_000)
        #expect(waiter.process.isRunning, "the waiter should wait for the row lock: \(waiter.output)")
        let killed = Date()
        holder.kill()
        let status = waiter.finish(timeout: 10)
        let elapsed = Date().timeIntervalSince(killed)
        statements?.closeFile()
        #expect(status == 0, "\(waiter.output)")
        // The holder's increment was rolled back: only the waiter's is there.
        #expect(waiter.output.split(separator: "\n").last == "10", "\(waiter.output)")
        // A liveness bound; the figure itself is measured by `make bench` (docs/performance.md).
        #expect(elapsed < 2, "lock released \(elapsed) s after the kill")
        #expect(pg.log.contains("unexpected EOF on client connection with an open transaction"), "\(pg.log)")
    }

    /// redis-benchmark through the proxy, 50 clients, pipelines of 1 and 16: every request is
    /// answered (the server counts them), with two sockets between the hosts.
    @Test func redisBenchmarkThroughTheProxy() throws {
        let cluster = try databaseCluster()
        let redis = try RedisServer(in: cluster, host: "h2", address: "198.18.0.2")
        #expect(try waitForService(cluster, "redis"))
        func processed() throws -> Int {
            let info = try inHost(cluster, "h2", ["/usr/bin/redis-cli", "info", "stats"]).stdout
            let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("total_commands_processed:") }
            return line.flatMap { Int($0.split(separator: ":")[1]) } ?? -1
        }
        let before = try processed()
        for pipeline in [1, 16] {
            let run = try inHost(cluster, "h1", ["/usr/bin/redis-benchmark", "-h", "198.18.0.1", "-p", "6379", "-c", "50",
                                                 "-n", "20000", "-P", "\(pipeline)", "-t", "set,get", "-q", "--csv"])
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
            #expect(run.stdout.contains("\"SET\"") && run.stdout.contains("\"GET\""), "\(run.stdout)")
        }
        #expect(try processed() - before >= 80_000)
        #expect(try cluster.connectionsByPeer("h1")["198.18.0.2"] == 2)
        _ = redis
    }

    /// 10,000 proxied connections held open through one agent pair, each checked with an
    /// echo; the memory each costs the agents is printed (docs/performance.md has the figure).
    @Test func tenThousandConnections() throws {
        let cluster = try databaseCluster()
        let echo = try ToolProcess("/usr/sbin/ip", DatabaseServers.inHost(cluster, "h2", [Tools.binDirectory + "/vio-probe", "tcp-echo", "--listen", "127.0.0.1:7000"]))
        #expect(echo.waitFor("listening"))
        #expect(try waitForService(cluster, "echo"))
        func rss(_ host: String) -> Int {
            guard let pid = cluster.agents[host]?.pid else { return 0 }
            // `ip netns exec` execs the agent: the process is the agent.
            let line = Tools.contents("/proc/\(pid)/status").split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
            return line.flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true)[1]) } ?? 0
        }
        let before = (rss("h1"), rss("h2"))
        let count = 10_000
        let holder = try ToolProcess("/usr/sbin/ip", DatabaseServers.inHost(cluster, "h1", [Tools.binDirectory + "/vio-probe", "tcp-check", "--hold",
                                                                                            "--connect", "198.18.0.1:7000", "--connections", "\(count)"]))
        #expect(holder.waitFor("holding \(count) connections", timeout: 240), "\(holder.output)")
        #expect(try cluster.status("h2").contains("\(count) connections open"))
        let after = (rss("h1"), rss("h2"))
        let perConnection = (Double(after.0 - before.0) * 1024 / Double(count), Double(after.1 - before.1) * 1024 / Double(count))
        print("proxy scale: \(count) connections; agent memory per connection: client side \(Int(perConnection.0)) B, server side \(Int(perConnection.1)) B (RSS \(before.0) -> \(after.0) KiB, \(before.1) -> \(after.1) KiB)")
        #expect(try cluster.connectionsByPeer("h1")["198.18.0.2"] == 2)
        holder.kill()
        #expect(try Tools.waitUntil(timeout: 60) { try cluster.status("h2").contains(" 0 connections open") })
        echo.kill()
    }
}
