import Testing
@testable import VIOWire

struct FrameTests {
    static let samples: [Frame] = [
        Frame(FrameHeader(type: .helloRequest), payload: Array("h1 v1".utf8)),
        Frame(FrameHeader(type: .data, flags: [.more], session: 7, destination: 3, sequence: 41), payload: [1, 2, 3]),
        Frame(FrameHeader(type: .data, session: 7, destination: 3, sequence: 42), payload: []),
        Frame(FrameHeader(type: .acknowledgement, session: 7, sequence: 42, credit: 1 << 20)),
        Frame(FrameHeader(type: .session, flags: [.start], session: 9, destination: 4)),
        Frame(FrameHeader(type: .session, flags: [.close, .reset], session: 9), payload: Array("undeclared link".utf8)),
        Frame(FrameHeader(type: .heartbeatRequest)),
    ]

    @Test func headerIsTwentyFourBytesInDocumentedOrder() {
        let bytes = Frame(FrameHeader(type: .data, flags: [.start, .more], session: 0x0102_0304, destination: 0x0506_0708,
                                      sequence: 0x0A0B_0C0D, credit: 0x1112_1314), payload: [0xFF]).encoded()
        #expect(bytes == [1, 4, 0x09, 0x00, 4, 3, 2, 1, 8, 7, 6, 5, 1, 0, 0, 0, 0x0D, 0x0C, 0x0B, 0x0A,
                          0x14, 0x13, 0x12, 0x11, 0xFF])
    }

    @Test func framesRoundTripThroughTheDecoderInAnyChunking() throws {
        let stream = Self.samples.flatMap { $0.encoded() }
        for chunk in [1, 2, 7, 24, 25, 1000] {
            var decoder = FrameDecoder()
            var out: [Frame] = []
            var offset = 0
            while offset < stream.count {
                decoder.feed(stream[offset..<min(stream.count, offset + chunk)])
                offset += chunk
                while let f = try decoder.next() { out.append(f) }
            }
            #expect(out == Self.samples, "chunk \(chunk)")
            #expect(decoder.pendingBytes == 0)
        }
    }

    @Test func truncatedFrameWaitsForMoreBytes() throws {
        var decoder = FrameDecoder()
        let bytes = Self.samples[1].encoded()
        decoder.feed(bytes.dropLast())
        #expect(try decoder.next() == nil)
        decoder.feed(bytes.suffix(1))
        #expect(try decoder.next() == Self.samples[1])
    }

    @Test func badHeadersPoisonTheChannel() {
        var good = Self.samples[1].encoded()
        func rejects(_ bytes: [UInt8], _ expected: DecodeError) {
            var decoder = FrameDecoder()
            decoder.feed(bytes)
            #expect(throws: expected) { try decoder.next() }
            decoder.feed(Self.samples[0].encoded())
            #expect(throws: expected) { try decoder.next() }  // the channel stays failed
        }
        good[0] = 9
        rejects(good, .invalid(field: "frame version", value: "9 (this agent speaks 1)"))
        good = Self.samples[1].encoded(); good[1] = 200
        rejects(good, .invalid(field: "frame type", value: "200"))
        good = Self.samples[1].encoded(); good[3] = 0x80
        rejects(good, .invalid(field: "frame flags", value: "\(0x8008)"))
        good = Self.samples[1].encoded(); good[12] = 0xFF; good[13] = 0xFF; good[14] = 0xFF; good[15] = 0x7F
        rejects(good, .invalid(field: "frame length", value: "\(0x7FFF_FFFF) (maximum \(FrameHeader.maximumPayload))"))
    }

    /// Fuzz: random streams and mutated valid streams never crash or hang the decoder, and a
    /// frame that comes out always has a payload of exactly its header's length.
    @Test func fuzzDecoder() {
        var rng = SystemRandomNumberGenerator()
        let valid = Self.samples.flatMap { $0.encoded() }
        for round in 0..<3000 {
            var bytes: [UInt8]
            if round % 3 == 0 {
                bytes = (0..<Int.random(in: 0..<200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                bytes = valid
                for _ in 0..<Int.random(in: 1...6, using: &rng) {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                if round % 5 == 0 { bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &rng))) }
            }
            var decoder = FrameDecoder()
            decoder.feed(bytes)
            var frames = 0
            while let frame = try? decoder.next() {
                #expect(frame.payload.count == Int(frame.header.length))
                frames += 1
                if frames > 100 { break }
            }
        }
    }

    /// Mutated headers: reading through a `ByteReader` and decoding in place (the receive
    /// path) agree, and every header accepted encodes back to the same 24 bytes (nothing
    /// accepted is silently normalized).
    @Test func inPlaceHeaderDecodingAgreesWithTheReader() {
        var rng = SystemRandomNumberGenerator()
        let valid = Self.samples.map { Array($0.encoded().prefix(FrameHeader.size)) }
        for round in 0..<5000 {
            var bytes = valid[round % valid.count]
            for _ in 0..<Int.random(in: 0...3, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            var reader = ByteReader(bytes)
            let expected = Result { () throws(DecodeError) in try FrameHeader(from: &reader) }
            let actual = bytes.withUnsafeBytes { raw in Result { () throws(DecodeError) in try FrameHeader(decoding: raw) } }
            #expect(actual == expected, "\(bytes)")
            if case .success(let header) = actual {
                var w = ByteWriter(capacity: FrameHeader.size)
                header.encode(to: &w)
                #expect(w.bytes == bytes, "\(bytes)")
            }
        }
    }
}

