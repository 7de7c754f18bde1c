import VIOWire
import Yams

/// Reads a composed YAML tree into the model, recording a diagnostic for every problem
/// instead of stopping at the first, so `vioctl topology check` can list them all.
final class NodeDecoder {
    let file: String
    private(set) var diagnostics: [Diagnostic] = []

    init(file: String) { self.file = file }

    func location(_ node: Node) -> SourceLocation {
        // Composed nodes always carry a mark; only nodes built in code lack one.
        guard let mark = node.mark else { return SourceLocation(file: file, line: 1, column: 1) }
        return SourceLocation(file: file, line: mark.line, column: mark.column)
    }

    func error(_ node: Node, _ message: String, hint: String? = nil) {
        diagnostics.append(Diagnostic(.error, at: location(node), message, hint: hint))
    }

    func error(at location: SourceLocation, _ message: String, hint: String? = nil) {
        diagnostics.append(Diagnostic(.error, at: location, message, hint: hint))
    }

    func warning(at location: SourceLocation, _ message: String, hint: String? = nil) {
        diagnostics.append(Diagnostic(.warning, at: location, message, hint: hint))
    }

    /// A mapping's keys, with unknown and non-string keys reported once.
    func fields(of node: Node, in what: String, allowed: [String]) -> Fields? {
        guard case .mapping(let mapping) = node else {
            error(node, "\(what) must be a mapping of keys to values, found \(describe(node))")
            return nil
        }
        var values: [String: Node] = [:]
        var keyNodes: [String: Node] = [:]
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key else {
                error(key, "keys in \(what) must be plain words, found \(describe(key))")
                continue
            }
            let name = scalar.string
            guard allowed.contains(name) else {
                let suggestion = Self.closest(to: name, in: allowed).map { "did you mean '\($0)'?" }
                error(key, "unknown key '\(name)' in \(what)",
                      hint: suggestion ?? "allowed keys: \(allowed.joined(separator: ", "))")
                continue
            }
            values[name] = value
            keyNodes[name] = key
        }
        return Fields(decoder: self, what: what, node: node, values: values, keyNodes: keyNodes)
    }

    /// A sequence's items; anything else is reported.
    func items(of node: Node, in what: String) -> [Node] {
        guard case .sequence(let sequence) = node else {
            error(node, "\(what) must be a list, found \(describe(node))")
            return []
        }
        return Array(sequence)
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let s): return s.string.isEmpty ? "an empty value" : "'\(s.string)'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    /// The allowed word closest to a misspelling, when it is close enough to be a typo.
    static func closest(to word: String, in candidates: [String]) -> String? {
        let scored = candidates.map { ($0, editDistance(word.lowercased(), $0)) }
        guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(2, word.count / 3) else { return nil }
        return best.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(1, a.count) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return a.isEmpty ? b.count : row[b.count]
    }
}

/// The known keys of one mapping, with typed accessors that report wrong types.
struct Fields {
    let decoder: NodeDecoder
    let what: String
    let node: Node
    let values: [String: Node]
    let keyNodes: [String: Node]

    var location: SourceLocation { decoder.location(node) }

    subscript(key: String) -> Node? { values[key] }

    func location(of key: String) -> SourceLocation { decoder.location(values[key] ?? node) }

    func required(_ key: String) -> Node? {
        guard let value = values[key] else {
            decoder.error(node, "\(what) is missing '\(key)'")
            return nil
        }
        return value
    }

    func scalar(_ key: String, required: Bool) -> (String, Node)? {
        guard let value = required ? self.required(key) : values[key] else { return nil }
        guard case .scalar(let scalar) = value else {
            decoder.error(value, "'\(key)' in \(what) must be a single value, found \(decoder.describe(value))")
            return nil
        }
        return (scalar.string, value)
    }

    func name(_ key: String, required: Bool = true) -> String? {
        guard let (text, value) = scalar(key, required: required) else { return nil }
        guard Names.isValid(text) else {
            decoder.error(value, "'\(text)' is not a valid name for '\(key)' in \(what)", hint: Names.rule)
            return nil
        }
        return text
    }

