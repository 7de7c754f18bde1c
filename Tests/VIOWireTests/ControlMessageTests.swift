import Testing
@testable import VIOWire

struct ControlMessageTests {
    static let samples: [ControlMessage] = [
        .hello(Hello(role: .instance, software: "libvio 0.1")),
        .welcome(Welcome(cluster: "demo", host: "local", agentPID: 4242)),
        .statusRequest,
        .status(AgentStatus(cluster: "c", host: "h", pid: 7, uptimeMilliseconds: 12345, transport: "tcp: asked",
                            instances: [.init(name: "db1", attached: true, pid: 99), .init(name: "db2", attached: false, pid: 0)],
                            links: [.init(localEnd: "db1", peerEnd: "db2", peerHost: "h", state: "open")])),
        .error(ControlError(.undeclaredLink, "no link db1 <-> db9 in the topology")),
        .attach(Attach(instance: "db1", token: Array("s3cret".utf8), numaNode: 1)),
        .attached(Attached(instance: "db1", peers: [.init(name: "db2", host: "local"), .init(name: "db3", host: "beta")])),
        .openLink(OpenLink(requestID: 7, peer: "db2", timeoutMilliseconds: 5000)),
        .linkReady(LinkReady(requestID: 7, linkID: 42, peer: "db2", end: 1, alreadyDelivered: false)),
        .closeLink(CloseLink(linkID: 42)),
        .status(linkStatus()),
        .reloadRequest,
        .reloaded(["links added (1): db1 <-> db9", "pending restart: heartbeat_interval_ms changed (100 -> 150)"]),
        .fragment(last: false, bytes: [1, 2, 3]),
    ]

    static func linkStatus() -> AgentStatus {
        var link = AgentStatus.LinkState(localEnd: "a", peerEnd: "b", peerHost: "h", state: "open")
        link.linkID = 3
        link.ringBytes = (4096, 8192)
        link.numaNodes = (0, 1)
        link.sent = .init(messages: 1, bytes: 2, wakeups: 3, fullStalls: 4, errors: 5)
        link.received = .init(messages: 6, bytes: 7, wakeups: 8, fullStalls: 9, errors: 10)
        return AgentStatus(cluster: "c", host: "h", pid: 1, uptimeMilliseconds: 2, transport: "t", numaNodes: 2,
                           instances: [.init(name: "a", attached: true, pid: 5, uid: 1000, numaNode: 1)], links: [link])
    }

    @Test(arguments: samples)
    func roundTrips(message: ControlMessage) throws {
        #expect(try ControlMessage.decode(message.encoded()) == message)
    }

    /// A message larger than a packet goes in FRAGMENTs whose bytes, joined, are its packet.
    @Test func largeMessagesSplitIntoFragments() throws {
        var status = Self.linkStatus()
        status.links = Array(repeating: status.links[0], count: 2000)
        let packet = ControlMessage.status(status).encoded()
        let pieces = ControlMessage.fragments(of: packet, limit: 65536)
        #expect(pieces.count > 1 && pieces.allSatisfy { $0.count <= 65536 })
        var joined: [UInt8] = []
        for (i, piece) in pieces.enumerated() {
            guard case .fragment(let last, let bytes) = try ControlMessage.decode(piece) else { Issue.record("not a fragment"); return }
            #expect(last == (i == pieces.count - 1))
            joined += bytes
        }
        #expect(try ControlMessage.decode(joined) == .status(status))
    }

    @Test func headerIsMagicVersionType() {
        let bytes = ControlMessage.statusRequest.encoded()
        #expect(bytes == [0x56, 0x49, 0x4F, 0x43, 1, 0, 3, 0])
    }

    @Test(arguments: samples)
    func everyTruncationIsRejected(message: ControlMessage) {
        let bytes = message.encoded()
        for cut in 0..<bytes.count {
            #expect(throws: DecodeError.self) { try ControlMessage.decode(Array(bytes[..<cut])) }
        }
    }

    @Test func trailingBytesAreRejected() {
        #expect(throws: DecodeError.invalid(field: "length", value: "1 trailing bytes")) {
            try ControlMessage.decode(ControlMessage.statusRequest.encoded() + [0])
        }
    }

    @Test func wrongMagicVersionAndType() {
        var bytes = ControlMessage.statusRequest.encoded()
        bytes[0] = 0x58
        #expect(throws: DecodeError.invalid(field: "magic", value: "not a VIO control message")) { try ControlMessage.decode(bytes) }
        bytes = ControlMessage.statusRequest.encoded()
        bytes[4] = 9
        #expect(throws: DecodeError.self) { try ControlMessage.decode(bytes) }
        bytes = ControlMessage.statusRequest.encoded()
        bytes[6] = 200
        #expect(throws: DecodeError.invalid(field: "message type", value: "200")) { try ControlMessage.decode(bytes) }
    }

    @Test func forgedCountsDoNotAllocate() {
        var w = ByteWriter()
        w.write(raw: ControlMessage.magic)
        w.write(ControlMessage.protocolVersion)
        w.write(ControlMessage.Kind.status.rawValue)
        for s in ["c", "h"] { w.write(s) }
        w.write(Int32(1))
        w.write(UInt64(1))
        w.write("t")
        w.write(UInt16(1))   // NUMA nodes
        w.write(UInt32.max)  // instance count far beyond the bytes present
        #expect(throws: DecodeError.invalid(field: "count", value: "\(UInt32.max)")) { try ControlMessage.decode(w.bytes) }
    }

    @Test func randomBytesNeverCrash() {
        var rng = SystemRandomNumberGenerator()
        let valid = Self.samples.map { $0.encoded() }
        for i in 0..<20_000 {
            var bytes = valid[i % valid.count]
            // Flip a few bytes after the header, or throw in pure noise.
            if i % 4 == 0 {
                bytes = (0..<Int.random(in: 0..<64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                for _ in 0..<Int.random(in: 1...4, using: &rng) where bytes.count > 8 {
                    bytes[Int.random(in: 8..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            _ = try? ControlMessage.decode(bytes)
        }
    }

    @Test func invalidUTF8StringIsRejected() {
        var w = ByteWriter()
        w.write(raw: ControlMessage.magic)
        w.write(ControlMessage.protocolVersion)
        w.write(ControlMessage.Kind.hello.rawValue)
        w.write(UInt8(1))
        w.write(UInt16(2))
        w.write(raw: [0xC3, 0x28])
        #expect(throws: DecodeError.invalid(field: "string", value: "not UTF-8")) { try ControlMessage.decode(w.bytes) }
    }
}

extension ControlMessage: CustomTestStringConvertible {
    public var testDescription: String { kindName }
}
