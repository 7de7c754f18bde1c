/// Whole messages lying back to back as ring records (header, payload, padding to 16), each
/// in one record (FIRST | LAST). An agent sends such a run from one ring as one frame and the
/// far agent commits it into another ring as it is: the record layout is position-independent,
/// so nothing is parsed or copied per message on the way.
public struct RecordRun {
    /// The records' bytes, exactly as they lie in a ring.
    public var bytes: UnsafeRawBufferPointer
    /// Messages (records) in the run.
    public var messages: Int
    /// Payload bytes over all messages (without headers and padding).
    public var payloadBytes: Int

    @usableFromInline
    init(bytes: UnsafeRawBufferPointer, messages: Int, payloadBytes: Int) {
        self.bytes = bytes
        self.messages = messages
        self.payloadBytes = payloadBytes
    }

    /// The message length if the record header at `h` holds a whole message in one record
    /// (FIRST | LAST, reserved field zero, `total` equal to the length); nil otherwise. The one
    /// definition both the sender's search (``RingConsumer/nextRun(maxBytes:)``) and the
    /// receiver's check (``validate(_:maxPayload:)``) go by.
    @inlinable
    static func wholeMessageLength(at h: UnsafeRawPointer) -> Int? {
        let length = h.loadUnaligned(fromByteOffset: RegionLayout.Record.length, as: UInt32.self)
        let flags = h.loadUnaligned(fromByteOffset: RegionLayout.Record.flags, as: UInt16.self)
        let reserved = h.loadUnaligned(fromByteOffset: RegionLayout.Record.reserved, as: UInt16.self)
        let total = h.loadUnaligned(fromByteOffset: RegionLayout.Record.total, as: UInt64.self)
        guard flags == RegionLayout.Record.first | RegionLayout.Record.last, reserved == 0, total == UInt64(length) else { return nil }
        return Int(length)
    }

    /// Calls `body` with each message's payload, in order. Only for a run that
    /// ``validate(_:maxPayload:)`` returned or a ring search found: the walk trusts the
    /// record headers.
    public func forEachMessage(_ body: (UnsafeRawBufferPointer) -> Void) {
        var offset = 0
        while offset < bytes.count {
            let length = Int(bytes.loadUnaligned(fromByteOffset: offset + RegionLayout.Record.length, as: UInt32.self))
            let start = offset + RegionLayout.Record.headerBytes
            body(UnsafeRawBufferPointer(rebasing: bytes[start..<(start + length)]))
            offset += RegionLayout.Record.size(payload: length)
        }
    }

    /// Checks bytes that claim to be a run (received from another host, or read from a ring
    /// another process writes) and counts its messages: every record a whole message of at
    /// most `maxPayload` bytes with a zero reserved field, the records filling `bytes` exactly.
    /// Throws ``LinkError/corruptRing(_:)`` saying which record is wrong.
    public static func validate(_ bytes: UnsafeRawBufferPointer, maxPayload: Int) throws(LinkError) -> RecordRun {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { throw .corruptRing("an empty record run") }
        var offset = 0, messages = 0, payload = 0
        while offset < bytes.count {
            guard bytes.count - offset >= RegionLayout.Record.headerBytes else {
                throw .corruptRing("record run: \(bytes.count - offset) bytes left at offset \(offset), less than a record header")
            }
            let h = base + offset
            guard let length = wholeMessageLength(at: h) else {
                let flags = h.loadUnaligned(fromByteOffset: RegionLayout.Record.flags, as: UInt16.self)
                let length = h.loadUnaligned(fromByteOffset: RegionLayout.Record.length, as: UInt32.self)
                let total = h.loadUnaligned(fromByteOffset: RegionLayout.Record.total, as: UInt64.self)
                throw .corruptRing("record run: the record at offset \(offset) is not a whole message (flags \(flags), length \(length), total \(total))")
            }
            guard length <= maxPayload else {
                throw .corruptRing("record run: the record at offset \(offset) holds \(length) bytes (maximum \(maxPayload))")
            }
            let size = RegionLayout.Record.size(payload: length)
            guard size <= bytes.count - offset else {
                throw .corruptRing("record run: the record at offset \(offset) needs \(size) bytes, \(bytes.count - offset) are left")
            }
            offset += size
            messages += 1
            payload += length
        }
        return RecordRun(bytes: bytes, messages: messages, payloadBytes: payload)
    }
}
