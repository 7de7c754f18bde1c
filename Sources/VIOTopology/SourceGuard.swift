/// Checks run on the raw bytes before the YAML parser sees them, so that a wrong file
/// (a binary, a log, a generated monster) fails fast with a clear message instead of a
/// parser stack overflow or minutes of work.
enum SourceGuard {
    /// Topology files are hand-written; a real one is a few KiB.
    static let maximumBytes = 4 << 20
    /// Real topologies nest 4 levels; more is a wrong file, and the YAML composer recurses.
    static let maximumDepth = 32

    /// Returns the text, or the diagnostics explaining why it is not a topology file.
    static func check(_ bytes: [UInt8], file: String) -> Result<String, TopologyError> {
        func fail(_ line: Int, _ column: Int, _ message: String, hint: String? = nil) -> Result<String, TopologyError> {
            .failure(TopologyError(diagnostics: [
                Diagnostic(.error, at: SourceLocation(file: file, line: line, column: column), message, hint: hint),
            ]))
        }
        if bytes.count > maximumBytes {
            return .failure(TopologyError(diagnostics: [tooLarge(bytes, size: "\(bytes.count) bytes", file: file)]))
        }
        if let nul = bytes.firstIndex(of: 0) {
            let (line, column) = position(of: nul, in: bytes)
            return fail(line, column, "file contains a NUL byte: it looks binary, not YAML",
                        hint: "give the path of a YAML topology file")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            let offset = firstInvalidUTF8(bytes)
            let (line, column) = position(of: offset, in: bytes)
            return fail(line, column, "file is not valid UTF-8", hint: "save it as UTF-8 text")
        }
        if !hasContent(text) {
            // Reported where the topology should begin.
            return fail(1, 1, "file is empty: a topology needs at least 'cluster' and 'hosts'",
                        hint: "see topologies/single-host.yaml for an example")
        }
        if let (line, column) = excessiveNesting(text) {
            return fail(line, column, "nesting deeper than \(maximumDepth) levels",
                        hint: "topology files nest a few levels; is this the right file?")
        }
        return .success(text)
    }

    /// The error for a file over the size limit, at the character holding its first byte past
    /// the limit. `bytes` holds at least the first `maximumBytes + 1` bytes; `size` describes
    /// the whole file.
    static func tooLarge(_ bytes: [UInt8], size: String, file: String) -> Diagnostic {
        var offset = maximumBytes
        // A character the limit cuts in two is reported at its first byte.
        while offset > maximumBytes - 3, bytes[offset] & 0xC0 == 0x80 { offset -= 1 }
        let (line, column) = position(of: offset, in: bytes)
        return Diagnostic(.error, at: SourceLocation(file: file, line: line, column: column),
                          "file is \(size); topology files are limited to \(maximumBytes) bytes, and the limit is passed here",
                          hint: "is this the right file?")
    }

    /// Whether anything but comments, blank lines and document markers is present.
    private static func hasContent(_ text: String) -> Bool {
        // Indentation, a byte order mark and the "\r" of a CRLF line end are not content.
        let isBlank = { (s: Unicode.Scalar) in s == " " || s == "\t" || s == "\r" || s == "\u{FEFF}" }
        // Scalars, not Characters: "\r\n" is one Character, so split as Characters on "\n" a
        // CRLF file was one line, and one that starts with a comment looked empty.
        return text.unicodeScalars.split(separator: "\n").contains { line in
            let trimmed = String(String.UnicodeScalarView(line.drop(while: isBlank).reversed().drop(while: isBlank).reversed()))
            return !trimmed.isEmpty && !trimmed.hasPrefix("#") && trimmed != "---" && trimmed != "..."
        }
    }

    /// 1-based line and column of a byte offset (columns counted in scalars, roughly).
    static func position(of offset: Int, in bytes: [UInt8]) -> (Int, Int) {
        var line = 1, column = 1
        for byte in bytes[..<offset] {
            if byte == UInt8(ascii: "\n") { line += 1; column = 1 } else if byte & 0xC0 != 0x80 { column += 1 }
        }
        return (line, column)
    }

    private static func firstInvalidUTF8(_ bytes: [UInt8]) -> Int {
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let scalar): offset += scalar.count
            case .error: return offset
            case .emptyInput: return max(0, bytes.count - 1)
            }
        }
    }

    /// Finds the first place where flow brackets or block indentation nest too deep.
    /// A conservative scan: quotes and comments are skipped, block depth is the number of
    /// distinct indentation levels open plus sequence dashes on the line.
    private static func excessiveNesting(_ text: String) -> (Int, Int)? {
        var indents: [Int] = []
        var flowDepth = 0
        for (index, rawLine) in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Array(rawLine)
            if line.last == "\r" { line.removeLast() }
            var column = 0
            while column < line.count, line[column] == " " { column += 1 }
            if column == line.count || line[column] == "#" { continue }
            if flowDepth == 0 {
                while let last = indents.last, last >= column { indents.removeLast() }
                indents.append(column)
                var dashes = 0, c = column
                while c + 1 < line.count, line[c] == "-", line[c + 1] == " " {
                    dashes += 1
                    c += 2
                    while c < line.count, line[c] == " " { c += 1 }
                }
                if indents.count + dashes > maximumDepth { return (index + 1, column + 1) }
            }
            var quote: Unicode.Scalar? = nil
            for (c, scalar) in line.enumerated().dropFirst(column) {
                if let q = quote {
                    if scalar == q { quote = nil }
                    continue
                }
                if scalar == "#", c > 0, line[c - 1] == " " { break }  // comment to end of line
                switch scalar {
                case "\"", "'": quote = scalar
                case "[", "{":
                    flowDepth += 1
                    if indents.count + flowDepth > maximumDepth { return (index + 1, c + 1) }
                case "]", "}": flowDepth = max(0, flowDepth - 1)
                default: break
                }
            }
        }
        return nil
    }
}
