import Foundation
import VIOLinux

/// Runs the built `vio-agent` and `vioctl` as real processes.
enum Tools {
    /// The directory holding the built products: the test bundle sits beside them.
    static let binDirectory: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("vio-agent").path), url.path != "/" {
            url.deleteLastPathComponent()
        }
        return url.path
    }()

    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// A fresh directory for one test's sockets and files.
    static func scratchDirectory() -> String {
        let path = NSTemporaryDirectory() + "vio-test-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A configured process whose stdout and stderr go to files (no pipe can fill and block it).
    static func process(_ tool: String, _ arguments: [String], environment: [String: String] = [:])
        -> (Process, stdout: String, stderr: String) {
        let p = Process()
        // A bare name is one of our tools; an absolute path is a system program.
        p.executableURL = URL(fileURLWithPath: tool.hasPrefix("/") ? tool : binDirectory + "/" + tool)
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["VIO_CONTROL_SOCKET"] = nil
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let dir = scratchDirectory()
        let out = dir + "/stdout", err = dir + "/stderr"
        FileManager.default.createFile(atPath: out, contents: nil)
        FileManager.default.createFile(atPath: err, contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: out)
        p.standardError = FileHandle(forWritingAtPath: err)
        return (p, out, err)
    }

    /// Starts `p` with no signal blocked. Tests run on Dispatch's worker threads, which block
    /// nearly every signal, and a child inherits its spawning thread's mask: pgbench's `-T`
    /// timer (SIGALRM) never fired, and SIGTERM did not stop a child.
    static func start(_ p: Process) throws {
        var all = sigset_t(), saved = sigset_t()
        sigemptyset(&all)
        pthread_sigmask(SIG_SETMASK, &all, &saved)
        defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
        try p.run()
    }

    /// Polls `condition` every `pollMicroseconds` until it holds (true) or `timeout` passes
    /// (false): a liveness bound, never a speed test.
    static func waitUntil(timeout: TimeInterval, pollMicroseconds: UInt32 = 20_000, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            usleep(pollMicroseconds)
        }
        return false
    }

    static func contents(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    /// Runs to completion (killed after `timeout` seconds: a liveness bound, not a speed test).
    static func run(_ tool: String, _ arguments: [String], environment: [String: String] = [:],
                    timeout: TimeInterval = 60) throws -> Result {
        let (p, out, err) = process(tool, arguments, environment: environment)
        try Tools.start(p)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(5_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: contents(out), stderr: contents(err))
    }
}

/// A `vio-agent` running in the background for one test.
final class RunningAgent {
    let process: Process
    let socket: String
    /// The file the agent logs to.
    let logFile: String

    init(arguments: [String] = [], environment: [String: String] = [:], socket: String) throws {
        self.socket = socket
        let (p, _, err) = Tools.process("vio-agent", arguments + ["--control-socket", socket], environment: environment)
        process = p
        logFile = err
        try Tools.start(p)
        let deadline = Date().addingTimeInterval(20)
        // Connectable, not merely present: a killed agent leaves its socket file behind.
        while (try? UnixSocket.connect(path: socket)) == nil {
            guard p.isRunning, Date() < deadline else {
                throw AgentDidNotStart(stderr: Tools.contents(err))
            }
            usleep(5_000)
        }
    }

    struct AgentDidNotStart: Error { var stderr: String }

    /// Sends SIGTERM and waits; returns the exit status and everything it logged.
    func stop(signal: Int32 = SIGTERM) -> (Int32, String) {
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        return (process.terminationStatus, Tools.contents(logFile))
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// A background tool process (e.g. `vio-probe`) whose output can be awaited line by line.
final class ToolProcess {
    let process: Process
    let stdoutFile: String
    let stderrFile: String
    var pid: Int32 { process.processIdentifier }

    init(_ tool: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        let (p, out, err) = Tools.process(tool, arguments, environment: environment)
        process = p
        stdoutFile = out
        stderrFile = err
        try Tools.start(p)
    }

    var output: String { Tools.contents(stdoutFile) }

    /// Waits until stdout contains `text`; false on exit or timeout (a liveness bound).
    @discardableResult
    func waitFor(_ text: String, timeout: TimeInterval = 30) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if output.contains(text) { return true }
            if !process.isRunning { return output.contains(text) }
            usleep(2_000)
        }
        return false
    }

    /// Waits for exit; returns the status (or -1 if still running after `timeout`).
    func finish(timeout: TimeInterval = 60) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(2_000) }
        if process.isRunning { return -1 }
        return process.terminationStatus
    }

    func kill(_ signal: Int32 = SIGKILL) { Foundation.kill(pid, signal) }

    deinit {
        if process.isRunning { Foundation.kill(pid, SIGKILL) }
    }
}

