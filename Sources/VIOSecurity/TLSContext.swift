internal import CVIOTLS

/// TLS 1.3 settings shared by every channel of one agent: its private key and the certificate
/// made from it. Sessions are created per connection with ``session(descriptor:dialer:allowedKeys:records:)``.
///
/// Used only by the agent's loop thread.
public final class TLSContext {
    private let handle: OpaquePointer
    /// The public key matching the agent's private key.
    public let publicKey: [UInt8]

    /// Loads the private key at `keyPath` (checking its permissions first).
    public init(keyPath: String) throws(SecurityError) {
        try KeyFile.checkPermissions(keyPath)
        var key = [UInt8](repeating: 0, count: Int(VIO_TLS_KEY_BYTES))
        var err = [CChar](repeating: 0, count: 256)
        guard let handle = vio_tls_ctx_new(keyPath, &key, &err, err.count) else { throw SecurityError(KeyFile.text(err)) }
        self.handle = handle
        publicKey = key
    }

    deinit { vio_tls_ctx_free(handle) }

    /// Who seals and opens a session's records once OpenSSL has run the handshake.
    public enum RecordLayer: Sendable {
        /// VIO's record layer (the default): TLS 1.3 records (RFC 8446 section 5) sealed from
        /// and opened into the caller's buffers, one AEAD pass per record and no extra copy.
        case vio
        /// OpenSSL's own `SSL_read`/`SSL_write`, for checking VIO's records against it.
        case openSSL
    }

    /// A session on the connected socket `descriptor` (not owned). The peer must prove one of
    /// `allowedKeys` (32 bytes each): the dialed host's key, or every key that may connect.
    public func session(descriptor: Int32, dialer: Bool, allowedKeys: [[UInt8]],
                        records: RecordLayer = .vio) throws(SecurityError) -> TLSSession {
        // The C side reads 32 bytes per key: a list with any other size would shift them all.
        guard allowedKeys.allSatisfy({ $0.count == 32 }) else {
            throw SecurityError("an allowed key is not 32 bytes (\(allowedKeys.map(\.count)))")
        }
        let flat = allowedKeys.flatMap { $0 }
        var err = [CChar](repeating: 0, count: 256)
        guard let tls = vio_tls_new(handle, descriptor, dialer ? 1 : 0, records == .openSSL ? 1 : 0, flat,
                                    Int32(allowedKeys.count), &err, err.count) else {
            throw SecurityError(KeyFile.text(err))
        }
        return TLSSession(tls)
    }
}

/// One TLS 1.3 session over a non-blocking socket: handshake, encrypted reads and writes, key
/// updates. Writes are sealed into a buffer sent at ``flush()`` (or when it fills). Records
/// carry an AEAD tag and an implicit sequence number, so a changed, dropped, reordered or
/// replayed record fails the session.
public final class TLSSession {
    private let handle: OpaquePointer

    /// What a read or write did.
    public enum Outcome: Equatable {
        /// This many bytes moved.
        case bytes(Int)
        /// Nothing now: wait until the socket is readable (or writable, see ``wantsWrite``).
        case wouldBlock
        /// The peer closed the session.
        case closed
    }

    init(_ handle: OpaquePointer) { self.handle = handle }
    deinit { vio_tls_free(handle) }

    /// Whether the last ``Outcome/wouldBlock`` waits for writability rather than input.
    public var wantsWrite: Bool { vio_tls_wants_write(handle) != 0 }

