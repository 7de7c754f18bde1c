import Foundation
import Testing
@testable import VIOTopology

/// Files that are not topologies at all, or are built to mislead, must give clear errors at
/// real positions, each on one line a terminal shows as it is; quickly, never a crash.
struct HostileInputTests {
    static let empty = "file is empty: a topology needs at least 'cluster' and 'hosts' (see topologies/single-host.yaml for an example)"

    /// The diagnostics for `bytes`, each checked to have a position and to render as one safe line.
    func diagnostics(_ bytes: [UInt8], file: String = "t.yaml") -> [Diagnostic] {
        do {
            _ = try TopologyLoader.parse(bytes: bytes, file: file)
            return []
        } catch {
            for d in error.diagnostics {
                #expect(d.location.line >= 1 && d.location.column >= 1, "no position: \(d)")
                #expect(Self.isOneSafeLine(d.description), "not one safe line: \(d.description.debugDescription)")
            }
            return error.diagnostics
        }
    }

    func descriptions(_ text: String) -> [String] {
        diagnostics(Array(text.utf8)).map(\.description)
    }

    /// No line break, and nothing a terminal acts on or reorders by: control characters (C0,
    /// DEL, C1), line and paragraph separators, format characters (bidirectional overrides
    /// and isolates, zero-width characters).
    static func isOneSafeLine(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy { s in
            s.value >= 0x20 && !(0x7F..<0xA0).contains(s.value) && s != "\u{2028}" && s != "\u{2029}"
                && s.properties.generalCategory != .format
        }
    }

