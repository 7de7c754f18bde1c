import Atomics
import VIOLinux

/// One record read from a ring, valid until it is released.
public struct RingRecord {
    /// The payload, in the ring.
    public var payload: UnsafeRawBufferPointer
    /// FIRST / LAST flags.
    public var flags: UInt16
    /// Whole message length (FIRST records).
    public var total: Int
    /// Bytes the record occupies.
    @usableFromInline var size: UInt64

    @usableFromInline
    init(payload: UnsafeRawBufferPointer, flags: UInt16, total: Int, size: UInt64) {
        self.payload = payload
        self.flags = flags
        self.total = total
        self.size = size
    }
}

/// The reading side of one ring. Used by one thread at a time.
///
/// Every index and header read from shared memory is copied into a local and checked before
/// it is used: a peer that writes garbage gets `corruptRing`, never an out-of-bounds access.
public final class RingConsumer {
    @usableFromInline let ring: RingControl
    /// Set before sleeping so the producer rings the doorbell.
    public var readerArmed: UnsafeAtomic<UInt32> { ring.readerArmed }
    /// Mutable cursors behind a pointer (no dynamic exclusivity checks; see RingProducer).
    @usableFromInline let cursor: UnsafeMutablePointer<ConsumerCursor>
    /// The producer's space doorbell, rung when it waits for room.
    @usableFromInline let spaceDoorbell: Int32
    private let region: LinkRegion

    /// The consumer of ring `index`; `spaceDoorbell` wakes the producer waiting for room.
    public init(region: LinkRegion, ring index: Int, spaceDoorbell: Int32) {
        self.region = region
        ring = RingControl(region: region, ring: index)
        // Records start on 16-byte boundaries; a head that does not was written by someone
        // else (the other end may scribble before this end maps the region). Rounded down,
        // every header read stays inside the data area and the records' own checks judge them.
        let head = ring.head.load(ordering: .relaxed) & ~UInt64(RegionLayout.Record.alignment - 1)
        cursor = .allocate(capacity: 1)
        cursor.initialize(to: ConsumerCursor(head: head, cachedTail: head, publishedHead: head))
        self.spaceDoorbell = spaceDoorbell
    }

    deinit { cursor.deallocate() }

    /// Whether a record is waiting (reads the producer's tail when the cache says empty).
    @inlinable
    public var hasData: Bool {
        if cursor.pointee.head != cursor.pointee.cachedTail { return true }
        return ring.tail.load(ordering: .acquiring) != cursor.pointee.head
    }

    /// The next data record, skipping wrap-around padding, or `nil` when the ring is empty.
    @inlinable
    public func next() throws(LinkError) -> RingRecord? {
        while true {
            if cursor.pointee.head == cursor.pointee.cachedTail {
                let tail = ring.tail.load(ordering: .acquiring)
                guard tail &- cursor.pointee.head <= UInt64(ring.capacity) else {
                    throw corrupt("producer tail \(tail) is not within \(ring.capacity) bytes ahead of head \(cursor.pointee.head)")
                }
                cursor.pointee.cachedTail = tail
                if tail == cursor.pointee.head { return nil }
            }
            let available = cursor.pointee.cachedTail &- cursor.pointee.head
            let position = cursor.pointee.head & ring.mask
            let h = ring.data + Int(position)
            let length = UInt64(h.load(fromByteOffset: RegionLayout.Record.length, as: UInt32.self))
            let flags = h.load(fromByteOffset: RegionLayout.Record.flags, as: UInt16.self)
            let reserved = h.load(fromByteOffset: RegionLayout.Record.reserved, as: UInt16.self)
            let total = h.load(fromByteOffset: RegionLayout.Record.total, as: UInt64.self)
            guard available >= UInt64(RegionLayout.Record.headerBytes), reserved == 0 else {
                throw corrupt("record header at offset \(position) is malformed")
            }
            if flags == RegionLayout.Record.pad {
                let size = UInt64(ring.capacity) - position
                guard length == size - UInt64(RegionLayout.Record.headerBytes), size <= available else {
                    throw corrupt("padding at offset \(position) has length \(length), expected \(size - 16)")
                }
                cursor.pointee.head &+= size
                continue
            }
            // Middle fragments carry no flag; the endpoint checks the fragment sequence.
            let known = RegionLayout.Record.first | RegionLayout.Record.last
            guard flags & ~known == 0 || flags == RegionLayout.Record.abort else {
                throw corrupt("record at offset \(position) has flags \(flags)")
            }
            let size = UInt64(RegionLayout.Record.size(payload: Int(length)))
            guard length <= UInt64(ring.maximumRecordPayload), size <= available, position + size <= UInt64(ring.capacity) else {
                throw corrupt("record at offset \(position) claims \(length) bytes; \(available) are committed")
            }
            return RingRecord(payload: UnsafeRawBufferPointer(start: h + RegionLayout.Record.headerBytes, count: Int(length)),
                              flags: flags, total: Int(truncatingIfNeeded: total), size: size)
        }
    }

