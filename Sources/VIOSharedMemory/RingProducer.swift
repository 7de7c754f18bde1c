import Atomics
import VIOLinux

/// The writing side of one ring. Used by one thread at a time.
///
/// Lamport ring with cached indices: the producer reads the consumer's head only when its
/// cached copy says the ring is full, and publishes its tail once per record with a release
/// store. Records are contiguous: one that does not fit before the end of the data area is
/// preceded by a PAD record and written at offset 0, so claim/commit can hand out one buffer.
public final class RingProducer {
    @usableFromInline let ring: RingControl
    /// Mutable cursors live behind a pointer: class stored `var`s would pay Swift's dynamic
    /// exclusivity checks on every access (a third of the send path when measured).
    @usableFromInline let cursor: UnsafeMutablePointer<ProducerCursor>
    /// The consumer's data doorbell, rung when it sleeps.
    @usableFromInline let doorbell: Int32
    /// Largest payload in one record.
    public var maximumRecordPayload: Int { ring.maximumRecordPayload }
    /// Set before waiting for space so the consumer rings the space doorbell.
    public var writerArmed: UnsafeAtomic<UInt32> { ring.writerArmed }

    /// Bytes committed and not yet freed by the consumer (re-reads its head): records,
    /// headers and wrap-around padding.
    public var usedBytes: Int {
        let head = ring.head.load(ordering: .acquiring)
        let used = cursor.pointee.tail &- head
        return used <= UInt64(ring.capacity) ? Int(used) : ring.capacity
    }
    private let region: LinkRegion  // keeps the mapping alive

    /// The producer of ring `index` of `region`; `doorbell` is the consumer's data doorbell.
    public init(region: LinkRegion, ring index: Int, doorbell: Int32) {
        self.region = region
        ring = RingControl(region: region, ring: index)
        // Resume from the published indices (a fresh region has both at 0).
        cursor = .allocate(capacity: 1)
        // The tail rounded to a record boundary, as RingConsumer does with its head: a tail
        // someone else wrote must not make reserve() write across the end of the data area.
        // The head is cached as "full", so the first reserve reads and checks the real one.
        let tail = ring.tail.load(ordering: .relaxed) & ~UInt64(RegionLayout.Record.alignment - 1)
        cursor.initialize(to: ProducerCursor(tail: tail, cachedHead: tail &- UInt64(ring.capacity)))
        self.doorbell = doorbell
    }

    deinit { cursor.deallocate() }

    /// Space for a record of `payload` bytes, or `nil` when the ring is too full right now.
    /// The returned pointer is where the payload goes; finish with ``commit(payload:flags:total:)``.
    @inlinable
    public func reserve(payload: Int) throws(LinkError) -> UnsafeMutableRawPointer? {
        try reserveContiguous(UInt64(RegionLayout.Record.size(payload: payload))).map { $0 + RegionLayout.Record.headerBytes }
    }

    /// Contiguous space for a ``RecordRun`` of `bytes` (a multiple of 16), or `nil` when the ring
    /// is too full right now. The returned pointer is where the run's first record header goes;
    /// finish with ``commit(_:)``.
    @inlinable
    public func reserveRun(bytes: Int) throws(LinkError) -> UnsafeMutableRawPointer? {
        precondition(bytes > 0 && bytes % RegionLayout.Record.alignment == 0, "a record run is whole records")
        return try reserveContiguous(UInt64(bytes))
    }

    /// `size` contiguous bytes at the tail (padding to the end of the data area first when
    /// they do not fit before it), or nil when the ring lacks room.
    @inlinable
    func reserveContiguous(_ size: UInt64) throws(LinkError) -> UnsafeMutableRawPointer? {
        let position = cursor.pointee.tail & ring.mask
        let contiguous = UInt64(ring.capacity) - position
        let needed = bytesNeeded(size, contiguous: contiguous)
        if UInt64(ring.capacity) - (cursor.pointee.tail &- cursor.pointee.cachedHead) < needed {
            let head = ring.head.load(ordering: .acquiring)
            // The consumer's head can only be behind our cursor.pointee.tail, by at most the capacity.
            guard cursor.pointee.tail &- head <= UInt64(ring.capacity) else {
                throw .corruptRing("consumer head \(head) is not within \(ring.capacity) bytes behind tail \(cursor.pointee.tail)")
            }
            cursor.pointee.cachedHead = head
            if UInt64(ring.capacity) - (cursor.pointee.tail &- cursor.pointee.cachedHead) < needed { return nil }
        }
        if size > contiguous {
            writeHeader(at: position, length: UInt32(contiguous) - UInt32(RegionLayout.Record.headerBytes),
                        flags: RegionLayout.Record.pad, total: 0)
            cursor.pointee.tail &+= contiguous
            return ring.data
        }
        return ring.data + Int(position)
    }