struct SessionStateMachineTests {
    /// Every (state, event) pair: the valid ones go where the table says, the rest are refused
    /// and leave the state unchanged.
    @Test(arguments: SessionState.allCases)
    func everyTransition(from state: SessionState) throws {
        let valid: [SessionState: [SessionEvent: SessionState]] = [
            .initial: [.start: .open, .close: .closed],
            .open: [.writeData: .open, .readData: .open, .writeDataEnd: .writeEnded, .readDataEnd: .readEnded, .close: .closed],
            .writeEnded: [.readData: .writeEnded, .readDataEnd: .closing, .close: .closed],
            .readEnded: [.writeData: .readEnded, .writeDataEnd: .closing, .close: .closed],
            .closing: [.close: .closed],
            .closed: [:],
        ]
        for event in SessionEvent.allCases {
            #expect(SessionStateMachine.next(state, event) == valid[state]?[event], "\(state) on \(event)")
        }
    }

    @Test func aWholeSession() throws {
        var s = SessionStateMachine()
        for e: SessionEvent in [.start, .writeData, .readData, .writeDataEnd, .readData, .readDataEnd, .close] {
            try s.apply(e)
        }
        #expect(s.state == .closed)
    }

    @Test func invalidEventIsRefusedAndStateKept() throws {
        var s = SessionStateMachine()
        #expect(throws: InvalidTransition(state: .initial, event: .writeData)) { try s.apply(.writeData) }
        #expect(s.state == .initial)
        try s.apply(.start)
        try s.apply(.writeDataEnd)
        #expect(throws: InvalidTransition(state: .writeEnded, event: .writeData)) { try s.apply(.writeData) }
        #expect(s.state == .writeEnded)
        #expect(InvalidTransition(state: .closed, event: .readData).description == "event 'readData' is not valid in session state 'closed'")
    }
}

/// The payloads of fabric frames: round trips, and refusal of anything malformed.
struct FabricMessageTests {
    @Test func payloadsRoundTrip() throws {
        let hello = ChannelHello(cluster: "c", from: "h1", to: "h2", channel: 1, channels: 2, fingerprint: 0xDEAD_BEEF)
        #expect(try ChannelHello(decoding: hello.encoded()) == hello)
        let open = SessionOpen(from: "a1", to: "b1", window: 1 << 20, maxFramePayload: 262_128, waitMilliseconds: 500,
                               maxMessageSize: 1 << 26)
        #expect(try SessionOpen(decoding: open.encoded()) == open)
        // An agent from before the declared size ends after its features: 0, not said.
        #expect(try SessionOpen(decoding: Array(open.encoded().dropLast(8))).maxMessageSize == 0)
        let reset = SessionReset(.gone, "instance 'a1' exited")
        #expect(try SessionReset(decoding: reset.encoded()) == reset)
    }

    @Test func sessionFeaturesAreAnnouncedAndUnknownOnesIgnored() throws {
        let plain = SessionOpen(from: "a1", to: "b1", window: 4096, maxFramePayload: 1024, features: [])
        #expect(try SessionOpen(decoding: plain.encoded()).features == [])
        #expect(SessionOpen(from: "a1", to: "b1", window: 4096, maxFramePayload: 1024).features.contains(.recordRuns))
        // A newer agent's extra bits: this build takes what it knows and ignores the rest.
        var bytes = SessionOpen(from: "a1", to: "b1", window: 4096, maxFramePayload: 1024, features: .recordRuns).encoded()
        bytes.replaceSubrange((bytes.count - 12)..<(bytes.count - 8), with: [0x01, 0x00, 0x00, 0x80])
        let decoded = try SessionOpen(decoding: bytes)
        #expect(decoded.features.contains(.recordRuns))
        // An agent from before features sends none: plain DATA frames only.
        #expect(try SessionOpen(decoding: Array(bytes.dropLast(12))).features == [])
        // A record-run DATA frame's header decodes; its flag is part of the header's vocabulary.
        var header = [UInt8](repeating: 0, count: FrameHeader.size)
        FrameHeader(type: .data, flags: .records, session: 3, length: 64).store(to: &header)
        #expect(try header.withUnsafeBytes { try FrameHeader(decoding: $0) }.flags == .records)
    }

