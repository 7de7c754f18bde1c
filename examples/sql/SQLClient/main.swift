import ArgumentParser
import SQLWire
import VIO
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// Where requests go: the server's VIO link, or its TCP listener. Either reconnects on the
/// next request after the server went away.
protocol Connection: AnyObject {
    func call(_ request: SQLRequest) throws -> SQLReply
}

struct ServerGone: Error, CustomStringConvertible {
    var reason: String
    var description: String { "the server is gone (\(reason)); the next request connects again" }
}

final class LinkConnection: Connection {
    let client: VIOClient
    let server: String
    private var link: Link?

    init(client: VIOClient, server: String) {
        self.client = client
        self.server = server
    }

    func call(_ request: SQLRequest) throws -> SQLReply {
        let link = try self.link ?? client.openLink(to: server, timeout: .seconds(5))
        self.link = link
        do {
            try link.send(request.encoded())
            return try SQLReply(decoding: link.receive())
        } catch let error as LinkError {
            // A request too large for the link is this client's error; the link is fine.
            if case .messageTooLarge = error { throw error }
            self.link = nil
            throw ServerGone(reason: error.description)
        }
    }
}

final class TCPConnection: Connection {
    let host: String, port: UInt16
    private var socket: FramedTCP?

    init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    func call(_ request: SQLRequest) throws -> SQLReply {
        let socket = try self.socket ?? FramedTCP(connectingTo: host, port: port)
        self.socket = socket
        do {
            try socket.send(request.encoded())
            return try SQLReply(decoding: socket.receive())
        } catch let error as SystemError {
            self.socket = nil
            throw ServerGone(reason: error.description)
        }
    }
}

/// `vio-sql`: SQL against vio-sql-server, one request per line (or per `-c`), rows printed as
/// `a|b|c`; or a latency benchmark.
struct Client: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vio-sql",
        abstract: "Run SQL on vio-sql-server over a VIO link (or its TCP listener).",
        discussion: "Without -c, reads one request per line from standard input. Exit status: 0, 1 an error in a -c request, 2 cannot connect.")

    @Option(name: .customLong("as"), help: "The instance to attach as (VIO).")
    var instance: String?

    @Option(help: "The server's instance name.")
    var server = "sqlserver"

    @Option(help: "The agent's control socket.")
    var socket: String?

    @Option(help: "Use the server's TCP listener at ADDRESS:PORT instead of a VIO link.")
    var tcp: String?

    @Option(name: .customShort("c"), help: "A request to run (repeatable); then exit.")
    var commands: [String] = []

    @Option(help: "Measure `select` (point select) or `update` (single-row update) round trips.")
    var bench: String?

    @Option(help: "Round trips to measure.")
    var count = 20_000

    func run() throws {
        guard count > 0 else { throw ValidationError("--count must be at least 1") }
        let connection: Connection
        if let tcp {
            guard let (host, port) = TCPSocket.split(hostPort: tcp) else { throw ValidationError("--tcp must be ADDRESS:PORT") }
            connection = TCPConnection(host: host, port: port)
        } else {
            guard let instance else { throw ValidationError("give --as INSTANCE (or --tcp)") }
            do {
                connection = LinkConnection(client: try VIOClient.attach(as: instance, socketPath: socket), server: server)
            } catch {
                StandardStreams.error("vio-sql: \(error)\n")
                Foundation_exit(2)
            }
        }
        if let bench { return try measure(bench, on: connection) }
        if !commands.isEmpty {
            for sql in commands {
                do {
                    let reply = try connection.call(SQLRequest(sql))
                    show(reply)
                    if case .error = reply { Foundation_exit(1) }
                } catch {
                    StandardStreams.error("error: \(error)\n")
                    Foundation_exit(1)
                }
            }
            return
        }
        while let line = readLine() {
            let sql = line.trimmingCharacters()
            if sql.isEmpty { continue }
            do { show(try connection.call(SQLRequest(sql))) } catch {
                StandardStreams.error("error: \(error)\n")
            }
        }
    }

    private func show(_ reply: SQLReply) {
        switch reply {
        case .rows(_, let rows, _): if !rows.isEmpty { StandardStreams.out(reply.listing + "\n") }
        case .error: StandardStreams.error(reply.listing + "\n")
        }
    }

    /// Point selects or single-row updates on a 1000-row table, one at a time.
    private func measure(_ kind: String, on connection: Connection) throws {
        let setup = try connection.call(SQLRequest("""
            CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY, v INTEGER);
            WITH RECURSIVE n(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM n WHERE id < 1000)
            INSERT OR IGNORE INTO bench SELECT id, 0 FROM n
            """))
        if case .error(let message) = setup { throw ValidationError("benchmark set-up failed: \(message)") }
        let sql = kind == "update" ? "UPDATE bench SET v = v + 1 WHERE id = ?" : "SELECT v FROM bench WHERE id = ?"
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        let started = MonotonicClock.nanoseconds()
        for i in 0..<count {
            let t0 = MonotonicClock.nanoseconds()
            let reply = try connection.call(SQLRequest(sql, [.integer(Int64(i % 1000 + 1))]))
            samples.append(MonotonicClock.nanoseconds() - t0)
            if case .error(let message) = reply { throw ValidationError("benchmark request failed: \(message)") }
        }
        let elapsed = Double(MonotonicClock.nanoseconds() - started) / 1e9
        samples.sort()
        let p50 = Double(samples[samples.count / 2]) / 1000, p99 = Double(samples[samples.count * 99 / 100]) / 1000
        StandardStreams.out("rtt_us p50=\(p50) p99=\(p99) ops_per_s=\(Double(count) / elapsed)\n")
    }
}

private func Foundation_exit(_ code: Int32) -> Never { exit(code) }

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}

Client.main()
