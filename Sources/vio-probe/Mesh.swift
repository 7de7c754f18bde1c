import ArgumentParser
import VIO
import VIOLinux
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Every link of one instance at once: the all-to-all drill of the multi-host tests.
struct Mesh: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open links to every declared peer, send self-checking messages on all of them and verify what every peer sends.",
        discussion: "Each link carries --count messages each way, sizes random up to --max-size (most small, some large). Prints 'mesh verified N links' when every message from every peer arrived intact and in order.")

    @Option(name: .customLong("as"), help: "The instance to attach as.") var instance: String
    @Option(help: "The agent's control socket.") var socket: String?
    @Option(help: "Messages per link and direction.") var count = 20
    @Option(help: "Largest message in bytes.") var maxSize = 1 << 20
    @Option(help: "How long to wait for every peer, in milliseconds.") var openTimeoutMs = 30_000
    @Flag(help: "Sleep at once when a link is empty or full (no spinning): many links and threads on few cores.")
    var sleep = false

    func run() throws {
        let client: VIOClient
        do { client = try VIOClient.attach(as: instance, socketPath: socket) } catch {
            throw Failure(code: 2, "attach failed: \(error)")
        }
        say("attached as \(instance) with \(client.peers.count) peers")
        var links: [(String, Link)] = []
        for peer in client.peers {
            do {
                let link = try client.openLink(to: peer.name, timeout: .milliseconds(openTimeoutMs))
                if sleep { link.waitPolicy = .sleep }
                links.append((peer.name, link))
            } catch {
                throw Failure(code: 2, "open to \(peer.name) failed: \(error)")
            }
        }
        say("open \(links.count) links")
        let failures = Mutex<[String]>([])
        var threads: [pthread_t] = []
        for (peer, link) in links {
            // Seeded by the link's direction, so a failing size sequence can be replayed.
            let seed = "\(instance)->\(peer)".utf8.reduce(UInt64(0xCBF2_9CE4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
            threads.append(spawn { [count, maxSize] in
                do {
                    var rng = SplitMix(seed: seed)
                    for sequence in 0..<UInt64(count) {
                        try link.send(CheckedMessage.make(sequence: sequence, size: rng.messageSize(max: maxSize)),
                                      timeout: .seconds(120))
                    }
                } catch {
                    failures.withLock { $0.append("send to \(peer): \(error)") }
                }
            })
            threads.append(spawn { [count] in
                do {
                    for expected in 0..<UInt64(count) {
                        let got = try link.receive(timeout: .seconds(120)) { CheckedMessage.check($0) }
                        guard got == expected else {
                            failures.withLock {
                                $0.append(got == nil ? "message \(expected) from \(peer) is corrupted"
                                                     : "message \(got!) from \(peer) arrived where \(expected) was expected")
                            }
                            return
                        }
                    }
                } catch {
                    failures.withLock { $0.append("receive from \(peer): \(error)") }
                }
            })
        }
        for thread in threads { pthread_join(thread, nil) }
        let problems = failures.withLock { $0 }
        guard problems.isEmpty else { throw Failure(code: 3, problems.joined(separator: "; ")) }
        say("mesh verified \(links.count) links")
        for (_, link) in links { link.close() }
    }
}

/// A small deterministic generator, so a failing size sequence can be replayed.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Mostly small messages, some medium, a few up to `max`.
    mutating func messageSize(max: Int) -> Int {
        let r = next() % 10
        let limit = r < 7 ? Swift.min(4096, max) : r < 9 ? Swift.min(256 * 1024, max) : max
        return 16 + Int(next() % UInt64(Swift.max(1, limit - 15)))
    }
}

/// Runs `body` on a new POSIX thread.
func spawn(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    pthread_create(&thread, nil, { raw in
        let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
        box.body()
        return nil
    }, box)
    return thread
}