    /// Free bytes a record of `size` needs when `contiguous` bytes are left before the end of
    /// the data area: the record, plus the padding to the end if it does not fit there.
    @inlinable
    func bytesNeeded(_ size: UInt64, contiguous: UInt64) -> UInt64 {
        size <= contiguous ? size : size + contiguous
    }

    @inlinable
    func writeHeader(at position: UInt64, length: UInt32, flags: UInt16, total: UInt64) {
        let h = ring.data + Int(position)
        h.storeBytes(of: length, toByteOffset: RegionLayout.Record.length, as: UInt32.self)
        h.storeBytes(of: flags, toByteOffset: RegionLayout.Record.flags, as: UInt16.self)
        h.storeBytes(of: 0, toByteOffset: RegionLayout.Record.reserved, as: UInt16.self)
        h.storeBytes(of: total, toByteOffset: RegionLayout.Record.total, as: UInt64.self)
    }

    /// Publishes the reserved record with `payload` bytes written, and rings the consumer's
    /// doorbell if it is asleep. `total` is the whole message length on a FIRST record.
    @inlinable
    public func commit(payload: Int, flags: UInt16, total: Int) {
        writeHeader(at: cursor.pointee.tail & ring.mask, length: UInt32(payload), flags: flags, total: UInt64(total))
        publish(advancing: UInt64(RegionLayout.Record.size(payload: payload)),
                messages: flags & RegionLayout.Record.last != 0 ? 1 : 0, payloadBytes: payload)
    }

    /// Publishes a run written into the space ``reserveRun(bytes:)`` returned (validated by the
    /// caller: ``RecordRun/validate(_:maxPayload:)``), and rings the consumer's doorbell if it
    /// is asleep: one publication and at most one wake-up for all its messages.
    @inlinable
    public func commit(_ run: RecordRun) {
        publish(advancing: UInt64(run.bytes.count), messages: run.messages, payloadBytes: run.payloadBytes)
    }

    /// Moves the tail past `bytes` of written records (ending `messages` messages), counts
    /// them, publishes the tail and wakes a sleeping consumer.
    @inlinable
    func publish(advancing bytes: UInt64, messages: Int, payloadBytes: Int) {
        cursor.pointee.tail &+= bytes
        if messages > 0 { bump(0, by: UInt64(messages)) }
        bump(8, by: UInt64(payloadBytes))
        // Sequentially consistent store then load: pairs with the consumer's
        // store-flag-then-load-tail, so either it sees the new tail or we see its flag (no
        // lost wake-up). On x86 this is one xchg, cheaper than a release store and a fence.
        ring.tail.store(cursor.pointee.tail, ordering: .sequentiallyConsistent)
        wakeReaderIfArmed()
    }

    /// Wakes a consumer that armed its flag before sleeping (after a sequentially consistent
    /// publication of the tail).
    @inlinable
    public func wakeReaderIfArmed() {
        if ring.readerArmed.load(ordering: .sequentiallyConsistent) != 0,
           ring.readerArmed.exchange(0, ordering: .acquiringAndReleasing) != 0 {
            EventDescriptor.ring(doorbell)
            bump(16)
        }
    }

    /// Counts a full-ring stall (the caller is about to wait for space).
    public func noteStall() { bump(24) }

    @inlinable
    func bump(_ offset: Int, by amount: UInt64 = 1) { RingControl.bump(ring.producerCounters, offset, by: amount) }

    /// Whether a record of `payload` bytes would fit now (re-reads the head).
    public func hasSpace(payload: Int) -> Bool {
        let size = UInt64(RegionLayout.Record.size(payload: payload))
        let needed = bytesNeeded(size, contiguous: UInt64(ring.capacity) - (cursor.pointee.tail & ring.mask))
        let head = ring.head.load(ordering: .acquiring)
        return cursor.pointee.tail &- head <= UInt64(ring.capacity) && UInt64(ring.capacity) - (cursor.pointee.tail &- head) >= needed
    }
}

/// The producer's private cursors.
@usableFromInline
struct ProducerCursor {
    /// Bytes committed locally (published to the shared tail on commit).
    @usableFromInline var tail: UInt64
    /// Last head read from the consumer.
    @usableFromInline var cachedHead: UInt64

    @usableFromInline
    init(tail: UInt64, cachedHead: UInt64) {
        self.tail = tail
        self.cachedHead = cachedHead
    }
}
