import Foundation
import Testing
import VIO
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// examples/sql: vio-sql-server with its clients (the Swift CLI over VIO and over TCP, the C
/// client over VIO) on one agent.
final class SQLExample {
    let fixture: FabricFixture
    let tcpPort: Int
    private(set) var server: ToolProcess?

    /// The server and `clients` client instances (c1, c2, ...), each linked to it.
    init(clients: Int = 3) throws {
        fixture = try FabricFixture(instances: (["sqlserver"] + (1...clients).map { "c\($0)" })
                                        .map { "  - { name: \($0), host: local }" }.joined(separator: "\n"),
                                    // c2's link carries at most 1 MiB per message.
                                    links: (1...clients).map { "  - { between: [sqlserver, c\($0)]\($0 == 2 ? ", max_message_size: 1MiB" : "") }" }
                                        .joined(separator: "\n"))
        tcpPort = try LoopbackCluster.freePort()
        try startServer()
    }

    func startServer() throws {
        let server = try ToolProcess("vio-sql-server", ["--socket", fixture.socket, "--tcp-listen", "127.0.0.1:\(tcpPort)"])
        #expect(server.waitFor("ready"), "\(Tools.contents(server.stderrFile))")
        self.server = server
    }

    /// What the server logged.
    var serverLog: String { server.map { Tools.contents($0.stderrFile) } ?? "" }

    /// `vio-sql -c` for each request, as `instance` over VIO (or over TCP when nil).
    func sql(_ instance: String?, _ requests: [String]) throws -> Tools.Result {
        let path = instance.map { ["--as", $0, "--socket", fixture.socket] } ?? ["--tcp", "127.0.0.1:\(tcpPort)"]
        return try Tools.run("vio-sql", path + requests.flatMap { ["-c", $0] })
    }

    /// An interactive `vio-sql` reading its requests from a FIFO this test writes.
    func interactive(_ instance: String) throws -> (ToolProcess, FileHandle) {
        let fifo = Tools.scratchDirectory() + "/requests"
        guard mkfifo(fifo, 0o600) == 0 else { throw ProxyTestFailure("mkfifo failed") }
        let process = try ToolProcess("/bin/sh", ["-c", "exec \(Tools.binDirectory)/vio-sql --as \(instance) --socket \(fixture.socket) < \(fifo)"])
        guard let handle = FileHandle(forWritingAtPath: fifo) else { throw ProxyTestFailure("cannot open the FIFO") }
        return (process, handle)
    }

    deinit { server?.kill() }
}

