import VIOLinux
import VIOSecurity
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

/// A ``FabricChannel`` over one TCP connection, in plaintext or inside TLS 1.3: frames are
/// copied into one output buffer and written with as few `send` calls (or TLS records) as the
/// socket allows; input is read (or decrypted) straight into the frame decoder's buffer.
public final class TCPChannel: FabricChannel {
    private let socket: TCPSocket
    private var connected: Bool
    private let output = OutputQueue()
    /// Scratch for one `sendmsg`'s buffer list.
    private let vectors = UnsafeMutableBufferPointer<iovec>.allocate(capacity: TCPChannel.vectorsPerWrite)
    private var decoder = FrameDecoder(admitted: false)
    private var security: Security { didSet { mode = security.mode } }
    /// `security`'s case alone: the per-frame paths test this instead of matching `security`,
    /// which copies the case's payload (retaining its objects) on every test.
    private var mode: Security.Mode
    public private(set) var counters = ChannelCounters()
    /// Where the channel goes (dialed) or comes from (accepted), for logs.
    public let peerAddress: String

    /// How the bytes of this channel are carried.
    private enum Security {
        case plaintext
        case tls(TLSSession, RekeyPolicy)
        /// An accepted connection before its first byte says whether it speaks TLS.
        case undecided(TLSContext?, allowedKeys: [[UInt8]], RekeyPolicy, plaintextAllowed: Bool)

        enum Mode { case plaintext, tls, undecided }
        var mode: Mode {
            switch self {
            case .plaintext: .plaintext
            case .tls: .tls
            case .undecided: .undecided
            }
        }
    }

    /// When an encrypted channel asks for new keys (TLS 1.3 KeyUpdate, both directions).
    public struct RekeyPolicy: Sendable {
        /// After this many bytes sent under one key.
        public var bytes: UInt64
        /// After this long under one key, in nanoseconds.
        public var nanoseconds: UInt64
        var sentSinceUpdate: UInt64 = 0
        var lastUpdate: UInt64 = MonotonicClock.nanoseconds()

        /// A policy.
        public init(bytes: UInt64, nanoseconds: UInt64) {
            self.bytes = bytes
            self.nanoseconds = nanoseconds
        }
    }

    /// Starts connecting to `address` (non-blocking; the loop waits for writability). With
    /// `tls`, the channel runs TLS 1.3 and the far agent must prove `tls.peerKey`.
    public static func dial(_ address: TCPSocket.Address,
                            tls: (context: TLSContext, peerKey: [UInt8], rekey: RekeyPolicy)? = nil) throws(ChannelError) -> TCPChannel {
        let socket: TCPSocket
        do { socket = try TCPSocket.connect(to: address) } catch { throw .system(error) }
        var security = Security.plaintext
        if let tls {
            do {
                let session = try tls.context.session(descriptor: socket.fd.rawValue, dialer: true, allowedKeys: [tls.peerKey])
                security = .tls(session, tls.rekey)
            } catch {
                throw .authentication(error.description)
            }
        }
        return TCPChannel(socket, connected: false, peer: "\(address)", security: security)
    }

    /// Wraps an accepted connection. If it opens with a TLS handshake, the peer must prove one
    /// of `allowedKeys` (the channel's ``authenticatedPeer`` then says which); a plaintext
    /// connection is taken only if `plaintextAllowed`.
    public init(accepted socket: consuming TCPSocket, peer: String, tls: TLSContext?, allowedKeys: [[UInt8]],
                rekey: RekeyPolicy, plaintextAllowed: Bool) {
        self.socket = socket
        connected = true
        peerAddress = peer
        security = .undecided(tls, allowedKeys: allowedKeys, rekey, plaintextAllowed: plaintextAllowed)
        mode = .undecided
        try? self.socket.setNoDelay()
    }

    private init(_ socket: consuming TCPSocket, connected: Bool, peer: String, security: Security) {
        self.socket = socket
        self.connected = connected
        self.security = security
        mode = security.mode
        peerAddress = peer
    }

    deinit { vectors.deallocate() }

    public var descriptor: Int32 { socket.fd.rawValue }
    public var peerDescription: String { peerAddress }
    public var isConnected: Bool { connected }

    public var capabilities: ChannelCapabilities {
        var encrypted = false
        if case .tls = security { encrypted = true }
        return ChannelCapabilities(transport: "tcp", maximumFramePayload: FrameHeader.maximumPayload, encrypted: encrypted)
    }

    /// Set by ``admit()``; the decoder follows before its next frame (admit is called from
    /// inside the decoder's frame callback, where the decoder cannot be changed).
    private var admitted = false

    public func admit() { admitted = true }

    /// Shuts the connection down (TCP says nothing more about why: the fabric sent the reason
    /// in a control frame where it could).
    public func close(reason: String) { try? socket.shutdown() }