/// A scratch directory holding a test topology and the agent serving it.
final class FabricFixture {
    let directory = Tools.scratchDirectory()
    let agent: RunningAgent
    var socket: String { agent.socket }
    var topology: String { directory + "/topology.yaml" }

    /// `instances`/`links` are YAML list bodies (already indented by two spaces).
    init(instances: String, links: String, defaults: String = "") throws {
        let text = """
            cluster: test
            version: 1
            \(defaults.isEmpty ? "" : "defaults:\n" + defaults)
            hosts:
              - { name: local, address: 127.0.0.1, transport: tcp }
            instances:
            \(instances)
            links:
            \(links)
            """
        try text.replacingOccurrences(of: "DIR", with: directory).write(toFile: directory + "/topology.yaml", atomically: true, encoding: .utf8)
        agent = try RunningAgent(arguments: ["--topology", directory + "/topology.yaml"], socket: directory + "/agent.sock")
    }

    /// The standard fixture: db1-db2, db1-secure (token), db2-db3 (small ring), other-user (uid 65534).
    static func standard() throws -> FabricFixture {
        let fixture = try FabricFixture(instances: """
              - { name: db1, host: local }
              - { name: db2, host: local }
              - { name: db3, host: local }
              - { name: secure, host: local, token_file: DIR/secure.token }
              - { name: other-user, host: local, uid: 65534 }
            """, links: """
              - between: [db1, db2]
              - between: [db1, secure]
              - { between: [db2, db3], ring_size: 4KiB }
              - between: [db1, other-user]
            """)
        try "correct-horse\n".write(toFile: fixture.directory + "/secure.token", atomically: true, encoding: .utf8)
        try "wrong-horse\n".write(toFile: fixture.directory + "/wrong.token", atomically: true, encoding: .utf8)
        return fixture
    }

    /// Starts `vio-probe` against this agent.
    func probe(_ arguments: [String]) throws -> ToolProcess {
        try ToolProcess("vio-probe", arguments + ["--socket", socket])
    }

    /// Runs `vio-probe` to completion.
    func runProbe(_ arguments: [String]) throws -> Tools.Result {
        try Tools.run("vio-probe", arguments + ["--socket", socket])
    }

    func status() throws -> String {
        try Tools.run("vioctl", ["status", "--socket", socket]).stdout
    }

    /// Open file descriptors of the agent.
    var agentDescriptors: Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(agent.process.processIdentifier)/fd").count) ?? -1
    }

    /// Link regions the agent has mapped.
    var agentLinkMappings: Int {
        // /proc files report size 0: read to end of file, not one chunk.
        let data = FileHandle(forReadingAtPath: "/proc/\(agent.process.processIdentifier)/maps")?.readDataToEndOfFile() ?? Data()
        let maps = String(decoding: data, as: UTF8.self)
        return maps.split(separator: "\n").filter { $0.contains("vio-link-") }.count
    }

    /// utime + stime of the agent in clock ticks.
    var agentCPUTicks: Int { Tools.cpuTicks(pid: agent.process.processIdentifier) }

    /// Waits until `vioctl status` shows `text` (liveness bound).
    func waitForStatus(_ text: String, timeout: TimeInterval = 10) throws -> Bool {
        try Tools.waitUntil(timeout: timeout, pollMicroseconds: 10_000) { try status().contains(text) }
    }
}

extension Tools {
    /// utime + stime of a process in clock ticks, -1 if it cannot be read. Fields are counted
    /// after the ")" closing the command name, which may itself contain spaces.
    static func cpuTicks(pid: Int32) -> Int {
        let data = FileHandle(forReadingAtPath: "/proc/\(pid)/stat")?.readDataToEndOfFile() ?? Data()
        let fields = String(decoding: data, as: UTF8.self).split(separator: ")").last?.split(separator: " ") ?? []
        return fields.count > 13 ? (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0) : -1
    }

    /// Runs a tool as another uid and gid (root only), through setpriv(1).
    static func runAs(uid: Int, _ tool: String, _ arguments: [String], timeout: TimeInterval = 60) throws -> Result {
        let (p, out, err) = process(tool, arguments)
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments = ["--reuid", "\(uid)", "--regid", "\(uid)", "--clear-groups", binDirectory + "/" + tool] + arguments
        try Tools.start(p)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(5_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: contents(out), stderr: contents(err))
    }
}
