import Yams

#if canImport(Glibc)
import Glibc
#endif

/// Loads and validates topology files.
public enum TopologyLoader {
    /// Reads, parses and validates the file at `path`.
    ///
    /// - Returns: the topology and any warnings.
    /// - Throws: ``TopologyError`` listing every problem found (syntax errors stop at the first).
    public static func load(path: String) throws(TopologyError) -> (Topology, [Diagnostic]) {
        let bytes: [UInt8]
        do {
            bytes = try readFile(path)
        } catch {
            throw TopologyError(diagnostics: [
                Diagnostic(.error, at: SourceLocation(file: path, line: 0, column: 0), error.message, hint: error.hint),
            ])
        }
        return try parse(bytes: bytes, file: path)
    }

    /// Parses and validates topology text; `file` names it in diagnostics.
    public static func parse(text: String, file: String = "<topology>") throws(TopologyError) -> (Topology, [Diagnostic]) {
        try parse(bytes: Array(text.utf8), file: file)
    }

    /// Parses and validates raw bytes; `file` names them in diagnostics.
    public static func parse(bytes: [UInt8], file: String) throws(TopologyError) -> (Topology, [Diagnostic]) {
        let text: String
        switch SourceGuard.check(bytes, file: file) {
        case .success(let t): text = t
        case .failure(let e): throw e
        }
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw TopologyError(diagnostics: [
                    Diagnostic(.error, at: SourceLocation(file: file, line: 0, column: 0), "file holds no YAML document"),
                ])
            }
            root = node
        } catch let error as TopologyError {
            throw error
        } catch {
            throw TopologyError(diagnostics: [syntaxDiagnostic(error, file: file)])
        }
        let decoder = NodeDecoder(file: file)
        let topology = decoder.decodeTopology(root)
        if let topology { decoder.validate(topology) }
        let ordered = decoder.diagnostics.sorted {
            ($0.location.line, $0.location.column) < ($1.location.line, $1.location.column)
        }
        guard let topology, !ordered.contains(where: { $0.severity == .error }) else {
            throw TopologyError(diagnostics: ordered)
        }
        return (topology, ordered)
    }

    /// A YAML syntax error, with the parser's line and column.
    private static func syntaxDiagnostic(_ error: any Error, file: String) -> Diagnostic {
        func at(_ mark: Mark) -> SourceLocation { SourceLocation(file: file, line: mark.line, column: mark.column) }
        switch error as? YamlError {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let detail = context.map { " (\($0.text) at line \($0.mark.line))" } ?? ""
            return Diagnostic(.error, at: at(mark), "YAML syntax error: \(problem)\(detail)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return Diagnostic(.error, at: at(context.mark),
                              "duplicate key \(duplicates.map { "'\($0)'" }.joined(separator: ", ")) in one mapping",
                              hint: "each key may appear once; merge the two entries")
        case .reader(let problem, let offset, _, _):
            return Diagnostic(.error, at: SourceLocation(file: file, line: 0, column: 0),
                              "cannot read YAML: \(problem)" + (offset.map { " at byte \($0)" } ?? ""))
        default:
            return Diagnostic(.error, at: SourceLocation(file: file, line: 0, column: 0), "cannot parse YAML: \(error)")
        }
    }

    private struct ReadError: Error {
        var message: String
        var hint: String?
    }

    /// Reads at most one byte past the size limit, so a huge file is refused without reading it all.
    private static func readFile(_ path: String) throws(ReadError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            let reason = String(cString: strerror(code))
            let hint = code == ENOENT ? "check the path; the samples are in topologies/" : nil
            throw ReadError(message: "cannot open topology file: \(reason)", hint: hint)
        }
        defer { close(fd) }
        var info = stat()
        if fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
            throw ReadError(message: "is a directory, not a topology file")
        }
        let limit = SourceGuard.maximumBytes + 1
        var bytes = [UInt8](repeating: 0, count: limit)
        var filled = 0
        while filled < limit {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, limit - filled) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ReadError(message: "cannot read topology file: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            filled += n
        }
        if filled == limit {
            let size = info.st_size > limit ? "\(info.st_size) bytes" : "more than \(SourceGuard.maximumBytes) bytes"
            throw ReadError(message: "file is \(size); topology files are limited to \(SourceGuard.maximumBytes) bytes",
                            hint: "is this the right file?")
        }
        return Array(bytes[..<filled])
    }
}
