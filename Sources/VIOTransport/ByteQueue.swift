/// A growable FIFO of bytes in one raw allocation: append at the back, consume from the
/// front, every copy a `memcpy`. The TCP channel's output buffer (an `Array` would copy
/// element by element in unoptimised builds and re-check uniqueness on every append), and
/// the proxy's per-connection buffer of bytes its socket has not taken yet.
public final class ByteQueue {
    private var storage: UnsafeMutableRawPointer
    private var capacity: Int
    private var start = 0
    private var end = 0

    /// An empty queue with room for `capacity` bytes before it grows.
    public init(capacity: Int = 1 << 16) {
        self.capacity = capacity
        storage = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit { storage.deallocate() }

    /// Bytes queued.
    public var count: Int { end - start }

    /// The queued bytes, valid until the next mutation.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: storage + start, count: end - start) }

    /// Room for `n` more bytes at the back; returns where they go (the caller fills them).
    public func extend(by n: Int) -> UnsafeMutableRawPointer {
        if capacity - end < n {
            let pending = end - start
            if pending + n <= capacity / 2 || (start > 0 && pending + n <= capacity) {
                (storage).copyMemory(from: storage + start, byteCount: pending)
            } else {
                var newCapacity = capacity * 2
                while newCapacity < pending + n { newCapacity *= 2 }
                let grown = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 64)
                grown.copyMemory(from: storage + start, byteCount: pending)
                storage.deallocate()
                storage = grown
                capacity = newCapacity
            }
            start = 0
            end = pending
        }
        defer { end += n }
        return storage + end
    }

    /// Drops `n` bytes from the front.
    public func consume(_ n: Int) {
        start += n
        if start == end { start = 0; end = 0 }
    }
}
