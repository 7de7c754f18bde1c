import Foundation
import Testing

/// `vio-agent` as a user meets it: refusals with reasons, a clean start and stop.
@Suite(.serialized)
struct AgentStartupTests {
    let topologies = Tools.repositoryRoot + "/topologies"

    @Test func refusesAnInvalidTopologyWithFileLineAndColumn() throws {
        let dir = Tools.scratchDirectory()
        let file = dir + "/bad.yaml"
        try "cluster: c\nversion: 1\nhosts:\n  - name: a\n    address: 1.2.3.999\n".write(toFile: file, atomically: true, encoding: .utf8)
        let r = try Tools.run("vio-agent", ["--topology", file, "--control-socket", dir + "/s.sock"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("\(file):5:14: error: '1.2.3.999' is not a valid address for host 'a'"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/s.sock"))
    }

    @Test func refusesAHostNotInTheTopology() throws {
        let r = try Tools.run("vio-agent", ["--topology", topologies + "/two-hosts.yaml", "--host", "gamma",
                                           "--control-socket", Tools.scratchDirectory() + "/s.sock"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("host 'gamma' is not declared in \(topologies)/two-hosts.yaml; declared hosts: alpha, beta"))
    }

    @Test func asksForHostWhenTheTopologyHasSeveral() throws {
        let r = try Tools.run("vio-agent", ["--topology", topologies + "/two-hosts.yaml"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("declares 2 hosts (alpha, beta); pass --host NAME"))
    }

    @Test func refusesMissingTopologyFile() throws {
        let r = try Tools.run("vio-agent", ["--topology", "/nonexistent.yaml"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("/nonexistent.yaml: error: cannot open topology file: No such file or directory"))
    }

    @Test func refusesRDMAWithoutADevice() throws {
        let dir = Tools.scratchDirectory()
        let file = dir + "/rdma.yaml"
        try "cluster: c\nversion: 1\nhosts:\n  - { name: a, address: 127.0.0.1, transport: rdma }\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let r = try Tools.run("vio-agent", ["--topology", file, "--control-socket", dir + "/s.sock"])
        guard !FileManager.default.fileExists(atPath: "/sys/class/infiniband") else { return }
        #expect(r.status == 2)
        #expect(r.stderr.contains("transport 'rdma' requested but no RDMA device"))
    }

    @Test func checkPrintsTheHostViewAndExits() throws {
        let r = try Tools.run("vio-agent", ["--topology", topologies + "/four-hosts.yaml", "--host", "h4", "--check",
                                           "--control-socket", "/tmp/x.sock"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("- name: h4"))
        #expect(r.stdout.contains("nat: behind"))
        #expect(r.stdout.contains("control_socket: /tmp/x.sock"))
    }

    @Test func startsServesStatusAndStopsCleanly() throws {
        let socket = Tools.scratchDirectory() + "/agent.sock"
        let agent = try RunningAgent(socket: socket)
        let status = try Tools.run("vioctl", ["status", "--socket", socket])
        #expect(status.status == 0)
        #expect(status.stdout.contains("cluster:   demo"))
        #expect(status.stdout.contains("host:      local"))
        #expect(status.stdout.contains("db1 <-> db2"))
        #expect(status.stdout.contains("instances: 2 declared, 0 attached"))

        let second = try Tools.run("vio-agent", ["--control-socket", socket])
        #expect(second.status == 2)
        #expect(second.stderr.contains("another vio-agent is already serving \(socket)"))

        let (code, log) = agent.stop()
        #expect(code == 0)
        #expect(log.contains("stopping on signal 15"))
        #expect(!FileManager.default.fileExists(atPath: socket), "socket removed on stop")
    }

    @Test func replacesAStaleSocketLeftByAKilledAgent() throws {
        let socket = Tools.scratchDirectory() + "/agent.sock"
        let first = try RunningAgent(socket: socket)
        _ = first.stop(signal: SIGKILL)
        #expect(FileManager.default.fileExists(atPath: socket), "kill -9 leaves the socket file behind")
        let second = try RunningAgent(socket: socket)
        #expect(try Tools.run("vioctl", ["status", "--socket", socket]).status == 0)
        #expect(second.stop().0 == 0)
    }

    @Test func statusWithoutAnAgentSaysWhatToDo() throws {
        let r = try Tools.run("vioctl", ["status", "--socket", Tools.scratchDirectory() + "/none.sock"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("cannot reach vio-agent at"))
        #expect(r.stderr.contains("Is the agent running?"))
    }
}
