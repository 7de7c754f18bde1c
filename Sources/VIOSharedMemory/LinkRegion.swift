import Atomics
import VIOLinux

/// A mapped link region: the header and both rings. The agent creates it; each end maps the
/// memfd it receives, after validating every field it will rely on.
public final class LinkRegion: @unchecked Sendable {
    // @unchecked: the mapping is immutable after init; all shared fields are accessed
    // through atomics or by the single producer/consumer that owns them.
    private let mapping: SharedMapping
    /// Start of the region.
    public var base: UnsafeMutableRawPointer { mapping.base }
    /// Region size in bytes.
    public var byteCount: Int { mapping.count }
    /// The agent's id for this link.
    public let linkID: UInt64
    /// Largest message either end may send.
    public let maxMessage: Int
    /// Data bytes of ring 0 and ring 1.
    public let capacities: (Int, Int)
    /// Instance names of end 0 and end 1.
    public let names: (String, String)
    /// The far end's host for a link carried by the fabric, empty for a local link.
    public let peerHost: String
    /// The memfd behind a region this process created (to pass to the ends), else -1.
    /// Owned by the region: closed when it is released.
    public let memoryFileDescriptor: Int32

    private init(mapping: consuming SharedMapping, linkID: UInt64, maxMessage: Int,
                 capacities: (Int, Int), names: (String, String), peerHost: String,
                 memoryFile: consuming OwnedFileDescriptor?) {
        self.mapping = mapping
        memoryFileDescriptor = memoryFile?.take() ?? -1
        self.linkID = linkID
        self.maxMessage = maxMessage
        self.capacities = capacities
        self.names = names
        self.peerHost = peerHost
    }

    /// Creates and lays out a region in a new sealed memfd. Ring `e` is read by end `e`;
    /// `readerNodes` places each ring's pages on its reader's NUMA node when the host has
    /// more than one.
    public static func create(linkID: UInt64, names: (String, String), capacities: (Int, Int), maxMessage: Int,
                              readerNodes: (Int, Int) = (0, 0), peerHost: String = "") throws(SystemError) -> LinkRegion {
        for c in [capacities.0, capacities.1] {
            precondition(c >= RegionLayout.minimumCapacity && c <= RegionLayout.maximumCapacity && c & (c - 1) == 0,
                         "ring capacity must be a power of two in range")
        }
        let size = RegionLayout.regionBytes(capacities: capacities)
        let fd = try MemoryFile.create(name: "vio-link-\(linkID)", size: size)
        try MemoryFile.sealSize(fd)
        let mapping = try SharedMapping(fd: fd, count: size)
        let base = mapping.base
        // Place before first touch: the shared policy decides where pages are allocated.
        for (index, node) in [(0, readerNodes.0), (1, readerNodes.1)] {
            let ring = base + RegionLayout.ringOffset(index, capacities: capacities)
            NUMA.bind(ring, length: RegionLayout.pageSize + (index == 0 ? capacities.0 : capacities.1), to: node)
        }
        base.storeBytes(of: RegionLayout.magic.littleEndian, toByteOffset: RegionLayout.Header.magic, as: UInt64.self)
        base.storeBytes(of: RegionLayout.version, toByteOffset: RegionLayout.Header.version, as: UInt32.self)
        base.storeBytes(of: UInt32(RegionLayout.pageSize), toByteOffset: RegionLayout.Header.headerBytes, as: UInt32.self)
        base.storeBytes(of: UInt64(size), toByteOffset: RegionLayout.Header.regionBytes, as: UInt64.self)
        base.storeBytes(of: linkID, toByteOffset: RegionLayout.Header.linkID, as: UInt64.self)
        base.storeBytes(of: UInt64(maxMessage), toByteOffset: RegionLayout.Header.maxMessage, as: UInt64.self)
        base.storeBytes(of: UInt32(2), toByteOffset: RegionLayout.Header.ringCount, as: UInt32.self)
        for index in 0..<2 {
            let capacity = index == 0 ? capacities.0 : capacities.1
            base.storeBytes(of: UInt64(RegionLayout.ringOffset(index, capacities: capacities)),
                            toByteOffset: RegionLayout.Header.rings + index * 16, as: UInt64.self)
            base.storeBytes(of: UInt64(capacity), toByteOffset: RegionLayout.Header.rings + index * 16 + 8, as: UInt64.self)
        }
        for (offset, name) in [(RegionLayout.Header.names, names.0),
                               (RegionLayout.Header.names + RegionLayout.nameBytes, names.1),
                               (RegionLayout.Header.peerHost, peerHost)] {
            let bytes = Array(name.utf8.prefix(RegionLayout.nameBytes - 1))
            (base + offset).copyMemory(from: bytes, byteCount: bytes.count)
        }
        // The memfd starts zeroed: indices, flags, counters and the state word are 0 (open).
        return LinkRegion(mapping: mapping, linkID: linkID, maxMessage: maxMessage,
                          capacities: capacities, names: names, peerHost: peerHost, memoryFile: fd)
    }