    public var authenticatedPeer: Int? {
        guard case .tls(let session, _) = security, session.isEstablished else { return nil }
        return session.peerKeyIndex
    }

    /// For a TLS channel, record protection for a second carrier to the same agent (keys
    /// exported from this session); nil for a plaintext channel.
    func exportCarrierSeal() throws(ChannelError) -> CarrierSeal? {
        guard case .tls(let session, _) = security else { return nil }
        do { return try session.exportCarrierSeal() } catch { throw .authentication(error.description) }
    }

    /// The negotiated TLS version and suite, or nil for a plaintext channel.
    public var securityDescription: String? {
        guard case .tls(let session, _) = security, session.isEstablished else { return nil }
        return session.suite
    }

    public func finishConnect() throws(ChannelError) {
        guard !connected else { return }
        if let error = socket.pendingError() {
            throw .system(SystemError("connect", error, detail: peerAddress))
        }
        connected = true
        try? socket.setNoDelay()
    }

    public func enqueue(_ header: FrameHeader, prefix: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, loan: PayloadLoan?) {
        var h = header
        h.length = UInt32(prefix.count + payload.count)
        // TLS encrypts one buffer at a time, so a payload in place gives its frame header a
        // small record of its own; the session's write buffer sends them together, so that
        // costs less than copying a large payload (64 KiB stream: 0.99 -> 1.07-1.13 GB/s).
        var inPlace = payload.count >= Self.tlsInPlacePayload
        if mode == .plaintext { inPlace = true }
        output.appendFrame(head: FrameHeader.size + prefix.count, { Self.storeHead(h, prefix: prefix, at: $0) },
                           payload: payload, loan: loan, inPlace: inPlace)
        counters.framesSent &+= 1
    }

    /// Writes a frame's head at `p`: the header, then the prefix.
    private static func storeHead(_ header: FrameHeader, prefix: UnsafeRawBufferPointer, at p: UnsafeMutableRawPointer) {
        header.store(to: p)
        if let source = prefix.baseAddress, prefix.count > 0 {
            (p + FrameHeader.size).copyMemory(from: source, byteCount: prefix.count)
        }
    }

    /// A plaintext channel with nothing queued writes the frame with one `sendmsg`: its head
    /// from the stack, its payload in place. TLS channels queue (a record needs the session).
    public func sendNow(_ header: FrameHeader, prefix: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
                        loan: PayloadLoan?) -> Bool {
        guard mode == .plaintext, connected, output.count == 0, prefix.count <= 8 else {
            enqueue(header, prefix: prefix, payload: payload, loan: loan)
            return false
        }
        var h = header
        h.length = UInt32(prefix.count + payload.count)
        let total = FrameHeader.size + prefix.count + payload.count
        var head: (UInt64, UInt64, UInt64) = (0, 0, 0)  // the header and at most an 8-byte prefix
        let written = withUnsafeMutableBytes(of: &head) { raw -> Int in
            Self.storeHead(h, prefix: prefix, at: raw.baseAddress!)
            vectors[0] = iovec(iov_base: raw.baseAddress, iov_len: FrameHeader.size + prefix.count)
            vectors[1] = iovec(iov_base: UnsafeMutableRawPointer(mutating: payload.baseAddress), iov_len: payload.count)
            return ((try? socket.write(UnsafeMutableBufferPointer(rebasing: vectors[..<2]))) ?? nil) ?? 0
        }
        if written == total {
            counters.framesSent &+= 1
            counters.bytesSent &+= UInt64(total)
            if let loan, let position = loan.position { loan.lender.sent(through: position) }
            return true
        }
        // Part of it (or none, or an error the next flush meets again): queue the frame and
        // drop what the socket took from its front.
        enqueue(header, prefix: prefix, payload: payload, loan: loan)
        if written > 0 {
            output.consume(written)
            counters.bytesSent &+= UInt64(written)
        }
        return false
    }

    public var queuedBytes: Int { output.count }

