#if canImport(Glibc)
import Glibc
#endif

/// Unbuffered writes to stdout/stderr. Tools print progress that other processes wait for
/// (tests, the demo), so nothing may sit in a stdio buffer; and the C `stdout`/`stderr`
/// globals are not concurrency-safe in Swift 6.
public enum StandardStreams {
    /// Writes `text` to standard output.
    public static func out(_ text: String) { write(1, text) }
    /// Writes `text` to standard error.
    public static func error(_ text: String) { write(2, text) }

    private static func write(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            bytes = bytes.dropFirst(n)
        }
    }
}
