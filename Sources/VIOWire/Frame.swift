/// The header every frame between two agents starts with, version 1 (docs/protocol.md).
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | version (1) |
/// | 1 | 1 | operation type (``FrameType``) |
/// | 2 | 2 | session control flags (``FrameFlags``) |
/// | 4 | 4 | session id: the virtual link |
/// | 8 | 4 | application / destination id: the receiving instance |
/// | 12 | 4 | payload length (at most ``FrameHeader/maximumPayload``) |
/// | 16 | 4 | sequence number of this frame within its session |
/// | 20 | 4 | credit: bytes the sender may still send on this session (ACK frames) |
///
/// All integers little-endian; the payload follows the header.
public struct FrameHeader: Sendable, Equatable {
    /// The version this build writes and reads.
    public static let version: UInt8 = 1
    /// Header size in bytes.
    public static let size = 24
    /// The largest payload one frame carries (messages are fragmented above this).
    public static let maximumPayload = 1 << 20

    /// What the frame is.
    public var type: FrameType
    /// Session control bits.
    public var flags: FrameFlags
    /// The virtual link.
    public var session: UInt32
    /// The destination instance (application id).
    public var destination: UInt32
    /// Payload bytes after the header.
    public var length: UInt32
    /// Position of this frame in its session, for acknowledgements and loss reports.
    public var sequence: UInt32
    /// Credit granted (ACK) or 0.
    public var credit: UInt32

    /// A header.
    public init(type: FrameType, flags: FrameFlags = [], session: UInt32 = 0, destination: UInt32 = 0,
                length: UInt32 = 0, sequence: UInt32 = 0, credit: UInt32 = 0) {
        self.type = type
        self.flags = flags
        self.session = session
        self.destination = destination
        self.length = length
        self.sequence = sequence
        self.credit = credit
    }

    /// Appends the 24 header bytes.
    public func encode(to w: inout ByteWriter) {
        w.write(Self.version)
        w.write(type.rawValue)
        w.write(flags.rawValue)
        w.write(session)
        w.write(destination)
        w.write(length)
        w.write(sequence)
        w.write(credit)
    }

    /// Stores the 24 header bytes at `p` (no allocation: the channel's send path).
    public func store(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: Self.version, toByteOffset: 0, as: UInt8.self)
        p.storeBytes(of: type.rawValue, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: flags.rawValue.littleEndian, toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: session.littleEndian, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: destination.littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: length.littleEndian, toByteOffset: 12, as: UInt32.self)
        p.storeBytes(of: sequence.littleEndian, toByteOffset: 16, as: UInt32.self)
        p.storeBytes(of: credit.littleEndian, toByteOffset: 20, as: UInt32.self)
    }

    /// Decodes the header at the start of `raw` (at least ``size`` bytes) in place, rejecting
    /// an unknown version or type, unknown flags, or a length over the maximum, so a bad peer
    /// can never make the reader allocate or wait for gigabytes. In place because the
    /// fabric's receive path decodes one per frame and must not allocate for it.
    public init(decoding raw: UnsafeRawBufferPointer) throws(DecodeError) {
        precondition(raw.count >= Self.size, "a frame header is \(Self.size) bytes")
        let version = raw[0]
        guard version == Self.version else {
            throw .invalid(field: "frame version", value: "\(version) (this agent speaks \(Self.version))")
        }
        guard let type = FrameType(rawValue: raw[1]) else { throw .invalid(field: "frame type", value: "\(raw[1])") }
        let rawFlags = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        guard rawFlags & ~FrameFlags.all.rawValue == 0 else { throw .invalid(field: "frame flags", value: "\(rawFlags)") }
        let length = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        guard length <= UInt32(Self.maximumPayload) else {
            throw .invalid(field: "frame length", value: "\(length) (maximum \(Self.maximumPayload))")
        }
        self.type = type
        flags = FrameFlags(rawValue: rawFlags)
        session = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        destination = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        self.length = length
        sequence = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
        credit = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
    }

    /// Reads a header from `r`, with the checks of ``init(decoding:)``.
    public init(from r: inout ByteReader) throws(DecodeError) {
        let bytes = try r.readBytes(Self.size)
        self = try bytes.withUnsafeBytes { raw in
            Result { () throws(DecodeError) in try FrameHeader(decoding: raw) }
        }.get()
    }
}

/// Operation types. Stable values: they are on the wire.
public enum FrameType: UInt8, Sendable, CaseIterable {
    case helloRequest = 1
    case helloResponse = 2
    case acknowledgement = 3
    case data = 4
    /// Session control: open or close a virtual link (see ``FrameFlags``).
    case session = 5
    case serviceUpdate = 6
    case serviceUpdateAck = 7
    case healthRequest = 8
    case healthResponse = 9
    /// Control, alarm or error report; the payload says which and why.
    case control = 10
    case heartbeatRequest = 11
    case heartbeatResponse = 12
    /// Between the two ends of one channel's transport (moving a channel onto an RDMA queue
    /// pair, say): taken by the channel, never seen by the multiplexer.
    case carrier = 13
    /// What the sender's topology declares between the two hosts (``PairDeclarations``), sent
    /// when the pair comes up and after each reload, so each agent can report where the
    /// two files differ.
    case declarations = 14
}

