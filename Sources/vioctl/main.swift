import ArgumentParser
import VIO
import VIOTopology
import VIOLinux
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

/// `vioctl`: the operator's tool.
struct VIOCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vioctl",
        abstract: "Operate a VIO fabric: check topology files and read an agent's state.",
        subcommands: [TopologyCommand.self, StatusCommand.self, HealthCommand.self, ReloadCommand.self, KeysCommand.self])
}

/// Where to find the agent's control socket, shared by commands that talk to an agent.
struct AgentLocation: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The agent's control socket. Overrides --topology/--host.", valueName: "path"))
    var socket: String?

    @Option(name: .shortAndLong, help: ArgumentHelp("Topology file, to find the host's control socket. Default: the embedded single-host topology.",
                                                    valueName: "file"))
    var topology: String?

    @Option(name: .long, help: ArgumentHelp("Host whose agent to ask. Default: the topology's only host.", valueName: "name"))
    var host: String?

    /// The socket path, resolved the same way `vio-agent` resolves it.
    func socketPath() throws -> String {
        if let socket { return socket }
        let (t, source) = try loadTopologyOrExit(topology)
        let name: String
        if let host { name = host } else if t.hosts.count == 1 { name = t.hosts[0].name } else {
            throw ValidationError("\(source) declares several hosts; pass --host NAME")
        }
        let fallback = Topology.defaultControlSocket(host: name)
        guard let view = t.view(for: name, controlSocket: fallback) else {
            throw ValidationError("host '\(name)' is not declared in \(source)")
        }
        return view.controlSocket
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a running agent's state: instances, links, transport.")

    @OptionGroup var location: AgentLocation
    @Flag(help: "Print the state as JSON (schema vio.status, version 1; see docs/status-json.md).")
    var json = false

    func run() throws {
        let path = try location.socketPath()
        let status: AgentStatus
        do {
            let channel = try AgentChannel(path: path, role: .observer, software: "vioctl")
            status = try channel.status()
        } catch {
            // The agent's reasons quote names from clients and far agents.
            throw FailureMessage(DisplaySafe.escape(error.description))
        }
        print(json ? try StatusJSON.render(status) : StatusPrinter.render(status, socket: path), terminator: "")
    }
}

struct HealthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Ask another host's agent for its state, over the fabric (through the local agent).")

    @Argument(help: ArgumentHelp("The remote host whose agent to ask.", valueName: "host"))
    var remoteHost: String

    @OptionGroup var location: AgentLocation
    @Flag(help: "Print the state as JSON (as status --json).")
    var json = false

    func run() throws {
        let path = try location.socketPath()
        let status: AgentStatus
        do {
            let channel = try AgentChannel(path: path, role: .observer, software: "vioctl")
            status = try channel.health(of: remoteHost)
        } catch {
            // The agent's reasons quote names from clients and far agents.
            throw FailureMessage(DisplaySafe.escape(error.description))
        }
        print(json ? try StatusJSON.render(status) : StatusPrinter.render(status, socket: "(remote, via \(path))"), terminator: "")
    }
}

struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Make a running agent re-read its topology file and apply what changed (as SIGHUP does).",
        discussion: "Added instances, links, services and peer hosts go live; removed ones close with the reason "
            + "\"removed from the topology\"; links nothing changed keep flowing. Prints what changed, and settings "
            + "that wait for a restart. Exit status: 0 applied (or nothing changed), 1 the file has errors or "
            + "the agent refused (nothing was changed).")

    @OptionGroup var location: AgentLocation

    func run() throws {
        let path = try location.socketPath()
        let applied: [String]
        do {
            let channel = try AgentChannel(path: path, role: .observer, software: "vioctl")
            applied = try channel.reload()
        } catch {
            // Escaped line by line: a file's diagnostics come one per line.
            throw FailureMessage(error.description.split(separator: "\n", omittingEmptySubsequences: false).map { DisplaySafe.escape($0) }.joined(separator: "\n"))
        }
        print(applied.isEmpty ? "unchanged" : applied.map { DisplaySafe.escape($0) }.joined(separator: "\n"))
    }
}

/// An error printed as is, exiting 1.
struct FailureMessage: Error, CustomStringConvertible {
    var description: String
    init(_ text: String) { description = text }
}


func loadTopologyOrExit(_ path: String?) throws -> (Topology, String) {
    do {
        if let path { return (try TopologyLoader.load(path: path).0, path) }
        return (try TopologyLoader.parse(text: EmbeddedTopology.text, file: EmbeddedTopology.source).0,
                EmbeddedTopology.source)
    } catch {
        throw FailureMessage(error.description)
    }
}

do {
    var command = try VIOCtl.parseAsRoot()
    try command.run()
} catch let failure as FailureMessage {
    StandardStreams.error("vioctl: \(failure.description)\n")
    exit(1)
} catch {
    VIOCtl.exit(withError: error)
}

