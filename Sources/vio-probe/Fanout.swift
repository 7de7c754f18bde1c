import ArgumentParser
import Synchronization
import VIO
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// Many instances, every link at once, one thread per link: the VIO side of the cross-host
/// fan-out benchmark (the other side is `Benchmarks/c/tcp_fanout.c`, one TCP connection per link).
struct Fanout: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Attach as several instances, open every declared link of each, and stream (send) or drain (receive) all of them at once.",
        discussion: "A sender writes --size messages on every link for --seconds, then closes its links. A receiver drains every link until its peer closes it and prints 'fanout links=N bytes=B seconds=S gb_per_s=R cpu_s=C', timed from the first message to the last.")

    @Option(name: .customLong("as"), help: "Comma-separated instances to attach as (one client each).")
    var instances: String
    @Option(help: "The agent's control socket.") var socket: String?
    @Option(help: "send or receive.") var role: String
    @Option(help: "Message size in bytes.") var size = 16384
    @Option(help: "How long senders stream, in seconds.") var seconds = 5.0
    @Option(help: "How long to wait for every peer, in milliseconds.") var openTimeoutMs = 30_000
    @Flag(help: "Senders build each message in the ring (claim, write an 8-byte sequence number, commit) instead of copying a prepared message in (send).")
    var inPlace = false

    func run() throws {
        guard role == "send" || role == "receive" else { throw ValidationError("--role must be send or receive") }
        var clients: [(String, VIOClient)] = []
        for name in instances.split(separator: ",").map(String.init) {
            do { clients.append((name, try VIOClient.attach(as: name, socketPath: socket))) } catch {
                throw Failure(code: 2, "attach as \(name) failed: \(error)")
            }
        }
        // An open waits for the peer's open, so both sides open their pairs in one global order
        // (the pair's names sorted); otherwise two processes can wait on each other's next pair.
        let pairs = clients.flatMap { name, client in client.peers.map { (name, client, $0.name) } }
            .sorted { [min($0.0, $0.2), max($0.0, $0.2)].lexicographicallyPrecedes([min($1.0, $1.2), max($1.0, $1.2)]) }
        var links: [(String, Link)] = []
        for (name, client, peer) in pairs {
            do {
                let link = try client.openLink(to: peer, timeout: .milliseconds(openTimeoutMs))
                // Many threads on few cores: sleep at once rather than spin.
                link.waitPolicy = .sleep
                links.append(("\(name)->\(peer)", link))
            } catch {
                throw Failure(code: 2, "open \(name) to \(peer) failed: \(error)")
            }
        }
        say("open \(links.count) links")
        let outcome = role == "send" ? pour(links) : drain(links)
        for (_, link) in links { link.close() }
        _ = clients
        if let problem = outcome { throw Failure(code: 3, problem) }
    }

    /// Streams on every link until the deadline; returns the first failure.
    private func pour(_ links: [(String, Link)]) -> String? {
        let failures = Mutex<[String]>([])
        let deadline = MonotonicClock.nanoseconds() + UInt64(seconds * 1e9)
        let threads = links.map { name, link in
            spawn { [size, inPlace] in
                var message = [UInt8](repeating: 0x5A, count: size)
                let outcome = message.withUnsafeMutableBytes { raw in
                    Result { () throws(LinkError) in
                        var sequence: UInt64 = 0
                        while MonotonicClock.nanoseconds() < deadline {
                            sequence &+= 1
                            // What an engine serializing a message does before handing it over:
                            // the stamp stands for its content, written where it is sent from.
                            if inPlace {
                                let buffer = try link.claim(size, timeout: .seconds(60))
                                if size >= 8 { buffer.storeBytes(of: sequence, as: UInt64.self) }
                                try link.commit(size)
                            } else {
                                if size >= 8 { raw.storeBytes(of: sequence, as: UInt64.self) }
                                try link.send(UnsafeRawBufferPointer(raw), timeout: .seconds(60))
                            }
                        }
                    }
                }
                if case .failure(let error) = outcome { failures.withLock { $0.append("\(name): \(error)") } }
            }
        }
        for thread in threads { pthread_join(thread, nil) }
        say("fanout sent links=\(links.count) cpu_s=\(fixed(cpuSeconds()))")
        return failures.withLock { $0.first }
    }

    /// Drains every link until its peer closes it; prints the totals.
    private func drain(_ links: [(String, Link)]) -> String? {
        struct Totals { var bytes = 0; var first = UInt64.max; var last: UInt64 = 0; var failures: [String] = [] }
        let totals = Mutex(Totals())
        let threads = links.map { name, link in
            spawn {
                var bytes = 0
                var first = UInt64.max
                var failure: String?
                while true {
                    do throws(LinkError) {
                        bytes += try link.receive(timeout: .seconds(60)) { $0.count }
                        if first == .max { first = MonotonicClock.nanoseconds() }
                    } catch .peerClosed {
                        break
                    } catch {
                        failure = "\(name): \(error)"
                        break
                    }
                }
                let now = MonotonicClock.nanoseconds()
                totals.withLock {
                    $0.bytes += bytes
                    $0.first = min($0.first, first)
                    $0.last = max($0.last, now)
                    if let failure { $0.failures.append(failure) }
                }
            }
        }
        for thread in threads { pthread_join(thread, nil) }
        let result = totals.withLock { $0 }
        if let failure = result.failures.first { return failure }
        let elapsed = Double(result.last &- result.first) / 1e9
        say("fanout links=\(links.count) bytes=\(result.bytes) seconds=\(fixed(elapsed)) gb_per_s=\(fixed(Double(result.bytes) / elapsed / 1e9)) cpu_s=\(fixed(cpuSeconds()))")
        return nil
    }

    /// User plus system time of this process so far.
    private func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
            + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    private func fixed(_ value: Double) -> String { String(Double(Int(value * 1000)) / 1000) }
}