/// Session control bits.
public struct FrameFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Session start (link open).
    public static let start = FrameFlags(rawValue: 1 << 0)
    /// The sender will write no more data on this session.
    public static let dataEnd = FrameFlags(rawValue: 1 << 1)
    /// Session close.
    public static let close = FrameFlags(rawValue: 1 << 2)
    /// More fragments of this message follow.
    public static let more = FrameFlags(rawValue: 1 << 3)
    /// The session is refused or reset; the payload says why.
    public static let reset = FrameFlags(rawValue: 1 << 4)
    /// A DATA frame whose payload is a run of whole messages, each laid out as a ring record
    /// (16-byte header, payload, padding to 16): sent from the sender's ring and received into
    /// the receiver's as they are. Only to a session that announced
    /// ``SessionOpen/Features/recordRuns``.
    public static let records = FrameFlags(rawValue: 1 << 5)

    /// SESSION only: the receiving instance at the sender's end stopped reading (payload 1)
    /// or reads again (payload 0); the receiver flags its own instance's ring, so that
    /// instance's sends report the peer not responding.
    public static let stalled = FrameFlags(rawValue: 1 << 6)

    /// Every defined bit.
    public static let all: FrameFlags = [.start, .dataEnd, .close, .more, .reset, .records, .stalled]
}

/// One frame: header and payload.
public struct Frame: Sendable, Equatable {
    /// The header (its length matches the payload).
    public var header: FrameHeader
    /// The payload bytes.
    public var payload: [UInt8]

    /// A frame; the header's length is set from the payload.
    public init(_ header: FrameHeader, payload: [UInt8] = []) {
        var h = header
        h.length = UInt32(payload.count)
        self.header = h
        self.payload = payload
    }

    /// Header and payload as bytes.
    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: FrameHeader.size + payload.count)
        header.encode(to: &w)
        w.write(raw: payload)
        return w.bytes
    }
}

/// Cuts a byte stream (a TCP channel) into frames. Bytes are read straight into its buffer
/// (``fill(_:)``) and frames handed out in place (``nextFrame(_:)``), so a payload is copied
/// once, from the kernel into this buffer, before it goes to its ring.
///
/// A malformed header is an error for the whole channel: after it, nothing more is decoded
/// (the agent drops that channel and keeps serving the others).
///
/// A decoder made with `admitted: false` serves a peer that has not proven who it is yet: it
/// takes frames of at most ``handshakePayloadLimit`` bytes and holds little more, so a
/// connection that announces a large frame and stalls costs a few KiB, not a megabyte.
/// ``admit()`` lifts that once the peer's HELLO is accepted.
public struct FrameDecoder: Sendable {
    // Internal and inlinable where the channel's per-frame calls go through, so those
    // generic calls are specialized in the caller (no runtime generics per frame).
    @usableFromInline var storage: [UInt8]
    @usableFromInline var start = 0
    @usableFromInline var end = 0
    @usableFromInline var failure: DecodeError?
    /// Bytes ``fill(_:)`` offers the reader at least (once admitted).
    public static let readChunk = 256 * 1024
    /// Largest payload before ``admit()``: ample for HELLO and a refusal's reason.
    public static let handshakePayloadLimit = 4096
    /// Whether the peer was admitted: full-size frames and reads.
    public private(set) var isAdmitted: Bool
    /// Bytes ``fill(_:)`` offers now.
    @usableFromInline var chunk: Int { isAdmitted ? Self.readChunk : Self.handshakePayloadLimit }

    /// An empty decoder; `admitted: false` for a peer not yet authenticated (see above).
    public init(admitted: Bool = true) {
        isAdmitted = admitted
        storage = [UInt8](repeating: 0, count: admitted ? Self.readChunk : Self.handshakePayloadLimit)
    }

    /// The peer proved who it is: frames up to ``FrameHeader/maximumPayload`` from now on.
    public mutating func admit() { isAdmitted = true }