    func string(_ key: String, required: Bool = false) -> String? {
        guard let (text, value) = scalar(key, required: required) else { return nil }
        guard !text.isEmpty else {
            decoder.error(value, "'\(key)' in \(what) is empty")
            return nil
        }
        // Addresses, paths and device names reach logs and `vioctl topology show` as they are;
        // none needs a control or invisible character, which could only hide or forge text there.
        if let bad = text.unicodeScalars.first(where: DisplaySafe.needsEscape) {
            decoder.error(value, "'\(key)' in \(what) contains \(DisplaySafe.escape(String(bad))), a control or invisible character",
                          hint: "write it without control, bidirectional or zero-width characters")
            return nil
        }
        return text
    }

    func integer(_ key: String, in range: ClosedRange<Int>, required: Bool = false) -> Int? {
        guard let (text, value) = scalar(key, required: required) else { return nil }
        guard let number = Int(text) else {
            decoder.error(value, "'\(key)' in \(what) must be a whole number, found '\(text)'")
            return nil
        }
        guard range.contains(number) else {
            decoder.error(value, "'\(key)' in \(what) is \(number); it must be between \(range.lowerBound) and \(range.upperBound)")
            return nil
        }
        return number
    }

    /// `agent_poll_us`: a whole number in `range`, or `auto` (returned as -1).
    func pollWindow(_ key: String, in range: ClosedRange<Int>) -> Int? {
        guard let (text, value) = scalar(key, required: false) else { return nil }
        if text == "auto" { return -1 }
        guard let number = Int(text), range.contains(number) else {
            decoder.error(value, "'\(key)' in \(what) is '\(text)'; it must be 'auto' or a whole number between \(range.lowerBound) and \(range.upperBound)")
            return nil
        }
        return number
    }

    func choice<E: RawRepresentable & CaseIterable>(_ key: String, _: E.Type) -> E? where E.RawValue == String {
        guard let (text, value) = scalar(key, required: false) else { return nil }
        guard let choice = E(rawValue: text) else {
            let allowed = E.allCases.map(\.rawValue)
            decoder.error(value, "'\(key)' in \(what) is '\(text)'; it must be one of \(allowed.joined(separator: ", "))")
            return nil
        }
        return choice
    }

    func size(_ key: String, powerOfTwo: Bool, in range: ClosedRange<ByteSize>) -> ByteSize? {
        guard let (text, value) = scalar(key, required: false) else { return nil }
        guard let size = ByteSize(parsing: text) else {
            decoder.error(value, "'\(key)' in \(what) is '\(text)', not a size",
                          hint: "write bytes as 65536 or with a binary unit: 64KiB, 1MiB, 1GiB")
            return nil
        }
        if powerOfTwo && !size.isPowerOfTwo {
            decoder.error(value, "'\(key)' in \(what) is \(text); it must be a power of two",
                          hint: "e.g. \(ByteSize(bytes: 1 << (Int.bitWidth - 1 - max(1, size.bytes).leadingZeroBitCount)))")
            return nil
        }
        guard range.contains(size) else {
            decoder.error(value, "'\(key)' in \(what) is \(size); it must be between \(range.lowerBound) and \(range.upperBound)")
            return nil
        }
        return size
    }

    func names(_ key: String) -> [(String, Node)]? {
        guard let value = required(key) else { return nil }
        var result: [(String, Node)] = []
        for item in decoder.items(of: value, in: "'\(key)' in \(what)") {
            guard case .scalar(let scalar) = item, Names.isValid(scalar.string) else {
                decoder.error(item, "'\(key)' in \(what) must list instance names, found \(decoder.describe(item))")
                continue
            }
            result.append((scalar.string, item))
        }
        return result
    }
}

/// The naming rule for clusters, hosts, instances and services.
enum Names {
    static let rule = "names are 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit"

    static func isValid(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.unicodeScalars.count <= 63,
              ("0"..."9").contains(first) || ("a"..."z").contains(first) || ("A"..."Z").contains(first)
        else { return false }
        return name.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
                || $0 == "-" || $0 == "_" || $0 == "."
        }
    }
}
