import Logging
import Testing
import Synchronization
import VIOLinux
import VIOSharedMemory
import VIOTopology
import VIOTransport
import VIOWire
@testable import VIOAgent

#if canImport(Glibc)
import Glibc
#endif

/// Several agents' fabrics in the test's process, joined by a ``MemoryNetwork``, on a clock the
/// test moves: the inter-host protocol runs in milliseconds, with no sockets, root or threads.
/// Each ``LabHost`` plays the agent around its fabric (attachments, LINK_READY) and maps the
/// links it is handed as libvio does, so a test sends and receives on real link rings.
final class FabricLab {
    /// Monotonic nanoseconds as the fabrics see them.
    final class Clock: @unchecked Sendable {
        var now: UInt64 = 1_000_000_000
    }

    let clock = Clock()
    let network = MemoryNetwork()
    private(set) var hosts: [String: LabHost] = [:]
    let topology: Topology

    /// Every host of `yaml` (a whole topology), each with its fabric; `topologies` gives a host
    /// a file of its own (to make the two ends disagree), `identities` a key other than its
    /// topology key (an impostor).
    init(_ yaml: String, topologies: [String: String] = [:], identities: [String: [UInt8]] = [:],
         maximumFramePayload: Int = FrameHeader.maximumPayload, polled: Bool = false) throws {
        topology = try TopologyLoader.parse(text: yaml, file: "lab.yaml").0
        for host in topology.hosts {
            let own = try topologies[host.name].map { try TopologyLoader.parse(text: $0, file: "\(host.name).yaml").0 } ?? topology
            hosts[host.name] = try LabHost(name: host.name, topology: own, network: network, clock: clock,
                                           identity: identities[host.name] ?? host.key?.bytes,
                                           maximumFramePayload: maximumFramePayload, polled: polled)
        }
    }

    subscript(host: String) -> LabHost { hosts[host]! }

    /// Runs every host's loop, the clock moving `step` milliseconds a round, until `done` or
    /// `rounds` rounds passed. Returns whether `done` became true.
    @discardableResult
    func run(until done: () -> Bool = { false }, stepMilliseconds: UInt64 = 1, rounds: Int = 5000) -> Bool {
        for _ in 0..<rounds {
            for host in hosts.values.sorted(by: { $0.name < $1.name }) { host.turn() }
            if done() { return true }
            clock.now += stepMilliseconds * 1_000_000
        }
        return false
    }

    /// Runs until every host has all its peer hosts up.
    func connect() -> Bool {
        run(until: { hosts.values.allSatisfy { $0.fabric.channels.peers.values.allSatisfy(\.isUp) } })
    }

    /// Opens the declared link from `instance` (attached on `host`) to `peer` and runs until
    /// both ends hold it; returns (opener's end, peer's end).
    func open(_ instance: String, on host: String, to peer: String, on peerHost: String) throws -> (LinkEndpoint, LinkEndpoint) {
        let a = self[host], b = self[peerHost]
        let before = (a.delivered[instance]?.count ?? 0, b.delivered[peer]?.count ?? 0)
        let declared = try #require(a.fabric.view.link(between: instance, and: peer))
        if let error = a.fabric.openLink(instance: instance, link: declared, requestID: 1, waitMilliseconds: 1000) {
            throw LabError("open refused: \(error.message)")
        }
        run(until: { (a.delivered[instance]?.count ?? 0) > before.0 && (b.delivered[peer]?.count ?? 0) > before.1 })
        guard let near = a.delivered[instance]?.last, let far = b.delivered[peer]?.last,
              (a.delivered[instance]?.count ?? 0) > before.0 else {
            throw LabError("the link \(instance) <-> \(peer) did not open; refusals: \(a.refusals)")
        }
        return (near, far)
    }

    /// Runs until `link` has a message, and returns it.
    func receive(on link: LinkEndpoint, rounds: Int = 5000) throws -> [UInt8] {
        var message: [UInt8]?
        var failure: LinkError?
        run(until: {
            do throws(LinkError) { message = try link.receive(timeout: .zero) } catch .wouldBlock { return false } catch {
                failure = error
                return true
            }
            return true
        }, rounds: rounds)
        if let failure { throw failure }
        guard let message else { throw LabError("no message arrived") }
        return message
    }
}

struct LabError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// One agent of a ``FabricLab``: its fabric and what the agent around it would do.
final class LabHost: FabricDelegate {
    let name: String
    let loop: EventLoop
    private(set) var fabric: Fabric!
    let log = LogRecords()
    private let clock: FabricLab.Clock
    /// Instances attached here.
    var attached: Set<String> = []
    /// Links handed to instances (LINK_READY), mapped as libvio maps them, in order.
    var delivered: [String: [LinkEndpoint]] = [:]
    /// OPEN_LINK refusals.
    var refusals: [(instance: String, error: ControlError)] = []

