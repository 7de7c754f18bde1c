import Foundation
import Testing
import VIOWire
import VIOLinux

struct VioctlTests {
    let topologies = Tools.repositoryRoot + "/topologies"

    /// A status too large for one control packet (1,128 links) arrives whole, in pieces.
    @Test func statusOfAThousandLinks() throws {
        let names = (1...48).map { "i\($0)" }
        let f = try FabricFixture(instances: names.map { "  - { name: \($0), host: local }" }.joined(separator: "\n"),
                                  links: "  - group: [\(names.joined(separator: ", "))]")
        let text = try Tools.run("vioctl", ["status", "--socket", f.socket])
        #expect(text.status == 0 && text.stdout.contains("links:     1128") && text.stdout.contains("i47 <-> i48"), "\(text.stderr)")
        let json = try Tools.run("vioctl", ["status", "--json", "--socket", f.socket])
        #expect(json.status == 0 && json.stdout.components(separatedBy: "\"local_end\"").count == 1129, "\(json.stderr)")

        // A client that asks for large replies and does not read them holds up nobody: its
        // replies wait in the agent while another client is served at once; then they arrive
        // whole, in order.
        let slow = try UnixSocket.connect(path: f.socket)
        try slow.send(ControlMessage.hello(Hello(role: .observer, software: "test")).encoded())
        guard case .welcome = try ControlMessage.decode(try #require(try slow.receive(dontWait: false)).bytes) else {
            Issue.record("no WELCOME"); return
        }
        for _ in 0..<4 { try slow.send(ControlMessage.statusRequest.encoded()) }
        let started = Date()
        let other = try Tools.run("vioctl", ["status", "--socket", f.socket])
        #expect(other.status == 0 && Date().timeIntervalSince(started) < 5, "\(other.stderr)")
        var replies = 0
        var packet: [UInt8] = []
        while replies < 4, let received = try slow.receive(dontWait: false), !received.closed {
            guard case .fragment(let last, let bytes) = try ControlMessage.decode(received.bytes) else {
                Issue.record("a large reply came whole"); return
            }
            packet += bytes
            if last {
                guard case .status(let s) = try ControlMessage.decode(packet) else { Issue.record("not a status"); return }
                #expect(s.links.count == 1128)
                replies += 1
                packet = []
            }
        }
        #expect(replies == 4)
    }

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
