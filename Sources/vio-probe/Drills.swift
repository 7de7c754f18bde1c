import ArgumentParser
import VIO
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// Self-checking messages: sequence number, checksum, then payload derived from both.
enum CheckedMessage {
    /// `[sequence u64][checksum u64][payload]`, payload from a xorshift seeded by the sequence.
    static func make(sequence: UInt64, size: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: max(16, size))
        var x = sequence &* 0x9E37_79B9_7F4A_7C15 | 1
        bytes.withUnsafeMutableBytes { raw in
            var offset = 16
            while offset < raw.count {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17
                let n = min(8, raw.count - offset)
                withUnsafeBytes(of: x) { raw.baseAddress!.advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: n) }
                offset += 8
            }
            let sum = checksum(UnsafeRawBufferPointer(rebasing: raw[16...]))
            raw.storeBytes(of: sequence.littleEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: sum.littleEndian, toByteOffset: 8, as: UInt64.self)
        }
        return bytes
    }

    /// FNV-1a over 8-byte words, then the tail bytes.
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325 ^ UInt64(bytes.count)
        let words = bytes.count / 8
        for i in 0..<words { h = (h ^ bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) &* 0x100_0000_01B3 }
        for i in (words * 8)..<bytes.count { h = (h ^ UInt64(bytes[i])) &* 0x100_0000_01B3 }
        return h
    }

    /// The sequence number if the message is intact.
    static func check(_ m: UnsafeRawBufferPointer) -> UInt64? {
        guard m.count >= 16 else { return nil }
        let sequence = UInt64(littleEndian: m.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        let sum = UInt64(littleEndian: m.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        return checksum(UnsafeRawBufferPointer(rebasing: m[16...])) == sum ? sequence : nil
    }
}

struct Stream: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send self-checking messages of random sizes (the peer runs 'verify').")

    @OptionGroup var endpoint: Endpoint
    @Option(help: "Messages to send.") var count = 1000
    @Option(help: "Largest message in bytes (sizes are random from 16).") var maxSize = 4096
    @Option(help: "Messages per second (0: as fast as the link takes them): traffic that lasts while a test changes things around it.")
    var rate = 0

    func run() throws {
        let (_, link) = try endpoint.connect()
        var rng = SystemRandomNumberGenerator()
        var sent = 0
        let start = MonotonicClock.nanoseconds()
        do {
            for sequence in 0..<UInt64(count) {
                if rate > 0 {
                    let due = start + sequence * 1_000_000_000 / UInt64(rate)
                    let now = MonotonicClock.nanoseconds()
                    if due > now { usleep(UInt32((due - now) / 1000)) }
                }
                try link.send(CheckedMessage.make(sequence: sequence, size: Int.random(in: 16...maxSize, using: &rng)),
                              timeout: .seconds(30))
                sent += 1
            }
        } catch {
            say("sent \(sent) before the link failed")
            throw linkFailure(error)
        }
        say("sent \(count)")
        // Wait for the verifier to close first, so nothing is cut short.
        do { _ = try link.receive(timeout: .seconds(60)) } catch LinkError.peerClosed {} catch {}
        link.close()
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Receive and check messages from 'stream': order, content, none missing.")

    @OptionGroup var endpoint: Endpoint
    @Option(help: "Messages expected.") var count = 1000
    @Option(help: "Keep the link open this long after verifying (to inspect it), in milliseconds.") var lingerMs = 0

    func run() throws {
        let (_, link) = try endpoint.connect()
        say("ready")
        var verified = 0
        do {
            for expected in 0..<UInt64(count) {
                let got = try link.receive(timeout: .seconds(60)) { CheckedMessage.check($0) }
                guard let got else { throw Failure(code: 3, "message \(expected) is corrupted") }
                guard got == expected else { throw Failure(code: 3, "message \(got) arrived where \(expected) was expected") }
                verified += 1
            }
        } catch let error as LinkError {
            say("verified \(verified) before the link failed")
            throw linkFailure(error)
        }
        say("verified \(count)")
        if lingerMs > 0 { usleep(UInt32(lingerMs) * 1000) }
        link.close()
    }
}

struct Hold: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open the link, print 'ready', then block in receive and report how the link ends.")

    @OptionGroup var endpoint: Endpoint
    @Flag(help: "Never read: a stopped consumer, for head-of-line and flow-control drills.") var stall = false

    func run() throws {
        let (_, link) = try endpoint.connect()
        say("ready")
        if stall {
            while true { sleep(60) }
        }
        do {
            while true { _ = try link.receive() }
        } catch {
            // CLOCK_MONOTONIC is system-wide: another process can compare with its own reading.
            say("link ended at \(MonotonicClock.nanoseconds()) ns: \(error)")
            throw Failure(code: 3, "link failed: \(error)")
        }
    }
}

struct Scribble: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Misbehave: open the link, then write garbage into the ring the peer reads.")

    @OptionGroup var endpoint: Endpoint
    /// What to write instead of a bad tail.
    enum Fragments: String, ExpressibleByArgument {
        /// A message announcing 2,000 bytes followed by 3,000 bytes of fragments.
        case over
        /// Fragments totalling 2,000 bytes for an announced 5,000.
        case under
    }
    @Option(help: "Write well-formed records whose fragments do not add up to the announced length: over or under.")
    var fragments: Fragments?

    func run() throws {
        let (_, link) = try endpoint.connect()
        let ring = link.region.ringBase(1 - link.end)
        if let fragments {
            // Records a correct libvio never writes: every header is valid, only the sum is wrong.
            let producer = RingProducer(region: link.region, ring: 1 - link.end, doorbell: -1)
            let sizes = fragments == .over ? [1000, 1000, 1000] : [1000, 1000]
            let announced = fragments == .over ? 2000 : 5000
            let chunk = [UInt8](repeating: 0x5A, count: 1000)
            for (i, size) in sizes.enumerated() {
                let flags = (i == 0 ? RegionLayout.Record.first : 0) | (i == sizes.count - 1 ? RegionLayout.Record.last : 0)
                guard let p = try producer.reserve(payload: size) else { throw Failure(code: 2, "no room in the ring") }
                chunk.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: size) }
                producer.commit(payload: size, flags: flags, total: i == 0 ? announced : 0)
            }
        } else {
            // A tail far beyond anything the ring can hold (after our last send, which would
            // rewrite it).
            ring.storeBytes(of: UInt64(1) << 40, toByteOffset: RegionLayout.Ring.tail, as: UInt64.self)
        }
        link.wakePeer()
        say("scribbled")
        do {
            while true { _ = try link.receive(timeout: .seconds(10)) }
        } catch {
            say("link ended: \(error)")
        }
    }
}