    init(name: String, topology: Topology, network: MemoryNetwork, clock: FabricLab.Clock, identity: [UInt8]?,
         maximumFramePayload: Int, polled: Bool) throws {
        self.name = name
        self.clock = clock
        loop = try EventLoop()
        let view = try #require(topology.view(for: name, controlSocket: "/nonexistent/\(name).sock"))
        let transport = try MemoryTransport(network: network,
                                            listen: view.peers.contains { !$0.weDial } ? "\(view.host.address):\(view.host.port)" : nil,
                                            identity: identity, acceptedKeys: Fabric.acceptedKeys(of: view).map(\.key),
                                            maximumFramePayload: maximumFramePayload, polled: polled)
        let perPeer = Dictionary(uniqueKeysWithValues: view.peers.map { ($0.host.name, (transport as any FabricTransport, "lab")) })
        let records = log
        let logger = Logger(label: name) { _ in RecordingLogHandler(records: records) }
        fabric = try Fabric(view: view, topology: topology, loop: loop, logger: logger,
                            transports: FabricTransports(perPeer: perPeer), clock: { clock.now })
        fabric.delegate = self
    }

    /// Attaches `instance` (as ATTACH would).
    func attach(_ instance: String) {
        attached.insert(instance)
        fabric.instanceAttached(instance)
    }

    /// One turn of the agent's loop: the events that are ready, then the turn's end.
    func turn() {
        fabric.now = clock.now
        var events = Epoll.EventBuffer(capacity: 64)
        for _ in 0..<4 {
            try? loop.epoll.wait(timeoutMilliseconds: 0, into: &events)
            for i in 0..<events.count { loop.dispatch(events[i]) }
            if !fabric.finishTurn() && events.isEmpty { return }
        }
    }

    func fabricDeliver(_ ready: LinkReady, descriptors: [Int32], to instance: String) -> Bool {
        guard attached.contains(instance), descriptors.count == LinkReady.descriptorCount else { return false }
        // Copies, as SCM_RIGHTS would give: the agent keeps its own.
        let fds = descriptors.map { dup($0) }
        let memory = OwnedFileDescriptor(taking: fds[0])
        guard let region = try? LinkRegion.map(fd: memory) else { return false }
        let link = LinkEndpoint(region: region, end: Int(ready.end),
                                dataDoorbell: OwnedFileDescriptor(taking: fds[1]), spaceDoorbell: OwnedFileDescriptor(taking: fds[2]),
                                peerDataDoorbell: OwnedFileDescriptor(taking: fds[3]), peerSpaceDoorbell: OwnedFileDescriptor(taking: fds[4]))
        delivered[instance, default: []].append(link)
        return true
    }

    func fabricRefuse(requestID: UInt32, of instance: String, _ error: ControlError) {
        refusals.append((instance, error))
    }

    func fabricAttachment(of instance: String) -> (attached: Bool, numaNode: Int) { (attached.contains(instance), 0) }

    func fabricStatus() -> AgentStatus {
        var status = AgentStatus(cluster: fabric.topology.cluster, host: name, pid: 0, uptimeMilliseconds: 0,
                                 transport: "memory", numaNodes: 1, instances: [], links: [])
        status.peerHosts = fabric.peerStates()
        return status
    }

    var healthReplies: [Result<AgentStatus, ControlError>] = []
    func fabricHealthReply(to connection: UInt64, _ result: Result<AgentStatus, ControlError>) { healthReplies.append(result) }
}

/// Log records kept for assertions.
final class LogRecords: Sendable {
    private let records = Mutex<[(level: Logger.Level, message: String, metadata: Logger.Metadata)]>([])
    func append(_ level: Logger.Level, _ message: String, _ metadata: Logger.Metadata) {
        records.withLock { $0.append((level, message, metadata)) }
    }
    /// Every record as it came.
    var entries: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] { records.withLock { $0 } }
    /// Every record on one line: level, message, metadata sorted by key.
    var all: [String] {
        entries.map { e in "\(e.level) \(e.message) " + e.metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
    }
    func contains(_ text: String) -> Bool { all.contains { $0.contains(text) } }
}

/// Keeps what reaches it in a ``LogRecords``.
struct RecordingLogHandler: LogHandler {
    let records: LogRecords
    var logLevel = Logger.Level.trace
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?,
             source: String, file: String, function: String, line: UInt) {
        records.append(level, message.description, metadata ?? [:])
    }
}

/// A topology for the lab: `hosts` on 198.18.0.x (never dialed: the memory network matches
/// "address:port"), each with a key, the given instances, links and defaults.
func labTopology(hosts: [String], instances: String, links: String, defaults: String = "",
                 extra: String = "", cluster: String = "lab") -> String {
    var text = "cluster: \(cluster)\nversion: 1\ndefaults:\n  heartbeat_interval_ms: 100\n  peer_timeout_ms: 1000\n\(defaults)hosts:\n"
    for (i, h) in hosts.enumerated() {
        text += "  - { name: \(h), address: 198.18.0.\(i + 1), key: \"\(labKey(h))\" }\n"
    }
    return text + "instances:\n\(instances)\nlinks:\n\(links)\n\(extra)"
}

/// A fixed 32-byte key per host name, in the topology's form.
func labKey(_ host: String) -> HostKey {
    var bytes = [UInt8](repeating: 0, count: 32)
    for (i, b) in host.utf8.enumerated() { bytes[i % 32] ^= b }
    bytes[31] = 0xA5
    return HostKey(bytes: bytes)!
}