    func temporaryFile(_ bytes: [UInt8]) throws -> String {
        let path = NSTemporaryDirectory() + "vio-topology-\(UUID().uuidString).yaml"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func emptyFile() {
        #expect(descriptions("") == ["t.yaml:1:1: error: \(Self.empty)"])
        #expect(descriptions(" \n\t\n") == ["t.yaml:1:1: error: \(Self.empty)"])
    }

    @Test func onlyCommentsIsEmpty() {
        #expect(descriptions("# nothing here\n\n   # still nothing\n---\n") == ["t.yaml:1:1: error: \(Self.empty)"])
    }

    @Test func byteOrderMarkAndCommentsIsEmpty() {
        let d = diagnostics([0xEF, 0xBB, 0xBF] + Array("# nothing\r\n".utf8))
        #expect(d.map(\.description) == ["t.yaml:1:1: error: \(Self.empty)"])
    }

    @Test func crlfFileStartingWithACommentLoads() throws {
        let (t, _) = try TopologyLoader.parse(text: "# shop\r\ncluster: c\r\nversion: 1\r\nhosts:\r\n  - name: a\r\n    address: 127.0.0.1\r\n")
        #expect(t.hosts.map(\.name) == ["a"])
    }

    @Test func oversizedTextIsRefusedWhereTheLimitIsCrossed() {
        let line = Array("# fifteen byte\n".utf8)
        var bytes: [UInt8] = []
        while bytes.count <= SourceGuard.maximumBytes { bytes += line }
        let limit = SourceGuard.maximumBytes
        #expect(diagnostics(bytes).map(\.description) == [
            "t.yaml:\(limit / line.count + 1):\(limit % line.count + 1): error: file is \(bytes.count) bytes; topology files are limited to \(limit) bytes, and the limit is passed here (is this the right file?)",
        ])
    }

    @Test func aCharacterTheLimitCutsIsReportedAtItsStart() {
        let bytes = [UInt8](repeating: UInt8(ascii: "#"), count: SourceGuard.maximumBytes - 1) + Array("é\n".utf8)
        let d = diagnostics(bytes)
        #expect(d.map(\.location) == [SourceLocation(file: "t.yaml", line: 1, column: SourceGuard.maximumBytes)])
    }

    @Test func binaryFile() {
        var generator = SystemRandomNumberGenerator()
        var bytes = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes[100] = 0
        let d = diagnostics(bytes)
        #expect(d.count == 1)
        #expect(d.first?.message.contains("binary") == true || d.first?.message.contains("UTF-8") == true)
    }

    @Test func invalidUTF8NamesItsPosition() {
        let d = diagnostics(Array("cluster: c\nversion: 1\nhosts: \u{1}x".utf8).map { $0 == 1 ? 0xFF : $0 })
        #expect(d.first?.message == "file is not valid UTF-8")
        #expect(d.first?.location.line == 3)
        #expect(d.first?.location.column == 8)
    }

    @Test func fiftyMegabyteFileIsRefusedWithoutReadingIt() throws {
        let line = Array("# a comment line that pads the file to fifty megabytes.........\n".utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(50 << 20)
        while bytes.count < 50 << 20 { bytes += line }
        let path = try temporaryFile(bytes)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let start = Date()
        do {
            _ = try TopologyLoader.load(path: path)
            Issue.record("a 50 MB file loaded")
        } catch {
            #expect(error.diagnostics.count == 1)
            #expect(error.diagnostics[0].message.contains("\(bytes.count) bytes"))
            #expect(error.diagnostics[0].message.contains("limited to"))
            let limit = SourceGuard.maximumBytes
            #expect(error.diagnostics[0].location == SourceLocation(file: path, line: limit / line.count + 1,
                                                                    column: limit % line.count + 1))
        }
        #expect(Date().timeIntervalSince(start) < 10, "liveness bound only")
    }

    @Test func deeplyNestedFlowSequences() {
        let text = "cluster: c\nversion: 1\nhosts: " + String(repeating: "[", count: 100_000) + "\n"
        let d = diagnostics(Array(text.utf8))
        #expect(d.count == 1)
        #expect(d.first?.message.contains("nesting deeper than") == true)
        #expect(d.first?.location.line == 3)
    }

    @Test func deeplyNestedBlockMappings() {
        var text = "cluster: c\nversion: 1\n"
        for depth in 0..<200 { text += String(repeating: " ", count: depth) + "k\(depth):\n" }
        let d = diagnostics(Array(text.utf8))
        #expect(d.count == 1)
        #expect(d.first?.message.contains("nesting deeper than") == true)
    }

    @Test func deeplyNestedBlockMappingsWithCRLFLineEnds() {
        // Split on "\n" as Characters, a CRLF file was one line and its depth went unseen.
        var text = "cluster: c\r\nversion: 1\r\n"
        for depth in 0..<200 { text += String(repeating: " ", count: depth) + "k\(depth):\r\n" }
        #expect(descriptions(text) == [
            "t.yaml:35:33: error: nesting deeper than 32 levels (topology files nest a few levels; is this the right file?)",
        ])
    }

    @Test func deeplyNestedBlockSequences() {
        var text = "cluster: c\nversion: 1\nhosts:\n"
        for depth in 0..<200 { text += String(repeating: " ", count: depth * 2) + "-\n" }
        let d = diagnostics(Array(text.utf8))
        #expect(d.count == 1)
        #expect(d.first?.message.contains("nesting deeper than") == true)
    }

    @Test func missingFile() {
        do {
            _ = try TopologyLoader.load(path: "/nonexistent/topology.yaml")
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.diagnostics.first?.description == "/nonexistent/topology.yaml: error: cannot open topology file: No such file or directory (check the path; the samples are in topologies/)")
        }
    }

    @Test func missingFileNameIsEscaped() {
        do {
            _ = try TopologyLoader.load(path: "/nonexistent/\u{202E}lmy.yaml")
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.diagnostics.first?.description.hasPrefix("/nonexistent/\\u{202E}lmy.yaml: error: cannot open") == true)
        }
    }

    @Test func directoryIsNotATopology() {
        do {
            _ = try TopologyLoader.load(path: NSTemporaryDirectory())
            Issue.record("loaded a directory")
        } catch {
            #expect(error.diagnostics.first?.message.contains("directory") == true)
        }
    }

    @Test func topLevelListIsRefused() {
        let d = diagnostics(Array("- a\n- b\n".utf8))
        #expect(d.first?.message.contains("the topology must be a mapping") == true)
    }

    @Test func billionLaughsStaysBounded() {
        // Aliases multiply nodes, but the schema takes scalars where lists could hide, and
        // groups are bounded, so this fails on types quickly instead of expanding.
        var text = "cluster: c\nversion: 1\nhosts: [{name: a, address: 127.0.0.1}]\n"
        text += "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        for i in 1..<9 { text += "x\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n" }
        text += "links:\n  - group: *a8\n"
        let start = Date()
        let d = diagnostics(Array(text.utf8))
        #expect(!d.isEmpty)
        #expect(Date().timeIntervalSince(start) < 10, "liveness bound only")
    }

    @Test func aControlCharacterTheYAMLReaderRefusesHasItsPosition() {
        #expect(descriptions("cluster: c\nversion: 1\u{1B}\n")
            == ["t.yaml:2:11: error: cannot read YAML: control characters are not allowed"])
    }

    @Test func duplicateKeyIsReportedAtTheRepeat() {
        let text = "cluster: c\nversion: 1\nhosts:\n  - name: a\n    name: b\n    address: 127.0.0.1\n"
        #expect(descriptions(text) == [
            "t.yaml:5:5: error: duplicate key 'name' in one mapping (first declared at t.yaml:4:5; each key may appear once per mapping)",
        ])
    }

    @Test func everyRepeatOfEveryDuplicateKeyIsReported() {
        // Yams names one duplicated key at a time, nested mappings first. Here: a flow mapping on
        // one line (the copy's columns shift after each renamed key), a quoted first occurrence,
        // a key three times, two duplicated keys in one mapping, and one in the outer mapping.
        let text = """
            cluster: c
            version: 1
            hosts: [{"name": a, address: x, name: b, address: y, name: c}]
            cluster: d
            """
        let hint = "each key may appear once per mapping"
        #expect(descriptions(text) == [
            "t.yaml:3:33: error: duplicate key 'name' in one mapping (first declared at t.yaml:3:10; \(hint))",
            "t.yaml:3:42: error: duplicate key 'address' in one mapping (first declared at t.yaml:3:21; \(hint))",
            "t.yaml:3:54: error: duplicate key 'name' in one mapping (first declared at t.yaml:3:10; \(hint))",
            "t.yaml:4:1: error: duplicate key 'cluster' in one mapping (first declared at t.yaml:1:1; \(hint))",
        ])
    }

    @Test func duplicateKeysBeyondTheBudgetAreNotSearchedFor() {
        // Each further duplicate costs one more composition of the file, so the search is bounded.
        let text = "a: 1\nb: {x: 1, x: 2}\na: 2\n"
        let first = SourceLocation(file: "t.yaml", line: 2, column: 5)
        #expect(DuplicateKeys.diagnostics(in: text, key: "x", first: first, attempts: 1) == nil)
        #expect(DuplicateKeys.diagnostics(in: text, key: "x", first: first, attempts: 2)?.map(\.location) == [
            SourceLocation(file: "t.yaml", line: 2, column: 11), SourceLocation(file: "t.yaml", line: 3, column: 1),
        ])
    }

    @Test func aLargeFileFallsBackToTheFirstOccurrence() {
        // Over half the size limit, one extra composition is allowed: one duplicate is found, the
        // second is not, and the error names the first occurrence Yams gave, saying so.
        var text = "a: 1\nb: {x: 1, x: 2}\na: 2\n"
        let padding = "# " + String(repeating: "-", count: 1000) + "\n"
        while text.utf8.count <= SourceGuard.maximumBytes / 2 { text += padding }
        #expect(descriptions(text) == [
            "t.yaml:2:5: error: duplicate key 'x' in one mapping (this is its first occurrence; each key may appear once per mapping)",
        ])
    }

    @Test func fileTextInDiagnosticsIsEscaped() {
        // A bidirectional override as it is, an escape and a newline from double-quoted escapes,
        // and an isolate in a key.
        let text = """
            cluster: c
            version: 1
            hosts:
              - name: "a\u{202E}b"
                address: 127.0.0.1
              - name: "x\\e[2Jy"
                address: 127.0.0.2
              - name: "line\\nbreak"
                address: 127.0.0.3
            k\u{2066}ey: 1
            """
        #expect(descriptions(text) == [
            "t.yaml:4:11: error: 'a\\u{202E}b' is not a valid name for 'name' in a host (\(Names.rule))",
            "t.yaml:6:11: error: 'x\\u{1B}[2Jy' is not a valid name for 'name' in a host (\(Names.rule))",
            "t.yaml:8:11: error: 'line\\u{A}break' is not a valid name for 'name' in a host (\(Names.rule))",
            "t.yaml:10:1: error: unknown key 'k\\u{2066}ey' in the topology (allowed keys: \(NodeDecoder.topLevelKeys.joined(separator: ", ")))",
        ])
    }

    @Test func theFileNameIsEscaped() {
        #expect(diagnostics([], file: "evil\u{1B}[2J\n.yaml").map(\.description)
            == ["evil\\u{1B}[2J\\u{A}.yaml:1:1: error: \(Self.empty)"])
    }

    @Test func controlAndInvisibleCharactersInTextValuesAreRefused() {
        let text = """
            cluster: c
            version: 1
            hosts:
              - name: a
                address: 127.0.0.1
                rdma_device: "mlx5\\e]0;owned\\a"
                control_socket: "/run/vio/a\\n.sock"
                key_file: /etc/vio/\u{202E}yek.key
            """
        let hint = "write it without control, bidirectional or zero-width characters"
        #expect(descriptions(text) == [
            "t.yaml:6:18: error: 'rdma_device' in a host contains \\u{1B}, a control or invisible character (\(hint))",
            "t.yaml:7:21: error: 'control_socket' in a host contains \\u{A}, a control or invisible character (\(hint))",
            "t.yaml:8:15: error: 'key_file' in a host contains \\u{202E}, a control or invisible character (\(hint))",
        ])
    }
}
