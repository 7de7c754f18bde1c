import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Real database servers from Debian's packages, started by the tests in a namespace host of a
/// ``NetnsCluster`` and stopped afterwards: what the proxy tests put behind the agents.
enum DatabaseServers {
    /// PostgreSQL's server binaries (`/usr/lib/postgresql/N/bin`), the newest installed.
    static var postgresBin: String? {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        return versions.last.map { "\(root)/\($0)/bin" }.flatMap {
            FileManager.default.isExecutableFile(atPath: $0 + "/postgres") ? $0 : nil
        }
    }

    static var redisAvailable: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-benchmark")
    }

    /// Whether the namespace cluster and both servers can run here.
    static var available: Bool {
        NetnsCluster.available && postgresBin != nil && redisAvailable && getpwnam("postgres") != nil
    }

    /// `ip netns exec` into `host`'s namespace of `cluster`, running `arguments`.
    static func inHost(_ cluster: NetnsCluster, _ host: String, _ arguments: [String]) -> [String] {
        ["netns", "exec", "\(cluster.prefix)-\(host)"] + arguments
    }
}

struct DatabaseSetupFailed: Error, CustomStringConvertible { var description: String }

/// A PostgreSQL server in a namespace host: a fresh data directory (owned by the `postgres`
/// user, outside the test's private scratch directory), listening on 127.0.0.1 (where the
/// host's agent connects) and on the host's fabric address (for direct-TCP comparisons).
final class PostgresServer {
    let directory: String
    let process: ToolProcess
    let cluster: NetnsCluster
    let host: String

    init(in cluster: NetnsCluster, host: String, address: String, port: Int = 5432) throws {
        guard let bin = DatabaseServers.postgresBin, let user = getpwnam("postgres") else {
            throw DatabaseSetupFailed(description: "PostgreSQL is not installed")
        }
        self.cluster = cluster
        self.host = host
        directory = "/tmp/vio-pg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        chown(directory, user.pointee.pw_uid, user.pointee.pw_gid)
        let initdb = try Tools.run("/usr/sbin/runuser", ["-u", "postgres", "--", bin + "/initdb", "-D", directory + "/data",
                                                         "-A", "trust", "-U", "postgres", "--no-sync"])
        guard initdb.status == 0 else { throw DatabaseSetupFailed(description: "initdb: \(initdb.stdout)\(initdb.stderr)") }
        // Direct connections from the other namespace hosts (the comparison runs).
        let hba = directory + "/data/pg_hba.conf"
        let handle = FileHandle(forWritingAtPath: hba)
        handle?.seekToEndOfFile()
        handle?.write(Data("host all all 198.18.0.0/15 trust\n".utf8))
        handle?.closeFile()
        process = try ToolProcess("/usr/sbin/ip", DatabaseServers.inHost(cluster, host, [
            "/usr/sbin/runuser", "-u", "postgres", "--", bin + "/postgres", "-D", directory + "/data",
            "-c", "listen_addresses=127.0.0.1,\(address)", "-c", "port=\(port)", "-c", "unix_socket_directories=\(directory)",
            "-c", "max_connections=200", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "log_min_messages=info", "-c", "logging_collector=off",
        ]))
        let ready = Tools.waitUntil(timeout: 30) {
            (try? Tools.run("/usr/sbin/ip", DatabaseServers.inHost(cluster, host, [bin + "/pg_isready", "-h", "127.0.0.1", "-p", "\(port)"])))?.status == 0
        }
        guard ready else { throw DatabaseSetupFailed(description: "postgres did not start: \(Tools.contents(process.stderrFile))") }
    }

    /// What the server logged.
    var log: String { Tools.contents(process.stderrFile) }

    deinit {
        // The postmaster is runuser's child: a fast shutdown of the whole group.
        process.kill(SIGINT)
        _ = try? Tools.run("/usr/bin/pkill", ["-INT", "-f", "-u", "postgres", "postgres -D \(directory)/data"])
        _ = process.finish(timeout: 10)
        _ = try? Tools.run("/usr/bin/pkill", ["-KILL", "-f", "-u", "postgres", "postgres -D \(directory)/data"])
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A Redis server in a namespace host, on 127.0.0.1 and the host's fabric address, with
/// persistence off.
final class RedisServer {
    let process: ToolProcess
    let directory = Tools.scratchDirectory()

    init(in cluster: NetnsCluster, host: String, address: String, port: Int = 6379) throws {
        process = try ToolProcess("/usr/sbin/ip", DatabaseServers.inHost(cluster, host, [
            "/usr/bin/redis-server", "--port", "\(port)", "--bind", "127.0.0.1", address, "--save", "", "--appendonly", "no",
            "--protected-mode", "no", "--dir", directory, "--maxclients", "1000",
        ]))
        let ready = Tools.waitUntil(timeout: 20) {
            (try? Tools.run("/usr/sbin/ip", DatabaseServers.inHost(cluster, host, ["/usr/bin/redis-cli", "-p", "\(port)", "ping"])))?.stdout.contains("PONG") == true
        }
        guard ready else { throw DatabaseSetupFailed(description: "redis-server did not start: \(process.output)") }
    }

    deinit {
        process.kill(SIGTERM)
        if process.finish(timeout: 10) == -1 { process.kill() }
    }
}
