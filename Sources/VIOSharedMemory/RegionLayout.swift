/// Byte layout of a link region, version 2 (docs/ring-layout.md has the table).
///
/// A region is one sealed memfd: a 4 KiB header page, then one ring per direction. Ring `e`
/// is read by end `e` and written by the other end. Each ring is a 4 KiB control page (one
/// cache line per writer-owned field) followed by `capacity` bytes of data (a power of two).
public enum RegionLayout {
    /// "VIOLINK1" read as a little-endian u64.
    public static let magic: UInt64 = 0x314B_4E49_4C4F_4956
    /// The layout version this build writes and accepts.
    /// 2: the acknowledged count (offset 384) replaced possiblyLost (136), state `removed`.
    public static let version: UInt32 = 2
    /// Header page size; ring control pages have the same size so ring data is page-aligned
    /// (required to bind it to a NUMA node).
    public static let pageSize = 4096
    /// The cache line size assumed when separating fields written by different processes.
    public static let cacheLine = 64
    /// Longest instance name kept in the header.
    public static let nameBytes = 64

    /// Header field offsets.
    public enum Header {
        public static let magic = 0          // u64
        public static let version = 8        // u32
        public static let headerBytes = 12   // u32
        public static let regionBytes = 16   // u64
        public static let linkID = 24        // u64
        public static let maxMessage = 32    // u64
        public static let ringCount = 40     // u32
        public static let rings = 48         // 2 x { offset u64, capacity u64 }
        public static let state = 128        // u32, atomic: LinkState raw value
        /// u64 on a cache line of its own (the agent stores it per acknowledgement; the state
        /// word, read on every check of an empty ring, must not share its line): messages of
        /// end 0 the far agent acknowledged.
        public static let acknowledged = 384
        public static let names = 192        // 2 x 64 bytes, NUL-padded UTF-8
        public static let peerHost = 320     // 64 bytes: the far end's host (fabric links), else empty
    }

    /// Ring control page offsets, from the ring's start; each on its own cache line.
    public enum Ring {
        public static let tail = 0             // u64, written by the producer (release)
        public static let head = 64            // u64, written by the consumer (release)
        public static let readerArmed = 128    // u32, set by a consumer about to sleep
        public static let writerArmed = 192    // u32, set by a producer waiting for space
        public static let producerCounters = 256  // 4 x u64: messages, bytes, wake-ups sent, full stalls
        public static let consumerCounters = 320  // 4 x u64: messages, bytes, wake-ups received, errors
        public static let readerStalled = 384  // u32, written by the agent: 1 while the reader leaves data unread too long
        public static let data = 4096
    }

    /// Every record starts with this header, and records start on 16-byte boundaries.
    public enum Record {
        public static let headerBytes = 16
        public static let alignment = 16
        public static let length = 0   // u32: payload bytes in this record
        public static let flags = 4    // u16
        public static let reserved = 6 // u16, zero
        public static let total = 8    // u64: whole message length (FIRST records only)

        public static let first: UInt16 = 1
        public static let last: UInt16 = 2
        public static let pad: UInt16 = 4
        /// Discards a fragmented message whose sender gave up (timed out) part-way.
        public static let abort: UInt16 = 8

        /// Bytes a record with `length` payload bytes occupies.
        @inlinable
        public static func size(payload length: Int) -> Int {
            headerBytes + ((length + alignment - 1) & ~(alignment - 1))
        }
    }

    /// Smallest and largest ring data sizes.
    public static let minimumCapacity = 4096
    public static let maximumCapacity = 1 << 30

    /// Total region size for rings of the given capacities.
    public static func regionBytes(capacities: (Int, Int)) -> Int {
        pageSize + (pageSize + capacities.0) + (pageSize + capacities.1)
    }

    /// Offset of ring `index` (0 or 1).
    public static func ringOffset(_ index: Int, capacities: (Int, Int)) -> Int {
        index == 0 ? pageSize : pageSize + pageSize + capacities.0
    }

    /// The largest payload one record may carry in a ring of `capacity` bytes: half the ring,
    /// so a record always fits after at most one wrap-around pad.
    public static func maximumRecordPayload(capacity: Int) -> Int {
        capacity / 2 - Record.headerBytes
    }

    /// The payload size `send` cuts large messages into: a quarter of the ring, so several
    /// fragments are in flight and the receiver copies while the sender writes.
    public static func fragmentPayload(capacity: Int) -> Int {
        capacity / 4 - Record.headerBytes
    }
}

/// The state word in the region header. The first change away from `open` wins (CAS), so a
/// link reports the first cause of its end.
public struct LinkStateWord: Sendable, Equatable, CustomStringConvertible {
    /// What happened.
    public enum Kind: UInt32, Sendable {
        /// Both ends may send and receive.
        case open = 0
        /// `end` closed the link in order; what it sent before is still delivered.
        case closed = 1
        /// `end`'s process died (reported by the agent).
        case gone = 2
        /// `end` found the ring corrupt and stopped using it.
        case corrupt = 3
        /// The agent (`end`) lost the far end's host: channel down, heartbeats missed, or the
        /// far agent restarted. The header's `acknowledged` is what the far agent acknowledged
        /// of the other end's messages; the rest of what that end sent may be lost.
        case hostDown = 4
        /// The agent (`end`) closed the link because its topology no longer declares it (a
        /// reload removed the link or one of its instances).
        case removed = 5
    }

    /// What happened.
    public var kind: Kind
    /// Which end (0 or 1) it happened to or was detected by.
    public var end: Int

    /// A state value.
    public init(kind: Kind, end: Int) {
        self.kind = kind
        self.end = end
    }

    /// The encoded word: kind in the low byte, end in the next.
    public var rawValue: UInt32 { kind.rawValue | UInt32(end & 1) << 8 }

    /// Whether `raw` is a word some end or agent writes: a known kind, end 0 or 1, no other bits.
    public static func isWellFormed(_ raw: UInt32) -> Bool {
        Kind(rawValue: raw & 0xFF) != nil && raw >> 9 == 0
    }

    /// Decodes a word read from shared memory; unknown values read as corrupt.
    public init(rawValue: UInt32) {
        kind = Kind(rawValue: rawValue & 0xFF) ?? .corrupt
        end = Int((rawValue >> 8) & 1)
    }

    public static let open = LinkStateWord(kind: .open, end: 0)

    public var description: String { "\(kind) (end \(end))" }
}
