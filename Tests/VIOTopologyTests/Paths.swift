import Foundation

/// Paths inside the repository, found from this source file (no bundle resources needed).
enum RepositoryPaths {
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static let fixtures = root + "/Tests/VIOTopologyTests/Fixtures"
    static let topologies = root + "/topologies"

    static func files(in directory: String, ending suffix: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasSuffix(suffix) }.sorted().map { directory + "/" + $0 }
    }
}
