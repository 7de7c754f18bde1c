import Atomics

/// The shared fields of one ring, resolved once from the region: what both the producer and
/// the consumer address (docs/ring-layout.md, "Ring control page").
@usableFromInline
struct RingControl {
    @usableFromInline let tail: UnsafeAtomic<UInt64>
    @usableFromInline let head: UnsafeAtomic<UInt64>
    @usableFromInline let readerArmed: UnsafeAtomic<UInt32>
    @usableFromInline let writerArmed: UnsafeAtomic<UInt32>
    @usableFromInline let producerCounters: UnsafeMutableRawPointer
    @usableFromInline let consumerCounters: UnsafeMutableRawPointer
    @usableFromInline let data: UnsafeMutableRawPointer
    @usableFromInline let capacity: Int
    @usableFromInline let mask: UInt64
    @usableFromInline let maximumRecordPayload: Int

    init(region: LinkRegion, ring index: Int) {
        let ring = region.ringBase(index)
        func atomic64(_ o: Int) -> UnsafeAtomic<UInt64> { UnsafeAtomic(at: (ring + o).assumingMemoryBound(to: UInt64.AtomicRepresentation.self)) }
        func atomic32(_ o: Int) -> UnsafeAtomic<UInt32> { UnsafeAtomic(at: (ring + o).assumingMemoryBound(to: UInt32.AtomicRepresentation.self)) }
        tail = atomic64(RegionLayout.Ring.tail)
        head = atomic64(RegionLayout.Ring.head)
        readerArmed = atomic32(RegionLayout.Ring.readerArmed)
        writerArmed = atomic32(RegionLayout.Ring.writerArmed)
        producerCounters = ring + RegionLayout.Ring.producerCounters
        consumerCounters = ring + RegionLayout.Ring.consumerCounters
        data = ring + RegionLayout.Ring.data
        capacity = region.capacity(ofRing: index)
        mask = UInt64(capacity - 1)
        maximumRecordPayload = RegionLayout.maximumRecordPayload(capacity: capacity)
    }

    /// Adds to a counter that only the calling side writes: a relaxed load and store, not a
    /// read-modify-write, so the hot path pays no locked instruction for statistics.
    @inlinable
    static func bump(_ counters: UnsafeMutableRawPointer, _ offset: Int, by amount: UInt64 = 1) {
        let counter = UnsafeAtomic<UInt64>(at: (counters + offset).assumingMemoryBound(to: UInt64.AtomicRepresentation.self))
        counter.store(counter.load(ordering: .relaxed) &+ amount, ordering: .relaxed)
    }
}
