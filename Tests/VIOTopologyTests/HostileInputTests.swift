import Foundation
import Testing
@testable import VIOTopology

/// Files that are not topologies at all must give one clear error, quickly, never a crash.
struct HostileInputTests {
    func diagnostics(_ bytes: [UInt8]) -> [Diagnostic] {
        do {
            _ = try TopologyLoader.parse(bytes: bytes, file: "t.yaml")
            return []
        } catch {
            return error.diagnostics
        }
    }

    func temporaryFile(_ bytes: [UInt8]) throws -> String {
        let path = NSTemporaryDirectory() + "vio-topology-\(UUID().uuidString).yaml"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func emptyFile() {
        let d = diagnostics([])
        #expect(d.count == 1)
        #expect(d.first?.message.contains("file is empty") == true)
    }

    @Test func onlyCommentsIsEmpty() {
        let d = diagnostics(Array("# nothing here\n\n   # still nothing\n---\n".utf8))
        #expect(d.first?.message.contains("file is empty") == true)
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
}