    deinit {
        if memoryFileDescriptor >= 0 { _ = OwnedFileDescriptor(taking: memoryFileDescriptor) }
    }

    /// Maps a region received from the agent, checking that it is sealed and that every
    /// header field is consistent, so no later access can fall outside the mapping.
    public static func map(fd: borrowing OwnedFileDescriptor) throws(LinkError) -> LinkRegion {
        func corrupt(_ what: String) -> LinkError { .corruptRing("region header: \(what)") }
        guard MemoryFile.isSizeSealed(fd) else { throw corrupt("memfd is not sealed against resizing") }
        let size: Int
        do { size = try MemoryFile.size(fd) } catch { throw .system(error) }
        guard size >= RegionLayout.pageSize * 3, size <= 2 * RegionLayout.maximumCapacity + 3 * RegionLayout.pageSize else {
            throw corrupt("size \(size) out of range")
        }
        let mapping: SharedMapping
        do { mapping = try SharedMapping(fd: fd, count: size) } catch { throw .system(error) }
        let base = mapping.base
        func u64(_ offset: Int) -> UInt64 { base.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }
        func u32(_ offset: Int) -> UInt32 { base.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
        guard u64(RegionLayout.Header.magic) == RegionLayout.magic else { throw corrupt("bad magic") }
        guard u32(RegionLayout.Header.version) == RegionLayout.version else {
            throw corrupt("layout version \(u32(RegionLayout.Header.version)), this build reads \(RegionLayout.version)")
        }
        guard u32(RegionLayout.Header.headerBytes) == UInt32(RegionLayout.pageSize),
              u64(RegionLayout.Header.regionBytes) == UInt64(size),
              u32(RegionLayout.Header.ringCount) == 2 else { throw corrupt("inconsistent sizes") }
        var capacities: [Int] = []
        for index in 0..<2 {
            let offset = u64(RegionLayout.Header.rings + index * 16)
            let capacity = u64(RegionLayout.Header.rings + index * 16 + 8)
            guard capacity >= UInt64(RegionLayout.minimumCapacity), capacity <= UInt64(RegionLayout.maximumCapacity),
                  capacity & (capacity - 1) == 0 else { throw corrupt("ring \(index) capacity \(capacity)") }
            capacities.append(Int(capacity))
            _ = offset
        }
        let caps = (capacities[0], capacities[1])
        guard RegionLayout.regionBytes(capacities: caps) == size else { throw corrupt("ring sizes do not add up to the region") }
        for index in 0..<2 where u64(RegionLayout.Header.rings + index * 16) != UInt64(RegionLayout.ringOffset(index, capacities: caps)) {
            throw corrupt("ring \(index) offset")
        }
        let maxMessage = u64(RegionLayout.Header.maxMessage)
        guard maxMessage >= 1, maxMessage <= 1 << 40 else { throw corrupt("max message \(maxMessage)") }
        func name(at offset: Int) -> String {
            let start = base + offset
            let bytes = UnsafeRawBufferPointer(start: start, count: RegionLayout.nameBytes)
            let used = bytes.prefix { $0 != 0 }
            return String(decoding: used, as: UTF8.self)
        }
        return LinkRegion(mapping: mapping, linkID: u64(RegionLayout.Header.linkID), maxMessage: Int(maxMessage),
                          capacities: caps,
                          names: (name(at: RegionLayout.Header.names), name(at: RegionLayout.Header.names + RegionLayout.nameBytes)),
                          peerHost: name(at: RegionLayout.Header.peerHost), memoryFile: nil)
    }

    private var stateAtomic: UnsafeAtomic<UInt32> {
        UnsafeAtomic(at: (base + RegionLayout.Header.state).assumingMemoryBound(to: UInt32.AtomicRepresentation.self))
    }

    /// Messages of the instance (end 0 of a fabric link) the far agent acknowledged as
    /// written into the far instance's ring: kept by the local agent as acknowledgements
    /// arrive, and before it sets `hostDown`.
    public var acknowledgedByFarAgent: UInt64 { acknowledgedAtomic.load(ordering: .acquiring) }

    private var acknowledgedAtomic: UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: (base + RegionLayout.Header.acknowledged).assumingMemoryBound(to: UInt64.AtomicRepresentation.self))
    }

    /// Records what the far agent acknowledged (the agent, before it sets `hostDown`). The
    /// instance counts what may be lost against its own count of messages sent, which
    /// includes any it committed after the agent looked (no race can hide one).
    public func setAcknowledgedByFarAgent(_ count: UInt64) {
        acknowledgedAtomic.store(count, ordering: .releasing)
    }

    /// The link's state as last written by an end or the agent.
    public var state: LinkStateWord { LinkStateWord(rawValue: stateWord) }

    /// The state word as it lies in shared memory (any value: the region is shared).
    public var stateWord: UInt32 { stateAtomic.load(ordering: .acquiring) }

    /// Moves the link out of `open`; returns false if another cause already did.
    @discardableResult
    public func setState(_ new: LinkStateWord) -> Bool {
        stateAtomic.compareExchange(expected: LinkStateWord.open.rawValue, desired: new.rawValue,
                                    ordering: .acquiringAndReleasing).exchanged
    }

    /// Start of ring `index`'s control page.
    /// Whether the agent found ring `index`'s reader not responding: data waited unread in it
    /// for longer than the topology's `not_responding_ms` (a stopped or deadlocked process).
    public func readerStalled(ring index: Int) -> Bool {
        UnsafeAtomic<UInt32>(at: (ringBase(index) + RegionLayout.Ring.readerStalled).assumingMemoryBound(to: UnsafeAtomic<UInt32>.Storage.self))
            .load(ordering: .acquiring) != 0
    }

    /// The ends whose reading ring is flagged stalled, as status shows them ("db2 not
    /// responding"); ring e is read by end e.
    public var notResponding: [String] {
        [0, 1].filter { readerStalled(ring: $0) }.map { "\(name(ofEnd: $0)) not responding" }
    }

    /// Sets or clears ``readerStalled(ring:)`` (the agent's call).
    public func setReaderStalled(ring index: Int, _ stalled: Bool) {
        UnsafeAtomic<UInt32>(at: (ringBase(index) + RegionLayout.Ring.readerStalled).assumingMemoryBound(to: UnsafeAtomic<UInt32>.Storage.self))
            .store(stalled ? 1 : 0, ordering: .releasing)
    }

    /// Ring `index`'s read and write positions (bytes since the start): equal when it is empty.
    public func positions(ofRing index: Int) -> (head: UInt64, tail: UInt64) {
        let base = ringBase(index)
        let tail = UnsafeAtomic<UInt64>(at: (base + RegionLayout.Ring.tail).assumingMemoryBound(to: UnsafeAtomic<UInt64>.Storage.self))
        let head = UnsafeAtomic<UInt64>(at: (base + RegionLayout.Ring.head).assumingMemoryBound(to: UnsafeAtomic<UInt64>.Storage.self))
        return (head.load(ordering: .acquiring), tail.load(ordering: .acquiring))
    }

    public func ringBase(_ index: Int) -> UnsafeMutableRawPointer {
        base + RegionLayout.ringOffset(index, capacities: capacities)
    }

    /// Data capacity of ring `index`.
    public func capacity(ofRing index: Int) -> Int { index == 0 ? capacities.0 : capacities.1 }

    /// Instance name of end `index`.
    public func name(ofEnd index: Int) -> String { index == 0 ? names.0 : names.1 }

    /// A snapshot of ring `index`'s counters (relaxed loads: never disturbs the data path).
    public func counters(ofRing index: Int) -> RingCounters {
        RingCounters(ring: ringBase(index))
    }
}

