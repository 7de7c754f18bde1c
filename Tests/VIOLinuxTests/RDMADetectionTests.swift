import Testing
@testable import VIOTransport

struct RDMADetectionTests {
    @Test func scanNeverFailsAndExplainsAnEmptyResult() {
        let (devices, reason) = RDMADevices.scan()
        if devices.isEmpty { #expect(reason.hasPrefix("no RDMA device")) }
    }

    @Test func autoFallsBackToTCPWithTheReason() throws {
        let choice = try TransportSelector.choose(requested: "auto", device: nil) { ([], "no RDMA device: test") }
        #expect(choice.kind == "tcp")
        #expect(choice.reason == "auto: no RDMA device: test")
    }

    @Test func autoPicksAnActiveDevice() throws {
        let devices = [RDMADevice(name: "mlx5_0", portActive: false), RDMADevice(name: "mlx5_1", portActive: true)]
        let choice = try TransportSelector.choose(requested: "auto", device: nil) { (devices, "") }
        #expect(choice.kind == "rdma")
        #expect(choice.device == "mlx5_1")
    }

    /// Per host pair: RDMA only when this host chose it and the peer allows it; every other
    /// case says which rule made it TCP.
    @Test func eachPairFallsBackToWhatBothHave() {
        let rdma = TransportChoice(kind: "rdma", device: "rxe0", reason: "RDMA device rxe0 has an active port")
        let tcp = TransportChoice(kind: "tcp", device: nil, reason: "auto: no RDMA device: test")
        #expect(TransportSelector.forPair(local: tcp, peer: "h2", peerSetting: "rdma") == ("tcp", "auto: no RDMA device: test"))
        #expect(TransportSelector.forPair(local: rdma, peer: "h2", peerSetting: "tcp") == ("tcp", "'h2' is set to transport: tcp"))
        #expect(TransportSelector.forPair(local: rdma, peer: "h2", peerSetting: "auto") == ("rdma", "both ends may use RDMA (rxe0 here)"))
    }

    @Test func rdmaWithoutDeviceRefusesWithWhatToDo() {
        #expect(throws: TransportSelector.Unavailable.self) {
            try TransportSelector.choose(requested: "rdma", device: "mlx5_0") { ([], "no RDMA device: test") }
        }
        do {
            _ = try TransportSelector.choose(requested: "rdma", device: nil) { ([RDMADevice(name: "x", portActive: false)], "") }
        } catch {
            #expect(error.description.contains("no active RDMA port among x"))
            #expect(error.description.contains("set 'transport: auto' or 'tcp'"))
        }
    }

    static let hasActiveDevice = RDMADevices.scan().devices.contains { $0.portActive }

    @Test(.enabled(if: hasActiveDevice, "skipped: needs an RDMA device with an active port"))
    func activeDeviceIsChosenByAuto() throws {
        let choice = try TransportSelector.choose(requested: "auto", device: nil)
        #expect(choice.kind == "rdma")
    }
}
