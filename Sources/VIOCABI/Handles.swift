import VIO
import VIOLinux
import VIOWire

/// What a `vio_client *` points to.
final class ClientHandle {
    let client: VIOClient
    init(_ client: VIOClient) { self.client = client }
}

/// What a `vio_link *` points to: the link plus the C-side state the ABI needs.
final class LinkHandle {
    let link: Link
    /// The peer's name as a C string, valid until release.
    let peer: UnsafeMutablePointer<CChar>
    /// A message whose buffer was too small (vio_recv) or handed out in place (vio_recv_zc).
    var pending: LinkEndpoint.PendingMessage? = nil
    var pendingIsZeroCopy = false
    var closed = false

    init(_ link: Link) {
        self.link = link
        peer = strdupCString(link.peerName)
    }

    deinit {
        if let pending { link.finishMessage(pending) }
        peer.deallocate()
    }
}

func strdupCString(_ s: String) -> UnsafeMutablePointer<CChar> {
    let utf8 = Array(s.utf8CString)
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: utf8.count)
    p.initialize(from: utf8, count: utf8.count)
    return p
}

extension OpaquePointer {
    var client: ClientHandle { Unmanaged<ClientHandle>.fromOpaque(UnsafeRawPointer(self)).takeUnretainedValue() }
    var link: LinkHandle { Unmanaged<LinkHandle>.fromOpaque(UnsafeRawPointer(self)).takeUnretainedValue() }
}

/// C error codes (vio.h).
enum Code {
    static let ok: Int32 = 0, invalid: Int32 = -1, again: Int32 = -2, timedOut: Int32 = -3
    static let peerClosed: Int32 = -4, peerGone: Int32 = -5, corrupt: Int32 = -6, messageSize: Int32 = -7
    static let closed: Int32 = -8, refused: Int32 = -9, agent: Int32 = -10, proto: Int32 = -11
    static let system: Int32 = -12, misuse: Int32 = -13, hostDown: Int32 = -14, canceled: Int32 = -15
    static let notResponding: Int32 = -16, removed: Int32 = -17

    static func of(_ error: LinkError) -> Int32 {
        LastError.set(DisplaySafe.escape(error.description))
        switch error {
        case .peerClosed: return peerClosed
        case .peerGone: return peerGone
        case .peerHostDown: return hostDown
        case .closed: return closed
        case .peerNotResponding: return notResponding
        case .removedFromTopology: return removed
        case .agentGone: return agent
        case .corruptRing: return corrupt
        case .messageTooLarge, .claimTooLarge: return messageSize
        case .timedOut: return timedOut
        case .wouldBlock: return again
        case .system: return system
        case .cancelled: return canceled
        case .misuse: return misuse
        }
    }

    static func of(_ error: VIOError) -> Int32 {
        LastError.set(DisplaySafe.escape(error.description))
        switch error {
        case .agentUnreachable, .agentGone: return agent
        case .refused(let e) where e.code == .peerNotAttached: return timedOut
        case .refused: return refused
        case .protocolViolation: return proto
        case .timedOut: return timedOut
        case .tokenUnreadable: return invalid
        case .link(let e): return of(e)
        case .system: return system
        }
    }

    static func invalid(_ what: String) -> Int32 {
        LastError.set(DisplaySafe.escape(what))
        return invalid
    }
}

/// `timeout_ms` as a Duration: 0 never waits, negative waits forever.
func duration(_ timeoutMs: Int32) -> Duration? {
    timeoutMs < 0 ? nil : .milliseconds(Int64(timeoutMs))
}