/// Counters of one ring (one direction of a link), kept in the region by its two ends.
public struct RingCounters: Sendable, Equatable {
    /// Messages committed by the producer.
    public var messagesSent: UInt64
    /// Payload bytes committed by the producer.
    public var bytesSent: UInt64
    /// Doorbells the producer rang for a sleeping consumer.
    public var wakeupsSent: UInt64
    /// Times the producer found the ring full.
    public var fullStalls: UInt64
    /// Messages the consumer received.
    public var messagesReceived: UInt64
    /// Payload bytes the consumer received.
    public var bytesReceived: UInt64
    /// Times the consumer slept and was woken.
    public var wakeupsReceived: UInt64
    /// Errors the consumer detected.
    public var errors: UInt64

    /// All zero.
    public init() {
        messagesSent = 0; bytesSent = 0; wakeupsSent = 0; fullStalls = 0
        messagesReceived = 0; bytesReceived = 0; wakeupsReceived = 0; errors = 0
    }

    init(ring: UnsafeMutableRawPointer) {
        func load(_ offset: Int) -> UInt64 {
            UnsafeAtomic<UInt64>(at: (ring + offset).assumingMemoryBound(to: UInt64.AtomicRepresentation.self))
                .load(ordering: .relaxed)
        }
        let p = RegionLayout.Ring.producerCounters, c = RegionLayout.Ring.consumerCounters
        messagesSent = load(p); bytesSent = load(p + 8); wakeupsSent = load(p + 16); fullStalls = load(p + 24)
        messagesReceived = load(c); bytesReceived = load(c + 8); wakeupsReceived = load(c + 16); errors = load(c + 24)
    }
}
