import Foundation

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
        p.executableURL = URL(fileURLWithPath: binDirectory + "/" + tool)
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

    static func contents(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    /// Runs to completion (killed after `timeout` seconds: a liveness bound, not a speed test).
    static func run(_ tool: String, _ arguments: [String], environment: [String: String] = [:],
                    timeout: TimeInterval = 60) throws -> Result {
        let (p, out, err) = process(tool, arguments, environment: environment)
        try p.run()
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

    init(arguments: [String] = [], socket: String) throws {
        self.socket = socket
        let (p, _, err) = Tools.process("vio-agent", arguments + ["--control-socket", socket])
        process = p
        logFile = err
        try p.run()
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: socket) {
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