/// The SQL example end to end: one engine, two paths, clients that die in a transaction, a
/// server that restarts, idle clients.
@Suite(.serialized) struct SQLExampleTests {
    /// The same scripted workload over a VIO link and over TCP gives the same results; the C
    /// client reads them too; a result of 100,000 rows comes back as one message.
    @Test func scriptedWorkloadOverBothPaths() throws {
        let example = try SQLExample()
        func workload(_ table: String) -> [String] {
            [
                "CREATE TABLE \(table) (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)",
                "BEGIN; INSERT INTO \(table) VALUES (1, 'ada', 3.5, x'00ff'); INSERT INTO \(table) VALUES (2, 'bob', NULL, NULL); COMMIT",
                "BEGIN; INSERT INTO \(table) VALUES (3, 'cyd', 1.25, NULL); ROLLBACK",
                "UPDATE \(table) SET score = score * 2 WHERE id = 1",
                "SELECT id, name, score, data FROM \(table) ORDER BY id",
                "SELECT count(*), sum(id) FROM \(table)",
            ]
        }
        let overVIO = try example.sql("c1", workload("v"))
        let overTCP = try example.sql(nil, workload("t"))
        #expect(overVIO.status == 0, "\(overVIO.stderr)")
        #expect(overTCP.status == 0, "\(overTCP.stderr)")
        #expect(overVIO.stdout == "1|ada|7.0|x'00ff'\n2|bob||\n2|3\n", "\(overVIO.stdout)")
        #expect(overVIO.stdout == overTCP.stdout)
        // Errors come back as errors, and the session goes on.
        let error = try example.sql("c2", ["SELECT * FROM missing"])
        #expect(error.status == 1 && error.stderr.contains("no such table: missing"), "\(error.stderr)")
        let big = try example.sql("c1", ["WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000) SELECT x, 'row ' || x FROM n"])
        #expect(big.stdout.split(separator: "\n").count == 100_000 && big.stdout.hasSuffix("100000|row 100000\n"))
        // A result larger than the link carries is an error reply; the session and its
        // transaction go on.
        let (c2, requests) = try example.interactive("c2")
        requests.write(Data("BEGIN\nINSERT INTO v VALUES (9, 'zed', 0, NULL)\nSELECT zeroblob(2000000)\nCOMMIT\nSELECT 'done'\n".utf8))
        #expect(c2.waitFor("done"), "\(c2.output)\(Tools.contents(c2.stderrFile))")
        #expect(Tools.contents(c2.stderrFile).contains("larger than 1048576 bytes"), "\(Tools.contents(c2.stderrFile))")
        requests.closeFile()
        #expect(try example.sql("c1", ["SELECT name FROM v WHERE id = 9"]).stdout == "zed\n")
        // The C client, against vio.h only, with a bound parameter.
        let client = try CABITests.compile(Tools.repositoryRoot + "/examples/sql/c/sql_client.c")
        let c = try Tools.run(client, ["c3", "sqlserver", "SELECT name FROM v WHERE id = ?", "2"],
                              environment: ["VIO_CONTROL_SOCKET": example.fixture.socket])
        #expect(c.status == 0 && c.stdout == "bob\n", "\(c.stdout)\(c.stderr)")
    }

