import Foundation
import Testing
@testable import VIOTopology

/// Each file in Fixtures/invalid declares the diagnostics it must produce in `# expect:` lines:
/// `# expect: LINE:COLUMN: text`, where text must appear in the diagnostic (message and hint).
/// Every expected diagnostic must be reported, and no other error.
struct InvalidTopologyTests {
    struct Expectation: CustomStringConvertible {
        var line: Int
        var column: Int
        var text: String
        var description: String { "\(line):\(column): \(text)" }
    }

    static let fixtures = RepositoryPaths.files(in: RepositoryPaths.fixtures + "/invalid", ending: ".yaml")

    static func expectations(in path: String) throws -> [Expectation] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").compactMap { line in
            guard line.hasPrefix("# expect: ") else { return nil }
            let parts = line.dropFirst("# expect: ".count).split(separator: ":", maxSplits: 2)
            guard parts.count == 3, let l = Int(parts[0]), let c = Int(parts[1]) else { return nil }
            return Expectation(line: l, column: c, text: String(parts[2].dropFirst()))
        }
    }

    @Test func everyErrorKindHasAFixture() {
        #expect(Self.fixtures.count >= 25)
    }

    @Test(arguments: fixtures)
    func fixtureGivesExpectedDiagnostics(path: String) throws {
        let expected = try Self.expectations(in: path)
        #expect(!expected.isEmpty, "fixture has no '# expect:' line")
        do {
            _ = try TopologyLoader.load(path: path)
            Issue.record("\(path) loaded without error")
        } catch {
            let errors = error.errors
            for e in expected {
                let match = errors.contains {
                    $0.location.line == e.line && $0.location.column == e.column && $0.location.file == path
                        && $0.description.contains(e.text)
                }
                #expect(match, "expected \(e) in:\n\(error)")
            }
            #expect(errors.count == expected.count, "unexpected extra errors:\n\(error)")
        }
    }
}
