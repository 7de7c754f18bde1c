import Testing
import VIOSecurity

/// Record protection for the RDMA carrier: keys exported from an authenticated session, one per
/// direction; records that are changed, replayed, reordered or sealed the wrong way do not open.
@Suite struct CarrierSealTests {
    /// Seals `content` with `seal`: the record's bytes.
    func record(_ content: [UInt8], _ seal: CarrierSeal) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: content.count + CarrierSeal.overhead)
        let n = content.withUnsafeBytes { c in out.withUnsafeMutableBytes { seal.seal(c, into: $0.baseAddress!) } }
        return Array(out[..<n])
    }

    /// Opens `record` with `seal`: the content.
    func open(_ record: [UInt8], _ seal: CarrierSeal) throws -> [UInt8] {
        var bytes = record
        let n = try bytes.withUnsafeMutableBytes { try seal.open($0) }
        return Array(bytes[5..<(5 + n)])
    }

    func seals() throws -> (dialer: CarrierSeal, acceptor: CarrierSeal) {
        let pair = try SessionPair(dialerRecords: .vio, acceptorRecords: .vio)
        try pair.handshake()
        return (try pair.dialer.exportCarrierSeal(), try pair.acceptor.exportCarrierSeal())
    }

    @Test func carriesRecordsBothWaysInOrder() throws {
        let (dialer, acceptor) = try seals()
        for (i, size) in [1, 200, CarrierSeal.maximumContent].enumerated() {
            let message = pattern(size, seed: i)
            let r = record(message, dialer)
            #expect(r.count == size + CarrierSeal.overhead)
            #expect(try open(r, acceptor) == message)
            #expect(try open(record(message, acceptor), dialer) == message)
        }
    }

    @Test func changedReplayedOrReorderedRecordsDoNotOpen() throws {
        let (dialer, acceptor) = try seals()
        var changed = record(pattern(100, seed: 1), dialer)
        changed[30] ^= 0x01
        #expect(throws: SecurityError.self) { try open(changed, acceptor) }
        // Reordered: the second record first.
        let (d2, a2) = try seals()
        _ = record(pattern(50, seed: 3), d2)
        let two = record(pattern(50, seed: 4), d2)
        #expect(throws: SecurityError.self) { try open(two, a2) }
        // Replayed: the same record twice.
        let (d3, a3) = try seals()
        let r = record(pattern(50, seed: 5), d3)
        #expect(try open(r, a3) == pattern(50, seed: 5))
        #expect(throws: SecurityError.self) { try open(r, a3) }
    }

    /// Each direction has its own key: a record cannot be reflected back to its sender, and a
    /// different session's keys do not open it.
    @Test func keysArePerDirectionAndPerSession() throws {
        let (dialer, _) = try seals()
        #expect(throws: SecurityError.self) { try open(record(pattern(64, seed: 6), dialer), dialer) }
        let (_, otherAcceptor) = try seals()
        #expect(throws: SecurityError.self) { try open(record(pattern(64, seed: 7), dialer), otherAcceptor) }
    }

    @Test func malformedRecordsAreRefused() throws {
        let (_, acceptor) = try seals()
        for bad: [UInt8] in [[], [23, 3, 3, 0, 0], [23, 3, 3, 0, 40] + [UInt8](repeating: 0, count: 10),
                             [22, 3, 3, 0, 17] + [UInt8](repeating: 0, count: 17)] {
            #expect(throws: SecurityError.self) { try open(bad, acceptor) }
        }
    }
}