    /// A client killed with -9 inside a transaction holding the write lock: the server sees
    /// its link end (the kernel reports the death), rolls back, and a client waiting to write
    /// commits; the dead client's change is gone.
    @Test func killedClientInATransactionIsRolledBack() throws {
        let example = try SQLExample()
        #expect(try example.sql("c1", ["CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER)",
                                       "INSERT INTO accounts VALUES (1, 0)"]).status == 0)
        let (holder, requests) = try example.interactive("c1")
        requests.write(Data("BEGIN IMMEDIATE\nUPDATE accounts SET balance = balance + 1 WHERE id = 1\nSELECT 'holding'\n".utf8))
        #expect(holder.waitFor("holding"), "\(holder.output)")
        let writer = try ToolProcess("vio-sql", ["--as", "c2", "--socket", example.fixture.socket,
                                                 "-c", "UPDATE accounts SET balance = balance + 10 WHERE id = 1"])
        usleep(300_000)
        #expect(writer.process.isRunning, "the writer should wait for the lock")
        let killed = Date()
        holder.kill()
        #expect(writer.finish(timeout: 10) == 0)
        let elapsed = Date().timeIntervalSince(killed)
        requests.closeFile()
        // A liveness bound; `make bench` measures the figure.
        #expect(elapsed < 1, "the writer committed \(elapsed) s after the kill")
        #expect(try example.sql("c3", ["SELECT balance FROM accounts"]).stdout == "10\n")
        #expect(Tools.waitUntil(timeout: 5) { example.serverLog.contains("client 'c1' gone") && example.serverLog.contains("rolled back its open transaction") },
                "\(example.serverLog)")
    }

    /// The server restarts: a connected client's next request gets a clear error, and the
    /// one after it reaches the new server.
    @Test func clientsReconnectAfterAServerRestart() throws {
        let example = try SQLExample()
        let (client, requests) = try example.interactive("c1")
        requests.write(Data("SELECT 'first'\n".utf8))
        #expect(client.waitFor("first"))
        example.server?.kill()
        _ = example.server?.finish()
        requests.write(Data("SELECT 'lost'\n".utf8))
        #expect(Tools.waitUntil(timeout: 10) { Tools.contents(client.stderrFile).contains("error: the server is gone") },
                "\(Tools.contents(client.stderrFile))")
        try example.startServer()
        requests.write(Data("SELECT 'again'\n".utf8))
        #expect(client.waitFor("again"), "\(client.output)\(Tools.contents(client.stderrFile))")
        #expect(!client.output.contains("lost"))
        requests.closeFile()
        #expect(client.finish() == 0)
    }

    /// 100 connected clients that send nothing cost the server no CPU: each session's thread
    /// sleeps in its link's wait.
    @Test func idleClientsCostTheServerNoCPU() throws {
        let example = try SQLExample(clients: 100)
        guard let pid = example.server?.pid else { return }
        var clients: [(VIOClient, Link)] = []
        for i in 1...100 {
            let client = try VIOClient.attach(as: "c\(i)", socketPath: example.fixture.socket)
            let link = try client.openLink(to: "sqlserver", timeout: .seconds(5))
            try link.send(Array([1, 0, 0, 8, 0, 0, 0] + Array("SELECT 1".utf8)))
            _ = try link.receive(timeout: .seconds(5))
            clients.append((client, link))
        }
        usleep(500_000)
        let before = Tools.cpuTicks(pid: pid)
        sleep(3)
        let used = Tools.cpuTicks(pid: pid) - before
        #expect(used <= 1, "the server used \(used) ticks in 3 s with 100 idle clients")
        #expect(example.serverLog.components(separatedBy: "connected over vio").count - 1 == 100)
        _ = clients
    }

    /// A client on another host holds the write lock in an open transaction and its host goes
    /// away (its agent is killed): the server's link reports the host down, the transaction
    /// is rolled back, and a client on the server's host commits.
    @Test func clientWhoseHostGoesDownIsRolledBack() throws {
        let cluster = try LoopbackCluster(hosts: ["a", "b"],
                                          instances: "  - { name: c1, host: a }\n  - { name: sqlserver, host: b }\n  - { name: c2, host: b }",
                                          links: "  - between: [sqlserver, c1]\n  - between: [sqlserver, c2]")
        _ = try cluster.waitForAllPeersUp("a", 1)
        let server = try ToolProcess("vio-sql-server", ["--socket", cluster.socket("b")])
        defer { server.kill() }
        #expect(server.waitFor("ready"))
        func sql(_ host: String, _ instance: String, _ request: String) throws -> Tools.Result {
            try Tools.run("vio-sql", ["--as", instance, "--socket", cluster.socket(host), "-c", request])
        }
        #expect(try sql("b", "c2", "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER); INSERT INTO accounts VALUES (1, 0)").status == 0)
        let fifo = Tools.scratchDirectory() + "/requests"
        #expect(mkfifo(fifo, 0o600) == 0)
        let holder = try ToolProcess("/bin/sh", ["-c", "exec \(Tools.binDirectory)/vio-sql --as c1 --socket \(cluster.socket("a")) < \(fifo)"])
        let requests = FileHandle(forWritingAtPath: fifo)
        requests?.write(Data("BEGIN IMMEDIATE\nUPDATE accounts SET balance = balance + 1 WHERE id = 1\nSELECT 'holding'\n".utf8))
        #expect(holder.waitFor("holding"), "\(holder.output)\(Tools.contents(holder.stderrFile))")
        let writer = try ToolProcess("vio-sql", ["--as", "c2", "--socket", cluster.socket("b"), "-c", "UPDATE accounts SET balance = balance + 10 WHERE id = 1"])
        usleep(300_000)
        #expect(writer.process.isRunning, "the writer should wait for the lock")
        _ = cluster.agents["a"]?.stop(signal: SIGKILL)
        #expect(writer.finish(timeout: 10) == 0)
        #expect(try sql("b", "c2", "SELECT balance FROM accounts").stdout == "10\n")
        #expect(Tools.contents(server.stderrFile).contains("rolled back its open transaction"), "\(Tools.contents(server.stderrFile))")
        requests?.closeFile()
        holder.kill()
    }
}
