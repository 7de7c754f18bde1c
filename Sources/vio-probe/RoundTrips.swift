import ArgumentParser
import VIO
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// Measures request/response round trips.
struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send requests and time each round trip (the peer runs 'echo').")

    @OptionGroup var endpoint: Endpoint
    @Option(help: "Round trips to time.") var count = 10_000
    @Option(help: "Untimed round trips first.") var warmup = 1_000
    @Option(help: "Request size in bytes.") var size = 64
    @Option(help: "Idle time between round trips, in microseconds (0: back to back).") var idleUs = 0
    @Option(help: "Keep the link open this long after the last round trip (to inspect it), in milliseconds.") var lingerMs = 0

    func run() throws {
        let (_, link) = try endpoint.connect()
        // Options read once: an @Option getter costs a metadata lookup, too much per message.
        let (size, count, warmup, idleUs) = (self.size, self.count, self.warmup, self.idleUs)
        let request = [UInt8](repeating: 0x5A, count: size)
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        do {
            for i in 0..<(warmup + count) {
                if idleUs > 0 { usleep(UInt32(idleUs)) }
                let start = MonotonicClock.nanoseconds()
                try request.withUnsafeBytes { raw in
                    Result { () throws(LinkError) in try link.send(raw, timeout: .seconds(10)) }
                }.get()
                let n = try link.receive(timeout: .seconds(10)) { $0.count }
                let end = MonotonicClock.nanoseconds()
                guard n == size else { throw Failure(code: 3, "reply of \(n) bytes, expected \(size)") }
                if i >= warmup { samples.append(end - start) }
            }
        } catch let error as LinkError {
            throw linkFailure(error)
        }
        samples.sort()
        let p50 = microseconds(samples[samples.count / 2])
        let p99 = microseconds(samples[min(samples.count - 1, samples.count * 99 / 100)])
        let low = microseconds(samples[0]), high = microseconds(samples[samples.count - 1])
        say("rtt_us p50=\(p50) p99=\(p99) min=\(low) max=\(high) n=\(samples.count) size=\(size)")
        if lingerMs > 0 { usleep(UInt32(lingerMs) * 1000) }
        link.close()
    }
}

/// Answers every message with the same bytes.
struct Echo: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Echo every message back until the peer closes the link.")

    @OptionGroup var endpoint: Endpoint
    @Option(help: "Stop after this many messages (0: until the peer closes).") var count = 0

    /// Reads one message in place and claims the reply in the other ring: one copy in all.
    /// Messages too large for one record are copied out and sent (fragmented).
    static func echoOne(_ link: Link) throws(LinkError) {
        let large = try link.receive { message -> [UInt8]? in
            guard message.count <= link.maximumClaim,
                  let buffer = try? link.claim(message.count, timeout: .seconds(10)) else { return Array(message) }
            buffer.copyMemory(from: message)
            return nil
        }
        if let large { try link.send(large, timeout: .seconds(10)) } else { try link.commit(link.claimedBytes) }
    }

    func run() throws {
        let (_, link) = try endpoint.connect()
        say("ready")
        var echoed = 0
        let count = self.count  // read once: an @Option getter is too slow per message
        while count == 0 || echoed < count {
            let outcome = Result { () throws(LinkError) in try Self.echoOne(link) }
            switch outcome {
            case .success: echoed += 1
            case .failure(.peerClosed): say("echoed \(echoed)"); return
            case .failure(let error): throw linkFailure(error)
            }
        }
        say("echoed \(echoed)")
    }
}

/// Nanoseconds as microseconds with two decimals.
func microseconds(_ ns: UInt64) -> String {
    let hundredths = (ns + 5) / 10
    let fraction = hundredths % 100
    return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
}
