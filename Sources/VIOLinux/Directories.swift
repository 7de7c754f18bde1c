#if canImport(Glibc)
import Glibc
#endif

/// Filesystem helpers for runtime paths.
public enum Directories {
    /// Creates `path` and its parents with `mode` where missing (like `mkdir -p`).
    public static func create(_ path: String, mode: mode_t = 0o755) throws(SystemError) {
        var current = ""
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw SystemError("mkdir", .init(rawValue: errno), detail: current)
            }
        }
    }

    /// The directory part of `path`.
    public static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