    public func flush() throws(ChannelError) -> Bool {
        guard connected else { return output.count == 0 }
        // Switched on `mode`: matching `security` would copy the TLS case's payload on every
        // plaintext flush too.
        switch mode {
        case .undecided:
            // Nothing is sent before the peer's first bytes decide plaintext or TLS.
            return true
        case .plaintext:
            return try flushPlaintext()
        case .tls:
            guard case .tls(let session, var rekey) = security else { preconditionFailure("mode is .tls only while security holds a session") }
            defer { if case .tls = security { security = .tls(session, rekey) } }
            if output.count > 0, session.isEstablished, rekey.isDue(now: MonotonicClock.nanoseconds()) {
                // VIO's record layer never refuses; OpenSSL's (tests) may while a partial record
                // waits to be retried: then the next flush.
                if (try? session.updateKeys()) != nil {
                    counters.keyUpdates &+= 1
                    rekey.restart()
                }
            }
            while output.count > 0 {
                let outcome: TLSSession.Outcome
                do { outcome = try session.write(output.front!) } catch { throw .authentication(error.description) }
                switch outcome {
                case .bytes(let n):
                    output.consume(n)
                    counters.bytesSent &+= UInt64(n)
                    rekey.sentSinceUpdate &+= UInt64(n)
                case .wouldBlock:
                    // Waiting for the peer's handshake bytes is waiting for input, which the
                    // loop always watches: only a full socket asks for writability.
                    return !session.wantsWrite
                case .closed:
                    throw .closedByPeer
                }
            }
            do { return try session.flush() } catch { throw .authentication(error.description) }
        }
    }

    /// Writes queued output until the socket takes no more: whether all of it went.
    private func flushPlaintext() throws(ChannelError) -> Bool {
        while output.count > 0 {
            let written: Int?
            do { written = try socket.write(UnsafeMutableBufferPointer(rebasing: vectors[..<output.gather(into: vectors)])) } catch {
                throw .system(error)
            }
            guard let n = written else { return false }
            output.consume(n)
            counters.bytesSent &+= UInt64(n)
        }
        return true
    }

    public func receive(budget: Int, place: (FrameHeader) -> PayloadPlacement?,
                        _ body: (FrameHeader, UnsafeRawBufferPointer) -> Bool) throws(ChannelError) -> Bool {
        if mode == .undecided, try !decideSecurity() { return false }
        var read = 0
        drained = false
        while true {
            if let p = placing {
                // A payload being read straight into its place.
                if p.filled == p.placement.destination.count {
                    placing = nil
                    counters.framesReceived &+= 1
                    if !body(p.header, UnsafeRawBufferPointer(p.placement.destination)) { return true }
                    continue
                }
                if read >= budget { return true }
                if drained { return false }
                let rest = UnsafeMutableRawBufferPointer(rebasing: p.placement.destination[p.filled...])
                guard let (placed, buffered) = try readPlacing(into: rest, tail: !streaming) else { return false }
                if placed + buffered == 0 { throw .closedByPeer }
                placing!.filled += placed
                read += placed + buffered
                continue
            }
            // Frames already buffered first: a previous call may have stopped early.
            while true {
                if admitted != decoder.isAdmitted { decoder.admit() }
                let more: Bool?
                do {
                    more = try decoder.nextFrame { header, payload in
                        streaming = Int(header.length) >= Self.streamingFrame
                        return body(header, payload)
                    }
                } catch {
                    throw .protocolViolation("\(error)")
                }
                guard let more else { break }
                counters.framesReceived &+= 1
                if !more { return true }
            }
            // A large frame only partly here: read the rest where it belongs, if it has a place.
            do {
                if let (header, _) = try decoder.partialFrame(), Int(header.length) >= Self.placedFrame,
                   let placement = place(header), placement.destination.count == Int(header.length) {
                    let moved = decoder.takePartialPayload(into: placement.destination.baseAddress!)
                    placing = (header, placement, moved)
                    streaming = Int(header.length) >= Self.streamingFrame
                    continue
                }
            } catch {
                throw .protocolViolation("\(error)")
            }
            if read >= budget { return true }
            if drained { return false }
            guard let n = try readSome() else { return false }
            if n == 0 { throw .closedByPeer }
            read += n
        }
    }

    /// The socket had nothing more at the last read, so reading again now would only return
    /// EAGAIN (epoll reports anything that arrives later): a plaintext read returned less than
    /// it was offered, or a TLS session's socket read did and the session holds no input
    /// (it may hold records the socket no longer shows, so a short TLS read says nothing).
    private var drained = false

    /// A frame being received in place: its header, where its payload goes, bytes there so far.
    private var placing: (header: FrameHeader, placement: PayloadPlacement, filled: Int)?
    /// Whether the last frame was large: then reads stop soon after the next header, so the
    /// next large payload is read in place rather than into the decoder and copied.
    private var streaming = false
    /// Frames at least this large are read in place when they have a placement.
    static let placedFrame = 8 * 1024
    /// After a frame this large, reads are limited to ``streamingReadLimit``.
    static let streamingFrame = 32 * 1024
    static let streamingReadLimit = 4096
    /// Bytes read past a placed payload, in the same call, for the next frame's header.
    static let placingTail = 4096

    /// Reads (or decrypts) into the decoder: the byte count, 0 at end of stream, nil when
    /// nothing is pending.
    private func readSome() throws(ChannelError) -> Int? {
        try decoder.fill(limit: streaming ? Self.streamingReadLimit : Int.max) { buffer throws(ChannelError) -> Int? in
            try readSome(into: buffer)
        }
    }

