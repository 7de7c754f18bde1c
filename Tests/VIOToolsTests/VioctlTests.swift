import Foundation
import Testing

struct VioctlTests {
    let topologies = Tools.repositoryRoot + "/topologies"

    @Test func checkAcceptsTheSamples() throws {
        let r = try Tools.run("vioctl", ["topology", "check"] + ["single-host", "two-hosts", "four-hosts"].map { "\(topologies)/\($0).yaml" })
        #expect(r.status == 0)
        #expect(r.stdout.contains("four-hosts.yaml: ok: cluster 'four-hosts', 4 hosts, 8 instances, 28 links, 1 service"))
    }

    @Test func checkListsEveryErrorAndFails() throws {
        let file = Tools.repositoryRoot + "/Tests/VIOTopologyTests/Fixtures/invalid/many-errors.yaml"
        let r = try Tools.run("vioctl", ["topology", "check", file])
        #expect(r.status == 1)
        let errorLines = r.stdout.split(separator: "\n").filter { $0.contains(": error: ") }
        #expect(errorLines.count == 5)
        #expect(errorLines.allSatisfy { $0.hasPrefix("\(file):") })
        #expect(r.stdout.contains("many-errors.yaml: 5 errors"))
    }

    @Test func showResolvesOneHost() throws {
        let r = try Tools.run("vioctl", ["topology", "show", "\(topologies)/two-hosts.yaml", "--host", "beta"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("- name: beta"))
        #expect(r.stdout.contains("channels: 2 (peer dials)"))
        #expect(!r.stdout.contains("- name: a2\n"))
    }

    @Test func showWholeClusterHasDefaults() throws {
        let r = try Tools.run("vioctl", ["topology", "show", "\(topologies)/four-hosts.yaml"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("peer_timeout_ms: 1000"))
        #expect(r.stdout.split(separator: "\n").filter { $0.hasPrefix("  - name: h") }.count == 4)
    }

    @Test func showUnknownHost() throws {
        let r = try Tools.run("vioctl", ["topology", "show", "\(topologies)/two-hosts.yaml", "--host", "x"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("host 'x' is not declared"))
    }

    @Test(arguments: [
        ("vio-agent", ["--topology", "--host", "--control-socket", "--log-level", "--check"]),
        ("vioctl", ["topology", "status"]),
    ])
    func helpExplainsEveryOption(tool: String, options: [String]) throws {
        let r = try Tools.run(tool, ["--help"])
        #expect(r.status == 0)
        for option in options { #expect(r.stdout.contains(option), "\(tool) --help lacks \(option)") }
    }

    @Test func statusHelpExplainsHowTheSocketIsFound() throws {
        let r = try Tools.run("vioctl", ["status", "--help"])
        for option in ["--socket", "--topology", "--host"] { #expect(r.stdout.contains(option)) }
    }
}
