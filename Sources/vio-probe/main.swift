import ArgumentParser
import VIO
import VIOLinux
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

/// `vio-probe`: an instance that attaches to the local agent and exercises one link.
struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vio-probe",
        abstract: "Attach as an instance and exercise a link: round trips, checked streams, failure drills; or check proxied TCP services (tcp-echo, tcp-check).",
        discussion: "Progress lines go to stdout unbuffered, so scripts can wait for 'ready'. Exit status: 0 done, 2 attach or open refused, 3 link failed.",
        subcommands: [Ping.self, Echo.self, Rate.self, Sink.self, Stream.self, Verify.self, Hold.self, Scribble.self, IdleLinks.self, Mesh.self, Fanout.self,
                      TCPEcho.self, TCPCheck.self])
}

/// Options every subcommand shares: who to attach as and which peer to link with.
struct Endpoint: ParsableArguments {
    @Option(name: .customLong("as"), help: "The instance to attach as.")
    var instance: String

    @Option(help: "The peer instance. Without it, wait for the peer to open the link.")
    var peer: String?

    @Option(help: "The agent's control socket. Default: $VIO_CONTROL_SOCKET or the only socket in the runtime directory.")
    var socket: String?

    @Option(help: "Token file for instances that need one.")
    var tokenFile: String?

    @Option(help: "How long to wait for the peer, in milliseconds.")
    var openTimeoutMs: Int = 10_000

    @Option(help: "Wait policy: busy (spin), spin (spin as long as waits usually take, then sleep: the default), spin50 (a fixed 50 µs spin, then sleep), sleep.")
    var wait: String = "spin"

    @Option(help: "Pin this process to a CPU (for measurements).")
    var cpu: Int?

    func connect() throws -> (VIOClient, Link) {
        if let cpu { try? CPULocation.pinCurrentThread(to: cpu) }
        let client: VIOClient
        do {
            if let tokenFile {
                client = try VIOClient.attach(as: instance, socketPath: socket, tokenFile: tokenFile)
            } else {
                client = try VIOClient.attach(as: instance, socketPath: socket)
            }
        } catch {
            throw Failure(code: 2, "attach failed: \(error)")
        }
        say("attached as \(instance) (cluster \(client.cluster), host \(client.host))")
        let timeout = Duration.milliseconds(openTimeoutMs)
        let link: Link
        do {
            link = try peer.map { try client.openLink(to: $0, timeout: timeout) } ?? client.acceptLink(timeout: timeout)
        } catch {
            throw Failure(code: 2, "open failed: \(error)")
        }
        link.waitPolicy = try policy()
        say("link open to \(link.peerName)")
        return (client, link)
    }

    func policy() throws -> WaitPolicy {
        switch wait {
        case "busy": return .busyPoll
        case "spin": return .default
        case "spin50": return .spinThenSleep(spinNanoseconds: 50_000)
        case "sleep": return .sleep
        default: throw ValidationError("--wait must be busy, spin (the default: adaptive), spin50 (a fixed 50 µs spin) or sleep")
        }
    }
}

/// A failure with the exit status it maps to.
struct Failure: Error, CustomStringConvertible {
    var code: Int32
    var description: String
    init(code: Int32, _ text: String) {
        self.code = code
        description = text
    }
}

/// Prints one line, escaped: errors quote names and reasons from the agent and shared memory.
func say(_ line: String) { StandardStreams.out(DisplaySafe.escape(line) + "\n") }

func linkFailure(_ error: LinkError) -> Failure { Failure(code: 3, "link failed: \(error)") }

do {
    var command = try Probe.parseAsRoot()
    try command.run()
} catch let failure as Failure {
    StandardStreams.out(DisplaySafe.escape(failure.description) + "\n")
    exit(failure.code)
} catch {
    Probe.exit(withError: error)
}
