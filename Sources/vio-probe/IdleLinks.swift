import ArgumentParser
import VIO
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// Many idle links, for measuring what they cost the agent.
struct IdleLinks: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "idle-links",
        abstract: "Attach as PREFIX1..PREFIXn, open the link between every pair, print 'ready', then idle until killed.",
        discussion: "Across hosts: with --to-prefix, each instance opens a link to every TO-PREFIX1..TO-PREFIXm (on another host) instead; with --accept-each, each accepts that many links and opens none.")

    @Option(help: "Instance name prefix.") var prefix = "i"
    @Option(help: "Number of instances (the topology must link them all).") var instances = 2
    @Option(help: "The agent's control socket.") var socket: String?
    @Option(help: "Open links to TO-PREFIX1..TO-PREFIXm instead of between the own instances.") var toPrefix: String?
    @Option(help: "How many instances --to-prefix names.") var toCount = 0
    @Option(help: "Accept this many links per instance (the far side opens them).") var acceptEach = 0

    func run() throws {
        let names = (1...instances).map { "\(prefix)\($0)" }
        var clients: [VIOClient] = []
        var links: [Link] = []
        do {
            for name in names { clients.append(try VIOClient.attach(as: name, socketPath: socket)) }
            if let toPrefix {
                for client in clients {
                    for j in 1...max(1, toCount) { links.append(try client.openLink(to: "\(toPrefix)\(j)", timeout: .seconds(60))) }
                }
                say("ready links=\(links.count)")
                while true { pause() }
            }
            if acceptEach > 0 {
                for client in clients {
                    for _ in 0..<acceptEach { links.append(try client.acceptLink(timeout: .seconds(120))) }
                }
                say("ready links=\(links.count)")
                while true { pause() }
            }
            for i in clients.indices {
                for j in clients.indices where j > i {
                    links.append(try clients[i].openLink(to: names[j]))
                    links.append(try clients[j].acceptLink(timeout: .seconds(10)))
                }
            }
        } catch {
            throw Failure(code: 2, "setting up links failed: \(error)")
        }
        say("ready links=\(links.count / 2)")
        while true { pause() }
    }
}
