/// A size in bytes, written in topology files as `4096`, `64KiB`, `1 MiB` or `2GiB`.
public struct ByteSize: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The number of bytes.
    public var bytes: Int

    /// A size of `bytes` bytes.
    public init(bytes: Int) { self.bytes = bytes }

    /// `n` KiB.
    public static func kibibytes(_ n: Int) -> ByteSize { ByteSize(bytes: n << 10) }
    /// `n` MiB.
    public static func mebibytes(_ n: Int) -> ByteSize { ByteSize(bytes: n << 20) }
    /// `n` GiB.
    public static func gibibytes(_ n: Int) -> ByteSize { ByteSize(bytes: n << 30) }

    /// Whether the size is a power of two (ring sizes must be).
    public var isPowerOfTwo: Bool { bytes > 0 && bytes & (bytes - 1) == 0 }

    /// Parses `4096`, `64KiB`, `64 KiB`, `1MiB`, `2GiB`, `512B`. Decimal units (KB, MB) are
    /// refused on purpose: they are ambiguous, and rings want powers of two.
    public init?(parsing text: String) {
        let trimmed = text.filter { $0 != " " && $0 != "_" }
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let value = Int(digits) else { return nil }
        let shift: Int
        switch trimmed.dropFirst(digits.count) {
        case "", "B": shift = 0
        case "KiB": shift = 10
        case "MiB": shift = 20
        case "GiB": shift = 30
        default: return nil
        }
        guard value <= (Int.max >> (shift + 1)) else { return nil }
        self.bytes = value << shift
    }

    /// The largest binary unit that divides the size exactly: `64KiB`, `1MiB`, `1000`.
    public var description: String {
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")]
        where bytes >= (1 << shift) && bytes & ((1 << shift) - 1) == 0 {
            return "\(bytes >> shift)\(unit)"
        }
        return "\(bytes)"
    }

    public static func < (lhs: ByteSize, rhs: ByteSize) -> Bool { lhs.bytes < rhs.bytes }
}