    /// Adds received bytes (copying them).
    public mutating func feed<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        guard failure == nil else { return }
        makeRoom(bytes.count)
        storage.replaceSubrange(end..<(end + bytes.count), with: bytes)
        end += bytes.count
    }

    /// Lets `read` write into the free space (at least ``readChunk`` bytes); it returns how
    /// many bytes it wrote, or nil. Returns what `read` returned.
    @inlinable
    public mutating func fill<E: Error>(_ read: (UnsafeMutableRawBufferPointer) throws(E) -> Int?) throws(E) -> Int? {
        makeRoom(chunk)
        let at = end
        // withUnsafeMutableBytes rethrows untyped errors; carry the typed one in a Result.
        let n = try storage.withUnsafeMutableBytes { raw in
            Result { () throws(E) in try read(UnsafeMutableRawBufferPointer(rebasing: raw[at...])) }
        }.get()
        if let n, n > 0 { end += n }
        return n
    }

    /// Makes `count` bytes free after `end`, moving pending bytes to the front or growing.
    @usableFromInline
    mutating func makeRoom(_ count: Int) {
        if start == end { start = 0; end = 0 }
        if storage.count - end >= count { return }
        if start > 0 {
            let pending = end - start
            storage.withUnsafeMutableBytes { raw in
                raw.baseAddress!.copyMemory(from: raw.baseAddress! + start, byteCount: pending)
            }
            start = 0
            end = pending
        }
        if storage.count - end < count {
            // A new zeroed buffer and one copy of the pending bytes: appending a repeated
            // element goes byte by byte through generic code in a debug build (76 ms per
            // 256 KiB), which stalled debug agents' turns for 300 ms when large frames arrived.
            var grown = [UInt8](repeating: 0, count: end + count)
            let pending = end
            grown.withUnsafeMutableBytes { destination in
                storage.withUnsafeBytes { source in
                    destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[..<pending]))
                }
            }
            storage = grown
        }
    }

    /// Passes the next whole frame to `body` (the payload is valid only during the call) and
    /// returns its result; `nil` when more bytes are needed. Throws on a malformed header
    /// (and on every call after it).
    @inlinable
    public mutating func nextFrame<R>(_ body: (FrameHeader, UnsafeRawBufferPointer) -> R) throws(DecodeError) -> R? {
        guard let header = try headerAtStart() else { return nil }
        let total = FrameHeader.size + Int(header.length)
        guard end - start >= total else {
            if storage.count - start < total { makeRoom(total - (end - start)) }
            return nil
        }
        let at = start + FrameHeader.size
        start += total
        return storage.withUnsafeBytes { raw in
            body(header, UnsafeRawBufferPointer(rebasing: raw[at..<(at + Int(header.length))]))
        }
    }

    /// The header at the front of the buffer, nil if incomplete; a malformed one fails the
    /// decoder for good.
    @usableFromInline
    mutating func headerAtStart() throws(DecodeError) -> FrameHeader? {
        if let failure { throw failure }
        guard end - start >= FrameHeader.size else { return nil }
        let at = start
        // withUnsafeBytes rethrows untyped errors; carry the typed one in a Result.
        let decoded = storage.withUnsafeBytes { raw in
            Result { () throws(DecodeError) in
                try FrameHeader(decoding: UnsafeRawBufferPointer(rebasing: raw[at..<(at + FrameHeader.size)]))
            }
        }
        switch decoded {
        case .success(let header) where !isAdmitted && Int(header.length) > Self.handshakePayloadLimit:
            let error = DecodeError.invalid(field: "frame length", value: "\(header.length) (at most \(Self.handshakePayloadLimit) before the channel's HELLO is accepted)")
            failure = error
            throw error
        case .success(let header): return header
        case .failure(let error):
            failure = error
            throw error
        }
    }

    /// The header of a frame whose payload has not fully arrived yet (after ``nextFrame(_:)``
    /// returned nil), with how many payload bytes are buffered; nil when no header is complete.
    public mutating func partialFrame() throws(DecodeError) -> (header: FrameHeader, buffered: Int)? {
        guard let header = try headerAtStart() else { return nil }
        let buffered = end - start - FrameHeader.size
        return buffered < Int(header.length) ? (header, buffered) : nil
    }

    /// Moves the partial frame's buffered payload to `destination` and forgets the frame: its
    /// remaining payload bytes are the caller's to read (into the rest of `destination`)
    /// before any further frame is decoded. Returns the bytes moved.
    public mutating func takePartialPayload(into destination: UnsafeMutableRawPointer) -> Int {
        let buffered = end - start - FrameHeader.size
        storage.withUnsafeBytes { raw in
            destination.copyMemory(from: raw.baseAddress! + start + FrameHeader.size, byteCount: buffered)
        }
        start = 0
        end = 0
        return buffered
    }

    /// Like ``fill(_:)``, but offers `read` at most `limit` bytes: a receiver that places large
    /// payloads directly reads little past the next header.
    @inlinable
    public mutating func fill<E: Error>(limit: Int, _ read: (UnsafeMutableRawBufferPointer) throws(E) -> Int?) throws(E) -> Int? {
        try fill { buffer throws(E) in try read(UnsafeMutableRawBufferPointer(rebasing: buffer.prefix(limit))) }
    }

    /// The next whole frame as a copy, `nil` if more bytes are needed; throws on a malformed
    /// header (and on every call after it).
    public mutating func next() throws(DecodeError) -> Frame? {
        try nextFrame { header, payload in Frame(header, payload: Array(payload)) }
    }

    /// Bytes received but not yet returned as frames.
    public var pendingBytes: Int { end - start }
}
