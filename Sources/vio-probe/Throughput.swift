import ArgumentParser
import VIO
import VIOLinux

/// One-way streaming: the sender side.
struct Rate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send messages back to back (the peer runs 'sink').")

    @OptionGroup var endpoint: Endpoint
    @Option(help: "Messages to send.") var count = 1_000_000
    @Option(help: "Message size in bytes.") var size = 64
    @Option(help: "Fill messages with this text, repeated (a marker to look for in a capture).") var pattern: String?

    func run() throws {
        let (_, link) = try endpoint.connect()
        let fill = Array((pattern ?? "B").utf8)
        let message = (0..<size).map { fill[$0 % fill.count] }
        let outcome = message.withUnsafeBytes { raw in
            Result { () throws(LinkError) in
                for _ in 0..<count { try link.send(raw, timeout: .seconds(30)) }
            }
        }
        if case .failure(let error) = outcome { throw linkFailure(error) }
        say("sent \(count)")
        do { _ = try link.receive(timeout: .seconds(60)) } catch {}
        link.close()
    }
}

/// One-way streaming: the receiving side, which times the stream.
struct Sink: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Receive messages and report the rate (the peer runs 'rate').")

    @OptionGroup var endpoint: Endpoint
    @Option(help: "Messages expected.") var count = 1_000_000
    @Flag(help: "Read messages in place instead of copying them out (as a receiver that parses in place would).")
    var zeroCopy = false

    /// Receives `count` messages; returns the bytes after the first and when the first came.
    static func drain(_ link: Link, count: Int, copy: Bool) throws(LinkError) -> (Int, UInt64) {
        var bytes = 0
        var start: UInt64 = 0
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: link.region.maxMessage, alignment: 64)
        defer { buffer.deallocate() }
        for i in 0..<count {
            let n = try link.receive(timeout: .seconds(60)) { message -> Int in
                if copy, let source = message.baseAddress { buffer.copyMemory(from: source, byteCount: message.count) }
                return message.count
            }
            if i == 0 { start = MonotonicClock.nanoseconds() } else { bytes += n }
        }
        return (bytes, start)
    }

    func run() throws {
        let (_, link) = try endpoint.connect()
        say("ready")
        let outcome = Result { () throws(LinkError) -> (Int, UInt64) in try Self.drain(link, count: count, copy: !zeroCopy) }
        guard case .success(let (bytes, start)) = outcome else {
            if case .failure(let error) = outcome { throw linkFailure(error) }
            return
        }
        let seconds = Double(MonotonicClock.nanoseconds() - start) / 1e9
        let rate = Double(count - 1) / seconds
        say("rate msgs_per_s=\(Int(rate)) gb_per_s=\(Double(Int(Double(bytes) / seconds / 1e6)) / 1000) n=\(count)")
        link.close()
    }
}
