import Foundation
import Testing

/// The RDMA transport between two hosts, in the soft-RoCE lab (scripts/rdma-lab): two QEMU
/// guests with rxe devices, one agent each, `transport: rdma`. One boot runs every case of
/// scripts/rdma-lab/fabric-suite.sh; each test here checks the lines its case printed.
///
/// The guests take both cores for a few minutes, so `make test` runs this suite in a step of
/// its own (`VIO_LAB_TESTS=1`), after the others: timing-bound tests never share the machine
/// with it.
@Suite(.serialized, .enabled(if: RDMALab.selected, "skipped here: run by make test's lab step (VIO_LAB_TESTS=1 swift test --filter RDMALabTests)"))
struct RDMALabTests {
    @Test func labStarts() throws {
        let run = try RDMALab.shared()
        #expect(run.output.contains("suite done"), "\(run.output)")
    }

    /// All-to-all checked streams (16 B to 8 MiB) over RDMA on every link of a group spanning
    /// both hosts, and a one-byte round trip.
    @Test func allToAllChecked() throws {
        let run = try RDMALab.shared()
        #expect(run.cases("all-to-all").count == 2 && run.cases("all-to-all").allSatisfy { $0.hasPrefix("ok") }, "\(run.output)")
        #expect(run.cases("one-byte").first?.hasPrefix("ok") == true, "\(run.output)")
        // Both ends name the RDMA device and queue pair that carries the pair.
        #expect(run.cases("carrier").count == 2 && run.cases("carrier").allSatisfy { $0.hasPrefix("ok") && $0.contains("QP") }, "\(run.output)")
        // Large payloads crossed ring to ring by RDMA READ, at both ends.
        #expect(run.cases("pulled").count == 2 && run.cases("pulled").allSatisfy { $0.hasPrefix("ok") }, "\(run.output)")
    }

    /// A connect request that presents no ticket (rping) is rejected; the pair carries on.
    @Test func requestWithoutTicketIsRejected() throws {
        let run = try RDMALab.shared()
        #expect(run.cases("impostor").first?.hasPrefix("ok") == true, "\(run.output)")
        // Proxy mode over the pair: TCP streams through both agents on RDMA.
        #expect(run.cases("proxy").first?.hasPrefix("ok checked 4 connections") == true, "\(run.output)")
    }

    /// A receiver that never reads stalls only its own link.
    @Test func headOfLineIsolation() throws {
        let run = try RDMALab.shared()
        #expect(run.cases("head-of-line").first?.hasPrefix("ok verified 300") == true, "\(run.output)")
    }

    /// kill -9 of one agent mid-stream: the sender's link reports the host down and counts what
    /// may be lost (at least what did not arrive); the agent restarts, the pair comes back over
    /// RDMA and the link reopens.
    @Test func killedAgentIsReportedAndReconnects() throws {
        let run = try RDMALab.shared()
        let sender = run.values("kill9-sender"), receiver = run.values("kill9-receiver")
        #expect(sender["exit"] == 3 && sender["down"] == 0, "\(run.output)")
        if let sent = sender["sent"], let lost = sender["lost"], let verified = receiver["verified"] {
            #expect(verified <= sent && sent - verified <= lost, "sent \(sent), delivered \(verified), possibly lost \(lost)")
        } else {
            Issue.record("missing counts: \(run.output)")
        }
        #expect(run.cases("kill9-reconnect").first?.hasPrefix("ok") == true, "\(run.output)")
        #expect(run.cases("kill9-reopen").first?.hasPrefix("ok") == true, "\(run.output)")
    }

    /// A pulled cable (the guest's NIC down past the peer timeout): both ends report the host
    /// down, then reconnect over RDMA when it is back.
    @Test func cutLinkIsReportedAndReconnects() throws {
        let run = try RDMALab.shared()
        let sender = run.values("cut-sender"), receiver = run.values("cut-receiver")
        #expect(sender["exit"] == 3 && sender["down"] == 0, "\(run.output)")
        #expect(receiver["exit"] == 3 && receiver["down"] == 0, "\(run.output)")
        if let sent = sender["sent"], let lost = sender["lost"], let verified = receiver["verified"] {
            #expect(verified <= sent && sent - verified <= lost, "sent \(sent), delivered \(verified), possibly lost \(lost)")
        }
        #expect(run.cases("cut-reconnect").first?.hasPrefix("ok") == true, "\(run.output)")
        #expect(run.cases("cut-reopen").first?.hasPrefix("ok") == true, "\(run.output)")
    }

    /// An encrypted pair moves onto RDMA too, with sealed records, and `transport: auto` picks
    /// RDMA where both hosts have an active port on their address.
    @Test func encryptedPairOverRDMA() throws {
        let run = try RDMALab.shared()
        #expect(run.cases("tls-stream").first?.hasPrefix("ok verified 200") == true, "\(run.output)")
        #expect(run.cases("tls-carrier").count == 2 && run.cases("tls-carrier").allSatisfy { $0.hasPrefix("ok") }, "\(run.output)")
    }
}

/// One run of the lab suite, shared by the tests above.
final class RDMALab: @unchecked Sendable {
    /// Whether this run is the lab step (the suite needs the whole machine).
    static let selected = ProcessInfo.processInfo.environment["VIO_LAB_TESTS"] == "1"

    let output: String

    private init(output: String) { self.output = output }

    nonisolated(unsafe) private static var run: Result<RDMALab, Error>?
    private static let lock = NSLock()

    struct Failed: Error, CustomStringConvertible { var description: String }

    /// Boots the lab once (about two minutes under TCG) and returns what both guests printed.
    static func shared() throws -> RDMALab {
        lock.lock()
        defer { lock.unlock() }
        if let run { return try run.get() }
        let result = Result { () throws -> RDMALab in
            let lab = Tools.repositoryRoot + "/scripts/rdma-lab/lab.sh"
            let setup = try Tools.run("/bin/bash", [lab, "setup"], timeout: 900)
            guard setup.status == 0 else { throw Failed(description: "lab setup failed: \(setup.stdout)\(setup.stderr)") }
            let pair = try Tools.run("/bin/bash", [lab, "pair", Tools.repositoryRoot + "/scripts/rdma-lab/fabric-suite.sh", Tools.binDirectory],
                                     environment: ["VIO_RDMA_LAB_TIMEOUT": "600", "VIO_RDMA_LAB_MEMORY": "512"], timeout: 700)
            return RDMALab(output: pair.stdout + pair.stderr)
        }
        run = result
        return try result.get()
    }

    /// What each `CASE NAME ...` line said after the name, in order.
    func cases(_ name: String) -> [String] {
        output.split(separator: "\n").compactMap { line in
            let prefix = "CASE \(name) "
            guard line.hasPrefix(prefix) else { return nil }
            return String(line.dropFirst(prefix.count))
        }
    }

    /// The `key=number` pairs of a case's first line.
    func values(_ name: String) -> [String: Int] {
        var values: [String: Int] = [:]
        for field in (cases(name).first ?? "").split(separator: " ") {
            let parts = field.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let n = Int(parts[1]) { values[String(parts[0])] = n }
        }
        return values
    }
}
