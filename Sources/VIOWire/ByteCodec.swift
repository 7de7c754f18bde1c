/// Appends little-endian fields to a byte array.
public struct ByteWriter: Sendable {
    /// What has been written.
    public private(set) var bytes: [UInt8] = []

    /// An empty writer.
    public init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    /// Appends an integer in little-endian order.
    public mutating func write<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// Appends a Boolean as one byte.
    public mutating func write(_ value: Bool) { write(UInt8(value ? 1 : 0)) }

    /// Appends a string as a 16-bit length and UTF-8 bytes (cut at 65535 bytes).
    public mutating func write(_ value: String) {
        let utf8 = Array(value.utf8.prefix(Int(UInt16.max)))
        write(UInt16(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    /// Appends raw bytes.
    public mutating func write(raw: some Sequence<UInt8>) { bytes.append(contentsOf: raw) }
}

/// Why bytes could not be decoded.
public enum DecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The input ended `needed` bytes early, at `offset`.
    case truncated(offset: Int, needed: Int)
    /// A field held a value that is not allowed.
    case invalid(field: String, value: String)
    /// The message speaks a protocol version this side does not.
    case unsupportedVersion(found: Int, supported: Int)

    public var description: String {
        switch self {
        case .truncated(let offset, let needed): return "message truncated at byte \(offset) (\(needed) more bytes expected)"
        case .invalid(let field, let value): return "invalid \(field): \(value)"
        case .unsupportedVersion(let found, let supported):
            return "unsupported protocol version \(found) (this side speaks \(supported))"
        }
    }
}

/// Reads little-endian fields, checking every length against the input first: bytes from a
/// peer are never trusted.
public struct ByteReader: Sendable {
    private let bytes: [UInt8]
    /// The next byte to read.
    public private(set) var offset: Int

    /// A reader over `bytes` starting at `offset`.
    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    /// Bytes not yet read.
    public var remaining: Int { bytes.count - offset }

    /// Reads an integer.
    public mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) throws(DecodeError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw .truncated(offset: offset, needed: size - remaining) }
        var value = T.zero
        withUnsafeMutableBytes(of: &value) { raw in
            raw.copyBytes(from: bytes[offset..<offset + size])
        }
        offset += size
        return T(littleEndian: value)
    }

    /// Reads a one-byte Boolean; anything but 0 or 1 is invalid.
    public mutating func readBool() throws(DecodeError) -> Bool {
        switch try read(UInt8.self) {
        case 0: return false
        case 1: return true
        case let v: throw .invalid(field: "boolean", value: "\(v)")
        }
    }

    /// Reads a 16-bit-length-prefixed UTF-8 string.
    public mutating func readString() throws(DecodeError) -> String {
        let count = Int(try read(UInt16.self))
        let raw = try readBytes(count)
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw .invalid(field: "string", value: "not UTF-8")
        }
        return text
    }

    /// Reads `count` raw bytes.
    public mutating func readBytes(_ count: Int) throws(DecodeError) -> [UInt8] {
        guard count >= 0, remaining >= count else { throw .truncated(offset: offset, needed: count - remaining) }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    /// Reads an array count and checks it against a bound and the bytes left, so a forged
    /// count cannot make the reader allocate.
    public mutating func readCount(max: Int, minimumElementSize: Int = 1) throws(DecodeError) -> Int {
        let count = Int(try read(UInt32.self))
        guard count <= max, count * minimumElementSize <= remaining else {
            throw .invalid(field: "count", value: "\(count)")
        }
        return count
    }

    /// Throws unless every byte was consumed.
    public func expectEnd() throws(DecodeError) {
        guard remaining == 0 else { throw .invalid(field: "length", value: "\(remaining) trailing bytes") }
    }
}
