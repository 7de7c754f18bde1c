import DequeModule
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

/// What a channel must remember about the payloads it lets the far agent pull by RDMA READ
/// (plaintext pairs): which loans are out, which of its memory is registered, and the pull it
/// is itself waiting for.
///
/// The protocol (docs/rdma.md): instead of a large lent payload, the sender puts a PULL
/// carrier frame in the stream: the frame's header and prefix, the payload's address in the
/// link's registered region, its rkey and a token. The receiver reserves the frame's place in
/// its instance's ring (or a registered bounce buffer when the fabric offers none), READs the
/// payload straight into it, delivers the frame, and answers RELEASED with the token; only then
/// does the sender let the lender reuse the ring space. Frames behind a PULL wait until its
/// READ completes, so nothing is reordered.
final class PayloadPulls {
    /// Payloads at least this large are pulled; smaller ones are copied into the stream: a pull
    /// adds a crossing of the network (PULL, then READ) and a wake-up of the receiving agent,
    /// which is worth a copy only for large payloads. Where the break-even lies needs RDMA
    /// hardware to settle (docs/performance.md: on the emulated lab, copying won at 64 KiB).
    /// `VIO_RDMA_PULL_BYTES` in the agent's environment overrides it (0: never pull), so
    /// benchmarks can run both paths side by side.
    static let threshold: Int = {
        if let text = getenv("VIO_RDMA_PULL_BYTES").map({ String(cString: $0) }), let n = Int(text), n >= 0 {
            return n == 0 ? Int.max : n
        }
        return 64 * 1024
    }()
    /// One READ moves at most this much: a frame's payload (up to 1 MiB) is pulled in pieces,
    /// ``RDMAQueuePair/readsInFlight`` at a time, so a READ's burst of response packets stays
    /// small (soft-RoCE over an emulated wire dropped 1 MiB bursts and stalled for its retry
    /// timeout) while the pieces still overlap.
    static let chunk = 16 * 1024

    /// Per lender, the loans out in order; the lender hears a position once every earlier loan
    /// is done (written inline, or pulled and released by the far agent).
    final class Ledger: PayloadLender {
        let lender: PayloadLender
        private var items = Deque<(seq: UInt64, position: UInt64?, pulled: Bool, done: Bool)>()
        private var nextSeq: UInt64 = 1
        var isEmpty: Bool { items.isEmpty }

        init(_ lender: PayloadLender) { self.lender = lender }

        func add(position: UInt64?, pulled: Bool) -> UInt64 {
            let seq = nextSeq
            nextSeq += 1
            items.append((seq, position, pulled, false))
            return seq
        }

        /// Inline loans through `seq` were written (the output queue reports through this).
        func sent(through seq: UInt64) {
            for i in items.indices where !items[i].pulled && items[i].seq <= seq { items[i].done = true }
            advance()
        }

        /// The far agent pulled the loan `seq`.
        func released(_ seq: UInt64) {
            if let i = items.firstIndex(where: { $0.seq == seq }) { items[i].done = true }
            advance()
        }

        private func advance() {
            var report: UInt64?
            while let first = items.first, first.done {
                if let p = first.position { report = p }
                items.removeFirst()
            }
            if let report { lender.sent(through: report) }
        }
    }

    /// Registered memory, by owner (a link), dropped once the owner is gone. A registration
    /// that failed is remembered as failed (not tried again for every frame).
    struct Registrations {
        private final class Entry {
            weak var owner: AnyObject?
            let registration: MemoryRegistration?
            init(_ owner: AnyObject, _ registration: MemoryRegistration?) {
                self.owner = owner
                self.registration = registration
            }
        }
        private var entries: [ObjectIdentifier: Entry] = [:]
        let remoteRead: Bool

        init(remoteRead: Bool) { self.remoteRead = remoteRead }

        /// `owner`'s `memory`, registered with `queuePair` (once while the owner lives).
        mutating func registration(of owner: AnyObject, _ memory: UnsafeRawBufferPointer,
                                   on queuePair: RDMAQueuePair) -> MemoryRegistration? {
            // Owners that are gone lose their registrations at once: their memory may be
            // unmapped (a registration still pins it) and, lent, stays readable by the peer.
            if entries.values.contains(where: { $0.owner == nil }) { entries = entries.filter { $0.value.owner != nil } }
            let key = ObjectIdentifier(owner)
            if let entry = entries[key], entry.owner === owner {
                return entry.registration?.memory.baseAddress == memory.baseAddress ? entry.registration : nil
            }
            let registration = try? queuePair.register(memory, remoteRead: remoteRead)
            entries[key] = Entry(owner, registration)
            return registration
        }
    }

