import ArgumentParser
import Logging
import VIOAgent
import VIOTopology
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// `vio-agent`: the per-host VIO daemon.
struct VIOAgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vio-agent",
        abstract: "The per-host VIO daemon: admits local database instances and sets up their virtual links.",
        discussion: """
        Reads the cluster's topology, serves the host named by --host, and listens on a Unix \
        control socket where instances attach (libvio) and operators ask for state (vioctl). \
        Stops cleanly on SIGTERM or SIGINT, removing its socket.

        With no --topology, the embedded single-host topology (topologies/single-host.yaml) is used.
        """)

    @Option(name: .shortAndLong, help: ArgumentHelp("The topology file (YAML). Default: the embedded single-host topology.",
                                                    valueName: "file"))
    var topology: String?

    @Option(name: .long, help: ArgumentHelp("This machine's host name in the topology. Default: the only host, when there is one.",
                                            valueName: "name"))
    var host: String?

    @Option(name: .long, help: ArgumentHelp("""
        Control socket path. Default: the host's control_socket in the topology, else \
        $VIO_CONTROL_SOCKET, else /run/vio/HOST.sock for root and $XDG_RUNTIME_DIR/vio/HOST.sock \
        (or /tmp/vio/HOST.sock) for other users.
        """, valueName: "path"))
    var controlSocket: String?

    @Option(name: .long, help: ArgumentHelp("""
        This host's private key (PEM, mode 0600, made by `vioctl keys generate`), for encrypted \
        channels. Default: the host's key_file in the topology, else /etc/vio/keys/HOST.key.
        """, valueName: "path"))
    var keyFile: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(name: .long, help: ArgumentHelp("""
        Serve Prometheus metrics at http://ADDRESS:PORT/metrics (overrides the host's \
        metrics_listen in the topology). Default: the topology's, else none.
        """, valueName: "address:port"))
    var metricsListen: String?

    @Flag(name: .long, help: "Check the topology and the host, print the resolved host view, and exit.")
    var check = false

    func run() throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("unknown --log-level '\(logLevel)'; use one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let loaded = try loadTopology()
        for warning in loaded.warnings { StandardStreams.error(warning.description + "\n") }
        let hostName = try resolveHost(loaded.topology, source: loaded.source)
        var configuration = try AgentConfiguration(
            topology: loaded.topology, source: loaded.source, hostName: hostName,
            controlSocket: controlSocket,
            defaultControlSocket: Topology.defaultControlSocket(host: hostName))
        configuration.keyFile = keyFile
        if let metricsListen {
            guard Host.listenAddress(metricsListen) != nil else {
                throw ValidationError("--metrics-listen '\(metricsListen)' is not ADDRESS:PORT (e.g. 127.0.0.1:9464 or [::1]:9464)")
            }
            configuration.view.host.metricsListen = metricsListen
        }
        if check {
            print(TopologyPrinter.render(configuration.view), terminator: "")
            return
        }
        // Every record escaped: peers' strings reach the log (EscapingLogHandler).
        var logger = Logger(label: "vio-agent") { EscapingLogHandler(StreamLogHandler.standardError(label: $0)) }
        logger.logLevel = level
        let agent = try Agent(configuration: configuration, logger: logger)
        try agent.run()
    }

    private func loadTopology() throws -> (topology: Topology, warnings: [Diagnostic], source: String) {
        do {
            if let path = topology {
                let (t, w) = try TopologyLoader.load(path: path)
                return (t, w, path)
            }
            let (t, w) = try TopologyLoader.parse(text: EmbeddedTopology.text, file: EmbeddedTopology.source)
            return (t, w, EmbeddedTopology.source)
        } catch {
            throw AgentError.invalidTopology(error)
        }
    }

    private func resolveHost(_ t: Topology, source: String) throws -> String {
        if let host { return host }
        if t.hosts.count == 1 { return t.hosts[0].name }
        throw ValidationError("\(source) declares \(t.hosts.count) hosts (\(t.hosts.map(\.name).joined(separator: ", "))); pass --host NAME")
    }
}


do {
    let command = try VIOAgentCommand.parse(Array(CommandLine.arguments.dropFirst()))
    try command.run()
} catch let error as AgentError {
    StandardStreams.error("vio-agent: error: \(error)\n")
    exit(2)
} catch {
    VIOAgentCommand.exit(withError: error)
}

