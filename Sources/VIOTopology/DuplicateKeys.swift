import Yams

/// Finds where duplicated mapping keys are repeated. Yams refuses a mapping with a repeated
/// key and names only the key and its first occurrence, but the repeat is the line to fix.
/// So a copy of the text is composed again with that first occurrence renamed, and again for
/// each further duplicate Yams names, until the copy composes; in that tree every key whose
/// original name already appeared in its mapping is a repeat.
enum DuplicateKeys {
    /// Prefixed to the nth renamed key: a private-use character no real key starts with, a
    /// different one each time so that two renamed occurrences of one key stay distinct.
    private static func marker(_ n: Int) -> Unicode.Scalar { Unicode.Scalar(0xE000 + UInt32(n))! }

    /// One diagnostic per repeated key, in file order, each naming the first occurrence; nil
    /// when the repeats are not found within `attempts` compositions of the copy. `key` and
    /// `first` are what Yams reported. The default number of attempts keeps the extra work to
    /// about one composition of a file of the maximum size.
    static func diagnostics(in text: String, key: String, first: SourceLocation,
                            attempts: Int? = nil) -> [Diagnostic]? {
        let file = first.file
        var scalars = Array(text.unicodeScalars)
        var renamed: [SourceLocation: String] = [:]  // original position of a renamed key → its name
        var insertions: [SourceLocation] = []  // where each marker went, in the copy as it was then
        var next = (key, first)  // the first occurrence Yams reported, in the copy
        let attempts = attempts ?? min(8, max(1, SourceGuard.maximumBytes / max(1, text.utf8.count)))

        // A position in the copy, in the original text: each marker moved the rest of its line right.
        func original(_ mark: Mark) -> SourceLocation {
            original(SourceLocation(file: file, line: mark.line, column: mark.column))
        }
        func original(_ location: SourceLocation) -> SourceLocation {
            var location = location
            for insertion in insertions.reversed()
            where insertion.line == location.line && location.column > insertion.column {
                location.column -= 1
            }
            return location
        }

        for attempt in 0..<min(attempts, 256) {  // 256 markers stay in the private-use area
            let (name, at) = next
            guard let offset = offset(of: at, in: scalars), renamed[original(at)] == nil else { return nil }
            renamed[original(at)] = name
            // Inside the quotes of a quoted key, so the copy stays valid YAML.
            let quoted = scalars[offset] == "\"" || scalars[offset] == "'"
            scalars.insert(marker(attempt), at: quoted ? offset + 1 : offset)
            insertions.append(SourceLocation(file: file, line: at.line, column: at.column + (quoted ? 1 : 0)))
            do {
                guard let root = try Yams.compose(yaml: String(String.UnicodeScalarView(scalars))) else { return nil }
                let found = repeats(in: root, renamed: renamed, original: { original($0) })
                return found.isEmpty ? nil : found
            } catch YamlError.duplicatedKeysInMapping(let names, let context) {
                next = (names.first ?? "", SourceLocation(file: file, line: context.mark.line, column: context.mark.column))
            } catch {
                return nil  // renaming broke the copy (an anchor or alias as key): give up
            }
        }
        return nil
    }

    /// Every key repeated within its mapping, read by its original name.
    private static func repeats(in root: Node, renamed: [SourceLocation: String],
                                original: (Mark) -> SourceLocation) -> [Diagnostic] {
        var found: [Diagnostic] = []
        var visited: Set<SourceLocation> = []  // aliases repeat a collection: read each once
        var pending = [root]
        while let node = pending.popLast() {
            switch node {
            case .scalar, .alias:
                continue
            case .sequence(let sequence):
                guard let mark = sequence.mark, visited.insert(original(mark)).inserted else { continue }
                pending += sequence
            case .mapping(let mapping):
                guard let mark = mapping.mark, visited.insert(original(mark)).inserted else { continue }
                var firsts: [String: SourceLocation] = [:]
                for (key, value) in mapping {
                    pending += [key, value]
                    guard case .scalar(let scalar) = key, let keyMark = scalar.mark else { continue }
                    let at = original(keyMark)
                    let name = renamed[at] ?? scalar.string
                    if let first = firsts[name] {
                        found.append(Diagnostic(.error, at: at, "duplicate key '\(name)' in one mapping",
                                                hint: "first declared at \(first); each key may appear once per mapping"))
                    } else {
                        firsts[name] = at
                    }
                }
            }
        }
        return found.sorted { ($0.location.line, $0.location.column) < ($1.location.line, $1.location.column) }
    }

    /// The index of `mark` in `scalars`, counting lines and columns as libyaml does: a byte order
    /// mark at the start is not counted, and "\r\n", "\r", "\n", NEL, LS and PS each end a line.
    private static func offset(of mark: SourceLocation, in scalars: [Unicode.Scalar]) -> Int? {
        var line = 1, column = 1
        var index = scalars.first == "\u{FEFF}" ? 1 : 0
        while index < scalars.count {
            if line == mark.line && column == mark.column { return index }
            switch scalars[index] {
            case "\r" where index + 1 < scalars.count && scalars[index + 1] == "\n":
                index += 2
                line += 1
                column = 1
            case "\r", "\n", "\u{85}", "\u{2028}", "\u{2029}":
                index += 1
                line += 1
                column = 1
            default:
                index += 1
                column += 1
            }
        }
        return nil
    }
}
