import CVIOTLS
import Testing
import VIOSecurity

/// VIO's TLS 1.3 record layer: the same records as the RFC's trace and as OpenSSL's, key
/// updates both ways, and tampered or replayed records refused.
@Suite struct RecordLayerTests {
    static func hex(_ text: String) -> [UInt8] {
        let digits = text.filter(\.isHexDigit)
        return stride(from: 0, to: digits.count, by: 2).map {
            let start = digits.index(digits.startIndex, offsetBy: $0)
            return UInt8(digits[start...digits.index(after: start)], radix: 16)!
        }
    }

    @Test func sealsTheRFC8448ClientRecord() {
        // RFC 8448 section 3: the client's application traffic secret and its first record.
        let secret = Self.hex("9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5")
        let payload = (0..<50).map { UInt8($0) }
        let expected = Self.hex("""
            17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc ab 3f 2b
            98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6 3a ee
            bb 21 69 49 15 e4
            """)
        var out = [UInt8](repeating: 0, count: payload.count + 22)
        let size = vio_tls_seal_with_secret(0x1301, secret, 0, 23, payload, payload.count, &out)
        #expect(size == expected.count)
        #expect(Array(out.prefix(max(size, 0))) == expected)
    }

    @Test(arguments: [(TLSContext.RecordLayer.vio, TLSContext.RecordLayer.openSSL), (.openSSL, .vio), (.vio, .vio)])
    func carriesMessagesBothWays(dialer: TLSContext.RecordLayer, acceptor: TLSContext.RecordLayer) throws {
        let pair = try SessionPair(dialerRecords: dialer, acceptorRecords: acceptor)
        try pair.handshake()
        for (i, size) in [1, 64, 16383, 16384, 16385, 100_000, 0].enumerated() where size > 0 {
            let there = pattern(size, seed: i)
            try pair.send(there, from: pair.dialer)
            #expect(try pair.receive(size, at: pair.acceptor) == there, "dialer -> acceptor, \(size) bytes")
            let back = pattern(size, seed: i + 100)
            try pair.send(back, from: pair.acceptor)
            #expect(try pair.receive(size, at: pair.dialer) == back, "acceptor -> dialer, \(size) bytes")
        }
    }

    @Test(arguments: [(TLSContext.RecordLayer.vio, TLSContext.RecordLayer.openSSL), (.openSSL, .vio), (.vio, .vio)])
    func keyUpdatesFromEitherSideKeepTheStream(dialer: TLSContext.RecordLayer, acceptor: TLSContext.RecordLayer) throws {
        let pair = try SessionPair(dialerRecords: dialer, acceptorRecords: acceptor)
        try pair.handshake()
        var seed = 0
        func exchange() throws {
            seed += 1
            let there = pattern(3000, seed: seed)
            try pair.send(there, from: pair.dialer)
            #expect(try pair.receive(there.count, at: pair.acceptor) == there)
            let back = pattern(5000, seed: seed + 50)
            try pair.send(back, from: pair.acceptor)
            #expect(try pair.receive(back.count, at: pair.dialer) == back)
        }
        try exchange()
        for _ in 0..<3 {
            // Asking for an update moves both directions to new keys: the peer answers with its own.
            try pair.dialer.updateKeys()
            try exchange()
            try pair.acceptor.updateKeys()
            try exchange()
        }
    }

    /// A peer that asks for new keys over and over while this side sends nothing gets one
    /// KeyUpdate back, before the next data: the answers are owed, not queued one per request
    /// (20,000 requests used to queue 540 KB of answers past the end of the output buffer).
    @Test func manyKeyUpdateRequestsAreAnsweredOnce() throws {
        let pair = try SessionPair(dialerRecords: .vio, acceptorRecords: .vio)
        try pair.handshake()
        var buffer = [UInt8](repeating: 0, count: 1024)
        for round in 0..<20 {
            for _ in 0..<1000 { try pair.dialer.updateKeys() }
            while try !pair.dialer.flush() {}
            pair.deliver(pair.take(from: pair.dialer), to: pair.acceptor)
            let outcome = try buffer.withUnsafeMutableBytes { try pair.acceptor.read(into: $0) }
            #expect(outcome == .wouldBlock, "round \(round)")
        }
        #expect(pair.take(from: pair.acceptor).isEmpty)
        let reply = pattern(100, seed: 7)
        try pair.send(reply, from: pair.acceptor)
        let wire = pair.take(from: pair.acceptor)
        // One KeyUpdate record (5 + 5 + 1 + 16 bytes), then the data record (5 + 100 + 1 + 16).
        #expect(wire.count == 27 + 122)
        pair.deliver(wire, to: pair.dialer)
        #expect(try pair.receive(100, at: pair.dialer) == reply)
        let request = pattern(300, seed: 8)
        try pair.send(request, from: pair.dialer)
        #expect(try pair.receive(300, at: pair.acceptor) == request)
    }

