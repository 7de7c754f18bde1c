import ArgumentParser
import VIOTopology
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

struct TopologyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topology",
        abstract: "Check and show topology files.",
        subcommands: [Check.self, Show.self, Fingerprint.self])

    struct Fingerprint: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the fingerprint two agents compare in HELLO (hex): the cluster, the pair's keys and security. Different values refuse the pair's channels.",
            discussion: "With --between A B, prints that pair's fingerprint alone; otherwise one line 'A B FINGERPRINT' per pair of hosts.")

        @Argument(help: ArgumentHelp("The topology file. Default: the embedded single-host topology.", valueName: "file"))
        var file: String?

        @Option(name: .long, parsing: .upToNextOption, help: ArgumentHelp("Two host names.", valueName: "host"))
        var between: [String] = []

        func validate() throws {
            guard between.isEmpty || between.count == 2 else { throw ValidationError("--between takes two host names") }
        }

        func run() throws {
            let (t, _) = try loadTopologyOrExit(file)
            if between.count == 2 {
                for name in between where t.host(named: name) == nil {
                    throw ValidationError("no host '\(DisplaySafe.escape(name))' in the topology")
                }
                print(String(TopologyFingerprint.of(t.pairIdentity(between[0], between[1])), radix: 16))
                return
            }
            let names = t.hosts.map(\.name)
            for (i, a) in names.enumerated() {
                for b in names[(i + 1)...] { print("\(a) \(b) \(String(TopologyFingerprint.of(t.pairIdentity(a, b)), radix: 16))") }
            }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate topology files; print every problem as FILE:LINE:COLUMN: error: ...",
            discussion: "Exits 0 when every file is valid (warnings allowed), 1 otherwise.")

        @Argument(help: ArgumentHelp("Topology files to check.", valueName: "file"))
        var files: [String]

        func run() throws {
            var failed = 0
            for file in files {
                do {
                    let (t, warnings) = try TopologyLoader.load(path: file)
                    for w in warnings { print(w) }
                    print("\(file): ok: cluster '\(t.cluster)', \(plural(t.hosts.count, "host")), \(plural(t.instances.count, "instance")), \(plural(t.links.count, "link")), \(plural(t.services.count, "service"))")
                } catch {
                    failed += 1
                    for d in error.diagnostics { print(d) }
                    print("\(file): \(plural(error.errors.count, "error"))")
                }
            }
            if failed > 0 { throw ExitCode(1) }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the resolved topology (every default filled in), for all hosts or one.")

        @Argument(help: ArgumentHelp("The topology file. Default: the embedded single-host topology.", valueName: "file"))
        var file: String?

        @Option(name: .long, help: ArgumentHelp("Show only this host's view: its instances, links, peers and services.",
                                                valueName: "name"))
        var host: String?

        func run() throws {
            let (t, source) = try loadTopologyOrExit(file)
            func view(_ name: String) -> HostView? {
                t.view(for: name, controlSocket: Topology.defaultControlSocket(host: name))
            }
            if let host {
                guard let v = view(host) else {
                    throw FailureMessage("host '\(host)' is not declared in \(source); declared: \(t.hosts.map(\.name).joined(separator: ", "))")
                }
                print(TopologyPrinter.render(v), terminator: "")
            } else {
                print(TopologyPrinter.render(t, views: t.hosts.compactMap { view($0.name) }), terminator: "")
            }
        }
    }
}

func plural(_ count: Int, _ noun: String) -> String { "\(count) \(noun)\(count == 1 ? "" : "s")" }