    var ledgers: [ObjectIdentifier: Ledger] = [:]
    /// Pulled loans by token: whose, and which.
    var out: [UInt64: (ledger: Ledger, seq: UInt64)] = [:]
    var nextToken: UInt64 = 1
    var lent = Registrations(remoteRead: true)
    var placed = Registrations(remoteRead: false)
    /// The pull this end is working on: the frame, where its payload goes (after the prefix,
    /// `prefix` bytes in), its owner, the token, and the far memory and how much of it is here.
    struct Pull {
        var header: FrameHeader
        var destination: UnsafeMutableRawBufferPointer
        var owner: AnyObject?
        var token: UInt64
        var registration: MemoryRegistration
        var prefix: Int
        var remote: UInt64
        var rkey: UInt32
        /// Bytes whose READ was posted, and bytes landed.
        var posted: Int
        var landed: Int
        var count: Int
        /// Sizes of the READs in flight, oldest first (they complete in order).
        var inFlight: Deque<Int> = []
    }
    var pulling: Pull?
    /// A registered buffer for a pulled frame the fabric has no place for (deregistered
    /// before it is freed).
    final class Bounce {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: FrameHeader.maximumPayload, alignment: 64)
        private(set) var registration: MemoryRegistration?

        init(on queuePair: RDMAQueuePair) throws(ChannelError) {
            do { registration = try queuePair.register(UnsafeRawBufferPointer(buffer), remoteRead: false) } catch {
                buffer.deallocate()
                throw error
            }
        }

        deinit {
            registration = nil
            buffer.deallocate()
        }
    }
    var bounce: Bounce?
    /// Whether the far agent takes PULLs (it said so with its SWITCH: it has its bounce buffer).
    var farAcceptsPulls = false

    /// Lets go of every registration and pull (the queue pair is shut down first).
    func release() {
        pulling = nil
        bounce = nil
        lent = Registrations(remoteRead: true)
        placed = Registrations(remoteRead: false)
        ledgers = [:]
        out = [:]
    }

    /// The ledger of `lender`'s loans, made when it has none out.
    func ledger(for lender: PayloadLender) -> Ledger {
        let key = ObjectIdentifier(lender)
        if let l = ledgers[key], l.lender === lender { return l }
        let l = Ledger(lender)
        ledgers[key] = l
        return l
    }

    /// Drops ledgers with nothing out (their lenders may go). Called after every flush: the
    /// dictionary is rebuilt only when one emptied, not whenever pulls are out.
    func pruneLedgers() {
        if ledgers.values.contains(where: \.isEmpty) { ledgers = ledgers.filter { !$0.value.isEmpty } }
    }

    /// A PULL descriptor (after its kind byte): the frame's header, prefix, payload address,
    /// rkey, length, token.
    static func descriptor(header: FrameHeader, prefix: UnsafeRawBufferPointer, address: UInt64,
                           rkey: UInt32, count: Int, token: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        header.encode(to: &w)
        w.write(UInt16(prefix.count))
        w.write(raw: prefix)
        w.write(address)
        w.write(rkey)
        w.write(UInt32(count))
        w.write(token)
        return w.bytes
    }

    /// A PULL descriptor read back; throws on anything malformed.
    static func parse(_ body: [UInt8]) throws(DecodeError) -> (header: FrameHeader, prefix: [UInt8], address: UInt64,
                                                                 rkey: UInt32, count: Int, token: UInt64) {
        var r = ByteReader(body)
        let header = try FrameHeader(from: &r)
        let prefix = try r.readBytes(Int(try r.read(UInt16.self)))
        let address = try r.read(UInt64.self)
        let rkey = try r.read(UInt32.self)
        let count = Int(try r.read(UInt32.self))
        let token = try r.read(UInt64.self)
        guard r.remaining == 0, prefix.count + count == Int(header.length), count > 0,
              Int(header.length) <= FrameHeader.maximumPayload, header.type != .carrier,
              address <= UInt64.max - UInt64(count) else {
            throw .invalid(field: "pull descriptor", value: "\(header.length) = \(prefix.count) + \(count)")
        }
        return (header, prefix, address, rkey, count, token)
    }
}