    /// The whole single-record messages from the head onward that lie back to back before the
    /// end of the data area, at most `maxBytes` of records; nil unless there are at least two
    /// (a single message, padding or anything unusual goes through ``next()``, which also
    /// reports what is malformed). Nothing is consumed: pass the run to ``consume(_:)``.
    @inlinable
    public func nextRun(maxBytes: Int) -> RecordRun? {
        guard maxBytes >= 2 * RegionLayout.Record.headerBytes else { return nil }
        let tail = ring.tail.load(ordering: .acquiring)
        let head = cursor.pointee.head
        let position = head & ring.mask
        // Only what is committed and before the end of the data area; the bound check on the
        // tail is next()'s (a run is not taken from a ring whose tail is out of range).
        guard tail &- head <= UInt64(ring.capacity) else { return nil }
        let limit = Int(min(tail &- head, UInt64(ring.capacity) - position, UInt64(maxBytes)))
        let base = ring.data + Int(position)
        var offset = 0, messages = 0, payload = 0
        while limit - offset >= RegionLayout.Record.headerBytes {
            guard let length = RecordRun.wholeMessageLength(at: base + offset), length <= ring.maximumRecordPayload else { break }
            let size = RegionLayout.Record.size(payload: length)
            guard size <= limit - offset else { break }
            offset += size
            messages += 1
            payload += length
        }
        guard messages >= 2 else { return nil }
        cursor.pointee.cachedTail = tail
        return RecordRun(bytes: UnsafeRawBufferPointer(start: base, count: offset), messages: messages, payloadBytes: payload)
    }

    /// Whether records committed before the last tail this consumer read follow `record` (the
    /// one ``next()`` returned): no shared memory is read, so a ring that looked like holding
    /// one record is not searched for a run.
    @inlinable
    public func hasMore(after record: RingRecord) -> Bool {
        cursor.pointee.cachedTail &- cursor.pointee.head > record.size
    }

    /// Moves past a run returned by ``nextRun(maxBytes:)`` without freeing it, like
    /// ``consume(_:)-(RingRecord)`` for a record; returns the position to publish.
    @inlinable
    public func consume(_ run: RecordRun) -> UInt64 {
        cursor.pointee.head &+= UInt64(run.bytes.count)
        bump(8, by: UInt64(run.payloadBytes))
        bump(0, by: UInt64(run.messages))
        return cursor.pointee.head
    }

    /// Frees the record returned by ``next()``. The head is published lazily: when the ring
    /// looks empty or a quarter of it is waiting to be freed, so a busy consumer does not
    /// write the shared head line for every message.
    @inlinable
    public func release(_ record: RingRecord) {
        let head = consume(record)
        if head == cursor.pointee.cachedTail || head &- cursor.pointee.publishedHead >= UInt64(ring.capacity / 4) {
            publish(through: head)
        }
    }

    /// Moves past the record returned by ``next()`` without freeing its space: the record stays
    /// valid and unchanged (the producer cannot reuse it) until ``publish(through:)`` passes
    /// the returned position. For a consumer that hands records to a socket in place.
    /// Mixing it with ``release(_:)`` on one ring would free records still in use.
    @inlinable
    public func consume(_ record: RingRecord) -> UInt64 {
        cursor.pointee.head &+= record.size
        bump(8, by: UInt64(record.payload.count))
        if record.flags & RegionLayout.Record.last != 0 { bump(0) }
        return cursor.pointee.head
    }

    /// Frees every record up to `position` (a value ``consume(_:)`` returned) for the producer,
    /// and wakes it if it waits for room.
    @inlinable
    public func publish(through position: UInt64) {
        guard position &- cursor.pointee.publishedHead <= UInt64(ring.capacity),
              position &- cursor.pointee.publishedHead > 0 else { return }
        ring.head.store(position, ordering: .sequentiallyConsistent)
        cursor.pointee.publishedHead = position
        if ring.writerArmed.load(ordering: .sequentiallyConsistent) != 0,
           ring.writerArmed.exchange(0, ordering: .acquiringAndReleasing) != 0 {
            EventDescriptor.ring(spaceDoorbell)
        }
    }

    @usableFromInline
    func corrupt(_ detail: String) -> LinkError {
        bump(24)
        return .corruptRing(detail)
    }

    /// Counts a wake-up from sleep.
    public func noteWakeup() { bump(16) }

    @inlinable
    func bump(_ offset: Int, by amount: UInt64 = 1) { RingControl.bump(ring.consumerCounters, offset, by: amount) }
}

/// The consumer's private cursors.
@usableFromInline
struct ConsumerCursor {
    /// Bytes consumed locally.
    @usableFromInline var head: UInt64
    /// Last tail read from the producer.
    @usableFromInline var cachedTail: UInt64
    /// Last head made visible to the producer.
    @usableFromInline var publishedHead: UInt64

    @usableFromInline
    init(head: UInt64, cachedTail: UInt64, publishedHead: UInt64) {
        self.head = head
        self.cachedTail = cachedTail
        self.publishedHead = publishedHead
    }
}
