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
        abstract: "Attach as PREFIX1..PREFIXn, open the link between every pair, print 'ready', then idle until killed.")

    @Option(help: "Instance name prefix.") var prefix = "i"
    @Option(help: "Number of instances (the topology must link them all).") var instances = 2
    @Option(help: "The agent's control socket.") var socket: String?

    func run() throws {
        let names = (1...instances).map { "\(prefix)\($0)" }
        var clients: [VIOClient] = []
        var links: [Link] = []
        do {
            for name in names { clients.append(try VIOClient.attach(as: name, socketPath: socket)) }
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