    /// Reads the rest of a payload being placed, and with `tail` (plaintext only) in the same
    /// `readv` up to ``placingTail`` bytes after it into the decoder: the next frame's header
    /// comes with this payload's end, so back-to-back mid-size frames are each placed for one
    /// read and a copy of at most the tail (16 KiB fan-out: +6-9%, the receiving agent's user
    /// time 1.7 -> 0.2 s). Streaming-size frames keep a read of their own: there the tail made
    /// the 64 KiB stream 4-8% slower (the agent caught up and slept more often, twice the
    /// `epoll_wait`s). Returns the bytes placed and buffered; nil when nothing is pending.
    private func readPlacing(into rest: UnsafeMutableRawBufferPointer, tail: Bool) throws(ChannelError) -> (Int, Int)? {
        guard tail, mode == .plaintext else {
            guard let n = try readSome(into: rest) else { return nil }
            return (n, 0)
        }
        var placed = 0
        let buffered = try decoder.fill(limit: Self.placingTail) { after throws(ChannelError) -> Int? in
            guard let n = try readPlaintext(offered: rest.count + after.count, { () throws(SystemError) in
                try socket.read(into: rest, then: after)
            }) else { return nil }
            placed = min(n, rest.count)
            return n - placed
        }
        guard let buffered else { return nil }
        return (placed, buffered)
    }

    /// Reads (or decrypts) into `buffer`: the byte count, 0 at end of stream, nil when
    /// nothing is pending.
    private func readSome(into buffer: UnsafeMutableRawBufferPointer) throws(ChannelError) -> Int? {
        if mode == .plaintext {
            return try readPlaintext(offered: buffer.count, { () throws(SystemError) in try socket.read(into: buffer) })
        }
        // Undecided: nothing is read before ``decideSecurity()`` has looked at the first byte.
        guard case .tls(let session, _) = security else { return nil }
        let n: Int?
        do {
            switch try session.read(into: buffer) {
            case .bytes(let count):
                n = count
                if session.isDrained { drained = true }
            case .wouldBlock: n = nil
            case .closed: n = 0
            }
        } catch {
            throw .authentication(error.description)
        }
        if let n { counters.bytesReceived &+= UInt64(n) }
        return n
    }

    /// One plaintext socket read of at most `offered` bytes (`read` makes the call): counted,
    /// and a short one marks the socket drained. Returns what `read` returned.
    private func readPlaintext(offered: Int, _ read: () throws(SystemError) -> Int?) throws(ChannelError) -> Int? {
        let n: Int?
        do { n = try read() } catch { throw .system(error) }
        guard let n else { return nil }
        if n > 0, n < offered { drained = true }
        counters.bytesReceived &+= UInt64(n)
        return n
    }

    /// Looks at an accepted connection's first byte: 0x16 opens a TLS handshake record.
    /// Returns false while nothing has arrived.
    private func decideSecurity() throws(ChannelError) -> Bool {
        guard case .undecided(let context, let keys, let rekey, let plaintextAllowed) = security else { return true }
        var first: UInt8 = 0
        let n: Int?
        do { n = try withUnsafeMutableBytes(of: &first) { buffer throws(SystemError) in try socket.peek(into: buffer) } } catch {
            throw .system(error)
        }
        guard let n else { return false }
        if n == 0 { throw .closedByPeer }
        if first == Self.tlsHandshakeRecord {
            guard let context else {
                throw .authentication("the peer opened a TLS handshake, but every host pair of this host is plaintext in the topology")
            }
            do {
                security = .tls(try context.session(descriptor: socket.fd.rawValue, dialer: false, allowedKeys: keys), rekey)
            } catch {
                throw .authentication(error.description)
            }
        } else {
            guard plaintextAllowed else {
                throw .authentication("the peer sent plaintext, but every host pair of this host is encrypted (security: tls); check that both agents run the same topology")
            }
            security = .plaintext
        }
        return true
    }

    /// On a TLS channel, payloads at least this large are encrypted from the ring in place.
    static let tlsInPlacePayload = 8 * 1024

    /// Buffers handed to one `sendmsg`.
    static let vectorsPerWrite = 64

    /// The content type of a TLS handshake record, the first byte a TLS client sends.
    static let tlsHandshakeRecord: UInt8 = 0x16
}

extension TCPChannel.RekeyPolicy {
    func isDue(now: UInt64) -> Bool { sentSinceUpdate >= bytes || now &- lastUpdate >= nanoseconds }

    mutating func restart() {
        sentSinceUpdate = 0
        lastUpdate = MonotonicClock.nanoseconds()
    }
}
