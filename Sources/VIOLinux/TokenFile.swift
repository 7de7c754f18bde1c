import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Instance tokens: a secret in a small file, read by the agent (to check) and by libvio
/// (to present). Surrounding whitespace is not part of the token.
public enum TokenFile {
    /// Why a token file could not be used.
    public struct Problem: Error, Sendable, CustomStringConvertible {
        /// What is wrong, naming the file.
        public var description: String
    }

    /// The largest token file accepted.
    public static let maximumBytes = 4096

    /// Reads the token in `path`.
    public static func read(_ path: String) throws(Problem) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Problem(description: "\(path): \(String(cString: strerror(errno)))") }
        let owner = OwnedFileDescriptor(taking: fd)
        var buffer = [UInt8](repeating: 0, count: maximumBytes + 1)
        var filled = 0
        while filled < buffer.count {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(owner.rawValue, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw Problem(description: "\(path): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            filled += n
        }
        guard filled <= maximumBytes else { throw Problem(description: "\(path) is larger than \(maximumBytes) bytes") }
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
        var bytes = buffer[..<filled]
        while let last = bytes.last, isSpace(last) { bytes.removeLast() }
        while let first = bytes.first, isSpace(first) { bytes.removeFirst() }
        guard !bytes.isEmpty else { throw Problem(description: "\(path) is empty") }
        return Array(bytes)
    }
}