    @Test func malformedPayloadsAreRefused() {
        let open = SessionOpen(from: "a1", to: "b1", window: 4096, maxFramePayload: 1024).encoded()
        #expect(throws: DecodeError.self) { try SessionOpen(decoding: open + [0]) }
        #expect(throws: DecodeError.self) { try SessionOpen(decoding: Array(open.dropLast())) }
        #expect(throws: DecodeError.self) { try SessionOpen(decoding: Array(open.dropLast(5))) }
        let huge = SessionOpen(from: "a", to: "b", window: 1, maxFramePayload: UInt32(FrameHeader.maximumPayload + 1)).encoded()
        #expect(throws: DecodeError.self) { try SessionOpen(decoding: huge) }
        #expect(throws: DecodeError.self) { try SessionReset(decoding: [99, 0, 0]) }
        #expect(throws: DecodeError.self) { try ChannelHello(decoding: [1, 2, 3]) }
    }

    /// Frames read in place: the payload handed out is exactly what was sent, across reads
    /// that split frames anywhere and a buffer that must grow for a 1 MiB payload.
    @Test func inPlaceDecodingAcrossArbitraryReads() throws {
        let frames = [Frame(FrameHeader(type: .data, session: 7, sequence: 0), payload: Array(repeating: 0xAB, count: 100)),
                      Frame(FrameHeader(type: .data, session: 7, sequence: 1),
                            payload: (0..<FrameHeader.maximumPayload).map { UInt8(truncatingIfNeeded: $0 &* 31) }),
                      Frame(FrameHeader(type: .heartbeatRequest), payload: [])]
        let stream = frames.flatMap { $0.encoded() }
        var decoder = FrameDecoder()
        var offset = 0
        var seen: [Frame] = []
        var chunk = 1
        while offset < stream.count {
            let n = decoder.fill { buffer -> Int? in
                let count = min(chunk, buffer.count, stream.count - offset)
                stream[offset..<(offset + count)].withUnsafeBytes { buffer.copyMemory(from: $0) }
                return count
            }
            offset += n ?? 0
            chunk = chunk * 3 + 1
            while let frame = try decoder.nextFrame({ header, payload in Frame(header, payload: Array(payload)) }) {
                seen.append(frame)
            }
        }
        #expect(seen == frames)
        #expect(decoder.pendingBytes == 0)
    }

    /// Before admission a decoder takes HELLO-size frames only and holds no more than that:
    /// a header announcing more fails at once, whatever follows.
    @Test func unadmittedDecoderTakesOnlySmallFrames() throws {
        var small = FrameDecoder(admitted: false)
        let limit = FrameDecoder.handshakePayloadLimit
        small.feed(Frame(FrameHeader(type: .helloRequest), payload: [UInt8](repeating: 1, count: limit)).encoded())
        #expect(try small.next()?.payload.count == limit)
        small.feed(Frame(FrameHeader(type: .helloRequest), payload: []).encoded().prefix(12) + [0, 0, 0x10, 0] + [UInt8](repeating: 0, count: 8))
        #expect(throws: DecodeError.invalid(field: "frame length", value: "1048576 (at most 4096 before the channel's HELLO is accepted)")) {
            try small.next()
        }
        var admitted = FrameDecoder(admitted: false)
        admitted.admit()
        let large = [UInt8](repeating: 2, count: FrameHeader.maximumPayload)
        admitted.feed(Frame(FrameHeader(type: .data, session: 1), payload: large).encoded())
        #expect(try admitted.next()?.payload == large)
    }
}

/// The decoder's support for payloads read in place: a partial frame's header, its buffered
/// payload handed over, and decoding going on after it.
@Suite struct FrameDecoderPartialTests {
    @Test func partialFrameThenTakeThenContinue() throws {
        var d = FrameDecoder()
        let payload = (0..<1000).map { UInt8(truncatingIfNeeded: $0) }
        let frame = Frame(FrameHeader(type: .data, session: 3), payload: payload).encoded()
        d.feed(frame.prefix(FrameHeader.size + 100))
        #expect(try d.nextFrame { _, _ in true } == nil)
        let partial = try #require(try d.partialFrame())
        #expect(partial.header.session == 3 && partial.header.length == 1000 && partial.buffered == 100)
        var destination = [UInt8](repeating: 0, count: 1000)
        let moved = destination.withUnsafeMutableBytes { d.takePartialPayload(into: $0.baseAddress!) }
        #expect(moved == 100 && Array(destination[..<100]) == Array(payload[..<100]))
        #expect(d.pendingBytes == 0)
        // The next frame decodes normally.
        d.feed(Frame(FrameHeader(type: .heartbeatRequest), payload: [9]).encoded())
        let next = try #require(try d.next())
        #expect(next.header.type == .heartbeatRequest && next.payload == [9])
        #expect(try d.partialFrame() == nil)
    }
}