    /// Decrypted bytes into `buffer`; runs the handshake first when it is not done.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SecurityError) -> Outcome {
        try outcome(vio_tls_read(handle, buffer.baseAddress, buffer.count))
    }

    /// Whether the session holds no input and its last socket read came back short: reading
    /// again before the socket turns readable would only return ``Outcome/wouldBlock``.
    public var isDrained: Bool { vio_tls_drained(handle) != 0 }

    /// Encrypts from `buffer` into records, sent when the write buffer fills or at
    /// ``flush()``; runs the handshake first when it is not done.
    public func write(_ buffer: UnsafeRawBufferPointer) throws(SecurityError) -> Outcome {
        try outcome(vio_tls_write(handle, buffer.baseAddress, buffer.count))
    }

    /// Sends the records ``write(_:)`` buffered; true when all went out (false: wait for
    /// writability).
    public func flush() throws(SecurityError) -> Bool {
        let r = vio_tls_flush(handle)
        if r == 1 { return true }
        _ = try outcome(Int(r))
        return false
    }

    /// Advances the handshake; true once it is complete.
    public func handshake() throws(SecurityError) -> Bool {
        let r = vio_tls_handshake(handle)
        if r == 1 { return true }
        _ = try outcome(Int(r))
        return false
    }

    /// Asks for new traffic keys in both directions, sent with the next write.
    public func updateKeys() throws(SecurityError) {
        guard vio_tls_key_update(handle) == 1 else { throw SecurityError("key update failed: \(error)") }
    }

    /// Whether the handshake is complete (both sides authenticated).
    public var isEstablished: Bool { vio_tls_established(handle) != 0 }

    /// Which of the allowed keys the peer proved (index), once the handshake is done.
    public var peerKeyIndex: Int? {
        let i = Int(vio_tls_peer_index(handle))
        return i >= 0 ? i : nil
    }

    /// Protocol version and cipher suite, e.g. "TLSv1.3 TLS_AES_128_GCM_SHA256".
    public var suite: String {
        var out = [CChar](repeating: 0, count: 96)
        _ = vio_tls_description(handle, &out, out.count)
        return KeyFile.text(out)
    }

    /// Why the last call failed.
    public var error: String { String(cString: vio_tls_error(handle)) }

    private func outcome(_ r: Int) throws(SecurityError) -> Outcome {
        switch Int32(truncatingIfNeeded: r) {
        case _ where r > 0: return .bytes(r)
        case Int32(VIO_TLS_WOULD_BLOCK): return .wouldBlock
        case Int32(VIO_TLS_CLOSED): return .closed
        default: throw SecurityError(error)
        }
    }
}

extension TLSSession {
    /// Record protection for a second carrier between the same two agents (an RDMA queue
    /// pair), with keys exported from this authenticated session: see ``CarrierSeal``.
    public func exportCarrierSeal() throws(SecurityError) -> CarrierSeal {
        var out = [CChar](repeating: 0, count: 256)
        guard let seal = vio_tls_export_seal(handle, &out, out.count) else {
            throw SecurityError("cannot export keys for the carrier: \(KeyFile.text(out))")
        }
        return CarrierSeal(seal)
    }
}

/// Seals and opens TLS 1.3 records for a carrier other than the session's socket, one key per
/// direction exported from the session (RFC 8446 7.5): each record's sequence number is
/// implicit, so a record that is changed, replayed, dropped or reordered does not open.
public final class CarrierSeal {
    private let handle: OpaquePointer

    init(_ handle: OpaquePointer) { self.handle = handle }
    deinit { vio_tls_seal_free(handle) }

    /// Most content one record carries.
    public static let maximumContent = 16384
    /// What a record adds to its content: header, content type, tag.
    public static let overhead = 22

    /// Seals `content` (1 to ``maximumContent`` bytes) into `out` (content + ``overhead``
    /// bytes); returns the record's size.
    public func seal(_ content: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) -> Int {
        let n = vio_tls_seal_record(handle, content.baseAddress!.assumingMemoryBound(to: UInt8.self), content.count,
                                    out.assumingMemoryBound(to: UInt8.self))
        precondition(n > 0, "sealing \(content.count) bytes")
        return n
    }

    /// Opens the record in `record` in place: its content's length (the content starts 5
    /// bytes in); throws when the record does not verify.
    public func open(_ record: UnsafeMutableRawBufferPointer) throws(SecurityError) -> Int {
        let n = vio_tls_open_record(handle, record.baseAddress!.assumingMemoryBound(to: UInt8.self), record.count)
        guard n >= 0 else { throw SecurityError("a record from the carrier does not verify (changed, replayed, reordered or not sealed by the peer)") }
        return n
    }
}
