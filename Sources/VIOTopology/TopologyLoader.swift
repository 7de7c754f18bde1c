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
        try parse(bytes: readFile(path), file: path)
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
                // SourceGuard refuses files without content, so this is a defence only.
                throw TopologyError(diagnostics: [
                    Diagnostic(.error, at: SourceLocation(file: file, line: 1, column: 1), "file holds no YAML document"),
                ])
            }
            root = node
        } catch let error as TopologyError {
            throw error
        } catch {
            throw TopologyError(diagnostics: syntaxDiagnostics(error, text: text, file: file))
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

    /// A YAML syntax error, with the parser's line and column; duplicate keys at each repeat.
    private static func syntaxDiagnostics(_ error: any Error, text: String, file: String) -> [Diagnostic] {
        func at(_ mark: Mark) -> SourceLocation { SourceLocation(file: file, line: mark.line, column: mark.column) }
        let start = SourceLocation(file: file, line: 1, column: 1)
        switch error as? YamlError {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let detail = context.map { " (\($0.text) at line \($0.mark.line))" } ?? ""
            return [Diagnostic(.error, at: at(mark), "YAML syntax error: \(problem)\(detail)")]
        case .duplicatedKeysInMapping(let duplicates, let context):
            // Yams gives the first occurrence of one duplicated key; the repeat is the mistake.
            let key = duplicates.first ?? ""
            return DuplicateKeys.diagnostics(in: text, key: key, first: at(context.mark))
                ?? [Diagnostic(.error, at: at(context.mark), "duplicate key '\(key)' in one mapping",
                               hint: "this is its first occurrence; each key may appear once per mapping")]
        case .reader(let problem, let offset, _, _):
            // Yams counts the offset in Characters; SourceGuard counts positions in bytes.
            let index = offset.flatMap { text.index(text.startIndex, offsetBy: $0, limitedBy: text.endIndex) }
            let location = index.map { index in
                let (line, column) = SourceGuard.position(of: text.utf8.distance(from: text.startIndex, to: index),
                                                          in: Array(text.utf8))
                return SourceLocation(file: file, line: line, column: column)
            }
            return [Diagnostic(.error, at: location ?? start, "cannot read YAML: \(problem)")]
        default:
            return [Diagnostic(.error, at: start, "cannot parse YAML: \(error)")]
        }
    }

    /// Reads at most one byte past the size limit, so a huge file is refused without reading it
    /// all. A file that cannot be opened or read has no position to report: the whole file is named.
    private static func readFile(_ path: String) throws(TopologyError) -> [UInt8] {
        func failure(_ message: String, hint: String? = nil) -> TopologyError {
            TopologyError(diagnostics: [Diagnostic(.error, at: SourceLocation(wholeFile: path), message, hint: hint)])
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            let reason = String(cString: strerror(code))
            let hint = code == ENOENT ? "check the path; the samples are in topologies/" : nil
            throw failure("cannot open topology file: \(reason)", hint: hint)
        }
        defer { close(fd) }
        var info = stat()
        if fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
            throw failure("is a directory, not a topology file")
        }
        let limit = SourceGuard.maximumBytes + 1
        var bytes = [UInt8](repeating: 0, count: limit)
        var filled = 0
        while filled < limit {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, limit - filled) }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("cannot read topology file: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            filled += n
        }
        if filled == limit {
            let size = info.st_size > limit ? "\(info.st_size) bytes" : "more than \(SourceGuard.maximumBytes) bytes"
            throw TopologyError(diagnostics: [SourceGuard.tooLarge(bytes, size: size, file: path)])
        }
        return Array(bytes[..<filled])
    }
}