    @Test func changedByteFailsTheSession() throws {
        let pair = try SessionPair(dialerRecords: .vio, acceptorRecords: .vio)
        try pair.handshake()
        try pair.send(pattern(200, seed: 1), from: pair.dialer)
        var record = pair.take(from: pair.dialer)
        #expect(record.count == 200 + 22)
        record[40] ^= 0x01
        pair.deliver(record, to: pair.acceptor)
        var buffer = [UInt8](repeating: 0, count: 1024)
        let error = #expect(throws: SecurityError.self) {
            _ = try buffer.withUnsafeMutableBytes { try pair.acceptor.read(into: $0) }
        }
        #expect(error?.description.contains("bad record mac") == true)
    }

    @Test func replayedRecordFailsTheSession() throws {
        let pair = try SessionPair(dialerRecords: .vio, acceptorRecords: .vio)
        try pair.handshake()
        let message = pattern(100, seed: 2)
        try pair.send(message, from: pair.dialer)
        let record = pair.take(from: pair.dialer)
        pair.deliver(record, to: pair.acceptor)
        #expect(try pair.receive(100, at: pair.acceptor) == message)
        pair.deliver(record, to: pair.acceptor)
        var buffer = [UInt8](repeating: 0, count: 1024)
        #expect(throws: SecurityError.self) {
            _ = try buffer.withUnsafeMutableBytes { try pair.acceptor.read(into: $0) }
        }
    }

    @Test func oversizedOrForeignRecordsFailTheSession() throws {
        for header in [[0x17, 0x03, 0x03, 0x48, 0x01], [0x15, 0x03, 0x03, 0x00, 0x02], [0x17, 0x03, 0x01, 0x00, 0x20]] as [[UInt8]] {
            let pair = try SessionPair(dialerRecords: .vio, acceptorRecords: .vio)
            try pair.handshake()
            pair.deliver(header + [UInt8](repeating: 0, count: 64), to: pair.acceptor)
            var buffer = [UInt8](repeating: 0, count: 1024)
            #expect(throws: SecurityError.self, "header \(header)") {
                _ = try buffer.withUnsafeMutableBytes { try pair.acceptor.read(into: $0) }
            }
        }
    }

    @Test func randomBytesNeverReachTheReader() throws {
        // Whatever arrives after the handshake, the session fails or waits for more: it never
        // hands out bytes that were not sealed by the peer. Half the inputs start with a
        // well-formed header so the AEAD check, not the header check, has to refuse them.
        var generator = SystemRandomNumberGenerator()
        for round in 0..<40 {
            let pair = try SessionPair(dialerRecords: .vio, acceptorRecords: .vio)
            try pair.handshake()
            var bytes = (0..<Int.random(in: 1...40000, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if round % 2 == 0, bytes.count > 5 {
                let length = min(bytes.count - 5, 16384 + 256)
                bytes.replaceSubrange(0..<5, with: [0x17, 0x03, 0x03, UInt8(length >> 8), UInt8(length & 0xff)])
            }
            pair.deliver(bytes, to: pair.acceptor)
            var buffer = [UInt8](repeating: 0, count: 65536)
            do {
                let outcome = try buffer.withUnsafeMutableBytes { try pair.acceptor.read(into: $0) }
                #expect(outcome == .wouldBlock, "round \(round): \(bytes.count) random bytes gave \(outcome)")
            } catch let error as SecurityError {
                #expect(!error.description.isEmpty)
            }
        }
    }

    @Test func drainedOnlyWhenNothingIsLeftToRead() throws {
        let pair = try SessionPair(dialerRecords: .vio, acceptorRecords: .vio)
        try pair.handshake()
        // Two records in one delivery, read with a buffer smaller than each: the session holds
        // input until the last byte is taken.
        try pair.send(pattern(300, seed: 3), from: pair.dialer)
        try pair.send(pattern(300, seed: 4), from: pair.dialer)
        pair.pump()
        var buffer = [UInt8](repeating: 0, count: 200)
        var total = 0
        while total < 600 {
            guard case .bytes(let n) = try buffer.withUnsafeMutableBytes({ try pair.acceptor.read(into: $0) }) else {
                Issue.record("input missing after \(total) bytes")
                return
            }
            total += n
            #expect(pair.acceptor.isDrained == (total == 600), "after \(total) bytes")
        }
        var more = [UInt8](repeating: 0, count: 16)
        #expect(try more.withUnsafeMutableBytes { try pair.acceptor.read(into: $0) } == .wouldBlock)
    }
}
